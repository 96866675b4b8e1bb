"""Start-up cost: what a fresh ``python -m pynatsd`` imports before "Server is ready". Heavy
packages load only for the configurations that use them: no TLS or bcrypt stack without TLS or
bcrypt passwords, aiohttp only after the ready line (the monitoring port is bound before it, and
a request made at once is answered once aiohttp has loaded), and prometheus_client only when
/metrics is first requested. Read from ``-X importtime`` of a real server process."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("aiohttp", "prometheus_client", "cryptography", "OpenSSL", "bcrypt")
IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*([\w.]+)\s*$")


class Started:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-X", "importtime", "-m", "pynatsd", "-a", "127.0.0.1", "-p", "-1", *args],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.modules: set[str] = set()
        self.log: list[str] = []
        self.rest: list[str] = []   # log lines after the ready line (read by stop())
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            m = IMPORT_LINE.match(line)
            if m:
                self.modules.add(m.group(1))
            else:
                self.log.append(line)
            if "Server is ready" in line:
                return
        raise AssertionError(f"no ready line:\n{''.join(self.log)}")

    def tops(self) -> set[str]:
        return {m.split(".")[0] for m in self.modules}

    def monitor_port(self) -> int:
        for line in self.log:
            m = re.search(r"Starting http monitor on 127\.0\.0\.1:(\d+)", line)
            if m:
                return int(m.group(1))
        raise AssertionError(f"no monitor line in:\n{''.join(self.log)}")

    def stop(self) -> set[str]:
        """Stop the server; the modules imported after the ready line."""
        self.proc.terminate()
        assert self.proc.stderr is not None
        rest = self.proc.stderr.read()
        self.proc.wait(timeout=10)
        self.rest = [line for line in rest.splitlines(keepends=True) if not IMPORT_LINE.match(line)]
        return {m.group(1) for m in map(IMPORT_LINE.match, rest.splitlines()) if m}


@pytest.mark.timeout(60)
def test_plain_server_imports_no_heavy_package() -> None:
    srv = Started()
    try:
        assert not srv.tops() & set(HEAVY), sorted(srv.tops() & set(HEAVY))
        assert "pynatsd.monitor.http" not in srv.modules
    finally:
        srv.stop()


@pytest.mark.timeout(60)
def test_monitoring_imports_prometheus_client_on_the_first_metrics_request() -> None:
    srv = Started("-m", "-1")
    try:
        assert not srv.tops() & set(HEAVY), sorted(srv.tops() & set(HEAVY))
        # The monitor line comes before the client listener's and the ready line, as in nats-server.
        order = [i for i, line in enumerate(srv.log)
                 if re.search(r"Starting http monitor|Listening for client|Server is ready", line)]
        assert [srv.log[i].split("] ", 2)[-1].split(" on ")[0].strip() for i in order] == [
            "Starting http monitor", "Listening for client connections", "Server is ready"]
        # Asked right after the ready line: waits in the backlog until aiohttp is in, then answered.
        url = f"http://127.0.0.1:{srv.monitor_port()}"
        with urllib.request.urlopen(url + "/healthz", timeout=20) as r:
            assert (r.status, r.read()) == (200, b'{"status":"ok"}')
        with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
            body = r.read().decode()
        assert "pynatsd_connections_open 0.0" in body and "process_resident_memory_bytes" in body
    finally:
        later = srv.stop()
    assert {"aiohttp", "prometheus_client"} <= {m.split(".")[0] for m in later}


@pytest.mark.timeout(60)
def test_stop_while_the_monitor_is_still_loading_exits_cleanly() -> None:
    srv = Started("-m", "-1")
    # One client round trip first: the server's signal handlers are in place once its loop
    # runs after the ready line. Then SIGTERM, while aiohttp is most likely still importing.
    port = int(next(m.group(1) for m in (re.search(r"client connections on 127\.0\.0\.1:(\d+)", line)
                                         for line in srv.log) if m))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        assert s.recv(4096).startswith(b"INFO ")
    srv.stop()
    assert srv.proc.returncode == 0
    assert "Server Exiting.." in "".join(srv.log + srv.rest)
