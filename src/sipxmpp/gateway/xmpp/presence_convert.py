"""``<presence/>`` stanzas <-> :class:`~sipxmpp.mapping.presence.XmppPresence`: field copying only.

The presence counterpart of :mod:`.convert` (messages). No interworking rule lives here: RFC
8048's mapping is in :mod:`sipxmpp.mapping.presence`; this module moves the fields that
mapping uses between the wire and the model, on ``xml.etree.ElementTree`` elements and plain
strings (presence fan-out is a hot path too), and refuses what XML cannot carry.

Incoming (:func:`presence_from_element`), RFC 6121 §4.7:

* ``type`` absent = available; an undefined type is a ``bad-request``
  (:class:`~sipxmpp.mapping.model.StanzaRefused`), as are an undefined ``<show/>`` and a
  ``<priority/>`` outside -128..127 (§4.7.2).
* Every ``<status/>`` is kept with its own ``xml:lang`` (§4.7.2.2 allows one per language), up
  to :data:`MAX_STATUSES`; the stanza's ``xml:lang`` is reported as the presence's language.
* Only the first ``<show/>`` and ``<priority/>`` count (§4.7.2.1, §4.7.2.3: at most one each).
* Extension children (XEP-0115 ``<c/>``, ``<x/>``...) are ignored.
* ``type='error'``: the ``<error/>`` child is read by :func:`presence_error_from_element`.

Outgoing (:func:`presence_to_xml`): ``from`` must be in the component's domain (XEP-0114 §3);
every string must consist of XML characters; an error goes only with ``type='error'``.
Violations raise :class:`~sipxmpp.gateway.xmpp.errors.LocalXmppError`; nothing is sent.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from sipxmpp.gateway.xmpp.convert import (
    NS_CLIENT,
    NS_COMPONENT,
    NS_STANZAS,
    jid_domain,
    stanza_error_from_element,
)
from sipxmpp.gateway.xmpp.errors import (
    ADDRESS_CONDITIONS,
    STANZA_ERROR_CONDITIONS,
    STANZA_ERROR_TYPES,
    LocalXmppError,
    RemoteXmppError,
)
from sipxmpp.mapping.model import StanzaError
from sipxmpp.mapping.presence import PresenceType, XmppPresence

__all__ = [
    "MAX_STATUSES",
    "PRESENCE_TAGS",
    "presence_error_from_element",
    "presence_from_element",
    "presence_to_xml",
]

#: ``<presence/>`` in the component namespace (XEP-0114) or, as some servers route it, the
#: client namespace.
PRESENCE_TAGS = frozenset({"{" + NS_COMPONENT + "}presence", "{" + NS_CLIENT + "}presence"})

#: Most ``<status/>`` elements kept from one stanza. RFC 6121 §4.7.2.2 allows several only to
#: give the same text in several languages; 16 languages is far beyond real clients, and each
#: status becomes a PIDF ``<note>`` (``mapping.pidf.MAX_NOTES_PER_ELEMENT`` is 16 too).
MAX_STATUSES = 16

_NS_XML = "http://www.w3.org/XML/1998/namespace"
_XML_LANG = "{" + _NS_XML + "}lang"
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _escape_text(value: str) -> str:
    return (
        value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")
    )


def _escape_attr(value: str) -> str:
    return _escape_text(value).replace('"', "&quot;").replace("\t", "&#9;").replace("\n", "&#10;")


def presence_from_element(xml: ET.Element, *, default_to: str) -> XmppPresence:
    """Copy the fields of an incoming ``<presence/>`` element into an :class:`XmppPresence`.

    Raises :class:`RemoteXmppError` for a stanza without ``from`` (XEP-0114 §3: routed stanzas
    always carry it; it can be neither mapped nor answered) and
    :class:`~sipxmpp.mapping.model.StanzaRefused` (``bad-request``) for undefined values.
    """
    attrib = xml.attrib
    from_jid = attrib.get("from")
    if not from_jid:
        raise RemoteXmppError("presence stanza without 'from'", condition="improper-addressing")
    tag = xml.tag
    ns = tag[1 : tag.index("}")] if tag.startswith("{") else ""
    show_tag = "{" + ns + "}show"
    status_tag = "{" + ns + "}status"
    priority_tag = "{" + ns + "}priority"
    show: str | None = None
    priority: str | None = None
    statuses: list[tuple[str, str | None]] = []
    for child in xml:
        ctag = child.tag
        if ctag == status_tag:
            if len(statuses) < MAX_STATUSES:
                statuses.append((child.text or "", child.get(_XML_LANG)))
        elif ctag == show_tag:
            if show is None:
                show = child.text or ""
        elif ctag == priority_tag and priority is None:
            priority = (child.text or "").strip()
    return XmppPresence.received(
        from_jid=from_jid,
        to_jid=attrib.get("to") or default_to,
        type=attrib.get("type"),
        show=show,
        statuses=statuses,
        priority=priority,
        lang=attrib.get(_XML_LANG),
        id=attrib.get("id"),
    )


def presence_error_from_element(xml: ET.Element) -> StanzaError:
    """The ``<error/>`` of a ``type='error'`` presence (RFC 6120 §8.3.2)."""
    tag = xml.tag
    ns = tag[1 : tag.index("}")] if tag.startswith("{") else ""
    return stanza_error_from_element(xml.find("{" + ns + "}error"))


def _check_chars(field: str, value: str) -> None:
    if _NOT_XML_CHAR.search(value):
        raise LocalXmppError(
            f"presence {field} contains a character XML cannot carry (XML 1.0 §2.2)"
        )


def _error_xml(error: StanzaError) -> str:
    if error.condition not in STANZA_ERROR_CONDITIONS:
        raise LocalXmppError(
            f"undefined stanza error condition {error.condition!r} (RFC 6120 §8.3.3)"
        )
    if error.type not in STANZA_ERROR_TYPES:
        raise LocalXmppError(f"undefined stanza error type {error.type!r} (RFC 6120 §8.3.2)")
    parts = ['<error type="', error.type, '"><', error.condition, ' xmlns="', NS_STANZAS, '"']
    if error.uri and error.condition in ADDRESS_CONDITIONS:
        _check_chars("error address", error.uri)
        parts += [">", _escape_text(error.uri), "</", error.condition, ">"]
    else:
        parts.append("/>")
    if error.text:
        _check_chars("error text", error.text)
        parts += ['<text xmlns="', NS_STANZAS, '">', _escape_text(error.text), "</text>"]
    parts.append("</error>")
    return "".join(parts)


def presence_to_xml(
    presence: XmppPresence, *, component_domain: str, error: StanzaError | None = None
) -> str:
    """Serialize an outgoing ``<presence/>`` for the component stream.

    ``error`` goes with ``type='error'`` and nothing else (RFC 6120 §8.3). A priority of 0
    (the default, RFC 6121 §4.7.2.3) is not written.
    """
    if not presence.from_jid or not presence.to_jid:
        raise LocalXmppError("presence needs both 'from' and 'to'", condition="jid-malformed")
    if jid_domain(presence.from_jid).lower() != component_domain.lower():
        raise LocalXmppError(
            f"'from' {presence.from_jid!r} is outside the component domain {component_domain!r}"
            " (XEP-0114 §3)",
            condition="internal-server-error",
        )
    if (presence.type is PresenceType.ERROR) != (error is not None):
        raise LocalXmppError("type='error' and an error condition go together (RFC 6120 §8.3)")
    for field, value in (
        ("from", presence.from_jid),
        ("to", presence.to_jid),
        ("id", presence.id),
        ("xml:lang", presence.lang),
    ):
        if value is not None:
            _check_chars(field, value)
    parts = [
        '<presence from="',
        _escape_attr(presence.from_jid),
        '" to="',
        _escape_attr(presence.to_jid),
        '"',
    ]
    if presence.type.value is not None:
        parts += [' type="', presence.type.value, '"']
    if presence.id is not None:
        parts += [' id="', _escape_attr(presence.id), '"']
    if presence.lang is not None:
        parts += [' xml:lang="', _escape_attr(presence.lang), '"']
    children: list[str] = []
    if presence.show is not None:
        children += ["<show>", presence.show.value, "</show>"]
    for status in presence.statuses:
        _check_chars("status", status.text)
        if status.lang is not None:
            children += ['<status xml:lang="', _escape_attr(status.lang), '">']
        else:
            children.append("<status>")
        children += [_escape_text(status.text), "</status>"]
    if presence.priority != 0:
        children += ["<priority>", str(presence.priority), "</priority>"]
    if error is not None:
        children.append(_error_xml(error))
    if not children:
        parts.append("/>")
        return "".join(parts)
    parts.append(">")
    parts += children
    parts.append("</presence>")
    return "".join(parts)
