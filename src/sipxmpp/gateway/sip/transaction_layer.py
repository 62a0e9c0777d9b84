"""The SIP transaction layer (RFC 3261 §17, §18.1.2, §18.2): matching, timers, sending.

Theory of operation
-------------------
The layer sits between the message codec and the transaction user (TU). It owns every
live transaction in one dict keyed by the transaction key, runs the state machines of
:mod:`.transaction`, and turns their actions into bytes for the transport (``outbox``)
and events for the TU (``events``); both containers are shared with the endpoint façade,
which drains them.

Keys and matching
    A *client* transaction is named ``<branch>|<method>``: §17.1.3 matches a response to
    it by the top Via branch and the CSeq method (the method matters because a CANCEL
    shares its INVITE's branch). We generate every branch ourselves, so a response whose
    key is unknown is a stray and is dropped; one whose Via sent-by is not ours is
    discarded too (§18.1.2).

    A *server* transaction is named ``<branch>|<sent-by>|<method>`` (§17.2.3: branch,
    sent-by and method equal, with ACK matching the INVITE). Requests without the
    ``z9hG4bK`` cookie come from RFC 2543 implementations; the full §17.2.3 fallback
    (Request-URI, To tag, From tag, Call-ID, CSeq, top Via compared field by field) is
    not implemented. Such requests get a simplified key made of the top Via's branch (if
    any) and sent-by, Call-ID, CSeq number, From tag and method, which is exactly what a
    retransmission and the TU's response repeat, so absorption and response routing
    still work; an RFC 2543 ACK for a non-2xx response also matches, since it repeats
    those fields.

    An ACK for a 2xx response carries a new branch (§13.2.2.4) and matches no server
    transaction by §17.2.3. RFC 6026 keeps the INVITE server transaction alive in
    "Accepted" so that such an ACK still has a home: the layer indexes "Accepted" INVITE
    transactions by (Call-ID, CSeq number) and hands a matching ACK to the TU through
    that transaction. An ACK that matches nothing is a stray and is dropped.

Timers
    Each transaction knows its next deadline; the layer keeps one heap entry per
    transaction, ``(deadline, seq, key)``, and a transaction's ``scheduled`` field says
    which entry is current. Entries left behind when a timer is cancelled or a
    transaction ends are skipped when popped (lazy deletion) and the heap is rebuilt
    when stale entries outnumber live ones, so memory stays proportional to the number
    of live transactions.

Finished non-INVITE server transactions
    Over UDP a non-INVITE server transaction waits in "Completed" for Timer J (64*T1 = 32 s)
    only to answer retransmissions of its request with the same response (§17.2.2). At the
    design load of 5,000 requests/s that is 160,000 transactions at once, so on entering
    "Completed" it is kept as a compact record instead: its key and the response bytes. A
    retransmitted request gets them at the address its own top Via names (§18.2.2), which
    is the original's. The keys expire in arrival order (Timer J is the same for all of
    them), in batches of those that finished within ``EXPIRY_BATCH_S`` of each other: a
    batch expires with its last member, so a record may stay up to that much longer than
    Timer J, never shorter. A record is then a dict entry and a list slot, not also a
    deadline float and two tuples (~160 B, for each of the 30,000 that linger while the
    gateway takes 1,000 new subscriptions a second).
    A transport error while in that state ends the transaction without a TU event: the TU
    has answered and keeps nothing for it, and finding the records bound to an address would
    cost a scan of all of them per ICMP error.

Finished non-INVITE client transactions
    Likewise over UDP a non-INVITE client transaction waits in "Completed" for Timer K (T4 =
    5 s) only to absorb retransmissions of the final response (§17.1.2.2). The gateway's
    NOTIFYs are such transactions, 5,000 a second when a presentity with 1,000 watchers
    changes often, so on entering "Completed" one is kept as its key only, expired in
    arrival order and in batches as above (Timer K is the same for all of them), and a
    response matching such a key is absorbed without an event. The request, its bytes and
    the state machine are freed at the final response instead of 5 s later.

Responses go where §18.2.2 says: on a stream, back on the connection the request came
on while it is open, otherwise to the Via's ``received`` (or sent-by) host and sent-by
port; on UDP to ``maddr`` if present, else to ``received`` and the ``rport`` value (RFC
3581 §4) or sent-by port, else to sent-by. The Via has already been stamped with
``received``/``rport`` by the endpoint (§18.2.1) before the layer sees the request.

Limits: the number of live transactions is capped (``EndpointConfig.max_transactions``);
over it a new request is answered 503 with Retry-After and ``send_request`` raises.
A server transaction the TU never answers ends at its TU deadline: an INVITE is
answered 408, a non-INVITE request is dropped unanswered (RFC 4320 §4.1 forbids 408 to
non-INVITE requests).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .address import TransportAddress
from .build import make_response
from .errors import LocalSipError, RemoteSipError
from .events import (
    MessageRejected,
    RequestReceived,
    ResponseReceived,
    SipEvent,
    TransactionTimedOut,
    TransportFailed,
)
from .grammar import Via, parse_cseq, parse_name_addr, parse_via
from .ids import MAGIC_COOKIE, IdGenerator
from .message import Headers, Request, Response, serialize, split_header_values
from .timers import Timers
from .transaction import (
    Action,
    Transaction,
    TxInput,
    TxKind,
    TxState,
    response_input,
    tu_response_input,
)

__all__ = [
    "EndpointConfig",
    "TransactionLayer",
    "MAX_TRANSACTIONS",
    "INVITE_TU_DEADLINE",
    "NON_INVITE_TU_DEADLINE",
    "OVERLOAD_RETRY_AFTER",
    "DEFAULT_PORTS",
    "response_target",
    "top_via",
    "build_ack",
    "build_cancel",
]

#: Cap on live transactions (client + server). A UDP non-INVITE server transaction must
#: linger for Timer J (64*T1 = 32 s) after answering, so at the gateway's design load of
#: 5,000 requests/s about 160,000 are alive at once; 200,000 leaves headroom and bounds
#: memory (a transaction holds one request and one response, a few KiB).
MAX_TRANSACTIONS = 200_000

#: Seconds the TU may take to answer an INVITE before the layer answers 408 for it. The
#: client stopped its Timer B when our 100 Trying arrived, so only this frees the
#: transaction; it matches RFC 3261 §16.6's Timer C ("> 3 minutes").
INVITE_TU_DEADLINE = 181.0

#: Seconds the TU may take to answer a non-INVITE request before the transaction is
#: dropped: the client gives up at Timer F (64*T1 = 32 s with T1 = 500 ms); T4 (5 s) more
#: outlasts retransmissions still in flight, so none of them recreates the transaction.
NON_INVITE_TU_DEADLINE = 37.0

#: Seconds within which finished transactions share an expiry batch (see the module
#: docstring): a record lingers at most this much past its Timer J or K, and at 5,000
#: finished transactions a second a batch holds about 500 keys.
EXPIRY_BATCH_S = 0.1

#: Retry-After (seconds) on the 503 sent when the transaction table is full
#: (RFC 3261 §21.5.4, §20.33); short, since a full table drains within Timer J.
OVERLOAD_RETRY_AFTER = 5

#: Stale heap entries tolerated beyond twice the number of live transactions before the
#: heap is rebuilt; rebuilding is O(n), so it must not happen on every cancelled timer.
HEAP_SLACK = 1024

#: Default ports per transport (RFC 3261 §18.2.2, §19.1.2: 5060, and 5061 for TLS).
DEFAULT_PORTS: Mapping[str, int] = {"udp": 5060, "tcp": 5060, "tls": 5061, "sctp": 5060}


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    """Configuration of a :class:`~.core.SipEndpoint` (plain data, design practice 15)."""

    #: transport ("udp", "tcp", "tls") -> (host, port) written as sent-by in our Via.
    local: Mapping[str, tuple[str, int]]
    #: T1/T2/T4 (RFC 3261 §17); the other timers derive from them.
    timers: Timers = field(default_factory=Timers)
    #: Product token for User-Agent (our requests) and Server (responses the endpoint
    #: makes itself), RFC 3261 §20.41, §20.35. Empty: no such header.
    user_agent: str = "sipxmpp"
    #: See :data:`MAX_TRANSACTIONS`.
    max_transactions: int = MAX_TRANSACTIONS
    #: See :data:`INVITE_TU_DEADLINE`.
    invite_tu_deadline: float = INVITE_TU_DEADLINE
    #: See :data:`NON_INVITE_TU_DEADLINE`.
    non_invite_tu_deadline: float = NON_INVITE_TU_DEADLINE
    #: See :data:`OVERLOAD_RETRY_AFTER`.
    overload_retry_after: int = OVERLOAD_RETRY_AFTER

    def __post_init__(self) -> None:
        for transport, (host, port) in self.local.items():
            if transport not in DEFAULT_PORTS:
                raise ValueError(f"unknown transport {transport!r}")
            if not host or not 0 < port < 65536:
                raise ValueError(f"bad local address {host!r}:{port}")
        if self.max_transactions < 1:
            raise ValueError("max_transactions must be positive")
        if self.invite_tu_deadline <= 0 or self.non_invite_tu_deadline <= 0:
            raise ValueError("TU deadlines must be positive")
        if any(c in self.user_agent for c in "\r\n"):
            raise ValueError("user_agent must be one line")


# --- helpers shared with the endpoint --------------------------------------------------


def top_via(headers: Headers) -> Via | None:
    """The first via-parm of the first Via header (None if there is no Via).

    Raises :class:`RemoteSipError` (400) if it does not parse.
    """
    line = headers.get("Via")
    if line is None:
        return None
    if "," in line:
        parts = split_header_values(line)
        if not parts:
            raise RemoteSipError("empty Via", 400)
        line = parts[0]
    return parse_via(line)


def _first_value(line: str) -> str:
    """The first element of a list header line (the whole line when it has no comma)."""
    if "," not in line:
        return line
    parts = split_header_values(line)
    return parts[0] if parts else ""


def replace_top_via(headers: Headers, via: Via) -> Headers:
    """``headers`` with the first via-parm replaced by ``via``."""
    items = list(headers.items)
    for i, (name, value) in enumerate(items):
        if name == "Via":
            rest = split_header_values(value)[1:] if "," in value else []
            items[i] = (name, ", ".join([str(via), *rest]))
            break
    return Headers(tuple(items))


def response_target(via: Via, source: TransportAddress) -> TransportAddress:
    """Where a response to a request that arrived from ``source`` goes (§18.2.2).

    ``via`` is the request's top Via after the endpoint stamped ``received``/``rport``.
    """
    transport = source.transport
    if source.reliable and source.connection is not None:
        # "If the 'sent-protocol' is a reliable transport protocol ... the response MUST
        # be sent using the existing connection to the source of the original request".
        return source
    default = DEFAULT_PORTS.get(transport, 5060)
    received = via.received
    if source.reliable:
        # "... if that connection is no longer open, the server SHOULD open a connection
        # to the IP address in the 'received' parameter, if present, using the port in the
        # 'sent-by' value, or the default port for that transport, if no port is specified."
        return TransportAddress(transport, received or via.host, via.port or default)
    maddr = via.maddr
    if maddr is not None:
        return TransportAddress(transport, maddr, via.port or default)
    if received is not None:
        # RFC 3581 §4: with rport filled in, answer the source port.
        port = via.rport or via.port or default
        if received == source.host and port == source.port and source.peer_identity is None:
            return source  # the usual case: no new object per request
        return TransportAddress(transport, received, port)
    return TransportAddress(transport, via.host, via.port or default)


def _format_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _local_error(exc: RemoteSipError, what: str) -> LocalSipError:
    return LocalSipError(f"{what}: {exc.msg}")


def _to_tag(headers: Headers) -> str | None:
    value = headers.get("To")
    if value is None:
        return None
    try:
        return parse_name_addr(value).tag
    except RemoteSipError:
        return None


def _needs_to_tag(headers: Headers) -> bool:
    """True when the request's To parses and has no tag (§8.2.6.2: the UAS adds one)."""
    value = headers.get("To")
    if value is None:
        return False
    try:
        return parse_name_addr(value).tag is None
    except RemoteSipError:
        return False  # a malformed To is copied as it is


def build_ack(request: Request, response: Response) -> Request:
    """The ACK for a non-2xx final response to ``request`` (RFC 3261 §17.1.1.3).

    Request-URI, Call-ID, From, CSeq number and Route come from the INVITE, To (with the
    tag) from the response; one Via, equal to the INVITE's top Via.
    """
    h = request.headers
    items: list[tuple[str, str]] = []
    via = h.get("Via")
    if via is not None:
        items.append(("Via", split_header_values(via)[0] if "," in via else via))
    items.append(("Max-Forwards", "70"))
    items.extend(("Route", v) for v in h.get_lines("Route"))
    for name in ("From",):
        value = h.get(name)
        if value is not None:
            items.append((name, value))
    to = response.headers.get("To") or h.get("To")
    if to is not None:
        items.append(("To", to))
    call_id = h.get("Call-ID")
    if call_id is not None:
        items.append(("Call-ID", call_id))
    cseq = h.get("CSeq")
    if cseq is not None:
        items.append(("CSeq", f"{parse_cseq(cseq).seq} ACK"))
    return Request("ACK", request.uri, Headers(tuple(items)))


def build_cancel(request: Request) -> Request:
    """The CANCEL for ``request`` (RFC 3261 §9.1): same Request-URI, Call-ID, To, From,
    CSeq number and Route, one Via equal to the request's top Via (same branch)."""
    h = request.headers
    items: list[tuple[str, str]] = []
    via = h.get("Via")
    if via is not None:
        items.append(("Via", split_header_values(via)[0] if "," in via else via))
    items.append(("Max-Forwards", "70"))
    items.extend(("Route", v) for v in h.get_lines("Route"))
    for name in ("From", "To", "Call-ID"):
        value = h.get(name)
        if value is not None:
            items.append((name, value))
    cseq = h.get("CSeq")
    if cseq is not None:
        items.append(("CSeq", f"{parse_cseq(cseq).seq} CANCEL"))
    return Request("CANCEL", request.uri, Headers(tuple(items)))


def _server_key(via: Via, method: str, headers: Headers) -> str:
    """§17.2.3 key: branch, sent-by and method (ACK counts as INVITE)."""
    if method == "ACK":
        method = "INVITE"
    branch = via.branch
    sent_by = f"{via.host.lower()}:{via.port if via.port is not None else ''}"
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        return f"{branch}|{sent_by}|{method}"
    # RFC 2543 peer: simplified fallback (see the module docstring).
    cseq = headers.get("CSeq") or ""
    seq = cseq.split(None, 1)[0] if cseq else ""
    from_value = headers.get("From")
    from_tag = ""
    if from_value is not None:
        try:
            from_tag = parse_name_addr(from_value).tag or ""
        except RemoteSipError:
            from_tag = ""
    return f"2543|{branch or ''}|{sent_by}|{headers.get('Call-ID')}|{seq}|{from_tag}|{method}"


# --- transaction records ---------------------------------------------------------------


class _ClientTx:
    __slots__ = (
        "key",
        "fsm",
        "request",
        "data",
        "target",
        "sent_by",
        "ack",
        "scheduled",
        "cancel_pending",
    )

    def __init__(
        self,
        key: str,
        fsm: Transaction,
        request: Request,
        data: bytes,
        target: TransportAddress,
        sent_by: tuple[str, int | None],
    ) -> None:
        self.key = key
        self.fsm = fsm
        self.request = request
        self.data = data
        self.target = target
        self.sent_by = sent_by
        self.ack: bytes | None = None
        self.scheduled: float | None = None
        #: §9.1: a CANCEL asked for before any provisional response waits for one.
        self.cancel_pending = False


class _ServerTx:
    __slots__ = (
        "key",
        "fsm",
        "request",
        "source",
        "target",
        "via",
        "via_index",
        "last_response",
        "tu_to_tag",
        "scheduled",
        "ack_key",
        "cancels",
    )

    def __init__(
        self,
        key: str,
        fsm: Transaction,
        request: Request,
        source: TransportAddress,
        target: TransportAddress,
        via: Via,
        via_index: str,
    ) -> None:
        self.key = key
        self.fsm = fsm
        self.request = request
        self.source = source
        self.target = target
        #: The request's top Via as stamped (§18.2.1); routes responses (§18.2.2).
        self.via = via
        #: Key of ``TransactionLayer._via_index``: the Via text the TU's response copies.
        self.via_index = via_index
        self.last_response: bytes | None = None
        #: The To tag of the TU's responses, reused by a 408 the layer sends (§8.2.6.2:
        #: "the same tag MUST be used for all responses to that request").
        self.tu_to_tag: str | None = None
        self.scheduled: float | None = None
        #: (Call-ID, CSeq number) under which an "Accepted" INVITE awaits its 2xx ACK.
        self.ack_key: tuple[str, int] | None = None
        #: For a CANCEL: the key of the INVITE server transaction it cancels (§9.2).
        self.cancels: str | None = None


_Tx = _ClientTx | _ServerTx
_AddressKey = tuple[str, str, int]


def _address_key(addr: TransportAddress) -> _AddressKey:
    return (addr.transport, addr.host.lower(), addr.port)


class _Expiries:
    """Keys of finished transactions in expiry order, in batches (module docstring).

    A key is added once: a finished server transaction's key is matched before a new
    transaction could take it, and a client transaction's key carries a fresh branch; so
    a key leaves its table only when its batch expires, and nothing else re-adds it
    meanwhile.
    """

    __slots__ = ("_due", "_keys", "_open_until")

    def __init__(self) -> None:
        #: Each batch's expiry (its latest member's deadline), and its keys.
        self._due: deque[float] = deque()
        self._keys: deque[list[str]] = deque()
        #: Deadlines up to this join the newest batch.
        self._open_until = -math.inf

    def add(self, key: str, deadline: float) -> None:
        if self._keys and deadline <= self._open_until:
            self._keys[-1].append(key)
            if deadline > self._due[-1]:
                self._due[-1] = deadline
            return
        self._due.append(deadline)
        self._keys.append([key])
        self._open_until = deadline + EXPIRY_BATCH_S

    def first(self) -> float | None:
        return self._due[0] if self._due else None

    def pop_due(self, now: float) -> list[str]:
        """The keys of every batch due at ``now``, taken out."""
        due = self._due
        if not due or due[0] > now:
            return []
        keys: list[str] = []
        while due and due[0] <= now:
            due.popleft()
            keys.extend(self._keys.popleft())
        return keys


class TransactionLayer:
    """All live transactions of one endpoint. See the module docstring."""

    def __init__(
        self,
        config: EndpointConfig,
        ids: IdGenerator,
        events: deque[SipEvent],
        outbox: list[tuple[TransportAddress, bytes]],
    ) -> None:
        self._cfg = config
        self._ids = ids
        self._events = events
        self._outbox = outbox
        self._txs: dict[str, _Tx] = {}
        #: Finished non-INVITE server transactions (see the module docstring): key ->
        #: response bytes, and the keys in expiry order (Timer J).
        self._completed: dict[str, bytes] = {}
        self._completed_order = _Expiries()
        #: Finished non-INVITE client transactions (see the module docstring), and the
        #: keys in expiry order (Timer K).
        self._absorbing: set[str] = set()
        self._absorbing_order = _Expiries()
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._by_connection: dict[int, set[str]] = {}
        self._by_address: dict[_AddressKey, set[str]] = {}
        self._accepted: dict[tuple[str, int], str] = {}
        #: Fast path for ``send_response``: "<top Via text>\0<method>" -> server key. The
        #: TU's response copies the request's Via verbatim (§8.2.6.2), so a dict lookup
        #: replaces parsing the stamped Via again; anything else takes the §17.2.3 path.
        self._via_index: dict[str, str] = {}
        self._server_header: tuple[tuple[str, str], ...] = (
            (("Server", config.user_agent),) if config.user_agent else ()
        )

    # -- introspection -------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._txs) + len(self._completed) + len(self._absorbing)

    def __contains__(self, key: object) -> bool:
        return key in self._txs or key in self._completed or key in self._absorbing

    def state_of(self, key: str) -> TxState | None:
        """The state of a live transaction, None if there is none by that key."""
        tx = self._txs.get(key)
        if tx is None:
            done = key in self._completed or key in self._absorbing
            return TxState.COMPLETED if done else None
        return tx.fsm.state

    def cancelled_transaction(self, cancel_key: str) -> str | None:
        """For a received CANCEL's transaction: the INVITE server transaction it targets,
        if that one still exists (RFC 3261 §9.2)."""
        tx = self._txs.get(cancel_key)
        if isinstance(tx, _ServerTx) and tx.cancels is not None and tx.cancels in self._txs:
            return tx.cancels
        return None

    # -- TU side ---------------------------------------------------------------------------

    def send_request(self, request: Request, destination: TransportAddress, now: float) -> str:
        """Start a client transaction for ``request`` (or send an ACK, which has none).

        Without a Via in ``request`` the layer prepends ours with a fresh branch; with
        one (a CANCEL built from its INVITE, §9.1) it keeps it and uses its branch.
        """
        method = request.method
        cseq_value = request.headers.get("CSeq")
        if cseq_value is None:
            raise LocalSipError("request without CSeq (RFC 3261 §8.1.1)")
        try:
            cseq = parse_cseq(cseq_value)
        except RemoteSipError as exc:
            raise _local_error(exc, "bad CSeq") from exc
        if cseq.method != method:
            raise LocalSipError(f"CSeq method {cseq.method} differs from {method} (§8.1.1.5)")
        headers = request.headers
        if headers.get("Via") is None:
            local = self._cfg.local.get(destination.transport)
            if local is None:
                raise LocalSipError(f"no local address for transport {destination.transport}")
            host, port = local
            branch = self._ids.branch()
            headers = headers.prepend(
                "Via",
                f"SIP/2.0/{destination.transport.upper()} {_format_host(host)}:{port}"
                f";branch={branch};rport",
            )
            sent_by: tuple[str, int | None] = (_format_host(host).lower(), port)
        else:
            try:
                via = top_via(headers)
            except RemoteSipError as exc:
                raise _local_error(exc, "bad Via") from exc
            assert via is not None
            if not via.is_rfc3261_branch:
                raise LocalSipError("our Via needs a z9hG4bK branch (RFC 3261 §8.1.1.7)")
            branch = via.branch or ""
            sent_by = (via.host.lower(), via.port)
        if self._cfg.user_agent and headers.get("User-Agent") is None:
            headers = headers.add("User-Agent", self._cfg.user_agent)
        if headers is not request.headers:
            request = Request(request.method, request.uri, headers, request.body, request.version)
        data = serialize(request)
        key = f"{branch}|{method}"
        if method == "ACK":
            # The ACK for a 2xx is its own transaction-less request (§17.1, §13.2.2.4).
            self._outbox.append((destination, data))
            return key
        if key in self._txs:
            raise LocalSipError(f"transaction {key} already exists")
        if len(self) >= self._cfg.max_transactions:
            raise LocalSipError("too many transactions", 503, "Service Unavailable")
        kind = TxKind.INVITE_CLIENT if method == "INVITE" else TxKind.NON_INVITE_CLIENT
        fsm = Transaction(kind, reliable=destination.reliable, timers=self._cfg.timers)
        tx = _ClientTx(key, fsm, request, data, destination, sent_by)
        self._add(tx, destination)
        self._run(tx, fsm.start(now), now, None)
        return key

    def cancel(self, key: str, now: float) -> str | None:
        """CANCEL the INVITE client transaction ``key`` (RFC 3261 §9.1).

        Returns the CANCEL's transaction key, or None when there is nothing to cancel
        (no such INVITE, or it already has a final response). Before any provisional
        response the CANCEL is held and sent when one arrives ("the client MUST wait for
        the arrival of a provisional response"); if a final response comes first, it is
        never sent.
        """
        tx = self._txs.get(key)
        if not isinstance(tx, _ClientTx) or tx.fsm.kind is not TxKind.INVITE_CLIENT:
            return None
        branch = key.rsplit("|", 1)[0]
        cancel_key = f"{branch}|CANCEL"
        if tx.fsm.state is TxState.CALLING:
            tx.cancel_pending = True
            return cancel_key
        if tx.fsm.state is not TxState.PROCEEDING or cancel_key in self._txs:
            return None
        return self.send_request(build_cancel(tx.request), tx.target, now)

    def send_response(self, response: Response, now: float) -> None:
        """Hand the TU's response to its server transaction (matched by §17.2.3).

        A response for a transaction that no longer exists is dropped (e.g. the TU
        answered after its deadline), except a 2xx to INVITE, which is sent statelessly
        along its Via, as RFC 3261 §13.3.1.4 lets a UAS core retransmit it.
        """
        status = response.status
        if not 100 <= status <= 699:
            raise LocalSipError(f"status {status} out of range")
        headers = response.headers
        via_line = headers.get("Via")
        cseq_value = headers.get("CSeq")
        if via_line is None or cseq_value is None:
            raise LocalSipError("a response needs the request's Via and CSeq (§8.2.6.2)")
        try:
            cseq = parse_cseq(cseq_value)
        except RemoteSipError as exc:
            raise _local_error(exc, "response with a bad CSeq") from exc
        method = cseq.method
        if method == "ACK":
            raise LocalSipError("ACK is never answered (RFC 3261 §17.1.1.3)")
        if status > 100:
            to = headers.get("To") or ""
            if ";tag=" not in to.lower() and _to_tag(headers) is None:
                raise LocalSipError("a response other than 100 needs a To tag (§8.2.6.2)")
        if 100 < status < 200 and method != "INVITE":
            raise LocalSipError("only 100 may be sent to a non-INVITE request (RFC 4320 §4.1)")
        key = self._via_index.get(f"{_first_value(via_line)}\x00{method}")
        via: Via | None = None
        if key is None:
            try:
                via = top_via(headers)
            except RemoteSipError as exc:
                raise _local_error(exc, "response with a bad Via") from exc
            assert via is not None
            key = _server_key(via, method, headers)
        tx = self._txs.get(key)
        if not isinstance(tx, _ServerTx):
            if via is None:
                try:
                    via = parse_via(_first_value(via_line))
                except RemoteSipError as exc:
                    raise _local_error(exc, "response with a bad Via") from exc
            transport = via.transport.lower()
            if method == "INVITE" and 200 <= status < 300 and transport in ("udp", "tcp", "tls"):
                source = TransportAddress(
                    transport,  # type: ignore[arg-type]
                    via.host,
                    via.port or DEFAULT_PORTS[transport],
                )
                self._outbox.append((response_target(via, source), serialize(response)))
            return
        actions = tx.fsm.handle(tu_response_input(status), now)
        self._run(tx, actions, now, response)
        if (
            tx.fsm.state is TxState.ACCEPTED
            and tx.ack_key is None
            and tx.key in self._txs
            and (call_id := tx.request.headers.get("Call-ID")) is not None
        ):
            tx.ack_key = (call_id, cseq.seq)
            self._accepted[tx.ack_key] = tx.key

    # -- transport side ----------------------------------------------------------------

    def receive_request(
        self, request: Request, via: Via, source: TransportAddress, now: float
    ) -> None:
        """A request from the wire; ``via`` is its (stamped) top Via."""
        method = request.method
        headers = request.headers
        key = _server_key(via, method, headers)
        tx = self._txs.get(key)
        if isinstance(tx, _ServerTx):
            event = TxInput.ACK if method == "ACK" else TxInput.REQUEST_RETRANSMIT
            self._run(tx, tx.fsm.handle(event, now), now, request, source)
            return
        done = self._completed.get(key)
        if done is not None:
            # §17.2.2: in "Completed", a retransmitted request gets the response again.
            self._outbox.append((response_target(via, source), done))
            return
        if method == "ACK":
            self._receive_unmatched_ack(request, source, now)
            return
        target = response_target(via, source)
        cancels: str | None = None
        if method == "CANCEL":
            cancels = key.rsplit("|", 1)[0] + "|INVITE"
            if not isinstance(self._txs.get(cancels), _ServerTx):
                # §9.2: "If the UAS did not find a matching transaction for the CANCEL,
                # it SHOULD respond to the CANCEL with a 481".
                self.reply_stateless(request, 481, target, "CANCEL matches no transaction")
                return
        if len(self) >= self._cfg.max_transactions:
            self.reply_stateless(
                request,
                503,
                target,
                "transaction table full",
                (("Retry-After", str(self._cfg.overload_retry_after)),),
            )
            return
        if method == "INVITE":
            kind, deadline = TxKind.INVITE_SERVER, self._cfg.invite_tu_deadline
        else:
            kind, deadline = TxKind.NON_INVITE_SERVER, self._cfg.non_invite_tu_deadline
        fsm = Transaction(
            kind, reliable=source.reliable, timers=self._cfg.timers, tu_deadline=deadline
        )
        # Only a z9hG4bK branch makes the Via text unique to one transaction; RFC 2543
        # keys also need Call-ID, CSeq and From tag, so they take the slow path.
        via_index = ""
        if via.is_rfc3261_branch:
            via_index = f"{_first_value(headers.get('Via') or '')}\x00{method}"
            self._via_index[via_index] = key
        stx = _ServerTx(key, fsm, request, source, target, via, via_index)
        stx.cancels = cancels
        self._add(stx, target)
        self._run(stx, fsm.start(now), now, request, source)

    def _receive_unmatched_ack(
        self, request: Request, source: TransportAddress, now: float
    ) -> None:
        headers = request.headers
        call_id = headers.get("Call-ID")
        cseq_value = headers.get("CSeq")
        inv_key = None
        if call_id is not None and cseq_value is not None:
            try:
                inv_key = self._accepted.get((call_id, parse_cseq(cseq_value).seq))
            except RemoteSipError:
                inv_key = None
        tx = self._txs.get(inv_key) if inv_key is not None else None
        if isinstance(tx, _ServerTx):
            # RFC 6026 §7.1/§8.7: the ACK for our 2xx goes to the TU via "Accepted".
            self._run(tx, tx.fsm.handle(TxInput.ACK, now), now, request, source)
            return
        self._events.append(MessageRejected(source, None, "stray ACK matches no transaction"))

    def receive_response(self, response: Response, source: TransportAddress, now: float) -> None:
        """A response from the wire (§18.1.2, §17.1.3)."""
        headers = response.headers
        try:
            via = top_via(headers)
            cseq_value = headers.get("CSeq")
            cseq = parse_cseq(cseq_value) if cseq_value is not None else None
        except RemoteSipError as exc:
            self._events.append(MessageRejected(source, None, f"response dropped: {exc.msg}"))
            return
        if via is None or cseq is None or via.branch is None:
            self._events.append(MessageRejected(source, None, "response without Via/CSeq"))
            return
        key = f"{via.branch}|{cseq.method}"
        tx = self._txs.get(key)
        if not isinstance(tx, _ClientTx):
            if key not in self._absorbing:
                self._events.append(MessageRejected(source, None, "stray response"))
            # else §17.1.2.2: a retransmitted final response in "Completed" is absorbed.
            return
        if (via.host.lower(), via.port) != tx.sent_by:
            # §18.1.2: "If the value does not match, the message MUST be silently discarded."
            self._events.append(MessageRejected(source, None, "response Via sent-by not ours"))
            return
        via_lines = headers.get_lines("Via")
        if len(via_lines) > 1 or (
            "," in via_lines[0] and len(split_header_values(via_lines[0])) > 1
        ):
            # §8.1.3.3: "If more than one Via header field value is present in a
            # response, the UAC SHOULD discard the message."
            self._events.append(MessageRejected(source, None, "response with several Vias"))
            return
        if (
            source.connection is not None
            and tx.target.connection is None
            and source.reliable
            and tx.target.transport == source.transport
        ):
            # The edge opened a connection for this request; bind the transaction to it
            # so that losing the connection fails it (§17.1.4).
            self._rebind(
                tx,
                TransportAddress(
                    tx.target.transport, tx.target.host, tx.target.port, source.connection
                ),
            )
        self._run(tx, tx.fsm.handle(response_input(response.status), now), now, response)

    def transport_error(self, destination: TransportAddress, now: float) -> None:
        """The edge could not deliver to ``destination`` (§17.1.4, §17.2.4): every
        transaction currently bound there gets a TRANSPORT_ERROR."""
        if destination.connection is not None:
            keys = set(self._by_connection.get(destination.connection, ()))
        else:
            keys = set(self._by_address.get(_address_key(destination), ()))
        for key in keys:
            tx = self._txs.get(key)
            if tx is not None:
                self._run(tx, tx.fsm.handle(TxInput.TRANSPORT_ERROR, now), now, None)

    def connection_lost(self, connection: int, now: float) -> None:
        """A stream connection closed. Client transactions bound to it fail; server
        transactions fall back to the Via address for their responses (§18.2.2)."""
        keys = self._by_connection.pop(connection, set())
        for key in keys:
            tx = self._txs.get(key)
            if isinstance(tx, _ServerTx):
                # "... if that connection is no longer open, the server SHOULD open a
                # connection to the IP address in the 'received' parameter" (§18.2.2).
                tx.target = response_target(tx.via, tx.source.without_connection())
                self._by_address.setdefault(_address_key(tx.target), set()).add(key)
            elif tx is not None:
                self._run(tx, tx.fsm.handle(TxInput.TRANSPORT_ERROR, now), now, None)

    # -- stateless answers -------------------------------------------------------------

    def reply_stateless(
        self,
        request: Request,
        status: int,
        target: TransportAddress,
        why: str,
        headers: Iterable[tuple[str, str]] = (),
        reason: str | None = None,
    ) -> None:
        """Answer ``request`` without a transaction (errors the endpoint decides alone).

        An ACK is never answered (§17.1.1.3); it is only reported.
        """
        if request.method == "ACK":
            self._events.append(MessageRejected(target, None, why))
            return
        to_tag = self._ids.tag() if _needs_to_tag(request.headers) else None
        extra = (*self._server_header, *headers)
        response = make_response(request, status, reason, to_tag=to_tag, headers=extra)
        self._outbox.append((target, serialize(response)))
        self._events.append(MessageRejected(target, status, why))

    # -- timers ------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        heap = self._heap
        first: float | None = None
        while heap:
            deadline, _, key = heap[0]
            tx = self._txs.get(key)
            if tx is not None and tx.scheduled == deadline:
                first = deadline
                break
            heapq.heappop(heap)
        for order in (self._completed_order, self._absorbing_order):
            due = order.first()
            if due is not None and (first is None or due < first):
                first = due
        return first

    def handle_timer(self, now: float) -> None:
        completed = self._completed
        for key in self._completed_order.pop_due(now):
            completed.pop(key, None)  # Timer J fired (§17.2.2): "Terminated"
        absorbing = self._absorbing
        for key in self._absorbing_order.pop_due(now):
            absorbing.discard(key)  # Timer K fired (§17.1.2.2): "Terminated"
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, key = heapq.heappop(heap)
            tx = self._txs.get(key)
            if tx is None or tx.scheduled != deadline:
                continue
            tx.scheduled = None
            self._run(tx, tx.fsm.fire_due(now), now, None)

    # -- internals -----------------------------------------------------------------------

    def _add(self, tx: _Tx, target: TransportAddress) -> None:
        self._txs[tx.key] = tx
        self._index(tx.key, target)

    def _index(self, key: str, target: TransportAddress) -> None:
        if target.connection is not None:
            self._by_connection.setdefault(target.connection, set()).add(key)
        else:
            self._by_address.setdefault(_address_key(target), set()).add(key)

    def _unindex(self, key: str, target: TransportAddress) -> None:
        if target.connection is not None:
            conn_group = self._by_connection.get(target.connection)
            if conn_group is not None:
                conn_group.discard(key)
                if not conn_group:
                    del self._by_connection[target.connection]
            return
        address = _address_key(target)
        group = self._by_address.get(address)
        if group is not None:
            group.discard(key)
            if not group:
                del self._by_address[address]

    def _rebind(self, tx: _ClientTx, target: TransportAddress) -> None:
        self._unindex(tx.key, tx.target)
        tx.target = target
        self._index(tx.key, target)

    def _remove(self, tx: _Tx) -> None:
        if self._txs.pop(tx.key, None) is None:
            return
        self._unindex(tx.key, tx.target)
        if (
            isinstance(tx, _ServerTx)
            and tx.via_index
            and self._via_index.get(tx.via_index) == tx.key
        ):
            del self._via_index[tx.via_index]
        if isinstance(tx, _ServerTx) and tx.ack_key is not None:
            if self._accepted.get(tx.ack_key) == tx.key:
                del self._accepted[tx.ack_key]

    def _schedule(self, tx: _Tx) -> None:
        deadline = tx.fsm.next_deadline()
        if deadline == tx.scheduled:
            return
        tx.scheduled = deadline
        if deadline is None:
            return
        heapq.heappush(self._heap, (deadline, next(self._seq), tx.key))
        if len(self._heap) > 2 * len(self._txs) + HEAP_SLACK:
            self._heap = [
                (t.scheduled, next(self._seq), t.key)
                for t in self._txs.values()
                if t.scheduled is not None
            ]
            heapq.heapify(self._heap)

    def _run(
        self,
        tx: _Tx,
        actions: list[Action],
        now: float,
        msg: Request | Response | None,
        source: TransportAddress | None = None,
    ) -> None:
        """Carry out a machine's actions; then retire or reschedule the transaction.

        ``msg`` is the message that caused the input (if any) and ``source`` where a
        received one came from.
        """
        for action in actions:
            if isinstance(tx, _ClientTx):
                self._client_action(tx, action, msg)
            else:
                self._server_action(tx, action, now, msg, source)
        if tx.fsm.terminated:
            self._remove(tx)
            return
        if (
            isinstance(tx, _ServerTx)
            and tx.fsm.state is TxState.COMPLETED
            and tx.fsm.kind is TxKind.NON_INVITE_SERVER
            and tx.last_response is not None
        ):
            deadline = tx.fsm.deadline(TxInput.TIMER_J)
            if deadline is not None:
                self._remove(tx)
                self._completed[tx.key] = tx.last_response
                self._completed_order.add(tx.key, deadline)
                return
        if (
            isinstance(tx, _ClientTx)
            and tx.fsm.state is TxState.COMPLETED
            and tx.fsm.kind is TxKind.NON_INVITE_CLIENT
        ):
            deadline = tx.fsm.deadline(TxInput.TIMER_K)
            if deadline is not None:
                self._remove(tx)
                self._absorbing.add(tx.key)
                self._absorbing_order.add(tx.key, deadline)
                return
        if isinstance(tx, _ClientTx) and tx.cancel_pending:
            if tx.fsm.state is TxState.PROCEEDING:
                tx.cancel_pending = False
                cancel_key = tx.key.rsplit("|", 1)[0] + "|CANCEL"
                if cancel_key not in self._txs:
                    try:
                        self.send_request(build_cancel(tx.request), tx.target, now)
                    except LocalSipError as exc:  # e.g. the transaction table is full
                        self._events.append(
                            MessageRejected(tx.target, None, f"held CANCEL not sent: {exc.msg}")
                        )
            elif tx.fsm.state is not TxState.CALLING:
                tx.cancel_pending = False
        self._schedule(tx)

    def _client_action(self, tx: _ClientTx, action: Action, msg: Request | Response | None) -> None:
        if action is Action.SEND_REQUEST:
            self._outbox.append((tx.target, tx.data))
        elif action is Action.SEND_ACK:
            if tx.ack is None:
                assert isinstance(msg, Response)
                tx.ack = serialize(build_ack(tx.request, msg))
            self._outbox.append((tx.target, tx.ack))
        elif action is Action.PASS_TO_TU:
            assert isinstance(msg, Response)
            self._events.append(ResponseReceived(msg, tx.key, tx.request))
        elif action is Action.INFORM_TU_TIMEOUT:
            self._events.append(TransactionTimedOut(tx.key, tx.request))
        elif action is Action.INFORM_TU_TRANSPORT_ERROR:
            self._events.append(TransportFailed(tx.key, tx.request))
        else:  # pragma: no cover - the tables give client machines no other action
            raise AssertionError(f"client transaction cannot {action}")

    def _server_action(
        self,
        tx: _ServerTx,
        action: Action,
        now: float,
        msg: Request | Response | None,
        source: TransportAddress | None,
    ) -> None:
        if action is Action.SEND_RESPONSE:
            assert isinstance(msg, Response)
            if msg.status > 100 and tx.tu_to_tag is None:
                tx.tu_to_tag = _to_tag(msg.headers)
            tx.last_response = serialize(msg)
            self._outbox.append((tx.target, tx.last_response))
        elif action is Action.RESEND_RESPONSE:
            if tx.last_response is not None:
                self._outbox.append((tx.target, tx.last_response))
        elif action is Action.SEND_TRYING:
            # §17.2.1: built per §8.2.6 but without a To tag.
            trying = make_response(tx.request, 100, headers=self._server_header)
            tx.last_response = serialize(trying)
            self._outbox.append((tx.target, tx.last_response))
        elif action is Action.PASS_TO_TU:
            assert isinstance(msg, Request)
            self._events.append(RequestReceived(msg, source or tx.source, tx.key))
        elif action is Action.INFORM_TU_TIMEOUT:
            self._events.append(TransactionTimedOut(tx.key, tx.request))
        elif action is Action.INFORM_TU_TRANSPORT_ERROR:
            self._events.append(TransportFailed(tx.key, tx.request))
        elif action is Action.ANSWER_408:
            to_tag = None
            if _needs_to_tag(tx.request.headers):
                to_tag = tx.tu_to_tag or self._ids.tag()
            timeout = make_response(tx.request, 408, to_tag=to_tag, headers=self._server_header)
            self._events.append(
                MessageRejected(tx.source, 408, "the TU did not answer the INVITE in time")
            )
            self._run(tx, tx.fsm.handle(TxInput.TU_300_699, now), now, timeout)
        elif action is Action.ABANDON:
            # RFC 4320 §4.1: no 408 to a non-INVITE request; the client has given up.
            self._events.append(
                MessageRejected(tx.source, None, "the TU did not answer in time; dropped")
            )
        else:  # pragma: no cover - the tables give server machines no other action
            raise AssertionError(f"server transaction cannot {action}")
