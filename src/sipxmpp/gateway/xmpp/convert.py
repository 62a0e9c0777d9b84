"""``<message/>`` stanzas <-> :class:`~sipxmpp.mapping.model.XmppMessage`: field copying only.

No interworking rule lives here (those are in ``sipxmpp.mapping``); this module only moves the
fields the gateway maps between the wire and the neutral model, and refuses what XML cannot
carry. It works on ``xml.etree.ElementTree`` elements and plain strings, never on slixmpp's
stanza objects, because the message path is the gateway's hot path: one pass over the children,
no plugin lookups, and outgoing stanzas serialized with ``str.replace`` escaping.

Incoming (:func:`message_from_element`):

* ``type``: RFC 6121 §5.2.2, an absent or unknown type is ``normal``.
* Several ``<body/>`` or ``<subject/>`` elements may differ in ``xml:lang`` (RFC 6121 §5.2.3,
  §5.2.4): the one without ``xml:lang`` or with the stanza's language is chosen, else the first.
  :attr:`XmppMessage.lang` is the chosen body's own ``xml:lang``, else the stanza's. Only an
  explicit ``xml:lang`` is reported: the component stream's default language is the server's,
  not the sender's (RFC 6120 §8.1.5 has the sender's server stamp routed stanzas instead).
* XEP-0071 XHTML-IM: the chosen ``<body xmlns='http://www.w3.org/1999/xhtml'>`` inside
  ``<html xmlns='http://jabber.org/protocol/xhtml-im'>``, serialized as a string.
* ``type='error'``: the ``<error/>`` child becomes a :class:`StanzaError` (RFC 6120 §8.3.2; an
  unknown condition reads as ``undefined-condition``, §8.3.2 point 3).

Outgoing (:func:`message_to_xml`): ``from`` must be in the component's domain (XEP-0114 §3),
every string must consist of XML characters (XML 1.0 §2.2), and ``type='error'`` goes with an
``error`` and nothing else does. Violations raise :class:`LocalXmppError`; nothing is sent.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence

from sipxmpp.gateway.xmpp.errors import (
    ADDRESS_CONDITIONS,
    STANZA_ERROR_CONDITIONS,
    STANZA_ERROR_TYPES,
    LocalXmppError,
    RemoteXmppError,
)
from sipxmpp.gateway.xmpp.stream_guard import RestrictedXmlGuard
from sipxmpp.mapping.model import StanzaError, XmppMessage

__all__ = [
    "MESSAGE_TAGS",
    "MESSAGE_TYPES",
    "NS_CLIENT",
    "NS_COMPONENT",
    "NS_STANZAS",
    "NS_XHTML",
    "NS_XHTML_IM",
    "jid_domain",
    "message_from_element",
    "message_to_xml",
    "normalize_xhtml",
    "serialize_element",
    "stanza_error_from_element",
]

NS_COMPONENT = "jabber:component:accept"
NS_CLIENT = "jabber:client"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_XHTML_IM = "http://jabber.org/protocol/xhtml-im"
NS_XHTML = "http://www.w3.org/1999/xhtml"
NS_XML = "http://www.w3.org/XML/1998/namespace"
XML_LANG = "{" + NS_XML + "}lang"

#: ``<message/>`` in the component namespace (XEP-0114) or, as some servers route it, the
#: client namespace.
MESSAGE_TAGS = frozenset({"{" + NS_COMPONENT + "}message", "{" + NS_CLIENT + "}message"})

#: RFC 6121 §5.2.2.
MESSAGE_TYPES = frozenset({"normal", "chat", "groupchat", "headline", "error"})

_HTML_TAG = "{" + NS_XHTML_IM + "}html"
_XHTML_BODY_TAG = "{" + NS_XHTML + "}body"
_STANZAS_TEXT_TAG = "{" + NS_STANZAS + "}text"
_STANZAS_PREFIX = "{" + NS_STANZAS + "}"
#: XEP-0085 chat states and XEP-0184 receipts (RFC 7573 §6-§7 map them to MSRP).
NS_CHATSTATES = "http://jabber.org/protocol/chatstates"
NS_RECEIPTS = "urn:xmpp:receipts"
_CHATSTATE_PREFIX = "{" + NS_CHATSTATES + "}"
_CHAT_STATES = frozenset({"active", "composing", "paused", "inactive", "gone"})
_RECEIPT_REQUEST_TAG = "{" + NS_RECEIPTS + "}request"
_RECEIPT_RECEIVED_TAG = "{" + NS_RECEIPTS + "}received"

#: Deepest XHTML-IM element nesting serialized. Real formatting nests a handful of levels
#: (XEP-0071's recommended profile has no block nesting beyond lists); the bound keeps the
#: recursive serializer far from Python's recursion limit on hostile input.
MAX_XHTML_DEPTH = 64

# XML 1.0 §2.2 production [2] Char: anything outside these ranges cannot appear in a stream,
# not even as a character reference. (Python strings may also hold lone surrogates.)
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _escape_text(value: str) -> str:
    # "\r" as a character reference: a parser would otherwise normalize CRLF to LF (XML 1.0 §2.11).
    return (
        value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")
    )


# Every character _escape_attr (and so _escape_text) rewrites.
_NEEDS_ESCAPE = re.compile('[&<>"\r\t\n]')


def _verbatim(value: str) -> str:
    return value


def _escape_attr(value: str) -> str:
    # Whitespace as character references: a parser normalizes literal ones (XML 1.0 §3.3.3).
    return _escape_text(value).replace('"', "&quot;").replace("\t", "&#9;").replace("\n", "&#10;")


def jid_domain(jid: str) -> str:
    """The domainpart of a JID (RFC 7622 §3.2): after the first ``@``, before the first ``/``."""
    bare = jid.split("/", 1)[0]
    return bare.split("@", 1)[1] if "@" in bare else bare


def _namespace_of(tag: str) -> str:
    return tag[1 : tag.index("}")] if tag.startswith("{") else ""


def _in_language(element: ET.Element, lang: str | None) -> bool:
    """RFC 6121 §5.2.3: ``element`` is in the stanza's language ``lang``, or has none."""
    element_lang = element.get(XML_LANG)
    return element_lang is None or element_lang == lang


def _choose(elements: Sequence[ET.Element], lang: str | None) -> ET.Element | None:
    """RFC 6121 §5.2.3: the element in the stanza's language (or with none), else the first."""
    if not elements:
        return None
    for element in elements:
        if _in_language(element, lang):
            return element
    return elements[0]


def stanza_error_from_element(error: ET.Element | None) -> StanzaError:
    """RFC 6120 §8.3.2: condition, type, text and (for gone/redirect) the new address."""
    if error is None:
        return StanzaError(condition="undefined-condition", type="cancel")
    etype = error.get("type", "cancel")
    if etype not in STANZA_ERROR_TYPES:
        etype = "cancel"
    condition = "undefined-condition"
    uri: str | None = None
    text: str | None = None
    for child in error:
        tag = child.tag
        if not tag.startswith(_STANZAS_PREFIX):
            continue  # application-specific condition (§8.3.4): not mapped
        if tag == _STANZAS_TEXT_TAG:
            if text is None:
                text = child.text or ""
            continue
        name = tag[len(_STANZAS_PREFIX) :]
        if condition == "undefined-condition" and name in STANZA_ERROR_CONDITIONS:
            condition = name
            if name in ADDRESS_CONDITIONS and child.text and child.text.strip():
                uri = child.text.strip()
    return StanzaError(condition=condition, type=etype, text=text, uri=uri)


def _child_tags(message_tag: str) -> tuple[str, str, str, str]:
    """``<body/>``, ``<subject/>``, ``<thread/>`` and ``<error/>`` in the stanza's namespace."""
    ns = "{" + _namespace_of(message_tag) + "}"
    return ns + "body", ns + "subject", ns + "thread", ns + "error"


#: The child tags of the two ``<message/>`` namespaces the component receives (MESSAGE_TAGS),
#: computed once instead of per stanza.
_MESSAGE_CHILD_TAGS: dict[str, tuple[str, str, str, str]] = {
    tag: _child_tags(tag) for tag in MESSAGE_TAGS
}


def message_from_element(xml: ET.Element, *, default_to: str) -> XmppMessage:
    """Copy the fields of an incoming ``<message/>`` element into an :class:`XmppMessage`.

    ``default_to`` is used when the stanza has no ``to`` (RFC 6120 §8.1.1.1: addressed to the
    receiving entity itself). A stanza without ``from`` cannot be answered or mapped and raises
    :class:`RemoteXmppError` (XEP-0114 §3: routed stanzas always carry it).

    One pass over the children, in document order. The body is chosen as :func:`_choose`
    would choose it among all ``<body/>`` children (RFC 6121 §5.2.3), without collecting them
    first: the common stanza has a single body and nothing else to choose between.
    """
    attrib = xml.attrib
    from_jid = attrib.get("from")
    if not from_jid:
        raise RemoteXmppError("message stanza without 'from'", condition="improper-addressing")
    to_jid = attrib.get("to") or default_to
    mtype = attrib.get("type", "normal")
    if mtype not in MESSAGE_TYPES:
        mtype = "normal"  # RFC 6121 §5.2.2
    stanza_lang = attrib.get(XML_LANG)

    tag = xml.tag
    body_tag, subject_tag, thread_tag, error_tag = _MESSAGE_CHILD_TAGS.get(tag) or _child_tags(tag)
    body_el: ET.Element | None = None
    body_in_lang = False  # body_el has no xml:lang or the stanza's: no later body replaces it
    subjects: list[ET.Element] = []
    thread: str | None = None
    error_el: ET.Element | None = None
    html_el: ET.Element | None = None
    chat_state: str | None = None
    receipt_request = False
    receipt_for: str | None = None
    for child in xml:
        tag = child.tag
        if tag == body_tag:
            if not body_in_lang:  # as _choose() would choose among all bodies
                if _in_language(child, stanza_lang):
                    body_el, body_in_lang = child, True
                elif body_el is None:
                    body_el = child
        elif tag == subject_tag:
            subjects.append(child)
        elif tag == thread_tag:
            if thread is None:
                thread = child.text or ""
        elif tag == error_tag:
            if error_el is None:
                error_el = child
        elif tag == _HTML_TAG and html_el is None:
            html_el = child
        elif tag.startswith(_CHATSTATE_PREFIX):
            name = tag[len(_CHATSTATE_PREFIX) :]
            if chat_state is None and name in _CHAT_STATES:
                chat_state = name
        elif tag == _RECEIPT_REQUEST_TAG:
            receipt_request = True
        elif tag == _RECEIPT_RECEIVED_TAG and receipt_for is None:
            receipt_for = child.get("id") or ""

    body = None if body_el is None else (body_el.text or "")
    lang = (body_el.get(XML_LANG) if body_el is not None else None) or stanza_lang
    subject_el = _choose(subjects, lang)
    subject = None if subject_el is None else (subject_el.text or "")

    xhtml: str | None = None
    if html_el is not None:
        xhtml_el = _choose(html_el.findall(_XHTML_BODY_TAG), lang)
        if xhtml_el is not None:
            try:
                xhtml = serialize_element(xhtml_el)
            except ValueError:
                xhtml = None  # XEP-0071 §8: a recipient may always fall back to the plain body

    return XmppMessage(
        from_jid=from_jid,
        to_jid=to_jid,
        body=body,
        subject=subject,
        thread=thread,
        id=attrib.get("id"),
        type=mtype,
        lang=lang,
        xhtml=xhtml,
        error=stanza_error_from_element(error_el) if mtype == "error" else None,
        chat_state=chat_state,
        receipt_request=receipt_request,
        receipt_for=receipt_for,
    )


def serialize_element(element: ET.Element) -> str:
    """Serialize an element with default-namespace declarations (no ``ns0:`` prefixes).

    Raises ``ValueError`` when the element nests deeper than :data:`MAX_XHTML_DEPTH`.
    """
    out: list[str] = []
    _serialize(element, "", out, 0)
    return "".join(out)


def _serialize(element: ET.Element, parent_ns: str, out: list[str], depth: int) -> None:
    if depth > MAX_XHTML_DEPTH:
        raise ValueError(f"element nesting deeper than {MAX_XHTML_DEPTH}")
    tag = element.tag
    if not isinstance(tag, str):
        return  # comments/processing instructions are never part of a stanza
    if tag.startswith("{"):
        ns, _, local = tag[1:].partition("}")
    else:
        ns, local = "", tag
    out.append("<" + local)
    if ns != parent_ns:
        out.append(' xmlns="' + _escape_attr(ns) + '"')
    prefixes: dict[str, str] = {}
    for name, value in element.attrib.items():
        if name.startswith("{"):
            attr_ns, _, attr_local = name[1:].partition("}")
            if attr_ns == NS_XML:
                out.append(" xml:" + attr_local + '="' + _escape_attr(value) + '"')
                continue
            prefix = prefixes.get(attr_ns)
            if prefix is None:
                prefix = prefixes[attr_ns] = f"a{len(prefixes)}"
                out.append(" xmlns:" + prefix + '="' + _escape_attr(attr_ns) + '"')
            out.append(" " + prefix + ":" + attr_local + '="' + _escape_attr(value) + '"')
        else:
            out.append(" " + name + '="' + _escape_attr(value) + '"')
    if element.text is None and len(element) == 0:
        out.append("/>")
        return
    out.append(">")
    if element.text:
        out.append(_escape_text(element.text))
    for child in element:
        _serialize(child, ns, out, depth + 1)
        if child.tail:
            out.append(_escape_text(child.tail))
    out.append("</" + local + ">")


def normalize_xhtml(xhtml: str) -> str:
    """Check an XHTML-IM body given as a string and return it re-serialized.

    It must be one well-formed ``<body xmlns='http://www.w3.org/1999/xhtml'>`` element with no
    restricted XML (RFC 6120 §11.1); else :class:`LocalXmppError`.
    """
    if _NOT_XML_CHAR.search(xhtml):
        raise LocalXmppError("XHTML-IM body contains a character XML cannot carry")
    guard = RestrictedXmlGuard()
    try:
        guard.feed(xhtml.encode("utf-8"))
    except RemoteXmppError as exc:
        raise LocalXmppError(f"XHTML-IM body refused: {exc.msg}") from exc
    try:
        root = ET.fromstring(xhtml)
    except ET.ParseError as exc:
        raise LocalXmppError(f"XHTML-IM body is not well-formed XML: {exc}") from exc
    if root.tag != _XHTML_BODY_TAG:
        raise LocalXmppError(f"XHTML-IM content must be an XHTML <body/>, not {root.tag!r}")
    try:
        return serialize_element(root)
    except ValueError as exc:
        raise LocalXmppError(f"XHTML-IM body refused: {exc}") from exc


def _check_chars(field: str, value: str) -> None:
    if _NOT_XML_CHAR.search(value):
        raise LocalXmppError(
            f"message {field} contains a character XML cannot carry (XML 1.0 §2.2)"
        )


def message_to_xml(msg: XmppMessage, *, component_domain: str) -> str:
    """Serialize an outgoing ``<message/>`` for the component stream (default namespace
    ``jabber:component:accept``, so the children carry no namespace declaration)."""
    if msg.type not in MESSAGE_TYPES:
        raise LocalXmppError(f"unknown message type {msg.type!r} (RFC 6121 §5.2.2)")
    if not msg.from_jid or not msg.to_jid:
        raise LocalXmppError("message needs both 'from' and 'to'", condition="jid-malformed")
    if jid_domain(msg.from_jid).lower() != component_domain.lower():
        raise LocalXmppError(
            f"'from' {msg.from_jid!r} is outside the component domain {component_domain!r}"
            " (XEP-0114 §3)",
            condition="internal-server-error",
        )
    if (msg.type == "error") != (msg.error is not None):
        raise LocalXmppError("type='error' and an error condition go together (RFC 6120 §8.3)")
    fields = (
        ("from", msg.from_jid),
        ("to", msg.to_jid),
        ("id", msg.id),
        ("xml:lang", msg.lang),
        ("subject", msg.subject),
        ("body", msg.body),
        ("thread", msg.thread),
    )
    # One regex pass over all fields (joined by a space, an XML character that needs no
    # escaping); only a message that fails it is checked field by field, to name the field.
    joined = " ".join([value for _, value in fields if value is not None])
    if _NOT_XML_CHAR.search(joined):
        for field, value in fields:
            if value is not None:
                _check_chars(field, value)
    # Most messages hold nothing to escape: one more pass over the joined fields decides,
    # instead of up to seven replace() calls per field.
    attr: Callable[[str], str] = _escape_attr
    text: Callable[[str], str] = _escape_text
    if _NEEDS_ESCAPE.search(joined) is None:
        attr = text = _verbatim

    parts = ['<message from="', attr(msg.from_jid), '" to="', attr(msg.to_jid), '"']
    if msg.id is not None:
        parts += [' id="', attr(msg.id), '"']
    if msg.type != "normal":
        parts += [' type="', msg.type, '"']
    if msg.lang is not None:
        parts += [' xml:lang="', attr(msg.lang), '"']
    parts.append(">")
    if msg.subject is not None:
        parts += ["<subject>", text(msg.subject), "</subject>"]
    if msg.body is not None:
        parts += ["<body>", text(msg.body), "</body>"]
    if msg.thread is not None:
        parts += ["<thread>", text(msg.thread), "</thread>"]
    if msg.xhtml is not None:
        parts += ['<html xmlns="', NS_XHTML_IM, '">', normalize_xhtml(msg.xhtml), "</html>"]
    if msg.chat_state is not None:
        if msg.chat_state not in _CHAT_STATES:
            raise LocalXmppError(f"unknown chat state {msg.chat_state!r} (XEP-0085 §5)")
        parts += ["<", msg.chat_state, ' xmlns="', NS_CHATSTATES, '"/>']
    if msg.receipt_request:
        parts += ['<request xmlns="', NS_RECEIPTS, '"/>']
    if msg.receipt_for is not None:
        _check_chars("receipt id", msg.receipt_for)
        parts += ['<received xmlns="', NS_RECEIPTS, '" id="', _escape_attr(msg.receipt_for), '"/>']
    if msg.error is not None:
        parts.append(_error_xml(msg.error))
    parts.append("</message>")
    return "".join(parts)


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
