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
echo "== pytest"
python -m pytest -q -p no:cacheprovider "$@"
