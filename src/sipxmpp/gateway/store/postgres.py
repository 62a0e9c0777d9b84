"""PostgreSQL backend of the state store: shared state for several gateway instances.

Theory of operation
-------------------
A small asyncpg pool (:data:`POOL_MAX_SIZE` connections); each operation borrows one
connection for one statement, so a single statement is its own transaction and optimistic
version checks (:mod:`.base`) are atomic per row. asyncpg prepares and caches every statement
per connection, so the fixed SQL of :mod:`.base` is parsed once per connection. The shared SQL
is written with ``?`` placeholders and rewritten once to PostgreSQL's ``$1, $2, ...``.

Batch upserts send each column as one array parameter and expand them server-side with
``unnest``: one prepared statement whatever the batch size, one round trip per
:data:`PG_BATCH_ROWS` rows, and ``RETURNING id, version`` gives the new versions (which
``executemany`` cannot return). Rows are written in id order, so two instances upserting
overlapping batches lock rows in the same order and cannot deadlock each other.

Migrations run in one transaction holding a transaction-scoped advisory lock
(:data:`MIGRATION_LOCK_KEY`), so instances starting together migrate one at a time.

URLs: ``postgresql://user[:password]@host:port/database`` (``postgres://`` too), as libpq
and asyncpg read them.
"""

from __future__ import annotations

import contextlib
import functools
import re
import time
from collections.abc import Iterator, Sequence
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]

from .base import SQL_SUB_UPSERT_TAIL, Row, Store
from .errors import LocalStoreError, RemoteStoreError, StoreError, StoreUnavailable
from .schema import (
    LATEST_VERSION,
    SUBSCRIPTION_COLUMNS,
    SUBSCRIPTION_PG_TYPES,
    SUBSCRIPTIONS,
    VERSION_TABLE,
    plan,
    version_table_ddl,
)

__all__ = [
    "COMMAND_TIMEOUT_S",
    "CONNECT_TIMEOUT_S",
    "MIGRATION_LOCK_KEY",
    "PG_BATCH_ROWS",
    "POOL_MAX_SIZE",
    "PostgresStore",
]

#: Connections per gateway instance. Store operations are single short statements, so a few
#: connections keep up with the gateway's one event loop, and a database shared by several
#: instances stays far below PostgreSQL's default max_connections (100).
POOL_MAX_SIZE = 4

#: Connections opened at start (more are opened on demand up to POOL_MAX_SIZE).
POOL_MIN_SIZE = 1

#: Seconds to establish a connection before StoreUnavailable.
CONNECT_TIMEOUT_S = 10.0

#: Seconds one statement may run before StoreUnavailable. A 5,000-row batch statement takes
#: tens of milliseconds; a minute means the server is stuck or overloaded.
COMMAND_TIMEOUT_S = 60.0

#: Rows per batch statement: 5,000 rows of about 300 bytes are ~1.5 MB of parameters, large
#: enough to amortise the round trip, small enough to keep the server's memory per statement low.
PG_BATCH_ROWS = 5000

#: Advisory lock taken while migrating ("sipxmpp" in ASCII, as a signed 64-bit key).
MIGRATION_LOCK_KEY = int.from_bytes(b"\x00sipxmpp", "big")

_PLACEHOLDER = re.compile(r"\?")

_SUB_ALL = ", ".join(SUBSCRIPTION_COLUMNS) + ", version"
_UNNEST_ARGS = ", ".join(f"${i}::{t}[]" for i, t in enumerate(SUBSCRIPTION_PG_TYPES, start=1))
_SQL_SUB_UPSERT_MANY = (
    f"INSERT INTO {SUBSCRIPTIONS} ({_SUB_ALL}) "
    f"SELECT u.*, 1 FROM unnest({_UNNEST_ARGS}) AS u "
    + SQL_SUB_UPSERT_TAIL
    + " RETURNING id, version"
)

#: Errors after which the same operation may well succeed later.
_TRANSIENT: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.QueryCanceledError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.InsufficientResourcesError,
    OSError,  # includes ConnectionError and TimeoutError (asyncio.TimeoutError in 3.11)
)


@functools.lru_cache(maxsize=256)
def _numbered(sql: str) -> str:
    """``?`` placeholders to ``$1, $2, ...`` (the shared SQL has no ``?`` in literals)."""
    counter = iter(range(1, 10_000))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


def _url_ok(url: str) -> str:
    if type(url) is not str or not url.startswith(("postgresql://", "postgres://")):
        raise LocalStoreError("not a postgresql:// URL")
    return url


def _redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


class PostgresStore(Store):
    """The state store in a PostgreSQL database (see the module docstring)."""

    dialect = "postgres"

    def __init__(
        self,
        url: str,
        *,
        pool_max_size: int = POOL_MAX_SIZE,
        batch_rows: int = PG_BATCH_ROWS,
        target_schema: int = LATEST_VERSION,
    ) -> None:
        super().__init__(target_schema=target_schema)
        self.url = _url_ok(url)
        if type(pool_max_size) is not int or not 1 <= pool_max_size <= 32:
            raise LocalStoreError("pool_max_size must be in 1..32")
        if type(batch_rows) is not int or not 1 <= batch_rows <= PG_BATCH_ROWS:
            raise LocalStoreError(f"batch_rows must be in 1..{PG_BATCH_ROWS}")
        self._pool_max_size = pool_max_size
        self._batch_rows = batch_rows
        self._pool: Any = None

    @classmethod
    def from_url(cls, url: str, *, target_schema: int = LATEST_VERSION) -> PostgresStore:
        return cls(url, target_schema=target_schema)

    def __repr__(self) -> str:
        state = "open" if self._pool is not None else "closed"
        return f"<PostgresStore {_redact(self.url)} {state}>"

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn driver exceptions into store errors (the layer's public boundary)."""
        where = _redact(self.url)
        try:
            yield
        except StoreError:
            raise
        except asyncpg.exceptions.DataError as exc:  # a value asyncpg could not encode
            raise LocalStoreError(f"postgres {where}: {exc}") from exc
        except _TRANSIENT as exc:
            raise StoreUnavailable(f"postgres {where}: {type(exc).__name__}: {exc}") from exc
        except asyncpg.PostgresError as exc:
            raise RemoteStoreError(f"postgres {where}: {type(exc).__name__}: {exc}") from exc

    def _require(self) -> Any:
        if self._pool is None:
            raise LocalStoreError(f"{self!r} is not open")
        return self._pool

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        pool: Any = None
        try:
            with self._errors():
                pool = await asyncpg.create_pool(
                    self.url,
                    min_size=POOL_MIN_SIZE,
                    max_size=self._pool_max_size,
                    timeout=CONNECT_TIMEOUT_S,
                    command_timeout=COMMAND_TIMEOUT_S,
                )
                await self._migrate(pool)
        except BaseException:
            if pool is not None:
                pool.terminate()
            raise
        self._pool = pool

    async def _migrate(self, pool: Any) -> None:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
            await conn.execute(version_table_ddl(self.dialect))
            current = await conn.fetchval(f"SELECT max(version) FROM {VERSION_TABLE}") or 0
            for migration in plan(current, max(current, self._target_schema)):
                for statement in migration.statements(self.dialect):
                    await conn.execute(statement)
                await conn.execute(
                    f"INSERT INTO {VERSION_TABLE} (version, description, applied_at) "
                    "VALUES ($1, $2, $3)",
                    migration.version,
                    migration.description,
                    time.time(),
                )

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        with self._errors():
            await pool.close()

    # -- primitives ------------------------------------------------------------------------

    async def _read(self, sql: str, params: Sequence[object]) -> Sequence[Row]:
        pool = self._require()
        with self._errors():
            rows: Sequence[Row] = await pool.fetch(_numbered(sql), *params)
            return rows

    async def _write(self, sql: str, params: Sequence[object]) -> Sequence[Row]:
        return await self._read(sql, params)

    async def _write_many(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        if not rows:
            return
        pool = self._require()
        with self._errors():
            async with pool.acquire() as conn, conn.transaction():
                await conn.executemany(_numbered(sql), rows)

    async def _upsert_subscription_rows(self, rows: Sequence[tuple[object, ...]]) -> dict[str, int]:
        pool = self._require()
        ordered = sorted(rows, key=lambda row: str(row[0]))
        versions: dict[str, int] = {}
        with self._errors():
            async with pool.acquire() as conn, conn.transaction():
                step = self._batch_rows
                for start in range(0, len(ordered), step):
                    chunk = ordered[start : start + step]
                    columns = [list(column) for column in zip(*chunk, strict=True)]
                    for record in await conn.fetch(_SQL_SUB_UPSERT_MANY, *columns):
                        versions[record[0]] = record[1]
        return versions
