"""TLS contexts and SIP domain identities of peers (RFC 5922).

Theory of operation
-------------------
Both directions verify the peer's chain against the configured trust anchors with
OpenSSL. The *name* check is ours, not OpenSSL's: Python's ``check_hostname`` matches only
dNSName/iPAddress entries and accepts wildcards, while RFC 5922 wants

* §7.1: the identities of a certificate are the host parts of its subjectAltName URIs of
  scheme ``sip`` without a user part; only if there is no such URI, its dNSName entries;
  only if the certificate has no subjectAltName at all, its subject commonName;
* §7.2: identities are compared with the SIP domain exactly, case-insensitively, and
  wildcard names never match ("*.example.com" proves nothing about "a.example.com");
* §7.3 / RFC 3263: a client checks the server against the domain of the URI it targets
  (the *SIP domain*), not against the host name an SRV record pointed to.

So client contexts run with ``check_hostname = False`` and :func:`identity_matches` is
applied once the handshake is done; a mismatch closes the connection before any SIP byte
is written. When the destination is an IP literal with no domain attached, the iPAddress
entries of the certificate are what is compared (RFC 5280 §4.2.1.6).
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Mapping
from typing import Any

from .config import TlsSettings

__all__ = [
    "server_context",
    "client_context",
    "sip_identities",
    "ip_identities",
    "identity_matches",
    "normalise_identity",
]


def _base_context(purpose: ssl.Purpose, settings: TlsSettings) -> ssl.SSLContext:
    ctx = ssl.create_default_context(purpose, cafile=settings.cafile)
    # TLS 1.0 and 1.1 are deprecated (RFC 8996); SIP peers from the last decade speak 1.2+.
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.certfile is not None:
        ctx.load_cert_chain(settings.certfile, settings.keyfile)
    return ctx


def server_context(settings: TlsSettings) -> ssl.SSLContext:
    """Context for the TLS listener: our certificate, optional or mandatory client auth."""
    if settings.certfile is None:
        raise ValueError("a TLS listener needs a certificate")
    ctx = _base_context(ssl.Purpose.CLIENT_AUTH, settings)
    if settings.require_client_certificate:
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        # Verify a certificate if the client sends one, so its identity can be used.
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def client_context(settings: TlsSettings) -> ssl.SSLContext:
    """Context for outbound TLS: chain verified by OpenSSL, name checked per RFC 5922."""
    ctx = _base_context(ssl.Purpose.SERVER_AUTH, settings)
    ctx.check_hostname = False  # RFC 5922 §7 matching is done by identity_matches()
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def normalise_identity(name: str) -> str:
    """Lower-case a domain and drop one trailing dot (DNS names compare case-insensitively)."""
    return name.strip().lower().rstrip(".")


def _sip_uri_domain(uri: str) -> str | None:
    """Host part of a ``sip:domain`` URI without user part (RFC 5922 §7.1), else None."""
    scheme, sep, rest = uri.partition(":")
    if not sep or scheme.lower() != "sip":
        return None
    # Drop URI parameters and headers; a user part disqualifies the value.
    rest = rest.split(";", 1)[0].split("?", 1)[0]
    if "@" in rest or not rest:
        return None
    if rest.startswith("["):  # IPv6 reference
        host = rest[1:].split("]", 1)[0]
    else:
        host = rest.rsplit(":", 1)[0] if rest.count(":") == 1 else rest
    return normalise_identity(host) or None


def sip_identities(cert: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The SIP domain identities a verified certificate proves (RFC 5922 §7.1), in order.

    ``cert`` is the dict of :meth:`ssl.SSLSocket.getpeercert`; an empty or missing one
    (no certificate, or not verified) proves nothing.
    """
    if not cert:
        return ()
    sans: tuple[tuple[str, str], ...] = tuple(cert.get("subjectAltName", ()))
    if sans:
        uris = [d for kind, value in sans if kind == "URI" and (d := _sip_uri_domain(value))]
        if uris:
            return tuple(dict.fromkeys(uris))
        dns = [normalise_identity(value) for kind, value in sans if kind == "DNS"]
        return tuple(dict.fromkeys(d for d in dns if d))
    # No subjectAltName extension at all: the (most specific) commonName, RFC 5922 §7.1.
    cns: list[str] = []
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                cns.append(normalise_identity(value))
    return (cns[-1],) if cns and cns[-1] else ()


def ip_identities(cert: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The iPAddress subjectAltName entries, normalised (for IP-literal destinations)."""
    if not cert:
        return ()
    out: list[str] = []
    for kind, value in cert.get("subjectAltName", ()):
        if kind == "IP Address":
            try:
                out.append(str(ipaddress.ip_address(value.strip())))
            except ValueError:
                continue
    return tuple(out)


def identity_matches(expected: str, cert: Mapping[str, Any] | None) -> bool:
    """Does the verified certificate prove ``expected`` (a SIP domain or an IP literal)?

    Exact, case-insensitive comparison; wildcards never match (RFC 5922 §7.2).
    """
    want = normalise_identity(expected.strip("[]"))
    try:
        ip = ipaddress.ip_address(want)
    except ValueError:
        return want in sip_identities(cert)
    return str(ip) in ip_identities(cert)
