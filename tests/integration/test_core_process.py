"""The server as a process (``python -m pynatsd``): pid and ports files, signals (SIGTERM,
SIGINT, SIGHUP reload, SIGUSR1 log reopen, SIGUSR2 lame duck), log format, exit codes."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.helpers.rawclient import RawClient

HOST = "127.0.0.1"
LOG_LINE = re.compile(r"^\[(\d+)\] \d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d{6} \[(INF|DBG|TRC|WRN|ERR|FTL)\] ")


class Proc:
    def __init__(self, tmp: Path, args: list[str]) -> None:
        self.tmp = tmp
        self.ports_dir = tmp / "ports"
        self.ports_dir.mkdir(exist_ok=True)
        self.stderr_path = tmp / "stderr.log"
        self._err = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in stop()
        cmd = [sys.executable, "-m", "pynatsd", "-a", HOST, "-p", "-1", "--ports_file_dir", str(self.ports_dir), *args]
        self.p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self._err)
        self.ports = self._wait_ports()
        m = re.match(r"nats://127\.0\.0\.1:(\d+)$", self.ports["nats"][0])
        assert m, self.ports
        self.port = int(m.group(1))

    @property
    def ports_file(self) -> Path:
        return self.ports_dir / f"pynatsd_{self.p.pid}.ports"

    def _wait_ports(self) -> dict[str, list[str]]:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.p.poll() is not None:
                raise AssertionError(f"server exited early: {self.stderr()}")
            if self.ports_file.exists():
                return json.loads(self.ports_file.read_text())  # type: ignore[no-any-return]
            time.sleep(0.02)
        raise AssertionError(f"no ports file; stderr: {self.stderr()}")

    def stderr(self) -> str:
        self._err.flush()
        return self.stderr_path.read_text(errors="replace")

    def wait_log(self, pattern: str, path: Path | None = None, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = path.read_text(errors="replace") if path is not None and path.exists() else self.stderr()
            if re.search(pattern, text):
                return text
            time.sleep(0.02)
        raise AssertionError(f"log never matched {pattern!r}: {self.stderr()}")

    def signal(self, sig: int) -> None:
        self.p.send_signal(sig)

    def wait(self, timeout: float = 15.0) -> int:
        return self.p.wait(timeout)

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(5)
        self._err.close()


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    procs: list[Proc] = []

    def start(*args: str) -> Proc:
        proc = Proc(tmp_path, list(args))
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop()


def test_pid_ports_files_and_sigterm(launch: Callable[..., Proc], tmp_path: Path) -> None:
    pid_file = tmp_path / "s.pid"
    proc = launch("-P", str(pid_file), "-m", "-1")
    assert pid_file.read_bytes() == str(proc.p.pid).encode()  # no newline, as nats-server
    assert list(proc.ports) == ["nats", "monitoring"]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", proc.ports["monitoring"][0])
    with RawClient(HOST, proc.port) as c:
        info = c.read_info()
        assert info["port"] == proc.port
        c.send(b'CONNECT {"verbose":false}\r\nSUB a 1\r\nPUB a 2\r\nhi\r\n')
        assert c.ping() == b"MSG a 1 2\r\nhi\r\nPONG\r\n"
        proc.signal(signal.SIGTERM)
        assert c.expect_eof() == b""
    assert proc.wait() == 0
    assert not proc.ports_file.exists()  # removed on exit
    assert pid_file.exists()  # kept, as nats-server does
    log = proc.stderr()
    lines = [ln for ln in log.splitlines() if ln]
    assert all(LOG_LINE.match(ln) for ln in lines), log
    assert all(LOG_LINE.match(ln).group(1) == str(proc.p.pid) for ln in lines)  # type: ignore[union-attr]
    for text in (
        "Starting nats-server",
        f"Listening for client connections on 127.0.0.1:{proc.port}",
        "Server is ready",
        'Trapped "terminated" signal',
        "Server Exiting..",
    ):
        assert text in log


def test_sigint_exits_zero(launch: Callable[..., Proc]) -> None:
    proc = launch()
    proc.signal(signal.SIGINT)
    assert proc.wait() == 0
    assert 'Trapped "interrupt" signal' in proc.stderr()


def test_debug_and_trace_lines(launch: Callable[..., Proc]) -> None:
    proc = launch("-DV")
    with RawClient(HOST, proc.port) as c:
        c.read_info()
        c.send(b'CONNECT {"verbose":false,"name":"n1","lang":"py","version":"1.0"}\r\nSUB a 7\r\n')
        c.ping()
    text = proc.wait_log(r"Client connection closed: Client Closed")
    assert re.search(r"\[DBG\] 127\.0\.0\.1:\d+ - cid:\d+ - Client connection created", text)
    assert re.search(r'\[TRC\] 127\.0\.0\.1:\d+ - cid:\d+ - "v1\.0:py:n1" - <<- \[SUB a 7\]', text)
    assert re.search(r'\[TRC\] 127\.0\.0\.1:\d+ - cid:\d+ - "v1\.0:py:n1" - ->> \[PONG\]', text)
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0


def test_sighup_reload(launch: Callable[..., Proc], tmp_path: Path) -> None:
    conf = tmp_path / "s.conf"
    conf.write_text("max_payload: 1024\nauthorization { users: [ {user: a, password: a}, {user: b, password: b} ] }\n")
    proc = launch("-c", str(conf))
    with RawClient(HOST, proc.port) as a, RawClient(HOST, proc.port) as b:
        assert a.read_info()["max_payload"] == 1024
        b.read_info()
        a.send(b'CONNECT {"verbose":false,"user":"a","pass":"a"}\r\n')
        b.send(b'CONNECT {"verbose":false,"user":"b","pass":"b"}\r\n')
        a.ping()
        b.ping()
        conf.write_text("max_payload: 2048\nauthorization { users: [ {user: a, password: a} ] }\n")
        proc.signal(signal.SIGHUP)
        assert b.expect_eof() == b""  # removed user: closed without -ERR
        text = proc.wait_log(r"Reloaded server configuration \(sha256:[0-9a-f]{64}\)")
        assert "[INF] Reloaded: max_payload = 2048" in text
        assert "[INF] Reloaded: authorization users" in text
        assert a.ping() == b"PONG\r\n"
    with RawClient(HOST, proc.port) as c:
        assert c.read_info()["max_payload"] == 2048
    conf.write_text("max_payload: {{{\n")
    proc.signal(signal.SIGHUP)
    proc.wait_log(r"\[ERR\] Failed to reload server configuration: ")
    with RawClient(HOST, proc.port) as c:  # still serving with the last good options
        assert c.read_info()["max_payload"] == 2048
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0


def test_sigusr1_reopens_log_file(launch: Callable[..., Proc], tmp_path: Path) -> None:
    log_file = tmp_path / "server.log"
    proc = launch("-l", str(log_file))
    proc.wait_log("Server is ready", log_file)
    rotated = tmp_path / "server.log.1"
    os.rename(log_file, rotated)
    proc.signal(signal.SIGUSR1)
    proc.wait_log("File log re-opened", log_file)
    assert "Server is ready" in rotated.read_text()
    assert "Server is ready" not in log_file.read_text()
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0


def test_sigusr2_lame_duck(launch: Callable[..., Proc], tmp_path: Path) -> None:
    conf = tmp_path / "ldm.conf"
    conf.write_text("lame_duck_duration: 30s\nlame_duck_grace_period: 500ms\n")
    proc = launch("-c", str(conf))
    with RawClient(HOST, proc.port) as c:
        c.read_info()
        c.send(b'CONNECT {"verbose":false,"protocol":1}\r\n')
        c.ping()
        c.read_line()  # the async INFO after the first PONG
        started = time.monotonic()
        proc.signal(signal.SIGUSR2)
        info = json.loads(c.read_line()[5:-3])
        assert info["ldm"] is True
        # SIGTERM is ignored while in lame duck mode
        proc.wait_log("Entering lame duck mode")
        proc.signal(signal.SIGTERM)
        assert c.expect_eof(timeout=10) == b""
        assert time.monotonic() - started >= 0.4  # the grace period passed first
    assert proc.wait() == 0
    with pytest.raises(OSError):
        socket.create_connection((HOST, proc.port), timeout=1).close()


def test_port_in_use_exits_nonzero(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind((HOST, 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        p = subprocess.run(
            [sys.executable, "-m", "pynatsd", "-a", HOST, "-p", str(port)],
            capture_output=True,
            timeout=20,
        )
    assert p.returncode == 1
    assert b"[FTL]" in p.stderr and b"Error listening on port" in p.stderr


def test_monitor_port_in_use_exits_nonzero(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind((HOST, 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        p = subprocess.run(
            [sys.executable, "-m", "pynatsd", "-a", HOST, "-p", "-1", "-m", str(port)],
            capture_output=True,
            timeout=20,
        )
    assert p.returncode == 1
    assert b"[FTL]" in p.stderr


@pytest.mark.parametrize("which", ["nats-server", "pynatsd"])
def test_sigterm_right_after_ready_exits_cleanly(which: str, tmp_path: Path) -> None:
    """A supervisor's SIGTERM the moment "Server is ready" is logged: a clean stop (exit 0),
    as nats-server does, not death by the signal."""
    from tests.helpers.servers import nats_server_binary

    cmd = [nats_server_binary()] if which == "nats-server" else [sys.executable, "-m", "pynatsd"]
    p = subprocess.Popen([*cmd, "-a", HOST, "-p", "-1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert p.stderr is not None
    try:
        for raw in p.stderr:  # read the log as it is written, no polling
            if b"Server is ready" in raw:
                p.send_signal(signal.SIGTERM)
                break
        else:
            raise AssertionError("no 'Server is ready' line")
        p.stderr.read()
        assert p.wait(timeout=15) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stderr.close()
