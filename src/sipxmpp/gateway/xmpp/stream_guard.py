"""Refuse restricted XML on the incoming XMPP stream before the XML parser sees it.

Theory of operation
-------------------
RFC 6120 §11.1: an XML stream MUST NOT contain comments, processing instructions, internal or
external DTD subsets, or internal or external entity references other than the predefined ones;
an entity that receives such data MUST close the stream with a ``<restricted-xml/>`` stream
error. A DTD is also the way in for entity-expansion attacks ("billion laughs").

slixmpp 1.17 parses the stream with ``xml.etree.ElementTree.XMLPullParser``, the C accelerator
around expat (``XMLStream.init_parser`` / ``data_received``). That parser reads a DOCTYPE's
internal subset and expands the entities it declares, and it offers no hook to refuse one:
``XMLPullParser`` insists on the exact C ``TreeBuilder`` as its target, and only a target's
``doctype()`` method would be told about a DOCTYPE. Replacing the target with a Python object
would add several Python calls per element on the message hot path.

So the guard looks at the raw bytes before they are fed to the parser. In well-formed XML the
two-byte sequences ``<!`` and ``<?`` can only start markup, because ``<`` is never literal
character data or part of an attribute value (XML 1.0 §2.4 and production [10] AttValue):

=====================  =====================================================================
``<![CDATA[``          a CDATA section: allowed; its content is skipped up to ``]]>``
``<!--``               a comment: restricted
``<!DOCTYPE``, other   a document type or markup declaration: restricted
``<?xml`` + space      the XML declaration: allowed (expat itself rejects one that is not at
                       the very start of the stream)
other ``<?``           a processing instruction: restricted
=====================  =====================================================================

Entity references need no scan: without a DTD, expat rejects any reference other than the five
predefined entities and character references as an undefined entity (a parse error, which
slixmpp answers with ``<not-well-formed/>``).

The scan works on the bytes of an ASCII-compatible encoding. RFC 6120 §11.6 requires UTF-8;
a UTF-16 or UTF-32 stream would hide every ``<`` next to a NUL byte, and U+0000 is not an XML
character at all (XML 1.0 §2.2 production [2] Char), so any NUL byte is refused as
``<not-well-formed/>``.

A token split across two reads is carried over (at most eight bytes), so the result does not
depend on how TCP segments the stream; the tests feed every case one byte at a time. The cost
per read is a few ``bytes.find`` calls in C, with no per-byte Python code.
"""

from __future__ import annotations

from sipxmpp.gateway.xmpp.errors import RemoteXmppError

__all__ = ["RestrictedXmlGuard"]

_CDATA_OPEN = b"<![CDATA["
_CDATA_CLOSE = b"]]>"
_XML_DECL = b"<?xml"
_XML_DECL_FOLLOWERS = (b" ", b"\t", b"\r", b"\n")


def _describe_bang(token: bytes) -> str:
    if token.startswith(b"<!-"):
        return "a comment"
    if token.startswith(b"<!DOCTYPE"):
        return "a document type declaration (DTD)"
    if token.startswith(b"<!["):
        return "a conditional section"
    return "a markup declaration"


class RestrictedXmlGuard:
    """Incremental check of one incoming stream for RFC 6120 §11.1 restricted XML.

    Call :meth:`feed` with every chunk read from the socket, before handing the chunk to the
    XML parser; it raises :class:`RemoteXmppError` with condition ``restricted-xml`` (or
    ``not-well-formed`` for a NUL byte) and is then unusable until :meth:`reset`.
    """

    __slots__ = ("_carry", "_in_cdata")

    def __init__(self) -> None:
        self._carry = b""
        self._in_cdata = False

    def reset(self) -> None:
        """Forget all state: call it when a new stream starts."""
        self._carry = b""
        self._in_cdata = False

    def feed(self, data: bytes) -> None:
        """Check the next chunk of the stream; raise :class:`RemoteXmppError` to refuse it."""
        if b"\x00" in data:
            raise RemoteXmppError(
                "NUL byte on the stream: not UTF-8 (RFC 6120 §11.6) and not an XML Char",
                condition="not-well-formed",
            )
        buf = self._carry + data if self._carry else data
        self._carry = b""
        pos = 0
        size = len(buf)
        while True:
            if self._in_cdata:
                end = buf.find(_CDATA_CLOSE, pos)
                if end < 0:
                    # Keep "]" or "]]" that may be completed by the next read.
                    self._carry = buf[max(pos, size - 2) :]
                    return
                pos = end + len(_CDATA_CLOSE)
                self._in_cdata = False
                continue
            bang = buf.find(b"<!", pos)
            quest = buf.find(b"<?", pos)
            if bang < 0 and quest < 0:
                if size > pos and buf[size - 1 : size] == b"<":
                    self._carry = b"<"
                return
            if quest < 0 or 0 <= bang < quest:
                token = buf[bang : bang + len(_CDATA_OPEN)]
                if token == _CDATA_OPEN:
                    self._in_cdata = True
                    pos = bang + len(_CDATA_OPEN)
                    continue
                if len(token) < len(_CDATA_OPEN) and _CDATA_OPEN.startswith(token):
                    self._carry = token  # "<!", "<![", "<![CD"...: wait for more bytes
                    return
                raise RemoteXmppError(
                    f"the stream contains {_describe_bang(token)} (RFC 6120 §11.1)",
                    condition="restricted-xml",
                )
            token = buf[quest : quest + len(_XML_DECL) + 1]
            if len(token) <= len(_XML_DECL) and _XML_DECL.startswith(token):
                self._carry = token  # "<?", "<?x", ... "<?xml": wait for the next byte
                return
            if token[: len(_XML_DECL)] == _XML_DECL and token[len(_XML_DECL) :] in (
                _XML_DECL_FOLLOWERS
            ):
                pos = quest + len(_XML_DECL)
                continue
            raise RemoteXmppError(
                "the stream contains a processing instruction (RFC 6120 §11.1)",
                condition="restricted-xml",
            )
