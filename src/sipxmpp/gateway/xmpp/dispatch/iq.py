"""IQ stanzas: XEP-0030 disco#info answered from the :class:`DiscoRegistry`.

slixmpp's ``xep_0030`` plugin parses the query and sends the result; this module replaces its
global ``get_info`` handler with one that asks the registry, behind :func:`boundary`, so a hook
that raises gets a proper stanza error (XEP-0030 §3.1: ``item-not-found``,
``service-unavailable``...). XEP-0199 pings are answered by slixmpp's ``xep_0199`` plugin, and
any other get/set request gets slixmpp's error answer for unhandled requests.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from slixmpp.exceptions import XMPPError
from slixmpp.plugins.xep_0030.stanza.info import DiscoInfo as DiscoInfoStanza

from sipxmpp.gateway.xmpp.disco import DiscoInfo, DiscoRegistry, DiscoRequest
from sipxmpp.gateway.xmpp.errors import boundary

__all__ = ["disco_info_stanza", "install_disco"]


def disco_info_stanza(info: DiscoInfo) -> Any:
    """slixmpp's ``<query xmlns='http://jabber.org/protocol/disco#info'/>`` for ``info``."""
    stanza = DiscoInfoStanza()
    for identity in info.identities:
        stanza.add_identity(identity.category, identity.type, identity.name, identity.lang)
    for var in info.features:
        stanza.add_feature(var)
    for form in info.forms:
        stanza.xml.append(ET.fromstring(form))  # validated by DiscoRegistry.set_forms
    return stanza


def install_disco(xmpp: Any, registry: DiscoRegistry) -> None:
    """Answer every disco#info query addressed to the component from ``registry``."""

    @boundary
    def answer(jid: object, node: str | None, ifrom: object) -> object:
        request = DiscoRequest(
            target=str(jid) if jid else str(xmpp.boundjid),
            node=node or None,
            requester=str(ifrom) if ifrom else "",
        )
        return disco_info_stanza(registry.answer(request))

    def get_info(jid: object, node: str | None, ifrom: object, data: object) -> object:
        result = answer(jid, node, ifrom)
        if result is None:  # the hook raised Ignore, but an iq must be answered (RFC 6120 §8.2.3)
            raise XMPPError(condition="service-unavailable", etype="cancel")
        return result

    xmpp.plugin["xep_0030"].set_node_handler("get_info", jid=None, node=None, handler=get_info)
