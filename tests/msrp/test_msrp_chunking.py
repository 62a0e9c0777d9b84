"""Chunking of outgoing messages and reassembly by Message-ID (RFC 4975 §5.1, §7.1, §7.3.1)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipxmpp.gateway.msrp import (
    ByteRange,
    EndFlag,
    FailureReport,
    IncomingMessage,
    MsrpRequest,
    OutgoingMessage,
    RemoteMsrpError,
    parse_uri,
)

A = parse_uri("msrp://alice.example.test:7777/a1s2;tcp")
B = parse_uri("msrp://bob.example.test:8888/b1s2;tcp")


def chunk(
    start: int,
    data: bytes,
    total: int | None,
    flag: EndFlag = EndFlag.CONTINUED,
    end: int | None | str = "auto",
    *,
    success: bool | None = None,
) -> MsrpRequest:
    range_end = start + len(data) - 1 if end == "auto" else end
    assert range_end is None or isinstance(range_end, int)
    return MsrpRequest(
        "tid12345",
        "SEND",
        (B,),
        (A,),
        message_id="msg12345",
        success_report=success,
        byte_range=ByteRange(start, range_end, total),
        content_type="text/plain",
        body=data,
        end_flag=flag,
    )


def test_rfc_4975_section_5_1_example_reassembles() -> None:
    # §5.1: "abcd" as 1-*/8 flagged '+', then "EFGH" as 5-8/8 flagged '$'.
    incoming = IncomingMessage("4564dpWd", max_size=100)
    incoming.add_chunk(chunk(1, b"abcd", 8, EndFlag.CONTINUED, end=None), 0.0, 60.0)
    assert not incoming.complete
    incoming.add_chunk(chunk(5, b"EFGH", 8, EndFlag.COMPLETE), 0.0, 60.0)
    assert incoming.complete and incoming.body() == b"abcdEFGH"


def test_chunks_in_reverse_order() -> None:
    incoming = IncomingMessage("m", max_size=100)
    incoming.add_chunk(chunk(5, b"EFGH", 8, EndFlag.COMPLETE), 0.0, 60.0)
    assert not incoming.complete
    incoming.add_chunk(chunk(1, b"abcd", 8), 0.0, 60.0)
    assert incoming.complete and incoming.body() == b"abcdEFGH"


def test_overlap_last_chunk_wins() -> None:
    # §7.3.1: when chunks overlap, the data of the chunk received last wins.
    incoming = IncomingMessage("m", max_size=100)
    incoming.add_chunk(chunk(1, b"aaaaaa", 10), 0.0, 60.0)
    incoming.add_chunk(chunk(4, b"BBB", 10), 0.0, 60.0)
    incoming.add_chunk(chunk(7, b"cccc", 10, EndFlag.COMPLETE), 0.0, 60.0)
    assert incoming.complete and incoming.body() == b"aaaBBBcccc"


def test_rfc_example_range_that_counts_the_crlf_is_tolerated() -> None:
    # RFC 4975 §4 declares 1-25/25 for the 23 octets "Hey Bob, are you there?".
    incoming = IncomingMessage("87652491", max_size=100)
    incoming.add_chunk(chunk(1, b"Hey Bob, are you there?", 25, EndFlag.COMPLETE, end=25), 0, 60)
    assert incoming.complete and incoming.body() == b"Hey Bob, are you there?"


def test_rfc_4975_section_11_4_cpim_chunks_reassemble() -> None:
    # §11.4 Figures 14-15: 137 octets as 1-137/148, then "1234567890" as 138-148/148 (the
    # RFC's range-end counts one octet more than the chunk carries).
    first = (
        b"To: Bob <sip:bob@example.com>\r\nFrom: Alice <sip:alice@example.com>\r\n"
        b"DateTime: 2006-05-15T15:02:31-03:00\r\nContent-Type: text/plain\r\n\r\nABCD"
    )
    assert len(first) == 137
    incoming = IncomingMessage("12339sdqwer", max_size=1000)
    incoming.add_chunk(chunk(1, first, 148, EndFlag.CONTINUED, end=137), 0.0, 60.0)
    assert not incoming.complete
    incoming.add_chunk(chunk(138, b"1234567890", 148, EndFlag.COMPLETE, end=148), 0.0, 60.0)
    assert incoming.complete and incoming.body() == first + b"1234567890"


def test_gap_keeps_message_incomplete() -> None:
    incoming = IncomingMessage("m", max_size=100)
    incoming.add_chunk(chunk(1, b"ab", 6), 0.0, 60.0)
    incoming.add_chunk(chunk(5, b"ef", 6, EndFlag.COMPLETE), 0.0, 60.0)
    assert not incoming.complete
    incoming.add_chunk(chunk(3, b"cd", 6), 0.0, 60.0)
    assert incoming.complete and incoming.body() == b"abcdef"


def test_empty_message_is_complete() -> None:
    incoming = IncomingMessage("m", max_size=100)
    incoming.add_chunk(chunk(1, b"", 0, EndFlag.COMPLETE), 0.0, 60.0)
    assert incoming.complete and incoming.body() == b""


def test_missing_byte_range_means_whole_message() -> None:
    incoming = IncomingMessage("m", max_size=100)
    request = MsrpRequest(
        "tid12345", "SEND", (B,), (A,), message_id="m1234", content_type="text/plain", body=b"hi"
    )
    incoming.add_chunk(request, 0.0, 60.0)
    assert incoming.complete and incoming.body() == b"hi"


@pytest.mark.parametrize(
    ("request_chunk", "why"),
    [
        (chunk(1, b"abc", 101), "declared total over the limit"),
        (chunk(99, b"abc", None, end=None), "chunk ends beyond the limit"),
        (chunk(1, b"x" * 101, None, end=None), "chunk itself over the limit"),
    ],
)
def test_size_limit_raises_413(request_chunk: MsrpRequest, why: str) -> None:
    incoming = IncomingMessage("m", max_size=100)
    with pytest.raises(RemoteMsrpError) as info:
        incoming.add_chunk(request_chunk, 0.0, 60.0)
    assert info.value.status == 413, why
    assert len(incoming.buffer) == 0  # refused before anything was stored


def _outgoing(body: bytes, **kw: object) -> OutgoingMessage:
    return OutgoingMessage("msg12345", "text/plain", body, False, FailureReport.YES, **kw)  # type: ignore[arg-type]


def test_outgoing_chunks_have_ranges_and_flags() -> None:
    message = _outgoing(b"0123456789")
    chunks = []
    while not message.fully_chunked:
        chunks.append(message.next_chunk(f"tid{len(chunks):05d}", 4, (B,), (A,)))
    assert [(c.byte_range, c.end_flag, c.body) for c in chunks] == [
        (ByteRange(1, 4, 10), EndFlag.CONTINUED, b"0123"),
        (ByteRange(5, 8, 10), EndFlag.CONTINUED, b"4567"),
        (ByteRange(9, 10, 10), EndFlag.COMPLETE, b"89"),
    ]
    assert all(c.message_id == "msg12345" and c.content_type == "text/plain" for c in chunks)


def test_chunks_over_2048_octets_are_interruptible() -> None:
    # §7.1: a chunk above 2048 octets must be interruptible: its range-end is "*".
    message = _outgoing(b"x" * 5000)
    first = message.next_chunk("tid00001", 4096, (B,), (A,))
    assert first.byte_range == ByteRange(1, None, 5000)
    last = message.next_chunk("tid00002", 4096, (B,), (A,))
    assert last.byte_range == ByteRange(4097, 5000, 5000) and last.end_flag is EndFlag.COMPLETE


def test_empty_outgoing_message_is_one_chunk() -> None:
    message = _outgoing(b"")
    only = message.next_chunk("tid00001", 2048, (B,), (A,))
    assert only.byte_range == ByteRange(1, 0, 0) and only.body == b""
    assert message.fully_chunked


def test_abort_chunk() -> None:
    message = _outgoing(b"0123456789")
    message.next_chunk("tid00001", 4, (B,), (A,))
    abort = message.abort_chunk("tid00002", (B,), (A,))
    assert abort.end_flag is EndFlag.ABORTED and abort.byte_range == ByteRange(5, 4, 10)
    assert message.aborted and message.finished


@settings(max_examples=200, deadline=None)
@given(
    st.binary(min_size=0, max_size=3000),
    st.integers(1, 700),
    st.randoms(use_true_random=False),
    st.booleans(),
)
def test_any_chunking_in_any_order_reassembles(
    body: bytes, size: int, rnd: random.Random, duplicate: bool
) -> None:
    message = _outgoing(body)
    chunks = []
    while not message.fully_chunked:
        chunks.append(message.next_chunk(f"tid{len(chunks):05d}", size, (B,), (A,)))
    if duplicate:
        chunks.append(rnd.choice(chunks))  # a repeated chunk overlaps with identical data
    rnd.shuffle(chunks)
    incoming = IncomingMessage("msg12345", max_size=4000)
    for i, c in enumerate(chunks):
        incoming.add_chunk(c, 0.0, 60.0)
        if i < len(chunks) - 1 and not duplicate:
            assert not incoming.complete
    assert incoming.complete and incoming.body() == body
