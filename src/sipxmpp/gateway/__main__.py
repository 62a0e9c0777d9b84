"""The ``sipxmpp`` command line.

    sipxmpp run --config FILE            run the gateway until SIGTERM/SIGINT (SIGHUP reloads
                                         the provisioning documents)
    sipxmpp check-config FILE            validate a config file (and the environment overrides)
    sipxmpp query-peer DOMAIN [--via sip|http|xmpp|all] [--json] [--config FILE]
                                         fetch a peer network's provisioning parameters

Exit status: 0 success, 2 bad configuration, 1 runtime failure. query-peer also exits 3 when
the channels returned different documents, 4 when a channel returned no valid document.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
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
    q = sub.add_parser(
        "query-peer",
        help="fetch a peer network's provisioning parameters over SIP, HTTP and XMPP",
        description="Exit status: 0 all channels agree, 3 the channels disagree, 4 a channel "
        "returned no valid document, 2 bad configuration or arguments.",
    )
    q.add_argument("domain", help="the peer network's domain")
    q.add_argument("--via", choices=("sip", "http", "xmpp", "all"), default="all")
    q.add_argument("--json", action="store_true", help="print JSON instead of a table")
    q.add_argument("--config", "-c", help="gateway TOML file (certificates, peers, XMPP account)")
    q.add_argument("--timeout", type=float, help="seconds per channel (default: fetch_timeout)")
    q.add_argument(
        "--sip-target",
        action="append",
        default=[],
        metavar="TRANSPORT:HOST:PORT",
        help="static SIP target instead of RFC 3263 resolution (repeatable)",
    )
    q.add_argument(
        "--http-url", help="base URL of the peer's HTTP server, e.g. https://192.0.2.7:8443"
    )
    q.add_argument(
        "--xmpp-jid", help="the peer's provisioning JID instead of disco#items discovery"
    )
    return p


def _query_config(args: argparse.Namespace) -> object:
    """The query tool's configuration from ``--config`` and the overriding options."""
    from sipxmpp.gateway.runtime.provisioning_query import QueryConfig
    from sipxmpp.gateway.settings import ProvisioningPeer
    from sipxmpp.provisioning.model import normalize_domain

    try:
        domain = normalize_domain(args.domain)
    except ValueError as e:
        raise SettingsError(f"{args.domain!r} is not a domain: {e}") from None
    if args.timeout is not None and not 0 < args.timeout <= 120:
        raise SettingsError("--timeout must be in (0, 120] seconds")
    config = (
        QueryConfig.from_settings(load_settings(args.config), timeout=args.timeout)
        if args.config
        else QueryConfig(timeout=args.timeout or 10.0)
    )
    if args.sip_target or args.http_url or args.xmpp_jid:
        base = dict(config.peers).get(domain)
        fields: dict[str, object] = base.model_dump() if base is not None else {"domain": domain}
        if args.sip_target:
            fields["sip"] = tuple(args.sip_target)
        if args.http_url:
            fields["http"] = args.http_url
        if args.xmpp_jid:
            fields["xmpp"] = args.xmpp_jid
        try:
            peer = ProvisioningPeer.model_validate(fields)
        except ValueError as e:
            raise SettingsError(f"bad override: {e}") from None
        config = dataclasses.replace(config, peers={**config.peers, domain: peer})
    return config


async def _query_peer(args: argparse.Namespace, config: object) -> int:
    from sipxmpp.gateway.runtime.provisioning_query import (
        PeerQueryTool,
        QueryConfig,
        render_table,
        report_to_json,
    )
    from sipxmpp.provisioning import Channel

    assert isinstance(config, QueryConfig)
    vias = list(Channel) if args.via == "all" else [Channel(args.via)]
    async with PeerQueryTool(config) as tool:
        report = await tool.query(args.domain, vias)
    if args.json:
        print(json.dumps(report_to_json(report), indent=2, ensure_ascii=False))
    else:
        print(render_table(report), end="")
    return report.exit_status


async def _run(settings: Settings) -> int:
    from sipxmpp.gateway.runtime.app import Gateway

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Gateway(settings) as gateway:
        # SIGHUP: re-read the provisioning documents (new ETag, new caps ver, re-broadcast).
        loop.add_signal_handler(signal.SIGHUP, gateway.provisioning.reload)
        await stop.wait()
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "query-peer":
        try:
            config = _query_config(args)
        except SettingsError as e:
            print(f"sipxmpp: {e}", file=sys.stderr)
            return EXIT_CONFIG
        try:
            return asyncio.run(_query_peer(args, config))
        except KeyboardInterrupt:
            return EXIT_FAILURE
        except OSError as e:
            print(f"sipxmpp: {e}", file=sys.stderr)
            return EXIT_FAILURE
    cfg_path = args.config
    try:
        settings = load_settings(cfg_path)
    except SettingsError as e:
        print(f"sipxmpp: {e}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check-config":
        from sipxmpp.gateway.runtime.provisioning import ProvisioningConfigError, load_policy

        try:
            load_policy(settings.provisioning)  # the documents are part of the configuration
        except ProvisioningConfigError as e:
            print(f"sipxmpp: provisioning: {e}", file=sys.stderr)
            return EXIT_CONFIG
        if args.print:
            print(json.dumps(settings.model_dump(mode="json"), indent=2))
        else:
            print(f"{cfg_path}: OK")
        return EXIT_OK
    from sipxmpp.gateway.runtime import mallocpolicy
    from sipxmpp.gateway.runtime.logs import configure_logging

    mallocpolicy.apply()  # before the store's thread starts
    configure_logging(settings.log.level, settings.log.format)
    from sipxmpp.gateway.runtime.provisioning import ProvisioningConfigError

    try:
        return asyncio.run(_run(settings))
    except KeyboardInterrupt:
        return EXIT_OK
    except ProvisioningConfigError as e:
        print(f"sipxmpp: provisioning: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as e:
        print(f"sipxmpp: {e}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
