"""Throwaway X.509 material for TLS tests, made with the ``openssl`` command line tool.

A :class:`TestPki` is one certificate authority in a temporary directory; :meth:`TestPki.issue`
signs an end-entity certificate (usable as server and as client certificate) with chosen
subjectAltName entries: ``dns`` (dNSName), ``uris`` (uniformResourceIdentifier, e.g.
``sip:example.test`` as RFC 5922 §4 describes) and ``ips`` (iPAddress). With no SAN entry at
all the certificate carries only the subject CN, which is the case RFC 5922 §7.1 allows a
verifier to fall back on.

Keys are EC P-256: generating them takes milliseconds, so a test session can afford several
authorities. Nothing here touches the network or any directory but the one given.

Example::

    pki = TestPki.create(tmp_path / "ca")
    server = pki.issue("server", uris=["sip:sip.example.test"], dns=["sip.example.test"])
    ctx.load_cert_chain(server.cert, server.key)
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CertFiles", "TestPki", "openssl_available"]

#: Validity of the test certificates in days: long enough for any test run, short enough
#: that a leaked file is useless soon.
VALIDITY_DAYS = 2

#: Upper bound for one openssl invocation; key generation and signing take milliseconds.
OPENSSL_TIMEOUT_S = 30


def openssl_available() -> bool:
    """True when the ``openssl`` command line tool can be found on PATH."""
    return shutil.which("openssl") is not None


def _run(args: Sequence[str], cwd: Path) -> None:
    proc = subprocess.run(
        ["openssl", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=OPENSSL_TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {proc.stderr.strip()}")


@dataclass(frozen=True, slots=True)
class CertFiles:
    """PEM files of one end-entity certificate and its private key."""

    cert: Path
    key: Path
    #: The issuing CA certificate (PEM), for convenience.
    ca_cert: Path


@dataclass(frozen=True, slots=True)
class TestPki:
    """One self-signed certificate authority living in ``directory``."""

    __test__ = False  # not a pytest test class despite the name

    directory: Path
    ca_cert: Path
    ca_key: Path
    name: str

    @classmethod
    def create(cls, directory: Path, name: str = "sipxmpp test CA") -> TestPki:
        """Create the directory (if needed) and a new CA key and self-signed certificate."""
        directory.mkdir(parents=True, exist_ok=True)
        ca_key = directory / "ca.key"
        ca_cert = directory / "ca.pem"
        ext = directory / "ca.ext"
        ext.write_text(
            "[v3_ca]\n"
            "basicConstraints = critical, CA:TRUE\n"
            "keyUsage = critical, keyCertSign, cRLSign\n"
            "subjectKeyIdentifier = hash\n"
            "authorityKeyIdentifier = keyid:always\n"
        )
        _run(
            [
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                str(ca_key),
            ],
            directory,
        )
        _run(
            [
                "req", "-x509", "-new", "-key", str(ca_key), "-sha256",
                "-days", str(VALIDITY_DAYS), "-subj", f"/CN={name}",
                "-config", str(ext), "-extensions", "v3_ca", "-out", str(ca_cert),
            ],
            directory,
        )  # fmt: skip
        return cls(directory=directory, ca_cert=ca_cert, ca_key=ca_key, name=name)

    def issue(
        self,
        label: str,
        *,
        cn: str | None = None,
        dns: Sequence[str] = (),
        uris: Sequence[str] = (),
        ips: Sequence[str] = (),
    ) -> CertFiles:
        """Sign a certificate for ``label`` (the file stem) with the given SAN entries.

        ``cn`` defaults to the first DNS name, else the label. Without any of ``dns``,
        ``uris`` and ``ips`` the certificate has no subjectAltName extension at all.
        """
        if not label.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"label must be a plain file stem: {label!r}")
        key = self.directory / f"{label}.key"
        csr = self.directory / f"{label}.csr"
        cert = self.directory / f"{label}.pem"
        ext = self.directory / f"{label}.ext"
        common_name = cn if cn is not None else (dns[0] if dns else label)
        sans = [f"DNS:{d}" for d in dns] + [f"URI:{u}" for u in uris] + [f"IP:{i}" for i in ips]
        lines = [
            "basicConstraints = critical, CA:FALSE",
            "keyUsage = critical, digitalSignature",
            "extendedKeyUsage = serverAuth, clientAuth",
            "subjectKeyIdentifier = hash",
            "authorityKeyIdentifier = keyid",
        ]
        if sans:
            lines.append("subjectAltName = " + ", ".join(sans))
        ext.write_text("\n".join(lines) + "\n")
        _run(
            [
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                str(key),
            ],
            self.directory,
        )
        _run(
            ["req", "-new", "-key", str(key), "-subj", f"/CN={common_name}", "-out", str(csr)],
            self.directory,
        )
        _run(
            [
                "x509", "-req", "-in", str(csr), "-CA", str(self.ca_cert),
                "-CAkey", str(self.ca_key), "-CAcreateserial", "-sha256",
                "-days", str(VALIDITY_DAYS), "-extfile", str(ext), "-out", str(cert),
            ],
            self.directory,
        )  # fmt: skip
        return CertFiles(cert=cert, key=key, ca_cert=self.ca_cert)
