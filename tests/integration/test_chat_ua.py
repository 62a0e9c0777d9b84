"""Session-mode IM end to end with a far end built from the project's own cores.

An XMPP client (bob, on a real Prosody) chats with ``ChatUA`` (alice, ``chat_ua.py``: our
SIP endpoint + INVITE layer over UDP, our SDP offer/answer, our MSRP core and edge) through
the gateway running in-process, in both directions: sessions the SIP side opens (RFC 7573
§5) and sessions the XMPP side opens (§4). Each test checks what crosses: text, chat states
(RFC 3994 isComposing <-> XEP-0085, RFC 7573 §6), receipts (Success-Report/REPORT <->
XEP-0184, §7), a 100 KB message chunked by the MSRP core (RFC 4975 §7.1, §7.3.1), a 413
over the gateway's a=max-size (RFC 7573 §8), a dropped TCP connection (RFC 4975 §5.4) and
BYE / ``<gone/>`` (RFC 7573 §6.1).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from chat_ua import ChatUA, UaCall, UaConfig
from test_chat_msrp import ALICE, NS_CS, NS_RECEIPTS, chat_xml, settings_for

from sipxmpp.gateway.msrp import FailureReport, SendFailed
from sipxmpp.gateway.msrp import SessionFailed as MsrpSessionFailed
from sipxmpp.gateway.runtime.app import Gateway
from sipxmpp.gateway.sip.invite_events import SessionEnded
from sipxmpp.mapping.iscomposing import ComposingState
from support.prosody import ProsodyComponent, ProsodyUser, make_prosody_fixture
from support.xmpp_client import XmppTestClient

pytestmark = pytest.mark.prosody

prosody = make_prosody_fixture(
    scope="module",
    vhost="example.test",
    components=[ProsodyComponent("sip.example.test", "chat-secret")],
    users=[ProsodyUser("bob", "bob-pw")],
)

#: The gateway's a=max-size in these tests (RFC 7573 §8): small enough that a message over
#: it is quick to send, large enough for the 100 KB message.
GW_MAX_SIZE = 128 * 1024
HUNDRED_KB = 100_000


@pytest.fixture
async def bob(prosody: Any) -> AsyncIterator[XmppTestClient]:
    async with XmppTestClient(
        "bob@example.test/laptop", "bob-pw", "127.0.0.1", prosody.c2s_port
    ) as client:
        await client.disco_info("example.test")
        yield client


@contextlib.asynccontextmanager
async def ua_and_gateway(
    prosody: Any, config: UaConfig | None = None, **chat: Any
) -> AsyncIterator[tuple[ChatUA, Gateway]]:
    """The UA, and a gateway whose outbound proxy is the UA (its INVITEs reach alice)."""
    async with ChatUA(config) as ua:
        gw = Gateway(settings_for(prosody, ua.sip_port, max_message_size=GW_MAX_SIZE, **chat))
        await gw.start()
        try:
            assert await gw.xmpp.wait_up(10.0)
            yield ua, gw
        finally:
            await gw.stop()


def gw_sip(gw: Gateway) -> tuple[str, int]:
    return gw.sip_addresses["udp"]


def has(tag: str) -> Any:
    return lambda m: m.xml.find(tag) is not None


async def sip_call(ua: ChatUA, gw: Gateway, **kwargs: Any) -> UaCall:
    """alice calls bob (RFC 7573 §5): INVITE, 200 with the gateway's a=path, ACK, bound."""
    call = await ua.call("sip:bob@example.test", gateway=gw_sip(gw), **kwargs)
    assert call.negotiated is not None and call.negotiated.active  # we offered actpass
    return call


async def xmpp_call(
    ua: ChatUA, bob: XmppTestClient, first: str, thread: str, **extra: str
) -> tuple[UaCall, str]:
    """bob writes to alice (RFC 7573 §4): the gateway INVITEs alice, connects, sends."""
    bob.send_raw(chat_xml(ALICE, first, mid=f"{thread}-1", thread=thread, **extra))
    call = await ua.incoming()
    await call.wait_bound()
    received = await call.next_text()
    assert received.text == first
    assert call.call_id == thread  # RFC 7573 §4: Call-ID = the XMPP <thread/>
    return call, thread


async def wait_closed(gw: Gateway) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5.0
    assert gw.chat is not None
    while gw.chat.session_count() and loop.time() < deadline:
        await asyncio.sleep(0.02)
    assert gw.chat.session_count() == 0


# ------------------------------------------------------------------ SIP side opens (§5)


async def test_sip_initiated_chat_text_states_receipts_and_bye(
    prosody: Any, bob: XmppTestClient
) -> None:
    async with ua_and_gateway(prosody) as (ua, gw):
        call = await sip_call(ua, gw)
        # MSRP SEND -> <message type='chat'> with <thread/> = Call-ID (§5).
        call.send_text("Hey Bob, are you there? ✓")
        msg = await bob.wait_message(lambda m: m["type"] == "chat" and bool(m["body"]))
        assert msg["body"] == "Hey Bob, are you there? ✓"
        assert msg["thread"] == call.call_id
        assert str(msg["from"]) == ALICE

        # isComposing -> XEP-0085 (Table 3): active -> <composing/>, idle -> <active/>.
        call.send_composing(ComposingState.ACTIVE)
        await bob.wait_message(has(f"{{{NS_CS}}}composing"))
        call.send_composing(ComposingState.IDLE)
        await bob.wait_message(has(f"{{{NS_CS}}}active"))

        # XEP-0085 -> isComposing (Table 4): composing -> active, paused -> idle.
        thread = call.call_id
        bob.send_raw(
            chat_xml(ALICE, None, mid="cs1", thread=thread, extra=f"<composing xmlns='{NS_CS}'/>")
        )
        assert (await call.next_message()).composing is ComposingState.ACTIVE
        bob.send_raw(
            chat_xml(ALICE, None, mid="cs2", thread=thread, extra=f"<paused xmlns='{NS_CS}'/>")
        )
        assert (await call.next_message()).composing is ComposingState.IDLE

        # The reply flows back into the same session.
        bob.send_raw(chat_xml(ALICE, "Yes, here", mid="r1", thread=thread))
        assert (await call.next_text()).text == "Yes, here"

        # Receipts, SIP -> XMPP: Success-Report: yes -> <request/>; the gateway's REPORT
        # 000 200 comes once the stanza is handed to XMPP (RFC 4975 §7.1.2, RFC 7573 §7).
        mid = call.send_text("report this", success_report=True)
        msg = await bob.wait_message(lambda m: m["body"] == "report this")
        assert msg.xml.find(f"{{{NS_RECEIPTS}}}request") is not None
        report = await call.next_report()
        assert report.message_id == mid and report.status == 200

        # Receipts, XMPP -> SIP: <request/> -> Success-Report: yes; our core's REPORT
        # comes back as <received id=.../>.
        bob.send_raw(
            chat_xml(
                ALICE, "ack me", mid="rq1", thread=thread, extra=f"<request xmlns='{NS_RECEIPTS}'/>"
            )
        )
        received = await call.next_text()
        assert received.text == "ack me" and received.event.success_report
        receipt = await bob.wait_message(has(f"{{{NS_RECEIPTS}}}received"))
        assert receipt.xml.find(f"{{{NS_RECEIPTS}}}received").get("id") == "rq1"

        # BYE -> <gone/> (§6.1).
        ended = await call.bye()
        assert isinstance(ended, SessionEnded) and ended.reason == "bye"
        gone = await bob.wait_message(has(f"{{{NS_CS}}}gone"))
        assert gone["thread"] == call.call_id
        await wait_closed(gw)


async def test_sip_initiated_100kb_chunked_both_ways_and_413_over_the_limit(
    prosody: Any, bob: XmppTestClient
) -> None:
    async with ua_and_gateway(prosody) as (ua, gw):
        call = await sip_call(ua, gw)
        assert call.remote_sdp is not None
        gw_media = call.remote_sdp.media[0]
        assert gw_media.attribute("max-size") == str(GW_MAX_SIZE)  # RFC 7573 §8

        # 100 KB, SIP -> XMPP: the UA's core cuts it into 2048-octet chunks (RFC 4975
        # §7.1), the gateway reassembles them into one stanza (RFC 7573 §8).
        text = ("0123456789abcdef" * 6250)[:HUNDRED_KB]
        call.send_text(text, success_report=True)
        msg = await bob.wait_message(lambda m: len(m["body"] or "") > 1000, timeout=20)
        assert msg["body"] == text
        report = await call.next_report(timeout=20)
        assert report.status == 200 and report.byte_range is not None
        assert report.byte_range.total == HUNDRED_KB

        # 100 KB, XMPP -> SIP: chunked by the gateway, reassembled by the UA's core.
        big = "z" * HUNDRED_KB
        bob.send_raw(chat_xml(ALICE, big, mid="big-out", thread=call.call_id))
        received = await call.next_text(timeout=20)
        assert received.text == big

        # Over the gateway's a=max-size: its first chunk already gets 413 (the total in
        # Byte-Range is over the limit, RFC 7573 §8); the UA's core stops sending (§10).
        too_big = "x" * (GW_MAX_SIZE + 1)
        mid = call.send_text(too_big, failure_report=FailureReport.YES)
        failed = await call.wait_event(SendFailed, lambda e: e.message_id == mid, timeout=20)
        assert failed.status == 413
        await bob.expect_no_message(0.3)

        # The session survives the refusal.
        call.send_text("still here")
        msg = await bob.wait_message(lambda m: m["body"] == "still here")
        assert msg["thread"] == call.call_id
        await call.bye()
        await wait_closed(gw)


async def test_sip_initiated_dropped_connection_ends_with_bye_and_gone(
    prosody: Any, bob: XmppTestClient
) -> None:
    async with ua_and_gateway(prosody) as (ua, gw):
        call = await sip_call(ua, gw)
        call.send_text("about to vanish")
        await bob.wait_message(lambda m: m["body"] == "about to vanish")
        # RFC 4975 §5.4: the loss of the connection is the failure of the session; the
        # gateway ends the dialog (BYE) and tells the XMPP user <gone/> (RFC 7573 §6.1).
        assert call.drop_connection()
        await call.wait_event(MsrpSessionFailed)
        ended = await call.wait_ended()
        assert isinstance(ended, SessionEnded) and ended.by == "remote"
        await bob.wait_message(has(f"{{{NS_CS}}}gone"))
        await wait_closed(gw)


# ------------------------------------------------------------------ XMPP side opens (§4)


async def test_xmpp_initiated_chat_text_states_receipts_and_gone(
    prosody: Any, bob: XmppTestClient
) -> None:
    async with ua_and_gateway(prosody) as (ua, gw):
        call, thread = await xmpp_call(ua, bob, "hello alice", "x2s-1")
        assert call.role == "uas"
        assert call.negotiated is not None and not call.negotiated.active  # gateway connects

        # SIP -> XMPP in the session the XMPP side opened: same <thread/>.
        call.send_text("hi bob")
        reply = await bob.wait_message(lambda m: m["body"] == "hi bob")
        assert reply["thread"] == thread

        # Chat states both ways.
        call.send_composing(ComposingState.ACTIVE)
        await bob.wait_message(has(f"{{{NS_CS}}}composing"))
        bob.send_raw(
            chat_xml(ALICE, None, mid="cs1", thread=thread, extra=f"<composing xmlns='{NS_CS}'/>")
        )
        assert (await call.next_message()).composing is ComposingState.ACTIVE
        bob.send_raw(
            chat_xml(ALICE, None, mid="cs2", thread=thread, extra=f"<inactive xmlns='{NS_CS}'/>")
        )
        assert (await call.next_message()).composing is ComposingState.IDLE

        # Receipts both ways.
        bob.send_raw(
            chat_xml(
                ALICE,
                "receipt?",
                mid="rq2",
                thread=thread,
                extra=f"<request xmlns='{NS_RECEIPTS}'/>",
            )
        )
        assert (await call.next_text()).text == "receipt?"
        receipt = await bob.wait_message(has(f"{{{NS_RECEIPTS}}}received"))
        assert receipt.xml.find(f"{{{NS_RECEIPTS}}}received").get("id") == "rq2"
        mid = call.send_text("confirm me", success_report=True)
        msg = await bob.wait_message(lambda m: m["body"] == "confirm me")
        assert msg.xml.find(f"{{{NS_RECEIPTS}}}request") is not None
        assert (await call.next_report()).message_id == mid

        # XMPP <gone/> -> BYE (RFC 7573 §6.1).
        bob.send_raw(
            chat_xml(ALICE, None, mid="g1", thread=thread, extra=f"<gone xmlns='{NS_CS}'/>")
        )
        ended = await call.wait_ended()
        assert isinstance(ended, SessionEnded) and ended.by == "remote"
        await wait_closed(gw)


async def test_xmpp_initiated_100kb_and_413_and_dropped_connection(
    prosody: Any, bob: XmppTestClient
) -> None:
    async with ua_and_gateway(prosody) as (ua, gw):
        call, thread = await xmpp_call(ua, bob, "big things ahead", "x2s-2")
        big = "q" * HUNDRED_KB
        bob.send_raw(chat_xml(ALICE, big, mid="big-x2s", thread=thread))
        assert (await call.next_text(timeout=20)).text == big
        text = "w" * HUNDRED_KB
        call.send_text(text)
        msg = await bob.wait_message(lambda m: len(m["body"] or "") > 1000, timeout=20)
        assert msg["body"] == text and msg["thread"] == thread

        mid = call.send_text("y" * (GW_MAX_SIZE + 100))
        failed = await call.wait_event(SendFailed, lambda e: e.message_id == mid, timeout=20)
        assert failed.status == 413

        # The gateway was the active side here; the connection drops all the same.
        assert call.drop_connection()
        ended = await call.wait_ended()
        assert isinstance(ended, SessionEnded) and ended.by == "remote"
        await bob.wait_message(has(f"{{{NS_CS}}}gone"))
        await wait_closed(gw)


async def test_xmpp_initiated_then_sip_bye(prosody: Any, bob: XmppTestClient) -> None:
    async with ua_and_gateway(prosody) as (ua, gw):
        call, thread = await xmpp_call(ua, bob, "short chat", "x2s-3")
        ended = await call.bye()
        assert isinstance(ended, SessionEnded) and ended.reason == "bye"
        gone = await bob.wait_message(has(f"{{{NS_CS}}}gone"))
        assert gone["thread"] == thread
        await wait_closed(gw)
        # A new message after the BYE opens a new session (RFC 7573 §4).
        bob.send_raw(chat_xml(ALICE, "again", mid="again1", thread="x2s-3b"))
        second = await ua.incoming()
        await second.wait_bound()
        assert (await second.next_text()).text == "again"
        await second.bye()
        await wait_closed(gw)
