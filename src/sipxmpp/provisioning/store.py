"""In-memory cache of peer networks' provisioning documents.

The runtime keeps one :class:`PeerRecord` per peer domain: the last validated document,
the channel it came from, and the validators that let it refresh cheaply: the HTTP
``ETag`` (sent back as ``If-None-Match``, a 304 only extends freshness) and the XEP-0115
caps ``ver`` (a presence carrying a different ``ver`` marks the record stale at once).

Pure and synchronous: ``now`` is passed in (monotonic seconds), as in the SIP core.
Memory is bounded by :data:`MAX_PEERS` with least-recently-used eviction.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass, replace

from .model import ProvisioningDocument, normalize_domain

__all__ = [
    "Channel",
    "PeerRecord",
    "PeerDocumentStore",
    "MAX_PEERS",
    "DEFAULT_TTL",
    "MIN_TTL",
    "MAX_TTL",
]

#: Most peer networks remembered. A federation gateway talks to tens or hundreds of
#: networks; 10,000 records of at most 64 KiB source each (far less once parsed) is the
#: memory ceiling an operator can reason about.
MAX_PEERS = 10_000
#: Freshness when the source gave none (HTTP without max-age, SIP OPTIONS, disco).
DEFAULT_TTL = 3600.0
#: Bounds applied to a peer-supplied max-age: at least a minute (a peer saying
#: ``max-age=0`` must not make us poll it in a loop), at most a day (changes propagate).
MIN_TTL = 60.0
MAX_TTL = 86_400.0


class Channel(enum.StrEnum):
    """Where a document was fetched from."""

    HTTP = "http"
    SIP = "sip"
    XMPP = "xmpp"


@dataclass(frozen=True, slots=True)
class PeerRecord:
    """What we know about one peer network."""

    domain: str
    document: ProvisioningDocument
    channel: Channel
    fetched_at: float
    expires_at: float
    #: HTTP entity tag of the document, if it came over HTTP.
    etag: str | None = None
    #: XEP-0115 ``ver`` under which the document was seen, if any.
    caps_ver: str | None = None
    #: Set when a validator says the peer changed; the record is kept for use until refreshed.
    stale: bool = False

    def is_fresh(self, now: float) -> bool:
        """True if the record may be used without asking the peer again."""
        return not self.stale and now < self.expires_at


def _ttl(max_age: float | None) -> float:
    if max_age is None:
        return DEFAULT_TTL
    return min(max(float(max_age), MIN_TTL), MAX_TTL)


class PeerDocumentStore:
    """Peer documents keyed by peer domain (normalised), LRU-bounded.

    Methods taking a ``domain`` raise :class:`ValueError` if it is not a DNS name.
    """

    def __init__(self, max_peers: int = MAX_PEERS) -> None:
        if max_peers < 1:
            raise ValueError("max_peers must be positive")
        self._max = max_peers
        self._records: OrderedDict[str, PeerRecord] = OrderedDict()

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, domain: object) -> bool:
        return isinstance(domain, str) and self._key(domain) in self._records

    @staticmethod
    def _key(domain: str) -> str:
        return normalize_domain(domain)

    def get(self, domain: str) -> PeerRecord | None:
        """The record for ``domain`` (fresh or not), marking it recently used."""
        key = self._key(domain)
        record = self._records.get(key)
        if record is not None:
            self._records.move_to_end(key)
        return record

    def fresh(self, domain: str, now: float) -> ProvisioningDocument | None:
        """The document for ``domain`` if it is fresh at ``now``."""
        record = self.get(domain)
        return record.document if record is not None and record.is_fresh(now) else None

    def put(
        self,
        domain: str,
        document: ProvisioningDocument,
        *,
        now: float,
        channel: Channel,
        etag: str | None = None,
        caps_ver: str | None = None,
        max_age: float | None = None,
    ) -> tuple[PeerRecord, bool]:
        """Store a freshly fetched document; returns the record and whether the document
        differs from the one held before (the runtime logs its decisions again then)."""
        key = self._key(domain)
        previous = self._records.get(key)
        if caps_ver is None and previous is not None and previous.document == document:
            caps_ver = previous.caps_ver
        record = PeerRecord(
            domain=key,
            document=document,
            channel=channel,
            fetched_at=now,
            expires_at=now + _ttl(max_age),
            etag=etag,
            caps_ver=caps_ver,
        )
        self._records[key] = record
        self._records.move_to_end(key)
        while len(self._records) > self._max:
            self._records.popitem(last=False)
        changed = previous is None or previous.document != document
        return record, changed

    def not_modified(
        self, domain: str, *, now: float, max_age: float | None = None
    ) -> PeerRecord | None:
        """Record an HTTP 304: the held document is current again for ``max_age``."""
        record = self.get(domain)
        if record is None:
            return None
        updated = replace(record, fetched_at=now, expires_at=now + _ttl(max_age), stale=False)
        self._records[record.domain] = updated
        return updated

    def etag(self, domain: str) -> str | None:
        """The ETag to send as ``If-None-Match`` when refreshing ``domain``."""
        record = self.get(domain)
        return record.etag if record is not None else None

    def note_caps(self, domain: str, ver: str) -> bool:
        """A presence from ``domain`` announced caps ``ver``.

        Returns True if the held document must be refreshed (no record, or a record seen
        under another ``ver``, which is then marked stale). A record without a known
        ``ver`` (fetched over HTTP or SIP) adopts this one only once a disco#info under
        it is stored, so it also reports True.
        """
        record = self.get(domain)
        if record is None:
            return True
        if record.caps_ver == ver:
            return False
        self._records[record.domain] = replace(record, stale=True)
        return True

    def invalidate(self, domain: str) -> None:
        """Mark ``domain`` stale (kept for use until a refresh succeeds)."""
        record = self.get(domain)
        if record is not None:
            self._records[record.domain] = replace(record, stale=True)

    def remove(self, domain: str) -> None:
        """Forget ``domain``."""
        self._records.pop(self._key(domain), None)

    def domains(self) -> tuple[str, ...]:
        """Known peer domains, least recently used first."""
        return tuple(self._records)

    def due_for_refresh(self, now: float) -> tuple[str, ...]:
        """Domains whose records are stale or expired at ``now``."""
        return tuple(d for d, r in self._records.items() if not r.is_fresh(now))
