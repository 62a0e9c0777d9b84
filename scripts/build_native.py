"""Compile the gateway's hot modules with mypyc into ``src/sipxmpp/_compiled/<digest>/``.

    .venv/bin/python scripts/build_native.py            # build if the current one is missing
    .venv/bin/python scripts/build_native.py --force    # rebuild
    .venv/bin/python scripts/build_native.py --clean    # remove every build

The list of modules and the loading rules are in ``src/sipxmpp/native.py``: a build is used
only while its digest matches the source, so editing a module simply makes the gateway run
that module's Python source until the next build. The sources are compiled from a snapshot
(so an edit during the build cannot end up in a build labelled with another digest); older
builds are removed after a successful one. Needs gcc and the Python headers (Debian:
``gcc python3-dev``; ``scripts/setup.sh`` installs them where missing) and mypy (which
includes mypyc) from the dev dependencies.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src"
sys.path.insert(0, str(SRC))

from sipxmpp import native  # noqa: E402

#: Parallel C compiler jobs: the machines we target have 2 CPUs.
JOBS = 2


def build(force: bool) -> Path:
    current = native.build_dir()
    if current.is_dir() and not force:
        print(f"build_native: build {current.name} is current")
        return current
    from mypyc.build import mypycify
    from setuptools import Distribution

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sipxmpp-mypyc-") as tmp:
        snapshot = Path(tmp) / "src"
        # The whole package (the compiled modules' imports are type-checked too), without
        # the project's mypy configuration: mypyc uses its own defaults.
        shutil.copytree(
            SRC / "sipxmpp",
            snapshot / "sipxmpp",
            ignore=shutil.ignore_patterns("_compiled", "__pycache__"),
        )
        digest = native.source_digest(root=snapshot)
        paths = [
            str(native.source_path(m, snapshot).relative_to(snapshot))
            for m in native.NATIVE_MODULES
        ]
        staging = Path(tmp) / "lib"
        cwd = os.getcwd()
        os.chdir(snapshot)  # mypyc names modules after paths relative to the working directory
        try:
            extensions = mypycify(paths, opt_level="3", target_dir=str(Path(tmp) / "c"))
            dist = Distribution({"name": "sipxmpp-native", "ext_modules": extensions})
            dist.script_args = [
                "build_ext",
                "--build-lib",
                str(staging),
                "--build-temp",
                str(Path(tmp) / "obj"),
                "-j",
                str(JOBS),
            ]
            dist.parse_command_line()
            dist.run_commands()
        finally:
            os.chdir(cwd)
        out = native.build_dir(digest)
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(staging, out)
    for other in out.parent.iterdir():
        if other != out and other.is_dir():
            shutil.rmtree(other, ignore_errors=True)
    print(
        f"build_native: compiled {len(paths)} modules into {out.relative_to(REPO)} "
        f"in {time.monotonic() - started:.0f} s"
    )
    if out != native.build_dir():
        print("build_native: the source changed during the build; run it again", file=sys.stderr)
        return out
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="rebuild even if current")
    parser.add_argument("--clean", action="store_true", help="remove every build and stop")
    args = parser.parse_args()
    if args.clean:
        shutil.rmtree(native.build_dir("x").parent, ignore_errors=True)
        print("build_native: removed every build")
        return 0
    build(args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
