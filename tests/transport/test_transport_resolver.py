"""RFC 3263 next-hop resolution against a DNS responder on 127.0.0.1 (through aiodns)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transport_dns_stub import DnsStub, DnsTable, start_dns_stub

from sipxmpp.gateway.sip import parse_sip_uri
from sipxmpp.gateway.sip.address import TransportAddress
from sipxmpp.gateway.transport import (
    AiodnsClient,
    DnsLookupError,
    ResolutionError,
    SipResolver,
    SrvRecord,
    StaticRoute,
)
from sipxmpp.gateway.transport.resolver import DNS_NEGATIVE_TTL, AddressRecord, DnsRecord, order_srv


def tls(host: str, port: int, domain: str) -> TransportAddress:
    return TransportAddress("tls", host, port, peer_identity=domain)


def tcp(host: str, port: int) -> TransportAddress:
    return TransportAddress("tcp", host, port)


def udp(host: str, port: int) -> TransportAddress:
    return TransportAddress("udp", host, port)


def example_table() -> DnsTable:
    """NAPTR -> SRV -> A for example.test, with all three transports on offer."""
    t = DnsTable()
    # Order beats preference: TCP (order 10) before TLS (order 20) whatever the preferences.
    t.naptr("example.test", 20, 10, "SIPS+D2T", "_sips._tcp.example.test")
    t.naptr("example.test", 10, 90, "SIP+D2U", "_sip._udp.example.test")
    t.naptr("example.test", 10, 50, "SIP+D2T", "_sip._tcp.example.test")
    t.naptr("example.test", 5, 1, "SIP+D2X", "_sip._xyz.example.test")  # unknown service
    t.srv("_sips._tcp.example.test", 0, 0, 5061, "sip1.example.test")
    t.srv("_sip._tcp.example.test", 0, 0, 5060, "sip1.example.test")
    t.srv("_sip._udp.example.test", 0, 0, 5070, "sip2.example.test")
    t.a("sip1.example.test", "192.0.2.1")
    t.a("sip2.example.test", "192.0.2.2")
    t.a("example.test", "192.0.2.9")
    # srv-only.test: no NAPTR, SRV for TCP and UDP.
    t.srv("_sip._tcp.srv-only.test", 10, 0, 5080, "b.srv-only.test")
    t.srv("_sip._tcp.srv-only.test", 5, 0, 5081, "a.srv-only.test")
    t.srv("_sip._udp.srv-only.test", 0, 0, 5082, "a.srv-only.test")
    t.a("a.srv-only.test", "192.0.2.10")
    t.a("b.srv-only.test", "192.0.2.11")
    # a-only.test: just an address.
    t.a("a-only.test", "192.0.2.20")
    t.a("a-only.test", "192.0.2.21")
    # dot.test: SRV target "." = service not offered; falls through to A.
    t.srv("_sip._udp.dot.test", 0, 0, 5060, ".")
    t.a("dot.test", "192.0.2.30")
    # ttl.test: a short TTL.
    t.a("short.test", "192.0.2.40", ttl=5)
    return t


@dataclass
class Env:
    table: DnsTable
    stub: DnsStub
    dns: AiodnsClient
    now: list[float] = field(default_factory=lambda: [0.0])

    def resolver(self, **kwargs: Any) -> SipResolver:
        kwargs.setdefault("rng", random.Random(7))
        return SipResolver(self.dns, clock=lambda: self.now[0], **kwargs)


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    table = example_table()
    stub, transport, port = await start_dns_stub(table)
    dns = AiodnsClient.create([f"127.0.0.1:{port}"], timeout=0.3, tries=1)
    yield Env(table, stub, dns)
    await dns.close()
    transport.close()


RESOLVE_CASES: list[tuple[str, dict[str, Any], list[TransportAddress]]] = [
    (
        "NAPTR order then preference, SRV, A",
        {"host": "example.test"},
        [tcp("192.0.2.1", 5060), udp("192.0.2.2", 5070), tls("192.0.2.1", 5061, "example.test")],
    ),
    (
        "sips: only SIPS+D2T",
        {"host": "example.test", "secure": True},
        [tls("192.0.2.1", 5061, "example.test")],
    ),
    (
        "transport=udp skips NAPTR",
        {"host": "example.test", "transport": "udp"},
        [udp("192.0.2.2", 5070)],
    ),
    (
        "transport=TCP case-insensitive",
        {"host": "example.test", "transport": "TCP"},
        [tcp("192.0.2.1", 5060)],
    ),
    (
        "sips with transport=tcp is TLS",
        {"host": "example.test", "secure": True, "transport": "tcp"},
        [tls("192.0.2.1", 5061, "example.test")],
    ),
    (
        "explicit port: A only, UDP",
        {"host": "example.test", "port": 5090},
        [udp("192.0.2.9", 5090)],
    ),
    (
        "explicit port with sips: TLS",
        {"host": "example.test", "port": 5091, "secure": True},
        [tls("192.0.2.9", 5091, "example.test")],
    ),
    ("IP literal: UDP default port", {"host": "192.0.2.50"}, [udp("192.0.2.50", 5060)]),
    ("IPv6 literal", {"host": "[2001:db8::1]", "port": 5070}, [udp("2001:db8::1", 5070)]),
    (
        "IP literal sips",
        {"host": "192.0.2.50", "secure": True},
        [tls("192.0.2.50", 5061, "192.0.2.50")],
    ),
    (
        "no NAPTR: SRV per transport, TCP before UDP, priority order",
        {"host": "srv-only.test"},
        [tcp("192.0.2.10", 5081), tcp("192.0.2.11", 5080), udp("192.0.2.10", 5082)],
    ),
    (
        "no SRV: A records, default port",
        {"host": "a-only.test"},
        [udp("192.0.2.20", 5060), udp("192.0.2.21", 5060)],
    ),
    (
        "SRV target '.': service not offered",
        {"host": "dot.test", "transport": "udp"},
        [udp("192.0.2.30", 5060)],
    ),
    (
        "maddr is the target, host the TLS identity",
        {"host": "example.test", "maddr": "a-only.test", "transport": "tls", "port": 5099},
        [tls("192.0.2.20", 5099, "example.test"), tls("192.0.2.21", 5099, "example.test")],
    ),
]


@pytest.mark.parametrize(
    ("name", "kwargs", "expected"), RESOLVE_CASES, ids=[c[0] for c in RESOLVE_CASES]
)
async def test_resolve(
    env: Env, name: str, kwargs: dict[str, Any], expected: list[TransportAddress]
) -> None:
    host = kwargs.pop("host")
    assert await env.resolver().resolve(host, **kwargs) == expected


async def test_ip_literal_needs_no_dns(env: Env) -> None:
    await env.resolver().resolve("192.0.2.1", port=5060)
    assert env.stub.queries == []


async def test_only_enabled_transports_are_offered(env: Env) -> None:
    resolver = env.resolver(transports=("tcp", "tls"))
    assert await resolver.resolve("example.test") == [
        tcp("192.0.2.1", 5060),
        tls("192.0.2.1", 5061, "example.test"),
    ]
    # Without UDP, a sip: URI with an explicit port goes over TCP instead.
    assert await resolver.resolve("a-only.test", port=5060) == [
        tcp("192.0.2.20", 5060),
        tcp("192.0.2.21", 5060),
    ]
    with pytest.raises(ResolutionError):
        await resolver.resolve("example.test", transport="udp")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"host": "example.test", "secure": True, "transport": "udp"},  # sips never over UDP
        {"host": "example.test", "transport": "sctp"},
        {"host": ""},
        {"host": "example.test", "port": 0},
        {"host": "a" * 300},
    ],
)
async def test_refused_targets(env: Env, kwargs: dict[str, Any]) -> None:
    host = kwargs.pop("host")
    with pytest.raises(ResolutionError):
        await env.resolver().resolve(host, **kwargs)


async def test_nxdomain_is_not_found(env: Env) -> None:
    with pytest.raises(ResolutionError) as info:
        await env.resolver().resolve("nowhere.test")
    assert info.value.not_found


async def test_dead_dns_server_is_a_failure_not_not_found(env: Env) -> None:
    env.table.silent.add("dead.test")
    with pytest.raises(ResolutionError) as info:
        await env.resolver().resolve("dead.test", port=5060)
    assert not info.value.not_found


class CountingDns:
    """In-process DNS client (c-ares keeps its own TTL cache on the real clock, so our
    cache's expiry is tested against this one, with the resolver's injected clock)."""

    def __init__(self, records: dict[tuple[str, str], list[DnsRecord]]) -> None:
        self.records = records
        self.queries: list[tuple[str, str]] = []

    async def query(self, name: str, rrtype: str) -> Sequence[DnsRecord]:
        self.queries.append((name, rrtype))
        return self.records.get((name, rrtype), [])


async def test_answers_are_cached_for_their_ttl(env: Env) -> None:
    resolver = env.resolver()
    first = await resolver.resolve("example.test")
    asked = len(env.stub.queries)
    assert await resolver.resolve("example.test") == first
    assert len(env.stub.queries) == asked, "second resolution must come from the cache"

    now = [0.0]
    dns = CountingDns({("short.test", "A"): [AddressRecord("192.0.2.40", 5)]})
    resolver = SipResolver(dns, clock=lambda: now[0])
    await resolver.resolve("short.test", port=5060)
    now[0] = 4.9
    await resolver.resolve("short.test", port=5060)
    assert dns.queries.count(("short.test", "A")) == 1
    now[0] = 5.0
    await resolver.resolve("short.test", port=5060)
    assert dns.queries.count(("short.test", "A")) == 2


async def test_negative_answers_are_cached_briefly() -> None:
    now = [0.0]
    dns = CountingDns({("a-only.test", "A"): [AddressRecord("192.0.2.20", 300)]})
    resolver = SipResolver(dns, clock=lambda: now[0])
    await resolver.resolve("a-only.test")  # NAPTR and SRV answer "no such record"
    asked = len(dns.queries)
    assert asked == 5  # NAPTR, three SRV, A
    await resolver.resolve("a-only.test")
    assert len(dns.queries) == asked
    now[0] = DNS_NEGATIVE_TTL + 1
    await resolver.resolve("a-only.test")
    assert len(dns.queries) == asked + 4  # the negative answers expired, the A did not


async def test_zero_ttl_is_not_cached() -> None:
    dns = CountingDns({("z.test", "A"): [AddressRecord("192.0.2.1", 0)]})
    resolver = SipResolver(dns)
    await resolver.resolve("z.test", port=1)
    await resolver.resolve("z.test", port=1)
    assert dns.queries.count(("z.test", "A")) == 2


async def test_cache_is_bounded() -> None:
    dns = CountingDns({(f"h{i}.test", "A"): [AddressRecord("192.0.2.1", 300)] for i in range(10)})
    resolver = SipResolver(dns, cache_entries=3)
    for i in range(10):
        await resolver.resolve(f"h{i}.test", port=5060)
    assert resolver.cache_size == 3
    await resolver.resolve("h9.test", port=5060)  # most recent: still cached
    assert dns.queries.count(("h9.test", "A")) == 1
    await resolver.resolve("h0.test", port=5060)  # evicted long ago
    assert dns.queries.count(("h0.test", "A")) == 2


async def test_static_override_comes_first(env: Env) -> None:
    static = {
        "example.test": [
            StaticRoute("tls", "127.0.0.1", 7061),
            StaticRoute("udp", "127.0.0.1", 7060),
            StaticRoute("tcp", "a-only.test", 7062),  # a name in a route is looked up
        ]
    }
    resolver = env.resolver(static=static)
    assert await resolver.resolve("example.test") == [
        tls("127.0.0.1", 7061, "example.test"),
        udp("127.0.0.1", 7060),
        tcp("192.0.2.20", 7062),
        tcp("192.0.2.21", 7062),
    ]
    assert ("example.test", "NAPTR") not in env.stub.queries
    assert await resolver.resolve("example.test", secure=True) == [
        tls("127.0.0.1", 7061, "example.test")
    ]
    with pytest.raises(ResolutionError):
        await SipResolver(None, static={"x.test": [StaticRoute("udp", "127.0.0.1", 1)]}).resolve(
            "x.test", transport="tcp"
        )


async def test_without_dns_only_static_and_literals() -> None:
    resolver = SipResolver(None, static={"peer.test": [StaticRoute("tcp", "127.0.0.1", 5080)]})
    assert await resolver.resolve("peer.test") == [tcp("127.0.0.1", 5080)]
    assert await resolver.resolve("127.0.0.1", transport="tcp") == [tcp("127.0.0.1", 5060)]
    with pytest.raises(ResolutionError) as info:
        await resolver.resolve("elsewhere.test")
    assert not info.value.not_found


async def test_resolve_uri(env: Env) -> None:
    resolver = env.resolver()
    uri = parse_sip_uri("sips:alice@example.test;Transport=tcp")
    assert await resolver.resolve_uri(uri) == [tls("192.0.2.1", 5061, "example.test")]
    uri = parse_sip_uri("sip:bob@example.test:5090;maddr=192.0.2.77;transport=tcp")
    assert await resolver.resolve_uri(uri) == [tcp("192.0.2.77", 5090)]


# --------------------------------------------------------------------------- RFC 2782 ordering


def srv(priority: int, weight: int, port: int) -> SrvRecord:
    return SrvRecord(priority, weight, port, f"h{port}.test", 60)


def test_srv_weights_bias_the_order() -> None:
    records = [srv(1, 90, 1), srv(1, 10, 2), srv(0, 0, 3)]
    rng = random.Random(1)
    first_of_priority_1 = [order_srv(records, rng)[1].port for _ in range(2000)]
    share = first_of_priority_1.count(1) / len(first_of_priority_1)
    assert 0.85 < share < 0.95  # weight 90 of 100
    assert all(order_srv(records, rng)[0].port == 3 for _ in range(50))  # priority 0 first


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 100), st.integers(1, 65535)),
        max_size=12,
    ),
    st.integers(0, 2**32),
)
def test_order_srv_is_a_priority_sorted_permutation(
    raw: list[tuple[int, int, int]], seed: int
) -> None:
    records = [SrvRecord(p, w, port, "t.test", 1) for p, w, port in raw]
    ordered = order_srv(records, random.Random(seed))
    assert sorted(ordered, key=repr) == sorted(records, key=repr)
    assert [r.priority for r in ordered] == sorted(r.priority for r in records)


# --------------------------------------------------------------------------- DNS client errors


class FailingDns:
    def __init__(self) -> None:
        self.calls = 0

    async def query(self, name: str, rrtype: str) -> Sequence[DnsRecord]:
        self.calls += 1
        if name == "ok.test" and rrtype == "A":
            return [AddressRecord("192.0.2.7", 30)]
        raise DnsLookupError("SERVFAIL")


async def test_failures_are_not_cached() -> None:
    dns = FailingDns()
    resolver = SipResolver(dns)
    with pytest.raises(ResolutionError):
        await resolver.resolve("bad.test", port=5060)
    with pytest.raises(ResolutionError):
        await resolver.resolve("bad.test", port=5060)
    assert dns.calls == 2
    # NAPTR and SRV failures fall through to A, as "no records" would.
    assert await resolver.resolve("ok.test") == [udp("192.0.2.7", 5060)]


async def test_equal_next_hops_are_one_shared_object() -> None:
    """Dialogs keep their next hop; 100,000 of them through one proxy share one address."""
    from sipxmpp.gateway.transport.resolver import ADDRESS_INTERN_ENTRIES, LITERAL_MEMO_ENTRIES

    resolver = SipResolver(None, static={"peer.test": [StaticRoute("udp", "127.0.0.1", 5080)]})
    first = await resolver.resolve("peer.test")
    again = await resolver.resolve("peer.test")
    assert first == again and first[0] is again[0]
    literal = await resolver.resolve("127.0.0.2", port=5070)
    assert literal[0] is (await resolver.resolve("127.0.0.2", port=5070))[0]
    # Bounded: a flood of distinct literals starts the table over instead of growing it.
    for port in range(1, ADDRESS_INTERN_ENTRIES + 10):
        await resolver.resolve("127.0.0.3", port=port)
    assert len(resolver._shared_hops) <= ADDRESS_INTERN_ENTRIES
    assert len(resolver._literal_hops) <= LITERAL_MEMO_ENTRIES
