"""Differential config-reload cases (SIGHUP after rewriting the -c file), with the same
assertions against nats-server and pynatsd: what existing and new connections see.

A reload is asynchronous, so each test awaits its visible effect (a new connection's INFO, an
-ERR or EOF on an existing one) with a deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tests.helpers.rawclient import RawClient
from tests.helpers.servers import ServerProcess

Factory = Callable[..., ServerProcess]


def _client(srv: ServerProcess, connect: bytes) -> RawClient:
    c = RawClient(srv.host, srv.port)
    c.read_line()
    c.send(connect)
    assert c.ping().endswith(b"PONG\r\n")
    return c


def _info(srv: ServerProcess) -> dict[str, Any]:
    with RawClient(srv.host, srv.port) as c:
        return c.read_info()


def _await_info(srv: ServerProcess, pred: Callable[[dict[str, Any]], bool], timeout: float = 5.0) -> None:
    """Poll new connections' INFO until ``pred`` holds (no event to await from outside)."""
    deadline = time.monotonic() + timeout
    while not pred(info := _info(srv)):
        assert time.monotonic() < deadline, f"reload not visible in INFO: {info}"
        time.sleep(0.02)


def test_reload_max_payload(impl: str, server_factory: Factory) -> None:
    srv = server_factory(impl, "max_payload: 1024\n")
    c = _client(srv, b'CONNECT {"verbose":false}\r\nSUB foo 1\r\n')
    assert _info(srv)["max_payload"] == 1024
    srv.reload("max_payload: 2048\n")
    _await_info(srv, lambda i: i["max_payload"] == 2048)
    # existing connections get the new limit too
    c.send(b"PUB foo 1500\r\n" + b"y" * 1500 + b"\r\n")
    assert c.ping() == b"MSG foo 1 1500\r\n" + b"y" * 1500 + b"\r\nPONG\r\n"
    c.send(b"PUB foo 2049\r\n")
    assert c.expect_eof() == b"-ERR 'Maximum Payload Violation'\r\n"


def test_reload_token_change(impl: str, server_factory: Factory) -> None:
    srv = server_factory(impl, 'authorization { token: "t1" }\n')
    old = _client(srv, b'CONNECT {"verbose":false,"auth_token":"t1"}\r\n')
    srv.reload('authorization { token: "t2" }\n')
    # re-authenticated with its original CONNECT: fails
    assert old.expect_eof(timeout=5) == b"-ERR 'Authorization Violation'\r\n"
    new = _client(srv, b'CONNECT {"verbose":false,"auth_token":"t2"}\r\n')
    assert not new.eof
    refused = RawClient(srv.host, srv.port)
    refused.read_line()
    refused.send(b'CONNECT {"verbose":false,"auth_token":"t1"}\r\n')
    assert refused.expect_eof() == b"-ERR 'Authorization Violation'\r\n"


def test_reload_auth_removed_clients_stay(impl: str, server_factory: Factory) -> None:
    srv = server_factory(impl, 'authorization { token: "t1" }\n')
    old = _client(srv, b'CONNECT {"verbose":false,"auth_token":"t1"}\r\n')
    assert _info(srv).get("auth_required") is True
    srv.reload("")
    _await_info(srv, lambda i: "auth_required" not in i)
    assert old.ping() == b"PONG\r\n"
    _client(srv, b'CONNECT {"verbose":false}\r\n')


USERS_BEFORE = """
authorization { users: [
  { user: al, password: a, permissions: { subscribe: "foo.>" } }
  { user: bo, password: b }
] }
"""
USERS_AFTER = """
authorization { users: [
  { user: al, password: a, permissions: { subscribe: ["bar"] } }
] }
"""


def test_reload_permissions_and_deleted_user(impl: str, server_factory: Factory) -> None:
    srv = server_factory(impl, USERS_BEFORE)
    al = _client(srv, b'CONNECT {"verbose":false,"user":"al","pass":"a"}\r\nSUB foo.x 1\r\nSUB foo.y q 2\r\n')
    bo = _client(srv, b'CONNECT {"verbose":false,"user":"bo","pass":"b"}\r\n')
    srv.reload(USERS_AFTER)
    # a deleted user is closed without -ERR
    assert bo.expect_eof(timeout=5) == b""
    # subscriptions no longer allowed are removed, each with an -ERR naming its sid; the
    # connection stays open (the order follows nats-server's map iteration: compare as a set)
    errs = al.read_lines(2, timeout=5).splitlines(keepends=True)
    assert sorted(errs) == [
        b'-ERR \'Permissions Violation for Subscription to "foo.x" (sid "1")\'\r\n',
        b'-ERR \'Permissions Violation for Subscription to "foo.y" using queue "q" (sid "2")\'\r\n',
    ]
    al.send(b"PUB foo.x 1\r\nz\r\nPUB foo.y 1\r\nz\r\n")
    assert al.ping() == b"PONG\r\n"  # nothing delivered to the removed subscriptions
    al.send(b"SUB bar 3\r\nPUB bar 1\r\nb\r\n")
    assert al.ping() == b"MSG bar 3 1\r\nb\r\nPONG\r\n"


def test_reload_max_connections_lowered(impl: str, server_factory: Factory) -> None:
    srv = server_factory(impl, "max_connections: 10\n")
    clients = [_client(srv, b'CONNECT {"verbose":false}\r\n') for _ in range(3)]
    marks = {id(c): len(c.received) for c in clients}
    srv.reload("max_connections: 1\n")
    # which clients are trimmed is the server's choice: exactly two, each told why
    deadline = time.monotonic() + 5
    while sum(c.eof for c in clients) < 2:
        assert time.monotonic() < deadline, [bytes(c.received) for c in clients]
        for c in clients:
            if not c.eof:
                c.drain(wait=0.05)
    closed = [c for c in clients if c.eof]
    (survivor,) = [c for c in clients if not c.eof]
    assert [bytes(c.received[marks[id(c)] :]) for c in closed] == [
        b"-ERR 'maximum connections exceeded'\r\n"
    ] * 2
    assert survivor.ping() == b"PONG\r\n"
