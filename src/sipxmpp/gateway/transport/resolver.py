"""Locating the next SIP hop: RFC 3263 over DNS (aiodns), with a static override table.

Theory of operation
-------------------
Input is the parts of a SIP/SIPS URI that matter (host, port, ``transport`` and ``maddr``
parameters, and whether the scheme is ``sips``); output is an ordered list of
:class:`TransportAddress` to try in turn (RFC 3263 §4.3: on a transport failure or a 503
the client moves to the next one). For TLS targets ``peer_identity`` carries the SIP domain
the server's certificate must prove (RFC 5922 §7.3: the domain of the URI, never the SRV
target name), which the transport edge checks.

Steps, following RFC 3263 §4:

0. **Static override** (ours): a table ``domain -> [(transport, host, port), ...]`` is
   consulted first, for tests and for operators without DNS.
1. **Transport** (§4.1): a ``transport`` parameter wins (``sips`` over TCP means TLS;
   ``sips`` over UDP is refused); a numeric IP, or a name with an explicit port, means
   UDP for ``sip`` and TLS for ``sips``; otherwise NAPTR records decide: services
   ``SIP+D2U``/``SIP+D2T``/``SIPS+D2T`` with flag ``s``, by order then preference, only
   ``SIPS+D2T`` for ``sips``, only transports we support. Without usable NAPTR records, SRV
   records are queried for every supported transport (TLS, then TCP, then UDP: our gateway
   prefers TLS between domains); without those, A records with the default transport.
2. **Port and address** (§4.2): an IP literal is used as is; a name with a port is looked up
   with A (and AAAA if enabled); a name without a port goes through SRV (RFC 2782 ordering:
   priority ascending, weighted random within a priority; a target of "." means the service
   is not offered), then A/AAAA of each SRV target. Default ports: 5060, and 5061 for TLS.

Every DNS answer is cached for its TTL (clamped, and negative answers for a fixed time) in
a bounded LRU table. Server failures and timeouts are not cached. The DNS client is a
protocol: :class:`AiodnsClient` is the real one; tests can point it at a local responder.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from sipxmpp.gateway.sip.address import Transport, TransportAddress
from sipxmpp.gateway.sip.grammar import SipUri

__all__ = [
    "SipResolver",
    "AiodnsClient",
    "DnsClient",
    "DnsRecord",
    "NaptrRecord",
    "SrvRecord",
    "AddressRecord",
    "DnsLookupError",
    "ResolutionError",
    "StaticRoute",
    "order_srv",
    "DEFAULT_PORTS",
    "DNS_CACHE_ENTRIES",
    "DNS_MAX_TTL",
    "DNS_NEGATIVE_TTL",
    "MAX_TARGETS",
]

log = logging.getLogger(__name__)

RRType = Literal["NAPTR", "SRV", "A", "AAAA"]

#: RFC 3261 §19.1.2: 5060 for sip over UDP/TCP, 5061 for TLS.
DEFAULT_PORTS: Mapping[str, int] = {"udp": 5060, "tcp": 5060, "tls": 5061}

#: Cached DNS answers. A federation gateway talks to a bounded set of peer domains, each
#: needing a handful of records (NAPTR, up to three SRV, their A records); 4096 entries
#: cover hundreds of peers while a flood of distinct names cannot grow memory past it.
DNS_CACHE_ENTRIES = 4096

#: Upper bound on how long an answer is cached, whatever its TTL says (RFC 2181 §8 allows
#: TTLs up to 68 years; a day keeps a misconfigured record from sticking).
DNS_MAX_TTL = 86400

#: How long "no such record" is remembered. RFC 2308 would take it from the SOA minimum,
#: which aiodns does not surface for empty answers; a minute is a common resolver default.
DNS_NEGATIVE_TTL = 60

#: Targets returned for one URI. RFC 3263 §4.3 walks them on failure; beyond this many the
#: transaction timer (Timer B/F, 32 s) runs out long before the list would.
MAX_TARGETS = 16

#: Longest DNS name (RFC 1035 §3.1: 255 octets on the wire, 253 characters as text).
MAX_NAME_LENGTH = 253

#: aiodns/c-ares: time per try and number of tries. Two 2-second tries fail a dead DNS
#: server in 4 s, leaving most of Timer B/F for the SIP transaction itself.
#: Next hops handed out are shared: equal addresses resolved again are the same object, so
#: the dialogs that keep one (100,000 subscriptions through a few proxies) do not each hold
#: a copy. Bounded: past this many distinct addresses the table starts over.
ADDRESS_INTERN_ENTRIES = 1024

#: Answers for IP-literal targets remembered (RFC 3263 §4.1/§4.2: no DNS, so the answer is a
#: function of the URI's host, port, transport, scheme and maddr and of the fixed static
#: table and transports). The outbound proxy, and peers addressed by IP, are a handful of
#: keys; past this many distinct ones the table starts over.
LITERAL_MEMO_ENTRIES = 1024

DNS_TIMEOUT = 2.0
DNS_TRIES = 2

# RFC 3263 §4.1 and the IANA "SIP" NAPTR service registry.
_NAPTR_SERVICES: Mapping[str, Transport] = {"SIP+D2U": "udp", "SIP+D2T": "tcp", "SIPS+D2T": "tls"}
# RFC 3263 §4.1 SRV owner-name prefixes.
_SRV_PREFIX: Mapping[str, str] = {"tls": "_sips._tcp.", "tcp": "_sip._tcp.", "udp": "_sip._udp."}
# Our preference among transports when DNS gives no order (interworking spec: TLS first).
_PREFERENCE: tuple[Transport, ...] = ("tls", "tcp", "udp")


@dataclass(frozen=True, slots=True)
class NaptrRecord:
    order: int
    preference: int
    flags: str
    service: str
    regexp: str
    replacement: str
    ttl: int


@dataclass(frozen=True, slots=True)
class SrvRecord:
    priority: int
    weight: int
    port: int
    target: str
    ttl: int


@dataclass(frozen=True, slots=True)
class AddressRecord:
    address: str
    ttl: int


DnsRecord = NaptrRecord | SrvRecord | AddressRecord


class DnsLookupError(Exception):
    """The DNS query failed (timeout, server failure): unlike "no such name", not cached."""


class ResolutionError(Exception):
    """No usable next hop for the target.

    ``not_found`` is True when DNS said the target does not exist (RFC 7247 Table 2 maps
    that to SIP 404 / XMPP remote-server-not-found) rather than that it could not be
    resolved (408 / remote-server-timeout) or that the request is unroutable by policy.
    """

    def __init__(self, msg: str, *, not_found: bool = False) -> None:
        super().__init__(msg)
        self.not_found = not_found


class DnsClient(Protocol):
    """What the resolver needs from DNS."""

    async def query(self, name: str, rrtype: RRType) -> Sequence[DnsRecord]:
        """Records of ``rrtype`` at ``name``; empty for NXDOMAIN or no data.

        Raises :class:`DnsLookupError` when the answer could not be obtained.
        """
        ...


@dataclass(frozen=True, slots=True)
class StaticRoute:
    """One entry of the static override table."""

    transport: Transport
    host: str
    port: int

    def __post_init__(self) -> None:
        if self.transport not in DEFAULT_PORTS:
            raise ValueError(f"unknown transport {self.transport!r}")
        if not 0 < self.port <= 65535:
            raise ValueError(f"port out of range: {self.port}")
        if not self.host:
            raise ValueError("static route host must not be empty")


def _normalise_name(name: str) -> str:
    return name.strip().lower().rstrip(".")


#: Hosts whose "is it an IP literal" answer is remembered: the outbound proxy or next hop
#: is looked at for every relayed message, and parsing an address costs more than the rest
#: of the static path.
IP_LITERAL_CACHE_SIZE = 1024


@functools.lru_cache(maxsize=IP_LITERAL_CACHE_SIZE)
def _ip_literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def order_srv(records: Iterable[SrvRecord], rng: random.Random) -> list[SrvRecord]:
    """RFC 2782 selection order: priority ascending; within a priority, repeatedly pick a
    record with probability proportional to its weight (zero-weight records placed first,
    so they keep a small chance of being picked early)."""
    out: list[SrvRecord] = []
    by_priority: dict[int, list[SrvRecord]] = {}
    for rec in records:
        by_priority.setdefault(rec.priority, []).append(rec)
    for priority in sorted(by_priority):
        group = sorted(by_priority[priority], key=lambda r: r.weight != 0)
        while group:
            total = sum(r.weight for r in group)
            pick = rng.randint(0, total)
            running = 0
            chosen = len(group) - 1
            for i, rec in enumerate(group):
                running += rec.weight
                if running >= pick:
                    chosen = i
                    break
            out.append(group.pop(chosen))
    return out


class _TtlCache:
    """Bounded LRU of DNS answers with per-entry expiry."""

    def __init__(self, max_entries: int, clock: Callable[[], float]) -> None:
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[tuple[str, str], tuple[float, tuple[DnsRecord, ...]]] = (
            OrderedDict()
        )

    def get(self, key: tuple[str, str]) -> tuple[DnsRecord, ...] | None:
        hit = self._entries.get(key)
        if hit is None:
            return None
        expires, records = hit
        if self._clock() >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return records

    def put(self, key: tuple[str, str], records: tuple[DnsRecord, ...], ttl: float) -> None:
        if ttl <= 0 or self._max <= 0:
            return
        self._entries[key] = (self._clock() + ttl, records)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class SipResolver:
    """RFC 3263 resolution of a SIP URI's host into an ordered list of next hops."""

    def __init__(
        self,
        dns: DnsClient | None,
        *,
        static: Mapping[str, Sequence[StaticRoute]] | None = None,
        transports: Iterable[Transport] = ("udp", "tcp", "tls"),
        use_ipv6: bool = False,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        cache_entries: int = DNS_CACHE_ENTRIES,
    ) -> None:
        """``dns`` None: only the static table and IP literals resolve.

        ``transports``: the transports this gateway can use (its configured listeners).
        ``use_ipv6``: also query AAAA (off by default: the gateway binds IPv4 sockets).
        """
        self._dns = dns
        self._static = {_normalise_name(k): tuple(v) for k, v in (static or {}).items()}
        self._transports: frozenset[str] = frozenset(transports)
        unknown = self._transports - set(DEFAULT_PORTS)
        if unknown or not self._transports:
            raise ValueError(f"bad transports: {sorted(self._transports)}")
        self._use_ipv6 = use_ipv6
        self._rng = rng if rng is not None else random.Random()
        self._cache = _TtlCache(cache_entries, clock)
        self._shared_hops: dict[TransportAddress, TransportAddress] = {}
        self._literal_hops: dict[
            tuple[str, int | None, str | None, bool, str | None], TransportAddress
        ] = {}

    @property
    def cache_size(self) -> int:
        return len(self._cache)

    async def resolve(
        self,
        host: str,
        *,
        port: int | None = None,
        transport: str | None = None,
        secure: bool = False,
        maddr: str | None = None,
    ) -> list[TransportAddress]:
        """Next hops for ``sip[s]:...@host[:port];transport=..;maddr=..``, best first.

        Raises :class:`ResolutionError` when nothing usable is found.
        """
        key = (host, port, transport, secure, maddr)
        remembered = self._literal_hops.get(key)
        if remembered is not None:
            return [remembered]
        domain = _normalise_name(host.strip("[]"))
        target = _normalise_name((maddr or host).strip("[]"))
        if not domain or not target or len(target) > MAX_NAME_LENGTH:
            raise ResolutionError(f"bad target host {host!r}")
        if port is not None and not 0 < port <= 65535:
            raise ResolutionError(f"bad port {port}")
        wanted = self._wanted_transport(transport, secure)
        allowed: frozenset[str]
        if wanted is not None:
            allowed = frozenset({wanted})
        else:
            allowed = frozenset({"tls"}) & self._transports if secure else self._transports
        if not allowed:
            raise ResolutionError("no supported transport for a sips: URI (TLS is not enabled)")

        def make(t: Transport, address: str, p: int) -> TransportAddress:
            made = TransportAddress(t, address, p, peer_identity=domain if t == "tls" else None)
            shared = self._shared_hops.get(made)
            if shared is not None:
                return shared
            if len(self._shared_hops) >= ADDRESS_INTERN_ENTRIES:
                self._shared_hops.clear()
            self._shared_hops[made] = made
            return made

        # Queries that failed (as opposed to answering "no such record"): they decide
        # whether an empty outcome means "does not exist" or "could not be resolved".
        failures: list[str] = []

        # 0. Static override table.
        routes = self._static.get(target)
        if routes is not None:
            out: list[TransportAddress] = []
            for route in routes:
                if route.transport not in allowed:
                    continue
                for address in await self._addresses(route.host, failures):
                    out.append(make(route.transport, address, route.port))
            if not out:
                raise ResolutionError(f"static routes for {target} offer none of {sorted(allowed)}")
            return out[:MAX_TARGETS]

        default = self._default_transport(secure, allowed)
        # 1./2. Numeric IP: no DNS at all (RFC 3263 §4.1, §4.2).
        literal = _ip_literal(target)
        if literal is not None:
            t = wanted or default
            hop = make(t, literal, port or DEFAULT_PORTS[t])
            if len(self._literal_hops) >= LITERAL_MEMO_ENTRIES:
                self._literal_hops.clear()
            self._literal_hops[key] = hop
            return [hop]
        # Explicit port: A/AAAA only.
        if port is not None:
            t = wanted or default
            addresses = await self._addresses(target, failures, strict=True)
            return [make(t, a, port) for a in addresses][:MAX_TARGETS]

        if wanted is None:
            # NAPTR (RFC 3263 §4.1).
            naptrs = [
                r
                for r in await self._query(target, "NAPTR", failures)
                if isinstance(r, NaptrRecord)
                and "s" in r.flags.lower()
                and _NAPTR_SERVICES.get(r.service.upper()) in allowed
            ]
            naptrs.sort(key=lambda r: (r.order, r.preference))
            out = []
            for rec in naptrs:
                t = _NAPTR_SERVICES[rec.service.upper()]
                srv_name = _normalise_name(rec.replacement)
                out.extend(await self._srv_targets(srv_name, t, make, failures))
                if len(out) >= MAX_TARGETS:
                    break
            if out:
                return out[:MAX_TARGETS]
            # No (usable) NAPTR: SRV for each supported transport, ours in preference order.
            for t in _PREFERENCE:
                if t in allowed:
                    out.extend(await self._srv_targets(_SRV_PREFIX[t] + target, t, make, failures))
            if out:
                return out[:MAX_TARGETS]
        else:
            out = await self._srv_targets(_SRV_PREFIX[wanted] + target, wanted, make, failures)
            if out:
                return out[:MAX_TARGETS]
        # No SRV either: A/AAAA of the domain with the default port (RFC 3263 §4.2).
        t = wanted or default
        addresses = await self._addresses(target, failures, strict=True)
        return [make(t, a, DEFAULT_PORTS[t]) for a in addresses][:MAX_TARGETS]

    async def resolve_uri(self, uri: SipUri) -> list[TransportAddress]:
        """Resolve a parsed SIP/SIPS URI (its host, port, ``transport`` and ``maddr``)."""
        return await self.resolve(
            uri.host,
            port=uri.port,
            transport=uri.param("transport"),
            secure=uri.secure,
            maddr=uri.param("maddr"),
        )

    # ------------------------------------------------------------------ helpers
    def _wanted_transport(self, transport: str | None, secure: bool) -> Transport | None:
        if transport is None:
            return None
        t = transport.lower()
        if t == "tls" or (secure and t == "tcp"):
            chosen: Transport = "tls"
        elif t == "tcp":
            chosen = "tcp"
        elif t == "udp":
            if secure:
                raise ResolutionError("a sips: URI cannot use transport=udp (RFC 3261 §26.2.2)")
            chosen = "udp"
        else:
            raise ResolutionError(f"unsupported transport {transport!r}")
        if chosen not in self._transports:
            raise ResolutionError(f"transport {chosen} is not enabled")
        return chosen

    def _default_transport(self, secure: bool, allowed: frozenset[str]) -> Transport:
        # RFC 3263 §4.1: UDP for sip, TLS (over TCP) for sips. Without UDP here, TCP is the
        # closest substitute (same port conventions, RFC 3261 §18), then TLS.
        if secure:
            return "tls"
        for t in ("udp", "tcp", "tls"):
            if t in allowed:
                return t
        raise ResolutionError("no transport enabled")  # pragma: no cover - checked earlier

    async def _srv_targets(
        self,
        name: str,
        transport: Transport,
        make: Callable[[Transport, str, int], TransportAddress],
        failures: list[str],
    ) -> list[TransportAddress]:
        records = [r for r in await self._query(name, "SRV", failures) if isinstance(r, SrvRecord)]
        # RFC 2782: a single record with target "." means "service decidedly not available".
        usable = [r for r in records if _normalise_name(r.target)]
        out: list[TransportAddress] = []
        for rec in order_srv(usable, self._rng):
            for address in await self._addresses(_normalise_name(rec.target), failures):
                out.append(make(transport, address, rec.port))
            if len(out) >= MAX_TARGETS:
                break
        return out

    async def _addresses(
        self, host: str, failures: list[str], *, strict: bool = False
    ) -> list[str]:
        """IP addresses of ``host`` (A, then AAAA if enabled). ``strict``: raise when none."""
        literal = _ip_literal(host)
        if literal is not None:
            return [literal]
        out: list[str] = []
        types: tuple[RRType, ...] = ("A", "AAAA") if self._use_ipv6 else ("A",)
        for rrtype in types:
            records = await self._query(host, rrtype, failures)
            out.extend(r.address for r in records if isinstance(r, AddressRecord))
        if not out and strict:
            if failures:
                raise ResolutionError(f"{host} could not be resolved: {'; '.join(failures)}")
            raise ResolutionError(f"no address for {host}", not_found=True)
        return out

    async def _query(self, name: str, rrtype: RRType, failures: list[str]) -> tuple[DnsRecord, ...]:
        key = (name, rrtype)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        if self._dns is None:
            failures.append("no DNS client configured")
            return ()
        try:
            records = tuple(await self._dns.query(name, rrtype))
        except DnsLookupError as exc:
            log.warning("DNS %s %s failed: %s", rrtype, name, exc)
            failures.append(str(exc))
            return ()
        ttl = min((r.ttl for r in records), default=DNS_NEGATIVE_TTL)
        self._cache.put(key, records, min(max(ttl, 0), DNS_MAX_TTL))
        return records


class AiodnsClient:
    """:class:`DnsClient` over aiodns (c-ares).

    ``nameservers`` entries may carry a port (``"127.0.0.1:5353"``, c-ares'
    ``ares_set_servers_csv`` syntax); None uses the system configuration.
    """

    def __init__(self, resolver: Any) -> None:
        self._resolver = resolver

    @classmethod
    def create(
        cls,
        nameservers: Sequence[str] | None = None,
        *,
        timeout: float = DNS_TIMEOUT,
        tries: int = DNS_TRIES,
    ) -> AiodnsClient:
        """Build on the running event loop."""
        import aiodns

        return cls(
            aiodns.DNSResolver(
                nameservers=list(nameservers or []) or None, timeout=timeout, tries=tries
            )
        )

    async def close(self) -> None:
        await self._resolver.close()

    async def query(self, name: str, rrtype: RRType) -> Sequence[DnsRecord]:
        import aiodns
        import pycares

        try:
            result = await self._resolver.query_dns(name, rrtype)
        except aiodns.error.DNSError as exc:
            code = exc.args[0] if exc.args else None
            if code in (aiodns.error.ARES_ENOTFOUND, aiodns.error.ARES_ENODATA):
                return []
            raise DnsLookupError(f"{rrtype} {name}: {exc}") from exc
        wanted_type = {
            "NAPTR": pycares.QUERY_TYPE_NAPTR,
            "SRV": pycares.QUERY_TYPE_SRV,
            "A": pycares.QUERY_TYPE_A,
            "AAAA": pycares.QUERY_TYPE_AAAA,
        }[rrtype]
        out: list[DnsRecord] = []
        for rec in result.answer:
            if rec.type != wanted_type:
                continue  # e.g. the CNAME records of a chain
            data = rec.data
            if rrtype == "NAPTR":
                out.append(
                    NaptrRecord(
                        order=data.order,
                        preference=data.preference,
                        flags=str(data.flags),
                        service=str(data.service),
                        regexp=str(data.regexp),
                        replacement=str(data.replacement),
                        ttl=rec.ttl,
                    )
                )
            elif rrtype == "SRV":
                out.append(
                    SrvRecord(data.priority, data.weight, data.port, str(data.target), rec.ttl)
                )
            else:
                out.append(AddressRecord(str(data.addr), rec.ttl))
        return out
