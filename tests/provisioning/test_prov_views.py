"""Per-peer views, Peer Network Privacy, requester identification."""

from __future__ import annotations

from typing import Any

import pytest
from prov_helpers import full, minimal, restricted
from pydantic import ValidationError

from sipxmpp.provisioning.model import Visibility
from sipxmpp.provisioning.views import (
    PUBLIC_VIEW,
    IdentitySource,
    PeerView,
    ProvisioningPolicy,
    Refused,
    Requester,
    Visible,
    requester_from_jid,
    requester_from_peercert,
    resolve_view,
)

GW = "gw.example"


def tls(*domains: str) -> Requester:
    return Requester(domains, IdentitySource.TLS_CERTIFICATE)


# -- identification ------------------------------------------------------------------------

CERTS = [
    pytest.param(None, None, id="no-cert"),
    pytest.param({}, None, id="empty-cert"),
    pytest.param({"subjectAltName": (("DNS", "B.Example"),)}, ("b.example",), id="dns-san"),
    pytest.param({"subjectAltName": (("URI", "sip:b.example"), ("DNS", "sip.b.example"))}, ("b.example", "sip.b.example"), id="uri-and-dns"),
    pytest.param({"subjectAltName": (("URI", "sip:b.example:5061;transport=tls"),)}, ("b.example",), id="uri-with-port"),
    pytest.param({"subjectAltName": (("URI", "sip:alice@b.example"),)}, None, id="uri-with-user"),
    pytest.param({"subjectAltName": (("URI", "https://b.example"),)}, None, id="https-uri"),
    pytest.param({"subjectAltName": (("DNS", "*.b.example"),)}, None, id="wildcard"),
    pytest.param({"subjectAltName": (("IP Address", "127.0.0.1"),)}, None, id="ip-san"),
    pytest.param({"subject": ((("commonName", "c.example"),),)}, ("c.example",), id="cn-without-san"),
    pytest.param({"subject": ((("commonName", "c.example"),),), "subjectAltName": (("DNS", "d.example"),)}, ("d.example",), id="san-wins-over-cn"),
    pytest.param({"subject": ((("commonName", "Some Org CA"),),)}, None, id="cn-not-a-domain"),
    pytest.param({"subjectAltName": (("DNS", "b.example"), ("DNS", "B.example."))}, ("b.example",), id="dedup"),
]  # fmt: skip


@pytest.mark.parametrize(("cert", "domains"), CERTS)
def test_requester_from_peercert(
    cert: dict[str, Any] | None, domains: tuple[str, ...] | None
) -> None:
    requester = requester_from_peercert(cert)
    if domains is None:
        assert requester is None
    else:
        assert requester == Requester(domains, IdentitySource.TLS_CERTIFICATE)


@pytest.mark.parametrize(
    ("jid", "domain"),
    [
        ("b.example", "b.example"),
        ("user@B.Example/res", "b.example"),
        ("b.example/res@x", "b.example"),
        ("", None),
        (None, None),
        ("user@not a domain", None),
    ],
)
def test_requester_from_jid(jid: str | None, domain: str | None) -> None:
    requester = requester_from_jid(jid)
    assert (requester.domains[0] if requester else None) == domain
    if requester:
        assert requester.source is IdentitySource.XMPP_DOMAIN


def test_requester_needs_a_domain() -> None:
    with pytest.raises(ValueError):
        Requester((), IdentitySource.TLS_CERTIFICATE)


# -- resolution ------------------------------------------------------------------------------


def _policy(**kwargs: Any) -> ProvisioningPolicy:
    base: dict[str, Any] = {"public": minimal(GW)}
    base.update(kwargs)
    return ProvisioningPolicy(**base)


def test_public_view_for_everyone_by_default() -> None:
    policy = _policy()
    for requester in (None, tls("b.example"), requester_from_jid("x@c.example")):
        decision = resolve_view(policy, requester)
        assert decision == Visible(minimal(GW), PUBLIC_VIEW)


def test_per_peer_view() -> None:
    policy = _policy(views=(PeerView(name="partners", peers=("b.example",), document=full(GW)),))
    assert resolve_view(policy, tls("b.example")) == Visible(full(GW), "partners")
    assert resolve_view(policy, tls("other.example", "b.example")) == Visible(full(GW), "partners")
    assert resolve_view(policy, tls("c.example")) == Visible(minimal(GW), PUBLIC_VIEW)
    assert resolve_view(policy, None) == Visible(minimal(GW), PUBLIC_VIEW)
    assert policy.varies_by_requester


def test_privacy_restricted_refuses_unlisted_and_anonymous() -> None:
    policy = _policy(public=restricted(GW, ("b.example", "c.example")))
    refused = resolve_view(policy, None)
    assert isinstance(refused, Refused) and refused.status_hint == 403
    assert "unidentified" in refused.reason
    assert isinstance(resolve_view(policy, tls("d.example")), Refused)
    assert isinstance(resolve_view(policy, requester_from_jid("d.example")), Refused)


def test_visible_to_is_trimmed_for_peers_but_not_clearing_houses() -> None:
    policy = _policy(
        public=restricted(GW, ("b.example", "c.example", "house.example")),
        clearing_houses=("house.example",),
    )
    seen_by_b = resolve_view(policy, tls("b.example"))
    assert isinstance(seen_by_b, Visible)
    privacy = seen_by_b.document.clearing_house.peer_network_privacy
    assert privacy.visibility is Visibility.RESTRICTED and privacy.visible_to == ("b.example",)
    assert seen_by_b.redacted_for == ("b.example",)
    seen_by_house = resolve_view(policy, tls("house.example"))
    assert isinstance(seen_by_house, Visible)
    assert seen_by_house.document == restricted(GW, ("b.example", "c.example", "house.example"))
    untrimmed = _policy(public=restricted(GW, ("b.example", "c.example")), redact_visible_to=False)
    seen = resolve_view(untrimmed, tls("b.example"))
    assert isinstance(seen, Visible) and seen.document == untrimmed.public


def test_view_in_restricted_network() -> None:
    policy = _policy(
        public=restricted(GW, ("b.example", "c.example")),
        views=(
            PeerView(
                name="b", peers=("b.example",), document=restricted(GW, ("b.example", "c.example"))
            ),
        ),
    )
    decision = resolve_view(policy, tls("b.example"))
    assert isinstance(decision, Visible) and decision.view == "b"
    assert decision.document.clearing_house.peer_network_privacy.visible_to == ("b.example",)


BAD_POLICIES = [
    pytest.param({"views": (PeerView(name="x", peers=("b.example",), document=minimal("other.example")),)}, "describes", id="view-other-domain"),
    pytest.param({"views": (PeerView(name="x", peers=("b.example",), document=minimal(GW)), PeerView(name="y", peers=("b.example",), document=minimal(GW)))}, "views", id="peer-in-two-views"),
    pytest.param({"views": (PeerView(name="x", peers=("b.example",), document=minimal(GW)), PeerView(name="x", peers=("c.example",), document=minimal(GW)))}, "twice", id="duplicate-name"),
    pytest.param({"views": (PeerView(name="public", peers=("b.example",), document=minimal(GW)),)}, "reserved", id="reserved-name"),
    pytest.param({"public": restricted(GW, ("c.example",)), "views": (PeerView(name="x", peers=("b.example",), document=minimal(GW)),)}, "hides", id="view-hidden-by-privacy"),
    pytest.param({"public": restricted(GW, ("c.example",)), "clearing_houses": ("house.example",)}, "clearing house", id="house-hidden"),
]  # fmt: skip


@pytest.mark.parametrize(("kwargs", "fragment"), BAD_POLICIES)
def test_bad_policies_fail_at_load(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        _policy(**kwargs)
    assert fragment in str(info.value)


def test_policy_loads_from_json_config() -> None:
    from prov_helpers import EXAMPLES

    policy = ProvisioningPolicy.model_validate_json((EXAMPLES / "policy.json").read_bytes())
    assert policy.public.domain == "example.com"
    assert [v.name for v in policy.views] == ["partners"]
    decision = resolve_view(policy, tls("partner-a.example"))
    assert isinstance(decision, Visible) and decision.view == "partners"
    assert decision.document.chat.n_way_chat is True
