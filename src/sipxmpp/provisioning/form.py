"""XEP-0128 form encoding of the provisioning document (the XMPP channel).

The gateway's disco#info result (XEP-0030 §3.1) carries the parameters as an extended
information form (XEP-0128 §2): ``<x xmlns='jabber:x:data' type='result'>`` with a hidden
``FORM_TYPE`` whose value is :data:`~sipxmpp.provisioning.constants.FORM_TYPE`. Because
XEP-0115 §5.1 hashes such forms into the caps ``ver``, any change of a parameter changes
the advertised ``ver`` (see :mod:`.caps`).

Field table (the README has the normative version):

======================  ============  ===============================================
var                     type          values
======================  ============  ===============================================
FORM_TYPE               hidden        the FORM_TYPE URN
domain                  text-single   the network's domain
dns-names               text-multi    (1) one DNS name per value
srv                     boolean       (2) ``1`` / ``0``
tls-only                boolean       (3)
view-sharing            list-single   (4) none | send | receive | both
pidf-extensions         text-multi    (5) one namespace URI per value
pidf-mapping            text-multi    (6) ``{ns}standard {ns}local`` (one space)
list-subscription       boolean       (7)
logging                 boolean       (8)
im-modes                list-multi    (9) page, session
is-composing            boolean       (10)
rich-text               text-multi    (11) formats; no value = not supported
emoticons               text-multi    (12) ``text meaning`` (split at the first space)
images                  text-multi    (13) image media types; no value = not supported
n-way-chat              boolean       (14)
file-transfer           boolean       (15)
peer-visibility         list-single   (16) all | restricted
visible-to              jid-multi     (16) domains allowed to see the network
<absolute URI>          text-multi    an extension parameter (names contain ``:``;
                                      no field of ours does)
======================  ============  ===============================================

Readers accept ``true``/``false`` as well as ``1``/``0`` for booleans (XEP-0004 §3.3),
treat a missing field as its default, and ignore unknown fields without a colon (a later
minor version may add fields; XEP-0004 §3.4 has receivers ignore what they do not know).

Wiring note for the slixmpp edge (slixmpp 1.17): ``xep_0128``'s ``set_extended_info``
"replaces" a form by removing its XML from the ``DiscoInfo`` stanza, but the removed
form stays in the stanza's ``iterables``. ``info['substanzas']`` therefore still lists
it, and ``xep_0115.generate_verstring`` hashes both the old and the new form (two
forms with one FORM_TYPE, an ill-formed response by XEP-0115 §5.4), so the advertised
``ver`` matches nothing a peer can recompute. Also, reading ``info['form']`` silently
creates an empty ``<x/>``. Work around it by building a fresh ``DiscoInfo`` for every
change (identities, features, then this form appended once) and computing ``ver`` with
:func:`sipxmpp.provisioning.caps.compute_ver` over :class:`~sipxmpp.provisioning.caps.DiscoInfo`
rather than trusting ``update_caps``; never call ``set_extended_info`` twice on one node.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from lxml import etree
from pydantic import ValidationError

from .constants import FORM_TYPE, MAX_EXTENSIONS, MAX_LIST_ITEMS
from .errors import Reason, RemoteProvisioningError
from .model import ProvisioningDocument, Visibility
from .xmlcodec import summarize_validation_error

__all__ = [
    "DATA_FORMS_NS",
    "FormField",
    "DataForm",
    "document_to_form",
    "form_to_document",
    "form_to_element",
    "form_from_element",
    "MAX_FORM_FIELDS",
    "MAX_FIELD_VALUES",
]

#: XEP-0004 namespace.
DATA_FORMS_NS = "jabber:x:data"
#: Most fields accepted in one form: our 19 fields plus every extension, with margin.
MAX_FORM_FIELDS = 64 + MAX_EXTENSIONS
#: Most values accepted in one field (the longest list parameter, plus margin).
MAX_FIELD_VALUES = MAX_LIST_ITEMS + 8


@dataclass(frozen=True, slots=True)
class FormField:
    """One ``<field/>`` of a data form (XEP-0004 §3.2)."""

    #: The ``var`` attribute.
    var: str
    #: The values, in document order (empty for a field without ``<value/>``).
    values: tuple[str, ...] = ()
    #: The ``type`` attribute (``hidden``, ``boolean``, ``text-multi`` ...), if any.
    type: str | None = None


@dataclass(frozen=True, slots=True)
class DataForm:
    """A data form reduced to what disco and caps need: its type and its fields."""

    fields: tuple[FormField, ...]
    #: The form's ``type`` attribute; XEP-0128 forms are ``result``.
    type: str = "result"

    def field(self, var: str) -> FormField | None:
        """The first field named ``var``, if any."""
        for f in self.fields:
            if f.var == var:
                return f
        return None

    @property
    def form_type(self) -> str | None:
        """The hidden FORM_TYPE value (XEP-0068 §2), or None if there is none."""
        f = self.field("FORM_TYPE")
        if f is None or f.type != "hidden" or not f.values:
            return None
        return f.values[0]


# --------------------------------------------------------------------------------------
# model -> form
# --------------------------------------------------------------------------------------


def _b(value: bool) -> tuple[str, ...]:
    return ("1",) if value else ("0",)


def document_to_form(doc: ProvisioningDocument) -> DataForm:
    """The document as an XEP-0128 result form (plain data)."""
    c, p, ch = doc.connectivity, doc.presence, doc.chat
    privacy = doc.clearing_house.peer_network_privacy
    fields = [
        FormField("FORM_TYPE", (FORM_TYPE,), "hidden"),
        FormField("domain", (doc.domain,), "text-single"),
        FormField("dns-names", c.dns_names, "text-multi"),
        FormField("srv", _b(c.srv), "boolean"),
        FormField("tls-only", _b(c.tls_only), "boolean"),
        FormField("view-sharing", (doc.authorization_privacy.view_sharing.value,), "list-single"),
        FormField("pidf-extensions", p.pidf_extensions, "text-multi"),
        FormField(
            "pidf-mapping",
            tuple(f"{m.standard} {m.local}" for m in p.pidf_mapping),
            "text-multi",
        ),
        FormField("list-subscription", _b(p.list_subscription), "boolean"),
        FormField("logging", _b(ch.logging), "boolean"),
        FormField("im-modes", tuple(m.value for m in ch.im_modes), "list-multi"),
        FormField("is-composing", _b(ch.is_composing), "boolean"),
        FormField("rich-text", ch.rich_text.formats, "text-multi"),
        FormField(
            "emoticons",
            tuple(f"{e.text} {e.meaning}" for e in ch.emoticons.mapping),
            "text-multi",
        ),
        FormField("images", ch.images.types, "text-multi"),
        FormField("n-way-chat", _b(ch.n_way_chat), "boolean"),
        FormField("file-transfer", _b(ch.file_transfer), "boolean"),
        FormField("peer-visibility", (privacy.visibility.value,), "list-single"),
        FormField("visible-to", privacy.visible_to, "jid-multi"),
    ]
    fields.extend(FormField(ext.name, ext.values, "text-multi") for ext in doc.extensions)
    return DataForm(tuple(fields))


# --------------------------------------------------------------------------------------
# form -> model
# --------------------------------------------------------------------------------------

_BOOL_VALUES = {"1": True, "true": True, "0": False, "false": False}


def _refuse(message: str) -> RemoteProvisioningError:
    return RemoteProvisioningError(Reason.INVALID_VALUE, message[:300])


def _single(values: Mapping[str, tuple[str, ...]], var: str) -> str | None:
    got = values.get(var)
    if got is None:
        return None
    if len(got) != 1:
        raise _refuse(f"field {var!r} needs exactly one value, has {len(got)}")
    return got[0]


def _boolean(values: Mapping[str, tuple[str, ...]], var: str) -> bool | None:
    raw = _single(values, var)
    if raw is None:
        return None
    flag = _BOOL_VALUES.get(raw.strip())
    if flag is None:
        raise _refuse(f"field {var!r} is not a boolean")
    return flag


def _pairs(values: Iterable[str], var: str) -> list[tuple[str, str]]:
    out = []
    for value in values:
        left, sep, right = value.partition(" ")
        if not sep:
            raise _refuse(f"field {var!r} has a value without the separating space")
        out.append((left, right))
    return out


def form_to_document(form: DataForm) -> ProvisioningDocument:
    """Read the parameters back from an XEP-0128 form.

    Raises :class:`RemoteProvisioningError` if the form is not ours (FORM_TYPE), repeats a
    field, or carries invalid values.
    """
    if form.form_type != FORM_TYPE:
        raise RemoteProvisioningError(
            Reason.WRONG_NAMESPACE,
            f"form FORM_TYPE {str(form.form_type)[:120]!r} is not {FORM_TYPE!r}",
        )
    if len(form.fields) > MAX_FORM_FIELDS:
        raise RemoteProvisioningError(
            Reason.TOO_LARGE, f"form has more than {MAX_FORM_FIELDS} fields"
        )
    values: dict[str, tuple[str, ...]] = {}
    for f in form.fields:
        if f.var in values:
            raise _refuse(f"field {f.var[:80]!r} appears twice")
        if len(f.values) > MAX_FIELD_VALUES:
            raise RemoteProvisioningError(
                Reason.TOO_LARGE, f"field {f.var[:80]!r} has more than {MAX_FIELD_VALUES} values"
            )
        values[f.var] = f.values

    data: dict[str, Any] = {"domain": _single(values, "domain")}
    conn: dict[str, Any] = {"dns-names": list(values.get("dns-names", ()))}
    for var in ("srv", "tls-only"):
        flag = _boolean(values, var)
        if flag is not None:
            conn[var] = flag
    data["connectivity"] = conn

    view_sharing = _single(values, "view-sharing")
    if view_sharing is not None:
        data["authorization-privacy"] = {"view-sharing": view_sharing}

    pres: dict[str, Any] = {}
    if "pidf-extensions" in values:
        pres["pidf-extensions"] = list(values["pidf-extensions"])
    if "pidf-mapping" in values:
        pres["pidf-mapping"] = [
            {"standard": s, "local": loc}
            for s, loc in _pairs(values["pidf-mapping"], "pidf-mapping")
        ]
    flag = _boolean(values, "list-subscription")
    if flag is not None:
        pres["list-subscription"] = flag
    data["presence"] = pres

    chat: dict[str, Any] = {}
    for var in ("logging", "is-composing", "n-way-chat", "file-transfer"):
        flag = _boolean(values, var)
        if flag is not None:
            chat[var] = flag
    if "im-modes" in values:
        chat["im-modes"] = list(values["im-modes"])
    if "rich-text" in values:
        formats = list(values["rich-text"])
        chat["rich-text"] = {"supported": bool(formats), "formats": formats}
    if "emoticons" in values:
        mapping = [{"text": t, "meaning": m} for t, m in _pairs(values["emoticons"], "emoticons")]
        chat["emoticons"] = {"supported": bool(mapping), "mapping": mapping}
    if "images" in values:
        types = list(values["images"])
        chat["images"] = {"supported": bool(types), "types": types}
    data["chat"] = chat

    visibility = _single(values, "peer-visibility")
    visible_to = list(values.get("visible-to", ()))
    if visibility is not None or visible_to:
        data["clearing-house"] = {
            "peer-network-privacy": {
                "visibility": visibility if visibility is not None else Visibility.ALL.value,
                "visible-to": visible_to,
            }
        }

    data["extensions"] = [
        {"name": f.var, "values": list(f.values)}
        for f in form.fields
        if ":" in f.var and f.var != "FORM_TYPE"
    ]
    try:
        return ProvisioningDocument.model_validate(data)
    except ValidationError as exc:
        raise RemoteProvisioningError(
            Reason.INVALID_VALUE, summarize_validation_error(exc)
        ) from None


# --------------------------------------------------------------------------------------
# form <-> lxml element
# --------------------------------------------------------------------------------------


def _x(name: str) -> str:
    return f"{{{DATA_FORMS_NS}}}{name}"


def form_to_element(form: DataForm) -> etree._Element:
    """``<x xmlns='jabber:x:data' type='result'>`` with one ``<field/>`` per field."""
    x = etree.Element(_x("x"), nsmap=cast(Any, {None: DATA_FORMS_NS}))
    x.set("type", form.type)
    for f in form.fields:
        field = etree.SubElement(x, _x("field"))
        field.set("var", f.var)
        if f.type is not None:
            field.set("type", f.type)
        for value in f.values:
            etree.SubElement(field, _x("value")).text = value
    return x


def form_from_element(x: etree._Element) -> DataForm:
    """Read a ``jabber:x:data`` element into :class:`DataForm`.

    Refuses (``invalid-value``) a field without ``var``; ``<value/>`` text is kept as is
    (XEP-0115 hashes the exact character data). Bounded by :data:`MAX_FORM_FIELDS` and
    :data:`MAX_FIELD_VALUES`.
    """
    if x.tag != _x("x"):
        raise RemoteProvisioningError(Reason.WRONG_NAMESPACE, "not a jabber:x:data form")
    fields: list[FormField] = []
    for field in x.iterfind(_x("field")):
        if len(fields) >= MAX_FORM_FIELDS:
            raise RemoteProvisioningError(
                Reason.TOO_LARGE, f"form has more than {MAX_FORM_FIELDS} fields"
            )
        var = field.get("var")
        if var is None:
            raise _refuse("form field without 'var'")
        values: list[str] = []
        for value in field.iterfind(_x("value")):
            if len(values) >= MAX_FIELD_VALUES:
                raise RemoteProvisioningError(
                    Reason.TOO_LARGE, f"field {var[:80]!r} has more than {MAX_FIELD_VALUES} values"
                )
            values.append(value.text or "")
        fields.append(FormField(var, tuple(values), field.get("type")))
    return DataForm(tuple(fields), x.get("type") or "result")
