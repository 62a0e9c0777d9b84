"""Measure writing and reading 100,000 subscriptions on each backend (run by hand, not by CI).

    .venv/bin/python tests/store/measure_store.py [--rows 100000] [--batch 5000]

SQLite: a file in a temporary directory (WAL, synchronous=NORMAL). PostgreSQL: a throwaway
server from tests/support/postgres.py with its durability defaults (fsync on), on loopback.
Phases: batch insert, batch refresh (every row updated, as a periodic refresh would), close
and reopen (a restart), read everything back with the paged iterator, an expiry page, the
per-peer count, and single conditional writes (one statement each).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sipxmpp.gateway.store import (  # noqa: E402
    DialogState,
    Subscription,
    SubscriptionRole,
    SubscriptionState,
    open_store,
)
from support.postgres import PostgresServer  # noqa: E402

T0 = 1_700_000_000.0
PIDF = (
    b"<?xml version='1.0' encoding='UTF-8'?><presence xmlns='urn:ietf:params:xml:ns:pidf' "
    b"entity='pres:juliet@xmpp.example'><tuple id='ID-balcony'><status><basic>open</basic>"
    b"</status></tuple></presence>"
)
_T = TypeVar("_T")


def make(n: int) -> Subscription:
    return Subscription(
        id=f"sub-{n:08d}",
        role=SubscriptionRole.NOTIFIER if n % 2 else SubscriptionRole.SUBSCRIBER,
        watcher=f"sip:user{n}@sip{n % 50}.example",
        presentity=f"juliet{n % 20_000}@xmpp.example",
        state=SubscriptionState.ACTIVE,
        expires_at=T0 + 3600 + n % 3600,
        peer=f"sip{n % 50}.example",
        dialog=DialogState(
            call_id=f"{n:08x}-5d1c3f@gw.xmpp.example",
            local_tag=f"gw{n:x}",
            remote_tag=f"r{n:x}",
            local_uri="sip:juliet@xmpp.example",
            remote_uri=f"sip:user{n}@sip{n % 50}.example",
            remote_target=f"sip:user{n}@198.51.100.{n % 250}:5060;transport=tcp",
            route_set=(f"<sip:edge{n % 4}.sip{n % 50}.example;lr>",),
            local_cseq=n % 1000,
            remote_cseq=1,
            transport="tcp",
        ),
        last_state=PIDF,
        last_notify_at=T0,
        extra={"resource": "balcony"},
    )


async def timed(label: str, fn: Callable[[], Awaitable[_T]]) -> _T:
    start = time.perf_counter()
    result = await fn()
    print(f"  {label:<44} {time.perf_counter() - start:8.3f} s", flush=True)
    return result


async def write_phase(url: str, rows: int, batch: int) -> None:
    subs = [make(n) for n in range(rows)]
    refreshed = [dataclasses.replace(s, expires_at=s.expires_at + 3600) for s in subs]
    async with open_store(url) as store:

        async def write(items: list[Subscription]) -> None:
            for start in range(0, rows, batch):
                await store.put_subscriptions(items[start : start + batch])

        async def singles() -> None:
            for s in subs[:1000]:
                await store.put_subscription(dataclasses.replace(s, version=2), expected_version=2)

        await timed(f"insert {rows:,} (batches of {batch:,})", lambda: write(subs))
        await timed(f"refresh {rows:,} (batches of {batch:,})", lambda: write(refreshed))
        await timed("1,000 single conditional updates", singles)


async def measure(url: str, rows: int, batch: int) -> None:
    await write_phase(url, rows, batch)  # its 2 x rows records are freed before the restart
    store = await timed("reopen (restart)", lambda: open_store(url).__aenter__())
    try:

        async def read_all() -> int:
            count = 0
            async for _ in store.all_subscriptions():
                count += 1
            return count

        count = await timed(f"read all {rows:,} (pages of 1,000)", read_all)
        assert count == rows, count
        await timed(
            "expired_subscriptions (page of 1,000)", lambda: store.expired_subscriptions(T0 + 7300)
        )
        await timed(
            "count_subscriptions(peer=...)", lambda: store.count_subscriptions(peer="sip7.example")
        )
    finally:
        await store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    args = parser.parse_args()
    if args.only != "postgres":
        tmp = Path(tempfile.mkdtemp(prefix="sipxmpp-measure-"))
        try:
            print("SQLite (WAL, synchronous=NORMAL)")
            asyncio.run(measure(f"sqlite://{tmp}/state.db", args.rows, args.batch))
            size = sum(p.stat().st_size for p in tmp.iterdir())
            print(f"  files on disk: {size / 1e6:.1f} MB")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.only != "sqlite":
        with PostgresServer(durable=True) as server:
            print("PostgreSQL (fsync on, loopback TCP, pool of 4)")
            asyncio.run(measure(server.create_database("measure"), args.rows, args.batch))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
