"""Kamailio as the SIP partition's presence server and proxy, driven by SIPp."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from support.kamailio import (
    KamailioServer,
    KamailioUser,
    kamailio_available,
    make_kamailio_fixture,
    sip_options,
)
from support.sipp import EXAMPLES_DIR, Sipp, SippMessage, sipp_available

pytestmark = [
    pytest.mark.kamailio,
    pytest.mark.sipp,
    pytest.mark.skipif(not sipp_available(), reason="sipp is not installed (sip-tester)"),
    pytest.mark.skipif(
        not kamailio_available(),
        reason="kamailio is not installed (kamailio, kamailio-presence-modules)",
    ),
]

HERE = Path(__file__).resolve().parent
DOMAIN = "example.test"
PIDF_NS = "{urn:ietf:params:xml:ns:pidf}"
NOTE = "At lunch, back at two"

kamailio = make_kamailio_fixture(scope="module", users=[KamailioUser("carol")])

#: Bound for one SIPp run against Kamailio (a few messages on loopback).
RUN_TIMEOUT_S = 15.0


def assert_clean_log(kam: KamailioServer) -> None:
    """Neither the configuration nor the traffic made Kamailio log a warning or an error."""
    bad = [line for line in kam.log_text().splitlines() if "ERROR" in line or "WARNING" in line]
    assert not bad, "\n".join(bad)


def publish(kam: KamailioServer, workdir: Path, *, note: str = NOTE, basic: str = "open") -> None:
    with Sipp.uac(
        HERE / "publish_pidf.xml",
        f"127.0.0.1:{kam.port}",
        calls=1,
        service="carol",
        keys={"domain": DOMAIN, "note": note, "basic": basic},
        workdir=workdir,
        name="publish",
    ) as pub:
        result = pub.wait(RUN_TIMEOUT_S)
        assert result.ok, result.describe() + "\n" + kam.log_tail()
        [ok] = pub.messages(200)
        assert ok.header("SIP-ETag")


def subscribe(kam: KamailioServer, workdir: Path) -> list[SippMessage]:
    """SUBSCRIBE, first NOTIFY, unsubscribe, final NOTIFY; returns the two NOTIFYs."""
    with Sipp.uac(
        HERE / "subscribe_presence.xml",
        f"127.0.0.1:{kam.port}",
        calls=1,
        service="carol",
        keys={"domain": DOMAIN, "watcher": "dave"},
        workdir=workdir,
        name="subscribe",
    ) as sub:
        result = sub.wait(RUN_TIMEOUT_S)
        assert result.ok, result.describe() + "\n" + kam.log_tail()
        return sub.messages("NOTIFY")


def test_notify_carries_the_published_pidf(tmp_path: Path) -> None:
    with KamailioServer(users=[KamailioUser("carol")], workdir=tmp_path / "kam") as kam:
        assert kam.running and sip_options(kam.port) == 200
        publish(kam, tmp_path)
        first, last = subscribe(kam, tmp_path)
        assert first.header("Event") == "presence"
        assert first.header("Subscription-State", "").startswith("active")
        assert first.header("Content-Type") == "application/pidf+xml"
        assert first.header("From", "").startswith("<sip:carol@example.test>")
        pidf = ET.fromstring(first.body)
        assert pidf.tag == f"{PIDF_NS}presence"
        assert pidf.get("entity") == "sip:carol@example.test"
        assert pidf.findtext(f"{PIDF_NS}tuple/{PIDF_NS}status/{PIDF_NS}basic") == "open"
        assert pidf.findtext(f"{PIDF_NS}tuple/{PIDF_NS}note") == NOTE
        assert last.header("Subscription-State", "").startswith("terminated")
        assert_clean_log(kam)
    assert not kam.running


def test_without_force_active_the_watcher_stays_pending(tmp_path: Path) -> None:
    with KamailioServer(
        users=[KamailioUser("carol")], force_active=False, workdir=tmp_path / "kam"
    ) as kam:
        publish(kam, tmp_path)
        first, _ = subscribe(kam, tmp_path)
        assert first.header("Subscription-State", "").startswith("pending")
        assert NOTE.encode() not in first.body


def test_routing_to_local_users_the_next_hop_and_nowhere(tmp_path: Path) -> None:
    """Local user with a contact, non-local user, foreign domain, unknown domain, no contact."""
    gateway = Sipp.uas(EXAMPLES_DIR / "message_uas.xml", calls=2, workdir=tmp_path, name="gw")
    alice = Sipp.uas(EXAMPLES_DIR / "message_uas.xml", calls=1, workdir=tmp_path, name="alice")
    with (
        gateway,
        alice,
        KamailioServer(
            users=[KamailioUser("alice", contact=(alice.host, alice.port)), KamailioUser("carol")],
            next_hop=(gateway.host, gateway.port),
            foreign_domains=["xmpp.example.test"],
            workdir=tmp_path / "kam",
        ) as kam,
    ):

        def send(user: str, domain: str, tag: str) -> Sipp:
            uac = Sipp.uac(
                EXAMPLES_DIR / "message_uac.xml",
                f"127.0.0.1:{kam.port}",
                calls=1,
                service=user,
                keys={"from": "dave", "domain": domain, "text": tag},
                workdir=tmp_path,
                name=f"to-{user}",
            )
            uac.start()
            uac.wait(RUN_TIMEOUT_S)
            return uac

        results = {}
        for user, domain, tag in [
            ("bob", DOMAIN, "non-local"),
            ("juliet", "xmpp.example.test", "foreign"),
            ("alice", DOMAIN, "local"),
            ("zed", "elsewhere.test", "unknown-domain"),
        ]:
            uac = send(user, domain, tag)
            results[tag] = uac
            assert uac.result is not None

        assert results["non-local"].result.ok, results["non-local"].result.describe()
        assert results["foreign"].result.ok, results["foreign"].result.describe()
        assert results["local"].result.ok, results["local"].result.describe()
        unknown = results["unknown-domain"]
        assert unknown.result.failed == 1
        assert [m.status for m in unknown.messages(404)] == [404]

        assert gateway.wait(RUN_TIMEOUT_S).successful == 2
        to_gateway = gateway.messages("MESSAGE")
        assert [m.start_line for m in to_gateway] == [
            "MESSAGE sip:bob@example.test SIP/2.0",
            "MESSAGE sip:juliet@xmpp.example.test SIP/2.0",
        ]
        assert [m.body for m in to_gateway] == [b"non-local #1\r\n", b"foreign #1\r\n"]
        for message in to_gateway:
            record_route = message.header("Record-Route", "")
            assert f"127.0.0.1:{kam.port}" in record_route and ";lr" in record_route
            assert message.header("Via", "").startswith(f"SIP/2.0/UDP 127.0.0.1:{kam.port}")
        assert alice.wait(RUN_TIMEOUT_S).successful == 1
        [to_alice] = alice.messages("MESSAGE")
        assert to_alice.body == b"local #1\r\n"
        assert to_alice.header("Record-Route")

        # A local user without a contact is unreachable; the server itself answers OPTIONS.
        assert sip_options(kam.port, user="carol") == 480
        assert sip_options(kam.port) == 200
        assert_clean_log(kam)


def test_configuration_refusals() -> None:
    with pytest.raises(ValueError):
        KamailioServer(domain="bad domain")
    with pytest.raises(ValueError):
        KamailioServer(foreign_domains=["xmpp.example.test"])  # no next hop
    with pytest.raises(ValueError):
        KamailioServer(next_hop=("192.0.2.1", 5060))
    with pytest.raises(ValueError):
        KamailioUser('bob"; exit; "')
    with pytest.raises(ValueError):
        KamailioUser("bob", contact=("10.0.0.1", 5060))


def test_fixture_factory(kamailio: KamailioServer) -> None:
    assert kamailio.running and kamailio.domain == DOMAIN
    assert kamailio.uri == f"sip:127.0.0.1:{kamailio.port}"
    assert kamailio.aor("carol") == "sip:carol@example.test"
    assert sip_options(kamailio.port) == 200
    assert sip_options(kamailio.port, user="carol") == 480
    assert (kamailio.db_path / "presentity").exists()
    assert kamailio.config_path.read_text(encoding="utf-8").startswith("#!KAMAILIO")
