"""Properties of the codec: round trips, chunking invariance, and total error handling."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipxmpp.gateway.sip.errors import RemoteSipError
from sipxmpp.gateway.sip.grammar import CSeq, NameAddr, SipUri, Via
from sipxmpp.gateway.sip.message import (
    Headers,
    Message,
    Request,
    Response,
    serialize,
    wire_size,
)
from sipxmpp.gateway.sip.parser import KeepAlive, SipParseError, StreamFramer, parse_message

CORPUS = sorted((Path(__file__).resolve().parent.parent / "data" / "rfc4475").glob("*/*.dat"))
CORPUS_BYTES = [p.read_bytes() for p in CORPUS]
SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_token = st.text(alphabet="abcXYZ019-.!%*_+`'~", min_size=1, max_size=10)
_pchar = st.text(alphabet="abc019[]/:&+$-_.!~*'()", min_size=1, max_size=8)
_host = st.sampled_from(["example.com", "sip.example.org", "192.0.2.7", "[2001:db8::1]"])
_user = st.text(alphabet="abcXYZ019-_.!~*'()&=+$,;?/", min_size=1, max_size=10)
_uris = st.builds(
    SipUri,
    host=_host,
    user=st.none() | _user,
    port=st.none() | st.integers(1, 65535),
    params=st.lists(st.tuples(_pchar, st.none() | _pchar), max_size=2).map(tuple),
    scheme=st.sampled_from(["sip", "sips"]),
)
_display = st.none() | st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=10
)
_addrs = st.builds(
    NameAddr,
    uri=_uris,
    display_name=_display,
    params=st.lists(st.tuples(_token, st.none() | _token), max_size=2).map(tuple),
)
_vias = st.builds(
    Via,
    transport=st.sampled_from(["UDP", "TCP", "TLS"]),
    host=_host,
    port=st.none() | st.integers(1, 65535),
    params=st.tuples(_token.map(lambda t: ("branch", "z9hG4bK" + t))).map(tuple),
)
# Extension headers: "X-" names so none collides with a field the parser checks; values
# without CR/LF and without surrounding whitespace (the parser strips it, §7.3.1).
_values = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=30
).map(lambda v: v.strip(" \t"))
_extra = st.lists(st.tuples(_token.map(lambda t: "X-" + t), _values), max_size=6)
_methods = st.sampled_from(["INVITE", "MESSAGE", "OPTIONS", "SUBSCRIBE", "NOTIFY"]) | _token


@st.composite
def _headers(draw: st.DrawFn, method: str) -> Headers:
    pairs = [("Via", str(v)) for v in draw(st.lists(_vias, min_size=1, max_size=3))]
    pairs += [
        ("From", str(draw(_addrs))),
        ("To", str(draw(_addrs))),
        ("Call-ID", draw(_token) + "@" + draw(_token)),
        ("CSeq", str(CSeq(draw(st.integers(0, 2**32 - 1)), method))),
    ]
    pairs += draw(_extra)
    order = draw(st.permutations(range(len(pairs))))
    return Headers.of([pairs[i] for i in order])


@st.composite
def messages(draw: st.DrawFn) -> Message:
    body = draw(st.binary(max_size=200))
    if draw(st.booleans()):
        method = draw(_methods)
        uri = str(draw(_uris))
        return Request(method, uri, draw(_headers(method)), body)
    reason = draw(
        st.text(
            alphabet=st.characters(codec="utf-8", min_codepoint=0x20, exclude_characters="\x7f"),
            max_size=20,
        )
    )
    return Response(draw(st.integers(100, 699)), reason, draw(_headers(draw(_methods))), body)


@SETTINGS
@given(messages())
def test_parse_serialize_round_trip(message: Message) -> None:
    wire = serialize(message)
    assert wire_size(message) == len(wire)
    assert parse_message(wire) == message
    assert serialize(parse_message(wire)) == wire


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(messages(), min_size=1, max_size=4), st.data())
def test_stream_chunking_does_not_matter(batch: list[Message], data: st.DataObject) -> None:
    wire = b"".join(serialize(m) + b"\r\n\r\n" for m in batch)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=8)))
    framer = StreamFramer()
    out: list[Message | KeepAlive] = []
    previous = 0
    for cut in [*cuts, len(wire)]:
        out += framer.feed(wire[previous:cut])
        previous = cut
    expected: list[Message | KeepAlive] = []
    for m in batch:
        expected += [m, KeepAlive()]
    assert out == expected and framer.buffered == 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_datagram_parses_or_raises_remote_error(data: bytes) -> None:
    try:
        parse_message(data)
    except RemoteSipError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(CORPUS_BYTES), st.data())
def test_mutated_corpus_messages_never_crash(original: bytes, data: st.DataObject) -> None:
    """Byte edits of the torture messages reach deep paths; only RemoteSipError may leave."""
    mutated = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(mutated)))
        edit = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        chunk = data.draw(
            st.sampled_from([b"\r\n", b" ", b"\t", b";", b",", b":", b"<", b">", b'"', b"\\", b"%",
                             b"@", b"\x00", b"\xff", b"\r\n ", b"0", b"=", b"[", b"]"])
            | st.binary(min_size=1, max_size=3)
        )  # fmt: skip
        if edit == "insert":
            mutated[pos:pos] = chunk
        elif edit == "delete":
            del mutated[pos : pos + len(chunk)]
        else:
            mutated[pos : pos + len(chunk)] = chunk
    wire = bytes(mutated)
    try:
        parse_message(wire)
    except RemoteSipError:
        pass
    for item in StreamFramer().feed_all(wire):
        assert isinstance(item, Request | Response | KeepAlive | SipParseError)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=120) | st.sampled_from(CORPUS_BYTES), max_size=5))
def test_any_stream_input_only_raises_remote_errors(chunks: list[bytes]) -> None:
    framer = StreamFramer()
    for chunk in chunks:
        try:
            framer.feed(chunk)
        except SipParseError as exc:
            if exc.fatal:
                assert framer.failed
                break
        assert framer.buffered <= 16 * 1024 + 64 * 1024 + len(chunk)
