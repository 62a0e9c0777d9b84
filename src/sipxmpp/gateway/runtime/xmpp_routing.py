"""The runtime's handler of the XMPP edge: chats to the chat service, other messages to the
pager bridge, presence to presence.

The edge takes one handler (:class:`~sipxmpp.gateway.xmpp.handler.XmppHandler`, with the
optional presence methods of :class:`~sipxmpp.gateway.xmpp.handler.XmppPresenceHandler`).
:class:`XmppRouter` is that handler: it forwards each kind of stanza to the service that owns
it and tells every service about the link state. It decides nothing itself.
"""

from __future__ import annotations

import logging
from typing import Protocol

from sipxmpp.gateway.xmpp.errors import Ignore
from sipxmpp.mapping.model import StanzaError, XmppMessage
from sipxmpp.mapping.presence import XmppPresence

__all__ = ["MessageService", "PresenceHandler", "XmppRouter"]

log = logging.getLogger("sipxmpp.xmpp_routing")


class MessageService(Protocol):
    async def on_message(self, msg: XmppMessage) -> None: ...

    async def on_message_error(self, msg: XmppMessage) -> None: ...

    def on_link_state(self, up: bool) -> None: ...


class PresenceHandler(Protocol):
    async def on_presence(self, presence: XmppPresence) -> None: ...

    async def on_presence_error(self, presence: XmppPresence, error: StanzaError) -> None: ...

    def on_link_state(self, up: bool) -> None: ...


class XmppRouter:
    """Forwards the XMPP edge's stanzas: ``<message/>`` to ``messages``, ``<presence/>`` to
    ``presence`` (dropped silently, as the edge would, when presence is off)."""

    def __init__(
        self,
        messages: MessageService,
        presence: PresenceHandler | None,
        chat: MessageService | None = None,
    ) -> None:
        self._messages = messages
        self._presence = presence
        #: Session-mode IM (runtime/chat.py): sees ``type='chat'`` messages first and hands
        #: what it does not carry in MSRP back to the pager bridge itself.
        self._chat = chat

    async def on_message(self, msg: XmppMessage) -> None:
        chat = self._chat
        if chat is not None and msg.type == "chat":
            await chat.on_message(msg)
            return
        await self._messages.on_message(msg)

    async def on_message_error(self, msg: XmppMessage) -> None:
        if self._chat is not None:
            await self._chat.on_message_error(msg)
            return
        await self._messages.on_message_error(msg)

    async def on_presence(self, presence: XmppPresence) -> None:
        if self._presence is None:
            raise Ignore()
        await self._presence.on_presence(presence)

    async def on_presence_error(self, presence: XmppPresence, error: StanzaError) -> None:
        if self._presence is not None:
            await self._presence.on_presence_error(presence, error)

    def on_link_state(self, up: bool) -> None:
        for service in (self._messages, self._presence, self._chat):
            if service is None:
                continue
            try:
                service.on_link_state(up)
            except Exception:
                log.exception("xmpp.link_state_failed", extra={"fields": {"up": up}})
