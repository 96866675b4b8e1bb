"""Leaf nodes: the leafnode listener (hub side), the remotes this server dials (spoke side),
the leafnode wire protocol, interest propagation and message forwarding over leaf connections.

``LeafManager`` is what the server holds (``server.leafs``); ``LeafConnection`` is one asyncio
Protocol per leaf connection, accepted or solicited. Behaviour checked against nats-server
2.15.1 on loopback:

- Hub (accept): INFO at once, in plaintext (then the TLS server handshake when ``leafnodes.tls``
  exists; TLS first with ``handshake_first``). INFO always says ``auth_required:true`` and
  carries a non-zero ``client_id`` and ``leafnode_urls`` (a real spoke refuses an INFO without
  them). The spoke's CONNECT is authenticated (leafnodes users/user, else the certificate with
  ``verify_and_map``, else the server's own authorization), bound to an account, answered with
  a second INFO (``connect_info:true``, ``remote_account``) and the account's interest as LS+.
- Spoke (solicit): dial, read the hub's INFO (``first_info_timeout``), TLS client handshake when
  the INFO requires it or the remote has a ``tls`` block, then CONNECT (credentials from the URL)
  and the local interest of the bound account. Retried every ``reconnect`` seconds.
- Interest: ``LS+ <subject>``, ``LS+ <subject> <queue> <weight>``, ``LS- <subject>[ <queue>]``;
  the account is the connection's. Each side sends the interest of the bound account except
  what came from that same leaf connection: local subscriptions, interest learnt from routes
  and from other leaf connections; plus a ``$LDS.<random>`` subject of its own. Getting one's
  own $LDS subject back means a loop: ``-ERR 'Loop detected for leafnode account=...'`` and the
  spoke waits 30 s before dialing again.
- Messages: ``LMSG <subject> [<reply> | + <reply> <q>... | | <q>...] <size>`` and ``HMSG`` with
  ``<hdr> <total>``. A message from a leaf goes to local subscribers (queue groups only when
  named), to routes, and to other leaf connections, never back. A local publish goes to leaf
  connections with matching interest; a queue group is served by a leaf only when no local or
  cluster member exists (nats-server prefers local queue members).
- Leaf interest counts as local interest for the cluster (RS+/RS- on routes).
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pynatsd import NATS_SERVER_COMPAT_VERSION
from pynatsd.client import deliver
from pynatsd.cluster import protocol as rp
from pynatsd.cluster.peerconn import PeerConnection, close_peers, hostport
from pynatsd.cluster.protocol import (
    R_CLOSE,
    R_CONNECT,
    R_ERR,
    R_INFO,
    R_MSG,
    R_PING,
    R_PONG,
    R_SUB,
    R_UNSUB,
    ProtocolError,
    RouteParser,
    _msg_args,
)
from pynatsd.protocol import wire
from pynatsd.subjects import SubjectTrie

if TYPE_CHECKING:
    from pynatsd.accounts import Account
    from pynatsd.config.options import LeafNodeOptions, LeafRemoteOptions
    from pynatsd.server import Server

log = logging.getLogger("pynatsd")

GLOBAL = "$G"
LOOP_DELAY = 30.0
WRITE_HIGH_WATER = 64 * 1024 * 1024
MAX_LEAF_PENDING = 64 * 1024 * 1024

ERR_AUTH_VIOLATION = "Authorization Violation"
ERR_WRONG_PORT = "attempted to connect to wrong port"

REASON_CLIENT_CLOSED = "Client Closed"
REASON_AUTH_FAILURE = "Authentication Failure"
REASON_PROTOCOL = "Protocol Violation"
REASON_SHUTDOWN = "Server Shutdown"
REASON_READ_ERROR = "Read Error"
REASON_SLOW = "Slow Consumer (Pending Bytes)"
REASON_WRONG_PORT = "Incorrect Port"
REASON_LOOP = "Leafnode Loop Detected"
REASON_CLUSTER_NAME = "Cluster Name Conflict"
REASON_MIN_VERSION = "Minimum Version Required"
REASON_REMOVED = "Leafnode Remote Removed"


def loop_error(account: str) -> str:
    return f"Loop detected for leafnode account={wire.go_quote(account)}. Delaying attempt to reconnect for 30s"


# -- wire ----------------------------------------------------------------------------------------


class LeafParser(RouteParser):
    """Bytes in, leaf ops out: the route parser's framing with the leafnode op table. Ops are
    the R_* tuples; the account field of R_SUB/R_UNSUB/R_MSG is always empty (the connection's)."""

    __slots__ = ()

    @staticmethod
    def _control_line(line: bytes) -> tuple[Any, ...] | None:
        sp = line.split(None, 1)
        if not sp:
            return None
        name = sp[0].upper()
        rest = sp[1] if len(sp) > 1 else b""
        if name == b"LMSG" or name == b"HMSG":
            _, subj, reply, queues, hdr, total = _msg_args([b"", *rest.split()], name == b"HMSG")
            return (R_MSG, b"", subj, reply, queues, hdr, total)
        if name == b"LS+":
            args = rest.split()
            if len(args) == 1:
                return (R_SUB, b"", args[0], b"", 0)
            if len(args) == 3:
                w = args[2]
                weight = int(w) if w.isdigit() and len(w) <= 9 else 1
                return (R_SUB, b"", args[0], args[1], max(weight, 1))
            raise ProtocolError("LS+ arguments")
        if name == b"LS-":
            args = rest.split()
            if len(args) == 1:
                return (R_UNSUB, b"", args[0], b"")
            if len(args) == 2:
                return (R_UNSUB, b"", args[0], args[1])
            raise ProtocolError("LS- arguments")
        op = rp.common_op(name, rest)
        if op is not None:
            return op
        return (R_CLOSE, rp.ERR_UNKNOWN_OP, REASON_PROTOCOL)


def ls_plus(subject: bytes, queue: bytes = b"", weight: int = 1) -> bytes:
    if queue:
        return b"LS+ %s %s %d\r\n" % (subject, queue, weight)
    return b"LS+ %s\r\n" % subject


def ls_minus(subject: bytes, queue: bytes = b"") -> bytes:
    if queue:
        return b"LS- %s %s\r\n" % (subject, queue)
    return b"LS- %s\r\n" % subject


def lmsg_line(subject: bytes, reply: bytes, queues: list[bytes], hdr_len: int, total: int) -> bytes:
    parts = [b"HMSG" if hdr_len >= 0 else b"LMSG", subject]
    if queues:
        parts += [b"+", reply] if reply else [b"|"]
        parts.extend(queues)
    elif reply:
        parts.append(reply)
    if hdr_len >= 0:
        parts.append(b"%d" % hdr_len)
    parts.append(b"%d\r\n" % total)
    return b" ".join(parts)


@dataclass(frozen=True)
class LeafURL:
    scheme: str
    host: str
    port: int
    user: str | None
    password: str | None

    def hostport(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_leaf_url(text: str) -> LeafURL:
    u = urllib.parse.urlsplit(text.strip())
    user = urllib.parse.unquote(u.username) if u.username else None
    pw = urllib.parse.unquote(u.password) if u.password else None
    return LeafURL(u.scheme.lower(), u.hostname or "127.0.0.1", u.port or 7422, user, pw)


class LeafSub:
    """Interest a leaf connection told us about: the item of the per-account leaf trie."""

    __slots__ = ("conn", "subject", "queue", "weight")

    def __init__(self, conn: LeafConnection, subject: bytes, queue: bytes, weight: int) -> None:
        self.conn = conn
        self.subject = subject
        self.queue = queue
        self.weight = weight


class LeafInterestTrie(SubjectTrie[Any]):
    """An account's local subscription trie reporting inserts/removes to the leaf manager (and
    to the route manager it replaces, which watches the same trie)."""

    def __init__(self, manager: LeafManager, account: bytes) -> None:
        super().__init__()
        self._leafs = manager
        self._account = account

    def insert(self, subject: bytes, queue: bytes, item: Any) -> None:
        before = self.count()
        super().insert(subject, queue, item)
        if self.count() != before:
            self._leafs.local_added(self._account, subject, queue)

    def remove(self, subject: bytes, queue: bytes, item: Any) -> bool:
        removed = super().remove(subject, queue, item)
        if removed:
            self._leafs.local_removed(self._account, subject, queue)
        return removed


# -- one connection -----------------------------------------------------------------------------


class LeafConnection(PeerConnection):
    """One leafnode connection (see the module docstring)."""

    KIND = "Leafnode"
    CLOSED_LINE = "Leafnode connection closed"
    TRACE_CONNECT_IN = True
    TRACE_ERR_OUT = True
    TIMERS = ("_auth_timer", "_ping_timer", "_info_timer")

    manager: LeafManager
    server: Server

    def __init__(self, manager: LeafManager, remote: RemoteState | None = None) -> None:
        self._init_peer(manager, LeafParser(max(manager.server.opts.max_control_line, 4096) * 16))
        self.remote = remote
        self.solicited = remote is not None
        self.url: LeafURL | None = remote.current_url if remote is not None else None
        self.lid = 0
        self.acc: Account | None = None
        self.account_name = ""
        self.remote_cluster = ""
        self.subs: dict[tuple[bytes, bytes], LeafSub] = {}  # what the peer told us, by (subject, queue)
        self.sent: dict[tuple[bytes, bytes], int] = {}  # what we told the peer: weight (plain: 1)
        self.tls_first = False
        self.perms = None
        # (ClientPermissions | None) permissions of the leaf side of this connection: on the hub
        # those of the user it logged in as; on the spoke those the hub sent (import/export)
        self.acl: Any = None
        self._awaiting_tls = False
        self._info_timer: asyncio.TimerHandle | None = None
        self.loop_detected = False
        self.nonce = ""

    def __repr__(self) -> str:
        return f"<LeafConnection lid={self.lid} {self.host}:{self.port} remote={self.remote_name or '?'}>"

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        mgr = self.manager
        self.lid = self._attach(transport, "lid")
        if not self._admit(transport, WRITE_HIGH_WATER):
            return
        self.notice("Leafnode connection created" + (f" for account: {self.remote.account}" if self.remote else ""))
        if self.solicited:
            assert self.remote is not None
            if self.remote.tls_first:
                self._start_tls_client()
                return
            self._reading = True
            self._info_timer = self.server.loop.call_later(self.remote.opts.first_info_timeout, self._no_info)
            return
        if mgr.server_tls is not None and mgr.tls_first:
            self.tls_first = True
            self._start_tls_server()
            return
        self._send_first_info()
        if mgr.server_tls is not None:
            self._start_tls_server()
            return
        self._accept_begin()

    # hub side ------------------------------------------------------------------------------

    def _send_first_info(self) -> None:
        self.nonce = secrets.token_urlsafe(11)[:15]
        info = self.manager.hub_info(self, nonce=self.nonce)
        self.enqueue(rp.info_line(info))
        self.flush()

    def _accept_begin(self) -> None:
        self._reading = True
        self._start_auth_timer()

    def _start_tls_server(self) -> None:
        self._awaiting_tls = True
        self.debug("Starting TLS leafnode server handshake")

        def ok(tls_transport: Any) -> None:
            self._tls_done(tls_transport)
            if self.tls_first:
                self._send_first_info()
            self._accept_begin()

        self._start_handshake(
            self.manager.server_tls, self.manager.tls_timeout, ok, self._tls_failed_leaf, tls_first=self.tls_first
        )

    def _tls_done(self, tls_transport: Any) -> None:
        self._tls_established(tls_transport, unknown_info={}, version_line=False)

    def _tls_failed_leaf(self, err: str | None) -> None:
        self._tls_failed("leafnode", err)

    # spoke side ----------------------------------------------------------------------------

    def _no_info(self) -> None:
        self._info_timer = None
        if self.closed or self.info_received:
            return
        self.error("Did not receive the leafnode server's INFO in time")
        self.close(REASON_READ_ERROR, flush=False)

    def _start_tls_client(self) -> None:
        assert self.remote is not None and self.url is not None
        self._awaiting_tls = True
        self._reading = False
        self.debug("Starting TLS leafnode client handshake")

        def ok(tls_transport: Any) -> None:
            self._tls_done(tls_transport)
            self._reading = True
            if self.info_received:
                self._solicit_connect()
            else:
                self._info_timer = self.server.loop.call_later(self.remote.opts.first_info_timeout, self._no_info)  # type: ignore[union-attr]

        self._start_handshake(
            self.remote.client_tls(), self.remote.tls_timeout, ok, self._tls_failed_leaf,
            client=True, server_hostname=self.url.host,
        )

    def _solicit_connect(self) -> None:
        mgr = self.manager
        assert self.remote is not None
        self.enqueue(rp.connect_line(mgr.connect_json(self)))
        self.debug("Remote leafnode connect msg sent")
        self._register()

    # -- reading -----------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.closed or not self._reading:
            return
        self._last_in = time.time()
        for op in self.parser.feed(data):
            if self.closed:
                return
            kind = op[0]
            if kind == R_MSG and self.registered:
                self._on_msg(op[2], op[3], op[4], op[5], op[6])
            else:
                self._handle(op)
            if self._awaiting_tls:
                return  # the TLS layer takes over the socket: nothing else is plaintext

    def _handle(self, op: tuple[Any, ...]) -> None:
        kind = op[0]
        trace = self.server.trace
        if not self.solicited and not self.connect_received and kind not in (R_CONNECT, R_CLOSE, R_PING, R_PONG):
            self.error(ERR_AUTH_VIOLATION)
            self.close(REASON_AUTH_FAILURE, ERR_AUTH_VIOLATION)
            return
        if kind == R_MSG:
            return  # before registration
        if kind == R_SUB:
            if trace:
                self.trace(f"<<- [LS+ {_args(op[2], op[3], op[4] if op[3] else None)}]")
            if self.registered:
                self.manager.leaf_sub(self, op[2], op[3], op[4])
        elif kind == R_UNSUB:
            if trace:
                self.trace(f"<<- [LS- {_args(op[2], op[3])}]")
            if self.registered:
                self.manager.leaf_unsub(self, op[2], op[3])
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
            self.error(f"Leafnode Error '{text}'")
            if "Loop detected" in text:
                self.loop_detected = True
                self.close(REASON_LOOP, flush=False)
            else:  # (nats-server's reason when a leaf peer's -ERR ends the connection)
                self.close(REASON_CLIENT_CLOSED, flush=False)
        elif kind == R_CLOSE:
            self.error(f"Leafnode parser error: {op[2]}")
            self.close(op[2], op[1])

    def _on_info(self, raw: bytes) -> None:
        info = self._json_doc(raw, "Leafnode INFO")
        if info is None:
            return
        if not self.solicited:
            return  # a spoke's INFO carries nothing we use
        if self.info_received:
            self.manager.async_info(self, info)
            return
        self.info_received = True
        if self._info_timer is not None:
            self._info_timer.cancel()
            self._info_timer = None
        if not info.get("client_id") or "leafnode_urls" not in info:
            # a client or route port answered: nats-server refuses such an INFO the same way
            self.error(ERR_WRONG_PORT)
            self.close(REASON_WRONG_PORT, ERR_WRONG_PORT)
            return
        self.remote_id = str(info.get("server_id") or "")
        self.remote_name = str(info.get("server_name") or self.remote_id)
        self.remote_cluster = str(info.get("cluster") or "")
        self.headers = bool(info.get("headers")) and self.server.headers_supported
        assert self.remote is not None
        if self.tls_info is None and (info.get("tls_required") or self.remote.opts.tls is not None):
            self._start_tls_client()
            return
        self._solicit_connect()

    def _on_connect(self, raw: bytes) -> None:
        if self.solicited or self.connect_received:
            return
        doc = self._json_doc(raw, "Leafnode CONNECT")
        if doc is None:
            return
        self._stop_auth_timer()
        self.connect_received = True
        self.manager.authorize(self, doc)

    def accepted(self, doc: dict[str, Any], account: str) -> None:
        """The hub side authenticated the CONNECT ``doc``: bind, answer, register."""
        mgr = self.manager
        if doc.get("lang"):
            self.error(wire.ERR_LEAF_PORT)
            self.close(REASON_WRONG_PORT, wire.ERR_LEAF_PORT)
            return
        if doc.get("gateway"):
            text = f"Rejecting connection from gateway {wire.go_quote(str(doc.get('gateway')))} on the Leafnode port"
            self.error(text)
            self.close(REASON_WRONG_PORT, text)
            return
        cluster = str(doc.get("cluster") or "")
        routes = self.server.routes
        if cluster and routes is not None and cluster == routes.cluster_name:
            text = "remote leafnode has same cluster name"
            self.error(text)
            self.close(REASON_CLUSTER_NAME, text)
            return
        acc = self.server.accounts.get(account)
        if acc is None:
            self.error(ERR_AUTH_VIOLATION)
            self.close(REASON_AUTH_FAILURE, ERR_AUTH_VIOLATION)
            return
        self.remote_id = str(doc.get("server_id") or "")
        self.remote_name = str(doc.get("name") or self.remote_id)
        self.remote_cluster = cluster
        self.headers = bool(doc.get("headers")) and self.server.headers_supported
        self.acc = acc
        self.account_name = account
        self.enqueue(rp.info_line(mgr.hub_info(self, connect_info=True)))
        minv = mgr.lopts.min_version
        if minv and _version_tuple(str(doc.get("version") or "0.0.0")) < _version_tuple(minv):
            # after the connect_info INFO, as nats-server does
            text = f"connection rejected since minimum version required is {wire.go_quote(minv)}"
            self.error(f"{text} - Account:{account}")
            self.close(REASON_MIN_VERSION, text)
            return
        self._register()

    def _register(self) -> None:
        mgr = self.manager
        if self.acc is None:
            assert self.remote is not None
            acc = self.server.accounts.get(self.remote.account)
            assert acc is not None
            self.acc = acc
            self.account_name = self.remote.account
        self.registered = True
        mgr.register(self)
        self.flush()
        self._start_pings(jitter=True)

    # -- messages ------------------------------------------------------------------------------------

    def _on_msg(self, subject: bytes, reply: bytes, queues: tuple[bytes, ...], hdr_len: int, data: bytes) -> None:
        self.in_msgs += 1
        self.in_bytes += len(data)
        if self.server.trace:
            self.trace(f"<<- [{'HMSG' if hdr_len >= 0 else 'LMSG'} {_margs(subject, reply, queues, hdr_len, data)}]")
        self.manager.inbound(self, subject, reply, queues, hdr_len, data)

    def send_msg(self, subject: bytes, reply: bytes, queues: list[bytes], hdr_len: int, data: bytes) -> None:
        if self.closed:
            return
        if hdr_len >= 0 and not self.headers:
            data = data[hdr_len:]
            hdr_len = -1
        line = lmsg_line(subject, reply, queues, hdr_len, len(data))
        if self.server.trace:
            self.trace(f"->> [{line[:-2].decode('utf-8', 'replace')}]")
        self.out.append(line)
        self.out.append(data)
        self.out.append(rp.CRLF)
        self.out_size += len(line) + len(data) + 2
        self.out_msgs += 1
        self.out_bytes += len(data)
        stats = self.server.stats
        stats.out_msgs += 1
        stats.out_bytes += len(data)
        if not self.dirty:
            self.dirty = True
            self.server.mark_dirty(self)  # type: ignore[arg-type]
        if self.out_size > MAX_LEAF_PENDING and self.pending_bytes > MAX_LEAF_PENDING:
            self.notice(f"Slow Consumer Detected: MaxPending of {MAX_LEAF_PENDING} Exceeded")
            self.close(REASON_SLOW, flush=False)

    # -- keepalive and closing ----------------------------------------------------------------------

    def _count_stale(self) -> None:
        self.server.stats.stale_connections += 1

    def _closed(self) -> None:
        self.manager.closed(self)


# -- the remotes this server dials --------------------------------------------------------------


class RemoteState:
    """A configured remote: its URLs, TLS context, permissions and the dial loop state."""

    def __init__(self, manager: LeafManager, opts: LeafRemoteOptions) -> None:
        self.manager = manager
        self.opts = opts
        self.urls = [parse_leaf_url(u) for u in opts.urls]
        self.account = opts.account or GLOBAL
        self.idx = 0
        self.conn: LeafConnection | None = None
        self.task: asyncio.Task[None] | None = None
        self.attempts = 0
        self.removed = False
        self._client_tls: Any = None
        self.tls_first = bool(opts.tls is not None and opts.tls.handshake_first is True)
        self.tls_timeout = opts.tls.timeout if opts.tls is not None and opts.tls.timeout else 2.0
        from pynatsd.auth import ClientPermissions
        from pynatsd.config.options import Permissions, SubjectPermission

        # deny_exports: messages we do not send (publish); deny_imports: hub interest refused
        # for our subscriptions (subscribe), as nats-server maps them
        self.perms = None
        if opts.deny_imports or opts.deny_exports:
            self.perms = ClientPermissions(
                Permissions(
                    publish=SubjectPermission(deny=tuple(opts.deny_exports)) if opts.deny_exports else None,
                    subscribe=SubjectPermission(deny=tuple(opts.deny_imports)) if opts.deny_imports else None,
                )
            )

    @property
    def current_url(self) -> LeafURL:
        return self.urls[self.idx % len(self.urls)]

    def client_tls(self) -> Any:
        if self._client_tls is None:
            from pynatsd.config.options import TLSOptions
            from pynatsd.tls.context import build_client_context

            tlso = self.opts.tls if self.opts.tls is not None else TLSOptions()
            self._client_tls = build_client_context(tlso, fips=self.manager.server.opts.fips, where="leafnodes remote tls")
        return self._client_tls


@dataclass
class LeafReload:
    """A validated reload of the leafnodes block (see LeafManager.build_reload)."""

    opts: LeafNodeOptions
    server_tls: Any
    remotes: list[RemoteState]


class LeafManager:
    """The leafnode side of a server: listener, remotes, registered leafs, interest, forwarding."""

    def __init__(self, server: Server) -> None:
        self.server = server
        opts = server.opts
        assert opts.leafnodes is not None
        self.lopts: LeafNodeOptions = opts.leafnodes
        lo = self.lopts
        self.running = False
        self.port = 0
        self.conns: set[LeafConnection] = set()
        self.leafs: dict[int, LeafConnection] = {}  # registered, by lid
        # per account: interest learnt from leaf connections
        self.tries: dict[bytes, SubjectTrie[LeafSub]] = {}
        # (account, subject, queue) -> {source: weight}; source 0 = local clients, ("r", rid) a route,
        # a lid a leaf connection
        self.sources: dict[tuple[bytes, bytes, bytes], dict[Any, int]] = {}
        self.remotes = [RemoteState(self, r) for r in lo.remotes]
        self.server_tls: Any = None
        self.tls_first = bool(lo.tls is not None and lo.tls.handshake_first is True)
        self.tls_timeout = lo.tls.timeout if lo.tls is not None and lo.tls.timeout else 2.0
        self.auth_timeout = lo.auth_timeout or (self.tls_timeout + 1.0 if lo.tls is not None else 2.0)
        self.ping_interval = min(opts.ping_interval, 30.0) or 30.0
        self.ping_max = opts.ping_max or 2
        self.lds: dict[bytes, bytes] = {}  # account -> our $LDS subject
        self._listener: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.users = {u.username: u for u in lo.users} if lo.users else {}
        # local interest: wrap every account's trie (after the route manager did, if any)
        routes = server.routes
        self._route_factory = server.accounts.make_trie if routes is not None else None
        server.accounts.set_trie_factory(lambda acc: self._make_trie(acc))

    def _make_trie(self, acc: Account) -> SubjectTrie[Any]:
        routes = self.server.routes
        if routes is not None:
            return _BothTrie(self, routes, acc.name_b)
        return LeafInterestTrie(self, acc.name_b)

    def __len__(self) -> int:
        return len(self.leafs)

    def lds_subject(self, account: bytes) -> bytes:
        s = self.lds.get(account)
        if s is None:
            s = self.lds[account] = b"$LDS." + secrets.token_urlsafe(16).replace("-", "A").replace("_", "B")[:22].encode()
        return s

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        server = self.server
        lo = self.lopts
        if lo.tls is not None:
            from pynatsd.tls.context import build_server_context

            self.server_tls = build_server_context(lo.tls, fips=server.opts.fips, where="leafnodes.tls")
        for r in self.remotes:  # fail at start-up on a bad remote tls block, as on the listener's
            if r.opts.tls is not None:
                r.client_tls()
        self.running = True
        if lo.port:
            port = 0 if lo.port == -1 else lo.port
            try:
                self._listener = await server.loop.create_server(
                    lambda: LeafConnection(self), lo.host or None, port, reuse_address=True, backlog=1024
                )
            except OSError as e:
                log.critical("Error listening on leafnode port: %s:%s, %s", lo.host, lo.port, e)
                raise
            self.port = int(self._listener.sockets[0].getsockname()[1])
            if self.server_tls is not None:
                log.info("TLS required for leafnode connections")
            log.info("Listening for leafnode connections on %s", hostport(lo.host, self.port))
        for r in self.remotes:
            if r.opts.tls is not None and r.opts.tls.insecure:
                log.warning(
                    "TLS certificate chain and hostname of solicited leafnodes will not be verified. DO NOT USE IN PRODUCTION!"
                )
            self._spawn(r, 0.0)

    async def shutdown(self) -> None:
        self.running = False
        if self._listener is not None:
            self._listener.close()
        await close_peers(self._listener, self._tasks, self.conns, REASON_SHUTDOWN)
        self._listener = None

    # -- reload ------------------------------------------------------------------------------------

    def build_reload(self, new: LeafNodeOptions) -> LeafReload:
        """Everything a validated reload needs, built before anything changes (certificate
        files re-read; raises ConfigError on a bad one)."""
        from pynatsd.tls.context import build_server_context

        server_tls = None
        if new.tls is not None:
            server_tls = build_server_context(new.tls, fips=self.server.opts.fips, where="leafnodes.tls")
        remotes = []
        for r in new.remotes:
            st = RemoteState(self, r)
            if r.tls is not None:
                st.client_tls()
            remotes.append(st)
        return LeafReload(new, server_tls, remotes)

    def reload(self, plan: LeafReload) -> None:
        """New TLS contexts for the next handshakes (established connections stay); remotes no
        longer configured are closed and not dialed again, new ones are dialed, kept ones take
        their new TLS context."""
        self.lopts = plan.opts
        if plan.server_tls is not None:
            self.server_tls = plan.server_tls
        old = {(r.opts.urls, r.account): r for r in self.remotes}
        keep: list[RemoteState] = []
        for st in plan.remotes:
            prev = old.pop((st.opts.urls, st.account), None)
            if prev is not None:
                prev.opts = st.opts
                prev._client_tls = st._client_tls
                keep.append(prev)
            else:
                keep.append(st)
                log.info("Reloaded: LeafNode Remote urls=%s, account=%s added", list(st.opts.urls), st.account)
                self._spawn(st, 0.0)
        for r in old.values():
            r.removed = True
            if r.task is not None:
                r.task.cancel()
            if r.conn is not None:
                r.conn.close(REASON_REMOVED)
            log.info("Reloaded: LeafNode Remote urls=%s, account=%s removed", list(r.opts.urls), r.account)
        self.remotes = keep

    def _spawn(self, remote: RemoteState, delay: float) -> None:
        if not self.running or remote.removed:
            return
        task = self.server.loop.create_task(self._dial(remote, delay))
        remote.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _dial(self, remote: RemoteState, delay: float) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        while self.running and not remote.removed:
            url = remote.current_url
            remote.attempts += 1
            log.debug("Trying to connect as leafnode to remote server on %s", url.hostport())
            try:
                await self.server.loop.create_connection(lambda: LeafConnection(self, remote), url.host, url.port)
                return
            except OSError as e:
                log.error(
                    'Error trying to connect as leafnode to remote server %s (attempt %d): %s',
                    wire.go_quote(url.hostport()), remote.attempts, e,
                )
            remote.idx += 1
            await asyncio.sleep(self.lopts.reconnect)

    def closed(self, conn: LeafConnection) -> None:
        self.conns.discard(conn)
        if conn.registered:
            self.unregister(conn)
        remote = conn.remote
        if remote is not None and self.running:
            remote.conn = None
            remote.idx += 1
            self._spawn(remote, LOOP_DELAY if conn.loop_detected else self.lopts.reconnect)

    # -- handshake helpers ------------------------------------------------------------------------

    def hub_info(self, conn: LeafConnection, *, nonce: str = "", connect_info: bool = False) -> dict[str, Any]:
        server = self.server
        lo = self.lopts
        info: dict[str, Any] = {
            "server_id": server.server_id,
            "server_name": server.server_name,
            "version": NATS_SERVER_COMPAT_VERSION,
            "proto": 1,
            "go": _go_field(),
            "host": lo.host,
            "port": self.port,
            "headers": server.headers_supported,
            "auth_required": True,
        }
        if self.server_tls is not None:
            info["tls_required"] = True
            if getattr(self.server_tls, "verify", False):
                info["tls_verify"] = True
        info["max_payload"] = server.opts.max_payload
        info["client_id"] = conn.lid
        if nonce:
            info["nonce"] = nonce
        if connect_info:
            info["connect_info"] = True
            info["remote_account"] = conn.account_name
            acl = conn.acl
            if acl is not None:
                src = acl.source
                if src.subscribe is not None:
                    info["import"] = _perm_json(src.subscribe)
                if src.publish is not None:
                    info["export"] = _perm_json(src.publish)
        if server.routes is not None:
            info["cluster"] = server.routes.cluster_name
        info["info_on_connect"] = True
        info["leafnode_urls"] = [] if lo.no_advertise else [self.advertise_url()]
        return info

    def advertise_url(self) -> str:
        lo = self.lopts
        if lo.advertise:
            return lo.advertise
        host = lo.host
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        return hostport(host, self.port)

    def connect_json(self, conn: LeafConnection) -> dict[str, Any]:
        server = self.server
        assert conn.remote is not None and conn.url is not None
        doc: dict[str, Any] = {"version": NATS_SERVER_COMPAT_VERSION}
        if conn.url.user:
            doc["user"] = conn.url.user
            doc["pass"] = conn.url.password or ""
        doc["tls_required"] = conn.tls_info is not None
        doc["server_id"] = server.server_id
        doc["name"] = server.server_name
        doc["headers"] = server.headers_supported
        if server.routes is not None:
            doc["cluster"] = server.routes.cluster_name
        doc["compress_mode"] = "not supported"
        doc["remote_account"] = conn.remote.account
        doc["protocol"] = 1
        return doc

    def authorize(self, conn: LeafConnection, doc: dict[str, Any]) -> None:
        """The hub side's decision on a CONNECT: leafnodes users/user, the certificate
        (verify_and_map), or the server's own authorization when the leafnodes block has none."""
        from pynatsd.auth import BcryptCheck, Credentials, _secret_matches

        lo = self.lopts
        user = doc.get("user") if isinstance(doc.get("user"), str) else None
        given = doc.get("pass") if isinstance(doc.get("pass"), str) else ""
        tls = lo.tls
        cert = conn.transport.get_extra_info("peercert") if conn.tls_info is not None else None

        def fail() -> None:
            conn.error(f"authentication error - {user}" if user else "authentication error")
            conn.close(REASON_AUTH_FAILURE, ERR_AUTH_VIOLATION)

        def check(configured: str | None, account: str) -> None:
            ok = _secret_matches(configured or "", given)
            if ok is None:
                self._bcrypt(conn, doc, configured or "", given or "", account)
            elif ok:
                conn.accepted(doc, account)
            else:
                fail()

        if self.users:
            if tls is not None and tls.verify_and_map:
                from pynatsd.tls.identity import map_certificate

                match = map_certificate(cert, list(self.users), structured_dn=False) if cert is not None else None
                if match is None:
                    fail()
                    return
                mapped = self.users[match.username]
                check(mapped.password, mapped.account or GLOBAL)
                return
            named = self.users.get(user or "")
            if named is None:
                fail()
                return
            check(named.password, named.account or GLOBAL)
            return
        if lo.username:
            if user != lo.username:
                fail()
                return
            check(lo.password, GLOBAL)
            return
        authz = self.server.authorizer
        if not authz.required:
            conn.accepted(doc, GLOBAL)
            return
        creds = Credentials(user=user, password=given, token=doc.get("auth_token") if isinstance(doc.get("auth_token"), str) else None)
        decision = authz.authenticate(creds, cert, map_users=bool(tls is not None and tls.verify_and_map))
        result = decision.result if isinstance(decision, BcryptCheck) else decision
        if result is not None and result.user is not None:
            types = {t.upper() for t in result.user.allowed_connection_types}
            if types and "LEAFNODE" not in types:
                result = None  # a user limited to other connection types
        if decision is None or result is None:
            fail()
            return
        # the user's permissions, seen from the leaf: publish = what it may send us,
        # subscribe = what it may receive
        conn.acl = result.permissions
        if isinstance(decision, BcryptCheck):
            self._bcrypt(conn, doc, decision.hashed, decision.plain, result.account)
        else:
            conn.accepted(doc, result.account)

    def _bcrypt(self, conn: LeafConnection, doc: dict[str, Any], hashed: str, plain: str, account: str) -> None:
        from pynatsd.auth import bcrypt_verify

        async def run() -> None:
            ok = await self.server.loop.run_in_executor(None, bcrypt_verify, hashed, plain)
            if conn.closed:
                return
            if ok:
                conn.accepted(doc, account)
            else:
                user = doc.get("user")
                conn.error(f"authentication error - {user}" if user else "authentication error")
                conn.close(REASON_AUTH_FAILURE, ERR_AUTH_VIOLATION)

        task = self.server.loop.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def async_info(self, conn: LeafConnection, info: dict[str, Any]) -> None:
        """The hub's INFO after CONNECT (``connect_info``): its ``import``/``export`` lists are
        our permissions on this connection (subscribe/publish), as nats-server applies them."""
        imp, exp = info.get("import"), info.get("export")
        if imp is None and exp is None:
            return
        from pynatsd.auth import ClientPermissions
        from pynatsd.config.options import Permissions

        conn.acl = ClientPermissions(Permissions(publish=_perm_from_json(exp), subscribe=_perm_from_json(imp)))
        # interest already sent that the hub does not let us subscribe to is withdrawn
        parts = []
        for key in list(conn.sent):
            if not conn.acl.can_subscribe(key[0]):
                del conn.sent[key]
                parts.append(ls_minus(key[0], key[1]))
        if parts:
            conn.enqueue(b"".join(parts))

    # -- registration and interest ------------------------------------------------------------------

    def register(self, conn: LeafConnection) -> None:
        self.leafs[conn.lid] = conn
        if conn.remote is not None:
            conn.remote.conn = conn
            conn.remote.attempts = 0
        acc = conn.acc
        assert acc is not None
        accb = acc.name_b
        parts: list[bytes] = []
        for (a, subject, queue), srcs in self.sources.items():
            if a != accb:
                continue
            w = sum(v for s, v in srcs.items() if s != conn.lid)
            if w > 0 and self._may_send(conn, subject):
                conn.sent[(subject, queue)] = w if queue else 1
                parts.append(ls_plus(subject, queue, w))
        parts.append(ls_plus(self.lds_subject(accb)))
        if self.server.trace:
            for p in parts:
                conn.trace(f"->> [{p[:-2].decode('utf-8', 'replace')}]")
        conn.enqueue(b"".join(parts))

    def unregister(self, conn: LeafConnection) -> None:
        self.leafs.pop(conn.lid, None)
        acc = conn.acc
        if acc is None:
            return
        for (subject, queue), ls in list(conn.subs.items()):
            self._drop_leaf_sub(conn, ls)
            del conn.subs[(subject, queue)]

    def _may_send(self, conn: LeafConnection, subject: bytes) -> bool:
        """May our interest in ``subject`` go to ``conn``? (deny_imports on a remote; $LDS of
        other accounts' loops are fine.)"""
        r = conn.remote
        if r is not None and r.perms is not None and not r.perms.can_subscribe(subject):
            return False
        acl = conn.acl
        if acl is not None:
            # our interest tells the peer what to send us: on the hub, what the leaf may publish
            return bool(acl.can_subscribe(subject) if conn.solicited else acl.can_publish(subject))
        return True

    def _update(self, accb: bytes, subject: bytes, queue: bytes) -> None:
        """Re-evaluate what every leaf connection of the account should know about one
        interest and send the difference."""
        srcs = self.sources.get((accb, subject, queue))
        trace = self.server.trace
        for conn in self.leafs.values():
            if conn.acc is None or conn.acc.name_b != accb or conn.closed:
                continue
            w = sum(v for s, v in srcs.items() if s != conn.lid) if srcs else 0
            key = (subject, queue)
            had = conn.sent.get(key, 0)
            line = None
            if w > 0:
                if not self._may_send(conn, subject):
                    continue
                want = w if queue else 1
                if had != want:
                    conn.sent[key] = want
                    line = ls_plus(subject, queue, w)
            elif had:
                del conn.sent[key]
                line = ls_minus(subject, queue)
            if line is not None:
                if trace:
                    conn.trace(f"->> [{line[:-2].decode('utf-8', 'replace')}]")
                conn.enqueue(line)

    def _add_source(self, accb: bytes, subject: bytes, queue: bytes, src: Any, delta: int) -> None:
        key = (accb, subject, queue)
        srcs = self.sources.get(key)
        if srcs is None:
            if delta <= 0:
                return
            srcs = self.sources[key] = {}
        n = srcs.get(src, 0) + delta
        if n > 0:
            srcs[src] = n
        else:
            srcs.pop(src, None)
            if not srcs:
                del self.sources[key]
        if self.leafs:
            self._update(accb, subject, queue)

    def local_added(self, accb: bytes, subject: bytes, queue: bytes) -> None:
        self._add_source(accb, subject, queue, 0, 1)

    def local_removed(self, accb: bytes, subject: bytes, queue: bytes) -> None:
        self._add_source(accb, subject, queue, 0, -1)

    def route_interest(self, rid: int, accb: bytes, subject: bytes, queue: bytes, weight: int) -> None:
        """A route's interest changed (weight 0: gone)."""
        key = (accb, subject, queue)
        src = ("r", rid)
        srcs = self.sources.get(key)
        cur = srcs.get(src, 0) if srcs else 0
        if weight != cur:
            self._add_source(accb, subject, queue, src, weight - cur)

    def leaf_sub(self, conn: LeafConnection, subject: bytes, queue: bytes, weight: int) -> None:
        acc = conn.acc
        assert acc is not None
        accb = acc.name_b
        if subject == self.lds.get(accb):
            conn.loop_detected = True
            text = loop_error(conn.account_name)
            conn.error(text)
            conn.close(REASON_LOOP, text)
            return
        r = conn.remote
        acl = conn.acl
        # as nats-server, the loop-detection and gateway-reply subjects pass whatever the permissions
        exempt = subject.startswith((b"$LDS.", b"$GR.", b"_GR_."))
        if not exempt and (
            (r is not None and r.perms is not None and not r.perms.can_publish(subject))
            or (acl is not None and not (acl.can_publish(subject) if conn.solicited else acl.can_subscribe(subject)))
        ):
            conn.debug(f"Not permitted to import subscription {wire.go_quote(subject.decode('utf-8', 'replace'))}")
            return
        key = (subject, queue)
        ls = conn.subs.get(key)
        trie = self.tries.get(accb)
        if trie is None:
            trie = self.tries[accb] = SubjectTrie()
        if ls is None:
            ls = LeafSub(conn, subject, queue, max(weight, 1))
            try:
                trie.insert(subject, queue, ls)
            except ValueError:
                conn.error(f"Could not insert subscription: invalid subject {wire.go_quote(subject.decode('utf-8', 'replace'))}")
                return
            conn.subs[key] = ls
            self._add_source(accb, subject, queue, conn.lid, ls.weight)
            if not subject.startswith(b"$LDS."):
                routes = self.server.routes
                if routes is not None:
                    routes.local_interest_added(subject, queue, accb)
                gateways = self.server.gateways
                if gateways is not None:  # (gateways helper G) leaf interest is cluster interest
                    gateways.interest_changed(accb, subject, queue, 1)
        elif queue and weight != ls.weight:
            old = ls.weight
            ls.weight = max(weight, 1)
            self._add_source(accb, subject, queue, conn.lid, ls.weight - old)

    def leaf_unsub(self, conn: LeafConnection, subject: bytes, queue: bytes) -> None:
        ls = conn.subs.pop((subject, queue), None)
        if ls is not None:
            self._drop_leaf_sub(conn, ls)

    def _drop_leaf_sub(self, conn: LeafConnection, ls: LeafSub) -> None:
        acc = conn.acc
        assert acc is not None
        accb = acc.name_b
        trie = self.tries.get(accb)
        if trie is not None:
            trie.remove(ls.subject, ls.queue, ls)
        self._add_source(accb, ls.subject, ls.queue, conn.lid, -ls.weight)
        if not ls.subject.startswith(b"$LDS."):
            routes = self.server.routes
            if routes is not None:
                routes.local_interest_removed(ls.subject, ls.queue, accb)
            gateways = self.server.gateways
            if gateways is not None:  # (gateways helper G)
                gateways.interest_changed(accb, ls.subject, ls.queue, -1)

    # -- messages -------------------------------------------------------------------------------------

    def forward(
        self, subject: bytes, reply: bytes, hdr_len: int, data: bytes, local: Any, accb: bytes,
        src: Any = None, queue_filter: tuple[bytes, ...] | None = None, from_route: bool = False,
    ) -> bool:
        """Send a message to the leaf connections of account ``accb`` that want it (never back to
        ``src``). A queue group goes to a leaf only when it has no member here or in the cluster
        (``local`` is the local match). ``queue_filter``: only these groups (a message that named
        them); None: all groups."""
        trie = self.tries.get(accb)
        if trie is None or not self.leafs:
            return False
        res = trie.match(subject)
        targets: dict[LeafConnection, list[bytes]] = {}
        for ls in res.plain:
            c = ls.conn
            if c is not src and c not in targets:
                targets[c] = []
        if res.queues:
            local_names = local.queue_names if local is not None else ()
            routed_names: Any = ()
            routes = self.server.routes
            if routes is not None and not from_route:
                rt = routes.remotes.get(accb)
                if rt is not None:
                    routed_names = rt.match(subject).queue_names
            for qname, group in zip(res.queue_names, res.queues, strict=True):
                if queue_filter is not None and qname not in queue_filter:
                    continue
                if local_names and qname in local_names:
                    continue
                if routed_names and qname in routed_names:
                    continue
                members = [ls for ls in group if ls.conn is not src and not ls.conn.closed]
                if not members:
                    continue
                total = sum(ls.weight for ls in members)
                pick = int(random.random() * total)
                chosen = members[-1]
                for ls in members:
                    if pick < ls.weight:
                        chosen = ls
                        break
                    pick -= ls.weight
                qs = targets.get(chosen.conn)
                if qs is None:
                    targets[chosen.conn] = [qname]
                else:
                    qs.append(qname)
        sent = False
        for conn, qs in targets.items():
            r = conn.remote
            if r is not None and r.perms is not None and not r.perms.can_publish(subject):
                continue  # deny_exports
            acl = conn.acl
            if acl is not None and not (acl.can_publish(subject) if conn.solicited else acl.can_subscribe(subject)):
                continue
            conn.send_msg(subject, reply, qs, hdr_len, data)
            sent = True
        return sent

    def inbound(
        self, conn: LeafConnection, subject: bytes, reply: bytes, queues: tuple[bytes, ...], hdr_len: int,
        data: bytes,
    ) -> None:
        """A message from a leaf connection: local subscribers (queue groups only when named),
        routes, other leaf connections."""
        server = self.server
        acc = conn.acc
        if acc is None:
            return
        r = conn.remote
        if r is not None and r.perms is not None and not r.perms.can_subscribe(subject):
            return  # deny_imports
        acl = conn.acl
        if acl is not None and not (acl.can_subscribe(subject) if conn.solicited else acl.can_publish(subject)):
            conn.debug(f"Not permitted to deliver to {wire.go_quote(subject.decode('utf-8', 'replace'))}")
            return
        stats = server.stats
        stats.in_msgs += 1
        stats.in_bytes += len(data)
        res = acc.sublist.match(subject)
        lq = res.queues
        if lq:
            lq = [g for name, g in zip(res.queue_names, lq, strict=True) if name in queues] if queues else []
        routes = server.routes
        if routes is not None:
            # the cluster: plain interest, and the named groups not served here
            class _Local:
                __slots__ = ("queues", "queue_names")

            loc = _Local()
            loc.queues = lq  # type: ignore[attr-defined]
            loc.queue_names = [g[0].queue for g in lq] if lq else []  # type: ignore[attr-defined]
            _, lq = routes.forward(subject, reply, hdr_len, data, loc, acc.name_b, queue_filter=queues)
        self.forward(subject, reply, hdr_len, data, res, acc.name_b, src=conn, queue_filter=queues)
        gateways = server.gateways
        if gateways is not None:  # (gateways helper G) to the other clusters with interest
            gateways.forward(acc, subject, reply, hdr_len, data, res)
        if not res.plain and not lq:
            return
        size_digits = b"%d" % len(data)
        hdr_digits = (b"%d" % hdr_len) if hdr_len > 0 else None
        deliver(server, conn, subject, reply, size_digits, data, hdr_digits, max(hdr_len, 0), res.plain, lq)

    # -- monitoring ------------------------------------------------------------------------------------

    def leafz_entries(self, subs: bool) -> list[dict[str, Any]]:
        out = []
        for c in sorted(self.leafs.values(), key=lambda c: c.lid):
            e: dict[str, Any] = {
                "id": c.lid,
                "name": c.remote_name,
                "is_spoke": c.solicited,
                "account": c.account_name,
                "ip": c.host,
                "port": c.port,
                "rtt": _rtt(c.rtt),
                "in_msgs": c.in_msgs,
                "out_msgs": c.out_msgs,
                "in_bytes": c.in_bytes,
                "out_bytes": c.out_bytes,
                "subscriptions": len(c.subs),
            }
            if c.remote_cluster:
                e["cluster"] = c.remote_cluster
            if subs:
                e["subscriptions_list"] = [
                    (s.subject + (b" " + s.queue if s.queue else b"")).decode("utf-8", "replace") for s in c.subs.values()
                ]
            out.append(e)
        return out


class _BothTrie(LeafInterestTrie):
    """The local trie when routes and leaf nodes both watch it."""

    def __init__(self, manager: LeafManager, routes: Any, account: bytes) -> None:
        super().__init__(manager, account)
        self._routes = routes

    def insert(self, subject: bytes, queue: bytes, item: Any) -> None:
        before = self.count()
        SubjectTrie.insert(self, subject, queue, item)
        if self.count() != before:
            self._routes.local_interest_added(subject, queue, self._account)
            self._leafs.local_added(self._account, subject, queue)

    def remove(self, subject: bytes, queue: bytes, item: Any) -> bool:
        removed = SubjectTrie.remove(self, subject, queue, item)
        if removed:
            self._routes.local_interest_removed(subject, queue, self._account)
            self._leafs.local_removed(self._account, subject, queue)
        return removed


def _perm_json(sp: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if sp.allow is not None:
        out["allow"] = list(sp.allow)
    if sp.deny:
        out["deny"] = list(sp.deny)
    return out


def _perm_from_json(doc: Any) -> Any:
    from pynatsd.config.options import SubjectPermission

    if not isinstance(doc, dict):
        return None
    allow = doc.get("allow")
    deny = doc.get("deny") or ()
    return SubjectPermission(
        allow=tuple(str(x) for x in allow) if isinstance(allow, list) else None,
        deny=tuple(str(x) for x in deny if isinstance(x, str)),
    )


def _go_field() -> str:
    from pynatsd.server import go_field

    return go_field()


def _rtt(rtt: float | None) -> str:
    if rtt is None:
        return ""
    from pynatsd.monitor.gofmt import go_duration, seconds_to_ns

    return go_duration(seconds_to_ns(rtt))




def _version_tuple(v: str) -> tuple[int, ...]:
    core = v.lstrip("v").split("-", 1)[0].split("+", 1)[0]
    out = []
    for p in core.split(".")[:3]:
        try:
            out.append(int(p))
        except ValueError:
            out.append(0)
    return tuple(out)


def _args(*parts: bytes | int | None) -> str:
    return " ".join(p.decode("utf-8", "replace") if isinstance(p, bytes) else str(p) for p in parts if p not in (None, b""))


def _margs(subject: bytes, reply: bytes, queues: tuple[bytes, ...], hdr_len: int, data: bytes) -> str:
    parts: list[bytes | int] = [subject]
    if queues:
        parts += [b"+", reply] if reply else [b"|"]
        parts.extend(queues)
    elif reply:
        parts.append(reply)
    if hdr_len >= 0:
        parts.append(hdr_len)
    parts.append(len(data))
    return _args(*parts)

