"""Wire identifiers and limits of the provisioning format (see ``provisioning/README.md``).

The draft (draft-houri-speermint-presence-im-provision-00, §3-§5) defines no namespace,
media type, URL or limits: every value here is our own decision, written down in the README.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "NAMESPACE",
    "FORM_TYPE",
    "FORMAT_VERSION",
    "FORMAT_MAJOR",
    "MEDIA_TYPE_XML",
    "MEDIA_TYPE_JSON",
    "WELL_KNOWN_PATH",
    "DRAFT_PATH",
    "SIP_PROVISIONING_USER",
    "MAX_DOCUMENT_BYTES",
    "MAX_LIST_ITEMS",
    "MAX_TEXT_LENGTH",
    "MAX_EXTENSIONS",
    "MAX_EXTENSION_VALUES",
]

#: XML namespace of format major version 1. A new major version gets a new namespace.
NAMESPACE: Final = "urn:sipxmpp:xml:ns:pres-im-provisioning:1"
#: Hidden FORM_TYPE of the XEP-0128 form (XEP-0068 §3 lets a protocol namespace name a form).
FORM_TYPE: Final = NAMESPACE
#: Version written in the ``version`` attribute / member. Readers accept any ``1.x``.
FORMAT_VERSION: Final = "1.0"
FORMAT_MAJOR: Final = 1

MEDIA_TYPE_XML: Final = "application/pres-im-provisioning+xml"
MEDIA_TYPE_JSON: Final = "application/pres-im-provisioning+json"

#: RFC 8615 well-known URI (the draft, §5, predates RFC 5785 and gives only an example path).
WELL_KNOWN_PATH: Final = "/.well-known/pres-im-provisioning"
#: The draft's own example path ("domain/pres-im-provisioning", §5), also served.
DRAFT_PATH: Final = "/pres-im-provisioning"
#: User part of the SIP address answering provisioning OPTIONS: ``sip:provisioning@<domain>``.
SIP_PROVISIONING_USER: Final = "provisioning"

#: Largest document (XML or JSON) a reader accepts, checked on the raw bytes *before* any
#: parsing. A full document with every list at a realistic size is 5-15 KiB; 64 KiB keeps a
#: wide margin while bounding parser work and memory per peer, and still fits one SIP
#: message over TCP/TLS (RFC 3261 §18.1.1 only limits UDP). Writers refuse to exceed it.
MAX_DOCUMENT_BYTES: Final = 64 * 1024
#: Most entries in any one list parameter (DNS names, namespaces, mappings, emoticons ...).
#: Far above any real deployment (Lync/IM&P federations list a handful), small enough that
#: validation stays linear and cheap.
MAX_LIST_ITEMS: Final = 128
#: Longest single text value (a URI, a domain, an emoticon meaning), in characters.
#: RFC 1035 caps names at 253 octets; namespace URIs in practice stay below 200.
MAX_TEXT_LENGTH: Final = 512
#: Most extension parameters per document, and values per extension parameter.
MAX_EXTENSIONS: Final = 32
MAX_EXTENSION_VALUES: Final = 32
