"""The SIPp wrapper's parsers and command line, without running SIPp.

Log and CSV samples are in the exact shapes SIPp 3.6 writes (checked against real runs:
``test_sipp.py`` parses the real files).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from support.sipp import (
    BUFF_SIZE,
    MAX_MESSAGE_LOG_BYTES,
    RttSample,
    Sipp,
    SippLogError,
    SippResult,
    parse_message_log,
    parse_rtt_csv,
    parse_screen_counts,
    parse_sip_duration_ms,
    parse_stat_csv,
    percentile,
    summarize_rtt,
)

SEPARATOR = "-" * 47


def entry(raw: bytes, *, direction: str = "received", transport: str = "UDP") -> bytes:
    """One message-log entry as SIPp writes it (socket.cpp's TRACE_MSG formats)."""
    stamp = f"{SEPARATOR} 2026-11-22 00:51:04.434382\n".encode()
    if direction == "received":
        head = f"{transport} message received [{len(raw)}] bytes :\n\n".encode()
    else:
        head = f"{transport} message sent ({len(raw)} bytes):\n\n".encode()
    return stamp + head + raw + b"\n"


MESSAGE = (
    b"MESSAGE sip:bob@example.test SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:25071;branch=z9hG4bK-1;rport\r\n"
    b"From: <sip:alice@example.test>;tag=1\r\n"
    b"To: <sip:bob@example.test>\r\n"
    b"Call-ID: 1-31454@127.0.0.1\r\n"
    b"CSeq: 1 MESSAGE\r\n"
    b"Content-Type: text/plain;charset=UTF-8\r\n"
    b"Content-Length:    13\r\n"
    b"\r\n"
    b"hi there #1\r\n"
)
OK = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:25071;branch=z9hG4bK-1;rport\r\n"
    b"f: <sip:alice@example.test>;tag=1\r\n"
    b"t: <sip:bob@example.test>;tag=2\r\n"
    b"i: 1-31454@127.0.0.1\r\n"
    b"CSeq: 1 MESSAGE\r\n"
    b"l: 0\r\n"
    b"\r\n"
)
# A body that contains SIPp's own separator and an entry head: the byte count must win.
TRICKY_BODY = (
    f"{SEPARATOR} 2026-11-22 00:00:00.000000\nUDP message received [5] bytes :\n\nhello\n"
).encode()
TRICKY = (
    b"MESSAGE sip:bob@example.test SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bK-2\r\n"
    b"Subject: first\r\n"
    b"Subject: second\r\n"
    b"X-Folded: one\r\n"
    b"  two\r\n"
    b"Content-Length: " + str(len(TRICKY_BODY)).encode() + b"\r\n\r\n" + TRICKY_BODY
)

# (log bytes, expected [(direction, start line, {header: value}, body)])
LOG_CASES = [
    pytest.param(b"", [], id="empty"),
    pytest.param(
        entry(MESSAGE) + entry(OK, direction="sent"),
        [
            (
                "received",
                "MESSAGE sip:bob@example.test SIP/2.0",
                {"content-length": "13", "cseq": "1 MESSAGE"},
                b"hi there #1\r\n",
            ),
            (
                "sent",
                "SIP/2.0 200 OK",
                {"from": "<sip:alice@example.test>;tag=1", "call-id": "1-31454@127.0.0.1"},
                b"",
            ),
        ],
        id="request-and-compact-response",
    ),
    pytest.param(
        entry(TRICKY),
        [
            (
                "received",
                "MESSAGE sip:bob@example.test SIP/2.0",
                {"subject": "first, second", "x-folded": "one two"},
                TRICKY_BODY,
            )
        ],
        id="separator-inside-body-repeated-and-folded-headers",
    ),
    pytest.param(
        b"Resolving remote host...\n" + entry(OK, transport="TCP") + b"garbage\n",
        [("received", "SIP/2.0 200 OK", {"to": "<sip:bob@example.test>;tag=2"}, b"")],
        id="noise-around-an-entry",
    ),
    pytest.param(
        entry(OK) + entry(MESSAGE)[:-40],
        [("received", "SIP/2.0 200 OK", {}, b"")],
        id="last-entry-cut-short",
    ),
    pytest.param(
        entry(b"\x00\xff not sip at all"),
        [("received", "\x00\ufffd not sip at all", {}, b"")],
        id="binary-datagram",
    ),
    pytest.param(
        entry(b"OPTIONS sip:x SIP/2.0\nVia: SIP/2.0/UDP h\n\nbody"),
        [("received", "OPTIONS sip:x SIP/2.0", {"via": "SIP/2.0/UDP h"}, b"body")],
        id="bare-lf-line-ends",
    ),
]


@pytest.mark.parametrize(("log", "expected"), LOG_CASES)
def test_parse_message_log(
    log: bytes, expected: list[tuple[str, str, dict[str, str], bytes]]
) -> None:
    messages = parse_message_log(log)
    assert len(messages) == len(expected)
    for message, (direction, start_line, headers, body) in zip(messages, expected, strict=True):
        assert message.direction == direction
        assert message.start_line == start_line
        for name, value in headers.items():
            assert message.headers[name] == value
        assert message.body == body


def test_message_accessors() -> None:
    request, response = parse_message_log(entry(MESSAGE) + entry(OK, direction="sent"))
    start_line, headers, body = request  # the (start line, headers, body) view
    assert start_line.startswith("MESSAGE ")
    assert headers["to"] == "<sip:bob@example.test>"
    assert body == b"hi there #1\r\n"
    assert request.method == "MESSAGE" and request.status is None and request.is_request
    assert response.method is None and response.status == 200
    assert response.header("Call-ID") == response.header("i") == "1-31454@127.0.0.1"
    assert response.header("Content-Length") == "0"
    assert response.cseq_method == "MESSAGE"
    assert response.header("X-Missing", "none") == "none"
    assert request.transport == "UDP" and request.raw == MESSAGE


def test_message_log_size_limit() -> None:
    with pytest.raises(SippLogError):
        parse_message_log(b" " * (MAX_MESSAGE_LOG_BYTES + 1))


_token = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-",
    min_size=1,
    max_size=12,
)
_value = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters=":"),
    min_size=1,
    max_size=30,
)


@st.composite
def sip_messages(draw: st.DrawFn) -> tuple[str, list[tuple[str, str]], bytes, str]:
    if draw(st.booleans()):
        start = f"{draw(_token).upper()} sip:{draw(_token)}@example.test SIP/2.0"
    else:
        start = f"SIP/2.0 {draw(st.integers(100, 699))} {draw(_token)}"
    names = draw(st.lists(_token.map(lambda t: "X-" + t), max_size=6, unique_by=str.lower))
    fields = [(name, draw(_value)) for name in names]
    body = draw(st.binary(max_size=200))
    direction = draw(st.sampled_from(["received", "sent"]))
    return start, fields, body, direction


@settings(max_examples=200, deadline=None)
@given(st.lists(sip_messages(), max_size=5))
def test_message_log_round_trip(
    messages: list[tuple[str, list[tuple[str, str]], bytes, str]],
) -> None:
    log = b""
    for start, fields, body, direction in messages:
        head = "\r\n".join([start, *(f"{n}: {v}" for n, v in fields)]).encode()
        log += entry(head + b"\r\n\r\n" + body, direction=direction)
    parsed = parse_message_log(log)
    assert len(parsed) == len(messages)
    for got, (start, fields, body, direction) in zip(parsed, messages, strict=True):
        assert got.start_line == start
        assert list(got.header_fields) == fields
        assert got.body == body
        assert got.direction == direction


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_any_log_bytes_parse(data: bytes) -> None:
    for message in parse_message_log(entry(data) + data):
        assert isinstance(message.start_line, str)
        assert isinstance(message.body, bytes)


# -- the statistics CSV ------------------------------------------------------------------------

STAT_HEADER = (
    "StartTime;LastResetTime;CurrentTime;TotalCallCreated;SuccessfulCall(P);SuccessfulCall(C);"
    "FailedCall(P);FailedCall(C);Retransmissions(C);ResponseTime1(C);ResponseTime1StDev(C);"
    "ResponseTimeRepartition1;ResponseTimeRepartition1_<1;ResponseTimeRepartition1_<2;"
    "ResponseTimeRepartition1_>=2;"
)


def stat_file(*rows: str) -> str:
    return "\n".join([STAT_HEADER, *rows]) + "\n"


def test_stat_csv_last_row_and_empty_zero() -> None:
    text = stat_file(
        "2026-11-22\t00:40:04.8\t1.0;x;y;0;0;0;0;0;0;00:00:00:000000;;;0;0;0;",
        # SIPp prints an exact 0 as an empty string: '' columns are zeros.
        "2026-11-22\t00:40:05.8\t1.0;x;y;5;;5;;;3;00:00:01:250000;00:00:00:000500;;4;1;;",
    )
    rows = parse_stat_csv(text)
    assert len(rows) == 2
    result = SippResult(
        returncode=0,
        timed_out=False,
        successful=5,
        failed=0,
        created=5,
        retransmissions=3,
        stats=rows[-1],
    )
    assert result.response_time_avg_ms() == 1250.0
    assert result.response_time_stdev_ms() == 0.5
    assert result.repartition() == {"<1": 4, "<2": 1, ">=2": 0}
    assert result.ok and result.meaning == "all calls succeeded"


def test_stat_csv_short_row_and_bad_header() -> None:
    rows = parse_stat_csv(stat_file("a;b;c;7"))
    assert rows[0]["TotalCallCreated"] == "7"
    assert rows[0]["SuccessfulCall(C)"] == ""
    assert parse_stat_csv("") == []
    with pytest.raises(SippLogError):
        parse_stat_csv("Date_ms;response_time_ms;rtd_no\n1;2;3\n")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_stat_text_parses_or_is_refused(text: str) -> None:
    try:
        rows = parse_stat_csv(text)
    except SippLogError:
        return
    assert all(isinstance(row, dict) for row in rows)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("00:00:00:000000", 0.0),
        ("", 0.0),
        ("00:00:01:250000", 1250.0),
        ("01:02:03:000001", 3_723_000.001),
        ("00:01:00", 60_000.0),
        ("garbage", None),
        ("1:2", None),
        (None, None),
    ],
)
def test_sip_duration(value: str | None, expected: float | None) -> None:
    got = parse_sip_duration_ms(value)
    assert got == pytest.approx(expected) if expected is not None else got is None


SCREEN = """\
----------------------------- Statistics Screen ------- [1-9]: Change Screen --
  Counter Name           | Periodic value            | Cumulative value
-------------------------+---------------------------+--------------------------
  Incoming calls created |        0                  |        0
  Outgoing calls created |        0                  |        5
  Total Calls created    |                           |        5
-------------------------+---------------------------+--------------------------
  Successful call        |        0                  |        4
  Failed call            |        0                  |
"""


def test_screen_counts_last_screen_and_empty_zero() -> None:
    counts = parse_screen_counts(SCREEN.replace("|        4", "|        1") + SCREEN)
    assert counts == {"incoming": 0, "outgoing": 5, "created": 5, "successful": 4, "failed": 0}
    assert parse_screen_counts("") == {}


# -- response times ------------------------------------------------------------------------------


def test_rtt_csv_and_summary() -> None:
    text = "Date_ms;response_time_ms;rtd_no\n8.001;0;1\n12.5;;1\n20;503.25;1\n30;7;setup\nbroken\n"
    samples = parse_rtt_csv(text)
    assert samples == [
        RttSample(8.001, 0.0, "1"),
        RttSample(12.5, 0.0, "1"),
        RttSample(20.0, 503.25, "1"),
        RttSample(30.0, 7.0, "setup"),
    ]
    stats = summarize_rtt(samples, "1")
    assert stats is not None
    assert (stats.count, stats.min_ms, stats.p50_ms, stats.max_ms) == (3, 0.0, 0.0, 503.25)
    assert stats.p99_ms == 503.25
    assert summarize_rtt(samples, "none") is None
    everything = summarize_rtt(samples, None)
    assert everything is not None and everything.count == 4 and everything.rtd == "1,setup"
    with pytest.raises(SippLogError):
        parse_rtt_csv("StartTime;x\n")


@pytest.mark.parametrize(
    ("fraction", "expected"),
    [(0.01, 1), (0.5, 50), (0.9, 90), (0.99, 99), (1.0, 100)],
)
def test_percentile_nearest_rank(fraction: float, expected: int) -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, fraction) == expected


def test_percentile_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        percentile([], 0.5)
    with pytest.raises(ValueError):
        percentile([1.0], 0.0)


# -- the command line ----------------------------------------------------------------------------


def test_uac_command_line(tmp_path: Path) -> None:
    uac = Sipp.uac(
        tmp_path / "s.xml",
        "127.0.0.1:5070",
        calls=5,
        rate=2.5,
        service="bob",
        keys={"from": "alice", "text": "two words"},
        variables={"v": "1"},
        transport="t1",
        trace_rtt=True,
        extra_args=["-recv_timeout", "5000"],
        workdir=tmp_path,
        port=40000,
    )
    cmd = uac.command
    assert cmd[:2] == ["sipp", "127.0.0.1:5070"]
    pairs = list(zip(cmd, cmd[1:], strict=False))
    for pair in [
        ("-sf", str((tmp_path / "s.xml").resolve())),
        ("-i", "127.0.0.1"),
        ("-p", "40000"),
        ("-t", "t1"),
        ("-buff_size", str(BUFF_SIZE)),
        ("-m", "5"),
        ("-r", "2.5"),
        ("-s", "bob"),
        ("-message_file", str(tmp_path / "uac_messages.log")),
        ("-stf", str(tmp_path / "uac_stat.csv")),
        ("-rtt_freq", "1"),
        ("-recv_timeout", "5000"),
    ]:
        assert pair in pairs, pair
    assert "-nostdin" in cmd and "-bg" not in cmd and "-trace_rtt" in cmd
    i = cmd.index("-key")
    assert cmd[i : i + 6] == ["-key", "from", "alice", "-key", "text", "two words"]
    assert cmd[cmd.index("-set") : cmd.index("-set") + 3] == ["-set", "v", "1"]


def test_uas_builtin_scenario_and_defaults(tmp_path: Path) -> None:
    uas = Sipp.uas("uas", calls=1, workdir=tmp_path)
    cmd = uas.command
    assert cmd[1:3] == ["-sn", "uas"]
    assert uas.remote is None and 0 < uas.port < 65536
    assert uas.address == f"127.0.0.1:{uas.port}"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"remote": "192.0.2.1:5060"},
        {"remote": "localhost:5060"},
        {"transport": "s1"},
        {"name": "../escape"},
        {"rtt_freq": 0},
    ],
)
def test_constructor_refusals(tmp_path: Path, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Sipp("uac", workdir=tmp_path, **kwargs)  # type: ignore[arg-type]
