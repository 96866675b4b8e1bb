"""PeerConnection: the plumbing route, leafnode and gateway connections share.

Each of the three is an asyncio Protocol speaking a route-like line protocol to another server.
What they do alike lives here: the common state, the start of ``connection_made`` (peer address,
connection id, log prefix, admission by the manager), the TLS handshake's start and result, the
outbound buffer (enqueue, flush once per loop turn, close), the authentication timer, the
keepalive PING timer and JSON parsing of INFO/CONNECT. What differs (log words, statistics,
which timers exist, what a close undoes) is a class attribute or a small hook in the subclass.

A subclass's manager provides ``running``, ``conns``, ``auth_timeout``, ``ping_interval`` and
``ping_max``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pynatsd.client import ConnectionViews, PrefixedLog, shut_transports
from pynatsd.cluster import protocol as rp

FIRST_PING = 1.0  # the first PING goes out this soon (or after ping_interval when shorter)

REASON_AUTH_TIMEOUT = "Authentication Timeout"
REASON_TLS_FAILURE = "TLS Handshake Failure"
REASON_WRITE_ERROR = "Write Error"
REASON_READ_ERROR = "Read Error"
REASON_CLIENT_CLOSED = "Client Closed"
REASON_STALE = "Stale Connection"
REASON_PROTOCOL = "Protocol Violation"
ERR_AUTH_TIMEOUT = "Authentication Timeout"
ERR_STALE = "Stale Connection"


def hostport(host: str, port: int) -> str:
    """``host:port``, an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def redact_connect(raw: bytes) -> str:
    """A CONNECT's JSON for the trace log, its password (if any) shown as [REDACTED]."""
    text = raw.decode("utf-8", "replace")
    try:
        doc = json.loads(text)
    except ValueError:
        return text
    if isinstance(doc, dict) and doc.get("pass"):
        doc["pass"] = "[REDACTED]"
        return json.dumps(doc, separators=(",", ":"))
    return text


class PeerConnection(PrefixedLog, ConnectionViews, asyncio.Protocol):
    """Base of RouteConnection, LeafConnection and GatewayConnection (see the module docstring)."""

    # what the subclass is called in its log lines: "Stale <KIND> Connection - Closing"
    KIND = ""
    # the start of the line logged when it closes: "<CLOSED_LINE>: <reason>[ - Remote: <name>]"
    CLOSED_LINE = ""
    # what is traced (-V) besides the PINGs and INFOs we get: the rest of the keepalive (the
    # PINGs we send, the PONGs we get and send), the CONNECT we get and the -ERR we close with
    TRACE_KEEPALIVE = False
    TRACE_CONNECT_IN = False
    TRACE_ERR_OUT = False
    # the timers close cancels (attribute names)
    TIMERS: tuple[str, ...] = ("_auth_timer", "_ping_timer")

    manager: Any
    server: Any
    # set while the TLS layer owns the socket (leafnodes): nothing is written meanwhile
    _awaiting_tls = False

    def _init_peer(self, manager: Any, parser: Any) -> None:
        """The state every peer connection keeps (called first thing in the subclass __init__)."""
        self.manager = manager
        self.server = manager.server
        self.remote_id = ""
        self.remote_name = ""
        self.headers = False
        self.connect_received = False
        self.info_received = False
        self.registered = False
        self.host = ""
        self.port = 0
        self.start = datetime.now(UTC)
        self._last_in = time.time()
        self._last_out = self._last_in
        self.rtt: float | None = None
        self._rtt_start = 0.0
        self.pings_out = 0
        self.in_msgs = 0
        self.out_msgs = 0
        self.in_bytes = 0
        self.out_bytes = 0
        self.parser = parser
        self.transport: Any = None
        self.raw_transport: Any = None
        self.tls_info: dict[str, Any] | None = None
        self.out: list[bytes] = []
        self.out_size = 0
        self.dirty = False
        self.closed = False
        self.closed_reason: str | None = None
        # as the producer of forwarded messages in client.deliver: never a subscriber itself,
        # and not paused when a local subscriber falls behind (nats-server does not stall these)
        self.echo = True
        self.stall = False
        self._reading = False
        self._auth_timer: asyncio.TimerHandle | None = None
        self._ping_timer: asyncio.TimerHandle | None = None
        self._ncs = ""

    # -- connection_made ------------------------------------------------------------------------

    def _attach(self, transport: asyncio.BaseTransport, tag: str) -> int:
        """Take the transport, the peer's address and a new connection id (returned), and set the
        log prefix ``ip:port - <tag>:<id>``."""
        self.raw_transport = self.transport = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.host, self.port = str(peer[0]), int(peer[1])
        cid: int = self.server.next_cid()
        self._ncs = f"{hostport(self.host, self.port)} - {tag}:{cid}"
        return cid

    def _admit(self, transport: asyncio.BaseTransport, high_water: int | None) -> bool:
        """Set the transport's write buffer limit (when given) and join the manager's
        connections; False (transport aborted, connection closed) once the manager stopped."""
        if high_water is not None:
            try:
                transport.set_write_buffer_limits(high=high_water)  # type: ignore[attr-defined]
            except (AttributeError, NotImplementedError):
                pass
        mgr = self.manager
        if not mgr.running:
            self.closed = True
            transport.abort()  # type: ignore[attr-defined]
            return False
        mgr.conns.add(self)
        return True

    # -- TLS ----------------------------------------------------------------------------------------

    def _start_handshake(
        self,
        ctx: Any,
        timeout: float,
        on_ok: Callable[[Any], None],
        on_failed: Callable[[str | None], None],
        *,
        server_hostname: str | None = None,
        client: bool = False,
        tls_first: bool = False,
    ) -> None:
        """Run the TLS handshake over the raw transport (as client or server); then, unless the
        connection closed meanwhile, ``on_ok(tls_transport)`` or ``on_failed(error)``."""
        from pynatsd.tls import transport as tlstransport

        def done(tls_transport: Any, err: str | None) -> None:
            self._awaiting_tls = False
            if self.closed:
                return
            if tls_transport is None:
                on_failed(err)
                return
            on_ok(tls_transport)

        if client:
            tlstransport.start_tls_client(
                self.raw_transport, ctx, self, server_hostname=server_hostname, timeout=timeout, on_done=done
            )
        else:
            tlstransport.start_tls(self.raw_transport, ctx, self, timeout=timeout, on_done=done, tls_first=tls_first)

    def _tls_failed(self, what: str, err: str | None) -> None:
        self.error(f"TLS {what} handshake error: {err}")
        self.close(REASON_TLS_FAILURE, flush=False)

    def _tls_established(self, tls_transport: Any, *, unknown_info: dict[str, Any] | None, version_line: bool) -> None:
        """The handshake is done: write through ``tls_transport`` from now on and keep what it
        negotiated (``unknown_info`` when that cannot be read)."""
        self.transport = tls_transport
        try:
            from pynatsd.tls.identity import tls_info

            self.tls_info = tls_info(tls_transport)
        except Exception:  # noqa: BLE001 - informational only
            self.tls_info = unknown_info
        self.debug("TLS handshake complete")
        if version_line and self.tls_info and self.tls_info.get("version"):
            self.debug(f"TLS version {self.tls_info.get('version')}, cipher suite {self.tls_info.get('cipher_suite')}")

    # -- asyncio.Protocol ---------------------------------------------------------------------------

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            tls_error = getattr(self.transport, "error", None) if self.tls_info is not None else None
            self._log_lost(tls_error)
            failed = exc is not None or tls_error is not None
            self.close(REASON_READ_ERROR if failed else REASON_CLIENT_CLOSED, flush=False)

    def _log_lost(self, tls_error: str | None) -> None:
        if tls_error:
            self.error(f"TLS error: {tls_error}")

    # -- handshake helpers --------------------------------------------------------------------------

    def _got_info(self, raw: bytes) -> None:
        if self.server.trace:
            self.trace(f"<<- [INFO {raw.decode('utf-8', 'replace')}]")
        self._on_info(raw)

    def _on_info(self, raw: bytes) -> None:
        """A peer's INFO (each kind of connection reads its own way)."""
        raise NotImplementedError

    def _got_connect(self, raw: bytes) -> None:
        if self.TRACE_CONNECT_IN and self.server.trace:
            self.trace(f"<<- [CONNECT {redact_connect(raw)}]")
        self._on_connect(raw)

    def _on_connect(self, raw: bytes) -> None:
        """A peer's CONNECT (each kind of connection reads its own way)."""
        raise NotImplementedError

    def _json_doc(self, raw: bytes, what: str | None) -> dict[str, Any] | None:
        """``raw`` as a JSON object, or None after closing as a protocol violation (logging
        ``<what> is not valid JSON`` when ``what`` is given)."""
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict):
                raise ValueError("not an object")
        except ValueError:
            if what is not None:
                self.error(f"{what} is not valid JSON")
            self.close(REASON_PROTOCOL)
            return None
        return doc

    def _start_auth_timer(self) -> None:
        self._auth_timer = self.server.loop.call_later(self.manager.auth_timeout, self._auth_timeout)

    def _stop_auth_timer(self) -> None:
        if self._auth_timer is not None:
            self._auth_timer.cancel()
            self._auth_timer = None

    def _auth_timeout(self) -> None:
        self._auth_timer = None
        if self.closed or self.connect_received:
            return
        self.error(ERR_AUTH_TIMEOUT)
        self.close(REASON_AUTH_TIMEOUT, ERR_AUTH_TIMEOUT)

    # -- output -------------------------------------------------------------------------------------

    def enqueue(self, data: bytes) -> None:
        if self.closed:
            return
        self.out.append(data)
        self.out_size += len(data)
        if not self.dirty:
            self.dirty = True
            self.server.mark_dirty(self)

    def flush(self) -> None:
        self.dirty = False
        out = self.out
        if not out or self.closed or self.transport is None or self._awaiting_tls:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        self.out_size = 0
        self._last_out = time.time()
        try:
            self.transport.write(data)
        except Exception as e:  # noqa: BLE001 - any transport failure is a write error
            self.debug(f"Error flushing: {e}")
            self.close(REASON_WRITE_ERROR, flush=False)

    # -- keepalive ----------------------------------------------------------------------------------

    def _got_ping(self) -> None:
        if self.server.trace:
            self.trace("<<- [PING]")
            if self.TRACE_KEEPALIVE:
                self.trace("->> [PONG]")
        self.enqueue(rp.PONG)

    def _got_pong(self) -> None:
        if self.TRACE_KEEPALIVE and self.server.trace:
            self.trace("<<- [PONG]")
        self.pings_out = 0
        if self._rtt_start:
            self.rtt = max(time.time() - self._rtt_start, 0.0)

    def _start_pings(self, jitter: bool) -> None:
        """The first PING after FIRST_PING (or ping_interval when shorter), up to 20% later with
        ``jitter``."""
        delay = min(FIRST_PING, self.manager.ping_interval)
        if jitter:
            delay *= 1 + random.random() * 0.2
        self._ping_timer = self.server.loop.call_later(delay, self._ping_tick)

    def _ping_tick(self) -> None:
        self._ping_timer = None
        if self.closed:
            return
        mgr = self.manager
        if self.pings_out + 1 > mgr.ping_max:
            self._count_stale()
            self.debug(f"Stale {self.KIND} Connection - Closing")
            self.close(REASON_STALE, ERR_STALE)
            return
        self.pings_out += 1
        self._rtt_start = time.time()
        if self.TRACE_KEEPALIVE and self.server.trace:
            self.trace("->> [PING]")
        self.enqueue(rp.PING)
        self._ping_timer = self.server.loop.call_later(mgr.ping_interval, self._ping_tick)

    def _count_stale(self) -> None:
        """Statistics of a connection closed as stale (none by default)."""

    # -- closing ------------------------------------------------------------------------------------

    def close(self, reason: str, err: str | None = None, flush: bool = True) -> None:
        if self.closed:
            return
        if err is not None:
            if self.TRACE_ERR_OUT and self.server.trace:
                self.trace(f"->> [-ERR {err}]")
            self.enqueue(rp.err_line(err))
        if flush:
            self.flush()
        self.closed = True
        self.closed_reason = reason
        for name in self.TIMERS:
            timer = getattr(self, name)
            if timer is not None:
                timer.cancel()
                setattr(self, name, None)
        self.out.clear()
        self.out_size = 0
        shut_transports(self.transport, self.raw_transport, flush=flush)
        # nats-server's line: the remote's server name once we know it
        remote = f" - Remote: {self.remote_name}" if self.remote_name else ""
        self.notice(f"{self.CLOSED_LINE}: {reason}{remote}")
        self._closed()

    def _closed(self) -> None:
        """What the subclass undoes once closed (interest, its manager's registry)."""


async def close_peers(listener: Any, tasks: set[asyncio.Task[Any]], conns: set[Any], reason: str) -> None:
    """A stopping manager's second half (its listener, when it had one, already told to close):
    cancel its dial tasks, close its connections with ``reason``, then wait (briefly) for the
    listener and for the tasks to end."""
    for t in list(tasks):
        t.cancel()
    for conn in list(conns):
        conn.close(reason)
    if listener is not None:
        try:
            await asyncio.wait_for(listener.wait_closed(), 2.0)
        except TimeoutError:
            pass
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
