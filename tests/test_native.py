"""The compiled build of the hot modules (src/sipxmpp/native.py): used only when it matches
the source, and then for every listed module."""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sipxmpp import native

SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def _copy_sources(dest: Path) -> Path:
    root = Path(native.__file__).resolve().parent.parent
    for module in native.NATIVE_MODULES:
        target = native.source_path(module, dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(native.source_path(module, root), target)
    return dest


def test_digest_follows_every_source_byte(tmp_path: Path) -> None:
    root = _copy_sources(tmp_path)
    before = native.source_digest(root=root)
    assert before == native.source_digest(root=root)
    assert before == native.source_digest()  # the copy is the source
    for module in (native.NATIVE_MODULES[0], native.NATIVE_MODULES[-1]):
        path = native.source_path(module, root)
        original = path.read_bytes()
        path.write_bytes(original + b"\n")
        assert native.source_digest(root=root) != before, module
        path.write_bytes(original)
    assert native.source_digest(root=root) == before


def test_listed_modules_exist_and_exclude_package_inits() -> None:
    for module in native.NATIVE_MODULES:
        assert native.source_path(module).is_file(), module
        assert not module.endswith("__init__")
    assert len(set(native.NATIVE_MODULES)) == len(native.NATIVE_MODULES)


def _python(code: str, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
        timeout=60,
    )
    return result.stdout.strip()


def test_switch_off_loads_python_source() -> None:
    code = (
        "import sipxmpp.native as n, sipxmpp.gateway.sip.parser as p;"
        "print(n.status()); print(p.__file__)"
    )
    status, path = _python(code, SIPXMPP_NATIVE="0").splitlines()
    assert status == "disabled by SIPXMPP_NATIVE=0"
    assert path.endswith("parser.py")


def test_current_build_serves_every_listed_module() -> None:
    """With a build matching the source (``scripts/setup.sh`` makes one), every listed
    module comes from it; without one, the source runs and the status says why."""
    if os.environ.get("SIPXMPP_NATIVE") == "0":
        pytest.skip("this run checks the Python source (SIPXMPP_NATIVE=0)")
    code = (
        "import importlib, sipxmpp.native as n\n"
        "print(n.status())\n"
        "for m in n.NATIVE_MODULES: print(importlib.import_module(m).__file__)\n"
    )
    lines = _python(code).splitlines()
    status, files = lines[0], lines[1:]
    if not native.build_dir().is_dir():
        assert status == "no current build (scripts/build_native.py)"
        assert all(f.endswith(".py") for f in files)
        if os.environ.get("CI"):
            pytest.fail("CI runs scripts/setup.sh, which builds the compiled modules")
        return
    assert status.startswith("active"), status
    assert len(files) == len(native.NATIVE_MODULES)
    for module, path in zip(native.NATIVE_MODULES, files, strict=True):
        assert path.endswith(SUFFIX), (module, path)
        assert str(native.build_dir()) in path


def test_stale_build_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A build directory for other sources is ignored: activation finds no current build."""
    monkeypatch.delenv("SIPXMPP_NATIVE", raising=False)
    monkeypatch.setattr(native, "_PACKAGE_DIR", tmp_path)
    monkeypatch.setattr(native, "_state", {"status": "not activated"})
    stale = tmp_path / "_compiled" / "0123456789abcdef0123"
    stale.mkdir(parents=True)
    finders = list(sys.meta_path)
    try:
        sys.meta_path[:] = [f for f in finders if not isinstance(f, native._NativeFinder)]
        assert native.activate() == "no current build (scripts/build_native.py)"
        assert not any(isinstance(f, native._NativeFinder) for f in sys.meta_path)
    finally:
        sys.meta_path[:] = finders
    importlib.invalidate_caches()
