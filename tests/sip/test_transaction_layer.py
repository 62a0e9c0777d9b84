"""Transaction layer end to end: two endpoints in a SipPair, a scripted clock, chosen
datagrams lost. Checks §17.1.3/§17.2.3 matching, retransmission and absorption, the ACK
for non-2xx finals, RFC 6026 "Accepted", CANCEL (§9), reliable transports, §18.1.2."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from sipxmpp.gateway.sip import (
    MessageRejected,
    Request,
    RequestReceived,
    ResponseReceived,
    TransactionTimedOut,
    TransportAddress,
    TxState,
    make_request,
    make_response,
    parse_message,
    parse_via,
    serialize,
)
from sipxmpp.gateway.sip.transaction_layer import HEAP_SLACK

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from support.sippair import SipPair, make_req  # noqa: E402


def drop_matching(direction: str, prefix: bytes, count: int = 1) -> Callable[[str, bytes], bool]:
    """Lose the first ``count`` datagrams going ``direction`` that start with ``prefix``."""
    left = [count]

    def rule(d: str, data: bytes) -> bool:
        if d == direction and data.startswith(prefix) and left[0] > 0:
            left[0] -= 1
            return True
        return False

    return rule


def sent(pair: SipPair, direction: str, prefix: bytes) -> list[bytes]:
    return [data for d, data in pair.delivered if d == direction and data.startswith(prefix)]


def requests(events: list[object]) -> list[RequestReceived]:
    return [e for e in events if isinstance(e, RequestReceived)]


def responses(events: list[object]) -> list[int]:
    return [e.response.status for e in events if isinstance(e, ResponseReceived)]


def answer(pair: SipPair, event: object, status: int, tag: str = "bt") -> None:
    assert isinstance(event, RequestReceived)
    pair.b.send_response(make_response(event.request, status, to_tag=tag), pair.now)
    pair.pump()


# -- non-INVITE over UDP ----------------------------------------------------------------


def test_lost_request_is_retransmitted_and_delivered_once() -> None:
    pair = SipPair(drop=drop_matching("a->b", b"MESSAGE"))
    key = pair.a.send_request(make_req(body=b"hi", content_type="text/plain"), pair.addr_b, 0.0)
    pair.pump()
    assert len(pair.dropped) == 1 and pair.take_b() == []
    pair.run(0.5)  # Timer E: the retransmission arrives
    [event] = pair.take_b()
    assert isinstance(event, RequestReceived) and event.request.body == b"hi"
    pair.run(1.5)  # a second retransmission is absorbed by the "Trying" server
    assert pair.take_b() == []
    answer(pair, event, 200)
    [resp] = pair.take_a()
    assert isinstance(resp, ResponseReceived) and resp.transaction == key
    pair.run(100.0)
    assert pair.take_a() == [] and pair.take_b() == []
    assert len(sent(pair, "a->b", b"MESSAGE")) == 2
    assert pair.a.transaction_count == pair.b.transaction_count == 0


def test_lost_response_is_resent_from_completed() -> None:
    pair = SipPair(drop=drop_matching("b->a", b"SIP/2.0 200"))
    pair.a.send_request(make_req(), pair.addr_b, 0.0)
    pair.pump()
    [event] = pair.take_b()
    answer(pair, event, 200)
    assert pair.take_a() == []
    pair.run(0.5)  # the client retransmits; the server answers with its stored 200
    assert responses(pair.take_a()) == [200]
    assert pair.take_b() == []  # the TU saw the request once
    assert pair.b.transaction_state(event.transaction) is TxState.COMPLETED
    pair.run(32.5)  # Timer J
    assert pair.b.transaction_state(event.transaction) is None
    assert pair.a.transaction_count == 0  # Timer K (5 s) ended the client long before


def test_duplicated_response_is_passed_up_once() -> None:
    pair = SipPair()
    pair.a.send_request(make_req(), pair.addr_b, 0.0)
    pair.pump()
    [event] = pair.take_b()
    answer(pair, event, 404)
    [data] = sent(pair, "b->a", b"SIP/2.0 404")
    pair.a.receive_datagram(data, pair.addr_b, 0.1)  # the network duplicates it
    assert responses(pair.take_a()) == [404]


def test_completed_client_absorbs_retransmitted_finals_until_timer_k() -> None:
    # §17.1.2.2: over UDP the client waits T4 in "Completed" (kept as a compact record),
    # absorbing retransmissions of the final response without telling anyone.
    pair = SipPair()
    key = pair.a.send_request(make_req(), pair.addr_b, 0.0)
    pair.pump()
    [event] = pair.take_b()
    answer(pair, event, 200)
    assert responses(pair.take_a()) == [200]
    assert pair.a.transaction_state(key) is TxState.COMPLETED
    assert pair.a.transaction_count == 1
    [data] = sent(pair, "b->a", b"SIP/2.0 200")
    pair.a.receive_datagram(data, pair.addr_b, 4.9)
    assert pair.take_a() == []  # absorbed: no event, not a stray
    pair.run(5.1)  # Timer K (T4 = 5 s)
    assert pair.a.transaction_state(key) is None and pair.a.transaction_count == 0
    pair.a.receive_datagram(data, pair.addr_b, 5.2)
    [stray] = pair.take_a()
    assert isinstance(stray, MessageRejected) and "stray" in stray.reason


def test_non_invite_provisional_then_final() -> None:
    pair = SipPair()
    key = pair.a.send_request(make_req(), pair.addr_b, 0.0)
    pair.pump()
    [event] = pair.take_b()
    answer(pair, event, 100)
    assert responses(pair.take_a()) == [100]
    assert pair.a.transaction_state(key) is TxState.PROCEEDING
    pair.run(4.4)  # in "Proceeding" Timer E is T2: retransmissions at 0.5 and 4.5 only
    pair.run(4.6)
    assert len(sent(pair, "a->b", b"MESSAGE")) == 3
    assert len(sent(pair, "b->a", b"SIP/2.0 100")) == 3  # "Proceeding" resends the 100
    assert responses(pair.take_a()) == [100, 100]  # §17.1.2.2: every 1xx goes up
    answer(pair, event, 202)
    assert responses(pair.take_a()) == [202]


@pytest.mark.parametrize(
    ("method", "transmissions"),
    [("MESSAGE", 11), ("INVITE", 7)],  # E capped at T2 / A doubling, both until 64*T1
)
def test_unanswered_request_times_out(method: str, transmissions: int) -> None:
    pair = SipPair(drop=lambda d, _: d == "a->b")
    key = pair.a.send_request(make_req(method), pair.addr_b, 0.0)
    pair.run(31.9)
    assert pair.take_a() == []
    pair.run(32.0)
    [event] = pair.take_a()
    assert isinstance(event, TransactionTimedOut) and event.transaction == key
    assert len(pair.dropped) == transmissions
    assert pair.a.transaction_count == 0 and pair.a.next_deadline() is None


# -- INVITE over UDP --------------------------------------------------------------------


def invite(pair: SipPair) -> tuple[str, RequestReceived]:
    key = pair.a.send_request(make_req("INVITE"), pair.addr_b, pair.now)
    pair.pump()
    [event] = pair.take_b()
    assert isinstance(event, RequestReceived) and event.request.method == "INVITE"
    assert responses(pair.take_a()) == [100]  # the server's immediate 100 Trying
    return key, event


def test_non_2xx_final_is_acked_by_the_transaction() -> None:
    pair = SipPair(drop=drop_matching("b->a", b"SIP/2.0 486"))
    key, event = invite(pair)
    answer(pair, event, 486)
    assert pair.take_a() == []  # lost
    pair.run(0.5)  # Timer G resends the 486
    assert responses(pair.take_a()) == [486]
    [ack] = sent(pair, "a->b", b"ACK")
    ack_msg = parse_message(ack)
    assert isinstance(ack_msg, Request)
    inv = parse_message(sent(pair, "a->b", b"INVITE")[0])
    # §17.1.1.3: one Via equal to the INVITE's top Via, To from the response, CSeq ACK.
    assert ack_msg.headers.get_lines("Via") == inv.headers.get_lines("Via")
    assert ack_msg.headers.get("To") == "<sip:bob@b.test>;tag=bt"
    assert ack_msg.headers.get("CSeq") == "1 ACK"
    assert ack_msg.uri == inv.uri  # type: ignore[union-attr]
    assert pair.take_b() == []  # the ACK for a non-2xx never reaches the TU
    assert pair.b.transaction_state(event.transaction) is TxState.CONFIRMED
    assert pair.a.transaction_state(key) is TxState.COMPLETED
    pair.run(6.0)  # Timer I = T4
    assert pair.b.transaction_state(event.transaction) is None
    pair.run(32.4)  # Timer D = 32 s from the 486 at 0.5
    assert pair.a.transaction_state(key) is TxState.COMPLETED
    pair.run(32.5)
    assert pair.a.transaction_state(key) is None


def test_retransmitted_final_gets_the_ack_again() -> None:
    pair = SipPair(drop=drop_matching("a->b", b"ACK"))
    _, event = invite(pair)
    answer(pair, event, 603)
    assert responses(pair.take_a()) == [603]
    pair.run(0.5)  # the server did not see the ACK: it resends the 603, the client re-ACKs
    assert responses(pair.take_a()) == []  # absorbed in "Completed"
    assert len(sent(pair, "a->b", b"ACK")) == 1 and len(pair.dropped) == 1
    assert pair.b.transaction_state(event.transaction) is TxState.CONFIRMED


def test_2xx_accepted_states_rfc_6026() -> None:
    pair = SipPair()
    key, event = invite(pair)
    ok = make_response(event.request, 200, to_tag="bt")
    pair.b.send_response(ok, pair.now)
    pair.pump()
    assert pair.b.transaction_state(event.transaction) is TxState.ACCEPTED
    assert pair.a.transaction_state(key) is TxState.ACCEPTED
    # The TU retransmits its 2xx (§13.3.1.4); "Accepted" passes it on, and the client
    # passes every 2xx up so its TU can ACK again.
    pair.clock.advance(0.5)
    pair.b.send_response(ok, pair.now)
    pair.pump()
    assert responses(pair.take_a()) == [200, 200]
    # An INVITE retransmission is absorbed by the server in "Accepted".
    [inv] = sent(pair, "a->b", b"INVITE")
    pair.b.receive_datagram(inv, pair.addr_a, pair.now)
    assert pair.b.data_to_send() == [] and pair.take_b() == []
    # The ACK for the 2xx is a new transaction (new branch) from the TU ...
    ack = make_request(
        "ACK",
        "sip:bob@127.0.0.1:5072",
        from_addr="<sip:alice@a.test>",
        from_tag="from-1",
        to_addr="<sip:bob@b.test>;tag=bt",
        call_id="call-1@test",
        cseq=1,
    )
    ack_key = pair.a.send_request(ack, pair.addr_b, pair.now)
    assert ack_key.endswith("|ACK") and pair.a.transaction_state(ack_key) is None
    pair.pump()
    # ... which the server hands to its TU through the "Accepted" INVITE transaction.
    [got] = pair.take_b()
    assert isinstance(got, RequestReceived) and got.request.method == "ACK"
    assert got.transaction == event.transaction
    pair.run(33.0)  # Timers L and M
    assert pair.a.transaction_count == pair.b.transaction_count == 0
    # After that, the same ACK is a stray.
    pair.a.send_request(ack, pair.addr_b, pair.now)
    pair.pump()
    [stray] = pair.take_b()
    assert isinstance(stray, MessageRejected)


def test_invite_retransmission_resends_the_last_provisional() -> None:
    pair = SipPair()
    _, event = invite(pair)
    answer(pair, event, 180)
    [inv] = sent(pair, "a->b", b"INVITE")
    pair.b.receive_datagram(inv, pair.addr_a, pair.now)
    [(_, data)] = pair.b.data_to_send()
    assert data.startswith(b"SIP/2.0 180")
    assert pair.take_b() == []


def test_invite_client_stops_retransmitting_after_provisional() -> None:
    pair = SipPair(drop=drop_matching("b->a", b"SIP/2.0 100"))
    key = pair.a.send_request(make_req("INVITE"), pair.addr_b, 0.0)
    pair.run(0.5)  # the 100 was lost: Timer A resends the INVITE, the 100 is resent
    assert len(sent(pair, "a->b", b"INVITE")) == 2
    assert pair.a.transaction_state(key) is TxState.PROCEEDING
    pair.run(20.0)
    assert len(sent(pair, "a->b", b"INVITE")) == 2


# -- CANCEL (§9) ----------------------------------------------------------------------


def test_cancel_after_provisional() -> None:
    pair = SipPair()
    key, event = invite(pair)
    answer(pair, event, 180)
    assert responses(pair.take_a()) == [180]
    cancel_key = pair.a.cancel(key, pair.now)
    assert cancel_key is not None and cancel_key != key
    pair.pump()
    [cancel] = pair.take_b()
    assert isinstance(cancel, RequestReceived) and cancel.request.method == "CANCEL"
    # §9.1: the CANCEL's Via equals the INVITE's (same branch), CSeq number the same.
    assert cancel.request.headers.get("CSeq") == "1 CANCEL"
    assert (
        parse_via(cancel.request.headers.get("Via") or "").branch
        == parse_via(event.request.headers.get("Via") or "").branch
    )
    assert pair.b.cancelled_transaction(cancel.transaction) == event.transaction
    assert pair.b.cancelled_transaction(event.transaction) is None
    answer(pair, cancel, 200)
    answer(pair, event, 487)
    events = pair.take_a()
    by_key = {(e.transaction, e.response.status) for e in events if isinstance(e, ResponseReceived)}
    assert by_key == {(cancel_key, 200), (key, 487)}
    assert len(sent(pair, "a->b", b"ACK")) == 1
    assert pair.a.cancel(key, pair.now) is None  # final response received: nothing to cancel


def test_cancel_before_provisional_waits_for_one() -> None:
    pair = SipPair()
    key = pair.a.send_request(make_req("INVITE"), pair.addr_b, 0.0)
    cancel_key = pair.a.cancel(key, 0.0)  # still "Calling": the CANCEL is held (§9.1)
    assert cancel_key is not None and pair.a.transaction_state(cancel_key) is None
    pair.pump()  # INVITE out, 100 Trying back, then the held CANCEL goes out
    assert [data.split(b" ")[0] for d, data in pair.delivered if d == "a->b"] == [
        b"INVITE",
        b"CANCEL",
    ]
    methods = [e.request.method for e in requests(pair.take_b())]
    assert methods == ["INVITE", "CANCEL"]
    assert pair.a.transaction_state(cancel_key) is TxState.TRYING  # b's TU has not answered


def test_held_cancel_is_dropped_when_a_final_response_comes_first() -> None:
    pair = SipPair(drop=drop_matching("b->a", b"SIP/2.0 100"))
    key = pair.a.send_request(make_req("INVITE"), pair.addr_b, 0.0)
    assert pair.a.cancel(key, 0.0) is not None
    pair.pump()
    [event] = pair.take_b()
    answer(pair, event, 486)
    pair.run(40.0)
    assert sent(pair, "a->b", b"CANCEL") == []
    assert responses(pair.take_a()) == [486]


def test_cancel_without_invite_gets_481_and_unknown_keys_give_none() -> None:
    pair = SipPair()
    pair.a.send_request(make_req("CANCEL"), pair.addr_b, 0.0)
    pair.pump()
    assert responses(pair.take_a()) == [481]
    [rejected] = pair.take_b()
    assert isinstance(rejected, MessageRejected) and rejected.status == 481
    assert pair.a.cancel("z9hG4bKnone|INVITE", 0.0) is None
    key = pair.a.send_request(make_req(), pair.addr_b, 0.0)
    assert pair.a.cancel(key, 0.0) is None  # not an INVITE


# -- §17.2.3 matching -------------------------------------------------------------------


def raw_request(branch: str | None, sent_by: str, method: str = "MESSAGE", cseq: int = 1) -> bytes:
    via = f"SIP/2.0/UDP {sent_by}" + (f";branch={branch}" if branch else "")
    return (
        f"{method} sip:bob@127.0.0.1:5072 SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n"
        f"From: <sip:a@a.test>;tag=f\r\nTo: <sip:b@b.test>\r\nCall-ID: m@test\r\n"
        f"CSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


MATCHING = [
    # (first request, second request, same transaction?)
    (raw_request("z9hG4bK1", "10.0.0.1:5060"), raw_request("z9hG4bK1", "10.0.0.1:5060"), True),
    (raw_request("z9hG4bK1", "10.0.0.1:5060"), raw_request("z9hG4bK1", "10.0.0.2:5060"), False),
    (raw_request("z9hG4bK1", "10.0.0.1:5060"), raw_request("z9hG4bK1", "10.0.0.1:5062"), False),
    (raw_request("z9hG4bK1", "10.0.0.1:5060"), raw_request("z9hG4bK2", "10.0.0.1:5060"), False),
    (raw_request("z9hG4bK1", "host.test"), raw_request("z9hG4bK1", "HOST.test"), True),
    (raw_request("z9hG4bK1", "10.0.0.1", "INFO"), raw_request("z9hG4bK1", "10.0.0.1"), False),
    # RFC 2543 peers (no magic cookie): the simplified fallback key.
    (raw_request(None, "10.0.0.1"), raw_request(None, "10.0.0.1"), True),
    (raw_request("old1", "10.0.0.1"), raw_request("old1", "10.0.0.1"), True),
    (raw_request(None, "10.0.0.1"), raw_request(None, "10.0.0.1", cseq=2), False),
]


@pytest.mark.parametrize(("first", "second", "same"), MATCHING)
def test_server_matching(first: bytes, second: bytes, same: bool) -> None:
    pair = SipPair()
    pair.b.receive_datagram(first, pair.addr_a, 0.0)
    pair.b.receive_datagram(second, pair.addr_a, 0.1)
    received = requests(pair.take_b())
    assert len(received) == (1 if same else 2)
    # The TU's answers find their transactions, whichever key form they have.
    for event in received:
        pair.b.send_response(make_response(event.request, 200, to_tag="t"), 0.2)
    assert len(pair.b.data_to_send()) == len(received)
    pair.b.receive_datagram(second, pair.addr_a, 0.3)  # now answered from "Completed"
    [(_, data)] = pair.b.data_to_send()
    assert data.startswith(b"SIP/2.0 200")


def test_response_with_foreign_sent_by_is_discarded() -> None:
    # §18.1.2: the top Via's sent-by must be ours.
    pair = SipPair()
    key = pair.a.send_request(make_req(), pair.addr_b, 0.0)
    [(_, data)] = pair.a.data_to_send()
    branch = key.split("|")[0]
    forged = data.replace(b"MESSAGE sip:bob@127.0.0.1:5072 SIP/2.0", b"SIP/2.0 200 OK").replace(
        b"127.0.0.1:5071;branch=" + branch.encode(), b"192.0.2.99:5071;branch=" + branch.encode()
    )
    pair.a.receive_datagram(forged, pair.addr_b, 0.1)
    [event] = pair.take_a()
    assert isinstance(event, MessageRejected) and "not ours" in event.reason
    assert pair.a.transaction_state(key) is TxState.TRYING


def test_response_with_two_vias_is_discarded() -> None:
    # §8.1.3.3: a UAC discards a response with more than one Via.
    pair = SipPair()
    pair.a.send_request(make_req(), pair.addr_b, 0.0)
    pair.pump()
    [event] = pair.take_b()
    assert isinstance(event, RequestReceived)
    two = make_response(event.request, 200, to_tag="t")
    two = two.replace(headers=two.headers.add("Via", "SIP/2.0/UDP 10.9.9.9;branch=z9hG4bKx"))
    pair.a.receive_datagram(serialize(two), pair.addr_b, 0.1)
    [rejected] = pair.take_a()
    assert isinstance(rejected, MessageRejected) and "several Vias" in rejected.reason


# -- reliable transports ------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_stream_transactions_do_not_retransmit_or_linger(transport: str) -> None:
    pair = SipPair(transport)  # type: ignore[arg-type]
    key = pair.a.send_request(make_req(), pair.addr_b, 0.0)
    pair.pump()
    [event] = pair.take_b()
    assert event.source.connection == 1  # type: ignore[union-attr]
    answer(pair, event, 200)
    assert responses(pair.take_a()) == [200]
    # Timers J and K are zero on reliable transports: both ends are done at once.
    assert pair.a.transaction_state(key) is None
    assert pair.b.transaction_count == 0
    pair.run(100.0)
    assert len(pair.delivered) == 2


def test_stream_invite_non_2xx() -> None:
    pair = SipPair("tcp")
    key, event = invite(pair)
    # No Timer A on a stream; after the 100 only the "Proceeding" guard (Timer C) runs.
    assert pair.a.transaction_state(key) is TxState.PROCEEDING
    assert pair.a.next_deadline() == 181.0
    answer(pair, event, 486)
    assert responses(pair.take_a()) == [486]
    assert len(sent(pair, "a->b", b"ACK")) == 1
    # D and I are zero; H ended with the ACK.
    assert pair.a.transaction_state(key) is None
    assert pair.b.transaction_count == 0


def test_stream_connection_bound_on_first_response() -> None:
    pair = SipPair("tcp")
    key = pair.a.send_request(make_req(), pair.addr_b, 0.0)
    pair.pump()
    [event] = pair.take_b()
    answer(pair, event, 100)
    pair.a.connection_lost(1, 1.0)  # the connection the 100 came on
    [failed] = pair.take_a()[-1:]
    assert type(failed).__name__ == "TransportFailed"
    assert pair.a.transaction_state(key) is None


# -- bookkeeping --------------------------------------------------------------------------


def test_timer_heap_stays_proportional_to_live_transactions() -> None:
    pair = SipPair()
    ep = pair.b
    layer = ep._layer  # noqa: SLF001 - checking the heap bound needs the internals
    for n in range(3000):
        ep.receive_datagram(raw_request(f"z9hG4bKh{n}", "10.0.0.1"), pair.addr_a, 0.0)
    events = requests(pair.take_b())
    for event in events:  # TU deadline entries go stale, Timer J entries are pushed
        ep.send_response(make_response(event.request, 200, to_tag="t"), 1.0)
        assert len(layer._heap) <= 2 * len(layer) + HEAP_SLACK  # noqa: SLF001
    ep.data_to_send()
    assert ep.next_deadline() == 33.0
    ep.handle_timer(33.0)
    assert ep.transaction_count == 0 and ep.next_deadline() is None
    assert layer._heap == []  # noqa: SLF001


def test_transaction_keys_are_stable_strings() -> None:
    pair = SipPair()
    key = pair.a.send_request(make_req(), pair.addr_b, 0.0)
    assert key == "z9hG4bKab1|MESSAGE"
    pair.pump()
    [event] = pair.take_b()
    assert event.transaction == "z9hG4bKab1|127.0.0.1:5071|MESSAGE"  # type: ignore[union-attr]


def test_destination_with_connection_is_used_as_given() -> None:
    pair = SipPair("tcp")
    dest = TransportAddress("tcp", "127.0.0.1", 5072, connection=9)
    pair.a.send_request(make_req(), dest, 0.0)
    [(to, _)] = pair.a.data_to_send()
    assert to == dest
