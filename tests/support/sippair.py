"""``SipPair``: two SIP endpoints wired back to back in memory (design practice 11).

Whatever one endpoint queues in ``data_to_send()`` is delivered to the other, as from the
sender's address (and, on a stream transport, on connection 1 at both ends). A ``drop``
predicate can lose chosen datagrams, to test retransmission. Time is a ``FakeClock``:
``run(until)`` walks through the endpoints' deadlines, firing timers and pumping after
each, and never sleeps.

Example::

    pair = SipPair()
    key = pair.a.send_request(request, pair.addr_b, pair.now)
    pair.pump()
    [event] = pair.take_b()
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sipxmpp.gateway.sip import (
    EndpointConfig,
    Request,
    SipEndpoint,
    SipEvent,
    Timers,
    Transport,
    TransportAddress,
    make_request,
)

from .clock import CountingIds, FakeClock

__all__ = ["SipPair", "DropRule", "make_req"]

#: (direction "a->b" or "b->a", the bytes) -> True to lose them.
DropRule = Callable[[str, bytes], bool]

#: Rounds of ping-pong a ``pump`` may take before the pair is declared stuck.
MAX_ROUNDS = 10


class SipPair:
    """Endpoints ``a`` (127.0.0.1:5071) and ``b`` (127.0.0.1:5072) over one transport."""

    def __init__(
        self,
        transport: Transport = "udp",
        *,
        timers: Timers | None = None,
        drop: DropRule | None = None,
        config_b: EndpointConfig | None = None,
    ) -> None:
        self.clock = FakeClock()
        self.transport = transport
        self.addr_a = TransportAddress(transport, "127.0.0.1", 5071)
        self.addr_b = TransportAddress(transport, "127.0.0.1", 5072)
        timers = timers or Timers()
        self.a = SipEndpoint(
            EndpointConfig(local={transport: ("127.0.0.1", 5071)}, timers=timers),
            CountingIds("a"),
        )
        self.b = SipEndpoint(
            config_b or EndpointConfig(local={transport: ("127.0.0.1", 5072)}, timers=timers),
            CountingIds("b"),
        )
        self.drop = drop
        #: Every (direction, bytes) delivered / lost, in order.
        self.delivered: list[tuple[str, bytes]] = []
        self.dropped: list[tuple[str, bytes]] = []
        self.events_a: list[SipEvent] = []
        self.events_b: list[SipEvent] = []

    @property
    def now(self) -> float:
        return self.clock.now

    def _deliver(self, direction: str, data: bytes, dest: TransportAddress) -> None:
        sender, receiver = (self.addr_a, self.b) if direction == "a->b" else (self.addr_b, self.a)
        expected = self.addr_b if direction == "a->b" else self.addr_a
        if (dest.host, dest.port) != (expected.host, expected.port) and dest.connection is None:
            raise AssertionError(f"{direction}: sent to {dest}, not to the peer {expected}")
        if self.drop is not None and self.drop(direction, data):
            self.dropped.append((direction, data))
            return
        self.delivered.append((direction, data))
        if dest.reliable:
            source = TransportAddress(self.transport, sender.host, sender.port, connection=1)
            receiver.receive_stream_data(data, source, self.now)
        else:
            receiver.receive_datagram(data, sender, self.now)

    def _collect(self) -> None:
        while (event := self.a.next_event()) is not None:
            self.events_a.append(event)
        while (event := self.b.next_event()) is not None:
            self.events_b.append(event)

    def pump(self) -> int:
        """Deliver queued bytes both ways until both are quiet; return the deliveries."""
        count = 0
        for _ in range(MAX_ROUNDS):
            moved = False
            for direction, endpoint in (("a->b", self.a), ("b->a", self.b)):
                for dest, data in endpoint.data_to_send():
                    moved = True
                    count += 1
                    self._deliver(direction, data, dest)
            self._collect()
            if not moved:
                return count
        raise AssertionError(f"the pair did not settle in {MAX_ROUNDS} rounds")

    def next_deadline(self) -> float | None:
        deadlines = [d for d in (self.a.next_deadline(), self.b.next_deadline()) if d is not None]
        return min(deadlines) if deadlines else None

    def run(self, until: float) -> None:
        """Fire every deadline up to ``until`` (inclusive), pumping after each."""
        self.pump()
        while (deadline := self.next_deadline()) is not None and deadline <= until:
            now = self.clock.advance_to(deadline)
            self.a.handle_timer(now)
            self.b.handle_timer(now)
            self.pump()
        self.clock.advance_to(until)

    def take_a(self) -> list[SipEvent]:
        """The events ``a`` produced since the last call."""
        self._collect()
        out, self.events_a = self.events_a, []
        return out

    def take_b(self) -> list[SipEvent]:
        self._collect()
        out, self.events_b = self.events_b, []
        return out


class LayeredPair(SipPair):
    """A :class:`SipPair` with a transaction user on each endpoint (a subscription or INVITE
    manager): endpoint events go to that layer (or, with ``manual_a``/``manual_b``, stay in
    ``events_a``/``events_b`` for the test to play a misbehaving peer), the layers' own events
    collect in ``layer_events_a``/``layer_events_b``, and their timers run with the endpoints'.
    Subclasses build the two layers and name the attributes holding them in :meth:`attach`
    (looked up on every use: a test may replace a layer, e.g. to play a restart)."""

    def attach(self, attr_a: str, attr_b: str, *, manual_a: bool, manual_b: bool) -> None:
        self._layer_attrs = (attr_a, attr_b)
        self.manual_a = manual_a
        self.manual_b = manual_b
        self.layer_events_a: list[Any] = []
        self.layer_events_b: list[Any] = []

    @property
    def _layers(self) -> tuple[Any, Any]:
        attr_a, attr_b = self._layer_attrs
        return getattr(self, attr_a), getattr(self, attr_b)

    def _collect(self) -> None:
        layer_a, layer_b = self._layers
        sides = (
            (self.a, layer_a, self.manual_a, self.events_a, self.layer_events_a),
            (self.b, layer_b, self.manual_b, self.events_b, self.layer_events_b),
        )
        for endpoint, layer, manual, raw, out in sides:
            while (event := endpoint.next_event()) is not None:
                if manual or not layer.handle_sip_event(event, self.now):
                    raw.append(event)
            while (layer_event := layer.next_event()) is not None:
                out.append(layer_event)

    def next_deadline(self) -> float | None:
        parts = (self.a, self.b, *self._layers)
        found = [d for d in (part.next_deadline() for part in parts) if d is not None]
        return min(found) if found else None

    def run(self, until: float) -> None:
        self.pump()
        while (deadline := self.next_deadline()) is not None and deadline <= until:
            now = self.clock.advance_to(deadline)
            for part in (self.a, self.b, *self._layers):
                part.handle_timer(now)
            self.pump()
        self.clock.advance_to(until)
        self.pump()

    def advance(self, seconds: float) -> None:
        self.run(self.now + seconds)

    def take_sa(self) -> list[Any]:
        """The layer events of side ``a`` since the last call."""
        self._collect()
        out, self.layer_events_a = self.layer_events_a, []
        return out

    def take_sb(self) -> list[Any]:
        self._collect()
        out, self.layer_events_b = self.layer_events_b, []
        return out


def make_req(
    method: str = "MESSAGE",
    *,
    uri: str = "sip:bob@127.0.0.1:5072",
    cseq: int = 1,
    call_id: str = "call-1@test",
    to_tag: str | None = None,
    body: bytes = b"",
    content_type: str | None = None,
    headers: tuple[tuple[str, str], ...] = (),
) -> Request:
    """A request as a TU would build it (no Via: the transaction layer adds it)."""
    to = "<sip:bob@b.test>" + (f";tag={to_tag}" if to_tag else "")
    return make_request(
        method,
        uri,
        from_addr="<sip:alice@a.test>",
        from_tag="from-1",
        to_addr=to,
        call_id=call_id,
        cseq=cseq,
        body=body,
        content_type=content_type,
        headers=headers,
    )
