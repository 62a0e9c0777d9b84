"""The single source of truth behind all three provisioning channels.

:class:`ProvisioningPublisher` holds the operator's current
:class:`~sipxmpp.provisioning.views.ProvisioningPolicy` and answers, per requester:

* the HTTP and SIP OPTIONS channels: :meth:`~ProvisioningPublisher.render` gives the
  serialized body (XML or JSON), its strong ETag, and the view it came from;
* the XMPP channel: :meth:`~ProvisioningPublisher.form` gives the XEP-0128 form, and
  :meth:`~ProvisioningPublisher.disco_info` / :meth:`~ProvisioningPublisher.caps_ver`
  the disco#info payload and XEP-0115 ``ver`` that include it.

Because every channel renders from the same policy object, the three answers carry the
same 16 parameters (conformance point 76). :meth:`~ProvisioningPublisher.update` swaps
the policy atomically and calls the listeners (the runtime re-broadcasts presence with the
new caps ``ver``; HTTP clients see a new ETag on their next request).

Pure and synchronous: no I/O, no clock.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .caps import CAPS_NS, DISCO_INFO_NS, DiscoInfo, Identity, compute_ver
from .constants import MEDIA_TYPE_JSON, MEDIA_TYPE_XML
from .form import DataForm, document_to_form
from .jsoncodec import to_json
from .media import explicitly_accepts
from .model import ProvisioningDocument
from .views import ProvisioningPolicy, Refused, Requester, ViewDecision, resolve_view
from .xmlcodec import to_xml

__all__ = [
    "Rendered",
    "ProvisioningPublisher",
    "etag_for",
    "answer_options",
    "MAX_RENDER_CACHE",
]

log = logging.getLogger(__name__)

#: Rendered bodies kept per policy generation. Keys are (view, trimmed visible-to, media
#: type); a policy with N views and M restricted peers needs at most 2 * (N + M + 1).
#: The cache is dropped when full, so memory stays bounded whatever requesters do.
MAX_RENDER_CACHE = 1024


def etag_for(body: bytes) -> str:
    """A strong entity tag (RFC 9110 §8.8.3) derived from the body bytes."""
    digest = hashlib.sha256(body).digest()[:18]
    return '"' + base64.urlsafe_b64encode(digest).decode("ascii") + '"'


@dataclass(frozen=True, slots=True)
class Rendered:
    """A serialized document for one requester."""

    body: bytes
    #: :data:`MEDIA_TYPE_XML` or :data:`MEDIA_TYPE_JSON`.
    media_type: str
    #: Strong ETag of ``body``, quoted.
    etag: str
    document: ProvisioningDocument
    #: The view name (``"public"`` or a per-peer view).
    view: str


_Listener = Callable[[ProvisioningPolicy], None]


class ProvisioningPublisher:
    """Current provisioning policy plus memoized renderings of it."""

    def __init__(self, policy: ProvisioningPolicy) -> None:
        _check_renderable(policy)
        self._policy = policy
        self._generation = 0
        self._cache: dict[tuple[str, tuple[str, ...], str], Rendered] = {}
        self._listeners: list[_Listener] = []

    @property
    def policy(self) -> ProvisioningPolicy:
        """The policy in force."""
        return self._policy

    @property
    def generation(self) -> int:
        """Incremented by every effective :meth:`update`."""
        return self._generation

    def update(self, policy: ProvisioningPolicy) -> bool:
        """Install ``policy``; return False (and notify nobody) if nothing changed.

        Raises :class:`~sipxmpp.provisioning.errors.LocalProvisioningError` before
        switching if a document of the new policy could not be published.
        """
        if policy == self._policy:
            return False
        _check_renderable(policy)
        self._policy = policy
        self._generation += 1
        self._cache.clear()
        for listener in list(self._listeners):
            try:
                listener(policy)
            except Exception:
                log.exception("provisioning change listener %r failed", listener)
        return True

    def add_listener(self, listener: _Listener) -> Callable[[], None]:
        """Call ``listener(policy)`` after each change; returns a function that removes it."""
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    def resolve(self, requester: Requester | None) -> ViewDecision:
        """Which document ``requester`` sees (see :func:`~.views.resolve_view`)."""
        return resolve_view(self._policy, requester)

    def render(
        self, requester: Requester | None, media_type: str = MEDIA_TYPE_XML
    ) -> Rendered | Refused:
        """The body served to ``requester`` in ``media_type`` (XML or JSON type)."""
        if media_type not in (MEDIA_TYPE_XML, MEDIA_TYPE_JSON):
            raise ValueError(f"cannot render {media_type}")
        decision = self.resolve(requester)
        if isinstance(decision, Refused):
            return decision
        key = (decision.view, decision.redacted_for, media_type)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        body = (
            to_xml(decision.document)
            if media_type == MEDIA_TYPE_XML
            else to_json(decision.document)
        )
        rendered = Rendered(body, media_type, etag_for(body), decision.document, decision.view)
        if len(self._cache) >= MAX_RENDER_CACHE:
            self._cache.clear()
        self._cache[key] = rendered
        return rendered

    def form(self, requester: Requester | None) -> DataForm | Refused:
        """The XEP-0128 form for ``requester``."""
        decision = self.resolve(requester)
        if isinstance(decision, Refused):
            return decision
        return document_to_form(decision.document)

    def disco_info(
        self,
        requester: Requester | None,
        identities: Sequence[Identity],
        features: Sequence[str],
        extra_forms: Sequence[DataForm] = (),
    ) -> DiscoInfo:
        """The gateway's disco#info payload for ``requester``.

        ``identities``/``features`` describe the gateway itself (the runtime's choice);
        the disco#info and caps features are added if missing, and the provisioning
        form is appended when the requester may see it. A refused
        requester still gets the identities and features, just no form (XEP-0128 §4: only
        put in information the requester may see).
        """
        form = self.form(requester)
        forms = tuple(extra_forms) + (() if isinstance(form, Refused) else (form,))
        # XEP-0030 §3.1: every entity supports disco#info. XEP-0115 §7 ("Determining
        # Support"): an entity using caps advertises the caps feature. Added if omitted.
        all_features = tuple(dict.fromkeys((*features, DISCO_INFO_NS, CAPS_NS)))
        return DiscoInfo(tuple(identities), all_features, forms)

    def caps_ver(
        self,
        requester: Requester | None,
        identities: Sequence[Identity],
        features: Sequence[str],
        hash_name: str = "sha-1",
        extra_forms: Sequence[DataForm] = (),
    ) -> str:
        """XEP-0115 ``ver`` of :meth:`disco_info` for ``requester``."""
        return compute_ver(self.disco_info(requester, identities, features, extra_forms), hash_name)


def _check_renderable(policy: ProvisioningPolicy) -> None:
    for document in (policy.public, *(v.document for v in policy.views)):
        to_xml(document)
        to_json(document)


def answer_options(
    publisher: ProvisioningPublisher, accept: str | None, requester: Requester | None
) -> Rendered | Refused | None:
    """What a SIP OPTIONS request to the gateway gets, as far as provisioning goes.

    * None: the request's ``Accept`` does not name our XML type, so the runtime sends
      its usual OPTIONS answer (RFC 3261 §11.2; the default body type is SDP);
    * :class:`Refused`: Peer Network Privacy hides the network from the requester
      (answer 403 with no provisioning body);
    * :class:`Rendered`: answer 200 with ``Content-Type: application/pres-im-provisioning+xml``
      and this body, plus the runtime's ``Allow``, ``Accept``, ``Supported`` and
      ``Allow-Events`` headers (RFC 6665 §4.4.4).

    ``requester`` comes from the mutual-TLS peer certificate of the SIP connection
    (:func:`~.views.requester_from_peercert`); None over UDP/TCP or without a certificate.
    """
    if not explicitly_accepts(accept, MEDIA_TYPE_XML):
        return None
    return publisher.render(requester, MEDIA_TYPE_XML)
