"""Differential lifecycle cases: behaviour over time and under signals, checked with the same
assertions against nats-server and pynatsd (each test gets its own server process).

Lame duck mode (SIGUSR2), shutdown on SIGTERM/SIGINT, slow consumers (max_pending) and PING
suppression by client activity.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable

import pytest

from tests.helpers.rawclient import RawClient
from tests.helpers.servers import ServerProcess
from tests.helpers.transcript import info_items
from tests.interop.test_differential_info import CLIENT, HEAD, MAXP, TAIL

Factory = Callable[..., ServerProcess]
LDM = 'lame_duck_grace_period: "1s"\nlame_duck_duration: "30s"\n'


def _client(srv: ServerProcess, connect: bytes) -> RawClient:
    c = RawClient(srv.host, srv.port)
    c.read_line()
    c.send(connect)
    c.ping()
    return c


def test_lame_duck_mode(impl: str, server_factory: Factory) -> None:
    srv = server_factory(impl, LDM)
    p1 = _client(srv, b'CONNECT {"protocol":1,"verbose":false}\r\n')
    p1.read_line()  # the async INFO after the first PONG
    p0 = _client(srv, b'CONNECT {"verbose":false}\r\n')
    assert srv.proc is not None
    srv.proc.send_signal(signal.SIGUSR2)
    # protocol-1 clients that had their first PONG are told at once
    line = p1.read_line()
    assert info_items(line) == HEAD + MAXP + CLIENT + [("ldm", True)] + TAIL
    # protocol-0 clients are not
    assert p0.ping() == b"PONG\r\n"
    # the listener is closed: new connections are refused
    deadline = time.monotonic() + 3
    while True:
        try:
            probe = RawClient(srv.host, srv.port, timeout=1)
        except ConnectionRefusedError:
            break
        probe.close()  # the listener may close a moment after the INFO went out
        assert time.monotonic() < deadline, "listener still accepting in lame duck mode"
        time.sleep(0.05)
    # after the grace period (1s) the clients are closed, without -ERR
    assert p1.expect_eof(timeout=6) == b""
    assert p0.expect_eof(timeout=6) == b""
    assert srv.proc.wait(10) == 0  # no clients left: the server exits by itself


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_shutdown_signal_closes_clients(impl: str, server_factory: Factory, sig: signal.Signals) -> None:
    srv = server_factory(impl)
    c = _client(srv, b'CONNECT {"verbose":false}\r\nSUB foo 1\r\n')
    assert srv.proc is not None
    srv.proc.send_signal(sig)
    assert c.expect_eof(timeout=5) == b""
    assert srv.proc.wait(5) == 0


def test_slow_consumer_closed_without_err(impl: str, server_factory: Factory) -> None:
    srv = server_factory(impl, "max_pending: 65536\nmax_payload: 8192\n")
    sub = _client(srv, b'CONNECT {"verbose":false}\r\nSUB foo 1\r\n')
    pub = _client(srv, b'CONNECT {"verbose":false}\r\n')
    msg = b"PUB foo 8000\r\n" + b"x" * 8000 + b"\r\n"
    # The subscriber reads nothing, so its receive window stays small (no autotuning) and the
    # server's socket send buffer (at most 4 MiB here) fills: 16 MB is well past both.
    for _ in range(16):
        assert pub.send(msg * 125, timeout=20)
    assert pub.ping(timeout=20).endswith(b"PONG\r\n")
    data = sub.expect_eof(timeout=20)
    assert b"-ERR" not in data
    # what did arrive is whole MSGs, in order, possibly cut short at the end
    assert re.fullmatch(rb"(MSG foo 1 8000\r\nx{8000}\r\n)*(M(S(G[^\n]*(\nx*(\r\n?)?)?)?)?)?", data)
    # the publisher is unaffected (a server PING may come first)
    assert pub.ping() in (b"PONG\r\n", b"PING\r\nPONG\r\n")
    assert b"-ERR" not in bytes(pub.received)


def test_activity_suppresses_pings(impl: str, server_factory: Factory) -> None:
    """With ping_interval 1s and no PONG answers, an idle client is stale after ~3s; a client
    that keeps publishing gets at most the first PING and stays connected."""
    srv = server_factory(impl, 'ping_interval: "1s"\n')
    c = _client(srv, b'CONNECT {"verbose":false}\r\n')
    end = time.monotonic() + 4.0
    while time.monotonic() < end:
        c.send(b"PUB x 0\r\n\r\n")
        time.sleep(0.25)  # pacing the activity is the point of this test
    assert c.ping().endswith(b"PONG\r\n")
    assert bytes(c.received).count(b"PING\r\n") <= 1
    assert not c.eof
