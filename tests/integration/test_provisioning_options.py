"""The SIP OPTIONS provisioning channel of a running gateway (conformance point 75).

Raw SIP over UDP and over mutual TLS against a real :class:`Gateway` (the XMPP side is not
needed: its component link just keeps retrying a closed port). Also the HTTP channel of the
same gateway, to check that both serve the same bytes (point 76), and the answer logic of
:class:`OptionsService` on its own for the cases sockets make awkward (oversize over UDP).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from sipxmpp.gateway.runtime.app import Gateway
from sipxmpp.gateway.runtime.provisioning import (
    MAX_UDP_RESPONSE_BYTES,
    OptionsService,
    ProvisioningConfigError,
    load_policy,
    sip_requester,
)
from sipxmpp.gateway.settings import ProvisioningSettings
from sipxmpp.gateway.sip.address import TransportAddress
from sipxmpp.gateway.sip.ids import RandomIds
from sipxmpp.gateway.sip.message import Response
from sipxmpp.gateway.sip.options import Capabilities
from sipxmpp.gateway.sip.parser import parse_message
from sipxmpp.provisioning import (
    MEDIA_TYPE_XML,
    Extension,
    LocalProvisioningError,
    ProvisioningDocument,
    ProvisioningPolicy,
    ProvisioningPublisher,
    parse_xml,
    to_xml,
)
from support.certs import CertFiles, TestPki, openssl_available
from support.prosody import free_tcp_port
from support.provisioning_gw import (
    TlsSip,
    UdpSip,
    body_of,
    document,
    gateway_settings,
    header,
    options_request,
    status_of,
    write_policy,
)

DOMAIN = "gw.test"
COMPONENT = "sip.gw.test"

PUBLIC = document(DOMAIN, im_modes=("page",))
PARTNERS = document(DOMAIN, im_modes=("page", "session"), n_way_chat=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    if not openssl_available():
        pytest.skip("the openssl command line tool is not installed")
    return TestPki.create(tmp_path_factory.mktemp("prov-pki") / "ca")


@pytest.fixture(scope="module")
def certs(pki: TestPki) -> dict[str, CertFiles]:
    return {
        "gw": pki.issue("gw", uris=[f"sip:{DOMAIN}"], dns=[DOMAIN]),
        "partner": pki.issue("partner", uris=["sip:partner.test"], dns=["partner.test"]),
        "other": pki.issue("other", dns=["other.test"]),
    }


@pytest.fixture
async def gateway(tmp_path: Path, certs: dict[str, CertFiles]) -> AsyncIterator[Gateway]:
    policy = tmp_path / "policy.json"
    write_policy(policy, PUBLIC, [("partners", ["partner.test"], PARTNERS)])
    settings = gateway_settings(
        domain=DOMAIN,
        component=COMPONENT,
        xmpp_port=free_tcp_port(),
        cert=certs["gw"],
        policy=policy,
        require_client_certificate=False,
    )
    async with Gateway(settings) as gw:
        yield gw


@pytest.fixture
async def ua() -> AsyncIterator[UdpSip]:
    client = await UdpSip.open()
    yield client
    client.close()


def _port(gw: Gateway, transport: str) -> int:
    return gw.sip_addresses[transport][1]


# RFC 3261 §11.2 and RFC 6665 §4.4.4 (the gateway serves the presence event package).
CAPABILITY_HEADERS = ("Allow", "Accept", "Supported", "Allow-Events")


async def test_75_options_without_accept_gets_the_usual_answer(
    gateway: Gateway, ua: UdpSip
) -> None:
    resp = await ua.ask(
        options_request(f"sip:{DOMAIN}", transport="UDP", port=ua.port), _port(gateway, "udp")
    )
    assert status_of(resp) == 200
    for name in CAPABILITY_HEADERS:
        assert header(resp, name) is not None, name
    assert "OPTIONS" in (header(resp, "Allow") or "")
    assert header(resp, "Content-Type") is None and body_of(resp) == b""


@pytest.mark.parametrize("accept", ["*/*", "application/sdp", "application/*", "text/plain"])
async def test_75_accept_without_our_type_by_name_gets_no_document(
    gateway: Gateway, ua: UdpSip, accept: str
) -> None:
    resp = await ua.ask(
        options_request(f"sip:{DOMAIN}", transport="UDP", port=ua.port, accept=accept),
        _port(gateway, "udp"),
    )
    assert status_of(resp) == 200 and body_of(resp) == b""


@pytest.mark.parametrize(
    "target",
    [
        f"sip:provisioning@{DOMAIN}",
        f"sip:{DOMAIN}",
        f"sip:bob@{DOMAIN}",
        "sip:provisioning@elsewhere.test",
    ],
)
async def test_75_options_with_accept_returns_the_document(
    gateway: Gateway, ua: UdpSip, target: str
) -> None:
    resp = await ua.ask(
        options_request(
            target, transport="UDP", port=ua.port, accept=f"application/sdp, {MEDIA_TYPE_XML}"
        ),
        _port(gateway, "udp"),
    )
    assert status_of(resp) == 200
    for name in CAPABILITY_HEADERS:
        assert header(resp, name) is not None, name
    assert header(resp, "Content-Type") == MEDIA_TYPE_XML
    assert parse_xml(body_of(resp)) == PUBLIC  # unidentified over UDP: the public view


async def test_75_allow_events_is_sent_when_the_gateway_has_event_packages() -> None:
    service, sent = _service(
        Capabilities(
            allow=("OPTIONS", "SUBSCRIBE"), accept=("text/plain",), allow_events=("presence",)
        )
    )
    request = _parse(
        options_request(f"sip:{DOMAIN}", transport="UDP", port=5999, accept=MEDIA_TYPE_XML)
    )
    resp = service.answer(request, TransportAddress("udp", "127.0.0.1", 5999))
    assert resp.status == 200
    assert resp.headers.get("Allow-Events") == "presence"
    assert resp.headers.get("Supported") == ""
    assert resp.headers.get("Content-Type") == MEDIA_TYPE_XML


async def test_75_mutual_tls_selects_the_peer_view(
    gateway: Gateway, pki: TestPki, certs: dict[str, CertFiles]
) -> None:
    cases = [(certs["partner"], PARTNERS), (certs["other"], PUBLIC), (None, PUBLIC)]
    for cert, expected in cases:
        conn = await TlsSip.open(_port(gateway, "tls"), pki.ca_cert, cert)
        try:
            resp = await conn.ask(
                options_request(
                    f"sip:provisioning@{DOMAIN}",
                    transport="TLS",
                    port=conn.port,
                    accept=MEDIA_TYPE_XML,
                )
            )
        finally:
            await conn.close()
        assert status_of(resp) == 200
        assert parse_xml(body_of(resp)) == expected, cert


async def test_76_options_and_http_serve_the_same_document(
    gateway: Gateway, ua: UdpSip, pki: TestPki, certs: dict[str, CertFiles]
) -> None:
    resp = await ua.ask(
        options_request(f"sip:{DOMAIN}", transport="UDP", port=ua.port, accept=MEDIA_TYPE_XML),
        _port(gateway, "udp"),
    )
    assert gateway.provisioning.http is not None
    async with aiohttp.ClientSession() as session:
        async with session.get(
            gateway.provisioning.http.base_url + "/.well-known/pres-im-provisioning"
        ) as r:
            assert r.status == 200
            http_body = await r.read()
    assert body_of(resp) == http_body
    # The same over mutual TLS: SIP and HTTPS with the partner's certificate.
    conn = await TlsSip.open(_port(gateway, "tls"), pki.ca_cert, certs["partner"])
    try:
        sip_tls = await conn.ask(
            options_request(f"sip:{DOMAIN}", transport="TLS", port=conn.port, accept=MEDIA_TYPE_XML)
        )
    finally:
        await conn.close()
    import ssl

    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    ctx.check_hostname = False
    ctx.load_cert_chain(str(certs["partner"].cert), str(certs["partner"].key))
    assert gateway.provisioning.https is not None
    async with aiohttp.ClientSession() as session:
        async with session.get(
            gateway.provisioning.https.base_url + "/pres-im-provisioning", ssl=ctx
        ) as r:
            assert r.status == 200 and r.headers["Cache-Control"].startswith("private")
            https_body = await r.read()
    assert body_of(sip_tls) == https_body
    assert parse_xml(https_body) == PARTNERS


async def test_75_peer_network_privacy_refuses_with_403(
    tmp_path: Path, pki: TestPki, certs: dict[str, CertFiles], ua: UdpSip
) -> None:
    policy = tmp_path / "policy.json"
    write_policy(policy, document(DOMAIN, visible_to=["partner.test", "third.test"]))
    settings = gateway_settings(
        domain=DOMAIN,
        component=COMPONENT,
        xmpp_port=free_tcp_port(),
        cert=certs["gw"],
        policy=policy,
        require_client_certificate=False,
    )
    async with Gateway(settings) as gw:
        # Unidentified (UDP): refused; the usual answer without Accept is unchanged.
        resp = await ua.ask(
            options_request(f"sip:{DOMAIN}", transport="UDP", port=ua.port, accept=MEDIA_TYPE_XML),
            _port(gw, "udp"),
        )
        assert status_of(resp) == 403 and body_of(resp) == b""
        resp = await ua.ask(
            options_request(f"sip:{DOMAIN}", transport="UDP", port=ua.port), _port(gw, "udp")
        )
        assert status_of(resp) == 200
        # The partner's certificate: allowed, and it sees only its own visible-to entry.
        conn = await TlsSip.open(_port(gw, "tls"), pki.ca_cert, certs["partner"])
        try:
            resp = await conn.ask(
                options_request(
                    f"sip:{DOMAIN}", transport="TLS", port=conn.port, accept=MEDIA_TYPE_XML
                )
            )
        finally:
            await conn.close()
        assert status_of(resp) == 200
        seen = parse_xml(body_of(resp)).clearing_house.peer_network_privacy
        assert seen.visible_to == ("partner.test",)
        # Another certificate: refused.
        conn = await TlsSip.open(_port(gw, "tls"), pki.ca_cert, certs["other"])
        try:
            resp = await conn.ask(
                options_request(
                    f"sip:{DOMAIN}", transport="TLS", port=conn.port, accept=MEDIA_TYPE_XML
                )
            )
        finally:
            await conn.close()
        assert status_of(resp) == 403


# -- OptionsService without sockets --------------------------------------------------------


def _parse(data: bytes) -> object:
    return parse_message(data)


def _service(
    caps: Capabilities | None = None, policy: ProvisioningPolicy | None = None
) -> tuple[OptionsService, list[Response]]:
    sent: list[Response] = []
    publisher = ProvisioningPublisher(policy or ProvisioningPolicy(public=PUBLIC))
    service = OptionsService(
        send_response=sent.append,
        capabilities=lambda: (
            caps or Capabilities(allow=("OPTIONS", "MESSAGE"), accept=("text/plain",))
        ),
        publisher=lambda: publisher,
        requester_of=lambda source: sip_requester(source, None),
        ids=RandomIds(),
    )
    return service, sent


def test_a_document_too_large_for_udp_is_refused_with_advice() -> None:
    def padded(n: int) -> ProvisioningDocument:
        return PUBLIC.model_copy(
            update={
                "extensions": tuple(
                    Extension(name=f"urn:example:pad:{i}", values=tuple("x" * n for _ in range(4)))
                    for i in range(32)
                )
            }
        )

    def publishable(n: int) -> bool:
        try:
            to_xml(padded(n))
        except LocalProvisioningError:
            return False
        return True

    # The largest padding that still makes a publishable document (<= 64 KiB, each step is
    # 128 bytes): with the SIP headers, the answer no longer fits one UDP datagram.
    size = 500
    while not publishable(size):
        size -= 1
    big = padded(size)
    assert len(to_xml(big)) + 400 > MAX_UDP_RESPONSE_BYTES
    service, _ = _service(policy=ProvisioningPolicy(public=big))
    request = _parse(
        options_request(f"sip:{DOMAIN}", transport="UDP", port=5999, accept=MEDIA_TYPE_XML)
    )
    resp = service.answer(request, TransportAddress("udp", "127.0.0.1", 5999))  # type: ignore[arg-type]
    assert resp.status == 500 and "TCP or TLS" in (resp.headers.get("Warning") or "")
    over_tls = service.answer(request, TransportAddress("tls", "127.0.0.1", 5999))  # type: ignore[arg-type]
    assert over_tls.status == 200 and parse_xml(over_tls.body) == big


def test_requester_comes_only_from_tls_identities() -> None:
    assert (
        sip_requester(TransportAddress("udp", "127.0.0.1", 1, peer_identity="x.test"), None) is None
    )
    assert sip_requester(TransportAddress("tls", "127.0.0.1", 1), None) is None
    r = sip_requester(TransportAddress("tls", "127.0.0.1", 1, peer_identity="Partner.Test."), None)
    assert r is not None and r.domains == ("partner.test",)
    assert (
        sip_requester(TransportAddress("tls", "127.0.0.1", 1, peer_identity="192.0.2.1"), None)
        is None
    )


def test_policy_files_are_validated(tmp_path: Path) -> None:
    good = tmp_path / "doc.xml"
    good.write_bytes(to_xml(PUBLIC))
    view = tmp_path / "partners.json"
    from sipxmpp.provisioning import to_json

    view.write_bytes(to_json(PARTNERS))
    policy = load_policy(
        ProvisioningSettings.model_validate(
            {
                "document": str(good),
                "views": [{"name": "partners", "peers": ["partner.test"], "document": str(view)}],
            }
        )
    )
    assert policy is not None and policy.public == PUBLIC and policy.views[0].document == PARTNERS
    assert load_policy(ProvisioningSettings()) is None
    bad_cases = {
        "dtd.xml": b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>',
        "ns.xml": to_xml(PUBLIC).replace(b"pres-im-provisioning:1", b"pres-im-provisioning:9"),
        "garbage.json": b"{not json",
    }
    for name, data in bad_cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ProvisioningConfigError, match=name):
            load_policy(ProvisioningSettings.model_validate({"document": str(path)}))
    with pytest.raises(ProvisioningConfigError, match="cannot read"):
        load_policy(ProvisioningSettings.model_validate({"policy": str(tmp_path / "missing.json")}))
    # A view for a peer that parameter 16 hides the network from is an operator error.
    hidden = tmp_path / "hidden.json"
    hidden.write_text(
        '{"public": '
        + document(DOMAIN, visible_to=["a.test"]).model_dump_json(by_alias=True)
        + ', "views": [{"name": "v", "peers": ["b.test"], "document": '
        + PARTNERS.model_dump_json(by_alias=True)
        + "}]}"
    )
    with pytest.raises(ProvisioningConfigError, match="parameter 16"):
        load_policy(ProvisioningSettings.model_validate({"policy": str(hidden)}))
