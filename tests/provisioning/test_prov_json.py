"""JSON codec: shape, round trips, hostile input."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prov_helpers import EXAMPLES, documents, full, minimal

from sipxmpp.provisioning.constants import MAX_DOCUMENT_BYTES, NAMESPACE
from sipxmpp.provisioning.errors import Reason, RemoteProvisioningError
from sipxmpp.provisioning.jsoncodec import parse_json, to_json, to_json_data
from sipxmpp.provisioning.model import ProvisioningDocument
from sipxmpp.provisioning.xmlcodec import parse_xml


def test_json_example_matches_xml_example() -> None:
    from_json = parse_json((EXAMPLES / "full.json").read_bytes())
    from_xml = parse_xml((EXAMPLES / "full.xml").read_bytes())
    assert from_json == from_xml


def test_shape_uses_kebab_case_and_envelope() -> None:
    data = to_json_data(full())
    assert data["namespace"] == NAMESPACE and data["version"] == "1.0"
    assert data["connectivity"]["tls-only"] is True
    assert data["chat"]["emoticons"]["mapping"] == [{"text": ":-)", "meaning": "smile"}]
    assert data["clearing-house"]["peer-network-privacy"] == {"visibility": "all", "visible-to": []}
    assert list(data)[:3] == ["namespace", "version", "domain"]


@settings(max_examples=200, deadline=None)
@given(documents())
def test_round_trip_model_json_model(document: ProvisioningDocument) -> None:
    assert parse_json(to_json(document)) == document
    assert parse_json(to_json(document, indent=None)) == document


def _env(**members: object) -> bytes:
    body: dict[str, object] = {"namespace": NAMESPACE, "version": "1.0", "domain": "a.example",
            "connectivity": {"dns-names": ["a.example"]}}  # fmt: skip
    body.update(members)
    return json.dumps(body).encode()


def test_minimal_json_and_colon_members_ignored() -> None:
    assert parse_json(_env()) == minimal()
    data = _env(**{"urn:example:future": {"x": 1}, "chat": {"ext:hint": True, "logging": True}})
    assert parse_json(data).chat.logging is True


HOSTILE = [
    pytest.param(b"[" * 100_000, Reason.TOO_LARGE, id="oversize-nesting"),
    pytest.param(b"[" * 30_000 + b"]" * 30_000, Reason.NOT_WELL_FORMED, id="deep-nesting"),
    pytest.param(b'{"a": ' + b"9" * 5000 + b"}", Reason.NOT_WELL_FORMED, id="huge-integer"),
    pytest.param(b'{"namespace": "x", "namespace": "y"}', Reason.NOT_WELL_FORMED, id="duplicate-member"),
    pytest.param(b"\xff\xfe{}", Reason.NOT_UTF8, id="not-utf8"),
    pytest.param(b"", Reason.NOT_WELL_FORMED, id="empty"),
    pytest.param(b"[]", Reason.SCHEMA_INVALID, id="array"),
    pytest.param(_env(namespace="urn:example:other"), Reason.WRONG_NAMESPACE, id="wrong-namespace"),
    pytest.param(_env(namespace=None), Reason.WRONG_NAMESPACE, id="null-namespace"),
    pytest.param(_env(namespace="urn:sipxmpp:xml:ns:pres-im-provisioning:2"), Reason.UNSUPPORTED_VERSION, id="major-2"),
    pytest.param(_env(version="2.0"), Reason.UNSUPPORTED_VERSION, id="version-2"),
    pytest.param(_env(version=1), Reason.SCHEMA_INVALID, id="version-number"),
    pytest.param(_env(surprise=True), Reason.INVALID_VALUE, id="unknown-member"),
    pytest.param(_env(connectivity={"dns-names": ["a.example"], "srv": "true"}), Reason.INVALID_VALUE, id="string-bool"),
    pytest.param(_env(domain=12), Reason.INVALID_VALUE, id="number-domain"),
    pytest.param(_env(domain="\ud800.example"), Reason.INVALID_VALUE, id="lone-surrogate"),
    pytest.param(b" " * (MAX_DOCUMENT_BYTES + 1), Reason.TOO_LARGE, id="over-cap"),
]  # fmt: skip


@pytest.mark.parametrize(("data", "reason"), HOSTILE)
def test_hostile_json_is_refused(data: bytes, reason: Reason) -> None:
    with pytest.raises(RemoteProvisioningError) as info:
        parse_json(data)
    assert info.value.reason is reason
    assert len(str(info.value)) < 600


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1024) | st.text(max_size=400).map(str.encode))
def test_any_bytes_parse_or_raise_remote_error(data: bytes) -> None:
    try:
        parse_json(data)
    except RemoteProvisioningError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["domain", "chat", "connectivity", "srv", "dns-names", "x:y", "logging"]), children, max_size=4),
    max_leaves=20,
))  # fmt: skip
def test_any_json_value_in_the_envelope_parses_or_raises(value: object) -> None:
    body = {"namespace": NAMESPACE, "version": "1.0"}
    if isinstance(value, dict):
        body.update(value)
    else:
        body["chat"] = value  # type: ignore[assignment]
    try:
        parse_json(json.dumps(body).encode())
    except RemoteProvisioningError:
        pass
