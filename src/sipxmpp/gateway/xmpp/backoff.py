"""Reconnection delays: exponential backoff with jitter.

After a failed attempt or a lost stream the edge waits ``backoff_delay(n, ...)`` before attempt
``n + 1``. The base delay doubles from ``minimum`` up to ``maximum``; the delay is drawn from
``[base / 2, base)`` ("equal jitter"), so gateways restarted together do not reconnect in
lockstep, and no delay is shorter than half the configured minimum.
"""

from __future__ import annotations

__all__ = ["backoff_delay"]

#: Doubling stops long before this; the cap only keeps ``2.0 ** attempt`` finite.
_MAX_EXPONENT = 64


def backoff_delay(attempt: int, minimum: float, maximum: float, rand: float) -> float:
    """Delay before the next attempt, after ``attempt`` consecutive failures (0 for the first).

    ``rand`` is a uniform draw from ``[0, 1)`` (injected so tests are deterministic).
    """
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    if not 0.0 <= rand < 1.0:
        raise ValueError("rand must be in [0, 1)")
    if minimum <= 0.0 or maximum < minimum:
        raise ValueError("need 0 < minimum <= maximum")
    base = min(maximum, minimum * 2.0 ** min(attempt, _MAX_EXPONENT))
    return base / 2.0 + rand * base / 2.0
