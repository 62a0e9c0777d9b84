"""Dialog state (RFC 3261 §12): UAS and UAC creation, route sets, in-dialog requests
(loose and strict routing), CSeq ordering, target refresh, next hop, persistence."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipxmpp.gateway.sip import (
    MAX_ROUTE_SET,
    Dialog,
    Headers,
    LocalSipError,
    RemoteSipError,
    Request,
    Response,
    TransportAddress,
    parse_message,
    parse_name_addr,
    serialize,
)
from sipxmpp.gateway.sip.dialog import contact_target, record_route

SRC = TransportAddress("udp", "198.51.100.7", 5060)
SRC_TCP = TransportAddress("tcp", "198.51.100.7", 40001, connection=4)


def subscribe(
    *,
    uri: str = "sip:bob@gw.test",
    record_routes: tuple[str, ...] = (),
    contact: str | None = "<sip:alice@198.51.100.7:5060>",
    from_tag: str | None = "ft1",
    cseq: int = 7,
) -> Request:
    items = [
        ("Via", "SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKs1"),
        ("From", "<sip:alice@peer.test>" + (f";tag={from_tag}" if from_tag else "")),
        ("To", '"Bob" <sip:bob@gw.test>'),
        ("Call-ID", "call-9@peer.test"),
        ("CSeq", f"{cseq} SUBSCRIBE"),
    ]
    items += [("Record-Route", rr) for rr in record_routes]
    if contact is not None:
        items.append(("Contact", contact))
    return Request("SUBSCRIBE", uri, Headers(tuple(items)))


def ok_response(*, record_routes: tuple[str, ...] = (), contact: str | None = None) -> Response:
    items = [
        ("Via", "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKc1"),
        ("From", "<sip:gw-user@gw.test>;tag=ours"),
        ("To", "<sip:carol@peer.test>;tag=theirs"),
        ("Call-ID", "uac-1@gw.test"),
        ("CSeq", "1 SUBSCRIBE"),
    ]
    items += [("Record-Route", rr) for rr in record_routes]
    if contact is not None:
        items.append(("Contact", contact))
    return Response(200, "OK", Headers(tuple(items)))


def uac_dialog(dest: TransportAddress = SRC) -> Dialog:
    return Dialog.uac(
        call_id="uac-1@gw.test",
        local_tag="ours",
        local_uri="sip:gw-user@gw.test",
        remote_uri="sip:carol@peer.test",
        request_uri="sip:carol@peer.test",
        destination=dest,
    )


# -- creation -------------------------------------------------------------------------


def test_uas_dialog_from_subscribe() -> None:
    req = subscribe(record_routes=("<sip:p2.test;lr>, <sip:p1.test;lr>", "<sip:p0.test;lr>"))
    d = Dialog.uas(req, "lt1", SRC)
    assert d.key == ("call-9@peer.test", "lt1", "ft1")
    assert d.local_uri == "sip:bob@gw.test"
    assert d.remote_uri == "sip:alice@peer.test"
    assert d.remote_target == "sip:alice@198.51.100.7:5060"
    # §12.1.1: the UAS keeps the Record-Route order.
    assert d.route_set == ("<sip:p2.test;lr>", "<sip:p1.test;lr>", "<sip:p0.test;lr>")
    assert d.remote_cseq == 7
    assert d.local_cseq == 0
    assert d.secure is False
    assert d.destination == SRC


def test_uas_secure_only_for_sips_over_tls() -> None:
    tls = TransportAddress("tls", "198.51.100.7", 5061, connection=2)
    assert Dialog.uas(subscribe(uri="sips:bob@gw.test"), "t", tls).secure is True
    assert Dialog.uas(subscribe(uri="sips:bob@gw.test"), "t", SRC).secure is False
    assert Dialog.uas(subscribe(), "t", tls).secure is False


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"contact": None}, "Missing Contact"),
        ({"contact": "*"}, "Bad Request"),
        ({"contact": "<tel:+15551234>"}, "Bad Request"),
        ({"contact": "<sip:a@b"}, "Bad Request"),
        ({"from_tag": None}, "Missing From tag"),
        ({"record_routes": ("<mailto:x@y.test>",)}, "Bad Request"),
        ({"record_routes": ("<sip:p.test;lr",)}, "Bad Request"),
    ],
)
def test_uas_refuses_what_a_dialog_cannot_use(kwargs: dict[str, object], reason: str) -> None:
    with pytest.raises(RemoteSipError) as info:
        Dialog.uas(subscribe(**kwargs), "t", SRC)  # type: ignore[arg-type]
    assert info.value.status_hint == 400
    assert info.value.reason_hint == reason


def test_route_set_longer_than_the_limit_is_refused() -> None:
    routes = ", ".join(f"<sip:p{i}.test;lr>" for i in range(MAX_ROUTE_SET + 1))
    with pytest.raises(RemoteSipError) as info:
        Dialog.uas(subscribe(record_routes=(routes,)), "t", SRC)
    assert info.value.status_hint == 400
    ok = ", ".join(f"<sip:p{i}.test;lr>" for i in range(MAX_ROUTE_SET))
    assert len(Dialog.uas(subscribe(record_routes=(ok,)), "t", SRC).route_set) == MAX_ROUTE_SET


def test_uac_dialog_confirmed_by_2xx_reverses_record_route() -> None:
    d = uac_dialog()
    assert not d.confirmed and d.key is None
    d.confirm_by_response(
        ok_response(
            record_routes=("<sip:p2.test;lr>", "<sip:p1.test;lr>"),
            contact="<sip:carol@203.0.113.5:5070;transport=tcp>",
        )
    )
    assert d.key == ("uac-1@gw.test", "ours", "theirs")
    # §12.1.2: the UAC reverses the Record-Route.
    assert d.route_set == ("<sip:p1.test;lr>", "<sip:p2.test;lr>")
    assert d.remote_target == "sip:carol@203.0.113.5:5070;transport=tcp"


def test_uac_dialog_confirmed_by_early_notify_keeps_order() -> None:
    """RFC 6665 §4.1.2.4: a NOTIFY before the 2xx builds the dialog as a UAS would."""
    d = uac_dialog()
    notify = Request(
        "NOTIFY",
        "sip:gw-user@192.0.2.10",
        Headers(
            (
                ("From", "<sip:carol@peer.test>;tag=n-tag"),
                ("To", "<sip:gw-user@gw.test>;tag=ours"),
                ("Call-ID", "uac-1@gw.test"),
                ("CSeq", "1 NOTIFY"),
                ("Record-Route", "<sip:p2.test;lr>, <sip:p1.test;lr>"),
                ("Contact", "<sip:carol@203.0.113.5>"),
            )
        ),
    )
    d.confirm_by_request(notify)
    d.accept_remote_cseq(notify)
    assert d.remote_tag == "n-tag"
    assert d.route_set == ("<sip:p2.test;lr>", "<sip:p1.test;lr>")
    assert d.remote_target == "sip:carol@203.0.113.5"
    assert d.remote_cseq == 1


def test_contact_and_record_route_helpers() -> None:
    resp = ok_response(contact="<sip:c@203.0.113.5?Subject=x>;expires=60")
    assert contact_target(resp) == "sip:c@203.0.113.5"  # URI headers stripped
    assert contact_target(ok_response()) is None
    assert record_route(ok_response(record_routes=("<sip:a.test;lr>",))) == ["<sip:a.test;lr>"]


# -- in-dialog requests -----------------------------------------------------------------


def confirmed(route_set: tuple[str, ...] = (), target: str = "sip:carol@203.0.113.5") -> Dialog:
    d = uac_dialog()
    d.remote_tag = "theirs"
    d.route_set = route_set
    d.remote_target = target
    d.local_cseq = 4
    return d


def test_new_request_with_empty_route_set() -> None:
    d = confirmed()
    req = d.new_request(
        "SUBSCRIBE", contact="<sip:gw@192.0.2.10>", headers=(("Event", "presence"),)
    )
    assert req.uri == "sip:carol@203.0.113.5"
    assert req.headers.get("CSeq") == "5 SUBSCRIBE"
    assert d.local_cseq == 5
    assert parse_name_addr(req.headers.get("To") or "").tag == "theirs"
    assert parse_name_addr(req.headers.get("From") or "").tag == "ours"
    assert req.headers.get("Call-ID") == "uac-1@gw.test"
    assert req.headers.get("Route") is None
    assert req.headers.get("Contact") == "<sip:gw@192.0.2.10>"
    assert (
        parse_message(serialize(req.replace(headers=req.headers.prepend("Via", VIA)))) is not None
    )


VIA = "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKx"


def test_new_request_loose_routing() -> None:
    d = confirmed(("<sip:p1.test;lr>", "<sip:p2.test;lr>"))
    req = d.new_request("NOTIFY")
    assert req.uri == "sip:carol@203.0.113.5"
    assert req.headers.get_lines("Route") == ["<sip:p1.test;lr>", "<sip:p2.test;lr>"]


def test_new_request_strict_routing() -> None:
    """§12.2.1.1: a strict first route becomes the Request-URI; the remote target goes
    last in Route."""
    d = confirmed(("<sip:p1.test>", "<sip:p2.test;lr>"))
    req = d.new_request("NOTIFY")
    assert req.uri == "sip:p1.test"
    assert req.headers.get_lines("Route") == ["<sip:p2.test;lr>", "<sip:carol@203.0.113.5>"]


def test_unconfirmed_request_has_no_to_tag_nor_route() -> None:
    d = uac_dialog()
    d.route_set = ("<sip:p1.test;lr>",)
    req = d.new_request("SUBSCRIBE")
    assert parse_name_addr(req.headers.get("To") or "").tag is None
    assert req.headers.get("Route") is None
    assert req.headers.get("CSeq") == "1 SUBSCRIBE"


def test_local_cseq_is_bounded() -> None:
    d = confirmed()
    d.local_cseq = 2**31 - 1
    with pytest.raises(LocalSipError):
        d.new_request("NOTIFY")


@pytest.mark.parametrize(
    ("remote", "incoming", "ok"),
    [(None, 1, True), (5, 6, True), (5, 5, False), (5, 4, False), (0, 2**32 - 1, True)],
)
def test_remote_cseq_ordering(remote: int | None, incoming: int, ok: bool) -> None:
    d = confirmed()
    d.remote_cseq = remote
    req = Request("NOTIFY", "sip:x@y.test", Headers((("CSeq", f"{incoming} NOTIFY"),)))
    if ok:
        d.accept_remote_cseq(req)
        assert d.remote_cseq == incoming
    else:
        with pytest.raises(RemoteSipError) as info:
            d.accept_remote_cseq(req)
        assert info.value.status_hint == 500  # §12.2.2
        assert d.remote_cseq == remote


def test_refresh_target() -> None:
    d = confirmed()
    d.refresh_target(ok_response(contact="<sip:carol@203.0.113.9:5099>"))
    assert d.remote_target == "sip:carol@203.0.113.9:5099"
    d.refresh_target(ok_response())
    assert d.remote_target == "sip:carol@203.0.113.9:5099"


# -- next hop -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("routes", "target", "expected"),
    [
        ((), "sip:c@203.0.113.5:5070", TransportAddress("udp", "203.0.113.5", 5070)),
        ((), "sip:c@203.0.113.5", TransportAddress("udp", "203.0.113.5", 5060)),
        ((), "sip:c@203.0.113.5;transport=tcp", TransportAddress("tcp", "203.0.113.5", 5060)),
        ((), "sips:c@203.0.113.5", TransportAddress("tls", "203.0.113.5", 5061)),
        ((), "sip:c@[2001:db8::1]:5080", TransportAddress("udp", "2001:db8::1", 5080)),
        ((), "sip:c@peer.test", SRC),  # a name: the caller's resolved destination
        ((), "sip:c@203.0.113.5;transport=sctp", SRC),
        (
            ("<sip:192.0.2.99:5999;lr>",),
            "sip:c@203.0.113.5",
            TransportAddress("udp", "192.0.2.99", 5999),
        ),
        (("<sip:proxy.test;lr>",), "sip:c@203.0.113.5", SRC),
        ((), "sip:c@198.51.100.7:5060", SRC),
    ],
)
def test_next_hop(routes: tuple[str, ...], target: str, expected: TransportAddress) -> None:
    assert confirmed(routes, target).next_hop() == expected


def test_next_hop_keeps_the_stream_connection() -> None:
    d = uac_dialog(TransportAddress("tcp", "203.0.113.5", 5060, connection=9))
    d.remote_tag = "x"
    d.remote_target = "sip:c@203.0.113.5;transport=tcp"
    assert d.next_hop().connection == 9


# -- persistence ------------------------------------------------------------------------


def test_dict_round_trip_through_json() -> None:
    d = Dialog.uas(subscribe(record_routes=("<sip:p1.test;lr>",)), "lt", SRC_TCP)
    d.local_cseq = 12
    data = json.loads(json.dumps(d.to_dict()))
    assert data["peer_host"] == "198.51.100.7" and data["transport"] == "tcp"
    back = Dialog.from_dict(data)
    assert back.key == d.key
    assert back.route_set == d.route_set
    assert (back.local_cseq, back.remote_cseq) == (12, 7)
    assert back.destination == SRC_TCP.without_connection()
    unconfirmed = Dialog.from_dict(uac_dialog().to_dict())
    assert unconfirmed.remote_tag is None and unconfirmed.remote_cseq is None


@pytest.mark.parametrize(
    "patch",
    [
        {"call_id": 5},
        {"call_id": "has space"},
        {"local_tag": "a;b"},
        {"remote_tag": "x y"},
        {"local_uri": "not a uri"},
        {"route_set": "<sip:p.test>"},
        {"route_set": [1]},
        {"route_set": ["<sip:p.test;lr>"] * (MAX_ROUTE_SET + 1)},
        {"local_cseq": -1},
        {"local_cseq": 2**31},
        {"local_cseq": True},
        {"remote_cseq": "3"},
        {"secure": "yes"},
        {"transport": "sctp"},
        {"peer_port": 0},
        {"peer_host": None},
    ],
)
def test_from_dict_refuses_malformed_records(patch: dict[str, object]) -> None:
    data = confirmed().to_dict()
    data.update(patch)
    with pytest.raises(LocalSipError):
        Dialog.from_dict(data)


_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.!%*_+`'~", min_size=1, max_size=12)
_host = st.sampled_from(["203.0.113.5", "peer.test", "[2001:db8::2]", "p.example.org"])


@settings(max_examples=150, deadline=None)
@given(
    tag=_token,
    rtag=_token,
    user=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.~", min_size=1, max_size=12),
    host=_host,
    routes=st.lists(st.tuples(_host, st.booleans()), max_size=4),
    lcseq=st.integers(0, 2**31 - 2),
    rcseq=st.one_of(st.none(), st.integers(0, 2**32 - 1)),
)
def test_property_round_trip_and_requests_parse(
    tag: str,
    rtag: str,
    user: str,
    host: str,
    routes: list[tuple[str, bool]],
    lcseq: int,
    rcseq: int | None,
) -> None:
    d = Dialog(
        call_id=f"{tag}@gw.test",
        local_tag=tag,
        local_uri=f"sip:{user}@gw.test",
        remote_uri=f"sip:{user}@{host}",
        remote_target=f"sip:{user}@{host}",
        destination=SRC,
        remote_tag=rtag,
        route_set=tuple(f"<sip:{h}{';lr' if lr else ''}>" for h, lr in routes),
        local_cseq=lcseq,
        remote_cseq=rcseq,
    )
    back = Dialog.from_dict(json.loads(json.dumps(d.to_dict())))
    assert back.to_dict() == d.to_dict()
    req = back.new_request("NOTIFY", headers=(("Event", "presence"),))
    parsed = parse_message(serialize(req.replace(headers=req.headers.prepend("Via", VIA))))
    assert isinstance(parsed, Request)
    assert parsed.headers.get("CSeq") == f"{lcseq + 1} NOTIFY"
    assert parse_name_addr(parsed.headers.get("To") or "").tag == rtag
    assert len(parsed.headers.get_all("Route")) == len(routes)
    assert isinstance(back.next_hop(), TransportAddress)


@settings(max_examples=200)
@given(
    st.integers(0, 2**31 - 1),
    st.none() | st.integers(0, 2**32 - 1),
    st.booleans(),
    st.integers(0, 2**31 - 1),
    st.none() | st.integers(0, 2**32 - 1),
)
def test_sequence_numbers_and_secure_share_a_slot_as_separate_fields(
    local: int, remote: int | None, secure: bool, local2: int, remote2: int | None
) -> None:
    """local_cseq, remote_cseq and secure are one packed slot (a dialog stays in the
    112-byte class); each reads back what was set, whatever the others hold."""
    import sys

    d = Dialog(
        call_id="c1",
        local_tag="t1",
        local_uri="sip:a@example.test",
        remote_uri="sip:b@example.test",
        remote_target="sip:b@192.0.2.1",
        destination=TransportAddress("udp", "192.0.2.1", 5060),
        local_cseq=local,
        remote_cseq=remote,
        secure=secure,
    )
    assert sys.getsizeof(d) <= 112
    assert (d.local_cseq, d.remote_cseq, d.secure) == (local, remote, secure)
    d.local_cseq = local2
    assert (d.local_cseq, d.remote_cseq, d.secure) == (local2, remote, secure)
    d.remote_cseq = remote2
    assert (d.local_cseq, d.remote_cseq, d.secure) == (local2, remote2, secure)
    d.secure = not secure
    assert (d.local_cseq, d.remote_cseq, d.secure) == (local2, remote2, not secure)
    again = Dialog.from_dict(json.loads(json.dumps(d.to_dict())))
    assert (again.local_cseq, again.remote_cseq, again.secure) == (local2, remote2, not secure)
    assert f"local_cseq={local2}, remote_cseq={remote2}, secure={not secure}" in repr(d)
    with pytest.raises(LocalSipError):
        d.local_cseq = 2**32
    with pytest.raises(LocalSipError):
        d.remote_cseq = -2
