"""In-memory and loopback harnesses for the XMPP edge tests.

* :class:`RecordingHandler`: an ``XmppHandler`` that records calls and can be told to raise.
* :class:`MemoryComponent`: the edge's stream, dispatcher and disco wired to an in-memory
  transport (no sockets): tests push server XML in with :meth:`MemoryComponent.recv` and read
  what the component wrote with :meth:`MemoryComponent.sent`.
* :class:`FakeComponentServer`: a scripted server component port on 127.0.0.1 (port 0) that
  speaks the accept side of XEP-0114, for tests of the real connect/reconnect path.
* :func:`xml_shape` / :func:`assert_xml`: structural XML comparison (namespaces resolved,
  attribute order and whitespace-only text ignored).
"""

from __future__ import annotations

import asyncio
import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

from sipxmpp.gateway.xmpp.disco import DiscoRegistry
from sipxmpp.gateway.xmpp.dispatch import MessageDispatcher, install_disco
from sipxmpp.gateway.xmpp.stream import GatewayComponent
from sipxmpp.mapping.model import XmppMessage

COMPONENT = "sip.example.test"
SECRET = "s3cret"
#: The component secret configured in the test Prosody (tests/xmpp/conftest.py).
PROSODY_SECRET = "component-secret"
STREAM_ID = "3BF96D32"
NS_COMPONENT = "jabber:component:accept"
NS_STREAM = "http://etherx.jabber.org/streams"

SERVER_HEADER = (
    "<?xml version='1.0'?>"
    f"<stream:stream xmlns:stream='{NS_STREAM}' xmlns='{NS_COMPONENT}'"
    f" from='{COMPONENT}' id='{STREAM_ID}'>"
)


# -- XML comparison -----------------------------------------------------------------------


def xml_shape(el: ET.Element) -> tuple[Any, ...]:
    """A comparable view of an element: tag, attributes, text, children (recursively)."""
    text = el.text if el.text and el.text.strip() else None
    return (
        el.tag,
        tuple(sorted(el.attrib.items())),
        text,
        tuple(xml_shape(child) for child in el),
    )


def parse_stanza(xml: str, default_ns: str = NS_COMPONENT) -> ET.Element:
    """Parse a stanza written as it would appear on a component stream."""
    wrapped = (
        f"<stream:stream xmlns:stream='{NS_STREAM}' xmlns='{default_ns}'>{xml}</stream:stream>"
    )
    return ET.fromstring(wrapped)[0]


def assert_xml(actual: ET.Element, expected: str) -> None:
    exp = parse_stanza(expected)
    assert xml_shape(actual) == xml_shape(exp), (
        f"\nactual:   {ET.tostring(actual, encoding='unicode')}"
        f"\nexpected: {ET.tostring(exp, encoding='unicode')}"
    )


class StreamReader:
    """Collects the depth-1 elements of one direction of an XML stream."""

    def __init__(self) -> None:
        self.parser = ET.XMLPullParser(("start", "end"))
        self.depth = 0
        self.header: ET.Element | None = None
        self.elements: list[ET.Element] = []
        self.closed = False

    def feed(self, data: bytes) -> list[ET.Element]:
        self.parser.feed(data)
        new: list[ET.Element] = []
        for event, el in self.parser.read_events():
            assert isinstance(el, ET.Element)
            if event == "start":
                if self.depth == 0:
                    self.header = el
                self.depth += 1
            else:
                self.depth -= 1
                if self.depth == 0:
                    self.closed = True
                elif self.depth == 1:
                    new.append(el)
                    if self.header is not None:
                        del self.header[:]  # keep the attributes, drop old stanzas
        self.elements.extend(new)
        return new


# -- handler --------------------------------------------------------------------------------


class RecordingHandler:
    """An XmppHandler that records what it gets; ``raise_on_message`` makes it fail."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[XmppMessage] = asyncio.Queue()
        self.errors: asyncio.Queue[XmppMessage] = asyncio.Queue()
        self.link_states: list[bool] = []
        self.link_changed = asyncio.Event()
        self.raise_on_message: BaseException | None = None
        self.raise_on_error: BaseException | None = None
        self.block: asyncio.Event | None = None

    async def on_message(self, msg: XmppMessage) -> None:
        if self.block is not None:
            await self.block.wait()
        if self.raise_on_message is not None:
            raise self.raise_on_message
        self.messages.put_nowait(msg)

    async def on_message_error(self, msg: XmppMessage) -> None:
        self.errors.put_nowait(msg)
        if self.raise_on_error is not None:
            raise self.raise_on_error

    def on_link_state(self, up: bool) -> None:
        self.link_states.append(up)
        self.link_changed.set()

    async def wait_link_states(self, states: list[bool], timeout: float = 10.0) -> None:
        async def _wait() -> None:
            while self.link_states != states:
                self.link_changed.clear()
                await self.link_changed.wait()

        await asyncio.wait_for(_wait(), timeout)


# -- in-memory component --------------------------------------------------------------------


class MemoryTransport(asyncio.Transport):
    """Captures writes; closing reports connection_lost to the protocol, as asyncio would."""

    def __init__(self, protocol: Any) -> None:
        super().__init__()
        self.protocol = protocol
        self.buffer = bytearray()
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.closed:
            return
        self.buffer += bytes(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def get_write_buffer_size(self) -> int:
        return 0


class MemoryComponent:
    """The edge's stream + dispatcher + disco over a :class:`MemoryTransport`."""

    def __init__(self, handler: Any, *, max_in_flight: int = 10_000) -> None:
        self.handler = handler
        self.registry = DiscoRegistry(COMPONENT, "SIP gateway")
        self.xmpp = GatewayComponent(
            COMPONENT, SECRET, "127.0.0.1", 5347, message_sink=lambda xml: self.dispatcher(xml)
        )
        self.dispatcher = MessageDispatcher(
            self.xmpp, handler, default_to=COMPONENT, max_in_flight=max_in_flight
        )
        install_disco(self.xmpp, self.registry)
        self.transport = MemoryTransport(self.xmpp)
        self.reader = StreamReader()
        self._read = 0
        self._filters: asyncio.Task[None] | None = None

    async def open(self, handshake: bool = True) -> None:
        """Connect, receive the server header and (optionally) accept the handshake."""
        self._filters = asyncio.ensure_future(self.xmpp.run_filters())
        self.xmpp.connection_made(self.transport)
        self.recv(SERVER_HEADER)
        await self.settle()
        if handshake:
            sent = self.sent()
            assert [el.tag for el in sent] == ["{jabber:component:accept}handshake"], sent
            self.recv("<handshake/>")
            await self.settle()

    async def reopen(self) -> None:
        """Drop the connection and connect again over a fresh transport (a reconnection)."""
        if not self.transport.closed:
            self.transport.close()
        await self.settle()
        self.transport = MemoryTransport(self.xmpp)
        self.reader = StreamReader()
        self._read = 0
        self.xmpp.connection_made(self.transport)
        self.recv(SERVER_HEADER)
        await self.settle()
        self.sent()
        self.recv("<handshake/>")
        await self.settle()

    def recv(self, data: str | bytes) -> None:
        self.xmpp.data_received(data.encode("utf-8") if isinstance(data, str) else data)

    async def settle(self, rounds: int = 20) -> None:
        for _ in range(rounds):
            await asyncio.sleep(0)

    def sent(self) -> list[ET.Element]:
        """Stanzas written since the last call."""
        data = bytes(self.transport.buffer[self._read :])
        self._read = len(self.transport.buffer)
        return self.reader.feed(data)

    async def close(self) -> None:
        await self.dispatcher.aclose()
        if self._filters is not None:
            self._filters.cancel()
            await asyncio.gather(self._filters, return_exceptions=True)
        if not self.transport.closed:
            self.transport.close()
        await self.settle()


# -- loopback fake server -------------------------------------------------------------------


class FakeConnection:
    """One accepted component connection on the fake server."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.reader = StreamReader()
        self.raw = bytearray()
        self.stanzas: asyncio.Queue[ET.Element] = asyncio.Queue()
        self.authenticated = asyncio.Event()
        self.closed = asyncio.Event()
        self.handshake: str | None = None
        self.pings = 0

    @property
    def header(self) -> ET.Element | None:
        return self.reader.header

    def send(self, data: str | bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data.encode("utf-8") if isinstance(data, str) else data)

    async def next_stanza(self, timeout: float = 5.0) -> ET.Element:
        return await asyncio.wait_for(self.stanzas.get(), timeout)

    async def wait_closed(self, timeout: float = 5.0) -> None:
        await asyncio.wait_for(self.closed.wait(), timeout)

    def abort(self) -> None:
        self.writer.transport.abort()


class FakeComponentServer:
    """The accept side of XEP-0114 on 127.0.0.1, scriptable per test.

    :param secret: the secret it checks the handshake against (``None`` accepts any).
    :param header_prefix: bytes sent before the stream header (e.g. a DOCTYPE).
    :param drip: send the greeting one byte at a time.
    :param answer_pings: answer XEP-0199 pings (``False`` simulates a dead server).
    :param send_header: answer the stream header at all (``False`` stalls the handshake).
    """

    def __init__(
        self,
        *,
        secret: str | None = SECRET,
        stream_id: str = STREAM_ID,
        header_prefix: str = "",
        drip: bool = False,
        answer_pings: bool = True,
        send_header: bool = True,
        on_stanza: Callable[[FakeConnection, ET.Element], None] | None = None,
    ) -> None:
        self.secret = secret
        self.stream_id = stream_id
        self.header_prefix = header_prefix
        self.drip = drip
        self.answer_pings = answer_pings
        self.send_header = send_header
        self.on_stanza = on_stanza
        self.connections: list[FakeConnection] = []
        self.new_connections: asyncio.Queue[FakeConnection] = asyncio.Queue()
        self.server: asyncio.Server | None = None
        self.port = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, port: int = 0) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def stop_listening(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None

    async def close(self) -> None:
        await self.stop_listening()
        for conn in self.connections:
            conn.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def next_connection(self, timeout: float = 5.0) -> FakeConnection:
        return await asyncio.wait_for(self.new_connections.get(), timeout)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = FakeConnection(writer)
        self.connections.append(conn)
        self.new_connections.put_nowait(conn)
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                conn.raw += data
                had_header = conn.reader.header is not None
                try:
                    new = conn.reader.feed(data)
                except ET.ParseError:
                    break
                if not had_header and conn.reader.header is not None and self.send_header:
                    greeter = asyncio.ensure_future(self._greet(conn))
                    self._tasks.add(greeter)  # type: ignore[arg-type]
                    greeter.add_done_callback(self._tasks.discard)  # type: ignore[arg-type]
                for el in new:
                    self._handle(conn, el)
                if conn.reader.closed:
                    conn.send("</stream:stream>")
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            conn.closed.set()
            writer.close()
            self._tasks.discard(task)

    async def _greet(self, conn: FakeConnection) -> None:
        greeting = (self.header_prefix + SERVER_HEADER.replace(STREAM_ID, self.stream_id)).encode()
        if not self.drip:
            conn.send(greeting)
            return
        try:
            for i in range(len(greeting)):
                if conn.closed.is_set():
                    return
                conn.send(greeting[i : i + 1])
                await conn.writer.drain()
                await asyncio.sleep(0.001)
        except ConnectionError:
            return

    def _handle(self, conn: FakeConnection, el: ET.Element) -> None:
        if el.tag == f"{{{NS_COMPONENT}}}handshake":
            conn.handshake = el.text or ""
            expected = hashlib.sha1((self.stream_id + (self.secret or "")).encode()).hexdigest()
            if self.secret is None or conn.handshake == expected:
                conn.send("<handshake/>")
                conn.authenticated.set()
            else:
                conn.send(
                    "<stream:error><not-authorized"
                    " xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"
                    "</stream:stream>"
                )
                conn.writer.close()
            return
        ping = el.find("{urn:xmpp:ping}ping")
        if el.tag == f"{{{NS_COMPONENT}}}iq" and ping is not None and el.get("type") == "get":
            conn.pings += 1
            if self.answer_pings:
                conn.send(
                    f"<iq type='result' id='{el.get('id')}' from='{el.get('to')}'"
                    f" to='{el.get('from')}'/>"
                )
            return
        if self.on_stanza is not None:
            self.on_stanza(conn, el)
        conn.stanzas.put_nowait(el)
