"""Compiled builds of the gateway's hot modules (mypyc), loaded only when they match the source.

Why
---
The pager-mode hot path (SIP parsing and validation, the transaction layer, the RFC 7247/7572
mapping) is pure Python and costs a few hundred microseconds per message; at the design load
of 5,000 messages/s each way on a 2-CPU machine that shared with the XMPP server is more
than one core can give. ``scripts/build_native.py`` compiles the modules listed in
:data:`NATIVE_MODULES` with mypyc (the same source, already strict-typed, becomes C
extension modules: about half the CPU per message). The Python source stays the reference:
every module runs unchanged without the build, and the test suite runs both ways.

Dataclasses
-----------
mypyc compiles a dataclass's own methods, but not the ``__init__`` the dataclasses module
generates: that one stays an interpreted function which, for a frozen class, sets each field
with ``object.__setattr__`` (about 2 µs for a five-field ``Request``, 3 µs for the
subscription layer's nine-field ``_Args``). The classes built once or more for every
message (``Headers``, ``Request``, ``Response``, ``TransportAddress``, ``SipUri``,
``NameAddr``, ``Via``, ``CSeq``, the parser's ``_Head``, the subscription layer's ``_Args``)
therefore say ``init=False`` and write ``__init__`` out, which mypyc compiles (about 0.1
µs); equality, hashing, ``repr``, ``replace`` and immutability stay the dataclass's.
``tests/sip/test_written_inits.py`` checks that each takes the fields, in order, with their
defaults.

How
---
The build goes to ``_compiled/<digest>/`` beside this file, where ``<digest>`` is
:func:`source_digest` of the compiled modules' source, the Python version and the mypy
version. :func:`activate` (called by ``sipxmpp/__init__.py``) recomputes the digest; if a
build with that digest exists, it puts a finder first on ``sys.meta_path`` that loads those
modules (and mypyc's shared runtime module) from the build. A missing or stale build (the
source was edited since) is simply not used: the import system then loads the ``.py``
files, so a compiled module can never run code other than the source next to it.

``SIPXMPP_NATIVE=0`` in the environment disables compiled modules (``status()`` says why).
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

__all__ = ["NATIVE_MODULES", "activate", "build_dir", "source_digest", "status", "loaded"]

#: Modules compiled by ``scripts/build_native.py``: the sans-I/O SIP core (codec,
#: transactions, endpoint, subscriptions), the MSRP core and the mapping modules on the
#: per-message path. Interpreted are: package ``__init__`` modules (they only re-export);
#: INVITE dialogs and SDP (their cost is per session, not per message); ``mapping.presence``
#: (mypyc cannot compile its generic frozen dataclasses); ``sip.ids`` (its generators are
#: weakly referenced for the fork hook; compiled classes are not).
NATIVE_MODULES: tuple[str, ...] = (
    "sipxmpp.gateway.sip.address",
    "sipxmpp.gateway.sip.build",
    "sipxmpp.gateway.sip.core",
    "sipxmpp.gateway.sip.dialog",
    "sipxmpp.gateway.sip.grammar",
    "sipxmpp.gateway.sip.message",
    "sipxmpp.gateway.sip.options",
    "sipxmpp.gateway.sip.parser",
    "sipxmpp.gateway.sip.subscription",
    "sipxmpp.gateway.sip.timers",
    "sipxmpp.gateway.sip.transaction",
    "sipxmpp.gateway.sip.transaction_layer",
    "sipxmpp.gateway.msrp.chunking",
    "sipxmpp.gateway.msrp.message",
    "sipxmpp.gateway.msrp.parser",
    "sipxmpp.gateway.msrp.session",
    "sipxmpp.gateway.msrp.uri",
    "sipxmpp.mapping.addresses",
    "sipxmpp.mapping.cpim",
    "sipxmpp.mapping.errors",
    "sipxmpp.mapping.iscomposing",
    "sipxmpp.mapping.messages",
    "sipxmpp.mapping.xhtml",
)

#: Environment variable: "0" disables compiled modules.
ENV_SWITCH = "SIPXMPP_NATIVE"

_PACKAGE_DIR = Path(__file__).resolve().parent
_SRC_ROOT = _PACKAGE_DIR.parent
_state: dict[str, str] = {"status": "not activated"}
_loaded: list[str] = []


def source_path(module: str, root: Path = _SRC_ROOT) -> Path:
    """The ``.py`` file of ``module`` (a name from :data:`NATIVE_MODULES`) under ``root``."""
    return root.joinpath(*module.split(".")).with_suffix(".py")


def source_digest(modules: Sequence[str] = NATIVE_MODULES, root: Path = _SRC_ROOT) -> str:
    """Digest of what a build depends on: module names and sources, Python and mypy versions."""
    h = hashlib.sha256()
    h.update(sys.version.encode())
    h.update(_mypy_version().encode())
    for module in modules:
        h.update(module.encode() + b"\0")
        h.update(source_path(module, root).read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:20]


def _mypy_version() -> str:
    # The compiled code depends on mypyc's runtime, hence on the mypy that built it. Read
    # the installed distribution's metadata (cheap) instead of importing mypy.
    try:
        from importlib.metadata import version

        return version("mypy")
    except Exception:
        return "none"


def build_dir(digest: str | None = None) -> Path:
    """Where the build for ``digest`` (default: the current sources) lives."""
    return _PACKAGE_DIR / "_compiled" / (digest or source_digest())


class _NativeFinder(importlib.abc.MetaPathFinder):
    """Serves the compiled modules of one build; every other import passes through."""

    def __init__(self, files: dict[str, Path]) -> None:
        self._files = files

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        so = self._files.get(fullname)
        if so is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, str(so))
        spec = importlib.util.spec_from_file_location(fullname, so, loader=loader)
        if spec is not None and fullname in NATIVE_MODULES:
            _loaded.append(fullname)
        return spec


def activate() -> str:
    """Install the finder for a current build, if there is one; return :func:`status`."""
    if any(isinstance(f, _NativeFinder) for f in sys.meta_path):
        return status()
    if os.environ.get(ENV_SWITCH, "1") == "0":
        _state["status"] = f"disabled by {ENV_SWITCH}=0"
        return status()
    try:
        root = build_dir()
    except OSError as exc:  # a source file unreadable: run what the import system finds
        _state["status"] = f"not used: {exc}"
        return status()
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    files: dict[str, Path] = {}
    for module in NATIVE_MODULES:
        so = root.joinpath(*module.split(".")).parent / (module.rsplit(".", 1)[1] + suffix)
        if not so.is_file():
            _state["status"] = "no current build (scripts/build_native.py)"
            return status()
        files[module] = so
    for runtime in root.glob(f"*__mypyc{suffix}"):
        files[runtime.name[: -len(suffix)]] = runtime
    sys.meta_path.insert(0, _NativeFinder(files))
    _state["status"] = f"active ({len(NATIVE_MODULES)} modules, build {root.name})"
    return status()


def status() -> str:
    """A line for the logs: whether compiled modules are in use, and why not."""
    return _state["status"]


def loaded() -> list[str]:
    """Compiled modules imported so far."""
    return list(_loaded)
