"""Error families of the SIP core (the h11 / aioquic pattern).

* :class:`RemoteSipError`: the peer sent something we cannot accept. It carries the
  status code the core answers with (``status_hint``) when the offending message is a
  request; a malformed *response* is dropped (RFC 3261 §18.1.2 leaves nothing to answer).
* :class:`LocalSipError`: our own code tried to send something illegal. It is a bug on
  our side, never a peer's fault, and is never turned into a wire response.

Both derive from :class:`SipError`, so callers that do not care can catch one type.
"""

from __future__ import annotations

__all__ = ["SipError", "RemoteSipError", "LocalSipError"]


class SipError(Exception):
    """Base class of every error the SIP core raises on purpose."""

    status_hint: int = 400
    reason_hint: str = "Bad Request"
    #: On a stream: the framing is lost and the connection must be closed (RFC 3261 §18.3).
    fatal: bool = False

    def __init__(self, msg: str, status_hint: int | None = None, reason_hint: str | None = None):
        super().__init__(msg)
        self.msg = msg
        if status_hint is not None:
            self.status_hint = status_hint
        if reason_hint is not None:
            self.reason_hint = reason_hint


class RemoteSipError(SipError):
    """The peer violated the protocol; answer with ``status_hint`` if the message was a request."""


class LocalSipError(SipError):
    """We tried to produce something the protocol forbids."""

    status_hint = 500
    reason_hint = "Server Internal Error"
