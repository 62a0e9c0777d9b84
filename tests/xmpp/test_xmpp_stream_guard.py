"""RFC 6120 §11.1 restricted XML: the guard in front of slixmpp's parser.

Every case runs whole, one byte at a time, and (Hypothesis) at random split points: the
verdict must not depend on TCP segmentation.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipxmpp.gateway.xmpp.errors import RemoteXmppError
from sipxmpp.gateway.xmpp.stream_guard import RestrictedXmlGuard

HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams'"
    b" xmlns='jabber:component:accept' from='sip.example.test' id='x1'>"
)

# (case id, stream bytes, None = accepted or the stream error condition)
CASES: list[tuple[str, bytes, str | None]] = [
    ("plain header", HEADER, None),
    ("header without declaration", HEADER[len(b"<?xml version='1.0'?>") :], None),
    ("declaration with tab", b"<?xml\tversion='1.0'?><a/>", None),
    (
        "message",
        HEADER + b"<message from='a@b' to='c@d'><body>1 &lt;! 2 &lt;? 3</body></message>",
        None,
    ),
    ("escaped markup in attribute", b"<a x='&lt;!DOCTYPE'/>", None),
    ("cdata", b"<body><![CDATA[ <!DOCTYPE x> <!-- c --> <?pi?> ]]></body>", None),
    ("two cdata sections", b"<b><![CDATA[<!--]]><![CDATA[-->]]></b>", None),
    ("cdata then close bracket text", b"<b><![CDATA[x]]]]></b>", None),
    ("dangling lt at end", b"<a>text</a><", None),
    ("doctype", b"<?xml version='1.0'?><!DOCTYPE stream>" + HEADER[21:], "restricted-xml"),
    (
        "billion laughs",
        b"<?xml version='1.0'?><!DOCTYPE s [<!ENTITY a 'aaaa'><!ENTITY b '&a;&a;'>]><s>&b;</s>",
        "restricted-xml",
    ),
    ("doctype mid stream", HEADER + b"<!DOCTYPE x>", "restricted-xml"),
    ("comment", HEADER + b"<!-- hello -->", "restricted-xml"),
    ("comment inside stanza", b"<message><body>x<!--y--></body></message>", "restricted-xml"),
    ("processing instruction", HEADER + b"<?php echo 1; ?>", "restricted-xml"),
    ("xml-stylesheet pi", b"<?xml-stylesheet href='a.xsl'?><a/>", "restricted-xml"),
    ("bare xml pi", b"<a/><?xml?>", "restricted-xml"),
    ("conditional section", b"<a><![INCLUDE[ x ]]></a>", "restricted-xml"),
    ("doctype after cdata", b"<b><![CDATA[x]]></b><!DOCTYPE a>", "restricted-xml"),
    ("entity declaration alone", b"<!ENTITY a 'b'>", "restricted-xml"),
    ("NUL byte", b"<a>\x00</a>", "not-well-formed"),
    ("UTF-16 stream", "<?xml version='1.0'?><a/>".encode("utf-16"), "not-well-formed"),
]


def _verdict(chunks: list[bytes]) -> str | None:
    guard = RestrictedXmlGuard()
    try:
        for chunk in chunks:
            guard.feed(chunk)
    except RemoteXmppError as exc:
        return exc.condition
    return None


@pytest.mark.parametrize(("data", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_whole(data: bytes, expected: str | None) -> None:
    assert _verdict([data]) == expected


@pytest.mark.parametrize(("data", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_one_byte_at_a_time(data: bytes, expected: str | None) -> None:
    assert _verdict([data[i : i + 1] for i in range(len(data))]) == expected


def test_reset_forgets_carried_state() -> None:
    guard = RestrictedXmlGuard()
    guard.feed(b"<a><![CDATA[ unfinished")
    guard.reset()
    with pytest.raises(RemoteXmppError):
        guard.feed(b"<!-- c -->")


@settings(max_examples=300, deadline=None)
@given(
    case=st.sampled_from(CASES),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
)
def test_random_splits_give_the_same_verdict(
    case: tuple[str, bytes, str | None], cuts: list[int]
) -> None:
    _, data, expected = case
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    assert _verdict(chunks) == expected


_ALPHABET = st.sampled_from(
    [b"<", b"!", b"?", b"[", b"]", b">", b"-", b"x", b"m", b"l", b" ", b"CDATA[", b"DOCTYPE", b"a"]
)


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(_ALPHABET, max_size=40), cut=st.integers(min_value=0, max_value=200))
def test_any_input_passes_or_raises_remote_error_independently_of_split(
    parts: list[bytes], cut: int
) -> None:
    data = b"".join(parts)
    whole = _verdict([data])
    cut %= len(data) + 1
    assert _verdict([data[:cut], data[cut:]]) == whole
    assert _verdict([data[i : i + 1] for i in range(len(data))]) == whole


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    assert _verdict([data]) in (None, "restricted-xml", "not-well-formed")
