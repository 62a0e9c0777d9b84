"""Pager-mode IM throughput of the gateway, SIP -> XMPP and XMPP -> SIP, through a real Prosody.

What runs (every process on 127.0.0.1, each its own OS process)::

    SIP -> XMPP   SIPp UAC (benchmarks/sipp/pager_uac.xml, -r/-rp/-m)
                    --UDP--> sipxmpp --component--> Prosody --c2s--> receiver (xmpp_load.py)
    XMPP -> SIP   sender (xmpp_load.py) --c2s--> Prosody --component--> sipxmpp
                    --UDP--> SIPp UAS (benchmarks/sipp/pager_uas.xml, answers 200)

The gateway is started from its command line (``sipxmpp run --config <generated toml>``, log
level warning), so its CPU time can be read from ``/proc/<pid>/stat`` before and after each
step. Every message body carries its send time (``ts <s> <us> n <seq> r <tag>``): the XMPP
receiver, or the SIPp UAS with ``<ereg>``/``<gettimeofday>``/``<log>``, computes the latency.

For each direction and each offered rate (default 500, 2,000, 5,000 and 8,000 msg/s for 10 s
each) it prints one table row: offered msg/s, sent, delivered, loss, delivered msg/s (delivered
over first send to last delivery), p50 and p99 latency, gateway CPU µs per message offered, and
Prosody's CPU µs per message for scale. Prosody's Nagle setting is printed beside the tables
(``--prosody-nagle``); the gateway's own sockets always set TCP_NODELAY.

Every load process is bounded in count and in time and stops by itself; the benchmark stops
the gateway and Prosody at the end (also on Ctrl-C).

Profiling the gateway (one step at ~5,000 msg/s each way is enough)::

    SIPXMPP_BENCH_PROFILE=/tmp/gw.prof .venv/bin/python benchmarks/im_throughput.py --rates 5000
    .venv/bin/python -c "import pstats; pstats.Stats('/tmp/gw.prof').sort_stats('tottime').print_stats(25)"

runs the gateway under ``python -m cProfile -o FILE`` (which slows it down about twofold; the
figures of such a run are not the gateway's). ``--py-spy FILE`` instead samples the running
gateway with py-spy (``py-spy`` on PATH or ``--py-spy-bin``), at a far smaller cost.

Usage::

    .venv/bin/python benchmarks/im_throughput.py                 # full run, ~2 minutes
    .venv/bin/python benchmarks/im_throughput.py --quick         # 500 and 5,000 msg/s, 3 s each
    .venv/bin/python benchmarks/im_throughput.py --rates 500,5000 --duration 10 --prosody-nagle off
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import itertools
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))

from support.prosody import (  # noqa: E402  (tests/ is put on the path just above)
    ProsodyComponent,
    ProsodyServer,
    ProsodyUser,
    prosody_available,
)

LOOPBACK = "127.0.0.1"
VHOST = "example.test"
COMPONENT = "sip.example.test"
SECRET = "bench-component-secret"
RECEIVER = ProsodyUser("bob", "bob-bench-pw")  # XMPP user receiving SIP -> XMPP traffic
SENDER = ProsodyUser("carol", "carol-bench-pw")  # XMPP user sending XMPP -> SIP traffic
SIP_SENDER = "alice"  # SIP user (SIPp) writing to bob, and written to by carol

UAC_SCENARIO = HERE / "sipp" / "pager_uac.xml"
UAS_SCENARIO = HERE / "sipp" / "pager_uas.xml"
XMPP_LOAD = HERE / "xmpp_load.py"

DEFAULT_RATES = (500, 2000, 5000, 8000)
QUICK_RATES = (500, 5000)
DEFAULT_DURATION_S = 10.0
QUICK_DURATION_S = 3.0

#: SIPp's default 64 KiB socket buffers drop datagrams from about 5,000 msg/s (test-peers.md).
SIPP_BUFFER = 4194304

#: How long the gateway has to come up (bind, connect the component, handshake).
GATEWAY_START_TIMEOUT_S = 30.0

#: How long a load process has to log in and print READY.
READY_TIMEOUT_S = 20.0

#: After the load of a step ends: deliveries stop counting once none arrived for this long.
#: SIPp retransmits an unanswered MESSAGE after 0.5 s (T1), so 3 s covers a few rounds.
SETTLE_S = 3.0

#: Hard bound of one step beyond its nominal duration (login, settling, slow delivery).
STEP_SLACK_S = 60.0

#: How long tcpdump (``--tcpdump``) has to open the capture; it says so on stderr at once.
TCPDUMP_START_TIMEOUT_S = 10.0

#: Rows kept of the gateway's log in error messages.
LOG_TAIL_LINES = 20

CLK_TCK = os.sysconf("SC_CLK_TCK")


# ----------------------------------------------------------------------------- helpers


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def udp_port_bound(port: int) -> bool:
    """True when some process holds 127.0.0.1:``port``/udp."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
        return False


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process so far (``/proc/<pid>/stat`` fields 14 and 15)."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, stolen) CPU seconds of all processors so far, from the ``cpu`` line of
    ``/proc/stat``: busy is user, nice, system, irq and softirq; stolen is ``steal``, the time
    a virtual machine's CPUs were runnable but the hypervisor ran something else (proc(5))."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    fields += [0] * (8 - len(fields))
    busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6]
    return busy / CLK_TCK, fields[7] / CLK_TCK


def children_cpu_seconds() -> float:
    """User + system CPU of every child process waited for so far (the load generators)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), int(-(-q * len(sorted_values) // 100))))
    return sorted_values[rank - 1]


def stop_process(
    proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, wait: float = 10.0
) -> None:
    """Signal one process we started and wait for it; kill it if it does not exit."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=wait)


def wait_ready(proc: subprocess.Popen[bytes], what: str, timeout: float = READY_TIMEOUT_S) -> None:
    """Wait for the ``READY`` line of a load process."""
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), True)
    deadline = time.monotonic() + timeout
    import selectors

    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(max(0.0, deadline - time.monotonic())):
                continue
            line = proc.stdout.readline()
            if not line:
                break
            if line.strip() == b"READY":
                return
    stop_process(proc)
    raise RuntimeError(f"{what} did not log in (exit {proc.returncode})")


# ------------------------------------------------------------------------ the gateway


class GatewayProcess:
    """``sipxmpp run --config FILE`` as a child process, optionally under cProfile."""

    def __init__(
        self,
        workdir: Path,
        *,
        component_port: int,
        sip_port: int,
        proxy_port: int,
        profile: str | None,
        gc_policy: str = "default",
    ) -> None:
        self.workdir = workdir
        self.sip_port = sip_port
        self.config = workdir / "gateway.toml"
        self.log = workdir / "gateway.log"
        self.config.write_text(
            "\n".join(
                [
                    "# Generated by benchmarks/im_throughput.py for one run.",
                    "[sip]",
                    f'listen_host = "{LOOPBACK}"',
                    f"udp_port = {sip_port}",
                    "tcp_port = 0",
                    f'outbound_proxy = "sip:{LOOPBACK}:{proxy_port};transport=udp"',
                    "",
                    "[xmpp]",
                    f'component_jid = "{COMPONENT}"',
                    f'secret = "{SECRET}"',
                    f'server_host = "{LOOPBACK}"',
                    f"server_port = {component_port}",
                    "reconnect_min = 0.2",
                    "",
                    "[[domains.sip]]",
                    f'sip = "{VHOST}"',
                    f'xmpp = "{COMPONENT}"',
                    "",
                    "[[domains.xmpp]]",
                    f'xmpp = "{VHOST}"',
                    f'sip = "{VHOST}"',
                    "",
                    "[im]",
                    "sip_success_status = 202",
                    "",
                    "[log]",
                    'level = "warning"',
                    'format = "text"',
                    "",
                ]
            ),
            encoding="utf-8",
        )
        python = sys.executable
        if profile:
            cmd = [python, "-m", "cProfile", "-o", profile, "-m", "sipxmpp.gateway"]
        elif gc_policy == "freeze":
            cmd = [python, str(HERE / "gc_policy.py")]
        else:
            script = Path(python).parent / "sipxmpp"
            cmd = [str(script)] if script.exists() else [python, "-m", "sipxmpp.gateway"]
        cmd += ["run", "--config", str(self.config)]
        self._log_file = self.log.open("wb")
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self) -> str:
        lines = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(lines[-LOG_TAIL_LINES:])

    def wait_up(self, timeout: float = GATEWAY_START_TIMEOUT_S) -> None:
        """Send probe MESSAGEs until one is accepted (2xx): then the component link is up."""
        deadline = time.monotonic() + timeout
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((LOOPBACK, 0))
            port = sock.getsockname()[1]
            for n in itertools.count(1):
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"the gateway exited ({self.proc.returncode}):\n{self.log_tail()}"
                    )
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the gateway did not accept a MESSAGE in {timeout} s:\n{self.log_tail()}"
                    )
                body = b"probe"
                request = (
                    f"MESSAGE sip:{RECEIVER.username}@{VHOST} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP {LOOPBACK}:{port};branch=z9hG4bKprobe{n}x{os.getpid()};rport\r\n"
                    f"From: <sip:probe@{VHOST}>;tag=probe{n}\r\n"
                    f"To: <sip:{RECEIVER.username}@{VHOST}>\r\n"
                    f"Call-ID: probe{n}x{os.getpid()}@{LOOPBACK}\r\n"
                    "CSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\nContent-Type: text/plain\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n"
                ).encode() + body
                with contextlib.suppress(ConnectionRefusedError):
                    sock.sendto(request, (LOOPBACK, self.sip_port))
                sock.settimeout(0.3)
                try:
                    while True:
                        data = sock.recv(65536)
                        if data.startswith(b"SIP/2.0 2"):
                            return
                        if data.startswith(b"SIP/2.0 "):
                            break  # 503 while the link is down: try again
                except (TimeoutError, ConnectionRefusedError):
                    pass
                time.sleep(0.2)

    def stop(self) -> None:
        stop_process(self.proc, signal.SIGTERM, wait=30.0)
        self._log_file.close()


# ------------------------------------------------------------------------------ steps


@dataclass(slots=True)
class Row:
    direction: str
    offered: float
    duration: float
    sent: int
    delivered: int
    refused: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    delivered_rate: float | None
    gateway_cpu_us: float | None
    prosody_cpu_us: float | None
    load_cpu_us: float | None
    #: CPUs' worth of work done meanwhile by processes outside the benchmark (other users of
    #: the machine), averaged over the step: the figures are only comparable when it is ~0.
    others_cores: float | None = None
    #: CPUs' worth of time the hypervisor took from this (virtual) machine over the step
    #: (``steal``): every process here stalls meanwhile, so latency percentiles measured
    #: with steal above ~0.05 are the host's, not the gateway's (benchmarks/README.md).
    steal_cores: float | None = None
    note: str = ""

    @property
    def loss(self) -> int:
        return self.sent - self.delivered


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.python = sys.executable
        self.sip_port = free_udp_port()
        self.proxy_port = free_udp_port()
        self.uac_port = free_udp_port()
        self._tags = itertools.count(1)
        self.prosody = ProsodyServer(
            vhost=VHOST,
            components=[ProsodyComponent(COMPONENT, SECRET)],
            users=[RECEIVER, SENDER],
            workdir=workdir / "prosody",
            nagle=None if args.prosody_nagle == "default" else False,
        )
        self.gateway: GatewayProcess | None = None
        self.pyspy: subprocess.Popen[bytes] | None = None
        self.tcpdump: subprocess.Popen[bytes] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self.prosody.start()
        self.gateway = GatewayProcess(
            self.workdir,
            component_port=self.prosody.component_port,
            sip_port=self.sip_port,
            proxy_port=self.proxy_port,
            profile=os.environ.get("SIPXMPP_BENCH_PROFILE") or None,
            gc_policy=self.args.gc_policy,
        )
        self.gateway.wait_up()
        time.sleep(0.5)  # let the probe's bounce (bob is offline) and its notice pass

    def start_pyspy(self) -> None:
        if not self.args.py_spy or self.gateway is None:
            return
        self.pyspy = subprocess.Popen(
            [
                self.args.py_spy_bin,
                "record",
                "--pid",
                str(self.gateway.pid),
                "--rate",
                "200",
                "--format",
                "raw",
                "--output",
                self.args.py_spy,
                "--nonblocking",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(self.workdir / "py-spy.log").open("wb"),
        )

    def start_capture(self) -> None:
        """``--tcpdump FILE``: capture the run's own loopback traffic (the c2s and component
        ports, the gateway's SIP port) for ``benchmarks/im_legs.py``."""
        if not self.args.tcpdump:
            return
        log = self.workdir / "tcpdump.log"
        ports = (
            f"tcp port {self.prosody.c2s_port} or tcp port {self.prosody.component_port}"
            f" or udp port {self.sip_port}"
        )
        self.tcpdump = subprocess.Popen(
            [self.args.tcpdump_bin, "-i", "lo", "-s", "0", "-U", "-w", self.args.tcpdump, ports],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log.open("wb"),
        )
        deadline = time.monotonic() + TCPDUMP_START_TIMEOUT_S
        while b"listening on" not in log.read_bytes():
            if self.tcpdump.poll() is not None or time.monotonic() > deadline:
                stop_process(self.tcpdump)
                raise RuntimeError(f"tcpdump did not start: {log.read_text(errors='replace')}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.tcpdump is not None:
            stop_process(self.tcpdump, signal.SIGINT)  # tcpdump flushes its file on SIGINT
        if self.pyspy is not None:
            stop_process(self.pyspy, signal.SIGINT, wait=30.0)
        if self.gateway is not None:
            self.gateway.stop()
        self.prosody.cleanup()

    def _tag(self, prefix: str) -> str:
        return f"{prefix}{next(self._tags)}x{os.getpid()}"

    def _cpu(self) -> tuple[float, float]:
        assert self.gateway is not None
        return cpu_seconds(self.gateway.pid), cpu_seconds(self.prosody.pid)

    def _load(
        self, mode: str, user: ProsodyUser, tag: str, out: Path, *extra: str
    ) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [
                self.python,
                str(XMPP_LOAD),
                mode,
                "--port",
                str(self.prosody.c2s_port),
                "--domain",
                VHOST,
                "--user",
                user.username,
                "--password",
                user.password,
                "--resource",
                tag,
                "--tag",
                tag,
                "--out",
                str(out),
                *extra,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=(self.workdir / f"{tag}.err").open("wb"),
        )
        wait_ready(proc, f"xmpp_load {mode}")
        return proc

    # -- SIP -> XMPP -------------------------------------------------------------------

    def sip_to_xmpp(self, rate: float, duration: float) -> Row:
        count = max(1, round(rate * duration))
        tag = self._tag("s")
        limit = duration + STEP_SLACK_S
        out = self.workdir / f"{tag}.json"
        receiver = self._load(
            "receive",
            RECEIVER,
            tag,
            out,
            "--count",
            str(count),
            "--idle",
            str(SETTLE_S),
            "--dump",
            str(self.workdir / f"{tag}.latency.txt"),
            "--time-limit",
            str(limit),
        )
        stat = self.workdir / f"{tag}.csv"
        gw0, pr0 = self._cpu()
        ld0 = children_cpu_seconds()
        cpu0, wall0 = machine_cpu_seconds(), time.monotonic()
        sipp = subprocess.run(
            [
                "sipp",
                "-sf",
                str(UAC_SCENARIO),
                "-i",
                LOOPBACK,
                "-p",
                str(self.uac_port),
                "-r",
                f"{rate:g}",
                "-rp",
                "1000",
                "-m",
                str(count),
                "-buff_size",
                str(SIPP_BUFFER),
                "-s",
                RECEIVER.username,
                "-key",
                "from",
                SIP_SENDER,
                "-key",
                "domain",
                VHOST,
                "-key",
                "tag",
                tag,
                "-recv_timeout",
                "10000",
                "-timeout",
                f"{int(limit)}s",
                "-nostdin",
                "-trace_stat",
                "-stf",
                str(stat),
                # Unexpected messages and failed calls, kept with --keep (`refused`).
                "-trace_err",
                "-error_file",
                str(self.workdir / f"{tag}.sipp-errors.log"),
                "-fd",
                "1",
                f"{LOOPBACK}:{self.sip_port}",
            ],
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(self.workdir / f"{tag}.sipp.err").open("wb"),
            timeout=limit + 30,
            check=False,
        )
        try:
            receiver.wait(timeout=limit + 30)
        except subprocess.TimeoutExpired:
            stop_process(receiver)
        gw1, pr1 = self._cpu()
        ld1 = children_cpu_seconds()
        others, steal = _others(cpu0, wall0, (gw1 - gw0) + (pr1 - pr0) + (ld1 - ld0))
        created, ok, failed = _sipp_stats(stat)
        result = json.loads(out.read_text()) if out.exists() else {}
        delivered = int(result.get("received", 0))
        first_tx, last_rx = result.get("first_tx"), result.get("last_rx")
        note = "" if sipp.returncode in (0, 1) else f"sipp exit {sipp.returncode}"
        if created - ok - failed > 0:
            note = (note + f" {created - ok - failed} unanswered").strip()
        return Row(
            direction="sip->xmpp",
            offered=rate,
            duration=duration,
            sent=created,
            delivered=delivered,
            refused=failed,
            p50_ms=result.get("p50_ms"),
            p99_ms=result.get("p99_ms"),
            max_ms=result.get("max_ms"),
            delivered_rate=(delivered / (last_rx - first_tx))
            if first_tx and last_rx and last_rx > first_tx
            else None,
            gateway_cpu_us=(gw1 - gw0) / created * 1e6 if created else None,
            prosody_cpu_us=(pr1 - pr0) / created * 1e6 if created else None,
            load_cpu_us=(ld1 - ld0) / created * 1e6 if created else None,
            others_cores=others,
            steal_cores=steal,
            note=note,
        )

    # -- XMPP -> SIP -------------------------------------------------------------------

    def xmpp_to_sip(self, rate: float, duration: float) -> Row:
        count = max(1, round(rate * duration))
        tag = self._tag("x")
        limit = duration + STEP_SLACK_S
        log = self.workdir / f"{tag}.uas.log"
        uas = subprocess.Popen(
            [
                "sipp",
                "-sf",
                str(UAS_SCENARIO),
                "-i",
                LOOPBACK,
                "-p",
                str(self.proxy_port),
                "-buff_size",
                str(SIPP_BUFFER),
                "-nostdin",
                "-timeout",
                f"{int(limit) + 30}s",
                "-trace_logs",
                "-log_file",
                str(log),
            ],
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(self.workdir / f"{tag}.sipp.err").open("wb"),
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not udp_port_bound(self.proxy_port):
            if uas.poll() is not None or time.monotonic() > deadline:
                stop_process(uas)
                raise RuntimeError(f"SIPp UAS did not bind port {self.proxy_port}")
            time.sleep(0.05)
        out = self.workdir / f"{tag}.json"
        gw0, pr0 = self._cpu()
        ld0 = children_cpu_seconds()
        cpu0, wall0 = machine_cpu_seconds(), time.monotonic()
        sender = self._load(
            "send",
            SENDER,
            tag,
            out,
            "--to",
            f"{SIP_SENDER}@{COMPONENT}",
            "--rate",
            f"{rate:g}",
            "--count",
            str(count),
            "--linger",
            str(SETTLE_S),
            "--time-limit",
            str(limit),
        )
        try:
            sender.wait(timeout=limit + 30)
        except subprocess.TimeoutExpired:
            stop_process(sender)
        result = json.loads(out.read_text()) if out.exists() else {}
        sent = int(result.get("sent", 0))
        # Wait for the UAS log to stop growing (or to hold every message).
        seen, last_size, last_change = 0, -1, time.monotonic()
        end = time.monotonic() + limit
        while time.monotonic() < end:
            size = log.stat().st_size if log.exists() else 0
            if size != last_size:
                last_size, last_change = size, time.monotonic()
                seen = _count_tag(log, tag)
                if seen >= sent:
                    break
            elif time.monotonic() - last_change > SETTLE_S:
                break
            time.sleep(0.2)
        gw1, pr1 = self._cpu()
        stop_process(uas, signal.SIGUSR1)  # SIPp: stop after the calls in progress
        stop_process(uas)
        ld1 = children_cpu_seconds()
        others, steal = _others(cpu0, wall0, (gw1 - gw0) + (pr1 - pr0) + (ld1 - ld0))
        latencies, delivered, first_tx, last_rx = _uas_latencies(log, tag)
        errors = int(result.get("errors", 0))
        return Row(
            direction="xmpp->sip",
            offered=rate,
            duration=duration,
            sent=sent,
            delivered=delivered,
            refused=errors,
            p50_ms=percentile(latencies, 50),
            p99_ms=percentile(latencies, 99),
            max_ms=latencies[-1] if latencies else None,
            delivered_rate=(delivered / (last_rx - first_tx))
            if first_tx and last_rx and last_rx > first_tx
            else None,
            gateway_cpu_us=(gw1 - gw0) / sent * 1e6 if sent else None,
            prosody_cpu_us=(pr1 - pr0) / sent * 1e6 if sent else None,
            load_cpu_us=(ld1 - ld0) / sent * 1e6 if sent else None,
            others_cores=others,
            steal_cores=steal,
            note=f"sender lagged {result.get('max_lag_ms', 0):.0f} ms"
            if result.get("max_lag_ms", 0) > 100
            else "",
        )


def _others(
    cpu0: tuple[float, float], wall0: float, ours: float
) -> tuple[float | None, float | None]:
    """(cores used by everything but the benchmark's processes, cores stolen by the
    hypervisor) since ``cpu0``/``wall0``."""
    wall = time.monotonic() - wall0
    if wall <= 0:
        return None, None
    busy, stolen = machine_cpu_seconds()
    return max(0.0, (busy - cpu0[0] - ours) / wall), (stolen - cpu0[1]) / wall


def _sipp_stats(path: Path) -> tuple[int, int, int]:
    """(calls created, successful, failed) from the last line of a SIPp -trace_stat file."""
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return 0, 0, 0
    if len(lines) < 2:
        return 0, 0, 0
    header = lines[0].split(";")
    last = lines[-1].split(";")
    row = dict(zip(header, last, strict=False))

    def num(key: str) -> int:
        try:
            return int(float(row.get(key, "") or 0))
        except ValueError:
            return 0

    return num("TotalCallCreated"), num("SuccessfulCall(C)"), num("FailedCall(C)")


#: The UAS's log line. SIPp prints a variable holding 0 as nothing, so a MESSAGE received at
#: microsecond 0 ends in "<seconds> " and, stripped, lacks the last field: still a line.
_UAS_LINE = re.compile(
    r"^rx ts ([0-9]+) ([0-9]+) n ([0-9]+) r ([A-Za-z0-9]+) ([0-9.]+)(?: ([0-9.]*))?$"
)


def _uas_lines(path: Path, tag: str) -> Iterator[tuple[int, float, float]]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return
    for line in text.splitlines():
        m = _UAS_LINE.match(line.strip())
        if m is None or m.group(4) != tag:
            continue
        tx = float(m.group(1)) + float(m.group(2) or 0) / 1e6  # SIPp prints 0.0 as ""
        rx = float(m.group(5)) + float(m.group(6) or 0) / 1e6
        yield int(m.group(3)), tx, rx


def _count_tag(path: Path, tag: str) -> int:
    return len({seq for seq, _, _ in _uas_lines(path, tag)})


def _uas_latencies(path: Path, tag: str) -> tuple[list[float], int, float | None, float | None]:
    seen: dict[int, float] = {}
    first_tx: float | None = None
    last_rx: float | None = None
    for seq, tx, rx in _uas_lines(path, tag):
        if seq in seen:
            continue  # a retransmission answered again
        seen[seq] = (rx - tx) * 1000.0
        first_tx = tx if first_tx is None else min(first_tx, tx)
        last_rx = rx if last_rx is None else max(last_rx, rx)
    return sorted(seen.values()), len(seen), first_tx, last_rx


# ----------------------------------------------------------------------------- output


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(title: str, rows: Sequence[Row]) -> None:
    print(f"\n{title}")
    head = (
        f"{'offered/s':>9} {'sent':>7} {'delivered':>9} {'loss':>6} {'refused':>7} "
        f"{'deliv/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'gw CPU µs/msg':>13} "
        f"{'Prosody µs/msg':>14} {'load µs/msg':>11} {'others':>6} {'steal':>5}  note"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r.offered:>9,.0f} {r.sent:>7,} {r.delivered:>9,} {r.loss:>6,} {r.refused:>7,} "
            f"{_fmt(r.delivered_rate, ',.0f'):>8} {_fmt(r.p50_ms, '.2f'):>7} "
            f"{_fmt(r.p99_ms, '.2f'):>7} {_fmt(r.max_ms, '.1f'):>7} "
            f"{_fmt(r.gateway_cpu_us, '.0f'):>13} {_fmt(r.prosody_cpu_us, '.0f'):>14} "
            f"{_fmt(r.load_cpu_us, '.0f'):>11} {_fmt(r.others_cores, '.2f'):>6} "
            f"{_fmt(r.steal_cores, '.2f'):>5}  {r.note}"
        )


def parse_rates(text: str) -> tuple[float, ...]:
    rates = tuple(float(x) for x in text.split(",") if x.strip())
    if not rates or any(r <= 0 for r in rates):
        raise argparse.ArgumentTypeError("rates must be positive numbers, comma-separated")
    return rates


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Pager-mode IM throughput of sipxmpp through a real Prosody (127.0.0.1 only)."
    )
    parser.add_argument(
        "--rates",
        type=parse_rates,
        help="offered msg/s, comma-separated (default 500,2000,5000,8000)",
    )
    parser.add_argument(
        "--duration", type=float, help=f"seconds per step (default {DEFAULT_DURATION_S:g})"
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"rates {QUICK_RATES}, {QUICK_DURATION_S:g} s each"
    )
    parser.add_argument("--direction", choices=("both", "sip-xmpp", "xmpp-sip"), default="both")
    parser.add_argument(
        "--prosody-nagle",
        choices=("default", "off"),
        default="default",
        help="Prosody's Nagle setting: its default (on) or nagle = false",
    )
    parser.add_argument(
        "--gc-policy",
        choices=("default", "freeze"),
        default="default",
        help="run the gateway as shipped, or through benchmarks/gc_policy.py (experiment)",
    )
    parser.add_argument("--no-warmup", action="store_true", help="skip the unreported warm-up step")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (logs)")
    parser.add_argument("--py-spy", help="sample the gateway with py-spy into this raw file")
    parser.add_argument(
        "--tcpdump",
        help="capture the measured steps' loopback traffic into this pcap file (needs tcpdump "
        "and the right to capture; read it with benchmarks/im_legs.py and --keep)",
    )
    parser.add_argument("--tcpdump-bin", default=shutil.which("tcpdump") or "tcpdump")
    parser.add_argument("--py-spy-bin", default=shutil.which("py-spy") or "py-spy")
    args = parser.parse_args(argv)
    rates = args.rates or (QUICK_RATES if args.quick else DEFAULT_RATES)
    duration = args.duration or (QUICK_DURATION_S if args.quick else DEFAULT_DURATION_S)
    if shutil.which("sipp") is None or not prosody_available():
        print("im_throughput: needs sipp (sip-tester) and prosody on PATH", file=sys.stderr)
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="sipxmpp-bench-"))
    bench = Bench(args, workdir)
    rows: dict[str, list[Row]] = {"sip->xmpp": [], "xmpp->sip": []}
    try:
        bench.start()
        if not args.no_warmup:
            if args.direction in ("both", "sip-xmpp"):
                bench.sip_to_xmpp(200, 1.0)
            if args.direction in ("both", "xmpp-sip"):
                bench.xmpp_to_sip(200, 1.0)
        bench.start_capture()
        bench.start_pyspy()
        for rate in rates:
            if args.direction in ("both", "sip-xmpp"):
                row = bench.sip_to_xmpp(rate, duration)
                rows["sip->xmpp"].append(row)
                print(
                    f"  sip->xmpp {rate:g}/s: {row.delivered}/{row.sent} delivered",
                    file=sys.stderr,
                    flush=True,
                )
            if args.direction in ("both", "xmpp-sip"):
                row = bench.xmpp_to_sip(rate, duration)
                rows["xmpp->sip"].append(row)
                print(
                    f"  xmpp->sip {rate:g}/s: {row.delivered}/{row.sent} delivered",
                    file=sys.stderr,
                    flush=True,
                )
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    finally:
        bench.stop()
        if args.keep:
            print(f"working directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    nagle = "on (Prosody default)" if args.prosody_nagle == "default" else "off (nagle = false)"
    print(
        f"\nsipxmpp pager-mode IM throughput, {duration:g} s per step, Prosody Nagle {nagle}; "
        f"gateway sockets TCP_NODELAY; gateway GC {args.gc_policy}; {os.cpu_count()} CPUs"
    )
    if os.environ.get("SIPXMPP_BENCH_PROFILE"):
        print("(gateway under cProfile: the figures are not representative)")
    if rows["sip->xmpp"]:
        print_table(
            "SIP -> XMPP: SIPp UAC -> sipxmpp -> Prosody -> XMPP receiver", rows["sip->xmpp"]
        )
    if rows["xmpp->sip"]:
        print_table(
            "XMPP -> SIP: XMPP sender -> Prosody -> sipxmpp -> SIPp UAS (200)", rows["xmpp->sip"]
        )
    print(
        "\nloss = sent - delivered; refused = answered with an error; deliv/s = delivered over "
        "first send .. last delivery; CPU per message offered; load = SIPp and the XMPP load "
        "process; others = CPUs busy with processes outside the benchmark meanwhile; steal = "
        "CPUs taken by the hypervisor meanwhile (latency figures with steal above ~0.05 are "
        "the host's)."
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps({k: [asdict(r) for r in v] for k, v in rows.items()}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
