"""The gateway's settings: one typed, immutable object, loaded at the edge.

Settings come from a TOML file; every key can be overridden from the environment as
``SIPXMPP_<SECTION>_<KEY>`` (upper case, e.g. ``SIPXMPP_XMPP_SECRET``,
``SIPXMPP_SIP_UDP_PORT``). An environment value is read as JSON when it parses as JSON
(numbers, booleans, lists, tables) and as a plain string otherwise. Unknown keys are refused,
so a typo in a config file is an error, not a silently ignored setting.

The cores never see this module: the runtime turns these settings into the plain frozen
dataclasses the cores and edges take (design.md practice 15).
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "Settings",
    "SipSettings",
    "SipTlsSettings",
    "XmppSettings",
    "DomainSettings",
    "SipDomain",
    "XmppDomain",
    "ImSettings",
    "ChatSettings",
    "PresenceSettings",
    "DEFAULT_PRESENCE_STORE_URL",
    "ProvisioningSettings",
    "ProvisioningPeer",
    "ProvisioningView",
    "ProvisioningQuerySettings",
    "LogSettings",
    "SettingsError",
    "load_settings",
    "ENV_PREFIX",
]

ENV_PREFIX = "SIPXMPP"


class SettingsError(Exception):
    """The configuration cannot be used; the message says which key and why."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SipTlsSettings(_Frozen):
    """SIP over TLS (RFC 3261 §26.2, RFC 5922 certificate identities)."""

    port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="TLS listen port; unset disables the TLS listener (0 = any free port).",
    )
    certificate: Path | None = Field(
        None, description="PEM certificate chain the gateway presents."
    )
    private_key: Path | None = Field(None, description="PEM private key of that certificate.")
    ca_file: Path | None = Field(
        None,
        description="PEM bundle of the CAs that sign peers' certificates (client and server side).",
    )
    require_client_certificate: bool = Field(
        True,
        description="Mutual TLS: refuse TLS clients that present no certificate signed by ca_file.",
    )
    trusted_peers: tuple[str, ...] = Field(
        (),
        description="Certificate identities (SAN dNSName or sip: URI host) of peers trusted to assert identity "
        "(RFC 3325). Empty: trust no peer's P-Asserted-Identity.",
    )

    @model_validator(mode="after")
    def _complete(self) -> SipTlsSettings:
        if self.port is not None and (self.certificate is None or self.private_key is None):
            raise ValueError(
                "sip.tls.port is set, so sip.tls.certificate and sip.tls.private_key are required"
            )
        return self


class SipSettings(_Frozen):
    """The SIP side: listeners, next hop and RFC 3261 timers."""

    listen_host: str = Field("127.0.0.1", description="Address the SIP listeners bind to.")
    udp_port: int | None = Field(
        5070, ge=0, le=65535, description="UDP listen port; unset disables UDP."
    )
    tcp_port: int | None = Field(
        5070, ge=0, le=65535, description="TCP listen port; unset disables TCP."
    )
    tls: SipTlsSettings = Field(default_factory=SipTlsSettings, description="SIP over TLS.")
    public_host: str | None = Field(
        None, description="Host put in our Via and Contact headers; defaults to listen_host."
    )
    outbound_proxy: str | None = Field(
        None,
        description="SIP URI of the SIP partition's proxy (e.g. 'sip:127.0.0.1:5060;transport=udp'). When set, "
        "every request to the SIP side goes there; otherwise the next hop is resolved per RFC 3263.",
    )
    static_routes: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description="RFC 3263 override: SIP domain -> list of 'transport:host:port' targets, tried in order.",
    )
    dns_servers: tuple[str, ...] = Field(
        (),
        description="DNS servers for RFC 3263 lookups ('ip' or 'ip:port'); empty = the system's.",
    )
    user_agent: str = Field("sipxmpp/0.1", description="Value of the User-Agent / Server header.")
    t1: float = Field(0.5, gt=0, description="RFC 3261 T1 (RTT estimate), seconds.")
    t2: float = Field(
        4.0, gt=0, description="RFC 3261 T2 (max non-INVITE retransmit interval), seconds."
    )
    t4: float = Field(
        5.0, gt=0, description="RFC 3261 T4 (max time a message stays in the network), seconds."
    )
    retry_after: int = Field(
        30, ge=1, description="Retry-After seconds sent with 503 while the XMPP link is down."
    )

    @field_validator("static_routes")
    @classmethod
    def _routes(cls, v: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for domain, targets in v.items():
            for t in targets:
                parts = t.rsplit(":", 2)
                if (
                    len(parts) != 3
                    or parts[0] not in ("udp", "tcp", "tls")
                    or not parts[2].isdigit()
                ):
                    raise ValueError(f"static route {domain!r}: {t!r} is not 'transport:host:port'")
        return v


class XmppSettings(_Frozen):
    """The XMPP side: the XEP-0114 component connection."""

    component_jid: str = Field(..., description="The component's domain, e.g. 'sip.example.com'.")
    secret: str = Field(
        ..., description="XEP-0114 shared secret, as configured on the XMPP server."
    )
    server_host: str = Field("127.0.0.1", description="XMPP server's component listener host.")
    server_port: int = Field(
        5347, ge=1, le=65535, description="XMPP server's component listener port."
    )
    reconnect_min: float = Field(
        1.0, gt=0, description="First reconnect delay, seconds (doubles up to max)."
    )
    reconnect_max: float = Field(60.0, gt=0, description="Longest reconnect delay, seconds.")
    keepalive_interval: float = Field(
        60.0, gt=0, description="Seconds with nothing received before an XEP-0199 ping."
    )
    keepalive_timeout: float = Field(
        10.0, gt=0, description="Seconds after a ping with nothing received before reconnecting."
    )


class SipDomain(_Frozen):
    """A SIP domain whose users are reachable from XMPP."""

    sip: str = Field(..., description="The SIP domain, e.g. 'example.com'.")
    xmpp: str | None = Field(
        None, description="XMPP domain its users appear under; defaults to the component JID."
    )


class XmppDomain(_Frozen):
    """An XMPP domain whose users are reachable from SIP."""

    xmpp: str = Field(..., description="The XMPP domain, e.g. 'example.com'.")
    sip: str | None = Field(
        None, description="SIP domain its users appear under; defaults to the same name."
    )


class DomainSettings(_Frozen):
    """Address mapping between the partitions (RFC 7247 §6 maps local parts only)."""

    sip: tuple[SipDomain, ...] = Field((), description="SIP domains served on the XMPP side.")
    xmpp: tuple[XmppDomain, ...] = Field((), description="XMPP domains served on the SIP side.")


class ImSettings(_Frozen):
    """Pager-mode IM (RFC 7572)."""

    sip_success_status: Literal[200, 202] = Field(
        202,
        description="Status sent to a SIP MESSAGE once the stanza is handed to the XMPP server: 202 says "
        "'accepted, not yet delivered' (RFC 3428 §7 for a gateway into a non-SIP domain).",
    )
    pager_max_bytes: int = Field(
        1300,
        ge=200,
        description="Largest SIP MESSAGE the gateway sends (RFC 3428 §8, RFC 7572 §6); larger XMPP messages "
        "are refused with <policy-violation/>.",
    )
    error_report_window: float = Field(
        120.0,
        gt=0,
        description="Seconds during which an XMPP error for a relayed SIP MESSAGE is still reported to the SIP sender.",
    )


class ChatSettings(_Frozen):
    """Session-mode IM: MSRP chat sessions (RFC 4975) <-> XMPP ``type='chat'`` (RFC 7573)."""

    enabled: bool = Field(
        False,
        description="Carry XMPP chats to SIP users as MSRP sessions (INVITE + MSRP) and accept incoming "
        "MSRP chat INVITEs for XMPP users. Off: chats go in pager mode (SIP MESSAGE).",
    )
    listen_host: str = Field("127.0.0.1", description="Address the MSRP listeners bind to.")
    tcp_port: int | None = Field(
        0, ge=0, le=65535, description="MSRP over TCP (msrp:) listener port; 0 = any free port."
    )
    tls_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="MSRP over TLS (msrps:) listener port, with the [sip.tls] certificate; unset = no TLS listener.",
    )
    public_host: str | None = Field(
        None,
        description="Host written in our a=path URIs if not the bound address (RFC 6135 §4.2.2).",
    )
    max_message_size: int = Field(
        128 * 1024,
        ge=1024,
        description="Largest MSRP message accepted, advertised as a=max-size; larger ones get 413 "
        "(RFC 7573 §8: no larger than the XMPP stanza limit).",
    )
    xmpp_stanza_limit: int = Field(
        256 * 1024,
        ge=10_000,
        description="The XMPP server's stanza size limit (Prosody's default is 256 KiB); max_message_size "
        "must not exceed it (RFC 7573 §8; RFC 6120 §13.12 guarantees at least 10,000 bytes).",
    )
    inactivity_timeout: float = Field(
        600.0,
        gt=0,
        description="Seconds without messages or chat states after which a session is ended with a BYE "
        "(XMPP chats never end; XEP-0085 §5.1 suggests about ten minutes).",
    )
    max_sessions: int = Field(1000, ge=1, description="Chat sessions at once (whole gateway).")
    max_sessions_per_peer: int = Field(
        64,
        ge=1,
        description="MSRP sessions towards one peer host (RFC 4975 §5.4 connection sharing).",
    )
    max_queued_messages: int = Field(
        64,
        ge=1,
        description="XMPP messages held per session while it is being set up; beyond it they are refused "
        "with <resource-constraint/>.",
    )
    failure_report: Literal["no", "partial"] = Field(
        "no",
        description="Failure-Report of the SENDs the gateway makes: 'no' per RFC 7573 §7; 'partial' asks the "
        "peer for negative responses, which come back to the XMPP sender as stanza errors.",
    )
    wrap_cpim: bool = Field(
        True,
        description="Offer message/cpim (RFC 3862) in a=accept-types and use it towards peers that accept "
        "only wrapped text.",
    )
    setup_timeout: float = Field(
        40.0,
        gt=0,
        description="Seconds an XMPP-initiated session may take to be answered and bound before its queued "
        "messages are returned as errors.",
    )

    @model_validator(mode="after")
    def _size_fits_xmpp(self) -> ChatSettings:
        if self.max_message_size > self.xmpp_stanza_limit:
            raise ValueError(
                "chat.max_message_size must not exceed chat.xmpp_stanza_limit (RFC 7573 §8)"
            )
        return self


#: Where presence state lives unless ``presence.store_url`` says otherwise: the usual place of
#: a daemon's state on a Linux host (FHS ``/var/lib``). The directory is created on start.
DEFAULT_PRESENCE_STORE_URL = "sqlite:///var/lib/sipxmpp/state.db"


class PresenceSettings(_Frozen):
    """Presence federation (RFC 8048: SUBSCRIBE/NOTIFY + PIDF <-> XMPP presence)."""

    enabled: bool = Field(
        True,
        description="Serve presence: SUBSCRIBE/NOTIFY on the SIP side, presence stanzas on the XMPP side. "
        "Off: SUBSCRIBE/NOTIFY get 405 and presence stanzas are ignored.",
    )
    store_url: str = Field(
        DEFAULT_PRESENCE_STORE_URL,
        description="Where subscriptions, dialogs and authorizations survive restarts: 'sqlite:///abs/path.db', "
        "'sqlite://:memory:' (no persistence) or 'postgresql://user@host/db'.",
    )
    subscribe_expires: int = Field(
        3600,
        ge=60,
        le=86_400,
        description="Expires the gateway asks for when it subscribes on SIP for an XMPP user (RFC 8048 §5.2.1, "
        "RFC 3856 §6.4).",
    )
    min_expires: int = Field(
        60,
        ge=1,
        le=3600,
        description="Shortest subscription a SIP watcher may ask for; shorter ones get 423 with Min-Expires "
        "(RFC 6665 §4.2.1.1).",
    )
    max_expires: int = Field(
        3600,
        ge=60,
        le=86_400,
        description="Longest subscription granted to a SIP watcher; longer requests are shortened (RFC 6665 §4.2.1.1).",
    )
    refresh_margin: float = Field(
        0.1,
        gt=0,
        lt=0.5,
        description="The gateway refreshes its own SIP subscriptions this fraction of the granted time before "
        "they expire (at least 5 s early).",
    )
    min_notify_interval: float = Field(
        5.0,
        ge=0,
        description="Seconds between two state-change NOTIFYs to one watcher of one presentity; changes in "
        "between are merged, not dropped (RFC 3856 §6.10).",
    )
    max_subscriptions: int = Field(
        200_000,
        ge=1,
        description="Subscriptions the gateway holds in all; beyond it SUBSCRIBE gets 503.",
    )
    max_subscriptions_per_user: int = Field(
        1000,
        ge=1,
        description="Subscriptions one XMPP user may hold to SIP contacts, and SIP watchers one XMPP user may "
        "have; beyond it: 503 with Retry-After on SIP, <resource-constraint/> on XMPP.",
    )
    max_subscriptions_per_peer: int = Field(
        100_000,
        ge=1,
        description="Subscriptions between the gateway and one SIP domain, both directions together; beyond "
        "it: 503 with Retry-After on SIP, <resource-constraint/> on XMPP.",
    )
    retry_after: int = Field(
        300,
        ge=1,
        description="Seconds before the gateway re-subscribes after the SIP side ended or refused a "
        "subscription without saying when to retry; also the Retry-After of its 503s.",
    )
    rich_presence: bool = Field(
        True,
        description="Carry XMPP <show/> as RPID activities and back (away/xa <-> away, dnd <-> busy, "
        "meeting, on-the-phone...), beyond RFC 8048's basic open/closed.",
    )
    closed_dnd_is_dnd: bool = Field(
        False,
        description="Read a closed PIDF tuple whose person is busy/in a meeting/on the phone as XMPP "
        "<show>dnd</show> instead of unavailable (for presence servers that close every tuple on DND; "
        "deviates from RFC 8048 §6.3).",
    )
    store_flush_interval: float = Field(
        1.0,
        gt=0,
        le=60,
        description="Seconds between batched writes of changed subscriptions to the store (NOTIFY CSeq "
        "counters, last states); also bounds what a crash can lose.",
    )
    restore_spread: float = Field(
        10.0,
        ge=0,
        description="After a restart, the gateway's own SIP subscriptions are refreshed spread over this "
        "many seconds, so a large gateway does not send them all at once.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> PresenceSettings:
        if self.min_expires > self.max_expires:
            raise ValueError("presence.min_expires must not exceed presence.max_expires")
        if not self.store_url.startswith(("sqlite://", "postgresql://", "postgres://")):
            raise ValueError("presence.store_url must be a sqlite:// or postgresql:// URL")
        return self


def _peer_domain(value: str) -> str:
    """A peer network's domain, normalised (the provisioning format's DNS-name rules)."""
    from sipxmpp.provisioning.model import normalize_domain

    return normalize_domain(value)


class ProvisioningView(_Frozen):
    """A per-peer view: a document shown to some peer networks instead of the public one."""

    name: str = Field(..., description="Label of the view in logs.")
    peers: tuple[str, ...] = Field(
        ...,
        min_length=1,
        description="Peer networks that get this view: SIP domain identities of their TLS client "
        "certificates (RFC 5922 §7.1) or XMPP domains of the requesting JIDs.",
    )
    document: Path = Field(
        ..., description="The document (XML or JSON provisioning format) these peers see."
    )

    @field_validator("peers")
    @classmethod
    def _domains(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_peer_domain(d) for d in v)


class ProvisioningPeer(_Frozen):
    """A peer network whose provisioning document the gateway fetches, with static overrides."""

    domain: str = Field(..., description="The peer network's domain, e.g. 'partner.example'.")
    sip: tuple[str, ...] = Field(
        (),
        description="Static targets for the SIP OPTIONS query, 'transport:host:port' tried in order "
        "(default: RFC 3263 NAPTR/SRV resolution of the domain).",
    )
    http: str | None = Field(
        None,
        description="Base URL of the peer's provisioning HTTP server, e.g. 'https://192.0.2.7:8443' "
        "(default: https://<domain>). The certificate is still checked against the domain.",
    )
    xmpp: str | None = Field(
        None,
        description="XMPP address answering the peer's disco#info, e.g. its gateway's component JID "
        "(default: found through disco#items of the domain).",
    )

    @field_validator("domain")
    @classmethod
    def _domain(cls, v: str) -> str:
        return _peer_domain(v)

    @field_validator("sip")
    @classmethod
    def _targets(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for t in v:
            parts = t.rsplit(":", 2)
            if len(parts) != 3 or parts[0] not in ("udp", "tcp", "tls") or not parts[2].isdigit():
                raise ValueError(f"{t!r} is not 'transport:host:port'")
        return v

    @field_validator("xmpp")
    @classmethod
    def _jid(cls, v: str | None) -> str | None:
        # RFC 7622 §3.1: three parts of at most 1023 octets each; no whitespace anywhere.
        if v is not None and (not v or len(v) > 3071 or any(c.isspace() for c in v)):
            raise ValueError(f"{v!r} is not a JID")
        return v

    @field_validator("http")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("https://", "http://")):
            raise ValueError(f"{v!r} is not an http:// or https:// URL")
        return v


class ProvisioningQuerySettings(_Frozen):
    """The XMPP account ``sipxmpp query-peer`` logs in with for the XMPP channel."""

    xmpp_jid: str | None = Field(
        None,
        description="A client account (bare JID) on an XMPP server that can reach the peer; unset: the "
        "XMPP channel of query-peer is not available.",
    )
    xmpp_password: str | None = Field(None, description="Its password.")
    xmpp_server: str | None = Field(
        None,
        description="'host:port' of its server's client port (default: DNS SRV of the JID's domain).",
    )
    xmpp_encryption: Literal["starttls", "direct-tls", "none"] = Field(
        "starttls",
        description="How the client connection is protected; 'none' is for loopback tests only.",
    )

    @model_validator(mode="after")
    def _account(self) -> ProvisioningQuerySettings:
        if (self.xmpp_jid is None) != (self.xmpp_password is None):
            raise ValueError("provisioning.query.xmpp_jid and xmpp_password go together")
        return self


class ProvisioningSettings(_Frozen):
    """Capability provisioning (draft-houri-speermint-presence-im-provision): what the gateway
    publishes about its network, and what it learns about its peers'."""

    policy: Path | None = Field(
        None,
        description="JSON policy file: the public document, per-peer views, clearing houses "
        "(examples/provisioning/policy.json). Exclusive with 'document'.",
    )
    document: Path | None = Field(
        None,
        description="The public provisioning document, XML or JSON (examples/provisioning/full.xml); "
        "per-peer views then come from [[provisioning.views]].",
    )
    views: tuple[ProvisioningView, ...] = Field((), description="Per-peer views (with 'document').")
    clearing_houses: tuple[str, ...] = Field(
        (), description="Clearing houses the network belongs to (with 'document')."
    )
    redact_visible_to: bool = Field(
        True, description="Show peers only their own entry of visible-to (with 'document')."
    )
    http_host: str = Field(
        "127.0.0.1", description="Address the provisioning HTTP(S) servers bind to."
    )
    http_port: int | None = Field(
        None, ge=0, le=65535, description="Plain HTTP port; unset disables it (0 = any free port)."
    )
    https_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="HTTPS port (certificate, key and peer CAs of [sip.tls]); unset disables it.",
    )
    https_require_client_certificate: bool = Field(
        False,
        description="Refuse HTTPS clients without a certificate signed by sip.tls.ca_file (default: they "
        "get the public view).",
    )
    max_age: int = Field(
        300, ge=0, le=86_400, description="Cache-Control max-age of HTTP answers, seconds."
    )
    caps_node: str = Field(
        "urn:sipxmpp:caps",
        description="XEP-0115 node (a URI naming the software) in the component's caps presence.",
    )
    fetch: Literal["off", "configured", "all"] = Field(
        "configured",
        description="Whose documents the gateway fetches: nobody's, the [[provisioning.peers]] only, or "
        "every SIP domain it sends to.",
    )
    channels: tuple[Literal["http", "sip", "xmpp"], ...] = Field(
        ("http", "sip", "xmpp"),
        min_length=1,
        description="Channels tried in this order when fetching a peer's document; the first valid "
        "answer wins.",
    )
    fetch_timeout: float = Field(
        10.0, gt=0, le=120, description="Seconds one channel may take to answer."
    )
    default_ttl: float = Field(
        3600.0,
        ge=60,
        le=86_400,
        description="How long a fetched document is used before it is fetched again, when its source "
        "gives no max-age.",
    )
    retry_interval: float = Field(
        300.0,
        ge=1,
        description="Seconds before a peer whose document could not be fetched is asked again.",
    )
    peers: tuple[ProvisioningPeer, ...] = Field((), description="Known peer networks.")
    query: ProvisioningQuerySettings = Field(
        default_factory=ProvisioningQuerySettings, description="sipxmpp query-peer."
    )

    @model_validator(mode="after")
    def _consistent(self) -> ProvisioningSettings:
        if self.policy is not None and (
            self.document is not None or self.views or self.clearing_houses
        ):
            raise ValueError(
                "provisioning.policy holds views and clearing houses itself; do not combine it with "
                "document, views or clearing_houses"
            )
        if self.views and self.document is None:
            raise ValueError("provisioning.views need provisioning.document")
        if (self.http_port is not None or self.https_port is not None) and (
            self.policy is None and self.document is None
        ):
            raise ValueError(
                "provisioning.http_port/https_port need a policy or a document to serve"
            )
        domains = [p.domain.lower().rstrip(".") for p in self.peers]
        if len(set(domains)) != len(domains):
            raise ValueError("a domain appears twice in provisioning.peers")
        return self


class LogSettings(_Frozen):
    """Structured logs on standard error."""

    level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Lowest level logged."
    )
    format: Literal["json", "text"] = Field(
        "json", description="One JSON object per line, or plain text."
    )


class Settings(_Frozen):
    """Everything the gateway needs to run."""

    sip: SipSettings = Field(default_factory=SipSettings, description="SIP side.")
    xmpp: XmppSettings = Field(..., description="XMPP side.")
    domains: DomainSettings = Field(default_factory=DomainSettings, description="Domain mapping.")
    im: ImSettings = Field(default_factory=ImSettings, description="Pager-mode IM.")
    chat: ChatSettings = Field(
        default_factory=ChatSettings, description="Session-mode IM (MSRP chat sessions)."
    )
    presence: PresenceSettings = Field(
        default_factory=PresenceSettings, description="Presence federation."
    )
    provisioning: ProvisioningSettings = Field(
        default_factory=ProvisioningSettings, description="Capability provisioning."
    )
    log: LogSettings = Field(default_factory=LogSettings, description="Logging.")

    @model_validator(mode="after")
    def _some_listener(self) -> Settings:
        s = self.sip
        if s.udp_port is None and s.tcp_port is None and s.tls.port is None:
            raise ValueError("at least one of sip.udp_port, sip.tcp_port, sip.tls.port must be set")
        if self.provisioning.https_port is not None and (
            s.tls.certificate is None or s.tls.private_key is None
        ):
            raise ValueError(
                "provisioning.https_port is set, so sip.tls.certificate and sip.tls.private_key are required"
            )
        return self


def _env_overrides(model: type[BaseModel], env: Mapping[str, str], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        key = f"{prefix}_{name.upper()}"
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            sub = _env_overrides(ann, env, key)
            if sub:
                out[name] = sub
            continue
        if key in env:
            raw = env[key]
            try:
                out[name] = json.loads(raw)
            except ValueError:
                out[name] = raw
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(merged.get(k), dict):
            merged[k] = _merge(merged[k], v)
        else:
            merged[k] = v
    return merged


def load_settings(path: str | Path | None, env: Mapping[str, str] | None = None) -> Settings:
    """Load settings from a TOML file (or none) plus ``SIPXMPP_*`` environment overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except OSError as e:
            raise SettingsError(f"{p}: cannot read: {e.strerror}") from e
        except tomllib.TOMLDecodeError as e:
            raise SettingsError(f"{p}: not valid TOML: {e}") from e
        base = p.parent
        # Relative certificate paths are relative to the config file, not the working directory.
        tls = data.get("sip", {}).get("tls", {})
        for key in ("certificate", "private_key", "ca_file"):
            if isinstance(tls.get(key), str) and not Path(tls[key]).is_absolute():
                tls[key] = str(base / tls[key])
        # The same for the provisioning documents.
        prov = data.get("provisioning", {})
        for table in (prov, *(v for v in prov.get("views", ()) if isinstance(v, dict))):
            for key in ("policy", "document"):
                if isinstance(table.get(key), str) and not Path(table[key]).is_absolute():
                    table[key] = str(base / table[key])
    data = _merge(data, _env_overrides(Settings, os.environ if env is None else env, ENV_PREFIX))
    try:
        return Settings.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
            lines.append(f"{loc}: {err['msg']}")
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(lines)) from e
