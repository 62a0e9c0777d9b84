"""The XMPP provisioning channel through a real Prosody (conformance points 71-73, 76).

An XMPP client on Prosody asks the gateway's component JID for disco#info (XEP-0030) and
finds the XEP-0128 form; it sends the component directed presence and receives the
component's presence with XEP-0115 caps, whose ``ver`` it recomputes from the disco#info
answer to ``node#ver``; a policy change re-broadcasts a new ``ver``.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from lxml import etree
from slixmpp.exceptions import IqError
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from sipxmpp.gateway.runtime.app import Gateway
from sipxmpp.provisioning import (
    FORM_TYPE,
    MEDIA_TYPE_XML,
    CapsVerdict,
    ProvisioningPolicy,
    form_to_document,
    parse_xml,
    verify_ver,
)
from sipxmpp.provisioning.caps import CAPS_NS, DISCO_INFO_NS, DiscoInfo, disco_info_from_element
from sipxmpp.provisioning.views import PeerView
from sipxmpp.provisioning.xmlcodec import safe_xml_parser
from support.prosody import ProsodyComponent, ProsodyUser, make_prosody_fixture
from support.provisioning_gw import (
    UdpSip,
    body_of,
    document,
    gateway_settings,
    options_request,
    write_policy,
)
from support.xmpp_client import XmppTestClient

pytestmark = pytest.mark.prosody

DOMAIN = "example.test"
COMPONENT = "sip.example.test"
SECRET = "prov-xmpp-secret"
NODE = "urn:sipxmpp:caps"

prosody = make_prosody_fixture(
    scope="module",
    vhost=DOMAIN,
    components=[ProsodyComponent(COMPONENT, SECRET)],
    users=[ProsodyUser("alice", "alice-pw")],
)

PUBLIC = document(DOMAIN)


@pytest.fixture
async def gateway(prosody: Any, tmp_path: Path) -> AsyncIterator[Gateway]:
    policy = tmp_path / "policy.json"
    write_policy(policy, PUBLIC)
    settings = gateway_settings(
        domain=DOMAIN,
        component=COMPONENT,
        secret=SECRET,
        xmpp_port=prosody.component_port,
        policy=policy,
    )
    async with Gateway(settings) as gw:
        assert await gw.xmpp.wait_up(10.0)
        yield gw


class Watcher:
    """An XMPP client that follows the component's presence."""

    def __init__(self, client: XmppTestClient) -> None:
        self.client = client
        self.presences: asyncio.Queue[Any] = asyncio.Queue()
        client.xmpp.register_handler(
            Callback("caps presence", MatchXPath("{jabber:client}presence"), self._on_presence)
        )

    def _on_presence(self, stanza: Any) -> None:
        if str(stanza["from"]) == COMPONENT:
            self.presences.put_nowait(stanza)

    async def caps(self, timeout: float = 10.0) -> tuple[str, str, str]:
        """(node, ver, hash) of the next presence from the component."""
        stanza = await asyncio.wait_for(self.presences.get(), timeout)
        c = stanza.xml.find(f"{{{CAPS_NS}}}c")
        assert c is not None, ET.tostring(stanza.xml)
        return c.get("node"), c.get("ver"), c.get("hash")

    async def disco(self, node: str | None = None) -> tuple[Any, DiscoInfo]:
        iq = await self.client.disco_info(COMPONENT, node=node)
        query = etree.fromstring(ET.tostring(iq["disco_info"].xml), safe_xml_parser())
        return iq, disco_info_from_element(query)


@pytest.fixture
async def alice(prosody: Any) -> AsyncIterator[Watcher]:
    async with XmppTestClient(
        f"alice@{DOMAIN}/desk", "alice-pw", "127.0.0.1", prosody.c2s_port
    ) as client:
        yield Watcher(client)


def _form(info: DiscoInfo) -> Any:
    forms = [f for f in info.forms if f.form_type == FORM_TYPE]
    return forms[0] if forms else None


async def test_72_disco_info_carries_the_form_and_the_features(
    gateway: Gateway, alice: Watcher
) -> None:
    _, info = await alice.disco()
    assert DISCO_INFO_NS in info.features and CAPS_NS in info.features
    assert ("gateway", "sip") in {(i.category, i.type) for i in info.identities}
    form = _form(info)
    assert form is not None
    field = form.field("FORM_TYPE")
    assert field is not None and field.type == "hidden" and field.values == (FORM_TYPE,)
    assert form_to_document(form) == PUBLIC


async def test_71_caps_presence_ver_verifies_against_node_ver_disco(
    gateway: Gateway, alice: Watcher
) -> None:
    alice.client.xmpp.send_presence(pto=COMPONENT)
    node, ver, hash_name = await alice.caps()
    assert node == NODE and hash_name == "sha-1"
    iq, info = await alice.disco(f"{node}#{ver}")
    assert iq["disco_info"]["node"] == f"{node}#{ver}"  # XEP-0115 §6.2: the node is echoed
    assert verify_ver(info, ver, hash_name) is CapsVerdict.VALID
    assert _form(info) is not None
    # A probe is answered too (RFC 6121 §4.3), with the same ver.
    alice.client.xmpp.send_presence(pto=COMPONENT, ptype="probe")
    assert (await alice.caps())[1] == ver


async def test_73_a_policy_change_rebroadcasts_a_new_ver(gateway: Gateway, alice: Watcher) -> None:
    alice.client.xmpp.send_presence(pto=COMPONENT)
    node, old_ver, _ = await alice.caps()
    changed = document(DOMAIN, im_modes=("page", "session"), n_way_chat=True)
    assert gateway.provisioning.update(ProvisioningPolicy(public=changed))
    node, new_ver, hash_name = await alice.caps()
    assert new_ver != old_ver
    _, info = await alice.disco(f"{node}#{new_ver}")
    assert verify_ver(info, new_ver, hash_name) is CapsVerdict.VALID
    assert form_to_document(_form(info)) == changed
    # One provisioning form, not the old one next to the new (slixmpp xep_0128's bug).
    assert [f.form_type for f in info.forms] == [FORM_TYPE]
    with pytest.raises(IqError) as err:  # the old ver is gone
        await alice.disco(f"{node}#{old_ver}")
    assert err.value.iq["error"]["condition"] == "item-not-found"
    # Same policy again: no change, no presence.
    assert not gateway.provisioning.update(ProvisioningPolicy(public=changed))
    with pytest.raises(TimeoutError):
        await alice.caps(timeout=0.5)
    # After unavailable, alice is no longer told.
    alice.client.xmpp.send_presence(pto=COMPONENT, ptype="unavailable")
    await alice.disco()  # processed in order: the unavailable has arrived
    assert gateway.provisioning.update(ProvisioningPolicy(public=PUBLIC))
    with pytest.raises(TimeoutError):
        await alice.caps(timeout=0.5)


async def test_views_follow_the_requesting_xmpp_domain(gateway: Gateway, alice: Watcher) -> None:
    partners = document(DOMAIN, im_modes=("page", "session"), list_subscription=True)
    gateway.provisioning.update(
        ProvisioningPolicy(
            public=PUBLIC, views=(PeerView(name="locals", peers=(DOMAIN,), document=partners),)
        )
    )
    alice.client.xmpp.send_presence(pto=COMPONENT)
    node, ver, hash_name = await alice.caps()
    _, info = await alice.disco(f"{node}#{ver}")
    assert form_to_document(_form(info)) == partners
    assert verify_ver(info, ver, hash_name) is CapsVerdict.VALID
    # Peer Network Privacy hides the network from example.test: no form, caps still valid.
    gateway.provisioning.update(
        ProvisioningPolicy(public=document(DOMAIN, visible_to=["other.test"]))
    )
    node, ver, hash_name = await alice.caps()
    _, info = await alice.disco(f"{node}#{ver}")
    assert _form(info) is None
    assert verify_ver(info, ver, hash_name) is CapsVerdict.VALID


async def test_76_three_channels_serve_the_same_parameters(
    gateway: Gateway, alice: Watcher
) -> None:
    _, info = await alice.disco()
    over_xmpp = form_to_document(_form(info))
    assert gateway.provisioning.http is not None
    async with aiohttp.ClientSession() as session:
        url = gateway.provisioning.http.base_url + "/.well-known/pres-im-provisioning"
        async with session.get(url, headers={"Accept": MEDIA_TYPE_XML}) as r:
            over_http = parse_xml(await r.read())
    ua = await UdpSip.open()
    try:
        resp = await ua.ask(
            options_request(f"sip:{DOMAIN}", transport="UDP", port=ua.port, accept=MEDIA_TYPE_XML),
            gateway.sip_addresses["udp"][1],
        )
    finally:
        ua.close()
    over_sip = parse_xml(body_of(resp))
    assert over_xmpp == over_http == over_sip == PUBLIC
