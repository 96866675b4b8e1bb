"""Implicit (discovered) gateways in mixed super-clusters of pynatsd and the real nats-server,
each scenario run with pynatsd in the roles nats-server has in the other run, held to the same
assertions (nats-server is the reference):

- three gateways A, B, C over mutual TLS, where A and C know only B and B knows nobody: B tells
  each dialer of the other (INFO gateway_cmd 1) and dials them itself, A and C dial each other
  with gateway.tls; everyone ends up connected to everyone, messages and request/reply cross the
  implicit links, /gatewayz shows the implicit outbound gateways as ``configured: false`` with the
  same fields as nats-server, /varz lists only the configured remotes (their URL lists merged with
  the URLs the remote's INFO named), the ``Connecting to implicit gateway`` lines; a stopped
  implicit gateway is forgotten after its failed reconnect: a later gateway D hears of nobody but
  A and B;
- a two-server cluster X where only X1 has gateway Y configured: X2 hears of Y over its route
  (X1 tells a route that registers about the gateways it is connected to) and dials it; the
  gateway URLs of both servers travel over the route into X's gateway INFO, so Y1's URL list for
  X (configured with X1's URL) gains X2's; messages and request/reply through X2's implicit link.
"""

from __future__ import annotations

import re

import pytest

from tests.helpers.certs import CertSet, make_cert_set
from tests.helpers.cluster_procs import (
    HOST,
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


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertSet:
    return make_cert_set(tmp_path_factory.mktemp("gateway-discovery"))


def gateways(http: int) -> tuple[dict[str, bool], set[str]]:
    """(outbound gateway -> configured, inbound gateway names) of /gatewayz."""
    gz = mon(http, "/gatewayz")
    return {n: e["configured"] for n, e in gz["outbound_gateways"].items()}, set(gz["inbound_gateways"])


def meshed(http: int, *names: str) -> bool:
    out, inb = gateways(http)
    return set(out) == set(names) and inb == set(names)


def varz_urls(http: int) -> dict[str, set[str]]:
    return {g["name"]: set(g["urls"]) for g in mon(http, "/varz")["gateway"].get("gateways", [])}


def info_lines(p: ServerProcess, text: str) -> list[str]:
    return [line for line in logs(p).splitlines() if text in line]


async def request_reply(procs: Procs, req_at: ServerProcess, resp_at: ServerProcess, subject: str) -> None:
    nr, ns = await procs.client(req_at), await procs.client(resp_at)

    async def answer(msg: object) -> None:
        await ns.publish(msg.reply, b"answer:" + msg.data)  # type: ignore[attr-defined]

    await ns.subscribe(subject, cb=answer)
    await ns.flush()
    probe = await nr.subscribe(f"{subject}.probe")  # interest for the probe to settle on
    await until_delivered(nr, f"{subject}.probe", probe)
    for _ in range(100):  # the responder's interest reaches the other cluster asynchronously
        try:
            m = await nr.request(subject, b"q", timeout=0.3)
            assert m.data == b"answer:q"
            return
        except Exception as e:  # noqa: BLE001 - no responders yet / timeout: ask again
            last = e
    raise AssertionError(f"no reply on {subject}: {last!r}")


ROLES = [("pynatsd", "nats", "pynatsd"), ("nats", "pynatsd", "nats")]


@pytest.mark.parametrize(("a_impl", "b_impl", "c_impl"), ROLES)
async def test_three_gateways_discover_each_other(
    procs: Procs, certs: CertSet, a_impl: str, b_impl: str, c_impl: str
) -> None:
    """A and C know only B, B knows nobody (mutual TLS, gateway.tls only): all three end up with
    outbound and inbound gateways to both others; implicit ones are ``configured: false``.
    Then C stops: A and B try it once more and forget it, so D (knowing only A) is told of B
    only and joins A and B, never trying C."""
    tls = tls_block(certs.server, certs.ca.cert_file)
    pa, pb, pc = free_port(), free_port(), free_port()
    ha, hb, hc = free_port(), free_port(), free_port()
    b = procs.start(b_impl, gw_conf("B", pb, hb, tls, {}))
    a = procs.start(a_impl, gw_conf("A", pa, ha, tls, {"B": f"nats://localhost:{pb}"}))
    c = procs.start(c_impl, gw_conf("C", pc, hc, tls, {"B": f"nats://localhost:{pb}"}))
    await wait_until(
        lambda: meshed(ha, "B", "C") and meshed(hb, "A", "C") and meshed(hc, "A", "B"), "the full mesh", timeout=20
    )
    assert gateways(ha)[0] == {"B": True, "C": False}
    assert gateways(hc)[0] == {"B": True, "A": False}
    assert gateways(hb)[0] == {"A": False, "C": False}

    # /gatewayz: an implicit entry of pynatsd has the fields of nats-server's
    def entry(http: int, name: str) -> dict[str, object]:
        e: dict[str, object] = mon(http, "/gatewayz")["outbound_gateways"][name]
        return e

    ours = entry(hb, "A") if b_impl == "pynatsd" else entry(ha, "C")
    theirs = entry(ha, "C") if b_impl == "pynatsd" else entry(hb, "A")
    assert ours["configured"] is False and theirs["configured"] is False
    assert set(ours) == set(theirs)
    assert set(ours["connection"]) == set(theirs["connection"])  # type: ignore[arg-type]
    assert ours["connection"]["tls_version"] == "1.3"  # type: ignore[index] - over gateway.tls

    # /varz: configured remotes only; B's URLs merged with those B's INFO named
    assert varz_urls(ha) == {"B": {f"localhost:{pb}", f"{HOST}:{pb}"}}
    assert varz_urls(hc) == {"B": {f"localhost:{pb}", f"{HOST}:{pb}"}}
    assert varz_urls(hb) == {}

    # the log lines of the implicit dials, and the registered connections
    for p, other in ((a, "C"), (c, "A"), (b, "A"), (b, "C")):
        assert info_lines(p, f'[INF] Connecting to implicit gateway "{other}" ('), (p.impl, other)
        assert any(re.fullmatch(rf'Outbound gateway connection to "{other}" \(\w+\) registered', t)
                   for t in conn_lines(p, "gid")), (p.impl, other)
    assert not info_lines(a, 'implicit gateway "B"') and not info_lines(c, 'implicit gateway "B"')

    # messages and request/reply across the implicit links A <-> C
    na, nc = await procs.client(a), await procs.client(c)
    sa, sc = await na.subscribe("disc.>"), await nc.subscribe("disc.>")
    assert (await until_delivered(na, "disc.to.c", sc)).data == b"probe"
    assert (await until_delivered(nc, "disc.to.a", sa)).data == b"probe"
    await request_reply(procs, a, c, "svc.c")
    await request_reply(procs, c, a, "svc.a")

    # C goes away: A and B try it again, fail and forget it
    c.stop()
    for p, http in ((a, ha), (b, hb)):
        await wait_until(lambda p=p: bool(info_lines(p, 'Error connecting to implicit gateway "C"')), f"{p.impl} retry")
        await wait_until(lambda http=http: "C" not in gateways(http)[0] and "C" not in gateways(http)[1], "C gone")
    pd, hd = free_port(), free_port()
    d = procs.start(c_impl, gw_conf("D", pd, hd, tls, {"A": f"nats://localhost:{pa}"}))
    await wait_until(lambda: meshed(hd, "A", "B") and meshed(ha, "B", "D") and meshed(hb, "A", "D"), "D joined")
    assert gateways(hd)[0] == {"A": True, "B": False}
    assert not info_lines(d, 'gateway "C"')


CLUSTER_ROLES = [("pynatsd", "nats", "pynatsd"), ("nats", "pynatsd", "nats")]


def x_conf(n: int, port: int, cport: int, http: int, remotes: dict[str, str], routes: tuple[int, ...] = ()) -> str:
    r = ", ".join(f'"nats-route://{HOST}:{p}"' for p in routes)
    return gw_conf("X", port, http, "", remotes).replace("server_name: X1", f"server_name: X{n}") + (
        f'cluster {{ name: X, listen: "{HOST}:{cport}", pool_size: -1, routes: [{r}] }}\n'
    )


@pytest.mark.parametrize(("x1_impl", "x2_impl", "y_impl"), CLUSTER_ROLES)
async def test_cluster_member_learns_gateway_over_routes(
    procs: Procs, x1_impl: str, x2_impl: str, y_impl: str
) -> None:
    """Cluster X = X1 + X2; only X1 has gateway Y configured, Y1 has X configured with X1's URL.
    X2 joins last: X1 tells it about Y over the new route, X2 dials Y1 (an implicit, unconfigured
    outbound); Y1's URL list for X gains X2's gateway URL (travelled over the route into X1's
    gateway INFO). A message published on X2 reaches Y1 on X2's own link, and Y1's requests
    are answered from X2."""
    px1, px2, py = free_port(), free_port(), free_port()
    cx1, cx2 = free_port(), free_port()
    hx1, hx2, hy = free_port(), free_port(), free_port()
    y = procs.start(y_impl, gw_conf("Y", py, hy, "", {"X": f"nats://localhost:{px1}"}))
    procs.start(x1_impl, x_conf(1, px1, cx1, hx1, {"Y": f"nats://localhost:{py}"}))
    await wait_until(lambda: meshed(hx1, "Y") and meshed(hy, "X"), "X1 and Y1", timeout=15)
    x2 = procs.start(x2_impl, x_conf(2, px2, cx2, hx2, {}, routes=(cx1,)))
    await wait_until(lambda: mon(hx2, "/routez")["num_routes"] == 1, "the route")
    await wait_until(lambda: gateways(hx2)[0] == {"Y": False}, "X2's implicit outbound to Y", timeout=15)
    assert gateways(hx1)[0] == {"Y": True}
    await wait_until(lambda: len(mon(hy, "/gatewayz")["inbound_gateways"].get("X", [])) == 2, "Y1's two inbounds")
    # X's gateway INFO names both servers of X (the route carried X2's gateway URL)
    await wait_until(
        lambda: varz_urls(hy).get("X", set()) >= {f"localhost:{px1}", f"{HOST}:{px1}", f"{HOST}:{px2}"},
        "X2's gateway URL at Y1",
    )
    assert info_lines(x2, '[INF] Connecting to implicit gateway "Y" (')
    assert not info_lines(x2, "but gateway is not configured")

    nx2, ny = await procs.client(x2), await procs.client(y)
    sy = await ny.subscribe("from.x2")
    await until_delivered(nx2, "from.x2", sy)
    # it came over X2's own outbound (X1 sent none of it)
    out_x2 = mon(hx2, "/gatewayz")["outbound_gateways"]["Y"]["connection"]
    assert out_x2["out_msgs"] >= 1
    await request_reply(procs, y, x2, "svc.x2")
    await request_reply(procs, x2, y, "svc.y")
