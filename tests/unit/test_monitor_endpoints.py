"""The monitoring endpoint builders (pynatsd.monitor.endpoints) against a small fake server
shaped like the interface contract: paging, sorting, filters, closed connections, TLS fields,
parameter errors (nats-server's texts) and the /varz TLS and cluster sections."""

from __future__ import annotations

import collections
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pynatsd.config.options import AuthOptions, ClusterOptions, ServerOptions, TLSOptions
from pynatsd.monitor import endpoints as ep
from pynatsd.monitor import gofmt
from pynatsd.subjects import TrieStats
from pynatsd.tls.certs import issue, name, new_key, write_cert, write_key

T0 = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)


@dataclass
class Sub:
    client: Any
    subject: bytes
    queue: bytes
    sid: bytes
    delivered: int = 0
    max_msgs: int = 0


@dataclass
class Client:
    cid: int
    start: dt.datetime = T0
    last_activity: dt.datetime = T0
    host: str = "127.0.0.1"
    port: int = 40000
    rtt: float | None = None
    pending_bytes: int = 0
    in_msgs: int = 0
    out_msgs: int = 0
    in_bytes: int = 0
    out_bytes: int = 0
    subs: dict[bytes, Sub] = field(default_factory=dict)
    name: str = ""
    lang: str = ""
    version: str = ""
    user: str | None = None
    account: str = "$G"
    tls_info: dict[str, Any] | None = None
    tls_first: bool = False
    stop: dt.datetime | None = None
    closed_reason: str | None = None

    def sub(self, subject: str, queue: str = "", sid: str | None = None, **kw: int) -> Client:
        sid = sid or str(len(self.subs) + 1)
        self.subs[sid.encode()] = Sub(self, subject.encode(), queue.encode(), sid.encode(), **kw)
        return self


class Trie:
    def __init__(self, server: FakeServer) -> None:
        self.server = server

    def count(self) -> int:
        return sum(len(c.subs) for c in self.server.clients.values())

    def stats(self) -> TrieStats:
        return TrieStats(num_subscriptions=self.count(), num_cache=3, num_inserts=5, num_removes=1,
                         num_matches=8, cache_hit_rate=0.25, max_fanout=3, avg_fanout=2.0)


@dataclass
class Stats:
    in_msgs: int = 0
    out_msgs: int = 0
    in_bytes: int = 0
    out_bytes: int = 0
    slow_consumers: int = 0
    total_connections: int = 0
    stale_connections: int = 0


class FakeServer:
    def __init__(self, opts: ServerOptions | None = None, clients: list[Client] = (), closed: list[Client] = ()) -> None:  # type: ignore[assignment]
        self.opts = opts or ServerOptions(host="127.0.0.1", port=-1)
        self.server_id = "N" + "A" * 55
        self.server_name = "srv"
        self.start_time = T0
        self.config_load_time = T0
        self.clients = {c.cid: c for c in clients}
        self.closed_clients = collections.deque(closed)
        self.sublist = Trie(self)
        self.stats = Stats()
        self.port = 4222
        self.http_port = 0


NOW = T0 + dt.timedelta(seconds=100)


def cids(result: dict[str, Any]) -> list[int]:
    return [c["cid"] for c in result["connections"]]


# -- /connz ------------------------------------------------------------------------------------


def test_connz_entry_fields_and_order() -> None:
    c = Client(1, rtt=0.0064209314, in_msgs=1, out_msgs=2, in_bytes=3, out_bytes=4, name="c1", lang="python3",
               version="2.16.0", last_activity=T0 + dt.timedelta(seconds=40))
    res = ep.connz(FakeServer(clients=[c]), now=NOW)
    assert list(res) == ["server_id", "now", "num_connections", "total", "offset", "limit", "connections"]
    (info,) = res["connections"]
    assert list(info) == [  # nats-server's order (observed)
        "cid", "kind", "type", "ip", "port", "start", "last_activity", "rtt", "uptime", "idle",
        "pending_bytes", "in_msgs", "out_msgs", "in_bytes", "out_bytes", "subscriptions", "name", "lang",
        "version",
    ]
    assert info["rtt"] == "6.420931ms"
    assert info["uptime"] == "1m40s"
    assert info["idle"] == "1m0s"
    assert info["kind"] == "Client" and info["type"] == "nats"


def test_connz_paging_and_total() -> None:
    srv = FakeServer(clients=[Client(i, user=f"u{i}") for i in (3, 1, 2, 5, 4)])
    res = ep.connz(srv, ep.ConnzOptions(offset=1, limit=2), now=NOW)
    assert cids(res) == [2, 3]
    assert (res["num_connections"], res["total"], res["offset"], res["limit"]) == (2, 5, 1, 2)
    res = ep.connz(srv, ep.ConnzOptions(offset=10), now=NOW)
    assert res["connections"] == [] and res["total"] == 5 and res["offset"] == 10
    res = ep.connz(srv, ep.ConnzOptions(offset=-3, limit=0), now=NOW)
    assert res["offset"] == 0 and res["limit"] == 1024
    # cid and user filters leave total at the connections in scope (as nats-server)
    res = ep.connz(srv, ep.ConnzOptions(cid=4), now=NOW)
    assert cids(res) == [4] and res["total"] == 5 and res["limit"] == 1
    res = ep.connz(srv, ep.ConnzOptions(cid=99), now=NOW)
    assert cids(res) == [] and res["limit"] == 1
    res = ep.connz(srv, ep.ConnzOptions(user="u2", auth=True), now=NOW)
    assert cids(res) == [2] and res["total"] == 5


def test_connz_sorts() -> None:
    cl = [
        Client(1, in_msgs=5, out_msgs=1, in_bytes=10, out_bytes=300, rtt=0.003,
               last_activity=T0 + dt.timedelta(seconds=50), start=T0).sub("a").sub("b"),
        Client(2, in_msgs=1, out_msgs=9, in_bytes=500, out_bytes=1, rtt=0.001, pending_bytes=7,
               last_activity=T0 + dt.timedelta(seconds=90), start=T0 + dt.timedelta(seconds=30)),
        Client(3, in_msgs=3, out_msgs=3, in_bytes=20, out_bytes=20, rtt=0.002,
               last_activity=T0 + dt.timedelta(seconds=10), start=T0 + dt.timedelta(seconds=60)).sub("c"),
    ]
    srv = FakeServer(clients=cl)

    def order(sort: str) -> list[int]:
        return cids(ep.connz(srv, ep.ConnzOptions(sort=sort), now=NOW))

    assert order("cid") == order("start") == order("") == [1, 2, 3]
    assert order("subs") == [1, 3, 2]
    assert order("pending") == [2, 1, 3]
    assert order("msgs_to") == [2, 3, 1]
    assert order("msgs_from") == [1, 3, 2]
    assert order("bytes_to") == [1, 3, 2]
    assert order("bytes_from") == [2, 3, 1]
    assert order("last") == [2, 1, 3]
    assert order("idle") == [3, 1, 2]
    assert order("uptime") == [3, 2, 1]  # ascending: the youngest first
    assert order("rtt") == [1, 3, 2]


@pytest.mark.parametrize(
    ("opts", "text"),
    [
        (ep.ConnzOptions(sort="bad"), "invalid sorting option: bad"),
        (ep.ConnzOptions(sort="stop"), "sort by stop only valid on closed connections"),
        (ep.ConnzOptions(sort="reason", state="any"), "sort by reason only valid on closed connections"),
    ],
)
def test_connz_sort_errors(opts: ep.ConnzOptions, text: str) -> None:
    with pytest.raises(ep.BadRequest) as e:
        ep.connz(FakeServer(), opts)
    assert str(e.value) == text


def test_connz_closed_connections() -> None:
    stop = T0 + dt.timedelta(seconds=65)
    gone = Client(7, stop=stop, closed_reason="Client Closed", last_activity=T0 + dt.timedelta(seconds=5),
                  pending_bytes=99).sub("x", max_msgs=5)
    gone2 = Client(8, stop=T0 + dt.timedelta(seconds=70), closed_reason="Authentication Timeout")
    srv = FakeServer(clients=[Client(1)], closed=[gone, gone2])
    res = ep.connz(srv, ep.ConnzOptions(state="closed", subs_detail=True), now=NOW)
    assert cids(res) == [7, 8] and res["total"] == 2
    info = res["connections"][0]
    assert list(info)[:10] == ["cid", "kind", "type", "ip", "port", "start", "last_activity", "stop", "reason", "rtt"]
    assert info["reason"] == "Client Closed"
    assert info["stop"] == stop
    assert info["uptime"] == "1m5s" and info["idle"] == "1m0s"  # measured to the close
    assert info["pending_bytes"] == 0
    assert info["subscriptions_list_detail"] == [
        {"account": "$G", "account_tag": "$G", "subject": "x", "sid": "1", "msgs": 0, "cid": 7}  # no max (observed)
    ]
    assert cids(ep.connz(srv, ep.ConnzOptions(state="closed", sort="stop"), now=NOW)) == [8, 7]
    assert cids(ep.connz(srv, ep.ConnzOptions(state="closed", sort="reason"), now=NOW)) == [8, 7]
    res = ep.connz(srv, ep.ConnzOptions(state="any"), now=NOW)
    assert cids(res) == [1, 7, 8] and res["total"] == 3
    # a cid that is open wins over the closed list; a closed one is found with state=any
    assert cids(ep.connz(srv, ep.ConnzOptions(state="any", cid=8), now=NOW)) == [8]


def test_connz_subscriptions_lists() -> None:
    c = Client(1).sub("foo.*", "q").sub("bar", max_msgs=5)
    srv = FakeServer(clients=[c, Client(2)])
    res = ep.connz(srv, ep.ConnzOptions(subs=True), now=NOW)
    assert res["connections"][0]["subscriptions_list"] == ["foo.*", "bar"]
    assert "subscriptions_list" not in res["connections"][1]  # omitted when empty
    res = ep.connz(srv, ep.ConnzOptions(subs_detail=True), now=NOW)
    assert res["connections"][0]["subscriptions_list_detail"] == [  # observed shape
        {"subject": "foo.*", "qgroup": "q", "sid": "1", "msgs": 0, "cid": 1},
        {"subject": "bar", "sid": "2", "msgs": 0, "max": 5, "cid": 1},
    ]


def test_connz_auth_and_tls_fields() -> None:
    peer = {"subject": "CN=alice,O=Acme", "spki_sha256": "ab" * 32, "cert_sha256": "cd" * 32}
    tls = {"version": "1.3", "cipher_suite": "TLS_AES_128_GCM_SHA256", "group": "X25519MLKEM768", "peer_certs": [peer]}
    a = Client(1, user="alice", tls_info=tls, tls_first=True)
    b = Client(2, user="bob", account="ACME")
    srv = FakeServer(clients=[a, b])
    res = ep.connz(srv, now=NOW)
    ia, ib = res["connections"]
    assert ia["tls_version"] == "1.3" and ia["tls_cipher_suite"] == "TLS_AES_128_GCM_SHA256"
    assert ia["tls_group"] == "X25519MLKEM768" and ia["tls_first"] is True
    assert "tls_peer_certs" not in ia and "authorized_user" not in ia  # auth only
    assert "tls_version" not in ib
    res = ep.connz(srv, ep.ConnzOptions(auth=True), now=NOW)
    ia, ib = res["connections"]
    assert ia["tls_peer_certs"] == [peer]
    assert ia["authorized_user"] == "alice" and "account" not in ia and ia["name_tag"] == "$G"
    assert ib["authorized_user"] == "bob" and ib["account"] == "ACME"
    srv.accounts = {"ACME": object()}  # type: ignore[attr-defined]
    assert cids(ep.connz(srv, ep.ConnzOptions(acc="ACME"), now=NOW)) == [2]
    res = ep.connz(srv, ep.ConnzOptions(acc="NOPE"), now=NOW)
    assert res["server_id"] == "" and res["connections"] is None  # nats-server's answer (observed)


@pytest.mark.parametrize(
    ("query", "text"),
    [
        ({"auth": "x"}, """Error decoding boolean for 'auth': strconv.ParseBool: parsing "x": invalid syntax"""),
        ({"limit": "abc"}, """Error decoding int for 'limit': strconv.Atoi: parsing "abc": invalid syntax"""),
        ({"cid": "-1"}, """Error decoding uint64 for 'cid': strconv.ParseUint: parsing "-1": invalid syntax"""),
        ({"state": "bad"}, "Error decoding state for bad"),
        ({"subs": "nope"}, """Error decoding boolean for 'subs': strconv.ParseBool: parsing "nope": invalid syntax"""),
    ],
)
def test_connz_query_errors(query: dict[str, str], text: str) -> None:
    with pytest.raises(ep.BadRequest) as e:
        ep.parse_connz_query(query)
    assert str(e.value) == text


def test_connz_query_parsing() -> None:
    o = ep.parse_connz_query({"subs": "DETAIL", "state": "ALL", "auth": "T", "offset": "2", "limit": "3", "cid": "4"})
    assert (o.subs, o.subs_detail, o.state, o.auth, o.offset, o.limit, o.cid) == (False, True, "any", True, 2, 3, 4)
    assert ep.parse_connz_query({}).state == "open"


# -- /subsz ------------------------------------------------------------------------------------


def test_subsz() -> None:
    srv = FakeServer(clients=[Client(1).sub("foo.*", "q").sub("bar"), Client(2).sub("foo.>").sub("baz")])
    res = ep.subsz(srv, {}, now=NOW)
    assert list(res) == ["server_id", "now", "num_subscriptions", "num_cache", "num_inserts", "num_removes",
                         "num_matches", "cache_hit_rate", "max_fanout", "avg_fanout", "total", "offset", "limit"]
    assert res["num_subscriptions"] == 4 and res["total"] == 0  # total only counts a listing
    assert res["cache_hit_rate"] == 0.25 and res["max_fanout"] == 3
    assert res["avg_fanout"] == 2 and isinstance(res["avg_fanout"], int)  # Go writes 2.0 as 2
    res = ep.subsz(srv, {"subs": "1"}, now=NOW)
    assert res["total"] == 4
    assert res["subscriptions_list"][0] == {"account": "$G", "account_tag": "$G", "subject": "foo.*",
                                            "qgroup": "q", "sid": "1", "msgs": 0, "cid": 1}
    res = ep.subsz(srv, {"subs": "1", "test": "foo.x"}, now=NOW)
    assert [(s["cid"], s["subject"]) for s in res["subscriptions_list"]] == [(1, "foo.*"), (2, "foo.>")]
    res = ep.subsz(srv, {"subs": "1", "test": "foo.x.y"}, now=NOW)
    assert [s["subject"] for s in res["subscriptions_list"]] == ["foo.>"]
    res = ep.subsz(srv, {"subs": "1", "test": "nothing"}, now=NOW)
    assert res["total"] == 0 and "subscriptions_list" not in res
    res = ep.subsz(srv, {"subs": "1", "offset": "1", "limit": "2"}, now=NOW)
    assert [s["subject"] for s in res["subscriptions_list"]] == ["bar", "foo.>"] and res["total"] == 4
    res = ep.subsz(srv, {"acc": "nope"}, now=NOW)
    assert res["num_subscriptions"] == 0 and res["cache_hit_rate"] == 0


@pytest.mark.parametrize("bad", ["foo.*", "foo.>", "foo..bar", "a b", ".x"])
def test_subsz_invalid_test_subject(bad: str) -> None:
    with pytest.raises(ep.BadRequest) as e:
        ep.subsz(FakeServer(), {"test": bad})
    assert str(e.value) == f"invalid test subject, must be valid publish subject: {bad}"


def test_subsz_subs_detail_is_a_bad_bool() -> None:
    with pytest.raises(ep.BadRequest, match="Error decoding boolean for 'subs'"):
        ep.subsz(FakeServer(), {"subs": "detail"})


# -- /varz -------------------------------------------------------------------------------------


def _cert_files(tmp_path: Path, days: int) -> tuple[str, str, dt.datetime]:
    key = new_key("ec")
    not_after = (dt.datetime.now(dt.UTC) + dt.timedelta(days=days)).replace(microsecond=0)
    cert = issue(name("localhost"), key, dns=("localhost",), server=True, not_after=not_after)
    cf, kf = tmp_path / f"c{days}.pem", tmp_path / f"k{days}.pem"
    write_cert(cf, cert)
    write_key(kf, key)
    return str(cf), str(kf), not_after


def test_varz_plain() -> None:
    srv = FakeServer(ServerOptions(host="127.0.0.1", port=-1, http_port=-1, max_subscriptions=0))
    srv.stats = Stats(in_msgs=3, out_msgs=4, in_bytes=5, out_bytes=6, total_connections=2)
    v = ep.varz(srv, http_req_stats={"/varz": 1}, now=NOW)
    assert v["uptime"] == "1m40s" and v["start"] == T0 and v["now"] == NOW
    assert v["ping_interval"] == 120_000_000_000 and v["write_deadline"] == 10_000_000_000
    assert v["auth_timeout"] == 2 and isinstance(v["auth_timeout"], int)
    assert v["tls_timeout"] == 2
    for k in ("tls_required", "tls_verify", "auth_required", "tls_cert_not_after", "max_subscriptions"):
        assert k not in v
    assert (v["in_msgs"], v["out_msgs"], v["in_bytes"], v["out_bytes"]) == (3, 4, 5, 6)
    assert (v["in_client_msgs"], v["out_client_bytes"], v["total_connections"]) == (3, 6, 2)
    assert v["cluster"] == {} and v["gateway"] == {} and v["jetstream"] == {}
    assert v["http_req_stats"] == {"/varz": 1} and v["http_port"] == -1
    assert v["slow_consumer_stats"] == {"clients": 0, "routes": 0, "gateways": 0, "leafs": 0}


def test_varz_tls_and_cluster(tmp_path: Path) -> None:
    cf, kf, not_after = _cert_files(tmp_path, 400)
    ccf, ckf, cluster_not_after = _cert_files(tmp_path, 200)
    opts = ServerOptions(
        host="127.0.0.1",
        tls=TLSOptions(cert_file=cf, key_file=kf, verify=True, timeout=3.0),
        auth=AuthOptions(user="bob", password="pw"),
        cluster=ClusterOptions(name="C1", host="127.0.0.1", port=6222, routes=("nats://u:p@10.0.0.1:6222",),
                               tls=TLSOptions(cert_file=ccf, key_file=ckf)),
    )
    v = ep.varz(FakeServer(opts), now=NOW)
    assert v["tls_required"] is True and v["tls_verify"] is True and v["auth_required"] is True
    assert v["auth_timeout"] == 4 and v["tls_timeout"] == 3  # tls timeout + 1, as nats-server
    assert v["tls_cert_not_after"] == not_after
    assert gofmt.go_json(v).decode().count(f'"tls_cert_not_after": "{gofmt.rfc3339(not_after)}"') == 1
    assert list(v)[-1] == "tls_cert_not_after"
    assert v["cluster"] == {
        "name": "C1", "addr": "127.0.0.1", "cluster_port": 6222, "auth_timeout": 3, "urls": ["10.0.0.1:6222"],
        "tls_timeout": 2, "tls_required": True, "tls_verify": True, "tls_cert_not_after": cluster_not_after,
    }
    # the live TLS context (if the server built one) wins over the file
    srv = FakeServer(opts)
    srv.tls = type("ServerTLS", (), {"not_after": T0})()  # type: ignore[attr-defined]
    assert ep.varz(srv, now=NOW)["tls_cert_not_after"] == T0


# -- /healthz, /accountz, /routez, /gatewayz, /leafz ------------------------------------------


def test_healthz() -> None:
    srv = FakeServer()
    assert ep.healthz(srv, {}, ready=True) == ep.HealthResult(200, {"status": "ok"})
    assert ep.healthz(srv, {"js-enabled-only": "true"}, ready=True).status_code == 200
    r = ep.healthz(srv, {"stream": "s"}, ready=True)
    assert r == ep.HealthResult(400, {"status": "error",
                                      "error": '"account" must not be empty when checking stream health'})
    r = ep.healthz(srv, {"stream": "s", "details": "1"}, ready=True)
    assert r.status_code == 400 and r.body["errors"][0]["type"] == "BAD_REQUEST"
    r = ep.healthz(srv, {"consumer": "c"}, ready=True)
    assert r.body["error"] == '"stream" must not be empty when checking consumer health'
    r = ep.healthz(srv, {}, ready=False, not_ready_reason="server")
    assert r == ep.HealthResult(500, {"status": "error",
                                      "error": "failed to be ready for connections after 1ms: server"})
    r = ep.healthz(srv, {}, ready=True, cert_problems=["TLS certificate of the client listener expired at X"])
    assert r == ep.HealthResult(503, {"status": "error",
                                      "error": "TLS certificate of the client listener expired at X"})
    with pytest.raises(ep.BadRequest, match="Error decoding boolean for 'details'"):
        ep.healthz(srv, {"details": "bad"}, ready=True)


def test_accountz() -> None:
    srv = FakeServer(clients=[Client(1).sub("a"), Client(2, account="ACME").sub("b").sub("c")])
    srv.accounts = {"ACME": object()}  # type: ignore[attr-defined]
    res = ep.accountz(srv, {}, now=NOW)
    assert res == {"server_id": srv.server_id, "now": NOW, "accounts": ["$G", "ACME"]}
    d = ep.accountz(srv, {"acc": "ACME"}, now=NOW)["account_detail"]
    assert (d["account_name"], d["client_connections"], d["subscriptions"]) == ("ACME", 1, 2)
    with pytest.raises(ep.BadRequest) as e:
        ep.accountz(srv, {"acc": "nope"})
    assert str(e.value) == "Account nope does not exist"


def test_cluster_endpoints_standalone_shapes() -> None:
    srv = FakeServer()
    assert ep.routez(srv, {}, now=NOW) == {"server_id": srv.server_id, "server_name": "srv", "now": NOW,
                                           "num_routes": 0, "routes": []}
    assert ep.gatewayz(srv, {}, now=NOW) == {"server_id": srv.server_id, "now": NOW,
                                             "outbound_gateways": {}, "inbound_gateways": {}}
    assert ep.leafz(srv, {}, now=NOW) == {"server_id": srv.server_id, "now": NOW, "leafnodes": 0, "leafs": []}
    with pytest.raises(ep.BadRequest):
        ep.leafz(srv, {"subs": "detail"})
    with pytest.raises(ep.BadRequest):
        ep.routez(srv, {"subs": "x"})
