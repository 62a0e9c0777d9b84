"""Pure interworking semantics between SIP/SIMPLE and XMPP (RFC 7247, RFC 7572, ...).

Tables and total functions only: no sockets, no asyncio, no slixmpp, and nothing from
``sipxmpp.gateway`` or ``sipxmpp.provisioning``. The runtime converts wire messages into
the neutral types of :mod:`.model`, calls these functions, and sends what they return;
refusals come back as :class:`MappingRefused` (a SIP final response) or
:class:`StanzaRefused` (an XMPP stanza error).
"""

from .addresses import (
    JID_PART_MAX_BYTES,
    MAX_URI_CHARS,
    DomainMap,
    Jid,
    SipUri,
    header_uri,
    is_public_gruu,
    is_temporary_gruu,
    jid_to_sip_uri,
    jid_to_xmpp_uri,
    parse_uri,
    parse_uri_or_header,
    refuse_sips,
    sip_uri_to_jid,
    xep0106_escape,
    xep0106_unescape,
    xmpp_uri_to_jid,
)
from .errors import (
    ERROR_TYPES,
    REASON_PHRASES,
    TABLE_2,
    TABLE_3,
    XMPP_CONDITIONS,
    SipStatus,
    default_error_type,
    reason_phrase,
    sip_status_to_stanza_error,
    stanza_error,
    stanza_error_to_sip_status,
)
from .messages import (
    MAX_SIP_TO_XMPP_BODY_BYTES,
    PAGER_ACCEPT,
    PAGER_MODE_MAX_BYTES,
    language_tag,
    pager_size_error,
    parse_content_type,
    sip_message_to_xmpp,
    thread_to_call_id,
    xmpp_message_to_sip,
)
from .model import (
    WARN_AGENT,
    LocalMappingError,
    MappingError,
    MappingRefused,
    RemoteMappingError,
    SipPagerMessage,
    StanzaError,
    StanzaRefused,
    XmppMessage,
)
from .xhtml import XHTML_IM_NS, XHTML_NS, XhtmlIm, html_to_xhtml_im, sanitize_xhtml_im, xml_safe

__all__ = [
    # model
    "XmppMessage",
    "StanzaError",
    "SipPagerMessage",
    "MappingError",
    "LocalMappingError",
    "RemoteMappingError",
    "MappingRefused",
    "StanzaRefused",
    "WARN_AGENT",
    # addresses (RFC 7247 §6, XEP-0106, RFC 5627 GRUUs)
    "JID_PART_MAX_BYTES",
    "MAX_URI_CHARS",
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
    # errors (RFC 7247 §7, RFC 6120 §8.3.3)
    "XMPP_CONDITIONS",
    "ERROR_TYPES",
    "TABLE_2",
    "TABLE_3",
    "REASON_PHRASES",
    "SipStatus",
    "default_error_type",
    "reason_phrase",
    "stanza_error",
    "sip_status_to_stanza_error",
    "stanza_error_to_sip_status",
    # pager-mode messages (RFC 7572)
    "PAGER_MODE_MAX_BYTES",
    "MAX_SIP_TO_XMPP_BODY_BYTES",
    "PAGER_ACCEPT",
    "sip_message_to_xmpp",
    "xmpp_message_to_sip",
    "pager_size_error",
    "parse_content_type",
    "language_tag",
    "thread_to_call_id",
    # XHTML-IM (XEP-0071)
    "XHTML_NS",
    "XHTML_IM_NS",
    "XhtmlIm",
    "html_to_xhtml_im",
    "sanitize_xhtml_im",
    "xml_safe",
]
