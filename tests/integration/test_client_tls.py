"""Client-port TLS end to end, as a user meets it: a pynatsd process started from a config file
(or flags, or the environment) and real clients — nats-py with ``ssl.SSLContext``, a pyOpenSSL
client that offers X25519MLKEM768, ``openssl s_client`` and raw sockets.

Each test fails without the option or behaviour it names. The README's TLS configurations are
the ``README_*`` constants below, written verbatim into a config file next to certificates made
by ``pynatsd certs`` and started, so they work as written. Differential checks against the real
nats-server are in tests/interop/test_tls_differential.py (they reuse the helpers here).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
from cryptography import x509
from OpenSSL import SSL
from OpenSSL._util import lib as _lib
from tests.helpers.certs import CertSet, Issued, make_cert_set
from tests.helpers.servers import ServerProcess, free_port

from pynatsd.tls.certs import name

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[2]

# ---- helpers shared with tests/interop/test_tls_differential.py -------------------------------


@dataclass
class Exchange:
    """What a raw NATS-over-TLS client saw.

    ``info``: the INFO object (plain text before the handshake, or the first line inside TLS for
    handshake-first); ``handshake``: True when the client finished its side of the handshake;
    ``data``: bytes read after the handshake; ``end``: how reading stopped — "until" (the expected
    bytes arrived), "EOF", "timeout", "reset" or "alert:<OpenSSL reason>".
    """

    info: dict[str, Any] | None
    handshake: bool
    data: bytes
    end: str


def client_ctx(ca: str, who: Issued | None = None, **kw: Any) -> ssl.SSLContext:
    """What a nats-py user writes: trust the CA, present a certificate for mutual TLS."""
    ctx = ssl.create_default_context(cafile=ca)
    if who is not None:
        ctx.load_cert_chain(who.cert_file, who.key_file)
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


def _end_of(e: BaseException) -> str:
    if isinstance(e, ssl.SSLEOFError):
        return "EOF"
    if isinstance(e, ssl.SSLError):
        return f"alert:{e.reason}"
    if isinstance(e, ConnectionResetError | BrokenPipeError):
        return "reset"
    if isinstance(e, TimeoutError | socket.timeout):
        return "timeout"
    return type(e).__name__


def _read(sock: socket.socket, until: bytes | None, timeout: float) -> tuple[bytes, str]:
    data = b""
    deadline = time.monotonic() + timeout
    while True:
        if until is not None and until in data:
            return data, "until"
        left = deadline - time.monotonic()
        if left <= 0:
            return data, "timeout"
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except (OSError, ssl.SSLError) as e:
            return data, _end_of(e)
        if not chunk:
            return data, "EOF"
        data += chunk


def _info_line(sock: socket.socket, timeout: float) -> dict[str, Any] | None:
    data, _ = _read(sock, b"\r\n", timeout)
    if not data.startswith(b"INFO "):
        return None
    return json.loads(data[5 : data.index(b"\r\n")])  # type: ignore[no-any-return]


def tls_exchange(
    port: int,
    ca: str,
    who: Issued | None = None,
    *,
    send: bytes = b"",
    until: bytes | None = None,
    timeout: float = 3.0,
    handshake_first: bool = False,
    delay_handshake: float = 0.0,
    **ctx_kw: Any,
) -> Exchange:
    """Connect, read INFO (unless TLS comes first), do TLS, send ``send`` and read until ``until``
    appears (or EOF / an alert / ``timeout``)."""
    with socket.create_connection((HOST, port), timeout=timeout) as raw:
        info = None if handshake_first else _info_line(raw, timeout)
        if delay_handshake:
            time.sleep(delay_handshake)  # the scenario itself: a client slow to start TLS
        ctx = client_ctx(ca, who, **ctx_kw)
        try:
            sock = ctx.wrap_socket(raw, server_hostname="localhost")
        except (OSError, ssl.SSLError) as e:
            return Exchange(info, False, b"", _end_of(e))
        with sock:
            if handshake_first:
                info = _info_line(sock, timeout)
            if send:
                try:
                    sock.sendall(send)
                except (OSError, ssl.SSLError) as e:
                    return Exchange(info, True, b"", _end_of(e))
            data, end = _read(sock, until, timeout)
            return Exchange(info, True, data, end)


def plain_exchange(port: int, send: bytes, *, timeout: float = 3.0) -> tuple[dict[str, Any] | None, bytes, str]:
    """A plain-text client: read INFO, send ``send``, read until EOF/timeout."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        info = _info_line(s, timeout)
        if send:
            s.sendall(send)
        data, end = _read(s, None, timeout)
        return info, data, end


def pyopenssl_nats(
    port: int,
    ca: str,
    *,
    groups: bytes | None = None,
    ciphers: bytes | None = None,
    max_version: int | None = None,
    who: Issued | None = None,
) -> tuple[SSL.Connection, socket.socket, dict[str, Any] | None]:
    """A pyOpenSSL (OpenSSL 3.5+, ML-KEM capable) NATS client: INFO in plain text, then the
    handshake offering exactly ``groups``. Raises SSL.Error when the server refuses."""
    sock = socket.create_connection((HOST, port), timeout=5)
    info = _info_line(sock, 5)
    sock.settimeout(None)  # OpenSSL drives a blocking socket; the server's timeout bounds it
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.load_verify_locations(ca)
    ctx.set_verify(SSL.VERIFY_PEER)
    if groups is not None:
        assert _lib.SSL_CTX_set1_curves_list(ctx._context, groups) == 1
    if ciphers is not None:
        ctx.set_cipher_list(ciphers)
    if max_version is not None:
        ctx.set_max_proto_version(max_version)
    if who is not None:
        ctx.use_certificate_chain_file(who.cert_file)
        ctx.use_privatekey_file(who.key_file)
    conn = SSL.Connection(ctx, sock)
    conn.set_tlsext_host_name(b"localhost")
    conn.set_connect_state()
    try:
        conn.do_handshake()
    except BaseException:
        sock.close()
        raise
    return conn, sock, info


def pyopenssl_ping(conn: SSL.Connection) -> bytes:
    conn.sendall(b'CONNECT {"verbose":false}\r\nPING\r\n')
    got = b""
    while b"PONG\r\n" not in got:
        got += conn.recv(4096)
    return got


def wait_log(srv: ServerProcess, pattern: str, timeout: float = 5.0) -> str:
    """The first server log line matching ``pattern`` (regex), waiting for it to be written."""
    rx = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while True:
        for line in srv.stderr().splitlines():
            if rx.search(line):
                return line
        if time.monotonic() > deadline:
            raise AssertionError(f"no log line matching {pattern!r}\n{srv.logs()}")
        time.sleep(0.02)  # another process writes the log: poll with a deadline


def conf_value(path: str) -> str:
    return json.dumps(path)  # a quoted string the config parser reads back as written


def tls_block(certs: CertSet, server: Issued | None = None, **kw: Any) -> str:
    """A ``tls {}`` block with the test certificates; ``kw`` are further keys (Python values)."""
    srv = server or certs.server
    keys: dict[str, Any] = {"cert_file": srv.cert_file, "key_file": srv.key_file, **kw}
    lines = []
    for k, v in keys.items():
        if isinstance(v, bool):
            lines.append(f"{k}: {'true' if v else 'false'}")
        elif isinstance(v, list | tuple):
            lines.append(f"{k}: [{', '.join(conf_value(x) for x in v)}]")
        elif isinstance(v, str):
            lines.append(f"{k}: {conf_value(v)}")
        else:
            lines.append(f"{k}: {v}")
    return "tls {\n  " + "\n  ".join(lines) + "\n}\n"


@contextlib.contextmanager
def pynatsd(
    config: str | None,
    flags: Sequence[str] = (),
    *,
    env: dict[str, str] | None = None,
    workdir: Path | None = None,
    impl: str = "pynatsd",
) -> Iterator[ServerProcess]:
    srv = ServerProcess(impl, config, flags, env=env, workdir=workdir)
    srv.start()
    try:
        yield srv
    finally:
        srv.cleanup()


def start_fails(config: str, tmp_path: Path, flags: Sequence[str] = ()) -> tuple[int, str]:
    """Start pynatsd with ``config``; it must exit at once. Returns (exit code, stderr)."""
    path = tmp_path / "server.conf"
    path.write_text(config)
    p = subprocess.run(
        [sys.executable, "-m", "pynatsd", "-c", str(path), "-a", HOST, "-p", str(free_port()), *flags],
        capture_output=True, text=True, timeout=30, cwd=tmp_path,
    )
    return p.returncode, p.stderr


async def connect_tls(port: int, ctx: ssl.SSLContext, **kw: Any) -> nats.NATS:
    kw.setdefault("allow_reconnect", False)
    kw.setdefault("connect_timeout", 3)
    return await nats.connect(f"tls://{HOST}:{port}", tls=ctx, tls_hostname="localhost", **kw)


async def roundtrip(nc: nats.NATS, subject: str = "t.x") -> bytes:
    sub = await nc.subscribe(subject)
    await nc.publish(subject, b"secret")
    msg = await sub.next_msg(timeout=3)
    await sub.unsubscribe()
    return bytes(msg.data)


# ---- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertSet:
    return make_cert_set(tmp_path_factory.mktemp("client-tls-certs"))


@pytest.fixture(scope="module")
def carol(certs: CertSet) -> Issued:
    """Signed by the trusted CA but named by no user and pinned by no pin."""
    return certs.issue_extra("carol", name("carol", O="Company"), emails=("carol@example.com",),
                             dns=("carol.example.com",))


MAP_USERS = """
authorization {
  users = [
    { user: "alice@example.com", permissions: { publish: "alice.>", subscribe: ["alice.>", "_INBOX.>"] } }
    { user: "CN=bob,OU=Eng,O=Company", permissions: { publish: { deny: ">" }, subscribe: "bob.>" } }
  ]
}
"""


@pytest.fixture(scope="module")
def mapped(certs: CertSet) -> Iterator[ServerProcess]:
    """verify_and_map with per-user permissions, debug logging on."""
    conf = tls_block(certs, ca_file=certs.ca.cert_file, verify_and_map=True) + MAP_USERS
    with pynatsd(conf, ["-D"]) as srv:
        yield srv


# ---- INFO first, then the handshake; mutual TLS ---------------------------------------------------


def test_info_in_plain_text_then_tls(certs: CertSet, mapped: ServerProcess) -> None:
    ex = tls_exchange(mapped.port, certs.ca.cert_file, certs.alice, send=b"CONNECT {}\r\nPING\r\n",
                      until=b"PONG\r\n")
    assert ex.info is not None and ex.info["tls_required"] is True and ex.info["tls_verify"] is True
    assert ex.handshake and ex.data == b"+OK\r\nPONG\r\n"


@pytest.mark.parametrize(("who", "alert", "reason"), [
    (None, "TLSV13_ALERT_CERTIFICATE_REQUIRED", "no client certificate"),
    ("untrusted_client", "TLSV1_ALERT_UNKNOWN_CA", "unknown CA"),
    ("expired_client", "SSLV3_ALERT_CERTIFICATE_EXPIRED", "certificate expired"),
])
def test_mtls_rejections_and_their_log_line(certs: CertSet, mapped: ServerProcess, who: str | None,
                                            alert: str, reason: str) -> None:
    ident = getattr(certs, who) if who else None
    ex = tls_exchange(mapped.port, certs.ca.cert_file, ident)
    assert (ex.data, ex.end) == (b"", f"alert:{alert}")
    line = wait_log(mapped, rf"TLS handshake error: {reason} \[client listener")
    assert "[ERR]" in line and f"client listener {HOST}:{mapped.port}]" in line
    assert re.search(rf"\[ERR\] {HOST}:\d+ - cid:\d+ - TLS handshake error", line)


async def test_nats_py_mtls(certs: CertSet, mapped: ServerProcess) -> None:
    nc = await connect_tls(mapped.port, client_ctx(certs.ca.cert_file, certs.alice))
    assert await roundtrip(nc, "alice.x") == b"secret"
    await nc.close()
    for who in (None, certs.untrusted_client, certs.expired_client):
        with pytest.raises(OSError):
            await connect_tls(mapped.port, client_ctx(certs.ca.cert_file, who))


# ---- verify_and_map: certificate -> user -> permissions ------------------------------------------


async def test_mapped_users_get_their_permissions(certs: CertSet, mapped: ServerProcess) -> None:
    errors: list[str] = []

    async def error_cb(e: Exception) -> None:
        errors.append(str(e))

    # alice by her email SAN: may use alice.>, nothing else
    nc = await connect_tls(mapped.port, client_ctx(certs.ca.cert_file, certs.alice), error_cb=error_cb)
    assert await roundtrip(nc, "alice.orders") == b"secret"
    await nc.publish("bob.x", b"no")
    await nc.subscribe("bob.>")
    await nc.flush()
    await asyncio.wait_for(_until(lambda: len(errors) >= 2), 3)
    assert errors == ['nats: permissions violation for publish to "bob.x"',
                      'nats: permissions violation for subscription to "bob.>"']
    await nc.close()
    # bob by his subject DN: may subscribe to bob.> but publish nothing
    errors.clear()
    nc = await connect_tls(mapped.port, client_ctx(certs.ca.cert_file, certs.bob), error_cb=error_cb)
    await nc.subscribe("bob.>")
    await nc.publish("bob.x", b"no")
    await nc.flush()
    await asyncio.wait_for(_until(lambda: bool(errors)), 3)
    assert errors == ['nats: permissions violation for publish to "bob.x"']
    await nc.close()


async def _until(cond: Any) -> None:
    while not cond():
        await asyncio.sleep(0.01)


def test_unmapped_certificate_is_an_authorization_violation(certs: CertSet, carol: Issued,
                                                             mapped: ServerProcess) -> None:
    ex = tls_exchange(mapped.port, certs.ca.cert_file, carol, send=b'CONNECT {"verbose":false}\r\nPING\r\n')
    assert ex.handshake and (ex.data, ex.end) == (b"-ERR 'Authorization Violation'\r\n", "EOF")
    # the debug line says which identities were tried, in nats-server's order
    line = wait_log(mapped, r"User in cert \[")
    assert '"carol@example.com", "carol.example.com", "CN=carol,O=Company"' in line
    assert "not found" in line


def test_a_user_in_connect_does_not_override_the_certificate(certs: CertSet, mapped: ServerProcess) -> None:
    ex = tls_exchange(mapped.port, certs.ca.cert_file, certs.bob,
                      send=b'CONNECT {"verbose":false,"user":"alice@example.com"}\r\nPUB alice.x 1\r\nx\r\nPING\r\n',
                      until=b"PONG\r\n")
    assert ex.data == b"-ERR 'Permissions Violation for Publish to \"alice.x\"'\r\nPONG\r\n"
    wait_log(mapped, r'User "alice@example.com" found in connect proto, but user required from cert')


def test_map_and_verify_is_an_alias_and_names_the_canonical_key(certs: CertSet) -> None:
    conf = tls_block(certs, ca_file=certs.ca.cert_file, map_and_verify=True) + MAP_USERS
    with pynatsd(conf) as srv:
        line = wait_log(srv, "map_and_verify")
        assert "[WRN]" in line and '"verify_and_map"' in line
        ex = tls_exchange(srv.port, certs.ca.cert_file, certs.alice, send=b"CONNECT {}\r\nPUB bob.x 0\r\n\r\nPING\r\n",
                          until=b"PONG\r\n")
        assert ex.data == b"+OK\r\n-ERR 'Permissions Violation for Publish to \"bob.x\"'\r\nPONG\r\n"
        ex = tls_exchange(srv.port, certs.ca.cert_file, None)
        assert ex.end == "alert:TLSV13_ALERT_CERTIFICATE_REQUIRED"


# ---- pinned_certs ---------------------------------------------------------------------------------


def test_pinned_certs_hex_and_pem_file(certs: CertSet, carol: Issued) -> None:
    pins = [certs.alice.cert_file, certs.bob.spki_sha256.upper()]  # a PEM file and a hex SPKI hash
    conf = tls_block(certs, ca_file=certs.ca.cert_file, verify=True, pinned_certs=pins)
    with pynatsd(conf) as srv:
        for who in (certs.alice, certs.bob):
            ex = tls_exchange(srv.port, certs.ca.cert_file, who, send=b"PING\r\n", until=b"PONG\r\n")
            assert ex.data == b"PONG\r\n"
        # trusted by the CA but not pinned: the handshake is refused, nothing in clear text
        ex = tls_exchange(srv.port, certs.ca.cert_file, carol, send=b"PING\r\n")
        assert ex.data == b"" and ex.end != "until"
        wait_log(srv, r"TLS handshake error: certificate not pinned \[client listener")


# ---- handshake timeout, auth timer, plain text on a TLS port ---------------------------------------


def test_handshake_timeout_float_seconds_and_default(certs: CertSet) -> None:
    with pynatsd(tls_block(certs, timeout=0.3)) as srv:
        with socket.create_connection((HOST, srv.port)) as s:
            assert _info_line(s, 3) is not None
            started = time.monotonic()
            data, end = _read(s, None, 3)
            took = time.monotonic() - started
        assert (data, end) == (b"", "EOF") and 0.25 <= took < 1.5
        wait_log(srv, r"TLS handshake error: handshake timeout \[client listener")
    with pynatsd(tls_block(certs)) as srv:  # default: 2 seconds
        with socket.create_connection((HOST, srv.port)) as s:
            assert _info_line(s, 3) is not None
            started = time.monotonic()
            data, end = _read(s, None, 5)
            took = time.monotonic() - started
        assert (data, end) == (b"", "EOF") and 1.9 <= took < 3.5


def test_auth_timer_starts_after_the_handshake(certs: CertSet) -> None:
    """nats-server #432: a slow TLS handshake does not eat the authentication time."""
    conf = tls_block(certs, timeout=2) + "authorization { user: u, password: p, timeout: 0.5 }\n"
    with pynatsd(conf) as srv:
        started = time.monotonic()
        ex = tls_exchange(srv.port, certs.ca.cert_file, delay_handshake=0.8, timeout=4)
        assert ex.handshake, "the connection was closed before the handshake (auth timer started too early)"
        assert (ex.data, ex.end) == (b"-ERR 'Authentication Timeout'\r\n", "EOF")
        assert time.monotonic() - started >= 0.8 + 0.45


def test_plain_text_client_on_a_tls_port_is_closed(certs: CertSet) -> None:
    with pynatsd(tls_block(certs)) as srv:
        info, data, end = plain_exchange(srv.port, b'CONNECT {"verbose":true}\r\nPING\r\n')
        assert info is not None and info["tls_required"] is True
        assert (data, end) == (b"", "EOF")  # nats-server also just closes: no -ERR in clear text
        wait_log(srv, r"TLS handshake error: plain text on a TLS port \[client listener")


async def test_nats_py_without_tls_refuses_a_tls_required_server(certs: CertSet) -> None:
    with pynatsd(tls_block(certs)) as srv:
        with pytest.raises((OSError, nats.errors.Error)):
            await nats.connect(f"nats://{HOST}:{srv.port}", allow_reconnect=False, connect_timeout=2)


# ---- handshake_first ------------------------------------------------------------------------------


async def test_handshake_first_true(certs: CertSet) -> None:
    with pynatsd(tls_block(certs, handshake_first=True)) as srv:
        nc = await connect_tls(srv.port, client_ctx(certs.ca.cert_file), tls_handshake_first=True)
        assert await roundtrip(nc) == b"secret"
        await nc.close()
        # a client waiting for INFO in clear text gets nothing, then is closed by the TLS timeout
        with socket.create_connection((HOST, srv.port)) as s:
            data, end = _read(s, None, 1.0)
            assert data == b""
        ex = tls_exchange(srv.port, certs.ca.cert_file, handshake_first=True, send=b"PING\r\n", until=b"PONG\r\n")
        assert ex.info is not None and ex.info["tls_required"] is True and ex.data == b"PONG\r\n"


async def test_handshake_first_with_fallback_duration(certs: CertSet) -> None:
    with pynatsd(tls_block(certs, handshake_first="300ms")) as srv:
        # TLS at once
        nc = await connect_tls(srv.port, client_ctx(certs.ca.cert_file), tls_handshake_first=True)
        assert await roundtrip(nc) == b"secret"
        await nc.close()
        # silent for 300ms: INFO in clear text, then TLS as usual
        started = time.monotonic()
        ex = tls_exchange(srv.port, certs.ca.cert_file, send=b"PING\r\n", until=b"PONG\r\n")
        assert time.monotonic() - started >= 0.25
        assert ex.info is not None and ex.info["tls_required"] is True and ex.data == b"PONG\r\n"
        nc = await connect_tls(srv.port, client_ctx(certs.ca.cert_file))
        assert await roundtrip(nc) == b"secret"
        await nc.close()


async def test_openssl_s_client_against_handshake_first(certs: CertSet) -> None:
    """openssl s_client speaks TLS at once, so it talks to a handshake_first server directly."""
    openssl = shutil.which("openssl")
    assert openssl is not None, "the openssl command line tool is part of the test environment"
    conf = tls_block(certs, ca_file=certs.ca.cert_file, verify=True, handshake_first=True)
    with pynatsd(conf) as srv:
        proc = await asyncio.create_subprocess_exec(
            openssl, "s_client", "-connect", f"{HOST}:{srv.port}", "-servername", "localhost",
            "-CAfile", certs.ca.cert_file, "-cert", certs.alice.cert_file, "-key", certs.alice.key_file,
            "-verify_return_error", "-crlf", "-ign_eof",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        assert proc.stdin is not None and proc.stdout is not None
        lines: list[str] = []
        try:
            proc.stdin.write(b'CONNECT {"verbose":false}\nPING\n')
            await proc.stdin.drain()
            while not lines or lines[-1] != "PONG":
                line = await asyncio.wait_for(proc.stdout.readline(), 10)
                assert line, "s_client ended early:\n" + "\n".join(lines)
                lines.append(line.decode(errors="replace").rstrip("\r\n"))
        finally:
            proc.kill()
            await proc.wait()
        text = "\n".join(lines)
        assert "Verify return code: 0 (ok)" in text
        assert re.search(r'INFO \{.*"tls_required":true.*"tls_verify":true', text)


# ---- algorithms: ML-KEM by default, cipher_suites, curve_preferences, min_version, FIPS ---------------


def test_x25519mlkem768_negotiated_by_default(certs: CertSet) -> None:
    with pynatsd(tls_block(certs)) as srv:
        conn, sock, info = pyopenssl_nats(srv.port, certs.ca.cert_file, groups=b"X25519MLKEM768")
        try:
            assert info is not None and info["tls_required"]
            assert conn.get_group_name() == "X25519MLKEM768"
            assert conn.get_protocol_version_name() == "TLSv1.3"
            assert pyopenssl_ping(conn) == b"PONG\r\n"
        finally:
            sock.close()
        # a client that lists X25519 first still gets the hybrid (Go's preference)
        conn, sock, _ = pyopenssl_nats(srv.port, certs.ca.cert_file, groups=b"X25519:X25519MLKEM768")
        try:
            assert conn.get_group_name() == "X25519MLKEM768"
        finally:
            sock.close()


def test_cipher_suites_restrict_tls12(certs: CertSet) -> None:
    conf = tls_block(certs, cipher_suites=["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"])
    with pynatsd(conf) as srv:
        with pytest.raises(SSL.Error):
            pyopenssl_nats(srv.port, certs.ca.cert_file, ciphers=b"ECDHE-ECDSA-AES128-GCM-SHA256",
                           max_version=SSL.TLS1_2_VERSION)
        conn, sock, _ = pyopenssl_nats(srv.port, certs.ca.cert_file, max_version=SSL.TLS1_2_VERSION,
                                       ciphers=b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384")
        try:
            assert conn.get_cipher_name() == "ECDHE-ECDSA-AES256-GCM-SHA384"
            assert pyopenssl_ping(conn) == b"PONG\r\n"
        finally:
            sock.close()


def test_curve_preferences(certs: CertSet) -> None:
    with pynatsd(tls_block(certs, curve_preferences=["CurveP384"])) as srv:
        with pytest.raises(SSL.Error):
            pyopenssl_nats(srv.port, certs.ca.cert_file, groups=b"X25519MLKEM768:X25519")
        conn, sock, _ = pyopenssl_nats(srv.port, certs.ca.cert_file, groups=b"X25519:P-384")
        try:
            assert conn.get_group_name() == "secp384r1"
        finally:
            sock.close()


def test_min_version_13(certs: CertSet) -> None:
    with pynatsd(tls_block(certs, min_version="1.3")) as srv:
        ex = tls_exchange(srv.port, certs.ca.cert_file, maximum_version=ssl.TLSVersion.TLSv1_2)
        assert not ex.handshake and ex.end.startswith("alert:")
        ex = tls_exchange(srv.port, certs.ca.cert_file, send=b"PING\r\n", until=b"PONG\r\n")
        assert ex.data == b"PONG\r\n"


def test_min_version_below_12_is_allowed_with_a_warning(certs: CertSet) -> None:
    with pynatsd(tls_block(certs)) as srv:  # default minimum 1.2: a TLS 1.1 client is refused
        with pytest.raises(SSL.Error):
            pyopenssl_nats(srv.port, certs.ca.cert_file, max_version=SSL.TLS1_1_VERSION,
                           ciphers=b"DEFAULT:@SECLEVEL=0")
    with pynatsd(tls_block(certs, min_version="1.1")) as srv:
        line = wait_log(srv, r"min_version 1\.1 enables TLS 1\.1")
        assert "[WRN]" in line and "insecure" in line
        conn, sock, _ = pyopenssl_nats(srv.port, certs.ca.cert_file, max_version=SSL.TLS1_1_VERSION,
                                       ciphers=b"DEFAULT:@SECLEVEL=0")
        try:
            assert conn.get_protocol_version_name() == "TLSv1.1"
            assert pyopenssl_ping(conn) == b"PONG\r\n"
        finally:
            sock.close()


@pytest.mark.parametrize(("how", "env"), [
    ("config", {}),
    ("PYNATSD_FIPS", {"PYNATSD_FIPS": "1"}),
    ("GODEBUG", {"GODEBUG": "fips140=on"}),
])
def test_fips_policy_from_config_or_environment(certs: CertSet, how: str, env: dict[str, str]) -> None:
    conf = ("fips: true\n" if how == "config" else "") + tls_block(certs)
    with pynatsd(conf, env=env) as srv:
        with pytest.raises(SSL.Error):  # X25519 alone is not FIPS-approved
            pyopenssl_nats(srv.port, certs.ca.cert_file, groups=b"X25519")
        with pytest.raises(SSL.Error):  # nor is ChaCha20
            pyopenssl_nats(srv.port, certs.ca.cert_file, ciphers=b"ECDHE-ECDSA-CHACHA20-POLY1305",
                           max_version=SSL.TLS1_2_VERSION)
        conn, sock, _ = pyopenssl_nats(srv.port, certs.ca.cert_file, groups=b"P-256")
        try:
            assert conn.get_group_name() == "prime256v1" or conn.get_group_name() == "secp256r1"
        finally:
            sock.close()


def test_without_fips_x25519_and_chacha_work(certs: CertSet) -> None:
    with pynatsd(tls_block(certs), env={"PYNATSD_FIPS": "0"}) as srv:
        conn, sock, _ = pyopenssl_nats(srv.port, certs.ca.cert_file, groups=b"X25519")
        sock.close()
        conn, sock, _ = pyopenssl_nats(srv.port, certs.ca.cert_file, ciphers=b"ECDHE-ECDSA-CHACHA20-POLY1305",
                                       max_version=SSL.TLS1_2_VERSION)
        sock.close()


def test_fips_environment_value_must_be_a_switch(certs: CertSet, tmp_path: Path) -> None:
    path = tmp_path / "s.conf"
    path.write_text(tls_block(certs))
    p = subprocess.run([sys.executable, "-m", "pynatsd", "-t", "-c", str(path)], capture_output=True, text=True,
                       timeout=30, env={**os.environ, "PYNATSD_FIPS": "maybe"})
    assert p.returncode == 1
    assert 'PYNATSD_FIPS="maybe" is not a switch' in p.stderr and len(p.stderr.strip().splitlines()) == 1


# ---- command-line TLS -----------------------------------------------------------------------------


async def test_command_line_tls_flags(certs: CertSet) -> None:
    flags = ["--tls", "--tlscert", certs.server.cert_file, "--tlskey", certs.server.key_file,
             "--tlscacert", certs.ca.cert_file, "--tlsverify"]
    with pynatsd(None, flags) as srv:
        ex = tls_exchange(srv.port, certs.ca.cert_file, certs.alice, send=b"PING\r\n", until=b"PONG\r\n")
        assert ex.info is not None and ex.info["tls_required"] and ex.info["tls_verify"]
        assert ex.data == b"PONG\r\n"
        assert tls_exchange(srv.port, certs.ca.cert_file).end == "alert:TLSV13_ALERT_CERTIFICATE_REQUIRED"
        nc = await connect_tls(srv.port, client_ctx(certs.ca.cert_file, certs.bob))
        assert await roundtrip(nc) == b"secret"
        await nc.close()
    # the flags replace the file's certificate and verification (nats-server's merge)
    conf = tls_block(certs, server=certs.expired_server, verify=True, ca_file=certs.untrusted_ca.cert_file)
    with pynatsd(conf, ["--tlscert", certs.server.cert_file, "--tlskey", certs.server.key_file]) as srv:
        ex = tls_exchange(srv.port, certs.ca.cert_file, send=b"PING\r\n", until=b"PONG\r\n")
        assert ex.info is not None and "tls_verify" not in ex.info and ex.data == b"PONG\r\n"


# ---- start-up errors: one line naming the file and the fix ------------------------------------------


def _startup_cases(certs: CertSet, tmp: Path) -> list[tuple[str, str, str]]:
    ca: dict[str, Any] = {"ca_file": certs.ca.cert_file, "verify": True}
    return [
        ("missing cert", tls_block(certs, cert_file=str(tmp / "nope.pem")),
         rf'cert_file "{re.escape(str(tmp / "nope.pem"))}" does not exist; fix the path'),
        ("missing key", tls_block(certs, key_file=str(tmp / "nope-key.pem")),
         r'key_file ".*nope-key.pem" does not exist; fix the path'),
        ("missing CA", tls_block(certs, **{**ca, "ca_file": str(tmp / "nope-ca.pem")}),
         r'ca_file ".*nope-ca.pem" does not exist'),
        ("unreadable CA", tls_block(certs, **{**ca, "ca_file": str(tmp)}),
         r'ca_file ".*" is a directory; name the PEM file'),
        ("garbage CA", tls_block(certs, **{**ca, "ca_file": certs.not_a_pem_file}),
         r'garbage.pem": it holds no PEM certificate'),
        ("wrong key", tls_block(certs, key_file=certs.wrong_key_file),
         r'key_file ".*wrong-key.pem" does not match the certificate in cert_file ".*server-cert.pem"; use the key'),
        ("encrypted key", tls_block(certs, key_file=certs.encrypted_key_file),
         r"is encrypted; set key_password_file to a file holding its passphrase"),
        ("unknown cipher", tls_block(certs, cipher_suites=["TLS_NOPE_WITH_ROT13"]),
         r"unrecognized cipher TLS_NOPE_WITH_ROT13"),
        ("unknown curve", tls_block(certs, curve_preferences=["CurveP999"]),
         r"unrecognized curve preference CurveP999; known: X25519MLKEM768"),
    ]


def test_startup_errors_are_one_line_naming_file_and_fix(certs: CertSet, tmp_path: Path) -> None:
    for what, conf, pattern in _startup_cases(certs, tmp_path):
        code, err = start_fails(conf + "\n", tmp_path)
        assert code != 0, what
        lines = [ln for ln in err.splitlines() if "[FTL]" in ln]
        assert len(lines) == 1, (what, err)
        assert f"{tmp_path / 'server.conf'}:1: tls: " in lines[0], (what, lines[0])  # the block's line
        assert re.search(pattern, lines[0]), (what, lines[0])


def test_encrypted_key_with_key_password_file(certs: CertSet) -> None:
    conf = tls_block(certs, key_file=certs.encrypted_key_file, key_password_file=certs.key_password_file)
    with pynatsd(conf) as srv:
        ex = tls_exchange(srv.port, certs.ca.cert_file, send=b"PING\r\n", until=b"PONG\r\n")
        assert ex.data == b"PONG\r\n"


def test_expired_server_certificate_warns_loudly_and_starts(certs: CertSet) -> None:
    with pynatsd(tls_block(certs, server=certs.expired_server)) as srv:
        line = wait_log(srv, r"EXPIRED on")
        assert "[WRN]" in line and "renew it" in line and certs.expired_server.cert_file in line
        ex = tls_exchange(srv.port, certs.ca.cert_file)
        assert not ex.handshake  # clients refuse it, as the warning says


def test_a_client_refusing_the_server_certificate_is_told_apart(certs: CertSet, mapped: ServerProcess) -> None:
    ex = tls_exchange(mapped.port, certs.untrusted_ca.cert_file, certs.alice)  # the client lacks our CA
    assert not ex.handshake and ex.end == "alert:CERTIFICATE_VERIFY_FAILED"
    line = wait_log(mapped, r"TLS handshake error: our certificate was refused by the peer \(unknown CA\)")
    assert f"[client listener {HOST}:{mapped.port}]" in line


def test_help_tls_lists_the_names_a_tls_block_takes() -> None:
    from pynatsd.tls.context import CURVES, SECURE_TLS12, TLS13

    out = subprocess.run([sys.executable, "-m", "pynatsd", "--help_tls"], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    for n in [*SECURE_TLS12, *TLS13, *CURVES, "TLS_RSA_WITH_AES_128_GCM_SHA256"]:
        assert f"    {n}\n" in out, n


# ---- runtime failure log lines are rate-limited --------------------------------------------------------


async def test_failure_log_lines_are_rate_limited(certs: CertSet, monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    from tests.integration.test_core import running

    from pynatsd.config.options import TLSOptions
    from pynatsd.tls import failures

    monkeypatch.setattr(failures, "BURST", 3)
    monkeypatch.setattr(failures, "WINDOW", 1.5)
    caplog.set_level(logging.ERROR, logger="pynatsd")
    tls = TLSOptions(cert_file=certs.server.cert_file, key_file=certs.server.key_file)
    async with running(tls=tls) as s:
        for _ in range(8):  # a probe: plain text on the TLS port, again and again
            r, w = await asyncio.open_connection(HOST, s.port)
            await r.readline()
            w.write(b"CONNECT {}\r\n")
            assert await asyncio.wait_for(r.read(), 3) == b""
            w.close()
        await asyncio.sleep(0)

        def lines() -> list[str]:
            return [r.getMessage() for r in caplog.records if "TLS handshake error" in r.getMessage()]

        await asyncio.wait_for(_until(lambda: len(lines()) == 4), 3)  # the summary comes at the window's end
        got = lines()
        assert all(f"plain text on a TLS port [client listener {HOST}:{s.port}]" in x for x in got[:3])
        assert got[3].startswith(f"TLS handshake error: 5 more on the client listener {HOST}:{s.port} in the last 1.5s")
        assert "(plain text on a TLS port: 5)" in got[3]
        # a new window logs again
        r, w = await asyncio.open_connection(HOST, s.port)
        await r.readline()
        w.write(b"PING\r\n")
        assert await asyncio.wait_for(r.read(), 3) == b""
        w.close()
        await asyncio.wait_for(_until(lambda: len(lines()) == 5), 3)


# ---- `pynatsd certs`, `make run` and its dev.conf ----------------------------------------------------


def _make_run_certs_command() -> list[str]:
    """The `pynatsd certs` line of the Makefile's run target, with $(PY) as this Python."""
    text = (REPO / "Makefile").read_text()
    recipe = text.split("\nrun:", 1)[1].split("\n\n", 1)[0]
    line = next(ln.strip() for ln in recipe.splitlines() if "pynatsd certs" in ln)
    argv = shlex.split(line.replace("$(PY)", shlex.quote(sys.executable)))
    assert "-c conf/dev.conf" in recipe
    return argv


async def test_make_run_development_server_offers_tls_and_plain(tmp_path: Path) -> None:
    argv = _make_run_certs_command()
    subprocess.run(argv, cwd=tmp_path, check=True, capture_output=True, timeout=60)
    dev = tmp_path / ".dev-certs"
    conf = (REPO / "conf" / "dev.conf").read_text()
    with pynatsd(conf, ["-m", str(free_port())], workdir=tmp_path) as srv:
        plain = await nats.connect(f"nats://{HOST}:{srv.port}", allow_reconnect=False)
        assert await roundtrip(plain) == b"secret"
        secure = await connect_tls(srv.port, client_ctx(str(dev / "ca.pem")))
        assert await roundtrip(secure) == b"secret"
        info, _, _ = plain_exchange(srv.port, b"", timeout=0.3)
        assert info is not None and info.get("tls_available") is True and "tls_required" not in info
        await plain.close()
        await secure.close()
    # running it again keeps the still-valid files
    before = (dev / "ca.pem").read_bytes()
    subprocess.run(argv, cwd=tmp_path, check=True, capture_output=True, timeout=60)
    assert (dev / "ca.pem").read_bytes() == before


async def test_printed_tls_block_works_as_written(tmp_path: Path) -> None:
    work = tmp_path / "elsewhere"
    work.mkdir()
    out = subprocess.run([sys.executable, "-m", "pynatsd", "certs", "certs", "--client", "alice", "--client", "bob"],
                         cwd=tmp_path, check=True, capture_output=True, text=True, timeout=60).stdout
    mtls = out.split("# Mutual TLS", 1)[1].split("\n", 1)[1].split("\n\n", 1)[0]
    certs_dir = tmp_path / "certs"
    alice = Issued(x509.load_pem_x509_certificate((certs_dir / "alice-cert.pem").read_bytes()), None,  # type: ignore[arg-type]
                   str(certs_dir / "alice-cert.pem"), str(certs_dir / "alice-key.pem"))
    with pynatsd(mtls, workdir=work) as srv:  # started from another directory: the paths are absolute
        nc = await connect_tls(srv.port, client_ctx(str(certs_dir / "ca.pem"), alice))
        assert await roundtrip(nc) == b"secret"
        await nc.close()
        with pytest.raises(OSError):
            await connect_tls(srv.port, client_ctx(str(certs_dir / "ca.pem")))


# ---- the README's TLS configurations, verbatim --------------------------------------------------------
# They refer to files made by `pynatsd certs certs --client alice --client bob` in the directory the
# server is started from. /work/notes/README-tls.md (merged into README.md) shows exactly these texts.

README_SERVER_TLS = """\
# Clients must use TLS; they check the server against certs/ca.pem.
tls {
  cert_file: "certs/server-cert.pem"
  key_file:  "certs/server-key.pem"
}
"""

README_MTLS = """\
# Mutual TLS: every client shows a certificate signed by certs/ca.pem.
tls {
  cert_file: "certs/server-cert.pem"
  key_file:  "certs/server-key.pem"
  ca_file:   "certs/ca.pem"
  verify:    true
  timeout:   2          # seconds for the whole handshake; 0.5 works too
}
"""

README_MAPPING = """\
# The client certificate names the user; the user's permissions apply.
tls {
  cert_file: "certs/server-cert.pem"
  key_file:  "certs/server-key.pem"
  ca_file:   "certs/ca.pem"
  verify_and_map: true
}
authorization {
  users = [
    # alice-cert.pem carries the email SAN alice@localhost
    { user: "alice@localhost"
      permissions: { publish: "orders.>", subscribe: ["orders.>", "_INBOX.>"] } }
    # bob is matched by his certificate's subject
    { user: "CN=bob,O=pynatsd"
      permissions: { publish: { deny: ">" }, subscribe: "orders.>" } }
  ]
}
"""

README_PINNING = """\
# Only these client keys, even among certificates the CA signed.
tls {
  cert_file: "certs/server-cert.pem"
  key_file:  "certs/server-key.pem"
  ca_file:   "certs/ca.pem"
  verify:    true
  pinned_certs: [
    "certs/alice-cert.pem"     # pynatsd: a certificate file, its public key is pinned
  ]
}
"""

README_CIPHERS = """\
# TLS 1.2 limited to two suites (Go names); TLS 1.3 keeps its own three.
tls {
  cert_file: "certs/server-cert.pem"
  key_file:  "certs/server-key.pem"
  min_version: "1.2"
  cipher_suites: [
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
  ]
}
"""

README_CURVES = """\
# Key exchange: the post-quantum hybrid first, P-256 for older clients.
tls {
  cert_file: "certs/server-cert.pem"
  key_file:  "certs/server-key.pem"
  curve_preferences: [ "X25519MLKEM768", "CurveP256" ]
}
"""

README_MIN_TLS13 = """\
# TLS 1.3 only.
tls {
  cert_file: "certs/server-cert.pem"
  key_file:  "certs/server-key.pem"
  min_version: "1.3"
}
"""

README_HANDSHAKE_FIRST = """\
# TLS before INFO (clients must enable "TLS handshake first").
# "300ms" instead of true also serves clients that wait for INFO.
tls {
  cert_file: "certs/server-cert.pem"
  key_file:  "certs/server-key.pem"
  handshake_first: true
}
"""

README_CLIENT = """\
import asyncio
import ssl

import nats


async def main() -> None:
    tls = ssl.create_default_context(cafile="certs/ca.pem")
    tls.load_cert_chain("certs/alice-cert.pem", "certs/alice-key.pem")  # for mutual TLS
    nc = await nats.connect("tls://localhost:4222", tls=tls)
    sub = await nc.subscribe("orders.>")
    await nc.publish("orders.1", b"hello")
    print((await sub.next_msg()).data)
    await nc.close()


asyncio.run(main())
"""

README_EXAMPLES = {
    "server_tls": README_SERVER_TLS, "mtls": README_MTLS, "mapping": README_MAPPING, "pinning": README_PINNING,
    "ciphers": README_CIPHERS, "curves": README_CURVES, "min_tls13": README_MIN_TLS13,
    "handshake_first": README_HANDSHAKE_FIRST,
}


@pytest.fixture(scope="module")
def readme_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory where `pynatsd certs certs --client alice --client bob` was run, as the README says."""
    d = tmp_path_factory.mktemp("readme")
    subprocess.run([sys.executable, "-m", "pynatsd", "certs", "certs", "--client", "alice", "--client", "bob"],
                   cwd=d, check=True, capture_output=True, timeout=60)
    return d


def _dev(d: Path, who: str) -> Issued:
    cert = x509.load_pem_x509_certificate((d / "certs" / f"{who}-cert.pem").read_bytes())
    return Issued(cert, None, str(d / "certs" / f"{who}-cert.pem"), str(d / "certs" / f"{who}-key.pem"))  # type: ignore[arg-type]


def _readme_server(d: Path, example: str) -> contextlib.AbstractContextManager[ServerProcess]:
    work = Path(tempfile.mkdtemp(prefix=f"run-{example}-", dir=d))  # fresh: its own ports file
    (work / "certs").symlink_to(d / "certs")  # the same files, seen from the server's directory
    return pynatsd(README_EXAMPLES[example], workdir=work)


def test_readme_configs_pass_the_check(readme_dir: Path) -> None:
    for example, text in README_EXAMPLES.items():
        (readme_dir / f"{example}.conf").write_text(text)
        p = subprocess.run([sys.executable, "-m", "pynatsd", "-t", "-c", f"{example}.conf"], cwd=readme_dir,
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, (example, p.stderr)


async def test_readme_server_tls(readme_dir: Path) -> None:
    with _readme_server(readme_dir, "server_tls") as srv:
        nc = await connect_tls(srv.port, client_ctx(str(readme_dir / "certs" / "ca.pem")))
        assert await roundtrip(nc) == b"secret"
        await nc.close()


async def test_readme_mtls(readme_dir: Path) -> None:
    ca = str(readme_dir / "certs" / "ca.pem")
    with _readme_server(readme_dir, "mtls") as srv:
        nc = await connect_tls(srv.port, client_ctx(ca, _dev(readme_dir, "alice")))
        assert await roundtrip(nc) == b"secret"
        await nc.close()
        with pytest.raises(OSError):
            await connect_tls(srv.port, client_ctx(ca))


async def test_readme_mapping(readme_dir: Path) -> None:
    ca = str(readme_dir / "certs" / "ca.pem")
    errors: list[str] = []

    async def error_cb(e: Exception) -> None:
        errors.append(str(e))

    with _readme_server(readme_dir, "mapping") as srv:
        alice = await connect_tls(srv.port, client_ctx(ca, _dev(readme_dir, "alice")), error_cb=error_cb)
        bob = await connect_tls(srv.port, client_ctx(ca, _dev(readme_dir, "bob")), error_cb=error_cb)
        sub = await bob.subscribe("orders.>")
        await bob.flush()
        await alice.publish("orders.1", b"one")
        assert (await sub.next_msg(timeout=3)).data == b"one"
        await bob.publish("orders.2", b"two")
        await alice.publish("billing.1", b"no")
        await bob.flush()
        await alice.flush()
        await asyncio.wait_for(_until(lambda: len(errors) >= 2), 3)
        assert sorted(errors) == ['nats: permissions violation for publish to "billing.1"',
                                  'nats: permissions violation for publish to "orders.2"']
        await alice.close()
        await bob.close()


async def test_readme_pinning_and_the_hex_form(readme_dir: Path) -> None:
    ca = str(readme_dir / "certs" / "ca.pem")
    with _readme_server(readme_dir, "pinning") as srv:
        nc = await connect_tls(srv.port, client_ctx(ca, _dev(readme_dir, "alice")))
        await nc.close()
        # bob is not pinned: the server closes right after the handshake, so no PONG ever comes.
        # (nats-py itself reports that close either as an error or, when it arrives as a clean
        # EOF before the PONG, as a connection that is already gone: a raw exchange is exact.)
        ex = tls_exchange(srv.port, ca, _dev(readme_dir, "bob"), send=b"CONNECT {}\r\nPING\r\n", until=b"PONG\r\n")
        assert b"PONG" not in ex.data and (ex.end in ("EOF", "reset") or ex.end.startswith("alert:")), ex
    # the README's openssl pipeline prints the hex form, which nats-server also accepts
    cmd = ("openssl x509 -in certs/alice-cert.pem -noout -pubkey | openssl pkey -pubin -outform DER"
           " | openssl dgst -sha256 -r | cut -d' ' -f1")
    hexpin = subprocess.run(["sh", "-c", cmd], cwd=readme_dir, capture_output=True, text=True, check=True).stdout.strip()
    assert hexpin == _dev(readme_dir, "alice").spki_sha256


def test_readme_ciphers(readme_dir: Path) -> None:
    ca = str(readme_dir / "certs" / "ca.pem")
    with _readme_server(readme_dir, "ciphers") as srv:
        with pytest.raises(SSL.Error):
            pyopenssl_nats(srv.port, ca, ciphers=b"ECDHE-ECDSA-AES128-GCM-SHA256", max_version=SSL.TLS1_2_VERSION)
        conn, sock, _ = pyopenssl_nats(srv.port, ca, max_version=SSL.TLS1_2_VERSION)
        try:
            assert conn.get_cipher_name() in ("ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305")
        finally:
            sock.close()
        ex = tls_exchange(srv.port, ca, send=b"PING\r\n", until=b"PONG\r\n")  # TLS 1.3 as usual
        assert ex.data == b"PONG\r\n"


async def test_readme_curves(readme_dir: Path) -> None:
    ca = str(readme_dir / "certs" / "ca.pem")
    with _readme_server(readme_dir, "curves") as srv:
        conn, sock, _ = pyopenssl_nats(srv.port, ca)
        try:
            assert conn.get_group_name() == "X25519MLKEM768"
        finally:
            sock.close()
        with pytest.raises(SSL.Error):
            pyopenssl_nats(srv.port, ca, groups=b"X25519")
        nc = await connect_tls(srv.port, client_ctx(ca))  # the stdlib's OpenSSL 3.0: P-256
        assert await roundtrip(nc) == b"secret"
        await nc.close()


def test_readme_min_tls13(readme_dir: Path) -> None:
    ca = str(readme_dir / "certs" / "ca.pem")
    with _readme_server(readme_dir, "min_tls13") as srv:
        assert not tls_exchange(srv.port, ca, maximum_version=ssl.TLSVersion.TLSv1_2).handshake
        assert tls_exchange(srv.port, ca, send=b"PING\r\n", until=b"PONG\r\n").data == b"PONG\r\n"


async def test_readme_handshake_first(readme_dir: Path) -> None:
    ca = str(readme_dir / "certs" / "ca.pem")
    with _readme_server(readme_dir, "handshake_first") as srv:
        nc = await connect_tls(srv.port, client_ctx(ca), tls_handshake_first=True)
        assert await roundtrip(nc) == b"secret"
        await nc.close()


def test_readme_client_snippet(readme_dir: Path) -> None:
    """The README's nats-py example, run as written against the mapping example (port changed)."""
    with _readme_server(readme_dir, "mapping") as srv:
        script = README_CLIENT.replace("4222", str(srv.port))
        p = subprocess.run([sys.executable, "-c", script], cwd=srv.dir, capture_output=True, text=True, timeout=30)
        assert (p.returncode, p.stdout) == (0, "b'hello'\n"), p.stderr


def test_served_chain_is_cert_file_as_given_like_nats_server(certs: CertSet) -> None:
    """The chain sent is cert_file's certificates, never completed from ca_file (Go's way; and
    OpenSSL's automatic chain building cost a chain verification per handshake)."""
    conf = tls_block(certs, verify=True, ca_file=certs.ca.cert_file)
    seen: dict[str, list[str]] = {}
    for impl in ("nats", "pynatsd"):
        with pynatsd(conf, impl=impl) as srv:
            conn, sock, _ = pyopenssl_nats(srv.port, certs.ca.cert_file, who=certs.alice)
            try:
                chain = conn.get_peer_cert_chain(as_cryptography=True) or []
                seen[impl] = [c.subject.rfc4514_string() for c in chain]
                assert pyopenssl_ping(conn) == b"PONG\r\n"
            finally:
                sock.close()
    assert seen["pynatsd"] == seen["nats"] == [certs.server.cert.subject.rfc4514_string()]
