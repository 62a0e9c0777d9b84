"""Error families of the state store.

* :class:`LocalStoreError`: our own code handed the store something it must not keep (a value
  over a limit, an unencodable string, a store used after :meth:`close`). A bug on our side.
* :class:`RemoteStoreError`: the database failed us: it is unreachable or busy
  (:class:`StoreUnavailable`), holds rows this code cannot read, or was created by a newer
  gateway (:class:`SchemaVersionError`).
* :class:`VersionConflict`: optimistic concurrency lost: another gateway instance (or another
  task) changed or removed the row since the caller read it. Re-read, re-apply, retry.

Every error carries ``status_hint``: the SIP status the gateway answers with when the failure
happens while it serves a SIP request (RFC 3261 §21.5.1 500, §21.5.4 503), so the SIP edge
never has to inspect driver exceptions. Driver exceptions (sqlite3, asyncpg, OSError) are
converted at each backend's public methods and never escape the store.
"""

from __future__ import annotations

__all__ = [
    "LocalStoreError",
    "RemoteStoreError",
    "ResultTooLarge",
    "SchemaVersionError",
    "StoreError",
    "StoreUnavailable",
    "VersionConflict",
]


class StoreError(Exception):
    """Base class of every error the store raises on purpose."""

    status_hint: int = 500
    reason_hint: str = "Server Internal Error"

    def __init__(self, msg: str, status_hint: int | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        if status_hint is not None:
            self.status_hint = status_hint


class LocalStoreError(StoreError, ValueError):
    """Our code passed a value the store refuses (a bug on our side, never a peer's fault)."""


class ResultTooLarge(LocalStoreError):
    """A list query matched more rows than its ``limit``: iterate, or enforce the caps first."""


class RemoteStoreError(StoreError):
    """The database failed or holds rows this code cannot read."""


class StoreUnavailable(RemoteStoreError):
    """The database is unreachable, busy or timed out; the operation may succeed later."""

    status_hint = 503
    reason_hint = "Service Unavailable"


class SchemaVersionError(RemoteStoreError):
    """The database schema is newer than this code knows (a newer gateway created it)."""


class VersionConflict(StoreError):
    """The row's version is not the one the caller expected (optimistic concurrency)."""

    def __init__(self, kind: str, key: tuple[str, ...], expected: int, actual: int | None) -> None:
        state = "absent" if actual is None else f"at version {actual}"
        super().__init__(f"{kind} {key!r}: expected version {expected}, row is {state}")
        #: ``"subscription"`` or ``"authorization"``.
        self.kind = kind
        #: The row's key: ``(id,)`` or ``(xmpp_jid, sip_uri)``.
        self.key = key
        #: The version the caller expected (0: the row must not exist yet).
        self.expected = expected
        #: The version found, or None when the row does not exist.
        self.actual = actual
