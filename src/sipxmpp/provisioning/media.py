"""``Accept`` header negotiation, shared by the HTTP server and the SIP OPTIONS channel.

HTTP (RFC 9110 §12.5.1) and SIP (RFC 3261 §20.1, which reuses the HTTP syntax) carry the
same ``Accept`` grammar: comma-separated media ranges with an optional ``q`` weight.

* :func:`negotiate` picks the best of the representations we offer: the most specific
  matching range gives each offer its weight (RFC 9110 §12.5.1), ``q=0`` means "not
  acceptable", ties go to the server's order. No header (or one with no usable range)
  accepts anything.
* :func:`explicitly_accepts` answers the SIP question: does this OPTIONS request list our
  provisioning type *by name*? (RFC 3261 §11.2: the body type follows ``Accept``; a plain
  OPTIONS, or one that only says ``*/*``, gets the usual answer, not our document.)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .constants import MEDIA_TYPE_JSON, MEDIA_TYPE_XML

__all__ = [
    "MediaRange",
    "parse_accept",
    "negotiate",
    "explicitly_accepts",
    "OFFERED_TYPES",
    "MAX_ACCEPT_LENGTH",
    "MAX_ACCEPT_RANGES",
]

#: What the HTTP channel serves, in order of preference (XML is the format of reference).
#: The generic XML/JSON types are served the same bytes for clients that only know them.
OFFERED_TYPES: tuple[str, ...] = (
    MEDIA_TYPE_XML,
    MEDIA_TYPE_JSON,
    "application/xml",
    "application/json",
)

#: Longest Accept header we look at; aiohttp already caps a header line at 8190 bytes,
#: and real clients send < 300 bytes. Longer headers are cut, not refused.
MAX_ACCEPT_LENGTH = 4096
#: Most media ranges considered from one header (bounds the matching work).
MAX_ACCEPT_RANGES = 64

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_RANGE_RE = re.compile(rf"\s*({_TOKEN})/({_TOKEN})\s*\Z")
_QVALUE_RE = re.compile(r"(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)\Z")


@dataclass(frozen=True, slots=True)
class MediaRange:
    """One element of an Accept header."""

    type: str
    subtype: str
    q: float = 1.0

    def matches(self, media_type: str) -> int:
        """Specificity of the match with ``media_type`` (3 exact, 2 ``type/*``, 1 ``*/*``,
        0 no match)."""
        mtype, _, subtype = media_type.lower().partition("/")
        if self.type == "*" and self.subtype == "*":
            return 1
        if self.type != mtype:
            return 0
        if self.subtype == "*":
            return 2
        return 3 if self.subtype == subtype else 0


def parse_accept(header: str) -> tuple[MediaRange, ...]:
    """The well-formed media ranges of ``header``; malformed elements are skipped."""
    ranges: list[MediaRange] = []
    for element in header[:MAX_ACCEPT_LENGTH].split(","):
        if len(ranges) >= MAX_ACCEPT_RANGES:
            break
        media, *params = element.split(";")
        match = _RANGE_RE.match(media)
        if match is None:
            continue
        mtype, subtype = match.group(1).lower(), match.group(2).lower()
        if mtype == "*" and subtype != "*":
            continue
        q = 1.0
        valid = True
        for param in params:
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                value = value.strip()
                if not _QVALUE_RE.match(value):
                    valid = False
                    break
                q = float(value)
        if valid:
            ranges.append(MediaRange(mtype, subtype, q))
    return tuple(ranges)


def negotiate(accept: str | None, offers: Sequence[str] = OFFERED_TYPES) -> str | None:
    """The offer the client prefers, or None if every offer is unacceptable (HTTP 406)."""
    if not offers:
        return None
    ranges = parse_accept(accept) if accept else ()
    if not ranges:
        return offers[0]
    best: str | None = None
    best_q = 0.0
    for offer in offers:
        specificity, q = 0, 0.0
        for r in ranges:
            s = r.matches(offer)
            if s > specificity:
                specificity, q = s, r.q
        if q > best_q:
            best, best_q = offer, q
    return best


def explicitly_accepts(accept: str | None, media_type: str) -> bool:
    """True if ``accept`` names ``media_type`` itself with a non-zero weight."""
    if not accept:
        return False
    return any(r.matches(media_type) == 3 and r.q > 0 for r in parse_accept(accept))
