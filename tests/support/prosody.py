"""A real Prosody for tests, benchmarks and demos, started from a throwaway configuration.

:class:`ProsodyServer` writes a configuration file into a temporary directory, registers the
requested users with ``prosodyctl``, starts ``prosody -F`` (foreground, a child of this process)
listening on ``127.0.0.1`` only, and waits until its client (c2s) and component ports accept
connections. Everything Prosody writes (data, pid file, log) stays in that directory.
:meth:`ProsodyServer.stop` sends SIGTERM and waits; :meth:`ProsodyServer.start` may be called
again afterwards and reuses the same ports, which is how tests simulate a server restart.

Facts this relies on (see ``/work/shared/notes/test-peers.md``): as root Prosody needs
``run_as_root = true`` or it refuses to start; ``prosody --version`` is not a version flag;
Prosody keeps Nagle's algorithm on unless ``nagle = false`` is configured. s2s is disabled,
so a message to an unknown domain bounces at once. Offline storage is disabled by default, so
a message to an existing but offline user bounces with ``service-unavailable`` instead of
being stored (set ``offline_storage=True`` to keep Prosody's usual behaviour).

Only the standard library is used, so a plain script can import this file. Example::

    with ProsodyServer(users=[ProsodyUser("alice", "pw")]) as prosody:
        print(prosody.c2s_port, prosody.component_port, prosody.jid("alice"))

As a pytest fixture factory (the fixture skips the test when Prosody is not installed)::

    prosody = make_prosody_fixture(scope="module", users=[ProsodyUser("alice", "pw")])

From a shell (prints the ports, runs until Ctrl-C)::

    python tests/support/prosody.py --user alice:pw --component sip.example.test:secret
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

__all__ = [
    "ProsodyComponent",
    "ProsodyError",
    "ProsodyServer",
    "ProsodyUser",
    "free_tcp_port",
    "make_prosody_fixture",
    "prosody_available",
    "prosody_version",
]

#: Loopback only: the test machine is shared and nothing here may listen on another address.
LOOPBACK = "127.0.0.1"

#: How long :meth:`ProsodyServer.start` waits for the ports. Prosody normally accepts within
#: about 0.1 s; the margin covers a loaded two-core machine.
START_TIMEOUT_S = 15.0

#: How long :meth:`ProsodyServer.stop` waits after SIGTERM before it sends SIGKILL.
STOP_TIMEOUT_S = 10.0

#: Upper bound for one ``prosodyctl`` invocation (user registration takes milliseconds).
PROSODYCTL_TIMEOUT_S = 30.0

#: Poll interval while waiting for the listening ports.
_POLL_S = 0.02

#: Fresh port pairs tried on the first start when a chosen port was taken meanwhile.
_PORT_ATTEMPTS = 3

#: What Prosody 0.12 logs when it cannot bind a listening port.
_PORT_FAILURE = "Failed to open server port"

#: Lines of the Prosody log quoted in error messages.
_LOG_TAIL_LINES = 30


class ProsodyError(RuntimeError):
    """Prosody could not be configured, started or stopped; the message quotes its log."""


@dataclass(frozen=True, slots=True)
class ProsodyComponent:
    """An external component (XEP-0114) the server accepts."""

    domain: str
    secret: str


@dataclass(frozen=True, slots=True)
class ProsodyUser:
    """A user account on the server's virtual host."""

    username: str
    password: str


def prosody_available() -> bool:
    """True when both ``prosody`` and ``prosodyctl`` are on PATH."""
    return shutil.which("prosody") is not None and shutil.which("prosodyctl") is not None


def prosody_version() -> str | None:
    """The installed Debian package version (``prosody --version`` would start a server)."""
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "prosody"],
            capture_output=True,
            text=True,
            timeout=PROSODYCTL_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, then release)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _lua_string(value: str) -> str:
    """A Lua double-quoted string literal."""
    escaped = (
        value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    )
    return f'"{escaped}"'


def _port_accepts(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False


class ProsodyServer:
    """One Prosody process with a virtual host, components and users, on 127.0.0.1.

    :param vhost: the virtual host (the XMPP domain of the users).
    :param components: components to accept on the component port.
    :param users: accounts to register on ``vhost`` before the first start.
    :param workdir: directory for config, data, pid file and log; a fresh temporary directory
        (removed by :meth:`cleanup`) when omitted.
    :param nagle: ``None`` keeps Prosody's default (Nagle on); ``False`` configures
        ``nagle = false``. State it beside any latency figure.
    :param offline_storage: keep ``mod_offline`` (messages to offline users are stored).
    :param log_level: minimum level written to ``prosody.log``: ``info`` or ``debug``.
    :param extra_global_config: Lua lines appended to the global section.
    """

    def __init__(
        self,
        *,
        vhost: str = "example.test",
        components: Sequence[ProsodyComponent] = (
            ProsodyComponent("sip.example.test", "component-secret"),
        ),
        users: Iterable[ProsodyUser] = (),
        workdir: Path | None = None,
        nagle: bool | None = None,
        offline_storage: bool = False,
        log_level: str = "info",
        extra_global_config: str = "",
    ) -> None:
        self.vhost = vhost
        self.components: tuple[ProsodyComponent, ...] = tuple(components)
        self.users: tuple[ProsodyUser, ...] = tuple(users)
        self._own_workdir = workdir is None
        self.workdir = (
            Path(tempfile.mkdtemp(prefix="sipxmpp-prosody-")) if workdir is None else workdir
        )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.nagle = nagle
        self.offline_storage = offline_storage
        if log_level not in ("debug", "info"):
            # start() recognises readiness by Prosody's info-level "Activated service" lines.
            raise ValueError("log_level must be 'debug' or 'info'")
        self.log_level = log_level
        self.extra_global_config = extra_global_config
        self.c2s_port = free_tcp_port()
        self.component_port = free_tcp_port()
        self.host = LOOPBACK
        self._proc: subprocess.Popen[bytes] | None = None
        self._registered = False
        self._started_once = False
        self._write_config()

    # -- paths and names ------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.workdir / "prosody.cfg.lua"

    @property
    def data_path(self) -> Path:
        return self.workdir / "data"

    @property
    def log_path(self) -> Path:
        return self.workdir / "prosody.log"

    @property
    def pid_path(self) -> Path:
        return self.workdir / "prosody.pid"

    @property
    def component(self) -> ProsodyComponent:
        """The first (usually only) component."""
        if not self.components:
            raise ProsodyError("this server has no component")
        return self.components[0]

    def jid(self, username: str) -> str:
        """The bare JID of a user on the virtual host."""
        return f"{username}@{self.vhost}"

    def password(self, username: str) -> str:
        for user in self.users:
            if user.username == username:
                return user.password
        raise KeyError(username)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # -- configuration --------------------------------------------------------------------

    def _write_config(self) -> None:
        self.data_path.mkdir(parents=True, exist_ok=True)
        (self.workdir / "certs").mkdir(exist_ok=True)  # none needed; avoids a startup error
        disabled = ["s2s"] if self.offline_storage else ["s2s", "offline"]
        lines = [
            "-- Generated by tests/support/prosody.py for one test run; safe to delete.",
            "run_as_root = true",
            "daemonize = false",
            f"interfaces = {{ {_lua_string(LOOPBACK)} }}",
            f"c2s_ports = {{ {self.c2s_port} }}",
            f"component_ports = {{ {self.component_port} }}",
            f"component_interfaces = {{ {_lua_string(LOOPBACK)} }}",
            # No HTTP, BOSH or websocket listener: nothing else may open a port.
            "http_ports = { }",
            "https_ports = { }",
            "c2s_direct_tls_ports = { }",
            f"data_path = {_lua_string(str(self.data_path))}",
            f"certificates = {_lua_string(str(self.workdir / 'certs'))}",
            f"pidfile = {_lua_string(str(self.pid_path))}",
            "log = {",
            f'  {{ levels = {{ min = {_lua_string(self.log_level)} }}, to = "file",'
            f" filename = {_lua_string(str(self.log_path))} }};",
            "}",
            'modules_enabled = { "roster", "saslauth", "disco", "ping", "presence", "message" }',
            "modules_disabled = { " + ", ".join(_lua_string(m) for m in disabled) + " }",
            "c2s_require_encryption = false",
            "s2s_require_encryption = false",
            "allow_unencrypted_plain_auth = true",
            "allow_registration = false",
            'authentication = "internal_hashed"',
            'storage = "internal"',
        ]
        if self.nagle is not None:
            lines.append(f"nagle = {'true' if self.nagle else 'false'}")
        if self.extra_global_config:
            lines.append(self.extra_global_config)
        lines.append("")
        lines.append(f"VirtualHost {_lua_string(self.vhost)}")
        for component in self.components:
            lines.append("")
            lines.append(f"Component {_lua_string(component.domain)}")
            lines.append(f"  component_secret = {_lua_string(component.secret)}")
        self.config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def _register_users(self) -> None:
        for user in self.users:
            proc = subprocess.run(
                [
                    "prosodyctl",
                    "--config",
                    str(self.config_path),
                    "register",
                    user.username,
                    self.vhost,
                    user.password,
                ],
                cwd=self.workdir,
                capture_output=True,
                text=True,
                timeout=PROSODYCTL_TIMEOUT_S,
                check=False,
            )
            if proc.returncode != 0:
                raise ProsodyError(
                    f"prosodyctl register {user.username}@{self.vhost} failed "
                    f"({proc.returncode}): {proc.stdout}{proc.stderr}"
                )
        self._registered = True

    # -- process control ------------------------------------------------------------------

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start Prosody (registering users on the first start) and wait for both ports.

        If another process took one of the chosen ports before Prosody bound it, the first
        start picks fresh ports and tries again; later starts keep the ports (a restart must
        come back where clients expect it) and fail instead.
        """
        if not prosody_available():
            raise ProsodyError("prosody/prosodyctl not found on PATH (apt-get install prosody)")
        if self.running:
            return
        if not self._registered:
            self._register_users()
        attempts = 1 if self._started_once else _PORT_ATTEMPTS
        for attempt in range(attempts):
            if self._spawn_and_wait(timeout):
                self._started_once = True
                return
            self.stop()
            if attempt + 1 < attempts:
                self.c2s_port = free_tcp_port()
                self.component_port = free_tcp_port()
                self._write_config()
        raise ProsodyError(
            f"prosody could not listen on ports {self.c2s_port}/{self.component_port}:\n"
            f"{self.log_tail()}"
        )

    def _spawn_and_wait(self, timeout: float) -> bool:
        """Start the process; True once both ports accept, False if a port could not be bound."""
        log_size = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._proc = subprocess.Popen(
            ["prosody", "-F", "--config", str(self.config_path)],
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        pending = {self.c2s_port, self.component_port}
        while pending:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise ProsodyError(f"prosody exited with {code} at start:\n{self.log_tail()}")
            if _PORT_FAILURE in self._log_since(log_size):
                return False
            if time.monotonic() > deadline:
                self.stop()
                raise ProsodyError(
                    f"prosody ports {sorted(pending)} did not accept within {timeout} s:\n"
                    f"{self.log_tail()}"
                )
            log = self._log_since(log_size)
            # Both Prosody's own "listening" lines and an accepting socket: another process
            # that happens to listen on a chosen port must not pass for Prosody.
            pending = {
                port
                for port in pending
                if f"on [{LOOPBACK}]:{port}" not in log or not _port_accepts(port)
            }
            if pending:
                time.sleep(_POLL_S)
        return True

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_path.open("rb") as f:
                f.seek(offset)
                return f.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Send SIGTERM and wait for the process; SIGKILL it if it does not exit in time."""
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        if proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)

    def restart(self, timeout: float = START_TIMEOUT_S) -> None:
        """Stop and start again on the same ports."""
        self.stop()
        self.start(timeout=timeout)

    def cleanup(self) -> None:
        """Stop the server and remove the working directory if this object created it."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ProsodyServer:
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()

    def __del__(self) -> None:  # a forgotten server must not outlive the test process
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGTERM)
            except OSError:
                pass


def make_prosody_fixture(*, scope: str = "module", **server_kwargs: Any) -> Callable[..., Any]:
    """A pytest fixture yielding a started :class:`ProsodyServer` (``server_kwargs`` go to it).

    The fixture skips the test when Prosody is not installed; each fixture instance gets its
    own working directory from ``tmp_path_factory``. pytest is imported only here, so scripts
    can use this module without it.
    """
    import pytest

    def _prosody(tmp_path_factory: Any) -> Iterator[ProsodyServer]:
        if not prosody_available():
            pytest.skip("prosody is not installed (apt-get install prosody)")
        workdir = tmp_path_factory.mktemp("prosody")
        with ProsodyServer(workdir=workdir, **server_kwargs) as server:
            yield server

    fixture: Callable[..., Any] = pytest.fixture(_prosody, scope=cast(Any, scope))
    return fixture


def main(argv: Sequence[str] | None = None) -> int:
    """Run a throwaway Prosody in the foreground until interrupted."""
    parser = argparse.ArgumentParser(description="Start a throwaway Prosody on 127.0.0.1.")
    parser.add_argument("--vhost", default="example.test")
    parser.add_argument("--user", action="append", default=[], metavar="NAME:PASSWORD")
    parser.add_argument("--component", action="append", default=[], metavar="DOMAIN:SECRET")
    parser.add_argument("--no-nagle", action="store_true", help="configure nagle = false")
    args = parser.parse_args(argv)
    users = [ProsodyUser(*item.split(":", 1)) for item in args.user]
    components = [ProsodyComponent(*item.split(":", 1)) for item in args.component] or [
        ProsodyComponent(f"sip.{args.vhost}", "component-secret")
    ]
    with ProsodyServer(
        vhost=args.vhost,
        components=components,
        users=users,
        nagle=False if args.no_nagle else None,
    ) as server:
        print(f"c2s 127.0.0.1:{server.c2s_port}")
        print(f"component 127.0.0.1:{server.component_port}")
        for component in server.components:
            print(f"component {component.domain} secret {component.secret}")
        print(f"workdir {server.workdir}", flush=True)
        try:
            while server.running:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
