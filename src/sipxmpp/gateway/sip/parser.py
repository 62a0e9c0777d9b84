"""SIP message parsing: datagrams and stream framing (RFC 3261 §7, §18.3).

Theory of operation
-------------------
A message is a start line, header fields and an optional body (RFC 3261 §7)::

    start-line CRLF *( message-header CRLF ) CRLF [ message-body ]

Parsing happens in two steps, both of them cheap:

1. **Head.** The octets up to the empty line are decoded as UTF-8 once, split on CRLF,
   and turned into ``(name, value)`` pairs: continuation lines (starting with SP or
   HTAB) are unfolded into one SP (§7.3.1), names are mapped to their canonical long form
   through a dict (compact forms included, §7.3.3), values are stripped. Values are not
   parsed further here, except for the fields every request must carry well-formed.
2. **Body.** Its length comes from Content-Length. On a **datagram** (UDP) the body is
   trimmed to Content-Length (extra octets are noise, §18.3 and RFC 4475 §3.1.1.8); a body
   shorter than Content-Length is an error (400); no Content-Length means "the rest of
   the datagram". On a **stream** (TCP/TLS) Content-Length is mandatory (§18.3): without a
   usable value the framing is lost, which is fatal to the connection.

Validation (``_validate_request`` / ``_validate_response``) then checks what RFC 3261
requires of every message, so that a malformed one gets a precise answer: version
``SIP/2.0`` (else 505, §8.2.2 / RFC 4475 §3.1.2.16); exactly one well-formed From, To,
Call-ID and CSeq and at least one well-formed Via (§8.1.1, else 400 with a reason such as
"Missing Call-ID"); the CSeq method equal to the request method (§8.2.2.3 / RFC 4475
§3.1.2.17; 501 when the method is not one we know, RFC 4475 §3.1.2.18); a Request-URI that
parses (400) with a scheme we serve (sip, sips, tel; else 416, §8.2.2.1) and no URI
headers (§19.1.1 Table 1). Malformed responses raise too; the core simply drops them.

Errors are :class:`SipParseError` (a :class:`RemoteSipError`): ``status_hint`` and
``reason_hint`` give the answer, ``request`` the request as far as it could be read
(so the core can build that answer with :func:`.build.make_response`), and ``fatal``
says a stream lost its framing and must be closed.

Keep-alives (RFC 5626 §3.5.1): on a stream, a CRLFCRLF "ping" between messages yields a
:class:`KeepAlive` (the core answers a single CRLF "pong"); a lone CRLF (a pong, or the
stray CRLFs §7.5 tells receivers to ignore) yields nothing.

Limits bound the work and memory a peer can cause; going over one is a 513.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import RemoteSipError
from .grammar import (
    AbsoluteUri,
    SipUri,
    is_token,
    is_valid_call_id,
    parse_any_uri,
    parse_cseq,
    parse_name_addr,
    parse_via,
    split_list,
)
from .message import SIP_VERSION, Headers, Message, Request, Response, canonical_name

__all__ = [
    "KeepAlive",
    "SipParseError",
    "StreamFramer",
    "parse_message",
    "is_keepalive",
    "MAX_HEADER_BLOCK_BYTES",
    "MAX_HEADER_COUNT",
    "MAX_BODY_BYTES",
    "KNOWN_METHODS",
    "PONG",
]

#: Largest start line + header section (without the empty line). RFC 4475's long
#: request (§3.1.1.7, 3.4 KB of headers) is the largest legitimate example we know; real
#: INVITEs with long Record-Route sets and Identity headers stay under 8 KB. 16 KiB
#: leaves room for both and bounds what a stream connection buffers while looking for
#: the end of the headers.
MAX_HEADER_BLOCK_BYTES = 16 * 1024
#: Largest number of header field lines. Max-Forwards starts at 70 (RFC 3261 §8.1.1.6),
#: so a request can legitimately collect 70 Via and 70 Record-Route lines; with the ~50
#: other fields of a busy request, 256 covers that and stops header-count floods.
MAX_HEADER_COUNT = 256
#: Largest body. A UDP datagram cannot carry more than 65,507 octets of payload, so no
#: UDP peer can send a larger body. RFC 3428 §8 caps a pager MESSAGE at 1300 bytes only
#: when it might travel over a transport without congestion control; peers without MSRP
#: send larger MESSAGE bodies (rich text, small images) over TCP/TLS, and SDP, PIDF and
#: multipart bodies run to a few KB. 64 KiB admits all of these and, with the header
#: limit, bounds a stream connection's buffer at 80 KiB.
MAX_BODY_BYTES = 64 * 1024

#: Methods of RFC 3261 and the extensions the gateway deals with. An unknown method with a
#: mismatching CSeq gets 501 instead of 400 (RFC 4475 §3.1.2.18).
KNOWN_METHODS: frozenset[str] = frozenset(
    {
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "REGISTER",
        "PRACK",
        "SUBSCRIBE",
        "NOTIFY",
        "PUBLISH",
        "INFO",
        "REFER",
        "MESSAGE",
        "UPDATE",
    }
)

#: The answer to a CRLFCRLF keep-alive ping on a stream (RFC 5626 §3.5.1).
PONG = b"\r\n"

_CRLF = b"\r\n"
_END_OF_HEAD = b"\r\n\r\n"
# SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT (RFC 3261 §25.1; "SIP" is case-insensitive)
_VERSION_RE = re.compile(r"[Ss][Ii][Pp]/[0-9]+\.[0-9]+")
_ASCII_DIGITS = frozenset("0123456789")
#: Entries of the raw-name -> canonical-name cache (only valid tokens are entered). Peers
#: choose header names, so the cache is bounded; the registered names fit many times.
_NAME_CACHE_SIZE = 2048
#: Fields a message carries exactly once (RFC 3261 §8.1.1), in the order they are checked.
_SINGLE_FIELDS = ("Call-ID", "From", "To", "CSeq")
_name_cache: dict[str, str] = {}


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """A CRLFCRLF keep-alive ping arrived on a stream; answer with :data:`PONG`."""


class SipParseError(RemoteSipError):
    """A message the parser refuses.

    ``request`` is the offending request as far as it was read (start line and headers,
    possibly without body), or None when the message was a response or too broken to
    read; ``fatal`` is True when a stream lost its framing and must be closed.
    ``preceding`` holds the items :meth:`StreamFramer.feed` completed before the error in
    the same call (they are valid and must still be processed).
    """

    def __init__(
        self,
        msg: str,
        status_hint: int = 400,
        reason_hint: str | None = None,
        *,
        request: Request | None = None,
        fatal: bool = False,
    ) -> None:
        super().__init__(msg, status_hint, reason_hint)
        self.request = request
        self.fatal = fatal
        self.preceding: tuple[Message | KeepAlive, ...] = ()


def is_keepalive(data: bytes) -> bool:
    """True for a datagram holding only CRLFs (a keep-alive some UAs send over UDP)."""
    return bool(data) and not data.replace(_CRLF, b"")


@dataclass(slots=True, init=False)
class _Head:
    """A parsed start line and header section, before the body is attached."""

    #: "request", "response", or "" when the start line is unusable (``error`` is set).
    kind: str
    #: Request: (method, Request-URI, version); response: (version, status, reason).
    start: tuple[str, str, str]
    headers: Headers
    #: Content-Length values as written (the field is framing, not a stored header).
    content_lengths: list[str]
    #: The first problem found while reading the head, raised after the body is known.
    error: SipParseError | None

    # Written out rather than generated (init=False): mypyc compiles this one, not the
    # dataclasses module's (sipxmpp.native, "Dataclasses").
    def __init__(
        self,
        kind: str,
        start: tuple[str, str, str],
        headers: Headers,
        content_lengths: list[str],
        error: SipParseError | None,
    ) -> None:
        self.kind = kind
        self.start = start
        self.headers = headers
        self.content_lengths = content_lengths
        self.error = error

    def request(self, body: bytes = b"") -> Request | None:
        """The request as read so far (for an error answer), None for a response."""
        if self.kind != "request":
            return None
        method, uri, version = self.start
        return Request(method, uri, self.headers, body, version)


def _parse_head(head: bytes) -> _Head:
    """Parse start line + header lines (``head`` excludes the empty line)."""
    if len(head) > MAX_HEADER_BLOCK_BYTES:
        raise SipParseError(
            f"header section of {len(head)} bytes exceeds {MAX_HEADER_BLOCK_BYTES}",
            513,
            "Message Too Large",
        )
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError(f"header section is not UTF-8: {exc}", 400, "Bad Encoding") from exc
    lines = text.split("\r\n")
    # Every CR and LF must belong to a CRLF line end (RFC 3261 §7: "CRLF").
    if text.count("\r") != len(lines) - 1 or text.count("\n") != len(lines) - 1:
        raise SipParseError("bare CR or LF in the header section", 400, "Bad Line Ending")
    if len(lines) - 1 > MAX_HEADER_COUNT:
        raise SipParseError(
            f"{len(lines) - 1} header lines exceed {MAX_HEADER_COUNT}", 513, "Too Many Headers"
        )
    error: SipParseError | None = None
    pairs: list[tuple[str, str]] = []
    content_lengths: list[str] = []
    last_is_cl = False
    known = _name_cache.get
    for line in lines[1:]:
        raw_name, colon, value = line.partition(":")
        name = known(raw_name) if colon else None
        if name is None:
            first = line[:1]
            if first == " " or first == "\t":
                # §7.3.1: a line starting with whitespace continues the previous field.
                folded = line.strip(" \t")
                if last_is_cl:
                    content_lengths[-1] = f"{content_lengths[-1]} {folded}".strip(" \t")
                elif pairs:
                    prev_name, prev = pairs[-1]
                    pairs[-1] = (prev_name, f"{prev} {folded}" if prev else folded)
                elif error is None:
                    error = SipParseError("continuation line before any header", 400, "Bad Header")
                continue
            # message-header = field-name HCOLON field-value; HCOLON = *(SP / HTAB) ":" SWS
            stripped = raw_name.rstrip(" \t")
            if not colon or not stripped or not is_token(stripped):
                if error is None:
                    error = SipParseError(f"malformed header line {line[:80]!r}", 400, "Bad Header")
                last_is_cl = False
                continue
            name = canonical_name(stripped)
            if len(_name_cache) < _NAME_CACHE_SIZE:
                _name_cache[raw_name] = name
        value = value.strip(" \t")
        if name == "Content-Length":
            content_lengths.append(value)
            last_is_cl = True
        else:
            pairs.append((name, value))
            last_is_cl = False
    kind, start, start_error = _parse_start_line(lines[0])
    return _Head(kind, start, Headers(tuple(pairs)), content_lengths, start_error or error)


def _parse_start_line(line: str) -> tuple[str, tuple[str, str, str], SipParseError | None]:
    """Parse the start line; on error also return what can still answer a request."""
    if line[:4].upper() == "SIP/":
        # Status-Line = SIP-Version SP Status-Code SP Reason-Phrase CRLF
        version, _, rest = line.partition(" ")
        code, _, reason = rest.partition(" ")
        if not _VERSION_RE.fullmatch(version):
            return "", ("", "", ""), SipParseError(f"malformed Status-Line {line[:80]!r}")
        if len(code) != 3 or not set(code) <= _ASCII_DIGITS or code[0] == "0":
            # Status-Code = 3DIGIT; 100-699 (RFC 3261 §21, RFC 4475 §3.1.2.19).
            return "", ("", "", ""), SipParseError(f"bad status code {code[:20]!r}")
        if not reason.isprintable() and any(
            (ch < " " and ch != "\t") or ch == "\x7f" for ch in reason
        ):
            return "", ("", "", ""), SipParseError("control character in Reason-Phrase")
        return "response", (version.upper(), code, reason), None
    # Request-Line = Method SP Request-URI SP SIP-Version CRLF: single spaces only
    # (RFC 4475 §3.1.2.9 and §3.1.2.10 allow rejecting extra or trailing SP).
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        words = [p for p in parts if p]
        if len(words) < 2:
            return "", ("", "", ""), SipParseError(f"malformed start line {line[:80]!r}")
        # Keep what a 400 answer needs (its headers); the line itself is unusable.
        error = SipParseError(
            f"malformed Request-Line {line[:120]!r}", 400, "Malformed Request-Line"
        )
        return "request", (words[0], " ".join(words[1:-1]), words[-1]), error
    method, uri, version = parts
    if not is_token(method):
        error = SipParseError(f"bad method {method[:40]!r}", 400, "Bad Method")
        return "request", (method, uri, version), error
    if not _VERSION_RE.fullmatch(version):
        error = SipParseError(f"bad SIP-Version {version[:40]!r}", 400, "Bad Version")
        return "request", (method, uri, version), error
    return "request", (method, uri, version), None


def _content_length(values: list[str]) -> int | None:
    """The single Content-Length value, or None if absent (RFC 3261 §20.14).

    A value over :data:`MAX_BODY_BYTES` raises 513; the error's ``fatal`` is preset to
    True only when the value is too long to skip (over 10 digits).
    """
    if not values:
        return None
    first = values[0]
    # Content-Length = ( "Content-Length" / "l" ) HCOLON 1*DIGIT
    if not first or not set(first) <= _ASCII_DIGITS:
        raise SipParseError(f"bad Content-Length {first[:40]!r}", 400, "Bad Content-Length")
    if any(v != first for v in values[1:]):
        # RFC 4475 §3.3.9: conflicting values are a framing error.
        raise SipParseError("conflicting Content-Length values", 400, "Bad Content-Length")
    digits = first.lstrip("0") or "0"
    if len(digits) > 10 or int(digits) > MAX_BODY_BYTES:
        raise SipParseError(
            f"Content-Length {digits[:20]} exceeds {MAX_BODY_BYTES}",
            513,
            "Message Too Large",
            fatal=len(digits) > 10,
        )
    return int(digits)


def _check_common(msg: Request | Response) -> str:
    """Check Via, Call-ID, From, To and CSeq (RFC 3261 §8.1.1); return the CSeq method."""
    vias: list[str] = []
    found: dict[str, str] = {}
    repeated: str | None = None
    for name, value in msg.headers.items:
        if name == "Via":
            vias.append(value)
        elif name in _SINGLE_FIELDS:
            if name in found and repeated is None:
                repeated = name
            found[name] = value
    if not vias:
        raise SipParseError("no Via header", 400, "Missing Via")
    try:
        for line in vias:
            if "," in line:
                for part in split_list(line):
                    parse_via(part)
            else:
                parse_via(line)
    except RemoteSipError as exc:
        raise SipParseError(f"malformed Via: {exc.msg}", 400, "Malformed Via") from exc
    if len(found) != len(_SINGLE_FIELDS):
        missing = next(name for name in _SINGLE_FIELDS if name not in found)
        raise SipParseError(f"no {missing} header", 400, f"Missing {missing}")
    if repeated is not None:
        # RFC 4475 §3.3.8: several values in a single-value field.
        raise SipParseError(f"several {repeated} headers", 400, f"Multiple {repeated}")
    call_id = found["Call-ID"]
    if not is_valid_call_id(call_id):
        raise SipParseError(f"malformed Call-ID {call_id[:80]!r}", 400, "Malformed Call-ID")
    for name in ("From", "To"):
        try:
            parse_name_addr(found[name])
        except RemoteSipError as exc:
            raise SipParseError(f"malformed {name}: {exc.msg}", 400, f"Malformed {name}") from exc
    try:
        return parse_cseq(found["CSeq"]).method
    except RemoteSipError as exc:
        raise SipParseError(f"malformed CSeq: {exc.msg}", 400, "Malformed CSeq") from exc


def _validate_request(request: Request) -> None:
    # RFC 3261 §8.2.2 / RFC 4475 §3.1.2.16: an unsupported version gets 505.
    if request.version.upper() != SIP_VERSION:
        raise SipParseError(
            f"unsupported version {request.version!r}", 505, "Version Not Supported"
        )
    # Request-URI = SIP-URI / SIPS-URI / absoluteURI (syntax first: 400).
    try:
        uri = parse_any_uri(request.uri)
    except RemoteSipError as exc:
        raise SipParseError(
            f"malformed Request-URI: {exc.msg}", 400, "Malformed Request-URI"
        ) from exc
    cseq_method = _check_common(request)
    contacts = request.headers.get_lines("Contact")
    try:
        for line in contacts:
            # Contact: ( STAR / (contact-param *(COMMA contact-param)))
            if line.strip() == "*":
                continue
            for part in split_list(line):
                parse_name_addr(part)
    except RemoteSipError as exc:
        raise SipParseError(f"malformed Contact: {exc.msg}", 400, "Malformed Contact") from exc
    if cseq_method != request.method:
        if request.method not in KNOWN_METHODS:
            raise SipParseError(
                f"unknown method {request.method!r} (CSeq says {cseq_method!r})",
                501,
                "Not Implemented",
            )
        raise SipParseError(
            f"CSeq method {cseq_method!r} differs from {request.method!r}",
            400,
            "CSeq Method Mismatch",
        )
    if isinstance(uri, AbsoluteUri):
        # RFC 3261 §8.2.2.1 / RFC 4475 §3.3.2-3.3.3: a scheme we do not serve.
        raise SipParseError(f"Request-URI scheme {uri.scheme!r}", 416, "Unsupported URI Scheme")
    if isinstance(uri, SipUri) and uri.headers:
        # RFC 3261 §19.1.1 Table 1: headers are not allowed in a Request-URI.
        raise SipParseError("headers in the Request-URI", 400, "Malformed Request-URI")


def _validate_response(response: Response) -> None:
    if response.version != SIP_VERSION:
        raise SipParseError(f"unsupported version {response.version!r} in a response")
    if not 100 <= response.status <= 699:
        raise SipParseError(f"status code {response.status} out of range")
    _check_common(response)


def _finish(head: _Head, body: bytes) -> Message:
    """Attach the body and validate; raise with the request for an answer if needed."""
    if head.kind == "request":
        method, uri, version = head.start
        request = Request(method, uri, head.headers, body, version)
        try:
            if head.error is not None:
                raise head.error
            _validate_request(request)
        except SipParseError as exc:
            exc.request = request
            raise
        return request
    if head.error is not None:
        raise head.error
    version, code, reason = head.start
    response = Response(int(code), reason, head.headers, body, version)
    _validate_response(response)
    return response


def _with_request(exc: SipParseError, head: _Head) -> SipParseError:
    exc.request = head.request()
    return exc


def parse_message(data: bytes) -> Message:
    """Parse one datagram (UDP) holding one message (RFC 3261 §18.3).

    Raises :class:`SipParseError`; for a request it carries ``request`` (when the head was
    readable) so the core can answer ``status_hint``.
    """
    start = 0
    while data.startswith(_CRLF, start):  # §7.5: CRLFs before the start line are ignored
        start += 2
    end = data.find(_END_OF_HEAD, start)
    if end < 0:
        if len(data) - start > MAX_HEADER_BLOCK_BYTES:
            raise SipParseError("oversized header section", 513, "Message Too Large")
        if start == len(data):
            raise SipParseError("empty datagram (keep-alive)")
        if not data.endswith(_CRLF):
            raise SipParseError("no empty line after the header section")
        # Lenient: a datagram whose headers end at its last CRLF has an empty body.
        head_bytes, rest = data[start:-2], b""
    else:
        head_bytes, rest = data[start:end], data[end + 4 :]
    head = _parse_head(head_bytes)
    try:
        length = _content_length(head.content_lengths)
    except SipParseError as exc:
        exc.fatal = False  # a datagram has no framing to lose
        raise _with_request(exc, head) from None
    if length is None:
        if len(rest) > MAX_BODY_BYTES:
            raise _with_request(
                SipParseError(
                    f"body of {len(rest)} bytes exceeds {MAX_BODY_BYTES}",
                    513,
                    "Message Too Large",
                ),
                head,
            )
        body = rest
    elif len(rest) < length:
        # RFC 4475 §3.1.2.2: over UDP, a body shorter than Content-Length gets 400.
        raise _with_request(
            SipParseError(
                f"body of {len(rest)} bytes is shorter than Content-Length {length}",
                400,
                "Body Shorter Than Content-Length",
            ),
            head,
        )
    else:
        body = rest[:length]  # §18.3: octets beyond Content-Length are discarded
    return _finish(head, body)


class StreamFramer:
    """Frames SIP messages on one TCP/TLS connection (RFC 3261 §18.3).

    ``feed(data)`` returns the messages and keep-alives the bytes complete, in order.
    A malformed message raises :class:`SipParseError`: if ``fatal`` is False the framing
    held (the bad message was consumed, its ``preceding`` items are valid) and the next
    ``feed`` call, ``feed(b"")`` included, carries on with the bytes already buffered;
    if ``fatal`` is True the connection must be closed and every later call raises again.
    :meth:`feed_all` is the non-raising variant.

    The buffer never exceeds the header limit plus the body limit: a head longer than
    :data:`MAX_HEADER_BLOCK_BYTES` is fatal (513), and a Content-Length over
    :data:`MAX_BODY_BYTES` gets a non-fatal 513 while the body is discarded as it arrives.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._scan_from = 0
        self._head: _Head | None = None
        self._body_length = 0
        self._discard = 0
        self._failed: SipParseError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held, waiting for the rest of a message."""
        return len(self._buf) - self._pos

    @property
    def failed(self) -> bool:
        """True once the framing was lost (the connection must be closed)."""
        return self._failed is not None

    def feed(self, data: bytes) -> list[Message | KeepAlive]:
        """Add bytes from the connection; return the items they complete."""
        if self._failed is not None:
            raise self._failed
        if data:
            self._buf += data
        out: list[Message | KeepAlive] = []
        try:
            while self._step(out):
                pass
        except SipParseError as exc:
            exc.preceding = tuple(out)
            if exc.fatal:
                self._failed = exc
                self._buf = bytearray()
                self._pos = 0
            raise
        finally:
            self._compact()
        return out

    def feed_all(self, data: bytes) -> list[Message | KeepAlive | SipParseError]:
        """Like :meth:`feed` but never raises: errors come inline, a fatal one last."""
        out: list[Message | KeepAlive | SipParseError] = []
        while True:
            try:
                out.extend(self.feed(data))
                return out
            except SipParseError as exc:
                out.extend(exc.preceding)
                exc.preceding = ()
                out.append(exc)
                if exc.fatal:
                    return out
                data = b""

    def _compact(self) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._scan_from = max(0, self._scan_from - self._pos)
            self._pos = 0

    def _step(self, out: list[Message | KeepAlive]) -> bool:
        """Make one unit of progress; False when more bytes are needed."""
        buf = self._buf
        if self._discard:
            take = min(self._discard, len(buf) - self._pos)
            self._pos = self._scan_from = self._pos + take
            self._discard -= take
            return self._discard == 0 and self._pos < len(buf)
        if self._head is not None:
            if len(buf) - self._pos < self._body_length:
                return False
            body = bytes(buf[self._pos : self._pos + self._body_length])
            self._pos += self._body_length
            head, self._head = self._head, None
            self._scan_from = self._pos
            out.append(_finish(head, body))
            return True
        pos = self._pos
        # Between messages: CRLFCRLF is a ping, a lone CRLF is ignored (§7.5, RFC 5626).
        if buf.startswith(_CRLF, pos) or (len(buf) - pos == 1 and buf[pos] == 0x0D):
            if buf.startswith(_END_OF_HEAD, pos):
                self._pos = self._scan_from = pos + 4
                out.append(KeepAlive())
                return True
            pending = bytes(buf[pos : pos + 4])
            if _END_OF_HEAD.startswith(pending):
                return False  # "\r", "\r\n" or "\r\n\r": wait to see whether it is a ping
            self._pos = self._scan_from = pos + 2
            return True
        if pos == len(buf):
            return False
        end = buf.find(_END_OF_HEAD, max(pos, self._scan_from))
        if end < 0:
            if len(buf) - pos > MAX_HEADER_BLOCK_BYTES:
                raise SipParseError(
                    "header section exceeds the limit", 513, "Message Too Large", fatal=True
                )
            self._scan_from = max(pos, len(buf) - 3)
            return False
        try:
            head = _parse_head(bytes(buf[pos:end]))
        except SipParseError as exc:
            # Without a readable head there is no Content-Length to skip the body by.
            exc.fatal = True
            raise
        self._pos = self._scan_from = end + 4
        try:
            length = _content_length(head.content_lengths)
        except SipParseError as exc:
            _with_request(exc, head)
            if exc.status_hint == 513 and not exc.fatal:
                # Valid but oversized: skip the body as it arrives and keep the framing.
                self._discard = int(head.content_lengths[0])
            else:
                exc.fatal = True  # no usable Content-Length: the framing is lost
            raise
        if length is None:
            raise _with_request(
                SipParseError(
                    "no Content-Length on a stream (RFC 3261 §18.3)",
                    400,
                    "Missing Content-Length",
                    fatal=True,
                ),
                head,
            )
        self._head = head
        self._body_length = length
        return True
