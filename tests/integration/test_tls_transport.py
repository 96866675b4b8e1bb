"""tls.transport on real loopback sockets: an asyncio echo server using start_tls, and clients
from the stdlib ssl module, pyOpenSSL (ML-KEM capable) and ``openssl s_client``."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from OpenSSL import SSL
from OpenSSL._util import lib as _lib
from tests.helpers.certs import CertSet, Issued, make_cert_set

from pynatsd.config.options import TLSOptions
from pynatsd.tls.context import ServerTLS, build_client_context, build_server_context
from pynatsd.tls.identity import tls_info
from pynatsd.tls.transport import TLSTransport, looks_like_tls, start_tls, start_tls_client

HOST = "127.0.0.1"
ERR_TLS_REQUIRED = b"-ERR 'Secure Connection - TLS Required'\r\n"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertSet:
    return make_cert_set(tmp_path_factory.mktemp("tls-transport-certs"))


_WORKERS: list[Any] = []  # one worker pool for the whole module (its thread is a daemon)


@pytest.fixture(autouse=True, params=["inline", "worker-thread"])
def handshake_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with handshake steps on the event loop and in a worker thread
    (PYNATSD_TLS_THREADS); the result must be the same."""
    from pynatsd.tls import transport

    if request.param == "worker-thread" and not _WORKERS:
        _WORKERS.append(transport._HandshakeWorkers(1))
    monkeypatch.setattr(transport, "_workers", _WORKERS[0] if request.param == "worker-thread" else None)
    monkeypatch.setattr(transport, "_workers_known", True)
    return str(request.param)


async def test_handshake_steps_run_where_configured(certs: CertSet, echo_factory: Callable[..., EchoServer],
                                                    handshake_mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from pynatsd.tls import transport

    threads: list[str] = []
    real_step, real_do = TLSTransport._step_in_worker, transport._SSL_do_handshake

    def in_worker(self: TLSTransport) -> None:
        threads.append(threading.current_thread().name)
        real_step(self)

    def do_handshake(ssl: Any) -> int:  # the cffi call both paths make
        threads.append(threading.current_thread().name)
        return int(real_do(ssl))

    monkeypatch.setattr(TLSTransport, "_step_in_worker", in_worker)
    monkeypatch.setattr(transport, "_SSL_do_handshake", do_handshake)
    async with echo_factory(server_tls(certs, verify=True, ca_file=certs.ca.cert_file)) as srv:
        assert await stdlib_roundtrip(srv.port, stdlib_client_ctx(certs, certs.alice)) == b"ping\r\n"
    assert len(threads) >= 2  # ClientHello, then the client's Finished
    main = threading.current_thread().name
    expected = "pynatsd-tls-0" if handshake_mode == "worker-thread" else main
    assert set(threads) == {expected}


def server_tls(certs: CertSet, *, server: Issued | None = None, **kw: Any) -> ServerTLS:
    srv = server or certs.server
    return build_server_context(TLSOptions(cert_file=srv.cert_file, key_file=srv.key_file, **kw),
                                fips=False, where="tls")


@dataclass
class Outcome:
    reason: str | None
    tls: TLSTransport | None


@dataclass
class EchoServer:
    """Echo over TLS; every handshake's outcome goes to ``outcomes``."""

    tls: ServerTLS
    timeout: float = 2.0
    sniff: bool = False  # read the first bytes before start_tls (handshake-first style)
    outcomes: asyncio.Queue[Outcome] = field(default_factory=asyncio.Queue)
    lost: asyncio.Queue[Exception | None] = field(default_factory=asyncio.Queue)
    port: int = 0
    server: asyncio.base_events.Server | None = None

    def protocol(self) -> asyncio.Protocol:
        outer = self

        class Echo(asyncio.Protocol):
            def connection_made(self, transport: Any) -> None:
                self.raw = transport  # uvloop's transports are not asyncio.Transport instances
                self.tls: TLSTransport | None = None
                if not outer.sniff:
                    start_tls(transport, outer.tls, self, timeout=outer.timeout, on_done=self.done)

            def done(self, tls: TLSTransport | None, reason: str | None) -> None:
                self.tls = tls
                if tls is None and reason == "handshake timeout":
                    self.raw.write(ERR_TLS_REQUIRED)  # nats-server's best-effort -ERR
                outer.outcomes.put_nowait(Outcome(reason, tls))

            def data_received(self, data: bytes) -> None:
                if self.tls is None:  # sniffing: the first bytes decide
                    assert looks_like_tls(data)
                    start_tls(self.raw, outer.tls, self, timeout=outer.timeout, on_done=self.done,
                              initial_data=data, tls_first=True)
                    return
                self.tls.write(data)

            def connection_lost(self, exc: Exception | None) -> None:
                outer.lost.put_nowait(exc)

        return Echo()

    async def __aenter__(self) -> EchoServer:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self.protocol, HOST, 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def outcome(self) -> Outcome:
        return await asyncio.wait_for(self.outcomes.get(), 10)


@pytest.fixture
async def echo_factory() -> AsyncIterator[Callable[..., EchoServer]]:
    servers: list[EchoServer] = []

    def make(tls: ServerTLS, **kw: Any) -> EchoServer:
        s = EchoServer(tls, **kw)
        servers.append(s)
        return s

    yield make
    for s in servers:
        if s.server is not None:
            s.server.close()


def stdlib_client_ctx(certs: CertSet, client: Issued | None = None, **kw: Any) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=certs.ca.cert_file)
    if client is not None:
        ctx.load_cert_chain(client.cert_file, client.key_file)
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


async def stdlib_roundtrip(port: int, ctx: ssl.SSLContext, payload: bytes = b"ping\r\n") -> bytes:
    r, w = await asyncio.open_connection(HOST, port, ssl=ctx, server_hostname="localhost")
    try:
        w.write(payload)
        await w.drain()
        return await asyncio.wait_for(r.readexactly(len(payload)), 10)
    finally:
        w.close()


def pyopenssl_client(port: int, *, groups: bytes | None = None, max_version: int | None = None,
                     ciphers: bytes | None = None, tls13: bytes | None = None,
                     client: Issued | None = None, ca: str | None = None) -> tuple[SSL.Connection, socket.socket]:
    """A blocking pyOpenSSL client (run it in a thread); returns the connection after the handshake."""
    ctx = SSL.Context(SSL.TLS_METHOD)
    if groups is not None:
        assert _lib.SSL_CTX_set1_curves_list(ctx._context, groups) == 1
    if max_version is not None:
        ctx.set_max_proto_version(max_version)
    if ciphers is not None:
        ctx.set_cipher_list(ciphers)
    if tls13 is not None:
        ctx.set_tls13_ciphersuites(tls13)
    if ca is not None:
        ctx.load_verify_locations(ca)
        ctx.set_verify(SSL.VERIFY_PEER)
    if client is not None:
        ctx.use_certificate_chain_file(client.cert_file)
        ctx.use_privatekey_file(client.key_file)
    sock = socket.create_connection((HOST, port), timeout=10)
    sock.settimeout(None)  # OpenSSL drives a blocking socket; pytest-timeout bounds the test
    conn = SSL.Connection(ctx, sock)
    conn.set_tlsext_host_name(b"localhost")
    conn.set_connect_state()
    try:
        conn.do_handshake()
    except Exception:
        sock.close()
        raise
    return conn, sock


def _close(conn: SSL.Connection, sock: socket.socket) -> None:
    try:
        conn.shutdown()
    except SSL.Error:
        pass
    sock.close()


# ---- basic echo and negotiated parameters --------------------------------------------------


async def test_stdlib_client_echo_and_connection_info(certs: CertSet, echo_factory: Callable[..., EchoServer]) -> None:
    async with echo_factory(server_tls(certs)) as srv:
        r, w = await asyncio.open_connection(HOST, srv.port, ssl=stdlib_client_ctx(certs), server_hostname="localhost")
        out = await srv.outcome()
        assert out.reason is None and out.tls is not None
        w.write(b"hello\r\n")
        assert await asyncio.wait_for(r.readexactly(7), 10) == b"hello\r\n"
        info = tls_info(out.tls)
        # the stdlib client (OpenSSL 3.0) cannot offer ML-KEM: X25519 is the best common group
        assert info["version"] == "1.3"
        assert info["cipher_suite"] == w.get_extra_info("cipher")[0]
        assert info["group"] == "X25519"
        assert info["peer_certs"] == []
        assert out.tls.get_extra_info("peername")[0] == HOST
        assert out.tls.get_extra_info("tls_version") == "1.3"
        assert out.tls.get_extra_info("peercert") is None
        w.close()
        assert await asyncio.wait_for(srv.lost.get(), 10) is None


async def test_pyopenssl_client_negotiates_x25519mlkem768(certs: CertSet,
                                                         echo_factory: Callable[..., EchoServer]) -> None:
    async with echo_factory(server_tls(certs)) as srv:
        conn, sock = await asyncio.to_thread(pyopenssl_client, srv.port, groups=b"X25519MLKEM768:X25519",
                                             ca=certs.ca.cert_file)
        out = await srv.outcome()
        assert conn.get_group_name() == "X25519MLKEM768"
        assert tls_info(out.tls)["group"] == "X25519MLKEM768"
        await asyncio.to_thread(conn.sendall, b"pq\r\n")
        assert await asyncio.to_thread(conn.recv, 100) == b"pq\r\n"
        _close(conn, sock)


async def test_hybrid_preferred_even_without_a_key_share(certs: CertSet,
                                                         echo_factory: Callable[..., EchoServer]) -> None:
    """As Go: a client whose first key share is classical still ends up on the hybrid."""
    async with echo_factory(server_tls(certs)) as srv:
        conn, sock = await asyncio.to_thread(pyopenssl_client, srv.port, groups=b"P-256:X25519MLKEM768")
        await srv.outcome()
        assert conn.get_group_name() == "X25519MLKEM768"
        _close(conn, sock)
        # within the classical tier, the group the client sent a key share for wins
        conn, sock = await asyncio.to_thread(pyopenssl_client, srv.port, groups=b"P-384:X25519")
        await srv.outcome()
        assert conn.get_group_name() == "secp384r1"
        _close(conn, sock)


async def test_large_bidirectional_data_integrity(certs: CertSet, echo_factory: Callable[..., EchoServer]) -> None:
    payload = os.urandom(3 * 1024 * 1024 + 17)
    async with echo_factory(server_tls(certs)) as srv:
        r, w = await asyncio.open_connection(HOST, srv.port, ssl=stdlib_client_ctx(certs), server_hostname="localhost")
        await srv.outcome()

        async def send() -> None:
            for i in range(0, len(payload), 100_000):
                w.write(payload[i:i + 100_000])
                await w.drain()

        sender = asyncio.ensure_future(send())
        got = await asyncio.wait_for(r.readexactly(len(payload)), 30)
        await sender
        assert got == payload
        w.close()


async def test_writelines_and_server_close_sends_close_notify(certs: CertSet,
                                                              echo_factory: Callable[..., EchoServer]) -> None:
    async with echo_factory(server_tls(certs)) as srv:
        r, w = await asyncio.open_connection(HOST, srv.port, ssl=stdlib_client_ctx(certs), server_hostname="localhost")
        out = await srv.outcome()
        assert out.tls is not None
        out.tls.writelines([b"a", b"bc", b"\r\n"])
        assert await asyncio.wait_for(r.readexactly(4), 10) == b"abc\r\n"[:4]
        out.tls.close()
        assert out.tls.is_closing()
        rest = await asyncio.wait_for(r.read(), 10)  # EOF after close_notify, no error
        assert rest == b"\n"
        w.close()


# ---- client certificates -------------------------------------------------------------------


async def test_mtls_accepts_a_trusted_client(certs: CertSet, echo_factory: Callable[..., EchoServer]) -> None:
    tls = server_tls(certs, verify=True, ca_file=certs.ca.cert_file)
    async with echo_factory(tls) as srv:
        assert await stdlib_roundtrip(srv.port, stdlib_client_ctx(certs, certs.alice)) == b"ping\r\n"
        out = await srv.outcome()
        assert out.reason is None and out.tls is not None
        assert out.tls.get_extra_info("peercert") == certs.alice.cert
        peer = tls_info(out.tls)["peer_certs"]
        assert peer[0] == {"subject": "CN=alice,O=Company,C=US", "spki_sha256": certs.alice.spki_sha256,
                           "cert_sha256": certs.alice.cert_sha256}
        # OpenSSL clients send the issuer along when they have it (as Go's PeerCertificates shows)
        assert [p["subject"] for p in peer[1:]] in ([], ["CN=Test CA,O=pynatsd tests"])


@pytest.mark.parametrize(("who", "reason"), [
    (None, "no client certificate"),
    ("untrusted_client", "unknown CA"),
    ("expired_client", "certificate expired"),
])
async def test_mtls_rejections(certs: CertSet, echo_factory: Callable[..., EchoServer], who: str | None,
                               reason: str) -> None:
    tls = server_tls(certs, verify=True, ca_file=certs.ca.cert_file)
    client = getattr(certs, who) if who else None
    async with echo_factory(tls) as srv:
        # TLS 1.3 clients finish before the server has judged their certificate: the failure
        # shows on the first read, as an alert or a closed connection.
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
            await stdlib_roundtrip(srv.port, stdlib_client_ctx(certs, client))
        out = await srv.outcome()
        assert out.tls is None and out.reason == reason
        # TLS 1.2: the handshake itself fails
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await stdlib_roundtrip(srv.port, stdlib_client_ctx(certs, client, maximum_version=ssl.TLSVersion.TLSv1_2))
        out = await srv.outcome()
        assert out.tls is None and out.reason == reason


async def test_pinned_certificates(certs: CertSet, echo_factory: Callable[..., EchoServer]) -> None:
    tls = server_tls(certs, verify=True, ca_file=certs.ca.cert_file,
                     pinned_certs=frozenset({certs.alice.spki_sha256}))
    async with echo_factory(tls) as srv:
        assert await stdlib_roundtrip(srv.port, stdlib_client_ctx(certs, certs.alice)) == b"ping\r\n"
        assert (await srv.outcome()).reason is None
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
            await stdlib_roundtrip(srv.port, stdlib_client_ctx(certs, certs.bob))
        out = await srv.outcome()
        assert out.tls is None and out.reason == "certificate not pinned"


async def test_peer_check_accepts_rejects_and_holds_data(certs: CertSet,
                                                         echo_factory: Callable[..., EchoServer]) -> None:
    """ServerTLS.peer_check runs after the handshake: data sent meanwhile waits, then is echoed;
    a returned reason fails the connection with that reason."""
    import dataclasses

    gate = asyncio.Event()
    seen: list[bytes] = []
    verdict: list[str | None] = [None]

    async def check(tls: TLSTransport) -> str | None:
        seen.append(tls.get_extra_info("peercert").subject.rfc4514_string().encode())
        await gate.wait()
        return verdict[0]

    tls = dataclasses.replace(server_tls(certs, verify=True, ca_file=certs.ca.cert_file), peer_check=check)
    async with echo_factory(tls) as srv:
        r, w = await asyncio.open_connection(HOST, srv.port, ssl=stdlib_client_ctx(certs, certs.alice),
                                             server_hostname="localhost")
        w.write(b"early\r\n")  # sent while the check is pending
        await w.drain()
        for _ in range(1000):  # the check starts once the handshake completed (poll, 10 s cap)
            if seen:
                break
            await asyncio.sleep(0.01)
        assert seen and srv.outcomes.empty()  # not handed over yet
        gate.set()
        assert await asyncio.wait_for(r.readexactly(7), 10) == b"early\r\n"
        assert (await srv.outcome()).reason is None
        w.close()

        verdict[0] = "client not OCSP valid"
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
            await stdlib_roundtrip(srv.port, stdlib_client_ctx(certs, certs.bob))
        out = await srv.outcome()
        assert out.tls is None and out.reason == "client not OCSP valid"
        assert len(seen) == 2 and b"CN=bob" in seen[1]


async def test_peer_check_bounded_by_the_handshake_timeout(certs: CertSet,
                                                           echo_factory: Callable[..., EchoServer]) -> None:
    import dataclasses

    async def never(tls: TLSTransport) -> str | None:
        await asyncio.Event().wait()
        return None

    tls = dataclasses.replace(server_tls(certs, verify=True, ca_file=certs.ca.cert_file), peer_check=never)
    async with echo_factory(tls, timeout=0.3) as srv:
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
            await stdlib_roundtrip(srv.port, stdlib_client_ctx(certs, certs.alice))
        out = await srv.outcome()
        assert out.tls is None and out.reason == "handshake timeout"


# ---- failures before TLS -------------------------------------------------------------------


async def test_handshake_timeout_closes_after_a_last_plain_line(certs: CertSet,
                                                                echo_factory: Callable[..., EchoServer]) -> None:
    async with echo_factory(server_tls(certs), timeout=0.2) as srv:
        r, w = await asyncio.open_connection(HOST, srv.port)
        out = await srv.outcome()
        assert out.tls is None and out.reason == "handshake timeout"
        assert await asyncio.wait_for(r.read(), 10) == ERR_TLS_REQUIRED  # then EOF
        w.close()
        # a client that starts but never finishes is timed out as well
        r, w = await asyncio.open_connection(HOST, srv.port)
        w.write(b"\x16\x03\x01\x00\x05")  # a record header, then nothing
        out = await srv.outcome()
        assert out.reason == "handshake timeout"
        w.close()


async def test_plain_text_on_a_tls_port(certs: CertSet, echo_factory: Callable[..., EchoServer]) -> None:
    async with echo_factory(server_tls(certs)) as srv:
        r, w = await asyncio.open_connection(HOST, srv.port)
        w.write(b'CONNECT {"verbose":false}\r\nPING\r\n')
        out = await srv.outcome()
        assert out.tls is None and out.reason == "plain text on a TLS port"
        assert await asyncio.wait_for(r.read(), 10) == b""  # closed, nothing said
        w.close()


async def test_peer_closing_during_handshake(certs: CertSet, echo_factory: Callable[..., EchoServer]) -> None:
    async with echo_factory(server_tls(certs)) as srv:
        r, w = await asyncio.open_connection(HOST, srv.port)
        w.close()
        out = await srv.outcome()
        assert out.tls is None and out.reason == "connection closed during handshake"


async def test_sniffed_first_bytes_are_replayed(certs: CertSet, echo_factory: Callable[..., EchoServer]) -> None:
    async with echo_factory(server_tls(certs), sniff=True) as srv:
        assert await stdlib_roundtrip(srv.port, stdlib_client_ctx(certs)) == b"ping\r\n"
        out = await srv.outcome()
        assert out.reason is None and out.tls is not None and out.tls.get_extra_info("tls_first") is True


# ---- algorithm restrictions are enforced ---------------------------------------------------


async def test_tls12_cipher_restriction_and_server_preference(certs: CertSet,
                                                               echo_factory: Callable[..., EchoServer]) -> None:
    tls = server_tls(certs, cipher_suites=("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
                                           "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"))
    async with echo_factory(tls) as srv:
        # client prefers AES-128: the server's order wins
        conn, sock = await asyncio.to_thread(
            pyopenssl_client, srv.port, max_version=SSL.TLS1_2_VERSION,
            ciphers=b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384")
        out = await srv.outcome()
        assert conn.get_cipher_name() == "ECDHE-ECDSA-AES256-GCM-SHA384"
        assert tls_info(out.tls)["cipher_suite"] == "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"
        assert tls_info(out.tls)["version"] == "1.2"
        _close(conn, sock)
        # a suite not in the list is refused
        with pytest.raises(SSL.Error):
            await asyncio.to_thread(pyopenssl_client, srv.port, max_version=SSL.TLS1_2_VERSION,
                                    ciphers=b"ECDHE-ECDSA-CHACHA20-POLY1305")
        assert (await srv.outcome()).reason == "no cipher suite in common"


async def test_tls13_suite_restriction(certs: CertSet, echo_factory: Callable[..., EchoServer]) -> None:
    tls = server_tls(certs, cipher_suites=("TLS_CHACHA20_POLY1305_SHA256",))
    async with echo_factory(tls) as srv:
        conn, sock = await asyncio.to_thread(pyopenssl_client, srv.port)
        await srv.outcome()
        assert conn.get_cipher_name() == "TLS_CHACHA20_POLY1305_SHA256"
        _close(conn, sock)
        with pytest.raises(SSL.Error):
            await asyncio.to_thread(pyopenssl_client, srv.port, tls13=b"TLS_AES_128_GCM_SHA256")
        assert (await srv.outcome()).reason == "no cipher suite in common"
        with pytest.raises(SSL.Error):  # no TLS 1.2 suite configured: TLS 1.2 is off
            await asyncio.to_thread(pyopenssl_client, srv.port, max_version=SSL.TLS1_2_VERSION)
        assert (await srv.outcome()).reason == "TLS version not allowed"


async def test_rsa_certificate_suites(certs: CertSet, echo_factory: Callable[..., EchoServer]) -> None:
    tls = server_tls(certs, server=certs.server_rsa, cipher_suites=("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",))
    async with echo_factory(tls) as srv:
        conn, sock = await asyncio.to_thread(pyopenssl_client, srv.port, max_version=SSL.TLS1_2_VERSION)
        out = await srv.outcome()
        assert tls_info(out.tls)["cipher_suite"] == "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"
        _close(conn, sock)


@pytest.mark.parametrize(("min_version", "client_max", "ok"), [
    ("1.3", ssl.TLSVersion.TLSv1_2, False),
    ("1.3", ssl.TLSVersion.TLSv1_3, True),
    (None, ssl.TLSVersion.TLSv1_2, True),
])
async def test_min_version_enforced(certs: CertSet, echo_factory: Callable[..., EchoServer], min_version: str | None,
                                    client_max: ssl.TLSVersion, ok: bool) -> None:
    async with echo_factory(server_tls(certs, min_version=min_version)) as srv:
        ctx = stdlib_client_ctx(certs, maximum_version=client_max)
        if ok:
            assert await stdlib_roundtrip(srv.port, ctx) == b"ping\r\n"
            assert (await srv.outcome()).reason is None
        else:
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await stdlib_roundtrip(srv.port, ctx)
            assert (await srv.outcome()).reason == "TLS version not allowed"


async def test_default_refuses_tls11(certs: CertSet, echo_factory: Callable[..., EchoServer]) -> None:
    async with echo_factory(server_tls(certs)) as srv:
        with pytest.raises(SSL.Error):
            await asyncio.to_thread(pyopenssl_client, srv.port, max_version=SSL.TLS1_1_VERSION,
                                    ciphers=b"DEFAULT:@SECLEVEL=0")
        assert (await srv.outcome()).reason == "TLS version not allowed"


async def test_curve_restriction(certs: CertSet, echo_factory: Callable[..., EchoServer]) -> None:
    async with echo_factory(server_tls(certs, curve_preferences=("CurveP384",))) as srv:
        with pytest.raises(SSL.Error):
            await asyncio.to_thread(pyopenssl_client, srv.port, groups=b"X25519:X25519MLKEM768")
        assert (await srv.outcome()).reason in ("no key exchange group in common", "handshake failure")
        conn, sock = await asyncio.to_thread(pyopenssl_client, srv.port, groups=b"X25519:P-384")
        out = await srv.outcome()
        assert tls_info(out.tls)["group"] == "CurveP384"
        _close(conn, sock)


async def test_fips_policy_refuses_x25519(certs: CertSet, echo_factory: Callable[..., EchoServer]) -> None:
    tls = build_server_context(TLSOptions(cert_file=certs.server.cert_file, key_file=certs.server.key_file),
                               fips=True, where="tls")
    async with echo_factory(tls) as srv:
        with pytest.raises(SSL.Error):
            await asyncio.to_thread(pyopenssl_client, srv.port, groups=b"X25519")
        await srv.outcome()
        conn, sock = await asyncio.to_thread(pyopenssl_client, srv.port)
        out = await srv.outcome()
        info = tls_info(out.tls)
        assert info["group"] == "X25519MLKEM768" and info["cipher_suite"] == "TLS_AES_128_GCM_SHA256"
        _close(conn, sock)


async def test_openssl_s_client(certs: CertSet, echo_factory: Callable[..., EchoServer]) -> None:
    tls = server_tls(certs, verify=True, ca_file=certs.ca.cert_file)
    async with echo_factory(tls) as srv:
        openssl = shutil.which("openssl")
        assert openssl is not None, "the openssl command line tool is part of the test environment"
        proc = await asyncio.create_subprocess_exec(
            openssl, "s_client", "-connect", f"{HOST}:{srv.port}", "-servername", "localhost",
            "-CAfile", certs.ca.cert_file, "-cert", certs.bob.cert_file, "-key", certs.bob.key_file,
            "-groups", "P-256", "-tls1_2", "-verify_return_error", "-ign_eof",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        assert proc.stdin is not None and proc.stdout is not None
        try:
            out = await srv.outcome()
            assert out.reason is None and out.tls is not None
            proc.stdin.write(b"hello-from-s_client\n")
            await proc.stdin.drain()
            lines: list[str] = []
            while not lines or lines[-1] != "hello-from-s_client":  # the echo
                line = await asyncio.wait_for(proc.stdout.readline(), 20)
                assert line, "s_client ended early:\n" + "\n".join(lines)
                lines.append(line.decode(errors="replace").rstrip("\r\n"))
            out.tls.close()  # s_client exits when the server closes
            rest, _ = await asyncio.wait_for(proc.communicate(), 20)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        text = "\n".join(lines)
        assert "Verify return code: 0 (ok)" in text
        assert "Server Temp Key: ECDH, prime256v1" in text
        assert tls_info(out.tls)["group"] == "CurveP256"
        assert tls_info(out.tls)["peer_certs"][0]["subject"] == "CN=bob,OU=Eng,O=Company"


# ---- the client side (routes) --------------------------------------------------------------


async def _dial(port: int, client_tls: Any, hostname: str) -> tuple[TLSTransport | None, str | None]:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[tuple[TLSTransport | None, str | None]] = loop.create_future()
    received: asyncio.Queue[bytes] = asyncio.Queue()

    class App(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            received.put_nowait(data)

    app = App()
    raw, _ = await loop.create_connection(asyncio.Protocol, HOST, port)
    start_tls_client(raw, client_tls, app, server_hostname=hostname, timeout=5,
                     on_done=lambda t, r: done.set_result((t, r)))
    tls, reason = await asyncio.wait_for(done, 10)
    if tls is not None:
        tls.write(b"route\r\n")
        assert await asyncio.wait_for(received.get(), 10) == b"route\r\n"
    return tls, reason


async def test_start_tls_client_verifies_chain_and_host(certs: CertSet,
                                                        echo_factory: Callable[..., EchoServer]) -> None:
    client = build_client_context(TLSOptions(cert_file=certs.alice.cert_file, key_file=certs.alice.key_file,
                                             ca_file=certs.ca.cert_file), fips=False, where="cluster.tls")
    tls = server_tls(certs, verify=True, ca_file=certs.ca.cert_file)
    async with echo_factory(tls) as srv:
        t, reason = await _dial(srv.port, client, "localhost")
        assert reason is None and t is not None
        assert (await srv.outcome()).tls.get_extra_info("peercert") == certs.alice.cert  # type: ignore[union-attr]
        assert t.get_extra_info("peercert") == certs.server.cert
        t.close()
        t, reason = await _dial(srv.port, client, "127.0.0.1")  # IP SAN
        assert reason is None and t is not None
        t.close()
        await srv.outcome()
        t, reason = await _dial(srv.port, client, "other.example.com")
        assert t is None and reason == "certificate is not valid for the host name"
        untrusting = build_client_context(TLSOptions(ca_file=certs.untrusted_ca.cert_file), fips=False, where="x")
        t, reason = await _dial(srv.port, untrusting, "localhost")
        assert t is None and reason == "unknown CA"
        pinned = build_client_context(TLSOptions(cert_file=certs.alice.cert_file, key_file=certs.alice.key_file,
                                                 ca_file=certs.ca.cert_file,
                                                 pinned_certs=frozenset({certs.bob.spki_sha256})),
                                      fips=False, where="x")
        t, reason = await _dial(srv.port, pinned, "localhost")
        assert t is None and reason == "certificate not pinned"


def test_echo_under_uvloop(certs: CertSet) -> None:
    import uvloop  # a runtime dependency: the server runs on it

    async def main() -> None:
        srv = EchoServer(server_tls(certs, verify=True, ca_file=certs.ca.cert_file))
        async with srv:
            payload = os.urandom(1_000_000)
            assert await stdlib_roundtrip(srv.port, stdlib_client_ctx(certs, certs.alice), payload) == payload
            assert (await srv.outcome()).reason is None
            with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
                await stdlib_roundtrip(srv.port, stdlib_client_ctx(certs))
            assert (await srv.outcome()).reason == "no client certificate"

    uvloop.run(main())
