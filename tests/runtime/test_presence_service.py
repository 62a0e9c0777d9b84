"""The presence service's decisions, with a recording fake of the subscription layer and of
the XMPP edge (no sockets, no Prosody): what it asks the layer to send and which stanzas it
hands to XMPP for each event."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from sipxmpp.gateway.runtime.app import domain_map_from
from sipxmpp.gateway.runtime.presence import (
    MAX_IMMEDIATE_RETRIES,
    PresenceService,
    contact_uri_for,
)
from sipxmpp.gateway.runtime.xmpp_routing import XmppRouter
from sipxmpp.gateway.settings import Settings
from sipxmpp.gateway.sip.address import TransportAddress
from sipxmpp.gateway.sip.errors import LocalSipError
from sipxmpp.gateway.sip.message import Headers, Request
from sipxmpp.gateway.sip.sub_events import (
    NotifyReceived,
    Role,
    SubscribeFailed,
    SubscribeRequested,
    SubscriptionTerminated,
    SubscriptionView,
)
from sipxmpp.gateway.store import (
    Authorization,
    AuthorizationState,
    Store,
    Subscription,
    SubscriptionRole,
    SubscriptionState,
    open_store,
)
from sipxmpp.gateway.xmpp.errors import Ignore, StanzaErrorException
from sipxmpp.mapping.model import StanzaError
from sipxmpp.mapping.pidf import parse_pidf
from sipxmpp.mapping.presence import PresenceType, XmppPresence

COMPONENT = "sip.example.test"
PIDF = (
    b'<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" '
    b'entity="sip:alice@example.test"><tuple id="pc"><status><basic>open</basic></status>'
    b"</tuple></presence>"
)
DEST = TransportAddress("udp", "127.0.0.1", 5060)
REQ = Request("SUBSCRIBE", "sip:bob@example.test", Headers(()), b"")


@dataclass
class FakeLayer:
    """Records every call; the test pushes events into ``events``."""

    calls: list[tuple[Any, ...]] = field(default_factory=list)
    events: deque[Any] = field(default_factory=deque)
    subs: dict[str, dict[str, Any]] = field(default_factory=dict)
    n: int = 0

    def handle_sip_event(self, event: Any, now: float) -> bool:
        return True

    def next_event(self) -> Any:
        return self.events.popleft() if self.events else None

    def next_deadline(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        pass

    def _new(self, role: Role, **info: Any) -> str:
        self.n += 1
        sub_id = f"s{self.n}"
        self.subs[sub_id] = {"role": role, "state": "notify_wait", **info}
        return sub_id

    def subscribe(self, **kw: Any) -> str:
        sub_id = self._new(Role.SUBSCRIBER, **kw)
        self.calls.append(("subscribe", sub_id, kw["request_uri"], kw["expires"]))
        return sub_id

    def fetch(self, **kw: Any) -> str:
        sub_id = self._new(Role.SUBSCRIBER, **kw)
        self.calls.append(("fetch", sub_id, kw["request_uri"]))
        return sub_id

    def refresh(self, sub_id: str, now: float, expires: int | None = None) -> None:
        self.calls.append(("refresh", sub_id, expires))

    def unsubscribe(self, sub_id: str, now: float) -> None:
        self.calls.append(("unsubscribe", sub_id))

    def accept(
        self,
        sub_id: str,
        now: float,
        *,
        state: str,
        body: bytes | None = None,
        content_type: str | None = None,
        headers: tuple[Any, ...] = (),
    ) -> None:
        self.subs.setdefault(sub_id, {"role": Role.NOTIFIER})["state"] = state
        self.calls.append(("accept", sub_id, state, body))

    def reject(
        self,
        sub_id: str,
        now: float,
        status: int,
        reason: str | None = None,
        headers: tuple[Any, ...] = (),
    ) -> None:
        self.subs.pop(sub_id, None)
        self.calls.append(("reject", sub_id, status, dict(headers)))

    def notify(
        self,
        sub_id: str,
        now: float,
        *,
        state: str,
        body: bytes | None = None,
        content_type: str | None = None,
        reason: str | None = None,
        headers: tuple[Any, ...] = (),
    ) -> int:
        self.calls.append(("notify", sub_id, state, body))
        info = self.subs.get(sub_id)
        if info is None:
            return 0
        info["state"] = state  # as the layer's NOTIFIER_TABLE moves it
        info["cseq"] = info.get("cseq", 1) + 1  # the NOTIFY after the 2xx was CSeq 1
        return int(info["cseq"])

    def terminate(
        self,
        sub_id: str,
        now: float,
        reason: str = "noresource",
        body: bytes | None = None,
        content_type: str | None = None,
        headers: tuple[Any, ...] = (),
    ) -> None:
        self.subs.pop(sub_id, None)
        self.calls.append(("terminate", sub_id, reason, body))

    def snapshot(
        self, sub_id: str, *, now: float | None = None, wall: float | None = None
    ) -> dict[str, object]:
        info = self.subs.get(sub_id)
        if info is None or info.get("state") == "awaiting_answer":
            raise LocalSipError(f"nothing to snapshot for {sub_id}")  # as the real layer
        return {
            "v": 1,
            "sub_id": sub_id,
            "role": str(info["role"].value),
            "state": info.get("state", "active"),
            "event": "presence",
            "expires_at": (wall or 0) + 3000.0,
            "dialog": {
                "call_id": f"c-{sub_id}",
                "local_tag": "lt",
                "remote_tag": "rt",
                "local_uri": "sip:a@example.test",
                "remote_uri": "sip:b@example.test",
                "remote_target": "sip:b@127.0.0.1",
                "route_set": [],
                "local_cseq": 7,
                "remote_cseq": 3,
                "secure": False,
                "transport": "udp",
                "peer_host": "127.0.0.1",
                "peer_port": 5060,
            },
        }

    def restore(self, snapshot: Any, now: float, wall: float) -> str:
        sub_id = str(snapshot["sub_id"])
        self.subs[sub_id] = {
            "role": Role(snapshot["role"]),
            "state": "active",
            "cseq": snapshot["dialog"]["local_cseq"],
        }
        self.calls.append(("restore", sub_id))
        return sub_id

    def get(self, sub_id: str) -> SubscriptionView | None:
        info = self.subs.get(sub_id)
        if info is None:
            return None
        return SubscriptionView(
            sub_id=sub_id,
            role=info["role"],
            state=info.get("state", "active"),
            watcher="w",
            presentity="p",
            event="presence",
            event_id=None,
            expires=3600,
            expires_at=None,
            call_id="c",
            local_tag="t",
            remote_tag="r",
            request_in_flight=False,
            answer_pending=info.get("state") == "awaiting_answer",
        )

    def count(self) -> int:
        return len(self.subs)

    def named(self, kind: str) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == kind]


@dataclass
class FakeXmpp:
    up: bool = True
    sent: list[XmppPresence] = field(default_factory=list)

    def send_presence(self, presence: XmppPresence, *, error: StanzaError | None = None) -> None:
        self.sent.append(presence)

    def of(self, ptype: PresenceType) -> list[XmppPresence]:
        return [p for p in self.sent if p.type is ptype]


def settings(**presence: Any) -> Settings:
    return Settings.model_validate(
        {
            "xmpp": {"component_jid": COMPONENT, "secret": "x"},
            "domains": {
                "sip": [{"sip": "example.test", "xmpp": COMPONENT}],
                "xmpp": [{"xmpp": "example.test", "sip": "example.test"}],
            },
            "presence": {
                "store_url": "sqlite://:memory:",
                "min_notify_interval": 0.0,
                "retry_after": 30,
                "restore_spread": 0.0,
                **presence,
            },
        }
    )


@dataclass
class World:
    service: PresenceService
    layer: FakeLayer
    xmpp: FakeXmpp
    store: Store

    def feed(self, *events: Any) -> None:
        self.layer.events.extend(events)
        self.service._pump()

    async def settle(self) -> None:
        """Let the service's background work (store reads, next hops) finish."""
        for _ in range(50):
            tasks = list(self.service._tasks)
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.sleep(0)
            if not self.service._tasks:
                return


async def make_world(store: Store, **presence: Any) -> World:
    s = settings(**presence)
    xmpp = FakeXmpp()

    async def resolve(uri: str) -> TransportAddress:
        return DEST

    service = PresenceService(settings=s, domains=domain_map_from(s), xmpp=xmpp, resolve=resolve)
    layer = FakeLayer()
    await service.start(layer, store)  # type: ignore[arg-type]
    return World(service, layer, xmpp, store)


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    st = await open_store("sqlite://:memory:")
    yield st
    await st.close()


@pytest.fixture
async def world(store: Store) -> AsyncIterator[World]:
    w = await make_world(store)
    yield w
    await w.service.stop()


def requested(
    sub_id: str,
    *,
    watcher: str = "sip:alice@example.test",
    expires: int = 3600,
    refresh: bool = False,
    fetch: bool = False,
    presentity: str = "sip:bob@example.test",
) -> SubscribeRequested:
    return SubscribeRequested(
        sub_id, REQ, DEST, watcher, presentity, "presence", expires, refresh, fetch
    )


# -- S2X ------------------------------------------------------------------------------------


async def test_point29_authorized_refresh_with_unknown_state_is_empty(
    world: World, store: Store
) -> None:
    await store.put_authorization(
        Authorization("bob@example.test", "sip:alice@example.test", AuthorizationState.FROM)
    )
    world.layer.subs["n1"] = {"role": Role.NOTIFIER, "state": "awaiting_answer"}
    world.feed(requested("n1"))
    await world.settle()
    # Authorized, state unknown: active with an empty NOTIFY (RFC 8048 §5.3.2 MUST).
    assert world.layer.named("accept") == [("accept", "n1", "active", None)]
    assert world.xmpp.of(PresenceType.SUBSCRIBE) == []  # already authorized: nobody asked
    # Once bob's presence is known, the next refresh carries it.
    await world.service.on_presence(XmppPresence("bob@example.test/pc", f"alice@{COMPONENT}"))
    world.feed(requested("n1", refresh=True))
    body = world.layer.named("accept")[-1][3]
    assert body is not None and parse_pidf(body).tuple("ID-pc") is not None


async def test_new_watcher_asks_the_user_and_stays_pending(world: World) -> None:
    world.feed(requested("n2"))
    await world.settle()
    assert world.layer.named("accept") == [("accept", "n2", "pending", None)]
    [ask] = world.xmpp.of(PresenceType.SUBSCRIBE)
    assert (ask.from_jid, ask.to_jid) == (f"alice@{COMPONENT}", "bob@example.test")
    # bob's presence to the pending watcher is not sent (RFC 8048 §8.2)
    await world.service.on_presence(XmppPresence("bob@example.test/pc", f"alice@{COMPONENT}"))
    assert world.layer.named("notify") == []


async def test_link_down_refuses_a_new_watcher_with_503(world: World) -> None:
    world.xmpp.up = False
    world.feed(requested("n3"))
    await world.settle()
    assert world.layer.named("reject") == [("reject", "n3", 503, {"Retry-After": "30"})]


async def test_point40_foreign_watcher_403_unknown_presentity_404(world: World) -> None:
    world.feed(requested("n4", watcher="sip:eve@evil.test"))
    world.feed(requested("n5", presentity="sip:bob@elsewhere.test"))
    await world.settle()
    assert [c[2] for c in world.layer.named("reject")] == [403, 404]


async def test_point40_xmpp_sender_outside_served_domains_is_refused(world: World) -> None:
    with pytest.raises(StanzaErrorException) as info:
        await world.service.on_presence(
            XmppPresence("mallory@evil.test", f"alice@{COMPONENT}", PresenceType.SUBSCRIBE)
        )
    assert info.value.error.condition == "not-allowed"
    assert world.layer.named("subscribe") == []


async def test_caps_per_peer(store: Store) -> None:
    w = await make_world(store, max_subscriptions_per_peer=1)
    try:
        w.feed(requested("p1"))
        await w.settle()
        w.feed(requested("p2", watcher="sip:carol@example.test"))
        await w.settle()
        assert w.layer.named("reject")[0][1:3] == ("p2", 503)
        # the X2S side counts against the same peer (example.test)
        with pytest.raises(StanzaErrorException) as info:
            await w.service.on_presence(
                XmppPresence("bob@example.test", f"dave@{COMPONENT}", PresenceType.SUBSCRIBE)
            )
        assert info.value.error.condition == "resource-constraint"
    finally:
        await w.service.stop()


async def test_presence_error_ends_pending_watchers_noresource(world: World) -> None:
    world.feed(requested("n6", presentity="sip:ghost@example.test"))
    await world.settle()
    await world.service.on_presence_error(
        XmppPresence("ghost@example.test", f"alice@{COMPONENT}", PresenceType.ERROR),
        StanzaError("item-not-found", "cancel"),
    )
    assert world.layer.named("terminate") == [("terminate", "n6", "noresource", None)]


# -- X2S ------------------------------------------------------------------------------------


async def subscribe_alice(world: World) -> str:
    await world.service.on_presence(
        XmppPresence("bob@example.test", f"alice@{COMPONENT}", PresenceType.SUBSCRIBE)
    )
    [(_, sub_id, uri, expires)] = world.layer.named("subscribe")[-1:]
    assert (uri, expires) == ("sip:alice@example.test", 3600)
    return sub_id


def notify(sub_id: str, state: str, body: bytes = b"", reason: str | None = None) -> NotifyReceived:
    return NotifyReceived(
        sub_id,
        state,
        3600 if state != "terminated" else None,
        reason,
        None,
        body,
        "application/pidf+xml" if body else None,
        None,
        REQ,
    )


@pytest.mark.parametrize("status", [403, 489, 603])
async def test_point24_cancelling_codes(world: World, status: int) -> None:
    sub_id = await subscribe_alice(world)
    world.feed(notify(sub_id, "active", PIDF))
    assert world.xmpp.of(PresenceType.SUBSCRIBED)
    world.feed(SubscribeFailed(sub_id, status, None, True, status == 489))
    [unsub] = world.xmpp.of(PresenceType.UNSUBSCRIBED)
    assert unsub.from_jid == f"alice@{COMPONENT}"
    assert [p.from_jid for p in world.xmpp.of(PresenceType.UNAVAILABLE)] == [
        f"alice@{COMPONENT}/pc"
    ]
    await world.settle()
    assert len(world.layer.named("subscribe")) == 1  # never re-established


@pytest.mark.parametrize("status", [423, 481])
async def test_point24_transient_codes_keep_the_authorization(world: World, status: int) -> None:
    sub_id = await subscribe_alice(world)
    world.feed(notify(sub_id, "active", PIDF))
    world.layer.subs.pop(sub_id)
    world.feed(SubscribeFailed(sub_id, status, None, True, True))
    await world.settle()
    assert world.xmpp.of(PresenceType.UNSUBSCRIBED) == []
    assert world.xmpp.of(PresenceType.UNAVAILABLE) == []  # no false offline
    assert len(world.layer.named("subscribe")) == 2  # at once, in a new dialog


async def test_immediate_retries_are_bounded(world: World) -> None:
    sub_id = await subscribe_alice(world)
    for _ in range(MAX_IMMEDIATE_RETRIES + 2):
        world.layer.subs.pop(sub_id, None)
        world.feed(SubscribeFailed(sub_id, 481, None, False, True))
        await world.settle()
        sub_id = world.layer.named("subscribe")[-1][1]
    assert len(world.layer.named("subscribe")) == 1 + MAX_IMMEDIATE_RETRIES


async def test_pending_then_terminated_rejected(world: World) -> None:
    sub_id = await subscribe_alice(world)
    world.feed(notify(sub_id, "pending", PIDF))
    assert world.xmpp.sent == []  # point 22
    world.feed(
        notify(sub_id, "terminated", reason="rejected"),
        SubscriptionTerminated(sub_id, Role.SUBSCRIBER, "rejected", None),
    )
    assert [p.type for p in world.xmpp.sent] == [PresenceType.UNSUBSCRIBED]


async def test_unsubscribe_without_dialog_confirms_at_once(world: World) -> None:
    await world.service.on_presence(
        XmppPresence("bob@example.test", f"zed@{COMPONENT}", PresenceType.UNSUBSCRIBE)
    )
    assert [p.type for p in world.xmpp.sent] == [PresenceType.UNSUBSCRIBED]
    assert world.layer.named("unsubscribe") == []


async def test_probe_answers_from_cache_and_refreshes(world: World) -> None:
    sub_id = await subscribe_alice(world)
    world.feed(notify(sub_id, "active", PIDF))
    world.xmpp.sent.clear()
    await world.service.on_presence(
        XmppPresence("bob@example.test/tablet", f"alice@{COMPONENT}", PresenceType.PROBE)
    )
    assert world.layer.named("refresh") == [("refresh", sub_id, 3600)]
    [answer] = world.xmpp.sent
    assert (answer.from_jid, answer.to_jid) == (f"alice@{COMPONENT}/pc", "bob@example.test/tablet")


# -- persistence ----------------------------------------------------------------------------


async def test_restore_answers_refresh_with_last_state_and_refreshes_x2s(store: Store) -> None:
    w = await make_world(store)
    w.feed(requested("n7"))
    await w.settle()
    await w.service.on_presence(
        XmppPresence("bob@example.test", f"alice@{COMPONENT}", PresenceType.SUBSCRIBED)
    )
    await w.service.on_presence(XmppPresence("bob@example.test/pc", f"alice@{COMPONENT}"))
    sent_body = w.layer.named("notify")[-1][3]
    assert sent_body is not None
    x2s = await subscribe_alice(w)
    w.feed(notify(x2s, "active", PIDF))
    await w.service.stop()

    records = {r.id: r async for r in store.all_subscriptions()}
    assert records["n7"].role is SubscriptionRole.NOTIFIER
    assert records["n7"].state is SubscriptionState.ACTIVE
    assert records["n7"].last_state == sent_body
    assert records["n7"].dialog is not None and records["n7"].dialog.local_cseq == 7
    assert records[x2s].role is SubscriptionRole.SUBSCRIBER
    auth = await store.get_authorization("bob@example.test", "sip:alice@example.test")
    assert auth is not None and auth.state is AuthorizationState.BOTH

    w2 = await make_world(store)
    try:
        # CSeq jumps on restore (a crash may have lost the last flush)
        assert w2.layer.subs["n7"]["cseq"] > 7
        w2.layer.subs["n7"]["state"] = "active"
        w2.feed(requested("n7", refresh=True))
        await w2.settle()
        assert w2.layer.named("accept")[-1] == ("accept", "n7", "active", sent_body)
        await asyncio.sleep(0.05)  # restore_spread: refreshed soon after start
        assert [c[1] for c in w2.layer.named("refresh")] == [x2s]
        assert w2.xmpp.sent == []  # nothing sent to XMPP on a restart
    finally:
        await w2.service.stop()


async def test_expired_notifier_record_is_dropped_on_restore(store: Store) -> None:
    await store.put_subscription(
        Subscription(
            id="old",
            role=SubscriptionRole.NOTIFIER,
            watcher="sip:alice@example.test",
            presentity="bob@example.test",
            state=SubscriptionState.ACTIVE,
            expires_at=1.0,
            extra={"layer": {"sub_id": "old"}, "watcher_jid": "a", "presentity_uri": "b"},
        )
    )
    w = await make_world(store)
    try:
        assert w.layer.named("restore") == []
        await w.service.flush()
        assert await store.get_subscription("old") is None
    finally:
        await w.service.stop()


# -- routing and helpers --------------------------------------------------------------------


async def test_router_forwards_and_ignores_without_presence() -> None:
    class Messages:
        def __init__(self) -> None:
            self.states: list[bool] = []

        async def on_message(self, msg: Any) -> None: ...

        async def on_message_error(self, msg: Any) -> None: ...

        def on_link_state(self, up: bool) -> None:
            self.states.append(up)

    messages = Messages()
    router = XmppRouter(messages, None)
    with pytest.raises(Ignore):
        await router.on_presence(XmppPresence("a@b", "c@d"))
    await router.on_presence_error(XmppPresence("a@b", "c@d"), StanzaError("gone", "cancel"))
    router.on_link_state(True)
    assert messages.states == [True]


def test_contact_uri_for_each_transport() -> None:
    contact = contact_uri_for({"udp": ("127.0.0.1", 5070), "tls": ("::1", 5071)})
    assert contact("udp") == "sip:gw@127.0.0.1:5070"
    assert contact("tls") == "sips:gw@[::1]:5071;transport=tls"
    assert contact("tcp") == "sip:gw@127.0.0.1:5070"


async def test_point25_initial_presence_refreshes_once(world: World) -> None:
    sub_id = await subscribe_alice(world)
    world.feed(notify(sub_id, "active", PIDF))
    await world.service.on_presence(XmppPresence("bob@example.test/pc", f"alice@{COMPONENT}"))
    assert world.layer.named("refresh") == [("refresh", sub_id, 3600)]
    # a change of the same online resource is not "initial": no second refresh
    await world.service.on_presence(XmppPresence("bob@example.test/pc", f"alice@{COMPONENT}"))
    assert len(world.layer.named("refresh")) == 1
    # offline and back online: initial again
    await world.service.on_presence(
        XmppPresence("bob@example.test/pc", f"alice@{COMPONENT}", PresenceType.UNAVAILABLE)
    )
    await world.service.on_presence(XmppPresence("bob@example.test/pc", f"alice@{COMPONENT}"))
    assert len(world.layer.named("refresh")) == 2
