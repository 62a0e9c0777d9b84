"""MSRP message model (RFC 4975 §7, ABNF §9), shared by the parser and the serializer.

A request or response is a frozen, slotted dataclass validated in its constructor, so a
value that exists can be serialised, and ``parse_message(serialize(m)) == m`` holds for
every value the model accepts (h11's symmetric design). Invalid construction raises
:class:`~.errors.LocalMsrpError`; the parser converts that into a 400
:class:`~.errors.RemoteMsrpError` when the values came from the wire.

Wire layout produced by :func:`serialize` (§7.1)::

    MSRP <tid> <METHOD>            | MSRP <tid> <code> [comment]
    To-Path: ...                   (always first, §9)
    From-Path: ...                 (always second, §9)
    Message-ID / Byte-Range / Success-Report / Failure-Report / Status
    extension and other MIME headers, in the order given
    Content-Type: ...              (last header when there is a body, §7.1)
    <blank line> <body> CRLF
    -------<tid><flag>             (end-line: '$' last chunk, '+' more, '#' aborted)

A bodiless request (§7.1) has no Content-Type and its end-line follows the headers directly.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass

from .errors import LocalMsrpError
from .uri import MAX_PATH_URIS, MsrpUri

__all__ = [
    "EndFlag",
    "FailureReport",
    "ByteRange",
    "StatusHeader",
    "MsrpRequest",
    "MsrpResponse",
    "MsrpMessage",
    "serialize",
    "end_line_in_body",
    "media_type_of",
    "media_type_matches",
    "is_ident",
    "KNOWN_HEADERS",
    "END_LINE_PREFIX",
]

#: The seven hyphens that start every end-line (§7.1).
END_LINE_PREFIX = b"-------"

#: Distinct Content-Type values whose validity is remembered. A session uses a handful
#: (text/plain, isComposing, message/cpim); the bound keeps values chosen by peers from
#: growing memory (LRU).
MEDIA_TYPE_CACHE_SIZE = 512
#: Longest Content-Type value remembered (``text/plain;charset=UTF-8`` has 24 characters);
#: longer ones are checked every time, so the cache holds at most 512 * 128 characters.
MEDIA_TYPE_CACHE_MAX_CHARS = 128

#: Header names the model stores in dedicated fields, lower-cased -> canonical spelling.
KNOWN_HEADERS: dict[str, str] = {
    "to-path": "To-Path",
    "from-path": "From-Path",
    "message-id": "Message-ID",
    "success-report": "Success-Report",
    "failure-report": "Failure-Report",
    "byte-range": "Byte-Range",
    "status": "Status",
    "content-type": "Content-Type",
}

# §9: ident = ALPHANUM 3*31ident-char ; ident-char = ALPHANUM / "." / "-" / "+" / "%" / "="
_IDENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-+%=]{3,31}")
# §9: other-method = 1*UPALPHA (method names are case-sensitive)
_METHOD_RE = re.compile(r"[A-Z]+")
# §9: hname = ALPHA *token-char (RFC 3261 token characters, no colon)
_HNAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9\-.!%*_+`'~]*")
# RFC 2045 token characters, for media types and parameter names.
_MT_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_MEDIA_TYPE_RE = re.compile(
    rf"(?P<type>{_MT_TOKEN})/(?P<sub>{_MT_TOKEN})"
    rf"(?:[ \t]*;[ \t]*{_MT_TOKEN}=(?:{_MT_TOKEN}|\"(?:[^\"\\\r\n]|\\.)*\"))*"
)
# utf8text without CR, LF or NUL (header values and comments never span lines).
_TEXT_FORBIDDEN_RE = re.compile(r"[\r\n\x00]")


def is_ident(value: str) -> bool:
    """True if ``value`` is an RFC 4975 §9 ``ident`` (transaction ids and Message-IDs)."""
    return _IDENT_RE.fullmatch(value) is not None


def media_type_of(content_type: str) -> str:
    """``type/subtype`` of a Content-Type value, lower-cased, parameters dropped."""
    return content_type.split(";", 1)[0].strip().lower()


def media_type_matches(pattern: str, media_type: str) -> bool:
    """Whether an accept-types entry (``*``, ``type/*`` or ``type/subtype``) covers a type."""
    pattern = media_type_of(pattern)
    media_type = media_type_of(media_type)
    if pattern == "*" or pattern == "*/*":
        return True
    if pattern.endswith("/*"):
        return media_type.split("/", 1)[0] == pattern[:-2]
    return pattern == media_type


class EndFlag(enum.Enum):
    """The continuation flag of the end-line (§7.1)."""

    COMPLETE = "$"
    """Last chunk of the message (always used on responses and bodiless requests)."""
    CONTINUED = "+"
    """More chunks of this message follow."""
    ABORTED = "#"
    """The sender abandons the message; the receiver discards what it has."""


class FailureReport(enum.Enum):
    """Values of the Failure-Report header (§7.1.4, §9). Absent means YES."""

    YES = "yes"
    """Responses are wanted; the sender runs the 30 s transaction timer (§7.3)."""
    NO = "no"
    """No response and no failure REPORT at all (§7.1.4)."""
    PARTIAL = "partial"
    """Only negative responses/REPORTs are sent (§7.1.4)."""


@dataclass(frozen=True, slots=True)
class ByteRange:
    """``Byte-Range: start-end/total`` (§7.1.1), 1-based and inclusive; None stands for ``*``."""

    start: int
    end: int | None
    total: int | None

    def __post_init__(self) -> None:
        if self.start < 1:
            raise LocalMsrpError(f"Byte-Range start must be >= 1, got {self.start}")
        if self.end is not None and self.end < self.start - 1:
            # end == start - 1 is the empty range, e.g. 1-0/0 for an empty message (§7.1.1)
            raise LocalMsrpError(f"Byte-Range end {self.end} precedes start {self.start}")
        if self.total is not None:
            if self.start - 1 > self.total:
                raise LocalMsrpError("Byte-Range starts beyond the total size")
            if self.end is not None and self.end > self.total:
                raise LocalMsrpError("Byte-Range ends beyond the total size")

    def __str__(self) -> str:
        end = "*" if self.end is None else str(self.end)
        total = "*" if self.total is None else str(self.total)
        return f"{self.start}-{end}/{total}"


@dataclass(frozen=True, slots=True)
class StatusHeader:
    """``Status: <namespace> <code> [reason]`` carried by REPORT (§7.1.2, §9)."""

    code: int
    reason: str | None = None
    namespace: int = 0
    """Always 000 for the codes of RFC 4975 (§9)."""

    def __post_init__(self) -> None:
        if not 0 <= self.namespace <= 999 or not 0 <= self.code <= 999:
            raise LocalMsrpError("Status namespace and code are three digits")
        _check_text(self.reason, "Status reason")

    def __str__(self) -> str:
        base = f"{self.namespace:03d} {self.code:03d}"
        return base if self.reason is None else f"{base} {self.reason}"


def _check_text(value: str | None, what: str) -> None:
    if value is None:
        return
    if not value or value != value.strip(" \t") or _TEXT_FORBIDDEN_RE.search(value):
        raise LocalMsrpError(f"invalid {what}: {value!r}")


def _check_path(path: tuple[MsrpUri, ...], what: str) -> None:
    if not path:
        raise LocalMsrpError(f"{what} needs at least one URI (§9)")
    if len(path) > MAX_PATH_URIS:
        raise LocalMsrpError(f"{what} has more than {MAX_PATH_URIS} URIs")


def _check_headers(headers: tuple[tuple[str, str], ...]) -> None:
    for name, value in headers:
        if not _HNAME_RE.fullmatch(name):
            raise LocalMsrpError(f"invalid header name {name!r}")
        if name.lower() in KNOWN_HEADERS:
            raise LocalMsrpError(f"{name} has its own field; do not pass it in headers")
        if value and (value != value.strip(" \t") or _TEXT_FORBIDDEN_RE.search(value)):
            raise LocalMsrpError(f"invalid value for header {name}: {value!r}")


def end_line_in_body(body: bytes, transaction_id: str) -> bool:
    """True if a receiver would find the end-line inside ``body`` (§7.1).

    The receiver looks for ``CRLF -------<tid>`` followed by a flag and CRLF; the CRLF ending
    the data and the real end-line follow the body, so matches may run into them.
    """
    marker = b"\r\n" + END_LINE_PREFIX + transaction_id.encode("ascii")
    width = len(marker) + 3
    # Matches followed by three octets of the body itself.
    i = body.find(marker)
    while 0 <= i <= len(body) - width:
        after = body[i + len(marker) : i + width]
        if after[0:1] in _FLAG_OCTETS and after[1:] == b"\r\n":
            return True
        i = body.find(marker, i + 1)
    # Matches that run into what follows the body: only the last octets can start one, so
    # only they are copied (never the whole body).
    start = max(0, len(body) - width + 1)
    tail = body[start:] + marker + b"$\r\n"
    limit = len(body) - start
    j = tail.find(marker)
    while 0 <= j < limit:
        after = tail[j + len(marker) : j + width]
        if len(after) == 3 and after[0:1] in _FLAG_OCTETS and after[1:] == b"\r\n":
            return True
        j = tail.find(marker, j + 1)
    return False


_FLAG_OCTETS = (b"$", b"+", b"#")


def valid_content_type(value: str) -> bool:
    """Whether ``value`` is a media type with parameters (RFC 2045 §5.1 tokens)."""
    if len(value) > MEDIA_TYPE_CACHE_MAX_CHARS:
        return _check_media_type(value)
    return _cached_media_type(value)


def _check_media_type(value: str) -> bool:
    return _MEDIA_TYPE_RE.fullmatch(value) is not None


_cached_media_type = functools.lru_cache(maxsize=MEDIA_TYPE_CACHE_SIZE)(_check_media_type)


@dataclass(frozen=True, slots=True)
class MsrpRequest:
    """An MSRP request: SEND, REPORT or any other method name (§7.1)."""

    transaction_id: str
    """The tid of the start and end lines; >= 64 random bits when we generate it (§7.1)."""
    method: str
    to_path: tuple[MsrpUri, ...]
    from_path: tuple[MsrpUri, ...]
    message_id: str | None = None
    success_report: bool | None = None
    """None when the header is absent, which means ``no`` (§7.1.2)."""
    failure_report: FailureReport | None = None
    """None when the header is absent, which means ``yes`` (§7.1.4)."""
    byte_range: ByteRange | None = None
    status: StatusHeader | None = None
    headers: tuple[tuple[str, str], ...] = ()
    """Extension and other MIME headers (Content-ID, ...), in wire order."""
    content_type: str | None = None
    body: bytes | None = None
    """None for a bodiless request; ``b""`` is an empty body with a Content-Type."""
    end_flag: EndFlag = EndFlag.COMPLETE

    def __post_init__(self) -> None:
        if not is_ident(self.transaction_id):
            raise LocalMsrpError(f"invalid transaction id {self.transaction_id!r} (§9 ident)")
        if not _METHOD_RE.fullmatch(self.method):
            raise LocalMsrpError(f"invalid method {self.method!r} (§9: 1*UPALPHA)")
        _check_path(self.to_path, "To-Path")
        _check_path(self.from_path, "From-Path")
        if self.message_id is not None and not is_ident(self.message_id):
            raise LocalMsrpError(f"invalid Message-ID {self.message_id!r} (§9 ident)")
        _check_headers(self.headers)
        if (self.body is None) != (self.content_type is None):
            # §7.1: a body needs Content-Type; a bodiless request has no Content-Type.
            raise LocalMsrpError("Content-Type is present exactly when there is a body")
        if self.content_type is not None and not valid_content_type(self.content_type):
            raise LocalMsrpError(f"invalid Content-Type {self.content_type!r}")
        if self.body is not None and end_line_in_body(self.body, self.transaction_id):
            raise LocalMsrpError("the end-line occurs in the body; choose another tid (§7.1)")
        if self.method == "SEND" and self.message_id is None:
            raise LocalMsrpError("SEND requires Message-ID (§7.1.1)")
        if self.method == "REPORT":
            # §7.1.2: REPORT carries Message-ID, Byte-Range and Status, never report headers.
            if self.message_id is None or self.byte_range is None or self.status is None:
                raise LocalMsrpError("REPORT requires Message-ID, Byte-Range and Status")
            if self.success_report is not None or self.failure_report is not None:
                raise LocalMsrpError("REPORT must not carry Success-/Failure-Report (§7.1.2)")

    @property
    def wants_success_report(self) -> bool:
        """Effective Success-Report (absent = no, §7.1.2)."""
        return self.success_report is True

    @property
    def failure_mode(self) -> FailureReport:
        """Effective Failure-Report (absent = yes, §7.1.4)."""
        return self.failure_report or FailureReport.YES

    @property
    def media_type(self) -> str | None:
        """``type/subtype`` of the Content-Type, lower-cased, or None when bodiless."""
        return None if self.content_type is None else media_type_of(self.content_type)


@dataclass(frozen=True, slots=True)
class MsrpResponse:
    """An MSRP response (§7.2): a status code for one request, never with a body."""

    transaction_id: str
    status: int
    comment: str | None
    to_path: tuple[MsrpUri, ...]
    from_path: tuple[MsrpUri, ...]
    headers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not is_ident(self.transaction_id):
            raise LocalMsrpError(f"invalid transaction id {self.transaction_id!r} (§9 ident)")
        if not 0 <= self.status <= 999:
            raise LocalMsrpError("status-code is three digits (§9)")
        _check_text(self.comment, "response comment")
        _check_path(self.to_path, "To-Path")
        _check_path(self.from_path, "From-Path")
        _check_headers(self.headers)


MsrpMessage = MsrpRequest | MsrpResponse


def _path_text(path: tuple[MsrpUri, ...]) -> str:
    return " ".join(str(uri) for uri in path)


def serialize(message: MsrpMessage) -> bytes:
    """Encode a request or response exactly as §7.1/§7.2 and the §9 ABNF lay it out."""
    tid = message.transaction_id
    lines: list[str] = []
    if isinstance(message, MsrpResponse):
        start = f"MSRP {tid} {message.status:03d}"
        lines.append(start if message.comment is None else f"{start} {message.comment}")
    else:
        lines.append(f"MSRP {tid} {message.method}")
    lines.append(f"To-Path: {_path_text(message.to_path)}")
    lines.append(f"From-Path: {_path_text(message.from_path)}")
    body: bytes | None = None
    flag = EndFlag.COMPLETE
    if isinstance(message, MsrpRequest):
        if message.message_id is not None:
            lines.append(f"Message-ID: {message.message_id}")
        # Byte-Range before the report headers, as in the RFC's own examples (§11).
        if message.byte_range is not None:
            lines.append(f"Byte-Range: {message.byte_range}")
        if message.success_report is not None:
            lines.append(f"Success-Report: {'yes' if message.success_report else 'no'}")
        if message.failure_report is not None:
            lines.append(f"Failure-Report: {message.failure_report.value}")
        if message.status is not None:
            lines.append(f"Status: {message.status}")
        body = message.body
        flag = message.end_flag
    lines.extend(f"{name}: {value}" for name, value in message.headers)
    if isinstance(message, MsrpRequest) and message.content_type is not None:
        lines.append(f"Content-Type: {message.content_type}")
    head = ("\r\n".join(lines) + "\r\n").encode("utf-8")
    end_line = END_LINE_PREFIX + tid.encode("ascii") + flag.value.encode("ascii") + b"\r\n"
    if body is None:
        return head + end_line
    return head + b"\r\n" + body + b"\r\n" + end_line
