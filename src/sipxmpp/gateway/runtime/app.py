"""Composition root: builds the SIP core, the edges and the bridge from the settings.

Start order: the SIP transport binds its sockets first (the core needs the bound ports for
its Via headers), then the XMPP component starts connecting (in the background, with
backoff: SIP requests for the XMPP side get 503 until the link is up). Stop order is the
reverse, so nothing is handed to an edge that is already gone.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import TracebackType

from sipxmpp import native
from sipxmpp.gateway.runtime.bridge import NextHopError, PagerBridge
from sipxmpp.gateway.runtime.chat import ChatService
from sipxmpp.gateway.runtime.dispatch import SipDispatcher, SipSender
from sipxmpp.gateway.runtime.gcpolicy import GcPolicy
from sipxmpp.gateway.runtime.logs import kv
from sipxmpp.gateway.runtime.presence import PresenceService, build_layer, open_presence_store
from sipxmpp.gateway.runtime.provisioning import ProvisioningService
from sipxmpp.gateway.runtime.xmpp_routing import XmppRouter
from sipxmpp.gateway.settings import Settings
from sipxmpp.gateway.sip import grammar
from sipxmpp.gateway.sip.address import TransportAddress
from sipxmpp.gateway.sip.core import EndpointConfig, SipEndpoint
from sipxmpp.gateway.sip.ids import IdGenerator, RandomIds
from sipxmpp.gateway.sip.message import Request
from sipxmpp.gateway.sip.timers import Timers
from sipxmpp.gateway.store import Store
from sipxmpp.gateway.transport.config import ListenAddress, TlsSettings, TransportConfig
from sipxmpp.gateway.transport.manager import SipTransportManager
from sipxmpp.gateway.transport.resolver import (
    AiodnsClient,
    ResolutionError,
    SipResolver,
    StaticRoute,
)
from sipxmpp.gateway.xmpp.component import XmppEdge, XmppEdgeConfig
from sipxmpp.mapping.addresses import DomainMap

__all__ = ["Gateway", "domain_map_from"]

log = logging.getLogger("sipxmpp.gateway")


def domain_map_from(settings: Settings) -> DomainMap:
    """The address-mapping tables of ``mapping`` from the ``[domains]`` settings."""
    component = settings.xmpp.component_jid
    return DomainMap(
        sip_domains={d.sip: (d.xmpp or component) for d in settings.domains.sip},
        xmpp_domains={d.xmpp: (d.sip or d.xmpp) for d in settings.domains.xmpp},
    )


def _transport_config(settings: Settings) -> TransportConfig:
    s = settings.sip
    tls: TlsSettings | None = None
    if s.tls.port is not None or s.tls.ca_file is not None or s.tls.certificate is not None:
        tls = TlsSettings(
            certfile=str(s.tls.certificate) if s.tls.certificate else None,
            keyfile=str(s.tls.private_key) if s.tls.private_key else None,
            cafile=str(s.tls.ca_file) if s.tls.ca_file else None,
            require_client_certificate=s.tls.require_client_certificate,
            allowed_peer_identities=frozenset(s.tls.trusted_peers),
        )
    return TransportConfig(
        udp=ListenAddress(s.listen_host, s.udp_port) if s.udp_port is not None else None,
        tcp=ListenAddress(s.listen_host, s.tcp_port) if s.tcp_port is not None else None,
        tls_listen=ListenAddress(s.listen_host, s.tls.port) if s.tls.port is not None else None,
        tls=tls,
    )


def _static_routes(settings: Settings) -> dict[str, list[StaticRoute]]:
    out: dict[str, list[StaticRoute]] = {}
    for domain, targets in settings.sip.static_routes.items():
        for t in targets:
            transport, host, port = t.rsplit(":", 2)
            out.setdefault(domain, []).append(StaticRoute(transport, host, int(port)))  # type: ignore[arg-type]
    return out


class Gateway:
    """The running gateway. ``async with Gateway(settings) as gw: ...``"""

    def __init__(self, settings: Settings, *, ids: IdGenerator | None = None) -> None:
        self.settings = settings
        self.ids: IdGenerator = ids if ids is not None else RandomIds()
        self.domains = domain_map_from(settings)
        self.endpoint: SipEndpoint | None = None
        self.transport = SipTransportManager(
            _transport_config(settings), self._make_core, on_activity=self._drain_sip
        )
        self._transports = [
            t
            for t, on in (
                ("udp", settings.sip.udp_port is not None),
                ("tcp", settings.sip.tcp_port is not None),
                ("tls", settings.sip.tls.port is not None or settings.sip.tls.ca_file is not None),
            )
            if on
        ]
        self._gc = GcPolicy()
        #: Built in :meth:`start`: aiodns needs the running event loop.
        self.resolver: SipResolver | None = None
        self._dns: AiodnsClient | None = None
        x = settings.xmpp
        #: Presence federation (RFC 8048); its store is opened in :meth:`start`.
        self.presence: PresenceService | None = None
        self.presence_store: Store | None = None
        if settings.presence.enabled:
            self.presence = PresenceService(
                settings=settings,
                domains=self.domains,
                xmpp=_LateXmpp(self),
                resolve=self._next_hop,
                transmit=self.transport.transmit,
            )
        self.bridge = PagerBridge(
            settings=settings,
            sip=_LateSip(self),
            xmpp=_LateXmpp(self),
            resolve=self._next_hop,
            domains=self.domains,
            ids=self.ids,
        )
        #: Session-mode IM (RFC 7573, MSRP); its listeners open in :meth:`start`.
        self.chat: ChatService | None = None
        if settings.chat.enabled:
            self.chat = ChatService(
                settings=settings,
                domains=self.domains,
                xmpp=_LateXmpp(self),
                pager=self.bridge,
                resolve=self._next_hop,
                ids=self.ids,
                peer_policy=lambda domain: self.provisioning.peer(domain),
            )
        self.xmpp = XmppEdge(
            XmppEdgeConfig(
                component_jid=x.component_jid,
                secret=x.secret,
                host=x.server_host,
                port=x.server_port,
                reconnect_min=x.reconnect_min,
                reconnect_max=x.reconnect_max,
                keepalive_interval=x.keepalive_interval,
                keepalive_timeout=x.keepalive_timeout,
            ),
            XmppRouter(self.bridge, self.presence, self.chat),
        )
        # Pager-mode IM (RFC 7572) and the gateway's own OPTIONS answer (RFC 3261 §11).
        self.sip_dispatch = SipDispatcher(default=self.bridge)
        self.pager_sip = SipSender(self.transport, self.sip_dispatch, self.bridge)
        if self.presence is not None:
            # The layer's own requests come back through build_layer's OwnedEndpoint.
            self.sip_dispatch.route_method("SUBSCRIBE", self.presence)
            self.sip_dispatch.route_method("NOTIFY", self.presence)
        if self.chat is not None:
            # The INVITE layer's own requests come back through its OwnedEndpoint.
            for method in ("INVITE", "ACK", "CANCEL", "BYE"):
                self.sip_dispatch.route_method(method, self.chat)
        # Capability provisioning: OPTIONS (with the document when asked), HTTP(S), disco
        # and caps, and the peers' parameters the pager path acts on.
        self.provisioning = ProvisioningService(
            settings,
            transport=self.transport,
            dispatcher=self.sip_dispatch,
            xmpp=self.xmpp,
            ids=self.ids,
            capabilities=lambda: self.bridge.capabilities,
            resolver=lambda: self.resolver,
        )
        self.sip_dispatch.route_method("OPTIONS", self.provisioning.options)

    def _make_core(self, bound: Mapping[str, tuple[str, int]]) -> SipEndpoint:
        s = self.settings.sip
        local = {t: (s.public_host or host, port) for t, (host, port) in bound.items()}
        self.endpoint = SipEndpoint(
            EndpointConfig(
                timers=Timers(t1=s.t1, t2=s.t2, t4=s.t4),
                local=local,
                user_agent=s.user_agent,
            ),
            self.ids,
        )
        return self.endpoint

    def _drain_sip(self) -> None:
        endpoint = self.endpoint
        if endpoint is None:
            return
        handle = self.sip_dispatch.handle
        # The stanzas these events become are written when they are all handled, before the
        # transport sends what the core queued meanwhile: a MESSAGE's 2xx (RFC 3428 §7: 202
        # from a gateway) then leaves once its stanza is handed to the XMPP server's
        # connection, as the README says, and the stanza does not wait behind the answers
        # (nor the SIP peer they wake).
        xmpp = self.xmpp
        xmpp.hold_writes()
        try:
            while (event := endpoint.next_event()) is not None:
                handle(event)
        finally:
            xmpp.flush()

    async def _next_hop(self, uri: str) -> TransportAddress:
        target = self.settings.sip.outbound_proxy or uri
        assert self.resolver is not None, "the gateway is not started"
        try:
            parsed = grammar.parse_sip_uri(target)
            hops = await self.resolver.resolve_uri(parsed)
            # A TLS-only peer (provisioning parameter 3) is reached over TLS only.
            hops = await self.provisioning.route(
                parsed, hops, self.resolver, via_proxy=target != uri
            )
        except (ResolutionError, ValueError) as e:
            raise NextHopError(f"no next hop for {target}: {e}") from None
        except Exception as e:  # a malformed URI from the mapping is a refusal, not a crash
            raise NextHopError(f"no next hop for {target}: {e}") from None
        return hops[0]

    @property
    def sip_addresses(self) -> Mapping[str, tuple[str, int]]:
        return self.transport.local_addresses

    async def start(self) -> None:
        self._dns = AiodnsClient.create(list(self.settings.sip.dns_servers) or None)
        self.resolver = SipResolver(
            self._dns,
            static=_static_routes(self.settings),
            transports=self._transports,  # type: ignore[arg-type]
        )
        await self.transport.start()
        log.info("gateway.native", extra=kv(status=native.status(), modules=len(native.loaded())))
        log.info(
            "gateway.sip.listening",
            extra=kv(**{t: f"{h}:{p}" for t, (h, p) in self.transport.local_addresses.items()}),
        )
        if self.presence is not None:
            assert self.endpoint is not None
            self.presence_store = await open_presence_store(self.settings.presence.store_url)
            await self.presence.start(
                build_layer(
                    self.endpoint, self.sip_dispatch, self.presence, self.settings, self.ids
                ),
                self.presence_store,
            )
        if self.chat is not None:
            assert self.endpoint is not None
            await self.chat.start(self.endpoint, self.sip_dispatch, self.transport.transmit)
        await self.xmpp.start()
        try:
            await self.provisioning.start()
        except BaseException:  # e.g. an HTTP port in use: release what is already running
            await self.stop()
            raise
        self._gc.start()
        log.info("gateway.started", extra=kv(component=self.settings.xmpp.component_jid))

    async def stop(self) -> None:
        self._gc.stop()
        await self.provisioning.stop()
        await self.xmpp.stop()
        if self.chat is not None:
            await self.chat.stop()
        if self.presence is not None:
            await self.presence.stop()
        if self.presence_store is not None:
            await self.presence_store.close()
            self.presence_store = None
        await self.transport.stop()
        if self._dns is not None:
            await self._dns.close()
        log.info("gateway.stopped")

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


class _LateSip:
    """Lets the pager bridge reach its :class:`SipSender`, which needs the bridge to exist."""

    def __init__(self, gateway: Gateway) -> None:
        self._gw = gateway

    def send_request(self, request: Request, destination: TransportAddress) -> str:
        return self._gw.pager_sip.send_request(request, destination)

    def send_response(self, response: object) -> None:
        self._gw.pager_sip.send_response(response)


class _LateXmpp:
    """Lets the bridge reach the XMPP edge, which is built after it (it needs the bridge)."""

    def __init__(self, gateway: Gateway) -> None:
        self._gw = gateway

    @property
    def up(self) -> bool:
        return self._gw.xmpp.up

    def send_message(self, msg: object) -> None:
        self._gw.xmpp.send_message(msg)  # type: ignore[arg-type]

    def send_presence(self, presence: object, *, error: object = None) -> None:
        self._gw.xmpp.send_presence(presence, error=error)  # type: ignore[arg-type]
