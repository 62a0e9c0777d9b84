"""PIDF codec (RFC 3863 + RFC 4479 + RFC 4480): tables, schema validity, hostile input, properties."""

from __future__ import annotations

import string
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

import sipxmpp.mapping.pidf as pidf_module
from sipxmpp.mapping.model import LocalMappingError, MappingRefused
from sipxmpp.mapping.pidf import (
    MAX_PIDF_SIZE,
    MAX_PIDF_TUPLES,
    Activities,
    Activity,
    Basic,
    Contact,
    Device,
    LocalPidfError,
    Note,
    Person,
    PidfDocument,
    PresenceTuple,
    RemotePidfError,
    Show,
    format_qvalue,
    is_rfc3339,
    parse_pidf,
    parse_qvalue,
    serialize_pidf,
)

SCHEMAS = Path(pidf_module.__file__).parent / "schemas"
PRESENCE_SCHEMA = etree.XMLSchema(etree.parse(str(SCHEMAS / "presence-bundle.xsd")))

HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<presence xmlns="urn:ietf:params:xml:ns:pidf"'
    ' xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"'
    ' xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid"'
    ' entity="pres:someone@example.com">'
)


def doc(inner: str, head: str = HEAD) -> bytes:
    return (head + inner + "</presence>").encode()


def assert_schema_valid(body: bytes) -> None:
    root = etree.fromstring(body)
    assert PRESENCE_SCHEMA.validate(root), str(PRESENCE_SCHEMA.error_log)


# --------------------------------------------------------------------------------------
# Parsing: a table of bodies and the model they mean.

PARSE_CASES: list[tuple[str, bytes, PidfDocument]] = [
    (
        "rfc3863-minimal",
        doc('<tuple id="t1"><status><basic>open</basic></status></tuple>'),
        PidfDocument("pres:someone@example.com", (PresenceTuple("t1", Basic.OPEN),)),
    ),
    (
        "rfc3863-full-tuple",
        doc(
            '<tuple id="bs35r9"><status><basic>open</basic></status>'
            '<contact priority="0.8">im:someone@mobilecarrier.net</contact>'
            '<note xml:lang="en">Don\'t Disturb Please!</note>'
            '<note xml:lang="fr">Ne derangez pas, s\'il vous plait</note>'
            "<timestamp>2001-10-27T16:49:29Z</timestamp></tuple>"
            '<note xml:lang="en">I\'ll be in Tokyo next week</note>'
        ),
        PidfDocument(
            "pres:someone@example.com",
            (
                PresenceTuple(
                    "bs35r9",
                    Basic.OPEN,
                    contact=Contact("im:someone@mobilecarrier.net", Decimal("0.8")),
                    notes=(
                        Note("Don't Disturb Please!", "en"),
                        Note("Ne derangez pas, s'il vous plait", "fr"),
                    ),
                    timestamp="2001-10-27T16:49:29Z",
                ),
            ),
            notes=(Note("I'll be in Tokyo next week", "en"),),
        ),
    ),
    (
        "rfc8048-embedded-show",
        doc(
            '<tuple id="ID-orchard"><status><basic>open</basic>'
            "<show xmlns='jabber:client'>away</show></status></tuple>"
        ),
        PidfDocument(
            "pres:someone@example.com", (PresenceTuple("ID-orchard", Basic.OPEN, Show.AWAY),)
        ),
    ),
    (
        "person-first-rpid",  # not the schema's order, read anyway (liberal)
        doc(
            '<dm:person id="p1"><rpid:activities><rpid:meeting/><rpid:on-the-phone/>'
            "</rpid:activities><dm:note>In a meeting</dm:note></dm:person>"
            '<tuple id="t1"><status><basic>open</basic></status>'
            "<dm:deviceID>mac:8asd7f7d</dm:deviceID></tuple>"
            '<dm:device id="d1"><dm:deviceID>mac:8asd7f7d</dm:deviceID></dm:device>'
        ),
        PidfDocument(
            "pres:someone@example.com",
            (PresenceTuple("t1", Basic.OPEN, device_id="mac:8asd7f7d"),),
            persons=(
                Person(
                    "p1",
                    Activities((Activity.MEETING, Activity.ON_THE_PHONE)),
                    (Note("In a meeting"),),
                ),
            ),
            devices=(Device("d1", "mac:8asd7f7d"),),
        ),
    ),
    (
        "no-basic-and-unknown-extensions-ignored",
        doc(
            '<tuple id="t1"><status><x:foo xmlns:x="urn:x"/></status>'
            '<x:bar xmlns:x="urn:x">ignored</x:bar></tuple><x:baz xmlns:x="urn:x"/>'
        ),
        PidfDocument("pres:someone@example.com", (PresenceTuple("t1"),)),
    ),
    (
        "priority-out-of-range-ignored",  # RFC 3863 §4.1.5
        doc(
            '<tuple id="t1"><status><basic>closed</basic></status>'
            '<contact priority="1.5">sip:a@example.com</contact></tuple>'
            '<tuple id="t2"><status><basic>closed</basic></status>'
            '<contact priority=" 1. ">sip:b@example.com</contact></tuple>'
        ),
        PidfDocument(
            "pres:someone@example.com",
            (
                PresenceTuple("t1", Basic.CLOSED, contact=Contact("sip:a@example.com")),
                PresenceTuple("t2", Basic.CLOSED, contact=Contact("sip:b@example.com", Decimal(1))),
            ),
        ),
    ),
    (
        "bad-optional-parts-dropped",
        doc(
            '<tuple id=" t1 "><status><basic> open </basic>'
            "<show xmlns='jabber:client'>sleepy</show></status>"
            '<contact>  </contact><note xml:lang="not a tag">n</note>'
            "<timestamp>yesterday</timestamp></tuple>"
        ),
        PidfDocument(
            "pres:someone@example.com", (PresenceTuple("t1", Basic.OPEN, notes=(Note("n"),)),)
        ),
    ),
    (
        "rpid-unknown-with-known-keeps-known",
        doc(
            '<tuple id="t1"><status/></tuple><dm:person id="p"><rpid:activities>'
            "<rpid:unknown/><rpid:away/><rpid:away/><rpid:other>gardening</rpid:other>"
            '<x:y xmlns:x="urn:x"/></rpid:activities></dm:person>'
        ),
        PidfDocument(
            "pres:someone@example.com",
            (PresenceTuple("t1"),),
            persons=(Person("p", Activities((Activity.AWAY,), (Note("gardening"),))),),
        ),
    ),
    (
        "utf8-and-mixed-whitespace",
        doc('<tuple id="t1"><status/><note> caf\u00e9 \u2615 </note></tuple>'),
        PidfDocument(
            "pres:someone@example.com", (PresenceTuple("t1", notes=(Note(" caf\u00e9 \u2615 "),)),)
        ),
    ),
    (
        "mustUnderstand-false-is-ignorable",
        doc(
            '<tuple id="t1"><status/></tuple><x:e xmlns:x="urn:x" '
            'xmlns:p="urn:ietf:params:xml:ns:pidf" p:mustUnderstand="false"/>'
        ),
        PidfDocument("pres:someone@example.com", (PresenceTuple("t1"),)),
    ),
]


@pytest.mark.parametrize(
    ("body", "expected"), [c[1:] for c in PARSE_CASES], ids=[c[0] for c in PARSE_CASES]
)
def test_parse_table(body: bytes, expected: PidfDocument) -> None:
    assert parse_pidf(body) == expected


@pytest.mark.parametrize("expected", [c[2] for c in PARSE_CASES], ids=[c[0] for c in PARSE_CASES])
def test_table_documents_serialize_valid_and_round_trip(expected: PidfDocument) -> None:
    body = serialize_pidf(expected)
    assert body.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")  # RFC 3863 §4.1 MUST
    assert_schema_valid(body)
    assert parse_pidf(body) == expected


def test_cp67_root_is_presence_in_pidf_namespace_with_entity_and_tuples_have_id_and_status() -> (
    None
):
    body = serialize_pidf(
        PidfDocument("pres:juliet@example.com", (PresenceTuple("ID-balcony", Basic.OPEN),))
    )
    root = etree.fromstring(body)
    assert root.tag == "{urn:ietf:params:xml:ns:pidf}presence"
    assert root.get("entity") == "pres:juliet@example.com"
    (tuple_element,) = root.findall("{urn:ietf:params:xml:ns:pidf}tuple")
    assert tuple_element.get("id") == "ID-balcony"
    status = tuple_element[0]
    assert status.tag == "{urn:ietf:params:xml:ns:pidf}status"
    assert status[0].text == "open"
    # ... and the parser holds peers to the same rules.
    for bad, why in [
        (b'<presence xmlns="urn:ietf:params:xml:ns:pidf"/>', "entity"),
        (b'<presence xmlns="urn:ietf:params:xml:ns:pidf:x" entity="pres:a@b"/>', "root"),
        (doc("<tuple><status/></tuple>"), "id"),
        (doc('<tuple id="t1"><contact>sip:a@b</contact></tuple>'), "status"),
    ]:
        with pytest.raises(RemotePidfError) as info:
            parse_pidf(bad)
        assert why in str(info.value)
        assert info.value.status == 400


# --------------------------------------------------------------------------------------
# Refusals: malformed and hostile bodies.

BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
    b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:a@b">'
    b'<tuple id="t"><status/><note>&lol3;</note></tuple></presence>'
)
XXE = (
    b'<?xml version="1.0"?><!DOCTYPE p [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:a@b">'
    b'<tuple id="t"><status/><note>&xxe;</note></tuple></presence>'
)
EXTERNAL_DTD = (
    b'<?xml version="1.0"?><!DOCTYPE presence SYSTEM "http://127.0.0.1:9/p.dtd">'
    b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:a@b"/>'
)
UTF16_DOCTYPE = (
    '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE p [<!ENTITY e "x">]>'
    '<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:a@b"/>'
).encode("utf-16")

REFUSALS: list[tuple[str, bytes, int, str]] = [
    ("empty", b"", 400, "well-formed"),
    ("not-xml", b"open", 400, "well-formed"),
    ("truncated", doc('<tuple id="t"><status>')[:-20], 400, "well-formed"),
    ("billion-laughs", BILLION_LAUGHS, 400, "DOCTYPE"),
    ("xxe", XXE, 400, "DOCTYPE"),
    ("external-dtd", EXTERNAL_DTD, 400, "DOCTYPE"),
    ("utf16-doctype", UTF16_DOCTYPE, 400, "DOCTYPE"),
    ("oversize", doc("<note>" + "x" * MAX_PIDF_SIZE + "</note>"), 413, "limit"),
    (
        "too-many-tuples",
        doc("".join(f'<tuple id="t{i}"><status/></tuple>' for i in range(MAX_PIDF_TUPLES + 1))),
        413,
        "tuples",
    ),
    (
        "bad-basic",
        doc('<tuple id="t"><status><basic>online</basic></status></tuple>'),
        400,
        "basic",
    ),
    (
        "duplicate-ids",
        doc('<tuple id="x"><status/></tuple><dm:person id="x"/>'),
        400,
        "duplicate",
    ),
    ("person-without-id", doc('<tuple id="t"><status/></tuple><dm:person/>'), 400, "person"),
    ("device-without-deviceID", doc('<dm:device id="d"/>'), 400, "deviceID"),
    ("entity-with-space", doc("").replace(b"pres:someone@", b"pres:some one@"), 400, "entity"),
    (
        "mustUnderstand",
        doc(
            '<tuple id="t"><status/><x:geo xmlns:x="urn:x" '
            'xmlns:p="urn:ietf:params:xml:ns:pidf" p:mustUnderstand="true"/></tuple>'
        ),
        400,
        "mustUnderstand",
    ),
    (
        "mustUnderstand-unqualified-1",
        doc('<tuple id="t"><status/></tuple><x:e xmlns:x="urn:x" mustUnderstand=" 1 "/>'),
        400,
        "mustUnderstand",
    ),
]


@pytest.mark.parametrize(
    ("body", "status", "detail"), [c[1:] for c in REFUSALS], ids=[c[0] for c in REFUSALS]
)
def test_refusals(body: bytes, status: int, detail: str) -> None:
    with pytest.raises(RemotePidfError) as info:
        parse_pidf(body)
    assert info.value.status == status == info.value.status_hint
    assert detail in str(info.value)
    assert isinstance(info.value, MappingRefused)  # the runtime answers it directly


def test_xxe_never_reads_the_file() -> None:
    # Even asked to, the codec must not leak a local file into a note.
    with pytest.raises(RemotePidfError):
        parse_pidf(XXE)


def test_comments_and_processing_instructions_are_dropped() -> None:
    body = doc(
        '<!-- c --><?pi x?><tuple id="t"><status><!--x--><basic>open</basic></status></tuple>'
    )
    assert parse_pidf(body).tuples == (PresenceTuple("t", Basic.OPEN),)


def test_parse_refuses_non_bytes() -> None:
    with pytest.raises(TypeError):
        parse_pidf("<presence/>")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------
# Building and serializing: local errors.

LOCAL_ERRORS = [
    ("empty-entity", lambda: PidfDocument("")),
    ("entity-space", lambda: PidfDocument("pres:a b")),
    ("tuple-id-space", lambda: PresenceTuple("a b")),
    ("control-char-note", lambda: Note("a\x00b")),
    ("bad-lang", lambda: Note("x", "en_US")),
    ("priority-high", lambda: Contact("sip:a@b", Decimal("1.001"))),
    ("priority-4-decimals", lambda: Contact("sip:a@b", Decimal("0.1234"))),
    ("priority-negative", lambda: Contact("sip:a@b", Decimal("-0.1"))),
    ("timestamp", lambda: PresenceTuple("t", timestamp="2001-13-01T00:00:00Z")),
    ("unknown-mixed", lambda: Activities((Activity.UNKNOWN, Activity.AWAY))),
    ("activity-twice", lambda: Activities((Activity.AWAY, Activity.AWAY))),
    (
        "duplicate-ids",
        lambda: PidfDocument("pres:a@b", (PresenceTuple("x"),), persons=(Person("x"),)),
    ),
    (
        "too-many-tuples",
        lambda: PidfDocument("pres:a@b", tuple(PresenceTuple(f"t{i}") for i in range(65))),
    ),
    ("not-ncname-id", lambda: serialize_pidf(PidfDocument("pres:a@b", (PresenceTuple("1"),)))),
    (
        "lunch-not-in-schema",
        lambda: serialize_pidf(
            PidfDocument("pres:a@b", persons=(Person("p", Activities((Activity.LUNCH,))),))
        ),
    ),
]


@pytest.mark.parametrize("build", [c[1] for c in LOCAL_ERRORS], ids=[c[0] for c in LOCAL_ERRORS])
def test_local_errors(build: object) -> None:
    with pytest.raises(LocalPidfError) as info:
        build()  # type: ignore[operator]
    assert isinstance(info.value, LocalMappingError)
    assert info.value.status_hint == 500


def test_digit_ids_from_peers_are_read_but_never_written() -> None:
    parsed = parse_pidf(doc('<tuple id="1"><status><basic>open</basic></status></tuple>'))
    assert parsed.tuples[0].id == "1"
    with pytest.raises(LocalPidfError):
        serialize_pidf(parsed)


@pytest.mark.parametrize(
    ("text", "value", "formatted"),
    [
        ("0", Decimal(0), "0"),
        ("0.", Decimal(0), "0"),
        ("0.5", Decimal("0.5"), "0.5"),
        ("0.007", Decimal("0.007"), "0.007"),
        ("1", Decimal(1), "1"),
        ("1.000", Decimal(1), "1"),
        (" 0.25 ", Decimal("0.25"), "0.25"),
        ("1.5", None, None),
        ("0.1234", None, None),
        ("-0", None, None),
        (".5", None, None),
        ("0x1", None, None),
        ("1.001", None, None),
    ],
)
def test_qvalue(text: str, value: Decimal | None, formatted: str | None) -> None:
    assert parse_qvalue(text) == value
    if value is not None:
        assert format_qvalue(value) == formatted


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("2008-10-15T10:00:00Z", True),
        ("2008-10-15T10:00:00.123+05:30", True),
        ("2008-02-30T10:00:00Z", False),
        ("2008-10-15t10:00:00z", False),
        ("2008-10-15T10:00:00", False),
        ("2008-10-15T10:00:00+24:00", False),
        ("2008-10-15 10:00:00Z", False),
    ],
)
def test_rfc3339(value: str, ok: bool) -> None:
    assert is_rfc3339(value) is ok


# --------------------------------------------------------------------------------------
# Properties.

XML_TEXT = st.text(
    st.characters(exclude_categories=("Cs",)).filter(pidf_module.is_xml_text), max_size=12
)
LANGS = st.none() | st.sampled_from(["en", "fr", "de-CH", "zh-Hant", "i-klingon", "x-private1"])
NOTES = st.lists(st.builds(Note, XML_TEXT, LANGS), max_size=3).map(tuple)
URIS = st.builds(
    "{}:{}@{}.example".format,
    st.sampled_from(["sip", "pres", "im", "tel"]),
    st.text("abcxyz0129.", min_size=1, max_size=8),
    st.text("abcdef", min_size=1, max_size=8),
)
NCNAMES = st.builds(
    str.__add__,
    st.sampled_from(string.ascii_letters + "_"),
    st.text(string.ascii_letters + string.digits + "._-", max_size=8),
)
TIMESTAMPS = st.none() | st.builds(
    lambda dt, fraction, offset: dt.strftime("%Y-%m-%dT%H:%M:%S") + fraction + (offset or "Z"),
    st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1)),
    st.sampled_from(["", ".5", ".123456"]),
    st.sampled_from([None, "+01:00", "-05:30", "+00:00"]),
)
PRIORITIES = st.none() | st.integers(0, 1000).map(lambda n: Decimal(n) / 1000)
WRITABLE_ACTIVITIES = [a for a in Activity if a not in (Activity.LUNCH, Activity.UNKNOWN)]
ACTIVITIES = (
    st.none()
    | st.builds(
        Activities,
        st.just((Activity.UNKNOWN,))
        | st.lists(st.sampled_from(WRITABLE_ACTIVITIES), unique=True, max_size=4).map(tuple),
        st.just(()),
        NOTES,
        TIMESTAMPS,
        TIMESTAMPS,
    )
    | st.builds(
        Activities,
        st.lists(st.sampled_from(WRITABLE_ACTIVITIES), unique=True, max_size=3).map(tuple),
        st.lists(st.builds(Note, XML_TEXT, LANGS), max_size=2).map(tuple),
    )
)


@st.composite
def documents(draw: st.DrawFn) -> PidfDocument:
    n_tuples = draw(st.integers(0, 4))
    n_persons = draw(st.integers(0, 2))
    n_devices = draw(st.integers(0, 2))
    ids = draw(
        st.lists(
            NCNAMES,
            min_size=n_tuples + n_persons + n_devices,
            max_size=n_tuples + n_persons + n_devices,
            unique=True,
        )
    )
    tuples = tuple(
        PresenceTuple(
            ids[i],
            draw(st.none() | st.sampled_from(Basic)),
            draw(st.none() | st.sampled_from(Show)),
            draw(st.none() | st.builds(Contact, URIS, PRIORITIES)),
            draw(NOTES),
            draw(TIMESTAMPS),
            draw(st.none() | URIS),
        )
        for i in range(n_tuples)
    )
    persons = tuple(
        Person(ids[n_tuples + i], draw(ACTIVITIES), draw(NOTES), draw(TIMESTAMPS))
        for i in range(n_persons)
    )
    devices = tuple(
        Device(ids[n_tuples + n_persons + i], draw(URIS), draw(NOTES), draw(TIMESTAMPS))
        for i in range(n_devices)
    )
    return PidfDocument(draw(URIS), tuples, draw(NOTES), persons, devices)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_property_parse_serialize_round_trip_and_schema_valid(document: PidfDocument) -> None:
    body = serialize_pidf(document)
    assert parse_pidf(body) == document
    assert_schema_valid(body)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_property_any_bytes_parse_or_remote_error(data: bytes) -> None:
    try:
        parse_pidf(data)
    except RemotePidfError:
        pass


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents(), st.data())
def test_property_mutated_documents_parse_or_remote_error(
    document: PidfDocument, data: st.DataObject
) -> None:
    body = bytearray(serialize_pidf(document))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(body)))
        action = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        if action == "flip" and position < len(body):
            body[position] = data.draw(st.integers(0, 255))
        elif action == "insert":
            body[position:position] = data.draw(
                st.sampled_from(
                    [b"<", b">", b"&", b'"', b"<tuple>", b"</status>", b"\xff", b"\x00"]
                )
            )
        elif position < len(body):
            del body[position]
    try:
        parse_pidf(bytes(body))
    except RemotePidfError:
        pass


def test_timestamps_with_offsets_survive() -> None:
    stamp = (datetime(2008, 10, 15, 10, 0, tzinfo=UTC) + timedelta(hours=1)).strftime(
        "%Y-%m-%dT%H:%M:%S+01:00"
    )
    document = PidfDocument(
        "pres:a@example.com", (PresenceTuple("t", Basic.OPEN, timestamp=stamp),)
    )
    assert parse_pidf(serialize_pidf(document)) == document
