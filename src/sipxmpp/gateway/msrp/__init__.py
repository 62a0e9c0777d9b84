"""MSRP core (RFC 4975), sans-I/O: bytes and ``now`` in, events and bytes out.

Layers (design practice 4): :mod:`.uri` and :mod:`.message` (model and serializer),
:mod:`.parser` (stream framing and decoding), :mod:`.chunking` (chunking and reassembly),
:mod:`.session` (session table, sessions and connections with binding, responses, REPORTs
and timers). Nothing here imports asyncio or sockets; the transport edge drives a
:class:`MsrpConnection` per TCP/TLS connection.
"""

from .chunking import IncomingMessage, OutgoingMessage, binding_send
from .errors import (
    STATUS_COMMENTS,
    LocalMsrpError,
    MsrpError,
    RemoteMsrpError,
    SessionLimitError,
    status_comment,
)
from .events import (
    ConnectionFailed,
    MessageAborted,
    MessageReceived,
    MessageSent,
    MsrpEvent,
    ReportReceived,
    RequestRejected,
    ResponseReceived,
    SendFailed,
    SessionBound,
    SessionFailed,
)
from .message import (
    ByteRange,
    EndFlag,
    FailureReport,
    MsrpMessage,
    MsrpRequest,
    MsrpResponse,
    StatusHeader,
    end_line_in_body,
    media_type_matches,
    media_type_of,
    serialize,
)
from .parser import MsrpFramer, RawFrame, decode_frame, parse_message
from .session import (
    ALWAYS_ACCEPTED_TYPES,
    MsrpConnection,
    MsrpSession,
    MsrpSessionTable,
    SessionState,
)
from .settings import (
    INTERRUPTIBLE_CHUNK_THRESHOLD,
    TRANSACTION_TIMEOUT,
    IdGenerator,
    MsrpSettings,
)
from .uri import DEFAULT_PORT, MsrpUri, parse_path, parse_uri

__all__ = [
    "ALWAYS_ACCEPTED_TYPES",
    "DEFAULT_PORT",
    "INTERRUPTIBLE_CHUNK_THRESHOLD",
    "STATUS_COMMENTS",
    "TRANSACTION_TIMEOUT",
    "ByteRange",
    "ConnectionFailed",
    "EndFlag",
    "FailureReport",
    "IdGenerator",
    "IncomingMessage",
    "LocalMsrpError",
    "MessageAborted",
    "MessageReceived",
    "MessageSent",
    "MsrpConnection",
    "MsrpError",
    "MsrpEvent",
    "MsrpFramer",
    "MsrpMessage",
    "MsrpRequest",
    "MsrpResponse",
    "MsrpSession",
    "MsrpSessionTable",
    "MsrpSettings",
    "MsrpUri",
    "OutgoingMessage",
    "RawFrame",
    "RemoteMsrpError",
    "ReportReceived",
    "RequestRejected",
    "ResponseReceived",
    "SendFailed",
    "SessionBound",
    "SessionFailed",
    "SessionLimitError",
    "SessionState",
    "StatusHeader",
    "binding_send",
    "decode_frame",
    "end_line_in_body",
    "media_type_matches",
    "media_type_of",
    "parse_message",
    "parse_path",
    "parse_uri",
    "serialize",
    "status_comment",
]
