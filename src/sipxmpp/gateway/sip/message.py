"""SIP message model (RFC 3261 §7), shared by the parser and the serializer.

Messages are frozen, slotted dataclasses. Header names are stored in their canonical
long form (compact forms such as ``v``/``i``/``l`` are expanded by the parser, RFC 3261
§7.3.3) and values are stored unfolded and stripped (§7.3.1), so that
``parse(serialize(m)) == m`` holds for every message the model can hold.

The same types are used for received and generated messages (h11's symmetric design).
Structured views of individual headers (URIs, Via, name-addr, CSeq) live in
:mod:`sipxmpp.gateway.sip.grammar`; this module only knows names, values and bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from .errors import LocalSipError, RemoteSipError

__all__ = [
    "Headers",
    "Request",
    "Response",
    "Message",
    "canonical_name",
    "split_header_values",
    "serialize",
    "wire_size",
    "REASON_PHRASES",
    "MULTI_VALUE_HEADERS",
]

SIP_VERSION = "SIP/2.0"

# RFC 3261 §7.3.3 and the IANA registry: compact form -> long form.
COMPACT_FORMS: dict[str, str] = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

# Canonical spelling of header names whose capitalisation is not plain title case.
_SPECIAL_CASE: dict[str, str] = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
    "mime-version": "MIME-Version",
    "p-asserted-identity": "P-Asserted-Identity",
    "p-preferred-identity": "P-Preferred-Identity",
    "rack": "RAck",
    "rseq": "RSeq",
    "sip-etag": "SIP-ETag",
    "sip-if-match": "SIP-If-Match",
    "imdn-record-route": "IMDN-Record-Route",
}

# Headers whose values are comma-separated lists (RFC 3261 §7.3.1): a header field line may
# carry several values, equivalent to several lines. Headers NOT listed here (e.g. the
# authentication headers, Date, Call-ID) contain commas as plain data.
MULTI_VALUE_HEADERS: frozenset[str] = frozenset(
    {
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Allow",
        "Allow-Events",
        "Alert-Info",
        "Call-Info",
        "Contact",
        "Content-Encoding",
        "Content-Language",
        "Error-Info",
        "In-Reply-To",
        "Proxy-Require",
        "Record-Route",
        "Require",
        "Route",
        "Supported",
        "Unsupported",
        "Via",
        "Warning",
        "Path",
        "Service-Route",
        "P-Asserted-Identity",
        "Privacy",
    }
)

REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}


#: Entries of the canonical-name cache. Header names come from peers, so the cache must
#: not grow without bound; a few hundred distinct names cover every registered header.
_CANONICAL_CACHE_SIZE = 1024
_canonical_cache: dict[str, str] = {}


def _compute_canonical(name: str) -> str:
    low = name.lower()
    if len(low) == 1 and low in COMPACT_FORMS:
        return COMPACT_FORMS[low]
    special = _SPECIAL_CASE.get(low)
    if special is not None:
        return special
    return "-".join(part[:1].upper() + part[1:] for part in low.split("-"))


def canonical_name(name: str) -> str:
    """Return the canonical long form of a header name (compact forms expanded)."""
    cached = _canonical_cache.get(name)
    if cached is not None:
        return cached
    canon = _compute_canonical(name)
    if len(_canonical_cache) < _CANONICAL_CACHE_SIZE:
        _canonical_cache[name] = canon
    return canon


def split_header_values(value: str, *, strict: bool = False) -> list[str]:
    """Split a comma-separated header value, honouring quoted strings and ``<...>``.

    RFC 3261 §7.3.1: commas inside a quoted-string or an angle-bracketed URI do not
    separate values. Leniently (the default) empty elements are dropped; with ``strict``
    an empty element (``a,,b``, a trailing comma) or an unbalanced quote or bracket raises
    :class:`RemoteSipError` (400), as RFC 4475 §3.1.2.1 requires of a parser.
    """
    out: list[str] = []
    start = 0
    in_quote = False
    in_angle = False
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if in_quote:
            if ch == "\\":
                i += 2
                continue
            if ch == '"':
                in_quote = False
        elif ch == '"':
            in_quote = True
        elif ch == "<":
            in_angle = True
        elif ch == ">":
            in_angle = False
        elif ch == "," and not in_angle:
            part = value[start:i].strip(" \t")
            if part:
                out.append(part)
            elif strict:
                raise _bad_list("empty list element", value)
            start = i + 1
        i += 1
    if strict and (in_quote or in_angle):
        raise _bad_list("unbalanced quote or angle bracket", value)
    part = value[start:].strip(" \t")
    if part:
        out.append(part)
    elif strict:
        raise _bad_list("empty list element", value)
    return out


def _bad_list(what: str, text: str) -> RemoteSipError:
    return RemoteSipError(f"{what}: {text[:200]!r}", status_hint=400)


@dataclass(frozen=True, slots=True, init=False)
class Headers:
    """An ordered multi-map of header fields.

    Names are canonical (see :func:`canonical_name`); lookups are case-insensitive and
    accept compact forms.
    """

    items: tuple[tuple[str, str], ...] = ()

    # Written out rather than generated (init=False): mypyc compiles this one, not the
    # dataclasses module's (sipxmpp.native, "Dataclasses").
    def __init__(self, items: tuple[tuple[str, str], ...] = ()) -> None:
        object.__setattr__(self, "items", items)

    @classmethod
    def of(cls, pairs: Iterable[tuple[str, str]]) -> Headers:
        return cls(tuple((canonical_name(k), v) for k, v in pairs))

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def get(self, name: str) -> str | None:
        """The value of the first field named ``name``, or None."""
        # The cache lookup inlined: this runs a dozen times per message.
        cname = _canonical_cache.get(name) or canonical_name(name)
        for k, v in self.items:
            if k == cname:
                return v
        return None

    def get_lines(self, name: str) -> list[str]:
        """Every field line named ``name``, unsplit, in order."""
        cname = canonical_name(name)
        return [v for k, v in self.items if k == cname]

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``: lines in order, comma lists split for list headers."""
        cname = canonical_name(name)
        lines = [v for k, v in self.items if k == cname]
        if cname not in MULTI_VALUE_HEADERS:
            return lines
        out: list[str] = []
        for line in lines:
            out.extend(split_header_values(line))
        return out

    def add(self, name: str, value: str) -> Headers:
        return Headers((*self.items, (canonical_name(name), value)))

    def prepend(self, name: str, value: str) -> Headers:
        return Headers(((canonical_name(name), value), *self.items))

    def remove(self, name: str) -> Headers:
        cname = canonical_name(name)
        return Headers(tuple(kv for kv in self.items if kv[0] != cname))

    def set(self, name: str, value: str) -> Headers:
        """Replace every field named ``name`` by one field (placed where the first was)."""
        cname = canonical_name(name)
        out: list[tuple[str, str]] = []
        placed = False
        for k, v in self.items:
            if k == cname:
                if not placed:
                    out.append((cname, value))
                    placed = True
            else:
                out.append((k, v))
        if not placed:
            out.append((cname, value))
        return Headers(tuple(out))

    def remove_first(self, name: str) -> Headers:
        """Remove the first value of a list header (e.g. the top Via), keeping the rest."""
        cname = canonical_name(name)
        out: list[tuple[str, str]] = []
        done = False
        for k, v in self.items:
            if not done and k == cname:
                done = True
                rest = split_header_values(v) if cname in MULTI_VALUE_HEADERS else []
                if len(rest) > 1:
                    out.append((k, ", ".join(rest[1:])))
                continue
            out.append((k, v))
        return Headers(tuple(out))


#: The empty header section, shared (a Headers is immutable).
_NO_HEADERS = Headers()


@dataclass(frozen=True, slots=True, init=False)
class Request:
    """A SIP request. ``uri`` is the Request-URI as text (parse it with ``grammar``)."""

    method: str
    uri: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = SIP_VERSION

    def __init__(
        self,
        method: str,
        uri: str,
        headers: Headers = _NO_HEADERS,
        body: bytes = b"",
        version: str = SIP_VERSION,
    ) -> None:
        object.__setattr__(self, "method", method)
        object.__setattr__(self, "uri", uri)
        object.__setattr__(self, "headers", headers)
        object.__setattr__(self, "body", body)
        object.__setattr__(self, "version", version)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def replace(self, **changes: object) -> Request:
        from dataclasses import replace as _replace

        return _replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True, init=False)
class Response:
    """A SIP response."""

    status: int
    reason: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = SIP_VERSION

    def __init__(
        self,
        status: int,
        reason: str,
        headers: Headers = _NO_HEADERS,
        body: bytes = b"",
        version: str = SIP_VERSION,
    ) -> None:
        object.__setattr__(self, "status", status)
        object.__setattr__(self, "reason", reason)
        object.__setattr__(self, "headers", headers)
        object.__setattr__(self, "body", body)
        object.__setattr__(self, "version", version)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def replace(self, **changes: object) -> Response:
        from dataclasses import replace as _replace

        return _replace(self, **changes)  # type: ignore[arg-type]


Message = Request | Response


def serialize(msg: Message) -> bytes:
    """Serialize a message to wire bytes.

    Content-Length is always written, from the actual body (RFC 3261 §20.14: it MUST be
    present on stream transports; we always send it). Any Content-Length field held in
    ``headers`` is replaced, so the framing can never disagree with the body.

    A CR or LF inside the start line or a header (which would inject header lines or
    break the framing), or text that cannot be encoded as UTF-8, raises LocalSipError.
    """
    if isinstance(msg, Request):
        start = f"{msg.method} {msg.uri} {msg.version}\r\n"
    else:
        start = f"{msg.version} {msg.status} {msg.reason}\r\n"
    parts = [start]
    for k, v in msg.headers.items:
        if k == "Content-Length":
            continue
        parts.append(f"{k}: {v}\r\n")
    parts.append(f"Content-Length: {len(msg.body)}\r\n\r\n")
    text = "".join(parts)
    # Every line break must be one of ours: one CRLF per line written above.
    lines = len(parts) + 1
    if text.count("\n") != lines or text.count("\r") != lines:
        raise LocalSipError("CR or LF inside the start line or a header field")
    try:
        return text.encode("utf-8") + msg.body
    except UnicodeEncodeError as exc:
        raise LocalSipError(f"header text is not encodable as UTF-8: {exc}") from exc


def wire_size(msg: Message) -> int:
    """The length of ``serialize(msg)``, without building the bytes (RFC 3261 §7)."""
    if isinstance(msg, Request):
        size = _utf8_len(msg.method) + _utf8_len(msg.uri) + _utf8_len(msg.version) + 4
    else:
        size = _utf8_len(msg.version) + len(str(msg.status)) + _utf8_len(msg.reason) + 4
    for name, value in msg.headers.items:
        if name != "Content-Length":
            size += _utf8_len(name) + _utf8_len(value) + 4
    body = len(msg.body)
    return size + len("Content-Length: ") + len(str(body)) + 4 + body


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))
