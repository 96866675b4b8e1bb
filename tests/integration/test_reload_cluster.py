"""Reload and the route port: the cluster ``tls {}`` block is reloadable (new certificates for
new route handshakes, pinned certificates re-checked against live routes); the route list
(added routes dialed, removed ones closed and not re-dialed), the cluster permissions (interest
re-sent both ways) and the cluster name are applied; host and port, cluster authorization and
no_advertise are refused by name."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import pytest
from tests.helpers.certs import CertSet, make_cert_set
from tests.helpers.rawclient import AsyncRawClient
from tests.helpers.servers import free_port
from tests.integration import test_cluster
from tests.integration.test_cluster import (
    HOST,
    Cluster,
    Inbox,
    barrier,
    node_options,
    nroutes,
    route_url,
    wait_until,
)
from tests.integration.test_reload import Live, serial_of, server_cert

from pynatsd.config.options import Permissions, ServerOptions, SubjectPermission, TLSOptions
from pynatsd.errors import ConfigError
from pynatsd.server import Server

cluster = test_cluster.cluster  # the same fixture: nodes shut down after the test


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertSet:
    return make_cert_set(tmp_path_factory.mktemp("reload-cluster-certs"))


def route_tls(certs: CertSet, cert_file: str, key_file: str, **kw: object) -> TLSOptions:
    return TLSOptions(cert_file=cert_file, key_file=key_file, ca_file=certs.ca.cert_file, verify=True, **kw)  # type: ignore[arg-type]


async def test_cluster_pins_reload_drops_unpinned_route(
    cluster: Cluster, certs: CertSet, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pynatsd")
    srv, rsa = certs.server, certs.server_rsa
    both = frozenset({srv.spki_sha256, rsa.spki_sha256})
    a = await cluster.start(node_options("A", tls=route_tls(certs, srv.cert_file, srv.key_file, pinned_certs=both)))
    b = await cluster.start(node_options("B", (route_url(a),), tls=route_tls(certs, rsa.cert_file, rsa.key_file)))
    await wait_until(lambda: nroutes(a) == 1 and nroutes(b) == 1, what="the route")
    assert a.opts.cluster is not None and a.opts.cluster.tls is not None
    only_srv = dataclasses.replace(a.opts.cluster.tls, pinned_certs=frozenset({srv.spki_sha256}))
    a.reload(dataclasses.replace(a.opts, cluster=dataclasses.replace(a.opts.cluster, tls=only_srv)))
    assert "Disconnect 1 clients due to pinned certs reload" in caplog.messages
    await wait_until(lambda: nroutes(a) == 0, what="the unpinned route to close")
    # B keeps dialing; A now refuses it at the handshake
    await wait_until(lambda: "certificate not pinned" in caplog.text, what="the refusal")
    assert nroutes(a) == 0


async def test_cluster_cert_rotation_by_reload(cluster: Cluster, certs: CertSet, tmp_path: Path) -> None:
    old, new = server_cert(certs, tmp_path, "old"), server_cert(certs, tmp_path, "new")
    live = Live(tmp_path / "live")
    live.install(old)
    a = await cluster.start(node_options("A", tls=route_tls(certs, str(live.cert), str(live.key))))
    b = await cluster.start(node_options("B", (route_url(a),), tls=route_tls(certs, str(live.cert), str(live.key))))
    await wait_until(lambda: nroutes(a) == 1 and nroutes(b) == 1, what="the route")
    assert a.routes is not None
    assert await serial_of(a.routes.port, certs, info_first=False) == old.cert.serial_number
    live.install(new)
    a.reload(dataclasses.replace(a.opts))
    assert await serial_of(a.routes.port, certs, info_first=False) == new.cert.serial_number
    assert nroutes(a) == 1  # the established route stays


async def test_other_cluster_changes_refused_by_name(cluster: Cluster) -> None:
    a = await cluster.start(node_options("A"))
    c = a.opts.cluster
    assert c is not None
    with pytest.raises(ConfigError, match=r"^config reload not supported for cluster username: old=, new=u$"):
        a.reload(dataclasses.replace(a.opts, cluster=dataclasses.replace(c, username="u", password="p")))
    with pytest.raises(ConfigError, match=r"^config reload not supported for cluster no_advertise: old=false, new=true$"):
        a.reload(dataclasses.replace(a.opts, cluster=dataclasses.replace(c, no_advertise=True)))
    with pytest.raises(ConfigError, match=r"^config reload not supported for cluster port: old=-?\d+, new=1$"):
        a.reload(dataclasses.replace(a.opts, cluster=dataclasses.replace(c, port=1)))
    with pytest.raises(ConfigError, match=r"^config reload not supported for cluster host: old=127.0.0.1, new=0.0.0.0$"):
        a.reload(dataclasses.replace(a.opts, cluster=dataclasses.replace(c, host="0.0.0.0")))
    with pytest.raises(ConfigError, match=r"^config reload not supported for Cluster: old=enabled, new=disabled$"):
        a.reload(dataclasses.replace(a.opts, cluster=None))
    # the same cluster settings (a random port, -1, as at start) with a reloadable change: applied
    a.reload(dataclasses.replace(a.opts, cluster=dataclasses.replace(c, port=-1), max_payload=5000))
    assert a.opts.max_payload == 5000


def with_cluster(s: Server, **kw: Any) -> ServerOptions:
    assert s.opts.cluster is not None
    return dataclasses.replace(s.opts, cluster=dataclasses.replace(s.opts.cluster, **kw))


async def test_reload_adds_and_removes_routes(cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pynatsd")
    a = await cluster.start(node_options("A"))
    b = await cluster.start(node_options("B"))
    assert a.routes is not None and b.routes is not None
    a.reload(with_cluster(a, routes=(route_url(b),)))
    assert "Reloaded: cluster routes" in caplog.messages
    await wait_until(lambda: nroutes(a) == 1 and nroutes(b) == 1, what="the added route")
    (r,) = a.routes.routes.values()
    assert r.solicited and r.is_configured
    na, nb = await cluster.client(a), await cluster.client(b)
    inbox = Inbox()
    await nb.subscribe("x", cb=inbox.cb("b"))
    await barrier(nb, [na])
    await na.publish("x", b"1")
    await inbox.wait_total(1)

    caplog.clear()
    a.reload(with_cluster(a, routes=()))
    want = f"Removed route nats-route://{HOST}:{b.routes.port}"
    assert want in caplog.messages
    assert caplog.messages.index(want) < caplog.messages.index("Reloaded: cluster routes")
    assert any(m.endswith("Router connection closed: Route Removed - Remote: B") for m in caplog.messages)
    assert nroutes(a) == 0 and not a.routes._dialing  # not re-dialed
    await wait_until(lambda: nroutes(b) == 0, what="B to see the route go")
    assert not b.routes._dialing  # B never solicited it
    assert a.routes.remote.count() == 0

    # a configured route that is still being dialed stops being dialed when removed
    dead = f"nats-route://{HOST}:{free_port()}"
    a.reload(with_cluster(a, routes=(dead,)))
    assert a.routes._dialing
    a.reload(with_cluster(a, routes=()))
    assert not a.routes._dialing


async def test_reload_route_list_in_a_mesh_keeps_other_routes(cluster: Cluster) -> None:
    """Removing one configured route leaves the routes to the other nodes alone."""
    s1 = await cluster.start(node_options("P1"))
    s2 = await cluster.start(node_options("P2"))
    s3 = await cluster.start(node_options("P3", (route_url(s1), route_url(s2))))
    await wait_until(lambda: nroutes(s3) == 2 and nroutes(s1) == 2, what="the mesh")  # s1-s2 by gossip
    s3.reload(with_cluster(s3, routes=(route_url(s1),)))
    await wait_until(lambda: nroutes(s2) == 1, what="s2 to lose s3")
    assert nroutes(s3) == 1 and nroutes(s1) == 2
    assert s3.routes is not None and set(s3.routes.routes) == {s1.server_id}


async def test_reload_cluster_permissions_resends_interest(cluster: Cluster) -> None:
    only_foo = Permissions(subscribe=SubjectPermission(allow=("foo.>",)))
    a = await cluster.start(node_options("A", permissions=only_foo))
    b = await cluster.start(node_options("B", (route_url(a),)))
    await wait_until(lambda: nroutes(a) == 1 and nroutes(b) == 1)
    assert a.routes is not None and b.routes is not None
    na, nb = await cluster.client(a), await cluster.client(b)
    inbox = Inbox()
    await nb.subscribe("foo.1", cb=inbox.cb("foo"))
    await nb.subscribe("bar.1", cb=inbox.cb("bar"))
    await na.subscribe("secret.1", cb=inbox.cb("secret"))
    from_b = a.routes.routes[b.server_id]
    await wait_until(lambda: (b"foo.1", b"") in from_b.subs)
    await wait_until(lambda: (b"secret.1", b"") in b.routes.routes[a.server_id].subs)
    assert (b"bar.1", b"") not in from_b.subs  # A's export list refused it

    # A drops its permissions: B sees A's new INFO and sends the interest A refused before
    a.reload(with_cluster(a, permissions=None))
    await wait_until(lambda: (b"bar.1", b"") in from_b.subs, what="B to re-send bar.1")
    assert a.routes.routez_permissions() == {}
    assert b.routes.routes[a.server_id].remote_export is None
    await na.publish("bar.1", b"now")
    await inbox.wait_total(1)
    assert inbox.data("bar") == [b"now"]

    # A now exports bar only and imports nothing under secret: foo interest learnt from B is
    # dropped, A's secret.1 interest is withdrawn from B
    a.reload(
        with_cluster(
            a,
            permissions=Permissions(
                publish=SubjectPermission(deny=("secret.>",)), subscribe=SubjectPermission(allow=("bar.>",))
            ),
        )
    )
    assert (b"foo.1", b"") not in from_b.subs and (b"bar.1", b"") in from_b.subs
    await wait_until(lambda: not b.routes.remote.match(b"secret.1").plain, what="RS- secret.1 at B")
    assert b.routes.routes[a.server_id].remote_import == {"deny": ["secret.>"]}
    await nb.publish("secret.1", b"no")  # not routed: B no longer knows A's interest
    await na.publish("foo.1", b"no")  # not routed: A dropped B's interest
    await na.publish("bar.1", b"yes")
    await inbox.wait_total(2)
    assert inbox.data("bar") == [b"now", b"yes"]

    # and back: A's import allows secret again, so A advertises its secret.1 interest
    a.reload(with_cluster(a, permissions=None))
    await wait_until(lambda: bool(b.routes.remote.match(b"secret.1").plain), what="RS+ secret.1 at B")
    await wait_until(lambda: (b"foo.1", b"") in from_b.subs, what="B to re-send foo.1")
    await nb.publish("secret.1", b"yes")
    await na.publish("foo.1", b"yes")
    await inbox.wait_total(4)
    assert inbox.data("secret") == [b"yes"] and inbox.data("foo") == [b"yes"]
    assert inbox.total() == 4


async def test_reload_cluster_name_and_timing(cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pynatsd")
    a = await cluster.start(node_options("A"))
    b = await cluster.start(node_options("B", (route_url(a),)))
    await wait_until(lambda: nroutes(a) == 1 and nroutes(b) == 1)
    assert a.routes is not None
    a.reload(with_cluster(a, name="C2", ping_interval=5.0, connect_retries=3, connect_backoff=True))
    every = ("Reloaded: authorization users", "Reloaded: accounts")  # logged on every reload
    assert [m for m in caplog.messages if m not in every][-3:-1] == ["Cluster name updated to C2", "Reloaded: cluster"]
    assert a.routes.cluster_name == "C2" and a.routes.ping_interval == 5.0
    assert a.routes.route_info()["cluster"] == "C2"
    raw = await AsyncRawClient.open(HOST, a.port)
    try:
        assert (await raw.read_info())["cluster"] == "C2"
    finally:
        await raw.close()
    assert nroutes(a) == 1  # established routes stay, as with nats-server
