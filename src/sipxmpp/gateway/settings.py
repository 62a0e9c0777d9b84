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
    keepalive_interval: float = Field(60.0, gt=0, description="XEP-0199 ping interval, seconds.")
    keepalive_timeout: float = Field(
        10.0, gt=0, description="XEP-0199 ping timeout before reconnecting."
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
    log: LogSettings = Field(default_factory=LogSettings, description="Logging.")

    @model_validator(mode="after")
    def _some_listener(self) -> Settings:
        s = self.sip
        if s.udp_port is None and s.tcp_port is None and s.tls.port is None:
            raise ValueError("at least one of sip.udp_port, sip.tcp_port, sip.tls.port must be set")
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
    data = _merge(data, _env_overrides(Settings, os.environ if env is None else env, ENV_PREFIX))
    try:
        return Settings.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
            lines.append(f"{loc}: {err['msg']}")
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(lines)) from e
