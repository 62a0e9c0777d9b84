"""Deterministic time and identifiers for the sans-I/O cores (design practice 12).

``FakeClock`` is a scripted monotonic clock: tests move it by hand (``advance``) or to the
core's next deadline (``advance_to``); nothing ever sleeps. ``CountingIds`` implements the
SIP core's ``IdGenerator`` protocol with counters, so the bytes a test sees are exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["FakeClock", "CountingIds"]


@dataclass
class FakeClock:
    """A monotonic clock the test drives by hand."""

    now: float = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a monotonic clock never goes back")
        self.now += seconds
        return self.now

    def advance_to(self, when: float) -> float:
        """Move to ``when`` (never backwards: an earlier ``when`` leaves the clock alone)."""
        if when > self.now:
            self.now = when
        return self.now


@dataclass
class CountingIds:
    """``IdGenerator`` with counters: ``z9hG4bK<prefix>b1``, ``<prefix>t1``, ...

    ``prefix`` tells two endpoints' identifiers apart in a pair test.
    """

    prefix: str = ""
    _n: dict[str, int] = field(default_factory=dict)

    def _next(self, kind: str) -> int:
        n = self._n.get(kind, 0) + 1
        self._n[kind] = n
        return n

    def branch(self) -> str:
        return f"z9hG4bK{self.prefix}b{self._next('branch')}"

    def tag(self) -> str:
        return f"{self.prefix}t{self._next('tag')}"

    def call_id(self) -> str:
        return f"{self.prefix}c{self._next('call_id')}@test"

    def token(self, nbits: int = 64) -> str:
        if not 1 <= nbits <= 1024:
            raise ValueError(f"token size must be 1..1024 bits, not {nbits}")
        return f"{self.prefix}k{self._next('token')}"
