"""The component stream's socket options on a real loopback connection (Linux TCP behaviour).

XMPP servers keep Nagle's algorithm on by default (Prosody: ``nagle = true``): a small write
waits while an earlier one is unacknowledged. Linux delays ACKs (at least TCP_DELACK_MIN,
40 ms), and once this end has written within the ACK timeout of a read
(``tcp_event_data_sent``: the handshake, an iq answer, any SIP -> XMPP stanza) the socket is
in "pingpong" (interactive) mode, where even reading the data does not send the pending ACK
(``tcp_cleanup_rbuf`` only ACKs a pushed segment outside pingpong mode). The server's next
stanza then waits for the delayed-ACK timer. The stream leaves pingpong mode on every read
(``TCP_QUICKACK``), which these tests observe through ``getsockopt(TCP_QUICKACK)`` (the
kernel answers 0 while in pingpong mode).
"""

from __future__ import annotations

import asyncio
import socket
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator

import pytest
from xmpp_harness import COMPONENT, SECRET, FakeComponentServer, FakeConnection

from sipxmpp.gateway.xmpp.stream import MAX_READ_BYTES, GatewayComponent

TCP_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)

pytestmark = pytest.mark.skipif(TCP_QUICKACK is None, reason="TCP_QUICKACK is Linux-only")

#: Bound for the handshake on loopback.
HANDSHAKE_TIMEOUT_S = 5.0


class Connected:
    """A :class:`GatewayComponent` connected to a fake server, with what its sink observed."""

    def __init__(self, component: GatewayComponent, filters: asyncio.Task[None]) -> None:
        self.component = component
        self.filters = filters
        #: ``getsockopt(TCP_QUICKACK)`` as seen from inside the read that delivered each
        #: message (before the delayed-ACK timer could have changed anything).
        self.quickack_at_message: asyncio.Queue[int] = asyncio.Queue()

    @property
    def sock(self) -> socket.socket:
        transport = self.component.transport
        assert transport is not None
        sock: socket.socket = transport.get_extra_info("socket")
        return sock


@pytest.fixture
async def connected() -> AsyncIterator[tuple[Connected, FakeConnection]]:
    server = FakeComponentServer()
    port = await server.start()
    holder: list[Connected] = []

    def sink(_xml: ET.Element) -> None:
        assert TCP_QUICKACK is not None
        state = holder[0].sock.getsockopt(socket.IPPROTO_TCP, TCP_QUICKACK)
        holder[0].quickack_at_message.put_nowait(state)

    component = GatewayComponent(COMPONENT, SECRET, "127.0.0.1", port, message_sink=sink)
    filters = asyncio.ensure_future(component.run_filters())
    holder.append(Connected(component, filters))
    loop = asyncio.get_running_loop()
    await loop.create_connection(lambda: component, "127.0.0.1", port)
    conn = await server.next_connection()
    await asyncio.wait_for(conn.authenticated.wait(), HANDSHAKE_TIMEOUT_S)
    async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
        while not component.sessionstarted:
            await asyncio.sleep(0.01)
    try:
        yield holder[0], conn
    finally:
        transport = component.transport
        if transport is not None:
            transport.abort()
        filters.cancel()
        await asyncio.gather(filters, return_exceptions=True)
        await server.close()


async def test_nodelay_and_read_size(connected: tuple[Connected, FakeConnection]) -> None:
    link, _conn = connected
    assert link.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    assert link.component.transport.max_size == MAX_READ_BYTES  # type: ignore[union-attr]


async def test_a_read_leaves_pingpong_mode(connected: tuple[Connected, FakeConnection]) -> None:
    link, conn = connected
    assert TCP_QUICKACK is not None
    for n in range(3):
        # What a write of ours within the ACK timeout of a read does to the socket.
        link.sock.setsockopt(socket.IPPROTO_TCP, TCP_QUICKACK, 0)
        assert link.sock.getsockopt(socket.IPPROTO_TCP, TCP_QUICKACK) == 0
        conn.send(
            f"<message from='alice@example.test/pc' to='bob@sip.example.test' id='q{n}'"
            " type='chat'><body>hi</body></message>"
        )
        state = await asyncio.wait_for(link.quickack_at_message.get(), HANDSHAKE_TIMEOUT_S)
        assert state == 1, "the read left the socket in pingpong mode: the ACK waits 40 ms"
