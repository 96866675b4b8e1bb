"""Self-tests of the test harness (tests/helpers) against the implementations selected with
--impl / PYNATSD_TEST_IMPL: process start/stop, readiness, raw client, script runner."""

from __future__ import annotations

import signal
import time

import pytest

from tests.helpers.rawclient import RawClient, parse_info
from tests.helpers.script import eof, ping, run_script, send, sendb, wait
from tests.helpers.servers import ServerProcess, free_port
from tests.helpers.transcript import info_items, normalize_info, normalize_transcript


def test_free_port_is_bindable() -> None:
    import socket

    p = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", p))


def test_server_process_lifecycle(impl: str) -> None:
    srv = ServerProcess(impl, "max_payload: 2048\n")
    with srv:
        assert srv.running
        with RawClient(srv.host, srv.port) as c:
            info = c.read_info()
            assert info["max_payload"] == 2048
            assert info["port"] == srv.port
            assert c.ping() == b"PONG\r\n"
        proc = srv.proc
        assert proc is not None
    assert proc.poll() is not None  # stopped on exit
    assert not srv.dir.exists()


def test_stop_escalates_to_sigkill(impl: str) -> None:
    srv = ServerProcess(impl).start()
    try:
        assert srv.proc is not None
        srv.proc.send_signal(signal.SIGSTOP)  # a stopped process cannot act on SIGTERM
        t0 = time.monotonic()
        rc = srv.stop(timeout=0.5)
        assert rc == -signal.SIGKILL
        assert time.monotonic() - t0 < 3
    finally:
        srv.cleanup()


def test_start_failure_reports_logs(impl: str) -> None:
    srv = ServerProcess(impl, "this is { not valid")
    with pytest.raises(RuntimeError) as ei:
        srv.start()
    assert "exited with" in str(ei.value)
    srv.cleanup()


def test_raw_client_reads_and_eof(server: ServerProcess) -> None:
    with RawClient(server.host, server.port) as c:
        c.read_info()
        c.send(b"SUB foo 1\r\nPUB foo 2\r\nhi\r\n")
        assert c.read_until(b"hi\r\n") == b"+OK\r\n+OK\r\nMSG foo 1 2\r\nhi\r\n"
        c.send(b"BOGUS\r\n")
        assert c.expect_eof() == b"-ERR 'Unknown Protocol Operation'\r\n"
        with pytest.raises(EOFError):
            c.read_until(b"x")


def test_raw_client_timeout(server: ServerProcess) -> None:
    with RawClient(server.host, server.port) as c:
        c.read_info()
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            c.read_until(b"never", timeout=0.2)
        assert 0.15 < time.monotonic() - t0 < 1.5


def test_script_runner_transcripts(server: ServerProcess) -> None:
    out = run_script(
        server.host,
        server.port,
        [
            send(b'CONNECT {"verbose":false}\r\nSUB foo 1\r\n', "b"),
            ping("b"),
            sendb(b"PUB foo 3\r\nabc\r\n"),
            ping(),
            ping("b"),
            send(b"XYZ\r\n"),
            eof(),
        ],
    )
    assert out == {
        "b": "INFO\r\nPONG\r\nMSG foo 1 3\r\nabc\r\nPONG\r\n",
        "a": "INFO\r\n+OK\r\nPONG\r\n-ERR 'Unknown Protocol Operation'\r\n<EOF>",
    }


def test_script_runner_marks_timeout(server: ServerProcess) -> None:
    out = run_script(server.host, server.port, [send(b"PING\r\n"), wait(b"NOPE", timeout=0.2), ping()])
    assert out == {"a": "INFO\r\nPONG\r\n<TIMEOUT in wait b'NOPE'>"}


def test_info_normalization(server: ServerProcess) -> None:
    with RawClient(server.host, server.port) as c:
        line = c.read_line()
        info = parse_info(line)
        norm = normalize_info(info)
        assert norm["server_id"] == "<server_id>" and norm["server_name"] == "<server_id>"
        assert norm["port"] == "<port>" and norm["client_id"] == "<client_id>"
        assert [k for k, _ in info_items(line)] == list(info)
        assert normalize_transcript(line + b"PONG\r\n") == "INFO\r\nPONG\r\n"
