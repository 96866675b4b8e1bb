"""Gateways (super-cluster): the gateway listener, outbound gateway connections, the gateway
handshake, interest-only interest propagation and message forwarding between clusters.

``GatewayManager`` is what the server holds (``server.gateways``); ``GatewayConnection`` is one
asyncio Protocol per gateway connection. The wire format is the route one (cluster/protocol.py).

How this server takes part in a super-cluster (checked against nats-server 2.15.1):

- Connections are one-way: we dial one outbound connection to every configured remote gateway
  and send messages only on it; remote servers dial us (inbound) and send us messages; interest
  flows back on the same socket from the inbound side.
- Handshake: TLS first when ``gateway.tls`` (or the remote entry's ``tls``) is set, with the
  peer's certificate always required and verified. The acceptor sends its gateway INFO at once
  and wants CONNECT (with ``gateway``) first; the dialer checks the INFO's gateway name, then
  sends CONNECT and its own INFO. With ``verify_and_map`` / ``verify_cert_and_check_known_urls``
  in gateway.tls an inbound gateway is authorized by its certificate (cluster/peerauth.py, as
  routes); gateway.tls ``pinned_certs`` is checked on accepted and on dialed gateways.
- Interest: this server always runs every account in interest-only mode (as nats-server 2.9+
  with ``gateway_iom``). On an inbound registration it sends, per account, INFO gateway_cmd 2,
  an RS+ for each plain subject with interest in this cluster (local or from routes), INFO
  gateway_cmd 3, and an RS+ <acc> <subj> <queue> 1 for each queue group; afterwards RS+/RS- on
  each 0<->1 change. As a sender it only forwards what an RS+ asked for (A+/A- are ignored: we
  never send optimistically).
- Messages: a local publish goes once to each outbound gateway with matching plain interest; a
  queue group with no member in this cluster is served by one gateway (the queue name is in the
  RMSG). A message from a gateway goes to local subscribers and to routes, never to a gateway;
  messages from routes never go to gateways.
- Replies: a publish on ``_GR_.<cluster hash>.<server hash>.<reply>`` goes only to the gateway
  whose name hash matches; a message arriving with our own ``_GR_`` prefix has it stripped.
  Reply rewriting of our own requests is not done.
- Discovery (implicit gateways), as nats-server: the accepting side tells the dialer about every
  other gateway it knows (INFO gateway_cmd 1 with the gateway's URLs) and dials the dialer's
  gateway itself when it does not know it; the dialer forwards each gateway INFO it reads to its
  cluster over the routes (server_id "GW"+ours), and a route registering gets an INFO for each
  gateway we have an outbound connection to. A gateway learnt that way that is not configured
  becomes an implicit remote (dialed with gateway.tls, ``configured: false`` in /gatewayz),
  tried once per round of its URLs (``connect_retries`` rounds more) and forgotten when that
  fails and it has no inbound connection here. Every server's gateway URL travels in its route
  INFO (``gateway_url``), so the ``gateway_urls`` of our gateway INFO name the whole cluster
  (updated INFOs go to the inbound gateways); URLs read from a remote's INFO are merged into
  its URL list (configured ones included).
- Not done: reply rewriting of old peers, optimistic sending.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import logging
import random
import socket
import time
import urllib.parse
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pynatsd import NATS_SERVER_COMPAT_VERSION
from pynatsd.client import deliver
from pynatsd.cluster import peerauth
from pynatsd.cluster import protocol as rp
from pynatsd.cluster.peerconn import PeerConnection, close_peers, is_ip
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
from pynatsd.errors import ConfigError
from pynatsd.protocol import wire
from pynatsd.subjects import SubjectTrie

if TYPE_CHECKING:
    from pynatsd.config.options import GatewayOptions, RemoteGatewayOptions
    from pynatsd.server import Server

log = logging.getLogger("pynatsd")

GW_PROTO = 1
CONNECT_DELAY = 1.0  # between connect attempts (nats-server's gateway connect delay)
CONNECT_MAX_DELAY = 30.0
RECONNECT_DELAY = 1.0  # added before an explicit gateway is dialed again after a drop
CONNECT_ERROR_REPORTS = 3600  # first connect: log every Nth failed round (others at debug)
DIAL_TIMEOUT = 1.0
MAX_PING_INTERVAL = 15.0  # nats-server caps the gateway ping interval
GR_PREFIX = b"_GR_."
MAX_PENDING = 256 * 1024 * 1024
REPLY_MAP_TTL = 120.0

CMD_GOSSIP = 1
CMD_ALL_SUBS_START = 2
CMD_ALL_SUBS_COMPLETE = 3

REASON_CLIENT_CLOSED = "Client Closed"
REASON_AUTH_FAILURE = "Authentication Failure"
REASON_READ_ERROR = "Read Error"
REASON_PROTOCOL = "Protocol Violation"
REASON_PARSE = "Parse Error"
REASON_WRONG_PORT = "Incorrect Port"
REASON_WRONG_GATEWAY = "Wrong Gateway"
REASON_SHUTDOWN = "Server Shutdown"
REASON_SLOW = "Slow Consumer (Pending Bytes)"

ERR_AUTH_VIOLATION = "Authorization Violation"
LOG_AUTH_ERROR = "authentication error"  # what nats-server logs when it sends the above
ERR_GATEWAY_PORT = "attempted to connect to gateway port"


def hash6(text: str) -> bytes:
    """nats-server's 6-character name hash: SHA-256, each of the first 6 bytes mod 62 mapped
    to 0-9A-Za-z."""
    digits = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    return bytes(digits[b % 62] for b in hashlib.sha256(text.encode()).digest()[:6])


def validate(g: GatewayOptions) -> None:
    """nats-server's start-up checks of the gateway block (``-t`` passes these)."""
    if not g.name:
        raise ConfigError("gateway has no name")
    if g.port == 0:
        raise ConfigError(f"gateway {wire.go_quote(g.name)} has no port specified (select -1 for random port)")
    for i, r in enumerate(g.gateways):
        if not r.name:
            raise ConfigError(f"gateway in the list {i} has no name")
        if not r.urls:
            raise ConfigError(f"gateway {wire.go_quote(r.name)} has no URL")


IMPLICIT = ""  # build_gateway_tls's key of the implicit gateways' context (no remote has this name)


def build_gateway_tls(g: GatewayOptions, fips: bool) -> tuple[Any, dict[str, Any]]:
    """The gateway port's server context and each remote's dialing context (its own ``tls``
    or else ``gateway.tls``; under ``IMPLICIT`` gateway.tls's, for the implicit gateways, as
    nats-server clones it for them); gateways are always mutual TLS (nats-server forces
    verify)."""
    from pynatsd.tls.context import build_client_context, build_server_context

    server_tls = None
    if g.tls is not None:
        server_tls = build_server_context(dataclasses.replace(g.tls, verify=True), fips=fips, where="gateway.tls")
    # as nats-server, gateway.tls pinned_certs checks the servers we dial too, whichever tls
    # block the dial uses (a remote entry's own pinned_certs is not used)
    pins = g.tls.pinned_certs if g.tls is not None else None
    clients: dict[str, Any] = {}
    for r in g.gateways:
        tls = r.tls or g.tls
        if tls is not None and r.name != g.name:
            tls = dataclasses.replace(tls, pinned_certs=pins)
            clients[r.name] = build_client_context(tls, fips=fips, where="gateway.tls")
    if g.tls is not None:
        clients[IMPLICIT] = build_client_context(g.tls, fips=fips, where="gateway.tls")
    return server_tls, clients


def without_tls(g: GatewayOptions | None) -> GatewayOptions | None:
    """The gateway options minus what a reload may change (the tls blocks)."""
    if g is None:
        return None
    return dataclasses.replace(
        g, tls=None, source=dataclasses.replace(g.source),
        gateways=tuple(dataclasses.replace(r, tls=None) for r in g.gateways),
    )


def tls_reload_refused(old: GatewayOptions | None, new: GatewayOptions | None) -> bool:
    """Whether a reload changes what nats-server does not reload in the gateway tls blocks:
    ``timeout``, ``verify_and_map`` and ``verify_cert_and_check_known_urls`` of gateway.tls and
    the remotes' ``timeout`` (``pinned_certs`` and the TLS configuration itself do reload)."""
    if old is None or new is None:
        return False

    def fixed(t: Any) -> tuple[float, bool, bool]:
        return (t.timeout, t.verify_and_map, t.verify_cert_and_check_known_urls)

    if old.tls is not None and new.tls is not None and fixed(old.tls) != fixed(new.tls):
        return True
    theirs = {r.name: r.tls for r in new.gateways}
    for r in old.gateways:
        t = theirs.get(r.name)
        if r.tls is not None and t is not None and r.tls.timeout != t.timeout:
            return True
    return False


@dataclasses.dataclass
class GatewayURL:
    host: str
    port: int
    user: str | None
    password: str | None

    @property
    def hostport(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_gateway_url(text: str) -> GatewayURL:
    u = urllib.parse.urlsplit(text if "://" in text else "nats://" + text)
    return GatewayURL(
        u.hostname or "",
        u.port or 7222,
        urllib.parse.unquote(u.username) if u.username else None,
        urllib.parse.unquote(u.password) if u.password else None,
    )




class RemoteGateway:
    """One remote gateway, configured or implicit (learnt by gossip): its URLs (the configured
    ones and those its servers' INFOs named, by ``host:port``), TLS context and outbound
    connection."""

    def __init__(self, opts: RemoteGatewayOptions, client_tls: Any, implicit: bool = False) -> None:
        self.name = opts.name
        self.opts = opts
        self.implicit = implicit
        self.config_urls = [parse_gateway_url(u) for u in opts.urls]
        self.urls: dict[str, GatewayURL] = {}
        self.client_tls = client_tls
        self.tls_name = ""  # a host name of our URLs: the TLS server name when we dial an IP
        self.hash = hash6(opts.name)
        self.conn: GatewayConnection | None = None
        # the task dialing this remote; cleared as soon as it made a connection (that connection
        # may be gone again before the task itself has finished)
        self.dial_task: asyncio.Task[None] | None = None
        for u in self.config_urls:
            self._add(u.hostport, u)

    def _add(self, key: str, u: GatewayURL) -> None:
        if self.client_tls is not None and not self.tls_name and not is_ip(u.host):
            self.tls_name = u.host
        self.urls[key] = u

    def add_urls(self, hostports: Any) -> None:
        """URLs (``host:port``, no scheme) from an INFO, those not known yet."""
        if not isinstance(hostports, list):
            return
        for hp in hostports:
            if isinstance(hp, str) and hp and hp not in self.urls:
                u = parse_gateway_url(hp)
                if u.host:
                    self._add(hp, u)

    def update_urls(self, hostports: Any) -> None:
        """The configured URLs plus those of the remote's latest INFO."""
        self.urls = {u.hostport: u for u in self.config_urls}
        self.add_urls(hostports)

    def url_strings(self) -> list[str]:
        return list(self.urls)


class GwSub:
    __slots__ = ("account", "conn", "queue", "subject")

    def __init__(self, conn: GatewayConnection, account: bytes, subject: bytes, queue: bytes) -> None:
        self.conn = conn
        self.account = account
        self.subject = subject
        self.queue = queue


class GatewayConnection(PeerConnection):
    """One gateway connection, outbound (we dialed ``remote``) or inbound (accepted)."""

    KIND = "Gateway"
    CLOSED_LINE = "Gateway connection closed"

    manager: GatewayManager
    server: Server

    def __init__(self, manager: GatewayManager, remote: RemoteGateway | None = None,
                 url: GatewayURL | None = None) -> None:
        self._init_peer(manager, RouteParser(max(manager.server.opts.max_control_line, 4096) * 16))
        self.outbound = remote is not None
        self.remote = remote
        self.url = url
        self.gid = 0
        self.name = remote.name if remote is not None else ""  # the remote gateway's name
        # outbound: the remote's interest, per account (interest-only mode)
        self.interest: dict[bytes, SubjectTrie[GwSub]] = {}
        self.subs: dict[tuple[bytes, bytes, bytes], GwSub] = {}

    def __repr__(self) -> str:
        return f"<GatewayConnection gid={self.gid} {'out' if self.outbound else 'in'} {self.name or '?'}>"

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        mgr = self.manager
        self.gid = self._attach(transport, "gid")
        if not self._admit(transport, None):
            return
        if self.remote is not None:
            self.remote.dial_task = None  # dialed: a drop of this connection may dial again
        # nats-server says which connection this is before any TLS handshake
        if self.outbound:
            self.notice(f"Creating outbound gateway connection to {wire.go_quote(self.name)}")
        else:
            self.notice("Processing inbound gateway connection")
        tls_ctx = self.remote.client_tls if self.remote is not None else mgr.server_tls
        if tls_ctx is not None:
            self._start_tls(tls_ctx)
            return
        self._begin()

    def _start_tls(self, ctx: Any) -> None:
        self.debug(f"Starting TLS gateway {'client' if self.outbound else 'server'} handshake")

        def ok(tls_transport: Any) -> None:
            self._tls_established(tls_transport, unknown_info=None, version_line=True)
            self._begin()

        def failed(err: str | None) -> None:
            self._tls_failed("gateway", err)

        mgr = self.manager
        if self.outbound:
            assert self.url is not None and self.remote is not None
            # as nats-server: the URL's host, or the remote's saved host name when it is an IP
            host = self.url.host
            if self.remote.tls_name and is_ip(host):
                host = self.remote.tls_name
            self._start_handshake(ctx, mgr.tls_timeout, ok, failed, client=True, server_hostname=host)
        else:
            self._start_handshake(ctx, mgr.tls_timeout, ok, failed)

    def _begin(self) -> None:
        mgr = self.manager
        self._reading = True
        if not self.outbound:
            self.enqueue(rp.info_line(mgr.gateway_info()))
            self._start_auth_timer()
        self.flush()
        self._start_pings(jitter=False)

    def data_received(self, data: bytes) -> None:
        if self.closed or not self._reading:
            return
        self._last_in = time.time()
        for op in self.parser.feed(data):
            if self.closed:
                return
            self._handle(op)

    def connection_lost(self, exc: Exception | None) -> None:
        # (unlike routes and leafnodes: no TLS error line, a TLS alert counts as a plain close)
        if not self.closed:
            self.close(REASON_READ_ERROR if exc is not None else REASON_CLIENT_CLOSED, flush=False)

    # -- ops -------------------------------------------------------------------------------------

    def _handle(self, op: tuple[Any, ...]) -> None:
        kind = op[0]
        if not self.outbound and not self.connect_received and kind != R_CONNECT:
            if kind == R_CLOSE:
                self.error(f"Gateway parser error: {op[2]}")
                self.close(op[2], op[1])
                return
            self.error(LOG_AUTH_ERROR)
            self.close(REASON_AUTH_FAILURE, ERR_AUTH_VIOLATION)
            return
        if kind == R_MSG:
            self._on_msg(op[1], op[2], op[3], op[4], op[5], op[6])
        elif kind == R_SUB or kind == R_UNSUB:
            if not self.outbound:
                what = "RS+" if kind == R_SUB else "RS-"
                self.error(f"Received {what} from gateway on inbound connection")
                self.close(REASON_PROTOCOL)
                return
            if kind == R_SUB:
                self._on_sub(op[1], op[2], op[3])
            else:
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
            self.error(f"Gateway Error '{text}'")
            self.close(REASON_PARSE, flush=False)  # nats-server's reason for a peer's -ERR
        elif kind == R_OK:
            pass
        elif kind == R_CLOSE:
            self.error(f"Gateway parser error: {op[2]}")
            self.close(op[2], op[1])

    def _on_connect(self, raw: bytes) -> None:
        if self.outbound or self.connect_received:
            return
        mgr = self.manager
        doc = self._json_doc(raw, None)
        if doc is None:
            return
        self._stop_auth_timer()
        gw = doc.get("gateway")
        if not isinstance(gw, str) or not gw:
            self.error(ERR_GATEWAY_PORT)
            self.close(REASON_WRONG_PORT, ERR_GATEWAY_PORT)
            return
        if not mgr.authorize(self, doc):
            # nats-server's log line: the CONNECT's user (Go-quoted) when it carried one
            user = doc.get("user")
            self.error(f"{LOG_AUTH_ERROR} - User {wire.go_quote(user)}" if isinstance(user, str) and user else LOG_AUTH_ERROR)
            self.close(REASON_AUTH_FAILURE, ERR_AUTH_VIOLATION)
            return
        if mgr.gopts.reject_unknown_cluster and gw not in mgr.remotes:
            text = f"Connection to gateway {wire.go_quote(mgr.name)} rejected"
            self.error(f"Rejecting connection from gateway {wire.go_quote(gw)}")
            self.close(REASON_WRONG_GATEWAY, text)
            return
        self.connect_received = True
        self.name = gw
        self.remote_id = str(doc.get("name") or "")

    def _on_info(self, raw: bytes) -> None:
        info = self._json_doc(raw, None)
        if info is None:
            return
        mgr = self.manager
        if self.outbound:
            if not self.info_received:
                self.info_received = True
                gw = info.get("gateway")
                if not gw:
                    text = f"Attempt to connect to gateway {wire.go_quote(self.name)} using wrong port"
                    self.error(text)
                    self.close(REASON_WRONG_PORT, text)
                    return
                if gw != self.name:
                    self.error(
                        f"Failing connection to gateway {wire.go_quote(self.name)}, "
                        f"remote gateway name is {wire.go_quote(str(gw))}"
                    )
                    self.close(
                        REASON_WRONG_GATEWAY,
                        f"Connection from {wire.go_quote(mgr.name)} rejected, wanted to connect to "
                        f"{wire.go_quote(self.name)}, this is {wire.go_quote(str(gw))}",
                    )
                    return
                self.remote_id = str(info.get("server_id") or "")
                self.remote_name = str(info.get("server_name") or "")
                self.headers = bool(info.get("headers")) and self.server.headers_supported
                assert self.remote is not None
                if info.get("gateway_urls"):
                    self.remote.update_urls(info.get("gateway_urls"))
                self.enqueue(rp.connect_line(mgr.connect_json(self)))
                self.debug(f"Gateway connect protocol sent to {wire.go_quote(self.name)}")
                self.enqueue(rp.info_line(mgr.gateway_info()))
                self.flush()
                mgr.register_outbound(self)
                mgr.forward_to_cluster(info)
                return
            gw = info.get("gateway")
            cmd = info.get("gateway_cmd")
            if gw != self.name:
                if gw and cmd == CMD_GOSSIP:
                    # another gateway the remote knows of (unless we take configured ones only)
                    if not (mgr.gopts.reject_unknown_cluster and gw not in mgr.remotes):
                        mgr.implicit_gateway(info)
                    return
                self.error(
                    f"Failing connection to gateway {wire.go_quote(self.name)}, "
                    f"remote gateway name is {wire.go_quote(str(gw or ''))}"
                )
                self.close(
                    REASON_WRONG_GATEWAY,
                    f"Connection from {wire.go_quote(mgr.name)} rejected, wanted to connect to "
                    f"{wire.go_quote(self.name)}, this is {wire.go_quote(str(gw or ''))}",
                )
                return
            assert self.remote is not None
            if info.get("gateway_urls"):
                self.remote.update_urls(info.get("gateway_urls"))
            if cmd:
                if cmd != CMD_ALL_SUBS_START and cmd != CMD_ALL_SUBS_COMPLETE:
                    log.warning("Received unknown command %s from gateway %s", cmd, wire.go_quote(self.name))
                return  # (2/3: we are interest-only from the start, nothing to switch)
            mgr.forward_to_cluster(info)  # the remote cluster's gateway URLs changed
            return
        if not self.info_received and self.connect_received:
            self.info_received = True
            self.remote_name = str(info.get("server_name") or "")
            self.headers = bool(info.get("headers")) and self.server.headers_supported
            mgr.register_inbound(self)
            # as nats-server: dial the dialer's gateway if we do not know it, then tell the
            # dialer about every other gateway we know
            mgr.implicit_gateway(info)
            mgr.gossip_to_inbound(self)

    # -- interest (outbound side) --------------------------------------------------------------

    def _on_sub(self, account: bytes, subject: bytes, queue: bytes) -> None:
        if self.server.trace:
            self.trace(f"<<- [RS+ {account.decode()} {subject.decode()} {queue.decode()}]")
        key = (account, subject, queue)
        if key in self.subs:
            return
        trie = self.interest.get(account)
        if trie is None:
            trie = self.interest[account] = SubjectTrie()
        s = GwSub(self, account, subject, queue)
        try:
            trie.insert(subject, queue, s)
        except ValueError:
            return
        self.subs[key] = s
        leafs = self.server.leafs
        if leafs is not None:  # as nats-server: the other cluster's interest reaches leaf nodes
            leafs.route_interest(self.gid, account, subject, queue, 1)

    def _on_unsub(self, account: bytes, subject: bytes, queue: bytes) -> None:
        s = self.subs.pop((account, subject, queue), None)
        if s is not None:
            trie = self.interest.get(account)
            if trie is not None:
                trie.remove(subject, queue, s)
            leafs = self.server.leafs
            if leafs is not None:
                leafs.route_interest(self.gid, account, subject, queue, 0)

    # -- messages ------------------------------------------------------------------------------

    def _on_msg(
        self, account: bytes, subject: bytes, reply: bytes, queues: tuple[bytes, ...], hdr_len: int, data: bytes
    ) -> None:
        self.in_msgs += 1
        self.in_bytes += len(data)
        if self.outbound or not self.registered:
            return
        server = self.server
        if server.trace:
            self.trace(f"<<- [RMSG {account.decode()} {subject.decode()} {len(data)}]")
        acc = server.accounts.get(account.decode("utf-8", "replace")) if account != GLOBAL_ACCOUNT else server.gacc
        if acc is None:
            return
        stats = server.stats
        stats.in_msgs += 1
        stats.in_bytes += len(data)
        self.manager.deliver_inbound(self, acc, subject, reply, queues, hdr_len, data)

    def send_msg(
        self, account: bytes, subject: bytes, reply: bytes, queues: list[bytes], hdr_len: int, data: bytes
    ) -> None:
        if self.closed:
            return
        if hdr_len >= 0 and not self.headers:
            data = data[hdr_len:]
            hdr_len = -1
        line = rp.msg_line(account, subject, reply, queues, hdr_len, len(data))
        if self.server.trace:
            self.trace(f"->> [{line[:-2].decode('utf-8', 'replace')}]")
        self.out += (line, data, rp.CRLF)
        self.out_size += len(line) + len(data) + 2
        self.out_msgs += 1
        self.out_bytes += len(data)
        stats = self.server.stats
        stats.out_msgs += 1
        stats.out_bytes += len(data)
        if not self.dirty:
            self.dirty = True
            self.server.mark_dirty(self)  # type: ignore[arg-type]
        if self.out_size > MAX_PENDING:
            self.notice(f"Slow Consumer Detected: MaxPending of {MAX_PENDING} Exceeded")
            self.close(REASON_SLOW, flush=False)

    # -- closing -------------------------------------------------------------------------------

    def _closed(self) -> None:
        leafs = self.server.leafs
        if leafs is not None:
            for a, subj, q in self.subs:
                leafs.route_interest(self.gid, a, subj, q, 0)
        self.interest.clear()
        self.subs.clear()
        self.manager.conn_closed(self)


class GatewayManager:
    """The gateway side of a server: listener, dialers, registered connections, interest,
    forwarding."""

    def __init__(self, server: Server) -> None:
        self.server = server
        assert server.opts.gateway is not None
        self.gopts: GatewayOptions = server.opts.gateway
        g = self.gopts
        validate(g)
        self.name = g.name
        self.hash = hash6(g.name)
        self.server_hash = hash6(server.server_id)
        self.gr_prefix = GR_PREFIX + self.hash + b"." + self.server_hash + b"."
        # (account, plain reply) -> (_GR_ reply, when): see track_reply
        self.reply_map: dict[tuple[bytes, bytes], tuple[bytes, float]] = {}
        self.running = False
        self.port = 0
        self.conns: set[GatewayConnection] = set()
        self.inbound: dict[int, GatewayConnection] = {}  # registered, by gid
        self.remotes: dict[str, RemoteGateway] = {}
        self.outbound: list[GatewayConnection] = []  # registered, one per remote
        self.by_hash: dict[bytes, GatewayConnection] = {}
        # cluster-wide interest (local and from routes) per (account, subject, queue)
        self.counts: dict[tuple[bytes, bytes, bytes], int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._listener: asyncio.base_events.Server | None = None
        self.ping_interval = min(server.opts.ping_interval, MAX_PING_INTERVAL)
        self.ping_max = server.opts.ping_max
        self.server_tls: Any = None
        self.tls_timeout = g.tls.timeout if g.tls is not None else 2.0
        self.auth_timeout = (
            g.auth_timeout if g.auth_timeout is not None else (self.tls_timeout + 1.0 if g.tls is not None else 2.0)
        )
        self.gateway_url = ""
        self.advertise_host = ""
        self.advertise_port = 0
        # this cluster's gateway URLs (ours and each route peer's), counted: our gateway INFO's
        # gateway_urls
        self.urls: dict[str, int] = {}
        self._implicit_tls: Any = None  # gateway.tls as a dialing context (with its pins)

    # -- lifecycle -------------------------------------------------------------------------------

    def _contexts(self) -> None:
        server_tls, clients = build_gateway_tls(self.gopts, self.server.opts.fips)
        self.server_tls = server_tls
        self._implicit_tls = clients.get(IMPLICIT)
        for r in self.gopts.gateways:
            if r.name != self.name:
                self.remotes[r.name] = RemoteGateway(r, clients.get(r.name))

    def implicit_tls(self) -> Any:
        """The context implicit gateways are dialed with (gateway.tls, see build_gateway_tls)."""
        return self._implicit_tls

    def install_tls(self, built: tuple[Any, dict[str, Any]]) -> None:
        """(reload) new gateway handshakes use these contexts; live connections stay.
        Implicit gateways take the new gateway.tls."""
        self.server_tls = built[0]
        self._implicit_tls = built[1].get(IMPLICIT)
        for name, r in self.remotes.items():
            r.client_tls = self.implicit_tls() if r.implicit else built[1].get(name)

    async def start(self) -> None:
        server = self.server
        g = self.gopts
        self._contexts()
        port = 0 if g.port == -1 else g.port
        try:
            self._listener = await server.loop.create_server(
                lambda: GatewayConnection(self), g.host or None, port, reuse_address=True, backlog=1024
            )
        except OSError as e:
            log.critical("Error listening on gateway port: %s:%s, %s", g.host, g.port, e)
            raise
        self.port = int(self._listener.sockets[0].getsockname()[1])
        host = g.host if g.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        self.advertise_host, self.advertise_port = host, self.port
        if g.advertise:
            h, _, p = g.advertise.rpartition(":")
            if h and p.isdigit():
                self.advertise_host, self.advertise_port = h.strip("[]"), int(p)
            else:
                self.advertise_host = g.advertise
        ah = self.advertise_host
        self.gateway_url = f"[{ah}]:{self.advertise_port}" if ":" in ah else f"{ah}:{self.advertise_port}"
        self.urls[self.gateway_url] = self.urls.get(self.gateway_url, 0) + 1
        self.running = True
        log.info("Gateway name is %s", self.name)
        if self.server_tls is not None:
            log.info("TLS required for gateway connections")
        log.info("Listening for gateways connections on %s:%d", g.host, self.port)
        log.info("Address for gateway %s is %s", wire.go_quote(self.name), self.gateway_url)
        if any(t is not None and t.insecure for t in (g.tls, *(r.tls for r in g.gateways))):
            log.warning("TLS certificate chain and hostname of solicited gateways will not be verified. DO NOT USE IN PRODUCTION!")
        for remote in list(self.remotes.values()):
            if not remote.implicit:
                self._spawn_dial(remote, 0.0, first=True)

    async def shutdown(self) -> None:
        self.running = False
        if self._listener is not None:
            self._listener.close()
        await close_peers(self._listener, self._tasks, self.conns, REASON_SHUTDOWN)
        self._listener = None

    def _spawn_dial(self, remote: RemoteGateway, delay: float, first: bool) -> None:
        if remote.dial_task is not None or not self.running:
            return
        task = remote.dial_task = self.server.loop.create_task(self._dial(remote, delay, first))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _dial(self, remote: RemoteGateway, delay: float, first: bool) -> None:
        """nats-server's solicit loop: each round tries every URL (in random order); a round's
        failures are logged at the first round (and every 3600th of a first connect, every
        round when reconnecting), otherwise at -D. An implicit gateway gets ``connect_retries``
        more rounds, then is forgotten unless it has an inbound connection here."""
        from pynatsd.cluster.routes import RouteURL, _dial_error

        try:
            if delay > 0:
                await asyncio.sleep(delay)
            attempts = 0
            attempt_delay = CONNECT_DELAY
            loop = self.server.loop
            kind = "implicit" if remote.implicit else "explicit"
            while self.running:
                urls = list(remote.urls.values())
                if not urls:
                    break
                random.shuffle(urls)
                attempts += 1
                report = attempts == 1 or not first or attempts % CONNECT_ERROR_REPORTS == 0
                say = log.info if report else log.debug
                for url in urls:
                    hp = url.hostport
                    ip = url.host
                    if not is_ip(ip):  # as nats-server: one of the host's addresses, at random
                        try:
                            infos = await loop.getaddrinfo(url.host, url.port, type=socket.SOCK_STREAM)
                            ip = str(random.choice(infos)[4][0])
                        except (OSError, IndexError) as e:
                            log.error("Error getting IP for %s gateway %s (%s): %s", kind, wire.go_quote(remote.name),
                                      hp, e)
                            continue
                    addr = RouteURL(ip, url.port)
                    say("Connecting to %s gateway %s (%s) at %s (attempt %d)", kind, wire.go_quote(remote.name),
                        hp, addr.hostport, attempts)
                    try:
                        await asyncio.wait_for(
                            loop.create_connection(
                                lambda u=url: GatewayConnection(self, remote, u), ip, url.port  # type: ignore[misc]
                            ),
                            DIAL_TIMEOUT,
                        )
                        return
                    except (OSError, TimeoutError) as e:
                        (log.error if report else log.debug)(
                            "Error connecting to %s gateway %s (%s) at %s (attempt %d): %s", kind,
                            wire.go_quote(remote.name), hp, addr.hostport, attempts, _dial_error(e, addr),
                        )
                    if not self.running:
                        return
                if remote.implicit:
                    retries = self.gopts.connect_retries
                    if (retries == 0 or attempts > retries) and not self._has_inbound(remote.name):
                        if self.remotes.get(remote.name) is remote:
                            del self.remotes[remote.name]
                        return
                await asyncio.sleep(attempt_delay)
                if self.gopts.connect_backoff:
                    attempt_delay = min(attempt_delay * 2, CONNECT_MAX_DELAY)
        finally:
            if remote.dial_task is asyncio.current_task():
                remote.dial_task = None

    def _has_inbound(self, name: str) -> bool:
        return any(c.name == name for c in self.inbound.values())

    # -- discovery -------------------------------------------------------------------------------

    def implicit_gateway(self, info: dict[str, Any]) -> None:
        """A gateway named by an INFO (gossip from a gateway or a route, or an inbound
        gateway's own INFO): its URLs join a known remote's; an unknown one becomes an implicit
        remote and is dialed."""
        name = info.get("gateway")
        if not isinstance(name, str) or not name or name == self.name:
            return
        urls = info.get("gateway_urls")
        remote = self.remotes.get(name)
        if remote is not None:
            remote.add_urls(urls)
            return
        from pynatsd.config.options import RemoteGatewayOptions

        remote = RemoteGateway(RemoteGatewayOptions(name=name), self.implicit_tls(), implicit=True)
        remote.add_urls(urls)
        if not remote.urls or not self.running:
            return
        self.remotes[name] = remote
        self._spawn_dial(remote, 0.0, first=True)

    def _gossip_line(self, server_id: str, server_name: str, name: str, urls: list[str]) -> bytes:
        """INFO gateway_cmd 1 naming gateway ``name`` (the zero-valued fields as Go writes them)."""
        doc: dict[str, Any] = {
            "server_id": server_id, "server_name": server_name, "version": "", "proto": 0, "go": "",
            "host": "", "port": 0, "headers": False, "max_payload": 0, "gateway": name,
        }
        if urls:
            doc["gateway_urls"] = urls
        doc["gateway_cmd"] = CMD_GOSSIP
        return rp.info_line(doc)

    def gossip_to_inbound(self, conn: GatewayConnection) -> None:
        """Every remote gateway we know but the inbound connection's own, to its server."""
        for name, remote in self.remotes.items():
            urls = remote.url_strings()
            if name != conn.name and urls:
                line = self._gossip_line(self.server.server_id, "", name, urls)
                if self.server.trace:
                    conn.trace(f"->> [{line[:-2].decode('utf-8', 'replace')}]")
                conn.enqueue(line)

    def forward_to_cluster(self, info: dict[str, Any]) -> None:
        """A gateway INFO read on an outbound connection, to every route: the other servers of
        this cluster make sure they have an outbound connection to that gateway."""
        routes = self.server.routes
        if routes is None:
            return
        urls = info.get("gateway_urls")
        line = self._gossip_line(
            "GW" + self.server.server_id, self.server.opts.server_name or "", str(info.get("gateway") or ""),
            [u for u in urls if isinstance(u, str)] if isinstance(urls, list) else [],
        )
        for r in list(routes.routes.values()):
            self._to_route_conn(r, line)

    def send_configs_to_route(self, route: Any) -> None:
        """(a route registered) an INFO for each gateway we have an outbound connection to."""
        for c in list(self.outbound):
            remote = c.remote
            if remote is not None and remote.urls:
                self._to_route_conn(route, self._gossip_line("GW" + self.server.server_id, "", remote.name,
                                                             remote.url_strings()))

    def _to_route_conn(self, route: Any, line: bytes) -> None:
        if self.server.trace:
            route.trace(f"->> [{line[:-2].decode('utf-8', 'replace')}]")
        route.enqueue(line)

    def info_from_route(self, info: dict[str, Any], route_id: str) -> None:
        """A gateway INFO on a route (forwarded by another server of this cluster)."""
        cmd = info.get("gateway_cmd")
        if cmd == CMD_GOSSIP:
            self.implicit_gateway(info)
        else:
            log.error("Unknown command %s from server %s", cmd if isinstance(cmd, int) else 0, route_id)

    def add_cluster_url(self, url: str) -> None:
        """A route peer's gateway URL (its route INFO's ``gateway_url``)."""
        n = self.urls.get(url, 0)
        self.urls[url] = n + 1
        if n == 0:
            self._send_async_info()

    def remove_cluster_url(self, url: str) -> None:
        n = self.urls.get(url, 0)
        if n == 0 or not self.running:
            return
        if n > 1:
            self.urls[url] = n - 1
            return
        del self.urls[url]
        self._send_async_info()

    def _send_async_info(self) -> None:
        """Our gateway INFO again (new gateway_urls) to every inbound gateway."""
        if not self.inbound:
            return
        line = rp.info_line(self.gateway_info())
        for c in self.inbound.values():
            c.enqueue(line)

    # -- handshake ----------------------------------------------------------------------------

    def gateway_info(self) -> dict[str, Any]:
        """Our gateway INFO, keys in nats-server's order (false flags omitted as it does)."""
        server, g = self.server, self.gopts
        info: dict[str, Any] = {
            "server_id": server.server_id,
            "server_name": server.server_name,
            "version": NATS_SERVER_COMPAT_VERSION,
            "proto": GW_PROTO,
            "go": "",
            "host": self.advertise_host,
            "port": self.advertise_port,
            "headers": server.headers_supported,
        }
        if g.username:
            info["auth_required"] = True
        if g.tls is not None:
            info["tls_required"] = True
            info["tls_verify"] = True
        info.update({
            "max_payload": server.opts.max_payload,
            "gateway": self.name,
            "gateway_urls": list(self.urls),
            "gateway_url": self.gateway_url,
            "gateway_nrp": True,
            "gateway_iom": True,
        })
        return info

    def cmd_info(self, cmd: int, account: bytes) -> bytes:
        """INFO gateway_cmd 2/3 (the zero-valued fields are there as Go writes them)."""
        return rp.info_line({
            "server_id": "", "server_name": "", "version": "", "proto": 0, "go": "", "host": "",
            "port": 0, "headers": False, "max_payload": 0, "gateway": self.name, "gateway_cmd": cmd,
            "gateway_cmd_payload": base64.b64encode(account).decode(),
        })

    def connect_json(self, conn: GatewayConnection) -> dict[str, Any]:
        g = self.gopts
        user, password = (conn.url.user, conn.url.password) if conn.url is not None else (None, None)
        if user is None and g.username:
            user, password = g.username, g.password
        doc: dict[str, Any] = {"echo": False, "verbose": False, "pedantic": False}
        if user:
            doc["user"] = user
            doc["pass"] = password or ""
        doc.update({
            "tls_required": conn.tls_info is not None,
            "headers": False,
            "name": self.server.server_id,
            "cluster": "",
            "gateway": self.name,
        })
        return doc

    def authorize(self, conn: GatewayConnection, doc: dict[str, Any]) -> bool:
        """An inbound gateway's CONNECT credentials, or with ``verify_and_map`` /
        ``verify_cert_and_check_known_urls`` its certificate, against the gateway
        authorization (cluster/peerauth.py, shared with routes). The known URLs are every URL
        of the ``gateways`` list, as nats-server checks them."""
        g = self.gopts
        tls = g.tls
        if tls is not None and (tls.verify_and_map or tls.verify_cert_and_check_known_urls):
            known = None
            if tls.verify_cert_and_check_known_urls:
                known = [parse_gateway_url(u).host for r in g.gateways for u in r.urls]
            return peerauth.cert_authorized(
                conn.transport, user=g.username, map_user=tls.verify_and_map, known_hosts=known, debug=conn.debug
            )
        return peerauth.password_authorized(g.username, g.password, doc)

    def register_outbound(self, conn: GatewayConnection) -> None:
        remote = conn.remote
        assert remote is not None
        old = remote.conn
        if old is not None and not old.closed:
            old.close(REASON_CLIENT_CLOSED)
        remote.conn = conn
        conn.registered = True
        self.outbound = [r.conn for r in self.remotes.values() if r.conn is not None and r.conn.registered]
        self.by_hash[remote.hash] = conn
        conn.notice(f"Outbound gateway connection to {wire.go_quote(remote.name)} ({conn.remote_id}) registered")

    def register_inbound(self, conn: GatewayConnection) -> None:
        conn.registered = True
        self.inbound[conn.gid] = conn
        conn.notice(f"Inbound gateway connection from {wire.go_quote(conn.name)} ({conn.remote_id}) registered")
        self._send_all_interest(conn)

    def _send_all_interest(self, conn: GatewayConnection) -> None:
        """Interest-only mode for every account: cmd 2, its plain subjects, cmd 3; then every
        queue group."""
        by_acc: dict[bytes, list[bytes]] = {}
        queues: list[bytes] = []
        for (acc, subj, queue), n in self.counts.items():
            if n <= 0:
                continue
            if queue:
                queues.append(rp.rs_plus(acc, subj, queue, 1))
            else:
                by_acc.setdefault(acc, []).append(rp.rs_plus(acc, subj))
        accounts = {a.name_b for a in self.server.accounts.accounts.values()} | set(by_acc)
        parts: list[bytes] = []
        for acc in sorted(accounts):
            parts.append(self.cmd_info(CMD_ALL_SUBS_START, acc))
            parts += by_acc.get(acc, [])
            parts.append(self.cmd_info(CMD_ALL_SUBS_COMPLETE, acc))
        parts += queues
        conn.enqueue(b"".join(parts))

    def conn_closed(self, conn: GatewayConnection) -> None:
        self.conns.discard(conn)
        if conn.outbound:
            remote = conn.remote
            assert remote is not None
            if remote.conn is conn:
                remote.conn = None
                self.by_hash.pop(remote.hash, None)
                self.outbound = [r.conn for r in self.remotes.values() if r.conn is not None and r.conn.registered]
            if self.running and self.remotes.get(remote.name) is remote:
                log.debug("Attempting reconnect for gateway %s", wire.go_quote(remote.name))
                delay = random.random() * 0.1 + (0.0 if remote.implicit else RECONNECT_DELAY)
                self._spawn_dial(remote, delay, first=False)
        else:
            self.inbound.pop(conn.gid, None)

    # -- interest (this cluster's, told to inbound connections) ------------------------------------

    def interest_changed(self, account: bytes, subject: bytes, queue: bytes, delta: int) -> None:
        key = (account, subject, queue)
        n = self.counts.get(key, 0) + delta
        if n <= 0:
            if self.counts.pop(key, 0) > 0:
                self._broadcast(rp.rs_minus(account, subject, queue))
        else:
            self.counts[key] = n
            if n == 1 and delta > 0:
                self._broadcast(rp.rs_plus(account, subject, queue, 1) if queue else rp.rs_plus(account, subject))

    def _broadcast(self, line: bytes) -> None:
        for c in self.inbound.values():
            c.enqueue(line)

    # -- messages ----------------------------------------------------------------------------------

    def forward(self, acc: Any, subject: bytes, reply: bytes, hdr_len: int, data: bytes, local: Any) -> bool:
        """A message published on this server (never one from a route or a gateway): to each
        outbound gateway with interest. ``local`` is the local match: a queue group with a
        member in this cluster (local or behind a route) is not served across gateways."""
        account = acc.name_b
        reply_map = self.reply_map
        if reply_map:
            full = reply_map.get((account, subject))
            if full is not None:
                subject = full[0]  # a reply to a request that came with a _GR_ reply: back to it
        if subject.startswith(GR_PREFIX):
            return self._direct(account, subject, reply, hdr_len, data)
        outbound = self.outbound
        if not outbound:
            return False
        sent = False
        taken: set[bytes] | None = None
        gw_reply: bytes | None = None
        for conn in outbound:
            trie = conn.interest.get(account)
            if trie is None:
                continue
            res = trie.match(subject)
            qs: list[bytes] = []
            for qname in res.queue_names:
                if taken is None:
                    taken = self._served_queues(account, subject, local)
                if qname not in taken:
                    taken.add(qname)
                    qs.append(qname)
            if res.plain or qs:
                if gw_reply is None:
                    gw_reply = self._gw_reply(acc, reply)
                conn.send_msg(account, subject, gw_reply, qs, hdr_len, data)
                sent = True
        return sent

    def _gw_reply(self, acc: Any, reply: bytes) -> bytes:
        """A request's reply with local interest goes out as _GR_.<cluster>.<server>.<reply>,
        so the answer comes straight back here even before our interest reached the remote."""
        if not reply or reply.startswith(GR_PREFIX) or not acc.sublist.match(reply).plain:
            return reply
        return self.gr_prefix + reply

    def _direct(self, account: bytes, subject: bytes, reply: bytes, hdr_len: int, data: bytes) -> bool:
        """A _GR_ subject: only to the gateway of its cluster hash (or, for our cluster, to the
        route of its server hash)."""
        if len(subject) <= 19:
            return False
        cluster = subject[5:11]
        if cluster == self.hash:
            return self._to_route(account, subject, reply, hdr_len, data)
        conn = self.by_hash.get(cluster)
        if conn is None:
            return False
        conn.send_msg(account, subject, reply, [], hdr_len, data)
        return True

    def _to_route(self, account: bytes, subject: bytes, reply: bytes, hdr_len: int, data: bytes) -> bool:
        routes = self.server.routes
        if routes is None:
            return False
        target = subject[12:18]
        for r in routes.routes.values():
            if hash6(r.remote_id) == target:
                r.send_msg(subject, reply, [], hdr_len, data, account)
                return True
        return False

    def track_reply(self, account: bytes, reply: bytes) -> bytes:
        """A message with a _GR_ reply reaches a local subscriber: it sees the plain reply, and
        a publish to that goes back to the _GR_ subject (for a while)."""
        if len(reply) <= 19:
            return reply
        plain = reply[19:]
        now = time.monotonic()
        m = self.reply_map
        if len(m) >= 4096:
            cutoff = now - REPLY_MAP_TTL
            for k in [k for k, v in m.items() if v[1] < cutoff]:
                del m[k]
        m[(account, plain)] = (reply, now)
        return plain

    def _served_queues(self, account: bytes, subject: bytes, local: Any) -> set[bytes]:
        taken = set(local.queue_names)
        routes = self.server.routes
        if routes is not None:
            remote = routes.remotes.get(account)
            if remote is not None:
                taken.update(remote.match(subject).queue_names)
        return taken

    def own_subject(self, subject: bytes) -> bytes:
        """_GR_.<our cluster>.<our server>.<reply> -> <reply>; other subjects as they are."""
        if subject.startswith(self.gr_prefix):
            return subject[19:]
        return subject

    def deliver_inbound(self, conn: GatewayConnection, acc: Any, subject: bytes, reply: bytes,
                        queues: tuple[bytes, ...], hdr_len: int, data: bytes) -> None:
        """A message from a gateway: to local subscribers and routes (plain interest, and one
        member of each named queue group), never to another gateway."""
        server = self.server
        if subject.startswith(GR_PREFIX) and subject[5:11] == self.hash:
            if subject.startswith(self.gr_prefix):
                subject = subject[19:]  # an answer to one of our requests
            else:
                self._to_route(acc.name_b, subject, reply, hdr_len, data)  # another server's
                return
        route_reply = reply
        if reply.startswith(GR_PREFIX):
            reply = self.track_reply(acc.name_b, reply)
        res = acc.sublist.match(subject)
        lq = res.queues
        if lq:
            lq = [g for name, g in zip(res.queue_names, lq, strict=True) if name in queues] if queues else []
        local = _Match(res.plain, lq, res.queue_names, queues)
        routes = server.routes
        if routes is not None:
            _, lq = routes.forward(subject, route_reply, hdr_len, data, local, acc.name_b, queue_filter=queues)
        leafs = server.leafs
        if leafs is not None:  # leaf nodes get it too (queue groups only when named, not served here)
            leafs.forward(subject, reply, hdr_len, data, local, acc.name_b, queue_filter=queues)
        if not res.plain and not lq:
            return
        size_digits = b"%d" % len(data)
        hdr_digits = (b"%d" % hdr_len) if hdr_len > 0 else None
        deliver(server, conn, subject, reply, size_digits, data, hdr_digits, max(hdr_len, 0), res.plain, lq)

    # -- monitoring ---------------------------------------------------------------------------

    def varz(self) -> dict[str, Any]:
        """/varz "gateway" (omitting what nats-server omits when unset)."""
        g = self.gopts
        out: dict[str, Any] = {"name": self.name, "host": g.host or "0.0.0.0", "port": self.port}
        if g.advertise:
            out["advertise"] = g.advertise
        out["auth_timeout"] = _num(self.auth_timeout)
        out["tls_timeout"] = _num(self.tls_timeout)
        if g.tls is not None:
            out["tls_required"] = True
            out["tls_verify"] = True
        if g.connect_retries:
            out["connect_retries"] = g.connect_retries
        configured = [r for r in self.remotes.values() if not r.implicit]  # as nats-server: not implicit ones
        if configured:
            out["gateways"] = [{"name": r.name, "urls": r.url_strings()} for r in configured]
        if g.reject_unknown_cluster:
            out["reject_unknown"] = True
        return out

    def _conn_json(self, c: GatewayConnection, now: datetime, accs: bool) -> dict[str, Any]:
        from pynatsd.monitor import gofmt

        last = max(c._last_in, c._last_out)
        d: dict[str, Any] = {
            "cid": c.gid,
            "kind": "Gateway",
            "ip": c.host,
            "port": c.port,
            "start": c.start,
            "last_activity": datetime.fromtimestamp(last, UTC),
            "rtt": gofmt.rtt_string(c.rtt),
        }
        d.update({
            "uptime": gofmt.uptime((now - c.start).total_seconds()),
            "idle": gofmt.uptime(max(now.timestamp() - last, 0.0)),
            "pending_bytes": c.out_size,
            "in_msgs": c.in_msgs,
            "out_msgs": c.out_msgs,
            "in_bytes": c.in_bytes,
            "out_bytes": c.out_bytes,
            "subscriptions": len(c.subs),
            "name": c.remote_id,
        })
        if c.tls_info:
            d["tls_version"] = c.tls_info.get("version", "")
            d["tls_cipher_suite"] = c.tls_info.get("cipher_suite", "")
        configured = c.outbound and c.remote is not None and not c.remote.implicit
        entry: dict[str, Any] = {"configured": configured, "connection": d}
        if accs:
            names = sorted({a.name_b for a in self.server.accounts.accounts.values()} | set(c.interest))
            rows = []
            for a in names:
                row: dict[str, Any] = {"name": a.decode("utf-8", "replace"), "interest_mode": "Interest-Only",
                                       "interest_only_threshold": 1000}
                nq = sum(1 for k in c.subs if k[0] == a and k[2])
                nplain = sum(1 for k in c.subs if k[0] == a and not k[2])
                if nplain:
                    row["num_subs"] = nplain
                if nq:
                    row["num_queue_subs"] = nq
                rows.append(row)
            entry["accounts"] = rows
        return entry

    def gatewayz(self, query: Any, now: datetime) -> dict[str, Any]:
        accs = str(query.get("accs", "")).lower() in ("1", "true")
        only = str(query.get("gw_name", ""))
        out: dict[str, Any] = {}
        for r in self.remotes.values():
            if only and r.name != only:
                continue
            if r.conn is not None and r.conn.registered:
                out[r.name] = self._conn_json(r.conn, now, accs)
        inb: dict[str, list[dict[str, Any]]] = {}
        for c in self.inbound.values():
            if only and c.name != only:
                continue
            inb.setdefault(c.name, []).append(self._conn_json(c, now, accs))
        return {"name": self.name, "host": self.advertise_host, "port": self.advertise_port,
                "outbound_gateways": out, "inbound_gateways": inb}


def _num(x: float) -> float | int:
    return int(x) if x == int(x) else x


class _Match:
    """A MatchResult view for routes.forward: the local plain subs and the named queue groups."""

    __slots__ = ("plain", "queue_names", "queues")

    def __init__(self, plain: Any, lq: Any, names: Any, only: tuple[bytes, ...]) -> None:
        self.plain = plain
        self.queues = lq
        self.queue_names = [n for n in names if n in only] if only else []


_WATCHED: dict[type, type] = {}


def _watched_class(base: type) -> type:
    """``base`` (the trie class the route/leaf managers installed, or SubjectTrie) also
    reporting interest changes to the gateway manager."""
    cls = _WATCHED.get(base)
    if cls is None:

        class Watched(base):  # type: ignore[misc, valid-type]
            _gw: GatewayManager
            _gw_account: bytes

            def insert(self, subject: bytes, queue: bytes, item: Any) -> None:
                before = self.count()
                super().insert(subject, queue, item)
                if self.count() != before:
                    self._gw.interest_changed(self._gw_account, subject, queue, 1)

            def remove(self, subject: bytes, queue: bytes, item: Any) -> bool:
                removed: bool = super().remove(subject, queue, item)
                if removed:
                    self._gw.interest_changed(self._gw_account, subject, queue, -1)
                return removed

        cls = _WATCHED[base] = Watched
    return cls


def install_interest_hooks(mgr: GatewayManager) -> None:
    """Have every account's trie report local interest changes to ``mgr`` too, on top of what
    the route and leaf managers' tries report (they are created first)."""
    server = mgr.server
    base_factory = server.accounts.make_trie

    def make(acc: Any) -> Any:
        if base_factory is None:
            trie = _watched_class(SubjectTrie)()
        else:
            trie = base_factory(acc)
            trie.__class__ = _watched_class(type(trie))  # same layout: only methods added
        trie._gw = mgr
        trie._gw_account = acc.name_b
        return trie

    server.accounts.set_trie_factory(make)
