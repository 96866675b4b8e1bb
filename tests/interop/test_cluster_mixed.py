"""Mixed clusters: pynatsd (in-process) and real nats-server processes on loopback.

The nats-server nodes run their default cluster settings (route pooling and compression
"accept"): pynatsd must be taken as a pool-less, uncompressed peer. A nats-server seed, a second
nats-server and a pynatsd node that only know the seed must form a full mesh through gossip,
and nats-py clients on different nodes must see pub/sub with wildcards, queue groups,
request/reply, no-responders and headers work across every pair; interest removal and a killed
and restarted nats-server node are followed; TLS on routes works between the two
implementations and a node with an untrusted certificate never joins.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS

from pynatsd.config.options import TLSOptions
from pynatsd.server import Server
from tests.helpers.servers import ServerProcess
from tests.integration.test_cluster import (
    HOST,
    Inbox,
    barrier,
    connect,
    node_options,
    nroutes,
    route_url,
    wait_until,
)


def nats_conf(name: str, routes: list[str], *, cluster_port: int = -1, tls: str = "") -> str:
    r = ", ".join(routes)
    return (
        f"server_name: {name}\n"
        f"cluster {{\n  name: C1\n  listen: {HOST}:{cluster_port}\n  routes: [{r}]\n{tls}}}\n"
    )


def cluster_port(p: ServerProcess) -> int:
    assert p.ports is not None, "ports file not read"
    return int(p.ports["cluster"][0].rsplit(":", 1)[1])


def nats_route(p: ServerProcess) -> str:
    return f"nats-route://{HOST}:{cluster_port(p)}"


class Mixed:
    """nats-server processes and in-process pynatsd servers, all stopped at the end."""

    def __init__(self) -> None:
        self.procs: list[ServerProcess] = []
        self.servers: list[Server] = []
        self.clients: list[NATS] = []

    async def nats(self, config: str, port: int | None = None) -> ServerProcess:
        p = ServerProcess("nats", config, port=port)
        self.procs.append(p)
        await asyncio.to_thread(p.start)  # our pynatsd nodes keep running meanwhile
        return p

    async def pynatsd(self, name: str, routes: tuple[str, ...], **kw: Any) -> Server:
        s = Server(node_options(name, routes, **kw))
        await s.start()
        self.servers.append(s)
        return s

    async def client(self, port: int) -> NATS:
        nc = await connect(port)
        self.clients.append(nc)
        return nc

    async def close(self) -> None:
        for nc in self.clients:
            with contextlib.suppress(Exception):
                await nc.close()
        for s in self.servers:
            await s.shutdown()
        for p in self.procs:
            await asyncio.to_thread(p.cleanup)


@pytest.fixture
async def mixed() -> AsyncIterator[Mixed]:
    m = Mixed()
    try:
        yield m
    finally:
        await m.close()


async def full_mesh(ncs: list[NATS]) -> None:
    """Every node reaches every other directly (routes are single hop, so this needs all
    three routes, including the one found by gossip)."""
    for i, nc in enumerate(ncs):
        await barrier(nc, [x for j, x in enumerate(ncs) if j != i], timeout=15)


async def start_mixed(
    m: Mixed, tls: TLSOptions | None = None, nats_tls: str = ""
) -> tuple[ServerProcess, ServerProcess, Server]:
    a = await m.nats(nats_conf("A", [], tls=nats_tls))
    p = await m.pynatsd("P", (nats_route(a),), tls=tls)
    b = await m.nats(nats_conf("B", [nats_route(a)], tls=nats_tls))
    await wait_until(lambda: nroutes(p) == 2, timeout=15, what="pynatsd to route to both nats-servers")
    return a, b, p


async def test_mixed_mesh_pubsub_queues_requests(mixed: Mixed) -> None:
    a, b, p = await start_mixed(mixed)
    assert p.routes is not None
    names = sorted(r.remote_name for r in p.routes.routes.values())
    assert names == ["A", "B"]
    na, nb, np_ = await mixed.client(a.port), await mixed.client(b.port), await mixed.client(p.port)
    ncs = [na, nb, np_]
    inbox = Inbox()
    await na.subscribe("evt.*", cb=inbox.cb("a.star"))
    await nb.subscribe("evt.>", cb=inbox.cb("b.gt"))
    await np_.subscribe("evt.x", cb=inbox.cb("p.lit"))
    await np_.subscribe("evt.>", cb=inbox.cb("p.gt"))
    for i, nc in enumerate(ncs):
        await nc.subscribe("jobs", queue="workers", cb=inbox.cb(f"q{i}"))
    await full_mesh(ncs)
    for i, nc in enumerate(ncs):
        await nc.publish("evt.x", b"x%d" % i)
        await nc.publish("evt.y.z", b"yz%d" % i, headers={"Origin": str(i)})
    n = 150
    for k in range(n):
        await ncs[k % 3].publish("jobs", b"%d" % k)
    await full_mesh(ncs)
    assert sorted(inbox.data("a.star")) == [b"x0", b"x1", b"x2"]
    assert sorted(inbox.data("b.gt")) == sorted([b"x0", b"x1", b"x2", b"yz0", b"yz1", b"yz2"])
    assert sorted(inbox.data("p.lit")) == [b"x0", b"x1", b"x2"]
    assert sorted(inbox.data("p.gt")) == sorted([b"x0", b"x1", b"x2", b"yz0", b"yz1", b"yz2"])
    hdrs = sorted(m.headers["Origin"] for m in inbox.msgs["p.gt"] if m.headers)  # type: ignore[index]
    assert hdrs == ["0", "1", "2"]
    got = sorted(int(d) for i in range(3) for d in inbox.data(f"q{i}"))
    assert got == list(range(n))  # each queued message to exactly one member cluster-wide
    assert all(len(inbox.data(f"q{i}")) > 10 for i in range(3)), {k: len(v) for k, v in inbox.msgs.items()}

    # request/reply both ways between the implementations, and no responders
    async def responder(nc: NATS, tag: bytes) -> None:
        async def cb(msg: Any) -> None:
            await nc.publish(msg.reply, tag + msg.data)

        await nc.subscribe(f"svc.{tag.decode()}", cb=cb)

    await responder(na, b"A")
    await responder(np_, b"P")
    await full_mesh(ncs)
    assert (await np_.request("svc.A", b"?", timeout=5)).data == b"A?"
    assert (await nb.request("svc.P", b"?", timeout=5)).data == b"P?"
    assert (await na.request("svc.P", b"!", timeout=5)).data == b"P!"
    with pytest.raises(nats.errors.NoRespondersError):
        await np_.request("svc.none", b"", timeout=5)
    with pytest.raises(nats.errors.NoRespondersError):
        await na.request("svc.none", b"", timeout=5)


async def test_mixed_interest_removal_and_node_restart(mixed: Mixed) -> None:
    a, b, p = await start_mixed(mixed)
    assert p.routes is not None
    nb, np_ = await mixed.client(b.port), await mixed.client(p.port)
    inbox = Inbox()
    sub = await nb.subscribe("gone.*", cb=inbox.cb("b"))
    await barrier(nb, [np_])
    assert p.routes.remote.match(b"gone.x").plain
    await sub.unsubscribe()
    await barrier(nb, [np_])
    assert not p.routes.remote.match(b"gone.x").plain
    # kill nats-server B: pynatsd drops the route and B's interest
    await nb.subscribe("b.only", cb=inbox.cb("b2"))
    await barrier(nb, [np_])
    b_client_port, b_cluster_port = b.port, cluster_port(b)
    await nb.close()
    await asyncio.to_thread(b.stop)
    await wait_until(lambda: nroutes(p) == 1, timeout=10, what="the route to B to go")
    assert not p.routes.remote.match(b"b.only")
    # restart B on the same ports: the mesh re-forms (B dials A; B and P meet through gossip)
    b2 = await mixed.nats(nats_conf("B", [nats_route(a)], cluster_port=b_cluster_port), port=b_client_port)
    await wait_until(lambda: nroutes(p) == 2, timeout=15, what="the route to the restarted B")
    nb2 = await mixed.client(b2.port)
    await nb2.subscribe("back.>", cb=inbox.cb("back"))
    await barrier(nb2, [np_])
    await np_.publish("back.again", b"hello")
    await barrier(nb2, [np_])
    assert inbox.data("back") == [b"hello"]


async def test_routez_and_varz_cluster_shape_match_nats_server(mixed: Mixed) -> None:
    import dataclasses

    import aiohttp

    a = await mixed.nats(nats_conf("A", []) + f"http: {HOST}:-1\n")
    s = Server(dataclasses.replace(node_options("P", (nats_route(a),)), http_port=-1))
    await s.start()
    mixed.servers.append(s)
    await wait_until(lambda: nroutes(s) == 1, timeout=10)
    assert a.ports is not None
    a_http = a.ports["monitoring"][0]

    async def get(url: str) -> dict[str, Any]:
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            assert resp.status == 200
            doc: dict[str, Any] = await resp.json()
            return doc

    ours = await get(f"http://{HOST}:{s.http_port}/routez?subs=1")
    theirs = await get(f"{a_http}/routez?subs=1")
    assert list(ours) == list(theirs)
    assert ours["num_routes"] == 1 and theirs["num_routes"] == 1
    mine, real = ours["routes"][0], theirs["routes"][0]
    # (accounts) we keep the real server's $SYS interest (our $SYS account is carried too);
    # it has none from us
    assert [k for k in mine if k != "subscriptions_list"] == list(real)
    assert mine["remote_name"] == "A" and real["remote_name"] == "P"
    assert mine["did_solicit"] is True and real["did_solicit"] is False
    assert mine["is_configured"] is True and real["is_configured"] is False
    assert mine["compression"] == "off" and real["compression"] == "not supported"
    vo = (await get(f"http://{HOST}:{s.http_port}/varz"))["cluster"]
    vt = (await get(f"{a_http}/varz"))["cluster"]
    assert vo["name"] == vt["name"] == "C1"
    assert vo["cluster_port"] == s.cluster_port
    assert vo["urls"] == [f"{HOST}:{cluster_port(a)}"]


async def test_pynatsd_processes_join_by_flags_and_by_config_file(mixed: Mixed) -> None:
    a = await mixed.nats(nats_conf("A", []))
    by_flags = ServerProcess(
        "pynatsd",
        None,
        ["--cluster", f"nats://{HOST}:-1", "--cluster_name", "C1", "--routes", nats_route(a), "-n", "PF"],
    )
    by_conf = ServerProcess("pynatsd", nats_conf("PC", [nats_route(a)]))
    for p in (by_flags, by_conf):
        mixed.procs.append(p)
        await asyncio.to_thread(p.start)
        assert p.ports is not None and p.ports["cluster"][0].startswith(f"nats://{HOST}:")
    ncs = [await mixed.client(p.port) for p in (a, by_flags, by_conf)]
    inbox = Inbox()
    for i, nc in enumerate(ncs):
        await nc.subscribe("hello", cb=inbox.cb(f"n{i}"))
    await full_mesh(ncs)  # the two pynatsd processes found each other through A
    await ncs[1].publish("hello", b"from flags")
    await ncs[2].publish("hello", b"from conf")
    await full_mesh(ncs)
    for i in range(3):
        assert sorted(inbox.data(f"n{i}")) == [b"from conf", b"from flags"]


async def test_lame_duck_across_implementations(mixed: Mixed) -> None:
    import dataclasses
    import signal

    from tests.helpers.rawclient import AsyncRawClient

    a = await mixed.nats(nats_conf("A", []))
    s = Server(
        dataclasses.replace(
            node_options("P", (nats_route(a),)), lame_duck_duration=5.0, lame_duck_grace_period=1.0
        )
    )
    await s.start()
    mixed.servers.append(s)
    await wait_until(lambda: nroutes(s) == 1, timeout=10)
    a_url, p_url = f"{HOST}:{a.port}", f"{HOST}:{s.port}"

    async def watcher(port: int) -> AsyncRawClient:
        raw = await AsyncRawClient.open(HOST, port)
        info = await raw.read_info()
        assert set(info["connect_urls"]) == {a_url, p_url}
        await raw.send(b'CONNECT {"protocol":1,"verbose":false}\r\nPING\r\n')
        await raw.expect(b"PONG\r\n")
        await raw.read_info()  # the INFO nats-server sends after the first PONG (connect_info)
        return raw

    # the real server goes lame duck: our clients stop being offered its URL
    on_p = await watcher(s.port)
    try:
        assert a.proc is not None
        a.proc.send_signal(signal.SIGUSR2)
        info = await on_p.read_info(timeout=5)
        assert info["connect_urls"] == [p_url]
    finally:
        await on_p.close()
    a.proc.kill()  # (its lame duck lasts at least 30 s)
    await asyncio.to_thread(a.stop)
    await wait_until(lambda: nroutes(s) == 0, timeout=10)

    # and the other way round: pynatsd goes lame duck, nats-server's clients are told
    a2 = await mixed.nats(nats_conf("A2", [route_url(s)]))
    await wait_until(lambda: nroutes(s) == 1, timeout=10)
    a_url = f"{HOST}:{a2.port}"
    on_a = await watcher(a2.port)
    try:
        task = s.lame_duck()
        info = await on_a.read_info(timeout=5)
        assert info["connect_urls"] == [a_url]
        assert info.get("ldm") is None  # the INFO is about the cluster, A2 is not in lame duck
        task.cancel()
    finally:
        await on_a.close()


@pytest.mark.parametrize(
    "settings", ["pool_size: 5\n  compression: s2_best\n", "pool_size: -1\n  compression: off\n"]
)
async def test_nats_server_route_settings_we_negotiate_away(mixed: Mixed, settings: str) -> None:
    conf = nats_conf("A", []).replace("  routes: []\n", "  routes: []\n  " + settings)
    a = await mixed.nats(conf)
    p = await mixed.pynatsd("P", (nats_route(a),))
    await wait_until(lambda: nroutes(p) == 1, timeout=10)
    na, np_ = await mixed.client(a.port), await mixed.client(p.port)
    inbox = Inbox()
    await na.subscribe("s.>", cb=inbox.cb("a"))
    await np_.subscribe("s.>", cb=inbox.cb("p"))
    await full_mesh([na, np_])
    await na.publish("s.1", b"from A" * 100)
    await np_.publish("s.2", b"from P" * 100)
    await full_mesh([na, np_])
    assert sorted(inbox.data("a")) == sorted(inbox.data("p")) == [b"from A" * 100, b"from P" * 100]
    await asyncio.sleep(1.2)  # past the first route PINGs: the route stays up
    assert nroutes(p) == 1


async def test_varz_client_and_route_counters_match_nats_server(mixed: Mixed) -> None:
    """The same traffic on a nats-server node and on a pynatsd node (each with a publisher and a
    subscriber, plus a subscriber on a third node): /varz's client-only figures agree, and ours
    leave out what crossed a route exactly."""
    import dataclasses

    import aiohttp

    http = f"http: {HOST}:-1\n"
    a = await mixed.nats(nats_conf("A", []) + http)
    p = Server(dataclasses.replace(node_options("P", (nats_route(a),)), http_port=-1))
    await p.start()
    mixed.servers.append(p)
    b = await mixed.nats(nats_conf("B", [nats_route(a)]) + http)
    await wait_until(lambda: nroutes(p) == 2, timeout=15, what="pynatsd to route to both nats-servers")
    assert a.ports is not None and b.ports is not None
    urls = {
        "A": a.ports["monitoring"][0] + "/varz",
        "B": b.ports["monitoring"][0] + "/varz",
        "P": f"http://{HOST}:{p.http_port}/varz",
    }
    keys = (
        "in_msgs",
        "in_bytes",
        "out_msgs",
        "out_bytes",
        "in_client_msgs",
        "in_client_bytes",
        "out_client_msgs",
        "out_client_bytes",
    )

    async def snapshot() -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        async with aiohttp.ClientSession() as session:
            for node, url in urls.items():
                async with session.get(url) as resp:
                    out[node] = await resp.json()
        return out

    na, nb, np_ = await mixed.client(a.port), await mixed.client(b.port), await mixed.client(p.port)
    inbox = Inbox()
    for label, nc in (("a", na), ("b", nb), ("p", np_)):
        await nc.subscribe("cnt.>", cb=inbox.cb(label))
    await full_mesh([na, nb, np_])
    before = await snapshot()
    n = 20
    for i in range(n):
        for nc in (na, np_):
            if i % 2:
                await nc.publish(f"cnt.{i}", b"payload-%03d" % i, headers={"K": "v" * i})
            else:
                await nc.publish(f"cnt.{i}", b"payload-%03d" % i)
    await na.flush()
    await np_.flush()
    await inbox.wait_total(3 * 2 * n)
    after = await snapshot()
    delta = {node: {k: after[node][k] - before[node][k] for k in keys} for node in urls}
    client_keys = [k for k in keys if "client" in k]
    # the pynatsd node and nats-server node A saw the same client traffic
    assert {k: delta["P"][k] for k in client_keys} == {k: delta["A"][k] for k in client_keys}
    assert delta["P"]["in_client_msgs"] == n and delta["P"]["out_client_msgs"] == 2 * n
    assert delta["B"]["in_client_msgs"] == 0
    assert delta["B"]["out_client_msgs"] == 2 * n
    assert delta["B"]["out_client_bytes"] == delta["P"]["out_client_bytes"]
    # our totals add exactly the route share: n in from A, 2n out (to A and to B)
    assert delta["P"]["in_msgs"] - delta["P"]["in_client_msgs"] == n
    assert delta["P"]["out_msgs"] - delta["P"]["out_client_msgs"] == 2 * n
    assert delta["P"]["in_bytes"] - delta["P"]["in_client_bytes"] == delta["P"]["in_client_bytes"]
    assert delta["P"]["out_bytes"] - delta["P"]["out_client_bytes"] == 2 * delta["P"]["in_client_bytes"]
    for node in urls:
        v = after[node]
        assert v["slow_consumer_stats"] == {"clients": 0, "routes": 0, "gateways": 0, "leafs": 0}
        assert v["stale_connection_stats"] == {"clients": 0, "routes": 0, "gateways": 0, "leafs": 0}


async def probe_until(nc: NATS, subject: str, inbox: Inbox, label: str, timeout: float = 10.0) -> None:
    """Publish to ``subject`` until ``label`` got one: interest that travels on another path."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not inbox.data(label):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"nothing arrived on {subject}")
        await nc.publish(subject, b"probe")
        await nc.flush()
        await asyncio.sleep(0.05)


async def test_reload_routes_and_permissions_with_nats_server(mixed: Mixed) -> None:
    """pynatsd adds a route to a nats-server by reload; each side reloads its cluster
    permissions and the other re-sends the interest it may now accept; pynatsd removes the
    route by reload."""
    import dataclasses

    perms = '  permissions { export: { allow: ["foo.>"] } }\n'
    a = await mixed.nats(nats_conf("A", []).replace("  routes: []\n", "  routes: []\n" + perms))
    p = await mixed.pynatsd("P", ())
    assert p.routes is not None and p.opts.cluster is not None
    p.reload(
        dataclasses.replace(p.opts, cluster=dataclasses.replace(p.opts.cluster, routes=(nats_route(a),)))
    )
    await wait_until(lambda: nroutes(p) == 1, timeout=10, what="the reloaded route")
    (route,) = p.routes.routes.values()
    assert route.remote_export == {"allow": ["foo.>"]}
    na, np_ = await mixed.client(a.port), await mixed.client(p.port)
    inbox = Inbox()
    await np_.subscribe("bar.1", cb=inbox.cb("p.bar"))
    await np_.subscribe("foo.1", cb=inbox.cb("p.foo"))
    await np_.flush()
    await probe_until(na, "foo.1", inbox, "p.foo")
    await na.publish("bar.1", b"refused")  # A's export list refused our bar.1 interest
    await na.publish("foo.1", b"after")
    await wait_until(lambda: b"after" in inbox.data("p.foo"))
    assert inbox.data("p.bar") == []

    # nats-server drops its permissions by reload: its INFO makes us re-send bar.1
    assert a.config is not None
    await asyncio.to_thread(a.reload, a.config.replace(perms, ""))
    await wait_until(lambda: route.remote_export is None, timeout=10, what="A's new INFO")
    await probe_until(na, "bar.1", inbox, "p.bar")

    # we narrow our export list: A's baz.1 interest is dropped here; widening it again makes
    # nats-server re-send it
    await na.subscribe("baz.1", cb=inbox.cb("a.baz"))
    await na.flush()
    await wait_until(lambda: (b"baz.1", b"") in route.subs, timeout=10)
    from pynatsd.config.options import Permissions, SubjectPermission

    only_foo = Permissions(subscribe=SubjectPermission(allow=("foo.>",)))
    p.reload(dataclasses.replace(p.opts, cluster=dataclasses.replace(p.opts.cluster, permissions=only_foo)))
    assert (b"baz.1", b"") not in route.subs
    p.reload(dataclasses.replace(p.opts, cluster=dataclasses.replace(p.opts.cluster, permissions=None)))
    await wait_until(lambda: (b"baz.1", b"") in route.subs, timeout=10, what="nats-server to re-send baz.1")
    await probe_until(np_, "baz.1", inbox, "a.baz")

    # the route removed by reload: closed, not re-dialed by either side
    p.reload(dataclasses.replace(p.opts, cluster=dataclasses.replace(p.opts.cluster, routes=())))
    assert nroutes(p) == 0 and not p.routes._dialing
    assert route.closed_reason == "Route Removed"


async def test_nats_server_dials_our_advertised_route_url(mixed: Mixed) -> None:
    """A pynatsd node advertising another address for its route port (a forwarder) joins
    through a nats-server seed; a second nats-server learns of it by gossip and dials the
    advertised address."""
    from tests.helpers.servers import free_port
    from tests.integration.test_cluster import Forwarder

    fwd = Forwarder()
    await fwd.start()
    try:
        a = await mixed.nats(nats_conf("A", []))
        c = await mixed.nats(nats_conf("C", [nats_route(a)]))
        fwd.target = free_port()
        p = await mixed.pynatsd(
            "P", (nats_route(a),), cluster_port=fwd.target, advertise=f"{HOST}:{fwd.port}"
        )
        assert p.routes is not None
        await wait_until(lambda: nroutes(p) == 2, timeout=15, what="C to dial P")
        assert fwd.accepted >= 1
        by_name = {r.remote_name: r for r in p.routes.routes.values()}
        assert by_name["A"].solicited and not by_name["C"].solicited  # C came in, via the forwarder
        na, nc_, np_ = await mixed.client(a.port), await mixed.client(c.port), await mixed.client(p.port)
        await full_mesh([na, nc_, np_])
    finally:
        await mixed.close()
        mixed.servers.clear()
        mixed.procs.clear()
        mixed.clients.clear()
        await fwd.close()


# ---- accounts across a mixed cluster (accounts helper A) -----------------------------------------

ACCOUNTS = """
accounts {
  A { users [{user: a, password: p}], exports [{stream: "news.>"}, {service: "svc"}] }
  B { users [{user: b, password: p}]
      imports [{stream: {account: A, subject: "news.>"}, prefix: fromA}, {service: {account: A, subject: svc}, to: ask}] }
}
authorization { users [{user: g, password: p}] }
"""


async def test_accounts_across_mixed_cluster(mixed: Mixed, tmp_path: Any) -> None:
    """Every account is carried on the route, both ways: messages stay in their account, a
    stream import and a service import work with the exporter's clients on the other server."""
    from pynatsd.config.load import load_options

    real = await mixed.nats(nats_conf("A", []) + ACCOUNTS)
    conf = tmp_path / "p.conf"
    conf.write_text(f"server_name: P\nlisten: {HOST}:-1\n" + nats_conf("P", [nats_route(real)]).split("\n", 1)[1] + ACCOUNTS)
    s = Server(load_options(str(conf)))
    await s.start()
    mixed.servers.append(s)
    await wait_until(lambda: nroutes(s) == 1, timeout=15, what="the route")
    ports = {"nats": real.port, "pynatsd": s.port}

    async def user(where: str, name: str) -> NATS:
        nc = await nats.connect(f"nats://{name}:p@{HOST}:{ports[where]}", allow_reconnect=False)
        mixed.clients.append(nc)
        return nc

    for x, y in (("nats", "pynatsd"), ("pynatsd", "nats")):
        ax, bx, gx = await user(x, "a"), await user(x, "b"), await user(x, "g")
        ay, by, gy = await user(y, "a"), await user(y, "b"), await user(y, "g")
        inbox = Inbox()
        await ax.subscribe("t.1", cb=inbox.cb("a"))
        await bx.subscribe("t.1", cb=inbox.cb("b"))
        await gx.subscribe("t.1", cb=inbox.cb("g"))
        await bx.subscribe("fromA.news.>", cb=inbox.cb("import"))
        await bx.subscribe("news.>", cb=inbox.cb("b.news"))

        async def svc(m: Any) -> None:
            await m.respond(b"pong:" + m.data)

        await ax.subscribe("svc", cb=svc)
        for owner, other in ((ax, ay), (bx, by), (gx, gy)):
            await barrier(owner, [other], timeout=15)  # interest in every account has arrived
        await ay.publish("t.1", b"from-a")
        await by.publish("t.1", b"from-b")
        await gy.publish("t.1", b"from-g")
        await ay.publish("news.1", b"headline")
        reply = await by.request("ask", b"ping", timeout=5)
        assert reply.data == b"pong:ping", (x, y)
        for owner, other in ((ax, ay), (bx, by), (gx, gy)):
            await barrier(owner, [other], timeout=15)  # everything published before has arrived
        assert inbox.data("a") == [b"from-a"], (x, y)
        assert inbox.data("b") == [b"from-b"], (x, y)
        assert inbox.data("g") == [b"from-g"], (x, y)
        assert [(m.subject, m.data) for m in inbox.msgs["import"]] == [("fromA.news.1", b"headline")], (x, y)
        assert inbox.data("b.news") == [], (x, y)


async def test_interest_in_an_account_the_peer_lacks(mixed: Mixed, tmp_path: Any, caplog: Any) -> None:
    """An account only one side has: its interest is logged as unknown and ignored, by
    nats-server and by pynatsd alike."""
    import logging

    from pynatsd.config.load import load_options

    only_real = "accounts { R { users [{user: r, password: p}] } }\n"
    only_ours = "accounts { P { users [{user: q, password: p}] } }\n"
    real = await mixed.nats(nats_conf("A", []) + only_real)
    conf = tmp_path / "p.conf"
    conf.write_text(f"server_name: P\nlisten: {HOST}:-1\n" + nats_conf("P", [nats_route(real)]).split("\n", 1)[1] + only_ours)
    s = Server(load_options(str(conf)))
    await s.start()
    mixed.servers.append(s)
    await wait_until(lambda: nroutes(s) == 1, timeout=15, what="the route")
    caplog.set_level(logging.ERROR, logger="pynatsd")
    r = await nats.connect(f"nats://r:p@{HOST}:{real.port}", allow_reconnect=False)
    q = await nats.connect(f"nats://q:p@{HOST}:{s.port}", allow_reconnect=False)
    mixed.clients += [r, q]
    await r.subscribe("only.real")
    await r.flush()
    await q.subscribe("only.ours")
    await q.flush()
    await wait_until(lambda: 'Unknown account "R" for remote subject "only.real"' in caplog.text, timeout=10,
                     what="pynatsd's log line")
    await wait_until(lambda: 'Unknown account "P" for remote subject "only.ours"' in real.logs(), timeout=10,
                     what="nats-server's log line")
    assert s.routes is not None and b"R" not in s.routes.remotes
