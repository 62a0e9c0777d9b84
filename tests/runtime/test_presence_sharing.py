"""Scale fixes in the presence service, found with benchmarks/presence_scale.py:

* S2X fan-out: an XMPP server sends a user's presence to each contact separately (RFC 6121
  §4.4.2), so the watchers of one presentity hold equal views; the PIDF is built once and
  the NOTIFYs of all of them carry the same document object (one serialization per change,
  one ``last_state`` in memory), while a view that differs (directed presence) still gets
  its own document (RFC 8048 §8.2: nothing leaks between watchers);
* X2S refresh: the NOTIFY that follows each refresh (RFC 6665 §4.2.1.2) repeats the state
  the XMPP user already has; it is not delivered again, except after the gateway took that
  state back (``unavailable``), and a probe is still answered from it;
* incoming presence: the address mapping of (sender, addressee), refusals included, is
  computed once per pair (a change of a user with 1,000 watchers repeats 1,000 pairs).

Uses the recording fakes of test_presence_service.py (no sockets).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

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

from sipxmpp.gateway.runtime.presence import PIDF_CACHE_SIZE, ROUTE_CACHE_SIZE
from sipxmpp.gateway.store import Store, open_store
from sipxmpp.gateway.xmpp.errors import StanzaErrorException
from sipxmpp.mapping.model import StanzaError
from sipxmpp.mapping.pidf import Show, parse_pidf
from sipxmpp.mapping.presence import PresenceType, XmppPresence

BOB = "bob@example.test"
OTHER_PIDF = PIDF.replace(b"<basic>open</basic>", b"<basic>closed</basic>")


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    st = await open_store("sqlite://:memory:")
    yield st
    await st.close()


@pytest.fixture
async def world(store: Store) -> AsyncIterator[World]:
    w = await make_world(store)
    yield w
    await w.service.stop()


async def watched_by(world: World, n: int) -> list[str]:
    """``n`` SIP watchers of bob, authorized: their layer ids."""
    subs = []
    for i in range(n):
        sub_id = f"w{i}"
        world.feed(requested(sub_id, watcher=f"sip:w{i}@example.test"))
        await world.settle()
        subs.append(sub_id)
    for i in range(n):
        await world.service.on_presence(
            XmppPresence(BOB, f"w{i}@{COMPONENT}", PresenceType.SUBSCRIBED)
        )
    world.layer.calls.clear()
    return subs


def state_notifies(world: World) -> dict[str, bytes]:
    return {c[1]: c[3] for c in world.layer.named("notify") if c[3]}


async def broadcast(world: World, n: int, show: str | None, status: str) -> None:
    """bob's server sends bob's presence to each watcher JID, one stanza each."""
    for i in range(n):
        await world.service.on_presence(
            XmppPresence.received(
                from_jid=f"{BOB}/desk",
                to_jid=f"w{i}@{COMPONENT}",
                show=show,
                statuses=[(status, None)],
            )
        )


@pytest.mark.parametrize("n", [1, 3, 50])
async def test_equal_views_share_one_document(store: Store, n: int) -> None:
    world = await make_world(store)
    try:
        subs = await watched_by(world, n)
        await broadcast(world, n, "away", "lunch")
        sent = state_notifies(world)
        assert sorted(sent) == sorted(subs)
        docs = list(sent.values())
        assert all(d is docs[0] for d in docs)  # one object, not n equal copies
        t = parse_pidf(docs[0]).tuple("ID-desk")
        assert t is not None and t.show is Show.AWAY
        # The next change is a new document, again shared.
        world.layer.calls.clear()
        await broadcast(world, n, "dnd", "meeting")
        docs2 = list(state_notifies(world).values())
        assert len(docs2) == n and all(d is docs2[0] for d in docs2)
        assert docs2[0] != docs[0]
    finally:
        await world.service.stop()


async def test_a_directed_presence_gets_its_own_document(store: Store) -> None:
    world = await make_world(store)
    try:
        await watched_by(world, 3)
        await broadcast(world, 3, None, "here")
        world.layer.calls.clear()
        # bob tells w1 only that he is busy (directed presence): w0 and w2 hear nothing
        # new, w1 gets a document of its own.
        await world.service.on_presence(
            XmppPresence.received(
                from_jid=f"{BOB}/desk",
                to_jid=f"w1@{COMPONENT}",
                show="dnd",
                statuses=[("only for w1", None)],
            )
        )
        sent = state_notifies(world)
        assert list(sent) == ["w1"]
        assert b"only for w1" in sent["w1"]
        world.layer.calls.clear()
        await broadcast(world, 3, None, "here")  # back to the common view
        sent = state_notifies(world)
        assert list(sent) == ["w1"]  # w0 and w2 already have it
        assert b"only for w1" not in sent["w1"]
    finally:
        await world.service.stop()


async def test_the_cache_is_bounded(store: Store) -> None:
    world = await make_world(store)
    try:
        await watched_by(world, 1)
        for i in range(PIDF_CACHE_SIZE + 10):
            await broadcast(world, 1, None, f"status {i}")
        assert len(world.service._pidf_cache) == PIDF_CACHE_SIZE
        assert len(world.layer.named("notify")) == PIDF_CACHE_SIZE + 10  # none lost
    finally:
        await world.service.stop()


# -- X2S --------------------------------------------------------------------------------------


def available_from_alice(world: World) -> list[XmppPresence]:
    return [
        p
        for p in world.xmpp.sent
        if p.from_jid.startswith(f"alice@{COMPONENT}") and p.type is PresenceType.AVAILABLE
    ]


async def test_refresh_notify_repeating_the_state_is_not_delivered_again(world: World) -> None:
    sub_id = await subscribe_alice(world)
    world.feed(notify(sub_id, "active", PIDF))
    assert len(available_from_alice(world)) == 1
    world.feed(notify(sub_id, "active", PIDF))  # after a refresh: the same document
    assert len(available_from_alice(world)) == 1
    world.feed(notify(sub_id, "active", OTHER_PIDF))  # a change is delivered
    assert [p.type for p in world.xmpp.sent][-1] is PresenceType.UNAVAILABLE
    world.feed(notify(sub_id, "active", PIDF))  # and so is the change back
    assert len(available_from_alice(world)) == 2
    # A probe is still answered from the last document (RFC 6121 §4.3.2).
    world.xmpp.sent.clear()
    await world.service.on_presence(
        XmppPresence("bob@example.test/phone", f"alice@{COMPONENT}", PresenceType.PROBE)
    )
    [answer] = world.xmpp.sent
    assert answer.to_jid == "bob@example.test/phone" and answer.type is PresenceType.AVAILABLE


async def test_after_taking_the_state_back_the_same_document_is_delivered(world: World) -> None:
    sub_id = await subscribe_alice(world)
    world.feed(notify(sub_id, "active", PIDF))
    # The notifier ends the dialog without a document and without a retry time: the
    # contact's state is unknown now, so the user is told "unavailable" (RFC 8048 §6.3).
    world.feed(notify(sub_id, "terminated", reason="probation"))
    assert world.xmpp.sent[-1].type is PresenceType.UNAVAILABLE
    out = world.service._outbound[("bob@example.test", "sip:alice@example.test")]
    assert out.last_state is None  # a probe cannot bring the old state back
    # The retry (here at once) gets a new dialog whose first NOTIFY repeats the old state.
    await world.service._establish(out, refresh_first=False)
    [(_, new_sub, _, _)] = world.layer.named("subscribe")[-1:]
    assert new_sub != sub_id
    world.feed(notify(new_sub, "active", PIDF))
    assert len(available_from_alice(world)) == 2


# -- address mapping of incoming presence ------------------------------------------------------


async def test_routes_are_cached_refusals_included_and_bounded(world: World) -> None:
    service = world.service
    # A sender outside the served XMPP domains is refused (RFC 8048 §8.1), every time.
    for _ in range(2):
        with pytest.raises(StanzaErrorException):
            await service.on_presence(
                XmppPresence("eve@elsewhere.test", f"alice@{COMPONENT}", PresenceType.SUBSCRIBE)
            )
    assert isinstance(service._routes[("eve@elsewhere.test", f"alice@{COMPONENT}")], StanzaError)
    # Presence to the component itself is not a SIP contact's business.
    await service.on_presence(XmppPresence("bob@example.test/desk", COMPONENT))
    assert service._routes[("bob@example.test", COMPONENT)] == ()
    # A full JID addressee maps to the contact's bare JID and address of record.
    sub_id = await subscribe_alice(world)
    assert sub_id
    assert service._routes[("bob@example.test", f"alice@{COMPONENT}")] == (
        f"alice@{COMPONENT}",
        "sip:alice@example.test",
    )
    for i in range(ROUTE_CACHE_SIZE + 5):
        await service.on_presence(
            XmppPresence("bob@example.test/desk", f"c{i}@{COMPONENT}", PresenceType.UNAVAILABLE)
        )
    assert len(service._routes) == ROUTE_CACHE_SIZE
