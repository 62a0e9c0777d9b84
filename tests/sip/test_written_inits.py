"""Dataclasses of the SIP core whose ``__init__`` is written out (``init=False``) so that mypyc
compiles it (``sipxmpp.native``, "Dataclasses"): each must take exactly the dataclass's fields,
in order, with the same defaults, and stay frozen where the dataclass is frozen."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest

from sipxmpp.gateway.sip import parser, subscription
from sipxmpp.gateway.sip.address import TransportAddress
from sipxmpp.gateway.sip.grammar import CSeq, NameAddr, SipUri, Via
from sipxmpp.gateway.sip.message import Headers, Request, Response

WRITTEN: list[type[Any]] = [
    Headers,
    Request,
    Response,
    TransportAddress,
    SipUri,
    NameAddr,
    Via,
    CSeq,
    parser._Head,
    subscription._Args,
]


def _default(f: dataclasses.Field[Any]) -> object:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return inspect.Parameter.empty


@pytest.mark.parametrize("cls", WRITTEN, ids=lambda c: c.__name__)
def test_written_init_takes_the_fields_in_order_with_their_defaults(cls: type[Any]) -> None:
    assert dataclasses.is_dataclass(cls)
    if not inspect.isfunction(cls.__init__):  # compiled: no signature to read
        pytest.skip("compiled class (scripts/test.sh also runs these tests on the source)")
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    fields = dataclasses.fields(cls)
    assert [p.name for p in params] == [f.name for f in fields]
    assert all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params)
    assert [p.default for p in params] == [_default(f) for f in fields]


def test_written_inits_keep_equality_replace_and_immutability() -> None:
    via = Via("UDP", "192.0.2.1", 5060, (("branch", "z9hG4bK1"),))
    assert via == Via(
        transport="UDP", host="192.0.2.1", port=5060, params=(("branch", "z9hG4bK1"),)
    )
    assert dataclasses.replace(via, port=5070).port == 5070
    with pytest.raises(dataclasses.FrozenInstanceError):
        via.port = 1  # type: ignore[misc]
    request = Request("NOTIFY", "sip:w@example.test", Headers((("CSeq", "2 NOTIFY"),)), b"x")
    assert request.replace(body=b"y") == Request(
        "NOTIFY", "sip:w@example.test", Headers((("CSeq", "2 NOTIFY"),)), b"y"
    )
    assert Response(200, "OK").headers == Headers()
    assert hash(CSeq(1, "NOTIFY")) == hash(CSeq(1, "NOTIFY"))
    assert TransportAddress("udp", "127.0.0.1", 5060).connection is None
    assert str(NameAddr(SipUri("example.test", "w"), params=(("tag", "a"),))) == (
        "<sip:w@example.test>;tag=a"
    )
