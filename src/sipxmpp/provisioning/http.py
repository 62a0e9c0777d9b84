"""The HTTP channel: an aiohttp server for our document and a client for peers' documents.

Server
------
``GET`` (and ``HEAD``) on :data:`~.constants.WELL_KNOWN_PATH` (RFC 8615) and on the
draft's :data:`~.constants.DRAFT_PATH` (draft §5):

* the requester is identified by its TLS client certificate, read from the connection's
  ``ssl_object`` (the server context asks for a certificate and verifies it against the
  configured peer CAs, ``CERT_OPTIONAL``); no certificate means the public view;
* the document comes from :class:`~.publisher.ProvisioningPublisher` (same source as the
  SIP and XMPP channels), XML by default, JSON when ``Accept`` prefers it, ``406`` when
  nothing we offer is acceptable, ``403`` when Peer Network Privacy hides the network;
* a strong ``ETag``, ``If-None-Match`` -> ``304`` (RFC 9110 §13.1.2, weak comparison),
  ``Cache-Control: max-age`` (``private`` when answers depend on the requester), and
  ``Vary: Accept``.

Client
------
:func:`fetch_document` GETs one URL with ``If-None-Match``, never follows redirects (a
redirect to another origin would defeat the peer's TLS identity), refuses a body over
:data:`~.constants.MAX_DOCUMENT_BYTES` by ``Content-Length`` and again while reading, and
validates the body with the safe XML/JSON parsers. :func:`fetch_peer_document` tries the
well-known path, then the draft path, against a peer domain or a static address override.
Every failure is a :class:`~.errors.RemoteProvisioningError`.
"""

from __future__ import annotations

import logging
import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

import aiohttp
from aiohttp import web

from .constants import (
    DRAFT_PATH,
    MAX_DOCUMENT_BYTES,
    MEDIA_TYPE_JSON,
    MEDIA_TYPE_XML,
    WELL_KNOWN_PATH,
)
from .errors import Reason, RemoteProvisioningError
from .jsoncodec import parse_json
from .media import OFFERED_TYPES, negotiate
from .model import ProvisioningDocument, normalize_domain
from .publisher import ProvisioningPublisher
from .views import Refused, Requester, requester_from_peercert
from .xmlcodec import parse_xml

__all__ = [
    "PROVISIONING_PATHS",
    "DEFAULT_MAX_AGE",
    "DEFAULT_FETCH_TIMEOUT",
    "PUBLISHER_KEY",
    "requester_from_request",
    "create_app",
    "ProvisioningHttpServer",
    "server_ssl_context",
    "client_ssl_context",
    "FetchResult",
    "fetch_document",
    "fetch_peer_document",
]

log = logging.getLogger(__name__)

PROVISIONING_PATHS: tuple[str, ...] = (WELL_KNOWN_PATH, DRAFT_PATH)
#: Freshness we grant caches, in seconds. Revalidation is a cheap 304, and five minutes
#: bounds how long a peer acts on an outdated document after a change (XMPP peers learn
#: earlier, from the new caps ``ver``).
DEFAULT_MAX_AGE = 300
#: Whole-exchange timeout of one client fetch, in seconds (connect + TLS + body).
DEFAULT_FETCH_TIMEOUT = 10.0
#: Read size while draining a peer's response body.
_READ_CHUNK = 16 * 1024

PUBLISHER_KEY: web.AppKey[ProvisioningPublisher] = web.AppKey("provisioning_publisher")
_MAX_AGE_KEY: web.AppKey[int] = web.AppKey("provisioning_max_age")

_JSON_TYPES = frozenset({MEDIA_TYPE_JSON, "application/json"})
_XML_TYPES = frozenset({MEDIA_TYPE_XML, "application/xml", "text/xml"})


# --------------------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------------------


def requester_from_request(request: web.BaseRequest) -> Requester | None:
    """The peer network behind ``request``, from its verified TLS client certificate."""
    transport = request.transport
    if transport is None:
        return None
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    # getpeercert() returns {} when the client sent no certificate (CERT_OPTIONAL) and only
    # returns a verified certificate: an unverifiable one fails the handshake instead.
    return requester_from_peercert(ssl_object.getpeercert())


def _matches(if_none_match: tuple[aiohttp.ETag, ...] | None, etag: str) -> bool:
    if not if_none_match:
        return False
    opaque = etag.strip('"')
    # RFC 9110 §13.1.2: weak comparison; "*" matches any current representation.
    return any(tag.value in ("*", opaque) for tag in if_none_match)


async def _serve(request: web.Request) -> web.StreamResponse:
    publisher = request.app[PUBLISHER_KEY]
    max_age = request.app[_MAX_AGE_KEY]
    chosen = negotiate(request.headers.get("Accept"), OFFERED_TYPES)
    if chosen is None:
        return web.Response(
            status=406,
            text="acceptable types: " + ", ".join(OFFERED_TYPES) + "\n",
            headers={"Vary": "Accept"},
        )
    media_type = MEDIA_TYPE_JSON if chosen in _JSON_TYPES else MEDIA_TYPE_XML
    requester = requester_from_request(request)
    rendered = publisher.render(requester, media_type)
    if isinstance(rendered, Refused):
        log.info("provisioning refused to %s: %s", requester, rendered.reason)
        return web.Response(status=rendered.status_hint, text=rendered.reason + "\n")
    scope = "private" if publisher.policy.varies_by_requester else "public"
    headers = {
        "ETag": rendered.etag,
        "Cache-Control": f"{scope}, max-age={max_age}",
        "Vary": "Accept",
        "X-Content-Type-Options": "nosniff",
    }
    if _matches(request.if_none_match, rendered.etag):
        return web.Response(status=304, headers=headers)
    return web.Response(body=rendered.body, content_type=chosen, headers=headers)


def create_app(
    publisher: ProvisioningPublisher, *, max_age: int = DEFAULT_MAX_AGE
) -> web.Application:
    """An aiohttp application serving the provisioning document on both paths."""
    if max_age < 0:
        raise ValueError("max_age must not be negative")
    app = web.Application()
    app[PUBLISHER_KEY] = publisher
    app[_MAX_AGE_KEY] = max_age
    for path in PROVISIONING_PATHS:
        app.router.add_get(path, _serve)  # HEAD is added by aiohttp (allow_head=True)
    return app


def server_ssl_context(
    certfile: str,
    keyfile: str | None = None,
    *,
    peer_cafile: str | None = None,
    require_client_certificate: bool = False,
) -> ssl.SSLContext:
    """A TLS server context that asks peers for a certificate and verifies it.

    With ``peer_cafile`` the server requests client certificates (mutual TLS, draft §5)
    and verifies them against those CAs: ``CERT_OPTIONAL`` lets unidentified requesters
    through to the public view, ``require_client_certificate`` refuses them.
    """
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(certfile, keyfile)
    if peer_cafile is not None:
        ctx.load_verify_locations(cafile=peer_cafile)
        ctx.verify_mode = ssl.CERT_REQUIRED if require_client_certificate else ssl.CERT_OPTIONAL
    return ctx


def client_ssl_context(
    cafile: str | None = None, certfile: str | None = None, keyfile: str | None = None
) -> ssl.SSLContext:
    """A TLS client context verifying peers (system CAs, or ``cafile``), presenting our
    certificate if ``certfile`` is given (mutual TLS)."""
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if certfile is not None:
        ctx.load_cert_chain(certfile, keyfile)
    return ctx


class ProvisioningHttpServer:
    """The provisioning HTTP(S) endpoint as an async context manager.

    ``async with ProvisioningHttpServer(publisher, port=0) as server: server.port``
    """

    def __init__(
        self,
        publisher: ProvisioningPublisher,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        max_age: int = DEFAULT_MAX_AGE,
    ) -> None:
        self._app = create_app(publisher, max_age=max_age)
        self._host = host
        self._port = port
        self._ssl = ssl_context
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        """The bound TCP port (after :meth:`start`)."""
        if self._runner is None:
            raise RuntimeError("server not started")
        for address in self._runner.addresses:
            if isinstance(address, tuple) and len(address) >= 2:
                return int(address[1])
        raise RuntimeError("server has no bound TCP address")

    @property
    def base_url(self) -> str:
        """``http(s)://host:port`` of the running server."""
        scheme = "https" if self._ssl is not None else "http"
        return f"{scheme}://{self._host}:{self.port}"

    async def start(self) -> None:
        """Bind and start serving."""
        runner = web.AppRunner(self._app)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port, ssl_context=self._ssl)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner

    async def stop(self) -> None:
        """Stop serving and close connections."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> ProvisioningHttpServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


# --------------------------------------------------------------------------------------
# Client
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FetchResult:
    """Outcome of one successful fetch."""

    url: str
    #: 200 (``document`` set) or 304 (``document`` None: the cached one is current).
    status: int
    document: ProvisioningDocument | None
    etag: str | None
    #: ``Cache-Control: max-age`` of the response, if any.
    max_age: int | None
    #: Media type of the body (200 only).
    media_type: str | None = None


_MAX_AGE_RE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?([0-9]{1,10})\"?\s*(?:,|$)", re.IGNORECASE)


def _max_age(cache_control: str | None) -> int | None:
    if not cache_control:
        return None
    match = _MAX_AGE_RE.search(cache_control)
    return int(match.group(1)) if match else None


async def _read_capped(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    length = response.content_length
    if length is not None and length > max_bytes:
        raise RemoteProvisioningError(
            Reason.TOO_LARGE, f"Content-Length {length} exceeds the {max_bytes}-byte limit"
        )
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = await response.content.read(_READ_CHUNK)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > max_bytes:
            raise RemoteProvisioningError(
                Reason.TOO_LARGE, f"body exceeds the {max_bytes}-byte limit"
            )
        chunks.append(chunk)


async def fetch_document(
    session: aiohttp.ClientSession,
    url: str,
    *,
    etag: str | None = None,
    prefer_json: bool = False,
    ssl_context: ssl.SSLContext | bool = True,
    server_hostname: str | None = None,
    host_header: str | None = None,
    timeout: float = DEFAULT_FETCH_TIMEOUT,
    max_bytes: int = MAX_DOCUMENT_BYTES,
) -> FetchResult:
    """GET one provisioning URL and validate the answer.

    ``server_hostname`` / ``host_header`` let the caller connect to a static address while
    verifying the peer's certificate against its domain. Raises
    :class:`RemoteProvisioningError` for every failure (unreachable, TLS failure, 403,
    404, other statuses, oversize or invalid body).
    """
    accept = (
        f"{MEDIA_TYPE_JSON}, {MEDIA_TYPE_XML};q=0.9"
        if prefer_json
        else f"{MEDIA_TYPE_XML}, {MEDIA_TYPE_JSON};q=0.9"
    )
    headers = {"Accept": accept}
    if etag is not None:
        headers["If-None-Match"] = etag
    if host_header is not None:
        headers["Host"] = host_header
    try:
        async with session.get(
            url,
            headers=headers,
            allow_redirects=False,
            ssl=ssl_context,
            server_hostname=server_hostname,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            status = response.status
            new_etag = response.headers.get("ETag")
            max_age = _max_age(response.headers.get("Cache-Control"))
            if status == 304:
                if etag is None:
                    raise RemoteProvisioningError(
                        Reason.HTTP_ERROR, "304 Not Modified to an unconditional request"
                    )
                return FetchResult(url, 304, None, new_etag or etag, max_age)
            if status == 403:
                raise RemoteProvisioningError(Reason.FORBIDDEN, f"{url}: 403 Forbidden")
            if status == 404:
                raise RemoteProvisioningError(Reason.NOT_FOUND, f"{url}: 404 Not Found")
            if status == 406:
                raise RemoteProvisioningError(
                    Reason.WRONG_MEDIA_TYPE, f"{url}: 406, no acceptable representation"
                )
            if status != 200:
                raise RemoteProvisioningError(Reason.HTTP_ERROR, f"{url}: HTTP status {status}")
            media_type = response.content_type.lower()
            body = await _read_capped(response, max_bytes)
    except RemoteProvisioningError:
        raise
    except (TimeoutError, aiohttp.ClientError, ssl.SSLError, OSError) as exc:
        raise RemoteProvisioningError(
            Reason.UNREACHABLE, f"{url}: {type(exc).__name__}: {str(exc)[:200]}"
        ) from None
    if media_type in _XML_TYPES:
        document = parse_xml(body)
    elif media_type in _JSON_TYPES:
        document = parse_json(body)
    else:
        raise RemoteProvisioningError(
            Reason.WRONG_MEDIA_TYPE, f"{url}: unexpected Content-Type {media_type[:80]!r}"
        )
    return FetchResult(url, 200, document, new_etag, max_age, media_type)


async def fetch_peer_document(
    session: aiohttp.ClientSession,
    domain: str,
    *,
    address: tuple[str, int] | None = None,
    etag: str | None = None,
    prefer_json: bool = False,
    ssl_context: ssl.SSLContext | bool = True,
    paths: Sequence[str] = PROVISIONING_PATHS,
    timeout: float = DEFAULT_FETCH_TIMEOUT,
) -> FetchResult:
    """Fetch ``domain``'s document over HTTPS, trying each of ``paths`` in turn on 404.

    ``address`` is a static override ``(host, port)`` (from configuration, or from the
    caller's DNS resolution); the TLS certificate is still verified against ``domain``.
    A document describing another domain is refused.
    """
    domain = normalize_domain(domain)
    use_tls = ssl_context is not False
    scheme = "https" if use_tls else "http"
    if address is not None:
        host, port = address
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        server_hostname = domain if use_tls else None
        host_header: str | None = domain
    else:
        authority, server_hostname, host_header = domain, None, None
    last: RemoteProvisioningError | None = None
    for path in paths:
        try:
            result = await fetch_document(
                session,
                f"{scheme}://{authority}{path}",
                etag=etag,
                prefer_json=prefer_json,
                ssl_context=ssl_context,
                server_hostname=server_hostname,
                host_header=host_header,
                timeout=timeout,
            )
        except RemoteProvisioningError as exc:
            if exc.reason is Reason.NOT_FOUND:
                last = exc
                continue
            raise
        if result.document is not None and result.document.domain != domain:
            raise RemoteProvisioningError(
                Reason.INVALID_VALUE,
                f"{result.url} describes {result.document.domain}, not {domain}",
            )
        return result
    raise last or RemoteProvisioningError(Reason.NOT_FOUND, "no provisioning path to try")
