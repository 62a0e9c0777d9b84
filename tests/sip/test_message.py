"""The message model: header multi-map, canonical names, serialization (RFC 3261 §7)."""

from __future__ import annotations

import pytest

from sipxmpp.gateway.sip.errors import LocalSipError
from sipxmpp.gateway.sip.message import (
    Headers,
    Request,
    Response,
    canonical_name,
    serialize,
    split_header_values,
)


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("v", "Via"),
        ("V", "Via"),
        ("i", "Call-ID"),
        ("I", "Call-ID"),
        ("l", "Content-Length"),
        ("m", "Contact"),
        ("f", "From"),
        ("t", "To"),
        ("s", "Subject"),
        ("c", "Content-Type"),
        ("k", "Supported"),
        ("o", "Event"),
        ("u", "Allow-Events"),
        ("cseq", "CSeq"),
        ("CSEQ", "CSeq"),
        ("call-id", "Call-ID"),
        ("MaX-fOrWaRdS", "Max-Forwards"),
        ("www-authenticate", "WWW-Authenticate"),
        ("sip-etag", "SIP-ETag"),
        ("x-custom-header", "X-Custom-Header"),
        ("q", "Q"),  # not a registered compact form
    ],
)
def test_canonical_name(raw: str, canonical: str) -> None:
    assert canonical_name(raw) == canonical
    assert canonical_name(raw) == canonical  # served from the cache the second time


def test_headers_lookup_is_case_insensitive_and_compact_aware() -> None:
    headers = Headers.of(
        [("v", "SIP/2.0/UDP a"), ("VIA", "SIP/2.0/UDP b, SIP/2.0/UDP c"), ("i", "x")]
    )
    assert headers.get("via") == "SIP/2.0/UDP a"
    assert headers.get("Call-ID") == "x" and headers.get("i") == "x"
    assert "CALL-ID" in headers and "Route" not in headers and 5 not in headers
    assert headers.get_lines("Via") == ["SIP/2.0/UDP a", "SIP/2.0/UDP b, SIP/2.0/UDP c"]
    assert headers.get_all("Via") == ["SIP/2.0/UDP a", "SIP/2.0/UDP b", "SIP/2.0/UDP c"]
    assert len(headers) == 3 and list(headers)[0] == ("Via", "SIP/2.0/UDP a")


def test_headers_editing() -> None:
    headers = Headers.of([("Via", "a, b"), ("To", "t"), ("Via", "c")])
    assert headers.remove_first("Via").get_all("Via") == ["b", "c"]
    assert headers.remove_first("Via").remove_first("Via").get_all("Via") == ["c"]
    assert headers.prepend("v", "z").get_all("Via") == ["z", "a", "b", "c"]
    assert headers.add("Route", "<sip:r>").get("route") == "<sip:r>"
    assert headers.remove("via").items == (("To", "t"),)
    assert headers.set("Via", "only").items == (("Via", "only"), ("To", "t"))
    assert headers.set("Subject", "hi").items[-1] == ("Subject", "hi")
    # Non-list headers are never split on commas (RFC 3261 §7.3.1).
    auth = Headers.of([("Authorization", 'Digest a="1,2", b=3')])
    assert auth.get_all("Authorization") == ['Digest a="1,2", b=3']


@pytest.mark.parametrize(
    ("value", "parts"),
    [
        ("a, b ,c", ["a", "b", "c"]),
        ('"Doe, John" <sip:j@x>, <sip:k@y;p=1,2>', ['"Doe, John" <sip:j@x>', "<sip:k@y;p=1,2>"]),
        ('"quote \\" , inside", x', ['"quote \\" , inside"', "x"]),
        ("a,,b,", ["a", "b"]),
        ("", []),
    ],
)
def test_split_header_values(value: str, parts: list[str]) -> None:
    assert split_header_values(value) == parts


def test_serialize_request_writes_content_length_from_the_body() -> None:
    request = Request(
        "MESSAGE",
        "sip:bob@example.com",
        Headers.of([("Via", "SIP/2.0/UDP h;branch=z9hG4bK1"), ("Content-Length", "999")]),
        "héllo".encode(),
    )
    assert serialize(request) == (
        b"MESSAGE sip:bob@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
        b"Content-Length: 6\r\n\r\n" + "héllo".encode()
    )


def test_serialize_response() -> None:
    response = Response(180, "Ringing", Headers.of([("To", "<sip:a@b>;tag=1")]))
    assert (
        serialize(response)
        == b"SIP/2.0 180 Ringing\r\nTo: <sip:a@b>;tag=1\r\nContent-Length: 0\r\n\r\n"
    )
    assert serialize(Response(100, "")) == b"SIP/2.0 100 \r\nContent-Length: 0\r\n\r\n"


@pytest.mark.parametrize(
    "message",
    [
        Request("OPTIONS", "sip:a@b", Headers.of([("Subject", "x\r\nInjected: yes")])),
        Request("OPTIONS", "sip:a@b", Headers.of([("Subject", "x\nInjected: yes")])),
        Request("OPTIONS", "sip:a@b\r\n", Headers()),
        Response(200, "OK\r\nX: y", Headers()),
        Request("OPTIONS", "sip:a@b", Headers.of([("Subject", "\ud800")])),
    ],
)
def test_serialize_refuses_header_injection_and_bad_text(message: Request | Response) -> None:
    with pytest.raises(LocalSipError):
        serialize(message)


def test_replace_and_header() -> None:
    request = Request("OPTIONS", "sip:a@b", Headers.of([("To", "<sip:a@b>")]))
    assert request.header("to") == "<sip:a@b>"
    assert request.replace(uri="sip:c@d").uri == "sip:c@d"
    response = Response(200, "OK")
    assert response.replace(status=202).status == 202 and response.header("To") is None
