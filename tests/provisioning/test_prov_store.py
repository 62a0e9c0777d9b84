"""Peer document cache: freshness, ETag/304, caps ver, LRU bound."""

from __future__ import annotations

import pytest
from prov_helpers import full, minimal

from sipxmpp.provisioning.store import (
    DEFAULT_TTL,
    MAX_TTL,
    MIN_TTL,
    Channel,
    PeerDocumentStore,
)


def test_put_get_and_freshness_with_scripted_clock() -> None:
    store = PeerDocumentStore()
    now = 100.0
    record, changed = store.put(
        "B.Example", minimal("b.example"), now=now, channel=Channel.HTTP, etag='"e1"', max_age=300
    )
    assert changed and record.domain == "b.example" and "b.example" in store
    assert store.fresh("b.example", now + 299.0) == minimal("b.example")
    assert store.fresh("b.example", now + 300.0) is None
    assert store.due_for_refresh(now + 300.0) == ("b.example",)
    assert store.etag("b.example") == '"e1"'
    refreshed = store.not_modified("b.example", now=now + 400.0, max_age=600)
    assert refreshed is not None and refreshed.expires_at == now + 1000.0
    assert store.fresh("b.example", now + 999.0) == minimal("b.example")
    _, changed_again = store.put(
        "b.example", minimal("b.example"), now=now + 500, channel=Channel.SIP
    )
    assert not changed_again
    _, changed_doc = store.put("b.example", full("b.example"), now=now + 600, channel=Channel.SIP)
    assert changed_doc


@pytest.mark.parametrize(
    ("max_age", "ttl"), [(None, DEFAULT_TTL), (0, MIN_TTL), (10**9, MAX_TTL), (120, 120.0)]
)
def test_ttl_is_clamped(max_age: int | None, ttl: float) -> None:
    store = PeerDocumentStore()
    record, _ = store.put(
        "b.example", minimal("b.example"), now=0.0, channel=Channel.HTTP, max_age=max_age
    )
    assert record.expires_at == ttl


def test_caps_ver_marks_stale() -> None:
    store = PeerDocumentStore()
    assert store.note_caps("b.example", "v1") is True  # unknown peer: fetch
    store.put("b.example", minimal("b.example"), now=0.0, channel=Channel.XMPP, caps_ver="v1")
    assert store.note_caps("b.example", "v1") is False
    assert store.fresh("b.example", 1.0) is not None
    assert store.note_caps("b.example", "v2") is True
    assert store.fresh("b.example", 1.0) is None
    record = store.get("b.example")
    assert record is not None and record.stale and record.document == minimal("b.example")
    store.put("b.example", minimal("b.example"), now=2.0, channel=Channel.HTTP)
    record = store.get("b.example")
    assert record is not None and record.caps_ver == "v1" and not record.stale


def test_invalidate_remove_and_lru_bound() -> None:
    store = PeerDocumentStore(max_peers=2)
    store.put("a.example", minimal("a.example"), now=0.0, channel=Channel.HTTP)
    store.put("b.example", minimal("b.example"), now=0.0, channel=Channel.HTTP)
    store.get("a.example")  # a is now most recently used
    store.put("c.example", minimal("c.example"), now=0.0, channel=Channel.HTTP)
    assert store.domains() == ("a.example", "c.example") and len(store) == 2
    store.invalidate("a.example")
    assert store.fresh("a.example", 0.0) is None
    store.remove("a.example")
    assert "a.example" not in store and store.get("a.example") is None
    assert store.not_modified("zzz.example", now=0.0) is None
    with pytest.raises(ValueError):
        PeerDocumentStore(max_peers=0)
