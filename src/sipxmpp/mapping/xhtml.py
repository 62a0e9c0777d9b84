"""HTML (SIP ``text/html``) -> XHTML-IM (XEP-0071), with a plain-text fallback.

Theory of operation
===================

RFC 7572 §7: an S2X gateway that handles ``text/html`` MUST convert it to XHTML-IM. The
XHTML-IM Recommended Profile (XEP-0071 §7, summary table) allows only these elements
and attributes, and this module emits nothing else:

============  =====================================
``<a/>``      href, style, type
``<body/>``   style (the root, in the XHTML namespace)
``<br/>``     (none)
``<img/>``    alt, height, src, style, width
``<li/>``     style
``<ol/>``     style
``<p/>``      style
``<span/>``   style
``<ul/>``     style
============  =====================================

with only the ten recommended CSS1 properties in ``style`` (§7.6.1: background-color,
color, font-family, font-size, font-style, font-weight, margin-left, margin-right,
text-align, text-decoration) and values without ``url(``, ``expression(``, escapes or
comments.

The input is parsed by libxml2's forgiving HTML parser (no network, no DTD). The
sanitiser then *rebuilds* a new tree instead of deleting bad parts from the old one,
so anything it does not know cannot leak through:

* active or non-text content (``script``, ``style``, ``head``, ``object``, ``iframe``,
  forms, media, ...) is dropped **with** its content;
* presentational HTML is rewritten into the profile, as XEP-0071 business rule 7 asks
  (styles instead of structure): ``<b>``/``<strong>`` -> ``<span style='font-weight:
  bold'>``, ``<i>``/``<em>`` -> italic, ``<u>`` -> underline, ``<font color>`` -> color,
  headings/``div``/``blockquote``/``pre``/table rows -> ``<p>`` (with a fitting style);
  ``pre`` whitespace becomes ``<br/>`` and no-break spaces (business rule 9);
* any other element is unwrapped (its content is kept, the element is not: the
  "ignore" of XHTML Modularization's user-agent conformance, XEP-0071 §9);
* links keep only ``http``/``https``/``xmpp``/``mailto``/``sip``/``sips``/``im``/
  ``pres``/``tel`` targets and images only ``http``/``https``/``cid`` sources (XEP-0071
  §10 security considerations: no scripts, and no surprise fetches); an image without
  a safe source is replaced by its ``alt`` text, a link without a safe target by its text;
* nesting deeper than :data:`MAX_XHTML_DEPTH` is flattened to text.

The same walk produces the plain text for the XMPP ``<body/>`` (which carries the
meaning; the XHTML is only its formatted version, XEP-0071 §4 and business rule 2):
line breaks for ``<br/>`` and block ends, ``- `` / ``N. `` for list items, image
``alt`` text, and a link's target after its text when they differ.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from lxml import etree

from .model import MappingRefused, StanzaError, StanzaRefused

__all__ = [
    "XHTML_NS",
    "XHTML_IM_NS",
    "MAX_HTML_INPUT_BYTES",
    "MAX_XHTML_DEPTH",
    "ALLOWED_ATTRIBUTES",
    "STYLE_PROPERTIES",
    "LINK_SCHEMES",
    "IMAGE_SCHEMES",
    "XhtmlIm",
    "xml_safe",
    "html_to_xhtml_im",
    "sanitize_xhtml_im",
]

XHTML_NS: Final = "http://www.w3.org/1999/xhtml"
XHTML_IM_NS: Final = "http://jabber.org/protocol/xhtml-im"

#: Largest HTML document converted. The same limit as the largest MESSAGE body the
#: gateway maps (``messages.MAX_SIP_TO_XMPP_BODY_BYTES``): the XHTML plus its text
#: fallback roughly double it and must stay well inside the XMPP server's stanza size
#: limit (RFC 6120 §13.12 only guarantees 10,000 bytes; Prosody's default is 256 KiB).
MAX_HTML_INPUT_BYTES: Final = 64 * 1024

#: Deepest element nesting kept. XEP-0071 business rule 8 discourages nesting beyond
#: lists in ``div``s; real IM markup stays within a handful of levels. Deeper content is
#: kept as text. The bound also keeps the recursive walk far from Python's stack limit.
MAX_XHTML_DEPTH: Final = 32

#: Longest ``style`` attribute value looked at; longer ones are dropped (IM styling is a
#: few declarations, and an unbounded value would only cost parsing time).
MAX_STYLE_CHARS: Final = 512

#: XEP-0071 §7 "Recommended Elements and Attributes".
ALLOWED_ATTRIBUTES: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        "a": frozenset({"href", "style", "type"}),
        "body": frozenset({"style"}),
        "br": frozenset(),
        "img": frozenset({"alt", "height", "src", "style", "width"}),
        "li": frozenset({"style"}),
        "ol": frozenset({"style"}),
        "p": frozenset({"style"}),
        "span": frozenset({"style"}),
        "ul": frozenset({"style"}),
    }
)

#: XEP-0071 §7.6.1 "Recommended Style Properties".
STYLE_PROPERTIES: Final = frozenset(
    {
        "background-color",
        "color",
        "font-family",
        "font-size",
        "font-style",
        "font-weight",
        "margin-left",
        "margin-right",
        "text-align",
        "text-decoration",
    }
)

#: URI schemes a link may point to: the web, and the addresses of IM/VoIP peers.
LINK_SCHEMES: Final = frozenset(
    {"http", "https", "xmpp", "mailto", "sip", "sips", "im", "pres", "tel"}
)
#: URI schemes an image may come from (``cid`` for XEP-0231 Bits of Binary).
IMAGE_SCHEMES: Final = frozenset({"http", "https", "cid"})

# Elements dropped together with everything inside them: code, metadata, embedded and
# interactive content (XEP-0071 §3 requirement 6, §10 security considerations).
_DROP_WITH_CONTENT: Final = frozenset(
    {
        "applet", "area", "audio", "base", "basefont", "button", "canvas", "datalist",
        "embed", "frame", "frameset", "head", "iframe", "input", "link", "map", "math",
        "meta", "noembed", "noframes", "noscript", "object", "optgroup", "option",
        "param", "script", "select", "source", "style", "svg", "template", "textarea",
        "title", "track", "video", "xml",
    }
)  # fmt: skip

# Inline HTML elements carried as a <span> with an equivalent style.
_INLINE_STYLES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "b": "font-weight: bold",
        "strong": "font-weight: bold",
        "i": "font-style: italic",
        "em": "font-style: italic",
        "cite": "font-style: italic",
        "dfn": "font-style: italic",
        "var": "font-style: italic",
        "u": "text-decoration: underline",
        "ins": "text-decoration: underline",
        "s": "text-decoration: line-through",
        "strike": "text-decoration: line-through",
        "del": "text-decoration: line-through",
        "code": "font-family: monospace",
        "tt": "font-family: monospace",
        "kbd": "font-family: monospace",
        "samp": "font-family: monospace",
        "span": "",
        "font": "",
        "big": "font-size: larger",
        "small": "font-size: smaller",
    }
)

# Block HTML elements carried as a <p> with an equivalent style.
_BLOCK_STYLES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "p": "",
        "div": "",
        "h1": "font-size: xx-large; font-weight: bold",
        "h2": "font-size: x-large; font-weight: bold",
        "h3": "font-size: large; font-weight: bold",
        "h4": "font-weight: bold",
        "h5": "font-weight: bold",
        "h6": "font-weight: bold",
        "blockquote": "margin-left: 5%",
        "pre": "font-family: monospace",
        "address": "font-style: italic",
        "center": "text-align: center",
        "dd": "margin-left: 5%",
        "dt": "font-weight: bold",
        "tr": "",
        "caption": "",
        "figcaption": "",
        "summary": "",
        "legend": "",
        "section": "",
        "article": "",
        "header": "",
        "footer": "",
        "main": "",
        "nav": "",
        "aside": "",
        "figure": "",
        "details": "",
        "fieldset": "",
        "form": "",
    }
)

# Cells: unwrapped, separated by a space in the text fallback.
_CELLS: Final = frozenset({"td", "th"})

_STYLE_VALUE_RE: Final = re.compile(r"(?:[A-Za-z0-9#%.,+ '\"-]|(?:rgba?|hsla?)\([0-9.,% ]*\))+")
_DIMENSION_RE: Final = re.compile(r"[0-9]{1,4}%?")
_FONT_COLOR_RE: Final = re.compile(r"#[0-9A-Fa-f]{3,8}|[A-Za-z]{1,20}")
_SCHEME_RE: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_WS_RE: Final = re.compile(r"[ \t\n\r\f\v]+")
_NBSP: Final = "\u00a0"


@dataclass(frozen=True, slots=True)
class XhtmlIm:
    """The result of a conversion."""

    #: The serialized ``<body xmlns='http://www.w3.org/1999/xhtml'>`` (XEP-0071 §4),
    #: to be wrapped in ``<html xmlns='http://jabber.org/protocol/xhtml-im'>``.
    xhtml: str
    #: The plain-text rendering, for the XMPP ``<body/>``.
    text: str


def _is_xml_char(char: str) -> bool:
    """XML 1.0 §2.2 Char."""
    code = ord(char)
    return (
        char in "\t\n\r"
        or 0x20 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )


# XML 1.0 §2.2 production [2] Char, negated: what :func:`_is_xml_char` refuses, as one
# regex so that a message body is checked in C rather than character by character.
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_safe(text: str) -> str:
    """``text`` with every character XML 1.0 cannot carry (§2.2) replaced by U+FFFD.

    XMPP is XML: control characters and lone surrogates from the SIP side would make
    the stanza unserializable (and lxml refuses them), so they are replaced, not passed.
    """
    if _NOT_XML_CHAR.search(text) is None:
        return text
    return _NOT_XML_CHAR.sub("\ufffd", text)


def _scheme(uri: str) -> str | None:
    # Browsers ignore ASCII whitespace and controls inside a scheme ("java\nscript:"), so
    # the check does too before reading the scheme.
    compact = "".join(char for char in uri if ord(char) > 0x20 and ord(char) != 0x7F)
    match = _SCHEME_RE.match(compact)
    return match.group(1).lower() if match else None


def _safe_uri(uri: str | None, schemes: frozenset[str]) -> str | None:
    if uri is None:
        return None
    uri = uri.strip()
    if not uri or len(uri) > 4096:
        return None
    return xml_safe(uri) if _scheme(uri) in schemes else None


def _clean_style(*styles: str | None) -> str | None:
    """Keep only recommended properties with harmless values (XEP-0071 §7.6.1)."""
    kept: dict[str, str] = {}
    for style in styles:
        if not style or len(style) > MAX_STYLE_CHARS:
            continue
        for declaration in style.split(";"):
            name, colon, value = declaration.partition(":")
            name = name.strip().lower()
            value = " ".join(value.split())
            if not colon or name not in STYLE_PROPERTIES or not value or len(value) > 128:
                continue
            if _STYLE_VALUE_RE.fullmatch(value):
                kept[name] = value
    if not kept:
        return None
    return "; ".join(f"{name}: {value}" for name, value in kept.items())


def _local_name(element: etree._Element, xml_mode: bool) -> str | None:
    """Lower-case element name; None for comments, PIs and (in XML) foreign namespaces."""
    tag = element.tag
    if not isinstance(tag, str):
        return None
    if xml_mode:
        qname = etree.QName(tag)
        if qname.namespace != XHTML_NS:
            return "#foreign"
        return qname.localname.lower()
    return tag.lower()


@dataclass(slots=True)
class _Ctx:
    depth: int
    inline: bool
    pre: bool
    list_kind: str | None


class _Converter:
    """One conversion: walks the source tree, builds the XHTML-IM tree and the text."""

    def __init__(self, xml_mode: bool) -> None:
        self.xml_mode = xml_mode
        # Parsed rather than built so that XHTML is the default namespace (no prefix).
        self.root = etree.fromstring(f'<body xmlns="{XHTML_NS}"/>')
        self.text: list[str] = []

    # ----------------------------------------------------------------- output helpers

    def _new(self, parent: etree._Element, tag: str, **attrs: str | None) -> etree._Element:
        element = etree.SubElement(parent, f"{{{XHTML_NS}}}{tag}")
        for name, value in attrs.items():
            if value is not None:
                element.set(name, xml_safe(value))
        return element

    def _put_tree_text(self, dst: etree._Element, text: str) -> None:
        if not text:
            return
        text = xml_safe(text)
        if len(dst):
            last = dst[-1]
            last.tail = (last.tail or "") + text
        else:
            dst.text = (dst.text or "") + text

    def _put_text(self, dst: etree._Element, text: str | None, ctx: _Ctx) -> None:
        if not text:
            return
        if ctx.list_kind is not None and not ctx.inline:
            if not text.strip():
                return  # whitespace between <li>s: XHTML lists hold no character data
            item = self._new(dst, "li")
            self._line_start("- " if ctx.list_kind == "ul" else "")
            self._put_text(item, text, _Ctx(ctx.depth + 1, True, ctx.pre, None))
            self._line_end()
            return
        if ctx.pre:
            lines = text.split("\n")
            for index, line in enumerate(lines):
                if index:
                    self._new(dst, "br")
                    self.text.append("\n")
                self._put_tree_text(dst, line.replace(" ", _NBSP))
                self.text.append(line)
            return
        self._put_tree_text(dst, text)
        self._add_text(_WS_RE.sub(" ", text))

    def _add_text(self, text: str) -> None:
        """Append collapsed (non-``pre``) text, never starting a line with a space."""
        if not self.text or self.text[-1].endswith(("\n", " ")):
            text = text.lstrip(" ")
        if text:
            self.text.append(text)

    def _line_start(self, prefix: str = "") -> None:
        if self.text and not self.text[-1].endswith("\n"):
            self.text.append("\n")
        if prefix:
            self.text.append(prefix)

    def _line_end(self) -> None:
        if self.text and not self.text[-1].endswith("\n"):
            self.text.append("\n")

    def final_text(self) -> str:
        text = "\n".join(line.rstrip(" ") for line in "".join(self.text).split("\n"))
        return xml_safe(re.sub(r"\n{3,}", "\n\n", text).strip("\n"))

    # ----------------------------------------------------------------- the walk

    def children(self, src: etree._Element, dst: etree._Element, ctx: _Ctx) -> None:
        self._put_text(dst, src.text, ctx)
        for child in src:
            self.element(child, dst, ctx)
            self._put_text(dst, child.tail, ctx)

    def _flat_text(self, src: etree._Element) -> Iterator[str]:
        stack: list[tuple[etree._Element, bool]] = [(src, False)]
        while stack:
            element, tail_only = stack.pop()
            if tail_only:
                if element.tail:
                    yield element.tail
                continue
            name = _local_name(element, self.xml_mode)
            if name is None or name in _DROP_WITH_CONTENT or name == "#foreign":
                continue
            if element.text:
                yield element.text
            for child in reversed(element):
                stack.append((child, True))
                stack.append((child, False))

    def element(self, src: etree._Element, dst: etree._Element, ctx: _Ctx) -> None:
        name = _local_name(src, self.xml_mode)
        if name is None or name in _DROP_WITH_CONTENT or name == "#foreign":
            return
        if ctx.depth >= MAX_XHTML_DEPTH:
            self._put_text(dst, " ".join(self._flat_text(src)), ctx)
            return
        deeper = _Ctx(ctx.depth + 1, ctx.inline, ctx.pre, ctx.list_kind)
        style_attr = src.get("style")
        if name in ("br", "hr"):
            if ctx.list_kind is not None and not ctx.inline:
                return
            self._new(dst, "br")
            self.text.append("\n")
        elif name == "img":
            self._image(src, dst, ctx)
        elif name == "a":
            self._link(src, dst, ctx, deeper)
        elif name in ("ul", "ol", "dl", "menu", "dir"):
            self._list(src, dst, ctx, "ol" if name == "ol" else "ul")
        elif name == "li":
            self._item(src, dst, ctx)
        elif name in _BLOCK_STYLES:
            self._block(src, dst, ctx, _BLOCK_STYLES[name], pre=ctx.pre or name == "pre")
        elif name in _INLINE_STYLES:
            extra = None
            if name == "font":
                color = (src.get("color") or "").strip()
                extra = f"color: {color}" if _FONT_COLOR_RE.fullmatch(color) else None
            style = _clean_style(_INLINE_STYLES[name], extra, style_attr)
            target = self._wrap_for_inline(dst, ctx)
            if style is None:
                self.children(src, target, deeper if target is dst else self._in(deeper, True))
            else:
                span = self._new(target, "span", style=style)
                self.children(src, span, self._in(deeper, True))
        elif name in _CELLS:
            self.children(src, dst, deeper)
            self._put_tree_text(dst, " ")
            self._add_text(" ")
        else:
            # Not in the profile and not known to be dangerous: keep the content only.
            self.children(src, dst, deeper)

    @staticmethod
    def _in(ctx: _Ctx, inline: bool, list_kind: str | None = None) -> _Ctx:
        return _Ctx(ctx.depth, inline, ctx.pre, list_kind)

    def _wrap_for_inline(self, dst: etree._Element, ctx: _Ctx) -> etree._Element:
        """Inline content directly inside a list goes into an item of its own."""
        if ctx.list_kind is not None and not ctx.inline:
            self._line_start("- " if ctx.list_kind == "ul" else "")
            return self._new(dst, "li")
        return dst

    def _image(self, src: etree._Element, dst: etree._Element, ctx: _Ctx) -> None:
        alt = " ".join((src.get("alt") or "").split())
        source = _safe_uri(src.get("src"), IMAGE_SCHEMES)
        if source is None:
            self._put_text(dst, alt, ctx)
            return
        width = (src.get("width") or "").strip()
        height = (src.get("height") or "").strip()
        target = self._wrap_for_inline(dst, ctx)
        self._new(
            target,
            "img",
            src=source,
            alt=alt,  # XEP-0071 §7.7.2: alt is REQUIRED
            width=width if _DIMENSION_RE.fullmatch(width) else None,
            height=height if _DIMENSION_RE.fullmatch(height) else None,
            style=_clean_style(src.get("style")),
        )
        self._add_text(f"[{alt}]" if alt else f"[{source}]")

    def _link(self, src: etree._Element, dst: etree._Element, ctx: _Ctx, deeper: _Ctx) -> None:
        href = _safe_uri(src.get("href"), LINK_SCHEMES)
        target = self._wrap_for_inline(dst, ctx)
        inner = deeper if target is dst else self._in(deeper, True)
        if href is None:
            self.children(src, target, inner)
            return
        mime = (src.get("type") or "").strip()
        anchor = self._new(
            target,
            "a",
            href=href,
            type=mime if re.fullmatch(r"[\w.+-]+/[\w.+-]+", mime) else None,
            style=_clean_style(src.get("style")),
        )
        start = len(self.text)
        self.children(src, anchor, self._in(inner, True))
        shown = "".join(self.text[start:]).strip()
        if shown != href and shown != href.partition(":")[2]:
            self._add_text(f" <{href}>" if shown else href)

    def _list(self, src: etree._Element, dst: etree._Element, ctx: _Ctx, kind: str) -> None:
        if ctx.inline:
            # A list cannot sit inside a paragraph or span: keep its items as lines.
            self._new(dst, "br")
            self._line_start()
            self.children(src, dst, _Ctx(ctx.depth + 1, True, ctx.pre, None))
            return
        target = dst
        if ctx.list_kind is not None:
            target = self._new(dst, "li")  # a bare nested list becomes an item
        self._line_start()
        new_list = self._new(target, kind, style=_clean_style(src.get("style")))
        self.children(src, new_list, _Ctx(ctx.depth + 1, False, ctx.pre, kind))
        self._line_end()

    def _item(self, src: etree._Element, dst: etree._Element, ctx: _Ctx) -> None:
        if ctx.list_kind is None or ctx.inline:
            self._block(src, dst, ctx, "", pre=ctx.pre)
            return
        number = sum(1 for element in dst if etree.QName(element).localname == "li") + 1
        self._line_start("- " if ctx.list_kind == "ul" else f"{number}. ")
        item = self._new(dst, "li", style=_clean_style(src.get("style")))
        self.children(src, item, _Ctx(ctx.depth + 1, False, ctx.pre, None))
        self._line_end()

    def _block(
        self, src: etree._Element, dst: etree._Element, ctx: _Ctx, implied: str, *, pre: bool
    ) -> None:
        style = _clean_style(implied, src.get("style"))
        inner = _Ctx(ctx.depth + 1, True, pre, None)
        if ctx.inline:
            # No paragraph inside a paragraph (XEP-0071 business rule 8): line breaks.
            if len(dst) or (dst.text or "").strip():
                self._new(dst, "br")
            self._line_start()
            if style is not None:
                dst = self._new(dst, "span", style=style)
            self.children(src, dst, inner)
            self._line_end()
            return
        target = dst
        if ctx.list_kind is not None:
            target = self._new(dst, "li")
        self._line_start()
        paragraph = self._new(target, "p", style=style)
        self.children(src, paragraph, inner)
        if not len(paragraph) and not paragraph.text and paragraph.getparent() is not None:
            # An empty paragraph (e.g. one the HTML parser closed before a list) adds
            # nothing; drop it so that the output stays minimal.
            tail = paragraph.tail
            target.remove(paragraph)
            if tail:
                self._put_tree_text(target, tail)
        self._line_end()

    def result(self) -> XhtmlIm:
        return XhtmlIm(etree.tostring(self.root, encoding="unicode"), self.final_text())


def _convert(body: etree._Element | None, xml_mode: bool) -> XhtmlIm:
    converter = _Converter(xml_mode)
    if body is not None:
        style = _clean_style(body.get("style"))
        if style is not None:
            converter.root.set("style", style)
        converter.children(body, converter.root, _Ctx(0, False, False, None))
    return converter.result()


def html_to_xhtml_im(html: str) -> XhtmlIm:
    """Convert an HTML document or fragment to XHTML-IM plus its text (RFC 7572 §7).

    Raises :class:`~sipxmpp.mapping.model.MappingRefused` 413 if the document is over
    :data:`MAX_HTML_INPUT_BYTES`. Any other input converts (libxml2's HTML parser
    recovers from every syntax error); empty input gives an empty body.
    """
    data = html.encode("utf-8", "replace")
    if len(data) > MAX_HTML_INPUT_BYTES:
        raise MappingRefused(413, "Request Entity Too Large", "HTML body too large to convert")
    parser = etree.HTMLParser(
        encoding="utf-8",
        recover=True,
        no_network=True,
        remove_comments=True,
        remove_pis=True,
        remove_blank_text=False,
        compact=True,
    )
    root = etree.fromstring(data, parser) if data.strip() else None
    if parser.error_log.filter_from_fatals():
        # libxml2 gave up (e.g. nesting deeper than its limit of 256): what it returns is
        # truncated, so keep the message's words, without any markup.
        return _text_only(html)
    body: etree._Element | None = None
    if root is not None:
        body = root.find("body")
        if body is None and root.find("head") is None:
            body = root
    return _convert(body, xml_mode=False)


_DROPPED_BLOCK_RE: Final = re.compile(
    r"<(script|style|head|title|textarea|template|noscript|svg|math|object|iframe|select)\b"
    r".*?</\1\s*>",
    re.IGNORECASE | re.DOTALL,
)
_COMMENT_RE: Final = re.compile(r"<!--.*?(?:-->|$)", re.DOTALL)
_TAG_RE: Final = re.compile(r"<[^>]*(?:>|$)")


def _text_only(html: str) -> XhtmlIm:
    """The text of HTML the parser could not build a tree for, as a one-paragraph body."""
    text = _COMMENT_RE.sub(" ", html)
    text = _DROPPED_BLOCK_RE.sub(" ", text)
    text = _TAG_RE.sub(" ", text)
    text = xml_safe(" ".join(html_lib.unescape(text).split()))
    converter = _Converter(xml_mode=False)
    if text:
        converter.root.text = text
    return XhtmlIm(etree.tostring(converter.root, encoding="unicode"), text)


def sanitize_xhtml_im(xhtml: str) -> XhtmlIm:
    """Sanitize XHTML-IM received from XMPP to the Recommended Profile, with its text.

    ``xhtml`` is the XEP-0071 ``<html xmlns='http://jabber.org/protocol/xhtml-im'>``
    wrapper or one ``<body xmlns='http://www.w3.org/1999/xhtml'>``; with several bodies
    the first is used. Raises :class:`~sipxmpp.mapping.model.StanzaRefused`
    (``not-acceptable``) if it is not well-formed XML with such a body, and
    (``policy-violation``) if it is over :data:`MAX_HTML_INPUT_BYTES`.
    """
    data = xhtml.encode("utf-8", "replace")
    if len(data) > MAX_HTML_INPUT_BYTES:
        raise StanzaRefused(StanzaError("policy-violation", "modify", "XHTML-IM too large"))
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError:
        raise StanzaRefused(
            StanzaError("not-acceptable", "modify", "XHTML-IM is not well-formed XML")
        ) from None
    if root.getroottree().docinfo.internalDTD is not None:
        # RFC 6120 §11.1: an XML stream never carries a DTD, so neither does its content.
        raise StanzaRefused(StanzaError("not-acceptable", "modify", "DTD in XHTML-IM content"))
    if root.tag == f"{{{XHTML_IM_NS}}}html":
        body = root.find(f"{{{XHTML_NS}}}body")
    elif root.tag == f"{{{XHTML_NS}}}body":
        body = root
    else:
        body = None
    if body is None:
        raise StanzaRefused(
            StanzaError("not-acceptable", "modify", "no XHTML body in the XHTML-IM content")
        )
    return _convert(body, xml_mode=True)
