"""SDP for MSRP message streams: codec round trips and offer/answer (RFC 8866, 3264, 4975,
6135, 4145)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipxmpp.gateway.sip.errors import LocalSipError, RemoteSipError
from sipxmpp.gateway.sip.sdp import (
    Attribute,
    ConnectionData,
    MediaDescription,
    Origin,
    SdpNegotiationError,
    SdpSyntaxError,
    SessionDescription,
    Setup,
    Timing,
    answer_offer,
    intersect_types,
    make_offer,
    msrp_params,
    parse_answer,
    parse_sdp,
    serialize_sdp,
)


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


# RFC 4975 §11.1 (Figure 12, steps 1 and 2), Alice's offer and Bob's answer, checked against
# the RFC text.
RFC_OFFER = crlf(
    "v=0\n"
    "o=alice 2890844557 2890844559 IN IP4 alicepc.example.com\n"
    "s= -\n"
    "c=IN IP4 alicepc.example.com\n"
    "t=0 0\n"
    "m=message 7777 TCP/MSRP *\n"
    "a=accept-types:text/plain\n"
    "a=path:msrp://alicepc.example.com:7777/iau39soe2843z;tcp\n"
)
RFC_ANSWER = crlf(
    "v=0\n"
    "o=bob 2890844612 2890844616 IN IP4 bob.example.com\n"
    "s= -\n"
    "c=IN IP4 bob.example.com\n"
    "t=0 0\n"
    "m=message 8888 TCP/MSRP *\n"
    "a=accept-types:text/plain\n"
    "a=path:msrp://bob.example.com:8888/9di4eae923wzd;tcp\n"
)

ALICE_PATH = "msrp://alicepc.example.com:7777/iau39soe2843z;tcp"
BOB_PATH = "msrp://bob.example.com:8888/9di4eae923wzd;tcp"
GW_PATH = "msrp://gw.example.test:2855/s3ss10n;tcp"
GW_TLS_PATH = "msrps://gw.example.test:2856/s3ss10n;tcp"


# RFC 4975 §6 Figure 7, and §8.7 Figures 9 (Endpoint A's offer) and 10 (B's answer).
RFC_FIGURE_7 = crlf(
    "v=0\n"
    "o=alice 2890844526 2890844527 IN IP4 alice.example.com\n"
    "s= -\n"
    "c=IN IP4 alice.example.com\n"
    "t=0 0\n"
    "m=message 7394 TCP/MSRP *\n"
    "a=accept-types:text/plain\n"
    "a=path:msrp://alice.example.com:7394/2s93i9ek2a;tcp\n"
)
RFC_FIGURE_9 = crlf(
    "v=0\n"
    "o=usera 2890844526 2890844527 IN IP4 alice.example.com\n"
    "s= -\n"
    "c=IN IP4 alice.example.com\n"
    "t=0 0\n"
    "m=message 7394 TCP/MSRP *\n"
    "a=accept-types:message/cpim text/plain text/html\n"
    "a=path:msrp://alice.example.com:7394/2s93i93idj;tcp\n"
)
RFC_FIGURE_10 = crlf(
    "v=0\n"
    "o=userb 2890844530 2890844532 IN IP4 bob.example.com\n"
    "s= -\n"
    "c=IN IP4 bob.example.com\n"
    "t=0 0\n"
    "m=message 8493 TCP/MSRP *\n"
    "a=accept-types:message/cpim text/plain\n"
    "a=path:msrp://bob.example.com:8493/si438dsaodes;tcp\n"
)
RFC_BODIES = [
    (RFC_OFFER, ("text/plain",)),
    (RFC_ANSWER, ("text/plain",)),
    (RFC_FIGURE_7, ("text/plain",)),
    (RFC_FIGURE_9, ("message/cpim", "text/plain", "text/html")),
    (RFC_FIGURE_10, ("message/cpim", "text/plain")),
]


@pytest.mark.parametrize(("wire", "types"), RFC_BODIES)
def test_rfc_4975_bodies_round_trip_byte_exact(wire: bytes, types: tuple[str, ...]) -> None:
    sdp = parse_sdp(wire)
    assert serialize_sdp(sdp) == wire
    assert sdp.session_name == " -"
    params = msrp_params(sdp.media[0])
    assert params.accept_types == types and not params.secure and params.setup is None


def test_rfc_4975_section_8_7_exchange() -> None:
    # Figure 10 answers Figure 9: no a=setup anywhere, so A (the offerer) connects (§5.4).
    negotiated = parse_answer(parse_sdp(RFC_FIGURE_9), parse_sdp(RFC_FIGURE_10))
    assert negotiated.active is True
    assert negotiated.accept_types == ("message/cpim", "text/plain")
    assert negotiated.remote.path == ("msrp://bob.example.com:8493/si438dsaodes;tcp",)


def test_rfc_4975_offer_parses_into_the_model() -> None:
    sdp = parse_sdp(RFC_OFFER)
    assert sdp.origin == Origin("alice", "2890844557", "2890844559", "alicepc.example.com")
    assert sdp.connection == ConnectionData("alicepc.example.com")
    assert sdp.media == (
        MediaDescription(
            "message",
            7777,
            "TCP/MSRP",
            ("*",),
            attributes=(Attribute("accept-types", "text/plain"), Attribute("path", ALICE_PATH)),
        ),
    )


def test_bare_lf_and_trailing_blank_lines_are_accepted() -> None:
    text = RFC_OFFER.decode().replace("\r\n", "\n") + "\n\n"
    assert parse_sdp(text) == parse_sdp(RFC_OFFER)


def test_full_grammar_round_trip() -> None:
    wire = crlf(
        "v=0\n"
        "o=- 1 2 IN IP6 2001:db8::1\n"
        "s=chat\n"
        "i=session info\n"
        "u=http://example.test/\n"
        "e=ops@example.test\n"
        "p=+1 555 0100\n"
        "c=IN IP6 2001:db8::1\n"
        "b=AS:64\n"
        "t=0 0\n"
        "r=604800 3600 0 90000\n"
        "z=2882844526 -1h\n"
        "k=prompt\n"
        "a=tool:sipxmpp\n"
        "m=audio 49170/2 RTP/AVP 0 8\n"
        "i=voice\n"
        "c=IN IP4 192.0.2.1\n"
        "b=CT:128\n"
        "k=prompt\n"
        "a=rtpmap:0 PCMU/8000\n"
        "a=sendrecv\n"
    )
    sdp = parse_sdp(wire)
    assert serialize_sdp(sdp) == wire
    assert sdp.times == (Timing(0, 0, ("604800 3600 0 90000",)),)
    assert sdp.media[0].port_count == 2 and sdp.media[0].formats == ("0", "8")


# -- make_offer ------------------------------------------------------------------------------


def test_make_offer_for_a_chat() -> None:
    # RFC 7573 §4 / conformance 47 and 52: m=message TCP/MSRP, accept-types, path, max-size.
    offer = make_offer(
        path=[GW_PATH],
        accept_types=["message/cpim", "text/plain"],
        accept_wrapped_types=["text/plain"],
        max_size=131072,
        session_id=1234,
        session_version=1,
        username="gw",
    )
    assert serialize_sdp(offer) == crlf(
        "v=0\n"
        "o=gw 1234 1 IN IP4 gw.example.test\n"
        "s=-\n"
        "c=IN IP4 gw.example.test\n"
        "t=0 0\n"
        "m=message 2855 TCP/MSRP *\n"
        "a=accept-types:message/cpim text/plain\n"
        "a=accept-wrapped-types:text/plain\n"
        "a=max-size:131072\n"
        f"a=path:{GW_PATH}\n"
        "a=setup:actpass\n"
    )


def test_make_offer_tls_and_ipv6() -> None:
    offer = make_offer(
        path=["msrps://[2001:db8::5]:2856/abc;tcp"],
        accept_types=["text/plain"],
        secure=True,
        session_id=1,
    )
    wire = serialize_sdp(offer).decode()
    assert "c=IN IP6 2001:db8::5\r\n" in wire and "m=message 2856 TCP/TLS/MSRP *\r\n" in wire
    assert "a=setup:actpass\r\n" in wire


def test_make_offer_active_writes_the_discard_port() -> None:
    # RFC 6135 §4.2.2 / RFC 4145 §4.1: an active endpoint's m-line port SHOULD be 9; a=path
    # keeps the real URI (it names the session, §5.4).
    offer = make_offer(
        path=[GW_PATH], accept_types=["text/plain"], setup=Setup.ACTIVE, session_id=1
    )
    media = offer.media[0]
    assert (media.port, media.attribute("setup"), media.attribute("path")) == (
        9,
        "active",
        GW_PATH,
    )


@pytest.mark.parametrize("setup", [Setup.PASSIVE, Setup.HOLDCONN])
def test_make_offer_refuses_passive_and_holdconn(setup: Setup) -> None:
    # RFC 6135 §4.2.2: "MUST NOT use the a=setup 'passive' attribute value in an SDP offer";
    # §4.2.1: "MUST NOT send the 'holdconn' attribute value".
    with pytest.raises(LocalSipError):
        make_offer(path=[GW_PATH], accept_types=["text/plain"], setup=setup, session_id=1)


def test_make_offer_refuses_a_path_without_port() -> None:
    # RFC 4975 §8.2: a=path URIs carry an explicit port; passing one without is our bug.
    with pytest.raises(LocalSipError):
        make_offer(
            path=["msrp://gw.example.test/abc;tcp"], accept_types=["text/plain"], session_id=1
        )


# -- answer_offer ------------------------------------------------------------------------------


def _answer(offer: bytes, **kw: object) -> tuple[SessionDescription, object]:
    args: dict[str, object] = {
        "path": [GW_PATH],
        "accept_types": ["text/plain"],
        "session_id": 99,
    }
    args.update(kw)
    return answer_offer(parse_sdp(offer), **args)  # type: ignore[arg-type]


def test_answer_the_rfc_offer() -> None:
    answer, negotiated = answer_offer(
        parse_sdp(RFC_OFFER),
        path=[GW_PATH],
        accept_types=["text/plain", "message/cpim"],
        accept_wrapped_types=["text/plain"],
        max_size=131072,
        session_id=99,
        username="gw",
    )
    assert serialize_sdp(answer) == crlf(
        "v=0\n"
        "o=gw 99 0 IN IP4 gw.example.test\n"
        "s=-\n"
        "c=IN IP4 gw.example.test\n"
        "t=0 0\n"
        "m=message 2855 TCP/MSRP *\n"
        "a=accept-types:text/plain\n"
        "a=max-size:131072\n"
        f"a=path:{GW_PATH}\n"
        "a=setup:passive\n"  # RFC 6135 §4.2.1: always explicit
    )
    assert negotiated.accept_types == ("text/plain",)
    assert negotiated.remote.path == (ALICE_PATH,)
    assert negotiated.active is False  # RFC 4975 §5.4: the offerer connects
    assert negotiated.media_index == 0


def test_other_streams_are_refused_with_port_zero() -> None:
    offer = crlf(
        "v=0\no=a 1 1 IN IP4 a.example\ns=-\nc=IN IP4 a.example\nt=0 0\n"
        "m=audio 49170 RTP/AVP 0\na=rtpmap:0 PCMU/8000\n"
        f"m=message 7777 TCP/MSRP *\na=accept-types:text/plain\na=path:{ALICE_PATH}\n"
        f"m=message 7778 TCP/MSRP *\na=accept-types:text/plain\na=path:{ALICE_PATH}\n"
    )
    answer, negotiated = _answer(offer)
    assert [(m.media, m.port) for m in answer.media] == [
        ("audio", 0),
        ("message", 2855),
        ("message", 0),
    ]
    assert answer.media[0].formats == ("0",) and answer.media[0].attributes == ()
    assert negotiated.media_index == 1  # type: ignore[attr-defined]


def _offer(*attributes: str, proto: str = "TCP/MSRP", path: str = ALICE_PATH) -> bytes:
    lines = "".join(f"a={a}\n" for a in attributes)
    return crlf(
        "v=0\no=a 1 1 IN IP4 a.example\ns=-\nc=IN IP4 a.example\nt=0 0\n"
        f"m=message 7777 {proto} *\n{lines}" + (f"a=path:{path}\n" if path else "")
    )


@pytest.mark.parametrize(
    ("ours", "theirs", "expected"),
    [
        (["text/plain"], ["text/plain"], ("text/plain",)),
        (["text/plain", "message/cpim"], ["*"], ("text/plain", "message/cpim")),
        (["text/*"], ["text/plain", "text/html", "image/png"], ("text/plain", "text/html")),
        (["*"], ["text/plain"], ("text/plain",)),
        (["text/*"], ["*"], ("text/*",)),
        (["TEXT/PLAIN"], ["text/plain"], ("TEXT/PLAIN",)),
        (["text/plain"], ["text/html"], ()),
    ],
)
def test_intersect_types(ours: list[str], theirs: list[str], expected: tuple[str, ...]) -> None:
    assert intersect_types(ours, theirs) == expected


def test_cpim_needs_shared_wrapped_types() -> None:
    offer = _offer("accept-types:message/cpim text/plain", "accept-wrapped-types:text/html")
    _, negotiated = _answer(
        offer, accept_types=["message/cpim", "text/plain"], accept_wrapped_types=["text/plain"]
    )
    assert negotiated.accept_types == ("text/plain",)  # type: ignore[attr-defined]
    offer = _offer("accept-types:message/cpim", "accept-wrapped-types:*")
    _, negotiated = _answer(
        offer, accept_types=["message/cpim"], accept_wrapped_types=["text/plain"]
    )
    assert negotiated.accept_types == ("message/cpim",)  # type: ignore[attr-defined]
    assert negotiated.accept_wrapped_types == ("text/plain",)  # type: ignore[attr-defined]


# Offers that get 488 Not Acceptable Here (RFC 3264 §6).
UNUSABLE = [
    (_offer("accept-types:text/html"), {}, "no common accept-types"),
    (_offer(path=""), {}, "no a=path"),
    (_offer("accept-types:text/plain", path="msrp://a.example/abc;tcp"), {}, "path without port"),
    (_offer("accept-types:text/plain", path="sip:alice@a.example"), {}, "path not msrp"),
    (_offer(), {}, "no accept-types"),
    (_offer("accept-types:text/plain", proto="TCP/TLS/MSRP"), {}, "TLS offer, TCP path"),
    (
        _offer("accept-types:text/plain", proto="TCP/TLS/MSRP", path=ALICE_PATH),
        {"path": [GW_TLS_PATH]},
        "msrp: URI under TCP/TLS/MSRP",
    ),
    (
        _offer(
            "accept-types:text/plain",
            proto="TCP/TLS/MSRP",
            path=ALICE_PATH.replace("msrp:", "msrps:"),
        ),
        {"path": [GW_TLS_PATH], "allow_tls": False},
        "TLS not allowed",
    ),
    (_offer("accept-types:text/plain", "setup:sideways"), {}, "unknown setup"),
    (_offer("accept-types:text/plain", "max-size:big"), {}, "bad max-size"),
    (_offer("accept-types:text plain"), {}, "malformed accept-types"),
    (
        crlf("v=0\no=a 1 1 IN IP4 a\ns=-\nc=IN IP4 a\nt=0 0\nm=audio 4000 RTP/AVP 0\n"),
        {},
        "no message stream",
    ),
]


@pytest.mark.parametrize(("offer", "kw", "why"), UNUSABLE, ids=[u[2] for u in UNUSABLE])
def test_unusable_offers_get_488(offer: bytes, kw: dict[str, object], why: str) -> None:
    with pytest.raises(SdpNegotiationError) as info:
        _answer(offer, **kw)
    assert info.value.status_hint == 488, why
    assert info.value.reason_hint == "Not Acceptable Here"


def test_tls_offer_answered_with_tls_path() -> None:
    offer = _offer(
        "accept-types:text/plain", proto="TCP/TLS/MSRP", path=ALICE_PATH.replace("msrp:", "msrps:")
    )
    answer, negotiated = _answer(offer, path=[GW_TLS_PATH])
    assert answer.media[0].proto == "TCP/TLS/MSRP"
    assert negotiated.local.secure  # type: ignore[attr-defined]


# RFC 6135 §4.2 / RFC 4145 §4.1: offer a=setup -> (our a=setup, we are active). An absent
# a=setup means active in an offer; holdconn is ignored as if absent (RFC 6135 §4.2.1).
SETUP_CASES = [
    (None, False, "passive", False),
    (None, True, "passive", False),
    ("holdconn", False, "passive", False),
    ("holdconn", True, "passive", False),
    ("actpass", False, "passive", False),
    ("actpass", True, "active", True),
    ("active", True, "passive", False),
    ("passive", False, "active", True),
]


@pytest.mark.parametrize(("offered", "prefer", "answered", "active"), SETUP_CASES)
def test_answer_setup_roles(
    offered: str | None, prefer: bool, answered: str | None, active: bool
) -> None:
    attrs = ["accept-types:text/plain"] + ([f"setup:{offered}"] if offered else [])
    answer, negotiated = _answer(_offer(*attrs), prefer_active=prefer)
    assert answer.media[0].attribute("setup") == answered
    assert answer.media[0].port == (9 if active else 2855)
    assert negotiated.active is active  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", ["new", "existing", "old"])
def test_a_connection_is_ignored(value: str) -> None:
    # RFC 6135 §4.4: MSRP UAs "MUST NOT use" a=connection and "MUST ignore" a received one.
    answer, negotiated = _answer(_offer("accept-types:text/plain", f"connection:{value}"))
    assert answer.media[0].attribute("connection") is None
    assert negotiated.active is False  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("offered", "mirrored"),
    [
        ("sendonly", "recvonly"),
        ("recvonly", "sendonly"),
        ("sendrecv", "sendrecv"),
        ("inactive", "inactive"),
    ],
)
def test_direction_is_mirrored(offered: str, mirrored: str) -> None:
    answer, _ = _answer(_offer("accept-types:text/plain", offered))
    assert answer.media[0].has_attribute(mirrored)


# -- parse_answer ------------------------------------------------------------------------------


def _our_offer(setup: Setup | None = Setup.ACTPASS) -> SessionDescription:
    """An offer as parse_answer sees it; built by hand for a=setup values that make_offer
    refuses to write (absent, passive), as a peer's re-offer could carry them."""
    if setup in (Setup.ACTPASS, Setup.ACTIVE):
        return make_offer(
            path=[GW_PATH], accept_types=["text/plain", "message/cpim"], setup=setup, session_id=5
        )
    line = "" if setup is None else f"a=setup:{setup.value}\n"
    return parse_sdp(
        crlf(
            "v=0\no=- 5 0 IN IP4 gw.example.test\ns=-\nc=IN IP4 gw.example.test\nt=0 0\n"
            f"m=message 2855 TCP/MSRP *\na=accept-types:text/plain message/cpim\n"
            f"a=path:{GW_PATH}\n{line}"
        )
    )


def _peer_answer(*attributes: str, port: int = 8888, proto: str = "TCP/MSRP") -> SessionDescription:
    lines = "".join(f"a={a}\n" for a in attributes)
    return parse_sdp(
        crlf(
            "v=0\no=b 1 1 IN IP4 bob.example.com\ns=-\nc=IN IP4 bob.example.com\nt=0 0\n"
            f"m=message {port} {proto} *\n{lines}"
        )
    )


def test_parse_the_rfc_answer() -> None:
    negotiated = parse_answer(parse_sdp(RFC_OFFER), parse_sdp(RFC_ANSWER))
    assert negotiated.active is True  # no a=setup anywhere: the offerer connects (§5.4)
    assert negotiated.remote.path == (BOB_PATH,)
    assert negotiated.accept_types == ("text/plain",)


@pytest.mark.parametrize(
    ("offered", "answered", "active"),
    [
        (Setup.ACTPASS, None, True),
        (Setup.ACTPASS, "holdconn", True),  # ignored (RFC 6135 §4.2.1): answer default passive
        (Setup.ACTPASS, "passive", True),
        (Setup.ACTPASS, "active", False),
        (None, None, True),
        (None, "passive", True),
        (Setup.ACTIVE, None, True),
        (Setup.ACTIVE, "passive", True),
        (Setup.PASSIVE, "active", False),
    ],
)
def test_parse_answer_roles(offered: Setup | None, answered: str | None, active: bool) -> None:
    attrs = ["accept-types:text/plain", f"path:{BOB_PATH}"]
    if answered:
        attrs.append(f"setup:{answered}")
    negotiated = parse_answer(_our_offer(offered), _peer_answer(*attrs))
    assert negotiated.active is active
    assert negotiated.remote_max_size is None


@pytest.mark.parametrize(
    ("offered", "answer"),
    [
        (
            Setup.ACTPASS,
            _peer_answer("accept-types:text/plain", f"path:{BOB_PATH}", "setup:actpass"),
        ),
        (None, _peer_answer("accept-types:text/plain", f"path:{BOB_PATH}", "setup:active")),
        (Setup.ACTIVE, _peer_answer("accept-types:text/plain", f"path:{BOB_PATH}", "setup:active")),
        (
            Setup.PASSIVE,
            _peer_answer("accept-types:text/plain", f"path:{BOB_PATH}", "setup:passive"),
        ),
        (Setup.PASSIVE, _peer_answer("accept-types:text/plain", f"path:{BOB_PATH}")),
        (Setup.ACTPASS, _peer_answer("accept-types:text/plain", f"path:{BOB_PATH}", port=0)),
        (Setup.ACTPASS, _peer_answer("accept-types:image/png", f"path:{BOB_PATH}")),
        (Setup.ACTPASS, _peer_answer("accept-types:text/plain")),
        (
            Setup.ACTPASS,
            _peer_answer(
                "accept-types:text/plain",
                f"path:{BOB_PATH.replace('msrp:', 'msrps:')}",
                proto="TCP/TLS/MSRP",
            ),
        ),
    ],
)
def test_unusable_answers(offered: Setup | None, answer: SessionDescription) -> None:
    with pytest.raises(SdpNegotiationError):
        parse_answer(_our_offer(offered), answer)


def test_answer_with_wrong_number_of_streams() -> None:
    answer = _peer_answer("accept-types:text/plain", f"path:{BOB_PATH}")
    two = SessionDescription(answer.origin, media=answer.media * 2)
    with pytest.raises(SdpNegotiationError):
        parse_answer(_our_offer(), two)


def test_remote_max_size_is_reported() -> None:
    answer = _peer_answer("accept-types:text/plain", f"path:{BOB_PATH}", "max-size:4096")
    assert parse_answer(_our_offer(), answer).remote_max_size == 4096


# -- malformed SDP -----------------------------------------------------------------------------

MALFORMED = [
    (b"", 400),
    (crlf("o=a 1 1 IN IP4 a\nv=0\ns=-\nt=0 0\n"), 400),  # v= not first
    (crlf("v=1\no=a 1 1 IN IP4 a\ns=-\nt=0 0\n"), 400),
    (crlf("v=0\ns=-\nt=0 0\n"), 400),  # no o=
    (crlf("v=0\no=a 1 1 IN IP4 a\ns=-\n"), 400),  # no t=
    (crlf("v=0\no=a x 1 IN IP4 a\ns=-\nt=0 0\n"), 400),  # sess-id not digits
    (crlf("v=0\no=a 1 1 IN IP4\ns=-\nt=0 0\n"), 400),
    (crlf("v=0\no=a 1 1 IN IP4 a\ns=\nt=0 0\n"), 400),  # empty s=
    (crlf("v=0\no=a 1 1 IN IP4 a\ns=-\nt=0\n"), 400),
    (crlf("v=0\no=a 1 1 IN IP4 a\ns=-\nt=0 0\nm=message x TCP/MSRP *\n"), 400),
    (crlf("v=0\no=a 1 1 IN IP4 a\ns=-\nt=0 0\nm=message 99999 TCP/MSRP *\n"), 400),
    (crlf("v=0\no=a 1 1 IN IP4 a\ns=-\nt=0 0\nm=message 1 TCP/MSRP\n"), 400),
    (crlf("v=0\no=a 1 1 IN IP4 a\ns=-\nt=0 0\nm=message 1 TCP/MSRP *\nc=IN IP4\n"), 400),
    (crlf("v=0\no=a 1 1 IN IP4 a\ns=-\nt=0 0\nm=message 1 TCP/MSRP *\nt=0 0\n"), 400),
    (crlf("v=0\no=a 1 1 IN IP4 a\ns=-\nt=0 0\nm=message 1 TCP/MSRP *\na=bad name\n"), 400),
    (crlf("v=0\no=a 1 1 IN IP4 a\ns=-\ns=-\nt=0 0\n"), 400),
    (crlf("v=0\no=a 1 1 IN IP4 a\ns=-\nr=1 2 3\nt=0 0\n"), 400),
    (crlf("v=0\no=a 1 1 IN IP4 a\ns=-\nt=0 0\n\na=x\n"), 400),  # blank line inside
    (crlf("v=0\no=a 1 1 IN IP4 a\ns=-\nt=0 0\nx = y\n"), 400),
    (crlf("v=0\no=a 1 1 IN IP4 a\ns=-\nt=0 0\ny=unknown\n"), 488),  # §5: unknown type letter
    (b"v=0\r\no=\xff 1 1 IN IP4 a\r\ns=-\r\nt=0 0\r\n", 400),
    (b"v=0\r\n" + b"a=x\r\n" * 6000, 413),
    (crlf("v=0\no=a 1 1 IN IP4 a\ns=-\nt=0 0\n" + "a=x\n" * 600), 400),  # too many lines
    (
        crlf("v=0\no=a 1 1 IN IP4 a\ns=-\nt=0 0\n" + "m=message 1 TCP/MSRP *\n" * 33),
        400,
    ),
]


@pytest.mark.parametrize(("wire", "status"), MALFORMED)
def test_malformed_sdp(wire: bytes, status: int) -> None:
    with pytest.raises(RemoteSipError) as info:
        parse_sdp(wire)
    assert info.value.status_hint == status
    expected = SdpNegotiationError if status == 488 else SdpSyntaxError
    assert isinstance(info.value, expected)


# -- properties --------------------------------------------------------------------------------

words = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9.\-]{0,12}", fullmatch=True)
values = st.from_regex(r"[!-~][ -~]{0,20}", fullmatch=True)
attributes = st.builds(Attribute, words, st.none() | st.from_regex(r"[ -~]{0,20}", fullmatch=True))
connections = st.builds(ConnectionData, words, st.just("IN"), st.sampled_from(["IP4", "IP6"]))
medias = st.builds(
    MediaDescription,
    media=st.sampled_from(["message", "audio", "video"]),
    port=st.integers(0, 65535),
    proto=st.sampled_from(["TCP/MSRP", "TCP/TLS/MSRP", "RTP/AVP"]),
    formats=st.lists(st.sampled_from(["*", "0", "8", "96"]), min_size=1, max_size=3).map(tuple),
    port_count=st.none() | st.integers(1, 4),
    title=st.none() | values,
    connection=st.none() | connections,
    bandwidths=st.lists(values, max_size=2).map(tuple),
    key=st.none() | values,
    attributes=st.lists(attributes, max_size=4).map(tuple),
)
descriptions = st.builds(
    SessionDescription,
    origin=st.builds(
        Origin,
        words,
        st.from_regex(r"[0-9]{1,10}", fullmatch=True),
        st.from_regex(r"[0-9]{1,10}", fullmatch=True),
        words,
    ),
    session_name=values,
    info=st.none() | values,
    uri=st.none() | values,
    emails=st.lists(values, max_size=2).map(tuple),
    phones=st.lists(values, max_size=2).map(tuple),
    connection=st.none() | connections,
    bandwidths=st.lists(values, max_size=2).map(tuple),
    times=st.lists(
        st.builds(
            Timing,
            st.integers(0, 10**10),
            st.integers(0, 10**10),
            st.lists(values, max_size=2).map(tuple),
        ),
        min_size=1,
        max_size=2,
    ).map(tuple),
    zone=st.none() | values,
    key=st.none() | values,
    attributes=st.lists(attributes, max_size=4).map(tuple),
    media=st.lists(medias, max_size=3).map(tuple),
)


@settings(max_examples=200, deadline=None)
@given(descriptions)
def test_round_trip(sdp: SessionDescription) -> None:
    assert parse_sdp(serialize_sdp(sdp)) == sdp


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(lambda t: "v=0\r\n" + t))
def test_any_input_parses_or_raises_remote_sip_error(data: bytes | str) -> None:
    try:
        sdp = parse_sdp(data)
    except RemoteSipError:
        return
    for media in sdp.media:
        try:
            msrp_params(media)
        except SdpNegotiationError:
            pass
