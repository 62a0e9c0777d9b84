"""One SIP-over-TCP or SIP-over-TLS connection as an asyncio protocol.

Theory of operation
-------------------
The connection is mechanism only; policy lives in its owner (the transport manager):

* Bytes read are handed to the owner unparsed: stream framing (RFC 3261 §18.3,
  Content-Length) happens in the sans-I/O core, per connection id.
* Writes are whole SIP messages from the core. Before the connection is up (outbound,
  still connecting or handshaking) they wait in a bounded queue; afterwards they go to the
  asyncio transport, whose buffer is bounded too: above ``write_buffer_high_water`` the
  connection stops *reading* from the peer (backpressure on a peer that sends but does not
  read), and a write that would take the buffer past ``write_buffer_limit`` drops the
  connection. Memory per connection is therefore bounded.
* Maintenance runs on one ``call_at`` handle per connection, checked lazily: closing after
  ``idle_timeout`` without SIP traffic, RFC 5626 §3.5.1 CRLF keep-alive pings on idle
  *outbound* connections (the flow's initiator pings; the core answers pings it receives),
  and, optionally, RFC 5626 §4.4.1 failure detection when no byte follows a ping within the
  pong timeout. Keep-alive bytes never count as SIP traffic, so a pinged connection that
  carries nothing else still idles out.
* TCP_NODELAY is set on every socket: SIP messages are small and latency-bound, and Nagle's
  algorithm would hold a response back until the previous segment is acknowledged.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

from sipxmpp.gateway.sip.address import TransportAddress

__all__ = [
    "STREAM_READ_BYTES",
    "StreamOwner",
    "StreamPolicy",
    "SipStreamConnection",
    "ConnectionState",
    "PING",
    "PONG",
]

log = logging.getLogger(__name__)

#: RFC 5626 §3.5.1: the keep-alive ping is a double CRLF, the pong a single CRLF.
PING = b"\r\n\r\n"
PONG = b"\r\n"

#: RFC 5626 §4.4.1: each keep-alive interval is drawn between 80% and 100% of the nominal one,
#: so that many flows started together do not ping in lockstep.
KEEPALIVE_JITTER_MIN = 0.8

#: Bytes read per readiness event on a plain TCP connection (SIP or MSRP). asyncio's default
#: of 256 KiB is above glibc's mmap threshold (``runtime/mallocpolicy.py``, 128 KiB), so every
#: read would ``mmap`` a fresh buffer, ``mremap`` it to the bytes read and ``munmap`` it when
#: done: three system calls per read. 64 KiB is still dozens of SIP messages or MSRP chunks
#: (RFC 4975 §7.1.1 suggests 2 KB chunks) per system call.
STREAM_READ_BYTES = 64 * 1024

#: asyncio may run a ``call_at`` callback up to its clock resolution early; due times within
#: this slack count as reached, so a timer never re-arms itself for the same instant.
TIMER_SLACK = 1e-3


class ConnectionState(enum.Enum):
    CONNECTING = "connecting"  # outbound, before connection_made (TCP connect + TLS handshake)
    OPEN = "open"
    CLOSING = "closing"  # close() called, buffer draining
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class StreamPolicy:
    """Per-connection limits and maintenance periods (from the transport config)."""

    write_buffer_high_water: int
    write_buffer_limit: int
    keepalive_interval: float | None
    keepalive_pong_timeout: float | None
    idle_timeout: float | None


class StreamOwner(Protocol):
    """Callbacks of the connection into the manager that owns it."""

    def stream_connected(self, conn: SipStreamConnection) -> bool:
        """The connection is up (TLS handshake done). False refuses it (it is aborted)."""
        ...

    def stream_data(self, conn: SipStreamConnection, data: bytes) -> None:
        """Bytes arrived on an accepted connection."""

    def stream_closed(self, conn: SipStreamConnection) -> None:
        """The connection is gone, for whatever reason."""


class SipStreamConnection(asyncio.Protocol):
    """A TCP or TLS connection carrying SIP; see the module docstring."""

    def __init__(
        self,
        owner: StreamOwner,
        conn_id: int,
        transport_name: Literal["tcp", "tls"],
        policy: StreamPolicy,
        loop: asyncio.AbstractEventLoop,
        rng: random.Random,
        *,
        outbound: bool,
        remote: tuple[str, int] | None = None,
        expected_identity: str | None = None,
    ) -> None:
        self.owner = owner
        self.id = conn_id
        self.transport_name: Literal["tcp", "tls"] = transport_name
        self.policy = policy
        self.outbound = outbound
        #: Outbound TLS: the SIP domain (or IP literal) the server's certificate must prove.
        self.expected_identity = expected_identity
        self.state = ConnectionState.CONNECTING
        self.remote: tuple[str, int] = remote if remote is not None else ("", 0)
        self.local: tuple[str, int] = ("", 0)
        #: The peer's verified certificate (getpeercert() dict); empty when none.
        self.peer_cert: Mapping[str, Any] = {}
        #: The identity reported to the core in ``TransportAddress.peer_identity``.
        self.peer_identity: str | None = None
        self.reading_paused = False
        #: True once the owner accepted the connection: only then does the core know its id.
        self.established = False
        #: Outbound, before establishment: where the queued messages were addressed (by the
        #: core, without connection id), so a failed connect can be reported per destination.
        self.destinations: dict[tuple[str, str, int], TransportAddress] = {}
        self._loop = loop
        self._rng = rng
        self._transport: asyncio.Transport | None = None
        self._pending: list[bytes] = []
        self._pending_size = 0
        now = loop.time()
        self.last_traffic = now  # last SIP message in either direction
        self.last_sent = now  # last bytes we wrote (SIP or ping)
        self._ping_sent_at: float | None = None
        self._keepalive_delay = self._draw_keepalive_delay()
        self._timer: asyncio.TimerHandle | None = None
        self._address: TransportAddress | None = None

    # ------------------------------------------------------------------ identity / info
    @property
    def address(self) -> TransportAddress:
        """The peer as the core sees it: transport, host, port, connection id, identity."""
        if self._address is None:
            self._address = TransportAddress(
                self.transport_name,
                self.remote[0],
                self.remote[1],
                connection=self.id,
                peer_identity=self.peer_identity,
            )
        return self._address

    @property
    def is_open(self) -> bool:
        return self.state is ConnectionState.OPEN

    @property
    def usable(self) -> bool:
        """Can accept writes (open, or still connecting with a queue)."""
        return self.state in (ConnectionState.OPEN, ConnectionState.CONNECTING)

    def buffered(self) -> int:
        """Bytes queued and not yet handed to the kernel."""
        if self._transport is not None and self.state is not ConnectionState.CONNECTING:
            return self._transport.get_write_buffer_size()
        return self._pending_size

    # ------------------------------------------------------------------ asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        tr = cast(asyncio.Transport, transport)
        if self.state is not ConnectionState.CONNECTING:
            # Given up (closed or over its queue limit) while the connect was in flight.
            tr.abort()
            return
        self._transport = tr
        # asyncio's plain TCP transport reads ``max_size`` bytes per readiness event (256
        # KiB by default); TLS transports have no such attribute and are left alone.
        if isinstance(getattr(tr, "max_size", None), int):
            tr.max_size = STREAM_READ_BYTES  # type: ignore[attr-defined]
        sock = tr.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError as exc:  # pragma: no cover - platform without TCP_NODELAY
                log.debug("connection %d: TCP_NODELAY not set: %s", self.id, exc)
        peer = tr.get_extra_info("peername")
        if peer:
            self.remote = (str(peer[0]), int(peer[1]))
        local = tr.get_extra_info("sockname")
        if local:
            self.local = (str(local[0]), int(local[1]))
        ssl_object = tr.get_extra_info("ssl_object")
        if isinstance(ssl_object, ssl.SSLObject):
            self.peer_cert = ssl_object.getpeercert() or {}
        tr.set_write_buffer_limits(
            high=self.policy.write_buffer_high_water, low=self.policy.write_buffer_high_water // 4
        )
        self.state = ConnectionState.OPEN
        now = self._loop.time()
        self.last_traffic = self.last_sent = now
        if not self.owner.stream_connected(self):
            self.abort()
            return
        self.established = True
        self.destinations.clear()
        self._address = None  # remote / identity are final now
        pending, self._pending, self._pending_size = self._pending, [], 0
        for chunk in pending:
            if not self._write_now(chunk):
                return
        self._schedule()

    def data_received(self, data: bytes) -> None:
        if self.state is not ConnectionState.OPEN:
            return
        now = self._loop.time()
        self._ping_sent_at = None  # any byte proves the flow alive (RFC 5626 §4.4.1)
        if data.strip(b"\r\n"):
            self.last_traffic = now
        self.owner.stream_data(self, data)

    def eof_received(self) -> bool:
        # A half-closed SIP connection is of no use to either side: close ours too.
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            log.debug("connection %d lost: %s", self.id, exc)
        self._finish()

    def pause_writing(self) -> None:
        # Backpressure: the peer is not reading; stop reading what it sends us.
        if self._transport is not None and not self.reading_paused:
            self.reading_paused = True
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None and self.reading_paused:
            self.reading_paused = False
            if not self._transport.is_closing():
                self._transport.resume_reading()

    # ------------------------------------------------------------------ writing / closing
    def note_destination(self, dest: TransportAddress) -> None:
        """Remember, until established, that bytes for ``dest`` wait on this connection."""
        if not self.established:
            plain = dest.without_connection()
            self.destinations.setdefault((plain.transport, plain.host.lower(), plain.port), plain)

    def write(self, data: bytes) -> bool:
        """Queue one whole SIP message. False (and the connection dropped) when over limit."""
        if self.state is ConnectionState.CONNECTING:
            if self._pending_size + len(data) > self.policy.write_buffer_limit:
                log.warning("connection %d: queue over limit while connecting; dropped", self.id)
                self.abort()
                return False
            self._pending.append(data)
            self._pending_size += len(data)
            return True
        if self.state is not ConnectionState.OPEN:
            return False
        self.last_traffic = self._loop.time()
        return self._write_now(data)

    def _write_now(self, data: bytes) -> bool:
        assert self._transport is not None
        if self._transport.get_write_buffer_size() + len(data) > self.policy.write_buffer_limit:
            log.warning(
                "connection %d to %s:%d: peer is not reading (%d bytes queued); dropped",
                self.id,
                *self.remote,
                self._transport.get_write_buffer_size(),
            )
            self.abort()
            return False
        self._transport.write(data)
        self.last_sent = self._loop.time()
        return True

    def close(self) -> None:
        """Close after the queued bytes are written."""
        if self.state in (ConnectionState.CLOSING, ConnectionState.CLOSED):
            return
        if self._transport is None:
            # Still connecting: the manager cancels the connect attempt.
            self._finish()
            return
        self.state = ConnectionState.CLOSING
        self._cancel_timer()
        self._transport.close()

    def abort(self) -> None:
        """Close at once, discarding queued bytes."""
        if self.state is ConnectionState.CLOSED:
            return
        if self._transport is None:
            self._finish()
            return
        self.state = ConnectionState.CLOSING
        self._cancel_timer()
        self._transport.abort()

    def _finish(self) -> None:
        if self.state is ConnectionState.CLOSED:
            return
        self.state = ConnectionState.CLOSED
        self._cancel_timer()
        self._pending.clear()
        self._pending_size = 0
        self.owner.stream_closed(self)

    # ------------------------------------------------------------------ maintenance
    def _draw_keepalive_delay(self) -> float:
        interval = self.policy.keepalive_interval
        if interval is None:
            return 0.0
        return interval * self._rng.uniform(KEEPALIVE_JITTER_MIN, 1.0)

    def _keepalive_enabled(self) -> bool:
        return self.outbound and self.policy.keepalive_interval is not None

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _next_due(self) -> float | None:
        due: list[float] = []
        if self.policy.idle_timeout is not None:
            due.append(self.last_traffic + self.policy.idle_timeout)
        if self._keepalive_enabled():
            due.append(self.last_sent + self._keepalive_delay)
        if self._ping_sent_at is not None and self.policy.keepalive_pong_timeout is not None:
            due.append(self._ping_sent_at + self.policy.keepalive_pong_timeout)
        return min(due) if due else None

    def _schedule(self) -> None:
        self._cancel_timer()
        if self.state is not ConnectionState.OPEN:
            return
        due = self._next_due()
        if due is not None:
            self._timer = self._loop.call_at(due, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.state is not ConnectionState.OPEN:
            return
        now = self._loop.time()
        reached = now + TIMER_SLACK
        policy = self.policy
        if policy.idle_timeout is not None and reached >= self.last_traffic + policy.idle_timeout:
            log.info("connection %d to %s:%d idle; closing", self.id, *self.remote)
            self.close()
            return
        pong_timeout = policy.keepalive_pong_timeout
        if (
            self._ping_sent_at is not None
            and pong_timeout is not None
            and reached >= self._ping_sent_at + pong_timeout
        ):
            log.warning(
                "connection %d to %s:%d: no keep-alive pong; flow failed", self.id, *self.remote
            )
            self.abort()
            return
        if self._keepalive_enabled() and reached >= self.last_sent + self._keepalive_delay:
            if not self._write_now(PING):
                return
            if self._ping_sent_at is None:
                self._ping_sent_at = now
            self._keepalive_delay = self._draw_keepalive_delay()
        self._schedule()
