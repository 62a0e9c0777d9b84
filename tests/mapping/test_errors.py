"""Error mapping: RFC 7247 §7 Tables 2 and 3, RFC 6120 §8.3.3 types, text <-> phrase."""

from __future__ import annotations

import pytest

from sipxmpp.mapping import (
    ERROR_TYPES,
    TABLE_2,
    TABLE_3,
    XMPP_CONDITIONS,
    DomainMap,
    LocalMappingError,
    SipStatus,
    StanzaError,
    default_error_type,
    reason_phrase,
    sip_status_to_stanza_error,
    stanza_error,
    stanza_error_to_sip_status,
)

DOMAINS = DomainMap(
    sip_domains={"example.com": "sip.example.com"},
    xmpp_domains={"example.com": "example.com"},
)
FULL = "bob@example.com/phone"
BARE = "bob@example.com"


def _err(condition: str, text: str | None = None, uri: str | None = None) -> StanzaError:
    return StanzaError(condition, default_error_type(condition), text, uri)


# --------------------------------------------------------------------------- conformance


def test_cp10_486_busy_here_is_recipient_unavailable_not_conflict() -> None:
    error = sip_status_to_stanza_error(486, "Busy Here")
    assert (error.condition, error.type) == ("recipient-unavailable", "wait")


def test_cp11_conflict_is_400() -> None:
    assert stanza_error_to_sip_status(_err("conflict"), addressed_to=FULL).code == 400
    assert stanza_error_to_sip_status(_err("conflict"), addressed_to=BARE).code == 400


@pytest.mark.parametrize(
    ("code", "condition"),
    [(404, "item-not-found"), (481, "item-not-found"), (408, "remote-server-timeout")],
)
def test_cp12_404_481_408(code: int, condition: str) -> None:
    assert sip_status_to_stanza_error(code).condition == condition


def test_cp13_301_gone_with_address_410_gone_without() -> None:
    moved = sip_status_to_stanza_error(301, "Moved", contact="sip:new@example.com", domains=DOMAINS)
    assert (moved.condition, moved.type) == ("gone", "cancel")
    assert moved.uri == "xmpp:new@sip.example.com"  # a SIP user of a served domain
    gone = sip_status_to_stanza_error(410, "Gone", contact="sip:new@example.com", domains=DOMAINS)
    assert (gone.condition, gone.uri) == ("gone", None)  # MUST NOT carry an address
    # Without a DomainMap the plain §6.4 algorithm names the new address.
    assert sip_status_to_stanza_error(301, contact="sip:o'neil@x.example").uri == (
        "xmpp:o%5C27neil@x.example"
    )
    # No usable Contact: <gone/> without an address (documented choice).
    assert sip_status_to_stanza_error(301).uri is None
    assert sip_status_to_stanza_error(301, contact="sips:new@example.com").uri is None
    assert sip_status_to_stanza_error(301, contact="<<garbage").uri is None
    # The Contact may come as a header value (name-addr with header parameters).
    assert (
        sip_status_to_stanza_error(
            301, contact='"New" <sip:new@example.com>;expires=0', domains=DOMAINS
        ).uri
        == "xmpp:new@sip.example.com"
    )


def test_cp14_gone_with_address_301_empty_410() -> None:
    status = stanza_error_to_sip_status(
        _err("gone", uri="xmpp:new@example.com"), addressed_to=FULL, domains=DOMAINS
    )
    assert (status.code, status.contact) == (301, "sip:new@example.com")
    for addressed in (FULL, BARE):
        status = stanza_error_to_sip_status(_err("gone"), addressed_to=addressed)
        assert (status.code, status.contact) == (410, None)
    # An address that cannot be named in SIP leaves a plain 410.
    assert stanza_error_to_sip_status(_err("gone", uri="mailto:x@y"), addressed_to=FULL).code == 410
    # Without a DomainMap the plain §6.5 algorithm names the new address.
    status = stanza_error_to_sip_status(
        _err("gone", uri="xmpp:m%5C26m@x.example"), addressed_to=BARE
    )
    assert (status.code, status.contact) == (301, "sip:m&m@x.example")


@pytest.mark.parametrize("addressed", [FULL, BARE, "example.com", "garbage@@/"])
def test_cp15_service_unavailable_never_503(addressed: str) -> None:
    status = stanza_error_to_sip_status(_err("service-unavailable"), addressed_to=addressed)
    assert status.code in (403, 405) and status.code != 503


def test_cp16_503_is_internal_server_error() -> None:
    error = sip_status_to_stanza_error(503, "Service Unavailable")
    assert (error.condition, error.type) == ("internal-server-error", "cancel")


@pytest.mark.parametrize(
    ("condition", "full", "bare"),
    [
        ("item-not-found", 404, 604),
        ("forbidden", 403, 603),
        ("recipient-unavailable", 480, 600),
        ("not-acceptable", 406, 606),
    ],
)
def test_cp17_full_jid_4xx_bare_jid_6xx(condition: str, full: int, bare: int) -> None:
    assert stanza_error_to_sip_status(_err(condition), addressed_to=FULL).code == full
    assert stanza_error_to_sip_status(_err(condition), addressed_to=BARE).code == bare


def test_cp18_feature_not_implemented_405_full_501_bare() -> None:
    assert (
        stanza_error_to_sip_status(_err("feature-not-implemented"), addressed_to=FULL).code == 405
    )
    assert (
        stanza_error_to_sip_status(_err("feature-not-implemented"), addressed_to=BARE).code == 501
    )


@pytest.mark.parametrize(
    ("code", "condition"),
    [
        (422, "bad-request"),
        (580, "internal-server-error"),
        (699, "recipient-unavailable"),
        (399, "redirect"),
        (499, "bad-request"),
        (555, "internal-server-error"),
        (601, "recipient-unavailable"),
        (303, "redirect"),
    ],
)
def test_cp19_unlisted_codes_use_class_defaults(code: int, condition: str) -> None:
    assert sip_status_to_stanza_error(code).condition == condition


@pytest.mark.parametrize(
    ("code", "condition"),
    [
        (413, "policy-violation"),
        (414, "policy-violation"),
        (423, "resource-constraint"),
        (491, "unexpected-request"),
    ],
)
def test_cp20_413_414_423_491(code: int, condition: str) -> None:
    assert sip_status_to_stanza_error(code).condition == condition


# --------------------------------------------------------------------------- full tables

# RFC 7247 §7.2 Table 3, row by row.
TABLE_3_ROWS = [
    (300, "redirect"), (301, "gone"), (302, "redirect"), (305, "redirect"),
    (380, "not-acceptable"), (400, "bad-request"), (401, "not-authorized"),
    (402, "bad-request"), (403, "forbidden"), (404, "item-not-found"),
    (405, "feature-not-implemented"), (406, "not-acceptable"),
    (407, "registration-required"), (408, "remote-server-timeout"), (410, "gone"),
    (413, "policy-violation"), (414, "policy-violation"), (415, "not-acceptable"),
    (416, "not-acceptable"), (420, "feature-not-implemented"), (421, "not-acceptable"),
    (423, "resource-constraint"), (430, "recipient-unavailable"),
    (439, "feature-not-implemented"), (440, "policy-violation"),
    (480, "recipient-unavailable"), (481, "item-not-found"), (482, "not-acceptable"),
    (483, "not-acceptable"), (484, "item-not-found"), (485, "item-not-found"),
    (486, "recipient-unavailable"), (487, "recipient-unavailable"), (488, "not-acceptable"),
    (489, "policy-violation"), (491, "unexpected-request"), (493, "bad-request"),
    (500, "internal-server-error"), (501, "feature-not-implemented"),
    (502, "remote-server-not-found"), (503, "internal-server-error"),
    (504, "remote-server-timeout"), (505, "not-acceptable"), (513, "policy-violation"),
    (600, "recipient-unavailable"), (603, "recipient-unavailable"), (604, "item-not-found"),
    (606, "not-acceptable"),
]  # fmt: skip


@pytest.mark.parametrize(("code", "condition"), TABLE_3_ROWS)
def test_table_3_rows(code: int, condition: str) -> None:
    error = sip_status_to_stanza_error(code)
    assert error.condition == condition
    assert error.type == ERROR_TYPES[condition]


def test_table_3_is_exactly_the_rfc_rows() -> None:
    assert dict(TABLE_3) == dict(TABLE_3_ROWS)


# RFC 7247 §7.1 Table 2 with our documented choices: (condition, full, bare).
TABLE_2_ROWS = [
    ("bad-request", 400, 400), ("conflict", 400, 400),
    ("feature-not-implemented", 405, 501), ("forbidden", 403, 603), ("gone", 410, 410),
    ("internal-server-error", 500, 500), ("item-not-found", 404, 604),
    ("jid-malformed", 400, 400), ("not-acceptable", 406, 606), ("not-allowed", 403, 403),
    ("not-authorized", 401, 401), ("policy-violation", 403, 403),
    ("recipient-unavailable", 480, 600), ("redirect", 302, 302),
    ("registration-required", 407, 407), ("remote-server-not-found", 404, 404),
    ("remote-server-timeout", 408, 408), ("resource-constraint", 500, 500),
    ("service-unavailable", 403, 403), ("subscription-required", 400, 400),
    ("undefined-condition", 400, 400), ("unexpected-request", 400, 400),
]  # fmt: skip


@pytest.mark.parametrize(("condition", "full", "bare"), TABLE_2_ROWS)
def test_table_2_rows_with_challenge(condition: str, full: int, bare: int) -> None:
    error = _err(condition)
    assert stanza_error_to_sip_status(error, addressed_to=FULL, challenge_capable=True).code == full
    assert stanza_error_to_sip_status(error, addressed_to=BARE, challenge_capable=True).code == bare


def test_table_2_covers_every_rfc6120_condition() -> None:
    assert set(TABLE_2) == XMPP_CONDITIONS == set(ERROR_TYPES)
    assert {row[0] for row in TABLE_2_ROWS} == XMPP_CONDITIONS


@pytest.mark.parametrize(
    ("condition", "code"), [("not-authorized", 401), ("registration-required", 407)]
)
def test_challenge_codes_need_a_challenge(condition: str, code: int) -> None:
    # RFC 3261 §21.4.2/§21.4.8: 401/407 MUST carry a challenge; without one, 403.
    assert stanza_error_to_sip_status(_err(condition), addressed_to=FULL).code == 403
    assert (
        stanza_error_to_sip_status(_err(condition), addressed_to=FULL, challenge_capable=True).code
        == code
    )


def test_redirect_carries_contact() -> None:
    status = stanza_error_to_sip_status(
        _err("redirect", uri="xmpp:alt@sip.example.com"), addressed_to=FULL, domains=DOMAINS
    )
    assert (status.code, status.contact) == (302, "sip:alt@example.com")
    assert stanza_error_to_sip_status(_err("redirect"), addressed_to=FULL).contact is None
    moved = sip_status_to_stanza_error(302, contact="sip:alt@example.com", domains=DOMAINS)
    assert (moved.condition, moved.uri) == ("redirect", "xmpp:alt@sip.example.com")
    # 305 names a proxy, which is no XMPP address.
    assert sip_status_to_stanza_error(305, contact="sip:proxy.example.com").uri is None


def test_unknown_condition_is_undefined_condition() -> None:
    status = stanza_error_to_sip_status(StanzaError("made-up", "cancel"), addressed_to=FULL)
    assert (status.code, status.reason) == (400, "Bad Request")


# --------------------------------------------------------------------------- types and text


@pytest.mark.parametrize(
    ("condition", "type_"),
    [
        ("bad-request", "modify"), ("conflict", "cancel"), ("feature-not-implemented", "cancel"),
        ("forbidden", "auth"), ("gone", "cancel"), ("internal-server-error", "cancel"),
        ("item-not-found", "cancel"), ("jid-malformed", "modify"), ("not-acceptable", "modify"),
        ("not-allowed", "cancel"), ("not-authorized", "auth"), ("policy-violation", "modify"),
        ("recipient-unavailable", "wait"), ("redirect", "modify"),
        ("registration-required", "auth"), ("remote-server-not-found", "cancel"),
        ("remote-server-timeout", "wait"), ("resource-constraint", "wait"),
        ("service-unavailable", "cancel"), ("subscription-required", "auth"),
        ("undefined-condition", "cancel"), ("unexpected-request", "wait"),
        ("not-a-condition", "cancel"),
    ],
)  # fmt: skip
def test_rfc6120_error_types(condition: str, type_: str) -> None:
    assert default_error_type(condition) == type_


def test_stanza_error_helper() -> None:
    assert stanza_error("item-not-found", "no") == StanzaError("item-not-found", "cancel", "no")
    with pytest.raises(LocalMappingError):
        stanza_error("nope")


def test_reason_phrase_to_text_and_back() -> None:
    error = sip_status_to_stanza_error(486, "Busy right now")
    assert error.text == "Busy right now"
    status = stanza_error_to_sip_status(
        _err("recipient-unavailable", "Gone fishing"), addressed_to=FULL
    )
    assert (status.code, status.reason) == (480, "Gone fishing")
    # Without <text/>, the usual phrase of the code.
    assert stanza_error_to_sip_status(_err("item-not-found"), addressed_to=BARE).reason == (
        "Does Not Exist Anywhere"
    )
    assert sip_status_to_stanza_error(404).text is None
    assert sip_status_to_stanza_error(404, "").text is None


def test_text_is_cleaned_for_each_side() -> None:
    status = stanza_error_to_sip_status(
        _err("forbidden", "line one\r\nSet-Cookie: x\x00" + "y" * 500), addressed_to=FULL
    )
    assert "\r" not in status.reason and "\n" not in status.reason and "\x00" not in status.reason
    assert status.reason.startswith("line one Set-Cookie: x")
    assert len(status.reason) <= 128
    assert (
        stanza_error_to_sip_status(_err("forbidden", "\r\n\t"), addressed_to=FULL).reason
        == "Forbidden"
    )
    error = sip_status_to_stanza_error(400, "bad\x01phrase\ud800" + "z" * 1000)
    assert error.text is not None and "\x01" not in error.text and "\ud800" not in error.text
    assert len(error.text) <= 256


@pytest.mark.parametrize("code", [0, 100, 180, 200, 202, 299, 700, 1000, -1])
def test_only_3xx_to_6xx_are_mapped(code: int) -> None:
    with pytest.raises(LocalMappingError):
        sip_status_to_stanza_error(code)


def test_sip_status_validates() -> None:
    with pytest.raises(LocalMappingError):
        SipStatus(200, "OK")
    with pytest.raises(LocalMappingError):
        SipStatus(400, "bad\r\nphrase")


def test_reason_phrases() -> None:
    assert reason_phrase(486) == "Busy Here"
    assert reason_phrase(604) == "Does Not Exist Anywhere"
    assert reason_phrase(499) == "Client Error"
    assert reason_phrase(999) == "Unknown"
