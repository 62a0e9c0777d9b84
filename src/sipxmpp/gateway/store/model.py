"""What the gateway keeps across restarts: SIP dialogs, subscriptions, presence authorizations.

Theory of operation
-------------------
Presence federation (RFC 8048) has two kinds of state that must outlive the gateway process:

* **Notification dialogs** (RFC 8048 §1; RFC 6665 subscriptions). In the ``notifier`` role a
  SIP watcher subscribed, through the gateway, to an XMPP user; after a restart the gateway
  must keep sending NOTIFYs *inside the existing dialog* (RFC 6665 §4.2.2), so the dialog's
  Call-ID, tags, CSeq counters, route set and remote target (RFC 3261 §12.1) are kept. In the
  ``subscriber`` role the gateway subscribed on SIP on behalf of an XMPP user (RFC 8048
  §5.2.1) and must refresh that dialog before ``expires_at`` (§5.2.2).
* **Presence authorizations** (RFC 8048 §5.1; RFC 6121 §3 and Appendix A): the long-lived
  XMPP subscription state none/to/from/both, with the pending-in/out flags, between an XMPP
  user and a SIP contact.

``last_state`` keeps the last presence document sent or received (PIDF bytes), so a restart
can answer a refresh with the real state instead of an empty or "closed" NOTIFY that a watcher
would show as a false "offline" (RFC 8048 §5.3.2 allows an empty NOTIFY only when the state
is unknown).

Times are **wall-clock epoch seconds** (``time.time()``): a monotonic clock restarts with the
process, so it cannot express a deadline that must survive a restart. Callers convert at
their edge.

Every record is a frozen, slotted dataclass validated in its constructor: text must be valid
UTF-8 without NUL (PostgreSQL ``text`` cannot hold NUL, and no SIP URI or JID contains one
unescaped), sizes are bounded by the named limits below, and ``extra`` must be plain JSON.
A value that breaks these rules raises :class:`~.errors.LocalStoreError`.

``version`` implements optimistic concurrency between gateway instances that share a
database: the store sets it (1 on creation, +1 on every write); callers pass the version they
read as ``expected_version`` and get :class:`~.errors.VersionConflict` if someone else wrote
in between.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeAlias

from .errors import LocalStoreError

__all__ = [
    "MAX_EXTRA_BYTES",
    "MAX_ID_BYTES",
    "MAX_LAST_STATE_BYTES",
    "MAX_ROUTE_SET",
    "MAX_SEQ",
    "MAX_URI_BYTES",
    "Authorization",
    "AuthorizationState",
    "DialogState",
    "JsonValue",
    "Subscription",
    "SubscriptionRole",
    "SubscriptionState",
]

#: Largest identifier (subscription id, Call-ID, tag, event package, peer, transport), in
#: UTF-8 bytes. Real ones are tens of bytes; the bound keeps index entries small.
MAX_ID_BYTES = 1024

#: Largest URI or JID, in UTF-8 bytes. A JID is at most 3 x 1023 bytes plus separators
#: (RFC 7622 §3.1); SIP URIs live in headers the SIP core caps at 16 KiB per block, and real
#: ones with parameters stay far below 4 KiB.
MAX_URI_BYTES = 4096

#: Most entries in a dialog route set. Each Record-Route entry is one proxy the request
#: crossed, and Max-Forwards starts at 70 (RFC 3261 §8.1.1.6), so no valid route set is longer.
MAX_ROUTE_SET = 70

#: Largest CSeq sequence number: a 32-bit unsigned integer (RFC 3261 §8.1.1.5), as the SIP
#: core's grammar accepts.
MAX_SEQ = 2**32 - 1

#: Largest ``last_state`` document. It is a NOTIFY/PUBLISH body the SIP core accepted or built,
#: and the SIP core refuses bodies above 64 KiB (gateway/sip/parser.py MAX_BODY_BYTES).
MAX_LAST_STATE_BYTES = 64 * 1024

#: Largest ``extra`` JSON document, in UTF-8 bytes. It holds small per-subscription fields the
#: presence work adds; 64 KiB x 100,000 subscriptions still fits a benchmark host's memory.
MAX_EXTRA_BYTES = 64 * 1024

#: Largest port number (16-bit), 0 meaning "not pinned: resolve per RFC 3263".
_MAX_PORT = 65535

#: Versions are BIGINT in PostgreSQL and 64-bit integers in SQLite.
_MAX_VERSION = 2**63 - 1

JsonValue: TypeAlias = (
    "None | bool | int | float | str | list[JsonValue] | dict[str, JsonValue] "
    "| Mapping[str, JsonValue]"
)


class SubscriptionRole(enum.StrEnum):
    """Which side of a notification dialog the gateway is on."""

    #: A SIP watcher subscribed to an XMPP user through the gateway; the gateway sends NOTIFYs
    #: (RFC 8048 §5.3).
    NOTIFIER = "notifier"
    #: The gateway subscribed on SIP on behalf of an XMPP user; it receives NOTIFYs and refreshes
    #: (RFC 8048 §5.2).
    SUBSCRIBER = "subscriber"


class SubscriptionState(enum.StrEnum):
    """Subscription-State values (RFC 6665 §4.1.3 and §8.2.3)."""

    PENDING = "pending"
    ACTIVE = "active"
    TERMINATED = "terminated"


class AuthorizationState(enum.StrEnum):
    """XMPP subscription states of the XMPP user's roster item for the SIP contact.

    RFC 8048 §5.1 uses the RFC 6121 §2.1.2.5 values. ``to``: the XMPP user receives the SIP
    contact's presence; ``from``: the SIP contact receives the XMPP user's presence.
    """

    NONE = "none"
    TO = "to"
    FROM = "from"
    BOTH = "both"


# -- validators ----------------------------------------------------------------------------


def _text(name: str, value: object, max_bytes: int, *, empty: bool = False) -> str:
    """Valid UTF-8 text without NUL, at most ``max_bytes`` bytes, non-empty unless allowed."""
    if type(value) is not str:
        raise LocalStoreError(f"{name} must be str, not {type(value).__name__}")
    if not value and not empty:
        raise LocalStoreError(f"{name} must not be empty")
    if "\x00" in value:
        raise LocalStoreError(f"{name} must not contain NUL")
    if value.isascii():  # the common case: one byte per character, nothing to encode
        size = len(value)
    else:
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError as exc:  # lone surrogates cannot be stored as UTF-8
            raise LocalStoreError(f"{name} is not encodable as UTF-8: {exc.reason}") from None
    if size > max_bytes:
        raise LocalStoreError(f"{name} is {size} bytes, more than {max_bytes}")
    return value


def _int(name: str, value: object, low: int, high: int) -> int:
    if type(value) is not int:
        raise LocalStoreError(f"{name} must be int, not {type(value).__name__}")
    if not low <= value <= high:
        raise LocalStoreError(f"{name} {value} is outside {low}..{high}")
    return value


def _bool(name: str, value: object) -> bool:
    if type(value) is not bool:
        raise LocalStoreError(f"{name} must be bool, not {type(value).__name__}")
    return value


def _epoch(name: str, value: object) -> float:
    """A finite wall-clock time; ints are accepted and kept as float."""
    if type(value) is int:
        try:
            value = float(value)
        except OverflowError:
            raise LocalStoreError(f"{name} {value} is out of range") from None
    if type(value) is not float:
        raise LocalStoreError(f"{name} must be a float (epoch seconds)")
    if not math.isfinite(value):
        raise LocalStoreError(f"{name} must be finite")
    return value


def _enum(name: str, cls: type[enum.StrEnum], value: object) -> Any:
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return cls(value)
    except ValueError:
        allowed = ", ".join(m.value for m in cls)
        raise LocalStoreError(f"{name} {value!r} is not one of {allowed}") from None


def encode_extra(value: Mapping[str, Any]) -> str:
    """``extra`` as compact JSON text; :class:`LocalStoreError` unless it is plain JSON."""
    try:
        text = json.dumps(
            value if isinstance(value, dict) else dict(value),
            ensure_ascii=False,
            allow_nan=False,
            separators=(",", ":"),
            default=_no_default,
        )
        size = len(text.encode("utf-8"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise LocalStoreError(f"extra is not plain JSON: {exc}") from None
    if size > MAX_EXTRA_BYTES:
        raise LocalStoreError(f"extra is {size} bytes of JSON, more than {MAX_EXTRA_BYTES}")
    return text


def _no_default(obj: object) -> Any:
    if isinstance(obj, MappingProxyType):
        return dict(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # json.loads accepts NaN/Infinity by default


_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def decode_extra(text: str) -> Mapping[str, JsonValue]:
    """JSON text back to a read-only mapping (ValueError/RecursionError on garbage)."""
    value = _DECODER.decode(text)
    if not isinstance(value, dict):
        raise ValueError("extra is not a JSON object")
    return MappingProxyType(value)


def decode_extra_checked(text: str) -> Mapping[str, JsonValue]:
    """:func:`decode_extra` plus the size limit, for text read from the database.

    What json.loads returns (without NaN/Infinity) is plain JSON by construction, so the
    store's row decoder puts it into a record directly instead of re-encoding it to check.
    """
    size = len(text) if text.isascii() else len(text.encode("utf-8"))
    if size > MAX_EXTRA_BYTES:
        raise ValueError(f"extra is {size} bytes of JSON, more than {MAX_EXTRA_BYTES}")
    return decode_extra(text)


#: The shared empty ``extra``.
EMPTY_EXTRA: Mapping[str, JsonValue] = MappingProxyType({})


def _extra(value: object) -> tuple[Mapping[str, JsonValue], str]:
    """The record's read-only private copy of ``value`` and its JSON text (which the row
    codec writes as it is, so a record is encoded once)."""
    if not isinstance(value, Mapping):
        raise LocalStoreError(f"extra must be a mapping, not {type(value).__name__}")
    if not value:
        return EMPTY_EXTRA, "{}"
    text = encode_extra(value)
    copy = decode_extra(text)
    # JSON silently turns tuples into lists and non-str keys into str; refuse instead, so that
    # what comes back from the database always equals what was stored.
    if copy != value:
        raise LocalStoreError("extra must hold only dict/list/str/int/float/bool/None, str keys")
    return copy, text


# -- records ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DialogState:
    """A SIP dialog as RFC 3261 §12.1 defines it, plus where to send in-dialog requests."""

    #: Call-ID of the dialog.
    call_id: str
    #: Our tag (From-tag of requests we send).
    local_tag: str
    #: The peer's tag; None while the dialog is not confirmed (RFC 6665 §4.1.2.4: a
    #: subscriber learns it from the first NOTIFY), as in the SIP core's ``Dialog``.
    remote_tag: str | None
    #: Local URI (From of requests we send).
    local_uri: str
    #: Remote URI (To of requests we send).
    remote_uri: str
    #: Remote target: the peer's Contact URI, the Request-URI of in-dialog requests.
    remote_target: str
    #: Route set, in the order used for the Route header of in-dialog requests (RFC 3261 §12.1.1
    #: for the UAS side, reversed Record-Route for the UAC side, §12.1.2).
    route_set: tuple[str, ...] = ()
    #: Local sequence number: CSeq of the last request we sent in the dialog.
    local_cseq: int = 0
    #: Remote sequence number; None while empty (RFC 3261 §12.1.2: a UAC's is empty until the
    #: peer sends a request).
    remote_cseq: int | None = None
    #: True for a SIPS dialog (RFC 3261 §12.1.1): in-dialog requests need TLS on every hop.
    secure: bool = False
    #: Transport of in-dialog requests: "udp", "tcp", "tls" (lower-case token), the
    #: ``transport`` of the SIP core's ``Dialog.destination``.
    transport: str = "udp"
    #: Host or address in-dialog requests go to (``Dialog.destination.host``); empty: resolve
    #: the first route or the remote target with RFC 3263.
    peer_host: str = ""
    #: Port for ``peer_host`` (``Dialog.destination.port``); 0: the transport's default.
    peer_port: int = 0

    def __post_init__(self) -> None:
        _text("call_id", self.call_id, MAX_ID_BYTES)
        _text("local_tag", self.local_tag, MAX_ID_BYTES)
        if self.remote_tag is not None:
            _text("remote_tag", self.remote_tag, MAX_ID_BYTES)
        _text("local_uri", self.local_uri, MAX_URI_BYTES)
        _text("remote_uri", self.remote_uri, MAX_URI_BYTES)
        _text("remote_target", self.remote_target, MAX_URI_BYTES)
        route_set = self.route_set
        if type(route_set) is not tuple:
            if not isinstance(route_set, list):
                raise LocalStoreError("route_set must be a tuple of str")
            route_set = tuple(route_set)
            object.__setattr__(self, "route_set", route_set)
        if len(route_set) > MAX_ROUTE_SET:
            raise LocalStoreError(f"route_set has {len(route_set)} entries, over {MAX_ROUTE_SET}")
        for entry in route_set:
            _text("route_set entry", entry, MAX_URI_BYTES)
        _int("local_cseq", self.local_cseq, 0, MAX_SEQ)
        if self.remote_cseq is not None:
            _int("remote_cseq", self.remote_cseq, 0, MAX_SEQ)
        _bool("secure", self.secure)
        transport = _text("transport", self.transport, MAX_ID_BYTES)
        if not (transport.isascii() and transport.isalnum() and transport.islower()):
            raise LocalStoreError(f"transport {transport!r} must be a lower-case token")
        _text("peer_host", self.peer_host, MAX_URI_BYTES, empty=True)
        _int("peer_port", self.peer_port, 0, _MAX_PORT)


@dataclass(frozen=True, slots=True)
class Subscription:
    """One notification dialog (RFC 6665 subscription) the gateway is part of."""

    #: Stable identifier chosen by the gateway (unique per database).
    id: str
    #: Which side the gateway is on.
    role: SubscriptionRole
    #: Who watches: a SIP URI (notifier role) or a JID (subscriber role).
    watcher: str
    #: Whose presence is watched: a JID (notifier role) or a SIP URI (subscriber role).
    presentity: str
    #: Subscription-State (RFC 6665 §4.1.3).
    state: SubscriptionState
    #: When the subscription expires, wall-clock epoch seconds.
    expires_at: float
    #: The peer network (domain or peer id) the subscription belongs to, for per-peer caps.
    peer: str = ""
    #: Event package (RFC 6665 §7.2): "presence" for RFC 3856.
    event: str = "presence"
    #: The SIP dialog, once established.
    dialog: DialogState | None = None
    #: The last presence document (PIDF) sent or received, None if none yet.
    last_state: bytes | None = None
    #: When the last NOTIFY was sent or received, wall-clock epoch seconds.
    last_notify_at: float | None = None
    #: Row version (0: never stored). Set by the store; see the module docstring.
    version: int = 0
    #: Fields the presence work adds later: a read-only JSON object.
    extra: Mapping[str, JsonValue] = field(default_factory=dict, hash=False)
    #: ``extra`` as the JSON text the row codec writes (computed by the constructor).
    extra_json: str = field(default="{}", init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        _text("id", self.id, MAX_ID_BYTES)
        object.__setattr__(self, "role", _enum("role", SubscriptionRole, self.role))
        _text("watcher", self.watcher, MAX_URI_BYTES)
        _text("presentity", self.presentity, MAX_URI_BYTES)
        object.__setattr__(self, "state", _enum("state", SubscriptionState, self.state))
        object.__setattr__(self, "expires_at", _epoch("expires_at", self.expires_at))
        _text("peer", self.peer, MAX_ID_BYTES, empty=True)
        _text("event", self.event, MAX_ID_BYTES)
        if self.dialog is not None and not isinstance(self.dialog, DialogState):
            raise LocalStoreError("dialog must be a DialogState or None")
        if self.last_state is not None:
            if type(self.last_state) is not bytes:
                if not isinstance(self.last_state, bytearray | memoryview):
                    raise LocalStoreError("last_state must be bytes or None")
                object.__setattr__(self, "last_state", bytes(self.last_state))
            assert isinstance(self.last_state, bytes)
            if len(self.last_state) > MAX_LAST_STATE_BYTES:
                raise LocalStoreError(
                    f"last_state is {len(self.last_state)} bytes, over {MAX_LAST_STATE_BYTES}"
                )
        if self.last_notify_at is not None:
            object.__setattr__(
                self, "last_notify_at", _epoch("last_notify_at", self.last_notify_at)
            )
        _int("version", self.version, 0, _MAX_VERSION)
        extra, text = _extra(self.extra)
        object.__setattr__(self, "extra", extra)
        object.__setattr__(self, "extra_json", text)


#: RFC 6121 Appendix A lists the nine defined states; pending-out is impossible once the
#: XMPP user already receives the contact's presence (to/both), pending-in once the contact
#: already receives the user's (from/both).
_NO_PENDING_OUT = frozenset({AuthorizationState.TO, AuthorizationState.BOTH})
_NO_PENDING_IN = frozenset({AuthorizationState.FROM, AuthorizationState.BOTH})


@dataclass(frozen=True, slots=True)
class Authorization:
    """The presence authorization between an XMPP user and a SIP contact (RFC 8048 §5.1).

    Seen from the XMPP user's roster item for the SIP contact, as RFC 6121 §3 does.
    """

    #: The XMPP user's bare JID.
    xmpp_jid: str
    #: The SIP contact's address of record.
    sip_uri: str
    #: none / to / from / both.
    state: AuthorizationState = AuthorizationState.NONE
    #: The XMPP user asked for the contact's presence and the contact has not answered yet.
    pending_out: bool = False
    #: The SIP contact asked for the XMPP user's presence and the user has not answered yet.
    pending_in: bool = False
    #: Row version (0: never stored). Set by the store.
    version: int = 0

    def __post_init__(self) -> None:
        _text("xmpp_jid", self.xmpp_jid, MAX_URI_BYTES)
        _text("sip_uri", self.sip_uri, MAX_URI_BYTES)
        state: AuthorizationState = _enum("state", AuthorizationState, self.state)
        object.__setattr__(self, "state", state)
        _bool("pending_out", self.pending_out)
        _bool("pending_in", self.pending_in)
        if self.pending_out and state in _NO_PENDING_OUT:
            raise LocalStoreError(f"pending_out is not a state with {state.value!r} (RFC 6121 A)")
        if self.pending_in and state in _NO_PENDING_IN:
            raise LocalStoreError(f"pending_in is not a state with {state.value!r} (RFC 6121 A)")
        _int("version", self.version, 0, _MAX_VERSION)

    @property
    def key(self) -> tuple[str, str]:
        return (self.xmpp_jid, self.sip_uri)

    @property
    def xmpp_receives(self) -> bool:
        """The XMPP user receives the SIP contact's presence (to/both)."""
        return self.state in _NO_PENDING_OUT

    @property
    def sip_receives(self) -> bool:
        """The SIP contact receives the XMPP user's presence (from/both)."""
        return self.state in _NO_PENDING_IN
