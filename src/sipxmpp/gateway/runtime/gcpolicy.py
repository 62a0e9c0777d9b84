"""Garbage-collector policy for high message rates.

At a steady 5,000 msg/s the SIP core holds ~160,000 live server transactions (RFC 3261
Timer J keeps each UDP non-INVITE server transaction for 64*T1 = 32 s), a million or more
GC-tracked objects. CPython's full collections then walk all of them: measured on the
benchmark machine, a pause of about a second, during which nothing is read and SIP peers
retransmit (benchmarks/gc_policy.py, benchmarks/README.md).

The policy: every :data:`FREEZE_INTERVAL` collect the young generations and ``gc.freeze()``
the survivors, so full collections only walk what was allocated since. Reference counting
frees frozen objects as usual; only a reference cycle that becomes garbage while frozen is
left to the cycle collector, so every :data:`THAW_INTERVAL` the frozen set is released and a
full collection runs: memory stays bounded, and the one long pause per interval is absorbed by
SIP retransmission (T1 = 500 ms) and the XMPP stream's buffering.
"""

from __future__ import annotations

import asyncio
import gc

__all__ = ["GcPolicy", "FREEZE_INTERVAL", "THAW_INTERVAL"]

#: Seconds between freezes: short enough that a full collection never walks more than about
#: a second of allocations, long enough that the young collection before each is negligible.
FREEZE_INTERVAL = 1.0

#: Seconds between full collections over everything (frozen objects included), so cycles that
#: became garbage while frozen are reclaimed: ten minutes bounds such garbage to what ten
#: minutes of traffic can leave, at one pause per interval.
THAW_INTERVAL = 600.0


class GcPolicy:
    """Periodic freeze / thaw of the garbage collector's generations on the running loop."""

    def __init__(
        self, freeze_interval: float = FREEZE_INTERVAL, thaw_interval: float = THAW_INTERVAL
    ) -> None:
        self._freeze_interval = freeze_interval
        self._thaw_interval = thaw_interval
        self._handle: asyncio.TimerHandle | None = None
        self._last_thaw = 0.0

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._last_thaw = loop.time()
        self._handle = loop.call_later(self._freeze_interval, self._tick)

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() - self._last_thaw >= self._thaw_interval:
            gc.unfreeze()
            gc.collect()
            self._last_thaw = loop.time()
        else:
            gc.collect(1)
        gc.freeze()
        self._handle = loop.call_later(self._freeze_interval, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        gc.unfreeze()
