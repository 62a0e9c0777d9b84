"""Pydantic model of a peer network's presence & IM provisioning parameters.

Source: draft-houri-speermint-presence-im-provision-00 §2 (the 16 parameters, in five
groups). The draft gives no value types; the types below are our reading of its wording
(see §1.2 of the project's interworking reference and ``provisioning/README.md``):

=====  =============================  ==========================================
 #     parameter (draft §)            model field
=====  =============================  ==========================================
 1     DNS names (§2.1)               ``connectivity.dns_names``
 2     usage of SRV records (§2.1)    ``connectivity.srv``
 3     usage of TLS (§2.1)            ``connectivity.tls_only``
 4     view sharing (§2.2)            ``authorization_privacy.view_sharing``
 5     PIDF extensions (§2.3)         ``presence.pidf_extensions``
 6     PIDF mapping (§2.3)            ``presence.pidf_mapping``
 7     list subscription (§2.3)       ``presence.list_subscription``
 8     logging indication (§2.4)      ``chat.logging``
 9     IM mode (§2.4)                 ``chat.im_modes``
 10    typing indicator (§2.4)        ``chat.is_composing``
 11    rich text (§2.4)               ``chat.rich_text``
 12    emoticons (§2.4)               ``chat.emoticons``
 13    images (§2.4)                  ``chat.images``
 14    N-way chat (§2.4)              ``chat.n_way_chat``
 15    file transfer (§2.4)           ``chat.file_transfer``
 16    peer network privacy (§2.5)    ``clearing_house.peer_network_privacy``
=====  =============================  ==========================================

Every model is frozen and refuses unknown fields. A parameter left out takes its
conservative default ("not supported", an empty list, visible to all), so a minimal
document names only its domain and DNS names. ``extensions`` leaves room for parameters
beyond the draft, each named by an absolute URI.

Field aliases are the kebab-case names used by all three encodings (XML element names,
JSON members, XEP-0128 field vars); Python code may use either spelling.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictStr
from pydantic import model_validator as _model_validator

from .constants import (
    FORM_TYPE,
    MAX_EXTENSION_VALUES,
    MAX_EXTENSIONS,
    MAX_LIST_ITEMS,
    MAX_TEXT_LENGTH,
)

__all__ = [
    "DomainName",
    "MediaType",
    "Uri",
    "ExpandedName",
    "Text",
    "Token",
    "ViewSharingMode",
    "ImMode",
    "Visibility",
    "Connectivity",
    "AuthorizationPrivacy",
    "PidfMapping",
    "PresenceFeatures",
    "RichText",
    "Emoticon",
    "Emoticons",
    "Images",
    "ChatFeatures",
    "PeerNetworkPrivacy",
    "ClearingHouse",
    "Extension",
    "ProvisioningDocument",
    "Parameter",
    "PARAMETERS",
    "parameter_values",
    "differences",
    "normalize_domain",
]


# --------------------------------------------------------------------------------------
# Value types
# --------------------------------------------------------------------------------------

# RFC 1035 §2.3.1 / RFC 1123 §2.1 LDH label; the last label must not be all-numeric
# (RFC 3696 §2), which also keeps IPv4 literals out.
_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
_MAX_DOMAIN_LENGTH = 253  # RFC 1035 §2.3.4 (255 octets on the wire, 253 in text form)

# RFC 6838 §4.2 restricted-name, for type and subtype; no parameters.
_MEDIA_TYPE_RE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}\Z")

# RFC 3986 §3.1 scheme, then anything printable ASCII that a URI may contain (§2: no
# space, no controls, none of <>"{}|\^`).
_URI_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[!#-;=?-\[\]_a-z~]+\Z")
# ASCII subset of an XML NCName (Namespaces in XML 1.0 §3).
_NCNAME = r"[A-Za-z_][A-Za-z0-9._-]*"
_EXPANDED_NAME_RE = re.compile(r"\{([^{}]+)\}(" + _NCNAME + r")\Z")

# Characters that XML 1.0 §2.2 cannot carry (U+FFFE, U+FFFF) besides controls and
# surrogates, which unicodedata reports as Cc / Cs.
_XML_NONCHARS = frozenset("\ufffe\uffff")


def _check_text(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    if len(value) > MAX_TEXT_LENGTH:
        raise ValueError(f"longer than {MAX_TEXT_LENGTH} characters")
    for ch in value:
        if ch in _XML_NONCHARS or unicodedata.category(ch) in ("Cc", "Cs"):
            raise ValueError(f"contains the forbidden character U+{ord(ch):04X}")
    if value != value.strip():
        raise ValueError("must not start or end with whitespace")
    return value


def _check_token(value: str) -> str:
    _check_text(value)
    if any(ch.isspace() for ch in value):
        raise ValueError("must not contain whitespace")
    return value


def normalize_domain(value: str) -> str:
    """Return ``value`` as a canonical DNS name (lower case, no trailing dot).

    Raises :class:`ValueError` if it is not an LDH domain name (RFC 1035 §2.3.1,
    RFC 1123 §2.1; internationalised names must be given as A-labels, RFC 5890).
    """
    if not value.isascii():
        raise ValueError("must be ASCII (use A-labels for internationalised names)")
    name = value.lower()
    if name.endswith("."):
        name = name[:-1]
    if not name or len(name) > _MAX_DOMAIN_LENGTH:
        raise ValueError("is not a DNS name of 1-253 characters")
    labels = name.split(".")
    for label in labels:
        if not _LABEL_RE.match(label):
            raise ValueError(f"has an invalid DNS label {label!r}")
    if labels[-1].isdigit():
        raise ValueError("has an all-numeric top-level label")
    return name


def _check_media_type(value: str) -> str:
    lowered = value.lower()
    if not _MEDIA_TYPE_RE.match(lowered):
        raise ValueError("is not a media type of the form type/subtype (RFC 6838 §4.2)")
    return lowered


def _check_uri(value: str) -> str:
    if len(value) > MAX_TEXT_LENGTH:
        raise ValueError(f"longer than {MAX_TEXT_LENGTH} characters")
    if not _URI_RE.match(value):
        raise ValueError("is not an absolute URI (RFC 3986 §4.3)")
    return value


def _check_expanded_name(value: str) -> str:
    if len(value) > MAX_TEXT_LENGTH:
        raise ValueError(f"longer than {MAX_TEXT_LENGTH} characters")
    match = _EXPANDED_NAME_RE.match(value)
    if match is None:
        raise ValueError("is not an expanded name of the form {namespace-uri}local-name")
    _check_uri(match.group(1))
    return value


#: A DNS name, normalised to lower case without a trailing dot.
DomainName = Annotated[StrictStr, AfterValidator(normalize_domain)]
#: A media type ``type/subtype`` without parameters, normalised to lower case.
MediaType = Annotated[StrictStr, AfterValidator(_check_media_type)]
#: An absolute URI (compared case-sensitively, as XML namespace names are).
Uri = Annotated[StrictStr, AfterValidator(_check_uri)]
#: ``{namespace-uri}local-name`` (James Clark notation) naming a PIDF element or attribute.
ExpandedName = Annotated[StrictStr, AfterValidator(_check_expanded_name)]
#: Free text: 1..MAX_TEXT_LENGTH characters, no controls, no surrounding whitespace.
Text = Annotated[StrictStr, AfterValidator(_check_text)]
#: Like :data:`Text`, without any whitespace at all.
Token = Annotated[StrictStr, AfterValidator(_check_token)]


def _unique(values: Iterable[Any], what: str) -> None:
    seen: set[Any] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"duplicate {what} {value!r}")
        seen.add(value)


def _alias(name: str) -> str:
    return name.replace("_", "-")


class _Model(BaseModel):
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=_alias,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        # Peer data never ends up verbatim in exception text (logs stay bounded).
        hide_input_in_errors=True,
    )


# --------------------------------------------------------------------------------------
# Enumerations
# --------------------------------------------------------------------------------------


class ViewSharingMode(enum.StrEnum):
    """Parameter 4. Roles of draft-ietf-simple-view-sharing **[ours]**: a network may *send*
    shared views (as the presentity's domain), *receive* them (as the watchers' domain),
    do both, or support none."""

    NONE = "none"
    SEND = "send"
    RECEIVE = "receive"
    BOTH = "both"


class ImMode(enum.StrEnum):
    """Parameter 9: page mode (RFC 3428 MESSAGE) or session mode (MSRP, RFC 4975)."""

    PAGE = "page"
    SESSION = "session"


class Visibility(enum.StrEnum):
    """Parameter 16: visible to every peer network, or only to the listed ones."""

    ALL = "all"
    RESTRICTED = "restricted"


# --------------------------------------------------------------------------------------
# Groups
# --------------------------------------------------------------------------------------


class Connectivity(_Model):
    """Draft §2.1: what a peer needs to know in order to connect."""

    dns_names: tuple[DomainName, ...] = Field(
        min_length=1,
        max_length=MAX_LIST_ITEMS,
        description="(1) DNS names through which the network's presence and IM proxies are reached.",
    )
    srv: StrictBool = Field(
        default=False, description="(2) Whether the network publishes DNS SRV records."
    )
    tls_only: StrictBool = Field(
        default=False, description="(3) Whether the network accepts TLS connections only."
    )

    @_model_validator(mode="after")
    def _check(self) -> Connectivity:
        _unique(self.dns_names, "DNS name")
        return self


class AuthorizationPrivacy(_Model):
    """Draft §2.2."""

    view_sharing: ViewSharingMode = Field(
        default=ViewSharingMode.NONE,
        description="(4) View-sharing support (draft-ietf-simple-view-sharing) and its mode.",
    )


class PidfMapping(_Model):
    """One entry of parameter 6: a standard PIDF element and the peer's own equivalent."""

    standard: ExpandedName = Field(description="The standardised PIDF (extension) element.")
    local: ExpandedName = Field(description="The proprietary element used inside the network.")


class PresenceFeatures(_Model):
    """Draft §2.3."""

    pidf_extensions: tuple[Uri, ...] = Field(
        default=(),
        max_length=MAX_LIST_ITEMS,
        description="(5) Namespaces of the PIDF (RFC 3863) extensions the network supports.",
    )
    pidf_mapping: tuple[PidfMapping, ...] = Field(
        default=(),
        max_length=MAX_LIST_ITEMS,
        description="(6) Mapping of standard PIDF elements to the network's own elements.",
    )
    list_subscription: StrictBool = Field(
        default=False,
        description="(7) Whether RFC 4662 resource-list subscriptions from peers are accepted.",
    )

    @_model_validator(mode="after")
    def _check(self) -> PresenceFeatures:
        _unique(self.pidf_extensions, "PIDF extension namespace")
        _unique((m.standard for m in self.pidf_mapping), "mapped standard element")
        return self


def _check_supported_list(supported: bool, items: Sequence[object], what: str) -> None:
    # Draft §2.4: "if yes, a list ... must also be given"; a list without support is
    # contradictory. So ``supported`` holds exactly when the list is non-empty.
    if supported and not items:
        raise ValueError(f"supported {what} needs at least one entry")
    if not supported and items:
        raise ValueError(f"{what} entries given although {what} is not supported")


class RichText(_Model):
    """Parameter 11: rich-text support and the supported formats (media types)."""

    supported: StrictBool = False
    formats: tuple[MediaType, ...] = Field(default=(), max_length=MAX_LIST_ITEMS)

    @_model_validator(mode="after")
    def _check(self) -> RichText:
        _check_supported_list(self.supported, self.formats, "rich-text")
        _unique(self.formats, "rich-text format")
        return self


class Emoticon(_Model):
    """One entry of parameter 12: the emoticon's text and its meaning."""

    text: Token
    meaning: Text


class Emoticons(_Model):
    """Parameter 12: textual emoticon support and the emoticon -> meaning mapping."""

    supported: StrictBool = False
    mapping: tuple[Emoticon, ...] = Field(default=(), max_length=MAX_LIST_ITEMS)

    @_model_validator(mode="after")
    def _check(self) -> Emoticons:
        _check_supported_list(self.supported, self.mapping, "emoticons")
        _unique((e.text for e in self.mapping), "emoticon")
        return self


class Images(_Model):
    """Parameter 13: in-chat image support and the accepted image media types."""

    supported: StrictBool = False
    types: tuple[MediaType, ...] = Field(default=(), max_length=MAX_LIST_ITEMS)

    @_model_validator(mode="after")
    def _check(self) -> Images:
        _check_supported_list(self.supported, self.types, "images")
        _unique(self.types, "image type")
        for media_type in self.types:
            if not media_type.startswith("image/"):
                raise ValueError(f"{media_type!r} is not an image/* media type")
        return self


class ChatFeatures(_Model):
    """Draft §2.4: features that are either supported or not."""

    logging: StrictBool = Field(
        default=False, description="(8) Whether chats arriving from peers are logged."
    )
    im_modes: tuple[ImMode, ...] = Field(
        default=(),
        max_length=len(ImMode),
        description="(9) Supported IM modes: page (RFC 3428) and/or session (MSRP).",
    )
    is_composing: StrictBool = Field(
        default=False, description="(10) Whether RFC 3994 composition indication is supported."
    )
    rich_text: RichText = Field(default_factory=RichText, description="(11) Rich text.")
    emoticons: Emoticons = Field(default_factory=Emoticons, description="(12) Emoticons.")
    images: Images = Field(default_factory=Images, description="(13) Images in chat.")
    n_way_chat: StrictBool = Field(
        default=False, description="(14) Whether multi-party chat (RFC 7701) is enabled."
    )
    file_transfer: StrictBool = Field(
        default=False, description="(15) Whether file transfer (RFC 5547) is enabled."
    )

    @_model_validator(mode="after")
    def _check(self) -> ChatFeatures:
        _unique(self.im_modes, "IM mode")
        return self


class PeerNetworkPrivacy(_Model):
    """Parameter 16: which peer networks may see and interact with this network."""

    visibility: Visibility = Visibility.ALL
    visible_to: tuple[DomainName, ...] = Field(default=(), max_length=MAX_LIST_ITEMS)

    @_model_validator(mode="after")
    def _check(self) -> PeerNetworkPrivacy:
        if self.visibility is Visibility.ALL and self.visible_to:
            raise ValueError("visible-to is only meaningful with visibility 'restricted'")
        _unique(self.visible_to, "visible-to domain")
        return self

    def allows(self, domains: Iterable[str]) -> bool:
        """True if a requester identified by any of ``domains`` may see the network."""
        if self.visibility is Visibility.ALL:
            return True
        allowed = set(self.visible_to)
        return any(domain in allowed for domain in domains)


class ClearingHouse(_Model):
    """Draft §2.5: parameters added when connecting to a clearing house."""

    peer_network_privacy: PeerNetworkPrivacy = Field(
        default_factory=PeerNetworkPrivacy, description="(16) Peer network privacy."
    )


def _check_extension_name(value: str) -> str:
    if value == FORM_TYPE:
        raise ValueError("the format's own namespace cannot name an extension")
    return value


class Extension(_Model):
    """A parameter beyond the draft's sixteen, named by an absolute URI."""

    name: Annotated[Uri, AfterValidator(_check_extension_name)]
    values: tuple[Text, ...] = Field(default=(), max_length=MAX_EXTENSION_VALUES)


class ProvisioningDocument(_Model):
    """Everything one peer network publishes about itself (format version 1)."""

    domain: DomainName = Field(description="The peer network (its SIP/XMPP domain).")
    connectivity: Connectivity
    authorization_privacy: AuthorizationPrivacy = Field(default_factory=AuthorizationPrivacy)
    presence: PresenceFeatures = Field(default_factory=PresenceFeatures)
    chat: ChatFeatures = Field(default_factory=ChatFeatures)
    clearing_house: ClearingHouse = Field(default_factory=ClearingHouse)
    extensions: tuple[Extension, ...] = Field(default=(), max_length=MAX_EXTENSIONS)

    @_model_validator(mode="after")
    def _check(self) -> ProvisioningDocument:
        _unique((e.name for e in self.extensions), "extension")
        return self


# --------------------------------------------------------------------------------------
# The 16 parameters as a flat table (CLI output, channel comparison, tests)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Parameter:
    """Metadata of one draft parameter."""

    #: 1..16, the order of draft §2.
    number: int
    #: Draft group title.
    group: str
    #: Kebab-case name, identical to the XEP-0128 field var where there is one field.
    name: str
    #: Draft wording.
    title: str


PARAMETERS: tuple[Parameter, ...] = (
    Parameter(1, "Connectivity", "dns-names", "DNS names of the Peer Network"),
    Parameter(2, "Connectivity", "srv", "Usage of SRV records"),
    Parameter(3, "Connectivity", "tls-only", "Usage of TLS"),
    Parameter(4, "Authorization & Privacy", "view-sharing", "View sharing support"),
    Parameter(5, "Presence Features", "pidf-extensions", "PIDF extensions"),
    Parameter(6, "Presence Features", "pidf-mapping", "PIDF mapping"),
    Parameter(7, "Presence Features", "list-subscription", "Support for list subscription"),
    Parameter(8, "Chat Features", "logging", "Logging indication"),
    Parameter(9, "Chat Features", "im-modes", "IM mode"),
    Parameter(10, "Chat Features", "is-composing", "Is typing indicator"),
    Parameter(11, "Chat Features", "rich-text", "Rich Text support"),
    Parameter(12, "Chat Features", "emoticons", "Emoticons support"),
    Parameter(13, "Chat Features", "images", "Image support"),
    Parameter(14, "Chat Features", "n-way-chat", "N-way chat"),
    Parameter(15, "Chat Features", "file-transfer", "File transfer"),
    Parameter(16, "Clearing House Services", "peer-network-privacy", "Peer Network Privacy"),
)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def parameter_values(doc: ProvisioningDocument) -> tuple[tuple[Parameter, str], ...]:
    """Each of the 16 parameters with a short human-readable rendering of its value."""
    c, p, ch = doc.connectivity, doc.presence, doc.chat
    privacy = doc.clearing_house.peer_network_privacy
    rendered = (
        ", ".join(c.dns_names),
        _yes(c.srv),
        _yes(c.tls_only),
        doc.authorization_privacy.view_sharing.value,
        ", ".join(p.pidf_extensions) or "-",
        ", ".join(f"{m.standard} -> {m.local}" for m in p.pidf_mapping) or "-",
        _yes(p.list_subscription),
        _yes(ch.logging),
        ", ".join(m.value for m in ch.im_modes) or "none",
        _yes(ch.is_composing),
        ", ".join(ch.rich_text.formats) if ch.rich_text.supported else "no",
        ", ".join(f"{e.text} = {e.meaning}" for e in ch.emoticons.mapping)
        if ch.emoticons.supported
        else "no",
        ", ".join(ch.images.types) if ch.images.supported else "no",
        _yes(ch.n_way_chat),
        _yes(ch.file_transfer),
        "all"
        if privacy.visibility is Visibility.ALL
        else "restricted to " + (", ".join(privacy.visible_to) or "nobody"),
    )
    return tuple(zip(PARAMETERS, rendered, strict=True))


def differences(a: ProvisioningDocument, b: ProvisioningDocument) -> tuple[str, ...]:
    """Names of the parameters (plus ``domain`` / ``extensions``) on which ``a`` and ``b`` differ.

    Ordering inside lists is ignored: ``dns-names`` listed in another order is the same set.
    """
    out: list[str] = []
    if a.domain != b.domain:
        out.append("domain")
    for (param, _), left, right in zip(
        parameter_values(a), _comparables(a), _comparables(b), strict=True
    ):
        if left != right:
            out.append(param.name)
    if {e.name: frozenset(e.values) for e in a.extensions} != {
        e.name: frozenset(e.values) for e in b.extensions
    }:
        out.append("extensions")
    return tuple(out)


def _comparables(doc: ProvisioningDocument) -> tuple[object, ...]:
    c, p, ch = doc.connectivity, doc.presence, doc.chat
    privacy = doc.clearing_house.peer_network_privacy
    return (
        frozenset(c.dns_names),
        c.srv,
        c.tls_only,
        doc.authorization_privacy.view_sharing,
        frozenset(p.pidf_extensions),
        frozenset((m.standard, m.local) for m in p.pidf_mapping),
        p.list_subscription,
        ch.logging,
        frozenset(ch.im_modes),
        ch.is_composing,
        frozenset(ch.rich_text.formats),
        frozenset((e.text, e.meaning) for e in ch.emoticons.mapping),
        frozenset(ch.images.types),
        ch.n_way_chat,
        ch.file_transfer,
        (privacy.visibility, frozenset(privacy.visible_to)),
    )
