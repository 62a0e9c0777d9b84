"""RFC 3862 message/cpim codec: tables, refusals, properties."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipxmpp.mapping.cpim import (
    DEFAULT_CONTENT_TYPE,
    MAX_CPIM_HEADERS,
    MAX_CPIM_LINE,
    CpimAddress,
    CpimHeader,
    CpimMessage,
    CpimNamespace,
    CpimSubject,
    LocalCpimError,
    RemoteCpimError,
    parse_cpim,
    serialize_cpim,
    unsupported_required,
)

# RFC 3862 §2 (its sample message, with the CRLF line ends of §3.1).
RFC3862_SAMPLE = (
    b"From: MR SANDERS <im:piglet@100akerwood.com>\r\n"
    b"To: Depressed Donkey <im:eeyore@100akerwood.com>\r\n"
    b"DateTime: 2000-12-13T13:40:00-08:00\r\n"
    b"Subject: the weather will be fine today\r\n"
    b"Subject:;lang=fr beau temps prevu pour aujourd'hui\r\n"
    b"NS: MyFeatures <mid:MessageFeatures@id.foo.com>\r\n"
    b"Require: MyFeatures.VitalMessageOption\r\n"
    b"MyFeatures.VitalMessageOption: Confirmation-requested\r\n"
    b"MyFeatures.WackyMessageOption: Use-silly-font\r\n"
    b"\r\n"
    b"Content-type: text/xml; charset=utf-8\r\n"
    b"Content-ID: <1234567890@foo.com>\r\n"
    b"\r\n"
    b"<body>\r\n"
    b"Here is the text of my message.\r\n"
    b"</body>\r\n"
)

RFC3862_MESSAGE = CpimMessage(
    from_=CpimAddress("im:piglet@100akerwood.com", "MR SANDERS"),
    to=(CpimAddress("im:eeyore@100akerwood.com", "Depressed Donkey"),),
    date_time="2000-12-13T13:40:00-08:00",
    subjects=(
        CpimSubject("the weather will be fine today"),
        CpimSubject("beau temps prevu pour aujourd'hui", "fr"),
    ),
    namespaces=(CpimNamespace("mid:MessageFeatures@id.foo.com", "MyFeatures"),),
    require=("MyFeatures.VitalMessageOption",),
    extensions=(
        CpimHeader("MyFeatures.VitalMessageOption", "Confirmation-requested"),
        CpimHeader("MyFeatures.WackyMessageOption", "Use-silly-font"),
    ),
    content_type="text/xml; charset=utf-8",
    content_headers=(("Content-ID", "<1234567890@foo.com>"),),
    body=b"<body>\r\nHere is the text of my message.\r\n</body>\r\n",
)

# RFC 7702 §5.5 shape: a groupchat message from an XMPP occupant through the gateway.
GROUPCHAT = (
    b"From: <sip:romeo@example.net;gr=orchard>\r\n"
    b"To: <sip:council@chat.example.com>\r\n"
    b"\r\n"
    b"Content-Type: text/plain\r\n"
    b"\r\n"
    b"Who knows where Juliet is?"
)


def test_rfc3862_sample() -> None:
    assert parse_cpim(RFC3862_SAMPLE) == RFC3862_MESSAGE
    assert parse_cpim(serialize_cpim(RFC3862_MESSAGE)) == RFC3862_MESSAGE
    assert unsupported_required(RFC3862_MESSAGE) == ("MyFeatures.VitalMessageOption",)
    assert unsupported_required(RFC3862_MESSAGE, {"MyFeatures.VitalMessageOption"}) == ()


def test_groupchat_message_and_bare_lf() -> None:
    message = parse_cpim(GROUPCHAT)
    assert message.from_ == CpimAddress("sip:romeo@example.net;gr=orchard")
    assert message.to == (CpimAddress("sip:council@chat.example.com"),)
    assert message.content_type == "text/plain"
    assert message.body == b"Who knows where Juliet is?"
    assert parse_cpim(GROUPCHAT.replace(b"\r\n", b"\n")) == message


PARSE_CASES = [
    (
        "quoted-display-name-with-escapes",
        b'From: "Ren\\u00e9 \\"the\\" \\\\ fox" <sip:r@example.com>\r\n\r\n\r\n',
        CpimMessage(
            from_=CpimAddress("sip:r@example.com", 'Ren\u00e9 "the" \\ fox'),
            content_type=DEFAULT_CONTENT_TYPE,
        ),
    ),
    (
        "case-insensitive-standard-names-and-cc",
        b"from: <sip:a@x>\r\nTO: <sip:b@x>\r\nCC: Carol <sip:c@x>\r\ndatetime: never\r\n\r\n"
        b"Content-Type: text/plain\r\n\r\nhi",
        CpimMessage(
            from_=CpimAddress("sip:a@x"),
            to=(CpimAddress("sip:b@x"),),
            cc=(CpimAddress("sip:c@x", "Carol"),),
            content_type="text/plain",
            body=b"hi",
        ),
    ),
    (
        "subject-escapes-and-utf8",
        "Subject: line1\\nline2 \\t caf\u00e9 \\x kept\r\n\r\nContent-Type: text/plain\r\n\r\n".encode(),
        CpimMessage(
            subjects=(CpimSubject("line1\nline2 \t caf\u00e9 \\x kept"),), content_type="text/plain"
        ),
    ),
    (
        "folded-mime-header-and-default-ns",
        b'NS: <urn:x>\r\nX.Y:;a=1;b="two words";c value\r\n\r\n'
        b"Content-Type: text/plain;\r\n charset=utf-8\r\n\r\n",
        CpimMessage(
            namespaces=(CpimNamespace("urn:x"),),
            extensions=(CpimHeader("X.Y", "value", (("a", "1"), ("b", "two words"), ("c", None))),),
            content_type="text/plain; charset=utf-8",
        ),
    ),
]


@pytest.mark.parametrize(
    ("data", "expected"), [c[1:] for c in PARSE_CASES], ids=[c[0] for c in PARSE_CASES]
)
def test_parse_table(data: bytes, expected: CpimMessage) -> None:
    assert parse_cpim(data) == expected
    assert parse_cpim(serialize_cpim(expected)) == expected


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"", 400),
        (b"From: <sip:a@x>\r\n", 400),  # no blank line
        (b"From: <sip:a@x>\r\n\r\nContent-Type: text/plain\r\n", 400),  # MIME part unterminated
        (b"From sip:a@x\r\n\r\n\r\n", 400),
        (b"From: sip:a@x\r\n\r\n\r\n", 400),
        (b"From: <sip:a@x>\r\nFrom: <sip:b@x>\r\n\r\n\r\n", 400),
        (b"Bad Name: x\r\n\r\n\r\n", 400),
        (b"Subject: \xff\r\n\r\n\r\n", 400),
        (b"Subject: a\x00b\r\n\r\n\r\n", 400),
        (b'From: "open <sip:a@x>\r\n\r\n\r\n', 400),
        (b"X:;=1 v\r\n\r\n\r\n", 400),
        (b"Require: a b\r\n\r\n\r\n", 400),
        (b"\r\nContent-Type: a\r\nContent-Type: b\r\n\r\n", 400),
        (b"\r\n continuation\r\n\r\n", 400),
        (b"X: " + b"a" * MAX_CPIM_LINE + b"\r\n\r\n\r\n", 413),
        (b"".join(b"X-%d: v\r\n" % i for i in range(MAX_CPIM_HEADERS + 1)) + b"\r\n\r\n", 413),
        (b"\r\n\r\n" + b"x" * 70_000, 413),
    ],
)
def test_refusals(data: bytes, status: int) -> None:
    with pytest.raises(RemoteCpimError) as info:
        parse_cpim(data)
    assert info.value.status == status


def test_configured_size_limit() -> None:
    assert parse_cpim(GROUPCHAT, max_size=len(GROUPCHAT)).body
    with pytest.raises(RemoteCpimError):
        parse_cpim(GROUPCHAT, max_size=len(GROUPCHAT) - 1)


@pytest.mark.parametrize(
    "build",
    [
        lambda: CpimAddress(""),
        lambda: CpimAddress("sip:a b@x"),
        lambda: CpimAddress("sip:a@x", ""),
        lambda: CpimHeader("From", "x"),
        lambda: CpimHeader("a b", "x"),
        lambda: CpimSubject("x", "f r"),
        lambda: CpimNamespace("urn:x", "a.b"),
        lambda: CpimMessage(date_time="yesterday"),
        lambda: CpimMessage(content_type="text/plain\r\nX: y"),
        lambda: CpimMessage(content_headers=(("Content-Type", "x"),)),
        lambda: CpimMessage(require=("a b",)),
        lambda: CpimMessage(subjects=(CpimSubject("\ud800"),)),
    ],
)
def test_local_errors(build: object) -> None:
    with pytest.raises(LocalCpimError):
        build()  # type: ignore[operator]


TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
URI = st.builds(
    "{}:{}@{}.example".format,
    st.sampled_from(["sip", "im", "pres"]),
    st.text("abc019.;=", min_size=1, max_size=10),
    st.text("xyz", min_size=1, max_size=6),
)
NAME = st.text(string.ascii_letters + string.digits + "-", min_size=1, max_size=8)
ADDRESS = st.builds(CpimAddress, URI, st.none() | TEXT.filter(bool))
MIME_VALUE = st.text(string.printable[:95], max_size=20).map(str.strip)
CONTENT_TYPES = st.builds(
    "{}/{}{}".format,
    st.sampled_from(["text", "application", "image"]),
    st.text(string.ascii_lowercase + "+.-", min_size=1, max_size=10),
    st.sampled_from(["", "; charset=utf-8", ";charset=us-ascii"]),
)


@st.composite
def messages(draw: st.DrawFn) -> CpimMessage:
    extension_names = draw(st.lists(NAME, max_size=3))
    return CpimMessage(
        from_=draw(st.none() | ADDRESS),
        to=tuple(draw(st.lists(ADDRESS, max_size=2))),
        cc=tuple(draw(st.lists(ADDRESS, max_size=2))),
        date_time=draw(
            st.none() | st.sampled_from(["2000-12-13T13:40:00-08:00", "2024-01-01T00:00:00Z"])
        ),
        subjects=tuple(
            draw(
                st.lists(
                    st.builds(CpimSubject, TEXT, st.none() | st.sampled_from(["fr", "en-GB"])),
                    max_size=2,
                )
            )
        ),
        namespaces=tuple(
            draw(st.lists(st.builds(CpimNamespace, URI, st.none() | NAME), max_size=2))
        ),
        require=tuple(draw(st.lists(NAME.map(lambda n: "P." + n), max_size=2))),
        extensions=tuple(
            CpimHeader(
                "P." + name,
                draw(TEXT),
                tuple(draw(st.lists(st.tuples(NAME, st.none() | TEXT), max_size=2))),
            )
            for name in extension_names
        ),
        content_type=draw(CONTENT_TYPES),
        content_headers=tuple(
            draw(st.lists(st.tuples(NAME.map(lambda n: "X-" + n), MIME_VALUE), max_size=2))
        ),
        body=draw(st.binary(max_size=64)),
    )


@settings(max_examples=200, deadline=None)
@given(messages())
def test_property_round_trip(message: CpimMessage) -> None:
    assert parse_cpim(serialize_cpim(message)) == message


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=300)
    | st.builds(lambda a, b: a + b, st.just(RFC3862_SAMPLE[:200]), st.binary(max_size=40))
)
def test_property_any_bytes_parse_or_remote_error(data: bytes) -> None:
    try:
        parse_cpim(data)
    except RemoteCpimError:
        pass
