"""RFC 3261 §17 timer values (Table 4 of Appendix A) and their derivation from T1/T2/T4."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipxmpp.gateway.sip.timers import MIN_TIMER_D_UNRELIABLE, TIMER_C, Timers

DEFAULT = Timers()

# (timer, value over UDP, value over TCP/TLS) with the RFC's default T1=500 ms, T2=4 s, T4=5 s.
TABLE_4 = [
    ("a", 0.5, 0.5),  # initially T1 (not started at all on reliable transports)
    ("b", 32.0, 32.0),
    ("d", 32.0, 0.0),  # "> 32 s for UDP", "0 s for TCP/SCTP"
    ("e", 0.5, 0.5),
    ("f", 32.0, 32.0),
    ("g", 0.5, 0.5),
    ("h", 32.0, 32.0),
    ("i", 5.0, 0.0),
    ("j", 32.0, 0.0),
    ("k", 5.0, 0.0),
    ("l", 32.0, 32.0),  # RFC 6026
    ("m", 32.0, 32.0),  # RFC 6026
]


def _value(timers: Timers, name: str, reliable: bool) -> float:
    attr = getattr(timers, name)
    return float(attr(reliable)) if callable(attr) else float(attr)


@pytest.mark.parametrize(("name", "udp", "tcp"), TABLE_4)
def test_table_4_defaults(name: str, udp: float, tcp: float) -> None:
    assert _value(DEFAULT, name, False) == udp
    assert _value(DEFAULT, name, True) == tcp


def test_base_values() -> None:
    assert (DEFAULT.t1, DEFAULT.t2, DEFAULT.t4) == (0.5, 4.0, 5.0)


def test_timer_c_exceeds_three_minutes() -> None:
    assert DEFAULT.c == TIMER_C > 180


def test_timer_d_grows_with_t1_but_never_below_32s() -> None:
    assert Timers(t1=0.1, t2=4.0).d(False) == MIN_TIMER_D_UNRELIABLE
    assert Timers(t1=1.0, t2=4.0).d(False) == 64.0


@pytest.mark.parametrize(
    ("t1", "t2", "t4"),
    [(0.0, 4.0, 5.0), (-1.0, 4.0, 5.0), (0.5, 0.0, 5.0), (0.5, 4.0, 0.0), (1.0, 0.5, 5.0)],
)
def test_invalid_base_values(t1: float, t2: float, t4: float) -> None:
    with pytest.raises(ValueError):
        Timers(t1=t1, t2=t2, t4=t4)


def test_capped_double_sequence() -> None:
    # §17.1.2.2: E goes T1, 2T1, 4T1, ... capped at T2.
    seq = [DEFAULT.e]
    for _ in range(6):
        seq.append(DEFAULT.capped_double(seq[-1]))
    assert seq == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]


@settings(max_examples=200, deadline=None)
@given(
    t1=st.floats(min_value=0.001, max_value=10),
    extra=st.floats(min_value=0, max_value=60),
    t4=st.floats(min_value=0.001, max_value=60),
)
def test_derived_relations(t1: float, extra: float, t4: float) -> None:
    timers = Timers(t1=t1, t2=t1 + extra, t4=t4)
    assert timers.b == timers.f == timers.h == timers.l == timers.m == 64 * t1
    assert timers.a == timers.e == timers.g == t1
    assert timers.d(False) >= 32.0 and timers.d(True) == 0.0
    assert timers.i(False) == timers.k(False) == t4
    assert timers.j(False) == 64 * t1
    assert timers.i(True) == timers.j(True) == timers.k(True) == 0.0
    assert timers.capped_double(timers.t2) == timers.t2
