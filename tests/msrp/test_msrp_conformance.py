"""Conformance points 58-62 of the interworking spec (§4), plus the MSRP parts of 51-52,
and the status codes of RFC 4975 §10 as the core produces them."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from msrp_helpers import MsrpPair

from sipxmpp.gateway.msrp import (
    ByteRange,
    EndFlag,
    FailureReport,
    MessageReceived,
    MsrpConnection,
    MsrpRequest,
    MsrpResponse,
    MsrpSettings,
    ReportReceived,
    SendFailed,
    StatusHeader,
    parse_uri,
    serialize,
)
from sipxmpp.gateway.msrp.parser import MsrpFramer, decode_frame


def replies_to(pair: MsrpPair, raw: bytes) -> list:
    pair.b.conn.receive_data(raw, pair.now)
    pair.b.drain()
    framer = MsrpFramer()
    framer.receive_data(pair.b.conn.data_to_send())
    out = []
    while (frame := framer.next_frame()) is not None:
        out.append(decode_frame(frame))
    return out


def bound() -> MsrpPair:
    pair = MsrpPair()
    pair.bind()
    return pair


def raw_send(pair: MsrpPair, tid: str, headers: str, body: str | None = "hi") -> bytes:
    a, b = pair.a.session.local_uri, pair.b.session.local_uri
    head = f"MSRP {tid} SEND\r\nTo-Path: {b}\r\nFrom-Path: {a}\r\n{headers}"
    if body is None:
        return f"{head}-------{tid}$\r\n".encode()
    return f"{head}\r\n{body}\r\n-------{tid}$\r\n".encode()


def test_point_58_end_line_and_content_type_last() -> None:
    pair = bound()
    pair.a.session.send_message("text/plain", b"hello", now=pair.now)
    wire = pair.a.conn.data_to_send()
    lines = wire.split(b"\r\n")
    tid = lines[0].split(b" ")[1]
    assert lines[-2] == b"-------" + tid + b"$"  # end-line carries the start line's tid
    blank = lines.index(b"")
    assert lines[blank - 1].startswith(b"Content-Type: ")  # Content-Type is the last header
    assert lines[1].startswith(b"To-Path: ") and lines[2].startswith(b"From-Path: ")
    # An end-line with another tid does not end the frame; Content-Type not last is a 400.
    replies = replies_to(
        pair,
        raw_send(
            pair, "tidaaaa1", "Message-ID: m0001\r\nContent-Type: text/plain\r\nX-Late: 1\r\n"
        ),
    )
    assert [r.status for r in replies] == [400]


def test_point_59_chunked_message_reassembled_by_message_id() -> None:
    pair = bound()
    first = raw_send(
        pair,
        "dkei38sd",
        "Message-ID: 4564dpWd\r\nByte-Range: 1-*/8\r\nContent-Type: text/plain\r\n",
        "abcd",
    ).replace(b"-------dkei38sd$", b"-------dkei38sd+")
    second = raw_send(
        pair,
        "dkei38ia",
        "Message-ID: 4564dpWd\r\nByte-Range: 5-8/8\r\nContent-Type: text/plain\r\n",
        "EFGH",
    )
    # Delivered in reverse order, one byte at a time.
    for byte in second + first:
        pair.b.conn.receive_data(bytes([byte]), pair.now)
    pair.b.drain()
    (message,) = pair.b.of_type(MessageReceived)
    assert (message.message_id, message.body) == ("4564dpWd", b"abcdEFGH")


def test_point_60_failure_report_semantics() -> None:
    pair = bound()
    no = raw_send(
        pair, "tidno001", "Message-ID: m0001\r\nFailure-Report: no\r\nContent-Type: text/plain\r\n"
    )
    assert replies_to(pair, no) == []
    absent = raw_send(pair, "tidyes01", "Message-ID: m0002\r\nContent-Type: text/plain\r\n")
    assert [r.status for r in replies_to(pair, absent)] == [200]  # absent means yes
    partial = raw_send(
        pair,
        "tidpar01",
        "Message-ID: m0003\r\nFailure-Report: partial\r\nContent-Type: text/plain\r\n",
    )
    assert replies_to(pair, partial) == []


def test_point_61_status_481_506_415() -> None:
    pair = bound()
    a = pair.a.session.local_uri
    unknown = f"MSRP tid48101 SEND\r\nTo-Path: msrp://bob.example.test:8888/zzzz;tcp\r\nFrom-Path: {a}\r\nMessage-ID: m0001\r\n-------tid48101$\r\n"
    assert [r.status for r in replies_to(pair, unknown.encode())] == [481]
    other = MsrpConnection(pair.b.table)
    other.receive_data(raw_send(pair, "tid50601", "Message-ID: m0001\r\n", None), pair.now)
    framer = MsrpFramer()
    framer.receive_data(other.data_to_send())
    frame = framer.next_frame()
    assert frame is not None and decode_frame(frame).status == 506  # type: ignore[union-attr]
    html = raw_send(pair, "tid41501", "Message-ID: m0002\r\nContent-Type: text/html\r\n")
    assert [r.status for r in replies_to(pair, html)] == [415]


def test_point_62_report_never_answered() -> None:
    pair = bound()
    a, b = pair.a.session.local_uri, pair.b.session.local_uri
    for status in ("000 200 OK", "000 413 too big", "garbage"):
        report = (
            f"MSRP tidrep01 REPORT\r\nTo-Path: {b}\r\nFrom-Path: {a}\r\nMessage-ID: m0001\r\n"
            f"Byte-Range: 1-2/2\r\nStatus: {status}\r\n-------tidrep01$\r\n"
        )
        assert replies_to(pair, report.encode()) == []


def test_point_51_receipt_request_and_report() -> None:
    # XEP-0184 <request/> maps to Success-Report: yes; the 200 REPORT maps to <received/>.
    pair = bound()
    mid = pair.a.session.send_message(
        "text/plain", b"please confirm", now=pair.now, success_report=True
    )
    pair.roundtrip_until_done()
    assert [(e.message_id, e.status) for e in pair.a.of_type(ReportReceived)] == [(mid, 200)]
    # Gateway-generated SENDs can carry Failure-Report: no (RFC 7573 §7).
    pair.a.session.send_message("text/plain", b"x", now=pair.now, failure_report=FailureReport.NO)
    assert b"Failure-Report: no\r\n" in pair.a.conn.data_to_send()


def test_point_52_over_max_size_is_413() -> None:
    pair = MsrpPair(settings_b=MsrpSettings(max_message_size=10_000))
    pair.bind()
    mid = pair.a.session.send_message("text/plain", b"o" * 10_001, now=pair.now)
    pair.roundtrip_until_done()
    assert [(e.message_id, e.status) for e in pair.a.of_type(SendFailed)] == [(mid, 413)]


def test_status_423_for_out_of_bounds_byte_range() -> None:
    pair = bound()
    raw = raw_send(
        pair, "tid42301", "Message-ID: m0001\r\nByte-Range: 5-9/6\r\nContent-Type: text/plain\r\n"
    )
    assert [r.status for r in replies_to(pair, raw)] == [423]


def test_status_501_for_unknown_method() -> None:
    pair = bound()
    raw = raw_send(pair, "tid50101", "", None).replace(b" SEND\r\n", b" FROBNICATE\r\n")
    assert [r.status for r in replies_to(pair, raw)] == [501]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.binary(max_size=60)
        | st.sampled_from(
            [
                b"MSRP tidfz001 SEND\r\n",
                b"To-Path: msrp://bob.example.test:8888/b000001;tcp\r\n",
                b"From-Path: msrp://alice.example.test:7777/a000001;tcp\r\n",
                b"Message-ID: m0001\r\nByte-Range: 1-*/*\r\n",
                b"Content-Type: text/plain\r\n\r\n",
                b"\r\n-------tidfz001$\r\n",
                b"-------tidfz001+\r\n",
                b"MSRP tidfz001 200 OK\r\n",
            ]
        ),
        max_size=10,
    )
)
def test_connection_survives_any_input(parts: list[bytes]) -> None:
    """Whatever arrives, receive_data never raises, and everything we write is valid MSRP."""
    pair = bound()
    for part in parts:
        pair.b.conn.receive_data(part, pair.now)
        pair.b.conn.handle_timer(pair.now + 1000)
    framer = MsrpFramer()
    framer.receive_data(pair.b.conn.data_to_send())
    while (frame := framer.next_frame()) is not None:
        assert isinstance(decode_frame(frame), MsrpRequest | MsrpResponse)


def test_wire_vocabulary() -> None:
    # The small value types print as RFC 4975 §9 writes them.
    assert EndFlag.ABORTED.value == "#"
    assert str(ByteRange(1, None, None)) == "1-*/*"
    assert str(StatusHeader(200, "OK")) == "000 200 OK"
    assert serialize(
        MsrpResponse(
            "tid00001",
            200,
            None,
            (parse_uri("msrp://a.example:1/s;tcp"),),
            (parse_uri("msrp://b.example:1/s;tcp"),),
        )
    ).startswith(b"MSRP tid00001 200\r\n")
