"""The asyncio edge of the SIP stack: UDP/TCP/TLS sockets and RFC 3263 next-hop resolution.

:class:`SipTransportManager` owns the sockets around one sans-I/O SIP core (anything
satisfying :class:`SipCore`); :class:`SipResolver` turns a SIP URI's host into an ordered
list of :class:`~sipxmpp.gateway.sip.address.TransportAddress` to try.
"""

from .config import ListenAddress, TlsSettings, TransportConfig, TransportLimits
from .interface import SipCore
from .manager import BoundAddresses, ConnectionInfo, CoreFactory, SipTransportManager
from .msrp_stream import (
    MsrpConnectionInfo,
    MsrpStreamLimits,
    MsrpTransport,
    MsrpTransportConfig,
    msrp_identities,
)
from .resolver import (
    AddressRecord,
    AiodnsClient,
    DnsClient,
    DnsLookupError,
    NaptrRecord,
    ResolutionError,
    SipResolver,
    SrvRecord,
    StaticRoute,
)
from .tls import identity_matches, sip_identities

__all__ = [
    "AddressRecord",
    "AiodnsClient",
    "BoundAddresses",
    "ConnectionInfo",
    "CoreFactory",
    "DnsClient",
    "DnsLookupError",
    "ListenAddress",
    "MsrpConnectionInfo",
    "MsrpStreamLimits",
    "MsrpTransport",
    "MsrpTransportConfig",
    "NaptrRecord",
    "ResolutionError",
    "SipCore",
    "SipResolver",
    "SipTransportManager",
    "SrvRecord",
    "StaticRoute",
    "TlsSettings",
    "TransportConfig",
    "TransportLimits",
    "identity_matches",
    "msrp_identities",
    "sip_identities",
]
