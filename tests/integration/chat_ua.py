"""A far-end chat user agent for the integration tests, built from the gateway's own cores.

``ChatUA`` plays a SIP user (say ``sip:alice@example.test``) who chats in session mode
(RFC 4975 MSRP over an RFC 3261 INVITE dialog). Nothing in it speaks a protocol by hand:

* SIP: :class:`~sipxmpp.gateway.sip.SipEndpoint` (transaction layer) under
  :class:`~sipxmpp.gateway.sip.InviteManager` (INVITE/ACK/BYE/CANCEL dialogs), over the
  gateway's own UDP edge, :class:`~sipxmpp.gateway.transport.SipTransportManager`, bound to
  127.0.0.1 on a free port;
* SDP: :mod:`sipxmpp.gateway.sip.sdp` (``make_offer``/``answer_offer``/``parse_answer``);
* MSRP: :class:`~sipxmpp.gateway.msrp.MsrpSessionTable` and the gateway's MSRP edge
  :class:`~sipxmpp.gateway.transport.MsrpTransport`, with a TCP listener and, given TLS
  material, an ``msrps:`` listener (RFC 4975 §5.4, RFC 6135 a=setup);
* bodies: :mod:`sipxmpp.mapping.cpim` (RFC 3862) and :mod:`sipxmpp.mapping.iscomposing`
  (RFC 3994).

It can place a call (``await ua.call(...)``: INVITE with an ``m=message`` offer, then the
MSRP connection per a=setup) and answer one (``await ua.incoming()``: the gateway's INVITE
is answered 200 at once, or refused with ``reject_status``). A :class:`UaCall` sends text
(optionally CPIM-wrapped, chunked by the MSRP core above 2048 octets), isComposing, asks for
Success-Reports, reads what arrives (messages reassembled, REPORTs, failures), ends the call
with a BYE or drops its MSRP connection. Out-of-dialog MESSAGEs (pager mode, RFC 3428) are
answered 200 and kept in :attr:`ChatUA.pager`, so a test can watch a fallback too.

Time comes from the event loop; every wait has a timeout. Use as::

    async with ChatUA(UaConfig(aor="sip:alice@example.test")) as ua:
        call = await ua.call("sip:bob@example.test", gateway=("127.0.0.1", port))
        call.send_text("hello")
        msg = await call.next_message()
        await call.bye()
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from sipxmpp.gateway.msrp import (
    FailureReport,
    MessageReceived,
    MsrpEvent,
    MsrpSession,
    MsrpSessionTable,
    MsrpSettings,
    ReportReceived,
    SessionBound,
    parse_path,
)
from sipxmpp.gateway.sip import (
    EndpointConfig,
    InviteConfig,
    InviteManager,
    RandomIds,
    RequestReceived,
    SipEndpoint,
    Timers,
    TransportAddress,
    make_response,
    parse_name_addr,
)
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
    Setup,
    answer_offer,
    make_offer,
    parse_answer,
    parse_sdp,
    serialize_sdp,
)
from sipxmpp.gateway.transport import (
    ListenAddress,
    MsrpTransport,
    MsrpTransportConfig,
    SipTransportManager,
    TlsSettings,
    TransportConfig,
)
from sipxmpp.mapping.cpim import CpimAddress, CpimMessage, parse_cpim, serialize_cpim
from sipxmpp.mapping.iscomposing import (
    ISCOMPOSING_MIME_TYPE,
    ComposingState,
    IsComposing,
    parse_iscomposing,
    serialize_iscomposing,
)

__all__ = ["CallFailed", "ChatUA", "Received", "UaCall", "UaConfig", "WAIT"]

#: Default bound on every wait of a test, seconds: loopback answers in milliseconds.
WAIT = 10.0

#: The UA's RFC 3261 T1: short, so a lost datagram costs a test little (loopback loses none).
UA_T1 = 0.05

#: Text bodies go out as UTF-8 (RFC 7573 §4 examples; RFC 4975 §8.6 accept-types).
TEXT_PLAIN = "text/plain;charset=UTF-8"
CPIM = "message/cpim"

E = TypeVar("E")

_sdp_ids = itertools.count(1)


class CallFailed(Exception):
    """The INVITE got a final failure (``status``) or an unusable answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class UaConfig:
    """What the UA offers and accepts; defaults match an RFC 7573 chat client."""

    aor: str = "sip:alice@example.test"
    accept_types: tuple[str, ...] = ("text/plain", ISCOMPOSING_MIME_TYPE)
    accept_wrapped_types: tuple[str, ...] = ()
    max_size: int | None = None
    #: TLS material: enables the ``msrps:`` listener and outbound ``msrps:`` (mutual TLS).
    tls: TlsSettings | None = None
    #: Answer incoming INVITEs with this failure instead of 200 (e.g. 488 for a fallback).
    reject_status: int | None = None
    #: Largest MSRP message the UA accepts (its MSRP core's limit).
    max_message_size: int = 256 * 1024


@dataclass
class Received:
    """A message as the UA's MSRP core delivered it, with the CPIM wrapper taken apart."""

    event: MessageReceived
    #: The CPIM envelope when the message was ``message/cpim`` (RFC 3862), else None.
    cpim: CpimMessage | None
    #: The media type of the payload (inside the CPIM wrapper if any), lower case.
    media_type: str
    #: The payload (inside the CPIM wrapper if any).
    payload: bytes

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8")

    @property
    def composing(self) -> ComposingState | None:
        """The isComposing state, for an RFC 3994 document."""
        if self.media_type != ISCOMPOSING_MIME_TYPE:
            return None
        return parse_iscomposing(self.payload).state


def _media(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _rfc3339_now() -> str:
    """RFC 3339 date-time with offset, as CPIM DateTime wants it (RFC 3862 §4.4)."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


class UaCall:
    """One chat session of the UA: its INVITE dialog and its MSRP session."""

    def __init__(
        self,
        ua: ChatUA,
        session: MsrpSession,
        role: str,
        *,
        offer: SessionDescription | None = None,
        remote_uri: str,
    ) -> None:
        self.ua = ua
        self.session = session
        self.role = role
        self.offer = offer
        self.remote_uri = remote_uri
        self.invite_id: str | None = None
        self.call_id: str | None = None
        self.negotiated: NegotiatedStream | None = None
        #: The SDP the gateway sent (its offer or its answer).
        self.remote_sdp: SessionDescription | None = None
        #: Every MSRP event of the session, in order (also the consumed ones).
        self.events: list[MsrpEvent] = []
        self._consumed: set[int] = set()
        self._changed = asyncio.Event()
        self._answered: asyncio.Future[SessionAnswered] = asyncio.get_running_loop().create_future()
        self._confirmed = asyncio.Event()
        self.ended: asyncio.Future[SessionEnded | SessionFailed] = (
            asyncio.get_running_loop().create_future()
        )

    # ------------------------------------------------------------------ events

    def _event(self, event: MsrpEvent) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait_event(
        self,
        kind: type[E],
        predicate: Callable[[E], bool] | None = None,
        timeout: float = WAIT,
    ) -> E:
        """The first not yet consumed MSRP event of ``kind`` (matching ``predicate``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for index, event in enumerate(self.events):
                if index in self._consumed or not isinstance(event, kind):
                    continue
                if predicate is None or predicate(event):
                    self._consumed.add(index)
                    return event
            self._changed.clear()
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"no {kind.__name__} within {timeout} s")
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                continue

    async def wait_bound(self, timeout: float = WAIT) -> None:
        """Until the MSRP session is bound to its connection (RFC 4975 §5.4)."""
        await self.wait_event(SessionBound, timeout=timeout)

    async def next_message(self, timeout: float = WAIT) -> Received:
        """The next message received, unwrapped from message/cpim when wrapped."""
        event = await self.wait_event(MessageReceived, timeout=timeout)
        media = _media(event.content_type)
        if media == CPIM:
            inner = parse_cpim(event.body, max_size=self.ua.config.max_message_size)
            return Received(event, inner, _media(inner.content_type), inner.body)
        return Received(event, None, media, event.body)

    async def next_text(self, timeout: float = WAIT) -> Received:
        """The next message that is not an isComposing indication."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            received = await self.next_message(max(0.01, deadline - loop.time()))
            if received.media_type != ISCOMPOSING_MIME_TYPE:
                return received

    async def next_report(self, timeout: float = WAIT) -> ReportReceived:
        return await self.wait_event(ReportReceived, timeout=timeout)

    # ------------------------------------------------------------------ sending

    def _wrap_by_default(self) -> bool:
        """Wrap in message/cpim when the peer accepts it and not the type itself (§8.6)."""
        negotiated = self.negotiated
        if negotiated is None:
            return False
        theirs = [t.lower() for t in negotiated.remote.accept_types]
        return CPIM in theirs and "text/plain" not in theirs and "*" not in theirs

    def _payload(self, content_type: str, data: bytes, wrap: bool | None) -> tuple[str, bytes]:
        if wrap is None:
            wrap = self._wrap_by_default()
        if not wrap:
            return content_type, data
        envelope = CpimMessage(
            from_=CpimAddress(self.ua.config.aor),
            to=(CpimAddress(self.remote_uri),),
            date_time=_rfc3339_now(),
            content_type=content_type,
            body=data,
        )
        return CPIM, serialize_cpim(envelope)

    def send_text(
        self,
        text: str | bytes,
        *,
        success_report: bool = False,
        failure_report: FailureReport = FailureReport.YES,
        wrap_cpim: bool | None = None,
        content_type: str = TEXT_PLAIN,
    ) -> str:
        """Send a message; the MSRP core chunks it (2048-octet chunks, RFC 4975 §7.1).
        Returns its Message-ID."""
        data = text.encode("utf-8") if isinstance(text, str) else text
        ctype, payload = self._payload(content_type, data, wrap_cpim)
        return self.ua.msrp.send_message(
            self.session,
            ctype,
            payload,
            success_report=success_report,
            failure_report=failure_report,
        )

    def send_composing(self, state: ComposingState, *, wrap_cpim: bool | None = None) -> str:
        """An RFC 3994 isComposing indication (``active`` with a refresh, RFC 3994 §3.2)."""
        doc = IsComposing(
            state=state,
            content_type="text/plain",
            refresh=90 if state is ComposingState.ACTIVE else None,
        )
        ctype, payload = self._payload(ISCOMPOSING_MIME_TYPE, serialize_iscomposing(doc), wrap_cpim)
        return self.ua.msrp.send_message(
            self.session, ctype, payload, failure_report=FailureReport.NO
        )

    # ------------------------------------------------------------------ endings

    async def bye(self, timeout: float = WAIT) -> SessionEnded | SessionFailed:
        """End the call (BYE on a confirmed dialog, RFC 3261 §15) and close the session."""
        assert self.invite_id is not None
        self.ua.invites.bye(self.invite_id, self.ua.now())
        self.ua.flush_sip()
        return await asyncio.wait_for(asyncio.shield(self.ended), timeout)

    async def wait_ended(self, timeout: float = WAIT) -> SessionEnded | SessionFailed:
        """Until the dialog is over (a BYE from the gateway, for instance)."""
        return await asyncio.wait_for(asyncio.shield(self.ended), timeout)

    def drop_connection(self) -> bool:
        """Drop the MSRP connection under the call at once, without goodbye (§5.4)."""
        return self.ua.msrp.abort_connection(self.session)


@dataclass
class _Pager:
    """An out-of-dialog MESSAGE the UA received (and answered 200)."""

    request: Any
    body: bytes
    content_type: str | None


class ChatUA:
    """A SIP chat user agent from the gateway's cores; see the module docstring."""

    def __init__(self, config: UaConfig | None = None) -> None:
        self.config = config or UaConfig()
        self.ids = RandomIds()
        self.table = MsrpSessionTable(
            self.ids, MsrpSettings(max_message_size=self.config.max_message_size)
        )
        tls = self.config.tls
        self.msrp = MsrpTransport(
            self.table,
            MsrpTransportConfig(
                tcp=ListenAddress("127.0.0.1", 0),
                tls_listen=ListenAddress("127.0.0.1", 0) if tls is not None else None,
                tls=tls,
            ),
            on_event=self._on_msrp_event,
        )
        self._endpoint: SipEndpoint | None = None
        self._invites: InviteManager | None = None
        self.sip = SipTransportManager(
            TransportConfig(udp=ListenAddress("127.0.0.1", 0), tcp=None),
            self._make_endpoint,
            on_activity=self._on_sip_activity,
        )
        self._by_invite: dict[str, UaCall] = {}
        self._by_msrp: dict[str, UaCall] = {}
        self._incoming: asyncio.Queue[UaCall] = asyncio.Queue()
        #: Status of every incoming INVITE the UA refused (``reject_status``, or 488 when
        #: the offer had nothing it could use, RFC 3264 §6).
        self.rejected: list[int] = []
        self.pager: asyncio.Queue[_Pager] = asyncio.Queue()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._draining = False

    # ------------------------------------------------------------------ lifecycle

    def _make_endpoint(self, bound: Any) -> SipEndpoint:
        endpoint = SipEndpoint(
            EndpointConfig(local=dict(bound), timers=Timers(t1=UA_T1), user_agent="chat-ua"),
            self.ids,
        )
        host, port = bound["udp"]
        self._endpoint = endpoint
        self._invites = InviteManager(
            endpoint, InviteConfig(), self.ids, lambda _transport: f"sip:ua@{host}:{port}"
        )
        return endpoint

    async def start(self) -> None:
        await self.msrp.start()
        await self.sip.start()

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self.sip.stop()
        await self.msrp.stop()

    async def __aenter__(self) -> ChatUA:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def invites(self) -> InviteManager:
        assert self._invites is not None, "start() the UA first"
        return self._invites

    @property
    def sip_port(self) -> int:
        return self.sip.local_addresses["udp"][1]

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def flush_sip(self) -> None:
        """After driving the INVITE layer directly: drain its events, send, re-arm."""
        self._drain()
        self.sip.transmit()

    # ------------------------------------------------------------------ calls

    async def call(
        self,
        target: str = "sip:bob@example.test",
        *,
        gateway: tuple[str, int],
        secure: bool = False,
        accept_types: tuple[str, ...] | None = None,
        accept_wrapped_types: tuple[str, ...] | None = None,
        max_size: int | None = None,
        bind: bool = True,
        timeout: float = WAIT,
    ) -> UaCall:
        """INVITE ``target`` through the gateway with an ``m=message`` offer (``TCP/TLS/MSRP``
        and an ``msrps:`` path when ``secure``), connect per a=setup (RFC 6135) and wait
        until the MSRP session is bound. Raises :class:`CallFailed` on a failure."""
        cfg = self.config
        accept = accept_types if accept_types is not None else cfg.accept_types
        wrapped = (
            accept_wrapped_types if accept_wrapped_types is not None else cfg.accept_wrapped_types
        )
        size = max_size if max_size is not None else cfg.max_size
        local = self.msrp.new_local_uri(secure=secure)
        session = self.table.create_session(
            local, accept_types=accept, max_message_size=cfg.max_message_size
        )
        offer = make_offer(
            path=(str(local),),
            accept_types=accept,
            accept_wrapped_types=wrapped,
            max_size=size,
            secure=secure,
            setup=Setup.ACTPASS,
            session_id=next(_sdp_ids),
        )
        call = UaCall(self, session, "uac", offer=offer, remote_uri=target)
        self._by_msrp[session.session_id] = call
        invite_id = self.invites.invite(
            request_uri=target,
            from_uri=f"<{cfg.aor}>",
            to_uri=f"<{target}>",
            destination=TransportAddress("udp", gateway[0], gateway[1]),
            now=self.now(),
            body=serialize_sdp(offer),
        )
        call.invite_id = invite_id
        self._by_invite[invite_id] = call
        view = self.invites.get(invite_id)
        call.call_id = view.call_id if view is not None else None
        self.flush_sip()
        done, _ = await asyncio.wait(
            {call._answered, call.ended}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if call._answered not in done:
            session.close()
            if call.ended.done():
                failed = call.ended.result()
                status = failed.status if isinstance(failed, SessionFailed) else 487
                raise CallFailed(status, getattr(failed, "reason", "ended"))
            raise TimeoutError("no answer to the INVITE")
        answered = call._answered.result()
        try:
            call.remote_sdp = parse_sdp(answered.body)
            negotiated = parse_answer(offer, call.remote_sdp)
            session.set_remote_path(parse_path(" ".join(negotiated.remote.path)))
        except Exception as exc:  # an unusable answer: end the dialog, as RFC 3264 wants
            await call.bye()
            raise CallFailed(488, f"unusable SDP answer: {exc}") from exc
        call.negotiated = negotiated
        if negotiated.active:
            self.msrp.connect(session)
        if bind:
            await call.wait_bound(timeout)
        return call

    async def incoming(self, timeout: float = WAIT) -> UaCall:
        """The next call the gateway placed (already answered, maybe not bound yet)."""
        return await asyncio.wait_for(self._incoming.get(), timeout)

    def _on_invite(self, ev: InviteReceived) -> None:
        cfg = self.config
        now = self.now()
        if cfg.reject_status is not None:
            self.rejected.append(cfg.reject_status)
            self.invites.reject(ev.session_id, now, cfg.reject_status)
            return
        try:
            offer = parse_sdp(ev.body)
            secure = any(m.media == "message" and m.proto == "TCP/TLS/MSRP" for m in offer.media)
            local = self.msrp.new_local_uri(secure=secure)
            answer, negotiated = answer_offer(
                offer,
                path=(str(local),),
                accept_types=cfg.accept_types,
                accept_wrapped_types=cfg.accept_wrapped_types,
                max_size=cfg.max_size,
                allow_tls=cfg.tls is not None,
                session_id=next(_sdp_ids),
            )
            session = self.table.create_session(
                local,
                remote_path=parse_path(" ".join(negotiated.remote.path)),
                accept_types=negotiated.local.accept_types,
                max_message_size=cfg.max_message_size,
            )
        except SdpNegotiationError:
            self.rejected.append(488)
            self.invites.reject(ev.session_id, now, 488)
            return
        remote = str(parse_name_addr(ev.request.headers.get("From") or "").uri)
        call = UaCall(self, session, "uas", remote_uri=remote)
        call.invite_id = ev.session_id
        call.call_id = ev.request.headers.get("Call-ID")
        call.negotiated = negotiated
        call.remote_sdp = offer
        self._by_invite[ev.session_id] = call
        self._by_msrp[session.session_id] = call
        self.invites.answer(ev.session_id, now, serialize_sdp(answer))
        self._incoming.put_nowait(call)

    # ------------------------------------------------------------------ SIP plumbing

    def _on_sip_activity(self) -> None:
        endpoint = self._endpoint
        if endpoint is None:
            return
        now = self.now()
        while (event := endpoint.next_event()) is not None:
            if not self.invites.handle_sip_event(event, now):
                self._other(event, now)
        self._drain()

    def _other(self, event: object, now: float) -> None:
        """Requests outside the INVITE layer: pager MESSAGEs (kept), OPTIONS, the rest."""
        if not isinstance(event, RequestReceived):
            return
        request = event.request
        assert self._endpoint is not None
        if request.method == "MESSAGE":
            self.pager.put_nowait(
                _Pager(request, request.body, request.headers.get("Content-Type"))
            )
            status = 200
        elif request.method == "OPTIONS":
            status = 200
        else:
            status = 405
        headers = (
            (("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE"),) if status == 405 else ()
        )
        self._endpoint.send_response(
            make_response(request, status, to_tag=self.ids.tag(), headers=headers), now
        )

    def _drain(self) -> None:
        """Hand the INVITE layer's events to the calls; keep its timer armed."""
        if self._draining:
            return
        self._draining = True
        try:
            invites = self.invites
            while (event := invites.next_event()) is not None:
                if isinstance(event, InviteReceived):
                    self._on_invite(event)
                    continue
                call = self._by_invite.get(event.session_id)
                if call is None:
                    continue
                if isinstance(event, SessionAnswered):
                    if not call._answered.done():
                        call._answered.set_result(event)
                elif isinstance(event, SessionConfirmed):
                    call._confirmed.set()
                    negotiated = call.negotiated
                    if call.role == "uas" and negotiated is not None and negotiated.active:
                        self.msrp.connect(call.session)
                elif isinstance(event, SessionFailed | SessionEnded):
                    self._by_invite.pop(event.session_id, None)
                    if not call.ended.done():
                        call.ended.set_result(event)
                    # The dialog is over: so is the MSRP session (a UA closes it, §5.4).
                    self.msrp.close_session(call.session)
        finally:
            self._draining = False
        self._rearm()

    def _rearm(self) -> None:
        deadline = self.invites.next_deadline()
        if deadline == self._timer_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            self._timer = asyncio.get_running_loop().call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        at = self._timer_at or 0.0
        self._timer_at = None
        self.invites.handle_timer(max(at, self.now()))
        self.flush_sip()

    # ------------------------------------------------------------------ MSRP plumbing

    def _on_msrp_event(self, event: MsrpEvent) -> None:
        session_id = getattr(event, "session_id", None)
        call = self._by_msrp.get(session_id) if session_id is not None else None
        if call is not None:
            call._event(event)
