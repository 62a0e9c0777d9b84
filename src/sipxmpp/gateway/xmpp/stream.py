"""The slixmpp ``ComponentXMPP`` stream (XEP-0114) the edge runs, hardened for a gateway.

Theory of operation
-------------------
slixmpp owns the socket protocol: ``connection_made`` sends our stream header, ``data_received``
feeds an ``XMLPullParser`` and calls ``_spawn_event`` for every complete stanza, and the server's
stream header triggers ``start_stream_handler``, where the component sends its handshake. This
subclass changes seven things:

1. **Restricted XML** (RFC 6120 §11.1). Every chunk passes a :class:`RestrictedXmlGuard` before
   the parser sees it; a DTD, comment or processing instruction closes the stream with a
   ``<restricted-xml/>`` stream error, so entity declarations are never parsed.
2. **Stanza size** (RFC 6120 §13.12). More than :data:`MAX_INCOMING_STANZA_BYTES` without a
   complete stanza closes the stream with ``<policy-violation/>`` (§4.9.3.14), bounding the
   parser's memory.
3. **Handshake** (XEP-0114 §3) computed by :func:`handshake_digest`, the function the XEP's test
   vector checks; a server header without a stream ID is refused (``<invalid-xml/>``).
4. **Message and presence fast paths.** ``<message/>`` elements go straight to the message
   dispatcher, and ``<presence/>`` elements to the presence sink when one is given, without
   slixmpp's stanza objects and matcher loop; iq and stream-level elements take slixmpp's
   usual path (disco, ping and handshake handlers).
5. **Unhandled requests** get ``<service-unavailable/>`` (RFC 6120 §8.4), see
   :class:`ServiceUnavailableIq`.
6. **Closing.** A server's ``</stream:stream>`` is answered with ours before the TCP
   connection closes (RFC 6120 §4.4); slixmpp would just drop the connection.
7. **No roster.** slixmpp's default message and presence handlers (and the component's
   presence-probe roster handling) are removed: the runtime keeps presence state itself
   (``runtime/presence.py``), and a roster entry per contact would let a presence flood grow
   memory.

Sockets get ``TCP_NODELAY``: stanzas are small and latency matters more than segment count.
On Linux the socket also ACKs every read at once (``TCP_QUICKACK``, re-armed per read), so a
server that keeps Nagle's algorithm on is not held up by our delayed ACKs; and reads are
capped at :data:`MAX_READ_BYTES` so the SIP side is served between them.
"""

from __future__ import annotations

import logging
import socket
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

from slixmpp.componentxmpp import ComponentXMPP
from slixmpp.stanza import Handshake, Iq
from slixmpp.xmlstream.xmlstream import NotConnectedError

from sipxmpp.gateway.xmpp.convert import MESSAGE_TAGS
from sipxmpp.gateway.xmpp.errors import RemoteXmppError
from sipxmpp.gateway.xmpp.handshake import handshake_digest
from sipxmpp.gateway.xmpp.presence_convert import PRESENCE_TAGS
from sipxmpp.gateway.xmpp.stream_guard import RestrictedXmlGuard

__all__ = [
    "MAX_INCOMING_STANZA_BYTES",
    "NS_STREAM_ERRORS",
    "STREAM_ERROR_GRACE_S",
    "GatewayComponent",
    "ServiceUnavailableIq",
]

log = logging.getLogger(__name__)

NS_STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"

#: Largest stanza accepted from the server, in bytes (counted from the end of the previous
#: stanza and per socket read, so the bound may be exceeded by one read of at most 256 KiB). Servers cap what they route far below this:
#: Prosody 0.12 defaults to 256 KiB for c2s and 512 KiB for s2s, and RFC 6120 §13.12 asks only
#: for at least 10,000 bytes. Anything bigger is a broken or hostile server.
MAX_INCOMING_STANZA_BYTES = 1024 * 1024

#: Linux's TCP_QUICKACK (absent elsewhere, where ACKs are left to the kernel's defaults).
_TCP_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)

#: Bytes read from the server per readiness event: about 200 message stanzas, a few tens of
#: milliseconds of gateway work, so that SIP datagrams (responses to the requests those
#: stanzas became) are read in between rather than after a whole 256 KiB read. Large enough
#: that a burst still costs few system calls.
MAX_READ_BYTES = 64 * 1024

#: Seconds a peer has to read our stream error before the socket is aborted regardless.
STREAM_ERROR_GRACE_S = 2.0


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class ServiceUnavailableIq(Iq):
    """``<iq/>`` whose unhandled get/set is answered ``service-unavailable``.

    RFC 6120 §8.4: a get or set whose payload the entity does not understand MUST be answered
    with ``<service-unavailable/>``; slixmpp's ``Iq.unhandled`` answers
    ``feature-not-implemented``.
    """

    def unhandled(self) -> None:
        if self["type"] in ("get", "set"):
            reply = self.reply()  # type: ignore[no-untyped-call]
            reply["error"]["condition"] = "service-unavailable"
            reply["error"]["type"] = "cancel"
            reply.send()


class GatewayComponent(ComponentXMPP):
    """A ``ComponentXMPP`` with the gateway's stream hardening and message fast path.

    :param jid: the component's domain.
    :param secret: the shared secret.
    :param host, port: the server's component port.
    :param message_sink: called with every ``<message/>`` element once the handshake is done.
    :param presence_sink: called with every ``<presence/>`` element once the handshake is done
        (None: presence takes slixmpp's path, where nothing handles it).
    """

    def __init__(
        self,
        jid: str,
        secret: str,
        host: str,
        port: int,
        *,
        message_sink: Callable[[ET.Element], None],
        presence_sink: Callable[[ET.Element], None] | None = None,
    ) -> None:
        super().__init__(jid, secret, host, port)  # type: ignore[no-untyped-call]
        self._guard = RestrictedXmlGuard()
        self._stanza_bytes = 0
        self._failed = False
        self._footer_sent = False
        self._message_sink = message_sink
        self._quickack_sock: Any = None
        self._presence_sink = presence_sink
        # XEP-0199 pings from the edge replace slixmpp's whitespace keepalive.
        self.whitespace_keepalive = False
        for name in ("IM", "IMError", "Presence"):
            self.remove_handler(name)
        self.del_event_handler("presence_probe", self._handle_probe)
        self.remove_stanza(Iq)
        self.register_stanza(ServiceUnavailableIq)
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0199", {"keepalive": False})

    # -- connection -----------------------------------------------------------------------

    def connection_made(self, transport: Any, send_event: bool = True) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError as exc:  # not a TCP socket (e.g. a Unix socket in a test)
                log.debug("TCP_NODELAY not set: %s", exc)
        # asyncio's selector transports read up to ``max_size`` bytes per readiness event
        # (256 KiB by default, about a thousand message stanzas, i.e. a few hundred ms of
        # work handed over in one callback while the SIP socket waits). A smaller read keeps
        # the two sides interleaved; transports without the attribute are left alone.
        if isinstance(getattr(transport, "max_size", None), int):
            transport.max_size = MAX_READ_BYTES
        self._quickack_sock = sock if _TCP_QUICKACK is not None else None
        super().connection_made(transport, send_event)

    def init_parser(self) -> None:
        super().init_parser()
        self._guard.reset()
        self._stanza_bytes = 0
        self._failed = False
        self._footer_sent = False
        # ComponentXMPP sets this on <handshake/> but never clears it; a new connection has
        # not been accepted yet.
        self.sessionstarted = False

    def data_received(self, data: bytes | str) -> None:
        sock = self._quickack_sock
        if sock is not None:
            # Once we write within the ACK timeout of a read (the handshake, an iq answer,
            # any SIP -> XMPP stanza), Linux treats the connection as interactive
            # ("pingpong" mode, tcp_event_data_sent) and reading no longer sends the ACK
            # (tcp_cleanup_rbuf): it waits for the delayed-ACK timer (TCP_DELACK_MIN,
            # 40 ms), and a server with Nagle's algorithm on (Prosody's default) holds its
            # next stanza that long. TCP_QUICKACK leaves the mode and sends the pending ACK
            # (__tcp_sock_set_quickack); our next such write re-enters it, hence per read.
            # Without this, the ACK of the server's <handshake/> took 40 ms (issue 2).
            try:
                sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
            except OSError:
                self._quickack_sock = None
        if self._failed:
            return  # the stream was closed with an error; the socket is closing
        if self.parser is None:
            super().data_received(data)  # slixmpp logs and drops it
            return
        raw = data.encode("utf-8") if isinstance(data, str) else data
        try:
            self._guard.feed(raw)
        except RemoteXmppError as exc:
            self.fail_stream(exc.condition, exc.msg)
            return
        super().data_received(raw)  # resets _stanza_bytes for every completed stanza
        if self._failed:
            return
        # Bytes since the last complete stanza (give or take one read): an endless stanza,
        # or endless character data between stanzas, would otherwise sit in the parser.
        self._stanza_bytes += len(raw)
        if self._stanza_bytes > MAX_INCOMING_STANZA_BYTES:
            self.fail_stream(
                "policy-violation",
                f"more than {MAX_INCOMING_STANZA_BYTES} bytes without a complete stanza",
            )

    def fail_stream(self, condition: str, text: str) -> None:
        """Close the stream with a stream error (RFC 6120 §4.9) and drop the connection.

        The error and the closing tag are flushed before the socket closes (slixmpp's
        ``abort()`` would discard them); a peer that does not read them within
        :data:`STREAM_ERROR_GRACE_S` is cut off.
        """
        log.error("closing the component stream: %s (%s)", condition, text)
        self.parser = None  # nothing more from this connection is parsed
        self._failed = True
        transport = self.transport
        if transport is None:
            return
        try:
            self.send_raw(
                f"<stream:error><{condition} xmlns='{NS_STREAM_ERRORS}'/>"
                f"<text xmlns='{NS_STREAM_ERRORS}'>{_escape(text)}</text>"
                f"</stream:error>{self.stream_footer}"
            )
        except NotConnectedError:
            return
        transport.close()
        self.loop.call_later(STREAM_ERROR_GRACE_S, transport.abort)

    def send_raw(self, data: str | bytes) -> None:
        footer = self.stream_footer
        if data == footer or (isinstance(data, str) and data.endswith(footer)):
            self._footer_sent = True
        super().send_raw(data)

    def abort(self) -> None:
        """slixmpp calls this when the server closed its stream (and to cut a connection)."""
        transport = self.transport
        if transport is not None and self.disconnect_reason == "End of stream":
            # RFC 6120 §4.4: answer the server's closing tag with ours, then close the TCP
            # connection after it is flushed (slixmpp's abort would discard it).
            if not self._footer_sent:
                try:
                    self.send_raw(self.stream_footer)
                except NotConnectedError:
                    pass
            self.cancel_connection_attempt()
            transport.close()
            self.event("killed")
            return
        super().abort()

    # -- stream start and handshake -------------------------------------------------------

    def start_stream_handler(self, xml: ET.Element) -> None:
        """XEP-0114 §3: answer the server's stream header with the handshake."""
        # BaseXMPP's handler records the stream ID, version and language.
        super(ComponentXMPP, self).start_stream_handler(xml)  # type: ignore[no-untyped-call]
        stream_id = xml.get("id")
        if not stream_id:
            self.fail_stream("invalid-xml", "server stream header without an id (XEP-0114 §3)")
            return
        handshake = Handshake(self)
        handshake["value"] = handshake_digest(stream_id, self.secret)
        self.send(handshake)

    # -- incoming stanzas -----------------------------------------------------------------

    def _spawn_event(self, xml: ET.Element) -> None:
        self._stanza_bytes = 0
        if self._failed:
            return  # the rest of a read that ended the stream
        if xml.tag in MESSAGE_TAGS:
            if self.sessionstarted:
                self._message_sink(xml)
            else:
                log.warning("message stanza before the handshake completed: dropped")
            return
        if self._presence_sink is not None and xml.tag in PRESENCE_TAGS:
            if self.sessionstarted:
                self._presence_sink(xml)
            else:
                log.warning("presence stanza before the handshake completed: dropped")
            return
        super()._spawn_event(xml)
