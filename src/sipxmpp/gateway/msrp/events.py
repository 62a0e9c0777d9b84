"""Events the MSRP core hands to its user (frozen, slotted dataclasses, aioquic style).

Every event names the session it belongs to by its ``session_id`` (the session-id part of
our local MSRP URI, RFC 4975 §6), except :class:`ConnectionFailed`, which concerns the
whole transport connection.
"""

from __future__ import annotations

from dataclasses import dataclass

from .message import ByteRange

__all__ = [
    "MsrpEvent",
    "SessionBound",
    "MessageReceived",
    "MessageAborted",
    "ResponseReceived",
    "MessageSent",
    "SendFailed",
    "ReportReceived",
    "RequestRejected",
    "SessionFailed",
    "ConnectionFailed",
]


@dataclass(frozen=True, slots=True)
class SessionBound:
    """The session is now bound to this connection (RFC 4975 §5.4).

    Passive side: the peer's first SEND named the session. Active side: the peer answered
    200 to our binding SEND.
    """

    session_id: str


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A complete message, reassembled from all its chunks (§7.3.1)."""

    session_id: str
    message_id: str
    content_type: str
    """The Content-Type header value of the message as sent (parameters included)."""
    body: bytes
    success_report: bool
    """The sender asked for a success REPORT; the core has already sent it (§7.1.2)."""
    headers: tuple[tuple[str, str], ...] = ()
    """Extension and MIME headers of the first chunk (Content-ID, ...)."""


@dataclass(frozen=True, slots=True)
class MessageAborted:
    """An incoming message will never complete: the sender aborted it with ``#`` (§7.1),
    it outgrew the size limit (413), or its chunks stopped arriving (reassembly timeout)."""

    session_id: str
    message_id: str
    reason: str
    status: int | None = None
    """The status we answered with, when the abort was ours (413)."""


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response to one of our requests (one per chunk when responses are requested)."""

    session_id: str
    transaction_id: str
    message_id: str | None
    status: int
    comment: str | None


@dataclass(frozen=True, slots=True)
class MessageSent:
    """Every chunk of one of our messages got a 200 (only with Failure-Report: yes)."""

    session_id: str
    message_id: str


@dataclass(frozen=True, slots=True)
class SendFailed:
    """One of our messages failed: a non-200 response, a failure REPORT, the 30 s
    transaction timer (408, §7.3), or the loss of the connection (408, reason says so).
    Any chunks not yet sent are dropped (§10: after 413 the sender MUST stop)."""

    session_id: str
    message_id: str
    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class ReportReceived:
    """A REPORT request for one of our messages (§7.1.2); never answered (§7.1.2)."""

    session_id: str
    message_id: str
    status: int
    """The status code of the Status header (200 = delivered)."""
    reason: str | None
    byte_range: ByteRange | None


@dataclass(frozen=True, slots=True)
class RequestRejected:
    """We refused a request (or dropped a malformed one); for logging and metrics."""

    session_id: str | None
    transaction_id: str
    status: int
    reason: str
    answered: bool
    """False when Failure-Report or the request kind meant no response went out."""


@dataclass(frozen=True, slots=True)
class SessionFailed:
    """The session is over: binding refused (481/506/403), binding SEND timed out,
    connection lost, or the connection failed. Map to a SIP BYE (RFC 4975 §5.4)."""

    session_id: str
    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class ConnectionFailed:
    """The byte stream cannot be parsed any further; close the transport connection."""

    status: int
    reason: str


MsrpEvent = (
    SessionBound
    | MessageReceived
    | MessageAborted
    | ResponseReceived
    | MessageSent
    | SendFailed
    | ReportReceived
    | RequestRejected
    | SessionFailed
    | ConnectionFailed
)
