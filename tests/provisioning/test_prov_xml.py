"""XML codec: XSD, examples, round trips, hostile documents."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from prov_helpers import EXAMPLES, documents, full, minimal

from sipxmpp.provisioning.constants import MAX_DOCUMENT_BYTES, NAMESPACE
from sipxmpp.provisioning.errors import (
    LocalProvisioningError,
    ProvisioningError,
    Reason,
    RemoteProvisioningError,
)
from sipxmpp.provisioning.model import Extension, ImMode, ProvisioningDocument, Visibility
from sipxmpp.provisioning.xmlcodec import load_schema, parse_xml, safe_xml_parser, to_xml

EXAMPLE_FILES = sorted(EXAMPLES.glob("*.xml"))


def test_there_are_examples() -> None:
    names = {p.name for p in EXAMPLE_FILES}
    assert {"full.xml", "minimal.xml", "clearing-house-restricted.xml"} <= names


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_every_example_validates_against_the_xsd(path: object) -> None:
    tree = etree.parse(str(path), safe_xml_parser())
    load_schema().assertValid(tree)


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_every_example_parses_and_round_trips(path: object) -> None:
    with open(str(path), "rb") as fh:
        document = parse_xml(fh.read())
    assert parse_xml(to_xml(document)) == document


def test_example_contents() -> None:
    full_doc = parse_xml((EXAMPLES / "full.xml").read_bytes())
    assert full_doc.connectivity.tls_only and full_doc.chat.im_modes == (
        ImMode.PAGE,
        ImMode.SESSION,
    )
    assert len(full_doc.chat.emoticons.mapping) == 3
    minimal_doc = parse_xml((EXAMPLES / "minimal.xml").read_bytes())
    assert minimal_doc == minimal("small.example")
    restricted_doc = parse_xml((EXAMPLES / "clearing-house-restricted.xml").read_bytes())
    privacy = restricted_doc.clearing_house.peer_network_privacy
    assert privacy.visibility is Visibility.RESTRICTED and len(privacy.visible_to) == 3
    newer = parse_xml((EXAMPLES / "forward-compatible.xml").read_bytes())
    assert newer.connectivity.tls_only and newer.chat.is_composing


def test_serializer_output_is_valid_and_deterministic() -> None:
    data = to_xml(full())
    load_schema().assertValid(etree.fromstring(data, safe_xml_parser()))
    assert data == to_xml(full())
    assert data.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_round_trip_model_xml_model(document: ProvisioningDocument) -> None:
    data = to_xml(document)
    load_schema().assertValid(etree.fromstring(data, safe_xml_parser()))
    assert parse_xml(data) == document
    assert parse_xml(to_xml(document, pretty=False)) == document


def _wrap(inner: str, root_attrs: str = 'version="1.0" domain="a.example"') -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>'
        f'<pres-im-provisioning xmlns="{NAMESPACE}" {root_attrs}>{inner}</pres-im-provisioning>'
    ).encode()


_CONN = "<connectivity><dns-names><dns-name>a.example</dns-name></dns-names></connectivity>"

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol9 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
]>
<pres-im-provisioning xmlns="urn:sipxmpp:xml:ns:pres-im-provisioning:1" version="1.0"
 domain="a.example"><connectivity><dns-names><dns-name>&lol9;</dns-name></dns-names>
 </connectivity></pres-im-provisioning>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE p [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<pres-im-provisioning xmlns="urn:sipxmpp:xml:ns:pres-im-provisioning:1" version="1.0"
 domain="a.example"><connectivity><dns-names><dns-name>&xxe;</dns-name></dns-names>
 </connectivity></pres-im-provisioning>"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE pres-im-provisioning SYSTEM "http://127.0.0.1:9/evil.dtd">
<pres-im-provisioning xmlns="urn:sipxmpp:xml:ns:pres-im-provisioning:1" version="1.0"
 domain="a.example"/>"""

HOSTILE = [
    pytest.param(BILLION_LAUGHS, Reason.DTD_FORBIDDEN, id="billion-laughs"),
    pytest.param(XXE, Reason.DTD_FORBIDDEN, id="xxe"),
    pytest.param(EXTERNAL_DTD, Reason.DTD_FORBIDDEN, id="external-dtd"),
    pytest.param(b"<a>" * 10 + b"x" * (10 * 1024 * 1024), Reason.TOO_LARGE, id="10MB"),
    pytest.param(b" " * (MAX_DOCUMENT_BYTES + 1), Reason.TOO_LARGE, id="one-over-cap"),
    pytest.param(_wrap(_CONN).replace(NAMESPACE.encode(), b"urn:example:other"), Reason.WRONG_NAMESPACE, id="wrong-namespace"),
    pytest.param(_wrap(_CONN).replace(b' xmlns="' + NAMESPACE.encode() + b'"', b""), Reason.WRONG_NAMESPACE, id="no-namespace"),
    pytest.param(b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:a@b"/>', Reason.WRONG_NAMESPACE, id="pidf-document"),
    pytest.param(_wrap(_CONN).replace(b":pres-im-provisioning:1", b":pres-im-provisioning:2"), Reason.UNSUPPORTED_VERSION, id="major-2-namespace"),
    pytest.param(_wrap(_CONN, 'version="2.0" domain="a.example"'), Reason.UNSUPPORTED_VERSION, id="version-2"),
    pytest.param(_wrap(_CONN, 'domain="a.example"'), Reason.UNSUPPORTED_VERSION, id="no-version"),
    pytest.param(b"\x00\x01\x02garbage\xff\xfe", Reason.NOT_UTF8, id="garbage-bytes"),
    pytest.param("<?xml version='1.0' encoding='UTF-16'?><a/>".encode("utf-16"), Reason.NOT_UTF8, id="utf-16"),
    pytest.param(b"<?xml version='1.0' encoding='ISO-8859-1'?><a/>", Reason.NOT_UTF8, id="latin-1-declared"),
    pytest.param(b"", Reason.NOT_WELL_FORMED, id="empty"),
    pytest.param(b"not xml at all", Reason.NOT_WELL_FORMED, id="text"),
    pytest.param(_wrap(_CONN)[:-5], Reason.NOT_WELL_FORMED, id="truncated"),
    pytest.param(_wrap("<connectivity><dns-names><dns-name>&undefined;</dns-name></dns-names></connectivity>"), Reason.NOT_WELL_FORMED, id="undefined-entity"),
    pytest.param(_wrap(""), Reason.SCHEMA_INVALID, id="no-connectivity"),
    pytest.param(_wrap(_CONN + "<surprise/>"), Reason.SCHEMA_INVALID, id="unknown-own-element"),
    pytest.param(_wrap("<chat/>" + _CONN), Reason.SCHEMA_INVALID, id="wrong-order"),
    pytest.param(_wrap(_CONN.replace("a.example</dns-name>", "a.example</dns-name><dns-name>bad_name</dns-name>")), Reason.SCHEMA_INVALID, id="bad-dns-name"),
    pytest.param(_wrap(_CONN + "<chat><logging>maybe</logging></chat>"), Reason.SCHEMA_INVALID, id="bad-boolean"),
    pytest.param(_wrap(_CONN.replace("</dns-names>", "<dns-name>A.EXAMPLE</dns-name></dns-names>")), Reason.INVALID_VALUE, id="duplicate-dns"),
    pytest.param(_wrap(_CONN + '<chat><rich-text supported="true"/></chat>'), Reason.INVALID_VALUE, id="supported-without-list"),
    pytest.param(_wrap(_CONN + '<clearing-house><peer-network-privacy visibility="all"><visible-to>b.example</visible-to></peer-network-privacy></clearing-house>'), Reason.INVALID_VALUE, id="all-with-list"),
]  # fmt: skip


@pytest.mark.parametrize(("data", "reason"), HOSTILE)
def test_hostile_and_malformed_documents_are_refused(data: bytes, reason: Reason) -> None:
    with pytest.raises(RemoteProvisioningError) as info:
        parse_xml(data)
    assert info.value.reason is reason
    assert len(str(info.value)) < 600


def test_refusal_status_hints() -> None:
    with pytest.raises(RemoteProvisioningError) as too_large:
        parse_xml(b" " * (MAX_DOCUMENT_BYTES + 1))
    assert too_large.value.status_hint == 413
    with pytest.raises(RemoteProvisioningError) as wrong_ns:
        parse_xml(b'<x xmlns="urn:other"/>')
    assert wrong_ns.value.status_hint == 415
    with pytest.raises(RemoteProvisioningError) as invalid:
        parse_xml(_wrap(""))
    assert invalid.value.status_hint == 400


def test_foreign_elements_are_ignored_and_whitespace_tolerated() -> None:
    data = _wrap(
        "<connectivity><dns-names><dns-name>\n  A.Example  \n</dns-name></dns-names>"
        '<x:hint xmlns:x="urn:example:other">ignored</x:hint></connectivity>'
        "<chat><logging> 1 </logging></chat>"
        '<x:more xmlns:x="urn:example:other"><x:deep/></x:more>',
        'version="1.7" domain="a.example"',
    )
    document = parse_xml(data)
    assert document.connectivity.dns_names == ("a.example",)
    assert document.chat.logging is True


def test_comments_and_processing_instructions_are_dropped() -> None:
    data = _wrap("<!-- note --><?pi x?>" + _CONN)
    assert parse_xml(data) == minimal()


def test_local_document_over_the_cap_is_refused_on_write() -> None:
    big = full().model_copy(
        update={
            "extensions": tuple(
                Extension(name=f"urn:example:e{i}", values=tuple("v" * 500 for _ in range(8)))
                for i in range(20)
            )
        }
    )
    with pytest.raises(LocalProvisioningError) as info:
        to_xml(big)
    assert info.value.reason is Reason.TOO_LARGE


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_any_bytes_parse_or_raise_remote_error(data: bytes) -> None:
    try:
        parse_xml(data)
    except RemoteProvisioningError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_documents_parse_or_raise_remote_error(data: st.DataObject) -> None:
    original = bytearray(to_xml(full()))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(original) - 1))
        action = data.draw(st.sampled_from(["flip", "delete", "insert"]))
        if action == "flip":
            original[pos] = data.draw(st.integers(0, 255))
        elif action == "delete":
            del original[pos]
        else:
            original[pos:pos] = data.draw(
                st.sampled_from([b"<", b"&", b"<!DOCTYPE x>", b"\xc3", b'"'])
            )
    try:
        parse_xml(bytes(original))
    except ProvisioningError as exc:
        assert isinstance(exc, RemoteProvisioningError)
