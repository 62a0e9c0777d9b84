"""Sample records and Hypothesis strategies for the state-store tests."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from sipxmpp.gateway.store import (
    MAX_SEQ,
    Authorization,
    AuthorizationState,
    DialogState,
    Store,
    Subscription,
    SubscriptionRole,
    SubscriptionState,
)

#: A fixed wall-clock origin, so expiry tests never depend on the real time.
T0 = 1_700_000_000.0


def dialog(n: int = 1, **changes: Any) -> DialogState:
    fields: dict[str, Any] = {
        "call_id": f"call-{n}@gw.example",
        "local_tag": f"lt{n}",
        "remote_tag": f"rt{n}",
        "local_uri": "sip:juliet@xmpp.example",
        "remote_uri": f"sip:romeo{n}@sip.example",
        "remote_target": f"sip:romeo{n}@192.0.2.10:5070;transport=tcp",
        "route_set": ("<sip:p1.sip.example;lr>", "<sip:p2.sip.example;lr>"),
        "local_cseq": 7,
        "remote_cseq": 101,
        "secure": False,
        "transport": "tcp",
        "peer_host": "192.0.2.10",
        "peer_port": 5070,
    }
    fields.update(changes)
    return DialogState(**fields)


def sub(n: int = 1, **changes: Any) -> Subscription:
    """Subscription number ``n``: watcher and presentity vary so counts can be checked."""
    fields: dict[str, Any] = {
        "id": f"sub-{n:06d}",
        "role": SubscriptionRole.NOTIFIER,
        "watcher": f"sip:romeo{n % 10}@sip.example",
        "presentity": f"juliet{n % 7}@xmpp.example",
        "state": SubscriptionState.ACTIVE,
        "expires_at": T0 + n,
        "peer": f"peer{n % 3}.example",
        "dialog": dialog(n),
        "last_state": b"<?xml version='1.0'?><presence/>",
        "last_notify_at": T0 - 10.0,
        "extra": {"n": n, "tags": ["a", "b"]},
    }
    fields.update(changes)
    return Subscription(**fields)


def auth(
    jid: str = "juliet@xmpp.example", uri: str = "sip:romeo@sip.example", **changes: Any
) -> Authorization:
    fields: dict[str, Any] = {"xmpp_jid": jid, "sip_uri": uri}
    fields.update(changes)
    return Authorization(**fields)


def small_batch_store(backend: str, db_url: str, batch_rows: int) -> Store:
    """An unopened store whose batch writes use statements of ``batch_rows`` rows."""
    if backend == "sqlite":
        from sipxmpp.gateway.store.sqlite import SqliteStore, path_from_url

        return SqliteStore(path_from_url(db_url), batch_rows=batch_rows)
    from sipxmpp.gateway.store.postgres import PostgresStore

    return PostgresStore(db_url, batch_rows=batch_rows)


# -- Hypothesis strategies -------------------------------------------------------------------

#: Storable text: any code point but NUL and lone surrogates (the model refuses those).
_CHARS = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
text = st.text(_CHARS, min_size=1, max_size=24)
maybe_empty = st.text(_CHARS, max_size=24)
epochs = st.floats(allow_nan=False, allow_infinity=False)

json_keys = st.text(st.characters(exclude_categories=("Cs",)), max_size=8)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=("Cs",)), max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(json_keys, children, max_size=4)
    ),
    max_leaves=12,
)

dialogs = st.builds(
    DialogState,
    call_id=text,
    local_tag=text,
    remote_tag=st.none() | text,
    local_uri=text,
    remote_uri=text,
    remote_target=text,
    route_set=st.lists(text, max_size=4).map(tuple),
    local_cseq=st.integers(0, MAX_SEQ),
    remote_cseq=st.none() | st.integers(0, MAX_SEQ),
    secure=st.booleans(),
    transport=st.sampled_from(["udp", "tcp", "tls", "ws", "sctp"]),
    peer_host=maybe_empty,
    peer_port=st.integers(0, 65535),
)

subscriptions = st.builds(
    Subscription,
    id=text,
    role=st.sampled_from(SubscriptionRole),
    watcher=text,
    presentity=text,
    state=st.sampled_from(SubscriptionState),
    expires_at=epochs,
    peer=maybe_empty,
    event=text,
    dialog=st.none() | dialogs,
    last_state=st.none() | st.binary(max_size=64),
    last_notify_at=st.none() | epochs,
    extra=st.dictionaries(json_keys, json_values, max_size=4),
)


@st.composite
def authorizations(draw: st.DrawFn) -> Authorization:
    state = draw(st.sampled_from(AuthorizationState))
    pending_out = state in (AuthorizationState.NONE, AuthorizationState.FROM) and draw(
        st.booleans()
    )
    pending_in = state in (AuthorizationState.NONE, AuthorizationState.TO) and draw(st.booleans())
    return Authorization(
        xmpp_jid=draw(text),
        sip_uri=draw(text),
        state=state,
        pending_out=pending_out,
        pending_in=pending_in,
    )
