"""A UDP relay on 127.0.0.1 that loses chosen datagrams, to test SIP retransmission for real.

Theory of operation. :class:`LossyUdpRelay` owns two UDP sockets, both bound to 127.0.0.1
with port 0:

* the *client-facing* socket (:attr:`LossyUdpRelay.address`): a client sends here as if it were
  the server. Each datagram is forwarded to the server from
* the *upstream* socket, so the server sees the relay as its client; whatever the server
  sends to the upstream socket is relayed back, from the client-facing socket, to the address
  the last client datagram came from.

Datagrams arriving on the upstream socket from anywhere but the server are counted as
``stray`` and discarded. Every datagram is numbered per direction (``"c2s"``: client to server,
``"s2c"``: server to client) from 0, and before forwarding the relay asks the drop predicate
``drop(direction, data, index)``: True loses it. The predicate is called exactly once per
datagram, in arrival order, so stateful predicates such as :func:`drop_request` ("the first
MESSAGE") are deterministic. Counters (:attr:`forwarded`, :attr:`dropped`) and a bounded record
of recent datagrams let a test assert what happened.

SIP notes. A SIP server answers a UDP request to the request's source address when the Via
carries ``rport`` (RFC 3581 §4) and SIPp always answers to the source address, so responses
come back through the relay. Requests the server starts itself go to the client's Contact,
not through the relay, unless that Contact names the relay.

Example (asyncio)::

    async with LossyUdpRelay(("127.0.0.1", uas_port), drop=drop_request("MESSAGE")) as relay:
        ...  # send to relay.address
        assert relay.dropped["c2s"] == 1

From blocking code (a benchmark, a synchronous test), :class:`ThreadedLossyUdpRelay` runs the
same relay on an event loop in a background thread.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

__all__ = [
    "ClientToServer",
    "Direction",
    "DropPredicate",
    "LossyUdpRelay",
    "RelayRecord",
    "ServerToClient",
    "ThreadedLossyUdpRelay",
    "drop_all",
    "drop_any",
    "drop_indices",
    "drop_request",
    "drop_response",
    "sip_method",
    "sip_status",
]

#: Loopback only: the test machine is shared and nothing here may listen on another address.
LOOPBACK = "127.0.0.1"

Direction = Literal["c2s", "s2c"]
ClientToServer: Direction = "c2s"
ServerToClient: Direction = "s2c"

#: (direction, datagram, index in that direction from 0) -> True to lose the datagram.
DropPredicate = Callable[[Direction, bytes, int], bool]

#: Recent datagrams kept in :attr:`LossyUdpRelay.records`: enough for any functional test,
#: bounded so that a relay left in a benchmark path does not grow without limit.
MAX_RECORDS = 10_000

#: Bytes of a datagram's first line examined to classify it: a SIP request line is a method,
#: a Request-URI (RFC 3261 §19.1.1 allows long ones) and the version.
_START_LINE_LIMIT = 8192

#: How long :class:`ThreadedLossyUdpRelay` waits for its thread's loop to bind or close.
THREAD_TIMEOUT_S = 10.0

# RFC 3261 §25.1: Method = token; Request-Line = Method SP Request-URI SP SIP-Version
_REQUEST_LINE = re.compile(rb"^([!%'*+\-.0-9A-Z_`a-z~]+) \S+ SIP/2\.0\r?$")
# Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
_STATUS_LINE = re.compile(rb"^SIP/2\.0 ([1-6][0-9][0-9]) ")
_CSEQ = re.compile(rb"^(?:CSeq)[ \t]*:[ \t]*\d+[ \t]+(\S+)", re.IGNORECASE | re.MULTILINE)


def _first_line(data: bytes) -> bytes:
    return data[:_START_LINE_LIMIT].split(b"\n", 1)[0]


def sip_method(data: bytes) -> str | None:
    """The method of a SIP request datagram, or None (a response, or not SIP)."""
    match = _REQUEST_LINE.match(_first_line(data))
    return match.group(1).decode("ascii") if match else None


def sip_status(data: bytes) -> int | None:
    """The status code of a SIP response datagram, or None."""
    match = _STATUS_LINE.match(_first_line(data))
    return int(match.group(1)) if match else None


def _cseq_method(data: bytes) -> str | None:
    head = data.split(b"\r\n\r\n", 1)[0]
    match = _CSEQ.search(head)
    return match.group(1).decode("ascii", errors="replace") if match else None


def drop_request(
    method: str, *, times: int = 1, direction: Direction | None = None
) -> DropPredicate:
    """Lose the first ``times`` requests whose request line starts with ``method``.

    ``direction`` restricts the rule to "c2s" or "s2c"; None matches either way. A
    retransmission of a lost request is a new datagram: with ``times=1`` it gets through.
    """
    if times < 0:
        raise ValueError("times must be >= 0")
    left = times

    def predicate(dirn: Direction, data: bytes, index: int) -> bool:
        nonlocal left
        if left == 0 or (direction is not None and dirn != direction):
            return False
        if sip_method(data) != method:
            return False
        left -= 1
        return True

    return predicate


def drop_response(
    status: int,
    *,
    times: int = 1,
    direction: Direction | None = None,
    method: str | None = None,
) -> DropPredicate:
    """Lose the first ``times`` responses with this status (and CSeq ``method`` if given)."""
    if times < 0:
        raise ValueError("times must be >= 0")
    left = times

    def predicate(dirn: Direction, data: bytes, index: int) -> bool:
        nonlocal left
        if left == 0 or (direction is not None and dirn != direction):
            return False
        if sip_status(data) != status:
            return False
        if method is not None and _cseq_method(data) != method:
            return False
        left -= 1
        return True

    return predicate


def drop_indices(direction: Direction, *indices: int) -> DropPredicate:
    """Lose the datagrams with these indices (from 0) in ``direction``."""
    chosen = frozenset(indices)
    return lambda dirn, data, index: dirn == direction and index in chosen


def drop_all(direction: Direction | None = None) -> DropPredicate:
    """Lose everything (in ``direction`` only, if given): a black hole."""
    return lambda dirn, data, index: direction is None or dirn == direction


def drop_any(*predicates: DropPredicate) -> DropPredicate:
    """Lose a datagram when any predicate says so.

    Every predicate sees every datagram (no short-circuit), so each stateful one keeps an
    exact count of what it has matched.
    """

    def predicate(dirn: Direction, data: bytes, index: int) -> bool:
        verdicts = [p(dirn, data, index) for p in predicates]
        return any(verdicts)

    return predicate


@dataclass(frozen=True, slots=True)
class RelayRecord:
    """One datagram the relay saw."""

    direction: Direction
    #: Position among the datagrams of this direction, from 0.
    index: int
    data: bytes
    dropped: bool
    #: ``time.monotonic()`` when it arrived.
    at: float


class _Side(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, tuple[str, int]], None]) -> None:
        self._on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Python 3.11's selector transport does not subclass DatagramTransport; it has its API.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        # An ICMP port-unreachable from a peer that is not up yet: UDP loses the datagram,
        # as the network would. Nothing to do.
        pass


class LossyUdpRelay:
    """A client <-> server UDP relay on 127.0.0.1 that loses the datagrams ``drop`` picks.

    :param server: the server's ``(host, port)``; must be on 127.0.0.1.
    :param drop: the drop predicate; None forwards everything (see :meth:`set_drop`).
    :param max_records: how many recent datagrams :attr:`records` keeps.
    """

    def __init__(
        self,
        server: tuple[str, int],
        *,
        drop: DropPredicate | None = None,
        max_records: int = MAX_RECORDS,
    ) -> None:
        if server[0] != LOOPBACK:
            raise ValueError(f"server {server!r} is not on {LOOPBACK} (loopback only)")
        self.server: tuple[str, int] = (server[0], int(server[1]))
        self._drop = drop
        #: Datagrams forwarded / lost, per direction.
        self.forwarded: dict[Direction, int] = {"c2s": 0, "s2c": 0}
        self.dropped: dict[Direction, int] = {"c2s": 0, "s2c": 0}
        #: Datagrams from the server's side that did not come from the server, or from the
        #: server before any client had sent anything (nowhere to relay them).
        self.stray = 0
        self.records: deque[RelayRecord] = deque(maxlen=max_records)
        #: The address the last client datagram came from (where server datagrams go).
        self.client: tuple[str, int] | None = None
        self._front: _Side | None = None
        self._upstream: _Side | None = None
        self._changed: asyncio.Event | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> LossyUdpRelay:
        """Bind both sockets (127.0.0.1, port 0)."""
        if self._front is not None:
            raise RuntimeError("the relay is already started")
        loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        _, front = await loop.create_datagram_endpoint(
            lambda: _Side(self._from_client), local_addr=(LOOPBACK, 0)
        )
        try:
            _, upstream = await loop.create_datagram_endpoint(
                lambda: _Side(self._from_server), local_addr=(LOOPBACK, 0)
            )
        except BaseException:
            assert front.transport is not None
            front.transport.close()
            raise
        self._front, self._upstream = front, upstream
        return self

    async def close(self) -> None:
        """Close both sockets; counters and records stay readable."""
        for side in (self._front, self._upstream):
            if side is not None and side.transport is not None:
                side.transport.close()
        await asyncio.sleep(0)  # let the transports finish closing

    async def __aenter__(self) -> LossyUdpRelay:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- addresses --------------------------------------------------------------------------------

    @staticmethod
    def _sockname(side: _Side | None) -> tuple[str, int]:
        if side is None or side.transport is None:
            raise RuntimeError("the relay is not started")
        name: Any = side.transport.get_extra_info("sockname")
        return (str(name[0]), int(name[1]))

    @property
    def address(self) -> tuple[str, int]:
        """Where clients send: the relay's client-facing ``(host, port)``."""
        return self._sockname(self._front)

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def upstream_address(self) -> tuple[str, int]:
        """The address the server sees datagrams coming from."""
        return self._sockname(self._upstream)

    # -- behaviour ------------------------------------------------------------------------------

    def set_drop(self, drop: DropPredicate | None) -> None:
        """Replace the drop predicate (None: forward everything)."""
        self._drop = drop

    def _decide(self, direction: Direction, data: bytes) -> bool:
        index = self.forwarded[direction] + self.dropped[direction]
        lose = bool(self._drop(direction, data, index)) if self._drop is not None else False
        if lose:
            self.dropped[direction] += 1
        else:
            self.forwarded[direction] += 1
        self.records.append(RelayRecord(direction, index, data, lose, time.monotonic()))
        if self._changed is not None:
            self._changed.set()
        return lose

    def _from_client(self, data: bytes, addr: tuple[str, int]) -> None:
        self.client = (str(addr[0]), int(addr[1]))
        if self._decide("c2s", data):
            return
        if self._upstream is not None and self._upstream.transport is not None:
            self._upstream.transport.sendto(data, self.server)

    def _from_server(self, data: bytes, addr: tuple[str, int]) -> None:
        if (str(addr[0]), int(addr[1])) != self.server or self.client is None:
            self.stray += 1
            return
        if self._decide("s2c", data):
            return
        if self._front is not None and self._front.transport is not None:
            self._front.transport.sendto(data, self.client)

    # -- observation ----------------------------------------------------------------------------

    def seen(self, direction: Direction | None = None) -> list[RelayRecord]:
        """Recorded datagrams (of one direction if given), oldest first."""
        return [r for r in self.records if direction is None or r.direction == direction]

    async def wait_until(self, condition: Callable[[LossyUdpRelay], bool], timeout: float) -> None:
        """Wait until ``condition(self)`` holds, re-checked after every datagram.

        Raises :class:`TimeoutError` with the counters when ``timeout`` s pass first.
        """
        if self._changed is None:
            raise RuntimeError("the relay is not started")
        deadline = asyncio.get_running_loop().time() + timeout
        while not condition(self):
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(
                    f"relay condition not met in {timeout} s: forwarded={self.forwarded} "
                    f"dropped={self.dropped} stray={self.stray}"
                )
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                continue


class ThreadedLossyUdpRelay:
    """A :class:`LossyUdpRelay` on its own event loop in a daemon thread, for blocking code.

    ``with ThreadedLossyUdpRelay(server, drop=...) as relay:`` binds before the block starts
    and closes after it; :attr:`relay` is the underlying relay (read its counters; they are
    plain ints updated by the relay's thread).
    """

    def __init__(self, server: tuple[str, int], *, drop: DropPredicate | None = None) -> None:
        self.relay = LossyUdpRelay(server, drop=drop)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self.relay.address

    @property
    def port(self) -> int:
        return self.relay.port

    def start(self) -> ThreadedLossyUdpRelay:
        if self._thread is not None:
            raise RuntimeError("the relay thread is already started")
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.relay.start())
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.relay.close())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="lossy-udp-relay", daemon=True)
        self._thread.start()
        if not ready.wait(THREAD_TIMEOUT_S):
            raise RuntimeError("the relay thread did not start")
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._loop = self._thread = None
        if not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(THREAD_TIMEOUT_S)

    def __enter__(self) -> LossyUdpRelay:
        self.start()
        return self.relay

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
