"""Properties of the address, error and pager-mode mappings (Hypothesis).

* round trips: XEP-0106 escape/unescape; JID -> SIP -> JID; SIP -> JID -> SIP;
  ``parse_uri(str(u)) == u``; non-ASCII bodies XMPP -> SIP -> XMPP;
* totality: any input maps or raises our remote error (``MappingRefused`` on the SIP
  side, ``StanzaRefused`` on the XMPP side), never anything else;
* safety: every produced header is one line, every produced XML text is XML, every
  XHTML-IM document stays within the Recommended Profile.
"""

from __future__ import annotations

import re
import unicodedata

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from sipxmpp.mapping import (
    TABLE_2,
    XMPP_CONDITIONS,
    DomainMap,
    Jid,
    MappingRefused,
    SipPagerMessage,
    SipUri,
    StanzaError,
    StanzaRefused,
    XmppMessage,
    header_uri,
    html_to_xhtml_im,
    jid_to_sip_uri,
    jid_to_xmpp_uri,
    parse_uri,
    parse_uri_or_header,
    sip_message_to_xmpp,
    sip_status_to_stanza_error,
    sip_uri_to_jid,
    stanza_error_to_sip_status,
    thread_to_call_id,
    xep0106_escape,
    xep0106_unescape,
    xmpp_message_to_sip,
    xmpp_uri_to_jid,
)
from sipxmpp.mapping.xhtml import ALLOWED_ATTRIBUTES, STYLE_PROPERTIES, XHTML_NS

PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

DOMAINS = DomainMap(
    sip_domains={"example.net": "sip.example.net"},
    xmpp_domains={"example.com": "example.com"},
)

# Characters a localpart may hold once escaped (see addresses._LOCALPART_BAD_CATEGORIES):
# no controls, format characters, surrogates, private use, unassigned or non-ASCII
# spaces. The ASCII space is allowed: XEP-0106 escapes it.
_LOCAL_CHARS = st.characters(
    blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"),
).filter(lambda c: c == " " or unicodedata.category(c) != "Zs")
_RESOURCE_CHARS = st.characters(blacklist_categories=("Cc", "Cs", "Cn"))
_ESCAPE_HEAVY = st.sampled_from(list(" \"&'/:<>@\\") + ["\\20", "\\5c", "\\27", "\\2f", "\\3a"])

raw_locals = (
    st.lists(st.one_of(_LOCAL_CHARS, _ESCAPE_HEAVY), min_size=1, max_size=40)
    .map("".join)
    .filter(lambda s: not s.startswith(" ") and not s.endswith(" "))
)
resources = st.text(_RESOURCE_CHARS, min_size=1, max_size=30)
xmpp_domains = st.sampled_from(
    ["xmpp.example", "example.com", "a-b.example.org", "[::1]", "192.0.2.1"]
)


def _xml_ok(text: str) -> bool:
    try:
        etree.Element("x").text = text
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- XEP-0106


@PROPS
@given(st.text())
def test_escape_unescape_inverse(raw: str) -> None:
    if raw.startswith(" ") or raw.endswith(" "):
        return
    escaped = xep0106_escape(raw)
    assert xep0106_unescape(escaped) == raw
    assert not any(char in escaped for char in " \"&'/:<>@")
    assert xep0106_escape(xep0106_unescape(escaped)) == escaped


@PROPS
@given(st.text())
def test_unescape_total(text: str) -> None:
    xep0106_unescape(text)


# --------------------------------------------------------------------------- address round trips


@PROPS
@given(raw_locals, xmpp_domains, st.none() | resources)
def test_jid_to_sip_to_jid_identity(raw: str, domain: str, resource: str | None) -> None:
    local = xep0106_escape(raw)
    if len(local.encode()) > 1023:
        return
    jid = Jid(local, domain, resource)
    uri = jid_to_sip_uri(jid)
    assert uri.scheme == "sip" and uri.host == domain
    assert sip_uri_to_jid(str(uri)) == jid
    assert sip_uri_to_jid(uri) == jid
    for scheme in ("im", "pres"):
        assert sip_uri_to_jid(str(jid_to_sip_uri(jid, scheme=scheme))) == jid.bare
    assert xmpp_uri_to_jid(jid_to_xmpp_uri(jid)) == jid


@PROPS
@given(raw_locals, st.none() | resources)
def test_gateway_round_trips(raw: str, resource: str | None) -> None:
    local = xep0106_escape(raw)
    if len(local.encode()) > 1023:
        return
    # An XMPP user writes to SIP and the SIP user replies to the From it saw.
    xmpp_user = Jid(local, "example.com", resource)
    sip_from = DOMAINS.xmpp_sender_to_sip(xmpp_user)
    assert DOMAINS.sip_target_to_jid(str(sip_from)) == xmpp_user
    # A SIP user writes to XMPP and the XMPP user replies to the JID it saw.
    sip_user = SipUri("sip", raw, "example.net", None, (("gr", resource),) if resource else ())
    jid = DOMAINS.sip_sender_to_jid(str(sip_user))
    assert jid.domain == "sip.example.net"
    assert DOMAINS.xmpp_target_to_sip(jid) == sip_user


@PROPS
@given(raw_locals, st.none() | resources)
def test_sip_to_jid_to_sip_identity(user: str, resource: str | None) -> None:
    uri = SipUri("sip", user, "sip.example", None, (("gr", resource),) if resource else ())
    try:
        jid = sip_uri_to_jid(uri)
    except MappingRefused as exc:
        assert exc.status == 404  # only a too long localpart is refused here
        assert len(xep0106_escape(user).encode()) > 1023
        return
    assert jid_to_sip_uri(jid) == uri
    assert parse_uri(str(uri)) == uri


_param_text = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12)
sip_uris = st.builds(
    SipUri,
    scheme=st.sampled_from(["sip", "sips"]),
    user=st.none() | st.text(st.characters(codec="utf-8"), min_size=1, max_size=20),
    host=st.sampled_from(["example.com", "a.b-c.example", "[2001:db8::1]", "192.0.2.7", "x."]),
    port=st.none() | st.integers(0, 65535),
    params=st.lists(st.tuples(_param_text, st.none() | st.text(max_size=12).filter(
        lambda s: all(unicodedata.category(c) != "Cs" for c in s))), max_size=3).map(tuple),
    headers=st.lists(st.tuples(_param_text, st.text(max_size=12).filter(
        lambda s: all(unicodedata.category(c) != "Cs" for c in s))), max_size=2).map(tuple),
)  # fmt: skip
im_uris = st.builds(
    SipUri,
    scheme=st.sampled_from(["im", "pres"]),
    user=st.text(st.characters(codec="utf-8"), min_size=1, max_size=20),
    host=st.sampled_from(["example.com", "im.example"]),
)
tel_uris = st.builds(
    SipUri,
    scheme=st.just("tel"),
    user=st.text(st.sampled_from("0123456789+-.()*#abcdef"), min_size=1, max_size=15),
    host=st.just(""),
    params=st.lists(st.tuples(_param_text, st.none() | _param_text), max_size=2).map(tuple),
)


@PROPS
@given(st.one_of(sip_uris, im_uris, tel_uris))
def test_parse_serialize_round_trip(uri: SipUri) -> None:
    text = str(uri)
    assert text.isascii() and not any(c in text for c in ' \r\n\t<>"')
    assert parse_uri(text) == uri


# --------------------------------------------------------------------------- totality

_uri_like = st.one_of(
    st.text(max_size=60),
    st.builds(
        lambda scheme, rest: f"{scheme}:{rest}",
        st.sampled_from(["sip", "sips", "SIP", "im", "pres", "tel", "xmpp", "http"]),
        st.text(st.sampled_from("abc@.:;=?&%[]/\\'\"<> é0123456789gr"), max_size=40),
    ),
)


@PROPS
@given(_uri_like)
def test_sip_side_total(text: str) -> None:
    assert isinstance(header_uri(text), str)
    for call in (
        parse_uri,
        parse_uri_or_header,
        sip_uri_to_jid,
        DOMAINS.sip_target_to_jid,
        DOMAINS.sip_sender_to_jid,
        DOMAINS.sip_address_to_jid,
    ):
        try:
            result = call(text)
        except MappingRefused as exc:
            assert 400 <= exc.status <= 499
        else:
            assert isinstance(result, (Jid, SipUri))


@PROPS
@given(st.one_of(st.text(max_size=60), st.text(st.sampled_from("ab@./\\ 2f:é\x00"), max_size=30)))
def test_xmpp_side_total(text: str) -> None:
    for call in (
        Jid.parse,
        jid_to_sip_uri,
        xmpp_uri_to_jid,
        DOMAINS.xmpp_target_to_sip,
        DOMAINS.xmpp_sender_to_sip,
        DOMAINS.jid_to_sip_address,
    ):
        try:
            call(text)
        except StanzaRefused as exc:
            assert exc.error.condition in XMPP_CONDITIONS


@PROPS
@given(
    st.integers(300, 699),
    st.none() | st.text(max_size=300),
    st.none() | _uri_like,
)
def test_sip_error_mapping_total(code: int, reason: str | None, contact: str | None) -> None:
    for domains in (None, DOMAINS):
        error = sip_status_to_stanza_error(code, reason, contact=contact, domains=domains)
        assert error.condition in XMPP_CONDITIONS
        assert error.text is None or (_xml_ok(error.text) and len(error.text) <= 256)
        if error.uri is not None:
            assert error.condition in ("gone", "redirect") and code not in (305, 410)
            xmpp_uri_to_jid(error.uri)


@PROPS
@given(
    st.one_of(st.sampled_from(sorted(TABLE_2)), st.text(max_size=20)),
    st.none() | st.text(max_size=300),
    st.none() | st.text(max_size=40),
    st.text(max_size=40),
    st.booleans(),
)
def test_xmpp_error_mapping_total(
    condition: str, text: str | None, uri: str | None, addressed: str, challenge: bool
) -> None:
    error = StanzaError(condition, "cancel", text, uri)
    status = stanza_error_to_sip_status(
        error, addressed_to=addressed, domains=DOMAINS, challenge_capable=challenge
    )
    assert 300 <= status.code <= 699 and status.code != 503
    assert not re.search(r"[\x00-\x08\x0a-\x1f\x7f]", status.reason) and status.reason
    assert status.contact is None or status.code in (301, 302)


# --------------------------------------------------------------------------- messages

#: Text an XMPP stanza can carry (XML 1.0 §2.2 Char): no surrogates, no controls, and not
#: the noncharacters U+FFFE/U+FFFF (the SIP -> XMPP direction replaces those by U+FFFD,
#: see test_xml_illegal_characters_become_replacement_characters).
_xml_text = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff"),
    max_size=200,
)


@PROPS
@given(
    _xml_text.filter(bool), st.none() | _xml_text, st.none() | st.sampled_from(["cs", "en-GB", "x"])
)
def test_non_ascii_body_survives_both_ways(
    body: str, subject: str | None, lang: str | None
) -> None:
    out = xmpp_message_to_sip(
        XmppMessage("jürgen@example.com/Küche", "zoë@sip.example.net", body, subject, lang=lang),
        DOMAINS,
    )
    assert out is not None
    assert out.body.decode("utf-8") == body
    assert out.subject is None or "\r" not in out.subject and "\n" not in out.subject
    # The SIP user answers the From it saw, with the same body bytes.
    reply = SipPagerMessage(
        request_uri=out.from_uri,
        from_uri=out.request_uri,
        to_uri=out.from_uri,
        call_id=out.call_id,
        content_type=out.content_type,
        content_language=out.content_language,
        body=out.body,
    )
    back = sip_message_to_xmpp(reply, DOMAINS, stanza_id="s1")
    assert (back.to_jid, back.from_jid) == ("jürgen@example.com/Küche", "zoë@sip.example.net")
    assert back.body == body
    assert back.lang == out.content_language


@PROPS
@given(
    st.binary(max_size=300),
    st.one_of(
        st.sampled_from(
            ["text/plain", "text/html", "text/plain;charset=latin1", "text/html;charset=utf-16"]
        ),
        st.text(max_size=40),
    ),
    st.none() | st.text(max_size=40),
    st.none() | st.text(max_size=40),
    st.none() | st.text(max_size=20),
)
def test_sip_message_to_xmpp_total(
    body: bytes, content_type: str, call_id: str | None, subject: str | None, lang: str | None
) -> None:
    message = SipPagerMessage(
        "sip:juliet@example.com", "sip:romeo@example.net", "sip:juliet@example.com",
        call_id, subject, content_type, lang, body,
    )  # fmt: skip
    try:
        out = sip_message_to_xmpp(message, DOMAINS, stanza_id="x")
    except MappingRefused as exc:
        assert exc.status in (400, 413, 415)
        return
    for text in (out.body, out.subject, out.thread):
        assert text is None or _xml_ok(text)
    if out.xhtml is not None:
        etree.fromstring(out.xhtml)


@PROPS
@given(
    st.text(max_size=40),
    st.text(max_size=40),
    st.none() | st.text(max_size=100),
    st.none() | st.text(max_size=40),
    st.none() | st.text(max_size=40),
    st.sampled_from(["normal", "chat", "headline", "groupchat", "error", ""]),
)
def test_xmpp_message_to_sip_total(
    from_jid: str,
    to_jid: str,
    body: str | None,
    subject: str | None,
    thread: str | None,
    type_: str,
) -> None:
    message = XmppMessage(from_jid, to_jid, body, subject, thread, type=type_)
    try:
        out = xmpp_message_to_sip(message, DOMAINS)
    except StanzaRefused as exc:
        assert exc.error.condition in XMPP_CONDITIONS
        return
    if out is not None:
        for header in (out.subject, out.call_id, out.content_language):
            assert header is None or not re.search(r"[\x00-\x1f\x7f]", header)


# RFC 3261 §25.1: callid = word [ "@" word ]
_CALLID_RE = re.compile(
    r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+(?:@[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+)?"
)


@PROPS
@given(st.text(max_size=80))
def test_thread_to_call_id_always_valid(thread: str) -> None:
    call_id = thread_to_call_id(thread)
    assert call_id is None or _CALLID_RE.fullmatch(call_id)


# --------------------------------------------------------------------------- XHTML-IM

_html = st.one_of(
    st.text(max_size=200),
    st.lists(
        st.sampled_from([
            "<p>", "</p>", "<b>", "</b>", "<ul>", "<li>", "</li>", "</ul>", "<ol>", "<br>",
            "<a href='https://x.example/'>", "<a href='javascript:x'>", "</a>", "<img src='http://x/i' alt='i'>",
            "<script>", "</script>", "<style>", "</style>", "<div style='color:red;position:fixed'>", "</div>",
            "<pre>", "</pre>", "<table><tr><td>", "</td></tr></table>", "<!--", "-->", "&amp;", "&#0;",
            "text ", " ", "\n", "é", "<font color=blue>", "</font>", "<h2>", "</h2>", "<span style='x'>",
        ]),
        max_size=40,
    ).map("".join),
)  # fmt: skip


@PROPS
@given(_html)
def test_html_to_xhtml_im_stays_in_profile(html: str) -> None:
    result = html_to_xhtml_im(html)
    root = etree.fromstring(result.xhtml)
    assert root.tag == f"{{{XHTML_NS}}}body"
    for element in root.iter():
        qname = etree.QName(element)
        assert qname.namespace == XHTML_NS and qname.localname in ALLOWED_ATTRIBUTES
        assert set(element.attrib) <= ALLOWED_ATTRIBUTES[qname.localname]
        style = element.get("style")
        if style:
            assert {d.partition(": ")[0] for d in style.split("; ")} <= STYLE_PROPERTIES
    assert "javascript" not in result.xhtml.lower()
    assert _xml_ok(result.text)


def test_xml_illegal_characters_become_replacement_characters() -> None:
    """A SIP body may hold what XML 1.0 cannot carry; the stanza gets U+FFFD instead."""
    out = xmpp_message_to_sip(
        XmppMessage("jürgen@example.com/Küche", "zoë@sip.example.net", "hi", None), DOMAINS
    )
    assert out is not None
    reply = SipPagerMessage(
        request_uri=out.from_uri,
        from_uri=out.request_uri,
        to_uri=out.from_uri,
        call_id=out.call_id,
        content_type=out.content_type,
        content_language=None,
        body="a\ufffeb\uffffc".encode(),
    )
    back = sip_message_to_xmpp(reply, DOMAINS, stanza_id="s1")
    assert back.body == "a\ufffdb\ufffdc"
