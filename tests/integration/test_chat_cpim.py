"""message/cpim (RFC 3862) in chat sessions, end to end through a real Prosody.

The far end is ``ChatUA`` (``chat_ua.py``) set up like a client that takes only wrapped
content: ``a=accept-types:message/cpim`` with ``a=accept-wrapped-types:text/plain
application/im-iscomposing+xml`` (RFC 4975 §8.6). The gateway then wraps what it sends in
CPIM with From, To and DateTime (RFC 3862 §4.1, §4.2, §4.4; the users as RFC 7702 §5.5 maps
them), and unwraps what the UA sends into plain chat bodies and chat states (RFC 7573 §5,
§6), in both kinds of session. A CPIM message the gateway cannot act on gets a precise MSRP
answer: 415 for a Require'd header it does not know (RFC 3862 §4.7) or a wrapped type it
cannot carry, 400 for a wrapper it cannot read.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator
from typing import Any

import pytest
from chat_ua import Received, UaCall, UaConfig
from test_chat_msrp import ALICE, NS_CS, chat_xml
from test_chat_ua import gw_sip, has, ua_and_gateway, wait_closed

from sipxmpp.gateway.msrp import FailureReport, SendFailed
from sipxmpp.mapping.cpim import CpimAddress, CpimHeader, CpimMessage, serialize_cpim
from sipxmpp.mapping.iscomposing import ISCOMPOSING_MIME_TYPE, ComposingState
from sipxmpp.mapping.pidf import is_rfc3339
from support.prosody import ProsodyComponent, ProsodyUser, make_prosody_fixture
from support.xmpp_client import XmppTestClient

pytestmark = pytest.mark.prosody

prosody = make_prosody_fixture(
    scope="module",
    vhost="example.test",
    components=[ProsodyComponent("sip.example.test", "chat-secret")],
    users=[ProsodyUser("bob", "bob-pw")],
)


@pytest.fixture
async def bob(prosody: Any) -> AsyncIterator[XmppTestClient]:
    async with XmppTestClient(
        "bob@example.test/laptop", "bob-pw", "127.0.0.1", prosody.c2s_port
    ) as client:
        await client.disco_info("example.test")
        yield client


#: A client that accepts only CPIM-wrapped text and isComposing (RFC 4975 §8.6).
CPIM_ONLY = UaConfig(
    accept_types=("message/cpim",),
    accept_wrapped_types=("text/plain", ISCOMPOSING_MIME_TYPE),
)


def check_envelope(received: Received, *, from_uri: str, to_uri: str) -> None:
    """RFC 3862: From and To name the two users, DateTime is RFC 3339 and about now."""
    assert received.event.content_type == "message/cpim"
    cpim = received.cpim
    assert cpim is not None
    assert cpim.from_ is not None and cpim.from_.uri == from_uri
    assert [a.uri for a in cpim.to] == [to_uri]
    assert cpim.date_time is not None and is_rfc3339(cpim.date_time)
    sent = datetime.datetime.fromisoformat(cpim.date_time.replace("Z", "+00:00"))
    age = datetime.datetime.now(datetime.UTC) - sent
    assert abs(age.total_seconds()) < 60


async def send_raw_cpim(call: UaCall, envelope: CpimMessage) -> str:
    return call.ua.msrp.send_message(
        call.session, "message/cpim", serialize_cpim(envelope), failure_report=FailureReport.YES
    )


async def test_sip_initiated_session_in_cpim_both_ways(prosody: Any, bob: XmppTestClient) -> None:
    async with ua_and_gateway(prosody, CPIM_ONLY) as (ua, gw):
        call = await ua.call("sip:bob@example.test", gateway=gw_sip(gw))
        # The gateway's answer keeps only what both sides take (RFC 4975 §8.6).
        assert call.remote_sdp is not None
        media = call.remote_sdp.media[0]
        assert media.attribute("accept-types") == "message/cpim"
        wrapped = (media.attribute("accept-wrapped-types") or "").split()
        assert set(wrapped) == {"text/plain", ISCOMPOSING_MIME_TYPE}

        # SIP -> XMPP: CPIM-wrapped text becomes a plain chat body, CPIM Subject the
        # <subject/>, the wrapped object's Content-Language the xml:lang.
        envelope = CpimMessage(
            from_=CpimAddress("sip:alice@example.test"),
            to=(CpimAddress("sip:bob@example.test"),),
            date_time="2026-01-02T03:04:05Z",
            content_type="text/plain;charset=UTF-8",
            content_headers=(("Content-Language", "fr"),),
            body="Salut Bob ✓".encode(),
        )
        await send_raw_cpim(call, envelope)
        msg = await bob.wait_message(lambda m: m["type"] == "chat" and bool(m["body"]))
        assert msg["body"] == "Salut Bob ✓"
        assert msg["thread"] == call.call_id and str(msg["from"]) == ALICE
        assert msg["lang"] == "fr"
        call.send_text("wrapped by the UA")  # wraps by itself: the gateway takes only CPIM
        msg = await bob.wait_message(lambda m: bool(m["body"]))
        assert msg["body"] == "wrapped by the UA"

        # isComposing inside CPIM -> XEP-0085.
        call.send_composing(ComposingState.ACTIVE)
        await bob.wait_message(has(f"{{{NS_CS}}}composing"))

        # XMPP -> SIP: wrapped in CPIM with From/To/DateTime, plain text inside.
        thread = call.call_id
        bob.send_raw(
            f"<message to='{ALICE}' type='chat' id='c1' xml:lang='de'><body>Hallo Alice</body>"
            f"<subject>Gruss</subject><thread>{thread}</thread></message>"
        )
        received = await call.next_text()
        check_envelope(received, from_uri="sip:bob@example.test", to_uri="sip:alice@example.test")
        assert received.media_type == "text/plain" and received.text == "Hallo Alice"
        assert received.cpim is not None
        assert [(s.text, s.lang) for s in received.cpim.subjects] == [("Gruss", "de")]
        assert ("Content-Language", "de") in received.cpim.content_headers

        # XEP-0085 -> isComposing, wrapped too (the UA takes isComposing only inside CPIM).
        bob.send_raw(
            chat_xml(ALICE, None, mid="cs1", thread=thread, extra=f"<composing xmlns='{NS_CS}'/>")
        )
        received = await call.next_message()
        assert received.event.content_type == "message/cpim"
        assert received.composing is ComposingState.ACTIVE
        await call.bye()
        await wait_closed(gw)


async def test_xmpp_initiated_session_wraps_for_a_cpim_only_peer(
    prosody: Any, bob: XmppTestClient
) -> None:
    async with ua_and_gateway(prosody, CPIM_ONLY) as (ua, gw):
        bob.send_raw(chat_xml(ALICE, "first, wrapped", mid="w1", thread="cpim-x2s"))
        call = await ua.incoming()
        # The gateway offered CPIM with the wrapped types it can carry (RFC 4975 §8.6).
        assert call.remote_sdp is not None
        offer = call.remote_sdp.media[0]
        assert "message/cpim" in (offer.attribute("accept-types") or "").split()
        assert "text/plain" in (offer.attribute("accept-wrapped-types") or "").split()
        await call.wait_bound()
        received = await call.next_text()
        # The XMPP user writes from a full JID: the CPIM From is its GRUU (RFC 7573 §4).
        check_envelope(
            received,
            from_uri="sip:bob@example.test;gr=laptop",
            to_uri="sip:alice@example.test",
        )
        assert received.text == "first, wrapped"
        call.send_text("reply in CPIM")
        msg = await bob.wait_message(lambda m: m["body"] == "reply in CPIM")
        assert msg["thread"] == "cpim-x2s"
        call.send_composing(ComposingState.IDLE)
        await bob.wait_message(has(f"{{{NS_CS}}}active"))
        await call.bye()
        await wait_closed(gw)


async def test_cpim_the_gateway_cannot_act_on_gets_a_precise_answer(
    prosody: Any, bob: XmppTestClient
) -> None:
    async with ua_and_gateway(prosody, CPIM_ONLY) as (ua, gw):
        call = await ua.call("sip:bob@example.test", gateway=gw_sip(gw))
        alice, bob_uri = CpimAddress("sip:alice@example.test"), CpimAddress("sip:bob@example.test")
        # RFC 3862 §4.7: a Require'd header the gateway does not understand -> 415.
        required = CpimMessage(
            from_=alice,
            to=(bob_uri,),
            require=("Vendor.Secret",),
            extensions=(CpimHeader("Vendor.Secret", "x"),),
            content_type="text/plain",
            body=b"must understand",
        )
        mid = await send_raw_cpim(call, required)
        failed = await call.wait_event(SendFailed, lambda e: e.message_id == mid)
        assert failed.status == 415
        # A wrapped type XMPP cannot carry -> 415 (RFC 4975 §10).
        image = CpimMessage(from_=alice, to=(bob_uri,), content_type="image/png", body=b"\x89PNG")
        mid = await send_raw_cpim(call, image)
        failed = await call.wait_event(SendFailed, lambda e: e.message_id == mid)
        assert failed.status == 415
        # An unreadable wrapper -> 400, at once (not after the delivery timeout).
        mid = call.ua.msrp.send_message(
            call.session,
            "message/cpim",
            b"From: nobody\r\nno blank line",
            failure_report=FailureReport.YES,
        )
        failed = await call.wait_event(SendFailed, lambda e: e.message_id == mid, timeout=3)
        assert failed.status == 400
        # None of it reached bob; a good message after them does.
        call.send_text("and now a readable one")
        msg = await bob.wait_message(lambda m: bool(m["body"]))
        assert msg["body"] == "and now a readable one"
        await call.bye()
        await wait_closed(gw)


async def test_plain_peer_gets_plain_text_even_with_cpim_enabled(
    prosody: Any, bob: XmppTestClient
) -> None:
    """A peer that takes text/plain gets it unwrapped (RFC 7573 §4's default)."""
    async with ua_and_gateway(prosody) as (ua, gw):
        call: UaCall = await ua.call("sip:bob@example.test", gateway=gw_sip(gw))
        bob.send_raw(chat_xml(ALICE, "no wrapper", mid="p1", thread=call.call_id))
        received = await call.next_text()
        assert received.cpim is None and received.event.content_type.startswith("text/plain")
        await call.bye()
        await wait_closed(gw)


async def test_wrap_cpim_off_falls_back_to_pager_for_a_cpim_only_peer(
    prosody: Any, bob: XmppTestClient
) -> None:
    """``chat.wrap_cpim = false``: the offer has no message/cpim, a CPIM-only peer finds
    nothing in common and answers 488 (RFC 3264 §6), and the conversation goes on in pager
    mode without the XMPP user noticing (issue 5 item 6)."""
    async with ua_and_gateway(prosody, CPIM_ONLY, wrap_cpim=False) as (ua, gw):
        bob.send_raw(chat_xml(ALICE, "can you read me?", mid="nw1", thread="nowrap"))
        pager = await asyncio.wait_for(ua.pager.get(), 10)
        assert pager.body == b"can you read me?"
        assert ua.rejected == [488]
        await bob.expect_no_message(0.3)
        await wait_closed(gw)
