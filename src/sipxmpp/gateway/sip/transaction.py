"""The four RFC 3261 §17 transaction state machines, as tables.

Theory of operation
-------------------
A SIP transaction is one request and its responses (plus, for INVITE with a non-2xx final
response, the ACK). RFC 3261 §17 draws four machines: INVITE client (Figure 5), non-INVITE
client (Figure 6), INVITE server (Figure 7) and non-INVITE server (Figure 8). RFC 6026
amends the two INVITE machines with an "Accepted" state, entered on a 2xx, which absorbs
INVITE retransmissions and carries retransmitted 2xx responses (server: from the TU; client:
to the TU) until Timer L / Timer M fires. Without it a retransmitted 2xx or INVITE would
arrive after the transaction is gone and be mistaken for something new.

Each machine is written down as data, ``TABLES[kind][state][input] = (next_state,
actions)`` (the h11 ``EVENT_TRIGGERED_TRANSITIONS`` pattern). An input that has no row in
the current state is absorbed without effect: the RFC figures only draw the inputs that
matter, and everything else (a 1xx in "Completed", a TU response after the final one,
§17.2.2 "MUST be discarded") is silently dropped.

Inputs are named after the RFC: ``RESP_1XX``/``RESP_2XX``/``RESP_300_699`` (responses from
the transport), ``TU_1XX``/``TU_2XX``/``TU_300_699`` (responses from the TU),
``REQUEST_RETRANSMIT``, ``ACK``, ``TRANSPORT_ERROR`` and ``TIMER_A`` ... ``TIMER_M``. Two
pseudo-inputs start a machine from ``INITIAL``: ``TU_REQUEST`` (a client transaction is
created by the TU) and ``REQUEST`` (a server transaction is created by a received request).
Two inputs are the gateway's own additions, both to keep abandoned transactions from
living for ever: ``TIMER_C`` (an INVITE client transaction stuck in "Proceeding", see
:mod:`.timers`) and ``TIMER_TU`` (the TU never answered a received request).

Actions come in two kinds. Timer actions (``START_x``, ``BACKOFF_x``) are carried out here:
a timer is an absolute deadline in ``_deadlines``, nothing sleeps, and the owner asks for
:meth:`Transaction.next_deadline` and calls :meth:`Transaction.fire_due` when it passes
(design practice 2). On a reliable transport the retransmission timers A, E and G are not
started and the wait timers D, I, J and K are zero (§17.1.1.2, §17.1.2.2, §17.2.1, §17.2.2):
a zero timer fires within the same call, so the machine passes straight through
"Completed"/"Confirmed" to "Terminated". When a machine changes state, every timer that
has no meaning in the new state (``LIVE_TIMERS``) is cancelled; so e.g. Timer B dies when a
provisional response moves an INVITE client transaction to "Proceeding".

All other actions are returned to the caller (the transaction layer), which owns the
messages and the wire: sending, building the ACK, informing the TU. This module knows no
message, byte or address, which is what lets ``tools/render_transaction_tables.py`` print the
machines for a side-by-side check against RFC 3261 Figures 5-8.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from .timers import Timers

__all__ = [
    "TxKind",
    "TxState",
    "TxInput",
    "Action",
    "Transaction",
    "TABLES",
    "LIVE_TIMERS",
    "TIMER_ACTIONS",
    "response_input",
    "tu_response_input",
    "render_tables",
]


# Enum members are singletons compared by identity, so the C-level identity hash is as
# correct as Enum's default (a Python-level hash of the name) and much cheaper: every table
# lookup on the per-message path hashes several members.
_identity_hash = object.__hash__


class TxKind(enum.Enum):
    __hash__ = _identity_hash

    INVITE_CLIENT = "INVITE client transaction (RFC 3261 Figure 5, RFC 6026 §8.4)"
    NON_INVITE_CLIENT = "non-INVITE client transaction (RFC 3261 Figure 6)"
    INVITE_SERVER = "INVITE server transaction (RFC 3261 Figure 7, RFC 6026 §8.7)"
    NON_INVITE_SERVER = "non-INVITE server transaction (RFC 3261 Figure 8)"

    @property
    def is_client(self) -> bool:
        return self in (TxKind.INVITE_CLIENT, TxKind.NON_INVITE_CLIENT)


class TxState(enum.Enum):
    __hash__ = _identity_hash

    INITIAL = "Initial"
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class TxInput(enum.Enum):
    __hash__ = _identity_hash

    TU_REQUEST = "request from TU"
    REQUEST = "request received"
    RESP_1XX = "1xx"
    RESP_2XX = "2xx"
    RESP_300_699 = "300-699"
    TU_1XX = "1xx from TU"
    TU_2XX = "2xx from TU"
    TU_300_699 = "300-699 from TU"
    REQUEST_RETRANSMIT = "request retransmission"
    ACK = "ACK"
    TRANSPORT_ERROR = "transport error"
    TIMER_A = "Timer A fires"
    TIMER_B = "Timer B fires"
    TIMER_C = "Timer C fires"
    TIMER_D = "Timer D fires"
    TIMER_E = "Timer E fires"
    TIMER_F = "Timer F fires"
    TIMER_G = "Timer G fires"
    TIMER_H = "Timer H fires"
    TIMER_I = "Timer I fires"
    TIMER_J = "Timer J fires"
    TIMER_K = "Timer K fires"
    TIMER_L = "Timer L fires"
    TIMER_M = "Timer M fires"
    TIMER_TU = "TU deadline passes"


class Action(enum.Enum):
    __hash__ = _identity_hash

    # Carried out by the transaction layer.
    SEND_REQUEST = "send request"
    SEND_ACK = "send ACK"
    SEND_TRYING = "send 100 Trying"
    SEND_RESPONSE = "send response"
    RESEND_RESPONSE = "resend last response"
    PASS_TO_TU = "pass to TU"
    INFORM_TU_TIMEOUT = "inform TU: timeout"
    INFORM_TU_TRANSPORT_ERROR = "inform TU: transport error"
    ANSWER_408 = "answer 408 for the TU"
    ABANDON = "drop request unanswered (RFC 4320 §4.1)"
    # Carried out by the machine itself.
    START_A = "start A=T1"
    BACKOFF_A = "A=2*A"
    START_B = "start B=64*T1"
    START_C = "start C"
    START_D = "start D"
    START_E = "start E=T1"
    BACKOFF_E = "E=min(2*E,T2)"
    E_TO_T2 = "E=T2"
    START_F = "start F=64*T1"
    START_G = "start G=T1"
    BACKOFF_G = "G=min(2*G,T2)"
    START_H = "start H=64*T1"
    START_I = "start I"
    START_J = "start J"
    START_K = "start K"
    START_L = "start L=64*T1"
    START_M = "start M=64*T1"
    START_TU = "start TU deadline"


S = TxState
I = TxInput  # noqa: E741 - short alias keeps the tables readable
A = Action

Row = tuple[TxState, tuple[Action, ...]]
Table = dict[TxState, dict[TxInput, Row]]

# RFC 3261 Figure 5 (§17.1.1.2) with RFC 6026 §8.4's "Accepted" state.
_INVITE_CLIENT: Table = {
    S.INITIAL: {
        I.TU_REQUEST: (S.CALLING, (A.SEND_REQUEST, A.START_A, A.START_B)),
    },
    S.CALLING: {
        I.TIMER_A: (S.CALLING, (A.SEND_REQUEST, A.BACKOFF_A)),
        I.TIMER_B: (S.TERMINATED, (A.INFORM_TU_TIMEOUT,)),
        I.RESP_1XX: (S.PROCEEDING, (A.PASS_TO_TU, A.START_C)),
        I.RESP_2XX: (S.ACCEPTED, (A.PASS_TO_TU, A.START_M)),
        I.RESP_300_699: (S.COMPLETED, (A.PASS_TO_TU, A.SEND_ACK, A.START_D)),
        I.TRANSPORT_ERROR: (S.TERMINATED, (A.INFORM_TU_TRANSPORT_ERROR,)),
    },
    S.PROCEEDING: {
        # Each provisional response re-arms Timer C, as §16.7 step 2 does for proxies.
        I.RESP_1XX: (S.PROCEEDING, (A.PASS_TO_TU, A.START_C)),
        I.RESP_2XX: (S.ACCEPTED, (A.PASS_TO_TU, A.START_M)),
        I.RESP_300_699: (S.COMPLETED, (A.PASS_TO_TU, A.SEND_ACK, A.START_D)),
        I.TIMER_C: (S.TERMINATED, (A.INFORM_TU_TIMEOUT,)),
        I.TRANSPORT_ERROR: (S.TERMINATED, (A.INFORM_TU_TRANSPORT_ERROR,)),
    },
    S.COMPLETED: {
        # §17.1.1.2: retransmissions of the final response are answered with the ACK
        # again and not passed up.
        I.RESP_300_699: (S.COMPLETED, (A.SEND_ACK,)),
        I.TIMER_D: (S.TERMINATED, ()),
        I.TRANSPORT_ERROR: (S.TERMINATED, (A.INFORM_TU_TRANSPORT_ERROR,)),
    },
    S.ACCEPTED: {
        # RFC 6026 §8.4: every 2xx goes to the TU, which ACKs it (§13.2.2.4).
        I.RESP_2XX: (S.ACCEPTED, (A.PASS_TO_TU,)),
        I.TIMER_M: (S.TERMINATED, ()),
    },
    S.TERMINATED: {},
}

# RFC 3261 Figure 6 (§17.1.2.2).
_NON_INVITE_CLIENT: Table = {
    S.INITIAL: {
        I.TU_REQUEST: (S.TRYING, (A.SEND_REQUEST, A.START_E, A.START_F)),
    },
    S.TRYING: {
        I.TIMER_E: (S.TRYING, (A.SEND_REQUEST, A.BACKOFF_E)),
        I.TIMER_F: (S.TERMINATED, (A.INFORM_TU_TIMEOUT,)),
        I.TRANSPORT_ERROR: (S.TERMINATED, (A.INFORM_TU_TRANSPORT_ERROR,)),
        I.RESP_1XX: (S.PROCEEDING, (A.PASS_TO_TU,)),
        I.RESP_2XX: (S.COMPLETED, (A.PASS_TO_TU, A.START_K)),
        I.RESP_300_699: (S.COMPLETED, (A.PASS_TO_TU, A.START_K)),
    },
    S.PROCEEDING: {
        I.TIMER_E: (S.PROCEEDING, (A.SEND_REQUEST, A.E_TO_T2)),
        I.TIMER_F: (S.TERMINATED, (A.INFORM_TU_TIMEOUT,)),
        I.TRANSPORT_ERROR: (S.TERMINATED, (A.INFORM_TU_TRANSPORT_ERROR,)),
        I.RESP_1XX: (S.PROCEEDING, (A.PASS_TO_TU,)),
        I.RESP_2XX: (S.COMPLETED, (A.PASS_TO_TU, A.START_K)),
        I.RESP_300_699: (S.COMPLETED, (A.PASS_TO_TU, A.START_K)),
    },
    S.COMPLETED: {
        # Response retransmissions are absorbed (no row needed; listed for the reader).
        I.RESP_2XX: (S.COMPLETED, ()),
        I.RESP_300_699: (S.COMPLETED, ()),
        I.TIMER_K: (S.TERMINATED, ()),
    },
    S.TERMINATED: {},
}

# RFC 3261 Figure 7 (§17.2.1) with RFC 6026 §8.7's "Accepted" state.
_INVITE_SERVER: Table = {
    S.INITIAL: {
        # §17.2.1: the 100 is sent at once ("MUST generate a 100 (Trying) response unless
        # it knows that the TU will generate a provisional or final response within 200
        # ms"); the TU here is another event loop turn away, so it never knows.
        I.REQUEST: (S.PROCEEDING, (A.PASS_TO_TU, A.SEND_TRYING, A.START_TU)),
    },
    S.PROCEEDING: {
        I.REQUEST_RETRANSMIT: (S.PROCEEDING, (A.RESEND_RESPONSE,)),
        I.TU_1XX: (S.PROCEEDING, (A.SEND_RESPONSE,)),
        I.TU_2XX: (S.ACCEPTED, (A.SEND_RESPONSE, A.START_L)),
        I.TU_300_699: (S.COMPLETED, (A.SEND_RESPONSE, A.START_G, A.START_H)),
        I.TRANSPORT_ERROR: (S.TERMINATED, (A.INFORM_TU_TRANSPORT_ERROR,)),
        I.TIMER_TU: (S.PROCEEDING, (A.ANSWER_408,)),
    },
    S.COMPLETED: {
        I.REQUEST_RETRANSMIT: (S.COMPLETED, (A.RESEND_RESPONSE,)),
        I.TIMER_G: (S.COMPLETED, (A.RESEND_RESPONSE, A.BACKOFF_G)),
        I.TIMER_H: (S.TERMINATED, (A.INFORM_TU_TIMEOUT,)),
        I.ACK: (S.CONFIRMED, (A.START_I,)),
        I.TRANSPORT_ERROR: (S.TERMINATED, (A.INFORM_TU_TRANSPORT_ERROR,)),
    },
    S.CONFIRMED: {
        # ACK retransmissions are absorbed (listed for the reader).
        I.ACK: (S.CONFIRMED, ()),
        I.TIMER_I: (S.TERMINATED, ()),
    },
    S.ACCEPTED: {
        # RFC 6026 §8.7: INVITE retransmissions are absorbed, the TU's 2xx
        # retransmissions are sent, an ACK that matches goes to the TU.
        I.REQUEST_RETRANSMIT: (S.ACCEPTED, ()),
        I.TU_2XX: (S.ACCEPTED, (A.SEND_RESPONSE,)),
        I.ACK: (S.ACCEPTED, (A.PASS_TO_TU,)),
        I.TRANSPORT_ERROR: (S.TERMINATED, (A.INFORM_TU_TRANSPORT_ERROR,)),
        I.TIMER_L: (S.TERMINATED, ()),
    },
    S.TERMINATED: {},
}

# RFC 3261 Figure 8 (§17.2.2).
_NON_INVITE_SERVER: Table = {
    S.INITIAL: {
        I.REQUEST: (S.TRYING, (A.PASS_TO_TU, A.START_TU)),
    },
    S.TRYING: {
        # §17.2.2: "Once in the Trying state, any further request retransmissions are
        # discarded."
        I.REQUEST_RETRANSMIT: (S.TRYING, ()),
        I.TU_1XX: (S.PROCEEDING, (A.SEND_RESPONSE,)),
        I.TU_2XX: (S.COMPLETED, (A.SEND_RESPONSE, A.START_J)),
        I.TU_300_699: (S.COMPLETED, (A.SEND_RESPONSE, A.START_J)),
        I.TIMER_TU: (S.TERMINATED, (A.ABANDON,)),
    },
    S.PROCEEDING: {
        I.REQUEST_RETRANSMIT: (S.PROCEEDING, (A.RESEND_RESPONSE,)),
        I.TU_1XX: (S.PROCEEDING, (A.SEND_RESPONSE,)),
        I.TU_2XX: (S.COMPLETED, (A.SEND_RESPONSE, A.START_J)),
        I.TU_300_699: (S.COMPLETED, (A.SEND_RESPONSE, A.START_J)),
        I.TRANSPORT_ERROR: (S.TERMINATED, (A.INFORM_TU_TRANSPORT_ERROR,)),
        I.TIMER_TU: (S.TERMINATED, (A.ABANDON,)),
    },
    S.COMPLETED: {
        I.REQUEST_RETRANSMIT: (S.COMPLETED, (A.RESEND_RESPONSE,)),
        I.TIMER_J: (S.TERMINATED, ()),
        I.TRANSPORT_ERROR: (S.TERMINATED, (A.INFORM_TU_TRANSPORT_ERROR,)),
    },
    S.TERMINATED: {},
}

#: The four machines: ``TABLES[kind][state][input] = (next_state, actions)``.
TABLES: dict[TxKind, Table] = {
    TxKind.INVITE_CLIENT: _INVITE_CLIENT,
    TxKind.NON_INVITE_CLIENT: _NON_INVITE_CLIENT,
    TxKind.INVITE_SERVER: _INVITE_SERVER,
    TxKind.NON_INVITE_SERVER: _NON_INVITE_SERVER,
}

#: Timers that keep running in each state; entering a state cancels all others.
LIVE_TIMERS: dict[TxKind, dict[TxState, frozenset[TxInput]]] = {
    TxKind.INVITE_CLIENT: {
        S.CALLING: frozenset({I.TIMER_A, I.TIMER_B}),
        S.PROCEEDING: frozenset({I.TIMER_C}),
        S.COMPLETED: frozenset({I.TIMER_D}),
        S.ACCEPTED: frozenset({I.TIMER_M}),
    },
    TxKind.NON_INVITE_CLIENT: {
        S.TRYING: frozenset({I.TIMER_E, I.TIMER_F}),
        S.PROCEEDING: frozenset({I.TIMER_E, I.TIMER_F}),
        S.COMPLETED: frozenset({I.TIMER_K}),
    },
    TxKind.INVITE_SERVER: {
        S.PROCEEDING: frozenset({I.TIMER_TU}),
        S.COMPLETED: frozenset({I.TIMER_G, I.TIMER_H}),
        S.CONFIRMED: frozenset({I.TIMER_I}),
        S.ACCEPTED: frozenset({I.TIMER_L}),
    },
    TxKind.NON_INVITE_SERVER: {
        S.TRYING: frozenset({I.TIMER_TU}),
        S.PROCEEDING: frozenset({I.TIMER_TU}),
        S.COMPLETED: frozenset({I.TIMER_J}),
    },
}

_NO_TIMERS: frozenset[TxInput] = frozenset()

# How long each START_x runs: (the timer input, duration from (timers, reliable)); a
# duration of None means "do not start" (A, E, G on reliable transports: §17.1.1.2 "SHOULD
# NOT start timer A", §17.1.2.2, §17.2.1).
_Duration = Callable[[Timers, bool], float | None]
_STARTS: dict[Action, tuple[TxInput, _Duration]] = {
    A.START_A: (I.TIMER_A, lambda t, rel: None if rel else t.a),
    A.START_B: (I.TIMER_B, lambda t, rel: t.b),
    A.START_C: (I.TIMER_C, lambda t, rel: t.c),
    A.START_D: (I.TIMER_D, lambda t, rel: t.d(rel)),
    A.START_E: (I.TIMER_E, lambda t, rel: None if rel else t.e),
    A.START_F: (I.TIMER_F, lambda t, rel: t.f),
    A.START_G: (I.TIMER_G, lambda t, rel: None if rel else t.g),
    A.START_H: (I.TIMER_H, lambda t, rel: t.h),
    A.START_I: (I.TIMER_I, lambda t, rel: t.i(rel)),
    A.START_J: (I.TIMER_J, lambda t, rel: t.j(rel)),
    A.START_K: (I.TIMER_K, lambda t, rel: t.k(rel)),
    A.START_L: (I.TIMER_L, lambda t, rel: t.l),
    A.START_M: (I.TIMER_M, lambda t, rel: t.m),
}

#: Actions the machine performs itself; all others are returned to the caller.
TIMER_ACTIONS: frozenset[Action] = frozenset(
    {*_STARTS, A.START_TU, A.BACKOFF_A, A.BACKOFF_E, A.E_TO_T2, A.BACKOFF_G}
)

# The tables split once into (next state, actions for the caller, timer actions), so the
# per-message path neither filters actions nor looks the kind up again.
_Compiled = tuple[TxState, tuple[Action, ...], tuple[Action, ...]]
_COMPILED: dict[TxKind, dict[TxState, dict[TxInput, _Compiled]]] = {
    kind: {
        state: {
            event: (
                nxt,
                tuple(a for a in actions if a not in TIMER_ACTIONS),
                tuple(a for a in actions if a in TIMER_ACTIONS),
            )
            for event, (nxt, actions) in rows.items()
        }
        for state, rows in table.items()
    }
    for kind, table in TABLES.items()
}
_RETRANSMIT_TIMERS = frozenset({I.TIMER_A, I.TIMER_E, I.TIMER_G})

_INITIAL_INPUT = {
    TxKind.INVITE_CLIENT: I.TU_REQUEST,
    TxKind.NON_INVITE_CLIENT: I.TU_REQUEST,
    TxKind.INVITE_SERVER: I.REQUEST,
    TxKind.NON_INVITE_SERVER: I.REQUEST,
}


def response_input(status: int) -> TxInput:
    """Classify a received response's status code for a client transaction."""
    if status < 200:
        return I.RESP_1XX
    if status < 300:
        return I.RESP_2XX
    return I.RESP_300_699


def tu_response_input(status: int) -> TxInput:
    """Classify a response the TU hands to a server transaction."""
    if status < 200:
        return I.TU_1XX
    if status < 300:
        return I.TU_2XX
    return I.TU_300_699


class Transaction:
    """One running state machine: its state, its timers, nothing else.

    ``reliable`` is fixed at creation (the transport the request travels on). The TU
    deadline (``tu_deadline`` seconds after creation) only matters to server machines.
    """

    __slots__ = (
        "kind",
        "state",
        "reliable",
        "timers",
        "tu_deadline",
        "_deadlines",
        "_interval",
        "_rows",
        "_live",
    )

    def __init__(
        self,
        kind: TxKind,
        *,
        reliable: bool,
        timers: Timers,
        tu_deadline: float | None = None,
    ) -> None:
        self.kind = kind
        self.state = TxState.INITIAL
        self.reliable = reliable
        self.timers = timers
        self.tu_deadline = tu_deadline
        #: Running timers: timer input -> absolute deadline.
        self._deadlines: dict[TxInput, float] = {}
        #: Current interval of the retransmission timer (A, E or G; one per machine).
        self._interval = timers.t1
        self._rows = _COMPILED[kind]
        self._live = LIVE_TIMERS[kind]

    @property
    def terminated(self) -> bool:
        return self.state is TxState.TERMINATED

    def start(self, now: float) -> list[Action]:
        """Leave ``INITIAL``: the request was sent (client) or received (server)."""
        if self.state is not TxState.INITIAL:
            raise RuntimeError("transaction already started")
        return self.handle(_INITIAL_INPUT[self.kind], now)

    def handle(self, event: TxInput, now: float) -> list[Action]:
        """Feed one input; return the actions the caller must carry out, in order."""
        row = self._rows[self.state].get(event)
        if row is None:
            return []
        if event in self._deadlines:
            # A timer input fed from outside (tests do this) consumes the timer.
            del self._deadlines[event]
        return self._apply(row, now)

    @property
    def running(self) -> frozenset[TxInput]:
        """The timers currently running."""
        return frozenset(self._deadlines)

    def deadline(self, timer: TxInput) -> float | None:
        """The deadline of one running timer, or None."""
        return self._deadlines.get(timer)

    def next_deadline(self) -> float | None:
        """The earliest running timer's deadline, or None."""
        if not self._deadlines:
            return None
        return min(self._deadlines.values())

    def fire_due(self, now: float) -> list[Action]:
        """Fire every timer whose deadline is <= ``now``, earliest first."""
        out: list[Action] = []
        while self._deadlines:
            timer, deadline = min(self._deadlines.items(), key=_by_deadline)
            if deadline > now:
                break
            del self._deadlines[timer]
            row = self._rows[self.state].get(timer)
            if row is not None:
                out.extend(self._apply(row, now))
        return out

    def _apply(self, row: _Compiled, now: float) -> list[Action]:
        next_state, outputs, timer_actions = row
        if next_state is not self.state:
            self.state = next_state
            if self._deadlines:
                live = self._live.get(next_state, _NO_TIMERS)
                for timer in [t for t in self._deadlines if t not in live]:
                    del self._deadlines[timer]
        out = list(outputs)
        if timer_actions and self._run_timer_actions(timer_actions, now):
            # Zero-length wait timers (reliable transports) fire within this call.
            out.extend(self.fire_due(now))
        return out

    def _run_timer_actions(self, actions: tuple[Action, ...], now: float) -> bool:
        """Start/re-arm timers; True if one was started with a zero duration."""
        immediate = False
        for action in actions:
            start = _STARTS.get(action)
            if start is not None:
                timer, duration_of = start
                duration = duration_of(self.timers, self.reliable)
                if duration is None:
                    continue
                if timer in _RETRANSMIT_TIMERS:
                    self._interval = duration
                self._deadlines[timer] = now + duration
                immediate = immediate or duration <= 0
            elif action is A.START_TU:
                if self.tu_deadline is not None:
                    self._deadlines[I.TIMER_TU] = now + self.tu_deadline
            elif action is A.BACKOFF_A:
                # §17.1.1.2: "reset the timer with a value of 2*T1", then 4*T1, ...: no cap.
                self._interval *= 2
                self._deadlines[I.TIMER_A] = now + self._interval
            elif action is A.BACKOFF_E:
                # §17.1.2.2: "MIN(2*T1, T2)", then "MIN(4*T1, T2)", ...
                self._interval = self.timers.capped_double(self._interval)
                self._deadlines[I.TIMER_E] = now + self._interval
            elif action is A.E_TO_T2:
                # §17.1.2.2: in "Proceeding", Timer E is reset to T2.
                self._interval = self.timers.t2
                self._deadlines[I.TIMER_E] = now + self._interval
            elif action is A.BACKOFF_G:
                # §17.2.1: "MIN(2*T1, T2)", "MIN(4*T1, T2)", ...
                self._interval = self.timers.capped_double(self._interval)
                self._deadlines[I.TIMER_G] = now + self._interval
        return immediate


def _by_deadline(item: tuple[TxInput, float]) -> float:
    return item[1]


def render_tables() -> str:
    """The four machines as text, one block per machine, for checking against the RFC."""
    lines: list[str] = []
    for kind, table in TABLES.items():
        lines.append(kind.value)
        lines.append("=" * len(kind.value))
        for state, rows in table.items():
            live = LIVE_TIMERS[kind].get(state)
            if state is TxState.TERMINATED:
                lines.append(f"{state.value}: (destroyed at once)")
                continue
            timers = ", ".join(sorted(t.name.removeprefix("TIMER_") for t in live)) if live else ""
            lines.append(f"{state.value}" + (f"  [timers: {timers}]" if timers else ""))
            for event, (nxt, actions) in rows.items():
                acts = ", ".join(a.value for a in actions) or "-"
                arrow = "(stay)" if nxt is state else f"-> {nxt.value}"
                lines.append(f"    {event.value:<24} / {acts:<50} {arrow}")
        lines.append("")
    return "\n".join(lines)
