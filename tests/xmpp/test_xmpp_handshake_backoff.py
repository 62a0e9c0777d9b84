"""XEP-0114 handshake digest, reconnection backoff and edge configuration."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipxmpp.gateway.xmpp import XmppEdgeConfig, backoff_delay, handshake_digest
from sipxmpp.gateway.xmpp.config import parent_domain


def test_handshake_vector_from_xep_0114() -> None:
    # Conformance point 74 (XEP-0114 §3 example).
    assert handshake_digest("3BF96D32", "test") == "aaee83c26aeeafcbabeabfcbcd50df997e0a2a1e"


@pytest.mark.parametrize(
    ("stream_id", "secret"),
    [("", "x"), ("abc", ""), ("ünï", "sécret"), ("3BF96D32", "test")],
)
def test_handshake_is_lowercase_hex_sha1_of_utf8(stream_id: str, secret: str) -> None:
    digest = handshake_digest(stream_id, secret)
    assert digest == hashlib.sha1((stream_id + secret).encode("utf-8")).hexdigest()
    assert digest == digest.lower() and len(digest) == 40


@pytest.mark.parametrize(
    ("attempt", "rand", "expected"),
    [
        (0, 0.0, 0.5),  # base 1.0, lower half-bound
        (0, 0.5, 0.75),
        (1, 0.0, 1.0),  # base 2.0
        (2, 0.0, 2.0),  # base 4.0
        (5, 0.0, 16.0),  # base 32.0
        (6, 0.0, 30.0),  # base capped at 60.0
        (10_000, 0.0, 30.0),  # no overflow for absurd attempt counts
    ],
)
def test_backoff_table(attempt: int, rand: float, expected: float) -> None:
    assert backoff_delay(attempt, 1.0, 60.0, rand) == pytest.approx(expected)


@settings(max_examples=300, deadline=None)
@given(
    attempt=st.integers(min_value=0, max_value=10_000),
    minimum=st.floats(min_value=0.001, max_value=100.0),
    spread=st.floats(min_value=1.0, max_value=100.0),
    rand=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_backoff_bounds(attempt: int, minimum: float, spread: float, rand: float) -> None:
    maximum = minimum * spread
    delay = backoff_delay(attempt, minimum, maximum, rand)
    assert minimum / 2 <= delay * (1 + 1e-9)
    assert delay <= maximum * (1 + 1e-9)
    # Monotone in the attempt count for a fixed draw.
    assert backoff_delay(attempt + 1, minimum, maximum, rand) >= delay * (1 - 1e-9)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((-1, 1.0, 2.0, 0.0), "attempt"),
        ((0, 1.0, 2.0, 1.0), "rand"),
        ((0, 0.0, 2.0, 0.1), "minimum"),
        ((0, 3.0, 2.0, 0.1), "minimum"),
    ],
)
def test_backoff_rejects_bad_arguments(args: tuple[int, float, float, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        backoff_delay(*args)


def _config(**kw: object) -> XmppEdgeConfig:
    base: dict[str, object] = {
        "component_jid": "sip.example.com",
        "secret": "s",
        "host": "127.0.0.1",
        "port": 5347,
    }
    base.update(kw)
    return XmppEdgeConfig(**base)  # type: ignore[arg-type]


def test_config_defaults_and_ping_target() -> None:
    cfg = _config()
    assert (cfg.reconnect_min, cfg.reconnect_max) == (1.0, 60.0)
    assert (cfg.keepalive_interval, cfg.keepalive_timeout) == (60.0, 10.0)
    assert cfg.identity_name == "SIP gateway"
    assert cfg.effective_ping_target == "example.com"
    assert _config(ping_target="xmpp.example.com").effective_ping_target == "xmpp.example.com"
    assert parent_domain("localhost") == "localhost"


@pytest.mark.parametrize(
    "kw",
    [
        {"component_jid": "user@sip.example.com"},
        {"component_jid": "sip.example.com/res"},
        {"component_jid": ""},
        {"component_jid": "a'b"},
        {"secret": ""},
        {"host": ""},
        {"port": 0},
        {"port": 70000},
        {"reconnect_min": 0.0},
        {"reconnect_min": 5.0, "reconnect_max": 1.0},
        {"keepalive_interval": 0.0},
        {"keepalive_timeout": -1.0},
        {"handshake_timeout": 0.0},
        {"ping_target": ""},
    ],
)
def test_config_refuses(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        _config(**kw)
