"""OPTIONS answers (RFC 3261 §11.2, RFC 6665 §4.4.4) and Accept negotiation (§20.1)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipxmpp.gateway.sip import (
    GATEWAY_CAPABILITIES,
    Capabilities,
    Headers,
    LocalSipError,
    Request,
    RequestReceived,
    ResponseReceived,
    accepts,
    make_response,
    options_response,
    parse_message,
    serialize,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from support.sippair import SipPair, make_req  # noqa: E402

PROV_TYPE = "application/vnd.example.pres-im-provisioning+xml"


def options(accept: tuple[str, ...] | None = None) -> Request:
    """An OPTIONS as received (with a Via), optionally with Accept lines."""
    req = make_req("OPTIONS", headers=tuple(("Accept", a) for a in accept or ()))
    via = "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKopt1"
    return Request(req.method, req.uri, req.headers.prepend("Via", via))


def test_200_lists_every_capability_header() -> None:
    resp = options_response(options(), GATEWAY_CAPABILITIES, to_tag="gw1")
    h = resp.headers
    assert resp.status == 200
    assert h.get_all("Allow") == list(GATEWAY_CAPABILITIES.allow)
    assert h.get_all("Accept") == list(GATEWAY_CAPABILITIES.accept)
    assert h.get("Accept-Encoding") == "identity"
    assert h.get("Accept-Language") == "en"
    assert h.get("Allow-Events") == "presence"
    assert h.get("Supported") is None  # nothing to list
    assert h.get("To") == "<sip:bob@b.test>;tag=gw1"
    assert h.get("Via") == "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKopt1"
    assert resp.body == b""


def test_supported_and_body() -> None:
    caps = Capabilities(allow=("OPTIONS",), supported=("path", "gruu"))
    body = b"<provisioning/>"
    resp = options_response(
        options((PROV_TYPE,)), caps, to_tag="t", body=body, content_type=PROV_TYPE
    )
    assert resp.headers.get("Supported") == "path, gruu"
    assert resp.headers.get("Content-Type") == PROV_TYPE
    assert resp.body == body
    assert resp.headers.get("Accept") == ""  # empty: no body types accepted (§20.1)
    assert resp.headers.get("Allow-Events") is None
    # The wire form parses back to the same response.
    assert parse_message(serialize(resp)) == resp


def test_non_2xx_carries_no_capabilities() -> None:
    # §11.2: the status is the one an INVITE would get, e.g. 486 when busy.
    resp = options_response(options(), GATEWAY_CAPABILITIES, to_tag="t", status=486)
    assert resp.status == 486 and resp.reason == "Busy Here"
    assert resp.headers.get("Allow") is None


def test_extra_headers_are_appended() -> None:
    resp = options_response(
        options(), GATEWAY_CAPABILITIES, to_tag="t", extra_headers=(("Server", "gw/1"),)
    )
    assert resp.headers.get("Server") == "gw/1"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"body": b"x"},  # body without Content-Type
        {"body": b"x", "content_type": "text/plain\r\nX: y"},  # header injection
    ],
)
def test_refuses_bad_body_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(LocalSipError):
        options_response(options(), GATEWAY_CAPABILITIES, to_tag="t", **kwargs)  # type: ignore[arg-type]


def test_refuses_other_methods() -> None:
    req = make_req("MESSAGE")
    with pytest.raises(LocalSipError):
        options_response(req, GATEWAY_CAPABILITIES, to_tag="t")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"allow": ("IN VITE",)},
        {"allow": ("",)},
        {"allow": ("OPTIONS",), "accept": ("textplain",)},
        {"allow": ("OPTIONS",), "accept": ("text/plain, text/html",)},
        {"allow": ("OPTIONS",), "supported": ("a\r\nb",)},
        {"allow": ("OPTIONS",), "allow_events": ("pres ence",)},
        {"allow": ("OPTIONS",), "accept_language": ("en,de",)},
    ],
)
def test_capabilities_refuse_non_tokens(kwargs: dict[str, tuple[str, ...]]) -> None:
    with pytest.raises(LocalSipError):
        Capabilities(**kwargs)


ACCEPT_CASES = [
    # (Accept lines, media type, accepted?)
    ((), "application/sdp", True),  # §20.1 default
    ((), PROV_TYPE, False),
    ((PROV_TYPE,), PROV_TYPE, True),
    (("application/sdp, " + PROV_TYPE,), PROV_TYPE, True),
    (("application/sdp", PROV_TYPE), PROV_TYPE, True),  # several lines
    (("APPLICATION/*",), PROV_TYPE, True),  # case-insensitive, subtype wildcard
    (("*/*",), PROV_TYPE, True),
    (("text/*",), PROV_TYPE, False),
    ((f"{PROV_TYPE};q=0",), PROV_TYPE, False),  # q=0: not acceptable
    ((f"*/*, {PROV_TYPE};q=0",), PROV_TYPE, False),  # the specific range wins
    ((f"application/*;q=0, {PROV_TYPE};q=0.5",), PROV_TYPE, True),
    (("application/*;q=zero",), PROV_TYPE, False),  # unreadable weight
    (("",), PROV_TYPE, False),  # empty Accept: nothing (§20.1)
    ((PROV_TYPE,), PROV_TYPE + ";charset=utf-8", True),
]


@pytest.mark.parametrize(("lines", "media_type", "ok"), ACCEPT_CASES)
def test_accepts(lines: tuple[str, ...], media_type: str, ok: bool) -> None:
    req = Request("OPTIONS", "sip:gw@b.test", Headers(tuple(("Accept", v) for v in lines)))
    assert accepts(req, media_type) is ok


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=40), max_size=4), st.text(max_size=40))
def test_accepts_is_total(lines: list[str], media_type: str) -> None:
    req = Request("OPTIONS", "sip:gw@b.test", Headers(tuple(("Accept", v) for v in lines)))
    assert accepts(req, media_type) in (True, False)


def test_endpoint_passes_options_to_the_tu_which_answers() -> None:
    # The endpoint never answers OPTIONS itself; the runtime does, possibly with a body.
    pair = SipPair()
    pair.a.send_request(make_req("OPTIONS", headers=(("Accept", PROV_TYPE),)), pair.addr_b, 0.0)
    pair.pump()
    [event] = pair.take_b()
    assert isinstance(event, RequestReceived)
    assert not [d for d, _ in pair.delivered if d == "b->a"]
    body = b"<provisioning/>"
    assert accepts(event.request, PROV_TYPE)
    resp = options_response(
        event.request, GATEWAY_CAPABILITIES, to_tag="gw", body=body, content_type=PROV_TYPE
    )
    pair.b.send_response(resp, pair.now)
    pair.pump()
    [answer] = pair.take_a()
    assert isinstance(answer, ResponseReceived)
    assert answer.response.status == 200 and answer.response.body == body
    assert answer.response.headers.get("Allow-Events") == "presence"


def test_options_with_max_forwards_zero_reaches_the_tu() -> None:
    # §16.3 step 3 / §11: an OPTIONS with Max-Forwards 0 may be answered by its target.
    pair = SipPair()
    req = make_req("OPTIONS")
    req = Request(req.method, req.uri, req.headers.set("Max-Forwards", "0"))
    pair.a.send_request(req, pair.addr_b, 0.0)
    pair.pump()
    [event] = pair.take_b()
    assert isinstance(event, RequestReceived)
    pair.b.send_response(make_response(event.request, 200, to_tag="x"), pair.now)
    pair.pump()
    assert isinstance(pair.take_a()[0], ResponseReceived)
