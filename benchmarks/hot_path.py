"""The gateway's per-message work in one process, without sockets: a quick CPU check.

This drives the same objects the running gateway uses on its pager-mode hot path (the SIP
core, the runtime's :class:`PagerBridge`, the mapping and the XMPP stanza conversion) with
pre-built SIP datagrams and XMPP stanzas, and prints the CPU µs per message of each
direction. The socket and event-loop costs are not included: ``im_throughput.py`` measures
the whole gateway; this isolates the Python work, for before/after comparisons of a change
and for profiling it (``--profile``)::

    .venv/bin/python benchmarks/hot_path.py [--count 20000] [--profile sip-xmpp|xmpp-sip]

* SIP -> XMPP: a MESSAGE datagram into ``SipEndpoint.receive_datagram``, the events into
  ``PagerBridge.handle_sip_event`` (202 through the core, the stanza through
  ``convert.message_to_xml``), the core's datagrams drained.
* XMPP -> SIP: a ``<message/>`` through slixmpp's parser setup (``XMLPullParser``) and
  ``convert.message_from_element``, ``PagerBridge.on_message`` (the request through the
  core), then the 200 response datagram back into the core and its event into the bridge.

The clock advances 1 ms per message so that transactions expire (Timer J/K) as they do in
a steady run, and ``handle_timer`` runs once per simulated millisecond.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# SIPXMPP_SRC points at another checkout's src/ (e.g. an exported older commit) for A/B runs.
sys.path.insert(0, os.environ.get("SIPXMPP_SRC") or str(REPO / "src"))

from sipxmpp.gateway.runtime.app import domain_map_from  # noqa: E402
from sipxmpp.gateway.runtime.bridge import PagerBridge  # noqa: E402
from sipxmpp.gateway.settings import Settings  # noqa: E402
from sipxmpp.gateway.sip.address import TransportAddress  # noqa: E402
from sipxmpp.gateway.sip.core import EndpointConfig, SipEndpoint  # noqa: E402
from sipxmpp.gateway.sip.ids import RandomIds  # noqa: E402
from sipxmpp.gateway.sip.message import Request, Response  # noqa: E402
from sipxmpp.gateway.xmpp.convert import message_from_element, message_to_xml  # noqa: E402
from sipxmpp.mapping.model import XmppMessage  # noqa: E402

COMPONENT = "sip.example.test"
VHOST = "example.test"
GW = ("127.0.0.1", 5070)
PEER = TransportAddress("udp", "127.0.0.1", 5060)
PROXY = TransportAddress("udp", "127.0.0.1", 5080)


def _settings() -> Settings:
    return Settings.model_validate(
        {
            "sip": {"udp_port": GW[1], "outbound_proxy": f"sip:{PROXY.host}:{PROXY.port}"},
            "xmpp": {"component_jid": COMPONENT, "secret": "s"},
            "domains": {
                "sip": [{"sip": VHOST, "xmpp": COMPONENT}],
                "xmpp": [{"xmpp": VHOST, "sip": VHOST}],
            },
            "log": {"level": "warning"},
        }
    )


class _Sip:
    def __init__(self, core: SipEndpoint, clock: list[float]) -> None:
        self.core = core
        self.clock = clock

    def send_request(self, request: Request, destination: TransportAddress) -> str:
        return self.core.send_request(request, destination, self.clock[0])

    def send_response(self, response: object) -> None:
        assert isinstance(response, Response)
        self.core.send_response(response, self.clock[0])


class _Xmpp:
    up = True

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send_message(self, msg: XmppMessage) -> None:
        self.sent.append(message_to_xml(msg, component_domain=COMPONENT).encode())


def _run_now(coro: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine that never suspends (the next hop here is an IP literal)."""
    try:
        coro.send(None)
    except StopIteration:
        return
    raise RuntimeError("the coroutine suspended")


class Harness:
    def __init__(self) -> None:
        settings = _settings()
        self.clock = [1000.0]
        self.core = SipEndpoint(EndpointConfig(local={"udp": GW}), RandomIds())
        self.xmpp = _Xmpp()

        async def resolve(uri: str) -> TransportAddress:
            return PROXY

        self.bridge = PagerBridge(
            settings=settings,
            sip=_Sip(self.core, self.clock),
            xmpp=self.xmpp,
            resolve=resolve,
            domains=domain_map_from(settings),
            ids=RandomIds(),
            clock=lambda: self.clock[0],
        )
        self.sent_datagrams = 0

    def _tick(self) -> None:
        self.clock[0] += 0.001
        self.core.handle_timer(self.clock[0])

    def _drain(self) -> list[tuple[TransportAddress, bytes]]:
        while (event := self.core.next_event()) is not None:
            self.bridge.handle_sip_event(event)
        out = self.core.data_to_send()
        self.sent_datagrams += len(out)
        return out

    def sip_to_xmpp(self, n: int) -> None:
        body = f"ts 1795308705.000000 374184.000000 n {n} r s1".encode()
        datagram = (
            f"MESSAGE sip:bob@{VHOST} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-{n}-bench;rport\r\n"
            f"From: <sip:alice@{VHOST}>;tag=4242B{n}\r\n"
            f"To: <sip:bob@{VHOST}>\r\n"
            f"Call-ID: {n}-4242@127.0.0.1\r\n"
            "CSeq: 1 MESSAGE\r\n"
            "Max-Forwards: 70\r\n"
            "Content-Type: text/plain;charset=UTF-8\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        self._tick()
        self.core.receive_datagram(datagram, PEER, self.clock[0])
        self._drain()

    def xmpp_to_sip(self, n: int) -> None:
        stanza = (
            f"<message xmlns='jabber:component:accept' from='carol@{VHOST}/bench' "
            f"to='alice@{COMPONENT}' type='chat' id='x-{n}'>"
            f"<body>ts 1795308705 374184 n {n} r x1</body></message>"
        )
        parser = ET.XMLPullParser(("end",))
        parser.feed(stanza)
        element = [el for _, el in parser.read_events()][-1]
        self._tick()
        msg = message_from_element(element, default_to=COMPONENT)
        _run_now(self.bridge.on_message(msg))
        out = self._drain()
        request = out[-1][1]
        head = request.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        keep = [
            h
            for h in head[1:]
            if h.split(b":", 1)[0] in (b"Via", b"From", b"To", b"Call-ID", b"CSeq")
        ]
        response = b"\r\n".join([b"SIP/2.0 200 OK", *keep, b"Content-Length: 0", b"", b""])
        self.core.receive_datagram(response, PROXY, self.clock[0])
        self._drain()


def measure(direction: str, count: int, profile: bool) -> float:
    harness = Harness()
    step = harness.sip_to_xmpp if direction == "sip-xmpp" else harness.xmpp_to_sip
    for n in range(min(2000, count)):  # warm-up: caches, transaction table in steady state
        step(n)
    profiler = cProfile.Profile() if profile else None
    t0 = time.process_time()
    if profiler:
        profiler.enable()
    for n in range(count):
        step(100_000 + n)
    if profiler:
        profiler.disable()
    elapsed = time.process_time() - t0
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    return elapsed / count * 1e6


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="CPU µs per message of the gateway's hot path.")
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--profile", choices=("sip-xmpp", "xmpp-sip"))
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    parser.add_argument(
        "--no-gc", action="store_true", help="disable the cycle collector (steadier figures)"
    )
    args = parser.parse_args(argv)
    if args.no_gc:
        gc.disable()
    directions = [args.profile] if args.profile else ["sip-xmpp", "xmpp-sip"]
    for direction in directions:
        best = min(
            measure(direction, args.count, bool(args.profile))
            for _ in range(1 if args.profile else args.repeat)
        )
        print(f"{direction}: {best:6.1f} µs/msg (CPU, in-process, no sockets)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
