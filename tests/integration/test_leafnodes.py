"""Leaf nodes between processes: pynatsd hub with a nats-server spoke, nats-server hub with a
pynatsd spoke, and pynatsd with pynatsd, each over plain TCP, TLS (the spoke verifies the hub
with ca_file) and mutual TLS with the spoke's certificate mapped to a leafnode user bound to an
account. Clients use nats-py; the same assertions hold for every pair, so the real server is
the reference for what subscribers receive."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from tests.helpers.certs import CertSet, make_cert_set
from tests.helpers.servers import ServerProcess, free_port

PAIRS = [("pynatsd", "nats"), ("nats", "pynatsd"), ("pynatsd", "pynatsd")]
MODES = ["plain", "tls", "mtls"]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertSet:
    return make_cert_set(tmp_path_factory.mktemp("leaf-certs"))


def hub_conf(mode: str, certs: CertSet, port: int, http: int) -> str:
    accounts = 'accounts { A { users [ {user: a, password: a} ] } }\n'
    if mode == "plain":
        leaf = f'leafnodes {{ listen: "127.0.0.1:{port}"\n authorization {{ users [ {{user: leaf, password: "s3cret", account: A}} ] }} }}'
    elif mode == "tls":
        leaf = (
            f'leafnodes {{ listen: "127.0.0.1:{port}"\n'
            f'tls {{ cert_file: "{certs.server.cert_file}", key_file: "{certs.server.key_file}" }}\n'
            'authorization { users [ {user: leaf, password: "s3cret", account: A} ] } }'
        )
    else:
        leaf = (
            f'leafnodes {{ listen: "127.0.0.1:{port}"\n'
            f'tls {{ cert_file: "{certs.server.cert_file}", key_file: "{certs.server.key_file}", '
            f'ca_file: "{certs.ca.cert_file}", verify_and_map: true }}\n'
            'authorization { users [ {user: "alice@example.com", account: A} ] } }'
        )
    return f"http: {http}\n{accounts}{leaf}\n"


def spoke_conf(mode: str, certs: CertSet, port: int, http: int) -> str:
    if mode == "plain":
        remote = f'{{ url: "nats-leaf://leaf:s3cret@127.0.0.1:{port}" }}'
    elif mode == "tls":
        remote = (
            f'{{ url: "nats-leaf://leaf:s3cret@localhost:{port}", '
            f'tls {{ ca_file: "{certs.ca.cert_file}" }} }}'
        )
    else:
        remote = (
            f'{{ url: "nats-leaf://localhost:{port}", tls {{ ca_file: "{certs.ca.cert_file}", '
            f'cert_file: "{certs.alice.cert_file}", key_file: "{certs.alice.key_file}" }} }}'
        )
    return f"http: {http}\nleafnodes {{ remotes [ {remote} ] }}\n"


def leafz(http: int, subs: bool = False) -> dict[str, Any]:
    url = f"http://127.0.0.1:{http}/leafz" + ("?subs=1" if subs else "")
    with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - loopback
        return json.loads(r.read())  # type: ignore[no-any-return]


def varz(http: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{http}/varz", timeout=5) as r:  # noqa: S310
        return json.loads(r.read())  # type: ignore[no-any-return]


async def wait_for(cond: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def until_delivered(
    publish: Callable[[], Awaitable[None]], queue: asyncio.Queue[Any], what: str, timeout: float = 10.0
) -> Any:
    """Publish until one message arrives (interest crosses the leaf asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        await publish()
        try:
            return await asyncio.wait_for(queue.get(), 0.2)
        except TimeoutError:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: nothing delivered") from None


class Pair:
    def __init__(self, hub: ServerProcess, spoke: ServerProcess, hub_http: int, spoke_http: int) -> None:
        self.hub, self.spoke = hub, spoke
        self.hub_http, self.spoke_http = hub_http, spoke_http


@pytest.fixture(scope="module", params=[(h, s, m) for (h, s) in PAIRS for m in MODES], ids=lambda p: f"{p[0]}-hub-{p[1]}-spoke-{p[2]}")
def pair(request: pytest.FixtureRequest, certs: CertSet) -> Iterator[Pair]:
    hub_impl, spoke_impl, mode = request.param
    lport, hh, sh = free_port(), free_port(), free_port()
    hub = ServerProcess(hub_impl, hub_conf(mode, certs, lport, hh)).start()
    try:
        spoke = ServerProcess(spoke_impl, spoke_conf(mode, certs, lport, sh)).start()
    except BaseException:
        hub.stop()
        raise
    try:
        yield Pair(hub, spoke, hh, sh)
    finally:
        spoke.stop()
        hub.stop()


async def test_messages_both_ways_and_queue_preference(pair: Pair) -> None:
    hub_url = pair.hub.url.replace("nats://", "nats://a:a@")  # account A: where the leaf is bound
    nh = await nats.connect(hub_url)
    ns = await nats.connect(pair.spoke.url)
    try:
        got: asyncio.Queue[Any] = asyncio.Queue()

        async def cb(m: Any) -> None:
            await got.put(m)

        # spoke -> hub, with headers and a reply subject
        await nh.subscribe("to.hub", cb=cb)
        await nh.flush()
        m = await until_delivered(lambda: ns.publish("to.hub", b"up", reply="r.1", headers={"K": "v"}), got, "spoke->hub")
        assert (m.subject, m.data, m.reply, m.headers) == ("to.hub", b"up", "r.1", {"K": "v"})
        # hub -> spoke
        sub = await ns.subscribe("to.spoke.*", cb=cb)
        await ns.flush()
        m = await until_delivered(lambda: nh.publish("to.spoke.x", b"down"), got, "hub->spoke")
        assert (m.subject, m.data) == ("to.spoke.x", b"down")
        # no duplicates: one publish, one delivery
        while not got.empty():
            got.get_nowait()
        await nh.publish("to.spoke.y", b"once")
        await nh.flush()
        m = await asyncio.wait_for(got.get(), 5)
        assert m.data == b"once"
        await ns.flush()
        await nh.flush()
        assert got.empty()
        # interest withdrawn: the hub stops sending (checked on the hub's leaf subscriptions)
        await sub.unsubscribe()
        await ns.flush()
        # queue groups: members on both sides, a publish on the spoke stays with its local member
        qh: asyncio.Queue[Any] = asyncio.Queue()
        qs: asyncio.Queue[Any] = asyncio.Queue()

        async def on_qh(m: Any) -> None:
            await qh.put(m)

        async def on_qs(m: Any) -> None:
            await qs.put(m)

        await nh.subscribe("work", queue="q", cb=on_qh)
        await nh.flush()
        # the hub member is reachable from the spoke while it is the only one
        await until_delivered(lambda: ns.publish("work", b"w0"), qh, "queue member on the hub")
        await ns.subscribe("work", queue="q", cb=on_qs)
        await ns.flush()
        for i in range(20):
            await ns.publish("work", b"w%d" % i)
        await ns.flush()
        for _ in range(20):
            await asyncio.wait_for(qs.get(), 5)
        await nh.flush()
        await asyncio.sleep(0)
        while not qh.empty():  # stragglers from the first phase only
            assert qh.get_nowait().data == b"w0"
    finally:
        await nh.close()
        await ns.close()


def test_monitoring(pair: Pair) -> None:
    for http, spoke in ((pair.hub_http, False), (pair.spoke_http, True)):
        doc = leafz(http, subs=True)
        assert doc["leafnodes"] == 1
        (leaf,) = doc["leafs"]
        assert leaf["is_spoke"] is spoke
        assert leaf["account"] == ("A" if not spoke else "$G")
        assert leaf["ip"] == "127.0.0.1"
        assert {"name", "port", "rtt", "in_msgs", "out_msgs", "in_bytes", "out_bytes", "subscriptions"} <= set(leaf)
        assert isinstance(leaf["subscriptions_list"], list)
        v = varz(http)
        assert v["leafnodes"] == 1


def test_pynatsd_refuses_wrong_credentials_like_nats(tmp_path: Path) -> None:
    """-ERR text for a leaf CONNECT with a wrong password, from both servers."""
    import socket

    answers = {}
    for impl in ("nats", "pynatsd"):
        port = free_port()
        conf = f'leafnodes {{ listen: "127.0.0.1:{port}"\n authorization {{ user: leaf, password: right }} }}\n'
        with ServerProcess(impl, conf) as srv:
            assert srv.running
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                f = s.makefile("rb")
                info = f.readline()
                assert info.startswith(b"INFO ")
                doc = json.loads(info[5:])
                assert doc["auth_required"] is True and doc["client_id"] > 0 and "leafnode_urls" in doc
                s.sendall(b'CONNECT {"user":"leaf","pass":"wrong","name":"x","server_id":"NX"}\r\n')
                answers[impl] = f.readline()
    assert answers["pynatsd"] == answers["nats"] == b"-ERR 'Authorization Violation'\r\n"
