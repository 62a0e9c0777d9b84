"""CPIM message format, RFC 3862 (``message/cpim``).

Theory of operation
-------------------
A ``message/cpim`` body wraps one MIME object with end-to-end message headers. The RFC
7702 groupchat mapping sends every MSRP SEND to and from a conference as
``message/cpim`` (RFC 7702 §5.5 Table 4, §6.3 Table 5: CPIM From/To carry the XMPP
from/to). The layout (RFC 3862 §2)::

    From: MR SANDERS <im:piglet@100akerwood.com>      message headers (§3, §4)
    To: <im:eeyore@100akerwood.com>
    DateTime: 2000-12-13T13:40:00-08:00
    Subject:;lang=fr beau temps prevu pour aujourd'hui
    NS: MyFeatures <mid:MessageFeatures@id.foo.com>
    MyFeatures.WackyMessageOption: Use-silly-font
                                                      blank line
    Content-Type: text/plain; charset=utf-8           encapsulated MIME headers
                                                      blank line
    body bytes

Message headers follow §3.1: ``Name ":" *(";" Parameter) SP value``, UTF-8, one per
line (no folding), with the escapes of §3.2 (``\\u`` + 4 hex digits, ``\\b \\t \\n \\r
\\" \\' \\\\``). The serializer escapes every backslash and control character, so any
text survives; the parser decodes those escapes and keeps a backslash that starts no
escape as it is. Names of the standard headers (§4) are matched without regard to case
when parsing (liberal); they are written in the RFC's spelling. The encapsulated MIME
headers are ordinary RFC 2045 headers (case-insensitive names, folding allowed).

Lines end in CRLF (§3.1); a bare LF is accepted. Limits (:data:`MAX_CPIM_SIZE`,
:data:`MAX_CPIM_HEADERS`, :data:`MAX_CPIM_LINE`) are checked before any decoding.
Anything unreadable is a :class:`RemoteCpimError`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from sipxmpp.mapping.model import LocalMappingError, MappingError, MappingRefused
from sipxmpp.mapping.pidf import is_rfc3339

__all__ = [
    "CPIM_MIME_TYPE",
    "MAX_CPIM_SIZE",
    "MAX_CPIM_HEADERS",
    "MAX_CPIM_LINE",
    "DEFAULT_CONTENT_TYPE",
    "CORE_HEADERS",
    "CpimError",
    "LocalCpimError",
    "RemoteCpimError",
    "CpimAddress",
    "CpimSubject",
    "CpimNamespace",
    "CpimHeader",
    "CpimMessage",
    "parse_cpim",
    "serialize_cpim",
    "unsupported_required",
]

CPIM_MIME_TYPE: Final = "message/cpim"
#: Default largest body, in bytes. RFC 7573 §8 asks the MSRP maximum to stay within the
#: XMPP stanza limit, which RFC 6120 §13.12 puts at no less than 10,000 bytes; 64 KiB is
#: a common server setting. The runtime passes its configured MSRP max-size instead.
MAX_CPIM_SIZE: Final = 65_536
#: Most message + MIME header lines. RFC 3862's own example has nine; 64 leaves room for
#: extensions while bounding the work one message can cause.
MAX_CPIM_HEADERS: Final = 64
#: Longest header line, in bytes (a URI plus a display name fits many times over).
MAX_CPIM_LINE: Final = 4096
#: RFC 2045 §5.2: the type of a MIME entity without Content-Type.
DEFAULT_CONTENT_TYPE: Final = "text/plain; charset=us-ascii"
#: The headers RFC 3862 §4 defines (the only ones this codec "understands" for Require).
CORE_HEADERS: Final = frozenset({"From", "To", "cc", "DateTime", "Subject", "NS", "Require"})


class CpimError(MappingError):
    """Base class of the errors of this codec; ``status_hint`` is the answer to use."""

    status_hint: int = 400


class LocalCpimError(CpimError, LocalMappingError):
    """We tried to build a message RFC 3862 does not allow."""

    status_hint = 500


class RemoteCpimError(CpimError, MappingRefused):
    """The peer's body is not a CPIM message we can read (MSRP and SIP share 400/413)."""

    def __init__(self, detail: str, status: int = 400, reason: str = "Bad Request") -> None:
        MappingRefused.__init__(self, status, reason, detail)
        self.status_hint = status

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.detail!r}, {self.status!r}, {self.reason!r})"


# RFC 3862 §3.1: NAMECHAR = %x21 / %x23-27 / %x2a-2b / %x2d / %x5e-60 / %x7c / %x7e /
# ALPHA / DIGIT; TOKENCHAR = NAMECHAR / ".".
_NAMECHARS: Final = r"!#-'*+\-^-`|~A-Za-z0-9"
_NAME_RE: Final = re.compile(f"^[{_NAMECHARS}]+$")
_HEADER_NAME_RE: Final = re.compile(f"^(?:[{_NAMECHARS}]+\\.)?[{_NAMECHARS}]+$")
_TOKEN_RE: Final = re.compile(f"^[{_NAMECHARS}.]+$")
_MIME_NAME_RE: Final = re.compile(r"^[!#$%&'*+\-.^_`|~A-Za-z0-9]+$")
_ESCAPES: Final = {"b": "\b", "t": "\t", "n": "\n", "r": "\r", '"': '"', "'": "'", "\\": "\\"}
_ESCAPE_OUT: Final = {"\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(text: str, *, quote: bool = False) -> str:
    """RFC 3862 §3.2: backslash, controls (and '"' inside a String) as escapes."""
    out: list[str] = []
    for c in text:
        if c in _ESCAPE_OUT:
            out.append(_ESCAPE_OUT[c])
        elif quote and c == '"':
            out.append('\\"')
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        elif 0xD800 <= ord(c) <= 0xDFFF:
            raise LocalCpimError(f"lone surrogate in header text: {text!r}")
        else:
            out.append(c)
    return "".join(out)


def _unescape(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                i += 2
                continue
            hexpart = text[i + 2 : i + 6]
            if (
                nxt == "u"
                and len(hexpart) == 4
                and all(h in "0123456789abcdefABCDEF" for h in hexpart)
            ):
                code = int(hexpart, 16)
                if not 0xD800 <= code <= 0xDFFF:
                    out.append(chr(code))
                    i += 6
                    continue
        out.append(c)
        i += 1
    return "".join(out)


def _check_header_text(value: str, what: str) -> None:
    if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise LocalCpimError(f"{what} contains a lone surrogate")


def _check_uri(uri: str, what: str) -> None:
    if not uri or any(c.isspace() or c in "<>" or ord(c) < 0x20 for c in uri):
        raise LocalCpimError(f"{what} URI must be non-empty without spaces or <>: {uri!r}")
    _check_header_text(uri, what)


@dataclass(frozen=True, slots=True)
class CpimAddress:
    """``[Formal-name] "<" URI ">"`` (RFC 3862 §4.1-4.3: From, To, cc)."""

    uri: str
    display_name: str | None = None

    def __post_init__(self) -> None:
        _check_uri(self.uri, "address")
        if self.display_name is not None:
            if not self.display_name:
                raise LocalCpimError("an empty display name is written as None")
            _check_header_text(self.display_name, "display name")

    def serialize(self) -> str:
        if self.display_name is None:
            return f"<{self.uri}>"
        words = self.display_name.split(" ")
        if all(_TOKEN_RE.match(w) for w in words):
            return f"{self.display_name} <{self.uri}>"  # 1*( Token SP )
        return f'"{_escape(self.display_name, quote=True)}" <{self.uri}>'


@dataclass(frozen=True, slots=True)
class CpimSubject:
    """``Subject:`` with its optional ``lang`` parameter (RFC 3862 §4.5)."""

    text: str
    lang: str | None = None

    def __post_init__(self) -> None:
        _check_header_text(self.text, "subject")
        if self.lang is not None and not _TOKEN_RE.match(self.lang):
            raise LocalCpimError(f"subject lang is not a token: {self.lang!r}")


@dataclass(frozen=True, slots=True)
class CpimNamespace:
    """``NS: [prefix] <URI>`` (RFC 3862 §4.6); no prefix = the default namespace."""

    uri: str
    prefix: str | None = None

    def __post_init__(self) -> None:
        _check_uri(self.uri, "NS")
        if self.prefix is not None and not _NAME_RE.match(self.prefix):
            raise LocalCpimError(f"NS prefix is not a Name: {self.prefix!r}")


@dataclass(frozen=True, slots=True)
class CpimHeader:
    """Any other message header, e.g. ``MyFeatures.VitalMessageOption: ...`` (§3.1)."""

    name: str
    value: str
    #: ``;name=value`` parameters (value None for a bare ``;name``), in order.
    params: tuple[tuple[str, str | None], ...] = ()

    def __post_init__(self) -> None:
        if not _HEADER_NAME_RE.match(self.name):
            raise LocalCpimError(f"not a CPIM header name: {self.name!r}")
        if _core_name(self.name) is not None:
            raise LocalCpimError(f"{self.name} is a standard header: use its CpimMessage field")
        _check_header_text(self.value, self.name)
        for name, value in self.params:
            if not _NAME_RE.match(name):
                raise LocalCpimError(f"not a parameter name: {name!r}")
            if value is not None:
                _check_header_text(value, f"parameter {name}")


@dataclass(frozen=True, slots=True)
class CpimMessage:
    """A ``message/cpim`` body (RFC 3862 §2)."""

    from_: CpimAddress | None = None
    to: tuple[CpimAddress, ...] = ()
    cc: tuple[CpimAddress, ...] = ()
    #: ``DateTime``: RFC 3339 (§4.4).
    date_time: str | None = None
    subjects: tuple[CpimSubject, ...] = ()
    namespaces: tuple[CpimNamespace, ...] = ()
    #: ``Require``: header names the recipient must understand (§4.7).
    require: tuple[str, ...] = ()
    extensions: tuple[CpimHeader, ...] = ()
    #: The encapsulated object's Content-Type (RFC 2045).
    content_type: str = "text/plain; charset=utf-8"
    #: Its other MIME headers (Content-ID, Content-Disposition, ...), in order.
    content_headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    def __post_init__(self) -> None:
        if self.date_time is not None and not is_rfc3339(self.date_time):
            raise LocalCpimError(f"DateTime is not RFC 3339: {self.date_time!r}")
        for name in self.require:
            if not _HEADER_NAME_RE.match(name):
                raise LocalCpimError(f"Require lists a non-header-name: {name!r}")
        _check_mime_value(self.content_type, "Content-Type")
        if not self.content_type:
            raise LocalCpimError("Content-Type cannot be empty")
        for name, value in self.content_headers:
            if not _MIME_NAME_RE.match(name) or name.lower() == "content-type":
                raise LocalCpimError(f"not a usable MIME header name: {name!r}")
            _check_mime_value(value, name)
        lines = 1 + len(self.to) + len(self.cc) + len(self.subjects) + len(self.namespaces)
        lines += len(self.extensions) + len(self.content_headers) + 4
        if lines > MAX_CPIM_HEADERS:
            raise LocalCpimError(f"more than {MAX_CPIM_HEADERS} header lines")


def _check_mime_value(value: str, what: str) -> None:
    if value != value.strip() or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise LocalCpimError(f"{what} must be one line without surrounding blanks: {value!r}")
    _check_header_text(value, what)


_CORE_BY_LOWER: Final = {name.lower(): name for name in CORE_HEADERS}


def _core_name(name: str) -> str | None:
    return _CORE_BY_LOWER.get(name.lower())


# --------------------------------------------------------------------------------------
# Serializing.


def _header(name: str, value: str, params: Iterable[tuple[str, str | None]] = ()) -> str:
    text = name + ":"
    for pname, pvalue in params:
        if pvalue is None:
            text += f";{pname}"
        elif _TOKEN_RE.match(pvalue):
            text += f";{pname}={pvalue}"
        else:
            text += f';{pname}="{_escape(pvalue, quote=True)}"'
    return f"{text} {value}"


def serialize_cpim(message: CpimMessage) -> bytes:
    """The ``message/cpim`` body for ``message`` (CRLF line ends, UTF-8 headers)."""
    lines: list[str] = []
    if message.from_ is not None:
        lines.append(_header("From", message.from_.serialize()))
    lines.extend(_header("To", a.serialize()) for a in message.to)
    lines.extend(_header("cc", a.serialize()) for a in message.cc)
    if message.date_time is not None:
        lines.append(_header("DateTime", message.date_time))
    for subject in message.subjects:
        params = (("lang", subject.lang),) if subject.lang is not None else ()
        lines.append(_header("Subject", _escape(subject.text), params))
    for ns in message.namespaces:
        prefix = f"{ns.prefix} " if ns.prefix is not None else ""
        lines.append(_header("NS", f"{prefix}<{ns.uri}>"))
    if message.require:
        lines.append(_header("Require", ",".join(message.require)))
    for ext in message.extensions:
        lines.append(_header(ext.name, _escape(ext.value), ext.params))
    lines.append("")
    lines.append(f"Content-Type: {message.content_type}")
    lines.extend(f"{name}: {value}" for name, value in message.content_headers)
    lines.append("")
    head = "\r\n".join(lines) + "\r\n"
    return head.encode("utf-8") + message.body


# --------------------------------------------------------------------------------------
# Parsing.


def _split_lines(data: bytes, start: int) -> tuple[list[bytes], int]:
    """Lines up to the first empty one; returns them and the offset after the blank line."""
    lines: list[bytes] = []
    pos = start
    while True:
        end = data.find(b"\n", pos)
        if end == -1:
            raise RemoteCpimError("header section not terminated by an empty line")
        line = data[pos:end]
        if line.endswith(b"\r"):
            line = line[:-1]
        pos = end + 1
        if not line:
            return lines, pos
        if len(line) > MAX_CPIM_LINE:
            raise RemoteCpimError(
                f"header line over {MAX_CPIM_LINE} bytes", 413, "Request Entity Too Large"
            )
        lines.append(line)
        if len(lines) > MAX_CPIM_HEADERS:
            raise RemoteCpimError(
                f"more than {MAX_CPIM_HEADERS} header lines", 413, "Request Entity Too Large"
            )


def _decode(line: bytes) -> str:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise RemoteCpimError("header line is not UTF-8 (RFC 3862 §3)") from None
    if any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in text):
        raise RemoteCpimError("control character in a header line")
    return text


def _parse_string(text: str, pos: int) -> tuple[str, int]:
    """A DQUOTE String starting at ``text[pos]``; returns its value and the next index."""
    i = pos + 1
    raw: list[str] = []
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            raw.append(text[i : i + 2])
            i += 2
            continue
        if c == '"':
            return _unescape("".join(raw)), i + 1
        raw.append(c)
        i += 1
    raise RemoteCpimError("unterminated quoted string")


def _parse_line(text: str) -> tuple[str, tuple[tuple[str, str | None], ...], str]:
    """``Name ":" *(";" Parameter) SP value`` -> (name, params, raw value)."""
    colon = text.find(":")
    if colon <= 0:
        raise RemoteCpimError(f"not a header line: {text[:80]!r}")
    name = text[:colon]
    if not _HEADER_NAME_RE.match(name):
        raise RemoteCpimError(f"not a CPIM header name: {name[:80]!r}")
    pos = colon + 1
    params: list[tuple[str, str | None]] = []
    while pos < len(text) and text[pos] == ";":
        pos += 1
        start = pos
        while pos < len(text) and text[pos] not in "=; ":
            pos += 1
        pname = text[start:pos]
        if not _NAME_RE.match(pname):
            raise RemoteCpimError(f"bad parameter name in {name} header")
        pvalue: str | None = None
        if pos < len(text) and text[pos] == "=":
            pos += 1
            if pos < len(text) and text[pos] == '"':
                pvalue, pos = _parse_string(text, pos)
            else:
                start = pos
                while pos < len(text) and text[pos] not in "; ":
                    pos += 1
                pvalue = text[start:pos]
                if not _TOKEN_RE.match(pvalue):
                    raise RemoteCpimError(f"bad parameter value in {name} header")
        params.append((pname, pvalue))
    if pos < len(text) and text[pos] == " ":
        pos += 1  # the one SP of §3.1 (tolerated when missing)
    return name, tuple(params), text[pos:]


def _parse_address(value: str, what: str) -> CpimAddress:
    value = value.strip()
    lt = value.rfind("<")
    if lt == -1 or not value.endswith(">"):
        raise RemoteCpimError(f"{what} is not [name] <URI>: {value[:80]!r}")
    uri = value[lt + 1 : -1].strip()
    name_part = value[:lt].strip()
    display: str | None
    if name_part.startswith('"'):
        display, end = _parse_string(name_part, 0)
        if name_part[end:].strip():
            raise RemoteCpimError(f"{what}: text after the quoted name")
    else:
        display = name_part
    try:
        return CpimAddress(uri, display or None)
    except LocalCpimError as exc:
        raise RemoteCpimError(f"{what}: {exc}") from None


def _parse_ns(value: str) -> CpimNamespace:
    value = value.strip()
    lt = value.find("<")
    if lt == -1 or not value.endswith(">"):
        raise RemoteCpimError(f"NS is not [prefix] <URI>: {value[:80]!r}")
    prefix = value[:lt].strip() or None
    try:
        return CpimNamespace(value[lt + 1 : -1].strip(), prefix)
    except LocalCpimError as exc:
        raise RemoteCpimError(f"NS: {exc}") from None


def _mime_headers(lines: list[bytes]) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    for raw in lines:
        text = _decode(raw)
        if text[:1] in (" ", "\t"):  # RFC 5322 §2.2.3 folding
            if not headers:
                raise RemoteCpimError("continuation line before any MIME header")
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {text.strip()}")
            continue
        name, sep, value = text.partition(":")
        name = name.strip()
        if not sep or not _MIME_NAME_RE.match(name):
            raise RemoteCpimError(f"not a MIME header line: {text[:80]!r}")
        headers.append((name, value.strip()))
    return headers


def parse_cpim(data: bytes, *, max_size: int = MAX_CPIM_SIZE) -> CpimMessage:
    """Parse a ``message/cpim`` body.

    Raises :class:`RemoteCpimError` for anything unreadable (413 over ``max_size``), and
    no other exception for any ``bytes`` input. A missing encapsulated Content-Type is
    read as the MIME default (RFC 2045 §5.2); an unusable DateTime is dropped.
    """
    data = bytes(data)
    if len(data) > max_size:
        raise RemoteCpimError(
            f"message/cpim body is {len(data)} bytes, over the {max_size}-byte limit",
            413,
            "Request Entity Too Large",
        )
    message_lines, pos = _split_lines(data, 0)
    mime_lines, body_at = _split_lines(data, pos)
    from_: CpimAddress | None = None
    to: list[CpimAddress] = []
    cc: list[CpimAddress] = []
    date_time: str | None = None
    subjects: list[CpimSubject] = []
    namespaces: list[CpimNamespace] = []
    require: list[str] = []
    extensions: list[CpimHeader] = []
    for raw in message_lines:
        name, params, value = _parse_line(_decode(raw))
        core = _core_name(name)
        if core == "From":
            if from_ is not None:
                raise RemoteCpimError("two From headers (RFC 3862 §4.1)")
            from_ = _parse_address(value, "From")
        elif core == "To":
            to.append(_parse_address(value, "To"))
        elif core == "cc":
            cc.append(_parse_address(value, "cc"))
        elif core == "DateTime":
            candidate = value.strip()
            date_time = candidate if is_rfc3339(candidate) else None
        elif core == "Subject":
            lang = next((v for k, v in params if k.lower() == "lang"), None)
            try:
                subjects.append(CpimSubject(_unescape(value), lang))
            except LocalCpimError as exc:
                raise RemoteCpimError(f"Subject: {exc}") from None
        elif core == "NS":
            namespaces.append(_parse_ns(value))
        elif core == "Require":
            names = [n.strip() for n in value.split(",") if n.strip()]
            if any(not _HEADER_NAME_RE.match(n) for n in names):
                raise RemoteCpimError("Require lists something that is not a header name")
            require.extend(names)
        else:
            try:
                extensions.append(CpimHeader(name, _unescape(value), params))
            except LocalCpimError as exc:
                raise RemoteCpimError(str(exc)) from None
    headers = _mime_headers(mime_lines)
    content_type = DEFAULT_CONTENT_TYPE
    others: list[tuple[str, str]] = []
    seen_type = False
    for name, value in headers:
        if name.lower() == "content-type":
            if seen_type:
                raise RemoteCpimError("two Content-Type headers in the encapsulated object")
            seen_type = True
            content_type = value
        else:
            others.append((name, value))
    try:
        return CpimMessage(
            from_=from_,
            to=tuple(to),
            cc=tuple(cc),
            date_time=date_time,
            subjects=tuple(subjects),
            namespaces=tuple(namespaces),
            require=tuple(require),
            extensions=tuple(extensions),
            content_type=content_type or DEFAULT_CONTENT_TYPE,
            content_headers=tuple(others),
            body=data[body_at:],
        )
    except LocalCpimError as exc:
        raise RemoteCpimError(str(exc)) from None


def unsupported_required(
    message: CpimMessage, understood: Iterable[str] = CORE_HEADERS
) -> tuple[str, ...]:
    """The ``Require``d headers not in ``understood`` (RFC 3862 §4.7).

    A recipient that does not understand a required header must not act on the message
    as if it did; the caller refuses it (MSRP 415 / SIP 415 or 420) when this is non-empty.
    Standard header names compare without regard to case; extension names exactly.
    """
    known = {n.lower() if _core_name(n) else n for n in understood}
    return tuple(n for n in message.require if (n.lower() if _core_name(n) else n) not in known)
