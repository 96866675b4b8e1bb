"""How the server core drives TLS on the client port (the TLS layer itself is tested in
test_tls*.py): INFO-first TLS, TLS-first, allow_non_tls sniffing, the handshake timeout, the
auth timer starting after the handshake, and verify_and_map authentication."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
from cryptography import x509
from tests.helpers.certs import CertSet, make_cert_set
from tests.helpers.rawclient import AsyncRawClient
from tests.integration.test_core import HOST, running, wait_for

from pynatsd.config.options import AuthOptions, TLSOptions, User


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CertSet]:
    yield make_cert_set(Path(tmp_path_factory.mktemp("core-tls")))


def server_tls(certs: CertSet, **kw: Any) -> TLSOptions:
    return TLSOptions(cert_file=certs.server.cert_file, key_file=certs.server.key_file, ca_file=certs.ca.cert_file, **kw)


def client_ctx(certs: CertSet, who: Any = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=certs.ca.cert_file)
    if who is not None:
        ctx.load_cert_chain(who.cert_file, who.key_file)
    return ctx


async def roundtrip(nc: nats.NATS) -> bytes:
    sub = await nc.subscribe("t")
    await nc.publish("t", b"secret")
    msg = await sub.next_msg(timeout=3)
    return bytes(msg.data)


async def test_tls_required_info_first(certs: CertSet) -> None:
    async with running(tls=server_tls(certs)) as s:
        c = await AsyncRawClient.open(HOST, s.port)
        info = await c.read_info()
        assert info["tls_required"] is True and "tls_available" not in info
        await c.close()
        nc = await nats.connect(f"tls://localhost:{s.port}", tls=client_ctx(certs), allow_reconnect=False)
        assert await roundtrip(nc) == b"secret"
        client = next(iter(s.clients.values()))
        assert client.tls_info is not None and client.tls_info["version"] in ("1.2", "1.3")
        await nc.close()


async def test_tls_handshake_first(certs: CertSet) -> None:
    async with running(tls=server_tls(certs, handshake_first=True)) as s:
        nc = await nats.connect(
            f"tls://localhost:{s.port}", tls=client_ctx(certs), tls_handshake_first=True, allow_reconnect=False
        )
        assert await roundtrip(nc) == b"secret"
        assert next(iter(s.clients.values())).tls_first
        await nc.close()
        # a client that waits for INFO gets nothing in clear text
        c = await AsyncRawClient.open(HOST, s.port)
        with pytest.raises(TimeoutError):
            await c.read_line(timeout=0.3)
        await c.close()


async def test_tls_handshake_first_fallback(certs: CertSet) -> None:
    async with running(tls=server_tls(certs, handshake_first=0.2)) as s:
        # silent for the fallback delay: INFO comes in clear text, then TLS as usual
        c = await AsyncRawClient.open(HOST, s.port)
        info = await c.read_info(timeout=3)
        assert info["tls_required"] is True
        await c.close()
        nc = await nats.connect(
            f"tls://localhost:{s.port}", tls=client_ctx(certs), tls_handshake_first=True, allow_reconnect=False
        )
        assert await roundtrip(nc) == b"secret"
        await nc.close()


async def test_allow_non_tls(certs: CertSet) -> None:
    async with running(tls=server_tls(certs), allow_non_tls=True) as s:
        plain = await nats.connect(f"nats://{HOST}:{s.port}", allow_reconnect=False)
        assert await roundtrip(plain) == b"secret"
        # a client that starts TLS after INFO (the first byte is a TLS handshake record)
        reader, writer = await asyncio.open_connection(HOST, s.port)
        line = await reader.readline()
        assert b'"tls_available":true' in line and b"tls_required" not in line
        await writer.start_tls(client_ctx(certs), server_hostname="localhost")
        writer.write(b'CONNECT {"verbose":false}\r\nSUB x 1\r\nPUB x 2\r\nok\r\nPING\r\n')
        got = b""
        while not got.endswith(b"PONG\r\n"):
            chunk = await asyncio.wait_for(reader.read(1024), 3)
            assert chunk
            got += chunk
        assert got == b"MSG x 1 2\r\nok\r\nPONG\r\n"
        assert {c.tls_info is not None for c in s.clients.values()} == {True, False}
        writer.close()
        await plain.close()


async def test_plaintext_to_tls_port_is_dropped(certs: CertSet) -> None:
    async with running(tls=server_tls(certs, timeout=0.3)) as s:
        c = await AsyncRawClient.open(HOST, s.port)
        await c.read_info()
        await c.send(b"CONNECT {}\r\nPING\r\n")
        assert await c.expect_eof() == b""
        # a silent client is cut off after the TLS timeout
        c = await AsyncRawClient.open(HOST, s.port)
        await c.read_info()
        await c.expect_eof(timeout=3)
        await wait_for(lambda: len(s.closed_clients) == 2)
        assert [x.reason for x in s.closed_clients] == ["TLS Handshake Failure"] * 2


async def test_auth_timer_starts_after_handshake(certs: CertSet) -> None:
    auth = AuthOptions(user="u", password="p", timeout=0.4)
    async with running(tls=server_tls(certs, timeout=0.3), auth=auth) as s:
        loop = asyncio.get_running_loop()
        started = loop.time()
        reader, writer = await asyncio.open_connection(HOST, s.port)
        assert (await reader.readline()).startswith(b"INFO ")
        await writer.start_tls(client_ctx(certs), server_hostname="localhost")
        # connected over TLS but silent: Authentication Timeout, ~0.4s after the handshake
        data = await asyncio.wait_for(reader.read(1024), 3)
        assert data == b"-ERR 'Authentication Timeout'\r\n"
        assert loop.time() - started >= 0.4
        writer.close()


async def test_verify_and_map(certs: CertSet) -> None:
    tls = server_tls(certs, verify_and_map=True)
    auth = AuthOptions(users=(User("alice@example.com"), User("CN=bob,OU=Eng,O=Company")))
    async with running(tls=tls, auth=auth) as s:
        for who, name in ((certs.alice, "alice@example.com"), (certs.bob, "CN=bob,OU=Eng,O=Company")):
            nc = await nats.connect(f"tls://localhost:{s.port}", tls=client_ctx(certs, who), allow_reconnect=False)
            assert await roundtrip(nc) == b"secret"
            assert [c.user for c in s.clients.values()] == [name]
            await nc.close()
            await wait_for(lambda: not s.clients)
        extra = certs.issue_extra("carol", x509.Name.from_rfc4514_string("CN=carol"), emails=("carol@example.com",))
        with pytest.raises((nats.errors.Error, OSError)):
            await nats.connect(
                f"tls://localhost:{s.port}",
                tls=client_ctx(certs, extra),
                allow_reconnect=False,
                max_reconnect_attempts=0,
            )
        assert s.closed_clients[-1].reason == "Authentication Failure"


async def test_tls_connection_rate_limit(certs: CertSet) -> None:
    async with running(tls=server_tls(certs, connection_rate_limit=2)) as s:
        opened = [await AsyncRawClient.open(HOST, s.port) for _ in range(3)]
        for c in opened[:2]:
            await c.read_info()
        third = opened[2]
        await third.read_info()
        assert await third.expect_eof() == b"-ERR 'Connection throttling is active. Please try again later.'\r\n"
        assert s.closed_clients[-1].reason == "Maximum Connections Exceeded"
        for c in opened:
            await c.close()
