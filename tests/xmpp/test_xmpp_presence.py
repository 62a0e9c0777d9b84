"""Presence on the XMPP edge: conversion both ways, the dispatcher, and the edge end to end
against the scripted component server (no Prosody)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from xmpp_harness import (
    COMPONENT,
    SECRET,
    FakeComponentServer,
    assert_xml,
    parse_stanza,
)

from sipxmpp.gateway.xmpp import LinkDown, LocalXmppError, StanzaErrorException, XmppEdge
from sipxmpp.gateway.xmpp.config import XmppEdgeConfig
from sipxmpp.gateway.xmpp.dispatch.presence import PresenceDispatcher
from sipxmpp.gateway.xmpp.errors import Ignore, RemoteXmppError
from sipxmpp.gateway.xmpp.presence_convert import (
    MAX_STATUSES,
    presence_from_element,
    presence_to_xml,
)
from sipxmpp.mapping.model import StanzaError, StanzaRefused, XmppMessage
from sipxmpp.mapping.pidf import Show
from sipxmpp.mapping.presence import PresenceType, XmppPresence, XmppStatus

# -- incoming: table of stanzas -------------------------------------------------------------

INCOMING = [
    (
        "<presence from='bob@example.test/pc' to='alice@sip.example.test'/>",
        XmppPresence("bob@example.test/pc", "alice@sip.example.test"),
    ),
    (
        "<presence from='bob@example.test/pc' to='alice@sip.example.test' type='unavailable'/>",
        XmppPresence("bob@example.test/pc", "alice@sip.example.test", PresenceType.UNAVAILABLE),
    ),
    (
        "<presence from='bob@example.test' to='alice@sip.example.test' type='subscribe' id='s1'/>",
        XmppPresence("bob@example.test", "alice@sip.example.test", PresenceType.SUBSCRIBE, id="s1"),
    ),
    (
        "<presence from='bob@example.test/pc' to='alice@sip.example.test' xml:lang='de'>"
        "<show> dnd </show><status>Besprechung</status>"
        "<status xml:lang='en'>Meeting</status><priority>-5</priority>"
        "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v'/></presence>",
        XmppPresence(
            "bob@example.test/pc",
            "alice@sip.example.test",
            show=Show.DND,
            statuses=(XmppStatus("Besprechung"), XmppStatus("Meeting", "en")),
            priority=-5,
            lang="de",
        ),
    ),
    (  # no 'to': the component itself (RFC 6120 §8.1.1.1)
        "<presence from='bob@example.test' type='probe'/>",
        XmppPresence("bob@example.test", COMPONENT, PresenceType.PROBE),
    ),
]


@pytest.mark.parametrize(("xml", "expected"), INCOMING)
def test_presence_from_element(xml: str, expected: XmppPresence) -> None:
    assert presence_from_element(parse_stanza(xml), default_to=COMPONENT) == expected


@pytest.mark.parametrize(
    "xml",
    [
        "<presence from='a@b' type='available'/>",  # not an RFC 6121 type
        "<presence from='a@b'><show>busy</show></presence>",
        "<presence from='a@b'><priority>200</priority></presence>",
        "<presence from='a@b'><priority>high</priority></presence>",
    ],
)
def test_undefined_values_are_bad_request(xml: str) -> None:
    with pytest.raises(StanzaRefused) as info:
        presence_from_element(parse_stanza(xml), default_to=COMPONENT)
    assert info.value.error.condition == "bad-request"


def test_no_from_is_refused_and_statuses_are_bounded() -> None:
    with pytest.raises(RemoteXmppError):
        presence_from_element(parse_stanza("<presence to='a@b'/>"), default_to=COMPONENT)
    many = "".join(f"<status xml:lang='en-x{i}'>s{i}</status>" for i in range(MAX_STATUSES + 5))
    p = presence_from_element(
        parse_stanza(f"<presence from='a@b'>{many}</presence>"), default_to=COMPONENT
    )
    assert len(p.statuses) == MAX_STATUSES


# -- outgoing -------------------------------------------------------------------------------


def test_presence_to_xml_fields_and_escaping() -> None:
    xml = presence_to_xml(
        XmppPresence(
            "alice@sip.example.test/pc",
            "bob@example.test",
            show=Show.AWAY,
            statuses=(XmppStatus('<lunch> & "more"'), XmppStatus("Essen", "de")),
            priority=5,
            lang="en",
            id="p1",
        ),
        component_domain=COMPONENT,
    )
    assert_xml(
        parse_stanza(xml),
        "<presence from='alice@sip.example.test/pc' to='bob@example.test' id='p1'"
        " xml:lang='en'><show>away</show><status>&lt;lunch&gt; &amp; \"more\"</status>"
        "<status xml:lang='de'>Essen</status><priority>5</priority></presence>",
    )
    assert (
        presence_to_xml(
            XmppPresence("a@sip.example.test", "b@example.test", PresenceType.SUBSCRIBED),
            component_domain=COMPONENT,
        )
        == '<presence from="a@sip.example.test" to="b@example.test" type="subscribed"/>'
    )


def test_presence_to_xml_refusals_and_errors() -> None:
    with pytest.raises(LocalXmppError):
        presence_to_xml(XmppPresence("a@elsewhere", "b@example.test"), component_domain=COMPONENT)
    with pytest.raises(LocalXmppError):  # error without type='error'
        presence_to_xml(
            XmppPresence("a@sip.example.test", "b@x"),
            component_domain=COMPONENT,
            error=StanzaError("bad-request", "modify"),
        )
    with pytest.raises(LocalXmppError):
        presence_to_xml(
            XmppPresence("a@sip.example.test", "b@x", PresenceType.ERROR),
            component_domain=COMPONENT,
            error=StanzaError("no-such-condition", "modify"),
        )
    xml = presence_to_xml(
        XmppPresence("a@sip.example.test", "b@x", PresenceType.ERROR, id="e"),
        component_domain=COMPONENT,
        error=StanzaError("resource-constraint", "wait", "too many"),
    )
    el = parse_stanza(xml)
    assert el.get("type") == "error" and el.get("id") == "e"
    assert el.find(".//{urn:ietf:params:xml:ns:xmpp-stanzas}resource-constraint") is not None


_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\ufffe\uffff"),
    max_size=40,
).filter(lambda t: all(c in "\t\n\r" or ord(c) >= 0x20 for c in t))


@settings(max_examples=200, deadline=None)
@given(
    ptype=st.sampled_from([PresenceType.AVAILABLE, PresenceType.UNAVAILABLE, PresenceType.PROBE]),
    show=st.none() | st.sampled_from(list(Show)),
    statuses=st.lists(_text.map(lambda t: t.replace("\r", "")), max_size=3),
    priority=st.integers(-128, 127),
)
def test_round_trip_property(
    ptype: PresenceType, show: Show | None, statuses: list[str], priority: int
) -> None:
    p = XmppPresence(
        "a@sip.example.test/r",
        "b@example.test",
        ptype,
        show=show,
        statuses=tuple(XmppStatus(s) for s in statuses),
        priority=priority,
    )
    back = presence_from_element(
        parse_stanza(presence_to_xml(p, component_domain=COMPONENT)), default_to=COMPONENT
    )
    assert back == p


# -- dispatcher -----------------------------------------------------------------------------


class Handler:
    def __init__(self) -> None:
        self.presences: list[XmppPresence] = []
        self.errors: list[tuple[XmppPresence, StanzaError]] = []
        self.raise_: BaseException | None = None
        self.block: asyncio.Event | None = None

    async def on_presence(self, presence: XmppPresence) -> None:
        if self.block is not None:
            await self.block.wait()
        self.presences.append(presence)
        if self.raise_ is not None:
            raise self.raise_

    async def on_presence_error(self, presence: XmppPresence, error: StanzaError) -> None:
        self.errors.append((presence, error))


async def test_dispatcher_routes_answers_and_bounds() -> None:
    handler = Handler()
    replies: list[tuple[XmppPresence, StanzaError]] = []
    d = PresenceDispatcher(
        handler, lambda p, e: replies.append((p, e)), default_to=COMPONENT, max_in_flight=1
    )
    d(parse_stanza("<presence from='b@example.test/pc' to='a@sip.example.test'/>"))
    assert handler.presences[-1].from_jid == "b@example.test/pc"  # eagerly, no task
    # a handler refusal becomes a presence error to the sender
    handler.raise_ = StanzaErrorException(StanzaError("not-allowed", "cancel", "no"))
    d(
        parse_stanza(
            "<presence from='b@example.test' to='a@sip.example.test' type='subscribe' id='x'/>"
        )
    )
    assert replies[-1][0].from_jid == "b@example.test" and replies[-1][1].condition == "not-allowed"
    handler.raise_ = Ignore()
    d(parse_stanza("<presence from='b@example.test' to='a@sip.example.test' type='probe'/>"))
    assert len(replies) == 1
    # an undefined value is answered bad-request without reaching the handler
    count = len(handler.presences)
    d(parse_stanza("<presence from='b@example.test' to='a@sip.example.test' type='bogus'/>"))
    assert len(handler.presences) == count and replies[-1][1].condition == "bad-request"
    # errors go to on_presence_error and are never answered
    d(
        parse_stanza(
            "<presence from='b@example.test' to='a@sip.example.test' type='error'>"
            "<error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
            "</error></presence>"
        )
    )
    await asyncio.sleep(0)
    assert handler.errors[-1][1].condition == "item-not-found"
    assert len(replies) == 2
    # bounded: one suspended handler fills the dispatcher; the next is refused
    handler.raise_ = None
    handler.block = asyncio.Event()
    d(parse_stanza("<presence from='b@example.test/1' to='a@sip.example.test'/>"))
    assert d.in_flight == 1
    d(parse_stanza("<presence from='b@example.test/2' to='a@sip.example.test'/>"))
    assert replies[-1][1].condition == "resource-constraint"
    handler.block.set()
    await asyncio.sleep(0.01)
    assert d.in_flight == 0
    await d.aclose()


async def test_dispatcher_without_presence_methods_drops_silently() -> None:
    replies: list[Any] = []
    d = PresenceDispatcher(object(), lambda p, e: replies.append(e), default_to=COMPONENT)
    d(parse_stanza("<presence from='b@example.test' to='a@sip.example.test' type='subscribe'/>"))
    d(parse_stanza("<presence from='b@example.test' type='error'/>"))
    assert replies == []


# -- the edge, against the scripted server ------------------------------------------------


class EdgeHandler(Handler):
    def __init__(self) -> None:
        super().__init__()
        self.queue: asyncio.Queue[XmppPresence] = asyncio.Queue()

    async def on_presence(self, presence: XmppPresence) -> None:
        await super().on_presence(presence)
        self.queue.put_nowait(presence)

    async def on_message(self, msg: XmppMessage) -> None:
        pass

    async def on_message_error(self, msg: XmppMessage) -> None:
        pass

    def on_link_state(self, up: bool) -> None:
        pass


@pytest.fixture
async def server() -> AsyncIterator[FakeComponentServer]:
    srv = FakeComponentServer()
    await srv.start()
    try:
        yield srv
    finally:
        await srv.close()


def make_edge(port: int, handler: Any) -> XmppEdge:
    cfg = XmppEdgeConfig(
        COMPONENT,
        SECRET,
        "127.0.0.1",
        port,
        reconnect_min=0.05,
        reconnect_max=0.2,
        handshake_timeout=5.0,
    )
    return XmppEdge(cfg, handler, rng=random.Random(3))


async def test_edge_receives_and_sends_presence(server: FakeComponentServer) -> None:
    handler = EdgeHandler()
    with pytest.raises(LinkDown):
        make_edge(1, handler).send_presence(XmppPresence("a@sip.example.test", "b@example.test"))
    async with make_edge(server.port, handler) as edge:
        assert await edge.wait_up(5)
        conn = await server.next_connection()
        conn.send(
            "<presence from='bob@example.test/pc' to='alice@sip.example.test'>"
            "<show>away</show></presence>"
        )
        got = await asyncio.wait_for(handler.queue.get(), 5)
        assert (got.from_jid, got.show) == ("bob@example.test/pc", Show.AWAY)
        edge.send_presence(
            XmppPresence("alice@sip.example.test/pc", "bob@example.test", show=Show.DND)
        )
        stanza = await conn.next_stanza()
        assert_xml(
            stanza,
            "<presence from='alice@sip.example.test/pc' to='bob@example.test'>"
            "<show>dnd</show></presence>",
        )
        # a handler refusal is answered with a presence error from the addressee
        handler.raise_ = StanzaErrorException(StanzaError("forbidden", "auth"))
        conn.send(
            "<presence from='bob@example.test' to='alice@sip.example.test' "
            "type='subscribe' id='s9'/>"
        )
        reply = await conn.next_stanza()
        assert reply.get("type") == "error" and reply.get("id") == "s9"
        assert reply.get("from") == "alice@sip.example.test"
        assert reply.get("to") == "bob@example.test"
