"""RFC 6665 subscriptions through two SIP endpoints back to back, with a scripted clock.

``SubPair`` extends ``LayeredPair`` with a ``SubscriptionManager`` on each endpoint: ``a`` is
the subscriber (the gateway subscribing on behalf of an XMPP user), ``b`` the notifier
(a SIP watcher subscribed to the gateway), unless a test drives one side by hand
(``manual_a``/``manual_b``) to play a peer that misbehaves in a chosen way.
"""

from __future__ import annotations

import gc
import json
import random
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as note_case
from hypothesis import strategies as st

from sipxmpp.gateway.sip import (
    ENDING_STATUSES,
    MIN_REFRESH_LEAD,
    REASON_EXPIRED,
    REASON_NO_ANSWER,
    REASON_NO_NOTIFY,
    EndpointConfig,
    LocalSipError,
    Message,
    NotifyReceived,
    RefreshDue,
    Request,
    RequestReceived,
    Response,
    ResponseReceived,
    Role,
    SipEndpoint,
    SubscribeFailed,
    SubscribeRequested,
    SubscriptionActive,
    SubscriptionConfig,
    SubscriptionManager,
    SubscriptionPending,
    SubscriptionTerminated,
    make_request,
    make_response,
    parse_message,
    parse_name_addr,
    parse_subscription_state,
    render_subscription_tables,
)
from sipxmpp.gateway.sip import grammar as sip_grammar
from support.clock import CountingIds
from support.sippair import DropRule, LayeredPair

PIDF = (
    b'<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" '
    b'entity="sip:bob@b.test"><tuple id="t1"><status><basic>open</basic></status>'
    b"</tuple></presence>"
)
CLOSED = PIDF.replace(b"open", b"closed")
PIDF_TYPE = "application/pidf+xml"
TIMER_N = 32.0  # 64*T1 with the default T1 of 500 ms


class SubPair(LayeredPair):
    """Two endpoints, each with a SubscriptionManager, pumped in memory."""

    def __init__(
        self,
        transport: Any = "udp",
        *,
        drop: DropRule | None = None,
        config: SubscriptionConfig | None = None,
        config_b: SubscriptionConfig | None = None,
        manual_a: bool = False,
        manual_b: bool = False,
    ) -> None:
        super().__init__(transport, drop=drop)
        cfg = config or SubscriptionConfig()
        suffix = "" if transport == "udp" else f";transport={transport}"
        self.ma = SubscriptionManager(
            self.a, cfg, CountingIds("A"), contact=lambda t: f"sip:gw-a@127.0.0.1:5071{suffix}"
        )
        self.mb = SubscriptionManager(
            self.b,
            config_b or cfg,
            CountingIds("B"),
            contact=lambda t: f"sip:gw-b@127.0.0.1:5072{suffix}",
        )
        self.attach("ma", "mb", manual_a=manual_a, manual_b=manual_b)

    def wire(
        self, direction: str | None = None, method: str | None = None, status: int | None = None
    ) -> list[Message]:
        """Messages delivered so far, parsed; optionally filtered."""
        out: list[Message] = []
        for d, data in self.delivered:
            if direction is not None and d != direction:
                continue
            msg = parse_message(data)
            if method is not None:
                if isinstance(msg, Request):
                    if msg.method != method:
                        continue
                elif (msg.headers.get("CSeq") or "").split()[-1] != method:
                    continue
            if status is not None and not (isinstance(msg, Response) and msg.status == status):
                continue
            out.append(msg)
        return out

    def subscribe(self, **kwargs: Any) -> str:
        args: dict[str, Any] = {
            "request_uri": "sip:bob@127.0.0.1:5072",
            "from_uri": "sip:alice@a.test",
            "to_uri": "sip:bob@b.test",
            "destination": self.addr_b,
            "now": self.now,
        }
        args.update(kwargs)
        sid = self.ma.subscribe(**args)
        self.pump()
        return sid

    def fetch(self) -> str:
        sid = self.ma.fetch(
            request_uri="sip:bob@127.0.0.1:5072",
            from_uri="sip:alice@a.test",
            to_uri="sip:bob@b.test",
            destination=self.addr_b,
            now=self.now,
        )
        self.pump()
        return sid


def requested(events: list[Any]) -> SubscribeRequested:
    [req] = [e for e in events if isinstance(e, SubscribeRequested)]
    return req


def establish(
    pair: SubPair, *, state: Any = "active", body: bytes | None = PIDF, **kwargs: Any
) -> tuple[str, str]:
    """a subscribes, b accepts with ``state``; returns (subscriber id, notifier id)."""
    sid_a = pair.subscribe(**kwargs)
    req = requested(pair.take_sb())
    pair.mb.accept(
        req.sub_id, pair.now, state=state, body=body, content_type=PIDF_TYPE if body else None
    )
    pair.pump()
    return sid_a, req.sub_id


def substate(msg: Message) -> tuple[str, int | None, str | None, int | None]:
    return parse_subscription_state(msg.headers.get("Subscription-State") or "")


def cseq(msg: Message) -> int:
    return int((msg.headers.get("CSeq") or "0").split()[0])


def received_requests(pair: SubPair, side: str, method: str) -> list[RequestReceived]:
    events = pair.take_a() if side == "a" else pair.take_b()
    return [e for e in events if isinstance(e, RequestReceived) and e.request.method == method]


def notify_from_b(
    pair: SubPair,
    subscribe_req: Request,
    *,
    seq: int,
    state: str = "active;expires=600",
    from_tag: str = "bt",
    event: str = "presence",
    body: bytes = b"",
    record_route: str | None = None,
    to_tag: str | None = None,
) -> str:
    """A NOTIFY that a hand-driven notifier b sends for ``subscribe_req``."""
    h = subscribe_req.headers
    sub_from = parse_name_addr(h.get("From") or "")
    sub_to = parse_name_addr(h.get("To") or "")
    contact = parse_name_addr(h.get("Contact") or "")
    extra = [("Event", event), ("Subscription-State", state)]
    if record_route:
        extra.append(("Record-Route", record_route))
    req = make_request(
        "NOTIFY",
        str(contact.uri),
        from_addr=str(sub_to.uri),
        from_tag=from_tag,
        to_addr=sub_from.with_tag(to_tag) if to_tag else sub_from,
        call_id=h.get("Call-ID") or "",
        cseq=seq,
        contact="<sip:bob@127.0.0.1:5072>",
        headers=extra,
        body=body,
        content_type=PIDF_TYPE if body else None,
    )
    return pair.b.send_request(req, pair.addr_a, pair.now)


def answer(pair: SubPair, side: str, event: RequestReceived, status: int, **kwargs: Any) -> None:
    endpoint: SipEndpoint = pair.a if side == "a" else pair.b
    tag = kwargs.pop("to_tag", "bt")
    endpoint.send_response(make_response(event.request, status, to_tag=tag, **kwargs), pair.now)


# --- the full lifecycle ------------------------------------------------------------------


def test_full_lifecycle_subscribe_notify_refresh_unsubscribe() -> None:
    pair = SubPair()
    sid_a = pair.subscribe()
    [sub] = pair.wire("a->b", "SUBSCRIBE")
    assert isinstance(sub, Request)
    assert sub.headers.get("Event") == "presence"
    assert sub.headers.get("Accept") == PIDF_TYPE
    assert sub.headers.get("Expires") == "3600"
    assert sub.headers.get("Allow-Events") == "presence"
    assert sub.headers.get("Contact") == "<sip:gw-a@127.0.0.1:5071>"
    assert pair.ma.get(sid_a).state == "notify_wait"  # type: ignore[union-attr]

    req = requested(pair.take_sb())
    assert (req.watcher, req.presentity, req.event) == (
        "sip:alice@a.test",
        "sip:bob@b.test",
        "presence",
    )
    assert (req.expires, req.refresh, req.fetch) == (3600, False, False)
    sid_b = req.sub_id
    pair.mb.accept(sid_b, pair.now, state="active", body=PIDF, content_type=PIDF_TYPE)
    pair.pump()

    [ok] = pair.wire("b->a", "SUBSCRIBE", 200)
    assert ok.headers.get("Expires") == "3600"
    assert ok.headers.get("Contact") == "<sip:gw-b@127.0.0.1:5072>"
    [notify] = pair.wire("b->a", "NOTIFY")
    assert isinstance(notify, Request)
    assert notify.headers.get("Subscription-State") == "active;expires=3600"
    assert notify.headers.get("Event") == "presence"
    assert notify.body == PIDF
    assert cseq(notify) == 1
    events = pair.take_sa()
    assert events[0] == SubscriptionActive(sid_a, 3600)
    assert isinstance(events[1], NotifyReceived)
    assert (events[1].state, events[1].body, events[1].content_type) == ("active", PIDF, PIDF_TYPE)
    view_a = pair.ma.get(sid_a)
    view_b = pair.mb.get(sid_b)
    assert view_a is not None and view_b is not None
    assert view_a.state == view_b.state == "active"
    assert (view_a.call_id, view_a.local_tag, view_a.remote_tag) == (
        view_b.call_id,
        view_b.remote_tag,
        view_b.local_tag,
    )

    # Refresh at (1 - 0.1) of 3600 s, in the dialog, with the next CSeq.
    pair.run(3239.0)
    assert len(pair.wire("a->b", "SUBSCRIBE")) == 1
    pair.run(3240.0)
    subs = pair.wire("a->b", "SUBSCRIBE")
    assert len(subs) == 2 and cseq(subs[1]) == 2
    assert parse_name_addr(subs[1].headers.get("To") or "").tag == view_b.local_tag
    refresh = requested(pair.take_sb())
    assert (refresh.sub_id, refresh.refresh, refresh.expires) == (sid_b, True, 3600)
    pair.mb.accept(sid_b, pair.now, state="active", body=PIDF, content_type=PIDF_TYPE)
    pair.pump()
    notifies = pair.wire("b->a", "NOTIFY")
    assert len(notifies) == 2 and cseq(notifies[1]) == 2
    pair.take_sa()
    assert pair.ma.get(sid_a).expires_at == pytest.approx(3240.0 + 3600)  # type: ignore[union-attr]

    # Unsubscribe: Expires 0, 200 from the layer, the runtime's terminated NOTIFY.
    pair.ma.unsubscribe(sid_a, pair.now)
    pair.pump()
    unsub = pair.wire("a->b", "SUBSCRIBE")[-1]
    assert unsub.headers.get("Expires") == "0"
    assert pair.wire("b->a", "SUBSCRIBE", 200)[-1].headers.get("Expires") == "0"
    bye = requested(pair.take_sb())
    assert (bye.sub_id, bye.expires, bye.refresh) == (sid_b, 0, True)
    assert pair.ma.get(sid_a).state == "terminating"  # type: ignore[union-attr]
    pair.mb.terminate(sid_b, pair.now, reason="timeout", body=CLOSED, content_type=PIDF_TYPE)
    pair.pump()
    final = pair.wire("b->a", "NOTIFY")[-1]
    assert final.headers.get("Subscription-State") == "terminated;reason=timeout"
    events = pair.take_sa()
    assert isinstance(events[0], NotifyReceived) and events[0].body == CLOSED
    assert events[1] == SubscriptionTerminated(sid_a, Role.SUBSCRIBER, "timeout", None)
    assert pair.ma.count() == pair.mb.count() == 0
    assert pair.take_sb() == []
    pair.advance(40)
    assert pair.ma.transactions_in_flight == pair.mb.transactions_in_flight == 0
    assert pair.a.transaction_count == pair.b.transaction_count == 0


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_lifecycle_over_each_transport(transport: str) -> None:
    pair = SubPair(transport)
    sid_a, sid_b = establish(pair)
    assert isinstance(pair.take_sa()[0], SubscriptionActive)
    pair.mb.notify(sid_b, pair.now, state="active", body=CLOSED, content_type=PIDF_TYPE)
    pair.pump()
    [event] = pair.take_sa()
    assert isinstance(event, NotifyReceived) and event.body == CLOSED
    pair.mb.terminate(sid_b, pair.now, reason="rejected")
    pair.pump()
    events = pair.take_sa()
    assert events[-1] == SubscriptionTerminated(sid_a, Role.SUBSCRIBER, "rejected", None)
    assert pair.ma.count() == pair.mb.count() == 0


def test_pending_then_active() -> None:
    pair = SubPair()
    sid_a, sid_b = establish(pair, state="pending", body=None)
    events = pair.take_sa()
    assert events[0] == SubscriptionPending(sid_a)
    assert isinstance(events[1], NotifyReceived) and events[1].body == b""
    notify = pair.wire("b->a", "NOTIFY")[-1]
    assert notify.headers.get("Subscription-State") == "pending;expires=3600"
    assert notify.headers.get("Content-Type") is None
    pair.advance(100)
    pair.mb.notify(sid_b, pair.now, state="active", body=PIDF, content_type=PIDF_TYPE)
    pair.pump()
    assert (
        pair.wire("b->a", "NOTIFY")[-1].headers.get("Subscription-State") == "active;expires=3500"
    )
    events = pair.take_sa()
    assert events[0] == SubscriptionActive(sid_a, 3500)
    # active -> active reports only the NOTIFY.
    pair.mb.notify(sid_b, pair.now, state="active", body=PIDF, content_type=PIDF_TYPE)
    pair.pump()
    assert [type(e) for e in pair.take_sa()] == [NotifyReceived]


# --- conformance points 63-66 --------------------------------------------------------------


def test_cp63_every_notify_carries_subscription_state_with_expires_or_reason() -> None:
    """RFC 6665 §4.2.2: every NOTIFY has Subscription-State; active/pending carry
    ;expires= (the seconds left), terminated a ;reason=. Exercised through pending,
    active, a refresh, an unsubscribe, an expiry, a fetch and a terminate()."""
    pair = SubPair(config=SubscriptionConfig(max_expires=600))
    sid_a, sid_b = establish(pair, state="pending", body=None)
    pair.advance(10)
    pair.mb.notify(sid_b, pair.now, state="active", body=PIDF, content_type=PIDF_TYPE)
    pair.advance(530)  # the refresh, at 600 - 60
    pair.mb.accept(requested(pair.take_sb()).sub_id, pair.now, state="active")
    pair.ma.unsubscribe(sid_a, pair.now)
    pair.pump()
    pair.mb.terminate(requested(pair.take_sb()).sub_id, pair.now, reason="timeout")
    establish(pair, auto_refresh=False)  # left to expire
    pair.advance(700)
    pair.fetch()
    pair.mb.accept(requested(pair.take_sb()).sub_id, pair.now, state="active")
    establish(pair)
    pair.mb.terminate(pair.mb.sub_ids()[0], pair.now)
    pair.pump()
    notifies = pair.wire("b->a", "NOTIFY")
    states = [substate(n) for n in notifies]
    assert [s[:3] for s in states] == [
        ("pending", 600, None),
        ("active", 590, None),
        ("active", 600, None),  # after the refresh's 200
        ("terminated", None, "timeout"),  # unsubscribed
        ("active", 600, None),
        ("terminated", None, "timeout"),  # expired
        ("terminated", None, "timeout"),  # fetch
        ("active", 600, None),
        ("terminated", None, "noresource"),  # terminate()
    ]
    for notify in notifies:
        assert notify.headers.get("Event") == "presence"
        assert notify.headers.get("Contact") == "<sip:gw-b@127.0.0.1:5072>"
    assert pair.ma.count() == pair.mb.count() == 0


def test_cp64_a_notify_follows_every_2xx_at_once() -> None:
    """RFC 6665 §4.2.1.2: after the 2xx to a new SUBSCRIBE, to a refresh and to a fetch,
    the NOTIFY leaves in the same instant, right behind the 2xx."""
    pair = SubPair(config=SubscriptionConfig(max_expires=300))
    sid_a, sid_b = establish(pair)
    pair.advance(300 - 30)  # the refresh (lead: max(30, 5) s)
    pair.mb.accept(
        requested(pair.take_sb()).sub_id,
        pair.now,
        state="active",
        body=PIDF,
        content_type=PIDF_TYPE,
    )
    pair.pump()
    pair.fetch()
    pair.mb.accept(
        requested(pair.take_sb()).sub_id,
        pair.now,
        state="active",
        body=PIDF,
        content_type=PIDF_TYPE,
    )
    pair.pump()
    from_b = [parse_message(data) for d, data in pair.delivered if d == "b->a"]
    oks = [
        i
        for i, m in enumerate(from_b)
        if isinstance(m, Response)
        and m.status == 200
        and "SUBSCRIBE" in (m.headers.get("CSeq") or "")
    ]
    assert len(oks) == 3
    for i in oks:
        follower = from_b[i + 1]
        assert isinstance(follower, Request) and follower.method == "NOTIFY"
        assert follower.headers.get("Call-ID") == from_b[i].headers.get("Call-ID")


def test_cp64_layer_sends_the_owed_notify_when_the_runtime_does_not() -> None:
    """After the 200 to an unsubscribe the runtime owes the final NOTIFY; if it never
    calls terminate(), the layer sends it (terminated;reason=timeout) at the deadline."""
    pair = SubPair()
    sid_a, sid_b = establish(pair)
    pair.ma.unsubscribe(sid_a, pair.now)
    pair.pump()
    assert requested(pair.take_sb()).expires == 0
    pair.advance(29)
    assert (
        pair.wire("b->a", "NOTIFY")[-1].headers.get("Subscription-State") == "active;expires=3600"
    )
    pair.advance(2)
    assert (
        pair.wire("b->a", "NOTIFY")[-1].headers.get("Subscription-State")
        == "terminated;reason=timeout"
    )
    assert pair.take_sb() == [SubscriptionTerminated(sid_b, Role.NOTIFIER, "timeout", None)]
    assert pair.take_sa()[-1] == SubscriptionTerminated(sid_a, Role.SUBSCRIBER, "timeout", None)


def test_cp65_unknown_event_package_gets_489_with_allow_events() -> None:
    pair = SubPair()
    sid = pair.subscribe(event="dialog")
    [resp] = pair.wire("b->a", "SUBSCRIBE")
    assert isinstance(resp, Response)
    assert (resp.status, resp.headers.get("Allow-Events")) == (489, "presence")
    assert pair.take_sb() == []
    assert pair.take_sa() == [SubscribeFailed(sid, 489, None, False, True)]
    assert pair.ma.count() == pair.mb.count() == 0


def test_cp65_never_202_and_a_received_202_counts_as_200() -> None:
    pair = SubPair()
    establish(pair)
    pair.fetch()
    sid = requested(pair.take_sb()).sub_id
    with pytest.raises(LocalSipError):
        pair.mb.reject(sid, pair.now, 202)
    pair.mb.accept(sid, pair.now, state="pending")
    pair.pump()
    statuses = [m.status for m in pair.wire() if isinstance(m, Response)]
    assert 202 not in statuses and 200 in statuses

    # A (deprecated) 202 from a peer is a 200 (RFC 6665 §8.3.1).
    manual = SubPair(manual_b=True)
    sid_a = manual.subscribe()
    [sub] = received_requests(manual, "b", "SUBSCRIBE")
    answer(
        manual, "b", sub, 202, headers=(("Expires", "600"), ("Contact", "<sip:bob@127.0.0.1:5072>"))
    )
    manual.pump()
    view = manual.ma.get(sid_a)
    assert view is not None and view.remote_tag == "bt" and view.expires == 600
    assert manual.take_sa() == []
    notify_from_b(manual, sub.request, seq=1)
    manual.pump()
    assert manual.wire("a->b", "NOTIFY", 200)
    assert isinstance(manual.take_sa()[0], SubscriptionActive)


def test_cp66_notify_for_an_unknown_dialog_gets_481() -> None:
    pair = SubPair(manual_b=True)
    sid_a = pair.subscribe()
    [sub] = received_requests(pair, "b", "SUBSCRIBE")
    answer(
        pair, "b", sub, 200, headers=(("Expires", "600"), ("Contact", "<sip:bob@127.0.0.1:5072>"))
    )
    pair.pump()
    cases = [
        {"to_tag": "not-ours"},  # the To tag names no dialog of ours
        {"event": "presence;id=7"},  # same dialog, another subscription (§4.4.1)
        {"event": "dialog"},
        {"from_tag": "other-fork"},  # a second fork of a confirmed SUBSCRIBE (RFC 3856 §6.9)
    ]
    local_tag = pair.ma.get(sid_a).local_tag  # type: ignore[union-attr]
    for seq, case in enumerate(cases, start=1):
        kwargs: dict[str, Any] = {"to_tag": local_tag, **case}
        notify_from_b(pair, sub.request, seq=seq, **kwargs)
        pair.pump()
        assert pair.wire("a->b", "NOTIFY")[-1].status == 481, case  # type: ignore[union-attr]
    # Without any To tag at all (an unsolicited NOTIFY outside a dialog).
    stray = make_request(
        "NOTIFY",
        "sip:gw-a@127.0.0.1:5071",
        from_addr="<sip:x@b.test>",
        from_tag="s1",
        to_addr="<sip:gw-a@a.test>",
        call_id="stray@b.test",
        cseq=1,
        headers=(("Event", "presence"), ("Subscription-State", "active;expires=60")),
    )
    pair.b.send_request(stray, pair.addr_a, pair.now)
    pair.pump()
    assert pair.wire("a->b", "NOTIFY")[-1].status == 481  # type: ignore[union-attr]
    assert pair.take_sa() == []
    assert pair.ma.get(sid_a) is not None


# --- subscriber rules ----------------------------------------------------------------------


def test_notify_before_the_2xx_creates_the_dialog() -> None:
    """RFC 6665 §4.1.2.4: the NOTIFY overtakes the 200; the dialog (route set from the
    NOTIFY's Record-Route, in order) comes from the NOTIFY; the late 200 confirms it."""
    pair = SubPair(manual_b=True)
    sid_a = pair.subscribe()
    [sub] = received_requests(pair, "b", "SUBSCRIBE")
    notify_from_b(pair, sub.request, seq=1, body=PIDF, record_route="<sip:127.0.0.1:5072;lr>")
    pair.pump()
    assert pair.wire("a->b", "NOTIFY", 200)
    events = pair.take_sa()
    assert events[0] == SubscriptionActive(sid_a, 600)
    assert isinstance(events[1], NotifyReceived) and events[1].body == PIDF
    view = pair.ma.get(sid_a)
    assert view is not None and view.state == "active" and view.remote_tag == "bt"
    assert view.request_in_flight
    answer(
        pair, "b", sub, 200, headers=(("Expires", "600"), ("Contact", "<sip:bob@127.0.0.1:5072>"))
    )
    pair.pump()
    assert pair.take_sa() == []
    view = pair.ma.get(sid_a)
    assert view is not None and not view.request_in_flight and view.expires == 600
    pair.ma.refresh(sid_a, pair.now)
    pair.pump()
    [refresh] = received_requests(pair, "b", "SUBSCRIBE")
    assert parse_name_addr(refresh.request.headers.get("To") or "").tag == "bt"
    assert refresh.request.headers.get_lines("Route") == ["<sip:127.0.0.1:5072;lr>"]
    assert cseq(refresh.request) == 2


def test_timer_n_ends_a_subscription_without_notify() -> None:
    pair = SubPair(manual_b=True)
    sid_a = pair.subscribe()
    [sub] = received_requests(pair, "b", "SUBSCRIBE")
    answer(
        pair, "b", sub, 200, headers=(("Expires", "600"), ("Contact", "<sip:bob@127.0.0.1:5072>"))
    )
    pair.pump()
    assert pair.ma.get(sid_a).state == "notify_wait"  # type: ignore[union-attr]
    pair.run(TIMER_N - 0.1)
    assert pair.take_sa() == []
    pair.run(TIMER_N)
    assert pair.take_sa() == [
        SubscriptionTerminated(sid_a, Role.SUBSCRIBER, REASON_NO_NOTIFY, None)
    ]
    assert pair.ma.count() == 0


def test_no_answer_at_all_gives_exactly_one_terminal_event() -> None:
    pair = SubPair(manual_b=True)
    sid_a = pair.subscribe()
    pair.advance(100)
    events = pair.take_sa()
    assert len(events) == 1
    assert isinstance(events[0], SubscriptionTerminated | SubscribeFailed)
    assert pair.ma.count() == 0 and pair.ma.transactions_in_flight == 0
    assert pair.ma.get(sid_a) is None


NEW_FAILURES = [400, 403, 404, 408, 480, 481, 489, 500, 503, 603, 604]
REFRESH_FAILURES = sorted(ENDING_STATUSES | {400, 401, 403, 408, 486, 500, 503, 600, 603})


@pytest.mark.parametrize("status", NEW_FAILURES)
def test_a_failed_new_subscribe_creates_nothing(status: int) -> None:
    """RFC 6665 §4.1.2.1: a non-2xx final response to a new SUBSCRIBE: no subscription."""
    pair = SubPair(manual_b=True)
    sid_a = pair.subscribe()
    [sub] = received_requests(pair, "b", "SUBSCRIBE")
    answer(pair, "b", sub, status, headers=(("Retry-After", "120"),))
    pair.pump()
    assert pair.take_sa() == [SubscribeFailed(sid_a, status, 120, False, True)]
    assert pair.ma.count() == 0


def establish_manual(pair: SubPair, expires: int = 600) -> tuple[str, RequestReceived]:
    sid_a = pair.subscribe()
    [sub] = received_requests(pair, "b", "SUBSCRIBE")
    answer(
        pair,
        "b",
        sub,
        200,
        headers=(("Expires", str(expires)), ("Contact", "<sip:bob@127.0.0.1:5072>")),
    )
    notify_from_b(pair, sub.request, seq=1, state=f"active;expires={expires}")
    pair.pump()
    pair.take_sa()
    pair.take_b()
    return sid_a, sub


@pytest.mark.parametrize("status", REFRESH_FAILURES)
def test_refresh_failure_codes_follow_section_4_1_2_2(status: int) -> None:
    """404, 405, 410, 416, 480-485, 489, 501, 604 end the subscription; any other
    failure keeps it until it expires (RFC 6665 §4.1.2.2)."""
    pair = SubPair(manual_b=True)
    sid_a, _ = establish_manual(pair, expires=600)
    pair.advance(540)  # refresh time: 600 - max(60, 5)
    [refresh] = received_requests(pair, "b", "SUBSCRIBE")
    answer(pair, "b", refresh, status)
    pair.pump()
    over = status in ENDING_STATUSES
    assert pair.take_sa() == [SubscribeFailed(sid_a, status, None, True, over)]
    if over:
        assert pair.ma.get(sid_a) is None
        return
    view = pair.ma.get(sid_a)
    assert view is not None and view.state == "active"
    assert view.expires_at == pytest.approx(600.0)
    # Tried again half-way to the expiry (at 570); failing again, it runs out.
    pair.advance(29)
    assert received_requests(pair, "b", "SUBSCRIBE") == []
    pair.advance(2)
    [again] = received_requests(pair, "b", "SUBSCRIBE")
    assert again.request.headers.get("Expires") == "3600"  # what it asks for, as before
    answer(pair, "b", again, 500)
    pair.advance(40)
    events = pair.take_sa()
    assert events[-1] == SubscriptionTerminated(sid_a, Role.SUBSCRIBER, REASON_EXPIRED, None)
    assert pair.ma.count() == 0


def test_refresh_timeout_keeps_the_subscription_until_expiry() -> None:
    pair = SubPair(manual_b=True)
    sid_a, _ = establish_manual(pair, expires=600)
    pair.advance(540 + TIMER_N)  # the refresh goes unanswered: Timer F
    failed = [e for e in pair.take_sa() if isinstance(e, SubscribeFailed)]
    assert failed == [SubscribeFailed(sid_a, 408, None, True, False)]
    assert pair.ma.get(sid_a) is not None
    pair.advance(60)
    assert pair.ma.get(sid_a) is None


def test_423_is_retried_with_min_expires() -> None:
    pair = SubPair(config_b=SubscriptionConfig(min_expires=120))
    sid_a = pair.subscribe(expires=60)
    subs = pair.wire("a->b", "SUBSCRIBE")
    assert [s.headers.get("Expires") for s in subs] == ["60", "120"]
    resp = pair.wire("b->a", "SUBSCRIBE", 423)[0]
    assert resp.headers.get("Min-Expires") == "120"
    # The retry stays in the same Call-ID and From tag, with the next CSeq.
    assert subs[0].headers.get("Call-ID") == subs[1].headers.get("Call-ID")
    assert [cseq(s) for s in subs] == [1, 2]
    req = requested(pair.take_sb())
    assert req.expires == 120
    pair.mb.accept(req.sub_id, pair.now, state="active")
    pair.pump()
    assert pair.ma.get(sid_a).expires == 120  # type: ignore[union-attr]


def test_a_second_423_is_a_failure() -> None:
    pair = SubPair(manual_b=True)
    sid_a = pair.subscribe(expires=60)
    for _ in range(2):
        [sub] = received_requests(pair, "b", "SUBSCRIBE")
        answer(pair, "b", sub, 423, headers=(("Min-Expires", "900"),))
        pair.pump()
    assert pair.take_sa() == [SubscribeFailed(sid_a, 423, None, False, True)]


@pytest.mark.parametrize(
    ("config", "asked", "outcome"),
    [
        (SubscriptionConfig(min_expires=60), 59, 423),
        (SubscriptionConfig(min_expires=60), 60, 60),
        (SubscriptionConfig(min_expires=60), 1, 423),
        (SubscriptionConfig(min_expires=60, max_expires=1800), 7200, 1800),  # capped
        (SubscriptionConfig(min_expires=5000, max_expires=9000), 3600, 3600),  # 423 only < 1 h
        (SubscriptionConfig(min_expires=5000, max_expires=9000), 3599, 423),
    ],
)
def test_notifier_expires_rules(config: SubscriptionConfig, asked: int, outcome: int) -> None:
    """RFC 6665 §4.2.1.1: 423 with Min-Expires only for 0 < Expires < 3600 below the
    minimum; the granted duration may shorten the request, never lengthen it."""
    pair = SubPair(manual_a=True, config_b=config)
    req = make_request(
        "SUBSCRIBE",
        "sip:bob@127.0.0.1:5072",
        from_addr="<sip:alice@a.test>",
        from_tag="at",
        to_addr="<sip:bob@b.test>",
        call_id="m1@a.test",
        cseq=1,
        contact="<sip:alice@127.0.0.1:5071>",
        headers=(("Event", "presence"), ("Expires", str(asked))),
    )
    pair.a.send_request(req, pair.addr_b, pair.now)
    pair.pump()
    if outcome == 423:
        [resp] = pair.wire("b->a", "SUBSCRIBE")
        assert resp.status == 423  # type: ignore[union-attr]
        assert resp.headers.get("Min-Expires") == str(config.min_expires)
        assert pair.mb.count() == 0
        return
    event = requested(pair.take_sb())
    assert event.expires == outcome
    pair.mb.accept(event.sub_id, pair.now, state="active")
    pair.pump()
    assert pair.wire("b->a", "SUBSCRIBE", 200)[0].headers.get("Expires") == str(outcome)
    assert substate(pair.wire("b->a", "NOTIFY")[0])[1] == outcome


def test_subscribe_without_expires_gets_the_default() -> None:
    """RFC 3856 §6.4 / RFC 8048 §5.3.1: no Expires means 3600."""
    pair = SubPair(manual_a=True)
    req = make_request(
        "SUBSCRIBE",
        "sip:bob@127.0.0.1:5072",
        from_addr="<sip:alice@a.test>",
        from_tag="at",
        to_addr="<sip:bob@b.test>",
        call_id="d1@a.test",
        cseq=1,
        contact="<sip:alice@127.0.0.1:5071>",
        headers=(("Event", "presence"),),
    )
    pair.a.send_request(req, pair.addr_b, pair.now)
    pair.pump()
    assert requested(pair.take_sb()).expires == 3600


@pytest.mark.parametrize(
    ("headers", "contact", "status"),
    [
        ((), "<sip:alice@127.0.0.1:5071>", 400),  # no Event
        ((("Event", "pres ence"),), "<sip:alice@127.0.0.1:5071>", 400),
        ((("Event", "presence"), ("Expires", "soon")), "<sip:alice@127.0.0.1:5071>", 400),
        ((("Event", "presence"),), None, 400),  # no Contact
        ((("Event", "presence.winfo"),), "<sip:alice@127.0.0.1:5071>", 489),
        ((("Event", "presence"), ("Record-Route", "<mailto:x@y.test>")), "<sip:a@127.0.0.1>", 400),
    ],
)
def test_malformed_subscribe_is_answered(
    headers: tuple[tuple[str, str], ...], contact: str | None, status: int
) -> None:
    pair = SubPair(manual_a=True)
    req = make_request(
        "SUBSCRIBE",
        "sip:bob@127.0.0.1:5072",
        from_addr="<sip:alice@a.test>",
        from_tag="at",
        to_addr="<sip:bob@b.test>",
        call_id="x1@a.test",
        cseq=1,
        contact=contact,
        headers=headers,
    )
    pair.a.send_request(req, pair.addr_b, pair.now)
    pair.pump()
    [resp] = pair.wire("b->a", "SUBSCRIBE")
    assert resp.status == status  # type: ignore[union-attr]
    assert pair.take_sb() == [] and pair.mb.count() == 0


def test_malformed_notify_in_a_dialog_is_answered() -> None:
    pair = SubPair(manual_b=True)
    sid_a, sub = establish_manual(pair)
    local_tag = pair.ma.get(sid_a).local_tag  # type: ignore[union-attr]
    notify_from_b(pair, sub.request, seq=5, state="active;expires=never", to_tag=local_tag)
    notify_from_b(pair, sub.request, seq=6, state="", to_tag=local_tag)
    notify_from_b(pair, sub.request, seq=1, to_tag=local_tag)  # out of order: 500
    pair.pump()
    assert [m.status for m in pair.wire("a->b", "NOTIFY")][-3:] == [400, 400, 500]  # type: ignore[union-attr]
    assert pair.take_sa() == []


def test_unsubscribe_before_the_dialog_is_known_waits_for_it() -> None:
    pair = SubPair(manual_b=True)
    sid_a = pair.subscribe()
    pair.ma.unsubscribe(sid_a, pair.now)
    assert len(pair.wire("a->b", "SUBSCRIBE")) == 1
    [sub] = received_requests(pair, "b", "SUBSCRIBE")
    answer(
        pair, "b", sub, 200, headers=(("Expires", "600"), ("Contact", "<sip:bob@127.0.0.1:5072>"))
    )
    pair.pump()
    unsub = pair.wire("a->b", "SUBSCRIBE")[-1]
    assert unsub.headers.get("Expires") == "0"
    assert parse_name_addr(unsub.headers.get("To") or "").tag == "bt"
    [ev] = received_requests(pair, "b", "SUBSCRIBE")
    answer(pair, "b", ev, 200, headers=(("Expires", "0"),))
    notify_from_b(
        pair,
        sub.request,
        seq=1,
        state="terminated;reason=timeout",
        to_tag=pair.ma.get(sid_a).local_tag,
    )  # type: ignore[union-attr]
    pair.pump()
    events = pair.take_sa()
    assert isinstance(events[0], NotifyReceived)
    assert events[1] == SubscriptionTerminated(sid_a, Role.SUBSCRIBER, "timeout", None)


def test_auto_refresh_off_reports_refresh_due() -> None:
    pair = SubPair(config=SubscriptionConfig(max_expires=100))
    sid_a, sid_b = establish(pair, auto_refresh=False)
    pair.take_sa()
    pair.advance(100 - 10 + 0.001)  # lead: max(10 s, MIN_REFRESH_LEAD)
    assert pair.take_sa() == [RefreshDue(sid_a)]
    assert len(pair.wire("a->b", "SUBSCRIBE")) == 1
    pair.ma.refresh(sid_a, pair.now, expires=100)
    pair.pump()
    assert len(pair.wire("a->b", "SUBSCRIBE")) == 2
    assert MIN_REFRESH_LEAD == 5.0


def test_notify_expires_is_authoritative() -> None:
    """RFC 6665 §4.1.3: a NOTIFY's ;expires= moves the subscriber's refresh."""
    pair = SubPair()
    sid_a, sid_b = establish(pair)
    assert pair.ma.get(sid_a).expires_at == pytest.approx(3600)  # type: ignore[union-attr]
    pair.advance(1000)
    pair.mb.notify(sid_b, pair.now, state="active", body=PIDF, content_type=PIDF_TYPE)
    pair.pump()
    assert pair.ma.get(sid_a).expires_at == pytest.approx(3600)  # type: ignore[union-attr]
    # The refresh lead stays a share of the granted hour, not of what is left.
    pair.advance(3239 - pair.now)
    assert len(pair.wire("a->b", "SUBSCRIBE")) == 1
    pair.advance(1)
    assert len(pair.wire("a->b", "SUBSCRIBE")) == 2


# --- notifier rules ------------------------------------------------------------------------


def manual_subscriber(pair: SubPair, expires: int = 600) -> RequestReceived:
    req = make_request(
        "SUBSCRIBE",
        "sip:bob@127.0.0.1:5072",
        from_addr="<sip:alice@a.test>",
        from_tag="at",
        to_addr="<sip:bob@b.test>",
        call_id="n1@a.test",
        cseq=1,
        contact="<sip:alice@127.0.0.1:5071>",
        headers=(("Event", "presence"), ("Expires", str(expires))),
    )
    pair.a.send_request(req, pair.addr_b, pair.now)
    pair.pump()
    event = requested(pair.take_sb())
    pair.mb.accept(event.sub_id, pair.now, state="active", body=PIDF, content_type=PIDF_TYPE)
    pair.pump()
    [notify] = received_requests(pair, "a", "NOTIFY")
    return notify


@pytest.mark.parametrize("status", sorted(ENDING_STATUSES | {400, 408, 486, 500, 503, 603}))
def test_notify_failures_remove_per_section_4_2_2(status: int) -> None:
    pair = SubPair(manual_a=True)
    notify = manual_subscriber(pair)
    [sid_b] = pair.mb.sub_ids()
    answer(pair, "a", notify, status, to_tag=None)
    pair.pump()
    if status in ENDING_STATUSES:
        assert pair.take_sb() == [SubscriptionTerminated(sid_b, Role.NOTIFIER, None, status)]
        assert pair.mb.count() == 0
    else:
        assert pair.take_sb() == []
        assert pair.mb.get(sid_b) is not None


def test_notify_timer_f_removes_the_subscription() -> None:
    """§4.2.2: a NOTIFY that times out (Timer F) removes the subscription."""
    pair = SubPair(drop=lambda d, data: d == "b->a" and data.startswith(b"NOTIFY"))
    sid_a = pair.subscribe()
    sid_b = requested(pair.take_sb()).sub_id
    pair.mb.accept(sid_b, pair.now, state="active", body=PIDF, content_type=PIDF_TYPE)
    pair.advance(TIMER_N + 1)
    assert pair.take_sb() == [SubscriptionTerminated(sid_b, Role.NOTIFIER, None, 408)]
    # The subscriber never saw a NOTIFY: Timer N ends it too.
    assert pair.take_sa() == [
        SubscriptionTerminated(sid_a, Role.SUBSCRIBER, REASON_NO_NOTIFY, None)
    ]
    assert pair.ma.count() == pair.mb.count() == 0


def test_notifier_expiry_sends_timeout_and_reports() -> None:
    pair = SubPair(config=SubscriptionConfig(max_expires=120))
    sid_a, sid_b = establish(pair, auto_refresh=False)
    pair.take_sa()
    pair.advance(121)
    final = pair.wire("b->a", "NOTIFY")[-1]
    assert final.headers.get("Subscription-State") == "terminated;reason=timeout"
    assert pair.take_sb() == [SubscriptionTerminated(sid_b, Role.NOTIFIER, "timeout", None)]
    assert pair.take_sa()[-1] == SubscriptionTerminated(sid_a, Role.SUBSCRIBER, "timeout", None)


def test_unanswered_new_subscribe_gets_500_and_is_reported() -> None:
    pair = SubPair()
    sid_a = pair.subscribe()
    sid_b = requested(pair.take_sb()).sub_id
    pair.advance(30)
    assert pair.take_sb() == [SubscriptionTerminated(sid_b, Role.NOTIFIER, REASON_NO_ANSWER, None)]
    assert pair.wire("b->a", "SUBSCRIBE")[-1].status == 500  # type: ignore[union-attr]
    assert pair.take_sa() == [SubscribeFailed(sid_a, 500, None, False, True)]


def test_reject_new_and_refresh() -> None:
    pair = SubPair(config=SubscriptionConfig(max_expires=200))
    sid_a = pair.subscribe()
    sid_b = requested(pair.take_sb()).sub_id
    pair.mb.reject(sid_b, pair.now, 403, headers=(("Warning", '399 gw "not allowed"'),))
    pair.pump()
    resp = pair.wire("b->a", "SUBSCRIBE")[-1]
    assert (resp.status, resp.headers.get("Warning")) == (403, '399 gw "not allowed"')  # type: ignore[union-attr]
    assert pair.mb.count() == 0 and pair.take_sb() == []
    assert pair.take_sa() == [SubscribeFailed(sid_a, 403, None, False, True)]

    sid_a, sid_b = establish(pair)
    pair.take_sa()
    pair.advance(180)  # refresh at 200 - 20
    assert requested(pair.take_sb()).refresh
    pair.mb.reject(sid_b, pair.now, 503)  # transient: kept on both sides
    pair.pump()
    assert pair.mb.get(sid_b) is not None and pair.ma.get(sid_a) is not None
    pair.advance(10)  # the subscriber's second try
    assert requested(pair.take_sb()).refresh
    pair.mb.reject(sid_b, pair.now, 481)  # ends it on both sides
    pair.pump()
    assert pair.mb.get(sid_b) is None and pair.ma.get(sid_a) is None
    assert pair.take_sa()[-1] == SubscribeFailed(sid_a, 481, None, True, True)


def test_runtime_misuse_raises_local_errors() -> None:
    pair = SubPair()
    sid_a, sid_b = establish(pair)
    with pytest.raises(LocalSipError):
        pair.mb.accept(sid_b, pair.now, state="active")  # nothing to answer
    with pytest.raises(LocalSipError):
        pair.mb.reject(sid_b, pair.now, 403)
    with pytest.raises(LocalSipError):
        pair.mb.notify(sid_b, pair.now, state="active", body=b"x")  # no Content-Type
    with pytest.raises(LocalSipError):
        pair.mb.notify(sid_b, pair.now, state="active", reason="timeout")
    with pytest.raises(LocalSipError):
        pair.ma.notify(sid_a, pair.now, state="active")  # a subscriber's id
    with pytest.raises(LocalSipError):
        pair.mb.unsubscribe(sid_b, pair.now)
    with pytest.raises(LocalSipError):
        pair.ma.subscribe(
            request_uri="not a uri",
            from_uri="sip:a@a.test",
            to_uri="sip:b@b.test",
            destination=pair.addr_b,
            now=pair.now,
        )
    with pytest.raises(LocalSipError):
        pair.ma.subscribe(
            request_uri="sip:b@b.test",
            from_uri="sip:a@a.test",
            to_uri="sip:b@b.test",
            destination=pair.addr_b,
            now=pair.now,
            expires=-1,
        )
    with pytest.raises(LocalSipError):
        pair.ma.snapshot("nope")
    # A subscription that has ended is simply not there any more.
    pair.mb.terminate(sid_b, pair.now)
    pair.mb.notify(sid_b, pair.now, state="active")
    pair.mb.terminate(sid_b, pair.now)
    pair.ma.refresh("gone", pair.now)
    pair.ma.unsubscribe("gone", pair.now)
    assert pair.mb.get(sid_b) is None


def test_notifier_subscription_limit_gives_503_with_retry_after() -> None:
    pair = SubPair(config_b=SubscriptionConfig(max_subscriptions=1))
    establish(pair)
    sid = pair.subscribe()
    resp = pair.wire("b->a", "SUBSCRIBE")[-1]
    assert (resp.status, resp.headers.get("Retry-After")) == (503, "300")  # type: ignore[union-attr]
    assert pair.take_sa()[-1] == SubscribeFailed(sid, 503, 300, False, True)
    assert pair.mb.count() == 1 and pair.ma.count() == 1


def test_subscriber_subscription_limit_raises() -> None:
    pair = SubPair(config=SubscriptionConfig(max_subscriptions=1))
    pair.subscribe()
    with pytest.raises(LocalSipError) as info:
        pair.subscribe()
    assert info.value.status_hint == 503
    assert pair.ma.count() == 1


def test_in_dialog_refresh_while_unanswered_gets_500() -> None:
    pair = SubPair(manual_a=True)
    notify = manual_subscriber(pair)
    answer(pair, "a", notify, 200, to_tag=None)
    [sid_b] = pair.mb.sub_ids()
    local_tag = pair.mb.get(sid_b).local_tag  # type: ignore[union-attr]

    def refresh(seq: int, expires: int) -> None:
        req = make_request(
            "SUBSCRIBE",
            "sip:gw-b@127.0.0.1:5072",
            from_addr="<sip:alice@a.test>",
            from_tag="at",
            to_addr=f"<sip:bob@b.test>;tag={local_tag}",
            call_id="n1@a.test",
            cseq=seq,
            contact="<sip:alice@127.0.0.1:5071>",
            headers=(("Event", "presence"), ("Expires", str(expires))),
        )
        pair.a.send_request(req, pair.addr_b, pair.now)
        pair.pump()

    refresh(2, 600)
    assert requested(pair.take_sb()).refresh
    refresh(3, 600)
    resp = pair.wire("b->a", "SUBSCRIBE")[-1]
    assert (resp.status, resp.headers.get("Retry-After")) == (500, "1")  # type: ignore[union-attr]
    refresh(3, 600)  # same CSeq again: out of order
    assert pair.wire("b->a", "SUBSCRIBE")[-1].status == 500  # type: ignore[union-attr]
    refresh(4, 30)  # too brief
    assert pair.wire("b->a", "SUBSCRIBE")[-1].status == 423  # type: ignore[union-attr]
    pair.take_a()
    refresh(5, 0)  # unsubscribe supersedes the unanswered refresh
    oks = [m.status for m in pair.wire("b->a", "SUBSCRIBE")[-2:]]  # type: ignore[union-attr]
    assert sorted(oks) == [200, 500]
    assert requested(pair.take_sb()).expires == 0
    refresh(6, 600)  # after the unsubscribe: gone
    assert pair.wire("b->a", "SUBSCRIBE")[-1].status == 481  # type: ignore[union-attr]


def test_fetch_polls_with_expires_zero() -> None:
    """RFC 6665 §4.4.3 / RFC 8048 §7: Expires 0 in a new dialog, one terminated NOTIFY."""
    pair = SubPair()
    sid_a = pair.fetch()
    [sub] = pair.wire("a->b", "SUBSCRIBE")
    assert sub.headers.get("Expires") == "0"
    req = requested(pair.take_sb())
    assert (req.fetch, req.refresh, req.expires) == (True, False, 0)
    pair.mb.accept(req.sub_id, pair.now, state="active", body=PIDF, content_type=PIDF_TYPE)
    pair.pump()
    assert pair.wire("b->a", "SUBSCRIBE", 200)[0].headers.get("Expires") == "0"
    assert (
        pair.wire("b->a", "NOTIFY")[0].headers.get("Subscription-State")
        == "terminated;reason=timeout"
    )
    events = pair.take_sa()
    assert isinstance(events[0], NotifyReceived) and events[0].body == PIDF
    assert events[1] == SubscriptionTerminated(sid_a, Role.SUBSCRIBER, "timeout", None)
    assert pair.ma.count() == pair.mb.count() == 0
    assert pair.take_sb() == []


# --- persistence ---------------------------------------------------------------------------


def fresh_manager(port: int = 5072) -> SubscriptionManager:
    endpoint = SipEndpoint(EndpointConfig(local={"udp": ("127.0.0.1", port)}), CountingIds("r"))
    return SubscriptionManager(
        endpoint,
        SubscriptionConfig(),
        CountingIds("R"),
        contact=lambda t: f"sip:gw@127.0.0.1:{port}",
    )


def restart_b(pair: SubPair, snapshots: list[dict[str, object]], wall: float) -> list[str]:
    """Replace endpoint b and its manager by fresh ones (a restart) and restore."""
    pair.mb = fresh_manager()
    pair.b = pair.mb._ep  # noqa: SLF001 - the test wires the new endpoint into the pair
    return [pair.mb.restore(json.loads(json.dumps(s)), pair.now, wall) for s in snapshots]


def test_snapshot_restore_notifier_continues_the_dialog() -> None:
    pair = SubPair()
    sid_a, sid_b = establish(pair)
    pair.advance(100)
    pair.mb.notify(sid_b, pair.now, state="active", body=CLOSED, content_type=PIDF_TYPE)
    pair.pump()
    snap = pair.mb.snapshot(sid_b, now=pair.now, wall=1_700_000_000.0)
    assert snap["expires_at"] == pytest.approx(1_700_000_000.0 + 3500)
    assert snap["dialog"]["local_cseq"] == 2  # type: ignore[index]
    # The process is down for 50 s.
    pair.clock.advance(50)
    [restored] = restart_b(pair, [snap], wall=1_700_000_050.0)
    assert restored == sid_b
    view = pair.mb.get(sid_b)
    assert view is not None and view.state == "active"
    assert view.expires_at == pytest.approx(pair.now + 3450)
    pair.mb.notify(sid_b, pair.now, state="active", body=PIDF, content_type=PIDF_TYPE)
    pair.pump()
    notify = pair.wire("b->a", "NOTIFY")[-1]
    assert cseq(notify) == 3
    assert substate(notify)[1] == 3450
    first = pair.wire("b->a", "NOTIFY")[0]
    for name in ("Call-ID", "From", "To"):
        assert notify.headers.get(name) == first.headers.get(name)
    assert pair.wire("a->b", "NOTIFY", 200)[-1] is not None
    assert isinstance(pair.take_sa()[-1], NotifyReceived)
    # The watcher's refresh reaches the restored subscription.
    pair.ma.refresh(sid_a, pair.now)
    pair.pump()
    assert requested(pair.take_sb()).sub_id == sid_b


def test_restored_ids_other_than_the_local_tag_still_match_their_dialogs() -> None:
    """A subscription is found by its local tag, which is normally its id; one restored
    under another id (e.g. its tag named another subscription) is matched by its whole
    dialog ID instead (RFC 3261 §12), in both roles."""
    pair = SubPair()
    sid_a, sid_b = establish(pair)
    snap_b = pair.mb.snapshot(sid_b, now=pair.now, wall=1000.0)
    snap_b["sub_id"] = "restored-b"
    assert restart_b(pair, [snap_b], wall=1000.0) == ["restored-b"]
    snap_a = pair.ma.snapshot(sid_a, now=pair.now, wall=1000.0)
    snap_a["sub_id"] = "restored-a"
    pair.ma = SubscriptionManager(
        pair.a, SubscriptionConfig(), CountingIds("Q"), contact=lambda t: "sip:gw-a@127.0.0.1:5071"
    )
    assert pair.ma.restore(json.loads(json.dumps(snap_a)), pair.now, 1000.0) == "restored-a"
    # The watcher's refresh reaches the notifier, and its NOTIFY the subscriber.
    pair.ma.refresh("restored-a", pair.now)
    pair.pump()
    assert requested(pair.take_sb()).sub_id == "restored-b"
    pair.mb.notify("restored-b", pair.now, state="active", body=PIDF, content_type=PIDF_TYPE)
    pair.pump()
    assert pair.wire("a->b", "NOTIFY", 200)[-1] is not None
    got = [e for e in pair.take_sa() if isinstance(e, NotifyReceived)]
    assert got and got[-1].sub_id == "restored-a"
    # A request that names the same local tag with another Call-ID is not that dialog.
    assert pair.mb._by_dialog("other-call", snap_b["dialog"]["local_tag"], "x") is None  # type: ignore[index] # noqa: SLF001


def test_snapshot_restore_subscriber_refreshes_with_the_next_cseq() -> None:
    pair = SubPair()
    sid_a, sid_b = establish(pair)
    snap = pair.ma.snapshot(sid_a, now=pair.now, wall=1000.0)
    manager = SubscriptionManager(
        pair.a, SubscriptionConfig(), CountingIds("Q"), contact=lambda t: "sip:gw-a@127.0.0.1:5071"
    )
    pair.ma = manager
    assert manager.restore(json.loads(json.dumps(snap)), pair.now, 1000.0) == sid_a
    pair.advance(3240)
    subs = pair.wire("a->b", "SUBSCRIBE")
    assert len(subs) == 2 and cseq(subs[-1]) == 2
    assert requested(pair.take_sb()).sub_id == sid_b


def test_snapshot_of_an_unanswered_subscribe_is_refused_and_restore_validates() -> None:
    pair = SubPair()
    pair.subscribe()
    sid_b = requested(pair.take_sb()).sub_id
    with pytest.raises(LocalSipError):
        pair.mb.snapshot(sid_b)
    pair.mb.accept(sid_b, pair.now, state="active")
    pair.pump()
    good = pair.mb.snapshot(sid_b, now=pair.now, wall=0.0)
    with pytest.raises(LocalSipError):
        pair.mb.restore(good, pair.now, 0.0)  # already there
    assert fresh_manager().restore(good, pair.now, 0.0) == sid_b
    patches: list[dict[str, object]] = [
        {"v": 2},
        {"sub_id": ""},
        {"role": "x"},
        {"state": "awaiting_answer"},
        {"state": "terminated"},
        {"state": "notify_wait"},  # a subscriber state for a notifier
        {"event": 1},
        {"event": "two words"},
        {"event_id": 5},
        {"dialog": None},
        {"dialog": {"call_id": "x"}},
        {"expires": -1},
        {"expires": True},
        {"auto_refresh": "yes"},
        {"accept": "application/pidf+xml"},
        {"headers": [["only-name"]]},
        {"expires_at": float("inf")},
    ]
    for patch in patches:
        bad = dict(good)
        bad.update(patch)
        with pytest.raises(LocalSipError):
            fresh_manager().restore(bad, pair.now, 0.0)


def test_restore_after_expiry_ends_at_the_next_timer() -> None:
    pair = SubPair()
    sid_a, sid_b = establish(pair)
    snap = pair.mb.snapshot(sid_b, now=pair.now, wall=0.0)
    [sid] = restart_b(pair, [snap], wall=4000.0)
    pair.advance(0)
    assert pair.take_sb() == [SubscriptionTerminated(sid, Role.NOTIFIER, "timeout", None)]


# --- lost datagrams and Record-Route ------------------------------------------------------


def drop_first_copies() -> Callable[[str, bytes], bool]:
    seen: set[bytes] = set()

    def rule(direction: str, data: bytes) -> bool:
        if data in seen:
            return False
        seen.add(data)
        return True

    return rule


def test_lost_datagrams_are_recovered_by_retransmission() -> None:
    pair = SubPair(drop=drop_first_copies())
    sid_a = pair.subscribe()
    pair.advance(1)
    sid_b = requested(pair.take_sb()).sub_id
    pair.mb.accept(sid_b, pair.now, state="active", body=PIDF, content_type=PIDF_TYPE)
    pair.advance(5)
    events = pair.take_sa()
    assert events[0] == SubscriptionActive(sid_a, 3600)
    pair.ma.unsubscribe(sid_a, pair.now)
    pair.advance(5)
    assert requested(pair.take_sb()).expires == 0
    pair.mb.terminate(sid_b, pair.now, reason="timeout")
    pair.advance(5)
    assert pair.take_sa()[-1] == SubscriptionTerminated(sid_a, Role.SUBSCRIBER, "timeout", None)
    assert pair.dropped and pair.ma.count() == pair.mb.count() == 0


def test_record_route_on_both_sides() -> None:
    """The notifier keeps Record-Route in order (RFC 3261 §12.1.1), the subscriber
    reverses the 2xx's (§12.1.2); in-dialog requests carry them as Route, loose routing."""
    pair = SubPair(manual_a=True, manual_b=False)
    req = make_request(
        "SUBSCRIBE",
        "sip:bob@127.0.0.1:5072",
        from_addr="<sip:alice@a.test>",
        from_tag="at",
        to_addr="<sip:bob@b.test>",
        call_id="rr1@a.test",
        cseq=1,
        contact="<sip:alice@192.0.2.50>",
        headers=(
            ("Event", "presence"),
            ("Record-Route", "<sip:127.0.0.1:5071;lr>, <sip:edge.a.test;lr>"),
        ),
    )
    pair.a.send_request(req, pair.addr_b, pair.now)
    pair.pump()
    pair.mb.accept(requested(pair.take_sb()).sub_id, pair.now, state="active")
    pair.pump()
    ok = pair.wire("b->a", "SUBSCRIBE", 200)[0]
    assert ok.headers.get_all("Record-Route") == ["<sip:127.0.0.1:5071;lr>", "<sip:edge.a.test;lr>"]
    notify = pair.wire("b->a", "NOTIFY")[0]
    assert isinstance(notify, Request)
    assert notify.uri == "sip:alice@192.0.2.50"  # the remote target, not the first route
    assert notify.headers.get_lines("Route") == ["<sip:127.0.0.1:5071;lr>", "<sip:edge.a.test;lr>"]

    sub_side = SubPair(manual_b=True)
    sid_a = sub_side.subscribe()
    [sub] = received_requests(sub_side, "b", "SUBSCRIBE")
    answer(
        sub_side,
        "b",
        sub,
        200,
        headers=(
            ("Expires", "600"),
            ("Contact", "<sip:bob@192.0.2.60>"),
            ("Record-Route", "<sip:edge.b.test;lr>, <sip:127.0.0.1:5072;lr>"),
        ),
    )
    sub_side.pump()
    sub_side.ma.unsubscribe(sid_a, sub_side.now)
    sub_side.pump()
    [unsub] = received_requests(sub_side, "b", "SUBSCRIBE")
    assert unsub.request.uri == "sip:bob@192.0.2.60"
    assert unsub.request.headers.get_lines("Route") == [
        "<sip:127.0.0.1:5072;lr>",
        "<sip:edge.b.test;lr>",
    ]


def test_tables_render() -> None:
    text = render_subscription_tables()
    assert "notify_wait" in text and "awaiting_answer" in text and "Timer N" in text


# --- property: random operations never raise and never leak --------------------------------

_subscribe_op = st.tuples(
    st.just("subscribe"),
    st.sampled_from([None, 1, 30, 60, 600, 3600, 7200]),
    st.booleans(),
    st.sampled_from(["presence", "presence", "presence;id=9", "dialog"]),
    st.sampled_from(["active", "pending", None, "active", 403]),  # answered at once?
)
_answer_op = st.tuples(
    st.just("answer"),
    st.integers(0, 7),
    st.sampled_from(["active", "active", "pending", "terminate", 403, 404, 481, 503]),
)
_notify_op = st.tuples(st.just("notify"), st.integers(0, 7), st.sampled_from(["active", "pending"]))
# Weighted by repetition: subscriptions must be answered before much else can happen.
_op = st.one_of(
    _subscribe_op,
    _subscribe_op,
    _subscribe_op,
    _answer_op,
    _answer_op,
    _answer_op,
    _notify_op,
    st.tuples(st.just("fetch")),
    st.tuples(st.just("refresh"), st.integers(0, 7)),
    st.tuples(st.just("unsubscribe"), st.integers(0, 7)),
    st.tuples(st.just("terminate"), st.integers(0, 7)),
    st.tuples(st.just("advance"), st.sampled_from([0.0, 0.5, 4.0, 31.0, 33.0, 400.0, 3300.0])),
    st.tuples(st.just("advance"), st.sampled_from([0.5, 4.0, 33.0, 3300.0])),
)


def _pick(ids: list[str], index: int) -> str | None:
    return ids[index % len(ids)] if ids else None


def _awaiting(pair: SubPair) -> list[str]:
    return [s for s in pair.mb.sub_ids() if (v := pair.mb.get(s)) is not None and v.answer_pending]


def _answer_all(pair: SubPair) -> None:
    for sid in pair.mb.sub_ids():
        view = pair.mb.get(sid)
        if view is None:
            continue
        if view.answer_pending:
            pair.mb.reject(sid, pair.now, 481)
        elif view.state != "awaiting_answer":
            pair.mb.terminate(sid, pair.now)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.lists(_op, min_size=6, max_size=40),
    loss=st.sampled_from([0.0, 0.0, 0.15, 0.4]),
    seed=st.integers(0, 2**16),
)
def test_property_random_operations_never_raise_nor_leak(
    ops: list[tuple[Any, ...]], loss: float, seed: int
) -> None:
    rng = random.Random(seed)
    drop: DropRule | None = (lambda d, data: rng.random() < loss) if loss else None
    pair = SubPair(drop=drop, config=SubscriptionConfig(min_expires=30, max_expires=3600))
    terminal: dict[str, int] = {}
    for op in ops:
        kind = op[0]
        a_ids, b_ids = pair.ma.sub_ids(), pair.mb.sub_ids()
        if kind == "subscribe":
            pair.subscribe(expires=op[1], auto_refresh=op[2], event=op[3])
            for sid in _awaiting(pair) if op[4] is not None else ():
                if op[4] == 403:
                    pair.mb.reject(sid, pair.now, 403)
                else:
                    pair.mb.accept(sid, pair.now, state=op[4], body=PIDF, content_type=PIDF_TYPE)
        elif kind == "fetch":
            pair.fetch()
        elif kind == "refresh" and (sid := _pick(a_ids, op[1])):
            pair.ma.refresh(sid, pair.now)
        elif kind == "unsubscribe" and (sid := _pick(a_ids, op[1])):
            pair.ma.unsubscribe(sid, pair.now)
        elif kind == "answer" and (sid := _pick(_awaiting(pair), op[1])):
            view = pair.mb.get(sid)
            assert view is not None
            if view.answer_pending:
                if op[2] in ("active", "pending"):
                    pair.mb.accept(sid, pair.now, state=op[2], body=PIDF, content_type=PIDF_TYPE)
                elif op[2] == "terminate":
                    pair.mb.terminate(sid, pair.now, reason="rejected")
                else:
                    pair.mb.reject(sid, pair.now, op[2])
        elif kind == "notify" and (sid := _pick(b_ids, op[1])):
            view = pair.mb.get(sid)
            assert view is not None
            if view.state != "awaiting_answer":
                pair.mb.notify(sid, pair.now, state=op[2], body=PIDF, content_type=PIDF_TYPE)
        elif kind == "terminate" and (sid := _pick(b_ids, op[1])):
            pair.mb.terminate(sid, pair.now, reason="deactivated")
        elif kind == "advance":
            pair.advance(op[1])
        pair.pump()
        for side, events in (("a", pair.take_sa()), ("b", pair.take_sb())):
            for event in events:
                if isinstance(event, SubscriptionTerminated) or (
                    isinstance(event, SubscribeFailed) and event.subscription_over
                ):
                    key = f"{side}:{event.sub_id}"
                    terminal[key] = terminal.get(key, 0) + 1
    # Wind down: end everything, then let every timer run out.
    for _ in range(3):
        for sid in pair.ma.sub_ids():
            pair.ma.unsubscribe(sid, pair.now)
        _answer_all(pair)
        pair.advance(200)
        _answer_all(pair)
        pair.advance(4000)
    for side, events in (("a", pair.take_sa()), ("b", pair.take_sb())):
        for event in events:
            if isinstance(event, SubscriptionTerminated) or (
                isinstance(event, SubscribeFailed) and event.subscription_over
            ):
                key = f"{side}:{event.sub_id}"
                terminal[key] = terminal.get(key, 0) + 1
    note_case(
        f"terminal events: {min(len(terminal), 5)}+"
        if len(terminal) >= 5
        else f"terminal events: {len(terminal)}"
    )
    note_case(f"NOTIFYs on the wire: {'some' if pair.wire('b->a', 'NOTIFY') else 'none'}")
    assert pair.ma.count() == 0 and pair.mb.count() == 0
    assert pair.ma.transactions_in_flight == 0 and pair.mb.transactions_in_flight == 0
    assert pair.ma.next_deadline() is None and pair.mb.next_deadline() is None
    assert pair.a.transaction_count == 0 and pair.b.transaction_count == 0
    assert all(n == 1 for n in terminal.values()), terminal  # at most one terminal event


# --- memory -------------------------------------------------------------------------------


def _clear_caches() -> None:
    for value in vars(sip_grammar).values():
        clear = getattr(value, "cache_clear", None)
        if callable(clear):
            clear()
    gc.collect()


def test_memory_per_subscription_stays_under_2_kb() -> None:
    """The presence benchmark holds 100,000 subscriptions under 2 KB each: measure the
    layer's own memory for 400 subscriptions on each side (transactions long gone)."""
    count = 400
    pair = SubPair(config=SubscriptionConfig(max_expires=3600))
    establish(pair)  # warm up every code path once
    pair.advance(40)
    pair.take_sa()
    pair.take_sb()
    _clear_caches()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for i in range(count):
            pair.ma.subscribe(
                request_uri="sip:bob@127.0.0.1:5072",
                from_uri=f"sip:user{i}@a.test",
                to_uri=f"sip:contact{i}@b.test",
                destination=pair.addr_b,
                now=pair.now,
            )
            pair.pump()
            for event in pair.take_sb():
                if isinstance(event, SubscribeRequested):
                    pair.mb.accept(event.sub_id, pair.now, state="active")
            pair.pump()
            pair.take_sa()
        pair.advance(40)  # let every transaction end (Timer J/K)
        pair.take_sa()
        pair.take_sb()
        pair.delivered.clear()
        _clear_caches()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    assert pair.ma.count() == pair.mb.count() == count + 1
    assert pair.a.transaction_count == pair.b.transaction_count == 0
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    per_subscription = grown / (2 * count)
    assert per_subscription < 2048, per_subscription


def test_response_events_of_the_layer_are_claimed() -> None:
    """The runtime never sees the responses to the layer's own requests."""
    pair = SubPair()
    establish(pair)
    pair.advance(40)
    leftovers = pair.take_a() + pair.take_b()
    assert not [e for e in leftovers if isinstance(e, ResponseReceived | RequestReceived)]


def test_unsubscribe_before_the_dialog_is_known_sent_when_a_notify_names_it() -> None:
    pair = SubPair(manual_b=True)
    sid_a = pair.subscribe()
    pair.ma.unsubscribe(sid_a, pair.now)
    [sub] = received_requests(pair, "b", "SUBSCRIBE")
    notify_from_b(pair, sub.request, seq=1)  # overtakes the 200, which never comes
    pair.pump()
    assert pair.take_sa() == []  # a crossing NOTIFY after unsubscribe() is not reported
    [unsub] = received_requests(pair, "b", "SUBSCRIBE")
    assert unsub.request.headers.get("Expires") == "0"
    assert cseq(unsub.request) == 2
    answer(pair, "b", unsub, 200, headers=(("Expires", "0"),))
    pair.run(pair.now + TIMER_N + 1)  # no final NOTIFY either
    assert pair.take_sa() == [
        SubscriptionTerminated(sid_a, Role.SUBSCRIBER, REASON_NO_NOTIFY, None)
    ]


def test_restore_mid_unsubscribe_on_both_sides() -> None:
    """A subscriber restored while unsubscribing sends its Expires: 0 again; a notifier
    restored owing the final NOTIFY sends it at once."""
    pair = SubPair()
    sid_a, sid_b = establish(pair)
    pair.take_sa()
    pair.ma.unsubscribe(sid_a, pair.now)
    pair.pump()
    assert requested(pair.take_sb()).expires == 0
    snap_a = pair.ma.snapshot(sid_a, now=pair.now, wall=10.0)
    snap_b = pair.mb.snapshot(sid_b, now=pair.now, wall=10.0)
    assert (snap_a["state"], snap_b["state"]) == ("terminating", "unsubscribed")
    pair.ma = SubscriptionManager(
        pair.a, SubscriptionConfig(), CountingIds("Q"), contact=lambda t: "sip:gw-a@127.0.0.1:5071"
    )
    pair.ma.restore(snap_a, pair.now, 10.0)
    pair.pump()
    unsubs = [m for m in pair.wire("a->b", "SUBSCRIBE") if m.headers.get("Expires") == "0"]
    assert [cseq(m) for m in unsubs] == [2, 3]
    restart_b(pair, [snap_b], wall=10.0)
    pair.advance(0)
    final = pair.wire("b->a", "NOTIFY")[-1]
    assert final.headers.get("Subscription-State") == "terminated;reason=timeout"
    assert pair.take_sb() == [SubscriptionTerminated(sid_b, Role.NOTIFIER, "timeout", None)]
    assert pair.take_sa()[-1] == SubscriptionTerminated(sid_a, Role.SUBSCRIBER, "timeout", None)
    pair.advance(40)
    assert pair.ma.count() == pair.mb.count() == 0


_value = st.text(
    alphabet=st.characters(blacklist_characters="\r\n\x00", max_codepoint=0x17F), max_size=40
)


@settings(max_examples=250, deadline=None)
@given(
    method=st.sampled_from(["SUBSCRIBE", "NOTIFY"]),
    to_tag=st.sampled_from(["", ";tag=x1", ";tag=Bt1"]),
    event=st.one_of(
        st.none(), _value, st.sampled_from(["presence", "presence;id=", "presence;id=a;x"])
    ),
    expires=st.one_of(st.none(), _value, st.integers(0, 2**33).map(str)),
    substate=st.one_of(
        st.none(), _value, st.sampled_from(["active;expires=99999999999", "terminated;reason"])
    ),
    contact=st.one_of(st.none(), _value, st.just("<sip:x@127.0.0.1:5071>")),
    record_route=st.one_of(st.none(), _value),
)
def test_property_any_subscribe_or_notify_is_answered_never_raises(
    method: str,
    to_tag: str,
    event: str | None,
    expires: str | None,
    substate: str | None,
    contact: str | None,
    record_route: str | None,
) -> None:
    pair = SubPair()
    lines = [
        f"{method} sip:gw-b@127.0.0.1:5072 SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKfuzz;rport",
        "Max-Forwards: 70",
        "From: <sip:alice@a.test>;tag=f1",
        f"To: <sip:bob@b.test>{to_tag}",
        "Call-ID: fuzz@a.test",
        f"CSeq: 1 {method}",
    ]
    for name, value in (
        ("Event", event),
        ("Expires", expires),
        ("Subscription-State", substate),
        ("Contact", contact),
        ("Record-Route", record_route),
    ):
        if value is not None:
            lines.append(f"{name}: {value}")
    data = ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()
    pair.b.receive_datagram(data, pair.addr_a, pair.now)
    pair._collect()  # noqa: SLF001 - feed the manager without delivering anything
    answers = [parse_message(d) for _, d in pair.b.data_to_send()]
    events = pair.take_sb()
    if events:
        # Only a valid new SUBSCRIBE waits for the runtime instead of being answered.
        assert [type(e) for e in events] == [SubscribeRequested]
        assert answers == []
    else:
        assert len(answers) == 1 and isinstance(answers[0], Response)
        # 400 malformed, 423 too brief, 481 no such subscription/dialog, 489 bad event.
        assert answers[0].status in {400, 423, 481, 489}


# -- NOTIFY templates (the fan-out fast path) -------------------------------------------


@pytest.mark.parametrize(
    "routes",
    # Proxies "at" each side's address, so that the pair still delivers every request.
    [
        (),
        ("<sip:127.0.0.1:5071;lr>", "<sip:127.0.0.1:5072;lr>"),
        ("<sip:127.0.0.1:5071>", "<sip:127.0.0.1:5072>"),
    ],
    ids=["no-route", "loose-routers", "strict-router"],
)
def test_notify_from_the_template_is_what_new_request_builds(routes: tuple[str, ...]) -> None:
    """After its first NOTIFY a dialog's NOTIFYs come from a cached template; each one is
    byte for byte what ``Dialog.new_request`` builds (RFC 3261 §12.2.1.1: Request-URI,
    Route for loose and strict routers, CSeq + 1), goes to the same hop, and a target
    refresh (a new Contact in the watcher's refresh) rebuilds the template."""
    pair = SubPair()
    headers = tuple(("Record-Route", r) for r in routes)
    sid_a, sid_b = establish(pair, headers=headers)
    pair.take_sa()
    sent: list[tuple[Request, Any]] = []
    endpoint = pair.mb._ep

    class Capture:  # the endpoint as the layer sees it, recording what it sends
        config = endpoint.config

        def send_request(self, request: Request, hop: Any, now: float) -> str:
            sent.append((request, hop))
            return endpoint.send_request(request, hop, now)

        def send_response(self, response: Response, now: float) -> None:
            endpoint.send_response(response, now)

    pair.mb._ep = Capture()
    dialog = pair.mb._subs[sid_b].dialog
    extra = (("Content-Language", "de"),)
    for i in range(3):
        pair.mb.notify(
            sid_b,
            pair.now,
            state="active",
            body=PIDF + b" " * i,
            content_type=PIDF_TYPE,
            headers=extra,
        )
        pair.pump()
        request, hop = sent[-1]
        expected = dialog.new_request(
            "NOTIFY",
            contact="<sip:gw-b@127.0.0.1:5072>",
            headers=[
                ("Event", "presence"),
                ("Subscription-State", request.headers.get("Subscription-State") or ""),
                *extra,
            ],
            body=PIDF + b" " * i,
            content_type=PIDF_TYPE,
            cseq=dialog.local_cseq,
        )
        assert request == expected
        assert hop == dialog.next_hop()
        if routes:
            assert request.headers.get_all("Route")
    assert len(pair.mb._notify_templates) == 1
    assert [cseq(r) for r, _ in sent] == [2, 3, 4]  # 1 was the NOTIFY after the 2xx
    got = [e for e in pair.take_sa() if isinstance(e, NotifyReceived)]
    assert len(got) == 3  # the subscriber took each one (same dialog, CSeq in order)

    # A refresh from a new Contact is a target refresh (§12.2.2): the next NOTIFY goes there.
    before = pair.mb._notify_templates[sid_b]
    pair.ma._contact_of = lambda t: "sip:gw-a-moved@127.0.0.1:5071"
    pair.ma.refresh(sid_a, pair.now)
    pair.pump()
    pair.mb.accept(requested(pair.take_sb()).sub_id, pair.now, state="active")
    pair.pump()
    request, _ = sent[-1]
    assert pair.mb._notify_templates[sid_b] is not before
    if not routes or routes[0].endswith(";lr>"):
        assert request.uri == "sip:gw-a-moved@127.0.0.1:5071"
    else:
        assert request.headers.get_all("Route")[-1] == "<sip:gw-a-moved@127.0.0.1:5071>"


def test_notify_templates_are_bounded_and_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    from sipxmpp.gateway.sip import subscription as sub_module

    monkeypatch.setattr(sub_module, "NOTIFY_TEMPLATE_CACHE", 2)
    pair = SubPair()
    ids = [establish(pair, from_uri=f"sip:w{i}@a.test")[1] for i in range(3)]
    for sid in ids:
        pair.mb.notify(sid, pair.now, state="active", body=PIDF, content_type=PIDF_TYPE)
        pair.pump()
    assert list(pair.mb._notify_templates) == ids[1:]  # the oldest went
    pair.mb.terminate(ids[2], pair.now)
    pair.pump()
    assert list(pair.mb._notify_templates) == ids[1:2]


def test_reserved_extra_header_takes_the_checked_path() -> None:
    """A runtime header that make_request writes itself is refused, template or not."""
    pair = SubPair()
    _, sid_b = establish(pair)
    pair.mb.notify(sid_b, pair.now, state="active", body=PIDF, content_type=PIDF_TYPE)
    with pytest.raises(LocalSipError):
        pair.mb.notify(sid_b, pair.now, state="active", headers=(("Call-ID", "x"),))


def test_a_subscription_id_is_its_dialogs_local_tag() -> None:
    """One string serves as the id and the local tag (memory per subscription); ids stay
    unique even when a tag is already taken by a restored subscription."""
    pair = SubPair()
    sid_a, sid_b = establish(pair)
    assert pair.ma._subs[sid_a].dialog.local_tag is sid_a
    assert pair.mb._subs[sid_b].dialog.local_tag is sid_b
    snap = pair.mb.snapshot(sid_b)
    other = SubPair()
    next_tag = f"Bt{other.mb._ids._n.get('tag', 0) + 1}"  # type: ignore[attr-defined]
    dialog = {**snap["dialog"], "call_id": "restored-call@test"}  # type: ignore[dict-item]
    restored = other.mb.restore({**snap, "sub_id": next_tag, "dialog": dialog}, other.now, 0.0)
    assert restored == next_tag
    _, sid_new = establish(other)  # its dialog's tag is the restored subscription's id
    assert other.mb._subs[sid_new].dialog.local_tag == next_tag
    assert sid_new != next_tag and other.mb.count() == 2


def test_refreshes_keep_one_timer_entry_per_subscription() -> None:
    """A refresh moves deadlines later: the armed entry fires early and re-arms, instead of
    each refresh adding a heap entry (100,000 subscriptions, refreshed every few minutes)."""
    pair = SubPair()
    sid_a = pair.subscribe()
    pair.pump()
    sid_b = requested(pair.take_sb()).sub_id
    pair.mb.accept(sid_b, pair.now, state="active", body=PIDF, content_type=PIDF_TYPE)
    pair.pump()
    pair.take_sa()
    for cycle in range(1, 6):
        pair.run(pair.now + 3240.0)
        refresh = requested(pair.take_sb())
        assert (refresh.sub_id, refresh.refresh) == (sid_b, True)
        pair.mb.accept(sid_b, pair.now, state="active", body=PIDF, content_type=PIDF_TYPE)
        pair.pump()
        pair.take_sa()
        view = pair.ma.get(sid_a)
        assert view is not None and view.state == "active", cycle
        assert len(pair.ma._heap) == 1 and len(pair.mb._heap) == 1, cycle
    assert pair.ma.next_deadline() is not None and pair.mb.next_deadline() is not None


# --- the timer heap ---------------------------------------------------------------------


def _heap_sub(sub_id: str) -> Any:
    from sipxmpp.gateway.sip.address import TransportAddress
    from sipxmpp.gateway.sip.dialog import Dialog
    from sipxmpp.gateway.sip.subscription import SubscriberState, _Sub

    dialog = Dialog(
        call_id=sub_id,
        local_tag=sub_id,
        local_uri="sip:a@example.test",
        remote_uri="sip:b@example.test",
        remote_target="sip:b@127.0.0.1",
        destination=TransportAddress("udp", "127.0.0.1", 5060),
    )
    return _Sub(sub_id, Role.SUBSCRIBER, SubscriberState.NOTIFY_WAIT, dialog, "presence", None)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["arm", "remove", "pop"]),
            st.integers(0, 7),
            st.floats(0, 100, allow_nan=False).map(lambda f: round(f, 1)),
        ),
        max_size=60,
    )
)
def test_timer_heap_keeps_one_entry_per_armed_subscription_earliest_first(
    ops: list[tuple[str, int, float]],
) -> None:
    """The heap against a dict model: arming only ever moves a subscription earlier (as
    ``_schedule`` uses it), removal takes it out, and ``first()`` is always the earliest."""
    from sipxmpp.gateway.sip.subscription import _TimerHeap

    heap = _TimerHeap()
    subs = [_heap_sub(f"s{i}") for i in range(8)]
    model: dict[int, float] = {}
    for op, i, at in ops:
        sub = subs[i]
        if op == "arm":
            if i in model and at >= model[i]:
                continue
            heap.arm(sub, at)
            model[i] = at
        elif op == "remove":
            heap.remove(sub)
            model.pop(i, None)
        elif model:
            first = heap.first()
            assert first is not None and first.scheduled == min(model.values())
            heap.remove(first)
            del model[subs.index(first)]
        assert len(heap) == len(model)
        first = heap.first()
        if model:
            assert first is not None and first.scheduled == min(model.values())
        else:
            assert first is None
        for j, s in enumerate(subs):
            assert (s.slot >= 0) is (j in model)
            if j in model:
                assert heap._items[s.slot] is s and s.scheduled == model[j]


def test_a_subscription_record_stays_in_the_160_byte_class() -> None:
    """Fields that share a slot behind properties still behave as separate fields."""
    import sys

    from sipxmpp.gateway.sip.subscription import _MAX_DELTA, _Kind

    sub = _heap_sub("s1")
    assert sys.getsizeof(sub) <= 160
    assert (sub.event, sub.event_id, sub.expires, sub.wanted) == ("presence", None, 0, 0)
    sub.wanted, sub.expires = 3600, 600
    assert (sub.wanted, sub.expires) == (3600, 600)
    sub.expires = 2**40  # beyond delta-seconds: the largest one (RFC 3261 §20.19)
    assert (sub.wanted, sub.expires) == (3600, _MAX_DELTA)
    sub.wanted = -5
    assert (sub.wanted, sub.expires) == (0, _MAX_DELTA)
    assert sub.kind is _Kind.INITIAL and sub.auto_refresh
    for kind in (_Kind.UNSUBSCRIBE, _Kind.REFRESH, _Kind.INITIAL):
        sub.kind = kind
        sub.fetch = True
        assert sub.kind is kind and sub.fetch and sub.auto_refresh
        sub.fetch = False
    sub.tx = "z9hG4bKx|SUBSCRIBE"
    sub.pending = None  # no pending SUBSCRIBE to clear: the transaction stays
    assert (sub.tx, sub.pending) == ("z9hG4bKx|SUBSCRIBE", None)
    sub.tx = None
    assert (sub.tx, sub.pending) == (None, None)
    from sipxmpp.gateway.sip.dialog import Dialog
    from sipxmpp.gateway.sip.subscription import NotifierState, _Sub

    with_id = _Sub("s2", Role.NOTIFIER, NotifierState.ACTIVE, sub.dialog, "presence", "7")
    assert (with_id.event, with_id.event_id, with_id.event_value) == (
        "presence",
        "7",
        "presence;id=7",
    )
    assert isinstance(with_id.dialog, Dialog)
