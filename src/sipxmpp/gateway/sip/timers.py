"""SIP transaction timer values (RFC 3261 §17 and Table 4 of Appendix A).

The three base values T1, T2 and T4 are configuration; every other timer is derived from
them. Nothing here reads a clock: the transaction state machines turn these durations into
absolute deadlines from the ``now`` they are given (design practice 2).

=======  ==========================  ==========  =========================================
Timer    Value                       Section     Meaning
=======  ==========================  ==========  =========================================
T1       500 ms default              §17.1.1.1   RTT estimate
T2       4 s                         §17.1.2.2   max retransmit interval (non-INVITE
                                                 requests, INVITE responses)
T4       5 s                         §17.1.2.2   max time a message stays in the network
A        initially T1                §17.1.1.2   INVITE request retransmit (UDP only)
B        64*T1                       §17.1.1.2   INVITE client transaction timeout
C        > 3 min                     §16.6 (11)  INVITE "Proceeding" guard (see below)
D        > 32 s UDP, 0 TCP/TLS       §17.1.1.2   wait for response retransmissions
E        initially T1                §17.1.2.2   non-INVITE request retransmit (UDP only)
F        64*T1                       §17.1.2.2   non-INVITE client transaction timeout
G        initially T1                §17.2.1     INVITE final response retransmit (UDP)
H        64*T1                       §17.2.1     wait for ACK receipt
I        T4 UDP, 0 TCP/TLS           §17.2.1     wait for ACK retransmissions
J        64*T1 UDP, 0 TCP/TLS        §17.2.2     wait for non-INVITE request retransmissions
K        T4 UDP, 0 TCP/TLS           §17.1.2.2   wait for response retransmissions
L        64*T1                       RFC 6026 §8.7  INVITE server "Accepted" lifetime
M        64*T1                       RFC 6026 §8.4  INVITE client "Accepted" lifetime
=======  ==========================  ==========  =========================================

Timer C is a proxy timer in RFC 3261 (§16.6 step 11). A user agent has none, which means
an INVITE client transaction that received a provisional response and then nothing would
live for ever; the gateway borrows Timer C's "more than three minutes" as a bound on the
"Proceeding" state so that such a transaction ends with a timeout instead of leaking.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Timers", "TIMER_C", "MIN_TIMER_D_UNRELIABLE"]

#: RFC 3261 §16.6 step 11: Timer C "MUST be set for each client transaction when an INVITE
#: request is proxied ... MUST be larger than 3 minutes". We use it as the bound on an
#: INVITE client transaction that sits in "Proceeding" (see the module docstring).
TIMER_C = 181.0

#: RFC 3261 §17.1.1.2: Timer D is "at least 32 seconds for unreliable transports".
MIN_TIMER_D_UNRELIABLE = 32.0


@dataclass(frozen=True, slots=True)
class Timers:
    """Base timer values; the derived timers A-M are properties/methods.

    ``reliable`` arguments select the RFC 3261 §17 value for reliable transports (TCP,
    TLS), for which the wait timers D, I, J and K are zero and the retransmission timers
    A, E and G are not started at all.
    """

    #: RTT estimate (RFC 3261 §17.1.1.1). The RFC recommends 500 ms.
    t1: float = 0.5
    #: Maximum retransmission interval for non-INVITE requests and INVITE responses.
    t2: float = 4.0
    #: Maximum duration a message remains in the network.
    t4: float = 5.0

    def __post_init__(self) -> None:
        if not (self.t1 > 0 and self.t2 > 0 and self.t4 > 0):
            raise ValueError("T1, T2 and T4 must be positive")
        if self.t2 < self.t1:
            raise ValueError("T2 must not be smaller than T1 (RFC 3261 §17.1.2.2)")

    # -- client INVITE (§17.1.1.2) -------------------------------------------------------
    @property
    def a(self) -> float:
        """Initial Timer A; it doubles on every firing, without a cap."""
        return self.t1

    @property
    def b(self) -> float:
        return 64 * self.t1

    @property
    def c(self) -> float:
        return max(TIMER_C, 64 * self.t1)

    def d(self, reliable: bool) -> float:
        return 0.0 if reliable else max(MIN_TIMER_D_UNRELIABLE, 64 * self.t1)

    # -- client non-INVITE (§17.1.2.2) ---------------------------------------------------
    @property
    def e(self) -> float:
        """Initial Timer E; it doubles on every firing, capped at T2."""
        return self.t1

    @property
    def f(self) -> float:
        return 64 * self.t1

    def k(self, reliable: bool) -> float:
        return 0.0 if reliable else self.t4

    # -- server INVITE (§17.2.1) ---------------------------------------------------------
    @property
    def g(self) -> float:
        """Initial Timer G; it doubles on every firing, capped at T2."""
        return self.t1

    @property
    def h(self) -> float:
        return 64 * self.t1

    def i(self, reliable: bool) -> float:
        return 0.0 if reliable else self.t4

    # -- server non-INVITE (§17.2.2) -----------------------------------------------------
    def j(self, reliable: bool) -> float:
        return 0.0 if reliable else 64 * self.t1

    # -- RFC 6026 "Accepted" states ------------------------------------------------------
    @property
    def l(self) -> float:  # noqa: E743 - the RFC's name
        return 64 * self.t1

    @property
    def m(self) -> float:
        return 64 * self.t1

    def capped_double(self, interval: float) -> float:
        """The next E/G interval: ``min(2 * interval, T2)`` (§17.1.2.2, §17.2.1)."""
        return min(2 * interval, self.t2)
