"""The benchmarks' readers of the load processes' records: a record they cannot read counts
as a lost message in the figures, so their edge cases are tested here."""

from __future__ import annotations

import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import im_legs  # noqa: E402
import im_throughput  # noqa: E402
import xmpp_load  # noqa: E402

# SIPp prints a variable holding 0 as nothing: a MESSAGE received at microsecond 0 logs
# "<seconds> " with no microseconds (seen as a lost message at 5,000 msg/s).
UAS_LOG = (
    "rx ts 1795350258 999267 n 48038 r x4x1 1795350258.000000 999983.000000\n"
    "rx ts 1795350258 999267 n 48039 r x4x1 1795350259.000000 \n"
    "rx ts 1795350259 334 n 48040 r x4x1 1795350259.000000 1753.000000\n"
    "rx ts 1795350259 334 n 48040 r x4x1 1795350259.000000 1999.000000\n"  # retransmission
    "rx ts 1795350259 400 n 7 r other 1795350259.000000 2000.000000\n"
    "rx  1795350259.000000 3000.000000\n"  # a body without the pattern
)


def test_uas_log_lines_with_a_receive_time_on_the_second(tmp_path: Path) -> None:
    log = tmp_path / "x4x1.uas.log"
    log.write_text(UAS_LOG)
    lines = list(im_throughput._uas_lines(log, "x4x1"))
    assert [seq for seq, _, _ in lines] == [48038, 48039, 48040, 48040]
    assert lines[1][2] == 1795350259.0
    assert im_throughput._count_tag(log, "x4x1") == 3
    latencies, delivered, _, _ = im_throughput._uas_latencies(log, "x4x1")
    assert delivered == 3 and len(latencies) == 3
    rows = im_legs.uas_times(log, "x4x1")
    assert sorted(rows) == [48038, 48039, 48040]
    assert rows[48039] == (1795350258.999267, 1795350259.0)


def test_sipp_and_xmpp_sender_bodies() -> None:
    sipp = b"ts 2026-11-22\t11:54:00.000000\t1795348440.000000 n 99 r s3x1"
    sender = b"ts 1795348433 0 n 5 r x2x1"
    old_sipp = b"ts 1795348433.000000  n 5 r s1x1"  # <gettimeofday> at microsecond 0
    groups = [xmpp_load.BODY_RE.search(body).groups() for body in (sipp, sender, old_sipp)]  # type: ignore[union-attr]
    assert groups == [
        (b"1795348440.000000", b"", b"99", b"s3x1"),
        (b"1795348433", b"0", b"5", b"x2x1"),
        (b"1795348433.000000", b"", b"5", b"s1x1"),
    ]
