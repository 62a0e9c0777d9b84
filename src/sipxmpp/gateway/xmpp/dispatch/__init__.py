"""Stanza dispatchers of the XMPP edge, one module per stanza kind (slidge's core/dispatcher).

* :mod:`.message`: every ``<message/>``, on a fast path that bypasses slixmpp's handler
  matching, to the :class:`~sipxmpp.gateway.xmpp.handler.XmppHandler`.
* :mod:`.iq`: XEP-0030 disco#info through slixmpp's ``xep_0030`` plugin; XEP-0199 pings are
  answered by slixmpp's ``xep_0199`` plugin; other requests get slixmpp's error answer.
* :mod:`.presence`: every ``<presence/>``, on the same kind of fast path, to the handler's
  optional ``on_presence`` / ``on_presence_error``; no roster bookkeeping in the edge (the
  component keeps no per-contact state, so a presence flood cannot grow its memory).
"""

from sipxmpp.gateway.xmpp.dispatch.iq import install_disco
from sipxmpp.gateway.xmpp.dispatch.message import MAX_IN_FLIGHT_MESSAGES, MessageDispatcher
from sipxmpp.gateway.xmpp.dispatch.presence import MAX_IN_FLIGHT_PRESENCES, PresenceDispatcher

__all__ = [
    "MAX_IN_FLIGHT_MESSAGES",
    "MAX_IN_FLIGHT_PRESENCES",
    "MessageDispatcher",
    "PresenceDispatcher",
    "install_disco",
]
