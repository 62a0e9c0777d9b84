"""Answers to OPTIONS (RFC 3261 §11.2): a pure builder, no state.

The endpoint does not answer OPTIONS by itself: the runtime does, because it may attach
the provisioning document as the body (interworking reference §1.6, checklist item 75).
This module gives it two tools:

* :func:`options_response` builds the response from the request and a
  :class:`Capabilities` value: Allow, Accept, Accept-Encoding, Accept-Language and
  Supported (§11.2: they "SHOULD be present in a 200 (OK) response to an OPTIONS
  request"), and Allow-Events (RFC 6665 §4.4.4: a notifier that supports event packages
  lists them in Allow-Events of its OPTIONS responses).
* :func:`accepts` tells whether the request's Accept admits a body type. §11.2: the body
  type is chosen from the request's Accept; without an Accept header the default is
  ``application/sdp`` (§20.1: "If no Accept header field is present, the server SHOULD
  assume a default value of application/sdp").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .build import make_response
from .errors import LocalSipError
from .message import Request, Response

__all__ = ["Capabilities", "GATEWAY_CAPABILITIES", "options_response", "accepts"]

# RFC 3261 §25.1 token characters; method names, option tags and event packages are tokens.
_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")
# Media types may also carry parameters (``type/subtype;q=...``), quoted strings excluded;
# CR, LF and comma are what matter: they would split or inject header fields.
_FORBIDDEN_IN_VALUE = frozenset("\r\n,\x00")


def _check_tokens(field: str, values: tuple[str, ...], *, slash: bool = False) -> None:
    for value in values:
        if not value:
            raise LocalSipError(f"empty value in {field}")
        if slash:
            if any(c in _FORBIDDEN_IN_VALUE for c in value) or "/" not in value:
                raise LocalSipError(f"{field}: {value!r} is not a media type")
        elif not all(c in _TOKEN_CHARS for c in value):
            raise LocalSipError(f"{field}: {value!r} is not a token (RFC 3261 §25.1)")


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What the gateway tells an OPTIONS requester it supports.

    Each field is a list of header values; an empty list leaves the header out, except
    ``accept``, whose empty value means "no body types at all" (§20.1: "An empty Accept
    header field means that no formats are acceptable"), not "application/sdp".
    """

    #: Methods (Allow, §20.5).
    allow: tuple[str, ...]
    #: Body media types (Accept, §20.1).
    accept: tuple[str, ...] = ()
    #: Content codings (Accept-Encoding, §20.2).
    accept_encoding: tuple[str, ...] = ("identity",)
    #: Languages for reason phrases, bodies, session descriptions (Accept-Language, §20.3).
    accept_language: tuple[str, ...] = ("en",)
    #: Option tags (Supported, §20.37).
    supported: tuple[str, ...] = ()
    #: Event packages (Allow-Events, RFC 6665 §7.2.2, §4.4.4).
    allow_events: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_tokens("Allow", self.allow)
        _check_tokens("Accept", self.accept, slash=True)
        _check_tokens("Accept-Encoding", self.accept_encoding)
        _check_tokens("Accept-Language", self.accept_language)
        _check_tokens("Supported", self.supported)
        _check_tokens("Allow-Events", self.allow_events)


#: The gateway's own capability set: pager-mode IM (RFC 3428), MSRP chat sessions via
#: INVITE (RFC 4975, RFC 7573), presence (RFC 3856, RFC 8048).
GATEWAY_CAPABILITIES = Capabilities(
    allow=("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "MESSAGE", "SUBSCRIBE", "NOTIFY"),
    accept=(
        "application/sdp",
        "text/plain",
        "message/cpim",
        "application/pidf+xml",
        "application/im-iscomposing+xml",
    ),
    accept_encoding=("identity",),
    accept_language=("en",),
    supported=(),
    allow_events=("presence",),
)


def options_response(
    request: Request,
    caps: Capabilities,
    *,
    to_tag: str | None,
    body: bytes = b"",
    content_type: str | None = None,
    status: int = 200,
    extra_headers: Iterable[tuple[str, str]] = (),
) -> Response:
    """Build the response to ``request`` (an OPTIONS) advertising ``caps``.

    ``status`` is 200 unless the TU would have refused an INVITE (§11.2: "The response
    code chosen MUST be the same that would have been chosen had the request been an
    INVITE"); the capability headers are written for any 2xx only. ``to_tag`` follows
    §8.2.6.2 (a UAS adds one if the request had none). A ``body`` needs its
    ``content_type``; check with :func:`accepts` that the requester takes it.
    """
    if request.method != "OPTIONS":
        raise LocalSipError(f"options_response() answers OPTIONS, not {request.method}")
    if body and not content_type:
        raise LocalSipError("a body needs a Content-Type (RFC 3261 §20.15)")
    if content_type is not None and any(c in _FORBIDDEN_IN_VALUE - {","} for c in content_type):
        raise LocalSipError(f"bad Content-Type {content_type!r}")
    headers: list[tuple[str, str]] = []
    if 200 <= status < 300:
        headers.append(("Allow", ", ".join(caps.allow)))
        headers.append(("Accept", ", ".join(caps.accept)))
        if caps.accept_encoding:
            headers.append(("Accept-Encoding", ", ".join(caps.accept_encoding)))
        if caps.accept_language:
            headers.append(("Accept-Language", ", ".join(caps.accept_language)))
        if caps.supported:
            headers.append(("Supported", ", ".join(caps.supported)))
        if caps.allow_events:
            headers.append(("Allow-Events", ", ".join(caps.allow_events)))
    headers.extend(extra_headers)
    if body:
        assert content_type is not None
        headers.append(("Content-Type", content_type))
    return make_response(request, status, to_tag=to_tag, headers=headers, body=body)


def _media_range(value: str) -> tuple[str, str, float]:
    """Split one Accept element into (type, subtype, q); q defaults to 1."""
    parts = value.split(";")
    media = parts[0].strip().lower()
    q = 1.0
    for param in parts[1:]:
        name, _, pval = param.partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(pval.strip())
            except ValueError:
                q = 0.0  # an unreadable weight admits nothing (RFC 3261 §20.1 via RFC 2616)
    mtype, _, subtype = media.partition("/")
    return mtype.strip(), subtype.strip(), q


def accepts(request: Request, media_type: str) -> bool:
    """True if ``request``'s Accept admits ``media_type`` (wildcards and q=0 honoured).

    With no Accept header the default is ``application/sdp`` (§11.2, §20.1); an empty
    Accept header admits nothing.
    """
    lines = request.headers.get_lines("Accept")
    wanted_type, _, wanted_sub = media_type.split(";")[0].strip().lower().partition("/")
    if not lines:
        return (wanted_type, wanted_sub) == ("application", "sdp")
    best: tuple[int, float] | None = None  # (specificity, q) of the most specific match
    for value in request.headers.get_all("Accept"):
        mtype, subtype, q = _media_range(value)
        if mtype == "*" and subtype == "*":
            specificity = 0
        elif mtype == wanted_type and subtype == "*":
            specificity = 1
        elif mtype == wanted_type and subtype == wanted_sub:
            specificity = 2
        else:
            continue
        if best is None or specificity > best[0]:
            best = (specificity, q)
    return best is not None and best[1] > 0
