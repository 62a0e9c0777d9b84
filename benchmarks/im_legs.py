"""Where the time of pager messages goes: one step of ``im_throughput.py``, split per leg
from a packet capture of its loopback traffic.

Run the benchmark with ``--keep --tcpdump FILE`` (it captures only the run's own ports),
then::

    .venv/bin/python benchmarks/im_legs.py --pcap FILE WORKDIR [--direction sip-xmpp]
        [--tag x2x1234] [--threshold 5]

XMPP -> SIP (the default): for every message of the step (the direction's last step unless
``--tag``) it takes four instants: the sender's timestamp in the body, the capture time of
the c2s segment that completes the stanza (sender -> Prosody), of the component-link segment
that completes it (Prosody -> gateway), of the SIP MESSAGE datagram (gateway -> SIPp UAS),
and the UAS's own receive timestamp. It prints per leg p50/p99/max:

* ``sender``: the load process between its timestamp and the write (its own scheduling);
* ``prosody``: Prosody reading, routing and writing (including any time its write is held
  by Nagle's algorithm: the segment is captured when it leaves);
* ``gateway``: the gateway, from the segment to the MESSAGE datagram;
* ``sipp``: the UAS until it timestamps the request.

SIP -> XMPP (``--direction sip-xmpp``): the SIPp UAC's timestamp in the body, the capture time
of its MESSAGE datagram, of the component-link segment that completes the stanza (gateway ->
Prosody), of the c2s segment that completes it (Prosody -> receiver), and the receiver's read
time; the legs are ``sipp`` (SIPp building and sending it), ``gateway``, ``prosody`` and
``receiver``.

Then, for XMPP -> SIP, the component link (RFC 793 ACK timing on loopback): how long the
gateway took to ACK each data segment of Prosody's, and how many of Prosody's segments left
right after such an ACK following a hold of more than :data:`NAGLE_HOLD_MS` (Nagle's algorithm waiting for the
ACK, RFC 896). A delayed ACK shows as an ACK delay of about Linux's TCP_DELACK_MIN (40 ms).
Last, the episodes: runs of messages above ``--threshold`` ms, with the leg that took most of
the worst one's time.

Timestamps are all wall clock of the same machine (``time.time()``, SIPp's gettimeofday and
the kernel's capture time). Standard library only; reads classic pcap files of ``lo``
(Ethernet framing) or ``any`` (Linux cooked framing).
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import re
import struct
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: Classic pcap magic numbers: microsecond and nanosecond timestamps (little-endian files).
PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
LINKTYPE_ETHERNET = 1
LINKTYPE_LINUX_SLL = 113
ETHERTYPE_IPV4 = 0x0800
IPPROTO_TCP = 6
IPPROTO_UDP = 17
TCP_FLAG_ACK = 0x10
SEQ_MOD = 1 << 32

#: A segment that leaves within this many ms of the gateway's ACK, after the previous one
#: waited longer than :data:`NAGLE_HOLD_MS` for that ACK, is counted as held by Nagle.
NAGLE_RELEASE_MS = 0.3
NAGLE_HOLD_MS = 2.0

#: Linux's minimum delayed-ACK timeout (TCP_DELACK_MIN, HZ/25): ACK delays from about this
#: value up are the delayed-ACK timer, not the gateway being busy.
DELAYED_ACK_MS = 30.0

#: Slow messages less than this far apart (by send time) belong to one episode.
EPISODE_GAP_S = 0.05

MESSAGE_END = b"</message>"
#: The UAS's log line. SIPp prints a variable holding 0 as nothing, so a MESSAGE received at
#: microsecond 0 ends in "<seconds> " and, stripped, lacks the last field: still a line.
UAS_LINE = re.compile(
    r"^rx ts ([0-9]+) ([0-9]+) n ([0-9]+) r ([A-Za-z0-9]+) ([0-9.]+)(?: ([0-9.]*))?$"
)


@dataclass(frozen=True, slots=True)
class Packet:
    time: float
    proto: int
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    payload: bytes


def read_pcap(path: Path) -> Iterator[Packet]:
    """IPv4 TCP and UDP packets of a classic pcap file."""
    with path.open("rb") as f:
        header = f.read(24)
        if len(header) < 24:
            return
        magic, _, _, _, _, _, linktype = struct.unpack("<IHHiIII", header)
        if magic not in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
            raise SystemExit(f"{path}: not a little-endian classic pcap file (pcapng?)")
        scale = 1e-9 if magic == PCAP_MAGIC_NS else 1e-6
        link_len = {LINKTYPE_ETHERNET: 14, LINKTYPE_LINUX_SLL: 16}.get(linktype)
        if link_len is None:
            raise SystemExit(f"{path}: link type {linktype} (capture on lo or any)")
        while len(record := f.read(16)) == 16:
            sec, frac, caplen, _ = struct.unpack("<IIII", record)
            frame = f.read(caplen)
            if struct.unpack("!H", frame[link_len - 2 : link_len])[0] != ETHERTYPE_IPV4:
                continue
            ip = frame[link_len:]
            ihl = (ip[0] & 0x0F) * 4
            total = struct.unpack("!H", ip[2:4])[0]
            proto = ip[9]
            l4 = ip[ihl:total]
            t = sec + frac * scale
            if proto == IPPROTO_TCP:
                sport, dport, seq, ack, offset, flags = struct.unpack("!HHIIBB", l4[:14])
                payload = l4[(offset >> 4) * 4 :]
                yield Packet(t, proto, sport, dport, seq, ack, flags, payload)
            elif proto == IPPROTO_UDP:
                sport, dport = struct.unpack("!HH", l4[:4])
                yield Packet(t, proto, sport, dport, 0, 0, 0, l4[8:])


@dataclass(slots=True)
class ByteStream:
    """One direction of a TCP connection, reassembled, with each byte's capture time."""

    segments: dict[int, tuple[float, bytes]] = field(default_factory=dict)
    data: bytes = b""
    ends: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)

    def add(self, t: float, seq: int, payload: bytes) -> None:
        if payload and seq not in self.segments:  # first copy only (retransmissions)
            self.segments[seq] = (t, payload)

    def assemble(self) -> None:
        if not self.segments:
            return
        # Sequence numbers wrap (RFC 793 §3.3): order them relative to the first segment
        # captured, which is at most half the sequence space away from every other one.
        ref = next(iter(self.segments)) - SEQ_MOD // 2
        first = min(self.segments, key=lambda s: (s - ref) % SEQ_MOD)
        chunks: list[bytes] = []
        size = 0
        for seq, (t, payload) in sorted(
            self.segments.items(), key=lambda kv: (kv[0] - first) % SEQ_MOD
        ):
            offset = (seq - first) % SEQ_MOD
            if offset + len(payload) <= size:
                continue
            payload = payload[max(0, size - offset) :]
            chunks.append(payload)
            size += len(payload)
            self.ends.append(size)
            self.times.append(t)
        self.data = b"".join(chunks)

    def time_at(self, offset: int) -> float:
        """Capture time of the segment carrying byte ``offset``."""
        return self.times[bisect.bisect_right(self.ends, offset)]


def id_marker(tag: str) -> re.Pattern[bytes]:
    """An XMPP -> SIP stanza's id: ``<tag>-<seq>`` (the sender picks it)."""
    return re.compile(rb"id=['\"]" + re.escape(tag.encode()) + rb"-([0-9]+)['\"]")


def body_marker(tag: str) -> re.Pattern[bytes]:
    """A message body's ``n <seq> r <tag>`` (SIP -> XMPP stanzas: the gateway picks the id)."""
    return re.compile(rb"n ([0-9]+) r " + re.escape(tag.encode()) + rb"\b")


def stanza_times(stream: ByteStream, marker: re.Pattern[bytes]) -> dict[int, float]:
    """Sequence number (``marker``'s group) -> capture time of the segment completing the
    message stanza the marker is found in."""
    out: dict[int, float] = {}
    for m in marker.finditer(stream.data):
        end = stream.data.find(MESSAGE_END, m.end())
        if end >= 0:
            out.setdefault(int(m.group(1)), stream.time_at(end + len(MESSAGE_END) - 1))
    return out


def percentiles(values: Sequence[float]) -> str:
    if not values:
        return "-"
    v = sorted(values)

    def rank(q: float) -> float:
        return v[max(1, min(len(v), int(-(-q * len(v) // 100)))) - 1]

    return f"p50 {rank(50):7.2f}  p99 {rank(99):7.2f}  max {v[-1]:7.1f}"


@dataclass(frozen=True, slots=True)
class Ports:
    c2s: int
    component: int
    sip: int
    uas: int


def workdir_ports(workdir: Path) -> Ports:
    prosody = (workdir / "prosody" / "prosody.cfg.lua").read_text()
    gateway = (workdir / "gateway.toml").read_text()

    def find(pattern: str, text: str) -> int:
        m = re.search(pattern, text)
        if m is None:
            raise SystemExit(f"{workdir}: no {pattern!r} (a workdir kept by im_throughput --keep?)")
        return int(m.group(1))

    return Ports(
        c2s=find(r"c2s_ports = \{ ([0-9]+)", prosody),
        component=find(r"component_ports = \{ ([0-9]+)", prosody),
        sip=find(r"udp_port = ([0-9]+)", gateway),
        uas=find(r'outbound_proxy = "sip:127\.0\.0\.1:([0-9]+)', gateway),
    )


def last_step_tag(workdir: Path, direction: str) -> str:
    """The last step of ``direction``: XMPP -> SIP steps keep a UAS log, SIP -> XMPP steps a
    receiver latency file."""
    prefix, suffix = ("x", ".uas.log") if direction == "xmpp-sip" else ("s", ".latency.txt")
    tags = [p.name[: -len(suffix)] for p in workdir.glob(f"{prefix}*{suffix}")]
    if not tags:
        raise SystemExit(f"{workdir}: no {direction} step ({prefix}*{suffix})")
    return max(tags, key=lambda t: int(re.match(r"[a-z]([0-9]+)", t).group(1)))  # type: ignore[union-attr]


def receiver_times(path: Path) -> dict[int, tuple[float, float]]:
    """Sequence number -> (SIPp's send time in the body, XMPP receiver's read time), from the
    receiver's ``<step>.latency.txt`` (``seq sent received``, first copy only)."""
    out: dict[int, tuple[float, float]] = {}
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) == 3:
            out.setdefault(int(fields[0]), (float(fields[1]), float(fields[2])))
    return out


def uas_times(path: Path, tag: str) -> dict[int, tuple[float, float]]:
    """Sequence number -> (send time in the body, UAS receive time), first copy only."""
    out: dict[int, tuple[float, float]] = {}
    for line in path.read_text(errors="replace").splitlines():
        m = UAS_LINE.match(line.strip())
        if m is None or m.group(4) != tag:
            continue
        seq = int(m.group(3))
        if seq not in out:
            tx = float(m.group(1)) + float(m.group(2) or 0) / 1e6
            rx = float(m.group(5)) + float(m.group(6) or 0) / 1e6
            out[seq] = (tx, rx)
    return out


def ack_delays(packets: Sequence[Packet], ports: Ports) -> tuple[list[float], int]:
    """Gateway ACK delay (ms) per Prosody data segment on the busiest component connection,
    and how many of Prosody's segments were released by an ACK after a Nagle hold."""
    conns: dict[int, int] = {}
    for p in packets:
        if p.proto == IPPROTO_TCP and p.sport == ports.component and p.payload:
            conns[p.dport] = conns.get(p.dport, 0) + 1
    if not conns:
        return [], 0
    gw = max(conns, key=lambda k: conns[k])
    pending: list[tuple[float, int]] = []  # (sent, end seq) of unacknowledged segments
    delays: list[float] = []
    last_ack: float | None = None
    last_wait = 0.0
    released = 0
    for p in packets:
        if p.proto != IPPROTO_TCP:
            continue
        if p.sport == ports.component and p.dport == gw and p.payload:
            if (
                last_ack is not None
                and (p.time - last_ack) * 1e3 < NAGLE_RELEASE_MS
                and last_wait > NAGLE_HOLD_MS
            ):
                released += 1
            pending.append((p.time, (p.seq + len(p.payload)) % SEQ_MOD))
        elif p.sport == gw and p.dport == ports.component and p.flags & TCP_FLAG_ACK:
            while pending and (p.ack - pending[0][1]) % SEQ_MOD < SEQ_MOD // 2:
                sent, _ = pending.pop(0)
                last_wait = (p.time - sent) * 1e3
                delays.append(last_wait)
            last_ack = p.time
    return delays, released


#: Per message: end to end (send, receive) times, and per leg its ms, in path order.
Split = tuple[dict[int, tuple[float, float]], dict[str, list[float]], dict[int, tuple[float, ...]]]


def tcp_times(
    packets: Sequence[Packet],
    keep: Callable[[Packet], bool],
    times: Callable[[ByteStream], dict[int, float]],
) -> dict[int, float]:
    """Sequence number -> capture time, over the TCP streams of the segments ``keep`` takes."""
    streams: dict[tuple[int, int], ByteStream] = {}
    for p in packets:
        if p.proto == IPPROTO_TCP and keep(p):
            streams.setdefault((p.sport, p.dport), ByteStream()).add(p.time, p.seq, p.payload)
    out: dict[int, float] = {}
    for stream in streams.values():
        stream.assemble()
        out.update(times(stream))
    return out


def message_datagram_times(
    packets: Sequence[Packet], keep: Callable[[Packet], bool], tag: str
) -> dict[int, float]:
    """Sequence number -> capture time of the first MESSAGE datagram ``keep`` takes."""
    body = body_marker(tag)
    out: dict[int, float] = {}
    for p in packets:
        if p.proto == IPPROTO_UDP and keep(p) and p.payload.startswith(b"MESSAGE "):
            if m := body.search(p.payload):
                out.setdefault(int(m.group(1)), p.time)
    return out


def split_legs(
    rows: dict[int, tuple[float, float]], names: Sequence[str], points: Sequence[dict[int, float]]
) -> Split:
    """Each message's legs: from its send time through ``points`` (in path order) to its
    receive time, for the messages seen at every point."""
    split: dict[int, tuple[float, ...]] = {}
    for seq, (tx, rx) in rows.items():
        if all(seq in point for point in points):
            instants = (tx, *(point[seq] for point in points), rx)
            split[seq] = tuple((b - a) * 1e3 for a, b in itertools.pairwise(instants))
    return rows, {name: [] for name in names}, split


def split_xmpp_sip(workdir: Path, packets: Sequence[Packet], ports: Ports, tag: str) -> Split:
    """XMPP sender -> Prosody -> gateway -> SIPp UAS."""
    rows = uas_times(workdir / f"{tag}.uas.log", tag)
    if not rows:
        raise SystemExit(f"no message of step {tag} in its UAS log")
    marker = id_marker(tag)
    points = [
        tcp_times(packets, lambda p: p.dport == ports.c2s, lambda s: stanza_times(s, marker)),
        tcp_times(packets, lambda p: p.sport == ports.component, lambda s: stanza_times(s, marker)),
        message_datagram_times(
            packets, lambda p: (p.sport, p.dport) == (ports.sip, ports.uas), tag
        ),
    ]
    return split_legs(rows, ("sender", "prosody", "gateway", "sipp"), points)


def split_sip_xmpp(workdir: Path, packets: Sequence[Packet], ports: Ports, tag: str) -> Split:
    """SIPp UAC -> gateway -> Prosody -> XMPP receiver."""
    rows = receiver_times(workdir / f"{tag}.latency.txt")
    if not rows:
        raise SystemExit(f"no message of step {tag} in its latency file")
    marker = body_marker(tag)
    points = [
        message_datagram_times(packets, lambda p: p.dport == ports.sip, tag),
        tcp_times(packets, lambda p: p.dport == ports.component, lambda s: stanza_times(s, marker)),
        tcp_times(packets, lambda p: p.sport == ports.c2s, lambda s: stanza_times(s, marker)),
    ]
    return split_legs(rows, ("sipp", "gateway", "prosody", "receiver"), points)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdir", type=Path, help="a working directory kept by --keep")
    parser.add_argument("--pcap", type=Path, required=True, help="capture of the run (--tcpdump)")
    parser.add_argument(
        "--direction",
        choices=("xmpp-sip", "sip-xmpp"),
        default="xmpp-sip",
        help="which direction's step to split (default: xmpp-sip)",
    )
    parser.add_argument("--tag", help="the step's tag (default: the direction's last step)")
    parser.add_argument("--threshold", type=float, default=5.0, help="slow message, ms")
    args = parser.parse_args(argv)
    ports = workdir_ports(args.workdir)
    tag = args.tag or last_step_tag(args.workdir, args.direction)
    packets = list(read_pcap(args.pcap))
    splitter = split_xmpp_sip if args.direction == "xmpp-sip" else split_sip_xmpp
    rows, legs, split = splitter(args.workdir, packets, ports, tag)
    for parts in split.values():
        for name, value in zip(legs, parts, strict=True):
            legs[name].append(value)
    total = [(rx - tx) * 1e3 for tx, rx in rows.values()]
    print(f"step {tag}: {len(rows)} messages, {len(split)} found on every leg")
    print(f"  {'end to end':<10} {percentiles(total)}")
    for name, values in legs.items():
        print(f"  {name:<10} {percentiles(values)}")

    if args.direction == "xmpp-sip":
        delays, released = ack_delays(packets, ports)
        slow_acks = sum(d >= DELAYED_ACK_MS for d in delays)
        print(
            f"component link: {len(delays)} Prosody segments; gateway ACK delay {percentiles(delays)};"
            f" >= {DELAYED_ACK_MS:g} ms (delayed-ACK timer): {slow_acks};"
            f" released by our ACK after a Nagle hold > {NAGLE_HOLD_MS:g} ms: {released}"
        )

    t0 = min(tx for tx, _ in rows.values())
    slow = sorted((tx, seq) for seq, (tx, rx) in rows.items() if (rx - tx) * 1e3 > args.threshold)
    episodes: list[list[int]] = []
    last = -1.0
    for tx, seq in slow:
        if episodes and tx - last < EPISODE_GAP_S:
            episodes[-1].append(seq)
        else:
            episodes.append([seq])
        last = tx
    print(f"episodes (messages over {args.threshold:g} ms): {len(episodes)}")
    for episode in episodes:
        worst = max(episode, key=lambda s: rows[s][1] - rows[s][0])
        tx, rx = rows[worst]
        where = ""
        if worst in split:
            parts = split[worst]
            leg = max(range(len(parts)), key=lambda i: parts[i])
            where = f"  most in {list(legs)[leg]} ({' / '.join(f'{x:.1f}' for x in parts)} ms)"
        print(
            f"  t+{tx - t0:7.3f} s  {len(episode):4d} msgs  worst #{worst} "
            f"{(rx - tx) * 1e3:6.1f} ms{where}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
