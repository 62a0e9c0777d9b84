"""Markers used by the helper self-tests (pyproject.toml registers ``sipp`` and ``prosody``)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "kamailio: needs a real Kamailio with the presence modules (started by the test)"
    )
