"""Session-mode IM throughput and latency: MSRP -> gateway -> Prosody -> XMPP client.

What runs (every process on 127.0.0.1, each its own OS process)::

    load processes (--procs, raw SIP over UDP + raw MSRP over TCP, hand-written bytes)
        --INVITE/MSRP SEND--> sipxmpp (its own process) --component--> Prosody --c2s-->
        receiver (benchmarks/xmpp_load.py receive: a raw c2s client, no XML library)

Each load process opens its share of ``--sessions`` chat sessions (INVITE, 200, ACK, TCP
connect to the gateway's ``a=path``, the first SEND binds), then sends SENDs spread evenly
over its sessions at its share of the offered rate, for ``--duration`` seconds. Every body
carries its send time, a sequence number and the step's tag in the shape the lean receiver
reads (``ts <s> <us> n <seq> r <tag>``); the receiver computes the latency (all processes
share the host's clock).

One row per offered rate: offered msg/s, sent, delivered, loss, delivered msg/s (delivered
over first send to last delivery), p50 and p99 latency, then the CPU time per delivered
message of the gateway, of Prosody, of the load processes and of the receiver (from
``/proc/<pid>/stat`` and the processes' own ``process_time``), and ``others``: how many CPUs
processes outside the benchmark kept busy meanwhile (figures from a shared machine are only
comparable when it is near 0). Prosody runs with Nagle's algorithm off. A rate whose
delivered msg/s stays clearly below the offered one is saturated; the CPU columns say by
whom (a load process near a whole CPU per step would be the benchmark's own limit).

``--py-spy FILE`` samples the gateway with py-spy during the steps (``py-spy`` on PATH or
``--py-spy-bin``); ``benchmarks/pyspy_top.py FILE`` summarises it.

Every load process is bounded (count and time) and stops by itself; Prosody, the receiver
and the gateway are stopped at the end.

Usage::

    .venv/bin/python benchmarks/msrp_chat.py                      # 3000, 2000, 1000 msg/s, 5 s each
    .venv/bin/python benchmarks/msrp_chat.py --rates 1000 --duration 10 --sessions 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
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
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "src"))

from im_throughput import machine_cpu_seconds  # noqa: E402

from support.prosody import ProsodyComponent, ProsodyServer, ProsodyUser  # noqa: E402

COMPONENT = "sip.example.test"
SECRET = "bench-secret"
#: Upper bound on messages one load process sends in one step, whatever the rate says, so a
#: mistyped rate cannot run away (20,000 msg/s for 60 s).
MAX_MESSAGES_PER_PROCESS = 1_200_000
#: Longest step, seconds.
MAX_DURATION = 60.0
#: Seconds the receiver waits for stragglers after the last delivery before it reports.
DRAIN_TIME = 3.0
#: Seconds a load process may take to set up its sessions (INVITE round trips on loopback).
SETUP_TIMEOUT = 60.0
#: Pause between two sending rounds of a load process: at 1,500 msg/s per process a round
#: carries three messages; each goes to its own session's connection (one write each, as
#: separate chat users would send), so the gateway reads them one by one as in real traffic.
SEND_TICK = 0.002
#: CPU clock ticks per second, for /proc/<pid>/stat.
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process so far (``/proc/<pid>/stat`` fields 14 and 15)."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _gateway_main(component_port: int, sip_port: int, ready: Any, stop: Any) -> None:
    from sipxmpp.gateway.runtime.app import Gateway
    from sipxmpp.gateway.settings import Settings

    settings = Settings.model_validate(
        {
            "sip": {"listen_host": "127.0.0.1", "udp_port": sip_port, "tcp_port": None},
            "xmpp": {
                "component_jid": COMPONENT,
                "secret": SECRET,
                "server_host": "127.0.0.1",
                "server_port": component_port,
                "reconnect_min": 0.2,
            },
            "domains": {
                "sip": [{"sip": "example.test", "xmpp": COMPONENT}],
                "xmpp": [{"xmpp": "example.test", "sip": "example.test"}],
            },
            "chat": {"enabled": True, "max_sessions": 1000, "max_sessions_per_peer": 1000},
            "presence": {"enabled": False},
            "log": {"level": "warning"},
        }
    )

    async def run() -> None:
        async with Gateway(settings) as gw:
            await gw.xmpp.wait_up(20.0)
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.2)

    asyncio.run(run())


def _load_main(
    proc: int,
    sessions: int,
    sip_port: int,
    rate: float,
    duration: float,
    tag: str,
    go: Any,
    out: Any,
) -> None:
    asyncio.run(_load(proc, sessions, sip_port, rate, duration, tag, go, out))


class _Udp(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queue.put_nowait(data)


class _Sink(asyncio.Protocol):
    """The MSRP connection of one session: reads and discards what the gateway sends."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        pass


async def _open_session(
    udp: Any, proto: _Udp, sip_port: int, local_port: int, tag: str
) -> tuple[asyncio.Transport, str, str]:
    ours = f"msrp://127.0.0.1:9/{tag};tcp"
    sdp = (
        "v=0\r\no=- 1 0 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=message 9 TCP/MSRP *\r\na=accept-types:text/plain\r\na=path:{ours}\r\n"
        "a=setup:active\r\n"
    ).encode()
    head = (
        f"INVITE sip:bob@example.test SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bK{tag};rport\r\n"
        f"From: <sip:alice{tag}@example.test>;tag={tag}\r\nTo: <sip:bob@example.test>\r\n"
        f"Call-ID: {tag}@bench\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
        f"Contact: <sip:alice@127.0.0.1:{local_port}>\r\nContent-Type: application/sdp\r\n"
        f"Content-Length: {len(sdp)}\r\n\r\n"
    )
    udp.sendto(head.encode() + sdp, ("127.0.0.1", sip_port))
    while True:
        resp = await asyncio.wait_for(proto.queue.get(), 10)
        if resp.startswith(b"SIP/2.0 2") and f"{tag}@bench".encode() in resp:
            break
        if resp.startswith(b"SIP/2.0 ") and int(resp[8:11]) >= 300:
            raise RuntimeError(resp[:60])
    to = re.search(rb"^To:\s*(.*?)\r$", resp, re.M | re.I)
    contact = re.search(rb"^Contact:\s*<([^>]*)>", resp, re.M | re.I)
    path = re.search(rb"^a=path:(\S+)", resp, re.M)
    assert to and contact and path
    ack = (
        f"ACK {contact.group(1).decode()} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bK{tag}a;rport\r\n"
        f"From: <sip:alice{tag}@example.test>;tag={tag}\r\nTo: {to.group(1).decode()}\r\n"
        f"Call-ID: {tag}@bench\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    udp.sendto(ack.encode(), ("127.0.0.1", sip_port))
    theirs = path.group(1).decode()
    m = re.match(r"msrp://([^:/]+):(\d+)/", theirs)
    assert m
    transport, _ = await asyncio.get_running_loop().create_connection(
        _Sink, m.group(1), int(m.group(2))
    )
    assert isinstance(transport, asyncio.Transport)
    return transport, ours, theirs


async def _load(
    proc: int,
    sessions: int,
    sip_port: int,
    rate: float,
    duration: float,
    tag: str,
    go: Any,
    out: Any,
) -> None:
    loop = asyncio.get_running_loop()
    proto = _Udp()
    udp, _ = await loop.create_datagram_endpoint(lambda: proto, local_addr=("127.0.0.1", 0))
    local_port = udp.get_extra_info("sockname")[1]
    conns: list[tuple[asyncio.Transport, bytes, bytes]] = []
    for i in range(sessions):
        transport, ours, theirs = await _open_session(
            udp, proto, sip_port, local_port, f"p{proc}s{i}{tag}"
        )
        # Everything of a SEND but the per-message values, prepared once per session.
        head = f"To-Path: {theirs}\r\nFrom-Path: {ours}\r\nMessage-ID: m".encode()
        conns.append((transport, b"MSRP t", head))
    out.put(("ready", proc))
    await loop.run_in_executor(None, go.wait)
    cpu0 = time.process_time()
    sent = 0
    base = proc * 100_000_000  # sequence numbers unique across the load processes
    start = time.monotonic()
    limit = min(
        MAX_MESSAGES_PER_PROCESS, int(rate * duration) if rate > 0 else MAX_MESSAGES_PER_PROCESS
    )
    tag_bytes = tag.encode()
    n = len(conns)
    while sent < limit and time.monotonic() - start < duration:
        due = min(int((time.monotonic() - start) * rate) + 1, limit) - sent
        if due > 0:
            wall = time.time()
            secs = int(wall)
            usecs = int((wall - secs) * 1_000_000)
            for _ in range(due):
                transport, start_line, head = conns[sent % n]
                seq = base + sent
                text = b"ts %d %d n %d r %s" % (secs, usecs, seq, tag_bytes)
                tid = b"%09d" % seq
                transport.write(
                    b"%s%s SEND\r\n%s%s\r\nFailure-Report: no\r\nByte-Range: 1-%d/%d\r\n"
                    b"Content-Type: text/plain\r\n\r\n%s\r\n-------t%s$\r\n"
                    % (start_line, tid, head, tid, len(text), len(text), text, tid)
                )
                sent += 1
        await asyncio.sleep(SEND_TICK)
    cpu = time.process_time() - cpu0
    out.put(("sent", proc, sent, cpu))
    await asyncio.sleep(DRAIN_TIME)
    for transport, _, _ in conns:
        transport.close()
    udp.close()


def _start_receiver(prosody: ProsodyServer, tag: str, expect: int, result: Path) -> Any:
    proc = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "benchmarks" / "xmpp_load.py"),
            "receive",
            "--port",
            str(prosody.c2s_port),
            "--domain",
            "example.test",
            "--user",
            "bob",
            "--password",
            "bob-pw",
            "--tag",
            tag,
            "--count",
            str(max(1, expect)),
            "--idle",
            str(DRAIN_TIME),
            "--time-limit",
            str(MAX_DURATION + SETUP_TIMEOUT + 4 * DRAIN_TIME),
            "--out",
            str(result),
        ],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != b"READY":
        proc.kill()
        raise RuntimeError(f"receiver did not log in: {line!r}")
    return proc


def _step(
    prosody: ProsodyServer, gw_pid: int | None, sip_port: int, args: Any, rate: float, n: int
) -> dict[str, Any]:
    tag = f"r{n}x{int(time.time())}"
    workdir = Path(tempfile.mkdtemp(prefix="msrp-bench-"))
    result = workdir / "receiver.json"
    expect = int(rate * args.duration)
    receiver = _start_receiver(prosody, tag, expect, result)
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    go = ctx.Event()
    per = args.sessions // args.procs
    procs = [
        ctx.Process(
            target=_load_main,
            args=(p, per, sip_port, rate / args.procs, args.duration, tag, go, out),
        )
        for p in range(args.procs)
    ]
    try:
        for p in procs:
            p.start()
        ready = 0
        while ready < args.procs:
            item = out.get(timeout=SETUP_TIMEOUT)
            if item[0] == "ready":
                ready += 1
        cpu_gw0, cpu_pr0 = cpu_seconds(gw_pid), cpu_seconds(prosody.pid)
        busy0, wall0 = machine_cpu_seconds()[0], time.monotonic()
        go.set()
        sent = 0
        load_cpu = 0.0
        done = 0
        while done < args.procs:
            item = out.get(timeout=args.duration + SETUP_TIMEOUT)
            if item[0] == "sent":
                sent += item[2]
                load_cpu += item[3]
                done += 1
        # The receiver's CPU: what waiting for it adds to the children's rusage (the load
        # processes are joined only later, so they are not counted here).
        children0 = _children_cpu()
        receiver.wait(timeout=MAX_DURATION + SETUP_TIMEOUT + 4 * DRAIN_TIME)
        cpu_rx = _children_cpu() - children0
        cpu_gw, cpu_pr = cpu_seconds(gw_pid) - cpu_gw0, cpu_seconds(prosody.pid) - cpu_pr0
        busy, wall = machine_cpu_seconds()[0] - busy0, time.monotonic() - wall0
    finally:
        for p in procs:
            p.join(DRAIN_TIME + 5)
            if p.is_alive():
                p.kill()
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()
    rx = json.loads(result.read_text()) if result.exists() else {}
    shutil.rmtree(workdir, ignore_errors=True)
    delivered = int(rx.get("received", 0))
    span = (rx.get("last_rx") or 0.0) - (rx.get("first_tx") or 0.0)
    per_msg = 1e6 / delivered if delivered else float("nan")
    ours = cpu_gw + cpu_pr + cpu_rx + load_cpu
    return {
        "offered": f"{rate:.0f}",
        "sent": sent,
        "delivered": delivered,
        "loss": sent - delivered,
        "rate": delivered / span if span > 0 else 0.0,
        "p50_ms": rx.get("p50_ms") or float("nan"),
        "p99_ms": rx.get("p99_ms") or float("nan"),
        "gw_us": cpu_gw * per_msg,
        "prosody_us": cpu_pr * per_msg,
        "load_us": load_cpu * per_msg,
        "rx_us": cpu_rx * per_msg,
        "others": max(0.0, busy - ours) / wall if wall > 0 else 0.0,
    }


def _start_pyspy(args: Any, pid: int) -> Any:
    return subprocess.Popen(
        [
            args.py_spy_bin,
            "record",
            "--pid",
            str(pid),
            "--rate",
            "200",
            "--format",
            "raw",
            "--output",
            args.py_spy,
            "--nonblocking",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rates", default="3000,2000,1000", help="comma list of msg/s")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--py-spy", help="sample the gateway with py-spy into this raw file")
    parser.add_argument("--py-spy-bin", default=shutil.which("py-spy") or "py-spy")
    args = parser.parse_args(argv)
    args.duration = min(args.duration, MAX_DURATION)
    rates = [float(r) for r in args.rates.split(",")]
    if any(r <= 0 for r in rates) or args.procs < 1 or args.sessions < args.procs:
        parser.error("rates must be positive and --sessions at least --procs")
    ctx = mp.get_context("spawn")
    with ProsodyServer(
        components=[ProsodyComponent(COMPONENT, SECRET)],
        users=[ProsodyUser("bob", "bob-pw")],
        nagle=False,
        extra_global_config='limits = { c2s = { rate = "100mb/s" }; s2sin = { rate = "100mb/s" } }',
    ) as prosody:
        sip_port = _free_udp_port()
        ready, stop = ctx.Event(), ctx.Event()
        gw = ctx.Process(target=_gateway_main, args=(prosody.component_port, sip_port, ready, stop))
        gw.start()
        spy = None
        try:
            if not ready.wait(30):
                print("gateway did not come up", file=sys.stderr)
                return 1
            if args.py_spy and gw.pid is not None:
                spy = _start_pyspy(args, gw.pid)
            print(
                f"{args.sessions} chat sessions, {args.procs} load processes, "
                f"{args.duration:.0f} s per step, Prosody nagle off; CPU in µs per message"
            )
            print(
                f"{'offered':>8} {'sent':>8} {'deliv':>8} {'loss':>6} {'msg/s':>8} "
                f"{'p50 ms':>8} {'p99 ms':>8} {'gw':>6} {'prosody':>7} {'load':>6} "
                f"{'rx':>6} {'others':>6}"
            )
            for n, rate in enumerate(rates):
                row = _step(prosody, gw.pid, sip_port, args, rate, n)
                print(
                    f"{row['offered']:>8} {row['sent']:>8} {row['delivered']:>8} "
                    f"{row['loss']:>6} {row['rate']:>8.0f} {row['p50_ms']:>8.1f} "
                    f"{row['p99_ms']:>8.1f} {row['gw_us']:>6.0f} {row['prosody_us']:>7.0f} "
                    f"{row['load_us']:>6.0f} {row['rx_us']:>6.0f} {row['others']:>6.2f}",
                    flush=True,
                )
        finally:
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                try:
                    spy.wait(30)
                except subprocess.TimeoutExpired:
                    spy.kill()
            stop.set()
            gw.join(10)
            if gw.is_alive():
                gw.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
