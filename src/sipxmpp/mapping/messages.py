"""Pager-mode instant messages: SIP MESSAGE <-> XMPP ``<message/>`` (RFC 7572).

Theory of operation
===================

SIP -> XMPP (:func:`sip_message_to_xmpp`, RFC 7572 §5 Table 2):

=====================  ==========================================================
Request-URI            ``to``, through :meth:`DomainMap.sip_target_to_jid`
                       (a ``sips:`` Request-URI or To is refused, RFC 7247 §8)
From (+ GRUU)          ``from``: the sender under the component domain; a full JID
                       when the sender is known by a public GRUU (§5 note 1)
Call-ID                ``<thread/>``
Subject                ``<subject/>``
Content-Language       ``xml:lang`` (§8)
body                   ``<body/>``: ``text/plain`` as is (MUST, §7); ``text/html``
                       as its text plus XHTML-IM (SHOULD, and then MUST be XHTML-IM,
                       §7); any other type 415 with ``Accept``
transaction id         ``id``: passed in by the runtime (``stanza_id``)
(none)                 ``type='normal'`` (§5: absent or normal)
=====================  ==========================================================

XMPP -> SIP (:func:`xmpp_message_to_sip`, RFC 7572 §4 Table 1):

=====================  ==========================================================
``to``                 Request-URI and To, through :meth:`DomainMap.xmpp_target_to_sip`
``from``               From: bare JID plus ``;gr=<resource>`` (§4 note 1)
``<body/>``            body, ``text/plain;charset=UTF-8`` (UTF-8 on both sides, §8)
``<subject/>``         Subject
``<thread/>``          Call-ID
``xml:lang``           Content-Language
``type``               not mapped; ``error`` stanzas are never answered with a
                       MESSAGE (RFC 6120 §8.3.1) and ``groupchat`` is refused
``id``                 the runtime's transaction bookkeeping
=====================  ==========================================================

A message without a body (chat states, receipts only) has nothing to carry in pager
mode: the function returns ``None``. XHTML-IM is not sent: the plain ``<body/>`` carries
the meaning (XEP-0071 business rule 2), and RFC 7572 maps only the body.

Size (§6): a MESSAGE outside a session is limited to 1300 bytes (RFC 3428 §8) unless
the path is known to be congestion-controlled. Only the runtime knows the serialized
size, so it calls :func:`pager_size_error` and answers the XMPP sender with the
``<policy-violation/>`` it returns (RFC 7572 §6: SHOULD).
"""

from __future__ import annotations

import codecs
import re
from typing import Final

from .addresses import DomainMap, refuse_sips
from .model import MappingRefused, SipPagerMessage, StanzaError, StanzaRefused, XmppMessage
from .xhtml import html_to_xhtml_im, xml_safe

__all__ = [
    "PAGER_MODE_MAX_BYTES",
    "MAX_SIP_TO_XMPP_BODY_BYTES",
    "MAX_CALL_ID_CHARS",
    "PAGER_ACCEPT",
    "SUPPORTED_CHARSETS",
    "sip_message_to_xmpp",
    "xmpp_message_to_sip",
    "pager_size_error",
    "parse_content_type",
    "language_tag",
    "thread_to_call_id",
]

#: RFC 3428 §8 / RFC 7572 §6: the largest MESSAGE request sent outside a session when
#: the path is not known to be congestion-controlled (200 bytes under the 1500-byte
#: path MTU, so that the request is not fragmented).
PAGER_MODE_MAX_BYTES: Final = 1300

#: Largest MESSAGE body mapped into XMPP. SIP over TCP can carry far more than 1300
#: bytes, but the stanza must fit the XMPP server's stanza size limit (RFC 6120 §13.12
#: guarantees only 10,000 bytes; Prosody's default is 256 KiB), and an HTML body turns
#: into XHTML plus its text, about twice its size. Over it: 413.
MAX_SIP_TO_XMPP_BODY_BYTES: Final = 64 * 1024

#: Longest ``<thread/>`` turned into a Call-ID. A Call-ID is a short token (RFC 3261
#: §8.1.1.4) and counts against the 1300-byte budget; a longer thread gets no Call-ID
#: from the mapping and the runtime generates a fresh one.
MAX_CALL_ID_CHARS: Final = 256

#: What the gateway takes in pager mode, for the ``Accept`` header of a 415
#: (RFC 3261 §21.4.13; RFC 7572 §7: text/plain MUST, text/html SHOULD).
PAGER_ACCEPT: Final = "text/plain, text/html"

#: IANA charset names whose bodies are decoded (RFC 7572 §8 names UTF-8; the others are
#: the charsets IM clients are known to label text with). Compared via Python's codec
#: registry, so aliases (``utf8``, ``latin1``, ``us-ascii``) match too.
SUPPORTED_CHARSETS: Final = frozenset(
    codecs.lookup(name).name
    for name in (
        "utf-8", "us-ascii", "utf-16", "utf-16le", "utf-16be", "utf-32", "utf-32le",
        "utf-32be", "iso-8859-1", "iso-8859-2", "iso-8859-3", "iso-8859-4", "iso-8859-5",
        "iso-8859-6", "iso-8859-7", "iso-8859-8", "iso-8859-9", "iso-8859-10",
        "iso-8859-13", "iso-8859-14", "iso-8859-15", "iso-8859-16", "windows-1250",
        "windows-1251", "windows-1252", "windows-1253", "windows-1254", "windows-1255",
        "windows-1256", "windows-1257", "windows-1258", "koi8-r", "koi8-u", "shift_jis",
        "euc-jp", "iso-2022-jp", "gb2312", "gbk", "gb18030", "big5", "euc-kr",
    )
)  # fmt: skip

# RFC 2045 §5.1 / RFC 3261 §20.15: token and quoted-string parameters.
_TOKEN: Final = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_RE: Final = re.compile(rf"\s*({_TOKEN})\s*/\s*({_TOKEN})\s*")
_PARAM_RE: Final = re.compile(rf'\s*({_TOKEN})\s*=\s*({_TOKEN}|"(?:[^"\\\r\n]|\\.)*")\s*')
# RFC 5646 §2.1, in the short form RFC 3261 §20.13 (Content-Language) uses.
_LANG_RE: Final = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")
# RFC 3261 §25.1: callid = word [ "@" word ].
_CALLID_WORD: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~()<>:\\\"/[]?{}"
)


def _header_text(text: str) -> str:
    """Text made safe for a SIP header value: one line, no control characters."""
    cleaned = "".join(
        " " if ord(char) < 0x20 or ord(char) == 0x7F or 0xD800 <= ord(char) <= 0xDFFF else char
        for char in text
    )
    return " ".join(cleaned.split())


#: Content-Type values whose parse is remembered: a few spellings ("text/plain;charset=UTF-8")
#: make up nearly all traffic, and the regex parse costs more than the rest of the body
#: mapping. Values up to :data:`_CONTENT_TYPE_MEMO_CHARS` long only, so memory is bounded.
_CONTENT_TYPE_MEMO_SIZE: Final = 256
_CONTENT_TYPE_MEMO_CHARS: Final = 128
_content_type_memo: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {}


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """Split a Content-Type into lower-case ``type/subtype`` and its parameters.

    Parameter names are lower-cased, quoted values unquoted. Raises
    :class:`~sipxmpp.mapping.model.MappingRefused` 400 if the value is not a media type.
    """
    hit = _content_type_memo.get(value)
    if hit is not None:
        return hit[0], dict(hit[1])  # a fresh dict: the caller may change it
    media, params = _parse_content_type(value)
    if len(value) <= _CONTENT_TYPE_MEMO_CHARS:
        if len(_content_type_memo) >= _CONTENT_TYPE_MEMO_SIZE:
            _content_type_memo.clear()
        _content_type_memo[value] = (media, tuple(params.items()))
    return media, params


def _parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    media_part, _, rest = value.partition(";")
    match = _MEDIA_RE.fullmatch(media_part)
    if match is None:
        raise MappingRefused(400, "Bad Request", "malformed Content-Type")
    media = f"{match.group(1)}/{match.group(2)}".lower()
    params: dict[str, str] = {}
    position = 0
    text = ";" + rest if rest or value.rstrip().endswith(";") else ""
    while position < len(text):
        if text[position] != ";":
            raise MappingRefused(400, "Bad Request", "malformed Content-Type parameters")
        param = _PARAM_RE.match(text, position + 1)
        if param is None:
            raise MappingRefused(400, "Bad Request", "malformed Content-Type parameter")
        raw = param.group(2)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params.setdefault(param.group(1).lower(), raw)
        position = param.end()
    return media, params


def language_tag(value: str | None) -> str | None:
    """The first well-formed language tag of a Content-Language / ``xml:lang`` value."""
    if not value:
        return None
    for candidate in value.split(","):
        candidate = candidate.strip()
        if _LANG_RE.fullmatch(candidate):
            return candidate
    return None


def thread_to_call_id(thread: str | None) -> str | None:
    """A Call-ID (RFC 3261 §25.1 ``callid``) carrying an XMPP ``<thread/>``.

    A thread that already is a valid Call-ID is used unchanged, so the SIP reply's
    Call-ID maps back to the same thread. Otherwise characters outside ``word`` (and
    every ``@`` but the first, and ``%`` itself) are percent-encoded as UTF-8. Returns
    None for no thread or a result over :data:`MAX_CALL_ID_CHARS` (the runtime then
    generates a Call-ID).
    """
    if not thread:
        return None
    word, at, domain = thread.partition("@")
    if _is_callid_word(word) and (not at or _is_callid_word(domain)):
        call_id = thread
    elif word and domain:
        call_id = _callid_encode(word) + "@" + _callid_encode(domain)
    else:
        call_id = _callid_encode(thread)
    return call_id if len(call_id) <= MAX_CALL_ID_CHARS else None


def _is_callid_word(text: str) -> bool:
    return bool(text) and all(char in _CALLID_WORD for char in text)


def _callid_encode(text: str) -> str:
    """Percent-encode (UTF-8) what a Call-ID ``word`` cannot hold, and ``%`` itself."""
    return "".join(
        char
        if char in _CALLID_WORD and char != "%"
        else "".join(f"%{byte:02X}" for byte in char.encode("utf-8", "replace"))
        for char in text
    )


def _decode_body(body: bytes, charset: str | None) -> str:
    name = charset or "utf-8"  # RFC 7572 §8: UTF-8 on both sides
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        codec = None
    if codec is None or codec not in SUPPORTED_CHARSETS:
        raise MappingRefused(
            415, "Unsupported Media Type", f"charset {name!r} not supported", accept=PAGER_ACCEPT
        )
    try:
        text = body.decode(codec)
    except UnicodeDecodeError:
        raise MappingRefused(400, "Bad Request", f"body is not valid {name}") from None
    return text[1:] if text.startswith("\ufeff") else text


def sip_message_to_xmpp(m: SipPagerMessage, domains: DomainMap, *, stanza_id: str) -> XmppMessage:
    """Map a SIP MESSAGE to the ``<message type='normal'/>`` to send (RFC 7572 §5).

    Raises :class:`~sipxmpp.mapping.model.MappingRefused` with the final response to
    send instead: 480 + Warning 380 for ``sips:`` (RFC 7247 §8), 404 for a target the
    gateway does not serve, 403 for a sender it does not serve, 413 for a body over
    :data:`MAX_SIP_TO_XMPP_BODY_BYTES`, 415 (with ``accept``) for a type or charset it
    does not take, 400 for a malformed Content-Type, URI or body encoding.
    """
    refuse_sips(m.request_uri, m.to_uri)
    # The sender is checked before the target, so that a request from a domain the
    # gateway does not serve learns nothing (always 403) about which targets exist.
    from_jid = domains.sip_sender_to_jid(m.from_uri, contact_uri=m.contact_uri)
    to_jid = domains.sip_target_to_jid(m.request_uri, to_uri=m.to_uri)
    if len(m.body) > MAX_SIP_TO_XMPP_BODY_BYTES:
        raise MappingRefused(413, "Request Entity Too Large", "MESSAGE body too large for XMPP")
    media, params = parse_content_type(m.content_type)
    xhtml: str | None = None
    if media == "text/plain":
        body = _decode_body(m.body, params.get("charset"))
    elif media == "text/html":
        converted = html_to_xhtml_im(_decode_body(m.body, params.get("charset")))
        body, xhtml = converted.text, converted.xhtml
    else:
        raise MappingRefused(
            415, "Unsupported Media Type", f"{media} is not mapped", accept=PAGER_ACCEPT
        )
    return XmppMessage(
        from_jid=str(from_jid),
        to_jid=str(to_jid),
        body=xml_safe(body),
        subject=xml_safe(m.subject) if m.subject else None,
        thread=xml_safe(m.call_id) if m.call_id else None,
        id=stanza_id,
        type="normal",
        lang=language_tag(m.content_language),
        xhtml=xhtml,
    )


def xmpp_message_to_sip(m: XmppMessage, domains: DomainMap) -> SipPagerMessage | None:
    """Map a ``<message/>`` to the SIP MESSAGE to send (RFC 7572 §4), or None.

    None means there is nothing to send in pager mode: no (or an empty) ``<body/>``,
    or an ``error`` stanza (never answered with a new request, RFC 6120 §8.3.1).
    Raises :class:`~sipxmpp.mapping.model.StanzaRefused`: ``jid-malformed``,
    ``remote-server-not-found`` (target not under a component domain),
    ``item-not-found`` (no SIP user in the target), ``not-allowed`` (sender's domain
    not served), ``service-unavailable`` for ``groupchat`` (a SIP user is no room;
    RFC 6121 §8.5.3.2.1 answers undeliverable groupchat so).
    """
    if m.type == "error" or not m.body:
        return None
    if m.type == "groupchat":
        raise StanzaRefused(
            StanzaError("service-unavailable", "cancel", "a SIP user is not a chat room")
        )
    target = domains.xmpp_target_to_sip(m.to_jid)
    sender = domains.xmpp_sender_to_sip(m.from_jid)
    subject = _header_text(m.subject) if m.subject else None
    return SipPagerMessage(
        request_uri=str(target),
        from_uri=str(sender),
        to_uri=str(target),
        call_id=thread_to_call_id(m.thread),
        subject=subject or None,
        content_type="text/plain;charset=UTF-8",
        content_language=language_tag(m.lang),
        body=m.body.encode("utf-8", "replace"),
    )


def pager_size_error(
    serialized_size: int, *, limit: int = PAGER_MODE_MAX_BYTES
) -> StanzaError | None:
    """The ``<policy-violation/>`` for a MESSAGE of ``serialized_size`` bytes, or None.

    RFC 7572 §6: the X2S gateway SHOULD return ``<policy-violation/>`` when the SIP
    MESSAGE it would generate exceeds 1300 bytes (RFC 3428 §8). ``limit`` lets the
    runtime raise the bound on a path known to be congestion-controlled (RFC 3428 §8
    allows it, e.g. TCP/TLS all the way).
    """
    if serialized_size <= limit:
        return None
    return StanzaError(
        "policy-violation",
        "modify",
        f"message too large for SIP pager mode ({serialized_size} > {limit} bytes)",
    )
