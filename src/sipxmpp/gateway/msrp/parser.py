"""MSRP stream framing and message decoding (RFC 4975 §7.1, §7.2, ABNF §9).

Theory of operation
-------------------
MSRP has no length field: a frame ends at its *end-line*, seven hyphens, the transaction id
of the start line and a continuation flag (``$``, ``+`` or ``#``) followed by CRLF (§7.1).
The sender guarantees that this line never occurs in the body, so the receiver finds the
end of a frame by scanning for ``CRLF -------<tid><flag> CRLF``. Framing therefore runs in
two layers:

1. :class:`MsrpFramer` turns bytes into :class:`RawFrame` values. It is a small state
   machine over a byte buffer::

       START --start line--> HEADERS --end-line--------------------------> frame (bodiless)
                                     --blank line--> BODY --end-line-----> frame (with body)
                             HEADERS or BODY --limit exceeded--> DISCARD --end-line--> frame
                                                                          marked oversize

   Every scan resumes where the previous one stopped, so feeding one byte at a time costs
   the same as feeding everything at once. In DISCARD only the last few octets are kept, so a
   peer that sends an endless body cannot grow our memory: the frame is still delimited by
   its end-line and gets a 413 (or 400 for an oversized header block), and the stream stays
   in sync. Only a broken start line is *fatal*: without a transaction id there is no
   end-line to look for, so the connection must be closed.

2. :func:`decode_frame` turns a :class:`RawFrame` into a validated
   :class:`~.message.MsrpRequest` or :class:`~.message.MsrpResponse`, raising
   :class:`~.errors.RemoteMsrpError` with the §10 status to answer (400 malformed, 413 too
   large, 423 for a Byte-Range that parses but is inconsistent or absurdly large: [ours],
   §10 only says "a parameter out of bounds"). The raw frame stays available so that the session
   layer can still address an error response (§7.2: To-Path = first URI of the From-Path).

Header order: §9 puts To-Path first and From-Path second; RFC 7573's examples swap them, so
the decoder accepts either order (our serializer always writes To-Path first). Content-Type
must be the last header (§7.1); anything after it is a 400.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass

from .errors import LocalMsrpError, RemoteMsrpError
from .message import (
    END_LINE_PREFIX,
    KNOWN_HEADERS,
    ByteRange,
    EndFlag,
    FailureReport,
    MsrpMessage,
    MsrpRequest,
    MsrpResponse,
    StatusHeader,
    is_ident,
)
from .uri import MsrpUri, parse_path

__all__ = [
    "MsrpFramer",
    "RawFrame",
    "decode_frame",
    "parse_message",
    "raw_from_path",
    "MAX_START_LINE",
    "MAX_HEADER_BLOCK",
    "MAX_HEADER_LINES",
    "MAX_NON_SEND_BODY",
    "DEFAULT_MAX_FRAME_BODY",
]

#: Longest start line. tid (<= 32) and method or status are short; the response comment is
#: free text, and 1 KiB is generous for it while bounding what we buffer before we know the tid.
MAX_START_LINE = 1024

#: Largest header block (all header lines of one frame). An endpoint-to-endpoint frame has
#: about 300 octets of headers and a relay chain a few KiB; 16 KiB bounds memory per
#: connection. Over the limit: the frame is discarded up to its end-line and answered 400.
MAX_HEADER_BLOCK = 16 * 1024

#: Most header lines per frame; RFC 4975 defines eight headers, extensions add a few.
MAX_HEADER_LINES = 64

#: §7.1: "requests other than SEND ... MUST NOT have bodies larger than 10240 octets".
MAX_NON_SEND_BODY = 10240

#: Default cap on one chunk's body when the framer is built without a limit. The session
#: passes its message-size limit instead, since a chunk can never exceed its message.
DEFAULT_MAX_FRAME_BODY = 1024 * 1024

#: Byte-Range numbers longer than this many digits are out of bounds (423): 18 digits keep
#: every value far beyond any size we accept yet exact in a Python int and in peers' int64.
_MAX_RANGE_DIGITS = 18

_START_RE = re.compile(
    rb"MSRP (?P<tid>[A-Za-z0-9][A-Za-z0-9.\-+%=]{3,31}) "
    rb"(?:(?P<method>[A-Z]+)|(?P<code>[0-9]{3})(?: (?P<comment>[^\r\n]*))?)"
)
_BYTE_RANGE_RE = re.compile(r"([0-9]+)-([0-9]+|\*)/([0-9]+|\*)")
_STATUS_RE = re.compile(r"([0-9]{3}) ([0-9]{3})(?: (.*))?")
_HNAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9\-.!%*_+`'~]*")
_MSRP_PREFIX = b"MSRP "
_FLAGS = {b"$": EndFlag.COMPLETE, b"+": EndFlag.CONTINUED, b"#": EndFlag.ABORTED}


@dataclass(slots=True)
class RawFrame:
    """One frame cut from the stream, before header validation.

    An intermediate record handed from the framer to :func:`decode_frame` once per frame;
    not frozen, because a frozen dataclass pays a generic ``object.__setattr__`` per field
    on construction and this one is built for every frame. Nothing modifies it.
    """

    transaction_id: str
    method: str | None
    """Request method, or None for a response."""
    status: int | None
    """Response status code, or None for a request."""
    comment: bytes | None
    """Response comment as received (decoded by :func:`decode_frame`)."""
    header_lines: tuple[bytes, ...]
    body: bytes | None
    """Body octets; None if the frame was bodiless or its body was discarded."""
    end_flag: EndFlag
    error_status: int | None = None
    """Set when the frame broke a limit while framing (413 body, 400 header block)."""
    error_reason: str | None = None

    @property
    def is_request(self) -> bool:
        return self.method is not None


class _State(enum.Enum):
    START = "start"
    HEADERS = "headers"
    BODY = "body"
    DISCARD = "discard"
    BROKEN = "broken"


class MsrpFramer:
    """Incremental frame splitter: ``receive_data(bytes)``, then ``next_frame()`` until None.

    :meth:`next_frame` raises :class:`RemoteMsrpError` with ``fatal=True`` when the stream
    cannot be resynchronised; the framer then stays broken.
    """

    def __init__(
        self,
        *,
        max_body: int = DEFAULT_MAX_FRAME_BODY,
        max_header_block: int = MAX_HEADER_BLOCK,
    ) -> None:
        self._max_body = max_body
        self._max_header_block = max_header_block
        self._buf = bytearray()
        self._state = _State.START
        self._scan = 0
        self._reset_frame()

    def _reset_frame(self) -> None:
        self._tid = ""
        self._tid_bytes = b""
        self._end_marker = b"\r\n" + END_LINE_PREFIX
        self._method: str | None = None
        self._status: int | None = None
        self._comment: bytes | None = None
        self._lines: list[bytes] = []
        self._header_bytes = 0
        self._body_start = 0
        self._error_status: int | None = None
        self._error_reason: str | None = None

    @property
    def buffered(self) -> int:
        """Octets held but not yet returned as frames (bounded by the limits above)."""
        return len(self._buf)

    @property
    def idle(self) -> bool:
        """True between frames with nothing buffered."""
        return self._state is _State.START and not self._buf

    def receive_data(self, data: bytes) -> None:
        """Append received octets; call :meth:`next_frame` afterwards."""
        if self._state is _State.BROKEN:
            return
        self._buf += data

    def _fail(self, reason: str) -> RemoteMsrpError:
        self._state = _State.BROKEN
        self._buf.clear()
        return RemoteMsrpError(reason, 400, fatal=True)

    def next_frame(self) -> RawFrame | None:
        """The next complete frame, or None if more data is needed."""
        while True:
            state = self._state
            if state is _State.BROKEN:
                raise RemoteMsrpError("MSRP stream is out of sync", 400, fatal=True)
            if state is _State.START:
                if not self._buf:
                    return None
                frame = self._whole_frame()
                if frame is not None:
                    return frame
                if not self._parse_start():
                    return None
            elif state is _State.HEADERS:
                frame = self._parse_headers()
                if frame is not None:
                    return frame
                if self._state is _State.HEADERS:
                    return None
            elif state is _State.BODY:
                frame = self._scan_body()
                if frame is not None:
                    return frame
                if self._state is _State.BODY:
                    return None
            else:
                frame = self._scan_discard()
                if frame is None:
                    return None
                return frame

    # -- the whole-frame fast path ----------------------------------------------------
    def _whole_frame(self) -> RawFrame | None:
        """The next frame in one pass, when all of it is buffered and it is ordinary.

        Chat messages are small and usually arrive whole in one read, so instead of walking
        the state machine line by line this finds the start line, the blank line and the
        end-line with a few searches. Anything unusual (padding, an incomplete frame, a
        limit reached, a marker that is not a real end-line) returns None and leaves the
        buffer untouched: the state machine then does the work, with the same result it
        would have had anyway (the tests feed every case both whole and byte by byte).
        """
        buf = self._buf
        if not buf.startswith(_MSRP_PREFIX):
            return None
        eol = buf.find(b"\r\n", 0, MAX_START_LINE + 1)
        if eol < 0:
            return None
        m = _START_RE.fullmatch(buf, 0, eol)
        if m is None:
            return None
        tid = m.group("tid")
        marker = b"\r\n" + END_LINE_PREFIX + tid
        first = buf.find(marker, eol)
        if first < 0:
            return None
        # The bound lets a blank line whose CRLF is the marker's own be found: the frame
        # then has a body, which the marker does not end (it precedes the body).
        blank = buf.find(b"\r\n\r\n", eol, first + 2)
        if blank < 0:
            # Bodiless: the end-line follows the last header line (§7.1).
            end, head_end, body = first, first, None
        else:
            body_start = blank + 4
            end = buf.find(marker, body_start)
            if end < 0 or end - body_start > self._max_body:
                return None
            head_end = blank
            body = bytes(buf[body_start:end])
        after = end + len(marker)
        if len(buf) < after + 3 or buf[after + 1 : after + 3] != b"\r\n":
            return None
        flag = _FLAGS.get(bytes(buf[after : after + 1]))
        if flag is None:
            return None
        if head_end - eol > self._max_header_block:
            return None
        lines = tuple(bytes(buf[eol + 2 : head_end]).split(b"\r\n")) if head_end > eol else ()
        if len(lines) > MAX_HEADER_LINES:
            return None
        # Take every group before the buffer changes: a match reads its (mutable) subject.
        method, code, comment = m.group("method", "code", "comment")
        del buf[: after + 3]
        self._scan = 0
        return RawFrame(
            transaction_id=tid.decode("ascii"),
            method=None if method is None else method.decode("ascii"),
            status=None if code is None else int(code),
            comment=comment,
            header_lines=lines,
            body=body,
            end_flag=flag,
        )

    # -- START -------------------------------------------------------------------------
    def _parse_start(self) -> bool:
        buf = self._buf
        # Tolerate empty lines between frames (some stacks pad); anything else must be MSRP.
        while buf[:2] == b"\r\n":
            del buf[:2]
        head = bytes(buf[: len(_MSRP_PREFIX)])
        if not _MSRP_PREFIX.startswith(head) and head != b"\r":
            raise self._fail("frame does not start with 'MSRP ' (§7.1)")
        end = buf.find(b"\r\n")
        if end < 0:
            if len(buf) > MAX_START_LINE:
                raise self._fail("start line too long")
            return False
        if end > MAX_START_LINE:
            raise self._fail("start line too long")
        m = _START_RE.fullmatch(bytes(buf[:end]))
        if m is None:
            raise self._fail(f"malformed start line {bytes(buf[:end])[:80]!r} (§9)")
        self._reset_frame()
        self._tid_bytes = m.group("tid")
        self._tid = self._tid_bytes.decode("ascii")
        self._end_marker = b"\r\n" + END_LINE_PREFIX + self._tid_bytes
        if m.group("method") is not None:
            self._method = m.group("method").decode("ascii")
        else:
            self._status = int(m.group("code"))
            self._comment = m.group("comment")
        del buf[: end + 2]
        self._scan = 0
        self._state = _State.HEADERS
        return True

    # -- HEADERS -----------------------------------------------------------------------
    def _parse_headers(self) -> RawFrame | None:
        buf = self._buf
        scan = self._scan
        lines = self._lines
        # The end-line of a bodiless request, without its leading CRLF and its flag.
        prefix = self._end_marker[2:]
        end_line_len = len(prefix) + 1
        while True:
            end = buf.find(b"\r\n", scan)
            if end < 0:
                self._scan = scan
                if len(buf) - scan > self._max_header_block:
                    # No CRLF in the rest of the buffer: keep only a possible end-line start.
                    keep_from = max(scan, len(buf) - len(self._end_marker) - 2)
                    self._start_discard(400, "header block too large", keep_from)
                return None
            length = end - scan
            if length == 0:
                self._body_start = end + 2
                self._scan = self._body_start
                self._state = _State.BODY
                return None
            if length == end_line_len and buf.startswith(prefix, scan):
                flag = _FLAGS.get(bytes(buf[end - 1 : end]))
                if flag is not None:
                    del buf[: end + 2]
                    return self._finish(None, flag)
            self._header_bytes += length + 2
            if self._header_bytes > self._max_header_block or len(lines) >= MAX_HEADER_LINES:
                # Later lines (maybe the end-line, maybe further frames) are still buffered:
                # drop only what was examined. The CRLF ending this line stays, so an
                # end-line right after it is found by the discard scan.
                self._scan = scan
                self._start_discard(400, "header block too large", scan)
                return None
            lines.append(bytes(buf[scan:end]))
            scan = end + 2
            self._scan = scan

    # -- BODY --------------------------------------------------------------------------
    def _scan_body(self) -> RawFrame | None:
        buf = self._buf
        marker = self._end_marker
        while True:
            i = buf.find(marker, self._scan)
            if i < 0:
                self._scan = max(self._body_start, len(buf) - len(marker) + 1)
                if len(buf) - self._body_start > self._max_body + len(marker) + 3:
                    # No end-line anywhere in the buffer, so all but a possible partial
                    # end-line at the tail is body: drop it and keep scanning.
                    self._start_discard(413, "chunk larger than the message-size limit", self._scan)
                return None
            after = i + len(marker)
            if len(buf) < after + 3:
                self._scan = i
                return None
            flag = _FLAGS.get(bytes(buf[after : after + 1]))
            if flag is not None and buf[after + 1 : after + 3] == b"\r\n":
                if i - self._body_start > self._max_body:
                    # Same verdict whether the oversized chunk arrived whole or in pieces.
                    self._error_status = 413
                    self._error_reason = "chunk larger than the message-size limit"
                    del buf[: after + 3]
                    return self._finish(None, flag)
                body = bytes(buf[self._body_start : i])
                del buf[: after + 3]
                return self._finish(body, flag)
            self._scan = i + 1

    # -- DISCARD -----------------------------------------------------------------------
    def _start_discard(self, status: int, reason: str, keep_from: int) -> None:
        """Stop storing the frame; keep scanning for its end-line from ``keep_from``."""
        self._error_status = status
        self._error_reason = reason
        del self._buf[:keep_from]
        self._scan = 0
        self._state = _State.DISCARD

    def _scan_discard(self) -> RawFrame | None:
        buf = self._buf
        marker = self._end_marker
        while True:
            i = buf.find(marker, self._scan)
            if i < 0:
                # Keep only what could be the start of the end-line (marker, flag, CR).
                keep = len(marker) + 2
                if len(buf) > keep:
                    del buf[: len(buf) - keep]
                self._scan = 0
                return None
            after = i + len(marker)
            if len(buf) < after + 3:
                self._scan = i
                return None
            flag = _FLAGS.get(bytes(buf[after : after + 1]))
            if flag is not None and buf[after + 1 : after + 3] == b"\r\n":
                del buf[: after + 3]
                return self._finish(None, flag)
            self._scan = i + 1

    def _finish(self, body: bytes | None, flag: EndFlag) -> RawFrame:
        frame = RawFrame(
            transaction_id=self._tid,
            method=self._method,
            status=self._status,
            comment=self._comment,
            header_lines=tuple(self._lines),
            body=body,
            end_flag=flag,
            error_status=self._error_status,
            error_reason=self._error_reason,
        )
        self._state = _State.START
        self._scan = 0
        self._reset_frame()
        return frame


# -- decoding ----------------------------------------------------------------------------


#: Header names spelled as §9 spells them -> their lower-case key. Nearly every header
#: line a peer sends is one of these, and finding its name here spares the name check
#: and the case folding of :func:`_split_header` on the per-message path.
_CANONICAL_NAMES: dict[bytes, str] = {
    name.encode("ascii"): key for key, name in KNOWN_HEADERS.items()
}

#: Distinct Byte-Range values whose parsed form is remembered: a one-chunk message of n
#: octets always says ``1-n/n``, so a few hundred values cover most traffic. Bounded
#: (LRU), so values chosen by a peer cannot grow memory.
BYTE_RANGE_CACHE_SIZE = 1024


def _header(line: bytes) -> tuple[str, str, str]:
    """(name, lower-case name, value) of one header line; RemoteMsrpError if malformed."""
    colon = line.find(b":")
    key = _CANONICAL_NAMES.get(line[:colon]) if colon > 0 else None
    if key is None:
        name, value = _split_header(line)
        return name, name.lower(), value
    if b"\r" in line or b"\n" in line or b"\x00" in line:
        raise RemoteMsrpError(f"control character in header {KNOWN_HEADERS[key]}", 400)
    try:
        value = line[colon + 1 :].decode("utf-8")
    except UnicodeDecodeError:
        raise RemoteMsrpError("header line is not UTF-8", 400) from None
    return KNOWN_HEADERS[key], key, value.strip(" \t")


def _split_header(line: bytes) -> tuple[str, str]:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise RemoteMsrpError("header line is not UTF-8", 400) from None
    name, colon, value = text.partition(":")
    if not colon or not _HNAME_RE.fullmatch(name):
        raise RemoteMsrpError(f"malformed header line {text[:80]!r} (§9)", 400)
    if "\r" in value or "\n" in value or "\x00" in value:
        raise RemoteMsrpError(f"control character in header {name}", 400)
    return name, value.strip(" \t")


def raw_from_path(frame: RawFrame) -> tuple[MsrpUri, ...] | None:
    """The From-Path of a frame whose other headers may be broken, if it parses."""
    for line in frame.header_lines:
        try:
            name, value = _split_header(line)
            if name.lower() == "from-path":
                return parse_path(value)
        except RemoteMsrpError:
            continue
    return None


def raw_to_path(frame: RawFrame) -> tuple[MsrpUri, ...] | None:
    """The To-Path of a frame whose other headers may be broken, if it parses."""
    for line in frame.header_lines:
        try:
            name, value = _split_header(line)
            if name.lower() == "to-path":
                return parse_path(value)
        except RemoteMsrpError:
            continue
    return None


@functools.lru_cache(maxsize=BYTE_RANGE_CACHE_SIZE)
def _parse_byte_range(value: str) -> ByteRange:
    m = _BYTE_RANGE_RE.fullmatch(value)
    if m is None:
        raise RemoteMsrpError(f"malformed Byte-Range {value!r} (§9)", 400)
    parts = m.groups()
    if any(len(p) > _MAX_RANGE_DIGITS for p in parts):
        raise RemoteMsrpError(f"Byte-Range value out of bounds: {value!r}", 423)
    start = int(parts[0])
    end = None if parts[1] == "*" else int(parts[1])
    total = None if parts[2] == "*" else int(parts[2])
    try:
        return ByteRange(start, end, total)
    except LocalMsrpError as exc:
        # Syntactically fine but inconsistent (start 0, end beyond total, ...): §10 423.
        raise RemoteMsrpError(f"Byte-Range {value!r} out of bounds: {exc.msg}", 423) from None


def _parse_status(value: str) -> StatusHeader:
    m = _STATUS_RE.fullmatch(value)
    if m is None:
        raise RemoteMsrpError(f"malformed Status header {value!r} (§9)", 400)
    reason = m.group(3)
    try:
        return StatusHeader(
            code=int(m.group(2)),
            reason=(reason.strip(" \t") or None) if reason else None,
            namespace=int(m.group(1)),
        )
    except LocalMsrpError as exc:
        raise RemoteMsrpError(exc.msg, 400) from None


def decode_frame(frame: RawFrame) -> MsrpMessage:
    """Validate a frame's headers and build the message; raises :class:`RemoteMsrpError`."""
    if frame.error_status is not None:
        raise RemoteMsrpError(frame.error_reason or "frame over a limit", frame.error_status)
    to_path: tuple[MsrpUri, ...] | None = None
    from_path: tuple[MsrpUri, ...] | None = None
    message_id: str | None = None
    success: bool | None = None
    failure: FailureReport | None = None
    byte_range: ByteRange | None = None
    status_header: StatusHeader | None = None
    content_type: str | None = None
    extra: list[tuple[str, str]] = []
    seen: set[str] = set()
    canonical = _CANONICAL_NAMES
    for line in frame.header_lines:
        # The usual line (a §9 header name as spelled there, a clean UTF-8 value) is taken
        # apart here; anything else goes through _header, which also reports the errors.
        colon = line.find(b":")
        key = canonical.get(line[:colon]) if colon > 0 else None
        if key is None or b"\r" in line or b"\n" in line or b"\x00" in line:
            name, key, value = _header(line)
        else:
            try:
                value = line[colon + 1 :].decode("utf-8").strip(" \t")
            except UnicodeDecodeError:
                raise RemoteMsrpError("header line is not UTF-8", 400) from None
            name = KNOWN_HEADERS[key]
        if content_type is not None:
            raise RemoteMsrpError("Content-Type must be the last header (§7.1)", 400)
        if key in KNOWN_HEADERS:
            if key in seen:
                raise RemoteMsrpError(f"duplicate {KNOWN_HEADERS[key]} header", 400)
            seen.add(key)
        if key == "to-path":
            to_path = parse_path(value)
        elif key == "from-path":
            from_path = parse_path(value)
        elif key == "message-id":
            if not is_ident(value):
                raise RemoteMsrpError(f"malformed Message-ID {value!r} (§9)", 400)
            message_id = value
        elif key == "success-report":
            if value not in ("yes", "no"):
                raise RemoteMsrpError(f"malformed Success-Report {value!r} (§9)", 400)
            success = value == "yes"
        elif key == "failure-report":
            try:
                failure = FailureReport(value)
            except ValueError:
                raise RemoteMsrpError(f"malformed Failure-Report {value!r} (§9)", 400) from None
        elif key == "byte-range":
            byte_range = _parse_byte_range(value)
        elif key == "status":
            status_header = _parse_status(value)
        elif key == "content-type":
            content_type = value
        else:
            extra.append((name, value))
    if to_path is None or from_path is None:
        raise RemoteMsrpError("To-Path and From-Path are mandatory (§9)", 400)
    try:
        if frame.method is None:
            if frame.body is not None or content_type is not None:
                raise RemoteMsrpError("a response has no body (§7.2)", 400)
            comment: str | None = None
            if frame.comment is not None:
                try:
                    comment = frame.comment.decode("utf-8").strip(" \t") or None
                except UnicodeDecodeError:
                    raise RemoteMsrpError("response comment is not UTF-8", 400) from None
            assert frame.status is not None
            return MsrpResponse(
                transaction_id=frame.transaction_id,
                status=frame.status,
                comment=comment,
                to_path=to_path,
                from_path=from_path,
                headers=tuple(extra),
            )
        if frame.body is not None and content_type is None:
            raise RemoteMsrpError("a body needs a Content-Type (§7.1)", 400)
        if frame.body is None and content_type is not None:
            raise RemoteMsrpError("Content-Type without a body (§7.1)", 400)
        if (
            frame.method != "SEND"
            and frame.body is not None
            and len(frame.body) > MAX_NON_SEND_BODY
        ):
            raise RemoteMsrpError("non-SEND body over 10240 octets (§7.1)", 413)
        return MsrpRequest(
            transaction_id=frame.transaction_id,
            method=frame.method,
            to_path=to_path,
            from_path=from_path,
            message_id=message_id,
            success_report=success,
            failure_report=failure,
            byte_range=byte_range,
            status=status_header,
            headers=tuple(extra),
            content_type=content_type,
            body=frame.body,
            end_flag=frame.end_flag,
        )
    except LocalMsrpError as exc:
        raise RemoteMsrpError(exc.msg, 400) from None


def parse_message(data: bytes, *, max_body: int = DEFAULT_MAX_FRAME_BODY) -> MsrpMessage:
    """Parse exactly one complete message; raises :class:`RemoteMsrpError` otherwise."""
    framer = MsrpFramer(max_body=max_body)
    framer.receive_data(data)
    frame = framer.next_frame()
    if frame is None:
        raise RemoteMsrpError("incomplete MSRP message", 400)
    if framer.buffered:
        raise RemoteMsrpError("trailing octets after the end-line", 400)
    return decode_frame(frame)
