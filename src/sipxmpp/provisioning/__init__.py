"""Capability provisioning between peer networks.

Implements our encoding of draft-houri-speermint-presence-im-provision-00: the model of
the 16 parameters (:mod:`.model`), the XML format with its XSD (:mod:`.xmlcodec`), the
JSON format (:mod:`.jsoncodec`), the XEP-0128 form (:mod:`.form`), XEP-0115 caps
(:mod:`.caps`), per-peer views and Peer Network Privacy (:mod:`.views`), the shared source
of truth for all channels (:mod:`.publisher`), a cache of peers' documents (:mod:`.store`)
and the HTTP server and client (:mod:`.http`, the only module importing aiohttp; import it
explicitly). The format itself is specified in ``provisioning/README.md``.

This package never imports :mod:`sipxmpp.gateway`; the SIP OPTIONS and XMPP wiring lives in
``gateway.runtime`` and uses these codecs.
"""

from .caps import (
    CapsVerdict,
    DiscoInfo,
    Identity,
    compute_ver,
    validate_disco_info,
    verification_string,
    verify_ver,
)
from .constants import (
    DRAFT_PATH,
    FORM_TYPE,
    FORMAT_VERSION,
    MAX_DOCUMENT_BYTES,
    MEDIA_TYPE_JSON,
    MEDIA_TYPE_XML,
    NAMESPACE,
    SIP_PROVISIONING_USER,
    WELL_KNOWN_PATH,
)
from .errors import LocalProvisioningError, ProvisioningError, Reason, RemoteProvisioningError
from .form import DataForm, FormField, document_to_form, form_to_document
from .jsoncodec import parse_json, to_json
from .media import explicitly_accepts, negotiate
from .model import (
    PARAMETERS,
    AuthorizationPrivacy,
    ChatFeatures,
    ClearingHouse,
    Connectivity,
    Emoticon,
    Emoticons,
    Extension,
    Images,
    ImMode,
    PeerNetworkPrivacy,
    PidfMapping,
    PresenceFeatures,
    ProvisioningDocument,
    RichText,
    ViewSharingMode,
    Visibility,
    differences,
    parameter_values,
)
from .publisher import ProvisioningPublisher, Rendered
from .store import Channel, PeerDocumentStore, PeerRecord
from .views import (
    PeerView,
    ProvisioningPolicy,
    Refused,
    Requester,
    Visible,
    requester_from_jid,
    requester_from_peercert,
    resolve_view,
)
from .xmlcodec import load_schema, parse_xml, to_xml

__all__ = [
    "AuthorizationPrivacy",
    "CapsVerdict",
    "Channel",
    "ChatFeatures",
    "ClearingHouse",
    "Connectivity",
    "DRAFT_PATH",
    "DataForm",
    "DiscoInfo",
    "Emoticon",
    "Emoticons",
    "Extension",
    "FORMAT_VERSION",
    "FORM_TYPE",
    "FormField",
    "Identity",
    "ImMode",
    "Images",
    "LocalProvisioningError",
    "MAX_DOCUMENT_BYTES",
    "MEDIA_TYPE_JSON",
    "MEDIA_TYPE_XML",
    "NAMESPACE",
    "PARAMETERS",
    "PeerDocumentStore",
    "PeerNetworkPrivacy",
    "PeerRecord",
    "PeerView",
    "PidfMapping",
    "PresenceFeatures",
    "ProvisioningDocument",
    "ProvisioningError",
    "ProvisioningPolicy",
    "ProvisioningPublisher",
    "Reason",
    "Refused",
    "RemoteProvisioningError",
    "Rendered",
    "Requester",
    "RichText",
    "SIP_PROVISIONING_USER",
    "ViewSharingMode",
    "Visibility",
    "Visible",
    "WELL_KNOWN_PATH",
    "compute_ver",
    "differences",
    "document_to_form",
    "explicitly_accepts",
    "form_to_document",
    "load_schema",
    "negotiate",
    "parameter_values",
    "parse_json",
    "parse_xml",
    "requester_from_jid",
    "requester_from_peercert",
    "resolve_view",
    "to_json",
    "to_xml",
    "validate_disco_info",
    "verification_string",
    "verify_ver",
]
