"""The XMPP edge against a real Prosody 0.12 started on 127.0.0.1 for the test.

A client logs in with slixmpp (tests/support/xmpp_client.py) and exchanges messages with
SIP-side JIDs under the component domain.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest
from xmpp_harness import COMPONENT as COMPONENT_DOMAIN
from xmpp_harness import PROSODY_SECRET as COMPONENT_SECRET
from xmpp_harness import RecordingHandler

from sipxmpp.gateway.xmpp import StanzaErrorException, XmppEdge, XmppEdgeConfig
from sipxmpp.mapping.model import StanzaError, XmppMessage
from support.prosody import ProsodyServer
from support.xmpp_client import XmppTestClient

pytestmark = pytest.mark.prosody

STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def make_edge(server: ProsodyServer, handler: RecordingHandler, **kw: object) -> XmppEdge:
    settings: dict[str, object] = {"reconnect_min": 0.1, "reconnect_max": 0.5, **kw}
    cfg = XmppEdgeConfig(
        COMPONENT_DOMAIN,
        COMPONENT_SECRET,
        server.host,
        server.component_port,
        **settings,  # type: ignore[arg-type]
    )
    return XmppEdge(cfg, handler, rng=random.Random(1))


@pytest.fixture
async def edge_and_handler(
    prosody: ProsodyServer,
) -> AsyncIterator[tuple[XmppEdge, RecordingHandler]]:
    handler = RecordingHandler()
    edge = make_edge(prosody, handler)
    await edge.start()
    try:
        assert await edge.wait_up(10), prosody.log_tail()
        yield edge, handler
    finally:
        await edge.stop()


@pytest.fixture
async def alice(prosody: ProsodyServer) -> AsyncIterator[XmppTestClient]:
    client = XmppTestClient(
        prosody.jid("alice"), prosody.password("alice"), prosody.host, prosody.c2s_port
    )
    await client.connect()
    try:
        yield client
    finally:
        await client.disconnect()


async def test_client_message_reaches_on_message(
    edge_and_handler: tuple[XmppEdge, RecordingHandler], alice: XmppTestClient
) -> None:
    _, handler = edge_and_handler
    mid = alice.send_message(
        f"bob@{COMPONENT_DOMAIN}",
        "Příliš žluťoučký kůň 😀 <&>",
        mtype="chat",
        subject="Předmět",
        thread="call-id-1",
        lang="cs",
    )
    msg = await asyncio.wait_for(handler.messages.get(), 10)
    assert msg == XmppMessage(
        from_jid=alice.jid,
        to_jid=f"bob@{COMPONENT_DOMAIN}",
        body="Příliš žluťoučký kůň 😀 <&>",
        subject="Předmět",
        thread="call-id-1",
        id=mid,
        type="chat",
        lang="cs",
    )


async def test_xhtml_im_arrives_serialized(
    edge_and_handler: tuple[XmppEdge, RecordingHandler], alice: XmppTestClient
) -> None:
    _, handler = edge_and_handler
    alice.send_message(
        f"bob@{COMPONENT_DOMAIN}",
        "bold",
        xhtml="<body xmlns='http://www.w3.org/1999/xhtml'><p><strong>bold</strong></p></body>",
    )
    msg = await asyncio.wait_for(handler.messages.get(), 10)
    assert msg.xhtml == (
        '<body xmlns="http://www.w3.org/1999/xhtml"><p><strong>bold</strong></p></body>'
    )


async def test_send_message_reaches_the_client(
    edge_and_handler: tuple[XmppEdge, RecordingHandler], alice: XmppTestClient
) -> None:
    edge, _ = edge_and_handler
    mid = edge.send_message(
        XmppMessage(
            from_jid=f"bob@{COMPONENT_DOMAIN}",
            to_jid=alice.jid,
            body="Grüße aus SIP 😀",
            subject="Hallo",
            thread="call-2",
            type="chat",
            lang="de",
            xhtml="<body xmlns='http://www.w3.org/1999/xhtml'><em>Grüße</em></body>",
        )
    )
    got = await alice.next_message()
    assert got["id"] == mid
    assert str(got["from"]) == f"bob@{COMPONENT_DOMAIN}"
    assert got["type"] == "chat"
    assert got["body"] == "Grüße aus SIP 😀"
    assert got["subject"] == "Hallo" and got["thread"] == "call-2"
    assert got.xml.get("{http://www.w3.org/XML/1998/namespace}lang") == "de"
    em = got.xml.find(".//{http://www.w3.org/1999/xhtml}em")
    assert em is not None and em.text == "Grüße"


async def test_server_error_reply_reaches_on_message_error(
    edge_and_handler: tuple[XmppEdge, RecordingHandler],
) -> None:
    edge, handler = edge_and_handler
    mid = edge.send_message(
        XmppMessage(from_jid=f"bob@{COMPONENT_DOMAIN}", to_jid="nobody@example.test", body="hello?")
    )
    err = await asyncio.wait_for(handler.errors.get(), 10)
    assert err.id == mid and err.type == "error"
    assert err.from_jid == "nobody@example.test" and err.to_jid == f"bob@{COMPONENT_DOMAIN}"
    assert err.error is not None and err.error.condition == "service-unavailable"


async def test_handler_error_is_answered_to_the_client(
    edge_and_handler: tuple[XmppEdge, RecordingHandler], alice: XmppTestClient
) -> None:
    _, handler = edge_and_handler
    handler.raise_on_message = StanzaErrorException(
        StanzaError("item-not-found", "cancel", text="no such SIP user")
    )
    mid = alice.send_message(f"ghost@{COMPONENT_DOMAIN}", "anyone?")
    reply = await alice.next_message()
    assert reply["type"] == "error" and reply["id"] == mid
    assert str(reply["from"]) == f"ghost@{COMPONENT_DOMAIN}"
    assert reply.xml.find(f".//{{{STANZAS}}}item-not-found") is not None
    text = reply.xml.find(f".//{{{STANZAS}}}text")
    assert text is not None and text.text == "no such SIP user"


async def test_disco_identity_of_the_component(
    edge_and_handler: tuple[XmppEdge, RecordingHandler], alice: XmppTestClient
) -> None:
    iq = await alice.disco_info(COMPONENT_DOMAIN)
    info = iq["disco_info"]
    assert ("gateway", "sip", None, "SIP gateway") in info["identities"]
    assert {"http://jabber.org/protocol/disco#info", "urn:xmpp:ping"} <= set(info["features"])


async def test_keepalive_ping_to_the_server(prosody: ProsodyServer) -> None:
    handler = RecordingHandler()
    edge = make_edge(prosody, handler, keepalive_interval=0.1, keepalive_timeout=2.0)
    async with edge:
        assert await edge.wait_up(10)
        await asyncio.sleep(0.5)  # several pings answered by Prosody's mod_ping
        assert edge.up and handler.link_states == [True]


async def test_reconnects_after_prosody_restart(own_prosody: ProsodyServer) -> None:
    handler = RecordingHandler()
    edge = make_edge(own_prosody, handler)
    async with edge:
        assert await edge.wait_up(10)
        await asyncio.to_thread(own_prosody.stop)
        await handler.wait_link_states([True, False], timeout=10)
        assert not edge.up
        await asyncio.sleep(0.3)  # a few refused attempts while Prosody is down
        await asyncio.to_thread(own_prosody.start)
        await handler.wait_link_states([True, False, True], timeout=15)
        assert edge.up
        client = XmppTestClient(
            own_prosody.jid("carol"),
            own_prosody.password("carol"),
            own_prosody.host,
            own_prosody.c2s_port,
        )
        async with client:
            client.send_message(f"bob@{COMPONENT_DOMAIN}", "after restart")
            msg = await asyncio.wait_for(handler.messages.get(), 10)
            assert msg.body == "after restart"


async def test_wrong_secret_is_refused(prosody: ProsodyServer) -> None:
    handler = RecordingHandler()
    cfg = XmppEdgeConfig(
        COMPONENT_DOMAIN,
        "not-the-secret",
        prosody.host,
        prosody.component_port,
        reconnect_min=0.2,
        reconnect_max=0.4,
    )
    async with XmppEdge(cfg, handler) as edge:
        assert not await edge.wait_up(1.0)
        assert handler.link_states == []
