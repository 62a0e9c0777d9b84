"""XMPP -> SIP pager path under load (issue 2): the bridge reuses a next hop resolved less
than ``NEXT_HOP_REUSE_S`` ago, and :class:`SipSender` transmits once per turn of the event loop
what was sent during it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sipxmpp.gateway.runtime.app import domain_map_from
from sipxmpp.gateway.runtime.bridge import NEXT_HOP_REUSE_S, NextHopError, PagerBridge
from sipxmpp.gateway.runtime.dispatch import SipDispatcher, SipSender
from sipxmpp.gateway.settings import Settings
from sipxmpp.gateway.sip.address import TransportAddress
from sipxmpp.gateway.sip.ids import RandomIds
from sipxmpp.gateway.sip.message import Headers, Request, Response
from sipxmpp.gateway.xmpp.errors import StanzaErrorException
from sipxmpp.mapping.model import XmppMessage

COMPONENT = "sip.example.test"
VHOST = "example.test"
PROXY = TransportAddress("udp", "127.0.0.1", 5080)


def _settings() -> Settings:
    return Settings.model_validate(
        {
            "sip": {"udp_port": 5070},
            "xmpp": {"component_jid": COMPONENT, "secret": "s"},
            "domains": {
                "sip": [{"sip": VHOST, "xmpp": COMPONENT}],
                "xmpp": [{"xmpp": VHOST, "sip": VHOST}],
            },
        }
    )


class _Sip:
    def __init__(self) -> None:
        self.sent: list[tuple[Request, TransportAddress]] = []

    def send_request(self, request: Request, destination: TransportAddress) -> str:
        self.sent.append((request, destination))
        return f"key{len(self.sent)}"

    def send_response(self, response: object) -> None:
        raise AssertionError("no response expected")


class _Xmpp:
    up = True

    def send_message(self, msg: XmppMessage) -> None:
        raise AssertionError("no stanza expected")


class _Resolver:
    """Counts resolutions; answers PROXY, or fails for users named ``unroutable``."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, uri: str) -> TransportAddress:
        self.calls.append(uri)
        if "unroutable" in uri:
            raise NextHopError(f"no next hop for {uri}")
        return PROXY


def _bridge(resolve: _Resolver, sip: _Sip, clock: list[float]) -> PagerBridge:
    settings = _settings()
    return PagerBridge(
        settings=settings,
        sip=sip,
        xmpp=_Xmpp(),
        resolve=resolve,
        domains=domain_map_from(settings),
        ids=RandomIds(),
        clock=lambda: clock[0],
    )


def _msg(to_user: str, n: int) -> XmppMessage:
    return XmppMessage(
        from_jid=f"carol@{VHOST}/pc", to_jid=f"{to_user}@{COMPONENT}", body=f"m{n}", type="chat"
    )


async def test_a_hop_is_reused_for_the_same_uri_within_the_window() -> None:
    resolve, sip, clock = _Resolver(), _Sip(), [100.0]
    bridge = _bridge(resolve, sip, clock)
    for n in range(3):  # e.g. the messages of one read of the XMPP stream
        await bridge.on_message(_msg("alice", n))
        clock[0] += NEXT_HOP_REUSE_S / 4
    await bridge.on_message(_msg("dave", 3))
    assert resolve.calls == [f"sip:alice@{VHOST}", f"sip:dave@{VHOST}"]
    assert [dest for _, dest in sip.sent] == [PROXY] * 4
    clock[0] += NEXT_HOP_REUSE_S  # past the window: resolved afresh
    await bridge.on_message(_msg("alice", 4))
    assert resolve.calls[2:] == [f"sip:alice@{VHOST}"]


async def test_failed_resolution_is_not_remembered() -> None:
    resolve, sip = _Resolver(), _Sip()
    bridge = _bridge(resolve, sip, [100.0])
    for n in range(2):
        with pytest.raises(StanzaErrorException) as info:
            await bridge.on_message(_msg("unroutable", n))
        assert info.value.error.condition == "remote-server-not-found"
    assert len(resolve.calls) == 2
    assert sip.sent == []


class _Core:
    def __init__(self) -> None:
        self.requests = 0
        self.responses = 0

    def send_request(self, request: Request, destination: TransportAddress, now: float) -> str:
        self.requests += 1
        return f"tx{self.requests}"

    def send_response(self, response: Response, now: float) -> None:
        self.responses += 1


class _Transport:
    def __init__(self) -> None:
        self.core = _Core()
        self.transmits = 0

    def transmit(self) -> None:
        self.transmits += 1


class _Owner:
    def handle_sip_event(self, event: object) -> None:
        pass


REQUEST = Request("MESSAGE", f"sip:alice@{VHOST}", Headers(()), b"")
RESPONSE = Response(202, "Accepted", Headers(()), b"")


async def test_sender_transmits_requests_once_per_turn() -> None:
    transport = _Transport()
    sender = SipSender(transport, SipDispatcher(default=_Owner()), _Owner())  # type: ignore[arg-type]
    keys = [sender.send_request(REQUEST, PROXY) for _ in range(3)]
    assert keys == ["tx1", "tx2", "tx3"]
    assert transport.transmits == 0  # queued in the core until the turn ends
    await asyncio.sleep(0)
    assert transport.transmits == 1
    await asyncio.sleep(0)
    assert transport.transmits == 1


async def test_sender_transmits_a_response_at_once() -> None:
    transport = _Transport()
    sender = SipSender(transport, SipDispatcher(default=_Owner()), _Owner())  # type: ignore[arg-type]
    sender.send_response(RESPONSE)
    assert transport.core.responses == 1 and transport.transmits == 1


async def test_sender_registers_the_owner_at_once() -> None:
    transport = _Transport()
    dispatcher = SipDispatcher(default=_Owner())
    owner: Any = _Owner()
    sender = SipSender(transport, dispatcher, owner)  # type: ignore[arg-type]
    key = sender.send_request(REQUEST, PROXY)
    assert dispatcher._owners[key] is owner  # a response in this turn finds its service
