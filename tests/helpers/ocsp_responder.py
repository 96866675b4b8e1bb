"""A local OCSP responder and an OCSP-aware test PKI (helper O).

``OCSPResponder`` is an HTTP server on 127.0.0.1 (random port, its own thread, so it serves an
in-process pynatsd and a nats-server subprocess alike) answering RFC 6960 requests by POST
(application/ocsp-request body) and GET (``/<base64 DER>``). Each certificate serial has a status
(``good`` / ``revoked`` / ``unknown``; ``default`` for others); ``mode`` overrides everything:
``"ok"`` (answer), ``"unreachable"`` (HTTP 503), ``"get_only"`` (503 to POST), ``"expired"`` (a response whose NextUpdate is
already past), ``"no_next_update"`` (NextUpdate omitted). Requests are counted (``requests``,
``wait_requests``). Responses are signed by the CA, or by a delegated responder certificate.

``make_ocsp_pki(dir, url)`` writes a CA, a delegated OCSP signer, server certificates with the
AIA OCSP URL (with and without the TLS-feature Must-Staple extension) and client certificates
with the AIA URL, as PEM files.
"""

from __future__ import annotations

import base64
import datetime as dt
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Cert:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    cert_file: str
    key_file: str

    @property
    def serial(self) -> int:
        return self.cert.serial_number


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pynatsd ocsp tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_cert(
    directory: Path, stem: str, cn: str, *, issuer: Cert | None = None, ca: bool = False,
    ocsp_urls: tuple[str, ...] = (), must_staple: bool = False, server: bool = False,
    client: bool = False, ocsp_signing: bool = False, chain: tuple[Cert, ...] = (),
) -> Cert:
    """One certificate (EC P-256) signed by ``issuer`` (self-signed without). ``chain``: more
    certificates appended to the cert file after the leaf."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer.cert.subject if issuer else _name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
                            critical=False)
    if ca:
        b = b.add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
    else:
        b = b.add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                            critical=True)
    ekus = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
    if ocsp_signing:
        ekus.append(ExtendedKeyUsageOID.OCSP_SIGNING)
    if ekus:
        b = b.add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
    if server:
        b = b.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]),
            critical=False)
    if ocsp_urls:
        b = b.add_extension(x509.AuthorityInformationAccess([
            x509.AccessDescription(AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(u))
            for u in ocsp_urls]), critical=False)
    if must_staple:
        b = b.add_extension(x509.TLSFeature([x509.TLSFeatureType.status_request]), critical=False)
    cert = b.sign(issuer.key if issuer else key, hashes.SHA256())
    cert_file = directory / f"{stem}-cert.pem"
    key_file = directory / f"{stem}-key.pem"
    cert_file.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (cert, *(x.cert for x in chain))))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return Cert(cert, key, str(cert_file), str(key_file))


@dataclass(frozen=True)
class OCSPPKI:
    dir: Path
    ca: Cert
    delegate: Cert  # signed by ca, OCSPSigning EKU
    not_delegate: Cert  # signed by ca, no OCSPSigning EKU
    server_staple: Cert  # AIA + Must-Staple
    server_plain: Cert  # AIA, no Must-Staple
    server_no_aia: Cert  # Must-Staple, no AIA
    server_chain: Cert  # AIA + Must-Staple, cert file holds leaf + CA
    client: Cert  # AIA
    client2: Cert  # AIA (a second client, to revoke separately)
    client_no_aia: Cert

    @property
    def ca_file(self) -> str:
        return self.ca.cert_file


def make_ocsp_pki(directory: Path, url: str) -> OCSPPKI:
    directory.mkdir(parents=True, exist_ok=True)
    ca = make_cert(directory, "ca", "OCSP Test CA", ca=True)
    urls = (url,)
    return OCSPPKI(
        dir=directory,
        ca=ca,
        delegate=make_cert(directory, "responder", "OCSP Responder", issuer=ca, ocsp_signing=True),
        not_delegate=make_cert(directory, "not-responder", "Not A Responder", issuer=ca),
        server_staple=make_cert(directory, "server-staple", "localhost", issuer=ca, ocsp_urls=urls,
                                must_staple=True, server=True),
        server_plain=make_cert(directory, "server-plain", "localhost", issuer=ca, ocsp_urls=urls, server=True),
        server_no_aia=make_cert(directory, "server-no-aia", "localhost", issuer=ca, must_staple=True, server=True),
        server_chain=make_cert(directory, "server-chain", "localhost", issuer=ca, ocsp_urls=urls,
                               must_staple=True, server=True, chain=(ca,)),
        client=make_cert(directory, "client", "client one", issuer=ca, ocsp_urls=urls, client=True),
        client2=make_cert(directory, "client2", "client two", issuer=ca, ocsp_urls=urls, client=True),
        client_no_aia=make_cert(directory, "client-no-aia", "client plain", issuer=ca, client=True),
    )


def make_response(
    request_der: bytes, signer: Cert, status: str, this_update: dt.datetime, next_update: dt.datetime | None,
    *, embed: bool = False,
) -> bytes:
    """A DER OCSP response answering ``request_der`` with ``status``, signed by ``signer``
    (``embed``: include the signer's certificate, as a delegated responder does)."""
    req = ocsp.load_der_ocsp_request(request_der)
    cert_status = {"good": ocsp.OCSPCertStatus.GOOD, "revoked": ocsp.OCSPCertStatus.REVOKED,
                   "unknown": ocsp.OCSPCertStatus.UNKNOWN}[status]
    b = ocsp.OCSPResponseBuilder().add_response_by_hash(
        issuer_name_hash=req.issuer_name_hash, issuer_key_hash=req.issuer_key_hash,
        serial_number=req.serial_number, algorithm=req.hash_algorithm, cert_status=cert_status,
        this_update=this_update, next_update=next_update,
        revocation_time=this_update - dt.timedelta(hours=1) if status == "revoked" else None,
        revocation_reason=None,
    ).responder_id(ocsp.OCSPResponderEncoding.HASH, signer.cert)
    if embed:
        b = b.certificates([signer.cert])
    return b.sign(signer.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


class OCSPResponder:
    """See the module docstring. Use as a context manager; ``url`` once started."""

    def __init__(self) -> None:
        self.ca: Cert | None = None
        self.signer: Cert | None = None  # None: the issuer of the certificate asked about signs
        self.issuers: list[Cert] = []  # intermediate CAs answered for (besides ``ca``)
        self.statuses: dict[int, str] = {}
        self.default = "good"
        self.mode = "ok"
        self.validity = dt.timedelta(hours=1)
        self.requests: list[tuple[str, int | None]] = []  # (method, serial asked about)
        self._cond = threading.Condition()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> OCSPResponder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def __enter__(self) -> OCSPResponder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_status(self, cert: Cert, status: str) -> None:
        self.statuses[cert.serial] = status

    def count(self, serial: int | None = None) -> int:
        with self._cond:
            return sum(1 for _, s in self.requests if serial is None or s == serial)

    def wait_requests(self, n: int, timeout: float = 10.0, serial: int | None = None) -> int:
        """Block until at least ``n`` requests (about ``serial``) arrived; returns the count."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = sum(1 for _, s in self.requests if serial is None or s == serial)
                left = deadline - time.monotonic()
                if got >= n or left <= 0:
                    return got
                self._cond.wait(left)

    # -- answering -----------------------------------------------------------------------------

    def response_for(self, der: bytes, method: str = "POST") -> tuple[int, bytes, int | None]:
        req = ocsp.load_der_ocsp_request(der)
        serial = req.serial_number
        if self.mode == "unreachable" or (self.mode == "get_only" and method == "POST"):
            return 503, b"down", serial
        assert self.ca is not None, "set responder.ca first"
        status = self.statuses.get(serial, self.default)
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        this_update = now - dt.timedelta(minutes=1)
        next_update: dt.datetime | None = now + self.validity
        if self.mode == "expired":
            this_update, next_update = now - dt.timedelta(hours=3), now - dt.timedelta(hours=2)
        elif self.mode == "no_next_update":
            next_update = None
        issuer = next((c for c in self.issuers
                       if x509.SubjectKeyIdentifier.from_public_key(c.key.public_key()).digest == req.issuer_key_hash),
                      self.ca)
        return 200, make_response(der, self.signer or issuer, status, this_update, next_update,
                                  embed=self.signer is not None), serial

    def _record(self, method: str, serial: int | None) -> None:
        with self._cond:
            self.requests.append((method, serial))
            self._cond.notify_all()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        responder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
                pass

            def _answer(self, method: str, der: bytes) -> None:
                try:
                    code, body, serial = responder.response_for(der, method)
                except Exception:  # noqa: BLE001 - a malformed request
                    code, body, serial = 400, b"bad request", None
                responder._record(method, serial)
                self.send_response(code)
                self.send_header("Content-Type", "application/ocsp-response")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("Content-Length") or 0)
                self._answer("POST", self.rfile.read(n))

            def do_GET(self) -> None:  # noqa: N802
                enc = urllib.parse.unquote(self.path.lstrip("/"))
                try:
                    der = base64.b64decode(enc)
                except ValueError:
                    der = b""
                self._answer("GET", der)

        return Handler
