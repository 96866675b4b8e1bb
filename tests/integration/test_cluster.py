"""Clusters of pynatsd servers (in-process, loopback, random ports) with nats-py clients.

Three-node meshes formed through gossip, pub/sub with wildcards, queue groups, interest removal,
request/reply and no-responders, headers, a node killed and restarted, duplicate routes, route
authorization, cluster names and lame duck. TLS on routes: test_cluster_tls.py.

Propagation waits use a barrier: a subscription made on the connection that holds the test
subscriptions, published to from every other node until it arrives. Interest and messages on one
route travel in order, so once the barrier went through, everything sent before it did too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from tests.helpers.rawclient import AsyncRawClient
from tests.helpers.servers import free_port

from pynatsd.cluster.routes import RouteURL
from pynatsd.config.options import ClusterOptions, Permissions, ServerOptions, SubjectPermission
from pynatsd.monitor.endpoints import varz
from pynatsd.server import Server

HOST = "127.0.0.1"
_ids = itertools.count()


# -- helpers (also used by tests/interop/test_cluster_mixed.py) ------------------------------------


async def wait_until(cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``cond`` until true (no event exists for state inside other servers)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def connect(port: int, **kw: Any) -> NATS:
    return await nats.connect(f"nats://{HOST}:{port}", allow_reconnect=False, **kw)


async def barrier(owner: NATS, others: list[NATS], timeout: float = 10.0) -> None:
    """Return once a message published on each of ``others`` reaches ``owner``: all interest
    ``owner``'s server sent before, and all messages the others published before, have arrived."""
    subject = f"_barrier.{next(_ids)}"
    got = asyncio.Event()

    async def cb(_m: Msg) -> None:
        got.set()

    sub = await owner.subscribe(subject, cb=cb)
    await owner.flush()
    deadline = time.monotonic() + timeout
    for nc in others:
        got.clear()
        while not got.is_set():
            if time.monotonic() > deadline:
                raise AssertionError("barrier did not go through")
            await nc.publish(subject, b"")
            await nc.flush()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(got.wait(), 0.05)
    await sub.unsubscribe()


class Inbox:
    """Messages received by the subscriptions of a test (by label)."""

    def __init__(self) -> None:
        self.msgs: dict[str, list[Msg]] = {}
        self.changed = asyncio.Event()

    def cb(self, label: str) -> Callable[[Msg], Awaitable[None]]:
        self.msgs.setdefault(label, [])

        async def handler(m: Msg) -> None:
            self.msgs[label].append(m)
            self.changed.set()

        return handler

    def data(self, label: str) -> list[bytes]:
        return [m.data for m in self.msgs.get(label, [])]

    def total(self) -> int:
        return sum(len(v) for v in self.msgs.values())

    async def wait_total(self, n: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.total() < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"expected {n} messages, got {self.total()}: {self.msgs}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)


def node_options(
    server_name: str,
    routes: tuple[str, ...] = (),
    *,
    port: int = -1,
    cluster_port: int = -1,
    **cluster_kw: Any,
) -> ServerOptions:
    cluster_kw.setdefault("name", "C1")
    return ServerOptions(
        host=HOST,
        port=port,
        server_name=server_name,
        cluster=ClusterOptions(host=HOST, port=cluster_port, routes=routes, **cluster_kw),
    )


def route_url(s: Server, user: str = "") -> str:
    assert s.routes is not None
    return f"nats-route://{user + '@' if user else ''}{HOST}:{s.routes.port}"


def nroutes(s: Server) -> int:
    return len(s.routes) if s.routes is not None else 0


class Cluster:
    """In-process pynatsd servers stopped at the end of the test."""

    def __init__(self) -> None:
        self.servers: list[Server] = []
        self.clients: list[NATS] = []

    async def start(self, opts: ServerOptions) -> Server:
        s = Server(opts)
        await s.start()
        self.servers.append(s)
        return s

    async def client(self, s: Server, **kw: Any) -> NATS:
        nc = await connect(s.port, **kw)
        self.clients.append(nc)
        return nc

    async def close(self) -> None:
        for nc in self.clients:
            with contextlib.suppress(Exception):
                await nc.close()
        for s in reversed(self.servers):
            await s.shutdown()


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    c = Cluster()
    try:
        yield c
    finally:
        await c.close()


async def three_nodes(cluster: Cluster, **kw: Any) -> list[Server]:
    """A seed and two nodes that only know the seed: the full mesh comes from gossip."""
    s1 = await cluster.start(node_options("P1", **kw))
    s2 = await cluster.start(node_options("P2", (route_url(s1),), **kw))
    s3 = await cluster.start(node_options("P3", (route_url(s1),), **kw))
    servers = [s1, s2, s3]
    await wait_until(lambda: all(nroutes(s) == 2 for s in servers), what="a full mesh")
    return servers


# -- mesh, discovery, monitoring ---------------------------------------------------------------------


async def test_full_mesh_through_gossip(cluster: Cluster) -> None:
    s1, s2, s3 = await three_nodes(cluster)
    ids = {s.server_id for s in (s1, s2, s3)}
    for s in (s1, s2, s3):
        assert s.routes is not None
        assert set(s.routes.routes) == ids - {s.server_id}
    # s2 and s3 found each other through s1's gossip: one of them dialled, implicitly
    assert s2.routes is not None
    r23 = s2.routes.routes[s3.server_id]
    assert not r23.is_configured
    # /routez entries
    assert s2.routes is not None
    now = r23.start
    entries = {e["remote_name"]: e for e in s2.routes.routez_entries(False, False, now)}
    assert entries["P1"]["did_solicit"] is True and entries["P1"]["is_configured"] is True
    assert entries["P1"]["port"] == s1.routes.port  # type: ignore[union-attr]
    assert entries["P1"]["remote_id"] == s1.server_id
    assert entries["P1"]["compression"] == "not supported"  # between pynatsd nodes
    assert s1.routes is not None
    assert all(not e["did_solicit"] for e in s1.routes.routez_entries(False, False, now))
    # the stay stable: no duplicate left over, no reconnect churn
    await asyncio.sleep(0.3)
    assert [nroutes(s) for s in (s1, s2, s3)] == [2, 2, 2]
    assert all(len(s.routes.conns) == 2 for s in (s1, s2, s3))  # type: ignore[union-attr]


async def test_clients_learn_connect_urls(cluster: Cluster) -> None:
    s1, s2, s3 = await three_nodes(cluster)
    nc = await cluster.client(s1)
    urls = set(nc._server_info.get("connect_urls", []))
    assert urls == {f"{HOST}:{s.port}" for s in (s1, s2, s3)}
    assert nc._server_info.get("cluster") == "C1"


# -- messages ---------------------------------------------------------------------------------------


async def test_pubsub_wildcards_exactly_once(cluster: Cluster) -> None:
    servers = await three_nodes(cluster)
    ncs = [await cluster.client(s) for s in servers]
    inbox = Inbox()
    await ncs[0].subscribe("orders.*", cb=inbox.cb("n0.star"))
    await ncs[1].subscribe("orders.>", cb=inbox.cb("n1.gt"))
    await ncs[1].subscribe("orders.new", cb=inbox.cb("n1.lit"))
    await ncs[2].subscribe("other", cb=inbox.cb("n2.other"))
    for i, nc in enumerate(ncs):
        await barrier(nc, [x for j, x in enumerate(ncs) if j != i])
    for i, nc in enumerate(ncs):
        await nc.publish("orders.new", b"new-%d" % i)
        await nc.publish("orders.eu.de", b"deep-%d" % i)
        await nc.publish("other", b"o-%d" % i)
    for i, nc in enumerate(ncs):
        await barrier(nc, [x for j, x in enumerate(ncs) if j != i])
    assert sorted(inbox.data("n0.star")) == [b"new-0", b"new-1", b"new-2"]
    assert sorted(inbox.data("n1.gt")) == sorted(
        [b"new-0", b"new-1", b"new-2", b"deep-0", b"deep-1", b"deep-2"]
    )
    assert sorted(inbox.data("n1.lit")) == [b"new-0", b"new-1", b"new-2"]
    assert sorted(inbox.data("n2.other")) == [b"o-0", b"o-1", b"o-2"]
    # each node got every message across a route once: no loops, no duplicates
    r = servers[0].routes
    assert r is not None
    assert r.routes[servers[1].server_id].out_msgs >= 2


async def test_headers_reply_and_no_responders_across_nodes(cluster: Cluster) -> None:
    s1, s2, s3 = await three_nodes(cluster)
    svc = await cluster.client(s3)
    req = await cluster.client(s1)

    async def echo(m: Msg) -> None:
        seen = (m.headers or {}).get("X-Trace", "")
        await svc.publish(m.reply, b"echo:" + m.data, headers={"Seen": seen})

    await svc.subscribe("svc.echo", cb=echo)
    await barrier(svc, [req])
    reply = await req.request("svc.echo", b"ping", timeout=5, headers={"X-Trace": "t-1"})
    assert reply.data == b"echo:ping"
    assert reply.headers == {"Seen": "t-1"}
    with pytest.raises(nats.errors.NoRespondersError):
        await req.request("svc.nobody", b"x", timeout=5)


async def test_queue_group_one_member_cluster_wide(cluster: Cluster) -> None:
    servers = await three_nodes(cluster)
    ncs = [await cluster.client(s) for s in servers]
    inbox = Inbox()
    for i, nc in enumerate(ncs):
        await nc.subscribe("work", queue="workers", cb=inbox.cb(f"w{i}"))
        await nc.subscribe("work", queue="workers", cb=inbox.cb(f"w{i}b"))
    await ncs[2].subscribe("work", cb=inbox.cb("observer"))
    for i, nc in enumerate(ncs):
        await barrier(nc, [x for j, x in enumerate(ncs) if j != i])
    n = 300
    for k in range(n):
        await ncs[k % 3].publish("work", b"%d" % k)
    await inbox.wait_total(2 * n)
    for i, nc in enumerate(ncs):
        await barrier(nc, [x for j, x in enumerate(ncs) if j != i])
    members = [label for label in inbox.msgs if label != "observer"]
    got = sorted(int(d) for label in members for d in inbox.data(label))
    assert got == list(range(n))  # every message to exactly one member
    assert sorted(int(d) for d in inbox.data("observer")) == list(range(n))
    # members on every node got a share (uniform over 6 members: ~50 each)
    for i in range(3):
        assert len(inbox.data(f"w{i}")) + len(inbox.data(f"w{i}b")) > 30, {
            k: len(v) for k, v in inbox.msgs.items()
        }


async def test_routed_message_prefers_local_queue_member(cluster: Cluster) -> None:
    s1, s2, s3 = await three_nodes(cluster)
    pub = await cluster.client(s1)
    nc2 = await cluster.client(s2)
    inbox = Inbox()
    await nc2.subscribe("jobs", queue="q", cb=inbox.cb("q2"))
    await barrier(nc2, [pub])
    for k in range(50):
        await pub.publish("jobs", b"%d" % k)
    await inbox.wait_total(50)
    assert len(inbox.data("q2")) == 50  # the only member is remote: all go there
    # queue weight: a second member on s2 is announced as weight 2
    await nc2.subscribe("jobs", queue="q", cb=inbox.cb("q2b"))
    await barrier(nc2, [pub])
    assert s1.routes is not None
    rsub = s1.routes.routes[s2.server_id].subs[(b"jobs", b"q")]
    assert rsub.weight == 2


async def test_interest_removal_stops_forwarding(cluster: Cluster) -> None:
    s1, s2, s3 = await three_nodes(cluster)
    pub = await cluster.client(s1)
    nc2 = await cluster.client(s2)
    inbox = Inbox()
    sub = await nc2.subscribe("temp.*", cb=inbox.cb("t"))
    await barrier(nc2, [pub])
    assert s1.routes is not None and s2.routes is not None
    route12 = s1.routes.routes[s2.server_id]
    assert (b"temp.*", b"") in route12.subs
    await pub.publish("temp.a", b"1")
    await inbox.wait_total(1)
    await sub.unsubscribe()
    await barrier(nc2, [pub])
    assert (b"temp.*", b"") not in route12.subs
    sent = route12.out_msgs
    await pub.publish("temp.a", b"2")
    await pub.flush()
    await barrier(nc2, [pub])
    assert inbox.data("t") == [b"1"]
    # the only message that crossed after the unsubscribe is the barrier's
    assert route12.out_msgs == sent + 1
    # a client disconnect removes its interest from the other nodes too
    nc3 = await cluster.client(s3)
    await nc3.subscribe("gone.soon", cb=inbox.cb("g"))
    await barrier(nc3, [pub])
    assert any(k[0] == b"gone.soon" for k in s1.routes.routes[s3.server_id].subs)
    await nc3.close()
    await wait_until(lambda: all(k[0] != b"gone.soon" for k in s1.routes.routes[s3.server_id].subs))  # type: ignore[union-attr]


# -- failures and restarts ----------------------------------------------------------------------------


async def test_node_killed_and_restarted(cluster: Cluster) -> None:
    s1, s2, s3 = await three_nodes(cluster)
    nc1 = await cluster.client(s1)
    nc3 = await cluster.client(s3)
    inbox = Inbox()
    await nc3.subscribe("k.>", cb=inbox.cb("k3"))
    await barrier(nc3, [nc1])
    # kill s2 (which had dialled s1): s1 and s3 drop its route and interest
    client_port, cluster_port = s2.port, s2.routes.port  # type: ignore[union-attr]
    nc2 = await cluster.client(s2)
    await nc2.subscribe("only.on.two", cb=inbox.cb("x"))
    await barrier(nc2, [nc1, nc3])
    await s2.shutdown()
    cluster.servers.remove(s2)
    await wait_until(lambda: nroutes(s1) == 1 and nroutes(s3) == 1, what="routes to the dead node to go")
    assert s1.routes is not None and not s1.routes.remote.match(b"only.on.two")
    # the survivors still talk
    await nc1.publish("k.a", b"while-down")
    await barrier(nc3, [nc1])
    assert inbox.data("k3") == [b"while-down"]
    # restart on the same ports: it dials s1 again and s3 learns of it by gossip
    s2b = await cluster.start(
        node_options("P2", (route_url(s1),), port=client_port, cluster_port=cluster_port)
    )
    await wait_until(lambda: all(nroutes(s) == 2 for s in (s1, s2b, s3)), what="the mesh to re-form")
    nc2b = await cluster.client(s2b)
    await barrier(nc3, [nc2b])
    await nc2b.publish("k.b", b"after-restart")
    await barrier(nc3, [nc2b])
    assert inbox.data("k3") == [b"while-down", b"after-restart"]


async def test_explicit_route_retries_until_peer_is_back(cluster: Cluster) -> None:
    seed = await cluster.start(node_options("SEED"))
    seed_ports = (seed.port, seed.routes.port)  # type: ignore[union-attr]
    node = await cluster.start(node_options("NODE", (route_url(seed),)))
    await wait_until(lambda: nroutes(node) == 1)
    await seed.shutdown()
    cluster.servers.remove(seed)
    await wait_until(lambda: nroutes(node) == 0)
    await asyncio.sleep(1.5)  # at least one failed reconnect attempt (1 s apart)
    seed2 = await cluster.start(node_options("SEED", port=seed_ports[0], cluster_port=seed_ports[1]))
    await wait_until(
        lambda: nroutes(node) == 1 and nroutes(seed2) == 1, what="the explicit route to come back"
    )


async def test_crossing_routes_resolve_to_one(cluster: Cluster) -> None:
    # both servers are configured with a route to the other: exactly one connection survives
    pa, pb = free_port(), free_port()
    a = await cluster.start(node_options("A", (f"nats-route://{HOST}:{pb}",), cluster_port=pa))
    b = await cluster.start(node_options("B", (f"nats-route://{HOST}:{pa}",), cluster_port=pb))
    await wait_until(lambda: nroutes(a) == 1 and nroutes(b) == 1)
    await asyncio.sleep(2.5)  # past a reconnect period: still one route each, no churn
    assert nroutes(a) == 1 and nroutes(b) == 1
    assert len(a.routes.conns) == 1 and len(b.routes.conns) == 1  # type: ignore[union-attr]
    na, nb = await cluster.client(a), await cluster.client(b)
    inbox = Inbox()
    await nb.subscribe("x", cb=inbox.cb("b"))
    await barrier(nb, [na])
    await na.publish("x", b"once")
    await barrier(nb, [na])
    assert inbox.data("b") == [b"once"]


async def test_same_routes_list_on_every_node(cluster: Cluster) -> None:
    # the usual deployment: every node lists every node, itself included
    ports = [free_port() for _ in range(3)]
    routes = tuple(f"nats-route://{HOST}:{p}" for p in ports)
    servers = [
        await cluster.start(node_options(f"N{i}", routes, cluster_port=p)) for i, p in enumerate(ports)
    ]
    await wait_until(lambda: all(nroutes(s) == 2 for s in servers), what="a full mesh")
    await asyncio.sleep(1.5)
    assert all(nroutes(s) == 2 for s in servers)
    assert all(len(s.routes.conns) == 2 for s in servers)  # type: ignore[union-attr]


# -- authorization and cluster names ------------------------------------------------------------------


async def test_route_authorization(cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pynatsd")
    a = await cluster.start(node_options("A", username="ruser", password="s3cret"))
    good = await cluster.start(
        node_options("GOOD", (route_url(a, "ruser:s3cret"),), username="ruser", password="s3cret")
    )
    await wait_until(lambda: nroutes(a) == 1 and nroutes(good) == 1)
    bad = await cluster.start(node_options("BAD", (route_url(a, "ruser:wrong"),)))
    await wait_until(lambda: "Authorization Violation" in caplog.text, what="the refusal")
    assert nroutes(bad) == 0
    assert nroutes(a) == 1


async def test_duplicate_server_name_refused(cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pynatsd")
    a = await cluster.start(node_options("SAME"))
    b = await cluster.start(node_options("SAME", (route_url(a),)))
    await wait_until(lambda: 'Remote server has a duplicate name: "SAME"' in caplog.text, what="the refusal")
    assert nroutes(a) == 0 and nroutes(b) == 0


async def test_route_import_export_permissions(cluster: Cluster) -> None:
    perms = Permissions(
        publish=SubjectPermission(allow=("in.>",)), subscribe=SubjectPermission(allow=("out.>",))
    )
    a = await cluster.start(node_options("A", permissions=perms))
    b = await cluster.start(node_options("B", (route_url(a),)))
    await wait_until(lambda: nroutes(a) == 1 and nroutes(b) == 1)
    na, nb = await cluster.client(a), await cluster.client(b)
    inbox = Inbox()
    # A imports in.>: it only asks for those; it exports out.>: it only takes interest in those
    await na.subscribe("in.x", cb=inbox.cb("a.in"))
    await na.subscribe("other.x", cb=inbox.cb("a.other"))
    await nb.subscribe("out.y", cb=inbox.cb("b.out"))
    await nb.subscribe("nope.y", cb=inbox.cb("b.nope"))
    # (no barrier here: the permissions filter its interest too)
    await wait_until(lambda: (b"in.x", b"") in b.routes.routes[a.server_id].subs)  # type: ignore[union-attr]
    await wait_until(lambda: (b"out.y", b"") in a.routes.routes[b.server_id].subs)  # type: ignore[union-attr]
    assert set(b.routes.routes[a.server_id].subs) == {(b"in.x", b"")}  # type: ignore[union-attr]
    assert (b"nope.y", b"") not in a.routes.routes[b.server_id].subs  # type: ignore[union-attr]
    # the refused ones first: they would arrive before the allowed ones on the same paths
    await nb.publish("other.x", b"2")
    await nb.publish("in.x", b"1")
    await na.publish("nope.y", b"4")
    await na.publish("out.y", b"3")
    await inbox.wait_total(2)
    assert inbox.data("a.in") == [b"1"] and inbox.data("b.out") == [b"3"]
    assert inbox.total() == 2
    assert a.routes is not None and b.routes is not None
    assert a.routes.routez_permissions() == {"import": {"allow": ["in.>"]}, "export": {"allow": ["out.>"]}}
    entry = b.routes.routez_entries(False, False, b.start_time)[0]
    assert entry["import"] == {"allow": ["in.>"]} and entry["export"] == {"allow": ["out.>"]}


async def test_no_advertise_keeps_cluster_urls_from_clients(cluster: Cluster) -> None:
    a = await cluster.start(node_options("A", no_advertise=True))
    b = await cluster.start(node_options("B", (route_url(a),), no_advertise=True))
    await wait_until(lambda: nroutes(a) == 1 and nroutes(b) == 1)
    nc = await cluster.client(a)
    assert "connect_urls" not in nc._server_info


async def test_cluster_name_mismatch_refused(cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pynatsd")
    a = await cluster.start(node_options("A", name="red"))
    b = await cluster.start(node_options("B", (route_url(a),), name="blue"))
    await wait_until(lambda: 'cluster name "blue" does not match "red"' in caplog.text, what="the refusal")
    assert nroutes(a) == 0 and nroutes(b) == 0


async def test_dynamic_cluster_name_adopts_configured_one(cluster: Cluster) -> None:
    a = await cluster.start(node_options("A", name="fixed"))
    b = await cluster.start(node_options("B", (route_url(a),), name=None))
    await wait_until(lambda: nroutes(a) == 1 and nroutes(b) == 1)
    assert b.routes is not None and b.routes.cluster_name == "fixed"


# -- lame duck ------------------------------------------------------------------------------------------


async def test_lame_duck_withdraws_urls_from_other_nodes_clients(cluster: Cluster) -> None:
    s1 = await cluster.start(node_options("P1"))
    s2 = await cluster.start(
        dataclasses.replace(
            node_options("P2", (route_url(s1),)), lame_duck_duration=3.0, lame_duck_grace_period=0.0
        )
    )
    await wait_until(lambda: nroutes(s1) == 1 and nroutes(s2) == 1)
    await cluster.client(s2)  # lame duck evicts clients before shutting down
    s2_url = f"{HOST}:{s2.port}"
    raw = await AsyncRawClient.open(HOST, s1.port)
    try:
        info = await raw.read_info()
        assert info["connect_urls"] == [f"{HOST}:{s1.port}", s2_url]
        await raw.send(b'CONNECT {"protocol":1,"verbose":false}\r\nPING\r\n')
        await raw.expect(b"PONG\r\n")
        assert (await raw.read_info()).get("connect_info") is True
        task = s2.lame_duck()
        # withdrawn by the lame-duck INFO on the route, before the route goes away
        info = await raw.read_info(timeout=5)
        assert info["connect_urls"] == [f"{HOST}:{s1.port}"]
        assert nroutes(s1) == 1
        await task
        cluster.servers.remove(s2)
        await wait_until(lambda: nroutes(s1) == 0)
    finally:
        await raw.close()


async def test_route_that_stops_reading_is_dropped(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pynatsd")
    s = await cluster.start(node_options("P", write_deadline=0.5))
    assert s.routes is not None
    # a peer that completes the handshake, asks for everything, then never reads again
    reader, writer = await asyncio.open_connection(HOST, s.routes.port)
    await reader.readline()
    peer = '{"server_id":"NSTUCKSTUCKSTUCKSTUCKSTUCKSTUCKSTUCKSTUCKSTUCKSTUCKSTUCKS","server_name":"stuck",'
    peer += '"host":"127.0.0.1","port":1,"cluster":"C1","headers":true}'
    writer.write(b'CONNECT {"name":"stuck","cluster":"C1"}\r\nINFO ' + peer.encode() + b"\r\nRS+ $G big\r\n")
    await writer.drain()
    await wait_until(lambda: nroutes(s) == 1)
    await wait_until(lambda: bool(s.routes.remote.match(b"big").plain))  # type: ignore[union-attr]
    nc = await cluster.client(s)
    chunk = b"x" * (1024 * 1024)
    for _ in range(64):
        await nc.publish("big", chunk)
        if nroutes(s) == 0:
            break
    await nc.flush()
    await wait_until(lambda: nroutes(s) == 0, what="the stuck route to be dropped")
    assert "Slow Consumer Detected: WriteDeadline of 0.5s exceeded" in caplog.text
    writer.close()
    v = varz(s)
    assert v["slow_consumers"] == 1
    assert v["slow_consumer_stats"] == {"clients": 0, "routes": 1, "gateways": 0, "leafs": 0}
    # what went to the route is not client traffic
    assert v["in_client_msgs"] == v["in_msgs"] > 0
    assert v["out_client_msgs"] == 0 < v["out_msgs"]


async def test_route_that_stops_answering_pings_is_stale(cluster: Cluster) -> None:
    s = await cluster.start(node_options("P", ping_interval=0.2, ping_max=2))
    assert s.routes is not None
    reader, writer = await asyncio.open_connection(HOST, s.routes.port)
    try:
        await reader.readline()
        peer = (
            '{"server_id":"NQUIETQUIETQUIETQUIETQUIETQUIETQUIETQUIETQUIETQUIETQUIETQ","server_name":"quiet",'
        )
        peer += '"host":"127.0.0.1","port":1,"cluster":"C1"}'
        writer.write(b'CONNECT {"name":"quiet","cluster":"C1"}\r\nINFO ' + peer.encode() + b"\r\n")
        await writer.drain()
        lines = []
        while not (line := await asyncio.wait_for(reader.readline(), 5)).startswith(b"-ERR"):
            lines.append(line)
        assert line == b"-ERR 'Stale Connection'\r\n"
        assert lines.count(b"PING\r\n") == 2
    finally:
        writer.close()
    await wait_until(lambda: nroutes(s) == 0)
    v = varz(s)
    assert v["stale_connections"] == 1
    assert v["stale_connection_stats"] == {"clients": 0, "routes": 1, "gateways": 0, "leafs": 0}


async def test_implicit_route_gives_up_after_connect_retries(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    from pynatsd.cluster.routes import IMPLICIT, RouteURL

    caplog.set_level(logging.DEBUG, logger="pynatsd")
    s = await cluster.start(node_options("P", connect_retries=2))
    assert s.routes is not None
    dead = RouteURL(HOST, free_port())  # a server we heard of by gossip, gone by now
    s.routes._spawn_dial(dead, IMPLICIT, 0, first=True)
    await wait_until(lambda: not s.routes._dialing, timeout=10, what="the dialer to give up")  # type: ignore[union-attr]
    attempts = [
        r.getMessage() for r in caplog.records if "Error trying to connect to route" in r.getMessage()
    ]
    assert [a.split("(attempt ")[1].split(")")[0] for a in attempts] == ["1", "2", "3"]


@pytest.mark.parametrize(
    ("backoff", "want"), [(True, [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]), (False, [1.0] * 7)]
)
async def test_connect_backoff(cluster: Cluster, backoff: bool, want: list[float]) -> None:
    """An explicit route to a server that is not there is retried forever: 1 s apart, or with
    connect_backoff doubling up to 30 s. (The pauses are recorded, not waited for.)"""
    s = await cluster.start(node_options("P", connect_backoff=backoff))
    assert s.routes is not None and s.opts.cluster is not None
    pauses: list[float] = []
    enough = asyncio.Event()

    async def pause(delay: float) -> None:
        pauses.append(delay)
        if len(pauses) == len(want):
            enough.set()
            await asyncio.Event().wait()  # the dialer stays here until the route is removed
        await asyncio.sleep(0)

    s.routes.sleep = pause  # type: ignore[assignment]
    dead = (f"nats-route://{HOST}:{free_port()}",)
    s.reload(dataclasses.replace(s.opts, cluster=dataclasses.replace(s.opts.cluster, routes=dead)))
    await asyncio.wait_for(enough.wait(), 10)
    assert pauses == want
    s.reload(dataclasses.replace(s.opts, cluster=dataclasses.replace(s.opts.cluster, routes=())))
    assert not s.routes._dialing


class Forwarder:
    """A TCP forwarder on a loopback port of its own: the address a node advertises."""

    def __init__(self) -> None:
        self.target = 0
        self.accepted = 0
        self.server: asyncio.Server | None = None
        self.port = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, HOST, 0)
        self.port = int(self.server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            up_r, up_w = await asyncio.open_connection(HOST, self.target)
        except OSError:
            writer.close()
            return

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            w.close()

        for t in (asyncio.create_task(pipe(reader, up_w)), asyncio.create_task(pipe(up_r, writer))):
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def test_advertised_route_url_is_what_others_dial(cluster: Cluster) -> None:
    """B advertises another address for its route port (a forwarder): the INFO gossip carries
    it and a node that learns of B through the seed connects through it."""
    fwd = Forwarder()
    await fwd.start()
    try:
        a = await cluster.start(node_options("A"))
        c = await cluster.start(node_options("C", (route_url(a),)))
        await wait_until(lambda: nroutes(a) == 1 and nroutes(c) == 1)
        fwd.target = free_port()
        b = await cluster.start(
            node_options("B", (route_url(a),), cluster_port=fwd.target, advertise=f"{HOST}:{fwd.port}")
        )
        assert b.routes is not None and b.routes.port == fwd.target
        assert b.routes.route_info()["ip"] == f"nats-route://{HOST}:{fwd.port}/"
        await wait_until(lambda: all(nroutes(s) == 2 for s in (a, b, c)), what="a full mesh")
        assert fwd.accepted == 1  # C dialed B at its advertised address
        b_at_c = c.routes.routes[b.server_id]  # type: ignore[union-attr]
        assert b_at_c.solicited and b_at_c.url == RouteURL(HOST, fwd.port)
        assert b_at_c.remote_ip_url == f"nats-route://{HOST}:{fwd.port}/"
    finally:
        await cluster.close()
        cluster.servers.clear()
        await fwd.close()


# ---- accounts (accounts helper A) ------------------------------------------------------------------

ACCOUNTS = """
accounts {
  A { users [{user: a, password: p}], exports [{stream: "news.>"}, {service: "svc", response: stream}] }
  B { users [{user: b, password: p}]
      imports [{stream: {account: A, subject: "news.>"}, prefix: fromA}, {service: {account: A, subject: svc}, to: ask}] }
}
authorization { users [{user: g, password: p}] }
"""


async def test_accounts_are_carried_on_routes(cluster: Cluster, tmp_path: Any) -> None:
    """RS+/RMSG carry the account: messages stay in their account across the cluster, and
    stream and service imports work with the exporter's clients on the other server."""
    from pynatsd.config.load import load_options

    conf1 = tmp_path / "one.conf"
    conf1.write_text(f"server_name: one\ncluster {{ name: C1, listen: {HOST}:-1 }}\n" + ACCOUNTS)
    s1 = await cluster.start(dataclasses.replace(load_options(str(conf1)), host=HOST, port=-1))
    assert s1.routes is not None
    conf2 = tmp_path / "two.conf"
    conf2.write_text(
        f"server_name: two\ncluster {{ name: C1, listen: {HOST}:-1, routes: [{route_url(s1)}] }}\n" + ACCOUNTS
    )
    s2 = await cluster.start(dataclasses.replace(load_options(str(conf2)), host=HOST, port=-1))
    await wait_until(lambda: nroutes(s1) == 1 and nroutes(s2) == 1, what="the route")

    async def user(s: Server, name: str) -> NATS:
        return await cluster.client(s, user=name, password="p")

    a1, b1, g1 = await user(s1, "a"), await user(s1, "b"), await user(s1, "g")
    a2, b2, g2 = await user(s2, "a"), await user(s2, "b"), await user(s2, "g")
    inbox = Inbox()
    await a1.subscribe("t.1", cb=inbox.cb("a"))
    await b1.subscribe("t.1", cb=inbox.cb("b"))
    await g1.subscribe("t.1", cb=inbox.cb("g"))
    await b1.subscribe("fromA.>", cb=inbox.cb("import"))

    async def svc(m: Msg) -> None:
        await m.respond(b"1:" + m.data)
        await m.respond(b"2:" + m.data)  # stream responses: both reach the requester

    await a1.subscribe("svc", cb=svc)
    for owner, other in ((a1, a2), (b1, b2), (g1, g2)):
        await barrier(owner, [other])
    # the route carries each account's interest under its name
    assert s2.routes is not None
    r = next(iter(s2.routes.routes.values()))
    assert {(rs.account, rs.subject) for rs in r.subs.values()} >= {
        (b"A", b"t.1"), (b"B", b"t.1"), (b"$G", b"t.1"), (b"A", b"svc"), (b"A", b"news.>"),
    }
    await a2.publish("t.1", b"from-a")
    await b2.publish("t.1", b"from-b")
    await g2.publish("t.1", b"from-g")
    await a2.publish("news.x", b"headline")
    replies: list[bytes] = []
    got2 = asyncio.Event()

    async def on_reply(m: Msg) -> None:
        replies.append(m.data)
        if len(replies) == 2:
            got2.set()

    inbox_sub = await b2.subscribe("my.inbox", cb=on_reply)
    await b2.publish("ask", b"q", reply="my.inbox")
    await asyncio.wait_for(got2.wait(), 5)
    await inbox_sub.unsubscribe()
    for owner, other in ((a1, a2), (b1, b2), (g1, g2)):
        await barrier(owner, [other])
    assert inbox.data("a") == [b"from-a"] and inbox.data("b") == [b"from-b"] and inbox.data("g") == [b"from-g"]
    assert [(m.subject, m.data) for m in inbox.msgs["import"]] == [("fromA.news.x", b"headline")]
    assert sorted(replies) == [b"1:q", b"2:q"]
