"""The store contract, run against every backend (SQLite file and a real PostgreSQL).

Each test gets an empty database (fixtures in conftest.py). "Two instances" are two store
objects with their own connections on the same database, as two gateway processes would be.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from store_helpers import T0, auth, authorizations, small_batch_store, sub, subscriptions

from sipxmpp.gateway.store import (
    MAX_EXTRA_BYTES,
    MAX_LAST_STATE_BYTES,
    MAX_ROUTE_SET,
    MAX_URI_BYTES,
    Authorization,
    AuthorizationState,
    DialogState,
    LocalStoreError,
    ResultTooLarge,
    Store,
    Subscription,
    SubscriptionRole,
    SubscriptionState,
    VersionConflict,
    open_store,
)

# -- create, read, update, delete --------------------------------------------------------------


async def test_put_then_get_returns_equal_record_with_version_1(store: Store) -> None:
    stored = await store.put_subscription(sub(1))
    assert stored == dataclasses.replace(sub(1), version=1)
    assert await store.get_subscription("sub-000001") == stored
    assert await store.get_subscription("sub-000002") is None


async def test_subscription_without_dialog_or_state(store: Store) -> None:
    bare = sub(1, dialog=None, last_state=None, last_notify_at=None, extra={}, peer="")
    stored = await store.put_subscription(bare)
    assert await store.get_subscription(bare.id) == stored
    assert stored.dialog is None and stored.extra == {}


async def test_unconditional_put_bumps_version(store: Store) -> None:
    v1 = await store.put_subscription(sub(1))
    v2 = await store.put_subscription(dataclasses.replace(v1, state=SubscriptionState.TERMINATED))
    assert v2.version == 2
    got = await store.get_subscription(v1.id)
    assert got is not None and got.state is SubscriptionState.TERMINATED and got.version == 2


async def test_insert_only_with_expected_version_0(store: Store) -> None:
    created = await store.put_subscription(sub(1), expected_version=0)
    assert created.version == 1
    with pytest.raises(VersionConflict) as info:
        await store.put_subscription(sub(1, state="pending"), expected_version=0)
    assert (info.value.key, info.value.expected, info.value.actual) == (("sub-000001",), 0, 1)
    got = await store.get_subscription("sub-000001")
    assert got is not None and got.state is SubscriptionState.ACTIVE  # unchanged


async def test_conditional_update(store: Store) -> None:
    v1 = await store.put_subscription(sub(1))
    v2 = await store.put_subscription(
        dataclasses.replace(v1, expires_at=T0 + 3600), expected_version=1
    )
    assert v2.version == 2 and v2.expires_at == T0 + 3600
    with pytest.raises(VersionConflict) as info:  # stale: still based on version 1
        await store.put_subscription(dataclasses.replace(v1, state="pending"), expected_version=1)
    assert info.value.actual == 2
    with pytest.raises(VersionConflict) as info:  # never stored
        await store.put_subscription(sub(9), expected_version=1)
    assert info.value.actual is None
    assert await store.get_subscription(sub(9).id) is None


async def test_delete(store: Store) -> None:
    await store.put_subscription(sub(1))
    v2 = await store.put_subscription(sub(1))
    with pytest.raises(VersionConflict):
        await store.delete_subscription(v2.id, expected_version=1)
    assert await store.get_subscription(v2.id) is not None
    assert await store.delete_subscription(v2.id, expected_version=2) is True
    assert await store.delete_subscription(v2.id, expected_version=2) is False  # already gone
    assert await store.delete_subscription(v2.id) is False
    await store.put_subscription(sub(2))
    assert await store.delete_subscription(sub(2).id) is True
    assert await store.get_subscription(sub(2).id) is None


@pytest.mark.parametrize("bad", [-1, 1.5, "1", True])
async def test_bad_expected_version_is_refused(store: Store, bad: Any) -> None:
    with pytest.raises(LocalStoreError, match="expected_version"):
        await store.put_subscription(sub(1), expected_version=bad)
    with pytest.raises(LocalStoreError, match="expected_version"):
        await store.delete_subscription("x", expected_version=bad)


async def test_wrong_record_types_are_refused(store: Store) -> None:
    with pytest.raises(LocalStoreError):
        await store.put_subscription(auth())  # type: ignore[arg-type]
    with pytest.raises(LocalStoreError):
        await store.put_authorization(sub(1))  # type: ignore[arg-type]
    with pytest.raises(LocalStoreError):
        await store.get_subscription(1)  # type: ignore[arg-type]


# -- two instances on one database -------------------------------------------------------------


async def test_version_conflict_between_two_instances(db_url: str) -> None:
    async with open_store(db_url) as a, open_store(db_url) as b:
        created = await a.put_subscription(sub(1), expected_version=0)
        seen_by_b = await b.get_subscription(created.id)
        assert seen_by_b == created
        # instance A refreshes the subscription...
        await a.put_subscription(
            dataclasses.replace(created, expires_at=T0 + 7200), expected_version=created.version
        )
        # ...so instance B's update, based on what it read before, must not win silently.
        with pytest.raises(VersionConflict) as info:
            await b.put_subscription(
                dataclasses.replace(seen_by_b, state=SubscriptionState.TERMINATED),
                expected_version=seen_by_b.version,
            )
        assert (info.value.expected, info.value.actual) == (1, 2)
        # B re-reads, re-applies, and succeeds; A's change survives.
        fresh = await b.get_subscription(created.id)
        assert fresh is not None and fresh.version == 2
        done = await b.put_subscription(
            dataclasses.replace(fresh, state=SubscriptionState.TERMINATED),
            expected_version=fresh.version,
        )
        final = await a.get_subscription(created.id)
        assert final == done
        assert final.expires_at == T0 + 7200 and final.state is SubscriptionState.TERMINATED
        # both racing to create the same id: exactly one wins
        results = await asyncio.gather(
            a.put_subscription(sub(2), expected_version=0),
            b.put_subscription(sub(2), expected_version=0),
            return_exceptions=True,
        )
        assert sorted(type(r).__name__ for r in results) == ["Subscription", "VersionConflict"]


async def test_concurrent_conditional_updates_from_two_instances(db_url: str) -> None:
    """Many racing read-modify-write loops: no increment is lost."""
    async with open_store(db_url) as a, open_store(db_url) as b:
        await a.put_subscription(sub(1, extra={"count": 0}))

        async def bump(store: Store, times: int) -> int:
            conflicts = 0
            for _ in range(times):
                while True:
                    current = await store.get_subscription("sub-000001")
                    assert current is not None
                    count = current.extra["count"]
                    assert isinstance(count, int)
                    try:
                        await store.put_subscription(
                            dataclasses.replace(current, extra={"count": count + 1}),
                            expected_version=current.version,
                        )
                        break
                    except VersionConflict:
                        conflicts += 1
            return conflicts

        await asyncio.gather(bump(a, 15), bump(b, 15), bump(a, 10))
        final = await b.get_subscription("sub-000001")
        assert final is not None
        assert final.extra["count"] == 40
        assert final.version == 41


# -- restart -----------------------------------------------------------------------------------


async def test_state_survives_close_and_reopen(db_url: str) -> None:
    async with open_store(db_url) as first:
        kept = [await first.put_subscription(sub(n)) for n in range(1, 6)]
        kept[0] = await first.put_subscription(dataclasses.replace(kept[0], state="pending"))
        kept_auth = await first.put_authorization(auth(state="from", pending_out=True))
        await first.delete_subscription(kept.pop().id)
    async with open_store(db_url) as second:
        assert [s async for s in second.all_subscriptions()] == kept
        assert await second.get_authorization(*kept_auth.key) == kept_auth
        # the dialog is complete enough to send an in-dialog NOTIFY after the restart
        restored = await second.get_subscription(kept[1].id)
        assert restored is not None and restored.dialog == kept[1].dialog
        assert restored.last_state == kept[1].last_state
        # and versions continue where they were
        again = await second.put_subscription(restored, expected_version=restored.version)
        assert again.version == restored.version + 1


# -- queries -----------------------------------------------------------------------------------


async def test_lists_by_presentity_watcher_and_dialog(store: Store) -> None:
    subs = await store.put_subscriptions(sub(n) for n in range(1, 31))
    by_presentity = await store.subscriptions_for_presentity("juliet3@xmpp.example")
    assert by_presentity == [s for s in subs if s.presentity == "juliet3@xmpp.example"]
    assert [s.id for s in by_presentity] == sorted(s.id for s in by_presentity)
    by_watcher = await store.subscriptions_for_watcher("sip:romeo4@sip.example")
    assert by_watcher == [s for s in subs if s.watcher == "sip:romeo4@sip.example"]
    assert await store.subscriptions_for_presentity("nobody@xmpp.example") == []
    assert await store.subscriptions_for_dialog("call-7@gw.example", "lt7") == [subs[6]]
    assert await store.subscriptions_for_dialog("call-7@gw.example", "lt8") == []


async def test_one_dialog_can_hold_several_subscriptions(store: Store) -> None:
    shared = sub(1).dialog
    assert shared is not None
    forked = dataclasses.replace(shared, remote_tag="other-fork")
    a = await store.put_subscription(sub(1))
    b = await store.put_subscription(sub(2, dialog=forked, event="presence.winfo"))
    found = await store.subscriptions_for_dialog(shared.call_id, shared.local_tag)
    assert found == [a, b]


async def test_list_limit_refuses_partial_answers(store: Store) -> None:
    await store.put_subscriptions(sub(n, presentity="busy@xmpp.example") for n in range(1, 6))
    assert len(await store.subscriptions_for_presentity("busy@xmpp.example", limit=5)) == 5
    with pytest.raises(ResultTooLarge):
        await store.subscriptions_for_presentity("busy@xmpp.example", limit=4)
    with pytest.raises(LocalStoreError):
        await store.subscriptions_for_watcher("x", limit=0)
    with pytest.raises(LocalStoreError):
        await store.subscriptions_for_watcher("x", limit=10**6)


async def test_counts_for_caps(store: Store) -> None:
    subs = await store.put_subscriptions(sub(n) for n in range(1, 43))
    assert await store.count_subscriptions() == 42
    for peer in ("peer0.example", "peer1.example", "peer2.example"):
        assert await store.count_subscriptions(peer=peer) == sum(s.peer == peer for s in subs)
    assert await store.count_subscriptions(watcher="sip:romeo1@sip.example") == 5
    assert await store.count_subscriptions(presentity="juliet0@xmpp.example") == 6
    both = sum(1 for s in subs if s.peer == "peer1.example" and s.watcher.startswith("sip:romeo1@"))
    assert (
        await store.count_subscriptions(peer="peer1.example", watcher="sip:romeo1@sip.example")
        == both
    )
    assert await store.count_subscriptions(peer="unknown.example") == 0
    assert await store.count_subscriptions(peer="nul\x00peer") == 0


async def test_expired_subscriptions_pages_oldest_first(store: Store) -> None:
    await store.put_subscriptions(sub(n, expires_at=T0 + 100 - n) for n in range(1, 21))
    # expires_at == now counts as expired (RFC 6665: the duration has elapsed)
    expired = await store.expired_subscriptions(T0 + 90)
    assert [s.expires_at for s in expired] == [T0 + 80 + k for k in range(11)]
    first = await store.expired_subscriptions(T0 + 90, limit=4)
    assert first == expired[:4]
    for s in first:  # a sweep deletes what it got and asks again
        await store.delete_subscription(s.id)
    assert await store.expired_subscriptions(T0 + 90, limit=4) == expired[4:8]
    assert await store.expired_subscriptions(T0) == []
    with pytest.raises(LocalStoreError):
        await store.expired_subscriptions(float("nan"))


async def test_all_subscriptions_is_paged(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    written = await store.put_subscriptions(
        sub(n, role="subscriber" if n % 4 == 0 else "notifier") for n in range(1, 2502)
    )
    pages: list[int] = []
    original = store._read

    async def spy(sql: str, params: Any) -> Any:
        rows = await original(sql, params)
        pages.append(len(rows))
        return rows

    monkeypatch.setattr(store, "_read", spy)
    seen = [s async for s in store.all_subscriptions(batch_size=1000)]
    assert seen == sorted(written, key=lambda s: s.id)
    assert pages == [1000, 1000, 501]  # never more than one page in memory
    pages.clear()
    subscribers = [s async for s in store.all_subscriptions(SubscriptionRole.SUBSCRIBER)]
    assert subscribers == [s for s in seen if s.role is SubscriptionRole.SUBSCRIBER]
    assert len(subscribers) == 625 and pages == [625]
    with pytest.raises(LocalStoreError):
        [s async for s in store.all_subscriptions("watcher")]


async def test_iteration_tolerates_writes_between_pages(store: Store) -> None:
    await store.put_subscriptions(sub(n) for n in range(1, 101))
    seen: list[str] = []
    async for s in store.all_subscriptions(batch_size=10):
        seen.append(s.id)
        if s.id == "sub-000015":
            await store.delete_subscription("sub-000050")  # ahead: never seen
            await store.put_subscription(sub(200))  # ahead: seen once
            await store.put_subscription(sub(3, state="terminated"))  # behind: not seen again
    assert len(seen) == len(set(seen)) == 100
    assert "sub-000050" not in seen and "sub-000200" in seen


# -- batches -----------------------------------------------------------------------------------


async def test_batch_put_returns_versions_in_order(store: Store) -> None:
    await store.put_subscription(sub(5))
    batch = [sub(n) for n in (9, 5, 1)]
    written = await store.put_subscriptions(batch)
    assert [(s.id, s.version) for s in written] == [
        ("sub-000009", 1),
        ("sub-000005", 2),
        ("sub-000001", 1),
    ]
    assert written == [
        dataclasses.replace(s, version=w.version) for s, w in zip(batch, written, strict=True)
    ]
    assert await store.put_subscriptions([]) == []
    again = await store.put_subscriptions(batch)
    assert [s.version for s in again] == [2, 3, 2]


async def test_batch_delete_subscriptions(store: Store) -> None:
    await store.put_subscriptions(sub(n) for n in range(1, 21))
    # Unknown ids and ids the model could not hold (NUL) are ignored, not errors.
    await store.delete_subscriptions(
        [f"sub-{n:06d}" for n in range(1, 21, 2)] + ["sub-999999", "bad\x00id"]
    )
    left = sorted([s.id async for s in store.all_subscriptions()])
    assert left == [f"sub-{n:06d}" for n in range(2, 21, 2)]
    await store.delete_subscriptions([])
    await store.delete_subscriptions(iter(left))
    assert await store.count_subscriptions() == 0


async def test_batch_put_and_delete_authorizations(store: Store) -> None:
    await store.put_authorization(auth(uri="sip:a@sip.example", state=AuthorizationState.TO))
    batch = [
        auth(uri="sip:a@sip.example", state=AuthorizationState.BOTH),
        auth(uri="sip:b@sip.example", pending_in=True),
        auth(jid="romeo@xmpp.example", uri="sip:a@sip.example", state=AuthorizationState.FROM),
    ]
    await store.put_authorizations(batch)
    a = await store.get_authorization("juliet@xmpp.example", "sip:a@sip.example")
    assert a is not None and a.state is AuthorizationState.BOTH and a.version == 2
    b = await store.get_authorization("juliet@xmpp.example", "sip:b@sip.example")
    assert b is not None and b.pending_in and b.version == 1
    with pytest.raises(LocalStoreError, match="twice"):
        await store.put_authorizations([batch[0], batch[0]])
    await store.delete_authorizations(
        [("juliet@xmpp.example", "sip:a@sip.example"), ("nobody@xmpp.example", "sip:x@y")]
    )
    assert await store.get_authorization("juliet@xmpp.example", "sip:a@sip.example") is None
    assert len(await store.authorizations_for("juliet@xmpp.example")) == 1
    assert len(await store.authorizations_for("romeo@xmpp.example")) == 1


async def test_batch_with_duplicate_ids_writes_nothing(store: Store) -> None:
    with pytest.raises(LocalStoreError, match="twice"):
        await store.put_subscriptions([sub(1), sub(2), sub(1, state="pending")])
    assert await store.count_subscriptions() == 0


async def test_batch_larger_than_one_statement(backend: str, db_url: str) -> None:
    """Small statement size, so one batch spans many statements in one transaction."""
    async with small_batch_store(backend, db_url, 7) as store:
        written = await store.put_subscriptions(sub(n) for n in range(1, 51))
        assert [s.version for s in written] == [1] * 50
        assert [s async for s in store.all_subscriptions()] == written
        rewritten = await store.put_subscriptions(reversed(written))
        assert {s.version for s in rewritten} == {2}


async def test_concurrent_single_writes_during_a_batch(store: Store) -> None:
    """A single write issued while a batch runs is neither lost nor rolled into the batch."""
    results = await asyncio.gather(
        store.put_subscriptions(sub(n) for n in range(1, 1201)),
        store.put_subscription(sub(5000)),
        store.put_subscription(sub(5001), expected_version=0),
    )
    assert len(results[0]) == 1200
    assert await store.count_subscriptions() == 1202


# -- authorizations ----------------------------------------------------------------------------


async def test_authorization_crud_and_conflicts(store: Store) -> None:
    a = await store.put_authorization(auth(state="none", pending_out=True), expected_version=0)
    assert a.version == 1
    assert await store.get_authorization("juliet@xmpp.example", "sip:romeo@sip.example") == a
    assert await store.get_authorization("juliet@xmpp.example", "sip:other@sip.example") is None
    # the SIP contact approves: none + pending out -> to (RFC 6121 §3.1.6)
    b = await store.put_authorization(
        dataclasses.replace(a, state=AuthorizationState.TO, pending_out=False),
        expected_version=a.version,
    )
    assert b.version == 2 and b.xmpp_receives and not b.sip_receives
    with pytest.raises(VersionConflict) as info:
        await store.put_authorization(a, expected_version=1)
    assert info.value.kind == "authorization"
    assert info.value.key == ("juliet@xmpp.example", "sip:romeo@sip.example")
    with pytest.raises(VersionConflict):
        await store.put_authorization(a, expected_version=0)
    with pytest.raises(VersionConflict):
        await store.delete_authorization(*a.key, expected_version=1)
    c = await store.put_authorization(dataclasses.replace(b, state="both"))
    assert c.version == 3
    assert await store.delete_authorization(*a.key, expected_version=3) is True
    assert await store.delete_authorization(*a.key) is False
    assert await store.get_authorization(*a.key) is None


async def test_authorizations_for_jid_or_uri(store: Store) -> None:
    rows = [
        auth("juliet@xmpp.example", "sip:romeo@sip.example", state="both"),
        auth("juliet@xmpp.example", "sip:mercutio@sip.example", state="to"),
        auth("nurse@xmpp.example", "sip:romeo@sip.example", pending_in=True),
    ]
    stored = [await store.put_authorization(a) for a in rows]
    assert await store.authorizations_for("juliet@xmpp.example") == [stored[1], stored[0]]
    assert await store.authorizations_for("sip:romeo@sip.example") == [stored[0], stored[2]]
    assert await store.authorizations_for("sip:nobody@sip.example") == []
    with pytest.raises(ResultTooLarge):
        await store.authorizations_for("juliet@xmpp.example", limit=1)


# -- hostile values ----------------------------------------------------------------------------

NON_ASCII = [
    "sip:%C3%BC@sip.example",
    "sip:tschüss@sip.example",
    "tschüss@xmpp.example",
    "ψυχή@ελληνικά.example",
    "用户@例子.example",
    "\u202eevil\u202c@xmpp.example",  # bidi override
    "e\u0301@xmpp.example",  # combining accent (not NFC)
    "😀\U0010fffd@xmpp.example",  # astral and private-use planes
    "o\\27malley@sip.example",
    "sip:a@b;x='\"--;DROP TABLE sipxmpp_subscriptions",
]


async def test_non_ascii_and_sql_looking_values_round_trip(store: Store) -> None:
    for n, uri in enumerate(NON_ASCII):
        stored = await store.put_subscription(
            sub(n, id=f"id-{uri}", watcher=uri, presentity=uri, peer=uri[:40])
        )
        assert await store.get_subscription(f"id-{uri}") == stored
        assert await store.subscriptions_for_watcher(uri) == [stored]
        assert await store.count_subscriptions(presentity=uri) == 1
        a = await store.put_authorization(auth(uri, uri))
        assert await store.authorizations_for(uri) == [a]
    # byte-exact matching: no case folding or Unicode normalisation by the database
    assert await store.subscriptions_for_watcher("SIP:TSCHÜSS@SIP.EXAMPLE") == []
    assert await store.subscriptions_for_presentity("\u00e9@xmpp.example") == []


async def test_limits_round_trip_exactly(store: Store) -> None:
    overhead = len('{"k":""}')
    huge = sub(
        1,
        watcher="sip:" + "w" * (MAX_URI_BYTES - 4),
        extra={"k": "ü" * ((MAX_EXTRA_BYTES - overhead) // 2)},
        last_state=bytes(range(256)) * (MAX_LAST_STATE_BYTES // 256),
        dialog=DialogState(
            call_id="c",
            local_tag="l",
            remote_tag=None,
            local_uri="sip:a@b",
            remote_uri="sip:c@d",
            remote_target="sip:c@d",
            route_set=tuple(f"<sip:p{i}.example;lr>" for i in range(MAX_ROUTE_SET)),
        ),
    )
    stored = await store.put_subscription(huge)
    assert await store.get_subscription(huge.id) == stored
    with pytest.raises(LocalStoreError):
        sub(2, extra={"k": "x" * MAX_EXTRA_BYTES})  # over the limit: refused before any I/O


async def test_extra_json_types_survive_exactly(store: Store) -> None:
    extra: dict[str, Any] = {
        "int": 2**70,
        "neg": -1,
        "float": 0.1,
        "tiny": 5e-324,
        "big": 1e300,
        "negzero": -0.0,
        "bool": True,
        "none": None,
        "nul": "a\x00b",
        "nested": {"list": [1, "2", [3.5, {"k": False}]]},
        "": "empty key",
    }
    stored = await store.put_subscription(sub(1, extra=extra))
    got = await store.get_subscription(stored.id)
    assert got is not None and got.extra == extra
    assert type(got.extra["int"]) is int and type(got.extra["big"]) is float


async def test_unstorable_keys_are_simply_not_found(store: Store) -> None:
    await store.put_subscription(sub(1))
    for key in ("sub\x00", "\udc80", "x" * 5000):
        assert await store.get_subscription(key) is None
        assert await store.delete_subscription(key) is False
        assert await store.subscriptions_for_watcher(key) == []
        assert await store.subscriptions_for_presentity(key) == []
        assert await store.subscriptions_for_dialog(key, key) == []
        assert await store.get_authorization(key, key) is None
        assert await store.authorizations_for(key) == []
        assert await store.count_subscriptions(watcher=key) == 0
    assert await store.count_subscriptions() == 1


# -- Hypothesis round trips through the database -----------------------------------------------


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(s=subscriptions)
async def test_any_subscription_round_trips(store: Store, s: Subscription) -> None:
    stored = await store.put_subscription(s)
    assert stored == dataclasses.replace(s, version=stored.version)
    assert await store.get_subscription(s.id) == stored
    assert await store.delete_subscription(s.id, expected_version=stored.version)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(a=authorizations())
async def test_any_authorization_round_trips(store: Store, a: Authorization) -> None:
    stored = await store.put_authorization(a)
    assert stored == dataclasses.replace(a, version=stored.version)
    assert await store.get_authorization(a.xmpp_jid, a.sip_uri) == stored
    assert await store.delete_authorization(a.xmpp_jid, a.sip_uri)
