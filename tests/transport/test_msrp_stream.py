"""The MSRP transport edge on real sockets (127.0.0.1 only): two edges, raw peers, TLS."""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from sipxmpp.gateway.msrp import (
    FailureReport,
    LocalMsrpError,
    MessageReceived,
    MessageSent,
    MsrpEvent,
    MsrpSession,
    MsrpSessionTable,
    MsrpSettings,
    RequestRejected,
    ResponseReceived,
    SendFailed,
    SessionBound,
    SessionFailed,
    parse_uri,
)
from sipxmpp.gateway.transport import ListenAddress, TlsSettings
from sipxmpp.gateway.transport.msrp_stream import (
    MsrpStreamLimits,
    MsrpTransport,
    MsrpTransportConfig,
    msrp_identities,
)
from support.certs import CertFiles, TestPki

LOCAL = "127.0.0.1"


class Ids:
    """Deterministic IdGenerator (hex counters are valid MSRP idents, RFC 4975 §9)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.counter = itertools.count(1)

    def token(self, nbits: int) -> str:
        return f"{self.prefix}{next(self.counter):012x}"


class Endpoint:
    """One edge with its session table and the events it reported."""

    def __init__(
        self,
        name: str,
        config: MsrpTransportConfig,
        settings: MsrpSettings | None = None,
    ) -> None:
        self.table = MsrpSessionTable(Ids(name), settings)
        self.events: list[MsrpEvent] = []
        self.edge = MsrpTransport(self.table, config, on_event=self.events.append)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


async def until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


def tcp_config(**limits: Any) -> MsrpTransportConfig:
    return MsrpTransportConfig(
        tcp=ListenAddress(LOCAL, 0),
        limits=MsrpStreamLimits(**limits) if limits else MsrpStreamLimits(),
    )


def tls_config(cert: CertFiles, **limits: Any) -> MsrpTransportConfig:
    return MsrpTransportConfig(
        tcp=None,
        tls_listen=ListenAddress(LOCAL, 0),
        tls=TlsSettings(
            certfile=str(cert.cert),
            keyfile=str(cert.key),
            cafile=str(cert.ca_cert),
            require_client_certificate=True,
        ),
        limits=MsrpStreamLimits(**limits) if limits else MsrpStreamLimits(),
    )


def pair_sessions(
    a: Endpoint, b: Endpoint, *, secure: bool = False
) -> tuple[MsrpSession, MsrpSession]:
    """Sessions as SDP offer/answer would create them: each knows the other's a=path."""
    uri_a = a.edge.new_local_uri(secure=secure)
    uri_b = b.edge.new_local_uri(secure=secure)
    sa = a.table.create_session(uri_a, remote_path=(uri_b,))
    sb = b.table.create_session(uri_b, remote_path=(uri_a,))
    return sa, sb


async def bind(a: Endpoint, b: Endpoint, sa: MsrpSession, sb: MsrpSession) -> None:
    a.edge.connect(sa)  # a is the active side (RFC 4975 §5.4: the offerer connects)
    await until(
        lambda: (
            any(e.session_id == sa.session_id for e in a.of(SessionBound))
            and any(e.session_id == sb.session_id for e in b.of(SessionBound))
        )
    )


def raw_send(tid: str, to: str, frm: str, body: str | None = None) -> bytes:
    head = f"MSRP {tid} SEND\r\nTo-Path: {to}\r\nFrom-Path: {frm}\r\nMessage-ID: m{tid}\r\n"
    if body is None:
        return f"{head}Byte-Range: 1-0/0\r\n-------{tid}$\r\n".encode()
    return f"{head}Content-Type: text/plain\r\n\r\n{body}\r\n-------{tid}$\r\n".encode()


async def read_until_eof(reader: asyncio.StreamReader, timeout: float = 5.0) -> bytes:
    return await asyncio.wait_for(reader.read(), timeout)


@contextmanager
def silent_listener(rcvbuf: int | None = None) -> Iterator[socket.socket]:
    """A 127.0.0.1 listener whose accepted connections are never read from or written to."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((LOCAL, 0))
    sock.listen(8)
    try:
        yield sock
    finally:
        sock.close()


# --------------------------------------------------------------------------- TCP


async def test_two_edges_exchange_messages_over_tcp() -> None:
    a, b = Endpoint("a", tcp_config()), Endpoint("b", tcp_config())
    async with a.edge, b.edge:
        assert set(b.edge.local_addresses) == {"tcp"}
        sa, sb = pair_sessions(a, b)
        assert sb.local_uri.port == b.edge.local_addresses["tcp"][1]
        await bind(a, b, sa, sb)
        mid = a.edge.send_message(sa, "text/plain", b"Hi, I'm Alice!")
        await until(lambda: a.of(MessageSent) and b.of(MessageReceived))
        received = b.of(MessageReceived)[0]
        assert (received.session_id, received.message_id, received.body) == (
            sb.session_id,
            mid,
            b"Hi, I'm Alice!",
        )
        b.edge.send_message(sb, "text/plain", b"Hi, Alice!  I'm Bob!")
        await until(lambda: a.of(MessageReceived))
        assert a.of(MessageReceived)[0].body == b"Hi, Alice!  I'm Bob!"
        (conn_a,) = a.edge.connections()
        (conn_b,) = b.edge.connections()
        assert conn_a.outbound and not conn_b.outbound and not conn_a.secure
        assert conn_a.session_ids == (sa.session_id,) and conn_b.session_ids == (sb.session_id,)
        assert conn_a.remote == (LOCAL, b.edge.local_addresses["tcp"][1])
        # TCP_NODELAY on both ends (the SipStreamConnection machinery is shared).
        for edge in (a.edge, b.edge):
            (link,) = edge._links.values()
            sock = link.stream._transport.get_extra_info("socket")  # type: ignore[union-attr]
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    # b stopped first (async with unwinds in reverse): b reports nothing about its own
    # shutdown, while a, still running, saw the connection go (RFC 4975 §5.4).
    assert not b.of(SessionFailed)
    assert [e.session_id for e in a.of(SessionFailed)] == [sa.session_id]


async def test_100_kb_message_is_chunked_and_reassembled() -> None:
    a, b = Endpoint("a", tcp_config()), Endpoint("b", tcp_config())
    body = bytes(range(256)) * 390 + b"end"  # 99,843 octets of every byte value
    async with a.edge, b.edge:
        sa, sb = pair_sessions(a, b)
        await bind(a, b, sa, sb)
        mid = a.edge.send_message(sa, "text/plain", body, success_report=True)
        await until(lambda: a.of(MessageSent) and b.of(MessageReceived))
        (received,) = b.of(MessageReceived)
        assert received.body == body and received.message_id == mid
        # One 200 per 2048-octet chunk (RFC 4975 §7.1), plus the binding SEND's.
        chunk_responses = [e for e in a.of(ResponseReceived) if e.message_id == mid]
        assert len(chunk_responses) == -(-len(body) // 2048) == 49
        assert all(e.status == 200 for e in chunk_responses)


async def test_connections_are_reused_for_sessions_to_the_same_peer() -> None:
    # RFC 4975 §5.4: an existing connection to the same host, port and scheme SHOULD be reused.
    a, b = Endpoint("a", tcp_config()), Endpoint("b", tcp_config())
    async with a.edge, b.edge:
        first = pair_sessions(a, b)
        second = pair_sessions(a, b)
        await bind(a, b, *first)
        await bind(a, b, *second)
        (conn_a,) = a.edge.connections()
        (conn_b,) = b.edge.connections()
        assert set(conn_a.session_ids) == {first[0].session_id, second[0].session_id}
        assert set(conn_b.session_ids) == {first[1].session_id, second[1].session_id}
        assert a.edge.connection_of(first[0]) == conn_a
        # Closing one session keeps the connection; closing the last one closes it (§5.4).
        a.edge.close_session(first[0])
        await asyncio.sleep(0.05)
        assert len(a.edge.connections()) == 1
        a.edge.close_session(second[0])
        await until(lambda: not a.edge.connections() and not b.edge.connections())
        # The peer sees the connection go: its remaining sessions fail.
        assert {e.session_id for e in b.of(SessionFailed)} == {
            first[1].session_id,
            second[1].session_id,
        }


async def test_unknown_session_gets_481_and_the_connection_is_closed() -> None:
    b = Endpoint("b", tcp_config())
    async with b.edge:
        port = b.edge.local_addresses["tcp"][1]
        reader, writer = await asyncio.open_connection(LOCAL, port)
        try:
            writer.write(
                raw_send(
                    "tid48101",
                    f"msrp://{LOCAL}:{port}/nosuchsession;tcp",
                    "msrp://127.0.0.1:9/caller1;tcp",
                )
            )
            await writer.drain()
            reply = await read_until_eof(reader)  # EOF: the edge closed the connection
        finally:
            writer.close()
        assert reply.startswith(b"MSRP tid48101 481 No Such Session\r\n")
        assert reply.endswith(b"-------tid48101$\r\n")
        assert [(e.status, e.session_id) for e in b.of(RequestRejected)] == [(481, None)]
        await until(lambda: not b.edge.connections())


async def test_connection_that_never_binds_is_closed() -> None:
    b = Endpoint("b", tcp_config(bind_timeout=0.2))
    async with b.edge:
        port = b.edge.local_addresses["tcp"][1]
        reader, writer = await asyncio.open_connection(LOCAL, port)
        try:
            await until(lambda: len(b.edge.connections()) == 1)
            assert b.edge.connections()[0].timer_deadline is not None  # the bind deadline
            assert await read_until_eof(reader, timeout=3.0) == b""
        finally:
            writer.close()
        await until(lambda: not b.edge.connections())


async def test_msrps_session_cannot_bind_over_plain_tcp() -> None:
    # RFC 4975 §5.4: "Connections using the 'msrps' scheme MUST use TLS."
    b = Endpoint("b", tcp_config())
    async with b.edge:
        port = b.edge.local_addresses["tcp"][1]
        secure_uri = parse_uri(f"msrps://{LOCAL}:{port}/securesession1;tcp")
        caller = parse_uri("msrps://127.0.0.1:9/caller1;tcp")
        session = b.table.create_session(secure_uri, remote_path=(caller,))
        reader, writer = await asyncio.open_connection(LOCAL, port)
        try:
            writer.write(raw_send("tidsec01", str(secure_uri), str(caller)))
            await writer.drain()
            await read_until_eof(reader)
        finally:
            writer.close()
        failed = b.of(SessionFailed)
        assert [(e.session_id, e.status) for e in failed] == [(session.session_id, 403)]
        assert b.table.get(session.session_id) is None


async def test_connection_cap_refuses_extra_connections() -> None:
    b = Endpoint("b", tcp_config(max_connections=1))
    async with b.edge:
        port = b.edge.local_addresses["tcp"][1]
        _, w1 = await asyncio.open_connection(LOCAL, port)
        await until(lambda: len(b.edge.connections()) == 1)
        r2, w2 = await asyncio.open_connection(LOCAL, port)
        try:
            assert await read_until_eof(r2) == b""  # refused: aborted at once
            assert len(b.edge.connections()) == 1
        finally:
            w1.close()
            w2.close()


# --------------------------------------------------------------------------- failures


async def test_dropped_connection_fails_the_sessions_on_the_surviving_side() -> None:
    a, b = Endpoint("a", tcp_config()), Endpoint("b", tcp_config())
    async with a.edge, b.edge:
        sa, sb = pair_sessions(a, b)
        await bind(a, b, sa, sb)
        (link,) = a.edge._links.values()
        link.stream._transport.abort()  # type: ignore[union-attr]  # the socket breaks
        await until(lambda: b.of(SessionFailed) and a.of(SessionFailed))
        assert [e.session_id for e in b.of(SessionFailed)] == [sb.session_id]
        assert [e.session_id for e in a.of(SessionFailed)] == [sa.session_id]
        assert b.table.get(sb.session_id) is None and a.table.get(sa.session_id) is None
        await until(lambda: not a.edge.connections() and not b.edge.connections())


async def test_peer_stopping_fails_the_sessions_and_unconfirmed_messages() -> None:
    a, b = Endpoint("a", tcp_config()), Endpoint("b", tcp_config())
    async with b.edge:
        async with a.edge:
            sa, sb = pair_sessions(a, b)
            await bind(a, b, sa, sb)
        # a is gone: b's session fails; a message b sends now has nowhere to go.
        await until(lambda: b.of(SessionFailed))
        assert [(e.session_id, e.reason) for e in b.of(SessionFailed)] == [
            (sb.session_id, "connection lost")
        ]
        with pytest.raises(LocalMsrpError):
            b.edge.send_message(sb, "text/plain", b"too late")


async def test_connect_to_a_closed_port_fails_the_session() -> None:
    with socket.socket() as probe:
        probe.bind((LOCAL, 0))
        dead_port = probe.getsockname()[1]
    a = Endpoint("a", tcp_config())
    async with a.edge:
        session = a.table.create_session(
            a.edge.new_local_uri(), remote_path=(parse_uri(f"msrp://{LOCAL}:{dead_port}/s1;tcp"),)
        )
        mid = a.edge.send_message(session, "text/plain", b"queued before connecting")
        a.edge.connect(session)
        await until(lambda: a.of(SessionFailed))
        assert [e.session_id for e in a.of(SessionFailed)] == [session.session_id]
        assert [e.message_id for e in a.of(SendFailed)] == [mid]
        assert not a.edge.connections()


async def test_connect_refusals_are_local_errors() -> None:
    a = Endpoint("a", tcp_config())
    remote = parse_uri(f"msrp://{LOCAL}:9/s1;tcp")
    idle = MsrpTransport(a.table, tcp_config())
    session = a.table.create_session(a.table.new_local_uri(LOCAL, 9), remote_path=(remote,))
    with pytest.raises(LocalMsrpError):
        idle.connect(session)  # not started
    async with a.edge:
        with pytest.raises(LocalMsrpError):
            a.edge.new_local_uri(secure=True)  # no TLS listener
        no_path = a.table.create_session(a.edge.new_local_uri())
        with pytest.raises(LocalMsrpError):
            a.edge.connect(no_path)
        secure = a.table.create_session(
            a.edge.new_local_uri(), remote_path=(parse_uri(f"msrps://{LOCAL}:9/s2;tcp"),)
        )
        with pytest.raises(LocalMsrpError):
            a.edge.connect(secure)  # msrps: without TLS settings
        with pytest.raises(RuntimeError):
            await a.edge.start()
    assert not a.edge.connections()


# --------------------------------------------------------------------------- buffers & timers


async def test_write_buffer_limit_drops_a_peer_that_does_not_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = MsrpSettings(max_message_size=64 * 1024, max_tracked_messages=4)
    a = Endpoint(
        "a",
        tcp_config(write_buffer_high_water=16 * 1024, write_buffer_limit=256 * 1024),
        settings,
    )
    with silent_listener(rcvbuf=4096) as peer:
        port = peer.getsockname()[1]
        async with a.edge:
            session = a.table.create_session(
                a.edge.new_local_uri(), remote_path=(parse_uri(f"msrp://{LOCAL}:{port}/p1;tcp"),)
            )
            a.edge.connect(session)
            await until(lambda: a.edge.connections() and a.edge.connections()[0].open)
            blob = b"x" * (64 * 1024)  # one message fits the limit; only a pile-up crosses it
            # Failure-Report: no is not paced by responses, so the bytes pile up (RFC 4975
            # §7.1.4); the kernel buffers fill first, then ours, then the peer is dropped.
            for _ in range(400):
                if a.of(SessionFailed):
                    break
                a.edge.send_message(session, "text/plain", blob, failure_report=FailureReport.NO)
                await asyncio.sleep(0.005)
            await until(lambda: a.of(SessionFailed))
            assert [e.session_id for e in a.of(SessionFailed)] == [session.session_id]
            assert not a.edge.connections()
        assert "peer is not reading" in caplog.text


async def test_reading_pauses_then_a_stalled_peer_is_dropped() -> None:
    settings = MsrpSettings(max_message_size=64 * 1024, max_tracked_messages=4)
    a = Endpoint(
        "a",
        tcp_config(
            write_buffer_high_water=16 * 1024,
            write_buffer_limit=64 * 1024 * 1024,
            write_stall_timeout=0.3,
        ),
        settings,
    )
    with silent_listener(rcvbuf=4096) as peer:
        port = peer.getsockname()[1]
        async with a.edge:
            session = a.table.create_session(
                a.edge.new_local_uri(), remote_path=(parse_uri(f"msrp://{LOCAL}:{port}/p1;tcp"),)
            )
            a.edge.connect(session)
            await until(lambda: a.edge.connections() and a.edge.connections()[0].open)
            blob = b"y" * (64 * 1024)
            for _ in range(200):
                infos = a.edge.connections()
                if not infos or infos[0].reading_paused:
                    break
                a.edge.send_message(session, "text/plain", blob, failure_report=FailureReport.NO)
                await asyncio.sleep(0.005)
            (info,) = a.edge.connections()
            assert info.reading_paused  # backpressure: we stopped reading from that peer
            assert info.timer_deadline is not None  # the stall deadline is on the one timer
            await until(lambda: a.of(SessionFailed), timeout=5.0)
            assert not a.edge.connections()


async def test_one_timer_handle_per_connection() -> None:
    # A peer that accepts but never answers: the binding SEND and every chunk stay
    # outstanding, yet the connection has exactly one live loop.call_at handle, at the
    # core's next_deadline(); when it fires, the core times the transactions out (§7.3).
    settings = MsrpSettings(transaction_timeout=0.4)
    a = Endpoint("a", tcp_config(), settings)
    loop = asyncio.get_running_loop()
    handles: list[asyncio.TimerHandle] = []
    original = loop.call_at

    def recording_call_at(when: float, callback: Any, *args: Any, **kw: Any) -> asyncio.TimerHandle:
        handle = original(when, callback, *args, **kw)
        if callback == a.edge._on_timer:
            handles.append(handle)
        return handle

    loop.call_at = recording_call_at  # type: ignore[method-assign,assignment]
    try:
        with silent_listener() as peer:
            port = peer.getsockname()[1]
            async with a.edge:
                sessions = [
                    a.table.create_session(
                        a.edge.new_local_uri(),
                        remote_path=(parse_uri(f"msrp://{LOCAL}:{port}/p{i};tcp"),),
                    )
                    for i in range(3)
                ]
                for session in sessions:
                    a.edge.connect(session)
                    for n in range(4):
                        a.edge.send_message(session, "text/plain", f"message {n}".encode())
                (info,) = a.edge.connections()  # all three sessions share the connection
                assert len(info.session_ids) == 3
                (link,) = a.edge._links.values()
                live = [h for h in handles if not h.cancelled()]
                assert len(live) == 1
                assert live[0].when() == info.timer_deadline == link.core.next_deadline()
                await until(lambda: len(a.of(SessionFailed)) == 3, timeout=5.0)
                # The binding SENDs timed out: each session failed with 408, and each
                # queued message was reported (no sleep per transaction anywhere).
                assert {e.status for e in a.of(SessionFailed)} == {408}
                assert len(a.of(SendFailed)) == 12
                assert (
                    len([h for h in handles if not h.cancelled() and h.when() > loop.time()]) <= 1
                )
    finally:
        loop.call_at = original  # type: ignore[method-assign]


# --------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def msrp_certs(pki: TestPki) -> tuple[CertFiles, CertFiles]:
    """Certificates proving 127.0.0.1, which is the host of every URI here (§5.4)."""
    a = pki.issue("msrp-a", dns=["msrp-a.example.test"], ips=[LOCAL])
    b = pki.issue("msrp-b", dns=["msrp-b.example.test"], ips=[LOCAL])
    return a, b


async def test_two_edges_exchange_messages_over_mutual_tls(
    msrp_certs: tuple[CertFiles, CertFiles],
) -> None:
    cert_a, cert_b = msrp_certs
    a, b = Endpoint("a", tls_config(cert_a)), Endpoint("b", tls_config(cert_b))
    async with a.edge, b.edge:
        assert set(b.edge.local_addresses) == {"tls"}
        sa, sb = pair_sessions(a, b, secure=True)
        assert str(sb.local_uri).startswith("msrps://127.0.0.1:")
        await bind(a, b, sa, sb)
        a.edge.send_message(sa, "text/plain", b"over TLS")
        b.edge.send_message(sb, "text/plain", b"and back")
        await until(lambda: a.of(MessageReceived) and b.of(MessageReceived))
        assert b.of(MessageReceived)[0].body == b"over TLS"
        assert a.of(MessageReceived)[0].body == b"and back"
        (conn_a,) = a.edge.connections()
        assert conn_a.secure and conn_a.outbound
        # Mutual TLS: the passive side holds the active side's verified certificate.
        (link_b,) = b.edge._links.values()
        assert LOCAL in msrp_identities(link_b.stream.peer_cert)


async def test_tls_server_must_prove_the_uri_host(
    msrp_certs: tuple[CertFiles, CertFiles], gw_cert: CertFiles
) -> None:
    # RFC 4975 §5.4: the server's SubjectAltName "MUST match the hostname part of the URI";
    # gw_cert proves gw.example.test only, not 127.0.0.1.
    cert_a, _ = msrp_certs
    a, b = Endpoint("a", tls_config(cert_a)), Endpoint("b", tls_config(gw_cert))
    async with a.edge, b.edge:
        sa, _sb = pair_sessions(a, b, secure=True)
        a.edge.connect(sa)
        await until(lambda: a.of(SessionFailed))
        assert [e.session_id for e in a.of(SessionFailed)] == [sa.session_id]
        assert not b.of(SessionBound)


async def test_tls_listener_refuses_a_client_without_certificate(
    msrp_certs: tuple[CertFiles, CertFiles],
) -> None:
    import ssl

    _, cert_b = msrp_certs
    b = Endpoint("b", tls_config(cert_b))
    async with b.edge:
        port = b.edge.local_addresses["tls"][1]
        ctx = ssl.create_default_context(cafile=str(cert_b.ca_cert))
        ctx.check_hostname = False
        try:
            reader, writer = await asyncio.open_connection(LOCAL, port, ssl=ctx)
        except (ssl.SSLError, ConnectionError):
            pass  # refused during the handshake (TLS 1.2)
        else:
            try:  # TLS 1.3 reports the refusal at the first read
                with pytest.raises((ssl.SSLError, ConnectionError)):
                    data = await asyncio.wait_for(reader.read(), 5.0)
                    if not data:
                        raise ConnectionError("closed")
            finally:
                writer.close()
        assert not b.edge.connections()


def test_msrp_identities() -> None:
    cert = {
        "subject": ((("commonName", "ignored.example"),),),
        "subjectAltName": (
            ("DNS", "Relay.Example.COM."),
            ("IP Address", "0:0:0:0:0:0:0:1"),
            ("URI", "sip:relay.example.com"),
            ("DNS", "*.example.com"),
        ),
    }
    assert msrp_identities(cert) == ("relay.example.com", "::1", "*.example.com")
    assert msrp_identities({"subject": ((("commonName", "cn.example"),),)}) == ("cn.example",)
    assert msrp_identities({}) == () and msrp_identities(None) == ()


def test_write_limit_must_hold_a_whole_message() -> None:
    table = MsrpSessionTable(Ids("v"), MsrpSettings(max_message_size=1024 * 1024))
    with pytest.raises(ValueError):
        MsrpTransport(table, tcp_config(write_buffer_limit=1024 * 1024))
    MsrpTransport(table, tcp_config(write_buffer_limit=2 * 1024 * 1024))


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError):
        MsrpStreamLimits(write_buffer_high_water=10, write_buffer_limit=5)
    with pytest.raises(ValueError):
        MsrpStreamLimits(bind_timeout=0)
    with pytest.raises(ValueError):
        MsrpTransportConfig(tls_listen=ListenAddress(LOCAL, 0))  # TLS listener without a cert
