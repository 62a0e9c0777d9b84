"""Message composition indication, RFC 3994 (``application/im-iscomposing+xml``).

Theory of operation
-------------------
An isComposing document tells the peer whether the user is typing: ``<state>`` is
``active`` (composing) or ``idle`` (RFC 3994 §3), with optional ``<lastactive>`` (when
the user last composed), ``<contenttype>`` (what is being composed) and ``<refresh>``
(seconds until the sender refreshes an ``active`` state, §3.2). The gateway receives it
in MSRP SENDs and SIP MESSAGEs and maps it to XEP-0085 chat states (``chat.py``).

The timers of §3.2-3.3 are exposed as constants and pure deadline functions; the
session layer owns the clock.

Parsing uses the same safe lxml settings as ``pidf.py`` (no DTD, no entities, no network,
size cap) and is liberal: elements in any order, an unusable optional element dropped.
A missing or unknown ``<state>`` or a wrong root is a :class:`RemoteIsComposingError`.
Serializing is strict and valid against the RFC 3994 schema (``schemas/im-iscomposing.xsd``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Final

from lxml import etree

from sipxmpp.mapping.model import LocalMappingError, MappingError, MappingRefused
from sipxmpp.mapping.pidf import is_rfc3339, is_xml_text, safe_xml_root

__all__ = [
    "ISCOMPOSING_MIME_TYPE",
    "NS_ISCOMPOSING",
    "MAX_ISCOMPOSING_SIZE",
    "IDLE_TIMEOUT",
    "REFRESH_INTERVAL",
    "MIN_REFRESH",
    "ACTIVE_TIMEOUT",
    "IsComposingError",
    "LocalIsComposingError",
    "RemoteIsComposingError",
    "ComposingState",
    "IsComposing",
    "parse_iscomposing",
    "serialize_iscomposing",
    "active_until",
]

ISCOMPOSING_MIME_TYPE: Final = "application/im-iscomposing+xml"
NS_ISCOMPOSING: Final = "urn:ietf:params:xml:ns:im-iscomposing"

#: Largest body accepted. The documents are about 250 bytes (RFC 3994 §5 examples); 4 KiB
#: leaves room for extension elements and bounds what a typing notification may cost.
MAX_ISCOMPOSING_SIZE: Final = 4096
#: RFC 3994 §3.2: the composer goes idle after this many seconds without typing (default).
IDLE_TIMEOUT: Final = 15.0
#: The ``<refresh>`` the gateway writes for ``active``: between the 60 s floor below and
#: the 120 s a receiver waits by default, so one lost refresh is not yet a false "idle".
REFRESH_INTERVAL: Final = 90
#: RFC 3994 §3.2: a refresh interval SHOULD NOT be shorter than 60 s (it would spam).
MIN_REFRESH: Final = 60
#: RFC 3994 §3.3: a receiver that got ``active`` without ``<refresh>`` assumes ``idle``
#: after 120 s without news.
ACTIVE_TIMEOUT: Final = 120.0
# Longest <refresh> honoured: an active indication for more than an hour is stale.
_MAX_REFRESH: Final = 3600


class IsComposingError(MappingError):
    """Base class of the errors of this codec; ``status_hint`` is the answer to use."""

    status_hint: int = 400


class LocalIsComposingError(IsComposingError, LocalMappingError):
    """We tried to build a document RFC 3994 does not allow."""

    status_hint = 500


class RemoteIsComposingError(IsComposingError, MappingRefused):
    """The peer's body is not an isComposing document we can read."""

    def __init__(self, detail: str, status: int = 400, reason: str = "Bad Request") -> None:
        MappingRefused.__init__(self, status, reason, detail)
        self.status_hint = status

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.detail!r}, {self.status!r}, {self.reason!r})"


class ComposingState(enum.Enum):
    """``<state>`` (RFC 3994 §3)."""

    ACTIVE = "active"
    IDLE = "idle"


@dataclass(frozen=True, slots=True)
class IsComposing:
    """One isComposing document (RFC 3994 §4)."""

    state: ComposingState
    #: ``<lastactive>``: RFC 3339 date-time of the last composing activity.
    last_active: str | None = None
    #: ``<contenttype>``: the kind of message being composed, e.g. ``text/plain``.
    content_type: str | None = None
    #: ``<refresh>``: seconds until the sender refreshes ``active`` (positive).
    refresh: int | None = None

    def __post_init__(self) -> None:
        if self.last_active is not None and not is_rfc3339(self.last_active):
            raise LocalIsComposingError(f"lastactive is not RFC 3339: {self.last_active!r}")
        if self.content_type is not None:
            ct = self.content_type
            if not ct or ct != ct.strip() or not is_xml_text(ct):
                raise LocalIsComposingError(f"unusable contenttype {ct!r}")
        if self.refresh is not None and not 1 <= self.refresh <= _MAX_REFRESH:
            raise LocalIsComposingError(f"refresh must be 1..{_MAX_REFRESH} s: {self.refresh}")


_T: Final = f"{{{NS_ISCOMPOSING}}}"


def _text(element: etree._Element) -> str:
    return "".join(t for t in element.itertext() if isinstance(t, str)).strip()


def parse_iscomposing(data: bytes) -> IsComposing:
    """Parse an ``application/im-iscomposing+xml`` body.

    Raises :class:`RemoteIsComposingError` for anything unreadable, and no other exception
    for any ``bytes`` input.
    """
    root = safe_xml_root(
        data, max_size=MAX_ISCOMPOSING_SIZE, what="isComposing body", error=RemoteIsComposingError
    )
    if root.tag != f"{_T}isComposing":
        raise RemoteIsComposingError(f"root element is {root.tag!r}, not <isComposing>")
    state: ComposingState | None = None
    last_active: str | None = None
    content_type: str | None = None
    refresh: int | None = None
    for child in root:
        tag = child.tag
        if not isinstance(tag, str):
            continue
        if tag == f"{_T}state" and state is None:
            value = _text(child)
            try:
                state = ComposingState(value)
            except ValueError:
                raise RemoteIsComposingError(
                    f"<state> must be 'active' or 'idle', not {value!r}"
                ) from None
        elif tag == f"{_T}lastactive" and last_active is None:
            value = _text(child)
            last_active = value if is_rfc3339(value) else None
        elif tag == f"{_T}contenttype" and content_type is None:
            content_type = _text(child) or None
        elif tag == f"{_T}refresh" and refresh is None:
            value = _text(child)
            if value.isascii() and value.isdigit() and len(value) <= 10:
                number = int(value)
                # A refresh of 0 is not a positiveInteger; an absurd one is capped.
                refresh = min(number, _MAX_REFRESH) if number > 0 else None
    if state is None:
        raise RemoteIsComposingError("isComposing without <state> (RFC 3994 §4)")
    return IsComposing(state, last_active, content_type, refresh)


def serialize_iscomposing(doc: IsComposing) -> bytes:
    """The UTF-8 body for ``doc``, valid against the RFC 3994 schema (element order of §4)."""
    nsmap: dict[Any, str] = {None: NS_ISCOMPOSING}  # None = default namespace (lxml)
    root = etree.Element(f"{_T}isComposing", nsmap=nsmap)
    etree.SubElement(root, f"{_T}state").text = doc.state.value
    if doc.last_active is not None:
        etree.SubElement(root, f"{_T}lastactive").text = doc.last_active
    if doc.content_type is not None:
        etree.SubElement(root, f"{_T}contenttype").text = doc.content_type
    if doc.refresh is not None:
        etree.SubElement(root, f"{_T}refresh").text = str(doc.refresh)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def active_until(doc: IsComposing, received_at: float) -> float | None:
    """When a receiver stops believing an ``active`` indication (RFC 3994 §3.3).

    ``received_at + refresh`` if the sender announced a refresh, else
    ``received_at + ACTIVE_TIMEOUT``; None for ``idle`` (nothing to expire).
    """
    if doc.state is ComposingState.IDLE:
        return None
    return received_at + (doc.refresh if doc.refresh is not None else ACTIVE_TIMEOUT)
