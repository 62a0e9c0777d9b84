"""Transport addresses as the SIP core sees them (no sockets here).

The edge reports where bytes came from; the core says where bytes go. For stream
transports ``connection`` names the connection the edge holds (an opaque integer it
chose), so a response can reuse it (RFC 3261 §18.2.2) and a lost connection can fail
the transactions bound to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Transport", "TransportAddress", "RELIABLE"]

Transport = Literal["udp", "tcp", "tls"]

#: Transports with reliable delivery: no retransmission timers (RFC 3261 §17.1.1.2).
RELIABLE: frozenset[str] = frozenset({"tcp", "tls"})


@dataclass(frozen=True, slots=True, init=False)
class TransportAddress:
    """A remote (or local) transport endpoint."""

    transport: Transport
    host: str
    port: int
    #: The edge's id of the stream connection the bytes came on / should go on, if any.
    connection: int | None = None
    #: For TLS: the identity the peer proved with its certificate (set by the edge).
    peer_identity: str | None = None

    # Written out rather than generated (init=False): mypyc compiles this one, not the
    # dataclasses module's (sipxmpp.native, "Dataclasses").
    def __init__(
        self,
        transport: Transport,
        host: str,
        port: int,
        connection: int | None = None,
        peer_identity: str | None = None,
    ) -> None:
        object.__setattr__(self, "transport", transport)
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "port", port)
        object.__setattr__(self, "connection", connection)
        object.__setattr__(self, "peer_identity", peer_identity)

    @property
    def reliable(self) -> bool:
        return self.transport in RELIABLE

    def without_connection(self) -> TransportAddress:
        return TransportAddress(self.transport, self.host, self.port)
