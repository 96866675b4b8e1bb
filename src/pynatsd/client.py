"""ClientConnection: one asyncio Protocol per client connection.

It owns the connection's parser, CONNECT options, authentication state, subscriptions, timers
(auth, ping, write deadline) and outbound buffer, and it routes the messages the client
publishes to the other connections' buffers (the router is the short ``_route`` loop here, over
the server's subscription trie).

Hot path: a received chunk is parsed in one call and its ops are handled in a plain loop with no
awaits. Deliveries append pre-built pieces (``MSG <subject> `` + sid + `` [reply] <size>\\r\\n
<payload>\\r\\n``) to the receiver's outbound list; each dirty connection is written once per
event-loop turn by the server's flush callback. A receiver whose pending bytes exceed
max_pending is dropped at once (slow consumer) so one slow client never stalls the others.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pynatsd.accounts import INTERNAL_MARK, Account
from pynatsd.auth import (
    AuthResult,
    BcryptCheck,
    ClientPermissions,
    Credentials,
    normalize_response_permission,
)
from pynatsd.log import TRACE
from pynatsd.protocol import wire
from pynatsd.protocol.parser import (
    OP_CLOSE,
    OP_CONNECT,
    OP_ERR,
    OP_HPUB,
    OP_INFO,
    OP_OK,
    OP_PING,
    OP_PONG,
    OP_PUB,
    OP_PUBS,
    OP_SUB,
    OP_UNSUB,
    ClientParser,
    expand_pubs,
)
from pynatsd.subjects import num_tokens, subject_has_wildcard, valid_subscribe_subject

if TYPE_CHECKING:
    from pynatsd.server import Server

log = logging.getLogger("pynatsd")

# /connz closed reasons (nats-server's spelling)
REASON_CLIENT_CLOSED = "Client Closed"
REASON_AUTH_TIMEOUT = "Authentication Timeout"
REASON_AUTH_FAILURE = "Authentication Failure"
REASON_TLS_FAILURE = "TLS Handshake Failure"
REASON_SLOW_PENDING = "Slow Consumer (Pending Bytes)"
REASON_SLOW_DEADLINE = "Slow Consumer (Write Deadline)"
REASON_WRITE_ERROR = "Write Error"
REASON_READ_ERROR = "Read Error"
REASON_PARSE_ERROR = "Parse Error"
REASON_STALE = "Stale Connection"
REASON_PROTOCOL_VIOLATION = "Protocol Violation"
REASON_BAD_PROTOCOL = "Bad Client Protocol Version"
REASON_MAX_CONNECTIONS = "Maximum Connections Exceeded"
REASON_MAX_SUBS = "Maximum Subscriptions Exceeded"
REASON_MAX_ACCOUNT_CONNECTIONS = "Maximum Account Connections Exceeded"
REASON_SHUTDOWN = "Server Shutdown"
REASON_NO_RESPONDERS_HEADERS = "No Responders Requires Headers"

# First server PING after CONNECT: min(ping_interval, 2s) plus up to 20 % jitter.
FIRST_PING_INTERVAL = 2.0
RTT_MEASUREMENT_INTERVAL = 3600.0
# Outbound transport buffer above which the write-deadline timer runs.
WRITE_HIGH_WATER = 256 * 1024
# How long a publisher stops being read when a subscriber it feeds passes 3/4 of max_pending.
STALL_DELAY = 0.005
# allow_responses entries kept per connection before expired ones are pruned
REPLY_PRUNE_THRESHOLD = 4096

_CRLF = b"\r\n"
_NO_TARGET: tuple[Any, Any, bytes] = (None, None, b"")  # _process: a subject nobody wants
_random = random.random
# Publish subjects and reply subjects clients may not use (nats-server's reserved prefixes).
_RESERVED_PUB = (b"_GR_.", b"$NRG.")
_RESERVED_REPLY = (b"_R_.", b"_GR_.", b"$JS.ACK.")
_OK = b"+OK\r\n"
_PING = b"PING\r\n"
_PONG = b"PONG\r\n"

_BOOL_FIELDS = ("verbose", "pedantic", "tls_required", "echo", "headers", "no_responders", "new_account")
_STR_FIELDS = ("user", "pass", "auth_token", "name", "lang", "version", "nkey", "sig", "jwt", "account")


class Subscription:
    """One SUB of a connection (also the item stored in the server's subject trie).

    ``prefix``/``hprefix`` are the ready ``MSG <subject> <sid> `` / ``HMSG ...`` starts of the
    messages it receives when its subject is literal (the published subject is then its own);
    None for wildcard subscriptions, whose messages carry the published subject.
    """

    __slots__ = ("subject", "queue", "sid", "delivered", "max_msgs", "client", "sid_sp", "prefix", "hprefix")

    def __init__(self, client: ClientConnection, subject: bytes, queue: bytes, sid: bytes) -> None:
        self.client = client
        self.subject = subject
        self.queue = queue
        self.sid = sid
        self.delivered = 0
        self.max_msgs = 0
        self.sid_sp = sid + b" "
        self.prefix: bytes | None = None
        self.hprefix: bytes | None = None
        if not subject_has_wildcard(subject):
            self.prefix = b"MSG " + subject + b" " + self.sid_sp
            self.hprefix = b"H" + self.prefix

    def __repr__(self) -> str:
        return f"<Subscription {self.subject!r} q={self.queue!r} sid={self.sid!r} cid={self.client.cid}>"


def _parse_connect(raw: bytes) -> dict[str, Any] | None:
    """CONNECT JSON read like Go's encoding/json into nats-server's struct: keys matched
    case-insensitively (last one wins), null ignored, wrong types rejected (None)."""
    try:
        doc = json.loads(raw.decode("utf-8", "replace"))
    except ValueError:
        return None
    if doc is None:  # JSON null unmarshals into a struct as a no-op
        return {}
    if not isinstance(doc, dict):
        return None
    out: dict[str, Any] = {}
    for key, value in doc.items():
        k = key.lower()
        if value is None:
            continue
        if k in _BOOL_FIELDS:
            if not isinstance(value, bool):
                return None
        elif k in _STR_FIELDS:
            if not isinstance(value, str):
                return None
        elif k == "protocol":
            if isinstance(value, bool) or not isinstance(value, int):
                return None
        else:
            continue
        out[k] = value
    return out


def _conn_label(version: str, lang: str, name: str) -> str:
    parts = [p for p in (f"v{version}" if version else "", lang, name) if p]
    return ":".join(parts)


def shut_transports(transport: Any, raw: Any, *, flush: bool) -> None:
    """End a connection's transports: close (after what is queued) or abort; when TLS runs over a
    raw transport, an abort ends the raw one too. Client, route, leaf and gateway connections."""
    if transport is None:
        if raw is not None:
            raw.abort()
        return
    try:
        if flush:
            transport.close()
        else:
            transport.abort()
    except Exception:  # noqa: BLE001 - already gone
        pass
    if transport is not raw and raw is not None and not flush:
        try:
            raw.abort()
        except Exception:  # noqa: BLE001
            pass


class PrefixedLog:
    """Log lines prefixed with a server-to-server connection's ``_ncs`` ("ip:port - rid:N"):
    route, leaf and gateway connections. Debug and trace lines are skipped before formatting
    when those levels are off."""

    _ncs: str

    def debug(self, msg: str) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s - %s", self._ncs, msg)

    def notice(self, msg: str) -> None:
        log.info("%s - %s", self._ncs, msg)

    def warn(self, msg: str) -> None:
        log.warning("%s - %s", self._ncs, msg)

    def error(self, msg: str) -> None:
        log.error("%s - %s", self._ncs, msg)

    def trace(self, msg: str) -> None:
        if log.isEnabledFor(TRACE):
            log.log(TRACE, "%s - %s", self._ncs, msg)


class ConnectionViews:
    """Monitoring views shared by client and route connections (both keep an outbound list of
    ``out_size`` bytes, a transport, and the times of their last read and write)."""

    transport: Any
    closed: bool
    out_size: int
    _last_in: float
    _last_out: float

    @property
    def last_activity(self) -> datetime:
        return datetime.fromtimestamp(max(self._last_in, self._last_out), UTC)

    @property
    def pending_bytes(self) -> int:
        t = self.transport
        buffered = 0
        if t is not None and not self.closed:
            try:
                buffered = t.get_write_buffer_size()
            except Exception:  # noqa: BLE001 - a closing transport may refuse
                buffered = 0
        return self.out_size + buffered


class ClientConnection(ConnectionViews, asyncio.Protocol):
    """A client connection (see the module docstring)."""

    # Defaults every connection shares until it sets its own: a new connection stores only
    # what differs (immutable values only; dicts and lists are made per connection).
    cid = 0
    host = ""
    port = 0
    rtt: float | None = None
    _rtt_start = 0.0
    pings_out = 0
    in_msgs = 0
    out_msgs = 0
    in_bytes = 0
    out_bytes = 0
    name = ""
    lang = ""
    version = ""
    user: str | None = None
    account = "$G"
    auth: AuthResult | None = None
    auth_method: str | None = None
    perms: ClientPermissions | None = None
    creds = Credentials()
    nonce: str | None = None  # (nkeys helper N) sent in the first INFO when nkey users exist
    tls_info: dict[str, Any] | None = None
    tls_first = False
    closed = False
    closed_reason: str | None = None
    stop: datetime | None = None
    verbose = True
    pedantic = True
    echo = True
    headers = False
    no_responders = False
    protocol = 0
    connected = False  # a CONNECT was accepted
    fast = False  # see update_fast_path
    _connect_received = False
    _opt_headers = False  # CONNECT "headers" as sent (effective: self.headers)
    authenticated = False
    first_pong_sent = False
    transport: Any = None  # where we write: the socket, or the TLS wrapper over it
    raw_transport: Any = None
    out_size = 0
    wbuf = 0  # transport write-buffer size after the last flush
    _written = 0  # bytes handed to the transport in total
    _wd_sent = 0  # _sent_estimate() when the write-deadline timer was armed
    dirty = False
    stall = False  # a receiver of this connection's messages is filling up
    _stalled: asyncio.TimerHandle | None = None
    replies: dict[bytes, list[float]] | None = None
    _auth_timer: asyncio.TimerHandle | None = None
    _ping_timer: asyncio.TimerHandle | None = None
    _wd_timer: asyncio.TimerHandle | None = None
    _backlog: list[tuple[Any, ...]] | None = None
    _reading = False  # set once bytes may be handed to the parser (after TLS setup)
    _pending_tls_data = b""
    _sniff = False  # allow_non_tls: the first byte decides TLS or plaintext
    _fallback_wait = False  # handshake_first with a fallback delay, still waiting
    _ncs = ""  # log prefix "ip:port - cid:N"

    def __init__(self, server: Server) -> None:
        self.server = server
        opts = server.opts
        self.start = datetime.now(UTC)
        self._last_in = time.time()
        self._last_out = self._last_in
        self.subs: dict[bytes, Subscription] = {}
        self.acc: Account = server.gacc  # (accounts helper A) whose subject space this client is in
        self.parser = ClientParser(opts.max_control_line, opts.max_payload)
        # The parser stops after each CONNECT (the rest waits in it, see _feed) so the CONNECT is
        # applied first: HPUB is allowed from the op after a CONNECT that negotiated headers
        # (_connect_finish sets parser.headers), and closes silently before, as in nats-server.
        self.parser.stop_after_connect = True
        self.parser.runs = True  # runs of same-line PUBs come as OP_PUBS (_process, _pub_run)
        self.out: list[bytes] = []
        self.max_pending = opts.max_pending
        self.stall_at = opts.max_pending * 3 // 4  # fast-producer stall threshold
        self._connect_fields: dict[str, Any] = {}

    # -- monitoring views --------------------------------------------------------------------

    @property
    def kind(self) -> str:
        return "Client"

    def __repr__(self) -> str:
        return f"<ClientConnection cid={self.cid} {self.host}:{self.port}>"

    # -- logging -----------------------------------------------------------------------------

    def _prefix(self) -> str:
        label = _conn_label(self.version, self.lang, self.name)
        return f'{self._ncs} - "{label}"' if label else self._ncs

    def debug(self, msg: str) -> None:
        if log.isEnabledFor(logging.DEBUG):  # _prefix() is not free, and most servers run at INFO
            log.debug("%s - %s", self._prefix(), msg)

    def notice(self, msg: str) -> None:
        log.info("%s - %s", self._prefix(), msg)

    def warn(self, msg: str) -> None:
        log.warning("%s - %s", self._prefix(), msg)

    def error(self, msg: str) -> None:
        log.error("%s - %s", self._prefix(), msg)

    def trace(self, msg: str) -> None:
        if log.isEnabledFor(TRACE):
            log.log(TRACE, "%s - %s", self._prefix(), msg)

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        server = self.server
        self.raw_transport = transport
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.host, self.port = str(peer[0]), int(peer[1])
            if self.host.startswith("::ffff:") and "." in self.host:
                self.host = self.host[7:]  # an IPv4 client on the dual-stack listener
        self.cid = server.next_cid()
        self._ncs = f"{self.host}:{self.port} - cid:{self.cid}" if ":" not in self.host else f"[{self.host}]:{self.port} - cid:{self.cid}"
        try:
            transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)  # type: ignore[attr-defined]
        except (AttributeError, NotImplementedError):
            pass
        self.debug("Client connection created")
        if not server.accepting_client(self):
            return
        tls = server.tls
        if tls is not None and server.tls_handshake_first is True:
            self._start_tls(b"", first=True)
            return
        if tls is not None and isinstance(server.tls_handshake_first, float) and server.tls_handshake_first > 0:
            # wait a little for a ClientHello; with none, go on as an INFO-first connection
            self._reading = False
            self._auth_timer = server.loop.call_later(server.tls_handshake_first, self._tls_first_fallback)
            self._fallback_wait = True
            return
        self._after_accept()

    def _after_accept(self) -> None:
        """Send INFO, then either start TLS (required), wait to sniff (allow_non_tls), or read."""
        server = self.server
        self._send_info_now()
        if not server.register_client(self):
            return
        tls = server.tls
        if tls is not None and server.tls_required:
            self._start_tls(b"", first=False)
            return
        if tls is not None:  # TLS available: the first byte decides
            self._sniff = True
        self._begin_session()

    def _tls_first_fallback(self) -> None:
        self._auth_timer = None
        if self.closed or not self._fallback_wait:
            return
        self._fallback_wait = False
        self._after_accept()

    def _begin_session(self) -> None:
        """Plain (or TLS-established) connection ready for protocol: timers and reading."""
        server = self.server
        self._reading = True
        auth = server.authorizer
        if auth.required:
            if not auth.anonymous_ops:
                self.parser.expect_connect = True
            if self._auth_timer is not None:
                self._auth_timer.cancel()
            self._auth_timer = server.loop.call_later(auth.timeout, self._auth_timeout)
        self._set_ping_timer(server.opts.ping_interval)
        if self._pending_tls_data:
            data, self._pending_tls_data = self._pending_tls_data, b""
            self.data_received(data)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if not self._reading:
            if self._fallback_wait:
                # handshake_first with a fallback delay: bytes arrived in time, so TLS first
                self._fallback_wait = False
                if self._auth_timer is not None:
                    self._auth_timer.cancel()
                    self._auth_timer = None
                self._start_tls(data, first=True)
                return
            self._pending_tls_data += data
            return
        if self._sniff:
            self._sniff = False
            from pynatsd.tls.transport import looks_like_tls

            if looks_like_tls(data):
                self._reading = False
                if self._auth_timer is not None:
                    self._auth_timer.cancel()
                    self._auth_timer = None
                self._start_tls(data, first=False)
                return
        self._last_in = time.time()
        self._feed(data)
        if self.dirty:
            # This connection's own answers (PONG, +OK, -ERR, INFO) go out now rather than at the
            # end of the loop turn: the client is waiting for them, and other connections' events
            # in the same turn (a TLS handshake costs a few hundred µs) should not delay them.
            # What this chunk delivered to other connections is still written once per turn.
            self.flush()

    def _feed(self, data: bytes) -> None:
        """Parse and handle received bytes, including what the parser held after a CONNECT."""
        parser = self.parser
        try:
            if self._backlog is not None:
                parser.hold(data)  # a CONNECT waits on bcrypt: parsed once it is decided
                return
            ops = parser.feed(data)
            while True:
                if ops:
                    self._process(ops, 0)
                if not parser.held or self.closed or self._backlog is not None:
                    break
                ops = parser.feed(b"")
            if self.stall and not self.closed:
                self._stall_reading()
        except Exception as e:  # a fault handling one connection closes only that connection
            log.error("%s - Internal error: %r", self._prefix(), e, exc_info=log.isEnabledFor(logging.DEBUG))
            self.close(REASON_PROTOCOL_VIOLATION, flush=False)

    def _stall_reading(self) -> None:
        """Fast-producer stall: stop reading this publisher for a few ms (others keep going)."""
        self.stall = False
        if self._stalled is not None:
            return
        try:
            self.raw_transport.pause_reading()
        except Exception:  # noqa: BLE001 - closing
            return
        self._stalled = self.server.loop.call_later(STALL_DELAY, self._unstall)

    def _unstall(self) -> None:
        self._stalled = None
        if not self.closed and self._backlog is None:
            try:
                self.raw_transport.resume_reading()
            except Exception:  # noqa: BLE001
                pass

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self.close(REASON_READ_ERROR if exc is not None else REASON_CLIENT_CLOSED, flush=False)

    def pause_writing(self) -> None:
        """The transport's buffer passed its high-water mark: the socket is not keeping up.
        If it then makes no progress at all for write_deadline, the client is a slow consumer."""
        if self.closed or self._wd_timer is not None:
            return
        wd = self.server.opts.write_deadline
        if wd > 0:
            self._wd_sent = self._sent_estimate()
            self._wd_timer = self.server.loop.call_later(wd, self._write_deadline_expired)

    def _sent_estimate(self) -> int:
        """Bytes the socket has taken so far (written to the transport minus still buffered)."""
        try:
            buffered = self.transport.get_write_buffer_size()
        except Exception:  # noqa: BLE001
            buffered = 0
        return self._written - buffered

    def resume_writing(self) -> None:
        if self._wd_timer is not None:
            self._wd_timer.cancel()
            self._wd_timer = None

    # -- TLS -----------------------------------------------------------------------------------

    def _start_tls(self, initial: bytes, *, first: bool) -> None:
        from pynatsd.tls.transport import start_tls

        server = self.server
        assert server.tls is not None
        if not server.tls_rate_allow():
            self.send_err(wire.ERR_CONNECTION_THROTTLED)
            self.close(REASON_MAX_CONNECTIONS)
            return
        self._reading = False
        self.tls_first = first
        self.debug("Starting TLS client connection handshake")

        def done(tls_transport: Any, err: str | None) -> None:
            if self.closed:
                return
            if tls_transport is None:
                # (helper T) one line naming peer, reason and listener, rate-limited per listener
                from pynatsd.tls.failures import client_handshake_failed

                client_handshake_failed(server, self._prefix(), err or "handshake failure")
                self.close(REASON_TLS_FAILURE, flush=False)
                return
            self.transport = tls_transport
            try:
                # peer certificates are worked out when /connz lists them (tls_peer_certs)
                self.tls_info = tls_transport.tls_summary()
            except Exception:  # noqa: BLE001 - informational only
                self.tls_info = None
            if log.isEnabledFor(logging.DEBUG):
                self.debug("TLS handshake complete")
                if self.tls_info and self.tls_info.get("version"):
                    self.debug(f"TLS version {self.tls_info.get('version')}, cipher suite {self.tls_info.get('cipher_suite')}")
            if first:
                self._send_info_now()
                if not server.register_client(self):
                    return
            self._begin_session()

        start_tls(
            self.raw_transport,
            server.tls,
            self,
            timeout=server.opts.tls.timeout if server.opts.tls is not None else 2.0,
            on_done=done,
            initial_data=initial,
        )

    # -- output --------------------------------------------------------------------------------

    def _send_info_now(self) -> None:
        if self.nonce is None and self.server.authorizer.nonce_required:
            from pynatsd.nkeys_auth import make_nonce

            self.nonce = make_nonce()
        self.enqueue(self.server.info_for(self, nonce=self.nonce))
        self.flush()

    def enqueue(self, data: bytes) -> None:
        """Queue bytes for this connection; written at the end of the event-loop turn."""
        if self.closed:
            return
        self.out.append(data)
        self.out_size += len(data)
        if not self.dirty:
            self.dirty = True
            self.server.mark_dirty(self)

    def send_err(self, text: str) -> None:
        if self.server.trace:
            self.trace(f"->> [-ERR {text}]")
        self.enqueue(wire.err_line(text))

    def flush(self) -> None:
        """Write everything queued (one write per call)."""
        self.dirty = False
        out = self.out
        if not out or self.closed or self.transport is None:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        self.out_size = 0
        self._last_out = time.time()
        t = self.transport
        try:
            t.write(data)
            self._written += len(data)
            self.wbuf = t.get_write_buffer_size()
        except Exception as e:  # noqa: BLE001 - any transport failure is a write error
            self.debug(f"Error flushing: {e}")
            self.close(REASON_WRITE_ERROR, flush=False)

    def _pending_high(self, producer: ClientConnection) -> None:
        """out_size + wbuf passed 3/4 of max_pending: refresh the transport's buffer size; over
        max_pending the connection is a slow consumer and dropped at once, otherwise the
        producer is stalled briefly so a subscriber that does read can catch up."""
        t = self.transport
        try:
            self.wbuf = t.get_write_buffer_size() if t is not None else 0
        except Exception:  # noqa: BLE001
            self.wbuf = 0
        pending = self.out_size + self.wbuf
        if pending > self.max_pending:
            self.server.stats.slow_consumers += 1
            self.notice(f"Slow Consumer Detected: MaxPending of {self.max_pending} Exceeded")
            self.close(REASON_SLOW_PENDING, flush=False)
        elif pending > self.stall_at and producer is not self:
            producer.stall = True

    def _write_deadline_expired(self) -> None:
        self._wd_timer = None
        if self.closed:
            return
        sent = self._sent_estimate()
        if sent > self._wd_sent:
            # slow but moving: give it another write_deadline (max_pending still bounds it)
            self._wd_sent = sent
            self._wd_timer = self.server.loop.call_later(self.server.opts.write_deadline, self._write_deadline_expired)
            return
        self.server.stats.slow_consumers += 1
        wd = self.server.opts.write_deadline
        self.notice(f"Slow Consumer Detected: WriteDeadline of {wd:g}s exceeded with {self.pending_bytes} total bytes pending")
        self.close(REASON_SLOW_DEADLINE, flush=False)

    # -- closing -------------------------------------------------------------------------------

    def close(self, reason: str, err: str | None = None, flush: bool = True) -> None:
        """Close the connection: optional -ERR, flush (unless told not to), unregister."""
        if self.closed:
            return
        if err is not None:
            self.send_err(err)
        if flush:
            self.flush()
        self.closed = True
        self.closed_reason = reason
        self.stop = datetime.now(UTC)
        for timer in (self._auth_timer, self._ping_timer, self._wd_timer, self._stalled):
            if timer is not None:
                timer.cancel()
        self._auth_timer = self._ping_timer = self._wd_timer = self._stalled = None
        self._backlog = None
        self.out.clear()
        self.out_size = 0
        shut_transports(self.transport, self.raw_transport, flush=flush)
        sublist = self.acc.sublist
        for sub in self.subs.values():
            sublist.remove(sub.subject, sub.queue, sub)
        self.debug(f"Client connection closed: {reason}")
        self.server.client_closed(self)

    # -- timers ----------------------------------------------------------------------------------

    def _auth_timeout(self) -> None:
        self._auth_timer = None
        if self.closed or self.authenticated:
            return
        self.debug("Authentication Timeout")
        self.close(REASON_AUTH_TIMEOUT, wire.ERR_AUTH_TIMEOUT)

    def _set_ping_timer(self, delay: float) -> None:
        if self._ping_timer is not None:
            self._ping_timer.cancel()
        self._ping_timer = self.server.loop.call_later(delay, self._ping_tick)

    def _ping_tick(self) -> None:
        self._ping_timer = None
        if self.closed:
            return
        opts = self.server.opts
        interval = opts.ping_interval
        now = time.time()
        need_rtt = self.rtt is None or now - self._rtt_start > RTT_MEASUREMENT_INTERVAL
        if not need_rtt and now - self._last_in < interval:
            self._set_ping_timer(interval)
            return
        if self.pings_out + 1 > opts.ping_max:
            self.server.stats.stale_connections += 1
            self.debug("Stale Client Connection - Closing")
            self.close(REASON_STALE, wire.ERR_STALE)
            return
        self.pings_out += 1
        self._rtt_start = now
        if self.server.trace:
            self.trace("->> [PING]")
        self.enqueue(_PING)
        self._set_ping_timer(interval)

    # -- op processing ---------------------------------------------------------------------------

    def update_fast_path(self) -> None:
        """PUBs take the short path in _process when nothing per-message applies: the client
        is authenticated, has no permissions, is not verbose, and messages stay local."""
        server = self.server
        self.fast = (
            (self.authenticated or not server.authorizer.required)
            and self.perms is None
            and not self.verbose
            and getattr(server, "routes", None) is None
            and getattr(server, "leafs", None) is None
            and getattr(server, "gateways", None) is None
            and self.acc.service_imports is None
        )

    def _process(self, ops: list[tuple[Any, ...]], i: int) -> None:
        server = self.server
        trace = server.trace
        fast = self.fast and not trace
        match = self.acc.sublist.match
        n = len(ops)
        nmsgs = 0
        nbytes = 0
        nout = 0
        nout_bytes = 0
        # Where reply-less PUBs to a subject went in this chunk when that was decided on the fast
        # path and was the one plain subscription (sub, connection, MSG prefix) or nowhere
        # (_NO_TARGET): the next such PUB goes the same way without the checks and the match.
        # Anything that could change a decision clears it: any other op, a run, a delivery that
        # took the general path, a receiver passing its stall threshold.
        memo: dict[bytes, tuple[Any, Any, bytes]] = {}
        try:
            while i < n:
                op = ops[i]
                i += 1
                kind = op[0]
                if kind == OP_PUB:
                    subject = op[1]
                    reply = op[2]
                    if not reply:
                        m = memo.get(subject)
                        if m is not None:
                            data = op[4]
                            size = len(data)
                            nmsgs += 1
                            nbytes += size
                            sub, c, prefix = m
                            if c is None:
                                continue  # no interest
                            tail = b"".join((op[3], _CRLF, data, _CRLF))
                            out = c.out
                            out.append(prefix)
                            out.append(tail)
                            c.out_size += len(prefix) + len(tail)
                            c.out_msgs += 1
                            c.out_bytes += size
                            sub.delivered += 1
                            nout += 1
                            nout_bytes += size
                            if not c.dirty:
                                c.dirty = True
                                server.mark_dirty(c)
                            if c.out_size + c.wbuf > c.stall_at:
                                c._pending_high(self)
                                memo.clear()
                            continue
                    if (
                        fast
                        and not subject.startswith(_RESERVED_PUB)
                        and not (reply and reply.startswith(_RESERVED_REPLY))
                        and (not self.pedantic or server.pub_subject_ok(subject))
                    ):
                        data = op[4]
                        size = len(data)
                        nmsgs += 1
                        nbytes += size
                        r = match(subject)
                        plain = r.plain
                        queues = r.queues
                        sub = None
                        if queues:
                            if not plain and len(queues) == 1:
                                group = queues[0]
                                sub = group[int(_random() * len(group))]
                        elif len(plain) == 1:
                            sub = plain[0]
                        if sub is not None:
                            # the commonest cases, inlined: one plain subscription, or a random
                            # member of one queue group, on a connection without permissions
                            # (anything else goes through deliver())
                            c = sub.client
                            if (
                                c.perms is None
                                and not c.closed
                                and not sub.max_msgs
                                and (c is not self or self.echo)
                            ):
                                prefix = sub.prefix
                                if prefix is None:  # a wildcard subscription
                                    prefix = b"MSG " + subject + b" " + sub.sid_sp
                                if reply:
                                    tail = b"".join((reply, b" ", op[3], _CRLF, data, _CRLF))
                                else:
                                    tail = b"".join((op[3], _CRLF, data, _CRLF))
                                out = c.out
                                out.append(prefix)
                                out.append(tail)
                                c.out_size += len(prefix) + len(tail)
                                c.out_msgs += 1
                                c.out_bytes += size
                                sub.delivered += 1
                                nout += 1
                                nout_bytes += size
                                if not c.dirty:
                                    c.dirty = True
                                    server.mark_dirty(c)
                                if c.out_size + c.wbuf > c.stall_at:
                                    c._pending_high(self)
                                    memo.clear()
                                elif not reply and not queues:
                                    memo[subject] = (sub, c, prefix)
                                continue
                        elif not plain and not queues:
                            if not reply:
                                memo[subject] = _NO_TARGET
                            elif self.no_responders:
                                self._send_no_responders(subject, reply)
                            continue
                        if plain or queues:
                            got = deliver(server, self, subject, reply, op[3], data, None, 0, plain, queues)
                            memo.clear()  # deliver() may have dropped a receiver or a subscription
                            if got:
                                continue
                        if reply and self.no_responders:
                            self._send_no_responders(subject, reply)
                        continue
                    if trace:
                        self._trace_in("PUB", subject, reply, op[3], payload=op[4])
                    self._publish(subject, reply, op[3], op[4], None, 0, None)
                    memo.clear()
                elif kind == OP_PUBS:
                    # a run of PUBs with one control line (see the parser): whole, or one by one
                    memo.clear()
                    subject = op[1]
                    reply = op[2]
                    if not (
                        fast
                        and not subject.startswith(_RESERVED_PUB)
                        and not (reply and reply.startswith(_RESERVED_REPLY))
                        and (not self.pedantic or server.pub_subject_ok(subject))
                        and self._pub_run(op)
                    ):
                        self._process(expand_pubs(op), 0)
                else:
                    memo.clear()
                    self._process_other(op, kind, trace)
                    fast = self.fast and not trace  # a CONNECT may have changed it
                    match = self.acc.sublist.match  # ... and the account
                    if self._backlog is not None and not self.closed:
                        # authentication waits on bcrypt: park the rest until it is decided
                        self._backlog = list(ops[i:])
                        return
                if self.closed:
                    return
        finally:
            if nmsgs:
                self.in_msgs += nmsgs
                self.in_bytes += nbytes
                stats = server.stats
                stats.in_msgs += nmsgs
                stats.in_bytes += nbytes
                stats.out_msgs += nout
                stats.out_bytes += nout_bytes

    def _pub_run(self, op: tuple[Any, ...]) -> bool:
        """Deliver an OP_PUBS run on the fast path without going message by message: one match;
        plain subscribers that take every message get all of the run's MSG frames as one bytes
        object each; a single queue group gets a random member per message and one bytes object
        per member. False (nothing done) when the run needs the per-message
        path (permissions, auto-unsubscribe, echo off, several queue groups, ...)."""
        _, subject, reply, _szb, header, frames, count = op
        server = self.server
        r = self.acc.sublist.match(subject)
        plain = r.plain
        queues = r.queues
        echo = self.echo
        if queues:
            if plain or len(queues) > 1:
                return False
            targets = queues[0]
        else:
            targets = plain
        flen = len(frames)
        f = flen // count
        size = f - len(header) - 2
        # "PUB <subject> " off a frame leaves "[reply ]size\r\npayload\r\n": the MSG frame's
        # tail, which follows the subscription's "MSG <subject> <sid> " prefix
        skip = len(subject) + 5
        tl = f - skip
        # Per-message checks that cannot change during the run must pass for all of it; a
        # receiver that would pass its stall threshold goes message by message (exact stall and
        # slow-consumer behaviour); two receivers on one connection need per-message
        # interleaving in its stream.
        for sub in targets:
            c = sub.client
            if (
                c.perms is not None
                or c.closed
                or sub.max_msgs
                or (c is self and not echo)
                or c.out_size + c.wbuf + count * (skip + len(sub.sid_sp) + tl) > c.stall_at
            ):
                return False
        if len(targets) > 1 and len({sub.client for sub in targets}) != len(targets):
            return False
        nbytes = size * count
        self.in_msgs += count
        self.in_bytes += nbytes
        stats = server.stats
        stats.in_msgs += count
        stats.in_bytes += nbytes
        if not targets:
            if reply and self.no_responders:
                for _ in range(count):
                    self._send_no_responders(subject, reply)
            return True
        delivered = 0
        if queues:
            n = len(targets)
            per: list[list[bytes]] = [[] for _ in range(n)]
            for j in range(skip, flen, f):
                per[int(_random() * n)].append(frames[j : j + tl])
            batches = [(sub, tails) for sub, tails in zip(targets, per, strict=True) if tails]
        else:
            tails = [frames[j : j + tl] for j in range(skip, flen, f)]
            batches = [(sub, tails) for sub in targets]
        for sub, tails in batches:
            c = sub.client
            prefix = sub.prefix
            if prefix is None:  # a wildcard subscription
                prefix = b"MSG " + subject + b" " + sub.sid_sp
            msgs = prefix + prefix.join(tails)
            m = len(tails)
            c.out.append(msgs)
            c.out_size += len(msgs)
            c.out_msgs += m
            c.out_bytes += size * m
            sub.delivered += m
            delivered += m
            if not c.dirty:
                c.dirty = True
                server.mark_dirty(c)
        stats.out_msgs += delivered
        stats.out_bytes += delivered * size
        return True

    def _process_other(self, op: tuple[Any, ...], kind: int, trace: bool) -> None:
        if kind == OP_HPUB:
            if not self.headers:
                self.close(REASON_PROTOCOL_VIOLATION)
                return
            if trace:
                self._trace_in("HPUB", op[1], op[2], op[3], op[4], payload=op[6])
            self._publish(op[1], op[2], op[4], op[6], op[3], op[5], None)
        elif kind == OP_SUB:
            if trace:
                self._trace_in("SUB", op[1], op[2], op[3])
            self._subscribe(op[1], op[2], op[3])
        elif kind == OP_PING:
            if trace:
                self.trace("<<- [PING]")
            self._ping()
        elif kind == OP_PONG:
            if trace:
                self.trace("<<- [PONG]")
            self._pong()
        elif kind == OP_UNSUB:
            if trace:
                self.trace(f"<<- [UNSUB {op[1].decode('utf-8', 'replace')}{' ' + str(op[2]) if op[2] else ''}]")
            self._unsubscribe(op[1], op[2])
        elif kind == OP_CONNECT:
            if trace:
                self.trace(f"<<- [CONNECT {_redact_connect(op[1])}]")
            if self._connect(op[1]) and not self.closed:
                self._backlog = []  # filled by _process with the ops after this CONNECT
        elif kind == OP_CLOSE:
            err, reason = op[1], op[2]
            if err is not None:
                if reason == REASON_PROTOCOL_VIOLATION:
                    self.error("Client parser ERROR")
                elif reason == REASON_AUTH_FAILURE:
                    self.error("authentication error")
                else:
                    self.error(err)
            self.close(reason, err)
            return
        elif kind == OP_INFO:
            try:
                json.loads(op[1].decode("utf-8", "replace"))
            except ValueError:
                self.close(REASON_PROTOCOL_VIOLATION)
                return
        elif kind == OP_OK:
            pass
        elif kind == OP_ERR:
            self.error(f"Client Error {op[1].decode('utf-8', 'replace')}")
            self.close(REASON_PARSE_ERROR, flush=True)
            return

    def _trace_in(self, name: str, *args: bytes, payload: bytes | None = None) -> None:
        parts = [a.decode("utf-8", "replace") for a in args if a]
        self.trace(f"<<- [{name} {' '.join(parts)}]")
        if payload is not None:
            self.trace(f"<<- MSG_PAYLOAD: [{_trace_payload(payload, self.server.opts.max_traced_msg_len)}]")

    def _require_auth(self) -> bool:
        """Before CONNECT with auth required: only no_auth_user lets ops through."""
        auth = self.server.authorizer
        if not auth.required or self.authenticated:
            return True
        if auth.anonymous_ops:
            result = auth.authenticate(Credentials())
            if isinstance(result, AuthResult):
                self._apply_auth(result)
                return True
        self.error("authentication error")
        self.close(REASON_AUTH_FAILURE, wire.ERR_AUTH_VIOLATION)
        return False

    # CONNECT ------------------------------------------------------------------------------------

    def _connect(self, raw: bytes) -> bool:
        """Handle CONNECT. Returns True when the decision waits on a bcrypt check."""
        server = self.server
        # every CONNECT re-arms the first (RTT-measuring) server PING
        interval = server.opts.ping_interval
        first = min(interval, FIRST_PING_INTERVAL)
        self._set_ping_timer(first + random.random() * first * 0.2)
        fields = _parse_connect(raw)
        if fields is None:
            self.close(REASON_PROTOCOL_VIOLATION)
            return False
        first_connect = not self._connect_received
        self._connect_received = True
        self.rtt = max(time.time() - self.start.timestamp(), 0.0)  # first estimate
        g = fields.get
        self.verbose = g("verbose", self.verbose)
        self.pedantic = g("pedantic", self.pedantic)
        self.echo = g("echo", self.echo)
        self._opt_headers = g("headers", self._opt_headers)
        self.headers = self._opt_headers and server.headers_supported
        self.no_responders = g("no_responders", self.no_responders)
        self.protocol = g("protocol", self.protocol)
        self.name = g("name", self.name)
        self.lang = g("lang", self.lang)
        self.version = g("version", self.version)
        self.creds = Credentials(
            user=g("user", self.creds.user),
            password=g("pass", self.creds.password),
            token=g("auth_token", self.creds.token),
            nkey=g("nkey", self.creds.nkey),
            jwt=g("jwt", self.creds.jwt),
            sig=g("sig", self.creds.sig),
            nonce=self.nonce,
        )
        self._connect_fields = fields
        if not first_connect:
            # a later CONNECT drops the subscriptions made so far (nats-server clears them
            # because the client may move to another account)
            for sub in list(self.subs.values()):
                self.remove_sub(sub)
        auth = server.authorizer
        map_users = server.tls_map_users  # only then is the certificate needed (not free to get)
        # (scenarios2) nats-server says at -D when a mapped client sent more than its certificate
        many = self._peer_cert_count() if map_users and log.isEnabledFor(logging.DEBUG) else 1
        decision = auth.authenticate(
            self.creds, self.peer_cert() if map_users else None, map_users=map_users, debug=self.debug,
            peer_certs=many,
        )
        if isinstance(decision, BcryptCheck):
            check = decision
            transport = self.raw_transport
            try:
                transport.pause_reading()
            except Exception:  # noqa: BLE001
                pass
            fut = server.loop.run_in_executor(None, check.verify)
            fut.add_done_callback(self._bcrypt_done)
            return True
        self._connect_finish(decision)
        return False

    def _bcrypt_done(self, fut: asyncio.Future[AuthResult | None]) -> None:
        if self.closed:
            return
        try:
            result = fut.result()
        except Exception:  # noqa: BLE001 - a failed check is a refusal
            result = None
        backlog = self._backlog or []
        self._backlog = None
        try:
            self.raw_transport.resume_reading()
        except Exception:  # noqa: BLE001
            pass
        self._connect_finish(result)
        if not self.closed and backlog:
            self._process(backlog, 0)
        if not self.closed and self._backlog is None and self.parser.held:
            self._feed(b"")

    def _connect_finish(self, result: AuthResult | None) -> None:
        server = self.server
        fields = self._connect_fields
        if server.authorizer.required and result is None:
            who = self._auth_user_label()
            self.error(f"authentication error - {who}" if who else "authentication error")
            # (nkeys helper N) as nats-server, /connz shows whom the refused CONNECT claimed to be
            creds = self.creds
            self.user = creds.nkey or creds.user or ("[REDACTED]" if creds.token else None)
            self.close(REASON_AUTH_FAILURE, wire.ERR_AUTH_VIOLATION)
            return
        if result is not None:
            self._apply_auth(result)
            if self.closed:  # (accounts) the account's connection limit
                return
        if fields.get("account") or fields.get("new_account"):
            self.close(REASON_AUTH_FAILURE, wire.ERR_AUTH_VIOLATION)
            return
        if self.protocol not in (0, 1):
            self.close(REASON_BAD_PROTOCOL, wire.ERR_INVALID_PROTOCOL)
            return
        if self.no_responders and not self.headers:
            self.close(REASON_NO_RESPONDERS_HEADERS, wire.ERR_NO_RESPONDERS_HEADERS)
            return
        self.parser.headers = self.headers
        if self.verbose:
            self.enqueue(_OK)
        self.connected = True
        self.update_fast_path()

    def _auth_user_label(self) -> str:
        """Who the CONNECT claimed to be, for log lines (secrets redacted)."""
        creds = self.creds
        if creds.nkey:
            return f"Nkey {wire.go_quote(creds.nkey)}"
        if creds.user:
            return f"User {wire.go_quote(creds.user)}"
        if creds.token:
            return 'Token "[REDACTED]"'
        return ""

    def _apply_auth(self, result: AuthResult) -> None:
        self.auth = result
        self.authenticated = True
        self.auth_method = result.method
        self.user = result.username
        self.account = result.account
        if not self._join_account(result.account):
            return
        self.perms = result.permissions
        if self.perms is not None and self.perms.responses is not None:
            self.replies = {}
        else:
            self.replies = None
        if self._auth_timer is not None:
            self._auth_timer.cancel()
            self._auth_timer = None
        self.update_fast_path()

    def _join_account(self, name: str) -> bool:
        """Bind the connection to account ``name`` (its subscriptions move with it). False (and
        the connection closed) when the account has all the connections its limit allows."""
        new = self.server.accounts.get(name) or self.server.gacc
        old = self.acc
        mc = new.opts.max_connections
        if mc >= 0 and self not in new.clients and len(new.clients) >= mc:
            self.error(wire.ERR_MAX_ACCOUNT_CONNECTIONS)
            self.close(REASON_MAX_ACCOUNT_CONNECTIONS, wire.ERR_MAX_ACCOUNT_CONNECTIONS)
            return False
        if new is not old:
            old.clients.discard(self)
            for sub in self.subs.values():
                old.sublist.remove(sub.subject, sub.queue, sub)
                new.sublist.insert(sub.subject, sub.queue, sub)
            self.acc = new
        new.clients.add(self)
        self.parser.max_payload = self.max_payload()
        return True

    def max_payload(self) -> int:
        """The server's max_payload, or the account's when that is lower."""
        mp = self.server.opts.max_payload
        amp = self.acc.opts.max_payload if self.acc is not None else -1
        return amp if 0 <= amp < mp else mp

    def tls_peer_certs(self) -> list[dict[str, str]]:
        """The /connz ``tls_peer_certs`` entries of an open TLS connection (leaf first)."""
        t = self.transport
        if self.tls_info is None or t is None or t is self.raw_transport or self.closed:
            return []
        from pynatsd.tls.identity import peer_cert_info

        try:
            return [peer_cert_info(c) for c in t.get_extra_info("peer_cert_chain") or ()]
        except Exception:  # noqa: BLE001 - informational only
            return []

    def peer_cert(self) -> Any:
        """The verified client certificate (cryptography x509) of a TLS connection, or None."""
        if self.transport is None or self.transport is self.raw_transport:
            return None
        try:
            return self.transport.get_extra_info("peercert")
        except Exception:  # noqa: BLE001
            return None

    def _peer_cert_count(self) -> int:
        """How many certificates a TLS client sent (its own and the chain it added)."""
        if self.transport is None or self.transport is self.raw_transport:
            return 0
        try:
            return len(self.transport.get_extra_info("peer_cert_chain") or ())
        except Exception:  # noqa: BLE001
            return 0

    # PING / PONG --------------------------------------------------------------------------------

    def _ping(self) -> None:
        if not self.authenticated and not self._require_auth():
            return
        self.enqueue(_PONG)
        if self.server.trace:
            self.trace("->> [PONG]")
        if not self.connected:
            return
        if not self.first_pong_sent:
            self.first_pong_sent = True
            if self.protocol >= 1:
                self.enqueue(self.server.info_for(self, connect_info=True))

    def _pong(self) -> None:
        if not self.authenticated and not self._require_auth():
            return
        self.pings_out = 0
        if self._rtt_start:
            self.rtt = max(time.time() - self._rtt_start, 0.0)

    # SUB / UNSUB ----------------------------------------------------------------------------

    def _subscribe(self, subject: bytes, queue: bytes, sid: bytes) -> None:
        if not self.authenticated and not self._require_auth():
            return
        server = self.server
        perms = self.perms
        if queue == b"_sys_" or (perms is not None and not perms.can_subscribe(subject, queue)):
            self.send_err(wire.sub_violation(subject, queue or None))
            sid_s = sid.decode("utf-8", "replace")
            if queue:
                self.error(f"Subscription Violation - Subject {wire.go_quote(subject)}, Queue: {wire.go_quote(queue)}, SID {sid_s}")
            else:
                self.error(f"Subscription Violation - Subject {wire.go_quote(subject)}, SID {sid_s}")
            return
        opts = server.opts
        if opts.max_sub_tokens > 0 and num_tokens(subject) > opts.max_sub_tokens:
            self.send_err(wire.sub_tokens_violation(subject))
            self.error(
                f"Subscription Violation Too Many Tokens - Subject {wire.go_quote(subject)}, "
                f"SID {sid.decode('utf-8', 'replace')}"
            )
            return
        max_subs = opts.max_subscriptions if opts.max_subscriptions > 0 else -1
        acc_subs = self.acc.opts.max_subscriptions  # (accounts) per connection, as nats-server
        if acc_subs >= 0 and (max_subs < 0 or acc_subs < max_subs):
            max_subs = acc_subs
        if max_subs >= 0 and len(self.subs) >= max_subs:
            self.error(wire.ERR_MAX_SUBS)
            self.send_err(wire.ERR_MAX_SUBS)
            return
        if not valid_subscribe_subject(subject):
            self.send_err(wire.ERR_INVALID_SUBJECT)
            return
        if sid not in self.subs:
            sub = Subscription(self, subject, queue, sid)
            self.subs[sid] = sub
            self.acc.sublist.insert(subject, queue, sub)
        if self.verbose:
            self.enqueue(_OK)

    def _unsubscribe(self, sid: bytes, max_msgs: int) -> None:
        if not self.authenticated and not self._require_auth():
            return
        sub = self.subs.get(sid)
        if sub is not None:
            if max_msgs > 0 and max_msgs > sub.delivered:
                sub.max_msgs = max_msgs
            else:
                self.remove_sub(sub)
        if self.verbose:
            self.enqueue(_OK)

    def remove_sub(self, sub: Subscription) -> None:
        if self.subs.get(sub.sid) is sub:
            del self.subs[sub.sid]
            self.acc.sublist.remove(sub.subject, sub.queue, sub)
            if self.server.trace:
                self.trace(f"<-> [DELSUB {sub.sid.decode('utf-8', 'replace')}]")

    # PUB / HPUB -----------------------------------------------------------------------------

    def _publish(
        self,
        subject: bytes,
        reply: bytes,
        size_digits: bytes,
        data: bytes,
        hdr_digits: bytes | None,
        hdr_len: int,
        _unused: None,
    ) -> None:
        if not self.authenticated and not self._require_auth():
            return
        # pedantic subject check: an -ERR, but the message still goes out
        if self.pedantic and not self.server.pub_subject_ok(subject):
            self.send_err(wire.ERR_INVALID_PUB_SUBJECT)
        size = len(data)
        self.in_msgs += 1
        self.in_bytes += size
        stats = self.server.stats
        stats.in_msgs += 1
        stats.in_bytes += size
        if subject.startswith(b"_GR_."):
            self._pub_denied(subject)
            return
        perms = self.perms
        if perms is not None and not perms.can_publish(subject) and not self._reply_allowed(subject):
            self._pub_denied(subject)
            return
        if subject.startswith(b"$NRG.") and not self.server.is_system_account(self.account):
            self._pub_denied(subject)
            return
        if reply and reply.startswith(_RESERVED_REPLY):
            self.send_err(wire.pub_reply_violation(reply))
            self.error(f"Publish Violation - Reply {wire.go_quote(reply)}")
            return
        if self.verbose:
            self.enqueue(_OK)
        if hdr_digits is not None and hdr_len == 0:
            hdr_digits = None  # HPUB with an empty header block goes out as a plain MSG
        if not self._route(subject, reply, size_digits, data, hdr_digits, hdr_len) and reply and self.no_responders:
            self._send_no_responders(subject, reply)

    def _pub_denied(self, subject: bytes) -> None:
        self.send_err(wire.pub_violation(subject))
        self.error(f"Publish Violation - Subject {wire.go_quote(subject)}")

    def _reply_allowed(self, subject: bytes) -> bool:
        """allow_responses: may this client publish to a reply subject it received?"""
        replies = self.replies
        if not replies:
            return False
        entry = replies.get(subject)
        if entry is None:
            return False
        perms = self.perms
        assert perms is not None and perms.responses is not None
        max_msgs, expires = normalize_response_permission(perms.responses)
        entry[1] += 1
        if (max_msgs > 0 and entry[1] > max_msgs) or (expires > 0 and time.time() - entry[0] > expires):
            del replies[subject]
            return False
        if max_msgs > 0 and entry[1] >= max_msgs:
            del replies[subject]
        return True

    def _record_reply(self, reply: bytes) -> None:
        replies = self.replies
        if replies is None:
            return
        if len(replies) > REPLY_PRUNE_THRESHOLD:
            perms = self.perms
            if perms is not None and perms.responses is not None:
                _, expires = normalize_response_permission(perms.responses)
                if expires > 0:
                    cutoff = time.time() - expires
                    for k in [k for k, v in replies.items() if v[0] < cutoff]:
                        del replies[k]
        replies[reply] = [time.time(), 0]

    def _route(
        self, subject: bytes, reply: bytes, size_digits: bytes, data: bytes, hdr_digits: bytes | None, hdr_len: int
    ) -> bool:
        """Deliver to every matching subscription (one per queue group). True if any got it."""
        server = self.server
        acc = self.acc
        result = acc.sublist.match(subject)
        routes = server.routes
        leafs = server.leafs
        if routes is None and leafs is None and server.gateways is None:
            got = deliver(
                server, self, subject, reply, size_digits, data, hdr_digits, hdr_len, result.plain, result.queues
            )
        else:
            # clustering (cluster/routes.py): routes with interest get the message once each, and a
            # queue group's member is picked cluster-wide (the groups a route took are not local)
            routed = False
            queues = result.queues
            if routes is not None:
                routed, queues = routes.forward(
                    subject, reply, hdr_len if hdr_digits is not None else -1, data, result, acc.name_b
                )
            # leaf nodes (cluster/leafnodes.py): a queue group goes to a leaf only without a
            # local or cluster member
            if leafs is not None and leafs.forward(
                subject, reply, hdr_len if hdr_digits is not None else -1, data, result, acc.name_b
            ):
                routed = True
            got = deliver(
                server, self, subject, reply, size_digits, data, hdr_digits, hdr_len, result.plain, queues
            ) or routed
            gateways = server.gateways
            if gateways is not None:
                # gateways (cluster/gateways.py): once to each other cluster with interest
                got = gateways.forward(
                    acc, subject, reply, hdr_len if hdr_digits is not None else -1, data, result
                ) or got
        if acc.service_imports is not None:
            # (accounts helper A) requests to another account's service (never from routes: the
            # server the requester is on does the import)
            for si in acc.service_imports.match(subject).plain:
                if si.deliver_internal(self, subject, reply, size_digits, data, hdr_digits, hdr_len, 0):
                    got = True
        return got

    def _send_no_responders(self, subject: bytes, reply: bytes) -> None:
        """503 to the publisher on its own plain subscription matching the reply subject."""
        for sub in self.acc.sublist.match(reply).plain:
            if sub.client is self:
                msg = wire.no_responders_hmsg(reply, sub.sid, subject)
                if self.server.trace:
                    self.trace(f"->> [{msg[: msg.index(_CRLF)].decode('utf-8', 'replace')}]")
                self.enqueue(msg)
                self.out_msgs += 1
                return

    # server-initiated -----------------------------------------------------------------------

    def send_lame_duck_info(self) -> None:
        if self.protocol >= 1 and self.first_pong_sent and not self.closed:
            self.enqueue(self.server.info_for(self, ldm=True))


def _redact_connect(raw: bytes) -> str:
    """CONNECT JSON for trace logs with secrets replaced, as nats-server does."""
    text = raw.decode("utf-8", "replace")
    try:
        doc = json.loads(text)
    except ValueError:
        return text
    if not isinstance(doc, dict):
        return text
    changed = False
    for key in list(doc):
        if key.lower() in ("pass", "auth_token", "sig", "jwt") and doc[key]:
            doc[key] = "[REDACTED]"
            changed = True
    if not changed:
        return text
    return json.dumps(doc, separators=(",", ":"))


def _trace_payload(payload: bytes, limit: int) -> str:
    if limit > 0 and len(payload) > limit:
        return wire.go_quote(payload[:limit]) + "..."
    return wire.go_quote(payload)


def deliver(
    server: Server,
    src: Any,
    subject: bytes,
    reply: bytes,
    size_digits: bytes,
    data: bytes,
    hdr_digits: bytes | None,
    hdr_len: int,
    plain: list[Subscription],
    queues: list[list[Subscription]],
    depth: int = 0,
) -> bool:
    """Deliver a message to the ``plain`` subscriptions and one member of each queue group in
    ``queues``. Internal subscriptions (account imports, pynatsd.accounts) take it into
    another account; ``depth`` counts such hops. ``src`` is the publishing connection (a client, or a route for routed messages:
    its ``echo`` is True and it is never a subscriber). True if any subscription got it.

    Each delivery appends two pieces to the receiver's outbound list: the subscription's
    ready ``MSG <subject> <sid> `` prefix and the tail ``[reply ]<size>\r\n<payload>\r\n``
    built once per message."""
    targets = plain
    echo = src.echo
    if queues:
        # one member per group: random start, then ring order past members that can't take it
        targets = list(plain) if plain else []
        skip = None if echo else src
        for group in queues:
            n = len(group)
            start = int(_random() * n)
            sub = group[start]
            c = sub.client
            if (
                not c.closed
                and c is not skip
                and (c.perms is None or c.perms.can_deliver(subject))
                and not (sub.max_msgs and sub.delivered >= sub.max_msgs)
            ):
                targets.append(sub)
                continue
            for k in range(1, n):
                sub = group[(start + k) % n]
                c = sub.client
                if c.closed or c is skip:
                    continue
                if c.perms is not None and not c.perms.can_deliver(subject):
                    continue
                if sub.max_msgs and sub.delivered >= sub.max_msgs:
                    continue
                targets.append(sub)
                break
    if not targets:
        return False
    size = len(data)
    if hdr_digits is None:
        tail = b"".join((reply, b" ", size_digits, _CRLF, data, _CRLF)) if reply else b"".join((size_digits, _CRLF, data, _CRLF))
    else:
        tail = b"".join((reply, b" ", hdr_digits, b" ", size_digits, _CRLF, data, _CRLF) if reply else (hdr_digits, b" ", size_digits, _CRLF, data, _CRLF))
    tlen = len(tail)
    head: bytes | None = None  # for wildcard subscriptions: "MSG <subject> " (built on first use)
    tail_nh: bytes | None = None  # for receivers without headers: the payload only
    size_nh = size - hdr_len
    trace = server.trace
    delivered = 0
    out_bytes = 0
    expired: list[Subscription] | None = None
    internal: list[Any] | None = None
    if hdr_digits is None and not trace:
        # the usual message: no header block, no tracing (same steps as the loop below)
        skip = None if echo else src
        for sub in targets:
            c = sub.client
            if c.closed or c is skip:
                continue
            max_msgs = sub.max_msgs
            if max_msgs and sub.delivered >= max_msgs:
                continue
            cperms = c.perms
            if cperms is not None:
                if cperms is INTERNAL_MARK:
                    if internal is None:
                        internal = []
                    internal.append(sub)
                    continue
                if cperms.deliver_deny is not None and not cperms.can_deliver(subject):
                    continue
                if reply and c.replies is not None:
                    c._record_reply(reply)
            prefix = sub.prefix
            if prefix is None:
                if head is None:
                    head = b"MSG " + subject + b" "
                prefix = head + sub.sid_sp
            out = c.out
            out.append(prefix)
            out.append(tail)
            c.out_size += len(prefix) + tlen
            c.out_msgs += 1
            c.out_bytes += size
            sub.delivered += 1
            delivered += 1
            if not c.dirty:
                c.dirty = True
                server.mark_dirty(c)
            if c.out_size + c.wbuf > c.stall_at:
                c._pending_high(src)
            if max_msgs and sub.delivered >= max_msgs:
                if expired is None:
                    expired = []
                expired.append(sub)
        out_bytes = delivered * size
        targets = []  # done
    for sub in targets:
        c = sub.client
        if c.closed or (c is src and not echo):
            continue
        cperms = c.perms
        if cperms is not None:
            if cperms is INTERNAL_MARK:
                if internal is None:
                    internal = []
                internal.append(sub)
                continue
            if cperms.deliver_deny is not None and not cperms.can_deliver(subject):
                continue
        max_msgs = sub.max_msgs
        if max_msgs and sub.delivered >= max_msgs:
            continue
        if hdr_digits is None:
            prefix = sub.prefix
            t = tail
            n = tlen
            msize = size
            if prefix is None:
                if head is None:
                    head = b"MSG " + subject + b" "
                prefix = head + sub.sid_sp
        elif c.headers:
            prefix = sub.hprefix
            t = tail
            n = tlen
            msize = size
            if prefix is None:
                prefix = b"HMSG " + subject + b" " + sub.sid_sp
        else:
            prefix = sub.prefix
            if prefix is None:
                prefix = b"MSG " + subject + b" " + sub.sid_sp
            if tail_nh is None:
                rp = reply + b" " if reply else b""
                tail_nh = b"".join((rp, b"%d" % size_nh, _CRLF, data[hdr_len:], _CRLF))
            t = tail_nh
            n = len(t)
            msize = size_nh
        out = c.out
        out.append(prefix)
        out.append(t)
        c.out_size += len(prefix) + n
        c.out_msgs += 1
        c.out_bytes += msize
        out_bytes += msize
        delivered += 1
        sub.delivered += 1
        if reply and c.replies is not None:
            c._record_reply(reply)
        if trace:
            c.trace(f"->> [{(prefix + t[: t.index(_CRLF)]).decode('utf-8', 'replace')}]")
        if not c.dirty:
            c.dirty = True
            server.mark_dirty(c)
        if c.out_size + c.wbuf > c.stall_at:
            c._pending_high(src)
        if max_msgs and sub.delivered >= max_msgs:
            if expired is None:
                expired = []
            expired.append(sub)
    if expired is not None:
        for sub in expired:
            sub.client.remove_sub(sub)
    if delivered:
        stats = server.stats
        stats.out_msgs += delivered
        stats.out_bytes += out_bytes
    if internal is not None:
        for sub in internal:
            if sub.deliver_internal(src, subject, reply, size_digits, data, hdr_digits, hdr_len, depth):
                delivered += 1
    return delivered > 0
