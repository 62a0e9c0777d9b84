"""What the runtime implements to receive from the XMPP edge."""

from __future__ import annotations

from typing import Protocol

from sipxmpp.mapping.model import StanzaError, XmppMessage
from sipxmpp.mapping.presence import XmppPresence

__all__ = ["XmppHandler", "XmppPresenceHandler"]


class XmppHandler(Protocol):
    """The runtime's side of the XMPP edge.

    Every coroutine runs in its own task, so a slow handler does not stall the stream; the
    edge bounds how many run at once (``MAX_IN_FLIGHT_MESSAGES``).
    """

    async def on_message(self, msg: XmppMessage) -> None:
        """A ``<message/>`` of type normal, chat or headline addressed to the component's domain.

        Raise :class:`~sipxmpp.gateway.xmpp.errors.StanzaErrorException` to have the edge answer
        the sender with that stanza error; ``NotImplementedError`` answers
        ``feature-not-implemented``; :class:`~sipxmpp.gateway.xmpp.errors.Ignore` drops the
        stanza silently; anything else is logged and answered ``internal-server-error``.
        """
        ...

    async def on_message_error(self, msg: XmppMessage) -> None:
        """A ``type='error'`` message addressed to the component (``msg.error`` is set and
        ``msg.id`` is the id of the message the gateway sent). Never answered (RFC 6120 §8.3.1);
        exceptions are only logged."""
        ...

    def on_link_state(self, up: bool) -> None:
        """The component link came up (handshake accepted) or went down."""
        ...


class XmppPresenceHandler(Protocol):
    """Optional presence methods of an :class:`XmppHandler`.

    The edge looks for them on the handler it was given: a handler without ``on_presence``
    does not serve presence, and presence stanzas are then dropped unanswered.
    """

    async def on_presence(self, presence: XmppPresence) -> None:
        """A ``<presence/>`` addressed to the component's domain, any type but ``error``.

        Same contract as :meth:`XmppHandler.on_message`: raising
        :class:`~sipxmpp.gateway.xmpp.errors.StanzaErrorException` answers the sender with a
        ``type='error'`` presence; ``Ignore`` drops the stanza silently.
        """
        ...

    async def on_presence_error(self, presence: XmppPresence, error: StanzaError) -> None:
        """A ``type='error'`` presence addressed to the component. Never answered (RFC 6120
        §8.3.1); exceptions are only logged."""
        ...
