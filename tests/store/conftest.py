"""Fixtures for the state-store tests: every contract test runs on SQLite and PostgreSQL.

The PostgreSQL cases (marked ``postgres``) use one throwaway server for the whole session
(tests/support/postgres.py), with a fresh database per test. They are skipped only when the
server binaries are missing and cannot be installed.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

# tests/ holds the shared helpers (tests/support/postgres.py); this directory holds
# store_helpers.py. Make both importable however pytest was invoked.
_HERE = Path(__file__).resolve().parent
for _path in (str(_HERE.parent), str(_HERE)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from sipxmpp.gateway.store import Store, open_store  # noqa: E402
from support.postgres import PostgresServer, make_postgres_fixture  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "postgres: needs a real PostgreSQL server (started by the test fixture)"
    )


#: One PostgreSQL server for the session; each test gets its own database on it.
postgres_server = make_postgres_fixture(scope="session")

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]

_DB_NAMES = (f"store_test_{n}" for n in itertools.count())


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A URL of an empty database of the current backend."""
    if backend == "sqlite":
        yield f"sqlite://{tmp_path / 'state.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = next(_DB_NAMES)
    url = server.create_database(name)
    yield url
    server.drop_database(name)


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    """An open store on an empty database."""
    async with open_store(db_url) as opened:
        yield opened
