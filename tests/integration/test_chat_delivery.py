"""Never a lost message, MSRP -> XMPP: the SEND's response and Success REPORT wait until
the stanza is handed to the XMPP link; a link that is down or stays congested gets the
MSRP sender a 403 (RFC 4975 §10, Failure-Report semantics §7.1.4), never a false 200.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from minimal_msrp import send_bytes
from test_chat_msrp import UdpPeer, _gateway, _incoming_session

from sipxmpp.gateway.msrp.session import UNDELIVERED_STATUS
from sipxmpp.gateway.runtime import chat as chat_module
from sipxmpp.gateway.xmpp.errors import LinkCongested
from sipxmpp.mapping.model import XmppMessage
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


class CongestedLink:
    """Wraps the gateway's XMPP edge: the first ``refusals`` hand-overs are refused as
    congested (the edge's write buffer is full), later ones go through."""

    def __init__(self, edge: Any, refusals: int) -> None:
        self.edge = edge
        self.refusals = refusals
        self.attempts = 0

    @property
    def up(self) -> bool:
        return bool(self.edge.up)

    def send_message(self, msg: XmppMessage) -> Any:
        self.attempts += 1
        if self.refusals > 0:
            self.refusals -= 1
            raise LinkCongested("the XMPP server is not reading; message not queued")
        return self.edge.send_message(msg)


@pytest.mark.parametrize("failure_report", ["yes", "partial"])
async def test_xmpp_link_down_gets_the_msrp_sender_a_403(
    prosody: Any,
    proxy: UdpPeer,
    failure_report: str,
) -> None:
    gw = await _gateway(prosody, proxy)
    try:
        caller, conn, ours, theirs = await _incoming_session(gw, proxy)
        await gw.xmpp.stop()  # the component link is down from now on
        assert not gw.xmpp.up
        data, tid = send_bytes(
            theirs,
            ours,
            b"will this arrive?",
            extra=f"Success-Report: yes\r\nFailure-Report: {failure_report}\r\n",
        )
        conn.write(data)
        response = await conn.next_response(tid)
        assert response.status == UNDELIVERED_STATUS
        # No Success REPORT for a message that was not handed over (RFC 4975 §7.1.2).
        with pytest.raises(asyncio.TimeoutError):
            await conn.next_request("REPORT", timeout=0.3)
        assert gw.chat is not None and gw.chat.stats()["msrp_refused"] == 1
        await conn.close()
    finally:
        await gw.stop()


async def test_congested_link_delays_the_200_and_report_until_handed_over(
    prosody: Any,
    proxy: UdpPeer,
    bob: XmppTestClient,
) -> None:
    gw = await _gateway(prosody, proxy)
    try:
        assert gw.chat is not None
        caller, conn, ours, theirs = await _incoming_session(gw, proxy)
        link = CongestedLink(gw.chat._xmpp, refusals=3)
        gw.chat._xmpp = link
        first, tid1 = send_bytes(theirs, ours, b"one", extra="Success-Report: yes\r\n")
        second, tid2 = send_bytes(theirs, ours, b"two")
        conn.write(first + second)
        # While congested nothing is confirmed.
        with pytest.raises(asyncio.TimeoutError):
            await conn.next_response(tid1, timeout=0.15)
        assert (await conn.next_response(tid1)).status == 200
        assert (await conn.next_request("REPORT")).header("Status") == "000 200 OK"
        assert (await conn.next_response(tid2)).status == 200
        # In order, each once.
        m1 = await bob.wait_message(lambda m: m["body"] == "one")
        m2 = await bob.wait_message(lambda m: m["body"] == "two")
        assert m1["thread"] == m2["thread"] == caller.call_id
        assert link.attempts >= 5
        await conn.close()
    finally:
        await gw.stop()


async def test_link_congested_too_long_gets_403(
    prosody: Any,
    proxy: UdpPeer,
    bob: XmppTestClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(chat_module, "XMPP_CONGESTION_WAIT", 0.3)
    gw = await _gateway(prosody, proxy)
    try:
        assert gw.chat is not None
        caller, conn, ours, theirs = await _incoming_session(gw, proxy)
        gw.chat._xmpp = CongestedLink(gw.chat._xmpp, refusals=10_000)
        data, tid = send_bytes(theirs, ours, b"stuck")
        conn.write(data)
        assert (await conn.next_response(tid)).status == UNDELIVERED_STATUS
        await bob.expect_no_message(0.2)
        await conn.close()
    finally:
        await gw.stop()
