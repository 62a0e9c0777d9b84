"""SIP dialog state (RFC 3261 §12), sans-I/O.

Theory of operation
-------------------
A dialog is the peer-to-peer relationship that a dialog-creating request (here SUBSCRIBE,
RFC 6665 §4.1.2.1) sets up. RFC 3261 §12.1 defines its state, which :class:`Dialog` holds:

* the dialog ID: Call-ID, local tag and remote tag (§12);
* the local and remote sequence numbers (CSeq of the requests each side sends, §12.1);
* the local URI (From of the requests we send) and remote URI (their To);
* the remote target, the peer's Contact URI, used as the Request-URI (§12.1.1, §12.1.2);
* the route set, taken from Record-Route: in order for the UAS (§12.1.1), reversed for the
  UAC (§12.1.2);
* the "secure" flag (§12.1.1: a sips Request-URI over TLS).

Creation
    :meth:`Dialog.uas` builds the UAS side from a received request (the notifier receiving
    SUBSCRIBE). :meth:`Dialog.uac` builds the UAC side from the request we send, with the
    remote tag still unknown; :meth:`Dialog.confirm_by_response` completes it from a 2xx
    (§12.1.2). RFC 6665 §4.1.2.4 lets a NOTIFY overtake the 2xx to SUBSCRIBE; the subscriber
    then completes the dialog from the NOTIFY "as a UAS would" with
    :meth:`Dialog.confirm_by_request` (route set from the NOTIFY's Record-Route, in order).

Requests within the dialog (§12.2.1.1)
    :meth:`Dialog.new_request` increments the local sequence number and builds the request:
    To carries the remote tag, From the local tag. With an empty route set the Request-URI
    is the remote target. With a first route that is a loose router (``;lr``) the
    Request-URI is the remote target and Route lists the route set; with a strict router
    the Request-URI is the first route and Route lists the rest followed by the remote
    target.

Requests received within the dialog (§12.2.2)
    :meth:`Dialog.accept_remote_cseq` enforces the ordering rule: a CSeq lower than (or, as
    it cannot be a new request, equal to) the remote sequence number is refused with 500.
    Target refresh requests (SUBSCRIBE and NOTIFY, RFC 6665) and 2xx responses to those we
    send replace the remote target with their Contact (:meth:`Dialog.refresh_target`).

Where in-dialog requests go
    The sans-I/O core resolves nothing (no DNS, RFC 3263 belongs to the edge and the
    runtime). :meth:`Dialog.next_hop` sends to the first route, or to the remote target,
    when that URI names an IP address; otherwise to ``destination``, the address the
    dialog-creating request was sent to or came from, which the caller resolved. When the
    computed hop is ``destination``'s address, ``destination`` itself is used, so a stream
    connection it names is reused.

Memory: a gateway holds one dialog per subscription, 100,000 of them in the presence
benchmark; the class is slotted and keeps only strings and ints. Route entries and hosts,
which many dialogs share (a peer's proxies), are interned; in CPython 3.11, the project's
only version, interned strings are freed with their last user, so a peer cannot grow the
intern table for good.
"""

from __future__ import annotations

import functools
import ipaddress
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .address import TransportAddress
from .build import make_request
from .errors import LocalSipError, RemoteSipError
from .grammar import (
    NameAddr,
    SipUri,
    is_token,
    is_valid_call_id,
    parse_any_uri,
    parse_cseq,
    parse_name_addr,
)
from .message import Message, Request, Response
from .transaction_layer import DEFAULT_PORTS

__all__ = [
    "Dialog",
    "MAX_ROUTE_SET",
    "contact_target",
    "record_route",
]

#: Most entries in a route set. Each Record-Route entry is a proxy the dialog-creating
#: request crossed and Max-Forwards starts at 70 (RFC 3261 §8.1.1.6), so no valid route
#: set is longer; a longer one is refused (400) instead of being stored for the dialog's
#: lifetime.
MAX_ROUTE_SET = 70

#: Largest CSeq number we send: RFC 3261 §8.1.1.5 requires it below 2**31.
_MAX_LOCAL_CSEQ = 2**31 - 1

_TRANSPORTS = ("udp", "tcp", "tls")


@functools.lru_cache(maxsize=1024)
def _is_ip(host: str) -> bool:
    # Cached: every in-dialog request asks about the same few hosts (the proxy, the peer),
    # and ipaddress parsing costs more than the rest of next_hop().
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _plain_host(host: str) -> str:
    """The host as a socket address: IPv6 references lose their brackets."""
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def record_route(message: Message) -> list[str]:
    """Every Record-Route value of ``message``, in order, validated (name-addr with a SIP
    URI). Raises RemoteSipError 400 for a malformed value or more than
    :data:`MAX_ROUTE_SET` entries."""
    values = message.headers.get_all("Record-Route")
    if len(values) > MAX_ROUTE_SET:
        raise RemoteSipError(f"{len(values)} Record-Route entries, more than {MAX_ROUTE_SET}", 400)
    out: list[str] = []
    for value in values:
        na = parse_name_addr(value)
        if not isinstance(na.uri, SipUri):
            raise RemoteSipError(f"Record-Route is not a SIP URI: {value[:100]!r}", 400)
        out.append(sys.intern(str(na)))
    return out


def contact_target(message: Message) -> str | None:
    """The URI of the first Contact of ``message`` (URI headers stripped, as a remote
    target must be usable as a Request-URI, §19.1.1), or None when there is no Contact.

    Raises RemoteSipError 400 when the Contact is ``*``, malformed or not a SIP/SIPS URI
    (§8.1.1.8: a dialog-creating request's Contact "MUST contain a SIP or SIPS URI").
    """
    values = message.headers.get_all("Contact")
    if not values:
        return None
    first = values[0]
    if first.strip() == "*":
        raise RemoteSipError("Contact: * in a dialog", 400)
    na = parse_name_addr(first)
    if not isinstance(na.uri, SipUri):
        raise RemoteSipError(f"Contact is not a SIP URI: {first[:100]!r}", 400)
    return str(na.uri.without_headers())


def _tag(message: Message, header: str) -> str | None:
    value = message.headers.get(header)
    if value is None:
        raise RemoteSipError(f"Missing {header}", 400)
    tag = parse_name_addr(value).tag
    if tag is not None and not is_token(tag):
        raise RemoteSipError(f"malformed {header} tag", 400)
    return tag


def _uri_of(message: Message, header: str) -> str:
    value = message.headers.get(header)
    if value is None:
        raise RemoteSipError(f"Missing {header}", 400)
    return str(parse_name_addr(value).uri)


def _cseq_number(message: Message) -> int:
    value = message.headers.get("CSeq")
    if value is None:
        raise RemoteSipError("Missing CSeq", 400)
    return parse_cseq(value).seq


#: ``Dialog._seqs``: the local CSeq in the low bits (below 2**31, §8.1.1.5), then the
#: "secure" flag, then the remote CSeq plus one (0: none yet). Three fields in one slot
#: keep a dialog at nine slots, CPython's 112-byte class instead of 128, for each of the
#: 100,000 subscription dialogs a gateway holds.
_SEQ_BITS = 32
_SEQ_MASK = (1 << _SEQ_BITS) - 1
_SECURE_BIT = 1 << _SEQ_BITS


@dataclass(slots=True, eq=False, init=False, repr=False)
class Dialog:
    """The state of one dialog (RFC 3261 §12.1). Mutable: sequence numbers, the remote
    tag (while early) and the remote target change over its life."""

    #: Call-ID (part of the dialog ID).
    call_id: str
    #: Our tag: From tag of the requests we send, To tag of those we receive.
    local_tag: str
    #: Local URI: the URI of From in the requests we send.
    local_uri: str
    #: Remote URI: the URI of To in the requests we send.
    remote_uri: str
    #: Remote target: the Request-URI of our in-dialog requests (the peer's Contact).
    remote_target: str
    #: Where our in-dialog requests go when the next hop is not an IP literal (see
    #: :meth:`next_hop`): where the dialog-creating request was sent or came from.
    destination: TransportAddress
    #: The peer's tag; None while a UAC dialog is not confirmed yet.
    remote_tag: str | None
    #: Route set, in the order of the Route header of our requests.
    route_set: tuple[str, ...]
    #: ``local_cseq``, ``secure`` and ``remote_cseq`` (see _SEQ_BITS and the properties).
    _seqs: int

    def __init__(
        self,
        call_id: str,
        local_tag: str,
        local_uri: str,
        remote_uri: str,
        remote_target: str,
        destination: TransportAddress,
        remote_tag: str | None = None,
        route_set: tuple[str, ...] = (),
        local_cseq: int = 0,
        remote_cseq: int | None = None,
        secure: bool = False,
    ) -> None:
        self.call_id = call_id
        self.local_tag = local_tag
        self.local_uri = local_uri
        self.remote_uri = remote_uri
        self.remote_target = remote_target
        self.destination = destination
        self.remote_tag = remote_tag
        self.route_set = route_set
        self._seqs = 0
        self.local_cseq = local_cseq
        self.remote_cseq = remote_cseq
        self.secure = secure

    @property
    def local_cseq(self) -> int:
        """CSeq number of the last request we sent (0: none yet)."""
        return self._seqs & _SEQ_MASK

    @local_cseq.setter
    def local_cseq(self, value: int) -> None:
        if not 0 <= value <= _SEQ_MASK:
            raise LocalSipError(f"local CSeq {value} out of range")
        self._seqs = (self._seqs & ~_SEQ_MASK) | value

    @property
    def remote_cseq(self) -> int | None:
        """CSeq number of the last request the peer sent; None while empty (§12.1.2)."""
        plus_one = self._seqs >> (_SEQ_BITS + 1)
        return None if plus_one == 0 else plus_one - 1

    @remote_cseq.setter
    def remote_cseq(self, value: int | None) -> None:
        plus_one = 0 if value is None else value + 1
        if plus_one < 0:
            raise LocalSipError(f"remote CSeq {value} out of range")
        self._seqs = (self._seqs & (_SEQ_MASK | _SECURE_BIT)) | (plus_one << (_SEQ_BITS + 1))

    @property
    def secure(self) -> bool:
        """§12.1.1: the dialog-creating request had a sips Request-URI and came over TLS."""
        return bool(self._seqs & _SECURE_BIT)

    @secure.setter
    def secure(self, on: bool) -> None:
        self._seqs = self._seqs | _SECURE_BIT if on else self._seqs & ~_SECURE_BIT

    def __repr__(self) -> str:
        return (
            f"Dialog(call_id={self.call_id!r}, local_tag={self.local_tag!r}, "
            f"local_uri={self.local_uri!r}, remote_uri={self.remote_uri!r}, "
            f"remote_target={self.remote_target!r}, destination={self.destination!r}, "
            f"remote_tag={self.remote_tag!r}, route_set={self.route_set!r}, "
            f"local_cseq={self.local_cseq!r}, remote_cseq={self.remote_cseq!r}, "
            f"secure={self.secure!r})"
        )

    # -- creation ------------------------------------------------------------------------

    @classmethod
    def uas(cls, request: Request, local_tag: str, source: TransportAddress) -> Dialog:
        """The UAS side, from a received dialog-creating request (§12.1.1).

        Raises RemoteSipError 400 when the request lacks what a dialog needs (Contact,
        From tag) or carries a malformed Record-Route/Contact.
        """
        remote_tag = _tag(request, "From")
        if remote_tag is None:
            raise RemoteSipError("From without tag", 400, "Missing From tag")
        target = contact_target(request)
        if target is None:
            raise RemoteSipError("dialog-creating request without Contact", 400, "Missing Contact")
        call_id = request.headers.get("Call-ID")
        if call_id is None:
            raise RemoteSipError("Missing Call-ID", 400)
        uri = parse_any_uri(request.uri)
        secure = isinstance(uri, SipUri) and uri.secure and source.transport == "tls"
        return cls(
            call_id=call_id,
            local_tag=local_tag,
            local_uri=_uri_of(request, "To"),
            remote_uri=_uri_of(request, "From"),
            remote_target=target,
            destination=source,
            remote_tag=remote_tag,
            route_set=tuple(record_route(request)),
            remote_cseq=_cseq_number(request),
            secure=secure,
        )

    @classmethod
    def uac(
        cls,
        *,
        call_id: str,
        local_tag: str,
        local_uri: str,
        remote_uri: str,
        request_uri: str,
        destination: TransportAddress,
    ) -> Dialog:
        """The UAC side before any response: the remote target is the Request-URI until a
        2xx (or an early NOTIFY) names the peer's Contact (§12.1.2)."""
        if not is_valid_call_id(call_id):
            raise LocalSipError(f"bad Call-ID {call_id!r}")
        if not is_token(local_tag):
            raise LocalSipError(f"bad tag {local_tag!r}")
        try:
            uri = parse_any_uri(request_uri)
        except RemoteSipError as exc:
            raise LocalSipError(f"bad Request-URI {request_uri!r}: {exc.msg}") from exc
        secure = isinstance(uri, SipUri) and uri.secure and destination.transport == "tls"
        return cls(
            call_id=call_id,
            local_tag=local_tag,
            local_uri=local_uri,
            remote_uri=remote_uri,
            remote_target=request_uri,
            destination=destination,
            secure=secure,
        )

    def confirm_by_response(self, response: Response) -> None:
        """Complete a UAC dialog from a 2xx to the dialog-creating request (§12.1.2):
        remote tag from To, route set from Record-Route reversed, remote target from
        Contact (kept as it was when the response has none)."""
        tag = _tag(response, "To")
        if tag is None:
            raise RemoteSipError("2xx without To tag", 400)
        routes = record_route(response)
        target = contact_target(response)
        self.remote_tag = tag
        self.route_set = tuple(reversed(routes))
        if target is not None:
            self.remote_target = target

    def confirm_by_request(self, request: Request) -> None:
        """Complete a UAC dialog from a NOTIFY that overtook the 2xx (RFC 6665 §4.1.2.4):
        the subscriber builds the dialog as a UAS would (§12.1.1): remote tag from From,
        route set from Record-Route in order, remote target from Contact."""
        tag = _tag(request, "From")
        if tag is None:
            raise RemoteSipError("From without tag", 400, "Missing From tag")
        routes = record_route(request)
        target = contact_target(request)
        self.remote_tag = tag
        self.route_set = tuple(routes)
        if target is not None:
            self.remote_target = target

    # -- identity ------------------------------------------------------------------------

    @property
    def confirmed(self) -> bool:
        return self.remote_tag is not None

    @property
    def key(self) -> tuple[str, str, str] | None:
        """(Call-ID, local tag, remote tag), or None while the remote tag is unknown."""
        if self.remote_tag is None:
            return None
        return (self.call_id, self.local_tag, self.remote_tag)

    # -- requests received (§12.2.2) -----------------------------------------------------

    def accept_remote_cseq(self, request: Request) -> None:
        """§12.2.2: "If the remote sequence number was not empty, but the sequence number
        of the request is lower than the remote sequence number, the request is out of
        order and MUST be rejected with a 500". An equal number cannot be a new request
        (the transaction layer absorbed retransmissions), so it is refused too."""
        seq = _cseq_number(request)
        if self.remote_cseq is not None and seq <= self.remote_cseq:
            raise RemoteSipError(
                f"CSeq {seq} not above {self.remote_cseq}", 500, "Out of order CSeq"
            )
        self.remote_cseq = seq

    def refresh_target(self, message: Message) -> None:
        """A target refresh request, or the 2xx to one we sent (§12.2.1.2, §12.2.2):
        its Contact, if any, becomes the remote target."""
        target = contact_target(message)
        if target is not None:
            self.remote_target = target

    # -- requests sent (§12.2.1.1) -------------------------------------------------------

    def new_request(
        self,
        method: str,
        *,
        contact: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
        cseq: int | None = None,
    ) -> Request:
        """Build the next request of this dialog (§12.2.1.1), consuming one local CSeq.

        Before the dialog is confirmed (no remote tag) the request goes out as the
        dialog-creating one did: To without tag and no Route (a SUBSCRIBE retried after a
        423, RFC 6665 §4.1.2.1).

        ``cseq`` names the sequence number instead, and none is consumed: the ACK for a
        2xx carries the number of the INVITE it acknowledges (§13.2.2.4).
        """
        if cseq is None and self.local_cseq >= _MAX_LOCAL_CSEQ:
            raise LocalSipError("local CSeq exhausted (RFC 3261 §8.1.1.5)")
        to_addr = NameAddr(parse_any_uri(self.remote_uri))
        if self.remote_tag is not None:
            to_addr = to_addr.with_tag(self.remote_tag)
        request_uri = self.remote_target
        routes: list[tuple[str, str]] = []
        if self.remote_tag is not None and self.route_set:
            first = parse_name_addr(self.route_set[0])
            if isinstance(first.uri, SipUri) and first.uri.lr:
                routes = [("Route", r) for r in self.route_set]
            else:
                # Strict router (§12.2.1.1): it becomes the Request-URI; the remote
                # target goes last in Route.
                request_uri = str(
                    first.uri.without_headers() if isinstance(first.uri, SipUri) else first.uri
                )
                routes = [("Route", r) for r in self.route_set[1:]]
                routes.append(("Route", f"<{self.remote_target}>"))
        request = make_request(
            method,
            request_uri,
            from_addr=NameAddr(parse_any_uri(self.local_uri)),
            from_tag=self.local_tag,
            to_addr=to_addr,
            call_id=self.call_id,
            cseq=self.local_cseq + 1 if cseq is None else cseq,
            contact=contact,
            headers=[*routes, *headers],
            body=body,
            content_type=content_type,
        )
        if cseq is None:
            self.local_cseq += 1
        return request

    def next_hop(self) -> TransportAddress:
        """Where the next in-dialog request goes (see the module docstring)."""
        try:
            if self.remote_tag is not None and self.route_set:
                uri = parse_name_addr(self.route_set[0]).uri
            else:
                uri = parse_any_uri(self.remote_target)
        except RemoteSipError:
            return self.destination
        if not isinstance(uri, SipUri) or not _is_ip(uri.host):
            return self.destination
        transport = uri.transport or ("tls" if uri.secure else self.destination.transport)
        if transport not in _TRANSPORTS:
            return self.destination
        port = uri.port or DEFAULT_PORTS[transport]
        host = _plain_host(uri.host)
        dest = self.destination
        if (
            dest.transport == transport
            and _plain_host(dest.host).lower() == host.lower()
            and dest.port == port
        ):
            return dest
        return TransportAddress(transport, sys.intern(host), port)  # type: ignore[arg-type]

    # -- persistence ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, object]:
        """JSON-able form; the field names are those of the gateway store's DialogState
        (``remote_tag`` "" while unknown, ``peer_host``/``peer_port``/``transport`` the
        destination, without its stream connection, which does not survive a restart)."""
        return {
            "call_id": self.call_id,
            "local_tag": self.local_tag,
            "remote_tag": self.remote_tag or "",
            "local_uri": self.local_uri,
            "remote_uri": self.remote_uri,
            "remote_target": self.remote_target,
            "route_set": list(self.route_set),
            "local_cseq": self.local_cseq,
            "remote_cseq": self.remote_cseq,
            "secure": self.secure,
            "transport": self.destination.transport,
            "peer_host": self.destination.host,
            "peer_port": self.destination.port,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Dialog:
        """Inverse of :meth:`to_dict`. Raises LocalSipError for a malformed record (it is
        the gateway's own data, so a bad one is a bug or a corrupt store)."""
        try:
            call_id = _str(data, "call_id")
            local_tag = _str(data, "local_tag")
            remote_tag = _str(data, "remote_tag") or None
            local_uri = _str(data, "local_uri")
            remote_uri = _str(data, "remote_uri")
            remote_target = _str(data, "remote_target")
            routes_raw = data.get("route_set", [])
            if not isinstance(routes_raw, list | tuple) or not all(
                isinstance(r, str) for r in routes_raw
            ):
                raise LocalSipError("route_set must be a list of strings")
            if len(routes_raw) > MAX_ROUTE_SET:
                raise LocalSipError("route_set too long")
            local_cseq = _int(data, "local_cseq")
            remote_cseq_raw = data.get("remote_cseq")
            remote_cseq = None if remote_cseq_raw is None else _int(data, "remote_cseq")
            secure = data.get("secure", False)
            if not isinstance(secure, bool):
                raise LocalSipError("secure must be a bool")
            transport = _str(data, "transport")
            if transport not in _TRANSPORTS:
                raise LocalSipError(f"unknown transport {transport!r}")
            peer_host = _str(data, "peer_host")
            peer_port = _int(data, "peer_port")
            if not 0 < peer_port < 65536:
                raise LocalSipError(f"bad port {peer_port}")
            if not is_valid_call_id(call_id) or not is_token(local_tag):
                raise LocalSipError("bad Call-ID or local tag")
            if remote_tag is not None and not is_token(remote_tag):
                raise LocalSipError("bad remote tag")
            if not 0 <= local_cseq <= _MAX_LOCAL_CSEQ:
                raise LocalSipError("local_cseq out of range")
            for uri in (local_uri, remote_uri, remote_target):
                parse_any_uri(uri)
            for route in routes_raw:
                parse_name_addr(route)
        except RemoteSipError as exc:
            raise LocalSipError(f"malformed dialog record: {exc.msg}") from exc
        return cls(
            call_id=call_id,
            local_tag=local_tag,
            local_uri=local_uri,
            remote_uri=remote_uri,
            remote_target=remote_target,
            destination=TransportAddress(transport, sys.intern(peer_host), peer_port),  # type: ignore[arg-type]
            remote_tag=remote_tag,
            route_set=tuple(sys.intern(r) for r in routes_raw),
            local_cseq=local_cseq,
            remote_cseq=remote_cseq,
            secure=secure,
        )


def _str(data: Mapping[str, object], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise LocalSipError(f"{name} must be a string")
    return value


def _int(data: Mapping[str, object], name: str) -> int:
    value = data.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**32:
        raise LocalSipError(f"{name} must be an integer in 0..2**32-1")
    return value
