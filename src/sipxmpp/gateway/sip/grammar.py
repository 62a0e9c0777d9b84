"""Structured views of SIP header values: URIs, name-addr, Via, CSeq (RFC 3261 §25.1).

Theory of operation
-------------------
The parser (:mod:`.parser`) stores every header value as text. The functions here turn
one value into a frozen dataclass on demand, so the hot path only pays for the headers
a layer actually reads. Each function quotes the ABNF it implements; the character
classes below are the ABNF's, written once as regex fragments.

Every parse function either returns a value or raises :class:`RemoteSipError` with a
status hint: 400 for text that does not match the grammar, 416 from :func:`parse_uri`
for a scheme other than ``sip``, ``sips`` and ``tel`` (RFC 3261 §8.2.2.1). ``str()`` of
every value re-serializes it in a canonical form such that ``parse(str(v)) == v``.

Parsing is strict where the grammar is unambiguous and RFC 4475 asks for a rejection
(spaces inside ``<>``, unquoted non-token display names, empty list elements in Via),
and lenient where RFC 3261 says LWS may appear (around ``;``, ``=``, ``/``, ``:``).
Hot functions are memoised with small bounded caches: the parser validates a header
once and the transaction layer reads the same value again without a second parse.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import lru_cache

from .errors import LocalSipError, RemoteSipError
from .message import split_header_values

__all__ = [
    "SipUri",
    "TelUri",
    "AbsoluteUri",
    "Uri",
    "NameAddr",
    "Via",
    "CSeq",
    "Params",
    "parse_uri",
    "parse_any_uri",
    "parse_sip_uri",
    "parse_name_addr",
    "parse_name_addr_list",
    "parse_via",
    "parse_vias",
    "parse_cseq",
    "parse_max_forwards",
    "parse_delta_seconds",
    "parse_sip_date",
    "parse_params",
    "split_list",
    "is_token",
    "is_valid_call_id",
    "quote_string",
    "unquote_string",
    "uri_equal",
    "format_params",
    "join_values",
]

#: Ordered generic parameters: (name, value or None for a valueless parameter).
Params = tuple[tuple[str, str | None], ...]

#: Entries kept by each memoising cache. The parser and the transaction layer parse the
#: same few header values of one message back to back; a few thousand entries cover
#: every message in flight at 5,000 messages/s while bounding memory (a few MiB).
_CACHE_SIZE = 4096
#: Longest host name accepted (RFC 1035 §2.3.4: 255 octets); keeps the regexes linear.
_MAX_HOST_LENGTH = 255
#: Largest CSeq sequence number: "MUST be expressible as a 32-bit unsigned integer"
#: (RFC 3261 §8.1.1.5); RFC 4475 §3.1.2.4 expects 400 above it.
MAX_CSEQ = 2**32 - 1
#: Largest delta-seconds value (RFC 3261 §20.19: Expires is between 0 and 2**32-1).
MAX_DELTA_SECONDS = 2**32 - 1
#: Largest Max-Forwards value (RFC 3261 §8.1.1.6: an integer in the range 0-255).
MAX_MAX_FORWARDS = 255

# --- Character classes of RFC 3261 §25.1 (as regex set bodies) -----------------------
# alphanum = ALPHA / DIGIT
_ALNUM = "A-Za-z0-9"
# mark = "-" / "_" / "." / "!" / "~" / "*" / "'" / "(" / ")"
_MARK = r"\-_.!~*'()"
# unreserved = alphanum / mark
_UNRESERVED = _ALNUM + _MARK
# escaped = "%" HEXDIG HEXDIG
_ESCAPED = r"%[0-9A-Fa-f]{2}"
# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" )
_TOKEN_CHARS = _ALNUM + r"\-.!%*_+`'~"
# word = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" /
#        "(" / ")" / "<" / ">" / ":" / "\" / DQUOTE / "/" / "[" / "]" / "?" / "{" / "}" )
_WORD_CHARS = _TOKEN_CHARS + r"()<>:\\\"/\[\]?{}"
# quoted-string = SWS DQUOTE *(qdtext / quoted-pair ) DQUOTE
# qdtext = LWS / %x21 / %x23-5B / %x5D-7E / UTF8-NONASCII
# quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
_QUOTED = r'"(?:[\t !#-\[\]-~\x80-\U0010ffff]|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*"'

_TOKEN_RE = re.compile(f"[{_TOKEN_CHARS}]+")
# callid = word [ "@" word ]
_CALL_ID_RE = re.compile(f"[{_WORD_CHARS}]+(?:@[{_WORD_CHARS}]+)?")
_QUOTED_RE = re.compile(_QUOTED)
_QUOTED_PAIR_RE = re.compile(r"\\(.)", re.S)
# Characters that qdtext does not allow but quoted-pair does (besides CR and LF).
_NEEDS_QUOTED_PAIR_RE = re.compile(r'[\x00-\x08\x0b\x0c\x0e-\x1f\x7f"\\]')
# user = 1*( unreserved / escaped / user-unreserved )
# user-unreserved = "&" / "=" / "+" / "$" / "," / ";" / "?" / "/"
_USER_RE = re.compile(f"(?:[{_UNRESERVED}&=+$,;?/]|{_ESCAPED})+")
# password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )
_PASSWORD_RE = re.compile(f"(?:[{_UNRESERVED}&=+$,]|{_ESCAPED})*")
# pname = 1*paramchar ; pvalue = 1*paramchar
# paramchar = param-unreserved / unreserved / escaped
# param-unreserved = "[" / "]" / "/" / ":" / "&" / "+" / "$"
_PARAMCHAR_RE = re.compile(rf"(?:[\[\]/:&+${_UNRESERVED}]|{_ESCAPED})+")
# hname = 1*( hnv-unreserved / unreserved / escaped )
# hvalue = *( hnv-unreserved / unreserved / escaped )
# hnv-unreserved = "[" / "]" / "/" / "?" / ":" / "+" / "$"
_HNAME_RE = re.compile(rf"(?:[\[\]/?:+${_UNRESERVED}]|{_ESCAPED})+")
_HVALUE_RE = re.compile(rf"(?:[\[\]/?:+${_UNRESERVED}]|{_ESCAPED})*")
# scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
# absoluteURI = scheme ":" ( hier-part / opaque-part ); both are made of uric
# characters: uric = reserved / unreserved / escaped,
# reserved = ";" / "/" / "?" / ":" / "@" / "&" / "=" / "+" / "$" / ","
_ABS_REST_RE = re.compile(rf"(?:[;/?:@&=+$,{_UNRESERVED}]|{_ESCAPED})+")
# hostname = *( domainlabel "." ) toplabel [ "." ]
# domainlabel = alphanum / alphanum *( alphanum / "-" ) alphanum
# toplabel = ALPHA / ALPHA *( alphanum / "-" ) alphanum
# (labels are checked for leading/trailing "-" separately, keeping the regex linear)
_HOSTNAME_RE = re.compile(r"(?:[A-Za-z0-9\-]+\.)*[A-Za-z][A-Za-z0-9\-]*\.?")
# IPv4address = 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT
_IPV4_RE = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}")
_DIGITS_RE = re.compile(r"[0-9]+")
_LWS = " \t"

# --- Generic parameters --------------------------------------------------------------
# generic-param = token [ EQUAL gen-value ]
# gen-value = token / host / quoted-string
# SEMI = SWS ";" SWS ; EQUAL = SWS "=" SWS
# The value may also be a bare IPv6address: via-received = "received" EQUAL
# (IPv4address / IPv6address) (RFC 3261 §25.1, RFC 5118 §4.5).
_IPV6_BARE = r"[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*"
_PARAM = (
    rf"[ \t]*;[ \t]*([{_TOKEN_CHARS}]+)"
    rf"(?:[ \t]*=[ \t]*({_IPV6_BARE}|[{_TOKEN_CHARS}]+|{_QUOTED}|\[[0-9A-Fa-f:.]+\]))?"
)
_PARAM_RE = re.compile(_PARAM)
# The same, anchored over a whole parameter list (validated in one pass, then split).
_PARAMS_RE = re.compile(f"(?:{_PARAM})*[ \t]*")


def _bad(what: str, text: str, status: int = 400) -> RemoteSipError:
    return RemoteSipError(f"{what}: {text[:200]!r}", status_hint=status)


def is_token(text: str) -> bool:
    """``token`` of RFC 3261 §25.1 (methods, header names, parameter names, tags)."""
    return _TOKEN_RE.fullmatch(text) is not None


def is_valid_call_id(text: str) -> bool:
    """``callid = word [ "@" word ]`` (RFC 3261 §25.1, Call-ID)."""
    return _CALL_ID_RE.fullmatch(text) is not None


def quote_string(text: str) -> str:
    """Render ``text`` as a ``quoted-string``.

    ``\\``, ``"`` and the control characters qdtext excludes become quoted-pairs;
    CR and LF cannot appear even as quoted-pairs (RFC 3261 §25.1), so they are refused.
    """
    if "\r" in text or "\n" in text:
        raise LocalSipError(f"CR/LF cannot be quoted: {text!r}")
    return '"' + _NEEDS_QUOTED_PAIR_RE.sub(r"\\\g<0>", text) + '"'


def unquote_string(text: str) -> str:
    """The content of a ``quoted-string`` (with quotes), quoted-pairs resolved."""
    if _QUOTED_RE.fullmatch(text) is None:
        raise _bad("malformed quoted-string", text)
    return _QUOTED_PAIR_RE.sub(lambda m: m.group(1), text[1:-1])


def parse_params(text: str) -> Params:
    """``*( SEMI generic-param )`` (RFC 3261 §25.1), e.g. ``;tag=1;lr``.

    Values keep their spelling (a quoted-string keeps its quotes); names keep their
    case (compare them case-insensitively).
    """
    if _PARAMS_RE.fullmatch(text) is None:
        raise _bad("malformed parameters", text)
    return tuple((name, value or None) for name, value in _PARAM_RE.findall(text))


def format_params(params: Params) -> str:
    """Inverse of :func:`parse_params`."""
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)


def _get_param(params: Params, name: str) -> str | None:
    low = name.lower()
    for k, v in params:
        if k.lower() == low:
            return v
    return None


def _has_param(params: Params, name: str) -> bool:
    low = name.lower()
    return any(k.lower() == low for k, _ in params)


def _set_param(params: Params, name: str, value: str | None) -> Params:
    low = name.lower()
    out = [(k, v) for k, v in params if k.lower() != low]
    # Keep the parameter where it was if it existed.
    for i, (k, _) in enumerate(params):
        if k.lower() == low:
            out.insert(i, (name, value))
            return tuple(out)
    out.append((name, value))
    return tuple(out)


def split_list(value: str) -> list[str]:
    """Split a comma-separated header value strictly (RFC 3261 §7.3.1, ``COMMA``).

    Commas inside quoted-strings and ``<...>`` do not separate; an empty element or an
    unbalanced quote/bracket is an error (RFC 4475 §3.1.2.1).
    """
    return split_header_values(value, strict=True)


# --- Hosts ---------------------------------------------------------------------------


@lru_cache(maxsize=_CACHE_SIZE)
def _valid_host(host: str) -> bool:
    """``host = hostname / IPv4address / IPv6reference`` (RFC 3261 §25.1)."""
    if not host or len(host) > _MAX_HOST_LENGTH:
        return False
    if host[0] == "[":
        # IPv6reference = "[" IPv6address "]"
        if host[-1] != "]":
            return False
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return False
        return True
    if _IPV4_RE.fullmatch(host):
        return all(int(part) <= 255 for part in host.split("."))
    if _HOSTNAME_RE.fullmatch(host) is None:
        return False
    labels = host.rstrip(".").split(".")
    return all(label[0] != "-" and label[-1] != "-" for label in labels)


def _parse_port(text: str, whole: str) -> int:
    # port = 1*DIGIT (bounded to the 16-bit range of TCP/UDP ports)
    if not _DIGITS_RE.fullmatch(text) or len(text) > 5 or int(text) > 65535:
        raise _bad("bad port", whole)
    return int(text)


def _split_hostport(text: str, whole: str) -> tuple[str, int | None]:
    # hostport = host [ ":" port ]
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise _bad("unterminated IPv6 reference", whole)
        host, rest = text[: close + 1], text[close + 1 :]
        if rest and not rest.startswith(":"):
            raise _bad("junk after IPv6 reference", whole)
        port = _parse_port(rest[1:], whole) if rest else None
    else:
        host, sep, port_text = text.partition(":")
        port = _parse_port(port_text, whole) if sep else None
    if not _valid_host(host):
        raise _bad("bad host", whole)
    return host, port


def _host_key(host: str) -> str:
    """Comparison form of a host: case-folded, IPv6 normalised (RFC 3261 §19.1.4)."""
    if host.startswith("["):
        try:
            return "[" + ipaddress.IPv6Address(host[1:-1]).compressed + "]"
        except ValueError:
            return host.lower()
    return host.lower()


# --- URIs ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, init=False)
class SipUri:
    """A SIP or SIPS URI (RFC 3261 §19.1).

    ``user``, ``password``, parameter names and values and header values keep their
    escaped spelling; :meth:`decoded_user` gives the percent-decoded view. ``host`` is as
    written (IPv6 references keep their brackets). Compare with :func:`uri_equal`, not
    ``==``, to get the §19.1.4 rules.
    """

    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    #: uri-parameters in order: ``;name=value`` or ``;name`` (value None).
    params: Params = ()
    #: ``?name=value&...`` headers, escaped as written.
    headers: tuple[tuple[str, str], ...] = ()
    #: "sip" or "sips" (lower case).
    scheme: str = "sip"

    # Written out rather than generated (init=False): mypyc compiles this one, not the
    # dataclasses module's (sipxmpp.native, "Dataclasses").
    def __init__(
        self,
        host: str,
        user: str | None = None,
        password: str | None = None,
        port: int | None = None,
        params: Params = (),
        headers: tuple[tuple[str, str], ...] = (),
        scheme: str = "sip",
    ) -> None:
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "user", user)
        object.__setattr__(self, "password", password)
        object.__setattr__(self, "port", port)
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "headers", headers)
        object.__setattr__(self, "scheme", scheme)

    def __str__(self) -> str:
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(self.user)
            if self.password is not None:
                parts += [":", self.password]
            parts.append("@")
        parts.append(self.host)
        if self.port is not None:
            parts += [":", str(self.port)]
        parts.append(format_params(self.params))
        if self.headers:
            parts.append("?" + "&".join(f"{k}={v}" for k, v in self.headers))
        return "".join(parts)

    @property
    def secure(self) -> bool:
        return self.scheme == "sips"

    def param(self, name: str) -> str | None:
        """Value of a uri-parameter (case-insensitive name); None if absent or valueless."""
        return _get_param(self.params, name)

    def has_param(self, name: str) -> bool:
        return _has_param(self.params, name)

    def with_param(self, name: str, value: str | None = None) -> SipUri:
        """A copy with the parameter set (replacing any with the same name)."""
        for part in (name,) if value is None else (name, value):
            if _PARAMCHAR_RE.fullmatch(part) is None:
                raise LocalSipError(f"bad uri-parameter {part!r}")
        return replace(self, params=_set_param(self.params, name, value))

    def without_param(self, name: str) -> SipUri:
        low = name.lower()
        return replace(self, params=tuple((k, v) for k, v in self.params if k.lower() != low))

    @property
    def transport(self) -> str | None:
        """The ``transport`` parameter, lower-cased (RFC 3261 §19.1.1)."""
        value = self.param("transport")
        return value.lower() if value is not None else None

    @property
    def lr(self) -> bool:
        """Whether the URI carries ``lr`` (a loose router, RFC 3261 §19.1.1)."""
        return self.has_param("lr")

    @property
    def maddr(self) -> str | None:
        return self.param("maddr")

    def decoded_user(self) -> str | None:
        """The user part percent-decoded as UTF-8 (RFC 3261 §19.1.2; RFC 7247 §6.4 step 3).

        Raises a 400 RemoteSipError if the decoded octets are not UTF-8.
        """
        if self.user is None:
            return None
        return _percent_decode(self.user)

    def without_headers(self) -> SipUri:
        # The URI itself when it has none (it is immutable): a remote target is taken from
        # every target refresh (RFC 3261 §12.2), and Contacts rarely carry headers.
        return replace(self, headers=()) if self.headers else self

    @property
    def address_of_record(self) -> str:
        """``scheme:user@host`` with no port, parameters or headers (RFC 3261 §10.3)."""
        user = f"{self.user}@" if self.user is not None else ""
        return f"{self.scheme}:{user}{self.host}"


@dataclass(frozen=True, slots=True)
class TelUri:
    """A tel URI (RFC 3966 §3).

    ``number`` is the telephone-subscriber digits as written (``+1-212-555-0100`` or a
    local number); ``params`` holds ``;ext=``, ``;isub=``, ``;phone-context=`` and the
    other parameters in order.
    """

    number: str
    params: Params = ()

    def __str__(self) -> str:
        return f"tel:{self.number}{format_params(self.params)}"

    @property
    def scheme(self) -> str:
        return "tel"

    @property
    def is_global(self) -> bool:
        return self.number.startswith("+")

    @property
    def phone_context(self) -> str | None:
        return _get_param(self.params, "phone-context")

    def param(self, name: str) -> str | None:
        return _get_param(self.params, name)

    @property
    def digits(self) -> str:
        """The number without visual separators (RFC 3966 §5.1.1)."""
        return "".join(ch for ch in self.number if ch not in "-.()")


@dataclass(frozen=True, slots=True)
class AbsoluteUri:
    """Any other absolute URI (``absoluteURI``, RFC 3261 §25.1), e.g. ``im:``, ``http:``.

    These appear in To/From/Contact (RFC 4475 §3.3.4); they are kept opaque.
    """

    scheme: str
    rest: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.rest}"


Uri = SipUri | TelUri | AbsoluteUri

# RFC 3966 §3:
# global-number-digits = "+" *phonedigit DIGIT *phonedigit
# local-number-digits = *phonedigit-hex (HEXDIG / "*" / "#")*phonedigit-hex
# phonedigit = DIGIT / [ visual-separator ]; visual-separator = "-" / "." / "(" / ")"
_TEL_GLOBAL_RE = re.compile(r"\+[0-9\-.()]*[0-9][0-9\-.()]*")
_TEL_LOCAL_RE = re.compile(r"[0-9A-Fa-f*#\-.()]*[0-9A-Fa-f*#][0-9A-Fa-f*#\-.()]*")
# parameter = ";" pname ["=" pvalue ]; pname = 1*( alphanum / "-" )
_TEL_PNAME_RE = re.compile(r"[A-Za-z0-9\-]+")


def _parse_tel(text: str) -> TelUri:
    # telephone-uri = "tel:" telephone-subscriber
    # telephone-subscriber = global-number / local-number
    body = text[4:]
    number, _, param_text = body.partition(";")
    params: list[tuple[str, str | None]] = []
    if param_text:
        for item in param_text.split(";"):
            name, eq, value = item.partition("=")
            if _TEL_PNAME_RE.fullmatch(name) is None or (
                eq and _PARAMCHAR_RE.fullmatch(value) is None
            ):
                raise _bad("malformed tel URI parameter", text)
            params.append((name, value if eq else None))
    if number.startswith("+"):
        if _TEL_GLOBAL_RE.fullmatch(number) is None:
            raise _bad("malformed global tel number", text)
    else:
        # local-number = local-number-digits *par context *par (phone-context required)
        if _TEL_LOCAL_RE.fullmatch(number) is None:
            raise _bad("malformed local tel number", text)
        if not _has_param(tuple(params), "phone-context"):
            raise _bad("local tel number without phone-context", text)
    return TelUri(number, tuple(params))


def _parse_sip(text: str, scheme: str) -> SipUri:
    # SIP-URI = "sip:" [ userinfo ] hostport uri-parameters [ headers ]
    # userinfo = ( user / telephone-subscriber ) [ ":" password ] "@"
    rest = text[len(scheme) + 1 :]
    user: str | None = None
    password: str | None = None
    # Neither user nor password may hold an unescaped "@", and nothing after the
    # userinfo may either, so the first "@" ends the userinfo.
    at = rest.find("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user, sep, pw = userinfo.partition(":")
        if _USER_RE.fullmatch(user) is None:
            raise _bad("malformed user part", text)
        if sep:
            if _PASSWORD_RE.fullmatch(pw) is None:
                raise _bad("malformed password", text)
            password = pw
    # headers = "?" header *( "&" header ); header = hname "=" hvalue
    headers: list[tuple[str, str]] = []
    rest, qmark, header_text = rest.partition("?")
    if qmark:
        for item in header_text.split("&"):
            name, eq, value = item.partition("=")
            if not eq or _HNAME_RE.fullmatch(name) is None or not _HVALUE_RE.fullmatch(value):
                raise _bad("malformed URI header", text)
            headers.append((name, value))
    # uri-parameters = *( ";" uri-parameter); other-param = pname [ "=" pvalue ]
    hostport, *param_items = rest.split(";")
    params: list[tuple[str, str | None]] = []
    for item in param_items:
        name, eq, value = item.partition("=")
        if _PARAMCHAR_RE.fullmatch(name) is None or (eq and _PARAMCHAR_RE.fullmatch(value) is None):
            raise _bad("malformed URI parameter", text)
        params.append((name, value if eq else None))
    host, port = _split_hostport(hostport, text)
    return SipUri(host, user, password, port, tuple(params), tuple(headers), scheme)


@lru_cache(maxsize=_CACHE_SIZE)
def parse_any_uri(text: str) -> Uri:
    """Parse any absolute URI: sip/sips/tel structured, others as :class:`AbsoluteUri`.

    ``addr-spec = SIP-URI / SIPS-URI / absoluteURI`` (RFC 3261 §25.1). Raises a 400
    RemoteSipError for malformed text (including any whitespace).
    """
    colon = text.find(":")
    if colon <= 0 or _SCHEME_RE.fullmatch(text, 0, colon) is None:
        raise _bad("not an absolute URI", text)
    scheme = text[:colon].lower()
    if scheme in ("sip", "sips"):
        return _parse_sip(text, scheme)
    if scheme == "tel":
        return _parse_tel(text)
    rest = text[colon + 1 :]
    if _ABS_REST_RE.fullmatch(rest) is None:
        raise _bad("malformed URI", text)
    return AbsoluteUri(scheme, rest)


def parse_uri(text: str) -> SipUri | TelUri:
    """Parse a Request-URI-like URI of a scheme the gateway serves: sip, sips or tel.

    ``Request-URI = SIP-URI / SIPS-URI / absoluteURI`` (RFC 3261 §25.1). Another but
    well-formed scheme raises RemoteSipError 416 (RFC 3261 §8.2.2.1); malformed text 400.
    """
    uri = parse_any_uri(text)
    if isinstance(uri, AbsoluteUri):
        raise RemoteSipError(f"unsupported URI scheme {uri.scheme!r}", 416)
    return uri


def parse_sip_uri(text: str) -> SipUri:
    """Parse a sip: or sips: URI; any other scheme is a 416 RemoteSipError."""
    uri = parse_uri(text)
    if not isinstance(uri, SipUri):
        raise RemoteSipError(f"a SIP URI is required here, not {uri.scheme!r}", 416)
    return uri


_RESERVED = frozenset(";/?:@&=+$,")

# --- Parsing values that differ only in one parameter ------------------------------------
# Every request carries a fresh Via branch (RFC 3261 §8.1.1.7) and most a fresh From or To
# tag (§19.3), so the caches above miss on exactly those values although the rest of the
# text (sent-by, URI, display name, other parameters) repeats from message to message. For
# such a value the text is parsed with the parameter's value replaced by a fixed token (a
# "template", which the cache keeps), and the real value is put back into the result. The
# outcome is the same as parsing the text itself: the value replaced must be a token,
# which the grammar accepts there exactly as it accepts the fixed token (branch and tag are
# tokens, RFC 3261 §25.1), and anything else (quotes, whitespace, the marker inside the
# URI's brackets) takes the plain parse.
_BRANCH_MARK = ";branch="
_TAG_MARK = ";tag="
_HOLE_VALUE = "z9hG4bKx"


def _hole(text: str, mark: str) -> tuple[str, str] | None:
    """(template text, value) when ``mark`` introduces a plain token value outside any
    quotes or angle brackets; None when the text must be parsed as it is."""
    at = text.find(mark)
    if at < 0 or '"' in text[at:] or ">" in text[at:]:
        return None
    start = at + len(mark)
    end = text.find(";", start)
    if end < 0:
        end = len(text)
    value = text[start:end]
    if value == _HOLE_VALUE or _TOKEN_RE.fullmatch(value) is None:
        return None
    return text[:start] + _HOLE_VALUE + text[end:], value


def _fill_hole(params: Params, name: str, value: str) -> Params | None:
    """``params`` with the first ``name`` parameter's placeholder replaced by ``value``."""
    for i, (key, held) in enumerate(params):
        if key == name:
            if held != _HOLE_VALUE:
                return None
            return (*params[:i], (key, value), *params[i + 1 :])
    return None


def _normalize_escapes(text: str) -> str:
    """§19.1.4: characters outside ``reserved`` equal their %HH form; hex is case-free."""
    if "%" not in text:
        return text

    def fix(m: re.Match[str]) -> str:
        code = int(m.group(1), 16)
        ch = chr(code)
        if code < 0x80 and ch not in _RESERVED and code > 0x20:
            return ch
        return "%" + m.group(1).upper()

    return re.sub(r"%([0-9A-Fa-f]{2})", fix, text)


def _percent_decode(text: str) -> str:
    raw = bytearray()
    i = 0
    data = text.encode("utf-8")
    while i < len(data):
        if data[i] == 0x25 and _is_hex2(data[i + 1 : i + 3]):
            raw.append(int(data[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.append(data[i])
            i += 1
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad("percent-decoded text is not UTF-8", text) from exc


def _is_hex2(chunk: bytes) -> bool:
    return len(chunk) == 2 and all(c in b"0123456789abcdefABCDEF" for c in chunk)


# §19.1.4: "A URI that includes a user, ttl, method, maddr or transport parameter ...
# will not match a URI without it"; the others only count when present in both.
_MUST_MATCH_PARAMS = ("user", "ttl", "method", "maddr", "transport")


def _sip_uri_equal(a: SipUri, b: SipUri) -> bool:
    if a.scheme != b.scheme:
        return False
    if (a.user is None) != (b.user is None) or (a.password is None) != (b.password is None):
        return False
    if a.user is not None and b.user is not None:
        if _normalize_escapes(a.user) != _normalize_escapes(b.user):
            return False
    if a.password is not None and b.password is not None:
        if _normalize_escapes(a.password) != _normalize_escapes(b.password):
            return False
    if _host_key(a.host) != _host_key(b.host) or a.port != b.port:
        return False
    pa = {k.lower(): _normalize_escapes(v).lower() if v else v for k, v in a.params}
    pb = {k.lower(): _normalize_escapes(v).lower() if v else v for k, v in b.params}
    for name in _MUST_MATCH_PARAMS:
        if (name in pa) != (name in pb):
            return False
    for name in pa.keys() & pb.keys():
        if pa[name] != pb[name]:
            return False
    # "Header components are never ignored ... MUST be present in both URIs and match."
    ha = {k.lower(): _normalize_escapes(v) for k, v in a.headers}
    hb = {k.lower(): _normalize_escapes(v) for k, v in b.headers}
    return ha == hb


def _tel_uri_equal(a: TelUri, b: TelUri) -> bool:
    # RFC 3966 §4: numbers compare without visual separators; parameters compare as
    # sets, names and values case-insensitively; phone-context domain case-insensitive.
    if a.is_global != b.is_global or a.digits.lower() != b.digits.lower():
        return False
    pa = {k.lower(): (v or "").lower() for k, v in a.params}
    pb = {k.lower(): (v or "").lower() for k, v in b.params}
    return pa == pb


def uri_equal(a: Uri, b: Uri) -> bool:
    """URI equivalence (RFC 3261 §19.1.4 for sip/sips, RFC 3966 §4 for tel).

    Other schemes compare by scheme (case-insensitive) and exact remaining text.
    """
    if isinstance(a, SipUri) and isinstance(b, SipUri):
        return _sip_uri_equal(a, b)
    if isinstance(a, TelUri) and isinstance(b, TelUri):
        return _tel_uri_equal(a, b)
    if isinstance(a, AbsoluteUri) and isinstance(b, AbsoluteUri):
        return a.scheme.lower() == b.scheme.lower() and a.rest == b.rest
    return False


# --- name-addr -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, init=False)
class NameAddr:
    """The value of From, To, Contact, Route, Record-Route, Refer-To, P-Asserted-Identity.

    ``from-spec = ( name-addr / addr-spec ) *( SEMI from-param )`` (RFC 3261 §25.1).
    ``display_name`` is unescaped (None when absent). ``params`` are the header
    parameters (``tag``, ``expires``, ``q``...), never the URI's: in the addr-spec form
    every ``;param`` belongs to the header (RFC 3261 §20.10). ``str()`` always writes the
    name-addr form ``"display" <uri>;params``.
    """

    uri: Uri
    display_name: str | None = None
    params: Params = ()

    # Written out rather than generated (init=False): mypyc compiles this one, not the
    # dataclasses module's (sipxmpp.native, "Dataclasses").
    def __init__(self, uri: Uri, display_name: str | None = None, params: Params = ()) -> None:
        object.__setattr__(self, "uri", uri)
        object.__setattr__(self, "display_name", display_name)
        object.__setattr__(self, "params", params)

    def __str__(self) -> str:
        name = quote_string(self.display_name) + " " if self.display_name is not None else ""
        return f"{name}<{self.uri}>{format_params(self.params)}"

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter (RFC 3261 §19.3)."""
        return _get_param(self.params, "tag")

    def param(self, name: str) -> str | None:
        return _get_param(self.params, name)

    def has_param(self, name: str) -> bool:
        return _has_param(self.params, name)

    def with_param(self, name: str, value: str | None = None) -> NameAddr:
        if not is_token(name) or (
            value is not None and not (is_token(value) or _QUOTED_RE.fullmatch(value))
        ):
            raise LocalSipError(f"bad header parameter {name!r}={value!r}")
        # The constructor, not dataclasses.replace(): several times cheaper per message.
        return NameAddr(self.uri, self.display_name, _set_param(self.params, name, value))

    def with_tag(self, tag: str) -> NameAddr:
        """A copy carrying ``;tag=tag`` (replacing any tag)."""
        return self.with_param("tag", tag)


# display-name = *(token LWS)/ quoted-string
_TOKENS_RE = re.compile(rf"[{_TOKEN_CHARS}]+(?:[ \t]+[{_TOKEN_CHARS}]+)*")


@lru_cache(maxsize=_CACHE_SIZE)
def parse_name_addr(text: str) -> NameAddr:
    """Parse one ``( name-addr / addr-spec ) *( SEMI generic-param )`` value.

    name-addr = [ display-name ] LAQUOT addr-spec RAQUOT
    LAQUOT = SWS "<"; RAQUOT = ">" SWS  (so no whitespace inside the brackets)
    """
    found = _hole(text, _TAG_MARK)
    if found is not None:
        template_text, value = found
        try:
            template = _parse_name_addr_text(template_text)
        except RemoteSipError:
            return _parse_name_addr_text(text)  # raises, naming the text as written
        params = _fill_hole(template.params, "tag", value)
        if params is not None:
            return NameAddr(template.uri, template.display_name, params)
    return _parse_name_addr_text(text)


@lru_cache(maxsize=_CACHE_SIZE)
def _parse_name_addr_text(text: str) -> NameAddr:
    s = text.strip(_LWS)
    display: str | None = None
    if s.startswith('"'):
        m = _QUOTED_RE.match(s)
        if m is None:
            raise _bad("unterminated or malformed quoted display name", text)
        display = unquote_string(m.group(0))
        rest = s[m.end() :].lstrip(_LWS)
        if not rest.startswith("<"):
            raise _bad("quoted display name without <URI>", text)
        s = rest
    lt = s.find("<")
    if lt >= 0:
        if display is None:
            name = s[:lt].strip(_LWS)
            if name:
                if _TOKENS_RE.fullmatch(name) is None:
                    raise _bad("display name must be tokens or a quoted-string", text)
                display = name
        gt = s.find(">", lt)
        if gt < 0:
            raise _bad("missing '>'", text)
        uri_text = s[lt + 1 : gt]
        param_text = s[gt + 1 :]
    else:
        # addr-spec form: "If the URI contains a comma, question mark or semicolon, the
        # URI MUST be enclosed in angle brackets" (RFC 3261 §20), so params start at ";".
        semi = s.find(";")
        uri_text, param_text = (s, "") if semi < 0 else (s[:semi], s[semi:])
        uri_text = uri_text.rstrip(_LWS)
        if "?" in uri_text or "," in uri_text:
            raise _bad("addr-spec with '?' or ',' must be enclosed in <>", text)
    uri = parse_any_uri(uri_text)
    return NameAddr(uri, display, parse_params(param_text) if param_text else ())


def parse_name_addr_list(value: str) -> list[NameAddr]:
    """Every name-addr in a comma-separated header value (Contact, Route, ...)."""
    return [parse_name_addr(part) for part in split_list(value)]


# --- Via -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, init=False)
class Via:
    """One ``via-parm`` (RFC 3261 §20.42).

    ``Via("UDP", "192.0.2.1", 5060, (("branch", "z9hG4bK..."), ("rport", None)))``.
    """

    #: transport, upper-cased ("UDP", "TCP", "TLS", "SCTP", or an extension token).
    transport: str
    #: sent-by host as written (IPv6 references keep their brackets).
    host: str
    #: sent-by port, None when absent (the transport's default applies, §18.2.2).
    port: int | None = None
    params: Params = ()
    #: protocol-name "/" protocol-version, "SIP/2.0" for RFC 3261.
    protocol: str = "SIP/2.0"

    # Written out rather than generated (init=False): mypyc compiles this one, not the
    # dataclasses module's (sipxmpp.native, "Dataclasses").
    def __init__(
        self,
        transport: str,
        host: str,
        port: int | None = None,
        params: Params = (),
        protocol: str = "SIP/2.0",
    ) -> None:
        object.__setattr__(self, "transport", transport)
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "port", port)
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "protocol", protocol)

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.protocol}/{self.transport} {self.host}{port}{format_params(self.params)}"

    def param(self, name: str) -> str | None:
        return _get_param(self.params, name)

    def has_param(self, name: str) -> bool:
        return _has_param(self.params, name)

    @property
    def branch(self) -> str | None:
        """The branch parameter (RFC 3261 §8.1.1.7)."""
        return _get_param(self.params, "branch")

    @property
    def received(self) -> str | None:
        return _get_param(self.params, "received")

    @property
    def has_rport(self) -> bool:
        """Whether the sender asked for symmetric response routing (RFC 3581 §3)."""
        return _has_param(self.params, "rport")

    @property
    def rport(self) -> int | None:
        """The filled-in rport value, None if absent or empty (RFC 3581 §4)."""
        value = _get_param(self.params, "rport")
        return int(value) if value is not None else None

    @property
    def maddr(self) -> str | None:
        return _get_param(self.params, "maddr")

    @property
    def sent_by(self) -> tuple[str, int | None]:
        return self.host, self.port

    @property
    def is_rfc3261_branch(self) -> bool:
        """The magic cookie ``z9hG4bK`` starts the branch (RFC 3261 §8.1.1.7)."""
        branch = self.branch
        return branch is not None and branch.startswith("z9hG4bK")

    def with_param(self, name: str, value: str | None = None) -> Via:
        if not is_token(name) or (value is not None and not _valid_gen_value(value)):
            raise LocalSipError(f"bad Via parameter {name!r}={value!r}")
        return self._with_params(_set_param(self.params, name, value))

    def _with_params(self, params: Params) -> Via:
        # The constructor, not dataclasses.replace(): several times cheaper per message.
        return Via(self.transport, self.host, self.port, params, self.protocol)

    def with_received(self, host: str, port: int) -> Via:
        """The Via a server keeps after receiving a request from ``host``:``port``.

        RFC 3261 §18.2.1: add ``received`` when sent-by's host is a domain name or an
        address other than the packet's source. RFC 3581 §4: if ``rport`` is present
        without a value, set it to the source port and add ``received`` even when it
        equals sent-by.
        """
        params = self.params
        # The usual request (RFC 3581 clients): one valueless rport and no received yet.
        # Same result as the general path below, in one pass over the parameters.
        rport_at = -1
        for i, (k, v) in enumerate(params):
            low = k.lower()
            if low == "rport":
                if rport_at != -1 or v is not None:
                    rport_at = -2
                    break
                rport_at = i
            elif low == "received":
                rport_at = -2
                break
        if rport_at >= 0:
            fast = list(params)
            fast[rport_at] = ("rport", str(port))
            fast.append(("received", _bare_address(host)))
            return self._with_params(tuple(fast))
        rport_requested = _has_param(params, "rport") and _get_param(params, "rport") is None
        if rport_requested:
            params = _set_param(params, "rport", str(port))
        if rport_requested or not _same_address(self.host, host):
            params = _set_param(params, "received", _bare_address(host))
        return self._with_params(params)


def _bare_address(host: str) -> str:
    # via-received = "received" EQUAL (IPv4address / IPv6address): no brackets.
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


@lru_cache(maxsize=_CACHE_SIZE)
def _same_address(sent_by_host: str, source: str) -> bool:
    """True when sent-by's host is an IP literal equal to the source address."""
    try:
        return ipaddress.ip_address(_bare_address(sent_by_host)) == ipaddress.ip_address(
            _bare_address(source)
        )
    except ValueError:
        return False  # a domain name: always add received (§18.2.1)


def _valid_gen_value(value: str) -> bool:
    return bool(
        is_token(value)
        or _QUOTED_RE.fullmatch(value)
        or (value.startswith("[") and _valid_host(value))
        or (":" in value and _is_ip(value))
    )


# via-parm = sent-protocol LWS sent-by *( SEMI via-params )
# sent-protocol = protocol-name SLASH protocol-version SLASH transport
# sent-by = host [ COLON port ]; SLASH = SWS "/" SWS; COLON = SWS ":" SWS
_VIA_RE = re.compile(
    rf"([{_TOKEN_CHARS}]+)[ \t]*/[ \t]*([{_TOKEN_CHARS}]+)[ \t]*/[ \t]*([{_TOKEN_CHARS}]+)"
    r"[ \t]+(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)(?:[ \t]*:[ \t]*([0-9]+))?"
)


@lru_cache(maxsize=_CACHE_SIZE)
def parse_via(text: str) -> Via:
    """Parse one ``via-parm`` (a Via value without commas), RFC 3261 §20.42 / §25.1.

    Checks the parameters RFC 3261 and RFC 3581 define: ``branch = token``,
    ``received = IPv4address / IPv6address``, ``rport [= 1*DIGIT]``, ``ttl = 1*3DIGIT``.
    """
    found = _hole(text, _BRANCH_MARK)
    if found is not None:
        template_text, value = found
        try:
            template = _parse_via_text(template_text)
        except RemoteSipError:
            return _parse_via_text(text)  # raises, naming the text as written
        params = _fill_hole(template.params, "branch", value)
        if params is not None:
            return Via(template.transport, template.host, template.port, params, template.protocol)
    return _parse_via_text(text)


@lru_cache(maxsize=_CACHE_SIZE)
def _parse_via_text(text: str) -> Via:
    s = text.strip(_LWS)
    m = _VIA_RE.match(s)
    if m is None:
        raise _bad("malformed Via", text)
    name, version, transport, host, port_text = m.groups()
    if not _valid_host(host):
        raise _bad("bad Via sent-by host", text)
    port = _parse_port(port_text, text) if port_text is not None else None
    params = parse_params(s[m.end() :])
    for key, value in params:
        low = key.lower()
        if low == "branch" and (value is None or not is_token(value)):
            raise _bad("bad branch", text)
        if low == "received" and (value is None or not _is_ip(value)):
            raise _bad("bad received", text)
        if (
            low == "rport"
            and value is not None
            and (not _DIGITS_RE.fullmatch(value) or len(value) > 5 or int(value) > 65535)
        ):
            raise _bad("bad rport", text)
        if low == "ttl" and (value is None or not _DIGITS_RE.fullmatch(value) or len(value) > 3):
            raise _bad("bad ttl", text)
    return Via(transport.upper(), host, port, params, f"{name}/{version}")


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(_bare_address(value))
    except ValueError:
        return False
    return True


def parse_vias(value: str) -> list[Via]:
    """Every via-parm of one Via header field value (``via-parm *(COMMA via-parm)``)."""
    return [parse_via(part) for part in split_list(value)]


# --- CSeq and scalar fields ----------------------------------------------------------


@dataclass(frozen=True, slots=True, init=False)
class CSeq:
    """``CSeq = "CSeq" HCOLON 1*DIGIT LWS Method`` (RFC 3261 §20.16)."""

    seq: int
    method: str

    # Written out rather than generated (init=False): mypyc compiles this one, not the
    # dataclasses module's (sipxmpp.native, "Dataclasses").
    def __init__(self, seq: int, method: str) -> None:
        object.__setattr__(self, "seq", seq)
        object.__setattr__(self, "method", method)

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


def _uint(text: str, limit: int, what: str, whole: str) -> int:
    # 1*DIGIT, bounded; leading zeros allowed (RFC 4475 §3.1.1.1). The length check keeps
    # int() away from huge digit strings (Python refuses over 4300 digits).
    if not text.isdigit() or not text.isascii():
        raise _bad(f"{what} is not a number", whole)
    if len(text) > 10 and len(text.lstrip("0")) > 10:
        raise _bad(f"{what} out of range", whole)
    value = int(text)
    if value > limit:
        raise _bad(f"{what} out of range", whole)
    return value


_CSEQ_RE = re.compile(rf"([0-9]+)[ \t]+([{_TOKEN_CHARS}]+)")


@lru_cache(maxsize=_CACHE_SIZE)
def parse_cseq(text: str) -> CSeq:
    """Parse a CSeq value; the number must fit 32 bits (RFC 3261 §8.1.1.5)."""
    m = _CSEQ_RE.fullmatch(text.strip(_LWS))
    if m is None:
        raise _bad("malformed CSeq", text)
    return CSeq(_uint(m.group(1), MAX_CSEQ, "CSeq number", text), m.group(2))


def parse_max_forwards(text: str) -> int:
    """``Max-Forwards = "Max-Forwards" HCOLON 1*DIGIT``, 0-255 (RFC 3261 §8.1.1.6)."""
    return _uint(text.strip(_LWS), MAX_MAX_FORWARDS, "Max-Forwards", text)


def parse_delta_seconds(text: str) -> int:
    """``delta-seconds = 1*DIGIT`` (Expires, Min-Expires; 0 to 2**32-1, RFC 3261 §20.19)."""
    return _uint(text.strip(_LWS), MAX_DELTA_SECONDS, "delta-seconds", text)


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# SIP-date = rfc1123-date; rfc1123-date = wkday "," SP date1 SP time SP "GMT"
# date1 = 2DIGIT SP month SP 4DIGIT; time = 2DIGIT ":" 2DIGIT ":" 2DIGIT
_DATE_RE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), ([0-9]{2}) "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) ([0-9]{4}) "
    r"([0-9]{2}):([0-9]{2}):([0-9]{2}) GMT"
)


def parse_sip_date(text: str) -> datetime:
    """Parse a Date header value (RFC 3261 §20.17: only "GMT" is allowed, RFC 4475
    §3.1.2.12). Returns an aware UTC datetime."""
    m = _DATE_RE.fullmatch(text.strip(_LWS))
    if m is None:
        raise _bad("malformed SIP-date", text)
    _, day, month, year, hh, mm, ss = m.groups()
    try:
        return datetime(
            int(year), _MONTHS.index(month) + 1, int(day), int(hh), int(mm), int(ss), tzinfo=UTC
        )
    except ValueError as exc:
        raise _bad("impossible SIP-date", text) from exc


def join_values(values: Iterable[object]) -> str:
    """Render several list values as one header value (``a, b, c``)."""
    return ", ".join(str(v) for v in values)
