"""One-to-one chat sessions, RFC 7573: chat states and delivery reports as tables.

Theory of operation
-------------------
RFC 7573 maps an MSRP chat session (RFC 4975, set up by SIP INVITE) to XMPP ``type='chat'``
messages. The session plumbing (INVITE, MSRP SEND, BYE) lives in the runtime; the parts
that are pure semantics live here:

* chat states (§6): RFC 3994 isComposing ``active``/``idle`` <-> XEP-0085 chat states, in
  the suggested Tables 3 and 4 (:data:`ISCOMPOSING_TO_CHATSTATE`,
  :data:`CHATSTATE_TO_ISCOMPOSING`), and ``gone`` <-> SIP BYE (§6.1: a gateway that
  supports chat states MUST support ``gone``);
* delivery reports (§7): a XEP-0184 ``<request/>`` <-> MSRP ``Success-Report: yes``,
  an MSRP ``REPORT`` with status 200 <-> XEP-0184 ``<received/>``, and ``Failure-Report:
  no`` on every SEND the gateway generates (XMPP has no failure receipts);
* the inactivity timer that ends a session XMPP never closes (§4: XMPP has no session end;
  XEP-0085 §5.1 suggests about 10 minutes).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

from sipxmpp.mapping.iscomposing import (
    REFRESH_INTERVAL,
    ComposingState,
    IsComposing,
)

__all__ = [
    "NS_CHATSTATES",
    "NS_RECEIPTS",
    "CHAT_INACTIVITY_TIMEOUT",
    "GATEWAY_FAILURE_REPORT",
    "REPORT_STATUS_OK",
    "ChatState",
    "ISCOMPOSING_TO_CHATSTATE",
    "CHATSTATE_TO_ISCOMPOSING",
    "iscomposing_to_chatstate",
    "chatstate_to_iscomposing",
    "chatstate_ends_session",
    "chatstate_for_bye",
    "success_report_for",
    "receipt_requested",
    "receipt_for_report",
    "report_status_for_receipt",
    "inactivity_deadline",
]

NS_CHATSTATES: Final = "http://jabber.org/protocol/chatstates"
NS_RECEIPTS: Final = "urn:xmpp:receipts"
#: Seconds without any message or chat state after which the gateway ends an MSRP chat
#: session for an XMPP user (RFC 7573 §4 needs a timer because XMPP chats never end;
#: XEP-0085 §5.1 suggests treating a conversation as gone after about ten minutes).
CHAT_INACTIVITY_TIMEOUT: Final = 600.0
#: RFC 7573 §7: the gateway SHOULD put ``Failure-Report: no`` on the SENDs it generates,
#: since it could not relay a failure report into XMPP.
GATEWAY_FAILURE_REPORT: Final = "no"
#: The MSRP REPORT status that means "delivered" (RFC 4975 §7.1.2: ``000 200 OK``).
REPORT_STATUS_OK: Final = "000 200 OK"


class ChatState(enum.Enum):
    """XEP-0085 chat states (namespace :data:`NS_CHATSTATES`)."""

    ACTIVE = "active"
    COMPOSING = "composing"
    PAUSED = "paused"
    INACTIVE = "inactive"
    GONE = "gone"


#: RFC 7573 §6 Table 3: isComposing -> XEP-0085.
ISCOMPOSING_TO_CHATSTATE: Final[Mapping[ComposingState, ChatState]] = {
    ComposingState.ACTIVE: ChatState.COMPOSING,
    ComposingState.IDLE: ChatState.ACTIVE,
}

#: RFC 7573 §6 Table 4: XEP-0085 -> isComposing. ``gone`` has no isComposing form: it ends
#: the session instead (§6.1, :func:`chatstate_ends_session`).
CHATSTATE_TO_ISCOMPOSING: Final[Mapping[ChatState, ComposingState | None]] = {
    ChatState.ACTIVE: ComposingState.IDLE,
    ChatState.INACTIVE: ComposingState.IDLE,
    ChatState.GONE: None,
    ChatState.COMPOSING: ComposingState.ACTIVE,
    ChatState.PAUSED: ComposingState.IDLE,
}


def iscomposing_to_chatstate(doc: IsComposing | ComposingState) -> ChatState:
    """The XEP-0085 chat state for an isComposing indication (Table 3)."""
    state = doc.state if isinstance(doc, IsComposing) else doc
    return ISCOMPOSING_TO_CHATSTATE[state]


def chatstate_to_iscomposing(
    state: ChatState,
    *,
    content_type: str | None = "text/plain",
    last_active: str | None = None,
    refresh: int = REFRESH_INTERVAL,
) -> IsComposing | None:
    """The isComposing document for a XEP-0085 chat state (Table 4); None for ``gone``.

    ``active`` documents carry ``<refresh>`` (RFC 3994 §3.2: the composer refreshes an
    active state); ``idle`` ones carry ``<lastactive>`` when known.
    """
    composing = CHATSTATE_TO_ISCOMPOSING[state]
    if composing is None:
        return None
    if composing is ComposingState.ACTIVE:
        return IsComposing(composing, content_type=content_type, refresh=refresh)
    return IsComposing(composing, last_active=last_active, content_type=content_type)


def chatstate_ends_session(state: ChatState) -> bool:
    """Does this XMPP chat state end the MSRP session (send a SIP BYE)?

    RFC 7573 §6.1: ``gone`` MAY trigger a BYE. The gateway does it, since ``gone`` is the
    only way an XMPP user ever says a conversation is over.
    """
    return state is ChatState.GONE


def chatstate_for_bye() -> ChatState:
    """The chat state sent to the XMPP user when the SIP side ends the session (§6.1)."""
    return ChatState.GONE


def success_report_for(receipt_requested_by_xmpp: bool) -> str:
    """The ``Success-Report`` of a SEND made from an XMPP message (RFC 7573 §7).

    A XEP-0184 ``<request/>`` asks for ``yes``; without it, ``no`` (the RFC 4975 §7.1.1
    default, written out so the peer never has to guess).
    """
    return "yes" if receipt_requested_by_xmpp else "no"


def receipt_requested(success_report: str | None) -> bool:
    """Does an MSRP SEND's ``Success-Report`` ask for a XEP-0184 ``<request/>``? (§7)

    Only ``yes`` does; a missing header means ``no`` (RFC 4975 §7.1.1).
    """
    return success_report is not None and success_report.strip().lower() == "yes"


def receipt_for_report(status_code: int) -> bool:
    """Does an MSRP REPORT with this status code become a XEP-0184 ``<received/>``? (§7)

    Only a 200 (delivered). Failure reports have no XMPP form, which is why the gateway
    asks for none (:data:`GATEWAY_FAILURE_REPORT`).
    """
    return status_code == 200


def report_status_for_receipt() -> str:
    """The ``Status`` of the MSRP REPORT sent when the XMPP user's ``<received/>`` arrives
    for a SEND that asked ``Success-Report: yes`` (§7)."""
    return REPORT_STATUS_OK


def inactivity_deadline(last_activity: float) -> float:
    """When a chat session with no traffic since ``last_activity`` is ended (see module doc)."""
    return last_activity + CHAT_INACTIVITY_TIMEOUT
