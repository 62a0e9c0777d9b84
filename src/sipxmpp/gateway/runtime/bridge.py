"""Pager-mode IM bridge (RFC 7572): routes SIP MESSAGE <-> XMPP ``<message/>``.

The bridge only routes. What a header means on the other side is decided in
``sipxmpp.mapping`` (addresses, errors, messages); how bytes are framed and retransmitted is
the SIP core's job; sockets and streams belong to the edges.

No silent loss, in both directions:

* SIP -> XMPP: the SIP sender gets a 2xx only once the stanza is handed to the XMPP server.
  While the component link is down it gets 503 with Retry-After. If the XMPP server later
  bounces the stanza (``type='error'``), the error is reported to the SIP sender as a SIP
  MESSAGE *delivery notice* from the addressee, carrying ``In-Reply-To: <Call-ID>`` of the
  original request (RFC 3261 §20.21) and a text/plain explanation.
* XMPP -> SIP: every relayed stanza is tied to its SIP client transaction until a final
  outcome: a 2xx ends it quietly, a failure response comes back as the stanza error of RFC
  7247 §7.2 (Table 3), a Timer F expiry as ``<remote-server-timeout/>`` and a transport
  failure as ``<remote-server-not-found/>``.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Protocol

from sipxmpp.gateway.runtime.logs import kv
from sipxmpp.gateway.settings import Settings
from sipxmpp.gateway.sip import build, grammar
from sipxmpp.gateway.sip.address import TransportAddress
from sipxmpp.gateway.sip.events import (
    RequestReceived,
    ResponseReceived,
    TransactionTimedOut,
    TransportFailed,
)
from sipxmpp.gateway.sip.ids import IdGenerator
from sipxmpp.gateway.sip.message import Request, wire_size
from sipxmpp.gateway.sip.options import Capabilities
from sipxmpp.gateway.xmpp.errors import LinkDown, LocalXmppError, StanzaErrorException
from sipxmpp.mapping import errors as error_map
from sipxmpp.mapping import messages as pager
from sipxmpp.mapping.addresses import DomainMap
from sipxmpp.mapping.model import (
    MappingRefused,
    SipPagerMessage,
    StanzaError,
    StanzaRefused,
    XmppMessage,
)

__all__ = ["PagerBridge", "NextHopError", "SUPPORTED_METHODS"]

log = logging.getLogger("sipxmpp.bridge")

#: Methods the gateway serves today (RFC 3261 §11.2 Allow; 405 lists them too).
SUPPORTED_METHODS: tuple[str, ...] = ("MESSAGE", "OPTIONS")

#: Body types accepted in a MESSAGE (RFC 7572 §7: text/plain MUST, text/html SHOULD).
ACCEPTED_TYPES: tuple[str, ...] = ("text/plain", "text/html")

#: Upper bound on XMPP messages waiting for their SIP transaction's outcome. A transaction
#: ends within 64*T1 (Timer F, 32 s by default), so this caps memory under a flood while
#: leaving room for 10,000 msg/s over the whole Timer F window... at most this many are kept;
#: beyond it, new XMPP messages are refused with <resource-constraint/>.
MAX_PENDING_TO_SIP = 200_000

#: Upper bound on SIP MESSAGEs remembered for late XMPP error reports. Oldest are forgotten
#: first; ``im.error_report_window`` bounds the age as well.
MAX_PENDING_REPORTS = 200_000

#: Room left for the Via header the transaction layer adds, when checking the 1300-byte
#: pager limit before sending (RFC 3428 §8): "Via: SIP/2.0/TLS <host>:<port>;branch=z9hG4bK
#: <32 chars>;rport" plus CRLF stays well under this.
VIA_ALLOWANCE = 120


#: Seconds during which a resolved next hop is used again for the same Request-URI. The
#: messages of one read from the XMPP server (dozens under load, ~100 µs of work each) mostly
#: go to the same few SIP users, or all to the outbound proxy, and resolving each (URI
#: parse, RFC 3263 resolution, the peer's TLS-only parameter 3) cost ~10 µs of the ~170 µs
#: per XMPP -> SIP message (issue 2). What a resolution depends on changes on a scale of
#: seconds (DNS TTLs, a provisioning reload, a peer's fetched parameters), so a hop at most
#: 5 ms old routes as a fresh one would. At most the messages of 5 ms are remembered.
NEXT_HOP_REUSE_S = 0.005


class NextHopError(Exception):
    """No next hop could be found for a SIP target."""


class SipSender(Protocol):
    """What the bridge needs from the SIP side (the SIP core plus its transport edge)."""

    def send_request(self, request: Request, destination: TransportAddress) -> str: ...

    def send_response(self, response: object) -> None: ...


class XmppSender(Protocol):
    @property
    def up(self) -> bool: ...

    def send_message(self, msg: XmppMessage) -> None: ...


#: What is needed to tell a SIP sender that XMPP bounced its message:
#: (sender URI, addressee URI, Call-ID, monotonic time relayed). A plain tuple of strings and a
#: float: CPython stops tracking such tuples in the garbage collector, which matters with
#: 100,000+ of them alive at high message rates.
_Report = tuple[str, str, str, float]


class PagerBridge:
    """Routes pager-mode IM between the SIP core and the XMPP component."""

    def __init__(
        self,
        *,
        settings: Settings,
        sip: SipSender,
        xmpp: XmppSender,
        resolve: Callable[[str], Awaitable[TransportAddress]],
        domains: DomainMap,
        ids: IdGenerator,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._sip = sip
        self._xmpp = xmpp
        self._resolve = resolve
        self._domains = domains
        self._ids = ids
        self._clock = clock
        self._pending: dict[str, XmppMessage] = {}
        #: The header every relayed MESSAGE carries (RFC 3261 §20.41), built once.
        self._user_agent: tuple[tuple[str, str], ...] = (("User-Agent", settings.sip.user_agent),)
        #: Next hops resolved since ``_hops_since`` (see :meth:`_next_hop`), by Request-URI.
        self._hops: dict[str, TransportAddress] = {}
        self._hops_since = float("-inf")
        self._reports: OrderedDict[str, _Report] = OrderedDict()
        presence = settings.presence.enabled  # RFC 6665 §4.4.4: Allow-Events lists packages
        chat = settings.chat.enabled  # RFC 7573 sessions: INVITE dialogs (RFC 3261 §13-15)
        self._caps = Capabilities(
            allow=SUPPORTED_METHODS
            + (("SUBSCRIBE", "NOTIFY") if presence else ())
            + (("INVITE", "ACK", "CANCEL", "BYE") if chat else ()),
            accept=ACCEPTED_TYPES + (("application/pidf+xml",) if presence else ()),
            accept_language=("en",),
            supported=(),
            allow_events=("presence",) if presence else (),
        )
        self.counters: dict[str, int] = {
            "sip_to_xmpp": 0,
            "xmpp_to_sip": 0,
            "sip_refused": 0,
            "xmpp_refused": 0,
            "reports_sent": 0,
        }

    @property
    def capabilities(self) -> Capabilities:
        """What the gateway's OPTIONS answer advertises (RFC 3261 §11.2); OPTIONS itself
        is answered by ``runtime/provisioning.py``."""
        return self._caps

    # ------------------------------------------------------------------ SIP side

    def handle_sip_event(self, event: object) -> None:
        """Route one event from the SIP core."""
        if isinstance(event, RequestReceived):
            self._on_request(event)
        elif isinstance(event, ResponseReceived):
            self._on_response(event)
        elif isinstance(event, TransactionTimedOut):
            self._fail_pending(event.transaction, error_map.sip_status_to_stanza_error(408))
        elif isinstance(event, TransportFailed):
            self._fail_pending(
                event.transaction,
                StanzaError(
                    "remote-server-not-found", "cancel", "the SIP next hop cannot be reached"
                ),
            )

    def _respond(
        self, request: Request, status: int, reason: str | None = None, **kw: object
    ) -> None:
        resp = build.make_response(request, status, reason, to_tag=self._ids.tag(), **kw)  # type: ignore[arg-type]
        self._sip.send_response(resp)

    def _on_request(self, ev: RequestReceived) -> None:
        req = ev.request
        method = req.method
        if method == "MESSAGE":
            self._on_sip_message(req)
        elif method == "ACK":
            return  # an ACK to a non-2xx is absorbed by the core; nothing else reaches us
        else:
            # RFC 3261 §8.2.1: 405 with an Allow header listing what we do support.
            self._respond(req, 405, headers=(("Allow", ", ".join(self._caps.allow)),))

    def _on_sip_message(self, req: Request) -> None:
        if not self._xmpp.up:
            # The XMPP partition is unreachable: a temporary, retryable refusal (RFC 3261 §21.5.4).
            self._respond(req, 503, headers=(("Retry-After", str(self._settings.sip.retry_after)),))
            self.counters["sip_refused"] += 1
            return
        try:
            from_na = grammar.parse_name_addr(req.headers.get("From") or "")
            to_na = grammar.parse_name_addr(req.headers.get("To") or "")
        except Exception:  # the core validated From/To already; be safe all the same
            self._respond(req, 400, "Malformed From or To")
            return
        msg = SipPagerMessage(
            request_uri=req.uri,
            from_uri=str(from_na.uri),
            to_uri=str(to_na.uri),
            call_id=req.headers.get("Call-ID"),
            subject=req.headers.get("Subject"),
            content_type=req.headers.get("Content-Type") or "text/plain",
            content_language=req.headers.get("Content-Language"),
            body=req.body,
            from_display=from_na.display_name,
            contact_uri=req.headers.get("Contact"),
        )
        stanza_id = self._ids.token(64)
        try:
            stanza = pager.sip_message_to_xmpp(msg, self._domains, stanza_id=stanza_id)
        except MappingRefused as e:
            self.counters["sip_refused"] += 1
            log.info("sip.message.refused", extra=kv(status=e.status, reason=e.reason, uri=req.uri))
            self._respond(req, e.status, e.reason, headers=tuple(e.headers))
            return
        try:
            self._xmpp.send_message(stanza)
        except LinkDown:
            # Down or congested: temporary, so 503 with Retry-After (RFC 3261 §21.5.4).
            self._respond(req, 503, headers=(("Retry-After", str(self._settings.sip.retry_after)),))
            self.counters["sip_refused"] += 1
            return
        except LocalXmppError as e:
            # The stanza cannot be built (e.g. too large for the XMPP side): answer with the
            # SIP status RFC 7247 §7.1 gives the condition.
            code = error_map.stanza_error_to_sip_status(
                StanzaError(e.condition or "bad-request", "modify", e.msg),
                addressed_to=stanza.to_jid,
                domains=self._domains,
            )
            self._respond(req, code.code, code.reason)
            self.counters["sip_refused"] += 1
            return
        self.counters["sip_to_xmpp"] += 1
        self._remember_report(
            stanza_id, (msg.from_uri, msg.to_uri, msg.call_id or "", self._clock())
        )
        self._respond(req, self._settings.im.sip_success_status)

    def _remember_report(self, stanza_id: str, report: _Report) -> None:
        reports = self._reports
        reports[stanza_id] = report
        window = self._settings.im.error_report_window
        now = report[3]
        while reports:
            oldest_key, oldest = next(iter(reports.items()))
            if len(reports) > MAX_PENDING_REPORTS or now - oldest[3] > window:
                del reports[oldest_key]
            else:
                break

    def _on_response(self, ev: ResponseReceived) -> None:
        status = ev.response.status
        if status < 200:
            return
        msg = self._pending.pop(ev.transaction, None)
        if msg is None or status < 300:
            return
        error = error_map.sip_status_to_stanza_error(
            status,
            ev.response.reason,
            contact=ev.response.headers.get("Contact"),
            domains=self._domains,
        )
        self._bounce(msg, error)

    def _fail_pending(self, transaction: str, error: StanzaError) -> None:
        msg = self._pending.pop(transaction, None)
        if msg is not None:
            self._bounce(msg, error)

    def _bounce(self, msg: XmppMessage, error: StanzaError) -> None:
        """Return an XMPP message to its sender as a stanza error (RFC 6120 §8.3)."""
        log.info(
            "xmpp.message.bounced",
            extra=kv(to=msg.to_jid, sender=msg.from_jid, condition=error.condition),
        )
        reply = XmppMessage(
            from_jid=msg.to_jid,
            to_jid=msg.from_jid,
            id=msg.id,
            type="error",
            thread=msg.thread,
            error=error,
        )
        try:
            self._xmpp.send_message(reply)
        except Exception:
            log.warning("xmpp.bounce.lost_link", extra=kv(to=msg.from_jid))

    # ------------------------------------------------------------------ XMPP side

    async def on_message(self, msg: XmppMessage) -> None:
        if msg.type == "groupchat":
            raise StanzaErrorException(
                StanzaError("feature-not-implemented", "cancel", "groupchat is not bridged yet")
            )
        try:
            sip_msg = pager.xmpp_message_to_sip(msg, self._domains)
        except StanzaRefused as e:
            self.counters["xmpp_refused"] += 1
            raise StanzaErrorException(e.error) from None
        if sip_msg is None:
            return  # nothing a pager-mode MESSAGE can carry (e.g. a bare chat state)
        if len(self._pending) >= MAX_PENDING_TO_SIP:
            raise StanzaErrorException(
                StanzaError("resource-constraint", "wait", "too many messages in flight")
            )
        request = self._build_message(sip_msg)
        size = wire_size(request) + VIA_ALLOWANCE
        size_error = pager.pager_size_error(size, limit=self._settings.im.pager_max_bytes)
        if size_error is not None:
            self.counters["xmpp_refused"] += 1
            raise StanzaErrorException(size_error)
        try:
            dest = await self._next_hop(sip_msg.request_uri)
        except NextHopError as e:
            raise StanzaErrorException(
                StanzaError("remote-server-not-found", "cancel", str(e))
            ) from None
        key = self._sip.send_request(request, dest)
        self._pending[key] = msg
        self.counters["xmpp_to_sip"] += 1

    async def _next_hop(self, uri: str) -> TransportAddress:
        """The next hop of ``uri``: resolved, or as resolved less than :data:`NEXT_HOP_REUSE_S`
        ago (then without a suspension point). Failures are not remembered."""
        now = self._clock()
        hops = self._hops
        if now - self._hops_since >= NEXT_HOP_REUSE_S:
            hops.clear()
            self._hops_since = now
        hop = hops.get(uri)
        if hop is None:
            hop = hops[uri] = await self._resolve(uri)
        return hop

    def _build_message(self, m: SipPagerMessage) -> Request:
        headers = self._user_agent
        if m.subject or m.content_language:
            extra: list[tuple[str, str]] = []
            if m.subject:
                extra.append(("Subject", m.subject))
            if m.content_language:
                extra.append(("Content-Language", m.content_language))
            headers = (*extra, *headers)
        from_addr = f"<{m.from_uri}>"
        if m.from_display:
            from_addr = f"{grammar.quote_string(m.from_display)} {from_addr}"
        return build.make_request(
            "MESSAGE",
            m.request_uri,
            from_addr=from_addr,
            from_tag=self._ids.tag(),
            to_addr=f"<{m.to_uri}>",
            call_id=m.call_id or self._ids.call_id(),
            cseq=1,
            headers=headers,
            body=m.body,
            content_type=m.content_type,
        )

    async def on_message_error(self, msg: XmppMessage) -> None:
        """An XMPP error came back for a stanza we relayed from SIP: tell the SIP sender."""
        found = self._reports.pop(msg.id or "", None)
        if found is None:
            log.info("xmpp.error.unmatched", extra=kv(id=msg.id, sender=msg.from_jid))
            return
        err = msg.error
        cond = err.condition if err else "undefined-condition"
        text = f"Your message could not be delivered ({cond}"
        if err and err.text:
            text += f": {err.text}"
        text += ")."
        sender_uri, addressee_uri, call_id, _ = found
        request = build.make_request(
            "MESSAGE",
            sender_uri,
            from_addr=f"<{addressee_uri}>",
            from_tag=self._ids.tag(),
            to_addr=f"<{sender_uri}>",
            call_id=self._ids.call_id(),
            cseq=1,
            headers=(
                ("In-Reply-To", call_id),
                ("User-Agent", self._settings.sip.user_agent),
            ),
            body=text.encode("utf-8"),
            content_type="text/plain;charset=UTF-8",
        )
        try:
            dest = await self._resolve(sender_uri)
        except NextHopError:
            log.warning("sip.report.unroutable", extra=kv(to=sender_uri))
            return
        self._sip.send_request(request, dest)
        self.counters["reports_sent"] += 1
        log.info("sip.report.sent", extra=kv(to=sender_uri, condition=cond))

    def on_link_state(self, up: bool) -> None:
        log.info("xmpp.link", extra=kv(up=up))
