"""RFC 6665 subscriptions (SUBSCRIBE/NOTIFY) in both roles, sans-I/O.

Theory of operation
-------------------
:class:`SubscriptionManager` is the layer above :class:`~.core.SipEndpoint` (design
practice 4). The runtime hands it every endpoint event (``handle_sip_event``, which says
whether the event was the layer's), drains ``next_event()`` and keeps a timer armed at
``next_deadline()`` that calls ``handle_timer(now)``, exactly as it does for the endpoint.
The layer sends through the endpoint directly (``send_request``/``send_response``), so
after any call the runtime also drains the endpoint's ``data_to_send()``.

The layer owns every SUBSCRIBE and NOTIFY the endpoint receives: it answers what RFC 6665
lets it decide alone and reports the rest as :mod:`.sub_events` events.

Dialogs
    Each subscription has its own dialog (:class:`~.dialog.Dialog`, RFC 3261 §12); the
    gateway never shares a dialog between subscriptions (RFC 6665 §4.5.2 discourages it),
    so an in-dialog SUBSCRIBE whose Event (type and ``id``, compared byte by byte,
    §8.2.1) differs from the subscription's is answered 481. Dialogs are found by
    (Call-ID, local tag, remote tag); a subscriber's dialog whose remote tag is not known
    yet, by (Call-ID, local tag).

Subscriber role (we subscribe on behalf of someone)
    States follow the figure of RFC 6665 §4.1.2: ``notify_wait`` -> ``pending`` /
    ``active`` -> ``terminated``, plus our ``terminating`` (``unsubscribe()`` sent
    ``Expires: 0``; waiting for the final NOTIFY, §4.1.2.3). The rules:

    * Timer N (64*T1) starts with a new SUBSCRIBE; if no NOTIFY arrives before it fires
      the subscription has failed (§4.1.2.4). A NOTIFY may overtake the 2xx; it then
      completes the dialog (§4.1.2.4) and the late 2xx only confirms it.
    * A 202 is treated as 200 (§8.3.1): every 2xx is success. The 2xx's Expires is the
      duration granted (§3.1.1; it may be shorter than asked, or 0); a NOTIFY's
      ``;expires=`` is authoritative too (§4.1.3). The refresh is sent at (1 - margin)
      of the granted period, at least :data:`MIN_REFRESH_LEAD` seconds before it ends.
    * A subscription that runs out is given up :data:`EXPIRY_GRACE` seconds after its
      expiry, so that the notifier's final "terminated;reason=timeout" NOTIFY, sent at
      the expiry, is what ends it when it arrives.
    * A new SUBSCRIBE that fails creates nothing (§4.1.2.1). A refresh failing with 404,
      405, 410, 416, 480-485, 489, 501 or 604 ends the subscription; any other failure
      keeps it until it expires (§4.1.2.2), and the layer retries half-way to the
      expiry (again after each such failure, while that is a second or more ahead). A 423 is retried once with the Min-Expires it names (§4.1.2.1 and
      RFC 3261 §10.2.8 by analogy).
    * A NOTIFY matching no subscription gets 481 (§4.1.3), and so does one from a second
      fork of a confirmed SUBSCRIBE: the presence package allows one dialog per
      SUBSCRIBE (RFC 3856 §6.9). Every other NOTIFY is answered 200, never 202 (§8.3.1);
      a malformed one 400; one out of CSeq order 500 (RFC 3261 §12.2.2).

Notifier role (a SIP watcher subscribes to us)
    States: ``awaiting_answer`` (a new SUBSCRIBE waits for the runtime's decision) ->
    ``pending`` / ``active`` -> ``terminated``, plus ``unsubscribed`` (the watcher sent
    ``Expires: 0``, the layer answered 200, the runtime owes the final NOTIFY). The layer
    answers alone: 400 for a SUBSCRIBE without a usable Event, Expires, Contact or From
    tag; 489 with Allow-Events for an event package not in ``supported_events``
    (§4.2.1.1); 423 with Min-Expires when 0 < Expires < 3600 and below ``min_expires``
    (§4.2.1.1); 481 for an in-dialog SUBSCRIBE matching no subscription; 500 for one out
    of CSeq order; 503 with Retry-After over ``max_subscriptions``. Then:

    * the runtime's ``accept`` sends 200 (never 202, §8.3.1) with the granted Expires
      (the request's, capped at ``max_expires``, never longer, §4.2.1.1) and, right
      after it, a NOTIFY (§4.2.1.2): every 2xx to SUBSCRIBE, new or refresh, is followed
      by one;
    * every NOTIFY carries Event and Subscription-State; "active" and "pending" carry
      ``;expires=`` with the seconds left, "terminated" a ``;reason=`` (§4.2.2);
    * a NOTIFY answered 404, 405, 410, 416, 480-485, 489, 501 or 604 removes the
      subscription, and so does one that times out (Timer F) (§4.2.2);
    * a subscription not refreshed in time gets "terminated;reason=timeout" (§4.2.2)
      and is removed;
    * ``terminate`` sends the final NOTIFY and forgets the subscription at once (a late
      SUBSCRIBE for it gets 481);
    * a SUBSCRIBE the runtime leaves unanswered for ``answer_timeout`` seconds gets 500
      (a new one is then reported ended, :data:`~.sub_events.REASON_NO_ANSWER`); after
      an unsubscribe the layer sends the owed final NOTIFY itself.

State machines as tables
    :data:`SUBSCRIBER_TABLE` and :data:`NOTIFIER_TABLE` are ``{state: {input:
    (next_state, action)}}`` (design practice 3), with inputs named after the RFC
    events. A network or timer input with no row in the current state is absorbed; a
    runtime call with no row is a :class:`~.errors.LocalSipError` (a bug in the caller).
    :func:`render_subscription_tables` prints them for review.

Timers
    Each subscription has up to four deadlines (Timer N, refresh, expiry, and the
    runtime's answer); the earliest is its one entry ``(deadline, sub_id)`` in a heap,
    with lazy deletion as in the transaction layer.

NOTIFY fast path
    A dialog that keeps being notified (the watchers of a presentity that changes often)
    gets a :class:`_NotifyTemplate` from its second state NOTIFY on: the fields
    ``Dialog.new_request`` writes that do not change between NOTIFYs (Request-URI,
    From/To/Call-ID, Contact, Route) and the next hop, so each further NOTIFY is the
    template, a CSeq, Event, Subscription-State and the shared body, with no URI parsed or
    formatted. A target refresh (a new remote target) rebuilds it; the cache is bounded
    (:data:`NOTIFY_TEMPLATE_CACHE`).

Memory
    ``_Sub`` is slotted with its flags in one int; a new subscription's id is its dialog's
    local tag (one string for both); URIs many dialogs repeat (a presentity, a presence
    server's Contact) are interned, and a dialog reuses the caller's URI strings when
    they are already canonical.

Persistence
    ``snapshot`` gives a JSON-able dict (dialog fields named as in the gateway store's
    DialogState); ``restore`` rebuilds the subscription after a restart, so NOTIFYs and
    refreshes continue in the same dialog with the next CSeq.

Errors: a peer's malformed SUBSCRIBE or NOTIFY is answered (400/481/489/500), never
raised. The runtime's mistakes raise :class:`~.errors.LocalSipError`; a call naming a
subscription that no longer exists (it may have ended while the runtime was busy) is
ignored.
"""

from __future__ import annotations

import enum
import math
import re
import sys
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

from .address import TransportAddress
from .build import make_response
from .dialog import Dialog
from .errors import LocalSipError, RemoteSipError
from .events import (
    RequestReceived,
    ResponseReceived,
    SipEvent,
    TransactionTimedOut,
    TransportFailed,
)
from .grammar import (
    is_token,
    parse_any_uri,
    parse_delta_seconds,
    parse_name_addr,
    parse_params,
)
from .ids import IdGenerator
from .message import Headers, Request, Response, canonical_name
from .sub_events import (
    REASON_EXPIRED,
    REASON_NO_ANSWER,
    REASON_NO_NOTIFY,
    NotifyReceived,
    RefreshDue,
    Role,
    SubscribeFailed,
    SubscribeRequested,
    SubscriptionActive,
    SubscriptionEvent,
    SubscriptionPending,
    SubscriptionTerminated,
    SubscriptionView,
)
from .transaction_layer import EndpointConfig

__all__ = [
    "ANSWER_TIMEOUT",
    "NOTIFY_TEMPLATE_CACHE",
    "SubscriptionEndpoint",
    "ENDING_STATUSES",
    "EXPIRY_GRACE",
    "MAX_SUBSCRIPTIONS",
    "MIN_REFRESH_LEAD",
    "NOTIFIER_TABLE",
    "NotifierAction",
    "NotifierInput",
    "NotifierState",
    "OVERLOAD_RETRY_AFTER",
    "SNAPSHOT_VERSION",
    "SUBSCRIBER_TABLE",
    "SubscriberAction",
    "SubscriberInput",
    "SubscriberState",
    "SubscriptionConfig",
    "SubscriptionManager",
    "parse_event",
    "parse_subscription_state",
    "render_subscription_tables",
]

#: RFC 6665 §4.1.2.2 (refresh failures that end the subscription) and §4.2.2 (NOTIFY
#: failures after which the notifier MUST remove it): 404, 405, 410, 416, 480-485, 489,
#: 501, 604.
ENDING_STATUSES: frozenset[int] = frozenset(
    {404, 405, 410, 416, 480, 481, 482, 483, 484, 485, 489, 501, 604}
)

#: A subscriber refreshes at least this many seconds before expiry, however short the
#: granted period, so that a refresh crossing the network (Timer F runs 32 s, but a first
#: answer normally comes within a round trip) lands before the notifier drops it.
MIN_REFRESH_LEAD = 5.0

#: A subscriber gives up on an expired subscription this long after its expiry, so that
#: the notifier's "terminated;reason=timeout" NOTIFY, sent at the expiry (RFC 6665 §4.2.2),
#: arrives first: T4, the longest a message stays in the network (RFC 3261 §17.1.2.2).
EXPIRY_GRACE = 5.0

#: Seconds the runtime has to ``accept``/``reject`` a SUBSCRIBE before the layer answers
#: 500 for it. RFC 6665 §4.2.1.1 forbids waiting for a user; the runtime only consults
#: its own state. The subscriber's Timer F gives up at 64*T1 = 32 s, so an answer later
#: than that is useless; 30 s leaves it time to arrive.
ANSWER_TIMEOUT = 30.0

#: Cap on live subscriptions (both roles). The presence benchmark holds 100,000; twice
#: that bounds memory (about 2 KB each) at a few hundred MB.
MAX_SUBSCRIPTIONS = 200_000

#: Retry-After (seconds) of the 503 sent when the subscription table is full (RFC 3261
#: §21.5.4): subscriptions end at their expiry (an hour by default), so a few minutes
#: free some room without making the watcher wait for an hour.
OVERLOAD_RETRY_AFTER = 300

#: Retry-After (seconds) of the 500 sent to a refresh that arrives while the runtime has
#: not answered the previous one (RFC 3261 §21.5.1 lets a 500 carry Retry-After).
BUSY_RETRY_AFTER = 1

#: RFC 6665 §4.2.1.1: 423 is only allowed for an interval "greater than zero and less
#: than one hour".
_ONE_HOUR = 3600

#: Largest Expires value we write or store (delta-seconds is 32 bits, RFC 3261 §20.19).
_MAX_DELTA = 2**32 - 1

#: Tries at drawing a subscription id that is not in use (ids are random; two collisions
#: in a row mean a broken generator).
_ID_TRIES = 8

#: Distinct Accept lists shared between subscriptions (the runtime uses one or two).
_SHARED_ACCEPTS = 64

#: Version of the :meth:`SubscriptionManager.snapshot` format.
SNAPSHOT_VERSION = 1

_PIDF = "application/pidf+xml"
_RETRY_AFTER_RE = re.compile(r"[ \t]*([0-9]{1,10})")

_identity_hash = object.__hash__


# --- configuration ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubscriptionConfig:
    """Configuration of a :class:`SubscriptionManager` (plain data, design practice 15)."""

    #: Expires assumed when a SUBSCRIBE has none, and asked for by ``subscribe`` when the
    #: caller gives none: 3600 for presence (RFC 3856 §6.4; RFC 6665 §3.1.1, §7.2).
    default_expires: int = 3600
    #: Below this (and when 0 < Expires < 3600) a SUBSCRIBE gets 423 with Min-Expires
    #: (RFC 6665 §4.2.1.1).
    min_expires: int = 60
    #: Granted durations are capped at this (a notifier may shorten, never lengthen).
    max_expires: int = 3600
    #: The subscriber refreshes at (1 - margin) of the granted period (at least
    #: :data:`MIN_REFRESH_LEAD` seconds early).
    refresh_margin: float = 0.1
    #: Event packages accepted (compared byte by byte with the Event type, §8.2.1).
    supported_events: tuple[str, ...] = ("presence",)
    #: See :data:`MAX_SUBSCRIPTIONS`.
    max_subscriptions: int = MAX_SUBSCRIPTIONS
    #: See :data:`ANSWER_TIMEOUT`.
    answer_timeout: float = ANSWER_TIMEOUT
    #: See :data:`OVERLOAD_RETRY_AFTER`.
    overload_retry_after: int = OVERLOAD_RETRY_AFTER

    def __post_init__(self) -> None:
        if not 0 < self.min_expires <= self.max_expires <= _MAX_DELTA:
            raise ValueError("need 0 < min_expires <= max_expires <= 2**32-1")
        if not 0 < self.default_expires <= _MAX_DELTA:
            raise ValueError("default_expires must be positive")
        if not 0.0 <= self.refresh_margin < 1.0:
            raise ValueError("refresh_margin must be in [0, 1)")
        if not self.supported_events or not all(is_token(e) for e in self.supported_events):
            raise ValueError("supported_events must be event-type tokens")
        if self.max_subscriptions < 1:
            raise ValueError("max_subscriptions must be positive")
        if self.answer_timeout <= 0:
            raise ValueError("answer_timeout must be positive")
        if self.overload_retry_after < 0:
            raise ValueError("overload_retry_after must not be negative")


# --- header grammar --------------------------------------------------------------------


def parse_event(value: str) -> tuple[str, str | None]:
    """``Event = ( "Event" / "o" ) HCOLON event-type *( SEMI event-param )`` with
    ``event-param = generic-param / ( "id" EQUAL token )`` (RFC 6665 §8.4).

    Returns (event-type, id). Raises RemoteSipError 400 when malformed.
    """
    text = value.strip(" \t")
    semi = text.find(";")
    event_type, params = (text, "") if semi < 0 else (text[:semi].rstrip(" \t"), text[semi:])
    if not is_token(event_type):
        raise RemoteSipError(f"malformed Event: {value[:100]!r}", 400, "Bad Event Header")
    event_id: str | None = None
    if params:
        for name, param in parse_params(params):
            if name.lower() == "id":
                event_id = param if param is not None else ""
    return event_type, event_id


def parse_subscription_state(value: str) -> tuple[str, int | None, str | None, int | None]:
    """``Subscription-State = "Subscription-State" HCOLON substate-value *( SEMI
    subexp-params )`` (RFC 6665 §8.4); returns (value lower-cased, expires, reason,
    retry-after). Raises RemoteSipError 400 when malformed."""
    text = value.strip(" \t")
    semi = text.find(";")
    state, params = (text, "") if semi < 0 else (text[:semi].rstrip(" \t"), text[semi:])
    if not is_token(state):
        raise RemoteSipError(f"malformed Subscription-State: {value[:100]!r}", 400)
    expires: int | None = None
    reason: str | None = None
    retry_after: int | None = None
    for name, param in parse_params(params) if params else ():
        low = name.lower()
        if low == "expires" and param is not None:
            expires = parse_delta_seconds(param)
        elif low == "retry-after" and param is not None:
            retry_after = parse_delta_seconds(param)
        elif low == "reason" and param is not None:
            if not is_token(param):
                raise RemoteSipError("malformed Subscription-State reason", 400)
            reason = param.lower()
    return state.lower(), expires, reason, retry_after


def _retry_after(message: Response) -> int | None:
    """``Retry-After = HCOLON delta-seconds [ comment ] *( SEMI retry-param )``: the
    seconds, or None when absent or unreadable (it is advice, RFC 3261 §20.33)."""
    value = message.headers.get("Retry-After")
    if value is None:
        return None
    m = _RETRY_AFTER_RE.match(value)
    return int(m.group(1)) if m is not None else None


def _expires_header(message: Request | Response) -> int | None:
    value = message.headers.get("Expires")
    if value is None:
        return None
    return parse_delta_seconds(value)


# --- state machines --------------------------------------------------------------------


class SubscriberState(enum.Enum):
    """RFC 6665 §4.1.2 figure, plus ``TERMINATING`` (our unsubscribe is out)."""

    __hash__ = _identity_hash

    NOTIFY_WAIT = "notify_wait"
    PENDING = "pending"
    ACTIVE = "active"
    TERMINATING = "terminating"
    TERMINATED = "terminated"


class SubscriberInput(enum.Enum):
    __hash__ = _identity_hash

    NOTIFY_ACTIVE = "NOTIFY state=active"
    NOTIFY_PENDING = "NOTIFY state=pending"
    NOTIFY_TERMINATED = "NOTIFY state=terminated"
    RESP_2XX = "2xx (or 202) to SUBSCRIBE"
    RESP_INITIAL_FAILURE = "failure of a new SUBSCRIBE (§4.1.2.1)"
    RESP_REFRESH_ENDING = "refresh/unsubscribe failure ending it (§4.1.2.2)"
    RESP_REFRESH_TRANSIENT = "other refresh failure (§4.1.2.2)"
    TIMER_N = "Timer N"
    TIMER_REFRESH = "refresh time"
    TIMER_EXPIRES = "re-subscription times out"
    TU_UNSUBSCRIBE = "unsubscribe()"


class SubscriberAction(enum.Enum):
    __hash__ = _identity_hash

    NONE = "-"
    REPORT_ACTIVE = "report active"
    REPORT_PENDING = "report pending"
    REPORT_TERMINATED = "report terminated (NOTIFY's reason)"
    REPORT_FAILED_OVER = "report failure, subscription over"
    REPORT_FAILED_KEPT = "report failure, subscription kept"
    REFRESH = "send refresh (or report RefreshDue)"
    SEND_UNSUBSCRIBE = "send Expires: 0 (when the dialog is known)"
    REPORT_NO_NOTIFY = "report terminated: no NOTIFY"
    REPORT_EXPIRED = "report terminated: expired"


class NotifierState(enum.Enum):
    """Notifier side (RFC 6665 §4.2), with ``AWAITING_ANSWER`` (the runtime decides on a
    new SUBSCRIBE) and ``UNSUBSCRIBED`` (Expires: 0 answered, final NOTIFY owed)."""

    __hash__ = _identity_hash

    AWAITING_ANSWER = "awaiting_answer"
    PENDING = "pending"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    TERMINATED = "terminated"


class NotifierInput(enum.Enum):
    __hash__ = _identity_hash

    TU_ACCEPT_ACTIVE = "accept(active)"
    TU_ACCEPT_PENDING = "accept(pending)"
    TU_ACCEPT_FETCH = "accept() of a fetch"
    TU_REJECT = "reject() keeping it"
    TU_REJECT_ENDING = "reject() ending it"
    TU_NOTIFY_ACTIVE = "notify(active)"
    TU_NOTIFY_PENDING = "notify(pending)"
    TU_TERMINATE = "terminate()"
    RECV_REFRESH = "SUBSCRIBE refresh"
    RECV_REFRESH_BUSY = "SUBSCRIBE refresh, previous one unanswered"
    RECV_UNSUBSCRIBE = "SUBSCRIBE Expires: 0"
    NOTIFY_2XX = "2xx to NOTIFY"
    NOTIFY_ENDING = "NOTIFY failure removing it (§4.2.2)"
    NOTIFY_OTHER_FAILURE = "other NOTIFY failure"
    NOTIFY_TIMER_F = "NOTIFY Timer F (§4.2.2)"
    TIMER_ANSWER = "runtime answer deadline"
    TIMER_EXPIRES = "subscription expiry"


class NotifierAction(enum.Enum):
    __hash__ = _identity_hash

    NONE = "-"
    ACCEPT = "200 + NOTIFY"
    ACCEPT_FETCH = "200 (Expires: 0) + NOTIFY terminated;reason=timeout"
    ACCEPT_AND_TERMINATE = "200 + NOTIFY terminated"
    REJECT = "send the runtime's failure response"
    SEND_NOTIFY = "NOTIFY"
    SEND_FINAL_NOTIFY = "NOTIFY terminated"
    ASK_RUNTIME = "report SubscribeRequested(refresh)"
    REFUSE_BUSY = "500 Retry-After"
    ANSWER_UNSUBSCRIBE = "200 (Expires: 0) + report SubscribeRequested(expires=0)"
    REPEAT_UNSUBSCRIBED = "200 (Expires: 0)"
    REFUSE_GONE = "481"
    REPORT_NOTIFY_FAILURE = "report terminated (NOTIFY failed)"
    EXPIRE = "NOTIFY terminated;reason=timeout + report"
    NO_ANSWER_INITIAL = "500 + report terminated (no answer)"
    NO_ANSWER_REFRESH = "500"
    NO_ANSWER_UNSUBSCRIBE = "NOTIFY terminated;reason=timeout + report"


_SS = SubscriberState
_SI = SubscriberInput
_SA = SubscriberAction


def _subscriber_live_rows(state: SubscriberState) -> dict[SubscriberInput, tuple[_SS, _SA]]:
    """PENDING and ACTIVE differ only in which NOTIFY is a change of state."""
    return {
        _SI.NOTIFY_ACTIVE: (
            _SS.ACTIVE,
            _SA.NONE if state is _SS.ACTIVE else _SA.REPORT_ACTIVE,
        ),
        _SI.NOTIFY_PENDING: (
            _SS.PENDING,
            _SA.NONE if state is _SS.PENDING else _SA.REPORT_PENDING,
        ),
        _SI.NOTIFY_TERMINATED: (_SS.TERMINATED, _SA.REPORT_TERMINATED),
        _SI.RESP_2XX: (state, _SA.NONE),
        _SI.RESP_INITIAL_FAILURE: (_SS.TERMINATED, _SA.REPORT_FAILED_OVER),
        _SI.RESP_REFRESH_ENDING: (_SS.TERMINATED, _SA.REPORT_FAILED_OVER),
        _SI.RESP_REFRESH_TRANSIENT: (state, _SA.REPORT_FAILED_KEPT),
        _SI.TIMER_REFRESH: (state, _SA.REFRESH),
        _SI.TIMER_EXPIRES: (_SS.TERMINATED, _SA.REPORT_EXPIRED),
        _SI.TU_UNSUBSCRIBE: (_SS.TERMINATING, _SA.SEND_UNSUBSCRIBE),
    }


#: The subscriber's machine (RFC 6665 §4.1.2 figure). TERMINATED has no rows: the
#: subscription is forgotten on entering it.
SUBSCRIBER_TABLE: dict[SubscriberState, dict[SubscriberInput, tuple[_SS, _SA]]] = {
    _SS.NOTIFY_WAIT: {
        _SI.NOTIFY_ACTIVE: (_SS.ACTIVE, _SA.REPORT_ACTIVE),
        _SI.NOTIFY_PENDING: (_SS.PENDING, _SA.REPORT_PENDING),
        _SI.NOTIFY_TERMINATED: (_SS.TERMINATED, _SA.REPORT_TERMINATED),
        _SI.RESP_2XX: (_SS.NOTIFY_WAIT, _SA.NONE),
        _SI.RESP_INITIAL_FAILURE: (_SS.TERMINATED, _SA.REPORT_FAILED_OVER),
        _SI.RESP_REFRESH_ENDING: (_SS.TERMINATED, _SA.REPORT_FAILED_OVER),
        _SI.RESP_REFRESH_TRANSIENT: (_SS.NOTIFY_WAIT, _SA.REPORT_FAILED_KEPT),
        _SI.TIMER_N: (_SS.TERMINATED, _SA.REPORT_NO_NOTIFY),
        _SI.TIMER_REFRESH: (_SS.NOTIFY_WAIT, _SA.REFRESH),
        _SI.TIMER_EXPIRES: (_SS.TERMINATED, _SA.REPORT_EXPIRED),
        _SI.TU_UNSUBSCRIBE: (_SS.TERMINATING, _SA.SEND_UNSUBSCRIBE),
    },
    _SS.PENDING: _subscriber_live_rows(_SS.PENDING),
    _SS.ACTIVE: _subscriber_live_rows(_SS.ACTIVE),
    _SS.TERMINATING: {
        # Crossing NOTIFYs are answered and otherwise ignored; the final one ends it.
        _SI.NOTIFY_ACTIVE: (_SS.TERMINATING, _SA.NONE),
        _SI.NOTIFY_PENDING: (_SS.TERMINATING, _SA.NONE),
        _SI.NOTIFY_TERMINATED: (_SS.TERMINATED, _SA.REPORT_TERMINATED),
        _SI.RESP_2XX: (_SS.TERMINATING, _SA.NONE),
        _SI.RESP_INITIAL_FAILURE: (_SS.TERMINATED, _SA.REPORT_FAILED_OVER),
        _SI.RESP_REFRESH_ENDING: (_SS.TERMINATED, _SA.REPORT_FAILED_OVER),
        _SI.RESP_REFRESH_TRANSIENT: (_SS.TERMINATED, _SA.REPORT_FAILED_OVER),
        _SI.TIMER_N: (_SS.TERMINATED, _SA.REPORT_NO_NOTIFY),
        _SI.TIMER_EXPIRES: (_SS.TERMINATED, _SA.REPORT_EXPIRED),
        _SI.TU_UNSUBSCRIBE: (_SS.TERMINATING, _SA.NONE),
    },
    _SS.TERMINATED: {},
}

_NS = NotifierState
_NI = NotifierInput
_NA = NotifierAction


def _notifier_live_rows(state: NotifierState) -> dict[NotifierInput, tuple[_NS, _NA]]:
    return {
        _NI.TU_ACCEPT_ACTIVE: (_NS.ACTIVE, _NA.ACCEPT),
        _NI.TU_ACCEPT_PENDING: (_NS.PENDING, _NA.ACCEPT),
        _NI.TU_REJECT: (state, _NA.REJECT),
        _NI.TU_REJECT_ENDING: (_NS.TERMINATED, _NA.REJECT),
        _NI.TU_NOTIFY_ACTIVE: (_NS.ACTIVE, _NA.SEND_NOTIFY),
        _NI.TU_NOTIFY_PENDING: (_NS.PENDING, _NA.SEND_NOTIFY),
        _NI.TU_TERMINATE: (_NS.TERMINATED, _NA.SEND_FINAL_NOTIFY),
        _NI.RECV_REFRESH: (state, _NA.ASK_RUNTIME),
        _NI.RECV_REFRESH_BUSY: (state, _NA.REFUSE_BUSY),
        _NI.RECV_UNSUBSCRIBE: (_NS.UNSUBSCRIBED, _NA.ANSWER_UNSUBSCRIBE),
        _NI.NOTIFY_2XX: (state, _NA.NONE),
        _NI.NOTIFY_ENDING: (_NS.TERMINATED, _NA.REPORT_NOTIFY_FAILURE),
        _NI.NOTIFY_OTHER_FAILURE: (state, _NA.NONE),
        _NI.NOTIFY_TIMER_F: (_NS.TERMINATED, _NA.REPORT_NOTIFY_FAILURE),
        _NI.TIMER_ANSWER: (state, _NA.NO_ANSWER_REFRESH),
        _NI.TIMER_EXPIRES: (_NS.TERMINATED, _NA.EXPIRE),
    }


#: The notifier's machine (RFC 6665 §4.2). TERMINATED has no rows.
NOTIFIER_TABLE: dict[NotifierState, dict[NotifierInput, tuple[_NS, _NA]]] = {
    _NS.AWAITING_ANSWER: {
        _NI.TU_ACCEPT_ACTIVE: (_NS.ACTIVE, _NA.ACCEPT),
        _NI.TU_ACCEPT_PENDING: (_NS.PENDING, _NA.ACCEPT),
        _NI.TU_ACCEPT_FETCH: (_NS.TERMINATED, _NA.ACCEPT_FETCH),
        _NI.TU_REJECT: (_NS.TERMINATED, _NA.REJECT),
        _NI.TU_REJECT_ENDING: (_NS.TERMINATED, _NA.REJECT),
        _NI.TU_TERMINATE: (_NS.TERMINATED, _NA.ACCEPT_AND_TERMINATE),
        _NI.RECV_REFRESH: (_NS.AWAITING_ANSWER, _NA.REFUSE_BUSY),
        _NI.RECV_REFRESH_BUSY: (_NS.AWAITING_ANSWER, _NA.REFUSE_BUSY),
        _NI.RECV_UNSUBSCRIBE: (_NS.AWAITING_ANSWER, _NA.REFUSE_BUSY),
        _NI.TIMER_ANSWER: (_NS.TERMINATED, _NA.NO_ANSWER_INITIAL),
    },
    _NS.PENDING: _notifier_live_rows(_NS.PENDING),
    _NS.ACTIVE: _notifier_live_rows(_NS.ACTIVE),
    _NS.UNSUBSCRIBED: {
        # A NOTIFY of new state raced the unsubscribe: the final NOTIFY is due anyway.
        _NI.TU_NOTIFY_ACTIVE: (_NS.UNSUBSCRIBED, _NA.NONE),
        _NI.TU_NOTIFY_PENDING: (_NS.UNSUBSCRIBED, _NA.NONE),
        _NI.TU_TERMINATE: (_NS.TERMINATED, _NA.SEND_FINAL_NOTIFY),
        _NI.RECV_REFRESH: (_NS.UNSUBSCRIBED, _NA.REFUSE_GONE),
        _NI.RECV_REFRESH_BUSY: (_NS.UNSUBSCRIBED, _NA.REFUSE_GONE),
        _NI.RECV_UNSUBSCRIBE: (_NS.UNSUBSCRIBED, _NA.REPEAT_UNSUBSCRIBED),
        _NI.NOTIFY_2XX: (_NS.UNSUBSCRIBED, _NA.NONE),
        _NI.NOTIFY_ENDING: (_NS.TERMINATED, _NA.REPORT_NOTIFY_FAILURE),
        _NI.NOTIFY_OTHER_FAILURE: (_NS.UNSUBSCRIBED, _NA.NONE),
        _NI.NOTIFY_TIMER_F: (_NS.TERMINATED, _NA.REPORT_NOTIFY_FAILURE),
        _NI.TIMER_ANSWER: (_NS.TERMINATED, _NA.NO_ANSWER_UNSUBSCRIBE),
    },
    _NS.TERMINATED: {},
}

_TU_INPUTS = frozenset(
    {
        _NI.TU_ACCEPT_ACTIVE,
        _NI.TU_ACCEPT_PENDING,
        _NI.TU_ACCEPT_FETCH,
        _NI.TU_REJECT,
        _NI.TU_REJECT_ENDING,
        _NI.TU_NOTIFY_ACTIVE,
        _NI.TU_NOTIFY_PENDING,
        _NI.TU_TERMINATE,
    }
)


def render_subscription_tables() -> str:
    """Both machines as text, for checking against RFC 6665 §4.1.2 and §4.2."""
    lines: list[str] = []
    tables: list[tuple[str, Mapping[Any, Mapping[Any, tuple[Any, Any]]]]] = [
        ("Subscriber (RFC 6665 §4.1.2)", SUBSCRIBER_TABLE),
        ("Notifier (RFC 6665 §4.2)", NOTIFIER_TABLE),
    ]
    for title, table in tables:
        lines += [title, "=" * len(title)]
        for state, rows in table.items():
            if not rows:
                lines.append(f"{state.value}: (forgotten at once)")
                continue
            lines.append(str(state.value))
            for inp, (nxt, action) in rows.items():
                arrow = "(stay)" if nxt is state else f"-> {nxt.value}"
                lines.append(f"    {inp.value:<48} / {action.value:<56} {arrow}")
        lines.append("")
    return "\n".join(lines)


# --- per-subscription record -----------------------------------------------------------


class _Kind(enum.Enum):
    """What a SUBSCRIBE is (sent by us, or awaiting the runtime's answer)."""

    __hash__ = _identity_hash

    INITIAL = "initial"
    REFRESH = "refresh"
    UNSUBSCRIBE = "unsubscribe"


#: "No deadline" in the unboxed deadline slots of :class:`_Sub` (NaN equals nothing).
_NONE: Final = math.nan


def _deadline(at: float) -> float | None:
    """An unboxed deadline slot as ``float | None``."""
    return None if at != at else at


def _unboxed(at: float | None) -> float:
    """``float | None`` for an unboxed deadline slot."""
    return _NONE if at is None else at


_AUTO_REFRESH = 1
_FETCH = 2
_UNSUB_DEFERRED = 4
_RETRIED_423 = 8
#: ``_Sub.kind`` is two bits of the flags, from here: an index into _KINDS.
_KIND_SHIFT = 4
_KINDS: Final = (_Kind.INITIAL, _Kind.REFRESH, _Kind.UNSUBSCRIBE)
#: A delta-seconds value (32 bits, RFC 3261 §20.19) in ``_Sub._durations``.
_DELTA_MASK: Final = _MAX_DELTA


def _delta(value: int) -> int:
    """``value`` as a delta-seconds field of ``_Sub._durations`` (0 to 2**32 - 1)."""
    return 0 if value < 0 else min(value, _MAX_DELTA)


class _Sub:
    """One subscription. Slotted and small: the benchmark holds 100,000 of them."""

    # 15 slots: with the object header and mypyc's vtable pointer that is 144 bytes, 160
    # with the collector's header, CPython's 160-byte class. Rarely used or mutually
    # exclusive fields share a slot behind properties (the event and its id, the two
    # durations, the transaction or the pending SUBSCRIBE, the kind among the flags);
    # each slot more would be 8 B, and each 16 B step 1.6 MB, for the 100,000 held.
    __slots__ = (
        "id",
        "state",
        "dialog",
        "_event",
        "_durations",
        "_expires_at",
        "_refresh_at",
        "_timer_n_at",
        "_answer_at",
        "scheduled",
        "slot",
        "_inflight",
        "accept",
        "headers",
        "flags",
    )

    def __init__(
        self,
        sub_id: str,
        role: Role,
        state: SubscriberState | NotifierState,
        dialog: Dialog,
        event: str,
        event_id: str | None,
    ) -> None:
        self.id = sub_id
        if (role is Role.SUBSCRIBER) is not isinstance(state, SubscriberState):
            raise LocalSipError(f"state {state} does not belong to the {role.value} role")
        #: The role is the state machine's: SubscriberState or NotifierState.
        self.state: SubscriberState | NotifierState = state
        self.dialog = dialog
        #: The event package, or (package, id) when the Event header has an id.
        self._event: str | tuple[str, str] = event if event_id is None else (event, event_id)
        #: ``wanted`` above ``expires``, 32 bits each (see the properties).
        self._durations = 0
        # The deadlines are unboxed floats, NaN for "none" (a float object each was 32 B
        # more for each of the 100,000 subscriptions held); the properties below give
        # float | None.
        self._expires_at = _NONE
        self._refresh_at = _NONE
        self._timer_n_at = _NONE
        self._answer_at = _NONE
        #: The deadline the timer heap orders this subscription by, and its position there
        #: (-1: not in the heap; ``scheduled`` then means nothing). See :class:`_TimerHeap`.
        self.scheduled = 0.0
        self.slot = -1
        #: ``tx`` (subscriber) or ``pending`` (notifier): see the properties.
        self._inflight: str | RequestReceived | None = None
        self.accept: tuple[str, ...] = ()
        self.headers: tuple[tuple[str, str], ...] = ()
        #: The boolean properties below, one bit each, and ``kind`` (one slot instead of
        #: five: the gateway holds 100,000 subscriptions).
        self.flags = _AUTO_REFRESH

    @property
    def event(self) -> str:
        event = self._event
        return event if isinstance(event, str) else event[0]

    @property
    def event_id(self) -> str | None:
        event = self._event
        return None if isinstance(event, str) else event[1]

    @property
    def expires(self) -> int:
        """Duration last granted (0 before any)."""
        return self._durations & _DELTA_MASK

    @expires.setter
    def expires(self, value: int) -> None:
        self._durations = (self._durations & ~_DELTA_MASK) | _delta(value)

    @property
    def wanted(self) -> int:
        """Subscriber: the Expires we ask for. Notifier: what a pending SUBSCRIBE gets."""
        return self._durations >> 32

    @wanted.setter
    def wanted(self, value: int) -> None:
        self._durations = (_delta(value) << 32) | (self._durations & _DELTA_MASK)

    @property
    def tx(self) -> str | None:
        """Subscriber: the client transaction of the SUBSCRIBE in flight."""
        inflight = self._inflight
        return inflight if isinstance(inflight, str) else None

    @tx.setter
    def tx(self, key: str | None) -> None:
        if key is not None or isinstance(self._inflight, str):
            self._inflight = key

    @property
    def pending(self) -> RequestReceived | None:
        """Notifier: the SUBSCRIBE awaiting the runtime's answer."""
        inflight = self._inflight
        return inflight if isinstance(inflight, RequestReceived) else None

    @pending.setter
    def pending(self, event: RequestReceived | None) -> None:
        if event is not None or isinstance(self._inflight, RequestReceived):
            self._inflight = event

    @property
    def kind(self) -> _Kind:
        """What the SUBSCRIBE in flight (subscriber) or awaiting an answer (notifier) is."""
        return _KINDS[(self.flags >> _KIND_SHIFT) & 3]

    @kind.setter
    def kind(self, kind: _Kind) -> None:
        self.flags = (self.flags & ~(3 << _KIND_SHIFT)) | (_KINDS.index(kind) << _KIND_SHIFT)

    @property
    def role(self) -> Role:
        return Role.SUBSCRIBER if isinstance(self.state, SubscriberState) else Role.NOTIFIER

    @property
    def expires_at(self) -> float | None:
        """When the subscription expires (None: no expiry known)."""
        return _deadline(self._expires_at)

    @expires_at.setter
    def expires_at(self, at: float | None) -> None:
        self._expires_at = _unboxed(at)

    @property
    def refresh_at(self) -> float | None:
        """Subscriber: when to refresh (None: no refresh due)."""
        return _deadline(self._refresh_at)

    @refresh_at.setter
    def refresh_at(self, at: float | None) -> None:
        self._refresh_at = _unboxed(at)

    @property
    def timer_n_at(self) -> float | None:
        """Subscriber: Timer N (RFC 6665 §4.1.2.4), while armed."""
        return _deadline(self._timer_n_at)

    @timer_n_at.setter
    def timer_n_at(self, at: float | None) -> None:
        self._timer_n_at = _unboxed(at)

    @property
    def answer_at(self) -> float | None:
        """Notifier: when the runtime's answer to a SUBSCRIBE is overdue, while awaited."""
        return _deadline(self._answer_at)

    @answer_at.setter
    def answer_at(self, at: float | None) -> None:
        self._answer_at = _unboxed(at)

    def _flag(self, bit: int, on: bool) -> None:
        self.flags = self.flags | bit if on else self.flags & ~bit

    @property
    def auto_refresh(self) -> bool:
        """Subscriber: refresh before expiry by itself (else report RefreshDue)."""
        return bool(self.flags & _AUTO_REFRESH)

    @auto_refresh.setter
    def auto_refresh(self, on: bool) -> None:
        self._flag(_AUTO_REFRESH, on)

    @property
    def fetch(self) -> bool:
        """A one-time fetch (Expires: 0, RFC 6665 §4.4.3)."""
        return bool(self.flags & _FETCH)

    @fetch.setter
    def fetch(self, on: bool) -> None:
        self._flag(_FETCH, on)

    @property
    def unsub_deferred(self) -> bool:
        """Subscriber: unsubscribe() before the dialog was known; send when it is."""
        return bool(self.flags & _UNSUB_DEFERRED)

    @unsub_deferred.setter
    def unsub_deferred(self, on: bool) -> None:
        self._flag(_UNSUB_DEFERRED, on)

    @property
    def retried_423(self) -> bool:
        """Subscriber: the SUBSCRIBE in flight is already a retry after a 423."""
        return bool(self.flags & _RETRIED_423)

    @retried_423.setter
    def retried_423(self, on: bool) -> None:
        self._flag(_RETRIED_423, on)

    @property
    def event_value(self) -> str:
        return self.event if self.event_id is None else f"{self.event};id={self.event_id}"


class _TimerHeap:
    """The subscriptions with a deadline, earliest first: a binary heap of the :class:`_Sub`
    records themselves, ordered by their ``scheduled`` slot, each knowing its position
    (``slot``). Arming a subscription earlier moves it up in place (decrease-key) and
    ending one takes it out, so there is one entry per armed subscription and no stale
    ones. A ``(deadline, id)`` tuple per entry with lazy deletion cost a tuple and a boxed
    float, ~100 B, for each of the 100,000 subscriptions a gateway holds.
    """

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: list[_Sub] = []

    def __len__(self) -> int:
        return len(self._items)

    def first(self) -> _Sub | None:
        items = self._items
        return items[0] if items else None

    def arm(self, sub: _Sub, deadline: float) -> None:
        """Put ``sub`` in at ``deadline``, or move it there (no later than it was)."""
        items = self._items
        if sub.slot < 0:
            sub.slot = len(items)
            items.append(sub)
        sub.scheduled = deadline
        self._up(sub.slot)

    def remove(self, sub: _Sub) -> None:
        pos = sub.slot
        if pos < 0:
            return
        sub.slot = -1
        items = self._items
        last = items.pop()
        if last is sub:
            return
        items[pos] = last
        last.slot = pos
        self._down(pos)
        self._up(last.slot)

    def _up(self, pos: int) -> None:
        items = self._items
        sub = items[pos]
        at = sub.scheduled
        while pos > 0:
            up = (pos - 1) >> 1
            parent = items[up]
            if not at < parent.scheduled:
                break
            items[pos] = parent
            parent.slot = pos
            pos = up
        items[pos] = sub
        sub.slot = pos

    def _down(self, pos: int) -> None:
        items = self._items
        n = len(items)
        sub = items[pos]
        at = sub.scheduled
        while True:
            child = 2 * pos + 1
            if child >= n:
                break
            right = child + 1
            if right < n and items[right].scheduled < items[child].scheduled:
                child = right
            lower = items[child]
            if not lower.scheduled < at:
                break
            items[pos] = lower
            lower.slot = pos
            pos = child
        items[pos] = sub
        sub.slot = pos


class _Refusal(Exception):
    """A SUBSCRIBE/NOTIFY the layer answers with a failure (internal control flow)."""

    def __init__(
        self, status: int, reason: str | None = None, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(status)
        self.status = status
        self.reason = reason
        self.headers = headers


@dataclass(frozen=True, slots=True, init=False)
class _Args:
    """What an input carries to its action."""

    event: RequestReceived | None = None
    status: int | None = None
    reason: str | None = None
    retry_after: int | None = None
    body: bytes | None = None
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    granted: int = 0
    kind: _Kind = _Kind.INITIAL

    # Written out rather than generated (init=False): mypyc compiles this one, not the
    # dataclasses module's (sipxmpp.native, "Dataclasses"); two per NOTIFY sent.
    def __init__(
        self,
        event: RequestReceived | None = None,
        status: int | None = None,
        reason: str | None = None,
        retry_after: int | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        granted: int = 0,
        kind: _Kind = _Kind.INITIAL,
    ) -> None:
        object.__setattr__(self, "event", event)
        object.__setattr__(self, "status", status)
        object.__setattr__(self, "reason", reason)
        object.__setattr__(self, "retry_after", retry_after)
        object.__setattr__(self, "body", body)
        object.__setattr__(self, "content_type", content_type)
        object.__setattr__(self, "headers", headers)
        object.__setattr__(self, "granted", granted)
        object.__setattr__(self, "kind", kind)


_NO_ARGS = _Args()


# --- NOTIFY templates ------------------------------------------------------------------


class SubscriptionEndpoint(Protocol):
    """What the layer uses of :class:`~.core.SipEndpoint`. The runtime may hand it a wrapper
    (e.g. one that registers the transactions the layer starts with its dispatcher)."""

    @property
    def config(self) -> EndpointConfig: ...

    def send_request(self, request: Request, destination: TransportAddress, now: float) -> str: ...

    def send_response(self, response: Response, now: float) -> None: ...


class _NotifyTemplate:
    """The fields every NOTIFY of one dialog repeats (RFC 3261 §12.2.1.1), built once by
    ``Dialog.new_request`` and reused while the remote target stays the same: the
    Request-URI, Max-Forwards/From/To/Call-ID before CSeq, Contact and Route after it, and
    where the request goes. A fan-out of one change to 1,000 watchers then builds each
    NOTIFY from these and the shared body without parsing or formatting a URI again."""

    __slots__ = ("target", "hop", "uri", "head", "tail")

    def __init__(
        self,
        target: str,
        hop: TransportAddress,
        uri: str,
        head: tuple[tuple[str, str], ...],
        tail: tuple[tuple[str, str], ...],
    ) -> None:
        self.target = target
        self.hop = hop
        self.uri = uri
        self.head = head
        self.tail = tail


#: NOTIFY templates kept (see :class:`_NotifyTemplate`; oldest evicted first). The dialogs
#: that receive NOTIFYs at a high rate are the watchers of a presentity that changes often
#: (1,000 in the benchmark's fan-out); each entry is a few hundred bytes, so the bound keeps
#: the cache at about 2 MB however many subscriptions are held.
NOTIFY_TEMPLATE_CACHE = 4096

#: Header names a runtime's extra NOTIFY header may not use on the fast path: those
#: ``make_request`` writes itself or refuses (the slow path then raises the precise error).
_TEMPLATE_RESERVED = frozenset(
    {"Via", "From", "To", "Call-ID", "CSeq", "Max-Forwards", "Contact", "Content-Length"}
    | {"Content-Type", "Route", "Event", "Subscription-State"}
)

#: Largest CSeq number we send (RFC 3261 §8.1.1.5: below 2**31), as ``Dialog`` enforces.
_MAX_LOCAL_CSEQ = 2**31 - 1


# --- the manager -----------------------------------------------------------------------


class SubscriptionManager:
    """Every RFC 6665 subscription of one endpoint, in both roles. See the module
    docstring."""

    def __init__(
        self,
        endpoint: SubscriptionEndpoint,
        config: SubscriptionConfig,
        ids: IdGenerator,
        contact: Callable[[str], str],
    ) -> None:
        self._ep = endpoint
        self._cfg = config
        self._ids = ids
        self._contact_of = contact
        self._timer_n = 64 * endpoint.config.timers.t1
        self._events: deque[SubscriptionEvent] = deque()
        self._subs: dict[str, _Sub] = {}
        #: (Call-ID, local tag, remote tag) -> subscription, for the few subscriptions whose
        #: id is not their dialog's local tag (see :meth:`_by_dialog`). The others are found
        #: through ``_subs`` by their local tag: one index entry and no key tuple for each of
        #: the 100,000 subscriptions a gateway holds.
        self._dialogs: dict[tuple[str, str, str], _Sub] = {}
        #: Subscriber dialogs not confirmed yet: (Call-ID, local tag) -> subscription.
        self._early: dict[tuple[str, str], _Sub] = {}
        #: Client transactions (SUBSCRIBE or NOTIFY) in flight -> their subscription.
        self._txs: dict[str, _Sub] = {}
        self._heap = _TimerHeap()
        self._allow_events = ", ".join(config.supported_events)
        self._supported = {event: event for event in config.supported_events}
        self._accepts: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._last_now = 0.0
        #: sub id -> its dialog's NOTIFY template (see NOTIFY_TEMPLATE_CACHE).
        self._notify_templates: dict[str, _NotifyTemplate] = {}

    # -- feeding -------------------------------------------------------------------------

    def handle_sip_event(self, event: SipEvent, now: float) -> bool:
        """Take an endpoint event; True if it was the layer's (every SUBSCRIBE and NOTIFY
        request, and the outcome of every transaction the layer started)."""
        self._last_now = now
        if isinstance(event, RequestReceived):
            method = event.request.method
            if method == "SUBSCRIBE":
                self._on_subscribe(event, now)
                return True
            if method == "NOTIFY":
                self._on_notify(event, now)
                return True
            return False
        if isinstance(event, ResponseReceived):
            if event.response.status < 200:
                return event.transaction in self._txs
            sub = self._txs.pop(event.transaction, None)
            if sub is None:
                return False
            if self._subs.get(sub.id) is sub:
                self._on_final(sub, event.transaction, event.request, event.response, now)
            return True
        if isinstance(event, TransactionTimedOut | TransportFailed):
            sub = self._txs.pop(event.transaction, None)
            if sub is None:
                return False
            if self._subs.get(sub.id) is sub:
                # RFC 3261 §8.1.3.1: a timeout counts as 408, a transport error as 503.
                status = 408 if isinstance(event, TransactionTimedOut) else 503
                self._on_final(sub, event.transaction, event.request, None, now, status)
            return True
        return False

    def next_event(self) -> SubscriptionEvent | None:
        return self._events.popleft() if self._events else None

    def next_deadline(self) -> float | None:
        first = self._heap.first()
        return None if first is None else first.scheduled

    def handle_timer(self, now: float) -> None:
        self._last_now = now
        heap = self._heap
        while True:
            sub = heap.first()
            if sub is None or sub.scheduled > now:
                return
            heap.remove(sub)
            if self._subs.get(sub.id) is not sub:
                continue  # armed before it was registered, and never was
            self._fire(sub, now)
            if self._subs.get(sub.id) is sub:
                self._schedule(sub)

    # -- subscriber role -----------------------------------------------------------------

    def subscribe(
        self,
        *,
        request_uri: str,
        from_uri: str,
        to_uri: str,
        destination: TransportAddress,
        now: float,
        event: str = "presence",
        accept: tuple[str, ...] = (_PIDF,),
        expires: int | None = None,
        auto_refresh: bool = True,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> str:
        """Send a SUBSCRIBE in a new dialog; return the subscription id.

        ``headers`` are added to the SUBSCRIBE, and to its refreshes except Route (a
        preloaded route only serves the dialog-creating request, RFC 3261 §12.2.1.1).
        Raises LocalSipError for bad arguments and (status hint 503) when the layer or
        the endpoint is full.
        """
        return self._new_subscription(
            request_uri=request_uri,
            from_uri=from_uri,
            to_uri=to_uri,
            destination=destination,
            now=now,
            event=event,
            accept=accept,
            expires=self._cfg.default_expires if expires is None else expires,
            auto_refresh=auto_refresh,
            headers=headers,
            fetch=False,
        )

    def fetch(
        self,
        *,
        request_uri: str,
        from_uri: str,
        to_uri: str,
        destination: TransportAddress,
        now: float,
        event: str = "presence",
        accept: tuple[str, ...] = (_PIDF,),
        headers: tuple[tuple[str, str], ...] = (),
    ) -> str:
        """Poll: SUBSCRIBE with ``Expires: 0`` in a new dialog (RFC 6665 §4.4.3, RFC 8048
        §7.1). The answer is one "terminated" NOTIFY (NotifyReceived, then
        SubscriptionTerminated)."""
        return self._new_subscription(
            request_uri=request_uri,
            from_uri=from_uri,
            to_uri=to_uri,
            destination=destination,
            now=now,
            event=event,
            accept=accept,
            expires=0,
            auto_refresh=False,
            headers=headers,
            fetch=True,
        )

    def refresh(self, sub_id: str, now: float, expires: int | None = None) -> None:
        """Refresh now (RFC 6665 §4.1.2.2), asking for ``expires`` (default: as before).
        Nothing happens while a SUBSCRIBE is in flight (its answer refreshes anyway),
        before the dialog is confirmed, or once unsubscribing."""
        self._last_now = now
        sub = self._subs.get(sub_id)
        if sub is None:
            return
        if sub.role is not Role.SUBSCRIBER:
            raise LocalSipError(f"{sub_id} is a notifier subscription")
        if expires is not None:
            sub.wanted = _check_expires(expires)
        if (
            sub.state in (_SS.TERMINATING, _SS.TERMINATED)
            or sub.fetch
            or sub.tx is not None
            or not sub.dialog.confirmed
        ):
            return
        self._send_subscribe(sub, now, _Kind.REFRESH, sub.wanted, tu=True)
        self._schedule(sub)

    def unsubscribe(self, sub_id: str, now: float) -> None:
        """End a subscription we hold: ``Expires: 0`` in the dialog (RFC 6665 §4.1.2.3).
        The end is reported by SubscriptionTerminated when the final NOTIFY arrives (or
        SubscribeFailed if the unsubscribe fails)."""
        self._last_now = now
        sub = self._subs.get(sub_id)
        if sub is None:
            return
        if sub.role is not Role.SUBSCRIBER:
            raise LocalSipError(f"{sub_id} is a notifier subscription; use terminate()")
        self._sub_step(sub, _SI.TU_UNSUBSCRIBE, now, _NO_ARGS)

    # -- notifier role -------------------------------------------------------------------

    def accept(
        self,
        sub_id: str,
        now: float,
        *,
        state: Literal["active", "pending"],
        body: bytes | None = None,
        content_type: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """Accept the SUBSCRIBE awaiting an answer: 200 (never 202) and, at once, a NOTIFY
        with ``state``, ``body`` and ``headers`` (RFC 6665 §4.2.1.2). For a fetch the
        NOTIFY is "terminated;reason=timeout" and the subscription ends."""
        self._last_now = now
        sub = self._notifier(sub_id)
        if sub is None:
            return
        if state not in ("active", "pending"):
            raise LocalSipError(f"accept state must be active or pending, not {state!r}")
        if sub.pending is None:
            raise LocalSipError(f"{sub_id}: no SUBSCRIBE awaits an answer")
        _check_body(body, content_type)
        _check_extra(headers, _NOTIFY_OWN)
        if sub.fetch and sub.state is _NS.AWAITING_ANSWER:
            inp = _NI.TU_ACCEPT_FETCH
        else:
            inp = _NI.TU_ACCEPT_ACTIVE if state == "active" else _NI.TU_ACCEPT_PENDING
        args = _Args(body=body, content_type=content_type, headers=headers)
        self._not_step(sub, inp, now, args)

    def reject(
        self,
        sub_id: str,
        now: float,
        status: int,
        reason: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """Refuse the SUBSCRIBE awaiting an answer with ``status`` (300-699). A new
        subscription is then forgotten; a refresh refused with a code that ends it for
        the subscriber (RFC 6665 §4.1.2.2) too, otherwise it lives until it expires."""
        self._last_now = now
        sub = self._notifier(sub_id)
        if sub is None:
            return
        if not 300 <= status <= 699:
            raise LocalSipError(f"reject needs a status 300-699, not {status} (never 202)")
        if sub.pending is None:
            raise LocalSipError(f"{sub_id}: no SUBSCRIBE awaits an answer")
        _check_extra(headers, frozenset())
        inp = _NI.TU_REJECT_ENDING if status in ENDING_STATUSES else _NI.TU_REJECT
        self._not_step(sub, inp, now, _Args(status=status, reason=reason, headers=headers))

    def notify(
        self,
        sub_id: str,
        now: float,
        *,
        state: Literal["active", "pending", "terminated"],
        body: bytes | None = None,
        content_type: str | None = None,
        reason: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> int:
        """Send a NOTIFY in the subscription's dialog. "active"/"pending" carry
        ``;expires=`` with the seconds left; "terminated" is :meth:`terminate`.

        Returns the NOTIFY's CSeq number (the dialog's local CSeq, RFC 3261 §12.2.1.1), so
        that the runtime can tell how far its stored copy of the dialog lags; 0 when
        nothing was sent (an unknown id, or "terminated")."""
        self._last_now = now
        if state == "terminated":
            self.terminate(
                sub_id,
                now,
                reason=reason or "noresource",
                body=body,
                content_type=content_type,
                headers=headers,
            )
            return 0
        sub = self._notifier(sub_id)
        if sub is None:
            return 0
        if state not in ("active", "pending"):
            raise LocalSipError(f"unknown Subscription-State {state!r}")
        if reason is not None:
            raise LocalSipError("a reason only goes with terminated (RFC 6665 §4.2.2)")
        _check_body(body, content_type)
        _check_extra(headers, _NOTIFY_OWN)
        inp = _NI.TU_NOTIFY_ACTIVE if state == "active" else _NI.TU_NOTIFY_PENDING
        args = _Args(body=body, content_type=content_type, headers=headers)
        self._not_step(sub, inp, now, args)
        return sub.dialog.local_cseq

    def terminate(
        self,
        sub_id: str,
        now: float,
        reason: str = "noresource",
        body: bytes | None = None,
        content_type: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """End a subscription we serve: NOTIFY "terminated;reason=<reason>" (with the
        final state in ``body``, if any), and forget it. On a SUBSCRIBE still awaiting an
        answer, it is first accepted (200), as every 2xx needs its NOTIFY."""
        self._last_now = now
        sub = self._notifier(sub_id)
        if sub is None:
            return
        if not is_token(reason):
            raise LocalSipError(f"bad reason {reason!r}")
        _check_body(body, content_type)
        _check_extra(headers, _NOTIFY_OWN)
        args = _Args(reason=reason, body=body, content_type=content_type, headers=headers)
        self._not_step(sub, _NI.TU_TERMINATE, now, args)

    # -- persistence ---------------------------------------------------------------------

    def snapshot(
        self, sub_id: str, *, now: float | None = None, wall: float | None = None
    ) -> dict[str, object]:
        """A JSON-able record of the subscription, for ``restore`` after a restart.

        ``now`` (monotonic) and ``wall`` (epoch seconds) convert the expiry to
        ``expires_at`` in wall-clock time; without ``wall`` only the relative
        ``expires_in`` is recorded (``now`` defaults to the last time the layer saw).
        A new SUBSCRIBE still awaiting the runtime's answer has nothing to keep (its
        transaction dies with the process) and raises LocalSipError; so does an
        unknown id.
        """
        sub = self._subs.get(sub_id)
        if sub is None:
            raise LocalSipError(f"no subscription {sub_id!r}")
        if sub.state is _NS.AWAITING_ANSWER:
            raise LocalSipError(f"{sub_id} was never accepted; nothing to snapshot")
        ref = self._last_now if now is None else now
        expires_in = None if sub.expires_at is None else max(0.0, sub.expires_at - ref)
        view = self._view(sub)
        return {
            "v": SNAPSHOT_VERSION,
            "sub_id": sub.id,
            "role": sub.role.value,
            "state": sub.state.value,
            "watcher": view.watcher,
            "presentity": view.presentity,
            "event": sub.event,
            "event_id": sub.event_id,
            "expires": sub.expires,
            "wanted": sub.wanted,
            "expires_in": expires_in,
            "saved_at": wall,
            "expires_at": None if wall is None or expires_in is None else wall + expires_in,
            "auto_refresh": sub.auto_refresh,
            "fetch": sub.fetch,
            "accept": list(sub.accept),
            "headers": [[k, v] for k, v in sub.headers],
            "dialog": sub.dialog.to_dict(),
        }

    def restore(self, snapshot: Mapping[str, object], now: float, wall: float) -> str:
        """Rebuild a subscription from :meth:`snapshot` (``now`` monotonic, ``wall``
        epoch seconds); return its id. Its timers restart from what is left: a
        subscription that expired meanwhile ends at the next ``handle_timer``; a
        subscriber that was unsubscribing sends its ``Expires: 0`` again; a notifier
        that owed the final NOTIFY sends it at the next ``handle_timer``.
        Raises LocalSipError for a malformed or conflicting record."""
        self._last_now = now
        if snapshot.get("v") != SNAPSHOT_VERSION:
            raise LocalSipError(f"unknown snapshot version {snapshot.get('v')!r}")
        sub_id = snapshot.get("sub_id")
        if not isinstance(sub_id, str) or not sub_id or sub_id in self._subs:
            raise LocalSipError(f"bad or duplicate sub_id {sub_id!r}")
        if len(self._subs) >= self._cfg.max_subscriptions:
            raise LocalSipError("too many subscriptions", 503, "Service Unavailable")
        role_raw = snapshot.get("role")
        if role_raw not in ("subscriber", "notifier"):
            raise LocalSipError(f"bad role {role_raw!r}")
        role = Role(role_raw)
        state_raw = snapshot.get("state")
        state: SubscriberState | NotifierState
        try:
            if role is Role.SUBSCRIBER:
                state = SubscriberState(state_raw)
            else:
                state = NotifierState(state_raw)
        except ValueError as exc:
            raise LocalSipError(f"bad state {state_raw!r}") from exc
        if state in (_SS.TERMINATED, _NS.TERMINATED, _NS.AWAITING_ANSWER):
            raise LocalSipError(f"a {state.value} subscription cannot be restored")
        dialog_raw = snapshot.get("dialog")
        if not isinstance(dialog_raw, Mapping):
            raise LocalSipError("dialog missing")
        dialog = Dialog.from_dict(dialog_raw)
        dialog.local_uri = sys.intern(dialog.local_uri)
        dialog.remote_uri = sys.intern(dialog.remote_uri)
        if role is Role.SUBSCRIBER:
            dialog.remote_target = sys.intern(dialog.remote_target)
        event_raw = snapshot.get("event")
        event_id = snapshot.get("event_id")
        if not isinstance(event_raw, str) or not is_token(event_raw):
            raise LocalSipError(f"bad event {event_raw!r}")
        if event_id is not None and (not isinstance(event_id, str) or not is_token(event_id)):
            raise LocalSipError("bad event_id")
        expires = _snap_int(snapshot, "expires")
        wanted = _snap_int(snapshot, "wanted")
        flags = [snapshot.get("auto_refresh"), snapshot.get("fetch")]
        if not all(isinstance(f, bool) for f in flags):
            raise LocalSipError("auto_refresh and fetch must be bools")
        accept = snapshot.get("accept", [])
        if not isinstance(accept, list) or not all(isinstance(a, str) for a in accept):
            raise LocalSipError("accept must be a list of strings")
        headers_raw = snapshot.get("headers", [])
        if not isinstance(headers_raw, list) or not all(
            isinstance(h, list | tuple) and len(h) == 2 and all(isinstance(x, str) for x in h)
            for h in headers_raw
        ):
            raise LocalSipError("headers must be a list of [name, value]")
        restored_headers = tuple((str(h[0]), str(h[1])) for h in headers_raw)
        _check_extra(restored_headers, _SUBSCRIBE_OWN)
        remaining = _remaining(snapshot, wall)
        key = dialog.key
        if key is not None and self._by_dialog(*key) is not None:
            raise LocalSipError("a subscription with this dialog exists")
        early_key = (dialog.call_id, dialog.local_tag)
        if key is None and (role is Role.NOTIFIER or early_key in self._early):
            raise LocalSipError("an unconfirmed dialog cannot be restored here")
        event = self._supported.get(event_raw, event_raw)
        sub = _Sub(sub_id, role, state, dialog, event, event_id)
        sub.expires = expires
        sub.wanted = wanted
        sub.auto_refresh = bool(flags[0])
        sub.fetch = bool(flags[1])
        sub.accept = self._shared(tuple(accept))
        sub.headers = restored_headers
        self._register(sub)
        if role is Role.SUBSCRIBER:
            if state is _SS.NOTIFY_WAIT or state is _SS.TERMINATING:
                sub.timer_n_at = now + self._timer_n
            if state is _SS.TERMINATING:
                if dialog.confirmed:
                    self._send_subscribe(sub, now, _Kind.UNSUBSCRIBE, 0, tu=False)
                else:
                    sub.unsub_deferred = True
            elif state is _SS.NOTIFY_WAIT:
                if remaining is not None and not sub.fetch:
                    sub.expires_at = now + remaining
            elif remaining is not None and remaining <= 0:
                sub.expires_at = now  # ran out while the gateway was down
            elif remaining is not None:
                self._arm_subscriber(sub, now, remaining, from_restore=True)
            else:
                # No expiry was known: refresh at once, and give up if that fails.
                sub.expires_at = now + self._timer_n
                sub.refresh_at = now if sub.auto_refresh else None
        elif state is _NS.UNSUBSCRIBED:
            sub.answer_at = now  # the final NOTIFY is owed: send it at once
        else:
            sub.expires_at = now + (remaining or 0.0)
        self._schedule(sub)
        return sub_id

    def get(self, sub_id: str) -> SubscriptionView | None:
        sub = self._subs.get(sub_id)
        return None if sub is None else self._view(sub)

    def count(self) -> int:
        return len(self._subs)

    def sub_ids(self) -> list[str]:
        """The ids of every live subscription (e.g. to snapshot them all)."""
        return list(self._subs)

    @property
    def transactions_in_flight(self) -> int:
        """Client transactions (SUBSCRIBE/NOTIFY) the layer is waiting on."""
        return len(self._txs)

    # -- internals: registration and views ---------------------------------------------

    def _shared(self, accept: tuple[str, ...]) -> tuple[str, ...]:
        """One tuple per distinct Accept list, shared by every subscription using it."""
        known = self._accepts.get(accept)
        if known is not None:
            return known
        if len(self._accepts) < _SHARED_ACCEPTS:
            self._accepts[accept] = accept
        return accept

    def _id_for(self, dialog: Dialog) -> str:
        """A new subscription's id: its dialog's local tag, ours and random (RFC 3261 §19.3),
        so that one string serves both (100,000 subscriptions); a fresh token when that tag
        already names a subscription (a restored one, or a broken generator)."""
        tag = dialog.local_tag
        return tag if tag not in self._subs else self._new_id()

    def _new_id(self) -> str:
        for _ in range(_ID_TRIES):
            sub_id = self._ids.token(64)
            if sub_id not in self._subs:
                return sub_id
        raise LocalSipError("the id generator keeps repeating itself")

    def _by_dialog(self, call_id: str, local_tag: str, remote_tag: str) -> _Sub | None:
        """The subscription of a dialog ID (RFC 3261 §12: Call-ID, local tag, remote tag).

        A subscription's id is its dialog's local tag (:meth:`_id_for`), ours and random,
        so ``_subs`` finds the candidate and the whole ID is then compared; ``_dialogs``
        holds the rest."""
        sub = self._subs.get(local_tag)
        if sub is not None:
            d = sub.dialog
            if d.remote_tag == remote_tag and d.local_tag == local_tag and d.call_id == call_id:
                return sub
        return self._dialogs.get((call_id, local_tag, remote_tag)) if self._dialogs else None

    def _index_dialog(self, sub: _Sub, key: tuple[str, str, str]) -> None:
        if sub.id != key[1]:
            self._dialogs[key] = sub

    def _register(self, sub: _Sub) -> None:
        self._subs[sub.id] = sub
        key = sub.dialog.key
        if key is not None:
            self._index_dialog(sub, key)
        else:
            self._early[(sub.dialog.call_id, sub.dialog.local_tag)] = sub

    def _confirmed(self, sub: _Sub) -> None:
        """The subscriber's dialog just learned its remote tag: index it by dialog ID."""
        early = (sub.dialog.call_id, sub.dialog.local_tag)
        if self._early.get(early) is sub:
            del self._early[early]
        key = sub.dialog.key
        if key is not None:
            self._index_dialog(sub, key)

    def _remove(self, sub: _Sub, now: float) -> None:
        if self._subs.get(sub.id) is not sub:
            return
        del self._subs[sub.id]
        self._heap.remove(sub)
        self._notify_templates.pop(sub.id, None)
        key = sub.dialog.key
        if key is not None and self._dialogs.get(key) is sub:
            del self._dialogs[key]
        early = (sub.dialog.call_id, sub.dialog.local_tag)
        if self._early.get(early) is sub:
            del self._early[early]
        pending = sub.pending
        sub.pending = None
        if pending is not None:
            # A SUBSCRIBE still unanswered when the subscription ends: it is gone.
            self._reply(pending, 481, "Subscription does not exist", now=now)
        sub.state = _SS.TERMINATED if sub.role is Role.SUBSCRIBER else _NS.TERMINATED

    def _view(self, sub: _Sub) -> SubscriptionView:
        d = sub.dialog
        if sub.role is Role.SUBSCRIBER:
            watcher, presentity = d.local_uri, d.remote_uri
        else:
            watcher, presentity = d.remote_uri, d.local_uri
        return SubscriptionView(
            sub_id=sub.id,
            role=sub.role,
            state=sub.state.value,
            watcher=watcher,
            presentity=presentity,
            event=sub.event,
            event_id=sub.event_id,
            expires=sub.expires,
            expires_at=sub.expires_at,
            call_id=d.call_id,
            local_tag=d.local_tag,
            remote_tag=d.remote_tag,
            request_in_flight=sub.tx is not None,
            answer_pending=sub.pending is not None,
        )

    def _notifier(self, sub_id: str) -> _Sub | None:
        sub = self._subs.get(sub_id)
        if sub is not None and type(sub.state) is not NotifierState:
            raise LocalSipError(f"{sub_id} is a subscriber subscription")
        return sub

    def _contact(self, transport: str) -> str:
        value = self._contact_of(transport)
        try:
            return str(parse_name_addr(value))
        except RemoteSipError as exc:
            raise LocalSipError(f"bad Contact {value!r}: {exc.msg}") from exc

    # -- internals: timers ---------------------------------------------------------------

    @staticmethod
    def _expiry_deadline(sub: _Sub) -> float | None:
        if sub.expires_at is None or type(sub.state) is NotifierState:
            return sub.expires_at
        return sub.expires_at + EXPIRY_GRACE

    def _schedule(self, sub: _Sub) -> None:
        deadline: float | None = None
        expiry = self._expiry_deadline(sub)
        for when in (sub.answer_at, sub.timer_n_at, expiry, sub.refresh_at):
            if when is not None and (deadline is None or when < deadline):
                deadline = when
        if deadline is None or (sub.slot >= 0 and deadline >= sub.scheduled):
            # The armed entry fires no later than needed; ``handle_timer`` then runs what
            # is due and arms the next deadline. A refresh moves deadlines later, so this
            # moves no entry at each refresh.
            return
        self._heap.arm(sub, deadline)

    def _fire(self, sub: _Sub, now: float) -> None:
        """Run every deadline of ``sub`` that has passed, earliest meaning first."""
        if sub.answer_at is not None and sub.answer_at <= now:
            sub.answer_at = None
            self._not_step(sub, _NI.TIMER_ANSWER, now, _NO_ARGS)
            if self._subs.get(sub.id) is not sub:
                return
        if sub.timer_n_at is not None and sub.timer_n_at <= now:
            sub.timer_n_at = None
            self._sub_step(sub, _SI.TIMER_N, now, _NO_ARGS)
            if self._subs.get(sub.id) is not sub:
                return
        expiry = self._expiry_deadline(sub)
        if expiry is not None and expiry <= now:
            sub.expires_at = None
            if sub.role is Role.SUBSCRIBER:
                self._sub_step(sub, _SI.TIMER_EXPIRES, now, _NO_ARGS)
            else:
                self._not_step(sub, _NI.TIMER_EXPIRES, now, _NO_ARGS)
            if self._subs.get(sub.id) is not sub:
                return
        if sub.refresh_at is not None and sub.refresh_at <= now:
            sub.refresh_at = None
            self._sub_step(sub, _SI.TIMER_REFRESH, now, _NO_ARGS)

    def _arm_subscriber(
        self, sub: _Sub, now: float, period: float, *, from_restore: bool = False
    ) -> None:
        """Expiry and refresh deadlines for a granted ``period`` (seconds from now)."""
        if sub.fetch:
            return
        if period <= 0:
            # The notifier granted nothing: a "terminated" NOTIFY is on its way
            # (RFC 6665 §3.1.1); wait for it as long as for a first NOTIFY.
            sub.expires_at = now + self._timer_n
            sub.refresh_at = None
            return
        sub.expires_at = now + period
        # The lead is a share of the granted period, not of what is left, so that a
        # NOTIFY's ";expires=" (the seconds left) does not push the refresh later.
        base = sub.expires if sub.expires > 0 else period
        lead = max(base * self._cfg.refresh_margin, MIN_REFRESH_LEAD)
        refresh_at = now + period - lead
        if refresh_at <= now:
            refresh_at = now if from_restore else now + period / 2
        sub.refresh_at = refresh_at

    # -- internals: subscriber -----------------------------------------------------------

    def _new_subscription(
        self,
        *,
        request_uri: str,
        from_uri: str,
        to_uri: str,
        destination: TransportAddress,
        now: float,
        event: str,
        accept: tuple[str, ...],
        expires: int,
        auto_refresh: bool,
        headers: tuple[tuple[str, str], ...],
        fetch: bool,
    ) -> str:
        self._last_now = now
        if len(self._subs) >= self._cfg.max_subscriptions:
            raise LocalSipError("too many subscriptions", 503, "Service Unavailable")
        try:
            event_type, event_id = parse_event(event)
            # The caller's own strings when they are already canonical: its records and
            # this dialog then share one object each.
            local_uri = _same_text(str(parse_name_addr(from_uri).uri), from_uri)
            remote_uri = _same_text(str(parse_name_addr(to_uri).uri), to_uri)
            parse_any_uri(request_uri)
        except RemoteSipError as exc:
            raise LocalSipError(f"bad subscribe argument: {exc.msg}") from exc
        wanted = _check_expires(expires)
        _check_extra(headers, _SUBSCRIBE_OWN)
        for media in accept:
            if "," in media or "\r" in media or "\n" in media:
                raise LocalSipError(f"bad Accept entry {media!r}")
        dialog = Dialog.uac(
            call_id=self._ids.call_id(),
            local_tag=self._ids.tag(),
            local_uri=local_uri,
            remote_uri=remote_uri,
            request_uri=request_uri,
            destination=destination,
        )
        event_type = self._supported.get(event_type, event_type)
        sub = _Sub(
            self._id_for(dialog), Role.SUBSCRIBER, _SS.NOTIFY_WAIT, dialog, event_type, event_id
        )
        sub.wanted = wanted
        sub.auto_refresh = auto_refresh and not fetch
        sub.fetch = fetch
        sub.accept = self._shared(tuple(accept))
        sub.headers = tuple(headers)
        self._register(sub)
        try:
            self._send_subscribe(sub, now, _Kind.INITIAL, wanted, tu=True)
        except LocalSipError:
            self._remove(sub, now)
            raise
        sub.timer_n_at = now + self._timer_n  # RFC 6665 §4.1.2.4
        self._schedule(sub)
        return sub.id

    def _send_subscribe(
        self,
        sub: _Sub,
        now: float,
        kind: _Kind,
        expires: int,
        *,
        tu: bool,
        retry: bool = False,
    ) -> bool:
        """Send a SUBSCRIBE of ``kind``; True if sent. A runtime call (``tu``) raises
        when the endpoint refuses; an internal refresh reports a transient failure.

        A SUBSCRIBE in flight before is not forgotten: its answer, when it comes, is
        recognised as superseded and ignored."""
        dialog = sub.dialog
        hop = dialog.next_hop()
        fields: list[tuple[str, str]] = [("Event", sub.event_value), ("Expires", str(expires))]
        if sub.accept:
            fields.append(("Accept", ", ".join(sub.accept)))
        fields.append(("Allow-Events", self._allow_events))  # RFC 6665 §4.4.4
        if dialog.confirmed:
            # A preloaded Route only serves requests outside the dialog (§12.2.1.1).
            fields += [(k, v) for k, v in sub.headers if k.lower() != "route"]
        else:
            fields += sub.headers
        try:
            request = dialog.new_request(
                "SUBSCRIBE", contact=self._contact(hop.transport), headers=fields
            )
            key = self._ep.send_request(request, hop, now)
        except LocalSipError:
            if tu:
                raise
            if kind is _Kind.REFRESH:
                self._events.append(SubscribeFailed(sub.id, 503, None, True, False))
            return False
        sub.tx = key
        sub.kind = kind
        sub.retried_423 = retry
        self._txs[key] = sub
        return True

    def _on_subscribe_outcome(
        self, sub: _Sub, request: Request, response: Response | None, status: int, now: float
    ) -> None:
        """The final outcome of the SUBSCRIBE in flight (``response`` None: timeout or
        transport failure, ``status`` 408/503)."""
        kind = sub.kind
        sub.tx = None
        if 200 <= status < 300 and response is not None:
            # RFC 6665 §8.3.1: a 202 is treated as a 200.
            dialog = sub.dialog
            try:
                if not dialog.confirmed:
                    dialog.confirm_by_response(response)  # RFC 3261 §12.1.2
                    dialog.remote_target = sys.intern(dialog.remote_target)
                    self._confirmed(sub)
                elif _tag_of(response, "To") == dialog.remote_tag:
                    dialog.refresh_target(response)  # §12.2.1.2
                    dialog.remote_target = sys.intern(dialog.remote_target)
            except RemoteSipError:
                pass  # a NOTIFY can still confirm the dialog; Timer N bounds the wait
            try:
                granted = _expires_header(response)
            except RemoteSipError:
                granted = None
            if granted is None:  # §3.1.1: the 2xx MUST carry Expires; assume as asked
                granted = 0 if kind is _Kind.UNSUBSCRIBE else sub.wanted
            if kind is not _Kind.UNSUBSCRIBE and sub.state is not _SS.TERMINATING:
                sub.expires = min(granted, sub.wanted) if sub.wanted else granted
                self._arm_subscriber(sub, now, sub.expires)
            self._sub_step(sub, _SI.RESP_2XX, now, _Args(kind=kind))
            self._send_deferred_unsubscribe(sub, now)
            return
        retry_after = _retry_after(response) if response is not None else None
        if status == 423 and response is not None and not sub.retried_423:
            try:
                minimum = parse_delta_seconds(response.headers.get("Min-Expires") or "")
            except RemoteSipError:
                minimum = None
            if minimum is not None and minimum > sub.wanted and kind is not _Kind.UNSUBSCRIBE:
                sub.wanted = min(minimum, _MAX_DELTA)
                if self._send_subscribe(sub, now, kind, sub.wanted, tu=False, retry=True):
                    return
        if kind is _Kind.INITIAL:
            inp = _SI.RESP_INITIAL_FAILURE
        elif kind is _Kind.UNSUBSCRIBE or status in ENDING_STATUSES:
            inp = _SI.RESP_REFRESH_ENDING
        else:
            inp = _SI.RESP_REFRESH_TRANSIENT
        args = _Args(status=status, retry_after=retry_after, kind=kind)
        self._sub_step(sub, inp, now, args)

    def _send_deferred_unsubscribe(self, sub: _Sub, now: float) -> None:
        """``unsubscribe()`` came before the dialog was known; now it is (RFC 6665
        §4.1.2.3: the unsubscribe is a SUBSCRIBE in the dialog)."""
        if (
            self._subs.get(sub.id) is sub
            and sub.state is _SS.TERMINATING
            and sub.unsub_deferred
            and sub.dialog.confirmed
        ):
            sub.unsub_deferred = False
            self._send_subscribe(sub, now, _Kind.UNSUBSCRIBE, 0, tu=False)

    def _on_final(
        self,
        sub: _Sub,
        key: str,
        request: Request,
        response: Response | None,
        now: float,
        status: int | None = None,
    ) -> None:
        code = response.status if response is not None else (status or 408)
        if request.method == "SUBSCRIBE":
            if sub.tx != key:
                return  # an older SUBSCRIBE of this subscription: superseded
            self._on_subscribe_outcome(sub, request, response, code, now)
        elif request.method == "NOTIFY":
            if 200 <= code < 300:
                inp = _NI.NOTIFY_2XX
            elif response is None and code == 408:
                inp = _NI.NOTIFY_TIMER_F
            elif code in ENDING_STATUSES:
                inp = _NI.NOTIFY_ENDING
            else:
                inp = _NI.NOTIFY_OTHER_FAILURE
            self._not_step(sub, inp, now, _Args(status=code))
        if self._subs.get(sub.id) is sub:
            self._schedule(sub)

    def _on_notify(self, event: RequestReceived, now: float) -> None:
        request = event.request
        headers = request.headers
        try:
            call_id = headers.get("Call-ID") or ""
            to_tag = _tag_of(request, "To")
            from_tag = _tag_of(request, "From")
            sub: _Sub | None = None
            if to_tag is not None and from_tag is not None:
                sub = self._by_dialog(call_id, to_tag, from_tag)
                if sub is None:
                    early = self._early.get((call_id, to_tag))
                    if early is not None and not early.dialog.confirmed:
                        sub = early
            if sub is None or sub.role is not Role.SUBSCRIBER:
                # RFC 6665 §4.1.3; a second fork's NOTIFY also lands here (RFC 3856 §6.9).
                raise _Refusal(481, "Subscription does not exist")
            event_value = headers.get("Event")
            if event_value is None:
                raise _Refusal(400, "Missing Event header")
            if parse_event(event_value) != (sub.event, sub.event_id):
                raise _Refusal(481, "Subscription does not exist")  # §4.4.1: Event matches too
            state_value = headers.get("Subscription-State")
            if state_value is None:
                raise _Refusal(400, "Missing Subscription-State")
            state, expires, reason, retry_after = parse_subscription_state(state_value)
            dialog = sub.dialog
            if not dialog.confirmed:
                # RFC 6665 §4.1.2.4: the NOTIFY overtook the 2xx and creates the dialog.
                dialog.confirm_by_request(request)
                dialog.remote_target = sys.intern(dialog.remote_target)
                self._confirmed(sub)
                dialog.accept_remote_cseq(request)
            else:
                dialog.accept_remote_cseq(request)  # RFC 3261 §12.2.2
                dialog.refresh_target(request)  # NOTIFY is a target refresh request
                # A presence server's Contact is the remote target of many subscriptions.
                dialog.remote_target = sys.intern(dialog.remote_target)
        except _Refusal as ref:
            self._reply(event, ref.status, ref.reason, ref.headers, now=now)
            return
        except RemoteSipError as exc:
            self._reply_error(event, exc, now)
            return
        self._reply(event, 200, now=now)  # never 202 (RFC 6665 §8.3.1)
        was = sub.state
        if was is _SS.NOTIFY_WAIT:
            sub.timer_n_at = None  # Timer N is satisfied by any NOTIFY
        notified = NotifyReceived(
            sub_id=sub.id,
            state=state,
            expires=expires,
            reason=reason,
            retry_after=retry_after,
            body=request.body,
            content_type=headers.get("Content-Type"),
            content_language=headers.get("Content-Language"),
            request=request,
        )
        if state == "terminated":
            self._events.append(notified)
            self._sub_step(sub, _SI.NOTIFY_TERMINATED, now, _Args(reason=reason))
            return
        # An extension substate is treated as "pending": nothing is assumed [ours].
        inp = _SI.NOTIFY_ACTIVE if state == "active" else _SI.NOTIFY_PENDING
        if expires is not None and was is not _SS.TERMINATING:
            # RFC 6665 §4.1.3: ";expires=" is authoritative; adjust the refresh.
            if not sub.expires:
                sub.expires = expires
            self._arm_subscriber(sub, now, expires)
        self._sub_step(sub, inp, now, _Args(granted=expires if expires is not None else -1))
        if was is not _SS.TERMINATING:
            self._events.append(notified)
        self._send_deferred_unsubscribe(sub, now)
        if self._subs.get(sub.id) is sub:
            self._schedule(sub)

    def _sub_step(self, sub: _Sub, inp: SubscriberInput, now: float, args: _Args) -> None:
        state = sub.state
        assert isinstance(state, SubscriberState)
        row = SUBSCRIBER_TABLE[state].get(inp)
        if row is None:
            return  # absorbed (e.g. Timer N after the first NOTIFY)
        nxt, action = row
        sub.state = nxt
        try:
            self._sub_action(sub, action, now, args)
        finally:
            if nxt is _SS.TERMINATED:
                self._remove(sub, now)
            elif self._subs.get(sub.id) is sub:
                self._schedule(sub)

    def _sub_action(self, sub: _Sub, action: SubscriberAction, now: float, args: _Args) -> None:
        sid = sub.id
        if action is _SA.NONE:
            return
        if action is _SA.REPORT_ACTIVE:
            self._events.append(
                SubscriptionActive(sid, args.granted if args.granted >= 0 else None)
            )
        elif action is _SA.REPORT_PENDING:
            self._events.append(SubscriptionPending(sid))
        elif action is _SA.REPORT_TERMINATED:
            self._events.append(SubscriptionTerminated(sid, Role.SUBSCRIBER, args.reason, None))
        elif action is _SA.REPORT_FAILED_OVER or action is _SA.REPORT_FAILED_KEPT:
            over = action is _SA.REPORT_FAILED_OVER
            self._events.append(
                SubscribeFailed(
                    sid,
                    args.status or 500,
                    args.retry_after,
                    args.kind is not _Kind.INITIAL,
                    over,
                )
            )
            if not over and sub.auto_refresh and sub.expires_at is not None:
                # §4.1.2.2: still valid until it expires; try once more half-way there.
                retry = now + max(float(args.retry_after or 0), (sub.expires_at - now) / 2)
                if retry < sub.expires_at - 1.0:
                    sub.refresh_at = retry
        elif action is _SA.REFRESH:
            if not sub.auto_refresh:
                self._events.append(RefreshDue(sid))
            elif sub.tx is None and sub.dialog.confirmed:
                self._send_subscribe(sub, now, _Kind.REFRESH, sub.wanted, tu=False)
        elif action is _SA.SEND_UNSUBSCRIBE:
            sub.refresh_at = None
            sub.expires_at = None
            sub.timer_n_at = now + self._timer_n  # how long the final NOTIFY may take
            if sub.dialog.confirmed:
                self._send_subscribe(sub, now, _Kind.UNSUBSCRIBE, 0, tu=True)
            else:
                sub.unsub_deferred = True  # sent when a 2xx or NOTIFY names the dialog
        elif action is _SA.REPORT_NO_NOTIFY:
            self._events.append(
                SubscriptionTerminated(sid, Role.SUBSCRIBER, REASON_NO_NOTIFY, None)
            )
        elif action is _SA.REPORT_EXPIRED:
            self._events.append(SubscriptionTerminated(sid, Role.SUBSCRIBER, REASON_EXPIRED, None))
        else:  # pragma: no cover - every action is handled above
            raise AssertionError(action)

    # -- internals: notifier -------------------------------------------------------------

    def _on_subscribe(self, event: RequestReceived, now: float) -> None:
        request = event.request
        try:
            event_value = request.headers.get("Event")
            if event_value is None:
                raise _Refusal(400, "Missing Event header")
            event_type, event_id = parse_event(event_value)
            known = self._supported.get(event_type)
            if known is None:
                # RFC 6665 §4.2.1.1 (489 Bad Event) with Allow-Events (§4.4.4).
                raise _Refusal(489, "Bad Event", (("Allow-Events", self._allow_events),))
            event_type = known  # one shared string for every subscription
            expires = _expires_header(request)
            if expires is None:
                expires = self._cfg.default_expires  # RFC 3856 §6.4 (package default)
            to_tag = _tag_of(request, "To")
            if to_tag is not None:
                self._in_dialog_subscribe(event, now, event_type, event_id, expires, to_tag)
            else:
                self._new_subscribe(event, now, event_type, event_id, expires)
        except _Refusal as ref:
            self._reply(event, ref.status, ref.reason, ref.headers, now=now)
        except RemoteSipError as exc:
            self._reply_error(event, exc, now)

    def _too_brief(self, expires: int) -> _Refusal | None:
        """RFC 6665 §4.2.1.1: 423 only for 0 < Expires < 3600 below the minimum."""
        if 0 < expires < self._cfg.min_expires and expires < _ONE_HOUR:
            return _Refusal(
                423, "Interval Too Brief", (("Min-Expires", str(self._cfg.min_expires)),)
            )
        return None

    def _new_subscribe(
        self,
        event: RequestReceived,
        now: float,
        event_type: str,
        event_id: str | None,
        expires: int,
    ) -> None:
        refusal = self._too_brief(expires)
        if refusal is not None:
            raise refusal
        if len(self._subs) >= self._cfg.max_subscriptions:
            raise _Refusal(
                503,
                "Service Unavailable",
                (("Retry-After", str(self._cfg.overload_retry_after)),),
            )
        dialog = Dialog.uas(event.request, self._ids.tag(), event.source)  # RFC 3261 §12.1.1
        dialog.local_uri = sys.intern(dialog.local_uri)  # the presentity: shared by watchers
        granted = min(expires, self._cfg.max_expires)  # may shorten, never lengthen (§4.2.1.1)
        sub = _Sub(
            self._id_for(dialog), Role.NOTIFIER, _NS.AWAITING_ANSWER, dialog, event_type, event_id
        )
        sub.fetch = expires == 0  # RFC 6665 §4.4.3, RFC 8048 §7.2
        sub.pending = event
        sub.kind = _Kind.INITIAL
        sub.wanted = granted
        sub.answer_at = now + self._cfg.answer_timeout
        self._register(sub)
        self._events.append(
            SubscribeRequested(
                sub_id=sub.id,
                request=event.request,
                source=event.source,
                watcher=dialog.remote_uri,
                presentity=dialog.local_uri,
                event=event_type,
                expires=granted,
                refresh=False,
                fetch=sub.fetch,
            )
        )
        self._schedule(sub)

    def _in_dialog_subscribe(
        self,
        event: RequestReceived,
        now: float,
        event_type: str,
        event_id: str | None,
        expires: int,
        to_tag: str,
    ) -> None:
        request = event.request
        from_tag = _tag_of(request, "From")
        call_id = request.headers.get("Call-ID") or ""
        sub = self._by_dialog(call_id, to_tag, from_tag or "")
        if (
            sub is None
            or sub.role is not Role.NOTIFIER
            or (sub.event, sub.event_id) != (event_type, event_id)
        ):
            raise _Refusal(481, "Subscription does not exist")
        dialog = sub.dialog
        dialog.accept_remote_cseq(request)  # RFC 3261 §12.2.2 (500 when out of order)
        dialog.refresh_target(request)  # SUBSCRIBE is a target refresh request
        if expires == 0:
            inp = _NI.RECV_UNSUBSCRIBE
        else:
            refusal = self._too_brief(expires)
            if refusal is not None:
                raise refusal
            inp = _NI.RECV_REFRESH_BUSY if sub.pending is not None else _NI.RECV_REFRESH
        granted = min(expires, self._cfg.max_expires)
        self._not_step(sub, inp, now, _Args(event=event, granted=granted))

    def _not_step(self, sub: _Sub, inp: NotifierInput, now: float, args: _Args) -> None:
        state = sub.state
        assert isinstance(state, NotifierState)
        row = NOTIFIER_TABLE[state].get(inp)
        if row is None:
            if inp in _TU_INPUTS:
                raise LocalSipError(f"{inp.value} is not allowed in state {state.value}")
            return  # absorbed
        nxt, action = row
        sub.state = nxt
        try:
            self._not_action(sub, action, now, args)
        finally:
            if nxt is _NS.TERMINATED:
                self._remove(sub, now)
            elif self._subs.get(sub.id) is sub:
                self._schedule(sub)

    def _not_action(self, sub: _Sub, action: NotifierAction, now: float, args: _Args) -> None:
        sid = sub.id
        if action is _NA.NONE:
            return
        if action is _NA.ACCEPT or action is _NA.ACCEPT_AND_TERMINATE:
            self._answer_ok(sub, now, sub.wanted)
            if action is _NA.ACCEPT_AND_TERMINATE:
                self._send_notify(sub, now, "terminated", args, reason=args.reason)
            else:
                state = "active" if sub.state is _NS.ACTIVE else "pending"
                self._send_notify(sub, now, state, args)
        elif action is _NA.ACCEPT_FETCH:
            self._answer_ok(sub, now, 0)
            self._send_notify(sub, now, "terminated", args, reason="timeout")
        elif action is _NA.REJECT:
            pending = sub.pending
            sub.pending = None
            sub.answer_at = None
            assert pending is not None and args.status is not None
            self._reply(pending, args.status, args.reason, args.headers, now=now, strict=True)
        elif action is _NA.SEND_NOTIFY:
            state = "active" if sub.state is _NS.ACTIVE else "pending"
            self._send_notify(sub, now, state, args)
        elif action is _NA.SEND_FINAL_NOTIFY:
            self._send_notify(sub, now, "terminated", args, reason=args.reason or "noresource")
        elif action is _NA.ASK_RUNTIME:
            assert args.event is not None
            sub.pending = args.event
            sub.kind = _Kind.REFRESH
            sub.wanted = args.granted
            sub.answer_at = now + self._cfg.answer_timeout
            self._events.append(self._requested(sub, args.event, args.granted, refresh=True))
        elif action is _NA.REFUSE_BUSY:
            assert args.event is not None
            self._reply(
                args.event,
                500,
                "Previous Request Pending",
                (("Retry-After", str(BUSY_RETRY_AFTER)),),
                now=now,
            )
        elif action is _NA.ANSWER_UNSUBSCRIBE:
            assert args.event is not None
            if sub.pending is not None:
                superseded, sub.pending = sub.pending, None
                self._reply(superseded, 500, "Superseded", now=now)
            sub.expires_at = None
            sub.expires = 0
            sub.answer_at = now + self._cfg.answer_timeout
            self._reply_unsubscribed(sub, args.event, now)
            self._events.append(self._requested(sub, args.event, 0, refresh=True))
        elif action is _NA.REPEAT_UNSUBSCRIBED:
            assert args.event is not None
            self._reply_unsubscribed(sub, args.event, now)
        elif action is _NA.REFUSE_GONE:
            assert args.event is not None
            self._reply(args.event, 481, "Subscription does not exist", now=now)
        elif action is _NA.REPORT_NOTIFY_FAILURE:
            # RFC 6665 §4.2.2: the notifier removes the subscription.
            self._events.append(SubscriptionTerminated(sid, Role.NOTIFIER, None, args.status))
        elif action is _NA.EXPIRE or action is _NA.NO_ANSWER_UNSUBSCRIBE:
            self._send_notify(sub, now, "terminated", _NO_ARGS, reason="timeout", tu=False)
            self._events.append(SubscriptionTerminated(sid, Role.NOTIFIER, "timeout", None))
        elif action is _NA.NO_ANSWER_INITIAL or action is _NA.NO_ANSWER_REFRESH:
            pending = sub.pending
            sub.pending = None
            if pending is not None:
                self._reply(pending, 500, "Server Internal Error", now=now)
            if action is _NA.NO_ANSWER_INITIAL:
                self._events.append(
                    SubscriptionTerminated(sid, Role.NOTIFIER, REASON_NO_ANSWER, None)
                )
        else:  # pragma: no cover - every action is handled above
            raise AssertionError(action)

    def _requested(
        self, sub: _Sub, event: RequestReceived, granted: int, *, refresh: bool
    ) -> SubscribeRequested:
        return SubscribeRequested(
            sub_id=sub.id,
            request=event.request,
            source=event.source,
            watcher=sub.dialog.remote_uri,
            presentity=sub.dialog.local_uri,
            event=sub.event,
            expires=granted,
            refresh=refresh,
            fetch=False,
        )

    def _answer_ok(self, sub: _Sub, now: float, granted: int) -> None:
        """200 to the pending SUBSCRIBE (never 202, RFC 6665 §8.3.1), with Expires (§3.1.1)
        and Contact (RFC 3261 §12.1.1); the subscription then runs ``granted`` seconds."""
        pending = sub.pending
        sub.pending = None
        sub.answer_at = None
        assert pending is not None
        sub.expires = granted
        sub.expires_at = now + granted if granted > 0 else None
        self._reply(
            pending,
            200,
            None,
            (
                ("Expires", str(granted)),
                ("Contact", self._contact(pending.source.transport)),
                ("Allow-Events", self._allow_events),
            ),
            now=now,
            to_tag=sub.dialog.local_tag,
        )

    def _reply_unsubscribed(self, sub: _Sub, event: RequestReceived, now: float) -> None:
        self._reply(
            event,
            200,
            None,
            (("Expires", "0"), ("Contact", self._contact(event.source.transport))),
            now=now,
            to_tag=sub.dialog.local_tag,
        )

    def _send_notify(
        self,
        sub: _Sub,
        now: float,
        state: str,
        args: _Args,
        *,
        reason: str | None = None,
        tu: bool = True,
    ) -> None:
        """A NOTIFY in the subscription's dialog with Event and Subscription-State
        (RFC 6665 §4.2.2): active/pending with ``;expires=`` (seconds left, rounded
        down so it never lengthens the subscription), terminated with ``;reason=``."""
        if state == "terminated":
            substate = "terminated" + (f";reason={reason}" if reason else "")
        else:
            left = 0 if sub.expires_at is None else max(0, math.floor(sub.expires_at - now))
            substate = f"{state};expires={left}"
        try:
            request, hop = self._build_notify(sub, substate, args)
            key = self._ep.send_request(request, hop, now)
        except LocalSipError:
            if tu:
                raise
            return
        self._txs[key] = sub

    def _build_notify(
        self, sub: _Sub, substate: str, args: _Args
    ) -> tuple[Request, TransportAddress]:
        """The next NOTIFY of ``sub``'s dialog and where it goes: from the dialog's cached
        template when it has one (the same fields ``Dialog.new_request`` writes, in the same
        order), else by ``Dialog.new_request``, which also makes the template."""
        dialog = sub.dialog
        body = args.body or b""
        content_type = args.content_type if body else None
        tpl = self._notify_templates.get(sub.id)
        if (
            tpl is not None
            and tpl.target is dialog.remote_target
            and dialog.local_cseq < _MAX_LOCAL_CSEQ
        ):
            items: list[tuple[str, str]] = [
                *tpl.head,
                ("CSeq", f"{dialog.local_cseq + 1} NOTIFY"),
                *tpl.tail,
                ("Event", sub.event_value),
                ("Subscription-State", substate),
            ]
            fast = True
            for name, value in args.headers:
                canon = canonical_name(name)
                if canon in _TEMPLATE_RESERVED:
                    fast = False  # let make_request refuse it with the precise reason
                    break
                items.append((canon, value))
            if fast:
                if content_type is not None:
                    items.append(("Content-Type", content_type))
                dialog.local_cseq += 1
                return Request("NOTIFY", tpl.uri, Headers(tuple(items)), body), tpl.hop
        hop = dialog.next_hop()
        contact = self._contact(hop.transport)
        fields = [("Event", sub.event_value), ("Subscription-State", substate), *args.headers]
        request = dialog.new_request(
            "NOTIFY", contact=contact, headers=fields, body=body, content_type=content_type
        )
        if dialog.local_cseq > 1:
            # Only a dialog that NOTIFYs again after the one following its 2xx gets a
            # template: most subscriptions are quiet, and their memory is what counts.
            self._remember_template(sub, dialog, hop, request)
        return request, hop

    def _remember_template(
        self, sub: _Sub, dialog: Dialog, hop: TransportAddress, request: Request
    ) -> None:
        """Keep the dialog's fixed NOTIFY fields (see :class:`_NotifyTemplate`)."""
        items = request.headers.items
        # make_request's order: Max-Forwards, From, To, Call-ID, CSeq, Contact, Route...,
        # then the extra fields (Event first).
        if len(items) < 6 or items[4][0] != "CSeq" or items[5][0] != "Contact":
            return
        end = 6
        while end < len(items) and items[end][0] == "Route":
            end += 1
        cache = self._notify_templates
        if sub.id not in cache and len(cache) >= NOTIFY_TEMPLATE_CACHE:
            del cache[next(iter(cache))]
        cache[sub.id] = _NotifyTemplate(
            dialog.remote_target, hop, request.uri, items[:4], items[5:end]
        )

    # -- internals: answering ------------------------------------------------------------

    def _reply(
        self,
        event: RequestReceived,
        status: int,
        reason: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        *,
        now: float,
        to_tag: str | None = None,
        strict: bool = False,
    ) -> None:
        """Answer ``event``'s request. A request outside a dialog gets a To tag (ours
        when given, else a fresh one, RFC 3261 §8.2.6.2). ``strict``: the runtime's
        own headers, whose errors are the runtime's (LocalSipError)."""
        request = event.request
        if to_tag is None and _tag_of_safe(request, "To") is None:
            to_tag = self._ids.tag()
        try:
            response = make_response(request, status, reason, to_tag=to_tag, headers=headers)
            self._ep.send_response(response, now)
        except LocalSipError:
            if strict:
                raise

    def _reply_error(self, event: RequestReceived, exc: RemoteSipError, now: float) -> None:
        status = exc.status_hint
        reason = exc.reason_hint if (status == 400 or exc.reason_hint != "Bad Request") else None
        self._reply(event, status, reason, now=now)


# --- helpers ---------------------------------------------------------------------------


def _same_text(value: str, given: str) -> str:
    """``given`` when it equals ``value`` (so one object serves both), else ``value``."""
    return given if value == given else value


def _tag_of(message: Request | Response, header: str) -> str | None:
    """The tag of To/From; RemoteSipError 400 when the header is missing or malformed."""
    value = message.headers.get(header)
    if value is None:
        raise RemoteSipError(f"Missing {header}", 400)
    tag = parse_name_addr(value).tag
    if tag is not None and not is_token(tag):
        raise RemoteSipError(f"malformed {header} tag", 400)
    return tag


def _tag_of_safe(message: Request, header: str) -> str | None:
    try:
        return _tag_of(message, header)
    except RemoteSipError:
        return None


#: Fields the layer writes itself into a SUBSCRIBE / a NOTIFY (on top of those
#: ``make_request`` reserves); the runtime's extra headers may not repeat them.
_SUBSCRIBE_OWN = frozenset({"event", "expires", "accept", "allow-events"})
_NOTIFY_OWN = frozenset({"event", "subscription-state"})


def _check_extra(headers: Iterable[tuple[str, str]], own: frozenset[str]) -> None:
    for item in headers:
        if not (isinstance(item, tuple) and len(item) == 2):
            raise LocalSipError(f"headers must be (name, value) pairs, not {item!r}")
        name, value = item
        if not is_token(name) or "\r" in value or "\n" in value:
            raise LocalSipError(f"bad header {name!r}: {value!r}")
        if name.lower() in own:
            raise LocalSipError(f"{name} is written by the subscription layer")


def _check_body(body: bytes | None, content_type: str | None) -> None:
    if body and not content_type:
        raise LocalSipError("a body needs a Content-Type (RFC 3261 §20.15)")
    if content_type is not None and ("\r" in content_type or "\n" in content_type):
        raise LocalSipError(f"bad Content-Type {content_type!r}")


def _check_expires(expires: int) -> int:
    if not isinstance(expires, int) or isinstance(expires, bool) or not 0 <= expires <= _MAX_DELTA:
        raise LocalSipError(f"Expires must be 0..2**32-1, not {expires!r}")
    return expires


def _snap_int(snapshot: Mapping[str, object], name: str) -> int:
    value = snapshot.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_DELTA:
        raise LocalSipError(f"{name} must be an integer in 0..2**32-1")
    return value


def _remaining(snapshot: Mapping[str, object], wall: float) -> float | None:
    """Seconds left at restore time: from the wall-clock ``expires_at`` when recorded,
    else the relative ``expires_in`` (minus the time since ``saved_at``, if known)."""
    expires_at = snapshot.get("expires_at")
    if isinstance(expires_at, int | float) and not isinstance(expires_at, bool):
        if not math.isfinite(expires_at):
            raise LocalSipError("expires_at must be finite")
        return max(0.0, float(expires_at) - wall)
    expires_in = snapshot.get("expires_in")
    if expires_in is None:
        return None
    if not isinstance(expires_in, int | float) or isinstance(expires_in, bool):
        raise LocalSipError("expires_in must be a number")
    if not math.isfinite(expires_in):
        raise LocalSipError("expires_in must be finite")
    saved_at = snapshot.get("saved_at")
    elapsed = 0.0
    if isinstance(saved_at, int | float) and not isinstance(saved_at, bool):
        elapsed = max(0.0, wall - float(saved_at))
    return max(0.0, float(expires_in) - elapsed)
