"""The component's own presence with XEP-0115 entity capabilities.

Theory of operation
-------------------
A component has no roster and no server-side presence broadcast: the XMPP server sends
nothing on its behalf. So the component keeps its own list of **presence recipients** and
sends them its presence itself (RFC 6121 §4.6, directed presence). Who is on the list:

* every entity that sends *available* presence (no ``type``) to the component's bare JID
  (the component domain, e.g. ``sip.example.com``): a peer gateway announcing itself, or a
  client that wants to follow the gateway's capabilities. It is answered at once with the
  component's presence, and stays on the list until it sends ``unavailable``;
* entities the runtime adds (:meth:`CapsAnnouncer.add_recipient`): the gateways of the
  configured peer networks, which then answer with *their* caps presence.

A ``probe`` to the component's bare JID (RFC 6121 §4.3) is answered with the presence but
does not put the prober on the list. Presence of other types (``subscribe`` ...) and
presence to JIDs under the component (users) is not handled here: it goes on to the
presence dispatcher. The parent XMPP server is not told anything: servers ignore directed
presence to their own domain.

Every presence the component sends carries ``<c xmlns='http://jabber.org/protocol/caps'
hash node ver/>`` (XEP-0115 §4). ``ver`` depends on the recipient, because the disco#info
answer does (per-peer provisioning views, draft §5): the runtime supplies ``ver_for(jid)``.
:meth:`CapsAnnouncer.broadcast` re-sends presence to every recipient whose ``ver`` changed
(XEP-0115 §4: "re-broadcast whenever features change"), and :meth:`CapsAnnouncer.link_up`
to all of them after each (re)connection.

Incoming ``<c/>`` elements on presence to the bare JID are reported to ``on_caps(jid, node,
ver, hash)``, which is how the runtime learns that a peer's provisioning changed.

Loop freedom: the component answers an available presence only from an entity not yet on
its list, so two gateways that announce themselves to each other exchange exactly one
presence each way.

Memory: the list is bounded by :data:`MAX_PRESENCE_RECIPIENTS` (least recently heard from
evicted first).
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Callable

from sipxmpp.gateway.xmpp.presence_convert import PRESENCE_TAGS

__all__ = [
    "NS_CAPS",
    "MAX_PRESENCE_RECIPIENTS",
    "CapsAnnouncer",
    "caps_presence_xml",
]

log = logging.getLogger(__name__)

NS_CAPS = "http://jabber.org/protocol/caps"
_C_TAG = "{" + NS_CAPS + "}c"

#: Entities the component keeps sending its presence to. A federation gateway has tens or
#: hundreds of peers plus a few monitoring clients; 10,000 bounds memory (and the size of a
#: re-broadcast burst) whatever a flood of directed presences tries.
MAX_PRESENCE_RECIPIENTS = 10_000

#: Longest JID accepted from a presence (RFC 7622 §3.1: each of three parts up to 1023 bytes).
_MAX_JID_LENGTH = 3071

#: Longest caps attribute value read from a peer (a node URI or a Base64 ``ver``).
_MAX_CAPS_VALUE = 1024


def _escape_attr(value: str) -> str:
    return (
        value.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("'", "&apos;")
        .replace('"', "&quot;")
    )


def caps_presence_xml(
    from_jid: str,
    to_jid: str,
    *,
    node: str,
    ver: str,
    hash_name: str = "sha-1",
    type_: str | None = None,
) -> str:
    """``<presence from to [type]><c xmlns=caps hash node ver/></presence>`` (XEP-0115 §4)."""
    type_attr = f" type='{_escape_attr(type_)}'" if type_ else ""
    caps = (
        ""
        if type_ == "unavailable"
        else (
            f"<c xmlns='{NS_CAPS}' hash='{_escape_attr(hash_name)}' node='{_escape_attr(node)}'"
            f" ver='{_escape_attr(ver)}'/>"
        )
    )
    return (
        f"<presence from='{_escape_attr(from_jid)}' to='{_escape_attr(to_jid)}'{type_attr}>"
        f"{caps}</presence>"
    )


#: ``ver_for(recipient_jid)``: the caps ``ver`` of the disco#info answer that JID would get.
VerProvider = Callable[[str], str]
#: ``on_caps(from_jid, node, ver, hash)``: a presence with caps arrived.
CapsListener = Callable[[str, str, str, str], None]


class CapsAnnouncer:
    """Presence recipients of the component and its caps presence (see the module docstring).

    :param component_jid: the component's domain (its bare JID).
    :param send: writes one serialized stanza; raises when the link is down (the error is
        logged, the recipient kept).
    """

    def __init__(self, component_jid: str, send: Callable[[str], None]) -> None:
        self._component = component_jid.lower()
        self._send = send
        self._node: str | None = None
        self._hash = "sha-1"
        self._ver_for: VerProvider | None = None
        #: recipient full JID -> the ``ver`` last sent to it ("" before the first send).
        self._recipients: OrderedDict[str, str] = OrderedDict()
        #: Called with every caps element seen on presence to the component's bare JID.
        self.on_caps: CapsListener | None = None
        #: Presences sent so far (diagnostics and tests).
        self.sent = 0

    @property
    def enabled(self) -> bool:
        """True once :meth:`configure` gave a node and a ``ver`` provider."""
        return self._node is not None and self._ver_for is not None

    @property
    def recipients(self) -> tuple[str, ...]:
        """The current presence recipients, least recently heard from first."""
        return tuple(self._recipients)

    def configure(self, node: str, ver_for: VerProvider | None, hash_name: str = "sha-1") -> None:
        """Set the caps node and ``ver`` provider (None stops caps presence altogether)."""
        if not node:
            raise ValueError("XEP-0115 §4: the caps node is required")
        self._node = node
        self._ver_for = ver_for
        self._hash = hash_name

    def add_recipient(self, jid: str) -> None:
        """Send the component's presence to ``jid`` now and after every change."""
        if not jid or len(jid) > _MAX_JID_LENGTH:
            raise ValueError(f"bad JID {jid[:80]!r}")
        self._remember(jid)
        self._announce(jid, force=True)

    def remove_recipient(self, jid: str) -> None:
        """Stop sending presence to ``jid`` (it is told ``unavailable``)."""
        if self._recipients.pop(jid, None) is not None:
            self._write(jid, type_="unavailable")

    def broadcast(self) -> int:
        """Re-send presence to every recipient whose ``ver`` changed; returns how many."""
        return sum(self._announce(jid, force=False) for jid in list(self._recipients))

    def link_up(self) -> int:
        """After a (re)connection: send presence to every recipient; returns how many."""
        return sum(self._announce(jid, force=True) for jid in list(self._recipients))

    def handle_presence(self, xml: ET.Element) -> bool:
        """Look at one incoming ``<presence/>``; True if it was for the component itself.

        Consumed (True): available, ``unavailable`` and ``probe`` presence addressed to the
        component's bare JID. Everything else (other types, presence to users under the
        component, stanzas without ``from``) returns False for the presence dispatcher.
        """
        if xml.tag not in PRESENCE_TAGS or not (self.enabled or self.on_caps is not None):
            return False
        to = (xml.get("to") or "").lower()
        sender = xml.get("from") or ""
        type_ = xml.get("type")
        if to == self._component and type_ == "error" and sender in self._recipients:
            # Our presence bounced (e.g. remote-server-not-found): stop sending there.
            del self._recipients[sender]
            log.info("caps presence to %s bounced; recipient dropped", sender)
            return True
        if to != self._component or type_ not in (None, "unavailable", "probe"):
            return False
        if not sender or len(sender) > _MAX_JID_LENGTH:
            log.info("presence to %s without a usable 'from' ignored", self._component)
            return True
        if sender.split("/", 1)[0].rsplit("@", 1)[-1].lower() == self._component:
            return True  # our own presence reflected back: never a recipient of itself
        if type_ == "unavailable":
            self._recipients.pop(sender, None)
            return True
        if type_ == "probe":
            # RFC 6121 §4.3.2: answer a probe with current presence; no list entry.
            self._announce(sender, force=True, remember=False)
            return True
        self._report_caps(sender, xml)
        if sender in self._recipients:
            self._recipients.move_to_end(sender)
            return True  # already known: no answer (loop freedom, see the module docstring)
        self._remember(sender)
        self._announce(sender, force=True)
        return True

    # -- internals ------------------------------------------------------------------------

    def _remember(self, jid: str) -> None:
        if jid not in self._recipients:
            self._recipients[jid] = ""
        self._recipients.move_to_end(jid)
        while len(self._recipients) > MAX_PRESENCE_RECIPIENTS:
            dropped, _ = self._recipients.popitem(last=False)
            log.info("caps presence recipient %s forgotten (list full)", dropped)

    def _report_caps(self, sender: str, xml: ET.Element) -> None:
        listener = self.on_caps
        if listener is None:
            return
        c = xml.find(_C_TAG)
        if c is None:
            return
        node, ver, hash_name = c.get("node"), c.get("ver"), c.get("hash")
        if not node or not ver or not hash_name:
            return  # XEP-0115 §4: all three are required; a legacy <c/> carries no hash
        if max(len(node), len(ver), len(hash_name)) > _MAX_CAPS_VALUE:
            return
        try:
            listener(sender, node, ver, hash_name)
        except Exception:
            log.exception("caps listener failed for %s", sender)

    def _announce(self, jid: str, *, force: bool, remember: bool = True) -> bool:
        if not self.enabled:
            return False
        assert self._ver_for is not None
        try:
            ver = self._ver_for(jid)
        except Exception:
            log.exception("caps ver for %s could not be computed", jid)
            return False
        if not force and self._recipients.get(jid) == ver:
            return False
        if not self._write(jid, ver=ver):
            return False
        if remember and jid in self._recipients:
            self._recipients[jid] = ver
        return True

    def _write(self, jid: str, *, ver: str = "", type_: str | None = None) -> bool:
        assert self._node is not None or type_ == "unavailable"
        stanza = caps_presence_xml(
            self._component, jid, node=self._node or "", ver=ver, hash_name=self._hash, type_=type_
        )
        try:
            self._send(stanza)
        except Exception as exc:
            log.info("caps presence to %s not sent: %s", jid, exc)
            return False
        self.sent += 1
        return True
