"""Per-peer views and Peer Network Privacy: which requester sees which document.

Theory of operation
-------------------
The draft (§5) expects a network to "send different replies according to the Peer
Network that is asking", authenticated by mutual TLS (SIP OPTIONS, HTTP) or, on the
XMPP side, by the requesting domain (disco answers depend on ``from``, §3.9 of our
interworking reference). Three inputs decide the answer:

1. the requester's identity (:class:`Requester`): the SIP domain identities of a verified
   TLS client certificate (RFC 5922 §7.1), or the domain of an XMPP ``from`` JID that the
   XMPP server has authenticated; ``None`` when the requester is unidentified;
2. the operator's :class:`ProvisioningPolicy`: a public document, optional per-peer
   views, and the clearing houses it belongs to;
3. parameter 16 (Peer Network Privacy) of the *public* document, which decides who may
   see the network at all. An unidentified requester passes only when the network is
   visible to all.

:func:`resolve_view` then picks the requester's view (or the public document) and, unless
the requester is a clearing house, trims ``visible-to`` down to the requester's own
domain(s): a peer learns that it may see the network, not which other networks may
(draft §7 (c): do not leak policy to third parties). A clearing house, whose job is to
enforce parameter 16 (draft §2.5), gets the full list.

The policy is validated when loaded, so an operator mistake (a view for a peer that
parameter 16 hides the network from, a peer in two views) fails at start-up rather than
at the first request.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import Field, StrictBool
from pydantic import model_validator as _model_validator

from .constants import MAX_LIST_ITEMS
from .model import (
    ClearingHouse,
    DomainName,
    PeerNetworkPrivacy,
    ProvisioningDocument,
    Token,
    Visibility,
    _Model,
    normalize_domain,
)

__all__ = [
    "IdentitySource",
    "Requester",
    "requester_from_peercert",
    "requester_from_jid",
    "PeerView",
    "ProvisioningPolicy",
    "Visible",
    "Refused",
    "ViewDecision",
    "PUBLIC_VIEW",
    "resolve_view",
    "MAX_VIEWS",
]

#: Name of the view served to requesters without a dedicated one.
PUBLIC_VIEW = "public"
#: Most per-peer views in one policy (each is a full document held in memory).
MAX_VIEWS = 256
#: Most identities taken from one certificate (a certificate may list many SANs; a peer
#: network needs a handful).
_MAX_CERT_IDENTITIES = 32


class IdentitySource(enum.StrEnum):
    """How the requester was identified."""

    TLS_CERTIFICATE = "tls-certificate"
    XMPP_DOMAIN = "xmpp-domain"


@dataclass(frozen=True, slots=True)
class Requester:
    """An authenticated requesting peer network."""

    #: Its domain identities, normalised (lower case, no trailing dot), at least one.
    domains: tuple[str, ...]
    #: Where the identities come from.
    source: IdentitySource

    def __post_init__(self) -> None:
        if not self.domains:
            raise ValueError("a requester needs at least one domain")
        normalized = tuple(dict.fromkeys(normalize_domain(d) for d in self.domains))
        object.__setattr__(self, "domains", normalized)


def _domain_or_none(value: str) -> str | None:
    if "*" in value:
        return None  # a wildcard is not a SIP domain identity (RFC 5922 §7.2)
    try:
        return normalize_domain(value)
    except ValueError:
        return None


def _sip_uri_host(uri: str) -> str | None:
    # RFC 5922 §7.1: a SAN URI "sip:example.com" (no user part) names the SIP domain.
    scheme, sep, rest = uri.partition(":")
    if not sep or scheme.lower() != "sip" or "@" in rest:
        return None
    host = rest.split(";", 1)[0].split("?", 1)[0]
    if host.startswith("["):
        return None
    host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return _domain_or_none(host)


def requester_from_peercert(cert: Mapping[str, Any] | None) -> Requester | None:
    """The requester named by a *verified* peer certificate (``SSLObject.getpeercert()``).

    Identities are the hosts of ``sip:`` URI subjectAltNames and the DNS subjectAltNames
    (RFC 5922 §7.1); only when the certificate has no subjectAltName at all is the
    subject's commonName used. Wildcard names are ignored. Returns None for no
    certificate (the caller must only pass certificates the TLS layer verified).
    """
    if not cert:
        return None
    domains: list[str] = []
    sans = cert.get("subjectAltName") or ()
    for entry in sans:
        if len(domains) >= _MAX_CERT_IDENTITIES:
            break
        if not isinstance(entry, tuple) or len(entry) != 2:
            continue
        kind, value = entry
        if not isinstance(value, str):
            continue
        if kind == "URI":
            host = _sip_uri_host(value)
        elif kind == "DNS":
            host = _domain_or_none(value)
        else:
            continue
        if host is not None:
            domains.append(host)
    if not sans:
        for rdn in cert.get("subject") or ():
            for attr in rdn:
                if isinstance(attr, tuple) and len(attr) == 2 and attr[0] == "commonName":
                    host = _domain_or_none(str(attr[1]))
                    if host is not None:
                        domains.append(host)
    if not domains:
        return None
    return Requester(tuple(domains), IdentitySource.TLS_CERTIFICATE)


def requester_from_jid(jid: str | None) -> Requester | None:
    """The requester named by the domainpart of an XMPP ``from`` address (RFC 7622 §3.2)."""
    if not jid:
        return None
    bare = jid.split("/", 1)[0]
    domain = _domain_or_none(bare.rsplit("@", 1)[-1])
    if domain is None:
        return None
    return Requester((domain,), IdentitySource.XMPP_DOMAIN)


class PeerView(_Model):
    """A document shown to specific peer networks instead of the public one."""

    name: Token = Field(description="Label of the view in logs and metrics.")
    peers: tuple[DomainName, ...] = Field(
        min_length=1,
        max_length=MAX_LIST_ITEMS,
        description="Peer networks (certificate or JID domains) that get this view.",
    )
    document: ProvisioningDocument = Field(description="The document these peers see.")


class ProvisioningPolicy(_Model):
    """What the gateway publishes about its own network, per requester (gateway config)."""

    public: ProvisioningDocument = Field(
        description="Document for unidentified requesters and peers without a view; its "
        "parameter 16 decides who may see the network at all."
    )
    views: tuple[PeerView, ...] = Field(default=(), max_length=MAX_VIEWS)
    clearing_houses: tuple[DomainName, ...] = Field(
        default=(),
        max_length=MAX_LIST_ITEMS,
        description="Clearing houses (draft §2.5) this network belongs to; they see the "
        "full visible-to list.",
    )
    redact_visible_to: StrictBool = Field(
        default=True,
        description="Show other peers only their own entry of visible-to (draft §7 (c)).",
    )

    @_model_validator(mode="after")
    def _check(self) -> ProvisioningPolicy:
        privacy = self.public.clearing_house.peer_network_privacy
        names: set[str] = {PUBLIC_VIEW}
        owner: dict[str, str] = {}
        for view in self.views:
            if view.name in names:
                raise ValueError(f"view name {view.name!r} is used twice or reserved")
            names.add(view.name)
            if view.document.domain != self.public.domain:
                raise ValueError(
                    f"view {view.name!r} describes {view.document.domain}, not {self.public.domain}"
                )
            for peer in view.peers:
                if peer in owner:
                    raise ValueError(f"peer {peer} is in views {owner[peer]!r} and {view.name!r}")
                owner[peer] = view.name
                if not privacy.allows((peer,)):
                    raise ValueError(
                        f"view {view.name!r} names {peer}, but parameter 16 of the public "
                        "document hides the network from it"
                    )
        for house in self.clearing_houses:
            if not privacy.allows((house,)):
                raise ValueError(f"clearing house {house} is not allowed by parameter 16")
        return self

    def view_for(self, domains: Iterable[str]) -> PeerView | None:
        """The view of the first of ``domains`` that has one."""
        wanted = tuple(domains)
        for domain in wanted:
            for view in self.views:
                if domain in view.peers:
                    return view
        return None

    @property
    def varies_by_requester(self) -> bool:
        """True if two requesters can get different answers (shared caches must not keep them)."""
        restricted = any(
            d.clearing_house.peer_network_privacy.visibility is Visibility.RESTRICTED
            for d in (self.public, *(v.document for v in self.views))
        )
        return bool(self.views) or restricted


@dataclass(frozen=True, slots=True)
class Visible:
    """The requester may see ``document``."""

    document: ProvisioningDocument
    #: ``"public"`` or the name of the peer's view.
    view: str
    #: Requester domains kept in ``visible-to`` (empty when nothing was trimmed).
    redacted_for: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Refused:
    """Parameter 16 hides the network from the requester."""

    reason: str
    #: 403 over HTTP and SIP; ``forbidden`` over XMPP (XEP-0030 §7 also allows hiding).
    status_hint: int = 403


ViewDecision = Visible | Refused


def resolve_view(policy: ProvisioningPolicy, requester: Requester | None) -> ViewDecision:
    """Decide what ``requester`` (None = unidentified) is shown."""
    domains = requester.domains if requester is not None else ()
    privacy = policy.public.clearing_house.peer_network_privacy
    if not privacy.allows(domains):
        who = "an unidentified requester" if requester is None else ", ".join(domains)
        return Refused(f"peer network privacy does not let {who} see {policy.public.domain}")
    view = policy.view_for(domains)
    document = view.document if view is not None else policy.public
    name = view.name if view is not None else PUBLIC_VIEW
    shown = document.clearing_house.peer_network_privacy
    is_clearing_house = any(d in policy.clearing_houses for d in domains)
    if (
        policy.redact_visible_to
        and shown.visibility is Visibility.RESTRICTED
        and not is_clearing_house
    ):
        kept = tuple(d for d in shown.visible_to if d in domains)
        if kept != shown.visible_to:
            trimmed = ClearingHouse(
                peer_network_privacy=PeerNetworkPrivacy(
                    visibility=Visibility.RESTRICTED, visible_to=kept
                )
            )
            document = document.model_copy(update={"clearing_house": trimmed})
            return Visible(document, name, kept)
    return Visible(document, name)
