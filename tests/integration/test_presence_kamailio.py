"""Presence end to end with a real SIP presence server: Kamailio + SIPp <-> sipxmpp <-> Prosody.

One domain, ``example.test``, split into two partitions (README "Addressing"):

* the SIP partition is a real Kamailio 5.6 (``presence`` + ``presence_xml``, db_text, on
  loopback, tests/support/kamailio.py). It hosts the SIP user carol: her presence is
  PUBLISHed by SIPp (RFC 3903, PIDF with RPID activities) and served by Kamailio's
  ``handle_subscribe()``. Requests for users it does not host (bob) it record-routes to the
  gateway;
* the XMPP partition is a real Prosody with the XMPP user bob; SIP users appear there under
  the component's domain ``sip.example.test``;
* the gateway runs from its command line (``sipxmpp run --config FILE``), as its own process,
  with ``sip.outbound_proxy`` pointing at Kamailio.

X2S (RFC 8048 §5.2): bob subscribes to ``carol@sip.example.test``; the gateway SUBSCRIBEs at
Kamailio, which accepts (``force_active``) and NOTIFYs; carol's phone (SIPp) publishes
*away* and then *busy* (RPID, RFC 4480), Kamailio NOTIFYs each, and bob sees ``<show>away``
then ``<show>dnd`` with carol's note as ``<status>`` (spec §3.4 policy).

S2X (RFC 8048 §5.3): a SIP watcher, dave (SIPp, through Kamailio), subscribes to bob; bob
approves; bob changes his show/status to away and then dnd; dave's NOTIFYs carry the mapped
PIDF (basic open, the embedded ``<show xmlns='jabber:client'>``, the RPID activity and the
note); bob revokes the authorization and dave's dialog ends with ``terminated;reason=rejected``.
"""

from __future__ import annotations

import asyncio
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from presence_support import PresenceClient, from_is

from support.cli_gateway import CliGateway, free_udp_port
from support.kamailio import KamailioServer, KamailioUser, e2e_marks
from support.prosody import ProsodyComponent, ProsodyUser, make_prosody_fixture
from support.sipp import Sipp, SippMessage

pytestmark = e2e_marks()

SCENARIOS = Path(__file__).resolve().parent / "sipp"
DOMAIN = "example.test"
COMPONENT = "sip.example.test"
SECRET = "kamailio-e2e-secret"

PIDF = "{urn:ietf:params:xml:ns:pidf}"
RPID = "{urn:ietf:params:xml:ns:pidf:rpid}"
DM = "{urn:ietf:params:xml:ns:pidf:data-model}"
JABBER_SHOW = "{jabber:client}show"

#: SIPp 3.6 binds its control socket to 0.0.0.0 unless told otherwise: loopback only.
SIPP_LOOPBACK_CONTROL = ("-ci", "127.0.0.1")

#: Bound on one expected event (a stanza, a NOTIFY, a SIPp run) on a loaded 2-core machine;
#: each normally takes milliseconds.
STEP_TIMEOUT_S = 15.0

prosody = make_prosody_fixture(
    scope="module",
    vhost=DOMAIN,
    components=[ProsodyComponent(COMPONENT, SECRET)],
    users=[ProsodyUser("bob", "bob-pw")],
)


@pytest.fixture
def partition(tmp_path: Path, prosody: Any) -> Iterator[tuple[KamailioServer, CliGateway]]:
    """Kamailio (carol local, everyone else of example.test via the gateway) and the gateway
    (outbound proxy: Kamailio), both started."""
    gw_port = free_udp_port()
    with KamailioServer(
        domain=DOMAIN,
        users=[KamailioUser("carol")],
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
            t1=0.1,
            presence={
                "store_url": f"sqlite:///{tmp_path}/gw/state.db",
                # Each step below waits for its NOTIFY before the next change, so the
                # RFC 3856 §6.10 merge window only has to be short (its own tests are K2's).
                "min_notify_interval": 0.2,
            },
            log_level="debug",
        )
        gw.start()
        try:
            yield kam, gw
        finally:
            assert gw.stop() == 0, gw.log_tail()
    # Kamailio stopped with the gateway's subscriptions and the SIP watchers' still active:
    # its write-back of the active watchers at shutdown must succeed (no db_text ERROR).
    assert kam.log_problems() == [], kam.log_tail()


@pytest.fixture
async def bob(prosody: Any) -> AsyncIterator[PresenceClient]:
    async with PresenceClient(
        "bob@example.test/desk", "bob-pw", "127.0.0.1", prosody.c2s_port
    ) as c:
        yield c


# ----------------------------------------------------------------------------- helpers


def run_sipp(kam: KamailioServer, workdir: Path, scenario: str, name: str, **keys: str) -> Sipp:
    return Sipp.uac(
        SCENARIOS / scenario,
        f"127.0.0.1:{kam.port}",
        calls=1,
        service=keys.pop("service"),
        keys=keys,
        workdir=workdir,
        name=name,
        extra_args=SIPP_LOOPBACK_CONTROL,
    )


def publish(
    kam: KamailioServer, workdir: Path, name: str, *, activity: str, note: str, etag: str | None
) -> str:
    """carol's phone publishes (or, with ``etag``, replaces) her PIDF; returns the new ETag."""
    keys = {"service": "carol", "domain": DOMAIN, "activity": activity, "note": note}
    keys["expires"] = "3600"
    if etag is not None:
        keys["etag"] = etag
    scenario = "publish_rpid.xml" if etag is None else "publish_rpid_modify.xml"
    with run_sipp(kam, workdir, scenario, name, **keys) as sipp:
        result = sipp.wait(STEP_TIMEOUT_S)
        assert result.ok, result.describe() + "\n" + kam.log_tail()
        [ok] = sipp.messages(200)
        new_etag = ok.header("SIP-ETag")
    assert new_etag, "Kamailio's 200 to PUBLISH carries no SIP-ETag"
    return new_etag


async def wait_notify(
    sipp: Sipp, predicate: Callable[[SippMessage], bool], *, after: int = 0
) -> tuple[int, SippMessage]:
    """The first NOTIFY SIPp received (index >= ``after``) that satisfies ``predicate``."""
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while True:
        notifies = sipp.messages("NOTIFY")
        for i in range(after, len(notifies)):
            if predicate(notifies[i]):
                return i, notifies[i]
        if time.monotonic() > deadline:
            states = [n.header("Subscription-State") for n in notifies]
            raise TimeoutError(f"no matching NOTIFY among {len(notifies)}: {states}")
        await asyncio.sleep(0.05)


def pidf_of(notify: SippMessage) -> ET.Element | None:
    if not notify.body or not (notify.header("Content-Type") or "").startswith(
        "application/pidf+xml"
    ):
        return None
    return ET.fromstring(notify.body)


def tuple_show(doc: ET.Element) -> tuple[str | None, str | None, str | None]:
    """(basic, embedded jabber:client show, note) of the document's first tuple."""
    t = doc.find(f"{PIDF}tuple")
    assert t is not None
    show = t.find(f"{PIDF}status/{JABBER_SHOW}")
    return (
        t.findtext(f"{PIDF}status/{PIDF}basic"),
        show.text if show is not None else None,
        t.findtext(f"{PIDF}note"),
    )


def activities(doc: ET.Element) -> set[str]:
    found = doc.find(f"{DM}person/{RPID}activities")
    if found is None:
        return set()
    return {child.tag.removeprefix(RPID) for child in found}


def shows(state: str | None, note: str) -> Callable[[SippMessage], bool]:
    """Predicate: an active NOTIFY whose PIDF says open with ``state`` and ``note``."""

    def ok(n: SippMessage) -> bool:
        doc = pidf_of(n)
        return (
            doc is not None
            and (n.header("Subscription-State") or "").startswith("active")
            and tuple_show(doc) == ("open", state, note)
        )

    return ok


def p_type(p: Any) -> str:
    t = p["type"]
    return "available" if t in ("", "available", "away", "xa", "dnd", "chat") else str(t)


# ----------------------------------------------------------------------------- X2S


async def test_xmpp_user_sees_sip_users_away_and_dnd_published_at_kamailio(
    partition: tuple[KamailioServer, CliGateway], bob: PresenceClient, tmp_path: Path
) -> None:
    kam, gw = partition
    carol = f"carol@{COMPONENT}"
    bob.presence(carol, "subscribe")

    # The gateway SUBSCRIBEd at Kamailio (through the outbound proxy) and Kamailio accepted:
    # the first "active" NOTIFY gives bob `subscribed` (RFC 8048 §5.2.1, point 23).
    await bob.wait_presence(from_is(carol, "subscribed"), STEP_TIMEOUT_S)
    sent = await gw.wait_event_async(
        "presence.subscribe.sent", lambda r: r.get("contact") == "sip:carol@example.test"
    )
    assert sent["kind"] == "new"

    # carol's phone publishes "away" (RPID activity, RFC 4480 §3.2) with a note.
    etag = publish(kam, tmp_path, "pub-away", activity="away", note="Gone for lunch", etag=None)
    away = await bob.wait_presence(
        lambda p: str(p["from"]).startswith(carol + "/") and p["show"] == "away", STEP_TIMEOUT_S
    )
    assert p_type(away) == "available"
    assert away["status"] == "Gone for lunch"

    # ... then replaces it with "busy": bob sees Do Not Disturb (spec §3.4: busy <-> dnd).
    publish(kam, tmp_path, "pub-busy", activity="busy", note="In a meeting", etag=etag)
    dnd = await bob.wait_presence(
        lambda p: str(p["from"]).startswith(carol + "/") and p["show"] == "dnd", STEP_TIMEOUT_S
    )
    assert p_type(dnd) == "available"
    assert dnd["status"] == "In a meeting"
    assert str(dnd["from"]) == str(away["from"])  # the same tuple, the same full JID

    # Nothing told bob carol went offline on the way (basic stayed open).
    assert not [
        p for p in bob.seen if str(p["from"]).startswith(carol) and p["type"] == "unavailable"
    ]
    # Kamailio's NOTIFYs were answered 200 by the gateway and none was refused.
    notify_log = list(gw.events("presence.notify.received"))
    assert len(notify_log) >= 3, notify_log  # the first one, away, busy
    assert not list(gw.events("presence.subscription.failed"))


# ----------------------------------------------------------------------------- S2X


async def test_sip_watcher_via_kamailio_sees_xmpp_users_show_and_status(
    partition: tuple[KamailioServer, CliGateway], bob: PresenceClient, tmp_path: Path
) -> None:
    kam, _gw = partition
    dave = f"dave@{COMPONENT}"
    watcher = run_sipp(
        kam,
        tmp_path,
        "subscribe_watch.xml",
        "watcher",
        service="bob",
        watcher="dave",
        domain=DOMAIN,
        expires="600",
    )
    with watcher:
        # Kamailio relays dave's SUBSCRIBE for bob (not one of its users) to the gateway,
        # which asks bob (RFC 8048 §5.3.1) and meanwhile keeps dave pending.
        await bob.wait_presence(from_is(dave, "subscribe"), STEP_TIMEOUT_S)
        i, first = await wait_notify(watcher, lambda n: True)
        assert (first.header("Subscription-State") or "").startswith("pending")
        assert not first.body  # nothing about bob before he says yes (RFC 8048 §8.2)

        bob.presence(dave, "subscribed")
        # An empty "active" NOTIFY, then bob's current state (available, no show).
        i, _ = await wait_notify(
            watcher,
            lambda n: (n.header("Subscription-State") or "").startswith("active"),
            after=i + 1,
        )
        i, online = await wait_notify(watcher, shows(None, None), after=i)
        doc = pidf_of(online)
        assert doc is not None and doc.get("entity") == "sip:bob@example.test"
        assert doc.find(f"{PIDF}tuple").get("id") == "ID-desk"  # RFC 8048 §6.2 note 2

        bob.broadcast(show="away", status="Out to lunch")
        i, away = await wait_notify(watcher, shows("away", "Out to lunch"), after=i + 1)
        doc = pidf_of(away)
        assert doc is not None and activities(doc) == {"away"}

        bob.broadcast(show="dnd", status="In a meeting")
        i, dnd = await wait_notify(watcher, shows("dnd", "In a meeting"), after=i + 1)
        doc = pidf_of(dnd)
        assert doc is not None and activities(doc) == {"busy"}

        # bob takes the authorization back: the dialog ends (RFC 8048 §5.3.1, point 28).
        bob.presence(dave, "unsubscribed")
        i, last = await wait_notify(
            watcher,
            lambda n: (n.header("Subscription-State") or "").startswith("terminated"),
            after=i + 1,
        )
        assert "reason=rejected" in (last.header("Subscription-State") or "")
        result = await watcher.wait_async(STEP_TIMEOUT_S)
        assert result.ok, result.describe() + "\n" + kam.log_tail()
        notifies = watcher.messages("NOTIFY")

    # Every NOTIFY crossed Kamailio along the route set it recorded (RFC 3261 §16.12), and
    # each one carried a Subscription-State (RFC 6665 §4.2.2, point 63); no 202 was sent.
    for n in notifies:
        assert (n.header("Via") or "").startswith(f"SIP/2.0/UDP 127.0.0.1:{kam.port}")
        state = n.header("Subscription-State") or ""
        assert state.startswith(("active;expires=", "pending;expires=", "terminated"))
    assert not watcher.messages(202)
    # States only go forward: pending, then active, then terminated.
    order = [(n.header("Subscription-State") or "").split(";")[0] for n in notifies]
    assert order == sorted(order, key=["pending", "active", "terminated"].index)
