"""SQLite backend of the state store: the embedded default, one file per gateway.

Theory of operation
-------------------
One aiosqlite connection (one worker thread) per store, in autocommit mode
(``isolation_level=None``): a single statement is its own transaction, and batches open an
explicit ``BEGIN IMMEDIATE`` transaction. The database runs in WAL mode with
``synchronous=NORMAL``: a commit appends to the write-ahead log without an fsync, so a power
loss can lose the last commits but never corrupts the file, which suits state that peers
refresh anyway (subscriptions are re-sent within their expiry). Python's sqlite3 keeps
prepared statements in a per-connection cache keyed by SQL text (``cached_statements``), so
the fixed SQL of :mod:`.base` is parsed once.

Writes are serialised by an ``asyncio.Lock``: on one connection, a statement issued by another
task while a batch transaction is open would silently join (and share the fate of) that
transaction. Reads do not take the lock.

Several processes may open the same file (two gateway "instances" in tests, or a CLI beside
the gateway): SQLite's file locks serialise writers, ``busy_timeout`` makes a writer wait for
another's transaction instead of failing at once, and the optimistic version checks of
:mod:`.base` detect lost updates.

URLs: ``sqlite:///abs/path.db`` (absolute), ``sqlite://relative/path.db``, ``sqlite://:memory:``
(a private database that disappears on close).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from urllib.parse import unquote

import aiosqlite

from .base import (
    SQL_SUB_UPSERT_HEAD,
    SQL_SUB_UPSERT_TAIL,
    SQL_SUB_VALUES,
    Row,
    Store,
)
from .errors import (
    LocalStoreError,
    RemoteStoreError,
    StoreError,
    StoreUnavailable,
)
from .schema import LATEST_VERSION, VERSION_TABLE, plan, version_table_ddl

__all__ = [
    "BUSY_TIMEOUT_MS",
    "CHUNK_RATIO",
    "SQLITE_BATCH_ROWS",
    "SqliteStore",
    "chunk_sizes",
    "path_from_url",
]

#: How long a writer waits for another connection's write transaction before giving up with
#: StoreUnavailable. A 100,000-row batch commits in well under this on the target host.
BUSY_TIMEOUT_MS = 10_000

#: Rows per multi-row INSERT of a batch: 24 parameters per row, and SQLite allows 32,766 bound
#: parameters per statement (SQLITE_MAX_VARIABLE_NUMBER since 3.32); 500 rows use 12,000.
SQLITE_BATCH_ROWS = 500

#: A batch is written in multi-row upserts of a few fixed sizes only: the largest is the
#: store's ``batch_rows``, each next one this many times smaller, down to one row (500,
#: 100, 20, 4, 1). SQLite keeps every distinct statement text prepared in the connection's
#: cache (``cached_statements``), and a prepared 500-row upsert takes about 1.1 MB: when
#: each remainder size was its own statement, the cache filled with 128 of them, about
#: 140 MB in the store's thread (measured: 120 remainder sizes, +137 MB RSS) for a gateway
#: whose subscriptions need 200 MB in all. Five sizes keep it under 1.5 MB, for at most
#: 15 more (smaller) statements per batch.
CHUNK_RATIO = 5

#: How long a failed open waits for aiosqlite's worker thread to finish (it only has to
#: close a connection that never opened).
_WORKER_JOIN_TIMEOUT_S = 5.0

#: Prepared statements kept per connection. The store issues a few dozen distinct statements.
_STATEMENT_CACHE = 128

#: Primary result codes that mean "try again later" rather than "this database is broken".
_TRANSIENT = frozenset(
    {"SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR", "SQLITE_FULL", "SQLITE_CANTOPEN"}
)

_MEMORY = ":memory:"


def path_from_url(url: str) -> str:
    """The file path of a ``sqlite://`` URL (percent-decoded), or ``:memory:``."""
    prefix = "sqlite://"
    if not url.startswith(prefix):
        raise LocalStoreError(f"not a sqlite:// URL: {url!r}")
    path = unquote(url[len(prefix) :])
    if not path or "\x00" in path:
        raise LocalStoreError(f"sqlite URL {url!r} names no file (use sqlite://:memory:)")
    return path


def _is_transient(exc: sqlite3.Error) -> bool:
    name = getattr(exc, "sqlite_errorname", None) or ""
    # Extended codes refine a primary one: SQLITE_IOERR_WRITE -> SQLITE_IOERR.
    return "_".join(name.split("_")[:2]) in _TRANSIENT


def chunk_sizes(rows: int, largest: int) -> list[int]:
    """How a batch of ``rows`` rows is split into multi-row statements: as many of
    ``largest`` rows as fit, then the rest greedily in sizes ``CHUNK_RATIO`` times smaller
    each, down to 1 (see :data:`CHUNK_RATIO`)."""
    if largest < 1:
        raise LocalStoreError("largest must be at least 1")
    sizes: list[int] = []
    size = largest
    while rows > 0:
        count, rows = divmod(rows, size)
        sizes += [size] * count
        size = max(1, size // CHUNK_RATIO)
    return sizes


class SqliteStore(Store):
    """The state store in one SQLite file (see the module docstring)."""

    dialect = "sqlite"

    def __init__(
        self,
        path: str,
        *,
        batch_rows: int = SQLITE_BATCH_ROWS,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
        target_schema: int = LATEST_VERSION,
    ) -> None:
        super().__init__(target_schema=target_schema)
        if type(path) is not str or not path or "\x00" in path:
            raise LocalStoreError("path must be a non-empty str")
        if type(batch_rows) is not int or not 1 <= batch_rows <= SQLITE_BATCH_ROWS:
            raise LocalStoreError(f"batch_rows must be in 1..{SQLITE_BATCH_ROWS}")
        self.path = path
        self._batch_rows = batch_rows
        self._busy_timeout_ms = busy_timeout_ms
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_url(cls, url: str, *, target_schema: int = LATEST_VERSION) -> SqliteStore:
        return cls(path_from_url(url), target_schema=target_schema)

    def __repr__(self) -> str:
        state = "open" if self._conn is not None else "closed"
        return f"<SqliteStore {self.path!r} {state}>"

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn driver exceptions into store errors (the layer's public boundary)."""
        try:
            yield
        except StoreError:
            raise
        except sqlite3.Error as exc:
            if _is_transient(exc) or (
                isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)
            ):
                raise StoreUnavailable(f"sqlite {self.path!r}: {exc}") from exc
            raise RemoteStoreError(f"sqlite {self.path!r}: {exc}") from exc
        except OSError as exc:
            raise StoreUnavailable(f"sqlite {self.path!r}: {exc}") from exc

    def _require(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise LocalStoreError(f"{self!r} is not open")
        return self._conn

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        if self._conn is not None:
            return
        conn: aiosqlite.Connection | None = None
        connecting = aiosqlite.connect(
            self.path, isolation_level=None, cached_statements=_STATEMENT_CACHE
        )
        # aiosqlite's worker thread is not a daemon: a store someone forgot to close would
        # keep the process from ever exiting. WAL makes an abrupt exit safe.
        worker = getattr(connecting, "_thread", None)
        if not isinstance(worker, threading.Thread) or worker.is_alive():
            worker = None
        else:
            worker.daemon = True
        try:
            with self._errors():
                conn = await connecting
                await conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
                if self.path != _MEMORY:
                    rows = list(await conn.execute_fetchall("PRAGMA journal_mode = WAL"))
                    if not rows or str(rows[0][0]).lower() != "wal":
                        raise StoreUnavailable(f"sqlite {self.path!r}: WAL mode refused")
                await conn.execute("PRAGMA synchronous = NORMAL")
                await self._migrate(conn)
        except BaseException:
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
            elif worker is not None:
                # The connection failed; aiosqlite stops its worker, which then reports to
                # this event loop. Wait for it, or it may report after the loop closed.
                await asyncio.to_thread(worker.join, _WORKER_JOIN_TIMEOUT_S)
            raise
        self._conn = conn

    async def _migrate(self, conn: aiosqlite.Connection) -> None:
        # BEGIN IMMEDIATE takes the write lock first, so two processes opening a fresh file
        # at once migrate one after the other, the second finding nothing left to do.
        await conn.execute("BEGIN IMMEDIATE")
        try:
            await conn.execute(version_table_ddl(self.dialect))
            rows = list(await conn.execute_fetchall(f"SELECT max(version) FROM {VERSION_TABLE}"))
            current = rows[0][0] or 0
            for migration in plan(current, max(current, self._target_schema)):
                for statement in migration.statements(self.dialect):
                    await conn.execute(statement)
                await conn.execute(
                    f"INSERT INTO {VERSION_TABLE} (version, description, applied_at) "
                    "VALUES (?, ?, ?)",
                    (migration.version, migration.description, time.time()),
                )
            await conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        async with self._lock:
            with self._errors():
                await conn.close()

    # -- primitives ------------------------------------------------------------------------

    async def _read(self, sql: str, params: Sequence[object]) -> Sequence[Row]:
        conn = self._require()
        with self._errors():
            return list(await conn.execute_fetchall(sql, params))

    async def _reset_if_in_transaction(self, conn: aiosqlite.Connection) -> None:
        # A batch whose task was cancelled twice may not have reached its ROLLBACK; later
        # autocommit statements would silently join that transaction.
        if conn.in_transaction:
            await conn.execute("ROLLBACK")

    async def _write(self, sql: str, params: Sequence[object]) -> Sequence[Row]:
        conn = self._require()
        async with self._lock:
            with self._errors():
                await self._reset_if_in_transaction(conn)
                return list(await conn.execute_fetchall(sql, params))

    async def _write_many(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        if not rows:
            return
        conn = self._require()
        async with self._lock:
            with self._errors():
                await self._reset_if_in_transaction(conn)
                await conn.execute("BEGIN IMMEDIATE")
                try:
                    await conn.executemany(sql, rows)
                    await conn.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(Exception):
                        await conn.execute("ROLLBACK")
                    raise

    async def _upsert_subscription_rows(self, rows: Sequence[tuple[object, ...]]) -> dict[str, int]:
        conn = self._require()
        versions: dict[str, int] = {}
        async with self._lock:
            with self._errors():
                await self._reset_if_in_transaction(conn)
                await conn.execute("BEGIN IMMEDIATE")
                try:
                    start = 0
                    for size in chunk_sizes(len(rows), self._batch_rows):
                        chunk = rows[start : start + size]
                        start += size
                        sql = (
                            SQL_SUB_UPSERT_HEAD
                            + ", ".join([SQL_SUB_VALUES] * len(chunk))
                            + SQL_SUB_UPSERT_TAIL
                            + " RETURNING id, version"
                        )
                        params = [value for row in chunk for value in row]
                        for ident, version in await conn.execute_fetchall(sql, params):
                            versions[ident] = version
                    await conn.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(Exception):
                        await conn.execute("ROLLBACK")
                    raise
        return versions
