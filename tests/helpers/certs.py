"""Test certificate factory: one CA-rooted set of PEM files per test session.

``make_cert_set(dir)`` writes and returns a ``CertSet``: a trusted CA, server certificates
(ECDSA and RSA, for localhost / 127.0.0.1 / ::1), client certificates alice and bob with SANs, an
untrusted CA and a client it signed, an expired client and an expired server certificate, a key
that matches no certificate, and an encrypted copy of the server key with its passphrase file.
``issue_extra`` makes more certificates (custom subjects/SANs) from the same CA for a test.

Session fixture example::

    @pytest.fixture(scope="session")
    def certs(tmp_path_factory): return make_cert_set(tmp_path_factory.mktemp("certs"))
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pynatsd.tls.certs import PrivateKey, issue, name, new_key, write_cert, write_key


@dataclass(frozen=True)
class Issued:
    """A certificate and its key, in memory and on disk."""

    cert: x509.Certificate
    key: PrivateKey
    cert_file: str
    key_file: str

    @property
    def spki_sha256(self) -> str:
        der = self.cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return hashlib.sha256(der).hexdigest()

    @property
    def cert_sha256(self) -> str:
        return hashlib.sha256(self.cert.public_bytes(serialization.Encoding.DER)).hexdigest()


@dataclass(frozen=True)
class CertSet:
    dir: Path
    ca: Issued  # ca.pem: the trusted CA
    server: Issued  # ECDSA P-256, CN=localhost, SANs localhost, 127.0.0.1, ::1
    server_rsa: Issued  # same names, RSA 2048 (for ECDHE-RSA cipher suites)
    alice: Issued  # CN=alice,O=Company,C=US + email alice@example.com, DNS alice.example.com
    bob: Issued  # CN=bob,OU=Eng,O=Company + URI spiffe://example.com/bob
    untrusted_ca: Issued
    untrusted_client: Issued  # CN=mallory, signed by untrusted_ca
    expired_client: Issued  # CN=old, signed by ca, expired yesterday
    expired_server: Issued  # localhost, signed by ca, expired yesterday
    wrong_key_file: str  # a key matching none of the certificates
    encrypted_key_file: str  # server's key, encrypted
    key_password: str
    key_password_file: str
    not_a_pem_file: str  # garbage contents

    def issue_extra(
        self,
        stem: str,
        subject: x509.Name,
        *,
        dns: tuple[str, ...] = (),
        emails: tuple[str, ...] = (),
        uris: tuple[str, ...] = (),
        ips: tuple[str, ...] = (),
        server: bool = False,
    ) -> Issued:
        """A further client (or server) certificate signed by the trusted CA."""
        return _make(
            self.dir,
            stem,
            subject,
            (self.ca.cert, self.ca.key),
            dns=dns,
            emails=emails,
            uris=uris,
            ips=ips,
            server=server,
            client=True,
        )


def _make(
    directory: Path,
    stem: str,
    subject: x509.Name,
    issuer: tuple[x509.Certificate, PrivateKey] | None,
    *,
    key_kind: str = "ec",
    **kw: object,
) -> Issued:
    key = new_key(key_kind)
    cert = issue(subject, key, issuer=issuer, **kw)  # type: ignore[arg-type]
    cert_file = directory / f"{stem}-cert.pem"
    key_file = directory / f"{stem}-key.pem"
    write_cert(cert_file, cert)
    write_key(key_file, key)
    return Issued(cert, key, str(cert_file), str(key_file))


def make_cert_set(directory: Path) -> CertSet:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    past: dict[str, Any] = {"not_before": now - dt.timedelta(days=30), "not_after": now - dt.timedelta(days=1)}

    ca = _make(directory, "ca", name("Test CA", O="pynatsd tests"), None, ca=True)
    (directory / "ca.pem").write_bytes(Path(ca.cert_file).read_bytes())
    signer = (ca.cert, ca.key)
    server_names: dict[str, Any] = {"dns": ("localhost",), "ips": ("127.0.0.1", "::1")}
    server = _make(
        directory,
        "server",
        name("localhost", O="pynatsd tests"),
        signer,
        server=True,
        client=True,
        **server_names,
    )
    server_rsa = _make(
        directory,
        "server-rsa",
        name("localhost", O="pynatsd tests"),
        signer,
        key_kind="rsa",
        server=True,
        client=True,
        **server_names,
    )
    alice = _make(
        directory,
        "alice",
        name("alice", C="US", O="Company"),
        signer,
        client=True,
        emails=("alice@example.com",),
        dns=("alice.example.com",),
    )
    bob = _make(
        directory,
        "bob",
        name("bob", O="Company", OU="Eng"),
        signer,
        client=True,
        uris=("spiffe://example.com/bob",),
    )
    untrusted_ca = _make(directory, "untrusted-ca", name("Untrusted CA"), None, ca=True)
    untrusted_client = _make(
        directory, "mallory", name("mallory"), (untrusted_ca.cert, untrusted_ca.key), client=True
    )
    expired_client = _make(directory, "expired-client", name("old"), signer, client=True, **past)
    expired_server = _make(
        directory, "expired-server", name("localhost"), signer, server=True, **server_names, **past
    )

    wrong_key_file = directory / "wrong-key.pem"
    write_key(wrong_key_file, new_key())
    password = "correct horse battery staple"
    encrypted_key_file = directory / "server-key-encrypted.pem"
    write_key(encrypted_key_file, server.key, password.encode())
    password_file = directory / "server-key-password.txt"
    password_file.write_text(password + "\n")
    garbage = directory / "garbage.pem"
    garbage.write_text("this is not a PEM file\n")
    return CertSet(
        dir=directory,
        ca=Issued(ca.cert, ca.key, str(directory / "ca.pem"), ca.key_file),
        server=server,
        server_rsa=server_rsa,
        alice=alice,
        bob=bob,
        untrusted_ca=untrusted_ca,
        untrusted_client=untrusted_client,
        expired_client=expired_client,
        expired_server=expired_server,
        wrong_key_file=str(wrong_key_file),
        encrypted_key_file=str(encrypted_key_file),
        key_password=password,
        key_password_file=str(password_file),
        not_a_pem_file=str(garbage),
    )
