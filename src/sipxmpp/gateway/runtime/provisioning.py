"""Capability provisioning in the running gateway: serving our parameters, using our peers'.

Theory of operation
-------------------
**Serving** (draft-houri-speermint-presence-im-provision §5). One
:class:`~sipxmpp.provisioning.publisher.ProvisioningPublisher`, loaded from the
``[provisioning]`` settings (:func:`load_policy`), answers all three channels, so the same
requester gets the same 16 parameters everywhere (conformance point 76):

* **SIP OPTIONS** (:class:`OptionsService`, every OPTIONS the gateway receives: any gateway
  address, and ``sip:provisioning@<domain>``): with ``Accept`` naming
  ``application/pres-im-provisioning+xml`` the answer is 200 with the document as body, or
  403 when Peer Network Privacy hides the network from the requester; otherwise the usual
  OPTIONS answer (RFC 3261 §11.2). Both carry Allow, Accept, Supported and Allow-Events
  (RFC 6665 §4.4.4). The requester is named by the verified certificate of its TLS
  connection (RFC 5922 §7.1); over UDP, TCP or without a certificate it is unidentified.
* **HTTP and HTTPS** (:class:`~sipxmpp.provisioning.http.ProvisioningHttpServer`) on the
  configured ports, HTTPS with optional (or required) client certificates.
* **XMPP**: the component's disco#info carries the XEP-0128 form for the requesting domain
  (:class:`XmppProvisioning` installs a disco hook), and the component's presence carries
  XEP-0115 caps whose ``ver`` is computed by :mod:`sipxmpp.provisioning.caps` over exactly
  that answer. slixmpp's ``xep_0128``/``xep_0115`` plugins are not used: their
  ``set_extended_info`` leaves a replaced form in the stanza's iterables, so the ``ver``
  they compute hashes two forms with one FORM_TYPE (see ``provisioning/form.py``). Each
  answer is built fresh instead, and ``ver`` is computed from the same value.

A change of policy (:meth:`ProvisioningService.update`, :meth:`ProvisioningService.reload`,
SIGHUP) swaps the publisher's policy: HTTP answers get a new ETag, and the component
re-broadcasts its presence to every recipient whose ``ver`` changed (see
``gateway/xmpp/caps.py`` for who the recipients are).

**Using** (issue 4, item 6). :class:`PeerProvisioningCache` fetches peers' documents over the
configured channels (``runtime/provisioning_query.py``), keeps them in a
:class:`~sipxmpp.provisioning.store.PeerDocumentStore` and refreshes them when they expire
(HTTP revalidates with ``If-None-Match``) or when a peer's caps presence announces a new
``ver``. :class:`PeerPolicy` turns a peer's document into decisions
(:class:`PeerCapabilities`): TLS-only peers are reached over TLS only (applied to the pager
path's next hop now); peers without session-mode IM get pager-mode MESSAGE; peers without
typing indication get no isComposing; peers without list subscriptions get per-user
subscriptions. Each decision is logged once per peer (and again when it changes) as
``provisioning.decision``. A peer without a document gets the standards' defaults.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from lxml import etree
from pydantic import ValidationError

from sipxmpp.gateway.runtime.dispatch import SipDispatcher, SipSender
from sipxmpp.gateway.runtime.logs import kv
from sipxmpp.gateway.runtime.provisioning_query import (
    CapsHint,
    ChannelResult,
    EdgeDiscoChannel,
    SipOptionsClient,
    http_ssl_context,
    query_http,
    query_xmpp,
    sip_targets,
)
from sipxmpp.gateway.settings import ProvisioningPeer, ProvisioningSettings, Settings
from sipxmpp.gateway.sip import grammar
from sipxmpp.gateway.sip.address import Transport, TransportAddress
from sipxmpp.gateway.sip.events import RequestReceived
from sipxmpp.gateway.sip.ids import IdGenerator
from sipxmpp.gateway.sip.message import Request, Response, serialize
from sipxmpp.gateway.sip.options import Capabilities, options_response
from sipxmpp.gateway.transport.config import TlsSettings
from sipxmpp.gateway.transport.manager import SipTransportManager
from sipxmpp.gateway.transport.resolver import ResolutionError, SipResolver
from sipxmpp.gateway.xmpp.disco import DiscoIdentity, DiscoRequest
from sipxmpp.gateway.xmpp.disco import DiscoInfo as EdgeDiscoInfo
from sipxmpp.gateway.xmpp.errors import StanzaErrorException
from sipxmpp.mapping.model import StanzaError
from sipxmpp.provisioning import (
    FORM_TYPE,
    MEDIA_TYPE_XML,
    Channel,
    ImMode,
    PeerDocumentStore,
    PeerView,
    ProvisioningDocument,
    ProvisioningError,
    ProvisioningPolicy,
    ProvisioningPublisher,
    Refused,
    Rendered,
    Requester,
    parse_json,
    parse_xml,
    requester_from_jid,
)
from sipxmpp.provisioning.caps import CAPS_NS, DiscoInfo, Identity, compute_ver
from sipxmpp.provisioning.form import DataForm, form_from_element, form_to_element
from sipxmpp.provisioning.http import ProvisioningHttpServer, server_ssl_context
from sipxmpp.provisioning.model import normalize_domain
from sipxmpp.provisioning.publisher import answer_options
from sipxmpp.provisioning.views import IdentitySource
from sipxmpp.provisioning.xmlcodec import safe_xml_parser, summarize_validation_error

__all__ = [
    "ProvisioningConfigError",
    "load_policy",
    "our_domain",
    "sip_requester",
    "OptionsService",
    "XmppProvisioning",
    "Decision",
    "PeerCapabilities",
    "PeerPolicy",
    "PeerProvisioningCache",
    "ProvisioningService",
    "MAX_POLICY_FILE_BYTES",
    "MAX_UDP_RESPONSE_BYTES",
    "MAX_CONCURRENT_FETCHES",
    "REFRESH_CHECK_INTERVAL",
    "CAPS_HASH",
]

log = logging.getLogger("sipxmpp.provisioning")

#: Largest policy file read at start or reload: up to 256 views (views.MAX_VIEWS) of up to
#: 64 KiB each would be 16 MiB; real policies are a few KiB. Refusing more keeps a wrong
#: path (a log file, a disk image) from being read into memory.
MAX_POLICY_FILE_BYTES = 17 * 1024 * 1024
#: Largest OPTIONS answer sent over UDP: the payload of one IPv4 UDP datagram (65,535 minus
#: the IP and UDP headers). RFC 3261 §18.2.2 sends a response back over the request's
#: transport, so a document that does not fit is refused with advice to use TCP or TLS.
MAX_UDP_RESPONSE_BYTES = 65_507
#: Peer documents fetched at once. Fetches are I/O bound; the bound keeps a burst of new
#: peer domains (fetch = "all") from opening hundreds of connections together.
MAX_CONCURRENT_FETCHES = 16
#: Seconds between sweeps for expired or stale peer documents (a document lives for its
#: max-age, at least a minute, see ``provisioning/store.py``).
REFRESH_CHECK_INTERVAL = 30.0
#: Hash function of the component's caps (XEP-0115 §5.1: SHA-1 is mandatory to implement).
CAPS_HASH = "sha-1"
#: Per-requester disco answers memoized between policy changes (requesters are domains;
#: the memo is dropped when full).
_MAX_DISCO_MEMO = 1024
#: Peers whose decisions are remembered for "log once per peer", and peers whose failed
#: fetch is remembered for the retry interval.
_MAX_REMEMBERED_PEERS = 10_000


class ProvisioningConfigError(Exception):
    """The ``[provisioning]`` documents cannot be loaded; the message names the file."""


# --------------------------------------------------------------------------------------
# Loading the policy
# --------------------------------------------------------------------------------------


def _read(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_POLICY_FILE_BYTES + 1)
    except OSError as exc:
        raise ProvisioningConfigError(f"{path}: cannot read: {exc.strerror}") from None
    if len(data) > MAX_POLICY_FILE_BYTES:
        raise ProvisioningConfigError(f"{path}: larger than {MAX_POLICY_FILE_BYTES} bytes")
    return data


def load_document(path: Path) -> ProvisioningDocument:
    """One provisioning document file, XML or JSON (our wire formats, fully validated)."""
    data = _read(path)
    is_json = path.suffix.lower() == ".json" or data.lstrip()[:1] == b"{"
    try:
        return parse_json(data) if is_json else parse_xml(data)
    except ProvisioningError as exc:
        raise ProvisioningConfigError(f"{path}: {exc.reason.value}: {exc.message}") from None


def load_policy(cfg: ProvisioningSettings) -> ProvisioningPolicy | None:
    """The policy the ``[provisioning]`` settings describe; None when nothing is published."""
    try:
        if cfg.policy is not None:
            return ProvisioningPolicy.model_validate_json(_read(cfg.policy))
        if cfg.document is None:
            return None
        public = load_document(cfg.document)
        views = tuple(
            PeerView(name=v.name, peers=v.peers, document=load_document(v.document))
            for v in cfg.views
        )
        return ProvisioningPolicy(
            public=public,
            views=views,
            clearing_houses=cfg.clearing_houses,
            redact_visible_to=cfg.redact_visible_to,
        )
    except ValidationError as exc:
        where = cfg.policy or cfg.document
        raise ProvisioningConfigError(f"{where}: {summarize_validation_error(exc)}") from None


def our_domain(settings: Settings) -> str:
    """The domain the gateway speaks for: its first SIP domain, else its component's."""
    if settings.domains.sip:
        return settings.domains.sip[0].sip
    if settings.domains.xmpp:
        return settings.domains.xmpp[0].sip or settings.domains.xmpp[0].xmpp
    return settings.xmpp.component_jid


# --------------------------------------------------------------------------------------
# SIP OPTIONS
# --------------------------------------------------------------------------------------


def sip_requester(
    source: TransportAddress, transport: SipTransportManager | None
) -> Requester | None:
    """The peer network behind a SIP request: the identities of its verified TLS client
    certificate (RFC 5922 §7.1), or None (UDP, TCP, no certificate)."""
    if source.transport != "tls":
        return None
    identities: tuple[str, ...] = ()
    if transport is not None and source.connection is not None:
        info = transport.connection_info(source.connection)
        if info is not None:
            identities = info.peer_identities
    if not identities and source.peer_identity:
        identities = (source.peer_identity,)
    domains = []
    for identity in identities:
        try:
            domains.append(normalize_domain(identity))
        except ValueError:
            continue  # an IP address identity names no peer network
    if not domains:
        return None
    return Requester(tuple(domains), IdentitySource.TLS_CERTIFICATE)


class OptionsService:
    """Answers every OPTIONS the gateway receives (RFC 3261 §11.2), with the provisioning
    document when the request asks for it (draft §5; conformance point 75).

    :param send_response: hands a response to the SIP core.
    :param capabilities: the gateway's current capability set (Allow, Accept, ...).
    :param publisher: the current publisher, or None when nothing is published.
    :param requester_of: names the peer network behind a request's source.
    """

    def __init__(
        self,
        *,
        send_response: Callable[[Response], None],
        capabilities: Callable[[], Capabilities],
        publisher: Callable[[], ProvisioningPublisher | None],
        requester_of: Callable[[TransportAddress], Requester | None],
        ids: IdGenerator,
    ) -> None:
        self._send = send_response
        self._capabilities = capabilities
        self._publisher = publisher
        self._requester_of = requester_of
        self._ids = ids
        #: Answers by outcome: ``plain``, ``document``, ``refused``, ``too-large``.
        self.counters: dict[str, int] = {"plain": 0, "document": 0, "refused": 0, "too-large": 0}

    def handle_sip_event(self, event: object) -> None:
        """A request routed here by method (the dispatcher sends only OPTIONS)."""
        if isinstance(event, RequestReceived) and event.request.method == "OPTIONS":
            self._send(self.answer(event.request, event.source))

    def answer(self, request: Request, source: TransportAddress) -> Response:
        """The response to one OPTIONS request from ``source``."""
        caps = self._capabilities()
        to_tag = self._ids.tag()
        # RFC 3261 §20.37 allows an empty Supported; §11.2 says a 200 SHOULD carry it.
        extra = () if caps.supported else (("Supported", ""),)
        publisher = self._publisher()
        accept_lines = request.headers.get_lines("Accept")
        accept = ", ".join(accept_lines) if accept_lines else None
        outcome: Rendered | Refused | None = None
        if publisher is not None:
            outcome = answer_options(publisher, accept, self._requester_of(source))
        if outcome is None:
            self.counters["plain"] += 1
            return options_response(request, caps, to_tag=to_tag, extra_headers=extra)
        if isinstance(outcome, Refused):
            self.counters["refused"] += 1
            log.info(
                "provisioning.options.refused",
                extra=kv(source=f"{source.host}:{source.port}", reason=outcome.reason),
            )
            return options_response(request, caps, to_tag=to_tag, status=outcome.status_hint)
        response = options_response(
            request,
            caps,
            to_tag=to_tag,
            body=outcome.body,
            content_type=MEDIA_TYPE_XML,
            extra_headers=extra,
        )
        if source.transport == "udp" and len(serialize(response)) > MAX_UDP_RESPONSE_BYTES:
            self.counters["too-large"] += 1
            return options_response(
                request,
                caps,
                to_tag=to_tag,
                status=500,
                extra_headers=(
                    (
                        "Warning",
                        '399 sipxmpp "provisioning document too large for UDP; ask over TCP or TLS"',
                    ),
                ),
            )
        self.counters["document"] += 1
        log.debug(
            "provisioning.options.answered",
            extra=kv(source=f"{source.transport}:{source.host}:{source.port}", view=outcome.view),
        )
        return response


# --------------------------------------------------------------------------------------
# XMPP: disco#info form and caps
# --------------------------------------------------------------------------------------


def _caps_identity(identity: DiscoIdentity) -> Identity:
    return Identity(identity.category, identity.type, identity.lang or "", identity.name or "")


def _parse_static_form(form: str) -> DataForm | None:
    try:
        element = etree.fromstring(form.encode("utf-8"), safe_xml_parser())
        return form_from_element(element)
    except (etree.XMLSyntaxError, ProvisioningError):
        return None  # DiscoRegistry validated it; unreadable here only if our reader differs


class XmppProvisioning:
    """The XMPP channel: per-requester disco#info with the provisioning form, and the
    component's XEP-0115 caps (see the module docstring).

    :param edge: the :class:`~sipxmpp.gateway.xmpp.component.XmppEdge`.
    :param publisher: the current publisher (None: the answer has no provisioning form).
    :param node: the XEP-0115 node of the component.
    """

    def __init__(
        self, edge: Any, publisher: Callable[[], ProvisioningPublisher | None], node: str
    ) -> None:
        self._edge = edge
        self._publisher = publisher
        self._node = node
        self._component = str(edge.config.component_jid).lower()
        self._memo: dict[tuple[object, ...], tuple[DiscoInfo, str]] = {}

    def install(self) -> None:
        """Hook into the edge: caps feature, disco hook, caps presence."""
        self._edge.add_disco_feature(CAPS_NS)
        self._edge.set_disco_hook(self.hook)
        self._edge.caps.configure(self._node, self.ver_for, CAPS_HASH)

    def invalidate(self) -> None:
        """Forget memoized answers (after a policy change)."""
        self._memo.clear()

    def info_for(self, requester: Requester | None) -> tuple[DiscoInfo, str]:
        """The disco#info answer (as hashed) for ``requester``, and its caps ``ver``."""
        static: EdgeDiscoInfo = self._edge.disco.info()
        publisher = self._publisher()
        key = (
            publisher.generation if publisher is not None else None,
            id(publisher),
            static,
            requester.domains if requester is not None else None,
        )
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        identities = [_caps_identity(i) for i in static.identities]
        extra = [f for f in (_parse_static_form(s) for s in static.forms) if f is not None]
        if publisher is not None:
            info = publisher.disco_info(requester, identities, static.features, extra)
        else:
            features = tuple(dict.fromkeys((*static.features, CAPS_NS)))
            info = DiscoInfo(tuple(identities), features, tuple(extra))
        result = (info, compute_ver(info, CAPS_HASH))
        if len(self._memo) >= _MAX_DISCO_MEMO:
            self._memo.clear()
        self._memo[key] = result
        return result

    def ver_for(self, jid: str) -> str:
        """The caps ``ver`` of the answer ``jid``'s domain gets (for the caps presence)."""
        return self.info_for(requester_from_jid(jid))[1]

    def hook(self, request: DiscoRequest, static: EdgeDiscoInfo) -> EdgeDiscoInfo | None:
        """The disco#info answer of the component JID for one request (DiscoRegistry hook)."""
        if request.target.split("/", 1)[0].lower() != self._component:
            return None  # JIDs under the component: the registry's default answer
        info, ver = self.info_for(requester_from_jid(request.requester))
        if request.node is not None and request.node != f"{self._node}#{ver}":
            # XEP-0115 §6.2: only the current node#ver is answered (slixmpp echoes the node).
            raise StanzaErrorException(StanzaError("item-not-found", "cancel"))
        # The static forms go out as they are; ours (absent when Peer Network Privacy
        # hides the network from the requester) is serialized from the hashed value.
        ours = tuple(
            etree.tostring(form_to_element(form), encoding="unicode")
            for form in info.forms
            if form.form_type == FORM_TYPE
        )
        return EdgeDiscoInfo(
            identities=static.identities,
            features=info.features,
            forms=tuple(static.forms) + ours,
        )


# --------------------------------------------------------------------------------------
# Using peers' parameters: decisions
# --------------------------------------------------------------------------------------


class Decision(enum.StrEnum):
    """What the gateway decides from a peer's document (issue 4, item 6)."""

    #: Parameter 3: a TLS-only peer is reached over TLS only.
    TRANSPORTS = "transports"
    #: Parameter 9: session mode (MSRP, RFC 7573) or pager mode (RFC 3428, RFC 7572).
    IM_MODE = "im-mode"
    #: Parameter 10: send RFC 3994 isComposing or not.
    IS_COMPOSING = "is-composing"
    #: Parameter 7: one RFC 4662 list subscription, or one subscription per user.
    LIST_SUBSCRIPTIONS = "list-subscriptions"


_ALL_TRANSPORTS: tuple[Transport, ...] = ("udp", "tcp", "tls")


@dataclass(frozen=True, slots=True)
class PeerCapabilities:
    """What the gateway does with one peer network (pure; from its document, if any).

    Without a document the standards' behaviour applies: any transport RFC 3263 offers,
    session mode for chats (RFC 7573), isComposing (RFC 7573 §6, RFC 3994), and per-user
    subscriptions (RFC 4662 list support cannot be assumed).
    """

    domain: str
    document: ProvisioningDocument | None = None
    #: Where the document came from.
    source: Channel | None = None

    @property
    def known(self) -> bool:
        return self.document is not None

    @property
    def tls_only(self) -> bool:
        """Parameter 3 (Usage of TLS)."""
        return self.document is not None and self.document.connectivity.tls_only

    def transports(self, available: Iterable[Transport] = _ALL_TRANSPORTS) -> tuple[Transport, ...]:
        """The transports the gateway may use towards the peer, of ``available``."""
        return tuple(t for t in available if not self.tls_only or t == "tls")

    def use_session_mode(self) -> bool:
        """Parameter 9: False means chats go as pager-mode MESSAGE (RFC 3428)."""
        if self.document is None:
            return True
        return ImMode.SESSION in self.document.chat.im_modes

    def send_is_composing(self) -> bool:
        """Parameter 10: False means no RFC 3994 isComposing towards the peer."""
        return True if self.document is None else self.document.chat.is_composing

    def use_list_subscriptions(self) -> bool:
        """Parameter 7: True means one RFC 4662 list subscription instead of one per user."""
        return False if self.document is None else self.document.presence.list_subscription

    def decisions(self) -> tuple[tuple[Decision, str, str], ...]:
        """Each decision as (decision, value, reason) for the log."""
        doc = self.document
        if doc is None:
            why = "no provisioning document: standard behaviour"
            return (
                (Decision.TRANSPORTS, "any", why),
                (Decision.IM_MODE, "session", why),
                (Decision.IS_COMPOSING, "send", why),
                (Decision.LIST_SUBSCRIPTIONS, "per-user", why),
            )
        modes = ", ".join(m.value for m in doc.chat.im_modes) or "none"
        return (
            (
                Decision.TRANSPORTS,
                "tls-only" if self.tls_only else "any",
                f"parameter 3 (tls-only) is {'yes' if self.tls_only else 'no'}",
            ),
            (
                Decision.IM_MODE,
                "session" if self.use_session_mode() else "pager",
                f"parameter 9 (im-modes) is {modes}",
            ),
            (
                Decision.IS_COMPOSING,
                "send" if self.send_is_composing() else "suppress",
                f"parameter 10 (is-composing) is {'yes' if doc.chat.is_composing else 'no'}",
            ),
            (
                Decision.LIST_SUBSCRIPTIONS,
                "list" if self.use_list_subscriptions() else "per-user",
                "parameter 7 (list-subscription) is "
                + ("yes" if doc.presence.list_subscription else "no"),
            ),
        )


class PeerPolicy:
    """Peer capabilities from the document store, each decision logged once per peer.

    Pure and synchronous (no I/O): ``on_consult(domain)`` lets the owner schedule a fetch.
    """

    def __init__(
        self,
        store: PeerDocumentStore,
        *,
        on_consult: Callable[[str], None] | None = None,
    ) -> None:
        self._store = store
        self._on_consult = on_consult
        #: domain -> {decision: value} last logged.
        self._logged: OrderedDict[str, dict[Decision, str]] = OrderedDict()

    def for_peer(self, domain: str) -> PeerCapabilities:
        """The capabilities of the peer network ``domain`` (a document that is stale or
        expired is still used until a refresh replaces it)."""
        try:
            key = normalize_domain(domain)
        except ValueError:
            return PeerCapabilities(domain)  # an IP literal names no peer network
        if self._on_consult is not None:
            self._on_consult(key)
        record = self._store.get(key)
        caps = (
            PeerCapabilities(key, record.document, record.channel)
            if record is not None
            else PeerCapabilities(key)
        )
        self._log(caps)
        return caps

    def _log(self, caps: PeerCapabilities) -> None:
        logged = self._logged.get(caps.domain)
        if logged is None:
            logged = {}
            self._logged[caps.domain] = logged
            while len(self._logged) > _MAX_REMEMBERED_PEERS:
                self._logged.popitem(last=False)
        else:
            self._logged.move_to_end(caps.domain)
        for decision, value, reason in caps.decisions():
            if logged.get(decision) == value:
                continue
            logged[decision] = value
            log.info(
                "provisioning.decision",
                extra=kv(
                    peer=caps.domain,
                    decision=decision.value,
                    value=value,
                    reason=reason,
                    source=caps.source.value if caps.source is not None else "default",
                ),
            )


# --------------------------------------------------------------------------------------
# Using peers' parameters: the cache and its fetches
# --------------------------------------------------------------------------------------


class PeerProvisioningCache:
    """Peers' documents, fetched in the background and kept fresh (module docstring).

    :param settings: the ``[provisioning]`` settings.
    :param sip: the OPTIONS client (None: no SIP channel).
    :param resolver: returns the gateway's RFC 3263 resolver once it exists.
    :param edge: the XMPP edge (None: no XMPP channel).
    :param tls: TLS material for HTTPS (our certificate, peer CAs).
    :param our_domain: From domain of the OPTIONS queries.
    """

    def __init__(
        self,
        settings: ProvisioningSettings,
        *,
        sip: SipOptionsClient | None,
        resolver: Callable[[], SipResolver | None],
        edge: Any,
        tls: TlsSettings | None,
        our_domain: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.store = PeerDocumentStore()
        self.policy = PeerPolicy(self.store, on_consult=self.ensure)
        self._sip = sip
        self._resolver = resolver
        self._edge = edge
        self._tls = tls
        self._our_domain = our_domain
        self._clock = clock
        self._peers: dict[str, ProvisioningPeer] = {
            normalize_domain(p.domain): p for p in settings.peers
        }
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._retry_at: OrderedDict[str, float] = OrderedDict()
        self._caps: OrderedDict[str, tuple[str, CapsHint]] = OrderedDict()
        self._xmpp_jids: dict[str, str] = {}
        self._http: aiohttp.ClientSession | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._running = False
        #: Completed fetches per outcome (for tests and diagnostics).
        self.counters: dict[str, int] = {"fetched": 0, "not-modified": 0, "failed": 0}

    # -- life cycle -----------------------------------------------------------------------

    async def start(self) -> None:
        self._running = True
        self._http = aiohttp.ClientSession()
        if self._edge is not None:
            for domain, peer in self._peers.items():
                if peer.xmpp:
                    self._xmpp_jids[domain] = peer.xmpp
                    if self.settings.fetch != "off":
                        self._edge.caps.add_recipient(peer.xmpp)
        if self.settings.fetch != "off":
            for domain in self._peers:
                self.ensure(domain)
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def stop(self) -> None:
        self._running = False
        tasks = list(self._inflight.values())
        if self._sweeper is not None:
            tasks.append(self._sweeper)
            self._sweeper = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._inflight.clear()
        if self._http is not None:
            await self._http.close()
            self._http = None

    # -- what the runtime calls -----------------------------------------------------------

    def wanted(self, domain: str) -> bool:
        """Is ``domain``'s document fetched at all (``provisioning.fetch``)?"""
        mode = self.settings.fetch
        return mode == "all" or (mode == "configured" and domain in self._peers)

    def ensure(self, domain: str) -> None:
        """Schedule a fetch of ``domain`` if it is wanted and due (never blocks)."""
        if not self._running or not self.wanted(domain) or domain in self._inflight:
            return
        now = self._clock()
        record = self.store.get(domain)
        if record is not None and record.is_fresh(now):
            return
        retry = self._retry_at.get(domain)
        if retry is not None and now < retry:
            return
        if len(self._inflight) >= MAX_CONCURRENT_FETCHES:
            return  # the sweep comes back to it
        task = asyncio.get_running_loop().create_task(self._fetch(domain))
        self._inflight[domain] = task
        task.add_done_callback(functools.partial(self._fetch_done, domain))

    async def refresh(self, domain: str) -> None:
        """Fetch ``domain`` now (whatever its freshness) and wait for the outcome."""
        domain = normalize_domain(domain)
        running = self._inflight.get(domain)
        if running is not None:
            await asyncio.shield(running)
            return
        self._retry_at.pop(domain, None)
        self.store.invalidate(domain)
        task = asyncio.get_running_loop().create_task(self._fetch(domain))
        self._inflight[domain] = task
        task.add_done_callback(functools.partial(self._fetch_done, domain))
        await asyncio.shield(task)

    def _fetch_done(self, domain: str, _task: asyncio.Task[None]) -> None:
        self._inflight.pop(domain, None)

    def note_caps(self, jid: str, node: str, ver: str, hash_name: str) -> None:
        """A peer's caps presence arrived (``CapsAnnouncer.on_caps``)."""
        domain = self.domain_of_jid(jid)
        if domain is None or not self.wanted(domain):
            return
        self._caps[domain] = (jid.split("/", 1)[0], CapsHint(node, ver, hash_name))
        self._caps.move_to_end(domain)
        while len(self._caps) > _MAX_REMEMBERED_PEERS:
            self._caps.popitem(last=False)
        if self.store.note_caps(domain, ver):
            log.info("provisioning.peer.caps_changed", extra=kv(peer=domain, jid=jid, ver=ver))
            self._retry_at.pop(domain, None)
            self.ensure(domain)

    def domain_of_jid(self, jid: str) -> str | None:
        """The peer network a JID belongs to (configured XMPP address, a known document's
        DNS names, a parent domain of a configured peer, else its own domain)."""
        bare = jid.split("/", 1)[0]
        host = bare.rsplit("@", 1)[-1]
        try:
            host = normalize_domain(host)
        except ValueError:
            return None
        for domain, peer_jid in self._xmpp_jids.items():
            if peer_jid.lower() == bare.lower():
                return domain
        for domain in self._peers:
            if host == domain or host.endswith("." + domain):
                return domain
        for domain in self.store.domains():
            record = self.store.get(domain)
            if record is not None and host in record.document.connectivity.dns_names:
                return domain
        return host

    # -- internals ------------------------------------------------------------------------

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_CHECK_INTERVAL)
            now = self._clock()
            for domain in self.store.due_for_refresh(now):
                self.ensure(domain)
            for domain in self._peers:
                if domain not in self.store:
                    self.ensure(domain)

    async def _fetch(self, domain: str) -> None:
        peer = self._peers.get(domain)
        attempted = False
        for channel in self.settings.channels:
            try:
                result = await self._fetch_via(Channel(channel), domain, peer)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in one channel must not stop the others
                log.exception("provisioning.peer.fetch_failed", extra=kv(peer=domain))
                continue
            if result is None:
                continue  # channel not usable now (XMPP link down, resolver not built)
            attempted = True
            now = self._clock()
            if result.not_modified:
                self.store.not_modified(domain, now=now, max_age=result.max_age)
                self._retry_at.pop(domain, None)
                self.counters["not-modified"] += 1
                log.debug("provisioning.peer.not_modified", extra=kv(peer=domain))
                return
            if result.document is not None:
                max_age = (
                    result.max_age if result.max_age is not None else self.settings.default_ttl
                )
                _, changed = self.store.put(
                    domain,
                    result.document,
                    now=now,
                    channel=result.channel,
                    etag=result.etag,
                    caps_ver=result.caps_ver,
                    max_age=max_age,
                )
                self._retry_at.pop(domain, None)
                self.counters["fetched"] += 1
                log.info(
                    "provisioning.peer.fetched",
                    extra=kv(
                        peer=domain,
                        channel=result.channel.value,
                        source=result.source,
                        changed=changed,
                        etag=result.etag,
                        caps_ver=result.caps_ver,
                    ),
                )
                if changed:
                    self.policy.for_peer(domain)  # log the (new) decisions now
                return
            log.info(
                "provisioning.peer.channel_failed",
                extra=kv(
                    peer=domain,
                    channel=result.channel.value,
                    source=result.source,
                    reason=result.reason.value if result.reason else None,
                    error=result.error,
                ),
            )
        self.counters["failed"] += 1
        # Nothing could even be tried (e.g. only XMPP, link not up yet): the next sweep
        # tries again rather than waiting the full retry interval.
        delay = self.settings.retry_interval if attempted else REFRESH_CHECK_INTERVAL
        self._retry_at[domain] = self._clock() + min(delay, self.settings.retry_interval)
        self._retry_at.move_to_end(domain)
        while len(self._retry_at) > _MAX_REMEMBERED_PEERS:
            self._retry_at.popitem(last=False)
        log.log(
            logging.WARNING if attempted else logging.INFO,
            "provisioning.peer.unavailable",
            extra=kv(peer=domain, attempted=attempted),
        )

    async def _fetch_via(
        self, channel: Channel, domain: str, peer: ProvisioningPeer | None
    ) -> ChannelResult | None:
        timeout = self.settings.fetch_timeout
        if channel is Channel.HTTP:
            if self._http is None:
                return None
            return await query_http(
                self._http,
                domain,
                base_url=peer.http if peer is not None else None,
                ssl_context=http_ssl_context(self._tls),
                etag=self.store.etag(domain) if domain in self.store else None,
                timeout=timeout,
            )
        if channel is Channel.SIP:
            resolver = self._resolver()
            if self._sip is None or resolver is None:
                return None
            targets = await sip_targets(resolver, domain, peer)
            return await self._sip.query(
                domain, targets, from_domain=self._our_domain, timeout=timeout
            )
        edge = self._edge
        if edge is None or not edge.up:
            return None
        known = self._caps.get(domain)
        jid = (peer.xmpp if peer is not None else None) or self._xmpp_jids.get(domain)
        hint = known[1] if known is not None and (jid is None or known[0] == jid) else None
        if jid is None and known is not None:
            jid = known[0]
        result = await query_xmpp(
            EdgeDiscoChannel(edge), domain, jid=jid, timeout=timeout, caps=hint
        )
        if result.document is not None and result.source and domain not in self._xmpp_jids:
            # Learned the peer's provisioning JID: follow its caps presence from now on.
            self._xmpp_jids[domain] = result.source
            try:
                edge.caps.add_recipient(result.source)
            except ValueError:
                pass
        return result


# --------------------------------------------------------------------------------------
# The service the gateway runs
# --------------------------------------------------------------------------------------


def _tls_settings(settings: Settings) -> TlsSettings | None:
    t = settings.sip.tls
    if t.certificate is None and t.ca_file is None:
        return None
    return TlsSettings(
        certfile=str(t.certificate) if t.certificate else None,
        keyfile=str(t.private_key) if t.private_key else None,
        cafile=str(t.ca_file) if t.ca_file else None,
    )


class ProvisioningService:
    """Everything provisioning in the running gateway (see the module docstring).

    :param settings: the gateway settings.
    :param transport: the SIP transport edge (for requester identities).
    :param dispatcher: the SIP dispatcher (OPTIONS is routed to :attr:`options`).
    :param xmpp: the XMPP edge.
    :param ids: identifier generator for SIP tags.
    :param capabilities: the gateway's current OPTIONS capability set.
    :param resolver: returns the gateway's resolver (built when the gateway starts).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        transport: SipTransportManager,
        dispatcher: SipDispatcher,
        xmpp: Any,
        ids: IdGenerator,
        capabilities: Callable[[], Capabilities],
        resolver: Callable[[], SipResolver | None],
    ) -> None:
        self.settings = settings
        cfg = settings.provisioning
        try:
            policy = load_policy(cfg)
        except ProvisioningConfigError:
            raise
        except ProvisioningError as exc:  # the policy cannot be published (LocalProvisioningError)
            raise ProvisioningConfigError(f"{exc.reason.value}: {exc.message}") from None
        self.publisher: ProvisioningPublisher | None = (
            ProvisioningPublisher(policy) if policy is not None else None
        )
        if self.publisher is not None:
            self.publisher.add_listener(self._on_policy_change)
        self._transport = transport
        self._xmpp = xmpp
        self.options = OptionsService(
            send_response=lambda r: self._options_sender.send_response(r),
            capabilities=capabilities,
            publisher=lambda: self.publisher,
            requester_of=lambda source: sip_requester(source, transport),
            ids=ids,
        )
        self._options_sender = SipSender(transport, dispatcher, self.options)
        self.sip_client = SipOptionsClient(
            lambda request, target: self._query_sender.send_request(request, target),
            ids,
            user_agent=settings.sip.user_agent,
        )
        self._query_sender = SipSender(transport, dispatcher, self.sip_client)
        self.xmpp = XmppProvisioning(xmpp, lambda: self.publisher, cfg.caps_node)
        self.xmpp.install()
        self._tls = _tls_settings(settings)
        self.peers = PeerProvisioningCache(
            cfg,
            sip=self.sip_client,
            resolver=resolver,
            edge=xmpp,
            tls=self._tls,
            our_domain=our_domain(settings),
        )
        xmpp.caps.on_caps = self.peers.note_caps
        self.http: ProvisioningHttpServer | None = None
        self.https: ProvisioningHttpServer | None = None

    # -- life cycle -----------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.settings.provisioning
        if self.publisher is not None:
            if cfg.http_port is not None:
                self.http = ProvisioningHttpServer(
                    self.publisher, host=cfg.http_host, port=cfg.http_port, max_age=cfg.max_age
                )
                await self.http.start()
            if cfg.https_port is not None:
                tls = self.settings.sip.tls
                assert tls.certificate is not None  # checked by the settings
                context = server_ssl_context(
                    str(tls.certificate),
                    str(tls.private_key) if tls.private_key else None,
                    peer_cafile=str(tls.ca_file) if tls.ca_file else None,
                    require_client_certificate=cfg.https_require_client_certificate,
                )
                self.https = ProvisioningHttpServer(
                    self.publisher,
                    host=cfg.http_host,
                    port=cfg.https_port,
                    ssl_context=context,
                    max_age=cfg.max_age,
                )
                await self.https.start()
            log.info(
                "provisioning.serving",
                extra=kv(
                    domain=self.publisher.policy.public.domain,
                    views=len(self.publisher.policy.views),
                    http=self.http.base_url if self.http else None,
                    https=self.https.base_url if self.https else None,
                ),
            )
        await self.peers.start()

    async def stop(self) -> None:
        await self.peers.stop()
        for server in (self.https, self.http):
            if server is not None:
                await server.stop()

    # -- policy changes -------------------------------------------------------------------

    def update(self, policy: ProvisioningPolicy) -> bool:
        """Publish ``policy`` on every channel; False if nothing changed.

        Raises :class:`RuntimeError` when the gateway was started without a policy (the
        HTTP servers were not configured then).
        """
        if self.publisher is None:
            raise RuntimeError("no provisioning policy was configured at start")
        return self.publisher.update(policy)

    def reload(self) -> bool:
        """Re-read the policy files (SIGHUP); False if nothing changed. Errors are logged
        and leave the current policy in force."""
        try:
            policy = load_policy(self.settings.provisioning)
        except ProvisioningConfigError as exc:
            log.error("provisioning.reload_failed", extra=kv(error=str(exc)))
            return False
        if policy is None or self.publisher is None:
            log.warning("provisioning.reload_ignored", extra=kv(reason="no policy configured"))
            return False
        try:
            changed = self.update(policy)
        except ProvisioningError as exc:
            log.error("provisioning.reload_failed", extra=kv(error=exc.message))
            return False
        log.info("provisioning.reloaded", extra=kv(changed=changed))
        return changed

    def _on_policy_change(self, policy: ProvisioningPolicy) -> None:
        self.xmpp.invalidate()
        sent = self._xmpp.caps.broadcast() if self._xmpp.up else 0
        log.info(
            "provisioning.policy_changed",
            extra=kv(
                domain=policy.public.domain,
                generation=self.publisher.generation if self.publisher else None,
                caps_presence_sent=sent,
            ),
        )

    # -- what the pager path uses ---------------------------------------------------------

    def peer(self, domain: str) -> PeerCapabilities:
        """The decisions for the peer network ``domain`` (see :class:`PeerPolicy`)."""
        return self.peers.policy.for_peer(domain)

    async def route(
        self,
        target: grammar.SipUri,
        hops: list[TransportAddress],
        resolver: SipResolver,
        *,
        via_proxy: bool,
    ) -> list[TransportAddress]:
        """Filter next hops towards ``target`` by the peer's parameters (TLS-only, parameter 3).

        Through an outbound proxy the inter-domain hop is the proxy's: nothing is changed.
        A TLS-only peer with no TLS hop is resolved again for TLS; if that fails, the
        message is refused (:class:`ResolutionError`) rather than sent in the clear.
        """
        if via_proxy:
            return hops
        caps = self.peer(target.host)
        if not caps.tls_only:
            return hops
        tls = [h for h in hops if h.transport == "tls"]
        if tls:
            return tls
        try:
            again = await resolver.resolve(target.host, port=target.port, transport="tls")
        except ResolutionError as exc:
            raise ResolutionError(
                f"{caps.domain} accepts TLS only (provisioning parameter 3): {exc}"
            ) from None
        out = [
            dataclasses.replace(h, peer_identity=caps.domain) for h in again if h.transport == "tls"
        ]
        return out or self._refuse_clear(caps.domain)

    @staticmethod
    def _refuse_clear(domain: str) -> list[TransportAddress]:
        raise ResolutionError(f"{domain} accepts TLS only (provisioning parameter 3)")
