"""What the transport edge needs from a sans-I/O SIP core.

The edge drives the core the way aioquic's asyncio protocol drives ``QuicConnection``:
bytes in (with ``loop.time()`` as ``now``), then ``data_to_send()`` is flushed to the
sockets, ``close_connections()`` is honoured, and one ``loop.call_at`` handle is re-armed
for ``next_deadline()``. :class:`sipxmpp.gateway.sip.core.SipEndpoint` satisfies this
protocol; tests use a small recording fake.
"""

from __future__ import annotations

from typing import Protocol

from sipxmpp.gateway.sip.address import TransportAddress

__all__ = ["SipCore"]


class SipCore(Protocol):
    """The methods of the SIP core that the transport edge calls."""

    def receive_datagram(self, data: bytes, source: TransportAddress, now: float) -> None:
        """One UDP datagram arrived from ``source``."""

    def receive_stream_data(self, data: bytes, source: TransportAddress, now: float) -> None:
        """Bytes arrived on the stream connection ``source.connection`` (TCP or TLS)."""

    def connection_lost(self, connection: int, now: float) -> None:
        """The established stream connection with this id closed."""

    def transport_error(self, destination: TransportAddress, now: float) -> None:
        """Bytes for ``destination`` (as the core addressed them) could not be delivered:
        the connection to it could not be opened or verified, or there is no way to
        send there at all (RFC 3261 §18.4: reported to the transaction layer)."""

    def data_to_send(self) -> list[tuple[TransportAddress, bytes]]:
        """Drain what the core wants written, each with its destination."""
        ...

    def close_connections(self) -> list[int]:
        """Drain the ids of stream connections the core wants closed (framing lost)."""
        ...

    def next_deadline(self) -> float | None:
        """The earliest time (same clock as ``now``) at which :meth:`handle_timer` is due."""
        ...

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at ``now``."""
