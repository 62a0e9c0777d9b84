"""Building requests and responses the way RFC 3261 §8.1.1 and §8.2.6 prescribe.

:func:`make_request` writes the fields a UAC must send (§8.1.1) except the Via, which
the transaction layer prepends with its branch (§8.1.1.7, §17.1.3). :func:`make_response`
copies from the request what §8.2.6.2 says a response carries. Both refuse values that
would produce a message our own parser rejects (LocalSipError): that is always a bug on
our side, never a peer's fault.
"""

from __future__ import annotations

from collections.abc import Iterable

from .errors import LocalSipError, RemoteSipError
from .grammar import (
    NameAddr,
    SipUri,
    TelUri,
    Uri,
    is_token,
    is_valid_call_id,
    parse_any_uri,
    parse_name_addr,
)
from .message import REASON_PHRASES, Headers, Request, Response, canonical_name

__all__ = ["make_request", "make_response", "default_reason", "DIALOG_CREATING_METHODS"]

#: Methods whose 101-299 responses can establish a dialog, so Record-Route is copied
#: into them (RFC 3261 §12.1.1; RFC 6665 §4.1.2.1 for SUBSCRIBE; RFC 3515 §2.4.4 REFER).
DIALOG_CREATING_METHODS: frozenset[str] = frozenset({"INVITE", "SUBSCRIBE", "REFER"})

# Fields make_request/make_response write themselves; extra headers may not repeat them.
_RESERVED_REQUEST = frozenset(
    {"Via", "From", "To", "Call-ID", "CSeq", "Max-Forwards", "Contact", "Content-Length"}
)
_RESERVED_RESPONSE = frozenset({"Via", "From", "To", "Call-ID", "CSeq", "Content-Length"})

# Fields a response copies from the request's first occurrence, in this order (§8.2.6.2).
_COPIED_ONCE = ("From", "To", "Call-ID", "CSeq")

_CLASS_REASONS = {
    1: "Trying",
    2: "OK",
    3: "Redirection",
    4: "Client Error",
    5: "Server Error",
    6: "Global Failure",
}


def default_reason(status: int) -> str:
    """The registered reason phrase of ``status``, or a generic one for its class."""
    return REASON_PHRASES.get(status) or _CLASS_REASONS[status // 100]


def _check_value(name: str, value: str) -> None:
    if "\r" in value or "\n" in value:
        raise LocalSipError(f"CR/LF in {name}: {value!r}")


def _extra_headers(
    headers: Iterable[tuple[str, str]], reserved: frozenset[str]
) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for name, value in headers:
        canon = canonical_name(name)
        if not is_token(name):
            raise LocalSipError(f"bad header name {name!r}")
        if canon in reserved:
            raise LocalSipError(f"{canon} is written by the builder, not passed in headers")
        _check_value(canon, value)
        out.append((canon, value))
    return out


def _name_addr(value: NameAddr | Uri | str, what: str) -> NameAddr:
    if isinstance(value, NameAddr):
        return value
    if isinstance(value, str):
        try:
            return parse_name_addr(value)
        except RemoteSipError as exc:
            raise LocalSipError(f"bad {what} {value!r}: {exc.msg}") from exc
    return NameAddr(value)


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> Response:
    """Build the response to ``request`` (RFC 3261 §8.2.6).

    §8.2.6.2: From, Call-ID, CSeq and every Via (in order) are copied; To is copied and,
    unless the response is 100 or the request's To already has a tag, gets ``;tag=to_tag``
    (a UAS MUST add one, so ``to_tag`` is then required). A 100 copies Timestamp
    (§8.2.6.1). A 101-299 response that can establish a dialog copies Record-Route
    (§12.1.1). ``headers`` are appended; a non-empty ``body`` needs a Content-Type among
    them (§20.15). Content-Length is written by the serializer.
    """
    if not 100 <= status <= 699:
        raise LocalSipError(f"status {status} outside 100-699")
    reason = default_reason(status) if reason is None else reason
    _check_value("reason phrase", reason)
    extra = _extra_headers(headers, _RESERVED_RESPONSE)
    if body and not any(name == "Content-Type" for name, _ in extra):
        raise LocalSipError("a body needs a Content-Type (RFC 3261 §20.15)")
    # One pass over the request's fields (names are canonical in Headers) instead of a
    # lookup per copied field: this runs for every request the gateway answers.
    vias: list[str] = []
    first: dict[str, str] = {}
    timestamps: list[str] = []
    record_routes: list[str] = []
    for name, value in request.headers.items:
        if name == "Via":
            vias.append(value)
        elif name in _COPIED_ONCE:
            first.setdefault(name, value)
        elif name == "Timestamp":
            timestamps.append(value)
        elif name == "Record-Route":
            record_routes.append(value)
    to_value = first.get("To")
    initial = False  # the request is outside a dialog (its To has no tag)
    if to_value is not None:
        try:
            to: NameAddr | None = parse_name_addr(to_value)
        except RemoteSipError:
            to = None  # answering a malformed request (e.g. 400): copy To as it is
        initial = to is not None and to.tag is None
        if status != 100 and initial:
            if to_tag is None:
                raise LocalSipError(
                    f"a {status} to a request without To tag needs to_tag (RFC 3261 §8.2.6.2)"
                )
        if status != 100 and to_tag is not None and (to is None or to.tag is None):
            if not is_token(to_tag):
                raise LocalSipError(f"bad To tag {to_tag!r}")
            to_value = f"{to_value};tag={to_tag}"
    # Copy what the request has: a malformed request may lack some of these, and the
    # answer to it (RFC 4475 §3.3.1) is still best sent.
    out: list[tuple[str, str]] = [("Via", v) for v in vias]
    for name in _COPIED_ONCE:
        copied = to_value if name == "To" else first.get(name)
        if copied is not None:
            out.append((name, copied))
    if status == 100:
        out += [("Timestamp", v) for v in timestamps]
    elif 101 <= status <= 299 and initial and request.method in DIALOG_CREATING_METHODS:
        out += [("Record-Route", v) for v in record_routes]
    out += extra
    return Response(status, reason, Headers(tuple(out)), body)


def make_request(
    method: str,
    request_uri: SipUri | TelUri | str,
    *,
    from_addr: NameAddr | Uri | str,
    from_tag: str,
    to_addr: NameAddr | Uri | str,
    call_id: str,
    cseq: int,
    contact: NameAddr | Uri | str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
    max_forwards: int = 70,
) -> Request:
    """Build a request as a UAC sends it (RFC 3261 §8.1.1), without a Via.

    The transaction layer prepends the Via with a fresh branch. ``from_tag`` is added to
    From (§8.1.1.3: a UAC MUST add one); ``to_addr`` may carry a tag (in-dialog requests,
    §12.2.1.1). ``cseq`` becomes ``CSeq: <cseq> <method>`` and must be below 2**31
    (§8.1.1.5). A non-empty ``body`` needs ``content_type`` (§20.15).
    """
    if not is_token(method):
        raise LocalSipError(f"bad method {method!r}")
    uri_text = str(request_uri)
    try:
        parse_any_uri(uri_text)
    except RemoteSipError as exc:
        raise LocalSipError(f"bad Request-URI {uri_text!r}: {exc.msg}") from exc
    if not is_token(from_tag):
        raise LocalSipError(f"bad From tag {from_tag!r}")
    if not is_valid_call_id(call_id):
        raise LocalSipError(f"bad Call-ID {call_id!r}")
    if not 0 <= cseq < 2**31:
        raise LocalSipError(f"CSeq {cseq} outside 0..2**31-1 (RFC 3261 §8.1.1.5)")
    if not 0 <= max_forwards <= 255:
        raise LocalSipError(f"Max-Forwards {max_forwards} outside 0-255")
    if body and not content_type:
        raise LocalSipError("a body needs a Content-Type (RFC 3261 §20.15)")
    if content_type is not None:
        _check_value("Content-Type", content_type)
    from_na = _name_addr(from_addr, "From")
    if from_na.tag is not None:
        raise LocalSipError("from_addr already carries a tag; pass it as from_tag")
    out: list[tuple[str, str]] = [
        ("Max-Forwards", str(max_forwards)),
        # from_na has no tag (checked above) and from_tag is a token: this is
        # str(from_na.with_tag(from_tag)) without building a NameAddr per request.
        ("From", f"{from_na};tag={from_tag}"),
        ("To", str(_name_addr(to_addr, "To"))),
        ("Call-ID", call_id),
        ("CSeq", f"{cseq} {method}"),
    ]
    if contact is not None:
        out.append(("Contact", str(_name_addr(contact, "Contact"))))
    out += _extra_headers(headers, _RESERVED_REQUEST)
    if content_type is not None:
        if any(name == "Content-Type" for name, _ in out):
            raise LocalSipError("Content-Type given twice")
        out.append(("Content-Type", content_type))
    return Request(method, uri_text, Headers(tuple(out)), body)
