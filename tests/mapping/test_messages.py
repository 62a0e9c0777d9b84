"""Pager-mode IM: SIP MESSAGE <-> XMPP <message/> (RFC 7572)."""

from __future__ import annotations

import pytest

from sipxmpp.mapping import (
    PAGER_ACCEPT,
    PAGER_MODE_MAX_BYTES,
    DomainMap,
    MappingRefused,
    SipPagerMessage,
    StanzaRefused,
    XmppMessage,
    language_tag,
    pager_size_error,
    parse_content_type,
    sip_message_to_xmpp,
    thread_to_call_id,
    xmpp_message_to_sip,
)
from sipxmpp.mapping.messages import MAX_CALL_ID_CHARS, MAX_SIP_TO_XMPP_BODY_BYTES

DOMAINS = DomainMap(
    sip_domains={"example.net": "sip.example.net"},
    xmpp_domains={"example.com": "example.com"},
)


def sip_msg(**changes: object) -> SipPagerMessage:
    fields: dict[str, object] = {
        "request_uri": "sip:juliet@example.com",
        "from_uri": "sip:romeo@example.net",
        "to_uri": "sip:juliet@example.com",
        "call_id": "Hr0zny9l3a6-Qz4@10.0.0.1",
        "body": b"Art thou not Romeo, and a Montague?",
    }
    fields.update(changes)
    return SipPagerMessage(**fields)  # type: ignore[arg-type]


def xmpp_msg(**changes: object) -> XmppMessage:
    fields: dict[str, object] = {
        "from_jid": "juliet@example.com/balcony",
        "to_jid": "romeo@sip.example.net",
        "body": "Neither, fair saint, if either thee dislike.",
        "id": "b4vs9km4",
    }
    fields.update(changes)
    return XmppMessage(**fields)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- conformance


def test_cp41_body_subject_thread_both_ways() -> None:
    out = sip_message_to_xmpp(
        sip_msg(subject="Hi", content_type="text/plain"), DOMAINS, stanza_id="id1"
    )
    assert (out.body, out.subject, out.thread) == (
        "Art thou not Romeo, and a Montague?",
        "Hi",
        "Hr0zny9l3a6-Qz4@10.0.0.1",
    )
    back = xmpp_message_to_sip(
        xmpp_msg(subject="Re: Hi", thread="Hr0zny9l3a6-Qz4@10.0.0.1"), DOMAINS
    )
    assert back is not None
    assert back.body == b"Neither, fair saint, if either thee dislike."
    assert back.content_type == "text/plain;charset=UTF-8"
    assert (back.subject, back.call_id) == ("Re: Hi", "Hr0zny9l3a6-Qz4@10.0.0.1")


def test_cp42_full_jid_becomes_bare_uri_with_gruu() -> None:
    out = xmpp_message_to_sip(xmpp_msg(from_jid="juliet@example.com/res"), DOMAINS)
    assert out is not None
    assert out.from_uri == "sip:juliet@example.com;gr=res"
    assert (out.request_uri, out.to_uri) == ("sip:romeo@example.net", "sip:romeo@example.net")


def test_cp43_known_gruu_gives_full_jid_and_normal_type() -> None:
    out = sip_message_to_xmpp(
        sip_msg(from_uri="sip:romeo@example.net;gr=dr4hcr0st3lup4c"), DOMAINS, stanza_id="x"
    )
    assert out.from_jid == "romeo@sip.example.net/dr4hcr0st3lup4c"
    assert out.type == "normal"
    # The GRUU may also be known from the Contact of the MESSAGE.
    out = sip_message_to_xmpp(
        sip_msg(contact_uri="<sip:romeo@example.net;gr=urn:uuid:f81d4fae>"),
        DOMAINS,
        stanza_id="x",
    )
    assert out.from_jid == "romeo@sip.example.net/urn:uuid:f81d4fae"
    # Without any GRUU the sender is a bare JID.
    assert sip_message_to_xmpp(sip_msg(), DOMAINS, stanza_id="x").from_jid == (
        "romeo@sip.example.net"
    )


def test_cp44_message_over_1300_bytes_is_policy_violation() -> None:
    assert PAGER_MODE_MAX_BYTES == 1300
    assert pager_size_error(1300) is None
    error = pager_size_error(1301)
    assert error is not None and (error.condition, error.type) == ("policy-violation", "modify")
    # The runtime measures the serialized request; a long body certainly exceeds it.
    out = xmpp_message_to_sip(xmpp_msg(body="x" * 1300), DOMAINS)
    assert out is not None and pager_size_error(len(out.body) + 200) is not None
    # A path known to be congestion-controlled may use a larger bound (RFC 3428 §8).
    assert pager_size_error(5000, limit=65536) is None


def test_cp45_html_becomes_xhtml_im_and_plain_text_is_always_accepted() -> None:
    html = b"<p>Wherefore art thou <b>Romeo</b>?</p><script>steal()</script>"
    out = sip_message_to_xmpp(
        sip_msg(content_type="text/html; charset=utf-8", body=html), DOMAINS, stanza_id="x"
    )
    assert out.body == "Wherefore art thou Romeo?"
    assert out.xhtml == (
        '<body xmlns="http://www.w3.org/1999/xhtml"><p>Wherefore art thou '
        '<span style="font-weight: bold">Romeo</span>?</p></body>'
    )
    for content_type in ("text/plain", "TEXT/PLAIN; charset=UTF-8", 'text/plain;charset="utf-8"'):
        plain = sip_message_to_xmpp(
            sip_msg(content_type=content_type, body=b"<b>not html</b>"), DOMAINS, stanza_id="x"
        )
        assert (plain.body, plain.xhtml) == ("<b>not html</b>", None)


def test_cp46_content_language_and_xml_lang() -> None:
    out = sip_message_to_xmpp(sip_msg(content_language="cs"), DOMAINS, stanza_id="x")
    assert out.lang == "cs"
    back = xmpp_message_to_sip(xmpp_msg(lang="cs"), DOMAINS)
    assert back is not None and back.content_language == "cs"


# --------------------------------------------------------------------------- SIP -> XMPP


def test_sip_to_xmpp_addresses_and_id() -> None:
    out = sip_message_to_xmpp(sip_msg(), DOMAINS, stanza_id="stanza-7")
    assert (out.from_jid, out.to_jid, out.id, out.type) == (
        "romeo@sip.example.net",
        "juliet@example.com",
        "stanza-7",
        "normal",
    )
    assert (out.subject, out.lang, out.xhtml, out.error) == (None, None, None, None)


def test_sip_to_xmpp_unserved_sender_learns_nothing_about_targets() -> None:
    for target in ("sip:juliet@example.com", "sip:juliet@elsewhere.example"):
        with pytest.raises(MappingRefused) as exc:
            sip_message_to_xmpp(
                sip_msg(from_uri="sip:mallory@evil.example", request_uri=target),
                DOMAINS,
                stanza_id="x",
            )
        assert exc.value.status == 403


def test_sip_to_xmpp_request_uri_is_the_target() -> None:
    # After retargeting, To may differ from the Request-URI; the Request-URI decides.
    out = sip_message_to_xmpp(
        sip_msg(request_uri="sip:juliet@example.com;gr=balcony", to_uri="sip:jules@example.com"),
        DOMAINS,
        stanza_id="x",
    )
    assert out.to_jid == "juliet@example.com/balcony"


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({"request_uri": "sips:juliet@example.com"}, 480),
        ({"to_uri": "sips:juliet@example.com"}, 480),
        ({"request_uri": "sip:juliet@elsewhere.example"}, 404),
        ({"from_uri": "sip:mallory@evil.example"}, 403),
        ({"from_uri": "tel:+1555"}, 403),
        ({"request_uri": "http://example.com"}, 416),
        ({"content_type": "application/octet-stream"}, 415),
        ({"content_type": "message/cpim"}, 415),
        ({"content_type": "multipart/alternative; boundary=x"}, 415),
        ({"content_type": "text/plain; charset=x-unknown"}, 415),
        ({"content_type": "text/plain; charset=rot13"}, 415),
        ({"content_type": "text/plain; charset=hex"}, 415),
        ({"content_type": "garbage"}, 400),
        ({"content_type": "text/plain; charset"}, 400),
        ({"content_type": 'text/plain; charset=utf-8; x="unterminated'}, 400),
        ({"body": b"\xff\xfe\xfd"}, 400),
        ({"body": b"x" * (MAX_SIP_TO_XMPP_BODY_BYTES + 1)}, 413),
    ],
)
def test_sip_to_xmpp_refusals(changes: dict[str, object], status: int) -> None:
    with pytest.raises(MappingRefused) as exc:
        sip_message_to_xmpp(sip_msg(**changes), DOMAINS, stanza_id="x")
    assert exc.value.status == status
    if status == 415:
        assert exc.value.accept == PAGER_ACCEPT == "text/plain, text/html"
        assert ("Accept", "text/plain, text/html") in exc.value.headers
    if status == 480:
        assert exc.value.warning == (380, "SIPS Not Allowed")


@pytest.mark.parametrize(
    ("content_type", "body", "text"),
    [
        ("text/plain; charset=ISO-8859-1", "Grüße".encode("latin-1"), "Grüße"),
        ("text/plain; charset=windows-1251", "Привет".encode("cp1251"), "Привет"),
        ("text/plain; charset=Shift_JIS", "こんにちは".encode("shift_jis"), "こんにちは"),
        ("text/plain; charset=utf-16", "hé".encode("utf-16"), "hé"),
        ("text/plain; charset=us-ascii", b"plain", "plain"),
        ("text/plain", "tschüss".encode(), "tschüss"),
        ("text/plain; charset=utf-8", b"\xef\xbb\xbfBOM", "BOM"),
        ("text/html; charset=iso-8859-15", "<i>€uro</i>".encode("iso-8859-15"), "€uro"),
    ],
)
def test_sip_to_xmpp_charsets(content_type: str, body: bytes, text: str) -> None:
    out = sip_message_to_xmpp(sip_msg(content_type=content_type, body=body), DOMAINS, stanza_id="x")
    assert out.body == text


def test_sip_to_xmpp_cleans_text_for_xml() -> None:
    out = sip_message_to_xmpp(
        sip_msg(body=b"a\x00b\x1bc\nd", subject="s\x07t", call_id="c\x01d"),
        DOMAINS,
        stanza_id="x",
    )
    assert out.body == "a\ufffdb\ufffdc\nd"
    assert out.subject == "s\ufffdt"
    assert out.thread == "c\ufffdd"


def test_sip_to_xmpp_empty_body_is_delivered_empty() -> None:
    assert sip_message_to_xmpp(sip_msg(body=b""), DOMAINS, stanza_id="x").body == ""


def test_sip_to_xmpp_bad_language_is_dropped() -> None:
    assert sip_message_to_xmpp(sip_msg(content_language="!!"), DOMAINS, stanza_id="x").lang is None
    out = sip_message_to_xmpp(sip_msg(content_language="fr, en"), DOMAINS, stanza_id="x")
    assert out.lang == "fr"


# --------------------------------------------------------------------------- XMPP -> SIP


@pytest.mark.parametrize(
    "changes",
    [
        {"body": None},
        {"body": ""},
        {"type": "error"},
        {"body": None, "to_jid": "nobody@elsewhere.example"},  # chat state only: nothing sent
    ],
)
def test_xmpp_to_sip_nothing_to_send(changes: dict[str, object]) -> None:
    assert xmpp_message_to_sip(xmpp_msg(**changes), DOMAINS) is None


@pytest.mark.parametrize("type_", ["normal", "chat", "headline"])
def test_xmpp_to_sip_types_are_not_mapped(type_: str) -> None:
    out = xmpp_message_to_sip(xmpp_msg(type=type_), DOMAINS)
    assert out is not None and out.body.startswith(b"Neither")


@pytest.mark.parametrize(
    ("changes", "condition"),
    [
        ({"type": "groupchat"}, "service-unavailable"),
        ({"to_jid": "romeo@elsewhere.example"}, "remote-server-not-found"),
        ({"to_jid": "sip.example.net"}, "item-not-found"),
        ({"to_jid": "a b@sip.example.net"}, "jid-malformed"),
        ({"from_jid": "mallory@evil.example"}, "not-allowed"),
    ],
)
def test_xmpp_to_sip_refusals(changes: dict[str, object], condition: str) -> None:
    with pytest.raises(StanzaRefused) as exc:
        xmpp_message_to_sip(xmpp_msg(**changes), DOMAINS)
    assert exc.value.error.condition == condition


def test_xmpp_to_sip_non_ascii_body_and_addresses() -> None:
    out = xmpp_message_to_sip(
        xmpp_msg(from_jid="jürgen@example.com/Küche", to_jid="o\\27neil@sip.example.net",
                 body="Grüß Gott ☺"),
        DOMAINS,
    )  # fmt: skip
    assert out is not None
    assert out.body == "Grüß Gott ☺".encode()
    assert out.from_uri == "sip:j%C3%BCrgen@example.com;gr=K%C3%BCche"
    assert out.request_uri == "sip:o'neil@example.net"


def test_xmpp_to_sip_headers_are_one_line() -> None:
    out = xmpp_message_to_sip(xmpp_msg(subject="two\r\nlines\x00", lang="not a tag"), DOMAINS)
    assert out is not None
    assert out.subject == "two lines"
    assert out.content_language is None
    blank = xmpp_message_to_sip(xmpp_msg(subject="\r\n"), DOMAINS)
    assert blank is not None and blank.subject is None


def test_xmpp_to_sip_xhtml_is_not_sent() -> None:
    out = xmpp_message_to_sip(
        xmpp_msg(xhtml="<body xmlns='http://www.w3.org/1999/xhtml'/>"), DOMAINS
    )
    assert out is not None and out.content_type == "text/plain;charset=UTF-8"


# --------------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("thread", "call_id"),
    [
        (None, None),
        ("", None),
        ("abc123", "abc123"),
        ("a7f3@host.example", "a7f3@host.example"),
        ("e0ffe42b28561960c6b12b944a092794b9683a38", "e0ffe42b28561960c6b12b944a092794b9683a38"),
        ("with space", "with%20space"),
        ("50%", "50%"),  # valid as is: kept unchanged
        ("50% off", "50%25%20off"),
        ("a@b@c", "a@b%40c"),
        ("@lead", "%40lead"),
        ("trail@", "trail%40"),
        ("fädén", "f%C3%A4d%C3%A9n"),
        ("semi;colon", "semi%3Bcolon"),
        ("x" * MAX_CALL_ID_CHARS, "x" * MAX_CALL_ID_CHARS),
        ("x" * (MAX_CALL_ID_CHARS + 1), None),
        ("é" * 100, None),  # 600 characters once encoded
    ],
)
def test_thread_to_call_id(thread: str | None, call_id: str | None) -> None:
    assert thread_to_call_id(thread) == call_id


@pytest.mark.parametrize(
    ("value", "media", "params"),
    [
        ("text/plain", "text/plain", {}),
        ('Text/HTML ; Charset="UTF-8"', "text/html", {"charset": "UTF-8"}),
        (
            "text/plain;charset=utf-8;format=flowed",
            "text/plain",
            {"charset": "utf-8", "format": "flowed"},
        ),
        ('text/plain; x="a\\"b;c"', "text/plain", {"x": 'a"b;c'}),
    ],
)
def test_parse_content_type(value: str, media: str, params: dict[str, str]) -> None:
    assert parse_content_type(value) == (media, params)


@pytest.mark.parametrize(
    "value", ["", "text", "text/", "/plain", "text/plain;", "text/plain; a=b c"]
)
def test_parse_content_type_malformed(value: str) -> None:
    with pytest.raises(MappingRefused) as exc:
        parse_content_type(value)
    assert exc.value.status == 400


@pytest.mark.parametrize(
    ("value", "tag"),
    [("cs", "cs"), ("en-US", "en-US"), (" de , fr", "de"), ("!!, it", "it"), ("", None), (None, None),
     ("toolonglanguage", None), ("zh-Hant-TW", "zh-Hant-TW")],
)  # fmt: skip
def test_language_tag(value: str | None, tag: str | None) -> None:
    assert language_tag(value) == tag
