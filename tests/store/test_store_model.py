"""The store's records: constructor validation, freezing of ``extra``, codec, schema plan."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from store_helpers import T0, auth, authorizations, dialog, sub, subscriptions

from sipxmpp.gateway.store import (
    MAX_EXTRA_BYTES,
    MAX_LAST_STATE_BYTES,
    MAX_ROUTE_SET,
    MAX_SEQ,
    MAX_URI_BYTES,
    AuthorizationState,
    LocalStoreError,
    RemoteStoreError,
    SchemaVersionError,
    StoreError,
    StoreUnavailable,
    Subscription,
    SubscriptionRole,
    SubscriptionState,
    VersionConflict,
    open_store,
    store_for_url,
)
from sipxmpp.gateway.store.base import (
    authorization_from_row,
    authorization_row,
    subscription_from_row,
    subscription_row,
)
from sipxmpp.gateway.store.schema import LATEST_VERSION, MIGRATIONS, SUBSCRIPTION_COLUMNS, plan
from sipxmpp.gateway.store.sqlite import path_from_url

# (field, bad value, words expected in the message)
BAD_SUBSCRIPTION_FIELDS: list[tuple[str, Any, str]] = [
    ("id", "", "empty"),
    ("id", 7, "must be str"),
    ("id", "a\x00b", "NUL"),
    ("id", "x" * 1025, "bytes"),
    ("watcher", "\ud800", "UTF-8"),
    ("presentity", "ü" * (MAX_URI_BYTES // 2 + 1), "bytes"),
    ("role", "watcher", "not one of"),
    ("role", None, "not one of"),
    ("state", "ACTIVE", "not one of"),
    ("expires_at", math.inf, "finite"),
    ("expires_at", math.nan, "finite"),
    ("expires_at", "1", "float"),
    ("expires_at", True, "float"),
    ("expires_at", 10**400, "range"),
    ("last_notify_at", -math.inf, "finite"),
    ("event", "", "empty"),
    ("last_state", "text", "bytes"),
    ("last_state", b"x" * (MAX_LAST_STATE_BYTES + 1), "over"),
    ("version", -1, "outside"),
    ("version", 2**63, "outside"),
    ("version", 1.0, "int"),
    ("dialog", "call-1", "DialogState"),
    ("extra", [1, 2], "mapping"),
    ("extra", {"t": (1, 2)}, "only"),
    ("extra", {1: "int key"}, "only"),
    ("extra", {"f": math.nan}, "JSON"),
    ("extra", {"s": {1, 2}}, "JSON"),
    ("extra", {"b": b"bytes"}, "JSON"),
    ("extra", {"big": "x" * MAX_EXTRA_BYTES}, "more than"),
]


@pytest.mark.parametrize(("field", "value", "words"), BAD_SUBSCRIPTION_FIELDS)
def test_subscription_refuses_bad_values(field: str, value: Any, words: str) -> None:
    with pytest.raises(LocalStoreError, match=words) as info:
        sub(1, **{field: value})
    assert info.value.status_hint == 500
    assert isinstance(info.value, ValueError)


BAD_DIALOG_FIELDS: list[tuple[str, Any]] = [
    ("call_id", ""),
    ("local_tag", ""),
    ("remote_tag", ""),
    ("remote_tag", 5),
    ("remote_uri", "a\x00"),
    ("route_set", ("<sip:p;lr>",) * (MAX_ROUTE_SET + 1)),
    ("route_set", ("",)),
    ("route_set", "<sip:p;lr>"),
    ("local_cseq", -1),
    ("local_cseq", MAX_SEQ + 1),
    ("remote_cseq", MAX_SEQ + 1),
    ("remote_cseq", "1"),
    ("secure", 1),
    ("transport", "UDP"),
    ("transport", "t c p"),
    ("transport", ""),
    ("peer_port", 65536),
    ("peer_port", -1),
]


@pytest.mark.parametrize(("field", "value"), BAD_DIALOG_FIELDS)
def test_dialog_refuses_bad_values(field: str, value: Any) -> None:
    with pytest.raises(LocalStoreError):
        dialog(1, **{field: value})


def test_dialog_accepts_limits_and_normalises_route_set_list() -> None:
    d = dialog(
        1,
        remote_tag=None,
        route_set=["<sip:a;lr>"] * MAX_ROUTE_SET,
        local_cseq=MAX_SEQ,
        remote_cseq=None,
        peer_host="",
        peer_port=0,
    )
    assert d.route_set == ("<sip:a;lr>",) * MAX_ROUTE_SET
    assert hash(d) == hash(dataclasses.replace(d))


def test_subscription_coerces_strings_and_ints() -> None:
    s = sub(1, role="subscriber", state="pending", expires_at=5, last_state=bytearray(b"ab"))
    assert s.role is SubscriptionRole.SUBSCRIBER
    assert s.state is SubscriptionState.PENDING
    assert s.expires_at == 5.0 and type(s.expires_at) is float
    assert s.last_state == b"ab" and type(s.last_state) is bytes


def test_extra_is_a_private_read_only_copy() -> None:
    source: dict[str, Any] = {"a": [1, {"b": None}]}
    s = sub(1, extra=source)
    source["a"] = "changed"
    assert s.extra == {"a": [1, {"b": None}]}
    with pytest.raises(TypeError):
        s.extra["a"] = 2  # type: ignore[index]
    # hash ignores extra (a mapping is unhashable), equality does not
    assert hash(s) == hash(sub(1, extra={"other": 1}))
    assert s != sub(1, extra={"other": 1})
    # an extra built from another record's extra is accepted
    assert sub(2, extra={"copy": s.extra}).extra == {"copy": {"a": [1, {"b": None}]}}


def test_extra_at_the_limit_is_accepted() -> None:
    overhead = len('{"k":""}')
    s = sub(1, extra={"k": "x" * (MAX_EXTRA_BYTES - overhead)})
    assert len(s.extra["k"]) == MAX_EXTRA_BYTES - overhead  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("state", "pending_out", "pending_in", "ok"),
    [
        # RFC 6121 Appendix A: the nine defined states
        ("none", False, False, True),
        ("none", True, False, True),
        ("none", False, True, True),
        ("none", True, True, True),
        ("to", False, False, True),
        ("to", False, True, True),
        ("from", False, False, True),
        ("from", True, False, True),
        ("both", False, False, True),
        # and the impossible ones
        ("to", True, False, False),
        ("to", True, True, False),
        ("from", False, True, False),
        ("from", True, True, False),
        ("both", True, False, False),
        ("both", False, True, False),
    ],
)
def test_authorization_states_follow_rfc6121(
    state: str, pending_out: bool, pending_in: bool, ok: bool
) -> None:
    if ok:
        a = auth(state=state, pending_out=pending_out, pending_in=pending_in)
        assert a.state is AuthorizationState(state)
        assert a.xmpp_receives == (state in ("to", "both"))
        assert a.sip_receives == (state in ("from", "both"))
    else:
        with pytest.raises(LocalStoreError, match="RFC 6121"):
            auth(state=state, pending_out=pending_out, pending_in=pending_in)


@pytest.mark.parametrize(
    "changes",
    [{"xmpp_jid": ""}, {"sip_uri": "x\x00"}, {"state": "subscribed"}, {"pending_in": 0}],
)
def test_authorization_refuses_bad_values(changes: dict[str, Any]) -> None:
    with pytest.raises(LocalStoreError):
        auth(**changes)


# -- codec -------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(subscriptions)
def test_subscription_row_codec_round_trips(s: Any) -> None:
    row = subscription_row(s)
    assert len(row) == len(SUBSCRIPTION_COLUMNS)
    assert subscription_from_row((*row, 3)) == dataclasses.replace(s, version=3)


@settings(max_examples=100, deadline=None)
@given(authorizations())
def test_authorization_row_codec_round_trips(a: Any) -> None:
    assert authorization_from_row((*authorization_row(a), 4)) == dataclasses.replace(a, version=4)


def _corrupt(index: int, value: Any) -> tuple[Any, ...]:
    row = list(subscription_row(sub(1)))
    row.append(1)
    row[index] = value
    return tuple(row)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("role", "owner"),
        ("extra", "{not json"),
        ("extra", "[1]"),
        ("extra", None),
        ("extra", "[" * 5000 + "]" * 5000),
        ("extra", '{"a": NaN}'),
        ("extra", '{"k": "' + "x" * MAX_EXTRA_BYTES + '"}'),
        ("dialog_route_set", '{"a": 1}'),
        ("dialog_route_set", "[1]"),
        ("dialog_secure", 2),
        ("expires_at", "soon"),
        ("version", 0),
        ("version", None),
        ("id", None),
    ],
)
def test_corrupt_rows_raise_remote_error(column: str, value: Any) -> None:
    columns = (*SUBSCRIPTION_COLUMNS, "version")
    with pytest.raises(RemoteStoreError, match="unreadable subscription row"):
        subscription_from_row(_corrupt(columns.index(column), value))


def test_short_row_raises_remote_error() -> None:
    with pytest.raises(RemoteStoreError):
        subscription_from_row(("id-only",))
    with pytest.raises(RemoteStoreError):
        authorization_from_row(("a", "b", "none", 2, 0, 1))


def test_timestamps_decode_from_sqlite_integers() -> None:
    row = _corrupt((*SUBSCRIPTION_COLUMNS, "version").index("expires_at"), int(T0))
    assert subscription_from_row(row).expires_at == T0


_ANY_VALUE = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=12)
    | st.binary(max_size=12)
    | st.lists(st.integers(), max_size=3)
    | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
)
_STORED_TEXT = st.sampled_from(['{"k": 1}', "{}", "[]", '["sip:p;lr"]', "not json", ""])


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_row_decodes_or_raises_remote_error(data: st.DataObject) -> None:
    """Whatever a damaged database returns, decoding gives a record or RemoteStoreError."""
    row = list(subscription_row(sub(1))) + [1]
    for index in data.draw(st.sets(st.integers(0, len(row) - 1), min_size=1, max_size=4)):
        row[index] = data.draw(_ANY_VALUE | _STORED_TEXT)
    try:
        decoded = subscription_from_row(tuple(row))
    except RemoteStoreError:
        return
    assert decoded.version >= 1
    assert subscription_from_row((*subscription_row(decoded), decoded.version)) == decoded


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_field_value_constructs_or_raises_local_error(data: st.DataObject) -> None:
    fields = [f.name for f in dataclasses.fields(Subscription) if f.init]
    changes = {
        name: data.draw(_ANY_VALUE)
        for name in data.draw(st.sets(st.sampled_from(fields), min_size=1, max_size=3))
    }
    try:
        made = sub(1, **changes)
    except LocalStoreError:
        return
    assert subscription_from_row((*subscription_row(made), 1)) == dataclasses.replace(
        made, version=1
    )


# -- schema, errors and URLs -------------------------------------------------------------------


def test_migrations_are_consecutive_and_plan_is_exact() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, LATEST_VERSION + 1))
    assert all(m.sqlite and m.postgres and m.description for m in MIGRATIONS)
    assert plan(0) == MIGRATIONS
    assert plan(1) == MIGRATIONS[1:]
    assert plan(LATEST_VERSION) == ()
    assert plan(0, 1) == MIGRATIONS[:1]
    with pytest.raises(SchemaVersionError, match="newer"):
        plan(LATEST_VERSION + 1)


def test_error_hierarchy_and_hints() -> None:
    assert StoreUnavailable("x").status_hint == 503
    assert issubclass(SchemaVersionError, RemoteStoreError)
    conflict = VersionConflict("subscription", ("s1",), 2, None)
    assert isinstance(conflict, StoreError) and conflict.status_hint == 500
    assert (conflict.kind, conflict.key, conflict.expected, conflict.actual) == (
        "subscription",
        ("s1",),
        2,
        None,
    )
    assert "absent" in str(conflict)


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///var/lib/gw/state.db", "/var/lib/gw/state.db"),
        ("sqlite://relative/state.db", "relative/state.db"),
        ("sqlite://:memory:", ":memory:"),
        ("sqlite:///tmp/with%20space.db", "/tmp/with space.db"),
    ],
)
def test_sqlite_urls(url: str, path: str) -> None:
    assert path_from_url(url) == path


@pytest.mark.parametrize(
    "url",
    ["sqlite://", "mysql://db/x", "", "postgresql", "sqlite://%00", "http://x"],
)
def test_bad_store_urls_are_refused(url: str) -> None:
    with pytest.raises(LocalStoreError):
        store_for_url(url)


def test_store_for_url_picks_backend() -> None:
    assert type(store_for_url("sqlite://:memory:")).__name__ == "SqliteStore"
    assert type(store_for_url("postgresql://u@127.0.0.1:1/db")).__name__ == "PostgresStore"
    assert type(store_for_url("postgres://u:secret@127.0.0.1:1/db")).__name__ == "PostgresStore"
    assert "secret" not in repr(store_for_url("postgres://u:secret@127.0.0.1:1/db"))


async def test_memory_store_opens_awaited_and_closes() -> None:
    store = await open_store("sqlite://:memory:")
    try:
        assert await store.schema_version() == LATEST_VERSION
        assert await store.put_subscription(sub(1)) == dataclasses.replace(sub(1), version=1)
    finally:
        await store.close()
    await store.close()  # idempotent
    with pytest.raises(LocalStoreError, match="not open"):
        await store.get_subscription("sub-000001")
