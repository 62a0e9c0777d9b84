"""The single source of truth: rendering, ETags, change notification, channel consistency."""

from __future__ import annotations

import pytest
from prov_helpers import full, minimal, restricted

from sipxmpp.provisioning.constants import MEDIA_TYPE_JSON, MEDIA_TYPE_XML
from sipxmpp.provisioning.errors import LocalProvisioningError, Reason
from sipxmpp.provisioning.form import form_to_document
from sipxmpp.provisioning.jsoncodec import parse_json
from sipxmpp.provisioning.model import Extension
from sipxmpp.provisioning.publisher import ProvisioningPublisher, Rendered, etag_for
from sipxmpp.provisioning.views import (
    IdentitySource,
    PeerView,
    ProvisioningPolicy,
    Refused,
    Requester,
)
from sipxmpp.provisioning.xmlcodec import parse_xml

GW = "gw.example"
B = Requester(("b.example",), IdentitySource.TLS_CERTIFICATE)
C = Requester(("c.example",), IdentitySource.XMPP_DOMAIN)


def _publisher() -> ProvisioningPublisher:
    policy = ProvisioningPolicy(
        public=minimal(GW),
        views=(PeerView(name="b", peers=("b.example",), document=full(GW)),),
    )
    return ProvisioningPublisher(policy)


def test_render_xml_and_json_with_stable_etags() -> None:
    publisher = _publisher()
    xml = publisher.render(None)
    assert isinstance(xml, Rendered) and xml.media_type == MEDIA_TYPE_XML
    assert parse_xml(xml.body) == minimal(GW) and xml.view == "public"
    assert xml.etag == etag_for(xml.body) and xml.etag.startswith('"') and xml.etag.endswith('"')
    json_ = publisher.render(None, MEDIA_TYPE_JSON)
    assert isinstance(json_, Rendered) and parse_json(json_.body) == minimal(GW)
    assert json_.etag != xml.etag
    assert publisher.render(None) is xml  # memoized
    with pytest.raises(ValueError):
        publisher.render(None, "text/plain")


def test_all_channels_carry_the_same_document_per_requester() -> None:
    """Conformance point 76: HTTP (XML/JSON), SIP (XML body) and disco (form) agree."""
    publisher = _publisher()
    for requester, expected in ((None, minimal(GW)), (B, full(GW)), (C, minimal(GW))):
        xml = publisher.render(requester, MEDIA_TYPE_XML)
        json_ = publisher.render(requester, MEDIA_TYPE_JSON)
        form = publisher.form(requester)
        assert isinstance(xml, Rendered) and isinstance(json_, Rendered)
        assert not isinstance(form, Refused)
        assert parse_xml(xml.body) == parse_json(json_.body) == form_to_document(form) == expected


def test_update_changes_etag_generation_and_notifies_once() -> None:
    publisher = _publisher()
    seen: list[ProvisioningPolicy] = []
    remove = publisher.add_listener(seen.append)
    before = publisher.render(None)
    assert isinstance(before, Rendered)
    same = ProvisioningPolicy.model_validate(publisher.policy.model_dump())
    assert publisher.update(same) is False and seen == []
    new_policy = ProvisioningPolicy(public=full(GW))
    assert publisher.update(new_policy) is True
    assert seen == [new_policy] and publisher.generation == 1
    after = publisher.render(None)
    assert isinstance(after, Rendered) and after.etag != before.etag
    remove()
    publisher.update(ProvisioningPolicy(public=minimal(GW)))
    assert len(seen) == 1


def test_failing_listener_does_not_block_others() -> None:
    publisher = _publisher()
    calls: list[str] = []

    def broken(_: ProvisioningPolicy) -> None:
        raise RuntimeError("boom")

    publisher.add_listener(broken)
    publisher.add_listener(lambda _: calls.append("ok"))
    publisher.update(ProvisioningPolicy(public=full(GW)))
    assert calls == ["ok"]


def test_refusal_on_every_channel() -> None:
    publisher = ProvisioningPublisher(ProvisioningPolicy(public=restricted(GW, ("b.example",))))
    assert isinstance(publisher.render(C), Refused)
    assert isinstance(publisher.form(C), Refused)
    info = publisher.disco_info(C, (), ())
    assert info.forms == ()
    assert publisher.disco_info(B, (), ()).forms != ()


def test_unpublishable_policy_is_refused_before_switching() -> None:
    big = full(GW).model_copy(
        update={
            "extensions": tuple(
                Extension(name=f"urn:example:e{i}", values=tuple("v" * 500 for _ in range(8)))
                for i in range(20)
            )
        }
    )
    with pytest.raises(LocalProvisioningError) as info:
        ProvisioningPublisher(ProvisioningPolicy(public=big))
    assert info.value.reason is Reason.TOO_LARGE
    publisher = _publisher()
    with pytest.raises(LocalProvisioningError):
        publisher.update(ProvisioningPolicy(public=big))
    assert publisher.policy.public == minimal(GW) and publisher.generation == 0


def test_sip_options_answer() -> None:
    """Conformance point 75, the provisioning part: the body only when Accept names our type."""
    from sipxmpp.provisioning.publisher import answer_options

    publisher = _publisher()
    assert answer_options(publisher, None, None) is None
    assert answer_options(publisher, "application/sdp", B) is None
    assert answer_options(publisher, "*/*", B) is None
    rendered = answer_options(publisher, f"application/sdp, {MEDIA_TYPE_XML}", B)
    assert isinstance(rendered, Rendered) and rendered.media_type == MEDIA_TYPE_XML
    assert parse_xml(rendered.body) == full(GW)
    anonymous = answer_options(publisher, MEDIA_TYPE_XML, None)
    assert isinstance(anonymous, Rendered) and parse_xml(anonymous.body) == minimal(GW)
    hidden = ProvisioningPublisher(ProvisioningPolicy(public=restricted(GW, ("b.example",))))
    assert isinstance(answer_options(hidden, MEDIA_TYPE_XML, C), Refused)
