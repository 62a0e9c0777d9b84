"""RFC 8048 §5.3, §6.2, §7.2, §8 and RFC 6665 through the running gateway: SIP watchers (a raw
UDP peer in the test) watch an XMPP user on a real Prosody; the gateway is the notifier.

Tests are named after the conformance points of shared/spec/interworking.md §4.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from presence_support import (
    COMPONENT,
    SECRET,
    PresenceClient,
    SipPeer,
    Watcher,
    from_is,
    presence_settings,
    record_sent_presence,
)

import sipxmpp.mapping.pidf as pidf_module
from sipxmpp.gateway.runtime.app import Gateway
from sipxmpp.mapping.pidf import Basic, Show, parse_pidf
from support.prosody import ProsodyComponent, ProsodyUser, make_prosody_fixture

pytestmark = pytest.mark.prosody

prosody = make_prosody_fixture(
    scope="module",
    vhost="example.test",
    components=[ProsodyComponent(COMPONENT, SECRET)],
    users=[ProsodyUser("bob", "bob-pw"), ProsodyUser("carol", "carol-pw")],
)

SCHEMA = etree.XMLSchema(
    etree.parse(str(Path(pidf_module.__file__).parent / "schemas" / "presence-bundle.xsd"))
)

_n = itertools.count(1)


def watcher_name(point: str) -> tuple[str, str]:
    """A fresh SIP watcher per test: (its SIP URI, its JID under the component)."""
    name = f"w{point}x{next(_n)}"
    return f"sip:{name}@example.test", f"{name}@{COMPONENT}"


@pytest.fixture
async def proxy() -> AsyncIterator[SipPeer]:
    peer = await SipPeer.open()
    yield peer
    peer.close()


async def start_gateway(prosody: Any, proxy: SipPeer, tmp_path: Any, **presence: Any) -> Gateway:
    settings = presence_settings(prosody, proxy.port, f"sqlite:///{tmp_path}/state.db", **presence)
    gw = Gateway(settings)
    await gw.start()
    assert await gw.xmpp.wait_up(10.0)
    proxy.gateway_port = gw.sip_addresses["udp"][1]
    record_sent_presence(gw)
    return gw


@pytest.fixture
async def gateway(prosody: Any, proxy: SipPeer, tmp_path: Any) -> AsyncIterator[Gateway]:
    gw = await start_gateway(prosody, proxy, tmp_path)
    yield gw
    await gw.stop()


@pytest.fixture
async def bob(prosody: Any) -> AsyncIterator[PresenceClient]:
    async with PresenceClient(
        "bob@example.test/laptop", "bob-pw", "127.0.0.1", prosody.c2s_port
    ) as client:
        await client.disco_info("example.test")
        yield client


async def approved(proxy: SipPeer, bob: PresenceClient, point: str) -> Watcher:
    """A SIP watcher subscribes to bob and bob approves; returns after the first state."""
    uri, jid = watcher_name(point)
    w = Watcher(proxy, uri, "sip:bob@example.test")
    resp = await w.subscribe(3600)
    assert resp.status == 200
    first = await w.notify()
    assert first.get("Subscription-State", "").startswith("pending")
    await bob.wait_presence(from_is(jid, "subscribe"))
    bob.presence(jid, "subscribed")
    active = await w.notify()
    assert active.get("Subscription-State", "").startswith("active")
    assert active.body == b""  # RFC 8048 §5.3.1: an empty NOTIFY
    # bob's server sends bob's presence to the new contact (RFC 6121 §3.1.5): Prosody
    # sends an unavailable from the bare JID first, then each available resource.
    while True:
        state = await w.notify()
        assert state.get("Content-Type") == "application/pidf+xml"
        laptop = tuples(state.body).get("ID-laptop")
        if laptop is not None and laptop.basic is Basic.OPEN:
            return w


def tuples(body: bytes) -> dict[str, Any]:
    doc = parse_pidf(body)
    return {t.id: t for t in doc.tuples}


async def test_point27_no_expires_means_3600_and_point65_never_202(
    gateway: Gateway, proxy: SipPeer, bob: PresenceClient
) -> None:
    uri, _ = watcher_name("27")
    w = Watcher(proxy, uri, "sip:bob@example.test")
    resp = await w.subscribe(None)
    assert resp.status == 200  # RFC 6665 §8.3.1: never 202
    assert resp.get("Expires") == "3600"  # RFC 3856 §6.4
    assert resp.get("Contact")


async def test_point63_64_every_2xx_is_followed_by_a_notify_with_state(
    gateway: Gateway, proxy: SipPeer, bob: PresenceClient
) -> None:
    uri, _ = watcher_name("64")
    w = Watcher(proxy, uri, "sip:bob@example.test")
    assert (await w.subscribe(600)).status == 200
    first = await w.notify()
    state = first.get("Subscription-State") or ""
    assert state.startswith("pending;expires=")  # point 63: expires on pending
    assert 0 < int(state.split("expires=")[1]) <= 600
    assert first.body == b""  # nothing leaks to a pending watcher (§8.2)
    # A refresh is a 2xx too: another NOTIFY follows at once.
    assert (await w.subscribe(600)).status == 200
    again = await w.notify()
    assert (again.get("Subscription-State") or "").startswith("pending;expires=")


async def test_point65_unknown_event_package_is_489(
    gateway: Gateway, proxy: SipPeer, bob: PresenceClient
) -> None:
    uri, _ = watcher_name("65")
    w = Watcher(proxy, uri, "sip:bob@example.test")
    resp = await w.subscribe(600, event="dialog")
    assert resp.status == 489
    assert "presence" in (resp.get("Allow-Events") or "")


async def test_point66_notify_for_unknown_dialog_is_481(gateway: Gateway, proxy: SipPeer) -> None:
    raw = (
        f"NOTIFY sip:gw@127.0.0.1:{proxy.gateway_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{proxy.port};branch=z9hG4bKstray66;rport\r\n"
        "From: <sip:nobody@example.test>;tag=a\r\n"
        "To: <sip:bob@example.test>;tag=b\r\n"
        "Call-ID: stray66@127.0.0.1\r\nCSeq: 1 NOTIFY\r\nMax-Forwards: 70\r\n"
        f"Contact: <sip:nobody@127.0.0.1:{proxy.port}>\r\n"
        "Event: presence\r\nSubscription-State: active;expires=60\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    proxy.send(raw)
    resp = await proxy.response("stray66@127.0.0.1")
    assert resp.status == 481


async def test_point28_subscribed_gives_empty_active_then_point31_open_state(
    gateway: Gateway, proxy: SipPeer, bob: PresenceClient
) -> None:
    w = await approved(proxy, bob, "28a")
    # point 31: a presence without type is <basic>open</basic>
    bob.broadcast(status="at my desk")
    n = await w.notify()
    t = tuples(n.body)["ID-laptop"]
    assert t.basic is Basic.OPEN
    assert [note.text for note in t.notes] == ["at my desk"]
    # point 31: unavailable is <basic>closed</basic>
    bob.broadcast(ptype="unavailable")
    n = await w.notify()
    assert tuples(n.body)["ID-laptop"].basic is Basic.CLOSED
    bob.broadcast()


async def test_point28_unsubscribed_gives_terminated_rejected(
    gateway: Gateway, proxy: SipPeer, bob: PresenceClient
) -> None:
    uri, jid = watcher_name("28b")
    w = Watcher(proxy, uri, "sip:bob@example.test")
    assert (await w.subscribe(3600)).status == 200
    await w.notify()
    await bob.wait_presence(from_is(jid, "subscribe"))
    bob.presence(jid, "unsubscribed")
    final = await w.notify()
    assert final.get("Subscription-State") == "terminated;reason=rejected"
    assert final.body == b""
    # The dialog is over: a refresh gets 481.
    assert (await w.subscribe(3600)).status == 481


async def test_pending_and_denied_watchers_see_nothing(
    gateway: Gateway, proxy: SipPeer, bob: PresenceClient
) -> None:
    uri, jid = watcher_name("leak")
    w = Watcher(proxy, uri, "sip:bob@example.test")
    assert (await w.subscribe(3600)).status == 200
    await w.notify()  # pending, empty
    await bob.wait_presence(from_is(jid, "subscribe"))
    bob.broadcast(show="dnd", status="secret meeting")
    await w.no_notify(0.7)
    bob.presence(jid, "unsubscribed")
    assert (await w.notify()).get("Subscription-State") == "terminated;reason=rejected"
    bob.broadcast(show="away")
    await w.no_notify(0.5)
    bob.broadcast()


async def test_point30_unsubscribe_gets_closed_document_and_xmpp_unavailable(
    gateway: Gateway, proxy: SipPeer, bob: PresenceClient
) -> None:
    w = await approved(proxy, bob, "30")
    jid = w.watcher.split(":", 1)[1].split("@")[0] + "@" + COMPONENT
    resp = await w.subscribe(0)
    assert resp.status == 200
    assert resp.get("Expires") == "0"
    final = await w.notify()
    assert final.get("Subscription-State") == "terminated;reason=timeout"
    assert {t.basic for t in parse_pidf(final.body).tuples} == {Basic.CLOSED}
    await bob.wait_presence(from_is(jid, "unavailable"))


async def test_point32_only_availability_produces_notify(
    gateway: Gateway, proxy: SipPeer, bob: PresenceClient
) -> None:
    w = await approved(proxy, bob, "32")
    jid = w.watcher.split(":", 1)[1].split("@")[0] + "@" + COMPONENT
    bob.presence(jid, "probe")
    await w.no_notify(0.5)


async def test_point33_resource_becomes_id_prefixed_tuple(
    gateway: Gateway, proxy: SipPeer, bob: PresenceClient, prosody: Any
) -> None:
    w = await approved(proxy, bob, "33")
    async with PresenceClient("bob@example.test/1abc", "bob-pw", "127.0.0.1", prosody.c2s_port):
        n = await w.notify()
        assert "ID-1abc" in tuples(n.body)  # RFC 8048 §6.2 note 2: a valid xs:ID
        assert SCHEMA.validate(etree.fromstring(n.body))


async def test_point34_status_language_and_point35_priority_and_point36_show(
    gateway: Gateway, proxy: SipPeer, bob: PresenceClient
) -> None:
    w = await approved(proxy, bob, "34")
    bob.broadcast(show="away", status="Mittagessen", priority=127, lang="de")
    n = await w.notify()
    assert n.get("Content-Language") == "de"  # point 34: xml:lang -> Content-Language
    t = tuples(n.body)["ID-laptop"]
    assert t.basic is Basic.OPEN  # away keeps basic open
    assert t.show is Show.AWAY  # point 36: <show xmlns='jabber:client'> in the status
    assert t.contact is not None and str(t.contact.priority) in ("1", "1.000")  # point 35
    assert [n_.text for n_ in t.notes] == ["Mittagessen"]
    doc = parse_pidf(n.body)
    assert [a.value for p in doc.persons for a in p.activities.values] == ["away"]  # RPID
    bob.broadcast(priority=-5)
    n = await w.notify()
    t = tuples(n.body)["ID-laptop"]
    assert t.contact is None or t.contact.priority is None  # negative: not mapped
    bob.broadcast()


async def test_point38_sip_poll_gets_current_state_in_terminated_notify(
    gateway: Gateway, proxy: SipPeer, bob: PresenceClient
) -> None:
    w = await approved(proxy, bob, "38")
    poll = Watcher(proxy, w.watcher, "sip:bob@example.test")
    resp = await poll.subscribe(0)
    assert resp.status == 200 and resp.get("Expires") == "0"
    n = await poll.notify()
    assert n.get("Subscription-State") == "terminated;reason=timeout"
    assert tuples(n.body)["ID-laptop"].basic is Basic.OPEN


async def test_point39_directed_presence_reaches_only_its_addressee(
    gateway: Gateway, proxy: SipPeer, bob: PresenceClient
) -> None:
    w1 = await approved(proxy, bob, "39a")
    w2 = await approved(proxy, bob, "39b")
    jid1 = w1.watcher.split(":", 1)[1].split("@")[0] + "@" + COMPONENT
    bob.presence(jid1, show="dnd", status="only for w1")
    n = await w1.notify()
    assert tuples(n.body)["ID-laptop"].show is Show.DND
    await w2.no_notify(0.7)


async def test_point40_watcher_of_foreign_domain_is_refused(
    gateway: Gateway, proxy: SipPeer
) -> None:
    w = Watcher(proxy, "sip:eve@evil.test", "sip:bob@example.test")
    resp = await w.subscribe(3600)
    assert resp.status == 403  # RFC 8048 §8.1: no open relay


async def test_subscribe_to_unknown_domain_is_404(gateway: Gateway, proxy: SipPeer) -> None:
    w = Watcher(proxy, "sip:w404@example.test", "sip:bob@elsewhere.test")
    assert (await w.subscribe(3600)).status == 404


async def test_point67_every_document_is_schema_valid(
    gateway: Gateway, proxy: SipPeer, bob: PresenceClient
) -> None:
    w = await approved(proxy, bob, "67")
    bob.broadcast(show="xa", status="gone <fishing> & more")
    n = await w.notify()
    root = etree.fromstring(n.body)
    assert root.tag == "{urn:ietf:params:xml:ns:pidf}presence" and root.get("entity")
    assert SCHEMA.validate(root), SCHEMA.error_log
    bob.broadcast()


async def test_point68_rate_limit_merges_changes(
    prosody: Any, proxy: SipPeer, bob: PresenceClient, tmp_path: Any
) -> None:
    gw = await start_gateway(prosody, proxy, tmp_path, min_notify_interval=1.0)
    try:
        w = await approved(proxy, bob, "68")
        loop = asyncio.get_running_loop()
        await asyncio.sleep(1.1)
        bob.broadcast(show="away", status="one")
        first = await w.notify()
        t0 = loop.time()
        assert tuples(first.body)["ID-laptop"].show is Show.AWAY
        bob.broadcast(show="xa", status="two")
        bob.broadcast(show="dnd", status="three")
        merged = await w.notify(timeout=5.0)
        # RFC 3856 §6.10: not within the interval; the last state, nothing dropped.
        assert loop.time() - t0 >= 0.9
        t = tuples(merged.body)["ID-laptop"]
        assert t.show is Show.DND and [x.text for x in t.notes] == ["three"]
        await w.no_notify(1.3)
        bob.broadcast()
    finally:
        await gw.stop()


async def test_caps_per_user_refuse_with_503(
    prosody: Any, proxy: SipPeer, bob: PresenceClient, tmp_path: Any
) -> None:
    gw = await start_gateway(prosody, proxy, tmp_path, max_subscriptions_per_user=1)
    try:
        first = Watcher(proxy, watcher_name("cap")[0], "sip:bob@example.test")
        assert (await first.subscribe(3600)).status == 200
        second = Watcher(proxy, watcher_name("cap")[0], "sip:bob@example.test")
        resp = await second.subscribe(3600)
        assert resp.status == 503
        assert resp.get("Retry-After") == "1"
        # XMPP side: bob may hold one subscription to SIP contacts.
        bob.presence(f"capa@{COMPONENT}", "subscribe")
        await proxy.request("SUBSCRIBE", uri_has="capa@")
        bob.presence(f"capb@{COMPONENT}", "subscribe")
        err = await bob.wait_presence(from_is(f"capb@{COMPONENT}", "error"))
        assert err["error"]["condition"] == "resource-constraint"
    finally:
        await gw.stop()
