"""Fetching a peer network's provisioning document over SIP OPTIONS, HTTP and XMPP.

Theory of operation
-------------------
The provisioning draft (§5) names three ways to learn a peer network's parameters; each is
a *channel* here, and each turns into one :class:`ChannelResult`: a validated
:class:`~sipxmpp.provisioning.model.ProvisioningDocument`, or a precise refusal
(:class:`~sipxmpp.provisioning.errors.Reason` plus text). Nothing a peer sends escapes as
another exception: oversize, DTD-bearing, wrongly namespaced or invalid documents are
refused by the provisioning codecs, and every network failure is ``unreachable``.

* **SIP** (:class:`SipOptionsClient`): ``OPTIONS sip:provisioning@<domain>`` with
  ``Accept: application/pres-im-provisioning+xml`` through our own SIP core (RFC 3261
  §11), to the targets RFC 3263 gives for the domain (NAPTR/SRV/A, TLS first) or to the
  configured static targets. Over TLS our certificate identifies us (mutual TLS), and the
  server's must prove the peer's domain (RFC 5922 §7.3). A transport failure moves on to
  the next target (RFC 3263 §4.3).
* **HTTP** (:func:`query_http`): ``GET https://<domain>/.well-known/pres-im-provisioning``
  (then the draft's ``/pres-im-provisioning``), with our client certificate, ``If-None-Match``
  and no redirects (:func:`sipxmpp.provisioning.http.fetch_peer_document`). A static base
  URL replaces the host and port, not the certificate check.
* **XMPP** (:func:`query_xmpp`): a disco#info query (XEP-0030) to the peer's provisioning
  JID, whose result carries the parameters as an XEP-0128 form. The JID is configured, or
  found: the domain itself, then each item of its disco#items (XEP-0030 §4; servers list
  their components there) until one answers with our ``FORM_TYPE``. When the peer's
  XEP-0115 caps are known (``node``, ``ver``, ``hash``), the query names ``node#ver`` and
  the answer is verified (XEP-0115 §5.4); a mismatch is reported and must not be cached
  under that ``ver``.

Who asks over XMPP: the running gateway uses its component link (:class:`EdgeDiscoChannel`);
``sipxmpp query-peer`` logs in with a client account (:class:`XmppProbeClient`,
``[provisioning.query]``), because the gateway's component name is in use by the running
gateway and an XMPP server accepts one connection per component. The client first sends
directed presence to the provisioning JID, so that a sipxmpp peer answers with its caps
presence (see ``gateway/xmpp/caps.py``), and sends ``unavailable`` when done.

:class:`PeerQueryTool` is what the command line runs: its own SIP transport on port 0,
an HTTP session and the XMPP client, one query per channel, and a :class:`PeerReport` that
says where the channels disagree (:func:`render_table`, :func:`report_to_json`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import ssl
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
from lxml import etree

from sipxmpp.gateway.runtime.dispatch import SipDispatcher, SipSender
from sipxmpp.gateway.settings import ProvisioningPeer, ProvisioningQuerySettings, Settings
from sipxmpp.gateway.sip import build
from sipxmpp.gateway.sip.address import Transport, TransportAddress
from sipxmpp.gateway.sip.core import EndpointConfig, SipEndpoint
from sipxmpp.gateway.sip.events import (
    RequestReceived,
    ResponseReceived,
    TransactionTimedOut,
    TransportFailed,
)
from sipxmpp.gateway.sip.ids import IdGenerator, RandomIds
from sipxmpp.gateway.sip.message import Request, Response
from sipxmpp.gateway.sip.timers import Timers
from sipxmpp.gateway.transport.config import ListenAddress, TlsSettings, TransportConfig
from sipxmpp.gateway.transport.manager import SipTransportManager
from sipxmpp.gateway.transport.resolver import (
    AiodnsClient,
    ResolutionError,
    SipResolver,
)
from sipxmpp.provisioning import (
    FORM_TYPE,
    MEDIA_TYPE_XML,
    PARAMETERS,
    SIP_PROVISIONING_USER,
    CapsVerdict,
    Channel,
    ProvisioningDocument,
    ProvisioningError,
    Reason,
    RemoteProvisioningError,
    differences,
    form_to_document,
    parameter_values,
    parse_xml,
    to_json,
)
from sipxmpp.provisioning.caps import (
    DiscoInfo,
    caps_node,
    compute_ver,
    disco_info_from_element,
    validate_disco_info,
    verify_ver,
)
from sipxmpp.provisioning.http import client_ssl_context, fetch_peer_document
from sipxmpp.provisioning.model import normalize_domain
from sipxmpp.provisioning.xmlcodec import safe_xml_parser

__all__ = [
    "ChannelResult",
    "CapsHint",
    "SipOptionsClient",
    "sip_targets",
    "query_http",
    "http_ssl_context",
    "DiscoChannel",
    "EdgeDiscoChannel",
    "XmppProbeClient",
    "find_provisioning_jid",
    "query_xmpp",
    "QueryConfig",
    "PeerQueryTool",
    "PeerReport",
    "render_table",
    "report_to_json",
    "EXIT_OK",
    "EXIT_DISAGREE",
    "EXIT_CHANNEL_FAILED",
    "MAX_DISCO_ITEMS",
    "MAX_DISCO_RESULT_BYTES",
    "CAPS_PRESENCE_WAIT",
]

log = logging.getLogger("sipxmpp.provisioning")

#: query-peer exit status: every requested channel answered, with identical documents.
EXIT_OK = 0
#: query-peer exit status: the channels returned documents that differ.
EXIT_DISAGREE = 3
#: query-peer exit status: at least one channel gave no valid document (and none disagree).
EXIT_CHANNEL_FAILED = 4

#: Items of a domain's disco#items examined when looking for its provisioning JID. A server
#: lists its components there (a handful: MUC, upload, proxy, gateways); the bound keeps a
#: peer listing thousands of items from turning one query into thousands.
MAX_DISCO_ITEMS = 32
#: Largest disco#info result read from a peer: the provisioning form is at most one
#: document (64 KiB) plus identities and features; 1 MiB is the component stream's own
#: stanza limit (``gateway/xmpp/stream.py``).
MAX_DISCO_RESULT_BYTES = 1024 * 1024
#: How long the XMPP client waits for the peer's caps presence after announcing itself
#: before querying without ``node#ver``: a sipxmpp peer answers in one round trip.
CAPS_PRESENCE_WAIT = 2.0
#: Longest value shown in one table cell (longer ones are cut with an ellipsis).
_CELL_WIDTH = 40


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChannelResult:
    """The outcome of one query over one channel."""

    channel: Channel
    #: What was asked: a URL, a SIP target, or a JID.
    source: str
    #: The validated document (None when refused, failed, or 304 Not Modified).
    document: ProvisioningDocument | None = None
    #: Why there is no document.
    reason: Reason | None = None
    error: str | None = None
    #: HTTP entity tag and max-age of the answer.
    etag: str | None = None
    max_age: float | None = None
    #: HTTP 304: the document held by the caller is current.
    not_modified: bool = False
    #: XEP-0115 ``ver`` the disco#info answer hashes to (XMPP only).
    caps_ver: str | None = None
    #: ``verified`` (matches the peer's announced ``ver``), ``mismatch``, ``unknown-hash``,
    #: or ``computed`` (no caps announced; ``caps_ver`` computed here).
    caps_status: str | None = None
    #: Seconds the query took.
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return self.document is not None or self.not_modified

    @classmethod
    def failed(
        cls, channel: Channel, source: str, exc: ProvisioningError, elapsed: float = 0.0
    ) -> ChannelResult:
        return cls(channel, source, reason=exc.reason, error=exc.message, elapsed=elapsed)


@dataclass(frozen=True, slots=True)
class CapsHint:
    """A peer's announced XEP-0115 caps (from its presence)."""

    node: str
    ver: str
    hash: str


def _check_domain(doc: ProvisioningDocument, domain: str, source: str) -> None:
    if doc.domain != domain:
        raise RemoteProvisioningError(
            Reason.INVALID_VALUE, f"{source} describes {doc.domain}, not {domain}"
        )


# --------------------------------------------------------------------------------------
# SIP OPTIONS
# --------------------------------------------------------------------------------------


class SipOptionsClient:
    """Sends provisioning OPTIONS queries and pairs them with their outcomes.

    It is a runtime SIP service: the dispatcher hands it the outcome events of the
    transactions it started (through the :class:`SipSender` given as ``send_request``).
    """

    def __init__(
        self,
        send_request: Callable[[Request, TransportAddress], str],
        ids: IdGenerator,
        *,
        user_agent: str,
    ) -> None:
        self._send = send_request
        self._ids = ids
        self._user_agent = user_agent
        self._waiting: dict[str, asyncio.Future[object]] = {}

    def handle_sip_event(self, event: object) -> None:
        """Outcome of one of our transactions (requests are not ours to answer)."""
        if isinstance(event, ResponseReceived):
            if event.response.status < 200:
                return
            key = event.transaction
        elif isinstance(event, TransactionTimedOut | TransportFailed):
            key = event.transaction
        else:
            return
        fut = self._waiting.pop(key, None)
        if fut is not None and not fut.done():
            fut.set_result(event)

    def build_request(self, domain: str, from_domain: str) -> Request:
        """``OPTIONS sip:provisioning@<domain>`` asking for our document type (draft §5)."""
        uri = f"sip:{SIP_PROVISIONING_USER}@{domain}"
        return build.make_request(
            "OPTIONS",
            uri,
            from_addr=f"<sip:{SIP_PROVISIONING_USER}@{from_domain}>",
            from_tag=self._ids.tag(),
            to_addr=f"<{uri}>",
            call_id=self._ids.call_id(),
            cseq=1,
            headers=(("Accept", MEDIA_TYPE_XML), ("User-Agent", self._user_agent)),
        )

    async def query(
        self,
        domain: str,
        targets: Sequence[TransportAddress],
        *,
        from_domain: str,
        timeout: float,
    ) -> ChannelResult:
        """Ask each target in turn until one answers (RFC 3263 §4.3 failover)."""
        started = time.monotonic()
        last: ProvisioningError = RemoteProvisioningError(
            Reason.UNREACHABLE, f"no SIP target for {domain}"
        )
        source = f"sip:{SIP_PROVISIONING_USER}@{domain}"
        for target in targets:
            source = f"{target.transport}:{target.host}:{target.port}"
            remaining = timeout - (time.monotonic() - started)
            if remaining <= 0:
                break
            try:
                doc = await self._ask(domain, target, from_domain, remaining)
            except RemoteProvisioningError as exc:
                last = exc
                if exc.reason is Reason.UNREACHABLE:
                    continue  # next target (RFC 3263 §4.3)
                return ChannelResult.failed(Channel.SIP, source, exc, time.monotonic() - started)
            return ChannelResult(
                Channel.SIP, source, document=doc, elapsed=time.monotonic() - started
            )
        return ChannelResult.failed(Channel.SIP, source, last, time.monotonic() - started)

    async def _ask(
        self, domain: str, target: TransportAddress, from_domain: str, timeout: float
    ) -> ProvisioningDocument:
        request = self.build_request(domain, from_domain)
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        try:
            key = self._send(request, target)
        except Exception as exc:  # the core refused to send (e.g. no such transport)
            raise RemoteProvisioningError(
                Reason.UNREACHABLE, f"cannot send to {target.host}:{target.port}: {exc}"
            ) from None
        self._waiting[key] = fut
        try:
            outcome = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise RemoteProvisioningError(
                Reason.UNREACHABLE, f"no answer from {target.host}:{target.port} in {timeout:.1f} s"
            ) from None
        finally:
            self._waiting.pop(key, None)
        if isinstance(outcome, TransactionTimedOut):
            raise RemoteProvisioningError(
                Reason.UNREACHABLE, f"no answer from {target.host}:{target.port} (Timer F)"
            )
        if isinstance(outcome, TransportFailed):
            raise RemoteProvisioningError(
                Reason.UNREACHABLE,
                f"{target.transport} to {target.host}:{target.port} failed (connection or TLS)",
            )
        assert isinstance(outcome, ResponseReceived)
        return self._document(domain, outcome.response)

    @staticmethod
    def _document(domain: str, response: Response) -> ProvisioningDocument:
        status = response.status
        if status == 403:
            raise RemoteProvisioningError(
                Reason.FORBIDDEN, f"403 {response.reason}: the peer hides its document from us"
            )
        if status == 404:
            raise RemoteProvisioningError(Reason.NOT_FOUND, f"404 {response.reason}")
        if not 200 <= status < 300:
            raise RemoteProvisioningError(
                Reason.HTTP_ERROR, f"SIP {status} {response.reason}", status_hint=502
            )
        ctype = (response.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if ctype != MEDIA_TYPE_XML or not response.body:
            raise RemoteProvisioningError(
                Reason.NOT_FOUND,
                f"{status} without a provisioning document (Content-Type {ctype or 'none'}): "
                "the peer does not publish one over SIP",
            )
        doc = parse_xml(response.body)
        _check_domain(doc, domain, "the OPTIONS answer")
        return doc


async def sip_targets(
    resolver: SipResolver, domain: str, peer: ProvisioningPeer | None
) -> list[TransportAddress]:
    """Where to send the provisioning OPTIONS for ``domain``, TLS targets first.

    Static targets of ``peer`` win; otherwise RFC 3263 resolution of the domain. A TLS
    target's server must prove ``domain`` (RFC 5922 §7.3), whatever host it runs on.
    """
    out: list[TransportAddress] = []
    if peer is not None and peer.sip:
        for target in peer.sip:
            transport, host, port = target.rsplit(":", 2)
            try:
                hops = await resolver.resolve(host, port=int(port), transport=transport)
            except ResolutionError as exc:
                log.info("provisioning.sip.target_unresolved", extra=_kv(target=target, error=exc))
                continue
            out.extend(
                dataclasses.replace(h, peer_identity=domain if h.transport == "tls" else None)
                for h in hops
            )
    else:
        try:
            out = await resolver.resolve(domain)
        except ResolutionError as exc:
            log.info("provisioning.sip.unresolved", extra=_kv(domain=domain, error=exc))
            return []
    # Mutual TLS is how a peer tells us apart (draft §5): prefer it, keep RFC 3263 order.
    return sorted(out, key=lambda h: h.transport != "tls")


def _kv(**fields: Any) -> dict[str, Any]:
    return {"fields": {k: str(v) if isinstance(v, Exception) else v for k, v in fields.items()}}


# --------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------


def http_ssl_context(tls: TlsSettings | None) -> ssl.SSLContext:
    """Client context for HTTPS fetches: our certificate (mutual TLS) and the peer CAs."""
    if tls is None:
        return client_ssl_context()
    return client_ssl_context(tls.cafile, tls.certfile, tls.keyfile)


async def query_http(
    session: aiohttp.ClientSession,
    domain: str,
    *,
    base_url: str | None,
    ssl_context: ssl.SSLContext,
    etag: str | None = None,
    timeout: float,
) -> ChannelResult:
    """GET the peer's document (see :func:`~sipxmpp.provisioning.http.fetch_peer_document`)."""
    started = time.monotonic()
    address: tuple[str, int] | None = None
    tls: ssl.SSLContext | bool = ssl_context
    source = f"https://{domain}"
    if base_url is not None:
        parts = urlsplit(base_url)
        secure = parts.scheme == "https"
        try:
            port = parts.port or (443 if secure else 80)
        except ValueError:
            port = -1
        if not parts.hostname or port <= 0:
            exc = RemoteProvisioningError(Reason.UNREACHABLE, f"bad base URL {base_url!r}")
            return ChannelResult.failed(Channel.HTTP, base_url, exc)
        address = (parts.hostname, port)
        tls = ssl_context if secure else False
        source = base_url
    try:
        result = await fetch_peer_document(
            session, domain, address=address, etag=etag, ssl_context=tls, timeout=timeout
        )
    except RemoteProvisioningError as exc:
        return ChannelResult.failed(Channel.HTTP, source, exc, time.monotonic() - started)
    return ChannelResult(
        Channel.HTTP,
        result.url,
        document=result.document,
        etag=result.etag,
        max_age=float(result.max_age) if result.max_age is not None else None,
        not_modified=result.status == 304,
        elapsed=time.monotonic() - started,
    )


# --------------------------------------------------------------------------------------
# XMPP
# --------------------------------------------------------------------------------------


class DiscoChannel(Protocol):
    """Service discovery as the XMPP channel needs it (component link or client)."""

    async def disco_info(self, jid: str, node: str | None, timeout: float) -> etree._Element:
        """The ``<query xmlns='…disco#info'/>`` of the result; raises :class:`RemoteProvisioningError`."""
        ...

    async def disco_items(self, jid: str, timeout: float) -> list[str]:
        """Item JIDs of ``jid``; raises :class:`RemoteProvisioningError`."""
        ...


def _to_lxml(element: ET.Element) -> etree._Element:
    """A slixmpp (ElementTree) payload as an lxml element, re-parsed with the safe parser."""
    data = ET.tostring(element, encoding="utf-8")
    if len(data) > MAX_DISCO_RESULT_BYTES:
        raise RemoteProvisioningError(Reason.TOO_LARGE, "disco#info result too large")
    try:
        return etree.fromstring(data, safe_xml_parser())
    except etree.XMLSyntaxError as exc:  # pragma: no cover - slixmpp parsed it already
        raise RemoteProvisioningError(Reason.NOT_WELL_FORMED, str(exc)[:200]) from None


def _iq_failure(jid: str, exc: BaseException) -> RemoteProvisioningError:
    """Map slixmpp's IqError / IqTimeout / link errors to a provisioning refusal."""
    iq = getattr(exc, "iq", None)
    if iq is not None and type(exc).__name__ == "IqError":
        condition = str(iq["error"]["condition"] or "undefined-condition")
        text = str(iq["error"]["text"] or "")[:200]
        detail = f"{jid}: <{condition}/>" + (f" {text}" if text else "")
        if condition in ("forbidden", "not-allowed", "service-unavailable"):
            return RemoteProvisioningError(Reason.FORBIDDEN, detail)
        if condition in ("item-not-found", "feature-not-implemented"):
            return RemoteProvisioningError(Reason.NOT_FOUND, detail)
        if condition in ("remote-server-not-found", "remote-server-timeout"):
            return RemoteProvisioningError(Reason.UNREACHABLE, detail)
        return RemoteProvisioningError(Reason.HTTP_ERROR, detail, status_hint=502)
    if type(exc).__name__ == "IqTimeout" or isinstance(exc, TimeoutError):
        return RemoteProvisioningError(Reason.UNREACHABLE, f"{jid}: no disco#info answer in time")
    return RemoteProvisioningError(Reason.UNREACHABLE, f"{jid}: {type(exc).__name__}: {exc}"[:300])


class EdgeDiscoChannel:
    """Service discovery through the gateway's component link (the running gateway)."""

    def __init__(self, edge: Any) -> None:
        self._edge = edge

    async def disco_info(self, jid: str, node: str | None, timeout: float) -> etree._Element:
        try:
            query = await self._edge.query_disco_info(jid, node, timeout)
        except Exception as exc:
            raise _iq_failure(jid, exc) from None
        return _to_lxml(query)

    async def disco_items(self, jid: str, timeout: float) -> list[str]:
        try:
            items: list[str] = await self._edge.query_disco_items(jid, timeout)
        except Exception as exc:
            raise _iq_failure(jid, exc) from None
        return items


def _provisioning_form_present(info: DiscoInfo) -> bool:
    return any(form.form_type == FORM_TYPE for form in info.forms)


async def find_provisioning_jid(
    channel: DiscoChannel, domain: str, timeout: float
) -> tuple[str, etree._Element]:
    """The JID answering ``domain``'s provisioning form, and its disco#info result.

    Tries the domain itself, then the first :data:`MAX_DISCO_ITEMS` items of its
    disco#items (XEP-0030 §4.1). Raises :class:`RemoteProvisioningError` ``not-found``
    when none carries the form.
    """
    deadline = time.monotonic() + timeout

    def left() -> float:
        return max(0.1, deadline - time.monotonic())

    candidates: list[str] = [domain]
    refusals: list[str] = []
    try:
        first = await channel.disco_info(domain, None, left())
    except RemoteProvisioningError as exc:
        if exc.reason is Reason.UNREACHABLE:
            raise
        refusals.append(exc.message)
    else:
        if _provisioning_form_present(disco_info_from_element(first)):
            return domain, first
    try:
        items = await channel.disco_items(domain, left())
    except RemoteProvisioningError as exc:
        raise RemoteProvisioningError(
            Reason.NOT_FOUND, f"{domain} carries no provisioning form, and no items: {exc.message}"
        ) from None
    for jid in items[:MAX_DISCO_ITEMS]:
        if jid in candidates or "@" in jid or "/" in jid:
            continue  # services are bare domains; users and resources are not asked
        candidates.append(jid)
        try:
            query = await channel.disco_info(jid, None, left())
        except RemoteProvisioningError as exc:
            refusals.append(exc.message)
            continue
        if _provisioning_form_present(disco_info_from_element(query)):
            return jid, query
        if time.monotonic() >= deadline:
            break
    raise RemoteProvisioningError(
        Reason.NOT_FOUND,
        f"no provisioning form at {', '.join(candidates)}"
        + (f" ({'; '.join(refusals)[:200]})" if refusals else "")
        + ": not published, or hidden from us by Peer Network Privacy",
    )


def document_from_disco(
    query: etree._Element, domain: str, jid: str
) -> tuple[ProvisioningDocument, DiscoInfo]:
    """The provisioning document carried by a disco#info result (XEP-0128 form)."""
    info = disco_info_from_element(query)
    validate_disco_info(info)
    for form in info.forms:
        if form.form_type == FORM_TYPE:
            doc = form_to_document(form)
            _check_domain(doc, domain, f"the disco#info form of {jid}")
            return doc, info
    raise RemoteProvisioningError(
        Reason.NOT_FOUND,
        f"disco#info of {jid} carries no provisioning form (not published, or hidden from us)",
    )


async def query_xmpp(
    channel: DiscoChannel,
    domain: str,
    *,
    jid: str | None,
    timeout: float,
    caps: CapsHint | None = None,
) -> ChannelResult:
    """disco#info of the peer's provisioning JID (found if ``jid`` is None), verified
    against ``caps`` when given (XEP-0115 §5.4)."""
    started = time.monotonic()
    source = jid or domain
    try:
        if caps is not None and jid is not None and caps.hash:
            query = await channel.disco_info(jid, caps_node(caps.node, caps.ver), timeout)
            doc, info = document_from_disco(query, domain, jid)
            verdict = verify_ver(info, caps.ver, caps.hash)
            if verdict is CapsVerdict.VALID:
                ver, status = caps.ver, "verified"
            elif verdict is CapsVerdict.UNKNOWN_HASH:
                ver, status = caps.ver, "unknown-hash"
            else:
                # XEP-0115 §5.4: not cached under the announced ver.
                ver, status = None, "mismatch"
        else:
            if jid is None:
                jid, query = await find_provisioning_jid(channel, domain, timeout)
                source = jid
            else:
                query = await channel.disco_info(jid, None, timeout)
            doc, info = document_from_disco(query, domain, jid)
            ver, status = compute_ver(info), "computed"
    except RemoteProvisioningError as exc:
        return ChannelResult.failed(Channel.XMPP, source, exc, time.monotonic() - started)
    return ChannelResult(
        Channel.XMPP,
        source,
        document=doc,
        caps_ver=ver,
        caps_status=status,
        elapsed=time.monotonic() - started,
    )


class XmppProbeClient:
    """A short-lived XMPP client connection for ``sipxmpp query-peer`` (see module docstring).

    ``async with XmppProbeClient(settings) as client: await client.query(domain, jid, t)``
    """

    def __init__(self, settings: ProvisioningQuerySettings, *, cafile: str | None = None) -> None:
        from slixmpp import ClientXMPP
        from slixmpp.xmlstream.handler import Callback
        from slixmpp.xmlstream.matcher import MatchXPath

        if settings.xmpp_jid is None or settings.xmpp_password is None:
            raise ValueError("provisioning.query.xmpp_jid and xmpp_password are not set")
        self._settings = settings
        plain = settings.xmpp_encryption == "none"
        self.xmpp: Any = ClientXMPP(
            settings.xmpp_jid,
            settings.xmpp_password,
            plugin_config={"feature_mechanisms": {"unencrypted_scram": plain}},
        )
        self.xmpp.enable_plaintext = plain
        self.xmpp.enable_starttls = settings.xmpp_encryption == "starttls"
        self.xmpp.enable_direct_tls = settings.xmpp_encryption == "direct-tls"
        if cafile is not None:
            self.xmpp.ca_certs = Path(cafile)
        self.xmpp.register_plugin("xep_0030")
        loop = asyncio.get_running_loop()
        self._session: asyncio.Future[bool] = loop.create_future()
        #: Latest caps seen per sender JID (bounded: one query asks a handful of JIDs).
        self._caps: dict[str, CapsHint] = {}
        self._caps_event = asyncio.Event()
        self.xmpp.add_event_handler("session_start", self._on_session_start)
        self.xmpp.add_event_handler("failed_auth", self._on_failed_auth)
        self.xmpp.add_event_handler("disconnected", self._on_disconnected)
        self.xmpp.register_handler(
            Callback(
                "provisioning probe presence",
                MatchXPath("{jabber:client}presence"),
                self._on_presence,
            )
        )

    def _on_session_start(self, _event: Any) -> None:
        if not self._session.done():
            self._session.set_result(True)

    def _on_failed_auth(self, _event: Any) -> None:
        if not self._session.done():
            self._session.set_exception(
                RemoteProvisioningError(
                    Reason.FORBIDDEN, f"XMPP login as {self._settings.xmpp_jid} refused"
                )
            )

    def _on_disconnected(self, _event: Any) -> None:
        if not self._session.done():
            self._session.set_exception(
                RemoteProvisioningError(Reason.UNREACHABLE, "XMPP connection closed before login")
            )

    def _on_presence(self, stanza: Any) -> None:
        c = stanza.xml.find("{http://jabber.org/protocol/caps}c")
        if c is None or len(self._caps) > MAX_DISCO_ITEMS:
            return
        node, ver, hash_name = c.get("node"), c.get("ver"), c.get("hash")
        if node and ver and hash_name:
            self._caps[str(stanza["from"])] = CapsHint(node, ver, hash_name)
            self._caps_event.set()

    async def connect(self, timeout: float) -> None:
        server = self._settings.xmpp_server
        if server is not None:
            host, _, port = server.rpartition(":")
            self.xmpp.connect(host or server, int(port) if port.isdigit() else 5222)
        else:
            self.xmpp.connect()
        try:
            await asyncio.wait_for(asyncio.shield(self._session), timeout)
        except TimeoutError:
            raise RemoteProvisioningError(
                Reason.UNREACHABLE, f"XMPP login as {self._settings.xmpp_jid} timed out"
            ) from None

    async def close(self) -> None:
        if self.xmpp.transport is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.xmpp.disconnect(wait=1.0), 2.0)
        else:
            self.xmpp.cancel_connection_attempt()
        run_filters = getattr(self.xmpp, "_run_out_filters", None)
        if run_filters is not None:
            run_filters.cancel()
            await asyncio.gather(run_filters, return_exceptions=True)

    async def __aenter__(self) -> XmppProbeClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- DiscoChannel ---------------------------------------------------------------------

    async def disco_info(self, jid: str, node: str | None, timeout: float) -> etree._Element:
        try:
            iq = await self.xmpp.plugin["xep_0030"].get_info(
                jid=jid, node=node, local=False, cached=False, timeout=timeout
            )
        except Exception as exc:
            raise _iq_failure(jid, exc) from None
        return _to_lxml(iq["disco_info"].xml)

    async def disco_items(self, jid: str, timeout: float) -> list[str]:
        try:
            iq = await self.xmpp.plugin["xep_0030"].get_items(jid=jid, timeout=timeout)
        except Exception as exc:
            raise _iq_failure(jid, exc) from None
        return [str(item[0]) for item in iq["disco_items"]["items"]]

    # -- the query ------------------------------------------------------------------------

    async def query(self, domain: str, jid: str | None, timeout: float) -> ChannelResult:
        """Find the provisioning JID, announce ourselves to it, wait briefly for its caps
        presence, then query (verifying the caps when they came)."""
        started = time.monotonic()
        if jid is None:
            try:
                jid, _ = await find_provisioning_jid(self, domain, timeout)
            except RemoteProvisioningError as exc:
                return ChannelResult.failed(Channel.XMPP, domain, exc, time.monotonic() - started)
        self.xmpp.send_presence(pto=jid)
        wait = min(CAPS_PRESENCE_WAIT, max(0.0, timeout - (time.monotonic() - started)) / 2)
        deadline = time.monotonic() + wait
        while jid not in self._caps and time.monotonic() < deadline:
            self._caps_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._caps_event.wait(), deadline - time.monotonic())
        remaining = max(0.5, timeout - (time.monotonic() - started))
        try:
            return await query_xmpp(
                self, domain, jid=jid, timeout=remaining, caps=self._caps.get(jid)
            )
        finally:
            with contextlib.suppress(Exception):
                self.xmpp.send_presence(pto=jid, ptype="unavailable")


# --------------------------------------------------------------------------------------
# The query tool behind `sipxmpp query-peer`
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueryConfig:
    """What ``sipxmpp query-peer`` needs, from the gateway settings or from defaults."""

    #: Our domain (From of the OPTIONS).
    our_domain: str = "localhost"
    #: Address the SIP sockets bind to (ports are always chosen by the kernel).
    listen_host: str = "127.0.0.1"
    #: Certificate for mutual TLS and the CAs that vouch for peers (SIP and HTTPS).
    tls: TlsSettings | None = None
    dns_servers: tuple[str, ...] = ()
    peers: Mapping[str, ProvisioningPeer] = dataclasses.field(default_factory=dict)
    xmpp: ProvisioningQuerySettings = dataclasses.field(default_factory=ProvisioningQuerySettings)
    timeout: float = 10.0
    user_agent: str = "sipxmpp/0.1"
    timers: Timers = dataclasses.field(default_factory=Timers)

    @classmethod
    def from_settings(cls, settings: Settings, *, timeout: float | None = None) -> QueryConfig:
        from sipxmpp.gateway.runtime.provisioning import our_domain

        s = settings.sip
        tls: TlsSettings | None = None
        if s.tls.certificate is not None or s.tls.ca_file is not None:
            tls = TlsSettings(
                certfile=str(s.tls.certificate) if s.tls.certificate else None,
                keyfile=str(s.tls.private_key) if s.tls.private_key else None,
                cafile=str(s.tls.ca_file) if s.tls.ca_file else None,
            )
        p = settings.provisioning
        return cls(
            our_domain=our_domain(settings),
            listen_host=s.listen_host,
            tls=tls,
            dns_servers=tuple(s.dns_servers),
            peers={normalize_domain(peer.domain): peer for peer in p.peers},
            xmpp=p.query,
            timeout=timeout if timeout is not None else p.fetch_timeout,
            user_agent=s.user_agent,
            timers=Timers(t1=s.t1, t2=s.t2, t4=s.t4),
        )


@dataclass(frozen=True, slots=True)
class PeerReport:
    """What each channel said about one peer network."""

    domain: str
    results: tuple[ChannelResult, ...]

    def documents(self) -> list[tuple[Channel, ProvisioningDocument]]:
        return [(r.channel, r.document) for r in self.results if r.document is not None]

    def disagreements(self) -> tuple[str, ...]:
        """Parameters on which at least two channels' documents differ."""
        docs = self.documents()
        out: dict[str, None] = {}
        for _, other in docs[1:]:
            for name in differences(docs[0][1], other):
                out[name] = None
        return tuple(out)

    @property
    def exit_status(self) -> int:
        if self.disagreements():
            return EXIT_DISAGREE
        if not self.results or any(not r.ok for r in self.results):
            return EXIT_CHANNEL_FAILED
        return EXIT_OK


class _RefuseRequests:
    """The query tool is a client: requests that reach its sockets get 403 (RFC 3261 §21.4.4)."""

    def __init__(self, ids: IdGenerator) -> None:
        self._ids = ids
        self.sender: SipSender | None = None

    def handle_sip_event(self, event: object) -> None:
        if isinstance(event, RequestReceived) and event.request.method != "ACK":
            if self.sender is not None:
                self.sender.send_response(
                    build.make_response(event.request, 403, to_tag=self._ids.tag())
                )


class PeerQueryTool:
    """Queries peers over the three channels, as a stand-alone client (no gateway running).

    ``async with PeerQueryTool(config) as tool: report = await tool.query("b.example")``
    """

    def __init__(self, config: QueryConfig, *, ids: IdGenerator | None = None) -> None:
        self.config = config
        self._ids = ids if ids is not None else RandomIds()
        self._endpoint: SipEndpoint | None = None
        refuse = _RefuseRequests(self._ids)
        self._dispatch = SipDispatcher(default=refuse)
        has_tls = config.tls is not None
        self._transport = SipTransportManager(
            TransportConfig(
                udp=ListenAddress(config.listen_host, 0),
                tcp=ListenAddress(config.listen_host, 0),
                tls_listen=None,
                tls=config.tls if has_tls else TlsSettings(),
            ),
            self._make_core,
            on_activity=self._drain,
        )
        refuse.sender = SipSender(self._transport, self._dispatch, refuse)
        self._sip = SipOptionsClient(
            lambda request, target: self._sip_sender.send_request(request, target),
            self._ids,
            user_agent=config.user_agent,
        )
        self._sip_sender = SipSender(self._transport, self._dispatch, self._sip)
        self._transports: tuple[Transport, ...] = ("udp", "tcp", "tls")
        self._dns: AiodnsClient | None = None
        self._resolver: SipResolver | None = None
        self._http: aiohttp.ClientSession | None = None

    def _make_core(self, bound: Mapping[str, tuple[str, int]]) -> SipEndpoint:
        local = dict(bound)
        # No TLS listener (a client needs none): responses to a request sent over TLS come
        # back on its connection (RFC 3261 §18.2.2), so the Via sent-by only has to be ours.
        local.setdefault("tls", local["tcp"])
        self._endpoint = SipEndpoint(
            EndpointConfig(
                timers=self.config.timers, local=local, user_agent=self.config.user_agent
            ),
            self._ids,
        )
        return self._endpoint

    def _drain(self) -> None:
        endpoint = self._endpoint
        if endpoint is None:
            return
        while (event := endpoint.next_event()) is not None:
            self._dispatch.handle(event)

    async def __aenter__(self) -> PeerQueryTool:
        self._dns = AiodnsClient.create(list(self.config.dns_servers) or None)
        self._resolver = SipResolver(self._dns, transports=self._transports)
        await self._transport.start()
        self._http = aiohttp.ClientSession()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._http is not None:
            await self._http.close()
        await self._transport.stop()
        if self._dns is not None:
            await self._dns.close()

    async def query(self, domain: str, vias: Iterable[Channel]) -> PeerReport:
        """Ask ``domain`` over each channel in ``vias`` (concurrently)."""
        domain = normalize_domain(domain)
        peer = self.config.peers.get(domain)
        tasks = [self._one(domain, peer, via) for via in vias]
        results = await asyncio.gather(*tasks)
        return PeerReport(domain, tuple(results))

    async def _one(self, domain: str, peer: ProvisioningPeer | None, via: Channel) -> ChannelResult:
        timeout = self.config.timeout
        if via is Channel.SIP:
            assert self._resolver is not None
            targets = await sip_targets(self._resolver, domain, peer)
            return await self._sip.query(
                domain, targets, from_domain=self.config.our_domain, timeout=timeout
            )
        if via is Channel.HTTP:
            assert self._http is not None
            return await query_http(
                self._http,
                domain,
                base_url=peer.http if peer is not None else None,
                ssl_context=http_ssl_context(self.config.tls),
                timeout=timeout,
            )
        settings = self.config.xmpp
        if settings.xmpp_jid is None:
            return ChannelResult.failed(
                Channel.XMPP,
                domain,
                RemoteProvisioningError(
                    Reason.UNREACHABLE,
                    "no XMPP account configured ([provisioning.query] xmpp_jid, xmpp_password)",
                ),
            )
        started = time.monotonic()
        client = XmppProbeClient(
            settings, cafile=self.config.tls.cafile if self.config.tls else None
        )
        try:
            await client.connect(timeout)
            return await client.query(
                domain,
                peer.xmpp if peer is not None else None,
                timeout - (time.monotonic() - started),
            )
        except RemoteProvisioningError as exc:
            return ChannelResult.failed(
                Channel.XMPP, settings.xmpp_jid, exc, time.monotonic() - started
            )
        finally:
            await client.close()


# --------------------------------------------------------------------------------------
# Presentation
# --------------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text if len(text) <= _CELL_WIDTH else text[: _CELL_WIDTH - 1] + "…"


def _status_line(r: ChannelResult) -> str:
    if r.document is not None:
        extra = []
        if r.etag:
            extra.append(f"ETag {r.etag}")
        if r.max_age is not None:
            extra.append(f"max-age {int(r.max_age)}")
        if r.caps_ver:
            extra.append(f"caps ver {r.caps_ver} ({r.caps_status})")
        elif r.caps_status:
            extra.append(f"caps {r.caps_status}")
        return "ok" + (" — " + ", ".join(extra) if extra else "")
    if r.not_modified:
        return "not modified"
    return f"FAILED ({r.reason.value if r.reason else 'error'}): {r.error}"


def render_table(report: PeerReport) -> str:
    """A readable report: one line per channel, then the 16 parameters side by side."""
    lines = [f"Provisioning parameters of {report.domain}", ""]
    width = max((len(r.source) for r in report.results), default=0)
    for r in report.results:
        lines.append(
            f"  {r.channel.value:<5} {r.source:<{width}}  {r.elapsed:5.2f} s  {_status_line(r)}"
        )
    docs = report.documents()
    if not docs:
        lines += ["", "No channel returned a document."]
        return "\n".join(lines) + "\n"
    rows: list[list[str]] = []
    columns = [channel.value for channel, _ in docs]
    values = [parameter_values(doc) for _, doc in docs]
    differing = set(report.disagreements())
    for i, param in enumerate(PARAMETERS):
        first = values[0][i][1]
        row = [f"{param.number:>2}", param.name + (" *" if param.name in differing else "")]
        row.append(_cell(first))
        for col in values[1:]:
            row.append(
                "=" if col[i][1] == first or param.name not in differing else _cell(col[i][1])
            )
        rows.append(row)
    ext = [
        ", ".join(f"{e.name}={'|'.join(e.values)}" for e in doc.extensions) or "-"
        for _, doc in docs
    ]
    rows.append(
        ["", "extensions" + (" *" if "extensions" in differing else ""), _cell(ext[0])]
        + ["=" if e == ext[0] else _cell(e) for e in ext[1:]]
    )
    header = ["#", "parameter", *columns]
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    lines.append("")
    for row in [header, *rows]:
        lines.append(
            "  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        )
    lines.append("")
    if differing:
        lines.append("The channels disagree on: " + ", ".join(sorted(differing)) + " (marked *).")
    elif len(docs) > 1:
        lines.append(f"The {len(docs)} channels agree.")
    failed = [r.channel.value for r in report.results if not r.ok]
    if failed:
        lines.append("No document over: " + ", ".join(failed) + ".")
    return "\n".join(lines) + "\n"


def report_to_json(report: PeerReport) -> dict[str, Any]:
    """The report as JSON data (documents in our JSON encoding)."""
    import json

    channels: dict[str, Any] = {}
    for r in report.results:
        channels[r.channel.value] = {
            "ok": r.ok,
            "source": r.source,
            "elapsed": round(r.elapsed, 3),
            "reason": r.reason.value if r.reason else None,
            "error": r.error,
            "etag": r.etag,
            "max-age": r.max_age,
            "caps-ver": r.caps_ver,
            "caps-status": r.caps_status,
            "document": json.loads(to_json(r.document)) if r.document is not None else None,
        }
    return {
        "domain": report.domain,
        "channels": channels,
        "agree": not report.disagreements(),
        "differences": list(report.disagreements()),
        "exit-status": report.exit_status,
    }
