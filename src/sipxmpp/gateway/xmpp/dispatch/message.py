"""Message stanzas: from the component stream to the runtime's handler, behind the boundary.

The component hands every ``<message/>`` element straight to :class:`MessageDispatcher`
(``stream.GatewayComponent._spawn_event``), skipping slixmpp's stanza-object construction and its
per-handler matcher loop: the gateway owns every message addressed to its domain, and this is
the path that must carry thousands of stanzas per second. slixmpp stanza objects are built only
when an error reply is needed, so the reply goes through slixmpp's own mechanism.

Routing (RFC 6121 §5.2.2 types):

=============================  ==============================================================
``normal``/``chat``/``headline``  ``handler.on_message`` in a task, behind :func:`boundary`;
                               an escaping ``XMPPError`` is answered by :func:`reply_with_error`
``error``                      ``handler.on_message_error``; never answered (RFC 6120 §8.3.1)
``groupchat``                  answered ``feature-not-implemented``: the gateway joins no
                               rooms yet, so a groupchat message to it is misdirected
no ``from``                    dropped and logged: it can be neither mapped nor answered
=============================  ==============================================================

At most :data:`MAX_IN_FLIGHT_MESSAGES` handler tasks run at once; beyond that a message is
answered ``resource-constraint`` (type ``wait``, RFC 6120 §8.3.3.18) instead of queued.

Handlers start eagerly (what Python 3.12 calls an eager task): the handler coroutine runs
at once, inside the stream's data callback, up to its first real suspension. Most messages
never suspend (the next hop is known, the SIP request is handed to the core and the handler
returns), so they cost no Task, no extra loop iteration and no done-callback. A handler
that does suspend (a DNS lookup) continues in a Task from where it stopped, and counts
against :data:`MAX_IN_FLIGHT_MESSAGES` from then on. Messages are thus also handed to the
runtime in stream order.
"""

from __future__ import annotations

import asyncio
import logging
import xml.etree.ElementTree as ET
from collections.abc import Coroutine
from typing import Any

from slixmpp.exceptions import XMPPError
from slixmpp.stanza import Message

from sipxmpp.gateway.xmpp.convert import message_from_element
from sipxmpp.gateway.xmpp.errors import RemoteXmppError, boundary, reply_with_error
from sipxmpp.gateway.xmpp.handler import XmppHandler
from sipxmpp.mapping.model import XmppMessage

__all__ = ["MAX_IN_FLIGHT_MESSAGES", "MessageDispatcher"]

log = logging.getLogger(__name__)

#: Upper bound on message handler tasks running at once. Each holds its stanza; without a
#: bound, a server flooding the component while the SIP side is slow would grow memory without
#: limit. 10,000 is two seconds of the gateway's 5,000 msg/s design load.
MAX_IN_FLIGHT_MESSAGES = 10_000


class MessageDispatcher:
    """Turns ``<message/>`` elements into handler calls and error replies.

    :param stream: the slixmpp component (used only to build reply stanzas).
    :param handler: the runtime's handler.
    :param default_to: the component's JID, for a stanza without ``to``.
    """

    def __init__(
        self,
        stream: Any,
        handler: XmppHandler,
        *,
        default_to: str,
        max_in_flight: int = MAX_IN_FLIGHT_MESSAGES,
    ) -> None:
        self._stream = stream
        self._handler = handler
        self._default_to = default_to
        self._max_in_flight = max_in_flight
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()

    @property
    def in_flight(self) -> int:
        """Handler tasks currently running."""
        return len(self._tasks)

    def __call__(self, xml: ET.Element) -> None:
        """Route one incoming ``<message/>`` element (called from the stream's data callback)."""
        try:
            msg = message_from_element(xml, default_to=self._default_to)
        except RemoteXmppError as exc:
            log.warning("dropping message stanza: %s", exc.msg)
            return
        if msg.type == "error":
            self._spawn(self._deliver_error(msg))
        elif msg.type == "groupchat":
            self._reply(
                xml,
                XMPPError(
                    condition="feature-not-implemented",
                    text="groupchat messages are not supported by this gateway",
                    etype="cancel",
                ),
            )
        elif len(self._tasks) >= self._max_in_flight:
            log.warning(
                "%d messages in flight: refusing one from %s", len(self._tasks), msg.from_jid
            )
            self._reply(xml, XMPPError(condition="resource-constraint", etype="wait"))
        else:
            self._spawn(self._deliver(xml, msg))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` now up to its first suspension; only then give it a Task."""
        try:
            waiting_on = coro.send(None)
        except StopIteration:
            return  # finished without suspending: the common case
        except Exception:  # _deliver/_deliver_error catch what a handler raises; be safe
            log.exception("message handler failed")
            return
        task = self._loop.create_task(_resume(coro, waiting_on))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _reply(self, xml: ET.Element, err: XMPPError) -> None:
        try:
            stanza = Message(self._stream, xml, recv=True)  # type: ignore[no-untyped-call]
            reply_with_error(stanza, err)
        except Exception:  # a reply that cannot be built must not break the stream
            log.exception("could not send an error reply to a message stanza")

    @boundary
    async def _call_on_message(self, msg: XmppMessage) -> None:
        await self._handler.on_message(msg)

    async def _deliver(self, xml: ET.Element, msg: XmppMessage) -> None:
        try:
            await self._call_on_message(msg)
        except XMPPError as err:
            self._reply(xml, err)

    async def _deliver_error(self, msg: XmppMessage) -> None:
        try:
            await self._handler.on_message_error(msg)
        except Exception:
            log.exception("on_message_error failed for a message error from %s", msg.from_jid)

    async def aclose(self) -> None:
        """Cancel the handler tasks still running and wait for them."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


async def _resume(coro: Coroutine[Any, Any, None], waiting_on: Any) -> None:
    """Drive a coroutine that :meth:`MessageDispatcher._spawn` started, from its suspension.

    A coroutine suspended in ``await future`` has yielded that future (asyncio's
    ``Future.__await__``) and continues, reading the future's result itself, when sent
    ``None`` after the future is done; a bare ``yield`` (``asyncio.sleep(0)``) yields
    ``None``. This is what ``asyncio.Task`` does step by step; cancelling the Task running
    this cancels the awaited future, so the coroutine sees ``CancelledError`` where it waits.
    """
    while True:
        if waiting_on is None:
            await asyncio.sleep(0)
        else:
            waiting_on._asyncio_future_blocking = False
            try:
                await asyncio.wait((waiting_on,))
            except asyncio.CancelledError:
                waiting_on.cancel()
                if not waiting_on.cancelled():  # it was done already: cancel the coroutine
                    waiting_on = coro.throw(asyncio.CancelledError())
                    continue
        try:
            waiting_on = coro.send(None)
        except StopIteration:
            return
