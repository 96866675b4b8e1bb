"""Certificate identities on gateways, in mixed pairs of processes: pynatsd and the real
nats-server, each scenario run with either implementation in the role under test and held to the
same assertions (nats-server is the reference for what an operator sees).

- ``gateway.tls.verify_and_map``: the accepting side maps the dialer's certificate to the
  gateway authorization user; gateways form both ways and carry messages; a trusted certificate
  that maps to nobody is refused with nats-server's lines on both ends (and its -D lines);
- ``verify_cert_and_check_known_urls``: a DNS SAN naming the host of any configured gateway URL
  (a wildcard for the left-most label) admits the dialer, a certificate naming none is refused;
- ``gateway.tls.pinned_certs``: checked on accepted gateways and on the ones we dial;
- reload: a pin set that no longer holds the peer's key drops the gateways both ways
  (``Disconnect 2 clients due to pinned certs reload``) and new handshakes fail until the key
  is pinned again; a change of ``verify_and_map`` is refused, as nats-server refuses it.
"""

from __future__ import annotations

import re

import pytest

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

GW_USER = "CN=gw-x,O=pynatsd tests"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertSet:
    return make_cert_set(tmp_path_factory.mktemp("gateway-tls-identity"))


@pytest.fixture(scope="module")
def gw_cert(certs: CertSet) -> Issued:
    """A gateway certificate whose subject (not a SAN) is the gateway identity."""
    return certs.issue_extra("gw-x", name("gw-x", O="pynatsd tests"), dns=("localhost",), ips=(HOST,), server=True)


@pytest.fixture(scope="module")
def wildcard_cert(certs: CertSet) -> Issued:
    """A client certificate naming only ``*.example.invalid`` (no localhost)."""
    return certs.issue_extra("gw-wild", name("gw-wild", O="pynatsd tests"), dns=("*.example.invalid",))


def start(procs: Procs, impl: str, conf: str, debug: bool = False) -> ServerProcess:
    return procs.start(impl, conf, ["-D"] if debug else [])


def url(port: int) -> str:
    return f"nats://localhost:{port}"


def gateways(http: int) -> tuple[set[str], set[str]]:
    gz = mon(http, "/gatewayz")
    return set(gz["outbound_gateways"]), set(gz["inbound_gateways"])


def joined(http: int, *names: str) -> bool:
    out, inb = gateways(http)
    return out >= set(names) and inb >= set(names)


def gid_texts(p: ServerProcess, port: int | None = None) -> list[str]:
    """Texts of the gateway connection lines, optionally only those of the peer ``HOST:port``."""
    if port is None:
        return conn_lines(p, "gid")
    out = []
    for line in logs(p).splitlines():
        m = re.search(rf" {re.escape(HOST)}:{port} - gid:\d+ - (.*)$", line)
        if m:
            out.append(m.group(1).rstrip())
    return out


async def messages_both_ways(procs: Procs, a: ServerProcess, b: ServerProcess, tag: str) -> None:
    na, nb = await procs.client(a), await procs.client(b)
    sa, sb = await na.subscribe(f"{tag}.>"), await nb.subscribe(f"{tag}.>")
    assert (await until_delivered(na, f"{tag}.to.b", sb)).subject == f"{tag}.to.b"
    assert (await until_delivered(nb, f"{tag}.to.a", sa)).subject == f"{tag}.to.a"


# -- verify_and_map ---------------------------------------------------------------------------------


@pytest.mark.parametrize("acceptor", BOTH)
async def test_gateway_certificate_mapped_to_gateway_user(
    procs: Procs, certs: CertSet, gw_cert: Issued, acceptor: str
) -> None:
    """A's gateway tls has ``verify_and_map`` and its authorization user is the subject of B's
    certificate: B's inbound gateway is accepted and messages cross both ways. C's certificate
    (CN=localhost) is as trusted but maps to nobody: A refuses it with ``authentication error``
    (its -D lines saying no identity matched), C reads the ``Authorization Violation``."""
    peer = OTHER[acceptor]
    ca = certs.ca.cert_file
    pa, pb, ha, hb, hc = free_port(), free_port(), free_port(), free_port(), free_port()
    a = start(
        procs, acceptor,
        gw_conf("A", pa, ha, tls_block(gw_cert, ca, ", verify_and_map: true"), {"B": url(pb)},
                extra=f'authorization {{ user: "{GW_USER}" }}'),
        debug=True,
    )
    b = start(procs, peer, gw_conf("B", pb, hb, tls_block(gw_cert, ca), {"A": url(pa)}))
    await wait_until(lambda: joined(ha, "B") and joined(hb, "A"), "the mapped gateways", timeout=15)
    assert 'Using certificate subject for auth [""]' in gid_texts(a)
    await messages_both_ways(procs, a, b, "mapped")

    c = start(procs, peer, gw_conf("C", free_port(), hc, tls_block(certs.server, ca), {"A": url(pa)}))
    await wait_until(lambda: "Gateway Error 'Authorization Violation'" in gid_texts(c), "C's refusal")
    await wait_until(lambda: "Gateway connection closed: Parse Error - Remote: A1" in gid_texts(c), "C's close")
    refused = gid_texts(a)
    at = refused.index("authentication error")
    assert refused[at - 2:at + 2] == [
        'DistinguishedNameMatch could not be used for auth ["CN=localhost,O=pynatsd tests"]',
        'User in cert ["CN=localhost,O=pynatsd tests"], not found',
        "authentication error",
        "Gateway connection closed: Authentication Failure",
    ], refused
    assert gateways(ha) == ({"B"}, {"B"})
    assert gateways(hc)[1] == set()  # A never dials C (not in its list)
    await messages_both_ways(procs, a, b, "still")


# -- verify_cert_and_check_known_urls --------------------------------------------------------------------


@pytest.mark.parametrize("acceptor", BOTH)
async def test_gateway_known_urls(
    procs: Procs, certs: CertSet, wildcard_cert: Issued, acceptor: str
) -> None:
    """With ``verify_cert_and_check_known_urls`` A admits a dialer whose certificate has a DNS
    SAN naming the host of one of its gateway URLs: B's ``localhost``, and C's
    ``*.example.invalid`` for the (never reachable) URL of gateway Z, any configured gateway
    counting. D's certificate (alice.example.com, an email and its subject) names none:
    refused, though it is trusted and its user password-free."""
    peer = OTHER[acceptor]
    ca = certs.ca.cert_file
    pa, pb, ha, hb, hc, hd = (free_port() for _ in range(6))
    remotes = {"B": url(pb), "Z": "nats://z.example.invalid:1"}
    a = start(procs, acceptor, gw_conf("A", pa, ha, tls_block(certs.server, ca, ", verify_cert_and_check_known_urls: true"), remotes))
    b = start(procs, peer, gw_conf("B", pb, hb, tls_block(certs.server, ca), {"A": url(pa)}))
    await wait_until(lambda: joined(ha, "B") and joined(hb, "A"), "the gateways", timeout=15)
    await messages_both_ways(procs, a, b, "known")

    start(procs, peer, gw_conf("C", free_port(), hc, tls_block(wildcard_cert, ca), {"A": url(pa)}))
    await wait_until(lambda: "A" in gateways(hc)[0] and "C" in gateways(ha)[1], "C's gateway (wildcard SAN)")

    d = start(procs, peer, gw_conf("D", free_port(), hd, tls_block(certs.alice, ca), {"A": url(pa)}))
    await wait_until(lambda: "Gateway Error 'Authorization Violation'" in gid_texts(d), "D's refusal")
    # the refused connection's own lines (A's implicit dial of C may log in between)
    gids = re.findall(r" - gid:(\d+) - authentication error\s*$", logs(a), re.M)
    assert gids
    texts = [t.rstrip() for t in re.findall(rf" - gid:{gids[0]} - (.*)$", logs(a), re.M)]
    at = texts.index("authentication error")
    assert texts[at + 1] == "Gateway connection closed: Authentication Failure", texts
    assert gateways(ha)[1] == {"B", "C"}


# -- pinned_certs -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pinner", BOTH)
async def test_gateway_pinned_certs_both_directions(procs: Procs, certs: CertSet, pinner: str) -> None:
    """A pins the key of server.pem: B (serving and presenting that certificate) joins both
    ways. D presents server-rsa.pem (same CA, same names, another key): A refuses D's inbound
    gateway and its own outbound one to D, both ``certificate not pinned`` after the
    handshake (no -ERR), and D never registers A's outbound (D meets B, which A told of D)."""
    peer = OTHER[pinner]
    ca = certs.ca.cert_file
    pa, pb, pd, ha, hb, hd = (free_port() for _ in range(6))
    pins = f', pinned_certs: ["{certs.server.spki_sha256}"]'
    a = start(procs, pinner, gw_conf("A", pa, ha, tls_block(certs.server, ca, pins), {"B": url(pb), "D": url(pd)}),
              debug=True)
    # D first: B, told of D by A, then finds D listening (an implicit gateway is tried once)
    start(procs, peer, gw_conf("D", pd, hd, tls_block(certs.server_rsa, ca), {"A": url(pa)}))
    b = start(procs, peer, gw_conf("B", pb, hb, tls_block(certs.server, ca), {"A": url(pa)}))
    await wait_until(lambda: joined(ha, "B") and joined(hb, "A"), "the pinned gateways", timeout=15)
    await messages_both_ways(procs, a, b, "pinned")

    def refused(texts: list[str]) -> bool:
        return "TLS gateway handshake error: certificate not pinned" in texts

    # the outbound connection to D carries D's address; inbound ones come from other ports
    await wait_until(lambda: refused(gid_texts(a, pd)), "A refusing the gateway it dials")
    await wait_until(
        lambda: any(refused(gid_texts(a, int(port))) for port in
                    set(re.findall(rf" {re.escape(HOST)}:(\d+) - gid:", logs(a))) - {str(pd), str(pb)}),
        "A refusing D's inbound gateway",
    )
    key = f"Failed pinned cert test for key id: {certs.server_rsa.spki_sha256}"
    assert key in gid_texts(a, pd)
    assert "Gateway connection closed: TLS Handshake Failure" in gid_texts(a, pd)
    assert gateways(ha) == ({"B"}, {"B"})
    # A told B of its (configured) gateway D when B connected: B and D meet by discovery, A not
    await wait_until(lambda: joined(hd, "B") and joined(hb, "A", "D"), "B and D by discovery")
    assert gateways(hd) == ({"B"}, {"B"})


# -- reload -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reloaded", BOTH)
async def test_gateway_pins_reload(procs: Procs, certs: CertSet, reloaded: str) -> None:
    """A pins both keys and B presents server-rsa.pem. A reload that pins only server.pem drops
    both gateway connections with B (``Disconnect 2 clients due to pinned certs reload``,
    closed as TLS Handshake Failure) and the redials fail the pin check; a reload pinning the
    key again lets them form. A reload turning ``verify_and_map`` on is refused and changes
    nothing."""
    ca = certs.ca.cert_file
    pa, pb, ha, hb = (free_port() for _ in range(4))

    def conf(*keys: str, extra: str = "") -> str:
        pins = ", ".join(f'"{k}"' for k in keys)
        return gw_conf("A", pa, ha, tls_block(certs.server, ca, f", pinned_certs: [{pins}]{extra}"), {"B": url(pb)})

    both = (certs.server.spki_sha256, certs.server_rsa.spki_sha256)
    a = start(procs, reloaded, conf(*both))
    b = start(procs, OTHER[reloaded], gw_conf("B", pb, hb, tls_block(certs.server_rsa, ca), {"A": url(pa)}))
    await wait_until(lambda: joined(ha, "B") and joined(hb, "A"), "the gateways", timeout=15)

    n = len(logs(a))
    a.reload(conf(certs.server.spki_sha256))
    await wait_until(lambda: "Disconnect 2 clients due to pinned certs reload" in logs(a)[n:], "the pin reload")
    await wait_until(
        lambda: logs(a)[n:].count("Gateway connection closed: TLS Handshake Failure - Remote: B1") == 2, "both closed"
    )
    await wait_until(lambda: "TLS gateway handshake error: certificate not pinned" in logs(a)[n:], "a redial refused")
    assert gateways(ha) == (set(), set())

    n = len(logs(a))
    a.reload(conf(*both, extra=", verify_and_map: true"))
    await wait_until(lambda: "config reload not supported for Gateway" in logs(a)[n:], "the refused reload")
    assert "Failed to reload server configuration" in logs(a)[n:]

    a.reload(conf(*both))
    await wait_until(lambda: joined(ha, "B") and joined(hb, "A"), "the gateways again", timeout=15)
    await messages_both_ways(procs, a, b, "repinned")
