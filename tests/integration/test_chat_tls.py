"""Chat sessions over MSRP on TLS (``msrps:``, ``TCP/TLS/MSRP``), end to end through Prosody.

The gateway has an MSRP TLS listener (``chat.tls_port``) with the ``[sip.tls]`` certificate;
the far end is ``ChatUA`` with its own certificate from the same test CA and a TLS listener
too. Both sides require and check certificates (RFC 4975 §5.4: the server's SubjectAltName
must match the host of the URI it was reached at, here the IP address 127.0.0.1; mutual TLS
as the gateway's ``require_client_certificate`` asks).

Checked in both directions (SIP side opens, RFC 7573 §5; XMPP side opens, §4): the SDP says
``TCP/TLS/MSRP`` and every a=path URI is ``msrps://`` (RFC 4975 §8.1, §6), the connection
carrying the session is TLS on both ends, and messages cross it. The gateway offers TLS
when plain TCP is not an option: it has no TCP listener, or the peer's provisioning says
TLS only (parameter 3). A TLS offer to a gateway without a TLS listener gets 488.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from chat_ua import CallFailed, ChatUA, UaCall, UaConfig
from test_chat_msrp import ALICE, NS_CS, chat_xml, settings_for
from test_chat_ua import gw_sip, has, wait_closed

from sipxmpp.gateway.runtime.app import Gateway
from sipxmpp.gateway.settings import Settings
from sipxmpp.gateway.transport import TlsSettings
from support.certs import CertFiles, TestPki, openssl_available
from support.prosody import ProsodyComponent, ProsodyUser, make_prosody_fixture
from support.xmpp_client import XmppTestClient

pytestmark = pytest.mark.prosody

prosody = make_prosody_fixture(
    scope="module",
    vhost="example.test",
    components=[ProsodyComponent("sip.example.test", "chat-secret")],
    users=[ProsodyUser("bob", "bob-pw")],
)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    if not openssl_available():
        pytest.skip("the openssl command line tool is not installed")
    return TestPki.create(tmp_path_factory.mktemp("chat-pki") / "ca", name="chat test CA")


@pytest.fixture(scope="module")
def gw_cert(pki: TestPki) -> CertFiles:
    """The gateway's certificate: its SIP domain, and the address its listeners use."""
    return pki.issue("chatgw", dns=["sip.example.test"], ips=["127.0.0.1"])


@pytest.fixture(scope="module")
def ua_cert(pki: TestPki) -> CertFiles:
    return pki.issue("alice", dns=["alice.example.test"], ips=["127.0.0.1"])


@pytest.fixture
async def bob(prosody: Any) -> AsyncIterator[XmppTestClient]:
    async with XmppTestClient(
        "bob@example.test/laptop", "bob-pw", "127.0.0.1", prosody.c2s_port
    ) as client:
        await client.disco_info("example.test")
        yield client


def ua_config(cert: CertFiles) -> UaConfig:
    return UaConfig(
        tls=TlsSettings(
            certfile=str(cert.cert),
            keyfile=str(cert.key),
            cafile=str(cert.ca_cert),
            require_client_certificate=True,
        )
    )


def tls_settings(prosody: Any, ua_port: int, cert: CertFiles, **chat: Any) -> Settings:
    base = settings_for(prosody, ua_port, tls_port=0, **chat).model_dump()
    base["sip"]["tls"] = {
        "certificate": str(cert.cert),
        "private_key": str(cert.key),
        "ca_file": str(cert.ca_cert),
        "require_client_certificate": True,
    }
    return Settings.model_validate(base)


@contextlib.asynccontextmanager
async def tls_pair(
    prosody: Any, gw_cert: CertFiles, ua_cert: CertFiles, **chat: Any
) -> AsyncIterator[tuple[ChatUA, Gateway]]:
    async with ChatUA(ua_config(ua_cert)) as ua:
        gw = Gateway(tls_settings(prosody, ua.sip_port, gw_cert, **chat))
        await gw.start()
        try:
            assert await gw.xmpp.wait_up(10.0)
            assert gw.chat is not None and "tls" in gw.chat.local_msrp_addresses
            yield ua, gw
        finally:
            await gw.stop()


def assert_tls_session(call: UaCall, gw: Gateway) -> None:
    """msrps:// in both a=path lines, TCP/TLS/MSRP, and TLS under the session on both ends."""
    assert call.remote_sdp is not None and call.negotiated is not None
    gw_media = call.remote_sdp.media[0]
    assert gw_media.proto == "TCP/TLS/MSRP"
    assert all(u.startswith("msrps://") for u in (gw_media.attribute("path") or "").split())
    assert call.negotiated.local.secure and call.negotiated.remote.secure
    assert all(u.startswith("msrps://") for u in call.negotiated.local.path)
    assert str(call.session.local_uri).startswith("msrps://")
    ours = call.ua.msrp.connection_of(call.session)
    assert ours is not None and ours.secure
    assert gw.chat is not None
    theirs = [c for c in gw.chat.transport.connections() if c.open]
    assert theirs and all(c.secure for c in theirs)
    assert {c.remote[1] for c in theirs} & {
        ours.local[1]
    }  # the same connection, seen from both ends


async def test_sip_initiated_session_over_tls(
    prosody: Any, bob: XmppTestClient, gw_cert: CertFiles, ua_cert: CertFiles
) -> None:
    async with tls_pair(prosody, gw_cert, ua_cert) as (ua, gw):
        call = await ua.call("sip:bob@example.test", gateway=gw_sip(gw), secure=True)
        assert_tls_session(call, gw)
        call.send_text("over TLS")
        msg = await bob.wait_message(lambda m: m["body"] == "over TLS")
        assert msg["thread"] == call.call_id
        bob.send_raw(chat_xml(ALICE, "TLS back", mid="t1", thread=call.call_id))
        assert (await call.next_text()).text == "TLS back"
        await call.bye()
        await bob.wait_message(has(f"{{{NS_CS}}}gone"))
        await wait_closed(gw)


async def test_xmpp_initiated_session_over_tls_without_tcp_listener(
    prosody: Any, bob: XmppTestClient, gw_cert: CertFiles, ua_cert: CertFiles
) -> None:
    async with tls_pair(prosody, gw_cert, ua_cert, tcp_port=None) as (ua, gw):
        assert gw.chat is not None and set(gw.chat.local_msrp_addresses) == {"tls"}
        bob.send_raw(chat_xml(ALICE, "secure hello", mid="s1", thread="tls-x2s"))
        call = await ua.incoming()
        await call.wait_bound()
        # The gateway offered TLS and connected to our msrps: listener (it was active).
        assert call.negotiated is not None and not call.negotiated.active
        assert_tls_session(call, gw)
        assert (await call.next_text()).text == "secure hello"
        call.send_text("secure reply")
        msg = await bob.wait_message(lambda m: m["body"] == "secure reply")
        assert msg["thread"] == "tls-x2s"
        await call.bye()
        await wait_closed(gw)


class _TlsOnlyPeer:
    """Provisioning of a peer network that wants TLS only (parameter 3)."""

    def use_session_mode(self) -> bool:
        return True

    def send_is_composing(self) -> bool:
        return True

    @property
    def tls_only(self) -> bool:
        return True


async def test_xmpp_initiated_session_over_tls_for_a_tls_only_peer(
    prosody: Any, bob: XmppTestClient, gw_cert: CertFiles, ua_cert: CertFiles
) -> None:
    async with tls_pair(prosody, gw_cert, ua_cert) as (ua, gw):
        assert gw.chat is not None and {"tcp", "tls"} <= set(gw.chat.local_msrp_addresses)
        gw.chat._peer_policy = lambda domain: _TlsOnlyPeer()
        bob.send_raw(chat_xml(ALICE, "provisioned TLS", mid="p1", thread="tls-prov"))
        call = await ua.incoming()
        await call.wait_bound()
        assert_tls_session(call, gw)
        assert (await call.next_text()).text == "provisioned TLS"
        await call.bye()
        await wait_closed(gw)


async def test_tls_offer_without_gateway_tls_listener_gets_488(
    prosody: Any, bob: XmppTestClient, ua_cert: CertFiles
) -> None:
    async with ChatUA(ua_config(ua_cert)) as ua:
        gw = Gateway(settings_for(prosody, ua.sip_port))
        await gw.start()
        try:
            assert await gw.xmpp.wait_up(10.0)
            with pytest.raises(CallFailed) as failure:
                await ua.call("sip:bob@example.test", gateway=gw_sip(gw), secure=True)
            assert failure.value.status == 488  # RFC 3264 §6: nothing usable in the offer
        finally:
            await gw.stop()
