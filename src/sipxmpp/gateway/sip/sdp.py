"""SDP for MSRP message streams: parse/serialize (RFC 8866, ex-RFC 4566) and offer/answer.

Theory of operation
-------------------
*Codec.* An SDP body is a list of ``<type>=<value>`` lines (RFC 8866 §5). The session part
runs up to the first ``m=`` line; each ``m=`` starts a media section. :func:`parse_sdp` keeps
every field the grammar defines in a frozen dataclass and :func:`serialize_sdp` writes them
back in the RFC 8866 §5 order (v o s i u e p c b t r z k a, then per media m i c b k a), so
``parse_sdp(serialize_sdp(d)) == d``. Malformed input raises :class:`SdpSyntaxError`
(``RemoteSipError``, status hint 400); an unknown line type makes the whole description
unusable (§5: "a parser MUST ignore a session description with a type letter it does not
understand"), hint 488.

*MSRP media (RFC 4975 §8, RFC 6135, RFC 4145).* A chat stream is
``m=message <port> TCP/MSRP *`` (or ``TCP/TLS/MSRP``) with ``a=path`` (our MSRP URIs, the
endpoint's own URI last; it MUST carry a port), ``a=accept-types`` (mandatory),
``a=accept-wrapped-types``, ``a=max-size`` and ``a=setup`` (RFC 6135: who opens the TCP
connection). The c-line and port mirror the last path URI and are otherwise ignored (RFC 4975
§8.1), except that an ``active`` endpoint writes port 9 on its m-line (RFC 4145 §4.1, RFC 6135
§4.2.2). RFC 6135 §4.4: ``a=connection`` is never sent and is ignored when received.

*Offer/answer (RFC 3264) for one message stream.* :func:`make_offer` builds our offer.
:func:`answer_offer` takes the first usable ``m=message`` section of a peer's offer, rejects
every other section with port 0 (RFC 3264 §6), and answers with the accept-types both sides
understand; when nothing is usable it raises :class:`SdpNegotiationError` whose status
hint, 488 Not Acceptable Here, is the SIP response to send (RFC 3264 §6, RFC 3261 §21.4.26).
:func:`parse_answer` checks a peer's answer to our offer. Connection roles follow RFC 6135
§4.2 and RFC 4145 §4.1. Our offers and answers always carry ``a=setup`` (RFC 6135 §4.2.1);
an offer says ``actpass`` (or ``active`` when our listener is not reachable), never
``passive`` or ``holdconn`` (§4.2.2, §4.2.1). A received ``holdconn`` is ignored, as if no
``a=setup`` were present (§4.2.1), and an absent one means ``active`` in an offer and
``passive`` in an answer (RFC 4145 §4.1 defaults, which are RFC 4975 §5.4's "the offerer
connects"):

===============================  ==============  ==============================
offer a=setup                    we answer       who connects
===============================  ==============  ==============================
absent, ``holdconn``             ``passive``     offerer
``actpass``                      ``passive``     offerer (``active``, we, if we prefer)
``active``                       ``passive``     offerer
``passive``                      ``active``      answerer (us)
===============================  ==============  ==============================

This module imports only the standard library and :mod:`sipxmpp.gateway.sip.errors`; MSRP
URIs are kept as text here and parsed by the MSRP core.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from .errors import LocalSipError, RemoteSipError

__all__ = [
    "SdpSyntaxError",
    "SdpNegotiationError",
    "Origin",
    "ConnectionData",
    "Timing",
    "Attribute",
    "MediaDescription",
    "SessionDescription",
    "Setup",
    "MsrpMediaParams",
    "NegotiatedStream",
    "parse_sdp",
    "serialize_sdp",
    "msrp_params",
    "make_offer",
    "answer_offer",
    "parse_answer",
    "intersect_types",
    "MSRP_PROTOS",
    "MAX_SDP_SIZE",
    "MAX_SDP_LINES",
    "MAX_MEDIA_SECTIONS",
    "ACTIVE_MEDIA_PORT",
]

#: Largest SDP body we parse. A chat offer is ~300 octets and an offer with audio, video and
#: message streams a few KiB; 16 KiB bounds parsing work per INVITE.
MAX_SDP_SIZE = 16 * 1024
#: Most lines per body: as above, generous for real offers, bounded for hostile ones.
MAX_SDP_LINES = 512
#: Most m= sections; real offers carry a handful.
MAX_MEDIA_SECTIONS = 32
#: Most URIs in a=path: the endpoint plus relays (RFC 4976); mirrors the MSRP core's limit.
MAX_PATH_URIS = 16

#: RFC 4145 §4.1: the m-line port of an ``a=setup:active`` endpoint (the discard port).
ACTIVE_MEDIA_PORT = 9

#: RFC 4975 §8.1 (TCP) and §8.1/§14 (TLS) transport protocols for m=message.
MSRP_PROTOS = ("TCP/MSRP", "TCP/TLS/MSRP")

_LINE_RE = re.compile(r"([a-z])=(.*)")
_TOKEN = r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+"
_TOKEN_RE = re.compile(_TOKEN)
_DIGITS_RE = re.compile(r"[0-9]{1,20}")
_MEDIA_RE = re.compile(
    rf"({_TOKEN}) ([0-9]{{1,5}})(?:/([0-9]{{1,5}}))? ({_TOKEN}(?:/{_TOKEN})*)((?: \S+)+)"
)
# RFC 4975 §8.6: accept-type = register-type / "*"; register-type = type "/" (subtype / "*")
_ACCEPT_TYPE_RE = re.compile(rf"\*|{_TOKEN}/(?:{_TOKEN}|\*)")
_PATH_URI_RE = re.compile(
    r"(?i:msrps?)://(?:[^@/;\s]*@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[^:/;\s\[\]]+):(?P<port>[0-9]{1,5})"
    r"(?:/[^;\s]*)?;\S+"
)
_ATTR_NAME_RE = re.compile(_TOKEN)


class SdpSyntaxError(RemoteSipError):
    """The SDP body is malformed (answer the request 400)."""

    status_hint = 400
    reason_hint = "Bad Request"


class SdpNegotiationError(RemoteSipError):
    """The SDP is well formed but offers nothing we can use (answer 488, RFC 3264 §6)."""

    status_hint = 488
    reason_hint = "Not Acceptable Here"


# -- model -------------------------------------------------------------------------------


def _check_value(value: str, what: str) -> None:
    if "\r" in value or "\n" in value or "\x00" in value:
        raise LocalSipError(f"control character in SDP {what}")


@dataclass(frozen=True, slots=True)
class Origin:
    """``o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>``."""

    username: str
    session_id: str
    session_version: str
    address: str
    nettype: str = "IN"
    addrtype: str = "IP4"

    def __post_init__(self) -> None:
        for part in (self.username, self.nettype, self.addrtype, self.address):
            if not part or " " in part:
                raise LocalSipError(f"invalid o= field {part!r}")
            _check_value(part, "o= line")
        if not _DIGITS_RE.fullmatch(self.session_id) or not _DIGITS_RE.fullmatch(
            self.session_version
        ):
            raise LocalSipError("o= sess-id and sess-version are digits (RFC 8866 §5.2)")

    def __str__(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.session_version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@dataclass(frozen=True, slots=True)
class ConnectionData:
    """``c=<nettype> <addrtype> <connection-address>`` (RFC 8866 §5.7)."""

    address: str
    nettype: str = "IN"
    addrtype: str = "IP4"

    def __post_init__(self) -> None:
        for part in (self.nettype, self.addrtype, self.address):
            if not part or " " in part:
                raise LocalSipError(f"invalid c= field {part!r}")
            _check_value(part, "c= line")

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


@dataclass(frozen=True, slots=True)
class Timing:
    """``t=<start> <stop>`` plus its ``r=`` repeat lines (RFC 8866 §5.9-5.10)."""

    start: int = 0
    stop: int = 0
    repeats: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.start < 0 or self.stop < 0:
            raise LocalSipError("t= times are non-negative")
        for repeat in self.repeats:
            _check_value(repeat, "r= line")


@dataclass(frozen=True, slots=True)
class Attribute:
    """``a=<name>`` or ``a=<name>:<value>`` (RFC 8866 §5.13)."""

    name: str
    value: str | None = None

    def __post_init__(self) -> None:
        if not _ATTR_NAME_RE.fullmatch(self.name):
            raise LocalSipError(f"invalid SDP attribute name {self.name!r}")
        if self.value is not None:
            _check_value(self.value, "attribute")

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


def _first(attributes: tuple[Attribute, ...], name: str) -> Attribute | None:
    for attribute in attributes:
        if attribute.name == name:
            return attribute
    return None


@dataclass(frozen=True, slots=True)
class MediaDescription:
    """One ``m=`` section (RFC 8866 §5.14) and its lines."""

    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    port_count: int | None = None
    title: str | None = None
    connection: ConnectionData | None = None
    bandwidths: tuple[str, ...] = ()
    key: str | None = None
    attributes: tuple[Attribute, ...] = ()

    def __post_init__(self) -> None:
        if not _TOKEN_RE.fullmatch(self.media) or not 0 <= self.port <= 65535:
            raise LocalSipError("invalid m= media or port")
        if not re.fullmatch(rf"{_TOKEN}(?:/{_TOKEN})*", self.proto):
            raise LocalSipError(f"invalid m= proto {self.proto!r}")
        if not self.formats or any(not f or re.search(r"\s", f) for f in self.formats):
            raise LocalSipError("m= needs at least one format without spaces")
        for value in (self.title, self.key, *self.bandwidths):
            if value is not None:
                _check_value(value, "media line")

    def attribute(self, name: str) -> str | None:
        """Value of the first ``a=name:value`` (None if absent or valueless)."""
        found = _first(self.attributes, name)
        return None if found is None else found.value

    def has_attribute(self, name: str) -> bool:
        return _first(self.attributes, name) is not None


@dataclass(frozen=True, slots=True)
class SessionDescription:
    """A whole SDP body (RFC 8866 §5)."""

    origin: Origin
    session_name: str = "-"
    version: int = 0
    info: str | None = None
    uri: str | None = None
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    connection: ConnectionData | None = None
    bandwidths: tuple[str, ...] = ()
    times: tuple[Timing, ...] = (Timing(),)
    zone: str | None = None
    key: str | None = None
    attributes: tuple[Attribute, ...] = ()
    media: tuple[MediaDescription, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.version != 0:
            raise LocalSipError("only SDP version 0 exists (RFC 8866 §5.1)")
        if not self.session_name:
            raise LocalSipError("s= must not be empty (RFC 8866 §5.3)")
        if not self.times:
            raise LocalSipError("at least one t= line is required (RFC 8866 §5.9)")
        for value in (
            self.session_name,
            self.info,
            self.uri,
            self.zone,
            self.key,
            *self.emails,
            *self.phones,
            *self.bandwidths,
        ):
            if value is not None:
                _check_value(value, "session line")

    def attribute(self, name: str) -> str | None:
        found = _first(self.attributes, name)
        return None if found is None else found.value


# -- codec -------------------------------------------------------------------------------


def _syntax(msg: str) -> SdpSyntaxError:
    return SdpSyntaxError(msg, 400, "Bad Request")


def _parse_connection(value: str) -> ConnectionData:
    parts = value.split(" ")
    if len(parts) != 3:
        raise _syntax(f"malformed c= line {value!r}")
    return ConnectionData(parts[2], parts[0], parts[1])


def _parse_attribute(value: str) -> Attribute:
    name, colon, rest = value.partition(":")
    return Attribute(name, rest if colon else None)


def _parse_media(value: str) -> MediaDescription:
    m = _MEDIA_RE.fullmatch(value)
    if m is None:
        raise _syntax(f"malformed m= line {value!r}")
    port = int(m.group(2))
    count = m.group(3)
    return MediaDescription(
        media=m.group(1),
        port=port,
        port_count=int(count) if count is not None else None,
        proto=m.group(4),
        formats=tuple(m.group(5).split(" ")[1:]),
    )


def parse_sdp(data: bytes | str) -> SessionDescription:
    """Parse an SDP body; raises :class:`SdpSyntaxError` (400) or
    :class:`SdpNegotiationError` (488, unknown line type)."""
    if len(data) > MAX_SDP_SIZE:
        raise SdpSyntaxError("SDP body too large", 413, "Request Entity Too Large")
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise _syntax("SDP is not UTF-8 (RFC 8866 §5)") from None
    else:
        text = data
    # RFC 8866 §5: lines end with CRLF, but parsers should accept a bare LF too.
    lines = text.split("\n")
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    while lines and lines[-1] == "":
        lines.pop()
    if len(lines) > MAX_SDP_LINES:
        raise _syntax("too many SDP lines")
    try:
        return _parse_lines(lines)
    except LocalSipError as exc:
        raise _syntax(exc.msg) from None
    except ValueError as exc:
        raise _syntax(str(exc)) from None


@dataclass(slots=True)
class _MediaBuilder:
    base: MediaDescription
    title: str | None = None
    connection: ConnectionData | None = None
    key: str | None = None
    bandwidths: list[str] = field(default_factory=list)
    attributes: list[Attribute] = field(default_factory=list)

    def add(self, kind: str, value: str) -> None:
        if kind == "i":
            if self.title is not None:
                raise _syntax("duplicate i= line in a media section")
            self.title = value
        elif kind == "k":
            if self.key is not None:
                raise _syntax("duplicate k= line in a media section")
            self.key = value
        elif kind == "c":
            if self.connection is not None:
                raise _syntax("more than one c= line in a media section")
            self.connection = _parse_connection(value)
        elif kind == "b":
            self.bandwidths.append(value)
        elif kind == "a":
            self.attributes.append(_parse_attribute(value))
        elif kind in "vosuepztr":
            raise _syntax(f"{kind}= line inside a media section (RFC 8866 §5)")
        else:
            raise SdpNegotiationError(f"unknown SDP line type {kind}=", 488)

    def build(self) -> MediaDescription:
        base = self.base
        return MediaDescription(
            media=base.media,
            port=base.port,
            port_count=base.port_count,
            proto=base.proto,
            formats=base.formats,
            title=self.title,
            connection=self.connection,
            bandwidths=tuple(self.bandwidths),
            key=self.key,
            attributes=tuple(self.attributes),
        )


def _parse_lines(lines: list[str]) -> SessionDescription:
    parsed: list[tuple[str, str]] = []
    for line in lines:
        m = _LINE_RE.fullmatch(line)
        if m is None:
            raise _syntax(f"malformed SDP line {line[:60]!r} (RFC 8866 §5: <type>=<value>)")
        parsed.append((m.group(1), m.group(2)))
    if not parsed or parsed[0] != ("v", "0"):
        raise _syntax("SDP must start with v=0 (RFC 8866 §5.1)")
    session: dict[str, str] = {}
    emails: list[str] = []
    phones: list[str] = []
    bandwidths: list[str] = []
    times: list[Timing] = []
    attributes: list[Attribute] = []
    media: list[MediaDescription] = []
    current: _MediaBuilder | None = None
    for kind, value in parsed[1:]:
        if kind == "m":
            if current is not None:
                media.append(current.build())
            if len(media) >= MAX_MEDIA_SECTIONS:
                raise _syntax("too many m= sections")
            current = _MediaBuilder(_parse_media(value))
            continue
        if current is not None:
            current.add(kind, value)
            continue
        if kind in ("o", "s", "i", "u", "c", "z", "k"):
            if kind in session:
                raise _syntax(f"duplicate {kind}= line")
            session[kind] = value
        elif kind == "e":
            emails.append(value)
        elif kind == "p":
            phones.append(value)
        elif kind == "b":
            bandwidths.append(value)
        elif kind == "t":
            parts = value.split(" ")
            if len(parts) != 2 or not all(_DIGITS_RE.fullmatch(p) for p in parts):
                raise _syntax(f"malformed t= line {value!r}")
            times.append(Timing(int(parts[0]), int(parts[1])))
        elif kind == "r":
            if not times:
                raise _syntax("r= line before any t= line")
            last = times[-1]
            times[-1] = Timing(last.start, last.stop, (*last.repeats, value))
        elif kind == "a":
            attributes.append(_parse_attribute(value))
        elif kind == "v":
            raise _syntax("duplicate v= line")
        else:
            raise SdpNegotiationError(f"unknown SDP line type {kind}=", 488)
    if current is not None:
        media.append(current.build())
    if "o" not in session or "s" not in session or not times:
        raise _syntax("o=, s= and t= are mandatory (RFC 8866 §5)")
    o_parts = session["o"].split(" ")
    if len(o_parts) != 6:
        raise _syntax(f"malformed o= line {session['o']!r}")
    return SessionDescription(
        origin=Origin(o_parts[0], o_parts[1], o_parts[2], o_parts[5], o_parts[3], o_parts[4]),
        session_name=session["s"],
        info=session.get("i"),
        uri=session.get("u"),
        emails=tuple(emails),
        phones=tuple(phones),
        connection=_parse_connection(session["c"]) if "c" in session else None,
        bandwidths=tuple(bandwidths),
        times=tuple(times),
        zone=session.get("z"),
        key=session.get("k"),
        attributes=tuple(attributes),
        media=tuple(media),
    )


def serialize_sdp(sdp: SessionDescription) -> bytes:
    """Write the description in RFC 8866 §5 order with CRLF line ends."""
    lines = [f"v={sdp.version}", f"o={sdp.origin}", f"s={sdp.session_name}"]
    if sdp.info is not None:
        lines.append(f"i={sdp.info}")
    if sdp.uri is not None:
        lines.append(f"u={sdp.uri}")
    lines += [f"e={e}" for e in sdp.emails]
    lines += [f"p={p}" for p in sdp.phones]
    if sdp.connection is not None:
        lines.append(f"c={sdp.connection}")
    lines += [f"b={b}" for b in sdp.bandwidths]
    for timing in sdp.times:
        lines.append(f"t={timing.start} {timing.stop}")
        lines += [f"r={r}" for r in timing.repeats]
    if sdp.zone is not None:
        lines.append(f"z={sdp.zone}")
    if sdp.key is not None:
        lines.append(f"k={sdp.key}")
    lines += [f"a={a}" for a in sdp.attributes]
    for media in sdp.media:
        port = str(media.port) if media.port_count is None else f"{media.port}/{media.port_count}"
        lines.append(f"m={media.media} {port} {media.proto} {' '.join(media.formats)}")
        if media.title is not None:
            lines.append(f"i={media.title}")
        if media.connection is not None:
            lines.append(f"c={media.connection}")
        lines += [f"b={b}" for b in media.bandwidths]
        if media.key is not None:
            lines.append(f"k={media.key}")
        lines += [f"a={a}" for a in media.attributes]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


# -- MSRP media parameters -----------------------------------------------------------------


class Setup(enum.Enum):
    """``a=setup`` values (RFC 4145 §4, used for MSRP by RFC 6135)."""

    ACTIVE = "active"
    PASSIVE = "passive"
    ACTPASS = "actpass"
    HOLDCONN = "holdconn"


_DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_MIRROR = {"sendonly": "recvonly", "recvonly": "sendonly", "sendrecv": "sendrecv"}
_MIRROR["inactive"] = "inactive"


@dataclass(frozen=True, slots=True)
class MsrpMediaParams:
    """The MSRP-relevant content of one ``m=message`` section (RFC 4975 §8)."""

    path: tuple[str, ...]
    """a=path URIs as text; the endpoint's own URI is last (§8.2)."""
    accept_types: tuple[str, ...]
    accept_wrapped_types: tuple[str, ...] = ()
    max_size: int | None = None
    secure: bool = False
    """True for TCP/TLS/MSRP with msrps: URIs."""
    setup: Setup | None = None
    """a=setup, if present; a received ``holdconn`` is read as absent (RFC 6135 §4.2.1)."""
    direction: str | None = None
    """sendrecv/sendonly/recvonly/inactive, if an attribute says so."""

    @property
    def proto(self) -> str:
        return MSRP_PROTOS[1] if self.secure else MSRP_PROTOS[0]


def _split_types(value: str | None, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = tuple(item for item in value.split(" ") if item)
    for item in items:
        if not _ACCEPT_TYPE_RE.fullmatch(item):
            raise SdpNegotiationError(f"malformed {what} entry {item!r} (RFC 4975 §8.6)", 488)
    return items


def _authority(uri: str) -> tuple[str, int]:
    m = _PATH_URI_RE.fullmatch(uri)
    if m is None:
        raise SdpNegotiationError(f"a=path URI {uri!r} is not an MSRP URI with a port", 488)
    return m.group("host"), int(m.group("port"))


def msrp_params(media: MediaDescription) -> MsrpMediaParams:
    """Read the MSRP parameters of an ``m=message`` section; :class:`SdpNegotiationError`
    (488) when it is not a usable MSRP stream (RFC 4975 §8)."""
    if media.media != "message" or media.proto not in MSRP_PROTOS:
        raise SdpNegotiationError(f"not an MSRP stream: m={media.media} {media.proto}", 488)
    path_value = media.attribute("path")
    if not path_value:
        raise SdpNegotiationError("a=path is mandatory (RFC 4975 §8.2)", 488)
    path = tuple(path_value.split())
    if len(path) > MAX_PATH_URIS:
        raise SdpNegotiationError("a=path has too many URIs", 488)
    secure = media.proto == "TCP/TLS/MSRP"
    for uri in path:
        _authority(uri)
        if uri[:6].lower().startswith("msrps:") != secure:
            raise SdpNegotiationError("a=path scheme does not match the m= proto", 488)
    accept = _split_types(media.attribute("accept-types"), "a=accept-types")
    if not accept:
        raise SdpNegotiationError("a=accept-types is mandatory (RFC 4975 §8.6)", 488)
    wrapped = _split_types(media.attribute("accept-wrapped-types"), "a=accept-wrapped-types")
    max_size: int | None = None
    raw_size = media.attribute("max-size")
    if raw_size is not None:
        if not _DIGITS_RE.fullmatch(raw_size):
            raise SdpNegotiationError(f"malformed a=max-size {raw_size!r}", 488)
        max_size = int(raw_size)
    setup: Setup | None = None
    raw_setup = media.attribute("setup")
    if raw_setup is not None:
        try:
            setup = Setup(raw_setup)
        except ValueError:
            raise SdpNegotiationError(f"unknown a=setup value {raw_setup!r}", 488) from None
        if setup is Setup.HOLDCONN:
            # RFC 6135 §4.2.1: "it MUST ignore it and process the message as if it did not
            # contain an a=setup attribute".
            setup = None
    # RFC 6135 §4.4: a received a=connection "MUST" be ignored, so it is not even validated.
    direction = next((a.name for a in media.attributes if a.name in _DIRECTIONS), None)
    return MsrpMediaParams(
        path=path,
        accept_types=accept,
        accept_wrapped_types=wrapped,
        max_size=max_size,
        secure=secure,
        setup=setup,
        direction=direction,
    )


def _message_section(params: MsrpMediaParams) -> MediaDescription:
    if not params.path:
        raise LocalSipError("our a=path needs at least one URI")
    try:
        host, port = _authority(params.path[-1])
    except SdpNegotiationError:
        raise LocalSipError(f"our a=path URI {params.path[-1]!r} needs an explicit port") from None
    if not params.accept_types:
        raise LocalSipError("a=accept-types is mandatory (RFC 4975 §8.6)")
    attributes = [Attribute("accept-types", " ".join(params.accept_types))]
    if params.accept_wrapped_types:
        attributes.append(Attribute("accept-wrapped-types", " ".join(params.accept_wrapped_types)))
    if params.max_size is not None:
        attributes.append(Attribute("max-size", str(params.max_size)))
    attributes.append(Attribute("path", " ".join(params.path)))
    if params.setup is not None:
        attributes.append(Attribute("setup", params.setup.value))
    if params.direction is not None:
        attributes.append(Attribute(params.direction))
    if params.setup is Setup.ACTIVE:
        # RFC 4145 §4.1 (via RFC 6135 §4.2.2): nobody connects to an active endpoint's m-line
        # port, which "SHOULD" then be 9, the discard port. a=path keeps our real URI.
        port = ACTIVE_MEDIA_PORT
    return MediaDescription(
        media="message",
        port=port,
        proto=params.proto,
        formats=("*",),  # RFC 4975 §8.1: the format list is "*"
        connection=ConnectionData(host.strip("[]"), addrtype=_addrtype(host)),
        attributes=tuple(attributes),
    )


def _without_connection(section: MediaDescription) -> MediaDescription:
    """The section with its c= moved to session level (one c= for the whole body)."""
    return MediaDescription(
        section.media, section.port, section.proto, section.formats, attributes=section.attributes
    )


def _addrtype(host: str) -> str:
    return "IP6" if ":" in host else "IP4"


# -- offer/answer ----------------------------------------------------------------------------


def _type_matches(pattern: str, media_type: str) -> bool:
    pattern, media_type = pattern.lower(), media_type.lower()
    if pattern == "*":
        return True
    if pattern.endswith("/*"):
        return media_type.split("/", 1)[0] == pattern[:-2]
    return pattern == media_type


def intersect_types(ours: Sequence[str], theirs: Sequence[str]) -> tuple[str, ...]:
    """Media types both sides accept, in our order of preference (wildcards honoured).

    ``*`` and ``type/*`` on one side admit the other side's matching entries; two wildcards
    keep the narrower one.
    """
    result: list[str] = []

    def add(item: str) -> None:
        if item.lower() not in (r.lower() for r in result):
            result.append(item)

    for mine in ours:
        for other in theirs:
            if _type_matches(other, mine):
                add(mine)
            elif _type_matches(mine, other):
                add(other)
    return tuple(result)


@dataclass(frozen=True, slots=True)
class NegotiatedStream:
    """Outcome of offer/answer for one MSRP message stream."""

    local: MsrpMediaParams
    remote: MsrpMediaParams
    accept_types: tuple[str, ...]
    """Types both sides accept (what may be sent in either direction)."""
    accept_wrapped_types: tuple[str, ...]
    """Types both sides accept inside message/cpim (RFC 4975 §8.6)."""
    active: bool
    """True if we open the TCP/TLS connection and send the binding SEND (RFC 4975 §5.4)."""
    media_index: int
    """Position of the message stream among the m= sections."""

    @property
    def remote_max_size(self) -> int | None:
        """The peer's a=max-size: never send it a larger message (RFC 4975 §8.6)."""
        return self.remote.max_size


def make_offer(
    *,
    path: Sequence[str],
    accept_types: Sequence[str],
    accept_wrapped_types: Sequence[str] = (),
    max_size: int | None = None,
    secure: bool = False,
    setup: Setup = Setup.ACTPASS,
    session_id: int,
    session_version: int = 0,
    username: str = "-",
    session_name: str = "-",
) -> SessionDescription:
    """An offer with one ``m=message`` stream; c= and port mirror the last path URI.

    ``setup`` is ``actpass`` when the listener in ``path`` is reachable by the peer, else
    ``active`` (RFC 6135 §4.2.2); ``passive`` and ``holdconn`` are refused with
    :class:`LocalSipError` (an offer "MUST NOT" use them, §4.2.2 and §4.2.1).
    """
    if setup not in (Setup.ACTPASS, Setup.ACTIVE):
        raise LocalSipError(f"an MSRP offer cannot say a=setup:{setup.value} (RFC 6135 §4.2)")
    params = MsrpMediaParams(
        path=tuple(path),
        accept_types=tuple(accept_types),
        accept_wrapped_types=tuple(accept_wrapped_types),
        max_size=max_size,
        secure=secure,
        setup=setup,
    )
    section = _message_section(params)
    assert section.connection is not None
    return SessionDescription(
        origin=Origin(
            username,
            str(session_id),
            str(session_version),
            section.connection.address,
            addrtype=section.connection.addrtype,
        ),
        session_name=session_name,
        connection=section.connection,
        media=(_without_connection(section),),
    )


def _answer_setup(offered: Setup | None, prefer_active: bool) -> tuple[Setup, bool]:
    """Our a=setup and whether we are active (RFC 6135 §4.2, RFC 4145 §4.1).

    ``offered`` is None when the offer had no a=setup or had ``holdconn`` (ignored, RFC 6135
    §4.2.1): the offerer is then active (RFC 4145 §4.1 default, RFC 4975 §5.4), and our
    answer still states ``passive`` explicitly (RFC 6135 §4.2.1).
    """
    if offered is None or offered is Setup.ACTIVE:
        return Setup.PASSIVE, False
    if offered is Setup.ACTPASS:
        # RFC 6135 §4.2.2: the answerer MAY say active but SHOULD say passive when it is
        # not behind a NAT; the caller knows which applies.
        return (Setup.ACTIVE, True) if prefer_active else (Setup.PASSIVE, False)
    if offered is Setup.PASSIVE:
        return Setup.ACTIVE, True
    raise LocalSipError(f"unexpected a=setup value {offered!r}")  # HOLDCONN is mapped to None


def answer_offer(
    offer: SessionDescription,
    *,
    path: Sequence[str],
    accept_types: Sequence[str],
    accept_wrapped_types: Sequence[str] = (),
    max_size: int | None = None,
    allow_tcp: bool = True,
    allow_tls: bool = True,
    prefer_active: bool = False,
    session_id: int,
    session_version: int = 0,
    username: str = "-",
) -> tuple[SessionDescription, NegotiatedStream]:
    """Answer a peer's offer (RFC 3264 §6) for one MSRP message stream.

    ``path`` is our a=path; its scheme must fit the proto we accept (msrp for TCP/MSRP,
    msrps for TCP/TLS/MSRP): pass the TLS path only when answering a TLS offer is wanted,
    the TCP path otherwise. Raises :class:`SdpNegotiationError` (488) when no m=message
    section is usable or no accept-type is shared.
    """
    ours_secure = bool(path) and path[-1][:6].lower().startswith("msrps:")
    chosen: tuple[int, MsrpMediaParams] | None = None
    reasons: list[str] = []
    for index, media in enumerate(offer.media):
        if chosen is not None or media.port == 0 or media.media != "message":
            continue
        try:
            remote = msrp_params(media)
        except SdpNegotiationError as exc:
            reasons.append(exc.msg)
            continue
        if remote.secure and not allow_tls or not remote.secure and not allow_tcp:
            reasons.append(f"{media.proto} not allowed")
            continue
        if remote.secure != ours_secure:
            reasons.append(f"our a=path does not fit {media.proto}")
            continue
        chosen = (index, remote)
    if chosen is None:
        detail = "; ".join(reasons) or "no m=message stream offered"
        raise SdpNegotiationError(f"no usable MSRP stream: {detail}", 488)
    index, remote = chosen
    accept = intersect_types(accept_types, remote.accept_types)
    wrapped = intersect_types(accept_wrapped_types, remote.accept_wrapped_types)
    if any(t.lower() == "message/cpim" for t in accept) and not wrapped:
        # message/cpim is only useful if both sides agree on what it may wrap (§8.6).
        accept = tuple(t for t in accept if t.lower() != "message/cpim")
    if not accept:
        raise SdpNegotiationError("no accept-types in common (RFC 4975 §8.6)", 488)
    setup, active = _answer_setup(remote.setup, prefer_active)
    direction = None if remote.direction is None else _MIRROR[remote.direction]
    local = MsrpMediaParams(
        path=tuple(path),
        accept_types=accept,
        accept_wrapped_types=wrapped,
        max_size=max_size,
        secure=remote.secure,
        setup=setup,
        direction=direction,
    )
    section = _message_section(local)
    assert section.connection is not None
    ours = _without_connection(section)
    sections = tuple(
        ours
        if i == index
        # RFC 3264 §6: every offered stream appears in the answer; refused ones with port 0.
        else MediaDescription(media.media, 0, media.proto, media.formats)
        for i, media in enumerate(offer.media)
    )
    answer = SessionDescription(
        origin=Origin(
            username,
            str(session_id),
            str(session_version),
            section.connection.address,
            addrtype=section.connection.addrtype,
        ),
        session_name="-",
        connection=section.connection,
        times=offer.times,  # RFC 3264 §6: the answer's t= equals the offer's
        media=sections,
    )
    negotiated = NegotiatedStream(
        local=local,
        remote=remote,
        accept_types=accept,
        accept_wrapped_types=wrapped,
        active=active,
        media_index=index,
    )
    return answer, negotiated


def parse_answer(offer: SessionDescription, answer: SessionDescription) -> NegotiatedStream:
    """Check a peer's answer to our offer; :class:`SdpNegotiationError` if unusable.

    The caller then ends the dialog (ACK and BYE) since an answer cannot be refused.
    """
    if len(answer.media) != len(offer.media):
        raise SdpNegotiationError("the answer must have one m= per offered m= (RFC 3264 §6)", 488)
    for index, (ours, theirs) in enumerate(zip(offer.media, answer.media, strict=True)):
        if ours.media != "message" or ours.port == 0:
            continue
        if theirs.port == 0:
            raise SdpNegotiationError("the peer refused the message stream", 488)
        local = msrp_params(ours)
        remote = msrp_params(theirs)
        if remote.secure != local.secure:
            raise SdpNegotiationError("the answer changed the transport protocol", 488)
        accept = intersect_types(local.accept_types, remote.accept_types)
        if not accept:
            raise SdpNegotiationError("no accept-types in common (RFC 4975 §8.6)", 488)
        wrapped = intersect_types(local.accept_wrapped_types, remote.accept_wrapped_types)
        active = _offerer_active(local.setup, remote.setup)
        return NegotiatedStream(
            local=local,
            remote=remote,
            accept_types=accept,
            accept_wrapped_types=wrapped,
            active=active,
            media_index=index,
        )
    raise SdpNegotiationError("our offer has no message stream", 488)


def _offerer_active(offered: Setup | None, answered: Setup | None) -> bool:
    """Whether we, the offerer, connect (RFC 6135 §4.2; RFC 4145 §4.1).

    None stands for an absent a=setup or a ``holdconn`` (ignored, RFC 6135 §4.2.1); the
    RFC 4145 §4.1 defaults then apply: ``active`` in an offer, ``passive`` in an answer.
    """
    offered = Setup.ACTIVE if offered is None else offered
    answered = Setup.PASSIVE if answered is None else answered
    if answered is Setup.ACTPASS:
        raise SdpNegotiationError("a=setup:actpass is not a valid answer (RFC 4145 §4.1)", 488)
    if answered is Setup.ACTIVE:
        if offered is Setup.ACTIVE:
            raise SdpNegotiationError("both sides want to be active", 488)
        return False
    if offered is Setup.PASSIVE:
        raise SdpNegotiationError("both sides want to be passive", 488)
    return True
