"""MSRP sessions and connections, sans-I/O (RFC 4975 §5.4, §7).

Theory of operation
-------------------
Three objects, stacked as design practice 4 asks (framing -> session):

* :class:`MsrpSessionTable` is the registry of every MSRP session of the gateway, keyed by
  the session-id of its local URI. It enforces the session limits and answers "which session
  does this To-Path name?" for every connection, which is what makes 481 and 506 decidable.
* :class:`MsrpSession` is one negotiated ``m=message`` stream: its local URI, the peer's
  path, its accept-types, its outgoing queue and its reassembly buffers. The application
  calls :meth:`MsrpSession.send_message` on it, even before it is bound: messages wait.
* :class:`MsrpConnection` is one TCP or TLS connection. It owns the framer, the output
  buffer, the event queue and the timers; it carries one or more bound sessions (§5.4
  allows sharing). The transport edge feeds it with ``receive_data(data, now)``, writes
  ``data_to_send()``, re-arms one timer at ``next_deadline()`` and drains ``next_event()``.

Binding (§5.4). The active endpoint opens the connection and calls :meth:`MsrpConnection.bind`,
which sends a bodiless SEND at once; the passive endpoint binds the session to the
connection on which the first SEND naming it arrives. A request whose To-Path names no
session gets 481; one naming a session bound to another connection gets 506; a From-Path
that is not the peer's negotiated URI gets 403 ([ours]: the request names our session but
comes from someone else).

Requests (§7.3). SEND chunks are checked in this order: session (481/506/403), method
(501 for anything but SEND and REPORT), media type against accept-types (415), size (413),
then stored for reassembly. Responses follow the request's Failure-Report (§7.1.4): ``yes``
(or absent) -> always, ``partial`` -> only non-200, ``no`` -> never. A REPORT is never
answered (§7.1.2). When a message completes and any chunk asked ``Success-Report: yes``, a
REPORT with ``Status: 000 200`` covering the whole message goes back (§7.1.2).

Our requests (§7.3). Every chunk sent with Failure-Report ``yes`` starts the 30 s
transaction timer; its expiry, a non-200 response or a failure REPORT fails the message
(:class:`~.events.SendFailed`) and stops its remaining chunks (§10: after 413 the sender
MUST stop). At most ``max_outstanding_chunks`` such chunks are in flight per connection;
queued messages take turns chunk by chunk.

Deferred delivery (an option of ours, not of the RFC). A session created with
``defer_delivery=True`` does not answer the chunk that completes a message, nor send its
Success-Report, by itself: it emits :class:`~.events.MessageReceived` and waits for the
application's verdict through :meth:`MsrpSession.answer_message` (200 once the message has
been handed on, e.g. to XMPP; a failure status otherwise). Only then do the response (per
Failure-Report, §7.1.4) and the REPORT (§7.1.2) go out, so a 200 or a Success REPORT never
claims a delivery that did not happen. Without a verdict within
:data:`DELIVERY_ANSWER_TIMEOUT` the core answers :data:`UNDELIVERED_STATUS` itself and emits
:class:`~.events.MessageAborted`. Holding the response also gives backpressure for free: a
sender keeps at most its window of unanswered chunks in flight (§7.3).

Time: every entry point that can start or fire a timer takes ``now`` (monotonic seconds).
"""

from __future__ import annotations

import enum
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .chunking import IncomingMessage, OutgoingMessage, binding_send
from .errors import LocalMsrpError, RemoteMsrpError, SessionLimitError, status_comment
from .events import (
    ConnectionFailed,
    MessageAborted,
    MessageReceived,
    MessageSent,
    MsrpEvent,
    ReportReceived,
    RequestRejected,
    ResponseReceived,
    SendFailed,
    SessionBound,
    SessionFailed,
)
from .message import (
    END_LINE_PREFIX,
    ByteRange,
    EndFlag,
    FailureReport,
    MsrpRequest,
    MsrpResponse,
    StatusHeader,
    media_type_matches,
    serialize,
)
from .parser import MsrpFramer, RawFrame, decode_frame, raw_from_path, raw_to_path
from .settings import (
    MAX_ID_ATTEMPTS,
    MESSAGE_ID_BITS,
    TRANSACTION_ID_BITS,
    IdGenerator,
    MsrpSettings,
    new_ident,
    new_session_id,
)
from .uri import MsrpUri

__all__ = [
    "SessionState",
    "MsrpSessionTable",
    "MsrpSession",
    "MsrpConnection",
    "ALWAYS_ACCEPTED_TYPES",
    "MAX_REFUSED_MESSAGE_IDS",
    "DELIVERY_ANSWER_TIMEOUT",
    "UNDELIVERED_STATUS",
    "MAX_PENDING_DELIVERIES",
]

#: §7.3.1 (and §8.6): endpoints must be able to receive multipart/mixed and
#: multipart/alternative whatever their accept-types say.
ALWAYS_ACCEPTED_TYPES: tuple[str, ...] = ("multipart/mixed", "multipart/alternative")

#: Message-IDs refused with 413 that we remember per session, so the chunks already in
#: flight get 413 too without being buffered (§10: the sender must stop). A small bound:
#: senders stop promptly, and forgetting an old id only costs another 413 computation.
MAX_REFUSED_MESSAGE_IDS = 64

#: Media types whose accept-types verdict a session remembers (§7.3.1 check on every SEND).
#: A peer uses a handful; past the bound the memory is simply started afresh.
MAX_REMEMBERED_TYPES = 32

#: Deferred delivery: how long a completed incoming message waits for the application's
#: verdict before the core answers it. Well below the sender's 30 s transaction timer
#: (§7.3) so the sender learns the outcome from our response, not from its own timeout.
DELIVERY_ANSWER_TIMEOUT = 10.0
#: Deferred delivery: the status of a message the application could not hand on in time.
#: §10: 408 is never sent in a response (it is for REPORTs and local timeouts), and the
#: request was well formed (not 400); 403 ("the action is not allowed") is the response
#: that tells the sender this message was refused, and its Failure-Report yes/partial
#: makes that a reported failure rather than a silent loss.
UNDELIVERED_STATUS = 403
#: Deferred delivery: completed messages awaiting a verdict per connection. The sender's
#: window bounds this already when it asks for responses; the bound covers senders that
#: use Failure-Report: no with Success-Report: yes. Over it, new messages get 403 at once.
MAX_PENDING_DELIVERIES = 256


class SessionState(enum.Enum):
    """Life cycle of an :class:`MsrpSession`."""

    UNBOUND = "unbound"
    """Created from SDP; no connection carries it yet."""
    BOUND = "bound"
    """Attached to a connection (§5.4)."""
    CLOSED = "closed"
    """Closed locally or failed; it never comes back."""


@dataclass(slots=True)
class _Transaction:
    """One request of ours that may still get a response."""

    session: MsrpSession
    transaction_id: str
    message: OutgoingMessage | None
    """None for the bodiless binding SEND."""
    deadline: float
    wants_response: bool
    """True with Failure-Report: yes (a 200 is expected, §7.1.4); False for ``partial``."""


@dataclass(slots=True)
class _PendingDelivery:
    """A completed incoming message whose response/REPORT waits for the application."""

    session: MsrpSession
    request: MsrpRequest
    """The chunk that completed the message: its response is the one held back."""
    report_to: tuple[MsrpUri, ...]
    size: int
    success_report: bool
    deadline: float


class MsrpSessionTable:
    """Registry of the gateway's MSRP sessions, shared by all connections."""

    def __init__(self, ids: IdGenerator, settings: MsrpSettings | None = None) -> None:
        self.ids = ids
        self.settings = settings or MsrpSettings()
        self._sessions: dict[str, MsrpSession] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def new_local_uri(
        self, host: str, port: int, *, secure: bool = False, transport: str = "tcp"
    ) -> MsrpUri:
        """A fresh local URI with an unguessable, unused session-id (§6)."""
        for _ in range(MAX_ID_ATTEMPTS):
            session_id = new_session_id(self.ids)
            if session_id not in self._sessions:
                return MsrpUri(
                    host=host, port=port, session_id=session_id, transport=transport, secure=secure
                )
        raise LocalMsrpError("could not draw an unused session-id")

    def create_session(
        self,
        local_uri: MsrpUri,
        *,
        remote_path: Sequence[MsrpUri] | None = None,
        accept_types: Sequence[str] = ("text/plain",),
        max_message_size: int | None = None,
        defer_delivery: bool = False,
    ) -> MsrpSession:
        """Register a session for a negotiated m=message stream.

        ``defer_delivery``: hold the response and Success-Report of each received message
        until :meth:`MsrpSession.answer_message` (see the module docstring).

        Raises :class:`SessionLimitError` when a session limit refuses it.
        """
        if local_uri.session_id is None:
            raise LocalMsrpError("a local MSRP URI needs a session-id (§6)")
        if local_uri.session_id in self._sessions:
            raise LocalMsrpError(f"session-id {local_uri.session_id!r} already in use")
        settings = self.settings
        if len(self._sessions) >= settings.max_sessions:
            raise SessionLimitError("too many MSRP sessions")
        path = tuple(remote_path) if remote_path else None
        if path is not None:
            peer = _peer_key(path)
            count = sum(1 for s in self._sessions.values() if s.peer_key == peer)
            if count >= settings.max_sessions_per_peer:
                raise SessionLimitError(f"too many MSRP sessions with {path[-1].host}")
        size = settings.max_message_size if max_message_size is None else max_message_size
        if not 1 <= size <= settings.max_message_size:
            # The framer of every connection cuts chunks at settings.max_message_size.
            raise LocalMsrpError("max_message_size must be within 1..settings.max_message_size")
        session = MsrpSession(self, local_uri, path, tuple(accept_types), size)
        session.defer_delivery = defer_delivery
        self._sessions[local_uri.session_id] = session
        return session

    def get(self, session_id: str) -> MsrpSession | None:
        """The session with this session-id, if any."""
        return self._sessions.get(session_id)

    def lookup(self, uri: MsrpUri) -> MsrpSession | None:
        """The session a To-Path URI names, compared by the §6.1 rules."""
        if uri.session_id is None:
            return None
        session = self._sessions.get(uri.session_id)
        if session is None or not session.local_uri.equivalent(uri):
            return None
        return session

    def sessions(self) -> tuple[MsrpSession, ...]:
        return tuple(self._sessions.values())

    def _forget(self, session: MsrpSession) -> None:
        self._sessions.pop(session.session_id, None)


def _peer_key(path: tuple[MsrpUri, ...]) -> str:
    return path[-1].comparison_key()[1]


class MsrpSession:
    """One MSRP session (one m=message stream). Create it with
    :meth:`MsrpSessionTable.create_session`."""

    def __init__(
        self,
        table: MsrpSessionTable,
        local_uri: MsrpUri,
        remote_path: tuple[MsrpUri, ...] | None,
        accept_types: tuple[str, ...],
        max_message_size: int,
    ) -> None:
        assert local_uri.session_id is not None
        self._table = table
        self.session_id: str = local_uri.session_id
        self.local_uri = local_uri
        self._remote_path = remote_path
        self.accept_types = accept_types
        self.max_message_size = max_message_size
        self.state = SessionState.UNBOUND
        self.connection: MsrpConnection | None = None
        self._queue: deque[OutgoingMessage] = deque()
        self._tracked: OrderedDict[str, OutgoingMessage] = OrderedDict()
        self._incoming: dict[str, IncomingMessage] = {}
        self._refused: OrderedDict[str, None] = OrderedDict()
        self.defer_delivery = False
        """Hold each received message's response until :meth:`answer_message`."""
        self._accepted: dict[str, bool] = {}

    # -- public API ----------------------------------------------------------------------
    @property
    def remote_path(self) -> tuple[MsrpUri, ...] | None:
        """The peer's SDP a=path (its own URI last), once known."""
        return self._remote_path

    @property
    def peer_key(self) -> str | None:
        return None if self._remote_path is None else _peer_key(self._remote_path)

    def set_remote_path(self, path: Sequence[MsrpUri]) -> None:
        """Record the peer's a=path (from the SDP answer when we offered)."""
        if not path:
            raise LocalMsrpError("a=path needs at least one URI (§8.2)")
        self._remote_path = tuple(path)

    def send_message(
        self,
        content_type: str,
        body: bytes,
        *,
        now: float,
        success_report: bool = False,
        failure_report: FailureReport = FailureReport.YES,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> str:
        """Queue a message; returns its new Message-ID (>= 64 random bits, §7.1.1).

        Chunks go out at once when the session is bound and the window allows, otherwise
        when it is bound. Raises :class:`LocalMsrpError` on a closed session, an invalid
        content type, a body over ``max_message_size`` or a full queue.
        """
        if self.state is SessionState.CLOSED:
            raise LocalMsrpError("the MSRP session is closed")
        if len(body) > self.max_message_size:
            raise LocalMsrpError("message larger than the session's max_message_size")
        if len(self._queue) >= self._table.settings.max_queued_messages:
            raise LocalMsrpError("too many queued outgoing MSRP messages")
        # Validate content type and headers now, not when the first chunk is built.
        validated = MsrpRequest(
            transaction_id="probe",
            method="SEND",
            to_path=(self.local_uri,),
            from_path=(self.local_uri,),
            message_id="probe",
            headers=headers,
            content_type=content_type,
            body=b"",
        )
        message_id = self._new_message_id()
        message = OutgoingMessage(
            message_id=message_id,
            content_type=validated.content_type or content_type,
            body=bytes(body),
            success_report=success_report,
            failure_report=failure_report,
            headers=headers,
        )
        self._queue.append(message)
        self._track(message)
        if self.connection is not None:
            self.connection._pump(now)
        return message_id

    def answer_message(
        self, message_id: str, status: int = 200, *, now: float, reason: str | None = None
    ) -> bool:
        """Deferred delivery: the application's verdict on a received message.

        200 sends the held response (per Failure-Report, §7.1.4) and the Success REPORT
        (§7.1.2, when asked); any other §10 status is sent as the response instead. Returns
        False when nothing waits for this Message-ID (not deferred, already answered, timed
        out, or the session is gone).
        """
        if not 200 <= status <= 999:
            raise LocalMsrpError(f"invalid MSRP status {status}")
        connection = self.connection
        if connection is None:
            return False
        return connection._answer_delivery(self, message_id, status, reason, now)

    def abort_message(self, message_id: str) -> bool:
        """Stop sending a queued message; chunks already sent are cancelled with ``#``
        (§7.1). Returns False if the message is not being sent any more."""
        for message in self._queue:
            if message.message_id == message_id:
                break
        else:
            return False
        self._queue.remove(message)
        if message.chunks_sent == 0:
            message.aborted = True
            return True
        if self.connection is not None and self._remote_path is not None:
            tid = self.connection._new_tid(b"")
            chunk = message.abort_chunk(tid, self._remote_path, (self.local_uri,))
            self.connection._write(chunk)
        else:
            message.aborted = True
        return True

    def close(self) -> tuple[str, ...]:
        """Close the session locally (e.g. after a SIP BYE) and forget it.

        Returns the Message-IDs of our messages that were not confirmed or not fully sent,
        so the caller can report them; no events are emitted for a local close.
        """
        if self.state is SessionState.CLOSED:
            return ()
        unfinished = self._unfinished()
        self._shutdown()
        return unfinished

    # -- internals -----------------------------------------------------------------------
    def _new_message_id(self) -> str:
        for _ in range(MAX_ID_ATTEMPTS):
            value = new_ident(self._table.ids, MESSAGE_ID_BITS)
            if value not in self._tracked:
                return value
        raise LocalMsrpError("could not draw an unused Message-ID")

    def _track(self, message: OutgoingMessage) -> None:
        self._tracked[message.message_id] = message
        limit = self._table.settings.max_tracked_messages
        while len(self._tracked) > limit:
            self._tracked.popitem(last=False)

    def _unfinished(self) -> tuple[str, ...]:
        ids = [m.message_id for m in self._queue]
        ids += [
            m.message_id
            for m in self._tracked.values()
            if m.unacked and not m.failed and not m.aborted and m.message_id not in ids
        ]
        return tuple(ids)

    def _shutdown(self) -> None:
        self.state = SessionState.CLOSED
        for message in (*self._queue, *self._tracked.values()):
            if not message.finished:
                message.failed = True  # reported (or returned by close()) exactly once
        self._queue.clear()
        self._incoming.clear()
        if self.connection is not None:
            self.connection._detach(self)
        self.connection = None
        self._table._forget(self)

    def _refuse(self, message_id: str) -> None:
        self._refused[message_id] = None
        while len(self._refused) > MAX_REFUSED_MESSAGE_IDS:
            self._refused.popitem(last=False)

    def _accepts(self, media_type: str) -> bool:
        known = self._accepted.get(media_type)
        if known is not None:
            return known
        patterns: Iterable[str] = (*self.accept_types, *ALWAYS_ACCEPTED_TYPES)
        verdict = any(media_type_matches(p, media_type) for p in patterns)
        if len(self._accepted) >= MAX_REMEMBERED_TYPES:
            self._accepted.clear()
        self._accepted[media_type] = verdict
        return verdict


class MsrpConnection:
    """One MSRP transport connection (TCP or TLS), sans-I/O."""

    def __init__(self, table: MsrpSessionTable) -> None:
        self._table = table
        self._settings = table.settings
        self._framer = MsrpFramer(max_body=self._max_body())
        self._out = bytearray()
        self._events: deque[MsrpEvent] = deque()
        self._sessions: dict[str, MsrpSession] = {}
        self._transactions: dict[str, _Transaction] = {}
        self._outstanding = 0
        self._closed = False
        self._pending: OrderedDict[tuple[str, str], _PendingDelivery] = OrderedDict()

    def _max_body(self) -> int:
        return self._settings.max_message_size

    # -- public API ----------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        """True once the connection is dead (fatal parse error or connection_lost()).
        The edge writes any remaining ``data_to_send()`` and closes the socket."""
        return self._closed

    @property
    def session_ids(self) -> tuple[str, ...]:
        """Sessions bound to this connection."""
        return tuple(self._sessions)

    def bind(self, session: MsrpSession, now: float) -> None:
        """Active side (§5.4): attach ``session`` and send the bodiless binding SEND."""
        if self._closed:
            raise LocalMsrpError("the MSRP connection is closed")
        if session.state is not SessionState.UNBOUND:
            raise LocalMsrpError(f"session {session.session_id} is {session.state.value}")
        if session.remote_path is None:
            raise LocalMsrpError("bind() needs the peer's a=path (set_remote_path)")
        if len(self._sessions) >= self._settings.max_sessions_per_connection:
            raise SessionLimitError("too many sessions on this MSRP connection")
        self._attach(session)
        tid = self._new_tid(b"")
        request = binding_send(
            tid,
            new_ident(self._table.ids, MESSAGE_ID_BITS),
            session.remote_path,
            (session.local_uri,),
        )
        self._write(request)
        self._add_transaction(_Transaction(session, tid, None, now + self._timeout(), True))
        self._pump(now)

    def receive_data(self, data: bytes, now: float) -> None:
        """Feed received octets; responses, reports and events are produced at once."""
        if self._closed:
            return
        self._framer.receive_data(data)
        while not self._closed:
            try:
                frame = self._framer.next_frame()
            except RemoteMsrpError as exc:
                self._fail_connection(exc.status, exc.msg)
                return
            if frame is None:
                break
            self._handle_frame(frame, now)
        self._pump(now)

    def next_event(self) -> MsrpEvent | None:
        """The next pending event, or None."""
        return self._events.popleft() if self._events else None

    def data_to_send(self) -> bytes:
        """Octets to write to the transport, in order; empties the output buffer."""
        if not self._out:
            return b""
        data = bytes(self._out)
        self._out.clear()
        return data

    @property
    def has_output(self) -> bool:
        """True while :meth:`data_to_send` or :meth:`next_event` has something to give."""
        return bool(self._out) or bool(self._events)

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` must next be called, or None."""
        deadlines: list[float] = []
        if self._transactions:
            deadlines.append(min(t.deadline for t in self._transactions.values()))
        if self._pending:
            # Insertion order is deadline order: every entry gets now + the same timeout.
            deadlines.append(next(iter(self._pending.values())).deadline)
        for session in self._sessions.values():
            if session._incoming:
                deadlines.append(min(m.deadline for m in session._incoming.values()))
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at ``now``: transaction timeouts (408, §7.3) and
        reassembly timeouts."""
        for tid, txn in list(self._transactions.items()):
            # A session failed earlier in this loop took its other transactions with it.
            if txn.deadline > now or tid not in self._transactions:
                continue
            self._remove_transaction(tid)
            if txn.message is None:
                self._fail_session(txn.session, 408, "no response to the binding SEND")
            elif txn.wants_response:
                self._fail_message(txn.session, txn.message, 408, "transaction timed out (§7.3)")
        for session in list(self._sessions.values()):
            for message_id, incoming in list(session._incoming.items()):
                if incoming.deadline <= now:
                    del session._incoming[message_id]
                    self._events.append(
                        MessageAborted(session.session_id, message_id, "reassembly timed out")
                    )
        while self._pending:
            key, pending = next(iter(self._pending.items()))
            if pending.deadline > now:
                break
            del self._pending[key]
            reason = "message not delivered in time"
            self._respond(
                pending.request,
                UNDELIVERED_STATUS,
                pending.session.local_uri,
                pending.session.session_id,
                reason,
            )
            self._events.append(
                MessageAborted(pending.session.session_id, key[1], reason, UNDELIVERED_STATUS)
            )
        self._pump(now)

    def connection_lost(self, now: float) -> None:
        """The transport connection closed or broke: every session on it fails (§5.4)."""
        if self._closed:
            return
        self._closed = True
        self._pending.clear()
        self._fail_all(408, "connection lost")

    # -- sessions ------------------------------------------------------------------------
    def _attach(self, session: MsrpSession) -> None:
        session.state = SessionState.BOUND
        session.connection = self
        self._sessions[session.session_id] = session

    def _detach(self, session: MsrpSession) -> None:
        self._sessions.pop(session.session_id, None)
        for tid, txn in list(self._transactions.items()):
            if txn.session is session:
                self._remove_transaction(tid)
        for key in [k for k, p in self._pending.items() if p.session is session]:
            del self._pending[key]

    def _fail_session(self, session: MsrpSession, status: int, reason: str) -> None:
        for message_id in session._unfinished():
            self._events.append(SendFailed(session.session_id, message_id, status, reason))
        self._events.append(SessionFailed(session.session_id, status, reason))
        session._shutdown()

    def _answer_delivery(
        self, session: MsrpSession, message_id: str, status: int, reason: str | None, now: float
    ) -> bool:
        pending = self._pending.pop((session.session_id, message_id), None)
        if pending is None or self._closed:
            return False
        local = session.local_uri
        self._respond(pending.request, status, local, session.session_id, reason)
        if status == 200 and pending.success_report:
            self._send_success_report(local, pending.report_to, message_id, pending.size)
        self._pump(now)
        return True

    def _send_success_report(
        self, local: MsrpUri, to_path: tuple[MsrpUri, ...], message_id: str, size: int
    ) -> None:
        """§7.1.2: one REPORT for the whole message, Status 000 200, back along From-Path."""
        self._write(
            MsrpRequest(
                transaction_id=self._new_tid(b""),
                method="REPORT",
                to_path=to_path,
                from_path=(local,),
                message_id=message_id,
                byte_range=ByteRange(1, size, size),
                status=StatusHeader(200, "OK"),
            )
        )

    def _fail_all(self, status: int, reason: str) -> None:
        for session in list(self._sessions.values()):
            self._fail_session(session, status, reason)
        self._transactions.clear()
        self._outstanding = 0

    def _fail_connection(self, status: int, reason: str) -> None:
        self._closed = True
        self._events.append(ConnectionFailed(status, reason))
        self._fail_all(status, reason)

    # -- output --------------------------------------------------------------------------
    def _timeout(self) -> float:
        return self._settings.transaction_timeout

    def _write(self, message: MsrpRequest | MsrpResponse) -> None:
        self._out += serialize(message)

    def _new_tid(self, body: bytes) -> str:
        for _ in range(MAX_ID_ATTEMPTS):
            tid = new_ident(self._table.ids, TRANSACTION_ID_BITS)
            if tid in self._transactions:
                continue
            # §7.1: the end-line must not occur in the body; a tid absent from it is safe.
            if END_LINE_PREFIX + tid.encode("ascii") in body:
                continue
            return tid
        raise LocalMsrpError("could not draw a transaction id absent from the body")

    def _add_transaction(self, txn: _Transaction) -> None:
        self._transactions[txn.transaction_id] = txn
        if txn.wants_response:
            self._outstanding += 1

    def _remove_transaction(self, tid: str) -> _Transaction | None:
        txn = self._transactions.pop(tid, None)
        if txn is not None and txn.wants_response:
            self._outstanding -= 1
        return txn

    def _pump(self, now: float) -> None:
        """Emit queued chunks, one per message in turn, while the window has room."""
        if self._closed:
            return
        window = self._settings.max_outstanding_chunks
        chunk_size = self._settings.chunk_size
        progress = True
        while progress:
            progress = False
            for session in list(self._sessions.values()):
                if not session._queue or session._remote_path is None:
                    continue
                if self._outstanding >= window:
                    return
                message = session._queue.popleft()
                tid = self._new_tid(message.peek_chunk_body(chunk_size))
                chunk = message.next_chunk(
                    tid, chunk_size, session._remote_path, (session.local_uri,)
                )
                self._write(chunk)
                mode = message.failure_report
                if mode is not FailureReport.NO:
                    message.unacked.add(tid)
                    self._add_transaction(
                        _Transaction(
                            session,
                            tid,
                            message,
                            now + self._timeout(),
                            mode is FailureReport.YES,
                        )
                    )
                if not message.fully_chunked:
                    session._queue.append(message)  # take turns with the other messages
                progress = True

    def _respond(
        self,
        request: MsrpRequest,
        status: int,
        local: MsrpUri,
        session_id: str | None,
        reason: str | None = None,
    ) -> None:
        """Answer per Failure-Report (§7.1.4, §7.2): To-Path = first From-Path URI."""
        mode = request.failure_mode
        send = mode is FailureReport.YES or (mode is FailureReport.PARTIAL and status != 200)
        if send:
            self._write(
                MsrpResponse(
                    transaction_id=request.transaction_id,
                    status=status,
                    comment=status_comment(status),
                    to_path=(request.from_path[0],),
                    from_path=(local,),
                )
            )
        if status != 200:
            self._events.append(
                RequestRejected(
                    session_id,
                    request.transaction_id,
                    status,
                    reason or status_comment(status),
                    send,
                )
            )

    # -- input ---------------------------------------------------------------------------
    def _handle_frame(self, frame: RawFrame, now: float) -> None:
        try:
            message = decode_frame(frame)
        except RemoteMsrpError as exc:
            self._reject_raw(frame, exc)
            return
        if isinstance(message, MsrpResponse):
            self._on_response(message)
        else:
            self._on_request(message, now)

    def _reject_raw(self, frame: RawFrame, exc: RemoteMsrpError) -> None:
        """A request we could frame but not decode: answer if we can address it (§7.2)."""
        answered = False
        if frame.is_request and frame.method != "REPORT":
            from_path = raw_from_path(frame)
            to_path = raw_to_path(frame)
            failure = _raw_header(frame, "failure-report")
            if from_path and to_path and failure != "no":
                if not (failure == "partial" and exc.status == 200):
                    self._out += serialize(
                        MsrpResponse(
                            transaction_id=frame.transaction_id,
                            status=exc.status,
                            comment=status_comment(exc.status),
                            to_path=(from_path[0],),
                            from_path=(to_path[0],),
                        )
                    )
                    answered = True
            if exc.status == 413 and to_path:
                session = self._table.lookup(to_path[0])
                message_id = _raw_header(frame, "message-id")
                if session is not None and session.connection is self and message_id:
                    self._abort_incoming(session, message_id, "message too large", 413)
                    session._refuse(message_id)
        session_id = None
        to_path = raw_to_path(frame)
        if to_path and to_path[0].session_id in self._sessions:
            session_id = to_path[0].session_id
        self._events.append(
            RequestRejected(session_id, frame.transaction_id, exc.status, exc.msg, answered)
        )

    def _on_response(self, response: MsrpResponse) -> None:
        txn = self._remove_transaction(response.transaction_id)
        if txn is None:
            return  # late (after timeout) or not ours: nothing to do (§7.3)
        session = txn.session
        message = txn.message
        self._events.append(
            ResponseReceived(
                session.session_id,
                response.transaction_id,
                None if message is None else message.message_id,
                response.status,
                response.comment,
            )
        )
        if message is None:
            if response.status == 200:
                self._events.append(SessionBound(session.session_id))
            else:
                self._fail_session(
                    session, response.status, f"binding SEND refused: {response.status}"
                )
            return
        message.unacked.discard(response.transaction_id)
        if response.status != 200:
            self._fail_message(
                session, message, response.status, response.comment or "request failed"
            )
        elif message.fully_chunked and not message.unacked and not message.failed:
            if message.failure_report is FailureReport.YES and not message.aborted:
                self._events.append(MessageSent(session.session_id, message.message_id))

    def _fail_message(
        self, session: MsrpSession, message: OutgoingMessage, status: int, reason: str
    ) -> None:
        if message.failed or message.aborted:
            return
        message.failed = True
        if message in session._queue:
            session._queue.remove(message)  # §10: stop sending the rest of it
        for tid in list(message.unacked):
            self._remove_transaction(tid)
        message.unacked.clear()
        self._events.append(SendFailed(session.session_id, message.message_id, status, reason))

    def _route(self, request: MsrpRequest) -> tuple[MsrpSession | None, int, str]:
        """Find the session a request names (§5.4, §7.3); (None, status, reason) if refused."""
        if len(request.to_path) != 1:
            return None, 481, "To-Path must hold exactly our URI (§7.3)"
        session = self._table.lookup(request.to_path[0])
        if session is None or session.state is SessionState.CLOSED:
            return None, 481, "no such session (§7.3)"
        if session.connection is not None and session.connection is not self:
            return None, 506, "session bound to another connection (§5.4)"
        remote = session.remote_path
        if remote is not None and not request.from_path[-1].equivalent(remote[-1]):
            return None, 403, "From-Path is not the negotiated peer (§5.4)"
        if session.connection is None:
            if request.method != "SEND":
                return None, 481, "session not bound yet; the first request must be SEND"
            if len(self._sessions) >= self._settings.max_sessions_per_connection:
                return None, 403, "too many sessions on this connection"
            self._attach(session)
            self._events.append(SessionBound(session.session_id))
        return session, 200, "OK"

    def _on_request(self, request: MsrpRequest, now: float) -> None:
        session, status, reason = self._route(request)
        if request.method == "REPORT":
            if session is not None:
                self._on_report(session, request)
            return  # §7.1.2: REPORT is never answered, not even with an error
        if session is None:
            self._respond(request, status, request.to_path[0], None, reason)
            return
        if request.method != "SEND":
            self._respond(request, 501, session.local_uri, session.session_id)
            return
        self._on_send(session, request, now)

    def _on_report(self, session: MsrpSession, request: MsrpRequest) -> None:
        assert request.message_id is not None and request.status is not None
        status = request.status.code
        self._events.append(
            ReportReceived(
                session.session_id,
                request.message_id,
                status,
                request.status.reason,
                request.byte_range,
            )
        )
        if status != 200:
            message = session._tracked.get(request.message_id)
            if message is not None:
                self._fail_message(
                    session, message, status, request.status.reason or "failure REPORT"
                )

    def _abort_incoming(
        self, session: MsrpSession, message_id: str, reason: str, status: int | None
    ) -> None:
        if session._incoming.pop(message_id, None) is not None or status is not None:
            self._events.append(MessageAborted(session.session_id, message_id, reason, status))

    def _on_send(self, session: MsrpSession, request: MsrpRequest, now: float) -> None:
        local = session.local_uri
        sid = session.session_id
        if request.body is None:
            # Bodiless SEND: binding or keep-alive (§5.4, §7.1); nothing to deliver.
            self._respond(request, 200, local, sid)
            return
        message_id = request.message_id
        assert message_id is not None and request.media_type is not None
        if message_id in session._refused:
            self._respond(request, 413, local, sid, "message already refused as too large")
            return
        if not session._accepts(request.media_type):
            self._respond(request, 415, local, sid, f"{request.media_type} not in accept-types")
            return
        if request.end_flag is EndFlag.ABORTED:
            self._abort_incoming(session, message_id, "aborted by the sender (§7.1)", None)
            self._respond(request, 200, local, sid)
            return
        incoming = session._incoming.get(message_id)
        if incoming is None:
            if len(session._incoming) >= self._settings.max_incomplete_messages:
                session._refuse(message_id)
                self._respond(request, 413, local, sid, "too many incomplete messages")
                return
            byte_range = request.byte_range
            if request.end_flag is EndFlag.COMPLETE and (
                byte_range is None or byte_range.start == 1
            ):
                # A whole message in one chunk (the usual chat message): what reassembly
                # would conclude, without its buffers (§7.3.1; same limits as add_chunk).
                body = request.body
                total = None if byte_range is None else byte_range.total
                size = len(body)
                limit = session.max_message_size
                if (total is not None and total > limit) or size > limit:
                    reason = f"message of {max(size, total or 0)} octets over the limit"
                    session._refuse(message_id)
                    self._abort_incoming(session, message_id, reason, 413)
                    self._respond(request, 413, local, sid, reason)
                    return
                self._complete(
                    session,
                    request,
                    body,
                    request.content_type,
                    request.headers,
                    request.wants_success_report,
                    request.from_path,
                    now,
                )
                return
            incoming = IncomingMessage(message_id, session.max_message_size)
        try:
            incoming.add_chunk(request, now, self._settings.reassembly_timeout)
        except RemoteMsrpError as exc:
            session._refuse(message_id)
            self._abort_incoming(session, message_id, exc.msg, exc.status)
            self._respond(request, exc.status, local, sid, exc.msg)
            return
        if not incoming.complete:
            self._respond(request, 200, local, sid)
            session._incoming[message_id] = incoming
            return
        session._incoming.pop(message_id, None)
        self._complete(
            session,
            request,
            incoming.body(),
            incoming.content_type,
            incoming.headers,
            incoming.success_report,
            incoming.from_path,
            now,
        )

    def _complete(
        self,
        session: MsrpSession,
        request: MsrpRequest,
        body: bytes,
        content_type: str | None,
        headers: tuple[tuple[str, str], ...],
        success_report: bool,
        report_to: tuple[MsrpUri, ...],
        now: float,
    ) -> None:
        """A message is complete: answer (or hold the answer, deferred delivery), emit
        :class:`MessageReceived`, send the Success REPORT when due (§7.1.2)."""
        local = session.local_uri
        sid = session.session_id
        message_id = request.message_id
        assert message_id is not None
        if session.defer_delivery:
            key = (sid, message_id)
            if len(self._pending) >= MAX_PENDING_DELIVERIES or key in self._pending:
                reason = "too many messages awaiting delivery"
                self._respond(request, UNDELIVERED_STATUS, local, sid, reason)
                self._events.append(MessageAborted(sid, message_id, reason, UNDELIVERED_STATUS))
                return
            self._pending[key] = _PendingDelivery(
                session,
                request,
                report_to,
                len(body),
                success_report,
                now + DELIVERY_ANSWER_TIMEOUT,
            )
        else:
            self._respond(request, 200, local, sid)
        self._events.append(
            MessageReceived(
                sid,
                message_id,
                content_type or request.content_type or "text/plain",
                body,
                success_report,
                headers,
            )
        )
        if success_report and not session.defer_delivery:
            self._send_success_report(local, report_to, message_id, len(body))


def _raw_header(frame: RawFrame, name: str) -> str | None:
    for line in frame.header_lines:
        text = line.decode("utf-8", errors="replace")
        key, colon, value = text.partition(":")
        if colon and key.strip().lower() == name:
            return value.strip()
    return None
