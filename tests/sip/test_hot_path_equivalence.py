"""Fast paths of the per-message code give what the straightforward code gives.

Each fast path (Via stamping, response building, response routing) is checked against a
reference written the plain way, over tables and Hypothesis-generated inputs.
"""

from __future__ import annotations

import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipxmpp.gateway.sip import grammar
from sipxmpp.gateway.sip.address import TransportAddress
from sipxmpp.gateway.sip.build import DIALOG_CREATING_METHODS, make_response
from sipxmpp.gateway.sip.errors import RemoteSipError
from sipxmpp.gateway.sip.grammar import (
    Via,
    _bare_address,
    _get_param,
    _has_param,
    _same_address,
    _set_param,
    parse_name_addr,
    parse_via,
)
from sipxmpp.gateway.sip.message import Headers, Request
from sipxmpp.gateway.sip.transaction_layer import response_target

# -- Via.with_received (RFC 3261 §18.2.1, RFC 3581 §4) ---------------------------------


def reference_with_received(via: Via, host: str, port: int) -> Via:
    params = via.params
    rport_requested = _has_param(params, "rport") and _get_param(params, "rport") is None
    if rport_requested:
        params = _set_param(params, "rport", str(port))
    if rport_requested or not _same_address(via.host, host):
        params = _set_param(params, "received", _bare_address(host))
    return Via(via.transport, via.host, via.port, params, via.protocol)


VIA_CASES = [
    "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-1;rport",
    "SIP/2.0/UDP 127.0.0.1:5060;rport;branch=z9hG4bK-1",
    "SIP/2.0/UDP h.example.test;branch=z9hG4bK-1;RPORT",
    "SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK-1;rport=5;received=192.0.2.4",
    "SIP/2.0/UDP 127.0.0.1;rport;rport;branch=z9hG4bK-1",
    "SIP/2.0/UDP 127.0.0.1;received=192.0.2.1;rport",
    "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-1",
    "SIP/2.0/TCP [::1]:5060;branch=z9hG4bK-1;rport",
]


@pytest.mark.parametrize("text", VIA_CASES)
@pytest.mark.parametrize("source", ["127.0.0.1", "192.0.2.9", "::1"])
def test_with_received_matches_the_reference(text: str, source: str) -> None:
    via = parse_via(text)
    assert via.with_received(source, 4000) == reference_with_received(via, source, 4000)


_PARAM_NAMES = st.sampled_from(["rport", "RPort", "received", "branch", "ttl", "x"])
_PARAM_VALUES = st.one_of(st.none(), st.sampled_from(["1", "5060", "192.0.2.1", "z9hG4bKa"]))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(_PARAM_NAMES, _PARAM_VALUES), max_size=5),
    st.sampled_from(["127.0.0.1", "192.0.2.7", "host.example.test"]),
    st.sampled_from(["127.0.0.1", "192.0.2.7", "::1"]),
    st.integers(min_value=1, max_value=65535),
)
def test_with_received_matches_the_reference_for_any_parameters(
    params: list[tuple[str, str | None]], sent_by: str, source: str, port: int
) -> None:
    via = Via("UDP", sent_by, 5060, tuple(params))
    assert via.with_received(source, port) == reference_with_received(via, source, port)


# -- make_response (RFC 3261 §8.2.6.2) ---------------------------------------------------


def reference_response_fields(request: Request, status: int, to_tag: str) -> list[tuple[str, str]]:
    src = request.headers
    to_value = src.get("To")
    initial = False
    if to_value is not None:
        to = parse_name_addr(to_value)
        initial = to.tag is None
        if status != 100 and to.tag is None:
            to_value = f"{to_value};tag={to_tag}"
    out = [("Via", v) for v in src.get_lines("Via")]
    out += [("From", v) for v in src.get_lines("From")[:1]]
    if to_value is not None:
        out.append(("To", to_value))
    out += [("Call-ID", v) for v in src.get_lines("Call-ID")[:1]]
    out += [("CSeq", v) for v in src.get_lines("CSeq")[:1]]
    if status == 100:
        out += [("Timestamp", v) for v in src.get_lines("Timestamp")]
    elif 101 <= status <= 299 and initial and request.method in DIALOG_CREATING_METHODS:
        out += [("Record-Route", v) for v in src.get_lines("Record-Route")]
    return out


_FIELDS = st.sampled_from(
    [
        ("Via", "SIP/2.0/UDP a.example.test;branch=z9hG4bK1"),
        ("Via", "SIP/2.0/UDP b.example.test;branch=z9hG4bK2"),
        ("From", "<sip:alice@example.test>;tag=1"),
        ("From", "<sip:mallory@example.test>;tag=2"),
        ("To", "<sip:bob@example.test>"),
        ("To", "<sip:bob@example.test>;tag=9"),
        ("Call-ID", "c1"),
        ("Call-ID", "c2"),
        ("CSeq", "1 INVITE"),
        ("CSeq", "2 INVITE"),
        ("Timestamp", "54"),
        ("Timestamp", "55"),
        ("Record-Route", "<sip:p1.example.test;lr>"),
        ("Record-Route", "<sip:p2.example.test;lr>"),
        ("Subject", "hi"),
        ("Contact", "<sip:alice@192.0.2.1>"),
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_FIELDS, max_size=12),
    st.sampled_from(["INVITE", "MESSAGE", "SUBSCRIBE"]),
    st.sampled_from([100, 180, 200, 202, 404, 500]),
)
def test_make_response_copies_what_the_reference_copies(
    fields: list[tuple[str, str]], method: str, status: int
) -> None:
    request = Request(method, "sip:bob@example.test", Headers(tuple(fields)))
    response = make_response(request, status, to_tag="t0")
    assert list(response.headers.items) == reference_response_fields(request, status, "t0")


# -- response_target (RFC 3261 §18.2.2, RFC 3581 §4) ---------------------------------------


def test_response_target_reuses_the_source_when_it_is_the_answer() -> None:
    source = TransportAddress("udp", "127.0.0.1", 40000)
    via = parse_via("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-1;rport").with_received(
        "127.0.0.1", 40000
    )
    assert response_target(via, source) is source


@pytest.mark.parametrize(
    ("via_text", "expected"),
    [
        # rport filled in with another port than the source's (a NAT rewrote it): its value.
        ("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-1;rport=1234;received=127.0.0.1", 1234),
        # no rport: the sent-by port (§18.2.2).
        ("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-1;received=127.0.0.1", 5060),
    ],
)
def test_response_target_is_computed_when_it_differs(via_text: str, expected: int) -> None:
    source = TransportAddress("udp", "127.0.0.1", 40000)
    target = response_target(parse_via(via_text), source)
    assert target == TransportAddress("udp", "127.0.0.1", expected)


# -- RandomIds: buffered OS randomness ----------------------------------------------------


def test_random_ids_stay_distinct_and_well_formed_across_buffer_refills() -> None:
    from sipxmpp.gateway.sip.grammar import is_token, is_valid_call_id
    from sipxmpp.gateway.sip.ids import _RANDOM_BUFFER_BYTES, MAGIC_COOKIE, RandomIds

    ids = RandomIds()
    # Several buffers' worth, with sizes that do not divide the buffer evenly.
    rounds = 3 * _RANDOM_BUFFER_BYTES // (12 + 12 + 17 + 128)
    seen: set[str] = set()
    for _ in range(rounds):
        branch, tag, call_id, token = ids.branch(), ids.tag(), ids.call_id(), ids.token(1024)
        assert branch.startswith(MAGIC_COOKIE) and is_token(branch) and len(branch) == 7 + 24
        assert len(tag) == 15 and is_token(tag)
        assert len(call_id) == 22 and is_valid_call_id(call_id)
        # Each stays in CPython's smaller allocation class (sip/ids.py).
        assert sys.getsizeof(tag) <= 64 and sys.getsizeof(call_id) <= 80
        assert len(token) == 256
        for value in (branch, tag, call_id, token):
            assert value not in seen
            seen.add(value)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_forked_child_does_not_repeat_its_parents_identifiers() -> None:
    import os

    from sipxmpp.gateway.sip.ids import RandomIds

    ids = RandomIds()
    ids.tag()  # fill the buffer before the fork
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next tag and leave at once
        os.write(write_end, ids.tag().encode())
        os._exit(0)
    os.close(write_end)
    child_tag = os.read(read_end, 64).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    assert len(child_tag) == 15
    assert child_tag != ids.tag()


# -- parse_via / parse_name_addr: the template caches for fresh branches and tags --------------


def _plain_via(text: str) -> Via:
    return grammar._parse_via_text.__wrapped__(text)  # type: ignore[attr-defined]


def _plain_name_addr(text: str) -> object:
    return grammar._parse_name_addr_text.__wrapped__(text)  # type: ignore[attr-defined]


def _outcome(parse: object, text: str) -> object:
    try:
        return ("ok", parse(text))  # type: ignore[operator]
    except RemoteSipError as exc:
        return ("error", exc.status_hint, exc.msg)


VIA_TEXTS = [
    "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-1-bench;rport",
    "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx;rport",  # the placeholder itself
    "SIP/2.0/TCP host.example.com;rport;branch=z9hG4bK776asdhds",
    "SIP/2.0/UDP 192.0.2.1:5060;received=192.0.2.2;branch=z9hG4bKnashds8",
    "SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111;received=[2001:db8::9:255]",
    "SIP/2.0/UDP h.example.com;branch=a b",  # not a token: plain parse (and its error)
    "SIP/2.0/UDP h.example.com;branch=",
    'SIP/2.0/UDP h.example.com;branch="quoted"',
    "SIP/2.0/UDP h.example.com;branch=1;branch=2",
    "SIP/2.0/UDP h.example.com;Branch=1;branch=2",
    "SIP/2.0/UDP h.example.com ; branch = 1;branch=2",
    "SIP/2.0/UDP h.example.com;branch=z9hG4bK1;ttl=1000",  # bad ttl: the same error
    "SIP/2.0/UDP h..example.com;branch=z9hG4bK1",
    "SIP/2.0/UDP h.example.com;branch=z9hG4bK1 ",
]

NAME_ADDR_TEXTS = [
    "<sip:alice@example.test>;tag=4242B1",
    '"Alice" <sip:alice@example.test>;tag=4242B1',
    '"Al;tag=ice" <sip:alice@example.test>;tag=x',
    "<sip:alice@example.test;tag=uri-param>;tag=header",
    "<sip:alice@example.test;tag=uri-param>",
    "sip:alice@example.test;tag=addr-spec",
    "Alice <sip:alice@example.test>;tag=a;tag=b",
    "<sip:alice@example.test>;tag=a b",
    "<sip:alice@example.test>;tag=",
    "<sip:alice@exa mple.test>;tag=1",
    "<sip:alice@example.test>;tag=z9hG4bKx",
    '<sip:alice@example.test>;tag=1;expires=3600;+sip.instance="<urn:uuid:1>"',
]


@pytest.mark.parametrize("text", VIA_TEXTS)
def test_via_template_parse_equals_plain_parse(text: str) -> None:
    assert _outcome(parse_via, text) == _outcome(_plain_via, text)


@pytest.mark.parametrize("text", NAME_ADDR_TEXTS)
def test_name_addr_template_parse_equals_plain_parse(text: str) -> None:
    assert _outcome(parse_name_addr, text) == _outcome(_plain_name_addr, text)


_TOKENISH = st.text(
    alphabet=st.sampled_from("abcXYZ019-.!%*_+`'~ ;=\"<>[]:@"), min_size=0, max_size=12
)


@settings(max_examples=300, deadline=None)
@given(_TOKENISH, _TOKENISH, st.sampled_from(["udp", "UDP", "TLS"]))
def test_via_template_parse_property(branch: str, rest: str, transport: str) -> None:
    text = f"SIP/2.0/{transport} 192.0.2.1:5060;branch={branch}{rest}"
    assert _outcome(parse_via, text) == _outcome(_plain_via, text)


@settings(max_examples=300, deadline=None)
@given(_TOKENISH, _TOKENISH, _TOKENISH)
def test_name_addr_template_parse_property(display: str, tag: str, rest: str) -> None:
    for text in (f"{display}<sip:bob@example.test>;tag={tag}{rest}", f"sip:bob@x;tag={tag}{rest}"):
        assert _outcome(parse_name_addr, text) == _outcome(_plain_name_addr, text)
