"""RFC 8048 presence mapping: conformance points 21-38, 63, 68, tables and properties."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipxmpp.mapping.model import MappingRefused, StanzaRefused
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
    is_ncname,
    is_xml_text,
    parse_pidf,
    serialize_pidf,
)
from sipxmpp.mapping.presence import (
    ACTIVITY_TO_SHOW,
    DEFAULT_SUBSCRIPTION_EXPIRES,
    MAX_SUBSCRIPTION_EXPIRES,
    MIN_NOTIFY_INTERVAL,
    RETRY_BACKOFF,
    Authorization,
    InboundKind,
    LocalPresenceError,
    NotifyBody,
    NotifyOutcome,
    NotifyThrottle,
    OutboundAction,
    PresenceType,
    Resubscribe,
    RichPresencePolicy,
    SubscribeRequest,
    SubscriptionStateValue,
    SubState,
    TerminationReason,
    XmppPresence,
    XmppStatus,
    activities_to_show,
    granted_expires,
    interval_too_brief,
    is_subscribe_success,
    merge_pending_presence,
    most_available,
    notify_failure_removes_subscription,
    notify_for_authorization,
    on_notify,
    on_subscribe_failure,
    outbound_action,
    pidf_allowed,
    pidf_to_xmpp,
    plan_inbound_subscribe,
    priority_to_qvalue,
    produces_notify,
    qvalue_to_priority,
    refresh_deadline,
    resource_for_tuple_id,
    show_to_activities,
    subscribe_request,
    tuple_id_for_resource,
    unsubscribed_after_unsubscribe,
    vanished_resources,
    xmpp_to_pidf,
)

JULIET = "juliet@example.com"
ROMEO = "romeo@example.net"
ENTITY = "pres:juliet@example.com"


def presence(
    resource: str = "balcony",
    type: PresenceType = PresenceType.AVAILABLE,
    show: Show | None = None,
    statuses: tuple[XmppStatus, ...] = (),
    priority: int = 0,
    lang: str | None = None,
) -> XmppPresence:
    return XmppPresence(f"{JULIET}/{resource}", ROMEO, type, show, statuses, priority, lang)


def round_trip(*presences: XmppPresence, **kwargs: object) -> tuple[XmppPresence, ...]:
    """XMPP -> PIDF body bytes -> XMPP, as the gateway does it over a NOTIFY."""
    state = xmpp_to_pidf(ENTITY, presences, **kwargs)  # type: ignore[arg-type]
    assert state.document is not None
    document = parse_pidf(serialize_pidf(state.document))
    return pidf_to_xmpp(
        document, from_jid=JULIET, to_jid=ROMEO, content_language=state.content_language
    )


# --------------------------------------------------------------------------------------
# X2S subscriptions (RFC 8048 §5.2).


def test_cp21_xmpp_subscribe_becomes_subscribe_with_event_accept_and_expires() -> None:
    action = outbound_action(PresenceType.SUBSCRIBE, authorized=False, dialog_active=False)
    assert action is OutboundAction.SUBSCRIBE
    request = subscribe_request(action)
    assert request == SubscribeRequest(expires=3600, new_dialog=True)
    assert request.event == "presence"
    assert request.accept == PIDF_MIME_TYPE == "application/pidf+xml"
    # A repeated subscribe while the dialog lives is a refresh, not a second dialog.
    assert (
        outbound_action(PresenceType.SUBSCRIBE, authorized=True, dialog_active=True)
        is OutboundAction.REFRESH
    )


def test_cp22_pending_notify_gets_no_stanza() -> None:
    pending = SubscriptionStateValue(SubState.PENDING, expires=3600)
    for has_body in (False, True):
        outcome = on_notify(pending, active_seen=False, has_body=has_body)
        assert outcome == NotifyOutcome()
        assert not (outcome.send_subscribed or outcome.deliver_presence or outcome.send_unavailable)


def test_cp23_first_active_notify_sends_subscribed_and_presence_if_body() -> None:
    active = SubscriptionStateValue(SubState.ACTIVE, expires=3599)
    first = on_notify(active, active_seen=False, has_body=True)
    assert first.send_subscribed and first.deliver_presence
    bodiless = on_notify(active, active_seen=False, has_body=False)
    assert bodiless.send_subscribed and not bodiless.deliver_presence
    later = on_notify(active, active_seen=True, has_body=True)
    assert not later.send_subscribed and later.deliver_presence


@pytest.mark.parametrize(
    ("status", "refresh", "ended", "cancelled", "resubscribe", "min_expires"),
    [
        (403, True, True, True, Resubscribe.NO, False),
        (489, True, True, True, Resubscribe.NO, False),
        (603, True, True, True, Resubscribe.NO, False),
        (403, False, True, True, Resubscribe.NO, False),
        (423, True, False, False, Resubscribe.NOW, True),
        (481, True, True, False, Resubscribe.NOW, False),
        (404, True, True, False, Resubscribe.LATER, False),
        (480, True, True, False, Resubscribe.LATER, False),
        (485, True, True, False, Resubscribe.LATER, False),
        (604, True, True, False, Resubscribe.LATER, False),
        (408, True, False, False, Resubscribe.LATER, False),
        (500, True, False, False, Resubscribe.LATER, False),
        (503, False, True, False, Resubscribe.LATER, False),
    ],
)
def test_cp24_subscribe_failures(
    status: int,
    refresh: bool,
    ended: bool,
    cancelled: bool,
    resubscribe: Resubscribe,
    min_expires: bool,
) -> None:
    outcome = on_subscribe_failure(status, refresh=refresh)
    assert outcome.subscription_ended is ended
    assert outcome.cancel_authorization is cancelled  # only 403/489/603 (RFC 8048 §5.2.2)
    assert outcome.resubscribe is resubscribe
    assert outcome.use_min_expires is min_expires
    if resubscribe is Resubscribe.LATER:
        assert outcome.retry_after == RETRY_BACKOFF


def test_cp24_retry_after_is_honoured_and_2xx_is_not_a_failure() -> None:
    assert on_subscribe_failure(503, refresh=True, retry_after=30).retry_after == 30.0
    with pytest.raises(LocalPresenceError):
        on_subscribe_failure(200, refresh=True)
    assert is_subscribe_success(200) and is_subscribe_success(202)  # RFC 6665 §8.3.1
    assert not is_subscribe_success(180) and not is_subscribe_success(300)


def test_cp25_initial_presence_and_probe_refresh_the_subscription_before_expiry() -> None:
    assert (
        outbound_action(
            PresenceType.AVAILABLE, authorized=True, dialog_active=True, initial_presence=True
        )
        is OutboundAction.REFRESH
    )
    # After a restart the dialog may be gone: initial presence re-establishes it.
    assert (
        outbound_action(
            PresenceType.AVAILABLE, authorized=True, dialog_active=False, initial_presence=True
        )
        is OutboundAction.SUBSCRIBE
    )
    assert (
        outbound_action(PresenceType.PROBE, authorized=True, dialog_active=True)
        is OutboundAction.REFRESH
    )
    # A later (non-initial) presence or an unauthorized pair triggers nothing.
    assert (
        outbound_action(PresenceType.AVAILABLE, authorized=True, dialog_active=True)
        is OutboundAction.NONE
    )
    assert (
        outbound_action(
            PresenceType.AVAILABLE, authorized=False, dialog_active=False, initial_presence=True
        )
        is OutboundAction.NONE
    )
    assert subscribe_request(OutboundAction.REFRESH) == SubscribeRequest(3600, new_dialog=False)
    # Before expiry: 32 s (Timer F) ahead for an hour, half-way for short durations.
    assert refresh_deadline(3600, now=100.0) == 100.0 + 3568.0
    assert refresh_deadline(40, now=0.0) == 20.0
    assert refresh_deadline(0, now=5.0) is None


def test_cp26_unsubscribe_sends_expires_zero_in_dialog_then_unsubscribed() -> None:
    action = outbound_action(PresenceType.UNSUBSCRIBE, authorized=True, dialog_active=True)
    assert action is OutboundAction.UNSUBSCRIBE
    assert subscribe_request(action) == SubscribeRequest(expires=0, new_dialog=False)
    assert unsubscribed_after_unsubscribe(200)
    assert unsubscribed_after_unsubscribe(481)
    assert not unsubscribed_after_unsubscribe(100)
    # The terminated NOTIFY that follows is expected: nothing is re-established.
    terminated = SubscriptionStateValue(SubState.TERMINATED, reason=TerminationReason.TIMEOUT)
    outcome = on_notify(terminated, active_seen=True, has_body=False, unsubscribing=True)
    assert outcome.subscription_ended and outcome.resubscribe is Resubscribe.NO
    assert (
        outbound_action(PresenceType.UNSUBSCRIBE, authorized=False, dialog_active=False)
        is OutboundAction.NONE
    )


# --------------------------------------------------------------------------------------
# S2X subscriptions (RFC 8048 §5.3, §7.2).


def test_cp27_subscribe_without_expires_is_3600() -> None:
    assert granted_expires(None) == 3600 == DEFAULT_SUBSCRIPTION_EXPIRES
    assert granted_expires(600) == 600
    assert granted_expires(10**9) == MAX_SUBSCRIPTION_EXPIRES  # shortened, never lengthened
    plan = plan_inbound_subscribe(
        expires=None, in_dialog=False, authorization=Authorization.PENDING, state_known=False
    )
    assert plan.kind is InboundKind.NEW and plan.expires == 3600
    assert plan.notify_state.serialize() == "pending;expires=3600"


def test_cp28_subscribed_and_unsubscribed_become_empty_notifies() -> None:
    active = notify_for_authorization(PresenceType.SUBSCRIBED, expires_remaining=1800)
    assert active.serialize() == "active;expires=1800"
    rejected = notify_for_authorization(PresenceType.UNSUBSCRIBED, expires_remaining=1800)
    assert rejected.serialize() == "terminated;reason=rejected"
    assert not pidf_allowed(rejected)
    with pytest.raises(LocalPresenceError):
        notify_for_authorization(PresenceType.PROBE, expires_remaining=1)


def test_cp29_refresh_with_unknown_state_is_an_empty_notify() -> None:
    unknown = plan_inbound_subscribe(
        expires=3600, in_dialog=True, authorization=Authorization.GRANTED, state_known=False
    )
    assert unknown.kind is InboundKind.REFRESH
    assert unknown.notify_state == SubscriptionStateValue(SubState.ACTIVE, expires=3600)
    assert unknown.notify_body is NotifyBody.EMPTY
    known = plan_inbound_subscribe(
        expires=3600, in_dialog=True, authorization=Authorization.GRANTED, state_known=True
    )
    assert known.notify_body is NotifyBody.CURRENT
    # The XMPP side: no presence known at all -> no document -> empty NOTIFY.
    assert xmpp_to_pidf(ENTITY, ()).document is None


def test_cp30_in_dialog_expires_zero_closes_with_timeout_and_unavailable() -> None:
    plan = plan_inbound_subscribe(
        expires=0, in_dialog=True, authorization=Authorization.GRANTED, state_known=True
    )
    assert plan.kind is InboundKind.UNSUBSCRIBE
    assert plan.notify_state.serialize() == "terminated;reason=timeout"
    assert plan.notify_body is NotifyBody.CLOSED
    assert plan.xmpp_type is PresenceType.UNAVAILABLE
    assert pidf_allowed(plan.notify_state)
    # The closed document itself:
    closed = xmpp_to_pidf(ENTITY, (presence(type=PresenceType.UNAVAILABLE),)).document
    assert closed is not None and closed.tuples[0].basic is Basic.CLOSED


def test_cp31_no_type_is_open_and_unavailable_is_closed() -> None:
    open_doc = xmpp_to_pidf(ENTITY, (presence(),)).document
    closed_doc = xmpp_to_pidf(ENTITY, (presence(type=PresenceType.UNAVAILABLE),)).document
    assert open_doc is not None and closed_doc is not None
    assert open_doc.tuples[0].basic is Basic.OPEN
    assert closed_doc.tuples[0].basic is Basic.CLOSED
    assert b"<basic>open</basic>" in serialize_pidf(open_doc)
    assert b"<basic>closed</basic>" in serialize_pidf(closed_doc)


@pytest.mark.parametrize(
    ("presence_type", "notifies"),
    [
        (PresenceType.AVAILABLE, True),
        (PresenceType.UNAVAILABLE, True),
        (PresenceType.SUBSCRIBE, False),
        (PresenceType.SUBSCRIBED, False),
        (PresenceType.UNSUBSCRIBE, False),
        (PresenceType.UNSUBSCRIBED, False),
        (PresenceType.PROBE, False),
        (PresenceType.ERROR, False),
    ],
)
def test_cp32_only_no_type_or_unavailable_produce_a_notify(
    presence_type: PresenceType, notifies: bool
) -> None:
    assert produces_notify(presence_type) is notifies
    if not notifies:
        with pytest.raises(LocalPresenceError):
            xmpp_to_pidf(ENTITY, (presence(type=presence_type),))


@pytest.mark.parametrize(
    ("resource", "tuple_id"),
    [
        ("1abc", "ID-1abc"),
        ("balcony", "ID-balcony"),
        ("", "ID-"),
        ("home phone", "ID-home_20_phone"),
        ("a_b", "ID-a_5f_b"),
        ("tsch\u00fcss", "ID-tsch_fc_ss"),
        ("x/y@z", "ID-x_2f_y_40_z"),
        ("\U0001f600", "ID-_1f600_"),
    ],
)
def test_cp33_resource_becomes_prefixed_tuple_id_and_back(resource: str, tuple_id: str) -> None:
    assert tuple_id_for_resource(resource) == tuple_id
    assert is_ncname(tuple_id)
    assert resource_for_tuple_id(tuple_id) == resource
    document = xmpp_to_pidf(ENTITY, (presence(resource),)).document
    assert document is not None and document.tuples[0].id == tuple_id


@pytest.mark.parametrize(
    "foreign", ["t1", "bs35r9", "ID-a_zz_b", "ID-_", "ID-a_d800_", "1", "ID-_41_", "ID-a_0041_"]
)
def test_cp33_foreign_tuple_ids_are_used_as_they_are(foreign: str) -> None:
    assert resource_for_tuple_id(foreign) == foreign


def test_cp34_status_and_note_with_xml_lang_and_content_language() -> None:
    sent = presence(
        statuses=(XmppStatus("Gone to the orchard"), XmppStatus("Im Garten", "de")), lang="en"
    )
    state = xmpp_to_pidf(ENTITY, (sent,))
    assert state.content_language == "en"
    assert state.document is not None
    assert state.document.tuples[0].notes == (
        Note("Gone to the orchard"),
        Note("Im Garten", "de"),
    )
    (back,) = pidf_to_xmpp(
        state.document, from_jid=JULIET, to_jid=ROMEO, content_language=state.content_language
    )
    assert back.statuses == sent.statuses and back.lang == "en"
    # SIP -> XMPP: Content-Language -> xml:lang, note -> status.
    document = PidfDocument(
        ENTITY, (PresenceTuple("t1", Basic.OPEN, notes=(Note("Na zahrad\u011b", "cs"),)),)
    )
    (stanza,) = pidf_to_xmpp(document, from_jid=JULIET, to_jid=ROMEO, content_language="cs")
    assert stanza.lang == "cs" and stanza.statuses == (XmppStatus("Na zahrad\u011b", "cs"),)


@pytest.mark.parametrize(
    ("priority", "qvalue"),
    [
        (-5, None),
        (-128, None),
        (0, Decimal("0")),
        (1, Decimal("0.007")),
        (2, Decimal("0.015")),
        (126, Decimal("0.992")),
        (127, Decimal("1")),
    ],
)
def test_cp35_priority_mapping(priority: int, qvalue: Decimal | None) -> None:
    assert priority_to_qvalue(priority) == qvalue
    document = xmpp_to_pidf(ENTITY, (presence(priority=priority),)).document
    assert document is not None
    contact = document.tuples[0].contact
    assert contact is not None and contact.priority == qvalue
    body = serialize_pidf(document)
    assert (b"priority=" in body) is (qvalue is not None)  # negative: MUST NOT be mapped


def test_cp35_all_128_priorities_are_unique_and_invertible() -> None:
    values = [priority_to_qvalue(p) for p in range(128)]
    assert len(set(values)) == 128
    assert [qvalue_to_priority(v) for v in values if v is not None] == list(range(128))
    assert qvalue_to_priority(Decimal("0.5")) == 64
    with pytest.raises(LocalPresenceError):
        qvalue_to_priority(Decimal("1.5"))


def test_cp36_show_is_embedded_in_status_and_comes_back() -> None:
    document = xmpp_to_pidf(ENTITY, (presence(show=Show.AWAY),)).document
    assert document is not None
    body = serialize_pidf(document)
    assert b'<status><basic>open</basic><show xmlns="jabber:client">away</show></status>' in body
    (back,) = pidf_to_xmpp(parse_pidf(body), from_jid=JULIET, to_jid=ROMEO)
    assert back.show is Show.AWAY
    # Policy (spec §3.4): the RPID activity travels too, for SIP clients that read RPID.
    assert document.persons[0].activities == Activities((Activity.AWAY,))


def test_cp37_closed_is_unavailable_and_open_has_no_type() -> None:
    document = PidfDocument(
        ENTITY,
        (PresenceTuple("ID-pc", Basic.OPEN), PresenceTuple("ID-phone", Basic.CLOSED)),
    )
    pc, phone = pidf_to_xmpp(document, from_jid=JULIET, to_jid=ROMEO)
    assert pc.type is PresenceType.AVAILABLE and pc.type.value is None
    assert pc.from_jid == f"{JULIET}/pc"
    assert phone.type is PresenceType.UNAVAILABLE and phone.from_jid == f"{JULIET}/phone"


def test_cp38_probe_polls_and_out_of_dialog_expires_zero_probes_when_nothing_cached() -> None:
    action = outbound_action(PresenceType.PROBE, authorized=False, dialog_active=False)
    assert action is OutboundAction.POLL
    assert subscribe_request(action) == SubscribeRequest(expires=0, new_dialog=True)
    empty = plan_inbound_subscribe(
        expires=0, in_dialog=False, authorization=Authorization.GRANTED, state_known=False
    )
    assert empty.kind is InboundKind.POLL and empty.xmpp_type is PresenceType.PROBE
    assert empty.notify_state.serialize() == "terminated;reason=timeout"
    cached = plan_inbound_subscribe(
        expires=0, in_dialog=False, authorization=Authorization.GRANTED, state_known=True
    )
    assert cached.xmpp_type is None and cached.notify_body is NotifyBody.CURRENT
    pending = plan_inbound_subscribe(
        expires=0, in_dialog=False, authorization=Authorization.PENDING, state_known=False
    )
    assert pending.xmpp_type is None and pending.notify_body is NotifyBody.EMPTY


# --------------------------------------------------------------------------------------
# Winfo / authorization: a pending or denied watcher sees nothing (RFC 8048 §8.2).


@pytest.mark.parametrize(
    ("expires", "in_dialog", "authorization", "state", "body", "xmpp"),
    [
        (
            3600,
            False,
            Authorization.PENDING,
            "pending;expires=3600",
            NotifyBody.EMPTY,
            PresenceType.SUBSCRIBE,
        ),
        (
            3600,
            False,
            Authorization.DENIED,
            "pending;expires=3600",
            NotifyBody.EMPTY,
            PresenceType.SUBSCRIBE,
        ),
        (3600, False, Authorization.GRANTED, "active;expires=3600", NotifyBody.CURRENT, None),
        (3600, True, Authorization.PENDING, "pending;expires=3600", NotifyBody.EMPTY, None),
        (3600, True, Authorization.DENIED, "terminated;reason=rejected", NotifyBody.EMPTY, None),
        (
            0,
            True,
            Authorization.PENDING,
            "terminated;reason=timeout",
            NotifyBody.EMPTY,
            PresenceType.UNAVAILABLE,
        ),
        (0, False, Authorization.DENIED, "terminated;reason=timeout", NotifyBody.EMPTY, None),
    ],
)
def test_notifier_plans(
    expires: int,
    in_dialog: bool,
    authorization: Authorization,
    state: str,
    body: NotifyBody,
    xmpp: PresenceType | None,
) -> None:
    plan = plan_inbound_subscribe(
        expires=expires, in_dialog=in_dialog, authorization=authorization, state_known=True
    )
    assert plan.notify_state.serialize() == state
    assert plan.notify_body is body
    assert plan.xmpp_type is xmpp
    if authorization is not Authorization.GRANTED:
        assert plan.notify_body is not NotifyBody.CURRENT


@pytest.mark.parametrize(
    ("requested", "minimum", "too_brief"),
    [
        (60, 600, True),
        (599, 600, True),
        (600, 600, False),
        (0, 600, False),
        (None, 600, False),
        (3600, 7200, False),
        (3599, 7200, True),
    ],
)
def test_interval_too_brief(requested: int | None, minimum: int, too_brief: bool) -> None:
    assert interval_too_brief(requested, minimum=minimum) is too_brief


# --------------------------------------------------------------------------------------
# Subscription-State (RFC 6665 §4.1.3, §8.4).


def test_cp63_active_and_pending_must_carry_expires() -> None:
    for state in (SubState.ACTIVE, SubState.PENDING):
        with pytest.raises(LocalPresenceError):
            SubscriptionStateValue(state)
        assert ";expires=" in SubscriptionStateValue(state, expires=10).serialize()
        with pytest.raises(MappingRefused) as info:
            SubscriptionStateValue.parse(state.value)
        assert info.value.status == 400
    with pytest.raises(LocalPresenceError):
        SubscriptionStateValue(SubState.TERMINATED, expires=5)
    with pytest.raises(LocalPresenceError):
        SubscriptionStateValue(SubState.ACTIVE, expires=5, reason=TerminationReason.TIMEOUT)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("active;expires=3600", SubscriptionStateValue(SubState.ACTIVE, 3600)),
        ("Active ; Expires = 60 ; foo=bar", SubscriptionStateValue(SubState.ACTIVE, 60)),
        ("pending;expires=0", SubscriptionStateValue(SubState.PENDING, 0)),
        ("terminated", SubscriptionStateValue(SubState.TERMINATED)),
        (
            "terminated;reason=probation;retry-after=30",
            SubscriptionStateValue(SubState.TERMINATED, None, TerminationReason.PROBATION, 30),
        ),
        ("terminated;reason=bored", SubscriptionStateValue(SubState.TERMINATED)),
        ("terminated;expires=10", SubscriptionStateValue(SubState.TERMINATED)),
    ],
)
def test_subscription_state_parse(text: str, value: SubscriptionStateValue) -> None:
    assert SubscriptionStateValue.parse(text) == value


@pytest.mark.parametrize(
    "text",
    [
        "",
        "waiting;expires=3",
        "active;expires=-1",
        "active;expires=x",
        "pending;expires=99999999999",
    ],
)
def test_subscription_state_refusals(text: str) -> None:
    with pytest.raises(MappingRefused):
        SubscriptionStateValue.parse(text)


STATE_VALUES = st.one_of(
    st.builds(
        SubscriptionStateValue,
        st.sampled_from([SubState.ACTIVE, SubState.PENDING]),
        st.integers(0, 2**32 - 1),
    ),
    st.builds(
        SubscriptionStateValue,
        st.just(SubState.TERMINATED),
        st.none(),
        st.none() | st.sampled_from(TerminationReason),
        st.none() | st.integers(0, 2**32 - 1),
    ),
)


@settings(max_examples=200, deadline=None)
@given(STATE_VALUES)
def test_property_subscription_state_round_trip(value: SubscriptionStateValue) -> None:
    assert SubscriptionStateValue.parse(value.serialize()) == value


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_property_subscription_state_any_text_parses_or_is_refused(text: str) -> None:
    try:
        SubscriptionStateValue.parse(text)
    except MappingRefused:
        pass


@pytest.mark.parametrize(
    ("reason", "retry_after", "unsubscribed", "unavailable", "resubscribe"),
    [
        (TerminationReason.REJECTED, None, True, True, Resubscribe.NO),
        (TerminationReason.NORESOURCE, None, True, True, Resubscribe.NO),
        (TerminationReason.DEACTIVATED, None, False, False, Resubscribe.NOW),
        (TerminationReason.TIMEOUT, None, False, False, Resubscribe.NOW),
        (TerminationReason.TIMEOUT, 60, False, True, Resubscribe.LATER),
        (TerminationReason.PROBATION, 60, False, True, Resubscribe.LATER),
        (TerminationReason.GIVEUP, None, False, True, Resubscribe.LATER),
        (TerminationReason.INVARIANT, None, False, True, Resubscribe.NO),
        (None, None, False, True, Resubscribe.LATER),
    ],
)
def test_terminated_notify_never_leaves_a_contact_stuck_online(
    reason: TerminationReason | None,
    retry_after: int | None,
    unsubscribed: bool,
    unavailable: bool,
    resubscribe: Resubscribe,
) -> None:
    state = SubscriptionStateValue(SubState.TERMINATED, None, reason, retry_after)
    outcome = on_notify(state, active_seen=True, has_body=False)
    assert outcome.subscription_ended
    assert outcome.send_unsubscribed is unsubscribed
    assert outcome.send_unavailable is unavailable
    assert outcome.resubscribe is resubscribe
    if resubscribe is Resubscribe.LATER:
        assert outcome.retry_after == (retry_after if retry_after is not None else RETRY_BACKOFF)
    # Either the user is told the contact is gone, or a new subscription replaces it.
    assert outcome.send_unavailable or outcome.send_unsubscribed or resubscribe is Resubscribe.NOW


@pytest.mark.parametrize(
    ("status", "removes"),
    [
        (None, True),
        (481, True),
        (404, True),
        (489, True),
        (501, True),
        (604, True),
        (500, False),
        (403, False),
        (408, False),
        (503, False),
    ],
)
def test_notify_failure_removes_subscription(status: int | None, removes: bool) -> None:
    assert notify_failure_removes_subscription(status) is removes


# --------------------------------------------------------------------------------------
# Rate limiting (RFC 3856 §6.10).


def test_cp68_at_most_one_notify_per_5s_with_merged_state() -> None:
    throttle: NotifyThrottle[tuple[XmppPresence, ...]] = NotifyThrottle(
        merge=lambda pending, new: merge_pending_presence_all(pending, new)
    )
    now = 0.0
    sent: list[tuple[float, tuple[XmppPresence, ...]]] = []

    def offer(update: XmppPresence) -> float | None:
        nonlocal throttle
        step = throttle.offer((update,), now)
        throttle = step.throttle
        if step.send is not None:
            sent.append((now, step.send))
        return step.deadline

    assert offer(presence("pc", show=Show.AWAY)) is None  # first change goes at once
    now = 1.0
    deadline = offer(presence("pc", show=Show.DND))
    assert deadline == MIN_NOTIFY_INTERVAL
    now = 2.0
    offer(presence("phone"))
    now = 3.0
    offer(presence("pc", show=Show.XA))
    assert len(sent) == 1
    now = 4.9
    step = throttle.due(now)
    assert step.send is None and step.deadline == 5.0
    now = 5.0
    step = throttle.due(now)
    throttle = step.throttle
    assert step.send is not None
    # Merged, not dropped: the latest state of every resource that changed.
    assert [(p.resource, p.show) for p in step.send] == [("pc", Show.XA), ("phone", None)]
    assert throttle.next_deadline() is None
    sent.append((now, step.send))
    now = 7.0
    assert offer(presence("pc")) == 10.0
    # A NOTIFY forced out by a SUBSCRIBE (RFC 6665 §4.2.1.2) carries the full state.
    throttle = throttle.sent(8.0)
    assert throttle.pending is None and throttle.next_deadline() is None
    times = [t for t, _ in sent]
    assert all(b - a >= MIN_NOTIFY_INTERVAL for a, b in zip(times, times[1:], strict=False))


def merge_pending_presence_all(
    pending: tuple[XmppPresence, ...], new: tuple[XmppPresence, ...]
) -> tuple[XmppPresence, ...]:
    for item in new:
        pending = merge_pending_presence(pending, item)
    return pending


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 3), st.integers(0, 3)), min_size=1, max_size=30))
def test_property_throttle_rate_and_no_loss(events: list[tuple[float, int]]) -> None:
    throttle: NotifyThrottle[tuple[int, ...]] = NotifyThrottle(merge=lambda a, b: a + b)
    now = 0.0
    sent: list[tuple[float, tuple[int, ...]]] = []
    offered: list[int] = []
    for gap, value in events:
        now += gap
        # Fire a due timer first, as the runtime would.
        deadline = throttle.next_deadline()
        if deadline is not None and deadline <= now:
            step = throttle.due(deadline)
            throttle = step.throttle
            if step.send is not None:
                sent.append((deadline, step.send))
        step = throttle.offer((value,), now)
        throttle = step.throttle
        offered.append(value)
        if step.send is not None:
            sent.append((now, step.send))
    deadline = throttle.next_deadline()
    if deadline is not None:
        step = throttle.due(deadline)
        assert step.send is not None
        sent.append((deadline, step.send))
    times = [t for t, _ in sent]
    assert all(b - a >= MIN_NOTIFY_INTERVAL - 1e-9 for a, b in zip(times, times[1:], strict=False))
    assert [v for _, batch in sent for v in batch] == offered


# --------------------------------------------------------------------------------------
# Rich presence policy and multiple resources.


def test_policy_tables_cover_every_show_and_activity() -> None:
    assert set(ACTIVITY_TO_SHOW) == set(Activity)
    assert show_to_activities(Show.AWAY) == (Activity.AWAY,)
    assert show_to_activities(Show.XA) == (Activity.AWAY,)
    assert show_to_activities(Show.DND) == (Activity.BUSY,)
    assert show_to_activities(Show.CHAT) == () == show_to_activities(None)
    for activity, show in [
        (Activity.AWAY, Show.AWAY),
        (Activity.BUSY, Show.DND),
        (Activity.MEETING, Show.DND),
        (Activity.ON_THE_PHONE, Show.DND),
        (Activity.PRESENTATION, Show.DND),
        (Activity.PERFORMANCE, Show.DND),
        (Activity.PERMANENT_ABSENCE, Show.XA),
        (Activity.VACATION, Show.XA),
        (Activity.SLEEPING, Show.XA),
        (Activity.TRAVEL, Show.XA),
        (Activity.WORKING, None),
    ]:
        assert activities_to_show(Activities((activity,))) is show
    # The most restrictive wins.
    assert activities_to_show(Activities((Activity.MEAL, Activity.MEETING))) is Show.DND
    assert activities_to_show(Activities((Activity.AWAY, Activity.VACATION))) is Show.XA


def test_activities_alone_give_a_show_and_notes_fall_back_to_the_person() -> None:
    document = PidfDocument(
        "pres:bob@example.com",
        (PresenceTuple("t1", Basic.OPEN, contact=Contact("sip:bob@example.com")),),
        persons=(Person("p", Activities((Activity.ON_THE_PHONE,)), (Note("On a call", "en"),)),),
    )
    (stanza,) = pidf_to_xmpp(document, from_jid="bob@example.com", to_jid=ROMEO)
    assert stanza.show is Show.DND and stanza.statuses == (XmppStatus("On a call", "en"),)
    (plain,) = pidf_to_xmpp(
        document,
        from_jid="bob@example.com",
        to_jid=ROMEO,
        policy=RichPresencePolicy(read_activities=False),
    )
    assert plain.show is None


def test_colliding_and_oversized_tuple_ids_never_share_a_resource() -> None:
    document = PidfDocument(
        ENTITY,
        (
            PresenceTuple("pc", Basic.OPEN),
            PresenceTuple("ID-pc", Basic.CLOSED),
            PresenceTuple("x" * 1024, Basic.OPEN),
        ),
    )
    seen = pidf_to_xmpp(document, from_jid=JULIET, to_jid=ROMEO)
    assert [(p.resource, p.type) for p in seen] == [
        ("pc", PresenceType.AVAILABLE),
        ("ID-pc", PresenceType.UNAVAILABLE),
    ]


def test_tuple_without_basic_is_skipped_and_no_body_yields_nothing() -> None:
    document = PidfDocument(ENTITY, (PresenceTuple("t1"), PresenceTuple("t2", Basic.OPEN)))
    (only,) = pidf_to_xmpp(document, from_jid=JULIET, to_jid=ROMEO)
    assert only.from_jid == f"{JULIET}/t2"
    assert pidf_to_xmpp(None, from_jid=JULIET, to_jid=ROMEO) == ()


def test_multiple_resources_become_tuples_and_most_available_is_shown() -> None:
    pc = presence("pc", show=Show.AWAY, priority=5, statuses=(XmppStatus("lunch"),))
    phone = presence("phone", priority=1)
    laptop = presence("laptop", type=PresenceType.UNAVAILABLE)
    state = xmpp_to_pidf(
        ENTITY, (pc, phone, laptop), contacts={"pc": "sip:juliet@example.com;gr=pc"}
    )
    assert state.document is not None
    ids = [t.id for t in state.document.tuples]
    assert ids == ["ID-pc", "ID-phone", "ID-laptop"]
    assert state.document.tuples[0].contact == Contact(
        "sip:juliet@example.com;gr=pc", Decimal("0.039")
    )
    assert state.document.tuples[1].contact == Contact(ENTITY, Decimal("0.007"))
    # The person's activities follow the most available resource (the phone: plain online).
    assert state.document.persons == ()
    assert most_available((pc, phone, laptop)) == phone
    assert round_trip(pc, phone, laptop) == (pc, phone, laptop)
    with pytest.raises(LocalPresenceError):
        xmpp_to_pidf(ENTITY, (pc, pc))


def test_vanished_resources_get_unavailable() -> None:
    now = (presence("pc"),)
    gone = vanished_resources(
        [f"{JULIET}/pc", f"{JULIET}/phone", f"{JULIET}/phone"], now, to_jid=ROMEO
    )
    assert gone == (XmppPresence(f"{JULIET}/phone", ROMEO, PresenceType.UNAVAILABLE),)


def test_closed_dnd_policy_is_opt_in() -> None:
    document = PidfDocument(
        "pres:bob@example.com",
        (PresenceTuple("t1", Basic.CLOSED),),
        persons=(Person("p", Activities((Activity.BUSY,))),),
    )
    (standard,) = pidf_to_xmpp(document, from_jid="bob@example.com", to_jid=ROMEO)
    assert standard.type is PresenceType.UNAVAILABLE  # RFC 8048 §6.3 MUST
    (rich,) = pidf_to_xmpp(
        document,
        from_jid="bob@example.com",
        to_jid=ROMEO,
        policy=RichPresencePolicy(closed_dnd_is_dnd=True),
    )
    assert rich.type is PresenceType.AVAILABLE and rich.show is Show.DND


def test_received_stanza_values_are_checked() -> None:
    ok = XmppPresence.received(f"{JULIET}/a", ROMEO, None, "dnd", [("x", "en")], "-3", "en")
    assert ok.show is Show.DND and ok.priority == -3 and ok.type is PresenceType.AVAILABLE
    for kwargs in [
        {"type": "available"},
        {"show": "sleepy"},
        {"priority": "500"},
        {"priority": "high"},
        {"lang": "e n"},
        {"statuses": [("a\x01", None)]},
    ]:
        with pytest.raises(StanzaRefused) as info:
            XmppPresence.received(f"{JULIET}/a", ROMEO, **kwargs)  # type: ignore[arg-type]
        assert info.value.error.condition == "bad-request"


# --------------------------------------------------------------------------------------
# Property: XMPP presence -> PIDF -> XMPP presence is lossless for show/status/priority.

XML_TEXT = st.text(st.characters(exclude_categories=("Cs",)).filter(is_xml_text), max_size=15)
LANG = st.none() | st.sampled_from(["en", "fr", "cs", "en-GB", "pt-BR"])
RESOURCES = st.text(st.characters(exclude_categories=("Cs",)).filter(is_xml_text), max_size=10)


@st.composite
def resource_presences(draw: st.DrawFn) -> tuple[XmppPresence, ...]:
    resources = draw(st.lists(RESOURCES, min_size=1, max_size=4, unique=True))
    lang = draw(LANG)
    out = []
    for resource in resources:
        available = draw(st.booleans())
        out.append(
            XmppPresence(
                from_jid=f"{JULIET}/{resource}" if resource else JULIET,
                to_jid=ROMEO,
                type=PresenceType.AVAILABLE if available else PresenceType.UNAVAILABLE,
                show=draw(st.none() | st.sampled_from(Show)) if available else None,
                statuses=tuple(draw(st.lists(st.builds(XmppStatus, XML_TEXT, LANG), max_size=3))),
                priority=draw(st.integers(0, 127)),
                lang=lang,
            )
        )
    return tuple(out)


@settings(max_examples=200, deadline=None)
@given(resource_presences())
def test_property_xmpp_pidf_xmpp_round_trip(presences: tuple[XmppPresence, ...]) -> None:
    assert round_trip(*presences) == presences


@settings(max_examples=100, deadline=None)
@given(resource_presences(), st.integers(-128, -1))
def test_property_negative_priority_comes_back_as_zero(
    presences: tuple[XmppPresence, ...], priority: int
) -> None:
    first = XmppPresence(
        presences[0].from_jid,
        ROMEO,
        presences[0].type,
        presences[0].show,
        presences[0].statuses,
        priority,
        presences[0].lang,
    )
    back = round_trip(first, *presences[1:])
    assert back[0].priority == 0
    assert back[1:] == presences[1:]
