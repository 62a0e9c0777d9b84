"""msrp:/msrps: URIs: parsing, serialising and the RFC 4975 §6.1 comparison rules."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipxmpp.gateway.msrp import LocalMsrpError, MsrpUri, RemoteMsrpError, parse_path, parse_uri

# URIs that appear in RFC 4975 (§4, §6, §8, §11, §14.4), checked against the RFC text.
RFC_URIS = [
    (
        "msrp://atlanta.example.com:7654/jshA7weztas;tcp",
        MsrpUri("atlanta.example.com", 7654, "jshA7weztas"),
    ),
    (
        "msrp://biloxi.example.com:12763/kjhd37s2s20w2a;tcp",
        MsrpUri("biloxi.example.com", 12763, "kjhd37s2s20w2a"),
    ),
    ("msrp://host.example.com:8493/asfd34;tcp", MsrpUri("host.example.com", 8493, "asfd34")),
    (
        "msrp://alice.example.com:7394/2s93i9ek2a;tcp",
        MsrpUri("alice.example.com", 7394, "2s93i9ek2a"),
    ),
    (
        "msrps://atlanta.example.com:7654/jshA7weso3ks;tcp",
        MsrpUri("atlanta.example.com", 7654, "jshA7weso3ks", secure=True),
    ),
    ("msrp://example.com:7777/iau39soe2843z;tcp", MsrpUri("example.com", 7777, "iau39soe2843z")),
    (
        "msrp://bob.example.com:8493/si438dsaodes;tcp",
        MsrpUri("bob.example.com", 8493, "si438dsaodes"),
    ),
    (
        "msrp://alicepc.example.com:7777/iau39soe2843z;tcp",
        MsrpUri("alicepc.example.com", 7777, "iau39soe2843z"),
    ),
    # Less common but valid shapes: userinfo, IPv6 literal, no port, no session-id, params.
    (
        "msrp://bob@bob.example.com:8888/9di4eae923wzd;tcp",
        MsrpUri("bob.example.com", 8888, "9di4eae923wzd", userinfo="bob"),
    ),
    ("msrp://[2001:db8::1]:2855/s1d;tcp", MsrpUri("[2001:db8::1]", 2855, "s1d")),
    ("msrp://relay.example.net;tcp", MsrpUri("relay.example.net")),
    (
        "msrps://10.0.0.1:9000/a/b+c=;tcp;foo=bar;flag",
        MsrpUri("10.0.0.1", 9000, "a/b+c=", secure=True, params=(("foo", "bar"), ("flag", None))),
    ),
]


@pytest.mark.parametrize(("text", "uri"), RFC_URIS)
def test_parse_and_serialize(text: str, uri: MsrpUri) -> None:
    assert parse_uri(text) == uri
    assert str(uri) == text


@pytest.mark.parametrize(
    "text",
    [
        "sip:alice@example.com",  # wrong scheme
        "msrp://host.example.com:7777/abc",  # transport is mandatory (§9)
        "msrp://:7777/abc;tcp",  # empty host
        "msrp://host.example.com:99999/abc;tcp",  # port out of range
        "msrp://host.example.com:77a7/abc;tcp",  # port not numeric
        "msrp://host.example.com:7777/;tcp",  # empty session-id
        "msrp://host.example.com:7777/a b;tcp",  # space in session-id
        "msrp://host.example.com:7777/abc;",  # empty transport
        "msrp://host.example.com:7777/abc;t-c-p",  # transport is 1*ALPHANUM
        "msrp://host.example.com:7777/abc;tcp;=x",  # empty parameter name
        "msrp//host.example.com:7777/abc;tcp",
        "msrp://host<>.example.com:7777/abc;tcp",
        "msrp://" + "h" * 2000 + ":1/a;tcp",  # over MAX_URI_LENGTH
    ],
)
def test_malformed_uris_raise_400(text: str) -> None:
    with pytest.raises(RemoteMsrpError) as info:
        parse_uri(text)
    assert info.value.status == 400


def test_constructor_rejects_bad_parts() -> None:
    with pytest.raises(LocalMsrpError):
        MsrpUri("host.example.com", 1, "bad id")
    with pytest.raises(LocalMsrpError):
        MsrpUri("", 1, "x")


# RFC 4975 §6.1 comparison, whose five numbered rules are: 1 scheme (case-insensitive),
# 2 authority (userinfo ignored, percent-decoding, IP/port equivalence, else case-insensitive),
# 3 explicit port, 4 session-id (case-sensitive, present vs absent), 5 transport.
# (a, b, equivalent?)
COMPARISONS = [
    ("msrp://a.example.com:1/s1;tcp", "MSRP://A.EXAMPLE.COM:1/s1;TCP", True),  # rules 1, 2, 5
    ("msrp://a.example.com:1/s1;tcp", "msrps://a.example.com:1/s1;tcp", False),  # rule 1
    ("msrp://alice@a.example.com:1/s1;tcp", "msrp://bob@a.example.com:1/s1;tcp", True),  # rule 2
    ("msrp://%61.example.com:1/s1;tcp", "msrp://a.example.com:1/s1;tcp", True),  # rule 2
    ("msrp://a.example.com:1/s1;tcp", "msrp://a.example.com:2/s1;tcp", False),  # rule 3
    ("msrp://a.example.com/s1;tcp", "msrp://a.example.com:2855/s1;tcp", False),  # rule 3
    ("msrp://a.example.com:1/s1;tcp", "msrp://a.example.com:1/S1;tcp", False),  # rule 4
    ("msrp://a.example.com:1;tcp", "msrp://a.example.com:1/s1;tcp", False),  # rule 4
    ("msrp://a.example.com:1/s1;tcp", "msrp://a.example.com:1/s1;sctp", False),  # rule 5
    # §6.1 has no rule for other URI parameters, so they take no part ([ours]).
    ("msrp://a.example.com:1/s1;tcp;x=1", "msrp://a.example.com:1/s1;tcp;y=2", True),
    ("msrp://[2001:DB8:0::1]:1/s;tcp", "msrp://[2001:db8::1]:1/s;tcp", True),  # rule 2, IP
]


@pytest.mark.parametrize(("a", "b", "same"), COMPARISONS)
def test_comparison_rules(a: str, b: str, same: bool) -> None:
    ua, ub = parse_uri(a), parse_uri(b)
    assert ua.equivalent(ub) is same
    assert ub.equivalent(ua) is same


def test_parse_path() -> None:
    path = parse_path("msrp://relay.example.net:2855/r1;tcp msrp://a.example.com:1/s1;tcp")
    assert [u.session_id for u in path] == ["r1", "s1"]
    for bad in ("", " msrp://a.example.com:1/s;tcp", "msrp://a:1/s;tcp  msrp://b:1/s;tcp"):
        with pytest.raises(RemoteMsrpError):
            parse_path(bad)
    with pytest.raises(RemoteMsrpError):
        parse_path(" ".join(["msrp://a.example.com:1/s;tcp"] * 17))


hosts = st.from_regex(r"[a-z][a-z0-9\-]{0,10}(\.[a-z][a-z0-9]{0,8}){0,3}", fullmatch=True)
uris = st.builds(
    MsrpUri,
    host=hosts,
    port=st.none() | st.integers(0, 65535),
    session_id=st.none() | st.from_regex(r"[A-Za-z0-9\-._~+=/]{1,20}", fullmatch=True),
    transport=st.sampled_from(["tcp", "TCP", "ws"]),
    secure=st.booleans(),
    userinfo=st.none() | st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True),
    params=st.lists(
        st.tuples(
            st.from_regex(r"[a-z][a-z0-9]{0,5}", fullmatch=True),
            st.none() | st.from_regex(r"[a-z0-9]{1,5}", fullmatch=True),
        ),
        max_size=3,
    ).map(tuple),
)


@settings(max_examples=200, deadline=None)
@given(uris)
def test_uri_round_trip(uri: MsrpUri) -> None:
    assert parse_uri(str(uri)) == uri
    assert parse_uri(str(uri)).equivalent(uri)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_any_text_parses_or_raises_remote_error(text: str) -> None:
    try:
        parse_uri(text)
    except RemoteMsrpError:
        pass
