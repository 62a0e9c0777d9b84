"""The store API, shared by the SQLite and PostgreSQL backends.

Theory of operation
-------------------
:class:`Store` implements every public operation once, as SQL written with ``?`` placeholders
over the tables of :mod:`.schema`, plus the row codec (:func:`subscription_row`,
:func:`subscription_from_row`). A backend supplies a connection, runs that SQL (PostgreSQL
rewrites ``?`` to ``$n``), applies migrations under its own lock, and implements the one
operation whose best form differs per database: the batch upsert.

Optimistic concurrency (several gateway instances on one database): every write sets
``version`` in the same statement that changes the row (1 on insert, ``version + 1`` on
update), so it is atomic on both databases without explicit locks:

* ``expected_version=None``: unconditional upsert (last writer wins).
* ``expected_version=0``: insert only; a row that already exists is a conflict.
* ``expected_version=N``: ``UPDATE ... WHERE version = N``; any other version, or a missing
  row, is a conflict.

A statement that matched no row is followed by a read of the current version, which goes into
:class:`~.errors.VersionConflict` (informative only; it may be stale by the time it is read).

Bounded memory: list queries return at most ``limit`` rows and raise
:class:`~.errors.ResultTooLarge` if more match (the per-user and per-peer caps keep real
results far smaller); :meth:`Store.all_subscriptions` pages with keyset pagination
(``WHERE id > last ORDER BY id LIMIT n``), so it holds one page at a time, keeps no cursor or
transaction open between pages, and sees rows written meanwhile at most once.

Lookups by a key that the model would refuse (NUL, unencodable, oversized) return "not found":
such a row cannot exist, so the answer is exact and no database error can occur.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import json
import math
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, ClassVar, Self, TypeVar

from .errors import LocalStoreError, RemoteStoreError, ResultTooLarge, VersionConflict
from .model import (
    MAX_ID_BYTES,
    MAX_URI_BYTES,
    Authorization,
    DialogState,
    Subscription,
    SubscriptionRole,
    decode_extra_checked,
)
from .schema import (
    AUTHORIZATION_COLUMNS,
    AUTHORIZATIONS,
    LATEST_VERSION,
    SUBSCRIPTION_COLUMNS,
    SUBSCRIPTIONS,
    VERSION_TABLE,
)

__all__ = [
    "DEFAULT_LIST_LIMIT",
    "EXPIRY_BATCH_ROWS",
    "ITER_BATCH_ROWS",
    "MAX_PAGE_ROWS",
    "Row",
    "Store",
    "authorization_from_row",
    "authorization_row",
    "subscription_from_row",
    "subscription_row",
]

#: Largest page or list any query returns. 10,000 decoded subscriptions are a few MB; a
#: caller wanting more iterates with :meth:`Store.all_subscriptions`.
MAX_PAGE_ROWS = 10_000

#: Default ``limit`` of the per-presentity/watcher/dialog/authorization lists. The presence
#: work caps subscriptions per user and per peer well below this, so reaching it means a cap
#: is missing, and :class:`ResultTooLarge` says so instead of returning a partial answer.
DEFAULT_LIST_LIMIT = MAX_PAGE_ROWS

#: Rows per page of :meth:`Store.all_subscriptions`: one round trip per 1,000 rows keeps a
#: restart's reload fast while holding about a megabyte at a time.
ITER_BATCH_ROWS = 1000

#: Default page of :meth:`Store.expired_subscriptions`: an expiry sweep handles this many,
#: deletes or refreshes them, and asks again.
EXPIRY_BATCH_ROWS = 1000

Row = Sequence[Any]
_T = TypeVar("_T")
_R = TypeVar("_R")


def _batch_rows(
    batch: Iterable[_R],
    kind: type[_R],
    key: Callable[[_R], object],
    to_row: Callable[[_R], tuple[object, ...]],
    method: str,
) -> list[tuple[object, ...]]:
    """The rows of a batch write; refuses an item of another type or a key given twice
    (one upsert statement cannot write one row twice)."""
    seen: set[object] = set()
    rows: list[tuple[object, ...]] = []
    for item in batch:
        if not isinstance(item, kind):
            raise LocalStoreError(f"{method} needs {kind.__name__} items")
        k = key(item)
        if k in seen:
            raise LocalStoreError(f"{kind.__name__.lower()} {k!r} appears twice in one batch")
        seen.add(k)
        rows.append(to_row(item))
    return rows


# -- row codec ---------------------------------------------------------------------------------

_NO_DIALOG: tuple[None, ...] = (None,) * 13


def subscription_row(sub: Subscription) -> tuple[object, ...]:
    """The values of :data:`.schema.SUBSCRIPTION_COLUMNS` for ``sub``."""
    d = sub.dialog
    head = (
        sub.id,
        sub.role.value,
        sub.watcher,
        sub.presentity,
        sub.event,
        sub.state.value,
        sub.expires_at,
        sub.peer,
        sub.last_state,
        sub.last_notify_at,
        sub.extra_json,
    )
    if d is None:
        return head + _NO_DIALOG
    return head + (
        d.call_id,
        d.local_tag,
        d.remote_tag,
        d.local_uri,
        d.remote_uri,
        d.remote_target,
        json.dumps(list(d.route_set), ensure_ascii=False, separators=(",", ":"))
        if d.route_set
        else "[]",
        d.local_cseq,
        d.remote_cseq,
        d.secure,
        d.transport,
        d.peer_host,
        d.peer_port,
    )


def _as_bool(value: object) -> bool:
    """SQLite keeps booleans as 0/1 integers; PostgreSQL returns bool."""
    if type(value) is bool:
        return value
    if type(value) is int and value in (0, 1):
        return bool(value)
    raise ValueError(f"{value!r} is not a boolean")


def _as_float(value: object) -> float:
    if type(value) is int:  # SQLite may hand back an integral REAL as an integer
        return float(value)
    if type(value) is not float:
        raise ValueError(f"{value!r} is not a number")
    return value


def _stored_version(value: object) -> None:
    if type(value) is not int or value < 1:  # the SQL sets 1 on insert, +1 on update
        raise ValueError(f"stored version {value!r} is not a positive int")


def _route_set(text: object) -> tuple[str, ...]:
    if type(text) is not str:
        raise ValueError("route set is not text")
    value = json.loads(text)
    if not isinstance(value, list) or not all(type(v) is str for v in value):
        raise ValueError("route set is not a JSON list of strings")
    return tuple(value)


def subscription_from_row(row: Row) -> Subscription:
    """Decode a row of :data:`.schema.SUBSCRIPTION_COLUMNS` + ``version``.

    Raises :class:`RemoteStoreError` when the row cannot be a stored subscription.
    """
    try:
        (
            id_,
            role,
            watcher,
            presentity,
            event,
            state,
            expires_at,
            peer,
            last_state,
            last_notify_at,
            extra,
            call_id,
            local_tag,
            remote_tag,
            local_uri,
            remote_uri,
            remote_target,
            route_set,
            local_cseq,
            remote_cseq,
            secure,
            transport,
            peer_host,
            peer_port,
            version,
        ) = row
        _stored_version(version)
        dialog = None
        if call_id is not None:
            dialog = DialogState(
                call_id=call_id,
                local_tag=local_tag,
                remote_tag=remote_tag,
                local_uri=local_uri,
                remote_uri=remote_uri,
                remote_target=remote_target,
                route_set=_route_set(route_set),
                local_cseq=local_cseq,
                remote_cseq=remote_cseq,
                secure=_as_bool(secure),
                transport=transport,
                peer_host=peer_host,
                peer_port=peer_port,
            )
        if type(extra) is not str:
            raise ValueError("extra is not text")
        result = Subscription(
            id=id_,
            role=role,
            watcher=watcher,
            presentity=presentity,
            event=event,
            state=state,
            expires_at=_as_float(expires_at),
            peer=peer,
            dialog=dialog,
            last_state=last_state,
            last_notify_at=None if last_notify_at is None else _as_float(last_notify_at),
            version=version,
        )
        # Plain JSON by construction (see decode_extra_checked): set without re-encoding.
        object.__setattr__(result, "extra", decode_extra_checked(extra))
        object.__setattr__(result, "extra_json", extra)
        return result
    except (ValueError, TypeError, RecursionError) as exc:  # LocalStoreError is a ValueError
        ident = row[0] if len(row) else None
        raise RemoteStoreError(f"unreadable subscription row {ident!r}: {exc}") from None


def authorization_row(auth: Authorization) -> tuple[object, ...]:
    """The values of :data:`.schema.AUTHORIZATION_COLUMNS` for ``auth``."""
    return (auth.xmpp_jid, auth.sip_uri, auth.state.value, auth.pending_out, auth.pending_in)


def authorization_from_row(row: Row) -> Authorization:
    """Decode a row of :data:`.schema.AUTHORIZATION_COLUMNS` + ``version``."""
    try:
        xmpp_jid, sip_uri, state, pending_out, pending_in, version = row
        _stored_version(version)
        return Authorization(
            xmpp_jid=xmpp_jid,
            sip_uri=sip_uri,
            state=state,
            pending_out=_as_bool(pending_out),
            pending_in=_as_bool(pending_in),
            version=version,
        )
    except (ValueError, TypeError) as exc:
        key = tuple(row[:2])
        raise RemoteStoreError(f"unreadable authorization row {key!r}: {exc}") from None


def _with_version(record: _T, version: object) -> _T:
    """A copy of a frozen record with the version the database assigned (no re-validation)."""
    if type(version) is not int or version < 1:
        raise RemoteStoreError(f"database returned version {version!r}")
    cls: type = type(record)
    clone: _T = object.__new__(cls)
    # Slot by slot: copy.copy would go through the dataclass pickling helpers, several times
    # slower, and dataclasses.replace would validate every field again.
    for name in _slot_names(cls):
        object.__setattr__(clone, name, getattr(record, name))
    object.__setattr__(clone, "version", version)
    return clone


@functools.cache
def _slot_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


# -- argument checks ---------------------------------------------------------------------------


def _lookup_key(name: str, value: object, max_bytes: int) -> str | None:
    """``value`` if a stored row could have it as key, None if no row can (see module doc)."""
    if type(value) is not str:
        raise LocalStoreError(f"{name} must be str, not {type(value).__name__}")
    if "\x00" in value:
        return None
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return None
    return value if size <= max_bytes else None


def _limit(value: object, name: str = "limit") -> int:
    if type(value) is not int or not 1 <= value <= MAX_PAGE_ROWS:
        raise LocalStoreError(f"{name} must be an int in 1..{MAX_PAGE_ROWS}, not {value!r}")
    return value


def _expected(value: object) -> int | None:
    if value is None:
        return None
    if type(value) is not int or value < 0:
        raise LocalStoreError(f"expected_version must be None or an int >= 0, not {value!r}")
    return value


# -- SQL -----------------------------------------------------------------------------------------

_SUB_DATA = ", ".join(SUBSCRIPTION_COLUMNS)
_SUB_ALL = _SUB_DATA + ", version"
_SUB_MARKS = ", ".join("?" for _ in SUBSCRIPTION_COLUMNS)
_SUB_SET_EXCLUDED = ", ".join(f"{c} = excluded.{c}" for c in SUBSCRIPTION_COLUMNS[1:])

SQL_SUB_SELECT = f"SELECT {_SUB_ALL} FROM {SUBSCRIPTIONS}"
SQL_SUB_UPSERT_HEAD = f"INSERT INTO {SUBSCRIPTIONS} ({_SUB_ALL}) VALUES "
SQL_SUB_UPSERT_TAIL = (
    f" ON CONFLICT (id) DO UPDATE SET {_SUB_SET_EXCLUDED}, version = {SUBSCRIPTIONS}.version + 1"
)
SQL_SUB_VALUES = f"({_SUB_MARKS}, 1)"
_SQL_SUB_UPSERT = SQL_SUB_UPSERT_HEAD + SQL_SUB_VALUES + SQL_SUB_UPSERT_TAIL + " RETURNING version"
_SQL_SUB_INSERT = (
    SQL_SUB_UPSERT_HEAD + SQL_SUB_VALUES + " ON CONFLICT (id) DO NOTHING RETURNING version"
)
_SQL_SUB_UPDATE = (
    f"UPDATE {SUBSCRIPTIONS} SET "
    + ", ".join(f"{c} = ?" for c in SUBSCRIPTION_COLUMNS[1:])
    + ", version = version + 1 WHERE id = ? AND version = ? RETURNING version"
)
_SQL_SUB_VERSION = f"SELECT version FROM {SUBSCRIPTIONS} WHERE id = ?"
_SQL_SUB_GET = f"{SQL_SUB_SELECT} WHERE id = ?"
_SQL_SUB_DELETE = f"DELETE FROM {SUBSCRIPTIONS} WHERE id = ? RETURNING version"
_SQL_SUB_DELETE_IF = f"DELETE FROM {SUBSCRIPTIONS} WHERE id = ? AND version = ? RETURNING version"
_SQL_SUB_BY_PRESENTITY = f"{SQL_SUB_SELECT} WHERE presentity = ? ORDER BY id LIMIT ?"
_SQL_SUB_BY_WATCHER = f"{SQL_SUB_SELECT} WHERE watcher = ? ORDER BY id LIMIT ?"
_SQL_SUB_BY_DIALOG = (
    f"{SQL_SUB_SELECT} WHERE dialog_call_id = ? AND dialog_local_tag = ? ORDER BY id LIMIT ?"
)
_SQL_SUB_PAGE = f"{SQL_SUB_SELECT} WHERE id > ? ORDER BY id LIMIT ?"
_SQL_SUB_PAGE_ROLE = f"{SQL_SUB_SELECT} WHERE id > ? AND role = ? ORDER BY id LIMIT ?"
_SQL_SUB_EXPIRED = f"{SQL_SUB_SELECT} WHERE expires_at <= ? ORDER BY expires_at, id LIMIT ?"

_AUTH_DATA = ", ".join(AUTHORIZATION_COLUMNS)
_AUTH_ALL = _AUTH_DATA + ", version"
_AUTH_MARKS = ", ".join("?" for _ in AUTHORIZATION_COLUMNS)
_AUTH_SELECT = f"SELECT {_AUTH_ALL} FROM {AUTHORIZATIONS}"
_AUTH_KEY = "xmpp_jid = ? AND sip_uri = ?"
_SQL_AUTH_UPSERT = (
    f"INSERT INTO {AUTHORIZATIONS} ({_AUTH_ALL}) VALUES ({_AUTH_MARKS}, 1) "
    "ON CONFLICT (xmpp_jid, sip_uri) DO UPDATE SET state = excluded.state, "
    "pending_out = excluded.pending_out, pending_in = excluded.pending_in, "
    f"version = {AUTHORIZATIONS}.version + 1 RETURNING version"
)
_SQL_AUTH_INSERT = (
    f"INSERT INTO {AUTHORIZATIONS} ({_AUTH_ALL}) VALUES ({_AUTH_MARKS}, 1) "
    "ON CONFLICT (xmpp_jid, sip_uri) DO NOTHING RETURNING version"
)
_SQL_AUTH_UPDATE = (
    f"UPDATE {AUTHORIZATIONS} SET state = ?, pending_out = ?, pending_in = ?, "
    f"version = version + 1 WHERE {_AUTH_KEY} AND version = ? RETURNING version"
)
_SQL_AUTH_VERSION = f"SELECT version FROM {AUTHORIZATIONS} WHERE {_AUTH_KEY}"
_SQL_AUTH_GET = f"{_AUTH_SELECT} WHERE {_AUTH_KEY}"
_SQL_AUTH_DELETE = f"DELETE FROM {AUTHORIZATIONS} WHERE {_AUTH_KEY} RETURNING version"
_SQL_AUTH_DELETE_IF = (
    f"DELETE FROM {AUTHORIZATIONS} WHERE {_AUTH_KEY} AND version = ? RETURNING version"
)
# Batch forms (one statement per row of parameters, all in one transaction): no RETURNING,
# since executemany cannot return rows.
_SQL_SUB_DELETE_MANY = f"DELETE FROM {SUBSCRIPTIONS} WHERE id = ?"
_SQL_AUTH_UPSERT_MANY = _SQL_AUTH_UPSERT.removesuffix(" RETURNING version")
_SQL_AUTH_DELETE_MANY = f"DELETE FROM {AUTHORIZATIONS} WHERE {_AUTH_KEY}"
_SQL_AUTH_FOR = (
    f"{_AUTH_SELECT} WHERE xmpp_jid = ? OR sip_uri = ? ORDER BY xmpp_jid, sip_uri LIMIT ?"
)

_SQL_SCHEMA_VERSION = f"SELECT max(version) FROM {VERSION_TABLE}"


def _count_sql(filters: Sequence[str]) -> str:
    where = " AND ".join(f"{column} = ?" for column in filters)
    return f"SELECT count(*) FROM {SUBSCRIPTIONS}" + (f" WHERE {where}" if where else "")


class Store(abc.ABC):
    """Persistent state of the gateway: subscriptions (with dialogs) and authorizations.

    Use as ``async with store:`` or call :meth:`open` / :meth:`close`. All methods are
    coroutines; every failure is a :class:`~.errors.StoreError`.

    :param target_schema: the schema version :meth:`open` migrates to. Only tests of the
        upgrade path set it below :data:`.schema.LATEST_VERSION`.
    """

    #: "sqlite" or "postgres": which DDL of a :class:`.schema.Migration` applies.
    dialect: ClassVar[str]

    def __init__(self, *, target_schema: int = LATEST_VERSION) -> None:
        if type(target_schema) is not int or not 0 <= target_schema <= LATEST_VERSION:
            raise LocalStoreError(f"target_schema must be in 0..{LATEST_VERSION}")
        self._target_schema = target_schema

    # -- lifecycle -------------------------------------------------------------------------

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and migrate the schema; :class:`StoreUnavailable` if that fails."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Disconnect; idempotent. Writes already returned are durable."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- backend primitives ----------------------------------------------------------------

    @abc.abstractmethod
    async def _read(self, sql: str, params: Sequence[object]) -> Sequence[Row]:
        """Run a query (``?`` placeholders) and return all its rows."""

    @abc.abstractmethod
    async def _write(self, sql: str, params: Sequence[object]) -> Sequence[Row]:
        """Run one modifying statement atomically and return its RETURNING rows."""

    @abc.abstractmethod
    async def _upsert_subscription_rows(self, rows: Sequence[tuple[object, ...]]) -> dict[str, int]:
        """Upsert many subscription rows in one transaction; map id -> new version."""

    @abc.abstractmethod
    async def _write_many(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        """Run one modifying statement once per row of parameters, all in one transaction
        (all or none)."""

    async def _write_batches(self, sql: str, rows: list[tuple[object, ...]]) -> None:
        for start in range(0, len(rows), MAX_PAGE_ROWS):
            await self._write_many(sql, rows[start : start + MAX_PAGE_ROWS])

    # -- subscriptions ---------------------------------------------------------------------

    async def put_subscription(
        self, sub: Subscription, *, expected_version: int | None = None
    ) -> Subscription:
        """Insert or update ``sub``; returns it with the version the store assigned.

        ``expected_version``: None writes unconditionally; 0 requires that no row exists;
        N requires the stored row to be at version N. Otherwise :class:`VersionConflict`.
        """
        if not isinstance(sub, Subscription):
            raise LocalStoreError("put_subscription needs a Subscription")
        expected = _expected(expected_version)
        row = subscription_row(sub)
        if expected is None:
            rows = await self._write(_SQL_SUB_UPSERT, row)
        elif expected == 0:
            rows = await self._write(_SQL_SUB_INSERT, row)
        else:
            rows = await self._write(_SQL_SUB_UPDATE, (*row[1:], sub.id, expected))
        if not rows:
            assert expected is not None  # an upsert always returns its row
            found = await self._read(_SQL_SUB_VERSION, (sub.id,))
            actual = found[0][0] if found else None
            raise VersionConflict("subscription", (sub.id,), expected, actual)
        return _with_version(sub, rows[0][0])

    async def put_subscriptions(self, batch: Iterable[Subscription]) -> list[Subscription]:
        """Upsert many subscriptions in one transaction (all or none are written).

        Each is written unconditionally (as ``put_subscription`` with no expected version);
        returns them in the given order with their new versions. An id may appear only once.
        Use it for periodic refreshes; use :meth:`put_subscription` with ``expected_version``
        where instances may contend for the same row.
        """
        subs = list(batch)
        if not subs:
            return []
        rows = _batch_rows(
            subs, Subscription, lambda sub: sub.id, subscription_row, "put_subscriptions"
        )
        versions = await self._upsert_subscription_rows(rows)
        try:
            return [_with_version(sub, versions[sub.id]) for sub in subs]
        except KeyError as exc:
            raise RemoteStoreError(f"batch write returned no version for {exc}") from None

    async def get_subscription(self, id: str) -> Subscription | None:
        """The subscription with this id, or None."""
        key = _lookup_key("id", id, MAX_ID_BYTES)
        if key is None:
            return None
        rows = await self._read(_SQL_SUB_GET, (key,))
        return subscription_from_row(rows[0]) if rows else None

    async def delete_subscription(self, id: str, *, expected_version: int | None = None) -> bool:
        """Delete; True if a row was deleted, False if there was none.

        With ``expected_version`` N the row is deleted only while still at version N; a row at
        another version raises :class:`VersionConflict` (a missing row returns False).
        """
        expected = _expected(expected_version)
        key = _lookup_key("id", id, MAX_ID_BYTES)
        if key is None:
            return False
        if expected is None:
            return bool(await self._write(_SQL_SUB_DELETE, (key,)))
        if await self._write(_SQL_SUB_DELETE_IF, (key, expected)):
            return True
        found = await self._read(_SQL_SUB_VERSION, (key,))
        if not found:
            return False
        raise VersionConflict("subscription", (key,), expected, found[0][0])

    async def delete_subscriptions(self, ids: Iterable[str]) -> None:
        """Delete every subscription named in ``ids`` (unconditionally; ids without a row
        are ignored), in one transaction per :data:`MAX_PAGE_ROWS` ids: a periodic flush
        removes what ended since the last one without a round trip per row."""
        keys: list[tuple[object, ...]] = []
        for ident in ids:
            key = _lookup_key("id", ident, MAX_ID_BYTES)
            if key is not None:
                keys.append((key,))
        await self._write_batches(_SQL_SUB_DELETE_MANY, keys)

    async def _list(self, sql: str, params: tuple[object, ...], limit: int) -> list[Subscription]:
        rows = await self._read(sql, (*params, limit + 1))
        if len(rows) > limit:
            raise ResultTooLarge(f"more than {limit} subscriptions match {params!r}")
        return [subscription_from_row(row) for row in rows]

    async def subscriptions_for_presentity(
        self, presentity: str, *, limit: int = DEFAULT_LIST_LIMIT
    ) -> list[Subscription]:
        """Subscriptions watching ``presentity`` (exact match), ordered by id."""
        limit = _limit(limit)
        key = _lookup_key("presentity", presentity, MAX_URI_BYTES)
        return [] if key is None else await self._list(_SQL_SUB_BY_PRESENTITY, (key,), limit)

    async def subscriptions_for_watcher(
        self, watcher: str, *, limit: int = DEFAULT_LIST_LIMIT
    ) -> list[Subscription]:
        """Subscriptions held by ``watcher`` (exact match), ordered by id."""
        limit = _limit(limit)
        key = _lookup_key("watcher", watcher, MAX_URI_BYTES)
        return [] if key is None else await self._list(_SQL_SUB_BY_WATCHER, (key,), limit)

    async def subscriptions_for_dialog(
        self, call_id: str, local_tag: str, *, limit: int = DEFAULT_LIST_LIMIT
    ) -> list[Subscription]:
        """Subscriptions in the dialog with this Call-ID and local tag, ordered by id.

        Several can match: one dialog may carry subscriptions to several event packages or
        ids (RFC 6665 §4.5.2), and a forked SUBSCRIBE creates one dialog per remote tag
        (RFC 6665 §4.1.2.4); compare ``dialog.remote_tag`` to pick one.
        """
        limit = _limit(limit)
        call = _lookup_key("call_id", call_id, MAX_ID_BYTES)
        tag = _lookup_key("local_tag", local_tag, MAX_ID_BYTES)
        if call is None or tag is None:
            return []
        return await self._list(_SQL_SUB_BY_DIALOG, (call, tag), limit)

    async def all_subscriptions(
        self, role: SubscriptionRole | str | None = None, *, batch_size: int = ITER_BATCH_ROWS
    ) -> AsyncIterator[Subscription]:
        """Every subscription (of ``role``, if given), ordered by id, fetched page by page."""
        batch_size = _limit(batch_size, "batch_size")
        role_value = None
        if role is not None:
            try:
                role_value = SubscriptionRole(role).value
            except ValueError:
                raise LocalStoreError(f"role {role!r} is not a SubscriptionRole") from None
        last = ""  # ids are non-empty, so every id sorts after ""
        while True:
            if role_value is None:
                rows = await self._read(_SQL_SUB_PAGE, (last, batch_size))
            else:
                rows = await self._read(_SQL_SUB_PAGE_ROLE, (last, role_value, batch_size))
            page = [subscription_from_row(row) for row in rows]
            for sub in page:
                yield sub
            if len(page) < batch_size:
                return
            last = page[-1].id

    async def count_subscriptions(
        self,
        *,
        peer: str | None = None,
        watcher: str | None = None,
        presentity: str | None = None,
    ) -> int:
        """How many subscriptions match all the given filters (all of them if none given)."""
        filters: list[str] = []
        params: list[object] = []
        for column, value, size in (
            ("peer", peer, MAX_ID_BYTES),
            ("watcher", watcher, MAX_URI_BYTES),
            ("presentity", presentity, MAX_URI_BYTES),
        ):
            if value is None:
                continue
            key = _lookup_key(column, value, size)
            if key is None:
                return 0
            filters.append(column)
            params.append(key)
        rows = await self._read(_count_sql(filters), params)
        count = rows[0][0]
        if type(count) is not int:
            raise RemoteStoreError(f"count returned {count!r}")
        return count

    async def expired_subscriptions(
        self, now: float, *, limit: int = EXPIRY_BATCH_ROWS
    ) -> list[Subscription]:
        """Up to ``limit`` subscriptions with ``expires_at <= now``, the oldest first.

        ``now`` is wall-clock epoch seconds. This is a page, not a complete answer: an expiry
        sweep handles what it gets (delete or refresh) and asks again until a short page.
        """
        limit = _limit(limit)
        if type(now) not in (int, float) or not math.isfinite(now):
            raise LocalStoreError(f"now must be finite epoch seconds, not {now!r}")
        rows = await self._read(_SQL_SUB_EXPIRED, (float(now), limit))
        return [subscription_from_row(row) for row in rows]

    # -- authorizations --------------------------------------------------------------------

    async def put_authorization(
        self, auth: Authorization, *, expected_version: int | None = None
    ) -> Authorization:
        """Insert or update ``auth``; same ``expected_version`` rules as put_subscription."""
        if not isinstance(auth, Authorization):
            raise LocalStoreError("put_authorization needs an Authorization")
        expected = _expected(expected_version)
        row = authorization_row(auth)
        if expected is None:
            rows = await self._write(_SQL_AUTH_UPSERT, row)
        elif expected == 0:
            rows = await self._write(_SQL_AUTH_INSERT, row)
        else:
            rows = await self._write(_SQL_AUTH_UPDATE, (*row[2:], *row[:2], expected))
        if not rows:
            assert expected is not None
            found = await self._read(_SQL_AUTH_VERSION, auth.key)
            actual = found[0][0] if found else None
            raise VersionConflict("authorization", auth.key, expected, actual)
        return _with_version(auth, rows[0][0])

    async def put_authorizations(self, batch: Iterable[Authorization]) -> None:
        """Upsert many authorizations unconditionally (as ``put_authorization`` without an
        expected version), in one transaction per :data:`MAX_PAGE_ROWS` records. The new
        versions are not returned; read a record back where its version matters."""
        rows = _batch_rows(
            batch, Authorization, lambda auth: auth.key, authorization_row, "put_authorizations"
        )
        await self._write_batches(_SQL_AUTH_UPSERT_MANY, rows)

    async def delete_authorizations(self, keys: Iterable[tuple[str, str]]) -> None:
        """Delete the authorizations named by (XMPP JID, SIP URI) pairs, unconditionally,
        in one transaction per :data:`MAX_PAGE_ROWS` keys (pairs without a row are ignored)."""
        rows: list[tuple[object, ...]] = []
        for xmpp_jid, sip_uri in keys:
            jid = _lookup_key("xmpp_jid", xmpp_jid, MAX_URI_BYTES)
            uri = _lookup_key("sip_uri", sip_uri, MAX_URI_BYTES)
            if jid is not None and uri is not None:
                rows.append((jid, uri))
        await self._write_batches(_SQL_AUTH_DELETE_MANY, rows)

    async def get_authorization(self, xmpp_jid: str, sip_uri: str) -> Authorization | None:
        """The authorization between this JID and SIP URI, or None."""
        jid = _lookup_key("xmpp_jid", xmpp_jid, MAX_URI_BYTES)
        uri = _lookup_key("sip_uri", sip_uri, MAX_URI_BYTES)
        if jid is None or uri is None:
            return None
        rows = await self._read(_SQL_AUTH_GET, (jid, uri))
        return authorization_from_row(rows[0]) if rows else None

    async def delete_authorization(
        self, xmpp_jid: str, sip_uri: str, *, expected_version: int | None = None
    ) -> bool:
        """Delete; same rules as :meth:`delete_subscription`."""
        expected = _expected(expected_version)
        jid = _lookup_key("xmpp_jid", xmpp_jid, MAX_URI_BYTES)
        uri = _lookup_key("sip_uri", sip_uri, MAX_URI_BYTES)
        if jid is None or uri is None:
            return False
        if expected is None:
            return bool(await self._write(_SQL_AUTH_DELETE, (jid, uri)))
        if await self._write(_SQL_AUTH_DELETE_IF, (jid, uri, expected)):
            return True
        found = await self._read(_SQL_AUTH_VERSION, (jid, uri))
        if not found:
            return False
        raise VersionConflict("authorization", (jid, uri), expected, found[0][0])

    async def authorizations_for(
        self, jid_or_uri: str, *, limit: int = DEFAULT_LIST_LIMIT
    ) -> list[Authorization]:
        """Authorizations whose XMPP JID or SIP URI is ``jid_or_uri`` (exact match)."""
        limit = _limit(limit)
        key = _lookup_key("jid_or_uri", jid_or_uri, MAX_URI_BYTES)
        if key is None:
            return []
        rows = await self._read(_SQL_AUTH_FOR, (key, key, limit + 1))
        if len(rows) > limit:
            raise ResultTooLarge(f"more than {limit} authorizations match {key!r}")
        return [authorization_from_row(row) for row in rows]

    # -- schema ----------------------------------------------------------------------------

    async def schema_version(self) -> int:
        """The schema version of the open database."""
        rows = await self._read(_SQL_SCHEMA_VERSION, ())
        version = rows[0][0] if rows else None
        return version if type(version) is int else 0
