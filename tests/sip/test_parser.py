"""Datagram parsing and stream framing (RFC 3261 §7, §18.3; RFC 5626 §3.5.1).

Every stream case is fed whole and one byte at a time.
"""

from __future__ import annotations

import pytest

from sipxmpp.gateway.sip.message import Headers, Message, Request, Response, serialize
from sipxmpp.gateway.sip.parser import (
    MAX_BODY_BYTES,
    MAX_HEADER_BLOCK_BYTES,
    MAX_HEADER_COUNT,
    PONG,
    KeepAlive,
    SipParseError,
    StreamFramer,
    is_keepalive,
    parse_message,
)

BASE = [
    ("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds"),
    ("Max-Forwards", "70"),
    ("From", "Alice <sip:alice@atlanta.com>;tag=1928301774"),
    ("To", "Bob <sip:bob@biloxi.com>"),
    ("Call-ID", "a84b4c76e66710@pc33.atlanta.com"),
]
BASE_TEXT = (
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n"
    "Max-Forwards: 70\r\n"
    "From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n"
    "To: Bob <sip:bob@biloxi.com>\r\n"
    "Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n"
)


def _request(
    method: str = "MESSAGE", body: bytes = b"", extra: list[tuple[str, str]] | None = None
) -> Request:
    headers = [*BASE, ("CSeq", f"1 {method}"), *(extra or [])]
    return Request(method, "sip:bob@biloxi.com", Headers(tuple(headers)), body)


def _wire(start: str, cseq: str, extra: str = "", body: bytes = b"", length: bool = True) -> bytes:
    cl = f"Content-Length: {len(body)}\r\n" if length else ""
    return f"{start}\r\n{BASE_TEXT}CSeq: {cseq}\r\n{extra}{cl}\r\n".encode() + body


# (wire bytes, message): serialize(message) == wire and parse(wire) == message.
CANONICAL_CASES: list[tuple[bytes, Message]] = [
    (_wire("MESSAGE sip:bob@biloxi.com SIP/2.0", "1 MESSAGE", "Content-Type: text/plain\r\n", b"Hi!"),
     _request("MESSAGE", b"Hi!", [("Content-Type", "text/plain")])),
    (_wire("OPTIONS sip:bob@biloxi.com SIP/2.0", "1 OPTIONS"), _request("OPTIONS")),
    (_wire("SIP/2.0 200 OK", "1 MESSAGE"),
     Response(200, "OK", Headers((*BASE, ("CSeq", "1 MESSAGE"))))),
    (_wire("SIP/2.0 100 ", "1 INVITE"),  # RFC 4475 §3.1.1.13: empty reason phrase
     Response(100, "", Headers((*BASE, ("CSeq", "1 INVITE"))))),
    (_wire("SIP/2.0 699 Über-Fehler \u20ac", "1 INVITE"),
     Response(699, "Über-Fehler \u20ac", Headers((*BASE, ("CSeq", "1 INVITE"))))),
    (_wire("MESSAGE sip:bob@biloxi.com SIP/2.0", "1 MESSAGE", "Content-Type: application/octet-stream\r\n",
           bytes(range(256))),
     _request("MESSAGE", bytes(range(256)), [("Content-Type", "application/octet-stream")])),
]  # fmt: skip


@pytest.mark.parametrize(("wire", "message"), CANONICAL_CASES)
def test_canonical_cases_both_ways(wire: bytes, message: Message) -> None:
    assert parse_message(wire) == message
    assert serialize(message) == wire


def _feed_bytewise(data: bytes) -> list[Message | KeepAlive]:
    framer = StreamFramer()
    out: list[Message | KeepAlive] = []
    for i in range(len(data)):
        out += framer.feed(data[i : i + 1])
        assert framer.buffered <= MAX_HEADER_BLOCK_BYTES + MAX_BODY_BYTES + 4
    assert framer.buffered == 0
    return out


@pytest.mark.parametrize(("wire", "message"), CANONICAL_CASES)
def test_canonical_cases_on_a_stream(wire: bytes, message: Message) -> None:
    stream = wire + b"\r\n\r\n" + wire + wire
    expected = [message, KeepAlive(), message, message]
    assert StreamFramer().feed(stream) == expected
    assert _feed_bytewise(stream) == expected


# Inputs in a non-canonical spelling and the message they mean.
TOLERATED_CASES: list[tuple[str, bytes, Message]] = [
    ("compact forms and odd case",
     b"MESSAGE sip:bob@biloxi.com SIP/2.0\r\nv: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n"
     b"MAX-FORWARDS: 70\r\nf: Alice <sip:alice@atlanta.com>;tag=1928301774\r\nt  : Bob <sip:bob@biloxi.com>\r\n"
     b"i:a84b4c76e66710@pc33.atlanta.com\r\ncseq:   1 MESSAGE  \r\nl: 0\r\n\r\n",
     _request()),
    ("folded header values (RFC 3261 §7.3.1)",
     b"MESSAGE sip:bob@biloxi.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;\r\n branch=z9hG4bK776asdhds\r\n"
     b"Max-Forwards: 70\r\nFrom:\r\n\tAlice <sip:alice@atlanta.com>;tag=1928301774\r\nTo: Bob\r\n   <sip:bob@biloxi.com>\r\n"
     b"Call-ID: a84b4c76e66710@pc33.atlanta.com\r\nCSeq: 1\r\n MESSAGE\r\nContent-Length:\r\n 0\r\n\r\n",
     Request("MESSAGE", "sip:bob@biloxi.com", Headers((
         ("Via", "SIP/2.0/UDP 192.0.2.1:5060; branch=z9hG4bK776asdhds"), ("Max-Forwards", "70"),
         ("From", "Alice <sip:alice@atlanta.com>;tag=1928301774"), ("To", "Bob <sip:bob@biloxi.com>"),
         ("Call-ID", "a84b4c76e66710@pc33.atlanta.com"), ("CSeq", "1 MESSAGE"))))),
    ("leading CRLFs (RFC 3261 §7.5)", b"\r\n\r\n" + _wire("MESSAGE sip:bob@biloxi.com SIP/2.0", "1 MESSAGE"),
     _request()),
    ("datagram without Content-Length: the body is the rest",
     _wire("MESSAGE sip:bob@biloxi.com SIP/2.0", "1 MESSAGE", "Content-Type: text/plain\r\n", b"rest\r\n", length=False),
     _request("MESSAGE", b"rest\r\n", [("Content-Type", "text/plain")])),
    ("datagram octets past Content-Length are dropped (§18.3)",
     _wire("MESSAGE sip:bob@biloxi.com SIP/2.0", "1 MESSAGE", "Content-Type: text/plain\r\n", b"body") + b"NOISE",
     _request("MESSAGE", b"body", [("Content-Type", "text/plain")])),
    ("datagram whose headers end at its last CRLF",
     _wire("MESSAGE sip:bob@biloxi.com SIP/2.0", "1 MESSAGE")[:-2], _request()),
    ("identical repeated Content-Length", _wire("MESSAGE sip:bob@biloxi.com SIP/2.0", "1 MESSAGE", "l: 0\r\n"),
     _request()),
    ("lower-case SIP version in a response",
     _wire("sip/2.0 486 Busy Here", "1 MESSAGE"), Response(486, "Busy Here", Headers((*BASE, ("CSeq", "1 MESSAGE"))))),
]  # fmt: skip


@pytest.mark.parametrize(("label", "wire", "message"), TOLERATED_CASES)
def test_tolerated_cases(label: str, wire: bytes, message: Message) -> None:
    assert parse_message(wire) == message, label
    assert parse_message(serialize(message)) == message


# (label, datagram, status_hint, reason_hint, request attached?)
ERROR_CASES: list[tuple[str, bytes, int, str, bool]] = [
    ("missing Call-ID", _wire("MESSAGE sip:bob@biloxi.com SIP/2.0", "1 MESSAGE").replace(
        b"Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n", b""), 400, "Missing Call-ID", True),
    ("missing Via", _wire("MESSAGE sip:bob@biloxi.com SIP/2.0", "1 MESSAGE").replace(
        b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n", b""), 400, "Missing Via", True),
    ("missing CSeq", _wire("MESSAGE sip:bob@biloxi.com SIP/2.0", "1 MESSAGE").replace(b"CSeq: 1 MESSAGE\r\n", b""),
     400, "Missing CSeq", True),
    ("two To", _wire("MESSAGE sip:bob@biloxi.com SIP/2.0", "1 MESSAGE", "To: <sip:x@y>\r\n"), 400, "Multiple To", True),
    ("bad Call-ID", _wire("MESSAGE sip:bob@biloxi.com SIP/2.0", "1 MESSAGE").replace(b"Call-ID: a8", b"Call-ID: a 8"),
     400, "Malformed Call-ID", True),
    ("CSeq mismatch", _wire("MESSAGE sip:bob@biloxi.com SIP/2.0", "1 INVITE"), 400, "CSeq Method Mismatch", True),
    ("unknown method, CSeq mismatch", _wire("FOO sip:bob@biloxi.com SIP/2.0", "1 MESSAGE"), 501, "Not Implemented", True),
    ("bad version", _wire("MESSAGE sip:bob@biloxi.com SIP/3.0", "1 MESSAGE"), 505, "Version Not Supported", True),
    ("garbled version", _wire("MESSAGE sip:bob@biloxi.com HTTP/1.1", "1 MESSAGE"), 400, "Bad Version", True),
    ("bad method", _wire("MES(SAGE sip:bob@biloxi.com SIP/2.0", "1 MESSAGE"), 400, "Bad Method", True),
    ("tel Request-URI is fine but im: is not", _wire("MESSAGE im:bob@biloxi.com SIP/2.0", "1 MESSAGE"),
     416, "Unsupported URI Scheme", True),
    ("headers in the Request-URI", _wire("MESSAGE sip:bob@biloxi.com?Subject=x SIP/2.0", "1 MESSAGE"),
     400, "Malformed Request-URI", True),
    ("extra SP in the Request-Line", _wire("MESSAGE  sip:bob@biloxi.com SIP/2.0", "1 MESSAGE"),
     400, "Malformed Request-Line", True),
    ("bad header line", _wire("MESSAGE sip:bob@biloxi.com SIP/2.0", "1 MESSAGE", "No colon here\r\n"),
     400, "Bad Header", True),
    ("known header name without colon", _wire("MESSAGE sip:bob@biloxi.com SIP/2.0", "1 MESSAGE", "Subject\r\n"),
     400, "Bad Header", True),
    ("header name not a token", _wire("MESSAGE sip:bob@biloxi.com SIP/2.0", "1 MESSAGE", "Bad Name: x\r\n"),
     400, "Bad Header", True),
    ("continuation first", b"MESSAGE sip:bob@biloxi.com SIP/2.0\r\n folded\r\n" + BASE_TEXT.encode()
     + b"CSeq: 1 MESSAGE\r\n\r\n", 400, "Bad Header", True),
    ("bad Contact", _wire("MESSAGE sip:bob@biloxi.com SIP/2.0", "1 MESSAGE", "Contact: <sip:a@b>, ,\r\n"),
     400, "Malformed Contact", True),
    ("negative Content-Length", _wire("MESSAGE sip:bob@biloxi.com SIP/2.0", "1 MESSAGE", "Content-Length: -1\r\n",
     length=False), 400, "Bad Content-Length", True),
    ("conflicting Content-Length", _wire("MESSAGE sip:bob@biloxi.com SIP/2.0", "1 MESSAGE", "l: 3\r\n"),
     400, "Bad Content-Length", True),
    ("short body", _wire("MESSAGE sip:bob@biloxi.com SIP/2.0", "1 MESSAGE", "Content-Length: 10\r\n", b"abc",
     length=False), 400, "Body Shorter Than Content-Length", True),
    ("huge Content-Length", _wire("MESSAGE sip:bob@biloxi.com SIP/2.0", "1 MESSAGE",
     f"Content-Length: {MAX_BODY_BYTES + 1}\r\n", length=False), 513, "Message Too Large", True),
    ("absurd Content-Length", _wire("MESSAGE sip:bob@biloxi.com SIP/2.0", "1 MESSAGE",
     "Content-Length: " + "9" * 5000 + "\r\n", length=False), 513, "Message Too Large", True),
    ("oversized body without Content-Length", _wire("MESSAGE sip:bob@biloxi.com SIP/2.0", "1 MESSAGE",
     "Content-Type: a/b\r\n", b"x" * (MAX_BODY_BYTES + 1), length=False), 513, "Message Too Large", True),
    ("too many headers", _wire("MESSAGE sip:bob@biloxi.com SIP/2.0", "1 MESSAGE",
     "X: y\r\n" * MAX_HEADER_COUNT), 513, "Too Many Headers", False),
    ("oversized header section", _wire("MESSAGE sip:bob@biloxi.com SIP/2.0", "1 MESSAGE",
     "X: " + "y" * MAX_HEADER_BLOCK_BYTES + "\r\n"), 513, "Message Too Large", False),
    ("bare LF", _wire("MESSAGE sip:bob@biloxi.com SIP/2.0", "1 MESSAGE", "X: a\nY: b\r\n"), 400, "Bad Line Ending", False),
    ("not UTF-8", _wire("MESSAGE sip:bob@biloxi.com SIP/2.0", "1 MESSAGE", "Subject: ?\r\n").replace(
        b"Subject: ?", b"Subject: \xff"), 400, "Bad Encoding", False),
    ("no empty line", b"MESSAGE sip:bob@biloxi.com SIP/2.0\r\nVia: x", 400, "Bad Request", False),
    ("keep-alive datagram", b"\r\n\r\n", 400, "Bad Request", False),
    ("response status out of range", _wire("SIP/2.0 099 Low", "1 MESSAGE"), 400, "Bad Request", False),
    ("response status not 3 digits", _wire("SIP/2.0 2000 OK", "1 MESSAGE"), 400, "Bad Request", False),
    ("response with a control character", _wire("SIP/2.0 200 O\x01K", "1 MESSAGE"), 400, "Bad Request", False),
    ("response bad version", _wire("SIP/2.1 200 OK", "1 MESSAGE"), 400, "Bad Request", False),
    ("response missing From", _wire("SIP/2.0 200 OK", "1 MESSAGE").replace(
        b"From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n", b""), 400, "Missing From", False),
    ("garbage start line", b"HELLO\r\n\r\n", 400, "Bad Request", False),
]  # fmt: skip


@pytest.mark.parametrize(("label", "wire", "status", "reason", "has_request"), ERROR_CASES)
def test_datagram_errors(
    label: str, wire: bytes, status: int, reason: str, has_request: bool
) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(wire)
    assert (info.value.status_hint, info.value.reason_hint) == (status, reason), label
    assert (info.value.request is not None) == has_request
    assert not info.value.fatal


def test_error_request_keeps_headers_for_the_answer() -> None:
    wire = _wire(
        "MESSAGE sip:bob@biloxi.com SIP/2.0", "1 INVITE", "Content-Type: text/plain\r\n", b"x"
    )
    with pytest.raises(SipParseError) as info:
        parse_message(wire)
    request = info.value.request
    assert request is not None
    assert request.headers.get("Call-ID") == "a84b4c76e66710@pc33.atlanta.com"
    assert request.body == b"x"


def test_malformed_request_line_keeps_an_answerable_request() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(_wire("OPTIONS sip:a@b SIP/2.0  ", "1 OPTIONS"))  # RFC 4475 §3.1.2.10
    assert info.value.request is not None
    assert info.value.request.method == "OPTIONS"
    assert info.value.request.headers.get("CSeq") == "1 OPTIONS"


def test_is_keepalive() -> None:
    assert is_keepalive(b"\r\n\r\n") and is_keepalive(b"\r\n")
    assert not is_keepalive(b"") and not is_keepalive(b"\r\n x") and not is_keepalive(b"\n")


# --- Streams ---------------------------------------------------------------------------

GOOD = _wire(
    "MESSAGE sip:bob@biloxi.com SIP/2.0", "1 MESSAGE", "Content-Type: text/plain\r\n", b"hello"
)
GOOD_MSG = _request("MESSAGE", b"hello", [("Content-Type", "text/plain")])


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        (b"\r\n\r\n", [KeepAlive()]),
        (b"\r\n\r\n\r\n\r\n", [KeepAlive(), KeepAlive()]),
        (b"\r\n" + GOOD, [GOOD_MSG]),  # a lone CRLF (a pong) is ignored
        (b"\r\n\r\n\r\n" + GOOD, [KeepAlive(), GOOD_MSG]),
        (GOOD + b"\r\n\r\n" + GOOD + b"\r\n", [GOOD_MSG, KeepAlive(), GOOD_MSG]),
    ],
)
def test_keepalives(stream: bytes, expected: list[Message | KeepAlive]) -> None:
    assert StreamFramer().feed(stream) == expected
    assert (
        _feed_bytewise(stream[: len(stream) - (2 if stream.endswith(GOOD + b"\r\n") else 0)])
        == expected
    )


def test_partial_ping_waits() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n") == []  # could be the start of a ping
    assert framer.feed(b"\r") == []
    assert framer.feed(b"\n") == [KeepAlive()]
    assert framer.feed(b"\r\n") == [] and framer.buffered == 2
    assert framer.feed(GOOD) == [GOOD_MSG] and framer.buffered == 0
    assert PONG == b"\r\n"


def test_partial_message_is_buffered() -> None:
    framer = StreamFramer()
    assert framer.feed(GOOD[:-3]) == []
    assert framer.buffered == 2  # the head is parsed; two body bytes wait for three more
    assert framer.feed(GOOD[-3:] + GOOD[:10]) == [GOOD_MSG]
    assert framer.buffered == 10


def test_missing_content_length_is_fatal() -> None:
    framer = StreamFramer()
    bad = _wire("MESSAGE sip:bob@biloxi.com SIP/2.0", "1 MESSAGE", length=False)
    with pytest.raises(SipParseError) as info:
        framer.feed(GOOD + bad + GOOD)
    assert info.value.fatal and info.value.reason_hint == "Missing Content-Length"
    assert info.value.preceding == (GOOD_MSG,)
    assert info.value.request is not None and info.value.request.method == "MESSAGE"
    assert framer.failed and framer.buffered == 0
    with pytest.raises(SipParseError):
        framer.feed(GOOD)  # the connection is done for


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ("Content-Length: -999\r\n", "Bad Content-Length"),  # RFC 4475 §3.1.2.3
        ("Content-Length: 12\r\nl: 13\r\n", "Bad Content-Length"),  # RFC 4475 §3.3.9
        ("Content-Length: " + "9" * 11 + "\r\n", "Message Too Large"),
    ],
)
def test_unusable_content_length_is_fatal(extra: str, reason: str) -> None:
    bad = _wire("MESSAGE sip:bob@biloxi.com SIP/2.0", "1 MESSAGE", extra, length=False)
    with pytest.raises(SipParseError) as info:
        StreamFramer().feed(bad)
    assert info.value.fatal and info.value.reason_hint == reason


def test_oversized_head_is_fatal_without_buffering_more() -> None:
    framer = StreamFramer()
    chunk = b"INVITE sip:a@b SIP/2.0\r\nX: " + b"y" * 1000
    with pytest.raises(SipParseError) as info:
        for _ in range(MAX_HEADER_BLOCK_BYTES // 1000 + 2):
            framer.feed(chunk)
            assert framer.buffered <= MAX_HEADER_BLOCK_BYTES + len(chunk)
    assert info.value.fatal and info.value.status_hint == 513


def test_unreadable_head_is_fatal() -> None:
    with pytest.raises(SipParseError) as info:
        StreamFramer().feed(b"\xff\xfe garbage\r\n\r\n")
    assert info.value.fatal


def test_oversized_body_is_skipped_and_framing_kept() -> None:
    size = MAX_BODY_BYTES + 10
    big = _wire(
        "MESSAGE sip:bob@biloxi.com SIP/2.0", "1 MESSAGE", "Content-Type: a/b\r\n", b"z" * size
    )
    framer = StreamFramer()
    with pytest.raises(SipParseError) as info:
        framer.feed(big[: len(big) - size + 5])
    assert info.value.status_hint == 513 and not info.value.fatal
    assert info.value.request is not None
    # The body is discarded as it arrives; nothing of it is buffered.
    for start in range(len(big) - size + 5, len(big), 4096):
        assert framer.feed(big[start : start + 4096]) == []
        assert framer.buffered == 0
    assert framer.feed(GOOD) == [GOOD_MSG]


def test_non_fatal_error_keeps_the_rest_buffered() -> None:
    framer = StreamFramer()
    bad = _wire(
        "MESSAGE sip:bob@biloxi.com SIP/2.0", "1 INVITE", "Content-Type: text/plain\r\n", b"xy"
    )
    with pytest.raises(SipParseError) as info:
        framer.feed(GOOD + b"\r\n\r\n" + bad + GOOD + GOOD)
    assert not info.value.fatal and info.value.reason_hint == "CSeq Method Mismatch"
    assert info.value.preceding == (GOOD_MSG, KeepAlive())
    assert info.value.request is not None and info.value.request.body == b"xy"
    assert framer.feed(b"") == [GOOD_MSG, GOOD_MSG]


def test_feed_all_reports_errors_inline() -> None:
    bad = _wire("MESSAGE sip:bob@biloxi.com SIP/2.0", "1 INVITE")
    items = StreamFramer().feed_all(GOOD + bad + GOOD + b"garbage without end\r\n\r\n" + GOOD)
    assert items[0] == GOOD_MSG and items[2] == GOOD_MSG
    assert isinstance(items[1], SipParseError) and not items[1].fatal
    assert isinstance(items[3], SipParseError) and items[3].fatal
    assert len(items) == 4


def test_malformed_response_on_a_stream_is_skipped() -> None:
    bad = _wire("SIP/2.0 200 OK", "1 MESSAGE").replace(b"CSeq: 1 MESSAGE", b"CSeq: x")
    framer = StreamFramer()
    with pytest.raises(SipParseError) as info:
        framer.feed(bad + GOOD)
    assert not info.value.fatal and info.value.request is None
    assert framer.feed(b"") == [GOOD_MSG]


def test_bad_status_line_on_a_stream_keeps_framing() -> None:
    bad = _wire("SIP/2.0 99999 Huge", "1 MESSAGE")  # RFC 4475 §3.1.2.19: drop it
    framer = StreamFramer()
    with pytest.raises(SipParseError) as info:
        framer.feed(bad + GOOD)
    assert not info.value.fatal
    assert framer.feed(b"") == [GOOD_MSG]
