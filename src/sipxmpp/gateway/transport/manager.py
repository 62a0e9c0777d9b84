"""The SIP transport edge: UDP, TCP and TLS sockets around one sans-I/O SIP core.

Theory of operation
-------------------
The manager owns the sockets and drives the core the way aioquic's asyncio protocol drives
its connection (design practice 13):

1. bytes arrive -> ``core.receive_datagram`` / ``core.receive_stream_data`` with
   ``now = loop.time()`` and a :class:`TransportAddress` naming the source (for streams:
   the connection id and the peer's verified TLS identity); UDP datagrams come in batches
   (everything queued on the socket when it became readable, see ``sip_udp``), all fed with
   one ``now``;
2. :meth:`SipTransportManager.transmit` runs, once per read or batch: ``core.data_to_send()``
   is written out, ``core.close_connections()`` is honoured, the single ``loop.call_at``
   timer is re-armed for ``core.next_deadline()`` (firing up to :data:`TIMER_SLACK` late,
   so that one wakeup serves all the deadlines close together), and ``on_activity()`` tells
   the runtime to drain ``core.next_event()``. The runtime calls :meth:`transmit` again
   after it drove the core itself (``send_request``/``send_response``).

Where bytes go (the decision is the core's, RFC 3261 §18.2.2; the edge carries it out):

* ``udp``: ``sendto(host, port)`` from the listening socket (so responses return to the
  port in our Via).
* ``tcp``/``tls`` with ``connection`` naming an open connection: written there (a response
  goes back on the connection its request came in on). If that connection is gone, the
  ``host``/``port`` of the address are used as for a new destination (§18.2.2: the core puts
  the ``received`` address and sent-by port there).
* ``tcp``/``tls`` otherwise: an open connection to ``(transport, host, port)`` from the pool
  is reused (for TLS only if its certificate proves the required identity); else a new
  outbound connection is opened and the message waits (bounded) until it is up.

A TLS server must prove ``address.peer_identity`` if set (the SIP domain the request targets,
RFC 5922 §7.3), else ``address.host``.

What the core hears about failures: an established connection that closes (either side,
idle timeout, write limit) -> ``core.connection_lost(id)``; a connection that never came up
(refused, timed out, unverified certificate, queue limit while connecting), a transport we
cannot use (no listener / no TLS settings), the connection cap, or an unresolvable UDP host
name -> ``core.transport_error(destination)`` for each destination whose bytes were lost
(RFC 3261 §18.4, §17.1.4), so the transaction fails at once instead of at Timer B/F.

The port-0 problem: the core needs the bound ports for its Via headers before it can be
built, so :meth:`start` binds every socket first, then calls ``core_factory`` with the bound
addresses, and only then lets asyncio read from the sockets.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

from sipxmpp.gateway.sip.address import TransportAddress

from .config import ListenAddress, TransportConfig
from .interface import SipCore
from .sip_stream import ConnectionState, SipStreamConnection, StreamPolicy
from .sip_udp import SipDatagramProtocol, make_udp_socket
from .tls import client_context, identity_matches, server_context, sip_identities

__all__ = ["SipTransportManager", "ConnectionInfo", "BoundAddresses", "CoreFactory"]

log = logging.getLogger(__name__)

#: transport name -> (host, port) actually bound; the shape of ``EndpointConfig.local``.
BoundAddresses = Mapping[str, tuple[str, int]]
CoreFactory = Callable[[BoundAddresses], SipCore]

#: How long :meth:`SipTransportManager.stop` lets connections flush before aborting them:
#: queued bytes are bounded by the write limit, so a reading peer takes well under a second.
STOP_GRACE = 1.0

#: Outbound transmissions within one :meth:`transmit` call that re-enter it (the runtime
#: driving the core from ``on_activity``) are folded into at most this many extra rounds;
#: more would mean a feedback loop between runtime and core, which is logged and cut.
MAX_TRANSMIT_ROUNDS = 64

#: How late the core's timer may fire, in seconds. Under load every transaction has its
#: own deadline (Timer J/K, Timer E...), spread a fraction of a millisecond apart; firing
#: exactly at each would cost one event-loop wakeup per transaction. With this slack one
#: wakeup serves every deadline within 10 ms. RFC 3261 timers are multiples of T1 (500 ms),
#: so 10 ms late is well inside the tolerance a retransmission or timeout has anyway.
TIMER_SLACK = 0.010

#: Destination hosts whose "IP literal of which family, or a name" answer is kept, so that
#: sending a datagram does not parse the address every time. A gateway sends to a few next
#: hops; the bound only matters for a flood of distinct Via hosts (the table is reset).
MAX_CACHED_HOSTS = 1024

StreamTransport = Literal["tcp", "tls"]


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """A snapshot of one stream connection, for the runtime, logs and tests."""

    id: int
    transport: StreamTransport
    remote: tuple[str, int]
    local: tuple[str, int]
    outbound: bool
    open: bool
    #: The identity reported to the core (see ``TransportAddress.peer_identity``).
    peer_identity: str | None
    #: Every SIP domain identity the peer's certificate proves (RFC 5922 §7.1).
    peer_identities: tuple[str, ...]


def _family_of(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class SipTransportManager:
    """Listeners, outbound connections and the timer around one SIP core.

    Use as ``async with SipTransportManager(config, factory) as manager:`` or call
    :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        config: TransportConfig,
        core_factory: CoreFactory,
        *,
        on_activity: Callable[[], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self._core_factory = core_factory
        self._on_activity = on_activity
        self._rng = rng if rng is not None else random.Random()
        self._core: SipCore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._bound: dict[str, tuple[str, int]] = {}
        self._udp: SipDatagramProtocol | None = None
        self._udp_family: socket.AddressFamily | None = None
        #: host (brackets stripped) -> its address family, or None for a host name.
        self._host_family: dict[str, socket.AddressFamily | None] = {}
        self._servers: list[asyncio.Server] = []
        self._conns: dict[int, SipStreamConnection] = {}
        self._pool: dict[tuple[str, str, int], list[SipStreamConnection]] = {}
        self._next_conn_id = 1
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending_resolutions = 0
        self._timer: asyncio.TimerHandle | None = None
        #: The core deadline the timer serves, and when it fires (deadline + TIMER_SLACK).
        self._timer_at: float | None = None
        self._timer_fires: float = 0.0
        self._flushing = False
        self._flush_again = False
        self._started = False
        self._stopping = False
        tls = config.tls
        self._server_ssl: ssl.SSLContext | None = None
        self._client_ssl: ssl.SSLContext | None = client_context(tls) if tls is not None else None
        if config.tls_listen is not None and tls is not None:
            self._server_ssl = server_context(tls)
        limits = config.limits
        self._policy = StreamPolicy(
            write_buffer_high_water=limits.write_buffer_high_water,
            write_buffer_limit=limits.write_buffer_limit,
            keepalive_interval=config.keepalive_interval,
            keepalive_pong_timeout=config.keepalive_pong_timeout,
            idle_timeout=config.idle_timeout,
        )

    # ------------------------------------------------------------------ lifecycle
    @property
    def core(self) -> SipCore:
        """The core built by the factory (available once :meth:`start` has bound the sockets)."""
        if self._core is None:
            raise RuntimeError("the transport manager has not been started")
        return self._core

    @property
    def local_addresses(self) -> BoundAddresses:
        """transport -> bound (host, port) of each listener, e.g. ``{"udp": ("127.0.0.1", 40123)}``."""
        return dict(self._bound)

    async def start(self) -> None:
        """Bind every configured listener, build the core, start serving."""
        if self._started:
            raise RuntimeError("the transport manager was already started")
        self._started = True
        loop = asyncio.get_running_loop()
        self._loop = loop
        cfg = self.config
        limits = cfg.limits
        udp_sock: socket.socket | None = None
        stream_socks: list[tuple[StreamTransport, socket.socket]] = []
        try:
            # 1. Bind synchronously, so the bound ports are known before the core exists
            #    and no byte can arrive before it does.
            if cfg.udp is not None:
                family = _family_of(cfg.udp.host)
                udp_sock = make_udp_socket(
                    cfg.udp.host, cfg.udp.port, family, limits.udp_socket_buffer
                )
                self._udp_family = family
                self._bound["udp"] = self._sockname(udp_sock)
                rcv = udp_sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
                log.debug("UDP %s:%d SO_RCVBUF=%d", *self._bound["udp"], rcv)
            listeners: tuple[tuple[StreamTransport, ListenAddress | None], ...] = (
                ("tcp", cfg.tcp),
                ("tls", cfg.tls_listen),
            )
            for name, listen in listeners:
                if listen is None:
                    continue
                sock = socket.socket(_family_of(listen.host), socket.SOCK_STREAM)
                stream_socks.append((name, sock))
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((listen.host, listen.port))
                sock.listen(limits.listen_backlog)
                sock.setblocking(False)
                self._bound[name] = self._sockname(sock)
            # 2. The core, now that its Via sent-by values are known.
            self._core = self._core_factory(dict(self._bound))
            # 3. Serve.
            if udp_sock is not None:
                proto = SipDatagramProtocol(
                    self._on_datagrams, limits.write_buffer_limit, sock=udp_sock
                )
                await loop.create_datagram_endpoint(lambda: proto, sock=udp_sock)
                self._udp = proto
                udp_sock = None
            while stream_socks:
                name, sock = stream_socks[0]
                server = await loop.create_server(
                    self._inbound_factory(name),
                    sock=sock,
                    ssl=self._server_ssl if name == "tls" else None,
                    ssl_handshake_timeout=limits.tls_handshake_timeout if name == "tls" else None,
                )
                stream_socks.pop(0)
                self._servers.append(server)
        except BaseException:
            if udp_sock is not None:
                udp_sock.close()
            for _, sock in stream_socks:
                sock.close()
            await self.stop()
            raise
        self.transmit()

    async def stop(self) -> None:
        """Close listeners and connections (flushing briefly), cancel timers and tasks.

        The core is not told about connections closed by the shutdown itself.
        """
        if self._stopping:
            return
        self._stopping = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        conns = list(self._conns.values())
        for conn in conns:
            conn.close()
        if conns:
            deadline = asyncio.get_running_loop().time() + STOP_GRACE
            while any(c.state is not ConnectionState.CLOSED for c in conns):
                if asyncio.get_running_loop().time() >= deadline:
                    for c in conns:
                        c.abort()
                    break
                await asyncio.sleep(0.01)
        if self._udp is not None and self._udp.transport is not None:
            self._udp.transport.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        self._conns.clear()
        self._pool.clear()

    async def __aenter__(self) -> SipTransportManager:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ------------------------------------------------------------------ introspection
    def connection_info(self, conn_id: int) -> ConnectionInfo | None:
        conn = self._conns.get(conn_id)
        return None if conn is None else self._info(conn)

    def connections(self) -> list[ConnectionInfo]:
        return [self._info(c) for c in self._conns.values()]

    @staticmethod
    def _info(conn: SipStreamConnection) -> ConnectionInfo:
        return ConnectionInfo(
            id=conn.id,
            transport=conn.transport_name,
            remote=conn.remote,
            local=conn.local,
            outbound=conn.outbound,
            open=conn.is_open,
            peer_identity=conn.peer_identity,
            peer_identities=sip_identities(conn.peer_cert),
        )

    # ------------------------------------------------------------------ the core loop
    def transmit(self) -> None:
        """Flush the core's output, honour its close requests, re-arm the timer, notify.

        Call after driving the core directly (``send_request``, ``send_response``). Safe
        to call from inside ``on_activity``: the nested call is folded into this one.
        """
        if self._core is None or self._stopping:
            return
        if self._flushing:
            self._flush_again = True
            return
        self._flushing = True
        try:
            self._flush_output()
            if self._on_activity is not None:
                try:
                    self._on_activity()
                except Exception:
                    log.exception("on_activity callback failed")
                # Whatever the runtime made the core send while draining events goes out
                # now, whether or not it called transmit() itself.
                self._flush_again = True
            rounds = 0
            while self._flush_again and not self._stopping:
                self._flush_again = False
                rounds += 1
                if rounds > MAX_TRANSMIT_ROUNDS:
                    log.error("transmit re-entered %d times; deferring", rounds)
                    asyncio.get_running_loop().call_soon(self.transmit)
                    break
                self._flush_output()
            self._rearm_timer()
        finally:
            self._flushing = False

    def _flush_output(self) -> None:
        core = self.core
        try:
            outgoing = core.data_to_send()
            to_close = core.close_connections()
        except Exception:
            log.exception("SIP core failed to produce output")
            return
        for dest, data in outgoing:
            self._send(dest, data)
        for conn_id in to_close:
            conn = self._conns.get(conn_id)
            if conn is not None:
                conn.close()

    def _rearm_timer(self) -> None:
        if self._stopping or self._loop is None:
            return
        try:
            deadline = self.core.next_deadline()
        except Exception:
            log.exception("SIP core failed to report its deadline")
            deadline = None
        if deadline is None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
                self._timer_at = None
            return
        timer_at = self._timer_at
        if self._timer is not None and timer_at is not None:
            if timer_at <= deadline <= self._timer_fires:
                return  # the armed timer fires late enough for this deadline too
            self._timer.cancel()
        self._timer_at = deadline
        self._timer_fires = deadline + TIMER_SLACK
        self._timer = self._loop.call_at(self._timer_fires, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        assert self._loop is not None
        # call_at may fire up to the clock resolution early; never hand the core a `now`
        # before the deadline it asked for (as aioquic's protocol does).
        now = max(self._timer_at or 0.0, self._loop.time())
        self._timer_at = None
        try:
            self.core.handle_timer(now)
        except Exception:
            log.exception("SIP core failed in handle_timer")
        self.transmit()

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    # ------------------------------------------------------------------ receiving
    def _on_datagram(self, data: bytes, source: TransportAddress) -> None:
        self._on_datagrams([(data, source)])

    def _on_datagrams(self, batch: list[tuple[bytes, TransportAddress]]) -> None:
        """A batch of datagrams read together: all go into the core, then one transmit."""
        core = self._core
        if self._stopping or core is None:
            return
        now = self._now()
        for data, source in batch:
            try:
                core.receive_datagram(data, source, now)
            except Exception:
                log.exception("SIP core failed on a datagram from %s:%d", source.host, source.port)
        self.transmit()

    def stream_data(self, conn: SipStreamConnection, data: bytes) -> None:
        if self._stopping or self._core is None:
            return
        try:
            self._core.receive_stream_data(data, conn.address, self._now())
        except Exception:
            log.exception("SIP core failed on data of connection %d; closing it", conn.id)
            conn.abort()
        self.transmit()

    def stream_connected(self, conn: SipStreamConnection) -> bool:
        if self._stopping:
            return False
        if conn.outbound:
            return self._accept_outbound(conn)
        return self._accept_inbound(conn)

    def _accept_outbound(self, conn: SipStreamConnection) -> bool:
        if conn.transport_name == "tls":
            expected = conn.expected_identity or conn.remote[0]
            if not identity_matches(expected, conn.peer_cert):
                log.warning(
                    "TLS connection %d to %s:%d: certificate does not prove %r (it proves %s)",
                    conn.id,
                    *conn.remote,
                    expected,
                    sip_identities(conn.peer_cert) or "nothing",
                )
                return False
            conn.peer_identity = expected.strip("[]").lower().rstrip(".")
        self._pool_add(conn.transport_name, conn.remote[0], conn.remote[1], conn)
        return True

    def _accept_inbound(self, conn: SipStreamConnection) -> bool:
        if len(self._conns) >= self.config.limits.max_connections:
            log.warning(
                "connection limit reached; refusing %s from %s:%d",
                conn.transport_name,
                *conn.remote,
            )
            return False
        if conn.transport_name == "tls":
            identities = sip_identities(conn.peer_cert)
            allowed = self.config.tls.allowed_peer_identities if self.config.tls else frozenset()
            if allowed:
                permitted = [i for i in identities if i in allowed]
                if not permitted:
                    log.warning(
                        "TLS client %s:%d refused: identities %s not allowed",
                        *conn.remote,
                        identities or "none",
                    )
                    return False
                conn.peer_identity = permitted[0]
            elif identities:
                conn.peer_identity = identities[0]
        self._conns[conn.id] = conn
        self._pool_add(conn.transport_name, conn.remote[0], conn.remote[1], conn)
        return True

    def stream_closed(self, conn: SipStreamConnection) -> None:
        if not self._forget(conn):
            return
        if self._stopping or self._core is None:
            return
        if not conn.established:
            # Never came up (refused, timed out, unverified, queue overflow): the core
            # never saw this id; it learns which destinations failed (RFC 3261 §18.4).
            for dest in conn.destinations.values():
                self._transport_error(dest)
            return
        try:
            self._core.connection_lost(conn.id, self._now())
        except Exception:
            log.exception("SIP core failed in connection_lost(%d)", conn.id)
        self.transmit()

    def _transport_error(self, dest: TransportAddress) -> None:
        """Tell the core that bytes for ``dest`` cannot be delivered."""
        if self._stopping or self._core is None:
            return
        try:
            self._core.transport_error(dest.without_connection(), self._now())
        except Exception:
            log.exception("SIP core failed in transport_error(%s)", dest)
        self.transmit()

    def _forget(self, conn: SipStreamConnection) -> bool:
        """Remove from the table and the pool; True if it was registered."""
        for key, conns in list(self._pool.items()):
            if conn in conns:
                conns.remove(conn)
                if not conns:
                    del self._pool[key]
        return self._conns.pop(conn.id, None) is not None

    def _inbound_factory(self, name: StreamTransport) -> Callable[[], SipStreamConnection]:
        def factory() -> SipStreamConnection:
            assert self._loop is not None
            return SipStreamConnection(
                self, self._new_id(), name, self._policy, self._loop, self._rng, outbound=False
            )

        return factory

    def _new_id(self) -> int:
        conn_id = self._next_conn_id
        self._next_conn_id += 1
        return conn_id

    # ------------------------------------------------------------------ sending
    def _send(self, dest: TransportAddress, data: bytes) -> None:
        if dest.transport == "udp":
            self._send_udp(dest, data)
        else:
            self._send_stream(dest, data)

    def _send_udp(self, dest: TransportAddress, data: bytes) -> None:
        if self._udp is None:
            log.warning("no UDP listener; datagram to %s:%d dropped", dest.host, dest.port)
            self._transport_error(dest)
            return
        host = dest.host.strip("[]")
        try:
            family = self._host_family[host]
        except KeyError:
            family = _family_of(host) if _is_ip_literal(host) else None
            if len(self._host_family) >= MAX_CACHED_HOSTS:
                self._host_family.clear()
            self._host_family[host] = family
        if family is not None:
            if family != self._udp_family:
                log.warning("UDP destination %s has another address family; dropped", host)
                self._transport_error(dest)
                return
            # A full send queue drops the datagram silently: UDP is lossy anyway and the
            # transaction layer retransmits (RFC 3261 §17.1.1.2).
            self._udp.send(data, (host, dest.port))
            return
        # A host name: look it up off the loop, bounded.
        if self._pending_resolutions >= self.config.limits.max_pending_resolutions:
            log.warning("too many UDP destinations awaiting lookup; datagram to %s dropped", host)
            return
        self._pending_resolutions += 1
        self._spawn(self._resolve_and_send(dest, data))

    async def _resolve_and_send(self, dest: TransportAddress, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(
                dest.host, dest.port, family=self._udp_family or 0, type=socket.SOCK_DGRAM
            )
        except OSError as exc:
            log.warning("UDP destination %s not resolved: %s", dest.host, exc)
            self._transport_error(dest)
            return
        finally:
            self._pending_resolutions -= 1
        if infos and self._udp is not None:
            addr = infos[0][4]
            self._udp.send(data, (str(addr[0]), int(addr[1])))

    def _send_stream(self, dest: TransportAddress, data: bytes) -> None:
        name: StreamTransport = "tls" if dest.transport == "tls" else "tcp"
        if dest.connection is not None:
            conn = self._conns.get(dest.connection)
            if conn is not None and conn.usable:
                conn.write(data)
                return
            # RFC 3261 §18.2.2: the connection is gone; fall back to host:port.
            log.debug(
                "connection %d gone; sending to %s:%d instead",
                dest.connection,
                dest.host,
                dest.port,
            )
        expected = (dest.peer_identity or dest.host) if name == "tls" else None
        conn = self._pool_lookup(name, dest.host, dest.port, expected)
        if conn is None:
            conn = self._open_outbound(name, dest.host, dest.port, expected)
            if conn is None:
                self._transport_error(dest)
                return
        conn.note_destination(dest)
        conn.write(data)

    def _pool_add(self, name: str, host: str, port: int, conn: SipStreamConnection) -> None:
        conns = self._pool.setdefault((name, host.strip("[]").lower(), port), [])
        if conn not in conns:
            conns.append(conn)

    def _pool_lookup(
        self, name: StreamTransport, host: str, port: int, expected: str | None
    ) -> SipStreamConnection | None:
        for conn in self._pool.get((name, host.strip("[]").lower(), port), ()):
            if not conn.usable:
                continue
            if name == "tls" and expected is not None:
                if conn.state is ConnectionState.CONNECTING:
                    if conn.expected_identity != expected:
                        continue
                elif not identity_matches(expected, conn.peer_cert):
                    continue
            return conn
        return None

    def _open_outbound(
        self, name: StreamTransport, host: str, port: int, expected: str | None
    ) -> SipStreamConnection | None:
        if name == "tls" and self._client_ssl is None:
            log.warning("no TLS settings; cannot open TLS to %s:%d", host, port)
            return None
        if len(self._conns) >= self.config.limits.max_connections:
            log.warning("connection limit reached; cannot open %s to %s:%d", name, host, port)
            return None
        assert self._loop is not None
        conn = SipStreamConnection(
            self,
            self._new_id(),
            name,
            self._policy,
            self._loop,
            self._rng,
            outbound=True,
            remote=(host.strip("[]"), port),
            expected_identity=expected,
        )
        self._conns[conn.id] = conn
        self._pool_add(name, host, port, conn)
        self._spawn(self._connect(conn))
        return conn

    async def _connect(self, conn: SipStreamConnection) -> None:
        loop = asyncio.get_running_loop()
        limits = self.config.limits
        host, port = conn.remote
        try:
            if conn.transport_name == "tls":
                expected = conn.expected_identity or host
                connecting = loop.create_connection(
                    lambda: conn,
                    host,
                    port,
                    ssl=self._client_ssl,
                    # SNI names the SIP domain (Python sends none for IP literals, RFC 6066 §3).
                    server_hostname=expected.strip("[]"),
                    ssl_handshake_timeout=limits.tls_handshake_timeout,
                )
                timeout = limits.connect_timeout + limits.tls_handshake_timeout
            else:
                connecting = loop.create_connection(lambda: conn, host, port)
                timeout = limits.connect_timeout
            await asyncio.wait_for(connecting, timeout)
        except (TimeoutError, OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            reason = str(exc) or type(exc).__name__
            log.warning(
                "%s connection to %s:%d failed: %s", conn.transport_name, host, port, reason
            )
            conn.abort()  # never came up: reports stream_closed -> core.connection_lost

    def _spawn(self, coro: object) -> None:
        assert self._loop is not None
        task: asyncio.Task[None] = self._loop.create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    def _sockname(sock: socket.socket) -> tuple[str, int]:
        name = sock.getsockname()
        return (str(name[0]), int(name[1]))
