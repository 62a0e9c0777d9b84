"""SIP over TLS: mutual authentication, RFC 5922 identities, outbound verification."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transport_fake_core import FakeCore, answer_ok, ok, options, until

from sipxmpp.gateway.sip.address import TransportAddress
from sipxmpp.gateway.transport import (
    ListenAddress,
    SipTransportManager,
    TlsSettings,
    TransportConfig,
    identity_matches,
    sip_identities,
)
from support.certs import CertFiles, TestPki

# --------------------------------------------------------------------------- pure: RFC 5922


def cert(*sans: tuple[str, str], cn: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"subject": ((("commonName", cn),),) if cn else ()}
    if sans:
        out["subjectAltName"] = sans
    return out


IDENTITY_CASES: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    (
        "sip URI wins over dNSName",
        cert(("DNS", "a.example"), ("URI", "sip:b.example")),
        ("b.example",),
    ),
    (
        "dNSName when no sip URI",
        cert(("DNS", "A.Example."), ("DNS", "c.example")),
        ("a.example", "c.example"),
    ),
    (
        "URI with a user part is not a domain",
        cert(("URI", "sip:alice@b.example"), ("DNS", "d.example")),
        ("d.example",),
    ),
    (
        "sips and http URIs are ignored",
        cert(("URI", "sips:b.example"), ("URI", "http://b.example")),
        (),
    ),
    (
        "URI parameters and port dropped",
        cert(("URI", "sip:b.example:5061;transport=tls")),
        ("b.example",),
    ),
    ("CN only without any SAN", cert(cn="cn.example"), ("cn.example",)),
    ("CN ignored when a SAN exists", cert(("IP Address", "127.0.0.1"), cn="cn.example"), ()),
    ("no certificate", {}, ()),
]


@pytest.mark.parametrize(
    ("name", "peer", "expected"), IDENTITY_CASES, ids=[c[0] for c in IDENTITY_CASES]
)
def test_sip_identities(name: str, peer: dict[str, Any], expected: tuple[str, ...]) -> None:
    assert sip_identities(peer) == expected


MATCH_CASES: list[tuple[str, dict[str, Any], bool]] = [
    ("EXAMPLE.com", cert(("URI", "sip:example.com")), True),
    ("example.com.", cert(("DNS", "example.com")), True),
    ("a.example.com", cert(("DNS", "*.example.com")), False),  # no wildcards, RFC 5922 §7.2
    ("example.com", cert(("DNS", "www.example.com")), False),
    ("127.0.0.1", cert(("IP Address", "127.0.0.1")), True),
    ("[::1]", cert(("IP Address", "0:0:0:0:0:0:0:1")), True),
    ("127.0.0.1", cert(("DNS", "127.0.0.1")), False),
    ("example.com", {}, False),
]


@pytest.mark.parametrize(("expected", "peer", "result"), MATCH_CASES)
def test_identity_matches(expected: str, peer: dict[str, Any], result: bool) -> None:
    assert identity_matches(expected, peer) is result


_SAN_KINDS = st.sampled_from(["DNS", "URI", "IP Address", "email", "DirName"])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(_SAN_KINDS, st.text(max_size=40)), max_size=6),
    st.one_of(st.none(), st.text(max_size=30)),
    st.text(max_size=40),
)
def test_identity_functions_are_total(
    sans: list[tuple[str, str]], cn: str | None, expected: str
) -> None:
    """Whatever a (verified) certificate holds, extraction and matching never raise,
    and a match is always one of the extracted identities (or an IP SAN)."""
    peer = cert(*sans, cn=cn)
    identities = sip_identities(peer)
    assert all(i == i.lower() for i in identities)
    if identity_matches(expected, peer) and identities:
        want = expected.strip("[]").strip().lower().rstrip(".")
        assert want in identities or any(kind == "IP Address" for kind, _ in sans)


# --------------------------------------------------------------------------- sockets


def tls_config(files: CertFiles, ca: TestPki, **kwargs: Any) -> TransportConfig:
    settings = TlsSettings(
        certfile=str(files.cert),
        keyfile=str(files.key),
        cafile=str(ca.ca_cert),
        require_client_certificate=kwargs.pop("require", True),
        allowed_peer_identities=frozenset(kwargs.pop("allowed", ())),
    )
    return TransportConfig(udp=None, tcp=None, tls_listen=ListenAddress(), tls=settings, **kwargs)


def client_ctx(ca: TestPki, files: CertFiles | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca.ca_cert))
    if files is not None:
        ctx.load_cert_chain(str(files.cert), str(files.key))
    return ctx


async def tls_exchange(port: int, ctx: ssl.SSLContext, tag: str) -> bytes:
    """Send one request; return what comes back before EOF/error/timeout (b"" if refused)."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="gw.example.test"),
            3,
        )
    except (ssl.SSLError, ConnectionError):
        return b""
    try:
        writer.write(options(tag))
        await writer.drain()
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
    except (ssl.SSLError, ConnectionError, asyncio.IncompleteReadError):
        return b""
    finally:
        writer.close()


async def test_mutual_tls_accepted_with_peer_identity(
    pki: TestPki, gw_cert: CertFiles, peer_cert: CertFiles
) -> None:
    core = FakeCore(responder=answer_ok)
    async with SipTransportManager(tls_config(gw_cert, pki), lambda b: core) as manager:
        reply = await tls_exchange(
            manager.local_addresses["tls"][1], client_ctx(pki, peer_cert), "m1"
        )
        assert reply == ok("m1")
        _, source = core.messages[0]
        assert source.transport == "tls"
        assert source.peer_identity == "peer.example.test"  # from the SAN URI, RFC 5922 §7.1
        assert source.connection is not None
        info = manager.connection_info(source.connection)
        assert info is not None and info.peer_identities == ("peer.example.test",)


@pytest.mark.parametrize("which", ["untrusted CA", "no certificate"])
async def test_mutual_tls_refuses_bad_clients(
    which: str, pki: TestPki, gw_cert: CertFiles, rogue_cert: CertFiles
) -> None:
    core = FakeCore(responder=answer_ok)
    async with SipTransportManager(tls_config(gw_cert, pki), lambda b: core) as manager:
        files = rogue_cert if which == "untrusted CA" else None
        reply = await tls_exchange(manager.local_addresses["tls"][1], client_ctx(pki, files), "x")
        assert reply == b""
        assert core.messages == [] and core.lost == [] and core.errors == []
        assert manager.connections() == []


async def test_optional_client_certificate(pki: TestPki, gw_cert: CertFiles) -> None:
    core = FakeCore(responder=answer_ok)
    async with SipTransportManager(
        tls_config(gw_cert, pki, require=False), lambda b: core
    ) as manager:
        reply = await tls_exchange(manager.local_addresses["tls"][1], client_ctx(pki, None), "anon")
        assert reply == ok("anon")
        assert core.messages[0][1].peer_identity is None


@pytest.mark.parametrize(
    ("allowed", "accepted"), [({"peer.example.test"}, True), ({"other.example"}, False)]
)
async def test_allowed_peer_identities(
    allowed: set[str], accepted: bool, pki: TestPki, gw_cert: CertFiles, peer_cert: CertFiles
) -> None:
    core = FakeCore(responder=answer_ok)
    config = tls_config(gw_cert, pki, allowed=allowed)
    async with SipTransportManager(config, lambda b: core) as manager:
        reply = await tls_exchange(
            manager.local_addresses["tls"][1], client_ctx(pki, peer_cert), "al"
        )
        assert (reply == ok("al")) is accepted
        assert bool(core.messages) is accepted


async def test_outbound_mutual_tls_between_two_gateways(
    pki: TestPki, gw_cert: CertFiles, peer_cert: CertFiles
) -> None:
    core_a = FakeCore()
    core_b = FakeCore(responder=answer_ok)
    async with (
        SipTransportManager(tls_config(gw_cert, pki), lambda b: core_a) as a,
        SipTransportManager(tls_config(peer_cert, pki), lambda b: core_b) as b,
    ):
        port_b = b.local_addresses["tls"][1]
        dest = TransportAddress("tls", "127.0.0.1", port_b, peer_identity="peer.example.test")
        core_a.queue(dest, options("s1"))
        a.transmit()
        await until(lambda: core_a.messages)
        # B saw A's proven identity; A saw B's; the answer came back on A's connection.
        assert core_b.messages[0][1].peer_identity == "gw.example.test"
        answer, source = core_a.messages[0]
        assert answer == ok("s1")
        assert source.peer_identity == "peer.example.test" and source.transport == "tls"
        (info,) = a.connections()
        assert info.outbound and source.connection == info.id
        # A second request to the same domain reuses the connection.
        core_a.queue(dest, options("s2"))
        a.transmit()
        await until(lambda: len(core_a.messages) == 2)
        assert len(a.connections()) == 1
        # The certificate has a sip: URI, so its dNSName proves nothing (RFC 5922 §7.1):
        # a request for that name needs (and fails to get) another connection.
        core_a.queue(
            TransportAddress("tls", "127.0.0.1", port_b, peer_identity="sip1.peer.example.test"),
            options("s3"),
        )
        a.transmit()
        await until(lambda: core_a.errors == [TransportAddress("tls", "127.0.0.1", port_b)])
        assert core_a.lost == []
        assert len(b.connections()) <= 2 and len(core_b.messages) == 2


@pytest.mark.parametrize("case", ["wrong identity", "untrusted server"])
async def test_outbound_tls_verification_failures(
    case: str, pki: TestPki, gw_cert: CertFiles, peer_cert: CertFiles, rogue_cert: CertFiles
) -> None:
    core_a = FakeCore()
    core_b = FakeCore(responder=answer_ok)
    server_files = rogue_cert if case == "untrusted server" else peer_cert
    server_config = tls_config(server_files, pki, require=False)
    async with (
        SipTransportManager(tls_config(gw_cert, pki), lambda b: core_a) as a,
        SipTransportManager(server_config, lambda b: core_b) as b,
    ):
        identity = "evil.example.test" if case == "wrong identity" else "peer.example.test"
        dest = TransportAddress(
            "tls", "127.0.0.1", b.local_addresses["tls"][1], peer_identity=identity
        )
        core_a.queue(dest, options("v"))
        a.transmit()
        await until(lambda: core_a.errors)
        assert core_a.errors == [dest.without_connection()] and core_a.lost == []
        await asyncio.sleep(0.05)
        assert core_b.messages == [], "no SIP byte may reach an unverified server"
        assert a.connections() == []


async def test_outbound_tls_to_an_ip_literal_checks_ip_san(
    pki: TestPki, gw_cert: CertFiles
) -> None:
    ip_cert = pki.issue("iponly", ips=["127.0.0.1"])
    core_a = FakeCore()
    core_b = FakeCore(responder=answer_ok)
    async with (
        SipTransportManager(tls_config(gw_cert, pki), lambda b: core_a) as a,
        SipTransportManager(tls_config(ip_cert, pki), lambda b: core_b) as b,
    ):
        core_a.queue(
            TransportAddress("tls", "127.0.0.1", b.local_addresses["tls"][1]), options("ip")
        )
        a.transmit()
        await until(lambda: core_a.messages)
        assert core_a.messages[0][1].peer_identity == "127.0.0.1"
