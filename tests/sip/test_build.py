"""Building requests (RFC 3261 §8.1.1) and responses (§8.2.6)."""

from __future__ import annotations

import pytest

from sipxmpp.gateway.sip.build import default_reason, make_request, make_response
from sipxmpp.gateway.sip.errors import LocalSipError
from sipxmpp.gateway.sip.grammar import NameAddr, SipUri, parse_name_addr
from sipxmpp.gateway.sip.message import Headers, Request, serialize
from sipxmpp.gateway.sip.parser import parse_message

INVITE = Request(
    "INVITE",
    "sip:bob@biloxi.com",
    Headers.of(
        [
            ("Via", "SIP/2.0/UDP server10.biloxi.com;branch=z9hG4bKnashds8;received=192.0.2.3"),
            ("Via", "SIP/2.0/UDP bigbox3.site3.atlanta.com;branch=z9hG4bK77ef4c2312983.1"),
            ("Max-Forwards", "69"),
            ("To", "Bob <sip:bob@biloxi.com>"),
            ("From", "Alice <sip:alice@atlanta.com>;tag=1928301774"),
            ("Call-ID", "a84b4c76e66710"),
            ("CSeq", "314159 INVITE"),
            ("Record-Route", "<sip:server10.biloxi.com;lr>, <sip:bigbox3.site3.atlanta.com;lr>"),
            ("Timestamp", "54"),
            ("Contact", "<sip:alice@pc33.atlanta.com>"),
            ("Content-Type", "application/sdp"),
        ]
    ),
    b"v=0\r\n",
)


def test_response_copies_what_8_2_6_2_requires() -> None:
    response = make_response(INVITE, 180, to_tag="a6c85cf")
    assert (response.status, response.reason) == (180, "Ringing")
    assert response.headers.items == (
        ("Via", "SIP/2.0/UDP server10.biloxi.com;branch=z9hG4bKnashds8;received=192.0.2.3"),
        ("Via", "SIP/2.0/UDP bigbox3.site3.atlanta.com;branch=z9hG4bK77ef4c2312983.1"),
        ("From", "Alice <sip:alice@atlanta.com>;tag=1928301774"),
        ("To", "Bob <sip:bob@biloxi.com>;tag=a6c85cf"),
        ("Call-ID", "a84b4c76e66710"),
        ("CSeq", "314159 INVITE"),
        # §12.1.1: a dialog-establishing response copies Record-Route
        ("Record-Route", "<sip:server10.biloxi.com;lr>, <sip:bigbox3.site3.atlanta.com;lr>"),
    )
    # Our own parser accepts what we build.
    assert parse_message(serialize(response)) == response


def test_100_trying_copies_timestamp_and_needs_no_tag() -> None:
    response = make_response(INVITE, 100)
    assert response.headers.get("To") == "Bob <sip:bob@biloxi.com>"
    assert response.headers.get("Timestamp") == "54"
    assert "Record-Route" not in response.headers


def test_tag_rules() -> None:
    with pytest.raises(LocalSipError):
        make_response(INVITE, 200)  # §8.2.6.2: a UAS MUST add a To tag
    with pytest.raises(LocalSipError):
        make_response(INVITE, 200, to_tag="bad tag")
    in_dialog = INVITE.replace(headers=INVITE.headers.set("To", "<sip:bob@biloxi.com>;tag=abc"))
    response = make_response(in_dialog, 200, to_tag="ignored")
    assert response.headers.get("To") == "<sip:bob@biloxi.com>;tag=abc"
    assert "Record-Route" not in response.headers  # a re-INVITE does not create a dialog
    assert make_response(in_dialog, 200).headers.get("To") == "<sip:bob@biloxi.com>;tag=abc"


def test_response_reason_headers_and_body() -> None:
    message = INVITE.replace(method="MESSAGE", headers=INVITE.headers.set("CSeq", "1 MESSAGE"))
    response = make_response(
        message,
        488,
        "Not Here",
        to_tag="t",
        headers=[("Warning", '399 gw "no"'), ("content-type", "text/plain")],
        body=b"x",
    )
    assert response.reason == "Not Here"
    assert response.headers.get_lines("Warning") == ['399 gw "no"']
    assert response.headers.get("Content-Type") == "text/plain"
    assert "Record-Route" not in response.headers  # MESSAGE never creates a dialog
    assert parse_message(serialize(response)) == response


@pytest.mark.parametrize(
    ("status", "reason", "kwargs"),
    [
        (99, None, {}),
        (700, None, {}),
        (200, "OK\r\nX: y", {"to_tag": "t"}),
        (200, None, {"to_tag": "t", "body": b"x"}),  # §20.15: a body needs Content-Type
        (200, None, {"to_tag": "t", "headers": [("Via", "x")]}),
        (200, None, {"to_tag": "t", "headers": [("Bad Name", "x")]}),
        (200, None, {"to_tag": "t", "headers": [("X", "a\r\nb")]}),
    ],
)
def test_response_refusals(status: int, reason: str | None, kwargs: dict[str, object]) -> None:
    with pytest.raises(LocalSipError):
        make_response(INVITE, status, reason, **kwargs)  # type: ignore[arg-type]


def test_response_to_a_malformed_request_is_best_effort() -> None:
    # RFC 4475 §3.3.1: no Call-ID, From or To, yet a 400 is the ideal answer.
    broken = Request(
        "INVITE",
        "sip:a@b",
        Headers.of([("Via", "SIP/2.0/UDP h;branch=z9hG4bK1"), ("CSeq", "1 INVITE")]),
    )
    response = make_response(broken, 400, "Missing Call-ID", to_tag="x")
    assert response.headers.items == (
        ("Via", "SIP/2.0/UDP h;branch=z9hG4bK1"),
        ("CSeq", "1 INVITE"),
    )
    # An unparsable To is copied as it is, with the tag appended.
    quotbal = broken.replace(
        headers=broken.headers.add("To", '"Mr. J. User <sip:j.user@example.com>')
    )
    response = make_response(quotbal, 400, to_tag="x")
    assert response.headers.get("To") == '"Mr. J. User <sip:j.user@example.com>;tag=x'


@pytest.mark.parametrize(("status", "reason"), [(200, "OK"), (299, "OK"), (404, "Not Found"), (499, "Client Error"), (699, "Global Failure"), (183, "Session Progress"), (150, "Trying")])  # fmt: skip
def test_default_reason(status: int, reason: str) -> None:
    assert default_reason(status) == reason


def test_make_request() -> None:
    request = make_request(
        "MESSAGE",
        SipUri("xmpp.example", "juliet"),
        from_addr='"Romeo" <sip:romeo@sip.example>',
        from_tag="49583",
        to_addr=SipUri("xmpp.example", "juliet"),
        call_id="asiuwq98@sip.example",
        cseq=1,
        headers=[("Subject", "hi")],
        body=b"Art thou not Romeo?",
        content_type="text/plain;charset=UTF-8",
    )
    assert request.method == "MESSAGE" and request.uri == "sip:juliet@xmpp.example"
    assert request.headers.items == (
        ("Max-Forwards", "70"),
        ("From", '"Romeo" <sip:romeo@sip.example>;tag=49583'),
        ("To", "<sip:juliet@xmpp.example>"),
        ("Call-ID", "asiuwq98@sip.example"),
        ("CSeq", "1 MESSAGE"),
        ("Subject", "hi"),
        ("Content-Type", "text/plain;charset=UTF-8"),
    )
    assert "Via" not in request.headers
    # With the transaction layer's Via, our own parser accepts it.
    sent = request.replace(
        headers=request.headers.prepend("Via", "SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKx")
    )
    assert parse_message(serialize(sent)) == sent


def test_make_request_with_contact_and_in_dialog_to() -> None:
    request = make_request(
        "SUBSCRIBE",
        "sip:bob@biloxi.com",
        from_addr=NameAddr(SipUri("atlanta.com", "alice"), "Alice"),
        from_tag="a1",
        to_addr=parse_name_addr("<sip:bob@biloxi.com>;tag=b2"),
        call_id="c",
        cseq=2,
        contact=SipUri("192.0.2.1", "alice", port=5060),
        headers=[("Event", "presence"), ("Expires", "600")],
        max_forwards=10,
    )
    assert request.headers.get("To") == "<sip:bob@biloxi.com>;tag=b2"
    assert request.headers.get("From") == '"Alice" <sip:alice@atlanta.com>;tag=a1'
    assert request.headers.get("Contact") == "<sip:alice@192.0.2.1:5060>"
    assert request.headers.get("Max-Forwards") == "10"


@pytest.mark.parametrize(
    "changes",
    [
        {"method": "BAD METHOD"},
        {"request_uri": "not a uri"},
        {"from_tag": "bad tag"},
        {"call_id": "bad call id"},
        {"cseq": 2**31},
        {"cseq": -1},
        {"max_forwards": 256},
        {"body": b"x"},  # no content_type
        {"content_type": "text/plain\r\nX: y", "body": b"x"},
        {"from_addr": "<sip:a@b>;tag=already"},
        {"from_addr": "not an address"},
        {"headers": [("Call-ID", "dup")]},
        {"headers": [("Content-Type", "a/b")], "content_type": "a/b", "body": b"x"},
    ],
)
def test_make_request_refusals(changes: dict[str, object]) -> None:
    kwargs: dict[str, object] = {
        "method": "MESSAGE",
        "request_uri": "sip:a@b",
        "from_addr": "<sip:c@d>",
        "from_tag": "t",
        "to_addr": "<sip:a@b>",
        "call_id": "x@y",
        "cseq": 1,
    }
    kwargs.update(changes)
    method = kwargs.pop("method")
    uri = kwargs.pop("request_uri")
    with pytest.raises(LocalSipError):
        make_request(method, uri, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "from_addr",
    [
        "<sip:alice@example.com>",
        "sip:alice@example.com",
        '"Alice \\"A\\" Smith" <sip:alice@example.com;transport=tcp>;x=1',
        "Alice <sips:alice@example.com>;expires=5",
        "<sip:bob@example.com;user=phone>",
        "<tel:+15551234567>",
    ],
)
def test_from_with_tag_is_the_name_addr_with_its_tag(from_addr: str) -> None:
    """The From header is written as ``<name-addr>;tag=<tag>`` directly (no NameAddr copy
    per request): the same text as the name-addr with the tag parameter added."""
    request = make_request(
        "MESSAGE",
        "sip:bob@example.com",
        from_addr=from_addr,
        from_tag="a1b2",
        to_addr="<sip:bob@example.com>",
        call_id="c@x",
        cseq=1,
    )
    assert request.headers.get("From") == str(parse_name_addr(from_addr).with_tag("a1b2"))
    assert parse_name_addr(request.headers.get("From") or "").tag == "a1b2"
