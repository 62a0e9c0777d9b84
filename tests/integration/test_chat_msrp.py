"""Session-mode IM end to end (RFC 7573): a real Prosody, the gateway in-process, raw SIP
over UDP and the independent minimal MSRP endpoint of ``minimal_msrp.py``.

Tests are named after the conformance points of ``/work/shared/spec/interworking.md`` §4
they exercise (47-52 at the runtime level; 58-62 on the wire the gateway produces).
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from minimal_msrp import MinimalListener, MinimalMsrp, connect, ok_bytes, send_bytes

from sipxmpp.gateway.msrp import MessageReceived, MsrpSessionTable, SessionBound, parse_path
from sipxmpp.gateway.runtime.app import Gateway
from sipxmpp.gateway.settings import Settings
from sipxmpp.gateway.sip.ids import RandomIds
from sipxmpp.gateway.transport.msrp_stream import MsrpTransport, MsrpTransportConfig
from support.prosody import ProsodyComponent, ProsodyUser, make_prosody_fixture
from support.xmpp_client import XmppTestClient

pytestmark = pytest.mark.prosody

COMPONENT = "sip.example.test"
SECRET = "chat-secret"
NS_CS = "http://jabber.org/protocol/chatstates"
NS_RECEIPTS = "urn:xmpp:receipts"
ISCOMPOSING = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<isComposing xmlns="urn:ietf:params:xml:ns:im-iscomposing">'
    "<state>{}</state><contenttype>text/plain</contenttype></isComposing>"
)

prosody = make_prosody_fixture(
    scope="module",
    vhost="example.test",
    components=[ProsodyComponent(COMPONENT, SECRET)],
    users=[ProsodyUser("bob", "bob-pw")],
)

_n = itertools.count(1)


class UdpPeer(asyncio.DatagramProtocol):
    """The SIP side: outbound proxy of the gateway and the SIP user agent at once."""

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

    async def recv_request(self, method: str, timeout: float = 10.0) -> bytes:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            data = await asyncio.wait_for(self.queue.get(), max(0.01, deadline - loop.time()))
            if data.startswith(method.encode() + b" "):
                return data

    async def recv_response(self, method: str, timeout: float = 10.0, final: bool = True) -> bytes:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            data = await asyncio.wait_for(self.queue.get(), max(0.01, deadline - loop.time()))
            if not data.startswith(b"SIP/2.0 "):
                continue
            cseq = header(data, "CSeq") or ""
            if cseq.endswith(method) and (not final or int(data[8:11]) >= 200):
                return data


def header(msg: bytes, name: str) -> str | None:
    m = re.search(rb"^" + name.encode() + rb":\s*(.*?)\r$", msg, re.M | re.I)
    return m.group(1).decode() if m else None


def body(msg: bytes) -> bytes:
    return msg.split(b"\r\n\r\n", 1)[1]


def sdp_path(sdp: bytes) -> str:
    m = re.search(rb"^a=path:(.*?)\r?$", sdp, re.M)
    assert m, sdp
    return m.group(1).decode().split()[-1]


def authority(uri: str) -> tuple[str, int]:
    m = re.match(r"msrps?://([^:/]+):(\d+)/", uri)
    assert m, uri
    return m.group(1), int(m.group(2))


def offer_sdp(path: str, setup: str = "active") -> bytes:
    return (
        "v=0\r\no=- 1 0 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=message 9 TCP/MSRP *\r\n"
        "a=accept-types:text/plain application/im-iscomposing+xml\r\n"
        f"a=path:{path}\r\na=setup:{setup}\r\n"
    ).encode()


def answer_sdp(path: str, accept: str = "text/plain application/im-iscomposing+xml") -> bytes:
    port = authority(path)[1]
    return (
        "v=0\r\no=- 2 0 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=message {port} TCP/MSRP *\r\na=accept-types:{accept}\r\n"
        f"a=path:{path}\r\na=setup:passive\r\n"
    ).encode()


def response_to(request: bytes, code: int, reason: str, *, sdp: bytes = b"", port: int) -> bytes:
    lines = request.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
    keep = [
        ln
        for ln in lines
        if ln.split(b":", 1)[0].strip().lower() in (b"via", b"from", b"to", b"call-id", b"cseq")
    ]
    keep = [
        ln + b";tag=alicetag" if ln.lower().startswith(b"to:") and b"tag=" not in ln else ln
        for ln in keep
    ]
    extra = [f"Contact: <sip:alice@127.0.0.1:{port}>".encode()]
    if sdp:
        extra.append(b"Content-Type: application/sdp")
    return (
        b"\r\n".join(
            [f"SIP/2.0 {code} {reason}".encode(), *keep, *extra]
            + [f"Content-Length: {len(sdp)}".encode(), b""]
        )
        + b"\r\n"
        + sdp
    )


class SipCaller:
    """The SIP user alice calling an XMPP user through the gateway (UAC by hand)."""

    def __init__(self, peer: UdpPeer, gw_port: int) -> None:
        self.peer = peer
        self.gw_port = gw_port
        n = next(_n)
        self.call_id = f"chat-{n}@127.0.0.1"
        self.from_tag = f"alice{n}"
        self.to_tag = ""
        self.cseq = 1
        self.contact = ""

    def _request(self, method: str, uri: str, cseq: int, body_: bytes = b"") -> bytes:
        n = next(_n)
        to = "<sip:bob@example.test>" + (f";tag={self.to_tag}" if self.to_tag else "")
        ctype = "Content-Type: application/sdp\r\n" if body_ else ""
        return (
            f"{method} {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.peer.port};branch=z9hG4bKchat{n};rport\r\n"
            f"From: <sip:alice@example.test>;tag={self.from_tag}\r\nTo: {to}\r\n"
            f"Call-ID: {self.call_id}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n"
            f"Contact: <sip:alice@127.0.0.1:{self.peer.port}>\r\n{ctype}"
            f"Content-Length: {len(body_)}\r\n\r\n"
        ).encode() + body_

    async def invite(self, sdp: bytes) -> bytes:
        self.peer.send(self._request("INVITE", "sip:bob@example.test", 1, sdp), self.gw_port)
        resp = await self.peer.recv_response("INVITE")
        to = header(resp, "To") or ""
        self.to_tag = to.split("tag=", 1)[1] if "tag=" in to else ""
        contact = header(resp, "Contact") or ""
        self.contact = contact.strip("<>").split(">")[0]
        if resp[8:11] == b"200":
            self.peer.send(self._request("ACK", self.contact, 1), self.gw_port)
        return resp

    async def bye(self) -> bytes:
        self.cseq += 1
        self.peer.send(self._request("BYE", self.contact, self.cseq), self.gw_port)
        return await self.peer.recv_response("BYE")


def settings_for(prosody: Any, proxy_port: int, **chat: Any) -> Settings:
    return Settings.model_validate(
        {
            "sip": {
                "listen_host": "127.0.0.1",
                "udp_port": 0,
                "outbound_proxy": f"sip:127.0.0.1:{proxy_port};transport=udp",
                "t1": 0.05,
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
            "chat": {"enabled": True, "listen_host": "127.0.0.1", "tcp_port": 0, **chat},
            "presence": {"enabled": False},
            "log": {"level": "debug", "format": "text"},
        }
    )


@pytest.fixture
async def proxy() -> AsyncIterator[UdpPeer]:
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(UdpPeer, local_addr=("127.0.0.1", 0))
    yield peer
    transport.close()


@pytest.fixture
async def bob(prosody: Any) -> AsyncIterator[XmppTestClient]:
    async with XmppTestClient(
        "bob@example.test/laptop", "bob-pw", "127.0.0.1", prosody.c2s_port
    ) as client:
        await client.disco_info("example.test")
        yield client


async def _gateway(prosody: Any, proxy: UdpPeer, **chat: Any) -> Gateway:
    gw = Gateway(settings_for(prosody, proxy.port, **chat))
    await gw.start()
    assert await gw.xmpp.wait_up(10.0)
    return gw


@pytest.fixture
async def gateway(prosody: Any, proxy: UdpPeer) -> AsyncIterator[Gateway]:
    gw = await _gateway(prosody, proxy)
    try:
        yield gw
    finally:
        await gw.stop()


ALICE = f"alice@{COMPONENT}"


def chat_xml(
    to: str, text: str | None, *, mid: str, thread: str | None = None, extra: str = ""
) -> str:
    parts = [f"<message to='{to}' type='chat' id='{mid}'>"]
    if text is not None:
        parts.append(f"<body>{text}</body>")
    if thread:
        parts.append(f"<thread>{thread}</thread>")
    parts.append(extra + "</message>")
    return "".join(parts)


# ------------------------------------------------------------------ MSRP -> XMPP (S2X)


async def _incoming_session(
    gateway: Gateway, proxy: UdpPeer
) -> tuple[SipCaller, MinimalMsrp, str, str]:
    """alice INVITEs bob; returns (caller, MSRP connection, our path, gateway's path)."""
    caller = SipCaller(proxy, gateway.sip_addresses["udp"][1])
    ours = f"msrp://127.0.0.1:9/s{next(_n)}abcd;tcp"
    resp = await caller.invite(offer_sdp(ours))
    assert resp.startswith(b"SIP/2.0 200"), resp
    theirs = sdp_path(body(resp))
    assert re.search(rb"^a=max-size:\d+", body(resp), re.M)  # point 52: a=max-size advertised
    conn = await connect(*authority(theirs))
    return caller, conn, ours, theirs


async def test_point_48_msrp_send_becomes_chat_with_call_id_thread(
    gateway: Gateway, proxy: UdpPeer, bob: XmppTestClient
) -> None:
    caller, conn, ours, theirs = await _incoming_session(gateway, proxy)
    data, tid = send_bytes(theirs, ours, b"Hey Bob, are you there?")
    conn.write(data)
    assert (await conn.next_response(tid)).status == 200  # point 60: no Failure-Report = yes
    msg = await bob.wait_message(lambda m: m["type"] == "chat" and m["body"])
    assert msg["body"] == "Hey Bob, are you there?"
    assert msg["thread"] == caller.call_id
    assert str(msg["from"]).startswith(ALICE)

    # The reply flows back into the same session (RFC 7573 §5), with Failure-Report: no.
    bob.send_raw(chat_xml(ALICE, "Yes, I'm here", mid="r1", thread=caller.call_id))
    send = await conn.next_request("SEND")
    assert send.body == b"Yes, I'm here"
    assert send.header("Failure-Report") == "no"  # point 51
    assert send.header("To-Path") == ours and send.header("From-Path") == theirs
    assert list(send.headers)[-1] == "content-type"  # point 58: Content-Type last
    assert send.raw.endswith(f"-------{send.tid}$\r\n".encode())  # point 58

    # Point 50: SIP BYE -> <gone/> to the XMPP user.
    assert (await caller.bye()).startswith(b"SIP/2.0 200")
    gone = await bob.wait_message(lambda m: m.xml.find(f"{{{NS_CS}}}gone") is not None)
    assert gone["thread"] == caller.call_id
    await conn.close()


async def test_point_49_iscomposing_both_ways(
    gateway: Gateway, proxy: UdpPeer, bob: XmppTestClient
) -> None:
    caller, conn, ours, theirs = await _incoming_session(gateway, proxy)
    for state, expected in (("active", "composing"), ("idle", "active")):
        data, _ = send_bytes(
            theirs,
            ours,
            ISCOMPOSING.format(state).encode(),
            content_type="application/im-iscomposing+xml",
        )
        conn.write(data)
        tag = f"{{{NS_CS}}}{expected}"
        msg = await bob.wait_message(lambda m, tag=tag: m.xml.find(tag) is not None)
        assert msg["thread"] == caller.call_id
    for xmpp_state, iscomposing in (
        ("composing", "active"),
        ("paused", "idle"),
        ("inactive", "idle"),
    ):
        bob.send_raw(
            chat_xml(
                ALICE,
                None,
                mid=f"cs-{xmpp_state}",
                thread=caller.call_id,
                extra=f"<{xmpp_state} xmlns='{NS_CS}'/>",
            )
        )
        send = await conn.next_request("SEND")
        assert send.header("Content-Type") == "application/im-iscomposing+xml"
        assert f"<state>{iscomposing}</state>".encode() in send.body
    # Point 50: <gone/> -> BYE.
    bob.send_raw(
        chat_xml(ALICE, None, mid="g1", thread=caller.call_id, extra=f"<gone xmlns='{NS_CS}'/>")
    )
    bye = await proxy.recv_request("BYE")
    assert header(bye, "Call-ID") == caller.call_id
    await conn.close()


async def test_point_51_success_report_becomes_receipt_request(
    gateway: Gateway, proxy: UdpPeer, bob: XmppTestClient
) -> None:
    caller, conn, ours, theirs = await _incoming_session(gateway, proxy)
    data, tid = send_bytes(theirs, ours, b"ack me", extra="Success-Report: yes\r\n")
    conn.write(data)
    msg = await bob.wait_message(lambda m: m["body"] == "ack me")
    assert msg.xml.find(f"{{{NS_RECEIPTS}}}request") is not None
    report = await conn.next_request("REPORT")  # the gateway reports delivery (§7.1.2)
    assert report.header("Status") == "000 200 OK"
    await caller.bye()
    await conn.close()


async def test_point_52_over_limit_is_413_and_100kb_chunked_message_arrives(
    gateway: Gateway, proxy: UdpPeer, bob: XmppTestClient
) -> None:
    caller, conn, ours, theirs = await _incoming_session(gateway, proxy)
    # 100 KB in 2 KiB chunks (Byte-Range n-m/total, '+' then '$'), point 59.
    text = ("0123456789abcdef" * 6250).encode()
    assert len(text) == 100_000
    mid = f"big{next(_n)}"
    pos = 0
    last_tid = ""
    while pos < len(text):
        piece = text[pos : pos + 2048]
        end = pos + len(piece)
        data, last_tid = send_bytes(
            theirs,
            ours,
            piece,
            message_id=mid,
            byte_range=f"{pos + 1}-{end}/{len(text)}",
            flag="$" if end == len(text) else "+",
        )
        conn.write(data)
        pos = end
    assert (await conn.next_response(last_tid, timeout=20)).status == 200
    msg = await bob.wait_message(lambda m: len(m["body"] or "") > 1000, timeout=20)
    assert msg["body"].encode() == text

    # Over a=max-size: 413 to the first chunk whose total exceeds the limit (RFC 7573 §8).
    data, tid = send_bytes(theirs, ours, b"x" * 1000, byte_range="1-1000/1000000", flag="+")
    conn.write(data)
    assert (await conn.next_response(tid)).status == 413
    await caller.bye()
    await conn.close()


async def test_point_61_unknown_session_is_481(gateway: Gateway, proxy: UdpPeer) -> None:
    caller, conn, ours, theirs = await _incoming_session(gateway, proxy)
    host, port = authority(theirs)
    stranger = await connect(host, port)
    data, tid = send_bytes(f"msrp://{host}:{port}/nosuchsession;tcp", ours, b"hi")
    stranger.write(data)
    assert (await stranger.next_response(tid)).status == 481
    await stranger.close()
    await caller.bye()
    await conn.close()


# ------------------------------------------------------------------ XMPP -> MSRP (X2S)


async def _outgoing_session(
    proxy: UdpPeer, bob: XmppTestClient, listener: MinimalListener, text: str = "hello alice"
) -> tuple[bytes, MinimalMsrp, str, str]:
    bob.send_raw(chat_xml(ALICE, text, mid=f"x{next(_n)}", thread=f"th{next(_n)}"))
    invite = await proxy.recv_request("INVITE")
    offer = body(invite)
    # Point 47: m=message TCP/MSRP, accept-types with text/plain, a=path, a=setup (RFC 6135).
    assert re.search(rb"^m=message \d+ TCP/MSRP \*", offer, re.M)
    assert re.search(rb"^a=accept-types:.*text/plain", offer, re.M)
    assert re.search(rb"^a=setup:actpass", offer, re.M)
    assert re.search(rb"^a=max-size:\d+", offer, re.M)
    theirs = sdp_path(offer)
    ours = f"msrp://127.0.0.1:{listener.port}/alice{next(_n)}x;tcp"
    proxy.send(
        response_to(invite, 200, "OK", sdp=answer_sdp(ours), port=proxy.port), _src_port(invite)
    )
    await proxy.recv_request("ACK")
    conn = await listener.accept()
    bind = await conn.next_request("SEND")  # the binding SEND (RFC 4975 §5.4)
    conn.write(ok_bytes(bind, theirs, ours))
    return invite, conn, ours, theirs


def _src_port(request: bytes) -> int:
    via = header(request, "Via") or ""
    m = re.search(r"127\.0\.0\.1:(\d+)", via)
    assert m, via
    return int(m.group(1))


async def test_point_47_first_chat_message_opens_session(
    gateway: Gateway, proxy: UdpPeer, bob: XmppTestClient
) -> None:
    listener = MinimalListener()
    await listener.start()
    try:
        invite, conn, ours, theirs = await _outgoing_session(proxy, bob, listener)
        send = await conn.next_request("SEND")
        while not send.body:
            send = await conn.next_request("SEND")
        assert send.body == b"hello alice"
        assert send.header("Failure-Report") == "no"
        assert send.header("Message-ID")
        assert send.header("Byte-Range") == "1-11/11"
        # Replies flow into the same conversation with <thread/> = the XMPP thread.
        data, _ = send_bytes(theirs, ours, b"hi bob")
        conn.write(data)
        reply = await bob.wait_message(lambda m: m["body"] == "hi bob")
        assert reply["thread"] == header(invite, "Call-ID")
        # Receipts: <request/> -> Success-Report: yes; REPORT 200 -> <received/>.
        bob.send_raw(
            chat_xml(
                ALICE,
                "receipt please",
                mid="rcpt1",
                thread=header(invite, "Call-ID"),
                extra=f"<request xmlns='{NS_RECEIPTS}'/>",
            )
        )
        send = await conn.next_request("SEND")
        assert send.header("Success-Report") == "yes"
        report = (
            f"MSRP rep{next(_n)}x REPORT\r\nTo-Path: {theirs}\r\nFrom-Path: {ours}\r\n"
            f"Message-ID: {send.header('Message-ID')}\r\nByte-Range: 1-14/14\r\n"
            f"Status: 000 200 OK\r\n-------rep$\r\n"
        )
        tid = report.split()[1]
        conn.write(report.replace("-------rep$", f"-------{tid}$").encode())
        received = await bob.wait_message(
            lambda m: m.xml.find(f"{{{NS_RECEIPTS}}}received") is not None
        )
        assert received.xml.find(f"{{{NS_RECEIPTS}}}received").get("id") == "rcpt1"
        # Point 62: REPORT is never answered.
        bob.send_raw(chat_xml(ALICE, "after", mid="after1", thread=header(invite, "Call-ID")))
        nxt = await conn.next_frame()
        assert nxt.method == "SEND" and nxt.body == b"after"
    finally:
        await listener.close()


async def test_dropped_tcp_connection_ends_session_with_bye_and_gone(
    gateway: Gateway, proxy: UdpPeer, bob: XmppTestClient
) -> None:
    listener = MinimalListener()
    await listener.start()
    try:
        invite, conn, ours, theirs = await _outgoing_session(proxy, bob, listener)
        await conn.next_request("SEND")
        conn.abort()
        bye = await proxy.recv_request("BYE")
        assert header(bye, "Call-ID") == header(invite, "Call-ID")
        proxy.send(response_to(bye, 200, "OK", port=proxy.port), _src_port(bye))
        await bob.wait_message(lambda m: m.xml.find(f"{{{NS_CS}}}gone") is not None)
    finally:
        await listener.close()


async def test_message_over_peer_max_size_is_a_stanza_error(
    gateway: Gateway, proxy: UdpPeer, bob: XmppTestClient
) -> None:
    listener = MinimalListener()
    await listener.start()
    try:
        invite, conn, ours, theirs = await _outgoing_session(proxy, bob, listener)
        # The session is up; now a message larger than what the gateway accepts from XMPP.
        big = "y" * 200_000
        bob.send_raw(chat_xml(ALICE, big, mid="toobig", thread=header(invite, "Call-ID")))
        err = await bob.wait_message(lambda m: m["type"] == "error" and m["id"] == "toobig")
        assert err["error"]["condition"] in ("policy-violation", "not-acceptable")
    finally:
        await listener.close()


@pytest.mark.parametrize("code", [415, 488, 501])
async def test_fallback_to_pager_mode(
    gateway: Gateway, proxy: UdpPeer, bob: XmppTestClient, code: int
) -> None:
    bob.send_raw(chat_xml(ALICE, "first", mid=f"fb{code}", thread=f"fb-thread-{code}"))
    invite = await proxy.recv_request("INVITE")
    proxy.send(response_to(invite, code, "Nope", port=proxy.port), _src_port(invite))
    message = await proxy.recv_request("MESSAGE")
    assert body(message) == b"first"
    proxy.send(response_to(message, 200, "OK", port=proxy.port), _src_port(message))
    # The next message goes straight to pager mode.
    bob.send_raw(chat_xml(ALICE, "second", mid=f"fb2{code}", thread=f"fb-thread-{code}"))
    message = await proxy.recv_request("MESSAGE")
    assert body(message) == b"second"
    proxy.send(response_to(message, 200, "OK", port=proxy.port), _src_port(message))
    await bob.expect_no_message(0.3)


async def test_other_invite_failure_is_stanza_error(
    gateway: Gateway, proxy: UdpPeer, bob: XmppTestClient
) -> None:
    bob.send_raw(chat_xml(ALICE, "nobody home", mid="nf1", thread="nf-thread"))
    invite = await proxy.recv_request("INVITE")
    proxy.send(response_to(invite, 404, "Not Found", port=proxy.port), _src_port(invite))
    err = await bob.wait_message(lambda m: m["type"] == "error" and m["id"] == "nf1")
    assert err["error"]["condition"] == "item-not-found"


# ------------------------------------------------------------------ our MSRP core as far end


async def _wait_event(queue: asyncio.Queue[Any], kind: type, timeout: float = 20.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        ev = await asyncio.wait_for(queue.get(), max(0.01, deadline - loop.time()))
        if isinstance(ev, kind):
            return ev


async def test_core_peer_both_directions_with_100kb_chunked_message(
    gateway: Gateway, proxy: UdpPeer, bob: XmppTestClient
) -> None:
    """The far end is the project's own MSRP core and edge (active side), SIP by hand."""
    events: asyncio.Queue[Any] = asyncio.Queue()
    table = MsrpSessionTable(RandomIds())
    async with MsrpTransport(table, MsrpTransportConfig(), on_event=events.put_nowait) as far:
        local = far.new_local_uri()
        caller = SipCaller(proxy, gateway.sip_addresses["udp"][1])
        resp = await caller.invite(offer_sdp(str(local)))
        assert resp.startswith(b"SIP/2.0 200"), resp
        session = table.create_session(
            local,
            remote_path=parse_path(sdp_path(body(resp))),
            accept_types=("text/plain", "application/im-iscomposing+xml"),
        )
        far.connect(session)
        await _wait_event(events, SessionBound)
        far.send_message(session, "text/plain;charset=UTF-8", "from the core ✓".encode())
        msg = await bob.wait_message(lambda m: m["type"] == "chat" and bool(m["body"]))
        assert msg["body"] == "from the core ✓"
        assert msg["thread"] == caller.call_id
        # XMPP -> MSRP: a 100 KB message, chunked by the gateway, reassembled by the core.
        text = "z" * 100_000
        bob.send_raw(chat_xml(ALICE, text, mid="big-out", thread=caller.call_id))
        received = await _wait_event(events, MessageReceived)
        assert received.body == text.encode()
        assert received.content_type.startswith("text/plain")
        assert (await caller.bye()).startswith(b"SIP/2.0 200")
        await bob.wait_message(lambda m: m.xml.find(f"{{{NS_CS}}}gone") is not None)
        assert gateway.chat is not None and gateway.chat.session_count() == 0


class _PagerOnly:
    """A peer whose provisioning says "no session-mode IM" (parameter 9)."""

    def use_session_mode(self) -> bool:
        return False

    def send_is_composing(self) -> bool:
        return False

    @property
    def tls_only(self) -> bool:
        return False


async def test_fallback_when_provisioning_says_pager_only(
    gateway: Gateway, proxy: UdpPeer, bob: XmppTestClient
) -> None:
    assert gateway.chat is not None
    gateway.chat._peer_policy = lambda domain: _PagerOnly()
    bob.send_raw(chat_xml(ALICE, "pager please", mid="prov1", thread="prov-thread"))
    first = await proxy.queue.get()
    assert first.startswith(b"MESSAGE "), first[:40]  # no INVITE at all
    assert body(first) == b"pager please"
    proxy.send(response_to(first, 200, "OK", port=proxy.port), _src_port(first))
    await bob.expect_no_message(0.3)


async def test_inactivity_timer_ends_forgotten_session(
    prosody: Any, proxy: UdpPeer, bob: XmppTestClient
) -> None:
    gw = await _gateway(prosody, proxy, inactivity_timeout=0.5)
    try:
        caller, conn, ours, theirs = await _incoming_session(gw, proxy)
        data, _ = send_bytes(theirs, ours, b"anyone?")
        conn.write(data)
        await bob.wait_message(lambda m: m["body"] == "anyone?")
        bye = await proxy.recv_request("BYE", timeout=5)
        assert header(bye, "Call-ID") == caller.call_id
        await bob.wait_message(lambda m: m.xml.find(f"{{{NS_CS}}}gone") is not None)
        await conn.close()
    finally:
        await gw.stop()
