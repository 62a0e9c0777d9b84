"""Address mapping: RFC 7247 §6, XEP-0106, GRUUs, and the gateway's domain rules."""

from __future__ import annotations

import pytest

from sipxmpp.mapping import (
    DomainMap,
    Jid,
    LocalMappingError,
    MappingRefused,
    SipUri,
    StanzaRefused,
    header_uri,
    is_public_gruu,
    is_temporary_gruu,
    jid_to_sip_uri,
    jid_to_xmpp_uri,
    parse_uri,
    refuse_sips,
    sip_uri_to_jid,
    xep0106_escape,
    xep0106_unescape,
    xmpp_uri_to_jid,
)

# The deployment of the issue: SIP users of example.com appear on XMPP under the
# component domain sip.example.com; XMPP users of example.com keep their domain on SIP.
DOMAINS = DomainMap(
    sip_domains={"example.com": "sip.example.com", "sip.example.net": "sip.example.org"},
    xmpp_domains={"example.com": "example.com", "xmpp.example.org": "example.org"},
)


# --------------------------------------------------------------------------- conformance


def test_cp01_apostrophe_escaped_as_backslash_27() -> None:
    assert str(sip_uri_to_jid("sip:o'malley@sip.example")) == "o\\27malley@sip.example"


def test_cp02_percent_encoded_utf8_becomes_unicode() -> None:
    assert str(sip_uri_to_jid("sip:f%C3%BC@sip.example")) == "fü@sip.example"


def test_cp03_gruu_becomes_resource() -> None:
    jid = sip_uri_to_jid("sip:foo@sip.example;gr=bar")
    assert (str(jid), jid.is_full) == ("foo@sip.example/bar", True)


def test_cp04_unescape_ampersand() -> None:
    assert str(jid_to_sip_uri("m\\26m@xmpp.example")) == "sip:m&m@xmpp.example"


def test_cp05_non_ascii_percent_encoded() -> None:
    assert str(jid_to_sip_uri("tschüss@xmpp.example")) == "sip:tsch%C3%BCss@xmpp.example"


def test_cp06_resource_becomes_gruu() -> None:
    assert str(jid_to_sip_uri("baz@xmpp.example/qux")) == "sip:baz@xmpp.example;gr=qux"


@pytest.mark.parametrize(
    ("jid", "scheme", "uri"),
    [
        ("a#b@x.example", "sip", "sip:a%23b@x.example"),
        ("first.last@x.example", "im", "im:first%2Elast@x.example"),
        ("a,b@x.example", "pres", "pres:a%2Cb@x.example"),
        ("a,b.c@x.example", "sip", "sip:a,b.c@x.example"),
        ("a#b@x.example", "im", "im:a#b@x.example"),
        ("x(y)z;w[1]@x.example", "im", "im:x%28y%29z%3Bw%5B1%5D@x.example"),
        ("x(y)z;w@x.example", "sip", "sip:x(y)z;w@x.example"),
        ("[a]^b`c{d|e}@x.example", "sip", "sip:%5Ba%5D%5Eb%60c%7Bd%7Ce%7D@x.example"),
        ("50%@x.example", "sip", "sip:50%25@x.example"),
        ("50%@x.example", "im", "im:50%25@x.example"),
        ("a\\20b\\40c\\3a\\22\\3c\\3e@x.example", "sip", "sip:a%20b%40c%3A%22%3C%3E@x.example"),
        ("d\\2fe@x.example", "sip", "sip:d/e@x.example"),
    ],
)
def test_cp07_scheme_specific_percent_encoding(jid: str, scheme: str, uri: str) -> None:
    assert str(jid_to_sip_uri(jid, scheme=scheme)) == uri


def test_cp08_domain_unchanged_and_temporary_gruu_not_mapped() -> None:
    # The domain passes through exactly (no case folding, no translation, §6.1).
    assert str(sip_uri_to_jid("sip:foo@SIP.Example.COM")) == "foo@SIP.Example.COM"
    assert jid_to_sip_uri("foo@XMPP.Example").host == "XMPP.Example"
    # A gr parameter without a value is a temporary GRUU (RFC 5627 §3.2): never a resource.
    temp = "sip:tgruu.7hs==jd7vnzga5w7fajsc7-ajd6fabz0f8g5@example.com;gr"
    assert is_temporary_gruu(parse_uri(temp)) and not is_public_gruu(parse_uri(temp))
    with pytest.raises(MappingRefused) as exc:
        sip_uri_to_jid(temp)
    assert exc.value.status == 404
    with pytest.raises(MappingRefused) as exc:
        DOMAINS.sip_target_to_jid("sip:bob@example.com;gr")
    assert exc.value.status == 404
    with pytest.raises(MappingRefused) as exc:
        DOMAINS.sip_sender_to_jid(temp)
    assert exc.value.status == 403
    # A temporary GRUU as Contact does not turn into a resource either.
    jid = DOMAINS.sip_sender_to_jid("sip:alice@example.com", contact_uri=temp)
    assert str(jid) == "alice@sip.example.com"


@pytest.mark.parametrize(
    ("request_uri", "to_uri"),
    [
        ("sips:bob@example.com", None),
        ("SIPS:bob@example.com", "sip:bob@example.com"),
        ("<sips:bob@example.com>", None),
        ("sip:bob@example.com", "sips:bob@example.com"),
        ("sip:bob@example.com", "<sips:bob@example.com;gr=x>"),
    ],
)
def test_cp09_sips_never_routed_into_xmpp(request_uri: str, to_uri: str | None) -> None:
    with pytest.raises(MappingRefused) as exc:
        DOMAINS.sip_target_to_jid(request_uri, to_uri=to_uri)
    assert (exc.value.status, exc.value.reason) == (480, "Temporarily Unavailable")
    assert exc.value.warning == (380, "SIPS Not Allowed")  # RFC 5630 §5.3
    with pytest.raises(MappingRefused):
        sip_uri_to_jid("sips:bob@example.com")
    with pytest.raises(MappingRefused):
        refuse_sips(request_uri, to_uri)


# --------------------------------------------------------------------------- XEP-0106

XEP0106_TABLE = [
    # XEP-0106 §5 examples and every entry of the table.
    ("space cadet", "space\\20cadet"),
    ('call me "ishmael"', "call\\20me\\20\\22ishmael\\22"),
    ("at&t guy", "at\\26t\\20guy"),
    ("d'artagnan", "d\\27artagnan"),
    ("/.fanboy", "\\2f.fanboy"),
    ("::foo::", "\\3a\\3afoo\\3a\\3a"),
    ("<foo>", "\\3cfoo\\3e"),
    ("user@host", "user\\40host"),
    ("c:\\net", "c\\3a\\net"),
    ("c:\\\\net", "c\\3a\\\\net"),
    ("c:\\cool stuff", "c\\3a\\cool\\20stuff"),
    ("c:\\5commas", "c\\3a\\5c5commas"),
    ("\\20", "\\5c20"),
    ("\\5c", "\\5c5c"),
    ("plain", "plain"),
    ("\\2F", "\\2F"),  # only the lower-case codes of the table are escapes
]


@pytest.mark.parametrize(("raw", "escaped"), XEP0106_TABLE)
def test_xep0106_escape_table(raw: str, escaped: str) -> None:
    assert xep0106_escape(raw) == escaped
    assert xep0106_unescape(escaped) == raw


@pytest.mark.parametrize("raw", [" lead", "trail ", " "])
def test_xep0106_space_never_first_or_last(raw: str) -> None:
    with pytest.raises(LocalMappingError):
        xep0106_escape(raw)
    with pytest.raises(MappingRefused) as exc:
        sip_uri_to_jid(f"sip:{raw.replace(' ', '%20')}@x.example")
    assert exc.value.status == 404


def test_xep0106_unescape_leaves_unknown_sequences() -> None:
    assert xep0106_unescape("a\\zz\\2") == "a\\zz\\2"


# --------------------------------------------------------------------------- URI parsing

PARSE_CASES = [
    ("sip:alice@example.com", SipUri("sip", "alice", "example.com")),
    ("SIP:alice@Example.COM:5061", SipUri("sip", "alice", "Example.COM", 5061)),
    (
        "sip:alice:secret@example.com;transport=tcp;lr",
        SipUri(
            "sip", "alice", "example.com", None, (("transport", "tcp"), ("lr", None)), (), "secret"
        ),
    ),
    ("sip:example.com", SipUri("sip", None, "example.com")),
    ("sip:[2001:db8::1]:5060", SipUri("sip", None, "[2001:db8::1]", 5060)),
    ("sip:bob@[2001:db8::1];gr=x", SipUri("sip", "bob", "[2001:db8::1]", None, (("gr", "x"),))),
    ("<sip:bob@host.example>", SipUri("sip", "bob", "host.example")),
    (
        "sip:a?b;c@h.example;gr=urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6?subject=hi%20there",
        SipUri(
            "sip",
            "a?b;c",
            "h.example",
            None,
            (("gr", "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"),),
            (("subject", "hi there"),),
        ),
    ),
    ("im:first.last@example.com", SipUri("im", "first.last", "example.com")),
    ("pres:a%2Eb@example.com", SipUri("pres", "a.b", "example.com")),
    ("tel:+1-201-555-0123", SipUri("tel", "+1-201-555-0123", "")),
    (
        "tel:7042;phone-context=example.com",
        SipUri("tel", "7042", "", None, (("phone-context", "example.com"),)),
    ),
    ("sip:fü@example.com", SipUri("sip", "fü", "example.com")),  # raw UTF-8 tolerated
    ("sip:host.example;gr", SipUri("sip", None, "host.example", None, (("gr", None),))),
]


@pytest.mark.parametrize(("text", "uri"), PARSE_CASES)
def test_parse_uri_table(text: str, uri: SipUri) -> None:
    assert parse_uri(text) == uri
    assert parse_uri(str(uri)) == uri


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("", 400),
        ("alice@example.com", 400),
        ("sip:", 400),
        ("sip:@example.com", 400),
        ("sip:alice@", 400),
        ("sip:alice@exa mple.com", 400),
        ("sip:al ice@example.com", 400),
        ("sip:a%zzb@example.com", 400),
        ("sip:a%C3@example.com", 400),  # not UTF-8 once decoded
        ("sip:a#b@example.com", 400),  # '#' must be escaped in a sip user part
        ("sip:a@example.com:99999", 400),
        ("sip:a@example.com:5x", 400),
        ("sip:a@[::1", 400),
        ("sip:a@[zz::1]", 400),
        ("sip:a@example.com;=x", 400),
        ("sip:a@example.com?novalue", 400),
        ("im:a@example.com:5060", 400),
        ("tel:", 400),
        ("tel:12ab;;", 400),
        ("tel:hello", 400),
        ("http://example.com/", 416),
        ("mailto:a@example.com", 416),
        ("xmpp:a@example.com", 416),
        ("sip:" + "a" * 20_000 + "@example.com", 414),
    ],
)
def test_parse_uri_refusals(text: str, status: int) -> None:
    with pytest.raises(MappingRefused) as exc:
        parse_uri(text)
    assert exc.value.status == status


def test_sipuri_constructor_validates() -> None:
    with pytest.raises(LocalMappingError):
        SipUri("http", "a", "example.com")
    with pytest.raises(LocalMappingError):
        SipUri("sip", "a", "bad host")
    with pytest.raises(LocalMappingError):
        SipUri("sip", "", "example.com")
    with pytest.raises(LocalMappingError):
        SipUri("im", "a", "example.com", 5060)
    with pytest.raises(LocalMappingError):
        SipUri("sip", "\ud800", "example.com")


# --------------------------------------------------------------------------- JIDs


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("juliet@example.com", ("juliet", "example.com", None)),
        ("juliet@example.com/balcony", ("juliet", "example.com", "balcony")),
        ("juliet@example.com/a/b@c", ("juliet", "example.com", "a/b@c")),
        ("example.com", (None, "example.com", None)),
        ("example.com.", (None, "example.com", None)),
        ("example.com/res", (None, "example.com", "res")),
        ("fü@例え.テスト", ("fü", "例え.テスト", None)),
        ("a@[::1]", ("a", "[::1]", None)),
        ("o\\27malley@sip.example/with space", ("o\\27malley", "sip.example", "with space")),
    ],
)
def test_jid_parse_table(text: str, parts: tuple[str | None, str, str | None]) -> None:
    jid = Jid.parse(text)
    assert (jid.local, jid.domain, jid.resource) == parts
    assert Jid.parse(str(jid)) == jid
    assert jid.bare.resource is None and jid.bare.local == jid.local


@pytest.mark.parametrize(
    "text",
    [
        "",
        "@example.com",
        "a@",
        "a@example.com/",
        "a b@example.com",
        "a'b@example.com",
        'a"b@example.com',
        "a:b@example.com",
        "a<b@example.com",
        "a@exa mple.com",
        "a@exa..mple",
        "a@[zz]",
        "a@[::1",
        "\x00@example.com",
        "a@example.com/\x07",
        "x" * 1024 + "@example.com",
        "a@" + "d" * 1024,
        "a@example.com/" + "r" * 1024,
        "é" * 600 + "@example.com",  # 1200 bytes of UTF-8
    ],
)
def test_jid_malformed(text: str) -> None:
    with pytest.raises(StanzaRefused) as exc:
        Jid.parse(text)
    assert (exc.value.error.condition, exc.value.error.type) == ("jid-malformed", "modify")


def test_jid_length_limits_are_bytes() -> None:
    assert Jid.parse("x" * 1023 + "@example.com").local == "x" * 1023
    with pytest.raises(StanzaRefused):
        Jid.parse("x" * 1024 + "@example.com")
    with pytest.raises(MappingRefused) as exc:
        sip_uri_to_jid("sip:" + "%C3%A9" * 512 + "@example.com")
    assert exc.value.status == 404
    # Escaping lengthens a localpart: 341 apostrophes become 1023 bytes, 342 are too many.
    assert sip_uri_to_jid("sip:" + "'" * 341 + "@x.example").local == "\\27" * 341
    with pytest.raises(MappingRefused):
        sip_uri_to_jid("sip:" + "'" * 342 + "@x.example")


def test_jid_constructor_validates() -> None:
    with pytest.raises(LocalMappingError):
        Jid("a@b", "example.com")
    with pytest.raises(LocalMappingError):
        Jid("a", "")


# --------------------------------------------------------------------------- §6.4 / §6.5 details


@pytest.mark.parametrize(
    ("uri", "jid"),
    [
        ("sip:a%40b@x.example", "a\\40b@x.example"),
        ("sip:a%20b@x.example", "a\\20b@x.example"),
        ("sip:a%3Ab@x.example", "a\\3ab@x.example"),
        ("sip:d/e@x.example", "d\\2fe@x.example"),
        ("sip:a&b@x.example", "a\\26b@x.example"),
        ("sip:a%5C40b@x.example", "a\\5c40b@x.example"),
        ("sip:a%5Cb@x.example", "a\\b@x.example"),
        ("sip:+12015550123@x.example;user=phone", "+12015550123@x.example"),
        ("sip:foo@x.example;gr=urn:uuid:1-2", "foo@x.example/urn:uuid:1-2"),
        ("sip:foo@x.example;gr=r%C3%A9s%20x", "foo@x.example/rés x"),
        ("sip:foo:pw@x.example:5060;transport=tls?subject=x", "foo@x.example"),
        ("im:first.last@x.example", "first.last@x.example"),
        ("pres:a%2Cb@x.example", "a,b@x.example"),
    ],
)
def test_sip_to_jid_details(uri: str, jid: str) -> None:
    assert str(sip_uri_to_jid(uri)) == jid


@pytest.mark.parametrize(
    ("uri", "status"),
    [
        ("tel:+12015550123", 404),
        ("sip:x.example", 404),
        ("sip:a%00b@x.example", 404),
        ("sip:a%E2%80%8Bb@x.example", 404),  # U+200B ZERO WIDTH SPACE (Cf)
        ("sip:a%C2%A0b@x.example", 404),  # U+00A0 NO-BREAK SPACE (Zs)
        ("sip:a@x.example;gr=%07", 404),
        ("sip:a@x.example;gr=", 404),
    ],
)
def test_sip_to_jid_unmappable(uri: str, status: int) -> None:
    with pytest.raises(MappingRefused) as exc:
        sip_uri_to_jid(uri)
    assert exc.value.status == status


def test_jid_to_sip_details() -> None:
    assert str(jid_to_sip_uri("baz@xmpp.example/qux", with_gruu=False)) == "sip:baz@xmpp.example"
    assert str(jid_to_sip_uri("baz@xmpp.example/q u;x")) == "sip:baz@xmpp.example;gr=q%20u%3Bx"
    assert str(jid_to_sip_uri("baz@xmpp.example/qux", scheme="im")) == "im:baz@xmpp.example"
    assert str(jid_to_sip_uri("xmpp.example")) == "sip:xmpp.example"
    assert str(jid_to_sip_uri("a@xmpp.example", scheme="sips")) == "sips:a@xmpp.example"
    with pytest.raises(LocalMappingError):
        jid_to_sip_uri("a@xmpp.example", scheme="tel")
    with pytest.raises(StanzaRefused) as exc:
        jid_to_sip_uri("a@例え.テスト")  # an IDN has no SIP host form here (§6.1)
    assert exc.value.error.condition == "remote-server-not-found"


@pytest.mark.parametrize(
    ("jid", "uri"),
    [
        ("o\\27malley@sip.example", "xmpp:o%5C27malley@sip.example"),
        ("fü@x.example/r é", "xmpp:f%C3%BC@x.example/r%20%C3%A9"),
        ("x.example", "xmpp:x.example"),
        ("a@x.example/a@b:c", "xmpp:a@x.example/a@b:c"),
    ],
)
def test_xmpp_uri_round_trip(jid: str, uri: str) -> None:
    assert jid_to_xmpp_uri(jid) == uri
    assert str(xmpp_uri_to_jid(uri)) == jid


@pytest.mark.parametrize(
    "uri", ["", "sip:a@b", "xmpp:", "xmpp:a@x%zz", "xmpp:%FF@x.example", "xmpp://auth@host"]
)
def test_xmpp_uri_malformed(uri: str) -> None:
    with pytest.raises(StanzaRefused):
        xmpp_uri_to_jid(uri)


def test_xmpp_uri_authority_and_query_ignored() -> None:
    assert str(xmpp_uri_to_jid("xmpp://guest@x.example/a@y.example?message;body=hi#f")) == (
        "a@y.example"
    )


# --------------------------------------------------------------------------- DomainMap


def test_domain_map_issue_example_sip_to_xmpp() -> None:
    """sip:alice@example.com reaches bob@example.com; bob sees alice@sip.example.com."""
    assert str(DOMAINS.sip_target_to_jid("sip:bob@example.com")) == "bob@example.com"
    assert str(DOMAINS.sip_sender_to_jid("sip:alice@example.com")) == "alice@sip.example.com"
    # Case and trailing dots of domains do not matter for lookups.
    assert str(DOMAINS.sip_target_to_jid("sip:bob@EXAMPLE.com.")) == "bob@example.com"
    assert str(DOMAINS.sip_sender_to_jid("sip:alice@Example.COM:5060")) == "alice@sip.example.com"
    assert str(DOMAINS.sip_target_to_jid("sip:carol@example.org")) == "carol@xmpp.example.org"


def test_domain_map_issue_example_xmpp_to_sip() -> None:
    assert str(DOMAINS.xmpp_target_to_sip("alice@sip.example.com")) == "sip:alice@example.com"
    assert str(DOMAINS.xmpp_sender_to_sip("bob@example.com/phone")) == (
        "sip:bob@example.com;gr=phone"
    )
    assert str(DOMAINS.xmpp_target_to_sip("dave@sip.example.org/urn:uuid:1")) == (
        "sip:dave@sip.example.net;gr=urn:uuid:1"
    )
    assert str(DOMAINS.xmpp_sender_to_sip("carol@xmpp.example.org")) == "sip:carol@example.org"


def test_domain_map_reply_reaches_the_same_resource() -> None:
    sender = DOMAINS.xmpp_sender_to_sip("bob@example.com/phone")
    assert str(DOMAINS.sip_target_to_jid(str(sender))) == "bob@example.com/phone"
    target = DOMAINS.sip_sender_to_jid("sip:alice@example.com;gr=urn:uuid:abc")
    assert str(DOMAINS.xmpp_target_to_sip(target)) == "sip:alice@example.com;gr=urn:uuid:abc"


def test_domain_map_sender_gruu_from_contact() -> None:
    gruu = "sip:alice@example.com;gr=urn:uuid:f81d4fae"
    assert str(DOMAINS.sip_sender_to_jid("sip:alice@example.com", contact_uri=gruu)) == (
        "alice@sip.example.com/urn:uuid:f81d4fae"
    )
    # A Contact that is not a GRUU of the same AOR is ignored.
    for contact in (
        "sip:alice@192.0.2.1:5060",
        "sip:mallory@example.com;gr=x",
        "<garbage",
        "sip:alice@example.org;gr=x",
    ):
        assert str(DOMAINS.sip_sender_to_jid("sip:alice@example.com", contact_uri=contact)) == (
            "alice@sip.example.com"
        )


@pytest.mark.parametrize(
    ("uri", "status"),
    [
        ("sip:bob@example.net", 404),  # not the SIP name of an XMPP domain we serve
        ("sip:bob@sip.example.com", 404),  # a component domain is no SIP domain
        ("sip:example.com", 404),
        ("tel:+123", 404),
        ("sip:b%00b@example.com", 404),
        ("http://example.com", 416),
        ("sip:bob@", 400),
    ],
)
def test_domain_map_target_refusals(uri: str, status: int) -> None:
    with pytest.raises(MappingRefused) as exc:
        DOMAINS.sip_target_to_jid(uri)
    assert exc.value.status == status


@pytest.mark.parametrize(
    ("uri", "status"),
    [
        ("sip:mallory@evil.example", 403),  # no open relay (RFC 8048 §8.1)
        ("sip:bob@example.org", 403),  # the SIP name of XMPP users is not a SIP domain
        ("tel:+123", 403),
        ("http://example.com", 403),
        ("sip:a%00@example.com", 403),
        ("sip:a@example.com;gr", 403),
        ("sip:%zz@example.com", 400),
    ],
)
def test_domain_map_sender_refusals(uri: str, status: int) -> None:
    with pytest.raises(MappingRefused) as exc:
        DOMAINS.sip_sender_to_jid(uri)
    assert exc.value.status == status


def test_domain_map_sips_from_is_only_a_name() -> None:
    # RFC 7247 §8 concerns the Request-URI and To; a sips: From just names the sender.
    assert str(DOMAINS.sip_sender_to_jid("sips:alice@example.com")) == "alice@sip.example.com"


@pytest.mark.parametrize(
    ("jid", "condition", "type_"),
    [
        ("alice@elsewhere.example", "remote-server-not-found", "cancel"),
        ("alice@example.com", "remote-server-not-found", "cancel"),
        ("sip.example.com", "item-not-found", "cancel"),
        ("a b@sip.example.com", "jid-malformed", "modify"),
    ],
)
def test_domain_map_xmpp_target_refusals(jid: str, condition: str, type_: str) -> None:
    with pytest.raises(StanzaRefused) as exc:
        DOMAINS.xmpp_target_to_sip(jid)
    assert (exc.value.error.condition, exc.value.error.type) == (condition, type_)


@pytest.mark.parametrize(
    ("jid", "condition"),
    [
        ("mallory@evil.example/x", "not-allowed"),
        ("alice@sip.example.com", "not-allowed"),
        ("@example.com", "jid-malformed"),
    ],
)
def test_domain_map_xmpp_sender_refusals(jid: str, condition: str) -> None:
    with pytest.raises(StanzaRefused) as exc:
        DOMAINS.xmpp_sender_to_sip(jid)
    assert exc.value.error.condition == condition


def test_domain_map_server_jid_sender_has_no_user() -> None:
    assert str(DOMAINS.xmpp_sender_to_sip("example.com")) == "sip:example.com"


def test_domain_map_named_addresses() -> None:
    # A served SIP domain wins where a name is both (example.com).
    assert str(DOMAINS.sip_address_to_jid("sip:carol@example.com")) == "carol@sip.example.com"
    assert str(DOMAINS.sip_address_to_jid("sip:carol@example.org")) == "carol@xmpp.example.org"
    assert str(DOMAINS.sip_address_to_jid("sip:carol@other.example")) == "carol@other.example"
    with pytest.raises(MappingRefused):
        DOMAINS.sip_address_to_jid("sips:carol@example.com")
    with pytest.raises(MappingRefused):
        DOMAINS.sip_address_to_jid("tel:+1")
    assert str(DOMAINS.jid_to_sip_address("new@example.com")) == "sip:new@example.com"
    assert str(DOMAINS.jid_to_sip_address("new@sip.example.com")) == "sip:new@example.com"
    assert str(DOMAINS.jid_to_sip_address("new@other.example/r")) == "sip:new@other.example;gr=r"


@pytest.mark.parametrize(
    ("sip_domains", "xmpp_domains"),
    [
        ({"a.example": "gw.example", "b.example": "gw.example"}, {}),
        ({}, {"x.example": "s.example", "y.example": "s.example"}),
        ({"a.example": "x.example"}, {"x.example": "x.example"}),
        ({"bad host": "gw.example"}, {}),
        ({"a.example": "bad/domain"}, {}),
        ({"a.example": "gw.example", "A.EXAMPLE.": "gw2.example"}, {}),
    ],
)
def test_domain_map_rejects_ambiguous_config(
    sip_domains: dict[str, str], xmpp_domains: dict[str, str]
) -> None:
    with pytest.raises(LocalMappingError):
        DomainMap(sip_domains=sip_domains, xmpp_domains=xmpp_domains)


def test_domain_map_is_frozen_and_hashable() -> None:
    other = DomainMap(
        sip_domains={"EXAMPLE.COM.": "sip.example.com", "sip.example.net": "sip.example.org"},
        xmpp_domains={"example.com": "example.com", "xmpp.example.org": "example.org"},
    )
    assert other == DOMAINS and hash(other) == hash(DOMAINS)
    assert DOMAINS.component_domains == frozenset({"sip.example.com", "sip.example.org"})
    with pytest.raises(AttributeError):
        DOMAINS.sip_domains = {}  # type: ignore[misc]
    with pytest.raises(TypeError):
        DOMAINS.sip_domains["x"] = "y"  # type: ignore[index]


@pytest.mark.parametrize(
    ("value", "uri"),
    [
        ("sip:alice@example.com", "sip:alice@example.com"),
        ("<sip:alice@example.com;gr=x>;expires=3600", "sip:alice@example.com;gr=x"),
        ('"Alice <A>" <sip:alice@example.com>;tag=1', "sip:alice@example.com"),
        ("sip:alice@example.com;tag=1", "sip:alice@example.com"),
        ("sip:a@x.example, sip:b@y.example", "sip:a@x.example"),
        ("  <sip:a@x.example  ", "sip:a@x.example"),
        ("", ""),
    ],
)
def test_header_uri(value: str, uri: str) -> None:
    assert header_uri(value) == uri


def test_sender_gruu_from_contact_header_value() -> None:
    jid = DOMAINS.sip_sender_to_jid(
        "sip:alice@example.com",
        contact_uri='"Alice" <sip:alice@example.com;gr=urn:uuid:f81d4fae>;expires=3600',
    )
    assert str(jid) == "alice@sip.example.com/urn:uuid:f81d4fae"


def test_sips_refusal_headers() -> None:
    with pytest.raises(MappingRefused) as exc:
        DOMAINS.sip_target_to_jid("sips:bob@example.com")
    assert exc.value.headers == (("Warning", '380 sipxmpp "SIPS Not Allowed"'),)
