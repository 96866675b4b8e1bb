"""The monitoring endpoints as pure functions: query parameters in, nats-server-shaped dicts out.

Each ``*z`` function reads the live server object (attributes listed under "server core" in
the interface contract) and returns a dict whose keys, nesting and value types are those of
nats-server 2.15's JSON, in the same order; ``gofmt.go_json`` turns it into the same bytes.
Fields nats-server leaves out when empty (``omitempty``) are left out here under the same
conditions. Extra pynatsd fields: ``tls_group`` in a /connz entry (the negotiated key-exchange
group). Bad query values raise ``BadRequest`` carrying nats-server's plain-text message.

No I/O here except reading process statistics (/proc) for /varz ``mem`` and ``cpu``.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import resource
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pynatsd import NATS_SERVER_COMPAT_VERSION
from pynatsd.config.options import DEFAULT_AUTH_TIMEOUT, DEFAULT_TLS_TIMEOUT, ServerOptions
from pynatsd.monitor import gofmt
from pynatsd.monitor.certwatch import served_not_after

GLOBAL_ACCOUNT = "$G"
DEFAULT_LIST_SIZE = 1024  # default /connz and /subsz page size (nats-server's)
PROTO_VERSION = 1

T = TypeVar("T")


class BadRequest(Exception):
    """A query nats-server answers with 400 and this plain-text message."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


def _seconds_between(later: dt.datetime, earlier: dt.datetime) -> float:
    return (_aware(later) - _aware(earlier)).total_seconds()


def _text(v: bytes | str | None) -> str:
    if v is None:
        return ""
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return v


def _gonum(x: float) -> float | int:
    """Go marshals float64 2.0 as ``2``; keep JSON types identical for integral values."""
    return int(x) if float(x).is_integer() else x


# ---------------------------------------------------------------------------------------------
# query parsing (Go's url.Values.Get: first value, "" = absent)


def _query_value(query: Mapping[str, str], name: str, parse: Callable[[str], T], kind: str, absent: T) -> T:
    s = query.get(name, "")
    if s == "":
        return absent
    try:
        return parse(s)
    except gofmt.GoParseError as e:
        raise BadRequest(f"Error decoding {kind} for '{name}': {e}") from None


def q_bool(query: Mapping[str, str], name: str) -> bool:
    return _query_value(query, name, gofmt.parse_bool, "boolean", False)


def q_int(query: Mapping[str, str], name: str) -> int:
    return _query_value(query, name, gofmt.atoi, "int", 0)


def q_uint64(query: Mapping[str, str], name: str) -> int:
    return _query_value(query, name, gofmt.parse_uint64, "uint64", 0)


def q_subs(query: Mapping[str, str]) -> tuple[bool, bool]:
    """``subs``: a bool, or ``detail`` (any case). Returns (subs, detail)."""
    if query.get("subs", "").lower() == "detail":
        return False, True
    return q_bool(query, "subs"), False


# ---------------------------------------------------------------------------------------------
# options-derived values shared by /varz and INFO-like fields


def auth_timeout(opts: ServerOptions) -> float:
    """nats-server's default: the TLS timeout + 1s when the client port has TLS, else 2s."""
    if opts.auth.timeout is not None:
        return opts.auth.timeout
    if opts.tls is not None:
        return opts.tls.timeout + 1.0
    return DEFAULT_AUTH_TIMEOUT


def tls_required(opts: ServerOptions) -> bool:
    return opts.tls is not None and not opts.allow_non_tls


def tls_verify(opts: ServerOptions) -> bool:
    t = opts.tls
    return t is not None and (t.verify or (t.verify_and_map and not t.verify_from_flags))


# ---------------------------------------------------------------------------------------------
# process statistics for /varz


class ProcessStats:
    """RSS and CPU percentage of this process, sampled like ``ps`` would over the interval
    between calls (the first call averages over the process lifetime)."""

    def __init__(self) -> None:
        self._last_wall = time.monotonic()
        self._last_cpu = self._cpu_seconds()
        self._start_wall = self._last_wall
        self._pct = 0.0
        self._first = True

    @staticmethod
    def _cpu_seconds() -> float:
        t = os.times()
        return t.user + t.system

    @staticmethod
    def rss() -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            # ru_maxrss is KiB on Linux: a peak, not current, but the best portable figure
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def cpu_percent(self) -> float:
        now = time.monotonic()
        cpu = self._cpu_seconds()
        wall = now - self._last_wall
        if wall >= 0.5 or self._first:
            if wall > 0:
                self._pct = round(100.0 * (cpu - self._last_cpu) / wall, 2)
            self._last_wall, self._last_cpu, self._first = now, cpu, False
        return max(self._pct, 0.0)


# ---------------------------------------------------------------------------------------------
# /varz


def _usable_cpus() -> int:
    """The CPUs this process may run on (what GOMAXPROCS defaults to in Go)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _leaf_varz(server: Any) -> dict[str, Any]:
    """(leafnodes helper L) /varz "leaf", in nats-server's shape: the listener's host, port and
    timeouts when there is one, and the remotes dialed."""
    lo = getattr(server.opts, "leafnodes", None)
    if lo is None:
        return {}
    out: dict[str, Any] = {}
    if lo.port:
        out["host"] = lo.host
        out["port"] = getattr(server, "leafnode_port", 0) or lo.port
        tls_timeout = lo.tls.timeout if lo.tls is not None and lo.tls.timeout else DEFAULT_TLS_TIMEOUT
        at = lo.auth_timeout or (tls_timeout + 1.0 if lo.tls is not None else DEFAULT_AUTH_TIMEOUT)
        out["auth_timeout"] = _gonum(at)
        out["tls_timeout"] = _gonum(tls_timeout)
        if lo.tls is not None:
            out["tls_required"] = True
            if lo.tls.verify or lo.tls.verify_and_map:
                out["tls_verify"] = True
            na = served_not_after(server, "leaf")
            if na is not None:
                out["tls_cert_not_after"] = na
    if lo.remotes:
        out["remotes"] = [
            {"local_account": r.account or "$G", "urls": [_host_port(u) for u in r.urls]} for r in lo.remotes
        ]
    return out


def _gateway_varz(server: Any) -> dict[str, Any]:
    """/varz "gateway": the gateway manager's section plus, as nats-server reports it, the
    NotAfter of the gateway port's certificate."""
    if getattr(server, "gateways", None) is None:
        return {}
    out: dict[str, Any] = server.gateways.varz()
    na = served_not_after(server, "gateway")
    if na is not None:
        out["tls_cert_not_after"] = na
    return out


def _cluster_varz(server: Any) -> dict[str, Any]:
    c = server.opts.cluster
    if c is None:
        return {}
    routes = getattr(server, "routes", None)  # pynatsd.cluster.routes.RouteManager when running
    out: dict[str, Any] = {}
    name = getattr(routes, "cluster_name", None) or c.name  # a dynamic name once chosen
    if name:
        out["name"] = name
    if c.host:
        out["addr"] = c.host
    port = getattr(server, "cluster_port", 0) or c.port
    if port:
        out["cluster_port"] = port
    tls_timeout = c.tls.timeout if c.tls is not None else DEFAULT_TLS_TIMEOUT
    cat = c.auth_timeout
    if cat is None:  # nats-server's default, as the route manager applies it
        cat = tls_timeout + 1.0 if c.tls is not None else DEFAULT_AUTH_TIMEOUT
    out["auth_timeout"] = _gonum(cat)
    if c.routes:
        out["urls"] = [_host_port(u) for u in c.routes]
    out["tls_timeout"] = _gonum(tls_timeout)
    if c.tls is not None:
        # nats-server quirk: in the cluster section tls_verify mirrors tls_required
        out["tls_required"] = True
        out["tls_verify"] = True
    if c.pool_size > 0:
        out["pool_size"] = c.pool_size
    wd = getattr(c, "write_deadline", None)
    if wd:
        out["write_deadline"] = gofmt.seconds_to_ns(wd)
    na = served_not_after(server, "cluster")
    if na is not None:
        out["tls_cert_not_after"] = na
    return out


def _host_port(url: str) -> str:
    """``nats://user:pw@host:port`` -> ``host:port`` (Go url.URL.Host)."""
    rest = url.split("://", 1)[-1]
    rest = rest.split("/", 1)[0]
    return rest.rsplit("@", 1)[-1]


def _build_info() -> tuple[str, str]:
    """(git_commit, go) exactly as the server's INFO reports them."""
    try:
        from pynatsd import server as server_mod

        return str(getattr(server_mod, "GIT_COMMIT", "")), str(server_mod.go_field())
    except (ImportError, AttributeError):
        return "", f"python{platform.python_version()}"


def _advertised(opts: ServerOptions, port: int) -> tuple[str, int]:
    """nats-server's info host/port: client_advertise ("host[:port]") wins over the listener."""
    adv = opts.client_advertise
    if not adv:
        return opts.host, port
    if adv.startswith("["):  # [v6]:port
        h, _, rest = adv[1:].partition("]")
        return h, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else port
    if adv.count(":") == 1:
        h, _, p = adv.partition(":")
        return h, int(p) if p.isdigit() else port
    return adv, port


def varz(
    server: Any,
    *,
    http_req_stats: Mapping[str, int] | None = None,
    proc: ProcessStats | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    opts: ServerOptions = server.opts
    now = now or utcnow()
    stats = server.stats
    start = _aware(server.start_time)
    host, port = _advertised(opts, server.port)
    v: dict[str, Any] = {
        "server_id": server.server_id,
        "server_name": server.server_name,
        "version": NATS_SERVER_COMPAT_VERSION,
        "proto": PROTO_VERSION,
    }
    git_commit, go = _build_info()
    if git_commit:
        v["git_commit"] = git_commit
    v |= {"go": go, "host": host, "port": port}
    # the INFO values, as nats-server reports them
    authorizer = getattr(server, "authorizer", None)
    if getattr(authorizer, "info_auth_required", opts.auth.required):
        v["auth_required"] = True
    if getattr(server, "tls_required", tls_required(opts)) and opts.tls is not None:
        v["tls_required"] = True
    if getattr(server, "tls_verify", tls_verify(opts)) and opts.tls is not None:
        v["tls_verify"] = True
    peer = getattr(opts.tls, "ocsp_peer", None) if opts.tls is not None else None
    if peer is not None and peer.verify:
        v["tls_ocsp_peer_verify"] = True
    routes = getattr(server, "routes", None)
    connect_urls = list(routes.client_connect_urls()) if routes is not None else []
    if connect_urls:
        v["connect_urls"] = connect_urls
    v["max_connections"] = opts.max_connections
    if opts.max_subscriptions:
        v["max_subscriptions"] = opts.max_subscriptions
    v.update(
        {
            "ping_interval": gofmt.seconds_to_ns(opts.ping_interval),
            "ping_max": opts.ping_max,
            "http_host": opts.http_host,
            "http_port": opts.http_port,
            "http_base_path": opts.http_base_path,
            "https_port": opts.https_port,
            "auth_timeout": _gonum(auth_timeout(opts)),
            "max_control_line": opts.max_control_line,
            "max_payload": opts.max_payload,
            "max_pending": opts.max_pending,
            "cluster": _cluster_varz(server),
            "gateway": _gateway_varz(server),
            "leaf": _leaf_varz(server),
            "mqtt": {},
            "websocket": {},
            "jetstream": {},
            "tls_timeout": _gonum(opts.tls.timeout if opts.tls is not None else DEFAULT_TLS_TIMEOUT),
            "write_deadline": gofmt.seconds_to_ns(opts.write_deadline),
            "start": start,
            "now": now,
            "uptime": gofmt.uptime(_seconds_between(now, start)),
            "mem": ProcessStats.rss(),
            "cores": os.cpu_count() or 1,
            "gomaxprocs": _usable_cpus(),
            "cpu": _gonum(proc.cpu_percent() if proc is not None else 0.0),
            "connections": len(server.clients),
            "total_connections": stats.total_connections,
            # without route pooling each remote server has one route: remotes == routes
            "routes": len(routes) if routes is not None else 0,
            "remotes": len(routes) if routes is not None else 0,
            "leafnodes": len(getattr(server, "leafs", ()) or ()),
            "in_msgs": stats.in_msgs,
            "in_bytes": stats.in_bytes,
            # without routes/gateways/leafnodes every message is a client message
            "in_client_msgs": getattr(stats, "in_client_msgs", stats.in_msgs),
            "in_client_bytes": getattr(stats, "in_client_bytes", stats.in_bytes),
            "out_msgs": stats.out_msgs,
            "out_bytes": stats.out_bytes,
            "out_client_msgs": getattr(stats, "out_client_msgs", stats.out_msgs),
            "out_client_bytes": getattr(stats, "out_client_bytes", stats.out_bytes),
            "slow_consumers": stats.slow_consumers,
            "stale_connections": getattr(stats, "stale_connections", 0),
            "stalled_clients": getattr(stats, "stalled_clients", 0),
            "subscriptions": sum(t.count() for t in _tries(server)),
            "http_req_stats": dict(http_req_stats or {}),
            "config_load_time": _aware(server.config_load_time),
            "config_digest": getattr(opts, "config_digest", ""),
        }
    )
    sys_acc = _system_account(server)
    if sys_acc:
        v["system_account"] = sys_acc
    cache = _ocsp_peer_cache(server)
    if cache is not None:
        v["ocsp_peer_cache"] = cache
    sc = stats.slow_consumers
    v["slow_consumer_stats"] = {
        "clients": getattr(stats, "slow_consumers_clients", sc),
        "routes": getattr(stats, "slow_consumers_routes", 0),
        "gateways": 0,
        "leafs": 0,
    }
    stale = getattr(stats, "stale_connections", 0)
    v["stale_connection_stats"] = {
        "clients": getattr(stats, "stale_connections_clients", stale),
        "routes": getattr(stats, "stale_connections_routes", 0),
        "gateways": 0,
        "leafs": 0,
    }
    # no JetStream, so no disk I/O semaphore: its counters are truly zero
    v["disk_io_wait_stats"] = {"waiters": 0, "waits": 0, "wait_time": 0, "max_wait_time": 0}
    na = served_not_after(server, "client")
    if na is not None:
        v["tls_cert_not_after"] = na
    return v


def _ocsp_peer_cache(server: Any) -> dict[str, Any] | None:
    """varz ``ocsp_peer_cache`` (while ocsp_peer checks run): the type, then the counters that
    are not zero, as nats-server leaves zero ones out."""
    cache = getattr(getattr(server, "ocsp", None), "cache", None)
    if cache is None:
        return None
    items = list(cache.items.values()) if cache.local else []
    out: dict[str, Any] = {"cache_type": cache.opts.type}
    for key, n in (("cache_hits", cache.hits), ("cache_misses", cache.misses), ("cached_responses", len(items)),
                   ("cached_revoked_responses", sum(i.status == "revoked" for i in items)),
                   ("cached_good_responses", sum(i.status == "good" for i in items)),
                   ("cached_unknown_responses", sum(i.status == "unknown" for i in items))):
        if n:
            out[key] = n
    return out


# ---------------------------------------------------------------------------------------------
# /connz

SORT_OPTIONS = frozenset(
    {"cid", "start", "subs", "pending", "msgs_to", "msgs_from", "bytes_to", "bytes_from",
     "last", "idle", "uptime", "stop", "reason", "rtt"}
)


@dataclass
class ConnzOptions:
    sort: str = ""
    auth: bool = False
    subs: bool = False
    subs_detail: bool = False
    offset: int = 0
    limit: int = DEFAULT_LIST_SIZE
    cid: int = 0
    state: str = "open"  # open | closed | any
    user: str = ""
    acc: str = ""
    mqtt_client: str = ""


def parse_connz_query(query: Mapping[str, str]) -> ConnzOptions:
    """Decode /connz parameters in nats-server's order (the first bad one is reported)."""
    sort = query.get("sort", "")
    auth = q_bool(query, "auth")
    subs, detail = q_subs(query)
    offset = q_int(query, "offset")
    limit = q_int(query, "limit")
    cid = q_uint64(query, "cid")
    state_s = query.get("state", "")
    state = "open"
    if state_s:
        st = state_s.lower()
        if st in ("open", "closed"):
            state = st
        elif st in ("any", "all"):
            state = "any"
        else:
            raise BadRequest(f"Error decoding state for {state_s}")
    return ConnzOptions(
        sort=sort, auth=auth, subs=subs, subs_detail=detail, offset=offset, limit=limit, cid=cid,
        state=state, user=query.get("user", ""), acc=query.get("acc", ""),
        mqtt_client=query.get("mqtt_client", ""),
    )


def _account_of(c: Any) -> str:
    acc = getattr(c, "account", None)
    if acc is not None and not isinstance(acc, str):
        acc = getattr(acc, "name", None)
    return acc or GLOBAL_ACCOUNT


def _subs_of(c: Any) -> list[Any]:
    subs = getattr(c, "subs", None) or ()
    if isinstance(subs, Mapping):
        return list(subs.values())
    return list(subs)


def _sub_detail(sub: Any, cid: int, account: str | None = None, *, with_max: bool = True) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if account is not None:
        d["account"] = account
        d["account_tag"] = account
    d["subject"] = _text(sub.subject)
    q = _text(sub.queue)
    if q:
        d["qgroup"] = q
    d["sid"] = _text(sub.sid)
    d["msgs"] = sub.delivered
    if sub.max_msgs and with_max:
        d["max"] = sub.max_msgs
    d["cid"] = cid
    return d


def _peer_cert(pc: Any) -> dict[str, str]:
    if isinstance(pc, Mapping):  # already {subject, spki_sha256, cert_sha256} (tls.identity)
        return {k: str(pc[k]) for k in ("subject", "spki_sha256", "cert_sha256") if pc.get(k)}
    from pynatsd.tls.identity import peer_cert_info

    return peer_cert_info(pc)


@dataclass
class _Entry:
    """One row of /connz before paging: the JSON dict and the raw values sorts need."""

    info: dict[str, Any]
    cid: int
    rtt_ns: int
    last: dt.datetime
    start: dt.datetime
    stop: dt.datetime | None
    reason: str
    user: str | None
    account: str


def _conn_entry(c: Any, now: dt.datetime, o: ConnzOptions, closed: bool) -> _Entry:
    start = _aware(c.start)
    last = _aware(getattr(c, "last_activity", None) or c.start)
    stop = _aware(c.stop) if closed and getattr(c, "stop", None) is not None else None
    ref = stop or now  # a closed connection's uptime and idle end when it closed
    reason = _text(getattr(c, "reason", None) or getattr(c, "closed_reason", None)) if closed else ""
    rtt = getattr(c, "rtt", None)
    account = _account_of(c)
    user = getattr(c, "user", None)
    subs = _subs_of(c)
    ci: dict[str, Any] = {"cid": c.cid, "kind": "Client", "type": "nats"}
    ci["ip"] = c.host if c.port else ""
    ci["port"] = c.port or 0
    ci["start"] = start
    ci["last_activity"] = last
    if stop is not None:
        ci["stop"] = stop
    if reason:
        ci["reason"] = reason
    ci["rtt"] = gofmt.rtt_string(rtt)
    ci["uptime"] = gofmt.uptime(_seconds_between(ref, start))
    ci["idle"] = gofmt.uptime(_seconds_between(ref, last))
    ci["pending_bytes"] = 0 if closed else int(c.pending_bytes)
    ci["in_msgs"] = c.in_msgs
    ci["out_msgs"] = c.out_msgs
    ci["in_bytes"] = c.in_bytes
    ci["out_bytes"] = c.out_bytes
    stalls = getattr(c, "stalls", 0)
    if stalls:
        ci["stalls"] = stalls
    ci["subscriptions"] = len(subs)
    for key, attr in (("name", "name"), ("lang", "lang"), ("version", "version")):
        val = getattr(c, attr, None)
        if val:
            ci[key] = val
    tls = getattr(c, "tls_info", None)
    if tls:
        if tls.get("version"):
            ci["tls_version"] = tls["version"]
        if tls.get("cipher_suite"):
            ci["tls_cipher_suite"] = tls["cipher_suite"]
        # a closed connection's entry was made at close time, without peer certificates
        if o.auth and not closed:
            peer = tls.get("peer_certs")
            if peer is None and hasattr(c, "tls_peer_certs"):
                peer = c.tls_peer_certs()  # client connections: worked out on request
            if peer:
                ci["tls_peer_certs"] = [_peer_cert(pc) for pc in peer]
        if tls.get("tls_first") or getattr(c, "tls_first", False):
            ci["tls_first"] = True
        if tls.get("group"):
            ci["tls_group"] = tls["group"]  # pynatsd extra: the key-exchange group
    if o.auth:
        if user:
            ci["authorized_user"] = user
        if account != GLOBAL_ACCOUNT:
            ci["account"] = account
    if subs:
        if o.subs_detail:
            # closed connections list their subscriptions with the account and without the
            # auto-unsubscribe max (cleared when the subscription was removed), as nats-server
            acc = account if closed else None
            ci["subscriptions_list_detail"] = [_sub_detail(s, c.cid, acc, with_max=not closed) for s in subs]
        elif o.subs:
            ci["subscriptions_list"] = [_text(s.subject) for s in subs]
    if o.auth and getattr(c, "auth_method", None) == "nkey":
        ci["issuer_key"] = account  # (nkeys helper N) nats-server: an nkey user's issuer is its account
    if o.auth and (not closed or account != GLOBAL_ACCOUNT):
        ci["name_tag"] = account  # an account without a JWT name tag reports its name
    return _Entry(ci, c.cid, int((rtt or 0) * 1e9), last, start, stop, reason, user, account)


def _sort_entries(entries: list[_Entry], sort: str, now: dt.datetime) -> None:
    """nats-server's orders: cid/start, uptime and reason ascending, all others descending.
    Ties keep cid order (Python's sort is stable)."""
    entries.sort(key=lambda e: e.cid)
    if sort in ("", "cid", "start"):
        return
    desc = {
        "subs": lambda e: e.info["subscriptions"],
        "pending": lambda e: e.info["pending_bytes"],
        "msgs_to": lambda e: e.info["out_msgs"],
        "msgs_from": lambda e: e.info["in_msgs"],
        "bytes_to": lambda e: e.info["out_bytes"],
        "bytes_from": lambda e: e.info["in_bytes"],
        "last": lambda e: e.last,
        "idle": lambda e: now - e.last,
        "stop": lambda e: e.stop or e.start,
        "rtt": lambda e: e.rtt_ns,
    }
    if sort in desc:
        entries.sort(key=desc[sort], reverse=True)
    elif sort == "uptime":
        entries.sort(key=lambda e: (e.stop or now) - e.start)
    elif sort == "reason":
        entries.sort(key=lambda e: e.reason)


def connz(server: Any, o: ConnzOptions | None = None, *, now: dt.datetime | None = None) -> dict[str, Any]:
    o = o or ConnzOptions()
    now = now or utcnow()
    sort = o.sort
    if sort and sort not in SORT_OPTIONS:
        raise BadRequest(f"invalid sorting option: {sort}")
    if sort == "stop" and o.state != "closed":
        raise BadRequest("sort by stop only valid on closed connections")
    if sort == "reason" and o.state != "closed":
        raise BadRequest("sort by reason only valid on closed connections")
    offset = max(o.offset, 0)
    limit = o.limit if o.limit > 0 else DEFAULT_LIST_SIZE
    if o.cid > 0:
        limit = 1

    result: dict[str, Any] = {
        "server_id": server.server_id,
        "now": now,
        "num_connections": 0,
        "total": 0,
        "offset": offset,
        "limit": limit,
        "connections": [],
    }
    if o.acc and o.acc not in account_names(server):
        # nats-server answers an unknown account with an empty, id-less page (observed)
        result["server_id"] = ""
        result["connections"] = None
        return result

    open_clients = list(server.clients.values()) if o.state in ("open", "any") else []
    closed_clients = list(server.closed_clients) if o.state in ("closed", "any") else []
    if o.acc:
        open_clients = [c for c in open_clients if _account_of(c) == o.acc]
        closed_clients = [c for c in closed_clients if _account_of(c) == o.acc]
    # nats-server's total counts the connections in scope (state, account) before the cid and
    # user filters are applied (observed: ?cid=N reports every open connection in total)
    result["total"] = len(open_clients) + len(closed_clients)
    if o.cid > 0:
        open_clients = [c for c in open_clients if c.cid == o.cid]
        if open_clients:
            closed_clients = []
        else:
            closed_clients = [c for c in closed_clients if c.cid == o.cid][:1]
    if o.user:
        open_clients = [c for c in open_clients if getattr(c, "user", None) == o.user]
        closed_clients = [c for c in closed_clients if getattr(c, "user", None) == o.user]
    if o.mqtt_client:
        open_clients, closed_clients = [], []  # no MQTT connections in pynatsd

    entries = [_conn_entry(c, now, o, False) for c in open_clients]
    entries += [_conn_entry(c, now, o, True) for c in closed_clients]
    _sort_entries(entries, sort, now)
    lo = min(offset, len(entries))
    page = entries[lo : lo + min(limit, len(entries) - lo)]
    result["num_connections"] = len(page)
    result["connections"] = [e.info for e in page]
    return result


# ---------------------------------------------------------------------------------------------
# /subsz and sublist statistics


def _valid_literal_subject(s: str) -> bool:
    """nats-server's IsValidLiteralSubject: non-empty tokens, no whitespace, no wildcards."""
    if not s or any(ch in s for ch in " \t\r\n\f"):
        return False
    return all(tok and tok not in ("*", ">") for tok in s.split("."))


def _matches_literal(literal: str, pattern: str) -> bool:
    """Would a subscription on ``pattern`` receive a message published to ``literal``?"""
    lt = literal.split(".")
    pt = pattern.split(".")
    for i, p in enumerate(pt):
        if p == ">":
            return len(lt) > i
        if i >= len(lt):
            return False
        if p != "*" and p != lt[i]:
            return False
    return len(lt) == len(pt)


def _tries(server: Any) -> list[Any]:
    """Every account's subscription trie (accounts helper A)."""
    accounts = getattr(server, "accounts", None)
    regs = getattr(accounts, "accounts", None)
    if isinstance(regs, dict):
        return [a.sublist for a in regs.values()]
    return [server.sublist]


def _account(server: Any, name: str) -> Any:
    get = getattr(getattr(server, "accounts", None), "get", None)
    a = get(name) if callable(get) else None
    return a if hasattr(a, "sublist") and hasattr(a, "opts") else None


def _system_account(server: Any) -> str:
    sys_acc = getattr(getattr(server, "accounts", None), "system", None)
    return str(sys_acc.name) if sys_acc is not None else ""


class _MergedStats:
    """Statistics over several tries, as nats-server's server-wide /subsz figures."""

    def __init__(self, tries: list[Any]) -> None:
        self._tries = tries

    def stats(self) -> Any:
        from pynatsd.subjects import TrieStats

        parts = [t.stats() for t in self._tries]
        matches = sum(p.num_matches for p in parts)
        hits = sum(p.cache_hit_rate * p.num_matches for p in parts)
        cache = sum(p.num_cache for p in parts)
        return TrieStats(
            num_subscriptions=sum(p.num_subscriptions for p in parts),
            num_cache=cache,
            num_inserts=sum(p.num_inserts for p in parts),
            num_removes=sum(p.num_removes for p in parts),
            num_matches=matches,
            cache_hit_rate=hits / matches if matches else 0.0,
            max_fanout=max((p.max_fanout for p in parts), default=0),
            avg_fanout=sum(p.avg_fanout * p.num_cache for p in parts) / cache if cache else 0.0,
        )


def sublist_stats(sublist: Any) -> dict[str, Any]:
    """The eight SublistStats fields, in nats-server's order and JSON types."""
    st = sublist.stats()  # pynatsd.subjects.TrieStats, named as nats-server's keys
    return {
        "num_subscriptions": st.num_subscriptions,
        "num_cache": st.num_cache,
        "num_inserts": st.num_inserts,
        "num_removes": st.num_removes,
        "num_matches": st.num_matches,
        "cache_hit_rate": _gonum(st.cache_hit_rate),
        "max_fanout": st.max_fanout,
        "avg_fanout": _gonum(st.avg_fanout),
    }


def subsz(server: Any, query: Mapping[str, str], *, now: dt.datetime | None = None) -> dict[str, Any]:
    subs = q_bool(query, "subs")
    offset = max(q_int(query, "offset"), 0)
    limit = q_int(query, "limit")
    if limit <= 0:
        limit = DEFAULT_LIST_SIZE
    test = query.get("test", "")
    acc = query.get("acc", "")
    if test and not _valid_literal_subject(test):
        raise BadRequest(f"invalid test subject, must be valid publish subject: {test}")
    out: dict[str, Any] = {"server_id": server.server_id, "now": now or utcnow()}
    if acc and acc not in account_names(server):
        out.update(_empty_sublist_stats())
    elif acc and _account(server, acc) is not None:
        out.update(sublist_stats(_account(server, acc).sublist))
    else:
        out.update(sublist_stats(_MergedStats(_tries(server))))
    out.update({"total": 0, "offset": offset, "limit": limit})
    if subs:
        details: list[dict[str, Any]] = []
        for c in sorted(server.clients.values(), key=lambda c: c.cid):
            account = _account_of(c)
            if acc and account != acc:
                continue
            for s in _subs_of(c):
                if test and not _matches_literal(test, _text(s.subject)):
                    continue
                details.append(_sub_detail(s, c.cid, account))
        lo = min(offset, len(details))
        out["total"] = len(details)
        page = details[lo : lo + min(limit, len(details) - lo)]
        if page:
            out["subscriptions_list"] = page
    return out


def _empty_sublist_stats() -> dict[str, Any]:
    return {
        "num_subscriptions": 0, "num_cache": 0, "num_inserts": 0, "num_removes": 0,
        "num_matches": 0, "cache_hit_rate": 0, "max_fanout": 0, "avg_fanout": 0,
    }


# ---------------------------------------------------------------------------------------------
# /routez /gatewayz /leafz (no clustering yet: nats-server's standalone shapes)


def routez(server: Any, query: Mapping[str, str], *, now: dt.datetime | None = None) -> dict[str, Any]:
    subs, detail = q_subs(query)
    now = now or utcnow()
    out: dict[str, Any] = {"server_id": server.server_id, "server_name": server.server_name, "now": now}
    routes = getattr(server, "routes", None)  # pynatsd.cluster.routes.RouteManager when clustered
    entries: list[dict[str, Any]] = []
    if routes is not None:
        out.update(routes.routez_permissions())
        entries = routes.routez_entries(subs, detail, now)
    out["num_routes"] = len(entries)
    out["routes"] = entries
    return out


def gatewayz(server: Any, query: Mapping[str, str], *, now: dt.datetime | None = None) -> dict[str, Any]:
    q_subs(query)
    q_bool(query, "accs")
    now = now or utcnow()
    out: dict[str, Any] = {"server_id": server.server_id, "now": now}
    gateways = getattr(server, "gateways", None)  # pynatsd.cluster.gateways.GatewayManager
    if gateways is not None:
        out.update(gateways.gatewayz(query, now))
        return out
    out["outbound_gateways"] = {}
    out["inbound_gateways"] = {}
    return out


def leafz(server: Any, query: Mapping[str, str], *, now: dt.datetime | None = None) -> dict[str, Any]:
    subs = q_bool(query, "subs")
    leafs = getattr(server, "leafs", None)  # pynatsd.cluster.leafnodes.LeafManager when configured
    entries = leafs.leafz_entries(bool(subs)) if leafs is not None else []
    return {"server_id": server.server_id, "now": now or utcnow(), "leafnodes": len(entries), "leafs": entries}


# ---------------------------------------------------------------------------------------------
# /accountz


def account_names(server: Any) -> list[str]:
    """The system account first when it is the default $SYS (as nats-server lists them), then
    $G, then the configured accounts."""
    names = [GLOBAL_ACCOUNT]
    sys_acc = _system_account(server)
    if sys_acc == "$SYS":
        names.insert(0, sys_acc)
    for name in getattr(server, "accounts", None) or ():
        if name not in names:
            names.append(name)
    return names


_RESPONSE_TYPES = {"singleton": "Singleton", "stream": "Streamed", "chunked": "Chunked"}


def _exports_imports(a: Any) -> dict[str, Any]:
    """An account's configured exports and imports, in /accountz?acc= shape."""
    out: dict[str, Any] = {}
    o = a.opts
    exports: list[dict[str, Any]] = []
    for e in o.service_exports:
        d: dict[str, Any] = {"subject": e.subject, "type": "service", "response_type": _RESPONSE_TYPES[e.response]}
        if e.accounts is not None:
            d["approved_accounts"] = list(e.accounts)
        exports.append(d)
    for se in o.stream_exports:
        d = {"subject": se.subject, "type": "stream"}
        if se.accounts is not None:
            d["approved_accounts"] = list(se.accounts)
        exports.append(d)
    if exports:
        out["exports"] = exports
    imports: list[dict[str, Any]] = []
    for si in o.stream_imports:
        local = f"{si.prefix}.{si.subject}" if si.prefix else (si.to or si.subject)
        imports.append({"subject": si.subject, "account": si.account, "local_subject": local, "type": "stream",
                        "invalid": False, "share": False, "tracking": False})
    for vi in o.service_imports:
        to = vi.to or vi.subject
        imports.append({"subject": vi.subject, "account": vi.account, "to": to, "local_subject": to,
                        "type": "service", "invalid": False, "share": False, "tracking": False})
    if imports:
        out["imports"] = imports
    return out


def accountz(server: Any, query: Mapping[str, str], *, now: dt.datetime | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"server_id": server.server_id, "now": now or utcnow()}
    sys_acc = _system_account(server)
    if sys_acc:
        out["system_account"] = sys_acc
    acc = query.get("acc", "")
    if not acc:
        out["accounts"] = account_names(server)
        return out
    if acc not in account_names(server):
        raise BadRequest(f"Account {acc} does not exist")
    clients = [c for c in server.clients.values() if _account_of(c) == acc]
    detail: dict[str, Any] = {
        "account_name": acc,
        "update_time": _aware(server.start_time),
    }
    if acc == sys_acc:
        detail["is_system"] = True
    detail |= {
        "expired": False,
        "complete": True,
        "jetstream_enabled": False,
        "leafnode_connections": 0,
        "client_connections": len(clients),
        "subscriptions": sum(len(_subs_of(c)) for c in clients),
    }
    a = _account(server, acc)
    if a is not None:
        detail["subscriptions"] = a.sublist.count()
        detail |= _exports_imports(a)
    detail["name_tag"] = acc
    if a is not None:
        detail["sublist_stats"] = sublist_stats(a.sublist)
    elif acc == GLOBAL_ACCOUNT and len(account_names(server)) == 1:
        # one account, one sublist: its statistics are the server's
        detail["sublist_stats"] = sublist_stats(server.sublist)
    out["account_detail"] = detail
    return out


# ---------------------------------------------------------------------------------------------
# /healthz


@dataclass
class HealthResult:
    status_code: int
    body: dict[str, Any]


def _health_error(details: bool, code: int, etype: str, text: str, status: str = "error") -> HealthResult:
    if details:
        return HealthResult(code, {"status": status, "errors": [{"type": etype, "error": text}]})
    return HealthResult(code, {"status": status, "error": text})


def healthz(
    server: Any,
    query: Mapping[str, str],
    *,
    ready: bool,
    not_ready_reason: str = "server",
    cert_problems: Iterable[str] = (),
) -> HealthResult:
    """nats-server's /healthz for a server without JetStream, plus pynatsd's certificate check:
    an expired served certificate makes the server unhealthy (503, type CONNECTION)."""
    q_bool(query, "js-enabled")
    q_bool(query, "js-enabled-only")
    q_bool(query, "js-server-only")
    q_bool(query, "js-meta-only")
    details = q_bool(query, "details")
    account, stream, consumer = query.get("account", ""), query.get("stream", ""), query.get("consumer", "")
    if not account and stream:
        return _health_error(
            details, 400, "BAD_REQUEST", '"account" must not be empty when checking stream health'
        )
    if not stream and consumer:
        return _health_error(
            details, 400, "BAD_REQUEST", '"stream" must not be empty when checking consumer health'
        )
    if not ready:
        return _health_error(
            details, 500, "CONNECTION", f"failed to be ready for connections after 1ms: {not_ready_reason}"
        )
    problems = list(cert_problems)
    if problems:
        if details:
            return HealthResult(
                503, {"status": "error", "errors": [{"type": "CONNECTION", "error": p} for p in problems]}
            )
        return HealthResult(503, {"status": "error", "error": "; ".join(problems)})
    # JetStream is not part of pynatsd: as nats-server without JetStream, nothing more to check
    return HealthResult(200, {"status": "ok"})
