"""The whole gateway in-process against a real Prosody, with raw SIP over real sockets.

The SIP peer here is a bare UDP/TCP socket speaking SIP text the test writes itself, so every
byte on the SIP side is visible; tests/integration/test_sipp_pager.py drives the same paths
with SIPp as an independent SIP implementation.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sipxmpp.gateway.runtime.app import Gateway
from sipxmpp.gateway.settings import Settings
from support.prosody import ProsodyComponent, ProsodyUser, make_prosody_fixture
from support.xmpp_client import XmppTestClient

pytestmark = pytest.mark.prosody

COMPONENT = "sip.example.test"
SECRET = "pager-secret"

prosody = make_prosody_fixture(
    scope="module",
    vhost="example.test",
    components=[ProsodyComponent(COMPONENT, SECRET)],
    users=[ProsodyUser("bob", "bob-pw"), ProsodyUser("carol", "carol-pw")],
)

_n = itertools.count(1)


class UdpPeer(asyncio.DatagramProtocol):
    """A SIP element on a UDP socket: the SIP partition's proxy and its users."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queue.put_nowait(data)

    @property
    def port(self) -> int:
        return int(self.transport.get_extra_info("sockname")[1])

    def send(self, data: bytes, port: int) -> None:
        self.transport.sendto(data, ("127.0.0.1", port))

    async def recv(self, timeout: float = 10.0) -> bytes:
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def recv_request(self, method: str, timeout: float = 10.0) -> bytes:
        while True:
            data = await self.recv(timeout)
            if data.startswith(method.encode() + b" "):
                return data


def header(msg: bytes, name: str) -> str | None:
    m = re.search(rb"^" + name.encode() + rb":\s*(.*?)\r$", msg, re.M | re.I)
    return m.group(1).decode() if m else None


def body(msg: bytes) -> bytes:
    return msg.split(b"\r\n\r\n", 1)[1]


def status(msg: bytes) -> int:
    assert msg.startswith(b"SIP/2.0 "), msg[:80]
    return int(msg[8:11])


def message_request(
    peer_port: int,
    *,
    to: str = "sip:bob@example.test",
    sender: str = "sip:alice@example.test",
    text: str = "hello",
    content_type: str = "text/plain;charset=UTF-8",
    extra: str = "",
    transport: str = "UDP",
) -> tuple[bytes, str]:
    n = next(_n)
    call_id = f"pager-{n}@127.0.0.1"
    raw = text.encode()
    msg = (
        f"MESSAGE {to} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 127.0.0.1:{peer_port};branch=z9hG4bKpager{n};rport\r\n"
        f"From: <{sender}>;tag=alice{n}\r\n"
        f"To: <{to}>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: 1 MESSAGE\r\n"
        f"Max-Forwards: 70\r\n"
        f"{extra}"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(raw)}\r\n\r\n"
    ).encode() + raw
    return msg, call_id


def answer(request: bytes, code: int, reason: str) -> bytes:
    lines = request.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
    keep = [
        ln
        for ln in lines
        if ln.split(b":", 1)[0].strip().lower() in (b"via", b"from", b"to", b"call-id", b"cseq")
    ]
    keep = [ln + b";tag=peer" if ln.lower().startswith(b"to:") else ln for ln in keep]
    return b"\r\n".join(
        [f"SIP/2.0 {code} {reason}".encode(), *keep, b"Content-Length: 0", b"", b""]
    )


def settings_for(prosody: Any, proxy_port: int, **sip: Any) -> Settings:
    return Settings.model_validate(
        {
            "sip": {
                "listen_host": "127.0.0.1",
                "udp_port": 0,
                "tcp_port": 0,
                "outbound_proxy": f"sip:127.0.0.1:{proxy_port};transport=udp",
                **sip,
            },
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
            "log": {"level": "debug", "format": "text"},
            "presence": {"store_url": "sqlite://:memory:"},
        }
    )


@pytest.fixture
async def proxy() -> AsyncIterator[UdpPeer]:
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(UdpPeer, local_addr=("127.0.0.1", 0))
    yield peer
    transport.close()


@pytest.fixture
async def gateway(prosody: Any, proxy: UdpPeer) -> AsyncIterator[Gateway]:
    async with Gateway(settings_for(prosody, proxy.port, t1=0.05)) as gw:
        assert await gw.xmpp.wait_up(10.0)
        yield gw


@pytest.fixture
async def bob(prosody: Any) -> AsyncIterator[XmppTestClient]:
    async with XmppTestClient(
        "bob@example.test/laptop", "bob-pw", "127.0.0.1", prosody.c2s_port
    ) as client:
        # Prosody handles a session's stanzas in order: once this iq is answered, bob's
        # initial presence has been processed and bare-JID messages reach this resource.
        await client.disco_info("example.test")
        yield client


def sip_port(gw: Gateway, transport: str = "udp") -> int:
    return gw.sip_addresses[transport][1]


async def test_sip_message_reaches_xmpp_user_with_rfc7572_fields(
    gateway: Gateway, proxy: UdpPeer, bob: XmppTestClient
) -> None:
    text = "Grüße aus dem SIP-Netz ☃"
    req, call_id = message_request(
        proxy.port, text=text, extra="Subject: Hallo\r\nContent-Language: de\r\n"
    )
    proxy.send(req, sip_port(gateway))
    resp = await proxy.recv()
    assert status(resp) == 202  # RFC 3428 §7: accepted by a gateway into a non-SIP domain
    assert header(resp, "Contact") is None  # RFC 3428 §7: no Contact in a 2xx to MESSAGE
    msg = await bob.wait_message(lambda m: m["body"] == text)
    assert str(msg["from"]) == "alice@sip.example.test"
    assert msg["type"] in ("normal", "")  # RFC 7572 §5: no type or normal
    assert msg["subject"] == "Hallo"
    assert msg["thread"] == call_id
    assert msg["lang"] == "de"


async def test_stanza_is_written_before_the_202(
    gateway: Gateway, proxy: UdpPeer, bob: XmppTestClient
) -> None:
    # The 202 vouches for a stanza already handed to the XMPP server's connection, and the
    # stanza does not wait behind the answer (runtime/app.py, Gateway._drain_sip).
    order: list[str] = []
    component = gateway.xmpp._xmpp
    assert component is not None and component.transport is not None
    write = component.transport.write
    udp = gateway.transport._udp
    assert udp is not None
    send = udp.send

    def recording_write(data: bytes) -> None:
        order.append("stanza" if b"<message" in data else "other xmpp")
        write(data)

    def recording_send(data: bytes, addr: tuple[str, int]) -> bool:
        order.append(data.split(b"\r\n", 1)[0].decode())
        return send(data, addr)

    component.transport.write = recording_write  # type: ignore[method-assign]
    udp.send = recording_send  # type: ignore[method-assign]
    try:
        req, _ = message_request(proxy.port, text="in order")
        proxy.send(req, sip_port(gateway))
        assert status(await proxy.recv()) == 202
        await bob.wait_message(lambda m: m["body"] == "in order")
    finally:
        del component.transport.write, udp.send
    assert order == ["stanza", "SIP/2.0 202 Accepted"]


async def test_non_ascii_local_part_both_ways(
    gateway: Gateway, proxy: UdpPeer, bob: XmppTestClient
) -> None:
    # RFC 7247 §6.4: sip:f%C3%BC@... is the JID fü@...
    req, _ = message_request(proxy.port, sender="sip:f%C3%BC@example.test", text="von fü")
    proxy.send(req, sip_port(gateway))
    assert status(await proxy.recv()) == 202
    msg = await bob.wait_message(lambda m: m["body"] == "von fü")
    assert str(msg["from"]) == "fü@sip.example.test"
    # ... and the answer goes back to sip:f%C3%BC@example.test (RFC 7247 §6.5 step 5)
    bob.send_message("fü@sip.example.test", "antwort", mtype="normal")
    out = await proxy.recv_request("MESSAGE")
    assert out.startswith(b"MESSAGE sip:f%C3%BC@example.test SIP/2.0")
    proxy.send(answer(out, 200, "OK"), sip_port(gateway))


async def test_xmpp_message_reaches_sip_user_with_gruu_and_thread(
    gateway: Gateway, proxy: UdpPeer, bob: XmppTestClient
) -> None:
    bob.send_message(
        "alice@sip.example.test", "héllo from XMPP", mtype="normal", thread="t-42", subject="Re"
    )
    out = await proxy.recv_request("MESSAGE")
    assert out.startswith(b"MESSAGE sip:alice@example.test SIP/2.0\r\n")
    # RFC 7572 §4 note 1: bare JID in From, the resource as GRUU inside the URI.
    assert "<sip:bob@example.test;gr=laptop>" in (header(out, "From") or "")
    assert header(out, "Call-ID") == "t-42"
    assert header(out, "Subject") == "Re"
    assert (header(out, "Content-Type") or "").lower().startswith("text/plain")
    assert body(out).decode() == "héllo from XMPP"
    proxy.send(answer(out, 200, "OK"), sip_port(gateway))
    await bob.expect_no_message(0.5)  # a 2xx is not reported to XMPP (RFC 7572 §4)


async def test_sip_error_comes_back_as_mapped_stanza_error(
    gateway: Gateway, proxy: UdpPeer, bob: XmppTestClient
) -> None:
    mid = bob.send_message("alice@sip.example.test", "are you there?", mtype="normal")
    out = await proxy.recv_request("MESSAGE")
    proxy.send(answer(out, 486, "Busy Here"), sip_port(gateway))
    err = await bob.wait_message(lambda m: m["type"] == "error")
    assert err["id"] == mid
    # RFC 7247 §7.2 Table 3: 486 -> recipient-unavailable (not conflict)
    assert err["error"]["condition"] == "recipient-unavailable"


async def test_sip_timeout_comes_back_as_remote_server_timeout(
    gateway: Gateway, proxy: UdpPeer, bob: XmppTestClient
) -> None:
    mid = bob.send_message("alice@sip.example.test", "anyone?", mtype="normal")
    first = await proxy.recv_request("MESSAGE")
    # Timer E retransmits the unanswered request over UDP (RFC 3261 §17.1.2.2)...
    again = await proxy.recv_request("MESSAGE")
    assert header(again, "Via") == header(first, "Via")
    # ...and Timer F (64*T1 = 3.2 s with T1 = 50 ms) ends it.
    err = await bob.wait_message(lambda m: m["type"] == "error", timeout=10)
    assert err["id"] == mid
    assert err["error"]["condition"] == "remote-server-timeout"


async def test_xmpp_bounce_is_reported_to_the_sip_sender(gateway: Gateway, proxy: UdpPeer) -> None:
    req, call_id = message_request(proxy.port, to="sip:nobody@example.test", text="hello?")
    proxy.send(req, sip_port(gateway))
    assert status(await proxy.recv()) == 202
    # Prosody answers service-unavailable for an unknown user; the gateway tells alice.
    notice = await proxy.recv_request("MESSAGE")
    assert notice.startswith(b"MESSAGE sip:alice@example.test SIP/2.0")
    assert header(notice, "In-Reply-To") == call_id
    assert "<sip:nobody@example.test>" in (header(notice, "From") or "")
    assert b"could not be delivered" in body(notice)
    proxy.send(answer(notice, 200, "OK"), sip_port(gateway))


async def test_oversize_xmpp_message_is_policy_violation(
    gateway: Gateway, proxy: UdpPeer, bob: XmppTestClient
) -> None:
    mid = bob.send_message("alice@sip.example.test", "x" * 1400, mtype="normal")
    err = await bob.wait_message(lambda m: m["type"] == "error")
    assert err["id"] == mid
    assert err["error"]["condition"] == "policy-violation"  # RFC 7572 §6
    with pytest.raises(TimeoutError):
        await proxy.recv(0.3)


async def test_sips_request_is_not_routed_into_xmpp(
    gateway: Gateway, proxy: UdpPeer, bob: XmppTestClient
) -> None:
    req, _ = message_request(proxy.port, to="sips:bob@example.test", text="secret")
    proxy.send(req, sip_port(gateway))
    resp = await proxy.recv()
    assert status(resp) >= 400  # RFC 7247 §8
    await bob.expect_no_message(0.5)


async def test_options_is_answered(gateway: Gateway, proxy: UdpPeer) -> None:
    n = next(_n)
    req = (
        "OPTIONS sip:sip.example.test SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{proxy.port};branch=z9hG4bKopt{n};rport\r\n"
        f"From: <sip:alice@example.test>;tag=o{n}\r\nTo: <sip:sip.example.test>\r\n"
        f"Call-ID: opt-{n}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    proxy.send(req, sip_port(gateway))
    resp = await proxy.recv()
    assert status(resp) == 200
    assert "MESSAGE" in (header(resp, "Allow") or "")
    assert "text/plain" in (header(resp, "Accept") or "")


async def test_garbage_then_valid_request_over_udp_and_tcp(
    gateway: Gateway, proxy: UdpPeer, bob: XmppTestClient
) -> None:
    port = sip_port(gateway)
    for junk in (
        b"\x00\xff" * 50,
        b"MESSAGE\r\n\r\n",
        b"INVITE sip:x SIP/2.0\r\nVia: bogus\r\n\r\n",
    ):
        proxy.send(junk, port)
    oversize, _ = message_request(proxy.port, text="y" * 70_000)
    proxy.send(oversize[:65_000], port)
    assert status(await proxy.recv()) == 513  # Content-Length over the body limit
    bad, _ = message_request(proxy.port, extra="CSeq: 2 INVITE\r\n")
    proxy.send(bad, port)
    assert status(await proxy.recv()) == 400  # two CSeq headers
    req, _ = message_request(proxy.port, text="still alive (udp)")
    proxy.send(req, port)
    while True:
        resp = await proxy.recv()
        if header(resp, "CSeq") == "1 MESSAGE" and status(resp) == 202:
            break
    await bob.wait_message(lambda m: m["body"] == "still alive (udp)")

    tcp_port = sip_port(gateway, "tcp")
    reader, writer = await asyncio.open_connection("127.0.0.1", tcp_port)
    # A framed but unparsable request without a Via cannot be answered (RFC 3261 §18.2.1
    # needs the Via); it is dropped and the same connection serves the next request.
    writer.write(b"GARBAGE GARBAGE\r\nContent-Length: 5\r\n\r\nxxxxx")
    good, _ = message_request(tcp_port, text="after garbage (tcp)", transport="TCP")
    writer.write(good)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(4096), 5)
    assert data.startswith(b"SIP/2.0 202"), data
    writer.close()
    await bob.wait_message(lambda m: m["body"] == "after garbage (tcp)")
    # Oversize on a stream: 513, and the gateway keeps serving new connections.
    reader, writer = await asyncio.open_connection("127.0.0.1", tcp_port)
    big, _ = message_request(tcp_port, text="z" * 100_000, transport="TCP")
    writer.write(big)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(4096), 5)
    assert data.startswith(b"SIP/2.0 513")
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", tcp_port)
    good, _ = message_request(tcp_port, text="still alive (tcp)", transport="TCP")
    writer.write(good)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(4096), 5)
    assert data.startswith(b"SIP/2.0 202")
    writer.close()
    await bob.wait_message(lambda m: m["body"] == "still alive (tcp)")


async def test_link_down_gives_503_with_retry_after(prosody: Any, proxy: UdpPeer) -> None:
    settings = settings_for(prosody, proxy.port)
    settings = settings.model_copy(
        update={"xmpp": settings.xmpp.model_copy(update={"server_port": 1})}
    )
    async with Gateway(settings) as gw:
        req, _ = message_request(proxy.port, text="nobody home")
        proxy.send(req, sip_port(gw))
        resp = await proxy.recv()
        assert status(resp) == 503
        assert header(resp, "Retry-After") == "30"


async def test_sip_over_mutual_tls(prosody: Any, proxy: UdpPeer, tmp_path: Any) -> None:
    """A peer with a certificate from the configured CA is served over TLS; one without is not."""
    import ssl

    from support.certs import TestPki

    pki = TestPki.create(tmp_path / "pki")
    server = pki.issue("gateway", dns=["sip.example.test"], ips=["127.0.0.1"])
    client = pki.issue("peer", dns=["proxy.example.test"])
    settings = settings_for(prosody, proxy.port).model_copy(deep=True)
    tls = {
        "port": 0,
        "certificate": str(server.cert),
        "private_key": str(server.key),
        "ca_file": str(pki.ca_cert),
        "require_client_certificate": True,
    }
    data = settings.model_dump()
    data["sip"]["tls"] = tls
    async with Gateway(Settings.model_validate(data)) as gw:
        assert await gw.xmpp.wait_up(10.0)
        port = sip_port(gw, "tls")
        ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
        ctx.load_cert_chain(str(client.cert), str(client.key))
        async with XmppTestClient(
            "bob@example.test/tls", "bob-pw", "127.0.0.1", prosody.c2s_port
        ) as bob:
            await bob.disco_info("example.test")
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=ctx, server_hostname="sip.example.test"
            )
            req, _ = message_request(port, text="over mutual TLS", transport="TLS")
            writer.write(req)
            await writer.drain()
            resp = await asyncio.wait_for(reader.read(4096), 5)
            assert resp.startswith(b"SIP/2.0 202"), resp
            writer.close()
            await bob.wait_message(lambda m: m["body"] == "over mutual TLS")

        bare = ssl.create_default_context(cafile=str(pki.ca_cert))  # no client certificate
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=bare, server_hostname="sip.example.test"
            )
            writer.write(req)
            await writer.drain()
            data_read = await asyncio.wait_for(reader.read(4096), 5)
            if not data_read:
                raise ConnectionError("closed by the gateway")
