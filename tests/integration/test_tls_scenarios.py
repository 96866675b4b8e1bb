"""Client-port TLS as a new user meets it, on nats-server and pynatsd side by side.

Each scenario runs the same config file / flags against the real nats-server and pynatsd and
compares what a user observes: whether it starts (exit code, the gist of a refusal, -t), the
INFO and /varz TLS fields, what nats-py, ``openssl s_client`` (chain, suite, group, OCSP staple)
and a pyOpenSSL client see, the -ERR texts of certificate-mapped users (email, DNS and URI SANs,
RFC 4514 DN, Go subject string), what a rejected or stalled client sees, /connz over HTTPS,
``--signal reload`` rotating a certificate (and what a reload may not change), the --tls* flags
over a config file, and trust questions (a ca_file with only the intermediate CA, key usages).

The certificates are the ones users make: an RSA 2048 CA and server certificate made with the
``openssl`` command line the way the TLS guides do it (``openssl req`` / ``openssl x509 -req``
with an extension file for the SANs), files as openssl leaves them (text dump, ``ecparam``
keys, encrypted keys), and the set ``pynatsd certs DIR --client alice`` writes.
tests/interop/test_tls_differential.py already compares the single options (mTLS refusals,
timeouts, INFO fields, pins, negotiation, FIPS, -t verdicts) on the test CertSet; the scenarios
here are whole flows and the gaps between those. Where pynatsd deliberately differs (documented in
README.md) or where only the TLS library's wording differs, the test says so and checks both sides.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import pytest
from OpenSSL import SSL
from OpenSSL._util import lib as _lib
from tests.helpers.certs import make_cert_set
from tests.helpers.ocsp_responder import OCSPResponder, make_ocsp_pki
from tests.helpers.servers import ServerProcess, free_port, impl_command
from tests.integration.test_client_tls import _info_line, _read, pyopenssl_nats, tls_exchange

HOST = "127.0.0.1"
IMPLS = ("nats", "pynatsd")
Pair = dict[str, ServerProcess]
OPENSSL = shutil.which("openssl") or "openssl"


# ---- certificates made with the openssl command line, as the TLS guides do -------------------------


@dataclass(frozen=True)
class Who:
    """A certificate and key file pair (made by openssl or by ``pynatsd certs``)."""

    cert_file: str
    key_file: str


@dataclass(frozen=True)
class GuidePKI:
    dir: Path
    ca: str
    server: Who  # RSA 2048, CN=localhost, SANs DNS:localhost, IP:127.0.0.1
    rotated: Who  # the same names, O=Rotated (for certificate rotation)
    carol: Who  # email, DNS and URI SANs; subject C=US, ST=CA, O=Acme, OU=Eng, CN=carol
    dave: Who  # only a DNS SAN
    erin: Who  # only a URI SAN
    frank: Who  # no SANs: O=Acme, OU=Ops, CN=frank
    grace: Who  # no SANs, an emailAddress in the subject: CN=grace, O=Acme, emailAddress=...
    other_ca_client: Who  # signed by another CA

    def spki(self, who: Who) -> str:
        """The pin of a certificate, computed with the README's openssl pipeline."""
        pub = _ossl("x509", "-in", who.cert_file, "-noout", "-pubkey")
        der = _ossl("pkey", "-pubin", "-outform", "DER", stdin=pub)
        return _ossl("dgst", "-sha256", "-r", stdin=der).split()[0].decode()


def _ossl(*args: str, stdin: bytes | None = None, cwd: Path | None = None) -> bytes:
    p = subprocess.run([OPENSSL, *args], input=stdin, capture_output=True, cwd=cwd, timeout=30)
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout


def _issue(d: Path, stem: str, subj: str, ext: str, *, ca: str = "ca", rsa: bool = False) -> Who:
    key = ["-newkey", "rsa:2048"] if rsa else ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    _ossl("req", *key, "-nodes", "-keyout", f"{stem}-key.pem", "-out", f"{stem}.csr", "-subj", subj, cwd=d)
    (d / f"{stem}.ext").write_text(ext)
    _ossl("x509", "-req", "-in", f"{stem}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}-key.pem", "-CAcreateserial",
          "-out", f"{stem}-cert.pem", "-days", "30", "-extfile", f"{stem}.ext", cwd=d)
    return Who(str(d / f"{stem}-cert.pem"), str(d / f"{stem}-key.pem"))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> GuidePKI:
    d = tmp_path_factory.mktemp("guide-pki")
    for ca in ("ca", "other-ca"):
        _ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}-key.pem", "-out", f"{ca}.pem",
              "-days", "30", "-subj", f"/CN={ca} guide", cwd=d)
    server_ext = "subjectAltName = DNS:localhost, IP:127.0.0.1\nextendedKeyUsage = serverAuth\n"
    client = "extendedKeyUsage = clientAuth\n"
    return GuidePKI(
        dir=d,
        ca=str(d / "ca.pem"),
        server=_issue(d, "server", "/CN=localhost", server_ext, rsa=True),
        rotated=_issue(d, "rotated", "/O=Rotated/CN=localhost", server_ext),
        carol=_issue(d, "carol", "/C=US/ST=CA/O=Acme/OU=Eng/CN=carol", client + (
            "subjectAltName = email:carol@example.com, DNS:carol.example.com, URI:spiffe://example.com/carol\n")),
        dave=_issue(d, "dave", "/O=Acme/CN=dave", client + "subjectAltName = DNS:dave.example.com\n"),
        erin=_issue(d, "erin", "/O=Acme/CN=erin", client + "subjectAltName = URI:spiffe://example.com/erin\n"),
        frank=_issue(d, "frank", "/O=Acme/OU=Ops/CN=frank", client),
        grace=_issue(d, "grace", "/CN=grace/O=Acme/emailAddress=grace@example.com", client),
        other_ca_client=_issue(d, "mallory", "/CN=mallory", client, ca="other-ca"),
    )


def tls_conf(server: Who, **kw: Any) -> str:
    """A ``tls {}`` block; ``kw`` values are written as JSON (which the config format reads)."""
    keys = {"cert_file": server.cert_file, "key_file": server.key_file, **kw}
    return "tls {\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in keys.items()) + "}\n"


# ---- running both servers -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def pairs() -> Iterator[Callable[..., Pair]]:
    """``pairs(config, flags=())``: nats-server and pynatsd started with the same config file and
    flags, shared by the module's tests (the three used last are kept running) and stopped at its
    end."""
    started: dict[tuple[Any, ...], Pair] = {}  # insertion order = recency

    def get(config: str | None, flags: tuple[str, ...] = ()) -> Pair:
        key = (config, flags)
        if key in started:
            started[key] = started.pop(key)
        else:
            while len(started) >= 3:
                for srv in started.pop(next(iter(started))).values():
                    srv.cleanup()
            pair: Pair = {}
            try:
                for impl in IMPLS:
                    pair[impl] = ServerProcess(impl, config, flags).start()
            except BaseException:
                for srv in pair.values():
                    srv.cleanup()
                raise
            started[key] = pair
        return started[key]

    try:
        yield get
    finally:
        for pair in started.values():
            for srv in pair.values():
                srv.cleanup()


def same(pair: Pair, probe: Callable[[ServerProcess], Any]) -> Any:
    """Run ``probe`` on both servers at once (they are independent: halves the waiting) and
    check that both saw the same."""
    with ThreadPoolExecutor(2) as pool:
        futures = {impl: pool.submit(probe, pair[impl]) for impl in IMPLS}
        got = {impl: f.result() for impl, f in futures.items()}
    assert got["pynatsd"] == got["nats"], f"nats-server: {got['nats']!r}\npynatsd:     {got['pynatsd']!r}"
    return got["nats"]


def each(run: Callable[[str], Any]) -> dict[str, Any]:
    """``run(impl)`` for both implementations at once."""
    with ThreadPoolExecutor(2) as pool:
        futures = {impl: pool.submit(run, impl) for impl in IMPLS}
        return {impl: f.result() for impl, f in futures.items()}


def tls_info(s: ServerProcess) -> dict[str, Any]:
    with socket.create_connection((HOST, s.port)) as sock:
        info = _info_line(sock, 2)
    assert info is not None
    return {k: v for k, v in info.items() if k.startswith("tls_") or k == "auth_required"}


def client_ctx(ca: str, who: Who | None = None, **kw: Any) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca)
    if who is not None:
        ctx.load_cert_chain(who.cert_file, who.key_file)
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


def exchange(s: ServerProcess, ca: str, who: Who | None, script: bytes = b"PING\r\n",
             **kw: Any) -> tuple[bool, bytes, str]:
    """INFO, TLS with ``who``'s certificate, ``script``, and what came back until PONG / EOF.
    A client expecting a refusal sends nothing (``b""``): with TLS 1.3 the server refuses after
    the client's side is done, and bytes the client sends then can race the alert (a reset)."""
    ex = tls_exchange(s.port, ca, who, send=script, until=b"PONG\r\n", **kw)  # type: ignore[arg-type]
    return ex.handshake, ex.data, ex.end


def wait_lines(srv: ServerProcess, pattern: str, count: int = 1, timeout: float = 5.0) -> list[str]:
    """The log lines matching ``pattern`` once there are at least ``count`` of them."""
    rx = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while True:
        lines = [ln for ln in srv.stderr().splitlines() if rx.search(ln)]
        if len(lines) >= count or time.monotonic() > deadline:
            assert len(lines) >= count, f"{srv.impl}: {count} x {pattern!r} not logged\n{srv.logs()}"
            return lines
        time.sleep(0.02)  # another process writes the log: poll with a deadline


def varz(s: ServerProcess, keys: tuple[str, ...], ctx: ssl.SSLContext | None = None) -> dict[str, Any]:
    """Those /varz keys (False when left out, as nats-server omits false booleans)."""
    assert s.ports is not None
    url = s.ports["monitoring"][0].replace(HOST, "localhost")
    with urllib.request.urlopen(url + "/varz", context=ctx, timeout=5) as r:
        v = json.load(r)
    return {k: v.get(k, False) for k in keys}


def run_cli(impl: str, args: list[str], cwd: Path, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*impl_command(impl), *args], capture_output=True, text=True, cwd=cwd, timeout=timeout)


def refusal(impl: str, conf: str | None, args: list[str], tmp: Path) -> tuple[int, str]:
    """Start (or ``-t``) a server that must refuse: (exit code, its last line, without the prefix
    ``nats-server:`` / ``pynatsd:`` or the log header)."""
    cmd = list(args)
    if conf is not None:
        path = tmp / f"{impl}.conf"
        path.write_text(conf)
        cmd = ["-c", str(path), *cmd]
    p = run_cli(impl, [*cmd, "-a", HOST, "-p", str(free_port())], tmp)
    lines = (p.stderr + p.stdout).strip().splitlines()
    last = lines[-1] if lines else ""
    last = re.sub(r"^\[\d+\] \S+ \S+ \[FTL\] ", "", last)
    return p.returncode, re.sub(r"^(nats-server|pynatsd): ", "", last)


# ---- certificate-mapped users with permissions (openssl-made certificates) -----------------------------


MAPPED_USERS = """
authorization {
  users = [
    { user: "carol@example.com", permissions: { publish: "orders.>", subscribe: ["orders.>", "_INBOX.>"] } }
    { user: "dave.example.com", permissions: { publish: { deny: ">" }, subscribe: "metrics.>" } }
    { user: "spiffe://example.com/erin", permissions: { publish: "erin.>", subscribe: { deny: "orders.>" } } }
    { user: "CN=frank, OU=Ops, O=Acme", permissions: { publish: "orders.frank" } }
    { user: "CN=grace,O=Acme", permissions: { subscribe: "grace.>" } }
  ]
}
"""
SCRIPT = (b'CONNECT {"verbose":false,"pedantic":false}\r\n'
          b"SUB orders.> 1\r\nPUB orders.frank 3\r\nabc\r\nPUB metrics.cpu 1\r\nx\r\n"
          b"SUB metrics.> 2\r\nSUB grace.x q 3\r\nPING\r\n")


def test_certificate_mapped_users_and_their_permissions(pki: GuidePKI, pairs: Callable[..., Pair]) -> None:
    """verify_and_map with the email, DNS and URI SANs, an RFC 4514 DN (with spaces) and the Go
    subject string: each user gets exactly its permissions, with nats-server's -ERR texts."""
    pair = pairs(tls_conf(pki.server, ca_file=pki.ca, verify_and_map=True) + MAPPED_USERS)
    assert same(pair, tls_info) == {"auth_required": True, "tls_required": True, "tls_verify": True}
    sub_err = b"-ERR 'Permissions Violation for Subscription to \"%s\"'\r\n"
    pub_err = b"-ERR 'Permissions Violation for Publish to \"%s\"'\r\n"
    expected = {
        "carol": (b"MSG orders.frank 1 3\r\nabc\r\n" + pub_err % b"metrics.cpu" + sub_err % b"metrics.>"
                  + b"-ERR 'Permissions Violation for Subscription to \"grace.x\" using queue \"q\"'\r\nPONG\r\n"),
        "dave": (sub_err % b"orders.>" + pub_err % b"orders.frank" + pub_err % b"metrics.cpu"
                 + b"-ERR 'Permissions Violation for Subscription to \"grace.x\" using queue \"q\"'\r\nPONG\r\n"),
        "erin": (sub_err % b"orders.>" + pub_err % b"orders.frank" + pub_err % b"metrics.cpu" + b"PONG\r\n"),
        "frank": b"MSG orders.frank 1 3\r\nabc\r\n" + pub_err % b"metrics.cpu" + b"PONG\r\n",
        "grace": sub_err % b"orders.>" + sub_err % b"metrics.>" + b"PONG\r\n",  # publishes anything
    }
    for name, data in expected.items():
        who: Who = getattr(pki, name)

        def probe(s: ServerProcess, w: Who = who) -> tuple[bool, bytes, str]:
            return exchange(s, pki.ca, w, SCRIPT)

        assert same(pair, probe) == (True, data, "until"), name
    # a certificate from another CA never gets past the handshake; a CONNECT user is ignored
    assert same(pair, lambda s: exchange(s, pki.ca, pki.other_ca_client, b""))[2] == "alert:TLSV1_ALERT_UNKNOWN_CA"
    script = b'CONNECT {"verbose":false,"user":"carol@example.com"}\r\nPUB orders.1 0\r\n\r\nPING\r\n'
    assert same(pair, lambda s: exchange(s, pki.ca, pki.dave, script))[1] == pub_err % b"orders.1" + b"PONG\r\n"


# ---- command-line TLS flags, alone and over a config file -------------------------------------------------


@pytest.mark.parametrize(("flags", "verify", "outcome"), [
    ((), True, b"PONG\r\n"),
    # --tlscert/--tlskey replace the block; verify comes only from --tlsverify, while the file's
    # verify_and_map stays: no certificate is asked for, so no user can be mapped
    (("--tlscert", "S", "--tlskey", "K"), False, b"-ERR 'Authorization Violation'\r\n"),
    (("--tlscert", "S", "--tlskey", "K", "--tlscacert", "CA"), False, b"-ERR 'Authorization Violation'\r\n"),
    (("--tlscert", "S", "--tlskey", "K", "--tlscacert", "CA", "--tlsverify"), True, b"PONG\r\n"),
], ids=["file", "cert-key", "cert-key-ca", "cert-key-ca-verify"])
def test_tls_flags_over_a_verify_and_map_file(pki: GuidePKI, pairs: Callable[..., Pair], flags: tuple[str, ...],
                                              verify: bool, outcome: bytes) -> None:
    subst = {"S": pki.rotated.cert_file, "K": pki.rotated.key_file, "CA": pki.ca}
    conf = tls_conf(pki.server, ca_file=pki.ca, verify_and_map=True) + MAPPED_USERS
    pair = pairs(conf, ("-m", "-1", *(subst.get(f, f) for f in flags)))
    fields = same(pair, tls_info)
    assert fields.get("tls_verify", False) is verify and fields["tls_required"] is True
    assert same(pair, lambda s: varz(s, ("tls_required", "tls_verify"))) == {"tls_required": True, "tls_verify": verify}
    got = same(pair, lambda s: exchange(s, pki.ca, pki.carol, b'CONNECT {"verbose":false}\r\nPING\r\n'))
    assert got[:2] == (True, outcome)


def test_tls_false_flag_and_flag_refusals(pki: GuidePKI, pairs: Callable[..., Pair], tmp_path: Path) -> None:
    conf = tls_conf(pki.server, ca_file=pki.ca, verify=True)
    assert same(pairs(conf, ("--tls=false",)), tls_info) == {}  # plain NATS although the file has tls {}
    cases: list[tuple[str | None, list[str], str]] = [
        (None, ["--tls"], "TLS Server certificate must be present and valid"),
        (None, ["--tlsverify", "--tlscacert", pki.ca], "TLS Server certificate must be present and valid"),
        (None, ["--tlscert", pki.server.cert_file], "TLS Server private key must be present and valid"),
        # the file's certificate is not reused when a flag replaces the block
        (conf, ["--tlsverify"], "TLS Server certificate must be present and valid"),
        (None, ["-t", "--tlscert", pki.server.cert_file],
         "must specify [-c, --config] option to check configuration file syntax"),
    ]
    for c, args, text in cases:
        got = each(lambda impl, c=c, args=args: refusal(impl, c, args, tmp_path))  # type: ignore[misc]
        assert got["nats"] == (1, text), args
        # pynatsd names where the setting came from
        assert got["pynatsd"] in ((1, text), (1, f"<flags>: {text}")), (args, got)


# ---- what is refused at start-up (and by -t), with openssl-made files ---------------------------------


def test_old_chacha_name_is_accepted_with_a_warning(pki: GuidePKI, tmp_path: Path) -> None:
    """Deliberate: pynatsd still takes nats-server 2.10's spelling of the ChaCha20 suites (warning
    that nats-server 2.12+ refuses it); nats-server 2.15 stops."""
    old, new = "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"
    conf = tls_conf(pki.server, cipher_suites=[old])
    path = tmp_path / "old.conf"
    path.write_text(conf)
    nats_p = run_cli("nats", ["-t", "-c", str(path)], tmp_path)
    assert nats_p.returncode == 1 and f"unrecognized cipher {old}" in nats_p.stderr
    py = run_cli("pynatsd", ["-t", "-c", str(path)], tmp_path)
    assert py.returncode == 0, py.stderr
    assert f"cipher suite {old} is the nats-server 2.10/2.11 name of {new}" in py.stderr + py.stdout
    path.write_text(tls_conf(pki.server, cipher_suites=[new]))
    assert [run_cli(i, ["-t", "-c", str(path)], tmp_path).returncode for i in IMPLS] == [0, 0]


@pytest.fixture(scope="module")
def odd_files(pki: GuidePKI) -> dict[str, str]:
    """Key and certificate files as openssl commands leave them."""
    d, key = pki.dir, pki.server.key_file
    files = {"pkcs8-encrypted": str(d / "enc-pkcs8-key.pem"), "rsa-encrypted": str(d / "enc-rsa-key.pem"),
             "text-cert": str(d / "text-cert.pem"), "ecparam-key": str(d / "ecparam-key.pem"),
             "ecparam-cert": str(d / "ecparam-cert.pem"), "combined": str(d / "combined.pem"),
             "ed25519-key": str(d / "ed25519-key.pem"), "ed25519-cert": str(d / "ed25519-cert.pem")}
    _ossl("pkey", "-in", key, "-aes256", "-passout", "pass:secret", "-out", files["pkcs8-encrypted"])
    _ossl("rsa", "-in", key, "-aes256", "-traditional", "-passout", "pass:secret", "-out", files["rsa-encrypted"])
    # `openssl x509 -text` output: the dump, then the PEM block
    Path(files["text-cert"]).write_bytes(_ossl("x509", "-in", pki.server.cert_file, "-text"))
    # `openssl ecparam -genkey` writes an EC PARAMETERS block before the key
    _ossl("ecparam", "-name", "prime256v1", "-genkey", "-out", files["ecparam-key"])
    _ossl("genpkey", "-algorithm", "ed25519", "-out", files["ed25519-key"])
    ext = d / "server.ext"  # written by the pki fixture
    for stem in ("ecparam", "ed25519"):
        _ossl("req", "-new", "-key", files[f"{stem}-key"], "-out", str(d / f"{stem}.csr"), "-subj", "/CN=localhost")
        _ossl("x509", "-req", "-in", str(d / f"{stem}.csr"), "-CA", "ca.pem", "-CAkey", "ca-key.pem",
              "-CAcreateserial", "-out", files[f"{stem}-cert"], "-days", "30", "-extfile", str(ext), cwd=d)
    Path(files["combined"]).write_bytes(Path(key).read_bytes() + Path(pki.server.cert_file).read_bytes())
    files["ca-first"] = str(d / "ca-first.pem")  # `cat ca.pem server-cert.pem`: the wrong order
    Path(files["ca-first"]).write_bytes(Path(pki.ca).read_bytes() + Path(pki.server.cert_file).read_bytes())
    return files


def test_file_mistakes_are_refused_by_both(pki: GuidePKI, odd_files: dict[str, str], tmp_path: Path) -> None:
    """Both refuse the same files, at start-up and with -t, exit code 1. The wording is pynatsd's
    own (README: 'Error texts at start-up are pynatsd's own'): one line naming the config file,
    its line and the file concerned; nats-server prints Go's error."""
    srv, missing = pki.server, str(pki.dir / "missing.pem")
    cases = {  # name: (tls block, what nats-server says, what pynatsd says)
        "missing cert": (tls_conf(Who(missing, srv.key_file)), "no such file or directory",
                         f'cert_file "{missing}" does not exist'),
        "key of another cert": (tls_conf(Who(srv.cert_file, pki.carol.key_file)),
                                "does not match public key", "does not match the certificate"),
        "CA first in cert_file": (tls_conf(Who(odd_files["ca-first"], srv.key_file)), "does not match public key",
                                  "put the server's certificate first"),
        "encrypted PKCS#8 key": (tls_conf(Who(srv.cert_file, odd_files["pkcs8-encrypted"])),
                                 "failed to parse private key", "is encrypted; set key_password_file"),
        "encrypted RSA key": (tls_conf(Who(srv.cert_file, odd_files["rsa-encrypted"])),
                              "failed to parse private key", "is encrypted; set key_password_file"),
        "CSR as certificate": (tls_conf(Who(str(pki.dir / "server.csr"), srv.key_file)),
                               'failed to find "CERTIFICATE" PEM block', "it holds no certificate, only CERTIFICATE REQUEST"),
        "certificate as key": (tls_conf(Who(srv.cert_file, srv.cert_file)),
                               "found a certificate rather than a key", "it holds no private key, only CERTIFICATE"),
        "key as CA": (tls_conf(srv, ca_file=srv.key_file, verify=True), "failed to parse root ca certificate",
                      f'ca_file "{srv.key_file}": it holds no certificate, only PRIVATE KEY'),
    }
    for name, (conf, nats_says, py_says) in cases.items():
        for args in (["-t"], []) if name in ("missing cert", "encrypted RSA key") else (["-t"],):
            got = each(lambda impl, c=conf, a=args: refusal(impl, c, a, tmp_path))  # type: ignore[misc]
            assert got["nats"][0] == got["pynatsd"][0] == 1, (name, args, got)
            assert nats_says in got["nats"][1], (name, got)
            assert py_says in got["pynatsd"][1] and f"{tmp_path / 'pynatsd.conf'}:1: tls: " in got["pynatsd"][1], \
                (name, got)


def test_files_as_openssl_leaves_them_are_served_by_both(pki: GuidePKI, odd_files: dict[str, str],
                                                        pairs: Callable[..., Pair], tmp_path: Path) -> None:
    """A certificate file with openssl's text dump in front, an `ecparam -genkey` key, key and
    certificate in one file, an Ed25519 key: nats-server takes them all, so does pynatsd."""
    confs = {
        "text dump": tls_conf(Who(odd_files["text-cert"], pki.server.key_file)),
        "ecparam": tls_conf(Who(odd_files["ecparam-cert"], odd_files["ecparam-key"])),
        "combined": tls_conf(Who(odd_files["combined"], odd_files["combined"])),
        "ed25519": tls_conf(Who(odd_files["ed25519-cert"], odd_files["ed25519-key"])),
    }
    for name, conf in confs.items():
        path = tmp_path / "ok.conf"
        path.write_text(conf)
        got = each(lambda impl, p=path: run_cli(impl, ["-t", "-c", str(p)], tmp_path).returncode)  # type: ignore[misc]
        assert got == {"nats": 0, "pynatsd": 0}, name
    for name in ("ecparam", "ed25519"):
        got = same(pairs(confs[name]), lambda s: exchange(s, pki.ca, None))
        assert got == (True, b"PONG\r\n", "until"), name


# ---- handshake_first with a fallback, monitoring over HTTPS, stalled handshakes -----------------------------


def monitor_conf(pki: GuidePKI) -> str:
    return (tls_conf(pki.server, ca_file=pki.ca, verify_and_map=True, timeout=0.75, handshake_first="300ms")
            + "https_port: -1\n" + MAPPED_USERS)


def monitor_get(s: ServerProcess, path: str, ca: str) -> dict[str, Any]:
    """GET over HTTPS the way a user's script does: trusting the CA, no client certificate."""
    assert s.ports is not None
    url = s.ports["monitoring"][0]
    assert url.startswith("https://")
    with urllib.request.urlopen(url.replace(HOST, "localhost") + path, context=client_ctx(ca), timeout=5) as r:
        return json.load(r)  # type: ignore[no-any-return]


def _client_hello() -> bytes:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


@pytest.mark.parametrize(("info_first", "cut"), [(False, 5), (True, None)],
                         ids=["tls-first-partial-record", "after-info-whole-hello"])
def test_a_client_stalling_mid_handshake_is_closed_after_the_timeout(
        pki: GuidePKI, pairs: Callable[..., Pair], info_first: bool, cut: int | None) -> None:
    """timeout: 0.75 (float seconds) bounds a handshake the client stops in the middle of, whether
    it started TLS at once (handshake_first) or after the fallback INFO."""
    hello = _client_hello()[:cut]

    def probe(s: ServerProcess) -> tuple[bool, bytes, str, bool]:
        with socket.create_connection((HOST, s.port)) as sock:
            if info_first:
                assert _info_line(sock, 2) is not None  # the fallback INFO, after 300 ms
            sock.sendall(hello)
            t0 = time.monotonic()
            data, end = _read(sock, None, 4)
            took = time.monotonic() - t0
        # a whole ClientHello gets the server's first flight; then nothing until the close, which
        # comes after the 0.75 s timeout (with slack for a loaded machine)
        return data.startswith(b"\x16\x03\x03") if cut is None else data == b"", b"", end, 0.6 <= took < 3

    assert same(pairs(monitor_conf(pki)), probe) == (True, b"", "EOF", True)


async def test_monitoring_over_https_with_the_same_config(pki: GuidePKI, pairs: Callable[..., Pair]) -> None:
    pair = pairs(monitor_conf(pki))
    keys = ("tls_required", "tls_verify", "tls_timeout", "auth_timeout", "tls_cert_not_after", "https_port")

    def varz_tls(s: ServerProcess) -> dict[str, Any]:
        v = monitor_get(s, "/varz", pki.ca)
        return {k: v.get(k) for k in keys}

    v = same(pair, varz_tls)
    assert v["tls_required"] is True and v["tls_verify"] is True and v["tls_timeout"] == 0.75
    assert v["auth_timeout"] == 1.75  # tls timeout + 1 s

    clients: list[nats.NATS] = []
    try:
        for s in pair.values():
            # carol does TLS first; dave waits for the INFO the 300 ms fallback sends
            clients.append(await nats.connect(f"tls://localhost:{s.port}", tls=client_ctx(pki.ca, pki.carol),
                                              tls_handshake_first=True, allow_reconnect=False))
            clients.append(await nats.connect(f"tls://localhost:{s.port}", tls=client_ctx(pki.ca, pki.dave),
                                              allow_reconnect=False))
            # no certificate: refused with an alert once its handshake is done
            assert exchange(s, pki.ca, None, b"")[2] == "alert:TLSV13_ALERT_CERTIFICATE_REQUIRED"

        def connz(s: ServerProcess) -> list[dict[str, Any]]:
            conns = monitor_get(s, "/connz?auth=true", pki.ca)["connections"]
            keep = ("tls_version", "tls_cipher_suite", "tls_first", "authorized_user", "tls_peer_certs")
            if s.impl == "pynatsd":  # documented extra: the key-exchange group
                assert all(c["tls_group"] == "X25519MLKEM768" or c["tls_group"] for c in conns)
            return sorted(({k: c.get(k) for k in keep} for c in conns), key=lambda c: str(c["authorized_user"]))

        conns = same(pair, connz)
        assert [(c["authorized_user"], c["tls_first"]) for c in conns] == [
            ("carol@example.com", True), ("dave.example.com", None)]
        assert conns[0]["tls_peer_certs"][0]["subject"] == "CN=carol,OU=Eng,O=Acme,ST=CA,C=US"

        def closed(s: ServerProcess) -> list[Any]:
            return [c.get("reason") for c in monitor_get(s, "/connz?state=closed", pki.ca)["connections"]]

        assert set(same(pair, closed)) == {"TLS Handshake Failure"}
    finally:
        for nc in clients:
            await nc.close()


# ---- openssl s_client and a pyOpenSSL client: what was negotiated ----------------------------------------


def s_client(port: int, *args: str, timeout: float = 5.0) -> str:
    """``openssl s_client`` typing CONNECT and PING; its output once PONG arrives (or it ends)."""
    p = subprocess.Popen([OPENSSL, "s_client", "-connect", f"{HOST}:{port}", "-servername", "localhost", *args],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert p.stdin is not None and p.stdout is not None
    out = b""
    try:
        p.stdin.write(b'CONNECT {"verbose":false}\r\nPING\r\n')
        p.stdin.flush()
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(p.stdout, selectors.EVENT_READ)
            while b"PONG" not in out and time.monotonic() < deadline:
                if sel.select(deadline - time.monotonic()):
                    chunk = os.read(p.stdout.fileno(), 65536)
                    if not chunk:
                        break
                    out += chunk
    finally:
        p.stdin.close()  # s_client ends at EOF on its input
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        out += p.stdout.read()
    return out.decode(errors="replace")


S_CLIENT_LINES = re.compile(r"^(Server Temp Key|Peer signature type|New, |Verify return code|Verification: |"
                            r"\d s:|i:|Protocol *:|Cipher *:|OCSP Response Status|Cert Status|OCSP response: no)")


def s_client_view(s: ServerProcess, *args: str) -> list[str]:
    out = s_client(s.port, *args)
    # session tickets differ on purpose (pynatsd does not resume sessions): left out
    lines = [ln.strip() for ln in out.split("Post-Handshake New Session Ticket")[0].splitlines()]
    return [ln for ln in lines if S_CLIENT_LINES.match(ln)] + [ln for ln in out.splitlines() if ln == "PONG"][:1]


@pytest.mark.parametrize("version", ["-tls1_3", "-tls1_2"])
def test_s_client_on_a_handshake_first_server(pki: GuidePKI, pairs: Callable[..., Pair], version: str) -> None:
    """README: s_client talks to a handshake_first server directly. It sees the same version,
    suite, group, signature, chain and verification on both."""
    chained = pki.dir / "server-chain.pem"  # the certificate followed by the CA, as some guides do
    chained.write_bytes(Path(pki.server.cert_file).read_bytes() + Path(pki.ca).read_bytes())
    pair = pairs(tls_conf(Who(str(chained), pki.server.key_file), handshake_first=True))
    view = same(pair, lambda s: s_client_view(s, "-CAfile", pki.ca, "-showcerts", version))
    assert "PONG" in view and "Verify return code: 0 (ok)" in view
    assert "0 s:CN = localhost" in view and "1 s:CN = ca guide" in view
    assert "Server Temp Key: X25519, 253 bits" in view  # system OpenSSL 3.0 offers no ML-KEM
    assert ("New, TLSv1.3, Cipher is TLS_AES_128_GCM_SHA256" in view) is (version == "-tls1_3")


def test_s_client_sees_the_ocsp_staple(pairs: Callable[..., Pair], tmp_path_factory: pytest.TempPathFactory) -> None:
    """``ocsp { mode: always }`` with a local responder: `openssl s_client -status` shows the
    same stapled status on both."""
    with OCSPResponder() as responder:
        ocsp_pki = make_ocsp_pki(tmp_path_factory.mktemp("ocsp-pki"), responder.url)
        responder.ca = ocsp_pki.ca
        cert = ocsp_pki.server_plain
        conf = "ocsp { mode: always }\n" + tls_conf(Who(cert.cert_file, cert.key_file), ca_file=ocsp_pki.ca_file,
                                                       handshake_first=True)
        pair = pairs(conf)
        view = same(pair, lambda s: s_client_view(s, "-CAfile", ocsp_pki.ca_file, "-status"))
        assert "Cert Status: good" in view and "PONG" in view
        responder.set_status(cert, "revoked")  # already stapled: both keep serving the good staple
        assert "Cert Status: good" in same(pair, lambda s: s_client_view(s, "-CAfile", ocsp_pki.ca_file, "-status"))
        for srv in pair.values():
            srv.cleanup()  # the responder goes away now


@pytest.mark.parametrize(("client", "outcome"), [
    ({"groups": b"X25519"}, ("refused", "handshake failure")),  # an X25519-only client
    ({"groups": b"X25519MLKEM768:X25519"}, ("ok", "TLSv1.3", "X25519MLKEM768")),
    ({"groups": b"X25519MLKEM768", "max_version": SSL.TLS1_2_VERSION}, ("refused", "handshake failure")),
], ids=["x25519-only", "mlkem", "tls12"])
def test_rsa_server_with_ecdsa_suites_and_only_mlkem(pki: GuidePKI, pairs: Callable[..., Pair],
                                                     client: dict[str, Any], outcome: tuple[str, ...]) -> None:
    """The guide's RSA certificate with TLS 1.2 suites for ECDSA only (no TLS 1.2 possible) and the
    post-quantum hybrid as the only group."""
    conf = tls_conf(pki.server, cipher_suites=["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"],
                    curve_preferences=["X25519MLKEM768"])

    def negotiate(s: ServerProcess) -> tuple[str, ...]:
        try:
            conn, sock, _ = pyopenssl_nats(s.port, pki.ca, **client)
        except SSL.Error as e:
            return ("refused", "handshake failure" if "handshake failure" in str(e) else str(e))
        with sock:
            return ("ok", conn.get_protocol_version_name(), conn.get_group_name() or "")

    assert same(pairs(conf), negotiate) == outcome


# ---- --signal reload: rotating the certificate, and what a reload may not change ----------------------------


def monitor_port(s: ServerProcess) -> int:
    assert s.ports is not None
    return int(s.ports["monitoring"][0].rsplit(":", 1)[1])


def served_subject(port: int, ca: str, *, info: bool = True) -> str:
    """The subject of the certificate served on ``port`` (after the INFO line unless ``info`` is False)."""
    with socket.create_connection((HOST, port), timeout=3) as raw:
        assert not info or _info_line(raw, 3) is not None
        with client_ctx(ca).wrap_socket(raw, server_hostname="localhost") as sock:
            cert: dict[str, Any] | None = sock.getpeercert()  # type: ignore[assignment]
    assert cert is not None
    return ",".join(f"{k}={v}" for rdn in cert["subject"] for k, v in rdn)


def test_reload_rotates_the_certificate_and_keeps_it_when_the_new_one_is_bad(pki: GuidePKI,
                                                                            tmp_path: Path) -> None:
    """cert-manager style rotation: new files in place, then `<server> --signal reload=<pid>`.
    New connections get the new certificate, live ones stay; a certificate that does not match
    its key is refused with one line and the running certificate stays; verify_and_map cannot
    be turned on by a reload; pinned_certs reloaded drop the live client that is not pinned."""
    servers: dict[str, ServerProcess] = {}
    try:
        def conf(d: Path, **kw: Any) -> str:
            return "https_port: -1\n" + tls_conf(Who(str(d / "cert.pem"), str(d / "key.pem")), ca_file=pki.ca,
                                                  verify=True, **kw)

        def install(d: Path, cert: str, key: str) -> None:
            for src, name in ((cert, "cert.pem"), (key, "key.pem")):
                (d / f"{name}.tmp").write_bytes(Path(src).read_bytes())
                (d / f"{name}.tmp").replace(d / name)  # atomic, as a rotation tool does

        def start(impl: str) -> ServerProcess:
            d = tmp_path / impl
            d.mkdir()
            install(d, pki.server.cert_file, pki.server.key_file)
            return ServerProcess(impl, conf(d)).start()

        for impl in IMPLS:
            servers[impl] = start(impl)
        pair: Pair = servers
        assert same(pair, lambda s: served_subject(s.port, pki.ca)) == "commonName=localhost"

        def connect_carol(s: ServerProcess) -> ssl.SSLSocket:
            raw = socket.create_connection((HOST, s.port), timeout=3)
            assert _info_line(raw, 3) is not None
            sock = client_ctx(pki.ca, pki.carol).wrap_socket(raw, server_hostname="localhost")
            sock.sendall(b'CONNECT {"verbose":false}\r\nPING\r\n')
            assert _read(sock, b"PONG\r\n", 3) == (b"PONG\r\n", "until")
            return sock

        def reload(s: ServerProcess) -> None:
            assert s.proc is not None
            p = run_cli(s.impl, ["--signal", f"reload={s.proc.pid}"], tmp_path)
            assert p.returncode == 0, p.stderr

        early = {impl: connect_carol(s) for impl, s in pair.items()}
        try:
            for impl in pair:
                install(tmp_path / impl, pki.rotated.cert_file, pki.rotated.key_file)
            each(lambda impl: reload(pair[impl]))
            each(lambda impl: wait_lines(pair[impl], r"\[INF\] Reloaded server configuration"))
            assert same(pair, lambda s: served_subject(s.port, pki.ca)) == "organizationName=Rotated,commonName=localhost"
            # the HTTPS monitor serves the new certificate too
            assert same(pair, lambda s: served_subject(monitor_port(s), pki.ca, info=False)) == \
                "organizationName=Rotated,commonName=localhost"
            for sock in early.values():  # connected before the rotation: still up
                sock.sendall(b"PING\r\n")
                assert _read(sock, b"PONG\r\n", 3) == (b"PONG\r\n", "until")
        finally:
            for sock in early.values():
                sock.close()

        # half a rotation: the new certificate, the old key
        for impl in pair:
            (tmp_path / impl / "cert.pem").write_bytes(Path(pki.server.cert_file).read_bytes())
        for s in pair.values():
            s.reload()  # SIGHUP, as --signal reload sends
        failed = each(lambda impl: wait_lines(pair[impl], r"\[ERR\] Failed to reload server configuration: "))
        assert all(len(lines) == 1 for lines in failed.values())
        assert "does not match public key" in failed["nats"][0]
        assert "does not match the certificate" in failed["pynatsd"][0]
        assert same(pair, lambda s: served_subject(s.port, pki.ca)) == "organizationName=Rotated,commonName=localhost"
        assert all(s.running for s in pair.values())

        # verify_and_map cannot be switched on by a reload (same message)
        for impl, s in pair.items():
            install(tmp_path / impl, pki.rotated.cert_file, pki.rotated.key_file)
            s.reload(conf(tmp_path / impl, verify_and_map=True))
        refused = each(lambda impl: wait_lines(pair[impl], r"Failed to reload server configuration: ", 2)[-1])
        assert all(ln.endswith("config reload not supported for TLSMap: old=false, new=true")
                   for ln in refused.values()), refused

        # pins reloaded: carol (connected, not pinned) is dropped, dave (pinned) gets in
        tls_socks = {impl: connect_carol(s) for impl, s in pair.items()}
        try:
            for impl, s in pair.items():
                s.reload(conf(tmp_path / impl, pinned_certs=[pki.spki(pki.dave)]))
            dropped = each(lambda impl: _read(tls_socks[impl], None, 3))
            assert dropped == {"nats": (b"", "EOF"), "pynatsd": (b"", "EOF")}
            each(lambda impl: wait_lines(pair[impl], r"\[INF\] Disconnect 1 clients due to pinned certs reload"))
        finally:
            for sock in tls_socks.values():
                sock.close()
        assert same(pair, lambda s: exchange(s, pki.ca, pki.dave)) == (True, b"PONG\r\n", "until")
        assert same(pair, lambda s: exchange(s, pki.ca, pki.carol)) == (True, b"", "EOF")
    finally:
        for s in servers.values():
            s.cleanup()


# ---- `pynatsd certs` and the blocks it prints, on both servers ----------------------------------------------


async def test_pynatsd_certs_output_works_on_both(pairs: Callable[..., Pair],
                                                  tmp_path_factory: pytest.TempPathFactory) -> None:
    """`pynatsd certs DIR --client alice` prints two tls blocks; each starts nats-server and
    pynatsd alike (and passes both servers' -t), and nats-py with alice's files gets in."""
    work = tmp_path_factory.mktemp("dev-certs")
    out = subprocess.run([*impl_command("pynatsd"), "certs", "certs", "--client", "alice"], cwd=work,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    blocks = [re.sub(r"(?s)^.*?\n?# [^\n]*\n", "", chunk, count=1) for chunk in out.split("\n\n") if "tls {" in chunk]
    server_tls, mapped = blocks
    assert "verify_and_map: true" in mapped and 'user: "alice@localhost"' in mapped
    certs = work / "certs"
    ca = str(certs / "ca.pem")
    alice = client_ctx(ca, Who(str(certs / "alice-cert.pem"), str(certs / "alice-key.pem")))
    for conf in (server_tls, mapped):
        path = work / "printed.conf"
        path.write_text(conf)
        got = each(lambda impl, p=path: run_cli(impl, ["-t", "-c", str(p)], work).returncode)  # type: ignore[misc]
        assert got == {"nats": 0, "pynatsd": 0}
        pair = pairs(conf)
        assert same(pair, tls_info).get("tls_verify", False) is (conf is mapped)
        for s in pair.values():
            nc = await nats.connect(f"tls://localhost:{s.port}", tls=alice, allow_reconnect=False)
            try:
                sub = await nc.subscribe("hello")
                await nc.publish("hello", b"world")
                assert (await sub.next_msg(timeout=3)).data == b"world"
            finally:
                await nc.close()
    # without a certificate the mapped server refuses in the handshake, on both
    assert same(pairs(mapped), lambda s: exchange(s, ca, None, b"")[2]) == "alert:TLSV13_ALERT_CERTIFICATE_REQUIRED"


# ---- trust: a ca_file with the intermediate CA only, key usage of client certificates -----------------------


@pytest.fixture(scope="module")
def intermediate(pki: GuidePKI) -> tuple[str, Who, Who]:
    """(intermediate CA file, a client it signed, the same client with the intermediate appended)."""
    d = pki.dir
    _issue(d, "int", "/CN=Intermediate CA", "basicConstraints = critical, CA:TRUE\n"
           "keyUsage = critical, keyCertSign, cRLSign\n")
    Path(d / "int.pem").write_bytes(Path(d / "int-cert.pem").read_bytes())
    Path(d / "int-ca-key.pem").write_bytes(Path(d / "int-key.pem").read_bytes())
    leaf = _issue(d, "ivan", "/CN=ivan", "extendedKeyUsage = clientAuth\n", ca="int")
    chain = d / "ivan-chain.pem"
    chain.write_bytes(Path(leaf.cert_file).read_bytes() + Path(d / "int.pem").read_bytes())
    return str(d / "int.pem"), leaf, Who(str(chain), leaf.key_file)


@pytest.mark.parametrize("ca", ["intermediate", "root"])
def test_ca_file_with_only_the_intermediate(pki: GuidePKI, intermediate: tuple[str, Who, Who],
                                            pairs: Callable[..., Pair], ca: str) -> None:
    """Go takes every certificate of ca_file as a trust anchor: a ca_file holding only the
    intermediate CA accepts the clients it signed, with or without the intermediate sent along.
    With the root only, the client has to send the intermediate."""
    int_file, leaf, chained = intermediate
    ca_file = int_file if ca == "intermediate" else pki.ca
    pair = pairs(tls_conf(pki.server, ca_file=ca_file, verify=True))
    for who, ok in ((leaf, ca == "intermediate"), (chained, True)):
        script = b"PING\r\n" if ok else b""
        got = same(pair, lambda s, w=who, x=script: exchange(s, pki.ca, w, x))  # type: ignore[misc]
        assert got == ((True, b"PONG\r\n", "until") if ok else (True, b"", "alert:TLSV1_ALERT_UNKNOWN_CA"))


@pytest.fixture(scope="module")
def usage_clients(pki: GuidePKI) -> dict[str, Who]:
    return {
        "serverAuth only": _issue(pki.dir, "srvonly", "/CN=srvonly", "extendedKeyUsage = serverAuth\n"),
        "no EKU": _issue(pki.dir, "bare", "/CN=bare", "subjectKeyIdentifier = hash\n"),
        "codeSigning only": _issue(pki.dir, "codesign", "/CN=codesign", "extendedKeyUsage = codeSigning\n"),
    }


def test_client_certificate_key_usage(pki: GuidePKI, usage_clients: dict[str, Who],
                                      pairs: Callable[..., Pair]) -> None:
    """A client certificate needs the clientAuth extended key usage (or none at all) on both.
    Refused ones get an alert after the handshake: nats-server (Go) says bad_certificate, OpenSSL
    unsupported_certificate (the alert name is the TLS library's; the verdict is the same)."""
    pair = pairs(tls_conf(pki.server, ca_file=pki.ca, verify=True))
    for name, who in usage_clients.items():
        script = b"PING\r\n" if name == "no EKU" else b""
        got = {impl: exchange(s, pki.ca, who, script) for impl, s in pair.items()}
        if name == "no EKU":
            assert got == {impl: (True, b"PONG\r\n", "until") for impl in IMPLS}, name
        else:
            assert got["nats"] == (True, b"", "alert:SSLV3_ALERT_BAD_CERTIFICATE"), name
            assert got["pynatsd"] == (True, b"", "alert:SSLV3_ALERT_UNSUPPORTED_CERTIFICATE"), name


# ---- nats-py against min_version, allow_non_tls and an expired server certificate ---------------------------


async def nats_py_outcome(s: ServerProcess, url: str, tls: ssl.SSLContext | None) -> str:
    try:
        nc = await nats.connect(url.format(port=s.port), tls=tls, allow_reconnect=False, connect_timeout=2)
    except Exception as e:  # what the user's program sees
        detail = getattr(e, "verify_message", None) or getattr(e, "reason", None) or e
        return f"{type(e).__name__}: {detail}"
    try:
        sub = await nc.subscribe("t")
        await nc.publish("t", b"x")
        await sub.next_msg(timeout=3)
        writer: Any = getattr(nc._transport, "_io_writer", None)  # what was negotiated
        tls_obj = writer.get_extra_info("ssl_object")
        return f"ok {tls_obj.version() if tls_obj else 'plain'}"
    finally:
        await nc.close()


async def test_nats_py_with_min_version_and_allow_non_tls(pki: GuidePKI, pairs: Callable[..., Pair]) -> None:
    tls12 = client_ctx(pki.ca, maximum_version=ssl.TLSVersion.TLSv1_2)
    cases: list[tuple[str, str, ssl.SSLContext | None, str]] = [
        (tls_conf(pki.server, min_version="1.3"), "tls://localhost:{port}", tls12,
         "SSLError: TLSV1_ALERT_PROTOCOL_VERSION"),
        (tls_conf(pki.server, min_version="1.2"), "tls://localhost:{port}", tls12, "ok TLSv1.2"),
        (tls_conf(pki.server) + "allow_non_tls: true\n", "nats://localhost:{port}", None, "ok plain"),
        # nats-py starts TLS only when INFO says tls_required: with allow_non_tls it stays plain
        (tls_conf(pki.server) + "allow_non_tls: true\n", "tls://localhost:{port}", client_ctx(pki.ca), "ok plain"),
    ]
    for conf, url, ctx, expected in cases:
        pair = pairs(conf)
        got = {impl: await nats_py_outcome(s, url, ctx) for impl, s in pair.items()}
        assert got == {"nats": expected, "pynatsd": expected}, conf


async def test_expired_server_certificate(pairs: Callable[..., Pair], tmp_path_factory: pytest.TempPathFactory) -> None:
    """Both start with an expired certificate and clients refuse it; pynatsd also warns loudly
    at start-up (README: 'An expired server certificate only gives a loud warning'), nats-server
    says nothing."""
    certs = make_cert_set(tmp_path_factory.mktemp("expired"))
    pair = pairs(tls_conf(Who(certs.expired_server.cert_file, certs.expired_server.key_file)))
    for s in pair.values():
        got = await nats_py_outcome(s, "tls://localhost:{port}", client_ctx(certs.ca.cert_file))
        assert got == "SSLCertVerificationError: certificate has expired", got
    assert "EXPIRED on" in wait_lines(pair["pynatsd"], r"\[WRN\] tls: the certificate in cert_file")[0]
    assert not [ln for ln in pair["nats"].stderr().splitlines() if "[WRN]" in ln or "xpire" in ln]


@pytest.mark.parametrize(("flags", "message"), [
    (("--tls", "--tlscert", "S", "--tlskey", "K"), "config reload not supported for TLS: old=true, new=false"),
    (("--tlscert", "S", "--tlskey", "K", "--tlsverify", "--tlscacert", "CA"),
     "config reload not supported for TLSVerify: old=true, new=false"),
    (("--tlscert", "S", "--tlskey", "K"), "config reload not supported for TLSCert: old=S, new="),
    (("--tls=false",), None),
], ids=["tls", "tlsverify", "tlscert", "tls-false"])
def test_reload_of_a_server_started_with_tls_flags(pki: GuidePKI, pairs: Callable[..., Pair],
                                                   flags: tuple[str, ...], message: str | None) -> None:
    """nats-server does not apply the --tls* flags again on reload: started with one, it refuses
    every reload (naming the flag's field); started with --tls=false, a reload turns on the file's
    tls block."""
    subst = {"S": pki.server.cert_file, "K": pki.server.key_file, "CA": pki.ca}
    conf = tls_conf(pki.rotated, ca_file=pki.ca)
    pair = pairs(conf, tuple(subst.get(f, f) for f in flags))
    before = same(pair, tls_info)
    for s in pair.values():
        s.reload()
    if message is None:
        each(lambda impl: wait_lines(pair[impl], r"\[INF\] Reloaded server configuration"))
        assert before == {} and same(pair, tls_info) == {"tls_required": True}
        assert same(pair, lambda s: served_subject(s.port, pki.ca)) == "organizationName=Rotated,commonName=localhost"
    else:
        text = message.replace("old=S", f"old={pki.server.cert_file}")
        lines = each(lambda impl: wait_lines(pair[impl], r"\[ERR\] Failed to reload server configuration: "))
        assert all(ln[0].endswith(text) for ln in lines.values()), lines
        assert same(pair, tls_info) == before  # still the flags' TLS
        assert same(pair, lambda s: served_subject(s.port, pki.ca)) == "commonName=localhost"


def test_rc4_and_3des_suites_are_refused_by_pynatsd_only(pki: GuidePKI, tmp_path: Path) -> None:
    """Deliberate (tls/context.py): the OpenSSL pynatsd uses has no RC4 or 3DES, so naming one
    stops start-up with a line saying so; nats-server (Go) accepts them with
    allow_insecure_cipher_suites."""
    for suites in (["TLS_RSA_WITH_3DES_EDE_CBC_SHA"],
                   ["TLS_ECDHE_RSA_WITH_RC4_128_SHA", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]):
        conf = tls_conf(pki.server, cipher_suites=suites, allow_insecure_cipher_suites=True)
        got = each(lambda impl, c=conf: refusal(impl, c, ["-t"], tmp_path))  # type: ignore[misc]
        assert got["nats"][0] == 0
        assert got["pynatsd"][0] == 1 and "available in this OpenSSL" in got["pynatsd"][1], got


@pytest.mark.parametrize(("auth", "carol", "dave"), [
    ("", b"PONG\r\n", b"PONG\r\n"),  # no users: nothing to map, any trusted certificate gets in
    ('authorization { users = [ {user: "carol@example.com"}, {user: "guest", password: "x"} ] }\n'
     "no_auth_user: guest\n", b"PONG\r\n", b"-ERR 'Authorization Violation'\r\n"),  # no fallback to guest
    ('authorization { token: "s3cret" }\n', b"-ERR 'Authorization Violation'\r\n",
     b"-ERR 'Authorization Violation'\r\n"),
], ids=["no-users", "no_auth_user", "token"])
def test_verify_and_map_with_other_authorization(pki: GuidePKI, pairs: Callable[..., Pair], auth: str,
                                                 carol: bytes, dave: bytes) -> None:
    pair = pairs(tls_conf(pki.server, ca_file=pki.ca, verify_and_map=True) + auth)
    script = b'CONNECT {"verbose":false}\r\nPUB x 0\r\n\r\nPING\r\n'
    for who, data in ((pki.carol, carol), (pki.dave, dave)):
        got = same(pair, lambda s, w=who: exchange(s, pki.ca, w, script))  # type: ignore[misc]
        assert got[1] == data


def test_key_password_file_is_a_pynatsd_extension(pki: GuidePKI, odd_files: dict[str, str], tmp_path: Path) -> None:
    """README: `key_password_file` (beyond nats-server) opens a key encrypted with
    `openssl pkey -aes256`; nats-server refuses the key name."""
    (tmp_path / "pass.txt").write_text("secret\n")
    conf = tls_conf(Who(pki.server.cert_file, odd_files["pkcs8-encrypted"]), key_password_file=str(tmp_path / "pass.txt"))
    got = each(lambda impl: refusal(impl, conf, ["-t"], tmp_path))
    assert got["nats"] == (1, f'{tmp_path / "nats.conf"}:4:3: error parsing tls config, unknown field "key_password_file"')
    assert got["pynatsd"][0] == 0
    with ServerProcess("pynatsd", conf) as srv:
        assert exchange(srv, pki.ca, None) == (True, b"PONG\r\n", "until")


def test_cipher_suites_order_is_pynatsds_preference(pki: GuidePKI, pairs: Callable[..., Pair]) -> None:
    """README: 'The order of cipher_suites is the server's preference (Go uses its own order)'.
    A TLS 1.2 client offering all three listed suites gets the first listed from pynatsd and Go's
    pick (AES-128-GCM) from nats-server; a client preferring ChaCha20 gets it from both."""
    conf = tls_conf(pki.server, cipher_suites=["TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
                                               "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
                                               "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"])

    def suite(s: ServerProcess, ciphers: bytes) -> str:
        conn, sock, _ = pyopenssl_nats(s.port, pki.ca, ciphers=ciphers, max_version=SSL.TLS1_2_VERSION)
        with sock:
            return conn.get_cipher_name() or ""

    pair = pairs(conf)
    offer = b"ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-CHACHA20-POLY1305"
    assert each(lambda impl: suite(pair[impl], offer)) == {
        "nats": "ECDHE-RSA-AES128-GCM-SHA256", "pynatsd": "ECDHE-RSA-AES256-GCM-SHA384"}
    chacha_first = b"ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256"
    assert same(pair, lambda s: suite(s, chacha_first)) == "ECDHE-RSA-CHACHA20-POLY1305"


@pytest.mark.parametrize("curves", [["CurveP384", "X25519"], ["X25519", "X25519MLKEM768"]], ids=["p384-x25519", "x25519-mlkem"])
def test_curve_preferences_pick_the_same_group(pki: GuidePKI, pairs: Callable[..., Pair], curves: list[str]) -> None:
    """Which group is negotiated for clients offering groups in different orders: the post-quantum
    hybrid wins whenever both sides have it, otherwise the client's order, as Go does."""
    pair = pairs(tls_conf(pki.server, curve_preferences=curves))

    def group(s: ServerProcess, offer: bytes) -> str:
        try:
            conn, sock, _ = pyopenssl_nats(s.port, pki.ca, groups=offer)
        except SSL.Error:
            return "refused"
        with sock:
            return conn.get_group_name() or ""

    for offer in (b"X25519:P-384", b"P-384:X25519", b"P-256:X25519MLKEM768", b"X25519:X25519MLKEM768"):
        same(pair, lambda s, o=offer: group(s, o))  # type: ignore[misc]


def test_tls13_suites_in_cipher_suites_restrict_pynatsd_only(pki: GuidePKI, pairs: Callable[..., Pair]) -> None:
    """README: 'Listing TLS 1.3 suites restricts TLS 1.3 (Go ignores them)'."""
    pair = pairs(tls_conf(pki.server, cipher_suites=["TLS_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]))

    def tls13_with(s: ServerProcess, suite: bytes) -> str:
        sock = socket.create_connection((HOST, s.port), timeout=5)
        with sock:
            assert _info_line(sock, 3) is not None
            sock.settimeout(None)  # OpenSSL drives a blocking socket; the server's timeout bounds it
            ctx = SSL.Context(SSL.TLS_METHOD)
            ctx.load_verify_locations(pki.ca)
            ctx.set_verify(SSL.VERIFY_PEER)
            ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
            assert _lib.SSL_CTX_set_ciphersuites(ctx._context, suite) == 1
            conn = SSL.Connection(ctx, sock)
            conn.set_tlsext_host_name(b"localhost")
            conn.set_connect_state()
            try:
                conn.do_handshake()
            except SSL.Error:
                return "refused"
            return conn.get_cipher_name() or ""

    assert same(pair, lambda s: tls13_with(s, b"TLS_AES_256_GCM_SHA384")) == "TLS_AES_256_GCM_SHA384"
    assert each(lambda impl: tls13_with(pair[impl], b"TLS_AES_128_GCM_SHA256")) == {
        "nats": "TLS_AES_128_GCM_SHA256", "pynatsd": "refused"}


def test_reload_applies_to_certificate_mapped_users(pki: GuidePKI, tmp_path: Path) -> None:
    """A live verify_and_map client keeps its certificate's identity across reloads: changed
    permissions apply to it at once, and it is dropped when its user is removed."""
    base = tls_conf(pki.server, ca_file=pki.ca, verify_and_map=True)

    def users(carol_perms: str | None) -> str:
        carol = f'{{user: "carol@example.com", permissions: {carol_perms}}}, ' if carol_perms else ""
        return base + f'authorization {{ users = [ {carol}{{user: "x"}} ] }}\n'

    servers: dict[str, ServerProcess] = {}
    socks: dict[str, ssl.SSLSocket] = {}
    try:
        for impl in IMPLS:
            servers[impl] = ServerProcess(impl, users('{publish: ">"}')).start()
        for impl, s in servers.items():
            raw = socket.create_connection((HOST, s.port), timeout=3)
            assert _info_line(raw, 3) is not None
            socks[impl] = client_ctx(pki.ca, pki.carol).wrap_socket(raw, server_hostname="localhost")
            socks[impl].sendall(b'CONNECT {"verbose":false}\r\nPUB a.b 0\r\n\r\nPING\r\n')
        assert each(lambda impl: _read(socks[impl], b"PONG\r\n", 3)) == {i: (b"PONG\r\n", "until") for i in IMPLS}
        for s in servers.values():
            s.reload(users('{publish: "only.>"}'))
        each(lambda impl: wait_lines(servers[impl], r"\[INF\] Reloaded server configuration"))
        for sock in socks.values():
            sock.sendall(b"PUB a.b 0\r\n\r\nPING\r\n")
        denied = (b"-ERR 'Permissions Violation for Publish to \"a.b\"'\r\nPONG\r\n", "until")
        assert each(lambda impl: _read(socks[impl], b"PONG\r\n", 3)) == {i: denied for i in IMPLS}
        for s in servers.values():
            s.reload(users(None))
        assert each(lambda impl: _read(socks[impl], None, 3)) == {i: (b"", "EOF") for i in IMPLS}
    finally:
        for sock in socks.values():
            sock.close()
        for s in servers.values():
            s.cleanup()
