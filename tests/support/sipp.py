"""SIPp (Debian ``sip-tester``) as a test peer and load generator, from pytest or a plain script.

:class:`Sipp` wraps one ``sipp`` process started with :mod:`subprocess` (never ``-bg``: the
process stays a child of the caller, so it can be waited for and stopped by its pid). Every
run binds ``-i 127.0.0.1`` on an explicit ``-p`` port (a fresh one per run: a transaction
retransmitted by an earlier run must not reach this one), uses ``-buff_size 4194304`` (SIPp's
default 64 KiB socket buffers drop datagrams from about 5,000 msg/s) and ``-nostdin``, and
writes everything into a working directory:

* ``-trace_msg -message_file``: every SIP message sent and received, parsed by
  :meth:`Sipp.messages` / :func:`parse_message_log`;
* ``-trace_stat -stf``: the statistics CSV (``;``-separated, one row every ``-fd`` seconds and
  one at exit), read by :func:`parse_stat_csv` into :class:`SippResult`;
* ``-trace_screen -screen_file``: the final screens, the fallback for the call counts;
* ``-trace_err -error_file``: unexpected messages;
* optionally ``-trace_rtt -rtt_freq N``: one row per measured response time, read by
  :meth:`Sipp.rtt_samples` and summarised by :meth:`Sipp.response_times`.

Exit codes (``sipp -h``): 0 all calls succeeded, 1 at least one call failed, 97 exit on an
internal command (calls may have been processed), 99 normal exit without calls processed,
-1 (255) fatal error, -2 (254) fatal error binding a socket.

Response times. SIPp measures a response time only where the scenario says so: a message with
``start_rtd="N"`` starts timer N, a later one with ``rtd="N"`` stops it (once per call). The
stat CSV then carries ``ResponseTimeN(C)`` (the cumulative mean, ``hh:mm:ss:uuuuuu``),
``ResponseTimeNStDev(C)`` and the ``ResponseTimeRepartitionN_<bound`` bucket counts (the
scenario's ``<ResponseTimeRepartition value="..."/>`` bounds, in ms). With ``trace_rtt=True``
SIPp also writes ``<scenario stem>_<pid>_rtt.csv`` in its working directory with one row per
measurement: ``Date_ms;response_time_ms;rtd_no`` (the stop time in ms since SIPp started, the
response time in ms, the timer name). Those per-call samples are what
:meth:`Sipp.response_times` turns into min/p50/p90/p99/max (nearest-rank percentiles).
On loopback SIPp 3.6 reports most responses as 0 ms (observed: its response-time clock advances
in steps of about a millisecond, the period of its event loop), so these figures resolve
milliseconds, not microseconds; a lost request shows as its retransmission interval (500 ms for
T1). The rtt file is flushed every ``rtt_freq`` samples (1 by default here, so no sample is
lost when SIPp exits).

Retransmissions. SIPp answers a retransmitted request with its last message only while the
call still exists; once a UAS scenario has sent its final response and ended, a retransmission
is a "dead call" message, absorbed unanswered. A UAS that must answer retransmissions (because
the peer lost the response) needs a ``<pause>`` of at least one retransmission interval after
its response (tests/support_selftest/message_uas_linger.xml).

SIPp prints a double that is exactly 0 as an empty string in some logs; every number here is
parsed defensively (empty means 0, garbage means "unknown", never an exception).

Example (two SIPp processes, the UAC sending five MESSAGEs to the UAS)::

    with Sipp.uas(EXAMPLES_DIR / "message_uas.xml", calls=5) as uas:
        uac = Sipp.uac(EXAMPLES_DIR / "message_uac.xml", f"127.0.0.1:{uas.port}", calls=5,
                       rate=50, service="bob",
                       keys={"from": "alice", "domain": "example.test", "text": "hi"})
        with uac:
            result = uac.wait(10)
        assert result.ok, result.describe()
        assert uas.wait(10).successful == 5
        bodies = [m.body for m in uas.messages("MESSAGE")]
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = [
    "EXIT_CODES",
    "EXAMPLES_DIR",
    "ResponseTimeStats",
    "RttSample",
    "Sipp",
    "SippError",
    "SippLogError",
    "SippMessage",
    "SippResult",
    "Transport",
    "free_tcp_port",
    "free_udp_port",
    "parse_message_log",
    "parse_rtt_csv",
    "parse_screen_counts",
    "parse_sip_duration_ms",
    "parse_stat_csv",
    "percentile",
    "sipp_available",
    "summarize_rtt",
]

#: Loopback only: the test machine is shared and nothing here may listen on another address.
LOOPBACK = "127.0.0.1"

#: The SIPp binary (Debian package ``sip-tester``).
SIPP_BINARY = "sipp"

#: Our SIPp scenario files (examples/sipp/ in the repository).
EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples" / "sipp"

#: Socket send/receive buffer size passed as ``-buff_size``: SIPp's default 64 KiB buffers
#: drop datagrams from about 5,000 msg/s (see /work/shared/notes/test-peers.md).
BUFF_SIZE = 4_194_304

#: How long :meth:`Sipp.start` waits for SIPp to bind its port (it takes a few milliseconds;
#: the margin covers a loaded two-core machine).
START_TIMEOUT_S = 10.0

#: After SIGUSR1 (SIPp's soft exit: no new calls, ongoing calls finish) how long
#: :meth:`Sipp.stop` waits before it sends SIGTERM. A non-INVITE transaction that is still
#: retransmitting can take Timer F (32 s), which a test does not want to wait for.
SOFT_STOP_TIMEOUT_S = 2.0

#: After SIGTERM, how long :meth:`Sipp.stop` waits before SIGKILL.
TERM_TIMEOUT_S = 3.0

#: Largest message log :func:`parse_message_log` reads. A test run writes a few KiB; a
#: benchmark should pass ``trace_msg=False`` rather than have its log parsed.
MAX_MESSAGE_LOG_BYTES = 64 * 1024 * 1024

#: Largest rtt or stat CSV read (a million rtt rows is about 20 MiB).
MAX_CSV_BYTES = 64 * 1024 * 1024

#: Characters of stderr and screen quoted by :meth:`SippResult.describe`.
_DESCRIBE_TAIL_CHARS = 3000

#: Poll interval while waiting for the port or for the process.
_POLL_S = 0.01

Transport = Literal["u1", "t1"]
Direction = Literal["received", "sent"]

#: SIPp's exit codes (``sipp -h``); -1 and -2 appear as 255 and 254. A negative return code
#: is Popen's "killed by that signal".
EXIT_CODES: Mapping[int, str] = {
    0: "all calls succeeded",
    1: "at least one call failed",
    97: "exit on internal command (calls may have been processed)",
    99: "normal exit without calls processed",
    255: "fatal error",
    254: "fatal error binding a socket",
}

#: RFC 3261 §7.3.3 compact header forms, plus RFC 3265/3515/3841/4028 ones, to long names.
_COMPACT_FORMS: Mapping[str, str] = {
    "a": "accept-contact",
    "b": "referred-by",
    "c": "content-type",
    "d": "request-disposition",
    "e": "content-encoding",
    "f": "from",
    "i": "call-id",
    "j": "reject-contact",
    "k": "supported",
    "l": "content-length",
    "m": "contact",
    "o": "event",
    "r": "refer-to",
    "s": "subject",
    "t": "to",
    "u": "allow-events",
    "v": "via",
    "x": "session-expires",
    "y": "identity",
}


class SippError(RuntimeError):
    """SIPp could not be started, or misbehaved; the message quotes its output."""


class SippLogError(ValueError):
    """A SIPp log or CSV file is too large or not in SIPp's format."""


def sipp_available() -> bool:
    """True when the ``sipp`` binary is on PATH."""
    return shutil.which(SIPP_BINARY) is not None


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that was free a moment ago (bind to port 0, then release)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


# -- numbers ---------------------------------------------------------------------------------


def _int_or_zero(value: str | None) -> int | None:
    """SIPp counters: '' means 0 (SIPp prints an exact 0 as empty); garbage means unknown."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return 0
    try:
        return int(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            return None
        return int(number) if number == number and abs(number) != float("inf") else None


def _float_or_zero(value: str | None) -> float | None:
    if value is None:
        return None
    text = value.strip()
    if not text:
        return 0.0
    try:
        number = float(text)
    except ValueError:
        return None
    return number if number == number and abs(number) != float("inf") else None


def parse_sip_duration_ms(value: str | None) -> float | None:
    """SIPp's ``hh:mm:ss:uuuuuu`` (or ``hh:mm:ss``) stat value in milliseconds.

    ``''`` is 0 (SIPp's exact-zero quirk); anything else unreadable gives None.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return 0.0
    parts = text.split(":")
    if len(parts) not in (3, 4) or not all(p.isdigit() for p in parts):
        return None
    hours, minutes, seconds = (int(p) for p in parts[:3])
    micros = int(parts[3]) if len(parts) == 4 else 0
    return ((hours * 60 + minutes) * 60 + seconds) * 1000.0 + micros / 1000.0


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (``fraction`` in (0, 1])."""
    if not sorted_values:
        raise ValueError("no values")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction {fraction} is not in (0, 1]")
    # rank = ceil(fraction * n), in integers so that 0.99 * 100 is 99, not 100 (float error)
    scaled = round(fraction * 1_000_000)
    rank = max(1, -(-scaled * len(sorted_values) // 1_000_000))
    return sorted_values[min(rank, len(sorted_values)) - 1]


# -- the statistics CSV and the screen ---------------------------------------------------------


def _read_limited(path: Path, limit: int) -> bytes:
    size = path.stat().st_size
    if size > limit:
        raise SippLogError(f"{path} has {size} bytes, more than the {limit} this helper reads")
    return path.read_bytes()


def parse_stat_csv(text: str) -> list[dict[str, str]]:
    """The rows of a ``-trace_stat`` file as dicts keyed by the header line's column names.

    Rows shorter than the header get '' for the missing columns (a row being written when
    SIPp was killed); lines after a malformed one are still read.
    """
    # SIPp neither quotes nor escapes (its fields hold no ';'), so a plain split is exact.
    rows = [line.split(";") for line in text.splitlines() if line]
    if not rows:
        return []
    header = rows[0]
    if "SuccessfulCall(C)" not in header and "StartTime" not in header:
        raise SippLogError(f"not a SIPp statistics file (header {header[:4]!r})")
    out: list[dict[str, str]] = []
    for row in rows[1:]:
        out.append({name: (row[i] if i < len(row) else "") for i, name in enumerate(header)})
    return out


_SCREEN_COUNTER = re.compile(
    r"^\s*(?P<name>Successful call|Failed call|Total Calls created|Outgoing calls created|"
    r"Incoming calls created)\s*\|(?P<periodic>[^|]*)\|(?P<cumulative>[^|\n]*)$",
    re.MULTILINE,
)


def parse_screen_counts(screen: str) -> dict[str, int]:
    """Cumulative counters of the last statistics screen in a ``-trace_screen`` file.

    Keys: ``successful``, ``failed``, ``created``, ``outgoing``, ``incoming`` (those present).
    """
    names = {
        "Successful call": "successful",
        "Failed call": "failed",
        "Total Calls created": "created",
        "Outgoing calls created": "outgoing",
        "Incoming calls created": "incoming",
    }
    out: dict[str, int] = {}
    for match in _SCREEN_COUNTER.finditer(screen):  # the last screen wins
        value = _int_or_zero(match.group("cumulative"))
        if value is not None:
            out[names[match.group("name")]] = value
    return out


# -- response times -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RttSample:
    """One row of a ``-trace_rtt`` file."""

    #: When the response was received, in ms since SIPp started.
    date_ms: float
    #: The response time (``start_rtd`` to ``rtd``), in ms.
    response_time_ms: float
    #: The response-time counter's name as written in the scenario (``rtd="1"`` gives "1").
    rtd: str


@dataclass(frozen=True, slots=True)
class ResponseTimeStats:
    """Per-call response times of one ``rtd`` counter, from the rtt samples (all in ms).

    Percentiles are nearest-rank over every sample; the resolution is about a millisecond
    (see the module docstring), so loopback figures below that read as 0.
    """

    rtd: str
    count: int
    min_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float


def parse_rtt_csv(text: str) -> list[RttSample]:
    """The rows of a ``-trace_rtt`` file (``Date_ms;response_time_ms;rtd_no``).

    Unreadable rows (a line being written when SIPp was killed) are skipped.
    """
    lines = text.splitlines()
    if not lines:
        return []
    if not lines[0].startswith("Date_ms;"):
        raise SippLogError(f"not a SIPp rtt file (header {lines[0][:40]!r})")
    out: list[RttSample] = []
    for line in lines[1:]:
        parts = line.split(";")
        if len(parts) < 3:
            continue
        date = _float_or_zero(parts[0])
        rtt = _float_or_zero(parts[1])
        rtd = parts[2].strip()
        if date is None or rtt is None or not rtd:
            continue
        out.append(RttSample(date, rtt, rtd))
    return out


def summarize_rtt(samples: Sequence[RttSample], rtd: str | None = None) -> ResponseTimeStats | None:
    """Min/p50/p90/p99/max/mean of the samples of counter ``rtd`` (all counters if None)."""
    chosen = [s for s in samples if rtd is None or s.rtd == rtd]
    if not chosen:
        return None
    values = sorted(s.response_time_ms for s in chosen)
    return ResponseTimeStats(
        rtd=rtd if rtd is not None else ",".join(sorted({s.rtd for s in chosen})),
        count=len(values),
        min_ms=values[0],
        p50_ms=percentile(values, 0.50),
        p90_ms=percentile(values, 0.90),
        p99_ms=percentile(values, 0.99),
        max_ms=values[-1],
        mean_ms=sum(values) / len(values),
    )


# -- the message log ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SippMessage:
    """One SIP message from SIPp's ``-trace_msg`` log.

    ``headers`` maps lower-case long header names (compact forms expanded, RFC 3261 §7.3.3)
    to values; a header that appears more than once has its values joined with ", "
    (RFC 3261 §7.3.1). ``header_fields`` keeps every field as written, in order.
    """

    direction: Direction
    #: "UDP", "TCP", "TLS" or "SCTP", as SIPp logs it.
    transport: str
    #: SIPp's timestamp line, as written.
    timestamp: str
    start_line: str
    headers: dict[str, str]
    header_fields: tuple[tuple[str, str], ...]
    body: bytes
    raw: bytes

    def __iter__(self) -> Iterator[object]:
        """``start_line, headers, body = message``."""
        return iter((self.start_line, self.headers, self.body))

    def header(self, name: str, default: str | None = None) -> str | None:
        """A header's value by any spelling or compact form."""
        key = name.strip().lower()
        return self.headers.get(_COMPACT_FORMS.get(key, key), default)

    @property
    def is_request(self) -> bool:
        return not self.start_line.startswith("SIP/")

    @property
    def method(self) -> str | None:
        """The request method, or None for a response."""
        if not self.is_request:
            return None
        return self.start_line.split(" ", 1)[0]

    @property
    def status(self) -> int | None:
        """The response status code, or None for a request or an unreadable status line."""
        if self.is_request:
            return None
        parts = self.start_line.split(" ", 2)
        if len(parts) < 2 or not (len(parts[1]) == 3 and parts[1].isdigit()):
            return None
        return int(parts[1])

    @property
    def cseq_method(self) -> str | None:
        cseq = self.header("cseq")
        if not cseq:
            return None
        parts = cseq.split()
        return parts[1] if len(parts) == 2 else None


# "----------------------------------------------- 2026-11-22 00:51:04.434382\n"
# "UDP message received [324] bytes :\n\n"  or  "UDP message sent (247 bytes):\n\n"
_ENTRY_HEAD = re.compile(
    rb"-{47} (?P<ts>[^\n]*)\n"
    rb"(?P<transport>[A-Z]+) (?:control )?message "
    rb"(?:(?P<rdir>received) \[(?P<rlen>\d{1,10})\] bytes :|(?P<sdir>sent) \((?P<slen>\d{1,10}) bytes\):)"
    rb"\n\n"
)


def _split_sip(raw: bytes) -> tuple[str, tuple[tuple[str, str], ...], bytes]:
    """Start line, header fields and body of one SIP message; never raises."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        head, sep, body = raw.partition(separator)
        if sep:
            break
    else:
        head, body = raw, b""
    lines = head.decode("utf-8", errors="replace").replace("\r\n", "\n").split("\n")
    start_line = lines[0].strip() if lines else ""
    fields: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and fields:  # RFC 3261 §7.3.1 line folding
            name, value = fields[-1]
            fields[-1] = (name, f"{value} {line.strip()}")
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            continue
        fields.append((name.strip(), value.strip()))
    return start_line, tuple(fields), body


def _header_dict(fields: Sequence[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in fields:
        key = name.lower()
        key = _COMPACT_FORMS.get(key, key)
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def parse_message_log(data: bytes) -> list[SippMessage]:
    """Every SIP message in a ``-trace_msg`` log, in order.

    Each entry's byte count (``[324] bytes`` / ``(247 bytes)``) delimits the message exactly,
    so a body that happens to contain SIPp's separator line is not split. Text between entries
    that is not an entry head is skipped; an entry cut short (SIPp killed while writing) ends
    the list. Raises :class:`SippLogError` only for a log larger than MAX_MESSAGE_LOG_BYTES.
    """
    if len(data) > MAX_MESSAGE_LOG_BYTES:
        raise SippLogError(f"message log of {len(data)} bytes exceeds {MAX_MESSAGE_LOG_BYTES}")
    out: list[SippMessage] = []
    pos = 0
    while True:
        head = _ENTRY_HEAD.search(data, pos)
        if head is None:
            break
        length = int(head.group("rlen") or head.group("slen") or b"0")
        start = head.end()
        if start + length > len(data):
            break
        raw = data[start : start + length]
        pos = start + length
        start_line, fields, body = _split_sip(raw)
        direction: Direction = "received" if head.group("rdir") else "sent"
        out.append(
            SippMessage(
                direction=direction,
                transport=head.group("transport").decode("ascii"),
                timestamp=head.group("ts").decode("utf-8", errors="replace"),
                start_line=start_line,
                headers=_header_dict(fields),
                header_fields=fields,
                body=body,
                raw=raw,
            )
        )
    return out


def _matches_kind(message: SippMessage, kind: str | int | None) -> bool:
    if kind is None:
        return True
    if isinstance(kind, int) or (isinstance(kind, str) and kind.isdigit()):
        return message.status == int(kind)
    if kind == "request":
        return message.is_request
    if kind == "response":
        return not message.is_request
    return message.method == kind


# -- results --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SippResult:
    """What one SIPp run ended with."""

    returncode: int
    #: True when :meth:`Sipp.wait` ran out of time and stopped SIPp itself.
    timed_out: bool
    #: Cumulative successful / failed / created calls (stat CSV, else the final screen);
    #: None when neither was readable.
    successful: int | None
    failed: int | None
    created: int | None
    retransmissions: int | None
    #: The last row of the statistics CSV (empty if none was written).
    stats: Mapping[str, str] = field(default_factory=dict)
    screen: str = ""
    stdout: str = ""
    stderr: str = ""
    errors: str = ""
    command: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """SIPp exited 0 (every call succeeded) on its own."""
        return self.returncode == 0 and not self.timed_out

    @property
    def meaning(self) -> str:
        if self.returncode < 0:
            return f"killed by signal {-self.returncode}"
        return EXIT_CODES.get(self.returncode, f"exit code {self.returncode}")

    def response_time_avg_ms(self, rtd: str = "1") -> float | None:
        """Cumulative mean response time of counter ``rtd`` from the stat CSV (ms)."""
        return parse_sip_duration_ms(self.stats.get(f"ResponseTime{rtd}(C)"))

    def response_time_stdev_ms(self, rtd: str = "1") -> float | None:
        return parse_sip_duration_ms(self.stats.get(f"ResponseTime{rtd}StDev(C)"))

    def repartition(self, rtd: str = "1") -> dict[str, int]:
        """The ``ResponseTimeRepartition`` bucket counts of counter ``rtd``.

        Keys are SIPp's bounds as written (``"<1"``, ``"<2"`` ... ``">=100"``, in ms).
        """
        prefix = f"ResponseTimeRepartition{rtd}_"
        out: dict[str, int] = {}
        for name, value in self.stats.items():
            if name.startswith(prefix):
                count = _int_or_zero(value)
                if count is not None:
                    out[name[len(prefix) :]] = count
        return out

    def describe(self) -> str:
        """A multi-line account for assertion messages."""
        state = "timed out and was stopped; " if self.timed_out else ""
        return (
            f"sipp {state}exit {self.returncode} ({self.meaning}); successful={self.successful} "
            f"failed={self.failed} created={self.created} retransmissions={self.retransmissions}\n"
            f"command: {' '.join(self.command)}\n"
            f"stderr: {self.stderr[-_DESCRIBE_TAIL_CHARS:]}\n"
            f"errors: {self.errors[-_DESCRIBE_TAIL_CHARS:]}\n"
            f"screen:\n{self.screen[-_DESCRIBE_TAIL_CHARS:]}"
        )


# -- the process ----------------------------------------------------------------------------------


def _port_bound(port: int, transport: Transport) -> bool | None:
    """Whether 127.0.0.1:port is bound (UDP) or listening (TCP); None if /proc is unreadable."""
    table = "/proc/net/udp" if transport == "u1" else "/proc/net/tcp"
    try:
        with open(table, encoding="ascii") as handle:
            lines = handle.read().splitlines()[1:]
    except OSError:
        return None
    wanted = {f"0100007F:{port:04X}", f"00000000:{port:04X}"}
    for line in lines:
        parts = line.split()
        if len(parts) < 4 or parts[1] not in wanted:
            continue
        if transport == "u1" or parts[3] == "0A":  # 0A: TCP_LISTEN
            return True
    return False


class Sipp:
    """One ``sipp`` process on 127.0.0.1 and its trace files.

    :param scenario: a scenario file (``-sf``) or the name of a built-in one (``-sn``).
    :param remote: ``host:port`` to send to (a UAC); None for a UAS.
    :param port: local port (``-p``); a fresh free one when omitted.
    :param calls: stop after this many calls (``-m``).
    :param rate: calls per ``rate_period_ms`` (``-r``, ``-rp``).
    :param max_concurrent: simultaneous calls (``-l``).
    :param service: the ``[service]`` keyword (``-s``), the addressee's user part.
    :param keys: ``-key NAME VALUE`` pairs, for ``[NAME]`` in the scenario.
    :param variables: ``-set NAME VALUE`` pairs (global ``[$NAME]`` variables).
    :param transport: ``u1`` (UDP, one socket) or ``t1`` (TCP, one connection).
    :param trace_msg: write the message log (turn off for load runs).
    :param trace_rtt: write the per-call response-time file (``-trace_rtt -rtt_freq``).
    :param rtt_freq: rows buffered before SIPp writes the rtt file.
    :param stat_period_s: ``-fd``, seconds between stat CSV rows (a row is also written at exit).
    :param extra_args: appended to the command line as given.
    :param workdir: where the trace files go; a fresh temporary directory (removed by
        :meth:`cleanup` and on leaving the ``with`` block, so read the logs inside it, or pass
        pytest's ``tmp_path`` to keep them) when omitted.
    :param name: prefix of the trace file names.
    """

    def __init__(
        self,
        scenario: str | Path,
        *,
        remote: str | None = None,
        port: int | None = None,
        calls: int | None = None,
        rate: float | None = None,
        rate_period_ms: int | None = None,
        max_concurrent: int | None = None,
        service: str | None = None,
        keys: Mapping[str, str] | None = None,
        variables: Mapping[str, str] | None = None,
        transport: Transport = "u1",
        trace_msg: bool = True,
        trace_rtt: bool = False,
        rtt_freq: int = 1,
        stat_period_s: int = 60,
        extra_args: Sequence[str] = (),
        workdir: Path | None = None,
        name: str = "sipp",
    ) -> None:
        if transport not in ("u1", "t1"):
            raise ValueError(f"transport {transport!r} is not 'u1' or 't1'")
        if remote is not None and not re.fullmatch(r"127\.0\.0\.1:\d{1,5}", remote):
            raise ValueError(f"remote {remote!r} is not 127.0.0.1:<port> (loopback only)")
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
            raise ValueError(f"name {name!r} is not a plain file-name prefix")
        if rtt_freq < 1:
            raise ValueError("rtt_freq must be at least 1")
        self.scenario = scenario
        self.remote = remote
        self.transport: Transport = transport
        if port is not None:
            self.port = port
        else:
            self.port = free_udp_port() if transport == "u1" else free_tcp_port()
        self.calls = calls
        self.rate = rate
        self.rate_period_ms = rate_period_ms
        self.max_concurrent = max_concurrent
        self.service = service
        self.keys: dict[str, str] = dict(keys or {})
        self.variables: dict[str, str] = dict(variables or {})
        self.trace_msg = trace_msg
        self.trace_rtt = trace_rtt
        self.rtt_freq = rtt_freq
        self.stat_period_s = stat_period_s
        self.extra_args: tuple[str, ...] = tuple(extra_args)
        self._own_workdir = workdir is None
        self.workdir = (
            Path(tempfile.mkdtemp(prefix="sipxmpp-sipp-")) if workdir is None else workdir
        )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self._proc: subprocess.Popen[bytes] | None = None
        self._result: SippResult | None = None
        self._timed_out = False

    # -- constructors ------------------------------------------------------------------------

    @classmethod
    def uac(
        cls,
        scenario: str | Path,
        target: str,
        *,
        calls: int = 1,
        rate: float = 10.0,
        service: str | None = None,
        keys: Mapping[str, str] | None = None,
        transport: Transport = "u1",
        extra_args: Sequence[str] = (),
        **options: object,
    ) -> Sipp:
        """A client sending ``calls`` calls to ``target`` (``127.0.0.1:port``) at ``rate``/s.

        ``options`` are the remaining :class:`Sipp` keyword arguments (``variables``,
        ``trace_rtt``, ``workdir``, ``port`` ...). Not started yet: call :meth:`start` or use
        it as a context manager.
        """
        options.setdefault("name", "uac")
        return cls(
            scenario,
            remote=target,
            calls=calls,
            rate=rate,
            service=service,
            keys=keys,
            transport=transport,
            extra_args=extra_args,
            **options,  # type: ignore[arg-type]
        )

    @classmethod
    def uas(
        cls,
        scenario: str | Path,
        *,
        port: int | None = None,
        calls: int | None = None,
        keys: Mapping[str, str] | None = None,
        transport: Transport = "u1",
        extra_args: Sequence[str] = (),
        **options: object,
    ) -> Sipp:
        """A server on ``port`` (fresh if omitted) that exits after ``calls`` calls if given."""
        options.setdefault("name", "uas")
        return cls(
            scenario,
            port=port,
            calls=calls,
            keys=keys,
            transport=transport,
            extra_args=extra_args,
            **options,  # type: ignore[arg-type]
        )

    # -- paths ----------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def address(self) -> str:
        """``127.0.0.1:port``, the address another element sends to."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def message_log_path(self) -> Path:
        return self.workdir / f"{self.name}_messages.log"

    @property
    def stat_path(self) -> Path:
        return self.workdir / f"{self.name}_stat.csv"

    @property
    def screen_path(self) -> Path:
        return self.workdir / f"{self.name}_screen.log"

    @property
    def error_path(self) -> Path:
        return self.workdir / f"{self.name}_errors.log"

    @property
    def stdout_path(self) -> Path:
        return self.workdir / f"{self.name}.stdout"

    @property
    def stderr_path(self) -> Path:
        return self.workdir / f"{self.name}.stderr"

    @property
    def rtt_path(self) -> Path | None:
        """``<scenario stem>_<pid>_rtt.csv`` in the working directory, once SIPp wrote it."""
        if self._proc is None:
            return None
        stem = Path(str(self.scenario)).stem if self._scenario_is_file else str(self.scenario)
        path = self.workdir / f"{stem}_{self._proc.pid}_rtt.csv"
        return path if path.exists() else None

    @property
    def _scenario_is_file(self) -> bool:
        return isinstance(self.scenario, Path) or str(self.scenario).endswith(".xml")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- command line -------------------------------------------------------------------------

    @property
    def command(self) -> list[str]:
        """The full ``sipp`` command line this object runs."""
        cmd = [SIPP_BINARY]
        if self.remote is not None:
            cmd.append(self.remote)
        if self._scenario_is_file:
            cmd += ["-sf", str(Path(self.scenario).resolve())]
        else:
            cmd += ["-sn", str(self.scenario)]
        cmd += ["-i", LOOPBACK, "-ci", LOOPBACK, "-p", str(self.port), "-t", self.transport]
        cmd += ["-buff_size", str(BUFF_SIZE), "-nostdin"]
        if self.calls is not None:
            cmd += ["-m", str(self.calls)]
        if self.rate is not None:
            cmd += ["-r", _number(self.rate)]
        if self.rate_period_ms is not None:
            cmd += ["-rp", str(self.rate_period_ms)]
        if self.max_concurrent is not None:
            cmd += ["-l", str(self.max_concurrent)]
        if self.service is not None:
            cmd += ["-s", self.service]
        for name, value in self.keys.items():
            cmd += ["-key", name, value]
        for name, value in self.variables.items():
            cmd += ["-set", name, value]
        if self.trace_msg:
            cmd += ["-trace_msg", "-message_file", str(self.message_log_path)]
        cmd += ["-trace_stat", "-stf", str(self.stat_path), "-fd", str(self.stat_period_s)]
        cmd += ["-trace_screen", "-screen_file", str(self.screen_path)]
        cmd += ["-trace_err", "-error_file", str(self.error_path)]
        if self.trace_rtt:
            cmd += ["-trace_rtt", "-rtt_freq", str(self.rtt_freq)]
        cmd += list(self.extra_args)
        return cmd

    # -- process control ----------------------------------------------------------------------

    def start(self, *, wait_bound: bool | None = None, timeout: float = START_TIMEOUT_S) -> Sipp:
        """Start SIPp; for a UAS (or when ``wait_bound``) wait until its port is bound."""
        if not sipp_available():
            raise SippError("sipp not found on PATH (apt-get install sip-tester)")
        if self._proc is not None:
            raise SippError("this Sipp was already started; make a new one per run")
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self._proc = subprocess.Popen(
                self.command,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        if wait_bound is None:
            wait_bound = self.remote is None
        if wait_bound:
            self._wait_bound(timeout)
        return self

    def _wait_bound(self, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                result = self._collect(self._proc.returncode)
                raise SippError(f"sipp exited before binding its port:\n{result.describe()}")
            bound = _port_bound(self.port, self.transport)
            if bound is None:  # no /proc: give SIPp a moment, as it binds within milliseconds
                time.sleep(0.2)
                return
            if bound:
                return
            if time.monotonic() > deadline:
                self.stop()
                raise SippError(f"sipp did not bind {self.address} within {timeout} s")
            time.sleep(_POLL_S)

    def wait(self, timeout: float) -> SippResult:
        """Wait for SIPp to exit on its own; after ``timeout`` s stop it (``timed_out=True``)."""
        proc = self._require_started()
        if self._result is not None:
            return self._result
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._timed_out = True
            return self.stop()
        return self._finish(code)

    async def wait_async(self, timeout: float) -> SippResult:
        """:meth:`wait` for asyncio code: polls without blocking the event loop."""
        proc = self._require_started()
        if self._result is not None:
            return self._result
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            if time.monotonic() > deadline:
                self._timed_out = True
                return await asyncio.to_thread(self.stop)
            await asyncio.sleep(_POLL_S)
        return self._finish(proc.returncode)

    def stop(
        self, soft_timeout: float = SOFT_STOP_TIMEOUT_S, term_timeout: float = TERM_TIMEOUT_S
    ) -> SippResult:
        """SIGUSR1 (soft exit), then SIGTERM, then SIGKILL; return the result."""
        proc = self._require_started()
        if self._result is not None:
            return self._result
        for sig, grace in ((signal.SIGUSR1, soft_timeout), (signal.SIGTERM, term_timeout)):
            if proc.poll() is not None:
                break
            try:
                proc.send_signal(sig)
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                continue
            except ProcessLookupError:
                break
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=term_timeout)
        return self._finish(proc.returncode)

    def _require_started(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise SippError("sipp was not started")
        return self._proc

    def _finish(self, code: int) -> SippResult:
        self._result = self._collect(code)
        return self._result

    def _collect(self, code: int) -> SippResult:
        stats: dict[str, str] = {}
        try:
            rows = parse_stat_csv(
                _read_limited(self.stat_path, MAX_CSV_BYTES).decode("utf-8", errors="replace")
            )
            stats = rows[-1] if rows else {}
        except (OSError, SippLogError):
            stats = {}
        screen = _read_text(self.screen_path)
        screen_counts = parse_screen_counts(screen)

        def count(column: str, screen_key: str) -> int | None:
            value = _int_or_zero(stats.get(column))
            return value if value is not None else screen_counts.get(screen_key)

        return SippResult(
            returncode=code,
            timed_out=self._timed_out,
            successful=count("SuccessfulCall(C)", "successful"),
            failed=count("FailedCall(C)", "failed"),
            created=count("TotalCallCreated", "created"),
            retransmissions=_int_or_zero(stats.get("Retransmissions(C)")),
            stats=stats,
            screen=screen,
            stdout=_read_text(self.stdout_path),
            stderr=_read_text(self.stderr_path),
            errors=_read_text(self.error_path),
            command=tuple(self.command),
        )

    @property
    def result(self) -> SippResult | None:
        """The result once SIPp has exited and been waited for."""
        return self._result

    # -- what SIPp saw --------------------------------------------------------------------------

    def messages(
        self, kind: str | int | None = "MESSAGE", direction: Direction | None = "received"
    ) -> list[SippMessage]:
        """SIP messages from the message log so far.

        :param kind: a request method ("MESSAGE", "NOTIFY"), a status code (200 or "200"),
            "request", "response", or None for all.
        :param direction: "received", "sent", or None for both.
        """
        if not self.trace_msg:
            raise SippError("this run was started with trace_msg=False")
        try:
            data = _read_limited(self.message_log_path, MAX_MESSAGE_LOG_BYTES)
        except FileNotFoundError:
            return []
        return [
            m
            for m in parse_message_log(data)
            if (direction is None or m.direction == direction) and _matches_kind(m, kind)
        ]

    def rtt_samples(self) -> list[RttSample]:
        """Rows of the ``-trace_rtt`` file so far (needs ``trace_rtt=True``)."""
        if not self.trace_rtt:
            raise SippError("this run was started with trace_rtt=False")
        path = self.rtt_path
        if path is None:
            return []
        return parse_rtt_csv(_read_limited(path, MAX_CSV_BYTES).decode("ascii", errors="replace"))

    def response_times(self, rtd: str | None = "1") -> ResponseTimeStats | None:
        """Per-call response-time figures of counter ``rtd`` (None: all counters)."""
        return summarize_rtt(self.rtt_samples(), rtd)

    # -- lifetime -------------------------------------------------------------------------------

    def cleanup(self) -> None:
        """Stop SIPp if it runs and remove the working directory if this object made it."""
        if self._proc is not None and self._result is None:
            self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Sipp:
        if self._proc is None:
            try:
                self.start()
            except BaseException:
                self.cleanup()
                raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()

    def __del__(self) -> None:  # a forgotten SIPp must not outlive the test process
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except OSError:
                pass


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _read_text(path: Path) -> str:
    try:
        return _read_limited(path, MAX_CSV_BYTES).decode("utf-8", errors="replace")
    except (OSError, SippLogError):
        return ""
