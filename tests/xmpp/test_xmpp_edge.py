"""XmppEdge over real sockets against a scripted component port on 127.0.0.1.

Covers the connect/handshake/reconnect supervisor, the XEP-0199 keepalive, sending, link
state, TCP_NODELAY, and the DTD refusal on a live socket (the server's greeting carries a
DOCTYPE, sent whole and one byte at a time).
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import AsyncIterator

import pytest
from xmpp_harness import (
    COMPONENT,
    SECRET,
    FakeComponentServer,
    RecordingHandler,
    assert_xml,
)

from sipxmpp.gateway.xmpp import (
    LinkDown,
    LocalXmppError,
    XmppEdge,
    XmppEdgeConfig,
)
from sipxmpp.mapping.model import StanzaError, XmppMessage

FAST = {
    "reconnect_min": 0.05,
    "reconnect_max": 0.2,
    "keepalive_interval": 30.0,
    "keepalive_timeout": 5.0,
    "handshake_timeout": 5.0,
}


def make_edge(port: int, handler: RecordingHandler, **overrides: object) -> XmppEdge:
    settings: dict[str, object] = {**FAST, **overrides}
    cfg = XmppEdgeConfig(COMPONENT, SECRET, "127.0.0.1", port, **settings)  # type: ignore[arg-type]
    ids = iter(range(1, 10_000))
    return XmppEdge(cfg, handler, new_id=lambda: f"id{next(ids)}", rng=random.Random(7))


@pytest.fixture
async def server() -> AsyncIterator[FakeComponentServer]:
    srv = FakeComponentServer()
    await srv.start()
    try:
        yield srv
    finally:
        await srv.close()


async def test_connect_handshake_link_state_and_nodelay(server: FakeComponentServer) -> None:
    handler = RecordingHandler()
    edge = make_edge(server.port, handler)
    assert not edge.up
    async with edge:
        assert await edge.wait_up(5)
        conn = await server.next_connection()
        assert conn.header is not None and conn.header.get("to") == COMPONENT
        assert conn.authenticated.is_set()
        assert handler.link_states == [True]
        component = edge.component
        assert component is not None
        sock = component.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert sock.getpeername()[0] == "127.0.0.1"
    assert handler.link_states == [True, False]
    assert not edge.up
    await conn.wait_closed()
    assert conn.reader.closed  # the edge closed its stream with </stream:stream>


async def test_send_message_and_generated_id(server: FakeComponentServer) -> None:
    handler = RecordingHandler()
    async with make_edge(server.port, handler) as edge:
        assert await edge.wait_up(5)
        conn = await server.next_connection()
        mid = edge.send_message(
            XmppMessage(
                from_jid="bob@sip.example.test",
                to_jid="alice@example.test",
                body="Grüße 😀 <&>",
                type="chat",
                lang="de",
                thread="call-1",
            )
        )
        assert mid == "id1"
        stanza = await conn.next_stanza()
        assert_xml(
            stanza,
            "<message from='bob@sip.example.test' to='alice@example.test' id='id1' type='chat'"
            " xml:lang='de'><body>Grüße 😀 &lt;&amp;&gt;</body><thread>call-1</thread></message>",
        )
        assert (
            edge.send_message(
                XmppMessage(from_jid="bob@sip.example.test", to_jid="a@example.test", id="own")
            )
            == "own"
        )
        with pytest.raises(LocalXmppError):
            edge.send_message(XmppMessage(from_jid="bob@elsewhere.test", to_jid="a@example.test"))
        with pytest.raises(LocalXmppError) as info:
            edge.send_message(
                XmppMessage(from_jid="bob@sip.example.test", to_jid="a@x", body="x" * 300_000)
            )
        assert info.value.condition == "policy-violation"


async def test_send_message_while_down_raises_link_down() -> None:
    handler = RecordingHandler()
    edge = make_edge(1, handler)  # never started
    with pytest.raises(LinkDown):
        edge.send_message(XmppMessage(from_jid="b@sip.example.test", to_jid="a@example.test"))
    assert not await edge.wait_up(0.01)


async def test_incoming_message_and_error_reply(server: FakeComponentServer) -> None:
    handler = RecordingHandler()
    async with make_edge(server.port, handler) as edge:
        assert await edge.wait_up(5)
        conn = await server.next_connection()
        conn.send(
            "<message from='alice@example.test/pc' to='bob@sip.example.test' id='m1'"
            " type='chat'><body>hi</body></message>"
        )
        msg = await asyncio.wait_for(handler.messages.get(), 5)
        assert (msg.from_jid, msg.to_jid, msg.body, msg.id) == (
            "alice@example.test/pc",
            "bob@sip.example.test",
            "hi",
            "m1",
        )
        from sipxmpp.gateway.xmpp import StanzaErrorException

        handler.raise_on_message = StanzaErrorException(
            StanzaError("recipient-unavailable", "wait")
        )
        conn.send(
            "<message from='alice@example.test/pc' to='bob@sip.example.test' id='m2'>"
            "<body>busy?</body></message>"
        )
        reply = await conn.next_stanza()
        assert reply.get("type") == "error" and reply.get("id") == "m2"
        assert reply.get("to") == "alice@example.test/pc"
        assert (
            reply.find(".//{urn:ietf:params:xml:ns:xmpp-stanzas}recipient-unavailable") is not None
        )


async def test_reconnects_after_the_server_drops_the_connection(
    server: FakeComponentServer,
) -> None:
    handler = RecordingHandler()
    async with make_edge(server.port, handler) as edge:
        assert await edge.wait_up(5)
        first = await server.next_connection()
        first.abort()
        await handler.wait_link_states([True, False, True])
        second = await server.next_connection()
        assert second.authenticated.is_set()
        assert edge.up and edge.sessions == 2


async def test_backs_off_while_nothing_listens_then_connects() -> None:
    server = FakeComponentServer()
    port = await server.start()
    await server.stop_listening()  # the port now refuses connections
    handler = RecordingHandler()
    edge = make_edge(port, handler)
    async with edge:
        await asyncio.sleep(0.6)
        attempts = edge.connection_attempts
        # Delays 0.025-0.05, 0.05-0.1, then 0.1-0.2 capped: a handful of attempts, not a spin.
        assert 3 <= attempts <= 12
        assert handler.link_states == []
        await server.start(port)
        try:
            assert await edge.wait_up(5)
            assert handler.link_states == [True]
        finally:
            await server.close()


async def test_wrong_secret_never_comes_up() -> None:
    server = FakeComponentServer(secret="other-secret")
    await server.start()
    handler = RecordingHandler()
    try:
        async with make_edge(server.port, handler) as edge:
            assert not await edge.wait_up(0.5)
            assert len(server.connections) >= 2  # it retried, with backoff
            assert handler.link_states == []
    finally:
        await server.close()


async def test_handshake_timeout_reconnects() -> None:
    server = FakeComponentServer(send_header=False)
    await server.start()
    handler = RecordingHandler()
    try:
        async with make_edge(server.port, handler, handshake_timeout=0.2) as edge:
            first = await server.next_connection()
            await first.wait_closed(3)  # aborted by the handshake timer
            await server.next_connection(3)  # and tried again
            assert not edge.up
    finally:
        await server.close()


async def test_keepalive_pings_and_reconnects_when_unanswered() -> None:
    server = FakeComponentServer(answer_pings=True)
    await server.start()
    handler = RecordingHandler()
    try:
        async with make_edge(
            server.port, handler, keepalive_interval=0.1, keepalive_timeout=0.2
        ) as edge:
            assert await edge.wait_up(5)
            conn = await server.next_connection()
            await asyncio.sleep(0.35)
            assert conn.pings >= 2 and edge.up  # answered pings keep the link
            server.answer_pings = False
            await handler.wait_link_states([True, False], timeout=5)
            await conn.wait_closed()
            server.answer_pings = True
            await handler.wait_link_states([True, False, True], timeout=5)
    finally:
        await server.close()


async def test_ping_target_and_sender(server: FakeComponentServer) -> None:
    handler = RecordingHandler()
    async with make_edge(server.port, handler, keepalive_interval=0.05) as edge:
        assert await edge.wait_up(5)
        conn = await server.next_connection()
        while conn.pings == 0:
            await asyncio.sleep(0.02)
        raw = bytes(conn.raw).decode()
        assert '<ping xmlns="urn:xmpp:ping"' in raw
        assert f'from="{COMPONENT}"' in raw and 'to="example.test"' in raw


@pytest.mark.parametrize("drip", [False, True], ids=["whole", "one-byte-at-a-time"])
async def test_dtd_in_server_greeting_is_refused(drip: bool) -> None:
    server = FakeComponentServer(
        header_prefix="<!DOCTYPE stream:stream [<!ENTITY boom 'boom'>]>", drip=drip
    )
    await server.start()
    handler = RecordingHandler()
    try:
        async with make_edge(server.port, handler) as edge:
            conn = await server.next_connection()
            await conn.wait_closed(5)
            raw = bytes(conn.raw)
            assert b"<restricted-xml xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in raw
            assert conn.handshake is None  # never got as far as the handshake
            assert not edge.up and handler.link_states == []
    finally:
        await server.close()


async def test_comment_after_handshake_drops_the_link(server: FakeComponentServer) -> None:
    handler = RecordingHandler()
    async with make_edge(server.port, handler) as edge:
        assert await edge.wait_up(5)
        conn = await server.next_connection()
        conn.send("<!-- hello -->")
        await conn.wait_closed(5)
        assert b"<restricted-xml" in bytes(conn.raw)
        await handler.wait_link_states([True, False, True])  # and reconnects


async def test_stop_while_connecting_is_clean() -> None:
    server = FakeComponentServer()
    port = await server.start()
    await server.stop_listening()
    handler = RecordingHandler()
    edge = make_edge(port, handler)
    await edge.start()
    await asyncio.sleep(0.05)
    await edge.stop()
    assert handler.link_states == []
    attempts = edge.connection_attempts
    await asyncio.sleep(0.3)
    assert edge.connection_attempts == attempts  # no reconnection after stop
    await server.close()


async def test_full_write_buffer_raises_link_congested(
    server: FakeComponentServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sipxmpp.gateway.xmpp import MAX_WRITE_BUFFER_BYTES, LinkCongested

    handler = RecordingHandler()
    async with make_edge(server.port, handler) as edge:
        assert await edge.wait_up(5)
        component = edge.component
        assert component is not None
        monkeypatch.setattr(
            component.transport, "get_write_buffer_size", lambda: MAX_WRITE_BUFFER_BYTES + 1
        )
        with pytest.raises(LinkCongested) as info:
            edge.send_message(XmppMessage(from_jid="b@sip.example.test", to_jid="a@example.test"))
        assert isinstance(info.value, LinkDown)
        assert info.value.condition == "resource-constraint"


async def test_failing_link_state_callback_does_not_stop_the_edge(
    server: FakeComponentServer,
) -> None:
    class Grumpy(RecordingHandler):
        def on_link_state(self, up: bool) -> None:
            super().on_link_state(up)
            raise RuntimeError("callback bug")

    handler = Grumpy()
    async with make_edge(server.port, handler) as edge:
        assert await edge.wait_up(5)
        conn = await server.next_connection()
        conn.send("<message from='a@example.test' to='b@sip.example.test'><body>x</body></message>")
        assert (await asyncio.wait_for(handler.messages.get(), 5)).body == "x"


async def test_disco_hooks_through_the_edge(server: FakeComponentServer) -> None:
    from sipxmpp.gateway.xmpp import DiscoIdentity

    handler = RecordingHandler()
    edge = make_edge(server.port, handler)
    edge.add_disco_feature("http://jabber.org/protocol/caps")
    edge.add_disco_identity(DiscoIdentity("gateway", "sip", "Brána SIP", "cs"))
    edge.set_disco_forms(
        [
            "<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'>"
            "<value>urn:example:pres-im-provisioning:0</value></field></x>"
        ]
    )
    async with edge:
        assert await edge.wait_up(5)
        conn = await server.next_connection()
        conn.send(
            f"<iq type='get' id='q1' from='peer.example.net' to='{COMPONENT}'>"
            "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        )
        reply = await conn.next_stanza()
        assert reply.get("type") == "result" and reply.get("id") == "q1"
        query = reply.find("{http://jabber.org/protocol/disco#info}query")
        assert query is not None
        names = sorted(
            (i.get("name") or "")
            for i in query.iter("{http://jabber.org/protocol/disco#info}identity")
        )
        assert names == ["Brána SIP", "SIP gateway"]
        assert query.find("{jabber:x:data}x") is not None
