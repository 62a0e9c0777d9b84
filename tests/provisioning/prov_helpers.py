"""Shared strategies, sample documents and certificate helpers for the provisioning tests."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as st

from sipxmpp.provisioning.model import (
    AuthorizationPrivacy,
    ChatFeatures,
    ClearingHouse,
    Connectivity,
    Emoticon,
    Emoticons,
    Extension,
    Images,
    ImMode,
    PeerNetworkPrivacy,
    PidfMapping,
    PresenceFeatures,
    ProvisioningDocument,
    RichText,
    ViewSharingMode,
    Visibility,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "provisioning"

# --------------------------------------------------------------------------------------
# Sample documents
# --------------------------------------------------------------------------------------


def minimal(domain: str = "a.example") -> ProvisioningDocument:
    return ProvisioningDocument(domain=domain, connectivity=Connectivity(dns_names=(domain,)))


def full(domain: str = "a.example") -> ProvisioningDocument:
    return ProvisioningDocument(
        domain=domain,
        connectivity=Connectivity(dns_names=(domain, f"sip.{domain}"), srv=True, tls_only=True),
        authorization_privacy=AuthorizationPrivacy(view_sharing=ViewSharingMode.BOTH),
        presence=PresenceFeatures(
            pidf_extensions=("urn:ietf:params:xml:ns:pidf:rpid",),
            pidf_mapping=(
                PidfMapping(
                    standard="{urn:ietf:params:xml:ns:pidf:rpid}activities",
                    local="{http://example.com/ns}busy",
                ),
            ),
            list_subscription=True,
        ),
        chat=ChatFeatures(
            logging=True,
            im_modes=(ImMode.PAGE, ImMode.SESSION),
            is_composing=True,
            rich_text=RichText(supported=True, formats=("application/xhtml+xml",)),
            emoticons=Emoticons(supported=True, mapping=(Emoticon(text=":-)", meaning="smile"),)),
            images=Images(supported=True, types=("image/png",)),
            n_way_chat=True,
            file_transfer=True,
        ),
        extensions=(Extension(name="urn:example:x", values=("1", "two words")),),
    )


def restricted(domain: str, visible_to: tuple[str, ...]) -> ProvisioningDocument:
    return minimal(domain).model_copy(
        update={
            "clearing_house": ClearingHouse(
                peer_network_privacy=PeerNetworkPrivacy(
                    visibility=Visibility.RESTRICTED, visible_to=visible_to
                )
            )
        }
    )


# --------------------------------------------------------------------------------------
# Hypothesis strategies producing valid models
# --------------------------------------------------------------------------------------

_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
_top = st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True)
domains = st.builds(
    lambda labels, top: ".".join([*labels, top]), st.lists(_label, max_size=3), _top
)


def _ok_text(s: str) -> bool:
    return s == s.strip() and "\ufffe" not in s and "\uffff" not in s


texts = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=24
).filter(_ok_text)
tokens = texts.filter(lambda s: not any(c.isspace() for c in s))
uris = st.from_regex(r"[a-z][a-z0-9+.-]{0,5}:[A-Za-z0-9/._~:%=?#-]{1,24}", fullmatch=True)
ncnames = st.from_regex(r"[A-Za-z_][A-Za-z0-9._-]{0,10}", fullmatch=True)
expanded_names = st.builds(lambda u, n: "{" + u + "}" + n, uris, ncnames)
media_types = st.from_regex(r"[a-z0-9][a-z0-9.+-]{0,8}/[a-z0-9][a-z0-9.+-]{0,8}", fullmatch=True)
image_types = st.from_regex(r"image/[a-z0-9][a-z0-9.+-]{0,8}", fullmatch=True)


def _unique_list(
    strategy: st.SearchStrategy[str], max_size: int = 4
) -> st.SearchStrategy[tuple[str, ...]]:
    return st.lists(strategy, max_size=max_size, unique=True).map(tuple)


@st.composite
def documents(draw: st.DrawFn) -> ProvisioningDocument:
    domain = draw(domains)
    formats = draw(_unique_list(media_types))
    emoticons = draw(
        st.lists(st.tuples(tokens, texts), max_size=4, unique_by=lambda p: p[0]).map(tuple)
    )
    images = draw(_unique_list(image_types))
    visibility = draw(st.sampled_from(Visibility))
    visible_to = draw(_unique_list(domains)) if visibility is Visibility.RESTRICTED else ()
    mappings = draw(
        st.lists(
            st.tuples(expanded_names, expanded_names), max_size=3, unique_by=lambda p: p[0]
        ).map(tuple)
    )
    extensions = draw(
        st.lists(
            st.tuples(uris, st.lists(texts, max_size=3).map(tuple)),
            max_size=3,
            unique_by=lambda p: p[0],
        )
    )
    return ProvisioningDocument(
        domain=domain,
        connectivity=Connectivity(
            dns_names=draw(st.lists(domains, min_size=1, max_size=4, unique=True).map(tuple)),
            srv=draw(st.booleans()),
            tls_only=draw(st.booleans()),
        ),
        authorization_privacy=AuthorizationPrivacy(
            view_sharing=draw(st.sampled_from(ViewSharingMode))
        ),
        presence=PresenceFeatures(
            pidf_extensions=draw(_unique_list(uris)),
            pidf_mapping=tuple(PidfMapping(standard=s, local=lo) for s, lo in mappings),
            list_subscription=draw(st.booleans()),
        ),
        chat=ChatFeatures(
            logging=draw(st.booleans()),
            im_modes=tuple(draw(st.lists(st.sampled_from(ImMode), unique=True))),
            is_composing=draw(st.booleans()),
            rich_text=RichText(supported=bool(formats), formats=formats),
            emoticons=Emoticons(
                supported=bool(emoticons),
                mapping=tuple(Emoticon(text=t, meaning=m) for t, m in emoticons),
            ),
            images=Images(supported=bool(images), types=images),
            n_way_chat=draw(st.booleans()),
            file_transfer=draw(st.booleans()),
        ),
        clearing_house=ClearingHouse(
            peer_network_privacy=PeerNetworkPrivacy(visibility=visibility, visible_to=visible_to)
        ),
        extensions=tuple(
            Extension(name=n, values=v)
            for n, v in extensions
            if n != "urn:sipxmpp:xml:ns:pres-im-provisioning:1"
        ),
    )


# --------------------------------------------------------------------------------------
# Certificates made with the openssl CLI
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CertPair:
    cert: str
    key: str


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(directory: Path, name: str = "ca") -> CertPair:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
        "-subj", f"/CN=sipxmpp test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    return CertPair(str(directory / f"{name}.pem"), str(directory / f"{name}.key"))


def make_cert(
    directory: Path, ca: CertPair, name: str, sans: str, cn: str | None = None
) -> CertPair:
    """A leaf certificate signed by ``ca``; ``sans`` like ``DNS:a.example,URI:sip:a.example``."""
    ext = directory / f"{name}.ext"
    san_line = f"subjectAltName={sans}\n" if sans else ""
    ext.write_text(
        san_line + "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n"
    )
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn or name}",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", ca.cert, "-CAkey", ca.key,
        "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", str(ext),
        cwd=directory,
    )  # fmt: skip
    return CertPair(str(directory / f"{name}.pem"), str(directory / f"{name}.key"))
