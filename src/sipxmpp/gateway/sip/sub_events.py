"""Events of the RFC 6665 subscription layer, and its read-only view of a subscription.

The :class:`~.subscription.SubscriptionManager` queues these; the runtime drains them with
``next_event()``. Each is a frozen, slotted dataclass (design practice 5).

Per subscription the runtime sees exactly one *terminal* event, after which the layer
has forgotten the subscription (``get()`` returns None):

* :class:`SubscriptionTerminated`, or
* :class:`SubscribeFailed` with ``subscription_over=True``.

Two ends are the runtime's own doing and produce no event: ``reject()`` of a new
SUBSCRIBE (or of a refresh with a code that ends the subscription), and ``terminate()``.

Order within one NOTIFY (subscriber role): a NOTIFY that moves the subscription to
"active" or "pending" yields :class:`SubscriptionActive` / :class:`SubscriptionPending`
first (only on a change of state) and then :class:`NotifyReceived`; a "terminated" NOTIFY
yields :class:`NotifyReceived` (its body is the final state) and then
:class:`SubscriptionTerminated`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .address import TransportAddress
from .message import Request

__all__ = [
    "NotifyReceived",
    "RefreshDue",
    "Role",
    "SubscribeFailed",
    "SubscribeRequested",
    "SubscriptionActive",
    "SubscriptionEvent",
    "SubscriptionPending",
    "SubscriptionTerminated",
    "SubscriptionView",
    "REASON_EXPIRED",
    "REASON_NO_ANSWER",
    "REASON_NO_NOTIFY",
]

#: ``SubscriptionTerminated.reason`` when no NOTIFY came: Timer N fired after a new
#: SUBSCRIBE (RFC 6665 §4.1.2.4), or the final NOTIFY never came after ``unsubscribe()``.
#: (The RFC reasons, such as "timeout" or "rejected", are reserved for what a NOTIFY says.)
REASON_NO_NOTIFY = "no-notify"
#: ``SubscriptionTerminated.reason`` when a subscription we hold (subscriber role) ran out
#: without a successful refresh ("Re-subscription times out", RFC 6665 §4.1.2 figure).
REASON_EXPIRED = "expired"
#: ``SubscriptionTerminated.reason`` when the runtime did not ``accept``/``reject`` a new
#: SUBSCRIBE in time (the layer answered 500 for it).
REASON_NO_ANSWER = "no-answer"


class Role(enum.StrEnum):
    """Which side of the subscription the gateway is on."""

    #: We subscribed (on behalf of an XMPP user, RFC 8048 §5.2); we receive NOTIFYs.
    SUBSCRIBER = "subscriber"
    #: A SIP watcher subscribed to us (RFC 8048 §5.3); we send NOTIFYs.
    NOTIFIER = "notifier"


@dataclass(frozen=True, slots=True)
class SubscribeRequested:
    """Notifier role: a SUBSCRIBE the layer validated; the runtime must call ``accept`` or
    ``reject`` promptly (RFC 6665 §4.2.1.1: "MUST NOT wait for a user response").

    * ``refresh=False``: a new subscription (``fetch=True`` when it came outside a
      dialog with ``Expires: 0``, a poll: ``accept`` answers 200 and sends one
      "terminated;reason=timeout" NOTIFY with the state, RFC 6665 §4.4.3).
    * ``refresh=True, expires>0``: the watcher refreshed; ``accept`` sends 200 and the
      NOTIFY that must follow every 2xx (§4.2.1.2).
    * ``refresh=True, expires=0``: the watcher unsubscribed; the layer has already
      answered 200, and the runtime calls ``terminate(..., reason="timeout")`` with the
      final state (RFC 8048 §5.3.3, RFC 6665 §4.2.1.4).
    """

    sub_id: str
    request: Request
    source: TransportAddress
    #: The watcher: the From URI of the SUBSCRIBE.
    watcher: str
    #: The resource watched: the To URI of the SUBSCRIBE.
    presentity: str
    #: The event package (event-type of the Event header), e.g. "presence".
    event: str
    #: The duration the layer grants (the request's Expires, or the default, capped).
    expires: int
    refresh: bool
    fetch: bool


@dataclass(frozen=True, slots=True)
class NotifyReceived:
    """Subscriber role: a NOTIFY of one of our subscriptions (the layer answered it 200)."""

    sub_id: str
    #: The Subscription-State value, lower-cased: "active", "pending", "terminated" or
    #: an extension value (which the layer's state machine treats as "pending").
    state: str
    #: ``;expires=`` of Subscription-State, if any.
    expires: int | None
    #: ``;reason=`` (terminated), e.g. "rejected", "timeout", "noresource".
    reason: str | None
    #: ``;retry-after=``, if any.
    retry_after: int | None
    body: bytes
    content_type: str | None
    content_language: str | None
    request: Request


@dataclass(frozen=True, slots=True)
class SubscriptionActive:
    """Subscriber role: a NOTIFY moved the subscription to "active"."""

    sub_id: str
    #: Seconds left, from the NOTIFY's ``;expires=`` (None if it had none).
    expires: int | None


@dataclass(frozen=True, slots=True)
class SubscriptionPending:
    """Subscriber role: a NOTIFY moved the subscription to "pending"."""

    sub_id: str


@dataclass(frozen=True, slots=True)
class SubscribeFailed:
    """Subscriber role: a SUBSCRIBE we sent failed (a final non-2xx response, or 408 for
    a transaction timeout, 503 for a transport failure, RFC 3261 §8.1.3.1).

    RFC 6665 §4.1.2.2: a refresh failing with 404, 405, 410, 416, 480-485, 489, 501 or
    604 ends the subscription; any other failure leaves it valid until it expires.
    A new SUBSCRIBE that fails creates nothing (§4.1.2.1), so ``subscription_over`` is
    then always True; so is it for a failed unsubscribe.
    """

    sub_id: str
    status: int
    #: The Retry-After of the response, in seconds, if any.
    retry_after: int | None
    #: False for the dialog-creating SUBSCRIBE, True for a refresh or an unsubscribe.
    refresh: bool
    subscription_over: bool


@dataclass(frozen=True, slots=True)
class SubscriptionTerminated:
    """Either role: the subscription is over and forgotten.

    Subscriber: a "terminated" NOTIFY (``reason`` from it), Timer N
    (:data:`REASON_NO_NOTIFY`), or expiry without a successful refresh
    (:data:`REASON_EXPIRED`). Notifier: a NOTIFY failed (RFC 6665 §4.2.2; ``status`` is
    the response code, 408 for Timer F, ``reason`` None), the subscription expired
    without refresh (``reason="timeout"``; the layer sent the final NOTIFY), or the
    runtime did not answer in time (:data:`REASON_NO_ANSWER`, or "timeout" after an
    unsubscribe).
    """

    sub_id: str
    role: Role
    reason: str | None
    status: int | None


@dataclass(frozen=True, slots=True)
class RefreshDue:
    """Subscriber role, ``auto_refresh=False`` only: time to call ``refresh`` (or let the
    subscription run out)."""

    sub_id: str


SubscriptionEvent = (
    SubscribeRequested
    | NotifyReceived
    | SubscriptionActive
    | SubscriptionPending
    | SubscribeFailed
    | SubscriptionTerminated
    | RefreshDue
)


@dataclass(frozen=True, slots=True)
class SubscriptionView:
    """A read-only snapshot of one subscription (``SubscriptionManager.get``)."""

    sub_id: str
    role: Role
    #: The state machine's state: subscriber "notify_wait", "pending", "active",
    #: "terminating"; notifier "awaiting_answer", "pending", "active", "unsubscribed".
    state: str
    watcher: str
    presentity: str
    event: str
    #: The Event header's ``id`` parameter, if any.
    event_id: str | None
    #: The duration last granted, in seconds (0 before any 2xx).
    expires: int
    #: When the subscription runs out (the layer's monotonic clock), if known.
    expires_at: float | None
    call_id: str
    local_tag: str
    #: None while the dialog is not confirmed (subscriber, before the 2xx or a NOTIFY).
    remote_tag: str | None
    #: A SUBSCRIBE we sent is awaiting its final response (subscriber role).
    request_in_flight: bool
    #: A received SUBSCRIBE awaits the runtime's ``accept``/``reject`` (notifier role).
    answer_pending: bool
