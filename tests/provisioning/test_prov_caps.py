"""XEP-0115 caps: test vectors (point 70), node echo (71), disco contents (72), ver changes (73),
and §5.4 validation."""

from __future__ import annotations

import pytest
from lxml import etree
from prov_helpers import full, minimal

from sipxmpp.provisioning.caps import (
    CAPS_NS,
    DISCO_INFO_NS,
    MAX_FORMS,
    CapsVerdict,
    DiscoInfo,
    Identity,
    caps_element,
    caps_node,
    compute_ver,
    disco_info_from_element,
    disco_info_to_element,
    validate_disco_info,
    verification_string,
    verify_ver,
)
from sipxmpp.provisioning.constants import FORM_TYPE
from sipxmpp.provisioning.errors import Reason, RemoteProvisioningError
from sipxmpp.provisioning.form import DataForm, FormField, form_to_document
from sipxmpp.provisioning.publisher import ProvisioningPublisher
from sipxmpp.provisioning.views import ProvisioningPolicy

BASIC_FEATURES = (
    "http://jabber.org/protocol/caps",
    "http://jabber.org/protocol/disco#info",
    "http://jabber.org/protocol/disco#items",
    "http://jabber.org/protocol/muc",
)

EXODUS = DiscoInfo((Identity("client", "pc", "", "Exodus 0.9.1"),), BASIC_FEATURES)

SOFTWAREINFO = DataForm(
    (
        FormField("FORM_TYPE", ("urn:xmpp:dataforms:softwareinfo",), "hidden"),
        FormField("ip_version", ("ipv6", "ipv4"), "text-multi"),
        FormField("os", ("Mac",)),
        FormField("os_version", ("10.5.1",)),
        FormField("software", ("Psi",)),
        FormField("software_version", ("0.11",)),
    )
)
PSI = DiscoInfo(
    (Identity("client", "pc", "en", "Psi 0.11"), Identity("client", "pc", "el", "Ψ 0.11")),
    tuple(reversed(BASIC_FEATURES)),
    (SOFTWAREINFO,),
)

GATEWAY = (Identity("gateway", "sip", "", "sipxmpp"),)
NODE = "https://sipxmpp.example/caps"


# -- point 70 ---------------------------------------------------------------------------


def test_exodus_vector() -> None:
    assert verification_string(EXODUS) == (
        "client/pc//Exodus 0.9.1<http://jabber.org/protocol/caps<"
        "http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<"
        "http://jabber.org/protocol/muc<"
    )
    assert compute_ver(EXODUS) == "QgayPKawpkPSDYmwT/WM94uAlu0="


def test_psi_complex_vector_with_form() -> None:
    assert verification_string(PSI) == (
        "client/pc/el/Ψ 0.11<client/pc/en/Psi 0.11<http://jabber.org/protocol/caps<"
        "http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<"
        "http://jabber.org/protocol/muc<urn:xmpp:dataforms:softwareinfo<ip_version<ipv4<ipv6<"
        "os<Mac<os_version<10.5.1<software<Psi<software_version<0.11<"
    )
    assert compute_ver(PSI) == "q07IKJEyjvHSyhy//CH0CxmKi8w="


def test_vectors_survive_xml_round_trip() -> None:
    for info, ver in (
        (EXODUS, "QgayPKawpkPSDYmwT/WM94uAlu0="),
        (PSI, "q07IKJEyjvHSyhy//CH0CxmKi8w="),
    ):
        element = etree.fromstring(etree.tostring(disco_info_to_element(info)))
        assert compute_ver(disco_info_from_element(element)) == ver


def test_literal_lt_is_not_unescaped() -> None:
    info = DiscoInfo((Identity("client", "pc", "", "a&lt;b"),), ("f",))
    assert verification_string(info) == "client/pc//a&lt;b<f<"


def test_other_hash_functions() -> None:
    assert len(compute_ver(EXODUS, "sha-256")) == 44
    with pytest.raises(KeyError):
        compute_ver(EXODUS, "md5")


# -- points 71-73 through the publisher --------------------------------------------------


def _publisher() -> ProvisioningPublisher:
    return ProvisioningPublisher(ProvisioningPolicy(public=full("gw.example")))


def test_disco_info_with_node_echoes_node_and_hash_matches() -> None:
    publisher = _publisher()
    ver = publisher.caps_ver(None, GATEWAY, ())
    node = caps_node(NODE, ver)
    query = disco_info_to_element(publisher.disco_info(None, GATEWAY, ()), node=node)
    wire = etree.fromstring(etree.tostring(query))
    assert wire.get("node") == f"{NODE}#{ver}"
    received = disco_info_from_element(wire)
    assert verify_ver(received, ver, "sha-1") is CapsVerdict.VALID


def test_disco_info_contents() -> None:
    info = _publisher().disco_info(None, GATEWAY, ("urn:xmpp:ping", CAPS_NS))
    assert DISCO_INFO_NS in info.features and CAPS_NS in info.features
    assert len(info.features) == len(set(info.features)) == 3
    (form,) = info.forms
    field = form.field("FORM_TYPE")
    assert field is not None and field.type == "hidden" and field.values == (FORM_TYPE,)
    assert form_to_document(form) == full("gw.example")
    xml = etree.tostring(disco_info_to_element(info)).decode()
    assert '<field var="FORM_TYPE" type="hidden">' in xml
    assert f'<feature var="{CAPS_NS}"/>' in xml


def test_changing_a_value_changes_ver() -> None:
    publisher = _publisher()
    before = publisher.caps_ver(None, GATEWAY, ())
    document = full("gw.example")
    changed = document.model_copy(
        update={"chat": document.chat.model_copy(update={"is_composing": False})}
    )
    assert publisher.update(ProvisioningPolicy(public=changed))
    after = publisher.caps_ver(None, GATEWAY, ())
    assert after != before
    assert publisher.caps_ver(None, GATEWAY, ()) == after


def test_caps_element() -> None:
    c = caps_element(NODE, "abc=")
    assert etree.tostring(c) == (
        f'<c xmlns="{CAPS_NS}" hash="sha-1" node="{NODE}" ver="abc="/>'.encode()
    )


# -- §5.4 validation ---------------------------------------------------------------------


def _form(form_type: str, ftype: str | None = "hidden", *values: str) -> DataForm:
    return DataForm((FormField("FORM_TYPE", values or (form_type,), ftype), FormField("x", ("1",))))


ILL_FORMED = [
    pytest.param(DiscoInfo((Identity("a", "b"), Identity("a", "b")), ("f",)), id="duplicate-identity"),
    pytest.param(DiscoInfo((Identity("a", "b"),), ("f", "f")), id="duplicate-feature"),
    pytest.param(DiscoInfo((Identity("a", "b"),), ("f",), (_form("urn:t"), _form("urn:t"))), id="duplicate-form-type"),
    pytest.param(DiscoInfo((Identity("a", "b"),), ("f",), (_form("", "hidden", "urn:t", "urn:u"),)), id="multi-valued-form-type"),
]  # fmt: skip


@pytest.mark.parametrize("info", ILL_FORMED)
def test_ill_formed_results_are_refused(info: DiscoInfo) -> None:
    with pytest.raises(RemoteProvisioningError) as exc:
        verify_ver(info, "x", "sha-1")
    assert exc.value.reason is Reason.CAPS_ILL_FORMED


def test_forms_without_hidden_form_type_are_ignored() -> None:
    not_hidden = _form("urn:t", "text-single")
    no_form_type = DataForm((FormField("x", ("1",)),))
    info = DiscoInfo(EXODUS.identities, EXODUS.features, (not_hidden, no_form_type, not_hidden))
    validate_disco_info(info)
    assert compute_ver(info) == compute_ver(EXODUS)
    same_values = DiscoInfo(
        EXODUS.identities, EXODUS.features, (_form("", "hidden", "urn:t", "urn:t"),)
    )
    validate_disco_info(same_values)


def test_verdicts() -> None:
    assert verify_ver(PSI, "q07IKJEyjvHSyhy//CH0CxmKi8w=", "sha-1") is CapsVerdict.VALID
    assert verify_ver(PSI, "QgayPKawpkPSDYmwT/WM94uAlu0=", "sha-1") is CapsVerdict.MISMATCH
    assert verify_ver(PSI, "whatever", "x-unknown") is CapsVerdict.UNKNOWN_HASH


def test_oversize_results_are_refused() -> None:
    too_many_forms = DiscoInfo(
        EXODUS.identities, (), tuple(_form(f"urn:{i}") for i in range(MAX_FORMS + 1))
    )
    with pytest.raises(RemoteProvisioningError) as exc:
        validate_disco_info(too_many_forms)
    assert exc.value.reason is Reason.TOO_LARGE
    features = "".join(f"<feature var='f{i}'/>" for i in range(2000))
    element = etree.fromstring(f"<query xmlns='{DISCO_INFO_NS}'>{features}</query>".encode())
    with pytest.raises(RemoteProvisioningError):
        disco_info_from_element(element)


def test_element_parsing_refusals() -> None:
    with pytest.raises(RemoteProvisioningError):
        disco_info_from_element(etree.fromstring(b"<query xmlns='urn:other'/>"))
    with pytest.raises(RemoteProvisioningError):
        disco_info_from_element(
            etree.fromstring(
                f"<query xmlns='{DISCO_INFO_NS}'><identity type='x'/></query>".encode()
            )
        )
    with pytest.raises(RemoteProvisioningError):
        disco_info_from_element(
            etree.fromstring(f"<query xmlns='{DISCO_INFO_NS}'><feature/></query>".encode())
        )


def test_minimal_document_form_in_disco_round_trip() -> None:
    publisher = ProvisioningPublisher(ProvisioningPolicy(public=minimal("gw.example")))
    info = publisher.disco_info(None, GATEWAY, ())
    parsed = disco_info_from_element(etree.fromstring(etree.tostring(disco_info_to_element(info))))
    assert parsed == info
