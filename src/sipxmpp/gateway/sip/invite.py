"""INVITE sessions (RFC 3261 §13-§15) in both roles, sans-I/O.

Theory of operation
-------------------
:class:`InviteManager` is the layer above :class:`~.core.SipEndpoint` that sets up and
tears down INVITE dialogs: the signalling half of an MSRP chat session (RFC 7573,
RFC 4975 §8; the SDP itself is :mod:`.sdp`'s business, carried here as opaque bodies).
It has the shape of its sibling :class:`~.subscription.SubscriptionManager`: the runtime
hands it every endpoint event (``handle_sip_event``, which says whether the event was
the layer's), drains ``next_event()``, and keeps a timer armed at ``next_deadline()``
that calls ``handle_timer(now)``. The layer sends through the endpoint directly, so
after any call the runtime also drains the endpoint's ``data_to_send()``.

What the layer owns
    Every INVITE, ACK, CANCEL and BYE request the endpoint reports, and every outcome of
    a transaction of those methods; also any other request that falls inside one of its
    dialogs (answered 200 for OPTIONS, 405 with Allow for a method we know but do not
    support in a session, such as UPDATE, INFO or PRACK, RFC 3261 §8.2.1; 501 for an
    unknown one, §21.5.2). A BYE or re-INVITE for an unknown dialog gets 481 (§15.1.2,
    §12.2.2); an in-dialog request out of CSeq order gets 500 (§12.2.2).

What the transaction layer already does (RFC 6026), and what is left to this layer
    The INVITE server transaction sends 100 Trying, absorbs INVITE retransmissions, and
    after our 2xx stays "Accepted" for Timer L: the 2xx is retransmitted only when this
    layer hands it over again, and an ACK for it (a new transaction by §17.2.3) is passed
    up through that transaction. So the layer retransmits its 2xx itself (§13.3.1.4: T1,
    doubling up to T2, on every transport, since the 2xx crosses hops end to end) until
    the ACK arrives, and after 64*T1 without one ends the session with a BYE.

    The INVITE client transaction ACKs non-2xx responses itself (§17.1.1.3) and, in its
    "Accepted" state (Timer M), passes up every 2xx, retransmissions and other forks
    included. The layer ACKs each one (§13.2.2.4: an in-dialog request with the INVITE's
    CSeq number; the same ACK again for a retransmission of a 2xx it has seen, by To
    tag). The first usable 2xx confirms the session; a 2xx from any other fork, or one
    arriving after the session was cancelled or ended, is acknowledged and its dialog
    ended at once with a BYE (§13.2.2.4: "the UAC core MUST generate an ACK ... if ...
    the UAC does not want to continue with that dialog, then the UAC MUST terminate the
    dialog by sending a BYE"). A 2xx the layer cannot use (no Contact, §13.3.1.4's MUST;
    malformed Record-Route) is treated the same way and the session fails with 502.

CANCEL (§9)
    As UAC, ``cancel()`` goes through ``SipEndpoint.cancel``, which holds the CANCEL until
    a provisional response arrives (§9.1: "the client MUST wait for the arrival of a
    provisional response"). A session being cancelled ends at its INVITE's final response
    (whatever it is), at Timer B, or 64*T1 after the cancel was asked for ("If there is
    no final response for the original request in 64*T1 seconds ... the client SHOULD
    then consider the original transaction cancelled"). An outgoing INVITE with no
    final response after ``InviteConfig.ring_timeout`` is cancelled the same way and
    reported as failed with 408. As UAS, a CANCEL of a session not yet answered is
    answered 200, the INVITE 487 (§9.2); otherwise just 200 ("the CANCEL request has no
    effect on the processing of the original request"). A CANCEL matching no INVITE
    transaction gets 481 from the endpoint already.

BYE (§15)
    ``bye()`` on a confirmed session sends a BYE; the session ends when its transaction
    does (2xx or 481: :data:`~.invite_events.END_BYE`; anything else, a timeout or a
    transport failure: :data:`~.invite_events.END_BYE_FAILED`). On a session not yet
    confirmed ``bye()`` does what is allowed: a UAC cancels (§15: a BYE needs a dialog);
    a UAS refuses the INVITE (480) if it has not answered, and after its 2xx holds the
    BYE until the ACK arrives or 64*T1 pass (§15: "the callee's UA MUST NOT send a BYE
    on a confirmed dialog until it has received an ACK for its 2xx response or until the
    server transaction times out"). A BYE received on the early dialog of an INVITE we
    have not answered (the caller's right, §15) is answered 200 and the INVITE 487
    (§15.1.2). ``cancel()`` and ``bye()`` are therefore the same call: "end this
    session, whatever its state".

Session modification (§14)
    The gateway does not modify sessions: a re-INVITE is refused politely and the session
    continues. In a confirmed dialog: 488 Not Acceptable Here with a Warning (§14.2,
    §21.4.26). While our 2xx awaits its ACK (an INVITE transaction in progress, which
    §14.1 forbids the peer to overlap): 491 Request Pending. Before our final response to
    the initial INVITE: 500 with a Retry-After of 0-10 s (§14.2's MUST). In a session we
    are tearing down: 481.

Checks on an incoming INVITE (before the runtime sees it)
    420 with Unsupported for a Require option tag we lack (§8.2.2.3; we support none);
    415 with Accept / Accept-Encoding for a body that is not one of
    ``InviteConfig.accept_types`` or is encoded (§8.2.3); 400 for what a dialog needs and
    lacks (Contact, §8.1.1.8; From tag; a malformed Record-Route or Expires); 482 for a
    merged request (§8.2.2.2: same From tag, Call-ID and CSeq as a live INVITE but
    another transaction); 503 with Retry-After over ``max_sessions``. Max-Forwards 0 is
    answered 483 by the endpoint before the layer sees the request. An INVITE that is
    not answered by the runtime in ``answer_timeout`` seconds (or before its own Expires,
    §13.3.1) is refused 480 (487 for Expires).

State machines as tables
    :data:`UAC_TABLE` and :data:`UAS_TABLE` are ``{state: {input: (next_state,
    action)}}`` (design practice 3). A network or timer input without a row in the
    current state is absorbed; a runtime call without one raises
    :class:`~.errors.LocalSipError` (a bug in the caller). A call naming a session that no
    longer exists (it may have ended while the runtime was busy) is ignored.
    :func:`render_invite_tables` prints both for review.

Timers
    Each session has at most two deadlines at once (answer; 2xx retransmission and no-ACK;
    ring; cancel) and each outgoing INVITE record one (its clean-up check); the earliest
    of each object is its one heap entry, with lazy deletion as in the transaction layer.

Events
    See :mod:`.invite_events`: exactly one terminal event (``SessionFailed`` or
    ``SessionEnded``) per session, whoever ended it.
"""

from __future__ import annotations

import enum
import hashlib
import heapq
import itertools
import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from .address import TransportAddress
from .build import make_response
from .core import SipEndpoint
from .dialog import Dialog, contact_target
from .errors import LocalSipError, RemoteSipError
from .events import (
    RequestReceived,
    ResponseReceived,
    SipEvent,
    TransactionTimedOut,
    TransportFailed,
)
from .grammar import (
    is_token,
    parse_any_uri,
    parse_cseq,
    parse_delta_seconds,
    parse_name_addr,
)
from .ids import IdGenerator
from .invite_events import (
    END_BYE,
    END_BYE_FAILED,
    END_CANCEL,
    END_NO_ACK,
    END_NO_ANSWER,
    END_REJECTED,
    END_TRANSPORT,
    EndReason,
    InviteReceived,
    InviteRole,
    InviteSessionView,
    SessionAnswered,
    SessionConfirmed,
    SessionEnded,
    SessionEvent,
    SessionFailed,
    SessionProgress,
)
from .message import Request, Response
from .options import GATEWAY_CAPABILITIES
from .parser import KNOWN_METHODS

__all__ = [
    "ANSWER_TIMEOUT",
    "IN_DIALOG_ALLOW",
    "INVITE_METHODS",
    "InviteConfig",
    "InviteManager",
    "MAX_FORKS",
    "MAX_SESSIONS",
    "RING_TIMEOUT",
    "SessionAction",
    "SessionInput",
    "SessionState",
    "UAC_TABLE",
    "UAS_TABLE",
    "render_invite_tables",
]

#: Seconds the runtime has to ``answer``/``reject`` an incoming INVITE before the layer
#: refuses it with 480. RFC 7573 §5 has the gateway answer on the XMPP user's behalf, so
#: the answer needs no human; a minute is generous and stays well below the transaction
#: layer's own INVITE deadline (181 s), after which it would answer 408 by itself.
ANSWER_TIMEOUT = 60.0

#: Seconds an INVITE we sent may go without a final response before the layer cancels
#: it (RFC 3261 §9.1) and reports 408. Below Timer C (181 s, which ends the client
#: transaction in "Proceeding"), so that the CANCEL still finds the callee's transaction
#: and stops its ringing, which a plain timeout would leave going.
RING_TIMEOUT = 120.0

#: Cap on live sessions (both roles). Each chat session also holds an MSRP connection
#: (a file descriptor) in the runtime; 20,000 stays well inside the usual 65,536
#: descriptor limit next to the SIP and XMPP sockets, and bounds the layer's memory (a
#: session is a dialog and a few fields, about 2 KB) at a few tens of MB.
MAX_SESSIONS = 20_000

#: Retry-After (seconds) of the 503 sent when the session table is full (RFC 3261
#: §21.5.4): chat sessions end at human pace, so sooner than this is unlikely to help.
OVERLOAD_RETRY_AFTER = 30

#: Forks of one outgoing INVITE whose ACK is remembered for their 2xx retransmissions.
#: Each fork is a proxy's branch; 16 covers any real forking proxy. A 2xx from a fork
#: beyond that is still acknowledged and ended with a BYE, but its retransmissions are
#: handled as if new (another ACK and BYE, which the peer answers 481): bounded work,
#: bounded memory.
MAX_FORKS = 16

#: RFC 3261 §14.2: the 500 to an overlapping INVITE carries "a randomly chosen value of
#: between 0 and 10 seconds" in Retry-After.
MAX_REINVITE_RETRY_AFTER = 10

#: Methods the layer owns outright (their requests and their transactions' outcomes).
INVITE_METHODS: frozenset[str] = frozenset({"INVITE", "ACK", "CANCEL", "BYE"})

#: Allow of the 405/501 answers inside a session's dialog: what the session usage
#: accepts (RFC 3261 §8.2.1: "The UAS MUST also add an Allow header field").
IN_DIALOG_ALLOW: tuple[str, ...] = ("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS")

#: Option tags (RFC 3261 §19.2) the layer supports in Require: none (no 100rel, no
#: session timers), so any Require gets 420 (§8.2.2.3).
SUPPORTED_OPTION_TAGS: frozenset[str] = frozenset()

_identity_hash = object.__hash__


# --- configuration ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InviteConfig:
    """Configuration of an :class:`InviteManager` (plain data, design practice 15)."""

    #: See :data:`ANSWER_TIMEOUT`.
    answer_timeout: float = ANSWER_TIMEOUT
    #: See :data:`RING_TIMEOUT`.
    ring_timeout: float = RING_TIMEOUT
    #: See :data:`MAX_SESSIONS`.
    max_sessions: int = MAX_SESSIONS
    #: Seconds our 2xx waits for its ACK before the layer ends the session with a BYE
    #: (RFC 3261 §13.3.1.4: "for 64*T1 seconds"). None: 64*T1 of the endpoint's timers.
    no_ack_timeout: float | None = None
    #: Seconds a cancelled INVITE may wait for its final response before it is
    #: considered cancelled (RFC 3261 §9.1: 64*T1). None: 64*T1 of the endpoint's timers.
    cancel_timeout: float | None = None
    #: See :data:`OVERLOAD_RETRY_AFTER`.
    overload_retry_after: int = OVERLOAD_RETRY_AFTER
    #: Body types accepted in an incoming INVITE (others get 415, RFC 3261 §8.2.3).
    accept_types: tuple[str, ...] = ("application/sdp",)
    #: Allow of our INVITEs and 2xx (RFC 3261 §13.2.1, §13.3.1.4: "SHOULD"): every method
    #: the gateway supports.
    allow: tuple[str, ...] = GATEWAY_CAPABILITIES.allow

    def __post_init__(self) -> None:
        for name in ("answer_timeout", "ring_timeout"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds")
        for name in ("no_ack_timeout", "cancel_timeout"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be positive (or None for 64*T1)")
        if self.max_sessions < 1:
            raise ValueError("max_sessions must be positive")
        if self.overload_retry_after < 0:
            raise ValueError("overload_retry_after must not be negative")
        if not self.accept_types or not all(
            "/" in t and "," not in t and "\r" not in t and "\n" not in t for t in self.accept_types
        ):
            raise ValueError("accept_types must be media types")
        if not all(is_token(m) for m in self.allow):
            raise ValueError("allow must list method tokens")


# --- state machines --------------------------------------------------------------------


class SessionState(enum.Enum):
    """States of a session. UAC: CALLING -> PROCEEDING -> CONFIRMED, or CANCELLING.
    UAS: RECEIVED -> ANSWERED -> CONFIRMED (or ENDING: 2xx sent, BYE held for the ACK).
    Both: TERMINATING (our BYE is out) -> TERMINATED (forgotten at once)."""

    __hash__ = _identity_hash

    CALLING = "calling"
    PROCEEDING = "proceeding"
    CANCELLING = "cancelling"
    RECEIVED = "received"
    ANSWERED = "answered"
    ENDING = "ending"
    CONFIRMED = "confirmed"
    TERMINATING = "terminating"
    TERMINATED = "terminated"


class SessionInput(enum.Enum):
    __hash__ = _identity_hash

    # Outcomes of our INVITE (UAC).
    RESP_1XX = "1xx to INVITE"
    RESP_2XX = "2xx to INVITE (ACK sent)"
    RESP_2XX_INVALID = "unusable 2xx to INVITE (ACK sent)"
    RESP_300_699 = "300-699 to INVITE"
    TIMER_B = "INVITE timed out (Timer B/C)"
    TRANSPORT_ERROR = "transport error (§17.1.4, §17.2.4)"
    TIMER_RING = "ring timeout"
    TIMER_CANCEL = "64*T1 after CANCEL (§9.1)"
    # Requests received.
    RECV_ACK = "ACK"
    RECV_BYE = "BYE"
    RECV_CANCEL = "CANCEL"
    RECV_REINVITE = "re-INVITE"
    # UAS timers.
    TIMER_ANSWER = "answer deadline"
    TIMER_2XX = "2xx retransmission (§13.3.1.4)"
    TIMER_NO_ACK = "no ACK in 64*T1 (§13.3.1.4)"
    # Outcome of our BYE.
    BYE_2XX = "2xx or 481 to BYE"
    BYE_FAILED = "BYE failed or timed out"
    # Runtime calls.
    TU_RINGING = "ringing()"
    TU_ANSWER = "answer()"
    TU_REJECT = "reject()"
    TU_CANCEL = "cancel()"
    TU_BYE = "bye()"


class SessionAction(enum.Enum):
    __hash__ = _identity_hash

    NONE = "-"
    # UAC
    REPORT_PROGRESS = "report progress (101-199)"
    REPORT_ANSWERED = "confirm dialog + report answered"
    REPORT_FAILED = "report failed"
    SEND_CANCEL = "CANCEL (held until a 1xx, §9.1)"
    REPORT_CANCELLED = "report cancelled (or ring timeout: failed 408)"
    BYE_CANCELLED = "BYE the 2xx's dialog + report cancelled"
    BYE_INVALID = "BYE the 2xx's dialog + report failed 502"
    BYE_FORK = "BYE the other fork's dialog (§13.2.2.4)"
    # UAS
    SEND_PROVISIONAL = "send 180"
    SEND_2XX = "send 2xx, start retransmission and no-ACK timers"
    RESEND_2XX = "resend 2xx, interval=min(2*interval, T2)"
    SEND_REJECT = "send the runtime's failure + report rejected"
    DECLINE = "480 + report rejected"
    NO_ANSWER = "480 (487 after Expires) + report no-answer"
    ACCEPT_CANCEL = "200 CANCEL + 487 INVITE + report cancelled"
    ACCEPT_CANCEL_LATE = "200 CANCEL (no effect, §9.2)"
    REPORT_CONFIRMED = "report confirmed"
    BYE_NO_ACK = "BYE + report no-ack"
    REPORT_TRANSPORT = "report transport error"
    # Both
    SEND_BYE = "send BYE"
    ACCEPT_BYE = "200 BYE + report ended by remote"
    ACCEPT_BYE_EARLY = "200 BYE + 487 INVITE + report ended by remote"
    ACCEPT_BYE_CROSSING = "200 BYE"
    REPORT_BYE_DONE = "report ended: bye"
    REPORT_BYE_FAILED = "report ended: bye-failed"
    REFUSE_488 = "488 + Warning (§14.2)"
    REFUSE_491 = "491 (§14.2)"
    REFUSE_500 = "500 + Retry-After 0-10 (§14.2)"
    REFUSE_481 = "481"


_S = SessionState
_I = SessionInput
_A = SessionAction

_Table = dict[SessionState, dict[SessionInput, tuple[SessionState, SessionAction]]]


def _uac_calling_rows() -> dict[SessionInput, tuple[_S, _A]]:
    """CALLING and PROCEEDING: no dialog is confirmed yet, so no in-dialog request can
    reach the session (the layer indexes a UAC dialog at its 2xx)."""
    return {
        _I.RESP_1XX: (_S.PROCEEDING, _A.REPORT_PROGRESS),
        _I.RESP_2XX: (_S.CONFIRMED, _A.REPORT_ANSWERED),
        _I.RESP_2XX_INVALID: (_S.TERMINATED, _A.BYE_INVALID),
        _I.RESP_300_699: (_S.TERMINATED, _A.REPORT_FAILED),
        _I.TIMER_B: (_S.TERMINATED, _A.REPORT_FAILED),
        _I.TRANSPORT_ERROR: (_S.TERMINATED, _A.REPORT_FAILED),
        _I.TIMER_RING: (_S.CANCELLING, _A.SEND_CANCEL),
        _I.TU_CANCEL: (_S.CANCELLING, _A.SEND_CANCEL),
        _I.TU_BYE: (_S.CANCELLING, _A.SEND_CANCEL),
    }


def _terminating_rows() -> dict[SessionInput, tuple[_S, _A]]:
    """Our BYE is out: the session is over for us (§15.1.1), the dialog not quite yet."""
    return {
        _I.RESP_2XX: (_S.TERMINATING, _A.BYE_FORK),
        _I.RESP_2XX_INVALID: (_S.TERMINATING, _A.BYE_FORK),
        _I.RECV_ACK: (_S.TERMINATING, _A.NONE),
        _I.RECV_BYE: (_S.TERMINATING, _A.ACCEPT_BYE_CROSSING),
        _I.RECV_CANCEL: (_S.TERMINATING, _A.ACCEPT_CANCEL_LATE),
        _I.RECV_REINVITE: (_S.TERMINATING, _A.REFUSE_481),
        _I.BYE_2XX: (_S.TERMINATED, _A.REPORT_BYE_DONE),
        _I.BYE_FAILED: (_S.TERMINATED, _A.REPORT_BYE_FAILED),
        _I.TU_CANCEL: (_S.TERMINATING, _A.NONE),
        _I.TU_BYE: (_S.TERMINATING, _A.NONE),
    }


#: The UAC's machine (RFC 3261 §13.2, §9.1, §15). TERMINATED has no rows.
UAC_TABLE: _Table = {
    _S.CALLING: _uac_calling_rows(),
    _S.PROCEEDING: _uac_calling_rows(),
    _S.CANCELLING: {
        _I.RESP_1XX: (_S.CANCELLING, _A.NONE),
        _I.RESP_2XX: (_S.TERMINATED, _A.BYE_CANCELLED),
        _I.RESP_2XX_INVALID: (_S.TERMINATED, _A.BYE_CANCELLED),
        _I.RESP_300_699: (_S.TERMINATED, _A.REPORT_CANCELLED),
        _I.TIMER_B: (_S.TERMINATED, _A.REPORT_CANCELLED),
        _I.TRANSPORT_ERROR: (_S.TERMINATED, _A.REPORT_CANCELLED),
        _I.TIMER_CANCEL: (_S.TERMINATED, _A.REPORT_CANCELLED),
        _I.TU_CANCEL: (_S.CANCELLING, _A.NONE),
        _I.TU_BYE: (_S.CANCELLING, _A.NONE),
    },
    _S.CONFIRMED: {
        _I.RESP_2XX: (_S.CONFIRMED, _A.BYE_FORK),
        _I.RESP_2XX_INVALID: (_S.CONFIRMED, _A.BYE_FORK),
        _I.RECV_BYE: (_S.TERMINATED, _A.ACCEPT_BYE),
        _I.RECV_REINVITE: (_S.CONFIRMED, _A.REFUSE_488),
        _I.TU_CANCEL: (_S.TERMINATING, _A.SEND_BYE),
        _I.TU_BYE: (_S.TERMINATING, _A.SEND_BYE),
    },
    _S.TERMINATING: _terminating_rows(),
    _S.TERMINATED: {},
}


def _uas_answered_rows(state: SessionState) -> dict[SessionInput, tuple[_S, _A]]:
    """ANSWERED and ENDING: our 2xx is out and retransmitted until the ACK."""
    held = state is _S.ENDING
    return {
        _I.TIMER_2XX: (state, _A.RESEND_2XX),
        _I.RECV_ACK: (_S.TERMINATING, _A.SEND_BYE) if held else (_S.CONFIRMED, _A.REPORT_CONFIRMED),
        _I.TIMER_NO_ACK: (_S.TERMINATING, _A.SEND_BYE) if held else (_S.TERMINATED, _A.BYE_NO_ACK),
        _I.RECV_BYE: (_S.TERMINATED, _A.ACCEPT_BYE),
        _I.RECV_CANCEL: (state, _A.ACCEPT_CANCEL_LATE),
        _I.RECV_REINVITE: (state, _A.REFUSE_491),
        _I.TRANSPORT_ERROR: (_S.TERMINATED, _A.REPORT_TRANSPORT),
        _I.TU_CANCEL: (_S.ENDING, _A.NONE),
        _I.TU_BYE: (_S.ENDING, _A.NONE),
    }


#: The UAS's machine (RFC 3261 §13.3, §9.2, §14.2, §15). TERMINATED has no rows.
UAS_TABLE: _Table = {
    _S.RECEIVED: {
        _I.TU_RINGING: (_S.RECEIVED, _A.SEND_PROVISIONAL),
        _I.TU_ANSWER: (_S.ANSWERED, _A.SEND_2XX),
        _I.TU_REJECT: (_S.TERMINATED, _A.SEND_REJECT),
        _I.TU_CANCEL: (_S.TERMINATED, _A.DECLINE),
        _I.TU_BYE: (_S.TERMINATED, _A.DECLINE),
        _I.RECV_CANCEL: (_S.TERMINATED, _A.ACCEPT_CANCEL),
        _I.RECV_BYE: (_S.TERMINATED, _A.ACCEPT_BYE_EARLY),
        _I.RECV_REINVITE: (_S.RECEIVED, _A.REFUSE_500),
        _I.TIMER_ANSWER: (_S.TERMINATED, _A.NO_ANSWER),
        _I.TRANSPORT_ERROR: (_S.TERMINATED, _A.REPORT_TRANSPORT),
    },
    _S.ANSWERED: _uas_answered_rows(_S.ANSWERED),
    _S.ENDING: _uas_answered_rows(_S.ENDING),
    _S.CONFIRMED: {
        _I.RECV_ACK: (_S.CONFIRMED, _A.NONE),
        _I.RECV_BYE: (_S.TERMINATED, _A.ACCEPT_BYE),
        _I.RECV_CANCEL: (_S.CONFIRMED, _A.ACCEPT_CANCEL_LATE),
        _I.RECV_REINVITE: (_S.CONFIRMED, _A.REFUSE_488),
        _I.TU_CANCEL: (_S.TERMINATING, _A.SEND_BYE),
        _I.TU_BYE: (_S.TERMINATING, _A.SEND_BYE),
    },
    _S.TERMINATING: _terminating_rows(),
    _S.TERMINATED: {},
}

_TU_INPUTS = frozenset({_I.TU_RINGING, _I.TU_ANSWER, _I.TU_REJECT, _I.TU_CANCEL, _I.TU_BYE})


def render_invite_tables() -> str:
    """Both machines as text, for checking against RFC 3261 §13-§15."""
    lines: list[str] = []
    for title, table in (
        ("UAC (RFC 3261 §13.2, §9.1, §15)", UAC_TABLE),
        ("UAS (RFC 3261 §13.3, §9.2, §14.2, §15)", UAS_TABLE),
    ):
        lines += [title, "=" * len(title)]
        for state, rows in table.items():
            if not rows:
                lines.append(f"{state.value}: (forgotten at once)")
                continue
            lines.append(state.value)
            for inp, (nxt, action) in rows.items():
                arrow = "(stay)" if nxt is state else f"-> {nxt.value}"
                lines.append(f"    {inp.value:<36} / {action.value:<52} {arrow}")
        lines.append("")
    return "\n".join(lines)


# --- records ---------------------------------------------------------------------------


class _Session:
    """One session. Slotted: only the fields its state needs are set."""

    __slots__ = (
        "id",
        "role",
        "state",
        "dialog",
        "invite",
        "invite_tx",
        "source",
        "response",
        "answer_at",
        "answer_status",
        "ring_at",
        "cancel_at",
        "retransmit_at",
        "interval",
        "no_ack_at",
        "timed_out",
        "bye_tx",
        "record",
        "merged_key",
        "scheduled",
    )

    def __init__(
        self,
        session_id: str,
        role: InviteRole,
        state: SessionState,
        dialog: Dialog,
        invite: Request,
        invite_tx: str,
    ) -> None:
        self.id = session_id
        self.role = role
        self.state = state
        self.dialog = dialog
        #: The INVITE (as received, or as we built it without Via).
        self.invite = invite
        self.invite_tx = invite_tx
        #: UAS: where the INVITE came from.
        self.source: TransportAddress | None = None
        #: UAS: our 2xx, retransmitted until the ACK.
        self.response: Response | None = None
        self.answer_at: float | None = None
        self.answer_status = 480
        self.ring_at: float | None = None
        self.cancel_at: float | None = None
        self.retransmit_at: float | None = None
        self.interval = 0.0
        self.no_ack_at: float | None = None
        #: UAC: the cancel came from the ring timeout (report 408, not "cancel").
        self.timed_out = False
        #: Our BYE's client transaction, while it runs.
        self.bye_tx: str | None = None
        #: UAC: the record of our INVITE's client transaction.
        self.record: _UacInvite | None = None
        #: UAS: (Call-ID, From tag, CSeq) of the INVITE (§8.2.2.2 merged requests).
        self.merged_key: tuple[str, str, int] | None = None
        self.scheduled: float | None = None


class _UacInvite:
    """An INVITE we sent, while its client transaction may still pass 2xx responses up
    (RFC 6026 §8.4): the ACK of each fork, by To tag, and how to make a fork's dialog."""

    __slots__ = (
        "key",
        "session",
        "cseq",
        "base",
        "acks",
        "answered",
        "cancel_key",
        "check_at",
        "scheduled",
    )

    def __init__(self, key: str, session: _Session, cseq: int, base: Dialog) -> None:
        self.key = key
        self.session: _Session | None = session
        self.cseq = cseq
        #: A copy of the dialog as it was before any response (remote tag unknown).
        self.base = base
        self.acks: dict[str, tuple[Request, TransportAddress]] = {}
        self.answered = False
        #: Our CANCEL of it (possibly still held by the transaction layer, §9.1).
        self.cancel_key: str | None = None
        #: When to check whether the client transaction is gone.
        self.check_at: float | None = None
        self.scheduled: float | None = None

    def fork_dialog(self) -> Dialog:
        b = self.base
        return Dialog(
            call_id=b.call_id,
            local_tag=b.local_tag,
            local_uri=b.local_uri,
            remote_uri=b.remote_uri,
            remote_target=b.remote_target,
            destination=b.destination,
            local_cseq=self.cseq,
            secure=b.secure,
        )


class _Refusal(Exception):
    """A request the layer answers with a failure (internal control flow)."""

    def __init__(
        self, status: int, reason: str | None = None, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(status)
        self.status = status
        self.reason = reason
        self.headers = headers


@dataclass(frozen=True, slots=True)
class _Args:
    """What an input carries to its action."""

    event: RequestReceived | None = None
    response: Response | None = None
    status: int = 0
    reason: str = ""
    retry_after: int | None = None
    dialog: Dialog | None = None
    invalid: str | None = None


_NO_ARGS = _Args()

#: Fields the layer writes itself into an INVITE / a response; the runtime's extra
#: headers may not repeat them.
_INVITE_OWN = frozenset({"contact", "content-type", "allow", "subject", "require"})
_RESPONSE_OWN = frozenset({"contact", "content-type", "allow"})
_FAILURE_OWN = frozenset({"content-type"})

_Heaped = _Session | _UacInvite


# --- the manager -----------------------------------------------------------------------


class InviteManager:
    """Every INVITE session of one endpoint, in both roles. See the module docstring."""

    def __init__(
        self,
        endpoint: SipEndpoint,
        config: InviteConfig,
        ids: IdGenerator,
        contact: Callable[[str], str],
    ) -> None:
        ep_cfg = endpoint.config
        if config.answer_timeout >= ep_cfg.invite_tu_deadline:
            raise ValueError(
                "answer_timeout must be below the endpoint's invite_tu_deadline, or the "
                "transaction layer answers 408 first"
            )
        self._ep = endpoint
        self._cfg = config
        self._ids = ids
        self._contact_of = contact
        timers = ep_cfg.timers
        self._t1 = timers.t1
        self._t2 = timers.t2
        self._t4 = timers.t4
        self._no_ack = config.no_ack_timeout or 64 * timers.t1
        self._cancel_wait = config.cancel_timeout or 64 * timers.t1
        self._events: deque[SessionEvent] = deque()
        self._sessions: dict[str, _Session] = {}
        #: (Call-ID, local tag, remote tag) -> session.
        self._dialogs: dict[tuple[str, str, str], _Session] = {}
        #: UAS: INVITE server transaction -> session (ACK and CANCEL matching).
        self._by_server_tx: dict[str, _Session] = {}
        #: UAS: (Call-ID, From tag, CSeq) -> session (§8.2.2.2).
        self._merged: dict[tuple[str, str, int], _Session] = {}
        #: UAC: INVITE client transaction -> its record.
        self._invites: dict[str, _UacInvite] = {}
        #: Our BYE client transactions -> session.
        self._byes: dict[str, _Session] = {}
        #: BYEs ending dialogs no session wants, and our CANCELs: claimed, then forgotten
        #: at their final outcome (a non-INVITE transaction always has one).
        self._orphans: set[str] = set()
        self._cancels: set[str] = set()
        self._heap: list[tuple[float, int, _Heaped]] = []
        self._seq = itertools.count()
        self._allow = ", ".join(config.allow)
        self._in_dialog_allow = ", ".join(IN_DIALOG_ALLOW)
        self._accept = ", ".join(config.accept_types)
        self._accept_set = frozenset(t.lower() for t in config.accept_types)

    # -- feeding -------------------------------------------------------------------------

    def handle_sip_event(self, event: SipEvent, now: float) -> bool:
        """Take an endpoint event; True if it was the layer's: every INVITE, ACK, CANCEL
        and BYE request, a request inside one of its dialogs, and the outcome of every
        transaction it started or of a live session's INVITE server transaction."""
        if isinstance(event, RequestReceived):
            return self._on_request(event, now)
        if isinstance(event, ResponseReceived):
            key = event.transaction
            final = event.response.status >= 200
            rec = self._invites.get(key)
            if rec is not None:
                self._on_invite_response(rec, event.response, now)
            elif key in self._byes:
                if final:
                    status = event.response.status
                    ok = 200 <= status < 300 or status == 481  # §15.1.1: 481 ends it too
                    self._on_bye_outcome(key, ok, now)
            elif key in self._orphans or key in self._cancels:
                if final:
                    self._orphans.discard(key)
                    self._cancels.discard(key)
            else:
                return False
            return True
        if isinstance(event, TransactionTimedOut | TransportFailed):
            key = event.transaction
            timeout = isinstance(event, TransactionTimedOut)
            rec = self._invites.get(key)
            if rec is not None:
                session = rec.session
                self._drop_record(rec)
                if session is not None and self._alive(session):
                    args = _Args(
                        status=408 if timeout else 503,
                        reason="Request Timeout" if timeout else "Service Unavailable",
                    )
                    self._step(session, _I.TIMER_B if timeout else _I.TRANSPORT_ERROR, now, args)
            elif key in self._byes:
                self._on_bye_outcome(key, False, now)
            elif key in self._orphans or key in self._cancels:
                self._orphans.discard(key)
                self._cancels.discard(key)
            elif (uas := self._by_server_tx.get(key)) is not None:
                if not timeout:
                    self._step(uas, _I.TRANSPORT_ERROR, now, _NO_ARGS)
            else:
                return False
            return True
        return False

    def next_event(self) -> SessionEvent | None:
        return self._events.popleft() if self._events else None

    def next_deadline(self) -> float | None:
        while self._heap:
            deadline, _, obj = self._heap[0]
            if obj.scheduled == deadline and self._live_obj(obj):
                return deadline
            heapq.heappop(self._heap)
        return None

    def handle_timer(self, now: float) -> None:
        # self._heap is read afresh each time: firing may rebuild it (see _schedule).
        while self._heap and self._heap[0][0] <= now:
            deadline, _, obj = heapq.heappop(self._heap)
            if obj.scheduled != deadline or not self._live_obj(obj):
                continue
            obj.scheduled = None
            if isinstance(obj, _Session):
                self._fire(obj, now)
            else:
                self._check_record(obj, now)
            if self._live_obj(obj):
                self._schedule(obj)

    # -- UAC -----------------------------------------------------------------------------

    def invite(
        self,
        *,
        request_uri: str,
        from_uri: str,
        to_uri: str,
        destination: TransportAddress,
        now: float,
        body: bytes,
        content_type: str = "application/sdp",
        headers: Iterable[tuple[str, str]] = (),
        call_id: str | None = None,
        subject: str | None = None,
        contact: str | None = None,
    ) -> str:
        """Send an INVITE with the SDP offer ``body`` in a new dialog; return the session id.

        ``headers`` are added to the INVITE (a preloaded Route serves only this request,
        RFC 3261 §12.2.1.1). ``call_id`` chooses the Call-ID (RFC 7573 §5 maps it to the
        XMPP ``<thread/>``); by default a new one. ``contact`` replaces the layer's Contact
        for this session (a name-addr; write ``<sip:...;gr=...>`` so URI parameters stay in
        the URI, RFC 3261 §20; e.g. the XMPP user's resource as GRUU, RFC 7573 §4, RFC
        5627). Raises LocalSipError for bad arguments
        and (status hint 503) when the layer or the endpoint is full.
        """
        if len(self._sessions) >= self._cfg.max_sessions:
            raise LocalSipError("too many sessions", 503, "Service Unavailable")
        if not body:
            raise LocalSipError("the INVITE must carry the SDP offer (RFC 3264 §5)")
        _check_value("Content-Type", content_type)
        extra = _check_extra(headers, _INVITE_OWN)
        try:
            local_uri = str(parse_name_addr(from_uri).uri)
            remote_uri = str(parse_name_addr(to_uri).uri)
            parse_any_uri(request_uri)
        except RemoteSipError as exc:
            raise LocalSipError(f"bad invite argument: {exc.msg}") from exc
        our_contact = self._contact(destination.transport, contact)
        fields: list[tuple[str, str]] = [("Allow", self._allow)]
        if subject is not None:
            _check_value("Subject", subject)
            fields.append(("Subject", subject))
        fields += extra
        dialog = Dialog.uac(
            call_id=self._ids.call_id() if call_id is None else call_id,
            local_tag=self._ids.tag(),
            local_uri=local_uri,
            remote_uri=remote_uri,
            request_uri=request_uri,
            destination=destination,
        )
        base = _copy_dialog(dialog)
        request = dialog.new_request(
            "INVITE",
            contact=our_contact,
            headers=fields,
            body=body,
            content_type=content_type,
        )
        # The dialog-creating request goes where the runtime resolved it (RFC 3263 is the
        # edge's); in-dialog requests follow the dialog (§12.2.1.1).
        key = self._ep.send_request(request, destination, now)
        session = _Session(self._new_id(), InviteRole.UAC, _S.CALLING, dialog, request, key)
        record = _UacInvite(key, session, dialog.local_cseq, base)
        session.record = record
        session.ring_at = now + self._cfg.ring_timeout
        self._sessions[session.id] = session
        self._invites[key] = record
        self._schedule(session)
        return session.id

    def cancel(self, session_id: str, now: float) -> None:
        """End the session whatever its state; for an INVITE we sent and that has no
        final response yet, with a CANCEL (RFC 3261 §9.1, held until a provisional
        response arrives). Same as :meth:`bye` otherwise (see the module docstring)."""
        session = self._sessions.get(session_id)
        if session is not None:
            self._step(session, _I.TU_CANCEL, now, _NO_ARGS)

    def bye(self, session_id: str, now: float) -> None:
        """End the session whatever its state: BYE on a confirmed dialog (§15.1.1),
        CANCEL before our INVITE's 2xx, 480 before our answer, BYE after the ACK when
        our 2xx awaits it (§15)."""
        session = self._sessions.get(session_id)
        if session is not None:
            self._step(session, _I.TU_BYE, now, _NO_ARGS)

    # -- UAS -----------------------------------------------------------------------------

    def ringing(
        self,
        session_id: str,
        now: float,
        headers: Iterable[tuple[str, str]] = (),
        *,
        contact: str | None = None,
    ) -> None:
        """Send 180 Ringing for an incoming INVITE not answered yet (optional; it creates
        the early dialog, with our tag and Contact, RFC 3261 §12.1.1). ``contact`` as in
        :meth:`answer`."""
        session = self._uas(session_id)
        if session is None:
            return
        response = self._build_response(
            session, 180, None, headers, b"", None, contact=True, contact_uri=contact
        )
        self._step(session, _I.TU_RINGING, now, _Args(response=response))

    def answer(
        self,
        session_id: str,
        now: float,
        body: bytes,
        content_type: str = "application/sdp",
        headers: Iterable[tuple[str, str]] = (),
        *,
        contact: str | None = None,
    ) -> None:
        """Accept an incoming INVITE: 200 with ``body`` (the SDP answer, or the offer if
        the INVITE had none, §13.2.1), Contact and Allow (§13.3.1.4). The layer
        retransmits it until the ACK (:class:`SessionConfirmed`) and ends the session
        with a BYE if none comes in 64*T1. ``contact`` replaces the layer's Contact for
        this response (e.g. the XMPP user's resource as GRUU, RFC 7573 §4)."""
        session = self._uas(session_id)
        if session is None:
            return
        if not body:
            raise LocalSipError("a 2xx to INVITE carries an answer or an offer (RFC 3264)")
        _check_value("Content-Type", content_type)
        response = self._build_response(
            session,
            200,
            None,
            headers,
            body,
            content_type,
            contact=True,
            allow=True,
            contact_uri=contact,
        )
        self._step(session, _I.TU_ANSWER, now, _Args(response=response))

    def reject(
        self,
        session_id: str,
        now: float,
        status: int,
        reason: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Refuse an incoming INVITE not answered yet with ``status`` (300-699)."""
        session = self._uas(session_id)
        if session is None:
            return
        if not isinstance(status, int) or not 300 <= status <= 699:
            raise LocalSipError(f"reject needs a status 300-699, not {status!r}")
        response = self._build_response(session, status, reason, headers, b"", None)
        self._step(session, _I.TU_REJECT, now, _Args(response=response))

    # -- introspection -------------------------------------------------------------------

    def get(self, session_id: str) -> InviteSessionView | None:
        session = self._sessions.get(session_id)
        if session is None:
            return None
        d = session.dialog
        return InviteSessionView(
            session_id=session.id,
            role=session.role,
            state=session.state.value,
            call_id=d.call_id,
            local_tag=d.local_tag,
            remote_tag=d.remote_tag,
            local_uri=d.local_uri,
            remote_uri=d.remote_uri,
            remote_target=d.remote_target,
        )

    def count(self) -> int:
        """Live sessions."""
        return len(self._sessions)

    def session_ids(self) -> list[str]:
        return list(self._sessions)

    @property
    def transactions_in_flight(self) -> int:
        """Client transactions the layer still tracks: INVITEs (2xx may still come),
        BYEs and CANCELs."""
        return len(self._invites) + len(self._byes) + len(self._orphans) + len(self._cancels)

    # -- internals: requests -------------------------------------------------------------

    def _on_request(self, event: RequestReceived, now: float) -> bool:
        method = event.request.method
        try:
            if method == "INVITE":
                self._on_invite(event, now)
            elif method == "ACK":
                self._on_ack(event, now)
            elif method == "CANCEL":
                self._on_cancel(event, now)
            elif method == "BYE":
                self._on_bye(event, now)
            else:
                return self._on_other(event, now)
        except _Refusal as ref:
            self._reply(event.request, ref.status, ref.reason, ref.headers, now=now)
        except RemoteSipError as exc:
            if method != "ACK":  # an ACK is never answered (§17.1.1.3)
                self._reply(event.request, exc.status_hint, exc.reason_hint, now=now)
        return True

    def _on_invite(self, event: RequestReceived, now: float) -> None:
        request = event.request
        if _tag_of(request, "To") is not None:
            session = self._find_dialog(request)
            if session is None:
                raise _Refusal(481, "Call/Transaction Does Not Exist")  # §12.2.2
            session.dialog.accept_remote_cseq(request)  # §12.2.2: 500 when out of order
            self._step(session, _I.RECV_REINVITE, now, _Args(event=event))
            return
        self._new_incoming(event, now)

    def _new_incoming(self, event: RequestReceived, now: float) -> None:
        request = event.request
        headers = request.headers
        # §8.2.2.3: "If a UAS does not understand an option-tag listed in a Require header
        # field, it MUST respond by generating a response with status code 420".
        unsupported = [t for t in headers.get_all("Require") if t not in SUPPORTED_OPTION_TAGS]
        if unsupported:
            if not all(is_token(t) for t in unsupported):
                raise RemoteSipError("malformed Require", 400, "Bad Require Header")
            raise _Refusal(420, None, (("Unsupported", ", ".join(unsupported)),))
        # §8.2.3: an unsupported body type or encoding gets 415 with what we accept.
        content_type = headers.get("Content-Type")
        if request.body:
            media = _media_type(content_type)
            if media is None or media not in self._accept_set:
                raise _Refusal(415, None, (("Accept", self._accept),))
            if any(e.strip().lower() != "identity" for e in headers.get_all("Content-Encoding")):
                raise _Refusal(415, None, (("Accept-Encoding", "identity"),))
        expires_value = headers.get("Expires")
        expires = None if expires_value is None else parse_delta_seconds(expires_value)
        from_tag = _tag_of(request, "From")
        if from_tag is None:
            raise RemoteSipError("From without tag", 400, "Missing From tag")
        call_id = headers.get("Call-ID") or ""
        cseq_value = headers.get("CSeq")
        if cseq_value is None:
            raise RemoteSipError("Missing CSeq", 400)
        merged_key = (call_id, from_tag, parse_cseq(cseq_value).seq)
        other = self._merged.get(merged_key)
        if other is not None and other.invite_tx != event.transaction:
            # §8.2.2.2: the same request reached us twice along different paths.
            raise _Refusal(482, "Loop Detected")
        if len(self._sessions) >= self._cfg.max_sessions:
            raise _Refusal(
                503, "Service Unavailable", (("Retry-After", str(self._cfg.overload_retry_after)),)
            )
        dialog = Dialog.uas(request, self._ids.tag(), event.source)  # §12.1.1 (400s)
        session = _Session(
            self._new_id(), InviteRole.UAS, _S.RECEIVED, dialog, request, event.transaction
        )
        session.source = event.source
        session.merged_key = merged_key
        wait = self._cfg.answer_timeout
        if expires is not None and expires < wait:
            # §13.3.1: "If the request is not answered before the expiration, the UAS
            # core SHOULD generate a 487 (Request Terminated) response".
            wait = float(expires)
            session.answer_status = 487
        session.answer_at = now + wait
        self._sessions[session.id] = session
        key = dialog.key
        assert key is not None
        self._dialogs[key] = session
        self._by_server_tx[event.transaction] = session
        self._merged[merged_key] = session
        self._events.append(
            InviteReceived(session.id, request, event.source, request.body, content_type)
        )
        self._schedule(session)

    def _on_ack(self, event: RequestReceived, now: float) -> None:
        session = self._by_server_tx.get(event.transaction)
        if session is None:
            # Not through the INVITE server transaction (it may be gone): by dialog, for
            # the CSeq of the INVITE we answered (§13.2.2.4).
            found = self._find_dialog(event.request)
            cseq_value = event.request.headers.get("CSeq")
            if (
                found is None
                or found.role is not InviteRole.UAS
                or cseq_value is None
                or parse_cseq(cseq_value).seq != _cseq_of(found.invite)
            ):
                return  # a stray or late ACK: nothing to do, nothing to answer
            session = found
        self._step(session, _I.RECV_ACK, now, _Args(event=event))

    def _on_cancel(self, event: RequestReceived, now: float) -> None:
        invite_tx = self._ep.cancelled_transaction(event.transaction)
        session = self._by_server_tx.get(invite_tx) if invite_tx is not None else None
        if session is not None:
            self._step(session, _I.RECV_CANCEL, now, _Args(event=event))
        elif invite_tx is not None:
            # §9.2: the INVITE already had its final response; the CANCEL has no effect.
            self._reply(event.request, 200, now=now)
        else:
            # §9.2: "If the UAS did not find a matching transaction for the CANCEL
            # request, it SHOULD respond to the CANCEL with a 481".
            self._reply(event.request, 481, "Call/Transaction Does Not Exist", now=now)

    def _on_bye(self, event: RequestReceived, now: float) -> None:
        session = self._find_dialog(event.request)
        if session is None:
            # §15.1.2: "If the BYE does not match an existing dialog, the UAS core SHOULD
            # generate a 481 (Call/Transaction Does Not Exist) response".
            raise _Refusal(481, "Call/Transaction Does Not Exist")
        session.dialog.accept_remote_cseq(event.request)
        self._step(session, _I.RECV_BYE, now, _Args(event=event))

    def _on_other(self, event: RequestReceived, now: float) -> bool:
        request = event.request
        try:
            session = self._find_dialog(request)
        except RemoteSipError:
            return False  # not recognisably ours; whoever owns the method answers it
        if session is None:
            return False
        session.dialog.accept_remote_cseq(request)
        method = request.method
        to_tag = session.dialog.local_tag
        if method == "OPTIONS":
            # §11: OPTIONS inside a dialog; answered with what the session accepts.
            fields = (("Allow", self._in_dialog_allow), ("Accept", self._accept))
            self._reply(request, 200, None, fields, now=now, to_tag=to_tag)
        elif method in KNOWN_METHODS:
            # §8.2.1: "If the UAS recognizes but does not support the method of a
            # request, it MUST generate a 405 (Method Not Allowed) response ... MUST also
            # add an Allow header field".
            allow = (("Allow", self._in_dialog_allow),)
            self._reply(request, 405, None, allow, now=now, to_tag=to_tag)
        else:
            allow = (("Allow", self._in_dialog_allow),)
            self._reply(request, 501, None, allow, now=now, to_tag=to_tag)
        return True

    def _find_dialog(self, request: Request) -> _Session | None:
        """The session whose dialog the request is in (§12.2.2: Call-ID, To tag as our
        tag, From tag as theirs), or None. RemoteSipError 400 for a malformed To/From."""
        to_tag = _tag_of(request, "To")
        from_tag = _tag_of(request, "From")
        if to_tag is None or from_tag is None:
            return None
        call_id = request.headers.get("Call-ID") or ""
        return self._dialogs.get((call_id, to_tag, from_tag))

    # -- internals: responses and outcomes -----------------------------------------------

    def _on_invite_response(self, rec: _UacInvite, response: Response, now: float) -> None:
        status = response.status
        session = rec.session if rec.session is not None and self._alive(rec.session) else None
        if status < 200:
            if session is not None:
                self._step(session, _I.RESP_1XX, now, _Args(response=response))
            return
        if status >= 300:
            # The transaction ACKed it (§17.1.1.3) and will pass nothing more up.
            self._drop_record(rec)
            if session is not None:
                args = _Args(
                    response=response,
                    status=status,
                    reason=response.reason,
                    retry_after=_retry_after(response),
                )
                self._step(session, _I.RESP_300_699, now, args)
            return
        self._on_2xx(rec, session, response, now)

    def _on_2xx(
        self, rec: _UacInvite, session: _Session | None, response: Response, now: float
    ) -> None:
        """§13.2.2.4: ACK every 2xx; the first usable one confirms the session."""
        if not rec.answered:
            # RFC 6026 §8.4: the transaction passes 2xx up for Timer M (64*T1).
            rec.answered = True
            rec.check_at = now + 64 * self._t1
            self._schedule(rec)
        tag = _tag_or_none(response, "To") or ""
        known = rec.acks.get(tag)
        if known is not None:
            self._send_ack(known[0], known[1], now)  # a retransmission: the same ACK again
            return
        dialog = rec.fork_dialog()
        invalid: str | None = None
        try:
            if contact_target(response) is None:
                raise RemoteSipError("2xx without Contact (RFC 3261 §13.3.1.4)", 502)
            dialog.confirm_by_response(response)  # §12.1.2
        except RemoteSipError as exc:
            invalid = exc.msg
            if tag and is_token(tag):
                dialog.remote_tag = tag  # so the ACK and BYE reach that dialog at least
        try:
            ack = dialog.new_request("ACK", cseq=rec.cseq)
        except (LocalSipError, RemoteSipError):
            return  # nothing sendable can be built from this 2xx
        hop = dialog.next_hop()
        self._send_ack(ack, hop, now)
        if len(rec.acks) < MAX_FORKS:
            rec.acks[tag] = (ack, hop)
        args = _Args(response=response, dialog=dialog, invalid=invalid)
        if session is not None:
            inp = _I.RESP_2XX if invalid is None else _I.RESP_2XX_INVALID
            self._step(session, inp, now, args)
        else:
            self._bye_orphan(dialog, now)

    def _send_ack(self, ack: Request, hop: TransportAddress, now: float) -> None:
        try:
            self._ep.send_request(ack, hop, now)
        except LocalSipError:
            pass  # no local address for that transport: nothing can be sent there

    def _on_bye_outcome(self, key: str, ok: bool, now: float) -> None:
        session = self._byes.pop(key, None)
        if session is None or session.bye_tx != key:
            return  # a BYE ending a fork or an unanswered 2xx: its outcome changes nothing
        session.bye_tx = None
        if self._alive(session):
            self._step(session, _I.BYE_2XX if ok else _I.BYE_FAILED, now, _NO_ARGS)

    # -- internals: the machine ----------------------------------------------------------

    def _step(self, session: _Session, inp: SessionInput, now: float, args: _Args) -> None:
        table = UAC_TABLE if session.role is InviteRole.UAC else UAS_TABLE
        state = session.state
        row = table[state].get(inp)
        if row is None:
            if inp in _TU_INPUTS:
                raise LocalSipError(f"{inp.value} is not allowed in state {state.value}")
            return  # absorbed
        nxt, action = row
        session.state = nxt
        _clear_stale(session)
        try:
            self._act(session, action, now, args)
        finally:
            if session.state is _S.TERMINATED:
                self._remove(session, now)
            elif self._alive(session):
                self._schedule(session)

    def _act(self, session: _Session, action: SessionAction, now: float, args: _Args) -> None:
        sid = session.id
        if action is _A.NONE:
            return
        # -- UAC --
        if action is _A.REPORT_PROGRESS:
            response = args.response
            assert response is not None
            if response.status > 100:  # 100 is hop by hop (§8.1.3.2); nothing to report
                self._events.append(
                    SessionProgress(
                        sid,
                        response.status,
                        response.reason,
                        response.body,
                        response.headers.get("Content-Type"),
                    )
                )
        elif action is _A.REPORT_ANSWERED:
            assert args.dialog is not None and args.response is not None
            session.dialog = args.dialog
            key = args.dialog.key
            assert key is not None
            self._dialogs[key] = session
            response = args.response
            self._events.append(
                SessionAnswered(sid, response, response.body, response.headers.get("Content-Type"))
            )
        elif action is _A.REPORT_FAILED:
            self._events.append(SessionFailed(sid, args.status, args.reason, args.retry_after))
        elif action is _A.SEND_CANCEL:
            cancel_key = self._ep.cancel(session.invite_tx, now)  # held until a 1xx (§9.1)
            if cancel_key is not None and session.record is not None:
                session.record.cancel_key = cancel_key
                self._cancels.add(cancel_key)
            session.cancel_at = now + self._cancel_wait
        elif action is _A.REPORT_CANCELLED:
            self._report_cancelled(session)
        elif action is _A.BYE_CANCELLED:
            assert args.dialog is not None
            self._bye_orphan(args.dialog, now)
            self._report_cancelled(session)
        elif action is _A.BYE_INVALID:
            assert args.dialog is not None
            self._bye_orphan(args.dialog, now)
            self._events.append(
                SessionFailed(sid, 502, f"Bad Gateway: {args.invalid or 'unusable 2xx'}", None)
            )
        elif action is _A.BYE_FORK:
            assert args.dialog is not None
            self._bye_orphan(args.dialog, now)
        # -- UAS --
        elif action is _A.SEND_PROVISIONAL or action is _A.SEND_REJECT:
            assert args.response is not None
            self._ep.send_response(args.response, now)
            if action is _A.SEND_REJECT:
                self._ended(sid, "local", END_REJECTED)
        elif action is _A.SEND_2XX:
            assert args.response is not None
            session.response = args.response
            self._ep.send_response(args.response, now)
            # §13.3.1.4: retransmit at T1, doubling up to T2, until the ACK; give up
            # after 64*T1.
            session.interval = self._t1
            session.retransmit_at = now + self._t1
            session.no_ack_at = now + self._no_ack
        elif action is _A.RESEND_2XX:
            assert session.response is not None
            self._ep.send_response(session.response, now)
            session.interval = min(2 * session.interval, self._t2)
            session.retransmit_at = now + session.interval
        elif action is _A.DECLINE:
            self._reply_invite(session, 480, now)
            self._ended(sid, "local", END_REJECTED)
        elif action is _A.NO_ANSWER:
            self._reply_invite(session, session.answer_status, now)
            self._ended(sid, "local", END_NO_ANSWER)
        elif action is _A.ACCEPT_CANCEL:
            assert args.event is not None
            # §9.2: 200 to the CANCEL (with the To tag of our INVITE responses), then 487.
            self._reply(args.event.request, 200, now=now, to_tag=session.dialog.local_tag)
            self._reply_invite(session, 487, now)
            self._ended(sid, "remote", END_CANCEL)
        elif action is _A.ACCEPT_CANCEL_LATE:
            assert args.event is not None
            self._reply(args.event.request, 200, now=now, to_tag=session.dialog.local_tag)
        elif action is _A.REPORT_CONFIRMED:
            assert args.event is not None
            ack = args.event.request
            self._events.append(SessionConfirmed(sid, ack.body, ack.headers.get("Content-Type")))
        elif action is _A.BYE_NO_ACK:
            self._bye_orphan(session.dialog, now)
            self._ended(sid, "local", END_NO_ACK)
        elif action is _A.REPORT_TRANSPORT:
            self._ended(sid, "remote", END_TRANSPORT)
        # -- both --
        elif action is _A.SEND_BYE:
            if not self._send_bye(session, now):
                session.state = _S.TERMINATED
                self._ended(sid, "local", END_BYE_FAILED)
        elif action is _A.ACCEPT_BYE or action is _A.ACCEPT_BYE_EARLY:
            assert args.event is not None
            self._reply(args.event.request, 200, now=now)
            if action is _A.ACCEPT_BYE_EARLY:
                # §15.1.2: pending requests of the dialog get 487.
                self._reply_invite(session, 487, now)
            self._ended(sid, "remote", END_BYE)
        elif action is _A.ACCEPT_BYE_CROSSING:
            assert args.event is not None
            self._reply(args.event.request, 200, now=now)
        elif action is _A.REPORT_BYE_DONE:
            self._ended(sid, "local", END_BYE)
        elif action is _A.REPORT_BYE_FAILED:
            self._ended(sid, "local", END_BYE_FAILED)
        elif action is _A.REFUSE_488:
            assert args.event is not None
            warning = (
                f'399 {self._warn_agent(args.event.source.transport)} "Session modification '
                f'is not supported; the session continues unchanged"'
            )
            self._reply(args.event.request, 488, None, (("Warning", warning),), now=now)
        elif action is _A.REFUSE_491:
            assert args.event is not None
            self._reply(args.event.request, 491, None, now=now)
        elif action is _A.REFUSE_500:
            assert args.event is not None
            retry = (("Retry-After", str(self._random_retry_after())),)
            self._reply(args.event.request, 500, None, retry, now=now)
        elif action is _A.REFUSE_481:
            assert args.event is not None
            self._reply(args.event.request, 481, "Call/Transaction Does Not Exist", now=now)
        else:  # pragma: no cover - every action is handled above
            raise AssertionError(action)

    def _report_cancelled(self, session: _Session) -> None:
        if session.timed_out:
            self._events.append(SessionFailed(session.id, 408, "Request Timeout", None))
        else:
            self._ended(session.id, "local", END_CANCEL)

    def _ended(self, sid: str, by: Literal["remote", "local"], reason: EndReason) -> None:
        self._events.append(SessionEnded(sid, by, reason))

    def _send_bye(self, session: _Session, now: float) -> bool:
        """Our BYE in the session's dialog (§15.1.1); False when it cannot be sent."""
        dialog = session.dialog
        try:
            request = dialog.new_request("BYE")
            key = self._ep.send_request(request, dialog.next_hop(), now)
        except LocalSipError:
            return False
        session.bye_tx = key
        self._byes[key] = session
        return True

    def _bye_orphan(self, dialog: Dialog, now: float) -> None:
        """End a dialog no session wants (§13.2.2.4, §13.3.1.4); its outcome is ignored."""
        if dialog.remote_tag is None:
            return  # no dialog to end (a 2xx without To tag)
        try:
            key = self._ep.send_request(dialog.new_request("BYE"), dialog.next_hop(), now)
        except LocalSipError:
            return  # transaction table full or no transport: the peer's timers end it
        self._orphans.add(key)

    # -- internals: registration and timers ----------------------------------------------

    def _alive(self, session: _Session) -> bool:
        return self._sessions.get(session.id) is session

    def _live_obj(self, obj: _Heaped) -> bool:
        if isinstance(obj, _Session):
            return self._sessions.get(obj.id) is obj
        return self._invites.get(obj.key) is obj

    def _remove(self, session: _Session, now: float) -> None:
        if self._sessions.get(session.id) is not session:
            return
        del self._sessions[session.id]
        key = session.dialog.key
        if key is not None and self._dialogs.get(key) is session:
            del self._dialogs[key]
        if self._by_server_tx.get(session.invite_tx) is session:
            del self._by_server_tx[session.invite_tx]
        if session.merged_key is not None and self._merged.get(session.merged_key) is session:
            del self._merged[session.merged_key]
        if session.bye_tx is not None and self._byes.get(session.bye_tx) is session:
            del self._byes[session.bye_tx]
        rec = session.record
        session.record = None
        if rec is not None and self._invites.get(rec.key) is rec:
            # The INVITE transaction may still pass 2xx up (ACK and BYE them).
            rec.session = None
            if rec.check_at is None:
                rec.check_at = now + self._t4
            self._schedule(rec)
        session.state = _S.TERMINATED

    def _drop_record(self, rec: _UacInvite) -> None:
        if self._invites.get(rec.key) is rec:
            del self._invites[rec.key]
        cancel_key = rec.cancel_key
        if cancel_key is not None and self._ep.transaction_state(cancel_key) is None:
            # A CANCEL held for a provisional response that never came is never sent
            # (§9.1); one already answered was forgotten at its outcome.
            self._cancels.discard(cancel_key)
        if rec.session is not None:
            rec.session.record = None
            rec.session = None

    def _check_record(self, rec: _UacInvite, now: float) -> None:
        """The record lives as long as its client transaction (RFC 6026 §8.4: Timer M
        after a 2xx; Timer C or a final response otherwise); poll every T4 until then."""
        rec.check_at = None
        if self._ep.transaction_state(rec.key) is None:
            self._drop_record(rec)
        else:
            rec.check_at = now + self._t4

    def _schedule(self, obj: _Heaped) -> None:
        if isinstance(obj, _Session):
            deadline: float | None = None
            for when in (
                obj.answer_at,
                obj.no_ack_at,
                obj.retransmit_at,
                obj.ring_at,
                obj.cancel_at,
            ):
                if when is not None and (deadline is None or when < deadline):
                    deadline = when
        else:
            deadline = obj.check_at
        if deadline == obj.scheduled:
            return
        obj.scheduled = deadline
        if deadline is None:
            return
        heapq.heappush(self._heap, (deadline, next(self._seq), obj))
        live = len(self._sessions) + len(self._invites)
        if len(self._heap) > 2 * live + 1024:
            live_objs: list[_Heaped] = [*self._sessions.values(), *self._invites.values()]
            self._heap = [
                (o.scheduled, next(self._seq), o) for o in live_objs if o.scheduled is not None
            ]
            heapq.heapify(self._heap)

    def _fire(self, session: _Session, now: float) -> None:
        """Run every deadline of ``session`` that has passed, in order of meaning."""
        checks: tuple[tuple[str, SessionInput], ...] = (
            ("answer_at", _I.TIMER_ANSWER),
            ("no_ack_at", _I.TIMER_NO_ACK),
            ("retransmit_at", _I.TIMER_2XX),
            ("ring_at", _I.TIMER_RING),
            ("cancel_at", _I.TIMER_CANCEL),
        )
        for name, inp in checks:
            when = getattr(session, name)
            if when is not None and when <= now:
                setattr(session, name, None)
                if inp is _I.TIMER_RING:
                    session.timed_out = True
                self._step(session, inp, now, _NO_ARGS)
                if not self._alive(session):
                    return

    # -- internals: building and answering -----------------------------------------------

    def _uas(self, session_id: str) -> _Session | None:
        session = self._sessions.get(session_id)
        if session is not None and session.role is not InviteRole.UAS:
            raise LocalSipError(f"{session_id} is an outgoing session")
        return session

    def _new_id(self) -> str:
        for _ in range(8):  # ids are random: two collisions in a row mean a broken source
            sid = self._ids.token(64)
            if sid not in self._sessions:
                return sid
        raise LocalSipError("the id generator keeps repeating itself")

    def _contact(self, transport: str, override: str | None = None) -> str:
        value = self._contact_of(transport) if override is None else override
        try:
            return str(parse_name_addr(value))
        except RemoteSipError as exc:
            raise LocalSipError(f"bad Contact {value!r}: {exc.msg}") from exc

    def _build_response(
        self,
        session: _Session,
        status: int,
        reason: str | None,
        headers: Iterable[tuple[str, str]],
        body: bytes,
        content_type: str | None,
        *,
        contact: bool = False,
        allow: bool = False,
        contact_uri: str | None = None,
    ) -> Response:
        """A response to the session's INVITE with our tag, checked before any state
        changes (LocalSipError for the runtime's bad values)."""
        own = _RESPONSE_OWN if contact else _FAILURE_OWN  # a 3xx/485 may name Contacts
        extra = _check_extra(headers, own)
        fields: list[tuple[str, str]] = []
        if contact:
            assert session.source is not None
            fields.append(("Contact", self._contact(session.source.transport, contact_uri)))
        if allow:
            fields.append(("Allow", self._allow))
        fields += extra
        if content_type is not None:
            fields.append(("Content-Type", content_type))
        return make_response(
            session.invite,
            status,
            reason,
            to_tag=session.dialog.local_tag,
            headers=fields,
            body=body,
        )

    def _reply_invite(self, session: _Session, status: int, now: float) -> None:
        self._reply(session.invite, status, now=now, to_tag=session.dialog.local_tag)

    def _reply(
        self,
        request: Request,
        status: int,
        reason: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        *,
        now: float,
        to_tag: str | None = None,
    ) -> None:
        """Answer a received request. Outside a dialog the response gets a To tag (the
        given one, else a fresh one, RFC 3261 §8.2.6.2)."""
        if request.method == "ACK":
            return
        if to_tag is None and _tag_or_none(request, "To") is None:
            to_tag = self._ids.tag()
        try:
            response = make_response(request, status, reason, to_tag=to_tag, headers=headers)
            self._ep.send_response(response, now)
        except LocalSipError:
            pass  # a request too broken to answer (make_response refuses it): drop

    def _warn_agent(self, transport: str) -> str:
        """warn-agent = hostport / pseudonym (RFC 3261 §20.43): our host."""
        local = self._ep.config.local.get(transport)
        if local is None:
            return "sipxmpp"
        host = local[0]
        return f"[{host}]" if ":" in host and not host.startswith("[") else host

    def _random_retry_after(self) -> int:
        """0-10 s drawn from the injected id source (deterministic in tests)."""
        digest = hashlib.sha256(self._ids.token(32).encode()).digest()
        return digest[0] % (MAX_REINVITE_RETRY_AFTER + 1)


# --- helpers ---------------------------------------------------------------------------


def _clear_stale(session: _Session) -> None:
    """Cancel the deadlines that mean nothing in the session's new state."""
    state = session.state
    if state is not _S.CALLING and state is not _S.PROCEEDING:
        session.ring_at = None
    if state is not _S.CANCELLING:
        session.cancel_at = None
    if state is not _S.RECEIVED:
        session.answer_at = None
    if state is not _S.ANSWERED and state is not _S.ENDING:
        session.retransmit_at = None
        session.no_ack_at = None


def _copy_dialog(d: Dialog) -> Dialog:
    return Dialog(
        call_id=d.call_id,
        local_tag=d.local_tag,
        local_uri=d.local_uri,
        remote_uri=d.remote_uri,
        remote_target=d.remote_target,
        destination=d.destination,
        secure=d.secure,
    )


def _tag_of(message: Request | Response, header: str) -> str | None:
    """The tag of To/From; RemoteSipError 400 when the header is missing or malformed."""
    value = message.headers.get(header)
    if value is None:
        raise RemoteSipError(f"Missing {header}", 400)
    tag = parse_name_addr(value).tag
    if tag is not None and not is_token(tag):
        raise RemoteSipError(f"malformed {header} tag", 400)
    return tag


def _tag_or_none(message: Request | Response, header: str) -> str | None:
    try:
        return _tag_of(message, header)
    except RemoteSipError:
        return None


def _cseq_of(request: Request) -> int:
    value = request.headers.get("CSeq")
    return parse_cseq(value).seq if value is not None else -1


def _media_type(content_type: str | None) -> str | None:
    """``type/subtype`` of a Content-Type value, lower-cased (parameters dropped)."""
    if content_type is None:
        return None
    media = content_type.split(";", 1)[0].strip(" \t").lower()
    return media or None


def _retry_after(response: Response) -> int | None:
    """Retry-After's delta-seconds (RFC 3261 §20.33), None when absent or unreadable."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    digits = value.strip(" \t").split("(", 1)[0].split(";", 1)[0].strip(" \t")
    try:
        return parse_delta_seconds(digits)
    except RemoteSipError:
        return None


def _check_value(name: str, value: str) -> None:
    if not isinstance(value, str) or not value or "\r" in value or "\n" in value:
        raise LocalSipError(f"bad {name} {value!r}")


def _check_extra(headers: Iterable[tuple[str, str]], own: frozenset[str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for item in headers:
        if not (isinstance(item, tuple) and len(item) == 2):
            raise LocalSipError(f"headers must be (name, value) pairs, not {item!r}")
        name, value = item
        if not isinstance(name, str) or not isinstance(value, str) or not is_token(name):
            raise LocalSipError(f"bad header {name!r}")
        if "\r" in value or "\n" in value:
            raise LocalSipError(f"CR/LF in {name}")
        if name.lower() in own:
            raise LocalSipError(f"{name} is written by the INVITE layer")
        out.append((name, value))
    return out
