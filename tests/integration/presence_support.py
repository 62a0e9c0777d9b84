"""Helpers for the presence integration tests: a raw SIP peer on UDP and a presence-aware
XMPP test client.

The SIP side is written by hand so that every header the gateway sends is visible: the
peer plays the SIP partition's proxy / presence server (it receives the gateway's SUBSCRIBEs
and sends NOTIFYs) and its SIP watchers (it sends SUBSCRIBEs and answers the gateway's
NOTIFYs).
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from support.xmpp_client import XmppTestClient

_n = itertools.count(1)

PIDF_NS = "urn:ietf:params:xml:ns:pidf"


# ------------------------------------------------------------------------------ SIP text


@dataclass
class Sip:
    """One parsed SIP message."""

    raw: bytes
    first: str
    headers: list[tuple[str, str]]
    body: bytes

    @classmethod
    def parse(cls, raw: bytes) -> Sip:
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode("utf-8").split("\r\n")
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and headers:
                name, value = headers[-1]
                headers[-1] = (name, value + " " + line.strip())
                continue
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
        return cls(raw, lines[0], headers, body)

    def get(self, name: str, default: Any = None) -> Any:
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]

    @property
    def is_request(self) -> bool:
        return not self.first.startswith("SIP/2.0")

    @property
    def method(self) -> str:
        return self.first.split(" ", 1)[0]

    @property
    def uri(self) -> str:
        return self.first.split(" ")[1]

    @property
    def status(self) -> int:
        return int(self.first.split(" ")[1])

    @property
    def call_id(self) -> str:
        return self.get("Call-ID") or ""

    @property
    def cseq(self) -> int:
        return int((self.get("CSeq") or "0").split()[0])

    def tag(self, header: str) -> str | None:
        m = re.search(r";\s*tag=([^;>\s]+)", self.get(header) or "")
        return m.group(1) if m else None

    def contact_uri(self) -> str | None:
        value = self.get("Contact")
        if value is None:
            return None
        m = re.search(r"<([^>]+)>", value)
        return m.group(1) if m else value.split(";")[0].strip()


def response_to(
    req: Sip,
    code: int,
    reason: str,
    *,
    to_tag: str | None = None,
    extra: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    content_type: str | None = None,
) -> bytes:
    lines = [f"SIP/2.0 {code} {reason}"]
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        for value in req.get_all(name):
            if name == "To" and to_tag and ";tag=" not in value:
                value = f"{value};tag={to_tag}"
            lines.append(f"{name}: {value}")
    for name, value in extra or []:
        lines.append(f"{name}: {value}")
    if body:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class SipPeer(asyncio.DatagramProtocol):
    """A SIP element on one UDP socket (127.0.0.1, port 0)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Sip] = asyncio.Queue()
        self.transport: Any = None
        self.gateway_port = 0
        self.log: list[Sip] = []

    @classmethod
    async def open(cls) -> SipPeer:
        loop = asyncio.get_running_loop()
        _, peer = await loop.create_datagram_endpoint(cls, local_addr=("127.0.0.1", 0))
        return peer

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        msg = Sip.parse(data)
        self.log.append(msg)
        self.queue.put_nowait(msg)

    @property
    def port(self) -> int:
        return int(self.transport.get_extra_info("sockname")[1])

    def send(self, data: bytes) -> None:
        self.transport.sendto(data, ("127.0.0.1", self.gateway_port))

    async def recv(self, predicate: Callable[[Sip], bool], timeout: float = 10.0) -> Sip:
        """The next message satisfying ``predicate``; others are dropped."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError("no matching SIP message")
            msg = await asyncio.wait_for(self.queue.get(), remaining)
            if predicate(msg):
                return msg

    async def request(
        self, method: str, *, uri_has: str = "", call_id: str | None = None, timeout: float = 10.0
    ) -> Sip:
        def ok(m: Sip) -> bool:
            return (
                m.is_request
                and m.method == method
                and uri_has in m.uri
                and (call_id is None or m.call_id == call_id)
            )

        return await self.recv(ok, timeout)

    async def response(
        self, call_id: str, cseq: int | None = None, *, final: bool = True, timeout: float = 10.0
    ) -> Sip:
        def ok(m: Sip) -> bool:
            return (
                not m.is_request
                and m.call_id == call_id
                and (cseq is None or m.cseq == cseq)
                and (not final or m.status >= 200)
            )

        return await self.recv(ok, timeout)

    async def nothing(self, predicate: Callable[[Sip], bool], within: float) -> None:
        try:
            msg = await self.recv(predicate, within)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected SIP message: {msg.first} {msg.headers}")


# ------------------------------------------------------------------------------ SIP roles


@dataclass
class Watcher:
    """A SIP watcher's subscription to an XMPP user (S2X), driven by hand."""

    peer: SipPeer
    watcher: str  # e.g. sip:alice@example.test
    target: str  # e.g. sip:bob@example.test
    call_id: str = field(default_factory=lambda: f"w{next(_n)}@127.0.0.1")
    from_tag: str = field(default_factory=lambda: f"wt{next(_n)}")
    cseq: int = 0
    to_tag: str | None = None
    remote_target: str | None = None
    event: str = "presence"

    def subscribe_bytes(
        self,
        expires: int | None = 3600,
        *,
        event: str | None = None,
        accept: str = "application/pidf+xml",
        new_dialog: bool = False,
    ) -> bytes:
        self.cseq += 1
        n = next(_n)
        uri = (
            self.target
            if (self.to_tag is None or new_dialog)
            else (self.remote_target or self.target)
        )
        to = f"<{self.target}>" + (f";tag={self.to_tag}" if self.to_tag and not new_dialog else "")
        lines = [
            f"SUBSCRIBE {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.peer.port};branch=z9hG4bKw{n};rport",
            f"From: <{self.watcher}>;tag={self.from_tag}",
            f"To: {to}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} SUBSCRIBE",
            "Max-Forwards: 70",
            f"Contact: <sip:{self.watcher.split(':', 1)[1].split('@')[0]}@127.0.0.1:{self.peer.port}>",
            f"Event: {event or self.event}",
            f"Accept: {accept}",
        ]
        if expires is not None:
            lines.append(f"Expires: {expires}")
        lines.append("Content-Length: 0")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def subscribe(self, expires: int | None = 3600, **kw: Any) -> Sip:
        """Send a SUBSCRIBE and return its final response (the dialog is recorded)."""
        self.peer.send(self.subscribe_bytes(expires, **kw))
        resp = await self.peer.response(self.call_id, self.cseq)
        if 200 <= resp.status < 300 and self.to_tag is None:
            self.to_tag = resp.tag("To")
            self.remote_target = resp.contact_uri()
        return resp

    async def notify(self, timeout: float = 10.0, *, answer: int = 200) -> Sip:
        """The next NOTIFY of this dialog, answered ``answer``."""
        msg = await self.peer.request("NOTIFY", call_id=self.call_id, timeout=timeout)
        self.peer.send(response_to(msg, answer, "OK" if answer == 200 else "Error"))
        return msg

    async def no_notify(self, within: float) -> None:
        await self.peer.nothing(
            lambda m: m.is_request and m.method == "NOTIFY" and m.call_id == self.call_id, within
        )


@dataclass
class Notifier:
    """The SIP presence server's side of one of the gateway's subscriptions (X2S)."""

    peer: SipPeer
    subscribe: Sip
    to_tag: str = field(default_factory=lambda: f"nt{next(_n)}")
    cseq: int = 0

    @property
    def call_id(self) -> str:
        return self.subscribe.call_id

    def answer(
        self,
        code: int = 200,
        reason: str = "OK",
        *,
        expires: int | None = None,
        extra: list[tuple[str, str]] | None = None,
        request: Sip | None = None,
    ) -> None:
        req = request or self.subscribe
        headers = list(extra or [])
        if 200 <= code < 300:
            headers.append(("Expires", req.get("Expires") if expires is None else str(expires)))
            headers.append(("Contact", f"<sip:ps@127.0.0.1:{self.peer.port}>"))
        self.peer.send(response_to(req, code, reason, to_tag=self.to_tag, extra=headers))

    def notify(
        self,
        state: str,
        body: bytes = b"",
        *,
        content_type: str = "application/pidf+xml",
        extra: list[tuple[str, str]] | None = None,
    ) -> int:
        """Send a NOTIFY in the dialog; returns its CSeq."""
        sub = self.subscribe
        self.cseq += 1
        n = next(_n)
        gw_contact = sub.contact_uri() or f"sip:gw@127.0.0.1:{self.peer.gateway_port}"
        from_value = (sub.get("To") or "").split(";tag=")[0] + f";tag={self.to_tag}"
        lines = [
            f"NOTIFY {gw_contact} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.peer.port};branch=z9hG4bKn{n};rport",
            f"From: {from_value}",
            f"To: {sub.get('From')}",
            f"Call-ID: {sub.call_id}",
            f"CSeq: {self.cseq} NOTIFY",
            "Max-Forwards: 70",
            f"Contact: <sip:ps@127.0.0.1:{self.peer.port}>",
            "Event: presence",
            f"Subscription-State: {state}",
        ]
        lines += [f"{k}: {v}" for k, v in extra or []]
        if body:
            lines.append(f"Content-Type: {content_type}")
        lines.append(f"Content-Length: {len(body)}")
        self.peer.send(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        return self.cseq

    async def notify_answered(self, state: str, body: bytes = b"", **kw: Any) -> Sip:
        cseq = self.notify(state, body, **kw)
        return await self.peer.response(self.call_id, cseq)


def pidf(
    entity: str,
    *tuples: tuple[str, str],
    note: str | None = None,
    activities: tuple[str, ...] = (),
    show: str | None = None,
    lang: str | None = None,
) -> bytes:
    """A small PIDF document: ``tuples`` are (id, basic)."""
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<presence xmlns="{PIDF_NS}" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" '
        f'xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="{entity}">',
    ]
    for tid, basic in tuples:
        status = f"<basic>{basic}</basic>"
        if show:
            status += f'<show xmlns="jabber:client">{show}</show>'
        parts.append(f'<tuple id="{tid}"><status>{status}</status>')
        if note:
            lang_attr = f' xml:lang="{lang}"' if lang else ""
            parts.append(f"<note{lang_attr}>{note}</note>")
        parts.append("</tuple>")
    if activities:
        acts = "".join(f"<rpid:{a}/>" for a in activities)
        parts.append(f'<dm:person id="p1"><rpid:activities>{acts}</rpid:activities></dm:person>')
    parts.append("</presence>")
    return "".join(parts).encode()


# ------------------------------------------------------------------------------ XMPP side


class PresenceClient(XmppTestClient):
    """An :class:`XmppTestClient` that also collects ``<presence/>`` stanzas and leaves
    subscription requests to the test (no automatic authorization)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.presences: asyncio.Queue[Any] = asyncio.Queue()
        self.seen: list[Any] = []
        roster = self.xmpp.roster
        roster.auto_authorize = None
        roster.auto_subscribe = False
        self.xmpp.register_handler(
            Callback(
                "test-client all presence",
                MatchXPath("{jabber:client}presence"),
                self._on_presence_stanza,
            )
        )

    def _on_presence_stanza(self, stanza: Any) -> None:
        self.seen.append(stanza)
        self.presences.put_nowait(stanza)

    def presence(
        self,
        to: str,
        ptype: str | None = None,
        *,
        show: str | None = None,
        status: str | None = None,
        priority: int | None = None,
        lang: str | None = None,
    ) -> None:
        p = self.xmpp.make_presence(
            pto=to, ptype=ptype, pshow=show, pstatus=status, ppriority=priority
        )
        if lang is not None:
            p["lang"] = lang
        p.send()

    def broadcast(
        self,
        *,
        show: str | None = None,
        status: str | None = None,
        priority: int | None = None,
        ptype: str | None = None,
        lang: str | None = None,
    ) -> None:
        p = self.xmpp.make_presence(pshow=show, pstatus=status, ppriority=priority, ptype=ptype)
        if lang is not None:
            p["lang"] = lang
        p.send()

    async def wait_presence(self, predicate: Callable[[Any], bool], timeout: float = 10.0) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError("no matching presence")
            p = await asyncio.wait_for(self.presences.get(), remaining)
            if predicate(p):
                return p

    async def no_presence(self, predicate: Callable[[Any], bool], within: float) -> None:
        try:
            p = await self.wait_presence(predicate, within)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected presence: {p}")


def from_is(jid: str, ptype: str | None = None) -> Callable[[Any], bool]:
    """Predicate: a presence from ``jid`` (bare or full prefix) of ``ptype`` ("" = available)."""

    def ok(p: Any) -> bool:
        frm = str(p["from"])
        if frm != jid and not frm.startswith(jid + "/"):
            return False
        if ptype is None:
            return True
        t = p["type"]
        if ptype == "":
            return t in ("", "available") or t in ("away", "xa", "dnd", "chat")
        return t == ptype

    return ok


# ------------------------------------------------------------------------------ gateway


COMPONENT = "sip.example.test"
SECRET = "presence-secret"


def presence_settings(prosody: Any, proxy_port: int, store_url: str, **presence: Any) -> Any:
    """Gateway settings for the presence tests: SIP users at example.test, XMPP users at
    example.test, the component sip.example.test, fast SIP timers (T1 = 50 ms: Timer N and
    Timer F are 3.2 s)."""
    from sipxmpp.gateway.settings import Settings

    sip: dict[str, Any] = {
        "listen_host": "127.0.0.1",
        "udp_port": 0,
        "tcp_port": None,
        "outbound_proxy": f"sip:127.0.0.1:{proxy_port};transport=udp",
        "t1": 0.05,
    }
    sip.update(presence.pop("sip", {}))
    return Settings.model_validate(
        {
            "sip": sip,
            "xmpp": {
                "component_jid": COMPONENT,
                "secret": SECRET,
                "server_host": "127.0.0.1",
                "server_port": prosody.component_port,
                "reconnect_min": 0.2,
                "reconnect_max": 1.0,
            },
            "domains": {
                "sip": [{"sip": "example.test", "xmpp": COMPONENT}],
                "xmpp": [{"xmpp": "example.test", "sip": "example.test"}],
            },
            "presence": {
                "store_url": store_url,
                "min_notify_interval": 0.0,
                "store_flush_interval": 0.2,
                "restore_spread": 0.0,
                "retry_after": 1,
                **presence,
            },
            "log": {"level": "debug", "format": "text"},
        }
    )


def record_sent_presence(gw: Any) -> list[Any]:
    """Record every presence the gateway hands to its XMPP edge (``gw.sent_presence``)."""
    sent: list[Any] = []
    edge = gw.xmpp
    original = edge.send_presence

    def send_presence(presence: Any, *, error: Any = None) -> None:
        original(presence, error=error)
        sent.append(presence)

    edge.send_presence = send_presence
    gw.sent_presence = sent
    return sent


async def wait_sent(gw: Any, predicate: Callable[[Any], bool], timeout: float = 10.0) -> Any:
    """The first presence the gateway sent that satisfies ``predicate`` (polling)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        for p in gw.sent_presence:
            if predicate(p):
                return p
        await asyncio.sleep(0.02)
    raise TimeoutError("the gateway sent no matching presence")
