"""``watch: true`` in a tls block (pynatsd.tls.watch): certificate files replaced on disk are
picked up without a signal, for every listener using the block (client port, HTTPS monitoring
port, route port); a broken replacement is refused with one log line and the old certificate
kept until the next change.

In-process servers poll every 50 ms here (``tls_watch_interval``); each check awaits the
certificate a new handshake presents, with a deadline.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.helpers.certs import CertSet, Issued, make_cert_set
from tests.integration.test_core import running
from tests.integration.test_reload import Live, await_serial, nats_tls, serial_of, server_cert

from pynatsd.config.options import ClusterOptions
from pynatsd.tls.watch import TLSFileWatch, fingerprint, tls_files

FAST = 0.05


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CertSet]:
    yield make_cert_set(Path(tmp_path_factory.mktemp("watch-certs")))


async def await_messages(caplog: pytest.LogCaptureFixture, text: str, timeout: float = 5.0) -> list[str]:
    deadline = asyncio.get_running_loop().time() + timeout
    while not (hits := [m for m in caplog.messages if text in m]):
        assert asyncio.get_running_loop().time() < deadline, f"no log line with {text!r}: {caplog.messages}"
        await asyncio.sleep(0.02)
    return hits


async def test_atomic_replace_picked_up_by_client_and_https_monitor(
    certs: CertSet, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old, new = server_cert(certs, tmp_path, "old"), server_cert(certs, tmp_path, "new", days=120)
    live = Live(tmp_path / "live")
    live.install(old)
    caplog.set_level(logging.INFO, logger="pynatsd")
    opts = {"tls": live.tls(certs, watch=True), "https_port": -1, "http_host": "127.0.0.1", "tls_watch_interval": FAST}
    async with running(**opts) as s:
        existing = await nats_tls(s.port, certs)
        sub = await existing.subscribe("w")
        await existing.flush()
        assert s.tls_watch is not None and s.tls_watch.running
        live.install(new)  # new key then new cert, each written aside and renamed over
        await await_serial(s.port, certs, new.cert.serial_number)
        await await_serial(s.monitor.port, certs, new.cert.serial_number, info_first=False)
        lines = await await_messages(caplog, "Reloaded TLS certificate for monitor")
        expires = f"{new.cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%S}"
        assert lines == [f"Reloaded TLS certificate for monitor from {live.cert} (expires {expires}Z)"]
        assert f"Reloaded TLS certificate for client from {live.cert} (expires {expires}Z)" in caplog.messages
        assert s.tls_watch.failures == 0
        # the connection made before the change still works
        other = await nats_tls(s.port, certs)
        await other.publish("w", b"x")
        await other.flush()
        assert (await sub.next_msg(timeout=3)).data == b"x"
        await other.close()
        await existing.close()


async def test_kubernetes_style_symlink_swap(certs: CertSet, tmp_path: Path) -> None:
    """A mounted secret: tls.crt -> ..data/tls.crt, ..data -> ..<timestamp>/; an update writes a
    new timestamped directory and renames a new ..data link over the old one."""
    old, new = server_cert(certs, tmp_path, "old"), server_cert(certs, tmp_path, "new")
    mount = tmp_path / "secret"
    mount.mkdir()

    def publish(version: str, issued: Issued) -> None:
        d = mount / f"..{version}"
        d.mkdir()
        (d / "tls.crt").write_bytes(Path(issued.cert_file).read_bytes())
        (d / "tls.key").write_bytes(Path(issued.key_file).read_bytes())
        tmp_link = mount / "..data_tmp"
        os.symlink(d.name, tmp_link)
        os.replace(tmp_link, mount / "..data")

    publish("2026_01_01", old)
    for f in ("tls.crt", "tls.key"):
        os.symlink(f"..data/{f}", mount / f)
    live = Live(mount)  # configured paths: secret/tls.crt, secret/tls.key (symlinks)
    async with running(tls=live.tls(certs, watch=True), tls_watch_interval=FAST) as s:
        assert await serial_of(s.port, certs) == old.cert.serial_number
        publish("2026_02_01", new)
        await await_serial(s.port, certs, new.cert.serial_number)
        assert s.tls_watch.reloads == 1


async def test_broken_replacement_keeps_old_until_fixed(
    certs: CertSet, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old, new = server_cert(certs, tmp_path, "old"), server_cert(certs, tmp_path, "new")
    live = Live(tmp_path / "live")
    live.install(old)
    caplog.set_level(logging.INFO, logger="pynatsd")
    async with running(tls=live.tls(certs, watch=True), tls_watch_interval=FAST) as s:
        watch = s.tls_watch
        live.put(live.cert, Path(new.cert_file).read_bytes())  # the new cert with the OLD key
        lines = await await_messages(caplog, "Failed to reload TLS certificate")
        assert len(lines) == 1
        assert lines[0].startswith(f"Failed to reload TLS certificate for client from {live.cert}: ")
        assert "does not match" in lines[0] and lines[0].endswith("still serving the previous one")
        assert await serial_of(s.port, certs) == old.cert.serial_number
        # not retried while nothing changes
        polls = watch.failures
        await asyncio.sleep(FAST * 6)
        assert watch.failures == polls == 1
        live.put(live.key, Path(new.key_file).read_bytes())  # the matching key arrives
        await await_serial(s.port, certs, new.cert.serial_number)
        assert watch.reloads == 1


async def test_cert_then_key_written_separately_is_one_clean_reload(certs: CertSet, tmp_path: Path) -> None:
    old, new = server_cert(certs, tmp_path, "old"), server_cert(certs, tmp_path, "new")
    live = Live(tmp_path / "live")
    live.install(old)
    async with running(tls=live.tls(certs, watch=True), tls_watch_interval=FAST) as s:
        watch = s.tls_watch
        watch.settle = 0.4  # longer than the gap between the two writes below
        live.put(live.cert, Path(new.cert_file).read_bytes())
        await asyncio.sleep(FAST * 2)
        live.put(live.key, Path(new.key_file).read_bytes())
        await await_serial(s.port, certs, new.cert.serial_number)
        assert (watch.reloads, watch.failures) == (1, 0)


async def test_ca_file_change_applies_to_new_handshakes(certs: CertSet, tmp_path: Path) -> None:
    """Replacing the CA bundle: new clients are verified against the new CA, the connected
    client stays."""
    live = Live(tmp_path / "live")
    live.install(server_cert(certs, tmp_path, "a"))
    ca = tmp_path / "live" / "ca.pem"
    live.put(ca, Path(certs.ca.cert_file).read_bytes())
    tls = dataclasses.replace(live.tls(certs, verify=True, watch=True), ca_file=str(ca))
    async with running(tls=tls, tls_watch_interval=FAST) as s:
        alice = await nats_tls(s.port, certs, certs.alice)
        # the bundle now names only the untrusted CA: certs.alice no longer verifies
        live.put(ca, Path(certs.untrusted_ca.cert_file).read_bytes())
        deadline = asyncio.get_running_loop().time() + 5
        while s.tls_watch.reloads < 1:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.02)
        with pytest.raises(Exception):  # noqa: B017,PT011 - refused at the handshake, however nats-py reports it
            await nats_tls(s.port, certs, certs.alice, connect_timeout=2)
        assert alice.is_connected
        await alice.flush(timeout=3)
        await alice.close()


async def test_watch_started_and_stopped_by_config_reload(certs: CertSet, tmp_path: Path) -> None:
    old, new = server_cert(certs, tmp_path, "old"), server_cert(certs, tmp_path, "new")
    live = Live(tmp_path / "live")
    live.install(old)
    async with running(tls=live.tls(certs), tls_watch_interval=FAST) as s:
        assert s.tls_watch is None
        s.reload(dataclasses.replace(s.opts, tls=live.tls(certs, watch=True)))
        assert s.tls_watch is not None and s.tls_watch.running
        live.install(new)
        await await_serial(s.port, certs, new.cert.serial_number)
        s.reload(dataclasses.replace(s.opts, tls=live.tls(certs)))
        await asyncio.sleep(0)
        assert not s.tls_watch.running


async def test_route_port_follows_cluster_tls_watch(certs: CertSet, tmp_path: Path) -> None:
    old, new = server_cert(certs, tmp_path, "old"), server_cert(certs, tmp_path, "new")
    live = Live(tmp_path / "live")
    live.install(old)
    cluster = ClusterOptions(name="c", host="127.0.0.1", port=-1, tls=live.tls(certs, watch=True))
    async with running(cluster=cluster, tls_watch_interval=FAST) as s:
        assert s.cluster_port
        # the route port starts TLS at once (no INFO first) and wants a client certificate
        assert await serial_of(s.cluster_port, certs, info_first=False) == old.cert.serial_number
        live.install(new)
        await await_serial(s.cluster_port, certs, new.cert.serial_number, info_first=False)
        assert s.routes.client_tls.cert.serial_number == new.cert.serial_number


def test_fingerprint_sees_atomic_replace_and_symlink_target(tmp_path: Path) -> None:
    f = tmp_path / "a.pem"
    f.write_bytes(b"one")
    before = fingerprint(str(f))
    tmp = tmp_path / "a.tmp"
    tmp.write_bytes(b"one")  # same size and (likely) same mtime second: the inode differs
    os.replace(tmp, f)
    assert fingerprint(str(f)) != before
    assert fingerprint(str(tmp_path / "missing")) is None
    link = tmp_path / "link.pem"
    os.symlink(f.name, link)
    assert fingerprint(str(link)) == fingerprint(str(f))


def test_tls_files_lists_every_file_once() -> None:
    from pynatsd.config.options import TLSOptions

    t = TLSOptions(cert_file="c", key_file="k", ca_file="c", key_password_file="p")
    assert tls_files(t) == ("c", "k", "p")


async def test_watch_without_blocks_has_no_task() -> None:
    w = TLSFileWatch(lambda name: True, interval=FAST)
    w.configure({})
    assert not w.running
    await w.stop()
