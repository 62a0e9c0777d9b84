"""Events of the INVITE session layer, and its read-only view of a session.

The :class:`~.invite.InviteManager` queues these; the runtime drains them with
``next_event()``. Each is a frozen, slotted dataclass (design practice 5).

Per session the runtime sees exactly one *terminal* event, after which the layer has
forgotten the session (``get()`` returns None), whoever ended it, the runtime included:

* :class:`SessionFailed`: an INVITE we sent got no 2xx (a non-2xx final response, a
  timeout, a transport failure, or an unusable 2xx);
* :class:`SessionEnded`: any other end (BYE either way, CANCEL either way, a refused or
  unanswered incoming INVITE, no ACK for our 2xx).

Non-terminal events: :class:`InviteReceived` (first for an incoming session),
:class:`SessionProgress` (a 1xx to our INVITE), :class:`SessionAnswered` (a 2xx to our
INVITE; the layer has sent the ACK) and :class:`SessionConfirmed` (the ACK for our 2xx).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, Literal

from .address import TransportAddress
from .message import Request, Response

__all__ = [
    "END_BYE",
    "END_BYE_FAILED",
    "END_CANCEL",
    "END_NO_ACK",
    "END_NO_ANSWER",
    "END_REJECTED",
    "END_TRANSPORT",
    "EndReason",
    "InviteReceived",
    "InviteRole",
    "InviteSessionView",
    "SessionAnswered",
    "SessionConfirmed",
    "SessionEnded",
    "SessionEvent",
    "SessionFailed",
    "SessionProgress",
    "TERMINAL_EVENTS",
]

#: A BYE ended the session: the peer's (answered 200), or ours (answered 2xx or 481,
#: RFC 3261 §15.1.1).
END_BYE: Final = "bye"
#: Our BYE got no answer, or a failure other than 481; the session is over anyway
#: (RFC 3261 §15.1.1: "the UAC MUST consider the session terminated ... as soon as the
#: BYE request is passed to the client transaction").
END_BYE_FAILED: Final = "bye-failed"
#: A CANCEL ended a session before its 2xx: the peer's (we answered 487), or ours.
END_CANCEL: Final = "cancel"
#: We answered 2xx and no ACK came in 64*T1; the layer sent a BYE (RFC 3261 §13.3.1.4).
END_NO_ACK: Final = "no-ack"
#: The runtime did not answer an incoming INVITE in time; the layer refused it (480, or
#: 487 when the INVITE's Expires ran out first, §13.3.1).
END_NO_ANSWER: Final = "no-answer"
#: The runtime refused an incoming INVITE (``reject()``, or ``bye()`` before answering).
END_REJECTED: Final = "rejected"
#: The transport failed under the INVITE server transaction (RFC 3261 §17.2.4).
END_TRANSPORT: Final = "transport-error"

EndReason = Literal[
    "bye", "bye-failed", "cancel", "no-ack", "no-answer", "rejected", "transport-error"
]


class InviteRole(enum.StrEnum):
    """Which side of the INVITE the gateway is on."""

    #: We sent the INVITE (an XMPP user starts a chat, RFC 7573 §4).
    UAC = "uac"
    #: We received it (a SIP user starts a chat with an XMPP user, RFC 7573 §5).
    UAS = "uas"


@dataclass(frozen=True, slots=True)
class InviteReceived:
    """An INVITE for a new session, validated; the runtime answers it with ``ringing``
    (optional), then ``answer`` or ``reject``, within ``InviteConfig.answer_timeout``."""

    session_id: str
    #: The INVITE as received (top Via stamped with received/rport).
    request: Request
    source: TransportAddress
    #: The session description (the SDP offer), or empty for an INVITE without offer:
    #: then ``answer`` carries the offer and the answer comes in the ACK
    #: (:class:`SessionConfirmed`), RFC 3261 §13.2.1.
    body: bytes
    content_type: str | None


@dataclass(frozen=True, slots=True)
class SessionProgress:
    """A provisional response (101-199) to our INVITE, e.g. 180 Ringing."""

    session_id: str
    status: int
    reason: str
    body: bytes
    content_type: str | None


@dataclass(frozen=True, slots=True)
class SessionAnswered:
    """A 2xx to our INVITE: the dialog is confirmed and the layer sent the ACK
    (RFC 3261 §13.2.2.4). ``body`` is the SDP answer."""

    session_id: str
    response: Response
    body: bytes
    content_type: str | None


@dataclass(frozen=True, slots=True)
class SessionConfirmed:
    """The ACK for our 2xx arrived (RFC 3261 §13.3.1.4); the layer stopped retransmitting.

    ``body`` is empty unless the INVITE had no offer: then it is the answer to the offer
    our 2xx carried (§13.2.1)."""

    session_id: str
    body: bytes
    content_type: str | None


@dataclass(frozen=True, slots=True)
class SessionFailed:
    """Terminal: our INVITE did not set up a session.

    ``status`` is the final response's code; a timeout (Timer B, the layer's ring timeout)
    counts as 408 and a transport failure as 503 (RFC 3261 §8.1.3.1); a 2xx the layer
    could not use (no usable Contact, To tag or Record-Route) as 502, after the layer
    acknowledged it and ended that dialog with a BYE.
    """

    session_id: str
    status: int
    reason: str
    #: Retry-After seconds of the response, if any (RFC 3261 §20.33).
    retry_after: int | None


@dataclass(frozen=True, slots=True)
class SessionEnded:
    """Terminal: the session (or the attempt at one) is over."""

    session_id: str
    #: Who ended it: "remote" (the peer's request, or the network) or "local" (the runtime,
    #: or one of the layer's own timers).
    by: Literal["remote", "local"]
    #: One of the ``END_*`` constants.
    reason: EndReason


SessionEvent = (
    InviteReceived
    | SessionProgress
    | SessionAnswered
    | SessionConfirmed
    | SessionFailed
    | SessionEnded
)

#: The event types that end a session.
TERMINAL_EVENTS: tuple[type[SessionFailed], type[SessionEnded]] = (SessionFailed, SessionEnded)


@dataclass(frozen=True, slots=True)
class InviteSessionView:
    """A read-only snapshot of one session (``InviteManager.get``)."""

    session_id: str
    role: InviteRole
    #: ``SessionState`` value, e.g. "calling", "received", "confirmed".
    state: str
    #: Call-ID of the dialog (RFC 7573 §5 maps it to the XMPP ``<thread/>``).
    call_id: str
    local_tag: str
    #: None until the peer's tag is known (UAC before the 2xx).
    remote_tag: str | None
    #: Our URI (From of what we send) and the peer's (To of what we send).
    local_uri: str
    remote_uri: str
    #: The peer's Contact (our Request-URI for in-dialog requests).
    remote_target: str
