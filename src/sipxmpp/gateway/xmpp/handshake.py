"""XEP-0114 §3: the component handshake digest.

After the server's stream header (which carries the stream ID), the component proves that it
knows the shared secret by sending ``<handshake>`` with the lowercase hexadecimal SHA-1 of the
stream ID concatenated with the secret. The XEP's example: stream ID ``3BF96D32`` and secret
``test`` give ``aaee83c26aeeafcbabeabfcbcd50df997e0a2a1e``.
"""

from __future__ import annotations

import hashlib

__all__ = ["handshake_digest"]


def handshake_digest(stream_id: str, secret: str) -> str:
    """Lowercase hex SHA-1 of ``stream_id + secret`` (UTF-8), the ``<handshake/>`` content."""
    # XEP-0114 §3: SHA-1 is what the protocol defines; it is not used here for security margin.
    return hashlib.sha1((stream_id + secret).encode("utf-8"), usedforsecurity=False).hexdigest()
