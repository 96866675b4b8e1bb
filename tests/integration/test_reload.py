"""Reload on an in-process server (``Server.reload``): certificate rotation for new TLS clients
while existing ones keep working, broken certificates refused with the old one kept, refused
options, pinned certificates re-checked against the new set, re-mapped verify_and_map users,
and the HTTPS monitoring port following a reload.

The certificate files the server reads live in a per-test directory and are replaced the way
deployments replace them (a new file renamed over the old one); each check awaits what a
client sees (the certificate a new handshake presents, a message, EOF) with a deadline.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import socket
import ssl
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from cryptography import x509
from tests.helpers.certs import CertSet, Issued, make_cert_set
from tests.helpers.rawclient import AsyncRawClient
from tests.integration.test_core import HOST, running

from pynatsd.config.options import AuthOptions, Permissions, SubjectPermission, TLSOptions, User
from pynatsd.errors import ConfigError
from pynatsd.tls.certs import issue, name, new_key, write_cert, write_key

# -- certificates ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CertSet]:
    yield make_cert_set(Path(tmp_path_factory.mktemp("reload-certs")))


def server_cert(certs: CertSet, directory: Path, stem: str, *, days: int = 90) -> Issued:
    """Another server certificate for localhost/127.0.0.1 from the test CA (``days`` makes its
    NotAfter distinguishable)."""
    key = new_key()
    cert = issue(
        name("localhost", O="pynatsd reload tests"),
        key,
        issuer=(certs.ca.cert, certs.ca.key),
        dns=("localhost",),
        ips=("127.0.0.1",),
        server=True,
        client=True,
        days=days,
    )
    cert_file, key_file = directory / f"{stem}-cert.pem", directory / f"{stem}-key.pem"
    write_cert(cert_file, cert)
    write_key(key_file, key)
    return Issued(cert, key, str(cert_file), str(key_file))


class Live:
    """The certificate/key paths a server is configured with, replaced atomically."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.dir = directory
        self.cert = directory / "tls.crt"
        self.key = directory / "tls.key"

    def put(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)  # as cert-manager and most tools: write aside, rename over

    def install(self, issued: Issued) -> None:
        self.put(self.key, Path(issued.key_file).read_bytes())
        self.put(self.cert, Path(issued.cert_file).read_bytes())

    def tls(self, certs: CertSet, **kw: Any) -> TLSOptions:
        return TLSOptions(cert_file=str(self.cert), key_file=str(self.key), ca_file=certs.ca.cert_file, **kw)


# -- clients -----------------------------------------------------------------------------------------


def client_ctx(certs: CertSet, who: Issued | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=certs.ca.cert_file)
    if who is not None:
        ctx.load_cert_chain(who.cert_file, who.key_file)
    return ctx


def presented_cert(port: int, certs: CertSet, *, info_first: bool = True) -> x509.Certificate:
    """The certificate a NEW TLS handshake on ``port`` presents (blocking; run in a thread).
    ``info_first``: the NATS client port sends INFO in clear text before TLS."""
    with socket.create_connection((HOST, port), timeout=5) as s:
        if info_first:
            line = b""
            while not line.endswith(b"\r\n"):
                chunk = s.recv(1)
                assert chunk, "closed before INFO"
                line += chunk
            assert line.startswith(b"INFO ")
        with client_ctx(certs, certs.alice).wrap_socket(s, server_hostname="localhost") as t:
            der = t.getpeercert(binary_form=True)
            assert der is not None
            return x509.load_der_x509_certificate(der)


async def serial_of(port: int, certs: CertSet, *, info_first: bool = True) -> int:
    cert = await asyncio.to_thread(presented_cert, port, certs, info_first=info_first)
    return cert.serial_number


async def await_serial(port: int, certs: CertSet, serial: int, *, info_first: bool = True, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while (got := await serial_of(port, certs, info_first=info_first)) != serial:
        assert asyncio.get_running_loop().time() < deadline, f"still serving serial {got}, want {serial}"
        await asyncio.sleep(0.05)


async def tls_raw(port: int, certs: CertSet, who: Issued | None, connect: bytes = b'CONNECT {"verbose":false}\r\n') -> AsyncRawClient:
    """A raw protocol client over TLS (INFO in clear, then the handshake), CONNECT sent and
    answered."""
    reader, writer = await asyncio.open_connection(HOST, port)
    c = AsyncRawClient(reader, writer, 5.0)
    await c.read_info()
    await writer.start_tls(client_ctx(certs, who), server_hostname="localhost")
    await c.send(connect)
    assert (await c.ping()).endswith(b"PONG\r\n")
    return c


async def nats_tls(port: int, certs: CertSet, who: Issued | None = None, **kw: Any) -> nats.NATS:
    kw.setdefault("allow_reconnect", False)
    return await nats.connect(f"tls://localhost:{port}", tls=client_ctx(certs, who), **kw)


# -- rotation ----------------------------------------------------------------------------------------


async def test_rotation_new_clients_get_new_cert_existing_keep_receiving(certs: CertSet, tmp_path: Path) -> None:
    old, new = server_cert(certs, tmp_path, "old"), server_cert(certs, tmp_path, "new")
    live = Live(tmp_path / "live")
    live.install(old)
    async with running(tls=live.tls(certs)) as s:
        assert await serial_of(s.port, certs) == old.cert.serial_number
        existing = await nats_tls(s.port, certs)
        sub = await existing.subscribe("rot")
        await existing.flush()
        live.install(new)
        s.reload(dataclasses.replace(s.opts))  # same options: the files are read again
        assert await serial_of(s.port, certs) == new.cert.serial_number
        assert s.tls.not_after == new.cert.not_valid_after_utc
        publisher = await nats_tls(s.port, certs)
        await publisher.publish("rot", b"after rotation")
        await publisher.flush()
        msg = await sub.next_msg(timeout=3)
        assert msg.data == b"after rotation"
        assert existing.is_connected
        await publisher.close()
        await existing.close()


async def test_cert_paths_changed_in_config(certs: CertSet, tmp_path: Path) -> None:
    old, new = server_cert(certs, tmp_path, "old"), server_cert(certs, tmp_path, "new")
    tls = TLSOptions(cert_file=old.cert_file, key_file=old.key_file, ca_file=certs.ca.cert_file, watch=True)
    async with running(tls=tls, tls_watch_interval=0.05) as s:
        assert await serial_of(s.port, certs) == old.cert.serial_number
        s.reload(dataclasses.replace(s.opts, tls=dataclasses.replace(tls, cert_file=new.cert_file, key_file=new.key_file)))
        assert await serial_of(s.port, certs) == new.cert.serial_number
        # the watch follows the new paths: the old files no longer matter
        watched = {f for b in s.tls_watch.blocks.values() for f in b.files}
        assert watched == {new.cert_file, new.key_file, certs.ca.cert_file}


BROKEN = ("missing", "key-mismatch", "garbage-cert", "garbage-key", "missing-ca")


@pytest.mark.parametrize("how", BROKEN)
async def test_broken_cert_on_reload_keeps_old(certs: CertSet, tmp_path: Path, how: str) -> None:
    old = server_cert(certs, tmp_path, "old")
    live = Live(tmp_path / "live")
    live.install(old)
    async with running(tls=live.tls(certs), max_payload=1000) as s:
        existing = await nats_tls(s.port, certs)
        sub = await existing.subscribe("keep")
        await existing.flush()
        before = s.tls
        tls = live.tls(certs)
        if how == "missing":
            tls = dataclasses.replace(tls, cert_file=str(tmp_path / "nope.pem"))
        elif how == "key-mismatch":
            live.put(live.key, Path(certs.wrong_key_file).read_bytes())
        elif how == "garbage-cert":
            live.put(live.cert, b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
        elif how == "garbage-key":
            live.put(live.key, Path(certs.not_a_pem_file).read_bytes())
        elif how == "missing-ca":
            tls = dataclasses.replace(tls, ca_file=str(tmp_path / "no-ca.pem"))
        new_opts = dataclasses.replace(s.opts, tls=tls, max_payload=2000)
        with pytest.raises(ConfigError) as err:
            s.reload(new_opts)
        text = str(err.value)
        assert "\n" not in text and text.startswith("tls: "), text
        # nothing applied: same context, same limit, the old certificate still served
        assert s.tls is before and s.opts.max_payload == 1000
        assert await serial_of(s.port, certs) == old.cert.serial_number
        publisher = await nats_tls(s.port, certs)
        await publisher.publish("keep", b"still here")
        await publisher.flush()
        assert (await sub.next_msg(timeout=3)).data == b"still here"
        await publisher.close()
        await existing.close()


# -- refused options -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"max_subscriptions": 10}, "config reload not supported for MaxSubs: old=0, new=10"),
        ({"port": 4333}, "config reload not supported for Port: old=-1, new=4333"),
        ({"max_pending": 1024}, "config reload not supported for MaxPending: old=67108864, new=1024"),
        ({"lame_duck_duration": 30.0}, "config reload not supported for LameDuckDuration: old=2m0s, new=30s"),
        ({"allow_non_tls": True}, "config reload not supported for AllowNonTLS: old=false, new=true"),
        ({"server_name": "other"}, "config reload not supported for ServerName: old=srv, new=other"),
    ],
)
async def test_not_reloadable_refused_by_name(change: dict[str, Any], message: str) -> None:
    async with running(server_name="srv", max_payload=1000) as s:
        with pytest.raises(ConfigError) as err:
            s.reload(dataclasses.replace(s.opts, max_payload=2000, **change))
        assert str(err.value) == message
        assert s.opts.max_payload == 1000  # the reloadable part was not applied either
        c = await AsyncRawClient.open(HOST, s.port)
        assert (await c.read_info())["max_payload"] == 1000
        await c.close()


async def test_tls_block_fields_refused_by_name(certs: CertSet, tmp_path: Path) -> None:
    live = Live(tmp_path / "live")
    live.install(server_cert(certs, tmp_path, "a"))
    async with running(tls=live.tls(certs, verify=True)) as s:
        with pytest.raises(ConfigError, match=r"^config reload not supported for TLSMap: old=false, new=true$"):
            s.reload(dataclasses.replace(s.opts, tls=live.tls(certs, verify_and_map=True)))
        with pytest.raises(ConfigError, match=r"^config reload not supported for TLSRateLimit: old=0, new=5$"):
            s.reload(dataclasses.replace(s.opts, tls=live.tls(certs, verify=True, connection_rate_limit=5)))


async def test_random_port_in_new_options_keeps_the_bound_one() -> None:
    async with running(max_payload=1000) as s:
        s.reload(dataclasses.replace(s.opts, port=-1, max_payload=3000))
        c = await AsyncRawClient.open(HOST, s.port)
        assert (await c.read_info())["max_payload"] == 3000
        await c.close()


async def test_reload_notices_in_nats_server_order(certs: CertSet, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    live = Live(tmp_path / "live")
    live.install(server_cert(certs, tmp_path, "a"))
    async with running(tls=live.tls(certs, verify=True)) as s:
        caplog.set_level(logging.INFO, logger="pynatsd")
        tls = live.tls(certs, verify=True, timeout=3.0, pinned_certs=frozenset({certs.alice.spki_sha256}))
        s.reload(dataclasses.replace(s.opts, tls=tls, max_payload=2048, debug=True, config_digest="sha256:x"))
        lines = [r.getMessage() for r in caplog.records if r.name == "pynatsd" and "Reload" in r.getMessage()]
        # as nats-server 2.15 logs the same change (its Options field order)
        assert lines == [
            "Reloaded: debug = true",
            "Reloaded: authorization users",  # nats-server 2.15: on every reload
            "Reloaded: accounts",
            "Reloaded: authorization timeout = 4",
            "Reloaded: max_payload = 2048",
            "Reloaded: tls timeout = 3",
            "Reloaded: tls = enabled",
            "Reloaded: 1 pinned_certs",
            "Reloaded server configuration (sha256:x)",
        ]
        assert s.authorizer.timeout == 4.0


# -- pinned certificates ----------------------------------------------------------------------------------


async def test_pinned_reload_disconnects_unpinned_live_client(
    certs: CertSet, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    live = Live(tmp_path / "live")
    live.install(server_cert(certs, tmp_path, "a"))
    both = frozenset({certs.alice.spki_sha256, certs.bob.spki_sha256})
    async with running(tls=live.tls(certs, verify=True, pinned_certs=both)) as s:
        alice = await tls_raw(s.port, certs, certs.alice, b'CONNECT {"verbose":false}\r\nSUB p 1\r\n')
        bob = await tls_raw(s.port, certs, certs.bob)
        caplog.set_level(logging.INFO, logger="pynatsd")
        s.reload(dataclasses.replace(s.opts, tls=live.tls(certs, verify=True, pinned_certs=frozenset({certs.alice.spki_sha256}))))
        # bob's key is not in the new set: closed without any -ERR
        assert await bob.expect_eof() == b""
        assert "Disconnect 1 clients due to pinned certs reload" in caplog.messages
        closed = [c for c in s.closed_clients if c.closed_reason == "TLS Handshake Failure"]
        assert len(closed) == 1
        # alice stays, and still gets messages
        await alice.send(b"PUB p 2\r\nhi\r\n")
        assert await alice.ping() == b"MSG p 1 2\r\nhi\r\nPONG\r\n"
        # a new bob is refused at the handshake now
        with pytest.raises((ssl.SSLError, OSError, EOFError, AssertionError)):
            await tls_raw(s.port, certs, certs.bob)
        await alice.close()


async def test_pins_unchanged_disconnect_nobody(certs: CertSet, tmp_path: Path) -> None:
    live = Live(tmp_path / "live")
    live.install(server_cert(certs, tmp_path, "a"))
    pins = frozenset({certs.alice.spki_sha256})
    async with running(tls=live.tls(certs, verify=True, pinned_certs=pins)) as s:
        alice = await tls_raw(s.port, certs, certs.alice)
        s.reload(dataclasses.replace(s.opts, max_payload=4096))
        assert await alice.ping() == b"PONG\r\n"
        await alice.close()


# -- authorization over TLS ------------------------------------------------------------------------------


def mapped_users(*users: User) -> AuthOptions:
    return AuthOptions(users=users)


async def test_verify_and_map_users_remapped_on_reload(certs: CertSet, tmp_path: Path) -> None:
    live = Live(tmp_path / "live")
    live.install(server_cert(certs, tmp_path, "a"))
    alice_id, bob_id = "alice@example.com", "spiffe://example.com/bob"
    auth = mapped_users(User(alice_id), User(bob_id))
    async with running(tls=live.tls(certs, verify_and_map=True), auth=auth) as s:
        alice = await tls_raw(s.port, certs, certs.alice, b'CONNECT {"verbose":false}\r\nSUB a.x 1\r\nSUB b.x 2\r\n')
        bob = await tls_raw(s.port, certs, certs.bob)
        assert {c.user for c in s.clients.values()} == {alice_id, bob_id}
        only_a = Permissions(subscribe=SubjectPermission(allow=("a.>",)))
        s.reload(dataclasses.replace(s.opts, auth=mapped_users(User(alice_id, permissions=only_a))))
        assert await bob.expect_eof() == b""  # its mapped user is gone
        assert await alice.read_line() == b"-ERR 'Permissions Violation for Subscription to \"b.x\" (sid \"2\")'\r\n"
        await alice.send(b"PUB a.x 1\r\n1\r\nPUB b.x 1\r\n2\r\n")
        assert await alice.ping() == b"MSG a.x 1 1\r\n1\r\nPONG\r\n"
        await alice.close()


async def test_token_change_over_tls_is_authorization_violation(certs: CertSet, tmp_path: Path) -> None:
    live = Live(tmp_path / "live")
    live.install(server_cert(certs, tmp_path, "a"))
    async with running(tls=live.tls(certs), auth=AuthOptions(token="t1")) as s:
        c = await tls_raw(s.port, certs, None, b'CONNECT {"verbose":false,"auth_token":"t1"}\r\n')
        s.reload(dataclasses.replace(s.opts, auth=AuthOptions(token="t2")))
        assert await c.expect_eof() == b"-ERR 'Authorization Violation'\r\n"


# -- the HTTPS monitoring port ------------------------------------------------------------------------------


def _varz(port: int, certs: CertSet) -> dict[str, Any]:
    ctx = client_ctx(certs)
    with urllib.request.urlopen(f"https://localhost:{port}/varz", context=ctx, timeout=5) as r:  # noqa: S310
        return json.loads(r.read())  # type: ignore[no-any-return]


async def test_https_monitor_serves_new_cert_after_reload(certs: CertSet, tmp_path: Path) -> None:
    old = server_cert(certs, tmp_path, "old", days=90)
    new = server_cert(certs, tmp_path, "new", days=200)
    live = Live(tmp_path / "live")
    live.install(old)
    async with running(tls=live.tls(certs), https_port=-1, http_host=HOST) as s:
        mport = s.monitor.port
        assert await serial_of(mport, certs, info_first=False) == old.cert.serial_number
        varz = await asyncio.to_thread(_varz, mport, certs)
        assert varz["tls_cert_not_after"].startswith(f"{old.cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%S}")
        live.install(new)
        s.reload(dataclasses.replace(s.opts))
        assert await serial_of(mport, certs, info_first=False) == new.cert.serial_number
        assert await serial_of(s.port, certs) == new.cert.serial_number
        varz = await asyncio.to_thread(_varz, mport, certs)
        assert varz["tls_cert_not_after"].startswith(f"{new.cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%S}")
        served = {c.listener: c.not_after for c in s.monitor.served_certs()}
        assert served == {"client": new.cert.not_valid_after_utc, "monitor": new.cert.not_valid_after_utc}


async def test_https_monitor_broken_cert_refused(certs: CertSet, tmp_path: Path) -> None:
    old = server_cert(certs, tmp_path, "old")
    live = Live(tmp_path / "live")
    live.install(old)
    async with running(tls=live.tls(certs), https_port=-1, http_host=HOST) as s:
        live.put(live.key, Path(certs.wrong_key_file).read_bytes())
        with pytest.raises(ConfigError):
            s.reload(dataclasses.replace(s.opts))
        assert await serial_of(s.monitor.port, certs, info_first=False) == old.cert.serial_number
        with pytest.raises(ConfigError, match="TLS cert and key required for HTTPS"):
            s.reload(dataclasses.replace(s.opts, tls=None))


# -- TLS switched on and off ------------------------------------------------------------------------------


async def test_tls_enabled_and_disabled_by_reload(certs: CertSet, tmp_path: Path) -> None:
    live = Live(tmp_path / "live")
    a = server_cert(certs, tmp_path, "a")
    live.install(a)
    async with running() as s:
        plain = await AsyncRawClient.open(HOST, s.port)
        await plain.read_info()
        await plain.send(b'CONNECT {"verbose":false}\r\n')
        s.reload(dataclasses.replace(s.opts, tls=live.tls(certs)))
        assert await serial_of(s.port, certs) == a.cert.serial_number
        assert await plain.ping() == b"PONG\r\n"  # existing plain connection kept
        s.reload(dataclasses.replace(s.opts, tls=None))
        c = await AsyncRawClient.open(HOST, s.port)
        assert "tls_required" not in await c.read_info()
        await c.close()
        await plain.close()


# -- expiry watch follows -------------------------------------------------------------------------------------


async def test_expiry_watch_sees_reloaded_cert(certs: CertSet, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    far = server_cert(certs, tmp_path, "far", days=300)
    soon = server_cert(certs, tmp_path, "soon", days=5)
    live = Live(tmp_path / "live")
    live.install(far)
    async with running(tls=live.tls(certs)) as s:
        watch = s.cert_watch
        assert watch is not None and not watch.check()
        live.install(soon)
        caplog.set_level(logging.WARNING, logger="pynatsd")
        s.reload(dataclasses.replace(s.opts))
        flagged = watch.check()
        assert [c.not_after for c in flagged] == [soon.cert.not_valid_after_utc]
        assert any("expires in" in m for m in caplog.messages)


def test_go_value_formatting() -> None:
    from pynatsd.reload import go_value

    assert go_value(2.0) == "2"
    assert go_value(0.5) == "0.5"
    assert go_value(True) == "true"
    assert go_value(None) == ""
    assert go_value(("a", "b")) == "[a b]"


