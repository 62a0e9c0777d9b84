"""Schema versioning, and how database failures reach callers, on every backend."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from store_helpers import auth, small_batch_store, sub

from sipxmpp.gateway.store import (
    LATEST_VERSION,
    LocalStoreError,
    RemoteStoreError,
    SchemaVersionError,
    Store,
    StoreUnavailable,
    open_store,
    store_for_url,
)
from sipxmpp.gateway.store.sqlite import SqliteStore, path_from_url
from support.postgres import PostgresError, PostgresServer, free_tcp_port


async def raw(db_url: str, sql: str) -> list[tuple[Any, ...]]:
    """Run SQL on the database behind the store's back, as an operator or another tool would."""
    if db_url.startswith("sqlite://"):
        conn = sqlite3.connect(path_from_url(db_url), isolation_level=None)
        try:
            return [tuple(row) for row in conn.execute(sql).fetchall()]
        finally:
            conn.close()
    pg = await asyncpg.connect(db_url)
    try:
        return [tuple(record) for record in await pg.fetch(sql)]
    finally:
        await pg.close()


async def raw_script(db_url: str, script: str) -> None:
    if db_url.startswith("sqlite://"):
        conn = sqlite3.connect(path_from_url(db_url), isolation_level=None)
        try:
            conn.executescript(script)
        finally:
            conn.close()
        return
    pg = await asyncpg.connect(db_url)
    try:
        await pg.execute(script)
    finally:
        await pg.close()


# -- schema versions ---------------------------------------------------------------------------


async def test_fresh_database_gets_latest_schema(db_url: str) -> None:
    async with open_store(db_url) as store:
        assert await store.schema_version() == LATEST_VERSION
    rows = await raw(db_url, "SELECT version, description FROM sipxmpp_schema_version")
    assert sorted(v for v, _ in rows) == list(range(1, LATEST_VERSION + 1))
    async with open_store(db_url) as store:  # reopening applies nothing twice
        assert await store.schema_version() == LATEST_VERSION
    assert len(await raw(db_url, "SELECT version FROM sipxmpp_schema_version")) == LATEST_VERSION


async def test_database_of_an_older_schema_is_migrated(db_url: str) -> None:
    # A database as a gateway with schema version 1 left it.
    async with open_store(db_url, target_schema=1) as old:
        assert await old.schema_version() == 1
        kept = await old.put_subscription(sub(1))
        kept2 = await old.put_subscription(sub(2))
        with pytest.raises(RemoteStoreError):  # version 1 has no authorization table
            await old.put_authorization(auth())
    async with open_store(db_url) as new:
        assert await new.schema_version() == LATEST_VERSION
        assert [s async for s in new.all_subscriptions()] == [kept, kept2]
        assert kept.dialog is not None
        assert await new.subscriptions_for_dialog(kept.dialog.call_id, kept.dialog.local_tag) == [
            kept
        ]
        stored = await new.put_authorization(auth(state="both"))
        assert await new.authorizations_for("sip:romeo@sip.example") == [stored]


async def test_schema_from_a_newer_gateway_is_refused(db_url: str) -> None:
    async with open_store(db_url):
        pass
    await raw(
        db_url,
        "INSERT INTO sipxmpp_schema_version (version, description, applied_at) "
        f"VALUES ({LATEST_VERSION + 1}, 'from the future', 0)",
    )
    store = store_for_url(db_url)
    with pytest.raises(SchemaVersionError, match="newer") as info:
        await store.open()
    assert info.value.status_hint == 500
    with pytest.raises(LocalStoreError, match="not open"):  # nothing half-open is left behind
        await store.count_subscriptions()


async def test_instances_starting_together_migrate_once(db_url: str) -> None:
    stores = [store_for_url(db_url) for _ in range(3)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        for s in stores:
            assert await s.schema_version() == LATEST_VERSION
        await stores[0].put_subscription(sub(1))
        assert await stores[2].count_subscriptions() == 1
    finally:
        await asyncio.gather(*(s.close() for s in stores))
    assert len(await raw(db_url, "SELECT version FROM sipxmpp_schema_version")) == LATEST_VERSION


# -- unreadable rows ---------------------------------------------------------------------------


async def test_corrupt_row_in_database_is_a_remote_error(store: Store, db_url: str) -> None:
    await store.put_subscriptions([sub(1), sub(2)])
    await raw(db_url, "UPDATE sipxmpp_subscriptions SET extra = '{broken' WHERE id = 'sub-000002'")
    assert await store.get_subscription("sub-000001") is not None
    with pytest.raises(RemoteStoreError, match="sub-000002") as info:
        await store.get_subscription("sub-000002")
    assert info.value.status_hint == 500
    with pytest.raises(RemoteStoreError):
        [s async for s in store.all_subscriptions()]
    assert await store.delete_subscription("sub-000002") is True  # an operator can repair


# -- unavailable databases ---------------------------------------------------------------------


async def test_sqlite_in_missing_directory_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable) as info:
        await open_store(f"sqlite://{tmp_path}/missing/dir/state.db")
    assert info.value.status_hint == 503


async def test_sqlite_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not an sqlite file" * 100)
    with pytest.raises(RemoteStoreError):
        await open_store(f"sqlite://{path}")


async def test_sqlite_writer_locked_out_is_unavailable(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    async with SqliteStore(path, busy_timeout_ms=50) as store:
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            with pytest.raises(StoreUnavailable, match="locked"):
                await store.put_subscription(sub(1))
            assert await store.get_subscription("sub-000001") is None  # reads still work (WAL)
            other.execute("ROLLBACK")
        finally:
            other.close()
        assert (await store.put_subscription(sub(1))).version == 1


_FAIL_ON_25 = {
    "sqlite": """
        CREATE TRIGGER fail_25 BEFORE INSERT ON sipxmpp_subscriptions
        WHEN NEW.id = 'sub-000025' BEGIN SELECT RAISE(ABORT, 'disk full'); END
    """,
    "postgres": """
        CREATE FUNCTION fail_25() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.id = 'sub-000025' THEN RAISE EXCEPTION 'disk full'; END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER fail_25 BEFORE INSERT ON sipxmpp_subscriptions
        FOR EACH ROW EXECUTE FUNCTION fail_25();
    """,
}


async def test_batch_failing_midway_writes_nothing(backend: str, db_url: str) -> None:
    async with small_batch_store(backend, db_url, 10) as store:
        await store.put_subscription(sub(1))
        await raw_script(db_url, _FAIL_ON_25[backend])
        # 38 rows in statements of 10: the third statement fails
        with pytest.raises(RemoteStoreError, match="disk full"):
            await store.put_subscriptions(sub(n) for n in range(2, 40))
        assert await store.count_subscriptions() == 1  # nothing of the batch remains
        assert (await store.put_subscription(sub(2))).version == 1  # the store still works


@pytest.mark.postgres
async def test_postgres_unreachable_is_unavailable() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_tcp_port()}/nothing"
    with pytest.raises(StoreUnavailable) as info:
        await open_store(url)
    assert info.value.status_hint == 503


@pytest.mark.postgres
async def test_postgres_unknown_database_is_a_remote_error(postgres_server: PostgresServer) -> None:
    with pytest.raises(RemoteStoreError):
        await open_store(postgres_server.dsn("no_such_database"))


@pytest.mark.postgres
async def test_postgres_store_recovers_after_server_restart() -> None:
    """The database restarts under a running gateway: a failure is a 503, then work resumes."""
    server = await asyncio.to_thread(PostgresServer)
    try:
        await asyncio.to_thread(server.start)
        url = await asyncio.to_thread(server.create_database, "restart")
        async with open_store(url) as store:
            kept = await store.put_subscription(sub(1))
            port = server.port
            await asyncio.to_thread(server.restart)
            assert server.port == port  # clients find the restarted server where it was
            outcome: list[str] = []
            for _ in range(3):
                try:
                    got = await store.get_subscription(kept.id)
                except StoreUnavailable:
                    outcome.append("unavailable")
                    continue
                assert got == kept
                outcome.append("ok")
                break
            assert outcome[-1] == "ok"
            assert set(outcome[:-1]) <= {"unavailable"}
            assert (await store.put_subscription(kept)).version == 2
            await asyncio.to_thread(server.stop)
            with pytest.raises(StoreUnavailable):
                await store.count_subscriptions()
    finally:
        await asyncio.to_thread(server.cleanup)
    assert not server.workdir.exists() and not server.running


@pytest.mark.postgres
def test_postgres_helper(postgres_server: PostgresServer) -> None:
    """tests/support/postgres.py: loopback only, checked names, clean errors."""
    assert postgres_server.host == "127.0.0.1"
    assert postgres_server.dsn("x") == f"postgresql://postgres@127.0.0.1:{postgres_server.port}/x"
    listen = postgres_server.psql("SHOW listen_addresses").strip()
    assert listen == "127.0.0.1"
    assert postgres_server.psql("SHOW unix_socket_directories").strip() == str(
        postgres_server.socket_dir
    )
    for bad in ("bad-name", 'x"; DROP DATABASE postgres; --', "", "9lives"):
        with pytest.raises(ValueError):
            postgres_server.create_database(bad)
    with pytest.raises(PostgresError, match="syntax"):
        postgres_server.psql("SELEC 1")
