"""XML in, XML out through the component's stream, dispatcher and disco (no sockets).

The server side is played by feeding bytes to ``data_received``; what the component writes is
parsed back and compared structurally.
"""

from __future__ import annotations

import asyncio
import logging
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slixmpp.exceptions import XMPPError
from xmpp_harness import (
    COMPONENT,
    SECRET,
    STREAM_ID,
    MemoryComponent,
    RecordingHandler,
    assert_xml,
)

from sipxmpp.gateway.xmpp import (
    DiscoIdentity,
    DiscoInfo,
    DiscoRequest,
    Ignore,
    StanzaErrorException,
    handshake_digest,
)
from sipxmpp.gateway.xmpp.errors import boundary, to_xmpp_error
from sipxmpp.mapping.model import StanzaError, XmppMessage

STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
DISCO = "http://jabber.org/protocol/disco#info"


@pytest.fixture
async def comp() -> AsyncIterator[MemoryComponent]:
    component = MemoryComponent(RecordingHandler())
    await component.open()
    try:
        yield component
    finally:
        await component.close()


def handler_of(comp: MemoryComponent) -> RecordingHandler:
    assert isinstance(comp.handler, RecordingHandler)
    return comp.handler


async def test_handshake_uses_the_xep_0114_digest() -> None:
    component = MemoryComponent(RecordingHandler())
    await component.open(handshake=False)
    try:
        [handshake] = component.sent()
        assert handshake.text == handshake_digest(STREAM_ID, SECRET)
        header = component.reader.header
        assert header is not None and header.get("to") == COMPONENT
        assert header.tag == "{http://etherx.jabber.org/streams}stream"
        assert not component.xmpp.sessionstarted
        component.recv("<handshake/>")
        await component.settle()
        assert component.xmpp.sessionstarted
    finally:
        await component.close()


async def test_message_reaches_handler(comp: MemoryComponent) -> None:
    comp.recv(
        # language=XML
        "<message from='alice@example.test/pc' to='bob@sip.example.test' id='m1' type='chat'"
        " xml:lang='fr'><body>Ça va ?</body><thread>t</thread></message>"
    )
    msg = await asyncio.wait_for(handler_of(comp).messages.get(), 1)
    assert msg == XmppMessage(
        from_jid="alice@example.test/pc",
        to_jid="bob@sip.example.test",
        body="Ça va ?",
        thread="t",
        id="m1",
        type="chat",
        lang="fr",
    )
    await comp.settle()
    assert comp.sent() == []


async def test_message_in_client_namespace_reaches_handler(comp: MemoryComponent) -> None:
    comp.recv(
        "<message xmlns='jabber:client' from='a@example.test' to='b@sip.example.test'>"
        "<body>x</body></message>"
    )
    msg = await asyncio.wait_for(handler_of(comp).messages.get(), 1)
    assert msg.body == "x"


BOUNDARY_CASES: list[tuple[str, BaseException, str | None]] = [
    (
        "stanza error",
        StanzaErrorException(StanzaError("item-not-found", "cancel", text="no such SIP user")),
        f"<error type='cancel'><item-not-found xmlns='{STANZAS}'/>"
        f"<text xmlns='{STANZAS}'>no such SIP user</text></error>",
    ),
    (
        "stanza error with a new address",
        StanzaErrorException(StanzaError("gone", "cancel", uri="xmpp:new@sip.example.test")),
        f"<error type='cancel'><gone xmlns='{STANZAS}'>xmpp:new@sip.example.test</gone></error>",
    ),
    (
        "undefined condition is a bug: internal-server-error",
        StanzaErrorException(StanzaError("no-such-condition", "cancel")),
        f"<error type='cancel'><internal-server-error xmlns='{STANZAS}'/></error>",
    ),
    (
        "XMPPError passes",
        XMPPError("not-acceptable", text="too long", etype="modify"),
        f"<error type='modify'><not-acceptable xmlns='{STANZAS}'/>"
        f"<text xmlns='{STANZAS}'>too long</text></error>",
    ),
    (
        "NotImplementedError",
        NotImplementedError(),
        f"<error type='cancel'><feature-not-implemented xmlns='{STANZAS}'/></error>",
    ),
    (
        "anything else: internal-server-error without the exception text",
        RuntimeError("secret internals"),
        f"<error type='cancel'><internal-server-error xmlns='{STANZAS}'/></error>",
    ),
    ("Ignore: no answer", Ignore(), None),
]


@pytest.mark.parametrize(
    ("exc", "error_xml"), [c[1:] for c in BOUNDARY_CASES], ids=[c[0] for c in BOUNDARY_CASES]
)
async def test_boundary_answers(
    comp: MemoryComponent, exc: BaseException, error_xml: str | None
) -> None:
    handler_of(comp).raise_on_message = exc
    comp.recv(
        "<message from='alice@example.test/pc' to='bob@sip.example.test' id='m7' type='chat'>"
        "<body>hello</body></message>"
    )
    await comp.settle(50)
    sent = comp.sent()
    if error_xml is None:
        assert sent == []
        return
    [reply] = sent
    assert_xml(
        reply,
        "<message from='bob@sip.example.test' to='alice@example.test/pc' id='m7' type='error'>"
        + error_xml.replace("<error type", "<error xmlns='jabber:client' type")
        + "</message>",
    )


async def test_unexpected_error_is_logged_with_traceback(
    comp: MemoryComponent, caplog: pytest.LogCaptureFixture
) -> None:
    handler_of(comp).raise_on_message = RuntimeError("boom")
    with caplog.at_level(logging.ERROR, logger="sipxmpp.gateway.xmpp.errors"):
        comp.recv("<message from='a@example.test' to='b@sip.example.test'><body>x</body></message>")
        await comp.settle(50)
    [record] = [r for r in caplog.records if r.name == "sipxmpp.gateway.xmpp.errors"]
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)


async def test_groupchat_is_refused(comp: MemoryComponent) -> None:
    comp.recv(
        "<message from='room@muc.example.test/nick' to='bob@sip.example.test' id='g1'"
        " type='groupchat'><body>hi all</body></message>"
    )
    await comp.settle()
    [reply] = comp.sent()
    assert reply.get("type") == "error" and reply.get("id") == "g1"
    assert reply.find(f".//{{{STANZAS}}}feature-not-implemented") is not None
    assert handler_of(comp).messages.empty()


async def test_error_message_goes_to_on_message_error_and_is_never_answered(
    comp: MemoryComponent,
) -> None:
    handler = handler_of(comp)
    handler.raise_on_error = RuntimeError("handler bug")
    comp.recv(
        f"<message from='nobody@example.test' to='bob@sip.example.test' id='sx-1' type='error'>"
        f"<error type='cancel'><service-unavailable xmlns='{STANZAS}'/></error></message>"
    )
    msg = await asyncio.wait_for(handler.errors.get(), 1)
    assert msg.id == "sx-1" and msg.error == StanzaError("service-unavailable", "cancel")
    await comp.settle(50)
    assert comp.sent() == []  # RFC 6120 §8.3.1


async def test_message_without_from_is_dropped(comp: MemoryComponent) -> None:
    comp.recv("<message to='bob@sip.example.test'><body>x</body></message>")
    await comp.settle()
    assert comp.sent() == [] and handler_of(comp).messages.empty()


async def test_in_flight_bound_answers_resource_constraint() -> None:
    handler = RecordingHandler()
    handler.block = asyncio.Event()
    comp = MemoryComponent(handler, max_in_flight=2)
    await comp.open()
    try:
        for i in range(3):
            comp.recv(
                f"<message from='a@example.test' to='b@sip.example.test' id='f{i}'><body/></message>"
            )
        await comp.settle()
        [reply] = comp.sent()
        assert reply.get("id") == "f2"
        assert reply.find(f".//{{{STANZAS}}}resource-constraint") is not None
        assert reply.find("{jabber:client}error").get("type") == "wait"
        assert comp.dispatcher.in_flight == 2
        handler.block.set()
        for _ in range(2):
            await asyncio.wait_for(handler.messages.get(), 1)
    finally:
        await comp.close()


async def test_presence_is_dropped_without_state(comp: MemoryComponent) -> None:
    for i in range(50):
        comp.recv(f"<presence from='u{i}@example.test' to='bob@sip.example.test'/>")
        comp.recv(f"<presence from='u{i}@example.test' to='bob@sip.example.test' type='probe'/>")
    await comp.settle()
    assert comp.sent() == []
    assert list(comp.xmpp.roster.keys()) == [COMPONENT]  # no entry per contact
    assert list(comp.xmpp.roster[COMPONENT].keys()) == []


# -- iq: disco, ping, unknown requests ---------------------------------------------------------


def disco_get(to: str = COMPONENT, node: str | None = None, iq_id: str = "d1") -> str:
    node_attr = f" node='{node}'" if node else ""
    return (
        f"<iq type='get' id='{iq_id}' from='alice@example.test/pc' to='{to}'>"
        f"<query xmlns='{DISCO}'{node_attr}/></iq>"
    )


async def test_disco_info_identity_and_features(comp: MemoryComponent) -> None:
    comp.recv(disco_get())
    await comp.settle(50)
    [reply] = comp.sent()
    assert_xml(
        reply,
        f"<iq type='result' id='d1' from='{COMPONENT}' to='alice@example.test/pc'>"
        f"<query xmlns='{DISCO}'><identity category='gateway' type='sip' name='SIP gateway'/>"
        f"<feature var='{DISCO}'/><feature var='urn:xmpp:ping'/></query></iq>",
    )


async def test_disco_info_extension_hooks(comp: MemoryComponent) -> None:
    comp.registry.add_feature("http://jabber.org/protocol/caps")
    comp.registry.add_identity(DiscoIdentity("gateway", "sip", "SIP-Gateway", lang="de"))
    form = (
        "<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'>"
        "<value>urn:example:pres-im-provisioning:0</value></field>"
        "<field var='tls-only' type='boolean'><value>1</value></field></x>"
    )
    comp.registry.set_forms([form])
    comp.recv(disco_get())
    await comp.settle(50)
    [reply] = comp.sent()
    query = reply.find(f"{{{DISCO}}}query")
    assert query is not None
    identities = {
        (i.get("category"), i.get("type"), i.get("name"))
        for i in query.iter(f"{{{DISCO}}}identity")
    }
    assert identities == {("gateway", "sip", "SIP gateway"), ("gateway", "sip", "SIP-Gateway")}
    features = [f.get("var") for f in query.iter(f"{{{DISCO}}}feature")]
    assert features == [DISCO, "urn:xmpp:ping", "http://jabber.org/protocol/caps"]
    [x] = query.findall("{jabber:x:data}x")
    assert [v.text for v in x.iter("{jabber:x:data}value")] == [
        "urn:example:pres-im-provisioning:0",
        "1",
    ]


async def test_disco_hook_per_request(comp: MemoryComponent) -> None:
    seen: list[DiscoRequest] = []

    def hook(request: DiscoRequest, static: DiscoInfo) -> DiscoInfo | None:
        seen.append(request)
        if request.node == "urn:example:caps#abc":
            return static
        if request.node == "boom":
            raise RuntimeError("hook bug")
        return None

    comp.registry.set_hook(hook)
    comp.recv(disco_get(node="urn:example:caps#abc", iq_id="c1"))
    comp.recv(disco_get(node="unknown", iq_id="c2"))
    comp.recv(disco_get(node="boom", iq_id="c3"))
    await comp.settle(80)
    replies = {el.get("id"): el for el in comp.sent()}
    assert seen[0] == DiscoRequest(COMPONENT, "urn:example:caps#abc", "alice@example.test/pc")
    ok = replies["c1"].find(f"{{{DISCO}}}query")
    assert ok is not None and ok.get("node") == "urn:example:caps#abc"  # XEP-0115 §6.2 echo
    assert replies["c2"].find(f".//{{{STANZAS}}}item-not-found") is not None
    assert replies["c3"].find(f".//{{{STANZAS}}}internal-server-error") is not None


async def test_disco_of_a_user_jid_is_service_unavailable(comp: MemoryComponent) -> None:
    comp.recv(disco_get(to="bob@sip.example.test"))
    await comp.settle(50)
    [reply] = comp.sent()
    assert reply.get("type") == "error"
    assert reply.find(f".//{{{STANZAS}}}service-unavailable") is not None


async def test_server_ping_is_answered(comp: MemoryComponent) -> None:
    comp.recv(
        f"<iq type='get' id='p1' from='example.test' to='{COMPONENT}'>"
        "<ping xmlns='urn:xmpp:ping'/></iq>"
    )
    await comp.settle(50)
    [reply] = comp.sent()
    assert_xml(reply, f"<iq type='result' id='p1' from='{COMPONENT}' to='example.test'/>")


async def test_unknown_request_is_service_unavailable(comp: MemoryComponent) -> None:
    comp.recv(
        f"<iq type='get' id='u1' from='alice@example.test/pc' to='{COMPONENT}'>"
        "<query xmlns='jabber:iq:version'/></iq>"
    )
    await comp.settle(50)
    [reply] = comp.sent()
    assert reply.get("type") == "error" and reply.get("id") == "u1"
    assert reply.find(f".//{{{STANZAS}}}service-unavailable") is not None  # RFC 6120 §8.4


# -- restricted XML and limits on the live stream ----------------------------------------------


async def _expect_stream_error(comp: MemoryComponent, condition: str) -> None:
    await comp.settle()
    written = bytes(comp.transport.buffer)
    assert f"<{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>".encode() in written
    assert written.endswith(b"</stream:stream>")
    assert comp.transport.closed


@pytest.mark.parametrize(
    ("data", "condition"),
    [
        ("<!-- a comment -->", "restricted-xml"),
        ("<message from='a@b' to='c@d'><body><!DOCTYPE x></body></message>", "restricted-xml"),
        ("<?php x?>", "restricted-xml"),
        ("<message>\x00</message>", "not-well-formed"),
    ],
)
async def test_restricted_xml_closes_the_stream(
    comp: MemoryComponent, data: str, condition: str
) -> None:
    for i in range(len(data)):  # one byte at a time
        comp.recv(data[i : i + 1])
        if comp.transport.closed:
            break
    await _expect_stream_error(comp, condition)
    assert handler_of(comp).messages.empty()


async def test_oversized_stanza_closes_the_stream(comp: MemoryComponent) -> None:
    from sipxmpp.gateway.xmpp.stream import MAX_INCOMING_STANZA_BYTES

    comp.recv("<message from='a@b' to='c@sip.example.test'><body>")
    chunk = "x" * 65536
    for _ in range(MAX_INCOMING_STANZA_BYTES // len(chunk) + 2):
        if comp.transport.closed:
            break
        comp.recv(chunk)
    await _expect_stream_error(comp, "policy-violation")


async def test_endless_character_data_between_stanzas_closes_the_stream(
    comp: MemoryComponent,
) -> None:
    from sipxmpp.gateway.xmpp.stream import MAX_INCOMING_STANZA_BYTES

    chunk = " " * 65536
    for _ in range(MAX_INCOMING_STANZA_BYTES // len(chunk) + 2):
        if comp.transport.closed:
            break
        comp.recv(chunk)
    await _expect_stream_error(comp, "policy-violation")


async def test_many_small_stanzas_do_not_trip_the_size_limit(comp: MemoryComponent) -> None:
    stanza = (
        "<message from='a@example.test' to='b@sip.example.test'><body>"
        + "y" * 1000
        + "</body></message>"
    )
    batch = stanza * 100  # ~100 KB per read, 2 MB in total
    for _ in range(20):
        comp.recv(batch)
    await comp.settle()
    assert not comp.transport.closed
    assert handler_of(comp).messages.qsize() == 2000


async def test_server_header_without_id_is_refused() -> None:
    component = MemoryComponent(RecordingHandler())
    component.xmpp.connection_made(component.transport)
    component.recv(
        "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'"
        " xmlns='jabber:component:accept' from='sip.example.test'>"
    )
    await _expect_stream_error(component, "invalid-xml")
    await component.close()


# -- the decorator itself ----------------------------------------------------------------------


async def test_boundary_decorator_async_and_sync() -> None:
    @boundary
    async def failing_async() -> None:
        raise NotImplementedError("not yet")

    @boundary
    def ignoring_sync() -> int:
        raise Ignore()

    @boundary
    def fine_sync() -> int:
        return 7

    with pytest.raises(XMPPError) as info:
        await failing_async()
    assert info.value.condition == "feature-not-implemented" and info.value.text == "not yet"
    assert isinstance(info.value.__cause__, NotImplementedError)
    assert ignoring_sync() is None
    assert fine_sync() == 7


def test_to_xmpp_error_keeps_xmpp_errors() -> None:
    err = XMPPError("conflict")
    assert to_xmpp_error(err) is err
    assert to_xmpp_error(Ignore()) is None


def test_handshake_element_serialization_is_plain() -> None:
    # The fake server and Prosody both read <handshake> as character data only.
    el = ET.fromstring(
        f"<handshake xmlns='jabber:component:accept'>{handshake_digest('a', 'b')}</handshake>"
    )
    assert el.text == handshake_digest("a", "b")


async def test_message_fed_one_byte_at_a_time(comp: MemoryComponent) -> None:
    data = (
        "<message from='alice@example.test' to='bob@sip.example.test' type='chat'>"
        "<body>Žluťoučký <![CDATA[<kůň>]]> &amp; 😀</body></message>"
    ).encode()
    for i in range(len(data)):
        comp.recv(data[i : i + 1])
    msg = await asyncio.wait_for(handler_of(comp).messages.get(), 1)
    assert msg.body == "Žluťoučký <kůň> & 😀"
    assert not comp.transport.closed


_FRAGMENTS = st.sampled_from(
    [
        "<message from='a@example.test' to='b@sip.example.test'>",
        "<body>",
        "</body>",
        "</message>",
        "<iq type='get' id='1' from='a@example.test' to='sip.example.test'>",
        "</iq>",
        "<presence/>",
        "<![CDATA[x]]>",
        "<!--",
        "<!DOCTYPE",
        "<?pi?>",
        "&amp;",
        "&bogus;",
        "<",
        ">",
        "'",
        "\x00",
        "text",
        "</stream:stream>",
        "<error type='cancel'/>",
    ]
)


@pytest.fixture(scope="module")
def reusable_component() -> Iterator[tuple[asyncio.AbstractEventLoop, MemoryComponent]]:
    """One component reconnected for every example: building one costs ~0.1 s (slixmpp
    loads the system CA store for a TLS context the component never uses)."""

    async def make() -> MemoryComponent:
        component = MemoryComponent(RecordingHandler())
        await component.open()
        return component

    loop = asyncio.new_event_loop()
    component = loop.run_until_complete(make())
    try:
        yield loop, component
    finally:
        loop.run_until_complete(component.close())
        loop.close()


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(parts=st.lists(_FRAGMENTS, max_size=12))
def test_any_server_bytes_never_escape_the_stream(
    reusable_component: tuple[asyncio.AbstractEventLoop, MemoryComponent], parts: list[str]
) -> None:
    """Whatever the server sends, data_received never raises, and a closed link was closed
    with the end of our stream."""
    loop, component = reusable_component

    async def run() -> None:
        await component.reopen()
        component.recv("".join(parts))
        await component.settle()
        if component.transport.closed:
            assert bytes(component.transport.buffer).endswith(b"</stream:stream>")
        assert component.dispatcher.in_flight <= len(parts)

    loop.run_until_complete(run())


async def test_server_closing_its_stream_is_answered_with_ours(comp: MemoryComponent) -> None:
    comp.recv("</stream:stream>")
    await comp.settle()
    assert comp.transport.closed
    assert bytes(comp.transport.buffer).endswith(b"</handshake></stream:stream>")
