"""``msrp:`` and ``msrps:`` URIs (RFC 4975 §6, ABNF in §9) and their comparison rules (§6.1).

ABNF (RFC 4975 §9, authority from RFC 3986 §3.2)::

    MSRP-URI      = msrp-scheme "://" authority ["/" session-id] ";" transport *( ";" URI-parameter )
    msrp-scheme   = "msrp" / "msrps"
    session-id    = 1*( unreserved / "+" / "=" / "/" )
    transport     = "tcp" / 1*ALPHANUM
    URI-parameter = token ["=" token]

The dataclass keeps every part as written, so ``parse_uri(str(u)) == u``. Dataclass equality
is therefore *textual*; protocol equivalence is :meth:`MsrpUri.equivalent` (§6.1):

1. schemes match, case-insensitively;
2. in the authority, userinfo is ignored, percent-encoded unreserved characters are decoded,
   IP addresses compare as addresses and host names case-insensitively;
3. an explicit port must match exactly, and a URI with a port never equals one without;
4. session-ids compare case-sensitively, and a URI without one never equals one with one;
5. transports compare case-insensitively and must match.

§6.1 has no rule for other URI parameters, so they take no part in comparison ([ours]).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass

from .errors import LocalMsrpError, RemoteMsrpError

__all__ = [
    "MsrpUri",
    "parse_uri",
    "parse_path",
    "DEFAULT_PORT",
    "MAX_URI_LENGTH",
    "PATH_CACHE_SIZE",
    "PATH_CACHE_MAX_CHARS",
]

#: The IANA-registered MSRP port (TCP and TLS alike). Only used by callers that need a number;
#: comparison never substitutes it for an absent port (§6.1 rule 3).
DEFAULT_PORT = 2855

#: Longest URI we accept. Real MSRP URIs are well under 200 octets; 1 KiB leaves room for
#: relay URIs with parameters while keeping one header line bounded.
MAX_URI_LENGTH = 1024

#: Most URIs in one To-Path/From-Path. An endpoint-to-endpoint session has one; each relay
#: (RFC 4976) adds one. Sixteen is far beyond any deployed relay chain.
MAX_PATH_URIS = 16

#: Distinct path values and hosts whose parsed form is remembered. Every request of a
#: session repeats the same To-Path and From-Path (RFC 4975 §7.1), so parsing them once per
#: session instead of once per message takes URI parsing and IP address normalisation off
#: the per-message path. 4096 entries cover the gateway's default session limits (1000
#: sessions, two paths each); a peer sending ever new paths only evicts older entries (LRU).
PATH_CACHE_SIZE = 4096

#: Longest path value (and host) that is remembered: an endpoint's path is one URI of about
#: 60 octets, a relayed one a few; longer values are parsed every time, so the caches hold
#: at most PATH_CACHE_SIZE * 512 characters (2 MiB) whatever a peer sends.
PATH_CACHE_MAX_CHARS = 512

_UNRESERVED = r"A-Za-z0-9\-._~"
_SUB_DELIMS = r"!$&'()*+,;="
_PCT = r"%[0-9A-Fa-f]{2}"
_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"

_USERINFO_RE = re.compile(rf"(?:[{_UNRESERVED}{_SUB_DELIMS}:]|{_PCT})*")
_REGNAME_RE = re.compile(rf"(?:[{_UNRESERVED}!$&'()*+,=]|{_PCT})+")
_IPV6_LITERAL_RE = re.compile(r"\[[0-9A-Fa-f:.]+\]")
_SESSION_ID_RE = re.compile(rf"[{_UNRESERVED}+=/]+")
_TRANSPORT_RE = re.compile(r"[A-Za-z0-9]+")
_TOKEN_RE = re.compile(_TOKEN)
_PORT_RE = re.compile(r"[0-9]{1,5}")


def _pct_decode_unreserved(text: str) -> str:
    """Decode %XX escapes of unreserved characters (RFC 3986 §6.2.2.2), for comparison only."""

    def repl(m: re.Match[str]) -> str:
        ch = chr(int(m.group(0)[1:], 16))
        return ch if re.fullmatch(rf"[{_UNRESERVED}]", ch) else m.group(0).upper()

    return re.sub(_PCT, repl, text)


def _host_key(host: str) -> str:
    if len(host) > PATH_CACHE_MAX_CHARS:
        return _normalise_host(host)
    return _cached_host_key(host)


def _normalise_host(host: str) -> str:
    if host.startswith("["):
        try:
            return "[" + ipaddress.IPv6Address(host[1:-1]).compressed + "]"
        except ValueError:
            return host.lower()
    decoded = _pct_decode_unreserved(host).lower()
    try:
        return str(ipaddress.IPv4Address(decoded))
    except ValueError:
        return decoded


_cached_host_key = functools.lru_cache(maxsize=PATH_CACHE_SIZE)(_normalise_host)


@dataclass(frozen=True, slots=True)
class MsrpUri:
    """An ``msrp:``/``msrps:`` URI, parts kept as written (RFC 4975 §6)."""

    host: str
    """reg-name, IPv4 address or bracketed IPv6 literal."""
    port: int | None = None
    """Explicit port, or None when absent (SDP a=path URIs always carry one, §8.1)."""
    session_id: str | None = None
    """The path part after ``/``; identifies the session at the endpoint (§6)."""
    transport: str = "tcp"
    """The mandatory transport parameter (§6: ``tcp`` is the only one defined)."""
    secure: bool = False
    """True for ``msrps:`` (TLS, §6)."""
    userinfo: str | None = None
    """Optional userinfo; never used for comparison (§6.1)."""
    params: tuple[tuple[str, str | None], ...] = ()
    """Further ``;name[=value]`` parameters, in order; ignored by comparison (§6.1)."""

    def __post_init__(self) -> None:
        host = self.host
        if not host:
            raise LocalMsrpError("MSRP URI host is empty")
        if not (_IPV6_LITERAL_RE.fullmatch(host) or _REGNAME_RE.fullmatch(host)):
            raise LocalMsrpError(f"invalid MSRP URI host {host!r}")
        if self.port is not None and not 0 <= self.port <= 65535:
            raise LocalMsrpError(f"MSRP URI port out of range: {self.port}")
        if self.session_id is not None and not _SESSION_ID_RE.fullmatch(self.session_id):
            raise LocalMsrpError(f"invalid MSRP session-id {self.session_id!r}")
        if not _TRANSPORT_RE.fullmatch(self.transport):
            raise LocalMsrpError(f"invalid MSRP transport {self.transport!r}")
        if self.userinfo is not None and not _USERINFO_RE.fullmatch(self.userinfo):
            raise LocalMsrpError(f"invalid MSRP URI userinfo {self.userinfo!r}")
        for name, value in self.params:
            if not _TOKEN_RE.fullmatch(name) or (
                value is not None and not _TOKEN_RE.fullmatch(value)
            ):
                raise LocalMsrpError(f"invalid MSRP URI parameter {name!r}={value!r}")
        if len(str(self)) > MAX_URI_LENGTH:
            raise LocalMsrpError("MSRP URI too long")

    @property
    def scheme(self) -> str:
        """``msrps`` for TLS, else ``msrp``."""
        return "msrps" if self.secure else "msrp"

    def __str__(self) -> str:
        parts = [self.scheme, "://"]
        if self.userinfo is not None:
            parts += [self.userinfo, "@"]
        parts.append(self.host)
        if self.port is not None:
            parts += [":", str(self.port)]
        if self.session_id is not None:
            parts += ["/", self.session_id]
        parts += [";", self.transport]
        for name, value in self.params:
            parts += [";", name] if value is None else [";", name, "=", value]
        return "".join(parts)

    def comparison_key(self) -> tuple[bool, str, int | None, str | None, str]:
        """The parts §6.1 compares, normalised; equal keys mean equivalent URIs."""
        return (
            self.secure,
            _host_key(self.host),
            self.port,
            self.session_id,
            self.transport.lower(),
        )

    def equivalent(self, other: MsrpUri) -> bool:
        """RFC 4975 §6.1 URI comparison."""
        # Textually equal URIs (the common case: a peer repeats the URI it was given) are
        # equivalent without normalising anything.
        if self is other or self == other:
            return True
        return self.comparison_key() == other.comparison_key()


_URI_RE = re.compile(
    r"(?P<scheme>[A-Za-z]+)://"
    r"(?:(?P<userinfo>[^@/;\[\]]*)@)?"
    r"(?P<host>\[[^\]]*\]|[^:/;@]+)"
    r"(?::(?P<port>[0-9]*))?"
    r"(?:/(?P<sid>[^;]*))?"
    r";(?P<rest>.*)",
    re.DOTALL,
)


def parse_uri(text: str) -> MsrpUri:
    """Parse one MSRP URI; raises :class:`RemoteMsrpError` (400) if it does not match §9."""
    if len(text) > MAX_URI_LENGTH:
        raise RemoteMsrpError("MSRP URI too long", 400)
    m = _URI_RE.fullmatch(text)
    if m is None:
        raise RemoteMsrpError(f"malformed MSRP URI {text!r}", 400)
    scheme = m.group("scheme").lower()
    if scheme not in ("msrp", "msrps"):
        raise RemoteMsrpError(f"not an msrp/msrps URI: {text!r}", 400)
    port_text = m.group("port")
    if port_text is not None and not _PORT_RE.fullmatch(port_text):
        raise RemoteMsrpError(f"malformed port in MSRP URI {text!r}", 400)
    rest = m.group("rest").split(";")
    transport, raw_params = rest[0], rest[1:]
    params: list[tuple[str, str | None]] = []
    for raw in raw_params:
        name, eq, value = raw.partition("=")
        params.append((name, value if eq else None))
    try:
        return MsrpUri(
            host=m.group("host"),
            port=int(port_text) if port_text is not None else None,
            session_id=m.group("sid"),
            transport=transport,
            secure=scheme == "msrps",
            userinfo=m.group("userinfo"),
            params=tuple(params),
        )
    except LocalMsrpError as exc:
        raise RemoteMsrpError(f"malformed MSRP URI {text!r}: {exc.msg}", 400) from None


def parse_path(value: str) -> tuple[MsrpUri, ...]:
    """Parse a To-Path/From-Path value (§9: URIs separated by single spaces).

    Results are shared (the URIs are immutable) and remembered for the next request
    repeating the same value (see :data:`PATH_CACHE_SIZE`); errors are not remembered.
    """
    if len(value) > PATH_CACHE_MAX_CHARS:
        if len(value) > MAX_PATH_URIS * (MAX_URI_LENGTH + 1):
            raise RemoteMsrpError("MSRP path too long", 400)
        return _parse_path(value)
    return _cached_parse_path(value)


def _parse_path(value: str) -> tuple[MsrpUri, ...]:
    items = value.split(" ")
    if not value or any(not item for item in items):
        raise RemoteMsrpError(f"malformed MSRP path {value!r}", 400)
    if len(items) > MAX_PATH_URIS:
        raise RemoteMsrpError("too many URIs in MSRP path", 400)
    return tuple(parse_uri(item) for item in items)


_cached_parse_path = functools.lru_cache(maxsize=PATH_CACHE_SIZE)(_parse_path)
