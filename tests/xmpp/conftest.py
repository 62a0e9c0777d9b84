"""Fixtures for the XMPP edge tests: a real Prosody (tests marked ``prosody``)."""

from __future__ import annotations

import sys
from pathlib import Path

# tests/ holds the shared helpers (tests/support/prosody.py, xmpp_client.py); make them
# importable however pytest was invoked.
_TESTS_DIR = str(Path(__file__).resolve().parent.parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from xmpp_harness import COMPONENT, PROSODY_SECRET  # noqa: E402

from support.prosody import ProsodyComponent, ProsodyUser, make_prosody_fixture  # noqa: E402

_SERVER = {
    "vhost": "example.test",
    "components": [ProsodyComponent(COMPONENT, PROSODY_SECRET)],
    "users": [ProsodyUser("alice", "alice-pw"), ProsodyUser("carol", "carol-pw")],
}

#: One Prosody shared by a test module: users alice and carol, component sip.example.test.
prosody = make_prosody_fixture(scope="module", **_SERVER)

#: A Prosody for one test alone (for tests that stop or restart it).
own_prosody = make_prosody_fixture(scope="function", **_SERVER)
