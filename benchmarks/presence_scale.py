"""Presence at scale: subscriptions held and refreshed, RSS per subscription, NOTIFY fan-out.

What runs (each its own OS process, everything on 127.0.0.1)::

    xmpp partition  (this file, role "xmpp")  --XEP-0114-->  sipxmpp (sipxmpp run --config)
    sip partition   (this file, role "sip")   <---UDP--->    sipxmpp

* The **XMPP partition** is a minimal XEP-0114 server (stream, handshake, XEP-0199 pings
  answered) standing in for the XMPP server's side of the component link. It plays the XMPP
  users: ``xK@example.test`` subscribe to the SIP contacts ``cK@sip.example.test`` (X2S),
  ``uJ@example.test`` and ``star@example.test`` answer the gateway's ``subscribe`` with
  ``subscribed`` followed by their presence and answer probes, and ``star`` changes its
  show/status, each change written as one stanza per watcher JID, exactly as an XMPP server
  fans presence out to each contact (RFC 6121 §4.4.2). No real XMPP server is used: 50,000
  XMPP accounts with roster pushes would measure the server's roster storage, not the gateway.
* The **SIP partition** plays the presence server the gateway subscribes at (its
  ``sip.outbound_proxy``: 200 + an immediate NOTIFY with a PIDF for every SUBSCRIBE, RFC 6665
  §4.2.1.2, new or refresh) and the SIP watchers (``wJ@example.test`` -> ``uJ``, and 1,000
  ``fI@example.test`` -> ``star``): SUBSCRIBE, 200 to every NOTIFY, refresh in the dialog.
  Requests are retransmitted as RFC 3261 §17.1.2.2 says (T1 doubling up to T2), responses to
  retransmitted requests are resent from a cache.

Phases, each bounded in time:

1. baseline: the gateway started, link up, idle; VmRSS read from ``/proc/<pid>/status``;
2. establish: ``--subs`` X2S (XMPP -> SIP) and ``--subs`` S2X (SIP -> XMPP) subscriptions,
   concurrently, at most ``--rate`` per second and ``--window`` unanswered at once in each
   direction (closed loop: the load follows the gateway's pace, so the figure is its
   capacity, not a retransmission storm of an overloaded gateway); established = the XMPP
   user got ``subscribed`` and the contact's presence (X2S), the SIP watcher got an
   ``active`` NOTIFY with a PIDF (S2X);
3. held: after ``--settle`` seconds without new work (completed transactions linger for Timer
   J/K, 64*T1 = 32 s), VmRSS again: (held - baseline) / subscriptions is the RSS figure;
4. refresh: every S2X watcher refreshes in its dialog (``--rate``/s); the gateway refreshes its
   X2S subscriptions by itself at 90% of ``--x2s-expires``; done when every one of them was
   refreshed (S2X: a 2xx and then a NOTIFY; X2S: the presence server answered an in-dialog
   SUBSCRIBE of the gateway);
5. fan-out: 1,000 SIP watchers of ``star`` (``--watchers``), while everything above is held;
   ``star`` changes ``--changes`` times per second for ``--duration`` s; the watchers count
   the NOTIFYs with a PIDF; the figure is NOTIFYs per second over the window. The gateway
   sends at most one NOTIFY per watcher every ``--min-notify-interval`` s (RFC 3856 §6.10,
   ``presence.min_notify_interval``): changes in between are merged; the watchers take the
   kernel's receive time of each NOTIFY (SO_TIMESTAMPNS) and report the smallest gap and the
   most NOTIFYs to one watcher within a second.

Targets (issue 3): 50,000 + 50,000 subscriptions held and refreshed, RSS under 2 KiB per
subscription, at least 5,000 NOTIFY/s to 1,000 watchers of one presentity. Note that RFC 3856
§6.10's *suggested* 5 s interval caps 1,000 watchers at 200 NOTIFY/s; 5,000/s needs an
interval of at most 0.2 s. At exactly 0.2 s, 5,000/s is also the ceiling the rate limit itself
sets (each watcher gets at most one NOTIFY per interval, never two closer than that), so a
figure could only approach the target, never show the gateway's capacity. The default here
is therefore 0.1 s (ceiling 10,000/s, printed beside the figure), where with 10 changes/s
nearly every stanza becomes a NOTIFY; the figure is then the gateway's own rate.

Usage::

    .venv/bin/python benchmarks/presence_scale.py                  # the issue's figures, ~12 min
    .venv/bin/python benchmarks/presence_scale.py --quick          # 2,000 + 2,000, 200 watchers
    .venv/bin/python benchmarks/presence_scale.py --quick --profile /tmp/gw   # cProfile per phase
    .venv/bin/python benchmarks/presence_scale.py --quick --settle 40 --tracemalloc /tmp/gwmem
                                                  # live memory added by subscriptions, by line
    .venv/bin/python benchmarks/presence_scale.py --subs 10000 --skip-refresh --x2s-expires 100 \
        --changes 0                               # no fan-out: CPU per refresh of the gateway's
                                                  # own subscriptions (those due in the window)

``--profile PREFIX`` runs the gateway with cProfile switched on for each phase only (by
SIGUSR1/SIGUSR2 to a small wrapper around ``python -m sipxmpp.gateway``), writing
``PREFIX.establish``, ``PREFIX.refresh`` and ``PREFIX.fanout``; the profiler slows the gateway
about twofold, so the figures of such a run are not the gateway's. Read one with
``python -c "import pstats; pstats.Stats('PREFIX.fanout').sort_stats('tottime').print_stats(30)"``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import heapq
import itertools
import json
import os
import re
import select
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
import xml.parsers.expat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))

LOOPBACK = "127.0.0.1"
DOMAIN = "example.test"
COMPONENT = "sip.example.test"
SECRET = "presence-bench-secret"
STAR = "star"

#: UDP socket buffers of the load processes (the kernel's rmem_max/wmem_max cap them): a
#: burst of a few thousand datagrams must not be dropped while the process is busy.
UDP_BUFFER = 4 * 1024 * 1024

#: RFC 3261 timers of the load's own requests (the gateway runs with the defaults too).
T1 = 0.5
T2 = 4.0
TIMER_F = 64 * T1

#: How often the load processes look at their retransmission and refresh schedules.
TICK_S = 0.02

#: Largest datagram read.
MAX_DATAGRAM = 65_535

#: Datagrams read per readiness callback before yielding to the event loop.
RECV_BATCH = 256

#: Linux ``SO_TIMESTAMPNS`` (asm-generic/socket.h; Python's socket module does not name it):
#: the kernel's receive time of each datagram as a ``struct timespec`` control message.
SO_TIMESTAMPNS = 35

#: Largest unparsed XMPP input kept (a stanza here is ~200 bytes; only a broken stream
#: would reach it).
MAX_XMPP_BUFFER = 4 * 1024 * 1024

#: Bound on a load process's answer to a command (they answer from memory at once).
COMMAND_TIMEOUT_S = 30.0

#: ``--quick``: what it changes (options given on the command line win).
QUICK: dict[str, Any] = {
    "subs": 2000,
    "watchers": 200,
    "duration": 5.0,
    "settle": 5.0,
    "x2s_expires": 60,
}

#: How long the gateway may take to stop cleanly at the end (its final store flush writes
#: every subscription that changed since the last periodic flush).
STOP_TIMEOUT_S = 300.0

#: Bound on the whole run beyond the phases' own bounds.
HARD_LIMIT_S = 1800.0

CLK_TCK = os.sysconf("SC_CLK_TCK")

#: ``python -c`` wrapper around the gateway's CLI for ``--profile``: SIGUSR1 starts a cProfile
#: profiler, SIGUSR2 stops it and writes ``PREFIX.<n>`` (n = 0, 1, ...). The rest of the
#: command line is the gateway's (``-m sipxmpp.gateway run --config FILE``).
PROFILE_WRAPPER = """
import cProfile, runpy, signal, sys
prefix, state = %r, {"p": None, "n": 0}
def start(*_):
    state["p"] = cProfile.Profile()
    state["p"].enable()
def stop(*_):
    p, state["p"] = state["p"], None
    if p is not None:
        p.disable()
        p.dump_stats(f"{prefix}.{state['n']}")
        state["n"] += 1
signal.signal(signal.SIGUSR1, start)
signal.signal(signal.SIGUSR2, stop)
sys.argv = ["sipxmpp", *sys.argv[3:]]
runpy.run_module("sipxmpp.gateway", run_name="__main__", alter_sys=True)
"""

#: ``python -c`` wrapper for ``--tracemalloc``: the first SIGUSR1 starts tracing allocations
#: (N frames; tracing from the start would slow the imports tenfold), the second writes a
#: snapshot ``PREFIX.held``: what was allocated since the first and is still alive.
TRACEMALLOC_WRAPPER = """
import runpy, signal, sys, tracemalloc
prefix, frames = %r, %d
def snap(*_):
    if not tracemalloc.is_tracing():
        tracemalloc.start(frames)
    else:
        tracemalloc.take_snapshot().dump(f"{prefix}.held")
signal.signal(signal.SIGUSR1, snap)
sys.argv = ["sipxmpp", *sys.argv[3:]]
runpy.run_module("sipxmpp.gateway", run_name="__main__", alter_sys=True)
"""

#: ``python -c`` wrapper for ``--census``: each SIGUSR1 writes ``PREFIX.<n>.json``, the live
#: objects by type: every object the cycle collector tracks, and the strings, bytes and
#: numbers they refer to, directly or through an untracked tuple or dict (untracked,
#: counted once each), with their ``sys.getsizeof`` (after
#: ``gc.unfreeze()``: the gateway's GC policy refreezes on its next tick). The
#: difference between the baseline (0) and held (1) censuses is what the subscriptions hold,
#: by type, compiled classes included (tracemalloc only sees their Python callers).
CENSUS_WRAPPER = """
import ctypes, gc, json, runpy, signal, sys
prefix, state = %r, {"n": 0}
def census(*_):
    gc.unfreeze()  # the gateway's GC policy freezes survivors; get_objects() skips those
    gc.collect()
    print(f"census {state['n']}: pymalloc statistics follow", file=sys.stderr, flush=True)
    sys._debugmallocstats()
    seen, out = set(), {}
    def add(o):
        name = type(o).__qualname__
        entry = out.setdefault(name, [0, 0])
        entry[0] += 1
        entry[1] += sys.getsizeof(o)
    for o in gc.get_objects():
        add(o)
        for r in gc.get_referents(o):
            if not gc.is_tracked(r) and id(r) not in seen:
                seen.add(id(r))
                add(r)
                # The collector untracks tuples and dicts of atomic items (dict keys, timer
                # entries): their items are counted here, or they would be missed.
                if type(r) is tuple or type(r) is dict:
                    for item in gc.get_referents(r):
                        if id(item) not in seen and not gc.is_tracked(item):
                            seen.add(id(item))
                            add(item)
    def rss():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    before = rss()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    out["__rss_kib__"] = [before, rss()]
    with open(f"{prefix}.{state['n']}.json", "w") as f:
        json.dump(out, f)
    state["n"] += 1
signal.signal(signal.SIGUSR1, census)
sys.argv = ["sipxmpp", *sys.argv[3:]]
runpy.run_module("sipxmpp.gateway", run_name="__main__", alter_sys=True)
"""

#: The phases profiled with ``--profile``, in order (file suffixes 0, 1, 2 are renamed).
PROFILED_PHASES = ("establish", "refresh", "fanout")


# ============================================================================ shared helpers


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (``/proc/<pid>/stat`` fields 14 and 15)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def emit(obj: dict[str, Any]) -> None:
    """One JSON line to the orchestrator."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def command_loop(handle: Callable[[dict[str, Any]], dict[str, Any] | None]) -> None:
    """Read JSON commands from stdin, answer each with one JSON line, until ``quit``/EOF."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            return
        cmd = json.loads(line)
        if cmd.get("cmd") == "quit":
            emit({"ok": True})
            return
        try:
            answer = handle(cmd)
        except Exception as exc:  # report, keep serving: the orchestrator decides
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        emit(answer or {"ok": True})


# ============================================================================ role: sip


def _tag_of(value: bytes) -> bytes | None:
    i = value.find(b";tag=")
    if i < 0:
        return None
    j = i + 5
    k = j
    while k < len(value) and value[k] not in b";>, ":
        k += 1
    return value[j:k]


_COMPACT = {
    b"i": b"call-id",
    b"f": b"from",
    b"t": b"to",
    b"v": b"via",
    b"m": b"contact",
    b"o": b"event",
    b"c": b"content-type",
    b"l": b"content-length",
}


class SipMsg:
    """A SIP message parsed just enough for the load: first line, headers, body."""

    __slots__ = ("first", "h", "vias", "body")

    def __init__(self, data: bytes) -> None:
        head, _, self.body = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        self.first = lines[0]
        self.h: dict[bytes, bytes] = {}
        self.vias: list[bytes] = []
        for line in lines[1:]:
            i = line.find(b":")
            if i <= 0:
                continue
            name = line[:i].strip().lower()
            name = _COMPACT.get(name, name)
            value = line[i + 1 :].strip()
            if name == b"via":
                self.vias.append(value)
            elif name not in self.h:
                self.h[name] = value

    @property
    def is_request(self) -> bool:
        return not self.first.startswith(b"SIP/2.0 ")

    @property
    def status(self) -> int:
        return int(self.first[8:11])

    @property
    def cseq(self) -> int:
        return int(self.h.get(b"cseq", b"0 x").split()[0])

    def response(
        self, status: int, reason: str, *, to_tag: bytes | None = None, extra: bytes = b""
    ) -> bytes:
        to = self.h.get(b"to", b"")
        if to_tag is not None and b";tag=" not in to:
            to += b";tag=" + to_tag
        parts = [f"SIP/2.0 {status} {reason}".encode()]
        parts += [b"Via: " + v for v in self.vias]
        parts += [
            b"From: " + self.h.get(b"from", b""),
            b"To: " + to,
            b"Call-ID: " + self.h.get(b"call-id", b""),
            b"CSeq: " + self.h.get(b"cseq", b""),
        ]
        if extra:
            parts.append(extra)
        parts.append(b"Content-Length: 0\r\n\r\n")
        return b"\r\n".join(parts)


def _hostport(contact: bytes) -> tuple[str, int]:
    m = re.search(rb"sips?:(?:[^@>;]*@)?([0-9.]+)(?::(\d+))?", contact)
    if m is None:
        raise ValueError(f"no address in {contact!r}")
    return m.group(1).decode(), int(m.group(2) or 5060)


def _uri(value: bytes) -> bytes:
    m = re.search(rb"<([^>]+)>", value)
    return m.group(1) if m else value.split(b";")[0]


@dataclass(slots=True)
class _Tx:
    """A request of ours waiting for its final response (RFC 3261 §17.1.2.2 over UDP)."""

    data: bytes
    addr: tuple[str, int]
    ws: bool  # sent from the watchers' socket (else the presence server's)
    interval: float
    next_at: float
    give_up_at: float
    on_final: Callable[[SipMsg], None] | None


@dataclass(slots=True)
class _PsDialog:
    """The presence server's side of one gateway subscription (X2S)."""

    contact: bytes  # cK
    our_tag: bytes
    gw_from: bytes
    gw_to: bytes
    gw_addr: tuple[str, int]
    gw_target: bytes
    notify_cseq: int = 0
    last_sub_cseq: int = -1
    last_response: bytes = b""
    refreshes: int = 0
    notify_ok: bool = False


@dataclass(slots=True)
class _Watch:
    """One SIP watcher's dialog (S2X or fan-out)."""

    user: bytes  # wJ / fI
    target: bytes  # uJ / star
    call_id: bytes
    tag: bytes
    kind: str  # "s2x" | "fan"
    cseq: int = 0
    to_tag: bytes | None = None
    remote: tuple[str, int] | None = None
    remote_uri: bytes = b""
    established: bool = False
    refresh_sent_at: float | None = None
    refresh_2xx: bool = False
    refresh_notify: bool = False
    refreshed: bool = False
    notify_cseq: int = -1
    failed: int = 0
    notify_times: list[float] = field(default_factory=list)


class SipPartition:
    """Role "sip": the presence server (one socket) and the SIP watchers (another)."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.ps: asyncio.DatagramTransport | None = None
        self.ws: _RawSender | None = None
        self.ps_port = 0
        self.ws_port = 0
        self.gateway: tuple[str, int] = (LOOPBACK, 0)
        self.ps_dialogs: dict[bytes, _PsDialog] = {}
        self.watches: dict[bytes, _Watch] = {}
        self.txs: dict[tuple[bytes, int], _Tx] = {}
        self.heap: list[tuple[float, bytes, int]] = []
        self.jobs: list[Iterator[None]] = []
        self.counts: dict[str, int] = dict.fromkeys(
            (
                "ps_subscribe",
                "ps_refresh",
                "ps_unsubscribe",
                "ps_retransmit_in",
                "ps_481",
                "notify_sent",
                "notify_ok",
                "notify_failed",
                "w_subscribe",
                "w_2xx",
                "w_fail",
                "w_notify",
                "w_notify_retransmit",
                "w_timeouts",
                "retransmissions",
                "parse_errors",
            ),
            0,
        )
        self.window: tuple[float, float] | None = None  # fan-out counting window (loop time)
        #: Per kind: dialogs whose outcome is known (established or failed), and refreshes
        #: whose outcome is known: the closed-loop pacing of :meth:`_create`/:meth:`_refresh_all`.
        self.settled: dict[str, int] = {}
        self.refresh_settled: dict[str, int] = {}
        self._ids = itertools.count(1)

    async def open(self) -> None:
        for which in ("ps", "ws"):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                sock.setsockopt(socket.SOL_SOCKET, opt, UDP_BUFFER)
            sock.bind((LOOPBACK, 0))
            port = sock.getsockname()[1]
            if which == "ps":
                transport, _ = await self.loop.create_datagram_endpoint(
                    lambda: _Proto(self._on_ps), sock=sock
                )
                self.ps, self.ps_port = transport, port
            else:
                # The watchers' socket is read directly, with the kernel's receive time of
                # each datagram (SO_TIMESTAMPNS): under CPU contention the load process may
                # read a burst late, and the gaps between NOTIFYs must be the gateway's.
                sock.setblocking(False)
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                self.loop.add_reader(sock.fileno(), self._read_ws, sock)
                self.ws, self.ws_port = _RawSender(sock), port
        self.loop.create_task(self._ticker())

    def _read_ws(self, sock: socket.socket) -> None:
        for _ in range(RECV_BATCH):
            try:
                data, anc, _flags, addr = sock.recvmsg(MAX_DATAGRAM, socket.CMSG_SPACE(16))
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.counts["parse_errors"] += 1
                return
            at = time.time()
            for level, kind, raw in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(raw) >= 16:
                    sec, nsec = struct.unpack("@qq", raw[:16])
                    at = sec + nsec / 1e9
            self._on_ws(data, addr, at)

    # -- scheduling ---------------------------------------------------------------------------

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            now = self.loop.time()
            # Background jobs (paced creation/refresh), each a generator yielding per item.
            for job in list(self.jobs):
                try:
                    next(job)
                except StopIteration:
                    self.jobs.remove(job)
            while self.heap and self.heap[0][0] <= now:
                _, call_id, cseq = heapq.heappop(self.heap)
                tx = self.txs.get((call_id, cseq))
                if tx is None or tx.next_at > now:
                    continue
                if now >= tx.give_up_at:
                    del self.txs[(call_id, cseq)]
                    self.counts["w_timeouts" if tx.ws else "notify_failed"] += 1
                    continue
                self._sendto(tx.addr, tx.data, ws=tx.ws)
                self.counts["retransmissions"] += 1
                tx.interval = min(2 * tx.interval, T2)
                tx.next_at = now + tx.interval
                heapq.heappush(self.heap, (tx.next_at, call_id, cseq))

    def _sendto(self, addr: tuple[str, int], data: bytes, *, ws: bool) -> None:
        transport = self.ws if ws else self.ps
        assert transport is not None
        transport.sendto(data, addr)

    def _request(
        self,
        call_id: bytes,
        cseq: int,
        data: bytes,
        addr: tuple[str, int],
        *,
        ws: bool,
        on_final: Callable[[SipMsg], None] | None,
    ) -> None:
        now = self.loop.time()
        self.txs[(call_id, cseq)] = _Tx(data, addr, ws, T1, now + T1, now + TIMER_F, on_final)
        heapq.heappush(self.heap, (now + T1, call_id, cseq))
        self._sendto(addr, data, ws=ws)

    def _final(self, msg: SipMsg) -> None:
        key = (msg.h.get(b"call-id", b""), msg.cseq)
        tx = self.txs.pop(key, None)
        if tx is not None and tx.on_final is not None:
            tx.on_final(msg)

    # -- presence server (the gateway's SUBSCRIBEs) ---------------------------------------

    def _on_ps(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            msg = SipMsg(data)
            if msg.is_request:
                self._ps_request(msg, addr)
            elif msg.status >= 200:
                ok = 200 <= msg.status < 300
                self.counts["notify_ok" if ok else "notify_failed"] += 1
                if ok:
                    d = self.ps_dialogs.get(msg.h.get(b"call-id", b""))
                    if d is not None:
                        d.notify_ok = True
                self._final(msg)
        except (ValueError, IndexError):
            self.counts["parse_errors"] += 1

    def _ps_request(self, msg: SipMsg, addr: tuple[str, int]) -> None:
        method = msg.first.split(b" ", 1)[0]
        if method != b"SUBSCRIBE":
            assert self.ps is not None
            self.ps.sendto(msg.response(405, "Method Not Allowed"), addr)
            return
        call_id = msg.h.get(b"call-id", b"")
        to_tag = _tag_of(msg.h.get(b"to", b""))
        cseq = msg.cseq
        expires = int(msg.h.get(b"expires", b"3600"))
        d = self.ps_dialogs.get(call_id)
        assert self.ps is not None
        if d is not None and cseq == d.last_sub_cseq:
            self.counts["ps_retransmit_in"] += 1
            self.ps.sendto(d.last_response, addr)
            return
        if to_tag is None:
            if d is None:
                contact = _uri(msg.h.get(b"to", b"")).split(b"@")[0].split(b":")[-1]
                gw_contact = msg.h.get(b"contact", b"")
                d = _PsDialog(
                    contact=contact,
                    our_tag=hashlib.sha1(call_id).hexdigest()[:12].encode(),
                    gw_from=msg.h.get(b"from", b""),
                    gw_to=msg.h.get(b"to", b""),
                    gw_addr=_hostport(gw_contact),
                    gw_target=_uri(gw_contact),
                )
                self.ps_dialogs[call_id] = d
            self.counts["ps_subscribe"] += 1
        elif d is None or to_tag != d.our_tag:
            self.counts["ps_481"] += 1
            self.ps.sendto(msg.response(481, "Call/Transaction Does Not Exist"), addr)
            return
        elif expires == 0:
            self.counts["ps_unsubscribe"] += 1
        else:
            self.counts["ps_refresh"] += 1
            d.refreshes += 1
        extra = f"Expires: {expires}\r\nContact: <sip:ps@{LOOPBACK}:{self.ps_port}>".encode()
        d.last_sub_cseq = cseq
        d.last_response = msg.response(200, "OK", to_tag=d.our_tag, extra=extra)
        self.ps.sendto(d.last_response, addr)
        # RFC 6665 §4.2.1.2: a NOTIFY right after every 2xx, with the full state.
        if expires == 0:
            self._ps_notify(call_id, d, b"terminated;reason=timeout", with_body=True)
            del self.ps_dialogs[call_id]
        else:
            self._ps_notify(call_id, d, b"active;expires=%d" % expires, with_body=True)

    def _ps_notify(self, call_id: bytes, d: _PsDialog, state: bytes, *, with_body: bool) -> None:
        d.notify_cseq += 1
        entity = b"sip:" + d.contact + b"@" + DOMAIN.encode()
        body = b""
        if with_body:
            body = (
                b'<?xml version="1.0" encoding="UTF-8"?>\n'
                b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="' + entity + b'">'
                b'<tuple id="t1"><status><basic>open</basic></status>'
                b"<note>at work</note></tuple></presence>"
            )
        n = next(self._ids)
        head = [
            b"NOTIFY " + d.gw_target + b" SIP/2.0",
            b"Via: SIP/2.0/UDP %s:%d;branch=z9hG4bKps%d;rport"
            % (LOOPBACK.encode(), self.ps_port, n),
            b"From: " + d.gw_to + b";tag=" + d.our_tag,
            b"To: " + d.gw_from,
            b"Call-ID: " + call_id,
            b"CSeq: %d NOTIFY" % d.notify_cseq,
            b"Max-Forwards: 70",
            b"Contact: <sip:ps@%s:%d>" % (LOOPBACK.encode(), self.ps_port),
            b"Event: presence",
            b"Subscription-State: " + state,
        ]
        if body:
            head.append(b"Content-Type: application/pidf+xml")
        head.append(b"Content-Length: %d" % len(body))
        data = b"\r\n".join(head) + b"\r\n\r\n" + body
        self.counts["notify_sent"] += 1
        self._request(call_id, d.notify_cseq, data, d.gw_addr, ws=False, on_final=None)

    # -- watchers ---------------------------------------------------------------------------------

    def _subscribe(self, w: _Watch, expires: int) -> None:
        w.cseq += 1
        n = next(self._ids)
        in_dialog = w.to_tag is not None
        uri = w.remote_uri if in_dialog and w.remote_uri else b"sip:" + w.target + b"@example.test"
        to = b"<sip:" + w.target + b"@example.test>"
        if in_dialog:
            to += b";tag=" + (w.to_tag or b"")
        data = b"\r\n".join(
            [
                b"SUBSCRIBE " + uri + b" SIP/2.0",
                b"Via: SIP/2.0/UDP %s:%d;branch=z9hG4bKw%d;rport"
                % (LOOPBACK.encode(), self.ws_port, n),
                b"From: <sip:" + w.user + b"@example.test>;tag=" + w.tag,
                b"To: " + to,
                b"Call-ID: " + w.call_id,
                b"CSeq: %d SUBSCRIBE" % w.cseq,
                b"Max-Forwards: 70",
                b"Contact: <sip:%s@%s:%d>" % (w.user, LOOPBACK.encode(), self.ws_port),
                b"Event: presence",
                b"Accept: application/pidf+xml",
                b"Expires: %d" % expires,
                b"Content-Length: 0",
                b"",
                b"",
            ]
        )
        self.counts["w_subscribe"] += 1
        refresh = in_dialog
        if refresh:
            w.refresh_sent_at = self.loop.time()
            w.refresh_2xx = w.refresh_notify = False
        self._request(
            w.call_id,
            w.cseq,
            data,
            w.remote or self.gateway,
            ws=True,
            on_final=lambda m, w=w, refresh=refresh: self._w_final(w, m, refresh),
        )

    def _w_final(self, w: _Watch, msg: SipMsg, refresh: bool) -> None:
        if 200 <= msg.status < 300:
            self.counts["w_2xx"] += 1
            if w.to_tag is None:
                w.to_tag = _tag_of(msg.h.get(b"to", b""))
            contact = msg.h.get(b"contact")
            if contact:
                w.remote_uri = _uri(contact)
                w.remote = _hostport(contact)
            if refresh:
                # RFC 6665 §4.2.1.2: a NOTIFY follows the 2xx (it may overtake it).
                w.refresh_2xx = True
                self._mark_refreshed(w)
        else:
            self.counts["w_fail"] += 1
            if w.failed == 0 and not w.established:
                self.settled[w.kind] = self.settled.get(w.kind, 0) + 1
            if refresh and not w.refreshed:
                self.refresh_settled[w.kind] = self.refresh_settled.get(w.kind, 0) + 1
            w.failed += 1

    def _mark_refreshed(self, w: _Watch) -> None:
        if w.refresh_2xx and w.refresh_notify and not w.refreshed:
            w.refreshed = True
            self.refresh_settled[w.kind] = self.refresh_settled.get(w.kind, 0) + 1

    def _on_ws(self, data: bytes, addr: tuple[str, int], at: float) -> None:
        try:
            msg = SipMsg(data)
            if not msg.is_request:
                if msg.status >= 200:
                    self._final(msg)
                return
            call_id = msg.h.get(b"call-id", b"")
            w = self.watches.get(call_id)
            assert self.ws is not None
            if w is None or msg.first[:7] != b"NOTIFY ":
                self.ws.sendto(msg.response(481, "Call/Transaction Does Not Exist"), addr)
                return
            self.ws.sendto(msg.response(200, "OK"), addr)
            cseq = msg.cseq
            if cseq <= w.notify_cseq:
                self.counts["w_notify_retransmit"] += 1  # answered again, counted once
                return
            w.notify_cseq = cseq
            self.counts["w_notify"] += 1
            now = at
            state = msg.h.get(b"subscription-state", b"")
            has_pidf = bool(msg.body)
            if state.startswith(b"active") and has_pidf:
                if not w.established and w.failed == 0:
                    self.settled[w.kind] = self.settled.get(w.kind, 0) + 1
                w.established = True
                if w.refresh_sent_at is not None:
                    w.refresh_notify = True
                    self._mark_refreshed(w)
                if w.kind == "fan" and self.window is not None:
                    if self.window[0] <= now <= self.window[1]:
                        w.notify_times.append(now)
        except (ValueError, IndexError):
            self.counts["parse_errors"] += 1

    def _create(
        self,
        kind: str,
        prefix: str,
        target: Callable[[int], str],
        count: int,
        rate: float,
        expires: int,
        window: int,
    ) -> Iterator[None]:
        """Paced creation (a generator stepped per tick): at most ``rate`` new subscriptions
        per second and at most ``window`` whose outcome is not known yet (closed loop: the
        load follows the gateway's pace instead of piling retransmissions on it)."""
        start = self.loop.time()
        made = 0
        base = self.settled.get(kind, 0)
        while made < count:
            due = min(count, int((self.loop.time() - start) * rate) + 1)
            due = min(due, self.settled.get(kind, 0) - base + window)
            while made < due:
                user = f"{prefix}{made}".encode()
                call_id = f"{prefix}{made}-{os.getpid()}@bench".encode()
                w = _Watch(user, target(made).encode(), call_id, f"t{made}".encode(), kind)
                self.watches[call_id] = w
                self._subscribe(w, expires)
                made += 1
            yield

    def _refresh_all(self, kind: str, rate: float, expires: int, window: int) -> Iterator[None]:
        todo = [w for w in self.watches.values() if w.kind == kind and w.to_tag is not None]
        start = self.loop.time()
        done = 0
        base = self.refresh_settled.get(kind, 0)
        while done < len(todo):
            due = min(len(todo), int((self.loop.time() - start) * rate) + 1)
            due = min(due, self.refresh_settled.get(kind, 0) - base + window)
            while done < due:
                self._subscribe(todo[done], expires)
                done += 1
            yield

    # -- commands -----------------------------------------------------------------------------

    def handle(self, cmd: dict[str, Any]) -> dict[str, Any] | None:
        c = cmd["cmd"]
        if c == "gateway":
            self.gateway = (LOOPBACK, int(cmd["port"]))
        elif c == "s2x":
            self.jobs.append(
                self._create(
                    "s2x",
                    "w",
                    lambda i: f"u{i}",
                    cmd["count"],
                    cmd["rate"],
                    cmd["expires"],
                    cmd["window"],
                )
            )
        elif c == "fan":
            self.jobs.append(
                self._create(
                    "fan",
                    "f",
                    lambda i: STAR,
                    cmd["count"],
                    cmd["rate"],
                    cmd["expires"],
                    cmd["window"],
                )
            )
        elif c == "refresh":
            self.jobs.append(
                self._refresh_all(cmd["kind"], cmd["rate"], cmd["expires"], cmd["window"])
            )
        elif c == "window":
            now = time.time()  # the clock of the kernel's receive timestamps
            self.window = (now, now + float(cmd["seconds"]))
            for w in self.watches.values():
                w.notify_times.clear()
            return {"ok": True, "start": now}
        elif c == "stats":
            return self.stats()
        else:
            return {"error": f"unknown command {c}"}
        return None

    def stats(self) -> dict[str, Any]:
        by_kind: dict[str, dict[str, int]] = {}
        gaps: list[float] = []
        fan_notifies = 0
        max_per_s = 0
        first = last = None
        for w in self.watches.values():
            k = by_kind.setdefault(
                w.kind, {"dialogs": 0, "established": 0, "refreshed": 0, "failed": 0}
            )
            k["dialogs"] += 1
            k["established"] += w.established
            k["refreshed"] += w.refreshed
            k["failed"] += w.failed > 0
            if w.kind == "fan" and w.notify_times:
                t = w.notify_times
                fan_notifies += len(t)
                first = t[0] if first is None else min(first, t[0])
                last = t[-1] if last is None else max(last, t[-1])
                gaps += [b - a for a, b in itertools.pairwise(t)]
                j = 0
                for i in range(len(t)):  # most NOTIFYs to this watcher within one second
                    while t[i] - t[j] >= 1.0:
                        j += 1
                    max_per_s = max(max_per_s, i - j + 1)
        return {
            "counts": self.counts,
            "kinds": by_kind,
            "ps_dialogs": len(self.ps_dialogs),
            "ps_refreshed": sum(1 for d in self.ps_dialogs.values() if d.refreshes > 0),
            "ps_refreshes": sum(d.refreshes for d in self.ps_dialogs.values()),
            "ps_notified": sum(1 for d in self.ps_dialogs.values() if d.notify_ok),
            "pending_tx": len(self.txs),
            "jobs": len(self.jobs),
            "fan_notifies": fan_notifies,
            "fan_first": first,
            "fan_last": last,
            "fan_min_gap": min(gaps) if gaps else None,
            "fan_gaps_p1": sorted(gaps)[len(gaps) // 100] if gaps else None,
            "fan_max_per_s": max_per_s,
        }


class _RawSender:
    """``sendto`` on a non-blocking UDP socket read by our own reader."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.dropped = 0

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self.sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self.dropped += 1  # the socket buffer is full: a retransmission will follow


class _Proto(asyncio.DatagramProtocol):
    def __init__(self, handler: Callable[[bytes, tuple[str, int]], None]) -> None:
        self.handler = handler

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.handler(data, addr)


async def run_sip() -> None:
    part = SipPartition()
    await part.open()
    emit({"ps_port": part.ps_port, "ws_port": part.ws_port})
    await command_loop(part.handle)


# ============================================================================ role: xmpp


class XmppPartition:
    """Role "xmpp": the XMPP server side of the component link (XEP-0114 §3)."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.port = 0
        self.up = False
        self.counts: dict[str, int] = dict.fromkeys(
            (
                "subscribe_in",
                "subscribed_out",
                "probe_in",
                "x2s_subscribed_in",
                "x2s_available_in",
                "x2s_unavailable_in",
                "x2s_error_in",
                "error_in",
                "other_in",
                "stanzas_in",
                "stanzas_out",
                "pings",
                "handshakes",
                "fan_stanzas_out",
            ),
            0,
        )
        self.x2s_subscribed: set[int] = set()
        self.x2s_presence: set[int] = set()
        self.x2s_done = 0  # contacts in both sets
        self.state: dict[str, tuple[str | None, str]] = {}  # user -> (show, status)
        self.jobs: list[Iterator[None]] = []
        self._out: list[bytes] = []
        self._flush_pending = False

    async def open(self) -> None:
        server = await self.loop.create_server(lambda: _XmppConn(self), LOOPBACK, 0)
        self.port = server.sockets[0].getsockname()[1]
        self.loop.create_task(self._ticker())

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            for job in list(self.jobs):
                try:
                    next(job)
                except StopIteration:
                    self.jobs.remove(job)

    def write(self, data: bytes) -> None:
        self._out.append(data)
        self.counts["stanzas_out"] += 1
        if not self._flush_pending:
            self._flush_pending = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(self._out))
        self._out.clear()

    def presence_xml(self, user: str, to: str) -> bytes:
        show, status = self.state.get(user, (None, "ready"))
        inner = (f"<show>{show}</show>" if show else "") + f"<status>{status}</status>"
        return f"<presence from='{user}@{DOMAIN}/desk' to='{to}'>{inner}</presence>".encode()

    def on_stanza(self, name: str, attrs: dict[str, str]) -> None:
        self.counts["stanzas_in"] += 1
        if name == "iq":
            if attrs.get("type") in ("get", "set"):
                self.counts["pings"] += 1
                self.write(
                    f"<iq type='result' id='{attrs.get('id', '')}' from='{attrs.get('to', '')}'"
                    f" to='{attrs.get('from', '')}'/>".encode()
                )
            return
        if name != "presence":
            self.counts["other_in"] += 1
            return
        ptype = attrs.get("type", "")
        frm = attrs.get("from", "")
        to = attrs.get("to", "")
        to_user = to.split("@", 1)[0]
        if ptype == "error":
            self.counts["error_in"] += 1
        if to.endswith("@" + DOMAIN) or ("@" + DOMAIN + "/") in to:
            if frm.startswith("c") and frm.split("@", 1)[0][1:].isdigit():
                k = int(frm.split("@", 1)[0][1:])
                if ptype == "subscribed":
                    self.counts["x2s_subscribed_in"] += 1
                    if k not in self.x2s_subscribed:
                        self.x2s_subscribed.add(k)
                        self.x2s_done += k in self.x2s_presence
                elif ptype == "":
                    self.counts["x2s_available_in"] += 1
                    if k not in self.x2s_presence:
                        self.x2s_presence.add(k)
                        self.x2s_done += k in self.x2s_subscribed
                elif ptype == "unavailable":
                    self.counts["x2s_unavailable_in"] += 1
                elif ptype == "error":
                    self.counts["x2s_error_in"] += 1
                return
            if ptype == "subscribe":
                # The XMPP user approves every SIP watcher (RFC 6121 §3.1.4), and the server
                # then sends the user's current presence to the new contact (§3.1.5).
                self.counts["subscribe_in"] += 1
                self.write(
                    f"<presence type='subscribed' from='{to_user}@{DOMAIN}' to='{frm}'/>".encode()
                )
                self.counts["subscribed_out"] += 1
                self.write(self.presence_xml(to_user, frm))
                return
            if ptype == "probe":
                self.counts["probe_in"] += 1
                self.write(self.presence_xml(to_user, frm))
                return
        self.counts["other_in"] += 1

    def _x2s(self, count: int, rate: float, window: int) -> Iterator[None]:
        """``xK`` subscribe to ``cK``: at most ``rate`` per second and ``window`` unanswered."""
        start = self.loop.time()
        sent = 0
        while sent < count:
            due = min(count, int((self.loop.time() - start) * rate) + 1)
            due = min(due, self.x2s_done + window)
            while sent < due:
                self.write(
                    f"<presence type='subscribe' from='x{sent}@{DOMAIN}'"
                    f" to='c{sent}@{COMPONENT}'/>".encode()
                )
                sent += 1
            yield

    def _fanout(self, watchers: int, rate: float, duration: float) -> Iterator[None]:
        """``star`` changes ``rate`` times per second; each change to every watcher JID."""
        shows = ("away", "dnd", "xa", None)
        start = self.loop.time()
        n = 0
        total = int(rate * duration)
        while n < total:
            due = min(total, int((self.loop.time() - start) * rate) + 1)
            while n < due:
                self.state[STAR] = (shows[n % len(shows)], f"change {n}")
                for i in range(watchers):
                    self.write(self.presence_xml(STAR, f"f{i}@{COMPONENT}"))
                    self.counts["fan_stanzas_out"] += 1
                n += 1
            yield

    def handle(self, cmd: dict[str, Any]) -> dict[str, Any] | None:
        c = cmd["cmd"]
        if c == "x2s":
            self.jobs.append(self._x2s(cmd["count"], cmd["rate"], cmd["window"]))
        elif c == "fanout":
            self.jobs.append(self._fanout(cmd["watchers"], cmd["rate"], cmd["duration"]))
        elif c == "stats":
            return {
                "up": self.up,
                "counts": self.counts,
                "x2s_established": self.x2s_done,
                "jobs": len(self.jobs),
            }
        else:
            return {"error": f"unknown command {c}"}
        return None


class _XmppConn(asyncio.Protocol):
    """One component connection: stream header, handshake, then stanzas (expat, no DOM)."""

    def __init__(self, server: XmppPartition) -> None:
        self.server = server
        self.stream_id = os.urandom(8).hex()
        self.parser = xml.parsers.expat.ParserCreate()
        self.parser.buffer_text = True
        self.parser.StartElementHandler = self._start
        self.parser.EndElementHandler = self._end
        self.parser.CharacterDataHandler = self._text
        self.depth = 0
        self.current: tuple[str, dict[str, str]] | None = None
        self.text: list[str] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.Parse(data, False)
        except xml.parsers.expat.ExpatError:
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.server.transport is self.transport:
            self.server.transport = None
            self.server.up = False

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        self.depth += 1
        if self.depth == 1:  # the component's stream header
            assert self.transport is not None
            self.transport.write(
                "<?xml version='1.0'?><stream:stream xmlns:stream="
                "'http://etherx.jabber.org/streams' xmlns='jabber:component:accept'"
                f" from='{COMPONENT}' id='{self.stream_id}'>".encode()
            )
        elif self.depth == 2:
            self.current = (name, attrs)
            self.text = []

    def _text(self, data: str) -> None:
        if self.depth == 2:
            self.text.append(data)

    def _end(self, name: str) -> None:
        if self.depth == 2 and self.current is not None:
            el_name, attrs = self.current
            if el_name == "handshake":
                expected = hashlib.sha1((self.stream_id + SECRET).encode()).hexdigest()
                assert self.transport is not None
                if "".join(self.text).strip() == expected:
                    self.transport.write(b"<handshake/>")
                    self.server.transport = self.transport
                    self.server.up = True
                    self.server.counts["handshakes"] += 1
                else:
                    self.transport.write(
                        b"<stream:error><not-authorized xmlns="
                        b"'urn:ietf:params:xml:ns:xmpp-streams'/>"
                        b"</stream:error></stream:stream>"
                    )
                    self.transport.close()
            else:
                self.server.on_stanza(el_name, attrs)
            self.current = None
        self.depth -= 1


async def run_xmpp() -> None:
    part = XmppPartition()
    await part.open()
    emit({"port": part.port})
    await command_loop(part.handle)


# ============================================================================ orchestrator


class Child:
    """A load process of this file (``--role``), spoken to with JSON lines."""

    def __init__(self, role: str, log: Path) -> None:
        self.role = role
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--role", role],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log.open("wb"),
        )
        self.hello = self._read(COMMAND_TIMEOUT_S)

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError(f"{self.role} load process did not answer in {timeout} s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.role} load process exited ({self.proc.poll()})")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"{self.role}: {answer['error']}")
        return answer

    def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"cmd": cmd, **args}) + "\n").encode())
        self.proc.stdin.flush()
        return self._read(COMMAND_TIMEOUT_S)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.call("quit")
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()


def wait_for(what: str, check: Callable[[], bool], timeout: float, poll: float = 1.0) -> float:
    """Poll ``check`` until true; returns the seconds it took (raises TimeoutError)."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{what}: not done within {timeout:.0f} s")
        time.sleep(poll)
    return time.monotonic() - start


@dataclass
class Figures:
    rows: list[tuple[str, str]] = field(default_factory=list)

    def add(self, name: str, value: str) -> None:
        self.rows.append((name, value))
        print(f"  {name:<58} {value}", flush=True)


def store_counts(db: Path) -> dict[str, int]:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
            return {
                f"{role}/{state}": n
                for role, state, n in conn.execute(
                    "SELECT role, state, count(*) FROM sipxmpp_subscriptions GROUP BY role, state"
                )
            }
    except sqlite3.Error as exc:
        return {"error": str(exc)}  # type: ignore[dict-item]


def print_tracemalloc(prefix: Path, subscriptions: int, top: int = 30) -> None:
    """Live Python memory allocated since the baseline and still held, by line."""
    import tracemalloc

    snapshot = tracemalloc.Snapshot.load(f"{prefix}.held")
    stats = snapshot.statistics("lineno")
    total = sum(st.size for st in stats)
    print(
        f"    tracemalloc: {total / 1024:,.0f} KiB live Python memory added, "
        f"{total / subscriptions:,.0f} bytes per subscription; top sites:"
    )
    for st in stats[:top]:
        frame = st.traceback[0]
        where = f"{frame.filename.replace(str(REPO) + '/', '')}:{frame.lineno}"
        print(f"    {st.size / subscriptions:8,.0f} B/sub {st.count:9,d} blocks  {where}")


def print_census(prefix: Path, subscriptions: int, top: int = 30) -> None:
    """Objects the subscriptions added, by type (``--census``: held minus baseline)."""
    base = json.loads(Path(f"{prefix}.0.json").read_text())
    held = json.loads(Path(f"{prefix}.1.json").read_text())
    rss0, rss1 = base.pop("__rss_kib__"), held.pop("__rss_kib__")
    print(
        f"    census: VmRSS {rss0[0]:,} -> {rss1[0]:,} KiB, after malloc_trim(0) "
        f"{rss0[1]:,} -> {rss1[1]:,} KiB ({(rss1[1] - rss0[1]) * 1024 / subscriptions:,.0f} B/sub)"
    )
    rows = []
    for name, (count, size) in held.items():
        count0, size0 = base.get(name, (0, 0))
        rows.append((size - size0, count - count0, name))
    rows.sort(reverse=True)
    total = sum(row[0] for row in rows)
    print(
        f"    census: {total / subscriptions:,.0f} bytes of objects per subscription "
        "(sys.getsizeof, containers without their contents); top types:"
    )
    for size, count, name in rows[:top]:
        print(f"    {size / subscriptions:8,.0f} B/sub {count / subscriptions:7.2f} /sub  {name}")


def orchestrate(args: argparse.Namespace) -> int:
    from support.cli_gateway import CliGateway, free_udp_port, read_rss_kib

    deadline = time.monotonic() + HARD_LIMIT_S
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="presence-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    figures = Figures()
    n = args.subs
    print(
        f"presence_scale: {n:,} X2S + {n:,} S2X subscriptions, {args.watchers:,} watchers of "
        f"one presentity; work dir {workdir}",
        flush=True,
    )
    xmpp = Child("xmpp", workdir / "xmpp-load.log")
    sip = Child("sip", workdir / "sip-load.log")
    gw: CliGateway | None = None
    try:
        gw_port = free_udp_port()
        sip.call("gateway", port=gw_port)
        db = workdir / "state.db"
        gw = CliGateway(
            workdir,
            xmpp_port=xmpp.hello["port"],
            component=COMPONENT,
            secret=SECRET,
            sip_proxy=(LOOPBACK, sip.hello["ps_port"]),
            udp_port=gw_port,
            presence={
                "store_url": f"sqlite:///{db}",
                "subscribe_expires": args.x2s_expires,
                "min_notify_interval": args.min_notify_interval,
                "max_subscriptions": 4 * n + 10 * args.watchers,
                "max_subscriptions_per_user": max(1000, 2 * args.watchers),
                "max_subscriptions_per_peer": 4 * n + 10 * args.watchers,
            },
            log_level="warning",
        )
        if args.profile:
            gw.python_args = ("-c", PROFILE_WRAPPER % str(args.profile))
        elif args.tracemalloc:
            gw.python_args = ("-c", TRACEMALLOC_WRAPPER % (str(args.tracemalloc), 1))
        elif args.census:
            gw.python_args = ("-c", CENSUS_WRAPPER % str(args.census))
        gw.start(ready=lambda: bool(xmpp.call("stats")["up"]))
        assert gw.pid is not None
        pid = gw.pid
        time.sleep(2.0)
        rss0 = read_rss_kib(pid) or 0
        if args.tracemalloc or args.census:
            os.kill(pid, signal.SIGUSR1)  # start tracing / census at the baseline
        cpu0 = cpu_seconds(pid)
        figures.add("gateway RSS at start (VmRSS)", f"{rss0:,} KiB")

        # -- establish -------------------------------------------------------------------------
        def profiling(on: bool) -> None:
            if args.profile:
                os.kill(pid, signal.SIGUSR1 if on else signal.SIGUSR2)

        profiling(True)
        t0 = time.monotonic()
        xmpp.call("x2s", count=n, rate=args.rate, window=args.window)
        sip.call("s2x", count=n, rate=args.rate, expires=args.s2x_expires, window=args.window)

        def established() -> bool:
            xs = xmpp.call("stats")
            ss = sip.call("stats")
            s2x = ss["kinds"].get("s2x", {}).get("established", 0)
            print(
                f"    establishing: X2S {xs['x2s_established']:,}/{n:,}  S2X {s2x:,}/{n:,}"
                f"  gateway RSS {read_rss_kib(pid) or 0:,} KiB",
                flush=True,
            )
            return bool(xs["x2s_established"] >= n and s2x >= n)

        took = wait_for(
            "establishing",
            established,
            min(args.phase_timeout, deadline - time.monotonic()),
            poll=5.0,
        )
        cpu1 = cpu_seconds(pid)
        profiling(False)
        rss_busy = read_rss_kib(pid) or 0
        figures.add(
            "subscriptions established (X2S + S2X)",
            f"{n:,} + {n:,} in {took:.1f} s ({2 * n / took:,.0f}/s)",
        )
        figures.add(
            "  gateway CPU per subscription established", f"{(cpu1 - cpu0) / (2 * n) * 1e6:,.0f} µs"
        )

        # -- held (quiet) ----------------------------------------------------------------------
        time.sleep(args.settle)
        rss1 = read_rss_kib(pid) or 0
        if args.tracemalloc:
            os.kill(pid, signal.SIGUSR1)  # snapshot: held
            time.sleep(5.0)
            print_tracemalloc(args.tracemalloc, 2 * n)
        if args.census:
            os.kill(pid, signal.SIGUSR1)  # census: held
            wait_for("census", Path(f"{args.census}.1.json").exists, 120.0, poll=1.0)
            time.sleep(1.0)  # written
            print_census(args.census, 2 * n)
        per_sub = (rss1 - rss0) * 1024 / (2 * n)
        figures.add("gateway RSS right after establishing", f"{rss_busy:,} KiB")
        figures.add(f"gateway RSS held, {args.settle:.0f} s later", f"{rss1:,} KiB")
        figures.add(
            "RSS per subscription ((held - start) / subscriptions)",
            f"{per_sub:,.0f} bytes (target < 2,048)",
        )

        # -- refresh ---------------------------------------------------------------------------
        if args.skip_refresh:
            figures.add(
                "subscriptions refreshed",
                f"not measured (--skip-refresh; gateway refreshes at 90% of {args.x2s_expires} s)",
            )
        else:
            profiling(True)
            t_ref = time.monotonic()
            cpu2 = cpu_seconds(pid)
            sip.call(
                "refresh", kind="s2x", rate=args.rate, expires=args.s2x_expires, window=args.window
            )

            def refreshed() -> bool:
                ss = sip.call("stats")
                s2x = ss["kinds"]["s2x"]["refreshed"]
                x2s = ss["ps_refreshed"]
                print(
                    f"    refreshing: X2S {x2s:,}/{n:,} (by the gateway, at 90% of "
                    f"{args.x2s_expires} s)  S2X {s2x:,}/{n:,}",
                    flush=True,
                )
                return bool(s2x >= n and x2s >= n)

            took = wait_for(
                "refreshing",
                refreshed,
                min(args.phase_timeout + args.x2s_expires, deadline - time.monotonic()),
                poll=5.0,
            )
            ss = sip.call("stats")
            xs = xmpp.call("stats")
            profiling(False)
            rss2 = read_rss_kib(pid) or 0
            figures.add(
                "subscriptions held and refreshed (X2S + S2X)",
                f"{ss['ps_refreshed']:,} + {ss['kinds']['s2x']['refreshed']:,} "
                f"(all refreshed {time.monotonic() - t0:.0f} s after the first was made)",
            )
            figures.add(
                "  gateway CPU per refresh",
                f"{(cpu_seconds(pid) - cpu2) / (2 * n) * 1e6:,.0f} µs (incl. idle {took:.0f} s)",
            )
            figures.add("gateway RSS after the refreshes", f"{rss2:,} KiB")
            figures.add(
                "  gateway retransmissions seen (NOTIFY / SUBSCRIBE)",
                f"{ss['counts']['w_notify_retransmit']:,} / {ss['counts']['ps_retransmit_in']:,}",
            )
            figures.add(
                "  failures: watcher SUBSCRIBE refused / NOTIFY to gateway / watcher timeouts",
                f"{ss['counts']['w_fail']} / {ss['counts']['notify_failed']} / "
                f"{ss['counts']['w_timeouts']}",
            )
            del t_ref, xs

        # -- fan-out ---------------------------------------------------------------------------
        w = args.watchers
        sip.call("fan", count=w, rate=args.rate, expires=args.s2x_expires, window=args.window)
        wait_for(
            "fan-out watchers",
            lambda: sip.call("stats")["kinds"].get("fan", {}).get("established", 0) >= w,
            120.0,
        )
        time.sleep(max(1.0, 2 * args.min_notify_interval))
        window = args.duration + 5.0
        sip.call("window", seconds=window)
        before_stats = sip.call("stats")
        before = before_stats["counts"]
        profiling(True)
        cpu3 = cpu_seconds(pid)
        spy = None
        if args.py_spy:
            # Native frames too: the compiled modules (sipxmpp.native) have no Python frames.
            # py-spy then pauses the gateway for each sample: its figures are not the
            # gateway's.
            spy = subprocess.Popen(
                [args.py_spy_bin, "record", "--pid", str(pid), "--rate", "200", "--native"]
                + ["--format", "raw", "--output", str(args.py_spy)]
                + ["--duration", str(int(window))],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=(workdir / "py-spy.log").open("wb"),
            )
        xmpp.call("fanout", watchers=w, rate=args.changes, duration=args.duration)
        time.sleep(window + 0.5)
        if spy is not None:
            spy.wait(timeout=60)
        cpu4 = cpu_seconds(pid)
        profiling(False)
        ss = sip.call("stats")
        xs = xmpp.call("stats")
        count = ss["fan_notifies"]
        span = (ss["fan_last"] or 0) - (ss["fan_first"] or 0)
        offered = int(xs["counts"]["fan_stanzas_out"])
        rate = count / span if span > 0 else 0.0
        figures.add(
            f"fan-out: {args.changes:g} changes/s x {w:,} watchers for {args.duration:g} s",
            f"{offered:,} stanzas in",
        )
        figures.add("  NOTIFYs with a PIDF to the watchers", f"{count:,} in {span:.2f} s")
        figures.add(
            "  NOTIFY/s fanned out to the watchers of one presentity",
            f"{rate:,.0f}/s (target >= 5,000)",
        )
        if args.min_notify_interval > 0:
            figures.add(
                "  ceiling set by the rate limit (watchers / min_notify_interval)",
                f"{w / args.min_notify_interval:,.0f}/s",
            )
        figures.add("  changes merged by the rate limit", f"{offered - count:,}")
        gap = ss["fan_min_gap"]
        p1 = ss["fan_gaps_p1"]
        figures.add(
            f"  gap between two NOTIFYs to one watcher, min / 1st percentile "
            f"(min_notify_interval {args.min_notify_interval:g} s; kernel receive times)",
            f"{gap:.3f} / {p1:.3f} s" if gap is not None and p1 is not None else "n/a",
        )
        figures.add(
            "  most NOTIFYs to one watcher within one second",
            f"{ss['fan_max_per_s']} (limit {1 / args.min_notify_interval:g} + 1)"
            if args.min_notify_interval > 0
            else str(ss["fan_max_per_s"]),
        )
        figures.add(
            "  gateway CPU per NOTIFY fanned out", f"{(cpu4 - cpu3) / max(count, 1) * 1e6:,.0f} µs"
        )
        figures.add("  gateway CPU share in the window", f"{(cpu4 - cpu3) / window:.0%}")
        refreshes = ss["ps_refreshes"] - before_stats["ps_refreshes"]
        figures.add(
            "  gateway refreshes of its own (X2S) subscriptions in the window",
            f"{refreshes:,} ({refreshes / window:,.0f}/s)",
        )
        if count == 0 and refreshes:
            figures.add(
                "  gateway CPU per refresh (--changes 0: the window's CPU over its refreshes)",
                f"{(cpu4 - cpu3) / refreshes * 1e6:,.0f} µs",
            )
        figures.add(
            "  NOTIFY retransmissions by the gateway in the window",
            f"{ss['counts']['w_notify_retransmit'] - before['w_notify_retransmit']:,}",
        )
        figures.add(
            "component link (re)connections over the whole run",
            f"{xs['counts']['handshakes']} (1 = never lost)",
        )
        t_stop = time.monotonic()
        code = gw.stop(timeout=STOP_TIMEOUT_S)
        figures.add(
            "gateway shutdown (SIGTERM: final store flush)",
            f"{time.monotonic() - t_stop:.1f} s, exit status {code}",
        )
        store = store_counts(db)
        figures.add("gateway store rows after shutdown (role/state: count)", json.dumps(store))
        return 0
    finally:
        if gw is not None and gw.running:
            code = gw.stop()
            if code != 0:
                print(f"gateway exited with {code}; log tail:\n{gw.log_tail()}", flush=True)
        xmpp.close()
        sip.close()
        if args.profile:
            phases = [p for p in PROFILED_PHASES if not (args.skip_refresh and p == "refresh")]
            for i, phase in enumerate(phases):
                done = Path(f"{args.profile}.{i}")
                if done.exists():
                    done.replace(f"{args.profile}.{phase}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--role", choices=("xmpp", "sip"), help=argparse.SUPPRESS)
    p.add_argument("--subs", type=int, default=50_000, help="X2S and S2X subscriptions, each")
    p.add_argument(
        "--rate",
        type=float,
        default=1000.0,
        help="ceiling on new subscriptions (and S2X refreshes) per second, each direction",
    )
    p.add_argument(
        "--window",
        type=int,
        default=200,
        help="subscriptions (and refreshes) in progress at once, each direction: the load "
        "follows the gateway's pace instead of overloading it",
    )
    p.add_argument("--watchers", type=int, default=1000, help="watchers of the one presentity")
    p.add_argument("--changes", type=float, default=10.0, help="presentity changes per second")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of changes")
    p.add_argument(
        "--min-notify-interval",
        type=float,
        default=0.1,
        help="presence.min_notify_interval (RFC 3856 §6.10 rate limit per watcher; at 0.1 s "
        "the limit allows 10,000 NOTIFY/s to 1,000 watchers, so the figure is the gateway's)",
    )
    p.add_argument(
        "--x2s-expires",
        type=int,
        default=120,
        help="presence.subscribe_expires (the gateway refreshes at 90%%)",
    )
    p.add_argument("--s2x-expires", type=int, default=900, help="Expires of the SIP watchers")
    p.add_argument(
        "--settle",
        type=float,
        default=40.0,
        help="seconds between establishing and the 'held' RSS reading (Timer J/K)",
    )
    p.add_argument(
        "--skip-refresh",
        action="store_true",
        help="go from 'held' straight to the fan-out; with a long --x2s-expires the fan-out "
        "then runs without the gateway's own refreshes of the held subscriptions (at 120 s, "
        "50,000 X2S subscriptions are refreshed at about 460/s, all through the fan-out)",
    )
    p.add_argument("--phase-timeout", type=float, default=600.0)
    p.add_argument(
        "--quick",
        action="store_true",
        help="2,000 + 2,000 subscriptions, 200 watchers, 5 s of changes",
    )
    p.add_argument(
        "--profile",
        type=Path,
        metavar="PREFIX",
        help="cProfile the gateway per phase into PREFIX.<phase>",
    )
    p.add_argument(
        "--tracemalloc",
        type=Path,
        metavar="PREFIX",
        help="trace the gateway's allocations; print what 'held' added, by line",
    )
    p.add_argument(
        "--census",
        type=Path,
        metavar="PREFIX",
        help="count the gateway's live objects by type at the baseline and when held; "
        "print what the subscriptions added",
    )
    p.add_argument(
        "--py-spy",
        type=Path,
        metavar="FILE",
        help="sample the gateway with py-spy (native frames) during the fan-out, raw format; "
        "summarise with benchmarks/pyspy_top.py",
    )
    p.add_argument("--py-spy-bin", default=shutil.which("py-spy") or "py-spy")
    p.add_argument("--workdir", type=Path)
    args = p.parse_args(argv)
    if args.role == "sip":
        asyncio.run(run_sip())
        return 0
    if args.role == "xmpp":
        asyncio.run(run_xmpp())
        return 0
    if args.quick:  # smaller defaults; options given explicitly still win
        given = {a.split("=", 1)[0] for a in (sys.argv[1:] if argv is None else argv)}
        for name, value in QUICK.items():
            if f"--{name.replace('_', '-')}" not in given:
                setattr(args, name, value)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    return orchestrate(args)


if __name__ == "__main__":
    raise SystemExit(main())
