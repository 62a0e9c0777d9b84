"""INVITE sessions through two SIP endpoints back to back, with a scripted clock.

``InvitePair`` extends ``LayeredPair`` with an ``InviteManager`` on each endpoint. Requests a
test needs that the layer never sends (a re-INVITE, a BYE for an unknown dialog, an
UPDATE) are written with ``make_request`` and sent through the raw endpoint; whatever the
managers do not claim lands in ``events_a``/``events_b``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipxmpp.gateway.sip import (
    END_BYE,
    END_BYE_FAILED,
    END_CANCEL,
    END_NO_ACK,
    END_NO_ANSWER,
    END_REJECTED,
    END_TRANSPORT,
    IN_DIALOG_ALLOW,
    TERMINAL_EVENTS,
    UAC_TABLE,
    UAS_TABLE,
    EndpointConfig,
    InviteConfig,
    InviteManager,
    InviteReceived,
    InviteRole,
    LocalSipError,
    Message,
    Request,
    RequestReceived,
    Response,
    ResponseReceived,
    SessionAnswered,
    SessionConfirmed,
    SessionEnded,
    SessionFailed,
    SessionInput,
    SessionProgress,
    SessionState,
    SipEndpoint,
    TransactionTimedOut,
    TransportAddress,
    make_request,
    make_response,
    parse_cseq,
    parse_message,
    parse_name_addr,
    render_invite_tables,
    serialize,
)
from support.clock import CountingIds
from support.sippair import DropRule, LayeredPair

OFFER = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=message 7654 TCP/MSRP *\r\na=accept-types:text/plain\r\n"
    b"a=path:msrp://127.0.0.1:7654/a1;tcp\r\n"
)
ANSWER = OFFER.replace(b"7654", b"7655").replace(b"/a1", b"/b1")
SDP = "application/sdp"
T1 = 0.5
NO_ACK = 64 * T1

Rewrite = Callable[[str, bytes], bytes]


class InvitePair(LayeredPair):
    """Two endpoints, each with an InviteManager, pumped in memory."""

    def __init__(
        self,
        transport: Any = "udp",
        *,
        drop: DropRule | None = None,
        config: InviteConfig | None = None,
        config_b: InviteConfig | None = None,
        rewrite: Rewrite | None = None,
        manual_b: bool = False,
    ) -> None:
        super().__init__(transport, drop=drop)
        cfg = config or InviteConfig()
        suffix = "" if transport == "udp" else f";transport={transport}"
        self.ia = InviteManager(
            self.a, cfg, CountingIds("A"), contact=lambda t: f"<sip:gw-a@127.0.0.1:5071{suffix}>"
        )
        self.ib = InviteManager(
            self.b,
            config_b or cfg,
            CountingIds("B"),
            contact=lambda t: f"<sip:gw-b@127.0.0.1:5072{suffix}>",
        )
        self.rewrite = rewrite
        self.attach("ia", "ib", manual_a=False, manual_b=manual_b)

    def _deliver(self, direction: str, data: bytes, dest: TransportAddress) -> None:
        if self.rewrite is not None:
            data = self.rewrite(direction, data)
        super()._deliver(direction, data, dest)

    def pump(self) -> int:
        # Events already queued (a timer fired, a test fed bytes in) go to the managers
        # first, so that what they send is part of this pump.
        self._collect()
        return super().pump()

    def wire(
        self, direction: str | None = None, method: str | None = None, status: int | None = None
    ) -> list[Message]:
        """Messages delivered so far, parsed; optionally filtered by CSeq method/status."""
        out: list[Message] = []
        for d, data in self.delivered:
            if direction is not None and d != direction:
                continue
            msg = parse_message(data)
            if method is not None and (msg.headers.get("CSeq") or "").split()[-1] != method:
                continue
            if status is not None and not (isinstance(msg, Response) and msg.status == status):
                continue
            if status is None and method is not None and isinstance(msg, Response):
                continue  # with a method and no status: the requests only
            out.append(msg)
        return out

    def invite(self, pump: bool = True, **kwargs: Any) -> str:
        args: dict[str, Any] = {
            "request_uri": "sip:bob@127.0.0.1:5072",
            "from_uri": "<sip:alice@a.test>",
            "to_uri": "<sip:bob@b.test>",
            "destination": self.addr_b,
            "now": self.now,
            "body": OFFER,
        }
        args.update(kwargs)
        sid = self.ia.invite(**args)
        if pump:
            self.pump()
        return sid


def received(events: list[Any]) -> InviteReceived:
    [event] = [e for e in events if isinstance(e, InviteReceived)]
    return event


def call(pair: InvitePair, **kwargs: Any) -> tuple[str, str]:
    """a calls b; b answers; both sides confirmed. Returns (a's id, b's id)."""
    sa = pair.invite(**kwargs)
    sb = received(pair.take_sb()).session_id
    pair.ib.answer(sb, pair.now, ANSWER)
    pair.pump()
    assert [type(e) for e in pair.take_sa()] == [SessionAnswered]
    assert [type(e) for e in pair.take_sb()] == [SessionConfirmed]
    return sa, sb


def in_dialog(
    pair: InvitePair,
    sid: str,
    side: str,
    method: str,
    cseq: int,
    *,
    body: bytes = b"",
    content_type: str | None = None,
) -> Request:
    """A request inside the dialog of ``sid`` as seen from ``side``, built by hand."""
    manager = pair.ia if side == "a" else pair.ib
    view = manager.get(sid)
    assert view is not None and view.remote_tag is not None
    suffix = "" if pair.transport == "udp" else f";transport={pair.transport}"
    port = 5071 if side == "a" else 5072
    return make_request(
        method,
        view.remote_target,
        from_addr=f"<{view.local_uri}>",
        from_tag=view.local_tag,
        to_addr=f"<{view.remote_uri}>;tag={view.remote_tag}",
        call_id=view.call_id,
        cseq=cseq,
        contact=f"<sip:gw-{side}@127.0.0.1:{port}{suffix}>",
        body=body,
        content_type=content_type,
    )


def send_raw(pair: InvitePair, side: str, request: Request) -> str:
    endpoint, dest = (pair.a, pair.addr_b) if side == "a" else (pair.b, pair.addr_a)
    key = endpoint.send_request(request, dest, pair.now)
    pair.pump()
    return key


def raw_responses(events: list[Any]) -> list[Response]:
    return [e.response for e in events if isinstance(e, ResponseReceived)]


def assert_idle(pair: InvitePair) -> None:
    pair.advance(300)
    assert pair.ia.count() == 0 and pair.ib.count() == 0
    assert pair.ia.transactions_in_flight == 0 and pair.ib.transactions_in_flight == 0
    assert pair.ia.next_deadline() is None and pair.ib.next_deadline() is None
    assert pair.a.transaction_count == 0 and pair.b.transaction_count == 0


def cseq(msg: Message) -> tuple[int, str]:
    c = parse_cseq(msg.headers.get("CSeq") or "")
    return c.seq, c.method


# --- full calls ---------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_full_call_caller_hangs_up(transport: str) -> None:
    pair = InvitePair(transport)
    sa = pair.invite(subject="chat")
    [invite] = pair.wire("a->b", "INVITE")
    assert isinstance(invite, Request)
    assert invite.headers.get("Max-Forwards") == "70"
    assert invite.headers.get("Contact") is not None  # §8.1.1.8
    assert "INVITE" in (invite.headers.get("Allow") or "")
    assert invite.headers.get("Content-Type") == SDP and invite.body == OFFER
    assert invite.headers.get("Subject") == "chat"
    [rx] = pair.take_sb()
    assert isinstance(rx, InviteReceived) and rx.body == OFFER and rx.content_type == SDP
    sb = rx.session_id
    assert pair.wire("b->a", "INVITE", 100)  # the transaction layer's 100 Trying
    assert pair.take_sa() == []  # 100 is not reported

    pair.ib.ringing(sb, pair.now)
    pair.pump()
    [progress] = pair.take_sa()
    assert isinstance(progress, SessionProgress) and progress.status == 180
    [ringing] = pair.wire("b->a", "INVITE", 180)
    b_tag = parse_name_addr(ringing.headers.get("To") or "").tag
    assert b_tag is not None and ringing.headers.get("Contact") is not None

    pair.ib.answer(sb, pair.now, ANSWER)
    pair.pump()
    [answered] = pair.take_sa()
    assert isinstance(answered, SessionAnswered)
    assert answered.body == ANSWER and answered.content_type == SDP
    [ok] = pair.wire("b->a", "INVITE", 200)
    assert parse_name_addr(ok.headers.get("To") or "").tag == b_tag  # same tag throughout
    assert ok.headers.get("Contact") is not None  # §13.3.1.4
    [ack] = pair.wire("a->b", "ACK")
    assert isinstance(ack, Request)
    assert cseq(ack) == (1, "ACK")  # §13.2.2.4: the INVITE's number
    assert ack.uri.startswith("sip:gw-b@127.0.0.1:5072")  # the remote target (Contact)
    assert [type(e) for e in pair.take_sb()] == [SessionConfirmed]
    view_a, view_b = pair.ia.get(sa), pair.ib.get(sb)
    assert view_a is not None and view_b is not None
    assert view_a.state == view_b.state == "confirmed"
    assert view_a.role is InviteRole.UAC and view_b.role is InviteRole.UAS
    assert view_a.call_id == view_b.call_id
    assert (view_a.local_tag, view_a.remote_tag) == (view_b.remote_tag, view_b.local_tag)

    pair.advance(10)  # no 2xx retransmission after the ACK
    assert len(pair.wire("b->a", "INVITE", 200)) == 1
    pair.ia.bye(sa, pair.now)
    pair.pump()
    [bye] = pair.wire("a->b", "BYE")
    assert cseq(bye) == (2, "BYE")
    assert pair.take_sb() == [SessionEnded(sb, "remote", END_BYE)]
    assert pair.take_sa() == [SessionEnded(sa, "local", END_BYE)]
    assert pair.wire("b->a", "BYE", 200)
    assert pair.ia.get(sa) is None and pair.ib.get(sb) is None
    assert pair.events_a == [] and pair.events_b == []
    assert_idle(pair)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_full_call_callee_hangs_up(transport: str) -> None:
    pair = InvitePair(transport)
    sa, sb = call(pair)
    pair.ib.bye(sb, pair.now)
    pair.pump()
    [bye] = pair.wire("b->a", "BYE")
    assert isinstance(bye, Request)
    assert cseq(bye) == (1, "BYE")  # the UAS's first request in the dialog
    assert bye.uri.startswith("sip:gw-a@127.0.0.1:5071")
    assert pair.take_sa() == [SessionEnded(sa, "remote", END_BYE)]
    assert pair.take_sb() == [SessionEnded(sb, "local", END_BYE)]
    assert_idle(pair)


def test_tcp_has_no_request_retransmissions() -> None:
    pair = InvitePair("tcp", drop=lambda d, data: d == "b->a")
    pair.invite()
    pair.advance(31)
    assert len(pair.wire("a->b", "INVITE")) == 1  # Timer A is not used on TCP
    pair.advance(2)
    [failed] = pair.take_sa()
    assert isinstance(failed, SessionFailed) and failed.status == 408
    assert_idle(pair)


def test_calls_both_ways_at_once_are_independent() -> None:
    pair = InvitePair()
    sa = pair.invite(pump=False)
    rb = pair.ib.invite(
        request_uri="sip:alice@127.0.0.1:5071",
        from_uri="<sip:bob@b.test>",
        to_uri="<sip:alice@a.test>",
        destination=pair.addr_a,
        now=pair.now,
        body=OFFER,
    )
    pair.pump()
    in_a, in_b = received(pair.take_sa()), received(pair.take_sb())
    pair.ia.answer(in_a.session_id, pair.now, ANSWER)
    pair.ib.answer(in_b.session_id, pair.now, ANSWER)
    pair.pump()
    kinds_a = sorted(type(e).__name__ for e in pair.take_sa())
    kinds_b = sorted(type(e).__name__ for e in pair.take_sb())
    assert kinds_a == kinds_b == ["SessionAnswered", "SessionConfirmed"]
    assert pair.ia.count() == pair.ib.count() == 2
    pair.ia.bye(sa, pair.now)
    pair.ib.bye(rb, pair.now)
    pair.pump()
    assert pair.ia.count() == pair.ib.count() == 0
    assert_idle(pair)


# --- CANCEL ---------------------------------------------------------------------------------


def test_cancel_before_any_provisional_waits_for_one() -> None:
    pair = InvitePair()
    sa = pair.invite(pump=False)
    pair.ia.cancel(sa, pair.now)  # §9.1: held, nothing on the wire yet
    assert pair.ia.get(sa) is not None and pair.ia.get(sa).state == "cancelling"  # type: ignore[union-attr]
    pair.pump()
    order = [
        (d, m.method if isinstance(m, Request) else m.status)
        for d, m in ((d, parse_message(x)) for d, x in pair.delivered)
    ]
    assert order[:3] == [("a->b", "INVITE"), ("b->a", 100), ("a->b", "CANCEL")]
    [rx, ended_b] = pair.take_sb()
    assert isinstance(rx, InviteReceived)
    assert ended_b == SessionEnded(rx.session_id, "remote", END_CANCEL)
    assert pair.wire("b->a", "CANCEL", 200) and pair.wire("b->a", "INVITE", 487)
    assert pair.take_sa() == [SessionEnded(sa, "local", END_CANCEL)]
    assert pair.wire("a->b", "ACK")  # the transaction ACKs the 487 (§17.1.1.3)
    assert_idle(pair)


def test_cancel_with_no_answer_at_all_ends_at_timer_b_and_sends_no_cancel() -> None:
    pair = InvitePair(drop=lambda d, data: d == "a->b")
    sa = pair.invite()
    pair.ia.cancel(sa, pair.now)
    pair.advance(40)
    assert pair.take_sa() == [SessionEnded(sa, "local", END_CANCEL)]
    assert not any(m.startswith(b"CANCEL") for _, m in pair.dropped)
    assert_idle(pair)


def test_cancel_after_the_provisional() -> None:
    pair = InvitePair()
    sa = pair.invite()
    sb = received(pair.take_sb()).session_id
    pair.ib.ringing(sb, pair.now)
    pair.pump()
    assert isinstance(pair.take_sa()[0], SessionProgress)
    pair.ia.cancel(sa, pair.now)
    pair.pump()
    [cancel] = pair.wire("a->b", "CANCEL")
    [invite] = pair.wire("a->b", "INVITE")
    assert cseq(cancel) == (1, "CANCEL")
    assert cancel.headers.get("Via") == invite.headers.get("Via")  # same branch (§9.1)
    assert pair.take_sb() == [SessionEnded(sb, "remote", END_CANCEL)]
    [ok_cancel] = pair.wire("b->a", "CANCEL", 200)
    [terminated] = pair.wire("b->a", "INVITE", 487)
    # §9.2: the To tag of the 200 to CANCEL is the one of the INVITE's responses.
    assert ok_cancel.headers.get("To") == terminated.headers.get("To")
    assert pair.take_sa() == [SessionEnded(sa, "local", END_CANCEL)]
    pair.ib.answer(sb, pair.now, ANSWER)  # too late: the session is gone, ignored
    pair.pump()
    assert not pair.wire("b->a", "INVITE", 200)
    assert_idle(pair)


def test_cancel_crossing_the_2xx_acks_and_byes_it() -> None:
    pair = InvitePair()
    sa = pair.invite()
    sb = received(pair.take_sb()).session_id
    pair.ib.ringing(sb, pair.now)
    pair.pump()
    pair.take_sa()
    # b answers and a cancels before either hears of the other.
    pair.ib.answer(sb, pair.now, ANSWER)
    pair.ia.cancel(sa, pair.now)
    pair.pump()
    assert pair.wire("a->b", "ACK") and pair.wire("a->b", "BYE")  # §9.1 / §13.2.2.4
    assert pair.take_sa() == [SessionEnded(sa, "local", END_CANCEL)]
    events_b = pair.take_sb()
    assert events_b[-1] == SessionEnded(sb, "remote", END_BYE)
    assert_idle(pair)


def test_cancel_with_a_lost_answer_gives_up_after_64_t1() -> None:
    # The callee answers the CANCEL but never sends the 487: §9.1, 64*T1 later the
    # session is considered cancelled; the INVITE transaction lives on to Timer C.
    pair = InvitePair(drop=lambda d, data: d == "b->a" and b" 487 " in data.split(b"\r\n")[0])
    sa = pair.invite()
    sb = received(pair.take_sb()).session_id
    pair.ib.ringing(sb, pair.now)
    pair.pump()
    pair.ia.cancel(sa, pair.now)
    pair.advance(31)
    assert pair.ia.get(sa) is not None
    pair.advance(2)
    assert pair.take_sa()[-1] == SessionEnded(sa, "local", END_CANCEL)
    assert pair.ia.count() == 0
    assert_idle(pair)


def test_ring_timeout_cancels_and_reports_408() -> None:
    pair = InvitePair(config=InviteConfig(ring_timeout=10, answer_timeout=60))
    sa = pair.invite()
    sb = received(pair.take_sb()).session_id
    pair.advance(9.9)
    assert not pair.wire("a->b", "CANCEL")
    pair.advance(0.2)
    assert pair.wire("a->b", "CANCEL")
    assert pair.take_sb() == [SessionEnded(sb, "remote", END_CANCEL)]
    [failed] = pair.take_sa()
    assert isinstance(failed, SessionFailed) and failed.status == 408
    assert failed.session_id == sa
    assert_idle(pair)


# --- failures --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "reason", "headers", "retry_after"),
    [
        (486, None, (), None),
        (603, "Decline", (), None),
        (404, "Not Found", (), None),
        (488, None, (("Warning", '304 b.test "media type not available"'),), None),
        (503, None, (("Retry-After", "120"),), 120),
        (480, None, (("Retry-After", "30 (back soon);duration=60"),), 30),
        (302, "Moved Temporarily", (("Contact", "<sip:bob@elsewhere.test>"),), None),
    ],
)
def test_non_2xx_final_responses_fail_the_session(
    status: int, reason: str | None, headers: tuple[tuple[str, str], ...], retry_after: int | None
) -> None:
    pair = InvitePair()
    sa = pair.invite()
    sb = received(pair.take_sb()).session_id
    pair.ib.reject(sb, pair.now, status, reason, headers)
    pair.pump()
    [failed] = pair.take_sa()
    assert isinstance(failed, SessionFailed)
    assert (failed.session_id, failed.status) == (sa, status)
    assert failed.reason == (reason or failed.reason)
    assert failed.retry_after == retry_after
    assert pair.take_sb() == [SessionEnded(sb, "local", END_REJECTED)]
    assert pair.wire("a->b", "ACK")  # the transaction ACKs it
    assert_idle(pair)


def test_timer_b_without_any_answer() -> None:
    pair = InvitePair(drop=lambda d, data: d == "a->b")
    sa = pair.invite()
    pair.advance(31.9)
    assert pair.take_sa() == []
    # Timer A: 0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 (RFC 3261 §17.1.1.2).
    assert len(pair.dropped) == 7
    pair.advance(0.2)
    [failed] = pair.take_sa()
    assert failed == SessionFailed(sa, 408, "Request Timeout", None)
    assert_idle(pair)


def test_transport_failure_fails_the_session() -> None:
    pair = InvitePair("tcp", drop=lambda d, data: True)
    sa = pair.invite()
    pair.a.transport_error(pair.addr_b, pair.now)
    pair.pump()
    assert pair.take_sa() == [SessionFailed(sa, 503, "Service Unavailable", None)]
    assert_idle(pair)


# --- 2xx reliability (RFC 3261 §13.3.1.4, §13.2.2.4) ------------------------------------------


def _is_ack(direction: str, data: bytes) -> bool:
    return direction == "a->b" and data.startswith(b"ACK ")


def test_2xx_is_retransmitted_until_the_ack_arrives() -> None:
    acks_lost = [0]

    def drop(direction: str, data: bytes) -> bool:
        if _is_ack(direction, data) and acks_lost[0] < 3:
            acks_lost[0] += 1
            return True
        return False

    pair = InvitePair(drop=drop)
    sa = pair.invite()
    sb = received(pair.take_sb()).session_id
    pair.ib.answer(sb, pair.now, ANSWER)
    pair.pump()
    assert [type(e) for e in pair.take_sa()] == [SessionAnswered]
    times = []
    for _ in range(6):
        before = len(pair.wire("b->a", "INVITE", 200))
        pair.advance(0.25)
        if len(pair.wire("b->a", "INVITE", 200)) > before:
            times.append(pair.now)
    pair.advance(10)
    # 2xx at 0, then T1, 2*T1, 4*T1 later: 0.5, 1.5, (3.5: the fourth ACK gets through).
    oks = pair.wire("b->a", "INVITE", 200)
    assert len(oks) == 4
    assert len(pair.wire("a->b", "ACK")) + len(pair.dropped) == 4  # one ACK per 2xx
    assert pair.take_sb() == [SessionConfirmed(sb, b"", None)]
    assert pair.take_sa() == []  # retransmissions are not new answers
    pair.ia.bye(sa, pair.now)
    pair.pump()
    assert pair.take_sa() == [SessionEnded(sa, "local", END_BYE)]
    assert_idle(pair)


def test_no_ack_ends_the_session_with_a_bye() -> None:
    pair = InvitePair(drop=_is_ack)
    sa = pair.invite()
    sb = received(pair.take_sb()).session_id
    pair.ib.answer(sb, pair.now, ANSWER)
    pair.pump()
    assert [type(e) for e in pair.take_sa()] == [SessionAnswered]
    start = pair.now
    pair.advance(NO_ACK - 0.01)
    oks = pair.wire("b->a", "INVITE", 200)
    # 0, 0.5, 1.5, 3.5, 7.5 then every T2 = 4 s: 11.5 ... 31.5.
    assert len(oks) == 11
    assert pair.take_sb() == []
    pair.advance(0.02)
    assert pair.now >= start + NO_ACK
    assert pair.take_sb() == [SessionEnded(sb, "local", END_NO_ACK)]
    [bye] = pair.wire("b->a", "BYE")
    assert isinstance(bye, Request)
    assert pair.take_sa() == [SessionEnded(sa, "remote", END_BYE)]
    assert_idle(pair)


def test_lost_2xx_is_recovered() -> None:
    lost = [False]

    def drop(direction: str, data: bytes) -> bool:
        if direction == "b->a" and data.startswith(b"SIP/2.0 200") and not lost[0]:
            lost[0] = True
            return True
        return False

    pair = InvitePair(drop=drop)
    sa = pair.invite()
    sb = received(pair.take_sb()).session_id
    pair.ib.answer(sb, pair.now, ANSWER)
    pair.pump()
    assert pair.take_sa() == []
    pair.advance(0.5)
    assert [type(e) for e in pair.take_sa()] == [SessionAnswered]
    assert [type(e) for e in pair.take_sb()] == [SessionConfirmed]
    assert len(pair.wire("a->b", "ACK")) == 1
    pair.ib.bye(sb, pair.now)
    pair.pump()
    assert pair.take_sa() == [SessionEnded(sa, "remote", END_BYE)]
    assert_idle(pair)


def test_bye_before_the_ack_is_held_until_it_arrives() -> None:
    acks = [0]

    def drop(direction: str, data: bytes) -> bool:
        if _is_ack(direction, data) and acks[0] < 2:
            acks[0] += 1
            return True
        return False

    pair = InvitePair(drop=drop)
    sa = pair.invite()
    sb = received(pair.take_sb()).session_id
    pair.ib.answer(sb, pair.now, ANSWER)
    pair.pump()
    pair.ib.bye(sb, pair.now)  # §15: no BYE before the ACK
    pair.pump()
    assert not pair.wire("b->a", "BYE")
    assert pair.ib.get(sb).state == "ending"  # type: ignore[union-attr]
    pair.advance(2)  # retransmitted 2xx, second ACK lost, third arrives at 1.5 s
    assert pair.wire("b->a", "BYE")
    assert pair.take_sb() == [SessionEnded(sb, "local", END_BYE)]  # no SessionConfirmed
    events_a = pair.take_sa()
    assert events_a[-1] == SessionEnded(sa, "remote", END_BYE)
    assert_idle(pair)


def test_forked_2xx_is_acked_and_ended_with_a_bye() -> None:
    pair = InvitePair()
    sa, sb = call(pair)
    [ok] = [d for _, d in pair.delivered if d.startswith(b"SIP/2.0 200") and b" INVITE\r\n" in d]
    fork = ok.replace(b";tag=Bt1", b";tag=fork9")
    assert fork != ok
    pair.a.receive_datagram(fork, pair.addr_b, pair.now)
    pair.pump()
    assert pair.take_sa() == []  # still one session, still the first dialog
    acks = pair.wire("a->b", "ACK")
    byes = pair.wire("a->b", "BYE")
    assert len(acks) == 2 and len(byes) == 1
    assert "tag=fork9" in (acks[1].headers.get("To") or "")
    assert "tag=fork9" in (byes[0].headers.get("To") or "")
    assert cseq(byes[0]) == (2, "BYE")
    assert pair.wire("b->a", "BYE", 481)  # b knows no such dialog
    # A retransmission of the fork's 2xx: the same ACK again, no second BYE.
    pair.a.receive_datagram(fork, pair.addr_b, pair.now)
    pair.pump()
    assert len(pair.wire("a->b", "ACK")) == 3 and len(pair.wire("a->b", "BYE")) == 1
    assert pair.ia.get(sa).state == "confirmed"  # type: ignore[union-attr]
    # A retransmission of the first 2xx is acknowledged again too.
    pair.a.receive_datagram(ok, pair.addr_b, pair.now)
    pair.pump()
    assert len(pair.wire("a->b", "ACK")) == 4
    pair.ia.bye(sa, pair.now)
    pair.pump()
    assert pair.take_sa() == [SessionEnded(sa, "local", END_BYE)]
    assert pair.take_sb() == [SessionEnded(sb, "remote", END_BYE)]
    assert_idle(pair)


def test_2xx_after_the_session_ended_is_acked_and_byed() -> None:
    pair = InvitePair()
    sa, sb = call(pair)
    pair.ia.bye(sa, pair.now)
    pair.pump()
    pair.take_sa()
    pair.take_sb()
    [ok] = [d for _, d in pair.delivered if d.startswith(b"SIP/2.0 200") and b" INVITE\r\n" in d]
    fork = ok.replace(b";tag=Bt1", b";tag=late7")
    pair.a.receive_datagram(fork, pair.addr_b, pair.now)
    pair.pump()
    assert any("late7" in (m.headers.get("To") or "") for m in pair.wire("a->b", "BYE"))
    assert pair.take_sa() == []
    assert_idle(pair)


def test_2xx_without_contact_fails_with_502_after_ack_and_bye() -> None:
    def strip_contact(direction: str, data: bytes) -> bytes:
        if direction == "b->a" and data.startswith(b"SIP/2.0 200"):
            lines = [ln for ln in data.split(b"\r\n") if not ln.startswith(b"Contact:")]
            return b"\r\n".join(lines)
        return data

    pair = InvitePair(rewrite=strip_contact)
    sa = pair.invite()
    sb = received(pair.take_sb()).session_id
    pair.ib.answer(sb, pair.now, ANSWER)
    pair.pump()
    [failed] = pair.take_sa()
    assert isinstance(failed, SessionFailed) and failed.status == 502
    assert failed.session_id == sa and "Contact" in failed.reason
    assert pair.wire("a->b", "ACK") and pair.wire("a->b", "BYE")
    assert [type(e) for e in pair.take_sb()] == [SessionConfirmed, SessionEnded]
    assert_idle(pair)


def test_record_route_is_followed_by_ack_and_bye() -> None:
    rr = b"Record-Route: <sip:127.0.0.1:5072;lr>\r\n"

    def add_rr(direction: str, data: bytes) -> bytes:
        if direction == "a->b" and data.startswith(b"INVITE "):
            head, _, rest = data.partition(b"\r\n")
            return head + b"\r\n" + rr + rest
        return data

    pair = InvitePair(rewrite=add_rr)
    sa, _ = call(pair)
    [ok] = pair.wire("b->a", "INVITE", 200)
    assert ok.headers.get("Record-Route") == "<sip:127.0.0.1:5072;lr>"  # copied (§12.1.1)
    [ack] = pair.wire("a->b", "ACK")
    assert ack.headers.get("Route") == "<sip:127.0.0.1:5072;lr>"
    pair.ia.bye(sa, pair.now)
    pair.pump()
    [bye] = pair.wire("a->b", "BYE")
    assert bye.headers.get("Route") == "<sip:127.0.0.1:5072;lr>"
    assert isinstance(bye, Request) and bye.uri.startswith("sip:gw-b@")  # loose routing
    assert pair.take_sa() == [SessionEnded(sa, "local", END_BYE)]


# --- in-dialog requests: re-INVITE, BYE, others -----------------------------------------------


def test_reinvite_to_the_callee_gets_488_and_the_session_continues() -> None:
    pair = InvitePair()
    sa, sb = call(pair)
    reinvite = in_dialog(pair, sa, "a", "INVITE", 2, body=OFFER, content_type=SDP)
    send_raw(pair, "a", reinvite)
    [refused] = [r for r in raw_responses(pair.events_a) if r.status >= 200]
    assert refused.status == 488
    warning = refused.headers.get("Warning") or ""
    assert warning.startswith('399 127.0.0.1 "') and "continues" in warning
    assert pair.take_sb() == [] and pair.take_sa() == []
    assert pair.ib.get(sb).state == "confirmed"  # type: ignore[union-attr]
    assert len(pair.wire("a->b", "ACK")) == 2  # the 488 is ACKed by its transaction too
    pair.ib.bye(sb, pair.now)
    pair.pump()
    assert pair.take_sa() == [SessionEnded(sa, "remote", END_BYE)]
    assert pair.take_sb() == [SessionEnded(sb, "local", END_BYE)]
    assert_idle(pair)


def test_reinvite_to_the_caller_gets_488_and_the_session_continues() -> None:
    pair = InvitePair()
    sa, sb = call(pair)
    send_raw(pair, "b", in_dialog(pair, sb, "b", "INVITE", 1, body=OFFER, content_type=SDP))
    assert [r.status for r in raw_responses(pair.events_b) if r.status >= 200] == [488]
    pair.ia.bye(sa, pair.now)
    pair.pump()
    assert pair.take_sa() == [SessionEnded(sa, "local", END_BYE)]
    assert pair.take_sb() == [SessionEnded(sb, "remote", END_BYE)]
    assert_idle(pair)


def test_reinvite_before_the_ack_gets_491() -> None:
    pair = InvitePair(drop=_is_ack)
    sa = pair.invite()
    sb = received(pair.take_sb()).session_id
    pair.ib.answer(sb, pair.now, ANSWER)
    pair.pump()
    pair.take_sa()
    send_raw(pair, "a", in_dialog(pair, sa, "a", "INVITE", 2, body=OFFER, content_type=SDP))
    assert [r.status for r in raw_responses(pair.events_a) if r.status >= 200] == [491]
    assert pair.ib.get(sb).state == "answered"  # type: ignore[union-attr]


def test_reinvite_before_the_final_response_gets_500_with_retry_after() -> None:
    pair = InvitePair()
    pair.invite()
    sb = received(pair.take_sb()).session_id
    pair.ib.ringing(sb, pair.now)
    pair.pump()
    [ringing] = pair.wire("b->a", "INVITE", 180)
    view = pair.ib.get(sb)
    assert view is not None
    early = make_request(
        "INVITE",
        "sip:gw-b@127.0.0.1:5072",
        from_addr="<sip:alice@a.test>",
        from_tag=view.remote_tag or "",
        to_addr=ringing.headers.get("To") or "",
        call_id=view.call_id,
        cseq=2,
        contact="<sip:gw-a@127.0.0.1:5071>",
    )
    send_raw(pair, "a", early)
    [refused] = [r for r in raw_responses(pair.events_a) if r.status >= 200]
    assert refused.status == 500
    assert 0 <= int(refused.headers.get("Retry-After") or "-1") <= 10  # §14.2
    assert pair.ib.get(sb).state == "received"  # type: ignore[union-attr]


def test_bye_for_an_unknown_dialog_gets_481() -> None:
    pair = InvitePair()
    stray = make_request(
        "BYE",
        "sip:bob@127.0.0.1:5072",
        from_addr="<sip:alice@a.test>",
        from_tag="nobody",
        to_addr="<sip:bob@b.test>;tag=nothing",
        call_id="no-such-call@test",
        cseq=7,
    )
    send_raw(pair, "a", stray)
    no_tag = make_request(
        "BYE",
        "sip:bob@127.0.0.1:5072",
        from_addr="<sip:alice@a.test>",
        from_tag="nobody",
        to_addr="<sip:bob@b.test>",
        call_id="no-such-call@test",
        cseq=8,
    )
    send_raw(pair, "a", no_tag)
    assert [r.status for r in raw_responses(pair.events_a)] == [481, 481]
    reinvite = make_request(
        "INVITE",
        "sip:bob@127.0.0.1:5072",
        from_addr="<sip:alice@a.test>",
        from_tag="nobody",
        to_addr="<sip:bob@b.test>;tag=nothing",
        call_id="no-such-call@test",
        cseq=9,
        contact="<sip:alice@127.0.0.1:5071>",
    )
    send_raw(pair, "a", reinvite)
    assert [r.status for r in raw_responses(pair.events_a) if r.status >= 200][-1] == 481
    assert pair.ib.count() == 0 and pair.take_sb() == []


@pytest.mark.parametrize(
    ("method", "status"),
    [("UPDATE", 405), ("INFO", 405), ("PRACK", 405), ("MESSAGE", 405), ("OPTIONS", 200)],
)
def test_other_requests_in_the_dialog(method: str, status: int) -> None:
    pair = InvitePair()
    sa, sb = call(pair)
    send_raw(pair, "a", in_dialog(pair, sa, "a", method, 2))
    [answer] = [r for r in raw_responses(pair.events_a) if r.status >= 200]
    assert answer.status == status
    allow = answer.headers.get("Allow") or ""
    assert [m.strip() for m in allow.split(",")] == list(IN_DIALOG_ALLOW)
    assert pair.ib.get(sb).state == "confirmed"  # type: ignore[union-attr]
    pair.ib.bye(sb, pair.now)
    pair.pump()
    assert pair.take_sa() == [SessionEnded(sa, "remote", END_BYE)]


def test_unknown_method_in_the_dialog_gets_501() -> None:
    pair = InvitePair()
    sa, _ = call(pair)
    send_raw(pair, "a", in_dialog(pair, sa, "a", "FROBNICATE", 2))
    [answer] = raw_responses(pair.events_a)
    assert answer.status == 501 and answer.headers.get("Allow")


def test_out_of_order_bye_gets_500() -> None:
    pair = InvitePair()
    sa, sb = call(pair)
    send_raw(pair, "a", in_dialog(pair, sa, "a", "OPTIONS", 5))
    send_raw(pair, "a", in_dialog(pair, sa, "a", "BYE", 3))
    assert [r.status for r in raw_responses(pair.events_a)][-1] == 500
    assert pair.ib.get(sb) is not None  # RFC 3261 §12.2.2: refused, nothing changes


def test_other_requests_outside_our_dialogs_are_not_claimed() -> None:
    pair = InvitePair()
    message = make_request(
        "MESSAGE",
        "sip:bob@127.0.0.1:5072",
        from_addr="<sip:alice@a.test>",
        from_tag="x",
        to_addr="<sip:bob@b.test>",
        call_id="m1@test",
        cseq=1,
        body=b"hi",
        content_type="text/plain",
    )
    pair.a.send_request(message, pair.addr_b, pair.now)
    pair.pump()
    assert [type(e) for e in pair.events_b] == [RequestReceived]


def test_bye_crossing_our_bye() -> None:
    pair = InvitePair()
    sa, sb = call(pair)
    pair.ia.bye(sa, pair.now)
    pair.ib.bye(sb, pair.now)
    pair.pump()
    assert pair.take_sa() == [SessionEnded(sa, "local", END_BYE)]
    assert pair.take_sb() == [SessionEnded(sb, "local", END_BYE)]
    assert_idle(pair)


def test_bye_that_gets_no_answer_is_bye_failed() -> None:
    pair = InvitePair(drop=lambda d, data: d == "a->b" and data.startswith(b"BYE "))
    sa, sb = call(pair)
    pair.ia.bye(sa, pair.now)
    pair.advance(31.9)
    assert pair.take_sa() == []
    pair.advance(0.2)
    assert pair.take_sa() == [SessionEnded(sa, "local", END_BYE_FAILED)]
    pair.ib.bye(sb, pair.now)  # b never heard; its own BYE gets 481, which ends it
    pair.pump()
    assert pair.take_sb() == [SessionEnded(sb, "local", END_BYE)]
    assert_idle(pair)


def test_caller_bye_on_the_early_dialog_gets_200_and_487() -> None:
    pair = InvitePair()
    sa = pair.invite()
    sb = received(pair.take_sb()).session_id
    pair.ib.ringing(sb, pair.now)
    pair.pump()
    [ringing] = pair.wire("b->a", "INVITE", 180)
    view = pair.ib.get(sb)
    assert view is not None
    bye = make_request(
        "BYE",
        "sip:gw-b@127.0.0.1:5072",
        from_addr="<sip:alice@a.test>",
        from_tag=view.remote_tag or "",
        to_addr=ringing.headers.get("To") or "",
        call_id=view.call_id,
        cseq=2,
    )
    send_raw(pair, "a", bye)
    assert [r.status for r in raw_responses(pair.events_a)] == [200]
    assert pair.take_sb() == [SessionEnded(sb, "remote", END_BYE)]
    assert pair.wire("b->a", "INVITE", 487)  # §15.1.2
    assert [type(e) for e in pair.take_sa()] == [SessionProgress, SessionFailed]
    assert pair.ia.get(sa) is None
    assert_idle(pair)


# --- incoming INVITE checks -----------------------------------------------------------------


def _raw_invite(
    *,
    contact: str | None = "<sip:alice@127.0.0.1:5071>",
    headers: tuple[tuple[str, str], ...] = (),
    body: bytes = OFFER,
    content_type: str | None = SDP,
    call_id: str = "in-1@test",
    cseq: int = 1,
    max_forwards: int = 70,
) -> Request:
    return make_request(
        "INVITE",
        "sip:bob@127.0.0.1:5072",
        from_addr="<sip:alice@a.test>",
        from_tag="ft1",
        to_addr="<sip:bob@b.test>",
        call_id=call_id,
        cseq=cseq,
        contact=contact,
        headers=headers,
        body=body,
        content_type=content_type if body else None,
        max_forwards=max_forwards,
    )


@pytest.mark.parametrize(
    ("request_kwargs", "status", "header"),
    [
        ({"contact": None}, 400, None),
        ({"headers": (("Require", "100rel"),)}, 420, ("Unsupported", "100rel")),
        ({"headers": (("Require", "timer, foo"),)}, 420, ("Unsupported", "timer, foo")),
        ({"content_type": "text/plain"}, 415, ("Accept", SDP)),
        ({"headers": (("Content-Encoding", "gzip"),)}, 415, ("Accept-Encoding", "identity")),
        ({"headers": (("Expires", "soon"),)}, 400, None),
        ({"max_forwards": 0}, 483, None),
    ],
)
def test_incoming_invite_refusals(
    request_kwargs: dict[str, Any], status: int, header: tuple[str, str] | None
) -> None:
    pair = InvitePair()
    request = _raw_invite(**request_kwargs)
    send_raw(pair, "a", request)
    [answer] = [r for r in raw_responses(pair.events_a) if r.status >= 200]
    assert answer.status == status
    if header is not None:
        assert answer.headers.get(header[0]) == header[1]
    assert pair.take_sb() == [] and pair.ib.count() == 0


def test_invite_without_sdp_is_answered_with_an_offer_and_the_ack_carries_the_answer() -> None:
    pair = InvitePair()
    send_raw(pair, "a", _raw_invite(body=b""))
    rx = received(pair.take_sb())
    assert rx.body == b"" and rx.content_type is None
    pair.ib.answer(rx.session_id, pair.now, OFFER)
    pair.pump()
    [ok] = [r for r in raw_responses(pair.events_a) if r.status == 200]
    ack = make_request(
        "ACK",
        "sip:gw-b@127.0.0.1:5072",
        from_addr="<sip:alice@a.test>",
        from_tag="ft1",
        to_addr=ok.headers.get("To") or "",
        call_id="in-1@test",
        cseq=1,
        body=ANSWER,
        content_type=SDP,
    )
    pair.a.send_request(ack, pair.addr_b, pair.now)
    pair.pump()
    assert pair.take_sb() == [SessionConfirmed(rx.session_id, ANSWER, SDP)]


def test_merged_invite_gets_482() -> None:
    pair = InvitePair()
    first = _raw_invite()
    send_raw(pair, "a", first)
    assert isinstance(pair.take_sb()[0], InviteReceived)
    send_raw(pair, "a", first)  # same From tag, Call-ID, CSeq; a new branch
    assert [r.status for r in raw_responses(pair.events_a) if r.status >= 200] == [482]
    assert pair.ib.count() == 1


def test_session_limit_gives_503_with_retry_after_and_raises_locally() -> None:
    cfg = InviteConfig(max_sessions=1, overload_retry_after=7)
    pair = InvitePair(config=cfg)
    send_raw(pair, "a", _raw_invite())
    send_raw(pair, "a", _raw_invite(call_id="in-2@test"))
    [busy] = [r for r in raw_responses(pair.events_a) if r.status >= 200]
    assert busy.status == 503 and busy.headers.get("Retry-After") == "7"
    pair.invite(pump=False)
    with pytest.raises(LocalSipError) as info:
        pair.invite(pump=False)
    assert info.value.status_hint == 503


def test_unanswered_invite_gets_480_and_one_with_expires_487() -> None:
    pair = InvitePair(config=InviteConfig(answer_timeout=20))
    send_raw(pair, "a", _raw_invite())
    send_raw(pair, "a", _raw_invite(call_id="in-2@test", headers=(("Expires", "5"),)))
    first, second = (e.session_id for e in pair.take_sb())
    pair.advance(5.1)
    assert pair.take_sb() == [SessionEnded(second, "local", END_NO_ANSWER)]
    pair.advance(15)
    assert pair.take_sb() == [SessionEnded(first, "local", END_NO_ANSWER)]
    finals = [r.status for r in raw_responses(pair.events_a) if r.status >= 200]
    assert finals == [487, 480]  # §13.3.1 for Expires
    assert_idle(pair)


def test_bye_before_answering_declines_with_480() -> None:
    pair = InvitePair()
    sa = pair.invite()
    sb = received(pair.take_sb()).session_id
    pair.ib.bye(sb, pair.now)
    pair.pump()
    assert pair.take_sb() == [SessionEnded(sb, "local", END_REJECTED)]
    [failed] = pair.take_sa()
    assert isinstance(failed, SessionFailed) and failed.status == 480
    assert failed.session_id == sa
    assert_idle(pair)


def test_transport_failure_under_an_incoming_invite() -> None:
    pair = InvitePair()
    pair.invite()
    sb = received(pair.take_sb()).session_id
    pair.b.transport_error(pair.addr_a, pair.now)
    pair.pump()
    assert pair.take_sb() == [SessionEnded(sb, "remote", END_TRANSPORT)]


# --- the runtime's mistakes -----------------------------------------------------------------


def test_runtime_misuse_raises_local_errors() -> None:
    pair = InvitePair()
    sa = pair.invite()
    sb = received(pair.take_sb()).session_id
    with pytest.raises(LocalSipError):
        pair.ia.answer(sa, pair.now, ANSWER)  # an outgoing session
    with pytest.raises(LocalSipError):
        pair.ib.answer(sb, pair.now, b"")  # a 2xx carries SDP
    with pytest.raises(LocalSipError):
        pair.ib.reject(sb, pair.now, 200)
    with pytest.raises(LocalSipError):
        pair.ib.answer(sb, pair.now, ANSWER, headers=(("Contact", "<sip:x@y>"),))
    with pytest.raises(LocalSipError):
        pair.ib.answer(sb, pair.now, ANSWER, headers=(("X-Bad", "a\r\nb"),))
    with pytest.raises(LocalSipError):
        pair.ia.invite(
            request_uri="sip:bob@127.0.0.1:5072",
            from_uri="<sip:alice@a.test>",
            to_uri="<sip:bob@b.test>",
            destination=pair.addr_b,
            now=pair.now,
            body=b"",
        )
    with pytest.raises(LocalSipError):
        pair.invite(request_uri="not a uri")
    with pytest.raises(LocalSipError):
        pair.invite(headers=(("Content-Type", "text/plain"),))
    pair.ib.answer(sb, pair.now, ANSWER)
    with pytest.raises(LocalSipError):
        pair.ib.answer(sb, pair.now, ANSWER)  # answered already
    with pytest.raises(LocalSipError):
        pair.ib.ringing(sb, pair.now)
    # Sessions that are gone are ignored (they may end while the runtime is busy).
    pair.ib.answer("no-such", pair.now, ANSWER)
    pair.ia.bye("no-such", pair.now)
    pair.ia.cancel("no-such", pair.now)
    with pytest.raises(ValueError):
        InviteConfig(answer_timeout=0)
    with pytest.raises(ValueError):
        InviteManager(
            pair.a, InviteConfig(answer_timeout=500), CountingIds(), contact=lambda t: "<sip:x@y>"
        )


def test_only_the_layers_own_transactions_and_methods_are_claimed() -> None:
    endpoint = SipEndpoint(EndpointConfig(local={"udp": ("127.0.0.1", 5071)}), CountingIds("e"))
    manager = InviteManager(endpoint, InviteConfig(), CountingIds("m"), lambda t: "<sip:g@h>")
    bye = make_request(
        "BYE",
        "sip:b@127.0.0.1",
        from_addr="<sip:a@a>",
        from_tag="t",
        to_addr="<sip:b@b>;tag=v",
        call_id="c@x",
        cseq=2,
    )
    response = make_response(bye, 200)
    # Outcomes of transactions the layer did not start are someone else's.
    assert not manager.handle_sip_event(ResponseReceived(response, "k|BYE", bye), 0.0)
    assert not manager.handle_sip_event(TransactionTimedOut("k|BYE", bye), 0.0)
    # A BYE request is always the layer's: this one matches no dialog, so 481.
    source = TransportAddress("udp", "127.0.0.1", 5072)
    wire = bye.replace(
        headers=bye.headers.prepend("Via", "SIP/2.0/UDP 127.0.0.1:5072;branch=z9hG4bKx")
    )
    endpoint.receive_datagram(serialize(wire), source, 0.0)
    event = endpoint.next_event()
    assert isinstance(event, RequestReceived)
    assert manager.handle_sip_event(event, 0.0)
    [(_, data)] = endpoint.data_to_send()
    assert data.startswith(b"SIP/2.0 481 ")


# --- tables ---------------------------------------------------------------------------------


def test_tables_render_and_every_live_state_can_be_ended() -> None:
    text = render_invite_tables()
    assert "UAC" in text and "UAS" in text and "re-INVITE" in text
    for table in (UAC_TABLE, UAS_TABLE):
        for state, rows in table.items():
            if state is SessionState.TERMINATED:
                assert rows == {}
                continue
            assert SessionInput.TU_BYE in rows and SessionInput.TU_CANCEL in rows, state
    for state in (SessionState.CALLING, SessionState.PROCEEDING):
        assert UAC_TABLE[state][SessionInput.RESP_2XX][0] is SessionState.CONFIRMED


def test_serialized_sessions_use_injected_ids() -> None:
    pair = InvitePair()
    pair.invite(call_id="thread-42@gw")
    [invite] = pair.wire("a->b", "INVITE")
    assert invite.headers.get("Call-ID") == "thread-42@gw"
    assert "tag=At1" in (invite.headers.get("From") or "")
    assert serialize(invite).startswith(b"INVITE sip:bob@127.0.0.1:5072 SIP/2.0\r\n")


# --- property: random operations, clock steps and losses -------------------------------------

_op = st.one_of(
    st.tuples(st.just("call"), st.sampled_from(["a", "b"])),
    st.tuples(st.just("call"), st.sampled_from(["a", "b"])),
    st.tuples(st.just("ring"), st.integers(0, 7)),
    st.tuples(st.just("answer"), st.integers(0, 7)),
    st.tuples(st.just("answer"), st.integers(0, 7)),
    st.tuples(st.just("reject"), st.integers(0, 7), st.sampled_from([486, 603, 404, 500])),
    st.tuples(st.just("cancel"), st.integers(0, 7), st.sampled_from(["a", "b"])),
    st.tuples(st.just("bye"), st.integers(0, 7), st.sampled_from(["a", "b"])),
    st.tuples(st.just("advance"), st.sampled_from([0.0, 0.3, 0.5, 2.0, 5.0, 33.0, 70.0])),
)


def _pick(ids: list[str], index: int) -> str | None:
    return ids[index % len(ids)] if ids else None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.lists(_op, min_size=4, max_size=30),
    loss=st.sampled_from([0.0, 0.0, 0.2, 0.5]),
    transport=st.sampled_from(["udp", "udp", "tcp"]),
    seed=st.integers(0, 2**16),
)
def test_property_random_operations_never_raise_nor_leak(
    ops: list[tuple[Any, ...]], loss: float, transport: str, seed: int
) -> None:
    rng = random.Random(seed)
    drop: DropRule | None = None
    if loss and transport == "udp":
        drop = lambda d, data: rng.random() < loss  # noqa: E731
    cfg = InviteConfig(answer_timeout=40, ring_timeout=60)
    pair = InvitePair(transport, drop=drop, config=cfg)
    # A second manager pair shares the endpoints so that both sides can call: b's manager
    # is the same object, calls from b go to a.
    known: dict[str, int] = {}
    terminal: dict[str, int] = {}

    def collect() -> None:
        for side, events in (("a", pair.take_sa()), ("b", pair.take_sb())):
            for event in events:
                key = f"{side}:{event.session_id}"
                if isinstance(event, InviteReceived):
                    assert key not in known
                    known[key] = 1
                assert key in known, event
                if isinstance(event, TERMINAL_EVENTS):
                    terminal[key] = terminal.get(key, 0) + 1

    for op in ops:
        kind = op[0]
        if kind == "call":
            if op[1] == "a":
                sid = pair.invite(pump=False)
                known[f"a:{sid}"] = 1
            else:
                sid = pair.ib.invite(
                    request_uri="sip:alice@127.0.0.1:5071",
                    from_uri="<sip:bob@b.test>",
                    to_uri="<sip:alice@a.test>",
                    destination=pair.addr_a,
                    now=pair.now,
                    body=OFFER,
                )
                known[f"b:{sid}"] = 1
        elif kind in ("ring", "answer", "reject"):
            incoming = [
                (m, s)
                for m in (pair.ia, pair.ib)
                for s in m.session_ids()
                if (v := m.get(s)) is not None
                and v.role is InviteRole.UAS
                and v.state == "received"
            ]
            if incoming:
                manager, sid = incoming[op[1] % len(incoming)]
                if kind == "ring":
                    manager.ringing(sid, pair.now)
                elif kind == "answer":
                    manager.answer(sid, pair.now, ANSWER)
                else:
                    manager.reject(sid, pair.now, op[2])
        elif kind in ("cancel", "bye"):
            manager = pair.ia if op[2] == "a" else pair.ib
            if (sid := _pick(manager.session_ids(), op[1])) is not None:
                getattr(manager, kind)(sid, pair.now)
        elif kind == "advance":
            pair.advance(op[1])
        pair.pump()
        collect()
    # Wind down: end everything, then let every timer run out.
    for _ in range(3):
        for manager in (pair.ia, pair.ib):
            for sid in manager.session_ids():
                manager.bye(sid, pair.now)
        pair.advance(250)
        collect()
    assert pair.ia.count() == 0 and pair.ib.count() == 0
    assert pair.ia.transactions_in_flight == 0 and pair.ib.transactions_in_flight == 0
    assert pair.ia.next_deadline() is None and pair.ib.next_deadline() is None
    assert pair.a.transaction_count == 0 and pair.b.transaction_count == 0
    assert set(terminal) == set(known), (known, terminal)
    assert all(n == 1 for n in terminal.values()), terminal  # exactly one terminal event


# -- per-call Contact (RFC 7573 §4: the XMPP user's resource as GRUU) --------------------


def test_per_call_contact_in_invite_ringing_and_answer() -> None:
    pair = InvitePair()
    # Angle brackets keep ;gr inside the URI (RFC 3261 §20: bare, it is a header param).
    gruu_a = "sip:juliet@127.0.0.1:5071;gr=balcony"
    gruu_b = '"Romeo" <sip:romeo@127.0.0.1:5072;gr=orchard>'
    sa = pair.invite(contact=f"<{gruu_a}>")
    [invite] = pair.wire("a->b", "INVITE")
    assert invite.headers.get("Contact") == f"<{gruu_a}>"
    sb = received(pair.take_sb()).session_id
    pair.ib.ringing(sb, pair.now, contact=gruu_b)
    pair.ib.answer(sb, pair.now, ANSWER, contact=gruu_b)
    pair.pump()
    [ringing] = pair.wire("b->a", "INVITE", 180)
    [ok] = pair.wire("b->a", "INVITE", 200)
    assert parse_name_addr(ringing.headers.get("Contact") or "").uri == parse_name_addr(gruu_b).uri
    assert parse_name_addr(ok.headers.get("Contact") or "").uri == parse_name_addr(gruu_b).uri
    # The dialogs use them as remote targets (RFC 3261 §12.1): ACK and BYE go there.
    [ack] = pair.wire("a->b", "ACK")
    assert isinstance(ack, Request) and ack.uri == "sip:romeo@127.0.0.1:5072;gr=orchard"
    pair.ib.bye(sb, pair.now)
    pair.pump()
    [bye] = pair.wire("b->a", "BYE")
    assert isinstance(bye, Request) and bye.uri == gruu_a
    assert pair.take_sa()[-1] == SessionEnded(sa, "remote", END_BYE)
    # Later calls without the argument keep the layer's default Contact.
    pair.invite()
    invites = pair.wire("a->b", "INVITE")
    assert invites[-1].headers.get("Contact") == "<sip:gw-a@127.0.0.1:5071>"


@pytest.mark.parametrize("bad", ["not a uri", "<sip:x@y", ""])
def test_bad_per_call_contact_is_a_local_error_and_sends_nothing(bad: str) -> None:
    pair = InvitePair()
    with pytest.raises(LocalSipError):
        pair.invite(contact=bad)
    assert pair.wire("a->b") == []
    sa = pair.invite()
    sb = received(pair.take_sb()).session_id
    with pytest.raises(LocalSipError):
        pair.ib.answer(sb, pair.now, ANSWER, contact=bad)
    assert pair.ib.get(sb) is not None and pair.ia.get(sa) is not None
