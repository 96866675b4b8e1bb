"""Reload and the route port: the cluster ``tls {}`` block is reloadable (new certificates for
new route handshakes, pinned certificates re-checked against live routes), other cluster
settings are refused by name (not applied at run time by this server)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.helpers.certs import CertSet, make_cert_set
from tests.integration.test_cluster import Cluster, node_options, nroutes, route_url, wait_until
from tests.integration.test_reload import Live, serial_of, server_cert

from pynatsd.config.options import TLSOptions
from pynatsd.errors import ConfigError


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    c = Cluster()
    try:
        yield c
    finally:
        await c.close()


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
    with pytest.raises(ConfigError, match=r"^config reload not supported for cluster routes: old=\[\], new=\[nats-route://127.0.0.1:1\]$"):
        a.reload(dataclasses.replace(a.opts, cluster=dataclasses.replace(c, routes=("nats-route://127.0.0.1:1",))))
    with pytest.raises(ConfigError, match=r"^config reload not supported for cluster host: old=127.0.0.1, new=0.0.0.0$"):
        a.reload(dataclasses.replace(a.opts, cluster=dataclasses.replace(c, host="0.0.0.0")))
    with pytest.raises(ConfigError, match=r"^config reload not supported for Cluster: old=enabled, new=disabled$"):
        a.reload(dataclasses.replace(a.opts, cluster=None))
    # the same cluster settings (a random port, -1, as at start) with a reloadable change: applied
    a.reload(dataclasses.replace(a.opts, cluster=dataclasses.replace(c, port=-1), max_payload=5000))
    assert a.opts.max_payload == 5000
