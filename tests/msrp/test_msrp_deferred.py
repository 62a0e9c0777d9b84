"""Deferred delivery: the application answers a received message (response + REPORT).

A gateway must not tell an MSRP sender "200" or "Success-Report: delivered" before the
message was handed on (to XMPP); these tests drive two in-memory cores with a scripted
clock.
"""

from __future__ import annotations

import pytest
from msrp_helpers import MsrpPair

from sipxmpp.gateway.msrp import (
    FailureReport,
    LocalMsrpError,
    MessageAborted,
    MessageReceived,
    MessageSent,
    ReportReceived,
    SendFailed,
)
from sipxmpp.gateway.msrp.session import (
    DELIVERY_ANSWER_TIMEOUT,
    MAX_PENDING_DELIVERIES,
    UNDELIVERED_STATUS,
)


def deferred_pair() -> MsrpPair:
    pair = MsrpPair()
    pair.b.session.defer_delivery = True
    pair.bind()
    return pair


def test_response_and_success_report_wait_for_the_verdict() -> None:
    pair = deferred_pair()
    mid = pair.a.session.send_message("text/plain", b"hello", now=pair.now, success_report=True)
    pair.roundtrip_until_done()
    assert [e.message_id for e in pair.b.of_type(MessageReceived)] == [mid]
    assert pair.a.of_type(MessageSent) == [] and pair.a.of_type(ReportReceived) == []
    assert pair.b.session.answer_message(mid, now=pair.now) is True
    pair.roundtrip_until_done()
    assert [e.message_id for e in pair.a.of_type(MessageSent)] == [mid]
    assert [(e.message_id, e.status) for e in pair.a.of_type(ReportReceived)] == [(mid, 200)]
    # A second verdict for the same message finds nothing.
    assert pair.b.session.answer_message(mid, now=pair.now) is False


@pytest.mark.parametrize("status", [403, 413, 415])
def test_failure_verdict_fails_the_message_at_the_sender(status: int) -> None:
    pair = deferred_pair()
    mid = pair.a.session.send_message("text/plain", b"x", now=pair.now, success_report=True)
    pair.roundtrip_until_done()
    assert pair.b.session.answer_message(mid, status, now=pair.now, reason="link down")
    pair.roundtrip_until_done()
    assert [(e.message_id, e.status) for e in pair.a.of_type(SendFailed)] == [(mid, status)]
    assert pair.a.of_type(ReportReceived) == []  # no Success REPORT for a failed delivery


def test_partial_failure_report_gets_only_the_failure() -> None:
    pair = deferred_pair()
    ok = pair.a.session.send_message(
        "text/plain", b"a", now=pair.now, failure_report=FailureReport.PARTIAL
    )
    bad = pair.a.session.send_message(
        "text/plain", b"b", now=pair.now, failure_report=FailureReport.PARTIAL
    )
    pair.roundtrip_until_done()
    pair.b.session.answer_message(ok, now=pair.now)
    pair.b.session.answer_message(bad, UNDELIVERED_STATUS, now=pair.now)
    pair.roundtrip_until_done()
    assert [(e.message_id, e.status) for e in pair.a.of_type(SendFailed)] == [
        (bad, UNDELIVERED_STATUS)
    ]


def test_chunked_message_holds_only_the_last_chunk() -> None:
    pair = deferred_pair()
    body = b"z" * 10_000
    mid = pair.a.session.send_message("text/plain", body, now=pair.now)
    pair.roundtrip_until_done()
    assert pair.b.of_type(MessageReceived)[0].body == body
    assert pair.a.of_type(MessageSent) == []
    pair.b.session.answer_message(mid, now=pair.now)
    pair.roundtrip_until_done()
    assert [e.message_id for e in pair.a.of_type(MessageSent)] == [mid]


def test_no_verdict_in_time_answers_403_and_tells_the_application() -> None:
    pair = deferred_pair()
    mid = pair.a.session.send_message("text/plain", b"late", now=pair.now, success_report=True)
    pair.roundtrip_until_done()
    assert pair.b.conn.next_deadline() == pytest.approx(pair.now + DELIVERY_ANSWER_TIMEOUT)
    pair.advance(DELIVERY_ANSWER_TIMEOUT - 0.5)
    assert pair.a.of_type(SendFailed) == []
    pair.advance(1.0)
    assert [(e.message_id, e.status) for e in pair.a.of_type(SendFailed)] == [
        (mid, UNDELIVERED_STATUS)
    ]
    aborted = pair.b.of_type(MessageAborted)
    assert [(e.message_id, e.status) for e in aborted] == [(mid, UNDELIVERED_STATUS)]
    assert pair.b.session.answer_message(mid, now=pair.now) is False
    assert pair.a.of_type(ReportReceived) == []


def test_pending_deliveries_are_bounded() -> None:
    pair = deferred_pair()
    mids = [
        pair.a.session.send_message(
            "text/plain", b"m", now=pair.now, failure_report=FailureReport.NO, success_report=True
        )
        for _ in range(MAX_PENDING_DELIVERIES + 3)
    ]
    pair.roundtrip_until_done()
    aborted = pair.b.of_type(MessageAborted)
    assert [e.message_id for e in aborted] == mids[MAX_PENDING_DELIVERIES:]
    assert len(pair.b.conn._pending) == MAX_PENDING_DELIVERIES


def test_closing_the_session_drops_pending_verdicts() -> None:
    pair = deferred_pair()
    mid = pair.a.session.send_message("text/plain", b"x", now=pair.now)
    pair.roundtrip_until_done()
    pair.b.session.close()
    assert pair.b.session.answer_message(mid, now=pair.now) is False
    assert pair.b.conn.next_deadline() is None


def test_connection_loss_drops_pending_verdicts() -> None:
    pair = deferred_pair()
    pair.a.session.send_message("text/plain", b"x", now=pair.now)
    pair.roundtrip_until_done()
    pair.b.conn.connection_lost(pair.now)
    assert pair.b.conn._pending == {}


def test_session_without_deferral_answers_at_once() -> None:
    pair = MsrpPair()
    pair.bind()
    mid = pair.a.session.send_message("text/plain", b"x", now=pair.now)
    pair.roundtrip_until_done()
    assert [e.message_id for e in pair.a.of_type(MessageSent)] == [mid]
    assert pair.b.session.answer_message(mid, now=pair.now) is False


def test_invalid_status_is_refused_locally() -> None:
    pair = deferred_pair()
    with pytest.raises(LocalMsrpError):
        pair.b.session.answer_message("m", 99, now=pair.now)
