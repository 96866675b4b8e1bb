"""A cluster node that shuts down sends its clients no INFO updates as its routes drop.

nats-server (checked with a 3-node cluster and a raw client, SIGTERM to its node) sends nothing
after the signal but closes; pynatsd sent one shrinking connect_urls INFO per route just before
the EOF. Found running nats.py's suites against pynatsd (docs/dev-notes/nats-py-suite.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from tests.helpers.rawclient import AsyncRawClient
from tests.integration.test_cluster import HOST, Cluster, node_options, nroutes, route_url, wait_until


@pytest.fixture
async def nodes() -> AsyncIterator[Cluster]:
    c = Cluster()
    try:
        yield c
    finally:
        await c.close()


async def test_no_connect_urls_info_while_shutting_down(nodes: Cluster) -> None:
    a = await nodes.start(node_options("A"))
    b = await nodes.start(node_options("B", (route_url(a),)))
    c = await nodes.start(node_options("C", (route_url(a),)))
    await wait_until(lambda: nroutes(a) == 2 and nroutes(b) == 2 and nroutes(c) == 2)
    raw = await AsyncRawClient.open(HOST, a.port)
    try:
        info = await raw.read_info()
        assert len(info["connect_urls"]) == 3
        await raw.send(b'CONNECT {"protocol":1,"verbose":false}\r\nPING\r\n')
        await raw.read_until(b"PONG\r\n")
        await raw.ping()  # anything sent after the CONNECT (its connect_info INFO) is read
        nodes.servers.remove(a)
        await a.shutdown()
        rest = await raw.expect_eof(timeout=5)
        assert b"INFO" not in rest, rest
    finally:
        await raw.close()
