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

import binascii
import os
import weakref
from typing import Protocol

__all__ = ["IdGenerator", "RandomIds", "MAGIC_COOKIE", "MAX_TOKEN_BITS"]

#: RFC 3261 §8.1.1.7: every branch we generate begins with this cookie.
MAGIC_COOKIE = "z9hG4bK"

#: Upper bound for :meth:`IdGenerator.token`; more would only make messages larger.
MAX_TOKEN_BITS = 1024

# Entropy of each identifier kind. Branches and tokens are hex (two characters a byte).
_BRANCH_BYTES = 12  # 96 bits: collisions are negligible at any plausible transaction rate.
# Tags and Call-IDs outlive their message: the gateway holds 100,000 subscription dialogs,
# each keeping its local tag (also the subscription's id) and, for those it created, its
# Call-ID. They are base64url (six bits a character; "-" and "_" are token and word
# characters, RFC 3261 §25.1), and their lengths keep each string in a smaller CPython
# allocation class: a string of up to 15 ASCII characters takes 64 bytes (16 take 80), and
# one of 17 to 31 takes 80 (32 take 96).
_TAG_CHARS = 15  # 90 bits, above the 32 bits §19.3 requires (was 64 bits in 16 hex).
_CALL_ID_CHARS = 22  # 132 bits, above a UUID's 128.
#: base64 -> base64url (RFC 4648 §5).
_URLSAFE = bytes.maketrans(b"+/", b"-_")


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


#: Bytes drawn from the operating system's CSPRNG at a time. Every relayed message needs two
#: or three identifiers; one ``getrandom`` call per identifier is a system call each, this
#: buffer makes it one per ~200 identifiers. The bytes are the same ``os.urandom`` output
#: :mod:`secrets` uses, handed out once each; a forked child starts with an empty buffer.
_RANDOM_BUFFER_BYTES = 4096

# Every live RandomIds, so that a fork can empty their buffers (a child must never hand out
# the identifiers its parent also hands out).
_generators: weakref.WeakSet[RandomIds] = weakref.WeakSet()


class RandomIds:
    """:class:`IdGenerator` backed by the OS CSPRNG (``os.urandom``, as :mod:`secrets`)."""

    __slots__ = ("_buffer", "_offset", "__weakref__")

    def __init__(self) -> None:
        self._buffer = b""
        self._offset = 0
        _generators.add(self)

    def _draw(self, nbytes: int) -> bytes:
        offset = self._offset
        end = offset + nbytes
        if end > len(self._buffer):
            self._buffer = os.urandom(max(_RANDOM_BUFFER_BYTES, nbytes))
            offset, end = 0, nbytes
        self._offset = end
        return self._buffer[offset:end]

    def _hex(self, nbytes: int) -> str:
        return self._draw(nbytes).hex()

    def _b64(self, nchars: int) -> str:
        """``nchars`` base64url characters, 6 random bits each."""
        encoded = binascii.b2a_base64(self._draw((6 * nchars + 7) // 8), newline=False)
        return encoded[:nchars].translate(_URLSAFE).decode("ascii")

    def _forget(self) -> None:
        self._buffer = b""
        self._offset = 0

    def branch(self) -> str:
        return MAGIC_COOKIE + self._hex(_BRANCH_BYTES)

    def tag(self) -> str:
        return self._b64(_TAG_CHARS)

    def call_id(self) -> str:
        return self._b64(_CALL_ID_CHARS)

    def token(self, nbits: int = 64) -> str:
        if not 1 <= nbits <= MAX_TOKEN_BITS:
            raise ValueError(f"token size must be 1..{MAX_TOKEN_BITS} bits, not {nbits}")
        return self._hex((nbits + 7) // 8)


def _after_fork_in_child() -> None:
    for generator in list(_generators):
        generator._forget()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
