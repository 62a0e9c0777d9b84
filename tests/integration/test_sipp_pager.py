"""Pager-mode IM end to end with independent implementations on both sides.

The gateway runs from its documented CLI (`sipxmpp run --config FILE`) as its own process;
SIPp plays the SIP users and the SIP partition's proxy; a real Prosody and slixmpp clients
play the XMPP partition. Covers: SIP -> XMPP delivery, XMPP -> SIP delivery, an error in each
direction, and lost UDP datagrams in each direction (retransmitted, delivered exactly once).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.lossy_udp import LossyUdpRelay, drop_any, drop_request, drop_response
from support.prosody import ProsodyComponent, ProsodyUser, make_prosody_fixture
from support.sipp import EXAMPLES_DIR, Sipp, free_udp_port, sipp_available
from support.xmpp_client import XmppTestClient

pytestmark = [
    pytest.mark.prosody,
    pytest.mark.sipp,
    pytest.mark.skipif(
        not sipp_available(), reason="sipp is not installed (apt-get install sip-tester)"
    ),
]

COMPONENT = "sip.example.test"
SECRET = "sipp-e2e-secret"
UAC = EXAMPLES_DIR / "message_uac.xml"
UAS = EXAMPLES_DIR / "message_uas.xml"
UAS_REJECT = EXAMPLES_DIR / "message_uas_reject.xml"

prosody = make_prosody_fixture(
    scope="module",
    vhost="example.test",
    components=[ProsodyComponent(COMPONENT, SECRET)],
    users=[ProsodyUser("bob", "bob-pw")],
)


class CliGateway:
    """`sipxmpp run --config FILE` in a child process, on free loopback ports."""

    def __init__(self, workdir: Path, prosody: Any, proxy_port: int, *, t1: float = 0.5) -> None:
        self.port = free_udp_port()
        self.config = workdir / "gateway.toml"
        self.config.write_text(
            f"""
[sip]
listen_host = "127.0.0.1"
udp_port = {self.port}
tcp_port = 0
outbound_proxy = "sip:127.0.0.1:{proxy_port};transport=udp"
t1 = {t1}

[xmpp]
component_jid = "{COMPONENT}"
secret = "{SECRET}"
server_host = "127.0.0.1"
server_port = {prosody.component_port}
reconnect_min = 0.2

[[domains.sip]]
sip = "example.test"
xmpp = "{COMPONENT}"

[[domains.xmpp]]
xmpp = "example.test"

[presence]
store_url = "sqlite://:memory:"

[log]
level = "info"
format = "json"
"""
        )
        self.log = workdir / "gateway.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIPXMPP_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sipxmpp.gateway", "run", "--config", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("wb"),
            env=env,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {self.log.read_text()}")
            if '"xmpp.link", "up": true' in self.log.read_text():
                return
            time.sleep(0.05)
        raise RuntimeError(f"gateway did not come up: {self.log.read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            assert self.proc.returncode == 0, self.log.read_text()


@pytest.fixture
def gateway_factory(tmp_path: Path, prosody: Any) -> Iterator[Callable[..., CliGateway]]:
    started: list[CliGateway] = []

    def make(proxy_port: int, **kw: Any) -> CliGateway:
        gw = CliGateway(tmp_path, prosody, proxy_port, **kw)
        gw.start()
        started.append(gw)
        return gw

    yield make
    for gw in started:
        gw.stop()


@pytest.fixture
async def bob(prosody: Any) -> AsyncIterator[XmppTestClient]:
    async with XmppTestClient(
        "bob@example.test/desk", "bob-pw", "127.0.0.1", prosody.c2s_port
    ) as client:
        await client.disco_info("example.test")  # bob's presence is processed by now
        yield client


def uac(target_port: int, calls: int, text: str, *, to: str = "bob", rate: int = 20) -> Sipp:
    return Sipp.uac(
        UAC,
        f"127.0.0.1:{target_port}",
        calls=calls,
        rate=rate,
        service=to,
        keys={"from": "alice", "domain": "example.test", "text": text},
    )


async def collect_bodies(bob: XmppTestClient, prefix: str, n: int, timeout: float) -> list[str]:
    got: list[str] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while len(got) < n:
        remaining = deadline - asyncio.get_running_loop().time()
        msg = await bob.wait_message(lambda m: str(m["body"]).startswith(prefix), remaining)
        got.append(str(msg["body"]))
    return got


async def test_sipp_uac_messages_reach_xmpp_user(
    gateway_factory: Callable[..., CliGateway], bob: XmppTestClient
) -> None:
    gw = gateway_factory(free_udp_port())
    n = 20
    with uac(gw.port, n, "Grüße von SIPp") as sipp:
        bodies = await collect_bodies(bob, "Grüße von SIPp", n, 20)
        result = await sipp.wait_async(20)
    assert result.ok and result.successful == n, result.describe()
    assert sorted(b.strip() for b in bodies) == sorted(
        f"Grüße von SIPp #{i}" for i in range(1, n + 1)
    )
    await bob.expect_no_message(0.3)  # nothing twice


async def test_xmpp_messages_reach_sipp_uas(
    gateway_factory: Callable[..., CliGateway], bob: XmppTestClient
) -> None:
    n = 10
    with Sipp.uas(UAS, calls=n) as phone:
        gateway_factory(phone.port)
        for i in range(n):
            bob.send_message("alice@sip.example.test", f"from XMPP ü #{i}", mtype="normal")
        result = await phone.wait_async(20)
        received = phone.messages("MESSAGE")
    assert result.successful == n, result.describe()
    assert sorted(m.body.decode() for m in received) == sorted(
        f"from XMPP ü #{i}" for i in range(n)
    )
    first = received[0]
    assert first.start_line == "MESSAGE sip:alice@example.test SIP/2.0"
    assert "<sip:bob@example.test;gr=desk>" in (first.header("from") or "")
    await bob.expect_no_message(0.5)  # 200 OK is not reported back (RFC 7572 §4)


async def test_sip_error_is_mapped_to_stanza_error(
    gateway_factory: Callable[..., CliGateway], bob: XmppTestClient
) -> None:
    with Sipp.uas(UAS_REJECT, calls=1) as phone:
        gateway_factory(phone.port)
        mid = bob.send_message("alice@sip.example.test", "busy?", mtype="normal")
        err = await bob.wait_message(lambda m: m["type"] == "error", 10)
        await phone.wait_async(10)
    assert err["id"] == mid
    assert err["error"]["condition"] == "recipient-unavailable"  # RFC 7247 Table 3: 486


async def test_xmpp_error_is_reported_to_sip_sender(
    gateway_factory: Callable[..., CliGateway],
) -> None:
    """bob's server refuses a message for an unknown user; alice learns it by a SIP notice."""
    with Sipp.uas(UAS, calls=1) as alices_proxy:
        gw = gateway_factory(alices_proxy.port)
        with uac(gw.port, 1, "anyone?", to="nobody") as sipp:
            result = await sipp.wait_async(10)
        assert result.ok, result.describe()  # 202: handed to the XMPP server
        await alices_proxy.wait_async(10)
        notices = alices_proxy.messages("MESSAGE")
    assert len(notices) == 1
    notice = notices[0]
    assert notice.start_line == "MESSAGE sip:alice@example.test SIP/2.0"
    assert notice.header("in-reply-to")  # the Call-ID of alice's MESSAGE
    assert b"could not be delivered" in notice.body
    assert b"service-unavailable" in notice.body


async def test_lost_datagrams_towards_xmpp_are_retransmitted_and_delivered_once(
    gateway_factory: Callable[..., CliGateway], bob: XmppTestClient
) -> None:
    gw = gateway_factory(free_udp_port())
    # Lose SIPp's first MESSAGE and the gateway's first 202: SIPp retransmits twice (RFC 3261
    # Timer E); the gateway's server transaction absorbs the retransmission of a request it
    # already relayed (§17.2.2), so bob sees the message exactly once.
    async with LossyUdpRelay(
        ("127.0.0.1", gw.port), drop=drop_any(drop_request("MESSAGE"), drop_response(202))
    ) as relay:
        with uac(relay.port, 1, "through loss") as sipp:
            result = await sipp.wait_async(15)
        assert result.ok, result.describe()
        assert sum(relay.dropped.values()) == 2
    await collect_bodies(bob, "through loss", 1, 10)
    await bob.expect_no_message(1.0)


async def test_lost_datagram_towards_sip_is_retransmitted_and_delivered_once(
    gateway_factory: Callable[..., CliGateway], bob: XmppTestClient
) -> None:
    with Sipp.uas(UAS, calls=1) as phone:
        async with LossyUdpRelay(("127.0.0.1", phone.port), drop=drop_request("MESSAGE")) as relay:
            gateway_factory(relay.port, t1=0.1)
            bob.send_message("alice@sip.example.test", "despite loss", mtype="normal")
            result = await phone.wait_async(15)
            assert sum(relay.dropped.values()) == 1
        received = phone.messages("MESSAGE")
    assert result.successful == 1, result.describe()
    assert [m.body for m in received] == [b"despite loss"]
    await bob.expect_no_message(1.0)  # no error came back
