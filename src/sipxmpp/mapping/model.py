"""Neutral, protocol-independent views of what crosses the gateway.

The runtime turns a parsed SIP message or a slixmpp stanza into one of these, asks the
mapping functions for the other side's view, and hands that to the other edge. JIDs and
URIs are plain strings here: ``mapping`` never imports slixmpp or the SIP core.

The error family of the whole ``mapping`` package lives here too, so that every mapping
module (addresses, errors, messages, presence, chat, ...) can raise it without import
cycles (design practice 6: local vs remote errors, each with a status hint):

* :class:`LocalMappingError`: our own code (or the operator's configuration) asked for
  something the standards do not allow. A bug or a misconfiguration, never a peer's fault.
* :class:`RemoteMappingError`: the peer sent something the gateway cannot map. Its two
  concrete forms carry the protocol answer the runtime sends back:

  - :class:`MappingRefused` for the SIP side: a SIP final response (status, reason and the
    headers that response needs, e.g. ``Accept`` for 415, ``Warning`` for 480/380);
  - :class:`StanzaRefused` for the XMPP side: the stanza error (RFC 6120 §8.3) to return.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "XmppMessage",
    "StanzaError",
    "SipPagerMessage",
    "MappingError",
    "LocalMappingError",
    "RemoteMappingError",
    "MappingRefused",
    "StanzaRefused",
    "WARN_AGENT",
]

#: The warn-agent of the ``Warning`` headers the mapping asks for: RFC 3261 §20.43 allows
#: a pseudonym (a token) where the sender does not want to name its host and port.
WARN_AGENT = "sipxmpp"


@dataclass(frozen=True, slots=True)
class StanzaError:
    """An XMPP stanza error (RFC 6120 §8.3)."""

    condition: str
    type: str
    text: str | None = None
    #: Character data of ``<gone/>`` / ``<redirect/>``: the new address as an ``xmpp:`` URI.
    uri: str | None = None


@dataclass(frozen=True, slots=True)
class XmppMessage:
    """A ``<message/>`` stanza, reduced to what the gateway maps."""

    from_jid: str
    to_jid: str
    body: str | None = None
    subject: str | None = None
    thread: str | None = None
    id: str | None = None
    type: str = "normal"
    lang: str | None = None
    #: XEP-0071 XHTML-IM: the serialized ``<body xmlns='http://www.w3.org/1999/xhtml'>``.
    xhtml: str | None = None
    error: StanzaError | None = None
    #: XEP-0085 chat state: the local name of the ``http://jabber.org/protocol/chatstates``
    #: child (``active``, ``composing``, ``paused``, ``inactive`` or ``gone``), if any.
    chat_state: str | None = None
    #: XEP-0184 §5.1: the sender asks for a delivery receipt (``<request/>``).
    receipt_request: bool = False
    #: XEP-0184 §5.1: this stanza is a receipt (``<received id='...'/>``) for that stanza id.
    receipt_for: str | None = None


@dataclass(frozen=True, slots=True)
class SipPagerMessage:
    """A SIP MESSAGE request (RFC 3428), reduced to what RFC 7572 maps."""

    request_uri: str
    from_uri: str
    to_uri: str
    call_id: str | None = None
    subject: str | None = None
    content_type: str = "text/plain;charset=UTF-8"
    content_language: str | None = None
    body: bytes = b""
    #: Display name of the From header, if any.
    from_display: str | None = None
    #: The Contact of the request, if any: its URI or the whole header value (a
    #: name-addr is unwrapped). When it is a public GRUU
    #: (RFC 5627 §3.1: the sender's AOR plus ``;gr=<instance>``) the sender is "known by
    #: its GRUU" and RFC 7572 §5 maps it to a full JID.
    contact_uri: str | None = None


class MappingError(Exception):
    """Base class of every error the mapping package raises on purpose."""


class LocalMappingError(MappingError, ValueError):
    """Our side asked for something illegal (bad configuration, API misuse)."""


class RemoteMappingError(MappingError):
    """The peer sent something the gateway cannot map; see the two subclasses."""


class MappingRefused(RemoteMappingError):
    """A SIP request cannot be mapped into XMPP: answer it with this final response.

    ``status``/``reason`` form the status line. ``accept`` is the value of the ``Accept``
    header the response must carry (RFC 3261 §21.4.13: a 415 lists what is acceptable).
    ``warning`` is ``(warn-code, warn-text)`` for a ``Warning`` header (RFC 3261 §20.43).
    :attr:`headers` renders both as ready-to-send header fields.
    """

    def __init__(
        self,
        status: int,
        reason: str,
        detail: str | None = None,
        *,
        accept: str | None = None,
        warning: tuple[int, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {reason}" + (f": {detail}" if detail else ""))
        self.status = status
        self.reason = reason
        self.detail = detail
        self.accept = accept
        self.warning = warning

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        """The header fields the response needs, as ``(name, value)`` pairs."""
        fields: list[tuple[str, str]] = []
        if self.accept is not None:
            fields.append(("Accept", self.accept))
        if self.warning is not None:
            code, text = self.warning
            quoted = text.replace("\\", "\\\\").replace('"', '\\"')
            fields.append(("Warning", f'{code} {WARN_AGENT} "{quoted}"'))
        return tuple(fields)

    def __repr__(self) -> str:
        return (
            f"MappingRefused({self.status!r}, {self.reason!r}, {self.detail!r}, "
            f"accept={self.accept!r}, warning={self.warning!r})"
        )


class StanzaRefused(RemoteMappingError):
    """An XMPP stanza cannot be mapped into SIP: answer it with ``error``."""

    def __init__(self, error: StanzaError) -> None:
        super().__init__(
            f"{error.type}/{error.condition}" + (f": {error.text}" if error.text else "")
        )
        self.error = error

    def __repr__(self) -> str:
        return f"StanzaRefused({self.error!r})"
