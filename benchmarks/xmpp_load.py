"""Lean XMPP load processes for the pager-mode IM benchmark: a sender and a receiver.

Both are plain-socket XMPP clients (RFC 6120) for a loopback Prosody that allows SASL PLAIN
without TLS (``allow_unencrypted_plain_auth``, as ``tests/support/prosody.py`` configures it):
stream header, ``<auth mechanism='PLAIN'/>``, stream restart, resource binding, session,
initial presence. No XML parser and no XMPP library: the point is that the load generator costs
as little CPU as possible, so that the gateway, not the load, is what is measured. The server
is trusted (a throwaway local Prosody); this is a measuring tool, not a client to reuse.

``send`` writes pre-built ``<message/>`` stanzas at a fixed rate (a count and a time bound,
both enforced), each body carrying its send time, sequence number and a step tag::

    ts <unix seconds> <microseconds> n <seq> r <tag>

and counts the stanza errors that come back. ``receive`` counts incoming ``<message/>``
stanzas whose body has that shape and the expected tag, and computes the delivery latency
(receive time minus the send time in the body; both wall clock on the same machine). SIPp
writes the same fields for the SIP -> XMPP direction (``benchmarks/sipp/pager_uac.xml``), its
send time as its ``[timestamp]`` keyword prints it: ``<date> <time> <seconds>.<microseconds>``
separated by tabs.

Each process prints ``READY`` on stdout once logged in (the receiver after its presence is
known to the server) and writes a JSON summary to ``--out`` when done.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import select
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

LOOPBACK = "127.0.0.1"

#: Bound for connecting and for each login round trip; a local Prosody answers in ms.
LOGIN_TIMEOUT_S = 15.0

#: Bytes asked for per ``recv``: large enough that a burst of stanzas costs one system call.
RECV_CHUNK = 256 * 1024

#: Largest run of bytes kept without a complete ``</message>`` (or login element): a stanza
#: of the benchmark is ~300 bytes, so this only trips on a broken stream.
MAX_PENDING_BYTES = 1024 * 1024

#: Shortest pause between two writes of the sender. At 5,000 msg/s that groups about five
#: stanzas per write, which keeps the load process's own CPU (and system calls) small next
#: to the gateway's; a stanza waits at most this long, and its timestamp is taken when it
#: is written, so latency figures are not affected.
SEND_TICK_S = 0.001

#: Bound on a blocked ``sendall``: the server not reading for this long ends the run.
SEND_TIMEOUT_S = 30.0

NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_SESSION = "urn:ietf:params:xml:ns:xmpp-session"

#: The body the benchmark writes, and the one SIPp writes (its ``[timestamp]``: local date and
#: time, then the Unix time with microseconds, tab-separated; the date and time are skipped).
BODY_RE = re.compile(
    rb"ts (?:[0-9]{4}-[0-9]{2}-[0-9]{2}\s[0-9:.]+\s)?([0-9.]+) ?([0-9.]*) n ([0-9]+) r ([A-Za-z0-9]+)"
)

MESSAGE_END = b"</message>"


def quickack(sock: socket.socket) -> None:
    """ACK what was read at once (Linux ``TCP_QUICKACK``, which the kernel keeps resetting).

    Without it, a server with Nagle's algorithm on (Prosody's default) waits for this
    client's delayed ACK (up to 40 ms) before its next small write: latency that belongs to
    the server/client pair, not to the gateway being measured.
    """
    option = getattr(socket, "TCP_QUICKACK", None)
    if option is not None:
        sock.setsockopt(socket.IPPROTO_TCP, option, 1)


class LoadError(RuntimeError):
    """The server refused the login or the stream broke."""


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of an ascending sequence."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), int(-(-q * len(sorted_values) // 100))))
    return sorted_values[rank - 1]


class RawXmppClient:
    """One c2s connection: login, then raw reads and writes."""

    def __init__(self, host: str, port: int, domain: str, user: str, password: str) -> None:
        self.domain = domain
        self.user = user
        self.password = password
        self.sock = socket.create_connection((host, port), timeout=LOGIN_TIMEOUT_S)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def _header(self) -> bytes:
        return (
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
            "xmlns:stream='http://etherx.jabber.org/streams' "
            f"to='{self.domain}' version='1.0'>"
        ).encode()

    def _read_until(self, pattern: re.Pattern[bytes]) -> re.Match[bytes]:
        deadline = time.monotonic() + LOGIN_TIMEOUT_S
        while True:
            m = pattern.search(self.buf)
            if m is not None:
                self.buf = self.buf[m.end() :]
                return m
            if b"<stream:error" in self.buf or b"</stream:stream>" in self.buf:
                raise LoadError(f"stream closed during login: {self.buf[-500:]!r}")
            if len(self.buf) > MAX_PENDING_BYTES:
                raise LoadError("login answer too large")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LoadError(f"login timed out waiting for {pattern.pattern!r}")
            self.sock.settimeout(remaining)
            data = self.sock.recv(RECV_CHUNK)
            if not data:
                raise LoadError("connection closed during login")
            # Login answers are ACKed at once too: the server's last one (the ping result)
            # left unACKed would hold its first message to us behind Nagle's algorithm until
            # our delayed-ACK timer fired, ~40 ms after login.
            quickack(self.sock)
            self.buf += data

    def login(self, resource: str) -> None:
        """RFC 6120 §6 (SASL PLAIN, RFC 4616) and §7 (bind), then initial presence."""
        self.sock.sendall(self._header())
        self._read_until(re.compile(rb"</stream:features>"))
        token = base64.b64encode(f"\0{self.user}\0{self.password}".encode()).decode()
        self.sock.sendall(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{token}</auth>".encode())
        m = self._read_until(re.compile(rb"<(success|failure)[^>]*?(/>|>.*?</\1>)", re.S))
        if m.group(1) != b"success":
            raise LoadError(f"SASL PLAIN refused for {self.user}: {m.group(0)!r}")
        self.sock.sendall(self._header())  # RFC 6120 §6.4.6: restart the stream
        self._read_until(re.compile(rb"</stream:features>"))
        self.sock.sendall(
            f"<iq type='set' id='bind1'><bind xmlns='{NS_BIND}'>"
            f"<resource>{resource}</resource></bind></iq>".encode()
        )
        m = self._read_until(re.compile(rb"<iq[^>]*id=['\"]bind1['\"][^>]*>"))
        if b"type='result'" not in m.group(0) and b'type="result"' not in m.group(0):
            raise LoadError(f"resource binding refused: {m.group(0)!r}")
        self.sock.sendall(
            f"<iq type='set' id='sess1'><session xmlns='{NS_SESSION}'/></iq>".encode()
        )
        self._read_until(re.compile(rb"<iq[^>]*id=['\"]sess1['\"]"))
        self.sock.sendall(b"<presence/>")
        # A ping round trip: once it is answered, the server has processed the presence.
        self.sock.sendall(
            f"<iq type='get' id='sync1' to='{self.domain}'><ping xmlns='urn:xmpp:ping'/></iq>".encode()
        )
        self._read_until(re.compile(rb"<iq[^>]*id=['\"]sync1['\"]"))

    def close(self) -> None:
        try:
            self.sock.settimeout(1.0)
            self.sock.sendall(b"</stream:stream>")
        except OSError:
            pass
        self.sock.close()


# --------------------------------------------------------------------------------- sender


@dataclass(frozen=True, slots=True)
class SendPlan:
    to: str
    rate: float
    count: int
    tag: str
    linger: float
    time_limit: float


def run_sender(client: RawXmppClient, plan: SendPlan) -> dict[str, object]:
    """Write ``plan.count`` stanzas at ``plan.rate``/s; count the errors that come back."""
    head = f"<message to='{plan.to}' type='chat' id='{plan.tag}-".encode()
    template = head + b"%d'><body>ts %d %d n %d r " + plan.tag.encode() + b"</body></message>"
    sock = client.sock
    sock.settimeout(SEND_TIMEOUT_S)
    errors = 0
    pending = client.buf
    sent = 0
    batches = 0
    max_lag = 0.0
    rate = plan.rate
    start = time.monotonic()
    wall_start = time.time()
    hard_stop = start + plan.time_limit

    def drain(timeout: float) -> None:
        nonlocal errors, pending
        readable, _, _ = select.select([sock], [], [], timeout)
        if not readable:
            return
        data = sock.recv(RECV_CHUNK)
        if not data:
            raise LoadError("server closed the stream")
        pending += data
        end = pending.rfind(MESSAGE_END)
        if end < 0:
            if len(pending) > MAX_PENDING_BYTES:
                raise LoadError("no complete stanza within the pending-bytes bound")
            return
        complete, pending = pending[: end + len(MESSAGE_END)], pending[end + len(MESSAGE_END) :]
        # Only the <message/> start tag of a bounce says type='error' (its <error/> child
        # says type='cancel', 'wait'...).
        errors += complete.count(b"type='error'") + complete.count(b'type="error"')

    while sent < plan.count:
        now = time.monotonic()
        if now > hard_stop:
            break
        due = min(plan.count, int((now - start) * rate) + 1)
        if due > sent:
            max_lag = max(max_lag, now - (start + sent / rate))
            wall = time.time()
            secs = int(wall)
            usecs = int((wall - secs) * 1_000_000)
            sock.sendall(b"".join(template % (i, secs, usecs, i) for i in range(sent, due)))
            sent = due
            batches += 1
        # Wake for the next stanza, but at most every SEND_TICK_S: at high rates a few
        # stanzas share one write (each still carries its own send time's second/µs).
        next_at = max(start + sent / rate, now + SEND_TICK_S)
        drain(max(0.0, next_at - time.monotonic()))
    end = time.monotonic()
    linger_until = min(hard_stop + plan.linger, end + plan.linger)
    while (left := linger_until - time.monotonic()) > 0:
        drain(left)
    return {
        "sent": sent,
        "errors": errors,
        "seconds": end - start,
        "wall_start": wall_start,
        "batches": batches,
        "max_lag_ms": max_lag * 1000.0,
    }


# ------------------------------------------------------------------------------- receiver


@dataclass(frozen=True, slots=True)
class ReceivePlan:
    tag: str
    expect: int
    idle: float
    time_limit: float
    #: Where to write "<seq> <send time> <receive time>" per message, if anywhere.
    dump: TextIO | None = None


def run_receiver(client: RawXmppClient, plan: ReceivePlan) -> dict[str, object]:
    """Count tagged messages until ``expect`` arrived, or ``idle`` s pass without one
    (after the first), or ``time_limit`` s pass in all."""
    sock = client.sock
    tag = plan.tag.encode()
    seen: set[int] = set()
    latencies: list[float] = []
    duplicates = 0
    others = 0
    errors = 0
    first_tx: float | None = None
    last_rx: float | None = None
    pending = client.buf
    start = time.monotonic()
    hard_stop = start + plan.time_limit
    last_activity = start
    closed = False
    while len(seen) < plan.expect:
        now = time.monotonic()
        if now >= hard_stop or (seen and now - last_activity >= plan.idle):
            break
        wait = min(hard_stop - now, plan.idle if seen else hard_stop - now)
        readable, _, _ = select.select([sock], [], [], max(0.0, wait))
        if not readable:
            continue
        data = sock.recv(RECV_CHUNK)
        rx = time.time()
        if not data:
            closed = True
            break
        quickack(sock)
        pending += data
        end = pending.rfind(MESSAGE_END)
        if end < 0:
            if len(pending) > MAX_PENDING_BYTES:
                raise LoadError("no complete stanza within the pending-bytes bound")
            continue
        complete, pending = pending[: end + len(MESSAGE_END)], pending[end + len(MESSAGE_END) :]
        for stanza in complete.split(MESSAGE_END)[:-1]:
            m = BODY_RE.search(stanza)
            if m is None or m.group(4) != tag:
                if b"type='error'" in stanza or b'type="error"' in stanza:
                    errors += 1
                else:
                    others += 1
                continue
            seq = int(m.group(3))
            if seq in seen:
                duplicates += 1
                continue
            seen.add(seq)
            tx = float(m.group(1)) + float(m.group(2) or 0.0) / 1_000_000.0
            latencies.append((rx - tx) * 1000.0)
            if plan.dump is not None:
                plan.dump.write(f"{seq} {tx:.6f} {rx:.6f}\n")
            first_tx = tx if first_tx is None else min(first_tx, tx)
            last_rx = rx
        last_activity = time.monotonic()
    latencies.sort()
    return {
        "received": len(seen),
        "duplicates": duplicates,
        "others": others,
        "errors": errors,
        "closed": closed,
        "first_tx": first_tx,
        "last_rx": last_rx,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": latencies[-1] if latencies else None,
    }


# ----------------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("send", "receive"))
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--port", type=int, required=True, help="the server's c2s port")
    parser.add_argument("--domain", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--resource", default="bench")
    parser.add_argument("--tag", required=True, help="alphanumeric step tag in every body")
    parser.add_argument("--out", required=True, help="JSON summary file")
    parser.add_argument("--to", help="send: the addressee JID")
    parser.add_argument("--rate", type=float, help="send: stanzas per second")
    parser.add_argument("--count", type=int, help="send: stanzas in all / receive: expected")
    parser.add_argument("--linger", type=float, default=2.0, help="send: s to wait for errors")
    parser.add_argument("--idle", type=float, default=5.0, help="receive: idle s that end it")
    parser.add_argument("--time-limit", type=float, required=True, help="hard bound, seconds")
    parser.add_argument("--dump", help="receive: write each message's send/receive times here")
    args = parser.parse_args(argv)
    if args.host != LOOPBACK:
        parser.error("the benchmark runs on 127.0.0.1 only")
    if not re.fullmatch(r"[A-Za-z0-9]+", args.tag):
        parser.error("--tag must be alphanumeric")
    if args.count is None or args.count < 1:
        parser.error("--count must be >= 1")
    client = RawXmppClient(args.host, args.port, args.domain, args.user, args.password)
    try:
        client.login(args.resource)
        print("READY", flush=True)
        if args.mode == "send":
            if not args.to or not args.rate or args.rate <= 0:
                parser.error("send needs --to and a positive --rate")
            result = run_sender(
                client,
                SendPlan(args.to, args.rate, args.count, args.tag, args.linger, args.time_limit),
            )
        else:
            dump = open(args.dump, "w", encoding="ascii") if args.dump else None  # noqa: SIM115
            try:
                result = run_receiver(
                    client, ReceivePlan(args.tag, args.count, args.idle, args.time_limit, dump)
                )
            finally:
                if dump is not None:
                    dump.close()
    finally:
        client.close()
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
