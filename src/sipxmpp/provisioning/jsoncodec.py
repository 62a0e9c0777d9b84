"""JSON codec of the provisioning document (``application/pres-im-provisioning+json``).

The JSON shape mirrors the XML one member for member (kebab-case names, same groups):
see ``provisioning/README.md``. The envelope adds ``namespace`` (our XML namespace, which
names the major version) and ``version``.

Reading is as defensive as the XML reader: byte cap first, strict UTF-8, duplicate
member names refused, nesting depth and number sizes bounded by the decoder (their
``RecursionError`` / ``ValueError`` become refusals), wrong ``namespace`` or major
version refused, then the model validates every value. Members whose name contains a
colon are the JSON analogue of foreign-namespace XML elements: readers ignore them.
Any other unknown member is an error.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from .constants import FORMAT_VERSION, MAX_DOCUMENT_BYTES, NAMESPACE
from .errors import LocalProvisioningError, Reason, RemoteProvisioningError
from .model import ProvisioningDocument
from .xmlcodec import check_version, summarize_validation_error

__all__ = ["to_json", "to_json_data", "parse_json"]

_NS_PREFIX = NAMESPACE.rsplit(":", 1)[0] + ":"


def to_json_data(doc: ProvisioningDocument) -> dict[str, Any]:
    """The document as plain JSON-compatible data (envelope included)."""
    body = doc.model_dump(mode="json", by_alias=True)
    return {"namespace": NAMESPACE, "version": FORMAT_VERSION, **body}


def to_json(doc: ProvisioningDocument, *, indent: int | None = 2) -> bytes:
    """Serialize ``doc`` as UTF-8 JSON (deterministic for a given model)."""
    data = json.dumps(to_json_data(doc), ensure_ascii=False, indent=indent).encode("utf-8")
    if len(data) > MAX_DOCUMENT_BYTES:
        raise LocalProvisioningError(
            Reason.TOO_LARGE,
            f"JSON document for {doc.domain} is {len(data)} bytes, over {MAX_DOCUMENT_BYTES}",
        )
    return data


class _DuplicateMember(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateMember(key)
        out[key] = value
    return out


def _strip_foreign(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_foreign(v) for k, v in value.items() if ":" not in k}
    if isinstance(value, list):
        return [_strip_foreign(v) for v in value]
    return value


def parse_json(data: bytes) -> ProvisioningDocument:
    """Parse and validate a peer's JSON provisioning document.

    Every refusal is a :class:`RemoteProvisioningError`; no other exception escapes.
    """
    if len(data) > MAX_DOCUMENT_BYTES:
        raise RemoteProvisioningError(
            Reason.TOO_LARGE,
            f"document of {len(data)} bytes exceeds the {MAX_DOCUMENT_BYTES}-byte limit",
        )
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RemoteProvisioningError(
            Reason.NOT_UTF8, f"document is not UTF-8 (byte {exc.start})"
        ) from None
    try:
        raw = json.loads(text, object_pairs_hook=_no_duplicates)
    except _DuplicateMember as exc:
        raise RemoteProvisioningError(
            Reason.NOT_WELL_FORMED, f"duplicate member {str(exc)[:80]!r}"
        ) from None
    except RecursionError:
        raise RemoteProvisioningError(Reason.NOT_WELL_FORMED, "JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and int() digit limits
        raise RemoteProvisioningError(
            Reason.NOT_WELL_FORMED, f"not well-formed JSON: {str(exc)[:200]}"
        ) from None
    if not isinstance(raw, dict):
        raise RemoteProvisioningError(Reason.SCHEMA_INVALID, "top level is not a JSON object")
    namespace = raw.pop("namespace", None)
    if namespace != NAMESPACE:
        if isinstance(namespace, str) and namespace.startswith(_NS_PREFIX):
            raise RemoteProvisioningError(
                Reason.UNSUPPORTED_VERSION, f"namespace {namespace[:120]} is not version 1", 415
            )
        shown = repr(namespace)[:120]
        raise RemoteProvisioningError(
            Reason.WRONG_NAMESPACE, f"member 'namespace' is {shown}, not {NAMESPACE!r}", 415
        )
    version = raw.pop("version", None)
    if not isinstance(version, str):
        raise RemoteProvisioningError(Reason.SCHEMA_INVALID, "member 'version' must be a string")
    check_version(version)
    try:
        return ProvisioningDocument.model_validate(_strip_foreign(raw))
    except ValidationError as exc:
        raise RemoteProvisioningError(
            Reason.INVALID_VALUE, summarize_validation_error(exc)
        ) from None
    except RecursionError:  # pragma: no cover - depth is already bounded by json.loads
        raise RemoteProvisioningError(Reason.NOT_WELL_FORMED, "JSON nested too deeply") from None
