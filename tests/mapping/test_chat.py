"""RFC 7573 tables: chat states (Tables 3-4, conformance point 49), gone, receipts (point 51)."""

from __future__ import annotations

import pytest

from sipxmpp.mapping.chat import (
    CHAT_INACTIVITY_TIMEOUT,
    CHATSTATE_TO_ISCOMPOSING,
    GATEWAY_FAILURE_REPORT,
    ISCOMPOSING_TO_CHATSTATE,
    REPORT_STATUS_OK,
    ChatState,
    chatstate_ends_session,
    chatstate_for_bye,
    chatstate_to_iscomposing,
    inactivity_deadline,
    iscomposing_to_chatstate,
    receipt_for_report,
    receipt_requested,
    report_status_for_receipt,
    success_report_for,
)
from sipxmpp.mapping.iscomposing import (
    REFRESH_INTERVAL,
    ComposingState,
    IsComposing,
    parse_iscomposing,
    serialize_iscomposing,
)


@pytest.mark.parametrize(
    ("composing", "chat_state"),
    [(ComposingState.ACTIVE, ChatState.COMPOSING), (ComposingState.IDLE, ChatState.ACTIVE)],
)
def test_cp49_table3_iscomposing_to_chat_states(
    composing: ComposingState, chat_state: ChatState
) -> None:
    assert iscomposing_to_chatstate(composing) is chat_state
    assert iscomposing_to_chatstate(IsComposing(composing)) is chat_state


@pytest.mark.parametrize(
    ("chat_state", "composing"),
    [
        (ChatState.ACTIVE, ComposingState.IDLE),
        (ChatState.INACTIVE, ComposingState.IDLE),
        (ChatState.GONE, None),
        (ChatState.COMPOSING, ComposingState.ACTIVE),
        (ChatState.PAUSED, ComposingState.IDLE),
    ],
)
def test_cp49_table4_chat_states_to_iscomposing(
    chat_state: ChatState, composing: ComposingState | None
) -> None:
    doc = chatstate_to_iscomposing(chat_state)
    if composing is None:
        assert doc is None
        return
    assert doc is not None and doc.state is composing
    # The body the gateway sends parses back to the same state.
    assert parse_iscomposing(serialize_iscomposing(doc)) == doc


def test_tables_are_total() -> None:
    assert set(ISCOMPOSING_TO_CHATSTATE) == set(ComposingState)
    assert set(CHATSTATE_TO_ISCOMPOSING) == set(ChatState)


def test_active_indication_carries_refresh_and_idle_carries_lastactive() -> None:
    composing = chatstate_to_iscomposing(ChatState.COMPOSING)
    assert composing == IsComposing(
        ComposingState.ACTIVE, content_type="text/plain", refresh=REFRESH_INTERVAL
    )
    paused = chatstate_to_iscomposing(ChatState.PAUSED, last_active="2015-06-01T10:00:00Z")
    assert paused == IsComposing(
        ComposingState.IDLE, last_active="2015-06-01T10:00:00Z", content_type="text/plain"
    )


def test_cp50_gone_ends_the_session_and_bye_becomes_gone() -> None:
    assert chatstate_ends_session(ChatState.GONE)
    assert not any(chatstate_ends_session(s) for s in ChatState if s is not ChatState.GONE)
    assert chatstate_for_bye() is ChatState.GONE


def test_cp51_receipts_and_reports() -> None:
    assert success_report_for(True) == "yes"
    assert success_report_for(False) == "no"
    assert GATEWAY_FAILURE_REPORT == "no"
    assert receipt_for_report(200)
    assert not receipt_for_report(413)
    assert not receipt_for_report(481)
    assert receipt_requested("yes") and receipt_requested(" YES ")
    assert not receipt_requested("no") and not receipt_requested(None)
    assert report_status_for_receipt() == REPORT_STATUS_OK == "000 200 OK"


def test_inactivity_timer() -> None:
    assert CHAT_INACTIVITY_TIMEOUT == 600.0
    assert inactivity_deadline(1000.0) == 1600.0
