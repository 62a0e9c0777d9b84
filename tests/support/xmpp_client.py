"""A small slixmpp client for tests, benchmarks and demos against a local Prosody.

:class:`XmppTestClient` logs in on the c2s port without TLS (see
``/work/shared/notes/test-peers.md``: ``enable_plaintext=True``, no STARTTLS, no direct TLS,
``unencrypted_scram``), sends initial presence (so messages to the bare JID are delivered),
and collects every received ``<message/>`` in an :class:`asyncio.Queue`. All waits take a
timeout and raise :class:`TimeoutError`.

Example::

    async with XmppTestClient("alice@example.test", "pw", "127.0.0.1", prosody.c2s_port) as alice:
        alice.send_message("someone@sip.example.test", "hello")
        reply = await alice.next_message(timeout=5)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

from slixmpp import ClientXMPP
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.stanza import Iq, Message
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

__all__ = ["XmppTestClient"]

#: Default wait for anything the test expects, in seconds.
DEFAULT_TIMEOUT_S = 10.0

_ids = itertools.count(1)


class XmppTestClient:
    """One logged-in test user.

    :param jid: the user's JID (a resource is chosen by the server if none is given).
    :param password: the password registered with prosodyctl.
    :param host, port: Prosody's c2s address.
    :param send_presence: send initial presence after login (needed for bare-JID delivery).
    """

    def __init__(
        self,
        jid: str,
        password: str,
        host: str,
        port: int,
        *,
        send_presence: bool = True,
    ) -> None:
        self.host = host
        self.port = port
        self.send_presence = send_presence
        self.xmpp: Any = ClientXMPP(
            jid,
            password,
            plugin_config={"feature_mechanisms": {"unencrypted_scram": True}},
        )
        self.xmpp.enable_plaintext = True
        self.xmpp.enable_starttls = False
        self.xmpp.enable_direct_tls = False
        self.xmpp.register_plugin("xep_0030")
        #: Every ``<message/>`` the client received (chat, normal, headline and error).
        self.messages: asyncio.Queue[Message] = asyncio.Queue()
        self._session = asyncio.get_running_loop().create_future()
        self.xmpp.register_handler(
            Callback(
                "test-client all messages",
                MatchXPath("{jabber:client}message"),
                self._on_message_stanza,
            )
        )
        self.xmpp.add_event_handler("session_start", self._on_session_start)
        self.xmpp.add_event_handler("failed_auth", self._on_failed_auth)

    def _on_message_stanza(self, stanza: Any) -> None:
        self.messages.put_nowait(stanza)

    @property
    def jid(self) -> str:
        """The full JID after login (bare before)."""
        return str(self.xmpp.boundjid)

    async def _on_session_start(self, _event: Any) -> None:
        if self.send_presence:
            try:
                await self.xmpp.get_roster(timeout=DEFAULT_TIMEOUT_S)
            except (IqError, IqTimeout):
                pass
            self.xmpp.send_presence()
        if not self._session.done():
            self._session.set_result(True)

    def _on_failed_auth(self, _event: Any) -> None:
        if not self._session.done():
            self._session.set_exception(PermissionError(f"authentication failed for {self.jid}"))

    async def connect(self, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        """Connect and log in; raises ``TimeoutError`` if the session does not start in time."""
        self.xmpp.connect(self.host, self.port)
        await asyncio.wait_for(asyncio.shield(self._session), timeout)

    async def disconnect(self, timeout: float = 2.0) -> None:
        """Close the stream and wait (bounded) for the server to close too."""
        if self.xmpp.transport is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.xmpp.disconnect(wait=timeout), timeout + 1.0)
        else:
            self.xmpp.cancel_connection_attempt()
        run_filters = getattr(self.xmpp, "_run_out_filters", None)
        if run_filters is not None:
            run_filters.cancel()
            await asyncio.gather(run_filters, return_exceptions=True)

    async def __aenter__(self) -> XmppTestClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.disconnect()

    # -- sending ----------------------------------------------------------------------------

    def send_message(
        self,
        to: str,
        body: str | None,
        *,
        mtype: str = "chat",
        mid: str | None = None,
        subject: str | None = None,
        thread: str | None = None,
        lang: str | None = None,
        xhtml: str | None = None,
    ) -> str:
        """Send a message; returns its id. ``xhtml`` is the inner XHTML ``<body/>`` markup."""
        msg = self.xmpp.make_message(mto=to, mbody=body, msubject=subject, mtype=mtype)
        msg["id"] = mid or f"tc{next(_ids)}"
        if thread is not None:
            msg["thread"] = thread
        if lang is not None:
            msg["lang"] = lang
        if xhtml is not None:
            html = ET.SubElement(msg.xml, "{http://jabber.org/protocol/xhtml-im}html")
            html.append(ET.fromstring(xhtml))
        msg.send()
        return str(msg["id"])

    def send_raw(self, data: str) -> None:
        """Write raw XML on the client stream (the caller is responsible for its validity)."""
        self.xmpp.send_raw(data)

    # -- receiving --------------------------------------------------------------------------

    async def next_message(self, timeout: float = DEFAULT_TIMEOUT_S) -> Message:
        """The next received message (any type)."""
        return await asyncio.wait_for(self.messages.get(), timeout)

    async def wait_message(
        self, predicate: Callable[[Message], bool], timeout: float = DEFAULT_TIMEOUT_S
    ) -> Message:
        """The first received message that satisfies ``predicate``; earlier ones are dropped."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError("no matching message")
            msg = await asyncio.wait_for(self.messages.get(), remaining)
            if predicate(msg):
                return msg

    async def expect_no_message(self, within: float) -> None:
        """Assert that nothing arrives within ``within`` seconds."""
        try:
            msg = await asyncio.wait_for(self.messages.get(), within)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected message: {msg}")

    async def disco_info(
        self, jid: str, node: str | None = None, timeout: float = DEFAULT_TIMEOUT_S
    ) -> Iq:
        """Send a disco#info query and return the result ``<iq/>`` (raises ``IqError``)."""
        result: Iq = await self.xmpp.plugin["xep_0030"].get_info(
            jid=jid, node=node, timeout=timeout
        )
        return result
