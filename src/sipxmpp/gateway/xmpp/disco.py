"""XEP-0030 service discovery for the component: what ``disco#info`` answers, and its hooks.

The component JID answers with identity category ``gateway``, type ``sip`` (XEP-0030 §3.1 and
the registrar's category list) and the features it implements (``disco#info`` itself, which
XEP-0030 §3.1 makes mandatory, and XEP-0199 ``urn:xmpp:ping``).

Hooks for later work (provisioning): :meth:`DiscoRegistry.add_feature`,
:meth:`DiscoRegistry.add_identity` and :meth:`DiscoRegistry.set_forms` change the static answer
(XEP-0128 extended information goes in as serialized ``jabber:x:data`` result forms with a
hidden ``FORM_TYPE``); :meth:`DiscoRegistry.set_hook` installs a function that sees every
request with the static answer and may replace it, e.g. to echo an XEP-0115 ``node#ver`` node or
to answer per requesting domain (the provisioning draft's Peer Network Privacy).

This module is plain data and functions; the slixmpp glue is in ``dispatch/iq.py``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sipxmpp.gateway.xmpp.convert import jid_domain, serialize_element
from sipxmpp.gateway.xmpp.errors import RemoteXmppError, StanzaErrorException
from sipxmpp.gateway.xmpp.stream_guard import RestrictedXmlGuard
from sipxmpp.mapping.model import StanzaError

__all__ = [
    "NS_DATA",
    "NS_DISCO_INFO",
    "NS_PING",
    "DiscoHook",
    "DiscoIdentity",
    "DiscoInfo",
    "DiscoRegistry",
    "DiscoRequest",
]

NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_PING = "urn:xmpp:ping"
NS_DATA = "jabber:x:data"

_FORM_TAG = "{" + NS_DATA + "}x"
_FIELD_TAG = "{" + NS_DATA + "}field"


@dataclass(frozen=True, slots=True)
class DiscoIdentity:
    """An ``<identity/>`` of a disco#info result (XEP-0030 §3.1)."""

    category: str
    type: str
    name: str | None = None
    lang: str | None = None

    def __post_init__(self) -> None:
        if not self.category or not self.type:
            raise ValueError("an identity needs a category and a type (XEP-0030 §3.1)")


@dataclass(frozen=True, slots=True)
class DiscoInfo:
    """What one disco#info result carries."""

    identities: tuple[DiscoIdentity, ...]
    features: tuple[str, ...]
    #: XEP-0128 extended information: serialized ``<x xmlns='jabber:x:data' type='result'>``
    #: forms, each with a hidden ``FORM_TYPE`` field.
    forms: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class DiscoRequest:
    """One incoming disco#info query."""

    #: The JID queried (the iq's ``to``): the component's domain or a JID under it.
    target: str
    #: The ``node`` attribute of the query, if any (XEP-0030 §3.2; XEP-0115 ``node#ver``).
    node: str | None
    #: The requesting JID (the iq's ``from``).
    requester: str


#: ``hook(request, static_info)``: return the info to answer with, ``None`` for the default
#: behaviour, or raise :class:`StanzaErrorException` to answer with that error.
DiscoHook = Callable[[DiscoRequest, DiscoInfo], "DiscoInfo | None"]


def _check_form(form: str) -> str:
    """Validate a serialized XEP-0128 form and return it in canonical serialization."""
    try:
        RestrictedXmlGuard().feed(form.encode("utf-8"))
        root = ET.fromstring(form)
    except (RemoteXmppError, ET.ParseError, UnicodeEncodeError) as exc:
        raise ValueError(f"not a well-formed data form: {exc}") from exc
    if root.tag != _FORM_TAG or root.get("type") != "result":
        raise ValueError("extended information must be a jabber:x:data form of type 'result'")
    for field_el in root.iter(_FIELD_TAG):
        if field_el.get("var") == "FORM_TYPE":
            if field_el.get("type") != "hidden":
                raise ValueError("FORM_TYPE must be a hidden field (XEP-0068 §3)")
            return serialize_element(root)
    raise ValueError("extended information needs a hidden FORM_TYPE field (XEP-0128 §2)")


class DiscoRegistry:
    """The component's disco#info answer, with hooks to extend it."""

    def __init__(self, component_jid: str, identity_name: str) -> None:
        self._component = component_jid.lower()
        self._identities: list[DiscoIdentity] = [
            DiscoIdentity(category="gateway", type="sip", name=identity_name or None)
        ]
        self._features: list[str] = [NS_DISCO_INFO, NS_PING]
        self._forms: tuple[str, ...] = ()
        self._hook: DiscoHook | None = None

    def add_identity(self, identity: DiscoIdentity) -> None:
        """Add an identity; XEP-0030 §3.1 forbids two with the same category, type and
        xml:lang but different names."""
        for existing in self._identities:
            if (existing.category, existing.type, existing.lang) == (
                identity.category,
                identity.type,
                identity.lang,
            ):
                if existing == identity:
                    return
                raise ValueError(f"conflicting identity {identity!r} (XEP-0030 §3.1)")
        self._identities.append(identity)

    def add_feature(self, var: str) -> None:
        """Advertise a feature (a protocol namespace); adding one twice is harmless."""
        if not var:
            raise ValueError("a feature needs a var")
        if var not in self._features:
            self._features.append(var)

    def remove_feature(self, var: str) -> None:
        if var == NS_DISCO_INFO:
            raise ValueError("disco#info support is mandatory (XEP-0030 §3.1)")
        if var in self._features:
            self._features.remove(var)

    def set_forms(self, forms: Sequence[str]) -> None:
        """Replace the XEP-0128 extended-information forms (serialized XML strings).

        Raises ``ValueError`` for anything that is not a ``jabber:x:data`` result form with a
        hidden ``FORM_TYPE``, or for two forms with the same ``FORM_TYPE`` value.
        """
        checked = tuple(_check_form(form) for form in forms)
        seen: set[str] = set()
        for form in checked:
            form_type = _form_type(form)
            if form_type in seen:
                raise ValueError(f"two forms with FORM_TYPE {form_type!r} (XEP-0115 §5.4)")
            seen.add(form_type)
        self._forms = checked

    def set_hook(self, hook: DiscoHook | None) -> None:
        """Install (or remove, with ``None``) the per-request hook."""
        self._hook = hook

    def info(self) -> DiscoInfo:
        """The static answer for the component JID."""
        return DiscoInfo(
            identities=tuple(self._identities),
            features=tuple(self._features),
            forms=self._forms,
        )

    def answer(self, request: DiscoRequest) -> DiscoInfo:
        """The info for one query, or :class:`StanzaErrorException`.

        Without a hook (or when it returns ``None``): the component JID without a node gets the
        static answer; an unknown node of the component gets ``item-not-found``; any other JID
        under the component gets ``service-unavailable`` (XEP-0030 §3.1: no information is
        available about it here).
        """
        static = self.info()
        if self._hook is not None:
            hooked = self._hook(request, static)
            if hooked is not None:
                return hooked
        bare = request.target.split("/", 1)[0].lower()
        if bare == self._component or ("@" not in bare and jid_domain(bare) == self._component):
            if request.node is None:
                return static
            raise StanzaErrorException(StanzaError(condition="item-not-found", type="cancel"))
        raise StanzaErrorException(StanzaError(condition="service-unavailable", type="cancel"))


def _form_type(form: str) -> str:
    root = ET.fromstring(form)
    for field_el in root.iter(_FIELD_TAG):
        if field_el.get("var") == "FORM_TYPE":
            value = field_el.find("{" + NS_DATA + "}value")
            return (value.text or "") if value is not None else ""
    return ""
