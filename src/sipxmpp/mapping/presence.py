"""SIP presence (SUBSCRIBE/NOTIFY + PIDF) <-> XMPP presence: RFC 8048 as pure functions.

Theory of operation
-------------------
RFC 8048 (which obsoletes RFC 7248) maps two different things:

* **notifications** (§6): an XMPP ``<presence/>`` with no type or ``type='unavailable'``
  becomes a PIDF document in a NOTIFY (Table 1), and a PIDF document becomes XMPP
  presence (Table 2). :func:`xmpp_to_pidf` and :func:`pidf_to_xmpp` do that, one PIDF
  tuple per XMPP resource (the tuple id is the resource with the RECOMMENDED ``ID-``
  prefix, §6.2 note 2);
* **subscriptions** (§5, §7): a long-lived XMPP *presence authorization* against a
  short-lived, refreshed SIP *notification dialog*. The functions of the second half of
  this module decide, for each event, what the other side must see: which SUBSCRIBE to
  send (:func:`outbound_action`, :func:`subscribe_request`), what a received NOTIFY or
  a SUBSCRIBE failure means for the XMPP user (:func:`on_notify`,
  :func:`on_subscribe_failure`), and how the gateway answers a SIP watcher
  (:func:`plan_inbound_subscribe`, :func:`notify_for_authorization`). The dialogs
  themselves live in the SIP core; the runtime applies these decisions.

Rich presence (our documented policy, spec §3.4, beyond RFC 8048 which leaves it out of
scope in §6.1): XMPP ``<show/>`` is carried both as ``<show xmlns='jabber:client'>`` in
the tuple status (RFC 8048 §6.2 note on ``<show/>``) and as RPID activities of the person
(RFC 4480 §3.2), away/xa -> ``away``, dnd -> ``busy``; on the way back the embedded
``<show/>`` wins (so XMPP -> PIDF -> XMPP is lossless), and otherwise
:data:`ACTIVITY_TO_SHOW` turns activities into a show. ``basic`` stays ``open`` for away
and dnd: only ``unavailable`` is ``closed`` (§6.2 note 4).

Rate limiting (RFC 3856 §6.10: at most one NOTIFY per 5 s per presentity and watcher) is a
pure state machine, :class:`NotifyThrottle`: changes arriving too early are *merged* into
one pending state (:func:`merge_pending_presence`) and sent when the interval ends,
never dropped.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Final, Generic, TypeVar

from sipxmpp.mapping.addresses import JID_PART_MAX_BYTES
from sipxmpp.mapping.model import (
    LocalMappingError,
    MappingRefused,
    StanzaError,
    StanzaRefused,
)
from sipxmpp.mapping.pidf import (
    PIDF_MIME_TYPE,
    Activities,
    Activity,
    Basic,
    Contact,
    Note,
    Person,
    PidfDocument,
    PresenceTuple,
    Show,
    is_language_tag,
    is_xml_text,
)

__all__ = [
    "PRESENCE_EVENT",
    "STATUS_CACHE_SIZE",
    "DEFAULT_SUBSCRIPTION_EXPIRES",
    "MAX_SUBSCRIPTION_EXPIRES",
    "REFRESH_MARGIN",
    "RETRY_BACKOFF",
    "MIN_NOTIFY_INTERVAL",
    "TUPLE_ID_PREFIX",
    "GATEWAY_PERSON_ID",
    "SUBSCRIPTION_ENDING_CODES",
    "AUTHORIZATION_CANCELLING_CODES",
    "SHOW_TO_ACTIVITIES",
    "ACTIVITY_TO_SHOW",
    "LocalPresenceError",
    "PresenceType",
    "XmppStatus",
    "XmppPresence",
    "RichPresencePolicy",
    "DEFAULT_POLICY",
    "SipPresenceState",
    "produces_notify",
    "tuple_id_for_resource",
    "resource_for_tuple_id",
    "priority_to_qvalue",
    "qvalue_to_priority",
    "show_to_activities",
    "activities_to_show",
    "availability_rank",
    "most_available",
    "xmpp_to_pidf",
    "pidf_to_xmpp",
    "vanished_resources",
    "SubState",
    "TerminationReason",
    "SubscriptionStateValue",
    "OutboundAction",
    "SubscribeRequest",
    "outbound_action",
    "subscribe_request",
    "unsubscribed_after_unsubscribe",
    "Resubscribe",
    "NotifyOutcome",
    "on_notify",
    "is_subscribe_success",
    "SubscribeFailureOutcome",
    "on_subscribe_failure",
    "notify_failure_removes_subscription",
    "refresh_deadline",
    "InboundKind",
    "Authorization",
    "NotifyBody",
    "NotifierPlan",
    "classify_inbound_subscribe",
    "granted_expires",
    "interval_too_brief",
    "plan_inbound_subscribe",
    "notify_for_authorization",
    "pidf_allowed",
    "merge_pending_presence",
    "NotifyThrottle",
    "ThrottleStep",
]

#: RFC 3856 §6.1: the event package name.
PRESENCE_EVENT: Final = "presence"
#: RFC 3856 §6.4 / RFC 8048 §5.3.1: the default (and the X2S gateway's requested) duration.
DEFAULT_SUBSCRIPTION_EXPIRES: Final = 3600
#: Longest duration the gateway grants to a SIP watcher (RFC 6665 §4.2.1.1 lets the notifier
#: shorten it). One day: long enough that refreshes cost nothing, short enough that a
#: watcher that vanished without unsubscribing stops costing memory the same day.
MAX_SUBSCRIPTION_EXPIRES: Final = 86_400
#: How long before expiry the X2S gateway refreshes (RFC 8048 §5.2.2 "early enough"): 64*T1
#: = 32 s is the lifetime of a non-INVITE transaction (RFC 3261 §17.1.2.2, Timer F), so the
#: refresh completes, or fails, before the dialog expires.
REFRESH_MARGIN: Final = 32.0
#: Delay before re-establishing a subscription that the peer ended without saying when to
#: retry (RFC 6665 §4.1.3 leaves it to the subscriber). Five minutes avoids hammering a
#: peer that just refused, while keeping an XMPP user's contact visible the same session.
RETRY_BACKOFF: Final = 300.0
#: RFC 3856 §6.10: "SHOULD NOT generate notifications for a single presentity at a rate of
#: more than once every five seconds".
MIN_NOTIFY_INTERVAL: Final = 5.0
#: RFC 8048 §6.2 note 2: xs:ID cannot start with a digit, hence the RECOMMENDED prefix.
TUPLE_ID_PREFIX: Final = "ID-"
#: Id of the ``<dm:person>`` the gateway writes; never starts with ``ID-``, so it can never
#: collide with a tuple id.
GATEWAY_PERSON_ID: Final = "person"

#: RFC 6665 §4.1.2.2: a refresh failing with these ends the subscription (and §4.2.2: a
#: NOTIFY failing with these makes the notifier remove it).
SUBSCRIPTION_ENDING_CODES: Final = frozenset(
    {404, 405, 410, 416, 480, 481, 482, 483, 484, 485, 489, 501, 604}
)
#: RFC 8048 §5.2.2: a (re)SUBSCRIBE answered with these cancels the XMPP authorization.
AUTHORIZATION_CANCELLING_CODES: Final = frozenset({403, 489, 603})


class LocalPresenceError(LocalMappingError):
    """A presence value or decision input that the standards do not allow (our bug)."""


# --------------------------------------------------------------------------------------
# The XMPP side.


class PresenceType(enum.Enum):
    """The ``type`` of an XMPP presence stanza (RFC 6121 §4.7.1); AVAILABLE = no attribute."""

    AVAILABLE = None
    UNAVAILABLE = "unavailable"
    SUBSCRIBE = "subscribe"
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBE = "unsubscribe"
    UNSUBSCRIBED = "unsubscribed"
    PROBE = "probe"
    ERROR = "error"

    @classmethod
    def from_attribute(cls, value: str | None) -> PresenceType:
        """The type for a stanza's ``type`` attribute; an unknown value is a bad-request."""
        member = _TYPE_BY_ATTRIBUTE.get(value)
        if member is not None:
            return member
        raise StanzaRefused(
            StanzaError("bad-request", "modify", f"unknown presence type {value!r}")
        )


#: ``type`` attribute -> PresenceType (a dict lookup per received stanza, not a scan).
_TYPE_BY_ATTRIBUTE: Final[dict[str | None, PresenceType]] = {m.value: m for m in PresenceType}

#: ``<show/>`` text -> Show.
_SHOW_BY_TEXT: Final[dict[str, Show]] = {m.value: m for m in Show}

#: Distinct statuses kept for reuse (see :func:`_status`). An XMPP server sends one change
#: to each contact separately (RFC 6121 §4.4.2), so the 1,000 stanzas of one change carry
#: the same ``<status/>``; one object serves them all (and the views that keep them). An
#: entry is one short text; the oldest is evicted first.
STATUS_CACHE_SIZE: Final = 1024

_status_cache: dict[tuple[str, str | None], XmppStatus] = {}


@dataclass(frozen=True, slots=True)
class XmppStatus:
    """One ``<status/>`` (RFC 6121 §4.7.2.2), with its own ``xml:lang`` if it has one."""

    text: str
    lang: str | None = None

    def __post_init__(self) -> None:
        if not is_xml_text(self.text):
            raise LocalPresenceError(f"status text has a character XML cannot carry: {self.text!r}")
        if self.lang is not None and not is_language_tag(self.lang):
            raise LocalPresenceError(f"status xml:lang is not a language tag: {self.lang!r}")


@dataclass(frozen=True, slots=True)
class XmppPresence:
    """An XMPP ``<presence/>`` stanza, reduced to what RFC 8048 maps."""

    from_jid: str
    to_jid: str
    type: PresenceType = PresenceType.AVAILABLE
    show: Show | None = None
    statuses: tuple[XmppStatus, ...] = ()
    #: RFC 6121 §4.7.2.3: -128..127, default 0.
    priority: int = 0
    #: The stanza's ``xml:lang`` (RFC 6120 §8.1.5) <-> Content-Language (RFC 8048 Table 1).
    lang: str | None = None
    #: Not mapped (RFC 8048 removed 7248's id <-> CSeq mapping); kept for the edges.
    id: str | None = None

    def __post_init__(self) -> None:
        if not -128 <= self.priority <= 127:
            raise LocalPresenceError(f"XMPP priority must be -128..127, not {self.priority}")
        if self.lang is not None and not is_language_tag(self.lang):
            raise LocalPresenceError(f"xml:lang is not a language tag: {self.lang!r}")
        if not self.from_jid or not self.to_jid:
            raise LocalPresenceError("presence needs both 'from' and 'to'")

    @classmethod
    def received(
        cls,
        from_jid: str,
        to_jid: str,
        type: str | None = None,
        show: str | None = None,
        statuses: Iterable[tuple[str, str | None]] = (),
        priority: str | int | None = None,
        lang: str | None = None,
        id: str | None = None,
    ) -> XmppPresence:
        """Build from the raw values of a received stanza; bad values -> ``bad-request``."""
        show_value: Show | None = None
        if show is not None:
            show_value = _SHOW_BY_TEXT.get(show.strip())
            if show_value is None:
                raise StanzaRefused(
                    StanzaError("bad-request", "modify", f"unknown <show/> value {show!r}")
                )
        try:
            priority_value = int(priority) if priority is not None else 0
            return cls(
                from_jid=from_jid,
                to_jid=to_jid,
                type=PresenceType.from_attribute(type),
                show=show_value,
                statuses=tuple(_status(text, status_lang) for text, status_lang in statuses),
                priority=priority_value,
                lang=lang,
                id=id,
            )
        except (ValueError, LocalPresenceError) as exc:
            raise StanzaRefused(StanzaError("bad-request", "modify", str(exc))) from None

    @property
    def bare_jid(self) -> str:
        """``from`` without its resource."""
        return self.from_jid.split("/", 1)[0]

    @property
    def resource(self) -> str:
        """The resourcepart of ``from`` ("" for a bare JID)."""
        parts = self.from_jid.split("/", 1)
        return parts[1] if len(parts) == 2 else ""


def _status(text: str, lang: str | None) -> XmppStatus:
    """``XmppStatus(text, lang)``, one object per distinct status (see STATUS_CACHE_SIZE);
    raises as the constructor does."""
    key = (text, lang)
    known = _status_cache.get(key)
    if known is not None:
        return known
    status = XmppStatus(text, lang)
    if len(_status_cache) >= STATUS_CACHE_SIZE:
        del _status_cache[next(iter(_status_cache))]
    _status_cache[key] = status
    return status


def produces_notify(presence_type: PresenceType) -> bool:
    """RFC 8048 §6.2 Table 1 note 1: only no type / ``unavailable`` is a notification.

    Subscription management (subscribe, subscribed, ...), probes and errors never produce
    a NOTIFY carrying presence.
    """
    return presence_type in (PresenceType.AVAILABLE, PresenceType.UNAVAILABLE)


# --------------------------------------------------------------------------------------
# Tuple ids <-> resources (RFC 8048 §6.2 note 2).

# Characters kept as they are after the "ID-" prefix: every one is an NCName character in
# both XML 1.0 editions, so the id is an xs:ID for any validator. Everything else, and the
# escape character "_" itself, becomes "_<hex>_": a bijection, so the resource comes back
# exactly.
_KEPT: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-")


def tuple_id_for_resource(resource: str) -> str:
    """The tuple id for an XMPP resource: ``ID-`` + the resource, escaped to an xs:ID.

    ``1abc`` -> ``ID-1abc``; ``home phone`` -> ``ID-home_20_phone``; ``a_b`` -> ``ID-a_5f_b``.
    """
    escaped = "".join(c if c in _KEPT else f"_{ord(c):x}_" for c in resource)
    return TUPLE_ID_PREFIX + escaped


def resource_for_tuple_id(tuple_id: str) -> str:
    """The XMPP resource for a tuple id: the inverse of :func:`tuple_id_for_resource`.

    A tuple id that does not follow our ``ID-`` scheme (any SIP UA's own id) is used as the
    resource as it is: ids are xs:IDs, and every NCName is a valid resourcepart.
    """
    if not tuple_id.startswith(TUPLE_ID_PREFIX):
        return tuple_id
    body = tuple_id[len(TUPLE_ID_PREFIX) :]
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == "_":
            end = body.find("_", i + 1)
            code = body[i + 1 : end] if end > i + 1 else ""
            if (
                end == -1
                or not code
                or len(code) > 6
                or any(h not in "0123456789abcdef" for h in code)
            ):
                return tuple_id  # not produced by us: keep the whole id
            value = int(code, 16)
            if value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
                return tuple_id
            out.append(chr(value))
            i = end + 1
        else:
            out.append(c)
            i += 1
    resource = "".join(out)
    # Only the canonical spelling decodes ("ID-_41_" is not ours: "A" is written "ID-A"),
    # so two different tuple ids never land on the same resource.
    return resource if tuple_id_for_resource(resource) == tuple_id else tuple_id


# --------------------------------------------------------------------------------------
# Priority (RFC 8048 §6.2 note 6).

_THOUSANDTH: Final = Decimal("0.001")


def priority_to_qvalue(priority: int) -> Decimal | None:
    """XMPP priority -> PIDF contact priority: 0 -> 0, 1 -> 0.007, 127 -> 1, negative -> None.

    RFC 8048 §6.2: negative priorities MUST NOT be mapped; 0 SHOULD map to 0 and 127 to 1
    with unique values between. ``floor(p * 1000 / 127) / 1000`` gives exactly the RFC's
    examples (1 -> 0.007, 2 -> 0.015, 126 -> 0.992) and 128 distinct values.
    """
    if priority < 0:
        return None
    if priority > 127:
        raise LocalPresenceError(f"XMPP priority must be at most 127, not {priority}")
    return (Decimal(priority * 1000) / 127 / 1000).quantize(_THOUSANDTH, rounding=ROUND_FLOOR)


def qvalue_to_priority(qvalue: Decimal) -> int:
    """PIDF contact priority -> XMPP priority: ``round(q * 127)``, the exact inverse above."""
    if not qvalue.is_finite() or qvalue < 0 or qvalue > 1:
        raise LocalPresenceError(f"a qvalue is 0..1, not {qvalue}")
    return int((qvalue * 127).to_integral_value(rounding=ROUND_HALF_UP))


# --------------------------------------------------------------------------------------
# Rich presence policy (spec §3.4, ours).

#: XMPP -> SIP: the RPID activities written for each ``<show/>`` (None = no show).
SHOW_TO_ACTIVITIES: Final[Mapping[Show | None, tuple[Activity, ...]]] = {
    None: (),
    Show.CHAT: (),
    Show.AWAY: (Activity.AWAY,),
    Show.XA: (Activity.AWAY,),
    Show.DND: (Activity.BUSY,),
}

#: SIP -> XMPP: the ``<show/>`` each RPID activity implies when the tuple carries no
#: embedded ``<show/>``. Activities that do not keep the person from communicating map to
#: None (plain available). Rationale per group:
#: away: not at the device for a while (meals, errands, on the move);
#: xa: gone for long (RFC 4480 "permanent-absence", holidays, asleep, travelling);
#: dnd: present but must not be interrupted (busy, meetings, calls, on stage, driving).
ACTIVITY_TO_SHOW: Final[Mapping[Activity, Show | None]] = {
    Activity.APPOINTMENT: Show.DND,
    Activity.AWAY: Show.AWAY,
    Activity.BREAKFAST: Show.AWAY,
    Activity.BUSY: Show.DND,
    Activity.DINNER: Show.AWAY,
    Activity.HOLIDAY: Show.XA,
    Activity.IN_TRANSIT: Show.AWAY,
    Activity.LOOKING_FOR_WORK: None,
    Activity.LUNCH: Show.AWAY,
    Activity.MEAL: Show.AWAY,
    Activity.MEETING: Show.DND,
    Activity.ON_THE_PHONE: Show.DND,
    Activity.PERFORMANCE: Show.DND,
    Activity.PERMANENT_ABSENCE: Show.XA,
    Activity.PLAYING: None,
    Activity.PRESENTATION: Show.DND,
    Activity.SHOPPING: Show.AWAY,
    Activity.SLEEPING: Show.XA,
    Activity.SPECTATOR: Show.AWAY,
    Activity.STEERING: Show.DND,
    Activity.TRAVEL: Show.XA,
    Activity.TV: None,
    Activity.UNKNOWN: None,
    Activity.VACATION: Show.XA,
    Activity.WORKING: None,
    Activity.WORSHIP: Show.DND,
}

# When several activities are listed, the most restrictive show wins.
_SHOW_SEVERITY: Final[Mapping[Show | None, int]] = {
    None: 0,
    Show.CHAT: 0,
    Show.AWAY: 1,
    Show.XA: 2,
    Show.DND: 3,
}


def show_to_activities(show: Show | None) -> tuple[Activity, ...]:
    """The RPID activities for an XMPP ``<show/>`` (policy table above)."""
    return SHOW_TO_ACTIVITIES[show]


def activities_to_show(activities: Activities | None) -> Show | None:
    """The XMPP ``<show/>`` for RPID activities: the most restrictive one listed."""
    if activities is None:
        return None
    best: Show | None = None
    for activity in activities.values:
        show = ACTIVITY_TO_SHOW[activity]
        if _SHOW_SEVERITY[show] > _SHOW_SEVERITY[best]:
            best = show
    return best


@dataclass(frozen=True, slots=True)
class RichPresencePolicy:
    """How far the gateway goes beyond RFC 8048 (which maps basic availability only)."""

    #: XMPP -> SIP: also write RPID activities for away/xa/dnd (spec §3.4). The embedded
    #: ``<show xmlns='jabber:client'>`` is always written (RFC 8048 RECOMMENDS it).
    emit_activities: bool = True
    #: SIP -> XMPP: derive ``<show/>`` from RPID activities when no ``<show/>`` is embedded.
    read_activities: bool = True
    #: SIP -> XMPP: a *closed* tuple whose person has a do-not-disturb activity (busy,
    #: meeting, on-the-phone, ...) becomes an *available* presence with ``<show>dnd</show>``
    #: instead of ``unavailable``. Some presence servers close every tuple when the user
    #: sets DND (draft-sinha-simple-intradomain-federation-callflow §4.1.3). This deviates
    #: from the MUST of RFC 8048 §6.3 note 1 (closed -> unavailable), so it is off unless
    #: the operator turns it on for peers known to behave that way.
    closed_dnd_is_dnd: bool = False


DEFAULT_POLICY: Final = RichPresencePolicy()


# --------------------------------------------------------------------------------------
# Notifications, XMPP -> SIP (RFC 8048 §6.2, Table 1).


@dataclass(frozen=True, slots=True)
class SipPresenceState:
    """What a NOTIFY to a SIP watcher carries: the document and its Content-Language."""

    #: None = the XMPP contact's presence is unknown: the NOTIFY MUST be empty (§5.3.2).
    document: PidfDocument | None
    #: From the stanza's xml:lang (Table 1).
    content_language: str | None = None


def availability_rank(presence: XmppPresence) -> tuple[int, int, int]:
    """Sort key of "how available": available before unavailable, then show, then priority.

    Show order (chat, none, away, xa, dnd) follows what XMPP clients display (RFC 6121
    §4.7.2.1 describes the values); priority breaks ties (§4.7.2.3).
    """
    if presence.type is not PresenceType.AVAILABLE:
        return (0, 0, presence.priority)
    show_order = {Show.CHAT: 5, None: 4, Show.AWAY: 3, Show.XA: 2, Show.DND: 1}
    return (1, show_order[presence.show], presence.priority)


def most_available(presences: Iterable[XmppPresence]) -> XmppPresence | None:
    """The presence an XMPP client shows for a contact with several resources."""
    best: XmppPresence | None = None
    for presence in presences:
        if best is None or availability_rank(presence) > availability_rank(best):
            best = presence
    return best


def xmpp_to_pidf(
    entity: str,
    presences: Sequence[XmppPresence],
    *,
    contacts: Mapping[str, str] | None = None,
    timestamp: str | None = None,
    policy: RichPresencePolicy = DEFAULT_POLICY,
) -> SipPresenceState:
    """The NOTIFY content for an XMPP user's current presence (RFC 8048 §6.2, Table 1).

    ``presences`` holds the latest no-type/``unavailable`` presence of each resource (all
    from the same bare JID). Each becomes one tuple (multiple resources: §6.2 last
    paragraph): id ``ID-<resource>``; basic ``open`` for no type and ``closed`` for
    ``unavailable`` (MUST, note 4); ``<show/>`` embedded in ``<status>`` (note 7);
    each ``<status/>`` a ``<note>`` with its ``xml:lang`` (note 8); priority on the
    ``<contact>`` (note 6). ``contacts`` maps a resource to its contact URI (its GRUU);
    a resource without one gets ``entity``. The stanza ``xml:lang`` becomes the
    Content-Language. No presence at all means unknown: an empty NOTIFY (§5.3.2).
    ``timestamp`` (RFC 3339) is written on every tuple (RFC 3863 §4.1.7 SHOULD).
    """
    if not presences:
        return SipPresenceState(None, None)
    contacts = contacts or {}
    content_language = next((p.lang for p in presences if p.lang is not None), None)
    tuples: list[PresenceTuple] = []
    seen: set[str] = set()
    for presence in presences:
        if not produces_notify(presence.type):
            raise LocalPresenceError(f"a {presence.type} presence is not a notification")
        resource = presence.resource
        if resource in seen:
            raise LocalPresenceError(f"two presences for resource {resource!r}")
        seen.add(resource)
        available = presence.type is PresenceType.AVAILABLE
        inherited = presence.lang if presence.lang != content_language else None
        notes = tuple(Note(s.text, s.lang or inherited) for s in presence.statuses)
        tuples.append(
            PresenceTuple(
                id=tuple_id_for_resource(resource),
                basic=Basic.OPEN if available else Basic.CLOSED,
                show=presence.show if available else None,
                contact=Contact(
                    contacts.get(resource, entity), priority_to_qvalue(presence.priority)
                ),
                notes=notes,
                timestamp=timestamp,
            )
        )
    persons: tuple[Person, ...] = ()
    best = most_available(presences)
    if policy.emit_activities and best is not None and best.type is PresenceType.AVAILABLE:
        values = show_to_activities(best.show)
        if values:
            persons = (Person(GATEWAY_PERSON_ID, Activities(values=values), (), timestamp),)
    return SipPresenceState(
        PidfDocument(entity=entity, tuples=tuple(tuples), persons=persons), content_language
    )


# --------------------------------------------------------------------------------------
# Notifications, SIP -> XMPP (RFC 8048 §6.3, Table 2).


def _person_dnd(doc: PidfDocument) -> bool:
    return any(activities_to_show(p.activities) is Show.DND for p in doc.persons)


def pidf_to_xmpp(
    document: PidfDocument | None,
    *,
    from_jid: str,
    to_jid: str,
    content_language: str | None = None,
    policy: RichPresencePolicy = DEFAULT_POLICY,
) -> tuple[XmppPresence, ...]:
    """The XMPP presence stanzas for a NOTIFY body (RFC 8048 §6.3, Table 2).

    One stanza per tuple that has a ``<basic>``, from ``from_jid`` (the SIP presentity's
    bare JID) plus the tuple's resource (:func:`resource_for_tuple_id`); ``open`` ->
    no type, ``closed`` -> ``unavailable`` (MUST, note 1); ``<note>`` -> ``<status/>``;
    contact priority -> ``<priority/>``; an embedded ``<show/>`` -> ``<show/>`` (note 3),
    else the person's RPID activities through :data:`ACTIVITY_TO_SHOW` (our policy);
    Content-Language -> xml:lang. A tuple without notes takes the person's notes, then
    the document's. A tuple without ``<basic>`` says nothing about availability and is
    skipped. No body (None) yields nothing: the previous state stands (RFC 3856 §6.8).
    """
    if document is None:
        return ()
    bare = from_jid.split("/", 1)[0]
    person_notes = tuple(n for p in document.persons for n in p.notes)
    fallback_notes = person_notes or document.notes
    person_show: Show | None = None
    if policy.read_activities and document.persons:
        shows = [activities_to_show(p.activities) for p in document.persons]
        person_show = max(shows, key=lambda show: _SHOW_SEVERITY[show])
    dnd_override = policy.closed_dnd_is_dnd and _person_dnd(document)
    out: list[XmppPresence] = []
    used: set[str] = set()
    for item in document.tuples:
        if item.basic is None:
            continue
        resource = resource_for_tuple_id(item.id)
        if resource in used:  # e.g. a peer's "pc" next to our "ID-pc"
            resource = item.id
        if resource in used or len(resource.encode("utf-8")) > JID_PART_MAX_BYTES:
            continue  # no distinct, valid resourcepart for this tuple (RFC 7622 §3.4)
        used.add(resource)
        full = f"{bare}/{resource}" if resource else bare
        notes = item.notes or fallback_notes
        statuses = tuple(XmppStatus(n.text, n.lang) for n in notes)
        priority = 0
        if item.contact is not None and item.contact.priority is not None:
            priority = qvalue_to_priority(item.contact.priority)
        if item.basic is Basic.OPEN or dnd_override:
            show = item.show if item.show is not None else person_show
            if item.basic is Basic.CLOSED:
                show = Show.DND
            out.append(
                XmppPresence(
                    from_jid=full,
                    to_jid=to_jid,
                    type=PresenceType.AVAILABLE,
                    show=show,
                    statuses=statuses,
                    priority=priority,
                    lang=content_language,
                )
            )
        else:
            out.append(
                XmppPresence(
                    from_jid=full,
                    to_jid=to_jid,
                    type=PresenceType.UNAVAILABLE,
                    statuses=statuses,
                    priority=priority,
                    lang=content_language,
                )
            )
    return tuple(out)


def vanished_resources(
    previous: Iterable[str], current: Sequence[XmppPresence], *, to_jid: str
) -> tuple[XmppPresence, ...]:
    """``unavailable`` for each full JID shown before but absent from the new state.

    A PIDF document is the whole state of the presentity (RFC 3856 §6.8), so a tuple that
    disappears means that service is gone; without this the XMPP watcher would keep
    showing it online.
    """
    now = {p.from_jid for p in current}
    return tuple(
        XmppPresence(from_jid=jid, to_jid=to_jid, type=PresenceType.UNAVAILABLE)
        for jid in dict.fromkeys(previous)
        if jid not in now
    )


# --------------------------------------------------------------------------------------
# Subscription-State (RFC 6665 §4.1.3, §8.4).


class SubState(enum.Enum):
    """``substate-value`` of Subscription-State."""

    ACTIVE = "active"
    PENDING = "pending"
    TERMINATED = "terminated"


class TerminationReason(enum.Enum):
    """``event-reason-value`` (RFC 6665 §4.1.3), with what each asks of the subscriber."""

    DEACTIVATED = "deactivated"  # retry immediately
    PROBATION = "probation"  # retry later (retry-after)
    REJECTED = "rejected"  # authorization refused: do not retry
    TIMEOUT = "timeout"  # not refreshed in time: retry immediately
    GIVEUP = "giveup"  # the notifier gave up waiting for authorization: retry later
    NORESOURCE = "noresource"  # the resource no longer exists: do not retry
    INVARIANT = "invariant"  # the state will never change: do not retry


@dataclass(frozen=True, slots=True)
class SubscriptionStateValue:
    """The value of a Subscription-State header (RFC 6665 §8.4).

    ``active`` and ``pending`` MUST carry ``expires`` (§4.2.2; conformance point 63);
    ``reason`` and ``retry_after`` belong to ``terminated`` only.
    """

    state: SubState
    expires: int | None = None
    reason: TerminationReason | None = None
    retry_after: int | None = None

    def __post_init__(self) -> None:
        if self.state is SubState.TERMINATED:
            if self.expires is not None:
                raise LocalPresenceError("a terminated subscription has no 'expires'")
        else:
            if self.expires is None:
                raise LocalPresenceError(
                    f"'{self.state.value}' MUST carry expires (RFC 6665 §4.2.2)"
                )
            if self.reason is not None or self.retry_after is not None:
                raise LocalPresenceError("reason/retry-after belong to 'terminated' only")
        for name, value in (("expires", self.expires), ("retry-after", self.retry_after)):
            if value is not None and not 0 <= value <= 0xFFFFFFFF:
                raise LocalPresenceError(f"{name} must be delta-seconds, not {value}")

    def serialize(self) -> str:
        """The header value, e.g. ``active;expires=3600`` or ``terminated;reason=timeout``."""
        parts = [self.state.value]
        if self.reason is not None:
            parts.append(f"reason={self.reason.value}")
        if self.expires is not None:
            parts.append(f"expires={self.expires}")
        if self.retry_after is not None:
            parts.append(f"retry-after={self.retry_after}")
        return ";".join(parts)

    @classmethod
    def parse(cls, value: str) -> SubscriptionStateValue:
        """Parse a received header value; garbage is a :class:`MappingRefused` 400.

        Tokens are compared case-insensitively (RFC 3261 §7.3.1). An unknown reason is
        read as no reason (RFC 6665 §4.1.3 lets the subscriber decide); unknown
        parameters are ignored (generic-param). An ``active``/``pending`` value without
        ``expires`` is refused, since RFC 6665 §4.2.2 makes it mandatory.
        """
        fields = [f.strip() for f in value.split(";")]
        try:
            state = SubState(fields[0].lower())
        except ValueError:
            raise MappingRefused(
                400, "Bad Request", f"unknown Subscription-State {fields[0]!r}"
            ) from None
        expires: int | None = None
        reason: TerminationReason | None = None
        retry_after: int | None = None
        for param in fields[1:]:
            name, _, raw = param.partition("=")
            name = name.strip().lower()
            raw = raw.strip()
            if name in ("expires", "retry-after"):
                if not raw.isascii() or not raw.isdigit() or len(raw) > 10:
                    raise MappingRefused(
                        400, "Bad Request", f"Subscription-State {name} is not delta-seconds"
                    )
                number = min(int(raw), 0xFFFFFFFF)
                if name == "expires":
                    expires = number
                else:
                    retry_after = number
            elif name == "reason":
                try:
                    reason = TerminationReason(raw.lower())
                except ValueError:
                    reason = None
        if state is SubState.TERMINATED:
            return cls(state, None, reason, retry_after)
        if expires is None:
            raise MappingRefused(
                400, "Bad Request", f"Subscription-State {state.value} without expires"
            )
        return cls(state, expires)


# --------------------------------------------------------------------------------------
# X2S: the gateway subscribes to a SIP contact on behalf of an XMPP user (RFC 8048 §5.2).


class OutboundAction(enum.Enum):
    """What an XMPP user's presence stanza to a SIP contact does to the SIP subscription."""

    NONE = "none"
    #: New dialog, Expires = our duration (§5.2.1; conformance point 21).
    SUBSCRIBE = "subscribe"
    #: In-dialog re-SUBSCRIBE (§5.2.2; conformance point 25).
    REFRESH = "refresh"
    #: In-dialog SUBSCRIBE with Expires: 0 (§5.2.3; conformance point 26).
    UNSUBSCRIBE = "unsubscribe"
    #: New-dialog SUBSCRIBE with Expires: 0, a one-time fetch (§7.1; conformance point 38).
    POLL = "poll"


@dataclass(frozen=True, slots=True)
class SubscribeRequest:
    """The parts of the SUBSCRIBE the SIP core has to build."""

    expires: int
    #: False: send it inside the existing notification dialog.
    new_dialog: bool
    event: str = PRESENCE_EVENT
    #: RFC 3856 §6.5/§6.7: Accept, if present, MUST include application/pidf+xml.
    accept: str = PIDF_MIME_TYPE


def outbound_action(
    presence_type: PresenceType,
    *,
    authorized: bool,
    dialog_active: bool,
    initial_presence: bool = False,
) -> OutboundAction:
    """The SIP side of an XMPP user's presence stanza addressed to a SIP contact.

    ``authorized``: the gateway holds a presence authorization for this (user, contact)
    pair (the user subscribed and the contact approved). ``dialog_active``: a notification
    dialog for it exists. ``initial_presence``: this available presence is the user's
    first since being offline.

    * subscribe -> SUBSCRIBE in a new dialog, or a refresh of the live one (§5.2.1);
    * unsubscribe -> Expires: 0 in the dialog (§5.2.3); nothing to send without one;
    * probe -> a refresh / a re-established dialog when authorized (§5.2.2: initial
      presence is "equivalent to a probe"), a one-time poll otherwise (§7.1);
    * initial available presence with an authorization -> refresh (§5.2.2 SHOULD);
    * anything else concerns the SIP contact's view of the user (NOTIFYs), not this
      subscription.
    """
    if presence_type is PresenceType.SUBSCRIBE:
        return OutboundAction.REFRESH if dialog_active else OutboundAction.SUBSCRIBE
    if presence_type is PresenceType.UNSUBSCRIBE:
        return OutboundAction.UNSUBSCRIBE if dialog_active else OutboundAction.NONE
    if presence_type is PresenceType.PROBE:
        if not authorized:
            return OutboundAction.POLL
        return OutboundAction.REFRESH if dialog_active else OutboundAction.SUBSCRIBE
    if presence_type is PresenceType.AVAILABLE and initial_presence and authorized:
        return OutboundAction.REFRESH if dialog_active else OutboundAction.SUBSCRIBE
    return OutboundAction.NONE


def subscribe_request(
    action: OutboundAction, *, expires: int = DEFAULT_SUBSCRIPTION_EXPIRES
) -> SubscribeRequest | None:
    """The SUBSCRIBE for an :class:`OutboundAction` (None for ``NONE``)."""
    if expires <= 0:
        raise LocalPresenceError(f"a subscription duration must be positive, not {expires}")
    match action:
        case OutboundAction.SUBSCRIBE:
            return SubscribeRequest(expires=expires, new_dialog=True)
        case OutboundAction.REFRESH:
            return SubscribeRequest(expires=expires, new_dialog=False)
        case OutboundAction.UNSUBSCRIBE:
            return SubscribeRequest(expires=0, new_dialog=False)
        case OutboundAction.POLL:
            return SubscribeRequest(expires=0, new_dialog=True)
        case OutboundAction.NONE:
            return None


def unsubscribed_after_unsubscribe(status: int) -> bool:
    """Send ``<presence type='unsubscribed'>`` to the XMPP user after the Expires: 0 answer?

    RFC 8048 §5.2.3: SHOULD on the 200. A failure (481: the dialog was already gone;
    anything else: it will expire) ends the subscription just the same, and the user asked
    for it, so any final response confirms it. Provisional responses do not.
    """
    return status >= 200


class Resubscribe(enum.Enum):
    """Whether the X2S gateway re-establishes a subscription that just ended."""

    NO = "no"
    NOW = "now"
    LATER = "later"  # after NotifyOutcome.retry_after / RETRY_BACKOFF


@dataclass(frozen=True, slots=True)
class NotifyOutcome:
    """What a NOTIFY received in an X2S notification dialog means for the XMPP user.

    The gateway answers every matched NOTIFY with 200 first (RFC 8048 §5.2.1 MUST for
    pending), then applies this.
    """

    #: Send ``<presence type='subscribed'>`` (first ``active``; conformance point 23).
    send_subscribed: bool = False
    #: Translate the body into presence stanzas (never for ``pending``; point 22).
    deliver_presence: bool = False
    #: The authorization is over: send ``<presence type='unsubscribed'>``.
    send_unsubscribed: bool = False
    #: The subscription ended and the contact's last state no longer holds: send
    #: ``unavailable`` for every resource shown, so nobody stays "online" forever.
    send_unavailable: bool = False
    subscription_ended: bool = False
    resubscribe: Resubscribe = Resubscribe.NO
    retry_after: float | None = None


def on_notify(
    state: SubscriptionStateValue,
    *,
    active_seen: bool,
    has_body: bool,
    unsubscribing: bool = False,
) -> NotifyOutcome:
    """Decide what a NOTIFY's Subscription-State means (RFC 8048 §5.2, RFC 6665 §4.1.3).

    ``active_seen``: an ``active`` NOTIFY already arrived in this authorization (so
    ``subscribed`` was sent). ``has_body``: the NOTIFY has a PIDF body.
    ``unsubscribing``: the gateway itself sent Expires: 0 (unsubscribe or poll), so a
    ``terminated`` is the expected end and nothing is re-established.
    """
    if state.state is SubState.PENDING:
        # §5.2.1: MUST answer, MUST NOT send any presence stanza to the XMPP user.
        return NotifyOutcome()
    if state.state is SubState.ACTIVE:
        return NotifyOutcome(send_subscribed=not active_seen, deliver_presence=has_body)
    if unsubscribing:
        return NotifyOutcome(deliver_presence=has_body, subscription_ended=True)
    reason = state.reason
    retry = float(state.retry_after) if state.retry_after is not None else None
    if reason in (TerminationReason.REJECTED, TerminationReason.NORESOURCE):
        return NotifyOutcome(
            deliver_presence=has_body,
            send_unsubscribed=True,
            send_unavailable=not has_body,
            subscription_ended=True,
        )
    if reason in (TerminationReason.DEACTIVATED, TerminationReason.TIMEOUT):
        if retry is None:
            # Immediate re-subscription: keep what the watcher sees, the new dialog's
            # first NOTIFY replaces it; flashing "offline" in between would be false.
            return NotifyOutcome(
                deliver_presence=has_body, subscription_ended=True, resubscribe=Resubscribe.NOW
            )
    if reason is TerminationReason.INVARIANT:
        return NotifyOutcome(
            deliver_presence=has_body, send_unavailable=not has_body, subscription_ended=True
        )
    return NotifyOutcome(
        deliver_presence=has_body,
        send_unavailable=not has_body,
        subscription_ended=True,
        resubscribe=Resubscribe.LATER,
        retry_after=retry if retry is not None else RETRY_BACKOFF,
    )


def is_subscribe_success(status: int) -> bool:
    """A 2xx to SUBSCRIBE; RFC 6665 §8.3.1: a 202 MUST be treated exactly like a 200."""
    return 200 <= status <= 299


@dataclass(frozen=True, slots=True)
class SubscribeFailureOutcome:
    """What a final failure to an X2S (re)SUBSCRIBE means."""

    #: The notification dialog is gone (or, for an initial SUBSCRIBE, never existed).
    subscription_ended: bool
    #: RFC 8048 §5.2.2 MUST: the XMPP authorization is permanently cancelled; tell the
    #: user with ``<presence type='unsubscribed'>``.
    cancel_authorization: bool
    resubscribe: Resubscribe
    retry_after: float | None = None
    #: 423: retry with the Min-Expires of the response (RFC 6665 §4.1.2.1).
    use_min_expires: bool = False


def on_subscribe_failure(
    status: int, *, refresh: bool, retry_after: int | None = None
) -> SubscribeFailureOutcome:
    """Classify a final non-2xx answer to a (re)SUBSCRIBE (conformance point 24).

    * 403, 489, 603 -> authorization cancelled (RFC 8048 §5.2.2, MUST);
    * 423 -> kept; retry at once with Min-Expires (RFC 8048 §5.2.2: transient);
    * 481 -> kept; the dialog is gone, so re-SUBSCRIBE at once in a new one;
    * a refresh failing with 404, 405, 410, 416, 480-485, 489, 501 or 604 ends the
      subscription (RFC 6665 §4.1.2.2); the authorization is kept and a new subscription
      tried after ``retry_after`` / :data:`RETRY_BACKOFF`;
    * any other failure of a refresh leaves the subscription alive until it expires
      (RFC 6665 §4.1.2.2): retry the refresh later;
    * an initial SUBSCRIBE that fails never created a subscription: retry later.
    """
    if status < 300:
        raise LocalPresenceError(f"{status} is not a failure")
    later = float(retry_after) if retry_after is not None else RETRY_BACKOFF
    if status in AUTHORIZATION_CANCELLING_CODES:
        return SubscribeFailureOutcome(True, True, Resubscribe.NO)
    if status == 423:
        return SubscribeFailureOutcome(not refresh, False, Resubscribe.NOW, use_min_expires=True)
    if status == 481:
        return SubscribeFailureOutcome(True, False, Resubscribe.NOW)
    ended = (not refresh) or status in SUBSCRIPTION_ENDING_CODES
    return SubscribeFailureOutcome(ended, False, Resubscribe.LATER, retry_after=later)


def notify_failure_removes_subscription(status: int | None) -> bool:
    """As notifier: does a NOTIFY answered with ``status`` end the subscription?

    RFC 6665 §4.2.2: the same codes as §4.1.2.2 MUST remove it; a transaction timeout
    (``status`` None, Timer F) SHOULD, and the gateway does.
    """
    return status is None or status in SUBSCRIPTION_ENDING_CODES


def refresh_deadline(granted_expires: int, now: float) -> float | None:
    """When the X2S gateway re-SUBSCRIBEs a dialog granted ``granted_expires`` seconds.

    RFC 8048 §5.2.2: "early enough before expiry": :data:`REFRESH_MARGIN` before the end,
    but never later than half-way for short durations. None when nothing is to refresh.
    """
    if granted_expires <= 0:
        return None
    return now + max(granted_expires - REFRESH_MARGIN, granted_expires / 2)


# --------------------------------------------------------------------------------------
# S2X: a SIP watcher subscribes to an XMPP user; the gateway is the notifier (§5.3, §7.2).


class InboundKind(enum.Enum):
    """The four kinds of SUBSCRIBE a SIP watcher sends."""

    NEW = "new"  # §5.3.1
    REFRESH = "refresh"  # §5.3.2
    UNSUBSCRIBE = "unsubscribe"  # §5.3.3: in-dialog, Expires: 0
    POLL = "poll"  # §7.2: out of dialog, Expires: 0


class Authorization(enum.Enum):
    """The XMPP user's answer to the SIP watcher (the winfo of RFC 3857, kept by us)."""

    PENDING = "pending"  # asked, not answered yet
    GRANTED = "granted"  # <presence type='subscribed'>
    DENIED = "denied"  # <presence type='unsubscribed'>


class NotifyBody(enum.Enum):
    """The body of the NOTIFY the gateway sends."""

    EMPTY = "empty"
    CURRENT = "current"  # PIDF of the XMPP user's current presence
    CLOSED = "closed"  # PIDF with every tuple closed (§5.3.3)


@dataclass(frozen=True, slots=True)
class NotifierPlan:
    """The gateway's answer to a SIP watcher's SUBSCRIBE.

    Always 200 with ``Expires: expires`` (never 202, RFC 6665 §8.3.1), then *immediately*
    one NOTIFY (RFC 6665 §4.2.1.2 MUST; conformance point 64) with ``notify_state`` and
    ``notify_body``, and, if ``xmpp_type`` is set, that presence stanza from the SIP
    watcher to the XMPP user.
    """

    kind: InboundKind
    expires: int
    notify_state: SubscriptionStateValue
    notify_body: NotifyBody
    xmpp_type: PresenceType | None = None


def classify_inbound_subscribe(*, expires: int | None, in_dialog: bool) -> InboundKind:
    """Tell the four kinds apart (spec §2.2.8 [ours]: the To-tag makes it in-dialog)."""
    if expires == 0:
        return InboundKind.UNSUBSCRIBE if in_dialog else InboundKind.POLL
    return InboundKind.REFRESH if in_dialog else InboundKind.NEW


def granted_expires(requested: int | None, *, maximum: int = MAX_SUBSCRIPTION_EXPIRES) -> int:
    """The duration granted: no Expires means 3600 (RFC 3856 §6.4; point 27), capped.

    RFC 6665 §4.2.1.1: the notifier may shorten the duration, never lengthen it.
    """
    if maximum <= 0:
        raise LocalPresenceError(f"maximum duration must be positive, not {maximum}")
    value = DEFAULT_SUBSCRIPTION_EXPIRES if requested is None else requested
    if value < 0:
        raise LocalPresenceError(f"Expires cannot be negative: {value}")
    return min(value, maximum)


def interval_too_brief(requested: int | None, *, minimum: int) -> bool:
    """Answer 423 with ``Min-Expires: minimum``? (RFC 6665 §4.2.1.1.)

    Only for 0 < Expires < 3600 below the configured minimum: an Expires of 0 is an
    unsubscribe or a poll, and an hour is always acceptable.
    """
    value = DEFAULT_SUBSCRIPTION_EXPIRES if requested is None else requested
    return 0 < value < DEFAULT_SUBSCRIPTION_EXPIRES and value < minimum


def plan_inbound_subscribe(
    *,
    expires: int | None,
    in_dialog: bool,
    authorization: Authorization,
    state_known: bool,
    maximum_expires: int = MAX_SUBSCRIPTION_EXPIRES,
) -> NotifierPlan:
    """What the S2X gateway does with a SIP watcher's SUBSCRIBE (RFC 8048 §5.3, §7.2).

    ``authorization``: the XMPP user's answer so far (a new watcher is PENDING).
    ``state_known``: the gateway has the XMPP user's current presence.

    * NEW -> ``<presence type='subscribe'>`` to the XMPP user (§5.3.1) unless already
      granted; NOTIFY ``pending`` (nothing leaks: §8.2), or ``active`` when granted;
    * REFRESH -> NOTIFY with the current state, **empty** if it is unknown (§5.3.2 MUST;
      point 29) or the watcher is not authorized;
    * UNSUBSCRIBE -> NOTIFY ``terminated;reason=timeout`` with a ``closed`` document, and
      ``unavailable`` to the XMPP user (§5.3.3; point 30); the authorization stays;
    * POLL -> NOTIFY ``terminated;reason=timeout`` with the current state, and a
      ``probe`` to the XMPP user if the gateway has nothing cached (§7.2; point 38).

    A refresh from a watcher the XMPP user denied ends with ``terminated;reason=rejected``
    and no state; a new SUBSCRIBE from it asks the XMPP user again (XMPP lets a contact
    ask anew after a refusal), answered ``pending`` meanwhile.
    """
    kind = classify_inbound_subscribe(expires=expires, in_dialog=in_dialog)
    granted = authorization is Authorization.GRANTED
    if kind in (InboundKind.UNSUBSCRIBE, InboundKind.POLL):
        ended = SubscriptionStateValue(SubState.TERMINATED, reason=TerminationReason.TIMEOUT)
        if kind is InboundKind.UNSUBSCRIBE:
            body = NotifyBody.CLOSED if granted else NotifyBody.EMPTY
            return NotifierPlan(kind, 0, ended, body, PresenceType.UNAVAILABLE)
        body = NotifyBody.CURRENT if granted and state_known else NotifyBody.EMPTY
        # Only an authorized watcher's poll is worth a probe: nothing else may be shown.
        probe = PresenceType.PROBE if granted and not state_known else None
        return NotifierPlan(kind, 0, ended, body, probe)
    duration = granted_expires(expires, maximum=maximum_expires)
    if authorization is Authorization.DENIED and kind is InboundKind.REFRESH:
        rejected = SubscriptionStateValue(SubState.TERMINATED, reason=TerminationReason.REJECTED)
        return NotifierPlan(kind, duration, rejected, NotifyBody.EMPTY)
    if granted:
        active = SubscriptionStateValue(SubState.ACTIVE, expires=duration)
        body = NotifyBody.CURRENT if state_known else NotifyBody.EMPTY
        return NotifierPlan(kind, duration, active, body)
    pending = SubscriptionStateValue(SubState.PENDING, expires=duration)
    ask = PresenceType.SUBSCRIBE if kind is InboundKind.NEW else None
    return NotifierPlan(kind, duration, pending, NotifyBody.EMPTY, ask)


def notify_for_authorization(
    presence_type: PresenceType, *, expires_remaining: int
) -> SubscriptionStateValue:
    """The NOTIFY state for the XMPP user's answer to a SIP watcher (§5.3.1; point 28).

    ``subscribed`` -> an **empty** NOTIFY ``active;expires=<remaining>``;
    ``unsubscribed`` -> an empty NOTIFY ``terminated;reason=rejected``.
    """
    if presence_type is PresenceType.SUBSCRIBED:
        return SubscriptionStateValue(SubState.ACTIVE, expires=max(0, expires_remaining))
    if presence_type is PresenceType.UNSUBSCRIBED:
        return SubscriptionStateValue(SubState.TERMINATED, reason=TerminationReason.REJECTED)
    raise LocalPresenceError(f"{presence_type} is not an authorization answer")


def pidf_allowed(state: SubscriptionStateValue) -> bool:
    """May a NOTIFY in this state carry presence? (RFC 8048 §8.2, RFC 3856 §6.6.2.)

    Only an active subscription, or its ``timeout`` end (the closed document of §5.3.3)
    does; a pending or rejected watcher sees nothing.
    """
    if state.state is SubState.ACTIVE:
        return True
    return state.state is SubState.TERMINATED and state.reason is TerminationReason.TIMEOUT


# --------------------------------------------------------------------------------------
# Rate limiting (RFC 3856 §6.10; conformance point 68).


def merge_pending_presence(
    pending: tuple[XmppPresence, ...], update: XmppPresence
) -> tuple[XmppPresence, ...]:
    """Merge one more presence change into the state waiting for the next NOTIFY.

    The newest presence of a resource replaces the older one; other resources are kept,
    in the order they first appeared. Nothing is dropped: an ``unavailable`` stays (it
    becomes a closed tuple), so the NOTIFY sent after the interval carries the last state
    of every resource that changed.
    """
    out = list(pending)
    for index, presence in enumerate(out):
        if presence.from_jid == update.from_jid:
            out[index] = update
            return tuple(out)
    out.append(update)
    return tuple(out)


S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class ThrottleStep(Generic[S]):
    """The result of feeding a :class:`NotifyThrottle`."""

    throttle: NotifyThrottle[S]
    #: Send a NOTIFY carrying this state now (None: nothing to send now).
    send: S | None
    #: When to call :meth:`NotifyThrottle.due` next (None: no timer needed).
    deadline: float | None


@dataclass(frozen=True, slots=True)
class NotifyThrottle(Generic[S]):
    """At most one NOTIFY per ``interval`` per (presentity, watcher) (RFC 3856 §6.10).

    Pure and immutable: every call returns a :class:`ThrottleStep` with the next throttle.
    ``offer`` a state change; it is sent at once if the interval has passed, otherwise
    merged (with ``merge``) into the pending state, which ``due`` releases at the deadline.
    NOTIFYs that must go out at once whatever the rate (the one after every 2xx to
    SUBSCRIBE, RFC 6665 §4.2.1.2, and any ``terminated``) are reported with
    :meth:`sent`, which also clears the pending state: that NOTIFY carries the full
    current state.
    """

    merge: Callable[[S, S], S]
    interval: float = MIN_NOTIFY_INTERVAL
    last_sent: float | None = None
    pending: S | None = None

    def _ready_at(self) -> float:
        return (self.last_sent if self.last_sent is not None else float("-inf")) + self.interval

    def offer(self, state: S, now: float) -> ThrottleStep[S]:
        """A new state to notify at ``now``."""
        merged = state if self.pending is None else self.merge(self.pending, state)
        if now >= self._ready_at():
            return ThrottleStep(replace(self, last_sent=now, pending=None), merged, None)
        waiting = replace(self, pending=merged)
        return ThrottleStep(waiting, None, waiting._ready_at())

    def due(self, now: float) -> ThrottleStep[S]:
        """The timer fired: release the pending state if the interval has passed."""
        if self.pending is None:
            return ThrottleStep(self, None, None)
        if now < self._ready_at():
            return ThrottleStep(self, None, self._ready_at())
        return ThrottleStep(replace(self, last_sent=now, pending=None), self.pending, None)

    def sent(self, now: float) -> NotifyThrottle[S]:
        """A full-state NOTIFY went out at ``now`` outside the throttle."""
        return replace(self, last_sent=now, pending=None)

    def next_deadline(self) -> float | None:
        """When :meth:`due` has something to release (None if nothing is pending)."""
        return self._ready_at() if self.pending is not None else None
