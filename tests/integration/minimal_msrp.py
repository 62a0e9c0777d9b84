"""A minimal MSRP endpoint for tests, written independently of ``sipxmpp.gateway.msrp``.

Plain asyncio streams and hand-written bytes in the shape of the RFC 4975 §11 examples:

    MSRP a786hjs2 SEND
    To-Path: msrp://biloxi.example.com:12763/kjhd37s2s20w2a;tcp
    From-Path: msrp://atlanta.example.com:7654/jshA7weztas;tcp
    Message-ID: 87652491
    Byte-Range: 1-25/25
    Content-Type: text/plain

    Hey Bob, are you there?
    -------a786hjs2$

Only what the gateway tests need: SEND (one chunk or several), 200 responses, REPORT
reading, and a frame reader that splits on the end-line ``-------<tid>[$+#]``.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from dataclasses import dataclass, field

_counter = itertools.count(1)

_START = re.compile(rb"^MSRP ([A-Za-z0-9][A-Za-z0-9.\-+%=]{3,31}) ([A-Z]+|\d{3})(?: (.*))?$")


@dataclass
class Frame:
    """One request or response as read from the wire."""

    tid: str
    method: str | None  # None for a response
    status: int | None
    headers: dict[str, str]
    body: bytes
    flag: str
    raw: bytes = b""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def new_id(prefix: str = "t") -> str:
    """A transaction id or Message-ID; unique per test run (these are test values, not random)."""
    return f"{prefix}{next(_counter):08d}x"


def send_bytes(
    to_path: str,
    from_path: str,
    body: bytes,
    *,
    tid: str | None = None,
    message_id: str | None = None,
    content_type: str = "text/plain",
    byte_range: str | None = None,
    flag: str = "$",
    extra: str = "",
) -> tuple[bytes, str]:
    """A SEND request in the RFC 4975 §11 layout; returns (bytes, tid)."""
    tid = tid or new_id("a")
    message_id = message_id or new_id("m")
    head = (
        f"MSRP {tid} SEND\r\n"
        f"To-Path: {to_path}\r\n"
        f"From-Path: {from_path}\r\n"
        f"Message-ID: {message_id}\r\n"
        f"{extra}"
    )
    if body:
        head += f"Byte-Range: {byte_range or f'1-{len(body)}/{len(body)}'}\r\n"
        head += f"Content-Type: {content_type}\r\n\r\n"
        return head.encode() + body + f"\r\n-------{tid}{flag}\r\n".encode(), tid
    head += "Byte-Range: 1-0/0\r\n" if byte_range is None else f"Byte-Range: {byte_range}\r\n"
    return head.encode() + f"-------{tid}{flag}\r\n".encode(), tid


def ok_bytes(request: Frame, to_path: str, from_path: str) -> bytes:
    """The 200 response to ``request`` (RFC 4975 §7.2: To-Path is the request's sender)."""
    return (
        f"MSRP {request.tid} 200 OK\r\n"
        f"To-Path: {to_path}\r\n"
        f"From-Path: {from_path}\r\n"
        f"-------{request.tid}$\r\n"
    ).encode()


@dataclass
class MinimalMsrp:
    """One MSRP connection (either side) with a background frame reader."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    frames: asyncio.Queue[Frame] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._read_loop())

    async def _read_loop(self) -> None:
        buf = b""
        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    return
                buf += data
                while True:
                    frame, buf = _take_frame(buf)
                    if frame is None:
                        break
                    self.frames.put_nowait(frame)
        except (ConnectionError, asyncio.CancelledError):
            return

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    async def next_frame(self, timeout: float = 10.0) -> Frame:
        return await asyncio.wait_for(self.frames.get(), timeout)

    async def next_request(self, method: str = "SEND", timeout: float = 10.0) -> Frame:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = await asyncio.wait_for(self.frames.get(), max(0.01, deadline - loop.time()))
            if frame.method == method:
                return frame

    async def next_response(self, tid: str, timeout: float = 10.0) -> Frame:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = await asyncio.wait_for(self.frames.get(), max(0.01, deadline - loop.time()))
            if frame.method is None and frame.tid == tid:
                return frame

    def abort(self) -> None:
        """Drop the TCP connection without any MSRP goodbye (RST where possible)."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            import socket
            import struct

            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()
        if self.task is not None:
            self.task.cancel()

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass


def _take_frame(buf: bytes) -> tuple[Frame | None, bytes]:
    """Cut one frame off ``buf`` (RFC 4975 §7.1): start line, headers, body, end-line."""
    eol = buf.find(b"\r\n")
    if eol < 0:
        return None, buf
    m = _START.match(buf[:eol])
    if m is None:
        raise AssertionError(f"not an MSRP start line: {buf[:eol]!r}")
    tid = m.group(1).decode()
    end_re = re.compile(rb"\r\n-------" + re.escape(m.group(1)) + rb"([$+#])\r\n")
    em = end_re.search(buf, eol)
    if em is None:
        return None, buf
    frame_bytes = buf[: em.end()]
    inner = buf[eol + 2 : em.start() + 2]
    head, sep, body = inner.partition(b"\r\n\r\n")
    if not sep:
        head, body = inner, b""
    headers: dict[str, str] = {}
    for line in head.split(b"\r\n"):
        if b":" in line:
            name, value = line.split(b":", 1)
            headers[name.decode().strip().lower()] = value.decode().strip()
    if body.endswith(b"\r\n"):
        body = body[:-2]
    word = m.group(2).decode()
    is_status = word.isdigit()
    return (
        Frame(
            tid=tid,
            method=None if is_status else word,
            status=int(word) if is_status else None,
            headers=headers,
            body=body,
            flag=em.group(1).decode(),
            raw=frame_bytes,
        ),
        buf[em.end() :],
    )


async def connect(host: str, port: int) -> MinimalMsrp:
    reader, writer = await asyncio.open_connection(host, port)
    conn = MinimalMsrp(reader, writer)
    conn.start()
    return conn


class MinimalListener:
    """A passive MSRP endpoint: accepts connections and hands them to the test."""

    def __init__(self) -> None:
        self.connections: asyncio.Queue[MinimalMsrp] = asyncio.Queue()
        self.server: asyncio.Server | None = None
        self.port = 0
        self._conns: list[MinimalMsrp] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self.server.sockets[0].getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = MinimalMsrp(reader, writer)
        conn.start()
        self._conns.append(conn)
        self.connections.put_nowait(conn)

    async def accept(self, timeout: float = 10.0) -> MinimalMsrp:
        return await asyncio.wait_for(self.connections.get(), timeout)

    async def close(self) -> None:
        for conn in self._conns:
            await conn.close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
