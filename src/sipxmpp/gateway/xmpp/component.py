"""The XMPP edge: one XEP-0114 component link to the XMPP server, kept alive and reconnected.

Theory of operation
-------------------
:class:`XmppEdge` owns one :class:`GatewayComponent` (a slixmpp ``ComponentXMPP``) and a
supervisor task. The supervisor loops: connect (slixmpp's ``connect``), wait for the outcome of
that connection, wait a backoff delay, connect again. Outcomes come from slixmpp events:

* ``session_start``: the server accepted the handshake (XEP-0114 §3); the link is **up**, the
  XEP-0199 keepalive starts, ``on_link_state(True)``.
* ``connection_failed``: the TCP connect failed; outcome ``connect-failed``. slixmpp's own
  retry loop is cancelled so that the supervisor's backoff applies instead.
* ``disconnected``: the stream or the TCP connection ended; outcome ``session-lost`` when the
  link had been up (then ``on_link_state(False)``), else ``disconnected``.
* handshake timer: no ``<handshake/>`` within ``handshake_timeout`` of the attempt's start (this
  also bounds a TCP connect that hangs); the attempt is aborted.
* keepalive timeout: the link was idle (nothing received) for ``keepalive_interval``, a
  XEP-0199 ping went out, and still nothing at all arrived within ``keepalive_timeout``; the
  link is marked down at once and the connection aborted, which then ends as
  ``disconnected`` does.

Presence stanzas are handled as they are read until a read has taken
:data:`INBOUND_TURN_BUDGET_S`; the rest wait in a FIFO that is drained over the next turns of
the event loop, with the other sockets read in between. A change of a user with 1,000 SIP
watchers arrives as 1,000 stanzas (RFC 6121 §4.4.2) and becomes 1,000 NOTIFYs; handled in
one go, the watchers' 200 OKs would wait behind them past T1 and every NOTIFY would be
retransmitted. Past :data:`MAX_PRESENCE_BACKLOG` waiting stanzas the component stops
reading from the server (TCP flow control holds the rest) until the FIFO is down to
:data:`RESUME_PRESENCE_BACKLOG`, so memory stays bounded. Messages and iq stanzas are not
held back (the pager path keeps its latency); presence stanzas keep their order.

Liveness is anything the server sends, not only the ping's answer: every read counts
(:class:`_LivenessComponent`). A server delivering a large backlog of stanzas (a presence
fan-out, a burst of messages) is evidently alive even if the answer to our ping sits behind
that backlog for longer than ``keepalive_timeout``; declaring it dead then would drop the
link under exactly the load it is carrying. So a ping is sent only after
``keepalive_interval`` without any received data (XEP-0199 §4.2 pings are for idle links;
RFC 6120 §4.6.1 only asks for a check that the stream is alive), and the link is declared
dead only when no byte at all arrived within ``keepalive_timeout`` of that ping.

Delays follow :func:`backoff_delay` (exponential from ``reconnect_min`` to ``reconnect_max``,
with jitter); the failure count restarts after every link that came up.

Outgoing messages (:meth:`XmppEdge.send_message`) are serialized by ``convert.message_to_xml``,
presence stanzas (:meth:`XmppEdge.send_presence`) by ``presence_convert.presence_to_xml``,
and written straight to the transport, skipping slixmpp's send queue and its per-stanza
filter pass; other stanzas (iq results, error replies) use slixmpp's queue, so their order
relative to messages is not guaranteed. A full transport buffer raises :class:`LinkCongested`
rather than growing memory.

Writes are coalesced: the stanzas sent while the event loop runs one batch of work (e.g. the
MESSAGEs of one burst of SIP datagrams) are joined and written with one ``transport.write``
at the next loop iteration (``call_soon``), in order, instead of one system call each. The
delay is that of one loop iteration; :meth:`XmppEdge.flush` writes at once. The runtime
holds the writes while it handles a batch of SIP events (:meth:`XmppEdge.hold_writes`) and
flushes after it, so the stanzas leave before the SIP answers to the requests they came
from, with no callback (and no extra loop iteration) for them. Stanzas queued for a
connection that has gone by the time of the flush are dropped, as bytes in that
connection's own buffer would be.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import itertools
import logging
import random
import secrets
from collections.abc import Callable
from typing import Any

from slixmpp.jid import JID, InvalidJID

from sipxmpp.gateway.xmpp.backoff import backoff_delay
from sipxmpp.gateway.xmpp.caps import CapsAnnouncer
from sipxmpp.gateway.xmpp.config import XmppEdgeConfig
from sipxmpp.gateway.xmpp.convert import message_to_xml
from sipxmpp.gateway.xmpp.disco import DiscoHook, DiscoIdentity, DiscoRegistry
from sipxmpp.gateway.xmpp.dispatch import MAX_IN_FLIGHT_MESSAGES, MessageDispatcher, install_disco
from sipxmpp.gateway.xmpp.dispatch.presence import PresenceDispatcher
from sipxmpp.gateway.xmpp.errors import LinkCongested, LinkDown, LocalXmppError
from sipxmpp.gateway.xmpp.handler import XmppHandler
from sipxmpp.gateway.xmpp.presence_convert import presence_to_xml
from sipxmpp.gateway.xmpp.stream import GatewayComponent
from sipxmpp.mapping.model import StanzaError, XmppMessage
from sipxmpp.mapping.presence import PresenceType, XmppPresence

__all__ = [
    "INBOUND_TURN_BUDGET_S",
    "MAX_OUTGOING_STANZA_BYTES",
    "MAX_PRESENCE_BACKLOG",
    "RESUME_PRESENCE_BACKLOG",
    "MAX_WRITE_BUFFER_BYTES",
    "STOP_GRACE_S",
    "XmppEdge",
    "XmppEdgeConfig",
    "XmppHandler",
]

log = logging.getLogger(__name__)

#: Largest message stanza the edge sends, in bytes. The recipient's server applies its own
#: limit and closes the stream of whoever exceeds it; Prosody 0.12's smallest default (c2s) is
#: 256 KiB. RFC 6120 §13.12 guarantees only 10,000 bytes, and RFC 7572 §6 keeps pager-mode
#: messages far smaller, so 256 KiB is a limit only broken input reaches.
MAX_OUTGOING_STANZA_BYTES = 256 * 1024

#: Bytes the transport may hold unsent before :meth:`XmppEdge.send_message` refuses with
#: :class:`LinkCongested`: about two seconds of the 5,000 msg/s design load at ~400 bytes per
#: stanza. Beyond it the server is not reading, and queueing more only delays the failure.
MAX_WRITE_BUFFER_BYTES = 4 * 1024 * 1024

#: Seconds :meth:`XmppEdge.stop` waits for the server to close its stream after ours.
STOP_GRACE_S = 2.0


class _LivenessComponent(GatewayComponent):
    """The component stream, counting what the server sends for the keepalive.

    ``rx_reads`` counts socket reads and ``rx_at`` is the event loop time of the last one;
    the keepalive compares them (see the module docstring). One attribute increment and one
    clock read per read of up to ``stream.MAX_READ_BYTES``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rx_reads = 0
        self.rx_at = 0.0

    def data_received(self, data: bytes | str) -> None:
        self.rx_reads += 1
        self.rx_at = self.loop.time()
        super().data_received(data)


#: Seconds of stanza handling per read (or per drain turn) after which further presence
#: stanzas wait for a later turn of the event loop (see the module docstring). 5 ms is a
#: few dozen NOTIFYs; a UDP datagram (a watcher's 200 OK) then waits at most about that
#: long for its read, far below T1 (500 ms).
INBOUND_TURN_BUDGET_S = 0.005

#: Presence stanzas waiting to be handled beyond which reading from the server pauses.
#: One read (64 KiB, stream.MAX_READ_BYTES) holds at most ~1,600 of the smallest presence
#: stanzas, so the FIFO never holds much more than this plus one read: a few MB of parsed
#: elements, about a second of work at the design load.
MAX_PRESENCE_BACKLOG = 4096

#: Reading resumes once the FIFO is down to this many stanzas: a full read's worth of work
#: is still waiting, so the link never idles while the server has more to send.
RESUME_PRESENCE_BACKLOG = 1024


def _default_id_generator() -> Callable[[], str]:
    """Stanza IDs unique per process: a random prefix and a counter (RFC 6120 §8.1.3)."""
    prefix = "sx" + secrets.token_hex(4)
    counter = itertools.count(1)
    return lambda: f"{prefix}-{next(counter)}"


class XmppEdge:
    """The gateway's component link to the XMPP server.

    :param config: where and how to connect.
    :param handler: receives messages, message errors and link-state changes.
    :param new_id: stanza ID generator for outgoing messages without an id (injected for tests).
    :param rng: random source for the backoff jitter (injected for tests).
    :param max_in_flight: bound on concurrently running message handler tasks.
    """

    def __init__(
        self,
        config: XmppEdgeConfig,
        handler: XmppHandler,
        *,
        new_id: Callable[[], str] | None = None,
        rng: random.Random | None = None,
        max_in_flight: int = MAX_IN_FLIGHT_MESSAGES,
    ) -> None:
        self._config = config
        self._handler = handler
        self._new_id = new_id or _default_id_generator()
        self._rng = rng or random.Random()
        self._max_in_flight = max_in_flight
        self._disco = DiscoRegistry(config.component_jid, config.identity_name)
        #: XEP-0115 caps presence of the component (see ``caps.py``); off until configured.
        self._caps = CapsAnnouncer(config.component_jid, self._send_raw_stanza)
        self._xmpp: _LivenessComponent | None = None
        self._dispatcher: MessageDispatcher | None = None
        self._presence_dispatcher: PresenceDispatcher | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._keepalive: asyncio.Task[None] | None = None
        self._outcome: asyncio.Future[str] | None = None
        self._handshake_timer: asyncio.TimerHandle | None = None
        self._up = False
        self._up_event = asyncio.Event()
        #: Presence stanzas read but not handled yet, the drain callback, and whether
        #: reading from the server is paused because of them (see the module docstring).
        self._presence_backlog: collections.deque[Any] = collections.deque()
        self._drain_handle: asyncio.Handle | None = None
        self._reading_paused = False
        #: Stanzas waiting for the coalesced write, the transport they are meant for, their
        #: size, and the pending flush callback.
        self._out: list[bytes] = []
        self._out_transport: Any = None
        self._out_bytes = 0
        self._flush_handle: asyncio.Handle | None = None
        #: Between :meth:`hold_writes` and :meth:`flush`: the caller writes, no callback.
        self._held = False
        self._session_seen = False
        self._stopping = False
        #: Connection attempts made so far (for diagnostics and tests).
        self.connection_attempts = 0
        #: Times the link came up so far.
        self.sessions = 0

    # -- public API -----------------------------------------------------------------------

    @property
    def config(self) -> XmppEdgeConfig:
        return self._config

    @property
    def up(self) -> bool:
        """True while the handshake is done and the stream is alive."""
        xmpp = self._xmpp
        if not self._up or xmpp is None:
            return False
        transport = xmpp.transport
        return transport is not None and not transport.is_closing()

    @property
    def component(self) -> GatewayComponent | None:
        """The slixmpp component (``None`` before :meth:`start`); for diagnostics and tests."""
        return self._xmpp

    @property
    def disco(self) -> DiscoRegistry:
        """The XEP-0030 answer of the component JID and its hooks."""
        return self._disco

    def add_disco_feature(self, var: str) -> None:
        """Advertise one more feature in disco#info (e.g. ``http://jabber.org/protocol/caps``)."""
        self._disco.add_feature(var)

    def add_disco_identity(self, identity: DiscoIdentity) -> None:
        """Add an identity besides ``gateway/sip``."""
        self._disco.add_identity(identity)

    def set_disco_forms(self, forms: list[str] | tuple[str, ...]) -> None:
        """Replace the XEP-0128 extended-information forms (serialized ``jabber:x:data``)."""
        self._disco.set_forms(forms)

    @property
    def caps(self) -> CapsAnnouncer:
        """The component's own presence with XEP-0115 caps, and its recipients."""
        return self._caps

    def _send_raw_stanza(self, data: str) -> None:
        """Queue one serialized stanza on slixmpp's send path (raises :class:`LinkDown`)."""
        xmpp = self._xmpp
        if not self.up or xmpp is None:
            raise LinkDown("the XMPP component link is down")
        xmpp.send_raw(data)

    async def query_disco_info(self, jid: str, node: str | None, timeout: float) -> Any:
        """Send a disco#info query (XEP-0030 §3.1) from the component; returns the result's
        ``<query/>`` element. Raises :class:`LinkDown`, ``IqError`` (an error answer) or
        ``IqTimeout``."""
        xmpp = self._xmpp
        if not self.up or xmpp is None:
            raise LinkDown("the XMPP component link is down")
        iq = await xmpp.plugin["xep_0030"].get_info(
            jid=JID(jid), node=node, ifrom=xmpp.boundjid, local=False, cached=False, timeout=timeout
        )
        return iq["disco_info"].xml

    async def query_disco_items(self, jid: str, timeout: float) -> list[str]:
        """disco#items of ``jid`` (XEP-0030 §4.1): the item JIDs. Same errors as above."""
        xmpp = self._xmpp
        if not self.up or xmpp is None:
            raise LinkDown("the XMPP component link is down")
        iq = await xmpp.plugin["xep_0030"].get_items(
            jid=JID(jid), ifrom=xmpp.boundjid, local=False, timeout=timeout
        )
        return [str(item[0]) for item in iq["disco_items"]["items"]]

    def set_disco_hook(self, hook: DiscoHook | None) -> None:
        """Install a per-request disco#info hook (see :class:`DiscoRegistry`)."""
        self._disco.set_hook(hook)

    async def start(self) -> None:
        """Start connecting; returns at once. Reconnects in the background until :meth:`stop`.

        Use :meth:`wait_up` to wait for the handshake.
        """
        if self._supervisor is not None and not self._supervisor.done():
            return
        self._stopping = False
        if self._xmpp is None:
            self._build()
        self._supervisor = asyncio.get_running_loop().create_task(
            self._supervise(), name=f"xmpp-edge {self._config.component_jid}"
        )

    async def stop(self) -> None:
        """Close the stream (``</stream:stream>``), stop reconnecting and cancel handler tasks."""
        self._stopping = True
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)
        await self._cancel_keepalive()
        self._flush()  # messages already accepted go out before our closing tag
        xmpp = self._xmpp
        if xmpp is not None:
            if xmpp.transport is not None:
                try:
                    await asyncio.wait_for(
                        xmpp.disconnect(wait=STOP_GRACE_S, reason="gateway stopping"),
                        STOP_GRACE_S + 1.0,
                    )
                except TimeoutError:
                    xmpp.abort()
            else:
                xmpp.cancel_connection_attempt()
            # slixmpp's send-queue task (started by connect()) outlives the connection.
            run_filters = getattr(xmpp, "_run_out_filters", None)
            if run_filters is not None:
                run_filters.cancel()
                await asyncio.gather(run_filters, return_exceptions=True)
        if self._dispatcher is not None:
            await self._dispatcher.aclose()
        self._discard_presence_backlog()
        if self._presence_dispatcher is not None:
            await self._presence_dispatcher.aclose()
        self._set_down()

    async def wait_up(self, timeout: float) -> bool:
        """Wait until the link is up; ``False`` if it is not within ``timeout`` seconds."""
        if self.up:
            return True
        try:
            await asyncio.wait_for(self._up_event.wait(), timeout)
        except TimeoutError:
            return False
        return self.up

    def send_message(self, msg: XmppMessage) -> str:
        """Send a ``<message/>``; returns its id (generated when ``msg.id`` is ``None``).

        Raises :class:`LinkDown` when the link is not up, :class:`LinkCongested` when the
        server is not reading, :class:`LocalXmppError` for a message XMPP cannot carry (see
        ``convert.message_to_xml``) or one larger than :data:`MAX_OUTGOING_STANZA_BYTES`.
        Nothing is sent when it raises.
        """
        transport = self._live_transport()
        if msg.id is None:
            msg = dataclasses.replace(msg, id=self._new_id())
        data = message_to_xml(msg, component_domain=self._config.component_jid).encode("utf-8")
        self._enqueue(data, transport, "message")
        assert msg.id is not None
        return msg.id

    def send_presence(self, presence: XmppPresence, *, error: StanzaError | None = None) -> None:
        """Send a ``<presence/>`` (with ``error`` for ``type='error'``), in order with messages.

        Same refusals as :meth:`send_message`: :class:`LinkDown`, :class:`LinkCongested`,
        :class:`LocalXmppError` (see ``presence_convert.presence_to_xml``). Nothing is sent
        when it raises. An outgoing presence keeps the id it has (presence needs none).
        """
        transport = self._live_transport()
        data = presence_to_xml(
            presence, component_domain=self._config.component_jid, error=error
        ).encode("utf-8")
        self._enqueue(data, transport, "presence")

    def _live_transport(self) -> Any:
        """The component link's transport (raises :class:`LinkDown` when it is not up)."""
        xmpp = self._xmpp
        transport = xmpp.transport if xmpp is not None else None
        if not self._up or transport is None or transport.is_closing():
            raise LinkDown("the XMPP component link is down")
        return transport

    def _enqueue(self, data: bytes, transport: Any, kind: str) -> None:
        """Queue one serialized ``kind`` stanza for the coalesced write (module docstring),
        or refuse it: :class:`LocalXmppError` over :data:`MAX_OUTGOING_STANZA_BYTES`,
        :class:`LinkCongested` when the server is not reading."""
        if len(data) > MAX_OUTGOING_STANZA_BYTES:
            raise LocalXmppError(
                f"{kind} stanza of {len(data)} bytes exceeds {MAX_OUTGOING_STANZA_BYTES}",
                condition="policy-violation",
            )
        if transport is not self._out_transport:
            self._discard_output()
            self._out_transport = transport
        if transport.get_write_buffer_size() + self._out_bytes > MAX_WRITE_BUFFER_BYTES:
            raise LinkCongested(f"the XMPP server is not reading; {kind} not queued")
        self._out.append(data)
        self._out_bytes += len(data)
        if self._flush_handle is None and not self._held:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)

    def _reply_presence_error(self, received: XmppPresence, error: StanzaError) -> None:
        """Answer a received presence with ``type='error'`` (RFC 6120 §8.3.1: from its ``to``)."""
        self.send_presence(
            XmppPresence(
                from_jid=received.to_jid,
                to_jid=received.from_jid,
                type=PresenceType.ERROR,
                id=received.id,
            ),
            error=error,
        )

    def hold_writes(self) -> None:
        """Queue the stanzas sent from now on without scheduling their write: the caller
        writes them with :meth:`flush` (which it must call, also when it fails)."""
        self._held = True

    def flush(self) -> None:
        """Write the stanzas queued so far now, not at the next loop iteration, and end a
        :meth:`hold_writes`."""
        self._held = False
        if self._out:
            self._flush()

    def _flush(self) -> None:
        """Write the coalesced stanzas (see the module docstring)."""
        handle, self._flush_handle = self._flush_handle, None
        if handle is not None:
            handle.cancel()  # when called directly rather than from the loop
        out, transport = self._out, self._out_transport
        if not out:
            return
        self._out = []
        self._out_bytes = 0
        xmpp = self._xmpp
        current = xmpp.transport if xmpp is not None else None
        if current is None or current is not transport or current.is_closing():
            log.warning("XMPP link lost before %d queued stanza(s) were written", len(out))
            return
        current.write(out[0] if len(out) == 1 else b"".join(out))

    def _discard_output(self) -> None:
        if self._out:
            log.warning("XMPP link changed: %d queued message(s) dropped", len(self._out))
        self._out = []
        self._out_bytes = 0
        self._out_transport = None

    async def __aenter__(self) -> XmppEdge:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- construction ---------------------------------------------------------------------

    def _build(self) -> None:
        cfg = self._config
        xmpp = _LivenessComponent(
            cfg.component_jid,
            cfg.secret,
            cfg.host,
            cfg.port,
            message_sink=self._on_message_xml,
            presence_sink=self._on_presence_xml,
        )
        self._dispatcher = MessageDispatcher(
            xmpp, self._handler, default_to=cfg.component_jid, max_in_flight=self._max_in_flight
        )
        self._presence_dispatcher = PresenceDispatcher(
            self._handler, self._reply_presence_error, default_to=cfg.component_jid
        )
        install_disco(xmpp, self._disco)
        xmpp.add_event_handler("session_start", self._on_session_start)
        xmpp.add_event_handler("disconnected", self._on_disconnected)
        xmpp.add_event_handler("connection_failed", self._on_connection_failed)
        xmpp.add_event_handler("stream_error", self._on_stream_error)
        self._xmpp = xmpp

    def _on_message_xml(self, xml: Any) -> None:
        dispatcher = self._dispatcher
        if dispatcher is not None:
            dispatcher(xml)

    def _on_presence_xml(self, xml: Any) -> None:
        if self._caps.handle_presence(xml):
            return  # presence to the component itself (XEP-0115 caps, see caps.py)
        xmpp = self._xmpp
        backlog = self._presence_backlog
        if (
            not backlog
            and xmpp is not None
            and xmpp.loop.time() - xmpp.rx_at < INBOUND_TURN_BUDGET_S
        ):
            self._dispatch_presence(xml)
            return
        backlog.append(xml)
        if self._drain_handle is None:
            self._drain_handle = asyncio.get_running_loop().call_soon(self._drain_presence)
        if len(backlog) >= MAX_PRESENCE_BACKLOG and not self._reading_paused:
            self._pause_reading(True)

    def _dispatch_presence(self, xml: Any) -> None:
        dispatcher = self._presence_dispatcher
        if dispatcher is not None:
            try:
                dispatcher(xml)
            except Exception:  # the dispatcher answers errors itself; never lose the FIFO
                log.exception("presence stanza handling failed")

    def _drain_presence(self) -> None:
        """Handle waiting presence stanzas for one turn's budget; reschedule for the rest."""
        self._drain_handle = None
        backlog = self._presence_backlog
        xmpp = self._xmpp
        if not backlog or xmpp is None:
            return
        loop = xmpp.loop
        start = loop.time()
        # Stanzas the server sent are being consumed: the keepalive sees a busy link.
        xmpp.rx_at = start
        xmpp.rx_reads += 1
        end = start + INBOUND_TURN_BUDGET_S
        while backlog:
            self._dispatch_presence(backlog.popleft())
            if loop.time() >= end:
                break
        if backlog:
            self._drain_handle = loop.call_soon(self._drain_presence)
        if self._reading_paused and len(backlog) <= RESUME_PRESENCE_BACKLOG:
            self._pause_reading(False)

    def _pause_reading(self, pause: bool) -> None:
        xmpp = self._xmpp
        transport = xmpp.transport if xmpp is not None else None
        self._reading_paused = pause
        if transport is None or transport.is_closing():
            return
        try:
            if pause:
                transport.pause_reading()
            else:
                transport.resume_reading()
        except (AttributeError, RuntimeError) as exc:  # a transport without flow control
            log.debug("XMPP transport flow control unavailable: %s", exc)

    def _discard_presence_backlog(self) -> None:
        handle, self._drain_handle = self._drain_handle, None
        if handle is not None:
            handle.cancel()
        if self._presence_backlog:
            log.info("%d received presence stanza(s) dropped", len(self._presence_backlog))
        self._presence_backlog.clear()
        self._reading_paused = False

    # -- supervisor -----------------------------------------------------------------------

    async def _supervise(self) -> None:
        failures = 0
        while not self._stopping:
            try:
                outcome = await self._connect_once()
            except Exception:  # a bug here must not end reconnection for good
                log.exception("XMPP component connection attempt failed unexpectedly")
                outcome = "internal-error"
            if self._stopping:
                return
            if outcome == "session-lost":
                failures = 0
            delay = backoff_delay(
                failures, self._config.reconnect_min, self._config.reconnect_max, self._rng.random()
            )
            failures += 1
            log.info("XMPP component link: %s; reconnecting in %.2f s", outcome, delay)
            await asyncio.sleep(delay)

    async def _connect_once(self) -> str:
        xmpp = self._xmpp
        assert xmpp is not None
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[str] = loop.create_future()
        self._outcome = outcome
        self._session_seen = False
        self.connection_attempts += 1
        self._handshake_timer = loop.call_later(
            self._config.handshake_timeout, self._on_handshake_timeout
        )
        try:
            xmpp.connect(self._config.host, self._config.port)
            return await outcome
        finally:
            timer, self._handshake_timer = self._handshake_timer, None
            if timer is not None:
                timer.cancel()
            self._outcome = None

    def _resolve(self, outcome: str) -> None:
        fut = self._outcome
        if fut is not None and not fut.done():
            fut.set_result(outcome)

    # -- slixmpp events -------------------------------------------------------------------

    def _on_session_start(self, _event: Any) -> None:
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
        self._reading_paused = False  # a new connection reads from the start
        self._session_seen = True
        self._up = True
        self._up_event.set()
        self.sessions += 1
        log.info("XMPP component link up as %s", self._config.component_jid)
        if self._keepalive is not None:
            self._keepalive.cancel()
        self._keepalive = asyncio.get_running_loop().create_task(self._keepalive_loop())
        self._notify(True)
        self._caps.link_up()  # XEP-0115: recipients learn the current caps after a reconnect

    def _on_disconnected(self, reason: Any) -> None:
        keepalive, self._keepalive = self._keepalive, None
        if keepalive is not None and keepalive is not asyncio.current_task():
            keepalive.cancel()
        self._resolve("session-lost" if self._session_seen else "disconnected")
        if reason:
            log.info("XMPP component stream closed: %s", reason)
        self._set_down()

    def _on_connection_failed(self, error: Any) -> None:
        log.info(
            "XMPP component connection to %s:%s failed: %s",
            self._config.host,
            self._config.port,
            error,
        )
        xmpp = self._xmpp
        if xmpp is not None:
            xmpp.cancel_connection_attempt()  # the supervisor's backoff applies, not slixmpp's
        self._resolve("connect-failed")

    def _on_stream_error(self, error: Any) -> None:
        condition = error["condition"]
        hint = " (check the component secret)" if condition == "not-authorized" else ""
        log.error("XMPP server sent stream error %s: %s%s", condition, error["text"], hint)

    def _on_handshake_timeout(self) -> None:
        self._handshake_timer = None
        if self._up:
            return
        log.warning("no component handshake within %.1f s", self._config.handshake_timeout)
        xmpp = self._xmpp
        if xmpp is not None and xmpp.transport is not None:
            xmpp.abort()  # ends in 'disconnected'
        else:
            if xmpp is not None:
                xmpp.cancel_connection_attempt()
            self._resolve("handshake-timeout")

    # -- link state and keepalive ---------------------------------------------------------

    def _set_down(self) -> None:
        was_up = self._up
        self._up = False
        if self._out:
            self._flush()  # what was queued before the link went down, if it still can
        self._up_event.clear()
        if was_up:
            log.info("XMPP component link down")
            self._notify(False)

    def _notify(self, up: bool) -> None:
        try:
            self._handler.on_link_state(up)
        except Exception:
            log.exception("on_link_state(%s) failed", up)

    async def _cancel_keepalive(self) -> None:
        keepalive, self._keepalive = self._keepalive, None
        if keepalive is not None:
            keepalive.cancel()
            await asyncio.gather(keepalive, return_exceptions=True)

    async def _keepalive_loop(self) -> None:
        """XEP-0199 §4.2 keepalive, counting any received data as liveness (module docstring).

        Ping only after ``keepalive_interval`` without a single byte from the server; declare
        the link dead only when nothing at all arrived within ``keepalive_timeout`` of that
        ping. The ping's answer (a result or, §4.2, an error such as service-unavailable) is
        one more read; it needs no waiter of its own.
        """
        xmpp = self._xmpp
        assert xmpp is not None
        cfg = self._config
        try:
            target = JID(cfg.effective_ping_target)
        except InvalidJID:
            log.error("keepalive disabled: invalid ping target %r", cfg.effective_ping_target)
            return
        loop = asyncio.get_running_loop()
        # The handshake that brought the link up was received just now.
        xmpp.rx_at = max(xmpp.rx_at, loop.time())
        while True:
            idle = loop.time() - xmpp.rx_at
            if idle < cfg.keepalive_interval:
                await asyncio.sleep(cfg.keepalive_interval - idle)
                if not self._up:
                    return
                continue
            reads = xmpp.rx_reads
            self._send_ping(xmpp, target)
            await asyncio.sleep(cfg.keepalive_timeout)
            if not self._up:
                return
            if xmpp.rx_reads != reads:
                continue  # the server sent something (the answer or anything else): alive
            log.warning(
                "XMPP server sent nothing within %.1f s of a ping: reconnecting",
                cfg.keepalive_timeout,
            )
            self._keepalive = None
            self._set_down()
            with contextlib.suppress(Exception):
                xmpp.abort()
            return

    def _send_ping(self, xmpp: _LivenessComponent, target: JID) -> None:
        """One ``<iq type='get'><ping xmlns='urn:xmpp:ping'/></iq>`` (XEP-0199 §4.2) from the
        component, queued on slixmpp's send path without a response waiter: whatever comes
        back (result or error) is unhandled by slixmpp and only counts as received data."""
        iq = xmpp.Iq()
        iq["type"] = "get"
        iq["to"] = target
        iq["from"] = xmpp.boundjid
        iq["id"] = self._new_id()
        iq.enable("ping")
        try:
            xmpp.send(iq)
        except Exception as exc:  # the connection is going; the timeout decides
            log.debug("keepalive ping not sent: %s", exc)
