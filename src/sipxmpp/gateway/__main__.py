"""The ``sipxmpp`` command line.

    sipxmpp run --config FILE            run the gateway until SIGTERM/SIGINT
    sipxmpp check-config FILE            validate a config file (and the environment overrides)

Exit status: 0 success, 2 bad configuration, 1 runtime failure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Sequence

from sipxmpp import __version__
from sipxmpp.gateway.settings import Settings, SettingsError, load_settings

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sipxmpp", description="SIP/SIMPLE <-> XMPP federation gateway"
    )
    p.add_argument("--version", action="version", version=f"sipxmpp {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the gateway")
    run.add_argument("--config", "-c", required=True, help="TOML configuration file")
    chk = sub.add_parser("check-config", help="validate a configuration file")
    chk.add_argument("config", help="TOML configuration file")
    chk.add_argument("--print", action="store_true", help="print the effective settings as JSON")
    return p


async def _run(settings: Settings) -> int:
    from sipxmpp.gateway.runtime.app import Gateway

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Gateway(settings):
        await stop.wait()
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    cfg_path = args.config
    try:
        settings = load_settings(cfg_path)
    except SettingsError as e:
        print(f"sipxmpp: {e}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check-config":
        if args.print:
            print(json.dumps(settings.model_dump(mode="json"), indent=2))
        else:
            print(f"{cfg_path}: OK")
        return EXIT_OK
    from sipxmpp.gateway.runtime.logs import configure_logging

    configure_logging(settings.log.level, settings.log.format)
    try:
        return asyncio.run(_run(settings))
    except KeyboardInterrupt:
        return EXIT_OK
    except OSError as e:
        print(f"sipxmpp: {e}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
