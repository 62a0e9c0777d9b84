"""Fixtures for the transport edge tests: throwaway PKIs and helpers on 127.0.0.1."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# tests/ holds shared helpers (tests/support/certs.py); make it importable however pytest
# was invoked (rootdir conftest or not).
_TESTS_DIR = str(Path(__file__).resolve().parent.parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from support.certs import CertFiles, TestPki, openssl_available  # noqa: E402


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    if not openssl_available():
        pytest.skip("the openssl command line tool is not installed")
    return TestPki.create(tmp_path_factory.mktemp("pki") / "ca", name="sipxmpp test CA")


@pytest.fixture(scope="session")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    """A second, unrelated CA: its certificates must be refused."""
    if not openssl_available():
        pytest.skip("the openssl command line tool is not installed")
    return TestPki.create(tmp_path_factory.mktemp("pki-other") / "ca", name="untrusted test CA")


@pytest.fixture(scope="session")
def gw_cert(pki: TestPki) -> CertFiles:
    """The gateway's certificate: SIP domain gw.example.test (SAN URI and dNSName)."""
    return pki.issue("gw", uris=["sip:gw.example.test"], dns=["gw.example.test"])


@pytest.fixture(scope="session")
def peer_cert(pki: TestPki) -> CertFiles:
    """A federated peer's certificate: SIP domain peer.example.test."""
    return pki.issue("peer", uris=["sip:peer.example.test"], dns=["sip1.peer.example.test"])


@pytest.fixture(scope="session")
def rogue_cert(other_pki: TestPki) -> CertFiles:
    """Claims peer.example.test, but from a CA nobody trusts."""
    return other_pki.issue("rogue", uris=["sip:peer.example.test"], dns=["peer.example.test"])
