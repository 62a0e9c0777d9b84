"""MSRP sessions over an in-memory pair: binding, chunking, reports, status codes, timers."""

from __future__ import annotations

import pytest
from msrp_helpers import CountingIds, MsrpPair, Side

from sipxmpp.gateway.msrp import (
    ByteRange,
    ConnectionFailed,
    EndFlag,
    FailureReport,
    LocalMsrpError,
    MessageAborted,
    MessageReceived,
    MessageSent,
    MsrpConnection,
    MsrpRequest,
    MsrpResponse,
    MsrpSessionTable,
    MsrpSettings,
    ReportReceived,
    RequestRejected,
    ResponseReceived,
    SendFailed,
    SessionBound,
    SessionFailed,
    SessionLimitError,
    SessionState,
    StatusHeader,
    parse_message,
    parse_uri,
    serialize,
)
from sipxmpp.gateway.msrp.parser import MsrpFramer, decode_frame


def wire_messages(data: bytes) -> list:
    framer = MsrpFramer(max_body=10**7)
    framer.receive_data(data)
    out = []
    while (frame := framer.next_frame()) is not None:
        out.append(decode_frame(frame))
    return out


def bound_pair(**kw: object) -> MsrpPair:
    pair = MsrpPair(**kw)  # type: ignore[arg-type]
    pair.bind()
    return pair


def inject(pair: MsrpPair, side: Side, request: MsrpRequest) -> list:
    """Feed one request into ``side`` and return what it wrote back."""
    side.conn.receive_data(serialize(request), pair.now)
    side.drain()
    return wire_messages(side.conn.data_to_send())


def send_to_b(pair: MsrpPair, tid: str = "x0000001", **kw: object) -> MsrpRequest:
    fields: dict[str, object] = {
        "message_id": "xm000001",
        "byte_range": ByteRange(1, 2, 2),
        "content_type": "text/plain",
        "body": b"hi",
    }
    fields.update(kw)
    return MsrpRequest(
        tid,
        str(fields.pop("method", "SEND")),
        (pair.b.session.local_uri,),
        (pair.a.session.local_uri,),
        **fields,  # type: ignore[arg-type]
    )


# -- binding (§5.4) ----------------------------------------------------------------------


def test_active_side_binds_with_a_bodiless_send() -> None:
    pair = MsrpPair()
    pair.a.conn.bind(pair.a.session, pair.now)
    first = parse_message(pair.a.conn.data_to_send())
    assert isinstance(first, MsrpRequest)
    assert first.method == "SEND" and first.body is None and first.content_type is None
    assert first.byte_range == ByteRange(1, 0, 0)
    assert first.to_path == (pair.b.session.local_uri,)
    assert first.from_path == (pair.a.session.local_uri,)
    pair.b.conn.receive_data(serialize(first), pair.now)
    pair.b.drain()
    assert pair.b.events == [SessionBound(pair.b.session.session_id)]
    assert pair.b.session.state is SessionState.BOUND
    reply = parse_message(pair.b.conn.data_to_send())
    assert reply == MsrpResponse(
        first.transaction_id,
        200,
        "OK",
        (pair.a.session.local_uri,),  # §7.2: To-Path = first From-Path URI
        (pair.b.session.local_uri,),
    )
    pair.a.conn.receive_data(serialize(reply), pair.now)
    pair.a.drain()
    assert pair.a.of_type(SessionBound) == [SessionBound(pair.a.session.session_id)]
    assert pair.a.conn.next_deadline() is None


def test_ids_have_enough_random_bits() -> None:
    pair = bound_pair()
    pair.a.session.send_message("text/plain", b"x", now=pair.now)
    pair.roundtrip_until_done()
    ids = pair.a.table.ids
    assert isinstance(ids, CountingIds)
    assert ids.requested_bits[0] >= 80  # session-id (§6)
    assert min(ids.requested_bits[1:]) >= 64  # transaction ids and Message-IDs (§7.1)


def test_messages_queued_before_binding_flow_after_it() -> None:
    pair = MsrpPair()
    pair.a.session.send_message("text/plain", b"early from A", now=pair.now)
    pair.b.session.send_message("text/plain", b"early from B", now=pair.now)
    assert pair.b.conn.data_to_send() == b""  # B is passive: nothing to send on yet
    pair.bind()
    assert [e.body for e in pair.b.of_type(MessageReceived)] == [b"early from A"]
    assert [e.body for e in pair.a.of_type(MessageReceived)] == [b"early from B"]


def test_request_for_unknown_session_gets_481() -> None:
    pair = bound_pair()
    stranger = parse_uri("msrp://bob.example.test:8888/nosuchsession;tcp")
    request = MsrpRequest(
        "x0000001",
        "SEND",
        (stranger,),
        (pair.a.session.local_uri,),
        message_id="xm000001",
        content_type="text/plain",
        body=b"hi",
    )
    (reply,) = inject(pair, pair.b, request)
    assert isinstance(reply, MsrpResponse) and reply.status == 481
    assert reply.to_path == (pair.a.session.local_uri,) and reply.from_path == (stranger,)
    assert pair.b.of_type(RequestRejected)[-1].status == 481


def test_session_bound_elsewhere_gets_506() -> None:
    pair = bound_pair()
    other = MsrpConnection(pair.b.table)
    other.receive_data(serialize(send_to_b(pair)), pair.now)
    (reply,) = wire_messages(other.data_to_send())
    assert reply.status == 506
    assert pair.b.session.connection is pair.b.conn


def test_wrong_from_path_gets_403() -> None:
    pair = bound_pair()
    request = send_to_b(pair)
    intruder = parse_uri("msrp://mallory.example.test:6666/m1;tcp")
    bad = MsrpRequest(
        request.transaction_id,
        "SEND",
        request.to_path,
        (intruder,),
        message_id="xm000001",
        content_type="text/plain",
        body=b"hi",
    )
    (reply,) = inject(pair, pair.b, bad)
    assert reply.status == 403 and reply.to_path == (intruder,)


def test_first_request_must_be_send_to_bind() -> None:
    pair = MsrpPair()
    request = send_to_b(pair, method="NICKNAME", message_id=None, byte_range=None)
    (reply,) = inject(pair, pair.b, request)
    assert reply.status == 481
    assert pair.b.session.state is SessionState.UNBOUND


def test_binding_refused_fails_the_session() -> None:
    pair = MsrpPair()
    pair.b.session.close()  # B no longer knows the session: 481 to the binding SEND
    pair.a.session.send_message("text/plain", b"lost", now=pair.now)
    pair.bind()
    failed = pair.a.of_type(SessionFailed)
    assert failed and failed[0].status == 481
    assert pair.a.session.state is SessionState.CLOSED
    assert [e.status for e in pair.a.of_type(SendFailed)] == [481]


def test_binding_timeout() -> None:
    pair = MsrpPair()
    pair.a.conn.bind(pair.a.session, pair.now)
    pair.a.conn.data_to_send()  # lost on the way
    assert pair.a.conn.next_deadline() == 30.0
    pair.now = 30.0
    pair.a.conn.handle_timer(pair.now)
    pair.a.drain()
    assert pair.a.of_type(SessionFailed)[0].status == 408


def test_binding_timeout_reports_each_pipelined_message_once() -> None:
    # Chunks pipelined behind an unanswered binding SEND time out at the same instant as it:
    # the session failure reports each message once, not once more per chunk transaction.
    pair = MsrpPair()
    pair.a.conn.bind(pair.a.session, pair.now)
    mids = [pair.a.session.send_message("text/plain", b"m%d" % i, now=pair.now) for i in range(3)]
    pair.a.conn.data_to_send()  # lost on the way
    pair.now = 30.0
    pair.a.conn.handle_timer(pair.now)
    pair.a.drain()
    assert sorted(e.message_id for e in pair.a.of_type(SendFailed)) == sorted(mids)
    assert len(pair.a.of_type(SessionFailed)) == 1
    assert pair.a.conn.next_deadline() is None


# -- messages ----------------------------------------------------------------------------


@pytest.mark.parametrize("piece", [1, 5, None])
def test_chat_both_ways(piece: int | None) -> None:
    pair = MsrpPair()
    pair.a.conn.bind(pair.a.session, pair.now)
    pair.roundtrip_until_done(piece=piece)
    mid_a = pair.a.session.send_message("text/plain", b"Hi, I'm Alice!", now=pair.now)
    pair.roundtrip_until_done(piece=piece)
    mid_b = pair.b.session.send_message(
        "text/plain; charset=utf-8", "Hi, Alice! I'm Bob! ☺".encode(), now=pair.now
    )
    pair.roundtrip_until_done(piece=piece)
    (got_b,) = pair.b.of_type(MessageReceived)
    assert (got_b.message_id, got_b.body, got_b.content_type) == (
        mid_a,
        b"Hi, I'm Alice!",
        "text/plain",
    )
    (got_a,) = pair.a.of_type(MessageReceived)
    assert got_a.message_id == mid_b and got_a.body.decode() == "Hi, Alice! I'm Bob! ☺"
    assert pair.a.of_type(MessageSent) == [MessageSent(pair.a.session.session_id, mid_a)]
    assert pair.b.of_type(MessageSent) == [MessageSent(pair.b.session.session_id, mid_b)]
    assert pair.a.conn.next_deadline() is None and pair.b.conn.next_deadline() is None


def test_100_kb_message_is_chunked_and_interleaved() -> None:
    pair = bound_pair()
    big = bytes(range(256)) * 400  # 102,400 octets
    big_id = pair.a.session.send_message("text/plain", big, now=pair.now)
    small_id = pair.a.session.send_message("text/plain", b"typing...", now=pair.now)
    pair.roundtrip_until_done()
    received = pair.b.of_type(MessageReceived)
    # The small message went out between the chunks of the big one and completed first.
    assert [e.message_id for e in received] == [small_id, big_id]
    assert received[1].body == big
    sends = [m for m in wire_messages(bytes(pair.a.sent)) if m.method == "SEND" and m.body]
    big_chunks = [m for m in sends if m.message_id == big_id]
    assert len(big_chunks) == 50
    assert all(len(m.body) <= 2048 for m in big_chunks)
    assert big_chunks[0].byte_range == ByteRange(1, 2048, 102400)
    assert big_chunks[-1].end_flag is EndFlag.COMPLETE
    assert all(m.end_flag is EndFlag.CONTINUED for m in big_chunks[:-1])
    # It left as soon as the first window of 16 chunks was answered (the two messages then
    # take turns chunk by chunk), not after all 50 chunks.
    assert [m.message_id for m in sends].index(small_id) <= 17
    assert pair.a.of_type(MessageSent)[-1].message_id == big_id


def test_window_limits_outstanding_chunks() -> None:
    pair = bound_pair(settings_a=MsrpSettings(max_outstanding_chunks=4))
    pair.a.session.send_message("text/plain", b"z" * 20000, now=pair.now)
    first_flight = wire_messages(pair.a.conn.data_to_send())
    assert len(first_flight) == 4
    pair.b.conn.receive_data(b"".join(serialize(m) for m in first_flight), pair.now)
    pair.a.conn.receive_data(pair.b.conn.data_to_send(), pair.now)
    assert len(wire_messages(pair.a.conn.data_to_send())) == 4


def test_large_chunks_are_interruptible() -> None:
    pair = bound_pair(settings_a=MsrpSettings(chunk_size=8192))
    mid = pair.a.session.send_message("text/plain", b"q" * 20000, now=pair.now)
    pair.roundtrip_until_done()
    chunks = [m for m in wire_messages(bytes(pair.a.sent)) if m.message_id == mid]
    assert chunks[0].byte_range == ByteRange(1, None, 20000)
    assert pair.b.of_type(MessageReceived)[0].body == b"q" * 20000


def test_over_the_limit_gets_413_and_the_sender_stops() -> None:
    pair = bound_pair(settings_b=MsrpSettings(max_message_size=64 * 1024))
    mid = pair.a.session.send_message("text/plain", b"y" * 100_000, now=pair.now)
    pair.roundtrip_until_done()
    assert pair.b.of_type(MessageReceived) == []
    failed = pair.a.of_type(SendFailed)
    assert [(e.message_id, e.status) for e in failed] == [(mid, 413)]
    chunks = [m for m in wire_messages(bytes(pair.a.sent)) if m.message_id == mid]
    assert len(chunks) <= 16  # only the first window went out; then the sender stopped (§10)
    aborted = pair.b.of_type(MessageAborted)
    assert len(aborted) == 1 and aborted[0].status == 413
    assert pair.a.conn.next_deadline() is None
    # The session is still usable afterwards.
    pair.a.session.send_message("text/plain", b"small again", now=pair.now)
    pair.roundtrip_until_done()
    assert pair.b.of_type(MessageReceived)[0].body == b"small again"


def test_oversized_single_chunk_gets_413_without_buffering() -> None:
    pair = bound_pair(settings_b=MsrpSettings(max_message_size=1000))
    replies = inject(
        pair, pair.b, send_to_b(pair, byte_range=ByteRange(1, None, None), body=b"w" * 5000)
    )
    assert [r.status for r in replies] == [413]
    assert replies[0].to_path == (pair.a.session.local_uri,)
    # Later chunks of the same message are refused too.
    replies = inject(
        pair, pair.b, send_to_b(pair, "x0000002", byte_range=ByteRange(5001, 5002, None))
    )
    assert [r.status for r in replies] == [413]


def test_one_chunk_message_declaring_a_total_over_the_limit_gets_413() -> None:
    """A whole message in one chunk is checked like a reassembled one (§7.3.1, §10)."""
    pair = bound_pair(settings_b=MsrpSettings(max_message_size=1000))
    replies = inject(pair, pair.b, send_to_b(pair, byte_range=ByteRange(1, 2, 5000)))
    assert [r.status for r in replies] == [413]
    assert pair.b.of_type(MessageReceived) == []
    aborted = pair.b.of_type(MessageAborted)
    assert [(e.message_id, e.status) for e in aborted] == [("xm000001", 413)]


def test_one_chunk_message_is_delivered_as_framed() -> None:
    """§7.3.1: the octets framed count, not a range-end or total that disagrees with them
    (the RFC's own examples miscount), and a missing Byte-Range means the whole message."""
    pair = bound_pair()
    inject(pair, pair.b, send_to_b(pair, byte_range=ByteRange(1, 5, 7), body=b"hi"))
    inject(pair, pair.b, send_to_b(pair, "x0000002", message_id="xm000002", byte_range=None))
    received = pair.b.of_type(MessageReceived)
    assert [(m.message_id, m.body) for m in received] == [("xm000001", b"hi"), ("xm000002", b"hi")]


def test_unsupported_media_type_gets_415() -> None:
    pair = bound_pair()
    mid = pair.a.session.send_message("text/html", b"<b>hi</b>", now=pair.now)
    pair.roundtrip_until_done()
    assert pair.a.of_type(SendFailed) == [
        SendFailed(pair.a.session.session_id, mid, 415, "Unsupported Media Type")
    ]
    assert pair.b.of_type(MessageReceived) == []


def test_accept_types_wildcards_and_multipart() -> None:
    pair = bound_pair(accept_b=("text/*", "message/cpim"))
    for ctype in (
        "text/html",
        "message/cpim",
        "multipart/mixed; boundary=x",
        "multipart/alternative",
    ):
        pair.a.session.send_message(ctype, b"x", now=pair.now)
    pair.a.session.send_message("image/png", b"x", now=pair.now)
    pair.roundtrip_until_done()
    assert len(pair.b.of_type(MessageReceived)) == 4
    assert [e.status for e in pair.a.of_type(SendFailed)] == [415]


def test_unknown_method_gets_501() -> None:
    pair = bound_pair()
    (reply,) = inject(pair, pair.b, send_to_b(pair, method="NICKNAME"))
    assert reply.status == 501


def test_malformed_request_gets_400() -> None:
    pair = bound_pair()
    a, b = pair.a.session.local_uri, pair.b.session.local_uri
    raw = (
        f"MSRP x0000009 SEND\r\nTo-Path: {b}\r\nFrom-Path: {a}\r\nMessage-ID: xm000001\r\n"
        "Byte-Range: nonsense\r\nContent-Type: text/plain\r\n\r\nhi\r\n-------x0000009$\r\n"
    ).encode()
    pair.b.conn.receive_data(raw, pair.now)
    pair.b.drain()
    (reply,) = wire_messages(pair.b.conn.data_to_send())
    assert (reply.transaction_id, reply.status, reply.to_path) == ("x0000009", 400, (a,))
    assert pair.b.of_type(RequestRejected)[-1].answered


# -- Failure-Report and Success-Report (§7.1.2, §7.1.4) ------------------------------------


def test_failure_report_no_gets_no_response() -> None:
    pair = bound_pair()
    pair.a.session.send_message(
        "text/plain", b"fire and forget", now=pair.now, failure_report=FailureReport.NO
    )
    assert pair.a.conn.next_deadline() is None  # no transaction timer without a response
    pair.roundtrip_until_done()
    assert pair.b.of_type(MessageReceived)[0].body == b"fire and forget"
    assert [e for e in pair.a.of_type(ResponseReceived) if e.message_id] == []
    assert pair.a.of_type(MessageSent) == []
    # Even an error is not answered with Failure-Report: no.
    assert (
        inject(
            pair, pair.b, send_to_b(pair, content_type="image/png", failure_report=FailureReport.NO)
        )
        == []
    )


def test_failure_report_partial_only_negative_responses() -> None:
    pair = bound_pair()
    assert inject(pair, pair.b, send_to_b(pair, failure_report=FailureReport.PARTIAL)) == []
    replies = inject(
        pair,
        pair.b,
        send_to_b(pair, "x0000002", content_type="image/png", failure_report=FailureReport.PARTIAL),
    )
    assert [r.status for r in replies] == [415]
    mid = pair.a.session.send_message(
        "image/png", b"x", now=pair.now, failure_report=FailureReport.PARTIAL
    )
    pair.roundtrip_until_done()
    assert [(e.message_id, e.status) for e in pair.a.of_type(SendFailed)] == [(mid, 415)]


def test_missing_failure_report_means_yes() -> None:
    pair = bound_pair()
    replies = inject(pair, pair.b, send_to_b(pair))
    assert [r.status for r in replies] == [200]


def test_success_report_is_sent_once_for_the_whole_message() -> None:
    pair = bound_pair()
    body = b"r" * 5000
    mid = pair.a.session.send_message("text/plain", body, now=pair.now, success_report=True)
    pair.roundtrip_until_done()
    assert pair.b.of_type(MessageReceived)[0].success_report is True
    assert pair.a.of_type(ReportReceived) == [
        ReportReceived(pair.a.session.session_id, mid, 200, "OK", ByteRange(1, 5000, 5000))
    ]
    reports = [m for m in wire_messages(bytes(pair.b.sent)) if getattr(m, "method", "") == "REPORT"]
    assert len(reports) == 1
    assert reports[0].status == StatusHeader(200, "OK")
    assert reports[0].to_path == (pair.a.session.local_uri,)
    # §7.1.2: REPORT requests are never answered.
    report_tid = reports[0].transaction_id
    assert all(m.transaction_id != report_tid for m in wire_messages(bytes(pair.a.sent)))


def test_report_is_never_answered_even_when_broken() -> None:
    pair = bound_pair()
    report = send_to_b(
        pair,
        method="REPORT",
        content_type=None,
        body=None,
        status=StatusHeader(200, "OK"),
    )
    assert inject(pair, pair.b, report) == []
    a, b = pair.a.session.local_uri, pair.b.session.local_uri
    broken = f"MSRP x0000003 REPORT\r\nTo-Path: {b}\r\nFrom-Path: {a}\r\n-------x0000003$\r\n"
    pair.b.conn.receive_data(broken.encode(), pair.now)
    assert pair.b.conn.data_to_send() == b""


def test_failure_report_fails_the_message() -> None:
    pair = bound_pair()
    mid = pair.a.session.send_message("text/plain", b"x", now=pair.now)
    pair.roundtrip_until_done()
    report = MsrpRequest(
        "x0000004",
        "REPORT",
        (pair.a.session.local_uri,),
        (pair.b.session.local_uri,),
        message_id=mid,
        byte_range=ByteRange(1, 1, 1),
        status=StatusHeader(413, "too big after all"),
    )
    assert inject(pair, pair.a, report) == []
    assert pair.a.of_type(ReportReceived)[-1].status == 413
    assert pair.a.of_type(SendFailed) == [
        SendFailed(pair.a.session.session_id, mid, 413, "too big after all")
    ]


# -- timers (§7.3) -------------------------------------------------------------------------


def test_transaction_timer_fails_the_message_after_30_seconds() -> None:
    pair = bound_pair()
    pair.now = 100.0
    mid = pair.a.session.send_message("text/plain", b"into the void", now=pair.now)
    pair.a.conn.data_to_send()  # the chunk is lost
    assert pair.a.conn.next_deadline() == 130.0
    pair.a.conn.handle_timer(129.9)
    pair.a.drain()
    assert pair.a.of_type(SendFailed) == []
    pair.a.conn.handle_timer(130.0)
    pair.a.drain()
    assert pair.a.of_type(SendFailed) == [
        SendFailed(pair.a.session.session_id, mid, 408, "transaction timed out (§7.3)")
    ]
    assert pair.a.conn.next_deadline() is None


def test_late_response_after_timeout_is_ignored() -> None:
    pair = bound_pair()
    pair.a.session.send_message("text/plain", b"slow", now=pair.now)
    request = wire_messages(pair.a.conn.data_to_send())[0]
    pair.advance(31.0)
    assert [e.status for e in pair.a.of_type(SendFailed)] == [408]
    pair.b.conn.receive_data(serialize(request), pair.now)
    pair.a.conn.receive_data(pair.b.conn.data_to_send(), pair.now)
    pair.a.drain()
    assert pair.a.of_type(MessageSent) == []


def test_incomplete_message_expires() -> None:
    pair = bound_pair()
    inject(
        pair, pair.b, send_to_b(pair, byte_range=ByteRange(1, 2, 10), end_flag=EndFlag.CONTINUED)
    )
    assert pair.b.conn.next_deadline() == pair.now + 120.0
    pair.advance(120.0)
    assert pair.b.of_type(MessageAborted)[0].reason == "reassembly timed out"
    assert pair.b.conn.next_deadline() is None


# -- aborts, limits, connection failures --------------------------------------------------


def test_sender_abort_with_hash_flag() -> None:
    pair = bound_pair(settings_a=MsrpSettings(max_outstanding_chunks=1))
    mid = pair.a.session.send_message("text/plain", b"k" * 10000, now=pair.now)
    pair.exchange_once()
    pair.exchange_once()
    assert pair.a.session.abort_message(mid)
    pair.roundtrip_until_done()
    assert pair.b.of_type(MessageReceived) == []
    assert [e.message_id for e in pair.b.of_type(MessageAborted)] == [mid]
    last = wire_messages(bytes(pair.a.sent))[-1]
    assert last.end_flag is EndFlag.ABORTED
    assert not pair.a.session.abort_message(mid)


def test_abort_before_any_chunk_sends_nothing() -> None:
    pair = MsrpPair()
    mid = pair.a.session.send_message("text/plain", b"never", now=pair.now)
    assert pair.a.session.abort_message(mid)
    pair.bind()
    assert pair.b.of_type(MessageReceived) == []


def test_too_many_incomplete_messages_gets_413() -> None:
    pair = bound_pair(settings_b=MsrpSettings(max_incomplete_messages=2))
    statuses = []
    for i in range(3):
        replies = inject(
            pair,
            pair.b,
            send_to_b(
                pair,
                f"x000001{i}",
                message_id=f"xm00001{i}",
                byte_range=ByteRange(1, 2, 10),
                end_flag=EndFlag.CONTINUED,
            ),
        )
        statuses.append(replies[0].status)
    assert statuses == [200, 200, 413]


def test_tid_never_appears_in_the_body() -> None:
    pair = bound_pair()
    ids = pair.a.table.ids
    assert isinstance(ids, CountingIds)
    # Message-ID takes the next token, the chunk's tid the one after: poison that one.
    poisoned = f"a{ids.count + 2:06d}"
    body = b"look: -------" + poisoned.encode() + b"$ fake end-line"
    pair.a.session.send_message("text/plain", body, now=pair.now)
    chunk = wire_messages(pair.a.conn.data_to_send())[0]
    assert chunk.transaction_id != poisoned and chunk.body == body


def test_connection_lost_fails_sessions_and_pending_messages() -> None:
    pair = bound_pair()
    mid = pair.a.session.send_message("text/plain", b"pending", now=pair.now)
    pair.a.conn.connection_lost(pair.now)
    pair.a.drain()
    assert pair.a.of_type(SendFailed) == [
        SendFailed(pair.a.session.session_id, mid, 408, "connection lost")
    ]
    assert pair.a.of_type(SessionFailed) == [
        SessionFailed(pair.a.session.session_id, 408, "connection lost")
    ]
    assert pair.a.session.state is SessionState.CLOSED and pair.a.conn.closed
    assert pair.a.conn.next_deadline() is None
    with pytest.raises(LocalMsrpError):
        pair.a.session.send_message("text/plain", b"too late", now=pair.now)


def test_garbage_closes_the_connection() -> None:
    pair = bound_pair()
    pair.b.conn.receive_data(b"GET / HTTP/1.1\r\n\r\n", pair.now)
    pair.b.drain()
    assert isinstance(pair.b.events[-2], ConnectionFailed)
    assert pair.b.of_type(SessionFailed)[0].session_id == pair.b.session.session_id
    assert pair.b.conn.closed
    pair.b.conn.receive_data(b"more", pair.now)  # ignored, never raises


def test_close_returns_unfinished_and_later_requests_get_481() -> None:
    pair = bound_pair()
    mid = pair.b.session.send_message("text/plain", b"unanswered", now=pair.now)
    pair.b.conn.data_to_send()
    assert pair.b.session.close() == (mid,)
    assert pair.b.session.close() == ()
    assert len(pair.b.table) == 0
    (reply,) = inject(pair, pair.b, send_to_b(pair))
    assert reply.status == 481


def test_session_limits() -> None:
    table = MsrpSessionTable(
        CountingIds("t"), MsrpSettings(max_sessions_per_peer=1, max_sessions=3)
    )
    peer = (parse_uri("msrp://peer.example.test:1/p1;tcp"),)
    table.create_session(table.new_local_uri("gw.example.test", 2855), remote_path=peer)
    with pytest.raises(SessionLimitError):
        table.create_session(table.new_local_uri("gw.example.test", 2855), remote_path=peer)
    other = (parse_uri("msrp://OTHER.example.test:1/p2;tcp"),)
    table.create_session(table.new_local_uri("gw.example.test", 2855), remote_path=other)
    table.create_session(table.new_local_uri("gw.example.test", 2855))
    with pytest.raises(SessionLimitError):
        table.create_session(table.new_local_uri("gw.example.test", 2855))


def test_sessions_per_connection_limit_gets_403() -> None:
    table = MsrpSessionTable(CountingIds("t"), MsrpSettings(max_sessions_per_connection=1))
    peer = parse_uri("msrp://peer.example.test:1/p1;tcp")
    s1 = table.create_session(table.new_local_uri("gw.example.test", 2855), remote_path=(peer,))
    s2 = table.create_session(table.new_local_uri("gw.example.test", 2855), remote_path=(peer,))
    conn = MsrpConnection(table)
    for session, expected in ((s1, 200), (s2, 403)):
        request = MsrpRequest(
            f"p{expected}xx", "SEND", (session.local_uri,), (peer,), message_id="pm0001"
        )
        conn.receive_data(serialize(request), 0.0)
        (reply,) = wire_messages(conn.data_to_send())
        assert reply.status == expected


def test_two_sessions_share_one_connection() -> None:
    table_a = MsrpSessionTable(CountingIds("a"))
    table_b = MsrpSessionTable(CountingIds("b"))
    pairs = []
    for _ in range(2):
        ua = table_a.new_local_uri("alice.example.test", 7777)
        ub = table_b.new_local_uri("bob.example.test", 8888)
        pairs.append(
            (
                table_a.create_session(ua, remote_path=(ub,)),
                table_b.create_session(ub, remote_path=(ua,)),
            )
        )
    conn_a, conn_b = MsrpConnection(table_a), MsrpConnection(table_b)
    for sa, _ in pairs:
        conn_a.bind(sa, 0.0)
    pairs[0][0].send_message("text/plain", b"one", now=0.0)
    pairs[1][0].send_message("text/plain", b"two", now=0.0)
    for _ in range(5):
        conn_b.receive_data(conn_a.data_to_send(), 0.0)
        conn_a.receive_data(conn_b.data_to_send(), 0.0)
    events = []
    while (event := conn_b.next_event()) is not None:
        events.append(event)
    got = {(e.session_id, e.body) for e in events if isinstance(e, MessageReceived)}
    assert got == {(pairs[0][1].session_id, b"one"), (pairs[1][1].session_id, b"two")}
    assert set(conn_b.session_ids) == {sb.session_id for _, sb in pairs}


def test_send_message_validates_its_arguments() -> None:
    pair = bound_pair(settings_a=MsrpSettings(max_message_size=10, max_queued_messages=1))
    with pytest.raises(LocalMsrpError):
        pair.a.session.send_message("not a type", b"x", now=pair.now)
    with pytest.raises(LocalMsrpError):
        pair.a.session.send_message("text/plain", b"x" * 11, now=pair.now)
    with pytest.raises(LocalMsrpError):
        pair.a.session.send_message("text/plain", b"x", now=pair.now, headers=(("To-Path", "x"),))
