"""Gateways (super-clusters) between pynatsd and the real nats-server: two clusters A and B,
pynatsd-only and mixed both ways, plain and TLS. Clients are nats-py; checks wait for events
(a probe message arriving) with deadlines, never for fixed sleeps.

A "sentinel" check proves that something did NOT cross: the publisher sends the message and
then a sentinel on the same connection, to a subscriber on the same server; the sentinel
arriving first-and-alone means the message was not forwarded (one outbound gateway
connection keeps the order).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import socket
import ssl
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from tests.helpers.certs import CertSet, make_cert_set
from tests.helpers.servers import ServerProcess, free_port
from tests.integration.test_monitor_shape import shape_diff

DEADLINE = 10.0


@dataclass
class Node:
    impl: str
    cluster: str
    gw_port: int
    http_port: int
    cl_port: int
    proc: ServerProcess | None = None

    @property
    def url(self) -> str:
        assert self.proc is not None
        return self.proc.url

    def mon(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=5) as r:
            return json.loads(r.read())


@dataclass
class Super:
    a: list[Node]
    b: list[Node]
    clients: list[NATS] = field(default_factory=list)

    async def client(self, node: Node, **kw: Any) -> NATS:
        nc = await nats.connect(node.url, allow_reconnect=False, **kw)
        self.clients.append(nc)
        return nc


ACCOUNTS = """
accounts {
  ONE { users: [ {user: one, password: pw1} ] }
  TWO { users: [ {user: two, password: pw2} ] }
}
"""


def node_conf(node: Node, peers: list[Node], remote: list[Node], tls: str = "", extra: str = "",
              name: str | None = None) -> str:
    routes = ", ".join(f'"nats://127.0.0.1:{p.cl_port}"' for p in peers if p is not node)
    gw_urls = ", ".join(f'"nats://127.0.0.1:{r.gw_port}"' for r in remote)
    other = remote[0].cluster
    return f"""
server_name: {name or f"{node.cluster}-{node.impl}-{node.gw_port}"}
http: "127.0.0.1:{node.http_port}"
{extra}
cluster {{ name: {node.cluster}, listen: "127.0.0.1:{node.cl_port}", routes: [ {routes} ] }}
gateway {{
  name: {node.cluster}
  listen: "127.0.0.1:{node.gw_port}"
  {tls}
  gateways: [ {{ name: {other}, urls: [ {gw_urls} ] }} ]
}}
"""


def build(a_impls: list[str], b_impls: list[str], tls: str = "", extra: str = "", extra_a: str = "") -> Super:
    a = [Node(i, "A", free_port(), free_port(), free_port()) for i in a_impls]
    b = [Node(i, "B", free_port(), free_port(), free_port()) for i in b_impls]
    nodes = a + b
    for n in nodes:
        mine, theirs = (a, b) if n in a else (b, a)
        n.proc = ServerProcess(n.impl, node_conf(n, mine, theirs, tls, extra + (extra_a if n in a else "")))
    with concurrent.futures.ThreadPoolExecutor(len(nodes)) as pool:
        futures = [pool.submit(n.proc.start) for n in nodes if n.proc is not None]
        errors = [f.exception() for f in futures]
    if any(errors):
        stop_all(nodes)
        raise next(e for e in errors if e is not None)
    return Super(a, b)


def stop_all(nodes: list[Node]) -> None:
    for n in nodes:
        if n.proc is not None:
            n.proc.cleanup()


def wait_gateways(s: Super) -> None:
    """Every node has its outbound gateway registered, and each cluster has one inbound per
    server of the other cluster (a server dials one server of each remote cluster), polled on
    /gatewayz."""
    deadline = time.monotonic() + DEADLINE
    for mine, theirs in ((s.a, s.b), (s.b, s.a)):
        while True:
            try:
                gzs = [n.mon("/gatewayz") for n in mine]
            except OSError as e:  # ready (ports file) can come just before the monitor listens
                if time.monotonic() > deadline:
                    logs = "\n".join(n.proc.logs() for n in mine if n.proc)
                    raise AssertionError(f"monitoring not reachable: {e}\n{logs}") from None
                time.sleep(0.05)
                continue
            inbound = sum(len(v) for gz in gzs for v in gz["inbound_gateways"].values())
            if all(len(gz["outbound_gateways"]) == 1 for gz in gzs) and inbound == len(theirs):
                break
            if time.monotonic() > deadline:
                logs = "\n".join(n.proc.logs() for n in mine if n.proc)
                raise AssertionError(f"gateways not up: {gzs}\n{logs}")
            time.sleep(0.05)


@pytest.fixture
def supercluster_factory() -> Iterator[Any]:
    made: list[Super] = []

    def make(a: list[str], b: list[str], tls: str = "", extra: str = "", extra_a: str = "") -> Super:
        s = build(a, b, tls, extra, extra_a)
        made.append(s)
        wait_gateways(s)
        return s

    yield make
    for s in made:
        stop_all(s.a + s.b)


async def close_clients(s: Super) -> None:
    for nc in s.clients:
        if nc.is_connected:
            await nc.close()


class Box:
    """Messages received per subscription label."""

    def __init__(self) -> None:
        self.msgs: dict[str, list[Msg]] = {}
        self.event = asyncio.Event()

    def cb(self, label: str) -> Any:
        self.msgs.setdefault(label, [])

        async def handler(m: Msg) -> None:
            self.msgs[label].append(m)
            self.event.set()

        return handler

    async def wait(self, cond: Any, what: str) -> None:
        deadline = time.monotonic() + DEADLINE
        while not cond():
            self.event.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}: {self.msgs}")
            try:
                await asyncio.wait_for(self.event.wait(), left)
            except TimeoutError:
                pass


async def until_flows(pub: NATS, subject: str, box: Box, label: str) -> None:
    """Publish probes on ``subject`` until ``label`` got one (interest has propagated)."""
    deadline = time.monotonic() + DEADLINE
    while not box.msgs.get(label):
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing arrived on {subject}")
        await pub.publish(subject, b"probe")
        await pub.flush()
        box.event.clear()
        try:
            await asyncio.wait_for(box.event.wait(), 0.2)
        except TimeoutError:
            pass


async def until_stops(pub: NATS, subject: str, sentinel: str, box: Box, label: str, sent_label: str) -> None:
    """Publish ``subject`` then ``sentinel`` until a sentinel arrives with nothing new on
    ``label`` before it: the interest in ``subject`` is gone over there."""
    deadline = time.monotonic() + DEADLINE
    while True:
        before = len(box.msgs[label])
        n_sent = len(box.msgs[sent_label])
        await pub.publish(subject, b"x")
        await pub.publish(sentinel, b"s")
        await pub.flush()
        await box.wait(lambda n_sent=n_sent: len(box.msgs[sent_label]) > n_sent, "the sentinel")
        if len(box.msgs[label]) == before:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{subject} still forwarded")


async def check_pubsub_both_ways(s: Super, a_node: Node, b_node: Node) -> None:
    na, nb = await s.client(a_node), await s.client(b_node)
    box = Box()
    await nb.subscribe("ab.>", cb=box.cb("ab"))
    await na.subscribe("ba.*", cb=box.cb("ba"))
    await nb.flush()
    await na.flush()
    await until_flows(na, "ab.probe", box, "ab")
    await until_flows(nb, "ba.probe", box, "ba")
    await na.publish("ab.x.y", b"hello B", headers={"K": "v"})
    await nb.publish("ba.z", b"hello A", reply="ba.reply")
    await box.wait(lambda: any(m.data == b"hello B" for m in box.msgs["ab"])
                   and any(m.data == b"hello A" for m in box.msgs["ba"]), "both messages")
    m = next(m for m in box.msgs["ab"] if m.data == b"hello B")
    assert m.subject == "ab.x.y" and m.headers == {"K": "v"}
    m = next(m for m in box.msgs["ba"] if m.data == b"hello A")
    assert m.reply == "ba.reply"


async def check_request_reply(s: Super, a_node: Node, b_node: Node, tag: str) -> None:
    """A fresh responder subscription in B; a requester in A whose inbox subscription is
    brand new (its interest may not have reached B: the _GR_ reply carries the answer)."""
    na, nb = await s.client(a_node), await s.client(b_node)

    async def respond(m: Msg) -> None:
        await m.respond(b"answer from " + m.data)

    await nb.subscribe(f"svc.{tag}", cb=respond)
    await nb.flush()
    probe = Box()
    await nb.subscribe(f"svc.{tag}.probe", cb=probe.cb("p"))
    await nb.flush()
    await until_flows(na, f"svc.{tag}.probe", probe, "p")
    for i in range(3):
        r = await na.request(f"svc.{tag}", f"{tag}{i}".encode(), timeout=5)
        assert r.data == f"answer from {tag}{i}".encode()


async def check_queue_groups(s: Super, a_node: Node, b_node: Node, tag: str) -> None:
    na, nb = await s.client(a_node), await s.client(b_node)
    box = Box()
    subj = f"work.{tag}"
    await nb.subscribe(subj, queue="workers", cb=box.cb("b"))
    await nb.subscribe(subj + ".probe", cb=box.cb("bp"))
    await nb.flush()
    await until_flows(na, subj + ".probe", box, "bp")
    # only B has members: A's publishes cross, exactly one member each
    for i in range(5):
        await na.publish(subj, b"%d" % i)
    await box.wait(lambda: len(box.msgs["b"]) >= 5, "queue messages in B")
    # a member in A too: A's publishes prefer the local member (nats-server's rule)
    await na.subscribe(subj, queue="workers", cb=box.cb("a"))
    await na.flush()
    for i in range(20):
        await na.publish(subj, b"L%d" % i)
    await na.flush()
    await box.wait(lambda: len(box.msgs["a"]) >= 20, "local queue member")
    # sentinel: nothing of the 20 went to B
    n_bp = len(box.msgs["bp"])
    await na.publish(subj + ".probe", b"s")
    await box.wait(lambda: len(box.msgs["bp"]) > n_bp, "sentinel")
    assert len(box.msgs["b"]) == 5
    assert sorted(int(m.data[1:]) for m in box.msgs["a"]) == list(range(20))


async def check_interest_change(s: Super, a_node: Node, b_node: Node, tag: str) -> None:
    na, nb = await s.client(a_node), await s.client(b_node)
    box = Box()
    sub = await nb.subscribe(f"chg.{tag}", cb=box.cb("c"))
    await nb.subscribe(f"sentinel.{tag}", cb=box.cb("s"))
    await nb.flush()
    await until_flows(na, f"chg.{tag}", box, "c")
    await until_flows(na, f"sentinel.{tag}", box, "s")
    await sub.unsubscribe()
    await nb.flush()
    await until_stops(na, f"chg.{tag}", f"sentinel.{tag}", box, "c", "s")
    # and back
    await nb.subscribe(f"chg.{tag}", cb=box.cb("c2"))
    await nb.flush()
    await until_flows(na, f"chg.{tag}", box, "c2")


# -- pynatsd only -------------------------------------------------------------------------------


async def test_pynatsd_supercluster(supercluster_factory: Any) -> None:
    s: Super = supercluster_factory(["pynatsd", "pynatsd"], ["pynatsd"], extra=ACCOUNTS)
    try:
        a1, a2, b1 = s.a[0], s.a[1], s.b[0]
        await check_pubsub_both_ways_acc(s, a1, b1)
        await check_pubsub_both_ways_acc(s, a2, b1)  # B's one outbound reaches A2 via A's route
        await check_request_reply_acc(s, a2, b1, "py1")
        await check_request_reply_acc(s, b1, a1, "py2")
        await check_queue_groups_acc(s, a1, b1, "py")
        await check_interest_change_acc(s, a2, b1, "py")
        await check_accounts(s, a1, b1)
        await check_exactly_once(s, a1, a2, b1)
    finally:
        await close_clients(s)


# the pynatsd-only cluster has accounts: its clients log in as user "one" of account ONE
def _acc(f: Any) -> Any:
    async def wrapped(s: Super, *args: Any) -> None:
        orig = s.client

        async def client(node: Node, **kw: Any) -> NATS:
            return await orig(node, user="one", password="pw1", **kw)

        s.client = client  # type: ignore[method-assign]
        try:
            await f(s, *args)
        finally:
            s.client = orig  # type: ignore[method-assign]

    return wrapped


check_pubsub_both_ways_acc = _acc(check_pubsub_both_ways)
check_request_reply_acc = _acc(check_request_reply)
check_queue_groups_acc = _acc(check_queue_groups)
check_interest_change_acc = _acc(check_interest_change)


async def check_accounts(s: Super, a_node: Node, b_node: Node) -> None:
    """Same subject in two accounts: each crosses in its own account only."""
    a1 = await s.client(a_node, user="one", password="pw1")
    a2 = await s.client(a_node, user="two", password="pw2")
    b1 = await s.client(b_node, user="one", password="pw1")
    b2 = await s.client(b_node, user="two", password="pw2")
    box = Box()
    await b1.subscribe("acc.x", cb=box.cb("one"))
    await b2.subscribe("acc.x", cb=box.cb("two"))
    await b1.flush()
    await b2.flush()
    await until_flows(a1, "acc.x", box, "one")
    await until_flows(a2, "acc.x", box, "two")
    assert all(m.data == b"probe" for m in box.msgs["one"] + box.msgs["two"])
    n1, n2 = len(box.msgs["one"]), len(box.msgs["two"])
    await a1.publish("acc.x", b"for one")
    await a1.flush()
    await a2.publish("acc.x", b"for two")
    await box.wait(lambda: len(box.msgs["one"]) > n1 and len(box.msgs["two"]) > n2, "both accounts")
    assert box.msgs["one"][-1].data == b"for one" and box.msgs["two"][-1].data == b"for two"
    # a subject with interest in account TWO only does not reach ONE's subscribers
    await b2.subscribe("only.two", cb=box.cb("ot"))
    await b2.flush()
    await until_flows(a2, "only.two", box, "ot")
    assert "only.one" not in box.msgs


async def check_exactly_once(s: Super, a1_node: Node, a2_node: Node, b_node: Node) -> None:
    """A message from B reaches a subscriber on each A server exactly once (the gateway
    message goes to local subs and to the route, never back to a gateway)."""
    a1 = await s.client(a1_node, user="one", password="pw1")
    a2 = await s.client(a2_node, user="one", password="pw1")
    b = await s.client(b_node, user="one", password="pw1")
    box = Box()
    await a1.subscribe("once.>", cb=box.cb("a1"))
    await a2.subscribe("once.>", cb=box.cb("a2"))
    await b.subscribe("once.>", cb=box.cb("b"))
    await a1.flush()
    await a2.flush()
    await until_flows(b, "once.p1", box, "a1")
    await until_flows(b, "once.p2", box, "a2")
    for label in ("a1", "a2", "b"):
        box.msgs[label].clear()
    for i in range(10):
        await b.publish(f"once.{i}", b"m")
    await b.publish("once.end", b"end")
    await b.flush()
    await box.wait(lambda: all(any(m.subject == "once.end" for m in box.msgs[k]) for k in ("a1", "a2", "b")),
                   "the end marker everywhere")
    for label in ("a1", "a2", "b"):
        subjects = [m.subject for m in box.msgs[label] if m.data != b"probe"]  # late probes aside
        assert subjects == [f"once.{i}" for i in range(10)] + ["once.end"], (label, subjects)


# -- mixed with nats-server -----------------------------------------------------------------------


async def test_mixed_clusters(supercluster_factory: Any) -> None:
    """A = pynatsd + nats-server, B = nats-server + pynatsd: every pair across."""
    s: Super = supercluster_factory(["pynatsd", "nats"], ["nats", "pynatsd"])
    try:
        a_py, a_ns, b_ns, b_py = s.a[0], s.a[1], s.b[0], s.b[1]
        await check_pubsub_both_ways(s, a_py, b_ns)
        await check_pubsub_both_ways(s, a_ns, b_py)
        await check_pubsub_both_ways(s, a_py, b_py)
        await check_request_reply(s, a_py, b_ns, "m1")
        await check_request_reply(s, b_ns, a_py, "m2")
        await check_request_reply(s, a_ns, b_py, "m3")
        await check_request_reply(s, b_py, a_ns, "m4")
        await check_queue_groups(s, a_py, b_ns, "m1")
        await check_queue_groups(s, b_ns, a_py, "m2")
        await check_interest_change(s, a_ns, b_py, "m1")
        await check_interest_change(s, b_ns, a_py, "m2")
        check_monitoring_shapes(a_ns, a_py)
    finally:
        await close_clients(s)


def check_monitoring_shapes(ns: Node, py: Node) -> None:
    theirs, ours = ns.mon("/gatewayz?accs=1"), py.mon("/gatewayz?accs=1")
    # one server's accounts differ from the other's ($SYS): compare one account entry's shape
    for g in (theirs, ours):
        for e in list(g["outbound_gateways"].values()) + [x for v in g["inbound_gateways"].values() for x in v]:
            # the counts are omitted when 0 and depend on which server the outbound reached
            e["accounts"] = [{k: v for k, v in a.items() if k not in ("num_subs", "num_queue_subs")}
                             for a in e.get("accounts", []) if a["name"] == "$G"]
            e["connection"].pop("subscriptions", None)
    # which servers of B dialed which server of A is random: compare inbound entries when
    # both have them
    if not theirs["inbound_gateways"] or not ours["inbound_gateways"]:
        theirs["inbound_gateways"] = ours["inbound_gateways"] = {}
    problems = shape_diff(theirs, ours, "gatewayz")
    assert not problems, problems
    assert ours["name"] == "A" and list(ours["outbound_gateways"]) == ["B"]
    assert ours["outbound_gateways"]["B"]["configured"] is True
    assert ours["outbound_gateways"]["B"]["connection"]["out_msgs"] > 0
    vt, vo = ns.mon("/varz")["gateway"], py.mon("/varz")["gateway"]
    problems = shape_diff(vt, vo, "varz.gateway")
    assert not problems, problems
    assert vo["name"] == "A" and vo["port"] == py.gw_port
    assert [g["name"] for g in vo["gateways"]] == ["B"] and len(vo["gateways"][0]["urls"]) == 2


# -- leaf nodes behind a gateway ------------------------------------------------------------------


SYS = "system_account: SYS\naccounts { SYS {} }\n"


async def test_leafnode_behind_gateway(supercluster_factory: Any) -> None:
    """A nats-server leaf spoke on pynatsd A: its interest and messages cross to B, and B's
    messages reach it (gateway <-> leaf forwarding in both directions)."""
    lp = free_port()
    s: Super = supercluster_factory(["pynatsd"], ["pynatsd"], extra=SYS, extra_a=f'leafnodes {{ listen: "127.0.0.1:{lp}" }}')
    spoke = ServerProcess("nats", f'leafnodes {{ remotes: [ {{ url: "nats://127.0.0.1:{lp}" }} ] }}')
    try:
        await asyncio.to_thread(spoke.start)
        deadline = time.monotonic() + DEADLINE
        while s.a[0].mon("/leafz")["leafnodes"] != 1:
            assert time.monotonic() < deadline, spoke.logs()
            await asyncio.sleep(0.05)
        leaf = await nats.connect(spoke.url, allow_reconnect=False)
        s.clients.append(leaf)
        nb = await s.client(s.b[0])
        box = Box()
        await leaf.subscribe("to.leaf", cb=box.cb("leaf"))
        await nb.subscribe("to.b", cb=box.cb("b"))
        await leaf.flush()
        await nb.flush()
        await until_flows(nb, "to.leaf", box, "leaf")
        await until_flows(leaf, "to.b", box, "b")

        async def respond(m: Msg) -> None:
            await m.respond(b"leaf says " + m.data)

        await leaf.subscribe("leaf.svc", cb=respond)
        await leaf.flush()
        await until_flows(nb, "to.leaf", box, "leaf")  # a later subscription's interest is there too
        deadline = time.monotonic() + DEADLINE
        while True:
            try:
                r = await nb.request("leaf.svc", b"hi", timeout=0.5)
                break
            except nats.errors.NoRespondersError:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
        assert r.data == b"leaf says hi"
    finally:
        await close_clients(s)
        spoke.cleanup()


# -- TLS ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertSet:
    return make_cert_set(tmp_path_factory.mktemp("gw-certs"))


def gw_tls(cert: str, key: str, ca: str) -> str:
    return f'tls {{ cert_file: "{cert}", key_file: "{key}", ca_file: "{ca}", timeout: 3 }}'


async def test_tls_gateways_and_certificate_rotation(supercluster_factory: Any, certs: CertSet,
                                                    tmp_path: Path) -> None:
    """pynatsd A and nats-server B over mutual TLS (the server certificate has serverAuth and
    clientAuth); a reload of A re-reads its certificate files and new handshakes use the new
    certificate."""
    cert, key = tmp_path / "gw-cert.pem", tmp_path / "gw-key.pem"
    cert.write_bytes(Path(certs.server.cert_file).read_bytes())
    key.write_bytes(Path(certs.server.key_file).read_bytes())
    s: Super = supercluster_factory(["pynatsd"], ["nats"], tls=gw_tls(str(cert), str(key), certs.ca.cert_file))
    try:
        a, b = s.a[0], s.b[0]
        gz = a.mon("/gatewayz")
        assert gz["outbound_gateways"]["B"]["connection"]["tls_version"] == "1.3"
        await check_pubsub_both_ways(s, a, b)
        await check_request_reply(s, a, b, "t1")
        # rotation: same names, new key pair
        new = certs.issue_extra("gw-rotated", certs.server.cert.subject, dns=("localhost",), ips=("127.0.0.1",),
                                server=True)
        assert new.cert.serial_number != certs.server.cert.serial_number
        cert.write_bytes(Path(new.cert_file).read_bytes())
        key.write_bytes(Path(new.key_file).read_bytes())
        assert a.proc is not None
        a.proc.reload()
        ctx = ssl.create_default_context(cafile=certs.ca.cert_file)
        ctx.load_cert_chain(certs.server.cert_file, certs.server.key_file)
        deadline = time.monotonic() + DEADLINE
        while True:
            with socket.create_connection(("127.0.0.1", a.gw_port), timeout=5) as raw, \
                    ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                der = tls.getpeercert(binary_form=True)
            from cryptography import x509

            if x509.load_der_x509_certificate(der or b"").serial_number == new.cert.serial_number:
                break
            assert time.monotonic() < deadline, "the reloaded certificate is not served"
            await asyncio.sleep(0.05)
        assert "Reloaded: gateway TLS" in a.proc.stdout() + a.proc.stderr()
        # the connections made before stay up and carry traffic
        await check_pubsub_both_ways(s, a, b)
    finally:
        await close_clients(s)


# -- protocol, against both servers with the same bytes -------------------------------------------


def _read_until(sock: socket.socket, want: bytes, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while want not in data and time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
    return data


def _gw_conf(port: int, remote_port: int | None = None, remote: str = "B", extra: str = "") -> str:
    gws = f'gateways: [ {{ name: {remote}, url: "nats://127.0.0.1:{remote_port}" }} ]' if remote_port else ""
    return f'gateway {{ name: A, listen: "127.0.0.1:{port}", {extra} {gws} }}'


@pytest.fixture
def both_gw() -> Iterator[dict[str, tuple[ServerProcess, int]]]:
    """One lone gateway server (name A, no remotes) of each implementation."""
    out: dict[str, tuple[ServerProcess, int]] = {}
    procs = []
    for impl in ("nats", "pynatsd"):
        port = free_port()
        p = ServerProcess(impl, _gw_conf(port, extra="reject_unknown_cluster: false"))
        procs.append(p)
        out[impl] = (p, port)
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            for f in [pool.submit(p.start) for p in procs]:
                f.result()
        yield out
    finally:
        for p in procs:
            p.cleanup()


def test_inbound_protocol_same_as_nats_server(both_gw: dict[str, tuple[ServerProcess, int]]) -> None:
    results: dict[str, dict[str, Any]] = {}
    for impl, (_, port) in both_gw.items():
        r: dict[str, Any] = {}
        with socket.create_connection(("127.0.0.1", port)) as sk:
            info = _read_until(sk, b"\r\n")
            assert info.startswith(b"INFO ")
            doc = json.loads(info[5:].strip())
            r["info_keys"] = [k for k in doc if k not in ("go",)]
            r["info"] = {k: doc[k] for k in ("gateway", "gateway_nrp", "gateway_iom", "headers", "max_payload")}
            # a client CONNECT on the gateway port
            sk.sendall(b'CONNECT {"verbose":false,"lang":"python"}\r\n')
            r["client"] = _read_until(sk, b"\r\n").strip()
        with socket.create_connection(("127.0.0.1", port)) as sk:
            _read_until(sk, b"\r\n")
            sk.sendall(b'CONNECT {"gateway":"Z","name":"NFAKE"}\r\nINFO {"gateway":"Z","server_id":"NFAKE",'
                       b'"gateway_iom":true,"gateway_nrp":true}\r\n')
            data = _read_until(sk, b'"gateway_cmd":3,"gateway_cmd_payload":"JEc="}')
            lines = [ln for ln in data.split(b"\r\n") if b"$SYS" not in ln and b"JFNZUw==" not in ln and ln]
            cmds = [json.loads(ln[5:]) for ln in lines if ln.startswith(b"INFO ")]
            r["cmds"] = [(c["gateway"], c["gateway_cmd"], c["gateway_cmd_payload"]) for c in cmds]
            r["cmd_keys"] = [list(c) for c in cmds]
            # RS+ on an inbound connection is a protocol violation: the connection is closed
            sk.sendall(b"RS+ $G foo\r\n")
            sk.settimeout(5)
            closed = False
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    if not sk.recv(65536):
                        closed = True
                        break
                except (ConnectionResetError, TimeoutError):
                    closed = True
                    break
            r["rs_closed"] = closed
        results[impl] = r
    ns, py = results["nats"], results["pynatsd"]
    assert py["client"] == ns["client"] == b"-ERR 'attempted to connect to gateway port'"
    assert py["info_keys"] == ns["info_keys"]
    assert py["info"] == ns["info"]
    assert py["cmds"] == ns["cmds"] == [("A", 2, "JEc="), ("A", 3, "JEc=")]
    assert py["cmd_keys"] == ns["cmd_keys"]
    assert py["rs_closed"] and ns["rs_closed"]


async def _fake_acceptor(name: str) -> tuple[asyncio.Server, int, asyncio.Queue[bytes]]:
    """A gateway port that announces ``name`` and records what the dialer sends."""
    got: asyncio.Queue[bytes] = asyncio.Queue()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b'INFO {"server_id":"NFAKEACCEPTOR","gateway":"' + name.encode() + b'","gateway_iom":true}\r\n')
        await writer.drain()
        data = b""
        try:
            while chunk := await asyncio.wait_for(reader.read(65536), 5):
                data += chunk
                if b"-ERR" in data and data.endswith(b"\r\n"):
                    break
        except (TimeoutError, ConnectionError):
            pass
        await got.put(data)
        writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    return srv, srv.sockets[0].getsockname()[1], got


async def test_dialer_refuses_wrong_gateway_name_like_nats_server() -> None:
    results = {}
    for impl in ("nats", "pynatsd"):
        srv, port, got = await _fake_acceptor("X")
        proc = ServerProcess(impl, _gw_conf(free_port(), port, remote="B"))
        try:
            await asyncio.to_thread(proc.start)
            data = await asyncio.wait_for(got.get(), DEADLINE)
            results[impl] = data
        finally:
            proc.cleanup()
            srv.close()
    text = b"-ERR 'Connection from \"A\" rejected, wanted to connect to \"B\", this is \"X\"'\r\n"
    assert results["nats"].endswith(text)
    assert results["pynatsd"].endswith(text)


async def test_dialer_sends_connect_and_info_like_nats_server() -> None:
    """Right name: the dialer's CONNECT keys and gateway INFO flags match nats-server's."""
    out = {}
    for impl in ("nats", "pynatsd"):
        srv, port, got = await _fake_acceptor("B")
        proc = ServerProcess(impl, _gw_conf(free_port(), port, remote="B"))
        try:
            await asyncio.to_thread(proc.start)
            data = await asyncio.wait_for(got.get(), DEADLINE)
        finally:
            proc.cleanup()
            srv.close()
        lines = data.split(b"\r\n")
        connect = json.loads(lines[0][len(b"CONNECT "):])
        info = json.loads(lines[1][len(b"INFO "):])
        out[impl] = (list(connect), connect["gateway"], info["gateway"], info["gateway_iom"])
    assert out["pynatsd"] == out["nats"]


# -- configuration ----------------------------------------------------------------------------------


BAD_CONFIGS = [
    ('gateway { name: "A B", port: -1 }', "gateway name cannot contain spaces"),
    ("gateway { name: A, port: -1, foo: 1 }", 'unknown field "foo"'),
    ("gateway { name: A, port: -1, authorization { users: [{user: a, password: b}] } }",
     "Gateway authorization does not allow multiple users"),
    ("gateway { name: A, port: -1, authorization { token: x } }", "Gateway authorization does not support tokens"),
    ('gateway { name: A, port: -1, gateways: [ {name: B, url: "nats://127.0.0.1:1", bar: 2} ] }',
     'unknown field "bar"'),
]
START_ERRORS = [
    ("gateway { port: -1 }", "gateway has no name"),
    ("gateway { name: A, port: -1, gateways: [ {name: B} ] }", 'gateway "B" has no URL'),
    ('gateway { name: A, port: -1, gateways: [ {url: "nats://127.0.0.1:1"} ] }', "gateway in the list 0 has no name"),
    ("gateway { name: A }", 'gateway "A" has no port specified (select -1 for random port)'),
    ("leafnodes { port: -1 }\ngateway { name: A, port: -1 }",
     "leaf nodes and gateways (both being defined) require a system account to also be configured"),
]


def _run(impl: str, args: list[str], conf: str, tmp: Path) -> tuple[int, str]:
    import subprocess

    from tests.helpers.servers import impl_command

    f = tmp / f"{impl}.conf"
    f.write_text(conf)
    p = subprocess.run(impl_command(impl) + args + ["-c", str(f), "-a", "127.0.0.1", "-p", "-1"],
                       capture_output=True, text=True, timeout=20)
    return p.returncode, p.stdout + p.stderr


@pytest.mark.parametrize(("conf", "text"), BAD_CONFIGS)
def test_config_errors_like_nats_server(conf: str, text: str, tmp_path: Path) -> None:
    for impl in ("nats", "pynatsd"):
        rc, out = _run(impl, ["-t"], conf, tmp_path)
        assert rc != 0 and text in out, (impl, out)


@pytest.mark.parametrize(("conf", "text"), START_ERRORS)
def test_start_errors_like_nats_server(conf: str, text: str, tmp_path: Path) -> None:
    for impl in ("nats", "pynatsd"):
        rc, out = _run(impl, ["-t"], conf, tmp_path)
        assert rc == 0, (impl, out)  # -t passes: these are start-up checks
        rc, out = _run(impl, [], conf, tmp_path)
        assert rc != 0 and text in out, (impl, out)


async def test_reload_refuses_gateway_changes_like_nats_server(tmp_path: Path) -> None:
    port = free_port()
    conf = _gw_conf(port, free_port(), remote="B")
    changed = conf.replace("name: A", "name: Z")
    for impl in ("nats", "pynatsd"):
        p = ServerProcess(impl, conf)
        try:
            await asyncio.to_thread(p.start)
            p.reload(changed)
            deadline = time.monotonic() + DEADLINE
            while "config reload not supported for Gateway" not in p.stdout() + p.stderr():
                assert time.monotonic() < deadline, p.logs()
                await asyncio.sleep(0.05)
            assert p.running
        finally:
            p.cleanup()
        port = free_port()
        conf = _gw_conf(port, free_port(), remote="B")
        changed = conf.replace("name: A", "name: Z")


# -- the README's configuration, verbatim ---------------------------------------------------------


def readme_block(title: str) -> str:
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    after = text[text.index(f"`{title}`:"):]
    start = after.index("```\n") + 4
    return after[start:after.index("```", start)]


async def test_readme_gateway_configs(tmp_path: Path) -> None:
    """The two README files, as written (only the four ports swapped for free ones), with
    certificates from ``pynatsd certs``: pynatsd as A, nats-server as B, over TLS."""
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "pynatsd", "certs", "certs"], cwd=tmp_path, check=True,
                   capture_output=True, timeout=60)
    ports = {p: free_port() for p in ("4222", "7222", "4223", "7223")}
    procs = []
    for title, impl, client_port in (("gateway-a.conf", "pynatsd", "4222"), ("gateway-b.conf", "nats", "4223")):
        import re

        conf = re.sub(r"\b(4222|7222|4223|7223)\b", lambda m: str(ports[m.group(1)]), readme_block(title))
        d = tmp_path / impl
        d.mkdir()
        (d / "certs").symlink_to(tmp_path / "certs")
        procs.append(ServerProcess(impl, conf, port=ports[client_port], workdir=d))
    try:
        for p in procs:
            await asyncio.to_thread(p.start)
        na = await nats.connect(procs[0].url, allow_reconnect=False)
        nb = await nats.connect(procs[1].url, allow_reconnect=False)
        box = Box()
        await nb.subscribe("readme.>", cb=box.cb("b"))
        await na.subscribe("back.>", cb=box.cb("a"))
        await nb.flush()
        await na.flush()
        try:
            await until_flows(na, "readme.x", box, "b")
            await until_flows(nb, "back.y", box, "a")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{procs[0].logs()}\n{procs[1].logs()}") from None
        await na.close()
        await nb.close()
    finally:
        for p in procs:
            p.cleanup()
