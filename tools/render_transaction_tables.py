#!/usr/bin/env python3
"""Print the four SIP transaction state machines as text.

The machines are data (``sipxmpp.gateway.sip.transaction.TABLES``); this renders them one
block per machine, one line per transition (``input / actions -> next state``), with the
timers that run in each state, so they can be read side by side with RFC 3261 Figures 5-8
(and RFC 6026 Figures 5 and 7 for the "Accepted" states).

Usage: ``python tools/render_transaction_tables.py [-o FILE]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    from sipxmpp.gateway.sip.transaction import render_tables
except ModuleNotFoundError:  # run from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    from sipxmpp.gateway.sip.transaction import render_tables


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, help="write to FILE instead of stdout")
    args = parser.parse_args(argv)
    text = render_tables()
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
