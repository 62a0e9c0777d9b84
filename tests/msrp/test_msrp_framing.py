"""MSRP framing and codec: RFC 4975 example messages, fragmented input, limits, properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipxmpp.gateway.msrp import (
    ByteRange,
    EndFlag,
    FailureReport,
    LocalMsrpError,
    MsrpFramer,
    MsrpMessage,
    MsrpRequest,
    MsrpResponse,
    MsrpUri,
    RemoteMsrpError,
    StatusHeader,
    decode_frame,
    end_line_in_body,
    parse_message,
    parse_uri,
    serialize,
)
from sipxmpp.gateway.msrp.parser import MAX_HEADER_BLOCK, MAX_START_LINE, RawFrame


def u(text: str) -> MsrpUri:
    return parse_uri(text)


ATLANTA = u("msrp://atlanta.example.com:7654/jshA7weztas;tcp")
BILOXI = u("msrp://biloxi.example.com:12763/kjhd37s2s20w2a;tcp")
ALICEPC = u("msrp://alicepc.example.com:7777/iau39soe2843z;tcp")
BOB = u("msrp://bob.example.com:8888/9di4eae923wzd;tcp")


def crlf(text: str) -> bytes:
    """RFC figures are written with bare newlines; MSRP puts CRLF everywhere."""
    return text.replace("\n", "\r\n").encode()


ALICE_7777 = u("msrp://alice.example.com:7777/iau39soe2843z;tcp")
BOBPC = u("msrp://bobpc.example.com:8888/9di4eae923wzd;tcp")
ALICEPC_7654 = u("msrp://alicepc.example.com:7654/iau39soe2843z;tcp")
ALICEPC_8888 = u("msrp://alicepc.example.com:8888/9di4eae923wzd;tcp")
SYSADMIN = u("msrp://example.com:7777/iau39soe2843z;tcp")

# §11.2 Figure 13's body, as printed (the "_..._" around the DTD URL is in the RFC text).
XHTML_BODY = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    "<!DOCTYPE html\n"
    'PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN"\n'
    '"_http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd_">\n'
    '<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">\n'
    "  <head>\n"
    "    <title>FY2005 Results</title>\n"
    "</head>\n"
    "  <body>\n"
    "   <p>See the results at <a\n"
    'href="http://example.org/">example.org</a>.</p>\n'
    "  </body>\n"
    "</html>"
)
# §11.4 Figure 14's body: the CPIM headers travel in the first chunk only.
CPIM_FIRST_CHUNK = (
    "To: Bob <sip:bob@example.com>\n"
    "From: Alice <sip:alice@example.com>\n"
    "DateTime: 2006-05-15T15:02:31-03:00\n"
    "Content-Type: text/plain\n"
    "\n"
    "ABCD"
)
# §11.6 Figure 16's body.
HTML_BODY = (
    "<html><body>\n"
    "<p>Here is that important link...\n"
    '<a href="http://www.example.com/foobar">foobar</a>\n'
    "</p>\n"
    "</body></html>"
)

# The example messages of RFC 4975, checked line by line against the RFC text (Figures 2,
# 12-17), with the value the parser must produce. Each one is checked both ways:
# parse(bytes) == value and serialize(value) == bytes (byte-exact). The RFC's Byte-Range
# figures do not always agree with the bodies printed (§4 and §11.1 count the CRLF before
# the end-line, §11.2 declares 374 for a 384-octet body, §11.4-§11.6 are one or more octets
# off): they are kept as written, since the range is data, and the reassembly tests show
# the mismatch is tolerated.
RFC_VECTORS: list[tuple[str, bytes, MsrpMessage]] = [
    (
        "§4 Figure 2 SEND",
        crlf(
            "MSRP a786hjs2 SEND\n"
            "To-Path: msrp://biloxi.example.com:12763/kjhd37s2s20w2a;tcp\n"
            "From-Path: msrp://atlanta.example.com:7654/jshA7weztas;tcp\n"
            "Message-ID: 87652491\n"
            "Byte-Range: 1-25/25\n"
            "Content-Type: text/plain\n"
            "\n"
            "Hey Bob, are you there?\n"
            "-------a786hjs2$\n"
        ),
        MsrpRequest(
            "a786hjs2",
            "SEND",
            (BILOXI,),
            (ATLANTA,),
            message_id="87652491",
            byte_range=ByteRange(1, 25, 25),
            content_type="text/plain",
            body=b"Hey Bob, are you there?",
        ),
    ),
    (
        "§4 Figure 2 200 OK",
        crlf(
            "MSRP a786hjs2 200 OK\n"
            "To-Path: msrp://atlanta.example.com:7654/jshA7weztas;tcp\n"
            "From-Path: msrp://biloxi.example.com:12763/kjhd37s2s20w2a;tcp\n"
            "-------a786hjs2$\n"
        ),
        MsrpResponse("a786hjs2", 200, "OK", (ATLANTA,), (BILOXI,)),
    ),
    (
        "§11.1 step 4 SEND from Alice",
        crlf(
            "MSRP d93kswow SEND\n"
            "To-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp\n"
            "From-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp\n"
            "Message-ID: 12339sdqwer\n"
            "Byte-Range: 1-16/16\n"
            "Content-Type: text/plain\n"
            "\n"
            "Hi, I'm Alice!\n"
            "-------d93kswow$\n"
        ),
        MsrpRequest(
            "d93kswow",
            "SEND",
            (BOB,),
            (ALICEPC,),
            message_id="12339sdqwer",
            byte_range=ByteRange(1, 16, 16),
            content_type="text/plain",
            body=b"Hi, I'm Alice!",
        ),
    ),
    (
        "§11.1 step 5 200 OK from Bob",
        crlf(
            "MSRP d93kswow 200 OK\n"
            "To-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp\n"
            "From-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp\n"
            "-------d93kswow$\n"
        ),
        MsrpResponse("d93kswow", 200, "OK", (ALICEPC,), (BOB,)),
    ),
    (
        "§11.1 step 6 SEND from Bob",
        crlf(
            "MSRP dkei38sd SEND\n"
            "To-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp\n"
            "From-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp\n"
            "Message-ID: 456s9wlk3\n"
            "Byte-Range: 1-21/21\n"
            "Content-Type: text/plain\n"
            "\n"
            "Hi, Alice!  I'm Bob!\n"
            "-------dkei38sd$\n"
        ),
        MsrpRequest(
            "dkei38sd",
            "SEND",
            (ALICEPC,),
            (BOB,),
            message_id="456s9wlk3",
            byte_range=ByteRange(1, 21, 21),
            content_type="text/plain",
            body=b"Hi, Alice!  I'm Bob!",
        ),
    ),
    (
        "§11.1 step 7 200 OK from Alice",
        crlf(
            "MSRP dkei38sd 200 OK\n"
            "To-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp\n"
            "From-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp\n"
            "-------dkei38sd$\n"
        ),
        MsrpResponse("dkei38sd", 200, "OK", (BOB,), (ALICEPC,)),
    ),
    (
        "§11.2 Figure 13 XHTML",
        crlf(
            "MSRP dsdfoe38sd SEND\n"
            "To-Path: msrp://alice.example.com:7777/iau39soe2843z;tcp\n"
            "From-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp\n"
            "Message-ID: 456so39s\n"
            "Byte-Range: 1-374/374\n"
            "Content-Type: application/xhtml+xml\n"
            "\n" + XHTML_BODY + "\n"
            "-------dsdfoe38sd$\n"
        ),
        MsrpRequest(
            "dsdfoe38sd",
            "SEND",
            (ALICE_7777,),
            (BOB,),
            message_id="456so39s",
            byte_range=ByteRange(1, 374, 374),
            content_type="application/xhtml+xml",
            body=crlf(XHTML_BODY),
        ),
    ),
    (
        "§11.4 Figure 14 first CPIM chunk",
        crlf(
            "MSRP d93kswow SEND\n"
            "To-Path: msrp://bobpc.example.com:8888/9di4eae923wzd;tcp\n"
            "From-Path: msrp://alicepc.example.com:7654/iau39soe2843z;tcp\n"
            "Message-ID: 12339sdqwer\n"
            "Byte-Range: 1-137/148\n"
            "Content-Type: message/cpim\n"
            "\n" + CPIM_FIRST_CHUNK + "\n"
            "-------d93kswow+\n"
        ),
        MsrpRequest(
            "d93kswow",
            "SEND",
            (BOBPC,),
            (ALICEPC_7654,),
            message_id="12339sdqwer",
            byte_range=ByteRange(1, 137, 148),
            content_type="message/cpim",
            body=crlf(CPIM_FIRST_CHUNK),
            end_flag=EndFlag.CONTINUED,
        ),
    ),
    (
        "§11.4 Figure 15 second CPIM chunk",
        crlf(
            "MSRP op2nc9a SEND\n"
            "To-Path: msrp://bobpc.example.com:8888/9di4eae923wzd;tcp\n"
            "From-Path: msrp://alicepc.example.com:7654/iau39soe2843z;tcp\n"
            "Message-ID: 12339sdqwer\n"
            "Byte-Range: 138-148/148\n"
            "Content-Type: message/cpim\n"
            "\n"
            "1234567890\n"
            "-------op2nc9a$\n"
        ),
        MsrpRequest(
            "op2nc9a",
            "SEND",
            (BOBPC,),
            (ALICEPC_7654,),
            message_id="12339sdqwer",
            byte_range=ByteRange(138, 148, 148),
            content_type="message/cpim",
            body=b"1234567890",
        ),
    ),
    (
        "§11.6 Figure 16 SEND asking for a success report",
        crlf(
            "MSRP d93kswow SEND\n"
            "To-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp\n"
            "From-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp\n"
            "Message-ID: 12339sdqwer\n"
            "Byte-Range: 1-106/106\n"
            "Success-Report: yes\n"
            "Failure-Report: no\n"
            "Content-Type: text/html\n"
            "\n" + HTML_BODY + "\n"
            "-------d93kswow$\n"
        ),
        MsrpRequest(
            "d93kswow",
            "SEND",
            (BOB,),
            (ALICEPC,),
            message_id="12339sdqwer",
            success_report=True,
            failure_report=FailureReport.NO,
            byte_range=ByteRange(1, 106, 106),
            content_type="text/html",
            body=crlf(HTML_BODY),
        ),
    ),
    (
        "§11.6 Figure 17 success REPORT",
        crlf(
            "MSRP dkei38sd REPORT\n"
            "To-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp\n"
            "From-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp\n"
            "Message-ID: 12339sdqwer\n"
            "Byte-Range: 1-106/106\n"
            "Status: 000 200 OK\n"
            "-------dkei38sd$\n"
        ),
        MsrpRequest(
            "dkei38sd",
            "REPORT",
            (ALICEPC,),
            (BOB,),
            message_id="12339sdqwer",
            byte_range=ByteRange(1, 106, 106),
            status=StatusHeader(200, "OK"),
        ),
    ),
]

# §11.5's system message writes Failure-Report before Success-Report; our serializer always
# writes Success-Report first (as §11.6 does), so this one is checked parse-only, and its
# re-serialization must parse back to the same value.
RFC_SYSTEM_MESSAGE = crlf(
    "MSRP d93kswow SEND\n"
    "To-Path: msrp://alicepc.example.com:8888/9di4eae923wzd;tcp\n"
    "From-Path: msrp://example.com:7777/iau39soe2843z;tcp\n"
    "Message-ID: 12339sdqwer\n"
    "Byte-Range: 1-38/38\n"
    "Failure-Report: no\n"
    "Success-Report: no\n"
    "Content-Type: text/plain\n"
    "\n"
    "This conference will end in 5 minutes\n"
    "-------d93kswow$\n"
)


def test_rfc_system_message_parses() -> None:
    expected = MsrpRequest(
        "d93kswow",
        "SEND",
        (ALICEPC_8888,),
        (SYSADMIN,),
        message_id="12339sdqwer",
        success_report=False,
        failure_report=FailureReport.NO,
        byte_range=ByteRange(1, 38, 38),
        content_type="text/plain",
        body=b"This conference will end in 5 minutes",
    )
    assert parse_message(RFC_SYSTEM_MESSAGE) == expected
    assert parse_message(serialize(expected)) == expected
    assert [f.transaction_id for f in frames_of(RFC_SYSTEM_MESSAGE, 1)] == ["d93kswow"]


# §5.1 Figure 3's chunking example as printed (the RFC leaves out To-Path/From-Path there).
RFC_CHUNKS_AS_PRINTED = crlf(
    "MSRP dkei38sd SEND\n"
    "Message-ID: 4564dpWd\n"
    "Byte-Range: 1-*/8\n"
    "Content-Type: text/plain\n"
    "\n"
    "abcd\n"
    "-------dkei38sd+\n"
    "MSRP dkei38ia SEND\n"
    "Message-ID: 4564dpWd\n"
    "Byte-Range: 5-8/8\n"
    "Content-Type: text/plain\n"
    "\n"
    "EFGH\n"
    "-------dkei38ia$\n"
)


def frames_of(data: bytes, piece: int | None = None) -> list[RawFrame]:
    framer = MsrpFramer()
    frames: list[RawFrame] = []
    step = piece or len(data) or 1
    for i in range(0, len(data), step):
        framer.receive_data(data[i : i + step])
        while (frame := framer.next_frame()) is not None:
            frames.append(frame)
    assert framer.idle
    return frames


@pytest.mark.parametrize(("name", "wire", "message"), RFC_VECTORS, ids=[v[0] for v in RFC_VECTORS])
def test_rfc_vectors_both_ways(name: str, wire: bytes, message: MsrpMessage) -> None:
    assert parse_message(wire) == message
    assert serialize(message) == wire


@pytest.mark.parametrize("piece", [1, 2, 7, None])
def test_rfc_vectors_fragmented_and_concatenated(piece: int | None) -> None:
    stream = b"".join(wire for _, wire, _ in RFC_VECTORS)
    decoded = [decode_frame(f) for f in frames_of(stream, piece)]
    assert decoded == [message for _, _, message in RFC_VECTORS]


@pytest.mark.parametrize("piece", [1, None])
def test_rfc_chunk_example_framing(piece: int | None) -> None:
    frames = frames_of(RFC_CHUNKS_AS_PRINTED, piece)
    assert [(f.transaction_id, f.body, f.end_flag) for f in frames] == [
        ("dkei38sd", b"abcd", EndFlag.CONTINUED),
        ("dkei38ia", b"EFGH", EndFlag.COMPLETE),
    ]
    # As printed they lack the mandatory To-Path/From-Path (§9), which decoding reports.
    with pytest.raises(RemoteMsrpError) as info:
        decode_frame(frames[0])
    assert info.value.status == 400


def test_from_path_before_to_path_is_accepted() -> None:
    # RFC 7573 Example 5 writes From-Path first; §9 wants To-Path first. Parse either.
    wire = crlf(
        "MSRP a786hjs2 SEND\n"
        "From-Path: msrp://atlanta.example.com:7654/jshA7weztas;tcp\n"
        "To-Path: msrp://biloxi.example.com:12763/kjhd37s2s20w2a;tcp\n"
        "Message-ID: 87652491\n"
        "Byte-Range: 1-25/25\n"
        "Content-Type: text/plain\n"
        "\n"
        "Hey Bob, are you there?\n"
        "-------a786hjs2$\n"
    )
    assert parse_message(wire) == RFC_VECTORS[0][2]


def test_bodiless_send_and_empty_body() -> None:
    bodiless = MsrpRequest(
        "tid12345", "SEND", (BOB,), (ALICEPC,), message_id="m1234", byte_range=ByteRange(1, 0, 0)
    )
    wire = serialize(bodiless)
    assert wire.endswith(b"Byte-Range: 1-0/0\r\n-------tid12345$\r\n")
    assert parse_message(wire) == bodiless
    empty = MsrpRequest(
        "tid12345",
        "SEND",
        (BOB,),
        (ALICEPC,),
        message_id="m1234",
        byte_range=ByteRange(1, 0, 0),
        content_type="text/plain",
        body=b"",
    )
    wire = serialize(empty)
    assert wire.endswith(b"Content-Type: text/plain\r\n\r\n\r\n-------tid12345$\r\n")
    assert parse_message(wire) == empty


def test_body_containing_near_end_lines() -> None:
    # Looks like end-lines but is not: other tid, missing flag, flag without CRLF.
    body = b"x\r\n-------other99$\r\n-------tid12345\r\n\r\n-------tid12345$x\r\n-------tid12345"
    msg = MsrpRequest(
        "tid12345",
        "SEND",
        (BOB,),
        (ALICEPC,),
        message_id="m1234",
        content_type="text/plain",
        body=body,
    )
    assert not end_line_in_body(body, "tid12345")
    for piece in (1, 3, None):
        assert [decode_frame(f) for f in frames_of(serialize(msg), piece)] == [msg]


def test_end_line_in_body_is_refused_when_building() -> None:
    body = b"hello\r\n-------tid12345$\r\nworld"
    assert end_line_in_body(body, "tid12345")
    with pytest.raises(LocalMsrpError):
        MsrpRequest(
            "tid12345",
            "SEND",
            (BOB,),
            (ALICEPC,),
            message_id="m1234",
            content_type="text/plain",
            body=body,
        )


def test_extension_headers_and_case_insensitive_names() -> None:
    wire = crlf(
        "MSRP tid12345 SEND\n"
        "to-path: msrp://bob.example.com:8888/9di4eae923wzd;tcp\n"
        "FROM-PATH: msrp://alicepc.example.com:7777/iau39soe2843z;tcp\n"
        "message-id: m1234\n"
        "Success-Report: yes\n"
        "Failure-Report: partial\n"
        "X-Extension: some value\n"
        "Content-Disposition: inline\n"
        "Content-Type: message/cpim\n"
        "\n"
        "body\n"
        "-------tid12345$\n"
    )
    msg = parse_message(wire)
    assert isinstance(msg, MsrpRequest)
    assert msg.wants_success_report and msg.failure_mode is FailureReport.PARTIAL
    assert msg.headers == (("X-Extension", "some value"), ("Content-Disposition", "inline"))
    assert msg.media_type == "message/cpim"


def _with_headers(*lines: str, body: str | None = "hi") -> bytes:
    head = "MSRP tid12345 SEND\n" + "".join(line + "\n" for line in lines)
    if body is None:
        return crlf(head + "-------tid12345$\n")
    return crlf(head + "\n" + body + "\n-------tid12345$\n")


TO = "To-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp"
FROM = "From-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp"
CT = "Content-Type: text/plain"

# Frames that are well delimited but not valid messages: (bytes, status).
BAD_MESSAGES = [
    (_with_headers(FROM, "Message-ID: m1234", CT), 400),  # no To-Path
    (_with_headers(TO, "Message-ID: m1234", CT), 400),  # no From-Path
    (_with_headers(TO, FROM, CT), 400),  # SEND without Message-ID (§7.1.1)
    (_with_headers(TO, FROM, "Message-ID: m1234"), 400),  # body without Content-Type
    (_with_headers(TO, FROM, "Message-ID: m1234", CT, body=None), 400),  # CT, no body
    (_with_headers(TO, FROM, "Message-ID: m1234", CT, "X-After: 1"), 400),  # CT not last
    (_with_headers(TO, TO, FROM, "Message-ID: m1234", CT), 400),  # duplicate To-Path
    (_with_headers(TO, FROM, "Message-ID: !bad", CT), 400),
    (_with_headers(TO, FROM, "Message-ID: m1234", "Success-Report: maybe", CT), 400),
    (_with_headers(TO, FROM, "Message-ID: m1234", "Failure-Report: sometimes", CT), 400),
    (_with_headers(TO, FROM, "Message-ID: m1234", "Byte-Range: 1-x/3", CT), 400),
    (_with_headers(TO, FROM, "Message-ID: m1234", "Byte-Range: 0-2/3", CT), 423),
    (_with_headers(TO, FROM, "Message-ID: m1234", "Byte-Range: 1-5/3", CT), 423),
    (_with_headers(TO, FROM, "Message-ID: m1234", "Byte-Range: 5-3/9", CT), 423),
    (_with_headers(TO, FROM, "Message-ID: m1234", "Byte-Range: 1-*/" + "9" * 19, CT), 423),
    (_with_headers(TO, FROM, "Message-ID: m1234", "Content-Type: not a type"), 400),
    (_with_headers(TO, FROM, "Message-ID: m1234", "no colon here", CT), 400),
    (_with_headers("To-Path: sip:bob@example.com", FROM, "Message-ID: m1234", CT), 400),
    (
        crlf(f"MSRP tid12345 REPORT\n{TO}\n{FROM}\nMessage-ID: m1234\n-------tid12345$\n"),
        400,  # REPORT without Byte-Range/Status (§7.1.2)
    ),
    (
        crlf(f"MSRP tid12345 200 OK\n{TO}\n{FROM}\n{CT}\n\nbody\n-------tid12345$\n"),
        400,  # a response never has a body (§7.2)
    ),
    (
        crlf(f"MSRP tid12345 NICKNAME\n{TO}\n{FROM}\n{CT}\n\n" + "x" * 10241 + "\n")
        + b"-------tid12345$\r\n",
        413,  # non-SEND body over 10240 octets (§7.1)
    ),
    (
        crlf(f"MSRP tid12345 SEND\n{TO}\n{FROM}\nMessage-ID: m1234\n").replace(
            b"m1234", b"\xff\xfe"
        )
        + b"-------tid12345$\r\n",
        400,  # not UTF-8
    ),
]


@pytest.mark.parametrize(("wire", "status"), BAD_MESSAGES)
def test_bad_messages_raise_remote_error(wire: bytes, status: int) -> None:
    with pytest.raises(RemoteMsrpError) as info:
        parse_message(wire)
    assert info.value.status == status
    assert not info.value.fatal
    # Framing still finds exactly one frame, byte by byte too: the stream stays in sync.
    assert len(frames_of(wire, 1)) == 1


@pytest.mark.parametrize(
    "wire",
    [
        b"HTTP/1.1 200 OK\r\n",
        b"msrp tid12345 SEND\r\n",  # "MSRP" is case-sensitive (§9 pMSRP)
        b"MSRP t SEND\r\n",  # tid shorter than 4 characters
        b"MSRP tid12345 send\r\n",  # method is 1*UPALPHA
        b"MSRP tid12345 20 OK\r\n",
        b"MSRP tid12345\r\n",
        b"MSRP " + b"x" * (MAX_START_LINE + 10),
    ],
)
def test_broken_start_line_is_fatal(wire: bytes) -> None:
    framer = MsrpFramer()
    framer.receive_data(wire)
    with pytest.raises(RemoteMsrpError) as info:
        framer.next_frame()
    assert info.value.fatal
    with pytest.raises(RemoteMsrpError):
        framer.next_frame()


def test_garbage_is_detected_on_its_first_byte() -> None:
    framer = MsrpFramer()
    framer.receive_data(b"X")
    with pytest.raises(RemoteMsrpError):
        framer.next_frame()


def test_incomplete_and_trailing_data() -> None:
    wire = RFC_VECTORS[0][1]
    with pytest.raises(RemoteMsrpError):
        parse_message(wire[:-1])
    with pytest.raises(RemoteMsrpError):
        parse_message(wire + b"MSRP")


@pytest.mark.parametrize("piece", [1, 997, None])
def test_oversized_body_is_discarded_with_413_and_stream_stays_in_sync(piece: int | None) -> None:
    big = serialize(
        MsrpRequest(
            "tid12345",
            "SEND",
            (BOB,),
            (ALICEPC,),
            message_id="m1234",
            content_type="text/plain",
            body=b"z" * 5000,
        )
    )
    stream = big + RFC_VECTORS[0][1]
    framer = MsrpFramer(max_body=1000)
    frames: list[RawFrame] = []
    step = piece or len(stream)
    for i in range(0, len(stream), step):
        framer.receive_data(stream[i : i + step])
        while (frame := framer.next_frame()) is not None:
            frames.append(frame)
        assert framer.buffered < 2000  # the discarded body is never held
    assert frames[0].error_status == 413 and frames[0].body is None
    with pytest.raises(RemoteMsrpError) as info:
        decode_frame(frames[0])
    assert info.value.status == 413
    assert decode_frame(frames[1]) == RFC_VECTORS[0][2]


@pytest.mark.parametrize("piece", [1, None])
def test_oversized_header_block_is_discarded_with_400(piece: int | None) -> None:
    lines = [TO, FROM, "Message-ID: m1234"] + [f"X-Pad{i}: " + "p" * 200 for i in range(120)]
    stream = _with_headers(*lines, CT) + RFC_VECTORS[1][1]
    frames = frames_of(stream, piece)
    assert frames[0].error_status == 400
    assert decode_frame(frames[1]) == RFC_VECTORS[1][2]
    # A single endless header line is bounded the same way.
    framer = MsrpFramer()
    framer.receive_data(b"MSRP tid12345 SEND\r\nX-Long: " + b"a" * (MAX_HEADER_BLOCK * 2))
    assert framer.next_frame() is None
    assert framer.buffered < 100


# -- properties --------------------------------------------------------------------------

tids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9.\-+%=]{3,31}", fullmatch=True)
uris = st.sampled_from([ATLANTA, BILOXI, ALICEPC, BOB, u("msrps://[::1]:1/x+y=;tcp;p=q")])
paths = st.lists(uris, min_size=1, max_size=3).map(tuple)
texts = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9 ,.!?é]{0,20}[A-Za-z0-9.!?]", fullmatch=True)
ext_headers = st.lists(
    st.tuples(
        st.sampled_from(["X-Foo", "Content-ID", "Use-Nickname", "X-Empty"]), texts | st.just("")
    ),
    max_size=3,
).map(tuple)
byte_ranges = st.builds(
    lambda start, length, extra, star_end, star_total: ByteRange(
        start,
        None if star_end else start + length - 1,
        None if star_total else start + length - 1 + extra,
    ),
    st.integers(1, 10**9),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.booleans(),
    st.booleans(),
)


@st.composite
def requests(draw: st.DrawFn) -> MsrpRequest:
    tid = draw(tids)
    method = draw(st.sampled_from(["SEND", "REPORT", "NICKNAME"]))
    has_body = method != "REPORT" and draw(st.booleans())
    body = draw(st.binary(max_size=300)) if has_body else None
    if body is not None and end_line_in_body(body, tid):
        body = body.replace(b"-", b"_")
    is_report = method == "REPORT"
    return MsrpRequest(
        transaction_id=tid,
        method=method,
        to_path=draw(paths),
        from_path=draw(paths),
        message_id=draw(tids) if method != "NICKNAME" or draw(st.booleans()) else None,
        success_report=None if is_report else draw(st.none() | st.booleans()),
        failure_report=None if is_report else draw(st.none() | st.sampled_from(FailureReport)),
        byte_range=draw(byte_ranges) if is_report else draw(st.none() | byte_ranges),
        status=draw(st.builds(StatusHeader, st.integers(0, 999), st.none() | texts))
        if is_report
        else None,
        headers=draw(ext_headers),
        content_type=draw(
            st.sampled_from(["text/plain", "message/cpim", 'text/plain; charset="utf-8"'])
        )
        if body is not None
        else None,
        body=body,
        end_flag=draw(st.sampled_from(EndFlag)),
    )


responses = st.builds(
    MsrpResponse, tids, st.integers(0, 999), st.none() | texts, paths, paths, ext_headers
)


@settings(max_examples=300, deadline=None)
@given(requests() | responses)
def test_round_trip(message: MsrpMessage) -> None:
    wire = serialize(message)
    assert parse_message(wire) == message
    assert [decode_frame(f) for f in frames_of(wire + wire, 5)] == [message, message]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_parse_or_raise_remote_error(data: bytes) -> None:
    try:
        parse_message(data)
    except RemoteMsrpError:
        pass


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from([w for _, w, _ in RFC_VECTORS])
        | st.binary(max_size=40)
        | st.sampled_from(
            [b"\r\n", b"-------a786hjs2$\r\n", b"MSRP ", b"Content-Type: x/y\r\n\r\n"]
        ),
        max_size=6,
    ),
    st.integers(1, 50),
)
def test_any_stream_frames_or_raises_remote_error(parts: list[bytes], piece: int) -> None:
    data = b"".join(parts)
    framer = MsrpFramer(max_body=100)
    try:
        for i in range(0, len(data), piece):
            framer.receive_data(data[i : i + piece])
            while (frame := framer.next_frame()) is not None:
                try:
                    decode_frame(frame)
                except RemoteMsrpError:
                    pass
    except RemoteMsrpError as exc:
        assert exc.fatal


#: Pieces that make frames, near-frames and traps for the one-pass framing of whole frames
#: (MsrpFramer._whole_frame): blank lines next to end-lines, end-lines of another tid,
#: missing flags, bodies and header blocks over the limits used below.
_FRAME_PIECES = [
    b"MSRP abcd SEND\r\n",
    b"MSRP abcd 200 OK\r\n",
    b"MSRP ",
    b"abcd",
    b"\r\n",
    b"\r\n\r\n",
    b"-------abcd",
    b"$",
    b"+",
    b"#",
    b"-------abce$",
    b"\r\n-------abcd$\r\n",
    b"To-Path: msrp://a.example:1/x;tcp\r\n",
    b"From-Path: msrp://b.example:2/y;tcp\r\n",
    b"Message-ID: abcd\r\n",
    b"Byte-Range: 1-4/4\r\n",
    b"Content-Type: text/plain\r\n",
    b"A: b",
    b"body",
    b"x" * 50,
]


def _framed(data: bytes, piece: int | None) -> list[object]:
    framer = MsrpFramer(max_body=40, max_header_block=90)
    out: list[object] = []
    chunks = [data] if piece is None else [data[i : i + piece] for i in range(0, len(data), piece)]
    try:
        for chunk in chunks:
            framer.receive_data(chunk)
            while (frame := framer.next_frame()) is not None:
                try:
                    out.append((frame, decode_frame(frame)))
                except RemoteMsrpError as exc:
                    out.append((frame, exc.status))
    except RemoteMsrpError as exc:
        out.append(("fatal", exc.status))
    return out


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(_FRAME_PIECES), max_size=16), st.booleans())
def test_whole_buffer_framing_equals_byte_by_byte(pieces: list[bytes], prefixed: bool) -> None:
    """A buffer holding whole frames is framed in one pass; the result (frames, decoded
    messages, errors) must be exactly what the line-by-line state machine gives."""
    data = (b"MSRP abcd SEND\r\n" if prefixed else b"") + b"".join(pieces)
    assert _framed(data, None) == _framed(data, 1)
