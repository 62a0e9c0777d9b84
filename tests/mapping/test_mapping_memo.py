"""The mapping's per-message memos give exactly what a fresh computation gives, bounded."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipxmpp.mapping import DomainMap, MappingRefused, StanzaRefused, messages
from sipxmpp.mapping import addresses as addr

DOMAINS = dict(
    sip_domains={"example.com": "sip.example.com"},
    xmpp_domains={"example.com": "example.com"},
)

SIP_CASES = [
    ("sip:alice@example.com", None, None),
    ("sip:o'malley@example.com", None, None),
    ("sip:f%C3%BC@example.com", None, None),
    ("sip:bob@example.com;gr=laptop", None, None),
    ("sip:alice@example.com", "sip:alice@example.com", None),
    ("sip:alice@example.com", None, "<sip:alice@example.com;gr=phone>"),
    ("sips:alice@example.com", None, None),
    ("sip:alice@elsewhere.test", None, None),
    ("tel:+1234", None, None),
    ("sip:@example.com", None, None),
]

JID_CASES = [
    "alice@sip.example.com",
    "o\\27malley@sip.example.com/desk",
    "sip.example.com",
    "bob@example.com/laptop",
    "bob@elsewhere.test",
    "not a jid@@",
]


def _outcome(call: object) -> object:
    try:
        return ("ok", call())  # type: ignore[operator]
    except (MappingRefused, StanzaRefused) as exc:
        return ("refused", type(exc).__name__, str(exc))


@pytest.mark.parametrize(("uri", "to_uri", "contact"), SIP_CASES)
def test_sip_side_results_equal_a_fresh_map(
    uri: str, to_uri: str | None, contact: str | None
) -> None:
    warm = DomainMap(**DOMAINS)
    for _ in range(3):  # the first call fills the memo, the others read it
        fresh = DomainMap(**DOMAINS)
        for dm_a, dm_b in ((warm, fresh),):
            assert _outcome(lambda a=dm_a: a.sip_target_to_jid(uri, to_uri=to_uri)) == _outcome(
                lambda b=dm_b: b.sip_target_to_jid(uri, to_uri=to_uri)
            )
            assert _outcome(
                lambda a=dm_a: a.sip_sender_to_jid(uri, contact_uri=contact)
            ) == _outcome(lambda b=dm_b: b.sip_sender_to_jid(uri, contact_uri=contact))


@pytest.mark.parametrize("jid", JID_CASES)
def test_xmpp_side_results_equal_a_fresh_map(jid: str) -> None:
    warm = DomainMap(**DOMAINS)
    for _ in range(3):
        fresh = DomainMap(**DOMAINS)
        for dm_a, dm_b in ((warm, fresh),):
            assert _outcome(lambda a=dm_a: a.xmpp_target_to_sip(jid)) == _outcome(
                lambda b=dm_b: b.xmpp_target_to_sip(jid)
            )
            assert _outcome(lambda a=dm_a: a.xmpp_sender_to_sip(jid)) == _outcome(
                lambda b=dm_b: b.xmpp_sender_to_sip(jid)
            )


def test_refusals_are_not_remembered() -> None:
    dm = DomainMap(**DOMAINS)
    for _ in range(2):
        with pytest.raises(MappingRefused):
            dm.sip_target_to_jid("sip:alice@elsewhere.test")
        with pytest.raises(StanzaRefused):
            dm.xmpp_sender_to_sip("bob@elsewhere.test")
    assert dm._memo == {}


def test_the_memo_is_bounded_and_keeps_the_newest() -> None:
    dm = DomainMap(**DOMAINS)
    for n in range(addr.MAX_MEMO_ENTRIES + 50):
        dm.sip_sender_to_jid(f"sip:user{n}@example.com")
    assert len(dm._memo) == addr.MAX_MEMO_ENTRIES
    newest = f"sip:user{addr.MAX_MEMO_ENTRIES + 49}@example.com"
    assert ("sender", newest, None) in dm._memo
    assert ("sender", "sip:user0@example.com", None) not in dm._memo


def test_long_inputs_are_mapped_but_not_remembered() -> None:
    dm = DomainMap(**DOMAINS)
    user = "u" * addr.MAX_MEMO_KEY_CHARS
    jid = dm.sip_sender_to_jid(f"sip:{user}@example.com")
    assert str(jid) == f"{user}@sip.example.com"
    assert dm._memo == {}


def test_the_memo_does_not_change_equality_or_hash() -> None:
    a, b = DomainMap(**DOMAINS), DomainMap(**DOMAINS)
    a.sip_sender_to_jid("sip:alice@example.com")
    assert a == b and hash(a) == hash(b)
    assert "_memo" not in repr(a)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_any_user_part_maps_the_same_warm_or_fresh(user: str) -> None:
    uri = f"sip:{user}@example.com"
    warm = DomainMap(**DOMAINS)
    first = _outcome(lambda: warm.sip_sender_to_jid(uri))
    assert _outcome(lambda: warm.sip_sender_to_jid(uri)) == first
    assert _outcome(lambda: DomainMap(**DOMAINS).sip_sender_to_jid(uri)) == first


@pytest.mark.parametrize(
    "value",
    ["text/plain;charset=UTF-8", 'TEXT/HTML ; charset="iso-8859-1"', "text/plain", "a/b;x=1;y=2"],
)
def test_content_type_memo_returns_fresh_equal_results(value: str) -> None:
    messages._content_type_memo.clear()
    first = messages.parse_content_type(value)
    second = messages.parse_content_type(value)  # from the memo
    assert first == second == messages._parse_content_type(value)
    second[1]["charset"] = "changed"  # a caller changing its dict changes no later result
    assert messages.parse_content_type(value) == first


def test_content_type_refusals_are_raised_every_time() -> None:
    for _ in range(2):
        with pytest.raises(MappingRefused):
            messages.parse_content_type("not a media type")
