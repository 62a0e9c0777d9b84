"""SIP over UDP through the transport manager, and the core-driving loop (timer, activity)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest
from transport_fake_core import FakeCore, answer_ok, options, until

from sipxmpp.gateway.runtime.mallocpolicy import MMAP_THRESHOLD
from sipxmpp.gateway.sip.address import TransportAddress
from sipxmpp.gateway.transport import (
    ListenAddress,
    SipTransportManager,
    TransportConfig,
    TransportLimits,
)
from sipxmpp.gateway.transport.config import UDP_SOCKET_BUFFER
from sipxmpp.gateway.transport.sip_udp import MAX_DATAGRAM_BYTES

UDP_ONLY = TransportConfig(udp=ListenAddress(), tcp=None)


class UdpPeer(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[tuple[bytes, tuple[str, int]]] = []
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append((data, addr))


async def udp_peer() -> tuple[UdpPeer, tuple[str, int]]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(UdpPeer, local_addr=("127.0.0.1", 0))
    return proto, transport.get_extra_info("sockname")


async def test_bound_ports_reach_the_core_factory() -> None:
    seen: list[dict[str, tuple[str, int]]] = []
    core = FakeCore()

    def factory(bound: Any) -> FakeCore:
        seen.append(dict(bound))
        return core

    async with SipTransportManager(TransportConfig(), factory) as manager:
        bound = manager.local_addresses
        assert set(bound) == {"udp", "tcp"}
        assert bound["udp"][0] == "127.0.0.1" and bound["udp"][1] > 0
        assert bound["tcp"][1] > 0
        assert seen == [bound]
        assert manager.core is core


async def test_udp_request_answered_to_its_source() -> None:
    core = FakeCore(responder=answer_ok)
    activity: list[int] = []
    async with SipTransportManager(
        UDP_ONLY, lambda b: core, on_activity=lambda: activity.append(1)
    ) as manager:
        peer, peer_addr = await udp_peer()
        peer.transport.sendto(options("u1"), manager.local_addresses["udp"])
        await until(lambda: peer.received)
        data, from_addr = peer.received[0]
        assert data.startswith(b"SIP/2.0 200 OK") and b"Call-ID: u1" in data
        # Responses leave from the listening port (RFC 3261 §18.1.1 / rport).
        assert from_addr == manager.local_addresses["udp"]
        message, source = core.messages[0]
        assert source == TransportAddress("udp", "127.0.0.1", peer_addr[1])
        assert activity, "on_activity must run after the core was fed"
        peer.transport.close()


async def test_udp_request_sent_to_a_host_name() -> None:
    core = FakeCore()
    async with SipTransportManager(UDP_ONLY, lambda b: core) as manager:
        peer, peer_addr = await udp_peer()
        core.queue(TransportAddress("udp", "localhost", peer_addr[1]), options("by-name"))
        manager.transmit()
        await until(lambda: peer.received)
        assert b"Call-ID: by-name" in peer.received[0][0]
        peer.transport.close()


def _rmem_max() -> int:
    try:
        return int(Path("/proc/sys/net/core/rmem_max").read_text())
    except OSError:  # pragma: no cover - not Linux
        return 0


async def test_udp_without_listener_or_resolution_is_a_transport_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    core = FakeCore()
    async with SipTransportManager(TransportConfig(udp=None), lambda b: core) as manager:
        dest = TransportAddress("udp", "127.0.0.1", 5060)
        core.queue(dest, options("nolistener"))
        manager.transmit()
        assert core.errors == [dest]

    # A failing host-name lookup (patched: the test must not query real DNS servers).
    async def no_such_host(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", no_such_host)
    core = FakeCore()
    async with SipTransportManager(UDP_ONLY, lambda b: core) as manager:
        dest = TransportAddress("udp", "no-such-host.test", 5060)
        core.queue(dest, options("unresolvable"))
        manager.transmit()
        await until(lambda: core.errors)
        assert core.errors == [dest]


async def test_udp_socket_buffers_are_enlarged() -> None:
    async with SipTransportManager(UDP_ONLY, lambda b: FakeCore()) as manager:
        assert manager._udp is not None and manager._udp.transport is not None
        sock = manager._udp.transport.get_extra_info("socket")
        rcv = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        # Linux doubles the value and clamps it to rmem_max (for unprivileged processes).
        expected = min(UDP_SOCKET_BUFFER, _rmem_max() or UDP_SOCKET_BUFFER)
        assert rcv >= expected


async def test_udp_reads_fit_the_largest_datagram_below_the_mmap_threshold() -> None:
    # asyncio's default read size (256 KiB) would make every read its own mapping
    # (runtime/mallocpolicy.py); the largest IPv4 UDP payload still arrives whole.
    core = FakeCore()
    async with SipTransportManager(UDP_ONLY, lambda b: core) as manager:
        assert manager._udp is not None and manager._udp.transport is not None
        assert manager._udp.transport.max_size == MAX_DATAGRAM_BYTES  # type: ignore[attr-defined]
        assert MAX_DATAGRAM_BYTES < MMAP_THRESHOLD
        peer, _ = await udp_peer()
        big = options("big") + b"x" * (65_507 - len(options("big")))
        peer.transport.sendto(big, manager.local_addresses["udp"])
        await until(lambda: core.datagrams)
        assert core.datagrams[0][0] == big
        peer.transport.close()


async def test_udp_send_queue_is_bounded() -> None:
    limits = TransportLimits(write_buffer_high_water=1024, write_buffer_limit=2048)
    core = FakeCore()
    config = TransportConfig(udp=ListenAddress(), tcp=None, limits=limits)
    async with SipTransportManager(config, lambda b: core) as manager:
        udp = manager._udp
        assert udp is not None
        # A datagram larger than the whole queue limit is dropped rather than buffered.
        core.queue(TransportAddress("udp", "127.0.0.1", 9), b"x" * 4096)
        manager.transmit()
        assert udp.dropped == 1


async def test_single_timer_drives_the_core() -> None:
    core = FakeCore()
    loop = asyncio.get_running_loop()
    async with SipTransportManager(UDP_ONLY, lambda b: core) as manager:
        deadline = loop.time() + 0.05
        core.deadline = deadline

        def fired(now: float) -> None:
            core.deadline = None

        core.on_timer = fired
        # Re-arming with an unchanged deadline keeps one handle, not one per call.
        for _ in range(5):
            manager.transmit()
        handle = manager._timer
        assert handle is not None
        manager.transmit()
        assert manager._timer is handle
        await until(lambda: core.timer_calls)
        await asyncio.sleep(0.05)
        assert len(core.timer_calls) == 1
        # The core is never handed a `now` before the deadline it asked for.
        assert core.timer_calls[0] >= deadline
        assert manager._timer is None


async def test_timer_moves_when_the_deadline_changes() -> None:
    core = FakeCore()
    loop = asyncio.get_running_loop()
    async with SipTransportManager(UDP_ONLY, lambda b: core) as manager:
        core.deadline = loop.time() + 30
        manager.transmit()
        first = manager._timer
        core.deadline = loop.time() + 0.02
        manager.transmit()
        assert manager._timer is not first
        core.on_timer = lambda now: setattr(core, "deadline", None)
        await until(lambda: core.timer_calls)
        assert len(core.timer_calls) == 1


async def test_core_exception_does_not_break_the_edge(caplog: pytest.LogCaptureFixture) -> None:
    core = FakeCore(responder=answer_ok, fail_on_receive=True)
    async with SipTransportManager(UDP_ONLY, lambda b: core) as manager:
        peer, _ = await udp_peer()
        peer.transport.sendto(options("boom"), manager.local_addresses["udp"])
        await until(lambda: "SIP core failed" in caplog.text)
        core.fail_on_receive = False
        peer.transport.sendto(options("fine"), manager.local_addresses["udp"])
        await until(lambda: peer.received)
        assert b"Call-ID: fine" in peer.received[0][0]
        peer.transport.close()


async def test_reentrant_transmit_from_on_activity() -> None:
    """The runtime drives the core from on_activity and calls transmit() again."""
    core = FakeCore()
    peer_holder: list[tuple[str, int]] = []
    manager_holder: list[SipTransportManager] = []
    calls = {"n": 0}

    def on_activity() -> None:
        calls["n"] += 1
        if peer_holder and calls["n"] == 2:
            core.queue(TransportAddress("udp", *peer_holder[0]), options("from-runtime"))
            manager_holder[0].transmit()  # nested: folded into the running transmit

    async with SipTransportManager(UDP_ONLY, lambda b: core, on_activity=on_activity) as manager:
        manager_holder.append(manager)
        peer, peer_addr = await udp_peer()
        peer_holder.append(peer_addr)
        manager.transmit()
        await until(lambda: peer.received)
        assert b"from-runtime" in peer.received[0][0]
        peer.transport.close()


async def test_stop_is_idempotent_and_start_once() -> None:
    manager = SipTransportManager(UDP_ONLY, lambda b: FakeCore())
    await manager.start()
    with pytest.raises(RuntimeError):
        await manager.start()
    await manager.stop()
    await manager.stop()


def test_core_before_start_is_an_error() -> None:
    manager = SipTransportManager(UDP_ONLY, lambda b: FakeCore())
    with pytest.raises(RuntimeError):
        _ = manager.core


@pytest.mark.parametrize(
    "kwargs",
    [
        {"host": "localhost"},
        {"host": "127.0.0.1", "port": 70000},
    ],
)
def test_listen_address_validation(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ListenAddress(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_connections": 0},
        {"write_buffer_high_water": 10, "write_buffer_limit": 5},
        {"connect_timeout": 0},
    ],
)
def test_limits_validation(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        TransportLimits(**kwargs)


def test_tls_listener_needs_a_certificate() -> None:
    with pytest.raises(ValueError):
        TransportConfig(tls_listen=ListenAddress())
