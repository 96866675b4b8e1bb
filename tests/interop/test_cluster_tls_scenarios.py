"""TLS and certificate identities on the server-to-server side, as an operator meets them, in
mixed pairs of processes: pynatsd (``python -m pynatsd``) and the real nats-server, each scenario
run with either implementation in either role and held to the same assertions, so nats-server is
the reference for what a user sees (routes formed or refused, messages, log lines, monitoring).

- routes: ``verify_and_map`` on the accepting side maps the dialer's certificate to the cluster
  authorization user; a certificate that maps to nobody is refused with nats-server's log lines
  on both ends; ``pinned_certs``; an expired route certificate refused by the dialer, accepted
  with ``insecure``; a reload that rotates the certificate keeps the route and serves the new
  one, a reload with a missing certificate file is refused and the old one kept;
- leaf nodes: a spoke's certificate mapped (``verify_and_map`` on the hub's leafnodes tls) to a
  user of the hub's authorization with publish/subscribe permissions: what crosses and what
  not, the loop-detection subscriptions exempt from the permissions; an unmapped and an
  untrusted certificate refused;
- gateways over mutual TLS: messages and request/reply both ways, a gateway with an untrusted
  certificate refused while the others keep working;
- /varz cluster, gateway and leaf TLS fields and the ``insecure`` warnings, compared.

(The existing mixed tests already cover the plain mutual-TLS route mesh with an untrusted node,
the route TLS timeout, leaf TLS/mTLS pairs, leaf handshake_first and gateway TLS rotation.)
"""

from __future__ import annotations

import hashlib
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest
from nats.aio.msg import Msg

from pynatsd.tls.certs import name
from tests.helpers.certs import CertSet, Issued, make_cert_set
from tests.helpers.cluster_procs import (
    BOTH,
    HOST,
    OTHER,
    Procs,
    conn_lines,
    gw_conf,
    logs,
    mon,
    procs_fixture,  # noqa: F401 - the procs fixture
    tls_block,
    until_delivered,
    wait_until,
)
from tests.helpers.servers import ServerProcess, free_port
from tests.integration.test_cluster_tls import rogue_cert


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertSet:
    return make_cert_set(tmp_path_factory.mktemp("cluster-tls-scenarios"))


@pytest.fixture(scope="module")
def route_cert(certs: CertSet) -> Issued:
    """A route certificate whose subject (not a SAN) is the cluster identity."""
    return certs.issue_extra(
        "route-x", name("route-x", O="pynatsd tests"), dns=("localhost",), ips=("127.0.0.1",), server=True
    )


# -- helpers ---------------------------------------------------------------------------------------


def warnings(p: ServerProcess) -> list[str]:
    return [line.split("[WRN] ", 1)[1] for line in logs(p).splitlines() if "[WRN] " in line]


def cluster_conf(name_: str, cport: int, http: int, tls: str, routes: tuple[str, ...] = (), extra: str = "") -> str:
    r = ", ".join(f'"{u}"' for u in routes)
    return (
        f"server_name: {name_}\nhttp: {http}\n"
        f'cluster {{ name: C1, listen: "{HOST}:{cport}", pool_size: -1, routes: [{r}]\n {tls}\n {extra} }}\n'
    )


def num_routes(http: int) -> int:
    return int(mon(http, "/routez")["num_routes"])


def served_cert_sha(port: int, client: Issued, ca: str) -> str:
    """SHA-256 of the certificate a TLS-first (route/gateway) port serves, dialled with a
    client certificate (those ports always require one)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    ctx.load_cert_chain(client.cert_file, client.key_file)
    with socket.create_connection((HOST, port), timeout=5) as raw, ctx.wrap_socket(
        raw, server_hostname="localhost"
    ) as s:
        der = s.getpeercert(binary_form=True)
        assert der is not None
        return hashlib.sha256(der).hexdigest()


# -- routes: verify_and_map -------------------------------------------------------------------------


@pytest.mark.parametrize("acceptor", BOTH)
async def test_route_certificate_mapped_to_cluster_user(
    procs: Procs, certs: CertSet, route_cert: Issued, acceptor: str
) -> None:
    """The accepting side maps the dialer's certificate subject to ``cluster.authorization.user``:
    the route forms and carries messages; a node whose (valid) certificate maps to another
    identity is refused with an Authorization Violation, logged as nats-server logs it on both
    ends, and the cluster keeps working."""
    dialer = OTHER[acceptor]
    ca_file = certs.ca.cert_file
    ca_port, ha, hb, hc = free_port(), free_port(), free_port(), free_port()
    a = procs.start(
        acceptor,
        cluster_conf(
            "A", ca_port, ha, tls_block(route_cert, ca_file, ", verify_and_map: true"),
            extra='authorization { user: "CN=route-x,O=pynatsd tests" }',
        ),
    )
    route = f"nats-route://localhost:{ca_port}"
    b = procs.start(dialer, cluster_conf("B", free_port(), hb, tls_block(route_cert, ca_file), (route,)))
    await wait_until(lambda: num_routes(ha) == 1 and num_routes(hb) == 1, "the mapped route")
    na, nb = await procs.client(a), await procs.client(b)
    sub = await na.subscribe("mapped.>")
    assert (await until_delivered(nb, "mapped.1", sub)).subject == "mapped.1"

    # server.pem is as valid, but its subject is CN=localhost,O=pynatsd tests: not the user
    c = procs.start(dialer, cluster_conf("C", free_port(), hc, tls_block(certs.server, ca_file), (route,)))
    await wait_until(lambda: "Router connection closed: Authentication Failure" in logs(a), "the refusal")
    await wait_until(lambda: "Route Error 'Authorization Violation'" in logs(c), "the dialer's log")
    mine = [x for x in conn_lines(a, "rid") if "Authentication" in x or "authentication" in x]
    assert mine[:2] == ["authentication error", "Router connection closed: Authentication Failure"], mine
    await wait_until(lambda: "Router connection closed: Parse Error - Remote: A" in conn_lines(c, "rid"), "the close")
    assert num_routes(hc) == 0
    assert num_routes(ha) == 1  # B's route is untouched
    sub2 = await nb.subscribe("still.>")
    assert (await until_delivered(na, "still.1", sub2)).subject == "still.1"


# -- routes: pinned certificates, expired certificate and insecure --------------------------------------


@pytest.mark.parametrize("acceptor", BOTH)
async def test_route_pinned_certs(procs: Procs, certs: CertSet, acceptor: str) -> None:
    """``cluster.tls.pinned_certs`` on the accepting side: a dialer whose key is pinned joins, one
    with another (CA-signed) key is refused after the handshake: ``certificate not pinned``."""
    dialer = OTHER[acceptor]
    ca_file = certs.ca.cert_file
    ca_port, ha, hb, hc = free_port(), free_port(), free_port(), free_port()
    pins = f', pinned_certs: ["{certs.server.spki_sha256}"]'
    a = procs.start(acceptor, cluster_conf("A", ca_port, ha, tls_block(certs.server, ca_file, pins)))
    route = f"nats-route://localhost:{ca_port}"
    procs.start(dialer, cluster_conf("B", free_port(), hb, tls_block(certs.server_rsa, ca_file), (route,)))
    await wait_until(lambda: "TLS route handshake error: certificate not pinned" in conn_lines(a, "rid"), "the pin refusal")
    assert "Router connection closed: TLS Handshake Failure" in conn_lines(a, "rid")
    assert num_routes(ha) == 0 and num_routes(hb) == 0
    procs.start(dialer, cluster_conf("C", free_port(), hc, tls_block(certs.server, ca_file), (route,)))
    await wait_until(lambda: num_routes(ha) == 1 and num_routes(hc) == 1, "the pinned route")
    assert [r["remote_name"] for r in mon(ha, "/routez")["routes"]] == ["C"]


@pytest.mark.parametrize("dialer", BOTH)
async def test_route_expired_certificate_and_insecure(procs: Procs, certs: CertSet, dialer: str) -> None:
    """A node serving an expired route certificate is refused by a verifying dialer (the chain
    check fails: "expired"); a dialer with ``insecure: true`` skips the check of the server it
    dials, warns as nats-server warns at start, and joins."""
    ca_file = certs.ca.cert_file
    ca_port, ha, hb, hc = free_port(), free_port(), free_port(), free_port()
    procs.start(OTHER[dialer], cluster_conf("A", ca_port, ha, tls_block(certs.expired_server, ca_file)))
    route = f"nats-route://localhost:{ca_port}"
    b = procs.start(dialer, cluster_conf("B", free_port(), hb, tls_block(certs.server, ca_file), (route,)))
    await wait_until(
        lambda: any(x.startswith("TLS route handshake error: ") and "expired" in x for x in conn_lines(b, "rid")),
        "the dialer's refusal",
    )
    assert "Router connection closed: TLS Handshake Failure" in conn_lines(b, "rid")
    assert num_routes(ha) == 0
    c = procs.start(
        dialer, cluster_conf("C", free_port(), hc, tls_block(certs.server, ca_file, ", insecure: true"), (route,))
    )
    await wait_until(lambda: num_routes(hc) == 1, "the insecure dialer's route")
    assert [r["remote_name"] for r in mon(ha, "/routez")["routes"]] == ["C"]
    insecure = "TLS certificate chain and hostname of solicited routes will not be verified. DO NOT USE IN PRODUCTION!"
    assert warnings(c).count(insecure) == 1, warnings(c)
    assert insecure not in warnings(b)


# -- routes: reload -----------------------------------------------------------------------------------


@pytest.mark.parametrize("reloaded", BOTH)
async def test_route_certificate_reload(procs: Procs, certs: CertSet, reloaded: str, tmp_path: Path) -> None:
    """SIGHUP with a new cluster certificate: the existing route stays (same connection), new
    handshakes get the new certificate, /varz follows; a reload naming a missing certificate
    file is refused (``Failed to reload server configuration``) and the old certificate kept."""
    ca_file = certs.ca.cert_file
    ca_port, ha, hb = free_port(), free_port(), free_port()
    conf = lambda c: cluster_conf("A", ca_port, ha, tls_block(c, ca_file))  # noqa: E731
    a = procs.start(reloaded, conf(certs.server))
    b = procs.start(
        OTHER[reloaded],
        cluster_conf("B", free_port(), hb, tls_block(certs.server, ca_file), (f"nats-route://localhost:{ca_port}",)),
    )
    await wait_until(lambda: num_routes(ha) == 1 and num_routes(hb) == 1, "the route")
    rid = mon(ha, "/routez")["routes"][0]["rid"]
    assert served_cert_sha(ca_port, certs.alice, ca_file) == certs.server.cert_sha256

    n = len(logs(a))
    a.reload(conf(certs.server_rsa))
    await wait_until(lambda: "Reloaded server configuration" in logs(a)[n:], "the reload")
    assert served_cert_sha(ca_port, certs.alice, ca_file) == certs.server_rsa.cert_sha256
    assert [r["rid"] for r in mon(ha, "/routez")["routes"]] == [rid]
    want = certs.server_rsa.cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert mon(ha, "/varz")["cluster"]["tls_cert_not_after"] == want

    n = len(logs(a))
    missing = tmp_path / "gone-cert.pem"
    a.reload(conf(Issued(certs.server.cert, certs.server.key, str(missing), certs.server.key_file)))
    await wait_until(lambda: "Failed to reload server configuration" in logs(a)[n:], "the refusal")
    assert str(missing) in logs(a)[n:]
    assert served_cert_sha(ca_port, certs.alice, ca_file) == certs.server_rsa.cert_sha256
    assert [r["rid"] for r in mon(ha, "/routez")["routes"]] == [rid]
    na, nb = await procs.client(a), await procs.client(b)
    sub = await nb.subscribe("after.reload")
    await until_delivered(na, "after.reload", sub)


# -- leaf nodes: certificate-mapped user with permissions --------------------------------------------


def hub_conf(lport: int, http: int, certs: CertSet) -> str:
    return (
        f"server_name: HUB\nhttp: {http}\n"
        "authorization { users [\n"
        ' { user: "alice@example.com", permissions: { publish: "ok.>", subscribe: "ok.>" } }\n'
        " { user: c, password: c }\n] }\n"
        f'leafnodes {{ listen: "{HOST}:{lport}"\n'
        f' {tls_block(certs.server, certs.ca.cert_file, ", verify_and_map: true")} }}\n'
    )


def spoke_conf(lport: int, http: int, certs: CertSet, cert: Issued, name_: str = "SPOKE") -> str:
    return (
        f"server_name: {name_}\nhttp: {http}\n"
        f'leafnodes {{ remotes [ {{ url: "nats-leaf://localhost:{lport}", tls {{ ca_file: "{certs.ca.cert_file}", '
        f'cert_file: "{cert.cert_file}", key_file: "{cert.key_file}" }} }} ] }}\n'
    )


@pytest.mark.parametrize("hub_impl", BOTH)
async def test_leaf_certificate_mapped_user_with_permissions(
    procs: Procs, certs: CertSet, hub_impl: str, tmp_path: Path
) -> None:
    """The hub's leafnodes tls has ``verify_and_map`` and no leafnode users: the spoke's
    certificate (email SAN alice@example.com) maps to that user of the hub's authorization,
    whose permissions bound what crosses: publish = what the spoke may send the hub, subscribe =
    what it may receive. The loop-detection subscriptions pass whatever the permissions. A
    certificate that maps to nobody and one from an unknown CA are refused."""
    spoke_impl = OTHER[hub_impl]
    lport, hh, sh = free_port(), free_port(), free_port()
    hub = procs.start(hub_impl, hub_conf(lport, hh, certs))
    spoke = procs.start(spoke_impl, spoke_conf(lport, sh, certs, certs.alice))
    await wait_until(lambda: mon(hh, "/leafz")["leafnodes"] == 1 and mon(sh, "/leafz")["leafnodes"] == 1, "the leaf")
    ch = await procs.client(hub, user="c", password="c")
    cs = await procs.client(spoke)
    at_hub, no_at_hub = await ch.subscribe("ok.>"), await ch.subscribe("no.>")
    at_spoke, no_at_spoke = await cs.subscribe("ok.>"), await cs.subscribe("no.>")
    await ch.flush()
    await cs.flush()
    # spoke -> hub: ok.* crosses, no.* stays behind (then the same the other way)
    await until_delivered(cs, "ok.a", at_hub)
    await cs.publish("no.a", b"denied")
    await cs.publish("ok.b", b"allowed")
    await cs.flush()
    while (m := await at_hub.next_msg(timeout=5)).subject != "ok.b":
        assert m.subject == "ok.a"
    await until_delivered(ch, "ok.c", at_spoke)
    await ch.publish("no.c", b"denied")
    await ch.publish("ok.d", b"allowed")
    await ch.flush()
    while (m := await at_spoke.next_msg(timeout=5)).subject != "ok.d":
        assert m.subject.startswith("ok.")
    await ch.flush()
    await cs.flush()
    while no_at_hub.pending_msgs:  # only the hub client's own publish (delivered locally)
        assert (await no_at_hub.next_msg(timeout=1)).subject == "no.c"
    while no_at_spoke.pending_msgs:  # only the spoke client's own publish
        assert (await no_at_spoke.next_msg(timeout=1)).subject == "no.a"
    # each side holds the other's $LDS subscription, permissions notwithstanding
    for http in (hh, sh):
        (leaf,) = mon(http, "/leafz?subs=1")["leafs"]
        assert any(s.startswith("$LDS.") for s in leaf["subscriptions_list"]), (http, leaf)
    assert mon(hh, "/varz")["leaf"]["tls_required"] is True

    # bob's certificate is trusted, but no user is named after it
    bob = procs.start(spoke_impl, spoke_conf(lport, free_port(), certs, certs.bob, "BOB"))
    await wait_until(lambda: "Leafnode connection closed: Authentication Failure" in conn_lines(hub, "lid"), "bob refused")
    assert "authentication error" in conn_lines(hub, "lid")
    await wait_until(lambda: "Leafnode Error 'Authorization Violation'" in conn_lines(bob, "lid"), "bob's log")
    await wait_until(
        lambda: "Leafnode connection closed: Client Closed - Remote: HUB" in conn_lines(bob, "lid"), "bob's close"
    )
    # mallory's certificate comes from a CA the hub does not trust
    procs.start(spoke_impl, spoke_conf(lport, free_port(), certs, certs.untrusted_client, "MALLORY"))
    await wait_until(
        lambda: any(x.startswith("TLS leafnode handshake error: ") for x in conn_lines(hub, "lid")), "mallory refused"
    )
    assert "Leafnode connection closed: TLS Handshake Failure" in conn_lines(hub, "lid")
    assert mon(hh, "/leafz")["leafnodes"] == 1  # the first spoke only
    await until_delivered(cs, "ok.e", at_hub)


# -- gateways -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("a_impl", BOTH)
async def test_gateway_tls_messages_and_untrusted_gateway(
    procs: Procs, certs: CertSet, a_impl: str, tmp_path: Path
) -> None:
    """Clusters A and B joined by gateways over mutual TLS: messages and request/reply both ways.
    A third gateway C whose certificate comes from an unknown CA is refused by A (a TLS gateway
    handshake error, no gateway C in /gatewayz) and A-B keep working."""
    ca_file = certs.ca.cert_file
    pa, pb, ha, hb = free_port(), free_port(), free_port(), free_port()
    a = procs.start(a_impl, gw_conf("A", pa, ha, tls_block(certs.server, ca_file), {"B": f"nats://localhost:{pb}"}))
    b = procs.start(OTHER[a_impl], gw_conf("B", pb, hb, tls_block(certs.server, ca_file), {"A": f"nats://localhost:{pa}"}))

    def joined() -> bool:
        ga, gb = mon(ha, "/gatewayz"), mon(hb, "/gatewayz")
        return all("B" in g["outbound_gateways"] or "A" in g["outbound_gateways"] for g in (ga, gb)) and all(
            g["inbound_gateways"] for g in (ga, gb)
        )

    await wait_until(joined, "the gateways", timeout=15)
    conn = mon(ha, "/gatewayz")["outbound_gateways"]["B"]["connection"]
    assert conn["tls_version"] == "1.3" and conn["tls_cipher_suite"].startswith("TLS_")
    na, nb = await procs.client(a), await procs.client(b)
    sa, sb = await na.subscribe("gw.>"), await nb.subscribe("gw.>")
    await until_delivered(na, "gw.to.b", sb)
    await until_delivered(nb, "gw.to.a", sa)

    async def respond(m: Msg) -> None:
        await m.respond(b"answer " + m.data)

    for responder, requester, tag in ((nb, na, "b"), (na, nb, "a")):
        await responder.subscribe(f"svc.{tag}", cb=respond)
        probe = await responder.subscribe(f"svc.{tag}.probe")
        await until_delivered(requester, f"svc.{tag}.probe", probe)
        r = await requester.request(f"svc.{tag}", tag.encode(), timeout=5)
        assert r.data == b"answer " + tag.encode()

    rogue_dir = tmp_path / "rogue"
    rogue_dir.mkdir()
    rc, rk = rogue_cert(certs, rogue_dir)
    rogue = Issued(certs.server.cert, certs.server.key, rc, rk)  # (only the file names are used)
    procs.start(OTHER[a_impl], gw_conf("C", free_port(), free_port(), tls_block(rogue, ca_file), {"A": f"nats://localhost:{pa}"}))
    await wait_until(
        lambda: any(x.startswith("TLS gateway handshake error: ") for x in conn_lines(a, "gid")), "the refusal"
    )
    assert "Gateway connection closed: TLS Handshake Failure" in conn_lines(a, "gid")
    gz = mon(ha, "/gatewayz")
    assert set(gz["outbound_gateways"]) == {"B"} and set(gz["inbound_gateways"]) == {"B"}
    await until_delivered(nb, "gw.after", sa)
    # closing B: A logs nats-server's line, naming the remote server
    b.stop()
    await wait_until(
        lambda: "Gateway connection closed: Client Closed - Remote: B1" in conn_lines(a, "gid"), "the close line"
    )


# -- monitoring and start-up lines ----------------------------------------------------------------------


async def test_varz_tls_sections_and_insecure_warnings_match_nats_server(procs: Procs, certs: CertSet) -> None:
    """/varz ``cluster``, ``gateway`` and ``leaf``: tls_required, tls_verify, tls_timeout,
    auth_timeout and tls_cert_not_after as nats-server reports them; the ``insecure`` warnings
    for solicited routes and gateways in nats-server's words."""
    ca = certs.ca.cert_file
    keys = ("tls_required", "tls_verify", "tls_timeout", "auth_timeout", "tls_cert_not_after")
    seen: dict[str, tuple[Any, ...]] = {}
    for impl in BOTH:
        http = free_port()
        conf = (
            "accounts { SYS { users [ {user: sys, password: sys} ] } }\nsystem_account: SYS\n"
            f"server_name: S\nhttp: {http}\n"
            f'cluster {{ name: G, listen: "{HOST}:-1", pool_size: -1\n'
            f" {tls_block(certs.server, ca, ', verify: true, insecure: true')} }}\n"
            f'gateway {{ name: G, listen: "{HOST}:-1"\n {tls_block(certs.server_rsa, ca, ", timeout: 3")}\n'
            f' gateways: [ {{ name: X, url: "nats://{HOST}:1", tls {{ ca_file: "{ca}", insecure: true }} }} ] }}\n'
            f'leafnodes {{ listen: "{HOST}:-1"\n {tls_block(certs.server, ca, ", timeout: 1.5")} }}\n'
        )
        p = procs.start(impl, conf)
        v = mon(http, "/varz")
        sections = tuple({k: v[s].get(k) for k in keys} for s in ("cluster", "gateway", "leaf"))
        insecure = tuple(sorted(w for w in warnings(p) if "DO NOT USE IN PRODUCTION" in w))
        seen[impl] = (*sections, insecure)
        p.stop()
    assert seen["pynatsd"] == seen["nats"]
    cluster, gateway, leaf, insecure = seen["nats"]
    assert cluster["tls_cert_not_after"] == certs.server.cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert gateway["tls_timeout"] == 3 and leaf["tls_timeout"] == 1.5
    assert len(insecure) == 2
