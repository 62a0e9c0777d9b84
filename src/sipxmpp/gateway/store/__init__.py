"""Persistent gateway state: SIP subscriptions with their dialogs, and presence authorizations.

Two backends share one API (:class:`Store`): SQLite, the embedded default, and PostgreSQL,
for several gateway instances sharing state. Pick one by URL::

    async with open_store("sqlite:///var/lib/sipxmpp/state.db") as store:
        sub = await store.put_subscription(sub)             # version 1
        sub = await store.put_subscription(
            replace(sub, state=SubscriptionState.ACTIVE), expected_version=sub.version
        )                                                   # version 2, or VersionConflict
        async for sub in store.all_subscriptions():         # paged, after a restart
            ...

or ``store = await open_store(url)`` and later ``await store.close()``.
"""

from __future__ import annotations

from collections.abc import Generator
from types import TracebackType
from typing import Any

from .base import DEFAULT_LIST_LIMIT, EXPIRY_BATCH_ROWS, ITER_BATCH_ROWS, MAX_PAGE_ROWS, Store
from .errors import (
    LocalStoreError,
    RemoteStoreError,
    ResultTooLarge,
    SchemaVersionError,
    StoreError,
    StoreUnavailable,
    VersionConflict,
)
from .model import (
    MAX_EXTRA_BYTES,
    MAX_ID_BYTES,
    MAX_LAST_STATE_BYTES,
    MAX_ROUTE_SET,
    MAX_SEQ,
    MAX_URI_BYTES,
    Authorization,
    AuthorizationState,
    DialogState,
    JsonValue,
    Subscription,
    SubscriptionRole,
    SubscriptionState,
)
from .schema import LATEST_VERSION

__all__ = [
    "DEFAULT_LIST_LIMIT",
    "EXPIRY_BATCH_ROWS",
    "ITER_BATCH_ROWS",
    "LATEST_VERSION",
    "MAX_EXTRA_BYTES",
    "MAX_ID_BYTES",
    "MAX_LAST_STATE_BYTES",
    "MAX_PAGE_ROWS",
    "MAX_ROUTE_SET",
    "MAX_SEQ",
    "MAX_URI_BYTES",
    "Authorization",
    "AuthorizationState",
    "DialogState",
    "JsonValue",
    "LocalStoreError",
    "RemoteStoreError",
    "ResultTooLarge",
    "SchemaVersionError",
    "Store",
    "StoreError",
    "StoreOpener",
    "StoreUnavailable",
    "Subscription",
    "SubscriptionRole",
    "SubscriptionState",
    "VersionConflict",
    "open_store",
    "store_for_url",
]


def store_for_url(url: str, *, target_schema: int = LATEST_VERSION) -> Store:
    """An unopened store for ``url``: ``sqlite:///abs/path.db``, ``sqlite://relative.db``,
    ``sqlite://:memory:``, or ``postgresql://user@host:port/db`` (``postgres://`` too).

    Raises :class:`LocalStoreError` for any other URL. Backends are imported on demand, so a
    SQLite-only deployment never imports asyncpg.
    """
    if type(url) is not str:
        raise LocalStoreError("store URL must be a str")
    if url.startswith("sqlite://"):
        from .sqlite import SqliteStore

        return SqliteStore.from_url(url, target_schema=target_schema)
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        return PostgresStore.from_url(url, target_schema=target_schema)
    scheme = url.split(":", 1)[0] if ":" in url else url
    raise LocalStoreError(f"unsupported store URL scheme {scheme[:32]!r}")


class StoreOpener:
    """What :func:`open_store` returns: await it for an open store, or use ``async with``."""

    __slots__ = ("store",)

    def __init__(self, store: Store) -> None:
        self.store = store

    async def _open(self) -> Store:
        await self.store.open()
        return self.store

    def __await__(self) -> Generator[Any, None, Store]:
        return self._open().__await__()

    async def __aenter__(self) -> Store:
        return await self._open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.store.close()


def open_store(url: str, *, target_schema: int = LATEST_VERSION) -> StoreOpener:
    """Open the store at ``url`` (see :func:`store_for_url`), migrating its schema.

    ``store = await open_store(url)`` (close it later) or ``async with open_store(url) as s:``.
    """
    return StoreOpener(store_for_url(url, target_schema=target_schema))
