"""Outgoing chunking and incoming reassembly of MSRP messages (RFC 4975 §5.1, §7.1, §7.3.1).

Theory of operation
-------------------
*Sending.* A message is a Message-ID, a Content-Type and a body. :class:`OutgoingMessage`
cuts it into chunks of ``chunk_size`` octets, each a SEND with its own transaction id and a
``Byte-Range: start-end/total`` (1-based, inclusive, §7.1.1); every chunk but the last ends
with ``+``, the last with ``$``. Chunks above 2048 octets write their range-end as ``*``
(§7.1: they must be interruptible). The session layer takes one chunk at a time from each
queued message in turn, so a long message never holds up a short one. Abandoning a message
after some chunks went out sends an empty chunk flagged ``#`` (§7.1).

*Receiving.* :class:`IncomingMessage` collects the chunks of one Message-ID in any order
(§7.3.1): each chunk's octets are written at ``start - 1``, so overlapping chunks resolve as
"last one wins", and the covered intervals are merged. The message is complete once the
chunk flagged ``$`` has arrived and every octet before its end is covered. The octets
*actually framed* are trusted over the range-end: RFC 4975's own examples disagree with
their bodies by a few octets either way (§4 and §11.1 count two more, §11.2 ten fewer,
§11.4 one more), so a mismatch is tolerated rather than refused. Sizes are checked against the limit before anything is stored (413, §10).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import LocalMsrpError, RemoteMsrpError
from .message import ByteRange, EndFlag, FailureReport, MsrpRequest
from .settings import INTERRUPTIBLE_CHUNK_THRESHOLD
from .uri import MsrpUri

__all__ = ["OutgoingMessage", "IncomingMessage", "binding_send"]


@dataclass(slots=True)
class OutgoingMessage:
    """A message being sent, with its progress (mutable; owned by one session)."""

    message_id: str
    content_type: str
    body: bytes
    success_report: bool
    failure_report: FailureReport
    headers: tuple[tuple[str, str], ...] = ()
    offset: int = 0
    """Body octets already put into chunks."""
    chunks_sent: int = 0
    unacked: set[str] = field(default_factory=set)
    """Transaction ids of chunks still waiting for their response."""
    failed: bool = False
    aborted: bool = False

    @property
    def fully_chunked(self) -> bool:
        """Every octet is in a chunk (an empty message still needs its one chunk)."""
        return self.chunks_sent > 0 and self.offset >= len(self.body)

    @property
    def finished(self) -> bool:
        """Nothing more will happen to this message on the wire."""
        return self.failed or self.aborted or (self.fully_chunked and not self.unacked)

    def next_chunk(
        self,
        transaction_id: str,
        chunk_size: int,
        to_path: tuple[MsrpUri, ...],
        from_path: tuple[MsrpUri, ...],
    ) -> MsrpRequest:
        """Build the next chunk and advance; the caller picked a tid absent from it (§7.1)."""
        if self.fully_chunked or self.failed or self.aborted:
            raise LocalMsrpError("no chunk left to send for this message")
        total = len(self.body)
        data = self.body[self.offset : self.offset + chunk_size]
        start = self.offset + 1
        last = self.offset + len(data) >= total
        end: int | None = self.offset + len(data)
        if len(data) > INTERRUPTIBLE_CHUNK_THRESHOLD:
            end = None  # §7.1: interruptible chunk, end left open
        chunk = MsrpRequest(
            transaction_id=transaction_id,
            method="SEND",
            to_path=to_path,
            from_path=from_path,
            message_id=self.message_id,
            success_report=True if self.success_report else None,
            failure_report=(
                None if self.failure_report is FailureReport.YES else self.failure_report
            ),
            byte_range=ByteRange(start, end, total),
            headers=self.headers,
            content_type=self.content_type,
            body=data,
            end_flag=EndFlag.COMPLETE if last else EndFlag.CONTINUED,
        )
        self.offset += len(data)
        self.chunks_sent += 1
        return chunk

    def peek_chunk_body(self, chunk_size: int) -> bytes:
        """The body of the chunk :meth:`next_chunk` would build (to pick a safe tid)."""
        return self.body[self.offset : self.offset + chunk_size]

    def abort_chunk(
        self,
        transaction_id: str,
        to_path: tuple[MsrpUri, ...],
        from_path: tuple[MsrpUri, ...],
    ) -> MsrpRequest:
        """An empty chunk flagged ``#`` telling the receiver to drop the message (§7.1)."""
        self.aborted = True
        return MsrpRequest(
            transaction_id=transaction_id,
            method="SEND",
            to_path=to_path,
            from_path=from_path,
            message_id=self.message_id,
            failure_report=FailureReport.NO,
            byte_range=ByteRange(self.offset + 1, self.offset, len(self.body)),
            content_type=self.content_type,
            body=b"",
            end_flag=EndFlag.ABORTED,
        )


def binding_send(
    transaction_id: str,
    message_id: str,
    to_path: tuple[MsrpUri, ...],
    from_path: tuple[MsrpUri, ...],
) -> MsrpRequest:
    """The bodiless SEND the active endpoint sends at once to bind the session (§5.4, §7.1)."""
    return MsrpRequest(
        transaction_id=transaction_id,
        method="SEND",
        to_path=to_path,
        from_path=from_path,
        message_id=message_id,
        byte_range=ByteRange(1, 0, 0),
    )


def _merge(intervals: list[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    """Insert the half-open interval [start, end) and merge touching neighbours."""
    result: list[tuple[int, int]] = []
    placed = False
    for a, b in intervals:
        if b < start:
            result.append((a, b))
        elif end < a:
            if not placed:
                result.append((start, end))
                placed = True
            result.append((a, b))
        else:
            start, end = min(a, start), max(b, end)
    if not placed:
        result.append((start, end))
    result.sort()
    return result


@dataclass(slots=True)
class IncomingMessage:
    """Reassembly state of one incoming Message-ID (§7.3.1)."""

    message_id: str
    max_size: int
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    success_report: bool = False
    from_path: tuple[MsrpUri, ...] = ()
    buffer: bytearray = field(default_factory=bytearray)
    covered: list[tuple[int, int]] = field(default_factory=list)
    final_end: int | None = None
    """Octet count up to the end of the chunk flagged ``$``, once it has arrived."""
    declared_total: int | None = None
    deadline: float = 0.0

    def add_chunk(self, chunk: MsrpRequest, now: float, timeout: float) -> None:
        """Store one chunk; raises RemoteMsrpError(413) over the size limit (§7.3.1, §10)."""
        assert chunk.body is not None
        byte_range = chunk.byte_range or ByteRange(1, None, None)
        total = byte_range.total
        if total is not None:
            if total > self.max_size:
                raise RemoteMsrpError(f"message of {total} octets over the limit", 413)
            self.declared_total = total
        offset = byte_range.start - 1
        end = offset + len(chunk.body)
        if end > self.max_size:
            raise RemoteMsrpError(f"chunk ends at octet {end}, over the limit", 413)
        if self.content_type is None and chunk.content_type is not None:
            self.content_type = chunk.content_type
            self.headers = chunk.headers
        self.success_report = self.success_report or chunk.wants_success_report
        self.from_path = chunk.from_path
        if len(self.buffer) < end:
            self.buffer.extend(bytes(end - len(self.buffer)))
        self.buffer[offset:end] = chunk.body  # overlap: the last chunk wins (§7.3.1)
        if end > offset:
            self.covered = _merge(self.covered, offset, end)
        if chunk.end_flag is EndFlag.COMPLETE:
            self.final_end = max(end, self.final_end or 0)
        self.deadline = now + timeout

    @property
    def complete(self) -> bool:
        """The ``$`` chunk arrived and everything before its end is covered."""
        if self.final_end is None:
            return False
        size = max(self.final_end, len(self.buffer))
        if size == 0:
            return True
        return len(self.covered) == 1 and self.covered[0] == (0, size)

    def body(self) -> bytes:
        """The reassembled body (only meaningful once :attr:`complete`)."""
        return bytes(self.buffer)
