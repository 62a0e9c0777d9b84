"""XmppEdge over real sockets against a scripted component port on 127.0.0.1.

Covers the connect/handshake/reconnect supervisor, the XEP-0199 keepalive, sending, link
state, TCP_NODELAY, and the DTD refusal on a live socket (the server's greeting carries a
DOCTYPE, sent whole and one byte at a time).
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from xmpp_harness import (
    COMPONENT,
    SECRET,
    FakeComponentServer,
    FakeConnection,
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


def _last_ping_id(conn: FakeConnection) -> str:
    """The id of the last XEP-0199 ping the edge wrote on ``conn``."""
    raw = bytes(conn.raw).decode()
    iqs = re.findall(r"<iq [^>]*>\s*<ping xmlns=\"urn:xmpp:ping\"", raw)
    assert iqs, raw
    found = re.search(r'id="([^"]+)"', iqs[-1])
    assert found is not None
    return found.group(1)


async def test_keepalive_counts_a_backlog_as_liveness() -> None:
    """The answer to a ping waits behind a backlog the server is still delivering: the
    backlog proves the link alive, so it is not dropped even though the answer comes long
    after ``keepalive_timeout``."""
    server = FakeComponentServer(answer_pings=False)
    await server.start()
    handler = RecordingHandler()
    backlog = 40
    try:
        async with make_edge(
            server.port, handler, keepalive_interval=0.1, keepalive_timeout=0.2
        ) as edge:
            assert await edge.wait_up(5)
            conn = await server.next_connection()
            while conn.pings == 0:  # idle for keepalive_interval: one ping
                await asyncio.sleep(0.01)
            ping_id = _last_ping_id(conn)
            for i in range(backlog):  # 1.2 s of backlog, six times keepalive_timeout
                conn.send(
                    f"<message from='a@example.test' to='b@{COMPONENT}' id='m{i}'>"
                    f"<body>backlog {i}</body></message>"
                )
                await asyncio.sleep(0.03)
                assert edge.up, f"link dropped after {i} backlog stanzas"
            conn.send(f"<iq type='result' id='{ping_id}' from='example.test' to='{COMPONENT}'/>")
            await asyncio.sleep(0.05)
            assert edge.up and edge.sessions == 1
            assert handler.link_states == [True]
            assert conn.pings == 1  # no ping while the backlog was arriving
            got = [await asyncio.wait_for(handler.messages.get(), 5) for _ in range(backlog)]
            assert [m.body for m in got] == [f"backlog {i}" for i in range(backlog)]
    finally:
        await server.close()


async def test_keepalive_pings_only_when_idle_and_drops_a_silent_link() -> None:
    """While stanzas keep arriving no ping is sent; once the server falls silent and also
    leaves the ping unanswered, the link is declared dead within interval + timeout."""
    server = FakeComponentServer(answer_pings=False)
    await server.start()
    handler = RecordingHandler()
    try:
        async with make_edge(
            server.port, handler, keepalive_interval=0.1, keepalive_timeout=0.2
        ) as edge:
            assert await edge.wait_up(5)
            conn = await server.next_connection()
            for i in range(20):  # 0.6 s of traffic, a stanza every 0.03 s
                conn.send(f"<presence from='a@example.test/r' to='b@{COMPONENT}' id='p{i}'/>")
                await asyncio.sleep(0.03)
            assert conn.pings == 0 and edge.up
            loop = asyncio.get_running_loop()
            silent_at = loop.time()
            await handler.wait_link_states([True, False], timeout=5)
            took = loop.time() - silent_at
            assert conn.pings == 1
            assert 0.25 <= took < 1.5, took  # 0.1 s idle + 0.2 s without any answer
            await conn.wait_closed()
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


class PresenceRecorder(RecordingHandler):
    """Records presence stanzas in order; each takes ``cost`` seconds of CPU to handle
    (as a fan-out to SIP watchers does)."""

    def __init__(self, cost: float = 0.0) -> None:
        super().__init__()
        self.cost = cost
        self.presences: list[str] = []

    async def on_presence(self, presence: Any) -> None:
        if self.cost:
            end = time.perf_counter() + self.cost
            while time.perf_counter() < end:
                pass
        self.presences.append(presence.id or "")


def presence_burst(n: int, start: int = 0) -> str:
    return "".join(
        f"<presence from='bob@example.test/desk' to='w{i}@{COMPONENT}' id='p{i}'>"
        f"<show>away</show></presence>"
        for i in range(start, start + n)
    )


async def test_a_presence_burst_is_handled_over_several_loop_turns() -> None:
    """300 presence stanzas in one read, 1 ms of work each: they are handled in order, in
    slices of about INBOUND_TURN_BUDGET_S, and other callbacks (the SIP socket's reads)
    run between the slices instead of waiting 300 ms."""
    server = FakeComponentServer()
    await server.start()
    handler = PresenceRecorder(cost=0.001)
    try:
        async with make_edge(server.port, handler) as edge:
            assert await edge.wait_up(5)
            conn = await server.next_connection()
            loop = asyncio.get_running_loop()
            seen_between: list[int] = []
            done = asyncio.Event()

            def tick() -> None:  # stands in for the UDP socket's read callback
                seen_between.append(len(handler.presences))
                if len(handler.presences) < 300:
                    loop.call_soon(tick)
                else:
                    done.set()

            conn.send(presence_burst(300))
            while not handler.presences:
                await asyncio.sleep(0)
            loop.call_soon(tick)
            await asyncio.wait_for(done.wait(), 10)
            assert handler.presences == [f"p{i}" for i in range(300)]
            # Other callbacks ran between the slices: many distinct progress points, and no
            # slice much longer than the budget (5 ms = about 5 stanzas here).
            progress = sorted(set(seen_between))
            assert len(progress) > 20, progress
            steps = [b - a for a, b in zip(progress, progress[1:], strict=False)]
            assert max(steps) <= 30, steps
            assert edge.up and edge.sessions == 1
    finally:
        await server.close()


async def test_a_presence_flood_pauses_reading_and_loses_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past MAX_PRESENCE_BACKLOG waiting stanzas the edge stops reading from the server
    (TCP flow control holds the rest) and resumes below RESUME_PRESENCE_BACKLOG: the
    backlog stays bounded and every stanza is handled once, in order."""
    from sipxmpp.gateway.xmpp import component as component_module

    monkeypatch.setattr(component_module, "MAX_PRESENCE_BACKLOG", 200)
    monkeypatch.setattr(component_module, "RESUME_PRESENCE_BACKLOG", 50)
    server = FakeComponentServer()
    await server.start()
    handler = PresenceRecorder(cost=0.0002)
    total = 6000
    try:
        async with make_edge(server.port, handler) as edge:
            assert await edge.wait_up(5)
            conn = await server.next_connection()
            for start in range(0, total, 500):
                conn.send(presence_burst(500, start))
            paused_seen = False
            largest = 0
            deadline = time.monotonic() + 20
            while len(handler.presences) < total and time.monotonic() < deadline:
                largest = max(largest, len(edge._presence_backlog))
                paused_seen = paused_seen or edge._reading_paused
                await asyncio.sleep(0.001)
            assert handler.presences == [f"p{i}" for i in range(total)]
            assert paused_seen
            # A read is at most 64 KiB: about 700 of these stanzas on top of the bound.
            assert largest < 200 + 1000, largest
            assert not edge._reading_paused and edge.up
    finally:
        await server.close()
