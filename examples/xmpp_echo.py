"""bob's XMPP client for the demo: log in, wait for one message, answer it, quit.

    python examples/xmpp_echo.py --jid bob@example.com --password bob [--host 127.0.0.1 --port 5222]

Prints what it received and what it sent. Exits 0 after answering, 1 on timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import slixmpp


class Echo(slixmpp.ClientXMPP):
    def __init__(self, jid: str, password: str) -> None:
        # Loopback demo: no TLS, SCRAM over plaintext (see examples/prosody.cfg.lua).
        super().__init__(
            jid,
            password,
            plugin_config={"feature_mechanisms": {"unencrypted_scram": True}},
        )
        self.enable_plaintext = True
        self.enable_starttls = False
        self.enable_direct_tls = False
        self.ready = asyncio.Event()
        self.answered = asyncio.Event()
        self.add_event_handler("session_start", self._start)
        self.add_event_handler("message", self._message)

    async def _start(self, _event: object) -> None:
        self.send_presence()
        await self.get_roster()
        self.ready.set()

    def _message(self, msg: slixmpp.Message) -> None:
        if msg["type"] not in ("normal", "chat") or not msg["body"]:
            return
        print(
            f"[xmpp] {self.boundjid.bare} received from {msg['from']}: {msg['body']!r}", flush=True
        )
        reply = f"Hi {msg['from'].user}, bob here. You wrote: {msg['body']}"
        self.send_message(mto=msg["from"].bare, mbody=reply, mtype="normal")
        print(f"[xmpp] {self.boundjid.bare} answered {msg['from'].bare}: {reply!r}", flush=True)
        self.answered.set()


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jid", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5222)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--ready-file", help="touch this file once logged in")
    args = ap.parse_args()
    client = Echo(args.jid, args.password)
    client.connect(args.host, args.port)
    try:
        await asyncio.wait_for(client.ready.wait(), args.timeout)
        if args.ready_file:
            open(args.ready_file, "w").close()
        print(f"[xmpp] {args.jid} online", flush=True)
        await asyncio.wait_for(client.answered.wait(), args.timeout)
        await asyncio.sleep(0.5)  # let the answer leave before closing the stream
        return 0
    except TimeoutError:
        print("[xmpp] timed out", file=sys.stderr)
        return 1
    finally:
        client.disconnect()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
