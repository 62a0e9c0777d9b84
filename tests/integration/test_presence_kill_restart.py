"""The gateway killed with SIGKILL in the middle of both kinds of subscription, and restarted.

Topology as in test_presence_kamailio.py: a real Kamailio is the SIP partition's proxy and
presence server (carol lives there; SIPp publishes her PIDF), a real Prosody the XMPP
partition (bob), and the gateway runs from its command line with a SQLite state store file
and short expiries:

* X2S: bob (XMPP) watches carol (SIP): the gateway holds a notification dialog with Kamailio
  (``presence.subscribe_expires`` = 60 s, the smallest the settings allow, refreshed 6 s
  before expiry);
* S2X: dave (a SIP watcher behind Kamailio, tests/support/presence_watcher.py) watches bob:
  the gateway is the notifier of dave's dialog (``Expires: 30``).

Once both are active and the write-behind has stored them (``presence.store_flush_interval``
is what a crash can lose), the gateway gets ``kill -9`` (no shutdown code runs) and is
started again with the same configuration, SIP port and store file. Then the next state
change on each side must reach each watcher within one refresh interval (60 s for bob's
subscription, 30 s for dave's; in practice it takes milliseconds), in the *same* dialogs, and
nobody may be told "offline" on the way (RFC 8048 has no such state for a gateway restart).

Two variants: the change happens after the restart, or while the gateway is down (then
Kamailio's NOTIFY retransmissions or the gateway's refresh, and the probe the gateway sends
bob's server on link-up, bring the new state).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from presence_support import PresenceClient, from_is

from support.cli_gateway import CliGateway, free_udp_port
from support.kamailio import KamailioServer, KamailioUser, e2e_marks
from support.presence_watcher import Notify, SipWatcher
from support.prosody import ProsodyComponent, ProsodyUser, make_prosody_fixture
from support.sipp import Sipp

pytestmark = e2e_marks()

SCENARIOS = Path(__file__).resolve().parent / "sipp"
DOMAIN = "example.test"
COMPONENT = "sip.example.test"
SECRET = "kill-restart-secret"
PIDF = "{urn:ietf:params:xml:ns:pidf}"
JABBER_SHOW = "{jabber:client}show"

#: The gateway's own subscriptions (X2S): the smallest ``subscribe_expires`` allowed. One
#: refresh interval of bob's subscription.
X2S_EXPIRES_S = 60
#: dave's subscription (S2X): one refresh interval of the SIP watcher.
S2X_EXPIRES_S = 30
#: Bound on one expected event before the crash (each takes milliseconds on loopback).
STEP_TIMEOUT_S = 15.0
#: SIPp 3.6 binds its control socket to 0.0.0.0 unless told otherwise: loopback only.
SIPP_LOOPBACK_CONTROL = ("-ci", "127.0.0.1")

prosody = make_prosody_fixture(
    scope="module",
    vhost=DOMAIN,
    components=[ProsodyComponent(COMPONENT, SECRET)],
    users=[ProsodyUser("bob", "bob-pw")],
)


@pytest.fixture
def partition(tmp_path: Path, prosody: Any) -> Iterator[tuple[KamailioServer, CliGateway]]:
    gw_port = free_udp_port()
    with KamailioServer(
        domain=DOMAIN,
        users=[KamailioUser("carol"), KamailioUser("erin")],
        next_hop=("127.0.0.1", gw_port),
        force_active=True,
        workdir=tmp_path / "kamailio",
    ) as kam:
        gw = CliGateway(
            tmp_path / "gw",
            xmpp_port=prosody.component_port,
            component=COMPONENT,
            secret=SECRET,
            sip_proxy=("127.0.0.1", kam.port),
            udp_port=gw_port,
            t1=0.5,
            presence={
                "store_url": f"sqlite:///{tmp_path}/gw/state.db",
                "subscribe_expires": X2S_EXPIRES_S,
                "min_expires": 10,
                "max_expires": 3600,
                "min_notify_interval": 0.2,
                "store_flush_interval": 0.2,
                "restore_spread": 0.5,
            },
            log_level="debug",
        )
        gw.start()
        try:
            yield kam, gw
        finally:
            gw.stop()
    # Kamailio's shutdown write-back of its active watchers succeeds (no db_text ERROR).
    assert kam.log_problems() == [], kam.log_tail()


@pytest.fixture
async def bob(prosody: Any) -> AsyncIterator[PresenceClient]:
    async with PresenceClient(
        "bob@example.test/desk", "bob-pw", "127.0.0.1", prosody.c2s_port
    ) as c:
        yield c


def publish(
    kam: KamailioServer,
    workdir: Path,
    name: str,
    activity: str,
    note: str,
    etag: str | None,
    user: str = "carol",
) -> str:
    """``user``'s phone publishes (with ``etag``: replaces) her PIDF; returns the new ETag."""
    keys = {"domain": DOMAIN, "activity": activity, "note": note, "expires": "3600"}
    if etag is not None:
        keys["etag"] = etag
    with Sipp.uac(
        SCENARIOS / ("publish_rpid.xml" if etag is None else "publish_rpid_modify.xml"),
        f"127.0.0.1:{kam.port}",
        calls=1,
        service=user,
        keys=keys,
        workdir=workdir,
        name=name,
        extra_args=SIPP_LOOPBACK_CONTROL,
    ) as sipp:
        result = sipp.wait(STEP_TIMEOUT_S)
        assert result.ok, result.describe() + "\n" + kam.log_tail()
        [ok] = sipp.messages(200)
    new_etag = ok.header("SIP-ETag")
    assert new_etag
    return new_etag


def note_and_show(n: Notify) -> tuple[str | None, str | None, str | None] | None:
    """(basic, embedded show, note) of the NOTIFY's first tuple; None without a PIDF."""
    if not n.body:
        return None
    doc = ET.fromstring(n.body)
    t = doc.find(f"{PIDF}tuple")
    if t is None:
        return None
    show = t.find(f"{PIDF}status/{JABBER_SHOW}")
    return (
        t.findtext(f"{PIDF}status/{PIDF}basic"),
        show.text if show is not None else None,
        t.findtext(f"{PIDF}note"),
    )


def stored(db: Path) -> set[tuple[str, str]]:
    """(role, state) of every subscription in the gateway's store file."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        return set(conn.execute("SELECT role, state FROM sipxmpp_subscriptions"))


async def until_stored(db: Path) -> None:
    """Wait until both subscriptions are in the store as active (the write-behind ran)."""
    deadline = time.monotonic() + STEP_TIMEOUT_S
    want = {("notifier", "active"), ("subscriber", "active")}
    while not want <= (stored(db) if db.exists() else set()):
        assert time.monotonic() < deadline, f"store holds {stored(db)}"
        await asyncio.sleep(0.05)


def user_of(watcher: SipWatcher) -> str:
    return watcher.aor.split(":", 1)[1].split("@", 1)[0]


async def establish(
    kam: KamailioServer,
    gw: CliGateway,
    bob: PresenceClient,
    dave: SipWatcher,
    tmp_path: Path,
    contact: str,
) -> tuple[str, int]:
    """bob watches ``contact`` (SIP) and ``dave`` (SIP) watches bob, both active with a known
    state; returns the contact's ETag and the index of dave's last NOTIFY. (Each test uses
    its own names: Prosody keeps bob's roster between the tests of this module.)"""
    etag = publish(kam, tmp_path, "pub-away", "away", "Gone for lunch", None, contact)
    carol = f"{contact}@{COMPONENT}"
    bob.presence(carol, "subscribe")
    await bob.wait_presence(from_is(carol, "subscribed"), STEP_TIMEOUT_S)
    await bob.wait_presence(
        lambda p: str(p["from"]).startswith(carol + "/") and p["show"] == "away", STEP_TIMEOUT_S
    )
    bob.broadcast(status="At my desk")
    resp = await dave.subscribe(S2X_EXPIRES_S)
    assert resp.status == 200, resp
    dave_jid = f"{user_of(dave)}@{COMPONENT}"
    await bob.wait_presence(from_is(dave_jid, "subscribe"), STEP_TIMEOUT_S)
    bob.presence(dave_jid, "subscribed")
    i, _ = await dave.wait_notify(
        lambda n: note_and_show(n) == ("open", None, "At my desk"), STEP_TIMEOUT_S
    )
    await until_stored(gw.workdir / "state.db")
    return etag, i


def assert_no_false_offline(bob: PresenceClient, dave: SipWatcher, contact: str) -> None:
    carol = f"{contact}@{COMPONENT}"
    assert not [
        p
        for p in bob.seen
        if str(p["from"]).startswith(carol) and p["type"] in ("unavailable", "unsubscribed")
    ]
    for n in dave.notifies:
        assert n.state != "terminated", n
        shown = note_and_show(n)
        assert shown is None or shown[0] == "open", n


async def kill_and_restart(gw: CliGateway) -> float:
    """SIGKILL, then start again; returns the loop time the new process had its link up."""
    pid = gw.pid
    gw.kill()
    assert gw.proc is not None and gw.proc.returncode == -9, f"{pid} did not die by SIGKILL"
    await asyncio.to_thread(gw.start)
    return asyncio.get_running_loop().time()


async def test_sigkill_then_next_change_reaches_both_watchers_in_their_dialogs(
    partition: tuple[KamailioServer, CliGateway], bob: PresenceClient, tmp_path: Path
) -> None:
    kam, gw = partition
    async with SipWatcher(
        "sip:dave@example.test", "sip:bob@example.test", proxy=("127.0.0.1", kam.port)
    ) as dave:
        etag, i = await establish(kam, gw, bob, dave, tmp_path, "carol")
        before = dave.notifies[i]
        await kill_and_restart(gw)
        loop = asyncio.get_running_loop()
        carol = f"carol@{COMPONENT}"

        # X2S: carol's next change reaches bob within one refresh interval of his
        # subscription, through the restored dialog.
        t0 = loop.time()
        await asyncio.to_thread(publish, kam, tmp_path, "pub-busy", "busy", "In a meeting", etag)
        await bob.wait_presence(
            lambda p: str(p["from"]).startswith(carol + "/") and p["show"] == "dnd",
            X2S_EXPIRES_S,
        )
        x2s_latency = loop.time() - t0

        # S2X: bob's next change reaches dave within one refresh interval of his.
        t0 = loop.time()
        bob.broadcast(show="dnd", status="Do not disturb")
        i, after = await dave.wait_notify(
            lambda n: note_and_show(n) == ("open", "dnd", "Do not disturb"),
            S2X_EXPIRES_S,
            after=i + 1,
        )
        s2x_latency = after.at - t0
        assert x2s_latency < X2S_EXPIRES_S and s2x_latency < S2X_EXPIRES_S
        # The same dialog: dave's NOTIFYs keep climbing in CSeq (RFC 3261 §12.2.1.1; the
        # restored dialog skips ahead) and still cross Kamailio along the recorded route.
        assert after.cseq > before.cseq
        assert after.via[0].startswith(f"SIP/2.0/UDP 127.0.0.1:{kam.port}")

        # A refresh by dave after the restart is answered in the dialog with the current
        # state (RFC 6665 §4.2.1.2), not an empty or closed document.
        assert (await dave.subscribe(S2X_EXPIRES_S)).status == 200
        _, refreshed = await dave.wait_notify(lambda n: True, STEP_TIMEOUT_S, after=i + 1)
        assert note_and_show(refreshed) == ("open", "dnd", "Do not disturb")

        # The restarted gateway refreshed its own subscription in the old dialog.
        await gw.wait_event_async(
            "presence.subscribe.sent", lambda r: r.get("kind") == "refresh", STEP_TIMEOUT_S
        )
        restored = next(gw.events("presence.restored", since_start=True))
        assert restored["subscriptions"] == 2
        assert_no_false_offline(bob, dave, "carol")
        print(f"after SIGKILL: X2S change in {x2s_latency:.3f} s, S2X in {s2x_latency:.3f} s")


async def test_changes_during_the_outage_arrive_after_the_restart(
    partition: tuple[KamailioServer, CliGateway], bob: PresenceClient, tmp_path: Path
) -> None:
    kam, gw = partition
    async with SipWatcher(
        "sip:frank@example.test", "sip:bob@example.test", proxy=("127.0.0.1", kam.port)
    ) as dave:
        etag, i = await establish(kam, gw, bob, dave, tmp_path, "erin")
        carol = f"erin@{COMPONENT}"
        pid = gw.pid
        gw.kill()
        assert gw.proc is not None and gw.proc.returncode == -9, pid
        loop = asyncio.get_running_loop()
        t_down = loop.time()
        # Both states change while nobody is there to translate them.
        await asyncio.to_thread(
            publish, kam, tmp_path, "pub-busy", "busy", "In a meeting", etag, "erin"
        )
        bob.broadcast(show="dnd", status="Heads down")
        await asyncio.to_thread(gw.start)

        await bob.wait_presence(
            lambda p: str(p["from"]).startswith(carol + "/") and p["show"] == "dnd",
            X2S_EXPIRES_S,
        )
        x2s = loop.time() - t_down
        _, n = await dave.wait_notify(
            lambda n: note_and_show(n) == ("open", "dnd", "Heads down"), S2X_EXPIRES_S, after=i
        )
        s2x = n.at - t_down
        assert x2s < X2S_EXPIRES_S and s2x < S2X_EXPIRES_S
        assert_no_false_offline(bob, dave, "erin")
        print(f"changes during the outage: X2S after {x2s:.3f} s, S2X after {s2x:.3f} s")
