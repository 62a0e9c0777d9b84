"""The SIPp wrapper against real SIPp: a UAC and a UAS (both SIPp) with our MESSAGE scenarios."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from support.sipp import EXAMPLES_DIR, Sipp, Transport, sipp_available

pytestmark = [
    pytest.mark.sipp,
    pytest.mark.skipif(not sipp_available(), reason="sipp is not installed (sip-tester)"),
]

HERE = Path(__file__).resolve().parent
KEYS = {"from": "alice", "domain": "example.test", "text": "hello wörld"}

#: Generous bound for one SIPp run of a handful of calls (they take tens of milliseconds).
RUN_TIMEOUT_S = 15.0


@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_uac_to_uas_five_messages(tmp_path: Path, transport: Transport) -> None:
    with Sipp.uas(
        EXAMPLES_DIR / "message_uas.xml", calls=5, transport=transport, workdir=tmp_path
    ) as uas:
        with Sipp.uac(
            EXAMPLES_DIR / "message_uac.xml",
            uas.address,
            calls=5,
            rate=100,
            service="bob",
            keys=KEYS,
            transport=transport,
            workdir=tmp_path,
        ) as uac:
            result = uac.wait(RUN_TIMEOUT_S)
            assert result.ok, result.describe()
            assert (result.successful, result.failed, result.created) == (5, 0, 5)
            sent = uac.messages("MESSAGE", "sent")
            assert len(sent) == 5
            assert [m.status for m in uac.messages(200)] == [200] * 5
        server = uas.wait(RUN_TIMEOUT_S)
        assert server.ok, server.describe()
        assert server.successful == 5 and server.failed == 0
        received = uas.messages("MESSAGE")
        assert [m.body for m in received] == [f"hello wörld #{n}\r\n".encode() for n in range(1, 6)]
        first = received[0]
        assert first.start_line == "MESSAGE sip:bob@example.test SIP/2.0"
        assert first.header("From", "").startswith("<sip:alice@example.test>;tag=")
        assert first.header("Content-Type") == "text/plain;charset=UTF-8"
        assert first.transport == ("UDP" if transport == "u1" else "TCP")
        assert [m.status for m in uas.messages("response", "sent")] == [200] * 5
        assert server.stats["SuccessfulCall(C)"] == "5"


def test_rejecting_uas_makes_the_uac_fail(tmp_path: Path) -> None:
    with Sipp.uas(EXAMPLES_DIR / "message_uas_reject.xml", calls=2, workdir=tmp_path) as uas:
        uac = Sipp.uac(
            EXAMPLES_DIR / "message_uac.xml",
            uas.address,
            calls=2,
            rate=100,
            service="bob",
            keys=KEYS,
            workdir=tmp_path,
        )
        with uac:
            result = uac.wait(RUN_TIMEOUT_S)
            assert result.returncode == 1, result.describe()
            assert result.meaning == "at least one call failed"
            assert (result.successful, result.failed) == (0, 2)
            assert [m.status for m in uac.messages(486)] == [486, 486]
            assert "486" in result.errors  # -trace_err logs the unexpected responses
        assert uas.wait(RUN_TIMEOUT_S).successful == 2


def test_wait_timeout_stops_sipp(tmp_path: Path) -> None:
    uas = Sipp.uas(EXAMPLES_DIR / "message_uas.xml", calls=1, workdir=tmp_path).start()
    try:
        pid = uas.pid
        assert pid is not None and uas.running
        result = uas.wait(0.3)
        assert result.timed_out and not result.ok
        assert not uas.running
        assert result.successful == 0 and result.created == 0
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        assert uas.stop() is result  # idempotent
    finally:
        uas.cleanup()


def test_own_workdir_removed_on_exit() -> None:
    with Sipp.uas(EXAMPLES_DIR / "message_uas.xml", calls=1) as uas:
        workdir = uas.workdir
        assert workdir.is_dir()
    assert not workdir.exists()
    assert uas.result is not None and uas.result.timed_out is False


def test_response_times_from_rtt_and_stat_files(tmp_path: Path) -> None:
    with Sipp.uas(EXAMPLES_DIR / "message_uas.xml", calls=5, workdir=tmp_path) as uas:
        with Sipp.uac(
            HERE / "message_uac_rtd.xml",
            uas.address,
            calls=5,
            rate=100,
            service="bob",
            keys=KEYS,
            trace_rtt=True,
            workdir=tmp_path,
        ) as uac:
            result = uac.wait(RUN_TIMEOUT_S)
            assert result.ok, result.describe()
            samples = uac.rtt_samples()
            assert len(samples) == 5 and {s.rtd for s in samples} == {"1"}
            stats = uac.response_times("1")
            assert stats is not None and stats.count == 5
            assert 0.0 <= stats.min_ms <= stats.p50_ms <= stats.p99_ms <= stats.max_ms < 1000.0
            assert sum(result.repartition("1").values()) == 5
            assert set(result.repartition("1")) >= {"<1", "<100", ">=100"}
            average = result.response_time_avg_ms("1")
            assert average is not None and 0.0 <= average < 1000.0
        uas.wait(RUN_TIMEOUT_S)
