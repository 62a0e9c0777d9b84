"""XEP-0128 form encoding: field table, round trips, refusals."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from lxml import etree
from prov_helpers import documents, full, minimal, restricted

from sipxmpp.provisioning.constants import FORM_TYPE
from sipxmpp.provisioning.errors import Reason, RemoteProvisioningError
from sipxmpp.provisioning.form import (
    MAX_FORM_FIELDS,
    DataForm,
    FormField,
    document_to_form,
    form_from_element,
    form_to_document,
    form_to_element,
)
from sipxmpp.provisioning.model import ProvisioningDocument


def test_field_table_of_the_full_document() -> None:
    form = document_to_form(full())
    assert form.type == "result" and form.form_type == FORM_TYPE
    expected = {
        "FORM_TYPE": ("hidden", (FORM_TYPE,)),
        "domain": ("text-single", ("a.example",)),
        "dns-names": ("text-multi", ("a.example", "sip.a.example")),
        "srv": ("boolean", ("1",)),
        "tls-only": ("boolean", ("1",)),
        "view-sharing": ("list-single", ("both",)),
        "pidf-extensions": ("text-multi", ("urn:ietf:params:xml:ns:pidf:rpid",)),
        "pidf-mapping": (
            "text-multi",
            ("{urn:ietf:params:xml:ns:pidf:rpid}activities {http://example.com/ns}busy",),
        ),
        "list-subscription": ("boolean", ("1",)),
        "logging": ("boolean", ("1",)),
        "im-modes": ("list-multi", ("page", "session")),
        "is-composing": ("boolean", ("1",)),
        "rich-text": ("text-multi", ("application/xhtml+xml",)),
        "emoticons": ("text-multi", (":-) smile",)),
        "images": ("text-multi", ("image/png",)),
        "n-way-chat": ("boolean", ("1",)),
        "file-transfer": ("boolean", ("1",)),
        "peer-visibility": ("list-single", ("all",)),
        "visible-to": ("jid-multi", ()),
        "urn:example:x": ("text-multi", ("1", "two words")),
    }
    assert {f.var: (f.type, f.values) for f in form.fields} == expected


def test_minimal_form_booleans_are_zero() -> None:
    form = document_to_form(minimal())
    assert form.field("srv") == FormField("srv", ("0",), "boolean")
    assert form.field("rich-text") == FormField("rich-text", (), "text-multi")


@settings(max_examples=200, deadline=None)
@given(documents())
def test_round_trip_model_form_model(document: ProvisioningDocument) -> None:
    form = document_to_form(document)
    assert form_to_document(form) == document
    element = form_to_element(form)
    reparsed = etree.fromstring(etree.tostring(element))
    assert form_from_element(reparsed) == form
    assert form_to_document(form_from_element(reparsed)) == document


def test_restricted_visibility_round_trip() -> None:
    document = restricted("a.example", ("b.example", "c.example"))
    form = document_to_form(document)
    assert form.field("visible-to") == FormField(
        "visible-to", ("b.example", "c.example"), "jid-multi"
    )
    assert form_to_document(form) == document


def _ours(*fields: FormField) -> DataForm:
    base = (
        FormField("FORM_TYPE", (FORM_TYPE,), "hidden"),
        FormField("domain", ("a.example",)),
        FormField("dns-names", ("a.example",)),
    )
    return DataForm(base + fields)


def test_reader_leniency() -> None:
    form = _ours(
        FormField("srv", ("true",), "boolean"),
        FormField("logging", ("false",)),
        FormField("future-field", ("whatever",)),
    )
    document = form_to_document(form)
    assert document.connectivity.srv is True and document.chat.logging is False
    assert form_to_document(_ours()) == minimal()


BAD_FORMS = [
    pytest.param(DataForm((FormField("FORM_TYPE", ("urn:other",), "hidden"),)), Reason.WRONG_NAMESPACE, id="other-form-type"),
    pytest.param(DataForm((FormField("FORM_TYPE", (FORM_TYPE,)),)), Reason.WRONG_NAMESPACE, id="form-type-not-hidden"),
    pytest.param(_ours(FormField("srv", ("yes",))), Reason.INVALID_VALUE, id="bad-boolean"),
    pytest.param(_ours(FormField("srv", ("1", "0"))), Reason.INVALID_VALUE, id="two-booleans"),
    pytest.param(_ours(FormField("srv", ("1",)), FormField("srv", ("0",))), Reason.INVALID_VALUE, id="duplicate-field"),
    pytest.param(_ours(FormField("emoticons", (":-)",))), Reason.INVALID_VALUE, id="emoticon-without-meaning"),
    pytest.param(_ours(FormField("view-sharing", ("sometimes",))), Reason.INVALID_VALUE, id="bad-view-sharing"),
    pytest.param(_ours(FormField("visible-to", ("b.example",))), Reason.INVALID_VALUE, id="visible-to-without-restricted"),
    pytest.param(DataForm((FormField("FORM_TYPE", (FORM_TYPE,), "hidden"),)), Reason.INVALID_VALUE, id="no-domain"),
    pytest.param(_ours(*(FormField(f"f{i}") for i in range(MAX_FORM_FIELDS))), Reason.TOO_LARGE, id="too-many-fields"),
]  # fmt: skip


@pytest.mark.parametrize(("form", "reason"), BAD_FORMS)
def test_bad_forms_are_refused(form: DataForm, reason: Reason) -> None:
    with pytest.raises(RemoteProvisioningError) as info:
        form_to_document(form)
    assert info.value.reason is reason


def test_element_shape() -> None:
    element = form_to_element(document_to_form(minimal()))
    xml = etree.tostring(element).decode()
    assert xml.startswith('<x xmlns="jabber:x:data" type="result">')
    assert f'<field var="FORM_TYPE" type="hidden"><value>{FORM_TYPE}</value></field>' in xml


def test_element_refusals() -> None:
    with pytest.raises(RemoteProvisioningError):
        form_from_element(etree.fromstring(b"<x xmlns='urn:other'/>"))
    with pytest.raises(RemoteProvisioningError):
        form_from_element(etree.fromstring(b"<x xmlns='jabber:x:data'><field/></x>"))
    many = "".join(f"<field var='f{i}'/>" for i in range(MAX_FORM_FIELDS + 1))
    with pytest.raises(RemoteProvisioningError) as info:
        form_from_element(etree.fromstring(f"<x xmlns='jabber:x:data'>{many}</x>".encode()))
    assert info.value.reason is Reason.TOO_LARGE
