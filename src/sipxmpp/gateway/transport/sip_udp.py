"""The SIP-over-UDP socket as an asyncio datagram protocol.

One socket serves both directions: requests and responses leave from the listening port,
so the port in our Via sent-by is also where responses come back (RFC 3261 §18.1.1, and
RFC 3581 rport on the peer's side). The socket is created by the manager with large
SO_RCVBUF/SO_SNDBUF (see ``UDP_SOCKET_BUFFER``) and handed to asyncio.

Sending never blocks and never queues without bound: if asyncio already buffers more than
the write limit (the kernel refused datagrams), new datagrams are dropped. That is what
the network would do as well; the transaction layer retransmits over UDP (RFC 3261
§17.1.1.2, §17.1.2.2).

Reading is batched. asyncio's selector transport reads one datagram per readiness event,
so under load every datagram costs a full event-loop iteration, and the other sockets (the
XMPP stream) are served between any two of them. When asyncio hands over a datagram, the
protocol therefore keeps reading from the socket it was given (non-blocking, until it
would block, at most :data:`MAX_DATAGRAMS_PER_READ`) and delivers the whole batch in one
``on_datagrams`` call, so the core is driven, and its output flushed, once per batch.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import cast

from sipxmpp.gateway.sip.address import TransportAddress

__all__ = [
    "MAX_DATAGRAMS_PER_READ",
    "MAX_DATAGRAM_BYTES",
    "SipDatagramProtocol",
    "make_udp_socket",
]

log = logging.getLogger(__name__)

#: Datagrams read in one go after asyncio reports the socket readable. Large enough that a
#: burst at 10,000 msg/s costs a handful of loop iterations and keeps pace with the XMPP
#: side (which hands over up to ~200 stanzas per read, ``xmpp.stream.MAX_READ_BYTES``),
#: small enough that one batch holds up the other sockets for tens of milliseconds at most
#: and holds at most 16 MiB (256 * 64 KiB; in practice 256 * ~500 bytes).
MAX_DATAGRAMS_PER_READ = 256

#: Read size for every datagram (asyncio's first read of a batch too, see
#: :meth:`SipDatagramProtocol.connection_made`): the largest UDP payload (65,507 bytes over
#: IPv4, 65,527 over IPv6) fits, so no datagram is ever truncated. It is also below glibc's
#: mmap threshold (``runtime/mallocpolicy.py``, 128 KiB), so the read buffer comes from the
#: heap; asyncio's own 256 KiB made every read an ``mmap``, ``mremap`` and ``munmap``.
MAX_DATAGRAM_BYTES = 65536

#: Source addresses whose :class:`TransportAddress` is kept for reuse; a gateway talks to a
#: few proxies, so this only bounds a flood of spoofed sources (the table is then reset).
MAX_CACHED_SOURCES = 1024

Batch = list[tuple[bytes, TransportAddress]]


def make_udp_socket(
    host: str, port: int, family: socket.AddressFamily, buffer_size: int
) -> socket.socket:
    """A bound, non-blocking UDP socket with the requested kernel buffer sizes."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if buffer_size > 0:
            for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, opt, buffer_size)
                except OSError as exc:  # pragma: no cover - refused by a locked-down kernel
                    log.warning("UDP socket buffer option %s not set: %s", opt, exc)
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class SipDatagramProtocol(asyncio.DatagramProtocol):
    """Hands the datagrams to ``on_datagrams([(data, source), ...])``; sends on request.

    :param on_datagrams: receives every batch of datagrams, in arrival order.
    :param write_limit: bytes asyncio may buffer before new datagrams are dropped.
    :param sock: the (non-blocking) socket asyncio reads, so that the rest of a burst is
        read in the same batch; without it every datagram is its own batch.
    """

    def __init__(
        self,
        on_datagrams: Callable[[Batch], None],
        write_limit: int,
        sock: socket.socket | None = None,
    ) -> None:
        self._on_datagrams = on_datagrams
        self._write_limit = write_limit
        self._sock = sock
        self._sources: dict[tuple[str | int, ...], TransportAddress] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self.dropped = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's selector datagram transport does not subclass DatagramTransport in 3.11.
        self.transport = cast(asyncio.DatagramTransport, transport)
        # It reads ``max_size`` bytes per datagram (256 KiB by default); a transport
        # without the attribute is left alone.
        if isinstance(getattr(transport, "max_size", None), int):
            transport.max_size = MAX_DATAGRAM_BYTES  # type: ignore[attr-defined]

    def _source(self, addr: tuple[str | int, ...]) -> TransportAddress:
        source = self._sources.get(addr)
        if source is None:
            if len(self._sources) >= MAX_CACHED_SOURCES:
                self._sources.clear()
            source = self._sources[addr] = TransportAddress("udp", str(addr[0]), int(addr[1]))
        return source

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        batch: Batch = [(data, self._source(addr))]
        sock = self._sock
        if sock is not None and self.transport is not None:
            recvfrom = sock.recvfrom
            for _ in range(MAX_DATAGRAMS_PER_READ - 1):
                try:
                    more, more_addr = recvfrom(MAX_DATAGRAM_BYTES)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:  # e.g. an ICMP error reported on the socket
                    self.error_received(exc)
                    break
                batch.append((more, self._source(more_addr)))
        self._on_datagrams(batch)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (port unreachable etc.) surface here on Linux. The transaction layer
        # notices the missing response through its timers; nothing else to do.
        log.debug("UDP error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def send(self, data: bytes, addr: tuple[str, int]) -> bool:
        """Send one datagram; False when it was dropped (closed, or the queue is full)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        # Selector datagram transports buffer when the kernel says EAGAIN; typeshed does not
        # declare get_write_buffer_size() on DatagramTransport, but asyncio implements it.
        queued: int = transport.get_write_buffer_size()  # type: ignore[attr-defined]
        if queued + len(data) > self._write_limit:
            self.dropped += 1
            log.warning("UDP send queue full; datagram to %s:%d dropped", *addr)
            return False
        transport.sendto(data, addr)
        return True
