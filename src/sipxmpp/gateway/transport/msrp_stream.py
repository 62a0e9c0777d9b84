"""The MSRP transport edge: TCP and TLS connections around the sans-I/O MSRP core.

Theory of operation
-------------------
:class:`MsrpTransport` owns the listeners and connections of every MSRP session of the
gateway and drives one :class:`~sipxmpp.gateway.msrp.MsrpConnection` per transport
connection, the way aioquic's asyncio protocol drives its connection (design practice 13).
The sessions themselves live in the shared :class:`~sipxmpp.gateway.msrp.MsrpSessionTable`;
the runtime creates them from the SDP negotiation *before* any connection exists.

Connection set-up (RFC 4975 §5.4, RFC 6135 §4.2):

* **Passive side.** The listeners (``msrp:`` over TCP, ``msrps:`` over TLS) are bound when
  the transport starts; :attr:`MsrpTransport.local_addresses` gives the bound ports and
  :meth:`MsrpTransport.new_local_uri` a fresh URI on them for the SDP ``a=path`` (RFC 6135
  §4.2.2: the URI carries the address and port that really accept connections). An
  accepted connection gets its own core connection; the peer's first SEND binds the
  session it names. A first request naming no session (481), a session bound elsewhere
  (506) or another peer's session (403) is answered by the core and the connection is
  then closed ([ours]: §5.4 says the connection is bound by that first SEND, so a
  connection whose first SEND fails can never carry a session). So is an accepted
  connection that sends no request within ``bind_timeout`` (§5.4: the active endpoint
  "MUST immediately issue a SEND request").
* **Active side.** :meth:`MsrpTransport.connect` opens a connection to the first URI of
  the session's remote path (§6: the leftmost URI is the adjacent hop), TLS for
  ``msrps:`` with the server's certificate checked against the URI's host (§5.4), and
  binds the session at once (the core queues the bodiless binding SEND, which the
  connection writes as soon as it is up). An open connection to the same scheme, host and
  port is reused while it has room for another session (§5.4: "it SHOULD reuse that
  connection").

Driving the core. Every call into a core (bytes received, :meth:`MsrpTransport.send_message`,
a timer) is followed by one *service* round: the core's ``data_to_send()`` is written to
the socket, its events are passed to ``on_event`` (then the edge's own policies above run),
and the connection's **single** ``loop.call_at`` handle is re-armed for the earliest of
the core's ``next_deadline()``, the bind deadline and the write-stall deadline. There is
no task or sleep per transaction.

Failures. When a connection closes for any reason but :meth:`MsrpTransport.stop`, the core
hears ``connection_lost`` and every session on it fails (§5.4: "MUST consider any sessions
associated with the connection as also having failed"), which reaches ``on_event`` as
:class:`~sipxmpp.gateway.msrp.SessionFailed` (and :class:`~sipxmpp.gateway.msrp.SendFailed`
for unconfirmed messages). A connection that never came up (refused, timed out, TLS
failure) fails the sessions bound to it the same way. Once the last session of a
connection is gone, the connection is closed (§5.4: it "SHOULD NOT be closed while there
are sessions associated with it", and has no use after).

Memory and fairness. Writes go through :class:`~.sip_stream.SipStreamConnection` (shared
with the SIP edge): TCP_NODELAY is set, reading from a peer pauses while more than
``write_buffer_high_water`` octets wait for it, and a write past ``write_buffer_limit``
drops the connection. A peer that stops reading for ``write_stall_timeout`` is dropped
too, so a paused connection cannot hold its buffers forever. The number of connections is
capped by ``max_connections``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
import ssl
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

from sipxmpp.gateway.msrp import (
    FailureReport,
    LocalMsrpError,
    MsrpConnection,
    MsrpEvent,
    MsrpSession,
    MsrpSessionTable,
    MsrpUri,
    RequestRejected,
    SessionBound,
    SessionFailed,
    SessionState,
)

from .config import (
    CONNECT_TIMEOUT,
    LISTEN_BACKLOG,
    TLS_HANDSHAKE_TIMEOUT,
    ListenAddress,
    TlsSettings,
)
from .sip_stream import TIMER_SLACK, ConnectionState, SipStreamConnection, StreamPolicy
from .tls import client_context, normalise_identity, server_context

__all__ = [
    "MsrpTransport",
    "MsrpTransportConfig",
    "MsrpStreamLimits",
    "MsrpConnectionInfo",
    "MsrpEventHandler",
    "msrp_identities",
    "MAX_MSRP_CONNECTIONS",
    "MSRP_WRITE_BUFFER_HIGH_WATER",
    "MSRP_WRITE_BUFFER_LIMIT",
    "WRITE_STALL_TIMEOUT",
    "BIND_TIMEOUT",
    "STOP_GRACE",
    "MESSAGE_BURST_FACTOR",
]

log = logging.getLogger(__name__)

MsrpEventHandler = Callable[[MsrpEvent], None]

#: Cap on MSRP connections (inbound and outbound together). A quarter of the usual soft
#: limit of 1024 file descriptors: the SIP edge may take half (its MAX_CONNECTIONS), and
#: the rest is left for listeners, the XMPP component and DNS. One connection can carry up
#: to ``MsrpSettings.max_sessions_per_connection`` sessions, so this is not a session cap.
MAX_MSRP_CONNECTIONS = 256

#: Octets queued for a peer above which we stop reading from it. Two default-sized
#: (128 KiB) messages: a reading peer drains that in well under a second, and a peer that
#: sends while not reading our responses is slowed down instead of growing our memory.
MSRP_WRITE_BUFFER_HIGH_WATER = 256 * 1024

#: Octets queued for a peer at which the connection is dropped. Gateway messages may go
#: out with ``Failure-Report: no`` (RFC 7573 §7), which no response paces, so a burst can
#: be large; 4 MiB is 32 default-sized messages left unread, more than any peer that reads
#: at all leaves behind. It bounds memory per connection to about this value. It must hold
#: at least one whole message with its chunk headers, hence the check against
#: ``MsrpSettings.max_message_size`` (see ``MESSAGE_BURST_FACTOR``).
MSRP_WRITE_BUFFER_LIMIT = 4 * 1024 * 1024

#: The write limit must be at least this many times the largest message: a message sent
#: with ``Failure-Report: no`` leaves the core in one burst, its 2048-octet chunks adding
#: about 10% of headers, and a burst that alone crossed the limit would drop a peer that
#: reads perfectly well.
MESSAGE_BURST_FACTOR = 2

#: Seconds a peer may leave our writes unread (reading paused, see the high-water mark)
#: before it is dropped. Equal to the RFC 4975 §7.3 transaction timeout: a peer that did
#: not read for that long could not have answered our requests in time anyway.
WRITE_STALL_TIMEOUT = 30.0

#: Seconds an accepted connection may stay without a bound session. §5.4 makes the active
#: endpoint send its SEND "immediately"; 30 s (the §7.3 transaction timeout) leaves room
#: for slow links while freeing the slot of a peer that connects and says nothing.
BIND_TIMEOUT = 30.0

#: How long :meth:`MsrpTransport.stop` lets connections flush before aborting them; queued
#: octets are bounded by the write limit, so a reading peer takes well under a second.
STOP_GRACE = 1.0

#: Service rounds one core call may trigger when ``on_event`` drives the core again (for
#: instance by sending a reply from inside the callback); more would be a feedback loop
#: between the runtime and the core, which is logged and cut.
MAX_SERVICE_ROUNDS = 64

StreamKind = Literal["tcp", "tls"]


@dataclass(frozen=True, slots=True)
class MsrpStreamLimits:
    """Resource limits of the MSRP edge; the defaults are the module constants."""

    max_connections: int = MAX_MSRP_CONNECTIONS
    write_buffer_high_water: int = MSRP_WRITE_BUFFER_HIGH_WATER
    write_buffer_limit: int = MSRP_WRITE_BUFFER_LIMIT
    write_stall_timeout: float = WRITE_STALL_TIMEOUT
    bind_timeout: float = BIND_TIMEOUT
    connect_timeout: float = CONNECT_TIMEOUT
    tls_handshake_timeout: float = TLS_HANDSHAKE_TIMEOUT
    listen_backlog: int = LISTEN_BACKLOG

    def __post_init__(self) -> None:
        if self.max_connections < 1 or self.listen_backlog < 1:
            raise ValueError("max_connections and listen_backlog must be at least 1")
        if not 0 < self.write_buffer_high_water <= self.write_buffer_limit:
            raise ValueError("need 0 < write_buffer_high_water <= write_buffer_limit")
        timeouts = (
            self.write_stall_timeout,
            self.bind_timeout,
            self.connect_timeout,
            self.tls_handshake_timeout,
        )
        if any(t <= 0 for t in timeouts):
            raise ValueError("MSRP edge timeouts must be positive")


@dataclass(frozen=True, slots=True)
class MsrpTransportConfig:
    """Listeners and TLS material of the MSRP edge.

    A listener set to None is not opened (an edge with no listener can still be the active
    side of every session). Outbound ``msrps:`` needs ``tls`` even without a TLS listener,
    for the trust anchors and, for mutual TLS, our client certificate. With a TLS listener,
    ``tls.require_client_certificate`` asks connecting peers for a certificate valid under
    ``tls.cafile`` (RFC 4975 §5.4 mutual authentication).
    """

    tcp: ListenAddress | None = field(default_factory=ListenAddress)
    tls_listen: ListenAddress | None = None
    tls: TlsSettings | None = None
    limits: MsrpStreamLimits = field(default_factory=MsrpStreamLimits)

    def __post_init__(self) -> None:
        if self.tls_listen is not None and (self.tls is None or self.tls.certfile is None):
            raise ValueError("an MSRP TLS listener needs tls settings with a certfile")


@dataclass(frozen=True, slots=True)
class MsrpConnectionInfo:
    """A snapshot of one MSRP connection, for the runtime, logs and tests."""

    id: int
    secure: bool
    remote: tuple[str, int]
    local: tuple[str, int]
    outbound: bool
    open: bool
    session_ids: tuple[str, ...]
    """Sessions bound to the connection (RFC 4975 §5.4 allows several)."""
    reading_paused: bool
    """True while the peer leaves more than the high-water mark of our writes unread."""
    timer_deadline: float | None
    """When the connection's single timer fires (``loop.time()`` clock), or None."""


def msrp_identities(cert: Mapping[str, Any] | None) -> tuple[str, ...]:
    """Host names and addresses a verified certificate proves for MSRP (RFC 4975 §5.4).

    §5.4: "The SubjectAltName in the received certificate MUST match the hostname part of
    the URI". So: dNSName and iPAddress entries, normalised; the subject commonName only
    when the certificate has no subjectAltName at all. Wildcards are kept as written and
    never match a host ([ours], as the SIP edge does after RFC 5922 §7.2).
    """
    if not cert:
        return ()
    sans: tuple[tuple[str, str], ...] = tuple(cert.get("subjectAltName", ()))
    if not sans:
        names = [
            normalise_identity(value)
            for rdn in cert.get("subject", ())
            for key, value in rdn
            if key == "commonName"
        ]
        return (names[-1],) if names and names[-1] else ()
    out: list[str] = []
    for kind, value in sans:
        if kind == "DNS":
            out.append(normalise_identity(value))
        elif kind == "IP Address":
            try:
                out.append(str(ipaddress.ip_address(value.strip())))
            except ValueError:
                continue
    return tuple(dict.fromkeys(v for v in out if v))


def _host_key(host: str) -> str:
    """A URI host as :func:`msrp_identities` writes it (IP literals canonical)."""
    bare = host.strip("[]")
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        return normalise_identity(bare)


@dataclass(eq=False, slots=True)
class _Link:
    """One transport connection with its core connection and its single timer."""

    stream: SipStreamConnection
    core: MsrpConnection
    secure: bool
    outbound: bool
    created: float
    target: MsrpUri | None = None
    """Outbound: the URI connected to (its host is what a TLS server must prove)."""
    timer: asyncio.TimerHandle | None = None
    timer_at: float | None = None
    stalled_since: float | None = None
    ever_bound: bool = False
    """A session was bound to the connection at some point (outbound: at bind time)."""
    refused_first: bool = False
    """Inbound: the first request named no usable session (481/506/403)."""
    busy: bool = False
    again: bool = False


class MsrpTransport:
    """Listeners, connections and timers of the MSRP sessions in ``table``.

    Use as ``async with MsrpTransport(table, config, on_event=handler) as edge:`` or call
    :meth:`start` and :meth:`stop`. ``on_event`` receives every event of every core
    connection (all carry their ``session_id`` except ``ConnectionFailed``), plus a
    :class:`~sipxmpp.gateway.msrp.SessionFailed` of the edge's own when it refuses a session.
    """

    def __init__(
        self,
        table: MsrpSessionTable,
        config: MsrpTransportConfig | None = None,
        *,
        on_event: MsrpEventHandler | None = None,
    ) -> None:
        self.table = table
        self.config = config if config is not None else MsrpTransportConfig()
        self._on_event = on_event
        limits = self.config.limits
        if limits.write_buffer_limit < MESSAGE_BURST_FACTOR * table.settings.max_message_size:
            raise ValueError(
                "write_buffer_limit must be at least "
                f"{MESSAGE_BURST_FACTOR} x MsrpSettings.max_message_size"
            )
        self._policy = StreamPolicy(
            write_buffer_high_water=limits.write_buffer_high_water,
            write_buffer_limit=limits.write_buffer_limit,
            keepalive_interval=None,  # MSRP has no keep-alive of its own; bodiless SENDs are the runtime's
            keepalive_pong_timeout=None,
            idle_timeout=None,  # a chat may be silent for hours; sessions end the connection
        )
        tls = self.config.tls
        self._client_ssl: ssl.SSLContext | None = client_context(tls) if tls is not None else None
        self._server_ssl: ssl.SSLContext | None = None
        if self.config.tls_listen is not None and tls is not None:
            self._server_ssl = server_context(tls)
        self._rng = random.Random(0)  # SipStreamConnection wants one; no keep-alive jitter here
        self._loop: asyncio.AbstractEventLoop | None = None
        self._servers: list[asyncio.Server] = []
        self._bound: dict[str, tuple[str, int]] = {}
        self._links: dict[int, _Link] = {}
        self._by_core: dict[MsrpConnection, _Link] = {}
        self._pool: dict[tuple[bool, str, int], list[_Link]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._next_id = 1
        self._started = False
        self._stopping = False

    # ------------------------------------------------------------------ lifecycle
    @property
    def local_addresses(self) -> Mapping[str, tuple[str, int]]:
        """``"tcp"``/``"tls"`` -> the (host, port) each listener is bound to."""
        return dict(self._bound)

    async def start(self) -> None:
        """Bind and open the configured listeners."""
        if self._started:
            raise RuntimeError("the MSRP transport was already started")
        self._started = True
        loop = asyncio.get_running_loop()
        self._loop = loop
        cfg = self.config
        listeners: tuple[tuple[StreamKind, ListenAddress | None], ...] = (
            ("tcp", cfg.tcp),
            ("tls", cfg.tls_listen),
        )
        try:
            for name, listen in listeners:
                if listen is None:
                    continue
                family = (
                    socket.AF_INET6
                    if ipaddress.ip_address(listen.host).version == 6
                    else socket.AF_INET
                )
                sock = socket.socket(family, socket.SOCK_STREAM)
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    sock.bind((listen.host, listen.port))
                    sock.listen(cfg.limits.listen_backlog)
                    sock.setblocking(False)
                    bound = sock.getsockname()
                    server = await loop.create_server(
                        self._inbound_factory(name),
                        sock=sock,
                        ssl=self._server_ssl if name == "tls" else None,
                        ssl_handshake_timeout=(
                            cfg.limits.tls_handshake_timeout if name == "tls" else None
                        ),
                    )
                except BaseException:
                    sock.close()
                    raise
                self._servers.append(server)
                self._bound[name] = (str(bound[0]), int(bound[1]))
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Close listeners and connections (flushing briefly) and cancel every timer.

        Sessions on the closed connections are not reported as failed: the runtime is the
        one shutting down.
        """
        if self._stopping:
            return
        self._stopping = True
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        links = list(self._links.values())
        for link in links:
            self._cancel_timer(link)
            link.stream.close()
        if links:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + STOP_GRACE
            while any(link.stream.state is not ConnectionState.CLOSED for link in links):
                if loop.time() >= deadline:
                    for link in links:
                        link.stream.abort()
                    break
                await asyncio.sleep(0.01)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        self._links.clear()
        self._by_core.clear()
        self._pool.clear()

    async def __aenter__(self) -> MsrpTransport:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ------------------------------------------------------------------ runtime API
    def new_local_uri(self, *, secure: bool = False, host: str | None = None) -> MsrpUri:
        """A fresh local URI on the TCP (``secure=False``) or TLS listener, for a=path.

        ``host`` overrides the bound address (e.g. a name the peer can resolve); the port is
        always the bound one (RFC 6135 §4.2.2: the URI must name where we really listen).
        """
        name = "tls" if secure else "tcp"
        bound = self._bound.get(name)
        if bound is None:
            raise LocalMsrpError(f"no MSRP {name.upper()} listener is running")
        bound_host = bound[0]
        if host is None and ":" in bound_host:
            bound_host = f"[{bound_host}]"
        return self.table.new_local_uri(host or bound_host, bound[1], secure=secure)

    def connect(self, session: MsrpSession) -> None:
        """Active side (RFC 4975 §5.4, RFC 6135 §4.2): bind ``session`` on a connection to
        the first URI of its remote path, reusing an open one to the same place.

        Returns at once; the outcome arrives through ``on_event`` (``SessionBound`` once the
        peer accepted the binding SEND, ``SessionFailed`` otherwise). Raises
        :class:`LocalMsrpError` when it cannot even try: transport not running, session not
        unbound or without remote path, ``msrps:`` without TLS settings, or the connection
        cap reached (status 503).
        """
        loop = self._loop
        if loop is None or self._stopping:
            raise LocalMsrpError("the MSRP transport is not running")
        if session.state is not SessionState.UNBOUND:
            raise LocalMsrpError(f"session {session.session_id} is {session.state.value}")
        path = session.remote_path
        if not path:
            raise LocalMsrpError("connect() needs the peer's a=path (set_remote_path)")
        target = path[0]  # RFC 4975 §6: the leftmost URI is the adjacent hop
        if target.port is None:
            raise LocalMsrpError("the peer's first a=path URI has no port (RFC 4975 §8.2)")
        if target.secure and self._client_ssl is None:
            raise LocalMsrpError("msrps: needs TLS settings (RFC 4975 §5.4)")
        key = (target.secure, _host_key(target.host), target.port)
        link = self._reusable(key)
        fresh = link is None
        if link is None:
            if len(self._links) >= self.config.limits.max_connections:
                raise LocalMsrpError("too many MSRP connections", 503)
            link = self._open(target, key, loop)
        try:
            link.core.bind(session, loop.time())
        except LocalMsrpError:
            if fresh:
                link.stream.abort()
            raise
        link.ever_bound = True  # from now on, the last session leaving closes it
        self._service(link)

    def send_message(
        self,
        session: MsrpSession,
        content_type: str,
        body: bytes,
        *,
        success_report: bool = False,
        failure_report: FailureReport = FailureReport.YES,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> str:
        """:meth:`MsrpSession.send_message` followed by a flush; returns the Message-ID.

        Messages for a session not bound yet wait in the core until it is.
        """
        now = self._loop.time() if self._loop is not None else 0.0
        message_id = session.send_message(
            content_type,
            body,
            now=now,
            success_report=success_report,
            failure_report=failure_report,
            headers=headers,
        )
        self._service_session(session)
        return message_id

    def close_session(self, session: MsrpSession) -> tuple[str, ...]:
        """Close a session locally (e.g. after a SIP BYE); returns the Message-IDs of our
        messages that were not confirmed (see :meth:`MsrpSession.close`). Its connection is
        closed once no session is left on it."""
        core = session.connection
        unfinished = session.close()
        link = self._by_core.get(core) if core is not None else None
        if link is not None:
            self._service(link)
        return unfinished

    def service(self, session: MsrpSession) -> None:
        """Write what the core holds for ``session``'s connection and re-arm its timer
        (after the runtime drove that session's core directly, e.g. answered a message)."""
        core = session.connection
        link = self._by_core.get(core) if core is not None else None
        if link is None:
            return
        if link.busy:
            # Called from inside this connection's own service round (on_event answered a
            # message): the round picks the output up, and needs another pass only if the
            # core produced something (a Failure-Report: no answer produces nothing).
            if link.core.has_output:
                link.again = True
            return
        self._service(link)

    def abort_connection(self, session: MsrpSession) -> bool:
        """Drop the connection carrying ``session`` at once, discarding what is queued for
        it and without any MSRP goodbye (e.g. a peer to be cut off). Every session on it
        fails (RFC 4975 §5.4), which ``on_event`` hears as for any lost connection. False
        if the session is not bound to a connection."""
        core = session.connection
        link = self._by_core.get(core) if core is not None else None
        if link is None:
            return False
        link.stream.abort()
        return True

    def flush(self) -> None:
        """Write whatever the cores hold and re-arm their timers; call after driving a core
        directly (e.g. :meth:`MsrpSession.send_message` or ``abort_message``)."""
        for link in list(self._links.values()):
            self._service(link)

    def connections(self) -> list[MsrpConnectionInfo]:
        """Snapshots of every connection."""
        return [self._info(link) for link in self._links.values()]

    def connection_of(self, session: MsrpSession) -> MsrpConnectionInfo | None:
        """The connection a session is bound to, if any."""
        core = session.connection
        link = self._by_core.get(core) if core is not None else None
        return None if link is None else self._info(link)

    # ------------------------------------------------------------------ connections
    def _new_id(self) -> int:
        conn_id = self._next_id
        self._next_id += 1
        return conn_id

    def _inbound_factory(self, name: StreamKind) -> Callable[[], SipStreamConnection]:
        def factory() -> SipStreamConnection:
            assert self._loop is not None
            return SipStreamConnection(
                self, self._new_id(), name, self._policy, self._loop, self._rng, outbound=False
            )

        return factory

    def _reusable(self, key: tuple[bool, str, int]) -> _Link | None:
        room = self.table.settings.max_sessions_per_connection
        for link in self._pool.get(key, ()):
            if link.stream.usable and not link.core.closed and len(link.core.session_ids) < room:
                return link
        return None

    def _open(
        self, target: MsrpUri, key: tuple[bool, str, int], loop: asyncio.AbstractEventLoop
    ) -> _Link:
        host = target.host.strip("[]")
        assert target.port is not None
        stream = SipStreamConnection(
            self,
            self._new_id(),
            "tls" if target.secure else "tcp",
            self._policy,
            loop,
            self._rng,
            outbound=True,
            remote=(host, target.port),
            expected_identity=host,
        )
        link = _Link(
            stream,
            MsrpConnection(self.table),
            secure=target.secure,
            outbound=True,
            created=loop.time(),
            target=target,
        )
        self._register(link)
        self._pool.setdefault(key, []).append(link)
        self._spawn(self._connect(link))
        return link

    async def _connect(self, link: _Link) -> None:
        loop = asyncio.get_running_loop()
        limits = self.config.limits
        stream = link.stream
        host, port = stream.remote
        try:
            if link.secure:
                connecting = loop.create_connection(
                    lambda: stream,
                    host,
                    port,
                    ssl=self._client_ssl,
                    # RFC 4975 §14.2: MSRP elements send SNI (Python sends none for IP literals).
                    server_hostname=host,
                    ssl_handshake_timeout=limits.tls_handshake_timeout,
                )
                timeout = limits.connect_timeout + limits.tls_handshake_timeout
            else:
                connecting = loop.create_connection(lambda: stream, host, port)
                timeout = limits.connect_timeout
            await asyncio.wait_for(connecting, timeout)
        except (TimeoutError, OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            log.warning(
                "MSRP %s connection to %s:%d failed: %s",
                "TLS" if link.secure else "TCP",
                host,
                port,
                str(exc) or type(exc).__name__,
            )
            stream.abort()  # never came up: stream_closed fails its sessions

    def _register(self, link: _Link) -> None:
        self._links[link.stream.id] = link
        self._by_core[link.core] = link

    def _forget(self, link: _Link) -> None:
        self._cancel_timer(link)
        self._links.pop(link.stream.id, None)
        self._by_core.pop(link.core, None)
        for key, links in list(self._pool.items()):
            if link in links:
                links.remove(link)
                if not links:
                    del self._pool[key]

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ StreamOwner
    def stream_connected(self, conn: SipStreamConnection) -> bool:
        """The TCP connection is up (TLS handshake done); False refuses it."""
        if self._stopping or self._loop is None:
            return False
        if conn.outbound:
            link = self._links.get(conn.id)
            if link is None:
                return False
            if link.secure:
                expected = _host_key(conn.expected_identity or conn.remote[0])
                proven = msrp_identities(conn.peer_cert)
                if expected not in proven:
                    # §5.4: the SubjectAltName "MUST match the hostname part of the URI".
                    log.warning(
                        "MSRP TLS connection %d to %s:%d: certificate proves %s, not %r",
                        conn.id,
                        *conn.remote,
                        proven or "nothing",
                        expected,
                    )
                    return False
                conn.peer_identity = expected
            return True
        if len(self._links) >= self.config.limits.max_connections:
            log.warning("MSRP connection limit reached; refusing %s:%d", *conn.remote)
            return False
        secure = conn.transport_name == "tls"
        link = _Link(
            conn, MsrpConnection(self.table), secure=secure, outbound=False, created=self._now()
        )
        self._register(link)
        self._rearm(link)  # the bind deadline
        return True

    def stream_data(self, conn: SipStreamConnection, data: bytes) -> None:
        """Bytes arrived: feed the core, then service the connection."""
        link = self._links.get(conn.id)
        if link is None or self._stopping:
            return
        try:
            link.core.receive_data(data, self._now())
        except Exception:
            log.exception("MSRP core failed on data of connection %d; dropping it", conn.id)
            conn.abort()
            return
        self._service(link)

    def stream_closed(self, conn: SipStreamConnection) -> None:
        """The connection is gone: its sessions fail (RFC 4975 §5.4)."""
        link = self._links.get(conn.id)
        if link is None:
            return
        self._forget(link)
        if self._stopping:
            return
        try:
            link.core.connection_lost(self._now())
        except Exception:
            log.exception("MSRP core failed in connection_lost (connection %d)", conn.id)
            return
        self._dispatch_events(link)

    # ------------------------------------------------------------------ the service round
    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _service_session(self, session: MsrpSession) -> None:
        core = session.connection
        link = self._by_core.get(core) if core is not None else None
        if link is not None:
            self._service(link)

    def _service(self, link: _Link) -> None:
        """Flush the core, deliver its events, apply the edge policies, re-arm the timer."""
        if link.busy:
            link.again = True  # on_event drove the core again: fold into the outer round
            return
        link.busy = True
        try:
            rounds = 0
            while True:
                link.again = False
                self._flush(link)
                self._dispatch_events(link)
                self._apply_policies(link)
                if not link.again or link.stream.state is ConnectionState.CLOSED:
                    break
                rounds += 1
                if rounds >= MAX_SERVICE_ROUNDS:
                    log.error(
                        "MSRP connection %d re-entered %d times; deferring", link.stream.id, rounds
                    )
                    assert self._loop is not None
                    self._loop.call_soon(self._service, link)
                    break
            self._rearm(link)
        finally:
            link.busy = False

    def _flush(self, link: _Link) -> None:
        data = link.core.data_to_send()
        stream = link.stream
        if data and stream.usable:
            stream.write(data)  # over the write limit: dropped, stream_closed follows
        if stream.reading_paused:
            if link.stalled_since is None:
                link.stalled_since = self._now()
        else:
            link.stalled_since = None

    def _dispatch_events(self, link: _Link) -> None:
        while (event := link.core.next_event()) is not None:
            if isinstance(event, SessionBound):
                link.ever_bound = True
                self._check_binding(link, event.session_id)
            elif (
                isinstance(event, RequestRejected)
                and event.session_id is None
                and not link.outbound
                and not link.ever_bound
            ):
                link.refused_first = True
            self._emit(event)

    def _check_binding(self, link: _Link, session_id: str) -> None:
        """§5.4: "Connections using the 'msrps' scheme MUST use TLS"; an msrps session bound
        over plain TCP is closed again, and the runtime told."""
        session = self.table.get(session_id)
        if session is None or link.outbound or link.secure or not session.local_uri.secure:
            return
        session.close()
        self._emit(
            SessionFailed(session_id, 403, "msrps: session bound over plain TCP (RFC 4975 §5.4)")
        )

    def _emit(self, event: MsrpEvent) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:
            log.exception("MSRP on_event callback failed on %r", event)

    def _apply_policies(self, link: _Link) -> None:
        stream = link.stream
        if not stream.usable:
            return
        core = link.core
        if core.closed:
            stream.close()  # fatal framing error: the queued error response still goes out
        elif link.refused_first:
            log.info("MSRP connection %d: first request named no session; closing", stream.id)
            stream.close()
        elif link.ever_bound and not core.session_ids:
            stream.close()  # §5.4: no session left on it

    # ------------------------------------------------------------------ the single timer
    def _cancel_timer(self, link: _Link) -> None:
        if link.timer is not None:
            link.timer.cancel()
            link.timer = None
            link.timer_at = None

    def _deadline(self, link: _Link) -> float | None:
        limits = self.config.limits
        due: list[float] = []
        core_due = link.core.next_deadline()
        if core_due is not None:
            due.append(core_due)
        if not link.outbound and not link.ever_bound:
            due.append(link.created + limits.bind_timeout)
        if link.stalled_since is not None:
            due.append(link.stalled_since + limits.write_stall_timeout)
        return min(due) if due else None

    def _rearm(self, link: _Link) -> None:
        if self._stopping or self._loop is None or link.stream.state is ConnectionState.CLOSED:
            self._cancel_timer(link)
            return
        deadline = self._deadline(link)
        if deadline is None:
            self._cancel_timer(link)
            return
        if link.timer is not None and link.timer_at == deadline:
            return
        if link.timer is not None:
            link.timer.cancel()
        link.timer_at = deadline
        link.timer = self._loop.call_at(deadline, self._on_timer, link)

    def _on_timer(self, link: _Link) -> None:
        due = link.timer_at or 0.0
        link.timer = None
        link.timer_at = None
        if self._stopping or link.stream.id not in self._links:
            return
        # call_at may fire up to the clock resolution early; never give the core a `now`
        # before the deadline it asked for.
        now = max(due, self._now())
        reached = now + TIMER_SLACK
        limits = self.config.limits
        stream = link.stream
        if (
            link.stalled_since is not None
            and reached >= link.stalled_since + limits.write_stall_timeout
        ):
            if stream.reading_paused:
                log.warning(
                    "MSRP connection %d to %s:%d: peer left our writes unread for %.1f s; dropped",
                    stream.id,
                    *stream.remote,
                    limits.write_stall_timeout,
                )
                stream.abort()
                return
            link.stalled_since = None
        if (
            not link.outbound
            and not link.ever_bound
            and reached >= link.created + limits.bind_timeout
        ):
            log.info(
                "MSRP connection %d from %s:%d bound no session; closing", stream.id, *stream.remote
            )
            stream.close()
            return
        try:
            link.core.handle_timer(now)
        except Exception:
            log.exception("MSRP core failed in handle_timer (connection %d)", stream.id)
        self._service(link)

    # ------------------------------------------------------------------ introspection
    @staticmethod
    def _info(link: _Link) -> MsrpConnectionInfo:
        stream = link.stream
        return MsrpConnectionInfo(
            id=stream.id,
            secure=link.secure,
            remote=stream.remote,
            local=stream.local,
            outbound=link.outbound,
            open=stream.is_open,
            session_ids=link.core.session_ids,
            reading_paused=stream.reading_paused,
            timer_deadline=link.timer_at if link.timer is not None else None,
        )
