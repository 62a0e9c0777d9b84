"""Tables for the header-value grammar (RFC 3261 §19, §20, §25; RFC 3581; RFC 3966)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipxmpp.gateway.sip.errors import LocalSipError, RemoteSipError
from sipxmpp.gateway.sip.grammar import (
    AbsoluteUri,
    CSeq,
    NameAddr,
    SipUri,
    TelUri,
    Via,
    is_token,
    is_valid_call_id,
    parse_any_uri,
    parse_cseq,
    parse_delta_seconds,
    parse_max_forwards,
    parse_name_addr,
    parse_name_addr_list,
    parse_params,
    parse_sip_date,
    parse_sip_uri,
    parse_uri,
    parse_via,
    parse_vias,
    quote_string,
    split_list,
    unquote_string,
    uri_equal,
)

# --- URIs ------------------------------------------------------------------------------

SIP_URI_CASES: list[tuple[str, SipUri]] = [
    ("sip:alice@atlanta.com", SipUri("atlanta.com", "alice")),
    (
        "sip:alice:secretword@atlanta.com;transport=tcp",
        SipUri("atlanta.com", "alice", "secretword", params=(("transport", "tcp"),)),
    ),
    (
        "sips:alice@atlanta.com?subject=project%20x&priority=urgent",
        SipUri(
            "atlanta.com",
            "alice",
            headers=(("subject", "project%20x"), ("priority", "urgent")),
            scheme="sips",
        ),
    ),
    (
        "sip:+1-212-555-1212:1234@gateway.com;user=phone",
        SipUri("gateway.com", "+1-212-555-1212", "1234", params=(("user", "phone"),)),
    ),
    ("sips:1212@gateway.com", SipUri("gateway.com", "1212", scheme="sips")),
    ("sip:alice@192.0.2.4", SipUri("192.0.2.4", "alice")),
    (
        "sip:atlanta.com;method=REGISTER?to=alice%40atlanta.com",
        SipUri(
            "atlanta.com",
            params=(("method", "REGISTER"),),
            headers=(("to", "alice%40atlanta.com"),),
        ),
    ),
    ("sip:alice;day=tuesday@atlanta.com", SipUri("atlanta.com", "alice;day=tuesday")),
    ("sip:[2001:db8::10]:5070", SipUri("[2001:db8::10]", port=5070)),
    (
        "sip:host.example.com.:5060;lr",
        SipUri("host.example.com.", port=5060, params=(("lr", None),)),
    ),
    ("SIP:Bob@Biloxi.COM", SipUri("Biloxi.COM", "Bob")),
    # RFC 4475 §3.1.1.3 and §3.1.1.4: escapes, including escaped NULs.
    (
        "sip:sips%3Auser%40example.com@example.net",
        SipUri("example.net", "sips%3Auser%40example.com"),
    ),
    ("sip:%00%00@host5.example.com", SipUri("host5.example.com", "%00%00")),
    (
        "sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31",
        SipUri(
            "host5.example.net",
            "cal%6Cer",
            params=(("%6C%72", None), ("n%61me", "v%61lue%25%34%31")),
        ),
    ),
    # RFC 4475 §3.1.1.2: every legal user and password character.
    (
        "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
        SipUri(
            "example.com",
            "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*",
            "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)",
        ),
    ),
]


@pytest.mark.parametrize(("text", "expected"), SIP_URI_CASES)
def test_sip_uri_parses(text: str, expected: SipUri) -> None:
    uri = parse_uri(text)
    assert uri == expected
    assert parse_uri(str(uri)) == uri


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("sip:", 400),
        ("sip:@host", 400),  # user = 1*(...)
        ("sip:alice@", 400),
        ("sip:alice@host:port", 400),
        ("sip:alice@host:65536", 400),
        ("sip:alice@-host.com", 400),
        ("sip:alice@host-.com", 400),
        ("sip:alice@999.1.1.1", 400),
        ("sip:alice@192.0.2", 400),  # toplabel must start with a letter
        ("sip:alice@[2001:db8::zz]", 400),
        ("sip:alice@[::1", 400),
        ("sip:alice@host;=x", 400),
        ("sip:alice@host;a=", 400),
        ("sip:alice@host?x", 400),  # header = hname "=" hvalue
        ("sip:al ice@host", 400),
        ("sip:alice@host name", 400),
        ("<sip:user@example.com>", 400),  # RFC 4475 §3.1.2.7
        (" sip:alice@host", 400),
        ("nocolon", 400),
        ("1sip:host", 400),
        ("http://www.example.com", 416),
        ("nobodyKnowsThisScheme:totallyopaquecontent", 416),  # RFC 4475 §3.3.2
        ("soap.beep://192.0.2.103:3002", 416),  # RFC 4475 §3.3.3
        ("im:alice@example.com", 416),
    ],
)
def test_bad_uris(text: str, status: int) -> None:
    with pytest.raises(RemoteSipError) as info:
        parse_uri(text)
    assert info.value.status_hint == status


def test_absolute_uris_are_kept_opaque() -> None:
    assert parse_any_uri("isbn:2983792873") == AbsoluteUri("isbn", "2983792873")
    assert parse_any_uri("HTTP://www.example.com") == AbsoluteUri("http", "//www.example.com")
    assert str(parse_any_uri("im:alice@example.com")) == "im:alice@example.com"
    with pytest.raises(RemoteSipError):
        parse_any_uri("im:has space")


def test_parse_sip_uri_refuses_tel() -> None:
    with pytest.raises(RemoteSipError) as info:
        parse_sip_uri("tel:+15551234")
    assert info.value.status_hint == 416


def test_sip_uri_helpers() -> None:
    uri = parse_sip_uri("sips:F%C3%BC@Example.COM:5061;Transport=TLS;lr;maddr=192.0.2.1?h=v")
    assert uri.secure
    assert uri.transport == "tls"
    assert uri.lr
    assert uri.maddr == "192.0.2.1"
    assert uri.decoded_user() == "Fü"
    assert uri.param("TRANSPORT") == "TLS"
    assert uri.has_param("LR") and uri.param("lr") is None
    assert uri.address_of_record == "sips:F%C3%BC@Example.COM"
    assert (
        str(uri.without_headers())
        == "sips:F%C3%BC@Example.COM:5061;Transport=TLS;lr;maddr=192.0.2.1"
    )
    assert str(uri.with_param("gr", "x1")).endswith(";maddr=192.0.2.1;gr=x1?h=v")
    assert str(uri.with_param("transport", "tcp")) == (
        "sips:F%C3%BC@Example.COM:5061;transport=tcp;lr;maddr=192.0.2.1?h=v"
    )
    assert not uri.without_param("lr").lr
    with pytest.raises(LocalSipError):
        uri.with_param("bad name")
    with pytest.raises(RemoteSipError):
        parse_sip_uri("sip:%FF@host").decoded_user()
    assert parse_sip_uri("sip:host").decoded_user() is None


# RFC 3261 §19.1.4: the pairs it lists as equivalent and as not equivalent.
EQUAL_URIS = [
    ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
    ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
    ("sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
     "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"),
    ("sip:alice@atlanta.com?subject=project%20x&priority=urgent",
     "sip:alice@atlanta.com?priority=urgent&subject=project%20x"),
    ("sip:a@[2001:db8:0::1]", "sip:a@[2001:DB8::1]"),
    ("tel:+1-201-555-0123", "tel:+1.201.555.0123"),
    ("tel:7042;phone-context=example.com", "tel:7042;PHONE-CONTEXT=Example.COM"),
    ("im:a@b", "IM:a@b"),
]  # fmt: skip
UNEQUAL_URIS = [
    ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
    ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
    ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
    ("sip:a%3Bb@host", "sip:a;b@host"),  # ';' is reserved: its escape is not equivalent
    ("sip:alice@atlanta.com", "sips:alice@atlanta.com"),
    ("sip:alice:pw@atlanta.com", "sip:alice@atlanta.com"),
    ("tel:+1-201-555-0123", "tel:+1-201-555-0124"),
    ("tel:+12015550123", "sip:+12015550123@host"),
    ("tel:7042;phone-context=example.com", "tel:7042;phone-context=example.org"),
]  # fmt: skip


@pytest.mark.parametrize(("a", "b"), EQUAL_URIS)
def test_uri_equal(a: str, b: str) -> None:
    assert uri_equal(parse_any_uri(a), parse_any_uri(b))
    assert uri_equal(parse_any_uri(b), parse_any_uri(a))


@pytest.mark.parametrize(("a", "b"), UNEQUAL_URIS)
def test_uri_not_equal(a: str, b: str) -> None:
    assert not uri_equal(parse_any_uri(a), parse_any_uri(b))
    assert not uri_equal(parse_any_uri(b), parse_any_uri(a))


TEL_CASES = [
    ("tel:+1-201-555-0123", TelUri("+1-201-555-0123")),
    ("tel:7042;phone-context=example.com", TelUri("7042", (("phone-context", "example.com"),))),
    ("tel:863-1234;phone-context=+1-914-555", TelUri("863-1234", (("phone-context", "+1-914-555"),))),
    ("tel:+1-201-555-0123;ext=1234;isub=abc", TelUri("+1-201-555-0123", (("ext", "1234"), ("isub", "abc")))),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), TEL_CASES)
def test_tel_uris(text: str, expected: TelUri) -> None:
    uri = parse_uri(text)
    assert uri == expected
    assert parse_uri(str(uri)) == uri


def test_tel_uri_helpers() -> None:
    uri = parse_uri("tel:+1-(201)-555.0123;ext=9")
    assert isinstance(uri, TelUri)
    assert uri.is_global and uri.digits == "+12015550123" and uri.param("EXT") == "9"
    assert uri.scheme == "tel" and uri.phone_context is None


@pytest.mark.parametrize(
    "text", ["tel:", "tel:+", "tel:+1-2x", "tel:7042", "tel:+1;=a", "tel:+1;a b=c", "tel:+1;a=\x00"]
)
def test_bad_tel_uris(text: str) -> None:
    with pytest.raises(RemoteSipError) as info:
        parse_uri(text)
    assert info.value.status_hint == 400


# --- name-addr -------------------------------------------------------------------------

NAME_ADDR_CASES: list[tuple[str, NameAddr]] = [
    ("<sip:alice@atlanta.com>", NameAddr(SipUri("atlanta.com", "alice"))),
    ('"Bob" <sips:bob@biloxi.com> ;tag=a48s',
     NameAddr(SipUri("biloxi.com", "bob", scheme="sips"), "Bob", (("tag", "a48s"),))),
    ("Anonymous <sip:c8oqz84zk7z@privacy.org>;tag=hyh8",
     NameAddr(SipUri("privacy.org", "c8oqz84zk7z"), "Anonymous", (("tag", "hyh8"),))),
    # addr-spec form: the parameters belong to the header (RFC 3261 §20.10, RFC 4475 §3.3.12)
    ("sip:+12125551212@server.phone2net.com;tag=887s",
     NameAddr(SipUri("server.phone2net.com", "+12125551212"), None, (("tag", "887s"),))),
    ("sip:+19725552222@gw1.example.net;unknownparam",
     NameAddr(SipUri("gw1.example.net", "+19725552222"), None, (("unknownparam", None),))),
    ("<sip:+19725552222@gw1.example.net;unknownparam>",
     NameAddr(SipUri("gw1.example.net", "+19725552222", params=(("unknownparam", None),)))),
    # RFC 4475 §3.1.1.1: escapes in the quoted display name, LWS around ; and =
    ('"J Rosenberg \\\\\\""       <sip:jdrosen@example.com> ; tag = 98asjd8',
     NameAddr(SipUri("example.com", "jdrosen"), 'J Rosenberg \\"', (("tag", "98asjd8"),))),
    ('"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam = newvalue ; secondparam ; q = 0.33',
     NameAddr(SipUri("example.com", "jdrosen"), 'Quoted string ""',
              (("newparam", "newvalue"), ("secondparam", None), ("q", "0.33")))),
    ("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n",
     NameAddr(SipUri("chair-dnrc.example.com", "vivekg"), None, (("tag", "1918181833n"),))),
    # RFC 4475 §3.1.1.6: no LWS between the display name and <
    ("caller<sip:caller@example.com>;tag=323",
     NameAddr(SipUri("example.com", "caller"), "caller", (("tag", "323"),))),
    # RFC 4475 §3.1.1.2: quoted-pairs of control characters, token display names,
    # a UTF-8 quoted parameter value
    ('"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f" <sip:u@example.com>',
     NameAddr(SipUri("example.com", "u"), "BEL:\x07 NUL:\x00 DEL:\x7f")),
    ("token1~` token2'+_ token3*%!.- <sip:mundane@example.com> ;fromParam''~+*_!.-%=\"работающий\";tag=_token~1'+`*%!-.",
     NameAddr(SipUri("example.com", "mundane"), "token1~` token2'+_ token3*%!.-",
              (("fromParam''~+*_!.-%", '"работающий"'), ("tag", "_token~1'+`*%!-.")))),
    ('"" <sip:x@y>', NameAddr(SipUri("y", "x"), "")),
    ("isbn:2983792873", NameAddr(AbsoluteUri("isbn", "2983792873"))),
    ("<http://www.example.com>;tag=3234233", NameAddr(AbsoluteUri("http", "//www.example.com"), None, (("tag", "3234233"),))),
    ("<sip:user@example.com?Route=%3Csip:sip.example.com%3E>",
     NameAddr(SipUri("example.com", "user", headers=(("Route", "%3Csip:sip.example.com%3E"),)))),
    ("<tel:+1-201-555-0123>;received=[2001:db8::1]",
     NameAddr(TelUri("+1-201-555-0123"), None, (("received", "[2001:db8::1]"),))),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), NAME_ADDR_CASES)
def test_name_addr(text: str, expected: NameAddr) -> None:
    value = parse_name_addr(text)
    assert value == expected
    assert parse_name_addr(str(value)) == value


@pytest.mark.parametrize(
    "text",
    [
        '"Mr. J. User <sip:j.user@example.com>',  # RFC 4475 §3.1.2.6
        '"Watson, Thomas" < sip:t.watson@example.org >',  # RFC 4475 §3.1.2.14
        "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",  # RFC 4475 §3.1.2.15
        "sip:user@example.com?Route=%3Csip:sip.example.com%3E",  # RFC 4475 §3.1.2.13
        '"Joe" sip:joe@example.org',
        "<sip:joe@example.org",
        "<sip:joe@example.org>;;",
        "<sip:joe@example.org> junk",
        "<sip:joe@example.org>;tag=",
        '<sip:joe@example.org>;tag="unterminated',
        "",
        "<>",
        '"bad \x01 control" <sip:a@b>',
    ],
)
def test_bad_name_addr(text: str) -> None:
    with pytest.raises(RemoteSipError) as info:
        parse_name_addr(text)
    assert info.value.status_hint == 400


def test_name_addr_helpers() -> None:
    value = parse_name_addr("sip:a@b;Tag=x;expires=60")
    assert value.tag == "x" and value.param("EXPIRES") == "60" and value.has_param("tag")
    assert str(value.with_tag("y")) == "<sip:a@b>;tag=y;expires=60"
    assert str(NameAddr(SipUri("b", "a"), 'say "hi" \\o/')) == '"say \\"hi\\" \\\\o/" <sip:a@b>'
    with pytest.raises(LocalSipError):
        value.with_param("q", "has space")
    with pytest.raises(LocalSipError):
        str(NameAddr(SipUri("b"), "line\r\nbreak"))
    contacts = parse_name_addr_list('<sip:a@b>;q=0.5, "X, Y" <sip:c@d>')
    assert [str(c) for c in contacts] == ["<sip:a@b>;q=0.5", '"X, Y" <sip:c@d>']


# --- Via -------------------------------------------------------------------------------

VIA_CASES: list[tuple[str, Via]] = [
    ("SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds",
     Via("UDP", "pc33.atlanta.com", None, (("branch", "z9hG4bK776asdhds"),))),
    ("SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74b76;received=192.0.2.101",
     Via("TCP", "client.atlanta.example.com", 5060, (("branch", "z9hG4bK74b76"), ("received", "192.0.2.101")))),
    # RFC 4475 §3.1.1.1 after unfolding: LWS around "/", ";" and "="
    ("SIP  /   2.0 /UDP 192.0.2.2;branch=390skdjuw", Via("UDP", "192.0.2.2", None, (("branch", "390skdjuw"),))),
    ("SIP  / 2.0  / TCP     spindle.example.com   ; branch  =   z9hG4bK9ikj8",
     Via("TCP", "spindle.example.com", None, (("branch", "z9hG4bK9ikj8"),))),
    ("SIP/2.0/udp [2001:db8::9:1]:5070;rport;branch=z9hG4bKx",
     Via("UDP", "[2001:db8::9:1]", 5070, (("rport", None), ("branch", "z9hG4bKx")))),
    ("SIP/2.0/UDP h;received=2001:db8::9:255;rport=5070",
     Via("UDP", "h", None, (("received", "2001:db8::9:255"), ("rport", "5070")))),
    ("SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en", Via("UNKNOWN", "t4.example.com", None, (("branch", "z9hG4bKasd0f3en"),))),
    ("SIP/2.0/TCP host.example.com;branch=z9hG4bK-.!%66*_+`'~", Via("TCP", "host.example.com", None, (("branch", "z9hG4bK-.!%66*_+`'~"),))),
    ("SIP/7.0/UDP c.example.com;ttl=16;maddr=224.2.0.1", Via("UDP", "c.example.com", None, (("ttl", "16"), ("maddr", "224.2.0.1")), "SIP/7.0")),
    ("SIP/2.0/UDP iftgw.example.com", Via("UDP", "iftgw.example.com")),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), VIA_CASES)
def test_via(text: str, expected: Via) -> None:
    via = parse_via(text)
    assert via == expected
    assert parse_via(str(via)) == via


@pytest.mark.parametrize(
    "text",
    [
        "SIP/2.0/UDP 192.0.2.15;;",  # RFC 4475 §3.1.2.1
        "SIP/2.0/UDP",
        "SIP/2.0 host",
        "SIP/2.0/UDP host:99999",
        "SIP/2.0/UDP host;branch",
        "SIP/2.0/UDP host;branch=a b",
        "SIP/2.0/UDP host;received=example.com",
        "SIP/2.0/UDP host;rport=x",
        "SIP/2.0/UDP host;ttl=1234",
        "SIP/2.0/UDP host_name",
        "SIP/2.0/UDP 1.2.3.400",
    ],
)
def test_bad_via(text: str) -> None:
    with pytest.raises(RemoteSipError):
        parse_via(text)


def test_via_lists() -> None:
    vias = parse_vias(
        "SIP  / 2.0  / TCP     spindle.example.com   ;   branch  =   z9hG4bK9ikj8  , "
        "SIP  /    2.0   / UDP  192.168.255.111   ; branch= z9hG4bK30239"
    )
    assert [v.branch for v in vias] == ["z9hG4bK9ikj8", "z9hG4bK30239"]
    with pytest.raises(RemoteSipError):
        parse_vias("SIP/2.0/UDP 192.0.2.15;;,;,,")  # RFC 4475 §3.1.2.1


def test_via_helpers() -> None:
    via = parse_via("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;rport=1234;maddr=x.org")
    assert via.branch == "z9hG4bKabc" and via.is_rfc3261_branch
    assert via.rport == 1234 and via.has_rport and via.maddr == "x.org"
    assert via.sent_by == ("192.0.2.1", 5060)
    assert via.received is None and via.param("BRANCH") == "z9hG4bKabc"
    assert not parse_via("SIP/2.0/UDP h;branch=390skdjuw").is_rfc3261_branch
    assert str(via.with_param("alias")) == (
        "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;rport=1234;maddr=x.org;alias"
    )
    with pytest.raises(LocalSipError):
        via.with_param("branch", "a b")


# (Via, source host, source port, expected Via after receipt)
WITH_RECEIVED_CASES = [
    # §18.2.1: sent-by is the source address: nothing to add
    ("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1", "192.0.2.1", 5060,
     "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1"),
    # §18.2.1: a domain name always gets received
    ("SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK1", "192.0.2.1", 5060,
     "SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK1;received=192.0.2.1"),
    # §18.2.1: another address (NAT)
    ("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1", "192.0.2.1", 5060,
     "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;received=192.0.2.1"),
    # RFC 3581 §4: rport without value gets the source port and received always
    ("SIP/2.0/UDP 192.0.2.1:5060;rport;branch=z9hG4bK1", "192.0.2.1", 5060,
     "SIP/2.0/UDP 192.0.2.1:5060;rport=5060;branch=z9hG4bK1;received=192.0.2.1"),
    ("SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1;rport", "192.0.2.1", 40000,
     "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1;rport=40000;received=192.0.2.1"),
    # an existing received is replaced in place
    ("SIP/2.0/UDP h.org;received=1.1.1.1;branch=z9hG4bK1", "192.0.2.1", 5060,
     "SIP/2.0/UDP h.org;received=192.0.2.1;branch=z9hG4bK1"),
    # IPv6: compared as addresses, written without brackets (RFC 5118 §4.5)
    ("SIP/2.0/UDP [2001:db8::1];branch=z9hG4bK1", "2001:DB8:0::1", 5060,
     "SIP/2.0/UDP [2001:db8::1];branch=z9hG4bK1"),
    ("SIP/2.0/UDP [2001:db8::1];branch=z9hG4bK1", "[2001:db8::2]", 5060,
     "SIP/2.0/UDP [2001:db8::1];branch=z9hG4bK1;received=2001:db8::2"),
]  # fmt: skip


@pytest.mark.parametrize(("via", "host", "port", "expected"), WITH_RECEIVED_CASES)
def test_with_received(via: str, host: str, port: int, expected: str) -> None:
    result = parse_via(via).with_received(host, port)
    assert str(result) == expected
    assert parse_via(str(result)) == result


# --- CSeq and scalars ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4711 INVITE", CSeq(4711, "INVITE")),
        ("0009   INVITE", CSeq(9, "INVITE")),  # RFC 4475 §3.1.1.1 (after unfolding)
        ("4294967295 ACK", CSeq(2**32 - 1, "ACK")),
        ("29344 RE%47IST%45R", CSeq(29344, "RE%47IST%45R")),
    ],
)
def test_cseq(text: str, expected: CSeq) -> None:
    assert parse_cseq(text) == expected
    assert parse_cseq(str(expected)) == expected


@pytest.mark.parametrize(
    "text", ["", "INVITE", "1", "-1 INVITE", "4294967296 INVITE", "1 IN VITE", "1" * 5000 + " A"]
)
def test_bad_cseq(text: str) -> None:
    with pytest.raises(RemoteSipError) as info:
        parse_cseq(text)
    assert info.value.status_hint == 400


def test_scalars() -> None:
    assert parse_max_forwards(" 0068 ") == 68
    assert parse_delta_seconds("3600") == 3600
    for bad in ("256", "-1", "x", "", "9" * 5000):
        with pytest.raises(RemoteSipError):
            parse_max_forwards(bad)
    with pytest.raises(RemoteSipError):
        parse_delta_seconds("1" + "0" * 100)  # RFC 4475 §3.1.2.4


def test_sip_date() -> None:
    assert parse_sip_date("Sat, 15 Oct 2005 04:44:56 GMT") == datetime(
        2005, 10, 15, 4, 44, 56, tzinfo=UTC
    )
    for bad in (
        "Fri, 01 Jan 2010 16:00:00 EST",  # RFC 4475 §3.1.2.12
        "Fri, 01 Jan 2010 16:00:00 UT",
        "Mon, 31 Feb 2010 16:00:00 GMT",
        "01 Jan 2010 16:00:00 GMT",
    ):
        with pytest.raises(RemoteSipError):
            parse_sip_date(bad)


def test_tokens_and_call_ids() -> None:
    assert is_token("!interesting-Method0123456789_*+`.%indeed'~")
    assert not is_token("a b") and not is_token("") and not is_token("a,b")
    assert is_valid_call_id("intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{")
    assert not is_valid_call_id("a@b@c") and not is_valid_call_id("a b")


def test_quoted_strings() -> None:
    assert quote_string('a"b\\c') == '"a\\"b\\\\c"'
    assert quote_string("a\x00\x07\tb\x7f") == '"a\\\x00\\\x07\tb\\\x7f"'
    assert unquote_string('"a\\"b\\\\c"') == 'a"b\\c'
    with pytest.raises(RemoteSipError):
        unquote_string('"open')


def test_params_and_lists() -> None:
    assert parse_params(' ; a = 1 ;b; c="x;y"') == (("a", "1"), ("b", None), ("c", '"x;y"'))
    assert parse_params("") == ()
    assert split_list('a, "b,c" <sip:x,y>, d') == ["a", '"b,c" <sip:x,y>', "d"]
    for bad in ("a,,b", "a,", ",a", '"a', "<a", "  "):
        with pytest.raises(RemoteSipError):
            split_list(bad)
    with pytest.raises(RemoteSipError):
        parse_params(";a=b c")


# --- Properties: str() is a faithful serializer ----------------------------------------

_token = st.text(alphabet="abcXYZ019-.!%*_+`'~", min_size=1, max_size=8)
_user = st.text(alphabet="abcXYZ019-_.!~*'()&=+$,;?/", min_size=1, max_size=10)
_host = st.sampled_from(["example.com", "a-b.example.org.", "192.0.2.7", "[2001:db8::1]", "h"])
_pchar = st.text(alphabet="abc019[]/:&+$-_.!~*'()", min_size=1, max_size=8)
_hchar = st.text(alphabet="abc019[]/?:+$-_.!~*'()", min_size=1, max_size=8)
_params = st.lists(st.tuples(_pchar, st.none() | _pchar), max_size=3).map(tuple)
_sip_uris = st.builds(
    SipUri,
    host=_host,
    user=st.none() | _user,
    password=st.none(),
    port=st.none() | st.integers(0, 65535),
    params=_params,
    headers=st.lists(st.tuples(_hchar, _hchar), max_size=2).map(tuple),
    scheme=st.sampled_from(["sip", "sips"]),
)
_display = st.none() | st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=12
)
_gen_value = st.none() | _token | _token.map(lambda t: f'"{t} x"')
_name_addrs = st.builds(
    NameAddr,
    uri=_sip_uris,
    display_name=_display,
    params=st.lists(st.tuples(_token, _gen_value), max_size=3).map(tuple),
)
_vias = st.builds(
    Via,
    transport=st.sampled_from(["UDP", "TCP", "TLS", "SCTP", "WS"]),
    host=_host,
    port=st.none() | st.integers(0, 65535),
    params=st.lists(st.tuples(_token, st.none() | _token), max_size=3).map(tuple),
)


@settings(max_examples=250, deadline=None)
@given(_sip_uris)
def test_sip_uri_round_trip(uri: SipUri) -> None:
    assert parse_any_uri(str(uri)) == uri


@settings(max_examples=250, deadline=None)
@given(_name_addrs)
def test_name_addr_round_trip(value: NameAddr) -> None:
    assert parse_name_addr(str(value)) == value


@settings(max_examples=250, deadline=None)
@given(_vias)
def test_via_round_trip(via: Via) -> None:
    assert parse_via(str(via)) == via


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_grammar_only_raises_remote_errors(text: str) -> None:
    for fn in (parse_any_uri, parse_name_addr, parse_via, parse_cseq, parse_vias):
        try:
            fn(text)
        except RemoteSipError:
            pass
