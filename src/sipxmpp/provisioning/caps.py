"""XEP-0115 (Entity Capabilities, v1.6) verification strings, over disco#info plain data.

Theory of operation
-------------------
The gateway's component JID announces ``<c xmlns='http://jabber.org/protocol/caps'
hash='sha-1' node=... ver=.../>`` in its presence. ``ver`` is a hash over its disco#info
identities, features and XEP-0128 forms (XEP-0115 §5.1), and the provisioning form is one
of those forms, so a change of any provisioning value changes ``ver``: a peer that cached
the old ``ver`` re-queries disco#info, which is how XMPP peers see a new document.

Generation (§5.1), all sorting in "i;octet" order (RFC 4790 §9.3; Python's code-point
order of ``str`` equals UTF-8 byte order):

1. identities sorted by category, type, xml:lang (then name, for determinism), each
   appended as ``category/type/lang/name<`` (empty parts keep their slashes);
2. features sorted, each ``feature<``;
3. forms with a hidden FORM_TYPE sorted by FORM_TYPE; for each ``FORM_TYPE<``, then its
   other fields sorted by var, each ``var<`` followed by its sorted values ``value<``;
4. UTF-8, hash, Base64 (RFC 4648 §4) with padding.

Verification (§5.4): a response with a duplicate identity, a duplicate feature, two forms
with one FORM_TYPE, or a FORM_TYPE with differing values is ill-formed (refused with
``caps-ill-formed``); forms without a hidden FORM_TYPE are ignored. A recomputed ``ver``
that matches may be cached globally, a mismatch must not be cached, an unknown hash
function allows caching per JID only (:class:`CapsVerdict`).

Functions here are pure; :func:`disco_info_from_element` / :func:`disco_info_to_element`
convert to and from lxml so the slixmpp edge can pass serialized stanzas through.
"""

from __future__ import annotations

import base64
import enum
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from lxml import etree

from .errors import Reason, RemoteProvisioningError
from .form import DATA_FORMS_NS, DataForm, form_from_element, form_to_element

__all__ = [
    "CAPS_NS",
    "DISCO_INFO_NS",
    "XML_LANG",
    "HASH_FUNCTIONS",
    "MAX_IDENTITIES",
    "MAX_FEATURES",
    "MAX_FORMS",
    "Identity",
    "DiscoInfo",
    "CapsVerdict",
    "verification_string",
    "compute_ver",
    "validate_disco_info",
    "verify_ver",
    "caps_node",
    "caps_element",
    "disco_info_from_element",
    "disco_info_to_element",
]

CAPS_NS = "http://jabber.org/protocol/caps"
DISCO_INFO_NS = "http://jabber.org/protocol/disco#info"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"

#: IANA "Hash Function Textual Names" (XEP-0115 §5.1 step 6) we can compute.
HASH_FUNCTIONS: dict[str, Callable[[bytes], bytes]] = {
    "sha-1": lambda b: hashlib.sha1(b).digest(),
    "sha-224": lambda b: hashlib.sha224(b).digest(),
    "sha-256": lambda b: hashlib.sha256(b).digest(),
    "sha-384": lambda b: hashlib.sha384(b).digest(),
    "sha-512": lambda b: hashlib.sha512(b).digest(),
}

#: Bounds on a peer's disco#info result. Real servers and gateways advertise a few
#: identities and 10-100 features (Prosody with many modules: ~60); these limits stop a
#: hostile peer from making hashing and validation unbounded.
MAX_IDENTITIES = 64
MAX_FEATURES = 1024
MAX_FORMS = 16


@dataclass(frozen=True, slots=True, order=True)
class Identity:
    """A disco#info ``<identity/>`` (XEP-0030 §3.1); field order is the §5.1 sort order."""

    category: str
    type: str
    lang: str = ""
    name: str = ""


@dataclass(frozen=True, slots=True)
class DiscoInfo:
    """The hashed parts of a disco#info result."""

    identities: tuple[Identity, ...]
    features: tuple[str, ...]
    forms: tuple[DataForm, ...] = ()


class CapsVerdict(enum.Enum):
    """Outcome of XEP-0115 §5.4 verification."""

    #: ``ver`` recomputed and equal: cache globally for every JID announcing it.
    VALID = "valid"
    #: ``ver`` differs: the result MUST NOT be cached under that ``ver``.
    MISMATCH = "mismatch"
    #: Unknown hash function: associate the result with the announcing JID only.
    UNKNOWN_HASH = "unknown-hash"


def _hashed_forms(forms: Iterable[DataForm]) -> list[tuple[str, DataForm]]:
    # §5.4 step 3.6: a form without a hidden FORM_TYPE is ignored.
    keyed = [(f.form_type, f) for f in forms]
    return sorted(((t, f) for t, f in keyed if t is not None), key=lambda pair: pair[0])


def verification_string(info: DiscoInfo) -> str:
    """The XEP-0115 §5.1 string S (before hashing)."""
    parts: list[str] = []
    for ident in sorted(info.identities):
        parts.append(f"{ident.category}/{ident.type}/{ident.lang}/{ident.name}<")
    for feature in sorted(info.features):
        parts.append(f"{feature}<")
    for form_type, form in _hashed_forms(info.forms):
        parts.append(f"{form_type}<")
        fields = sorted((f for f in form.fields if f.var != "FORM_TYPE"), key=lambda f: f.var)
        for field in fields:
            parts.append(f"{field.var}<")
            parts.extend(f"{value}<" for value in sorted(field.values))
    return "".join(parts)


def compute_ver(info: DiscoInfo, hash_name: str = "sha-1") -> str:
    """Base64 of the ``hash_name`` digest of :func:`verification_string`.

    Raises :class:`KeyError` for a hash function outside :data:`HASH_FUNCTIONS`.
    """
    digest = HASH_FUNCTIONS[hash_name](verification_string(info).encode("utf-8"))
    return base64.b64encode(digest).decode("ascii")


def _ill_formed(message: str) -> RemoteProvisioningError:
    return RemoteProvisioningError(Reason.CAPS_ILL_FORMED, message[:300])


def validate_disco_info(info: DiscoInfo) -> None:
    """Refuse a disco#info result that XEP-0115 §5.4 calls ill-formed."""
    if len(info.identities) > MAX_IDENTITIES or len(info.features) > MAX_FEATURES:
        raise RemoteProvisioningError(Reason.TOO_LARGE, "disco#info result too large")
    if len(info.forms) > MAX_FORMS:
        raise RemoteProvisioningError(Reason.TOO_LARGE, "too many forms in disco#info result")
    if len(set(info.identities)) != len(info.identities):
        raise _ill_formed("duplicate identity (XEP-0115 §5.4 step 3.3)")
    if len(set(info.features)) != len(info.features):
        raise _ill_formed("duplicate feature (XEP-0115 §5.4 step 3.4)")
    seen: set[str] = set()
    for form in info.forms:
        field = form.field("FORM_TYPE")
        if field is None or field.type != "hidden":
            continue  # ignored, §5.4 step 3.6
        if len(set(field.values)) > 1:
            raise _ill_formed("FORM_TYPE with differing values (XEP-0115 §5.4 step 3.5)")
        form_type = form.form_type
        if form_type is None:
            continue
        if form_type in seen:
            raise _ill_formed("two forms with the same FORM_TYPE (XEP-0115 §5.4 step 3.5)")
        seen.add(form_type)


def verify_ver(info: DiscoInfo, ver: str, hash_name: str) -> CapsVerdict:
    """XEP-0115 §5.4: validate ``info`` and compare its recomputed ``ver``.

    Raises :class:`RemoteProvisioningError` (``caps-ill-formed``) for an ill-formed result.
    """
    validate_disco_info(info)
    if hash_name not in HASH_FUNCTIONS:
        return CapsVerdict.UNKNOWN_HASH
    return CapsVerdict.VALID if compute_ver(info, hash_name) == ver else CapsVerdict.MISMATCH


def caps_node(node: str, ver: str) -> str:
    """The disco node a peer queries to learn ``ver`` (XEP-0115 §6.2): ``node#ver``."""
    return f"{node}#{ver}"


def caps_element(node: str, ver: str, hash_name: str = "sha-1") -> etree._Element:
    """``<c xmlns='http://jabber.org/protocol/caps' hash=... node=... ver=.../>`` (§4)."""
    c = etree.Element(f"{{{CAPS_NS}}}c", nsmap=cast(Any, {None: CAPS_NS}))
    c.set("hash", hash_name)
    c.set("node", node)
    c.set("ver", ver)
    return c


def disco_info_to_element(info: DiscoInfo, node: str | None = None) -> etree._Element:
    """A disco#info ``<query/>`` (result payload), echoing ``node`` if given (XEP-0115 §6.2)."""
    q = etree.Element(f"{{{DISCO_INFO_NS}}}query", nsmap=cast(Any, {None: DISCO_INFO_NS}))
    if node is not None:
        q.set("node", node)
    for ident in info.identities:
        el = etree.SubElement(q, f"{{{DISCO_INFO_NS}}}identity")
        el.set("category", ident.category)
        el.set("type", ident.type)
        if ident.lang:
            el.set(XML_LANG, ident.lang)
        if ident.name:
            el.set("name", ident.name)
    for feature in info.features:
        etree.SubElement(q, f"{{{DISCO_INFO_NS}}}feature").set("var", feature)
    for form in info.forms:
        q.append(form_to_element(form))
    return q


def disco_info_from_element(query: etree._Element) -> DiscoInfo:
    """Read a disco#info ``<query/>`` into :class:`DiscoInfo` (bounded; not yet validated)."""
    if query.tag != f"{{{DISCO_INFO_NS}}}query":
        raise RemoteProvisioningError(Reason.WRONG_NAMESPACE, "not a disco#info query")
    identities: list[Identity] = []
    features: list[str] = []
    forms: list[DataForm] = []
    for child in query:
        if len(identities) > MAX_IDENTITIES or len(features) > MAX_FEATURES:
            raise RemoteProvisioningError(Reason.TOO_LARGE, "disco#info result too large")
        if child.tag == f"{{{DISCO_INFO_NS}}}identity":
            category, type_ = child.get("category"), child.get("type")
            if not category or not type_:
                raise _ill_formed("identity without category or type (XEP-0030 §3.1)")
            identities.append(
                Identity(category, type_, child.get(XML_LANG) or "", child.get("name") or "")
            )
        elif child.tag == f"{{{DISCO_INFO_NS}}}feature":
            var = child.get("var")
            if not var:
                raise _ill_formed("feature without var (XEP-0030 §3.1)")
            features.append(var)
        elif child.tag == f"{{{DATA_FORMS_NS}}}x":
            if len(forms) >= MAX_FORMS:
                raise RemoteProvisioningError(Reason.TOO_LARGE, "too many forms")
            forms.append(form_from_element(child))
    return DiscoInfo(tuple(identities), tuple(features), tuple(forms))
