"""Session-mode IM: Contact as GRUU, a peer that wants no typing indications, and the
set-up timeout (RFC 7573 §4 and §6; spec §2.4), through a real Prosody."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from minimal_msrp import MinimalListener
from test_chat_msrp import (
    ALICE,
    NS_CS,
    UdpPeer,
    _gateway,
    _outgoing_session,
    chat_xml,
    header,
)

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
async def proxy() -> Any:
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(UdpPeer, local_addr=("127.0.0.1", 0))
    yield peer
    transport.close()


@pytest.fixture
async def bob(prosody: Any) -> Any:
    async with XmppTestClient(
        "bob@example.test/laptop", "bob-pw", "127.0.0.1", prosody.c2s_port
    ) as client:
        await client.disco_info("example.test")
        yield client


class _SessionNoTyping:
    """Provisioning: session-mode IM yes, isComposing no."""

    def use_session_mode(self) -> bool:
        return True

    def send_is_composing(self) -> bool:
        return False

    @property
    def tls_only(self) -> bool:
        return False


async def test_invite_contact_is_the_xmpp_resource_as_gruu_and_no_typing_for_that_peer(
    prosody: Any, proxy: UdpPeer, bob: XmppTestClient
) -> None:
    gw = await _gateway(prosody, proxy)
    listener = MinimalListener()
    await listener.start()
    try:
        assert gw.chat is not None
        gw.chat._peer_policy = lambda domain: _SessionNoTyping()
        invite, conn, ours, theirs = await _outgoing_session(proxy, bob, listener)
        # RFC 7573 §4 / spec §2.4: Contact carries the resource as GRUU, inside the URI.
        assert header(invite, "Contact") == "<sip:bob@example.test;gr=laptop>"
        first = await conn.next_request("SEND")
        while not first.body:
            first = await conn.next_request("SEND")
        assert first.body == b"hello alice"
        thread = header(invite, "Call-ID")
        bob.send_raw(
            chat_xml(ALICE, None, mid="cs1", thread=thread, extra=f"<composing xmlns='{NS_CS}'/>")
        )
        bob.send_raw(chat_xml(ALICE, "typed", mid="t1", thread=thread))
        nxt = await conn.next_request("SEND")
        # No isComposing for a peer whose provisioning says no (send_is_composing()).
        assert nxt.header("Content-Type") != "application/im-iscomposing+xml"
        assert nxt.body == b"typed"
    finally:
        await listener.close()
        await gw.stop()


async def test_setup_timeout_returns_waiting_messages_as_errors(
    prosody: Any, proxy: UdpPeer, bob: XmppTestClient
) -> None:
    gw = await _gateway(prosody, proxy, setup_timeout=0.5)
    try:
        bob.send_raw(chat_xml(ALICE, "anyone?", mid="slow1", thread="slow-thread"))
        bob.send_raw(chat_xml(ALICE, "hello?", mid="slow2", thread="slow-thread"))
        await proxy.recv_request("INVITE")  # never answered
        for mid in ("slow1", "slow2"):
            err = await bob.wait_message(
                lambda m, mid=mid: m["type"] == "error" and m["id"] == mid, timeout=5
            )
            assert err["error"]["condition"] == "remote-server-timeout"
        assert gw.chat is not None and gw.chat.session_count() == 0
    finally:
        await gw.stop()
