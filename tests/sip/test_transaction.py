"""The four transaction state machines (RFC 3261 §17 Figures 5-8, RFC 6026), row by row.

``EXPECTED`` is written from the RFC figures independently of ``TABLES``; every table row
must appear in it (and the reverse), so no transition goes untested. Time is scripted.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipxmpp.gateway.sip.timers import Timers
from sipxmpp.gateway.sip.transaction import (
    LIVE_TIMERS,
    TABLES,
    TIMER_ACTIONS,
    Action,
    Transaction,
    TxInput,
    TxKind,
    TxState,
    render_tables,
    response_input,
    tu_response_input,
)

A, In, S, K = Action, TxInput, TxState, TxKind
ICT, NICT, IST, NIST = K.INVITE_CLIENT, K.NON_INVITE_CLIENT, K.INVITE_SERVER, K.NON_INVITE_SERVER
TIMERS = Timers()
TU_DEADLINE = 37.0

# Inputs that bring a fresh (started) machine to each state.
PATHS: dict[tuple[TxKind, TxState], list[TxInput]] = {
    (ICT, S.CALLING): [],
    (ICT, S.PROCEEDING): [In.RESP_1XX],
    (ICT, S.COMPLETED): [In.RESP_300_699],
    (ICT, S.ACCEPTED): [In.RESP_2XX],
    (NICT, S.TRYING): [],
    (NICT, S.PROCEEDING): [In.RESP_1XX],
    (NICT, S.COMPLETED): [In.RESP_2XX],
    (IST, S.PROCEEDING): [],
    (IST, S.COMPLETED): [In.TU_300_699],
    (IST, S.CONFIRMED): [In.TU_300_699, In.ACK],
    (IST, S.ACCEPTED): [In.TU_2XX],
    (NIST, S.TRYING): [],
    (NIST, S.PROCEEDING): [In.TU_1XX],
    (NIST, S.COMPLETED): [In.TU_2XX],
}

TE = A.INFORM_TU_TRANSPORT_ERROR
TO = A.INFORM_TU_TIMEOUT
PASS = A.PASS_TO_TU

# (kind, state, input, next state, actions for the layer, timers running afterwards),
# transport UDP.
EXPECTED: list[tuple[TxKind, TxState, TxInput, TxState, list[Action], set[TxInput]]] = [
    # Figure 5: INVITE client; RFC 6026 §8.4 "Accepted"; Timer C is the gateway's guard.
    (ICT, S.INITIAL, In.TU_REQUEST, S.CALLING, [A.SEND_REQUEST], {In.TIMER_A, In.TIMER_B}),
    (ICT, S.CALLING, In.TIMER_A, S.CALLING, [A.SEND_REQUEST], {In.TIMER_A, In.TIMER_B}),
    (ICT, S.CALLING, In.TIMER_B, S.TERMINATED, [TO], set()),
    (ICT, S.CALLING, In.RESP_1XX, S.PROCEEDING, [PASS], {In.TIMER_C}),
    (ICT, S.CALLING, In.RESP_2XX, S.ACCEPTED, [PASS], {In.TIMER_M}),
    (ICT, S.CALLING, In.RESP_300_699, S.COMPLETED, [PASS, A.SEND_ACK], {In.TIMER_D}),
    (ICT, S.CALLING, In.TRANSPORT_ERROR, S.TERMINATED, [TE], set()),
    (ICT, S.PROCEEDING, In.RESP_1XX, S.PROCEEDING, [PASS], {In.TIMER_C}),
    (ICT, S.PROCEEDING, In.RESP_2XX, S.ACCEPTED, [PASS], {In.TIMER_M}),
    (ICT, S.PROCEEDING, In.RESP_300_699, S.COMPLETED, [PASS, A.SEND_ACK], {In.TIMER_D}),
    (ICT, S.PROCEEDING, In.TIMER_C, S.TERMINATED, [TO], set()),
    (ICT, S.PROCEEDING, In.TRANSPORT_ERROR, S.TERMINATED, [TE], set()),
    (ICT, S.COMPLETED, In.RESP_300_699, S.COMPLETED, [A.SEND_ACK], {In.TIMER_D}),
    (ICT, S.COMPLETED, In.TIMER_D, S.TERMINATED, [], set()),
    (ICT, S.COMPLETED, In.TRANSPORT_ERROR, S.TERMINATED, [TE], set()),
    (ICT, S.ACCEPTED, In.RESP_2XX, S.ACCEPTED, [PASS], {In.TIMER_M}),
    (ICT, S.ACCEPTED, In.TIMER_M, S.TERMINATED, [], set()),
    # Figure 6: non-INVITE client.
    (NICT, S.INITIAL, In.TU_REQUEST, S.TRYING, [A.SEND_REQUEST], {In.TIMER_E, In.TIMER_F}),
    (NICT, S.TRYING, In.TIMER_E, S.TRYING, [A.SEND_REQUEST], {In.TIMER_E, In.TIMER_F}),
    (NICT, S.TRYING, In.TIMER_F, S.TERMINATED, [TO], set()),
    (NICT, S.TRYING, In.TRANSPORT_ERROR, S.TERMINATED, [TE], set()),
    (NICT, S.TRYING, In.RESP_1XX, S.PROCEEDING, [PASS], {In.TIMER_E, In.TIMER_F}),
    (NICT, S.TRYING, In.RESP_2XX, S.COMPLETED, [PASS], {In.TIMER_K}),
    (NICT, S.TRYING, In.RESP_300_699, S.COMPLETED, [PASS], {In.TIMER_K}),
    (NICT, S.PROCEEDING, In.TIMER_E, S.PROCEEDING, [A.SEND_REQUEST], {In.TIMER_E, In.TIMER_F}),
    (NICT, S.PROCEEDING, In.TIMER_F, S.TERMINATED, [TO], set()),
    (NICT, S.PROCEEDING, In.TRANSPORT_ERROR, S.TERMINATED, [TE], set()),
    (NICT, S.PROCEEDING, In.RESP_1XX, S.PROCEEDING, [PASS], {In.TIMER_E, In.TIMER_F}),
    (NICT, S.PROCEEDING, In.RESP_2XX, S.COMPLETED, [PASS], {In.TIMER_K}),
    (NICT, S.PROCEEDING, In.RESP_300_699, S.COMPLETED, [PASS], {In.TIMER_K}),
    (NICT, S.COMPLETED, In.RESP_2XX, S.COMPLETED, [], {In.TIMER_K}),
    (NICT, S.COMPLETED, In.RESP_300_699, S.COMPLETED, [], {In.TIMER_K}),
    (NICT, S.COMPLETED, In.TIMER_K, S.TERMINATED, [], set()),
    # Figure 7: INVITE server; RFC 6026 §8.7 "Accepted"; the TU deadline is the gateway's.
    (IST, S.INITIAL, In.REQUEST, S.PROCEEDING, [PASS, A.SEND_TRYING], {In.TIMER_TU}),
    (IST, S.PROCEEDING, In.REQUEST_RETRANSMIT, S.PROCEEDING, [A.RESEND_RESPONSE], {In.TIMER_TU}),
    (IST, S.PROCEEDING, In.TU_1XX, S.PROCEEDING, [A.SEND_RESPONSE], {In.TIMER_TU}),
    (IST, S.PROCEEDING, In.TU_2XX, S.ACCEPTED, [A.SEND_RESPONSE], {In.TIMER_L}),
    (IST, S.PROCEEDING, In.TU_300_699, S.COMPLETED, [A.SEND_RESPONSE], {In.TIMER_G, In.TIMER_H}),
    (IST, S.PROCEEDING, In.TRANSPORT_ERROR, S.TERMINATED, [TE], set()),
    (IST, S.PROCEEDING, In.TIMER_TU, S.PROCEEDING, [A.ANSWER_408], set()),
    (
        IST,
        S.COMPLETED,
        In.REQUEST_RETRANSMIT,
        S.COMPLETED,
        [A.RESEND_RESPONSE],
        {In.TIMER_G, In.TIMER_H},
    ),
    (IST, S.COMPLETED, In.TIMER_G, S.COMPLETED, [A.RESEND_RESPONSE], {In.TIMER_G, In.TIMER_H}),
    (IST, S.COMPLETED, In.TIMER_H, S.TERMINATED, [TO], set()),
    (IST, S.COMPLETED, In.ACK, S.CONFIRMED, [], {In.TIMER_I}),
    (IST, S.COMPLETED, In.TRANSPORT_ERROR, S.TERMINATED, [TE], set()),
    (IST, S.CONFIRMED, In.ACK, S.CONFIRMED, [], {In.TIMER_I}),
    (IST, S.CONFIRMED, In.TIMER_I, S.TERMINATED, [], set()),
    (IST, S.ACCEPTED, In.REQUEST_RETRANSMIT, S.ACCEPTED, [], {In.TIMER_L}),
    (IST, S.ACCEPTED, In.TU_2XX, S.ACCEPTED, [A.SEND_RESPONSE], {In.TIMER_L}),
    (IST, S.ACCEPTED, In.ACK, S.ACCEPTED, [PASS], {In.TIMER_L}),
    (IST, S.ACCEPTED, In.TRANSPORT_ERROR, S.TERMINATED, [TE], set()),
    (IST, S.ACCEPTED, In.TIMER_L, S.TERMINATED, [], set()),
    # Figure 8: non-INVITE server; TU deadline per RFC 4320 §4.1 (no 408).
    (NIST, S.INITIAL, In.REQUEST, S.TRYING, [PASS], {In.TIMER_TU}),
    (NIST, S.TRYING, In.REQUEST_RETRANSMIT, S.TRYING, [], {In.TIMER_TU}),
    (NIST, S.TRYING, In.TU_1XX, S.PROCEEDING, [A.SEND_RESPONSE], {In.TIMER_TU}),
    (NIST, S.TRYING, In.TU_2XX, S.COMPLETED, [A.SEND_RESPONSE], {In.TIMER_J}),
    (NIST, S.TRYING, In.TU_300_699, S.COMPLETED, [A.SEND_RESPONSE], {In.TIMER_J}),
    (NIST, S.TRYING, In.TIMER_TU, S.TERMINATED, [A.ABANDON], set()),
    (NIST, S.PROCEEDING, In.REQUEST_RETRANSMIT, S.PROCEEDING, [A.RESEND_RESPONSE], {In.TIMER_TU}),
    (NIST, S.PROCEEDING, In.TU_1XX, S.PROCEEDING, [A.SEND_RESPONSE], {In.TIMER_TU}),
    (NIST, S.PROCEEDING, In.TU_2XX, S.COMPLETED, [A.SEND_RESPONSE], {In.TIMER_J}),
    (NIST, S.PROCEEDING, In.TU_300_699, S.COMPLETED, [A.SEND_RESPONSE], {In.TIMER_J}),
    (NIST, S.PROCEEDING, In.TRANSPORT_ERROR, S.TERMINATED, [TE], set()),
    (NIST, S.PROCEEDING, In.TIMER_TU, S.TERMINATED, [A.ABANDON], set()),
    (NIST, S.COMPLETED, In.REQUEST_RETRANSMIT, S.COMPLETED, [A.RESEND_RESPONSE], {In.TIMER_J}),
    (NIST, S.COMPLETED, In.TIMER_J, S.TERMINATED, [], set()),
    (NIST, S.COMPLETED, In.TRANSPORT_ERROR, S.TERMINATED, [TE], set()),
]


def fresh(kind: TxKind, *, reliable: bool = False) -> Transaction:
    return Transaction(
        kind,
        reliable=reliable,
        timers=TIMERS,
        tu_deadline=None if kind.is_client else TU_DEADLINE,
    )


def drive(kind: TxKind, state: TxState, *, reliable: bool = False) -> Transaction:
    tx = fresh(kind, reliable=reliable)
    if state is S.INITIAL:
        return tx
    tx.start(0.0)
    for event in PATHS[(kind, state)]:
        tx.handle(event, 1.0)
    assert tx.state is state
    return tx


@pytest.mark.parametrize(
    ("kind", "state", "event", "next_state", "outputs", "running"),
    EXPECTED,
    ids=[f"{k.name}-{s.name}-{i.name}" for k, s, i, *_ in EXPECTED],
)
def test_row(
    kind: TxKind,
    state: TxState,
    event: TxInput,
    next_state: TxState,
    outputs: list[Action],
    running: set[TxInput],
) -> None:
    tx = drive(kind, state)
    assert tx.handle(event, 10.0) == outputs
    assert tx.state is next_state
    assert tx.running == running
    assert tx.terminated == (next_state is S.TERMINATED)


def test_every_table_row_is_expected_and_back() -> None:
    table_rows = {
        (kind, state, event)
        for kind, table in TABLES.items()
        for state, rows in table.items()
        for event in rows
    }
    expected_rows = {(k, s, i) for k, s, i, *_ in EXPECTED}
    assert table_rows == expected_rows


def test_tables_are_consistent() -> None:
    """Every timer a row waits for or starts runs in the state it matters in."""
    starts = {
        a: a.name.removeprefix("START_") for a in TIMER_ACTIONS if a.name.startswith("START_")
    }
    for kind, table in TABLES.items():
        for state, rows in table.items():
            for event, (nxt, actions) in rows.items():
                if event.name.startswith("TIMER_"):
                    assert event in LIVE_TIMERS[kind][state], (kind, state, event)
                for action in actions:
                    if action in starts:
                        timer = TxInput[f"TIMER_{starts[action]}"]
                        assert timer in LIVE_TIMERS[kind].get(nxt, frozenset()), (kind, action)
        assert table[S.TERMINATED] == {}


ALL_STATES = sorted({(k, s) for k, s, *_ in EXPECTED if s is not S.INITIAL}, key=str)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(ALL_STATES), st.sampled_from(list(TxInput)))
def test_inputs_without_a_row_are_absorbed(pair: tuple[TxKind, TxState], event: TxInput) -> None:
    kind, state = pair
    if event in TABLES[kind][state]:
        return
    tx = drive(kind, state)
    before = (tx.state, tx.running, tx.next_deadline())
    assert tx.handle(event, 10.0) == []
    assert (tx.state, tx.running, tx.next_deadline()) == before


# -- reliable transports: no retransmission timers, zero wait timers --------------------

RELIABLE_ROWS = [
    # (kind, state, input, actions, final state): D/I/J/K are 0, so the wait states pass
    # straight through to Terminated within the same call.
    (ICT, S.CALLING, In.RESP_300_699, [PASS, A.SEND_ACK], S.TERMINATED),
    (NICT, S.TRYING, In.RESP_2XX, [PASS], S.TERMINATED),
    (NICT, S.PROCEEDING, In.RESP_300_699, [PASS], S.TERMINATED),
    (IST, S.COMPLETED, In.ACK, [], S.TERMINATED),
    (NIST, S.TRYING, In.TU_2XX, [A.SEND_RESPONSE], S.TERMINATED),
    (NIST, S.PROCEEDING, In.TU_300_699, [A.SEND_RESPONSE], S.TERMINATED),
    # The "Accepted" timers L/M and Timer H do not depend on the transport.
    (ICT, S.CALLING, In.RESP_2XX, [PASS], S.ACCEPTED),
    (IST, S.PROCEEDING, In.TU_300_699, [A.SEND_RESPONSE], S.COMPLETED),
]


@pytest.mark.parametrize(("kind", "state", "event", "outputs", "final"), RELIABLE_ROWS)
def test_reliable_rows(
    kind: TxKind, state: TxState, event: TxInput, outputs: list[Action], final: TxState
) -> None:
    tx = drive(kind, state, reliable=True)
    assert tx.handle(event, 10.0) == outputs
    assert tx.state is final
    assert not tx.running & {In.TIMER_A, In.TIMER_E, In.TIMER_G}


@pytest.mark.parametrize(
    ("kind", "running"),
    [
        (ICT, {In.TIMER_B}),
        (NICT, {In.TIMER_F}),
        (IST, {In.TIMER_TU}),
        (NIST, {In.TIMER_TU}),
    ],
)
def test_reliable_start_has_no_retransmission_timer(kind: TxKind, running: set[TxInput]) -> None:
    tx = fresh(kind, reliable=True)
    tx.start(0.0)
    assert tx.running == running


def test_reliable_completed_invite_server_has_only_timer_h() -> None:
    tx = drive(IST, S.COMPLETED, reliable=True)
    assert tx.running == {In.TIMER_H}


# -- retransmission schedules against §17 ------------------------------------------------


def run_timers(tx: Transaction, until: float) -> list[tuple[float, Action]]:
    """Fire the machine's timers in deadline order up to ``until``; log the outputs."""
    log: list[tuple[float, Action]] = []
    while (deadline := tx.next_deadline()) is not None and deadline <= until:
        log.extend((deadline, action) for action in tx.fire_due(deadline))
    return log


def sends(log: list[tuple[float, Action]], action: Action) -> list[float]:
    return [t for t, a in log if a is action]


def test_invite_client_timer_a_doubles_until_timer_b() -> None:
    # §17.1.1.2: retransmit at T1, then 2*T1, 4*T1 ... (no cap) until B = 64*T1.
    tx = fresh(ICT)
    assert tx.start(0.0) == [A.SEND_REQUEST]
    log = run_timers(tx, 100.0)
    assert sends(log, A.SEND_REQUEST) == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert log[-1] == (32.0, TO)
    assert tx.terminated and tx.next_deadline() is None


def test_invite_client_provisional_stops_retransmission_and_timer_b() -> None:
    tx = fresh(ICT)
    tx.start(0.0)
    run_timers(tx, 2.0)
    tx.handle(In.RESP_1XX, 2.0)
    assert tx.running == {In.TIMER_C}
    assert tx.deadline(In.TIMER_C) == 2.0 + TIMERS.c
    log = run_timers(tx, 1000.0)
    assert log == [(2.0 + TIMERS.c, TO)]


def test_non_invite_client_timer_e_capped_at_t2() -> None:
    # §17.1.2.2: E = T1, 2T1, 4T1, T2, T2 ... until F = 64*T1.
    tx = fresh(NICT)
    tx.start(0.0)
    log = run_timers(tx, 100.0)
    assert sends(log, A.SEND_REQUEST) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert log[-1] == (32.0, TO)


def test_non_invite_client_proceeding_retransmits_every_t2() -> None:
    # §17.1.2.2: in "Proceeding", Timer E fires, the request is resent, E = T2.
    tx = fresh(NICT)
    tx.start(0.0)
    run_timers(tx, 0.6)  # one retransmission at 0.5; next E at 1.5
    tx.handle(In.RESP_1XX, 0.7)
    log = run_timers(tx, 100.0)
    assert sends(log, A.SEND_REQUEST) == [1.5, 5.5, 9.5, 13.5, 17.5, 21.5, 25.5, 29.5]
    assert log[-1] == (32.0, TO)  # F still counts from the request


def test_non_invite_client_completed_lingers_t4() -> None:
    tx = fresh(NICT)
    tx.start(0.0)
    tx.handle(In.RESP_2XX, 3.0)
    assert tx.running == {In.TIMER_K} and tx.deadline(In.TIMER_K) == 8.0
    assert run_timers(tx, 100.0) == []
    assert tx.terminated


def test_invite_client_completed_lingers_timer_d() -> None:
    tx = fresh(ICT)
    tx.start(0.0)
    tx.handle(In.RESP_300_699, 1.0)
    assert tx.deadline(In.TIMER_D) == 33.0


def test_invite_server_timer_g_capped_at_t2_until_timer_h() -> None:
    # §17.2.1: G = T1, 2T1, 4T1, T2, T2 ... until H = 64*T1.
    tx = fresh(IST)
    tx.start(0.0)
    assert tx.handle(In.TU_300_699, 0.0) == [A.SEND_RESPONSE]
    log = run_timers(tx, 100.0)
    assert sends(log, A.RESEND_RESPONSE) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert log[-1] == (32.0, TO)


def test_invite_server_ack_stops_retransmission() -> None:
    tx = fresh(IST)
    tx.start(0.0)
    tx.handle(In.TU_300_699, 0.0)
    run_timers(tx, 2.0)
    tx.handle(In.ACK, 2.0)
    assert tx.running == {In.TIMER_I} and tx.deadline(In.TIMER_I) == 7.0
    assert run_timers(tx, 100.0) == []
    assert tx.terminated


def test_invite_server_tu_deadline_asks_for_408() -> None:
    tx = fresh(IST)
    tx.start(0.0)
    assert run_timers(tx, 100.0) == [(TU_DEADLINE, A.ANSWER_408)]
    assert tx.state is S.PROCEEDING  # the layer answers 408 as TU_300_699


def test_non_invite_server_tu_deadline_abandons() -> None:
    tx = fresh(NIST)
    tx.start(0.0)
    assert run_timers(tx, 100.0) == [(TU_DEADLINE, A.ABANDON)]
    assert tx.terminated


def test_no_tu_deadline_means_no_timer() -> None:
    tx = Transaction(NIST, reliable=False, timers=TIMERS)
    tx.start(0.0)
    assert tx.next_deadline() is None


def test_start_twice_refused() -> None:
    tx = fresh(NICT)
    tx.start(0.0)
    with pytest.raises(RuntimeError):
        tx.start(0.0)


def test_accepted_states_last_64_t1() -> None:
    client = drive(ICT, S.ACCEPTED)
    server = drive(IST, S.ACCEPTED)
    assert client.deadline(In.TIMER_M) == 1.0 + 32.0
    assert server.deadline(In.TIMER_L) == 1.0 + 32.0


@pytest.mark.parametrize(
    ("status", "wire", "tu"),
    [
        (100, In.RESP_1XX, In.TU_1XX),
        (199, In.RESP_1XX, In.TU_1XX),
        (200, In.RESP_2XX, In.TU_2XX),
        (299, In.RESP_2XX, In.TU_2XX),
        (300, In.RESP_300_699, In.TU_300_699),
        (487, In.RESP_300_699, In.TU_300_699),
        (699, In.RESP_300_699, In.TU_300_699),
    ],
)
def test_status_classification(status: int, wire: TxInput, tu: TxInput) -> None:
    assert response_input(status) is wire
    assert tu_response_input(status) is tu


def test_render_lists_every_machine_and_row() -> None:
    text = render_tables()
    for kind in TxKind:
        assert kind.value in text
    rows = sum(len(rows) for table in TABLES.values() for rows in table.values())
    assert text.count(" / ") == rows
    assert "Timer B fires            / inform TU: timeout" in text


@settings(max_examples=200, deadline=None)
@given(
    kind=st.sampled_from(list(TxKind)),
    reliable=st.booleans(),
    steps=st.lists(
        st.tuples(st.sampled_from(list(TxInput)), st.floats(min_value=0, max_value=5)),
        max_size=30,
    ),
)
def test_random_walks_stay_well_formed(
    kind: TxKind, reliable: bool, steps: list[tuple[TxInput, float]]
) -> None:
    """Any input sequence keeps the machine in a known state with sane timers, and
    every machine ends within bounded time once inputs stop."""
    tx = fresh(kind, reliable=reliable)
    now = 0.0
    tx.start(now)
    for event, dt in steps:
        now += dt
        tx.fire_due(now)
        tx.handle(event, now)
        if tx.terminated:
            assert tx.next_deadline() is None
            break
        assert tx.running <= LIVE_TIMERS[kind].get(tx.state, frozenset())
        deadline = tx.next_deadline()
        assert deadline is None or deadline >= now
    # Left alone, every machine ends: the timers bound each state (the layer answers
    # the INVITE server's ANSWER_408 with a 408, as done here).
    for _ in itertools.repeat(None, 100):
        if kind is IST and tx.state is S.PROCEEDING and In.TIMER_TU not in tx.running:
            tx.handle(In.TU_300_699, now)
        deadline = tx.next_deadline()
        if deadline is None:
            break
        now = deadline
        tx.fire_due(deadline)
    assert tx.terminated


def test_render_tool_prints_the_tables(tmp_path: pytest.TempPathFactory) -> None:
    import subprocess
    import sys
    from pathlib import Path

    tool = Path(__file__).resolve().parents[2] / "tools" / "render_transaction_tables.py"
    out = Path(str(tmp_path)) / "tables.txt"
    subprocess.run([sys.executable, str(tool), "-o", str(out)], check=True, timeout=60)
    assert out.read_text(encoding="utf-8") == render_tables()
