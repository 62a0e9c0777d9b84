"""The UDP edge's hot-path behaviour: batched reads, one transmit per batch, timer slack."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from transport_fake_core import FakeCore, options, until

from sipxmpp.gateway.sip.address import TransportAddress
from sipxmpp.gateway.transport import ListenAddress, SipTransportManager, TransportConfig
from sipxmpp.gateway.transport.manager import TIMER_SLACK
from sipxmpp.gateway.transport.sip_udp import MAX_DATAGRAMS_PER_READ, SipDatagramProtocol

UDP_ONLY = TransportConfig(udp=ListenAddress(), tcp=None)


def _socket_pair() -> tuple[socket.socket, socket.socket]:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.setblocking(False)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    return receiver, sender


class _Transport:
    def is_closing(self) -> bool:
        return False


def test_a_burst_is_read_as_one_batch_in_order() -> None:
    receiver, sender = _socket_pair()
    batches: list[list[tuple[bytes, TransportAddress]]] = []
    try:
        proto = SipDatagramProtocol(batches.append, 1 << 20, sock=receiver)
        proto.connection_made(_Transport())  # type: ignore[arg-type]
        for i in range(10):
            sender.sendto(b"d%d" % i, receiver.getsockname())
        first, addr = receiver.recvfrom(65536)  # what asyncio would hand over
        proto.datagram_received(first, addr)
        assert len(batches) == 1
        assert [data for data, _ in batches[0]] == [b"d%d" % i for i in range(10)]
        sources = {source for _, source in batches[0]}
        port = sender.getsockname()[1]
        assert sources == {TransportAddress("udp", "127.0.0.1", port)}
        # One TransportAddress object per peer, not one per datagram.
        assert len({id(source) for _, source in batches[0]}) == 1
    finally:
        receiver.close()
        sender.close()


def test_a_batch_is_bounded() -> None:
    receiver, sender = _socket_pair()
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    batches: list[list[tuple[bytes, TransportAddress]]] = []
    try:
        proto = SipDatagramProtocol(batches.append, 1 << 20, sock=receiver)
        proto.connection_made(_Transport())  # type: ignore[arg-type]
        total = MAX_DATAGRAMS_PER_READ + 10
        for i in range(total):
            sender.sendto(b"%d" % i, receiver.getsockname())
        first, addr = receiver.recvfrom(65536)
        proto.datagram_received(first, addr)
        assert len(batches[0]) == MAX_DATAGRAMS_PER_READ
        # The rest stays in the socket for the next readiness event.
        first, addr = receiver.recvfrom(65536)
        proto.datagram_received(first, addr)
        assert len(batches[1]) == total - MAX_DATAGRAMS_PER_READ
    finally:
        receiver.close()
        sender.close()


def test_without_a_socket_every_datagram_is_its_own_batch() -> None:
    batches: list[list[tuple[bytes, TransportAddress]]] = []
    proto = SipDatagramProtocol(batches.append, 1 << 20)
    proto.datagram_received(b"x", ("127.0.0.1", 5060))
    proto.datagram_received(b"y", ("127.0.0.1", 5060))
    assert [[d for d, _ in b] for b in batches] == [[b"x"], [b"y"]]


async def test_a_burst_reaches_the_core_and_is_transmitted_once() -> None:
    core = FakeCore()
    async with SipTransportManager(UDP_ONLY, lambda b: core) as manager:
        flushes = 0
        original = manager._flush_output

        def counting_flush() -> None:
            nonlocal flushes
            flushes += 1
            original()

        manager._flush_output = counting_flush  # type: ignore[method-assign]
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        try:
            for i in range(20):
                peer.sendto(options(f"burst{i}"), manager.local_addresses["udp"])
            await until(lambda: len(core.datagrams) == 20)
            assert [d for d, _, _ in core.datagrams] == [options(f"burst{i}") for i in range(20)]
            # Far fewer transmit rounds than datagrams (one per batch read, plus timers).
            assert flushes < 20
            # Every datagram of one batch gets the same `now`.
            assert len({now for _, _, now in core.datagrams}) <= flushes
        finally:
            peer.close()


async def test_the_timer_fires_within_the_slack_after_the_deadline() -> None:
    core = FakeCore()
    loop = asyncio.get_running_loop()
    async with SipTransportManager(UDP_ONLY, lambda b: core) as manager:
        deadline = loop.time() + 0.02
        core.deadline = deadline
        core.on_timer = lambda now: setattr(core, "deadline", None)
        manager.transmit()
        handle: Any = manager._timer
        assert handle is not None
        assert handle.when() == deadline + TIMER_SLACK
        # A later deadline inside the armed window keeps the armed timer...
        core.deadline = deadline + TIMER_SLACK / 2
        manager.transmit()
        assert manager._timer is handle
        # ...an earlier one moves it.
        core.deadline = deadline - 0.01
        manager.transmit()
        assert manager._timer is not handle
        await until(lambda: core.timer_calls)
        assert core.timer_calls[0] >= deadline - 0.01
