"""The SIP endpoint façade: bytes and ``now`` in, events and bytes out (sans-I/O).

Theory of operation
-------------------
:class:`SipEndpoint` is what the transport edge and the runtime talk to (design practice
1). The edge feeds it what arrived (``receive_datagram`` for UDP, ``receive_stream_data``
for TCP/TLS with the edge's connection id in ``source.connection``), drains
``data_to_send()`` and ``close_connections()`` after every call, and keeps one timer armed
at ``next_deadline()`` that calls ``handle_timer(now)``. The runtime (the transaction user,
TU) drains ``next_event()`` and answers with ``send_response`` / starts transactions with
``send_request``.

The layers, bottom up:

1. Framing and parsing (:mod:`.parser`): a datagram is one message; a stream has one
   :class:`~.parser.StreamFramer` per connection. A CRLF-only datagram is a keep-alive
   and ignored; a CRLFCRLF ping on a stream is answered with a CRLF pong (RFC 5626
   §3.5.1).
2. What the endpoint decides alone, before any transaction exists, each reported as a
   :class:`~.events.MessageRejected` event for the logs:

   * a request the parser refuses is answered with the parser's status hint (400, 413,
     416, 501, 505, 513 ...) built from what could be read, when its Via is usable
     (otherwise nothing can be sent back, §18.2.2, and it is dropped); an ACK is never
     answered; a malformed response is dropped (§18.1.2);
   * a stream whose framing is lost (``fatal``) is answered as above if possible and
     then listed in ``close_connections()``; later bytes from it are ignored;
   * ``Max-Forwards: 0`` gets 483 (RFC 3261 §16.3 step 3, §8.2 via §20.22), except for
     OPTIONS, which the gateway answers as the final recipient ("If the request is an
     OPTIONS request, the element MAY act as the final recipient", §16.3 and §11);
   * a stray ACK or response (one that matches no transaction) is dropped.
3. The top Via of every request is stamped with ``received``/``rport`` (RFC 3261
   §18.2.1, RFC 3581 §4) so that the TU's responses, which copy it, route back.
4. The transaction layer (:mod:`.transaction_layer`) matches, absorbs retransmissions,
   runs the timers and emits the TU events.

Errors: a peer's garbage never raises out of the ``receive_*`` methods (it becomes an
answer, a drop, or a close). The TU's mistakes raise :class:`~.errors.LocalSipError`.
"""

from __future__ import annotations

from collections import deque

from .address import TransportAddress
from .errors import LocalSipError, RemoteSipError
from .events import MessageRejected, SipEvent
from .grammar import Via, parse_max_forwards
from .ids import IdGenerator
from .message import Message, Request, Response
from .parser import PONG, KeepAlive, SipParseError, StreamFramer, is_keepalive, parse_message
from .transaction import TxState
from .transaction_layer import (
    EndpointConfig,
    TransactionLayer,
    replace_top_via,
    response_target,
    top_via,
)

__all__ = ["SipEndpoint", "EndpointConfig"]


class SipEndpoint:
    """A sans-I/O SIP endpoint (transport + transaction layers). See the module docstring."""

    def __init__(self, config: EndpointConfig, ids: IdGenerator) -> None:
        self.config = config
        self._ids = ids
        self._events: deque[SipEvent] = deque()
        self._outbox: list[tuple[TransportAddress, bytes]] = []
        self._to_close: list[int] = []
        self._closing: set[int] = set()
        self._framers: dict[int, StreamFramer] = {}
        self._layer = TransactionLayer(config, ids, self._events, self._outbox)

    # -- transport edge: input -----------------------------------------------------------

    def receive_datagram(self, data: bytes, source: TransportAddress, now: float) -> None:
        """One UDP datagram from ``source``."""
        if is_keepalive(data):
            return
        try:
            msg = parse_message(data)
        except SipParseError as exc:
            self._refuse(exc, source)
            return
        self._dispatch(msg, source, now)

    def receive_stream_data(self, data: bytes, source: TransportAddress, now: float) -> None:
        """Bytes read from the stream connection ``source.connection``."""
        conn = source.connection
        if conn is None:
            raise LocalSipError("stream data needs source.connection")
        if conn in self._closing:
            return  # framing lost; the edge is closing the connection
        framer = self._framers.get(conn)
        if framer is None:
            framer = self._framers[conn] = StreamFramer()
        for item in framer.feed_all(data):
            if isinstance(item, KeepAlive):
                self._outbox.append((source, PONG))
            elif isinstance(item, SipParseError):
                self._refuse(item, source)
                if item.fatal:
                    self._closing.add(conn)
                    self._to_close.append(conn)
                    del self._framers[conn]
                    self._events.append(
                        MessageRejected(source, None, "stream framing lost; closing connection")
                    )
            else:
                self._dispatch(item, source, now)

    def connection_lost(self, connection: int, now: float) -> None:
        """The edge's stream connection ``connection`` is closed (by either side)."""
        self._framers.pop(connection, None)
        self._closing.discard(connection)
        self._layer.connection_lost(connection, now)

    def transport_error(self, destination: TransportAddress, now: float) -> None:
        """The edge could not deliver bytes to ``destination`` (connection refused, TLS
        failure, ICMP error): the transactions bound there fail (RFC 3261 §17.1.4,
        §17.2.4) with a :class:`~.events.TransportFailed` event."""
        self._layer.transport_error(destination, now)

    # -- transaction user ------------------------------------------------------------------

    def send_request(self, request: Request, destination: TransportAddress, now: float) -> str:
        """Send ``request`` (built without Via) to ``destination``; return the client
        transaction key. An ACK (for a 2xx, §13.2.2.4) is sent without a transaction."""
        return self._layer.send_request(request, destination, now)

    def send_response(self, response: Response, now: float) -> None:
        """Send the TU's response through its server transaction (§17.2.3 matching)."""
        self._layer.send_response(response, now)

    def cancel(self, transaction: str, now: float) -> str | None:
        """CANCEL an INVITE client transaction (§9.1); returns the CANCEL's key or None."""
        return self._layer.cancel(transaction, now)

    def cancelled_transaction(self, transaction: str) -> str | None:
        """For a received CANCEL's transaction, the INVITE server transaction it cancels
        (§9.2), while that one exists: the TU answers it 487 and the CANCEL 200."""
        return self._layer.cancelled_transaction(transaction)

    def transaction_state(self, transaction: str) -> TxState | None:
        """State of a live transaction (None once it is gone)."""
        return self._layer.state_of(transaction)

    @property
    def transaction_count(self) -> int:
        return len(self._layer)

    def next_event(self) -> SipEvent | None:
        return self._events.popleft() if self._events else None

    # -- transport edge: output ----------------------------------------------------------

    def data_to_send(self) -> list[tuple[TransportAddress, bytes]]:
        """Drain the bytes to send, in order. A destination with ``connection`` set goes
        on that connection; without, the edge uses (or opens) one to host:port."""
        out = list(self._outbox)
        self._outbox.clear()
        return out

    def close_connections(self) -> list[int]:
        """Drain the stream connections to close (after sending what is queued for them)."""
        out, self._to_close = self._to_close, []
        return out

    def next_deadline(self) -> float | None:
        return self._layer.next_deadline()

    def handle_timer(self, now: float) -> None:
        self._layer.handle_timer(now)

    # -- internals -----------------------------------------------------------------------

    def _dispatch(self, msg: Message, source: TransportAddress, now: float) -> None:
        try:
            if isinstance(msg, Response):
                self._layer.receive_response(msg, source, now)
                return
            self._receive_request(msg, source, now)
        except RemoteSipError as exc:
            # Defensive: the parser validated what the layers read, so this means a
            # message the grammar accepts in one place and refuses in another.
            self._events.append(MessageRejected(source, None, f"dropped: {exc.msg}"))

    def _stamp(self, request: Request, source: TransportAddress) -> tuple[Request, Via]:
        """Stamp received/rport on the top Via (§18.2.1, RFC 3581 §4)."""
        via = top_via(request.headers)
        if via is None:
            raise RemoteSipError("no Via", 400)
        stamped = via.with_received(source.host, source.port)
        if stamped != via:
            request = Request(
                request.method,
                request.uri,
                replace_top_via(request.headers, stamped),
                request.body,
                request.version,
            )
        return request, stamped

    def _receive_request(self, request: Request, source: TransportAddress, now: float) -> None:
        try:
            request, stamped = self._stamp(request, source)
        except (RemoteSipError, LocalSipError):
            self._events.append(MessageRejected(source, None, "request with unusable Via"))
            return
        if request.method != "ACK":
            max_forwards = request.headers.get("Max-Forwards")
            if max_forwards is not None and max_forwards != "70":
                try:
                    hops = parse_max_forwards(max_forwards)
                except RemoteSipError:
                    self._layer.reply_stateless(
                        request,
                        400,
                        response_target(stamped, source),
                        "bad Max-Forwards",
                        reason="Malformed Max-Forwards",
                    )
                    return
                if hops == 0 and request.method != "OPTIONS":
                    self._layer.reply_stateless(
                        request, 483, response_target(stamped, source), "Max-Forwards is 0"
                    )
                    return
        self._layer.receive_request(request, stamped, source, now)

    def _refuse(self, exc: SipParseError, source: TransportAddress) -> None:
        """Answer (or drop) a message the parser refused."""
        request = exc.request
        if request is None:
            self._events.append(MessageRejected(source, None, f"unparsable message: {exc.msg}"))
            return
        if request.method == "ACK":
            self._events.append(MessageRejected(source, None, f"bad ACK dropped: {exc.msg}"))
            return
        try:
            request, stamped = self._stamp(request, source)
        except (RemoteSipError, LocalSipError):
            self._events.append(
                MessageRejected(source, None, f"no usable Via to answer: {exc.msg}")
            )
            return
        try:
            self._layer.reply_stateless(
                request,
                exc.status_hint,
                response_target(stamped, source),
                exc.msg,
                reason=exc.reason_hint,
            )
        except LocalSipError:
            # The request is too broken for a response we can write (e.g. a To that
            # make_response cannot tag); nothing can be sent back.
            self._events.append(MessageRejected(source, None, f"unanswerable: {exc.msg}"))
