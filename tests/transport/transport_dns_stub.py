"""A minimal authoritative DNS responder on 127.0.0.1 for resolver tests.

It answers A, AAAA, SRV and NAPTR queries from a table, over UDP, with the wire format
written out by hand (RFC 1035 §4.1, RFC 2782 for SRV RDATA, RFC 3403 §4.1 for NAPTR
RDATA). Names it does not know get NXDOMAIN; known names without the asked type get an
empty NOERROR answer (NODATA). Names in ``silent`` are never answered (a dead server).
Every question is recorded in ``queries`` so tests can assert what was (not) asked.
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct
from dataclasses import dataclass, field

QTYPES = {"A": 1, "AAAA": 28, "SRV": 33, "NAPTR": 35}
QTYPE_NAMES = {v: k for k, v in QTYPES.items()}
CLASS_IN = 1
RCODE_NXDOMAIN = 3


def encode_name(name: str) -> bytes:
    out = bytearray()
    for label in name.rstrip(".").split("."):
        if label:
            raw = label.encode("ascii")
            out.append(len(raw))
            out += raw
    out.append(0)
    return bytes(out)


def _char_string(text: str) -> bytes:
    raw = text.encode("ascii")
    return bytes([len(raw)]) + raw


def rdata_a(address: str) -> bytes:
    return ipaddress.IPv4Address(address).packed


def rdata_aaaa(address: str) -> bytes:
    return ipaddress.IPv6Address(address).packed


def rdata_srv(priority: int, weight: int, port: int, target: str) -> bytes:
    return struct.pack("!HHH", priority, weight, port) + encode_name(target)


def rdata_naptr(
    order: int, preference: int, flags: str, service: str, regexp: str, replacement: str
) -> bytes:
    return (
        struct.pack("!HH", order, preference)
        + _char_string(flags)
        + _char_string(service)
        + _char_string(regexp)
        + encode_name(replacement)
    )


@dataclass
class DnsTable:
    """(lower-case name, type name) -> list of (ttl, rdata)."""

    records: dict[tuple[str, str], list[tuple[int, bytes]]] = field(default_factory=dict)
    silent: set[str] = field(default_factory=set)

    def add(self, name: str, rrtype: str, rdata: bytes, ttl: int = 300) -> None:
        self.records.setdefault((name.lower().rstrip("."), rrtype), []).append((ttl, rdata))

    def a(self, name: str, address: str, ttl: int = 300) -> None:
        self.add(name, "A", rdata_a(address), ttl)

    def aaaa(self, name: str, address: str, ttl: int = 300) -> None:
        self.add(name, "AAAA", rdata_aaaa(address), ttl)

    def srv(
        self, name: str, priority: int, weight: int, port: int, target: str, ttl: int = 300
    ) -> None:
        self.add(name, "SRV", rdata_srv(priority, weight, port, target), ttl)

    def naptr(
        self,
        name: str,
        order: int,
        preference: int,
        service: str,
        replacement: str,
        flags: str = "s",
        ttl: int = 300,
    ) -> None:
        self.add(
            name, "NAPTR", rdata_naptr(order, preference, flags, service, "", replacement), ttl
        )

    def known(self, name: str) -> bool:
        return any(key[0] == name for key in self.records)


class DnsStub(asyncio.DatagramProtocol):
    def __init__(self, table: DnsTable) -> None:
        self.table = table
        self.queries: list[tuple[str, str]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = self.answer(data)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)

    def answer(self, query: bytes) -> bytes | None:
        if len(query) < 12:
            return None
        qid, flags, qdcount = struct.unpack("!HHH", query[:6])
        if qdcount != 1:
            return None
        pos = 12
        labels: list[str] = []
        while True:
            length = query[pos]
            pos += 1
            if length == 0:
                break
            labels.append(query[pos : pos + length].decode("ascii"))
            pos += length
        qtype, qclass = struct.unpack("!HH", query[pos : pos + 4])
        pos += 4
        question = query[12:pos]
        name = ".".join(labels).lower()
        type_name = QTYPE_NAMES.get(qtype, str(qtype))
        self.queries.append((name, type_name))
        if name in self.table.silent:
            return None
        rcode = 0
        answers = self.table.records.get((name, type_name), [])
        if not answers and not self.table.known(name):
            rcode = RCODE_NXDOMAIN
        rd = flags & 0x0100
        out_flags = 0x8000 | 0x0400 | rd | 0x0080 | rcode
        header = struct.pack("!HHHHHH", qid, out_flags, 1, len(answers), 0, 0)
        body = bytearray(question)
        for ttl, rdata in answers:
            # NAME is a compression pointer to the question name at offset 12.
            body += struct.pack("!HHHIH", 0xC00C, qtype, CLASS_IN, ttl, len(rdata)) + rdata
        return header + bytes(body)


async def start_dns_stub(table: DnsTable) -> tuple[DnsStub, asyncio.DatagramTransport, int]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        lambda: DnsStub(table), local_addr=("127.0.0.1", 0)
    )
    port = transport.get_extra_info("sockname")[1]
    return proto, transport, port
