"""Server: lifecycle, the client listener, the client registry, output flushing, lame duck,
reload hook, and ``run_server`` (logging, uvloop, pid and ports files, signals).

The server owns the subscription trie shared by all connections and the set of connections with
output queued in this event-loop turn: ``mark_dirty`` registers one and a single
``loop.call_soon`` callback writes each of them once, so a publish fanning out to many
subscribers costs one write per subscriber connection per turn, not one per message.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import functools
import json
import logging
import os
import platform
import random
import secrets
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pynatsd import NATS_SERVER_COMPAT_VERSION, __version__
from pynatsd.accounts import Account, AccountRegistry
from pynatsd.auth import Authorizer
from pynatsd.client import (
    REASON_MAX_CONNECTIONS,
    REASON_SHUTDOWN,
    ClientConnection,
    Subscription,
    deliver,
)
from pynatsd.config.options import RANDOM_PORT, ServerOptions
from pynatsd.errors import ConfigError
from pynatsd.log import configure_logging, reopen_log_file
from pynatsd.protocol import wire
from pynatsd.subjects import SubjectTrie, valid_publish_subject

log = logging.getLogger("pynatsd")

PROTO_VERSION = 1
SYSTEM_ACCOUNT = "$SYS"
_NKEY_PREFIX_SERVER = 13 << 3  # nkeys' prefix byte for server keys: base32 starts with 'N'
_NKEY_PREFIX_CURVE = 23 << 3  # curve (x25519) keys: base32 starts with 'X'
# JetStream API level nats-server 2.15 reports in INFO; clients read it only to gate JetStream
# API features, and without "jetstream" in INFO they never use JetStream here.
API_LEVEL = 5


def _nkey_encode(prefix: int, key: bytes) -> str:
    raw = bytes([prefix]) + key
    crc = binascii.crc_hqx(raw, 0)
    return base64.b32encode(raw + crc.to_bytes(2, "little")).decode().rstrip("=")


def make_server_id() -> str:
    """A fresh server id shaped like a server public NKEY: 56 base32 chars starting with 'N'
    (prefix byte + 32 random bytes + CRC16, as nkeys encodes a public key)."""
    return _nkey_encode(_NKEY_PREFIX_SERVER, secrets.token_bytes(32))


def x25519_public(private: bytes) -> bytes:
    """X25519 public key of a 32-byte private key (RFC 7748 Montgomery ladder over u=9).

    Done here rather than through ``cryptography`` so a plain server does not load OpenSSL
    (several MiB) for one key computed once at start-up."""
    p = 2**255 - 19
    k = bytearray(private)
    k[0] &= 248
    k[31] &= 127
    k[31] |= 64
    scalar = int.from_bytes(k, "little")
    x1 = 9
    x2, z2, x3, z3 = 1, 0, x1, 1
    swap = 0
    for t in range(254, -1, -1):
        bit = (scalar >> t) & 1
        if swap ^ bit:
            x2, x3 = x3, x2
            z2, z3 = z3, z2
        swap = bit
        a = x2 + z2
        aa = a * a % p
        b = x2 - z2
        bb = b * b % p
        e = aa - bb
        c = x3 + z3
        d = x3 - z3
        da = d * a % p
        cb = c * b % p
        x3 = (da + cb) ** 2 % p
        z3 = x1 * (da - cb) ** 2 % p
        x2 = aa * bb % p
        z2 = e * (aa + 121665 * e) % p
    if swap:
        x2, z2 = x3, z3
    return (x2 * pow(z2, p - 2, p) % p).to_bytes(32, "little")


def make_xkey() -> str:
    """The server's x25519 public key in nkeys form ('X...'), as nats-server sends in INFO
    ``xkey`` (a fresh key pair per start; the private half is not used: no auth callout)."""
    return _nkey_encode(_NKEY_PREFIX_CURVE, x25519_public(secrets.token_bytes(32)))


def _read_git_commit() -> str:
    """Short commit of the source tree pynatsd runs from (INFO ``git_commit``), or ""."""
    here = os.path.dirname(os.path.abspath(__file__))
    for up in (os.path.join(here, "..", ".."), os.path.join(here, "..")):
        gitdir = os.path.normpath(os.path.join(up, ".git"))
        try:
            if os.path.isfile(gitdir):  # a git worktree: ".git" names its git directory
                with open(gitdir, encoding="utf-8") as f:
                    gitdir = os.path.normpath(os.path.join(up, f.read().strip().removeprefix("gitdir: ")))
            with open(os.path.join(gitdir, "HEAD"), encoding="ascii") as f:
                head = f.read().strip()
            if not head.startswith("ref: "):
                return head[:7]
            ref = head[5:]
            if os.path.isfile(os.path.join(gitdir, "commondir")):  # branch refs live in the main repository
                with open(os.path.join(gitdir, "commondir"), encoding="utf-8") as f:
                    gitdir = os.path.normpath(os.path.join(gitdir, f.read().strip()))
            ref_path = os.path.join(gitdir, ref)
            if os.path.exists(ref_path):
                with open(ref_path, encoding="ascii") as f:
                    return f.read().strip()[:7]
            with open(os.path.join(gitdir, "packed-refs"), encoding="ascii") as f:
                for line in f:
                    parts = line.split()
                    if len(parts) == 2 and parts[1] == ref:
                        return parts[0][:7]
        except OSError:
            continue
    return ""


GIT_COMMIT = _read_git_commit()


def _json_string(text: str) -> bytes:
    """A JSON string as go_json writes it (UTF-8, Go's extra escapes)."""
    return wire.go_json(text).encode("utf-8", "replace")


@functools.cache
def go_field() -> str:
    """The INFO ``go`` field: clients only display it, so say what really runs."""
    impl = platform.python_implementation()
    v = sys.version_info
    return f"pynatsd {__version__} / {impl} {v.major}.{v.minor}"


class ServerStats:
    """Server-wide counters (read by /varz)."""

    __slots__ = (
        "in_msgs",
        "out_msgs",
        "in_bytes",
        "out_bytes",
        "slow_consumers",
        "total_connections",
        "stale_connections",
    )

    def __init__(self) -> None:
        self.in_msgs = 0
        self.out_msgs = 0
        self.in_bytes = 0
        self.out_bytes = 0
        self.slow_consumers = 0
        self.total_connections = 0
        self.stale_connections = 0


class ClosedSub:
    """What a closed connection's subscription shows in /connz (without the live objects)."""

    __slots__ = ("subject", "queue", "sid", "delivered", "max_msgs")

    def __init__(self, sub: Subscription) -> None:
        self.subject = sub.subject
        self.queue = sub.queue
        self.sid = sub.sid
        self.delivered = sub.delivered
        self.max_msgs = sub.max_msgs


@dataclass
class ClosedClient:
    """What /connz?state=closed shows about a connection that has gone."""

    cid: int
    host: str
    port: int
    start: datetime
    stop: datetime
    last_activity: datetime
    rtt: float | None
    in_msgs: int
    out_msgs: int
    in_bytes: int
    out_bytes: int
    subs: dict[bytes, ClosedSub]
    name: str
    lang: str
    version: str
    user: str | None
    account: str
    tls_info: dict[str, Any] | None
    closed_reason: str
    auth_method: str | None = None
    tls_first: bool = False
    pending_bytes: int = 0
    kind: str = "Client"

    @property
    def reason(self) -> str:
        return self.closed_reason

    @classmethod
    def of(cls, c: ClientConnection) -> ClosedClient:
        return cls(
            cid=c.cid,
            host=c.host,
            port=c.port,
            start=c.start,
            stop=c.stop or datetime.now(UTC),
            last_activity=c.last_activity,
            rtt=c.rtt,
            in_msgs=c.in_msgs,
            out_msgs=c.out_msgs,
            in_bytes=c.in_bytes,
            out_bytes=c.out_bytes,
            subs={sid: ClosedSub(sub) for sid, sub in c.subs.items()},
            name=c.name,
            lang=c.lang,
            version=c.version,
            user=c.user,
            account=c.account,
            tls_info=c.tls_info,
            closed_reason=c.closed_reason or "",
            auth_method=c.auth_method,
            tls_first=c.tls_first,
        )


class Server:
    """A NATS server (client port, optional monitoring). See the module docstring."""

    def __init__(self, opts: ServerOptions, *, manage_logging: bool = False) -> None:
        self.opts = opts
        self.server_id = make_server_id()
        self.xkey = make_xkey()
        self.server_name = opts.server_name or self.server_id
        self.start_time = datetime.now(UTC)
        self.config_load_time = self.start_time
        self.clients: dict[int, ClientConnection] = {}
        self.closed_clients: collections.deque[ClosedClient] = collections.deque(maxlen=max(opts.max_closed_clients, 0))
        # (accounts helper A) every account's subject space; ``sublist`` is $G's
        self.accounts = AccountRegistry(self.publish_in_account)
        self.accounts.configure(opts)
        self.gacc: Account = self.accounts.gacc
        self.stats = ServerStats()
        self.port = 0
        self.http_port = 0
        self.monitor: Any = None
        self.cert_watch: Any = None  # certificate expiry watch when there is no monitor (helper F)
        self.tls_watch: Any = None  # pynatsd.tls.watch.TLSFileWatch for ``watch: true`` blocks (helper R)
        self.ocsp: Any = None  # pynatsd.tls.ocsp.OCSPManager when the client or route port has TLS (helper O)
        # clustering (pynatsd.cluster.routes.RouteManager) when a cluster port is configured
        self.routes: Any = None
        self.cluster_port = 0
        # leaf nodes (pynatsd.cluster.leafnodes.LeafManager) when a leafnodes block is configured
        self.leafs: Any = None
        self.leafnode_port = 0
        # gateways (pynatsd.cluster.gateways.GatewayManager) when a gateway block is configured
        self.gateways: Any = None
        self.gateway_port = 0
        self.tls: Any = None  # pynatsd.tls.context.ServerTLS when the client port has TLS
        self.tls_required = False
        self.tls_verify = False
        self.tls_available = False
        self.tls_map_users = False
        self.tls_handshake_first: bool | float = False
        self.authorizer = Authorizer(opts.auth, opts.tls)
        self.trace = opts.trace or opts.trace_verbose
        self.headers_supported = not opts.no_header_support
        self.manage_logging = manage_logging
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set by start()
        self.lame_duck_mode = False
        self.running = False
        self._cid = 0
        self._dirty: list[ClientConnection] = []
        self._flush_scheduled = False
        self._listeners: list[asyncio.base_events.Server] = []
        self._shutting_down = False
        self._stopped: asyncio.Event | None = None
        self._ldm_task: asyncio.Task[None] | None = None
        self._pub_subject_cache: dict[bytes, bool] = {}
        self._info_cache: dict[tuple[Any, ...], bytes] = {}  # info_for's JSON parts
        self._rate_window_end = 0.0
        self._rate_count = 0
        self._rate_blocked = 0
        self._rate_log_timer: asyncio.TimerHandle | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    async def start(self) -> None:
        """Bind the listeners and start serving. Raises ConfigError or OSError."""
        self.loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        opts = self.opts
        log.info("Starting nats-server")
        log.info("  Version:  %s", NATS_SERVER_COMPAT_VERSION)
        log.info("  pynatsd:  %s", __version__)
        log.debug("  Runtime:  %s", go_field())
        log.info("  Name:     %s", self.server_name)
        log.info("  ID:       %s", self.server_id)
        for w in opts.warnings:
            log.warning("%s", w)
        if opts.config_file:
            log.info("Using configuration file: %s", opts.config_file)
        self._setup_tls()
        cluster_tls = opts.cluster is not None and opts.cluster.port != 0 and opts.cluster.tls is not None
        if self.tls is not None or cluster_tls:
            await self._setup_ocsp()
        if opts.cluster is not None and opts.cluster.port != 0:
            from pynatsd.cluster.routes import RouteManager

            # before the client listener: it watches the subscription trie from the first SUB
            self.routes = RouteManager(self)
        if opts.leafnodes is not None:
            from pynatsd.cluster.leafnodes import LeafManager

            # after the route manager: it wraps the trie the routes watch
            self.leafs = LeafManager(self)
        if opts.gateway is not None:
            from pynatsd.cluster.gateways import GatewayManager, install_interest_hooks

            self.gateways = GatewayManager(self)
            install_interest_hooks(self.gateways)
        port = 0 if opts.port == RANDOM_PORT else opts.port
        try:
            sock = listen_socket(opts.host, port)
            srv = await self.loop.create_server(lambda: ClientConnection(self), sock=sock, backlog=4096)
        except OSError as e:
            log.critical("Error listening on port: %s:%s, %s", opts.host, opts.port, e)
            raise
        self._listeners.append(srv)
        sock = srv.sockets[0]
        self.port = int(sock.getsockname()[1])
        self.running = True
        try:
            await self._start_monitoring()
        except OSError as e:
            log.critical("%s", e)
            for listener in self._listeners:
                listener.close()
            self._listeners.clear()
            self.running = False
            raise
        if self.tls is not None:
            log.info("TLS %s for client connections", "required" if self.tls_required else "available")
        log.info("Listening for client connections on %s", _hostport(opts.host, self.port))
        if self.tls is not None and self.tls_handshake_first is True:
            log.warning('Clients that are not using "TLS Handshake First" option will fail to connect')
        log.info("Server is ready")
        if self.gateways is not None:
            # before the routes, as nats-server: a route's INFO carries our gateway URL, so a
            # route formed before the gateway listener would leave it out of the cluster's list
            await self.gateways.start()
            self.gateway_port = self.gateways.port
        if self.routes is not None:
            await self.routes.start()
            self.cluster_port = self.routes.port
            if self.ocsp is not None and self.routes.server_tls is not None:
                self.ocsp.route_tls(self.routes.server_tls)  # (helper O) staples on the route port
        if self.leafs is not None:
            await self.leafs.start()
            self.leafnode_port = self.leafs.port
        from pynatsd.reload import start_tls_watch

        start_tls_watch(self)  # tls blocks with ``watch: true`` (helper R)

    def _setup_tls(self) -> None:
        opts = self.opts
        tlso = opts.tls
        if tlso is None:
            return
        from pynatsd.tls.context import build_server_context

        self.tls = build_server_context(tlso, fips=opts.fips, where="tls")
        self.tls_handshake_first = tlso.handshake_first
        self.tls_required = (not opts.allow_non_tls) or tlso.handshake_first is True
        self.tls_available = not self.tls_required
        self.tls_verify = bool(getattr(self.tls, "verify", tlso.verify or tlso.verify_and_map))
        self.tls_map_users = bool(getattr(self.tls, "map_users", tlso.verify_and_map))

    async def _setup_ocsp(self) -> None:
        """(helper O) OCSP stapling (client and route ports) and peer checks (client port): the
        first statuses are fetched now, so a server that must staple and cannot does not start."""
        from pynatsd.tls.ocsp import OCSPError, OCSPManager

        mgr = OCSPManager(self)
        try:
            await mgr.start()
        except OCSPError as e:
            await mgr.stop()
            raise ConfigError(str(e)) from None
        self.ocsp = mgr

    async def _start_monitoring(self) -> None:
        opts = self.opts
        if not (opts.http_port or opts.https_port):
            # no monitoring port: served certificates are still watched for expiry (helper F)
            if opts.tls is not None or (opts.cluster is not None and opts.cluster.tls is not None):
                from pynatsd.monitor.certwatch import CertExpiryWatch

                self.cert_watch = CertExpiryWatch(self)
                await self.cert_watch.start()
            return
        try:
            from pynatsd.monitor.http import MonitorServer
        except ImportError:
            return
        self.monitor = MonitorServer(self)
        await self.monitor.start()
        port = getattr(self.monitor, "port", 0)
        if port and not self.http_port:
            self.http_port = int(port)

    async def shutdown(self) -> None:
        """Stop listening, close every client (reason Server Shutdown), stop monitoring."""
        if self._shutting_down:
            if self._stopped is not None:
                await self._stopped.wait()
            return
        self._shutting_down = True
        log.info("Initiating Shutdown...")
        task = self._ldm_task
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()
        for srv in self._listeners:
            srv.close()
        if self.leafs is not None:
            await self.leafs.shutdown()
        if self.routes is not None:
            await self.routes.shutdown()
        if self.gateways is not None:
            await self.gateways.shutdown()
        if self._rate_log_timer is not None:
            self._rate_log_timer.cancel()
            self._rate_log_timer = None
        log.debug("Client accept loop exiting..")
        if self.monitor is not None:
            with contextlib.suppress(Exception):
                await self.monitor.stop()
        if self.cert_watch is not None:
            await self.cert_watch.stop()
        if self.tls_watch is not None:
            await self.tls_watch.stop()
        if self.ocsp is not None:
            await self.ocsp.stop()
        # Clients are closed last, just before the process ends (nats-server exits within a
        # millisecond or two of their EOF; harnesses that stop a node and then wait for the
        # client's reconnect rely on that).
        for c in list(self.clients.values()):
            c.close(REASON_SHUTDOWN)
        for srv in self._listeners:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(srv.wait_closed(), 2.0)
        self._listeners.clear()
        self.running = False
        log.info("Server Exiting..")
        if self._stopped is not None:
            self._stopped.set()

    async def wait_for_shutdown(self) -> None:
        assert self._stopped is not None, "start() first"
        await self._stopped.wait()

    # -- lame duck -----------------------------------------------------------------------------

    def lame_duck(self) -> asyncio.Task[None]:
        """Enter lame-duck mode (SIGUSR2): stop accepting, tell clients, evict them, shut down."""
        if self._ldm_task is None:
            self._ldm_task = self.loop.create_task(self._lame_duck())
        return self._ldm_task

    async def _lame_duck(self) -> None:
        if self._shutting_down:
            return
        self.lame_duck_mode = True
        opts = self.opts
        log.info("Entering lame duck mode, stop accepting new clients")
        if self.routes is not None:
            self.routes.lame_duck()  # other nodes stop offering our URL to their clients
        for srv in self._listeners:
            srv.close()
        clients = list(self.clients.values())
        if not clients:
            await self.shutdown()
            return
        for c in clients:
            c.send_lame_duck_info()
        grace = max(opts.lame_duck_grace_period, 0.0)
        duration = opts.lame_duck_duration - grace
        if duration <= 0:
            duration = 1.0
        if grace > 0:
            log.info("Waiting %ss before starting to evict clients", f"{grace:g}")
            await asyncio.sleep(grace)
        clients = list(self.clients.values())
        if clients:
            log.info("Closing existing clients")
            interval = min(duration / len(clients), 1.0)
            for c in clients:
                c.close(REASON_SHUTDOWN)
                if interval > 0.001:
                    await asyncio.sleep(random.uniform(interval / 2, interval))
        await self.shutdown()

    # -- connection registry ---------------------------------------------------------------------

    def next_cid(self) -> int:
        self._cid += 1
        return self._cid

    def accepting_client(self, client: ClientConnection) -> bool:
        """False (and the connection closed) when the server no longer takes clients."""
        if self._shutting_down or self.lame_duck_mode:
            client.close(REASON_SHUTDOWN, flush=False)
            return False
        return True

    def register_client(self, client: ClientConnection) -> bool:
        """After INFO: the max_connections check, then the client counts as connected."""
        mc = self.opts.max_connections
        if mc < 0 or (mc > 0 and len(self.clients) >= mc):
            client.error(wire.ERR_MAX_CONNECTIONS)
            client.close(REASON_MAX_CONNECTIONS, wire.ERR_MAX_CONNECTIONS)
            return False
        self.clients[client.cid] = client
        self.stats.total_connections += 1
        return True

    def client_closed(self, client: ClientConnection) -> None:
        self.clients.pop(client.cid, None)
        client.acc.clients.discard(client)
        if self.closed_clients.maxlen:
            self.closed_clients.append(ClosedClient.of(client))

    def tls_rate_allow(self) -> bool:
        """tls.connection_rate_limit: at most N TLS handshakes per 1-second window."""
        limit = self.opts.tls.connection_rate_limit if self.opts.tls is not None else 0
        if limit <= 0:
            return True
        now = self.loop.time()
        if now >= self._rate_window_end:
            self._rate_window_end = now + 1.0
            self._rate_count = 0
        self._rate_count += 1
        if self._rate_count <= limit:
            return True
        self._rate_blocked += 1
        if self._rate_log_timer is None:
            self._rate_log_timer = self.loop.call_later(1.0, self._log_rate_blocked)
        return False

    def _log_rate_blocked(self) -> None:
        self._rate_log_timer = None
        if self._rate_blocked:
            log.warning("Rejected %d connections due to TLS rate limiting", self._rate_blocked)
            self._rate_blocked = 0

    def pub_subject_ok(self, subject: bytes) -> bool:
        """pedantic: is ``subject`` a valid literal publish subject? (cached, bounded)"""
        cache = self._pub_subject_cache
        ok = cache.get(subject)
        if ok is None:
            ok = valid_publish_subject(subject)
            if len(cache) >= 4096:
                cache.clear()
            cache[subject] = ok
        return ok

    def is_system_account(self, account: str) -> bool:
        sys_acc = self.accounts.system
        return sys_acc is not None and account == sys_acc.name

    @property
    def sublist(self) -> SubjectTrie[Subscription]:
        """The global account's trie (``$G``)."""
        return self.gacc.sublist

    @property
    def num_subscriptions(self) -> int:
        """Subscriptions over all accounts (internal import subscriptions included, as
        nats-server counts them)."""
        return sum(a.sublist.count() for a in self.accounts.accounts.values())

    def publish_in_account(
        self, src: Any, acc: Account, subject: bytes, reply: bytes, size_digits: bytes, data: bytes,
        hdr_digits: bytes | None, hdr_len: int, depth: int, local_only: bool,
    ) -> bool:
        """A message entering account ``acc`` through an import: its local subscribers, and
        the routes with interest unless ``local_only``."""
        result = acc.sublist.match(subject)
        queues = result.queues
        routed = False
        routes = self.routes
        if routes is not None and not local_only:
            routed, queues = routes.forward(
                subject, reply, hdr_len if hdr_digits is not None else -1, data, result, acc.name_b
            )
        leafs = self.leafs
        if leafs is not None and not local_only:
            if leafs.forward(subject, reply, hdr_len if hdr_digits is not None else -1, data, result, acc.name_b):
                routed = True
        got = deliver(self, src, subject, reply, size_digits, data, hdr_digits, hdr_len, result.plain, queues, depth)
        gateways = self.gateways
        if gateways is not None and not local_only:
            routed = gateways.forward(
                acc, subject, reply, hdr_len if hdr_digits is not None else -1, data, result
            ) or routed
        return got or routed

    # -- output ----------------------------------------------------------------------------------

    def mark_dirty(self, client: ClientConnection) -> None:
        """Have ``client`` flushed at the end of this event-loop turn."""
        self._dirty.append(client)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush_dirty)

    def _flush_dirty(self) -> None:
        self._flush_scheduled = False
        dirty = self._dirty
        self._dirty = []
        for c in dirty:
            if c.dirty:
                c.flush()

    # -- INFO ------------------------------------------------------------------------------------

    def info_for(
        self, client: ClientConnection, *, connect_info: bool = False, ldm: bool = False, nonce: str | None = None
    ) -> bytes:
        """The INFO line for one client (keys in nats-server's order); ``nonce`` only in the first.

        Every client gets two of these, so the JSON of the parts that are the same for many
        clients (before client_id, after client_ip) is cached, keyed by their exact contents:
        whatever changes them (reload, cluster URLs, lame duck) gives a new key, never a stale line.
        """
        opts = self.opts
        host, port = opts.host, self.port
        if opts.client_advertise:
            host, port = _split_advertise(opts.client_advertise, port)
        head: dict[str, Any] = {
            "server_id": self.server_id,
            "server_name": self.server_name,
            "version": NATS_SERVER_COMPAT_VERSION,
            "proto": PROTO_VERSION,
        }
        if GIT_COMMIT:
            head["git_commit"] = GIT_COMMIT
        head["go"] = go_field()
        head["host"] = host
        head["port"] = port
        head["headers"] = self.headers_supported
        if self.authorizer.info_auth_required:
            head["auth_required"] = True
        if self.tls is not None:
            if self.tls_required or (self.tls_handshake_first is not False and client.tls_first):
                head["tls_required"] = True
            if self.tls_verify:
                head["tls_verify"] = True
            # (helper T) as nats-server 2.15: allow_non_tls shows here even to a TLS-first client
            # and with handshake_first: true (checked against the real server)
            if self.tls_available or opts.allow_non_tls:
                head["tls_available"] = True
        head["max_payload"] = opts.max_payload
        # per client: never repeats, so written directly rather than cached
        mid = b',"client_id":%d' % client.cid if client.cid else b""
        if client.host:
            mid += b',"client_ip":' + _json_string(client.host)
        if nonce:
            mid += b',"nonce":' + _json_string(nonce)  # (nkeys helper N) for the client to sign
        tail: dict[str, Any] = {}
        if self.routes is not None:
            tail["cluster"] = self.routes.cluster_name
            urls = self.routes.client_connect_urls()
            if urls:
                tail["connect_urls"] = tuple(urls)  # a tuple keeps the cache key hashable
        if ldm:
            tail["ldm"] = True
        if connect_info:
            tail["connect_info"] = True
            tail["remote_account"] = client.account
            if self.is_system_account(client.account):
                tail["acc_is_sys"] = True
        tail["api_lvl"] = API_LEVEL
        tail["xkey"] = self.xkey
        return b"".join((b"INFO ", self._info_part(head, True), mid,
                         self._info_part(tail, False), b"} \r\n"))

    def _info_part(self, part: dict[str, Any], first: bool) -> bytes:
        """``part`` as JSON members without the closing brace: '{"a":1,"b":2' for the first
        part, ',"c":3' for the others, b"" when empty. Cached by exact contents (bounded)."""
        if not part:
            return b""
        key = (first, *part.items())
        cache = self._info_cache
        out = cache.get(key)
        if out is None:
            text = wire.go_json(part).encode("utf-8", "replace")[:-1]  # drop the closing brace
            out = text if first else b"," + text[1:]
            if len(cache) >= 64:  # a handful in practice; bounded whatever happens
                cache.clear()
            cache[key] = out
        return out

    # -- reload ------------------------------------------------------------------------------------

    def reload(self, new: ServerOptions) -> None:
        """Apply new options to the running server (pynatsd.reload): everything is validated
        and every TLS context built first; raises ConfigError, applying nothing, when the new
        options cannot be applied."""
        from pynatsd.reload import reload_server

        reload_server(self, new)


def listen_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket for ``host``:``port``. For the wildcard host ("0.0.0.0" or "")
    it is one dual-stack IPv6 socket when the system has IPv6, so IPv4 and IPv6 clients reach
    the same port, as they do with nats-server."""
    if host in ("", "0.0.0.0") and socket.has_ipv6:
        try:
            s6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        except OSError:
            pass
        else:
            try:
                s6.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                s6.bind(("::", port))
                s6.listen(4096)
                s6.setblocking(False)
                return s6
            except OSError:
                s6.close()
    infos = socket.getaddrinfo(host or "0.0.0.0", port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, socktype, proto, _, addr = infos[0]
    s = socket.socket(family, socktype, proto)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind(addr)
        s.listen(4096)
        s.setblocking(False)
    except OSError:
        s.close()
        raise
    return s


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _split_advertise(adv: str, default_port: int) -> tuple[str, int]:
    s = adv
    if "://" in s:
        s = s.split("://", 1)[1]
    if s.startswith("["):
        host, _, rest = s[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif s.count(":") == 1:
        host, _, port = s.partition(":")
    else:
        host, port = s, ""
    try:
        return host, int(port) if port else default_port
    except ValueError:
        return host, default_port


# -- process entry point ---------------------------------------------------------------------------


def _ports_file_path(dirname: str) -> str:
    exe = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "pynatsd"
    if exe in ("__main__.py", "-c", "") or exe.endswith("-script.py"):
        exe = "pynatsd"
    if exe.endswith(".py"):
        exe = exe[:-3]
    return os.path.join(dirname, f"{exe}_{os.getpid()}.ports")


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0", "::", "[::]"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def ports_document(server: Server) -> dict[str, list[str]]:
    opts = server.opts
    scheme = "tls" if server.tls is not None and server.tls_required else "nats"
    doc: dict[str, list[str]] = {"nats": [f"{scheme}://{_url_host(opts.host)}:{server.port}"]}
    mon: list[str] = []
    if server.monitor is not None:
        http_port = getattr(server.monitor, "port", 0) or server.http_port
        https_port = getattr(server.monitor, "https_port", 0)
        if opts.http_port and http_port:
            mon.append(f"http://{_url_host(opts.http_host)}:{http_port}")
        if opts.https_port:
            port = https_port or (http_port if not opts.http_port else 0)
            if port:
                mon.append(f"https://{_url_host(opts.http_host)}:{port}")
    if mon:
        doc["monitoring"] = mon
    if server.routes is not None and server.cluster_port:
        c = opts.cluster
        assert c is not None
        doc["cluster"] = [f"nats://{_url_host(c.host)}:{server.cluster_port}"]
    if server.leafs is not None and server.leafnode_port:
        lo = opts.leafnodes
        assert lo is not None
        doc["leafnode"] = [f"nats://{_url_host(lo.host)}:{server.leafnode_port}"]
    return doc


def _write_pid_file(path: str) -> None:
    with open(path, "w", encoding="ascii") as f:
        f.write(str(os.getpid()))


def _write_ports_file(server: Server) -> str | None:
    d = server.opts.ports_file_dir
    if not d:
        return None
    path = _ports_file_path(d)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(ports_document(server), f, separators=(",", ":"))
    os.replace(tmp, path)
    return path


@dataclass
class _Runtime:
    server: Server
    reload_options: Callable[[], ServerOptions] | None
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    ports_path: str | None = None

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def on_signal(self, signum: int) -> None:
        server = self.server
        if signum == signal.SIGINT:
            log.info('Trapped "interrupt" signal')
            self.spawn(server.shutdown())
        elif signum == signal.SIGTERM:
            if server.lame_duck_mode:
                log.info('Trapped "terminated" signal, ignored while in lame duck mode')
                return
            log.info('Trapped "terminated" signal')
            self.spawn(server.shutdown())
        elif signum == signal.SIGUSR1:
            reopen_log_file()
        elif signum == signal.SIGUSR2:
            server.lame_duck()
        elif signum == signal.SIGHUP:
            log.info('Trapped "hangup" signal')
            self.reload()

    def reload(self) -> None:
        if self.reload_options is None:
            log.error(
                "Failed to reload server configuration: can only reload config when a file is provided using -c or --config"
            )
            return
        try:
            new = self.reload_options()
            self.server.reload(new)
        except ConfigError as e:
            log.error("Failed to reload server configuration: %s", e)
            return
        if new.pid_file:
            with contextlib.suppress(OSError):
                _write_pid_file(new.pid_file)
        # the ports file follows ports_file_dir (rewritten where it now points)
        old_path = self.ports_path
        with contextlib.suppress(OSError):
            self.ports_path = _write_ports_file(self.server)
        if old_path and old_path != self.ports_path:
            with contextlib.suppress(OSError):
                os.remove(old_path)


async def _serve(opts: ServerOptions, reload_options: Callable[[], ServerOptions] | None) -> int:
    server = Server(opts, manage_logging=True)
    loop = asyncio.get_running_loop()
    # Signals that arrive while starting (a supervisor's SIGTERM right after "Server is ready"
    # is logged) wait for the start to finish instead of killing the process.
    early: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP):
        loop.add_signal_handler(sig, early.append, sig)
    try:
        await server.start()
    except ConfigError as e:
        log.critical("%s", e)
        return 1
    except OSError:
        return 1
    rt = _Runtime(server, reload_options)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP):
        loop.add_signal_handler(sig, rt.on_signal, sig)
    for signum in early:
        rt.on_signal(signum)
    try:
        if opts.pid_file:
            _write_pid_file(opts.pid_file)
        rt.ports_path = _write_ports_file(server)
    except OSError as e:
        log.critical("Unable to write pid or ports file: %s", e)
        await server.shutdown()
        return 1
    try:
        await server.wait_for_shutdown()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        if rt.ports_path:
            with contextlib.suppress(OSError):
                os.remove(rt.ports_path)
    return 0


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    if os.environ.get("PYNATSD_NO_UVLOOP"):
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop  # type: ignore[no-any-return]


def run_server(opts: ServerOptions, reload_options: Callable[[], ServerOptions] | None = None) -> int:
    """Run a server until it is stopped by a signal; returns the process exit code."""
    configure_logging(opts)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(_serve(opts, reload_options))
