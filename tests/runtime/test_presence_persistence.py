"""What the presence service writes to the store, and how: the state a record keeps while
its subscription is being refreshed, and the batched write-behind (``flush``).

Uses the recording fakes of test_presence_service.py (no sockets) and a SQLite store.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from test_presence_service import (
    COMPONENT,
    PIDF,
    World,
    make_world,
    notify,
    requested,
    subscribe_alice,
)

from sipxmpp.gateway.runtime.presence import (
    CSEQ_RESTORE_GAP,
    CSEQ_STORE_STRIDE,
    STATE_STORE_INTERVAL,
    STORE_BATCH,
)
from sipxmpp.gateway.sip.sub_events import SubscribeFailed
from sipxmpp.gateway.store import (
    Store,
    StoreUnavailable,
    Subscription,
    SubscriptionRole,
    SubscriptionState,
    open_store,
)
from sipxmpp.mapping.presence import PresenceType, Show, XmppPresence

BOB = "bob@example.test"


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    st = await open_store("sqlite://:memory:")
    yield st
    await st.close()


async def records(store: Store) -> dict[str, Subscription]:
    return {r.id: r async for r in store.all_subscriptions()}


async def authorized_watcher(world: World, sub_id: str, watcher: str = "alice") -> None:
    """A SIP watcher of bob, authorized by bob, who has seen bob's state."""
    world.feed(requested(sub_id, watcher=f"sip:{watcher}@example.test"))
    await world.settle()
    await world.service.on_presence(
        XmppPresence(BOB, f"{watcher}@{COMPONENT}", PresenceType.SUBSCRIBED)
    )
    await world.service.on_presence(XmppPresence(f"{BOB}/pc", f"{watcher}@{COMPONENT}"))


# -- the state a record keeps -------------------------------------------------------------


async def test_x2s_being_resubscribed_is_stored_active_and_restored_so(store: Store) -> None:
    """bob watches alice; a refresh fails with 481 (RFC 6665 §4.1.2.2) and the gateway is
    re-establishing the subscription in a new dialog when the store is written: the record
    says active (with the dialog's expiry), not pending, and a restart brings back an
    authorized subscription that does not ask bob's client again."""
    w = await make_world(store)
    first = await subscribe_alice(w)
    w.layer.subs[first]["state"] = "active"
    w.feed(notify(first, "active", PIDF))
    assert w.xmpp.of(PresenceType.SUBSCRIBED)
    w.layer.subs.pop(first)
    w.feed(SubscribeFailed(first, 481, None, True, True))
    await w.settle()
    second = w.layer.named("subscribe")[-1][1]
    assert second != first and w.layer.subs[second]["state"] == "notify_wait"
    await w.service.flush()
    rec = (await records(store))[second]
    assert rec.role is SubscriptionRole.SUBSCRIBER
    assert rec.state is SubscriptionState.ACTIVE
    assert rec.expires_at > w.service._wall() + 2000  # the layer's expiry (fake: +3000 s)
    assert first not in await records(store)
    await w.service.stop()

    w2 = await make_world(store)
    try:
        assert w2.layer.named("restore") == [("restore", second)]
        assert w2.service.outbound_subscription(BOB, "sip:alice@example.test") == second
        # The restored dialog's first NOTIFY does not announce a new authorization.
        w2.feed(notify(second, "active", PIDF))
        assert w2.xmpp.of(PresenceType.SUBSCRIBED) == []
    finally:
        await w2.service.stop()


async def test_x2s_never_answered_active_is_stored_pending(store: Store) -> None:
    w = await make_world(store)
    try:
        sub_id = await subscribe_alice(w)
        w.feed(notify(sub_id, "pending"))
        w.layer.subs[sub_id]["state"] = "pending"
        await w.service.flush()
        assert (await records(store))[sub_id].state is SubscriptionState.PENDING
    finally:
        await w.service.stop()


async def test_s2x_refresh_awaiting_an_answer_is_stored_active(store: Store) -> None:
    """A watcher's refresh is being answered (the store lookup of its authorization is in
    flight) when the store is written: the record keeps the state and expiry the layer
    has, so a restart answers the next refresh with bob's state, not an empty NOTIFY."""
    w = await make_world(store)
    await authorized_watcher(w, "n1")
    body = w.layer.named("notify")[-1][3]
    assert body is not None
    # The authorization is stored and no longer cached: the refresh waits for the store.
    await w.service.flush()
    w.service._auth.clear()
    w.layer.subs["n1"]["state"] = "active"
    w.layer.calls.clear()
    w.feed(requested("n1", refresh=True))
    await w.service.flush()  # runs while _answer_after_lookup waits for the store
    rec = (await records(store))["n1"]
    assert rec.state is SubscriptionState.ACTIVE and rec.last_state == body
    assert rec.expires_at > w.service._wall() + 2000
    await w.settle()
    assert w.layer.named("accept")[-1] == ("accept", "n1", "active", body)
    await w.service.stop()

    w2 = await make_world(store)
    try:
        w2.layer.subs["n1"]["state"] = "active"
        w2.feed(requested("n1", refresh=True))
        await w2.settle()
        assert w2.layer.named("accept")[-1] == ("accept", "n1", "active", body)
        assert w2.xmpp.of(PresenceType.SUBSCRIBE) == []  # not a new watcher to approve
    finally:
        await w2.service.stop()


# -- when a notified watcher's record is written ------------------------------------------


async def test_show_only_notifies_are_stored_within_the_state_interval(store: Store) -> None:
    """bob changes only his show: each change is a NOTIFY to alice, but her record (last
    document, CSeq) is written within STATE_STORE_INTERVAL, not at every periodic flush;
    going offline is written at the next flush; a shutdown writes everything."""
    w = await make_world(store, store_flush_interval=60.0)
    try:
        await authorized_watcher(w, "n1")
        await w.service.flush(rich_state=False)  # the first state: written now
        first = (await records(store))["n1"].last_state
        assert first is not None and b"open" in first
        for show in (Show.AWAY, Show.DND, Show.XA):
            await w.service.on_presence(XmppPresence(f"{BOB}/pc", f"alice@{COMPONENT}", show=show))
            await w.service.flush(rich_state=False)
            assert (await records(store))["n1"].last_state == first
        last = w.layer.named("notify")[-1][3]
        assert last is not None and b"xa" in last
        w.service._stale_due = w.service._now() - 1  # STATE_STORE_INTERVAL has passed
        await w.service.flush(rich_state=False)
        assert (await records(store))["n1"].last_state == last
        assert w.service._stale_due >= w.service._now() + STATE_STORE_INTERVAL - 1
        # Going offline (no longer available) is not held back.
        await w.service.on_presence(
            XmppPresence(f"{BOB}/pc", f"alice@{COMPONENT}", PresenceType.UNAVAILABLE)
        )
        await w.service.flush(rich_state=False)
        offline = (await records(store))["n1"].last_state
        assert offline is not None and b"closed" in offline
        # Back online with a show: written at the next flush too; then a show change waits
        # for the shutdown's flush.
        await w.service.on_presence(XmppPresence(f"{BOB}/pc", f"alice@{COMPONENT}"))
        await w.service.flush(rich_state=False)
        assert b"open" in ((await records(store))["n1"].last_state or b"")
        await w.service.on_presence(XmppPresence(f"{BOB}/pc", f"alice@{COMPONENT}", show=Show.CHAT))
        assert "n1" in w.service._stale and "n1" not in w.service._dirty
    finally:
        await w.service.stop()
    assert b"chat" in ((await records(store))["n1"].last_state or b"")


async def test_a_watchers_record_is_rewritten_before_its_cseq_outruns_the_restore_gap(
    store: Store,
) -> None:
    """However many show-only NOTIFYs a watcher gets between two writes, its record is
    written once its dialog's CSeq reaches a multiple of CSEQ_STORE_STRIDE, so a restore
    (which skips CSEQ_RESTORE_GAP) never reuses a CSeq (RFC 3261 §12.2.1.1)."""
    assert 0 < CSEQ_STORE_STRIDE < CSEQ_RESTORE_GAP
    w = await make_world(store, store_flush_interval=60.0)
    try:
        await authorized_watcher(w, "n1")
        await w.service.flush(rich_state=False)
        shows = (Show.AWAY, Show.DND)
        written_at: list[int] = []
        for i in range(2 * CSEQ_STORE_STRIDE):
            await w.service.on_presence(
                XmppPresence(f"{BOB}/pc", f"alice@{COMPONENT}", show=shows[i % 2])
            )
            if "n1" in w.service._dirty:
                written_at.append(w.layer.subs["n1"]["cseq"])
                await w.service.flush(rich_state=False)
        assert written_at and all(c % CSEQ_STORE_STRIDE == 0 for c in written_at)
        assert len(written_at) == 2
    finally:
        await w.service.stop()


# -- batched write-behind -----------------------------------------------------------------


class Recorder:
    """Wraps the store's batch writes: batch sizes, and how many records the service had
    built when each batch was written."""

    def __init__(self, store: Store, world: World, fail_on_call: int | None = None) -> None:
        self.store = store
        self.batches: list[int] = []
        self.built_at_write: list[int] = []
        self.built = 0
        self.fail_on_call = fail_on_call
        self.deletes: list[int] = []
        put = store.put_subscriptions
        record = world.service._record

        async def put_subscriptions(batch: Any) -> Any:
            batch = list(batch)
            self.batches.append(len(batch))
            self.built_at_write.append(self.built)
            if self.fail_on_call is not None and len(self.batches) == self.fail_on_call:
                raise StoreUnavailable("disk full")
            return await put(batch)

        def counting_record(sub_id: str) -> Any:
            self.built += 1
            return record(sub_id)

        delete = store.delete_subscriptions

        async def delete_subscriptions(ids: Any) -> None:
            ids = list(ids)
            self.deletes.append(len(ids))
            await delete(ids)

        store.put_subscriptions = put_subscriptions  # type: ignore[method-assign]
        store.delete_subscriptions = delete_subscriptions  # type: ignore[method-assign]
        world.service._record = counting_record  # type: ignore[method-assign]


async def many_watchers(world: World, n: int) -> None:
    for i in range(n):
        world.feed(
            requested(
                f"w{i}",
                watcher=f"sip:w{i}@example.test",
                presentity=f"sip:u{i % 10}@example.test",  # 1,000 watchers per user at most
            )
        )
    await world.settle()


async def test_flush_writes_in_batches_built_just_in_time(store: Store) -> None:
    n = 2 * STORE_BATCH + 345
    w = await make_world(store)
    try:
        await many_watchers(w, n)
        rec = Recorder(store, w)
        await w.service.flush()
        assert rec.batches == [STORE_BATCH, STORE_BATCH, 345]
        # Each batch is built while the previous one is written: never more than two
        # batches in memory (a batch write starts once the next one is built).
        assert rec.built_at_write == [2 * STORE_BATCH, n, n]
        assert len(await records(store)) == n
        # Ended subscriptions go in one batch delete, not one statement each.
        for i in range(0, n, 2):
            w.service._drop_inbound(f"w{i}")
        await w.service.flush()
        assert rec.deletes == [(n + 1) // 2]
        assert len(await records(store)) == n // 2
    finally:
        await w.service.stop()


async def test_flush_keeps_what_a_failed_batch_did_not_write(store: Store) -> None:
    n = 3 * STORE_BATCH
    # Only the explicit flushes write: setting up three batches of watchers may take
    # longer than the periodic flush interval on a busy machine.
    w = await make_world(store, store_flush_interval=60.0)
    try:
        await many_watchers(w, n)
        rec = Recorder(store, w, fail_on_call=2)
        await w.service.flush()  # the second batch fails: logged, nothing raised
        assert len(await records(store)) == STORE_BATCH
        assert len(w.service._dirty) == n - STORE_BATCH
        rec.fail_on_call = None
        await w.service.flush()
        assert len(await records(store)) == n
        assert not w.service._dirty
    finally:
        await w.service.stop()


async def test_authorizations_are_flushed_in_batches(store: Store) -> None:
    w = await make_world(store)
    try:
        for i in range(5):
            await authorized_watcher(w, f"a{i}", watcher=f"u{i}")
        calls: list[int] = []
        put = store.put_authorizations

        async def put_authorizations(batch: Any) -> None:
            batch = list(batch)
            calls.append(len(batch))
            await put(batch)

        store.put_authorizations = put_authorizations  # type: ignore[method-assign]
        await w.service.flush()
        assert calls == [5]
        for i in range(5):
            got = await store.get_authorization(BOB, f"sip:u{i}@example.test")
            assert got is not None and got.sip_receives
    finally:
        await w.service.stop()


async def test_a_cancelled_flush_loses_nothing(store: Store) -> None:
    """The periodic flush is cancelled at shutdown while a batch is being written: what it
    had taken from the dirty set goes back, and the final flush writes everything."""
    n = 3 * STORE_BATCH
    # Only the explicit flushes write: setting up three batches of watchers may take
    # longer than the periodic flush interval on a busy machine.
    w = await make_world(store, store_flush_interval=60.0)
    try:
        await many_watchers(w, n)
        started = asyncio.Event()
        never = asyncio.Event()
        put = store.put_subscriptions

        async def stalled(batch: Any) -> Any:
            started.set()
            await never.wait()  # a database that does not answer
            return await put(batch)

        store.put_subscriptions = stalled  # type: ignore[method-assign]
        flushing = asyncio.create_task(w.service.flush())
        await asyncio.wait_for(started.wait(), 5)
        flushing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await flushing
        assert len(w.service._dirty) == n
        store.put_subscriptions = put  # type: ignore[method-assign]
        await w.service.flush()
        assert len(await records(store)) == n
    finally:
        await w.service.stop()


@pytest.mark.parametrize("remote_tag", ["peer-tag", None])
def test_store_dialog_columns_round_trip_to_the_layer_record(remote_tag: str | None) -> None:
    """The store's dialog columns give back exactly the layer's ``Dialog.to_dict``."""
    from sipxmpp.gateway.runtime.presence import _dialog_dict, _dialog_state
    from sipxmpp.gateway.sip.address import TransportAddress
    from sipxmpp.gateway.sip.dialog import Dialog

    dialog = Dialog(
        call_id="c1@gw",
        local_tag="ours",
        local_uri="sip:alice@example.test",
        remote_uri="sip:bob@sip.test",
        remote_target="sip:bob@192.0.2.9:5062",
        destination=TransportAddress("tcp", "192.0.2.9", 5062),
        remote_tag=remote_tag,
        route_set=("<sip:proxy.sip.test;lr>",),
        local_cseq=7,
        remote_cseq=3 if remote_tag else None,
        secure=False,
    )
    record = dialog.to_dict()
    state = _dialog_state(record)
    assert state is not None
    assert _dialog_dict(state) == record
    assert Dialog.from_dict(_dialog_dict(state)).to_dict() == record
