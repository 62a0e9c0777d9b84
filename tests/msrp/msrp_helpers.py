"""Test helpers for the MSRP core: counting ids, a scripted clock and an in-memory pair."""

from __future__ import annotations

from dataclasses import dataclass, field

from sipxmpp.gateway.msrp import (
    MsrpConnection,
    MsrpEvent,
    MsrpSession,
    MsrpSessionTable,
    MsrpSettings,
)


class CountingIds:
    """Deterministic IdGenerator: ``<prefix>000001``, ``<prefix>000002``, ..."""

    def __init__(self, prefix: str = "id") -> None:
        self.prefix = prefix
        self.count = 0
        self.requested_bits: list[int] = []

    def token(self, nbits: int) -> str:
        self.requested_bits.append(nbits)
        self.count += 1
        return f"{self.prefix}{self.count:06d}"


@dataclass
class Side:
    """One endpoint of an :class:`MsrpPair`."""

    table: MsrpSessionTable
    session: MsrpSession
    conn: MsrpConnection
    events: list[MsrpEvent] = field(default_factory=list)
    sent: bytearray = field(default_factory=bytearray)

    def drain(self) -> None:
        while (event := self.conn.next_event()) is not None:
            self.events.append(event)

    def of_type(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]


class MsrpPair:
    """Two MSRP cores joined in memory (aioquic's client/server pair, h11's ConnectionPair).

    ``a`` is the SDP offerer and active endpoint (it opens the connection and binds, RFC 4975
    §5.4); ``b`` is the answerer and passive endpoint. ``now`` is a scripted clock.
    """

    def __init__(
        self,
        settings_a: MsrpSettings | None = None,
        settings_b: MsrpSettings | None = None,
        accept_a: tuple[str, ...] = ("text/plain",),
        accept_b: tuple[str, ...] = ("text/plain",),
    ) -> None:
        self.now = 0.0
        table_a = MsrpSessionTable(CountingIds("a"), settings_a)
        table_b = MsrpSessionTable(CountingIds("b"), settings_b)
        uri_a = table_a.new_local_uri("alice.example.test", 7777)
        uri_b = table_b.new_local_uri("bob.example.test", 8888)
        sa = table_a.create_session(uri_a, remote_path=(uri_b,), accept_types=accept_a)
        sb = table_b.create_session(uri_b, remote_path=(uri_a,), accept_types=accept_b)
        self.a = Side(table_a, sa, MsrpConnection(table_a))
        self.b = Side(table_b, sb, MsrpConnection(table_b))

    def bind(self) -> None:
        self.a.conn.bind(self.a.session, self.now)
        self.roundtrip_until_done()

    def exchange_once(self) -> bool:
        """Deliver what each side has queued, once in each direction; True if bytes moved."""
        moved = False
        for src, dst in ((self.a, self.b), (self.b, self.a)):
            data = src.conn.data_to_send()
            if data:
                moved = True
                src.sent += data
                dst.conn.receive_data(data, self.now)
            src.drain()
            dst.drain()
        return moved

    def roundtrip_until_done(self, max_rounds: int = 1000, piece: int | None = None) -> int:
        """Move bytes both ways until both sides are quiet; returns the rounds used.

        ``piece`` splits every write into pieces of that many octets (1 = byte by byte).
        """
        for rounds in range(max_rounds):
            moved = False
            for src, dst in ((self.a, self.b), (self.b, self.a)):
                data = src.conn.data_to_send()
                if data:
                    moved = True
                    src.sent += data
                    step = piece or len(data)
                    for i in range(0, len(data), step):
                        dst.conn.receive_data(data[i : i + step], self.now)
                src.drain()
                dst.drain()
            if not moved:
                return rounds
        raise AssertionError("MsrpPair did not settle")

    def advance(self, seconds: float) -> None:
        """Move the scripted clock and fire due timers on both sides."""
        self.now += seconds
        for side in (self.a, self.b):
            deadline = side.conn.next_deadline()
            if deadline is not None and deadline <= self.now:
                side.conn.handle_timer(self.now)
            side.drain()
        self.roundtrip_until_done()
