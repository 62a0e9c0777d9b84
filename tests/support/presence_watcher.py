"""A SIP presence watcher (RFC 6665 subscriber, RFC 3856 ``Event: presence``) for tests.

:class:`SipWatcher` is a small user agent on one UDP socket (127.0.0.1, port 0) that
subscribes to a presentity through a proxy, keeps the dialog the way RFC 3261 §12.1.2 says
(remote target from the 2xx Contact, route set from its Record-Route in reverse order,
``;lr`` loose routing, §16.12), answers every NOTIFY of the dialog with 200, records each one
once (retransmissions are answered again, not recorded twice), and can refresh or end the
subscription in the dialog. Its own requests are retransmitted like a non-INVITE client
transaction over UDP (RFC 3261 §17.1.2.2: every T1, doubling up to T2, until a final response
or 64*T1).

It is a test peer, not a product: one dialog per object, no authentication, no forking
(RFC 3856 §6.9 allows only one dialog per SUBSCRIBE anyway). Example::

    async with SipWatcher("sip:dave@example.test", "sip:bob@example.test",
                          proxy=("127.0.0.1", kam.port)) as dave:
        assert (await dave.subscribe(expires=30)).status == 200
        n = await dave.wait_notify(lambda n: n.state == "active" and n.body)
"""

from __future__ import annotations

import asyncio
import itertools
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Notify", "SipResponse", "SipWatcher"]

LOOPBACK = "127.0.0.1"

#: Largest datagram read (a UDP datagram's maximum).
MAX_DATAGRAM = 65_535

#: NOTIFYs kept per watcher: a test sees a handful; the bound keeps a runaway peer from growing
#: memory without limit.
MAX_NOTIFIES = 10_000

_counter = itertools.count(1)


@dataclass(frozen=True, slots=True)
class _Message:
    first: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @classmethod
    def parse(cls, data: bytes) -> _Message:
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("utf-8", errors="replace").split("\r\n")
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and headers:  # folded header line (RFC 3261 §7.3.1)
                name, value = headers[-1]
                headers[-1] = (name, f"{value} {line.strip()}")
                continue
            name, _, value = line.partition(":")
            headers.append((name.strip().lower(), value.strip()))
        return cls(lines[0], tuple(headers), body)

    def get(self, name: str) -> str | None:
        name = name.lower()
        for n, v in self.headers:
            if n == name:
                return v
        return None

    def get_all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for n, v in self.headers if n == name]

    @property
    def is_request(self) -> bool:
        return not self.first.startswith("SIP/2.0 ")

    @property
    def cseq(self) -> tuple[int, str]:
        number, _, method = (self.get("cseq") or "0 ?").partition(" ")
        return int(number), method.strip()


@dataclass(frozen=True, slots=True)
class SipResponse:
    """The final response to one of the watcher's requests."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    at: float

    def get(self, name: str) -> str | None:
        name = name.lower()
        for n, v in self.headers:
            if n == name:
                return v
        return None


@dataclass(frozen=True, slots=True)
class Notify:
    """One NOTIFY of the dialog, as first received."""

    at: float  #: the event loop's time of arrival
    cseq: int
    state: str  #: ``active``, ``pending`` or ``terminated`` (Subscription-State value)
    subscription_state: str  #: the whole header, parameters included
    content_type: str | None
    body: bytes
    via: tuple[str, ...]


def _tag(value: str | None) -> str | None:
    m = re.search(r";\s*tag=([^;>\s,]+)", value or "")
    return m.group(1) if m else None


def _uri(value: str) -> str:
    m = re.search(r"<([^>]+)>", value)
    return m.group(1) if m else value.split(";")[0].strip()


def _split_commas(values: list[str]) -> list[str]:
    """Record-Route values, one per entry (a header may list several, RFC 3261 §7.3.1)."""
    out: list[str] = []
    for value in values:
        out += [v.strip() for v in re.findall(r"<[^>]*>[^,]*|[^,<]+", value) if v.strip()]
    return out


def _hostport(uri: str) -> tuple[str, int]:
    m = re.match(r"sips?:(?:[^@]*@)?([^;:>?]+)(?::(\d+))?", uri)
    if m is None:
        raise ValueError(f"no host in {uri!r}")
    return m.group(1), int(m.group(2) or 5060)


class SipWatcher(asyncio.DatagramProtocol):
    """One watcher of one presentity, through ``proxy`` (see the module docstring).

    :param aor: the watcher's address of record (From), e.g. ``sip:dave@example.test``.
    :param target: the presentity (Request-URI and To of the initial SUBSCRIBE).
    :param proxy: where out-of-dialog requests go (the SIP partition's proxy), loopback only.
    :param t1, t2: RFC 3261 timer bases for the retransmissions.
    """

    def __init__(
        self,
        aor: str,
        target: str,
        *,
        proxy: tuple[str, int],
        t1: float = 0.5,
        t2: float = 4.0,
    ) -> None:
        if proxy[0] != LOOPBACK:
            raise ValueError(f"proxy {proxy!r} is not on {LOOPBACK}")
        self.aor = aor
        self.target = target
        self.proxy = proxy
        self.t1 = t1
        self.t2 = t2
        self.call_id = f"{secrets.token_hex(8)}@{LOOPBACK}"
        self.from_tag = secrets.token_hex(4)
        self.to_tag: str | None = None
        self.remote_target: str | None = None
        self.route_set: list[str] = []
        self._dialog = False
        self.local_cseq = 0
        self.notifies: list[Notify] = []
        self._seen_notify_cseqs: set[int] = set()
        self._pending: dict[int, asyncio.Future[SipResponse]] = {}
        self._arrived = asyncio.Event()
        self._transport: asyncio.DatagramTransport | None = None
        self._refresher: asyncio.Task[None] | None = None
        self.refresh_results: list[SipResponse | BaseException] = []

    # -- lifecycle --------------------------------------------------------------------------

    async def open(self) -> SipWatcher:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=(LOOPBACK, 0))
        return self

    def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        for fut in self._pending.values():
            if not fut.done():
                fut.cancel()
        if self._transport is not None:
            self._transport.close()

    async def __aenter__(self) -> SipWatcher:
        return await self.open()

    async def __aexit__(self, *exc_info: object) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.gather(self._refresher, return_exceptions=True)
        self.close()

    @property
    def port(self) -> int:
        assert self._transport is not None
        return int(self._transport.get_extra_info("sockname")[1])

    @property
    def contact(self) -> str:
        user = self.aor.split(":", 1)[1].split("@", 1)[0]
        return f"sip:{user}@{LOOPBACK}:{self.port}"

    # -- asyncio protocol -------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self._transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            msg = _Message.parse(data)
        except (ValueError, UnicodeError):
            return
        if msg.get("call-id") != self.call_id:
            return
        if msg.is_request:
            self._on_request(msg, addr)
        else:
            self._on_response(msg)

    def _on_request(self, msg: _Message, addr: tuple[str, int]) -> None:
        method = msg.first.split(" ", 1)[0]
        if method != "NOTIFY":
            self._answer(msg, addr, 405, "Method Not Allowed")
            return
        cseq, _ = msg.cseq
        self._answer(msg, addr, 200, "OK")
        if not self._dialog:
            # A NOTIFY may overtake the 2xx and then creates the dialog (RFC 6665 §4.1.2.4),
            # as a UAS would: the route set is its Record-Route in order (RFC 3261 §12.1.1).
            self._dialog = True
            self.to_tag = _tag(msg.get("from"))
            self.route_set = _split_commas(msg.get_all("record-route"))
            if msg.get("contact"):
                self.remote_target = _uri(msg.get("contact") or "")
        if cseq in self._seen_notify_cseqs or len(self.notifies) >= MAX_NOTIFIES:
            return  # a retransmission: answered again, recorded once
        self._seen_notify_cseqs.add(cseq)
        state_header = msg.get("subscription-state") or ""
        self.notifies.append(
            Notify(
                at=asyncio.get_running_loop().time(),
                cseq=cseq,
                state=state_header.split(";", 1)[0].strip().lower(),
                subscription_state=state_header,
                content_type=msg.get("content-type"),
                body=msg.body,
                via=tuple(msg.get_all("via")),
            )
        )
        self._arrived.set()

    def _on_response(self, msg: _Message) -> None:
        cseq, method = msg.cseq
        fut = self._pending.get(cseq)
        status = int(msg.first.split(" ", 2)[1])
        if fut is None or fut.done() or status < 200 or method != "SUBSCRIBE":
            return
        if 200 <= status < 300:
            if not self._dialog:
                # RFC 3261 §12.1.2: remote tag, target and route set (Record-Route reversed).
                self._dialog = True
                self.to_tag = _tag(msg.get("to"))
                self.route_set = list(reversed(_split_commas(msg.get_all("record-route"))))
            if msg.get("contact"):
                self.remote_target = _uri(msg.get("contact") or "")  # target refresh
        reason = msg.first.split(" ", 2)[2] if msg.first.count(" ") >= 2 else ""
        fut.set_result(SipResponse(status, reason, msg.headers, asyncio.get_running_loop().time()))

    def _answer(self, req: _Message, addr: tuple[str, int], status: int, reason: str) -> None:
        lines = [f"SIP/2.0 {status} {reason}"]
        for value in req.get_all("via"):
            lines.append(f"Via: {value}")
        lines.append(f"From: {req.get('from')}")
        to = req.get("to") or ""
        if _tag(to) is None:
            to += f";tag={self.from_tag}"
        lines += [f"To: {to}", f"Call-ID: {req.get('call-id')}", f"CSeq: {req.get('cseq')}"]
        lines.append("Content-Length: 0")
        self._send(("\r\n".join(lines) + "\r\n\r\n").encode(), addr)

    def _send(self, data: bytes, addr: tuple[str, int]) -> None:
        if addr[0] != LOOPBACK:
            raise ValueError("loopback only")
        if self._transport is not None:
            self._transport.sendto(data, addr)

    # -- requests -----------------------------------------------------------------------------

    def _subscribe_bytes(self, expires: int) -> tuple[bytes, tuple[str, int]]:
        self.local_cseq += 1
        in_dialog = self._dialog and self.remote_target is not None
        uri = self.remote_target if in_dialog and self.remote_target else self.target
        to = f"<{self.target}>" + (f";tag={self.to_tag}" if in_dialog else "")
        branch = f"z9hG4bK{secrets.token_hex(6)}{next(_counter)}"
        lines = [
            f"SUBSCRIBE {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {LOOPBACK}:{self.port};branch={branch};rport",
            f"From: <{self.aor}>;tag={self.from_tag}",
            f"To: {to}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.local_cseq} SUBSCRIBE",
            "Max-Forwards: 70",
            f"Contact: <{self.contact}>",
            "Event: presence",
            "Accept: application/pidf+xml",
            f"Expires: {expires}",
        ]
        destination = self.proxy
        if in_dialog:
            lines += [f"Route: {r}" for r in self.route_set]
            # Loose routing (RFC 3261 §12.2.1.1, §8.1.2): to the first route, else the target.
            first = _uri(self.route_set[0]) if self.route_set else (self.remote_target or "")
            destination = _hostport(first)
        lines.append("Content-Length: 0")
        return ("\r\n".join(lines) + "\r\n\r\n").encode(), destination

    async def _transaction(self, data: bytes, destination: tuple[str, int]) -> SipResponse:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[SipResponse] = loop.create_future()
        self._pending[self.local_cseq] = fut
        interval = self.t1
        deadline = loop.time() + 64 * self.t1  # Timer F
        try:
            while True:
                self._send(data, destination)
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise TimeoutError("no final response within Timer F (64*T1)")
                try:
                    return await asyncio.wait_for(asyncio.shield(fut), min(interval, remaining))
                except TimeoutError:
                    interval = min(2 * interval, self.t2)  # Timer E
        finally:
            self._pending.pop(self.local_cseq, None)

    async def subscribe(self, expires: int = 3600) -> SipResponse:
        """SUBSCRIBE (a new dialog the first time, a refresh in the dialog afterwards)."""
        data, destination = self._subscribe_bytes(expires)
        return await self._transaction(data, destination)

    async def unsubscribe(self) -> SipResponse:
        """``Expires: 0`` in the dialog (RFC 6665 §4.1.2.3)."""
        return await self.subscribe(0)

    def refresh_every(self, interval: float, expires: int) -> None:
        """Refresh in the dialog every ``interval`` seconds (results in ``refresh_results``)."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    self.refresh_results.append(await self.subscribe(expires))
                except (TimeoutError, OSError) as exc:
                    self.refresh_results.append(exc)

        self._refresher = asyncio.get_running_loop().create_task(loop())

    # -- waiting ------------------------------------------------------------------------------

    async def wait_notify(
        self, predicate: Callable[[Notify], bool], timeout: float = 10.0, *, after: int = 0
    ) -> tuple[int, Notify]:
        """The first recorded NOTIFY (index >= ``after``) satisfying ``predicate``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for i in range(after, len(self.notifies)):
                if predicate(self.notifies[i]):
                    return i, self.notifies[i]
            remaining = deadline - loop.time()
            if remaining <= 0:
                states = [n.subscription_state for n in self.notifies[after:]]
                raise TimeoutError(f"no matching NOTIFY; got {states}")
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                pass
