"""``<message/>`` <-> XmppMessage: XML in, XML out, refusals, and the round-trip property."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from xmpp_harness import COMPONENT, assert_xml, parse_stanza

from sipxmpp.gateway.xmpp.convert import (
    MAX_XHTML_DEPTH,
    message_from_element,
    message_to_xml,
    normalize_xhtml,
)
from sipxmpp.gateway.xmpp.errors import LocalXmppError, RemoteXmppError
from sipxmpp.mapping.model import StanzaError, XmppMessage

XHTML = "http://www.w3.org/1999/xhtml"
XHTML_IM = "http://jabber.org/protocol/xhtml-im"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"

# -- XML in ----------------------------------------------------------------------------------

IN_CASES: list[tuple[str, str, XmppMessage]] = [
    (
        "chat with every field",
        # language=XML
        "<message from='alice@example.test/pc' to='bob@sip.example.test' id='m1' type='chat'"
        " xml:lang='de'><subject>Betreff</subject><body>Grüße 😀</body>"
        "<thread>th-1</thread></message>",
        XmppMessage(
            from_jid="alice@example.test/pc",
            to_jid="bob@sip.example.test",
            body="Grüße 😀",
            subject="Betreff",
            thread="th-1",
            id="m1",
            type="chat",
            lang="de",
        ),
    ),
    (
        "no type is normal",
        "<message from='a@x' to='b@sip.example.test'><body>hi</body></message>",
        XmppMessage(from_jid="a@x", to_jid="b@sip.example.test", body="hi"),
    ),
    (
        "unknown type is normal (RFC 6121 5.2.2)",
        "<message from='a@x' to='b@sip.example.test' type='bogus'><body>hi</body></message>",
        XmppMessage(from_jid="a@x", to_jid="b@sip.example.test", body="hi"),
    ),
    (
        "headline without body",
        "<message from='a@x' to='b@sip.example.test' type='headline'>"
        "<active xmlns='http://jabber.org/protocol/chatstates'/></message>",
        XmppMessage(
            from_jid="a@x", to_jid="b@sip.example.test", type="headline", chat_state="active"
        ),
    ),
    (
        "empty body is the empty string",
        "<message from='a@x' to='b@sip.example.test'><body/><thread/></message>",
        XmppMessage(from_jid="a@x", to_jid="b@sip.example.test", body="", thread=""),
    ),
    (
        "body in the stanza language wins",
        "<message from='a@x' to='b@sip.example.test' xml:lang='en'>"
        "<body xml:lang='cs'>Ahoj</body><body>Hello</body><subject xml:lang='cs'>S</subject>"
        "<subject>Subject</subject></message>",
        XmppMessage(
            from_jid="a@x", to_jid="b@sip.example.test", body="Hello", subject="Subject", lang="en"
        ),
    ),
    (
        "no body in the stanza language: the first body, with its language",
        "<message from='a@x' to='b@sip.example.test' xml:lang='en'>"
        "<body xml:lang='cs'>Ahoj</body><body xml:lang='de'>Hallo</body></message>",
        XmppMessage(from_jid="a@x", to_jid="b@sip.example.test", body="Ahoj", lang="cs"),
    ),
    (
        "the first body in the stanza language, not a later one",
        "<message from='a@x' to='b@sip.example.test' xml:lang='en'>"
        "<body xml:lang='cs'>Ahoj</body><body xml:lang='en'>Hello</body><body>Hi</body>"
        "</message>",
        XmppMessage(from_jid="a@x", to_jid="b@sip.example.test", body="Hello", lang="en"),
    ),
    (
        "a single body's own language",
        "<message from='a@x' to='b@sip.example.test'><body xml:lang='cs'>Ahoj</body></message>",
        XmppMessage(from_jid="a@x", to_jid="b@sip.example.test", body="Ahoj", lang="cs"),
    ),
    (
        "no to: addressed to the component",
        "<message from='a@x'><body>hi</body></message>",
        XmppMessage(from_jid="a@x", to_jid=COMPONENT, body="hi"),
    ),
    (
        "XHTML-IM body serialized",
        f"<message from='a@x' to='b@sip.example.test' type='chat'><body>bold</body>"
        f"<html xmlns='{XHTML_IM}'><body xmlns='{XHTML}'><p><strong>bold</strong> &amp; "
        f"<a href='http://e.test/?a=1&amp;b=2'>link</a></p></body></html></message>",
        XmppMessage(
            from_jid="a@x",
            to_jid="b@sip.example.test",
            type="chat",
            body="bold",
            xhtml=f'<body xmlns="{XHTML}"><p><strong>bold</strong> &amp; '
            '<a href="http://e.test/?a=1&amp;b=2">link</a></p></body>',
        ),
    ),
    (
        "error with condition, text and id",
        f"<message from='nobody@example.test' to='bob@sip.example.test' id='e1' type='error'>"
        f"<body>orig</body><error type='cancel'><service-unavailable xmlns='{STANZAS}'/>"
        f"<text xmlns='{STANZAS}'>no such user</text></error></message>",
        XmppMessage(
            from_jid="nobody@example.test",
            to_jid="bob@sip.example.test",
            id="e1",
            type="error",
            body="orig",
            error=StanzaError("service-unavailable", "cancel", text="no such user"),
        ),
    ),
    (
        "gone carries the new address",
        f"<message from='a@x' to='b@sip.example.test' type='error'><error type='cancel'>"
        f"<gone xmlns='{STANZAS}'>xmpp:new@x</gone></error></message>",
        XmppMessage(
            from_jid="a@x",
            to_jid="b@sip.example.test",
            type="error",
            error=StanzaError("gone", "cancel", uri="xmpp:new@x"),
        ),
    ),
    (
        "unknown condition and type, app-specific element",
        f"<message from='a@x' to='b@sip.example.test' type='error'><error type='weird'>"
        f"<made-up xmlns='{STANZAS}'/><special xmlns='urn:example:app'/></error></message>",
        XmppMessage(
            from_jid="a@x",
            to_jid="b@sip.example.test",
            type="error",
            error=StanzaError("undefined-condition", "cancel"),
        ),
    ),
    (
        "error stanza without error child",
        "<message from='a@x' to='b@sip.example.test' type='error'/>",
        XmppMessage(
            from_jid="a@x",
            to_jid="b@sip.example.test",
            type="error",
            error=StanzaError("undefined-condition", "cancel"),
        ),
    ),
    (
        "error child ignored on a non-error message",
        f"<message from='a@x' to='b@sip.example.test'><body>x</body><error type='cancel'>"
        f"<conflict xmlns='{STANZAS}'/></error></message>",
        XmppMessage(from_jid="a@x", to_jid="b@sip.example.test", body="x"),
    ),
]


@pytest.mark.parametrize(
    ("xml", "expected"), [c[1:] for c in IN_CASES], ids=[c[0] for c in IN_CASES]
)
def test_xml_in(xml: str, expected: XmppMessage) -> None:
    assert message_from_element(parse_stanza(xml), default_to=COMPONENT) == expected


def test_xml_in_client_namespace() -> None:
    el = parse_stanza("<message from='a@x' to='b@y'><body>hi</body></message>", "jabber:client")
    assert message_from_element(el, default_to=COMPONENT).body == "hi"


def test_xml_in_without_from_is_a_remote_error() -> None:
    with pytest.raises(RemoteXmppError) as info:
        message_from_element(parse_stanza("<message to='b@y'><body/></message>"), default_to="c")
    assert info.value.condition == "improper-addressing"


def test_xml_in_too_deep_xhtml_falls_back_to_plain_body() -> None:
    deep = "<span>" * (MAX_XHTML_DEPTH + 2) + "x" + "</span>" * (MAX_XHTML_DEPTH + 2)
    xml = (
        f"<message from='a@x' to='b@y'><body>x</body><html xmlns='{XHTML_IM}'>"
        f"<body xmlns='{XHTML}'>{deep}</body></html></message>"
    )
    msg = message_from_element(parse_stanza(xml), default_to="c")
    assert msg.body == "x" and msg.xhtml is None


# -- XML out ---------------------------------------------------------------------------------

OUT_CASES: list[tuple[str, XmppMessage, str]] = [
    (
        "chat with every field",
        XmppMessage(
            from_jid="bob@sip.example.test",
            to_jid="alice@example.test",
            body="Grüße 😀",
            subject="Betreff",
            thread="th-1",
            id="m1",
            type="chat",
            lang="de",
        ),
        # language=XML
        "<message from='bob@sip.example.test' to='alice@example.test' id='m1' type='chat'"
        " xml:lang='de'><subject>Betreff</subject><body>Grüße 😀</body><thread>th-1</thread>"
        "</message>",
    ),
    (
        "normal type is implicit",
        XmppMessage(from_jid="b@sip.example.test", to_jid="a@x", body="hi"),
        "<message from='b@sip.example.test' to='a@x'><body>hi</body></message>",
    ),
    (
        "xhtml-im",
        XmppMessage(
            from_jid="b@sip.example.test",
            to_jid="a@x",
            body="bold",
            xhtml=f"<body xmlns='{XHTML}'><p><b>bold</b></p></body>",
        ),
        f"<message from='b@sip.example.test' to='a@x'><body>bold</body><html xmlns='{XHTML_IM}'>"
        f"<body xmlns='{XHTML}'><p><b>bold</b></p></body></html></message>",
    ),
    (
        "error with text and address",
        XmppMessage(
            from_jid="b@sip.example.test",
            to_jid="a@x",
            id="q",
            type="error",
            error=StanzaError("gone", "cancel", text="moved", uri="xmpp:new@x"),
        ),
        f"<message from='b@sip.example.test' to='a@x' id='q' type='error'><error type='cancel'>"
        f"<gone xmlns='{STANZAS}'>xmpp:new@x</gone><text xmlns='{STANZAS}'>moved</text></error>"
        f"</message>",
    ),
    (
        "address dropped on a condition without one",
        XmppMessage(
            from_jid="b@sip.example.test",
            to_jid="a@x",
            type="error",
            error=StanzaError("item-not-found", "cancel", uri="xmpp:ignored@x"),
        ),
        f"<message from='b@sip.example.test' to='a@x' type='error'><error type='cancel'>"
        f"<item-not-found xmlns='{STANZAS}'/></error></message>",
    ),
]


@pytest.mark.parametrize(("msg", "xml"), [c[1:] for c in OUT_CASES], ids=[c[0] for c in OUT_CASES])
def test_xml_out(msg: XmppMessage, xml: str) -> None:
    assert_xml(parse_stanza(message_to_xml(msg, component_domain=COMPONENT)), xml)


def test_xml_out_escapes_markup_and_preserves_whitespace() -> None:
    msg = XmppMessage(
        from_jid="b@sip.example.test",
        to_jid='a"<&>@x',
        id="i\t\n\r",
        body="a < b && c > d ]]> \r\n",
    )
    out = message_to_xml(msg, component_domain=COMPONENT)
    assert "&lt; b &amp;&amp; c &gt; d ]]&gt; &#13;\n" in out
    assert 'to="a&quot;&lt;&amp;&gt;@x"' in out and 'id="i&#9;&#10;&#13;"' in out
    back = message_from_element(parse_stanza(out), default_to=COMPONENT)
    assert back == msg


def test_from_domain_is_case_insensitive() -> None:
    msg = XmppMessage(from_jid="b@SIP.Example.TEST/r", to_jid="a@x", body="x")
    assert "<body>x</body>" in message_to_xml(msg, component_domain=COMPONENT)


REFUSALS: list[tuple[str, XmppMessage]] = [
    ("from outside the component domain", XmppMessage(from_jid="b@example.test", to_jid="a@x")),
    ("from the parent domain", XmppMessage(from_jid="example.test", to_jid="a@x")),
    ("empty to", XmppMessage(from_jid="b@sip.example.test", to_jid="")),
    ("unknown type", XmppMessage(from_jid="b@sip.example.test", to_jid="a@x", type="weird")),
    (
        "error type without error",
        XmppMessage(from_jid="b@sip.example.test", to_jid="a@x", type="error"),
    ),
    (
        "error without error type",
        XmppMessage(
            from_jid="b@sip.example.test", to_jid="a@x", error=StanzaError("conflict", "cancel")
        ),
    ),
    (
        "undefined condition",
        XmppMessage(
            from_jid="b@sip.example.test",
            to_jid="a@x",
            type="error",
            error=StanzaError("nope", "cancel"),
        ),
    ),
    (
        "undefined error type",
        XmppMessage(
            from_jid="b@sip.example.test",
            to_jid="a@x",
            type="error",
            error=StanzaError("conflict", "later"),
        ),
    ),
    (
        "control character in body",
        XmppMessage(from_jid="b@sip.example.test", to_jid="a@x", body="a\x07"),
    ),
    ("NUL in subject", XmppMessage(from_jid="b@sip.example.test", to_jid="a@x", subject="\x00")),
    ("lone surrogate", XmppMessage(from_jid="b@sip.example.test", to_jid="a@x", body="\ud800")),
    ("U+FFFE in thread", XmppMessage(from_jid="b@sip.example.test", to_jid="a@x", thread="\ufffe")),
    ("xhtml not a body", XmppMessage(from_jid="b@sip.example.test", to_jid="a@x", xhtml="<p/>")),
    (
        "xhtml body in the wrong namespace",
        XmppMessage(from_jid="b@sip.example.test", to_jid="a@x", xhtml="<body><p/></body>"),
    ),
    (
        "xhtml with a DTD",
        XmppMessage(
            from_jid="b@sip.example.test",
            to_jid="a@x",
            xhtml=f"<!DOCTYPE b [<!ENTITY e 'x'>]><body xmlns='{XHTML}'>&e;</body>",
        ),
    ),
    (
        "xhtml with a comment",
        XmppMessage(
            from_jid="b@sip.example.test",
            to_jid="a@x",
            xhtml=f"<body xmlns='{XHTML}'><!--c--></body>",
        ),
    ),
    (
        "xhtml malformed",
        XmppMessage(from_jid="b@sip.example.test", to_jid="a@x", xhtml=f"<body xmlns='{XHTML}'>"),
    ),
    (
        "xhtml too deep",
        XmppMessage(
            from_jid="b@sip.example.test",
            to_jid="a@x",
            xhtml=f"<body xmlns='{XHTML}'>" + "<i>" * 100 + "</i>" * 100 + "</body>",
        ),
    ),
]


@pytest.mark.parametrize("msg", [c[1] for c in REFUSALS], ids=[c[0] for c in REFUSALS])
def test_xml_out_refusals(msg: XmppMessage) -> None:
    with pytest.raises(LocalXmppError):
        message_to_xml(msg, component_domain=COMPONENT)


def test_normalize_xhtml_drops_declaration_and_prefixes() -> None:
    out = normalize_xhtml(
        f"<?xml version='1.0'?><h:body xmlns:h='{XHTML}' xml:lang='en'>"
        "<h:p style='x' xmlns:o='urn:o' o:k='v'>t</h:p></h:body>"
    )
    assert out == (
        f'<body xmlns="{XHTML}" xml:lang="en"><p style="x" xmlns:a0="urn:o" a0:k="v">t</p></body>'
    )


# -- round trip ------------------------------------------------------------------------------

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
xml_text = st.text(max_size=40).filter(lambda s: not _NOT_XML.search(s))
tokens = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._", min_size=1, max_size=12)
jids = st.builds(lambda u, d: f"{u}@{d}", tokens, tokens)
our_jids = st.builds(lambda u: f"{u}@{COMPONENT}", tokens)
xhtml_bodies = st.sampled_from(
    [
        None,
        f'<body xmlns="{XHTML}"><p>x</p></body>',
        f'<body xmlns="{XHTML}"><p style="a&amp;b">x &lt; y<br/>z</p></body>',
    ]
)


@st.composite
def messages(draw: st.DrawFn) -> XmppMessage:
    mtype = draw(st.sampled_from(["normal", "chat", "headline", "groupchat", "error"]))
    error = None
    if mtype == "error":
        condition = draw(st.sampled_from(["gone", "redirect", "item-not-found", "conflict"]))
        uri = (
            draw(st.none() | tokens.map(lambda t: "xmpp:" + t))
            if condition in ("gone", "redirect")
            else None
        )
        text = draw(st.none() | xml_text.filter(bool))
        error = StanzaError(
            condition, draw(st.sampled_from(["cancel", "wait", "modify"])), text, uri
        )
    return XmppMessage(
        from_jid=draw(our_jids),
        to_jid=draw(jids),
        body=draw(st.none() | xml_text),
        subject=draw(st.none() | xml_text),
        thread=draw(st.none() | xml_text),
        id=draw(st.none() | xml_text),
        type=mtype,
        lang=draw(st.none() | st.sampled_from(["en", "cs", "de-CH"])),
        xhtml=draw(xhtml_bodies),
        error=error,
    )


@settings(max_examples=300, deadline=None)
@given(msg=messages())
def test_round_trip(msg: XmppMessage) -> None:
    out = message_to_xml(msg, component_domain=COMPONENT)
    assert message_from_element(parse_stanza(out), default_to=COMPONENT) == msg
