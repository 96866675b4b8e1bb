"""Client-port TLS as a new user meets it, on nats-server and pynatsd side by side.

Each scenario runs the same config file / flags against the real nats-server and pynatsd and
compares what a user observes: whether it starts (exit code, the gist of a refusal), the INFO
TLS fields, what nats-py, ``openssl s_client`` and a pyOpenSSL client see, the -ERR texts of
certificate-mapped users, what a rejected or stalled client sees, ``--signal reload`` rotating a
certificate, and /varz and /connz over HTTPS.

The certificates are the ones users make: an RSA 2048 CA and server certificate made with the
``openssl`` command line the way the TLS guides do it (``openssl req`` / ``openssl x509 -req``
with an extension file for the SANs), and the set ``pynatsd certs DIR --client alice`` writes.
tests/interop/test_tls_differential.py already compares the single options (mTLS refusals,
timeouts, INFO fields, pins, negotiation, FIPS, -t verdicts) on the test CertSet; the scenarios
here are whole flows and the gaps between those. Where pynatsd deliberately differs (documented in
README.md) the test says so and checks both sides.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.helpers.servers import ServerProcess, free_port, impl_command
from tests.integration.test_client_tls import _info_line, tls_exchange

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
    flags, shared by the module's tests and stopped at its end."""
    started: dict[tuple[Any, ...], Pair] = {}

    def get(config: str | None, flags: tuple[str, ...] = ()) -> Pair:
        key = (config, flags)
        if key not in started:
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
    got = {impl: probe(pair[impl]) for impl in IMPLS}
    assert got["pynatsd"] == got["nats"], f"nats-server: {got['nats']!r}\npynatsd:     {got['pynatsd']!r}"
    return got["nats"]


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
    """INFO, TLS with ``who``'s certificate, ``script``, and what came back until PONG / EOF."""
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
        who = getattr(pki, name)
        got = same(pair, lambda s, w=who: exchange(s, pki.ca, w, SCRIPT))
        assert got == (True, data, "until"), name
    # a certificate from another CA never gets past the handshake; a CONNECT user is ignored
    assert same(pair, lambda s: exchange(s, pki.ca, pki.other_ca_client))[2] == "alert:TLSV1_ALERT_UNKNOWN_CA"
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
        (conf, ["-t", "--tlscert", pki.server.cert_file],
         "must specify [-c, --config] option to check configuration file syntax"),
    ]
    for c, args, text in cases:
        got = {impl: refusal(impl, c, args, tmp_path) for impl in IMPLS}
        assert got["nats"] == (1, text), args
        # pynatsd names where the setting came from
        assert got["pynatsd"] in ((1, text), (1, f"<flags>: {text}")), (args, got)
