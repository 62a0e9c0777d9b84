"""The XMPP edge's hot-path behaviour: coalesced writes, eager handler start, read size."""

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
    MemoryComponent,
    RecordingHandler,
)

from sipxmpp.gateway.xmpp import XmppEdge, XmppEdgeConfig
from sipxmpp.gateway.xmpp.stream import MAX_READ_BYTES
from sipxmpp.mapping.model import XmppMessage

FAST = {
    "reconnect_min": 0.05,
    "reconnect_max": 0.2,
    "keepalive_interval": 30.0,
    "keepalive_timeout": 5.0,
    "handshake_timeout": 5.0,
}


def _edge(port: int, handler: RecordingHandler) -> XmppEdge:
    cfg = XmppEdgeConfig(COMPONENT, SECRET, "127.0.0.1", port, **FAST)  # type: ignore[arg-type]
    ids = iter(range(1, 10_000))
    return XmppEdge(cfg, handler, new_id=lambda: f"id{next(ids)}", rng=random.Random(7))


def _message(n: int) -> XmppMessage:
    return XmppMessage(from_jid=f"u{n}@{COMPONENT}", to_jid="bob@example.test", body=f"m{n}")


def _record_writes(edge: XmppEdge) -> list[bytes]:
    """The bytes of each write the edge makes to the server from now on."""
    component = edge.component
    assert component is not None
    writes: list[bytes] = []
    original = component.transport.write

    def recording_write(data: bytes) -> None:
        writes.append(bytes(data))
        original(data)

    component.transport.write = recording_write
    return writes


@pytest.fixture
async def server() -> AsyncIterator[FakeComponentServer]:
    srv = FakeComponentServer()
    await srv.start()
    try:
        yield srv
    finally:
        await srv.close()


@pytest.mark.parametrize("held", [False, True], ids=["loop callback", "held and flushed"])
async def test_messages_sent_together_are_written_once_in_order(
    server: FakeComponentServer, held: bool
) -> None:
    # Held: the runtime holds the writes over a batch of SIP events and flushes after it
    # (runtime/app.py), with no callback left on the loop.
    async with _edge(server.port, RecordingHandler()) as edge:
        assert await edge.wait_up(5)
        conn = await server.next_connection()
        writes = _record_writes(edge)
        if held:
            edge.hold_writes()
        ids = [edge.send_message(_message(n)) for n in range(5)]
        assert writes == []  # queued, not yet written
        if held:
            assert edge._flush_handle is None
            edge.flush()
        else:
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        assert len(writes) == 1
        for n in range(5):
            stanza = await conn.next_stanza()
            assert stanza.get("id") == ids[n]
            assert stanza.findtext("{jabber:component:accept}body") == f"m{n}"
        # A flush ends the hold: the next message is written by the loop's callback.
        edge.send_message(_message(9))
        assert edge._flush_handle is not None
        await asyncio.sleep(0)
        assert len(writes) == 2
        assert (await conn.next_stanza()).findtext("{jabber:component:accept}body") == "m9"


async def test_queued_messages_go_out_before_the_closing_tag(
    server: FakeComponentServer,
) -> None:
    edge = _edge(server.port, RecordingHandler())
    await edge.start()
    assert await edge.wait_up(5)
    conn = await server.next_connection()
    edge.send_message(_message(1))
    await edge.stop()  # no loop iteration in between: the flush happens in stop()
    stanza = await conn.next_stanza()
    assert stanza.findtext("{jabber:component:accept}body") == "m1"
    await conn.wait_closed()


async def test_the_component_reads_in_bounded_chunks_and_acks_at_once(
    server: FakeComponentServer,
) -> None:
    async with _edge(server.port, RecordingHandler()) as edge:
        assert await edge.wait_up(5)
        component = edge.component
        assert component is not None
        assert component.transport.max_size == MAX_READ_BYTES
        if hasattr(socket, "TCP_QUICKACK"):  # Linux: every read is ACKed at once
            sock = component.transport.get_extra_info("socket")
            assert component._quickack_sock is sock


MESSAGE = (
    # language=XML
    "<message from='alice@example.test/pc' to='bob@sip.example.test' id='m{n}' type='chat'>"
    "<body>hi {n}</body></message>"
)


@pytest.fixture
async def comp() -> AsyncIterator[MemoryComponent]:
    component = MemoryComponent(RecordingHandler())
    await component.open()
    try:
        yield component
    finally:
        await component.close()


async def test_a_handler_that_does_not_wait_runs_at_once_without_a_task(
    comp: MemoryComponent,
) -> None:
    handler = comp.handler
    assert isinstance(handler, RecordingHandler)
    comp.recv(MESSAGE.format(n=1) + MESSAGE.format(n=2))
    # No loop iteration yet: both ran inside data_received, in stream order.
    assert handler.messages.qsize() == 2
    assert [handler.messages.get_nowait().id for _ in range(2)] == ["m1", "m2"]
    assert comp.dispatcher.in_flight == 0


async def test_a_handler_that_waits_continues_in_a_task(comp: MemoryComponent) -> None:
    handler = comp.handler
    assert isinstance(handler, RecordingHandler)
    handler.block = asyncio.Event()
    comp.recv(MESSAGE.format(n=1))
    assert handler.messages.qsize() == 0
    assert comp.dispatcher.in_flight == 1
    handler.block.set()
    await comp.settle()
    assert handler.messages.get_nowait().id == "m1"
    assert comp.dispatcher.in_flight == 0


async def test_a_waiting_handler_raising_gets_its_error_reply(comp: MemoryComponent) -> None:
    from sipxmpp.gateway.xmpp import StanzaErrorException
    from sipxmpp.mapping.model import StanzaError

    handler = comp.handler
    assert isinstance(handler, RecordingHandler)
    handler.block = asyncio.Event()
    handler.raise_on_message = StanzaErrorException(StanzaError("item-not-found", "cancel"))
    comp.recv(MESSAGE.format(n=7))
    comp.sent()
    handler.block.set()
    await comp.settle()
    [reply] = comp.sent()
    assert reply.get("type") == "error" and reply.get("id") == "m7"
    assert reply.find(".//{urn:ietf:params:xml:ns:xmpp-stanzas}item-not-found") is not None


async def test_aclose_cancels_a_waiting_handler(comp: MemoryComponent) -> None:
    handler = comp.handler
    assert isinstance(handler, RecordingHandler)
    handler.block = asyncio.Event()
    comp.recv(MESSAGE.format(n=1))
    assert comp.dispatcher.in_flight == 1
    await comp.dispatcher.aclose()
    assert comp.dispatcher.in_flight == 0
    handler.block.set()
    await comp.settle()
    assert handler.messages.qsize() == 0  # the handler never got past its wait
