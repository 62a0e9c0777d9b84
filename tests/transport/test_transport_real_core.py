"""The transport edge driving the real sans-I/O SipEndpoint: OPTIONS between two gateways
on 127.0.0.1 over UDP, TCP and TLS, answered by a tiny transaction-user loop."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from transport_fake_core import until

from sipxmpp.gateway.sip import (
    GATEWAY_CAPABILITIES,
    EndpointConfig,
    RandomIds,
    RequestReceived,
    ResponseReceived,
    SipEndpoint,
    SipEvent,
    TransportAddress,
    TransportFailed,
    make_request,
    options_response,
)
from sipxmpp.gateway.transport import (
    BoundAddresses,
    ListenAddress,
    SipTransportManager,
    TlsSettings,
    TransportConfig,
)
from support.certs import CertFiles, TestPki


class TinyTu:
    """Drains the endpoint's events; answers OPTIONS with the gateway's capabilities."""

    def __init__(self, answer: bool) -> None:
        self.answer = answer
        self.events: list[SipEvent] = []
        self.manager: SipTransportManager | None = None

    def factory(self, bound: BoundAddresses) -> SipEndpoint:
        return SipEndpoint(EndpointConfig(local=bound, user_agent="sipxmpp-test"), RandomIds())

    @property
    def core(self) -> SipEndpoint:
        assert self.manager is not None
        core = self.manager.core
        assert isinstance(core, SipEndpoint)
        return core

    def on_activity(self) -> None:
        core = self.core
        while (event := core.next_event()) is not None:
            self.events.append(event)
            if self.answer and isinstance(event, RequestReceived):
                response = options_response(event.request, GATEWAY_CAPABILITIES, to_tag="b-tag")
                core.send_response(response, asyncio.get_running_loop().time())

    def of_type(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


def config(transport: str, files: CertFiles | None, pki: TestPki | None) -> TransportConfig:
    if transport != "tls":
        return TransportConfig()
    assert files is not None and pki is not None
    tls = TlsSettings(certfile=str(files.cert), keyfile=str(files.key), cafile=str(pki.ca_cert))
    return TransportConfig(tls_listen=ListenAddress(), tls=tls)


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_options_round_trip_with_the_real_endpoint(
    transport: str, pki: TestPki, gw_cert: CertFiles, peer_cert: CertFiles
) -> None:
    tu_a, tu_b = TinyTu(answer=False), TinyTu(answer=True)
    manager_a = SipTransportManager(
        config(transport, gw_cert, pki), tu_a.factory, on_activity=tu_a.on_activity
    )
    manager_b = SipTransportManager(
        config(transport, peer_cert, pki), tu_b.factory, on_activity=tu_b.on_activity
    )
    tu_a.manager, tu_b.manager = manager_a, manager_b
    async with manager_a, manager_b:
        host, port = manager_b.local_addresses[transport]
        identity = "peer.example.test" if transport == "tls" else None
        dest = TransportAddress(transport, host, port, peer_identity=identity)  # type: ignore[arg-type]
        request = make_request(
            "OPTIONS",
            "sip:peer.example.test",
            from_addr="sip:alice@gw.example.test",
            from_tag="a-tag",
            to_addr="sip:peer.example.test",
            call_id=f"options-{transport}",
            cseq=1,
            headers=[("Accept", "application/sdp")],
        )
        key = tu_a.core.send_request(request, dest, asyncio.get_running_loop().time())
        manager_a.transmit()
        await until(lambda: tu_a.of_type(ResponseReceived))
        (received,) = tu_a.of_type(ResponseReceived)
        assert received.transaction == key
        assert received.response.status == 200
        assert "OPTIONS" in (received.response.headers.get("Allow") or "")
        (incoming,) = tu_b.of_type(RequestReceived)
        assert incoming.request.method == "OPTIONS"
        assert incoming.source.transport == transport
        if transport == "udp":
            # The answer went to the source port, which is A's listening port.
            assert incoming.source.port == manager_a.local_addresses["udp"][1]
        else:
            # The answer came back on the connection A opened (RFC 3261 §18.2.2).
            (conn_a,) = manager_a.connections()
            (conn_b,) = manager_b.connections()
            assert conn_a.outbound and not conn_b.outbound
            assert incoming.source.connection == conn_b.id
            assert conn_b.remote == conn_a.local
        if transport == "tls":
            assert incoming.source.peer_identity == "gw.example.test"
        assert tu_a.of_type(TransportFailed) == []


async def test_unreachable_tcp_peer_fails_the_transaction_at_once() -> None:
    """A refused connect becomes TransportFailed (RFC 3261 §17.1.4), not a Timer F wait."""
    import socket

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    dead_port = probe.getsockname()[1]
    probe.close()
    tu = TinyTu(answer=False)
    manager = SipTransportManager(TransportConfig(), tu.factory, on_activity=tu.on_activity)
    tu.manager = manager
    async with manager:
        request = make_request(
            "OPTIONS",
            "sip:peer.example.test",
            from_addr="sip:alice@gw.example.test",
            from_tag="a-tag",
            to_addr="sip:peer.example.test",
            call_id="options-dead",
            cseq=1,
        )
        dest = TransportAddress("tcp", "127.0.0.1", dead_port)
        key = tu.core.send_request(request, dest, asyncio.get_running_loop().time())
        manager.transmit()
        await until(lambda: tu.of_type(TransportFailed))
        assert tu.of_type(TransportFailed)[0].transaction == key
