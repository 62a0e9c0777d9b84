"""A real HTTPS server with mutual TLS on 127.0.0.1 (certificates made with the openssl CLI):
per-certificate views, Peer Network Privacy, ETag after a change, and TLS failures."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from prov_helpers import CertPair, full, make_ca, make_cert, minimal, restricted

from sipxmpp.provisioning.errors import Reason, RemoteProvisioningError
from sipxmpp.provisioning.http import (
    ProvisioningHttpServer,
    client_ssl_context,
    fetch_peer_document,
    server_ssl_context,
)
from sipxmpp.provisioning.model import ProvisioningDocument
from sipxmpp.provisioning.publisher import ProvisioningPublisher
from sipxmpp.provisioning.views import PeerView, ProvisioningPolicy

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")

GW = "gw.example.test"


@dataclass(frozen=True)
class Pki:
    ca: CertPair
    gateway: CertPair
    peer_b: CertPair
    peer_c: CertPair
    rogue: CertPair


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory: Path = tmp_path_factory.mktemp("pki")
    ca = make_ca(directory, "ca")
    other_ca = make_ca(directory, "other-ca")
    return Pki(
        ca=ca,
        gateway=make_cert(directory, ca, "gateway", f"DNS:{GW},URI:sip:{GW}"),
        peer_b=make_cert(directory, ca, "peer-b", "DNS:peer-b.example.test"),
        peer_c=make_cert(directory, ca, "peer-c", "URI:sip:peer-c.example.test"),
        rogue=make_cert(directory, other_ca, "rogue", "DNS:peer-b.example.test"),
    )


def _server(pki: Pki, publisher: ProvisioningPublisher) -> ProvisioningHttpServer:
    ctx = server_ssl_context(pki.gateway.cert, pki.gateway.key, peer_cafile=pki.ca.cert)
    return ProvisioningHttpServer(publisher, host="127.0.0.1", port=0, ssl_context=ctx)


async def _fetch(
    pki: Pki, port: int, client: CertPair | None, etag: str | None = None, domain: str = GW
) -> tuple[object, str | None, int]:
    ctx = client_ssl_context(
        cafile=pki.ca.cert,
        certfile=client.cert if client else None,
        keyfile=client.key if client else None,
    )
    async with aiohttp.ClientSession() as session:
        result = await fetch_peer_document(
            session, domain, address=("127.0.0.1", port), ssl_context=ctx, etag=etag, timeout=10
        )
    return result.document, result.etag, result.status


async def test_each_certificate_gets_its_view(pki: Pki) -> None:
    policy = ProvisioningPolicy(
        public=minimal(GW),
        views=(PeerView(name="b", peers=("peer-b.example.test",), document=full(GW)),),
    )
    async with _server(pki, ProvisioningPublisher(policy)) as server:
        assert server.base_url.startswith("https://127.0.0.1:")
        anonymous, _, _ = await _fetch(pki, server.port, None)
        as_b, _, _ = await _fetch(pki, server.port, pki.peer_b)
        as_c, _, _ = await _fetch(pki, server.port, pki.peer_c)
    assert anonymous == minimal(GW)
    assert as_b == full(GW)
    assert as_c == minimal(GW)


async def test_privacy_by_certificate(pki: Pki) -> None:
    policy = ProvisioningPolicy(public=restricted(GW, ("peer-c.example.test", "x.example.test")))
    async with _server(pki, ProvisioningPublisher(policy)) as server:
        for client in (None, pki.peer_b):
            with pytest.raises(RemoteProvisioningError) as info:
                await _fetch(pki, server.port, client)
            assert info.value.reason is Reason.FORBIDDEN
        as_c, _, _ = await _fetch(pki, server.port, pki.peer_c)
    assert isinstance(as_c, ProvisioningDocument)
    # parameter 16 as peer-c sees it: only its own entry (draft §7 (c))
    assert as_c.clearing_house.peer_network_privacy.visible_to == ("peer-c.example.test",)


async def test_change_gives_new_etag_and_304_otherwise(pki: Pki) -> None:
    publisher = ProvisioningPublisher(ProvisioningPolicy(public=minimal(GW)))
    async with _server(pki, publisher) as server:
        first, etag, status = await _fetch(pki, server.port, pki.peer_b)
        assert status == 200 and first == minimal(GW) and etag
        _, same_etag, status = await _fetch(pki, server.port, pki.peer_b, etag=etag)
        assert status == 304 and same_etag == etag
        publisher.update(ProvisioningPolicy(public=full(GW)))
        second, new_etag, status = await _fetch(pki, server.port, pki.peer_b, etag=etag)
        assert status == 200 and second == full(GW) and new_etag != etag


async def test_tls_failures_are_clean_refusals(pki: Pki) -> None:
    async with _server(
        pki, ProvisioningPublisher(ProvisioningPolicy(public=minimal(GW)))
    ) as server:
        with pytest.raises(RemoteProvisioningError) as wrong_name:
            await _fetch(pki, server.port, pki.peer_b, domain="wrong.example.test")
        assert wrong_name.value.reason is Reason.UNREACHABLE
        with pytest.raises(RemoteProvisioningError) as rogue:
            await _fetch(pki, server.port, pki.rogue)
        assert rogue.value.reason is Reason.UNREACHABLE
        # The server survives both and keeps serving.
        document, _, _ = await _fetch(pki, server.port, pki.peer_b)
        assert document == minimal(GW)
