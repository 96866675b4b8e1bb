"""OCSP stapling on the client port (the top-level ``ocsp`` block), against a local responder.

Differential part: the same certificate / mode / responder set-ups run on pynatsd and on the
real nats-server; both must staple the same status (or none), or refuse to start with the same
error text. In-process part: the staple file under store_dir, the refresh loop, keeping the
last good staple, shutting down on revocation, reload.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ocsp
from OpenSSL import SSL
from tests.helpers.ocsp_responder import OCSPPKI, Cert, OCSPResponder, make_cert, make_ocsp_pki
from tests.helpers.servers import ServerProcess, ServerStartError

from pynatsd.config.load import FlagValues, load_options
from pynatsd.server import Server

HOST = "127.0.0.1"


def get_staple(port: int, ca: str) -> bytes | None:
    """A NATS TLS client asking for the certificate status: the stapled response, or None."""
    sock = socket.create_connection((HOST, port), timeout=5)
    try:
        buf = b""
        while b"\r\n" not in buf:
            chunk = sock.recv(4096)
            assert chunk, "no INFO"
            buf += chunk
        assert buf.startswith(b"INFO ")
        sock.settimeout(None)  # OpenSSL drives a blocking socket; the server's TLS timeout bounds it
        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        ctx.load_verify_locations(ca)
        ctx.set_verify(SSL.VERIFY_PEER)
        got: dict[str, bytes] = {}

        def on_status(conn: SSL.Connection, data: bytes, _: object) -> bool:
            got["staple"] = data
            return True

        ctx.set_ocsp_client_callback(on_status)
        conn = SSL.Connection(ctx, sock)
        conn.set_tlsext_host_name(b"localhost")
        conn.request_ocsp()
        conn.set_connect_state()
        conn.do_handshake()
        return got.get("staple") or None
    finally:
        sock.close()


def staple_status(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    return ocsp.load_der_ocsp_response(raw).certificate_status.name.lower()


def tls_conf(cert: Cert, ca_file: str | None = None, extra: str = "") -> str:
    ca = f'\n  ca_file: "{ca_file}"' if ca_file else ""
    return f'tls {{\n  cert_file: "{cert.cert_file}"\n  key_file: "{cert.key_file}"{ca}\n{extra}}}\n'


@pytest.fixture(scope="module")
def responder() -> Iterator[OCSPResponder]:
    with OCSPResponder() as r:
        yield r


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory, responder: OCSPResponder) -> OCSPPKI:
    p = make_ocsp_pki(tmp_path_factory.mktemp("ocsp-pki"), responder.url)
    responder.ca = p.ca
    return p


@pytest.fixture(autouse=True)
def fresh_responder(responder: OCSPResponder) -> Iterator[None]:
    responder.mode = "ok"
    responder.statuses.clear()
    responder.default = "good"
    responder.signer = None
    responder.validity = dt.timedelta(hours=1)
    yield


# ---- differential: which set-ups staple what, and which refuse to start --------------------------

# (ocsp block, certificate, status the responder gives it, responder mode,
#  expected: staple status / None (no staple) / "fail:<text in the start-up error>")
CASES = [
    ("", "server_staple", "good", "ok", "good"),
    ("", "server_plain", "good", "ok", None),
    ("ocsp: true", "server_plain", "good", "ok", None),
    ("ocsp: false", "server_staple", "good", "ok", None),
    ("ocsp { mode: must }", "server_plain", "good", "ok", None),
    ("ocsp { mode: must }", "server_staple", "good", "ok", "good"),
    ("ocsp { mode: always }", "server_plain", "good", "ok", "good"),
    ("ocsp { mode: auto }", "server_staple", "revoked", "ok", "revoked"),
    ("ocsp { mode: always }", "server_plain", "revoked", "ok",
     "fail:found existing OCSP status for certificate at '{file}': revoked"),
    ("ocsp { mode: must }", "server_staple", "unknown", "ok",
     "fail:found existing OCSP status for certificate at '{file}': unknown"),
    ("ocsp { mode: always }", "server_no_aia", "good", "ok",
     "fail:bad OCSP status update for certificate at '{file}': no available ocsp servers"),
    ('ocsp { mode: always, url: "{url}" }', "server_no_aia", "good", "ok", "good"),
    ("ocsp { mode: always }", "server_plain", "good", "unreachable",
     "fail:bad OCSP status update for certificate at '{file}': exhausted ocsp servers: "
     "non-ok http status on POST request (reqlen="),
    ("ocsp { mode: always }", "server_plain", "good", "expired",
     "fail:bad OCSP status update for certificate at '{file}': invalid ocsp NextUpdate, is past time: "),
]


@pytest.mark.parametrize(("block", "which", "status", "mode", "expect"), CASES)
def test_stapling_matches_nats_server(
    impl: str, pki: OCSPPKI, responder: OCSPResponder, tmp_path: Path,
    block: str, which: str, status: str, mode: str, expect: str | None,
) -> None:
    cert: Cert = getattr(pki, which)
    responder.set_status(cert, status)
    responder.mode = mode
    config = block.replace("{url}", responder.url) + "\n" + tls_conf(cert, pki.ca_file)
    before = responder.count(cert.serial)
    srv = ServerProcess(impl, config, workdir=tmp_path)
    if expect is not None and expect.startswith("fail:"):
        with pytest.raises(ServerStartError) as exc:
            srv.start()
        srv.cleanup()
        text = expect[5:].replace("{file}", cert.cert_file)
        assert text in str(exc.value), str(exc.value)
        return
    with srv:
        assert staple_status(get_staple(srv.port, pki.ca_file)) == expect
    asked = responder.count(cert.serial) > before
    assert asked == (expect is not None)


def test_delegated_responder_and_issuer_in_cert_file(impl: str, pki: OCSPPKI, responder: OCSPResponder,
                                                     tmp_path: Path) -> None:
    """A response signed by a delegate with the OCSPSigning EKU is accepted; the issuer comes
    from the cert file (leaf + CA, no ca_file)."""
    responder.signer = pki.delegate
    config = "ocsp { mode: always }\n" + tls_conf(pki.server_chain)
    with ServerProcess(impl, config, workdir=tmp_path) as srv:
        assert staple_status(get_staple(srv.port, pki.ca_file)) == "good"


def test_delegate_without_ocsp_signing_is_refused(pki: OCSPPKI, responder: OCSPResponder, tmp_path: Path) -> None:
    """Deliberately stricter than nats-server (which staples it; clients such as OpenSSL then
    reject the staple): a delegate without the OCSPSigning EKU is not a responder."""
    responder.signer = pki.not_delegate
    config = "ocsp { mode: always }\n" + tls_conf(pki.server_plain, pki.ca_file)
    srv = ServerProcess("pynatsd", config, workdir=tmp_path)
    with pytest.raises(ServerStartError) as exc:
        srv.start()
    srv.cleanup()
    assert f"bad OCSP status update for certificate at '{pki.server_plain.cert_file}'" in str(exc.value)


def test_store_dir_file_is_shared_with_nats_server(pki: OCSPPKI, responder: OCSPResponder, tmp_path: Path) -> None:
    """nats-server writes <store_dir>/ocsp/<sha256 of the leaf>; pynatsd starts from that file
    with the responder down, and staples it."""
    store = tmp_path / "store"
    cert = pki.server_plain
    config = f'store_dir: "{store}"\nocsp {{ mode: always }}\n' + tls_conf(cert, pki.ca_file)
    with ServerProcess("nats", config, workdir=tmp_path / "n") as srv:
        assert staple_status(get_staple(srv.port, pki.ca_file)) == "good"
    key = hashlib.sha256(cert.cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    saved = (store / "ocsp" / key).read_bytes()
    responder.mode = "unreachable"
    before = responder.count()
    with ServerProcess("pynatsd", config, workdir=tmp_path / "p") as srv:
        assert get_staple(srv.port, pki.ca_file) == saved
    assert responder.count() == before


# ---- in-process: refresh, failures, shutdown, the file written, reload ---------------------------


async def start_server(tmp_path: Path, config: str) -> Server:
    path = tmp_path / "server.conf"
    path.write_text(config)
    opts = load_options(str(path), FlagValues(host=HOST, port=-1))
    srv = Server(opts)
    await srv.start()
    return srv


async def staple_of(srv: Server, ca: str) -> str | None:
    return staple_status(await asyncio.to_thread(get_staple, srv.port, ca))


async def wait_requests(responder: OCSPResponder, n: int, serial: int, timeout: float = 10.0) -> None:
    got = await asyncio.to_thread(responder.wait_requests, n, timeout, serial)
    assert got >= n, f"{got} OCSP requests, wanted {n}"


async def wait_log(caplog: pytest.LogCaptureFixture, text: str, timeout: float = 10.0) -> str:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        for r in caplog.records:
            if text in r.getMessage():
                return r.getMessage()
        assert asyncio.get_running_loop().time() < deadline, f"no log line with {text!r}"
        await asyncio.sleep(0.02)  # log records have no event to await: poll with a deadline


async def test_staple_written_to_store_dir_and_log_lines(
    pki: OCSPPKI, responder: OCSPResponder, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pynatsd")
    store = tmp_path / "store"
    cert = pki.server_staple
    srv = await start_server(tmp_path, f'store_dir: "{store}"\n' + tls_conf(cert, pki.ca_file))
    try:
        assert await staple_of(srv, pki.ca_file) == "good"
        key = hashlib.sha256(cert.cert.public_bytes(serialization.Encoding.DER)).hexdigest()
        data = (store / "ocsp" / key).read_bytes()
        assert ocsp.load_der_ocsp_response(data).serial_number == cert.serial
        await wait_log(caplog, "OCSP Stapling enabled for Client connections")
        line = await wait_log(caplog, f"Found OCSP status for Client certificate at '{cert.cert_file}': good, "
                                      "next update ")
        assert "checking again in 29m5" in line  # half of the hour left
    finally:
        await srv.shutdown()


async def test_refresh_at_half_life_and_keep_last_good_staple(
    pki: OCSPPKI, responder: OCSPResponder, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pynatsd")
    cert = pki.server_plain
    responder.validity = dt.timedelta(seconds=4)  # NextUpdate 4 s ahead: refresh in ~2 s
    start = responder.count(cert.serial)
    srv = await start_server(tmp_path, "ocsp { mode: always }\n" + tls_conf(cert, pki.ca_file))
    try:
        first = await asyncio.to_thread(get_staple, srv.port, pki.ca_file)
        await wait_requests(responder, start + 2, cert.serial)
        await wait_log(caplog, f"Received OCSP status for Client certificate '{cert.cert_file}': good")
        responder.mode = "unreachable"
        n = responder.count(cert.serial)
        await wait_requests(responder, n + 2, cert.serial)  # POST and GET of a failed refresh
        await wait_log(caplog, f"Bad OCSP status update for certificate '{cert.cert_file}': exhausted ocsp servers")
        kept = await asyncio.to_thread(get_staple, srv.port, pki.ca_file)
        assert staple_status(kept) == "good" and kept != first  # the refreshed one, still served
        assert srv.running
    finally:
        await srv.shutdown()


async def test_revoked_on_refresh_shuts_down_in_always_mode(
    pki: OCSPPKI, responder: OCSPResponder, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pynatsd")
    cert = pki.server_plain
    responder.validity = dt.timedelta(seconds=3)
    srv = await start_server(tmp_path, "ocsp { mode: always }\n" + tls_conf(cert, pki.ca_file))
    try:
        responder.set_status(cert, "revoked")
        await asyncio.wait_for(srv.wait_for_shutdown(), 15)
        await wait_log(caplog, f"Received OCSP status for Client certificate '{cert.cert_file}': revoked")
    finally:
        await srv.shutdown()


async def test_revoked_on_refresh_in_auto_mode_staples_it_and_stops_checking(
    pki: OCSPPKI, responder: OCSPResponder, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pynatsd")
    cert = pki.server_staple
    responder.validity = dt.timedelta(seconds=3)
    srv = await start_server(tmp_path, tls_conf(cert, pki.ca_file))
    try:
        responder.set_status(cert, "revoked")
        await wait_log(caplog, f"Received OCSP status for Client certificate '{cert.cert_file}': revoked")
        assert srv.running
        assert await staple_of(srv, pki.ca_file) == "revoked"
        assert srv.ocsp.monitor._task.done()  # no more refreshes
    finally:
        await srv.shutdown()


async def test_reload_restarts_monitor_and_changes_mode(
    pki: OCSPPKI, responder: OCSPResponder, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pynatsd")
    cert = pki.server_plain
    path = tmp_path / "server.conf"
    srv = await start_server(tmp_path, tls_conf(cert, pki.ca_file))
    try:
        assert await staple_of(srv, pki.ca_file) is None  # auto, no Must-Staple
        path.write_text("ocsp { mode: always }\n" + tls_conf(cert, pki.ca_file))
        srv.reload(load_options(str(path), FlagValues(host=HOST, port=-1)))
        await wait_log(caplog, "Reloaded: OCSP")
        await wait_log(caplog, f"Found OCSP status for Client certificate at '{cert.cert_file}': good")
        assert await staple_of(srv, pki.ca_file) == "good"
        path.write_text("ocsp: false\n" + tls_conf(cert, pki.ca_file))
        srv.reload(load_options(str(path), FlagValues(host=HOST, port=-1)))
        deadline = asyncio.get_running_loop().time() + 10
        while srv.ocsp.monitor is not None:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.02)  # the restart runs in the background: poll with a deadline
        assert await staple_of(srv, pki.ca_file) is None
    finally:
        await srv.shutdown()


async def test_reload_with_unreachable_responder_keeps_running(
    pki: OCSPPKI, responder: OCSPResponder, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """As nats-server: a failed OCSP restart after a reload is a warning, the reload stands."""
    caplog.set_level(logging.INFO, logger="pynatsd")
    path = tmp_path / "server.conf"
    srv = await start_server(tmp_path, tls_conf(pki.server_plain, pki.ca_file))
    try:
        responder.mode = "unreachable"
        path.write_text("ocsp { mode: always }\n" + tls_conf(pki.server_plain, pki.ca_file))
        srv.reload(load_options(str(path), FlagValues(host=HOST, port=-1)))
        await wait_log(caplog, "Can't restart OCSP features: bad OCSP status update for certificate at")
        assert srv.running
        assert await staple_of(srv, pki.ca_file) is None
    finally:
        await srv.shutdown()


# ---- the route port -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def route_cert(pki: OCSPPKI) -> Cert:
    """A route certificate (server and client auth) naming the responder."""
    return make_cert(pki.dir, "route", "localhost", issuer=pki.ca, ocsp_urls=(ocsp_url(pki),), server=True,
                     client=True)


def ocsp_url(pki: OCSPPKI) -> str:
    from pynatsd.tls.ocsp import aia_ocsp_urls

    return aia_ocsp_urls(pki.server_plain.cert)[0]


def cluster_conf(cert: Cert, ca_file: str) -> str:
    return ('cluster {\n  name: "c"\n  listen: "127.0.0.1:-1"\n'
            + "  " + tls_conf(cert, ca_file).replace("\n", "\n  ") + "\n}\n")


def route_staple(port: int, pki: OCSPPKI, who: Cert) -> bytes | None:
    """TLS at once on the route port (mutual), asking for the certificate status."""
    sock = socket.create_connection((HOST, port), timeout=5)
    sock.settimeout(None)  # OpenSSL drives a blocking socket; the server's TLS timeout bounds it
    try:
        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        ctx.load_verify_locations(pki.ca_file)
        ctx.use_certificate_chain_file(who.cert_file)
        ctx.use_privatekey_file(who.key_file)
        got: dict[str, bytes] = {}

        def on_status(conn: SSL.Connection, data: bytes, _: object) -> bool:
            got["staple"] = data
            return True

        ctx.set_ocsp_client_callback(on_status)
        conn = SSL.Connection(ctx, sock)
        conn.set_tlsext_host_name(b"localhost")
        conn.request_ocsp()
        conn.set_connect_state()
        conn.do_handshake()
        return got.get("staple") or None
    finally:
        sock.close()


def test_route_port_staples_like_nats_server(impl: str, pki: OCSPPKI, responder: OCSPResponder, route_cert: Cert,
                                             tmp_path: Path) -> None:
    config = "ocsp { mode: always }\n" + tls_conf(pki.server_plain, pki.ca_file) + cluster_conf(route_cert, pki.ca_file)
    with ServerProcess(impl, config, workdir=tmp_path) as srv:
        assert srv.ports is not None
        port = int(srv.ports["cluster"][0].rsplit(":", 1)[1])
        st = route_staple(port, pki, route_cert)
        assert st is not None and ocsp.load_der_ocsp_response(st).serial_number == route_cert.serial
        assert staple_status(st) == "good"
        assert "OCSP Stapling enabled for Router connections" in srv.stderr() + srv.stdout()


def test_route_certificate_without_responder_fails_start_like_nats_server(
    impl: str, pki: OCSPPKI, tmp_path: Path,
) -> None:
    config = "ocsp { mode: always }\n" + cluster_conf(pki.server_no_aia, pki.ca_file)
    srv = ServerProcess(impl, config, workdir=tmp_path)
    with pytest.raises(ServerStartError) as exc:
        srv.start()
    srv.cleanup()
    assert (f"bad OCSP status update for certificate at '{pki.server_no_aia.cert_file}': no available ocsp servers"
            in str(exc.value))


async def test_nats_server_routes_to_pynatsd_check_its_staple(pki: OCSPPKI, route_cert: Cert, tmp_path: Path) -> None:
    """nats-server in a stapling mode requires the staple of the route port it dials (and
    refuses the connection without one): with pynatsd's staple the route carries messages."""
    import nats

    base = "ocsp { mode: always }\n"
    a = ServerProcess("pynatsd", base + cluster_conf(route_cert, pki.ca_file), workdir=tmp_path / "a")
    await asyncio.to_thread(a.start)
    try:
        assert a.ports is not None
        url = "nats-route://localhost:" + a.ports["cluster"][0].rsplit(":", 1)[1]
        b_conf = base + cluster_conf(route_cert, pki.ca_file).replace(
            'listen: "127.0.0.1:-1"', f'listen: "127.0.0.1:-1"\n  routes: ["{url}"]')
        b = ServerProcess("nats", b_conf, workdir=tmp_path / "b")
        await asyncio.to_thread(b.start)
        try:
            sub_nc = await nats.connect(a.url, allow_reconnect=False)
            pub_nc = await nats.connect(b.url, allow_reconnect=False)
            try:
                sub = await sub_nc.subscribe("ocsp.route")
                await sub_nc.flush()
                deadline = asyncio.get_running_loop().time() + 10
                got = None
                while got is None:
                    assert asyncio.get_running_loop().time() < deadline, b.logs()
                    await pub_nc.publish("ocsp.route", b"hi")  # until the interest crossed the route
                    with contextlib.suppress(nats.errors.TimeoutError):
                        got = await sub.next_msg(timeout=0.2)
                assert got.data == b"hi"
                assert "missing OCSP Staple" not in b.stderr() + b.stdout()
            finally:
                await sub_nc.close()
                await pub_nc.close()
        finally:
            await asyncio.to_thread(b.cleanup)
    finally:
        await asyncio.to_thread(a.cleanup)
