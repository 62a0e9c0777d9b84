"""The documented command line: `sipxmpp check-config`, `sipxmpp run`, env overrides, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sipxmpp.gateway.settings import load_settings

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "gateway.toml"
SIPXMPP = [sys.executable, "-m", "sipxmpp.gateway"]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SIPXMPP, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_check_config_accepts_the_bundled_example() -> None:
    r = run_cli("check-config", str(EXAMPLE))
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout


def test_check_config_prints_effective_settings_with_env_override() -> None:
    r = run_cli(
        "check-config",
        str(EXAMPLE),
        "--print",
        env={"SIPXMPP_SIP_UDP_PORT": "5999", "SIPXMPP_XMPP_SECRET": "from-env"},
    )
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["sip"]["udp_port"] == 5999
    assert data["xmpp"]["secret"] == "from-env"
    assert data["domains"]["sip"][0] == {"sip": "example.com", "xmpp": "sip.example.com"}


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[xmpp]\nsecret = 's'\n", "xmpp.component_jid"),
        ("[xmpp]\ncomponent_jid = 'c'\nsecret = 's'\n[sip]\nudp_prt = 1\n", "sip.udp_prt"),
        ("[xmpp]\ncomponent_jid = 'c'\nsecret = 's'\n[sip]\nudp_port = 70000\n", "sip.udp_port"),
        ("not toml at all = = =", "not valid TOML"),
    ],
)
def test_check_config_refuses_bad_files_with_exit_2(tmp_path: Path, text: str, needle: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    r = run_cli("check-config", str(cfg))
    assert r.returncode == 2
    assert needle in r.stderr


def test_bad_env_override_is_refused() -> None:
    r = run_cli("check-config", str(EXAMPLE), env={"SIPXMPP_SIP_TCP_PORT": "many"})
    assert r.returncode == 2
    assert "sip.tcp_port" in r.stderr


def test_missing_config_file_is_exit_2(tmp_path: Path) -> None:
    r = run_cli("run", "--config", str(tmp_path / "nope.toml"))
    assert r.returncode == 2
    assert "cannot read" in r.stderr


def test_every_settings_key_is_documented_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    settings = load_settings(EXAMPLE)
    for section, model in (
        ("sip", settings.sip),
        ("sip.tls", settings.sip.tls),
        ("xmpp", settings.xmpp),
        ("im", settings.im),
        ("log", settings.log),
    ):
        for key in type(model).model_fields:
            if section == "sip" and key == "tls":
                continue
            assert f"`{key}`" in readme, f"{section}.{key} is not documented in README.md"


def test_run_serves_sip_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """`sipxmpp run` with the example config (ports moved), answers OPTIONS, exits 0 on SIGTERM.

    No XMPP server listens on the configured port, so the component keeps retrying in the
    background: SIP is served regardless, and shutdown must not wait for the XMPP link.
    """
    port = free_port()
    env = {
        "SIPXMPP_SIP_UDP_PORT": str(port),
        "SIPXMPP_SIP_TCP_PORT": "0",
        "SIPXMPP_XMPP_SERVER_PORT": "1",
        "SIPXMPP_LOG_FORMAT": "json",
    }
    proc = subprocess.Popen(
        [*SIPXMPP, "run", "--config", str(EXAMPLE)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.5)
        me = sock.getsockname()[1]
        options = (
            "OPTIONS sip:sip.example.com SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKcli1;rport\r\n"
            "From: <sip:alice@example.com>;tag=c1\r\nTo: <sip:sip.example.com>\r\n"
            "Call-ID: cli-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        answer = b""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not answer:
            sock.sendto(options, ("127.0.0.1", port))
            try:
                answer = sock.recv(65535)
            except TimeoutError:
                continue
        sock.close()
        assert answer.startswith(b"SIP/2.0 200 OK"), answer[:100]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    events = [json.loads(line)["event"] for line in err.splitlines() if line.startswith("{")]
    assert "gateway.sip.listening" in events
    assert events[-1] == "gateway.stopped"
