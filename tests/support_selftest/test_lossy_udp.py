"""The lossy UDP relay: predicates, relaying with plain sockets, and SIPp retransmitting through it."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from support.lossy_udp import (
    DropPredicate,
    LossyUdpRelay,
    ThreadedLossyUdpRelay,
    drop_all,
    drop_any,
    drop_indices,
    drop_request,
    drop_response,
    sip_method,
    sip_status,
)
from support.sipp import EXAMPLES_DIR, Sipp, sipp_available

HERE = Path(__file__).resolve().parent
KEYS = {"from": "alice", "domain": "example.test", "text": "through the relay"}

#: Bound for one SIPp run through the relay: one retransmission costs T1 = 500 ms.
RUN_TIMEOUT_S = 15.0

MESSAGE = b"MESSAGE sip:bob@example.test SIP/2.0\r\nCSeq: 1 MESSAGE\r\n\r\nhi"
OPTIONS = b"OPTIONS sip:example.test SIP/2.0\r\nCSeq: 7 OPTIONS\r\n\r\n"
R202 = b"SIP/2.0 202 Accepted\r\nCSeq: 1 MESSAGE\r\n\r\n"
R202_OPTIONS = b"SIP/2.0 202 Accepted\r\nCSeq: 7 OPTIONS\r\n\r\n"
R200 = b"SIP/2.0 200 OK\r\nCSeq: 1 MESSAGE\r\n\r\n"


@pytest.mark.parametrize(
    ("data", "method", "status"),
    [
        (MESSAGE, "MESSAGE", None),
        (OPTIONS, "OPTIONS", None),
        (b"MESSAGE sip:bob@example.test SIP/2.0\n\n", "MESSAGE", None),
        (R202, None, 202),
        (b"SIP/2.0 486 Busy Here\r\n\r\n", None, 486),
        (b"MESSAGEsip:bob SIP/2.0\r\n", None, None),
        (b"SIP/2.0 2000 OK\r\n", None, None),
        (b"SIP/2.0 099 Low\r\n", None, None),
        (b"", None, None),
        (b"\x00\xff\r\n\r\n", None, None),
        (b"\r\n\r\n", None, None),  # a keep-alive (RFC 5626 §3.5.1)
    ],
)
def test_classification(data: bytes, method: str | None, status: int | None) -> None:
    assert sip_method(data) == method
    assert sip_status(data) == status


def run(predicate: DropPredicate, datagrams: list[tuple[str, bytes]]) -> list[bool]:
    """Feed (direction, bytes) through a predicate with per-direction indices."""
    counts = {"c2s": 0, "s2c": 0}
    out = []
    for direction, data in datagrams:
        out.append(predicate(direction, data, counts[direction]))  # type: ignore[arg-type]
        counts[direction] += 1
    return out


PREDICATE_CASES = [
    pytest.param(
        drop_request("MESSAGE"),
        [("c2s", OPTIONS), ("c2s", MESSAGE), ("c2s", MESSAGE), ("s2c", MESSAGE)],
        [False, True, False, False],
        id="first-MESSAGE-only",
    ),
    pytest.param(
        drop_request("MESSAGE", times=2, direction="s2c"),
        [("c2s", MESSAGE), ("s2c", MESSAGE), ("s2c", R202), ("s2c", MESSAGE), ("s2c", MESSAGE)],
        [False, True, False, True, False],
        id="two-MESSAGEs-server-to-client",
    ),
    pytest.param(
        drop_response(202),
        [("s2c", R200), ("s2c", R202), ("s2c", R202)],
        [False, True, False],
        id="first-202",
    ),
    pytest.param(
        drop_response(202, method="MESSAGE"),
        [("s2c", R202_OPTIONS), ("s2c", R202)],
        [False, True],
        id="first-202-to-MESSAGE",
    ),
    pytest.param(
        drop_indices("c2s", 0, 2),
        [("c2s", b"a"), ("s2c", b"b"), ("c2s", b"c"), ("c2s", b"d")],
        [True, False, False, True],
        id="indices-per-direction",
    ),
    pytest.param(
        drop_all("s2c"),
        [("c2s", b"a"), ("s2c", b"b")],
        [False, True],
        id="black-hole-one-way",
    ),
    pytest.param(
        drop_any(drop_request("MESSAGE"), drop_response(200)),
        [("c2s", MESSAGE), ("s2c", R200), ("c2s", MESSAGE), ("s2c", R200)],
        [True, True, False, False],
        id="any",
    ),
    pytest.param(
        drop_request("MESSAGE", times=0),
        [("c2s", MESSAGE)],
        [False],
        id="times-zero",
    ),
]


@pytest.mark.parametrize(("predicate", "datagrams", "expected"), PREDICATE_CASES)
def test_predicates(
    predicate: DropPredicate, datagrams: list[tuple[str, bytes]], expected: list[bool]
) -> None:
    assert run(predicate, datagrams) == expected


def test_predicate_refusals() -> None:
    with pytest.raises(ValueError):
        drop_request("MESSAGE", times=-1)
    with pytest.raises(ValueError):
        drop_response(200, times=-1)
    with pytest.raises(ValueError):
        LossyUdpRelay(("192.0.2.1", 5060))


class Collector(asyncio.DatagramProtocol):
    def __init__(self, echo: bool = False) -> None:
        self.echo = echo
        self.got: asyncio.Queue[tuple[bytes, Any]] = asyncio.Queue()
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.got.put_nowait((data, addr))
        if self.echo:
            self.transport.sendto(b"echo " + data, addr)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.transport.get_extra_info("sockname")[:2]
        return (host, port)


async def endpoint(echo: bool = False) -> Collector:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_datagram_endpoint(
        lambda: Collector(echo), local_addr=("127.0.0.1", 0)
    )
    return proto


async def test_relay_forwards_drops_and_counts() -> None:
    server = await endpoint(echo=True)
    client = await endpoint()
    stranger = await endpoint()
    try:
        async with LossyUdpRelay(server.address, drop=drop_indices("c2s", 1)) as relay:
            assert relay.address[0] == "127.0.0.1" and relay.port != server.address[1]
            # The server speaks first: nowhere to relay it yet.
            server.transport.sendto(b"early", relay.upstream_address)
            for n in range(3):
                client.transport.sendto(f"d{n}".encode(), relay.address)
            await relay.wait_until(lambda r: r.forwarded["s2c"] == 2, timeout=5)
            got = [(await server.got.get()) for _ in range(2)]
            assert [data for data, _ in got] == [b"d0", b"d2"]
            assert {addr[1] for _, addr in got} == {relay.upstream_address[1]}
            echoes = [(await client.got.get()) for _ in range(2)]
            assert [data for data, _ in echoes] == [b"echo d0", b"echo d2"]
            assert {addr[1] for _, addr in echoes} == {relay.port}
            # Datagrams to the upstream socket from anyone but the server are discarded.
            stranger.transport.sendto(b"spoof", relay.upstream_address)
            await asyncio.sleep(0.05)
            assert client.got.empty()
            assert relay.forwarded == {"c2s": 2, "s2c": 2}
            assert relay.dropped == {"c2s": 1, "s2c": 0}
            assert relay.stray == 2
            assert relay.client == client.address
            assert [(r.direction, r.index, r.dropped) for r in relay.seen("c2s")] == [
                ("c2s", 0, False),
                ("c2s", 1, True),
                ("c2s", 2, False),
            ]
            relay.set_drop(drop_all())
            client.transport.sendto(b"lost", relay.address)
            await relay.wait_until(lambda r: r.dropped["c2s"] == 2, timeout=5)
            with pytest.raises(TimeoutError):
                await relay.wait_until(lambda r: r.forwarded["c2s"] == 99, timeout=0.05)
    finally:
        for proto in (server, client, stranger):
            proto.transport.close()


def test_threaded_relay_from_blocking_code() -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client,
    ):
        server.bind(("127.0.0.1", 0))
        client.bind(("127.0.0.1", 0))
        server.settimeout(5)
        client.settimeout(5)
        with ThreadedLossyUdpRelay(server.getsockname(), drop=drop_request("MESSAGE")) as relay:
            client.sendto(MESSAGE, relay.address)
            client.sendto(OPTIONS, relay.address)
            data, upstream = server.recvfrom(2048)
            assert data == OPTIONS
            server.sendto(R202_OPTIONS, upstream)
            assert client.recvfrom(2048) == (R202_OPTIONS, relay.address)
            assert relay.dropped["c2s"] == 1 and relay.forwarded == {"c2s": 1, "s2c": 1}


needs_sipp = pytest.mark.skipif(not sipp_available(), reason="sipp is not installed (sip-tester)")


@pytest.mark.sipp
@needs_sipp
async def test_sipp_retransmits_a_lost_message(tmp_path: Path) -> None:
    """The first MESSAGE is lost; SIPp's retransmission (T1 = 500 ms) gets through."""
    with Sipp.uas(EXAMPLES_DIR / "message_uas.xml", calls=1, workdir=tmp_path) as uas:
        async with LossyUdpRelay(
            (uas.host, uas.port), drop=drop_request("MESSAGE", direction="c2s")
        ) as relay:
            host, port = relay.address
            with Sipp.uac(
                HERE / "message_uac_rtd.xml",
                f"{host}:{port}",
                calls=1,
                service="bob",
                keys=KEYS,
                trace_rtt=True,
                workdir=tmp_path,
            ) as uac:
                result = await uac.wait_async(RUN_TIMEOUT_S)
                assert result.ok, result.describe()
                assert (result.successful, result.failed, result.retransmissions) == (1, 0, 1)
                assert len(uac.messages("MESSAGE", "sent")) == 2
                stats = uac.response_times("1")
                assert stats is not None and stats.count == 1
                assert stats.min_ms >= 400.0  # the retransmission interval shows in the rtt
            assert relay.dropped == {"c2s": 1, "s2c": 0}
            assert relay.forwarded == {"c2s": 1, "s2c": 1}
        server = await uas.wait_async(RUN_TIMEOUT_S)
        assert server.ok, server.describe()
        [received] = uas.messages("MESSAGE")
        assert received.body == b"through the relay #1\r\n"


@pytest.mark.sipp
@needs_sipp
def test_sipp_uas_answers_the_retransmission_of_a_lost_response(tmp_path: Path) -> None:
    """The 200 is lost; the UAC retransmits and the UAS repeats its 200 (RFC 3261 §17.2.2).

    SIPp repeats its last response only while the call lives, hence the lingering scenario.
    """
    with Sipp.uas(HERE / "message_uas_linger.xml", calls=1, workdir=tmp_path) as uas:
        with ThreadedLossyUdpRelay((uas.host, uas.port), drop=drop_response(200)) as relay:
            host, port = relay.address
            with Sipp.uac(
                EXAMPLES_DIR / "message_uac.xml",
                f"{host}:{port}",
                calls=1,
                service="bob",
                keys=KEYS,
                workdir=tmp_path,
            ) as uac:
                result = uac.wait(RUN_TIMEOUT_S)
                assert result.ok, result.describe()
                assert result.retransmissions == 1
            assert relay.dropped == {"c2s": 0, "s2c": 1}
            assert relay.forwarded == {"c2s": 2, "s2c": 1}
        assert uas.wait(RUN_TIMEOUT_S).successful == 1
