"""Two sipxmpp gateways on loopback, each with its own Prosody, query each other (issue 4).

Network A (``a.test``, component ``sip.a.test``) and network B (``b.test``, component
``sip.b.test``) each run a gateway with SIP over mutual TLS, the provisioning HTTPS server
and a Prosody. They query each other over all three channels, SIP OPTIONS and HTTPS with
their certificates, and XMPP with a client account of their own domain. Without s2s between
the two loopback Prosodys, each Prosody also hosts the other network's domain for that
account, so the disco#info query comes from the right domain, as it would over s2s.

What must hold (the issue's "done when"): every channel returns the same document; a peer
with a different certificate (network C) gets its own view; a change on one side is seen
by the other with a new ETag and a new caps ``ver``; the command line says the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sipxmpp.gateway.runtime.app import Gateway
from sipxmpp.gateway.runtime.provisioning_query import (
    EXIT_OK,
    PeerQueryTool,
    QueryConfig,
    render_table,
)
from sipxmpp.gateway.settings import Settings
from sipxmpp.provisioning import Channel, ImMode, PeerView, ProvisioningPolicy
from support.certs import CertFiles, TestPki, openssl_available
from support.prosody import (
    PROSODYCTL_TIMEOUT_S,
    ProsodyComponent,
    ProsodyServer,
    prosody_available,
)
from support.provisioning_gw import document, gateway_settings, write_policy

pytestmark = pytest.mark.prosody

PROBE_PASSWORD = "probe-pw"

A_PUBLIC = document("a.test")
A_FOR_C = document("a.test", im_modes=(ImMode.PAGE, ImMode.SESSION), n_way_chat=True)
B_PUBLIC = document("b.test", tls_only=True)
B_FOR_A = document("b.test", tls_only=True, list_subscription=True, im_modes=(ImMode.PAGE,))


@dataclass
class Network:
    domain: str
    component: str
    secret: str
    prosody: ProsodyServer
    cert: CertFiles


def _prosody(
    workdir: Path, domain: str, component: str, secret: str, foreign: str
) -> ProsodyServer:
    """A Prosody for ``domain`` that also hosts ``probe@<foreign>`` (see the module docstring)."""
    server = ProsodyServer(
        vhost=domain,
        components=[ProsodyComponent(component, secret)],
        workdir=workdir,
        extra_global_config=f'VirtualHost "{foreign}"',
    )
    subprocess.run(
        [
            "prosodyctl",
            "--config",
            str(server.config_path),
            "register",
            "probe",
            foreign,
            PROBE_PASSWORD,
        ],
        cwd=server.workdir,
        capture_output=True,
        timeout=PROSODYCTL_TIMEOUT_S,
        check=True,
    )
    server.start()
    return server


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    if not openssl_available():
        pytest.skip("the openssl command line tool is not installed")
    return TestPki.create(tmp_path_factory.mktemp("e2e-pki") / "ca")


@pytest.fixture(scope="module")
def networks(
    tmp_path_factory: pytest.TempPathFactory, pki: TestPki
) -> Iterator[dict[str, Network]]:
    if not prosody_available():
        pytest.skip("prosody is not installed (apt-get install prosody)")
    started: list[ProsodyServer] = []
    try:
        out: dict[str, Network] = {}
        for name, other in (("a", "b"), ("b", "a")):
            domain, component = f"{name}.test", f"sip.{name}.test"
            server = _prosody(
                tmp_path_factory.mktemp(f"prosody-{name}"),
                domain,
                component,
                f"{name}-secret",
                f"{other}.test",
            )
            started.append(server)
            cert = pki.issue(name, uris=[f"sip:{domain}"], dns=[domain])
            out[name] = Network(domain, component, f"{name}-secret", server, cert)
        yield out
    finally:
        for server in started:
            server.cleanup()


@pytest.fixture(scope="module")
def c_cert(pki: TestPki) -> CertFiles:
    return pki.issue("c", uris=["sip:c.test"], dns=["c.test"])


def _settings(net: Network, policy: Path) -> Settings:
    return gateway_settings(
        domain=net.domain,
        component=net.component,
        secret=net.secret,
        xmpp_port=net.prosody.component_port,
        cert=net.cert,
        policy=policy,
    )


@pytest.fixture
async def gateways(
    networks: dict[str, Network], tmp_path: Path
) -> AsyncIterator[dict[str, Gateway]]:
    policy_a = tmp_path / "a-policy.json"
    write_policy(policy_a, A_PUBLIC, [("partners", ["c.test"], A_FOR_C)])
    policy_b = tmp_path / "b-policy.json"
    write_policy(policy_b, B_PUBLIC, [("network-a", ["a.test"], B_FOR_A)])
    async with contextlib.AsyncExitStack() as stack:
        gws = {
            "a": await stack.enter_async_context(Gateway(_settings(networks["a"], policy_a))),
            "b": await stack.enter_async_context(Gateway(_settings(networks["b"], policy_b))),
        }
        for gw in gws.values():
            assert await gw.xmpp.wait_up(10.0)
        yield gws


def _peer_entry(gw: Gateway, net: Network) -> dict[str, Any]:
    """How the other network reaches ``gw``: static SIP and HTTPS targets, XMPP JID."""
    assert gw.provisioning.https is not None
    return {
        "domain": net.domain,
        "sip": [f"tls:127.0.0.1:{gw.sip_addresses['tls'][1]}"],
        "http": gw.provisioning.https.base_url,
        "xmpp": net.component,
    }


def _query_settings(me: Network, my_gw: Gateway, peer: Network, peer_gw: Gateway) -> Settings:
    """``me``'s settings plus the peer entry and the XMPP probe account (on the peer's Prosody)."""
    data = my_gw.settings.model_dump(mode="json")
    data["provisioning"]["peers"] = [_peer_entry(peer_gw, peer)]
    data["provisioning"]["query"] = {
        "xmpp_jid": f"probe@{me.domain}",
        "xmpp_password": PROBE_PASSWORD,
        "xmpp_server": f"127.0.0.1:{peer.prosody.c2s_port}",
        "xmpp_encryption": "none",
    }
    return Settings.model_validate(data)


async def _query(settings: Settings, domain: str, vias: list[Channel] | None = None) -> Any:
    async with PeerQueryTool(QueryConfig.from_settings(settings, timeout=10.0)) as tool:
        return await tool.query(domain, vias or list(Channel))


async def test_two_gateways_query_each_other_over_all_channels(
    networks: dict[str, Network], gateways: dict[str, Gateway], c_cert: CertFiles
) -> None:
    a, b = networks["a"], networks["b"]
    a_asks = _query_settings(a, gateways["a"], b, gateways["b"])
    b_asks = _query_settings(b, gateways["b"], a, gateways["a"])

    # A asks B: all three channels give B's view for network A, identical.
    report = await _query(a_asks, "b.test")
    print(render_table(report))
    assert report.exit_status == EXIT_OK, render_table(report)
    by = {r.channel: r for r in report.results}
    assert all(r.document == B_FOR_A for r in report.results)
    assert by[Channel.XMPP].caps_status == "verified" and by[Channel.XMPP].caps_ver
    assert by[Channel.HTTP].etag is not None
    first_etag, first_ver = by[Channel.HTTP].etag, by[Channel.XMPP].caps_ver

    # B asks A: A has no view for B, so B sees A's public document everywhere.
    report = await _query(b_asks, "a.test")
    assert report.exit_status == EXIT_OK, render_table(report)
    assert all(r.document == A_PUBLIC for r in report.results)

    # C (another certificate) asks A over SIP and HTTPS: its own view.
    c_data = b_asks.model_dump(mode="json")
    c_data["sip"]["tls"].update(certificate=str(c_cert.cert), private_key=str(c_cert.key))
    c_asks = Settings.model_validate(c_data)
    report = await _query(c_asks, "a.test", [Channel.SIP, Channel.HTTP])
    assert report.exit_status == EXIT_OK, render_table(report)
    assert all(r.document == A_FOR_C for r in report.results)

    # B changes: A sees a new ETag over HTTP and a new caps ver over XMPP.
    changed = document(
        "b.test", tls_only=True, list_subscription=True, im_modes=(ImMode.PAGE, ImMode.SESSION)
    )
    assert gateways["b"].provisioning.update(
        ProvisioningPolicy(
            public=B_PUBLIC,
            views=(PeerView(name="network-a", peers=("a.test",), document=changed),),
        )
    )
    report = await _query(a_asks, "b.test")
    assert report.exit_status == EXIT_OK, render_table(report)
    by = {r.channel: r for r in report.results}
    assert all(r.document == changed for r in report.results)
    assert by[Channel.HTTP].etag not in (None, first_etag)
    assert by[Channel.XMPP].caps_ver not in (None, first_ver)
    assert by[Channel.XMPP].caps_status == "verified"


async def test_query_peer_command_line_reports_agreement_and_disagreement(
    networks: dict[str, Network], gateways: dict[str, Gateway], tmp_path: Path
) -> None:
    a, b = networks["a"], networks["b"]
    settings = _query_settings(a, gateways["a"], b, gateways["b"])
    config = tmp_path / "a.toml"
    config.write_text(_toml(settings.model_dump(mode="json", exclude_none=True)))

    async def cli(*args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sipxmpp.gateway",
            "query-peer",
            *args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        out, err = await asyncio.wait_for(proc.communicate(), 90)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    code, out, err = await cli("b.test", "--json", "--config", str(config))
    assert code == 0, out + err
    data = json.loads(out)
    assert data["agree"] is True and data["differences"] == []
    assert set(data["channels"]) == {"sip", "http", "xmpp"}
    assert all(ch["ok"] for ch in data["channels"].values())
    assert data["channels"]["xmpp"]["caps-status"] == "verified"

    # HTTP only, as a table.
    code, out, _ = await cli("b.test", "--via", "http", "--config", str(config))
    assert code == 0 and "tls-only" in out and "b.test" in out

    # Plain HTTP identifies nobody, so it gets B's public view, while SIP over mutual TLS
    # gets the view for network A: the channels disagree (exit 3), and the table says where.
    assert gateways["b"].provisioning.http is not None
    code, out, _ = await cli(
        "b.test",
        "--via",
        "all",
        "--config",
        str(config),
        "--http-url",
        gateways["b"].provisioning.http.base_url,
    )
    assert code == 3, out
    assert "list-subscription *" in out and "disagree on: list-subscription" in out

    # A SIP target whose certificate does not prove b.test (RFC 5922 §7.3): exit 4.
    code, out, _ = await cli(
        "b.test",
        "--via",
        "sip",
        "--config",
        str(config),
        "--sip-target",
        f"tls:127.0.0.1:{gateways['a'].sip_addresses['tls'][1]}",
    )
    assert code == 4 and "FAILED (unreachable)" in out

    # Usage errors: exit 2.
    code, _, err = await cli("not a domain!", "--config", str(config))
    assert code == 2 and "not a domain" in err


def _toml(data: dict[str, Any], prefix: str = "") -> str:
    """A tiny TOML writer for the settings dump (tables, arrays of tables, scalars)."""
    lines: list[str] = []
    tables: list[tuple[str, dict[str, Any]]] = []
    arrays: list[tuple[str, list[dict[str, Any]]]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((key, value))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            arrays.append((key, value))
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    out = "\n".join(lines) + ("\n" if lines else "")
    for key, table in tables:
        name = f"{prefix}{key}"
        out += f"\n[{name}]\n" + _toml(table, name + ".")
    for key, items in arrays:
        for item in items:
            out += f"\n[[{prefix}{key}]]\n" + _toml(item, f"{prefix}{key}.")
    return out
