#!/usr/bin/env bash
# The whole test suite: set-up, static checks (ruff, mypy strict on the pure packages,
# import-linter contracts), then pytest (unit, property, and end-to-end tests with a real
# Prosody and SIPp on 127.0.0.1). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff"
ruff check src tests $(ls -d benchmarks examples tools 2>/dev/null)
echo "== mypy (strict on mapping, gateway.sip, gateway.msrp, provisioning)"
mypy src/sipxmpp
echo "== import-linter"
lint-imports --no-cache
echo "== pytest (compiled modules: $(python -c 'import sipxmpp.native as n; print(n.status())'))"
python -m pytest -q -p no:cacheprovider "$@"
if [ $# -eq 0 ]; then
  # The Python source stays the reference: the pure cores' tests run on it too.
  echo "== pytest, pure-Python cores (SIPXMPP_NATIVE=0)"
  SIPXMPP_NATIVE=0 python -m pytest -q -p no:cacheprovider tests/sip tests/msrp tests/mapping tests/test_native.py
fi
