"""Address mapping between SIP/SIPS/IM/PRES URIs and XMPP JIDs (RFC 7247 §6).

Theory of operation
===================

Two layers live here.

1. **The RFC 7247 algorithms**, pure and domain-preserving:

   * :func:`sip_uri_to_jid` is §6.4: drop the scheme, split at the first ``@``,
     percent-decode the user part, read it as UTF-8, apply XEP-0106 escaping (the
     generic rule of §6.2: every character the XMPP localpart reserves becomes ``\\hh``;
     §6.4 step 5 names ``&``, ``'`` and ``/``, the only ones a *valid* SIP user part can
     carry unescaped, while ``" : < > @`` and space can only arrive percent-encoded and
     are escaped too), rebuild a bare JID, and turn a ``gr`` URI parameter *with a value*
     into the resourcepart (§6.3, §6.4 step 8).
   * :func:`jid_to_sip_uri` is §6.5: split the JID, undo XEP-0106 escaping, percent-encode
     what the target scheme does not allow (Table 1; for ``sip``/``sips`` the bytes
     ``# % [ \\ ] ^ ` { | }`` and every non-ASCII byte, for ``im``/``pres`` the bytes
     ``( ) , . ; [ \\ ]`` and every non-ASCII byte, plus in both cases the characters
     that only exist in a JID after unescaping: space ``" : < > @``), and carry the
     resourcepart as ``;gr=`` (§6.5 step 8; its text says ``/`` but its own example uses
     ``;gr=``, which is the real GRUU form of RFC 5627, so we follow the example).
     A literal ``%`` is always encoded as ``%25`` (RFC 3986 §2.4), also for im/pres.

   Both directions are inverse to each other for every localpart the gateway itself
   produces. A JID whose localpart holds a *non-canonical* escape (``\\5c`` in front of
   something that is not an escape code, which XEP-0106 §3.2 never generates) comes
   back in canonical form after a SIP round trip.

   The domain part is never translated (§6.1: out of scope); it passes through as is.
   Optional Nodeprep/PRECIS (§6.4 step 6, §6.5 step 2) is not applied: the XMPP server
   enforces its own profile, and case-mapping here would make ``sip:Alice@`` and
   ``sip:alice@`` collide on the way back. Confusable characters (RFC 7247 §8) are
   carried unchanged; policy about them belongs to the servers on either side.

2. **The gateway's domain rules**, :class:`DomainMap`, built by the runtime from plain
   configuration:

   * ``sip_domains``: SIP domain -> XMPP domain under which its users appear on the XMPP
     side (normally the component domain: ``example.com`` -> ``sip.example.com``; XEP-0114
     §3 requires every stanza a component sends to come from its own domain).
   * ``xmpp_domains``: XMPP domain -> SIP domain under which its users appear on the SIP
     side (``example.com`` -> ``example.com``).

   With those two tables, ``sip:alice@example.com`` (a SIP user) writing to
   ``sip:bob@example.com`` (the SIP name of an XMPP user) reaches ``bob@example.com`` on
   the XMPP server from ``alice@sip.example.com``; bob's reply to
   ``alice@sip.example.com`` goes back to ``sip:alice@example.com`` from
   ``sip:bob@example.com;gr=<resource>``.

GRUUs (RFC 5627)
================

A ``gr`` parameter *with a value* marks a public GRUU (AOR + ``;gr=<instance-id>``,
RFC 5627 §3.1): its value maps to the XMPP resourcepart. A ``gr`` parameter *without a
value* marks a temporary GRUU (RFC 5627 §3.2: an opaque user part minted by the
registrar, plus a bare ``;gr``): its user part names no account, so it cannot be mapped
(RFC 7247 §6.3, spec §4 point 8). As a request target it yields 404; as a sender 403.

Refusals
========

SIP-side problems raise :class:`~sipxmpp.mapping.model.MappingRefused` with the status
the runtime answers with; XMPP-side problems raise
:class:`~sipxmpp.mapping.model.StanzaRefused` carrying the stanza error. Every function
here is total: any string input either maps or raises one of those two.

* ``sips:`` in the Request-URI or To (RFC 7247 §8: MUST NOT be translated into XMPP,
  because XMPP cannot promise TLS on every hop): **480 Temporarily Unavailable** with
  ``Warning: 380 "SIPS Not Allowed"``. RFC 5630 §5.3 prescribes exactly this answer when
  a SIPS request cannot be delivered over secured hops to the target; 403 would claim a
  policy about the *sender*, and 416 would falsely claim the scheme is not understood.
* Request-URI domain not served as the SIP name of an XMPP domain: **404** (RFC 3261
  §21.4.5: "the domain in the Request-URI does not match any of the domains handled by
  the recipient of the request").
* From domain not one of our SIP domains: **403** (no open relay: RFC 8048 §8.1 asks a
  gateway to refuse users whose domain is unrelated to it).
* Unknown URI scheme: **416** (RFC 3261 §8.2.2.1). ``tel:`` is understood but names no
  domain, so it cannot reach an XMPP user: 404 as a target, 403 as a sender.
* XMPP target domain that is none of our component domains: ``remote-server-not-found``
  (RFC 6120 §8.3.3.13: the remote service named by the domainpart does not exist *for
  this gateway*); ``item-not-found`` would wrongly suggest the domain is served but the
  user is missing.
* XMPP sender from a domain the gateway does not serve: ``not-allowed`` (RFC 6120
  §8.3.3.10: the gateway allows no entity of that domain to send through it; ``forbidden``
  is type ``auth``, which would invite a retry with credentials that cannot help).
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from .model import LocalMappingError, MappingRefused, StanzaError, StanzaRefused

__all__ = [
    "JID_PART_MAX_BYTES",
    "MAX_URI_CHARS",
    "URI_SCHEMES",
    "Jid",
    "SipUri",
    "DomainMap",
    "parse_uri",
    "xep0106_escape",
    "xep0106_unescape",
    "sip_uri_to_jid",
    "jid_to_sip_uri",
    "jid_to_xmpp_uri",
    "xmpp_uri_to_jid",
    "is_public_gruu",
    "is_temporary_gruu",
    "refuse_sips",
    "header_uri",
    "parse_uri_or_header",
]

#: RFC 7622 §3.2-§3.4: each of localpart, domainpart and resourcepart is at most 1023
#: bytes once encoded as UTF-8.
JID_PART_MAX_BYTES: Final = 1023

#: Longest URI string the mapping looks at. A URI that maps to a valid JID holds at most
#: three parts of 1023 bytes, each byte percent-encoded as three characters (~9,200
#: characters) plus scheme and a few parameters; anything longer cannot name a JID, so
#: it is refused with 414 (RFC 3261 §21.4.12) before any parsing work is done.
MAX_URI_CHARS: Final = 10_240

#: Address mappings a :class:`DomainMap` remembers (SIP URI -> JID and JID -> SIP URI,
#: successes only). Mapping one address costs tens of microseconds (URI parsing, UTF-8 and
#: XEP-0106 escaping, the RFC 7622 checks of every part), and pager-mode traffic names the
#: same few thousand users over and over, so this is the largest single saving on the
#: gateway's per-message path. The oldest entry is dropped first; with
#: :data:`MAX_MEMO_KEY_CHARS` the table stays under ~10 MB however hostile the input.
MAX_MEMO_ENTRIES: Final = 4096

#: Longest input (all string arguments together) whose mapping is remembered; longer,
#: rarer addresses are mapped every time, so memory stays bounded.
MAX_MEMO_KEY_CHARS: Final = 512

#: The URI schemes the parser understands (RFC 3261 §19.1, RFC 3860, RFC 3859, RFC 3966).
URI_SCHEMES: Final = frozenset({"sip", "sips", "im", "pres", "tel"})

_ALNUM: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
# RFC 3261 §25.1: unreserved = alphanum / mark; mark = - _ . ! ~ * ' ( )
_SIP_UNRESERVED: Final = _ALNUM | frozenset("-_.!~*'()")
# RFC 3261 §25.1: user = 1*( unreserved / escaped / user-unreserved );
# user-unreserved = & = + $ , ; ? /  (RFC 7247 Table 1, sip/sips "allowed" column).
_SIP_USER_SAFE: Final = _SIP_UNRESERVED | frozenset("&=+$,;?/")
# RFC 3261 §25.1: password = *( unreserved / escaped / & = + $ , )
_SIP_PASSWORD_SAFE: Final = _SIP_UNRESERVED | frozenset("&=+$,")
# RFC 3261 §25.1: paramchar = param-unreserved / unreserved / escaped;
# param-unreserved = [ ] / : & + $
_SIP_PARAM_SAFE: Final = _SIP_UNRESERVED | frozenset("[]/:&+$")
# RFC 3261 §25.1: hnv-unreserved = [ ] / ? : + $ (header names and values)
_SIP_HEADER_SAFE: Final = _SIP_UNRESERVED | frozenset("[]/?:+$")
# RFC 7247 Table 1, im/pres "allowed" column (RFC 5322 atext). §6.5 step 5 also encodes
# "." for im/pres, and "%" must always be encoded (RFC 3986 §2.4).
_IM_USER_SAFE: Final = _ALNUM | frozenset("!#$&'*+-/=?^_`{|}~")
# What the parser accepts unencoded in an im/pres user part: atext plus the dots of a
# dot-atom (RFC 5322 §3.2.3), which real im: URIs such as im:first.last@host carry.
_IM_USER_PARSE: Final = _IM_USER_SAFE | frozenset(".")
# RFC 3966 §3: the characters of a telephone-subscriber (digits, hex digits of local
# numbers, visual separators, * # and the + of global numbers).
_TEL_SAFE: Final = frozenset("0123456789abcdefABCDEF*#+-.()")
# RFC 5122 §2.2 (xmpp: URIs): nodeallow = unreserved / pct-encoded / ! $ ( ) * + , ; =,
# resallow = unreserved / pct-encoded / sub-delims / : @
_RFC3986_UNRESERVED: Final = _ALNUM | frozenset("-._~")
_XMPP_URI_NODE_SAFE: Final = _RFC3986_UNRESERVED | frozenset("!$()*+,;=")
_XMPP_URI_DOMAIN_SAFE: Final = _RFC3986_UNRESERVED | frozenset("!$&'()*+,;=[]:")
_XMPP_URI_RES_SAFE: Final = _RFC3986_UNRESERVED | frozenset("!$&'()*+,;=:@")

# XEP-0106 §3.2: the full escape table. "\\" is escaped only in front of one of the ten
# codes (so that unescaping is unambiguous); the others always.
_XEP0106_ESCAPES: Final[Mapping[str, str]] = MappingProxyType(
    {
        " ": "\\20",
        '"': "\\22",
        "&": "\\26",
        "'": "\\27",
        "/": "\\2f",
        ":": "\\3a",
        "<": "\\3c",
        ">": "\\3e",
        "@": "\\40",
        "\\": "\\5c",
    }
)
_XEP0106_CODES: Final[Mapping[str, str]] = MappingProxyType(
    {code[1:]: char for char, code in _XEP0106_ESCAPES.items()}
)

# RFC 7622 §3.3.1: these characters are never allowed in a localpart.
_LOCALPART_FORBIDDEN: Final = frozenset("\"&'/:<>@")
# PRECIS IdentifierClass (RFC 8264 §9.1) disallows controls, format characters, spaces,
# surrogates, private-use and unassigned code points. This is a light approximation of
# it: enough to refuse what can never be a localpart, leaving finer rules to the server.
_LOCALPART_BAD_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})
# PRECIS FreeformClass (RFC 8264 §9.2), used by resourceparts, disallows controls and
# unassigned code points; surrogates cannot be encoded at all.
_RESOURCE_BAD_CATEGORIES: Final = frozenset({"Cc", "Cs", "Cn"})

# RFC 3261 §25.1 hostname (with a lenient all-numeric toplabel so that IPv4 matches).
_HOSTNAME_RE: Final = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.?"
)
_SCHEME_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")

_SIPS_WARNING: Final = (380, "SIPS Not Allowed")  # RFC 5630 §5.3 / §7 (IANA warn-code)


# --------------------------------------------------------------------------- helpers


def _bad_request(detail: str) -> MappingRefused:
    return MappingRefused(400, "Bad Request", detail)


def _not_found(detail: str) -> MappingRefused:
    return MappingRefused(404, "Not Found", detail)


def _stanza_refused(condition: str, type_: str, text: str) -> StanzaRefused:
    return StanzaRefused(StanzaError(condition, type_, text))


def _jid_malformed(text: str) -> StanzaRefused:
    # RFC 6120 §8.3.3.8: jid-malformed, type modify.
    return _stanza_refused("jid-malformed", "modify", text)


def _pct_encode(text: str, safe: frozenset[str]) -> str:
    """Percent-encode every character outside ``safe`` as UTF-8 ``%HH`` (RFC 3986 §2.1)."""
    out: list[str] = []
    for char in text:
        if char in safe:
            out.append(char)
        else:
            out.extend(f"%{byte:02X}" for byte in char.encode("utf-8"))
    return "".join(out)


def _pct_decode(text: str, safe: frozenset[str], what: str) -> str:
    """Decode ``%HH`` escapes; the result must be UTF-8 (RFC 7247 §6.4 steps 3-4).

    ASCII characters outside ``safe`` (and ``%`` not followed by two hex digits) are a
    syntax error. Raw non-ASCII characters are tolerated: some user agents send UTF-8
    unencoded, and reading them as themselves is unambiguous.
    """
    raw = bytearray()
    i = 0
    length = len(text)
    while i < length:
        char = text[i]
        if char == "%":
            hex_pair = text[i + 1 : i + 3]
            if len(hex_pair) != 2 or not all(c in "0123456789abcdefABCDEF" for c in hex_pair):
                raise _bad_request(f"bad percent-escape in {what}")
            raw.append(int(hex_pair, 16))
            i += 3
            continue
        if char in safe:
            raw.append(ord(char))
        elif ord(char) > 0x7F:
            try:
                raw.extend(char.encode("utf-8"))
            except UnicodeEncodeError:
                raise _bad_request(f"invalid character in {what}") from None
        else:
            raise _bad_request(f"character {char!r} not allowed in {what}")
        i += 1
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad_request(f"{what} is not UTF-8 once percent-decoded") from None


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _localpart_problem(local: str) -> str | None:
    """Why ``local`` (unescaped or escaped) cannot be an XMPP localpart, or None."""
    if not local:
        return "empty localpart"
    for char in local:
        if unicodedata.category(char) in _LOCALPART_BAD_CATEGORIES:
            return f"character U+{ord(char):04X} not allowed in a localpart"
    return None


def _resource_problem(resource: str) -> str | None:
    if not resource:
        return "empty resourcepart"
    if _utf8_len(resource) > JID_PART_MAX_BYTES:
        return "resourcepart longer than 1023 bytes"
    for char in resource:
        if unicodedata.category(char) in _RESOURCE_BAD_CATEGORIES:
            return f"character U+{ord(char):04X} not allowed in a resourcepart"
    return None


def _domain_problem(domain: str) -> str | None:
    if not domain:
        return "empty domainpart"
    if _utf8_len(domain) > JID_PART_MAX_BYTES:
        return "domainpart longer than 1023 bytes"
    if domain.startswith("["):
        if not domain.endswith("]"):
            return "unterminated IP literal"
        try:
            ipaddress.IPv6Address(domain[1:-1])
        except ValueError:
            return "bad IPv6 literal"
        return None
    for char in domain:
        if char.isascii():
            if not (char.isalnum() or char in "-._"):
                return f"character {char!r} not allowed in a domainpart"
        elif unicodedata.category(char) in _LOCALPART_BAD_CATEGORIES:
            return f"character U+{ord(char):04X} not allowed in a domainpart"
    if any(not label for label in domain.split(".")):
        return "empty label in domainpart"
    return None


def _sip_host_problem(host: str) -> str | None:
    if not host:
        return "empty host"
    if host.startswith("["):
        if not host.endswith("]"):
            return "unterminated IPv6 reference"
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return "bad IPv6 reference"
        return None
    if not _HOSTNAME_RE.fullmatch(host):
        return "bad host"
    return None


def _norm_domain(domain: str) -> str:
    """Lookup key of a domain: ASCII-lowercased, without the trailing root dot."""
    domain = domain[:-1] if domain.endswith(".") else domain
    return domain.lower()


# --------------------------------------------------------------------------- XEP-0106


def xep0106_escape(local: str) -> str:
    """Escape a localpart per XEP-0106 §3.2 (full table; slixmpp has no equivalent).

    ``\\`` is escaped only where it would otherwise start one of the ten escape codes.
    Raises :class:`~sipxmpp.mapping.model.LocalMappingError` if ``local`` begins or ends
    with a space: ``\\20`` must never be the first or last sequence (XEP-0106 §3.2).
    """
    if local.startswith(" ") or local.endswith(" "):
        raise LocalMappingError("XEP-0106: a localpart cannot begin or end with a space")
    out: list[str] = []
    for i, char in enumerate(local):
        if char == "\\":
            out.append("\\5c" if local[i + 1 : i + 3] in _XEP0106_CODES else "\\")
        else:
            out.append(_XEP0106_ESCAPES.get(char, char))
    return "".join(out)


def xep0106_unescape(local: str) -> str:
    """Undo XEP-0106 escaping (§3.3): each ``\\hh`` of the table becomes its character.

    A backslash not followed by one of the ten codes is kept as is. The result is the
    exact inverse of :func:`xep0106_escape`: ``xep0106_unescape(xep0106_escape(s)) == s``.
    """
    out: list[str] = []
    i = 0
    length = len(local)
    while i < length:
        char = local[i]
        if char == "\\":
            decoded = _XEP0106_CODES.get(local[i + 1 : i + 3])
            if decoded is not None:
                out.append(decoded)
                i += 3
                continue
        out.append(char)
        i += 1
    return "".join(out)


# --------------------------------------------------------------------------- JIDs


@dataclass(frozen=True, slots=True)
class Jid:
    """An XMPP address (RFC 7622): ``[localpart@]domainpart[/resourcepart]``.

    ``local`` is the localpart as it appears in the JID (XEP-0106-escaped where needed).
    Construction validates each part (RFC 7622 §3: no empty parts, at most 1023 bytes
    each, no characters a localpart can never hold) and raises
    :class:`~sipxmpp.mapping.model.LocalMappingError`; :meth:`parse` is for strings that
    arrive from the XMPP side and raises :class:`~sipxmpp.mapping.model.StanzaRefused`
    with ``jid-malformed`` instead.
    """

    local: str | None
    domain: str
    resource: str | None = None

    def __post_init__(self) -> None:
        problem = _jid_problem(self.local, self.domain, self.resource)
        if problem is not None:
            raise LocalMappingError(f"invalid JID: {problem}")

    @classmethod
    def parse(cls, text: str) -> Jid:
        """Split a JID string (RFC 7622 §3.1); ``jid-malformed`` if it is not one."""
        if len(text) > 3 * JID_PART_MAX_BYTES + 2:
            raise _jid_malformed("JID too long")
        rest, slash, resource = text.partition("/")
        local: str | None = None
        if "@" in rest:
            local, _, rest = rest.partition("@")
        # RFC 7622 §3.2: a single trailing dot of the domainpart is stripped.
        domain = rest[:-1] if rest.endswith(".") and len(rest) > 1 else rest
        res: str | None = resource if slash else None
        problem = _jid_problem(local, domain, res)
        if problem is not None:
            raise _jid_malformed(problem)
        return cls(local, domain, res)

    @property
    def bare(self) -> Jid:
        """The bare JID (no resourcepart)."""
        return self if self.resource is None else Jid(self.local, self.domain)

    @property
    def is_full(self) -> bool:
        """True if the JID has a resourcepart (RFC 6120 §1.4 "full JID")."""
        return self.resource is not None

    def __str__(self) -> str:
        text = self.domain if self.local is None else f"{self.local}@{self.domain}"
        return text if self.resource is None else f"{text}/{self.resource}"


def _jid_problem(local: str | None, domain: str, resource: str | None) -> str | None:
    if local is not None:
        problem = _localpart_problem(local)
        if problem is not None:
            return problem
        if _utf8_len(local) > JID_PART_MAX_BYTES:
            return "localpart longer than 1023 bytes"
        if any(char in _LOCALPART_FORBIDDEN for char in local):
            return "localpart contains one of \" & ' / : < > @ (RFC 7622 §3.3.1)"
    domain_problem = _domain_problem(domain)
    if domain_problem is not None:
        return domain_problem
    if resource is not None:
        return _resource_problem(resource)
    return None


# --------------------------------------------------------------------------- URIs


@dataclass(frozen=True, slots=True)
class SipUri:
    """A ``sip``/``sips``/``im``/``pres``/``tel`` URI, with its parts decoded.

    ``user``, ``password``, parameter names/values and header names/values hold the
    *decoded* text; :meth:`__str__` percent-encodes them for the scheme, so
    ``parse_uri(str(u)) == u``. For ``tel`` the subscriber number is in ``user`` and
    ``host`` is empty. ``im``/``pres`` URIs have no port and no parameters (RFC 3860 §3,
    RFC 3859 §3). A parameter without a value (``;lr``, a temporary GRUU's ``;gr``) has
    ``None`` as its value.
    """

    scheme: str
    user: str | None
    host: str
    port: int | None = None
    params: tuple[tuple[str, str | None], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    password: str | None = None

    def __post_init__(self) -> None:
        problem = _sip_uri_problem(self)
        if problem is not None:
            raise LocalMappingError(f"invalid {self.scheme!r} URI: {problem}")

    def param(self, name: str) -> str | None:
        """Value of the first parameter called ``name`` (case-insensitive), or None."""
        name = name.lower()
        for key, value in self.params:
            if key.lower() == name:
                return value
        return None

    def has_param(self, name: str) -> bool:
        name = name.lower()
        return any(key.lower() == name for key, _ in self.params)

    def with_params(self, params: tuple[tuple[str, str | None], ...]) -> SipUri:
        """A copy with ``params`` in place of the parameters."""
        return SipUri(
            self.scheme, self.user, self.host, self.port, params, self.headers, self.password
        )

    @property
    def aor(self) -> SipUri:
        """The address-of-record form: no port, parameters, headers or password."""
        return SipUri(self.scheme, self.user, self.host)

    def __str__(self) -> str:
        if self.scheme == "tel":
            text = "tel:" + _pct_encode(self.user or "", _TEL_SAFE)
        else:
            user_safe = _IM_USER_SAFE if self.scheme in ("im", "pres") else _SIP_USER_SAFE
            text = self.scheme + ":"
            if self.user is not None:
                text += _pct_encode(self.user, user_safe)
                if self.password is not None:
                    text += ":" + _pct_encode(self.password, _SIP_PASSWORD_SAFE)
                text += "@"
            text += self.host
            if self.port is not None:
                text += f":{self.port}"
        for name, value in self.params:
            text += ";" + _pct_encode(name, _SIP_PARAM_SAFE)
            if value is not None:
                text += "=" + _pct_encode(value, _SIP_PARAM_SAFE)
        if self.headers:
            text += "?" + "&".join(
                _pct_encode(name, _SIP_HEADER_SAFE) + "=" + _pct_encode(value, _SIP_HEADER_SAFE)
                for name, value in self.headers
            )
        return text


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _sip_uri_problem(uri: SipUri) -> str | None:
    if uri.scheme not in URI_SCHEMES:
        return "unknown scheme"
    texts: list[str] = [uri.host]
    if uri.user is not None:
        texts.append(uri.user)
    if uri.password is not None:
        texts.append(uri.password)
    for name, value in uri.params:
        if not name:
            return "empty parameter name"
        texts.append(name)
        if value is not None:
            texts.append(value)
    for name, value in uri.headers:
        if not name:
            return "empty header name"
        texts.extend((name, value))
    if not all(_encodable(text) for text in texts):
        return "text that cannot be encoded as UTF-8"
    if uri.scheme == "tel":
        if uri.host or uri.port is not None or uri.password is not None:
            return "a tel URI has no host, port or password"
        if not uri.user:
            return "empty telephone number"
        return None
    if uri.user == "":
        return "empty user part"
    if uri.port is not None and not 0 <= uri.port <= 65535:
        return "port out of range"
    if uri.scheme in ("im", "pres"):
        if uri.port is not None or uri.params or uri.password is not None:
            return "im/pres URIs have no port, parameters or password"
    if uri.password is not None and uri.user is None:
        return "password without user"
    return _sip_host_problem(uri.host)


def _split_params(text: str, what: str) -> tuple[tuple[str, str | None], ...]:
    params: list[tuple[str, str | None]] = []
    for item in text.split(";"):
        name, eq, value = item.partition("=")
        if not name:
            raise _bad_request(f"empty parameter name in {what}")
        decoded_name = _pct_decode(name, _SIP_PARAM_SAFE, f"{what} parameter name")
        decoded_value = _pct_decode(value, _SIP_PARAM_SAFE, f"{what} parameter") if eq else None
        params.append((decoded_name, decoded_value))
    return tuple(params)


def _split_headers(text: str, what: str) -> tuple[tuple[str, str], ...]:
    headers: list[tuple[str, str]] = []
    for item in text.split("&"):
        name, eq, value = item.partition("=")
        if not name or not eq:
            raise _bad_request(f"bad header in {what}")
        headers.append(
            (
                _pct_decode(name, _SIP_HEADER_SAFE, f"{what} header name"),
                _pct_decode(value, _SIP_HEADER_SAFE, f"{what} header value"),
            )
        )
    return tuple(headers)


def _split_hostport(text: str, with_port: bool) -> tuple[str, int | None]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise _bad_request("unterminated IPv6 reference")
        host, rest = text[: end + 1], text[end + 1 :]
        if rest and not (with_port and rest.startswith(":")):
            raise _bad_request("junk after IPv6 reference")
        port_text = rest[1:] if rest else None
    else:
        if with_port:
            host, colon, port_text_ = text.partition(":")
            port_text = port_text_ if colon else None
        else:
            host, port_text = text, None
    problem = _sip_host_problem(host)
    if problem is not None:
        raise _bad_request(problem)
    port: int | None = None
    if port_text is not None:
        if not (port_text.isascii() and port_text.isdigit()) or len(port_text) > 5:
            raise _bad_request("bad port")
        port = int(port_text)
        if port > 65535:
            raise _bad_request("port out of range")
    return host, port


def parse_uri(text: str) -> SipUri:
    """Parse a ``sip``/``sips``/``im``/``pres``/``tel`` URI (surrounding ``<>`` allowed).

    Raises :class:`~sipxmpp.mapping.model.MappingRefused`: 414 if longer than
    :data:`MAX_URI_CHARS`, 416 for another scheme (RFC 3261 §8.2.2.1), 400 for anything
    that is not a URI of its scheme.
    """
    if len(text) > MAX_URI_CHARS:
        raise MappingRefused(414, "Request-URI Too Long", "URI too long to name a JID")
    text = text.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    scheme_text, colon, rest = text.partition(":")
    if not colon or not _SCHEME_RE.fullmatch(scheme_text):
        raise _bad_request("not a URI")
    scheme = scheme_text.lower()
    if scheme not in URI_SCHEMES:
        raise MappingRefused(416, "Unsupported URI Scheme", f"scheme {scheme_text!r}")
    if scheme == "tel":
        return _parse_tel(rest)
    what = f"{scheme} URI"
    user: str | None = None
    password: str | None = None
    userinfo: str | None = None
    if "@" in rest:
        # RFC 7247 §6.4 step 2: split at the first "@". Neither the userinfo nor the
        # parameters and headers after the host can hold an unescaped one (RFC 3261
        # §25.1), while a user part may hold "?" and ";", so this split comes first.
        userinfo, _, rest = rest.partition("@")
    rest, question, header_text = rest.partition("?")
    headers = _split_headers(header_text, what) if question else ()
    if userinfo is not None:
        if scheme in ("im", "pres"):
            user = _pct_decode(userinfo, _IM_USER_PARSE, f"{what} user part")
        else:
            user_text, pw_colon, pw_text = userinfo.partition(":")
            user = _pct_decode(user_text, _SIP_USER_SAFE, f"{what} user part")
            if pw_colon:
                password = _pct_decode(pw_text, _SIP_PASSWORD_SAFE, f"{what} password")
        if not user:
            raise _bad_request(f"empty user part in {what}")
    params: tuple[tuple[str, str | None], ...] = ()
    if scheme in ("sip", "sips"):
        hostport, semicolon, param_text = rest.partition(";")
        if semicolon:
            params = _split_params(param_text, what)
        host, port = _split_hostport(hostport, with_port=True)
    else:
        host, port = _split_hostport(rest, with_port=False)
    return SipUri(scheme, user, host, port, params, headers, password)


def _parse_tel(rest: str) -> SipUri:
    number_text, semicolon, param_text = rest.partition(";")
    if not number_text:
        raise _bad_request("empty telephone number")
    number = _pct_decode(number_text, _TEL_SAFE, "tel URI number")
    if not number or not all(char in _TEL_SAFE for char in number):
        raise _bad_request("bad telephone number")
    params = _split_params(param_text, "tel URI") if semicolon else ()
    return SipUri("tel", number, "", None, params)


def header_uri(value: str) -> str:
    """The URI of a From/To/Contact header value (RFC 3261 §20.10, §25.1).

    ``"Bob" <sip:bob@example.com;gr=x>;expires=60`` -> ``sip:bob@example.com;gr=x``. In
    the ``addr-spec`` form (no angle brackets) every parameter belongs to the header, not
    to the URI (RFC 3261 §20), so the URI ends at the first ``;``, ``?`` or ``,``. Only
    the first value of a comma-separated list is taken. Never fails: a value that holds
    no URI comes back trimmed, and :func:`parse_uri` then refuses it.
    """
    value = value.strip()
    if len(value) > MAX_URI_CHARS * 2:
        return value
    start = _angle_start(value)
    if start >= 0:
        end = value.find(">", start)
        return value[start:end].strip() if end >= 0 else value[start:].strip()
    for separator in (";", "?", ","):
        value = value.partition(separator)[0]
    return value.strip()


def parse_uri_or_header(text: str) -> SipUri:
    """Parse ``text`` as a URI, or else as a header value holding one (:func:`header_uri`).

    For callers that may hold either form, e.g. a Contact. A bare URI is read as a URI
    first, so its parameters stay URI parameters (``;gr=`` in particular).
    """
    try:
        return parse_uri(text)
    except MappingRefused:
        inner = header_uri(text)
        if inner == text.strip():
            raise
        return parse_uri(inner)


def _angle_start(value: str) -> int:
    """Index after the first ``<`` outside a quoted display name, or -1."""
    quoted = False
    i = 0
    while i < len(value):
        char = value[i]
        if quoted and char == "\\":
            i += 2
            continue
        if char == '"':
            quoted = not quoted
        elif char == "<" and not quoted:
            return i + 1
        i += 1
    return -1


def _as_uri(uri: str | SipUri) -> SipUri:
    return uri if isinstance(uri, SipUri) else parse_uri(uri)


def is_temporary_gruu(uri: SipUri) -> bool:
    """A ``gr`` parameter without a value: a temporary GRUU (RFC 5627 §3.2)."""
    return uri.has_param("gr") and uri.param("gr") is None


def is_public_gruu(uri: SipUri) -> bool:
    """A ``gr`` parameter with a value: a public GRUU (RFC 5627 §3.1)."""
    value = uri.param("gr")
    return value is not None and value != ""


def refuse_sips(*uris: str | SipUri | None) -> None:
    """Raise 480 + ``Warning: 380`` if any of ``uris`` (Request-URI, To) is ``sips:``.

    RFC 7247 §8: a SIP request whose To or Request-URI is a SIPS URI MUST NOT be
    translated into XMPP (XMPP cannot guarantee TLS on every hop). RFC 5630 §5.3 gives
    the answer: 480 Temporarily Unavailable with warn-code 380 "SIPS Not Allowed".
    Unparseable strings are ignored here; the mapping that follows refuses them.
    """
    for uri in uris:
        if uri is None:
            continue
        if isinstance(uri, SipUri):
            scheme = uri.scheme
        else:
            scheme = uri.strip().lstrip("<").partition(":")[0].strip().lower()
        if scheme == "sips":
            raise MappingRefused(
                480,
                "Temporarily Unavailable",
                "a SIPS request is never routed into XMPP (RFC 7247 §8)",
                warning=_SIPS_WARNING,
            )


# --------------------------------------------------------------------------- RFC 7247 §6.4


def _user_to_localpart(user: str) -> str:
    """§6.4 steps 3-5 after decoding: XEP-0106-escape and check the localpart rules."""
    if user.startswith(" ") or user.endswith(" "):
        raise _not_found("XEP-0106 cannot escape a leading or trailing space")
    local = xep0106_escape(user)
    problem = _localpart_problem(local)
    if problem is not None:
        raise _not_found(f"user part cannot be an XMPP localpart: {problem}")
    if _utf8_len(local) > JID_PART_MAX_BYTES:
        raise _not_found("localpart would be longer than 1023 bytes")
    return local


def _gruu_resource(uri: SipUri) -> str | None:
    """The resourcepart a public GRUU maps to (§6.3), None without ``gr``."""
    if is_temporary_gruu(uri):
        raise _not_found("a temporary GRUU is not mapped to XMPP (RFC 7247 §6.3)")
    value = uri.param("gr")
    if value is None:
        return None
    problem = _resource_problem(value)
    if problem is not None:
        raise _not_found(f"GRUU cannot be an XMPP resourcepart: {problem}")
    return value


def _sip_to_jid_parts(uri: SipUri, domain: str) -> Jid:
    if uri.scheme == "tel":
        raise _not_found("a tel URI names no domain that could map to XMPP")
    if uri.user is None:
        raise _not_found("the URI addresses a domain, not a user")
    local = _user_to_localpart(uri.user)
    resource = _gruu_resource(uri)
    domain = domain[:-1] if domain.endswith(".") else domain
    problem = _jid_problem(local, domain, resource)
    if problem is not None:
        raise _not_found(f"no JID can be formed: {problem}")
    return Jid(local, domain, resource)


def sip_uri_to_jid(uri: str | SipUri, *, allow_sips: bool = False) -> Jid:
    """RFC 7247 §6.4: SIP/IM/PRES URI -> JID, domain unchanged.

    ``sip:o'malley@sip.example`` -> ``o\\27malley@sip.example``;
    ``sip:f%C3%BC@sip.example`` -> ``fü@sip.example``;
    ``sip:foo@sip.example;gr=bar`` -> ``foo@sip.example/bar``.

    A ``sips:`` URI is refused (480 + Warning 380, RFC 7247 §8) unless ``allow_sips``
    (for an address that is only *named*, never routed to). Other refusals: 400 bad
    syntax, 404 for an address with no XMPP form (tel:, no user, temporary GRUU, a user
    part no localpart can hold), 414 too long, 416 unknown scheme.
    """
    parsed = _as_uri(uri)
    if parsed.scheme == "sips" and not allow_sips:
        refuse_sips(parsed)
    return _sip_to_jid_parts(parsed, parsed.host)


# --------------------------------------------------------------------------- RFC 7247 §6.5


def _jid_local_to_user(jid: Jid) -> str | None:
    if jid.local is None:
        return None
    return xep0106_unescape(jid.local)


def _jid_to_sip_parts(jid: Jid, scheme: str, host: str, *, with_gruu: bool) -> SipUri:
    if scheme not in ("sip", "sips", "im", "pres"):
        raise LocalMappingError(f"cannot map a JID to a {scheme!r} URI")
    if _sip_host_problem(host) is not None:
        # RFC 7247 §6.1 leaves domain translation (IDN) out of scope: a domainpart that is
        # no SIP host (e.g. a U-label) cannot be carried.
        raise _stanza_refused(
            "remote-server-not-found", "cancel", "the XMPP domain has no SIP form"
        )
    user = _jid_local_to_user(jid)
    params: tuple[tuple[str, str | None], ...] = ()
    # §6.5 step 8: the resourcepart travels as a GRUU; only sip/sips URIs have parameters.
    if with_gruu and jid.resource is not None and scheme in ("sip", "sips"):
        params = (("gr", jid.resource),)
    return SipUri(scheme, user, host, None, params)


def jid_to_sip_uri(jid: str | Jid, *, scheme: str = "sip", with_gruu: bool = True) -> SipUri:
    """RFC 7247 §6.5: JID -> SIP/SIPS/IM/PRES URI, domain unchanged.

    ``m\\26m@xmpp.example`` -> ``sip:m&m@xmpp.example``;
    ``tschüss@xmpp.example`` -> ``sip:tsch%C3%BCss@xmpp.example``;
    ``baz@xmpp.example/qux`` -> ``sip:baz@xmpp.example;gr=qux``.
    ``scheme`` is ``im`` for messages or ``pres`` for presence when the SIP domain is
    known to support them (§6.5 step 6), else ``sip``. Raises
    :class:`~sipxmpp.mapping.model.StanzaRefused` (``jid-malformed``) for a string that
    is not a JID.
    """
    parsed = jid if isinstance(jid, Jid) else Jid.parse(jid)
    return _jid_to_sip_parts(parsed, scheme, parsed.domain, with_gruu=with_gruu)


# --------------------------------------------------------------------------- xmpp: URIs


def jid_to_xmpp_uri(jid: str | Jid) -> str:
    """The ``xmpp:`` URI of a JID (RFC 5122 §2), as carried by ``<gone/>``/``<redirect/>``.

    Characters outside the URI's allowed sets (including the ``\\`` of XEP-0106 escapes
    and all non-ASCII) are percent-encoded as UTF-8 (RFC 5122 §2.7.2).
    """
    parsed = jid if isinstance(jid, Jid) else Jid.parse(jid)
    text = "xmpp:"
    if parsed.local is not None:
        text += _pct_encode(parsed.local, _XMPP_URI_NODE_SAFE) + "@"
    text += _pct_encode(parsed.domain, _XMPP_URI_DOMAIN_SAFE)
    if parsed.resource is not None:
        text += "/" + _pct_encode(parsed.resource, _XMPP_URI_RES_SAFE)
    return text


def xmpp_uri_to_jid(uri: str) -> Jid:
    """Parse an ``xmpp:`` URI (RFC 5122) into a JID; ``jid-malformed`` if it is not one.

    The authority form (``xmpp://auth@host/jid``) and the query/fragment are accepted and
    ignored (RFC 5122 §2.3, §2.5, §2.6): only the JID matters here.
    """
    if len(uri) > 3 * MAX_URI_CHARS:
        raise _jid_malformed("xmpp: URI too long")
    scheme, colon, rest = uri.strip().partition(":")
    if not colon or scheme.lower() != "xmpp":
        raise _jid_malformed("not an xmpp: URI")
    if rest.startswith("//"):
        _, slash, rest = rest[2:].partition("/")
        if not slash:
            raise _jid_malformed("xmpp: URI without a JID")
    rest = rest.partition("?")[0].partition("#")[0]
    try:
        raw = bytearray()
        i = 0
        while i < len(rest):
            if rest[i] == "%":
                hex_pair = rest[i + 1 : i + 3]
                if len(hex_pair) != 2 or not all(c in "0123456789abcdefABCDEF" for c in hex_pair):
                    raise ValueError("bad percent-escape")
                raw.append(int(hex_pair, 16))
                i += 3
            else:
                raw.extend(rest[i].encode("utf-8"))
                i += 1
        text = raw.decode("utf-8")
    except (ValueError, UnicodeError):
        raise _jid_malformed("bad percent-encoding in xmpp: URI") from None
    return Jid.parse(text)


# --------------------------------------------------------------------------- DomainMap


def _frozen_domain_table(table: Mapping[str, str], what: str) -> Mapping[str, str]:
    out: dict[str, str] = {}
    for key, value in table.items():
        norm = _norm_domain(key)
        if norm in out:
            raise LocalMappingError(f"{what}: domain {key!r} listed twice")
        out[norm] = _norm_domain(value)
    return MappingProxyType(out)


@dataclass(frozen=True, slots=True)
class DomainMap:
    """Which domains the gateway serves, and under which name on the other side.

    ``sip_domains`` maps each SIP domain whose users the gateway carries into XMPP to the
    XMPP domain they appear under (the component domain). ``xmpp_domains`` maps each
    XMPP domain whose users the gateway carries into SIP to the SIP domain they appear
    under. Domains are compared case-insensitively without a trailing dot. The
    constructor refuses (``LocalMappingError``) tables that would make routing ambiguous:
    two SIP domains on one component domain, two XMPP domains under one SIP name, or a
    component domain that is also listed as an XMPP users' domain.

    The four per-message methods (``sip_target_to_jid``, ``sip_sender_to_jid``,
    ``xmpp_target_to_sip``, ``xmpp_sender_to_sip``) remember their successful results for
    string arguments (:data:`MAX_MEMO_ENTRIES`): they are pure functions of the arguments
    and the (immutable) tables, and their results are frozen, so a remembered result is
    the one a fresh computation would give. Refusals are computed every time.
    """

    sip_domains: Mapping[str, str]
    xmpp_domains: Mapping[str, str]
    _component_to_sip: Mapping[str, str] = field(init=False, repr=False, compare=False)
    _sip_alias_to_xmpp: Mapping[str, str] = field(init=False, repr=False, compare=False)
    _memo: dict[tuple[str, str, str | None], Jid | SipUri] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        sip = _frozen_domain_table(self.sip_domains, "sip_domains")
        xmpp = _frozen_domain_table(self.xmpp_domains, "xmpp_domains")
        for sip_domain in list(sip) + list(xmpp.values()):
            if _sip_host_problem(sip_domain) is not None:
                raise LocalMappingError(f"{sip_domain!r} is not a valid SIP domain")
        for xmpp_domain in list(sip.values()) + list(xmpp):
            if _domain_problem(xmpp_domain) is not None:
                raise LocalMappingError(f"{xmpp_domain!r} is not a valid XMPP domain")
        component_to_sip = {component: sip_domain for sip_domain, component in sip.items()}
        if len(component_to_sip) != len(sip):
            raise LocalMappingError("sip_domains: two SIP domains share one XMPP domain")
        alias_to_xmpp = {alias: xmpp_domain for xmpp_domain, alias in xmpp.items()}
        if len(alias_to_xmpp) != len(xmpp):
            raise LocalMappingError("xmpp_domains: two XMPP domains share one SIP domain")
        clash = set(component_to_sip) & set(xmpp)
        if clash:
            raise LocalMappingError(
                f"{sorted(clash)} cannot be both a component domain and an XMPP users' domain"
            )
        object.__setattr__(self, "sip_domains", sip)
        object.__setattr__(self, "xmpp_domains", xmpp)
        object.__setattr__(self, "_component_to_sip", MappingProxyType(component_to_sip))
        object.__setattr__(self, "_sip_alias_to_xmpp", MappingProxyType(alias_to_xmpp))
        object.__setattr__(self, "_memo", {})

    def _remember(self, key: tuple[str, str, str | None], result: Jid | SipUri) -> None:
        if len(key[1]) + len(key[2] or "") > MAX_MEMO_KEY_CHARS:
            return
        memo = self._memo
        if len(memo) >= MAX_MEMO_ENTRIES:
            del memo[next(iter(memo))]  # dicts keep insertion order: the oldest goes
        memo[key] = result

    def __hash__(self) -> int:
        return hash((frozenset(self.sip_domains.items()), frozenset(self.xmpp_domains.items())))

    @property
    def component_domains(self) -> frozenset[str]:
        """The XMPP domains under which SIP users appear."""
        return frozenset(self._component_to_sip)

    # ----------------------------------------------------------------- SIP -> XMPP

    def sip_target_to_jid(self, request_uri: str | SipUri, *, to_uri: str | None = None) -> Jid:
        """The XMPP user a SIP request is for (its Request-URI), e.g. ``bob@example.com``.

        Refusals: 480 + Warning 380 if the Request-URI or ``to_uri`` is ``sips:``
        (RFC 7247 §8); 404 if the Request-URI's domain is not the SIP name of an XMPP
        domain we serve (RFC 3261 §21.4.5) or the address has no XMPP form; 400/414/416
        for a malformed/overlong/unknown-scheme URI. A ``;gr=`` of a public GRUU selects
        the resource (RFC 7247 §6.4 step 8): that is how a reply reaches one client.
        """
        if isinstance(request_uri, str):
            key = ("target", request_uri, to_uri)
            hit = self._memo.get(key)
            if hit is None:
                hit = self._sip_target_to_jid(request_uri, to_uri)
                self._remember(key, hit)
            assert isinstance(hit, Jid)
            return hit
        return self._sip_target_to_jid(request_uri, to_uri)

    def _sip_target_to_jid(self, request_uri: str | SipUri, to_uri: str | None) -> Jid:
        refuse_sips(request_uri, to_uri)
        uri = _as_uri(request_uri)
        if uri.scheme == "tel":
            raise _not_found("a tel URI names no domain that could map to XMPP")
        xmpp_domain = self._sip_alias_to_xmpp.get(_norm_domain(uri.host))
        if xmpp_domain is None:
            raise _not_found(f"domain {uri.host!r} is not served by this gateway")
        return _sip_to_jid_parts(uri, xmpp_domain)

    def sip_sender_to_jid(self, from_uri: str | SipUri, *, contact_uri: str | None = None) -> Jid:
        """The JID under the component domain that speaks for a SIP sender.

        ``sip:alice@example.com`` -> ``alice@sip.example.com``. The sender is known by
        its GRUU (RFC 7572 §5: then the JID MUST be full) when the From URI carries a
        public GRUU, or when ``contact_uri`` is a public GRUU of the same AOR.
        Refusals: 403 if the From domain is not one of our SIP domains (no open relay,
        RFC 8048 §8.1), the From is a temporary GRUU or a tel: URI, or the user part has
        no XMPP form; 400/414 for a malformed/overlong URI.
        """
        if isinstance(from_uri, str):
            key = ("sender", from_uri, contact_uri)
            hit = self._memo.get(key)
            if hit is None:
                hit = self._sip_sender_to_jid(from_uri, contact_uri)
                self._remember(key, hit)
            assert isinstance(hit, Jid)
            return hit
        return self._sip_sender_to_jid(from_uri, contact_uri)

    def _sip_sender_to_jid(self, from_uri: str | SipUri, contact_uri: str | None) -> Jid:
        try:
            uri = _as_uri(from_uri)
        except MappingRefused as exc:
            if exc.status in (400, 414):
                raise
            raise MappingRefused(
                403, "Forbidden", f"sender cannot be mapped: {exc.detail}"
            ) from None
        if uri.scheme == "tel":
            raise MappingRefused(403, "Forbidden", "a tel: sender names no domain we serve")
        component = self.sip_domains.get(_norm_domain(uri.host))
        if component is None:
            raise MappingRefused(403, "Forbidden", f"domain {uri.host!r} is not served here")
        if not is_public_gruu(uri) and not is_temporary_gruu(uri) and contact_uri is not None:
            uri = _gruu_from_contact(uri, contact_uri)
        try:
            return _sip_to_jid_parts(uri, component)
        except MappingRefused as exc:
            raise MappingRefused(
                403, "Forbidden", f"sender cannot be mapped: {exc.detail}"
            ) from None

    def sip_address_to_jid(self, uri: str | SipUri) -> Jid:
        """Any SIP address named in a message (e.g. a 301 Contact) as a JID.

        A served SIP domain maps to its component domain, the SIP name of an XMPP domain
        to that XMPP domain (served SIP domains win where a name is both), any other
        domain unchanged (RFC 7247 §6.4). Refuses like :func:`sip_uri_to_jid`; a
        ``sips:`` address is refused because naming it in XMPP would drop its TLS promise.
        """
        parsed = _as_uri(uri)
        refuse_sips(parsed)
        if parsed.scheme == "tel":
            raise _not_found("a tel URI names no domain that could map to XMPP")
        key = _norm_domain(parsed.host)
        domain = self.sip_domains.get(key) or self._sip_alias_to_xmpp.get(key) or parsed.host
        return _sip_to_jid_parts(parsed, domain)

    # ----------------------------------------------------------------- XMPP -> SIP

    def xmpp_target_to_sip(self, to_jid: str | Jid) -> SipUri:
        """The SIP user a stanza to the component domain is for.

        ``alice@sip.example.com`` -> ``sip:alice@example.com``; a resourcepart becomes
        the ``;gr=`` of the SIP user's GRUU. Refusals (``StanzaRefused``):
        ``jid-malformed`` for a bad JID, ``remote-server-not-found`` if the domain is none
        of our component domains, ``item-not-found`` for the bare component domain.
        """
        if isinstance(to_jid, str):
            key = ("xmpp-target", to_jid, None)
            hit = self._memo.get(key)
            if hit is None:
                hit = self._xmpp_target_to_sip(Jid.parse(to_jid))
                self._remember(key, hit)
            assert isinstance(hit, SipUri)
            return hit
        return self._xmpp_target_to_sip(to_jid)

    def _xmpp_target_to_sip(self, jid: Jid) -> SipUri:
        sip_domain = self._component_to_sip.get(_norm_domain(jid.domain))
        if sip_domain is None:
            raise _stanza_refused(
                "remote-server-not-found",
                "cancel",
                f"{jid.domain} is not a SIP domain of this gateway",
            )
        if jid.local is None:
            raise _stanza_refused("item-not-found", "cancel", "no SIP user addressed")
        return _jid_to_sip_parts(jid, "sip", sip_domain, with_gruu=True)

    def xmpp_sender_to_sip(self, from_jid: str | Jid) -> SipUri:
        """The SIP URI that speaks for an XMPP sender (RFC 7572 §4 note 1).

        ``juliet@example.com/balcony`` -> ``sip:juliet@example.com;gr=balcony``: the bare
        JID in the URI, the resourcepart as GRUU (RFC 7247 §6.5 as its example shows).
        Refusals: ``jid-malformed``; ``not-allowed`` if the sender's domain is not one
        the gateway serves (no open relay, RFC 8048 §8.1).
        """
        if isinstance(from_jid, str):
            key = ("xmpp-sender", from_jid, None)
            hit = self._memo.get(key)
            if hit is None:
                hit = self._xmpp_sender_to_sip(Jid.parse(from_jid))
                self._remember(key, hit)
            assert isinstance(hit, SipUri)
            return hit
        return self._xmpp_sender_to_sip(from_jid)

    def _xmpp_sender_to_sip(self, jid: Jid) -> SipUri:
        sip_domain = self.xmpp_domains.get(_norm_domain(jid.domain))
        if sip_domain is None:
            raise _stanza_refused(
                "not-allowed", "cancel", f"users of {jid.domain} cannot use this gateway"
            )
        return _jid_to_sip_parts(jid, "sip", sip_domain, with_gruu=True)

    def jid_to_sip_address(self, jid: str | Jid) -> SipUri:
        """Any JID named in a stanza (e.g. a ``<gone/>`` address) as a SIP URI.

        An XMPP users' domain maps to its SIP name, a component domain back to its SIP
        domain, any other domain unchanged (RFC 7247 §6.5).
        """
        parsed = jid if isinstance(jid, Jid) else Jid.parse(jid)
        key = _norm_domain(parsed.domain)
        host = self.xmpp_domains.get(key) or self._component_to_sip.get(key) or parsed.domain
        return _jid_to_sip_parts(parsed, "sip", host, with_gruu=True)


def _gruu_from_contact(from_uri: SipUri, contact_text: str) -> SipUri:
    """From + a public-GRUU Contact of the same AOR -> From carrying that ``gr``."""
    try:
        contact = parse_uri_or_header(contact_text)
    except MappingRefused:
        return from_uri
    if not is_public_gruu(contact):
        return from_uri
    same_aor = (
        contact.scheme in ("sip", "sips")
        and contact.user == from_uri.user
        and _norm_domain(contact.host) == _norm_domain(from_uri.host)
    )
    if not same_aor:
        return from_uri
    return from_uri.with_params((*from_uri.params, ("gr", contact.param("gr"))))
