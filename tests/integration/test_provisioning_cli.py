"""The provisioning parts of the command line: check-config and query-peer (no Prosody).

``sipxmpp query-peer`` runs as a subprocess against a gateway running in this test's event
loop (plain HTTP and SIP over UDP: the mutual-TLS and XMPP variants are in
``test_provisioning_e2e.py``).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sipxmpp.gateway.runtime.app import Gateway
from sipxmpp.provisioning import to_xml
from support.prosody import free_tcp_port
from support.provisioning_gw import document, gateway_settings, write_policy

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "provisioning-policy.toml"
PEER = "b.test"


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sipxmpp.gateway",
        *args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_check_config_accepts_the_provisioning_example() -> None:
    code, out, err = await run_cli(
        "check-config", str(EXAMPLE), "--print", env={"SIPXMPP_PROVISIONING_FETCH": "all"}
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["provisioning"]["fetch"] == "all"
    assert data["provisioning"]["policy"].endswith("examples/provisioning/policy.json")
    assert [p["domain"] for p in data["provisioning"]["peers"]] == [
        "partner-a.example",
        "partner-b.example",
    ]


@pytest.mark.parametrize(
    ("provisioning", "needle"),
    [
        ('document = "doc.xml"\n', "doc.xml: dtd-forbidden"),
        ('policy = "missing.json"\n', "missing.json: cannot read"),
        ('policy = "p.json"\ndocument = "doc.xml"\n', "do not combine"),
        ("http_port = 8080\n", "need a policy or a document"),
        ('fetch = "sometimes"\n', "provisioning.fetch"),
        (
            '[[provisioning.peers]]\ndomain = "x.test"\nsip = ["smoke:1.2.3.4:5"]\n',
            "transport:host:port",
        ),
    ],
)
async def test_check_config_refuses_bad_provisioning(
    tmp_path: Path, provisioning: str, needle: str
) -> None:
    (tmp_path / "doc.xml").write_bytes(
        b'<!DOCTYPE x [<!ENTITY e "e">]>' + to_xml(document("a.test")).split(b"?>", 1)[1]
    )
    cfg = tmp_path / "gw.toml"
    header = "[provisioning]\n" if not provisioning.startswith("[[") else ""
    cfg.write_text("[xmpp]\ncomponent_jid = 'sip.a.test'\nsecret = 's'\n" + header + provisioning)
    code, _, err = await run_cli("check-config", str(cfg))
    assert code == 2, err
    assert needle in err


@pytest.fixture
async def peer(tmp_path: Path) -> AsyncIterator[Gateway]:
    policy = tmp_path / "b.json"
    write_policy(policy, document(PEER, tls_only=True))
    settings = gateway_settings(
        domain=PEER, component=f"sip.{PEER}", xmpp_port=free_tcp_port(), policy=policy
    )
    async with Gateway(settings) as gw:
        yield gw


async def test_query_peer_over_http_and_sip(peer: Gateway) -> None:
    assert peer.provisioning.http is not None
    target = ["--sip-target", f"udp:127.0.0.1:{peer.sip_addresses['udp'][1]}"]
    http = ["--http-url", peer.provisioning.http.base_url]
    code, out, err = await run_cli("query-peer", PEER, "--via", "sip", *target, "--json")
    assert code == 0, out + err
    data = json.loads(out)
    assert data["channels"]["sip"]["document"]["connectivity"]["tls-only"] is True
    assert data["exit-status"] == 0
    code, out, _ = await run_cli("query-peer", PEER, "--via", "http", *http)
    assert code == 0, out
    assert "3  tls-only" in out and "yes" in out
    # Both channels, as a table: they agree.
    code, out, _ = await run_cli(
        "query-peer", PEER, "--via", "all", *target, *http, "--timeout", "3"
    )
    # No XMPP account configured: that channel fails (exit 4), the other two agree.
    assert code == 4, out
    assert "The 2 channels agree." in out and "No document over: xmpp." in out
    assert "no XMPP account configured" in out
    # After a change the channels still agree with each other, on the new values.
    assert peer.provisioning.update(
        type(peer.provisioning.publisher.policy)(public=document(PEER))  # type: ignore[union-attr]
    )
    code, out, _ = await run_cli("query-peer", PEER, "--via", "http", *http, "--json")
    assert code == 0
    assert json.loads(out)["channels"]["http"]["document"]["connectivity"]["tls-only"] is False


async def test_query_peer_usage_errors() -> None:
    code, _, err = await run_cli("query-peer", "bad domain")
    assert code == 2 and "is not a domain" in err
    code, _, err = await run_cli("query-peer", PEER, "--timeout", "0")
    assert code == 2 and "--timeout" in err
    code, _, err = await run_cli("query-peer", PEER, "--http-url", "ftp://x")
    assert code == 2 and "bad override" in err
