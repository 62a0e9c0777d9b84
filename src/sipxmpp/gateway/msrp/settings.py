"""Limits, timers and the injected id generator of the MSRP core.

Every number the core enforces lives here, either as a module constant fixed by RFC 4975
or as a field of :class:`MsrpSettings` that operators may tune (the runtime builds it from
the gateway settings; the core never reads configuration itself).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from .errors import LocalMsrpError
from .message import is_ident

__all__ = [
    "IdGenerator",
    "MsrpSettings",
    "TRANSACTION_ID_BITS",
    "MESSAGE_ID_BITS",
    "SESSION_ID_BITS",
    "INTERRUPTIBLE_CHUNK_THRESHOLD",
    "TRANSACTION_TIMEOUT",
    "MAX_ID_ATTEMPTS",
    "new_ident",
    "new_session_id",
]

#: §7.1: a transaction identifier "MUST contain at least 64 bits of randomness".
TRANSACTION_ID_BITS = 64
#: Message-IDs must be unique within the session; we give them the same 64 bits (§7.1.1).
MESSAGE_ID_BITS = 64
#: §6, §14: the session-id part of our URI must be unguessable; we draw 80 bits.
SESSION_ID_BITS = 80
#: §7.1: chunks larger than 2048 octets must be interruptible, so we write their
#: range-end as "*" and never promise an end we might not reach.
INTERRUPTIBLE_CHUNK_THRESHOLD = 2048
#: §7.3: a sender that asked for a response fails the transaction after 30 s (408 locally).
TRANSACTION_TIMEOUT = 30.0
#: Attempts to draw an id that is valid and (for tids) absent from the body (§7.1) before
#: concluding that the id generator is broken.
MAX_ID_ATTEMPTS = 16

_SESSION_ID_RE = re.compile(r"[A-Za-z0-9\-._~+=/]+")


class IdGenerator(Protocol):
    """Source of unpredictable tokens, injected so tests can use counters (design §12).

    ``token(nbits)`` returns a string carrying at least ``nbits`` bits of randomness made
    of characters valid in an MSRP ``ident`` (§9: letters, digits, ``. - + % =``, first
    character alphanumeric, 4 to 32 characters). Hex or base32 output fits.
    """

    def token(self, nbits: int) -> str: ...


def new_ident(ids: IdGenerator, nbits: int) -> str:
    """Draw a token usable as a transaction id or Message-ID; LocalMsrpError if impossible."""
    for _ in range(MAX_ID_ATTEMPTS):
        value = ids.token(nbits)
        if is_ident(value):
            return value
    raise LocalMsrpError("the id generator does not produce valid MSRP idents (§9)")


def new_session_id(ids: IdGenerator) -> str:
    """Draw a session-id for a local MSRP URI (§6)."""
    for _ in range(MAX_ID_ATTEMPTS):
        value = ids.token(SESSION_ID_BITS)
        if value and _SESSION_ID_RE.fullmatch(value):
            return value
    raise LocalMsrpError("the id generator does not produce valid MSRP session-ids (§6)")


@dataclass(frozen=True, slots=True)
class MsrpSettings:
    """Tunable limits of the MSRP core (frozen; passed in, never imported)."""

    max_message_size: int = 128 * 1024
    """Largest message we accept, advertised as SDP a=max-size (RFC 4975 §8.6). RFC 7573 §8
    asks for a value no larger than the XMPP stanza limit; 128 KiB carries the issue's
    100 KB message while staying well under Prosody's default 256 KiB stanza limit even
    after XML escaping. Larger messages get 413 (§10)."""
    chunk_size: int = INTERRUPTIBLE_CHUNK_THRESHOLD
    """Body octets per outgoing chunk. 2048 keeps chunks non-interruptible-sized (§7.1),
    so a 100 KB message yields to small messages every 2 KiB."""
    transaction_timeout: float = TRANSACTION_TIMEOUT
    """Seconds to wait for a response to a request that asked for one (§7.3)."""
    reassembly_timeout: float = 120.0
    """Seconds of silence after which an incomplete incoming message is dropped; the RFC
    sets no figure, 120 s is four transaction timeouts."""
    max_incomplete_messages: int = 16
    """Incoming messages being reassembled at once per session; the next one gets 413
    ([ours]: §10's "do not send this message" is the closest code). Bounds memory to
    max_incomplete_messages * max_message_size per session."""
    max_outstanding_chunks: int = 16
    """Chunks awaiting a response per connection before we hold further chunks back; a
    window of 16 x 2 KiB keeps the pipe full without starving other sessions."""
    max_queued_messages: int = 256
    """Outgoing messages waiting per session; beyond it send_message refuses."""
    max_tracked_messages: int = 1024
    """Sent messages remembered per session to match late REPORTs (§7.1.2)."""
    max_sessions_per_connection: int = 32
    """Sessions one connection may carry (§5.4 allows sharing); more are refused 403."""
    max_sessions_per_peer: int = 64
    """Sessions towards one peer host; more raise SessionLimitError at creation."""
    max_sessions: int = 10000
    """Sessions in one table (whole gateway)."""

    def __post_init__(self) -> None:
        positive = (
            self.max_message_size,
            self.chunk_size,
            self.max_incomplete_messages,
            self.max_outstanding_chunks,
            self.max_queued_messages,
            self.max_tracked_messages,
            self.max_sessions_per_connection,
            self.max_sessions_per_peer,
            self.max_sessions,
        )
        if any(value < 1 for value in positive):
            raise LocalMsrpError("MSRP limits must be positive")
        if self.transaction_timeout <= 0 or self.reassembly_timeout <= 0:
            raise LocalMsrpError("MSRP timers must be positive")
