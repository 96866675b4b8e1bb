"""Client-port TLS, pynatsd against the real nats-server: the same config (file, flags or
environment) and the same client against both, comparing what the client sees.

Compared: how a rejected mutual-TLS client is refused (alert or EOF, at which step), a plain-text
client on a TLS port, the handshake timeout, the auth timer starting after TLS, the INFO TLS
fields, handshake_first and its fallback, verify_and_map permission and authorization texts,
pinned certificates, negotiated groups / suites / versions (including FIPS mode switched on through
GODEBUG) and the ``-t`` verdict on TLS configs. Where pynatsd deliberately goes beyond
nats-server (map_and_verify, certificate files in pinned_certs, min_version 1.0/1.1) the test says
so and checks both sides of the difference.
"""

from __future__ import annotations

import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from OpenSSL import SSL

from pynatsd.tls.certs import name
from tests.helpers.certs import CertSet, Issued, make_cert_set
from tests.helpers.servers import ServerProcess, nats_server_binary
from tests.integration.test_client_tls import (
    MAP_USERS,
    _info_line,
    _read,
    plain_exchange,
    pyopenssl_nats,
    tls_block,
    tls_exchange,
)

IMPLS = ("nats", "pynatsd")
Pair = dict[str, ServerProcess]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertSet:
    return make_cert_set(tmp_path_factory.mktemp("tls-diff-certs"))


@pytest.fixture(scope="module")
def carol(certs: CertSet) -> Issued:
    return certs.issue_extra("carol", name("carol", O="Company"), emails=("carol@example.com",))


@pytest.fixture(scope="module")
def pairs() -> Iterator[Callable[..., Pair]]:
    """``pairs(config, flags=(), env=None)``: nats-server and pynatsd with the same config, shared
    by the module's tests and stopped at its end."""
    started: dict[tuple[Any, ...], Pair] = {}

    def get(config: str | None, flags: tuple[str, ...] = (), env: dict[str, str] | None = None) -> Pair:
        key = (config, flags, tuple(sorted((env or {}).items())))
        if key not in started:
            pair: Pair = {}
            try:
                for impl in IMPLS:
                    pair[impl] = ServerProcess(impl, config, flags, env=env).start()
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


def both(pair: Pair, probe: Callable[[ServerProcess], Any]) -> dict[str, Any]:
    return {impl: probe(pair[impl]) for impl in IMPLS}


def same(pair: Pair, probe: Callable[[ServerProcess], Any]) -> Any:
    got = both(pair, probe)
    assert got["pynatsd"] == got["nats"], f"nats-server saw {got['nats']!r}, pynatsd {got['pynatsd']!r}"
    return got["nats"]


def seen(ex: Any) -> tuple[bool, bytes, str]:
    """What a client sees of an Exchange, without the INFO (server ids, ports differ)."""
    return ex.handshake, ex.data, ex.end


def mtls(certs: CertSet, **kw: Any) -> str:
    return tls_block(certs, ca_file=certs.ca.cert_file, verify=True, timeout=0.5, **kw)


# ---- rejected clients ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2], ids=["tls13", "tls12"])
@pytest.mark.parametrize("who", [None, "untrusted_client", "expired_client", "alice"])
def test_mtls_client_sees_the_same(certs: CertSet, pairs: Callable[..., Pair], who: str | None,
                                   version: ssl.TLSVersion) -> None:
    ident = getattr(certs, who) if who else None
    out = same(pairs(mtls(certs)), lambda s: seen(tls_exchange(
        s.port, certs.ca.cert_file, ident, send=b"PING\r\n" if who == "alice" else b"",
        until=b"PONG\r\n" if who == "alice" else None, maximum_version=version)))
    if who == "alice":
        assert out == (True, b"PONG\r\n", "until")
    elif version is ssl.TLSVersion.TLSv1_2:
        assert out[0] is False and out[2].startswith("alert:")  # refused inside the handshake
    else:
        assert out[0] is True and out[2].startswith("alert:")  # TLS 1.3: the alert follows the client's Finished


def test_plain_text_client_on_a_tls_port(certs: CertSet, pairs: Callable[..., Pair]) -> None:
    out = same(pairs(mtls(certs)), lambda s: plain_exchange(s.port, b'CONNECT {"verbose":true}\r\nPING\r\n')[1:])
    assert out == (b"", "EOF")


def test_handshake_timeout(certs: CertSet, pairs: Callable[..., Pair]) -> None:
    def silent(s: ServerProcess) -> tuple[bytes, str, bool]:
        import socket

        with socket.create_connection(("127.0.0.1", s.port)) as sock:
            assert _info_line(sock, 3) is not None
            t0 = time.monotonic()
            data, end = _read(sock, None, 3)
            return data, end, 0.4 <= time.monotonic() - t0 < 1.5  # tls timeout 0.5 s

    assert same(pairs(mtls(certs)), silent) == (b"", "EOF", True)


def test_auth_timer_starts_after_the_handshake(certs: CertSet, pairs: Callable[..., Pair]) -> None:
    conf = tls_block(certs, timeout=2) + "authorization { user: u, password: p, timeout: 0.5 }\n"
    out = same(pairs(conf), lambda s: seen(tls_exchange(s.port, certs.ca.cert_file, delay_handshake=0.8)))
    assert out == (True, b"-ERR 'Authentication Timeout'\r\n", "EOF")


# ---- INFO ----------------------------------------------------------------------------------------------


def _tls_fields(s: ServerProcess) -> dict[str, Any]:
    import socket

    with socket.create_connection(("127.0.0.1", s.port)) as sock:
        info = _info_line(sock, 2)
    if info is None:
        return {"INFO": "not sent in plain text"}
    return {k: v for k, v in info.items() if k.startswith("tls_") or k == "auth_required"}


@pytest.mark.parametrize("extra", [
    {}, {"verify": True}, {"verify_and_map": True}, {"handshake_first": "300ms"}, {"handshake_first": True},
], ids=["tls", "verify", "verify_and_map", "fallback", "handshake_first"])
@pytest.mark.parametrize("allow_non_tls", [False, True])
def test_info_tls_fields(certs: CertSet, pairs: Callable[..., Pair], extra: dict[str, Any],
                         allow_non_tls: bool) -> None:
    conf = tls_block(certs, ca_file=certs.ca.cert_file, **extra)
    if extra.get("verify_and_map"):
        conf += MAP_USERS
    if allow_non_tls:
        conf += "allow_non_tls: true\n"
    fields = same(pairs(conf), _tls_fields)
    if extra.get("handshake_first") is True:
        assert fields == {"INFO": "not sent in plain text"}
    else:
        assert ("tls_available" in fields) == allow_non_tls


@pytest.mark.parametrize(("first", "allow_non_tls"), [(True, False), (True, True), ("300ms", False), ("300ms", True)])
def test_tls_first_info_inside_tls(certs: CertSet, pairs: Callable[..., Pair], first: bool | str,
                                   allow_non_tls: bool) -> None:
    def probe(s: ServerProcess) -> tuple[Any, ...]:
        ex = tls_exchange(s.port, certs.ca.cert_file, handshake_first=True, send=b"PING\r\n", until=b"PONG\r\n")
        assert ex.info is not None
        return ex.info.get("tls_required"), ex.info.get("tls_available"), seen(ex)

    conf = tls_block(certs, handshake_first=first) + ("allow_non_tls: true\n" if allow_non_tls else "")
    # tls_available follows allow_non_tls even for a client that did TLS first
    assert same(pairs(conf), probe) == (True, True if allow_non_tls else None, (True, b"PONG\r\n", "until"))


def test_handshake_first_fallback_waits_then_sends_info(certs: CertSet, pairs: Callable[..., Pair]) -> None:
    def probe(s: ServerProcess) -> tuple[bool, bool]:
        import socket

        with socket.create_connection(("127.0.0.1", s.port)) as sock:
            t0 = time.monotonic()
            info = _info_line(sock, 3)
            return info is not None, time.monotonic() - t0 >= 0.25

    assert same(pairs(tls_block(certs, handshake_first="300ms")), probe) == (True, True)


# ---- verify_and_map -------------------------------------------------------------------------------------


def test_verify_and_map_permissions_and_violations(certs: CertSet, carol: Issued, pairs: Callable[..., Pair]) -> None:
    conf = tls_block(certs, ca_file=certs.ca.cert_file, verify_and_map=True) + MAP_USERS
    pair = pairs(conf)
    script = (b'CONNECT {"verbose":false,"pedantic":false}\r\nPUB bob.x 1\r\nx\r\nSUB bob.> 1\r\n'
              b'SUB alice.> 2\r\nPUB alice.y 2\r\nhi\r\nSUB x q 3\r\nPING\r\n')
    out = same(pair, lambda s: seen(tls_exchange(s.port, certs.ca.cert_file, certs.alice, send=script,
                                                 until=b"PONG\r\n")))
    assert out[1] == (b"-ERR 'Permissions Violation for Publish to \"bob.x\"'\r\n"
                      b"-ERR 'Permissions Violation for Subscription to \"bob.>\"'\r\n"
                      b"MSG alice.y 2 2\r\nhi\r\n"
                      b"-ERR 'Permissions Violation for Subscription to \"x\" using queue \"q\"'\r\nPONG\r\n")
    # bob by the RFC 4514 form of his subject; a user in CONNECT does not change who he is
    script = b'CONNECT {"verbose":false,"user":"alice@example.com"}\r\nPUB alice.x 0\r\n\r\nSUB bob.a 1\r\nPING\r\n'
    out = same(pair, lambda s: seen(tls_exchange(s.port, certs.ca.cert_file, certs.bob, send=script,
                                                 until=b"PONG\r\n")))
    assert out[1] == b"-ERR 'Permissions Violation for Publish to \"alice.x\"'\r\nPONG\r\n"
    # a certificate naming no user, and a wrong password for the mapped user
    for who, connect in ((carol, b'{"verbose":false}'), (carol, b'{"verbose":false,"user":"alice@example.com"}'),
                         (certs.bob, b'{"verbose":false,"pass":"x"}')):
        def refused(s: ServerProcess, w: Issued = who, c: bytes = connect) -> tuple[bool, bytes, str]:
            return seen(tls_exchange(s.port, certs.ca.cert_file, w, send=b"CONNECT " + c + b"\r\nPING\r\n"))

        out = same(pair, refused)
        assert out == (True, b"-ERR 'Authorization Violation'\r\n", "EOF")


# ---- pinned_certs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2], ids=["tls13", "tls12"])
def test_pinned_certs(certs: CertSet, carol: Issued, pairs: Callable[..., Pair], version: ssl.TLSVersion) -> None:
    pair = pairs(mtls(certs, pinned_certs=[certs.alice.spki_sha256]))
    ok = same(pair, lambda s: seen(tls_exchange(s.port, certs.ca.cert_file, certs.alice, send=b"PING\r\n",
                                                until=b"PONG\r\n", maximum_version=version)))
    assert ok == (True, b"PONG\r\n", "until")
    # not pinned: the handshake completes, then the server closes without a word
    refused = same(pair, lambda s: seen(tls_exchange(s.port, certs.ca.cert_file, carol, send=b"PING\r\n",
                                                     maximum_version=version)))
    assert refused == (True, b"", "EOF")


def test_pinned_certificate_file_is_a_pynatsd_extension(certs: CertSet, carol: Issued, tmp_path: Path) -> None:
    conf = mtls(certs, pinned_certs=[certs.alice.cert_file])
    assert _check(conf, tmp_path) == {"nats": False, "pynatsd": True}


# ---- algorithms ------------------------------------------------------------------------------------------


def _negotiate(s: ServerProcess, **kw: Any) -> tuple[str, ...]:
    try:
        conn, sock, _ = pyopenssl_nats(s.port, kw.pop("ca"), **kw)
    except SSL.Error:
        return ("refused",)
    try:
        return ("ok", conn.get_protocol_version_name(), conn.get_cipher_name() or "", conn.get_group_name() or "")
    finally:
        sock.close()


@pytest.mark.parametrize(("extra", "client"), [
    ({}, {"groups": b"X25519MLKEM768"}),
    ({}, {"groups": b"X25519:X25519MLKEM768"}),  # the hybrid wins even without its key share
    ({}, {"groups": b"P-384:X25519"}),
    ({"curve_preferences": ["CurveP384"]}, {"groups": b"X25519MLKEM768:X25519"}),
    ({"curve_preferences": ["CurveP384"]}, {"groups": b"X25519:P-384"}),
    ({"cipher_suites": ["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"]},
     {"ciphers": b"ECDHE-ECDSA-AES128-GCM-SHA256", "max_version": SSL.TLS1_2_VERSION}),
    ({"cipher_suites": ["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"]},
     {"ciphers": b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384", "max_version": SSL.TLS1_2_VERSION}),
    ({"min_version": "1.3"}, {"max_version": SSL.TLS1_2_VERSION}),
    ({}, {"max_version": SSL.TLS1_1_VERSION, "ciphers": b"DEFAULT:@SECLEVEL=0"}),
], ids=["mlkem", "mlkem-preferred", "p384", "curves-refuse", "curves-p384", "suites-refuse", "suites-pick",
        "min13", "tls11"])
def test_negotiation(certs: CertSet, pairs: Callable[..., Pair], extra: dict[str, Any], client: dict[str, Any]) -> None:
    same(pairs(tls_block(certs, **extra)), lambda s: _negotiate(s, ca=certs.ca.cert_file, **client))


@pytest.mark.parametrize("client", [
    {"groups": b"X25519"}, {"groups": b"P-256"}, {"groups": b"X25519MLKEM768"},
    {"ciphers": b"ECDHE-ECDSA-CHACHA20-POLY1305", "max_version": SSL.TLS1_2_VERSION},
    {"ciphers": b"ECDHE-ECDSA-AES128-SHA", "max_version": SSL.TLS1_2_VERSION},
], ids=["x25519", "p256", "mlkem", "chacha", "cbc"])
def test_fips_mode_from_godebug(certs: CertSet, pairs: Callable[..., Pair], client: dict[str, Any]) -> None:
    """GODEBUG=fips140=on is how nats-server is put in FIPS 140-3 mode; pynatsd reads the same switch."""
    same(pairs(tls_block(certs), env={"GODEBUG": "fips140=on"}),
         lambda s: _negotiate(s, ca=certs.ca.cert_file, **client))


# ---- command-line TLS --------------------------------------------------------------------------------------


def test_command_line_tls(certs: CertSet, pairs: Callable[..., Pair]) -> None:
    flags = ("--tls", "--tlscert", certs.server.cert_file, "--tlskey", certs.server.key_file,
             "--tlscacert", certs.ca.cert_file, "--tlsverify")
    pair = pairs(None, flags)
    assert same(pair, _tls_fields) == {"tls_required": True, "tls_verify": True}
    same(pair, lambda s: seen(tls_exchange(s.port, certs.ca.cert_file)))
    assert same(pair, lambda s: seen(tls_exchange(s.port, certs.ca.cert_file, certs.alice, send=b"PING\r\n",
                                                  until=b"PONG\r\n")))[1] == b"PONG\r\n"
    # flags replace the file's tls block (certificate, CA and verify)
    conf = tls_block(certs, server=certs.expired_server, ca_file=certs.untrusted_ca.cert_file, verify=True)
    pair = pairs(conf, ("--tlscert", certs.server.cert_file, "--tlskey", certs.server.key_file))
    assert same(pair, _tls_fields) == {"tls_required": True}
    same(pair, lambda s: seen(tls_exchange(s.port, certs.ca.cert_file, send=b"PING\r\n", until=b"PONG\r\n")))


# ---- which configs are refused (-t) -------------------------------------------------------------------------


def _check(conf: str, tmp_path: Path) -> dict[str, bool]:
    path = tmp_path / "check.conf"
    path.write_text(conf)
    out = {}
    for impl, cmd in (("nats", [nats_server_binary()]), ("pynatsd", [sys.executable, "-m", "pynatsd"])):
        p = subprocess.run([*cmd, "-t", "-c", str(path)], capture_output=True, text=True, timeout=30)
        out[impl] = p.returncode == 0
        if impl == "pynatsd" and p.returncode != 0:
            assert len(p.stderr.strip().splitlines()) == 1, p.stderr  # one line
    return out


def _check_cases(certs: CertSet, tmp: Path) -> dict[str, tuple[str, bool]]:
    """name -> (config, valid?) where both servers agree."""
    return {
        "ok": (tls_block(certs), True),
        "missing cert": (tls_block(certs, cert_file=str(tmp / "nope.pem")), False),
        "missing key": (tls_block(certs, key_file=str(tmp / "nope-key.pem")), False),
        "missing CA": (tls_block(certs, ca_file=str(tmp / "nope-ca.pem"), verify=True), False),
        "garbage CA": (tls_block(certs, ca_file=certs.not_a_pem_file, verify=True), False),
        "wrong key": (tls_block(certs, key_file=certs.wrong_key_file), False),
        "encrypted key": (tls_block(certs, key_file=certs.encrypted_key_file), False),
        "unknown cipher": (tls_block(certs, cipher_suites=["TLS_FOO"]), False),
        "insecure cipher": (tls_block(certs, cipher_suites=["TLS_RSA_WITH_AES_128_GCM_SHA256"]), False),
        "insecure allowed": (tls_block(certs, cipher_suites=["TLS_RSA_WITH_AES_128_GCM_SHA256"],
                                       allow_insecure_cipher_suites=True), True),
        "unknown curve": (tls_block(certs, curve_preferences=["CurveP999"]), False),
        "empty ciphers": (tls_block(certs, cipher_suites=[]), False),
        "expired server cert": (tls_block(certs, server=certs.expired_server), True),
        "min 1.3": (tls_block(certs, min_version="1.3"), True),
        "min 2.0": (tls_block(certs, min_version="2.0"), False),
        "bad pin": (tls_block(certs, verify=True, pinned_certs=["abc"]), False),
        "hex pin": (tls_block(certs, verify=True, pinned_certs=[certs.alice.spki_sha256]), True),
        "timeout duration": (tls_block(certs, timeout="500ms"), True),
        "bad timeout": (tls_block(certs, timeout="soon"), False),
        "bad handshake_first": (tls_block(certs, handshake_first="maybe"), False),
        "insecure on the client port": (tls_block(certs, insecure=True), True),
        "unknown key": (tls_block(certs, verify_everything=True), False),
    }


def test_check_verdicts_match(certs: CertSet, tmp_path: Path) -> None:
    for what, (conf, valid) in _check_cases(certs, tmp_path).items():
        assert _check(conf, tmp_path) == {"nats": valid, "pynatsd": valid}, what


@pytest.mark.parametrize("conf_kw", [{"map_and_verify": True}, {"min_version": "1.0"}, {"min_version": "1.1"}],
                         ids=["map_and_verify", "min10", "min11"])
def test_deliberate_differences_in_check(certs: CertSet, tmp_path: Path, conf_kw: dict[str, Any]) -> None:
    """pynatsd accepts these (the issue asks for them); nats-server refuses them."""
    conf = tls_block(certs, ca_file=certs.ca.cert_file, **conf_kw)
    assert _check(conf, tmp_path) == {"nats": False, "pynatsd": True}
