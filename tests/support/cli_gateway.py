"""The gateway as its own OS process, started from its documented command line.

:class:`CliGateway` writes a TOML configuration (from nested dicts, so a test states only what
it changes), runs ``python -m sipxmpp.gateway run --config FILE`` as a child process with its
log (JSON lines) in a file, and waits until the component link to the XMPP server is up. It can
stop the process cleanly (SIGTERM, exit status 0 expected), kill it (SIGKILL, as a crash would)
and start it again with the same configuration, the same SIP port and the same state store.
It also reads the process's resident set size from ``/proc/<pid>/status`` for benchmarks.

Everything binds to 127.0.0.1. Only the standard library is used, so benchmark scripts can
import this file with ``tests/`` on ``sys.path``. Example::

    gw = CliGateway(tmp_path, xmpp_port=prosody.component_port, component="sip.example.test",
                    secret="s", sip_proxy=("127.0.0.1", kam.port),
                    presence={"store_url": f"sqlite:///{tmp_path}/state.db"})
    gw.start()
    ...
    gw.kill()      # SIGKILL
    gw.start()     # same port, same store
    gw.stop()
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "CliGateway",
    "CliGatewayError",
    "free_udp_port",
    "read_rss_kib",
    "toml_text",
]

LOOPBACK = "127.0.0.1"

#: How long :meth:`CliGateway.start` waits for the component link: start-up imports take about
#: a second, the link a few milliseconds on loopback; the margin covers a loaded machine.
START_TIMEOUT_S = 30.0

#: How long :meth:`CliGateway.stop` waits after SIGTERM before it kills the process (a clean
#: shutdown flushes the presence store and closes the XMPP stream; this takes well under 1 s).
STOP_TIMEOUT_S = 15.0

#: Poll interval while waiting for the process or a log line.
_POLL_S = 0.05

#: Lines of the log quoted in error messages.
_LOG_TAIL_LINES = 40

#: What the gateway logs (JSON) when its component link is up (runtime/bridge.py).
_LINK_UP_MARKER = '"event": "xmpp.link", "up": true'


class CliGatewayError(RuntimeError):
    """The gateway process did not start, exited early, or did not stop cleanly."""


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def read_rss_kib(pid: int) -> int | None:
    """``VmRSS`` of process ``pid`` in KiB (None when the process or /proc is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


# ----------------------------------------------------------------------------- TOML


def _toml_value(value: object) -> str:
    if value is None:
        raise TypeError("TOML has no null: leave the key out instead")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # a JSON string is a valid TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {value!r}")


def toml_text(config: Mapping[str, Any]) -> str:
    """TOML for a nested dict: dicts become tables, lists of dicts arrays of tables."""
    lines: list[str] = []

    def table(prefix: str, body: Mapping[str, Any]) -> None:
        scalars = {
            k: v
            for k, v in body.items()
            if not isinstance(v, Mapping)
            and not (isinstance(v, list) and v and all(isinstance(i, Mapping) for i in v))
        }
        if prefix and (scalars or not body):
            lines.append(f"[{prefix}]")
        for k, v in scalars.items():
            lines.append(f"{k} = {_toml_value(v)}")
        if scalars:
            lines.append("")
        for k, v in body.items():
            name = f"{prefix}.{k}" if prefix else k
            if isinstance(v, Mapping):
                table(name, v)
            elif isinstance(v, list) and v and all(isinstance(i, Mapping) for i in v):
                for item in v:
                    lines.append(f"[[{name}]]")
                    for ik, iv in item.items():
                        lines.append(f"{ik} = {_toml_value(iv)}")
                    lines.append("")

    table("", config)
    return "\n".join(lines) + "\n"


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _merge(dict(out[k]), v)
        else:
            out[k] = v
    return out


# ----------------------------------------------------------------------------- the process


class CliGateway:
    """``sipxmpp run --config FILE`` in a child process, on loopback.

    :param workdir: where the config and the logs go.
    :param xmpp_port: the XMPP server's component port.
    :param component: the component JID (the domain SIP users appear under).
    :param secret: the XEP-0114 secret.
    :param sip_proxy: ``(host, port)`` of the SIP partition's proxy (``sip.outbound_proxy``).
    :param sip_domain, xmpp_domain: the SIP domain and the XMPP domain; the XMPP domain's users
        appear on the SIP side under ``sip_domain`` too (one domain split into partitions).
    :param udp_port: the gateway's SIP UDP port (a free one when omitted; kept across restarts).
    :param t1: RFC 3261 T1 in seconds.
    :param presence: the ``[presence]`` table.
    :param log_level: ``debug`` logs every NOTIFY (``presence.notify.*``).
    :param overrides: merged last into the whole configuration (any section).
    :param python: the interpreter (default: the running one, i.e. the project's venv).
    :param python_args: interpreter options before ``-m sipxmpp.gateway`` (e.g. ``-m cProfile
        -o FILE``, which runs the gateway under the profiler).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        xmpp_port: int,
        component: str,
        secret: str,
        sip_proxy: tuple[str, int] | None = None,
        sip_domain: str = "example.test",
        xmpp_domain: str = "example.test",
        udp_port: int | None = None,
        t1: float = 0.5,
        presence: Mapping[str, Any] | None = None,
        log_level: str = "info",
        overrides: Mapping[str, Any] | None = None,
        python: str | None = None,
        python_args: tuple[str, ...] = (),
        name: str = "gateway",
    ) -> None:
        if sip_proxy is not None and sip_proxy[0] != LOOPBACK:
            raise ValueError(f"proxy {sip_proxy!r} is not on {LOOPBACK}")
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = udp_port if udp_port is not None else free_udp_port()
        sip: dict[str, Any] = {
            "listen_host": LOOPBACK,
            "udp_port": self.port,
            # 0 = any free port: the default (5070) is a fixed port that two gateways on one
            # machine would fight over; TOML cannot express "unset".
            "tcp_port": 0,
            "t1": t1,
        }
        if sip_proxy is not None:
            sip["outbound_proxy"] = f"sip:{sip_proxy[0]}:{sip_proxy[1]};transport=udp"
        config: dict[str, Any] = {
            "sip": sip,
            "xmpp": {
                "component_jid": component,
                "secret": secret,
                "server_host": LOOPBACK,
                "server_port": xmpp_port,
                "reconnect_min": 0.2,
                "reconnect_max": 1.0,
            },
            "domains": {
                "sip": [{"sip": sip_domain, "xmpp": component}],
                "xmpp": [{"xmpp": xmpp_domain, "sip": sip_domain}],
            },
            "presence": dict(presence or {}),
            "log": {"level": log_level, "format": "json"},
        }
        if overrides:
            config = _merge(config, overrides)
        self.config = config
        self.config_path = workdir / f"{name}.toml"
        self.config_path.write_text(toml_text(config), encoding="utf-8")
        self.log_path = workdir / f"{name}.log"
        self.python = python or sys.executable
        self.python_args = tuple(python_args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._log_offset = 0

    # -- process control ------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def command(self) -> list[str]:
        return [
            self.python,
            *self.python_args,
            "-m",
            "sipxmpp.gateway",
            "run",
            "--config",
            str(self.config_path),
        ]

    def start(
        self, timeout: float = START_TIMEOUT_S, *, ready: Callable[[], bool] | None = None
    ) -> None:
        """Start the process and wait until its component link is up: the ``xmpp.link``
        record of this start's log, or ``ready()`` (for a log level above ``info``)."""
        if self.running:
            raise CliGatewayError("the gateway is already running")
        # The settings' environment overrides (SIPXMPP_*) are the test's to give; the
        # compiled-build switch (SIPXMPP_NATIVE) is not a setting and passes through.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("SIPXMPP_") or k == "SIPXMPP_NATIVE"
        }
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=env,
            )
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CliGatewayError(
                    f"gateway exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            if ready() if ready is not None else _LINK_UP_MARKER in self.log_since_start():
                return
            time.sleep(_POLL_S)
        self.kill()
        raise CliGatewayError(f"gateway did not come up in {timeout} s:\n{self.log_tail()}")

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM and wait; returns the exit status (0 for a clean shutdown)."""
        proc = self.proc
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL (no shutdown code runs, as in a crash) and reap the process."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    def rss_kib(self) -> int | None:
        """The process's resident set size (``VmRSS``) in KiB."""
        return read_rss_kib(self.proc.pid) if self.running and self.proc is not None else None

    def __enter__(self) -> CliGateway:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- the log ----------------------------------------------------------------------------

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def log_since_start(self) -> str:
        """The log written by the current (last) start."""
        try:
            with self.log_path.open("rb") as f:
                f.seek(self._log_offset)
                return f.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:]) or "(no log)"

    def events(
        self, name: str | None = None, *, since_start: bool = False
    ) -> Iterator[dict[str, Any]]:
        """The structured log records (optionally only those named ``name``)."""
        text = self.log_since_start() if since_start else self.log_text()
        for line in text.splitlines():
            if not line.startswith("{"):
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and (name is None or record.get("event") == name):
                yield record

    def wait_event(
        self,
        name: str,
        predicate: Callable[[dict[str, Any]], bool] = lambda _r: True,
        timeout: float = 10.0,
        *,
        since_start: bool = True,
    ) -> dict[str, Any]:
        """The first log record named ``name`` that satisfies ``predicate`` (polling)."""
        deadline = time.monotonic() + timeout
        while True:
            for record in self.events(name, since_start=since_start):
                if predicate(record):
                    return record
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {name} record in the gateway log:\n{self.log_tail()}")
            time.sleep(_POLL_S)

    async def wait_event_async(
        self,
        name: str,
        predicate: Callable[[dict[str, Any]], bool] = lambda _r: True,
        timeout: float = 10.0,
        *,
        since_start: bool = True,
    ) -> dict[str, Any]:
        """:meth:`wait_event` for asyncio code (polls without blocking the event loop)."""
        import asyncio

        deadline = time.monotonic() + timeout
        while True:
            for record in self.events(name, since_start=since_start):
                if predicate(record):
                    return record
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {name} record in the gateway log:\n{self.log_tail()}")
            await asyncio.sleep(_POLL_S)
