"""XMPP edge: the gateway's XEP-0114 component link to the XMPP server (slixmpp, asyncio).

The runtime builds an :class:`XmppEdge` from an :class:`XmppEdgeConfig` and an
:class:`XmppHandler`, starts it, and exchanges :class:`~sipxmpp.mapping.model.XmppMessage`
values with it; stanza conversion is field copying only (``convert``), the interworking rules
live in ``sipxmpp.mapping``.
"""

from sipxmpp.gateway.xmpp.backoff import backoff_delay
from sipxmpp.gateway.xmpp.component import (
    MAX_OUTGOING_STANZA_BYTES,
    MAX_WRITE_BUFFER_BYTES,
    XmppEdge,
)
from sipxmpp.gateway.xmpp.config import XmppEdgeConfig
from sipxmpp.gateway.xmpp.disco import (
    DiscoHook,
    DiscoIdentity,
    DiscoInfo,
    DiscoRegistry,
    DiscoRequest,
)
from sipxmpp.gateway.xmpp.errors import (
    Ignore,
    LinkCongested,
    LinkDown,
    LocalXmppError,
    RemoteXmppError,
    StanzaErrorException,
    XmppError,
    boundary,
)
from sipxmpp.gateway.xmpp.handler import XmppHandler, XmppPresenceHandler
from sipxmpp.gateway.xmpp.handshake import handshake_digest

__all__ = [
    "MAX_OUTGOING_STANZA_BYTES",
    "MAX_WRITE_BUFFER_BYTES",
    "DiscoHook",
    "DiscoIdentity",
    "DiscoInfo",
    "DiscoRegistry",
    "DiscoRequest",
    "Ignore",
    "LinkCongested",
    "LinkDown",
    "LocalXmppError",
    "RemoteXmppError",
    "StanzaErrorException",
    "XmppEdge",
    "XmppEdgeConfig",
    "XmppError",
    "XmppHandler",
    "XmppPresenceHandler",
    "backoff_delay",
    "boundary",
    "handshake_digest",
]
