"""Accept negotiation (HTTP) and the SIP OPTIONS Accept check."""

from __future__ import annotations

import pytest

from sipxmpp.provisioning.constants import MEDIA_TYPE_JSON, MEDIA_TYPE_XML
from sipxmpp.provisioning.media import (
    MAX_ACCEPT_RANGES,
    MediaRange,
    explicitly_accepts,
    negotiate,
    parse_accept,
)

CASES = [
    pytest.param(None, MEDIA_TYPE_XML, id="no-header"),
    pytest.param("", MEDIA_TYPE_XML, id="empty"),
    pytest.param("*/*", MEDIA_TYPE_XML, id="anything"),
    pytest.param("garbage;;;", MEDIA_TYPE_XML, id="unparseable-is-absent"),
    pytest.param(MEDIA_TYPE_JSON, MEDIA_TYPE_JSON, id="ours-json"),
    pytest.param("application/json", "application/json", id="generic-json"),
    pytest.param("application/xml", "application/xml", id="generic-xml"),
    pytest.param("application/*", MEDIA_TYPE_XML, id="type-wildcard"),
    pytest.param(f"{MEDIA_TYPE_XML};q=0.5, {MEDIA_TYPE_JSON}", MEDIA_TYPE_JSON, id="q-prefers-json"),
    pytest.param(f"{MEDIA_TYPE_XML};q=0, */*", MEDIA_TYPE_JSON, id="xml-excluded"),
    pytest.param("text/html", None, id="nothing-acceptable"),
    pytest.param("application/*;q=0, */*", None, id="all-application-excluded"),
    pytest.param(f"{MEDIA_TYPE_JSON};q=2", MEDIA_TYPE_XML, id="invalid-q-skipped"),
    pytest.param(f"{MEDIA_TYPE_JSON.upper()}", MEDIA_TYPE_JSON, id="case-insensitive"),
    pytest.param(f"{MEDIA_TYPE_JSON};charset=utf-8;q=0.9, text/plain", MEDIA_TYPE_JSON, id="params"),
]  # fmt: skip


@pytest.mark.parametrize(("accept", "chosen"), CASES)
def test_negotiate(accept: str | None, chosen: str | None) -> None:
    assert negotiate(accept) == chosen


def test_parse_accept_bounds_and_shape() -> None:
    assert parse_accept("a/b;q=0.3, */x, c/*") == (
        MediaRange("a", "b", 0.3),
        MediaRange("c", "*", 1.0),
    )
    assert len(parse_accept(", ".join(["a/b"] * 1000))) == MAX_ACCEPT_RANGES
    assert negotiate("a/b", ()) is None


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, False),
        ("application/sdp", False),
        ("*/*", False),
        ("application/*", False),
        (MEDIA_TYPE_XML, True),
        (f"application/sdp, {MEDIA_TYPE_XML}", True),
        (f"{MEDIA_TYPE_XML};q=0", False),
        (f"{MEDIA_TYPE_XML};q=0.1", True),
    ],
)
def test_sip_options_accept_check(accept: str | None, expected: bool) -> None:
    assert explicitly_accepts(accept, MEDIA_TYPE_XML) is expected
