"""Make ``prov_helpers`` (strategies, sample documents, openssl helpers) importable from the
provisioning tests under any pytest import mode (``prepend`` adds this directory to
``sys.path`` by itself; ``importlib`` does not)."""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
