"""TLS on routes between pynatsd servers: a three-node mutual-TLS mesh, and a node whose
certificate comes from a CA the cluster does not trust, which never forms a route."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from tests.helpers.certs import CertSet, make_cert_set
from tests.integration import test_cluster
from tests.integration.test_cluster import (
    Cluster,
    Inbox,
    barrier,
    node_options,
    nroutes,
    route_url,
    three_nodes,
    wait_until,
)

from pynatsd.config.options import TLSOptions

cluster = test_cluster.cluster  # the same fixture: nodes shut down after the test


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertSet:
    return make_cert_set(tmp_path_factory.mktemp("cluster-certs"))


def rogue_cert(certs: CertSet, directory: Path) -> tuple[str, str]:
    """A server+client certificate for localhost signed by the untrusted CA."""
    from pynatsd.tls.certs import issue, name, new_key, write_cert, write_key

    key = new_key("ec")
    cert = issue(
        name("localhost", O="rogue"),
        key,
        issuer=(certs.untrusted_ca.cert, certs.untrusted_ca.key),
        dns=("localhost",),
        ips=("127.0.0.1",),
        server=True,
        client=True,
    )
    cert_file, key_file = directory / "rogue-cert.pem", directory / "rogue-key.pem"
    write_cert(cert_file, cert)
    write_key(key_file, key)
    return str(cert_file), str(key_file)


def route_tls(certs: CertSet, cert: tuple[str, str] | None = None, **kw: Any) -> TLSOptions:
    cert_file, key_file = cert or (certs.server.cert_file, certs.server.key_file)
    return TLSOptions(cert_file=cert_file, key_file=key_file, ca_file=certs.ca.cert_file, verify=True, **kw)


async def test_tls_cluster_and_untrusted_peer(
    cluster: Cluster, certs: CertSet, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pynatsd")
    servers = await three_nodes(cluster, tls=route_tls(certs))
    for s in servers:
        for r in s.routes.routes.values():  # type: ignore[union-attr]
            assert r.tls_info is not None and r.tls_info.get("version") == "1.3"
    ncs = [await cluster.client(s) for s in servers]
    inbox = Inbox()
    await ncs[2].subscribe("secure.>", cb=inbox.cb("s"))
    await barrier(ncs[2], ncs[:2])
    await ncs[0].publish("secure.a", b"over tls", headers={"K": "v"})
    await inbox.wait_total(1)
    assert inbox.msgs["s"][0].headers == {"K": "v"}
    # a node whose certificate the cluster does not trust never forms a route, in either direction
    rogue = await cluster.start(
        node_options("ROGUE", (route_url(servers[0]),), tls=route_tls(certs, rogue_cert(certs, tmp_path)))
    )
    await wait_until(lambda: "TLS route handshake error" in caplog.text, what="the refusal to be logged")
    await asyncio.sleep(0.3)
    assert nroutes(rogue) == 0
    assert all(nroutes(s) == 2 for s in servers)
    assert "TLS route handshake error: unknown CA" in caplog.text  # the acceptor's verdict
    # and the dialer's: with TLS 1.3 its handshake completed, then the acceptor's alert came
    dialer = (
        "TLS route closed by the remote before its INFO: our certificate was refused by the peer (unknown CA)"
    )
    await wait_until(lambda: dialer in caplog.text, what="the dialer to name the reason")


async def test_route_verify_and_map(
    cluster: Cluster, certs: CertSet, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pynatsd")
    # the route user is the certificate's identity: the server certificate's DNS SAN
    a = await cluster.start(
        node_options("A", username="localhost", tls=route_tls(certs, verify_and_map=True))
    )
    b = await cluster.start(node_options("B", (route_url(a),), tls=route_tls(certs)))
    await wait_until(lambda: nroutes(a) == 1 and nroutes(b) == 1, what="the mapped route")
    # a trusted certificate naming someone else is not the route user
    alice = (certs.alice.cert_file, certs.alice.key_file)
    c = await cluster.start(node_options("C", (route_url(a),), tls=route_tls(certs, alice)))
    await wait_until(lambda: "Authorization Violation" in caplog.text, what="the refusal")
    assert nroutes(c) == 0
    # (A and B may have dialed each other at once: both kept opposite connections, dropped the
    # other one and reconnect a second later, as nats-server does; so wait for the settled mesh)
    assert a.routes is not None
    await wait_until(lambda: set(a.routes.routes) == {b.server_id}, what="A routed to B only")  # type: ignore[union-attr]
    assert nroutes(c) == 0


async def test_route_pinned_certs(cluster: Cluster, certs: CertSet, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pynatsd")
    pins = frozenset({certs.server.spki_sha256})
    a = await cluster.start(node_options("A", tls=route_tls(certs, pinned_certs=pins)))
    b = await cluster.start(node_options("B", (route_url(a),), tls=route_tls(certs)))
    await wait_until(lambda: nroutes(a) == 1 and nroutes(b) == 1, what="the pinned route")
    # signed by the trusted CA, but its key is not pinned
    other = (certs.server_rsa.cert_file, certs.server_rsa.key_file)
    c = await cluster.start(node_options("C", (route_url(a),), tls=route_tls(certs, other)))
    await wait_until(lambda: "certificate not pinned" in caplog.text, what="the refusal")
    await asyncio.sleep(0.2)
    assert nroutes(c) == 0 and nroutes(a) == 1


async def test_route_port_always_requires_a_client_certificate(cluster: Cluster, certs: CertSet) -> None:
    import ssl

    # no "verify" in the block: routes are mutual TLS all the same (as in nats-server)
    tls = TLSOptions(
        cert_file=certs.server.cert_file, key_file=certs.server.key_file, ca_file=certs.ca.cert_file
    )
    a = await cluster.start(node_options("A", tls=tls))
    b = await cluster.start(node_options("B", (route_url(a),), tls=tls))
    await wait_until(lambda: nroutes(a) == 1 and nroutes(b) == 1, what="the route")
    ctx = ssl.create_default_context(cafile=certs.ca.cert_file)  # trusts A, offers no certificate
    assert a.routes is not None
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", a.routes.port, ssl=ctx, server_hostname="localhost"
    )
    try:
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
            line = await asyncio.wait_for(reader.readline(), 5)
            if not line:
                raise ConnectionError("closed without INFO")
    finally:
        writer.close()


async def test_route_verify_cert_and_check_known_urls(
    cluster: Cluster, certs: CertSet, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.helpers.servers import free_port

    caplog.set_level(logging.INFO, logger="pynatsd")
    pb = free_port()
    # A knows a route at "localhost": a peer whose certificate names localhost is authorized
    a = await cluster.start(
        node_options(
            "A",
            (f"nats-route://localhost:{pb}",),
            tls=route_tls(certs, verify_cert_and_check_known_urls=True),
        )
    )
    b = await cluster.start(node_options("B", (route_url(a),), cluster_port=pb, tls=route_tls(certs)))
    await wait_until(lambda: nroutes(a) == 1 and nroutes(b) == 1, what="the route")
    alice = (certs.alice.cert_file, certs.alice.key_file)  # DNS name alice.example.com: not a known route
    c = await cluster.start(node_options("C", (route_url(a),), tls=route_tls(certs, alice)))
    await wait_until(lambda: "Authorization Violation" in caplog.text, what="the refusal")
    assert nroutes(c) == 0
    # (A and B may have dialed each other at once: both kept opposite connections, dropped the
    # other one and reconnect a second later, as nats-server does; so wait for the settled mesh)
    assert a.routes is not None
    await wait_until(lambda: set(a.routes.routes) == {b.server_id}, what="A routed to B only")  # type: ignore[union-attr]
    assert nroutes(c) == 0
