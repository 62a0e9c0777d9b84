"""RFC 8048 §5.2, §6.3, §7.1 through the running gateway: an XMPP user (on a real Prosody)
watches SIP contacts; the SIP partition's presence server is a raw UDP peer in the test.

Tests are named after the conformance points of shared/spec/interworking.md §4.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
from presence_support import (
    COMPONENT,
    SECRET,
    Notifier,
    PresenceClient,
    SipPeer,
    from_is,
    pidf,
    presence_settings,
    record_sent_presence,
    response_to,
    wait_sent,
)

from sipxmpp.gateway.runtime.app import Gateway
from support.prosody import ProsodyComponent, ProsodyUser, make_prosody_fixture

pytestmark = pytest.mark.prosody

prosody = make_prosody_fixture(
    scope="module",
    vhost="example.test",
    components=[ProsodyComponent(COMPONENT, SECRET)],
    users=[ProsodyUser("bob", "bob-pw"), ProsodyUser("carol", "carol-pw")],
)

_n = itertools.count(1)


def contact(point: str) -> tuple[str, str]:
    """A fresh SIP contact per test: (its JID, its SIP URI)."""
    name = f"alice{point}x{next(_n)}"
    return f"{name}@{COMPONENT}", f"sip:{name}@example.test"


@pytest.fixture
async def proxy() -> AsyncIterator[SipPeer]:
    peer = await SipPeer.open()
    yield peer
    peer.close()


@pytest.fixture
async def gateway(prosody: Any, proxy: SipPeer, tmp_path: Any) -> AsyncIterator[Gateway]:
    settings = presence_settings(prosody, proxy.port, f"sqlite:///{tmp_path}/state.db")
    async with Gateway(settings) as gw:
        assert await gw.xmpp.wait_up(10.0)
        proxy.gateway_port = gw.sip_addresses["udp"][1]
        record_sent_presence(gw)
        yield gw


@pytest.fixture
async def bob(prosody: Any) -> AsyncIterator[PresenceClient]:
    async with PresenceClient(
        "bob@example.test/laptop", "bob-pw", "127.0.0.1", prosody.c2s_port
    ) as client:
        await client.disco_info("example.test")
        yield client


async def subscribed(proxy: SipPeer, bob: PresenceClient, jid: str, uri: str) -> Notifier:
    """bob subscribes to the SIP contact; the presence server accepts (active)."""
    bob.presence(jid, "subscribe")
    sub = await proxy.request("SUBSCRIBE", uri_has=uri.split(":", 1)[1])
    notifier = Notifier(proxy, sub)
    notifier.answer(200)
    resp = await notifier.notify_answered(
        "active;expires=3600", pidf(uri, ("pc", "open"), note="here")
    )
    assert resp.status == 200
    await bob.wait_presence(from_is(jid, "subscribed"))
    await bob.wait_presence(from_is(f"{jid}/pc", ""))
    return notifier


async def test_point21_subscribe_becomes_sip_subscribe(
    gateway: Gateway, proxy: SipPeer, bob: PresenceClient
) -> None:
    jid, uri = contact("21")
    bob.presence(jid, "subscribe")
    sub = await proxy.request("SUBSCRIBE", uri_has=uri.split(":", 1)[1])
    assert sub.uri == uri
    assert sub.get("Event") == "presence"
    assert "application/pidf+xml" in (sub.get("Accept") or "")
    assert sub.get("Expires") == "3600"  # RFC 8048 §5.2.1, RFC 3856 §6.4
    assert "<sip:bob@example.test>" in (sub.get("From") or "")
    assert sub.tag("To") is None  # a new dialog
    assert sub.get("Contact")


async def test_point22_pending_notify_is_answered_and_not_shown(
    gateway: Gateway, proxy: SipPeer, bob: PresenceClient
) -> None:
    jid, uri = contact("22")
    bob.presence(jid, "subscribe")
    sub = await proxy.request("SUBSCRIBE", uri_has=uri.split(":", 1)[1])
    notifier = Notifier(proxy, sub)
    notifier.answer(202, "Accepted")  # RFC 6665 §8.3.1: a 202 is taken as a 200
    resp = await notifier.notify_answered(
        "pending;expires=3600", pidf(uri, ("pc", "open"), note="should not leak")
    )
    assert resp.status == 200
    await bob.no_presence(from_is(jid), 0.7)


async def test_point23_first_active_notify_gives_subscribed_and_presence(
    gateway: Gateway, proxy: SipPeer, bob: PresenceClient
) -> None:
    jid, uri = contact("23")
    bob.presence(jid, "subscribe")
    sub = await proxy.request("SUBSCRIBE", uri_has=uri.split(":", 1)[1])
    notifier = Notifier(proxy, sub)
    notifier.answer(200)
    await notifier.notify_answered(
        "active;expires=3600", pidf(uri, ("pc", "open"), note="Hallo", lang="de")
    )
    await bob.wait_presence(from_is(jid, "subscribed"))
    p = await bob.wait_presence(from_is(f"{jid}/pc"))
    assert p["type"] in ("", "available")
    assert p["status"] == "Hallo"
    # A later NOTIFY is a presence change only (no second 'subscribed').
    await notifier.notify_answered("active;expires=3500", pidf(uri, ("pc", "closed")))
    p = await bob.wait_presence(from_is(f"{jid}/pc"))
    assert p["type"] == "unavailable"  # point 37: closed -> unavailable
    assert not [s for s in bob.seen[-1:] if s["type"] == "subscribed"]


async def test_point24_403_to_refresh_cancels_authorization(
    gateway: Gateway, proxy: SipPeer, bob: PresenceClient, prosody: Any
) -> None:
    jid, uri = contact("24a")
    notifier = await subscribed(proxy, bob, jid, uri)
    # A new session of bob sends initial presence; Prosody probes bob's contacts and the
    # gateway refreshes (point 25); the presence server refuses the refresh with 403.
    async with PresenceClient("bob@example.test/phone", "bob-pw", "127.0.0.1", prosody.c2s_port):
        refresh = await proxy.request("SUBSCRIBE", call_id=notifier.call_id)
        assert refresh.tag("To") == notifier.to_tag  # in the existing dialog
        proxy.send(response_to(refresh, 403, "Forbidden"))
        # The contact's resources are taken back (RFC 6121 §3.2.2), then the user is told.
        await bob.wait_presence(from_is(f"{jid}/pc", "unavailable"))
        await bob.wait_presence(from_is(jid, "unsubscribed"))


async def test_point24_481_to_refresh_keeps_authorization(
    gateway: Gateway, proxy: SipPeer, bob: PresenceClient, prosody: Any
) -> None:
    jid, uri = contact("24b")
    notifier = await subscribed(proxy, bob, jid, uri)
    async with PresenceClient("bob@example.test/phone", "bob-pw", "127.0.0.1", prosody.c2s_port):
        refresh = await proxy.request("SUBSCRIBE", call_id=notifier.call_id)
        proxy.send(response_to(refresh, 481, "Call/Transaction Does Not Exist"))
        # 481: the dialog is gone but the authorization is kept: a new dialog at once.
        again = await proxy.request("SUBSCRIBE", uri_has=uri.split(":", 1)[1])
        assert again.tag("To") is None
        assert again.call_id != refresh.call_id
        await bob.no_presence(from_is(jid, "unsubscribed"), 0.5)


async def test_point25_initial_presence_refreshes(
    gateway: Gateway, proxy: SipPeer, bob: PresenceClient, prosody: Any
) -> None:
    jid, uri = contact("25")
    notifier = await subscribed(proxy, bob, jid, uri)
    async with PresenceClient(
        "bob@example.test/tablet", "bob-pw", "127.0.0.1", prosody.c2s_port
    ) as tablet:
        refresh = await proxy.request("SUBSCRIBE", call_id=notifier.call_id)
        assert refresh.tag("To") == notifier.to_tag
        assert refresh.get("Expires") == "3600"
        # The probe is answered at once from the last known state.
        await tablet.wait_presence(from_is(f"{jid}/pc", ""))
        notifier.answer(200, request=refresh)


async def test_point26_unsubscribe_is_expires_0_then_unsubscribed(
    gateway: Gateway, proxy: SipPeer, bob: PresenceClient
) -> None:
    jid, uri = contact("26")
    notifier = await subscribed(proxy, bob, jid, uri)
    bob.presence(jid, "unsubscribe")
    unsub = await proxy.request("SUBSCRIBE", call_id=notifier.call_id)
    assert unsub.get("Expires") == "0"
    notifier.answer(200, request=unsub, expires=0)
    await notifier.notify_answered("terminated;reason=timeout")
    # RFC 8048 §5.2.3: 'unsubscribed' confirms it. (Prosody, having already set the roster
    # item to 'none', rightly drops it per RFC 6121 §3.2.3, so it is checked as sent.)
    sent = await wait_sent(gateway, lambda p: p.type.value == "unsubscribed" and p.from_jid == jid)
    assert sent.to_jid == "bob@example.test"


async def test_point36_show_and_point34_note_and_language(
    gateway: Gateway, proxy: SipPeer, bob: PresenceClient
) -> None:
    jid, uri = contact("36")
    notifier = await subscribed(proxy, bob, jid, uri)
    await notifier.notify_answered(
        "active;expires=3600",
        pidf(uri, ("pc", "open"), note="Essen", show="away"),
        extra=[("Content-Language", "de")],
    )
    p = await bob.wait_presence(lambda s: str(s["from"]) == f"{jid}/pc" and s["status"] == "Essen")
    assert p["show"] == "away"
    assert p["lang"] == "de"


async def test_point38_probe_without_authorization_polls(
    gateway: Gateway, proxy: SipPeer, bob: PresenceClient
) -> None:
    jid, uri = contact("38")
    bob.presence(jid, "probe")
    poll = await proxy.request("SUBSCRIBE", uri_has=uri.split(":", 1)[1])
    assert poll.get("Expires") == "0"  # RFC 8048 §7.1: a new dialog with Expires: 0
    assert poll.tag("To") is None
    notifier = Notifier(proxy, poll)
    notifier.answer(200, expires=0)
    await notifier.notify_answered(
        "terminated;reason=timeout", pidf(uri, ("desk", "open"), note="polled")
    )
    p = await bob.wait_presence(from_is(f"{jid}/desk", ""))
    assert p["status"] == "polled"
