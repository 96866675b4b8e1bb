"""Differential INFO cases: the server's INFO line (form, keys, key order, normalized values)
and the async INFO a protocol-1 client gets after its first PONG, compared with nats-server.

The expected key lists were recorded from nats-server 2.15.1; volatile values (ids, keys,
versions, ports) are normalized by tests/helpers/transcript.py and checked separately here.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.helpers.rawclient import RawClient, parse_info
from tests.helpers.script import StepLike, as_lines, ping, pong, run_script, send
from tests.helpers.servers import ServerPool
from tests.helpers.transcript import info_items, info_lines

HEAD: list[tuple[str, Any]] = [
    ("server_id", "<server_id>"),
    ("server_name", "<server_id>"),
    ("version", "<version>"),
    ("proto", 1),
    ("git_commit", "<git_commit>"),
    ("go", "<go>"),
    ("host", "127.0.0.1"),
    ("port", "<port>"),
    ("headers", True),
]
CLIENT: list[tuple[str, Any]] = [("client_id", "<client_id>"), ("client_ip", "127.0.0.1")]
TAIL: list[tuple[str, Any]] = [("api_lvl", 5), ("xkey", "<xkey>")]
MAXP = [("max_payload", 1048576)]

INFO_CONFIGS: dict[str, tuple[str | None, list[tuple[str, Any]]]] = {
    "default": (None, HEAD + MAXP + CLIENT + TAIL),
    "max_payload": ("max_payload: 16\n", HEAD + [("max_payload", 16)] + CLIENT + TAIL),
    "server_name_no_headers": (
        'server_name: "my-srv"\nno_header_support: true\n',
        [("server_id", "<server_id>"), ("server_name", "my-srv")]
        + HEAD[2:8]
        + [("headers", False)]
        + MAXP
        + CLIENT
        + TAIL,
    ),
    "user_password": (
        "authorization { user: u, password: p }\n",
        HEAD + [("auth_required", True)] + MAXP + CLIENT + TAIL,
    ),
    "token": ('authorization { token: "t" }\n', HEAD + [("auth_required", True)] + MAXP + CLIENT + TAIL),
    "no_auth_user_hides_auth_required": (
        "authorization { users: [{user: a, password: b}] }\nno_auth_user: a\n",
        HEAD + MAXP + CLIENT + TAIL,
    ),
    "auth_timeout_alone_no_auth_required": ("authorization { timeout: 3 }\n", HEAD + MAXP + CLIENT + TAIL),
}


@pytest.mark.parametrize("name", list(INFO_CONFIGS))
def test_info_keys_order_values(name: str, impl: str, server_pool: ServerPool) -> None:
    config, expected = INFO_CONFIGS[name]
    srv = server_pool.get(impl, config)
    with RawClient(srv.host, srv.port) as c:
        line = c.read_line()
    assert info_items(line) == expected


def test_info_line_form(impl: str, server_pool: ServerPool) -> None:
    srv = server_pool.get(impl)
    with RawClient(srv.host, srv.port) as c:
        line = c.read_line()
    # compact JSON, one space before CRLF
    assert line.startswith(b'INFO {"server_id":"') and line.endswith(b"} \r\n")
    assert b": " not in line and b", " not in line


def test_info_volatile_values(impl: str, server_pool: ServerPool) -> None:
    srv = server_pool.get(impl)
    with RawClient(srv.host, srv.port) as c1:
        i1 = c1.read_info()
        with RawClient(srv.host, srv.port) as c2:  # connected after c1 was accepted
            i2 = c2.read_info()
    assert re.fullmatch(r"N[A-Z2-7]{55}", i1["server_id"])
    assert i1["server_name"] == i1["server_id"] == i2["server_id"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", i1["version"])
    assert isinstance(i1["go"], str) and i1["go"]
    assert i1["port"] == srv.port
    assert isinstance(i1["client_id"], int) and i1["client_id"] >= 1
    assert i2["client_id"] > i1["client_id"]
    assert re.fullmatch(r"X[A-Z2-7]{55}", i1["xkey"])


def test_info_go_json_escaping(impl: str, server_pool: ServerPool) -> None:
    srv = server_pool.get(impl, 'server_name: "a<b>&c"\n')
    with RawClient(srv.host, srv.port) as c:
        line = c.read_line()
    assert b'"server_name":"a\\u003cb\\u003e\\u0026c"' in line
    assert parse_info(line)["server_name"] == "a<b>&c"


CP1 = b'CONNECT {"protocol":1,"verbose":false}\r\n'


def _async_info(impl: str, server_pool: ServerPool, config: str | None, connect: bytes) -> list[bytes]:
    srv = server_pool.get(impl, config)
    with RawClient(srv.host, srv.port) as c:
        c.read_line()
        c.send(connect + b"PING\r\n")
        assert c.read_until(b"PONG\r\n") == b"PONG\r\n"
        second = c.read_line()
        c.ping()
        c.drain()
    return [second]


def test_async_info_after_first_pong(impl: str, server_pool: ServerPool) -> None:
    (line,) = _async_info(impl, server_pool, None, CP1)
    assert (
        info_items(line) == HEAD + MAXP + CLIENT + [("connect_info", True), ("remote_account", "$G")] + TAIL
    )


def test_async_info_with_auth(impl: str, server_pool: ServerPool) -> None:
    (line,) = _async_info(
        impl,
        server_pool,
        "authorization { user: u, password: p }\n",
        b'CONNECT {"protocol":1,"verbose":false,"user":"u","pass":"p"}\r\n',
    )
    assert (
        info_items(line)
        == HEAD
        + [("auth_required", True)]
        + MAXP
        + CLIENT
        + [("connect_info", True), ("remote_account", "$G")]
        + TAIL
    )


def test_async_info_transcripts(impl: str, server_pool: ServerPool) -> None:
    srv = server_pool.get(impl)
    cases: dict[str, tuple[list[StepLike], str]] = {
        # only after the FIRST PONG
        "protocol1": (
            [send(CP1 + b"PING\r\nPING\r\n"), pong(), pong(), ping()],
            "INFO\r\nPONG\r\nINFO\r\nPONG\r\nPONG\r\n",
        ),
        "protocol1_verbose": (
            [send(b'CONNECT {"protocol":1}\r\nPING\r\n'), pong(), ping()],
            "INFO\r\n+OK\r\nPONG\r\nINFO\r\nPONG\r\n",
        ),
        "protocol0": (
            [send(b'CONNECT {"verbose":false}\r\nPING\r\n'), pong(), ping()],
            "INFO\r\nPONG\r\nPONG\r\n",
        ),
        "no_connect": ([send(b"PING\r\n"), pong(), ping()], "INFO\r\nPONG\r\nPONG\r\n"),
        # a PONG before CONNECT does not count as the first one
        "ping_before_connect": (
            [ping(), send(CP1 + b"PING\r\n"), pong(), ping()],
            "INFO\r\nPONG\r\nPONG\r\nINFO\r\nPONG\r\n",
        ),
    }
    got = {k: run_script(srv.host, srv.port, steps)["a"] for k, (steps, _) in cases.items()}
    assert as_lines(got) == as_lines({k: v for k, (_, v) in cases.items()})


def test_async_info_only_one_info_line_each(impl: str, server_pool: ServerPool) -> None:
    srv = server_pool.get(impl)
    with RawClient(srv.host, srv.port) as c:
        c.send(CP1 + b"PING\r\n")
        c.read_until(b"PONG\r\n")
        c.read_line()
        c.ping()
        assert len(info_lines(bytes(c.received))) == 2
