"""The SIP-over-UDP socket as an asyncio datagram protocol.

One socket serves both directions: requests and responses leave from the listening port,
so the port in our Via sent-by is also where responses come back (RFC 3261 §18.1.1, and
RFC 3581 rport on the peer's side). The socket is created by the manager with large
SO_RCVBUF/SO_SNDBUF (see ``UDP_SOCKET_BUFFER``) and handed to asyncio.

Sending never blocks and never queues without bound: if asyncio already buffers more than
the write limit (the kernel refused datagrams), new datagrams are dropped. That is what
the network would do as well; the transaction layer retransmits over UDP (RFC 3261
§17.1.1.2, §17.1.2.2).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import cast

from sipxmpp.gateway.sip.address import TransportAddress

__all__ = ["SipDatagramProtocol", "make_udp_socket"]

log = logging.getLogger(__name__)


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
    """Hands every datagram to ``on_datagram(data, source)``; sends on request."""

    def __init__(
        self,
        on_datagram: Callable[[bytes, TransportAddress], None],
        write_limit: int,
    ) -> None:
        self._on_datagram = on_datagram
        self._write_limit = write_limit
        self.transport: asyncio.DatagramTransport | None = None
        self.dropped = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's selector datagram transport does not subclass DatagramTransport in 3.11.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        source = TransportAddress("udp", str(addr[0]), int(addr[1]))
        self._on_datagram(data, source)

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
