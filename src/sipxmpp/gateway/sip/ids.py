"""Identifier generation for the SIP core, injected so tests can be deterministic.

The core never calls a random source itself (design practice 12): it is given an
:class:`IdGenerator`. :class:`RandomIds` is the production implementation; tests use a
counting one (``tests/support/clock.py``).

RFC 3261 requirements the generators satisfy:

* branch: unique in space and time for every transaction we originate, starting with the
  magic cookie ``z9hG4bK`` (§8.1.1.7);
* tag: globally unique and cryptographically random with at least 32 bits (§19.3);
* Call-ID: globally unique over space and time, cryptographically random recommended
  (§8.1.1.4);
* token: opaque random identifiers for other protocols (MSRP transaction ids, XMPP ids).
"""

from __future__ import annotations

import secrets
from typing import Protocol

__all__ = ["IdGenerator", "RandomIds", "MAGIC_COOKIE", "MAX_TOKEN_BITS"]

#: RFC 3261 §8.1.1.7: every branch we generate begins with this cookie.
MAGIC_COOKIE = "z9hG4bK"

#: Upper bound for :meth:`IdGenerator.token`; more would only make messages larger.
MAX_TOKEN_BITS = 1024

# Entropy of each identifier kind, in bytes (hex encoded: two characters per byte).
_BRANCH_BYTES = 12  # 96 bits: collisions are negligible at any plausible transaction rate.
_TAG_BYTES = 8  # 64 bits, above the 32 bits §19.3 requires.
_CALL_ID_BYTES = 16  # 128 bits, the size of a UUID.


class IdGenerator(Protocol):
    """Source of the identifiers the SIP core puts on the wire."""

    def branch(self) -> str:
        """A new Via branch, starting with ``z9hG4bK``."""
        ...

    def tag(self) -> str:
        """A new From/To tag."""
        ...

    def call_id(self) -> str:
        """A new Call-ID."""
        ...

    def token(self, nbits: int = 64) -> str:
        """An opaque random token carrying at least ``nbits`` bits."""
        ...


class RandomIds:
    """:class:`IdGenerator` backed by :mod:`secrets` (cryptographically random)."""

    __slots__ = ()

    def branch(self) -> str:
        return MAGIC_COOKIE + secrets.token_hex(_BRANCH_BYTES)

    def tag(self) -> str:
        return secrets.token_hex(_TAG_BYTES)

    def call_id(self) -> str:
        return secrets.token_hex(_CALL_ID_BYTES)

    def token(self, nbits: int = 64) -> str:
        if not 1 <= nbits <= MAX_TOKEN_BITS:
            raise ValueError(f"token size must be 1..{MAX_TOKEN_BITS} bits, not {nbits}")
        return secrets.token_hex((nbits + 7) // 8)
