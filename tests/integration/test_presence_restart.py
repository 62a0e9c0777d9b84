"""Presence state survives a restart of the Gateway object (same SQLite file, same SIP port).

After the restart a SIP watcher keeps receiving NOTIFYs in its existing dialog (a refresh is
answered with the last known state, not an empty or closed document) and the XMPP user's SIP
subscription is refreshed in its existing dialog; nobody sees a false "offline".

The "crash" variant stops the gateway without its final store flush, so only what the
periodic write-behind had stored survives, as after a SIGKILL.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from presence_support import (
    COMPONENT,
    SECRET,
    Notifier,
    PresenceClient,
    SipPeer,
    Watcher,
    from_is,
    pidf,
    presence_settings,
    record_sent_presence,
)

from sipxmpp.gateway.runtime.app import Gateway
from sipxmpp.mapping.pidf import Basic, Show, parse_pidf
from support.prosody import ProsodyComponent, ProsodyUser, make_prosody_fixture

pytestmark = pytest.mark.prosody

prosody = make_prosody_fixture(
    scope="module",
    vhost="example.test",
    components=[ProsodyComponent(COMPONENT, SECRET)],
    users=[ProsodyUser("bob", "bob-pw")],
)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def proxy() -> AsyncIterator[SipPeer]:
    peer = await SipPeer.open()
    yield peer
    peer.close()


async def start(prosody: Any, proxy: SipPeer, store: str, port: int) -> Gateway:
    settings = presence_settings(prosody, proxy.port, store, sip={"udp_port": port})
    gw = Gateway(settings)
    await gw.start()
    assert await gw.xmpp.wait_up(10.0)
    proxy.gateway_port = gw.sip_addresses["udp"][1]
    record_sent_presence(gw)
    return gw


@pytest.mark.parametrize("crash", [False, True], ids=["clean-stop", "crash"])
async def test_restart_keeps_both_directions_without_false_offline(
    prosody: Any, proxy: SipPeer, tmp_path: Any, crash: bool
) -> None:
    store = f"sqlite:///{tmp_path}/state.db"
    port = free_udp_port()
    tag = "c" if crash else "s"
    contact_jid = f"carl{tag}@{COMPONENT}"
    watcher_jid = f"wr{tag}@{COMPONENT}"
    async with PresenceClient(
        "bob@example.test/laptop", "bob-pw", "127.0.0.1", prosody.c2s_port
    ) as bob:
        gw = await start(prosody, proxy, store, port)
        # S2X: a SIP watcher of bob, approved, with bob's state.
        w = Watcher(proxy, f"sip:wr{tag}@example.test", "sip:bob@example.test")
        assert (await w.subscribe(3600)).status == 200
        await w.notify()
        await bob.wait_presence(from_is(watcher_jid, "subscribe"))
        bob.presence(watcher_jid, "subscribed")
        while True:
            n = await w.notify()
            if n.body and parse_pidf(n.body).tuple("ID-laptop") is not None:
                break
        last_cseq = n.cseq
        # X2S: bob watches a SIP contact.
        bob.presence(contact_jid, "subscribe")
        sub = await proxy.request("SUBSCRIBE", uri_has=f"carl{tag}@example.test")
        ps = Notifier(proxy, sub)
        ps.answer(200)
        await ps.notify_answered(
            "active;expires=3600", pidf(f"sip:carl{tag}@example.test", ("pc", "open"))
        )
        await bob.wait_presence(from_is(f"{contact_jid}/pc", ""))
        # Let the write-behind store it (store_flush_interval = 0.2 s), then go down.
        await asyncio.sleep(0.6)
        if crash:
            gw.presence._store = None  # no final flush: only what was written survives
        await gw.stop()
        await asyncio.sleep(0.1)  # asyncio closes the UDP socket on the next iteration

        gw2 = await start(prosody, proxy, store, port)
        try:
            # X2S: the subscription is refreshed in its existing dialog.
            refresh = await proxy.request("SUBSCRIBE", call_id=ps.call_id)
            assert refresh.tag("To") == ps.to_tag
            assert refresh.get("Expires") == "3600"
            ps.answer(200, request=refresh)
            await ps.notify_answered(
                "active;expires=3600",
                pidf(f"sip:carl{tag}@example.test", ("pc", "open"), show="away", note="brb"),
            )
            p = await bob.wait_presence(
                lambda s: str(s["from"]) == f"{contact_jid}/pc" and s["status"] == "brb"
            )
            assert p["show"] == "away"
            # S2X: the watcher's refresh in its existing dialog gets the last known state.
            resp = await w.subscribe(3600)
            assert resp.status == 200
            n = await w.notify()
            assert n.cseq > last_cseq  # the dialog continues (RFC 3261 §12.2.1.1)
            assert (n.get("Subscription-State") or "").startswith("active")
            t = parse_pidf(n.body).tuple("ID-laptop")
            assert t is not None and t.basic is Basic.OPEN  # not empty, not closed
            # ... and the next change of bob's state arrives in the same dialog.
            bob.broadcast(show="dnd", status="after the restart")
            while True:
                n = await w.notify()
                t = parse_pidf(n.body).tuple("ID-laptop") if n.body else None
                if t is not None and t.show is Show.DND:
                    break
            # Nobody was told "offline" falsely.
            assert not [
                s
                for s in bob.seen
                if str(s["from"]).startswith(contact_jid) and s["type"] == "unavailable"
            ]
            for gw_ in (gw, gw2):
                assert not [
                    p
                    for p in gw_.sent_presence
                    if p.type.value == "unavailable" and p.to_jid == "bob@example.test"
                ]
        finally:
            await gw2.stop()
