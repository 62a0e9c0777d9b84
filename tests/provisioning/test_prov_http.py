"""HTTP channel over plain HTTP on 127.0.0.1: server behaviour with aiohttp's test client, and
the fetch client against it and against hostile servers."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prov_helpers import full, minimal, restricted

from sipxmpp.provisioning.constants import (
    DRAFT_PATH,
    MAX_DOCUMENT_BYTES,
    MEDIA_TYPE_JSON,
    MEDIA_TYPE_XML,
    WELL_KNOWN_PATH,
)
from sipxmpp.provisioning.errors import Reason, RemoteProvisioningError
from sipxmpp.provisioning.http import (
    DEFAULT_MAX_AGE,
    create_app,
    fetch_document,
    fetch_peer_document,
)
from sipxmpp.provisioning.jsoncodec import parse_json
from sipxmpp.provisioning.publisher import ProvisioningPublisher
from sipxmpp.provisioning.views import PeerView, ProvisioningPolicy
from sipxmpp.provisioning.xmlcodec import parse_xml, to_xml

GW = "gw.example"


@pytest.fixture
def publisher() -> ProvisioningPublisher:
    return ProvisioningPublisher(ProvisioningPolicy(public=full(GW)))


@pytest.fixture
async def client(
    publisher: ProvisioningPublisher,
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(create_app(publisher), host="127.0.0.1")) as c:
        yield c


@pytest.mark.parametrize("path", [WELL_KNOWN_PATH, DRAFT_PATH])
async def test_get_serves_xml_with_cache_headers(
    client: TestClient[web.Request, web.Application], path: str
) -> None:
    response = await client.get(path)
    assert response.status == 200
    assert response.content_type == MEDIA_TYPE_XML
    assert parse_xml(await response.read()) == full(GW)
    assert response.headers["Cache-Control"] == f"public, max-age={DEFAULT_MAX_AGE}"
    assert response.headers["Vary"] == "Accept"
    assert response.headers["ETag"].startswith('"')


async def test_head_has_headers_but_no_body(
    client: TestClient[web.Request, web.Application],
) -> None:
    get = await client.get(WELL_KNOWN_PATH)
    head = await client.head(WELL_KNOWN_PATH)
    assert head.status == 200 and await head.read() == b""
    assert head.headers["ETag"] == get.headers["ETag"]


async def test_etag_and_if_none_match(
    client: TestClient[web.Request, web.Application], publisher: ProvisioningPublisher
) -> None:
    etag = (await client.get(WELL_KNOWN_PATH)).headers["ETag"]
    for condition in (etag, "*", f"W/{etag}", f'"other", {etag}'):
        response = await client.get(WELL_KNOWN_PATH, headers={"If-None-Match": condition})
        assert response.status == 304, condition
        assert response.headers["ETag"] == etag and await response.read() == b""
        assert "max-age" in response.headers["Cache-Control"]
    assert (await client.get(WELL_KNOWN_PATH, headers={"If-None-Match": '"other"'})).status == 200
    publisher.update(ProvisioningPolicy(public=minimal(GW)))
    changed = await client.get(WELL_KNOWN_PATH, headers={"If-None-Match": etag})
    assert changed.status == 200 and changed.headers["ETag"] != etag
    assert parse_xml(await changed.read()) == minimal(GW)


async def test_json_negotiation_and_406(client: TestClient[web.Request, web.Application]) -> None:
    response = await client.get(WELL_KNOWN_PATH, headers={"Accept": MEDIA_TYPE_JSON})
    assert response.status == 200 and response.content_type == MEDIA_TYPE_JSON
    assert parse_json(await response.read()) == full(GW)
    xml_etag = (await client.get(WELL_KNOWN_PATH)).headers["ETag"]
    assert response.headers["ETag"] != xml_etag
    generic = await client.get(WELL_KNOWN_PATH, headers={"Accept": "application/json"})
    assert generic.content_type == "application/json" and parse_json(await generic.read()) == full(
        GW
    )
    refused = await client.get(WELL_KNOWN_PATH, headers={"Accept": "text/html"})
    assert refused.status == 406
    assert MEDIA_TYPE_XML in await refused.text()


async def test_other_methods_and_paths(client: TestClient[web.Request, web.Application]) -> None:
    assert (await client.post(WELL_KNOWN_PATH, data=b"x")).status == 405
    assert (await client.get("/.well-known/other")).status == 404


async def test_privacy_and_private_caching() -> None:
    hidden = ProvisioningPublisher(ProvisioningPolicy(public=restricted(GW, ("b.example",))))
    async with TestClient(TestServer(create_app(hidden), host="127.0.0.1")) as c:
        response = await c.get(WELL_KNOWN_PATH)
        assert response.status == 403 and "unidentified" in await response.text()
    views = ProvisioningPublisher(
        ProvisioningPolicy(
            public=minimal(GW),
            views=(PeerView(name="b", peers=("b.example",), document=full(GW)),),
        )
    )
    async with TestClient(TestServer(create_app(views, max_age=60), host="127.0.0.1")) as c:
        response = await c.get(DRAFT_PATH)
        assert response.status == 200
        assert response.headers["Cache-Control"] == "private, max-age=60"
        assert parse_xml(await response.read()) == minimal(GW)  # no certificate: public view


# -- client ---------------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _serve(handler: Handler, path: str = WELL_KNOWN_PATH) -> TestServer:
    app = web.Application()
    app.router.add_get(path, handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def test_client_fetch_and_revalidate(
    client: TestClient[web.Request, web.Application],
) -> None:
    url = str(client.make_url(WELL_KNOWN_PATH))
    async with aiohttp.ClientSession() as session:
        first = await fetch_document(session, url)
        assert first.status == 200 and first.document == full(GW)
        assert first.max_age == DEFAULT_MAX_AGE and first.media_type == MEDIA_TYPE_XML
        second = await fetch_document(session, url, etag=first.etag)
        assert second.status == 304 and second.document is None and second.etag == first.etag
        as_json = await fetch_document(session, url, prefer_json=True)
        assert as_json.media_type == MEDIA_TYPE_JSON and as_json.document == full(GW)


async def test_client_peer_fetch_falls_back_to_draft_path(publisher: ProvisioningPublisher) -> None:
    app = web.Application()
    hosts: list[str] = []
    app.router.add_get(DRAFT_PATH, _draft_only(publisher, hosts))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            result = await fetch_peer_document(
                session, GW, address=("127.0.0.1", server.port or 0), ssl_context=False
            )
            assert result.url.endswith(DRAFT_PATH) and result.document == full(GW)
            assert hosts == [GW]  # the peer's domain, not the static address
            with pytest.raises(RemoteProvisioningError) as info:
                await fetch_peer_document(
                    session,
                    "other.example",
                    address=("127.0.0.1", server.port or 0),
                    ssl_context=False,
                )
            assert info.value.reason is Reason.INVALID_VALUE and "describes" in info.value.message
    finally:
        await server.close()


def _draft_only(publisher: ProvisioningPublisher, hosts: list[str]) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        hosts.append(request.headers["Host"])
        return web.Response(body=to_xml(publisher.policy.public), content_type=MEDIA_TYPE_XML)

    return handler


async def _oversize_declared(request: web.Request) -> web.Response:
    return web.Response(body=b" " * (MAX_DOCUMENT_BYTES + 1), content_type=MEDIA_TYPE_XML)


async def _oversize_chunked(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": MEDIA_TYPE_XML})
    response.enable_chunked_encoding()
    await response.prepare(request)
    for _ in range(8):
        await response.write(b" " * 16384)
    await response.write_eof()
    return response


async def _wrong_type(request: web.Request) -> web.Response:
    return web.Response(body=to_xml(minimal(GW)), content_type="text/html")


async def _dtd(request: web.Request) -> web.Response:
    return web.Response(
        body=b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>',
        content_type=MEDIA_TYPE_XML,
    )


async def _redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("http://127.0.0.1:9/elsewhere")


async def _error(request: web.Request) -> web.Response:
    return web.Response(status=500)


async def _forbidden(request: web.Request) -> web.Response:
    return web.Response(status=403)


async def _not_modified_unasked(request: web.Request) -> web.Response:
    return web.Response(status=304)


HOSTILE_SERVERS = [
    pytest.param(_oversize_declared, Reason.TOO_LARGE, id="content-length-over-cap"),
    pytest.param(_oversize_chunked, Reason.TOO_LARGE, id="chunked-over-cap"),
    pytest.param(_wrong_type, Reason.WRONG_MEDIA_TYPE, id="wrong-content-type"),
    pytest.param(_dtd, Reason.DTD_FORBIDDEN, id="dtd-body"),
    pytest.param(_redirect, Reason.HTTP_ERROR, id="redirect-not-followed"),
    pytest.param(_error, Reason.HTTP_ERROR, id="500"),
    pytest.param(_forbidden, Reason.FORBIDDEN, id="403"),
    pytest.param(_not_modified_unasked, Reason.HTTP_ERROR, id="unsolicited-304"),
]


@pytest.mark.parametrize(("handler", "reason"), HOSTILE_SERVERS)
async def test_client_refuses_hostile_servers(handler: Handler, reason: Reason) -> None:
    server = await _serve(handler)
    try:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(RemoteProvisioningError) as info:
                await fetch_document(session, str(server.make_url(WELL_KNOWN_PATH)))
            assert info.value.reason is reason
    finally:
        await server.close()


async def test_client_unreachable_and_not_found() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with aiohttp.ClientSession() as session:
        with pytest.raises(RemoteProvisioningError) as info:
            await fetch_document(session, f"http://127.0.0.1:{port}{WELL_KNOWN_PATH}", timeout=5)
        assert info.value.reason is Reason.UNREACHABLE
    server = await _serve(_error, path="/unrelated")
    try:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(RemoteProvisioningError) as info:
                await fetch_peer_document(
                    session, GW, address=("127.0.0.1", server.port or 0), ssl_context=False
                )
            assert info.value.reason is Reason.NOT_FOUND
    finally:
        await server.close()
