"""Presence federation (RFC 8048): SIP SUBSCRIBE/NOTIFY + PIDF <-> XMPP presence, both ways.

Theory of operation
-------------------
:class:`PresenceService` is the runtime's presence router. It sits between three things:

* the RFC 6665 subscription layer (``gateway/sip/subscription.py``, sans-I/O), which owns the
  SIP dialogs, their timers, refreshes and every SIP answer; the service feeds it the SIP
  core's SUBSCRIBE/NOTIFY events, drains its events, and keeps one ``loop.call_at`` timer
  armed for the earliest of its deadlines and the service's own;
* the XMPP edge, through :meth:`on_presence` / :meth:`on_presence_error` and
  ``send_presence``;
* the state store (``gateway/store``), where subscriptions, dialogs, last states and
  presence authorizations survive restarts.

What a presence *means* on the other side is decided in :mod:`sipxmpp.mapping.presence`
(RFC 8048 tables, subscription decisions, the rich-presence policy, the RFC 3856 §6.10
throttle); this module only applies those decisions to the right dialogs and JIDs.

Two directions, two records:

* **X2S** (:class:`_Outbound`, RFC 8048 §5.2): an XMPP user ``U`` watches a SIP contact
  ``C``. The gateway is the SIP *subscriber*: ``subscribe`` -> SUBSCRIBE (point 21);
  NOTIFY ``pending`` -> nothing on XMPP (22); first ``active`` -> ``subscribed`` plus the
  PIDF as presence (23); 403/489/603 cancel the authorization, 423/481 keep it (24); a
  probe or an initial presence refreshes (25); ``unsubscribe`` -> ``Expires: 0`` and then
  ``unsubscribed`` (26); a probe without an authorization polls with a new-dialog
  ``Expires: 0`` (38). The layer refreshes before expiry by itself (``auto_refresh``).
* **S2X** (:class:`_Inbound`, RFC 8048 §5.3): a SIP watcher ``W`` watches an XMPP user
  ``U``. The gateway is the *notifier*: every SUBSCRIBE gets 200 (never 202) and an
  immediate NOTIFY (points 63-65); a new watcher becomes ``<presence type='subscribe'>``
  to ``U`` and stays ``pending`` (no state leaks, RFC 8048 §8.2) until ``U`` answers
  ``subscribed`` (empty NOTIFY ``active``) or ``unsubscribed`` (``terminated;reason=
  rejected``) (28); a refresh with unknown state gets an empty NOTIFY (29); an
  in-dialog ``Expires: 0`` gets a ``closed`` document and ``U`` an ``unavailable`` (30);
  an out-of-dialog ``Expires: 0`` is a poll (38).

Presence views and leaks (RFC 8048 §8.2, point 39): ``U``'s server sends ``U``'s presence
to each contact JID separately, and ``U`` may send directed presence to one contact only.
The service therefore keeps one *view* per (``U``, watcher JID): the latest presence of each
of ``U``'s resources *as addressed to that watcher*, and a NOTIFY to ``W`` is built only
from ``W``'s view. Nothing addressed to one watcher ever reaches another.

Rate limiting (RFC 3856 §6.10, point 68), as ``mapping.presence.NotifyThrottle`` defines
it, kept in two fields of each notifier subscription: a change within
``presence.min_notify_interval`` of the previous NOTIFY is merged and sent when the
interval ends, with the whole current view (never dropped). The NOTIFY that must follow
every 2xx (RFC 6665 §4.2.1.2) and every ``terminated`` go out at once. A document equal to
the last one sent is not sent again. When the intervals of many watchers end together,
their NOTIFYs go out over several turns of the event loop (:data:`TIMER_TURN_BUDGET_S`).

Memory: the service holds 100,000 subscriptions, so a record per subscription keeps only
what the layer does not: a pair record (:class:`_Pair`) per (user, watcher JID) holds the
subscriptions, the view and the stored state; presences in views are shared between
watchers (:data:`PRESENCE_CACHE_SIZE`), documents between equal views
(:data:`PIDF_CACHE_SIZE`); authorizations are a few bits per pair; strings that many
records repeat (users, presentities, SIP domains) are interned, and a record reuses the
layer's URI objects where the text is the same.

Caps: ``presence.max_subscriptions_per_user`` (per XMPP user, each direction) and
``presence.max_subscriptions_per_peer`` (per SIP domain, both directions); over a cap a SIP
watcher gets 503 with Retry-After and an XMPP user a ``<resource-constraint/>`` presence
error. The layer enforces ``presence.max_subscriptions`` in all.

Persistence and restarts: every record is written behind (batched every
``presence.store_flush_interval`` seconds, and on :meth:`stop`), :data:`STORE_BATCH`
records per transaction, each batch built while the previous one is written: the
layer's snapshot of the dialog (what the store's columns do not already hold), the last
PIDF sent or received, and the service's own fields. A record keeps the real state of a
subscription that is being refreshed or re-established (:func:`_stored_state`). A NOTIFY
that changes only the rich state of a presentity (show, note) is stored within
:data:`STATE_STORE_INTERVAL` seconds rather than at the next flush, and so is the CSeq it
used, as long as the dialog's CSeq has not reached a multiple of :data:`CSEQ_STORE_STRIDE`:
a presentity with 1,000 watchers that changes several times a second would otherwise have
every watcher's row rewritten every flush. On
:meth:`start` the service restores every stored subscription into the layer
(``restore``), so SIP watchers keep receiving NOTIFYs in their existing dialogs (a
refresh is answered with the stored last state, not an empty or closed one), and the
gateway's own subscriptions are refreshed (spread over ``presence.restore_spread``
seconds), or re-created when their dialog is gone. Nothing is sent to XMPP on a restart,
so no watcher sees a false "offline"; probes from each watcher's JID refresh the views
once the component link is up. Local CSeq numbers jump by :data:`CSEQ_RESTORE_GAP` on a
restore, so NOTIFYs sent after a crash that lost the last flush still climb (RFC 3261
§12.2.2).

Logging: one structured event per decision, e.g. ``presence.subscribe.sent``,
``presence.subscribe.received``, ``presence.authorization.granted``,
``presence.subscription.ended``, ``presence.restored``; the per-NOTIFY events
``presence.notify.sent`` / ``presence.notify.received`` / ``presence.notify.throttled``
are logged at debug level (they run at the NOTIFY rate).
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import logging
import math
import os
import random
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from sipxmpp.gateway.runtime.logs import kv
from sipxmpp.gateway.settings import PresenceSettings, Settings
from sipxmpp.gateway.sip.address import TransportAddress
from sipxmpp.gateway.sip.core import SipEndpoint
from sipxmpp.gateway.sip.errors import LocalSipError
from sipxmpp.gateway.sip.events import (
    RequestReceived,
    ResponseReceived,
    TransactionTimedOut,
    TransportFailed,
)
from sipxmpp.gateway.sip.ids import IdGenerator
from sipxmpp.gateway.sip.sub_events import (
    NotifyReceived,
    RefreshDue,
    Role,
    SubscribeFailed,
    SubscribeRequested,
    SubscriptionActive,
    SubscriptionPending,
    SubscriptionTerminated,
)
from sipxmpp.gateway.sip.subscription import SubscriptionConfig, SubscriptionManager
from sipxmpp.gateway.store import (
    Authorization,
    AuthorizationState,
    DialogState,
    Store,
    StoreError,
    Subscription,
    SubscriptionRole,
    SubscriptionState,
    open_store,
)
from sipxmpp.gateway.xmpp.errors import LinkDown, LocalXmppError, StanzaErrorException
from sipxmpp.mapping import presence as pmap
from sipxmpp.mapping.addresses import DomainMap, Jid, parse_uri_or_header
from sipxmpp.mapping.model import (
    LocalMappingError,
    MappingError,
    MappingRefused,
    StanzaError,
    StanzaRefused,
)
from sipxmpp.mapping.pidf import (
    MAX_PIDF_TUPLES,
    PIDF_MIME_TYPE,
    PidfError,
    deflate_pidf,
    inflate_pidf,
    is_language_tag,
    parse_pidf,
    serialize_pidf,
)
from sipxmpp.mapping.presence import (
    Authorization as Answer,
)
from sipxmpp.mapping.presence import (
    NotifyBody,
    OutboundAction,
    PresenceType,
    Resubscribe,
    RichPresencePolicy,
    SubscriptionStateValue,
    SubState,
    TerminationReason,
    XmppPresence,
    XmppStatus,
)

__all__ = [
    "CSEQ_RESTORE_GAP",
    "CSEQ_STORE_STRIDE",
    "MAX_IMMEDIATE_RETRIES",
    "MAX_PENDING_TASKS",
    "MAX_POLLS",
    "NextHopError",
    "OwnedEndpoint",
    "PIDF_CACHE_SIZE",
    "PRESENCE_CACHE_SIZE",
    "PresenceService",
    "PresenceXmpp",
    "ROUTE_CACHE_SIZE",
    "STATE_STORE_INTERVAL",
    "STORE_BATCH",
    "TIMER_TURN_BUDGET_S",
    "build_layer",
    "contact_uri_for",
    "open_presence_store",
    "subscription_config",
]

log = logging.getLogger("sipxmpp.presence")

#: Re-subscriptions the X2S side makes at once, in a row, for one (user, contact) pair before
#: it waits ``presence.retry_after`` instead. A 481 or a 423 calls for an immediate retry
#: (RFC 6665 §4.1.2.1, RFC 8048 §5.2.2); a peer answering every retry the same way must not
#: turn that into a loop.
MAX_IMMEDIATE_RETRIES = 2

#: Polls (probe -> SUBSCRIBE Expires: 0, RFC 8048 §7.1) waiting for their NOTIFY. Each ends
#: within Timer N (32 s); the bound keeps a probe flood from growing memory. Beyond it a
#: probe is answered from what the gateway knows, or not at all.
MAX_POLLS = 10_000

#: Background tasks (next-hop resolution, store reads) the service runs at once. Each holds
#: one stanza or SUBSCRIBE; beyond the bound new work is refused (503 / resource-constraint)
#: instead of queued. 10,000 is two seconds of the 5,000/s design load.
MAX_PENDING_TASKS = 10_000

#: How much a restored dialog's local CSeq jumps (RFC 3261 §12.2.1.1 only asks for
#: increasing numbers). Between two flushes (``presence.store_flush_interval``, 1 s by
#: default) a dialog sends at most one NOTIFY per ``min_notify_interval`` plus the ones
#: after refreshes; 1,000 covers any realistic crash window, and 2**31 leaves room for
#: millions of restarts.
CSEQ_RESTORE_GAP = 1000

#: Unsubscribes whose confirmation (the terminated NOTIFY or the final answer) never came:
#: after Timer F (64*T1 = 32 s with the default T1) the XMPP user is told anyway (RFC 8048
#: §5.2.3 confirms with ``unsubscribed``; the user asked for it, so it is true either way).
UNSUBSCRIBE_CONFIRM_S = 32.0

#: Probes sent per loop iteration when the component link comes up (one per watched
#: (user, watcher) pair); the rest follow on later iterations so a large gateway does not
#: stall its event loop.
PROBE_BATCH = 500

#: Subscriptions restored per loop iteration at start (each costs a store decode and a
#: layer restore; yielding keeps the loop responsive while 100,000 are restored).
RESTORE_BATCH = 1000

#: PIDF documents kept for reuse, keyed by what they are built from. An XMPP server sends a
#: user's presence to each contact separately (RFC 6121 §4.4.2), so after one change the
#: 1,000 watchers of a presentity hold 1,000 equal views: one document is built and
#: serialized for all of them, and their ``last_state`` is one shared bytes object. An entry
#: is one document (well under 1 KiB for a few resources); the oldest is evicted first.
PIDF_CACHE_SIZE = 4096

#: Presences kept as views hold them (normalized, see ``PresenceService._intern``), so that
#: the views of the 1,000 watchers of one presentity share one object per change instead
#: of holding 1,000 equal copies. An entry is one small presence; the oldest is evicted
#: first (an evicted one stays shared by the views that hold it).
PRESENCE_CACHE_SIZE = 4096

#: A notifier subscription's row is written at the next flush whenever its dialog's local
#: CSeq reaches a multiple of this (RFC 3261 §12.2.1.1). A NOTIFY that changes only the
#: rich state (see :data:`STATE_STORE_INTERVAL`) does not rewrite the row, so without this
#: the stored CSeq of a watcher notified many times a second could fall behind by more than
#: :data:`CSEQ_RESTORE_GAP`; with it, a restore skips at most this many NOTIFYs plus those
#: of one flush interval, half the gap.
CSEQ_STORE_STRIDE = CSEQ_RESTORE_GAP // 2

#: Seconds within which a NOTIFY that changes only the rich state of a presentity (show,
#: note, activities: the document stays as available, or as unavailable, as the one the
#: store holds) reaches the store. A NOTIFY that turns the presentity available or
#: unavailable is written at the next flush (``presence.store_flush_interval``), as is every
#: other change of a subscription. Rewriting each notified watcher's row every flush cost
#: more than the NOTIFYs themselves when one presentity with 1,000 watchers changes several
#: times a second (benchmarks/presence_scale.py); a crash now loses at most this many
#: seconds of show/note changes, never an availability change of more than a flush
#: interval, so a restarted gateway shows no false "offline" (RFC 8048 §5.3.2: a refresh
#: is answered with the stored state until the probes of the restart bring the current one).
STATE_STORE_INTERVAL = 10.0

#: Address mappings of incoming presence kept for reuse: (sender, addressee) -> contact JID
#: and SIP address of record, or the refusal. The mapping (RFC 7247 §6.5, with the JID
#: validation of RFC 7622) depends only on the two addresses and the configured domains,
#: and the same pairs recur at every change of a user with many watchers. An entry is two
#: short strings; the oldest is evicted first.
ROUTE_CACHE_SIZE = 4096

#: Longest the service's timer callback runs before it lets the event loop read sockets:
#: when the RFC 3856 §6.10 interval of 1,000 watchers of one presentity ends at once,
#: their 1,000 merged NOTIFYs are sent over several loop turns of this length, and the
#: watchers' 200 OKs to the first ones are read in between instead of waiting behind the
#: rest until their NOTIFYs are retransmitted (T1 = 500 ms). 5 ms is 20-50 NOTIFYs.
TIMER_TURN_BUDGET_S = 0.005

#: Subscriptions written per store transaction by :meth:`PresenceService.flush` (and the
#: batch size of its deletions and authorizations). Each batch is built right before it is
#: written, so a flush holds at most this many records (about 1 MB) whatever the number of
#: changes, and the event loop runs between batches; 1,000 rows per transaction amortise
#: the commit (SQLite's WAL append, PostgreSQL's round trip) as well as larger batches do.
STORE_BATCH = 1000

#: The ``extra`` format version written in the store. 1: the layer's whole snapshot; 2:
#: the snapshot without what the record's columns already hold (dialog, ids, event,
#: expiry), about a third of the JSON to encode per write. Both are read back.
_EXTRA_VERSION = 2

#: Snapshot fields a version-2 record keeps in its columns instead (``watcher`` and
#: ``presentity`` are informative only; ``restore`` does not read them).
_SNAPSHOT_IN_COLUMNS = frozenset(
    {"sub_id", "role", "watcher", "presentity", "event", "dialog", "expires_in", "saved_at"}
)


class NextHopError(Exception):
    """No next hop could be found for a SIP target (raised by the ``resolve`` callable)."""


class _Refusal(Exception):
    """A SUBSCRIBE the service refuses: answer ``status`` with ``headers``."""

    def __init__(
        self, status: int, reason: str, detail: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(f"{status} {reason}: {detail}")
        self.status = status
        self.reason = reason
        self.detail = detail
        self.headers = headers


# ------------------------------------------------------------------------------ interfaces


class PresenceXmpp(Protocol):
    """What the service uses of the XMPP edge."""

    @property
    def up(self) -> bool: ...

    def send_presence(
        self, presence: XmppPresence, *, error: StanzaError | None = None
    ) -> None: ...


class _Dispatcher(Protocol):
    def own(self, transaction: str, service: Any) -> None: ...


class OwnedEndpoint:
    """The SIP endpoint as the subscription layer sees it: every client transaction the
    layer starts is registered with the runtime's SIP dispatcher, so its responses and
    timeouts come back to the presence service (``runtime/dispatch.py`` routes them by
    owner). Everything else is the endpoint's own."""

    __slots__ = ("_endpoint", "_dispatcher", "_owner")

    def __init__(self, endpoint: Any, dispatcher: _Dispatcher, owner: Any) -> None:
        self._endpoint = endpoint
        self._dispatcher = dispatcher
        self._owner = owner

    def send_request(self, request: Any, destination: TransportAddress, now: float) -> str:
        key = str(self._endpoint.send_request(request, destination, now))
        self._dispatcher.own(key, self._owner)
        return key

    def send_response(self, response: Any, now: float) -> None:
        self._endpoint.send_response(response, now)

    @property
    def config(self) -> Any:
        return self._endpoint.config

    def __getattr__(self, name: str) -> Any:
        return getattr(self._endpoint, name)


def contact_uri_for(local: Mapping[str, tuple[str, int]]) -> Callable[[str], str]:
    """The layer's ``contact(transport)``: our Contact URI for a dialog on ``transport``.

    RFC 3261 §8.1.1.8: a SIP URI where the gateway receives the in-dialog requests (the
    NOTIFYs of its subscriptions, the refreshes of its watchers): the bound (or public)
    address of that transport, falling back to any bound transport.
    """

    def contact(transport: str) -> str:
        t = transport.lower()
        if t not in local:
            t = next(iter(local))
        host, port = local[t]
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        scheme = "sips" if t == "tls" else "sip"
        suffix = "" if t == "udp" else f";transport={t}"
        return f"{scheme}:gw@{host}:{port}{suffix}"

    return contact


# ------------------------------------------------------------------------------ records


#: ``_Outbound.flags``: an "active" NOTIFY arrived in this authorization, so ``subscribed``
#: was sent (point 23).
_ACTIVE_SEEN = 1
#: The user sent ``unsubscribe``; waiting for the dialog to end (point 26).
_UNSUBSCRIBING = 2
#: The latest presence could not be handed to XMPP (link down): resend on link up.
_UNDELIVERED = 4


class _Bit:
    """A boolean kept as one bit of its record's ``flags`` slot."""

    __slots__ = ("_bit",)

    def __init__(self, bit: int) -> None:
        self._bit = bit

    def __get__(self, record: Any, owner: Any = None) -> bool:
        return bool(record.flags & self._bit)

    def __set__(self, record: Any, on: bool) -> None:
        record.flags = record.flags | self._bit if on else record.flags & ~self._bit


@dataclass(slots=True, eq=False)
class _Outbound:
    """X2S: XMPP user ``user`` watches SIP contact ``contact_uri`` (gateway = subscriber).

    Ten slots, CPython's 112-byte class, for each of the 50,000 such subscriptions a
    gateway holds: the contact's SIP domain is derived from ``contact_uri`` (``peer``)
    and the three booleans are bits of ``flags``.
    """

    user: str  # U's bare JID
    user_uri: str  # U's SIP address of record (From of our SUBSCRIBEs)
    contact_uri: str  # C's address of record (Request-URI / To)
    #: C's bare JID under the component domain, as U addressed it, when that is not the
    #: JID ``contact_uri`` maps back to; None (the usual case) when it is. The JID is then
    #: mapped again where it is needed (``PresenceService._contact_jid``, a memo hit)
    #: instead of being kept: 80 B for each of the 50,000 such subscriptions a gateway
    #: holds.
    odd_jid: str | None = None
    sub_id: str | None = None
    #: What the user was shown as available (for vanished tuples and endings), as
    #: :func:`_pack_shown` keeps it: usually one resource of ``contact_jid``, interned
    #: (a full JID in a 1-tuple cost ~130 B for each of the 50,000 held); see
    #: :func:`_shown_jids`.
    shown: str | tuple[str, ...] = ()
    #: The last document received, deflated (:func:`deflate_pidf`; ``_unpack_doc``): it is
    #: read only to answer a probe, to resend after the component link was down, to skip
    #: a repeated document and to store it, for each of the 50,000 such subscriptions a
    #: gateway holds.
    last_state: bytes | None = None
    last_lang: str | None = None
    quick_retries: int = 0
    #: _ACTIVE_SEEN, _UNSUBSCRIBING, _UNDELIVERED.
    flags: int = 0

    active_seen = _Bit(_ACTIVE_SEEN)
    unsubscribing = _Bit(_UNSUBSCRIBING)
    undelivered = _Bit(_UNDELIVERED)

    @property
    def peer(self) -> str:
        """C's SIP domain (interned), as the per-peer caps count it."""
        return _peer_of(self.contact_uri)


@dataclass(slots=True, eq=False)
class _Inbound:
    """S2X: SIP watcher ``watcher_uri`` watches XMPP user ``user`` (gateway = notifier).

    One per SIP watcher's subscription, so it keeps only what the layer and the pair do
    not: its watcher's SIP domain is derived from ``watcher_uri`` (:func:`_peer_of`), and
    the RFC 3856 §6.10 throttle is two fields (``notified_at``, ``waiting``).
    """

    sub_id: str
    user: str  # U's bare JID (interned: shared by U's watchers)
    presentity_uri: str  # U's SIP address of record, the PIDF entity (interned)
    watcher_uri: str  # W's address of record
    watcher_jid: str  # W's bare JID under the component domain
    active: bool
    #: When the last NOTIFY went out (the layer's clock; -inf: never).
    notified_at: float = -math.inf
    #: A change arrived within ``min_notify_interval`` of the last NOTIFY; the current view
    #: goes out when the interval ends (a "throttle" deadline is armed).
    waiting: bool = False
    #: What the last document sent was made from (None: none, or an empty NOTIFY): the
    #: presences it rendered (the pair's view, held there anyway; the document comes
    #: back from the PIDF cache, or is rendered again, when it is needed), or the stored
    #: document itself after a restart. A document per watcher cost ~300 B each for
    #: the 50,000 watchers of 50,000 users a gateway holds.
    last_state: _Source = None
    last_lang: str | None = None


#: What a NOTIFY's document is made from: presences to render, or a stored document.
_Source = tuple[XmppPresence, ...] | bytes | None


class _Pair:
    """An XMPP user U and one SIP watcher JID W (RFC 8048 §8.2: what U's server sends to W
    is W's alone).

    ``subs``: the layer ids of W's subscriptions to U (usually one). ``view``: U's latest
    presence per resource *as addressed to W*, oldest resource first; the presences are
    shared between pairs that received equal stanzas (``PresenceService._intern``).
    ``stored``: the last document the store held for the pair after a restart, until the
    view is known again (RFC 8048 §5.3.2: a refresh gets the real state, not an empty one).
    """

    __slots__ = ("_subs", "view", "stored")

    def __init__(self) -> None:
        #: The usual single id is kept as it is, not in a 1-tuple (48 B for each of the
        #: 50,000 pairs a gateway holds).
        self._subs: str | tuple[str, ...] = ()
        self.view: tuple[XmppPresence, ...] = ()
        self.stored: tuple[bytes, str | None] | None = None

    @property
    def subs(self) -> tuple[str, ...]:
        subs = self._subs
        return (subs,) if type(subs) is str else subs  # type: ignore[return-value]

    @subs.setter
    def subs(self, value: tuple[str, ...]) -> None:
        self._subs = value[0] if len(value) == 1 else value


@dataclass(slots=True)
class _Poll:
    """An X2S one-time fetch (RFC 8048 §7.1): whom to tell what the NOTIFY says."""

    to_jid: str
    contact_jid: str


#: A service deadline: (when, sequence number, kind, key). Tuples compare in C; the unique
#: sequence number settles ties before kind and key are ever compared.
_Deadline = tuple[float, int, str, Any]


_V = TypeVar("_V")


def _remember(cache: dict[Any, Any], key: Any, value: _V, limit: int) -> _V:
    """Put ``value`` in a bounded cache under ``key``, dropping the oldest entry when the
    cache holds ``limit`` already; return ``value``."""
    if len(cache) >= limit:
        del cache[next(iter(cache))]
    cache[key] = value
    return value


def _bare(jid: str) -> str:
    return jid.split("/", 1)[0]


def _resource(jid: str) -> str:
    parts = jid.split("/", 1)
    return parts[1] if len(parts) == 2 else ""


# ------------------------------------------------------------------------------ the service


class PresenceService:
    """Routes presence between the subscription layer and the XMPP edge (module docstring).

    :param settings: the gateway settings (``[presence]`` and ``sip.user_agent``).
    :param domains: the address-mapping tables.
    :param xmpp: the XMPP edge (``send_presence``, ``up``).
    :param resolve: the SIP next hop of a URI (raises :class:`NextHopError` or any
        exception whose class name ends with ``NextHopError``).
    :param transmit: flushes what the SIP core has to send (the transport's ``transmit``).
    :param clock: the event loop's monotonic clock (the layer's ``now``).
    :param wall: wall-clock epoch seconds (the store's times).
    """

    def __init__(
        self,
        *,
        settings: Settings,
        domains: DomainMap,
        xmpp: PresenceXmpp,
        resolve: Callable[[str], Awaitable[TransportAddress]],
        transmit: Callable[[], None] = lambda: None,
        clock: Callable[[], float] | None = None,
        wall: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._cfg: PresenceSettings = settings.presence
        self._domains = domains
        self._xmpp = xmpp
        self._resolve = resolve
        self._transmit = transmit
        self._clock = clock
        self._wall = wall
        self._rng = rng or random.Random()
        self._policy = RichPresencePolicy(
            emit_activities=self._cfg.rich_presence,
            read_activities=self._cfg.rich_presence,
            closed_dnd_is_dnd=self._cfg.closed_dnd_is_dnd,
        )
        self._layer: SubscriptionManager | None = None
        self._store: Store | None = None
        # X2S
        self._outbound: dict[tuple[str, str], _Outbound] = {}
        self._out_by_sub: dict[str, _Outbound] = {}
        self._polls: dict[str, _Poll] = {}
        # S2X
        self._inbound: dict[str, _Inbound] = {}
        #: (U, watcher JID) -> the pair's subscriptions, view and stored state (_Pair).
        self._pairs: dict[tuple[str, str], _Pair] = {}
        #: Presences as views keep them, shared between pairs; see PRESENCE_CACHE_SIZE.
        self._presences: dict[tuple[Any, ...], XmppPresence] = {}
        #: The statuses of those presences, one tuple per distinct set; same bound.
        self._statuses: dict[tuple[XmppStatus, ...], tuple[XmppStatus, ...]] = {}
        #: (sender bare JID, addressee) -> what :meth:`_route` says; see ROUTE_CACHE_SIZE.
        self._routes: dict[tuple[str, str], tuple[str, str] | tuple[()] | StanzaError] = {}
        #: (presentity URI, view content) -> (PIDF, Content-Language); see PIDF_CACHE_SIZE.
        self._pidf_cache: dict[tuple[Any, ...], tuple[bytes, str | None]] = {}
        # authorizations, (U, SIP AOR) -> record; a cache of the store
        self._auth: dict[tuple[str, str], int] = {}
        self._denied: set[tuple[str, str]] = set()
        # caps
        self._per_user_out: dict[str, int] = {}
        self._per_user_in: dict[str, int] = {}
        self._per_peer: dict[str, int] = {}
        # timers
        self._heap: list[_Deadline] = []
        self._seq = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        # persistence (write-behind)
        self._dirty: set[str] = set()
        #: Notifier subscriptions whose NOTIFYs since their last write changed only the rich
        #: state; written every STATE_STORE_INTERVAL seconds (and on stop).
        self._stale: set[str] = set()
        self._stale_due = 0.0
        self._deleted: set[str] = set()
        self._dirty_auth: set[tuple[str, str]] = set()
        self._flusher: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()
        # background work
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pumping = False
        self._started = False
        #: The (U, watcher JID) pairs to probe when the component link comes up.
        self._probe_on_link: bool = False
        self.counters: dict[str, int] = {
            "subscribe_sent": 0,
            "subscribe_received": 0,
            "notify_sent": 0,
            "notify_received": 0,
            "notify_throttled": 0,
            "presence_sent": 0,
            "presence_received": 0,
            "presence_lost": 0,
            "refused": 0,
            "restored": 0,
        }

    # ------------------------------------------------------------------ lifecycle

    def _now(self) -> float:
        if self._clock is not None:
            return self._clock()
        return asyncio.get_running_loop().time()

    @property
    def layer(self) -> SubscriptionManager | None:
        return self._layer

    async def start(self, layer: SubscriptionManager, store: Store | None) -> None:
        """Attach the layer and the (open) store, restore what the store holds, start the
        write-behind loop."""
        self._layer = layer
        self._store = store
        self._started = True
        if self._clock is None:
            # The loop's clock, bound once: _now() runs a few times per message.
            self._clock = asyncio.get_running_loop().time
        self._stale_due = self._now() + STATE_STORE_INTERVAL
        if store is not None:
            await self._restore_all(store)
        self._flusher = asyncio.get_running_loop().create_task(
            self._flush_loop(), name="presence-store-flush"
        )
        self._pump()

    async def stop(self) -> None:
        """Stop timers and background work, and write everything to the store."""
        self._started = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.flush()

    # ------------------------------------------------------------------ introspection

    def stats(self) -> dict[str, int]:
        """Counts for operators and benchmarks."""
        layer = self._layer
        return {
            **self.counters,
            "outbound": len(self._outbound),
            "inbound": len(self._inbound),
            "polls": len(self._polls),
            "views": sum(1 for pair in self._pairs.values() if pair.view),
            "layer_subscriptions": layer.count() if layer is not None else 0,
        }

    def inbound_subscriptions(self) -> list[str]:
        """The notifier-role subscription ids (for tests and diagnostics)."""
        return list(self._inbound)

    def outbound_subscription(self, user: str, contact_uri: str) -> str | None:
        """The layer's id of the SIP subscription ``user`` holds to ``contact_uri``."""
        out = self._outbound.get((_bare(user), contact_uri))
        return out.sub_id if out is not None else None

    # ------------------------------------------------------------------ timers

    def _at(self, when: float, kind: str, key: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, kind, key))

    def _rearm(self) -> None:
        if not self._started:
            return
        deadline: float | None = self._heap[0][0] if self._heap else None
        layer = self._layer
        if layer is not None:
            ld = layer.next_deadline()
            if ld is not None and (deadline is None or ld < deadline):
                deadline = ld
        if deadline is None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
                self._timer_at = None
            return
        if self._timer is not None and self._timer_at == deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer_at = deadline
        self._timer = loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        at = self._timer_at or 0.0
        self._timer_at = None
        now = max(at, self._now())
        layer = self._layer
        if layer is not None:
            ld = layer.next_deadline()
            if ld is not None and ld <= now:
                try:
                    layer.handle_timer(now)
                except Exception:
                    log.exception("presence.layer.timer_failed")
        heap = self._heap
        clock = time.monotonic
        budget_end = clock() + TIMER_TURN_BUDGET_S
        while heap and heap[0][0] <= now:
            if clock() > budget_end:
                # The rest in a later turn of the event loop (the re-armed timer is already
                # due): datagrams, such as the watchers' 200s to what was just sent, are
                # read in between (see TIMER_TURN_BUDGET_S).
                break
            item = heapq.heappop(heap)
            try:
                self._fire(item, now)
            except Exception:
                log.exception("presence.timer_failed", extra=kv(kind=item[2]))
        self._pump()

    def _fire(self, item: _Deadline, now: float) -> None:
        _, _, kind, key = item
        if kind == "throttle":
            inbound = self._inbound.get(key)
            if inbound is not None and inbound.waiting:
                ready = inbound.notified_at + self._cfg.min_notify_interval
                if now >= ready:  # RFC 3856 §6.10: the interval is over, send the merged view
                    inbound.waiting = False
                    self._notify_current(inbound, now, force=False)
                else:  # a full-state NOTIFY went out meanwhile: wait again
                    self._at(ready, "throttle", key)
        elif kind == "retry":
            out = self._outbound.get(key)
            if out is not None and not out.unsubscribing:
                self._spawn(self._establish(out, refresh_first=True))
        elif kind == "restored-refresh":
            out = self._out_by_sub.get(key)
            layer = self._layer
            if out is not None and layer is not None and layer.get(key) is not None:
                self._layer_refresh(out, now)
        elif kind == "unsubscribe-confirm":
            out = self._outbound.get(key)
            if out is not None and out.unsubscribing:
                self._finish_unsubscribe(out)

    # ------------------------------------------------------------------ pumping the layer

    def _pump(self) -> None:
        """Drain the layer's events, then flush the SIP bytes and re-arm the timer."""
        layer = self._layer
        if layer is None:
            return
        if self._pumping:
            return  # the outer call drains what this one would have
        self._pumping = True
        try:
            while (event := layer.next_event()) is not None:
                try:
                    self._on_layer_event(event)
                except Exception:
                    log.exception("presence.event_failed", extra=kv(event=type(event).__name__))
        finally:
            self._pumping = False
        try:
            self._transmit()
        except Exception:
            log.exception("presence.transmit_failed")
        self._rearm()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> bool:
        if len(self._tasks) >= MAX_PENDING_TASKS:
            coro.close()
            log.warning("presence.overloaded", extra=kv(tasks=len(self._tasks)))
            return False
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return True

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("presence.task_failed", exc_info=task.exception())

    # ------------------------------------------------------------------ SIP side

    def handle_sip_event(self, event: object) -> None:
        """An event of the SIP core routed here (SUBSCRIBE/NOTIFY requests, outcomes of the
        layer's client transactions)."""
        layer = self._layer
        if layer is None:
            self._refuse_early(event)
            return
        if not isinstance(
            event, RequestReceived | ResponseReceived | TransactionTimedOut | TransportFailed
        ):
            return
        try:
            layer.handle_sip_event(event, self._now())
        except Exception:
            log.exception("presence.layer.event_failed", extra=kv(event=type(event).__name__))
        self._pump()

    def _refuse_early(self, event: object) -> None:
        """Before :meth:`start`, nothing can be served; the SIP core answers nothing itself."""
        log.warning("presence.not_started", extra=kv(event=type(event).__name__))

    def _on_layer_event(self, event: object) -> None:
        if isinstance(event, SubscribeRequested):
            self._on_subscribe_requested(event)
        elif isinstance(event, NotifyReceived):
            self._on_notify_received(event)
        elif isinstance(event, SubscribeFailed):
            self._on_subscribe_failed(event)
        elif isinstance(event, SubscriptionTerminated):
            self._on_terminated(event)
        elif isinstance(event, SubscriptionActive | SubscriptionPending):
            sub_id = event.sub_id
            if sub_id in self._out_by_sub:
                self._dirty.add(sub_id)
        elif isinstance(event, RefreshDue):
            out = self._out_by_sub.get(event.sub_id)
            if out is not None:
                self._layer_refresh(out, self._now())

    # ================================================================== S2X (notifier)

    def _on_subscribe_requested(self, ev: SubscribeRequested) -> None:
        layer = self._layer
        assert layer is not None
        now = self._now()
        self.counters["subscribe_received"] += 1
        inbound = self._inbound.get(ev.sub_id)
        if inbound is None:
            refusal: _Refusal | None
            try:
                inbound = self._new_inbound(ev)
            except MappingRefused as exc:
                refusal = _Refusal(exc.status, exc.reason, exc.detail or "", exc.headers)
            except _Refusal as exc:
                refusal = exc
            else:
                refusal = None
            if refusal is not None:
                self.counters["refused"] += 1
                log.info(
                    "presence.subscribe.refused",
                    extra=kv(status=refusal.status, reason=refusal.detail, watcher=ev.watcher),
                )
                layer.reject(ev.sub_id, now, refusal.status, refusal.reason, refusal.headers)
                return
            assert inbound is not None
        key = (inbound.user, inbound.watcher_uri)
        if key in self._auth or self._store is None:
            self._answer_subscribe(inbound, ev, self._auth_of(key), now)
            return
        if not self._spawn(self._answer_after_lookup(inbound, ev)):
            self._drop_inbound(inbound.sub_id)
            layer.reject(ev.sub_id, now, 503, headers=self._retry_after())

    async def _answer_after_lookup(self, inbound: _Inbound, ev: SubscribeRequested) -> None:
        key = (inbound.user, inbound.watcher_uri)
        auth = await self._load_auth(key)
        layer = self._layer
        if layer is None or not self._started:
            return
        if ev.refresh and ev.sub_id not in self._inbound:
            return  # ended while the store answered
        self._answer_subscribe(inbound, ev, auth, self._now())
        self._pump()

    def _new_inbound(self, ev: SubscribeRequested) -> _Inbound:
        """Map a new watcher and check the caps; raises MappingRefused to reject."""
        cfg = self._cfg
        user = self._domains.sip_target_to_jid(ev.presentity).bare
        watcher_jid = self._domains.sip_sender_to_jid(ev.watcher).bare
        try:
            watcher = pmap_aor(ev.watcher)
            presentity = str(self._domains.xmpp_sender_to_sip(user))
        except (MappingError, StanzaRefused) as exc:
            raise MappingRefused(404, "Not Found", str(exc)) from None
        # Interned: every watcher of one user shares these strings (the layer interns the
        # presentity of its dialogs too); the watcher's AOR is the layer's own From URI
        # object whenever it has no parameters to drop.
        user_s = sys.intern(str(user))
        presentity = sys.intern(presentity)
        if watcher == ev.watcher:
            watcher = ev.watcher
        peer = _peer_of(watcher)
        if not ev.fetch:
            if self._per_user_in.get(user_s, 0) >= cfg.max_subscriptions_per_user:
                raise _Refusal(
                    503,
                    "Service Unavailable",
                    f"{user_s} has too many watchers",
                    self._retry_after(),
                )
            if self._per_peer.get(peer, 0) >= cfg.max_subscriptions_per_peer:
                raise _Refusal(
                    503,
                    "Service Unavailable",
                    f"too many subscriptions with {peer}",
                    self._retry_after(),
                )
        inbound = _Inbound(
            sub_id=ev.sub_id,
            user=user_s,
            presentity_uri=presentity,
            watcher_uri=watcher,
            watcher_jid=str(watcher_jid),
            active=False,
        )
        if not ev.fetch:
            self._add_inbound(inbound)
        return inbound

    def _add_inbound(self, inbound: _Inbound) -> None:
        self._inbound[inbound.sub_id] = inbound
        key = (inbound.user, inbound.watcher_jid)
        pair = self._pairs.get(key)
        if pair is None:
            pair = self._pairs[key] = _Pair()
        pair.subs = (*pair.subs, inbound.sub_id)
        self._per_user_in[inbound.user] = self._per_user_in.get(inbound.user, 0) + 1
        peer = _peer_of(inbound.watcher_uri)
        self._per_peer[peer] = self._per_peer.get(peer, 0) + 1

    def _drop_inbound(self, sub_id: str) -> _Inbound | None:
        inbound = self._inbound.pop(sub_id, None)
        if inbound is None:
            return None
        key = (inbound.user, inbound.watcher_jid)
        pair = self._pairs.get(key)
        if pair is not None:
            pair.subs = tuple(s for s in pair.subs if s != sub_id)
            if not pair.subs:
                del self._pairs[key]
        _decrement(self._per_user_in, inbound.user)
        _decrement(self._per_peer, _peer_of(inbound.watcher_uri))
        self._dirty.discard(sub_id)
        self._stale.discard(sub_id)
        self._deleted.add(sub_id)
        return inbound

    def _answer_subscribe(
        self, inbound: _Inbound, ev: SubscribeRequested, auth: int, now: float
    ) -> None:
        layer = self._layer
        assert layer is not None
        key = (inbound.user, inbound.watcher_uri)
        answer = self._answer_of(key, auth)
        known = self._state_known(inbound)
        in_dialog = ev.refresh
        plan = pmap.plan_inbound_subscribe(
            expires=ev.expires,
            in_dialog=in_dialog,
            authorization=answer,
            state_known=known,
            maximum_expires=self._cfg.max_expires,
        )
        kind = plan.kind
        log.info(
            "presence.subscribe.received",
            extra=kv(
                sub=ev.sub_id,
                kind=kind.value,
                watcher=inbound.watcher_uri,
                presentity=inbound.user,
                authorization=answer.value,
                expires=ev.expires,
            ),
        )
        if kind is pmap.InboundKind.UNSUBSCRIBE:
            # RFC 8048 §5.3.3 (point 30): the final NOTIFY carries a closed document, and
            # the XMPP user hears that the watcher left; the authorization stays.
            body, lang, _ = self._body(inbound, plan.notify_body)
            layer.terminate(
                ev.sub_id,
                now,
                reason="timeout",
                body=body,
                content_type=PIDF_MIME_TYPE if body is not None else None,
            )
            self._log_notify(inbound, "terminated;reason=timeout", body)
            self._drop_inbound(ev.sub_id)
            self._send(
                XmppPresence(
                    from_jid=inbound.watcher_jid,
                    to_jid=inbound.user,
                    type=PresenceType.UNAVAILABLE,
                )
            )
            return
        if kind is pmap.InboundKind.POLL:
            # RFC 8048 §7.2 (point 38): answered with the current state; a probe to the
            # XMPP user when the gateway knows nothing yet.
            body, lang, _ = self._body(inbound, plan.notify_body)
            layer.accept(
                ev.sub_id,
                now,
                state="active" if answer is Answer.GRANTED else "pending",
                body=body,
                content_type=PIDF_MIME_TYPE if body is not None else None,
                headers=_lang_header(lang if body is not None else None),
            )
            self._log_notify(inbound, "terminated;reason=timeout", body)
            if plan.xmpp_type is PresenceType.PROBE:
                self._probe(inbound.user, inbound.watcher_jid)
            return
        if answer is Answer.DENIED and kind is pmap.InboundKind.REFRESH:
            # The user refused this watcher: refuse the refresh and end the dialog
            # (RFC 6665 §4.2.2: terminated;reason=rejected).
            layer.reject(ev.sub_id, now, 403, "Forbidden")
            layer.terminate(ev.sub_id, now, reason="rejected")
            self._log_notify(inbound, "terminated;reason=rejected", None)
            self._drop_inbound(ev.sub_id)
            return
        if plan.xmpp_type is PresenceType.SUBSCRIBE:
            if not self._xmpp.up:
                # The XMPP user cannot be asked now: a temporary refusal (RFC 3261 §21.5.4).
                self._drop_inbound(ev.sub_id)
                layer.reject(ev.sub_id, now, 503, headers=self._retry_after())
                self.counters["refused"] += 1
                return
            self._send(
                XmppPresence(
                    from_jid=inbound.watcher_jid, to_jid=inbound.user, type=PresenceType.SUBSCRIBE
                )
            )
            self._set_auth(key, pending_in=True)
            log.info(
                "presence.authorization.requested",
                extra=kv(user=inbound.user, watcher=inbound.watcher_uri),
            )
        active = plan.notify_state.state is SubState.ACTIVE
        body, lang, source = None, None, None
        if active:
            body, lang, source = self._body(inbound, plan.notify_body)
        layer.accept(
            ev.sub_id,
            now,
            state="active" if active else "pending",
            body=body,
            content_type=PIDF_MIME_TYPE if body is not None else None,
            headers=_lang_header(lang if body is not None else None),
        )
        inbound.active = active
        inbound.notified_at = now  # a full-state NOTIFY, outside the throttle (§4.2.1.2)
        inbound.waiting = False
        if body is not None:
            inbound.last_state, inbound.last_lang = source, lang
        self._log_notify(inbound, plan.notify_state.state.value, body)
        self._dirty.add(ev.sub_id)

    def _answer_of(self, key: tuple[str, str], auth: int) -> Answer:
        if auth & _AUTH_FROM:
            return Answer.GRANTED
        if auth & _AUTH_PENDING_IN:
            return Answer.PENDING
        return Answer.DENIED if key in self._denied else Answer.PENDING

    def _state_known(self, inbound: _Inbound) -> bool:
        pair = self._pairs.get((inbound.user, inbound.watcher_jid))
        return pair is not None and (bool(pair.view) or pair.stored is not None)

    def _body(
        self, inbound: _Inbound, kind: NotifyBody
    ) -> tuple[bytes | None, str | None, _Source]:
        """The NOTIFY body for ``kind``: the watcher's view of the user as PIDF, its
        Content-Language, and what it was made from (``_Inbound.last_state``)."""
        if kind is NotifyBody.EMPTY:
            return None, None, None
        pair = self._pairs.get((inbound.user, inbound.watcher_jid))
        view = pair.view if pair is not None else ()
        if kind is NotifyBody.CLOSED:
            closed = tuple(
                dataclasses.replace(p, type=PresenceType.UNAVAILABLE, show=None) for p in view
            ) or (
                XmppPresence(
                    from_jid=inbound.user, to_jid=inbound.user, type=PresenceType.UNAVAILABLE
                ),
            )
            return (*self._pidf(inbound.presentity_uri, closed, inbound.user), closed)
        if view:
            return (*self._pidf(inbound.presentity_uri, view, inbound.user), view)
        if pair is not None and pair.stored is not None:
            stored, lang = pair.stored
            return stored, lang, stored
        return None, None, None

    def _last_body(self, inbound: _Inbound) -> bytes | None:
        """The last document sent to the watcher (see ``_Inbound.last_state``)."""
        last = inbound.last_state
        if type(last) is tuple:
            return self._pidf(inbound.presentity_uri, last, inbound.user)[0]
        return last  # type: ignore[return-value]  # bytes or None

    def _sent_already(
        self, inbound: _Inbound, body: bytes, lang: str | None, source: _Source
    ) -> bool:
        """The watcher's last NOTIFY carried this very document."""
        last = inbound.last_state
        if last is None or lang != inbound.last_lang:
            return False
        return source is last or _same(body, self._last_body(inbound))

    def _pidf(
        self, presentity_uri: str, presences: tuple[XmppPresence, ...], user: str
    ) -> tuple[bytes | None, str | None]:
        # Everything the document depends on: the presences as received (the view's are
        # normalized: to_jid is the user, no stanza id, see _intern), the entity; the
        # timestamp is not written, the policy is the service's.
        key = (presentity_uri, presences)
        cache = self._pidf_cache
        cached = cache.get(key)
        if cached is not None:
            return cached
        contacts: dict[str, str] = {}
        for p in presences:
            res = p.resource
            if res:
                try:
                    contacts[res] = str(self._domains.xmpp_sender_to_sip(p.from_jid))
                except (StanzaRefused, MappingError):
                    pass
        try:
            state = pmap.xmpp_to_pidf(
                presentity_uri, list(presences), contacts=contacts, policy=self._policy
            )
            if state.document is None:
                return None, None
            built = (serialize_pidf(state.document), state.content_language)
        except (MappingError, PidfError) as exc:
            log.warning("presence.pidf.unbuildable", extra=kv(user=user, error=str(exc)))
            return None, None
        return _remember(cache, key, built, PIDF_CACHE_SIZE)

    def _intern(self, presence: XmppPresence, user: str) -> XmppPresence:
        """``presence`` as a view keeps it: addressed to the user itself, without stanza id,
        and one object for every watcher that received an equal stanza (an XMPP server
        sends a change to each contact separately, RFC 6121 §4.4.2); see
        PRESENCE_CACHE_SIZE."""
        key = (
            presence.from_jid,
            presence.type,
            presence.show,
            presence.statuses,
            presence.priority,
            presence.lang,
        )
        cache = self._presences
        known = cache.get(key)
        if known is not None:
            return known
        statuses = presence.statuses
        if statuses:
            # One tuple per distinct set of statuses (most users' are a few common
            # texts), not one per presence kept.
            shared = self._statuses.get(statuses)
            statuses = (
                _remember(self._statuses, statuses, statuses, PRESENCE_CACHE_SIZE)
                if shared is None
                else shared
            )
        normal = XmppPresence(
            from_jid=presence.from_jid,
            to_jid=user,
            type=presence.type,
            show=presence.show,
            statuses=statuses,
            priority=presence.priority,
            lang=presence.lang,
        )
        return _remember(cache, key, normal, PRESENCE_CACHE_SIZE)

    def _notify_current(
        self,
        inbound: _Inbound,
        now: float,
        *,
        force: bool,
        built: tuple[bytes | None, str | None, _Source] | None = None,
    ) -> None:
        """Send the watcher's current view (after the throttle let it through); ``built``
        is the document when the caller already has it."""
        layer = self._layer
        if layer is None or not inbound.active:
            return
        body, lang, source = built if built is not None else self._body(inbound, NotifyBody.CURRENT)
        if body is None:
            return
        if not force and self._sent_already(inbound, body, lang, source):
            return
        try:
            cseq = layer.notify(
                inbound.sub_id,
                now,
                state="active",
                body=body,
                content_type=PIDF_MIME_TYPE,
                headers=_lang_header(lang),
            )
        except Exception as exc:  # the layer forgot it (expired meanwhile): nothing to send
            log.info("presence.notify.skipped", extra=kv(sub=inbound.sub_id, error=str(exc)))
            return
        # The row keeps the last document sent; when it is written depends on what changed
        # (STATE_STORE_INTERVAL, CSEQ_STORE_STRIDE).
        if cseq % CSEQ_STORE_STRIDE == 0 or _availability(source) != _availability(
            inbound.last_state
        ):
            self._dirty.add(inbound.sub_id)
        else:
            self._stale.add(inbound.sub_id)
        inbound.last_state, inbound.last_lang = source, lang
        inbound.notified_at = now
        self._log_notify(inbound, "active", body)

    def _offer(self, inbound: _Inbound, now: float) -> None:
        """A state change for one watcher, through the RFC 3856 §6.10 throttle (point 68):
        at most one NOTIFY per ``min_notify_interval``; a change within it is merged (the
        watcher gets the whole current view when the interval ends), never dropped."""
        if not inbound.active:
            return
        body, lang, source = self._body(inbound, NotifyBody.CURRENT)
        if body is None or self._sent_already(inbound, body, lang, source):
            return  # nothing new for this watcher
        if inbound.waiting:
            self.counters["notify_throttled"] += 1
            return  # merged: the armed deadline sends the view as it is then
        ready = inbound.notified_at + self._cfg.min_notify_interval
        if now >= ready:
            self._notify_current(inbound, now, force=False, built=(body, lang, source))
            return
        inbound.waiting = True
        self.counters["notify_throttled"] += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug("presence.notify.throttled", extra=kv(sub=inbound.sub_id, until=ready))
        self._at(ready, "throttle", inbound.sub_id)

    def _log_notify(self, inbound: _Inbound, state: str, body: bytes | None) -> None:
        self.counters["notify_sent"] += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "presence.notify.sent",
                extra=kv(
                    sub=inbound.sub_id,
                    watcher=inbound.watcher_uri,
                    presentity=inbound.user,
                    state=state,
                    bytes=len(body) if body else 0,
                ),
            )

    # -- XMPP user's answers and presence to SIP watchers

    def _on_user_answer(self, presence: XmppPresence, contact_jid: str, contact_uri: str) -> None:
        """``subscribed`` / ``unsubscribed`` from the XMPP user to a SIP watcher (point 28)."""
        layer = self._layer
        assert layer is not None
        user = _bare(presence.from_jid)
        key = (user, contact_uri)
        pair_key = (user, contact_jid)
        now = self._now()
        granted = presence.type is PresenceType.SUBSCRIBED
        if granted:
            self._denied.discard(key)
            self._set_auth(key, sip_receives=True, pending_in=False)
            log.info("presence.authorization.granted", extra=kv(user=user, watcher=contact_uri))
        else:
            self._denied.add(key)
            self._set_auth(key, sip_receives=False, pending_in=False)
            log.info("presence.authorization.denied", extra=kv(user=user, watcher=contact_uri))
        pair = self._pairs.get(pair_key)
        for sub_id in pair.subs if pair is not None else ():
            inbound = self._inbound[sub_id]
            if granted:
                if inbound.active:
                    continue
                # RFC 8048 §5.3.1: an empty NOTIFY "active"; the state follows when the
                # user's server sends it (RFC 6121 §3.1.5), through the throttle.
                layer.notify(sub_id, now, state="active")
                inbound.active = True
                inbound.notified_at = now
                inbound.waiting = False
                self._log_notify(inbound, "active", None)
                self._dirty.add(sub_id)
                if pair is not None and pair.view:
                    self._offer(inbound, now)
            else:
                layer.terminate(sub_id, now, reason="rejected")
                self._log_notify(inbound, "terminated;reason=rejected", None)
                self._drop_inbound(sub_id)
        if not granted:
            self._pairs.pop(pair_key, None)

    def _on_user_presence(self, presence: XmppPresence, contact_jid: str, contact_uri: str) -> None:
        """Available/unavailable from the XMPP user to one contact JID: only that
        contact's dialogs hear of it (RFC 8048 §8.2, point 39)."""
        # Interned: the view's presences are addressed to it (``_intern``), and the
        # records of the user's subscriptions already hold the one interned copy.
        user = sys.intern(_bare(presence.from_jid))
        pair_key = (user, contact_jid)
        pair = self._pairs.get(pair_key)
        if pair is None:
            if (user, contact_uri) not in self._outbound:
                return  # nobody watches: nothing to remember
            pair = self._pairs[pair_key] = _Pair()
        view = pair.view
        res = presence.resource
        if not res and presence.type is PresenceType.UNAVAILABLE:
            # From the bare JID: the account has no available resource at all (RFC 6121
            # §4.3.2, the answer to a probe): one closed tuple replaces every resource.
            view = ()
        elif view:
            # The resource's previous presence is replaced (and goes last); a resource
            # coming online ends a bare "unavailable" (the account is no longer offline).
            view = tuple(
                p
                for p in view
                if not (
                    p.resource == res
                    or (res and not p.resource and p.type is PresenceType.UNAVAILABLE)
                )
            )
        view = (*view, self._intern(presence, user))
        if len(view) > MAX_PIDF_TUPLES:
            # Forget the oldest unavailable resource (or the oldest one): a document
            # carries at most MAX_PIDF_TUPLES tuples.
            victim = next((i for i, p in enumerate(view) if p.type is PresenceType.UNAVAILABLE), 0)
            view = view[:victim] + view[victim + 1 :]
        pair.view = view
        pair.stored = None  # the view is the state now
        if not pair.subs:
            return
        now = self._now()
        inbounds = self._inbound
        for sub_id in pair.subs:
            inbound = inbounds.get(sub_id)
            if inbound is not None:
                self._offer(inbound, now)

    def _probe(self, user: str, watcher_jid: str) -> None:
        self._send(XmppPresence(from_jid=watcher_jid, to_jid=user, type=PresenceType.PROBE))

    # ================================================================== X2S (subscriber)

    def _pair_out(self, presence: XmppPresence, contact_jid: str, contact_uri: str) -> _Outbound:
        user = _bare(presence.from_jid)
        out = self._outbound.get((user, contact_uri))
        if out is not None:
            return out
        # The layer's dialog keeps these very URI objects (From and To of the SUBSCRIBE).
        user_uri = str(self._domains.xmpp_sender_to_sip(user))
        return _Outbound(
            user=user,
            user_uri=user_uri,
            contact_uri=contact_uri,
            odd_jid=self._odd_jid(contact_uri, contact_jid),
        )

    def _mapped_jid(self, contact_uri: str) -> str | None:
        """The bare JID a SIP contact's address maps to (None: it maps to none)."""
        try:
            return str(self._domains.sip_sender_to_jid(contact_uri).bare)
        except MappingError:
            return None

    def _odd_jid(self, contact_uri: str, contact_jid: str) -> str | None:
        """``_Outbound.odd_jid`` for a contact addressed as ``contact_jid``."""
        return None if self._mapped_jid(contact_uri) == contact_jid else contact_jid

    def _contact_jid(self, out: _Outbound) -> str:
        """C's bare JID, as U addressed it (see ``_Outbound.odd_jid``)."""
        jid = out.odd_jid
        if jid is None:
            jid = self._mapped_jid(out.contact_uri)
            assert jid is not None  # _odd_jid keeps the JID of an address that maps to none
        return jid

    def _check_out_caps(self, out: _Outbound) -> None:
        cfg = self._cfg
        if (out.user, out.contact_uri) in self._outbound:
            return
        if self._per_user_out.get(out.user, 0) >= cfg.max_subscriptions_per_user:
            raise StanzaErrorException(
                StanzaError("resource-constraint", "wait", "too many subscriptions to SIP contacts")
            )
        if self._per_peer.get(out.peer, 0) >= cfg.max_subscriptions_per_peer:
            raise StanzaErrorException(
                StanzaError(
                    "resource-constraint", "wait", f"too many subscriptions with {out.peer}"
                )
            )

    def _add_outbound(self, out: _Outbound) -> None:
        key = (out.user, out.contact_uri)
        if key in self._outbound:
            return
        self._outbound[key] = out
        # The authorization of the same (user, contact) is keyed by this very tuple: a
        # dict keeps the key object it first got, so the entry is put back under it (one
        # 64-byte tuple less for each of the 50,000 subscriptions a gateway holds).
        bits = self._auth.pop(key, None)
        if bits is not None:
            self._auth[key] = bits
        self._per_user_out[out.user] = self._per_user_out.get(out.user, 0) + 1
        self._per_peer[out.peer] = self._per_peer.get(out.peer, 0) + 1

    def _drop_outbound(self, out: _Outbound) -> None:
        if self._outbound.pop((out.user, out.contact_uri), None) is None:
            return
        _decrement(self._per_user_out, out.user)
        _decrement(self._per_peer, out.peer)
        pair_key = (out.user, self._contact_jid(out))
        pair = self._pairs.get(pair_key)
        if pair is not None and not pair.subs:
            del self._pairs[pair_key]  # kept only for initial-presence detection
        if out.sub_id is not None:
            self._forget_sub(out)

    def _forget_sub(self, out: _Outbound) -> None:
        sub_id = out.sub_id
        if sub_id is None:
            return
        self._out_by_sub.pop(sub_id, None)
        self._dirty.discard(sub_id)
        self._deleted.add(sub_id)
        out.sub_id = None

    async def _on_x2s(
        self,
        presence: XmppPresence,
        contact_jid: str,
        contact_uri: str,
        *,
        initial: bool = False,
    ) -> None:
        """subscribe / unsubscribe / probe / initial available presence from the XMPP user
        to a SIP contact (``initial``: the resource's first available since offline)."""
        ptype = presence.type
        out = self._pair_out(presence, contact_jid, contact_uri)
        key = (out.user, contact_uri)
        auth = await self._load_auth(key)
        if not self._started:
            return
        out = self._outbound.get(key, out)
        authorized = bool(auth & _AUTH_TO)
        dialog_active = out.sub_id is not None and key in self._outbound
        action = pmap.outbound_action(
            ptype, authorized=authorized, dialog_active=dialog_active, initial_presence=initial
        )
        if ptype is PresenceType.SUBSCRIBE:
            self._check_out_caps(out)
            self._add_outbound(out)
            out.unsubscribing = False
            if not authorized:
                self._set_auth(key, pending_out=True)
            else:
                # RFC 6121 §3.1.3: the contact already approved: confirm at once.
                self._send(
                    XmppPresence(
                        from_jid=contact_jid, to_jid=out.user, type=PresenceType.SUBSCRIBED
                    )
                )
                self._resend_state(out, to_jid=out.user)
            log.info(
                "presence.authorization.requested",
                extra=kv(user=out.user, contact=contact_uri, direction="x2s"),
            )
        elif ptype is PresenceType.UNSUBSCRIBE:
            self._set_auth(key, xmpp_receives=False, pending_out=False)
            if key not in self._outbound:
                self._send_unsubscribed(out)
                return
            out.unsubscribing = True
            if out.sub_id is None or self._layer is None or self._layer.get(out.sub_id) is None:
                self._finish_unsubscribe(out)
                return
        elif ptype is PresenceType.PROBE and key in self._outbound and out.last_state:
            # RFC 6121 §4.3.2: a probe is answered with the contact's current presence.
            self._resend_state(out, to_jid=presence.from_jid)
        await self._apply_action(out, action, presence)

    def _initial_presence(self, presence: XmppPresence, contact_jid: str) -> bool:
        """Is this available presence the resource's first since it was offline?"""
        pair = self._pairs.get((_bare(presence.from_jid), contact_jid))
        if pair is None:
            return True
        res = presence.resource
        previous = next((p for p in pair.view if p.resource == res), None)
        return previous is None or previous.type is PresenceType.UNAVAILABLE

    async def _apply_action(
        self, out: _Outbound, action: OutboundAction, presence: XmppPresence
    ) -> None:
        layer = self._layer
        assert layer is not None
        now = self._now()
        if action is OutboundAction.NONE:
            return
        if action is OutboundAction.UNSUBSCRIBE:
            assert out.sub_id is not None
            try:
                layer.unsubscribe(out.sub_id, now)
            except Exception:
                self._finish_unsubscribe(out)
                return
            self.counters["subscribe_sent"] += 1
            log.info(
                "presence.subscribe.sent",
                extra=kv(
                    kind="unsubscribe", sub=out.sub_id, user=out.user, contact=out.contact_uri
                ),
            )
            self._at(
                now + UNSUBSCRIBE_CONFIRM_S, "unsubscribe-confirm", (out.user, out.contact_uri)
            )
            self._pump()
            return
        if action is OutboundAction.REFRESH:
            if out.sub_id is not None and layer.get(out.sub_id) is not None:
                self._layer_refresh(out, now)
                self._pump()
                return
            action = OutboundAction.SUBSCRIBE
        if action is OutboundAction.POLL:
            await self._poll(out, presence)
            return
        if (out.user, out.contact_uri) not in self._outbound:
            self._check_out_caps(out)
            self._add_outbound(out)
        await self._subscribe(out)

    def _layer_refresh(self, out: _Outbound, now: float) -> None:
        layer = self._layer
        assert layer is not None and out.sub_id is not None
        try:
            layer.refresh(out.sub_id, now, self._cfg.subscribe_expires)
        except Exception as exc:
            # The layer no longer holds it (or a refresh is already in flight).
            log.info("presence.refresh.skipped", extra=kv(sub=out.sub_id, error=str(exc)))
            return
        self.counters["subscribe_sent"] += 1
        log.info(
            "presence.subscribe.sent",
            extra=kv(kind="refresh", sub=out.sub_id, user=out.user, contact=out.contact_uri),
        )

    async def _destination(self, uri: str) -> TransportAddress:
        try:
            return await self._resolve(uri)
        except Exception as exc:
            if type(exc).__name__.endswith("NextHopError"):
                raise StanzaErrorException(
                    StanzaError("remote-server-not-found", "cancel", str(exc))
                ) from None
            raise

    async def _subscribe(self, out: _Outbound) -> None:
        """A new notification dialog for ``out`` (RFC 8048 §5.2.1, point 21)."""
        dest = await self._destination(out.contact_uri)
        layer = self._layer
        if layer is None or not self._started:
            return
        if (out.user, out.contact_uri) not in self._outbound or out.unsubscribing:
            return
        if out.sub_id is not None and layer.get(out.sub_id) is not None:
            return  # established meanwhile
        if out.sub_id is not None:
            self._forget_sub(out)
        now = self._now()
        try:
            sub_id = layer.subscribe(
                request_uri=out.contact_uri,
                from_uri=out.user_uri,
                to_uri=out.contact_uri,
                destination=dest,
                now=now,
                event=pmap.PRESENCE_EVENT,
                accept=(PIDF_MIME_TYPE,),
                expires=self._cfg.subscribe_expires,
                auto_refresh=True,
            )
        except LocalSipError as exc:
            raise StanzaErrorException(
                StanzaError("resource-constraint", "wait", f"cannot subscribe now: {exc.msg}")
            ) from None
        out.sub_id = sub_id
        self._out_by_sub[sub_id] = out
        self._deleted.discard(sub_id)
        self._dirty.add(sub_id)
        self.counters["subscribe_sent"] += 1
        log.info(
            "presence.subscribe.sent",
            extra=kv(kind="new", sub=sub_id, user=out.user, contact=out.contact_uri),
        )
        self._pump()

    async def _establish(self, out: _Outbound, *, refresh_first: bool) -> None:
        """A retry: refresh the dialog if the layer still has it, else a new one."""
        layer = self._layer
        if layer is None:
            return
        if refresh_first and out.sub_id is not None and layer.get(out.sub_id) is not None:
            self._layer_refresh(out, self._now())
            self._pump()
            return
        try:
            await self._subscribe(out)
        except StanzaErrorException as exc:
            log.info(
                "presence.subscribe.unroutable",
                extra=kv(user=out.user, contact=out.contact_uri, error=exc.error.text),
            )
            self._at(self._now() + self._cfg.retry_after, "retry", (out.user, out.contact_uri))
            self._rearm()

    async def _poll(self, out: _Outbound, presence: XmppPresence) -> None:
        """A probe without an authorization: one fetch (RFC 8048 §7.1, point 38)."""
        if len(self._polls) >= MAX_POLLS:
            log.warning("presence.poll.refused", extra=kv(polls=len(self._polls)))
            return
        dest = await self._destination(out.contact_uri)
        layer = self._layer
        if layer is None or not self._started:
            return
        try:
            sub_id = layer.fetch(
                request_uri=out.contact_uri,
                from_uri=out.user_uri,
                to_uri=out.contact_uri,
                destination=dest,
                now=self._now(),
                event=pmap.PRESENCE_EVENT,
            )
        except LocalSipError as exc:
            log.info("presence.poll.refused", extra=kv(error=exc.msg))
            return
        self._polls[sub_id] = _Poll(to_jid=presence.from_jid, contact_jid=self._contact_jid(out))
        self.counters["subscribe_sent"] += 1
        log.info(
            "presence.subscribe.sent",
            extra=kv(kind="poll", sub=sub_id, user=out.user, contact=out.contact_uri),
        )
        self._pump()

    # -- what comes back from the SIP side

    def _on_notify_received(self, ev: NotifyReceived) -> None:
        self.counters["notify_received"] += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "presence.notify.received",
                extra=kv(sub=ev.sub_id, state=ev.state, reason=ev.reason, bytes=len(ev.body)),
            )
        poll = self._polls.get(ev.sub_id)
        if poll is not None:
            if ev.state == "terminated":
                del self._polls[ev.sub_id]
            presences = self._presences_of(ev, poll.contact_jid, poll.to_jid)
            if presences is not None:
                for p in presences:
                    self._send(p)
            return
        out = self._out_by_sub.get(ev.sub_id)
        if out is None:
            return
        state = _state_value(ev)
        has_body = bool(ev.body) and _is_pidf(ev.content_type)
        outcome = pmap.on_notify(
            state, active_seen=out.active_seen, has_body=has_body, unsubscribing=out.unsubscribing
        )
        if outcome.send_subscribed:
            out.active_seen = True
            out.quick_retries = 0
            self._set_auth((out.user, out.contact_uri), xmpp_receives=True, pending_out=False)
            self._send(
                XmppPresence(
                    from_jid=self._contact_jid(out), to_jid=out.user, type=PresenceType.SUBSCRIBED
                )
            )
            log.info(
                "presence.authorization.granted",
                extra=kv(user=out.user, contact=out.contact_uri, direction="x2s"),
            )
        elif state.state is SubState.ACTIVE:
            out.quick_retries = 0
        if outcome.deliver_presence:
            self._deliver(out, ev)
        if outcome.subscription_ended:
            self._ended(
                out,
                outcome.send_unsubscribed,
                outcome.send_unavailable,
                outcome.resubscribe,
                outcome.retry_after,
            )
        else:
            self._dirty.add(ev.sub_id)

    def _presences_of(
        self, ev: NotifyReceived, contact_jid: str, to_jid: str
    ) -> tuple[XmppPresence, ...] | None:
        if not ev.body or not _is_pidf(ev.content_type):
            return None
        try:
            doc = parse_pidf(ev.body)
            return pmap.pidf_to_xmpp(
                doc,
                from_jid=contact_jid,
                to_jid=to_jid,
                content_language=_lang(ev.content_language),
                policy=self._policy,
            )
        except (PidfError, MappingError, ValueError) as exc:
            log.warning("presence.pidf.invalid", extra=kv(sub=ev.sub_id, error=str(exc)[:200]))
            return None

    def _deliver(self, out: _Outbound, ev: NotifyReceived) -> None:
        """A NOTIFY's PIDF to the XMPP user (RFC 8048 §6.3, Table 2).

        The same document as the last one delivered is not delivered again: the NOTIFY
        that follows every refresh (RFC 6665 §4.2.1.2) usually repeats the state the user
        already has, and the user's server asks again (a probe, answered from
        ``last_state``) whenever one of its resources needs it."""
        lang = _lang(ev.content_language)
        if (
            lang == out.last_lang
            and not out.undelivered
            and out.last_state is not None
            and ev.body == _unpack_doc(out.last_state)
        ):
            return
        contact_jid = self._contact_jid(out)
        presences = self._presences_of(ev, contact_jid, out.user)
        if presences is None:
            return
        out.last_state = deflate_pidf(ev.body)
        out.last_lang = lang
        self._show(out, contact_jid, presences)

    def _show(self, out: _Outbound, contact_jid: str, presences: tuple[XmppPresence, ...]) -> None:
        gone = pmap.vanished_resources(
            _shown_jids(out.shown, contact_jid), presences, to_jid=out.user
        )
        ok = True
        for p in (*presences, *gone):
            ok = self._send(p) and ok
        out.undelivered = not ok
        out.shown = _pack_shown(
            contact_jid,
            tuple(p.from_jid for p in presences if p.type is PresenceType.AVAILABLE),
        )

    def _resend_state(self, out: _Outbound, *, to_jid: str) -> None:
        """The last known state of the contact, again (a probe's answer, a link-up)."""
        if not out.last_state:
            return
        try:
            doc = parse_pidf(_unpack_doc(out.last_state) or b"")
            presences = pmap.pidf_to_xmpp(
                doc,
                from_jid=self._contact_jid(out),
                to_jid=to_jid,
                content_language=out.last_lang,
                policy=self._policy,
            )
        except (PidfError, MappingError, ValueError):
            return
        for p in presences:
            self._send(p)

    def _on_subscribe_failed(self, ev: SubscribeFailed) -> None:
        poll = self._polls.pop(ev.sub_id, None)
        if poll is not None:
            return
        out = self._out_by_sub.get(ev.sub_id)
        if out is None:
            return
        log.info(
            "presence.subscription.failed",
            extra=kv(
                sub=ev.sub_id,
                status=ev.status,
                refresh=ev.refresh,
                user=out.user,
                contact=out.contact_uri,
            ),
        )
        if out.unsubscribing:
            if ev.subscription_over:
                self._finish_unsubscribe(out)
            return
        outcome = pmap.on_subscribe_failure(
            ev.status, refresh=ev.refresh, retry_after=ev.retry_after
        )
        if outcome.cancel_authorization:
            # RFC 8048 §5.2.2 (point 24): 403/489/603 end the authorization for good.
            log.info(
                "presence.authorization.cancelled",
                extra=kv(user=out.user, contact=out.contact_uri, status=ev.status),
            )
            self._ended(out, True, True, Resubscribe.NO, None)
            return
        if ev.subscription_over:
            self._forget_sub(out)
        resubscribe = outcome.resubscribe
        if resubscribe is Resubscribe.NOW:
            out.quick_retries += 1
            if out.quick_retries > MAX_IMMEDIATE_RETRIES:
                resubscribe = Resubscribe.LATER
        if resubscribe is Resubscribe.NOW:
            self._spawn(self._establish(out, refresh_first=not ev.subscription_over))
        else:
            delay = (
                outcome.retry_after if outcome.retry_after is not None else self._cfg.retry_after
            )
            if ev.retry_after is None and outcome.retry_after == pmap.RETRY_BACKOFF:
                delay = float(self._cfg.retry_after)
            self._at(self._now() + delay, "retry", (out.user, out.contact_uri))
        if out.sub_id is not None:
            self._dirty.add(out.sub_id)

    def _on_terminated(self, ev: SubscriptionTerminated) -> None:
        if ev.role is Role.NOTIFIER or ev.sub_id in self._inbound:
            inbound = self._drop_inbound(ev.sub_id)
            if inbound is not None:
                log.info(
                    "presence.subscription.ended",
                    extra=kv(
                        sub=ev.sub_id,
                        role="notifier",
                        reason=ev.reason,
                        status=ev.status,
                        watcher=inbound.watcher_uri,
                        presentity=inbound.user,
                    ),
                )
            return
        if self._polls.pop(ev.sub_id, None) is not None:
            return
        out = self._out_by_sub.get(ev.sub_id)
        if out is None:
            return  # a terminated NOTIFY already ended it
        log.info(
            "presence.subscription.ended",
            extra=kv(
                sub=ev.sub_id,
                role="subscriber",
                reason=ev.reason,
                user=out.user,
                contact=out.contact_uri,
            ),
        )
        if out.unsubscribing:
            self._finish_unsubscribe(out)
            return
        # Ended without a terminated NOTIFY (Timer N, no refresh answered): the contact's
        # state is unknown now; re-establish at once (a few times), keeping what the user
        # sees until the new dialog's first NOTIFY replaces it.
        self._forget_sub(out)
        out.quick_retries += 1
        if out.quick_retries <= MAX_IMMEDIATE_RETRIES:
            self._spawn(self._establish(out, refresh_first=False))
        else:
            # The peer does not answer: the last state cannot be vouched for any more.
            self._unavailable(out)
            self._at(self._now() + self._cfg.retry_after, "retry", (out.user, out.contact_uri))

    def _ended(
        self,
        out: _Outbound,
        send_unsubscribed: bool,
        send_unavailable: bool,
        resubscribe: Resubscribe,
        retry_after: float | None,
    ) -> None:
        if out.unsubscribing:
            self._finish_unsubscribe(out)
            return
        if send_unavailable:
            self._unavailable(out)
        if send_unsubscribed:
            self._set_auth((out.user, out.contact_uri), xmpp_receives=False, pending_out=False)
            self._send_unsubscribed(out)
            self._drop_outbound(out)
            return
        self._forget_sub(out)
        if resubscribe is Resubscribe.NOW:
            out.quick_retries += 1
            if out.quick_retries <= MAX_IMMEDIATE_RETRIES:
                self._spawn(self._establish(out, refresh_first=False))
                return
            resubscribe = Resubscribe.LATER
        if resubscribe is Resubscribe.LATER:
            delay = retry_after if retry_after is not None else float(self._cfg.retry_after)
            if retry_after == pmap.RETRY_BACKOFF:
                delay = float(self._cfg.retry_after)
            self._at(self._now() + delay, "retry", (out.user, out.contact_uri))
        elif resubscribe is Resubscribe.NO and not out.active_seen:
            self._drop_outbound(out)

    def _unavailable(self, out: _Outbound) -> None:
        """The contact's state can no longer be vouched for: take back what the user was
        shown, and forget the last document (a probe must not bring it back, and the next
        NOTIFY must be delivered even if it repeats it)."""
        for jid in _shown_jids(out.shown, self._contact_jid(out)):
            self._send(XmppPresence(from_jid=jid, to_jid=out.user, type=PresenceType.UNAVAILABLE))
        out.shown = ()
        out.last_state = None
        out.last_lang = None

    def _send_unsubscribed(self, out: _Outbound) -> None:
        self._send(
            XmppPresence(
                from_jid=self._contact_jid(out), to_jid=out.user, type=PresenceType.UNSUBSCRIBED
            )
        )

    def _finish_unsubscribe(self, out: _Outbound) -> None:
        """RFC 8048 §5.2.3 (point 26): the dialog is over; confirm with ``unsubscribed``
        and take back what the user was shown (RFC 6121 §3.3.3)."""
        if (out.user, out.contact_uri) not in self._outbound:
            return
        self._unavailable(out)
        self._send_unsubscribed(out)
        self._drop_outbound(out)
        log.info("presence.unsubscribed", extra=kv(user=out.user, contact=out.contact_uri))

    # ================================================================== XMPP entry points

    async def on_presence(self, presence: XmppPresence) -> None:
        """A presence stanza from the XMPP side (see :class:`~sipxmpp.gateway.xmpp.handler.
        XmppPresenceHandler`)."""
        if self._layer is None:
            raise StanzaErrorException(
                StanzaError("service-unavailable", "cancel", "presence is not being served")
            )
        self.counters["presence_received"] += 1
        key = (_bare(presence.from_jid), presence.to_jid)
        route = self._routes.get(key)
        if route is None:
            route = _remember(self._routes, key, self._route(*key), ROUTE_CACHE_SIZE)
        if isinstance(route, StanzaError):
            raise StanzaErrorException(route)
        if not route:
            return  # to the component itself: not a SIP contact
        contact_jid, contact_uri = route
        ptype = presence.type
        if ptype in (PresenceType.SUBSCRIBED, PresenceType.UNSUBSCRIBED):
            await self._load_auth((_bare(presence.from_jid), contact_uri))
            if self._layer is not None and self._started:
                self._on_user_answer(presence, contact_jid, contact_uri)
                self._pump()
            return
        if ptype is PresenceType.AVAILABLE or ptype is PresenceType.UNAVAILABLE:
            # Only an XMPP user who also watches this contact (X2S) cares whether this is
            # the resource's initial presence (RFC 8048 §5.2.2: it triggers a refresh).
            out_key = (key[0], contact_uri)
            initial = (
                ptype is PresenceType.AVAILABLE
                and out_key in self._outbound
                and self._initial_presence(presence, contact_jid)
            )
            self._on_user_presence(presence, contact_jid, contact_uri)
            self._pump()
            if initial and out_key in self._outbound:
                await self._on_x2s(presence, contact_jid, contact_uri, initial=True)
            return
        if ptype in (PresenceType.SUBSCRIBE, PresenceType.UNSUBSCRIBE, PresenceType.PROBE):
            await self._on_x2s(presence, contact_jid, contact_uri)

    def _route(self, sender: str, to_jid: str) -> tuple[str, str] | tuple[()] | StanzaError:
        """(contact bare JID, contact AOR) for a presence from ``sender`` (a bare JID) to
        ``to_jid``; ``()`` for the component itself; the refusal as a stanza error."""
        try:
            contact = Jid.parse(to_jid)
        except StanzaRefused as exc:
            return exc.error
        if contact.local is None:
            return ()
        contact_jid = str(contact.bare)
        try:
            # RFC 8048 §8.1 (point 40): only users of the XMPP domains the gateway serves.
            self._domains.xmpp_sender_to_sip(sender)
            return contact_jid, str(self._domains.xmpp_target_to_sip(contact_jid).aor)
        except StanzaRefused as exc:
            return exc.error

    async def on_presence_error(self, presence: XmppPresence, error: StanzaError) -> None:
        """A presence the gateway sent bounced. A ``subscribe`` to an XMPP user that does
        not exist ends that watcher's pending subscriptions (``noresource``)."""
        layer = self._layer
        if layer is None:
            return
        user = _bare(presence.from_jid)
        watcher_jid = _bare(presence.to_jid)
        if error.condition not in (
            "item-not-found",
            "service-unavailable",
            "not-allowed",
            "forbidden",
            "recipient-unavailable",
        ):
            return
        now = self._now()
        pair = self._pairs.get((user, watcher_jid))
        for sub_id in pair.subs if pair is not None else ():
            inbound = self._inbound[sub_id]
            if inbound.active:
                continue
            layer.terminate(sub_id, now, reason="noresource")
            self._log_notify(inbound, "terminated;reason=noresource", None)
            self._drop_inbound(sub_id)
        self._pump()

    def on_link_state(self, up: bool) -> None:
        """The component link came up or went down."""
        if not up or not self._started:
            return
        self._spawn(self._after_link_up())

    async def _after_link_up(self) -> None:
        """Refresh the views (probes from each watcher's JID) and resend what could not be
        delivered while the link was down."""
        pairs = [key for key, pair in self._pairs.items() if pair.subs]
        for i, (user, watcher_jid) in enumerate(pairs):
            if (user, watcher_jid) in self._pairs:
                self._probe(user, watcher_jid)
            if i % PROBE_BATCH == PROBE_BATCH - 1:
                await asyncio.sleep(0)
        for out in list(self._outbound.values()):
            if out.undelivered:
                out.undelivered = False
                self._resend_state(out, to_jid=out.user)

    # ================================================================== XMPP output

    def _send(self, presence: XmppPresence, error: StanzaError | None = None) -> bool:
        try:
            self._xmpp.send_presence(presence, error=error)
        except LinkDown:
            self.counters["presence_lost"] += 1
            log.info(
                "presence.xmpp.link_down",
                extra=kv(to=presence.to_jid, type=str(presence.type.value)),
            )
            return False
        except LocalXmppError as exc:
            self.counters["presence_lost"] += 1
            log.warning("presence.xmpp.refused", extra=kv(to=presence.to_jid, error=exc.msg))
            return False
        self.counters["presence_sent"] += 1
        return True

    def _retry_after(self) -> tuple[tuple[str, str], ...]:
        return (("Retry-After", str(self._cfg.retry_after)),)

    # ================================================================== authorizations

    def _auth_of(self, key: tuple[str, str]) -> int:
        """The cached authorization bits of (XMPP user, SIP AOR) (see :data:`_AUTH_TO`)."""
        bits = self._auth.get(key)
        if bits is None:
            bits = self._auth[key] = 0
        return bits

    async def _load_auth(self, key: tuple[str, str]) -> int:
        cached = self._auth.get(key)
        if cached is not None:
            return cached
        store = self._store
        found: Authorization | None = None
        if store is not None:
            try:
                found = await store.get_authorization(*key)
            except StoreError as exc:
                log.warning("presence.store.read_failed", extra=kv(error=str(exc)))
        cached = self._auth.get(key)  # another task may have filled it meanwhile
        if cached is not None:
            return cached
        bits = _auth_bits(found) if found is not None else 0
        self._auth[key] = bits
        return bits

    def _set_auth(
        self,
        key: tuple[str, str],
        *,
        xmpp_receives: bool | None = None,
        sip_receives: bool | None = None,
        pending_out: bool | None = None,
        pending_in: bool | None = None,
    ) -> None:
        bits = old = self._auth_of(key)
        for flag, value in (
            (_AUTH_TO, xmpp_receives),
            (_AUTH_FROM, sip_receives),
            (_AUTH_PENDING_OUT, pending_out),
            (_AUTH_PENDING_IN, pending_in),
        ):
            if value is not None:
                bits = bits | flag if value else bits & ~flag
        # RFC 6121 Appendix A: no pending-out once "to", no pending-in once "from".
        if bits & _AUTH_TO:
            bits &= ~_AUTH_PENDING_OUT
        if bits & _AUTH_FROM:
            bits &= ~_AUTH_PENDING_IN
        if bits != old:
            self._auth[key] = bits
            self._dirty_auth.add(key)

    # ================================================================== persistence

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self._cfg.store_flush_interval)
            try:
                await self.flush(rich_state=False)
            except Exception:
                log.exception("presence.store.flush_failed")

    async def flush(self, *, rich_state: bool = True) -> None:
        """Write every changed record to the store now, :data:`STORE_BATCH` rows per
        transaction. ``rich_state=False`` (the periodic flush) leaves the subscriptions
        whose NOTIFYs changed only the rich state for a later flush, until
        :data:`STATE_STORE_INTERVAL` has passed since they were last written so.

        Each batch is built right before it is written and the next one is built while
        the store writes the previous (the database works in its own thread or server), so
        at most two batches are in memory whatever the number of changes (100,000 at
        shutdown) and the event loop runs between batches. What a failed or cancelled
        flush did not store is kept for the next one (what was written may be written
        again, harmlessly)."""
        store = self._store
        layer = self._layer
        if store is None or layer is None:
            return
        async with self._flush_lock:
            dirty, self._dirty = self._dirty, set()
            stale = self._stale
            if stale:
                now = self._now()
                if rich_state or now >= self._stale_due:
                    dirty |= stale
                    self._stale = set()
                    self._stale_due = now + STATE_STORE_INTERVAL
                else:
                    stale -= dirty  # written now anyway
            deleted, self._deleted = self._deleted, set()
            auths, self._dirty_auth = self._dirty_auth, set()
            pending = iter(dirty)
            #: ids of the batch being written, then of the one being built.
            writing: list[str] = []
            building: list[str] = []
            write: asyncio.Future[Any] | None = None
            written = 0
            stage = "subscriptions"
            try:
                while True:
                    building = []
                    batch: list[Subscription] = []
                    for sub_id in pending:
                        if sub_id in deleted:
                            continue
                        building.append(sub_id)
                        record = self._record_or_none(sub_id)
                        if record is not None:
                            batch.append(record)
                        if len(building) >= STORE_BATCH:
                            break
                    if write is not None:
                        await write
                        written += len(writing)
                    writing, building, write = building, [], None
                    if not writing:
                        break
                    if batch:
                        write = asyncio.ensure_future(store.put_subscriptions(batch))
                    else:
                        await asyncio.sleep(0)  # a batch of ended subscriptions: yield anyway
                stage = "deletions"
                if deleted:
                    await store.delete_subscriptions(deleted)
                stage = "authorizations"
                await self._flush_auths(store, auths)
            except BaseException as exc:
                if write is not None and not write.done():
                    write.cancel()
                # Keep what is not known to be written for the next round.
                if stage == "subscriptions":
                    self._dirty.update(writing)
                    self._dirty.update(building)
                    self._dirty.update(pending)
                if stage in ("subscriptions", "deletions"):
                    self._deleted |= deleted
                self._dirty_auth |= auths
                if not isinstance(exc, StoreError):
                    raise
                log.error("presence.store.write_failed", extra=kv(error=str(exc), stage=stage))
                return
            if written or deleted or auths:
                log.debug(
                    "presence.store.flushed",
                    extra=kv(written=written, deleted=len(deleted), authorizations=len(auths)),
                )

    async def _flush_auths(self, store: Store, keys: set[tuple[str, str]]) -> None:
        """Write or delete the changed authorizations, in batches (one transaction each)."""
        puts: list[Authorization] = []
        drops: list[tuple[str, str]] = []
        for key in keys:
            bits = self._auth.get(key)
            if bits is None:
                continue
            if bits == 0:  # none, nothing pending: nothing to keep
                drops.append(key)
            else:
                puts.append(_authorization(key, bits))
        for start in range(0, len(puts), STORE_BATCH):
            await store.put_authorizations(puts[start : start + STORE_BATCH])
        for start in range(0, len(drops), STORE_BATCH):
            await store.delete_authorizations(drops[start : start + STORE_BATCH])

    def _record_or_none(self, sub_id: str) -> Subscription | None:
        try:
            return self._record(sub_id)
        except Exception:
            log.exception("presence.store.record_failed", extra=kv(sub=sub_id))
            return None

    def _record(self, sub_id: str) -> Subscription | None:
        layer = self._layer
        assert layer is not None
        wall = self._wall()
        now = self._now()
        try:
            snapshot = layer.snapshot(sub_id, now=now, wall=wall)
        except LocalSipError:
            return None  # gone, or not answered yet (nothing a restart could continue)
        layer_state = str(snapshot.get("state"))
        event = str(snapshot.get("event"))
        raw_expiry = snapshot.get("expires_at")
        if isinstance(raw_expiry, int | float) and not isinstance(raw_expiry, bool):
            expires_at = float(raw_expiry)
        else:
            # No expiry yet (waiting for the first NOTIFY): restorable for Timer N.
            expires_at = wall + 64 * self._settings.sip.t1
        dialog = _dialog_state(snapshot.get("dialog"))
        inbound = self._inbound.get(sub_id)
        if inbound is not None:
            return Subscription(
                id=sub_id,
                role=SubscriptionRole.NOTIFIER,
                watcher=inbound.watcher_uri,
                presentity=inbound.user,
                state=_stored_state(layer_state, known_active=inbound.active),
                expires_at=expires_at,
                peer=_peer_of(inbound.watcher_uri),
                event=event,
                dialog=dialog,
                last_state=self._last_body(inbound),
                extra={
                    "v": _EXTRA_VERSION,
                    "layer": _slim_snapshot(snapshot, dialog),
                    "watcher_jid": inbound.watcher_jid,
                    "presentity_uri": inbound.presentity_uri,
                    "lang": inbound.last_lang,
                },
            )
        out = self._out_by_sub.get(sub_id)
        if out is None:
            return None
        contact_jid = self._contact_jid(out)
        return Subscription(
            id=sub_id,
            role=SubscriptionRole.SUBSCRIBER,
            watcher=out.user,
            presentity=out.contact_uri,
            state=_stored_state(layer_state, known_active=out.active_seen),
            expires_at=expires_at,
            peer=out.peer,
            event=event,
            dialog=dialog,
            last_state=_unpack_doc(out.last_state),
            extra={
                "v": _EXTRA_VERSION,
                "layer": _slim_snapshot(snapshot, dialog),
                "user_uri": out.user_uri,
                "contact_jid": contact_jid,
                "active_seen": out.active_seen,
                "shown": list(_shown_jids(out.shown, contact_jid)),
                "lang": out.last_lang,
            },
        )

    async def _restore_all(self, store: Store) -> None:
        """Bring back every stored subscription (module docstring: restarts)."""
        layer = self._layer
        assert layer is not None
        restored = dropped = 0
        stale: list[str] = []
        n = 0
        try:
            async for record in store.all_subscriptions():
                n += 1
                if n % RESTORE_BATCH == 0:
                    await asyncio.sleep(0)
                try:
                    ok = self._restore_one(record)
                except Exception:
                    log.exception("presence.restore_failed", extra=kv(sub=record.id))
                    ok = False
                if ok:
                    restored += 1
                else:
                    dropped += 1
                    stale.append(record.id)
        except StoreError as exc:
            log.error("presence.store.read_failed", extra=kv(error=str(exc)))
        for sub_id in stale:
            self._deleted.add(sub_id)
        self.counters["restored"] += restored
        log.info("presence.restored", extra=kv(subscriptions=restored, dropped=dropped))

    def _restore_one(self, record: Subscription) -> bool:
        layer = self._layer
        assert layer is not None
        extra = record.extra
        snapshot: Any = _full_snapshot(record)
        now, wall = self._now(), self._wall()
        if isinstance(snapshot, Mapping):
            snapshot = _bump_cseq(snapshot)
        if record.role is SubscriptionRole.NOTIFIER:
            watcher_jid = str(extra.get("watcher_jid") or "")
            presentity_uri = str(extra.get("presentity_uri") or "")
            if not isinstance(snapshot, Mapping) or record.expires_at <= wall:
                return False
            if not watcher_jid or not presentity_uri:
                return False
            try:
                restored_id = layer.restore(snapshot, now, wall)
            except Exception as exc:
                log.info("presence.restore.refused", extra=kv(sub=record.id, error=str(exc)))
                return False
            inbound = _Inbound(
                sub_id=restored_id,
                user=sys.intern(record.presentity),
                presentity_uri=sys.intern(presentity_uri),
                watcher_uri=record.watcher,
                watcher_jid=watcher_jid,
                active=record.state is SubscriptionState.ACTIVE,
                last_state=record.last_state,
                last_lang=_str_or_none(extra.get("lang")),
            )
            self._add_inbound(inbound)
            if record.last_state is not None:
                pair = self._pairs[(inbound.user, inbound.watcher_jid)]
                pair.stored = (record.last_state, inbound.last_lang)
            if inbound.active:
                self._auth_of((inbound.user, inbound.watcher_uri))
                self._set_auth((inbound.user, inbound.watcher_uri), sip_receives=True)
                self._dirty_auth.discard((inbound.user, inbound.watcher_uri))
            if restored_id != record.id:
                self._deleted.add(record.id)
            self._dirty.add(restored_id)
            return True
        # subscriber
        contact_jid = str(extra.get("contact_jid") or "")
        user_uri = str(extra.get("user_uri") or "")
        if not contact_jid or not user_uri:
            return False
        contact_uri = sys.intern(record.presentity)
        odd_jid = self._odd_jid(contact_uri, contact_jid)
        out = _Outbound(
            user=sys.intern(record.watcher),
            user_uri=sys.intern(user_uri),
            contact_uri=contact_uri,
            odd_jid=None if odd_jid is None else sys.intern(odd_jid),
            flags=_ACTIVE_SEEN if extra.get("active_seen") else 0,
            shown=_pack_shown(contact_jid, tuple(_list_of_str(extra.get("shown")))),
            last_state=(deflate_pidf(record.last_state) if record.last_state is not None else None),
            last_lang=_str_or_none(extra.get("lang")),
        )
        if out.active_seen:
            self._set_auth((out.user, out.contact_uri), xmpp_receives=True)
            self._dirty_auth.discard((out.user, out.contact_uri))
        self._add_outbound(out)  # after the authorization: they share the key tuple
        sub_id: str | None = None
        if isinstance(snapshot, Mapping) and record.expires_at > wall:
            try:
                sub_id = layer.restore(snapshot, now, wall)
            except Exception as exc:
                log.info("presence.restore.refused", extra=kv(sub=record.id, error=str(exc)))
        if sub_id is None:
            # The dialog is gone: a new one, soon (the user sees the last state meanwhile).
            self._deleted.add(record.id)
            delay = self._rng.uniform(0.0, self._cfg.restore_spread)
            self._at(now + delay, "retry", (out.user, out.contact_uri))
            return True
        out.sub_id = sub_id
        self._out_by_sub[sub_id] = out
        if sub_id != record.id:
            self._deleted.add(record.id)
        self._dirty.add(sub_id)
        # RFC 8048 §5.2.2: refresh, so the peer learns our (possibly new) Contact and sends
        # the current state; spread so that a large gateway does not send all at once.
        delay = self._rng.uniform(0.0, self._cfg.restore_spread)
        self._at(now + delay, "restored-refresh", sub_id)
        return True


# ------------------------------------------------------------------------------ helpers


def pmap_aor(uri: str) -> str:
    """The address of record of a SIP URI (no parameters, port or headers)."""
    return str(parse_uri_or_header(uri).aor)


#: Authorization bits per (XMPP user, SIP AOR), the RFC 6121 §2.1.2.5 states of RFC 8048
#: §5.1 in one small int (a cached object, unlike a record per pair): the XMPP user
#: receives the contact's presence ("to"), the contact receives the user's ("from"), and
#: the two pending requests.
_AUTH_TO = 1
_AUTH_FROM = 2
_AUTH_PENDING_OUT = 4
_AUTH_PENDING_IN = 8
_AUTH_STATES = (
    AuthorizationState.NONE,
    AuthorizationState.TO,
    AuthorizationState.FROM,
    AuthorizationState.BOTH,
)


def _auth_bits(auth: Authorization) -> int:
    return (
        (_AUTH_TO if auth.xmpp_receives else 0)
        | (_AUTH_FROM if auth.sip_receives else 0)
        | (_AUTH_PENDING_OUT if auth.pending_out else 0)
        | (_AUTH_PENDING_IN if auth.pending_in else 0)
    )


def _authorization(key: tuple[str, str], bits: int) -> Authorization:
    return Authorization(
        key[0],
        key[1],
        _AUTH_STATES[bits & (_AUTH_TO | _AUTH_FROM)],
        pending_out=bool(bits & _AUTH_PENDING_OUT),
        pending_in=bool(bits & _AUTH_PENDING_IN),
    )


def _stored_state(layer_state: str, *, known_active: bool) -> SubscriptionState:
    """The Subscription-State a record keeps (RFC 6665 §4.1.3 values).

    The layer's own state when it is settled ("active", "pending"). While a dialog is
    being re-established or ended ("notify_wait" of a re-SUBSCRIBE, "terminating",
    "unsubscribed"), the subscription keeps the state it had: ``known_active`` (an X2S
    contact's "active" NOTIFY was seen, RFC 8048 §5.2.1; an S2X watcher was authorized).
    Storing such a subscription as "pending" would bring it back after a restart as a new,
    unauthorized one: an S2X watcher would get empty NOTIFYs instead of the user's state.
    """
    if layer_state == "active":
        return SubscriptionState.ACTIVE
    if layer_state == "pending":
        return SubscriptionState.PENDING
    return SubscriptionState.ACTIVE if known_active else SubscriptionState.PENDING


def _peer_of(uri: str) -> str:
    """The SIP domain of an address of record, as the per-peer caps count it (interned:
    every subscription with one peer shares the string)."""
    return sys.intern(uri.split("@", 1)[-1].lower())


def _unpack_doc(packed: bytes | None) -> bytes | None:
    """``_Outbound.last_state`` as the document it was (see :func:`deflate_pidf`)."""
    return None if packed is None else inflate_pidf(packed)


def _pack_shown(contact_jid: str, jids: tuple[str, ...]) -> str | tuple[str, ...]:
    """``_Outbound.shown`` for these full JIDs: the single one as its resource ("/" and
    the resource), interned (the same few resource names recur across contacts); else
    the JIDs themselves."""
    if len(jids) == 1:
        jid = jids[0]
        if (
            len(jid) > len(contact_jid)
            and jid.startswith(contact_jid)
            and jid[len(contact_jid)] == "/"
        ):
            return sys.intern(jid[len(contact_jid) :])
    return jids


def _shown_jids(shown: str | tuple[str, ...], contact_jid: str) -> tuple[str, ...]:
    """The full JIDs in ``_Outbound.shown`` of the contact ``contact_jid`` (see
    :func:`_pack_shown`)."""
    if type(shown) is str:
        return (contact_jid + shown,)
    return shown  # type: ignore[return-value]


def _same(a: bytes | None, b: bytes | None) -> bool:
    """Equal documents; usually the very same object (one PIDF per presentity state is
    shared by its watchers), which needs no byte comparison."""
    return a is b or a == b


def _availability(source: _Source) -> bool | None:
    """Whether a document made from ``source`` shows the presentity available (some tuple
    ``open``, RFC 3863 §4.1.4): None when that is not known without parsing it (a stored
    document, or none at all)."""
    if type(source) is not tuple:
        return None
    for p in source:  # a loop, not any(): this runs twice per NOTIFY
        if p.type is _AVAILABLE:
            return True
    return False


_AVAILABLE = PresenceType.AVAILABLE


def _decrement(counts: dict[str, int], key: str) -> None:
    value = counts.get(key, 0) - 1
    if value <= 0:
        counts.pop(key, None)
    else:
        counts[key] = value


def _state_value(ev: NotifyReceived) -> SubscriptionStateValue:
    """The NOTIFY's Subscription-State as the mapping's value (extension states: pending)."""
    reason: TerminationReason | None = None
    if ev.reason:
        try:
            reason = TerminationReason(ev.reason)
        except ValueError:
            reason = None
    retry = ev.retry_after if ev.retry_after is not None and ev.retry_after >= 0 else None
    if ev.state == "terminated":
        return SubscriptionStateValue(SubState.TERMINATED, reason=reason, retry_after=retry)
    expires = ev.expires if ev.expires is not None else 0
    expires = min(max(expires, 0), 0xFFFFFFFF)
    if ev.state == "active":
        return SubscriptionStateValue(SubState.ACTIVE, expires=expires)
    return SubscriptionStateValue(SubState.PENDING, expires=expires)


def _is_pidf(content_type: str | None) -> bool:
    if content_type is None:
        return False
    return content_type.split(";", 1)[0].strip().lower() == PIDF_MIME_TYPE


def _lang(value: str | None) -> str | None:
    """Content-Language -> xml:lang: the first language tag, if it is one."""
    if not value:
        return None
    first = value.split(",", 1)[0].strip()
    return first if is_language_tag(first) else None


def _lang_header(lang: str | None) -> tuple[tuple[str, str], ...]:
    return (("Content-Language", lang),) if lang else ()


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _list_of_str(value: object) -> Iterable[str]:
    if isinstance(value, list | tuple):
        return [v for v in value if isinstance(v, str)]
    return []


def _dialog_state(data: object) -> DialogState | None:
    """The layer's dialog record as the store's queryable columns (same field names)."""
    if not isinstance(data, Mapping):
        return None
    try:
        return DialogState(
            call_id=str(data["call_id"]),
            local_tag=str(data["local_tag"]),
            remote_tag=str(data.get("remote_tag") or "") or None,  # None: not confirmed yet
            local_uri=str(data["local_uri"]),
            remote_uri=str(data["remote_uri"]),
            remote_target=str(data["remote_target"]),
            route_set=tuple(str(r) for r in data.get("route_set") or ()),
            local_cseq=int(data.get("local_cseq") or 0),
            remote_cseq=(int(data["remote_cseq"]) if data.get("remote_cseq") is not None else None),
            secure=bool(data.get("secure", False)),
            transport=str(data.get("transport") or "udp"),
            peer_host=str(data.get("peer_host") or ""),
            peer_port=int(data.get("peer_port") or 0),
        )
    except (KeyError, TypeError, ValueError, LocalMappingError) as exc:
        log.debug("presence.store.dialog_unmapped", extra=kv(error=str(exc)))
        return None
    except Exception as exc:  # the store's own validation (LocalStoreError)
        log.debug("presence.store.dialog_unmapped", extra=kv(error=str(exc)))
        return None


def _slim_snapshot(snapshot: Mapping[str, object], dialog: DialogState | None) -> Any:
    """The layer snapshot as a version-2 ``extra`` keeps it (see :data:`_EXTRA_VERSION`).
    Without a dialog column (a dialog the store could not take) the whole snapshot stays."""
    if dialog is None:
        return dict(snapshot)
    slim = {k: v for k, v in snapshot.items() if k not in _SNAPSHOT_IN_COLUMNS}
    if slim.get("expires_at") is not None:
        del slim["expires_at"]  # the record's expires_at column
    return slim


def _full_snapshot(record: Subscription) -> Mapping[str, object] | None:
    """The layer snapshot of a stored record, whatever its ``extra`` version; None when the
    record holds none that could be restored."""
    extra = record.extra
    layer = extra.get("layer")
    if not isinstance(layer, Mapping):
        return None
    version = extra.get("v")
    if version == 1 or "dialog" in layer:
        return layer
    if version != 2 or record.dialog is None:
        return None
    full: dict[str, object] = dict(layer)
    full["sub_id"] = record.id
    full["role"] = record.role.value
    full["event"] = record.event
    full["dialog"] = _dialog_dict(record.dialog)
    if "expires_at" not in full:
        full["expires_at"] = record.expires_at
    return full


def _dialog_dict(d: DialogState) -> dict[str, object]:
    """The layer's dialog record (``Dialog.to_dict``) from the store's columns: the same
    field names, with the layer's forms of an unknown remote tag ("") and the route set
    (a list)."""
    record: dict[str, object] = {f.name: getattr(d, f.name) for f in dataclasses.fields(d)}
    record["remote_tag"] = d.remote_tag or ""
    record["route_set"] = list(d.route_set)
    return record


def _bump_cseq(snapshot: Mapping[str, object]) -> Mapping[str, object]:
    """The snapshot with its dialog's local CSeq raised by :data:`CSEQ_RESTORE_GAP`."""
    dialog = snapshot.get("dialog")
    if not isinstance(dialog, Mapping):
        return snapshot
    cseq = dialog.get("local_cseq")
    if not isinstance(cseq, int) or isinstance(cseq, bool):
        return snapshot
    bumped = min(cseq + CSEQ_RESTORE_GAP, 2**31 - 2)
    return {**snapshot, "dialog": {**dialog, "local_cseq": bumped}}


def subscription_config(settings: Settings) -> SubscriptionConfig:
    """The subscription layer's configuration from the ``[presence]`` settings."""
    cfg = settings.presence
    return SubscriptionConfig(
        default_expires=cfg.subscribe_expires,
        min_expires=cfg.min_expires,
        max_expires=cfg.max_expires,
        refresh_margin=cfg.refresh_margin,
        supported_events=(pmap.PRESENCE_EVENT,),
        max_subscriptions=cfg.max_subscriptions,
        overload_retry_after=cfg.retry_after,
    )


def build_layer(
    endpoint: SipEndpoint,
    dispatcher: _Dispatcher,
    owner: PresenceService,
    settings: Settings,
    ids: IdGenerator,
) -> SubscriptionManager:
    """The RFC 6665 layer over ``endpoint``, its transactions owned by ``owner``."""
    return SubscriptionManager(
        OwnedEndpoint(endpoint, dispatcher, owner),
        subscription_config(settings),
        ids,
        contact_uri_for(endpoint.config.local),
    )


async def open_presence_store(url: str) -> Store:
    """Open the presence store at ``url`` (creating a SQLite file's directory)."""
    ensure_store_directory(url)
    return await open_store(url)


def default_store_path(url: str) -> str | None:
    """The file behind a ``sqlite:///`` URL (None for memory or other databases)."""
    if url.startswith("sqlite:///"):
        return url[len("sqlite://") :]
    return None


def ensure_store_directory(url: str) -> None:
    """Create the directory of a SQLite store file if it is missing."""
    path = default_store_path(url)
    if path:
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
