"""What nats.py's own test harnesses expect of a ``nats-server`` process, pynatsd vs nats-server.

nats.py's suites start ``nats-server`` from PATH (tests/helpers/nats_server_shim puts pynatsd
there): ``nats/tests/utils.py`` passes ``-p -m -a --user --pass --auth --tls... --cluster_listen
--routes --cluster_name --config`` and polls ``/varz``; the ``nats.server`` package (used by
nats-core's tests) passes ``--addr --port -1 --config ...`` and reads stderr for the lines below
and for "Parse error" when a config is broken. Each case runs both implementations the same way.
The full-suite results are in /work/notes/nats-py-suite.md.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.servers import HOST, free_port, nats_server_binary

SHIM_DIR = Path(__file__).resolve().parents[1] / "helpers" / "nats_server_shim"
LISTENING = re.compile(r"\[INF\] Listening for client connections on (.+):(\d+)")
READY = re.compile(r"\[INF\] Server is ready")


def _binary(impl: str) -> str:
    return nats_server_binary() if impl == "nats" else str(SHIM_DIR / "nats-server")


@pytest.fixture(params=["nats", "pynatsd"])
def binary(request: pytest.FixtureRequest) -> str:
    return _binary(str(request.param))


@pytest.fixture
def spawned() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(10)
        for f in (p.stdout, p.stderr):
            if f is not None:
                f.close()


def test_shim_is_executable_and_runs_pynatsd() -> None:
    shim = SHIM_DIR / "nats-server"
    assert os.access(shim, os.X_OK)
    out = subprocess.run([str(shim), "-v"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "pynatsd" in out.stdout


def test_nats_server_package_reads_readiness_from_stderr(
    binary: str, spawned: list[subprocess.Popen[bytes]]
) -> None:
    """``nats.server.run(host=..., port=0)``: ``--addr H --port -1``, then stderr is read until
    "Server is ready"; the client address comes from the "Listening for client connections" line."""
    p = subprocess.Popen([binary, "--addr", HOST, "--port", "-1"], stderr=subprocess.PIPE)
    spawned.append(p)
    assert p.stderr is not None
    host_port: tuple[str, int] | None = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = p.stderr.readline().decode()
        assert line, "server exited before it was ready"
        if m := LISTENING.search(line):
            host_port = (m.group(1), int(m.group(2)))
        if READY.search(line):
            break
    assert host_port is not None and host_port[0] == HOST and host_port[1] > 0
    with socket.create_connection(host_port, timeout=10) as s:
        assert s.recv(5) == b"INFO "


def test_broken_config_says_parse_error(binary: str, tmp_path: Path) -> None:
    """nats.server's ``run(config_path=...)`` raises with the stderr text; its test looks for
    "Parse error" (nats-server: ``Parse error on line 2: '...'``)."""
    conf = tmp_path / "invalid.conf"
    conf.write_text('{\n  "port": : "invalid syntax"\n}\n')
    out = subprocess.run([binary, "--config", str(conf)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "Parse error on line 2: '" in out.stdout + out.stderr


def test_nats_py_utils_flags_with_user_and_monitor(
    binary: str, spawned: list[subprocess.Popen[bytes]]
) -> None:
    """nats.py's NATSD(port, user, password, http_port): ``-p P -m M -a 127.0.0.1 --user u
    --pass p``, readiness by polling /varz; the port then wants that user."""
    port, http_port = free_port(), free_port()
    p = subprocess.Popen(
        [binary, "-p", str(port), "-m", str(http_port), "-a", HOST, "--user", "foo", "--pass", "bar"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    spawned.append(p)
    varz: dict[str, object] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and p.poll() is None:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{http_port}/varz", timeout=5) as r:
                varz = json.loads(r.read())
                break
        except OSError:
            time.sleep(0.05)
    assert varz.get("port") == port and varz.get("auth_required") is True
    with socket.create_connection((HOST, port), timeout=10) as s:
        f = s.makefile("rb")
        info = json.loads(f.readline()[5:])
        assert info["auth_required"] is True
        s.sendall(b'CONNECT {"user":"foo","pass":"bar","verbose":false}\r\nPING\r\n')
        assert f.readline() == b"PONG\r\n"
    with socket.create_connection((HOST, port), timeout=10) as s:
        f = s.makefile("rb")
        f.readline()
        s.sendall(b'CONNECT {"user":"foo","pass":"nope","verbose":false}\r\nPING\r\n')
        assert f.readline() == b"-ERR 'Authorization Violation'\r\n"


def _eof_to_exit_ms(binary: str) -> float:
    port = free_port()
    p = subprocess.Popen(
        [binary, "-p", str(port), "-a", HOST], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                s = socket.create_connection((HOST, port), timeout=10)
                break
            except OSError:
                assert time.monotonic() < deadline and p.poll() is None
                time.sleep(0.02)
        with s:
            f = s.makefile("rb")
            f.readline()
            s.sendall(b'CONNECT {"verbose":false}\r\nPING\r\n')
            assert f.readline() == b"PONG\r\n"
            p.terminate()
            assert f.read() == b""  # EOF: the server closed us on the way out
            t = time.perf_counter()
            p.wait(10)
            return (time.perf_counter() - t) * 1000
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)


def test_process_ends_right_after_closing_clients(binary: str) -> None:
    """nats-core's cluster test stops the node a client is on (SIGTERM, then waits for the
    process) and only then starts waiting for the client's reconnect event: a server that
    lingers after its clients' EOF (interpreter teardown took 35-60 ms) lets the reconnect
    happen before the test waits for it. nats-server is gone within ~2 ms."""
    times = sorted(_eof_to_exit_ms(binary) for _ in range(3))
    assert times[1] < 20, times
