"""The seed call flows (draft-sinha-simple-intradomain-federation-callflow, shared/seeds/004)
through the running gateway, both ways: Bob goes Away, Bob sets Do Not Disturb, Alice dials
into a meeting from her phone while her PC stays active.

SIP -> XMPP: the PIDF documents rebuilt in tests/mapping/test_seed_flows.py arrive in NOTIFYs
from the SIP presence server; an XMPP watcher (carol, on Prosody) sees the states.
XMPP -> SIP: XMPP users set the same states; a SIP watcher gets schema-valid PIDF with RPID
activities and the embedded <show/>, which read back to the same XMPP states.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from presence_support import (
    COMPONENT,
    SECRET,
    Notifier,
    PresenceClient,
    SipPeer,
    Watcher,
    from_is,
    presence_settings,
)

import sipxmpp.mapping.pidf as pidf_module
from mapping.test_seed_flows import ALICE_MEETING, BOB_AWAY, BOB_DND
from sipxmpp.gateway.runtime.app import Gateway
from sipxmpp.mapping.pidf import Activity, Basic, Show, parse_pidf
from sipxmpp.mapping.presence import PresenceType, pidf_to_xmpp
from support.prosody import ProsodyComponent, ProsodyUser, make_prosody_fixture

pytestmark = pytest.mark.prosody

prosody = make_prosody_fixture(
    scope="module",
    vhost="example.test",
    components=[ProsodyComponent(COMPONENT, SECRET)],
    users=[
        ProsodyUser("alice", "alice-pw"),
        ProsodyUser("bob", "bob-pw"),
        ProsodyUser("carol", "carol-pw"),
    ],
)

SCHEMA = etree.XMLSchema(
    etree.parse(str(Path(pidf_module.__file__).parent / "schemas" / "presence-bundle.xsd"))
)


@pytest.fixture
async def proxy() -> AsyncIterator[SipPeer]:
    peer = await SipPeer.open()
    yield peer
    peer.close()


async def gateway_for(prosody: Any, proxy: SipPeer, tmp_path: Any, **presence: Any) -> Gateway:
    settings = presence_settings(prosody, proxy.port, f"sqlite:///{tmp_path}/state.db", **presence)
    gw = Gateway(settings)
    await gw.start()
    assert await gw.xmpp.wait_up(10.0)
    proxy.gateway_port = gw.sip_addresses["udp"][1]
    return gw


@pytest.fixture
async def gateway(prosody: Any, proxy: SipPeer, tmp_path: Any) -> AsyncIterator[Gateway]:
    gw = await gateway_for(prosody, proxy, tmp_path)
    yield gw
    await gw.stop()


def client(prosody: Any, jid: str, password: str) -> PresenceClient:
    return PresenceClient(jid, password, "127.0.0.1", prosody.c2s_port)


async def carol_watches(proxy: SipPeer, carol: PresenceClient, name: str) -> Notifier:
    jid = f"{name}@{COMPONENT}"
    carol.presence(jid, "subscribe")
    sub = await proxy.request("SUBSCRIBE", uri_has=f"{name}@example.test")
    notifier = Notifier(proxy, sub)
    notifier.answer(200)
    return notifier


async def states(carol: PresenceClient, jid: str, count: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    while len(out) < count:
        p = await carol.wait_presence(
            lambda s: str(s["from"]).startswith(jid + "/") and s["type"] != "subscribed"
        )
        out[str(p["from"]).split("/", 1)[1]] = p
    return out


# -- SIP -> XMPP -------------------------------------------------------------------------


async def test_bob_goes_away_seen_by_xmpp_watcher(
    gateway: Gateway, proxy: SipPeer, prosody: Any
) -> None:
    async with client(prosody, "carol@example.test/desk", "carol-pw") as carol:
        notifier = await carol_watches(proxy, carol, "bobaway")
        await notifier.notify_answered("active;expires=3600", BOB_AWAY)
        await carol.wait_presence(from_is(f"bobaway@{COMPONENT}", "subscribed"))
        seen = await states(carol, f"bobaway@{COMPONENT}", 2)
        for resource in ("bobpc", "bobphone"):
            assert seen[resource]["show"] == "away"
            assert seen[resource]["status"] == "I am Away from my computer now"


async def test_bob_sets_dnd_standard_and_with_closed_dnd_policy(
    proxy: SipPeer, prosody: Any, tmp_path: Any
) -> None:
    # RFC 8048 §6.3: closed tuples are unavailable (the note still says why) ...
    gw = await gateway_for(prosody, proxy, tmp_path / "a")
    try:
        async with client(prosody, "carol@example.test/desk", "carol-pw") as carol:
            notifier = await carol_watches(proxy, carol, "bobdnd")
            await notifier.notify_answered("active;expires=3600", BOB_DND)
            seen = await states(carol, f"bobdnd@{COMPONENT}", 2)
            assert {p["type"] for p in seen.values()} == {"unavailable"}
    finally:
        await gw.stop()
    # ... unless the operator reads closed+busy as DND for such presence servers.
    gw = await gateway_for(prosody, proxy, tmp_path / "b", closed_dnd_is_dnd=True)
    try:
        async with client(prosody, "carol@example.test/desk", "carol-pw") as carol:
            notifier = await carol_watches(proxy, carol, "bobdnd2")
            await notifier.notify_answered("active;expires=3600", BOB_DND)
            seen = await states(carol, f"bobdnd2@{COMPONENT}", 2)
            assert {p["show"] for p in seen.values()} == {"dnd"}
    finally:
        await gw.stop()


async def test_alice_meeting_seen_by_xmpp_watcher(
    gateway: Gateway, proxy: SipPeer, prosody: Any
) -> None:
    async with client(prosody, "carol@example.test/desk", "carol-pw") as carol:
        notifier = await carol_watches(proxy, carol, "alicemeet")
        await notifier.notify_answered(
            "active;expires=3600",
            BOB_AWAY.replace(b"sip:bob@example.com", b"sip:alice@example.com"),
        )
        await states(carol, f"alicemeet@{COMPONENT}", 2)
        # Alice dials into the meeting: the phone goes busy (closed), the PC stays open.
        await notifier.notify_answered("active;expires=3500", ALICE_MEETING)
        seen = await states(carol, f"alicemeet@{COMPONENT}", 3)
        assert seen["alicepc"]["show"] == "dnd"
        assert seen["alicepc"]["status"] == "I am in a Meeting"
        assert seen["alicephone"]["type"] == "unavailable"
        assert seen["alicephoneim"]["show"] == "dnd"
        # The tuples of the earlier document that are gone are taken back.
        gone = await states(carol, f"alicemeet@{COMPONENT}", 2)
        assert {r: p["type"] for r, p in gone.items()} == {
            "bobpc": "unavailable",
            "bobphone": "unavailable",
        }


# -- XMPP -> SIP -------------------------------------------------------------------------


async def watch_xmpp_user(proxy: SipPeer, user: PresenceClient, local: str, name: str) -> Watcher:
    w = Watcher(proxy, f"sip:{name}@example.test", f"sip:{local}@example.test")
    assert (await w.subscribe(3600)).status == 200
    await w.notify()
    await user.wait_presence(from_is(f"{name}@{COMPONENT}", "subscribe"))
    user.presence(f"{name}@{COMPONENT}", "subscribed")
    await w.notify()  # active, empty
    return w


async def notify_until(w: Watcher, predicate: Any) -> Any:
    while True:
        n = await w.notify()
        if n.body and predicate(parse_pidf(n.body)):
            assert SCHEMA.validate(etree.fromstring(n.body)), SCHEMA.error_log
            return parse_pidf(n.body)


async def test_xmpp_bob_goes_away_then_dnd_reaches_sip_watcher(
    gateway: Gateway, proxy: SipPeer, prosody: Any
) -> None:
    async with client(prosody, "bob@example.test/bobpc", "bob-pw") as bob:
        w = await watch_xmpp_user(proxy, bob, "bob", "sipwatcher1")
        bob.broadcast(show="away", status="I am Away from my computer now")
        doc = await notify_until(w, lambda d: any(t.show is Show.AWAY for t in d.tuples))
        t = doc.tuple("ID-bobpc")
        assert t is not None and t.basic is Basic.OPEN  # away keeps basic open (spec §3.4)
        assert doc.persons[0].activities is not None
        assert doc.persons[0].activities.values == (Activity.AWAY,)
        assert t.notes[0].text == "I am Away from my computer now"
        back = pidf_to_xmpp(doc, from_jid="bob@example.test", to_jid="w@x")
        assert [(p.type, p.show) for p in back] == [(PresenceType.AVAILABLE, Show.AWAY)]
        bob.broadcast(show="dnd", status="Do not disturb")
        doc = await notify_until(w, lambda d: any(t.show is Show.DND for t in d.tuples))
        assert doc.persons[0].activities is not None
        assert doc.persons[0].activities.values == (Activity.BUSY,)
        assert doc.tuple("ID-bobpc").basic is Basic.OPEN  # type: ignore[union-attr]


async def test_xmpp_alice_meeting_on_phone_while_pc_active(
    gateway: Gateway, proxy: SipPeer, prosody: Any
) -> None:
    async with client(prosody, "alice@example.test/alicepc", "alice-pw") as pc:
        w = await watch_xmpp_user(proxy, pc, "alice", "sipwatcher2")
        async with client(prosody, "alice@example.test/alicephone", "alice-pw"):
            await notify_until(w, lambda d: d.tuple("ID-alicephone") is not None)
        # The phone session ends (she is on the call); the PC says "in a meeting".
        pc.broadcast(show="dnd", status="I am in a Meeting")
        doc = await notify_until(
            w,
            lambda d: (
                d.tuple("ID-alicepc") is not None
                and d.tuple("ID-alicepc").show is Show.DND  # type: ignore[union-attr]
                and d.tuple("ID-alicephone") is not None
                and d.tuple("ID-alicephone").basic is Basic.CLOSED
            ),  # type: ignore[union-attr]
        )
        back = {
            p.resource: p for p in pidf_to_xmpp(doc, from_jid="alice@example.test", to_jid="w@x")
        }
        assert back["alicepc"].show is Show.DND
        assert back["alicepc"].statuses[0].text == "I am in a Meeting"
        assert back["alicephone"].type is PresenceType.UNAVAILABLE
