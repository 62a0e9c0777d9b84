"""Presence stanzas: from the component stream to the runtime's handler, behind the boundary.

The presence counterpart of :mod:`.message`. The component hands every ``<presence/>``
element to :class:`PresenceDispatcher` (``stream.GatewayComponent``'s presence sink),
skipping slixmpp's stanza objects, its matcher loop and its roster bookkeeping: the gateway
keeps presence state itself (``runtime/presence.py``), and a roster per contact inside
slixmpp would let a presence flood grow memory.

Routing (RFC 6121 §4.7.1 types):

===========================  ================================================================
no type, ``unavailable``,     ``handler.on_presence`` behind :func:`boundary`; an escaping
``subscribe(d)``,             ``XMPPError`` / :class:`StanzaErrorException` is answered with a
``unsubscribe(d)``, ``probe``  ``type='error'`` presence to the sender (RFC 6120 §8.3)
``error``                     ``handler.on_presence_error`` if the handler has it; never
                              answered (RFC 6120 §8.3.1)
undefined type/show/priority  answered ``bad-request`` (RFC 6121 §4.7.1, §4.7.2)
no ``from``                   dropped and logged: it can be neither mapped nor answered
handler without on_presence   dropped: the gateway then does not serve presence
===========================  ================================================================

Handlers start eagerly, exactly as message handlers do (see :mod:`.message`), and at most
:data:`MAX_IN_FLIGHT_PRESENCES` of them may be suspended at once; beyond that a stanza is
answered ``resource-constraint`` (type ``wait``) instead of queued.
"""

from __future__ import annotations

import asyncio
import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable, Coroutine
from typing import Any

from slixmpp.exceptions import XMPPError

from sipxmpp.gateway.xmpp.dispatch.message import _resume
from sipxmpp.gateway.xmpp.errors import RemoteXmppError, boundary
from sipxmpp.gateway.xmpp.presence_convert import (
    presence_error_from_element,
    presence_from_element,
)
from sipxmpp.mapping.model import StanzaError, StanzaRefused
from sipxmpp.mapping.presence import PresenceType, XmppPresence

__all__ = ["MAX_IN_FLIGHT_PRESENCES", "PresenceDispatcher", "Replier"]

log = logging.getLogger(__name__)

#: Upper bound on presence handler tasks suspended at once. A presence handler suspends only
#: to resolve a SIP next hop or to read the store; 10,000 is two seconds of the 5,000
#: stanzas/s design load, and the bound keeps a flood from growing memory.
MAX_IN_FLIGHT_PRESENCES = 10_000

#: Sends a presence error back: ``(presence received, error)``.
Replier = Callable[[XmppPresence, StanzaError], None]


class PresenceDispatcher:
    """Turns ``<presence/>`` elements into handler calls and error replies.

    :param handler: the runtime's handler (any object; ``on_presence`` and
        ``on_presence_error`` are optional).
    :param reply: sends a ``type='error'`` presence answering a stanza.
    :param default_to: the component's JID, for a stanza without ``to``.
    """

    def __init__(
        self,
        handler: object,
        reply: Replier,
        *,
        default_to: str,
        max_in_flight: int = MAX_IN_FLIGHT_PRESENCES,
    ) -> None:
        self._on_presence = getattr(handler, "on_presence", None)
        self._on_presence_error = getattr(handler, "on_presence_error", None)
        self._reply = reply
        self._default_to = default_to
        self._max_in_flight = max_in_flight
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()

    @property
    def in_flight(self) -> int:
        """Handler tasks currently suspended."""
        return len(self._tasks)

    def __call__(self, xml: ET.Element) -> None:
        """Route one incoming ``<presence/>`` element (called from the stream's data callback)."""
        if xml.get("type") == "error":
            self._route_error(xml)
            return
        if self._on_presence is None:
            return
        try:
            presence = presence_from_element(xml, default_to=self._default_to)
        except RemoteXmppError as exc:
            log.warning("dropping presence stanza: %s", exc.msg)
            return
        except StanzaRefused as exc:
            self._answer(_sender_view(xml, self._default_to), exc.error)
            return
        if len(self._tasks) >= self._max_in_flight:
            log.warning(
                "%d presences in flight: refusing one from %s", len(self._tasks), presence.from_jid
            )
            self._answer(presence, StanzaError("resource-constraint", "wait"))
            return
        self._spawn(self._deliver(presence))

    def _route_error(self, xml: ET.Element) -> None:
        if self._on_presence_error is None:
            return
        from_jid = xml.get("from")
        if not from_jid:
            return
        presence = XmppPresence(
            from_jid=from_jid,
            to_jid=xml.get("to") or self._default_to,
            type=PresenceType.ERROR,
            id=xml.get("id"),
        )
        self._spawn(self._deliver_error(presence, presence_error_from_element(xml)))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` now up to its first suspension; only then give it a Task."""
        try:
            waiting_on = coro.send(None)
        except StopIteration:
            return
        except Exception:  # _deliver/_deliver_error catch what a handler raises; be safe
            log.exception("presence handler failed")
            return
        task = self._loop.create_task(_resume(coro, waiting_on))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _answer(self, presence: XmppPresence, error: StanzaError) -> None:
        try:
            self._reply(presence, error)
        except Exception:  # a reply that cannot be sent must not break the stream
            log.exception("could not answer a presence stanza with %s", error.condition)

    @boundary
    async def _call_on_presence(self, presence: XmppPresence) -> None:
        assert self._on_presence is not None
        await self._on_presence(presence)

    async def _deliver(self, presence: XmppPresence) -> None:
        try:
            await self._call_on_presence(presence)
        except XMPPError as err:
            self._answer(presence, _stanza_error(err))

    async def _deliver_error(self, presence: XmppPresence, error: StanzaError) -> None:
        try:
            assert self._on_presence_error is not None
            await self._on_presence_error(presence, error)
        except Exception:
            log.exception(
                "on_presence_error failed for a presence error from %s", presence.from_jid
            )

    async def aclose(self) -> None:
        """Cancel the handler tasks still running and wait for them."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def _sender_view(xml: ET.Element, default_to: str) -> XmppPresence:
    """A minimal presence naming the sender of an unparsable stanza, to answer it."""
    return XmppPresence(
        from_jid=xml.get("from") or default_to,
        to_jid=xml.get("to") or default_to,
        id=xml.get("id"),
    )


def _stanza_error(err: XMPPError) -> StanzaError:
    """The model of the error slixmpp's exception describes (what the boundary raised)."""
    text = err.text or None
    uri = getattr(err, "uri", None)
    return StanzaError(str(err.condition), str(err.etype), text, uri)
