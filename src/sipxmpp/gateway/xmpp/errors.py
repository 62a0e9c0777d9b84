"""Error families of the XMPP edge, and the one boundary every stanza handler runs behind.

Error families (the pattern of ``gateway/sip/errors.py``):

* :class:`RemoteXmppError`: the XMPP server sent something we refuse (restricted XML, an
  oversized stanza, a stanza without ``from``). ``condition`` is the RFC 6120 §4.9.3 stream
  error condition (or §8.3.3 stanza error condition) the edge answers with.
* :class:`LocalXmppError`: the gateway tried to send something illegal (a ``from`` outside the
  component's domain, a character XML cannot carry, an oversized stanza). ``condition`` is the
  §8.3.3 stanza error condition that best describes the refusal, for the runtime to map back to
  the SIP side. :class:`LinkDown` (and :class:`LinkCongested`) are local errors too: nothing was
  sent.
* :class:`StanzaErrorException`: raised by an :class:`~sipxmpp.gateway.xmpp.handler.XmppHandler`
  to have the boundary answer the stanza with that stanza error.
* :class:`Ignore`: raised by a handler to drop a stanza with no answer and no log line.

The boundary (design practice 7, after slidge's ``exceptions_to_xmpp_errors`` on top of
slixmpp's ``RootStanza.exception``): :func:`boundary` wraps a handler so that ``XMPPError``
passes through, :class:`StanzaErrorException` becomes the equivalent ``XMPPError``,
``NotImplementedError`` becomes ``feature-not-implemented``, :class:`Ignore` is swallowed, and
anything else is logged with ``exc_info`` and becomes ``internal-server-error`` (without the
exception text, which could leak internals). :func:`reply_with_error` then answers through
slixmpp's own reply mechanism, and never answers an error with an error (RFC 6120 §8.3.1).
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, cast, overload

from slixmpp.exceptions import XMPPError
from slixmpp.stanza.error import Error as _SlixError

from sipxmpp.mapping.errors import XMPP_CONDITIONS
from sipxmpp.mapping.model import StanzaError

__all__ = [
    "ADDRESS_CONDITIONS",
    "STANZA_ERROR_CONDITIONS",
    "STANZA_ERROR_TYPES",
    "AddressedXMPPError",
    "Ignore",
    "LinkCongested",
    "LinkDown",
    "LocalXmppError",
    "RemoteXmppError",
    "StanzaErrorException",
    "XmppError",
    "boundary",
    "reply_with_error",
    "stanza_error_to_xmpp_error",
    "to_xmpp_error",
]

log = logging.getLogger(__name__)

#: RFC 6120 §8.3.3: the defined stanza error conditions (the table lives in ``mapping``).
STANZA_ERROR_CONDITIONS = XMPP_CONDITIONS

# slixmpp 1.17's ``Error.conditions`` still lists RFC 3920's set: it lacks RFC 6120's
# ``policy-violation`` (which RFC 7247 §7 and RFC 7572 §6 need) and keeps the removed
# ``payment-required``. An unknown condition is silently left at the default
# ``feature-not-implemented`` both when sending and when reading an error, so teach slixmpp
# the RFC 6120 set once, here at the edge.
_SlixError.conditions = set(_SlixError.conditions) | set(STANZA_ERROR_CONDITIONS)

#: RFC 6120 §8.3.2: the values of the error element's ``type`` attribute.
STANZA_ERROR_TYPES = frozenset({"auth", "cancel", "continue", "modify", "wait"})

#: RFC 6120 §8.3.3.5 / §8.3.3.14: the conditions whose character data is a new address.
ADDRESS_CONDITIONS = frozenset({"gone", "redirect"})


class XmppError(Exception):
    """Base class of every error the XMPP edge raises on purpose."""

    #: RFC 6120 condition name that describes the failure (a hint for the caller).
    condition: str = "undefined-condition"

    def __init__(self, msg: str, condition: str | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        if condition is not None:
            self.condition = condition


class RemoteXmppError(XmppError):
    """The XMPP server violated the protocol; ``condition`` is what we answer or close with."""

    condition = "not-well-formed"


class LocalXmppError(XmppError):
    """The gateway tried to send something XMPP forbids; nothing was sent."""

    condition = "bad-request"


class LinkDown(LocalXmppError):
    """The component link is not up (no handshake yet, or the stream was lost); nothing was sent.

    ``remote-server-timeout`` is the closest stanza condition: the XMPP side could not be
    reached in time (RFC 6120 §8.3.3.17); RFC 7247 Table 2 maps it to SIP 408.
    """

    condition = "remote-server-timeout"


class LinkCongested(LinkDown):
    """The link is up but the server does not read fast enough; the stanza was not queued.

    ``resource-constraint`` (RFC 6120 §8.3.3.18, type ``wait``): retrying later may work.
    """

    condition = "resource-constraint"


class StanzaErrorException(Exception):
    """Raised by a handler: the boundary answers the stanza with :attr:`error`."""

    def __init__(self, error: StanzaError) -> None:
        super().__init__(
            f"{error.type}/{error.condition}" + (f": {error.text}" if error.text else "")
        )
        self.error = error


class Ignore(Exception):
    """Raised by a handler: drop the stanza without an answer and without logging.

    For a request that requires an answer (an ``<iq/>`` get or set, RFC 6120 §8.2.3) the
    boundary answers ``service-unavailable`` instead, the answer RFC 6120 §8.4 prescribes for a
    request nobody handles.
    """


class AddressedXMPPError(XMPPError):
    """An ``XMPPError`` for ``<gone/>`` or ``<redirect/>`` that carries the new address.

    slixmpp's ``RootStanza.exception`` has no field for the condition's character data, so
    :func:`reply_with_error` fills it in (RFC 6120 §8.3.3.5, §8.3.3.14).
    """

    def __init__(self, condition: str, uri: str, text: str = "", etype: str = "cancel") -> None:
        super().__init__(condition=cast(Any, condition), text=text, etype=cast(Any, etype))
        self.uri = uri


def stanza_error_to_xmpp_error(error: StanzaError) -> XMPPError:
    """The slixmpp exception that answers with ``error``.

    An undefined condition or type is a bug in the caller; it is logged and answered as
    ``internal-server-error`` rather than put on the wire.
    """
    if error.condition not in STANZA_ERROR_CONDITIONS or error.type not in STANZA_ERROR_TYPES:
        log.error(
            "handler raised an undefined stanza error %r/%r; answering internal-server-error",
            error.type,
            error.condition,
        )
        return XMPPError(condition="internal-server-error", etype="cancel")
    text = error.text or ""
    if error.uri and error.condition in ADDRESS_CONDITIONS:
        return AddressedXMPPError(error.condition, error.uri, text=text, etype=error.type)
    # The checks above are what slixmpp's Literal types express.
    return XMPPError(condition=cast(Any, error.condition), text=text, etype=cast(Any, error.type))


def to_xmpp_error(exc: BaseException, *, what: str = "stanza") -> XMPPError | None:
    """Practice 7's conversion: the ``XMPPError`` to answer with, or ``None`` to stay silent."""
    if isinstance(exc, Ignore):
        return None
    if isinstance(exc, XMPPError):
        return exc
    if isinstance(exc, StanzaErrorException):
        return stanza_error_to_xmpp_error(exc.error)
    if isinstance(exc, NotImplementedError):
        return XMPPError(condition="feature-not-implemented", text=str(exc), etype="cancel")
    log.error("unexpected error while handling a %s", what, exc_info=exc)
    return XMPPError(condition="internal-server-error", etype="cancel")


P = ParamSpec("P")
R = TypeVar("R")


@overload
def boundary(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R | None]]: ...
@overload
def boundary(func: Callable[P, R]) -> Callable[P, R | None]: ...


def boundary(func: Callable[P, Any]) -> Callable[P, Any]:
    """Wrap a stanza handler (sync or async) so that only ``XMPPError`` escapes it.

    ``Ignore`` makes the wrapped handler return ``None``. slixmpp turns the escaping
    ``XMPPError`` into an error reply (``RootStanza.exception``); the edge's own message path
    does the same through :func:`reply_with_error`.
    """
    what = getattr(func, "__qualname__", "stanza handler")

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            try:
                return await func(*args, **kwargs)
            except Exception as exc:
                err = to_xmpp_error(exc, what=what)
                if err is None:
                    return None
                if err is exc:
                    raise
                raise err from exc

        return async_wrapper

    @functools.wraps(func)
    def sync_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            err = to_xmpp_error(exc, what=what)
            if err is None:
                return None
            if err is exc:
                raise
            raise err from exc

    return sync_wrapper


def reply_with_error(stanza: Any, err: XMPPError) -> None:
    """Answer ``stanza`` (a slixmpp root stanza) with ``err`` through slixmpp's reply mechanism.

    RFC 6120 §8.3.1: an entity MUST NOT respond to an error stanza with another error, so an
    error stanza gets no answer (the failure is only logged).
    """
    if stanza.xml.get("type") == "error":
        log.debug("not answering an error stanza with an error (%s)", err.condition)
        return
    if not isinstance(err, AddressedXMPPError):
        stanza.exception(err)  # slixmpp's RootStanza.exception: reply().error() and send
        return
    keep_id = stanza.xml.get("id")
    reply = stanza.reply(clear=err.clear)
    if keep_id is not None:
        reply["id"] = keep_id
    reply["error"]["condition"] = err.condition
    reply["error"]["type"] = err.etype
    if err.text:
        reply["error"]["text"] = err.text
    reply["error"][err.condition] = err.uri  # <gone>xmpp:...</gone> / <redirect>...</redirect>
    reply.send()
