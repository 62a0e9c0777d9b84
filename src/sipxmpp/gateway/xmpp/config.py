"""Settings of the XMPP component edge: a frozen dataclass the runtime fills from its settings."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["XmppEdgeConfig", "parent_domain"]

# A domain as XEP-0114 uses it in the stream header's ``to``: no localpart, no resource, and
# nothing that would need escaping inside an XML attribute. (Full IDNA/PRECIS validation is the
# server's job; it refuses an unknown name with <host-unknown/>.)
_DOMAIN_RE = re.compile(r"[^\s@/\"'<>&]+")


def parent_domain(domain: str) -> str:
    """``sip.example.com`` -> ``example.com``; a single-label domain is returned unchanged."""
    head, dot, tail = domain.partition(".")
    return tail if dot and tail else domain


@dataclass(frozen=True, slots=True)
class XmppEdgeConfig:
    """How the component connects to the XMPP server (XEP-0114) and keeps the link alive."""

    #: The component's domain, e.g. ``sip.example.com`` (XEP-0114 §3: every stanza the component
    #: sends must come from this domain).
    component_jid: str
    #: The shared secret configured for the component on the server.
    secret: str
    #: Address of the server's component port (a name or an IP address).
    host: str
    #: The server's component port (Prosody: ``component_ports``, commonly 5347).
    port: int
    #: First reconnection delay in seconds; it doubles after each failure (with jitter).
    reconnect_min: float = 1.0
    #: Upper bound of the reconnection delay in seconds.
    reconnect_max: float = 60.0
    #: Seconds with nothing received from the server before an XEP-0199 ping is sent (any
    #: data the server sends proves the link alive).
    keepalive_interval: float = 60.0
    #: Seconds after that ping with nothing at all received before the stream is considered
    #: dead and reconnected.
    keepalive_timeout: float = 10.0
    #: Name of the XEP-0030 identity ``gateway/sip``.
    identity_name: str = "SIP gateway"
    #: Seconds from the TCP connection to the server's ``<handshake/>`` before giving up.
    handshake_timeout: float = 10.0
    #: JID the keepalive pings; ``None`` means the parent domain of :attr:`component_jid`
    #: (``sip.example.com`` -> ``example.com``). Any answer, even an error, proves the link.
    ping_target: str | None = None

    def __post_init__(self) -> None:
        if not _DOMAIN_RE.fullmatch(self.component_jid):
            raise ValueError(f"component_jid must be a bare domain, got {self.component_jid!r}")
        if not self.secret:
            raise ValueError("secret must not be empty")
        if not self.host:
            raise ValueError("host must not be empty")
        if not 0 < self.port < 65536:
            raise ValueError(f"port out of range: {self.port}")
        if not 0.0 < self.reconnect_min <= self.reconnect_max:
            raise ValueError("need 0 < reconnect_min <= reconnect_max")
        if self.keepalive_interval <= 0.0 or self.keepalive_timeout <= 0.0:
            raise ValueError("keepalive_interval and keepalive_timeout must be positive")
        if self.handshake_timeout <= 0.0:
            raise ValueError("handshake_timeout must be positive")
        if self.ping_target is not None and not self.ping_target:
            raise ValueError("ping_target must be None or a JID")

    @property
    def effective_ping_target(self) -> str:
        """The JID the keepalive pings."""
        return self.ping_target or parent_domain(self.component_jid)
