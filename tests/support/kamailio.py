"""A real Kamailio as the SIP partition's proxy and presence server, for tests and demos.

:class:`KamailioServer` writes a throwaway configuration into a temporary directory, copies
the db_text table files the presence modules need from the Debian package, starts
``kamailio -DD -E`` (foreground, logging to stderr, a child of this process) listening on
127.0.0.1 only (UDP and TCP on one free port), and waits until an OPTIONS to it is answered
with 200. :meth:`KamailioServer.stop` sends SIGTERM and waits.

What the configuration does (the request route, in order):

1. ``Max-Forwards`` check (483), and OPTIONS to the server itself (no user part) gets 200.
2. In-dialog requests (a To tag): ``loose_route()`` and relay along the recorded route; an
   in-dialog SUBSCRIBE to the server (a refresh or an unsubscribe) goes to the presence
   server; anything else in-dialog gets 404.
3. CANCEL/ACK follow their transaction; retransmissions are absorbed (``t_check_trans``).
4. A request for one of ``foreign_domains`` is record-routed and relayed to ``next_hop``
   (the gateway) with ``t_relay``.
5. A request for another domain than ``domain`` gets 404.
6. For a *local* user of ``domain`` (every user when ``users`` is None, else those listed):
   PUBLISH and SUBSCRIBE go to ``handle_publish()`` / ``handle_subscribe()`` (presence with
   presence_xml; ``force_active`` makes every watcher active without authorization rules);
   other requests are record-routed and relayed to the user's ``contact`` if it has one,
   else answered 480.
7. A user of ``domain`` that is not local belongs to the other partition of the domain
   (RFC 7248 §4's partitioned domain): record-routed and relayed to ``next_hop``, or 404 when
   there is none.

Facts this relies on (``/work/shared/notes/test-peers.md``): Debian's ``kamailio`` and
``kamailio-presence-modules`` packages; db_text needs the ``version``, ``presentity``,
``active_watchers``, ``watchers``, ``xcap`` and ``pua`` table files in its directory before
start; Kamailio starts in well under 0.1 s with ``-DD -E``; ``-m`` (shared memory, MB) must
grow with load. Kamailio's xmpp module is not used (it crashes on Prosody's stream header).

Only the standard library is used, so a plain script can import this file. Example::

    with KamailioServer(next_hop=("127.0.0.1", gateway_port),
                        users=[KamailioUser("carol")]) as kam:
        print(kam.port, kam.address)

As a pytest fixture factory (skips the test when Kamailio is not installed)::

    kamailio = make_kamailio_fixture(scope="module", force_active=True)
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "DB_NULLABLE_COLUMNS",
    "DB_TABLES",
    "KamailioError",
    "KamailioServer",
    "KamailioUser",
    "find_dbtext_dir",
    "find_module_dir",
    "kamailio_available",
    "make_kamailio_fixture",
    "sip_options",
]

#: Loopback only: the test machine is shared and nothing here may listen on another address.
LOOPBACK = "127.0.0.1"

KAMAILIO_BINARY = "kamailio"

#: db_text tables the presence modules open at start (the notes list them).
DB_TABLES = ("version", "presentity", "active_watchers", "watchers", "xcap", "pua")

#: db_text columns made nullable in the copied table headers. The presence module keeps
#: subscriptions in memory and writes them back (``subs_db_mode`` 2, the default) from a
#: timer and once more at shutdown; its INSERT into ``active_watchers`` leaves ``flags``
#: out, which the SQL schemas default to 0 (``flags INT DEFAULT 0 NOT NULL``) but db_text,
#: which has no column defaults, refuses as a NULL in a NOT NULL column ("null value not
#: allowed - field 25", then "update_db_subs_timer(): unsuccessful sql insert"): every
#: active watcher was lost with an ERROR at stop. A NULL int reads back as 0.
DB_NULLABLE_COLUMNS: dict[str, tuple[str, ...]] = {"active_watchers": ("flags",)}

#: Kamailio log lines that are not problems: at shutdown the TCP main process reports the
#: socket pairs of its already stopped children as EOF (core/pass_fd.c), whatever the load.
_BENIGN_LOG = re.compile(r"CRITICAL: <core> \[core/pass_fd\.c:\d+\]: receive_fd\(\): EOF on \d+")

#: Where Debian puts the modules and the db_text table templates (multiarch and plain).
_MODULE_DIR_GLOBS = (
    "/usr/lib/*/kamailio/modules",
    "/usr/lib/kamailio/modules",
    "/usr/lib64/kamailio/modules",
    "/usr/local/lib*/kamailio/modules",
)
_DBTEXT_DIR_CANDIDATES = (
    "/usr/share/kamailio/dbtext/kamailio",
    "/usr/local/share/kamailio/dbtext/kamailio",
)

#: How long :meth:`KamailioServer.start` waits for the first 200 to OPTIONS. Kamailio starts in
#: well under 0.1 s; the margin covers a loaded two-core machine.
START_TIMEOUT_S = 15.0

#: How long :meth:`KamailioServer.stop` waits after SIGTERM before SIGKILL (Kamailio's main
#: process stops its children first).
STOP_TIMEOUT_S = 10.0

#: One OPTIONS probe waits this long for its answer before the next is sent.
_PROBE_WAIT_S = 0.2

#: Least time between two probes while Kamailio is still binding its sockets.
_POLL_S = 0.02

#: Largest SIP response :func:`sip_options` reads (a UDP datagram's maximum).
_MAX_DATAGRAM = 65_535

#: Lines of the Kamailio log quoted in error messages.
_LOG_TAIL_LINES = 40

#: Names that go into the generated configuration unquoted or inside "..." literals, so they
#: are restricted to characters that need no escaping there. RFC 3261 §25.1 allows more in a
#: user part; tests do not need it.
_USER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
_DOMAIN_RE = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9-]{1,63})*")

SipTransport = Literal["udp", "tcp"]


class KamailioError(RuntimeError):
    """Kamailio could not be configured, started or stopped; the message quotes its log."""


@dataclass(frozen=True, slots=True)
class KamailioUser:
    """A user of the SIP partition (``sip:<name>@<domain>``).

    ``contact`` is where requests other than PUBLISH/SUBSCRIBE for the user are relayed
    (for example a SIPp UAS); None answers them 480 (the user is not reachable), which still
    leaves the user's presence served by Kamailio.
    """

    name: str
    contact: tuple[str, int] | None = None
    transport: SipTransport = "udp"

    def __post_init__(self) -> None:
        if not _USER_RE.fullmatch(self.name):
            raise ValueError(f"user name {self.name!r} is not a plain token")
        if self.contact is not None and self.contact[0] != LOOPBACK:
            raise ValueError(f"contact {self.contact!r} is not on {LOOPBACK}")
        if self.transport not in ("udp", "tcp"):
            raise ValueError(f"transport {self.transport!r} is not udp or tcp")


def kamailio_available() -> bool:
    """True when the binary, the presence modules and the db_text tables are installed."""
    return (
        shutil.which(KAMAILIO_BINARY) is not None
        and find_module_dir() is not None
        and find_dbtext_dir() is not None
    )


def e2e_marks() -> list[Any]:
    """``pytestmark`` of the tests that run Kamailio, SIPp and Prosody together."""
    import pytest

    from support.sipp import sipp_available

    return [
        pytest.mark.prosody,
        pytest.mark.sipp,
        pytest.mark.kamailio,
        pytest.mark.skipif(not sipp_available(), reason="sipp is not installed (sip-tester)"),
        pytest.mark.skipif(
            not kamailio_available(),
            reason="kamailio is not installed (kamailio, kamailio-presence-modules)",
        ),
    ]


def find_module_dir() -> Path | None:
    """The directory holding ``presence_xml.so`` (so the presence modules are installed)."""
    for pattern in _MODULE_DIR_GLOBS:
        for candidate in sorted(glob.glob(pattern)):
            path = Path(candidate)
            if (path / "tm.so").exists() and (path / "presence_xml.so").exists():
                return path
    return None


def find_dbtext_dir() -> Path | None:
    """The package's db_text table templates (``dpkg -L kamailio | grep dbtext``)."""
    for candidate in _DBTEXT_DIR_CANDIDATES:
        path = Path(candidate)
        if all((path / table).exists() for table in DB_TABLES):
            return path
    return None


def _make_nullable(table: Path, columns: Sequence[str]) -> None:
    """Mark ``columns`` nullable in a db_text table file's header line, e.g.
    ``flags(int)`` -> ``flags(int,null)`` (see :data:`DB_NULLABLE_COLUMNS`)."""
    header, sep, rows = table.read_text(encoding="utf-8").partition("\n")
    for column in columns:
        pattern = re.compile(rf"(?<![\w])({re.escape(column)})\((int|string|str|double|blob)\)")
        header, found = pattern.subn(r"\1(\2,null)", header)
        if found != 1 and f"{column}(" not in header:
            raise KamailioError(f"db_text table {table.name} has no column {column}")
    table.write_text(header + sep + rows, encoding="utf-8")


def _free_port_both() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 a moment ago."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((LOOPBACK, 0))
            port: int = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((LOOPBACK, port))
                except OSError:
                    continue
                return port
    raise KamailioError("no port free for both UDP and TCP on 127.0.0.1")


def sip_options(
    port: int, *, timeout: float = 1.0, user: str | None = None, host: str = LOOPBACK
) -> int | None:
    """Send one OPTIONS over UDP to ``host:port`` and return the status code (None: no answer).

    The request goes to ``sip:[user@]host:port``; the Via carries ``rport`` (RFC 3581) so the
    answer comes back to this socket whatever Kamailio thinks of the sent-by.
    """
    if host != LOOPBACK:
        raise ValueError("loopback only")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        local_port = sock.getsockname()[1]
        branch = "z9hG4bK-probe-" + secrets.token_hex(6)
        call_id = secrets.token_hex(8) + "@probe"
        uri = f"sip:{user + '@' if user else ''}{host}:{port}"
        request = (
            f"OPTIONS {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{local_port};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@{LOOPBACK}>;tag={secrets.token_hex(4)}\r\n"
            f"To: <{uri}>\r\n"
            f"Call-ID: {call_id}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode("ascii")
        sock.sendto(request, (host, port))
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            sock.settimeout(remaining)
            try:
                data = sock.recv(_MAX_DATAGRAM)
            except (TimeoutError, ConnectionRefusedError):
                return None
            except OSError:
                return None
            match = re.match(rb"SIP/2\.0 (\d{3}) ", data)
            if match and call_id.encode("ascii") in data:
                status = int(match.group(1))
                if status >= 200:
                    return status
        return None


class KamailioServer:
    """One Kamailio on 127.0.0.1 (UDP and TCP on :attr:`port`) serving ``domain``.

    :param domain: the SIP partition's domain (Kamailio's alias, so ``uri==myself``).
    :param users: the partition's local users; None makes every user of ``domain`` local.
    :param next_hop: the gateway's ``(host, port)``: requests for ``foreign_domains`` and for
        non-local users of ``domain`` go there.
    :param next_hop_transport: ``udp`` or ``tcp`` towards ``next_hop``.
    :param foreign_domains: domains always relayed to ``next_hop``.
    :param force_active: presence_xml ``force_active``: every watcher is active without
        authorization rules. Turn it off when a test checks authorization (the rules then come
        from the ``xcap`` db_text table, which starts empty: watchers stay pending).
    :param workdir: config, db, runtime files and log; a fresh temporary directory (removed by
        :meth:`cleanup`) when omitted.
    :param shm_mb: ``-m`` shared memory in MB (grow it with load).
    :param pkg_mb: ``-M`` private memory per process in MB.
    :param children: UDP worker processes (and TCP workers).
    :param debug: Kamailio's log level (2 = info, 3 = debug).
    """

    def __init__(
        self,
        *,
        domain: str = "example.test",
        users: Sequence[KamailioUser] | None = None,
        next_hop: tuple[str, int] | None = None,
        next_hop_transport: SipTransport = "udp",
        foreign_domains: Sequence[str] = (),
        force_active: bool = True,
        workdir: Path | None = None,
        shm_mb: int = 64,
        pkg_mb: int = 8,
        children: int = 2,
        debug: int = 2,
    ) -> None:
        for name in (domain, *foreign_domains):
            if not _DOMAIN_RE.fullmatch(name):
                raise ValueError(f"domain {name!r} is not a plain host name")
        if domain in foreign_domains:
            raise ValueError(f"{domain} cannot be both local and foreign")
        if next_hop is not None and next_hop[0] != LOOPBACK:
            raise ValueError(f"next hop {next_hop!r} is not on {LOOPBACK}")
        if next_hop_transport not in ("udp", "tcp"):
            raise ValueError(f"next hop transport {next_hop_transport!r} is not udp or tcp")
        if foreign_domains and next_hop is None:
            raise ValueError("foreign domains need a next hop")
        if not (1 <= children <= 16 and 8 <= shm_mb <= 4096 and 1 <= pkg_mb <= 512):
            raise ValueError("children, shm_mb or pkg_mb out of range")
        self.domain = domain
        self.users: tuple[KamailioUser, ...] | None = tuple(users) if users is not None else None
        self.next_hop = (next_hop[0], int(next_hop[1])) if next_hop is not None else None
        self.next_hop_transport: SipTransport = next_hop_transport
        self.foreign_domains: tuple[str, ...] = tuple(foreign_domains)
        self.force_active = force_active
        self.shm_mb = shm_mb
        self.pkg_mb = pkg_mb
        self.children = children
        self.debug = debug
        self._own_workdir = workdir is None
        self.workdir = (
            Path(tempfile.mkdtemp(prefix="sipxmpp-kamailio-")) if workdir is None else workdir
        )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port_both()
        self.host = LOOPBACK
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_handle: Any = None
        self._prepared = False

    # -- paths and names ------------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.workdir / "kamailio.cfg"

    @property
    def db_path(self) -> Path:
        return self.workdir / "db"

    @property
    def run_path(self) -> Path:
        return self.workdir / "run"

    @property
    def log_path(self) -> Path:
        return self.workdir / "kamailio.log"

    @property
    def address(self) -> tuple[str, int]:
        return (LOOPBACK, self.port)

    @property
    def uri(self) -> str:
        """``sip:127.0.0.1:<port>``, the server's own URI (also its presence server address)."""
        return f"sip:{LOOPBACK}:{self.port}"

    def aor(self, user: str) -> str:
        return f"sip:{user}@{self.domain}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # -- configuration --------------------------------------------------------------------------

    def config_text(self, module_dir: Path) -> str:
        """The generated ``kamailio.cfg``."""
        db_url = f"text://{self.db_path}"
        local_block = (
            '        if (is_method("PUBLISH|SUBSCRIBE")) {\n'
            "            route(PRESENCE);\n"
            "            exit;\n"
            "        }\n"
            "        route(TARGET);\n"
            "        if ($du == $null) {\n"
            '            sl_send_reply("480", "Temporarily Unavailable");\n'
            "            exit;\n"
            "        }\n"
            "        record_route();\n"
            "        route(RELAY);\n"
            "        exit;\n"
        )
        # No constant conditions: Kamailio warns about them at start.
        if self.users is None:
            local = "    {\n" + local_block + "    }\n"
        elif self.users:
            test = " || ".join(f'$rU == "{u.name}"' for u in self.users)
            local = f"    if ({test}) {{\n" + local_block + "    }\n"
        else:
            local = ""
        targets = []
        for user in self.users or ():
            if user.contact is not None:
                host, port = user.contact
                targets.append(
                    f'    if ($rU == "{user.name}") {{\n'
                    f'        $du = "sip:{host}:{int(port)};transport={user.transport}";\n'
                    "        return;\n"
                    "    }\n"
                )
        if self.next_hop is not None:
            host, port = self.next_hop
            next_hop = (
                f'    $du = "sip:{host}:{port};transport={self.next_hop_transport}";\n'
                "    record_route();\n"
                "    route(RELAY);\n"
            )
        else:
            next_hop = '    sl_send_reply("404", "Not Found");\n    exit;\n'
        foreign = ""
        if self.foreign_domains:
            test = " || ".join(f'$rd == "{d}"' for d in self.foreign_domains)
            foreign = f"    if ({test}) {{\n        route(NEXTHOP);\n        exit;\n    }}\n"
        return f"""#!KAMAILIO
# Generated by tests/support/kamailio.py for one test run; safe to delete.

debug={self.debug}
log_stderror=yes
memdbg=5
memlog=5
children={self.children}
tcp_children={self.children}
auto_aliases=no
listen=udp:{LOOPBACK}:{self.port}
listen=tcp:{LOOPBACK}:{self.port}
alias="{self.domain}"
dns=no
rev_dns=no
use_dns_cache=no
dns_try_ipv6=no
enable_tls=no
enable_sctp=no
server_header="Server: sipxmpp-test-kamailio"
user_agent_header="User-Agent: sipxmpp-test-kamailio"

mpath="{module_dir}/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "db_text.so"
loadmodule "presence.so"
loadmodule "presence_xml.so"

modparam("rr", "enable_full_lr", 1)
modparam("rr", "append_fromtag", 1)
modparam("presence", "db_url", "{db_url}")
modparam("presence", "server_address", "{self.uri}")
modparam("presence_xml", "db_url", "{db_url}")
modparam("presence_xml", "force_active", {1 if self.force_active else 0})
modparam("presence_xml", "integrated_xcap_server", 1)

request_route {{
    xlog("L_INFO", "request $rm $ru from $si:$sp call-id $ci\\n");
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (is_method("OPTIONS") && uri == myself && $rU == $null) {{
        sl_send_reply("200", "OK");
        exit;
    }}
    if (has_totag()) {{
        route(WITHINDLG);
        exit;
    }}
    if (is_method("CANCEL|ACK")) {{
        if (t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    t_check_trans();
{foreign}    if (!(uri == myself)) {{
        sl_send_reply("404", "Not Here");
        exit;
    }}
{local}    route(NEXTHOP);
    exit;
}}

route[WITHINDLG] {{
    if (loose_route()) {{
        route(RELAY);
        exit;
    }}
    if (is_method("SUBSCRIBE") && uri == myself) {{
        route(PRESENCE);
        exit;
    }}
    if (is_method("ACK")) {{
        if (t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    sl_send_reply("404", "Not Here");
    exit;
}}

route[PRESENCE] {{
    if (!t_newtran()) {{
        sl_reply_error();
        exit;
    }}
    if (is_method("PUBLISH")) {{
        handle_publish();
    }} else {{
        handle_subscribe();
    }}
    t_release();
    exit;
}}

route[TARGET] {{
{"".join(targets)}    return;
}}

route[NEXTHOP] {{
{next_hop}}}

route[RELAY] {{
    if (!t_relay()) {{
        sl_reply_error();
    }}
    exit;
}}
"""

    def _prepare(self) -> None:
        module_dir = find_module_dir()
        dbtext_dir = find_dbtext_dir()
        if module_dir is None or dbtext_dir is None:
            raise KamailioError(
                "Kamailio's presence modules or db_text tables are missing "
                "(apt-get install kamailio kamailio-presence-modules)"
            )
        self.db_path.mkdir(parents=True, exist_ok=True)
        self.run_path.mkdir(parents=True, exist_ok=True)
        for table in DB_TABLES:
            shutil.copyfile(dbtext_dir / table, self.db_path / table)
        for table, columns in DB_NULLABLE_COLUMNS.items():
            _make_nullable(self.db_path / table, columns)
        self.config_path.write_text(self.config_text(module_dir), encoding="utf-8")
        check = subprocess.run(
            [KAMAILIO_BINARY, "-c", "-f", str(self.config_path)],
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=STOP_TIMEOUT_S,
            check=False,
        )
        if check.returncode != 0:
            raise KamailioError(
                f"kamailio -c rejected the generated configuration:\n{check.stderr[-4000:]}"
            )
        self._prepared = True

    # -- process control --------------------------------------------------------------------------

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def log_problems(self) -> list[str]:
        """The ERROR and CRITICAL lines of the log (ALERT/BUG too), except known-benign ones."""
        return [
            line
            for line in self.log_text().splitlines()
            if re.search(r"\b(ERROR|CRITICAL|ALERT|BUG):", line) and not _BENIGN_LOG.search(line)
        ]

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:]) or "(no log)"

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Write the configuration (first start), start Kamailio and wait for OPTIONS 200."""
        if shutil.which(KAMAILIO_BINARY) is None:
            raise KamailioError("kamailio not found on PATH (apt-get install kamailio)")
        if self.running:
            return
        if not self._prepared:
            self._prepare()
        self._log_handle = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            [
                KAMAILIO_BINARY,
                "-f",
                str(self.config_path),
                "-DD",
                "-E",
                "-m",
                str(self.shm_mb),
                "-M",
                str(self.pkg_mb),
                "-Y",
                str(self.run_path),
                "-w",
                str(self.workdir),
            ],
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._close_log()
                self._proc = None
                raise KamailioError(f"kamailio exited with {code} at start:\n{self.log_tail()}")
            probe_started = time.monotonic()
            if sip_options(self.port, timeout=_PROBE_WAIT_S) == 200:
                return
            # An ICMP "port unreachable" ends a probe at once: do not spin while Kamailio binds.
            time.sleep(max(0.0, _POLL_S - (time.monotonic() - probe_started)))
            if time.monotonic() > deadline:
                self.stop()
                raise KamailioError(
                    f"kamailio did not answer OPTIONS within {timeout} s:\n{self.log_tail()}"
                )

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Send SIGTERM and wait for the process; SIGKILL its process group if it lingers."""
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        try:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    # The process group is Kamailio's own (start_new_session): its children.
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=timeout)
        finally:
            self._close_log()

    def _close_log(self) -> None:
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None

    def restart(self, timeout: float = START_TIMEOUT_S) -> None:
        """Stop and start again on the same port (the db_text files keep their contents)."""
        self.stop()
        self.start(timeout=timeout)

    def cleanup(self) -> None:
        """Stop the server and remove the working directory if this object created it."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> KamailioServer:
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
                os.killpg(proc.pid, signal.SIGTERM)
            except OSError:
                pass


FixtureScope = Literal["session", "package", "module", "class", "function"]


def make_kamailio_fixture(
    *, scope: FixtureScope = "module", **server_kwargs: Any
) -> Callable[..., Any]:
    """A pytest fixture yielding a started :class:`KamailioServer` (``server_kwargs`` go to it).

    The fixture skips the test when Kamailio is not installed; each fixture instance gets its
    own working directory from ``tmp_path_factory``. pytest is imported only here.
    """
    import pytest

    def _kamailio(tmp_path_factory: Any) -> Iterator[KamailioServer]:
        if not kamailio_available():
            pytest.skip(
                "kamailio is not installed (apt-get install kamailio kamailio-presence-modules)"
            )
        workdir = tmp_path_factory.mktemp("kamailio")
        with KamailioServer(workdir=workdir, **server_kwargs) as server:
            yield server

    fixture: Callable[..., Any] = pytest.fixture(scope=scope)(_kamailio)
    return fixture


def main(argv: Sequence[str] | None = None) -> int:
    """Run a throwaway Kamailio in the foreground until interrupted."""
    parser = argparse.ArgumentParser(description="Start a throwaway Kamailio on 127.0.0.1.")
    parser.add_argument("--domain", default="example.test")
    parser.add_argument("--user", action="append", default=[], metavar="NAME[:PORT]")
    parser.add_argument("--next-hop", metavar="PORT", type=int, help="the gateway's UDP port")
    parser.add_argument("--foreign", action="append", default=[], metavar="DOMAIN")
    parser.add_argument("--no-force-active", action="store_true")
    args = parser.parse_args(argv)
    users = None
    if args.user:
        users = []
        for item in args.user:
            name, _, port = item.partition(":")
            users.append(KamailioUser(name, (LOOPBACK, int(port)) if port else None))
    with KamailioServer(
        domain=args.domain,
        users=users,
        next_hop=(LOOPBACK, args.next_hop) if args.next_hop else None,
        foreign_domains=args.foreign,
        force_active=not args.no_force_active,
    ) as server:
        print(f"kamailio {server.uri} (udp and tcp) for {server.domain}")
        print(f"workdir {server.workdir}", flush=True)
        try:
            while server.running:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
