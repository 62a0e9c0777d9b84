"""Configuration of the SIP transport edge: frozen dataclasses, validated on construction.

The runtime builds these from the gateway settings; nothing here reads files or the
environment. Every limit has a named default with the reason for its value.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

__all__ = [
    "ListenAddress",
    "TlsSettings",
    "TransportLimits",
    "TransportConfig",
    "MAX_CONNECTIONS",
    "WRITE_BUFFER_HIGH_WATER",
    "WRITE_BUFFER_LIMIT",
    "UDP_SOCKET_BUFFER",
    "CONNECT_TIMEOUT",
    "TLS_HANDSHAKE_TIMEOUT",
    "KEEPALIVE_INTERVAL",
    "KEEPALIVE_PONG_TIMEOUT",
    "IDLE_TIMEOUT",
    "LISTEN_BACKLOG",
    "MAX_PENDING_RESOLUTIONS",
]

#: Cap on open TCP/TLS connections (inbound and outbound together). Half the usual default
#: soft limit on file descriptors (1024), leaving room for the listeners, the XMPP component
#: connection, MSRP and DNS sockets: a flood of connections meets a clean refusal instead of
#: EMFILE in unrelated code.
MAX_CONNECTIONS = 512

#: Queued outgoing bytes above which the edge stops reading from that peer until its queue
#: drains (asyncio's own default high-water mark is 64 KiB). A peer that sends requests but
#: does not read our responses is slowed down instead of growing our memory.
WRITE_BUFFER_HIGH_WATER = 64 * 1024

#: Queued outgoing bytes at which the connection is dropped: a peer that leaves a whole MiB
#: (hundreds of SIP messages of a few KiB each) unread is not reading at all. This bounds
#: memory per connection to about this value, also for bytes queued while connecting.
WRITE_BUFFER_LIMIT = 1024 * 1024

#: SO_RCVBUF/SO_SNDBUF for the UDP socket. Kernel defaults (about 200 KiB, and 64 KiB in some
#: tools) drop datagrams during bursts of a few thousand messages per second; 4 MiB absorbs
#: about a second of such a burst. The kernel may clamp it to net.core.rmem_max/wmem_max.
UDP_SOCKET_BUFFER = 4 * 1024 * 1024

#: Time allowed for a TCP connect to a next hop. Well under Timer B/F (64*T1 = 32 s), so a
#: dead next hop surfaces early enough for RFC 3263 §4.3 failover to the next target.
CONNECT_TIMEOUT = 10.0

#: Time allowed for a TLS handshake, in either direction: a peer that opens a socket and
#: never completes the handshake must not hold a connection slot for long.
TLS_HANDSHAKE_TIMEOUT = 10.0

#: RFC 5626 §4.4.1: CRLF keep-alives on connection-oriented transports, by default every
#: 120 s, each interval drawn at random between 80% and 100% of it.
KEEPALIVE_INTERVAL = 120.0

#: RFC 5626 §4.4.1: a flow whose pong has not arrived 10 s after the ping has failed.
KEEPALIVE_PONG_TIMEOUT = 10.0

#: A stream connection without SIP traffic (keep-alives do not count) for this long is
#: closed to free its slot. Ten minutes outlive every transaction timer (Timer B/F/H are
#: 32 s with T1 = 0.5 s) and common registration/subscription refresh cycles.
IDLE_TIMEOUT = 600.0

#: listen() backlog for the TCP and TLS listeners: absorbs bursts of connection attempts
#: while the event loop is busy; MAX_CONNECTIONS still bounds what is accepted.
LISTEN_BACKLOG = 128

#: UDP datagrams waiting for a host name to be looked up (destinations are normally IP
#: literals from the resolver; this only bounds the rare exception).
MAX_PENDING_RESOLUTIONS = 64


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """Where a listener binds. Port 0 lets the kernel choose; the bound port is exposed by
    :attr:`SipTransportManager.local_addresses`."""

    #: An IP literal (listeners never bind by name: a name could resolve to a wider address).
    host: str = "127.0.0.1"
    port: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port out of range: {self.port}")
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            raise ValueError(f"listen host must be an IP literal: {self.host!r}") from None


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """TLS material and policy, for the listener and for outbound connections alike."""

    #: Our certificate chain (PEM). Needed for a TLS listener and for client authentication
    #: towards peers that require it (mutual TLS).
    certfile: str | None = None
    #: The private key of ``certfile`` (PEM); None when the key is inside ``certfile``.
    keyfile: str | None = None
    #: Trust anchors (PEM) for verifying peers in both directions. None: the system's CAs.
    cafile: str | None = None
    #: Inbound: refuse a TLS client that presents no certificate valid under ``cafile``.
    require_client_certificate: bool = True
    #: Inbound: when non-empty, a TLS client must prove one of these identities
    #: (RFC 5922 §7.1 SIP domain identities, compared case-insensitively).
    allowed_peer_identities: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.keyfile is not None and self.certfile is None:
            raise ValueError("keyfile given without certfile")
        normalised = frozenset(i.lower().rstrip(".") for i in self.allowed_peer_identities)
        object.__setattr__(self, "allowed_peer_identities", normalised)


@dataclass(frozen=True, slots=True)
class TransportLimits:
    """Resource limits of the edge; the defaults are the module constants."""

    max_connections: int = MAX_CONNECTIONS
    write_buffer_high_water: int = WRITE_BUFFER_HIGH_WATER
    write_buffer_limit: int = WRITE_BUFFER_LIMIT
    udp_socket_buffer: int = UDP_SOCKET_BUFFER
    connect_timeout: float = CONNECT_TIMEOUT
    tls_handshake_timeout: float = TLS_HANDSHAKE_TIMEOUT
    listen_backlog: int = LISTEN_BACKLOG
    max_pending_resolutions: int = MAX_PENDING_RESOLUTIONS

    def __post_init__(self) -> None:
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if not 0 < self.write_buffer_high_water <= self.write_buffer_limit:
            raise ValueError("need 0 < write_buffer_high_water <= write_buffer_limit")
        if self.udp_socket_buffer < 0:
            raise ValueError("udp_socket_buffer must not be negative")
        if self.connect_timeout <= 0 or self.tls_handshake_timeout <= 0:
            raise ValueError("timeouts must be positive")
        if self.listen_backlog < 1 or self.max_pending_resolutions < 0:
            raise ValueError("listen_backlog must be >= 1, max_pending_resolutions >= 0")


@dataclass(frozen=True, slots=True)
class TransportConfig:
    """Listeners and connection policy of :class:`SipTransportManager`.

    A listener set to None is not opened. Outbound TLS needs ``tls`` settings even without a
    TLS listener (for the trust anchors and, for mutual TLS, our client certificate).
    """

    udp: ListenAddress | None = field(default_factory=ListenAddress)
    tcp: ListenAddress | None = field(default_factory=ListenAddress)
    tls_listen: ListenAddress | None = None
    tls: TlsSettings | None = None
    limits: TransportLimits = field(default_factory=TransportLimits)
    #: RFC 5626 §3.5.1 CRLF keep-alive period on idle outbound connections; None: off.
    keepalive_interval: float | None = KEEPALIVE_INTERVAL
    #: Close an outbound flow whose keep-alive got no answer in this time (RFC 5626 §4.4.1).
    #: None (the default): never, because peers that do not implement RFC 5626 ignore the
    #: ping (RFC 3261 §7.5) and would lose their connections.
    keepalive_pong_timeout: float | None = None
    #: Close stream connections without SIP traffic for this long; None: never.
    idle_timeout: float | None = IDLE_TIMEOUT

    def __post_init__(self) -> None:
        if self.tls_listen is not None:
            if self.tls is None or self.tls.certfile is None:
                raise ValueError("a TLS listener needs tls settings with a certfile")
        for name in ("keepalive_interval", "keepalive_pong_timeout", "idle_timeout"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive or None")
