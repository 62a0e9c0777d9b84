"""A throwaway PostgreSQL server for tests, benchmarks and scripts, on 127.0.0.1 only.

:class:`PostgresServer` runs ``initdb`` into a fresh temporary directory, starts the server with
``pg_ctl start`` listening on ``127.0.0.1`` and a free port (its Unix socket inside the same
directory, never the system one), trusts every connection (the cluster holds test data only and
listens on loopback only), and stops it with ``pg_ctl stop -m fast``. Nothing is written outside
that directory, and the system-wide cluster of the Debian package is never touched.

initdb and the server refuse to run as root. When this process is root, every server-side
command runs as the ``postgres`` system user (created by the Debian package) through
``runuser``, and the directory is handed to that user; otherwise they run as the current user.

The binaries come from Debian's ``postgresql`` package (``/usr/lib/postgresql/<major>/bin``).
:func:`ensure_postgres_installed` installs that package with apt-get when it is missing and this
process may do so (root), then stops and disables the cluster the package creates and starts.

Only the standard library is used, so a plain script can import this file. Example::

    with PostgresServer() as pg:
        dsn = pg.create_database("gateway")   # postgresql://postgres@127.0.0.1:PORT/gateway

As a pytest fixture factory (the fixture skips only when the binaries are missing and cannot be
installed)::

    postgres = make_postgres_fixture(scope="session")

From a shell (prints the DSN, runs until Ctrl-C)::

    python tests/support/postgres.py --database gateway
"""

from __future__ import annotations

import argparse
import atexit
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "LOOPBACK",
    "PostgresError",
    "PostgresServer",
    "ensure_postgres_installed",
    "find_postgres_bin",
    "make_postgres_fixture",
]

#: Loopback only: the machine is shared and nothing here may listen on another address.
LOOPBACK = "127.0.0.1"

#: The superuser initdb creates. Connections authenticate by "trust", so no password exists.
SUPERUSER = "postgres"

#: The system account that owns the cluster when this process runs as root (Debian creates it).
SERVICE_USER = "postgres"

#: How long ``pg_ctl start -w`` may wait for the server to accept connections. It usually takes
#: well under a second; the margin covers a two-core machine shared by many test runs.
START_TIMEOUT_S = 60

#: How long ``pg_ctl stop -m fast -w`` may wait; "fast" aborts open sessions, so this is ample.
STOP_TIMEOUT_S = 30

#: Upper bound for initdb (it writes a few dozen MB; --no-sync skips the fsyncs).
INITDB_TIMEOUT_S = 120

#: Upper bound for one psql invocation (CREATE DATABASE copies template1, a few MB).
PSQL_TIMEOUT_S = 60

#: Upper bound for apt-get update / install of the postgresql package.
APT_TIMEOUT_S = 900

#: Fresh ports tried when a chosen port was taken between choosing and binding it.
_PORT_ATTEMPTS = 3

#: Server settings for a test cluster. fsync and friends are off by default because the data is
#: thrown away (a crash of the test machine loses nothing of value) and they dominate the run
#: time of small transactions; ``durable=True`` keeps PostgreSQL's defaults, for measurements.
_FAST_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")

#: Few connections: a test opens a pool of a handful; this keeps the shared memory small.
_MAX_CONNECTIONS = 40

#: Database names accepted by :meth:`PostgresServer.create_database` (quoted as identifiers
#: anyway; the pattern keeps names readable in logs and DSNs without escaping).
_DB_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class PostgresError(RuntimeError):
    """The server could not be installed, initialised, started or stopped; quotes its output."""


def find_postgres_bin() -> Path | None:
    """The ``bin`` directory of the newest installed PostgreSQL, or None.

    ``SIPXMPP_PG_BIN`` overrides the search (a directory holding initdb, pg_ctl and psql).
    """
    override = os.environ.get("SIPXMPP_PG_BIN")
    if override:
        path = Path(override)
        return path if (path / "initdb").is_file() else None
    candidates = []
    for initdb in glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        major = Path(initdb).parent.parent.name
        if major.isdigit():
            candidates.append((int(major), Path(initdb).parent))
    if candidates:
        return max(candidates)[1]
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl") and shutil.which("psql"):
        return Path(found).resolve().parent
    return None


def _disable_system_clusters() -> None:
    """Stop the clusters the Debian package started and keep them from starting at boot."""
    for conf in glob.glob("/etc/postgresql/*/*/start.conf"):
        parts = Path(conf).parts
        version, cluster = parts[-3], parts[-2]
        subprocess.run(
            ["pg_ctlcluster", version, cluster, "stop"],
            capture_output=True,
            timeout=STOP_TIMEOUT_S,
            check=False,
        )
        Path(conf).write_text(
            "# Disabled by sipxmpp's tests/support/postgres.py: tests run their own clusters.\n"
            "manual\n",
            encoding="utf-8",
        )


def ensure_postgres_installed() -> Path:
    """The PostgreSQL ``bin`` directory, installing Debian's ``postgresql`` package if needed.

    Installation needs root and apt-get; the cluster the package starts is stopped and set to
    ``manual``. Raises :class:`PostgresError` when the binaries are missing and cannot be had.
    """
    found = find_postgres_bin()
    if found is not None:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise PostgresError(
            "PostgreSQL server binaries not found and this process cannot install them "
            "(apt-get install postgresql)"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "postgresql"]
    proc = subprocess.run(
        install, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_S, check=False
    )
    if proc.returncode != 0:
        subprocess.run(
            ["apt-get", "update", "-q"],
            env=env,
            capture_output=True,
            timeout=APT_TIMEOUT_S,
            check=False,
        )
        proc = subprocess.run(
            install, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_S, check=False
        )
    if proc.returncode != 0:
        raise PostgresError(f"apt-get install postgresql failed:\n{proc.stdout}{proc.stderr}")
    _disable_system_clusters()
    found = find_postgres_bin()
    if found is None:
        raise PostgresError("postgresql was installed but initdb is still not found")
    return found


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, then release)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


#: Servers started by this process and not yet stopped; stopped at interpreter exit so a
#: forgotten server (pg_ctl daemonises it) does not outlive the test run.
_LIVE: weakref.WeakSet[PostgresServer] = weakref.WeakSet()


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_LIVE):
        try:
            server.stop()
        except (PostgresError, OSError, subprocess.SubprocessError):
            pass


class PostgresServer:
    """One throwaway PostgreSQL cluster on 127.0.0.1.

    :param workdir: parent for the cluster's directory; a fresh directory under the system
        temporary directory when omitted (it must be reachable by the ``postgres`` user when
        running as root, which pytest's private ``tmp_path`` is not).
    :param durable: keep PostgreSQL's durability defaults (fsync on); off by default for speed.
    :param install: install the ``postgresql`` package when the binaries are missing.
    """

    def __init__(
        self, *, workdir: Path | None = None, durable: bool = False, install: bool = True
    ) -> None:
        bindir = ensure_postgres_installed() if install else find_postgres_bin()
        if bindir is None:
            raise PostgresError("PostgreSQL server binaries not found")
        self.bindir = bindir
        self.durable = durable
        self.host = LOOPBACK
        self.port = 0
        self.workdir = Path(tempfile.mkdtemp(prefix="sipxmpp-pg-", dir=workdir))
        # mkdtemp makes the directory 0700; the service user must be able to enter it.
        os.chmod(self.workdir, 0o755)
        self._as_service_user = os.geteuid() == 0
        self._initialised = False
        self._running = False

    # -- paths --------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def log_path(self) -> Path:
        return self.workdir / "postgres.log"

    @property
    def socket_dir(self) -> Path:
        return self.workdir

    @property
    def running(self) -> bool:
        return self._running

    def dsn(self, database: str = "postgres") -> str:
        """A libpq/asyncpg URL for ``database`` as the superuser over TCP on loopback."""
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"

    # -- commands -----------------------------------------------------------------------

    def _server_cmd(self, args: Sequence[str]) -> list[str]:
        """``args`` run as the service user when this process is root (initdb refuses root)."""
        if self._as_service_user:
            return ["runuser", "-u", SERVICE_USER, "--", *args]
        return list(args)

    def _run(self, args: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                self._server_cmd(args),
                cwd=self.workdir,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise PostgresError(
                f"{args[0]} timed out after {timeout} s:\n{self.log_tail()}"
            ) from exc

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _initdb(self) -> None:
        if self._as_service_user:
            shutil.chown(self.workdir, user=SERVICE_USER, group=None)
        proc = self._run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "--auth=trust",
                f"--username={SUPERUSER}",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
            INITDB_TIMEOUT_S,
        )
        if proc.returncode != 0:
            raise PostgresError(f"initdb failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
        self._initialised = True

    def start(self) -> None:
        """initdb on the first call, then start the server and wait until it accepts."""
        if self._running:
            return
        if not self._initialised:
            self._initdb()
        # A restart keeps its port (clients expect the server where it was); the first start
        # may pick a fresh port when another process grabbed the chosen one meanwhile.
        attempts = 1 if self.port else _PORT_ATTEMPTS
        last = ""
        for _ in range(attempts):
            if not self.port or attempts > 1:
                self.port = free_tcp_port()
            options = [
                f"-h {self.host}",
                f"-p {self.port}",
                f"-k {self.socket_dir}",
                f"-c max_connections={_MAX_CONNECTIONS}",
            ]
            if not self.durable:
                options += [f"-c {setting}" for setting in _FAST_SETTINGS]
            proc = self._run(
                [
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_path),
                    "-w",
                    "-t",
                    str(START_TIMEOUT_S),
                    "-o",
                    " ".join(options),
                    "start",
                ],
                START_TIMEOUT_S + 10,
            )
            if proc.returncode == 0:
                self._running = True
                _LIVE.add(self)
                return
            last = f"{proc.stdout}{proc.stderr}\n{self.log_tail()}"
        raise PostgresError(f"pg_ctl start failed on port {self.port}:\n{last}")

    def stop(self) -> None:
        """``pg_ctl stop -m fast``: roll back open sessions and shut down cleanly."""
        if not self._running:
            return
        proc = self._run(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-m",
                "fast",
                "-w",
                "-t",
                str(STOP_TIMEOUT_S),
                "stop",
            ],
            STOP_TIMEOUT_S + 10,
        )
        if proc.returncode != 0:
            self._kill_postmaster()
        self._running = False
        _LIVE.discard(self)

    def _kill_postmaster(self) -> None:
        """Last resort when pg_ctl could not stop the server: SIGQUIT its postmaster."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        try:
            os.kill(pid, signal.SIGQUIT)
        except OSError:
            return
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except OSError:
                return
            time.sleep(0.05)

    def restart(self) -> None:
        """Stop and start again on the same port (simulates a database restart)."""
        self.stop()
        self.start()

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run one SQL command with psql over TCP; returns its unaligned output."""
        proc = subprocess.run(
            [
                str(self.bindir / "psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-d",
                database,
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            timeout=PSQL_TIMEOUT_S,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if proc.returncode != 0:
            raise PostgresError(f"psql failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def create_database(self, name: str) -> str:
        """Create an empty database and return its DSN."""
        if not _DB_NAME.fullmatch(name):
            raise ValueError(f"database name {name!r} must match {_DB_NAME.pattern}")
        self.psql(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, closing its remaining connections first."""
        if not _DB_NAME.fullmatch(name):
            raise ValueError(f"database name {name!r} must match {_DB_NAME.pattern}")
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def cleanup(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()


def make_postgres_fixture(*, scope: str = "session", **server_kwargs: Any) -> Callable[..., Any]:
    """A pytest fixture yielding a started :class:`PostgresServer` (``server_kwargs`` go to it).

    It skips the test only when the binaries are missing and cannot be installed. pytest is
    imported only here, so scripts can use this module without it.
    """
    import pytest

    @pytest.fixture(scope=scope)  # type: ignore[misc]
    def _postgres() -> Iterator[PostgresServer]:
        try:
            ensure_postgres_installed()
        except PostgresError as exc:
            pytest.skip(str(exc))
        with PostgresServer(**server_kwargs) as server:
            yield server

    return _postgres  # type: ignore[no-any-return]


def main(argv: Sequence[str] | None = None) -> int:
    """Run a throwaway PostgreSQL until interrupted."""
    parser = argparse.ArgumentParser(description="Start a throwaway PostgreSQL on 127.0.0.1.")
    parser.add_argument("--database", default="sipxmpp", help="database to create")
    parser.add_argument("--durable", action="store_true", help="keep fsync on")
    args = parser.parse_args(argv)
    with PostgresServer(durable=args.durable) as server:
        print(server.create_database(args.database))
        print(f"workdir {server.workdir}", flush=True)
        try:
            while True:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
