"""The one error family of the provisioning package.

Every refusal (a peer's document that is too large, not well-formed, carries a DTD, has
the wrong namespace or invalid values; a peer that refuses to show its document; a caps
response that XEP-0115 §5.4 calls ill-formed) raises a :class:`ProvisioningError` with a
machine-readable :class:`Reason` and a ``status_hint``: the HTTP/SIP status code a server
would answer with if the offending document arrived in a request (413, 415, 400, 403 ...).

* :class:`RemoteProvisioningError`: a peer sent or served something we refuse.
* :class:`LocalProvisioningError`: our own configuration cannot be published (for example
  a document that would exceed the size every peer enforces).

Callers that do not care about the direction catch :class:`ProvisioningError`.
"""

from __future__ import annotations

import enum

__all__ = [
    "Reason",
    "ProvisioningError",
    "RemoteProvisioningError",
    "LocalProvisioningError",
]


class Reason(enum.StrEnum):
    """Why a document or an exchange was refused."""

    TOO_LARGE = "too-large"
    NOT_UTF8 = "not-utf8"
    NOT_WELL_FORMED = "not-well-formed"
    DTD_FORBIDDEN = "dtd-forbidden"
    WRONG_NAMESPACE = "wrong-namespace"
    UNSUPPORTED_VERSION = "unsupported-version"
    SCHEMA_INVALID = "schema-invalid"
    INVALID_VALUE = "invalid-value"
    WRONG_MEDIA_TYPE = "wrong-media-type"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not-found"
    HTTP_ERROR = "http-error"
    UNREACHABLE = "unreachable"
    CAPS_ILL_FORMED = "caps-ill-formed"


#: Default status hint per reason (HTTP and SIP share these codes).
_STATUS_HINTS: dict[Reason, int] = {
    Reason.TOO_LARGE: 413,
    Reason.WRONG_MEDIA_TYPE: 415,
    Reason.FORBIDDEN: 403,
    Reason.NOT_FOUND: 404,
    Reason.HTTP_ERROR: 502,
    Reason.UNREACHABLE: 503,
}


class ProvisioningError(Exception):
    """Base class of every refusal raised by :mod:`sipxmpp.provisioning`."""

    def __init__(self, reason: Reason, message: str, status_hint: int | None = None) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason
        self.message = message
        self.status_hint = (
            status_hint if status_hint is not None else _STATUS_HINTS.get(reason, 400)
        )


class RemoteProvisioningError(ProvisioningError):
    """A peer network sent or served something we refuse."""


class LocalProvisioningError(ProvisioningError):
    """Our own provisioning data cannot be published as configured."""

    def __init__(self, reason: Reason, message: str, status_hint: int | None = None) -> None:
        super().__init__(reason, message, 500 if status_hint is None else status_hint)
