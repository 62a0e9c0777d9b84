"""XML codec of the provisioning document (``application/pres-im-provisioning+xml``).

Theory of operation
-------------------
Writing is a plain tree build: :func:`to_xml` emits every parameter explicitly (defaults
included), in schema order, so the same model always gives the same bytes; the HTTP
ETag and the SIP body rely on that.

Reading treats the input as hostile (it comes from another network). :func:`parse_xml`
runs these gates in order and stops at the first failure with a
:class:`~sipxmpp.provisioning.errors.RemoteProvisioningError`:

1. size: more than :data:`MAX_DOCUMENT_BYTES` -> ``too-large`` (checked before any parsing);
2. encoding: the bytes must be UTF-8 (RFC 7303 §3 lets a format require it) without NUL;
3. DTD: any ``<!DOCTYPE`` or ``<!ENTITY`` is refused outright (no internal subset ever
   reaches libxml2, so neither entity expansion, "billion laughs", nor external entities
   (XXE) can happen); the parser itself also runs with entity resolution, DTD loading,
   network access and huge trees disabled, and the parsed tree is checked again;
4. well-formedness (lxml);
5. root element: our namespace and name, else ``wrong-namespace``; a later major version
   of our namespace, or a ``version`` attribute whose major is not 1 -> ``unsupported-version``;
6. the XSD (``schema/pres-im-provisioning-1.xsd``) -> ``schema-invalid``;
7. the pydantic model (uniqueness, list sizes, cross-field rules) -> ``invalid-value``.

Elements of other namespaces are allowed at the end of every group and are ignored
(that is how minor versions extend the format; see the README).
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any, cast

from lxml import etree
from pydantic import ValidationError

from .constants import FORMAT_MAJOR, FORMAT_VERSION, MAX_DOCUMENT_BYTES, NAMESPACE
from .errors import LocalProvisioningError, Reason, RemoteProvisioningError
from .model import ProvisioningDocument

__all__ = [
    "to_xml",
    "to_element",
    "parse_xml",
    "load_schema",
    "SCHEMA_RESOURCE",
    "safe_xml_parser",
    "check_xml_bytes",
    "summarize_validation_error",
    "check_version",
]

#: Package-relative path of the XSD of major version 1.
SCHEMA_RESOURCE = "schema/pres-im-provisioning-1.xsd"

#: Longest error text copied from a parser or validator into an exception (keeps logs
#: bounded whatever the peer sent).
_MAX_ERROR_TEXT = 300

_NS_PREFIX = NAMESPACE.rsplit(":", 1)[0] + ":"
_ROOT = "pres-im-provisioning"


def _q(name: str) -> str:
    return f"{{{NAMESPACE}}}{name}"


def _truncate(text: str) -> str:
    return text if len(text) <= _MAX_ERROR_TEXT else text[: _MAX_ERROR_TEXT - 3] + "..."


def safe_xml_parser() -> etree.XMLParser:
    """A fresh lxml parser configured for untrusted input (no DTD, entities or network)."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        collect_ids=False,
        attribute_defaults=False,
    )


def check_xml_bytes(data: bytes, max_bytes: int = MAX_DOCUMENT_BYTES) -> None:
    """Gates 1-3 of the module docstring: size, UTF-8, and no DTD.

    Shared with :mod:`.caps` / :mod:`.form` callers that parse peers' XML themselves.
    """
    if len(data) > max_bytes:
        raise RemoteProvisioningError(
            Reason.TOO_LARGE, f"document of {len(data)} bytes exceeds the {max_bytes}-byte limit"
        )
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RemoteProvisioningError(
            Reason.NOT_UTF8, f"document is not UTF-8 (byte {exc.start})"
        ) from None
    if "\x00" in text:
        raise RemoteProvisioningError(Reason.NOT_UTF8, "document contains NUL characters")
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise RemoteProvisioningError(
            Reason.DTD_FORBIDDEN, "document type declarations and entities are refused"
        )


def _parse_root(data: bytes) -> etree._Element:
    check_xml_bytes(data)
    try:
        root = etree.fromstring(bytes(data), safe_xml_parser())
    except etree.XMLSyntaxError as exc:
        raise RemoteProvisioningError(
            Reason.NOT_WELL_FORMED, _truncate(f"not well-formed XML: {exc}")
        ) from None
    docinfo = root.getroottree().docinfo
    # Defence in depth: gate 3 already refused any DOCTYPE in the raw text.
    if getattr(docinfo, "doctype", "") or docinfo.internalDTD is not None:  # pragma: no cover
        raise RemoteProvisioningError(Reason.DTD_FORBIDDEN, "document type declaration refused")
    encoding = (docinfo.encoding or "UTF-8").upper()
    if encoding not in ("UTF-8", "UTF8"):
        raise RemoteProvisioningError(Reason.NOT_UTF8, f"declared encoding {encoding} refused")
    return root


@functools.cache
def load_schema() -> etree.XMLSchema:
    """The compiled XSD of format major version 1 (loaded once from the package)."""
    source = resources.files("sipxmpp.provisioning").joinpath(SCHEMA_RESOURCE).read_bytes()
    return etree.XMLSchema(etree.fromstring(source, safe_xml_parser()))


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _sub(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    child = etree.SubElement(parent, _q(name))
    if text is not None:
        child.text = text
    return child


def to_element(doc: ProvisioningDocument) -> etree._Element:
    """The document as an lxml element tree (root ``pres-im-provisioning``)."""
    root = etree.Element(_q(_ROOT), nsmap=cast(Any, {None: NAMESPACE}))
    root.set("version", FORMAT_VERSION)
    root.set("domain", doc.domain)

    conn = _sub(root, "connectivity")
    names = _sub(conn, "dns-names")
    for name in doc.connectivity.dns_names:
        _sub(names, "dns-name", name)
    _sub(conn, "srv", _bool(doc.connectivity.srv))
    _sub(conn, "tls-only", _bool(doc.connectivity.tls_only))

    auth = _sub(root, "authorization-privacy")
    _sub(auth, "view-sharing", doc.authorization_privacy.view_sharing.value)

    pres = _sub(root, "presence")
    exts = _sub(pres, "pidf-extensions")
    for ns in doc.presence.pidf_extensions:
        _sub(exts, "namespace", ns)
    mapping = _sub(pres, "pidf-mapping")
    for entry in doc.presence.pidf_mapping:
        m = _sub(mapping, "map")
        m.set("standard", entry.standard)
        m.set("local", entry.local)
    _sub(pres, "list-subscription", _bool(doc.presence.list_subscription))

    chat = doc.chat
    c = _sub(root, "chat")
    _sub(c, "logging", _bool(chat.logging))
    modes = _sub(c, "im-modes")
    for mode in chat.im_modes:
        _sub(modes, "mode", mode.value)
    _sub(c, "is-composing", _bool(chat.is_composing))
    rich = _sub(c, "rich-text")
    rich.set("supported", _bool(chat.rich_text.supported))
    for fmt in chat.rich_text.formats:
        _sub(rich, "format", fmt)
    emo = _sub(c, "emoticons")
    emo.set("supported", _bool(chat.emoticons.supported))
    for emoticon in chat.emoticons.mapping:
        e = _sub(emo, "emoticon", emoticon.meaning)
        e.set("text", emoticon.text)
    images = _sub(c, "images")
    images.set("supported", _bool(chat.images.supported))
    for media_type in chat.images.types:
        _sub(images, "type", media_type)
    _sub(c, "n-way-chat", _bool(chat.n_way_chat))
    _sub(c, "file-transfer", _bool(chat.file_transfer))

    privacy = doc.clearing_house.peer_network_privacy
    ch = _sub(root, "clearing-house")
    pnp = _sub(ch, "peer-network-privacy")
    pnp.set("visibility", privacy.visibility.value)
    for domain in privacy.visible_to:
        _sub(pnp, "visible-to", domain)

    if doc.extensions:
        extensions = _sub(root, "extensions")
        for ext in doc.extensions:
            x = _sub(extensions, "extension")
            x.set("name", ext.name)
            for value in ext.values:
                _sub(x, "value", value)
    return root


def to_xml(doc: ProvisioningDocument, *, pretty: bool = True) -> bytes:
    """Serialize ``doc`` as a UTF-8 XML document.

    Raises :class:`LocalProvisioningError` (``too-large``) if the result would exceed
    :data:`MAX_DOCUMENT_BYTES`, since every conforming reader would refuse it.
    """
    data: bytes = etree.tostring(
        to_element(doc), xml_declaration=True, encoding="UTF-8", pretty_print=pretty
    )
    if len(data) > MAX_DOCUMENT_BYTES:
        raise LocalProvisioningError(
            Reason.TOO_LARGE,
            f"document for {doc.domain} is {len(data)} bytes, over the {MAX_DOCUMENT_BYTES}-byte limit",
        )
    return data


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------


def _text(el: etree._Element) -> str:
    return (el.text or "").strip()


def _flag(el: etree._Element | None) -> bool | None:
    if el is None:
        return None
    return _text(el) in ("true", "1")


def _attr_flag(el: etree._Element, name: str) -> bool:
    return (el.get(name) or "").strip() in ("true", "1")


def _put(target: dict[str, Any], key: str, value: object) -> None:
    if value is not None:
        target[key] = value


def _texts(parent: etree._Element | None, container: str, item: str) -> list[str] | None:
    if parent is None:
        return None
    box = parent.find(_q(container))
    if box is None:
        return None
    return [_text(el) for el in box.iterfind(_q(item))]


def _element_to_data(root: etree._Element) -> dict[str, Any]:
    data: dict[str, Any] = {"domain": (root.get("domain") or "").strip()}

    conn = root.find(_q("connectivity"))
    assert conn is not None  # required by the XSD
    conn_data: dict[str, Any] = {"dns-names": _texts(conn, "dns-names", "dns-name")}
    _put(conn_data, "srv", _flag(conn.find(_q("srv"))))
    _put(conn_data, "tls-only", _flag(conn.find(_q("tls-only"))))
    data["connectivity"] = conn_data

    auth = root.find(_q("authorization-privacy"))
    if auth is not None:
        auth_data: dict[str, Any] = {}
        view_sharing = auth.find(_q("view-sharing"))
        if view_sharing is not None:
            auth_data["view-sharing"] = _text(view_sharing)
        data["authorization-privacy"] = auth_data

    pres = root.find(_q("presence"))
    if pres is not None:
        pres_data: dict[str, Any] = {}
        _put(pres_data, "pidf-extensions", _texts(pres, "pidf-extensions", "namespace"))
        mapping = pres.find(_q("pidf-mapping"))
        if mapping is not None:
            pres_data["pidf-mapping"] = [
                {
                    "standard": (m.get("standard") or "").strip(),
                    "local": (m.get("local") or "").strip(),
                }
                for m in mapping.iterfind(_q("map"))
            ]
        _put(pres_data, "list-subscription", _flag(pres.find(_q("list-subscription"))))
        data["presence"] = pres_data

    chat = root.find(_q("chat"))
    if chat is not None:
        chat_data: dict[str, Any] = {}
        _put(chat_data, "logging", _flag(chat.find(_q("logging"))))
        _put(chat_data, "im-modes", _texts(chat, "im-modes", "mode"))
        _put(chat_data, "is-composing", _flag(chat.find(_q("is-composing"))))
        rich = chat.find(_q("rich-text"))
        if rich is not None:
            chat_data["rich-text"] = {
                "supported": _attr_flag(rich, "supported"),
                "formats": [_text(f) for f in rich.iterfind(_q("format"))],
            }
        emo = chat.find(_q("emoticons"))
        if emo is not None:
            chat_data["emoticons"] = {
                "supported": _attr_flag(emo, "supported"),
                "mapping": [
                    {"text": (e.get("text") or "").strip(), "meaning": _text(e)}
                    for e in emo.iterfind(_q("emoticon"))
                ],
            }
        images = chat.find(_q("images"))
        if images is not None:
            chat_data["images"] = {
                "supported": _attr_flag(images, "supported"),
                "types": [_text(t) for t in images.iterfind(_q("type"))],
            }
        _put(chat_data, "n-way-chat", _flag(chat.find(_q("n-way-chat"))))
        _put(chat_data, "file-transfer", _flag(chat.find(_q("file-transfer"))))
        data["chat"] = chat_data

    ch = root.find(_q("clearing-house"))
    if ch is not None:
        ch_data: dict[str, Any] = {}
        pnp = ch.find(_q("peer-network-privacy"))
        if pnp is not None:
            ch_data["peer-network-privacy"] = {
                "visibility": (pnp.get("visibility") or "").strip(),
                "visible-to": [_text(v) for v in pnp.iterfind(_q("visible-to"))],
            }
        data["clearing-house"] = ch_data

    extensions = root.find(_q("extensions"))
    if extensions is not None:
        data["extensions"] = [
            {
                "name": (x.get("name") or "").strip(),
                "values": [_text(v) for v in x.iterfind(_q("value"))],
            }
            for x in extensions.iterfind(_q("extension"))
        ]
    return data


def summarize_validation_error(exc: ValidationError) -> str:
    """A short, bounded description of a pydantic error (locations and messages only)."""
    parts = []
    for err in exc.errors(include_input=False, include_url=False)[:3]:
        loc = ".".join(str(p) for p in err["loc"]) or "document"
        parts.append(f"{loc}: {err['msg']}")
    more = exc.error_count() - len(parts)
    if more > 0:
        parts.append(f"and {more} more")
    return _truncate("; ".join(parts))


def check_version(version: str | None) -> None:
    """Refuse a ``version`` whose major number is not the one we read."""
    major, _, _minor = (version or "").strip().partition(".")
    if major != str(FORMAT_MAJOR):
        raise RemoteProvisioningError(
            Reason.UNSUPPORTED_VERSION,
            f"format version {version!r} is not supported (this reader reads {FORMAT_MAJOR}.x)",
            415,
        )


def parse_xml(data: bytes) -> ProvisioningDocument:
    """Parse and validate a peer's XML provisioning document.

    Every refusal is a :class:`RemoteProvisioningError`; no other exception escapes for
    any input bytes.
    """
    root = _parse_root(data)
    tag = root.tag if isinstance(root.tag, str) else ""
    qname = etree.QName(tag) if tag.startswith("{") else None
    namespace = qname.namespace if qname is not None else None
    if namespace != NAMESPACE or qname is None or qname.localname != _ROOT:
        if namespace is not None and namespace.startswith(_NS_PREFIX) and namespace != NAMESPACE:
            raise RemoteProvisioningError(
                Reason.UNSUPPORTED_VERSION, f"namespace {namespace} is not version 1", 415
            )
        shown = tag if len(tag) <= 120 else tag[:117] + "..."
        raise RemoteProvisioningError(
            Reason.WRONG_NAMESPACE,
            f"root element {shown!r} is not {{{NAMESPACE}}}{_ROOT}",
            415,
        )
    check_version(root.get("version"))
    schema = load_schema()
    if not schema.validate(root):
        log = cast(Any, schema.error_log)
        detail = f"line {log[0].line}: {log[0].message}" if len(log) else "invalid"
        raise RemoteProvisioningError(Reason.SCHEMA_INVALID, _truncate(detail))
    try:
        return ProvisioningDocument.model_validate(_element_to_data(root))
    except ValidationError as exc:
        raise RemoteProvisioningError(
            Reason.INVALID_VALUE, summarize_validation_error(exc)
        ) from None
