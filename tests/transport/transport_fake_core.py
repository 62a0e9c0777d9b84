"""A recording stand-in for the SIP core, for driving the transport edge in tests.

It satisfies :class:`sipxmpp.gateway.transport.SipCore`. Received stream bytes are framed
per connection at the blank line that ends a header block (the test messages have no
body), so TCP segmentation does not matter. A ``responder`` decides what goes out for
each received message; tests can also queue output directly with :meth:`queue`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sipxmpp.gateway.sip.address import TransportAddress

Responder = Callable[[bytes, TransportAddress], list[tuple[TransportAddress, bytes]]]


def options(tag: str) -> bytes:
    """A tiny body-less SIP request whose Call-ID is ``tag``."""
    return (
        f"OPTIONS sip:gw.example.test SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK{tag}\r\n"
        f"Call-ID: {tag}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def ok(tag: str) -> bytes:
    return (
        f"SIP/2.0 200 OK\r\nCall-ID: {tag}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n".encode()
    )


def call_id(message: bytes) -> str:
    for line in message.split(b"\r\n"):
        if line.lower().startswith(b"call-id:"):
            return line.split(b":", 1)[1].strip().decode()
    return ""


def answer_ok(message: bytes, source: TransportAddress) -> list[tuple[TransportAddress, bytes]]:
    """Responder: a 200 for every request, back to where it came from (same connection)."""
    if message.startswith(b"SIP/2.0"):
        return []
    return [(source, ok(call_id(message)))]


@dataclass
class FakeCore:
    responder: Responder | None = None
    datagrams: list[tuple[bytes, TransportAddress, float]] = field(default_factory=list)
    messages: list[tuple[bytes, TransportAddress]] = field(default_factory=list)
    stream_chunks: list[tuple[bytes, TransportAddress]] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)
    errors: list[TransportAddress] = field(default_factory=list)
    timer_calls: list[float] = field(default_factory=list)
    deadline: float | None = None
    on_timer: Callable[[float], None] | None = None
    fail_on_receive: bool = False
    _out: list[tuple[TransportAddress, bytes]] = field(default_factory=list)
    _close: list[int] = field(default_factory=list)
    _buffers: dict[int, bytes] = field(default_factory=dict)

    # -- SipCore -------------------------------------------------------------
    def receive_datagram(self, data: bytes, source: TransportAddress, now: float) -> None:
        if self.fail_on_receive:
            raise RuntimeError("core bug (test)")
        self.datagrams.append((data, source, now))
        self._message(data, source)

    def receive_stream_data(self, data: bytes, source: TransportAddress, now: float) -> None:
        if self.fail_on_receive:
            raise RuntimeError("core bug (test)")
        assert source.connection is not None
        self.stream_chunks.append((data, source))
        buf = self._buffers.get(source.connection, b"") + data
        while True:
            buf = buf.lstrip(b"\r\n")  # keep-alive pings between messages
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            message, buf = buf[: end + 4], buf[end + 4 :]
            self._message(message, source)
        self._buffers[source.connection] = buf

    def connection_lost(self, connection: int, now: float) -> None:
        self.lost.append(connection)
        self._buffers.pop(connection, None)

    def transport_error(self, destination: TransportAddress, now: float) -> None:
        self.errors.append(destination)

    def data_to_send(self) -> list[tuple[TransportAddress, bytes]]:
        out, self._out = self._out, []
        return out

    def close_connections(self) -> list[int]:
        out, self._close = self._close, []
        return out

    def next_deadline(self) -> float | None:
        return self.deadline

    def handle_timer(self, now: float) -> None:
        self.timer_calls.append(now)
        if self.on_timer is not None:
            self.on_timer(now)

    # -- test helpers ----------------------------------------------------------
    def _message(self, message: bytes, source: TransportAddress) -> None:
        self.messages.append((message, source))
        if self.responder is not None:
            self._out.extend(self.responder(message, source))

    def queue(self, dest: TransportAddress, data: bytes) -> None:
        self._out.append((dest, data))

    def request_close(self, connection: int) -> None:
        self._close.append(connection)


async def until(predicate: Callable[[], object], timeout: float = 3.0) -> None:
    """Wait (polling the loop) until ``predicate()`` is truthy; fail after ``timeout``."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)
