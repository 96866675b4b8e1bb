"""Reload of a server process, as an operator does it: rewrite the ``-c`` file or the
certificate files, then SIGHUP or ``--signal reload=<pid file>``. Where nats-server behaves the
same the cases run against both implementations (``impl``) with the same assertions: certificate
rotation seen by new TLS clients on the client and HTTPS monitoring ports while a connected
client keeps receiving, broken certificates refused with one log line and the old one kept,
refused options named as nats-server names them, verify_and_map users re-mapped. pynatsd only:
pinned certificates re-checked against the new set (nats-server #8270) and ``watch: true``.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.helpers.certs import CertSet, make_cert_set
from tests.helpers.servers import ServerProcess, impl_command
from tests.integration.test_reload import Live, await_serial, nats_tls, serial_of, server_cert, tls_raw

Factory = Callable[..., ServerProcess]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CertSet]:
    yield make_cert_set(Path(tmp_path_factory.mktemp("reload-proc-certs")))


def tls_block(live: Live, certs: CertSet, extra: str = "") -> str:
    return f'tls {{\n  cert_file: "{live.cert}"\n  key_file: "{live.key}"\n  ca_file: "{certs.ca.cert_file}"\n{extra}}}\n'


def wait_log(srv: ServerProcess, pattern: str, *, count: int = 1, timeout: float = 10.0) -> str:
    """Poll the process's log (stderr) until ``pattern`` has matched ``count`` times."""
    deadline = time.monotonic() + timeout
    while True:
        text = srv.stderr()
        if len(re.findall(pattern, text)) >= count:
            return text
        assert time.monotonic() < deadline, f"no {pattern!r} in log:\n{text[-3000:]}"
        time.sleep(0.02)


def monitor_port(srv: ServerProcess) -> int:
    assert srv.ports is not None and srv.ports.get("monitoring"), srv.ports
    m = re.search(r":(\d+)$", srv.ports["monitoring"][0])
    assert m
    return int(m.group(1))


def send_signal_cli(impl: str, spec: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*impl_command(impl), "--signal", spec], capture_output=True, text=True, timeout=20)


# -- rotation ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["SIGHUP", "--signal reload=<pidfile>"])
async def test_rotation_by_signal(impl: str, server_factory: Factory, certs: CertSet, tmp_path: Path, how: str) -> None:
    old = server_cert(certs, tmp_path, "old")
    new = server_cert(certs, tmp_path, "new", days=150)
    live = Live(tmp_path / "live")
    live.install(old)
    pid_file = tmp_path / "srv.pid"
    conf = tls_block(live, certs) + 'https: "127.0.0.1:-1"\n' + f'pid_file: "{pid_file}"\n'
    srv = server_factory(impl, conf)
    mport = monitor_port(srv)
    assert await serial_of(srv.port, certs) == old.cert.serial_number
    assert await serial_of(mport, certs, info_first=False) == old.cert.serial_number
    existing = await nats_tls(srv.port, certs)
    sub = await existing.subscribe("rot")
    await existing.flush()
    live.install(new)
    if how == "SIGHUP":
        srv.reload()
    else:
        res = await asyncio.to_thread(send_signal_cli, impl, f"reload={pid_file}")
        assert res.returncode == 0, res.stderr
    text = await asyncio.to_thread(wait_log, srv, r"Reloaded server configuration")
    assert "Reloaded: tls = enabled" in text
    assert "Failed to reload" not in text
    await await_serial(srv.port, certs, new.cert.serial_number)
    await await_serial(mport, certs, new.cert.serial_number, info_first=False)
    publisher = await nats_tls(srv.port, certs)
    await publisher.publish("rot", b"after")
    await publisher.flush()
    assert (await sub.next_msg(timeout=3)).data == b"after"
    assert existing.is_connected
    await publisher.close()
    await existing.close()


@pytest.mark.parametrize("broken", ["missing-file", "key-mismatch", "garbage-cert"])
async def test_broken_cert_on_reload_keeps_serving_old(
    impl: str, server_factory: Factory, certs: CertSet, tmp_path: Path, broken: str
) -> None:
    old = server_cert(certs, tmp_path, "old")
    live = Live(tmp_path / "live")
    live.install(old)
    srv = server_factory(impl, tls_block(live, certs) + "max_payload: 1000\n")
    existing = await nats_tls(srv.port, certs)
    sub = await existing.subscribe("k")
    await existing.flush()
    conf = tls_block(live, certs) + "max_payload: 2000\n"
    if broken == "missing-file":
        conf = conf.replace(str(live.cert), str(tmp_path / "gone.pem"))
    elif broken == "key-mismatch":
        live.put(live.key, Path(certs.wrong_key_file).read_bytes())
    else:
        live.put(live.cert, b"-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n")
    srv.reload(conf)
    text = await asyncio.to_thread(wait_log, srv, r"\[ERR\] Failed to reload server configuration: ")
    failures = [ln for ln in text.splitlines() if "Failed to reload" in ln]
    assert len(failures) == 1, failures
    # the next line is a new log line (one line per failure, no traceback)
    tail = text.split(failures[0], 1)[1].strip()
    assert tail == "" or tail.startswith("["), tail
    assert "Reloaded server configuration" not in text
    assert await serial_of(srv.port, certs) == old.cert.serial_number
    publisher = await nats_tls(srv.port, certs)
    assert publisher.max_payload == 1000  # the whole reload was refused
    await publisher.publish("k", b"still")
    await publisher.flush()
    assert (await sub.next_msg(timeout=3)).data == b"still"
    await publisher.close()
    await existing.close()


# -- what cannot be reloaded: the same text as nats-server ------------------------------------------------


REFUSED = [
    ("max_subscriptions: 10\n", "config reload not supported for MaxSubs: old=0, new=10"),
    ("max_pending: 100000\n", "config reload not supported for MaxPending: old=67108864, new=100000"),
    ("lame_duck_duration: 30s\n", "config reload not supported for LameDuckDuration: old=2m0s, new=30s"),
    ("allow_non_tls: true\n", "config reload not supported for AllowNonTLS: old=false, new=true"),
    ("server_name: renamed\n", "config reload not supported for ServerName: old=first, new=renamed"),
    ("verify_and_map", "config reload not supported for TLSMap: old=false, new=true"),
    ("connection_rate_limit", "config reload not supported for TLSRateLimit: old=0, new=5"),
]


@pytest.mark.parametrize(("change", "message"), REFUSED, ids=[r[1].split()[5].rstrip(":") for r in REFUSED])
def test_refused_options_named_as_nats_server(
    impl: str, server_factory: Factory, certs: CertSet, tmp_path: Path, change: str, message: str
) -> None:
    live = Live(tmp_path / "live")
    live.install(server_cert(certs, tmp_path, "a"))
    base = "server_name: first\nmax_payload: 1000\n"
    srv = server_factory(impl, base + tls_block(live, certs, "  verify: true\n"))
    if change == "verify_and_map":
        conf = base + tls_block(live, certs, "  verify_and_map: true\n")
    elif change == "connection_rate_limit":
        conf = base + tls_block(live, certs, "  verify: true\n  connection_rate_limit: 5\n")
    else:
        conf = base + tls_block(live, certs, "  verify: true\n") + change
    srv.reload(conf.replace("max_payload: 1000", "max_payload: 2000"))
    text = wait_log(srv, r"Failed to reload server configuration: ")
    (line,) = [ln for ln in text.splitlines() if "Failed to reload" in ln]
    assert line.endswith(f"[ERR] Failed to reload server configuration: {message}"), line
    assert "Reloaded: max_payload" not in text


def test_reload_without_config_file(impl: str, server_factory: Factory) -> None:
    srv = server_factory(impl, None)
    assert srv.proc is not None
    srv.proc.send_signal(signal.SIGHUP)
    wait_log(
        srv,
        r"\[ERR\] Failed to reload server configuration: can only reload config when a file is provided using -c or --config",
    )
    assert srv.running


def test_bad_config_file_then_good_one(impl: str, server_factory: Factory) -> None:
    """What someone editing the file by hand meets: a syntax error, an unknown option, a
    deleted file; each refused with one line, the server keeps its options; then a good one."""
    srv = server_factory(impl, "max_payload: 1000\n")
    assert srv.config_path is not None
    attempts = ["max_payload: {{{\n", "max_payload: 2000\nno_such_option: 1\n"]
    for i, conf in enumerate(attempts, start=1):
        srv.reload(conf)
        wait_log(srv, r"\[ERR\] Failed to reload server configuration: ", count=i)
    srv.config_path.unlink()
    assert srv.proc is not None
    srv.proc.send_signal(signal.SIGHUP)
    text = wait_log(srv, r"\[ERR\] Failed to reload server configuration: ", count=3)
    assert "Reloaded server configuration" not in text
    srv.reload("max_payload: 3000\n")
    text = wait_log(srv, r"Reloaded server configuration")
    assert "Reloaded: max_payload = 3000" in text
    failures = [ln for ln in text.splitlines() if "Failed to reload" in ln]
    assert len(failures) == 3 and all(ln.count("[ERR]") == 1 for ln in failures)


# -- authorization over TLS after a reload ------------------------------------------------------------------


MAP_BEFORE = """
authorization { users: [
  { user: "alice@example.com", permissions: { subscribe: ["a.>", "b.>"] } }
  { user: "spiffe://example.com/bob" }
] }
"""
MAP_AFTER = """
authorization { users: [
  { user: "alice@example.com", permissions: { subscribe: "a.>" } }
] }
"""


async def test_verify_and_map_users_after_reload(impl: str, server_factory: Factory, certs: CertSet, tmp_path: Path) -> None:
    live = Live(tmp_path / "live")
    live.install(server_cert(certs, tmp_path, "a"))
    tls = tls_block(live, certs, "  verify_and_map: true\n")
    srv = server_factory(impl, tls + MAP_BEFORE)
    alice = await tls_raw(srv.port, certs, certs.alice, b'CONNECT {"verbose":false}\r\nSUB a.x 1\r\nSUB b.x 2\r\n')
    bob = await tls_raw(srv.port, certs, certs.bob)
    srv.reload(tls + MAP_AFTER)
    assert await bob.expect_eof() == b""  # its user is gone: closed without -ERR
    assert await alice.read_line() == b"-ERR 'Permissions Violation for Subscription to \"b.x\" (sid \"2\")'\r\n"
    await alice.send(b"PUB b.x 1\r\nn\r\nPUB a.x 1\r\ny\r\n")
    assert await alice.ping() == b"MSG a.x 1 1\r\ny\r\nPONG\r\n"
    await alice.close()


async def test_token_change_over_tls(impl: str, server_factory: Factory, certs: CertSet, tmp_path: Path) -> None:
    live = Live(tmp_path / "live")
    live.install(server_cert(certs, tmp_path, "a"))
    tls = tls_block(live, certs)
    srv = server_factory(impl, tls + 'authorization { token: "t1" }\n')
    c = await tls_raw(srv.port, certs, None, b'CONNECT {"verbose":false,"auth_token":"t1"}\r\n')
    srv.reload(tls + 'authorization { token: "t2" }\n')
    assert await c.expect_eof() == b"-ERR 'Authorization Violation'\r\n"
    ok = await tls_raw(srv.port, certs, None, b'CONNECT {"verbose":false,"auth_token":"t2"}\r\n')
    await ok.close()


# -- pynatsd only -----------------------------------------------------------------------------------------------


async def test_pinned_reload_by_sighup_disconnects_unpinned(server_factory: Factory, certs: CertSet, tmp_path: Path) -> None:
    """nats-server 2.15 compares live clients with the OLD pin set (its issue #8270), so only
    pynatsd disconnects here."""
    live = Live(tmp_path / "live")
    live.install(server_cert(certs, tmp_path, "a"))

    def conf(*pins: str) -> str:
        listed = ", ".join(f'"{p}"' for p in pins)
        return tls_block(live, certs, f"  verify: true\n  pinned_certs: [{listed}]\n")

    srv = server_factory("pynatsd", conf(certs.alice.spki_sha256, certs.bob.spki_sha256))
    alice = await tls_raw(srv.port, certs, certs.alice)
    bob = await tls_raw(srv.port, certs, certs.bob)
    srv.reload(conf(certs.alice.spki_sha256))
    assert await bob.expect_eof() == b""
    text = await asyncio.to_thread(wait_log, srv, r"Disconnect 1 clients due to pinned certs reload")
    assert "Reloaded: 1 pinned_certs" in text
    assert await alice.ping() == b"PONG\r\n"
    await alice.close()


async def test_watch_mode_in_a_process(server_factory: Factory, certs: CertSet, tmp_path: Path) -> None:
    old, new = server_cert(certs, tmp_path, "old"), server_cert(certs, tmp_path, "new")
    live = Live(tmp_path / "live")
    live.install(old)
    srv = server_factory("pynatsd", tls_block(live, certs, "  watch: true\n"))
    existing = await nats_tls(srv.port, certs)
    live.install(new)  # no signal
    text = await asyncio.to_thread(wait_log, srv, r"\[INF\] Reloaded TLS certificate for client from ")
    assert f"Reloaded TLS certificate for client from {live.cert} (expires " in text
    await await_serial(srv.port, certs, new.cert.serial_number)
    assert existing.is_connected
    await existing.flush(timeout=3)
    await existing.close()
