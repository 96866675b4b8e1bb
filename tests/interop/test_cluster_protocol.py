"""The route port, byte for byte against nats-server: the same bytes sent to the cluster port of
pynatsd and of the real nats-server must get the same answer (a raw socket plays the peer)."""

from __future__ import annotations

import json

import pytest

from tests.helpers.rawclient import RawClient
from tests.helpers.servers import ServerPool, ServerProcess

CONF = "server_name: {name}\ncluster { name: C1, listen: 127.0.0.1:-1 }\n"
PEER_ID = "NPEERPEERPEERPEERPEERPEERPEERPEERPEERPEERPEERPEERPEERPEE"


def route_port(p: ServerProcess) -> int:
    assert p.ports is not None
    return int(p.ports["cluster"][0].rsplit(":", 1)[1])


@pytest.fixture
def route_server(impl: str, server_pool: ServerPool) -> ServerProcess:
    return server_pool.get(impl, CONF.replace("{name}", f"S-{impl}"))


def connect_line(**fields: object) -> bytes:
    doc = {"echo": True, "verbose": False, "pedantic": False, "tls_required": False, "headers": True}
    doc.update({"name": PEER_ID, "cluster": "C1"})
    doc.update(fields)
    return b"CONNECT " + json.dumps(doc, separators=(",", ":")).encode() + b"\r\n"


CASES: dict[str, bytes] = {
    "first op not CONNECT": b"PING\r\n",
    "client on the route port": b'CONNECT {"lang":"go","verbose":false}\r\n',
    "cluster name mismatch": connect_line(cluster="X"),
    "gateway on the route port": connect_line(gateway="G"),
    "CONNECT not JSON": b'CONNECT {"cluster":"C1"\r\n',
    "unknown op after CONNECT": connect_line() + b"BOGUS\r\n",
    "RMSG with a bad size": connect_line() + b"RMSG $G foo x1\r\n",
    "RS+ with a queue but no weight": connect_line() + b"RS+ $G foo q\r\n",
    "message payload too long": connect_line() + b"RMSG $G foo 2\r\nabc\r\n",
}


@pytest.mark.parametrize("case", list(CASES))
def test_route_port_refusals(route_server: ServerProcess, case: str) -> None:
    with RawClient("127.0.0.1", route_port(route_server), timeout=5) as c:
        c.read_info()
        c.send(CASES[case])
        got = c.expect_eof(timeout=5)
    expected = {
        "first op not CONNECT": b"-ERR 'Authorization Violation'\r\n",
        "client on the route port": b"-ERR 'attempted to connect to route port'\r\n",
        "cluster name mismatch": b'-ERR \'Rejecting connection, cluster name "X" does not match "C1"\'\r\n',
        "gateway on the route port": b"-ERR 'Rejecting connection from gateway \"G\" on the Route port'\r\n",
        "unknown op after CONNECT": b"-ERR 'Unknown Protocol Operation'\r\n",
        "message payload too long": b"-ERR 'Unknown Protocol Operation'\r\n",
    }.get(case, b"")
    assert got == expected, f"{route_server.impl}: {got!r}"


def test_route_to_itself_is_closed(route_server: ServerProcess) -> None:
    with RawClient("127.0.0.1", route_port(route_server), timeout=5) as c:
        info = c.read_info()
        own = {"server_id": info["server_id"], "server_name": "other", "host": "127.0.0.1", "port": 1}
        c.send(connect_line() + b"INFO " + json.dumps(own).encode() + b"\r\n")
        assert c.expect_eof(timeout=5) == b""


def test_handshake_then_interest_and_ping(route_server: ServerProcess) -> None:
    with RawClient("127.0.0.1", route_port(route_server), timeout=5) as c:
        c.read_info()
        peer = {"server_id": PEER_ID, "server_name": "peer", "host": "127.0.0.1", "port": 1, "cluster": "C1"}
        c.send(connect_line() + b"INFO " + json.dumps(peer).encode() + b"\r\n")
        c.send(b"RS+ $G foo\r\nRS+ $G bar q 2\r\nRS- $G foo\r\nPING\r\n")
        c.read_until(b"PONG\r\n")
        assert not c.eof


def test_route_info_keys(server_pool: ServerPool) -> None:
    infos = {}
    for impl in ("nats", "pynatsd"):
        p = server_pool.get(impl, CONF.replace("{name}", f"S-{impl}"))
        with RawClient("127.0.0.1", route_port(p), timeout=5) as c:
            infos[impl] = c.read_info()
    ours, theirs = infos["pynatsd"], infos["nats"]
    # what we leave out on purpose: pooling, compression, leafnode-origin support
    left_out = {"route_pool_size", "compression", "lnoc", "lnocu", "ln"}
    assert [k for k in theirs if k not in left_out] == list(ours)
    assert ours["cluster"] == theirs["cluster"] == "C1"
    assert ours["proto"] == 2 and ours["headers"] is True
    assert ours["port"] == route_port(server_pool.get("pynatsd", CONF.replace("{name}", "S-pynatsd")))
