"""SIP response codes <-> XMPP stanza error conditions (RFC 7247 §7, RFC 6120 §8.3).

Theory of operation
===================

RFC 7247 §7 gives two tables, both SHOULD-level ("more art than science"):

* Table 2 (§7.1), XMPP condition -> SIP code, in :data:`TABLE_2`. Some rows depend on
  whether the stanza that failed was addressed to a **full JID** (one client: a 4xx, "this
  device cannot") or a **bare JID** (the account: a 6xx, "nowhere will this succeed"):
  feature-not-implemented 405/501, forbidden 403/603, item-not-found 404/604,
  not-acceptable 406/606, recipient-unavailable 480/600. ``<gone/>`` MUST become 301
  when it carries a new address (then the SIP ``Contact``) and 410 otherwise.
* Table 3 (§7.2), SIP code -> XMPP condition, in :data:`TABLE_3`, with defaults per class
  for unlisted codes (:data:`CLASS_DEFAULTS`: 3xx redirect, 4xx bad-request,
  5xx internal-server-error, 6xx recipient-unavailable). A 301 MUST carry the new address
  in ``<gone/>`` (as an ``xmpp:`` URI, RFC 6120 §8.3.3.5); a 410 MUST NOT.

RFC 7247 sets no XMPP error ``type``; :data:`ERROR_TYPES` follows RFC 6120 §8.3.3 (for
the two conditions it gives a choice, policy-violation takes ``modify`` and
unexpected-request ``wait``; undefined-condition takes ``cancel``). The SIP Reason-Phrase
and the XMPP ``<text/>`` are mapped to each other (RFC 7247 §7: MAY), cleaned for the
other side's syntax.

Choices where the tables leave room (each documented beside its row):

* service-unavailable -> **403**, never 503 (Table 2 note: 503 would say the whole SIP
  server is out of service; 403 and 405 are the suggested alternatives, and 405 would
  oblige us to send an ``Allow`` header listing methods we cannot know).
* remote-server-not-found -> **404** (the gateway cannot tell "does not exist" from
  "cannot be resolved", and 408 would invite retries).
* unexpected-request -> **400**: 491 Request Pending (RFC 3261 §21.4.27) speaks about a
  pending request in the same INVITE dialog, which is false for anything the gateway maps.
* not-authorized -> 401 and registration-required -> 407 only when the caller can add
  the challenge RFC 3261 §21.4.2/§21.4.8 make mandatory (``challenge_capable=True``);
  otherwise 403, since a 401/407 without ``WWW-Authenticate``/``Proxy-Authenticate`` is
  malformed and the gateway has no credentials of the XMPP side to challenge for.
* 305 Use Proxy -> ``<redirect/>`` without an address: a proxy is no XMPP entity.
* a 301 whose ``Contact`` cannot be named in XMPP -> ``<gone/>`` without an address
  (the peer gave us nothing we could pass on); a ``<gone/>`` whose address cannot be
  named in SIP -> 410.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from .addresses import (
    DomainMap,
    Jid,
    jid_to_sip_uri,
    jid_to_xmpp_uri,
    parse_uri_or_header,
    sip_uri_to_jid,
)
from .addresses import xmpp_uri_to_jid as _xmpp_uri_to_jid
from .model import LocalMappingError, MappingRefused, StanzaError, StanzaRefused
from .xhtml import xml_safe

__all__ = [
    "XMPP_CONDITIONS",
    "ERROR_TYPES",
    "TABLE_2",
    "TABLE_3",
    "CLASS_DEFAULTS",
    "REASON_PHRASES",
    "MAX_REASON_PHRASE_CHARS",
    "MAX_ERROR_TEXT_CHARS",
    "SipStatus",
    "default_error_type",
    "reason_phrase",
    "sip_status_to_stanza_error",
    "stanza_error_to_sip_status",
    "stanza_error",
]

#: RFC 6120 §8.3.3: the defined stanza error conditions.
XMPP_CONDITIONS: Final = frozenset(
    {
        "bad-request",
        "conflict",
        "feature-not-implemented",
        "forbidden",
        "gone",
        "internal-server-error",
        "item-not-found",
        "jid-malformed",
        "not-acceptable",
        "not-allowed",
        "not-authorized",
        "policy-violation",
        "recipient-unavailable",
        "redirect",
        "registration-required",
        "remote-server-not-found",
        "remote-server-timeout",
        "resource-constraint",
        "service-unavailable",
        "subscription-required",
        "undefined-condition",
        "unexpected-request",
    }
)

#: RFC 6120 §8.3.3: the error ``type`` each condition is normally sent with.
ERROR_TYPES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "bad-request": "modify",
        "conflict": "cancel",
        "feature-not-implemented": "cancel",
        "forbidden": "auth",
        "gone": "cancel",
        "internal-server-error": "cancel",
        "item-not-found": "cancel",
        "jid-malformed": "modify",
        "not-acceptable": "modify",
        "not-allowed": "cancel",
        "not-authorized": "auth",
        "policy-violation": "modify",  # §8.3.3.12: "modify" or "wait"
        "recipient-unavailable": "wait",
        "redirect": "modify",
        "registration-required": "auth",
        "remote-server-not-found": "cancel",
        "remote-server-timeout": "wait",
        "resource-constraint": "wait",
        "service-unavailable": "cancel",
        "subscription-required": "auth",
        "undefined-condition": "cancel",  # §8.3.3.21: any type
        "unexpected-request": "wait",  # §8.3.3.22: "wait" or "modify"
    }
)

#: RFC 7247 §7.1 Table 2: condition -> (code for a full JID, code for a bare JID).
#: ``gone`` is decided by the presence of a new address (301 with it, 410 without), and
#: not-authorized/registration-required by ``challenge_capable``; see the module notes.
TABLE_2: Final[Mapping[str, tuple[int, int]]] = MappingProxyType(
    {
        "bad-request": (400, 400),
        "conflict": (400, 400),
        "feature-not-implemented": (405, 501),  # note 1: full -> 405, bare -> 501
        "forbidden": (403, 603),  # note 2: full -> 4xx, bare -> 6xx
        "gone": (410, 410),  # note 3: 301 if <gone/> carries a new address
        "internal-server-error": (500, 500),
        "item-not-found": (404, 604),  # note 2
        "jid-malformed": (400, 400),
        "not-acceptable": (406, 606),  # note 2
        "not-allowed": (403, 403),
        "not-authorized": (401, 401),
        "policy-violation": (403, 403),
        "recipient-unavailable": (480, 600),  # note 2
        "redirect": (302, 302),
        "registration-required": (407, 407),
        "remote-server-not-found": (404, 404),  # note 4: 404 or 408; we cannot tell
        "remote-server-timeout": (408, 408),
        "resource-constraint": (500, 500),
        "service-unavailable": (403, 403),  # note 5: never 503; 403 or 405
        "subscription-required": (400, 400),
        "undefined-condition": (400, 400),
        "unexpected-request": (400, 400),  # 491 or 400; 491 is INVITE-dialog glare only
    }
)

#: RFC 7247 §7.2 Table 3: SIP code -> condition.
TABLE_3: Final[Mapping[int, str]] = MappingProxyType(
    {
        300: "redirect",
        301: "gone",  # note 1: MUST carry the new address
        302: "redirect",
        305: "redirect",
        380: "not-acceptable",
        400: "bad-request",
        401: "not-authorized",
        402: "bad-request",  # note 2: payment-required was dropped from RFC 6120
        403: "forbidden",  # note 3: not-allowed or policy-violation also fit
        404: "item-not-found",  # note 4: remote-server-not-found when the domain is gone
        405: "feature-not-implemented",
        406: "not-acceptable",
        407: "registration-required",
        408: "remote-server-timeout",  # note 5
        410: "gone",  # note 1: MUST NOT carry a new address
        413: "policy-violation",
        414: "policy-violation",
        415: "not-acceptable",
        416: "not-acceptable",
        420: "feature-not-implemented",
        421: "not-acceptable",
        423: "resource-constraint",
        430: "recipient-unavailable",  # RFC 5626 Flow Failed
        439: "feature-not-implemented",  # RFC 5626 First Hop Lacks Outbound Support
        440: "policy-violation",  # RFC 5393 Max-Breadth Exceeded
        480: "recipient-unavailable",
        481: "item-not-found",
        482: "not-acceptable",
        483: "not-acceptable",
        484: "item-not-found",
        485: "item-not-found",
        486: "recipient-unavailable",  # Busy Here: never <conflict/>
        487: "recipient-unavailable",
        488: "not-acceptable",
        489: "policy-violation",
        491: "unexpected-request",
        493: "bad-request",
        500: "internal-server-error",
        501: "feature-not-implemented",
        502: "remote-server-not-found",
        503: "internal-server-error",  # note 9: not service-unavailable
        504: "remote-server-timeout",
        505: "not-acceptable",
        513: "policy-violation",
        600: "recipient-unavailable",
        603: "recipient-unavailable",
        604: "item-not-found",
        606: "not-acceptable",
    }
)

#: RFC 7247 §7.2: the condition for a code Table 3 does not list, by class.
CLASS_DEFAULTS: Final[Mapping[int, str]] = MappingProxyType(
    {3: "redirect", 4: "bad-request", 5: "internal-server-error", 6: "recipient-unavailable"}
)

#: Default Reason-Phrases (RFC 3261 §21 and the RFCs that registered later codes).
REASON_PHRASES: Final[Mapping[int, str]] = MappingProxyType(
    {
        300: "Multiple Choices",
        301: "Moved Permanently",
        302: "Moved Temporarily",
        305: "Use Proxy",
        380: "Alternative Service",
        400: "Bad Request",
        401: "Unauthorized",
        402: "Payment Required",
        403: "Forbidden",
        404: "Not Found",
        405: "Method Not Allowed",
        406: "Not Acceptable",
        407: "Proxy Authentication Required",
        408: "Request Timeout",
        410: "Gone",
        412: "Conditional Request Failed",
        413: "Request Entity Too Large",
        414: "Request-URI Too Long",
        415: "Unsupported Media Type",
        416: "Unsupported URI Scheme",
        417: "Unknown Resource-Priority",
        420: "Bad Extension",
        421: "Extension Required",
        422: "Session Interval Too Small",
        423: "Interval Too Brief",
        428: "Use Identity Header",
        429: "Provide Referrer Identity",
        430: "Flow Failed",
        433: "Anonymity Disallowed",
        436: "Bad Identity-Info",
        437: "Unsupported Certificate",
        438: "Invalid Identity Header",
        439: "First Hop Lacks Outbound Support",
        440: "Max-Breadth Exceeded",
        469: "Bad Info Package",
        470: "Consent Needed",
        480: "Temporarily Unavailable",
        481: "Call/Transaction Does Not Exist",
        482: "Loop Detected",
        483: "Too Many Hops",
        484: "Address Incomplete",
        485: "Ambiguous",
        486: "Busy Here",
        487: "Request Terminated",
        488: "Not Acceptable Here",
        489: "Bad Event",
        491: "Request Pending",
        493: "Undecipherable",
        494: "Security Agreement Required",
        500: "Server Internal Error",
        501: "Not Implemented",
        502: "Bad Gateway",
        503: "Service Unavailable",
        504: "Server Time-out",
        505: "Version Not Supported",
        513: "Message Too Large",
        580: "Precondition Failure",
        600: "Busy Everywhere",
        603: "Decline",
        604: "Does Not Exist Anywhere",
        606: "Not Acceptable",
    }
)

#: Longest Reason-Phrase built from an XMPP ``<text/>``. The phrase is a short human hint
#: (RFC 3261 §21); the text comes from the XMPP side unchecked, so it is cut here to keep
#: the status line small and the response far under the 1300-byte UDP budget (RFC 3261
#: §18.1.1).
MAX_REASON_PHRASE_CHARS: Final = 128

#: Longest ``<text/>`` built from a SIP Reason-Phrase (same reasoning, other direction).
MAX_ERROR_TEXT_CHARS: Final = 256

# Conditions whose status code RFC 3261 only allows with a challenge header.
_CHALLENGE_CODES: Final = frozenset({401, 407})


@dataclass(frozen=True, slots=True)
class SipStatus:
    """A SIP final response the runtime should send for an XMPP error."""

    #: Status code, 300-699.
    code: int
    #: Reason-Phrase (RFC 3261 §25.1 ``Reason-Phrase``: no CR/LF, no controls).
    reason: str
    #: For 301/302: the ``Contact`` (new address of the target), a SIP URI.
    contact: str | None = None

    def __post_init__(self) -> None:
        if not 300 <= self.code <= 699:
            raise LocalMappingError(f"{self.code} is not an error/redirect status")
        if any(ord(char) < 0x20 and char != "\t" or ord(char) == 0x7F for char in self.reason):
            raise LocalMappingError("a Reason-Phrase cannot hold control characters")


def default_error_type(condition: str) -> str:
    """RFC 6120 §8.3.3 type of ``condition``; ``cancel`` for an unknown condition."""
    return ERROR_TYPES.get(condition, "cancel")


def stanza_error(condition: str, text: str | None = None, *, uri: str | None = None) -> StanzaError:
    """A :class:`StanzaError` with the RFC 6120 §8.3.3 type of ``condition``."""
    if condition not in XMPP_CONDITIONS:
        raise LocalMappingError(f"{condition!r} is not an RFC 6120 stanza error condition")
    return StanzaError(condition, default_error_type(condition), text, uri)


def reason_phrase(code: int) -> str:
    """The usual Reason-Phrase of ``code`` (falls back to the class name)."""
    phrase = REASON_PHRASES.get(code)
    if phrase is not None:
        return phrase
    return {
        1: "Trying",
        2: "OK",
        3: "Redirection",
        4: "Client Error",
        5: "Server Error",
        6: "Global Failure",
    }.get(code // 100, "Unknown")


def _xml_text(text: str, limit: int) -> str | None:
    """A Reason-Phrase as ``<text/>``: XML-safe, one line, at most ``limit`` characters."""
    cleaned = " ".join(xml_safe(text[: limit * 2]).split())[:limit]
    return cleaned or None


def _reason_text(text: str) -> str | None:
    """Text cleaned for a SIP Reason-Phrase: one line, no control characters."""
    cleaned = "".join(
        " "
        if (ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F or 0xD800 <= ord(char) <= 0xDFFF)
        else char
        for char in text[: MAX_REASON_PHRASE_CHARS * 2]
    )
    cleaned = " ".join(cleaned.split())[:MAX_REASON_PHRASE_CHARS].strip()
    return cleaned or None


def sip_status_to_stanza_error(
    code: int,
    reason: str | None = None,
    *,
    contact: str | None = None,
    domains: DomainMap | None = None,
) -> StanzaError:
    """Map a SIP failure response to the stanza error for the XMPP sender (Table 3).

    ``reason`` (the Reason-Phrase) becomes ``<text/>``. For 301 the ``contact`` (the
    response's Contact header value, a URI or a name-addr) becomes the ``xmpp:`` URI in ``<gone/>``; for 300/302 it
    becomes the ``<redirect/>`` address. The address is mapped with ``domains`` when
    given (a served SIP domain to its component domain, the SIP name of an XMPP domain
    back to it), else with the plain RFC 7247 §6.4 algorithm.

    Only 3xx-6xx are mapped (RFC 7247 §7); another code is a caller bug
    (:class:`~sipxmpp.mapping.model.LocalMappingError`).
    """
    if not 300 <= code <= 699:
        raise LocalMappingError(f"only 3xx-6xx responses map to stanza errors, not {code}")
    condition = TABLE_3.get(code) or CLASS_DEFAULTS[code // 100]
    text = _xml_text(reason, MAX_ERROR_TEXT_CHARS) if reason else None
    uri: str | None = None
    if condition in ("gone", "redirect") and contact is not None and code not in (305, 410):
        uri = _contact_to_xmpp_uri(contact, domains)
    return StanzaError(condition, default_error_type(condition), text, uri)


def _contact_to_xmpp_uri(contact: str, domains: DomainMap | None) -> str | None:
    try:
        uri = parse_uri_or_header(contact)
        jid = sip_uri_to_jid(uri) if domains is None else domains.sip_address_to_jid(uri)
    except MappingRefused:
        return None
    return jid_to_xmpp_uri(jid)


def stanza_error_to_sip_status(
    error: StanzaError,
    *,
    addressed_to: str,
    domains: DomainMap | None = None,
    challenge_capable: bool = False,
) -> SipStatus:
    """Map a stanza error to the SIP final response for the SIP requester (Table 2).

    ``addressed_to`` is the JID the failed stanza was sent to: a full JID selects the
    4xx of the rows that have a 4xx/6xx pair, a bare JID the 6xx (Table 2 notes 1-2).
    ``<gone/>`` with an ``xmpp:`` address gives 301 with that address as the Contact
    (mapped with ``domains`` when given, else with RFC 7247 §6.5), ``<redirect/>`` with
    one gives 302 likewise. An unknown condition counts as undefined-condition (RFC 6120
    §8.3.2). ``<text/>`` becomes the Reason-Phrase, else the code's usual phrase.
    """
    condition = error.condition if error.condition in TABLE_2 else "undefined-condition"
    full = _is_full_jid(addressed_to)
    full_code, bare_code = TABLE_2[condition]
    code = full_code if full else bare_code
    contact: str | None = None
    if condition in ("gone", "redirect") and error.uri:
        contact = _xmpp_uri_to_contact(error.uri, domains)
        if condition == "gone" and contact is not None:
            code = 301  # Table 2 note 3: MUST be 301 with a new address
    if code in _CHALLENGE_CODES and not challenge_capable:
        code = 403
    reason = (_reason_text(error.text) if error.text else None) or reason_phrase(code)
    return SipStatus(code, reason, contact)


def _is_full_jid(text: str) -> bool:
    try:
        return Jid.parse(text).is_full
    except StanzaRefused:
        return "/" in text


def _xmpp_uri_to_contact(uri: str, domains: DomainMap | None) -> str | None:
    try:
        jid = _xmpp_uri_to_jid(uri)
        sip = jid_to_sip_uri(jid) if domains is None else domains.jid_to_sip_address(jid)
    except StanzaRefused:
        return None
    return str(sip)
