"""Using peers' parameters (issue 4, item 6) and refusing hostile peer documents.

* :class:`PeerCapabilities` / :class:`PeerPolicy` as tables (pure, no sockets), including
  "each decision logged once per peer".
* A running gateway fetching a configured peer's document over HTTP and SIP, revalidating
  by ETag, and routing pager-mode MESSAGEs to a TLS-only peer over TLS only.
* Caps-driven refresh: two gateways on one Prosody; a change on one side reaches the other
  as a caps presence with a new ``ver``, and the other re-fetches over XMPP.
* Malformed, oversize and hostile documents over HTTP, SIP and XMPP are refused with a
  precise reason, and the gateway keeps working.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from lxml import etree

from sipxmpp.gateway.runtime.app import Gateway
from sipxmpp.gateway.runtime.bridge import NextHopError
from sipxmpp.gateway.runtime.provisioning import Decision, PeerCapabilities, PeerPolicy
from sipxmpp.gateway.runtime.provisioning_query import (
    CapsHint,
    PeerQueryTool,
    QueryConfig,
    query_http,
    query_xmpp,
)
from sipxmpp.gateway.settings import ProvisioningPeer
from sipxmpp.provisioning import (
    Channel,
    ImMode,
    PeerDocumentStore,
    ProvisioningPolicy,
    Reason,
    document_to_form,
    to_json,
    to_xml,
)
from sipxmpp.provisioning.caps import DiscoInfo, Identity, compute_ver, disco_info_to_element
from sipxmpp.provisioning.form import DataForm, FormField
from sipxmpp.provisioning.http import client_ssl_context
from support.certs import TestPki, openssl_available
from support.prosody import ProsodyComponent, free_tcp_port, make_prosody_fixture
from support.provisioning_gw import (
    UdpSip,
    document,
    gateway_settings,
    options_request,
    status_of,
    write_policy,
)

PEER = "b.test"

# --------------------------------------------------------------------------------------
# Decisions (pure)
# --------------------------------------------------------------------------------------

DECISION_CASES = [
    # (document, transports of udp/tcp/tls, session mode, isComposing, list subscriptions)
    (None, ("udp", "tcp", "tls"), True, True, False),
    (document(PEER), ("udp", "tcp", "tls"), False, True, False),
    (document(PEER, tls_only=True), ("tls",), False, True, False),
    (
        document(PEER, im_modes=(ImMode.PAGE, ImMode.SESSION)),
        ("udp", "tcp", "tls"),
        True,
        True,
        False,
    ),
    (document(PEER, im_modes=()), ("udp", "tcp", "tls"), False, True, False),
    (document(PEER, is_composing=False), ("udp", "tcp", "tls"), False, False, False),
    (document(PEER, list_subscription=True), ("udp", "tcp", "tls"), False, True, True),
]


@pytest.mark.parametrize(("doc", "transports", "session", "composing", "lists"), DECISION_CASES)
def test_peer_capabilities_decisions(
    doc: Any, transports: tuple[str, ...], session: bool, composing: bool, lists: bool
) -> None:
    caps = PeerCapabilities(PEER, doc)
    assert caps.transports() == transports
    assert caps.transports(("udp", "tcp")) == tuple(t for t in transports if t != "tls")
    assert caps.use_session_mode() is session
    assert caps.send_is_composing() is composing
    assert caps.use_list_subscriptions() is lists
    assert {d for d, _, _ in caps.decisions()} == set(Decision)


def _decision_logs(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [
        r.fields  # type: ignore[attr-defined]
        for r in caplog.records
        if r.getMessage() == "provisioning.decision"
    ]


def test_each_decision_is_logged_once_per_peer(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sipxmpp.provisioning")
    store = PeerDocumentStore()
    consulted: list[str] = []
    policy = PeerPolicy(store, on_consult=consulted.append)
    for _ in range(3):
        assert not policy.for_peer("B.Test.").known
    logs = _decision_logs(caplog)
    assert len(logs) == 4 and {f["source"] for f in logs} == {"default"}
    assert consulted == ["b.test"] * 3
    caplog.clear()
    store.put(PEER, document(PEER, tls_only=True), now=0.0, channel=Channel.HTTP)
    for _ in range(3):
        assert policy.for_peer(PEER).tls_only
    logs = _decision_logs(caplog)
    # Only what changed is logged again: transports (tls-only) and im-mode (page).
    assert {(f["decision"], f["value"]) for f in logs} == {
        ("transports", "tls-only"),
        ("im-mode", "pager"),
    }
    assert all(f["source"] == "http" and f["peer"] == PEER for f in logs)
    caplog.clear()
    policy.for_peer("other.test")
    assert len(_decision_logs(caplog)) == 4
    # An IP literal names no peer network: standard behaviour, nothing logged or fetched.
    caplog.clear()
    assert policy.for_peer("192.0.2.1").transports() == ("udp", "tcp", "tls")
    assert _decision_logs(caplog) == [] and "192.0.2.1" not in consulted


# --------------------------------------------------------------------------------------
# A running gateway using a configured peer's document
# --------------------------------------------------------------------------------------


async def _wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    if not openssl_available():
        pytest.skip("the openssl command line tool is not installed")
    return TestPki.create(tmp_path_factory.mktemp("peers-pki") / "ca")


@pytest.fixture
async def peer_gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    """Network B's gateway: TLS-only, serving its document over plain HTTP and SIP UDP."""
    policy = tmp_path / "b.json"
    write_policy(policy, document(PEER, tls_only=True))
    settings = gateway_settings(
        domain=PEER, component=f"sip.{PEER}", xmpp_port=free_tcp_port(), policy=policy
    )
    async with Gateway(settings) as gw:
        yield gw


def _fetching_settings(peer_gw: Gateway, ca_file: Path, **provisioning: Any) -> Any:
    assert peer_gw.provisioning.http is not None
    return gateway_settings(
        domain="a.test",
        component="sip.a.test",
        xmpp_port=free_tcp_port(),
        provisioning={
            "fetch": "configured",
            "peers": [
                {
                    "domain": PEER,
                    "http": peer_gw.provisioning.http.base_url,
                    "sip": [f"udp:127.0.0.1:{peer_gw.sip_addresses['udp'][1]}"],
                }
            ],
            **provisioning,
        },
        sip={
            "static_routes": {
                PEER: [f"udp:127.0.0.1:{peer_gw.sip_addresses['udp'][1]}", "tls:127.0.0.1:5999"]
            },
            # Outbound TLS enabled (trust anchors only, no listener).
            "tls": {"ca_file": str(ca_file)},
        },
    )


@pytest.mark.parametrize("channels", [["http"], ["sip"]])
async def test_configured_peer_is_fetched_and_acted_on(
    peer_gw: Gateway, pki: TestPki, channels: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sipxmpp.provisioning")
    async with Gateway(_fetching_settings(peer_gw, pki.ca_cert, channels=channels)) as gw:
        store = gw.provisioning.peers.store
        await _wait_for(lambda: store.get(PEER) is not None)
        record = store.get(PEER)
        assert record is not None and record.channel.value == channels[0]
        assert record.document == peer_gw.provisioning.publisher.policy.public  # type: ignore[union-attr]
        # TLS-only (parameter 3): the static route lists UDP first, the gateway takes TLS.
        hop = await gw._next_hop("sip:bob@b.test")
        assert (hop.transport, hop.port, hop.peer_identity) == ("tls", 5999, PEER)
        logs = [f for f in _decision_logs(caplog) if f["peer"] == PEER]
        assert ("transports", "tls-only") in {(f["decision"], f["value"]) for f in logs}
        if channels == ["http"]:
            # Revalidation by ETag: 304, nothing re-logged.
            before = len(_decision_logs(caplog))
            await gw.provisioning.peers.refresh(PEER)
            assert gw.provisioning.peers.counters["not-modified"] == 1
            assert len(_decision_logs(caplog)) == before
            # B drops TLS-only: a new ETag, a new document, the decision changes.
            assert peer_gw.provisioning.update(ProvisioningPolicy(public=document(PEER)))
            await gw.provisioning.peers.refresh(PEER)
            assert not store.get(PEER).document.connectivity.tls_only  # type: ignore[union-attr]
            hop = await gw._next_hop("sip:bob@b.test")
            assert hop.transport == "udp"


async def test_tls_only_peer_without_a_tls_route_is_refused(peer_gw: Gateway, pki: TestPki) -> None:
    settings = _fetching_settings(peer_gw, pki.ca_cert, channels=["http"])
    data = settings.model_dump(mode="json")
    data["sip"]["static_routes"] = {PEER: [f"udp:127.0.0.1:{peer_gw.sip_addresses['udp'][1]}"]}
    async with Gateway(type(settings).model_validate(data)) as gw:
        await _wait_for(lambda: gw.provisioning.peers.store.get(PEER) is not None)
        with pytest.raises(NextHopError, match="TLS only"):
            await gw._next_hop("sip:bob@b.test")
        # Other peers are not affected.
        hop = await gw._next_hop("sip:carol@127.0.0.1:5070")
        assert hop.transport == "udp"


# --------------------------------------------------------------------------------------
# Caps-driven refresh over XMPP (two gateways on one Prosody)
# --------------------------------------------------------------------------------------

prosody = make_prosody_fixture(
    scope="module",
    vhost="example.test",
    components=[
        ProsodyComponent("sip.a.test", "a-secret"),
        ProsodyComponent("sip.b.test", "b-secret"),
    ],
)


@pytest.mark.prosody
async def test_caps_presence_with_a_new_ver_triggers_a_refetch(
    prosody: Any, tmp_path: Path
) -> None:
    policy = tmp_path / "b.json"
    write_policy(policy, document(PEER))
    b_settings = gateway_settings(
        domain=PEER,
        component="sip.b.test",
        secret="b-secret",
        xmpp_port=prosody.component_port,
        policy=policy,
    )
    a_settings = gateway_settings(
        domain="a.test",
        component="sip.a.test",
        secret="a-secret",
        xmpp_port=prosody.component_port,
        provisioning={
            "fetch": "configured",
            "channels": ["xmpp"],
            "peers": [{"domain": PEER, "xmpp": "sip.b.test"}],
        },
    )
    async with Gateway(b_settings) as b:
        assert await b.xmpp.wait_up(10.0)
        async with Gateway(a_settings) as a:
            assert await a.xmpp.wait_up(10.0)
            store = a.provisioning.peers.store
            # A announced itself to B; B answered with its caps; A fetched over XMPP.
            await _wait_for(lambda: store.get(PEER) is not None)
            first = store.get(PEER)
            assert first is not None and first.channel is Channel.XMPP and first.caps_ver
            assert "sip.a.test" in b.xmpp.caps.recipients
            changed = document(PEER, tls_only=True, list_subscription=True)
            assert b.provisioning.update(ProvisioningPolicy(public=changed))
            await _wait_for(lambda: store.get(PEER).document == changed)  # type: ignore[union-attr]
            second = store.get(PEER)
            assert second is not None and second.caps_ver not in (None, first.caps_ver)
            assert a.provisioning.peer(PEER).use_list_subscriptions()


# --------------------------------------------------------------------------------------
# Hostile documents
# --------------------------------------------------------------------------------------

GOOD_XML = to_xml(document(PEER))
HOSTILE_HTTP: dict[str, tuple[bytes, str, Reason]] = {
    "dtd": (
        b'<?xml version="1.0"?><!DOCTYPE lol [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;">]>'
        b'<pres-im-provisioning xmlns="urn:sipxmpp:xml:ns:pres-im-provisioning:1">&b;</pres-im-provisioning>',
        "application/pres-im-provisioning+xml",
        Reason.DTD_FORBIDDEN,
    ),
    "huge": (
        b"<a>" + b"x" * (10 * 1024 * 1024) + b"</a>",
        "application/pres-im-provisioning+xml",
        Reason.TOO_LARGE,
    ),
    "namespace": (
        GOOD_XML.replace(b"pres-im-provisioning:1", b"urn:example:other"),
        "application/pres-im-provisioning+xml",
        Reason.WRONG_NAMESPACE,
    ),
    "garbage": (b"\x00\xff<<<", "application/pres-im-provisioning+xml", Reason.NOT_UTF8),
    "unclosed": (b"<pres-im-provisioning", "application/xml", Reason.NOT_WELL_FORMED),
    "json-duplicates": (
        b'{"domain": "b.test", "domain": "x.test"}',
        "application/json",
        Reason.NOT_WELL_FORMED,
    ),
    "other-domain": (
        to_xml(document("evil.test")),
        "application/pres-im-provisioning+xml",
        Reason.INVALID_VALUE,
    ),
    "html": (b"<html></html>", "text/html", Reason.WRONG_MEDIA_TYPE),
}


@pytest.fixture
async def hostile_http() -> AsyncIterator[Callable[[str], Awaitable[str]]]:
    """Starts, per case, an HTTP server on 127.0.0.1 serving that hostile body on both
    provisioning paths; yields ``serve(case) -> base URL``."""
    runners: list[web.AppRunner] = []

    async def serve(case: str) -> str:
        body, ctype, _ = HOSTILE_HTTP[case]

        async def handler(request: web.Request) -> web.StreamResponse:
            if case == "huge":  # chunked, no Content-Length: the reader's running cap applies
                resp = web.StreamResponse(headers={"Content-Type": ctype})
                await resp.prepare(request)
                for i in range(0, len(body), 1 << 20):
                    await resp.write(body[i : i + (1 << 20)])
                return resp
            return web.Response(body=body, headers={"Content-Type": ctype})

        app = web.Application()
        app.router.add_get("/.well-known/pres-im-provisioning", handler)
        app.router.add_get("/pres-im-provisioning", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield serve
    for runner in runners:
        await runner.cleanup()


@pytest.mark.parametrize("case", sorted(HOSTILE_HTTP))
async def test_hostile_http_documents_are_refused(
    hostile_http: Callable[[str], Awaitable[str]], case: str
) -> None:
    base = await hostile_http(case)
    async with aiohttp.ClientSession() as session:
        result = await query_http(
            session, PEER, base_url=base, ssl_context=client_ssl_context(), timeout=10.0
        )
    assert not result.ok and result.reason is HOSTILE_HTTP[case][2], result


async def test_gateway_survives_a_hostile_http_peer(
    hostile_http: Callable[[str], Awaitable[str]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sipxmpp.provisioning")
    settings = gateway_settings(
        domain="a.test",
        component="sip.a.test",
        xmpp_port=free_tcp_port(),
        provisioning={
            "fetch": "configured",
            "channels": ["http"],
            "peers": [{"domain": PEER, "http": await hostile_http("dtd")}],
        },
    )
    async with Gateway(settings) as gw:
        await _wait_for(lambda: gw.provisioning.peers.counters["failed"] >= 1)
        assert gw.provisioning.peers.store.get(PEER) is None
        assert not gw.provisioning.peer(PEER).known  # standard behaviour
        ua = await UdpSip.open()
        try:
            resp = await ua.ask(
                options_request("sip:a.test", transport="UDP", port=ua.port),
                gw.sip_addresses["udp"][1],
            )
        finally:
            ua.close()
        assert status_of(resp) == 200  # still serving


class HostileSipPeer(asyncio.DatagramProtocol):
    """Answers every OPTIONS with the response the test chose."""

    def __init__(self, make: Callable[[bytes], bytes]) -> None:
        self.make = make
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if data.startswith(b"OPTIONS "):
            self.transport.sendto(self.make(data), addr)


def _answer(request: bytes, status: str, body: bytes = b"", ctype: str | None = None) -> bytes:
    keep = [
        ln
        for ln in request.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
        if ln.split(b":", 1)[0].strip().lower() in (b"via", b"from", b"to", b"call-id", b"cseq")
    ]
    keep = [ln + b";tag=hostile" if ln.lower().startswith(b"to:") else ln for ln in keep]
    extra = [f"Content-Type: {ctype}".encode()] if ctype else []
    return b"\r\n".join(
        [
            f"SIP/2.0 {status}".encode(),
            *keep,
            *extra,
            f"Content-Length: {len(body)}".encode(),
            b"",
            body,
        ]
    )


XML = "application/pres-im-provisioning+xml"
HOSTILE_SIP: dict[str, tuple[Callable[[bytes], bytes], Reason]] = {
    "dtd": (lambda r: _answer(r, "200 OK", HOSTILE_HTTP["dtd"][0], XML), Reason.DTD_FORBIDDEN),
    "namespace": (
        lambda r: _answer(r, "200 OK", HOSTILE_HTTP["namespace"][0], XML),
        Reason.WRONG_NAMESPACE,
    ),
    "not-xml": (lambda r: _answer(r, "200 OK", b"hello", XML), Reason.NOT_WELL_FORMED),
    "no-body": (lambda r: _answer(r, "200 OK"), Reason.NOT_FOUND),
    "sdp": (lambda r: _answer(r, "200 OK", b"v=0\r\n", "application/sdp"), Reason.NOT_FOUND),
    "forbidden": (lambda r: _answer(r, "403 Forbidden"), Reason.FORBIDDEN),
    "server-error": (lambda r: _answer(r, "500 Oops"), Reason.HTTP_ERROR),
    "other-domain": (
        lambda r: _answer(r, "200 OK", to_xml(document("evil.test")), XML),
        Reason.INVALID_VALUE,
    ),
    "json-as-xml": (
        lambda r: _answer(r, "200 OK", to_json(document(PEER)), XML),
        Reason.NOT_WELL_FORMED,
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_SIP))
async def test_hostile_sip_answers_are_refused(case: str) -> None:
    make, reason = HOSTILE_SIP[case]
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: HostileSipPeer(make), local_addr=("127.0.0.1", 0)
    )
    port = transport.get_extra_info("sockname")[1]
    try:
        config = QueryConfig(
            our_domain="a.test",
            peers={PEER: ProvisioningPeer(domain=PEER, sip=(f"udp:127.0.0.1:{port}",))},
            timeout=3.0,
        )
        async with PeerQueryTool(config) as tool:
            report = await tool.query(PEER, [Channel.SIP])
    finally:
        transport.close()
    (result,) = report.results
    assert not result.ok and result.reason is reason, result


async def test_a_ten_megabyte_sip_answer_over_tcp_is_refused() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        answer = _answer(head, "200 OK", b"", XML).replace(
            b"Content-Length: 0", b"Content-Length: 10485760"
        )
        writer.write(answer)
        try:
            for _ in range(160):  # 10 MiB in 64 KiB writes, until the reader hangs up
                writer.write(b"<" * 65536)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        config = QueryConfig(
            our_domain="a.test",
            peers={PEER: ProvisioningPeer(domain=PEER, sip=(f"tcp:127.0.0.1:{port}",))},
            timeout=3.0,
        )
        async with PeerQueryTool(config) as tool:
            report = await tool.query(PEER, [Channel.SIP])
    finally:
        server.close()
    (result,) = report.results
    assert not result.ok and result.reason is Reason.UNREACHABLE


class FakeDisco:
    """A DiscoChannel answering with crafted disco#info results."""

    def __init__(self, query: etree._Element) -> None:
        self.query = query
        self.nodes: list[str | None] = []

    async def disco_info(self, jid: str, node: str | None, timeout: float) -> etree._Element:
        self.nodes.append(node)
        return self.query

    async def disco_items(self, jid: str, timeout: float) -> list[str]:
        return []


GATEWAY = Identity("gateway", "sip", "", "SIP gateway")
FEATURES = ("http://jabber.org/protocol/disco#info", "http://jabber.org/protocol/caps")


def _form_with(**changes: tuple[str, ...]) -> DataForm:
    form = document_to_form(document(PEER))
    fields = tuple(
        FormField(f.var, changes.get(f.var.replace("-", "_"), f.values), f.type)
        for f in form.fields
    )
    return DataForm(fields)


HOSTILE_FORMS: dict[str, tuple[DiscoInfo, Reason]] = {
    "no-form": (DiscoInfo((GATEWAY,), FEATURES), Reason.NOT_FOUND),
    "bad-boolean": (
        DiscoInfo((GATEWAY,), FEATURES, (_form_with(tls_only=("maybe",)),)),
        Reason.INVALID_VALUE,
    ),
    "bad-domain": (
        DiscoInfo((GATEWAY,), FEATURES, (_form_with(dns_names=("not a name!",)),)),
        Reason.INVALID_VALUE,
    ),
    "other-domain": (
        DiscoInfo((GATEWAY,), FEATURES, (document_to_form(document("evil.test")),)),
        Reason.INVALID_VALUE,
    ),
    "duplicate-feature": (
        DiscoInfo((GATEWAY,), (*FEATURES, FEATURES[0]), (document_to_form(document(PEER)),)),
        Reason.CAPS_ILL_FORMED,
    ),
    "two-forms": (
        DiscoInfo((GATEWAY,), FEATURES, (document_to_form(document(PEER)),) * 2),
        Reason.CAPS_ILL_FORMED,
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_FORMS))
async def test_hostile_disco_answers_are_refused(case: str) -> None:
    info, reason = HOSTILE_FORMS[case]
    result = await query_xmpp(
        FakeDisco(disco_info_to_element(info)), PEER, jid="sip.b.test", timeout=1.0
    )
    assert not result.ok and result.reason is reason, result


async def test_caps_mismatch_is_reported_and_not_trusted() -> None:
    info = DiscoInfo((GATEWAY,), FEATURES, (document_to_form(document(PEER)),))
    fake = FakeDisco(disco_info_to_element(info, node="urn:x#bogus"))
    result = await query_xmpp(
        fake, PEER, jid="sip.b.test", timeout=1.0, caps=CapsHint("urn:x", "bogus", "sha-1")
    )
    assert result.document == document(PEER)
    assert result.caps_status == "mismatch" and result.caps_ver is None  # XEP-0115 §5.4
    assert fake.nodes == ["urn:x#bogus"]
    good = compute_ver(info)
    result = await query_xmpp(
        fake, PEER, jid="sip.b.test", timeout=1.0, caps=CapsHint("urn:x", good, "sha-1")
    )
    assert result.caps_status == "verified" and result.caps_ver == good


async def test_http_query_helper_reports_unreachable() -> None:
    async with aiohttp.ClientSession() as session:
        result = await query_http(
            session,
            PEER,
            base_url=f"http://127.0.0.1:{free_tcp_port()}",
            ssl_context=client_ssl_context(),
            timeout=2.0,
        )
    assert not result.ok and result.reason is Reason.UNREACHABLE
