#!/usr/bin/env bash
# Idempotent set-up for a Debian 12 machine with Python 3.11: the system packages the gateway's
# demo and tests use (Prosody, SIPp, openssl), and a virtual environment in .venv with the
# gateway and its development tools. Safe to run again; it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v prosody >/dev/null 2>&1 || need+=(prosody)
command -v sipp >/dev/null 2>&1 || need+=(sip-tester)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# The compiled build of the hot modules (scripts/build_native.py) needs a C compiler and the
# headers of the Python that runs the gateway.
command -v gcc >/dev/null 2>&1 || need+=(gcc)
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if ! "$PY" -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
  need+=("$(basename "$(readlink -f "$(command -v "$PY")")")-dev")
fi
command -v kamailio >/dev/null 2>&1 || need+=(kamailio)
ls /usr/lib/*/kamailio/modules/presence.so >/dev/null 2>&1 || need+=(kamailio-presence-modules)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
  # The Debian packages start system-wide servers; the demo and the tests run their own.
  $sudo service prosody stop >/dev/null 2>&1 || true
  $sudo service kamailio stop >/dev/null 2>&1 || true
  $sudo service postgresql stop >/dev/null 2>&1 || true
fi

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.sipxmpp-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  # (pip's notes about package index locations this machine does not have are filtered out)
  .venv/bin/python -m pip install -q --upgrade pip 2> >(grep -v "^WARNING: Location" >&2) >/dev/null
  .venv/bin/python -m pip install -q -e ".[dev]" 2> >(grep -v "^WARNING: Location" >&2)
  touch "$stamp"
fi

# Compile the hot modules (a no-op when the build matches the source; see src/sipxmpp/native.py).
# SIPXMPP_NATIVE=0 skips it, and the gateway then runs the Python source of every module.
if [ "${SIPXMPP_NATIVE:-1}" != "0" ]; then
  .venv/bin/python scripts/build_native.py 2>&1 | grep -v "^\(gcc\|building\|copying\|creating\|running\) " | grep -v "unused section" || true
  .venv/bin/python -c 'import sys, sipxmpp.native as n; print("setup: compiled modules:", n.status()); sys.exit(not n.status().startswith("active"))'
fi
