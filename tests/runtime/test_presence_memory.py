"""Memory the presence service keeps per subscription (issue 3: under 2 KB per subscription
for the whole gateway, 50,000 SIP-side + 50,000 XMPP-side held).

The layer's own share is measured in tests/sip/test_subscription.py; here the service's
records are measured with the recording fakes of test_presence_service.py: live Python
memory allocated by the gateway's modules (not by the fakes) per subscription, after the
bounded caches are emptied. And what the watchers of one presentity share.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_presence_service import COMPONENT, PIDF, World, make_world, notify, requested

from sipxmpp.gateway.runtime.presence import (
    _Outbound,
    _pack_shown,
    _shown_jids,
    _unpack_doc,
)
from sipxmpp.gateway.store import Store, open_store
from sipxmpp.mapping.pidf import _DEFLATE_WBITS, PIDF_ZDICT, deflate_pidf
from sipxmpp.mapping.presence import PresenceType, XmppPresence

SOURCES = str(Path(__file__).resolve().parents[2] / "src" / "sipxmpp")

#: The service's records per subscription, every user and contact distinct (the worst
#: case: nothing to share), including each S2X user's own PIDF document (~300 bytes) and
#: the X2S contact's. Measured about 1,000 bytes (the layer's _Sub and dialog come on top,
#: see its own test); the bound leaves room for interpreter differences, not for one more
#: structure per subscription.
SERVICE_BYTES_PER_SUBSCRIPTION = 1300


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    st = await open_store("sqlite://:memory:")
    yield st
    await st.close()


def _forget_caches(world: World) -> None:
    service = world.service
    service._routes.clear()
    service._pidf_cache.clear()
    service._presences.clear()
    memo = getattr(service._domains, "_memo", None)
    if memo is not None:
        memo.clear()
    gc.collect()


async def _pairs(world: World, start: int, n: int) -> None:
    """``n`` S2X watchers (each of its own user, authorized, with a state) and ``n`` X2S
    subscriptions (each to its own contact, active, with a document)."""
    for i in range(start, start + n):
        user = f"u{i}@example.test"
        world.feed(
            requested(
                f"n{i}", watcher=f"sip:w{i}@example.test", presentity=f"sip:u{i}@example.test"
            )
        )
        await world.settle()
        await world.service.on_presence(
            XmppPresence(user, f"w{i}@{COMPONENT}", PresenceType.SUBSCRIBED)
        )
        await world.service.on_presence(
            XmppPresence.received(f"{user}/desk", f"w{i}@{COMPONENT}", statuses=[("here", None)])
        )
        await world.service.on_presence(
            XmppPresence(f"x{i}@example.test", f"c{i}@{COMPONENT}", PresenceType.SUBSCRIBE)
        )
        sub_id = world.layer.named("subscribe")[-1][1]
        world.feed(notify(sub_id, "active", PIDF.replace(b"alice", f"c{i}".encode())))
    world.layer.calls.clear()
    world.xmpp.sent.clear()


async def test_service_memory_per_subscription_is_bounded(store: Store) -> None:
    world = await make_world(store)
    try:
        await _pairs(world, 0, 20)  # warm every code path and dict up
        await world.service.flush()
        _forget_caches(world)
        n = 300
        tracemalloc.start()
        try:
            before = tracemalloc.take_snapshot()
            await _pairs(world, 20, n)
            await world.service.flush()
            _forget_caches(world)
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        ours = [tracemalloc.Filter(True, SOURCES + "/*")]
        grown = sum(
            stat.size_diff
            for stat in after.filter_traces(ours).compare_to(before.filter_traces(ours), "filename")
        )
        per_subscription = grown / (2 * n)
        assert len(world.service._inbound) == len(world.service._outbound) == n + 20
        assert per_subscription < SERVICE_BYTES_PER_SUBSCRIPTION, per_subscription
    finally:
        await world.service.stop()


async def test_watchers_of_one_presentity_share_presences_and_documents(store: Store) -> None:
    """One change of bob reaches his 50 watchers as 50 stanzas: their views hold one
    presence object (one status object), and their last documents are one bytes object, made from the views."""
    world = await make_world(store)
    try:
        n = 50
        for i in range(n):
            world.feed(requested(f"w{i}", watcher=f"sip:w{i}@example.test"))
        await world.settle()
        for i in range(n):
            await world.service.on_presence(
                XmppPresence("bob@example.test", f"w{i}@{COMPONENT}", PresenceType.SUBSCRIBED)
            )
        for i in range(n):
            await world.service.on_presence(
                XmppPresence.received(
                    "bob@example.test/desk",
                    f"w{i}@{COMPONENT}",
                    show="away",
                    statuses=[("lunch", None)],
                )
            )
        pairs = [world.service._pairs[("bob@example.test", f"w{i}@{COMPONENT}")] for i in range(n)]
        views = {id(p) for pair in pairs for p in pair.view}
        assert len(views) == 1
        # Each watcher's last document is its pair's view (held there anyway), and the
        # document made from it is one bytes object for all 50.
        inbounds = [world.service._inbound[f"w{i}"] for i in range(n)]
        assert all(ib.last_state is pair.view for ib, pair in zip(inbounds, pairs, strict=True))
        docs = {id(world.service._last_body(ib)) for ib in inbounds}
        assert len(docs) == 1
        users = {id(world.service._inbound[f"w{i}"].user) for i in range(n)}
        assert len(users) == 1  # interned
    finally:
        await world.service.stop()


@given(st.binary(max_size=4096))
def test_deflated_documents_come_back_whole(doc: bytes) -> None:
    assert _unpack_doc(deflate_pidf(doc)) == doc


def test_a_contacts_last_document_is_kept_deflated() -> None:
    """An X2S subscription keeps its contact's last PIDF deflated with the preset
    dictionary: the minimal one-tuple document (RFC 3863 §4.2) in a fifth of its size,
    with the whole dictionary inside the deflate window."""
    doc = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<presence xmlns="urn:ietf:params:xml:ns:pidf" '
        b'entity="sip:c10001@example.test"><tuple id="t1"><status><basic>open</basic>'
        b"</status><note>ready</note></tuple></presence>"
    )
    packed = deflate_pidf(doc)
    assert len(packed) < 0.25 * len(doc), len(packed)
    assert len(PIDF_ZDICT) <= 2**-_DEFLATE_WBITS  # a window sees only its last bytes
    assert _unpack_doc(packed) == doc
    assert _unpack_doc(None) is None


async def test_outbound_and_authorization_share_their_key_tuple(store: Store) -> None:
    """An X2S subscription's index entry and its authorization are keyed by one
    (user, contact) tuple object, not two equal ones."""
    world = await make_world(store)
    try:
        await _pairs(world, 0, 5)
        auth_keys = {key: key for key in world.service._auth}
        for key in world.service._outbound:
            assert auth_keys[key] is key
    finally:
        await world.service.stop()


@pytest.mark.parametrize(
    "jids",
    [
        (),
        ("c1@sip.example.test/t1",),
        ("c1@sip.example.test/t1", "c1@sip.example.test/pc"),
        ("c1@sip.example.test",),  # the bare JID: kept as it is
        ("c10@sip.example.test/t1",),  # another contact's prefix: kept as it is
        ("c1@sip.example.test/ünï/x",),
    ],
)
def test_shown_jids_come_back_whole(jids: tuple[str, ...]) -> None:
    out = _Outbound(
        user="x1@example.test",
        user_uri="sip:x1@example.test",
        contact_uri="sip:c1@example.test",
    )
    out.shown = _pack_shown("c1@sip.example.test", jids)
    assert _shown_jids(out.shown, "c1@sip.example.test") == jids
    if len(jids) == 1 and jids[0].startswith("c1@sip.example.test/"):
        assert out.shown == jids[0][len("c1@sip.example.test") :]  # the resource only


async def test_a_contacts_jid_is_kept_only_when_its_address_does_not_map_back(
    store: Store,
) -> None:
    """An X2S record keeps the contact's JID only when mapping the contact's SIP address
    back gives another JID; otherwise the JID is mapped again where it is needed."""
    world = await make_world(store)
    try:
        await _pairs(world, 0, 3)
        service = world.service
        for (_, contact_uri), out in service._outbound.items():
            assert out.odd_jid is None
            i = contact_uri.removeprefix("sip:c").removesuffix("@example.test")
            assert service._contact_jid(out) == f"c{i}@{COMPONENT}"
        assert service._odd_jid("sip:c1@example.test", f"c1@{COMPONENT}") is None
        assert service._odd_jid("sip:c1@example.test", f"d1@{COMPONENT}") == f"d1@{COMPONENT}"
        # An address that maps to no JID at all keeps the JID it was addressed by.
        assert service._odd_jid("sip:c1@elsewhere.test", "c1@elsewhere.test") == (
            "c1@elsewhere.test"
        )
        odd = _Outbound(
            user="x1@example.test",
            user_uri="sip:x1@example.test",
            contact_uri="sip:c1@example.test",
            odd_jid=f"d1@{COMPONENT}",
        )
        assert service._contact_jid(odd) == f"d1@{COMPONENT}"
    finally:
        await world.service.stop()


def test_an_x2s_record_stays_in_the_112_byte_class() -> None:
    """Its booleans are bits of one slot and its peer is derived, yet each behaves as a
    field of its own."""
    import sys

    out = _Outbound(
        user="x1@example.test", user_uri="sip:x1@example.test", contact_uri="sip:c1@EXAMPLE.test"
    )
    assert sys.getsizeof(out) <= 112
    assert out.peer == "example.test" and out.peer is sys.intern("example.test")
    names = ("active_seen", "unsubscribing", "undelivered")
    for name in names:
        assert getattr(out, name) is False
        setattr(out, name, True)
        assert [getattr(out, n) for n in names] == [n == name for n in names]
        setattr(out, name, False)
    assert out.flags == 0
