"""pynatsd's monitoring JSON against the real nats-server's, for the same config and traffic.

Both servers get the same clients (nats-py) doing the same things; then every endpoint's key
set, key order and value types are compared field by field, and the counters that must agree
exactly (messages, bytes, connections, per-connection traffic) are compared by value.
Fields we knowingly leave out are listed in MISSING_OK with the reason.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import nats
import pytest
from tests.helpers.certs import CertSet, make_cert_set
from tests.helpers.servers import ServerProcess

from pynatsd.config.options import ServerOptions, TLSOptions
from pynatsd.server import Server

# nats-server fields pynatsd does not produce, and why
MISSING_OK = {
    "varz.feature_flags": "JetStream feature flags; pynatsd has no JetStream",
    "varz.system_account": "pynatsd has no $SYS account",
    "accountz.system_account": "pynatsd has no $SYS account",
    "accountz.account_detail.imports": "the $SYS service imports nats-server gives every account",
}
# pynatsd fields nats-server does not have
EXTRA_OK = {"connz.connections[].tls_group"}
# maps whose keys are data, not field names
FREE_KEYS = {"varz.http_req_stats"}

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")
UPTIME = re.compile(r"^(\d+y)?(\d+d)?(\d+h)?(\d+m)?\d+s$")
GO_DURATION = re.compile(r"^(0s|[\d.]+(ns|µs|ms|s)|(\d+h)?(\d+m)?[\d.]+s)$")
TIME_KEYS = {"start", "now", "last_activity", "stop", "config_load_time", "tls_cert_not_after", "update_time"}


def kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"  # Go writes an integral float64 as 1, not 1.0
    if v is None:
        return "null"
    return type(v).__name__


def shape_diff(theirs: Any, ours: Any, path: str) -> list[str]:
    """Where ``ours`` differs in shape from ``theirs`` (nats-server's)."""
    if kind(theirs) != kind(ours):
        return [f"{path}: nats-server has {kind(theirs)}, pynatsd {kind(ours)}"]
    problems: list[str] = []
    if isinstance(theirs, dict):
        if path in FREE_KEYS:
            return [f"{path}.{k}: {kind(v)}" for k, v in ours.items() if kind(v) != "number"]
        for k, v in theirs.items():
            p = f"{path}.{k}"
            if k not in ours:
                if p not in MISSING_OK:
                    problems.append(f"{p}: missing")
                continue
            problems += shape_diff(v, ours[k], p)
            if k in TIME_KEYS and not RFC3339.match(ours[k]):
                problems.append(f"{p}: {ours[k]!r} is not RFC 3339 UTC")
            if k in ("uptime", "idle") and not UPTIME.match(ours[k]):
                problems.append(f"{p}: {ours[k]!r} is not an uptime")
            if k == "rtt" and not GO_DURATION.match(ours[k]):
                problems.append(f"{p}: {ours[k]!r} is not a Go duration")
        problems += [f"{path}.{k}: extra" for k in ours if k not in theirs and f"{path}.{k}" not in EXTRA_OK]
        common_theirs = [k for k in theirs if k in ours]
        common_ours = [k for k in ours if k in theirs]
        if common_theirs != common_ours:
            problems.append(f"{path}: key order {common_ours} != {common_theirs}")
    elif isinstance(theirs, list) and theirs and ours:
        if not all(isinstance(x, dict) for x in theirs + ours):
            return shape_diff(theirs[0], ours[0], f"{path}[]")
        # elements differ by their omitempty fields, and nats-server lists some in map order:
        # compare each of ours with a nats-server element having the same keys (minus extras)
        by_keys = {frozenset(x): x for x in theirs}
        for x in ours:
            keys = frozenset(k for k in x if f"{path}[].{k}" not in EXTRA_OK)
            match = by_keys.get(keys)
            if match is None:
                problems.append(f"{path}[]: no nats-server element with the keys {sorted(keys)}")
            else:
                problems += shape_diff(match, x, f"{path}[]")
    return problems


@dataclass
class Pair:
    """The same setup on both servers: client URL, monitoring URL, client TLS context."""

    nats_url: str
    nats_mon: str
    py_url: str
    py_mon: str
    py_server: Server
    tls: ssl.SSLContext | None = None
    mon_tls: ssl.SSLContext | None = None


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertSet:
    return make_cert_set(tmp_path_factory.mktemp("monitor-certs"))


@pytest.fixture
def nats_proc(server_factory: Callable[..., ServerProcess]) -> Callable[..., ServerProcess]:
    return lambda config=None, flags=(): server_factory("nats", config, flags)


async def get(session: aiohttp.ClientSession, url: str, tls: ssl.SSLContext | None = None) -> tuple[int, Any]:
    async with session.get(url, ssl=tls if tls is not None else False) as r:
        text = await r.text()
        ctype = r.headers.get("Content-Type", "")
        return r.status, json.loads(text) if ctype.startswith("application/json") else text


@pytest.fixture
async def plain_pair(nats_proc: Callable[..., ServerProcess]) -> AsyncIterator[Pair]:
    ns = nats_proc(None, ["-m", "-1"])
    opts = ServerOptions(host="127.0.0.1", port=-1, http_host="127.0.0.1", http_port=-1)
    async with Server(opts) as srv:
        yield Pair(ns.url, ns.ports["monitoring"][0], f"nats://127.0.0.1:{srv.port}",
                   f"http://127.0.0.1:{srv.http_port}", srv)


@pytest.fixture
async def tls_pair(nats_proc: Callable[..., ServerProcess], certs: CertSet) -> AsyncIterator[Pair]:
    conf = f"""
https: "127.0.0.1:-1"
tls {{
  cert_file: "{certs.server.cert_file}"
  key_file: "{certs.server.key_file}"
  ca_file: "{certs.ca.cert_file}"
  verify: true
}}
"""
    ns = nats_proc(conf)
    tls_opts = TLSOptions(cert_file=certs.server.cert_file, key_file=certs.server.key_file,
                          ca_file=certs.ca.cert_file, verify=True)
    opts = ServerOptions(host="127.0.0.1", port=-1, http_host="127.0.0.1", https_port=-1, tls=tls_opts)
    client_tls = ssl.create_default_context(cafile=certs.ca.cert_file)
    client_tls.load_cert_chain(certs.alice.cert_file, certs.alice.key_file)
    mon_tls = ssl.create_default_context(cafile=certs.ca.cert_file)
    async with Server(opts) as srv:
        yield Pair(ns.url.replace("nats://", "tls://"), ns.ports["monitoring"][0],
                   f"tls://127.0.0.1:{srv.port}", f"https://127.0.0.1:{srv.http_port}", srv, client_tls, mon_tls)


async def wait_subscribed(mon: str, tls: ssl.SSLContext | None, subs: int) -> None:
    """Until the server lists a connection named "sub" with ``subs`` subscriptions.

    nats-py's flush() can send its PING ahead of a SUB still in its buffer (seen in
    nats-server's trace), so a flush does not prove the server has the subscription."""
    async with aiohttp.ClientSession() as session:
        for _ in range(500):
            _, cz = await get(session, f"{mon}/connz", tls)
            if any(c.get("name") == "sub" and c["subscriptions"] == subs for c in cz["connections"]):
                return
            await asyncio.sleep(0.01)
    raise AssertionError(f"{mon}: the subscriptions never showed up")


async def traffic(url: str, mon: str, tls: ssl.SSLContext | None, mon_tls: ssl.SSLContext | None) -> list[Any]:
    """Two clients: a queue subscriber and an auto-unsubscribing one, 5 messages of 7 bytes."""
    kw: dict[str, Any] = {"tls": tls} if tls is not None else {}
    a = await nats.connect(url, name="sub", allow_reconnect=False, **kw)
    b = await nats.connect(url, name="pub", allow_reconnect=False, **kw)
    got: list[bytes] = []
    done = asyncio.Event()

    async def on_msg(msg: Any) -> None:
        got.append(msg.data)
        if len(got) == 5:
            done.set()

    await a.subscribe("foo.*", queue="q", cb=on_msg)
    s2 = await a.subscribe("bar")
    await s2.unsubscribe(5)
    await a.flush()
    await wait_subscribed(mon, mon_tls, 2)
    for i in range(5):
        await b.publish(f"foo.{i}", b"payload")
    await b.flush()
    try:
        await asyncio.wait_for(done.wait(), 5)
    except TimeoutError:
        raise AssertionError(f"{url}: {len(got)} of 5 messages delivered") from None
    await a.flush()
    return [a, b]


async def both_traffic(pair: Pair) -> list[Any]:
    return await traffic(pair.nats_url, pair.nats_mon, pair.tls, pair.mon_tls) + await traffic(
        pair.py_url, pair.py_mon, pair.tls, pair.mon_tls
    )


ENDPOINTS = ["varz", "connz?subs=detail&auth=1", "connz?subs=1", "routez", "gatewayz", "leafz", "accountz",
             "accountz?acc=$G", "healthz", "subsz", "subsz?subs=1&test=foo.x"]


async def compare_all(pair: Pair) -> dict[str, tuple[Any, Any]]:
    results: dict[str, tuple[Any, Any]] = {}
    async with aiohttp.ClientSession() as session:
        for ep in ENDPOINTS:
            st_n, theirs = await get(session, f"{pair.nats_mon}/{ep}", pair.mon_tls)
            st_p, ours = await get(session, f"{pair.py_mon}/{ep}", pair.mon_tls)
            assert st_n == st_p == 200, (ep, st_n, st_p)
            results[ep] = (theirs, ours)
    return results


def assert_same_shape(results: dict[str, tuple[Any, Any]]) -> None:
    problems: list[str] = []
    for ep, (theirs, ours) in results.items():
        problems += shape_diff(theirs, ours, ep.split("?")[0])
    assert not problems, "\n".join(problems)


def _subs(details: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Subscription details without the cid, in sid order (nats-server lists a Go map)."""
    return sorted(({k: v for k, v in d.items() if k != "cid"} for d in details), key=lambda d: d["sid"])


def assert_same_counters(results: dict[str, tuple[Any, Any]]) -> None:
    (nv, pv) = results["varz"]
    for k in ("in_msgs", "in_bytes", "out_msgs", "out_bytes", "in_client_msgs", "out_client_bytes",
              "connections", "total_connections", "slow_consumers", "max_payload", "max_connections",
              "ping_interval", "write_deadline", "auth_timeout", "tls_timeout", "https_port", "http_port",
              "tls_required", "tls_verify", "tls_cert_not_after", "proto", "version"):
        assert nv.get(k) == pv.get(k), (k, nv.get(k), pv.get(k))
    nc, pc = results["connz?subs=detail&auth=1"]
    assert nc["num_connections"] == pc["num_connections"] == 2
    for theirs, ours in zip(nc["connections"], pc["connections"], strict=True):
        for k in ("name", "lang", "version", "in_msgs", "out_msgs", "in_bytes", "out_bytes", "subscriptions",
                  "pending_bytes", "tls_version"):
            assert theirs.get(k) == ours.get(k), (k, theirs.get(k), ours.get(k))
        assert _subs(theirs.get("subscriptions_list_detail", [])) == _subs(ours.get("subscriptions_list_detail", []))
        assert theirs.get("tls_peer_certs") == ours.get("tls_peer_certs")
    ns, ps = results["subsz?subs=1&test=foo.x"]
    assert ns["total"] == ps["total"] == 1
    assert _subs(ns["subscriptions_list"]) == _subs(ps["subscriptions_list"])
    assert results["healthz"][0] == results["healthz"][1] == {"status": "ok"}


async def test_shapes_and_counters_plain(plain_pair: Pair) -> None:
    clients = await both_traffic(plain_pair)
    try:
        results = await compare_all(plain_pair)
    finally:
        for c in clients:
            await c.close()
    assert_same_shape(results)
    assert_same_counters(results)
    nv, pv = results["varz"]
    assert "tls_cert_not_after" not in nv and "tls_cert_not_after" not in pv


async def test_shapes_and_counters_tls(tls_pair: Pair, certs: CertSet) -> None:
    clients = await both_traffic(tls_pair)
    try:
        results = await compare_all(tls_pair)
    finally:
        for c in clients:
            await c.close()
    assert_same_shape(results)
    assert_same_counters(results)
    nv, pv = results["varz"]
    expected = certs.server.cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert nv["tls_cert_not_after"] == pv["tls_cert_not_after"] == expected
    (_, pc) = results["connz?subs=detail&auth=1"]
    for conn in pc["connections"]:
        assert conn["tls_version"] in ("1.2", "1.3") and conn["tls_cipher_suite"].startswith("TLS_")
        assert isinstance(conn["tls_group"], str) and conn["tls_group"]
        assert conn["tls_peer_certs"][0] == {
            "subject": "CN=alice,O=Company,C=US",
            "spki_sha256": certs.alice.spki_sha256,
            "cert_sha256": certs.alice.cert_sha256,
        }


async def test_closed_connections_shape(plain_pair: Pair) -> None:
    for c in await both_traffic(plain_pair):
        await c.close()
    async with aiohttp.ClientSession() as session:

        async def both(q: str) -> tuple[Any, Any]:
            for _ in range(100):  # the close reaches the servers asynchronously
                _, theirs = await get(session, f"{plain_pair.nats_mon}/{q}")
                _, ours = await get(session, f"{plain_pair.py_mon}/{q}")
                if theirs["total"] == ours["total"] == 2:
                    return theirs, ours
                await asyncio.sleep(0.02)
            raise AssertionError(f"closed connections not listed: {theirs['total']} / {ours['total']}")

        theirs, ours = await both("connz?state=closed&subs=detail&auth=1")
    assert not shape_diff(theirs, ours, "connz")
    assert [c["reason"] for c in theirs["connections"]] == [c["reason"] for c in ours["connections"]]
    assert [c["in_msgs"] for c in theirs["connections"]] == [c["in_msgs"] for c in ours["connections"]]


BAD_QUERIES = [
    "connz?auth=x", "connz?limit=abc", "connz?offset=1.5", "connz?cid=-1", "connz?cid=abc", "connz?sort=bad",
    "connz?sort=stop", "connz?sort=reason", "connz?state=bad", "subsz?subs=detail", "subsz?test=foo.*",
    "subsz?limit=x", "routez?subs=x", "leafz?subs=detail", "gatewayz?accs=maybe", "accountz?acc=nope",
    "healthz?details=bad", "healthz?js-enabled-only=2",
]
STATUS_QUERIES = ["healthz?consumer=c", "healthz?stream=s&details=1", "healthz?js-enabled-only=true",
                  "connz?acc=nope", "nothing", "varz/", "healthz?js-server-only=1"]


async def test_errors_match_nats_server(plain_pair: Pair) -> None:
    async with aiohttp.ClientSession() as session:
        for q in BAD_QUERIES + STATUS_QUERIES:
            async with session.get(f"{plain_pair.nats_mon}/{q}") as r:
                n = (r.status, r.headers.get("Content-Type"), await r.text())
            async with session.get(f"{plain_pair.py_mon}/{q}") as r:
                p = (r.status, r.headers.get("Content-Type"), await r.text())
            if q == "connz?acc=nope":  # carries a timestamp
                n = (n[0], n[1], re.sub(r'"now": "[^"]+"', "", n[2]))
                p = (p[0], p[1], re.sub(r'"now": "[^"]+"', "", p[2]))
            assert p == n, q
            if q in BAD_QUERIES:
                assert n[0] == 400

