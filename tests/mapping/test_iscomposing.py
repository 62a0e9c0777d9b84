"""RFC 3994 isComposing codec: tables, schema validity, hostile input, properties."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

import sipxmpp.mapping as mapping_package
from sipxmpp.mapping.iscomposing import (
    ACTIVE_TIMEOUT,
    MAX_ISCOMPOSING_SIZE,
    ComposingState,
    IsComposing,
    LocalIsComposingError,
    RemoteIsComposingError,
    active_until,
    parse_iscomposing,
    serialize_iscomposing,
)

SCHEMA = etree.XMLSchema(
    # The package directory, not the module's: a compiled module lives in the build directory.
    etree.parse(str(Path(mapping_package.__file__).parent / "schemas" / "im-iscomposing.xsd"))
)
NS = 'xmlns="urn:ietf:params:xml:ns:im-iscomposing"'


def body(inner: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<isComposing {NS}>{inner}</isComposing>'.encode()
    )


PARSE_CASES = [
    (
        "rfc3994-active",
        body("<state>active</state><contenttype>text/plain</contenttype><refresh>90</refresh>"),
        IsComposing(ComposingState.ACTIVE, content_type="text/plain", refresh=90),
    ),
    (
        "rfc3994-idle",
        body(
            "<state>idle</state><lastactive>2003-01-27T10:43:00Z</lastactive>"
            "<contenttype>audio</contenttype>"
        ),
        IsComposing(ComposingState.IDLE, "2003-01-27T10:43:00Z", "audio"),
    ),
    (
        "any-order-and-whitespace",
        body("<refresh> 60 </refresh><state> active </state><x:e xmlns:x='urn:x'/>"),
        IsComposing(ComposingState.ACTIVE, refresh=60),
    ),
    (
        "bad-optional-parts-dropped",
        body(
            "<state>idle</state><lastactive>soon</lastactive><contenttype> </contenttype>"
            "<refresh>0</refresh>"
        ),
        IsComposing(ComposingState.IDLE),
    ),
    (
        "huge-refresh-capped",
        body("<state>active</state><refresh>99999</refresh>"),
        IsComposing(ComposingState.ACTIVE, refresh=3600),
    ),
]


@pytest.mark.parametrize(
    ("data", "expected"), [c[1:] for c in PARSE_CASES], ids=[c[0] for c in PARSE_CASES]
)
def test_parse_table(data: bytes, expected: IsComposing) -> None:
    assert parse_iscomposing(data) == expected
    out = serialize_iscomposing(expected)
    assert SCHEMA.validate(etree.fromstring(out)), str(SCHEMA.error_log)
    assert parse_iscomposing(out) == expected


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"", 400),
        (body("<lastactive>2003-01-27T10:43:00Z</lastactive>"), 400),
        (body("<state>typing</state>"), 400),
        (b'<isComposing xmlns="urn:other"><state>active</state></isComposing>', 400),
        (b'<!DOCTYPE x [<!ENTITY a "b">]><isComposing/>', 400),
        (body("<state>active</state>" + " " * MAX_ISCOMPOSING_SIZE), 413),
    ],
    ids=["empty", "no-state", "unknown-state", "wrong-namespace", "doctype", "oversize"],
)
def test_refusals(data: bytes, status: int) -> None:
    with pytest.raises(RemoteIsComposingError) as info:
        parse_iscomposing(data)
    assert info.value.status == status


@pytest.mark.parametrize(
    "build",
    [
        lambda: IsComposing(ComposingState.ACTIVE, refresh=0),
        lambda: IsComposing(ComposingState.ACTIVE, refresh=3601),
        lambda: IsComposing(ComposingState.IDLE, last_active="2003-01-27 10:43"),
        lambda: IsComposing(ComposingState.IDLE, content_type=" text/plain"),
        lambda: IsComposing(ComposingState.IDLE, content_type=""),
    ],
)
def test_local_errors(build: object) -> None:
    with pytest.raises(LocalIsComposingError):
        build()  # type: ignore[operator]


def test_receiver_timer() -> None:
    # RFC 3994 §3.3: an active state expires after <refresh>, or 120 s without one.
    assert active_until(IsComposing(ComposingState.ACTIVE, refresh=90), 10.0) == 100.0
    assert active_until(IsComposing(ComposingState.ACTIVE), 10.0) == 10.0 + ACTIVE_TIMEOUT == 130.0
    assert active_until(IsComposing(ComposingState.IDLE), 10.0) is None


DOCS = st.builds(
    IsComposing,
    st.sampled_from(ComposingState),
    st.none() | st.sampled_from(["2003-01-27T10:43:00Z", "2020-02-29T23:59:59.5+01:00"]),
    st.none() | st.from_regex(r"[a-z]{1,8}(/[a-z0-9.+-]{1,10})?", fullmatch=True),
    st.none() | st.integers(1, 3600),
)


@settings(max_examples=200, deadline=None)
@given(DOCS)
def test_property_round_trip_and_schema_valid(doc: IsComposing) -> None:
    out = serialize_iscomposing(doc)
    assert parse_iscomposing(out) == doc
    assert SCHEMA.validate(etree.fromstring(out))


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=300)
    | st.builds(
        lambda d, b: d + b, st.sampled_from([body("<state>active</state>")]), st.binary(max_size=20)
    )
)
def test_property_any_bytes_parse_or_remote_error(data: bytes) -> None:
    try:
        parse_iscomposing(data)
    except RemoteIsComposingError:
        pass
