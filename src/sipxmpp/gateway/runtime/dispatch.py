"""Routing of SIP core events to the runtime's services (pager IM, presence, provisioning...).

Each service implements :class:`SipService`. Requests are routed by method; the responses,
timeouts and transport failures of a client transaction go back to the service that sent
the request (it registered the transaction key through :class:`SipSender`). Nothing here
looks inside a message beyond its method: what a request means is the service's business.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from sipxmpp.gateway.runtime.logs import kv
from sipxmpp.gateway.sip.address import TransportAddress
from sipxmpp.gateway.sip.events import (
    RequestReceived,
    ResponseReceived,
    TransactionTimedOut,
    TransportFailed,
)
from sipxmpp.gateway.sip.message import Request, Response
from sipxmpp.gateway.transport.manager import SipTransportManager

__all__ = ["SipService", "SipDispatcher", "SipSender"]

log = logging.getLogger("sipxmpp.dispatch")

#: Client transactions whose owner is remembered. A transaction ends within Timer F/B
#: (32 s), or Timer C for INVITE; the map is cleaned on every final outcome, and this bound
#: only guards against a leak turning into unbounded memory (oldest entries are dropped).
MAX_OWNED_TRANSACTIONS = 400_000

#: How long an INVITE client transaction's owner is kept after its first 2xx: further 2xx
#: (retransmissions, other forks) arrive for up to 64*T1 (RFC 6026 Timer M, §13.2.2.4) and
#: must reach the INVITE layer to be ACKed. 64 * T1 with the default T1 of 0.5 s, plus slack.
INVITE_2XX_OWNER_LINGER = 40.0


class SipService(Protocol):
    """A runtime service fed by the SIP core."""

    def handle_sip_event(self, event: object) -> None: ...


class SipDispatcher:
    """Routes SIP events: requests by method, client-transaction outcomes by owner."""

    def __init__(self, default: SipService, clock: Callable[[], float] = time.monotonic) -> None:
        self._default = default
        self._by_method: dict[str, SipService] = {}
        self._owners: dict[str, SipService] = {}
        self._clock = clock
        #: (release time, key) of INVITE transactions kept after their first 2xx, oldest first.
        self._lingering: deque[tuple[float, str]] = deque()

    def route_method(self, method: str, service: SipService) -> None:
        self._by_method[method.upper()] = service

    def own(self, transaction: str, service: SipService) -> None:
        owners = self._owners
        owners[transaction] = service
        if len(owners) > MAX_OWNED_TRANSACTIONS:
            del owners[next(iter(owners))]

    def handle(self, event: object) -> None:
        if isinstance(event, RequestReceived):
            service = self._by_method.get(event.request.method, self._default)
        elif isinstance(event, ResponseReceived):
            status = event.response.status
            if status < 200:
                service = self._owners.get(event.transaction, self._default)
            elif status < 300 and event.request.method == "INVITE":
                service = self._owners.get(event.transaction, self._default)
                self._lingering.append((self._clock() + INVITE_2XX_OWNER_LINGER, event.transaction))
            else:
                service = self._owners.pop(event.transaction, self._default)
        elif isinstance(event, TransactionTimedOut | TransportFailed):
            service = self._owners.pop(event.transaction, self._default)
        else:
            service = self._default
        lingering = self._lingering
        if lingering and lingering[0][0] <= self._clock():
            now = self._clock()
            while lingering and lingering[0][0] <= now:
                self._owners.pop(lingering.popleft()[1], None)
        try:
            service.handle_sip_event(event)
        except Exception:
            log.exception("sip.event_failed", extra=kv(event=type(event).__name__))


class SipSender:
    """A service's handle on the SIP side: drive the core, then let the edge transmit.

    ``owner`` receives the outcome events of the requests sent through this handle.

    Requests are transmitted coalesced: the requests a service hands to the core while the
    event loop runs one callback (e.g. the MESSAGEs made of one read from the XMPP server,
    dozens of them per read under load) leave with one ``transmit`` at the next loop
    iteration, back to back, in the order the core produced them, instead of one ``transmit``
    (output flush, event drain, timer re-arm) per message (issue 2). The delay is that of one
    loop iteration, as for the XMPP edge's coalesced writes; anything that transmits meanwhile
    (a timer, a received datagram) sends the waiting datagrams with its own. The transaction's
    owner is registered at once, so its outcome finds its service whenever it comes.
    Responses go out at once: they are mostly sent while the edge is transmitting already
    (the 202s of a batch of SIP MESSAGEs), where ``transmit`` folds the nested call into its
    own flush.
    """

    def __init__(
        self, transport: SipTransportManager, dispatcher: SipDispatcher, owner: SipService
    ) -> None:
        self._transport = transport
        self._dispatcher = dispatcher
        self._owner = owner
        self._transmit_handle: asyncio.Handle | None = None

    def send_request(self, request: Request, destination: TransportAddress) -> str:
        loop = asyncio.get_running_loop()
        key = str(
            self._transport.core.send_request(request, destination, loop.time())  # type: ignore[attr-defined]
        )
        self._dispatcher.own(key, self._owner)
        if self._transmit_handle is None:
            self._transmit_handle = loop.call_soon(self._transmit)
        return key

    def send_response(self, response: object) -> None:
        assert isinstance(response, Response)
        t = self._transport
        t.core.send_response(response, asyncio.get_running_loop().time())  # type: ignore[attr-defined]
        t.transmit()

    def _transmit(self) -> None:
        self._transmit_handle = None
        self._transport.transmit()
