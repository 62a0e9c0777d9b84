"""SIP over TCP through the transport manager: inbound and outbound connections,
connection reuse, loss reporting, keep-alive, idle timeout, write-buffer bounds, caps."""

from __future__ import annotations

import asyncio
import socket

import pytest
from transport_fake_core import FakeCore, answer_ok, ok, options, until

from sipxmpp.gateway.runtime.mallocpolicy import MMAP_THRESHOLD
from sipxmpp.gateway.sip.address import TransportAddress
from sipxmpp.gateway.transport import (
    ListenAddress,
    SipTransportManager,
    TransportConfig,
    TransportLimits,
)
from sipxmpp.gateway.transport.sip_stream import PING, STREAM_READ_BYTES

TCP_ONLY = TransportConfig(udp=None, tcp=ListenAddress())


class PlainServer:
    """A bare TCP peer on 127.0.0.1: records what each connection sends it."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.eofs = 0
        self.server: asyncio.Server | None = None

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                self.eofs += 1
                return
            self.chunks.append(chunk)

    async def close(self) -> None:
        for w in self.writers:
            w.close()
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def read_until(reader: asyncio.StreamReader, marker: bytes, timeout: float = 3.0) -> bytes:
    return await asyncio.wait_for(reader.readuntil(marker), timeout)


async def test_inbound_request_answered_on_the_same_connection() -> None:
    core = FakeCore(responder=answer_ok)
    async with SipTransportManager(TCP_ONLY, lambda b: core) as manager:
        reader, writer = await connect(manager.local_addresses["tcp"][1])
        # One byte at a time: framing is the core's job, the edge passes bytes through.
        for byte in options("t1"):
            writer.write(bytes([byte]))
            await writer.drain()
        reply = await read_until(reader, b"\r\n\r\n")
        assert reply == ok("t1")
        _, source = core.messages[0]
        assert source.transport == "tcp" and source.host == "127.0.0.1"
        assert source.port == writer.get_extra_info("sockname")[1]
        assert source.connection is not None and source.peer_identity is None
        info = manager.connection_info(source.connection)
        assert info is not None and not info.outbound and info.open
        writer.close()


async def test_closed_connection_is_reported_to_the_core() -> None:
    core = FakeCore(responder=answer_ok)
    async with SipTransportManager(TCP_ONLY, lambda b: core) as manager:
        reader, writer = await connect(manager.local_addresses["tcp"][1])
        writer.write(options("c1"))
        await read_until(reader, b"\r\n\r\n")
        conn_id = core.messages[0][1].connection
        assert conn_id is not None
        writer.close()
        await until(lambda: core.lost)
        assert core.lost == [conn_id]
        assert manager.connection_info(conn_id) is None


async def test_core_can_close_a_connection_after_its_last_answer() -> None:
    core = FakeCore()
    async with SipTransportManager(TCP_ONLY, lambda b: core) as manager:
        reader, writer = await connect(manager.local_addresses["tcp"][1])
        writer.write(options("bad"))
        await until(lambda: core.messages)
        source = core.messages[0][1]
        assert source.connection is not None
        # The core answers 400 and asks for the connection to be closed (framing lost):
        # the answer must still go out before the close.
        core.queue(source, b"SIP/2.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        core.request_close(source.connection)
        manager.transmit()
        data = await asyncio.wait_for(reader.read(), 3)
        assert data.startswith(b"SIP/2.0 400 Bad Request")
        await until(lambda: core.lost == [source.connection])
        writer.close()


async def test_outbound_connection_is_pooled_and_carries_answers_back() -> None:
    server = PlainServer()
    port = await server.start()
    core = FakeCore()
    async with SipTransportManager(TCP_ONLY, lambda b: core) as manager:
        dest = TransportAddress("tcp", "127.0.0.1", port)
        core.queue(dest, options("o1"))
        core.queue(dest, options("o2"))  # queued while the connection is still coming up
        manager.transmit()
        await until(lambda: b"o2" in server.data)
        core.queue(dest, options("o3"))
        manager.transmit()
        await until(lambda: b"o3" in server.data)
        assert len(server.writers) == 1, "one pooled connection for one destination"
        assert server.data == options("o1") + options("o2") + options("o3")
        (info,) = manager.connections()
        assert info.outbound and info.remote == ("127.0.0.1", port)
        # The peer answers on that connection: the core sees it with the connection id.
        server.writers[0].write(ok("o1"))
        await until(lambda: core.messages)
        _, source = core.messages[0]
        assert source.connection == info.id and source.port == port
        # Its TCP_NODELAY is set.
        conn = manager._conns[info.id]
        assert conn._transport is not None
        sock = conn._transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    await server.close()


async def test_inbound_socket_has_nodelay() -> None:
    core = FakeCore()
    async with SipTransportManager(TCP_ONLY, lambda b: core) as manager:
        _, writer = await connect(manager.local_addresses["tcp"][1])
        writer.write(options("nd"))
        await until(lambda: core.messages)
        conn = manager._conns[core.messages[0][1].connection or 0]
        assert conn._transport is not None
        sock = conn._transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        writer.close()


async def test_reads_stay_below_the_mmap_threshold() -> None:
    # asyncio's default read size (256 KiB) would make every read its own mapping
    # (runtime/mallocpolicy.py); a write larger than one read arrives whole, in order.
    core = FakeCore()
    async with SipTransportManager(TCP_ONLY, lambda b: core) as manager:
        _, writer = await connect(manager.local_addresses["tcp"][1])
        payload = options("big") + b"x" * 200_000
        writer.write(payload)
        await until(lambda: sum(len(c) for c, _ in core.stream_chunks) >= len(payload))
        assert b"".join(c for c, _ in core.stream_chunks) == payload
        assert max(len(c) for c, _ in core.stream_chunks) <= STREAM_READ_BYTES < MMAP_THRESHOLD
        conn = manager._conns[core.stream_chunks[0][1].connection or 0]
        assert conn._transport is not None
        assert conn._transport.max_size == STREAM_READ_BYTES  # type: ignore[attr-defined]
        writer.close()


async def test_failed_connect_is_reported_as_transport_error() -> None:
    # A port nobody listens on: bind, note the port, close.
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    dead_port = probe.getsockname()[1]
    probe.close()
    core = FakeCore()
    async with SipTransportManager(TCP_ONLY, lambda b: core) as manager:
        dest = TransportAddress("tcp", "127.0.0.1", dead_port)
        core.queue(dest, options("dead"))
        core.queue(dest, options("dead2"))  # same destination: reported once
        manager.transmit()
        assert len(manager.connections()) == 1
        await until(lambda: core.errors)
        assert core.errors == [dest]
        assert core.lost == []  # the core never saw a connection id
        assert manager.connections() == []


async def test_response_falls_back_to_host_port_when_its_connection_is_gone() -> None:
    """RFC 3261 §18.2.2: the original connection closed; open one to received:sent-by."""
    server = PlainServer()
    port = await server.start()
    core = FakeCore()
    async with SipTransportManager(TCP_ONLY, lambda b: core) as manager:
        core.queue(TransportAddress("tcp", "127.0.0.1", port, connection=999), ok("late"))
        manager.transmit()
        await until(lambda: b"late" in server.data)
        assert len(server.writers) == 1
    await server.close()


async def test_keepalive_pings_idle_outbound_connections() -> None:
    server = PlainServer()
    port = await server.start()
    core = FakeCore()
    config = TransportConfig(udp=None, tcp=ListenAddress(), keepalive_interval=0.05)
    async with SipTransportManager(config, lambda b: core) as manager:
        core.queue(TransportAddress("tcp", "127.0.0.1", port), options("ka"))
        manager.transmit()
        await until(lambda: server.data.endswith(PING), timeout=2)
        assert server.data.startswith(options("ka"))
        assert server.data[len(options("ka")) :].replace(PING, b"") == b""
    await server.close()


async def test_no_keepalive_on_inbound_connections() -> None:
    core = FakeCore()
    config = TransportConfig(udp=None, tcp=ListenAddress(), keepalive_interval=0.02)
    async with SipTransportManager(config, lambda b: core) as manager:
        reader, writer = await connect(manager.local_addresses["tcp"][1])
        writer.write(options("in"))
        await until(lambda: core.messages)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(reader.read(1), 0.15)
        writer.close()


async def test_missing_pong_fails_the_flow() -> None:
    """RFC 5626 §4.4.1 (opt-in): no answer to a ping within the pong timeout."""
    server = PlainServer()  # never answers the ping
    port = await server.start()
    core = FakeCore()
    config = TransportConfig(
        udp=None, tcp=ListenAddress(), keepalive_interval=0.03, keepalive_pong_timeout=0.05
    )
    async with SipTransportManager(config, lambda b: core) as manager:
        core.queue(TransportAddress("tcp", "127.0.0.1", port), options("np"))
        manager.transmit()
        (info,) = manager.connections()
        await until(lambda: core.lost == [info.id], timeout=2)
    await server.close()


async def test_pong_keeps_the_flow() -> None:
    server = PlainServer()
    port = await server.start()
    core = FakeCore()
    config = TransportConfig(
        udp=None, tcp=ListenAddress(), keepalive_interval=0.03, keepalive_pong_timeout=0.1
    )
    async with SipTransportManager(config, lambda b: core) as manager:
        core.queue(TransportAddress("tcp", "127.0.0.1", port), options("pp"))
        manager.transmit()
        await until(lambda: PING in server.data)
        for _ in range(4):  # answer pings for a while (RFC 5626 §3.5.1 pong = CRLF)
            server.writers[0].write(b"\r\n")
            await asyncio.sleep(0.04)
        assert core.lost == []
        assert manager.connections()[0].open
        # Pongs are handed to the core like any bytes (it owns stream parsing) but are
        # not SIP messages.
        assert core.messages == []
    await server.close()


async def test_idle_connections_are_closed() -> None:
    core = FakeCore()
    config = TransportConfig(udp=None, tcp=ListenAddress(), idle_timeout=0.1)
    async with SipTransportManager(config, lambda b: core) as manager:
        reader, writer = await connect(manager.local_addresses["tcp"][1])
        writer.write(options("idle"))
        await until(lambda: core.messages)
        conn_id = core.messages[0][1].connection
        assert await asyncio.wait_for(reader.read(), 2) == b""  # closed by the gateway
        await until(lambda: core.lost == [conn_id])
        writer.close()


async def test_connection_cap_refuses_extra_inbound_connections() -> None:
    core = FakeCore()
    config = TransportConfig(
        udp=None, tcp=ListenAddress(), limits=TransportLimits(max_connections=2)
    )
    async with SipTransportManager(config, lambda b: core) as manager:
        port = manager.local_addresses["tcp"][1]
        conns = [await connect(port) for _ in range(2)]
        await until(lambda: len(manager.connections()) == 2)
        reader3, writer3 = await connect(port)
        assert await asyncio.wait_for(reader3.read(), 2) == b""
        assert len(manager.connections()) == 2
        assert core.lost == []  # a refused connection never reached the core
        # Outbound is refused as well at the cap: nothing opens, the core is told.
        dest = TransportAddress("tcp", "127.0.0.1", 9)
        core.queue(dest, options("cap"))
        manager.transmit()
        assert len(manager.connections()) == 2
        assert core.errors == [dest]
        for _, w in conns:
            w.close()
        writer3.close()


async def test_write_buffer_is_bounded_for_a_peer_that_does_not_read() -> None:
    limits = TransportLimits(write_buffer_high_water=16 * 1024, write_buffer_limit=128 * 1024)
    core = FakeCore()
    config = TransportConfig(udp=None, tcp=ListenAddress(), limits=limits)
    async with SipTransportManager(config, lambda b: core) as manager:
        # A client with a tiny receive window that never reads.
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(client, manager.local_addresses["tcp"])
        await loop.sock_sendall(client, options("flood"))
        await until(lambda: core.messages)
        source = core.messages[0][1]
        assert source.connection is not None
        conn = manager._conns[source.connection]
        chunk = b"x" * 16 * 1024
        paused_seen = False
        for _ in range(2000):
            if core.lost:
                break
            core.queue(source, chunk)
            manager.transmit()
            paused_seen = paused_seen or conn.reading_paused
            assert conn.buffered() <= limits.write_buffer_limit
            await asyncio.sleep(0)
        await until(lambda: core.lost == [source.connection])
        assert paused_seen, "reading from the peer must pause above the high-water mark"
        client.close()


async def test_queue_bound_while_connecting() -> None:
    limits = TransportLimits(write_buffer_high_water=1024, write_buffer_limit=4096)
    core = FakeCore()
    server = PlainServer()
    port = await server.start()
    config = TransportConfig(udp=None, tcp=ListenAddress(), limits=limits)
    async with SipTransportManager(config, lambda b: core) as manager:
        dest = TransportAddress("tcp", "127.0.0.1", port)
        for _ in range(5):  # 5 KiB before the connection is up: over the 4 KiB bound
            core.queue(dest, b"y" * 1024)
        manager.transmit()
        await until(lambda: core.errors == [dest])
        assert manager.connections() == [] and core.lost == []
        await asyncio.sleep(0.05)
        assert server.data == b"", "nothing of a dropped queue may reach the peer"
    await server.close()


async def test_stop_closes_connections_and_listeners() -> None:
    core = FakeCore()
    manager = SipTransportManager(TCP_ONLY, lambda b: core)
    await manager.start()
    port = manager.local_addresses["tcp"][1]
    reader, writer = await connect(port)
    writer.write(options("bye"))
    await until(lambda: core.messages)
    await manager.stop()
    assert await asyncio.wait_for(reader.read(), 2) == b""
    assert core.lost == []  # shutdown is not reported to the core
    with pytest.raises(OSError):
        await connect(port)
    writer.close()


async def test_send_to_unconfigured_tls_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    core = FakeCore()
    async with SipTransportManager(TCP_ONLY, lambda b: core) as manager:
        dest = TransportAddress("tls", "127.0.0.1", 5061, peer_identity="x.test")
        core.queue(dest, options("tls"))
        manager.transmit()
        assert manager.connections() == []
        assert "no TLS settings" in caplog.text
        assert core.errors == [TransportAddress("tls", "127.0.0.1", 5061)]
