"""Clustering over the NATS route protocol: the route listener, solicited routes, the route
handshake, interest propagation, message forwarding and route discovery (gossip).

``RouteManager`` is what the server holds (``server.routes``); ``RouteConnection`` is one
asyncio Protocol per route. The wire format lives in ``cluster/protocol.py``.

How this server takes part in a cluster (behaviour checked against nats-server 2.15.1):

- No pooling, no compression, no pinned accounts: our INFO has no ``route_pool_size`` and no
  ``compression``, so a real server keeps exactly one connection to us and carries every account
  on it. Every configured account is carried (the account name is in each RS+/RS-/RMSG/HMSG);
  RS+/RMSG for an account this server does not have are ignored. A dialer's INFO naming a
  ``route_account`` (a dedicated account route) is refused as nats-server refuses it towards a
  pool-less server.
- Interest: only local interest is advertised. A plain (subject) interest is RS+ on its first
  local subscription and RS- on its last; a queue interest is re-sent as RS+ with the number of
  local members on every change, and RS- when the last member leaves. A new route first gets
  all local interest. Interest learnt from a route lives in a separate trie and is dropped with
  the route.
- Messages: a local publish goes to every route with matching plain interest once. For each
  matching queue group one member is picked cluster-wide, uniformly over all members (remote
  weights count their members, as in nats-server's sublist); a remote pick adds the queue name
  to that route's RMSG. A routed message is delivered to local subscribers only (plain subs, plus
  one local member of each named queue group) and never forwarded to another route.
- Handshake: the acceptor sends INFO at once and requires CONNECT first (else Authorization
  Violation); the dialer sends CONNECT then INFO. A route is registered on the peer's first INFO.
  One route per remote server id: a second connection to a registered id is closed as
  "Duplicate Route" and the kept one is marked to retry if it drops, as nats-server does, so the
  crossing-connections race heals itself.
- Discovery: on registering a route we forward the peer's INFO (nonce removed, ``ip`` filled
  in) to our other routes, with nats-server 2.11+'s ``gossip_mode`` rules; an INFO on a route
  naming another server id makes us dial that server (an implicit route) unless it is known or
  configured. Explicit routes are retried forever (1 s apart, exponential up to 30 s with
  ``connect_backoff``); implicit ones ``connect_retries`` times.
- Keepalive: the first PING about a second after connecting, then every
  min(ping_interval, 30 s); ping_max unanswered PINGs close the route as Stale Connection.
- TLS: with ``cluster { tls {} }`` the TLS handshake starts right after TCP connect, before any
  INFO, in both directions; the dialer is the TLS client and both sides present certificates.
  The route port always requires and verifies the peer's certificate (nats-server forces
  this whatever ``verify`` says). With TLS 1.3 a dialer whose certificate is refused only learns
  it after its handshake completed, from the peer's alert (logged with its reason) or just the
  close. Route users
  can be mapped from the certificate (``verify_and_map``: an identity equal to the cluster
  authorization user; ``verify_cert_and_check_known_urls``: a DNS name of a configured route).
- A real server that dials us also tries a dedicated ``$SYS`` route once and drops it itself;
  it answers our lame-duck INFO (``ldm``) by withdrawing our URLs from its clients, and we do
  the same for its. Clients get ``cluster`` and ``connect_urls`` (ours first, then the other
  members') in INFO once a route has registered, unless ``no_advertise``.
- Counters: the server's ``stats`` becomes a ``ClusterStats`` that keeps the route share of
  messages, bytes, slow consumers and stale connections apart (counted here only), so /varz's
  client figures are the totals minus it, as nats-server reports them.
- Reload (``RouteManager.reload``): added routes are dialed, removed ones closed ("Route
  Removed") and not re-dialed; changed permissions re-send or withdraw interest and drop learnt
  interest no longer exported, and a peer's changed permissions make us re-send what it now
  accepts; a new cluster name is taken at once; timing and retry settings apply from next use.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import secrets
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pynatsd import NATS_SERVER_COMPAT_VERSION
from pynatsd.client import deliver
from pynatsd.cluster import peerauth
from pynatsd.cluster import protocol as rp
from pynatsd.cluster.peerconn import PeerConnection, close_peers, hostport, is_ip
from pynatsd.cluster.protocol import (
    GLOBAL_ACCOUNT,
    R_CLOSE,
    R_CONNECT,
    R_ERR,
    R_INFO,
    R_MSG,
    R_OK,
    R_PING,
    R_PONG,
    R_SUB,
    R_UNSUB,
    RouteParser,
)
from pynatsd.protocol import wire
from pynatsd.server import ServerStats, go_field
from pynatsd.subjects import MatchResult, SubjectTrie

if TYPE_CHECKING:
    from pynatsd.config.options import ClusterOptions
    from pynatsd.server import Server

log = logging.getLogger("pynatsd")

# route types (nats-server's RouteType)
IMPLICIT = 0
EXPLICIT = 1

# INFO gossip_mode values (nats-server 2.11+)
GOSSIP_DEFAULT = 0
GOSSIP_DISABLED = 1
GOSSIP_OVERRIDE = 2

ROUTE_PROTO = 2  # account-aware route protocol; we do not take part in message tracing (3)
CONNECT_DELAY = 1.0  # between connect attempts (nats-server DEFAULT_ROUTE_CONNECT)
CONNECT_MAX_DELAY = 30.0  # with connect_backoff (DEFAULT_ROUTE_CONNECT_MAX)
RECONNECT_DELAY = 1.0  # before re-dialing a dropped explicit route (DEFAULT_ROUTE_RECONNECT)
DIAL_TIMEOUT = 1.0  # DEFAULT_ROUTE_DIAL
MAX_PING_INTERVAL = 30.0
CONNECT_ERROR_REPORTS = 3600  # first connect: log every Nth failure (others at debug)

# closed reasons (nats-server's spelling)
REASON_AUTH_FAILURE = "Authentication Failure"
REASON_TLS_FAILURE = "TLS Handshake Failure"
REASON_PROTOCOL = "Protocol Violation"
REASON_PARSE = "Parse Error"
REASON_WRONG_PORT = "Incorrect Port"
REASON_WRONG_GATEWAY = "Wrong Gateway"
REASON_DUPLICATE_ROUTE = "Duplicate Route"
REASON_SHUTDOWN = "Server Shutdown"
REASON_CLUSTER_NAME = "Cluster Name Conflict"
REASON_DUPLICATE_NAME = "Duplicate Server Name"
REASON_SLOW = "Slow Consumer (Pending Bytes)"
REASON_SLOW_DEADLINE = "Slow Consumer (Write Deadline)"
REASON_ROUTE_REMOVED = "Route Removed"

ERR_AUTH_VIOLATION = "Authorization Violation"
LOG_AUTH_ERROR = "authentication error"  # what nats-server logs when it sends the above
ERR_ROUTE_PORT = "attempted to connect to route port"

# ClusterOptions fields a configuration reload may change (RouteManager.reload applies them;
# host and port are refused as nats-server refuses them; cluster authorization, no_advertise
# and the tls block's own rules are handled, or refused, by pynatsd.reload). pool_size only
# shows in /varz here (no pooling).
RELOADABLE = frozenset(
    {
        "name",
        "routes",
        "permissions",
        "advertise",
        "connect_retries",
        "connect_backoff",
        "ping_interval",
        "ping_max",
        "write_deadline",
        "pool_size",
    }
)

# Outbound bytes a route may have pending before it is dropped as a slow consumer.
MAX_ROUTE_PENDING = 256 * 1024 * 1024
WRITE_HIGH_WATER = 1024 * 1024


@dataclass(frozen=True)
class RouteURL:
    """A route URL from the configuration or from gossip: ``nats-route://[user:pass@]host:port``."""

    host: str
    port: int
    user: str | None = None
    password: str | None = None

    @property
    def hostport(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def redacted(self) -> str:
        cred = f"{self.user}:xxxxx@" if self.user else ""
        return f"nats-route://{cred}{self.hostport}"

    def __str__(self) -> str:
        return self.redacted()


def parse_route_url(text: str) -> RouteURL:
    """Parse a route URL (scheme optional, default port 6222). Raises ValueError."""
    s = text.strip()
    if "://" not in s:
        s = "nats-route://" + s
    u = urllib.parse.urlsplit(s)
    host = u.hostname
    if not host:
        raise ValueError(f"route URL {text!r} has no host")
    port = u.port if u.port is not None else 6222
    user = urllib.parse.unquote(u.username) if u.username else None
    password = urllib.parse.unquote(u.password) if u.password else None
    return RouteURL(host, port, user, password)


class RemoteSub:
    """Interest a route told us about: the item stored in the remote-interest trie."""

    __slots__ = ("route", "subject", "queue", "weight", "account")

    def __init__(
        self, route: RouteConnection, subject: bytes, queue: bytes, weight: int, account: bytes = GLOBAL_ACCOUNT
    ) -> None:
        self.route = route
        self.subject = subject
        self.queue = queue
        self.weight = weight
        self.account = account

    def __repr__(self) -> str:
        return f"<RemoteSub {self.subject!r} q={self.queue!r} w={self.weight} rid={self.route.rid}>"


class InterestTrie(SubjectTrie[Any]):
    """The server's (local) subscription trie, reporting each insert/remove to the route manager
    so local interest changes become RS+/RS- without hooks in the client code."""

    def __init__(self, manager: RouteManager, account: bytes = GLOBAL_ACCOUNT) -> None:
        super().__init__()
        self._routes_manager = manager
        self._account = account

    def insert(self, subject: bytes, queue: bytes, item: Any) -> None:
        before = self.count()
        super().insert(subject, queue, item)
        if self.count() != before:  # an item already there is not new interest
            self._routes_manager.local_interest_added(subject, queue, self._account)

    def remove(self, subject: bytes, queue: bytes, item: Any) -> bool:
        removed = super().remove(subject, queue, item)
        if removed:
            self._routes_manager.local_interest_removed(subject, queue, self._account)
        return removed


def interest_key(account: bytes, subject: bytes, queue: bytes) -> tuple[bytes, ...]:
    """Key of one interest in ``local_counts`` and a route's ``subs``: (subject, queue) for the
    global account, (subject, queue, account) for the others."""
    return (subject, queue) if account == GLOBAL_ACCOUNT else (subject, queue, account)


def key_account(key: tuple[bytes, ...]) -> bytes:
    return key[2] if len(key) > 2 else GLOBAL_ACCOUNT


class ClusterStats(ServerStats):
    """The server's counters with the route share kept apart (the server's ``stats`` once a
    cluster port is configured). Only route code adds to the route counters; the client
    figures /varz shows (``in_client_msgs``, ``slow_consumer_stats.clients``, ...) are the
    totals minus the route share, so the client hot path counts nothing extra."""

    __slots__ = (
        "route_in_msgs",
        "route_in_bytes",
        "route_out_msgs",
        "route_out_bytes",
        "slow_consumers_routes",
        "stale_connections_routes",
    )

    def __init__(self, base: ServerStats | None = None) -> None:
        super().__init__()
        if base is not None:  # carry over whatever was counted before clustering started
            for cls in type(base).__mro__:
                for name in getattr(cls, "__slots__", ()):
                    if hasattr(base, name):
                        setattr(self, name, getattr(base, name))
        self.route_in_msgs = 0
        self.route_in_bytes = 0
        self.route_out_msgs = 0
        self.route_out_bytes = 0
        self.slow_consumers_routes = 0
        self.stale_connections_routes = 0

    @property
    def in_client_msgs(self) -> int:
        return self.in_msgs - self.route_in_msgs

    @property
    def in_client_bytes(self) -> int:
        return self.in_bytes - self.route_in_bytes

    @property
    def out_client_msgs(self) -> int:
        return self.out_msgs - self.route_out_msgs

    @property
    def out_client_bytes(self) -> int:
        return self.out_bytes - self.route_out_bytes

    @property
    def slow_consumers_clients(self) -> int:
        return self.slow_consumers - self.slow_consumers_routes

    @property
    def stale_connections_clients(self) -> int:
        return self.stale_connections - self.stale_connections_routes


class RouteConnection(PeerConnection):
    """One route connection (accepted or solicited). See the module docstring."""

    KIND = "Route"
    CLOSED_LINE = "Router connection closed"
    TRACE_KEEPALIVE = True
    TRACE_CONNECT_IN = True
    TRACE_ERR_OUT = True
    TIMERS = ("_auth_timer", "_ping_timer", "_wd_timer")

    manager: RouteManager
    server: Server

    def __init__(
        self,
        manager: RouteManager,
        *,
        url: RouteURL | None = None,
        rtype: int = IMPLICIT,
        gossip_mode: int = GOSSIP_DEFAULT,
    ) -> None:
        self._init_peer(manager, RouteParser(max(manager.server.opts.max_control_line, 4096) * 16))
        self.rid = 0
        self.solicited = url is not None
        self.url = url  # for accepted routes: built from the peer INFO's host/port
        self.rtype = rtype
        self.gossip_mode = gossip_mode
        self.retry = False  # reconnect when dropped although not solicited (duplicate handling)
        self.no_reconnect = False
        self.remote_ip_url = ""  # nats-route://ip:port/ of the peer, for gossip
        self.remote_import: Any = None
        self.remote_export: Any = None
        self.remote_proto = 0
        self.connect_urls: list[str] = []
        self.gateway_url = ""  # (gateways) the peer's gateway URL, from its route INFO
        self.peer_knows_compression = False
        self.subs: dict[tuple[bytes, ...], RemoteSub] = {}  # by interest_key()
        self._wd_timer: asyncio.TimerHandle | None = None

    # -- monitoring views --------------------------------------------------------------------

    @property
    def is_configured(self) -> bool:
        return self.rtype == EXPLICIT

    def __repr__(self) -> str:
        return f"<RouteConnection rid={self.rid} {self.host}:{self.port} remote={self.remote_name or '?'}>"

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        mgr = self.manager
        self.rid = self._attach(transport, "rid")
        if not self._admit(transport, WRITE_HIGH_WATER):
            return
        if self.url is not None and self.solicited:
            mgr.dial_done(self.url)
        if mgr.server_tls is not None or (self.solicited and mgr.client_tls is not None):
            self._start_tls()
            return
        self._begin()

    def _start_tls(self) -> None:
        mgr = self.manager
        self.debug("Starting TLS route connection handshake")

        def ok(tls_transport: Any) -> None:
            self._tls_established(tls_transport, unknown_info=None, version_line=True)
            self._begin()

        def failed(err: str | None) -> None:
            if err != "handshake timeout":
                self._tls_failed("route", err)
                return
            # nats-server's two lines for it: the handshake's read error, then the timer's
            local = _sockname(self.raw_transport)
            self.error(f"TLS route handshake error: read tcp {local}->{hostport(self.host, self.port)}: i/o timeout")
            self.error("TLS handshake timeout")
            self.close(REASON_TLS_FAILURE, flush=False)

        if self.solicited:
            assert mgr.client_tls is not None and self.url is not None
            self._start_handshake(
                mgr.client_tls, mgr.tls_timeout, ok, failed,
                client=True, server_hostname=mgr.tls_server_name(self.url),
            )
        else:
            assert mgr.server_tls is not None
            self._start_handshake(mgr.server_tls, mgr.tls_timeout, ok, failed)

    def _begin(self) -> None:
        """TCP (and TLS) established: handshake lines, timers, reading."""
        mgr = self.manager
        self._reading = True
        self.notice("Route connection created")
        if self.solicited:
            self.debug("Route connect msg sent")
            self.enqueue(rp.connect_line(mgr.connect_json(self)))
            self.enqueue(rp.info_line(mgr.route_info(gossip_mode=self.gossip_mode, nonce=True)))
        else:
            self.enqueue(rp.info_line(mgr.route_info(nonce=True)))
            if mgr.auth_required:
                self._start_auth_timer()
        self.flush()
        self._start_pings(jitter=True)

    def data_received(self, data: bytes) -> None:
        if self.closed or not self._reading:
            return
        self._last_in = time.time()
        on_msg = self._on_msg
        for op in self.parser.feed(data):
            if self.closed:
                return
            if op[0] == R_MSG and self.registered:  # the hot path (registered: past CONNECT)
                on_msg(op[1], op[2], op[3], op[4], op[5], op[6])
            else:
                self._handle(op)

    def pause_writing(self) -> None:
        # the socket stopped taking our bytes: allow it write_deadline to recover
        if self.closed or self._wd_timer is not None:
            return
        wd = self.manager.write_deadline
        if wd > 0:
            self._wd_timer = self.server.loop.call_later(wd, self._write_deadline_expired)

    def resume_writing(self) -> None:
        if self._wd_timer is not None:
            self._wd_timer.cancel()
            self._wd_timer = None

    def _write_deadline_expired(self) -> None:
        self._wd_timer = None
        if self.closed:
            return
        self.manager.stats.slow_consumers += 1
        self.manager.stats.slow_consumers_routes += 1
        wd = self.manager.write_deadline
        self.notice(
            f"Slow Consumer Detected: WriteDeadline of {wd:g}s exceeded with {self.pending_bytes} total bytes pending"
        )
        self.close(REASON_SLOW_DEADLINE, flush=False)

    def _log_lost(self, tls_error: str | None) -> None:
        if self.solicited and self.tls_info is not None and not self.info_received:
            # With TLS 1.3 the dialer's handshake is done before the acceptor has checked our
            # certificate: a refusal shows up after it, as the peer's alert (read by the TLS
            # layer, when it arrived before the close) or just as this close.
            why = tls_error or "it probably refused our certificate"
            self.error(f"TLS route closed by the remote before its INFO: {why}")
        elif tls_error:
            self.error(f"TLS error: {tls_error}")

    # -- op handling -----------------------------------------------------------------------------

    def _handle(self, op: tuple[Any, ...]) -> None:
        kind = op[0]
        if not self.connect_received and not self.solicited and kind != R_CONNECT:
            if kind == R_CLOSE:
                self._on_close_op(op)
                return
            self.error(LOG_AUTH_ERROR)
            self.close(REASON_AUTH_FAILURE, ERR_AUTH_VIOLATION)
            return
        if kind == R_MSG:
            self._on_msg(op[1], op[2], op[3], op[4], op[5], op[6])
        elif kind == R_SUB:
            self._on_sub(op[1], op[2], op[3], op[4])
        elif kind == R_UNSUB:
            self._on_unsub(op[1], op[2], op[3])
        elif kind == R_PING:
            self._got_ping()
        elif kind == R_PONG:
            self._got_pong()
        elif kind == R_INFO:
            self._got_info(op[1])
        elif kind == R_CONNECT:
            self._got_connect(op[1])
        elif kind == R_ERR:
            text = op[1].decode("utf-8", "replace")
            if self.server.trace:
                self.trace(f"<<- [-ERR '{text}']")
            self.error(f"Route Error '{text}'")
            self.close(REASON_PARSE, flush=False)  # nats-server's reason for a peer's -ERR
        elif kind == R_OK:
            pass
        elif kind == R_CLOSE:
            self._on_close_op(op)

    def _on_close_op(self, op: tuple[Any, ...]) -> None:
        err, reason = op[1], op[2]
        self.error(f"Route parser error: {reason}")
        self.close(reason, err)

    def _on_connect(self, raw: bytes) -> None:
        if self.solicited or self.connect_received:
            return  # a route only ever gets one CONNECT, from its dialer
        mgr = self.manager
        doc = self._json_doc(raw, "Route CONNECT")
        if doc is None:
            return
        self._stop_auth_timer()
        if not mgr.authorize(self, doc):
            # nats-server's log line: the CONNECT's user (Go-quoted) when it carried one
            user = doc.get("user")
            self.error(f"{LOG_AUTH_ERROR} - User {wire.go_quote(user)}" if isinstance(user, str) and user else LOG_AUTH_ERROR)
            self.close(REASON_AUTH_FAILURE, ERR_AUTH_VIOLATION)
            return
        if doc.get("lang"):
            self.error(ERR_ROUTE_PORT)
            self.close(REASON_WRONG_PORT, ERR_ROUTE_PORT)
            return
        gw = doc.get("gateway")
        if gw:
            text = f"Rejecting connection from gateway {wire.go_quote(str(gw))} on the Route port"
            self.error(text)
            self.close(REASON_WRONG_GATEWAY, text)
            return
        theirs = doc.get("cluster") or ""
        if not isinstance(theirs, str):
            theirs = ""
        if theirs != mgr.cluster_name:
            if not mgr.adopt_cluster_name(theirs, bool(doc.get("cluster_dynamic"))):
                text = f"Rejecting connection, cluster name {wire.go_quote(theirs)} does not match {wire.go_quote(mgr.cluster_name)}"
                self.error(text)
                self.close(REASON_CLUSTER_NAME, text)
                return
            mgr.close_routes_except(self, str(doc.get("name") or ""))
        self.connect_received = True
        self.remote_id = str(doc.get("name") or "")
        self.headers = bool(doc.get("headers")) and self.server.headers_supported

    def _on_info(self, raw: bytes) -> None:
        info = self._json_doc(raw, "Route INFO")
        if info is None:
            return
        if not self.info_received:
            self.manager.first_info(self, info)
        else:
            self.manager.async_info(self, info)

    # -- interest ----------------------------------------------------------------------------------

    def _on_sub(self, account: bytes, subject: bytes, queue: bytes, weight: int) -> None:
        if self.server.trace:
            self.trace(f"<<- [RS+ {_args(account, subject, queue, weight)}]")
        if not self.registered:
            return
        mgr = self.manager
        remote = mgr.remote_trie(account)
        if remote is None:
            # as nats-server with accounts from the configuration: logged and ignored
            acc = wire.go_quote(account.decode("utf-8", "replace"))
            self.error(f"Unknown account {acc} for remote subject {wire.go_quote(subject.decode('utf-8', 'replace'))}")
            return
        if mgr.export_perms is not None and not mgr.export_perms.can_subscribe(subject):
            self.debug(
                f"Can not export {wire.go_quote(subject.decode('utf-8', 'replace'))}, ignoring remote subscription request"
            )
            return
        key = interest_key(account, subject, queue)
        rs = self.subs.get(key)
        if rs is None:
            rs = RemoteSub(self, subject, queue, max(weight, 1), account)
            try:
                remote.insert(subject, queue, rs)
            except ValueError:
                self.error(
                    f"Could not insert subscription: invalid subject {wire.go_quote(subject.decode('utf-8', 'replace'))}"
                )
                self.enqueue(rp.err_line("Invalid Subscription"))
                return
            self.subs[key] = rs
            gws = self.server.gateways
            if gws is not None:  # (gateways) interest in this cluster changed
                gws.interest_changed(account, subject, queue, 1)
        elif queue:
            rs.weight = max(weight, 1)  # in place: cached match results see it too
        leafs = self.server.leafs
        if leafs is not None:  # (leafnodes) leaf connections learn the cluster's interest
            leafs.route_interest(self.rid, account, subject, queue, rs.weight if queue else 1)

    def _on_unsub(self, account: bytes, subject: bytes, queue: bytes) -> None:
        if self.server.trace:
            self.trace(f"<<- [RS- {_args(account, subject, queue)}]")
        rs = self.subs.pop(interest_key(account, subject, queue), None)
        if rs is not None:
            remote = self.manager.remote_trie(account)
            if remote is not None:
                remote.remove(subject, queue, rs)
            leafs = self.server.leafs
            if leafs is not None:
                leafs.route_interest(self.rid, account, subject, queue, 0)
            gws = self.server.gateways
            if gws is not None:
                gws.interest_changed(account, subject, queue, -1)

    def _drop_remote_subs(self) -> None:
        mgr = self.manager
        leafs = self.server.leafs
        for rs in self.subs.values():
            remote = mgr.remote_trie(rs.account)
            if remote is not None:
                remote.remove(rs.subject, rs.queue, rs)
            if leafs is not None:
                leafs.route_interest(self.rid, rs.account, rs.subject, rs.queue, 0)
            gws = self.server.gateways
            if gws is not None:
                gws.interest_changed(rs.account, rs.subject, rs.queue, -1)
        self.subs.clear()

    # -- messages ----------------------------------------------------------------------------------

    def _on_msg(
        self,
        account: bytes,
        subject: bytes,
        reply: bytes,
        queues: tuple[bytes, ...],
        hdr_len: int,
        data: bytes,
    ) -> None:
        self.in_msgs += 1
        self.in_bytes += len(data)
        server = self.server
        if server.trace:
            self.trace(
                f"<<- [{'HMSG' if hdr_len >= 0 else 'RMSG'} {_msg_args(account, subject, reply, queues, hdr_len, data)}]"
            )
        if not self.registered:
            return
        acc = server.accounts.get(account.decode("utf-8", "replace")) if account != GLOBAL_ACCOUNT else server.gacc
        if acc is None:
            return
        stats = self.manager.stats
        stats.in_msgs += 1
        stats.in_bytes += len(data)
        stats.route_in_msgs += 1
        stats.route_in_bytes += len(data)
        self.manager.deliver_local(self, subject, reply, queues, hdr_len, data, acc)

    def send_msg(
        self, subject: bytes, reply: bytes, queues: list[bytes], hdr_len: int, data: bytes,
        account: bytes = GLOBAL_ACCOUNT,
    ) -> None:
        """Queue an RMSG/HMSG (headers stripped if the peer cannot take them)."""
        if self.closed:
            return
        if hdr_len >= 0 and not self.headers:
            data = data[hdr_len:]
            hdr_len = -1
        line = rp.msg_line(account, subject, reply, queues, hdr_len, len(data))
        if self.server.trace:
            self.trace(f"->> [{line[:-2].decode('utf-8', 'replace')}]")
        out = self.out
        out.append(line)
        out.append(data)
        out.append(rp.CRLF)
        self.out_size += len(line) + len(data) + 2
        self.out_msgs += 1
        self.out_bytes += len(data)
        stats = self.manager.stats  # as in nats-server, out_msgs counts what went to routes too
        stats.out_msgs += 1
        stats.out_bytes += len(data)
        stats.route_out_msgs += 1
        stats.route_out_bytes += len(data)
        if not self.dirty:
            self.dirty = True
            self.server.mark_dirty(self)  # type: ignore[arg-type]
        if self.out_size > MAX_ROUTE_PENDING:
            self._check_pending()

    # -- output ------------------------------------------------------------------------------------

    def _check_pending(self) -> None:
        if self.pending_bytes > MAX_ROUTE_PENDING:
            self.manager.stats.slow_consumers += 1
            self.manager.stats.slow_consumers_routes += 1
            self.notice(f"Slow Consumer Detected: MaxPending of {MAX_ROUTE_PENDING} Exceeded")
            self.close(REASON_SLOW, flush=False)

    # -- keepalive and closing -----------------------------------------------------------------------

    def _count_stale(self) -> None:
        self.manager.stats.stale_connections += 1
        self.manager.stats.stale_connections_routes += 1

    def _closed(self) -> None:
        self._drop_remote_subs()
        self.manager.route_closed(self)


class RouteManager:
    """The cluster side of a server: listener, dialers, registered routes, interest, forwarding."""

    def __init__(self, server: Server) -> None:
        self.server = server
        opts = server.opts
        assert opts.cluster is not None
        self.copts: ClusterOptions = opts.cluster
        c = self.copts
        self.running = False
        self.port = 0
        self.routes: dict[str, RouteConnection] = {}  # registered, by remote server id
        self.conns: set[RouteConnection] = set()  # every open route connection
        self.remote: SubjectTrie[RemoteSub] = SubjectTrie()  # the global account's
        # remote interest per account (accounts helper A)
        self.remotes: dict[bytes, SubjectTrie[RemoteSub]] = {GLOBAL_ACCOUNT: self.remote}
        self.local_counts: dict[tuple[bytes, ...], int] = {}  # by interest_key()
        self.remote_client_urls: Counter[str] = Counter()
        self._urls_announced = False
        self.configured: list[RouteURL] = [parse_route_url(u) for u in c.routes]
        # URL (host, port) -> the task dialing it; one dialer per URL at a time
        self._dialing: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.sleep = asyncio.sleep  # the pause between connect attempts (tests watch it)
        self._listener: asyncio.base_events.Server | None = None
        self.cluster_dynamic = not c.name
        self.cluster_name = c.name or secrets.token_urlsafe(16).replace("-", "A").replace("_", "B")[:22]
        self.ping_interval = 0.0
        self.ping_max = 0
        self.write_deadline = 0.0
        self._timing()
        self.server_tls: Any = None
        self.client_tls: Any = None
        tls = c.tls
        self.tls_timeout = tls.timeout if tls is not None else 2.0
        self.auth_required = bool(c.username)
        self.auth_timeout = (
            c.auth_timeout
            if c.auth_timeout is not None
            else (self.tls_timeout + 1.0 if tls is not None else 2.0)
        )
        self.import_perms, self.export_perms = _route_permissions(c.permissions)
        self._tls_name = next((u.host for u in self.configured if not is_ip(u.host)), "")
        # see local interest changes, in every account
        assert not server.clients, "RouteManager must be created before any connection"
        server.accounts.set_trie_factory(lambda acc: InterestTrie(self, acc.name_b))
        # counters with the route share apart (everyone reads server.stats afresh each time)
        self.stats = ClusterStats(server.stats)
        server.stats = self.stats

    def __len__(self) -> int:
        return len(self.routes)

    def _timing(self) -> None:
        """Keepalive and write deadline from the cluster block, else the server's options."""
        c, opts = self.copts, self.server.opts
        self.ping_interval = min(c.ping_interval or opts.ping_interval, MAX_PING_INTERVAL)
        self.ping_max = c.ping_max or opts.ping_max
        self.write_deadline = c.write_deadline if c.write_deadline is not None else opts.write_deadline

    # -- reload ----------------------------------------------------------------------------------

    def reload(self, old: ClusterOptions, new: ClusterOptions) -> None:
        """Apply a validated configuration reload (see ``RELOADABLE`` and pynatsd.reload):
        new keepalive/backoff/retry settings apply from the next use; a new cluster name is
        taken at once (established routes stay, as with nats-server); changed permissions are
        re-applied to the interest on every route; removed routes are closed and not
        re-dialed, added ones are dialed."""
        self.copts = new
        self._timing()
        if new.name and new.name != self.cluster_name:
            self.cluster_name = new.name
            self.cluster_dynamic = False
            log.info("Cluster name updated to %s", new.name)
        if old.permissions != new.permissions:
            self._reload_permissions(new)
        if old.routes != new.routes:
            self._reload_routes([parse_route_url(u) for u in new.routes])

    def _reload_permissions(self, new: ClusterOptions) -> None:
        """As nats-server: routes that cannot take an async INFO are closed; local interest the
        new import list lets out (or no longer lets out) is sent as RS+ (RS-); interest
        learnt from routes that the new export list refuses is dropped; every route gets our
        INFO with the new lists, so its server re-sends what we may now accept."""
        old_imp = self.import_perms
        new_imp, new_exp = _route_permissions(new.permissions)
        self.import_perms, self.export_perms = new_imp, new_exp
        routes = []
        for r in list(self.routes.values()):
            if r.remote_proto < 1:
                r.close(REASON_ROUTE_REMOVED)
            elif not r.closed:
                routes.append(r)
        if not routes:
            return
        parts: list[bytes] = []
        for key, n in self.local_counts.items():
            subject, queue, account = key[0], key[1], key_account(key)
            then = old_imp is None or old_imp.can_publish(subject)
            now = new_imp is None or new_imp.can_publish(subject)
            if now and not then:
                parts.append(rp.rs_plus(account, subject, queue, n) if queue else rp.rs_plus(account, subject))
            elif then and not now:
                parts.append(rp.rs_minus(account, subject, queue))
        info = rp.info_line(self.route_info())
        for r in routes:
            if new_exp is not None:
                for key, rs in list(r.subs.items()):
                    if not new_exp.can_subscribe(rs.subject):
                        del r.subs[key]
                        remote = self.remote_trie(rs.account)
                        if remote is not None:
                            remote.remove(rs.subject, rs.queue, rs)
            self._send_lines(r, [info, *parts])

    def _reload_routes(self, urls: list[RouteURL]) -> None:
        """The configured route list changed: drop the removed ones (without reconnecting,
        reason "Route Removed"), dial the added ones."""
        removed = [u for u in self.configured if u not in urls]
        added = [u for u in urls if u not in self.configured]
        self.configured = urls
        self._tls_name = next((u.host for u in urls if not is_ip(u.host)), "")
        for u in removed:
            task = self._dialing.pop((u.host.lower(), u.port), None)
            if task is not None:
                task.cancel()
            for conn in list(self.conns):
                if conn.url == u and not conn.closed:
                    conn.no_reconnect = True
                    conn.close(REASON_ROUTE_REMOVED)
                    log.info("Removed route %s", u.redacted())
        for u in added:
            self._spawn_dial(u, EXPLICIT, GOSSIP_DEFAULT, first=True)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        server = self.server
        c = self.copts
        if c.tls is not None:
            from pynatsd.tls.context import build_client_context, build_server_context

            # routes are always mutual TLS: nats-server requires and verifies the peer's
            # certificate on the route port whatever ``verify`` says
            server_side = dataclasses.replace(c.tls, verify=True)
            self.server_tls = build_server_context(server_side, fips=server.opts.fips, where="cluster.tls")
            self.client_tls = build_client_context(c.tls, fips=server.opts.fips, where="cluster.tls")
        if self.cluster_dynamic:
            log.warning("Cluster name was dynamically generated, consider setting one")
        log.info("Cluster name is %s", self.cluster_name)
        port = 0 if c.port == -1 else c.port
        try:
            self._listener = await server.loop.create_server(
                lambda: RouteConnection(self), c.host or None, port, reuse_address=True, backlog=1024
            )
        except OSError as e:
            log.critical("Error listening on router port: %s:%s, %s", c.host, c.port, e)
            raise
        self.port = int(self._listener.sockets[0].getsockname()[1])
        self.running = True
        if self.server_tls is not None:
            log.info("TLS required for route connections")
        log.info("Listening for route connections on %s", hostport(c.host, self.port))
        if c.tls is not None and c.tls.insecure:
            log.warning("TLS certificate chain and hostname of solicited routes will not be verified. DO NOT USE IN PRODUCTION!")
        for url in self.configured:
            self._spawn_dial(url, EXPLICIT, GOSSIP_DEFAULT, first=True)

    async def shutdown(self) -> None:
        self.running = False
        if self._listener is not None:
            self._listener.close()
            log.debug("Route accept loop exiting..")
        await close_peers(self._listener, self._tasks, self.conns, REASON_SHUTDOWN)
        self._listener = None

    def lame_duck(self) -> None:
        """Tell the peers we are going away: their clients stop being offered our URLs."""
        line = rp.info_line(self.route_info(ldm=True))
        for r in self.routes.values():
            r.enqueue(line)

    # -- INFO / CONNECT ---------------------------------------------------------------------------

    def own_client_urls(self) -> list[str]:
        """This server's client URLs as advertised to clients and routes (host:port)."""
        server = self.server
        opts = server.opts
        if opts.client_advertise:
            adv = opts.client_advertise.split("://", 1)[-1]
            return [adv if ":" in adv.rsplit("]", 1)[-1] else f"{adv}:{server.port}"]
        host = opts.host
        if host in ("", "0.0.0.0", "::", "[::]"):
            return [hostport(ip, server.port) for ip in _local_ips()] or [
                hostport("127.0.0.1", server.port)
            ]
        return [hostport(host, server.port)]

    def client_connect_urls(self) -> list[str]:
        """connect_urls for client INFO: ours, then every other cluster member's; nothing before
        the first route registered (nats-server's behaviour) or with no_advertise."""
        if self.copts.no_advertise or not self._urls_announced:
            return []
        urls = self.own_client_urls()
        seen = set(urls)
        for u in self.remote_client_urls:
            if u not in seen:
                seen.add(u)
                urls.append(u)
        return urls

    def route_info(
        self, *, gossip_mode: int = GOSSIP_DEFAULT, nonce: bool = False, ldm: bool = False
    ) -> dict[str, Any]:
        server = self.server
        opts = server.opts
        c = self.copts
        host, port = c.host, self.port
        ip = ""
        if c.advertise:
            adv = parse_route_url(c.advertise)
            host, port = adv.host, adv.port if ":" in c.advertise.split("://", 1)[-1] else self.port
            ip = f"nats-route://{hostport(host, port)}/"
        info: dict[str, Any] = {
            "server_id": server.server_id,
            "server_name": server.server_name,
            "version": NATS_SERVER_COMPAT_VERSION,
            "proto": ROUTE_PROTO,
            "go": go_field(),
            "host": host,
            "port": port,
            "headers": server.headers_supported,
        }
        if self.auth_required:
            info["auth_required"] = True
        if self.server_tls is not None:
            info["tls_required"] = True
            info["tls_verify"] = True
        info["max_payload"] = opts.max_payload
        if ip:
            info["ip"] = ip
        if nonce:
            info["nonce"] = secrets.token_urlsafe(11)[:15]
        info["cluster"] = self.cluster_name
        if self.cluster_dynamic:
            info["cluster_dynamic"] = True
        if not c.no_advertise:
            info["connect_urls"] = self.own_client_urls()
        if ldm:
            info["ldm"] = True
        perms = c.permissions
        if perms is not None:
            if perms.publish is not None:
                info["import"] = _perm_json(perms.publish)
            if perms.subscribe is not None:
                info["export"] = _perm_json(perms.subscribe)
        if gossip_mode:
            info["gossip_mode"] = gossip_mode
        gws = server.gateways
        if gws is not None and gws.gateway_url:  # (gateways) this cluster's gateway URLs
            info["gateway_url"] = gws.gateway_url
        return info

    def connect_json(self, conn: RouteConnection) -> dict[str, Any]:
        url = conn.url
        doc: dict[str, Any] = {"echo": True, "verbose": False, "pedantic": False}
        if url is not None and url.user:
            doc["user"] = url.user
            if url.password:
                doc["pass"] = url.password
        doc["tls_required"] = self.server_tls is not None
        doc["headers"] = self.server.headers_supported
        doc["name"] = self.server.server_id
        doc["cluster"] = self.cluster_name
        if self.cluster_dynamic:
            doc["cluster_dynamic"] = True
        return doc

    def authorize(self, conn: RouteConnection, doc: dict[str, Any]) -> bool:
        """The route CONNECT's credentials (or the peer certificate) against cluster auth
        (cluster/peerauth.py, shared with gateways)."""
        c = self.copts
        tls = c.tls
        if tls is not None and (tls.verify_and_map or tls.verify_cert_and_check_known_urls):
            return peerauth.cert_authorized(
                conn.transport,
                user=c.username,
                map_user=tls.verify_and_map,
                known_hosts=[u.host for u in self.configured] if tls.verify_cert_and_check_known_urls else None,
                debug=conn.debug,
            )
        return peerauth.password_authorized(c.username, c.password, doc)

    def adopt_cluster_name(self, theirs: str, theirs_dynamic: bool) -> bool:
        """A dynamic cluster name gives way to a configured or greater one (nats-server's rule)."""
        if not theirs or not self.cluster_dynamic:
            return False
        if theirs_dynamic and not (self.cluster_name < theirs):
            return False
        self.cluster_name = theirs
        if not theirs_dynamic:
            self.cluster_dynamic = False
        log.info("Cluster name updated to %s", theirs)
        return True

    def close_routes_except(self, conn: RouteConnection, rid: str) -> None:
        """After adopting a peer's cluster name: routes to the old cluster go."""
        for other in list(self.conns):
            if other is not conn and other.remote_id != rid:
                other.close(REASON_CLUSTER_NAME)

    def tls_server_name(self, url: RouteURL) -> str:
        if is_ip(url.host) and self._tls_name:
            return self._tls_name
        return url.host

    # -- route registration ----------------------------------------------------------------------

    def first_info(self, conn: RouteConnection, info: dict[str, Any]) -> None:
        server = self.server
        rid = str(info.get("server_id") or "")
        if rid == server.server_id:
            conn.remote_id = rid
            conn.no_reconnect = True
            conn.debug("Detected route to self, ignoring")
            conn.close(REASON_DUPLICATE_ROUTE)
            return
        theirs = info.get("cluster") or ""
        if isinstance(theirs, str) and theirs and theirs != self.cluster_name:
            if self.adopt_cluster_name(theirs, bool(info.get("cluster_dynamic"))):
                self.close_routes_except(conn, rid)
            else:
                conn.close(REASON_CLUSTER_NAME)
                return
        name = str(info.get("server_name") or "")
        if not conn.solicited and name and name == server.server_name:
            conn.error(f"Remote server has a duplicate name: {wire.go_quote(name)}")
            conn.close(REASON_DUPLICATE_NAME)
            return
        acc = info.get("route_account")
        if acc:
            conn.no_reconnect = True
            text = f"Not possible to have a dedicated route for account {wire.go_quote(str(acc))} between those servers"
            conn.error(text)
            conn.close(REASON_PROTOCOL, text)
            return
        conn.info_received = True
        conn.remote_id = rid
        conn.remote_name = name
        conn.headers = bool(info.get("headers")) and server.headers_supported
        conn.remote_import = info.get("import")
        conn.remote_export = info.get("export")
        proto = info.get("proto")
        conn.remote_proto = proto if isinstance(proto, int) else 0
        conn.peer_knows_compression = "compression" in info
        try:
            rport = int(info.get("port") or 0)
        except (TypeError, ValueError):
            rport = 0
        rhost = str(info.get("host") or "")
        if conn.url is None and rhost and rport:
            conn.url = RouteURL(rhost, rport)
        ip = info.get("ip")
        if not ip:
            ip = f"nats-route://{hostport(conn.host, rport)}/"
            info["ip"] = ip
        conn.remote_ip_url = str(ip)
        urls = info.get("connect_urls")
        conn.connect_urls = [u for u in urls if isinstance(u, str)] if isinstance(urls, list) else []
        gw_url = info.get("gateway_url")
        conn.gateway_url = gw_url if isinstance(gw_url, str) else ""
        self._add_route(conn, info)

    def _add_route(self, conn: RouteConnection, info: dict[str, Any]) -> None:
        rid = conn.remote_id
        existing = self.routes.get(rid)
        if existing is not None and not existing.closed:
            # one route per remote server: keep the registered one, close this one
            if conn.solicited and not existing.solicited:
                existing.solicited = True
                existing.url = conn.url
            if conn.rtype == EXPLICIT:
                existing.rtype = EXPLICIT
            existing.retry = True
            conn.no_reconnect = True
            conn.debug(f"Detected duplicate remote route {wire.go_quote(rid)}")
            conn.close(REASON_DUPLICATE_ROUTE)
            return
        self.routes[rid] = conn
        conn.registered = True
        conn.debug(f"Registering remote route {wire.go_quote(rid)}")
        gws = self.server.gateways
        if gws is not None and conn.gateway_url:  # (gateways) as nats-server, before the gossip
            gws.add_cluster_url(conn.gateway_url)
        if len(self.routes) > 1:
            self._gossip_new_route(conn, info)
        if gws is not None:  # (gateways) the gateways we are connected to, to the new route
            gws.send_configs_to_route(conn)
        if conn.connect_urls and not self.copts.no_advertise:
            self._add_client_urls(conn.connect_urls)
        self._send_local_interest(conn)

    def route_closed(self, conn: RouteConnection) -> None:
        self.conns.discard(conn)
        if conn.registered and self.routes.get(conn.remote_id) is conn:
            del self.routes[conn.remote_id]
            if conn.connect_urls and not self.copts.no_advertise:
                self._remove_client_urls(conn.connect_urls)
            gws = self.server.gateways
            if gws is not None and conn.gateway_url:  # (gateways)
                gws.remove_cluster_url(conn.gateway_url)
        conn.registered = False
        self._maybe_reconnect(conn)

    def _maybe_reconnect(self, conn: RouteConnection) -> None:
        if conn.no_reconnect or not self.running:
            return
        retry_implicit = conn.retry or (conn.solicited and conn.rtype == IMPLICIT)
        if not (conn.solicited or retry_implicit) or conn.url is None:
            return
        rid = conn.remote_id
        if rid and rid in self.routes:
            if conn.solicited:
                kept = self.routes[rid]
                if not kept.solicited or (conn.rtype == EXPLICIT and kept.rtype != EXPLICIT):
                    kept.url = conn.url
                kept.solicited = True
                if conn.rtype == EXPLICIT:
                    kept.rtype = EXPLICIT
            log.debug("Not attempting reconnect for solicited route, already connected to %s", wire.go_quote(rid))
            return
        if rid and rid == self.server.server_id:
            return
        if conn.rtype != IMPLICIT or retry_implicit:
            log.debug("Attempting reconnect for solicited route %s", wire.go_quote(conn.url.redacted()))
            delay = random.random() * 0.1
            if conn.rtype == EXPLICIT:
                delay += RECONNECT_DELAY
            self._spawn_dial(conn.url, conn.rtype, GOSSIP_DEFAULT, first=False, delay=delay)

    # -- dialing ------------------------------------------------------------------------------------

    def _spawn_dial(
        self, url: RouteURL, rtype: int, gossip_mode: int, *, first: bool, delay: float = 0.0
    ) -> None:
        key = (url.host.lower(), url.port)
        if key in self._dialing:
            return
        task = self.server.loop.create_task(self._dial(url, rtype, gossip_mode, first, delay))
        self._dialing[key] = task
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            if self._dialing.get(key) is t:
                del self._dialing[key]

        task.add_done_callback(done)

    def dial_done(self, url: RouteURL) -> None:
        """A dialed connection is up: a later drop may start a new dialer for the URL at once
        (the dialing task itself may only finish after the connection is already gone)."""
        self._dialing.pop((url.host.lower(), url.port), None)

    def _still_configured(self, url: RouteURL) -> bool:
        return any(u.host.lower() == url.host.lower() and u.port == url.port for u in self.configured)

    async def _dial(self, url: RouteURL, rtype: int, gossip_mode: int, first: bool, delay: float) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        loop = self.server.loop
        attempts = 0
        attempt_delay = CONNECT_DELAY
        while self.running:
            if rtype == EXPLICIT and not self._still_configured(url):
                log.debug(
                    "Not attempting to connect to explicit route %s, no longer configured",
                    wire.go_quote(str(url)),
                )
                return
            log.debug("Trying to connect to route on %s", url.hostport)
            try:
                await asyncio.wait_for(
                    loop.create_connection(
                        lambda: RouteConnection(self, url=url, rtype=rtype, gossip_mode=gossip_mode),
                        url.host,
                        url.port,
                    ),
                    DIAL_TIMEOUT,
                )
                return
            except (OSError, TimeoutError) as e:
                attempts += 1
                text = f"Error trying to connect to route (attempt {attempts}): {_dial_error(e, url)}"
                report = attempts == 1 or (attempts % CONNECT_ERROR_REPORTS == 0 if first else True)
                if report:
                    log.error("%s", text)
                else:
                    log.debug("%s", text)
                if rtype != EXPLICIT:
                    retries = self.copts.connect_retries
                    if retries <= 0 or attempts > retries:
                        return
                await self.sleep(attempt_delay)
                if self.copts.connect_backoff:
                    attempt_delay = min(attempt_delay * 2, CONNECT_MAX_DELAY)

    # -- gossip ---------------------------------------------------------------------------------------

    def _gossip_new_route(self, conn: RouteConnection, info: dict[str, Any]) -> None:
        from_gossip = conn.solicited and conn.rtype == IMPLICIT
        if (from_gossip and conn.gossip_mode != GOSSIP_OVERRIDE) or info.get(
            "gossip_mode"
        ) == GOSSIP_DISABLED:
            return
        fwd = dict(info)
        fwd.pop("nonce", None)
        fwd.pop("gossip_mode", None)
        lines: dict[int, bytes] = {}
        for r in self.routes.values():
            if r is conn or r.remote_id == conn.remote_id:
                continue
            if (not conn.solicited and r.rtype == EXPLICIT) or (conn.solicited and conn.rtype == EXPLICIT):
                gm = GOSSIP_OVERRIDE
            elif not conn.solicited:
                gm = GOSSIP_DISABLED
            else:
                gm = GOSSIP_DEFAULT
            line = lines.get(gm)
            if line is None:
                doc = dict(fwd)
                if gm:
                    doc["gossip_mode"] = gm
                line = lines[gm] = rp.info_line(doc)
            if self.server.trace:
                r.trace(f"->> [{line[:-2].decode('utf-8', 'replace')}]")
            r.enqueue(line)

    def async_info(self, conn: RouteConnection, info: dict[str, Any]) -> None:
        rid = str(info.get("server_id") or "")
        if info.get("gateway"):
            gws = self.server.gateways
            if gws is not None:  # (gateways) gossip about a gateway, from this cluster
                gws.info_from_route(info, conn.remote_id)
                return
            log.error(
                "Received information about gateway %s from %s, but gateway is not configured",
                wire.go_quote(str(info.get("gateway"))),
                conn.remote_id,
            )
            return
        if rid and rid != conn.remote_id:
            self._implicit_route(info)
            return
        if info.get("ldm"):
            if conn.connect_urls and not self.copts.no_advertise:
                self._remove_client_urls(conn.connect_urls)
                conn.connect_urls = []
            return
        if info.get("import") != conn.remote_import or info.get("export") != conn.remote_export:
            self._peer_permissions_changed(conn, info.get("import"), info.get("export"))

    def _peer_permissions_changed(self, conn: RouteConnection, imp: Any, exp: Any) -> None:
        """The peer reloaded its cluster permissions (nats-server sends its route INFO again):
        it ignored our interest its old export list refused, so what it now accepts is sent
        again (nats-server's updateRemoteRoutePerms)."""
        old = _export_tester(conn.remote_export)
        new = _export_tester(exp)
        conn.remote_import, conn.remote_export = imp, exp
        perms = self.import_perms
        parts: list[bytes] = []
        for key, n in self.local_counts.items():
            subject, queue, account = key[0], key[1], key_account(key)
            if not new.can_subscribe(subject) or old.can_subscribe(subject):
                continue
            if perms is not None and not perms.can_publish(subject):
                continue
            parts.append(rp.rs_plus(account, subject, queue, n) if queue else rp.rs_plus(account, subject))
        self._send_lines(conn, parts)

    def _send_lines(self, conn: RouteConnection, parts: list[bytes]) -> None:
        if not parts:
            return
        if self.server.trace:
            for p in parts:
                conn.trace(f"->> [{p[:-2].decode('utf-8', 'replace')}]")
        conn.enqueue(b"".join(parts))

    def _implicit_route(self, info: dict[str, Any]) -> None:
        rid = str(info.get("server_id") or "")
        if rid == self.server.server_id or info.get("route_account"):
            return
        if rid in self.routes:
            return
        if self._is_configured_route(info):
            return
        ip = info.get("ip")
        if not isinstance(ip, str) or not ip:
            return
        try:
            url = parse_route_url(ip)
        except ValueError:
            log.error("Error parsing URL from INFO: %s", ip)
            return
        if info.get("auth_required") and self.copts.username:
            url = RouteURL(url.host, url.port, self.copts.username, self.copts.password)
        gm = info.get("gossip_mode")
        self._spawn_dial(url, IMPLICIT, gm if isinstance(gm, int) else GOSSIP_DEFAULT, first=True)

    def _is_configured_route(self, info: dict[str, Any]) -> bool:
        if not self.configured:
            return False
        port = str(info.get("port") or "")
        one = f"{info.get('host') or ''}:{port}".lower()
        two = ""
        ip = info.get("ip")
        if isinstance(ip, str) and ip:
            try:
                two = f"{parse_route_url(ip).host}:{port}".lower()
            except ValueError:
                two = ""
        for u in self.configured:
            hp = f"{u.host}:{u.port}".lower()
            if hp == one or (two and hp == two):
                return True
        return False

    # -- client connect URLs ------------------------------------------------------------------------

    def _add_client_urls(self, urls: list[str]) -> None:
        changed = not self._urls_announced
        self._urls_announced = True
        for u in urls:
            if self.remote_client_urls[u] == 0:
                changed = True
            self.remote_client_urls[u] += 1
        if changed:
            self._send_async_info_to_clients()

    def _remove_client_urls(self, urls: list[str]) -> None:
        changed = False
        for u in urls:
            n = self.remote_client_urls.get(u, 0)
            if n <= 1:
                self.remote_client_urls.pop(u, None)
                changed = changed or n == 1
            else:
                self.remote_client_urls[u] = n - 1
        if changed:
            self._send_async_info_to_clients()

    def _send_async_info_to_clients(self) -> None:
        server = self.server
        # nats-server sends its clients no connect_urls updates while it shuts down (its routes
        # dropping then would otherwise yield one shrinking INFO per route just before the EOF).
        if server.lame_duck_mode or not self.running:
            return
        for c in list(server.clients.values()):
            if c.protocol >= 1 and c.first_pong_sent and not c.closed:
                c.enqueue(server.info_for(c))

    # -- interest -------------------------------------------------------------------------------------

    def remote_trie(self, account: bytes) -> SubjectTrie[RemoteSub] | None:
        """Remote interest in ``account`` (None when this server does not have the account)."""
        trie = self.remotes.get(account)
        if trie is None and self.server.accounts.get(account.decode("utf-8", "replace")) is not None:
            trie = self.remotes[account] = SubjectTrie()
        return trie

    def local_interest_added(self, subject: bytes, queue: bytes, account: bytes = GLOBAL_ACCOUNT) -> None:
        key = interest_key(account, subject, queue)
        n = self.local_counts.get(key, 0) + 1
        self.local_counts[key] = n
        if queue:
            self._broadcast_interest(rp.rs_plus(account, subject, queue, n), subject)
        elif n == 1:
            self._broadcast_interest(rp.rs_plus(account, subject), subject)

    def local_interest_removed(self, subject: bytes, queue: bytes, account: bytes = GLOBAL_ACCOUNT) -> None:
        key = interest_key(account, subject, queue)
        n = self.local_counts.get(key, 0) - 1
        if n <= 0:
            self.local_counts.pop(key, None)
            self._broadcast_interest(rp.rs_minus(account, subject, queue), subject)
        else:
            self.local_counts[key] = n
            if queue:
                self._broadcast_interest(rp.rs_plus(account, subject, queue, n), subject)

    def _broadcast_interest(self, line: bytes, subject: bytes) -> None:
        if not self.routes:
            return
        if self.import_perms is not None and not self.import_perms.can_publish(subject):
            return
        trace = self.server.trace
        for r in self.routes.values():
            if trace:
                r.trace(f"->> [{line[:-2].decode('utf-8', 'replace')}]")
            r.enqueue(line)

    def _send_local_interest(self, conn: RouteConnection) -> None:
        parts: list[bytes] = []
        perms = self.import_perms
        for key, n in self.local_counts.items():
            subject, queue, account = key[0], key[1], key_account(key)
            if perms is not None and not perms.can_publish(subject):
                continue
            parts.append(rp.rs_plus(account, subject, queue, n) if queue else rp.rs_plus(account, subject))
        if parts:
            if self.server.trace:
                for p in parts:
                    conn.trace(f"->> [{p[:-2].decode('utf-8', 'replace')}]")
            conn.enqueue(b"".join(parts))
            conn.debug("Sent local subscriptions to route")

    # -- messages -------------------------------------------------------------------------------------

    def forward(
        self, subject: bytes, reply: bytes, hdr_len: int, data: bytes, local: MatchResult[Any],
        account: bytes = GLOBAL_ACCOUNT, queue_filter: tuple[bytes, ...] | None = None,
    ) -> tuple[bool, list[list[Any]]]:
        """Send a locally published message to the routes that want it.

        ``local`` is the local match. Returns (sent to at least one route, the local queue groups
        still to be served here): a queue group whose cluster-wide pick fell on a remote member
        is served by that route. ``hdr_len`` is -1 for a message without headers.
        ``queue_filter`` (messages from leaf nodes): only the queue groups named.
        """
        local_queues = local.queues
        if not self.routes:
            return False, local_queues
        remote = self.remote if account == GLOBAL_ACCOUNT else self.remotes.get(account)
        if remote is None:
            return False, local_queues
        res = remote.match(subject)
        plain = res.plain
        rqueues = res.queues
        if not rqueues:
            if not plain:
                return False, local_queues
            if len(plain) == 1:  # the usual case: one route wants it
                plain[0].route.send_msg(subject, reply, [], hdr_len, data, account)
                return True, local_queues
        targets: dict[RouteConnection, list[bytes]] = {}
        for rs in plain:
            if rs.route not in targets:
                targets[rs.route] = []
        if rqueues:
            remaining = local_queues
            local_names = local.queue_names
            for qname, group in zip(res.queue_names, rqueues, strict=True):
                if queue_filter is not None and qname not in queue_filter:
                    continue  # (leafnodes) a leaf message serves only the groups it names
                local_group = None
                if local_names:
                    try:
                        local_group = local_queues[local_names.index(qname)]
                    except ValueError:
                        local_group = None
                nlocal = len(local_group) if local_group is not None else 0
                total = nlocal
                for rs in group:
                    total += rs.weight
                pick = int(random.random() * total)
                if pick < nlocal:
                    continue  # a local member takes it
                pick -= nlocal
                chosen = group[-1]
                for rs in group:
                    if pick < rs.weight:
                        chosen = rs
                        break
                    pick -= rs.weight
                qs = targets.get(chosen.route)
                if qs is None:
                    targets[chosen.route] = [qname]
                else:
                    qs.append(qname)
                if local_group is not None:
                    remaining = [g for g in remaining if g is not local_group]
            local_queues = remaining
        for route, qs in targets.items():
            route.send_msg(subject, reply, qs, hdr_len, data, account)
        return bool(targets), local_queues

    def deliver_local(
        self,
        route: RouteConnection,
        subject: bytes,
        reply: bytes,
        queues: tuple[bytes, ...],
        hdr_len: int,
        data: bytes,
        acc: Any = None,
    ) -> None:
        """A routed message: to local subscribers of its account only (one member of each named
        queue group)."""
        server = self.server
        acc = acc or server.gacc
        gateways = server.gateways
        if gateways is not None:
            # (gateways) a _GR_ answer for us, or a request whose reply came with _GR_
            subject = gateways.own_subject(subject)
            if reply.startswith(b"_GR_."):
                reply = gateways.track_reply(acc.name_b, reply)
        res = acc.sublist.match(subject)
        plain = res.plain
        lq = res.queues
        if lq:
            lq = [g for name, g in zip(res.queue_names, lq, strict=True) if name in queues] if queues else []
        leafs = server.leafs
        if leafs is not None:
            # (leafnodes) leaf interest was advertised to the routes as ours
            leafs.forward(subject, reply, hdr_len, data, res, acc.name_b, queue_filter=queues, from_route=True)
        if not plain and not lq:
            return
        size_digits = b"%d" % len(data)
        hdr_digits = (b"%d" % hdr_len) if hdr_len > 0 else None
        deliver(server, route, subject, reply, size_digits, data, hdr_digits, max(hdr_len, 0), plain, lq)

    # -- monitoring -------------------------------------------------------------------------------------

    def routez_permissions(self) -> dict[str, Any]:
        """The cluster's own import/export permissions, as /routez shows them (or nothing)."""
        perms = self.copts.permissions
        out: dict[str, Any] = {}
        if perms is not None:
            if perms.publish is not None:
                out["import"] = _perm_json(perms.publish)
            if perms.subscribe is not None:
                out["export"] = _perm_json(perms.subscribe)
        return out

    def routez_entries(self, subs: bool, subs_detail: bool, now: datetime) -> list[dict[str, Any]]:
        """The ``routes`` list of /routez (nats-server's RouteInfo fields and order)."""
        from pynatsd.monitor import gofmt

        out: list[dict[str, Any]] = []
        for r in sorted(self.routes.values(), key=lambda x: x.rid):
            last = r.last_activity
            e: dict[str, Any] = {
                "rid": r.rid,
                "remote_id": r.remote_id,
                "remote_name": r.remote_name,
                "did_solicit": r.solicited,
                "is_configured": r.is_configured,
                "ip": r.host,
                "port": r.port,
                "start": r.start,
                "last_activity": last,
                "rtt": gofmt.rtt_string(r.rtt),
                "uptime": gofmt.uptime((now - r.start).total_seconds()),
                "idle": gofmt.uptime(max((now - last).total_seconds(), 0.0)),
            }
            if r.remote_import is not None:
                e["import"] = r.remote_import
            if r.remote_export is not None:
                e["export"] = r.remote_export
            e["pending_size"] = r.pending_bytes
            e["in_msgs"] = r.in_msgs
            e["out_msgs"] = r.out_msgs
            e["in_bytes"] = r.in_bytes
            e["out_bytes"] = r.out_bytes
            e["subscriptions"] = len(r.subs)
            if subs_detail and r.subs:
                e["subscriptions_list_detail"] = [
                    {
                        "account": rs.account.decode("utf-8", "replace"),
                        "subject": rs.subject.decode("utf-8", "replace"),
                        **({"qgroup": rs.queue.decode("utf-8", "replace")} if rs.queue else {}),
                        "sid": " ".join(
                            x.decode("utf-8", "replace") for x in (rs.account, rs.subject, rs.queue) if x
                        ),
                        "msgs": 0,
                        "cid": r.rid,
                    }
                    for rs in r.subs.values()
                ]
            elif subs and r.subs:
                e["subscriptions_list"] = [rs.subject.decode("utf-8", "replace") for rs in r.subs.values()]
            # as nats-server reports a route that did not negotiate compression: "off" when the
            # peer knows compression (its INFO has the field), "not supported" otherwise
            e["compression"] = "off" if r.peer_knows_compression else "not supported"
            out.append(e)
        return out


# -- helpers ---------------------------------------------------------------------------------------------




def _sockname(transport: Any) -> str:
    name = transport.get_extra_info("sockname") if transport is not None else None
    if isinstance(name, tuple) and len(name) >= 2:
        return hostport(str(name[0]), int(name[1]))
    return "?"




def _local_ips() -> list[str]:
    """Non-loopback addresses of this host (what nats-server lists for a 0.0.0.0 listener)."""
    import socket

    ips: list[str] = []
    try:
        for fam, _, _, _, addr in socket.getaddrinfo(socket.gethostname(), None, proto=socket.IPPROTO_TCP):
            ip = str(addr[0])
            if fam == socket.AF_INET and not ip.startswith("127.") and ip not in ips:
                ips.append(ip)
    except OSError:
        pass
    return ips


def _route_permissions(perms: Any) -> tuple[Any, Any]:
    """Cluster ``permissions`` as (import, export) checkers, or (None, None): nats-server
    maps import to publish and export to subscribe permissions."""
    if perms is None:
        return None, None
    from pynatsd.auth import ClientPermissions
    from pynatsd.config.options import Permissions

    return (
        ClientPermissions(Permissions(publish=perms.publish)),
        ClientPermissions(Permissions(subscribe=perms.subscribe)),
    )


def _export_tester(doc: Any) -> Any:
    """A peer's INFO ``export`` list as a checker (absent or an empty allow list: all)."""
    from pynatsd.auth import ClientPermissions
    from pynatsd.config.options import Permissions, SubjectPermission

    allow: tuple[str, ...] | None = None
    deny: tuple[str, ...] = ()
    if isinstance(doc, dict):
        a, d = doc.get("allow"), doc.get("deny")
        if isinstance(a, list) and a:
            allow = tuple(str(x) for x in a)
        if isinstance(d, list):
            deny = tuple(str(x) for x in d)
    return ClientPermissions(Permissions(subscribe=SubjectPermission(allow=allow, deny=deny)))


def _perm_json(p: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    if p.allow is not None:
        doc["allow"] = list(p.allow)
    if p.deny:
        doc["deny"] = list(p.deny)
    return doc


def _dial_error(e: BaseException, url: RouteURL) -> str:
    if isinstance(e, (TimeoutError, asyncio.TimeoutError)):
        return f"dial tcp {url.hostport}: i/o timeout"
    if isinstance(e, ConnectionRefusedError):
        return f"dial tcp {url.hostport}: connect: connection refused"
    return f"dial tcp {url.hostport}: {e.strerror or e}" if isinstance(e, OSError) else str(e)


def _args(*parts: bytes | int) -> str:
    return " ".join(
        p.decode("utf-8", "replace") if isinstance(p, bytes) else str(p) for p in parts if p != b""
    )


def _msg_args(
    account: bytes, subject: bytes, reply: bytes, queues: tuple[bytes, ...], hdr_len: int, data: bytes
) -> str:
    line = rp.msg_line(account, subject, reply, queues, hdr_len, len(data))
    return line[5:-2].decode("utf-8", "replace")

