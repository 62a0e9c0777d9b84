"""Events the SIP endpoint hands to its transaction user (TU).

The endpoint queues these; the TU drains them with ``SipEndpoint.next_event()``. Each is a
frozen, slotted dataclass. ``transaction`` is an opaque key naming a transaction in the
endpoint: the TU passes it back (for example to ``SipEndpoint.cancel``) and uses it to
pair responses with the requests it sent.
"""

from __future__ import annotations

from dataclasses import dataclass

from .address import TransportAddress
from .message import Request, Response

__all__ = [
    "RequestReceived",
    "ResponseReceived",
    "TransactionTimedOut",
    "TransportFailed",
    "MessageRejected",
    "SipEvent",
]


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new request (never a retransmission) for the TU to answer.

    For an ACK, ``transaction`` names the INVITE server transaction it acknowledges (an
    ACK for a 2xx response, RFC 6026 §7.1); ACKs are never answered.
    """

    #: The request, its top Via already carrying ``received``/``rport`` (RFC 3261
    #: §18.2.1, RFC 3581 §4), so a response built from it routes correctly.
    request: Request
    #: Where the request came from (with the edge's connection id on streams).
    source: TransportAddress
    #: The server transaction; answer with ``SipEndpoint.send_response``.
    transaction: str


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response to a request the TU sent (provisional or final, and for INVITE also
    every retransmitted 2xx while the transaction is "Accepted", RFC 6026 §8.4, so the TU
    can repeat its ACK)."""

    response: Response
    #: The client transaction key ``send_request`` returned.
    transaction: str
    #: The request as sent, including the Via the transaction layer added.
    request: Request


@dataclass(frozen=True, slots=True)
class TransactionTimedOut:
    """No final response in time (client: Timer B, C or F), or no ACK for a non-2xx final
    response (INVITE server: Timer H). The transaction is gone."""

    transaction: str
    request: Request


@dataclass(frozen=True, slots=True)
class TransportFailed:
    """The transport could not deliver a message of this transaction (RFC 3261 §17.1.4,
    §17.2.4), or the stream connection it was bound to was lost. The transaction is gone."""

    transaction: str
    request: Request


@dataclass(frozen=True, slots=True)
class MessageRejected:
    """For logs: something the endpoint answered or dropped on its own.

    ``status`` is the status code the endpoint answered with, or None if it sent nothing.
    """

    source: TransportAddress
    status: int | None
    reason: str


SipEvent = (
    RequestReceived | ResponseReceived | TransactionTimedOut | TransportFailed | MessageRejected
)
