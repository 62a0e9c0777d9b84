"""Model validation: value types, cross-field rules, defaults, the 16-parameter table."""

from __future__ import annotations

from typing import Any

import pytest
from prov_helpers import full, minimal, restricted
from pydantic import ValidationError

from sipxmpp.provisioning.constants import MAX_LIST_ITEMS, MAX_TEXT_LENGTH
from sipxmpp.provisioning.model import (
    PARAMETERS,
    ImMode,
    ProvisioningDocument,
    ViewSharingMode,
    Visibility,
    differences,
    normalize_domain,
    parameter_values,
)


def doc(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"domain": "a.example", "connectivity": {"dns-names": ["a.example"]}}
    base.update(overrides)
    return base


VALID = [
    pytest.param(doc(), id="minimal"),
    pytest.param(doc(domain="A.Example."), id="domain-case-and-dot"),
    pytest.param(doc(connectivity={"dns-names": ["xn--bcher-kva.example"], "srv": True}), id="a-label"),
    pytest.param(doc(chat={"im-modes": ["session", "page"]}), id="im-modes"),
    pytest.param(doc(chat={"rich-text": {"supported": True, "formats": ["Text/HTML"]}}), id="media-type-case"),
    pytest.param(doc(chat={"emoticons": {"supported": True, "mapping": [{"text": "=)", "meaning": "happy face"}]}}), id="emoticon-equals"),
    pytest.param(doc(presence={"pidf-mapping": [{"standard": "{urn:x:y}a", "local": "{http://e/x}b"}]}), id="pidf-mapping"),
    pytest.param(doc(**{"clearing-house": {"peer-network-privacy": {"visibility": "restricted"}}}), id="restricted-to-nobody"),
    pytest.param(doc(extensions=[{"name": "urn:example:a", "values": []}]), id="extension-no-values"),
    pytest.param(doc(**{"authorization-privacy": {"view-sharing": "receive"}}), id="view-sharing"),
]  # fmt: skip

INVALID = [
    pytest.param(doc(domain="-bad.example"), "domain", id="label-leading-hyphen"),
    pytest.param(doc(domain="127.0.0.1"), "domain", id="ip-literal"),
    pytest.param(doc(domain="a" * 64 + ".example"), "domain", id="label-too-long"),
    pytest.param(doc(domain="bücher.example"), "domain", id="u-label"),
    pytest.param(doc(domain=""), "domain", id="empty-domain"),
    pytest.param(doc(connectivity={"dns-names": []}), "dns", id="no-dns-names"),
    pytest.param(doc(connectivity={"dns-names": ["a.example", "A.EXAMPLE"]}), "duplicate", id="dup-dns"),
    pytest.param(doc(connectivity={"dns-names": ["a.example"], "srv": "yes"}), "srv", id="srv-not-bool"),
    pytest.param(doc(connectivity={"dns-names": ["a.example"], "srv": 1}), "srv", id="srv-int"),
    pytest.param(doc(connectivity={"dns-names": ["a.example"], "tls": True}), "tls", id="unknown-field"),
    pytest.param(doc(**{"authorization-privacy": {"view-sharing": "maybe"}}), "view", id="bad-mode"),
    pytest.param(doc(presence={"pidf-extensions": ["not a uri"]}), "pidf", id="bad-uri"),
    pytest.param(doc(presence={"pidf-extensions": ["urn:a", "urn:a"]}), "duplicate", id="dup-namespace"),
    pytest.param(doc(presence={"pidf-mapping": [{"standard": "activities", "local": "{urn:x}b"}]}), "expanded", id="bad-expanded"),
    pytest.param(doc(presence={"pidf-mapping": [{"standard": "{urn:x}a", "local": "{urn:x}b"}, {"standard": "{urn:x}a", "local": "{urn:x}c"}]}), "duplicate", id="dup-mapping"),
    pytest.param(doc(chat={"im-modes": ["page", "page"]}), "duplicate", id="dup-mode"),
    pytest.param(doc(chat={"im-modes": ["fax"]}), "im", id="bad-im-mode"),
    pytest.param(doc(chat={"rich-text": {"supported": True, "formats": []}}), "at least one", id="rich-supported-empty"),
    pytest.param(doc(chat={"rich-text": {"supported": False, "formats": ["text/html"]}}), "not supported", id="rich-unsupported-list"),
    pytest.param(doc(chat={"rich-text": {"supported": True, "formats": ["text/html; charset=utf-8"]}}), "media type", id="media-type-params"),
    pytest.param(doc(chat={"images": {"supported": True, "types": ["text/plain"]}}), "image", id="image-not-image"),
    pytest.param(doc(chat={"emoticons": {"supported": True, "mapping": [{"text": ": )", "meaning": "x"}]}}), "whitespace", id="emoticon-space"),
    pytest.param(doc(chat={"emoticons": {"supported": True, "mapping": [{"text": ":)", "meaning": " x"}]}}), "whitespace", id="meaning-padded"),
    pytest.param(doc(chat={"emoticons": {"supported": True, "mapping": [{"text": ":)", "meaning": "a\nb"}]}}), "forbidden character", id="meaning-newline"),
    pytest.param(doc(chat={"emoticons": {"supported": True, "mapping": [{"text": ":)", "meaning": "x" * (MAX_TEXT_LENGTH + 1)}]}}), "longer", id="meaning-too-long"),
    pytest.param(doc(**{"clearing-house": {"peer-network-privacy": {"visibility": "all", "visible-to": ["b.example"]}}}), "restricted", id="all-with-list"),
    pytest.param(doc(extensions=[{"name": "urn:sipxmpp:xml:ns:pres-im-provisioning:1"}]), "own namespace", id="extension-own-ns"),
    pytest.param(doc(extensions=[{"name": "urn:a"}, {"name": "urn:a"}]), "duplicate", id="dup-extension"),
    pytest.param(doc(connectivity={"dns-names": [f"h{i}.example" for i in range(MAX_LIST_ITEMS + 1)]}), "at most", id="list-too-long"),
]  # fmt: skip


@pytest.mark.parametrize("data", VALID)
def test_valid_documents(data: dict[str, Any]) -> None:
    ProvisioningDocument.model_validate(data)


@pytest.mark.parametrize(("data", "fragment"), INVALID)
def test_invalid_documents(data: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        ProvisioningDocument.model_validate(data)
    assert fragment.lower() in str(info.value).lower()


def test_defaults_are_conservative() -> None:
    d = ProvisioningDocument.model_validate(doc())
    assert d.connectivity.srv is False and d.connectivity.tls_only is False
    assert d.authorization_privacy.view_sharing is ViewSharingMode.NONE
    assert d.presence.pidf_extensions == () and d.presence.list_subscription is False
    assert d.chat.im_modes == () and not d.chat.rich_text.supported
    assert d.clearing_house.peer_network_privacy.visibility is Visibility.ALL


def test_normalization_and_immutability() -> None:
    d = ProvisioningDocument.model_validate(doc(domain="A.Example."))
    assert d.domain == "a.example"
    with pytest.raises(ValidationError):
        d.domain = "b.example"
    assert normalize_domain("SIP.Example.COM.") == "sip.example.com"


def test_sixteen_parameters_in_five_groups() -> None:
    assert [p.number for p in PARAMETERS] == list(range(1, 17))
    groups = {p.group for p in PARAMETERS}
    assert groups == {
        "Connectivity",
        "Authorization & Privacy",
        "Presence Features",
        "Chat Features",
        "Clearing House Services",
    }
    rows = dict((p.name, v) for p, v in parameter_values(full()))
    assert rows["dns-names"] == "a.example, sip.a.example"
    assert rows["im-modes"] == "page, session"
    assert rows["emoticons"] == ":-) = smile"
    assert rows["peer-network-privacy"] == "all"
    r = dict((p.name, v) for p, v in parameter_values(restricted("a.example", ("b.example",))))
    assert r["peer-network-privacy"] == "restricted to b.example"


def test_differences_ignore_list_order() -> None:
    a = full()
    b = a.model_copy(
        update={"chat": a.chat.model_copy(update={"im_modes": (ImMode.SESSION, ImMode.PAGE)})}
    )
    assert differences(a, b) == ()
    c = a.model_copy(update={"chat": a.chat.model_copy(update={"is_composing": False})})
    assert differences(a, c) == ("is-composing",)
    assert differences(minimal("a.example"), minimal("b.example")) == ("domain", "dns-names")
    assert "extensions" in differences(a, a.model_copy(update={"extensions": ()}))


def test_privacy_allows() -> None:
    r = restricted("a.example", ("b.example",)).clearing_house.peer_network_privacy
    assert r.allows(["b.example"]) and not r.allows(["c.example"]) and not r.allows([])
    assert minimal().clearing_house.peer_network_privacy.allows([])
