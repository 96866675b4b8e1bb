"""``certs`` / ``certificates`` lists in a tls block: several server certificates, one chosen per
handshake as Go's crypto/tls chooses (the first whose SANs match the SNI name and whose key the
client can use, else the first).

Which certificate comes back is compared with the real nats-server for the same configuration
and the same ClientHello (SNI names, none, unknown, IP address, restricted signature
algorithms, TLS 1.2 with one cipher suite or one curve), as are client verification on a
certificate other than the first, start-up refusals, /varz ``tls_cert_not_after`` and a SIGHUP
reload of a listed file. In-process: ``watch: true`` on a listed file, the expiry check of every
listed certificate, routes whose cluster tls has a list (with nats-server nodes), OCSP stapling
of the first certificate.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import select
import socket
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL
from OpenSSL._util import lib as _lib
from tests.helpers.certs import CertSet, Issued, make_cert_set
from tests.helpers.servers import ServerProcess, ServerStartError, impl_command

from pynatsd.config.options import TLSOptions
from pynatsd.monitor.certwatch import CertExpiryWatch
from pynatsd.tls.certs import issue, name, write_cert, write_key

HOST = "127.0.0.1"


def _issue(certs: CertSet, stem: str, cn: str, *, key: str = "ec", dns: tuple[str, ...] = (),
           ips: tuple[str, ...] = (), days: int = 90, past: bool = False) -> Issued:
    """A server (and client) certificate from the test CA with a key of the given kind."""
    if key == "rsa":
        from cryptography.hazmat.primitives.asymmetric import rsa

        pkey: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        pkey = ec.generate_private_key(ec.SECP384R1() if key == "p384" else ec.SECP256R1())
    kw: dict[str, Any] = {"days": days}
    if past:
        now = dt.datetime.now(dt.UTC)
        kw = {"not_before": now - dt.timedelta(days=30), "not_after": now - dt.timedelta(days=1)}
    cert = issue(name(cn), pkey, issuer=(certs.ca.cert, certs.ca.key), dns=dns, ips=ips,
                 server=True, client=True, **kw)
    cert_file, key_file = certs.dir / f"{stem}-cert.pem", certs.dir / f"{stem}-key.pem"
    write_cert(cert_file, cert)
    write_key(key_file, pkey)
    return Issued(cert, pkey, str(cert_file), str(key_file))


class Certs:
    def __init__(self, base: CertSet) -> None:
        self.base = base
        # distinct lifetimes, so /varz shows which one it reports
        self.by_name = {
            "a-rsa": _issue(base, "a-rsa", "a-rsa", key="rsa", dns=("a.example.com",), days=200),
            "a-ec": _issue(base, "a-ec", "a-ec", dns=("a.example.com",), days=100),
            "wild": _issue(base, "wild", "wild", dns=("*.b.example.com",), days=150),
            "ip": _issue(base, "ip", "ip", dns=("localhost",), ips=("127.0.0.1",), days=120),
            "p384": _issue(base, "p384", "p384", key="p384", dns=("c.example.com",), days=110),
            "expired": _issue(base, "expired", "expired", dns=("old.example.com",), past=True),
        }

    def __getitem__(self, key: str) -> Issued:
        return self.by_name[key]

    def block(self, order: list[str], extra: str = "") -> str:
        return f"tls {{\n  certs: [\n{self.entries(order)}  ]\n{extra}}}\n"

    def entries(self, order: list[str]) -> str:
        return "".join(f'    {{cert_file: "{self[n].cert_file}", key_file: "{self[n].key_file}"}}\n' for n in order)

    def pairs(self, order: list[str]) -> tuple[tuple[str, str], ...]:
        return tuple((self[n].cert_file, self[n].key_file) for n in order)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(make_cert_set(Path(tmp_path_factory.mktemp("certs-list"))))


def hello(port: int, *, sni: str | None = None, sigalgs: str | None = None, tls12: bool = False,
          ciphers: str | None = None, curves: str | None = None, client: Issued | None = None,
          ca: str | None = None, nats: bool = False, info: bool = True) -> str:
    """Connect as a NATS TLS client with the given ClientHello; the CN of the certificate the
    server presented, ``refused`` if the handshake failed, or (``nats``) what a PING got.
    ``info=False``: TLS at once (the HTTPS monitoring port)."""
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    if sigalgs:
        assert _lib.SSL_CTX_set1_sigalgs_list(ctx._context, sigalgs.encode()) == 1
    if tls12:
        ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
    if ciphers:
        ctx.set_cipher_list(ciphers.encode())
    if curves:
        assert _lib.SSL_CTX_set1_curves_list(ctx._context, curves.encode()) == 1
    if client is not None:
        ctx.use_certificate_file(client.cert_file)
        ctx.use_privatekey_file(client.key_file)
    if ca is not None:
        ctx.load_verify_locations(ca)
        ctx.set_verify(SSL.VERIFY_PEER)
    sock = socket.create_connection((HOST, port), timeout=5)
    try:
        buf = b""
        while info and b"\r\n" not in buf:
            chunk = sock.recv(4096)
            assert chunk, "no INFO"
            buf += chunk
        assert not info or buf.startswith(b"INFO ")
        conn = SSL.Connection(ctx, sock)
        conn.set_connect_state()
        if sni:
            conn.set_tlsext_host_name(sni.encode())

        def step(fn: Any, *args: Any) -> Any:
            while True:
                try:
                    return fn(*args)
                except SSL.WantReadError:
                    assert select.select([sock], [], [], 5)[0], "server silent"

        try:
            step(conn.do_handshake)
        except SSL.Error:
            return "refused"
        cn = _cn(conn)
        if not nats:
            return cn
        conn.sendall(b"CONNECT {}\r\nPING\r\n")
        got = b""
        try:
            while b"PONG" not in got and b"-ERR" not in got:
                data = step(conn.recv, 4096)
                if not data:
                    break
                got += data
        except (SSL.Error, OSError):
            return f"{cn}: closed"
        return f"{cn}: {'PONG' if b'PONG' in got else got.decode(errors='replace').strip()}"
    finally:
        sock.close()


def _cn(conn: SSL.Connection) -> str:
    cert = conn.get_peer_certificate(as_cryptography=True)
    assert cert is not None
    return str(cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value)


# SNI names, signature algorithm / version / suite / curve restrictions
CASES: list[dict[str, Any]] = [
    {},
    {"sni": "a.example.com"},
    {"sni": "A.Example.COM"},
    {"sni": "x.b.example.com"},
    {"sni": "b.example.com"},  # the wildcard needs one whole label
    {"sni": "y.x.b.example.com"},
    {"sni": "c.example.com"},
    {"sni": "unknown.example.org"},
    {"sni": "127.0.0.1"},  # an IP address as SNI matches IP SANs only
    {"sni": "localhost"},
    {"sni": "a.example.com", "sigalgs": "rsa_pss_rsae_sha256:rsa_pss_rsae_sha384"},
    {"sni": "a.example.com", "sigalgs": "ECDSA+SHA256"},
    {"sigalgs": "ECDSA+SHA256"},
    {"sigalgs": "ECDSA+SHA384"},  # TLS 1.3: only the P-384 key signs with it
    {"sigalgs": "ECDSA+SHA384", "tls12": True},  # TLS 1.2: any ECDSA key may
    {"sni": "x.b.example.com", "sigalgs": "rsa_pss_rsae_sha256:RSA+SHA256"},
    {"sni": "a.example.com", "tls12": True, "ciphers": "ECDHE-RSA-AES128-GCM-SHA256"},
    {"sni": "a.example.com", "tls12": True, "ciphers": "ECDHE-ECDSA-AES128-GCM-SHA256"},
    {"sni": "a.example.com", "tls12": True, "curves": "P-384"},  # the P-256 key is out
    {"tls12": True, "curves": "P-384", "ciphers": "ECDHE-ECDSA-AES256-GCM-SHA384"},
    # a key share for P-256 only: the server asks again for ML-KEM (HelloRetryRequest)
    {"sni": "a.example.com", "sigalgs": "ECDSA+SHA256", "curves": "P-256:X25519MLKEM768"},
]
ORDERS = [
    ["a-rsa", "a-ec", "wild", "ip", "p384"],
    ["a-ec", "a-rsa", "p384", "ip", "wild"],
    ["ip", "wild", "p384", "a-ec", "a-rsa"],
    ["wild", "ip", "a-ec"],  # keys of one kind: chosen by name alone (no ClientHello capture)
]


@pytest.mark.parametrize("order", ORDERS, ids=["-".join(o) for o in ORDERS])
def test_certificate_choice_matches_nats_server(certs: Certs, order: list[str]) -> None:
    got: dict[str, list[str]] = {}
    # pynatsd twice: handshakes on the event loop, and in worker threads
    for label, impl, env in (("nats", "nats", None), ("pynatsd", "pynatsd", None),
                             ("pynatsd threads", "pynatsd", {"PYNATSD_TLS_THREADS": "2"})):
        with ServerProcess(impl, certs.block(order), env=env) as srv:
            got[label] = [hello(srv.port, **case) for case in CASES]
    for label in ("pynatsd", "pynatsd threads"):
        for case, theirs, ours in zip(CASES, got["nats"], got[label], strict=True):
            assert ours == theirs, f"{case}: nats-server served {theirs}, {label} {ours}"
    assert len(set(got["pynatsd"]) - {"refused"}) >= 3  # the cases do exercise the choice


def test_client_verification_on_every_listed_certificate(certs: Certs) -> None:
    """With verify, a connection switched to another certificate's context still asks for and
    verifies the client's certificate, with the same CA names."""
    base = certs.base
    conf = certs.block(["ip", "wild"], f'  ca_file: "{base.ca.cert_file}"\n  verify: true\n')
    clients: list[dict[str, Any]] = [
        {"sni": "x.b.example.com", "client": base.alice},
        {"sni": "x.b.example.com", "client": base.untrusted_client},
        {"sni": "x.b.example.com"},
        {"sni": "localhost", "client": base.alice},
        {"sni": "localhost", "client": base.expired_client},
    ]
    got: dict[str, list[str]] = {}
    for impl in ("nats", "pynatsd"):
        with ServerProcess(impl, conf) as srv:
            got[impl] = [hello(srv.port, nats=True, ca=base.ca.cert_file, **c) for c in clients]
    assert got["pynatsd"] == got["nats"]
    assert got["pynatsd"][0] == "wild: PONG" and got["pynatsd"][3] == "ip: PONG"


def test_https_monitoring_port_chooses_like_nats_server(certs: Certs) -> None:
    """nats-server's HTTPS monitoring port uses the same certificate list and choice."""
    cases: list[dict[str, Any]] = [
        {}, {"sni": "x.b.example.com"}, {"sni": "a.example.com", "sigalgs": "ECDSA+SHA256"},
        {"sni": "localhost"}, {"sigalgs": "ECDSA+SHA384"},
    ]
    got = {}
    for impl in ("nats", "pynatsd"):
        with ServerProcess(impl, certs.block(["a-rsa", "a-ec", "wild", "ip", "p384"]) + "https_port: -1\n") as srv:
            assert srv.ports is not None, "ports file not read"
            port = int(srv.ports["monitoring"][0].rsplit(":", 1)[1])
            got[impl] = [hello(port, info=False, **c) for c in cases]
    assert got["pynatsd"] == got["nats"]
    assert len(set(got["pynatsd"])) >= 4


def test_varz_reports_the_first_listed_certificate(certs: Certs) -> None:
    for order in (["a-ec", "a-rsa"], ["a-rsa", "a-ec"]):
        seen = {}
        for impl in ("nats", "pynatsd"):
            with ServerProcess(impl, certs.block(order) + "http_port: -1\n") as srv:
                assert srv.ports is not None, "ports file not read"
                with urllib.request.urlopen(srv.ports["monitoring"][0] + "/varz", timeout=30) as r:
                    seen[impl] = json.loads(r.read())["tls_cert_not_after"]
        first = certs[order[0]].cert.not_valid_after_utc
        assert seen["pynatsd"] == seen["nats"] == f"{first:%Y-%m-%dT%H:%M:%S}Z"


@pytest.mark.parametrize("fault", ["missing", "wrong-key"])
def test_a_bad_entry_refuses_to_start_naming_it(certs: Certs, fault: str, tmp_path: Path) -> None:
    good = f'{{cert_file: "{certs["a-ec"].cert_file}", key_file: "{certs["a-ec"].key_file}"}}'
    if fault == "missing":
        bad = f'{{cert_file: "{certs.base.dir}/nope.pem", key_file: "{certs["ip"].key_file}"}}'
        ours = f'tls: certs entry 2/2: cert_file "{certs.base.dir}/nope.pem" does not exist'
        theirs = "error parsing X509 certificate/key pair 2/2: open"
    else:
        bad = f'{{cert_file: "{certs["ip"].cert_file}", key_file: "{certs.base.wrong_key_file}"}}'
        ours = (f'tls: certs entry 2/2: key_file "{certs.base.wrong_key_file}" does not match the certificate '
                f'in cert_file "{certs["ip"].cert_file}"')
        theirs = "error parsing X509 certificate/key pair 2/2: tls: private key does not match public key"
    conf = f"tls {{ certs: [ {good}, {bad} ] }}\n"
    conf_file = tmp_path / "bad.conf"
    conf_file.write_text(conf)
    for impl, text in (("nats", theirs), ("pynatsd", ours)):
        srv = ServerProcess(impl, conf, ready_timeout=10)
        with pytest.raises(ServerStartError) as e:
            srv.start()
        srv.cleanup()
        assert text in str(e.value)
        # and -t (check the configuration) says the same
        checked = subprocess.run([*impl_command(impl), "-t", "-c", str(conf_file)], capture_output=True,
                                 text=True, timeout=30)
        assert checked.returncode != 0 and text in checked.stdout + checked.stderr


def test_expired_listed_certificate_starts_with_a_warning(certs: Certs) -> None:
    conf = certs.block(["a-ec", "expired"])
    for impl in ("nats", "pynatsd"):
        with ServerProcess(impl, conf) as srv:
            assert hello(srv.port, sni="a.example.com") == "a-ec"
            assert hello(srv.port, sni="old.example.com") == "expired"
            if impl == "pynatsd":
                assert (f'tls: certs entry 2/2: the certificate in cert_file "{certs["expired"].cert_file}" '
                        "EXPIRED on") in srv.stderr()


def _replace(target: Issued, new: Issued) -> None:
    """Write ``new``'s certificate and key over ``target``'s files (renamed into place)."""
    for src, dst in ((new.key_file, target.key_file), (new.cert_file, target.cert_file)):
        tmp = Path(dst + ".tmp")
        tmp.write_bytes(Path(src).read_bytes())
        tmp.replace(dst)


def _poll(cond: Any, what: str, timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)  # another process: no event to await


def test_sighup_reload_rereads_every_listed_file(certs: Certs, tmp_path: Path) -> None:
    base = certs.base
    for impl in ("nats", "pynatsd"):
        d = tmp_path / impl
        d.mkdir()
        first = _issue(base, f"{impl}-first", "first", dns=("one.example.com",))
        second = _issue(base, f"{impl}-second", "second", dns=("two.example.com",))
        moved = Path(d / "second-cert.pem"), Path(d / "second-key.pem")
        moved[0].write_bytes(Path(second.cert_file).read_bytes())
        moved[1].write_bytes(Path(second.key_file).read_bytes())
        live = Issued(second.cert, second.key, str(moved[0]), str(moved[1]))
        conf = (f'tls {{ certs: [ {{cert_file: "{first.cert_file}", key_file: "{first.key_file}"}},'
                f' {{cert_file: "{live.cert_file}", key_file: "{live.key_file}"}} ] }}\n')
        with ServerProcess(impl, conf) as srv:
            assert hello(srv.port, sni="two.example.com") == "second"
            _replace(live, _issue(base, f"{impl}-renewed", "renewed", dns=("two.example.com",)))
            srv.reload()
            _poll(lambda: hello(srv.port, sni="two.example.com") == "renewed", f"{impl} to serve the renewal")
            assert hello(srv.port, sni="one.example.com") == "first"
            assert hello(srv.port) == "first"


# ---- in-process: watch, expiry check, routes, OCSP ------------------------------------------------

async def _served(port: int, **kw: Any) -> str:
    import asyncio

    return await asyncio.to_thread(hello, port, **kw)


async def test_watch_reloads_a_listed_file(certs: Certs, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import asyncio

    from tests.integration.test_core import running

    caplog.set_level(logging.INFO, logger="pynatsd")
    base = certs.base
    second = _issue(base, "w-second", "second", dns=("two.example.com",), days=60)
    live = Issued(second.cert, second.key, str(tmp_path / "c.pem"), str(tmp_path / "k.pem"))
    Path(live.cert_file).write_bytes(Path(second.cert_file).read_bytes())
    Path(live.key_file).write_bytes(Path(second.key_file).read_bytes())
    tls = TLSOptions(certificates=(certs.pairs(["a-ec"])[0], (live.cert_file, live.key_file)), watch=True)
    async with running(tls=tls, tls_watch_interval=0.05) as s:
        assert await _served(s.port, sni="two.example.com") == "second"
        renewed = _issue(base, "w-renewed", "renewed", dns=("two.example.com",), days=70)
        _replace(live, renewed)
        deadline = asyncio.get_running_loop().time() + 10
        while await _served(s.port, sni="two.example.com") != "renewed":
            assert asyncio.get_running_loop().time() < deadline, "the renewal was not picked up"
            await asyncio.sleep(0.05)
        assert await _served(s.port, sni="a.example.com") == "a-ec"
        a_exp = f"{certs['a-ec'].cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%S}Z"
        r_exp = f"{renewed.cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%S}Z"
        assert (f"Reloaded TLS certificates for client from {certs['a-ec'].cert_file} (expires {a_exp}), "
                f"{live.cert_file} (expires {r_exp})") in caplog.messages


async def test_expiry_check_covers_every_listed_certificate(
    certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.integration.test_core import running

    caplog.set_level(logging.INFO, logger="pynatsd")
    tls = TLSOptions(certificates=certs.pairs(["a-ec", "expired"]))
    async with running(tls=tls) as s:
        watch = CertExpiryWatch(s)
        flagged = watch.check()
        assert [(c.listener, c.source) for c in flagged] == [("client", certs["expired"].cert_file)]
        assert any(f"({certs['expired'].cert_file}) expired at" in m for m in caplog.messages)
        assert len(watch.problems()) == 1


async def test_routes_with_certs_lists_in_a_mixed_cluster(certs: Certs) -> None:
    """cluster.tls with a list on nats-server and pynatsd nodes: routes form both ways (each side
    presents its first certificate when dialling and chooses per handshake when accepting)."""
    from tests.integration.test_cluster import nroutes, wait_until
    from tests.interop.test_cluster_mixed import Mixed, nats_conf, nats_route

    base = certs.base
    order = ["ip", "a-rsa"]  # dialled by IP: no SNI, so the first must name 127.0.0.1
    nats_tls = f"  tls {{\n    certs: [\n{certs.entries(order)}    ]\n    ca_file: \"{base.ca.cert_file}\"\n  }}\n"
    tls = TLSOptions(certificates=certs.pairs(order), ca_file=base.ca.cert_file, verify=True)
    m = Mixed()
    try:
        a = await m.nats(nats_conf("A", [], tls=nats_tls))
        p = await m.pynatsd("P", (nats_route(a),), tls=tls)
        b = await m.nats(nats_conf("B", [nats_route(a)], tls=nats_tls))
        await wait_until(lambda: nroutes(p) == 2, timeout=15, what="routes to both nats-servers")
        assert p.routes is not None and p.routes.server_tls is not None
        assert len(p.routes.server_tls.contexts) == 2
        assert all(r.tls_info is not None for r in p.routes.routes.values())
        assert b.running
    finally:
        await m.close()


def test_ocsp_staples_the_first_listed_certificate(tmp_path: Path) -> None:
    """Only the first certificate is stapled (nats-server: "only the first certificate");
    another one chosen by SNI is served without a staple."""
    from tests.helpers.ocsp_responder import OCSPResponder, make_cert

    with OCSPResponder() as r:
        ca = make_cert(tmp_path, "ca", "OCSP CA", ca=True)
        r.ca = ca
        staple = make_cert(tmp_path, "staple", "staple", issuer=ca, ocsp_urls=(r.url,), must_staple=True, server=True)
        other = _ocsp_other(tmp_path, ca, r.url)
        conf = (f'ocsp {{ mode: always }}\ntls {{ ca_file: "{ca.cert_file}", certs: [ '
                f'{{cert_file: "{staple.cert_file}", key_file: "{staple.key_file}"}}, '
                f'{{cert_file: "{other[0]}", key_file: "{other[1]}"}} ] }}\n')
        with ServerProcess("pynatsd", conf) as srv:
            assert _staple(srv.port, "localhost") == ("staple", staple.cert.serial_number)
            assert _staple(srv.port, "other.example.com") == ("other", None)
            assert f"Found OCSP status for Client certificate at '{staple.cert_file}': good" in srv.stderr()


def _ocsp_other(directory: Path, ca: Any, url: str) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = issue(name("other"), key, issuer=(ca.cert, ca.key), dns=("other.example.com",), server=True)
    write_cert(directory / "other-cert.pem", cert)
    write_key(directory / "other-key.pem", key)
    return str(directory / "other-cert.pem"), str(directory / "other-key.pem")


def _staple(port: int, sni: str) -> tuple[str, int | None]:
    from cryptography.x509 import ocsp

    sock = socket.create_connection((HOST, port), timeout=5)
    try:
        buf = b""
        while b"\r\n" not in buf:
            buf += sock.recv(4096)
        sock.settimeout(None)  # the server's TLS timeout bounds the handshake
        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        got: dict[str, bytes] = {}

        def on_status(conn: SSL.Connection, data: bytes, _: object) -> bool:
            got["staple"] = data
            return True

        ctx.set_ocsp_client_callback(on_status)
        conn = SSL.Connection(ctx, sock)
        conn.set_tlsext_host_name(sni.encode())
        conn.request_ocsp()
        conn.set_connect_state()
        conn.do_handshake()
        cn = _cn(conn)
        raw = got.get("staple")
        return str(cn), (ocsp.load_der_ocsp_response(raw).serial_number if raw else None)
    finally:
        sock.close()


async def test_dialling_presents_the_listed_certificate_the_peer_accepts(certs: Certs, tmp_path: Path) -> None:
    """A route dialled with a list whose first certificate comes from a CA the peer does not
    name: Go presents the next one, whose CA it names; so does pynatsd (a route forms)."""
    import asyncio

    from tests.integration.test_cluster import nroutes, wait_until
    from tests.integration.test_cluster_tls import rogue_cert
    from tests.interop.test_cluster_mixed import Mixed, nats_conf, nats_route

    base = certs.base
    rogue = rogue_cert(base, tmp_path)
    listed = ((rogue[0], rogue[1]), (base.server.cert_file, base.server.key_file))
    entries = "".join(f'      {{cert_file: "{c}", key_file: "{k}"}}\n' for c, k in listed)
    dialer_tls = f"  tls {{\n    certs: [\n{entries}    ]\n    ca_file: \"{base.ca.cert_file}\"\n  }}\n"
    acceptor_tls = (f'  tls {{ cert_file: "{base.server.cert_file}", key_file: "{base.server.key_file}", '
                    f'ca_file: "{base.ca.cert_file}", verify: true }}\n')

    def routes_of(p: ServerProcess) -> int:
        assert p.ports is not None
        with urllib.request.urlopen(p.ports["monitoring"][0] + "/routez", timeout=30) as r:
            return int(json.loads(r.read())["num_routes"])

    m = Mixed()
    try:
        a = await m.nats(nats_conf("A", [], tls=acceptor_tls) + "http_port: -1\n")
        d = await m.nats(nats_conf("D", [nats_route(a)], tls=dialer_tls))
        # (nats-server to nats-server: a pool of route connections)
        await wait_until(lambda: routes_of(a) >= 1, timeout=15, what="nats-server's route with a list")
        await asyncio.to_thread(d.cleanup)
        await wait_until(lambda: routes_of(a) == 0, timeout=15, what="the route to go")
        tls = TLSOptions(certificates=listed, ca_file=base.ca.cert_file, verify=True)
        p = await m.pynatsd("P", (nats_route(a),), tls=tls)
        await wait_until(lambda: nroutes(p) == 1, timeout=15, what="pynatsd's route with a list")
        assert routes_of(a) == 1
    finally:
        await m.close()
