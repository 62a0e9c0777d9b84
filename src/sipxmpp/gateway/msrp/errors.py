"""Error families of the MSRP core (the h11 / aioquic pattern, same shape as ``sip/errors.py``).

* :class:`RemoteMsrpError`: the peer sent something we cannot accept. ``status`` is the
  RFC 4975 §10 status code the core answers with when the offending message is a request
  whose Failure-Report asks for a response (§7.1.4). ``fatal`` marks errors after which the
  byte stream cannot be resynchronised (no transaction id, so no end-line to look for): the
  connection must be closed (§7.3: a receiver that cannot frame the stream has no other option).
* :class:`LocalMsrpError`: our own code tried to build or send something RFC 4975 forbids, or
  asked for something a configured limit refuses. It is never turned into a wire response.

Both derive from :class:`MsrpError`, so callers that do not care can catch one type.
"""

from __future__ import annotations

__all__ = [
    "MsrpError",
    "RemoteMsrpError",
    "LocalMsrpError",
    "SessionLimitError",
    "STATUS_COMMENTS",
    "status_comment",
]

#: RFC 4975 §10 response codes with the comment we put on the status line. The comment
#: is free text (§9 ``comment = utf8text``); these are the conventional phrases.
STATUS_COMMENTS: dict[int, str] = {
    200: "OK",
    400: "Bad Request",  # §10: the request was unintelligible
    403: "Forbidden",  # §10: the action is not allowed
    408: "Request Timeout",  # §10: downstream transaction timeout; also our local 30 s timer
    413: "Message Too Large",  # §10: stop sending the message
    415: "Unsupported Media Type",  # §10: Content-Type not understood/accepted
    423: "Parameter Out Of Bounds",  # §10: a parameter (here: Byte-Range) out of bounds
    481: "No Such Session",  # §10: the session does not exist
    501: "Not Implemented",  # §10: unknown request method
    506: "Session Bound Elsewhere",  # §10: session already bound to another connection
}


def status_comment(status: int) -> str:
    """The conventional comment for ``status`` (a generic one for unlisted codes)."""
    comment = STATUS_COMMENTS.get(status)
    if comment is not None:
        return comment
    return "OK" if 200 <= status < 300 else "Error"


class MsrpError(Exception):
    """Base class of every error the MSRP core raises on purpose."""

    status: int = 400

    def __init__(self, msg: str, status: int | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        if status is not None:
            self.status = status

    @property
    def comment(self) -> str:
        """Status-line comment matching :attr:`status`."""
        return status_comment(self.status)


class RemoteMsrpError(MsrpError):
    """The peer violated RFC 4975; answer with ``status`` if a response is due.

    ``fatal=True`` means the stream is out of sync and the connection must be closed.
    """

    def __init__(self, msg: str, status: int | None = None, *, fatal: bool = False) -> None:
        super().__init__(msg, status)
        self.fatal = fatal


class LocalMsrpError(MsrpError):
    """We tried to produce something RFC 4975 forbids (a bug on our side, or a refused call)."""

    status = 500


class SessionLimitError(LocalMsrpError):
    """A configured session limit refuses a new session; the SIP layer should decline the offer."""

    status = 403
