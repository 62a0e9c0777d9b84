"""Helpers for the provisioning integration tests: gateway settings, policies, raw SIP.

Everything binds to 127.0.0.1 with kernel-chosen ports. A gateway built here has SIP over
UDP and TLS (mutual TLS when a certificate is given), the provisioning HTTP and HTTPS
servers, and its XEP-0114 component pointed at a given Prosody (or at a closed port when
the test does not need XMPP).
"""

from __future__ import annotations

import asyncio
import itertools
import re
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sipxmpp.gateway.settings import Settings
from sipxmpp.provisioning import (
    ChatFeatures,
    ClearingHouse,
    Connectivity,
    ImMode,
    PeerNetworkPrivacy,
    PeerView,
    PresenceFeatures,
    ProvisioningDocument,
    ProvisioningPolicy,
    Visibility,
)
from support.certs import CertFiles

__all__ = [
    "document",
    "write_policy",
    "gateway_settings",
    "options_request",
    "UdpSip",
    "TlsSip",
    "header",
    "status_of",
    "body_of",
]

_n = itertools.count(1)


def document(
    domain: str,
    *,
    tls_only: bool = False,
    im_modes: Sequence[ImMode] = (ImMode.PAGE,),
    is_composing: bool = True,
    list_subscription: bool = False,
    n_way_chat: bool = False,
    visible_to: Sequence[str] | None = None,
) -> ProvisioningDocument:
    """A provisioning document for ``domain`` with the parameters the tests vary."""
    privacy = (
        PeerNetworkPrivacy()
        if visible_to is None
        else PeerNetworkPrivacy(visibility=Visibility.RESTRICTED, visible_to=tuple(visible_to))
    )
    return ProvisioningDocument(
        domain=domain,
        connectivity=Connectivity(dns_names=(domain, f"sip.{domain}"), srv=True, tls_only=tls_only),
        presence=PresenceFeatures(list_subscription=list_subscription),
        chat=ChatFeatures(
            im_modes=tuple(im_modes), is_composing=is_composing, n_way_chat=n_way_chat
        ),
        clearing_house=ClearingHouse(peer_network_privacy=privacy),
    )


def write_policy(
    path: Path,
    public: ProvisioningDocument,
    views: Sequence[tuple[str, Sequence[str], ProvisioningDocument]] = (),
) -> ProvisioningPolicy:
    """Write a JSON policy file (the format of examples/provisioning/policy.json)."""
    policy = ProvisioningPolicy(
        public=public,
        views=tuple(PeerView(name=n, peers=tuple(p), document=d) for n, p, d in views),
    )
    path.write_text(policy.model_dump_json(by_alias=True, indent=2), encoding="utf-8")
    return policy


def gateway_settings(
    *,
    domain: str,
    component: str,
    secret: str = "secret",
    xmpp_port: int,
    cert: CertFiles | None = None,
    policy: Path | None = None,
    require_client_certificate: bool = True,
    provisioning: dict[str, Any] | None = None,
    sip: dict[str, Any] | None = None,
) -> Settings:
    """Settings of one gateway for ``domain`` (SIP users) with ``component`` on XMPP."""
    tls: dict[str, Any] = {}
    if cert is not None:
        tls = {
            "port": 0,
            "certificate": str(cert.cert),
            "private_key": str(cert.key),
            "ca_file": str(cert.ca_cert),
            "require_client_certificate": require_client_certificate,
        }
    prov: dict[str, Any] = {"fetch": "off"}
    if policy is not None:
        prov.update({"policy": str(policy), "http_port": 0})
        if cert is not None:
            prov["https_port"] = 0
    prov.update(provisioning or {})
    return Settings.model_validate(
        {
            "sip": {
                "listen_host": "127.0.0.1",
                "udp_port": 0,
                "tcp_port": None,
                "t1": 0.05,
                "tls": tls,
                **(sip or {}),
            },
            "xmpp": {
                "component_jid": component,
                "secret": secret,
                "server_host": "127.0.0.1",
                "server_port": xmpp_port,
                "reconnect_min": 0.2,
                "reconnect_max": 1.0,
            },
            "domains": {"sip": [{"sip": domain, "xmpp": component}]},
            "provisioning": prov,
            # Presence (RFC 8048) is not what these tests look at: keep its store in memory.
            "presence": {"store_url": "sqlite://:memory:"},
            "log": {"level": "debug", "format": "text"},
        }
    )


def options_request(
    target: str,
    *,
    transport: str,
    port: int,
    accept: str | None = None,
    extra: str = "",
) -> bytes:
    """A raw OPTIONS request from a test UA listening on 127.0.0.1:``port``."""
    n = next(_n)
    lines = [
        f"OPTIONS {target} SIP/2.0",
        f"Via: SIP/2.0/{transport} 127.0.0.1:{port};branch=z9hG4bKprov{n};rport",
        f"From: <sip:tester@client.test>;tag=t{n}",
        f"To: <{target}>",
        f"Call-ID: prov-{n}@127.0.0.1",
        "CSeq: 1 OPTIONS",
        "Max-Forwards: 70",
    ]
    if accept is not None:
        lines.append(f"Accept: {accept}")
    head = "\r\n".join(lines) + "\r\n" + extra + "Content-Length: 0\r\n\r\n"
    return head.encode()


def header(msg: bytes, name: str) -> str | None:
    m = re.search(rb"^" + name.encode() + rb":[ \t]*(.*?)\r$", msg, re.M | re.I)
    return m.group(1).decode() if m else None


def status_of(msg: bytes) -> int:
    assert msg.startswith(b"SIP/2.0 "), msg[:80]
    return int(msg[8:11])


def body_of(msg: bytes) -> bytes:
    return msg.split(b"\r\n\r\n", 1)[1]


class UdpSip(asyncio.DatagramProtocol):
    """A SIP UA on a UDP socket (127.0.0.1, kernel port)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: Any = None

    @classmethod
    async def open(cls) -> UdpSip:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_datagram_endpoint(cls, local_addr=("127.0.0.1", 0))
        return proto

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queue.put_nowait(data)

    @property
    def port(self) -> int:
        return int(self.transport.get_extra_info("sockname")[1])

    async def ask(self, data: bytes, port: int, timeout: float = 10.0) -> bytes:
        self.transport.sendto(data, ("127.0.0.1", port))
        while True:
            msg = await asyncio.wait_for(self.queue.get(), timeout)
            if msg.startswith(b"SIP/2.0 "):
                return msg

    def close(self) -> None:
        self.transport.close()


class TlsSip:
    """A SIP UA on one TLS connection, presenting ``cert`` (mutual TLS) if given."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, ca: Path, cert: CertFiles | None) -> TlsSip:
        ctx = ssl.create_default_context(cafile=str(ca))
        ctx.check_hostname = False
        if cert is not None:
            ctx.load_cert_chain(str(cert.cert), str(cert.key))
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
        return cls(reader, writer)

    @property
    def port(self) -> int:
        return int(self.writer.get_extra_info("sockname")[1])

    async def ask(self, data: bytes, timeout: float = 10.0) -> bytes:
        self.writer.write(data)
        await self.writer.drain()
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        length = int(header(head, "Content-Length") or "0")
        body = await asyncio.wait_for(self.reader.readexactly(length), timeout) if length else b""
        return head + body

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ssl.SSLError, ConnectionError):
            pass
