"""The component's caps presence (``gateway/xmpp/caps.py``) and the OPTIONS answer, without
sockets: tables of stanzas in and stanzas out, and Hypothesis properties (any input is
handled without an exception, and memory stays bounded)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipxmpp.gateway.runtime.provisioning import OptionsService, sip_requester
from sipxmpp.gateway.sip.address import TransportAddress
from sipxmpp.gateway.sip.ids import RandomIds
from sipxmpp.gateway.sip.options import Capabilities
from sipxmpp.gateway.sip.parser import parse_message
from sipxmpp.gateway.xmpp import caps as caps_module
from sipxmpp.gateway.xmpp.caps import CapsAnnouncer, caps_presence_xml
from sipxmpp.gateway.xmpp.handshake import handshake_digest
from sipxmpp.provisioning import (
    MEDIA_TYPE_XML,
    ProvisioningPolicy,
    ProvisioningPublisher,
    explicitly_accepts,
    parse_xml,
)
from support.provisioning_gw import document, options_request

COMPONENT = "sip.a.test"
NS = "jabber:component:accept"


def presence(
    frm: str | None, to: str | None, type_: str | None = None, caps: str = ""
) -> ET.Element:
    attrs = "".join(f" {k}='{v}'" for k, v in (("from", frm), ("to", to), ("type", type_)) if v)
    return ET.fromstring(f"<presence xmlns='{NS}'{attrs}>{caps}</presence>")


class Harness:
    def __init__(self) -> None:
        self.out: list[str] = []
        self.ver = "v1"
        self.seen: list[tuple[str, str, str, str]] = []
        self.announcer = CapsAnnouncer(COMPONENT, self.out.append)
        self.announcer.configure("urn:sipxmpp:caps", lambda jid: self.ver)
        self.announcer.on_caps = lambda *a: self.seen.append(a)

    def sent(self) -> list[tuple[str | None, str | None, str | None]]:
        """(to, type, ver) of each stanza sent since the last call."""
        out = []
        for s in self.out:
            el = ET.fromstring(s)
            c = el.find("{http://jabber.org/protocol/caps}c")
            out.append((el.get("to"), el.get("type"), c.get("ver") if c is not None else None))
        self.out.clear()
        return out


def test_74_component_handshake_vector() -> None:
    # XEP-0114 §3; the live handshake with Prosody runs in every Prosody-backed test here.
    assert handshake_digest("3BF96D32", "test") == "aaee83c26aeeafcbabeabfcbcd50df997e0a2a1e"


def test_caps_presence_table() -> None:
    h = Harness()
    peer = "sip.b.test"
    caps = "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='urn:x' ver='abc='/>"
    # Available presence from a new entity: remembered, answered once, its caps reported.
    assert h.announcer.handle_presence(presence(peer, COMPONENT, caps=caps))
    assert h.sent() == [(peer, None, "v1")] and h.seen == [(peer, "urn:x", "abc=", "sha-1")]
    # The same entity again: no answer (loop freedom), caps still reported.
    assert h.announcer.handle_presence(presence(peer, COMPONENT, caps=caps))
    assert h.sent() == [] and len(h.seen) == 2
    # A probe is answered, without joining the list.
    assert h.announcer.handle_presence(presence("x@c.test/r", COMPONENT, "probe"))
    assert h.sent() == [("x@c.test/r", None, "v1")] and h.announcer.recipients == (peer,)
    # Broadcast only where the ver changed.
    assert h.announcer.broadcast() == 0
    h.ver = "v2"
    assert h.announcer.broadcast() == 1 and h.sent() == [(peer, None, "v2")]
    # After a reconnect everyone hears again.
    assert h.announcer.link_up() == 1 and h.sent() == [(peer, None, "v2")]
    # Not ours: presence to users, subscription requests, other domains.
    for el in (
        presence(peer, f"bob@{COMPONENT}"),
        presence(peer, COMPONENT, "subscribe"),
        presence(peer, "elsewhere.test"),
    ):
        assert not h.announcer.handle_presence(el)
    # unavailable removes; a bounced presence (type=error) removes too.
    assert h.announcer.handle_presence(presence(peer, COMPONENT, "unavailable"))
    assert h.announcer.recipients == ()
    h.announcer.add_recipient("sip.d.test")
    assert h.sent() == [("sip.d.test", None, "v2")]
    assert h.announcer.handle_presence(presence("sip.d.test", COMPONENT, "error"))
    assert h.announcer.recipients == ()
    h.announcer.add_recipient("sip.e.test")
    h.announcer.remove_recipient("sip.e.test")
    assert h.sent() == [("sip.e.test", None, "v2"), ("sip.e.test", "unavailable", None)]


def test_a_link_that_is_down_keeps_the_recipient() -> None:
    def down(_: str) -> None:
        raise ConnectionError("link down")

    announcer = CapsAnnouncer(COMPONENT, down)
    announcer.configure("urn:x", lambda jid: "v")
    announcer.add_recipient("sip.b.test")  # logged, not raised
    assert announcer.recipients == ("sip.b.test",) and announcer.sent == 0


def test_caps_presence_escapes_attributes() -> None:
    xml = caps_presence_xml(COMPONENT, "a'b\"c@x.test/<r>&", node="urn:x", ver="v")
    el = ET.fromstring(xml)
    assert el.get("to") == "a'b\"c@x.test/<r>&"


_jids = st.one_of(
    st.just(COMPONENT),
    st.from_regex(r"[a-z]{1,8}(@[a-z]{1,8}\.test)?(/[a-z0-9]{1,4})?", fullmatch=True),
    st.text(max_size=20).filter(lambda s: "'" not in s and "&" not in s and "<" not in s),
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            _jids,
            _jids,
            st.sampled_from([None, "unavailable", "probe", "error", "subscribe", "bogus"]),
            st.booleans(),
        ),
        max_size=40,
    )
)
def test_any_presence_sequence_is_handled_and_bounded(
    steps: list[tuple[str, str, str | None, bool]],
) -> None:
    h = Harness()
    caps = "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v'/>"
    old = caps_module.MAX_PRESENCE_RECIPIENTS
    caps_module.MAX_PRESENCE_RECIPIENTS = 5
    try:
        for frm, to, type_, with_caps in steps:
            try:
                el = presence(frm, to, type_, caps if with_caps else "")
            except ET.ParseError:
                continue
            h.announcer.handle_presence(el)
            assert len(h.announcer.recipients) <= 5
            domains = [
                r.split("/", 1)[0].rsplit("@", 1)[-1].lower() for r in h.announcer.recipients
            ]
            assert COMPONENT not in domains  # the component never sends presence to itself
    finally:
        caps_module.MAX_PRESENCE_RECIPIENTS = old


# -- the OPTIONS answer for any Accept header ----------------------------------------------

PUBLIC = document("a.test")
_publisher = ProvisioningPublisher(ProvisioningPolicy(public=PUBLIC))
_service = OptionsService(
    send_response=lambda r: None,
    capabilities=lambda: Capabilities(allow=("OPTIONS",), accept=("text/plain",)),
    publisher=lambda: _publisher,
    requester_of=lambda source: sip_requester(source, None),
    ids=RandomIds(),
)

_accept_item = st.one_of(
    st.sampled_from(
        [
            MEDIA_TYPE_XML,
            "*/*",
            "application/*",
            "application/sdp",
            "text/plain;q=0.5",
            f"{MEDIA_TYPE_XML};q=0",
        ]
    ),
    st.from_regex(r"[a-z*]{1,6}/[a-z*+.-]{1,12}(;q=[01](\.[0-9])?)?", fullmatch=True),
)


@settings(max_examples=250, deadline=None)
@given(st.lists(_accept_item, max_size=5))
def test_any_accept_header_gets_a_consistent_answer(items: list[str]) -> None:
    accept = ", ".join(items) if items else None
    raw = options_request("sip:a.test", transport="UDP", port=5999, accept=accept)
    request = parse_message(raw)
    resp = _service.answer(request, TransportAddress("udp", "127.0.0.1", 5999))  # type: ignore[arg-type]
    assert resp.status == 200
    assert resp.headers.get("Allow") == "OPTIONS" and resp.headers.get("Supported") == ""
    if explicitly_accepts(accept, MEDIA_TYPE_XML):
        assert resp.headers.get("Content-Type") == MEDIA_TYPE_XML
        assert parse_xml(resp.body) == PUBLIC
    else:
        assert resp.body == b"" and resp.headers.get("Content-Type") is None


@pytest.mark.parametrize(
    ("accept", "document_expected"),
    [
        (MEDIA_TYPE_XML, True),
        (f"application/sdp, {MEDIA_TYPE_XML};q=0.2", True),
        (f"{MEDIA_TYPE_XML};q=0", False),
        ("*/*", False),
        ("application/*", False),
        (None, False),
        ("", False),
    ],
)
def test_accept_table(accept: str | None, document_expected: bool) -> None:
    raw = options_request("sip:a.test", transport="UDP", port=5999, accept=accept)
    resp = _service.answer(parse_message(raw), TransportAddress("udp", "127.0.0.1", 5999))  # type: ignore[arg-type]
    assert (resp.body != b"") is document_expected
