"""Session-mode IM throughput and latency: MSRP -> gateway -> Prosody -> XMPP client.

What runs (every process on 127.0.0.1, each its own OS process)::

    load processes (--procs, raw SIP over UDP + raw MSRP over TCP, hand-written bytes)
        --INVITE/MSRP SEND--> sipxmpp (its own process) --component--> Prosody --c2s--> receiver

The receiver (this process, one slixmpp client for the XMPP user) reads the send time each
message body carries (``ts <unix time> <seq>``) and computes the latency; all processes share
the host's clock. Each load process opens its share of ``--sessions`` chat sessions (INVITE,
200, ACK, TCP connect to the gateway's ``a=path``, first SEND binds), then sends SENDs spread
evenly over its sessions at its share of the offered rate, for ``--duration`` seconds.

One row per offered rate: offered msg/s, sent, delivered, loss, delivered msg/s (delivered
over first send to last delivery), p50 and p99 latency. ``max`` as a rate means "as fast as
the load processes can write, paced by the gateway's reading".

Every load process is bounded (count and time) and stops by itself; Prosody and the gateway
are stopped at the end.

Usage::

    .venv/bin/python benchmarks/msrp_chat.py                       # rates max and 1000, 5 s each
    .venv/bin/python benchmarks/msrp_chat.py --rates 1000 --duration 10 --sessions 100
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import re
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "src"))

from support.prosody import ProsodyComponent, ProsodyServer, ProsodyUser  # noqa: E402
from support.xmpp_client import XmppTestClient  # noqa: E402

COMPONENT = "sip.example.test"
SECRET = "bench-secret"
#: Upper bound on messages one load process sends in one step, whatever the rate says, so a
#: mistyped rate cannot run away (20,000 msg/s for 60 s).
MAX_MESSAGES_PER_PROCESS = 1_200_000
#: Longest step, seconds.
MAX_DURATION = 60.0
#: Seconds the receiver waits for stragglers after the last send.
DRAIN_TIME = 3.0


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _gateway_main(component_port: int, sip_port: int, ready: Any, stop: Any) -> None:
    from sipxmpp.gateway.runtime.app import Gateway
    from sipxmpp.gateway.settings import Settings

    settings = Settings.model_validate(
        {
            "sip": {"listen_host": "127.0.0.1", "udp_port": sip_port},
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
    proc: int, sessions: int, sip_port: int, rate: float, duration: float, out: Any
) -> None:
    asyncio.run(_load(proc, sessions, sip_port, rate, duration, out))


class _Udp(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queue.put_nowait(data)


async def _open_session(
    udp: Any, proto: _Udp, sip_port: int, local_port: int, tag: str
) -> tuple[asyncio.StreamWriter, str, str]:
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
    reader, writer = await asyncio.open_connection(m.group(1), int(m.group(2)))
    asyncio.get_running_loop().create_task(_drain(reader))
    return writer, ours, theirs


async def _drain(reader: asyncio.StreamReader) -> None:
    while await reader.read(65536):
        pass


async def _load(
    proc: int, sessions: int, sip_port: int, rate: float, duration: float, out: Any
) -> None:
    loop = asyncio.get_running_loop()
    proto = _Udp()
    udp, _ = await loop.create_datagram_endpoint(lambda: proto, local_addr=("127.0.0.1", 0))
    local_port = udp.get_extra_info("sockname")[1]
    conns = []
    for i in range(sessions):
        conns.append(
            await _open_session(udp, proto, sip_port, local_port, f"p{proc}s{i}r{int(time.time())}")
        )
    out.put(("ready", proc))
    sent = 0
    start = time.monotonic()
    limit = min(
        MAX_MESSAGES_PER_PROCESS, int(rate * duration) if rate > 0 else MAX_MESSAGES_PER_PROCESS
    )
    seq = 0
    while sent < limit and time.monotonic() - start < duration:
        if rate > 0:
            due = int((time.monotonic() - start) * rate) + 1 - sent
        else:
            due = len(conns)
        for _ in range(max(0, min(due, limit - sent))):
            writer, ours, theirs = conns[seq % len(conns)]
            seq += 1
            text = f"ts {time.time():.6f} {proc}.{seq}".encode()
            tid = f"t{proc}x{seq:09d}"
            writer.write(
                (
                    f"MSRP {tid} SEND\r\nTo-Path: {theirs}\r\nFrom-Path: {ours}\r\n"
                    f"Message-ID: m{proc}x{seq:09d}\r\nFailure-Report: no\r\n"
                    f"Byte-Range: 1-{len(text)}/{len(text)}\r\nContent-Type: text/plain\r\n\r\n"
                ).encode()
                + text
                + f"\r\n-------{tid}$\r\n".encode()
            )
            sent += 1
        if rate > 0:
            await asyncio.sleep(0.002)
        else:
            await asyncio.gather(*(w.drain() for w, _, _ in conns))
    await asyncio.gather(*(w.drain() for w, _, _ in conns))
    out.put(("sent", proc, sent))
    await asyncio.sleep(DRAIN_TIME)
    for w, _, _ in conns:
        w.close()
    udp.close()


async def _step(prosody: ProsodyServer, sip_port: int, args: Any, rate: float) -> dict[str, Any]:
    latencies: list[float] = []
    first_send = [float("inf")]
    last_seen = [0.0]
    async with XmppTestClient(
        "bob@example.test/bench", "bob-pw", "127.0.0.1", prosody.c2s_port
    ) as bob:
        await bob.disco_info("example.test")

        async def receive() -> None:
            while True:
                msg = await bob.messages.get()
                body = msg["body"] or ""
                if body.startswith("ts "):
                    now = time.time()
                    ts = float(body.split()[1])
                    first_send[0] = min(first_send[0], ts)
                    last_seen[0] = now
                    latencies.append(now - ts)

        task = asyncio.get_running_loop().create_task(receive())
        ctx = mp.get_context("spawn")
        out = ctx.Queue()
        per = args.sessions // args.procs
        procs = [
            ctx.Process(
                target=_load_main,
                args=(p, per, sip_port, rate / args.procs if rate > 0 else 0, args.duration, out),
            )
            for p in range(args.procs)
        ]
        for p in procs:
            p.start()
        sent = 0
        done = 0
        while done < args.procs:
            item = await asyncio.get_running_loop().run_in_executor(None, out.get)
            if item[0] == "sent":
                sent += item[2]
                done += 1
        await asyncio.sleep(DRAIN_TIME)
        for p in procs:
            p.join(DRAIN_TIME + 5)
            if p.is_alive():
                p.kill()
        task.cancel()
    n = len(latencies)
    lat = sorted(latencies)
    span = last_seen[0] - first_send[0] if n else 0.0
    return {
        "offered": "max" if rate <= 0 else f"{rate:.0f}",
        "sent": sent,
        "delivered": n,
        "loss": sent - n,
        "rate": n / span if span > 0 else 0.0,
        "p50_ms": 1000 * statistics.median(lat) if n else float("nan"),
        "p99_ms": 1000 * lat[min(n - 1, int(0.99 * n))] if n else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rates", default="max,1000", help="comma list of msg/s, or 'max'")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--procs", type=int, default=2)
    args = parser.parse_args(argv)
    args.duration = min(args.duration, MAX_DURATION)
    rates = [0.0 if r.strip() == "max" else float(r) for r in args.rates.split(",")]
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
        try:
            if not ready.wait(30):
                print("gateway did not come up", file=sys.stderr)
                return 1
            print(
                f"{args.sessions} chat sessions, {args.procs} load processes, {args.duration:.0f} s per step"
            )
            print(
                f"{'offered':>8} {'sent':>8} {'deliv':>8} {'loss':>6} {'msg/s':>8} {'p50 ms':>8} {'p99 ms':>8}"
            )
            for rate in rates:
                row = asyncio.run(_step(prosody, sip_port, args, rate))
                print(
                    f"{row['offered']:>8} {row['sent']:>8} {row['delivered']:>8} {row['loss']:>6} "
                    f"{row['rate']:>8.0f} {row['p50_ms']:>8.1f} {row['p99_ms']:>8.1f}"
                )
        finally:
            stop.set()
            gw.join(10)
            if gw.is_alive():
                gw.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
