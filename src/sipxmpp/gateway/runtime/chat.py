"""Session-mode IM (RFC 7573): MSRP chat sessions <-> XMPP ``type='chat'`` messages.

Theory of operation
-------------------
:class:`ChatService` owns three layers and the state that ties them together:

* the INVITE layer (:class:`~sipxmpp.gateway.sip.invite.InviteManager`), driven like the
  presence layer: every client transaction it starts is registered with the SIP dispatcher
  through :class:`~sipxmpp.gateway.runtime.presence.OwnedEndpoint`, INVITE/ACK/CANCEL/BYE
  requests are routed here by method, the layer's events are drained after every call and
  its single deadline is kept armed on the event loop;
* the MSRP edge (:class:`~sipxmpp.gateway.transport.msrp_stream.MsrpTransport`) with its
  session table, whose events arrive in :meth:`ChatService._on_msrp_event`;
* one :class:`_Chat` per conversation, keyed by (XMPP user's bare JID, SIP user's bare
  JID, thread) and, as a fallback, by the JID pair alone (RFC 7573 §5 Example 15 shows a
  reply whose ``<thread/>`` is not the session's Call-ID).

XMPP -> MSRP (RFC 7573 §4). The first ``type='chat'`` message with a body towards a SIP
user whose network does session-mode IM (provisioning parameter 9) creates a chat: an
MSRP session on our listener, an SDP offer (``m=message`` TCP/MSRP, ``a=accept-types``,
``a=path``, ``a=max-size``, ``a=setup:actpass``, RFC 6135), an INVITE whose Call-ID is the
message's thread (a new one without). The INVITE's Contact is the XMPP user's resource as GRUU (``sip:user@domain;gr=resource``,
RFC 7573 §4; the same in our 200 when the SIP side called a full JID). Messages wait in the chat, in order, until the MSRP
session is bound (RFC 4975 §5.4); then they are sent. A SIP peer answering 415, 488 or
501, an unusable SDP answer, or a peer whose provisioning says "no session mode", puts the
conversation in pager mode: the waiting messages and every later one go to the
:class:`~sipxmpp.gateway.runtime.bridge.PagerBridge` as SIP MESSAGEs.

MSRP -> XMPP (§5). An INVITE to an XMPP user is answered 200 by the gateway with its own
``a=path``; each MSRP SEND becomes ``<message type='chat'>`` with ``<thread/>`` = Call-ID.

Chat states (§6): isComposing ``active``/``idle`` <-> XEP-0085 (Tables 3-4, in
``mapping/chat.py``); XMPP ``<gone/>`` ends the session with a BYE and a SIP BYE is
reported to the XMPP user as ``<gone/>`` (§6.1). Receipts (§7): a XEP-0184 ``<request/>``
becomes ``Success-Report: yes`` and a REPORT ``200`` comes back as ``<received/>``; an
incoming ``Success-Report: yes`` becomes ``<request/>`` (the MSRP core sends the REPORT).

No silent loss. A message that cannot be delivered comes back to its XMPP sender as a
stanza error: SIP failure of the INVITE (other than the fallback codes), MSRP failure
responses or REPORTs (with ``chat.failure_report = "partial"``), session failure or
connection loss while it was unconfirmed, a message over the peer's ``a=max-size``, and
messages still waiting when the set-up takes longer than ``chat.setup_timeout``.

The inactivity timer (XEP-0085 §5.1, ``chat.inactivity_timeout``) ends forgotten sessions.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sipxmpp.gateway.msrp import (
    FailureReport,
    LocalMsrpError,
    MessageAborted,
    MessageReceived,
    MsrpEvent,
    MsrpSession,
    MsrpSessionTable,
    MsrpSettings,
    RemoteMsrpError,
    ReportReceived,
    SendFailed,
    SessionBound,
    SessionLimitError,
    parse_path,
)
from sipxmpp.gateway.msrp import SessionFailed as MsrpSessionFailed
from sipxmpp.gateway.msrp.session import UNDELIVERED_STATUS
from sipxmpp.gateway.runtime.bridge import NextHopError
from sipxmpp.gateway.runtime.logs import kv
from sipxmpp.gateway.runtime.presence import OwnedEndpoint, contact_uri_for
from sipxmpp.gateway.settings import Settings
from sipxmpp.gateway.sip import grammar
from sipxmpp.gateway.sip.address import TransportAddress
from sipxmpp.gateway.sip.core import SipEndpoint
from sipxmpp.gateway.sip.errors import LocalSipError, RemoteSipError
from sipxmpp.gateway.sip.events import (
    RequestReceived,
    ResponseReceived,
    TransactionTimedOut,
    TransportFailed,
)
from sipxmpp.gateway.sip.ids import IdGenerator
from sipxmpp.gateway.sip.invite import InviteConfig, InviteManager
from sipxmpp.gateway.sip.invite_events import (
    InviteReceived,
    SessionAnswered,
    SessionConfirmed,
    SessionEnded,
    SessionFailed,
)
from sipxmpp.gateway.sip.sdp import (
    NegotiatedStream,
    SdpNegotiationError,
    SessionDescription,
    answer_offer,
    make_offer,
    parse_answer,
    parse_sdp,
    serialize_sdp,
)
from sipxmpp.gateway.transport.config import ListenAddress, TlsSettings
from sipxmpp.gateway.transport.msrp_stream import (
    MESSAGE_BURST_FACTOR,
    MSRP_WRITE_BUFFER_LIMIT,
    MsrpStreamLimits,
    MsrpTransport,
    MsrpTransportConfig,
)
from sipxmpp.gateway.xmpp.errors import (
    LinkCongested,
    LinkDown,
    LocalXmppError,
    StanzaErrorException,
)
from sipxmpp.mapping import chat as chat_map
from sipxmpp.mapping import errors as error_map
from sipxmpp.mapping.addresses import DomainMap, Jid, SipUri, is_public_gruu
from sipxmpp.mapping.cpim import (
    CpimAddress,
    CpimError,
    CpimMessage,
    CpimSubject,
    parse_cpim,
    serialize_cpim,
    unsupported_required,
)
from sipxmpp.mapping.iscomposing import (
    ISCOMPOSING_MIME_TYPE,
    IsComposingError,
    parse_iscomposing,
    serialize_iscomposing,
)
from sipxmpp.mapping.messages import parse_content_type, thread_to_call_id
from sipxmpp.mapping.model import MappingRefused, StanzaError, StanzaRefused, XmppMessage
from sipxmpp.mapping.pidf import is_language_tag

__all__ = [
    "ChatService",
    "FALLBACK_STATUSES",
    "CHAT_ACCEPT_TYPES",
    "CHAT_WRAPPED_TYPES",
    "MAX_TRACKED_SENDS",
    "MAX_PAGER_PAIRS",
]

log = logging.getLogger("sipxmpp.chat")

#: RFC 7573 / issue 5 item 6: INVITE answers that mean "no session-mode IM here"; the
#: conversation continues in pager mode (RFC 7572) without the XMPP user noticing.
FALLBACK_STATUSES = frozenset({415, 488, 501})

#: What we accept in MSRP (RFC 4975 §8.6 a=accept-types): plain text (RFC 7573 §4),
#: CPIM-wrapped content (RFC 3862) and isComposing (RFC 3994, RFC 7573 §6).
CHAT_ACCEPT_TYPES: tuple[str, ...] = ("text/plain", "message/cpim", ISCOMPOSING_MIME_TYPE)
#: What we accept inside message/cpim (a=accept-wrapped-types).
CHAT_WRAPPED_TYPES: tuple[str, ...] = ("text/plain", ISCOMPOSING_MIME_TYPE)

#: Our SENDs remembered per chat, to match REPORTs and failures to the XMPP stanza they
#: carried (the MSRP core remembers 1024 per session; older reports are for messages the
#: XMPP user has long forgotten).
MAX_TRACKED_SENDS = 1024
#: (XMPP user, SIP user) pairs remembered as "pager mode" after a fallback. Bounded so a
#: flood of distinct pairs cannot grow memory; a forgotten pair only costs one more INVITE.
MAX_PAGER_PAIRS = 10_000
#: Incoming message ids remembered per chat to recognise XMPP bounces of what we relayed.
MAX_DELIVERED_IDS = 256

#: How long a message received over MSRP may wait for a congested XMPP link before its
#: SEND is refused (403). Below the MSRP core's DELIVERY_ANSWER_TIMEOUT (10 s), itself
#: below the sender's 30 s transaction timer (RFC 4975 §7.3), so the sender learns the
#: outcome from our response.
XMPP_CONGESTION_WAIT = 5.0
#: Retry interval while the XMPP link is congested (its write buffer drains in about the
#: time the component's limit covers, ~2 s at design load; 100 ms keeps latency low
#: without spinning).
XMPP_CONGESTION_RETRY = 0.1

_TEXT_PLAIN = "text/plain;charset=UTF-8"


@dataclass(slots=True)
class _Inbound:
    """A message received over MSRP whose response waits for the XMPP hand-over."""

    message_id: str
    stanza: XmppMessage
    deadline: float
    counted: bool


class XmppSender(Protocol):
    @property
    def up(self) -> bool: ...

    def send_message(self, msg: XmppMessage) -> Any: ...


class PagerService(Protocol):
    async def on_message(self, msg: XmppMessage) -> None: ...

    async def on_message_error(self, msg: XmppMessage) -> None: ...

    def on_link_state(self, up: bool) -> None: ...


class PeerPolicy(Protocol):
    """What the peer network's provisioning says (``runtime.provisioning.PeerCapabilities``)."""

    def use_session_mode(self) -> bool: ...

    def send_is_composing(self) -> bool: ...

    @property
    def tls_only(self) -> bool: ...


class _Dispatcher(Protocol):
    def own(self, transaction: str, service: Any) -> None: ...


@dataclass(slots=True, eq=False)
class _Chat:
    """One conversation between an XMPP user and a SIP user."""

    key: tuple[str, str]  # (XMPP user's bare JID, SIP user's bare JID under the component)
    thread: str
    xmpp_jid: str  # where stanzas to the XMPP user go (full JID when known)
    sip_jid: str  # the SIP user as an XMPP address (from of our stanzas)
    local_uri: str  # the XMPP user's SIP URI
    remote_uri: str  # the SIP user's URI
    role: str  # "uac" (XMPP user started it) or "uas"
    msrp: MsrpSession
    invite_id: str | None = None
    offer: SessionDescription | None = None
    negotiated: NegotiatedStream | None = None
    bound: bool = False
    closed: bool = False
    #: XMPP messages waiting for the session to be bound (sent in order then).
    waiting: deque[XmppMessage] = field(default_factory=deque)
    #: Message-ID of our SENDs -> the stanza it carried.
    sent: OrderedDict[str, XmppMessage] = field(default_factory=OrderedDict)
    #: Ids of stanzas we delivered to the XMPP user (to recognise their bounces).
    delivered: OrderedDict[str, None] = field(default_factory=OrderedDict)
    last_activity: float = 0.0
    setup_deadline: float | None = None
    timer: asyncio.TimerHandle | None = None
    iscomposing_ok: bool = True
    #: Messages received over MSRP, in order, not yet handed to XMPP (congestion).
    inbound: deque[_Inbound] = field(default_factory=deque)
    retry: asyncio.TimerHandle | None = None


def _bare(jid: str) -> str:
    return jid.split("/", 1)[0].lower()


def _media(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


class ChatService:
    """MSRP chat sessions for the gateway; see the module docstring."""

    def __init__(
        self,
        *,
        settings: Settings,
        domains: DomainMap,
        xmpp: XmppSender,
        pager: PagerService,
        resolve: Callable[[str], Awaitable[TransportAddress]],
        ids: IdGenerator,
        peer_policy: Callable[[str], PeerPolicy] | None = None,
    ) -> None:
        self._settings = settings
        self._cfg = settings.chat
        self._domains = domains
        self._xmpp = xmpp
        self._pager = pager
        self._resolve = resolve
        self._ids = ids
        self._peer_policy = peer_policy
        cfg = self._cfg
        self.table = MsrpSessionTable(
            ids,
            MsrpSettings(
                max_message_size=cfg.max_message_size,
                max_sessions=cfg.max_sessions,
                max_sessions_per_peer=cfg.max_sessions_per_peer,
            ),
        )
        self.transport = MsrpTransport(
            self.table, _msrp_transport_config(settings), on_event=self._on_msrp_event
        )
        self._invites: InviteManager | None = None
        self._transmit: Callable[[], None] = lambda: None
        self._chats: dict[tuple[tuple[str, str], str], _Chat] = {}
        self._by_pair: dict[tuple[str, str], _Chat] = {}
        self._by_invite: dict[str, _Chat] = {}
        self._by_msrp: dict[str, _Chat] = {}
        self._pager_pairs: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._pumping = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self.counters: dict[str, int] = {
            "sessions_out": 0,
            "sessions_in": 0,
            "xmpp_to_msrp": 0,
            "msrp_to_xmpp": 0,
            "fallbacks": 0,
            "bounced": 0,
            "msrp_refused": 0,
        }

    # ------------------------------------------------------------------ lifecycle

    async def start(
        self, endpoint: SipEndpoint, dispatcher: _Dispatcher, transmit: Callable[[], None]
    ) -> None:
        """Open the MSRP listeners and build the INVITE layer over ``endpoint``."""
        await self.transport.start()
        self._transmit = transmit
        self._invites = InviteManager(
            OwnedEndpoint(endpoint, dispatcher, self),  # type: ignore[arg-type]
            InviteConfig(max_sessions=self._cfg.max_sessions),
            self._ids,
            contact_uri_for(endpoint.config.local),
        )
        log.info(
            "chat.msrp.listening",
            extra=kv(**{t: f"{h}:{p}" for t, (h, p) in self.transport.local_addresses.items()}),
        )

    async def stop(self) -> None:
        """End every session (BYE) and close the MSRP edge."""
        invites = self._invites
        if invites is not None:
            now = self._now()
            for chat in list(self._by_invite.values()):
                if chat.invite_id is not None:
                    invites.bye(chat.invite_id, now)
            self._pump()
        for chat in list(self._by_msrp.values()):
            self._forget(chat)
        for task in list(self._tasks):
            task.cancel()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self.transport.stop()

    @property
    def local_msrp_addresses(self) -> Mapping[str, tuple[str, int]]:
        return self.transport.local_addresses

    def stats(self) -> dict[str, int]:
        return {**self.counters, "chats": len(self._by_msrp)}

    def session_count(self) -> int:
        return len(self._by_msrp)

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    # ------------------------------------------------------------------ XMPP side

    async def on_message(self, msg: XmppMessage) -> None:
        """A ``<message/>`` from an XMPP user to a SIP user: session mode or pager mode."""
        if msg.type != "chat" or not self._cfg.enabled or self._invites is None:
            await self._pager.on_message(msg)
            return
        pair = (_bare(msg.from_jid), _bare(msg.to_jid))
        chat = self._find(pair, msg.thread)
        if chat is None:
            if pair in self._pager_pairs:
                await self._pager.on_message(msg)
                return
            if not msg.body:
                if msg.receipt_for is None and msg.chat_state is None:
                    await self._pager.on_message(msg)
                # A chat state or receipt with no session: there is nothing to tell.
                return
            await self._open_session(msg, pair)
            return
        chat.last_activity = self._now()
        if msg.chat_state == "gone" and not msg.body:
            # RFC 7573 §6.1: <gone/> ends the session with a BYE.
            self._end(chat, notify_xmpp=False)
            return
        if msg.receipt_for is not None and not msg.body:
            return  # the MSRP core already answered the Success-Report (RFC 4975 §7.1.2)
        chat.xmpp_jid = msg.from_jid  # replies go to the resource that spoke last
        if not chat.bound:
            if len(chat.waiting) >= self._cfg.max_queued_messages:
                raise StanzaErrorException(
                    StanzaError("resource-constraint", "wait", "the chat session is being set up")
                )
            chat.waiting.append(msg)
            return
        self._send_xmpp(chat, msg)
        if msg.chat_state == "gone":
            self._end(chat, notify_xmpp=False)

    async def on_message_error(self, msg: XmppMessage) -> None:
        """An XMPP bounce: of a message we relayed from MSRP (logged: the MSRP core has
        answered it already), else the pager bridge's business."""
        pair = (_bare(msg.from_jid), _bare(msg.to_jid))
        chat = self._by_pair.get(pair)
        if chat is not None and msg.id is not None and msg.id in chat.delivered:
            log.info(
                "chat.xmpp.bounced",
                extra=kv(id=msg.id, condition=msg.error.condition if msg.error else None),
            )
            return
        await self._pager.on_message_error(msg)

    def on_link_state(self, up: bool) -> None:
        """The XMPP link state; nothing to do (an INVITE meanwhile gets 503)."""
        log.debug("chat.xmpp.link", extra=kv(up=up))

    # ------------------------------------------------------------------ set-up, XMPP side

    def _peer(self, domain: str) -> PeerPolicy | None:
        if self._peer_policy is None:
            return None
        try:
            return self._peer_policy(domain)
        except Exception:
            log.exception("chat.peer_policy_failed", extra=kv(domain=domain))
            return None

    async def _open_session(self, msg: XmppMessage, pair: tuple[str, str]) -> None:
        try:
            target = self._domains.xmpp_target_to_sip(msg.to_jid)
            sender = self._domains.xmpp_sender_to_sip(msg.from_jid)
        except StanzaRefused as e:
            raise StanzaErrorException(e.error) from None
        peer = self._peer(target.host)
        if peer is not None and not peer.use_session_mode():
            # Provisioning parameter 9: this network does pager mode only.
            self._remember_pager(pair)
            await self._pager.on_message(msg)
            return
        try:
            dest = await self._resolve(str(target))
        except NextHopError as e:
            raise StanzaErrorException(
                StanzaError("remote-server-not-found", "cancel", str(e))
            ) from None
        invites = self._invites
        assert invites is not None
        # A concurrent message may have opened the chat while we resolved.
        chat = self._find(pair, msg.thread)
        if chat is not None:
            await self.on_message(msg)
            return
        secure = self._offer_tls(dest, peer)
        try:
            local = self.transport.new_local_uri(secure=secure, host=self._cfg.public_host)
            session = self.table.create_session(
                local,
                accept_types=self._accept_types(),
                max_message_size=self._cfg.max_message_size,
                defer_delivery=True,
            )
        except (LocalMsrpError, SessionLimitError) as e:
            raise StanzaErrorException(
                StanzaError("resource-constraint", "wait", f"no chat session available: {e}")
            ) from None
        offer = make_offer(
            path=(str(local),),
            accept_types=self._accept_types(),
            accept_wrapped_types=CHAT_WRAPPED_TYPES if self._cfg.wrap_cpim else (),
            max_size=self._cfg.max_message_size,
            secure=secure,
            session_id=_sdp_id(self._ids),
        )
        call_id = thread_to_call_id(msg.thread) or self._ids.call_id()
        now = self._now()
        try:
            invite_id = invites.invite(
                request_uri=str(target),
                from_uri=f"<{sender}>",
                to_uri=f"<{target}>",
                destination=dest,
                now=now,
                body=serialize_sdp(offer),
                call_id=call_id,
                headers=(("User-Agent", self._settings.sip.user_agent),),
                contact=_gruu_contact(sender),
            )
        except LocalSipError as e:
            session.close()
            raise StanzaErrorException(
                StanzaError("resource-constraint", "wait", f"cannot start a chat session: {e.msg}")
            ) from None
        chat = _Chat(
            key=pair,
            thread=msg.thread or call_id,
            xmpp_jid=msg.from_jid,
            sip_jid=msg.to_jid.split("/", 1)[0],
            local_uri=str(sender),
            remote_uri=str(target),
            role="uac",
            msrp=session,
            invite_id=invite_id,
            offer=offer,
            last_activity=now,
            setup_deadline=now + self._cfg.setup_timeout,
            iscomposing_ok=peer.send_is_composing() if peer is not None else True,
        )
        chat.waiting.append(msg)
        self._register(chat)
        self.counters["sessions_out"] += 1
        log.info("chat.invite.sent", extra=kv(user=pair[0], peer=str(target), call_id=call_id))
        self._arm_chat(chat)
        self._pump()

    def _offer_tls(self, dest: TransportAddress, peer: PeerPolicy | None) -> bool:
        """Whether our offer is ``TCP/TLS/MSRP`` with an ``msrps:`` path (RFC 4975 §8.1, §14).

        Only with a TLS listener (the offer names where we listen, RFC 6135 §4.2.2), and
        then when plain TCP is not an option: no TCP listener, the SIP next hop is reached
        over TLS (the chat gets the protection its signalling has), or the peer's
        provisioning says TLS only (parameter 3). [ours]: one m=message line with one
        protocol; two lines (TCP and TLS) would let the peer accept both streams.
        """
        addresses = self.transport.local_addresses
        if "tls" not in addresses:
            return False
        if "tcp" not in addresses or dest.transport == "tls":
            return True
        return peer is not None and peer.tls_only

    def _accept_types(self) -> tuple[str, ...]:
        if self._cfg.wrap_cpim:
            return CHAT_ACCEPT_TYPES
        return tuple(t for t in CHAT_ACCEPT_TYPES if t != "message/cpim")

    # ------------------------------------------------------------------ set-up, SIP side

    def _on_invite(self, ev: InviteReceived) -> None:
        invites = self._invites
        assert invites is not None
        now = self._now()
        req = ev.request
        if not self._cfg.enabled:
            invites.reject(ev.session_id, now, 488, "Not Acceptable Here")
            return
        if not self._xmpp.up:
            retry = str(self._settings.sip.retry_after)
            invites.reject(ev.session_id, now, 503, None, (("Retry-After", retry),))
            return
        try:
            from_na = grammar.parse_name_addr(req.headers.get("From") or "")
            to_na = grammar.parse_name_addr(req.headers.get("To") or "")
            sender: Jid = self._domains.sip_sender_to_jid(
                str(from_na.uri), contact_uri=req.headers.get("Contact")
            )
            target: Jid = self._domains.sip_target_to_jid(req.uri, to_uri=str(to_na.uri))
        except MappingRefused as e:
            invites.reject(ev.session_id, now, e.status, e.reason, e.headers)
            return
        except (RemoteSipError, ValueError):
            invites.reject(ev.session_id, now, 400, "Malformed From or To")
            return
        try:
            offer = parse_sdp(ev.body)
            secure = any(m.media == "message" and m.proto == "TCP/TLS/MSRP" for m in offer.media)
            if secure and "tls" not in self.transport.local_addresses:
                secure = False  # answer_offer then refuses a TLS-only offer with 488
            local = self.transport.new_local_uri(secure=secure, host=self._cfg.public_host)
            answer, negotiated = answer_offer(
                offer,
                path=(str(local),),
                accept_types=self._accept_types(),
                accept_wrapped_types=CHAT_WRAPPED_TYPES if self._cfg.wrap_cpim else (),
                max_size=self._cfg.max_message_size,
                allow_tls="tls" in self.transport.local_addresses,
                session_id=_sdp_id(self._ids),
            )
            remote_path = parse_path(" ".join(negotiated.remote.path))
            session = self.table.create_session(
                local,
                remote_path=remote_path,
                accept_types=self._accept_types(),
                max_message_size=self._cfg.max_message_size,
                defer_delivery=True,
            )
        except SdpNegotiationError as e:
            invites.reject(
                ev.session_id, now, 488, "Not Acceptable Here", (("Warning", _warning(e.msg)),)
            )
            return
        except RemoteSipError as e:
            invites.reject(ev.session_id, now, 400, "Bad Session Description")
            log.info("chat.invite.bad_sdp", extra=kv(reason=e.msg))
            return
        except RemoteMsrpError:
            invites.reject(ev.session_id, now, 488, "Not Acceptable Here")
            return
        except (SessionLimitError, LocalMsrpError):
            retry = str(self._settings.sip.retry_after)
            invites.reject(ev.session_id, now, 503, None, (("Retry-After", retry),))
            return
        call_id = req.headers.get("Call-ID") or ev.session_id
        xmpp_jid = str(target)
        chat = _Chat(
            key=(_bare(xmpp_jid), _bare(str(sender))),
            thread=call_id,
            xmpp_jid=xmpp_jid,
            sip_jid=str(sender),
            local_uri=str(to_na.uri),
            remote_uri=str(from_na.uri),
            role="uas",
            msrp=session,
            invite_id=ev.session_id,
            negotiated=negotiated,
            last_activity=now,
            setup_deadline=now + self._cfg.setup_timeout,
        )
        peer = self._peer(getattr(from_na.uri, "host", "") or "")
        chat.iscomposing_ok = peer.send_is_composing() if peer is not None else True
        self._register(chat)
        self.counters["sessions_in"] += 1
        try:
            contact = _gruu_contact(self._domains.xmpp_sender_to_sip(target))
        except StanzaRefused:
            contact = None
        invites.answer(ev.session_id, now, serialize_sdp(answer), contact=contact)
        log.info("chat.invite.answered", extra=kv(user=xmpp_jid, call_id=call_id))
        self._arm_chat(chat)

    def _on_answered(self, chat: _Chat, ev: SessionAnswered) -> None:
        assert chat.offer is not None
        try:
            negotiated = parse_answer(chat.offer, parse_sdp(ev.body))
            chat.msrp.set_remote_path(parse_path(" ".join(negotiated.remote.path)))
        except (RemoteSipError, RemoteMsrpError, LocalMsrpError) as e:
            # The answer cannot be refused (RFC 3264): end the dialog, carry on in pager mode.
            log.info("chat.answer.unusable", extra=kv(call_id=chat.thread, reason=str(e)))
            self._fallback(chat)
            return
        chat.negotiated = negotiated
        if negotiated.active:
            self._connect(chat)

    def _connect(self, chat: _Chat) -> None:
        try:
            self.transport.connect(chat.msrp)
        except LocalMsrpError as e:
            log.warning("chat.msrp.connect_failed", extra=kv(call_id=chat.thread, reason=str(e)))
            self._fail(chat, StanzaError("remote-server-timeout", "wait", str(e)))

    # ------------------------------------------------------------------ sending into MSRP

    def _send_xmpp(self, chat: _Chat, msg: XmppMessage) -> None:
        """Map one XMPP message onto the chat's MSRP session (chat state, then body)."""
        negotiated = chat.negotiated
        if msg.chat_state is not None and msg.chat_state != "gone" and chat.iscomposing_ok:
            state = chat_map.ChatState(msg.chat_state)
            doc = chat_map.chatstate_to_iscomposing(state)
            if doc is not None and self._peer_takes(negotiated, ISCOMPOSING_MIME_TYPE):
                try:
                    ctype, payload = self._wrap(
                        chat, ISCOMPOSING_MIME_TYPE, serialize_iscomposing(doc)
                    )
                    self.transport.send_message(
                        chat.msrp, ctype, payload, failure_report=FailureReport.NO
                    )
                except LocalMsrpError as e:
                    log.info("chat.iscomposing.dropped", extra=kv(reason=str(e)))
        if not msg.body:
            return
        data = msg.body.encode("utf-8", "replace")
        try:
            ctype, payload = self._wrap(chat, _TEXT_PLAIN, data, msg)
        except CpimError as e:
            self._bounce(msg, StanzaError("not-acceptable", "modify", str(e)))
            return
        limit = negotiated.remote_max_size if negotiated is not None else None
        if limit is not None and len(payload) > limit:
            # RFC 4975 §8.6: never send a peer more than its a=max-size.
            self._bounce(
                msg,
                StanzaError(
                    "policy-violation", "modify", f"message larger than the peer's {limit} octets"
                ),
            )
            return
        failure = (
            FailureReport.PARTIAL if self._cfg.failure_report == "partial" else FailureReport.NO
        )
        try:
            message_id = self.transport.send_message(
                chat.msrp,
                ctype,
                payload,
                success_report=msg.receipt_request,
                failure_report=failure,
            )
        except LocalMsrpError as e:
            self._bounce(msg, StanzaError("policy-violation", "modify", str(e)))
            return
        chat.sent[message_id] = msg
        while len(chat.sent) > MAX_TRACKED_SENDS:
            chat.sent.popitem(last=False)
        self.counters["xmpp_to_msrp"] += 1

    def _peer_takes(self, negotiated: NegotiatedStream | None, media: str) -> bool:
        if negotiated is None:
            return media == "text/plain"
        types = negotiated.remote.accept_types
        wrapped = negotiated.remote.accept_wrapped_types
        return _matches(types, media) or (
            _matches(types, "message/cpim") and _matches(wrapped, media)
        )

    def _wrap(
        self, chat: _Chat, ctype: str, data: bytes, msg: XmppMessage | None = None
    ) -> tuple[str, bytes]:
        """Send ``ctype`` as is when the peer takes it, else wrapped in message/cpim when it
        takes it wrapped (RFC 4975 §8.6, RFC 3862)."""
        negotiated = chat.negotiated
        media = _media(ctype)
        if negotiated is None or _matches(negotiated.remote.accept_types, media):
            return ctype, data
        if self._cfg.wrap_cpim and _matches(negotiated.remote.accept_types, "message/cpim"):
            # RFC 3862 §3-§4: From and To are the two users (as RFC 7702 §5.5 Table 4 maps
            # them for groupchat), DateTime the moment of sending (§4.4, RFC 3339 in UTC);
            # XMPP <subject/> and xml:lang travel as CPIM Subject (§4.5) and the wrapped
            # object's Content-Language (RFC 7572 §8 maps xml:lang to Content-Language).
            subject = msg.subject if msg is not None else None
            lang = msg.lang if msg is not None and msg.lang and is_language_tag(msg.lang) else None
            cpim = CpimMessage(
                from_=CpimAddress(chat.local_uri),
                to=(CpimAddress(chat.remote_uri),),
                date_time=_cpim_datetime(),
                subjects=(CpimSubject(subject, lang),) if subject else (),
                content_type=ctype,
                content_headers=(("Content-Language", lang),) if lang else (),
                body=data,
            )
            return "message/cpim", serialize_cpim(cpim)
        return ctype, data  # the peer did not say; plain text is RFC 7573's default

    # ------------------------------------------------------------------ MSRP events

    def _on_msrp_event(self, event: MsrpEvent) -> None:
        session_id = getattr(event, "session_id", None)
        chat = self._by_msrp.get(session_id) if session_id is not None else None
        if chat is None:
            return
        try:
            if isinstance(event, MessageReceived):
                self._on_msrp_message(chat, event)
            elif isinstance(event, SessionBound):
                self._on_bound(chat)
            elif isinstance(event, ReportReceived):
                self._on_report(chat, event)
            elif isinstance(event, SendFailed):
                msg = chat.sent.pop(event.message_id, None)
                if msg is not None:
                    self._bounce(msg, _msrp_error(event.status, event.reason))
            elif isinstance(event, MsrpSessionFailed):
                log.info(
                    "chat.msrp.failed",
                    extra=kv(call_id=chat.thread, status=event.status, reason=event.reason),
                )
                self._fail(
                    chat,
                    StanzaError(
                        "recipient-unavailable", "wait", f"chat session lost: {event.reason}"
                    ),
                    notify_xmpp=True,
                    msrp_closed=True,
                )
            elif isinstance(event, MessageAborted):
                log.info(
                    "chat.msrp.aborted",
                    extra=kv(call_id=chat.thread, reason=event.reason, status=event.status),
                )
        except Exception:
            log.exception("chat.msrp.event_failed", extra=kv(event=type(event).__name__))

    def _on_bound(self, chat: _Chat) -> None:
        chat.bound = True
        chat.setup_deadline = None
        waiting = list(chat.waiting)
        chat.waiting.clear()
        for msg in waiting:
            self._send_xmpp(chat, msg)
            if msg.chat_state == "gone":
                self._end(chat, notify_xmpp=False)
                return

    def _on_msrp_message(self, chat: _Chat, ev: MessageReceived) -> None:
        """Map a received MSRP message; its response and Success-Report wait (deferred
        delivery) until the stanza is handed to the XMPP edge, see :meth:`_drain_inbound`."""
        now = chat.last_activity = self._now()
        subject: str | None = None
        lang: str | None = None
        try:
            media, params = parse_content_type(ev.content_type)
            body = ev.body
            if media == "message/cpim":
                inner = parse_cpim(body, max_size=self._cfg.max_message_size)
                missing = unsupported_required(inner)
                if missing:
                    # RFC 3862 §4.7: a recipient that does not understand a Require'd
                    # header must not act on the message; §10 of RFC 4975 has 415 for
                    # content the recipient cannot process.
                    log.info("chat.cpim.required", extra=kv(headers=",".join(missing)))
                    reason = f"message/cpim requires {', '.join(missing)}"
                    self._answer(chat, ev.message_id, 415, reason)
                    return
                media, params = parse_content_type(inner.content_type)
                body = inner.body
                if inner.subjects:
                    subject = inner.subjects[0].text
                lang = next(
                    (v for k, v in inner.content_headers if k.lower() == "content-language"),
                    None,
                )
        except (CpimError, MappingRefused) as e:
            log.info("chat.cpim.unusable", extra=kv(reason=str(e)))
            self._answer(chat, ev.message_id, 400, f"unusable message: {e}")
            return
        if media == ISCOMPOSING_MIME_TYPE:
            try:
                state = chat_map.iscomposing_to_chatstate(parse_iscomposing(body))
            except IsComposingError as e:
                log.info("chat.iscomposing.unusable", extra=kv(reason=str(e)))
                self._answer(chat, ev.message_id, 400, f"unusable isComposing: {e}")
                return
            stanza = XmppMessage(
                from_jid=chat.sip_jid,
                to_jid=chat.xmpp_jid,
                type="chat",
                thread=chat.thread,
                chat_state=state.value,
            )
            self._enqueue_inbound(chat, ev.message_id, stanza, counted=False, now=now)
            return
        if media != "text/plain":
            # RFC 4975 §10: 415 for a type we cannot carry (e.g. wrapped in message/cpim).
            log.info("chat.msrp.unmapped_type", extra=kv(type=media))
            self._answer(chat, ev.message_id, 415, f"{media} cannot be carried to XMPP")
            return
        charset = (params.get("charset") or "utf-8").lower()
        try:
            text = body.decode(charset, "replace")
        except LookupError:
            text = body.decode("utf-8", "replace")
        stanza = XmppMessage(
            from_jid=chat.sip_jid,
            to_jid=chat.xmpp_jid,
            type="chat",
            body=text,
            subject=subject,
            thread=chat.thread,
            id=self._ids.token(64),
            lang=lang if lang and is_language_tag(lang) else None,
            receipt_request=chat_map.receipt_requested("yes" if ev.success_report else None),
        )
        self._enqueue_inbound(chat, ev.message_id, stanza, counted=True, now=now)

    def _enqueue_inbound(
        self, chat: _Chat, message_id: str, stanza: XmppMessage, *, counted: bool, now: float
    ) -> None:
        deadline = now + XMPP_CONGESTION_WAIT
        chat.inbound.append(_Inbound(message_id, stanza, deadline, counted))
        self._drain_inbound(chat)

    def _drain_inbound(self, chat: _Chat) -> None:
        """Hand the chat's received messages to XMPP in order; answer each one's MSRP SEND.

        Handed over -> 200 (and the Success REPORT, RFC 4975 §7.1.2). XMPP link down, or
        congested for longer than :data:`XMPP_CONGESTION_WAIT`, or a stanza XMPP cannot
        carry -> :data:`~sipxmpp.gateway.msrp.session.UNDELIVERED_STATUS` (403, §10): the
        sender's Failure-Report turns it into a reported failure, never a silent loss.
        While congested the queue waits (the sender's window of unanswered chunks is the
        backpressure) and is retried every :data:`XMPP_CONGESTION_RETRY`.
        """
        if chat.retry is not None:
            chat.retry.cancel()
            chat.retry = None
        while chat.inbound and not chat.closed:
            item = chat.inbound[0]
            try:
                self._xmpp.send_message(item.stanza)
            except LinkCongested as e:
                if self._now() < item.deadline:
                    chat.retry = asyncio.get_running_loop().call_later(
                        XMPP_CONGESTION_RETRY, self._drain_inbound, chat
                    )
                    return
                chat.inbound.popleft()
                log.warning("chat.xmpp.congested", extra=kv(to=item.stanza.to_jid))
                self._answer(chat, item.message_id, UNDELIVERED_STATUS, f"XMPP congested: {e}")
                continue
            except (LinkDown, LocalXmppError) as e:
                chat.inbound.popleft()
                log.warning(
                    "chat.xmpp.undeliverable", extra=kv(to=item.stanza.to_jid, reason=str(e))
                )
                self._answer(chat, item.message_id, UNDELIVERED_STATUS, f"not delivered: {e}")
                continue
            chat.inbound.popleft()
            self._answer(chat, item.message_id, 200, None)
            if item.counted and item.stanza.id is not None:
                chat.delivered[item.stanza.id] = None
                while len(chat.delivered) > MAX_DELIVERED_IDS:
                    chat.delivered.popitem(last=False)
                self.counters["msrp_to_xmpp"] += 1

    def _answer(self, chat: _Chat, message_id: str, status: int, reason: str | None) -> None:
        """The verdict on a received message (deferred delivery in the MSRP core)."""
        if status != 200:
            self.counters["msrp_refused"] += 1
        try:
            if chat.msrp.answer_message(message_id, status, now=self._now(), reason=reason):
                # Write the held response now; flush() would service every connection.
                self.transport.service(chat.msrp)
        except LocalMsrpError:
            log.exception("chat.msrp.answer_failed")

    def _on_report(self, chat: _Chat, ev: ReportReceived) -> None:
        msg = chat.sent.get(ev.message_id)
        if msg is None:
            return
        if chat_map.receipt_for_report(ev.status):
            chat.sent.pop(ev.message_id, None)
            if msg.receipt_request and msg.id:
                # RFC 7573 §7: REPORT 200 -> XEP-0184 <received/>.
                self._to_xmpp(
                    chat,
                    XmppMessage(
                        from_jid=msg.to_jid,
                        to_jid=msg.from_jid,
                        type="chat",
                        thread=chat.thread,
                        receipt_for=msg.id,
                    ),
                )
        else:
            chat.sent.pop(ev.message_id, None)
            self._bounce(msg, _msrp_error(ev.status, ev.reason or ""))

    def _to_xmpp(self, chat: _Chat, msg: XmppMessage) -> bool:
        try:
            self._xmpp.send_message(msg)
            return True
        except (LinkDown, LocalXmppError) as e:
            log.warning("chat.xmpp.undeliverable", extra=kv(to=msg.to_jid, reason=str(e)))
            return False

    # ------------------------------------------------------------------ SIP side

    def handle_sip_event(self, event: object) -> None:
        """An INVITE/ACK/CANCEL/BYE request, or an outcome of the layer's transactions."""
        invites = self._invites
        if invites is None:
            log.warning("chat.not_started", extra=kv(event=type(event).__name__))
            return
        if not isinstance(
            event, RequestReceived | ResponseReceived | TransactionTimedOut | TransportFailed
        ):
            return
        try:
            invites.handle_sip_event(event, self._now())
        except Exception:
            log.exception("chat.layer.event_failed", extra=kv(event=type(event).__name__))
        self._pump()

    def _pump(self) -> None:
        invites = self._invites
        if invites is None or self._pumping:
            return
        self._pumping = True
        try:
            while (event := invites.next_event()) is not None:
                try:
                    self._on_layer_event(event)
                except Exception:
                    log.exception("chat.event_failed", extra=kv(event=type(event).__name__))
        finally:
            self._pumping = False
        try:
            self._transmit()
        except Exception:
            log.exception("chat.transmit_failed")
        self._rearm()

    def _on_layer_event(self, event: object) -> None:
        if isinstance(event, InviteReceived):
            self._on_invite(event)
            return
        session_id = getattr(event, "session_id", None)
        chat = self._by_invite.get(session_id) if session_id is not None else None
        if chat is None:
            return
        if isinstance(event, SessionAnswered):
            self._on_answered(chat, event)
        elif isinstance(event, SessionConfirmed):
            negotiated = chat.negotiated
            if chat.role == "uas" and negotiated is not None and negotiated.active:
                self._connect(chat)
        elif isinstance(event, SessionFailed):
            chat.invite_id = None
            self._by_invite.pop(event.session_id, None)
            if event.status in FALLBACK_STATUSES:
                self._fallback(chat)
            else:
                self._fail(chat, error_map.sip_status_to_stanza_error(event.status, event.reason))
        elif isinstance(event, SessionEnded):
            chat.invite_id = None
            self._by_invite.pop(event.session_id, None)
            if not chat.closed:
                # A BYE (or CANCEL) from the SIP side: RFC 7573 §6.1, tell XMPP <gone/>.
                self._fail(
                    chat,
                    StanzaError("recipient-unavailable", "wait", "the chat session has ended"),
                    notify_xmpp=event.by == "remote",
                )

    # ------------------------------------------------------------------ endings

    def _fallback(self, chat: _Chat) -> None:
        """RFC 7573 fallback: carry on in pager mode, the waiting messages first."""
        self.counters["fallbacks"] += 1
        waiting = list(chat.waiting)
        chat.waiting.clear()
        log.info("chat.fallback.pager", extra=kv(user=chat.key[0], peer=chat.remote_uri))
        self._remember_pager(chat.key)
        self._end(chat, notify_xmpp=False)
        if waiting:
            self._spawn(self._replay_in_pager(waiting))

    async def _replay_in_pager(self, messages: list[XmppMessage]) -> None:
        for msg in messages:
            try:
                await self._pager.on_message(msg)
            except StanzaErrorException as e:
                self._bounce(msg, e.error)
            except Exception:
                log.exception("chat.fallback.failed")
                self._bounce(msg, StanzaError("internal-server-error", "wait"))

    def _remember_pager(self, pair: tuple[str, str]) -> None:
        self._pager_pairs[pair] = None
        self._pager_pairs.move_to_end(pair)
        while len(self._pager_pairs) > MAX_PAGER_PAIRS:
            self._pager_pairs.popitem(last=False)

    def _fail(
        self,
        chat: _Chat,
        error: StanzaError,
        *,
        notify_xmpp: bool = False,
        msrp_closed: bool = False,
    ) -> None:
        """The session is over without our asking: return what was not delivered."""
        for msg in chat.waiting:
            self._bounce(msg, error)
        chat.waiting.clear()
        self._end(chat, notify_xmpp=notify_xmpp, error=error, msrp_closed=msrp_closed)

    def _end(
        self,
        chat: _Chat,
        *,
        notify_xmpp: bool,
        error: StanzaError | None = None,
        msrp_closed: bool = False,
    ) -> None:
        """End the chat: BYE if the dialog lives, close the MSRP session, bounce the SENDs
        that were never confirmed, and (``notify_xmpp``) send ``<gone/>`` (RFC 7573 §6.1)."""
        if chat.closed:
            return
        chat.closed = True
        invites = self._invites
        if chat.invite_id is not None and invites is not None:
            invites.bye(chat.invite_id, self._now())
        unfinished: tuple[str, ...] = ()
        if not msrp_closed:
            unfinished = self.transport.close_session(chat.msrp)
        error = error or StanzaError("recipient-unavailable", "wait", "the chat session has ended")
        if self._cfg.failure_report == "partial" or msrp_closed or not chat.bound:
            for message_id in unfinished:
                msg = chat.sent.pop(message_id, None)
                if msg is not None:
                    self._bounce(msg, error)
        for msg in chat.waiting:
            self._bounce(msg, error)
        chat.waiting.clear()
        if notify_xmpp:
            self._to_xmpp(
                chat,
                XmppMessage(
                    from_jid=chat.sip_jid,
                    to_jid=chat.xmpp_jid,
                    type="chat",
                    thread=chat.thread,
                    chat_state=chat_map.chatstate_for_bye().value,
                ),
            )
        self._forget(chat)
        self._pump()

    def _forget(self, chat: _Chat) -> None:
        chat.closed = True
        if chat.timer is not None:
            chat.timer.cancel()
            chat.timer = None
        if chat.retry is not None:
            chat.retry.cancel()
            chat.retry = None
        chat.inbound.clear()  # the MSRP session is closed: its pending verdicts are gone
        self._by_msrp.pop(chat.msrp.session_id, None)
        if chat.invite_id is not None:
            self._by_invite.pop(chat.invite_id, None)
        if self._chats.get((chat.key, chat.thread)) is chat:
            del self._chats[(chat.key, chat.thread)]
        if self._by_pair.get(chat.key) is chat:
            del self._by_pair[chat.key]
            for (key, _), other in self._chats.items():
                if key == chat.key:
                    self._by_pair[key] = other
                    break

    def _bounce(self, msg: XmppMessage, error: StanzaError) -> None:
        """Return an XMPP message to its sender as a stanza error (RFC 6120 §8.3)."""
        self.counters["bounced"] += 1
        log.info("chat.message.bounced", extra=kv(to=msg.to_jid, condition=error.condition))
        reply = XmppMessage(
            from_jid=msg.to_jid,
            to_jid=msg.from_jid,
            id=msg.id,
            type="error",
            thread=msg.thread,
            body=msg.body,
            error=error,
        )
        try:
            self._xmpp.send_message(reply)
        except Exception:
            log.warning("chat.bounce.lost_link", extra=kv(to=msg.from_jid))

    # ------------------------------------------------------------------ bookkeeping

    def _find(self, pair: tuple[str, str], thread: str | None) -> _Chat | None:
        if thread:
            chat = self._chats.get((pair, thread))
            if chat is not None:
                return chat
        return self._by_pair.get(pair)  # RFC 7573 §5 Example 15: fall back to the pair

    def _register(self, chat: _Chat) -> None:
        self._chats[(chat.key, chat.thread)] = chat
        self._by_pair[chat.key] = chat
        self._by_msrp[chat.msrp.session_id] = chat
        if chat.invite_id is not None:
            self._by_invite[chat.invite_id] = chat

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ timers

    def _arm_chat(self, chat: _Chat) -> None:
        """One timer per chat, at the earlier of its set-up and inactivity deadlines."""
        if chat.closed:
            return
        deadline = chat.last_activity + self._cfg.inactivity_timeout
        if chat.setup_deadline is not None:
            deadline = min(deadline, chat.setup_deadline)
        if chat.timer is not None:
            chat.timer.cancel()
        chat.timer = asyncio.get_running_loop().call_at(deadline, self._chat_timer, chat)

    def _chat_timer(self, chat: _Chat) -> None:
        chat.timer = None
        if chat.closed:
            return
        now = self._now()
        if chat.setup_deadline is not None and now >= chat.setup_deadline:
            log.info("chat.setup.timeout", extra=kv(call_id=chat.thread))
            self._fail(chat, StanzaError("remote-server-timeout", "wait", "chat set-up timed out"))
            return
        if now >= chat.last_activity + self._cfg.inactivity_timeout:
            log.info("chat.inactive", extra=kv(call_id=chat.thread))
            self._end(chat, notify_xmpp=True)
            return
        self._arm_chat(chat)

    def _rearm(self) -> None:
        invites = self._invites
        deadline = invites.next_deadline() if invites is not None else None
        if deadline is None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
                self._timer_at = None
            return
        if self._timer is not None and self._timer_at == deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = asyncio.get_running_loop().call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        at = self._timer_at or 0.0
        self._timer_at = None
        invites = self._invites
        if invites is not None:
            try:
                invites.handle_timer(max(at, self._now()))
            except Exception:
                log.exception("chat.layer.timer_failed")
        self._pump()


# ---------------------------------------------------------------------- helpers


def _matches(patterns: tuple[str, ...], media: str) -> bool:
    for pattern in patterns:
        p = pattern.lower()
        if p == "*" or p == media or (p.endswith("/*") and media.startswith(p[:-1])):
            return True
    return False


def _gruu_contact(uri: SipUri) -> str | None:
    """Contact for a chat dialog: the XMPP user's resource as GRUU (RFC 7573 §4, spec
    §2.4: ``sip:user@domain;gr=resource``), in angle brackets so ``gr`` stays inside the
    URI (RFC 3261 §20). None (the gateway's own Contact) when there is no resource."""
    return f"<{uri}>" if is_public_gruu(uri) else None


def _cpim_datetime() -> str:
    """CPIM DateTime for a message sent now (RFC 3862 §4.4: RFC 3339, here in UTC)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sdp_id(ids: IdGenerator) -> int:
    """An o= session id (RFC 8866 §5.2: a numeric string; 48 random bits fit any parser)."""
    return int(ids.token(48), 16)


def _warning(text: str) -> str:
    quoted = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'399 sipxmpp "{quoted}"'


def _msrp_error(status: int, reason: str) -> StanzaError:
    """An MSRP failure (RFC 4975 §10) as a stanza error: its codes are SIP's where they
    overlap, so RFC 7247 §7.2 Table 3 applies; 408 is the transaction timer's."""
    error = error_map.sip_status_to_stanza_error(status, reason or None)
    return dataclasses.replace(error, text=f"MSRP {status} {reason}".strip())


def _msrp_transport_config(settings: Settings) -> MsrpTransportConfig:
    cfg = settings.chat
    tls_cfg = settings.sip.tls
    tls: TlsSettings | None = None
    if tls_cfg.certificate is not None or tls_cfg.ca_file is not None:
        tls = TlsSettings(
            certfile=str(tls_cfg.certificate) if tls_cfg.certificate else None,
            keyfile=str(tls_cfg.private_key) if tls_cfg.private_key else None,
            cafile=str(tls_cfg.ca_file) if tls_cfg.ca_file else None,
            require_client_certificate=tls_cfg.require_client_certificate,
            allowed_peer_identities=frozenset(tls_cfg.trusted_peers),
        )
    limits = MsrpStreamLimits(
        write_buffer_limit=max(MSRP_WRITE_BUFFER_LIMIT, MESSAGE_BURST_FACTOR * cfg.max_message_size)
    )
    return MsrpTransportConfig(
        tcp=ListenAddress(cfg.listen_host, cfg.tcp_port) if cfg.tcp_port is not None else None,
        tls_listen=(
            ListenAddress(cfg.listen_host, cfg.tls_port)
            if cfg.tls_port is not None and tls is not None and tls.certfile is not None
            else None
        ),
        tls=tls,
        limits=limits,
    )
