"""TLS over an asyncio transport, with OpenSSL memory BIOs (pyOpenSSL).

``start_tls`` takes over a plain asyncio transport that is already connected (after INFO, or at
once for handshake-first), runs the server handshake under a timeout, checks pinned
certificates, and then hands the application a ``TLSTransport``: an asyncio-Transport-like
object whose ``write`` encrypts and whose decrypted bytes go to the application protocol's
``data_received``. ``start_tls_client`` is the dialing side (routes, gateways, leaf remotes).

Hot path: one ``write`` call encrypts its whole buffer with one SSL_write (OpenSSL cuts the
records) and hands the ciphertext to the socket in as few writes as the output buffer allows;
each received chunk is decrypted in a tight loop over the records it completes and the
plaintext is delivered in one ``data_received`` call. Reads and BIO drains call the cffi
binding directly (no exception per empty read); errors go through pyOpenSSL for their text.

Failure reasons are plain words: "handshake timeout", "plain text on a TLS port",
"no client certificate", "unknown CA", "certificate expired", "certificate not pinned", ...
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import queue
import threading
from collections.abc import Callable
from typing import Any

from cryptography import x509
from OpenSSL import SSL
from OpenSSL._util import ffi as _ffi
from OpenSSL._util import lib as _lib

from pynatsd.tls.context import ClientTLS, ServerTLS, go_cipher_name, go_group_name
from pynatsd.tls.identity import spki_sha256

log = logging.getLogger("pynatsd.tls")

OnDone = Callable[["TLSTransport | None", "str | None"], None]

TLS_HANDSHAKE_RECORD = 0x16

_BUF_SIZE = 1024 * 1024
_MAX_RECORD = 16384 + 256  # plaintext of one record, with room to spare
# Shared scratch buffers: the event loop runs one callback at a time and every read copies out
# of them at once, so one pair serves all connections.
_RBUF = _ffi.new("char[]", _BUF_SIZE)
_WBUF = _ffi.new("char[]", _BUF_SIZE)
_RVIEW = _ffi.buffer(_RBUF)
_WVIEW = _ffi.buffer(_WBUF)
_SSL_read = _lib.SSL_read
_SSL_write = _lib.SSL_write
_SSL_get_error = _lib.SSL_get_error
_BIO_read = _lib.BIO_read
_BIO_write = _lib.BIO_write
_WANT_READ = _lib.SSL_ERROR_WANT_READ
_SSL_version = _lib.SSL_version
_TLS1_3 = _lib.TLS1_3_VERSION
_ZERO_RETURN = _lib.SSL_ERROR_ZERO_RETURN
_SSL_do_handshake = _lib.SSL_do_handshake
_SUMMARIES: dict[tuple[int, int, int], dict[str, Any]] = {}  # TLSTransport.tls_summary

_UNKNOWN_CA = {
    _lib.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, _lib.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT,
    _lib.X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE, _lib.X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT,
    _lib.X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN, _lib.X509_V_ERR_CERT_UNTRUSTED,
}

# OpenSSL reason text (lower case, substring) -> our words.
_REASONS = (
    ("peer did not return a certificate", "no client certificate"),
    ("certificate required", "no client certificate"),
    ("unknown ca", "unknown CA"),
    ("certificate expired", "certificate expired"),
    ("certificate verify failed", "certificate verify failed"),
    ("no shared cipher", "no cipher suite in common"),
    ("no suitable key share", "no key exchange group in common"),
    ("no shared groups", "no key exchange group in common"),
    ("unsupported protocol", "TLS version not allowed"),
    ("protocol version", "TLS version not allowed"),
    ("wrong version number", "plain text on a TLS port"),
    ("http request", "plain text on a TLS port"),
    ("handshake failure", "handshake failure"),
)


# Alerts received from the peer that reject the certificate we sent (OpenSSL's reason text).
_PEER_REFUSED = (
    ("alert unknown ca", "unknown CA"),
    ("alert bad certificate", "bad certificate"),
    ("alert certificate unknown", "certificate unknown"),
    ("alert certificate expired", "certificate expired"),
    ("alert certificate revoked", "certificate revoked"),
    ("alert unsupported certificate", "unsupported certificate"),
)



class _HandshakeWorkers:
    """Threads that run server handshake steps (SSL_do_handshake).

    cffi releases the GIL around OpenSSL calls, so the key exchange, signature and certificate
    checks of a handshake (most of a TLS connection's server CPU) can run on another core while
    the event loop serves everything else. While a step runs, only its worker touches that
    connection's SSL object; the loop holds back that connection's input until the result comes
    back through ``call_soon_threadsafe``.
    """

    def __init__(self, count: int) -> None:
        self._queue: queue.SimpleQueue[TLSTransport] = queue.SimpleQueue()
        for i in range(count):
            threading.Thread(target=self._run, name=f"pynatsd-tls-{i}", daemon=True).start()

    def submit(self, tls: TLSTransport) -> None:
        self._queue.put(tls)

    def _run(self) -> None:
        get = self._queue.get
        while True:
            get()._step_in_worker()


def handshake_thread_count() -> int:
    """PYNATSD_TLS_THREADS (default 0: handshakes run on the event loop)."""
    env = os.environ.get("PYNATSD_TLS_THREADS", "").strip()
    if not env:
        return 0
    try:
        return max(0, min(64, int(env)))
    except ValueError:
        log.warning("PYNATSD_TLS_THREADS=%r is not a number; handshakes run on the event loop", env)
        return 0


_workers: _HandshakeWorkers | None = None
_workers_known = False


def _handshake_workers() -> _HandshakeWorkers | None:
    global _workers, _workers_known
    if not _workers_known:  # only ever called on an event loop thread: no race to create
        n = handshake_thread_count()
        _workers = _HandshakeWorkers(n) if n > 0 else None
        _workers_known = True
    return _workers


def looks_like_tls(first: bytes) -> bool:
    """True when the first byte received is a TLS handshake record (a ClientHello)."""
    return bool(first) and first[0] == TLS_HANDSHAKE_RECORD


def _describe(err: BaseException, conn: SSL.Connection | None) -> str:
    """A failed handshake in plain words (verification results first: they are the cause)."""
    if conn is not None:
        code = _lib.SSL_get_verify_result(conn._ssl)
        if code != _lib.X509_V_OK:
            if code == _lib.X509_V_ERR_CERT_HAS_EXPIRED:
                return "certificate expired"
            if code == _lib.X509_V_ERR_CERT_NOT_YET_VALID:
                return "certificate not yet valid"
            if code in _UNKNOWN_CA:
                return "unknown CA"
            if code == _lib.X509_V_ERR_HOSTNAME_MISMATCH or code == _lib.X509_V_ERR_IP_ADDRESS_MISMATCH:
                return "certificate is not valid for the host name"
            text = _ffi.string(_lib.X509_verify_cert_error_string(code)).decode(errors="replace")
            return f"certificate verify failed: {text}"
    if isinstance(err, SSL.SysCallError):
        return "connection closed during handshake"
    detail = ""
    if isinstance(err, SSL.Error) and err.args and isinstance(err.args[0], list):
        parts = [str(e[2]) for e in err.args[0] if isinstance(e, tuple) and len(e) == 3]
        detail = "; ".join(p for p in parts if p)
    low = detail.lower()
    # (helper T) an alert the peer sent about OUR certificate (e.g. a client without our CA):
    # say so, rather than the same words as our own verdict on the peer's certificate
    for needle, words in _PEER_REFUSED:
        if needle in low:
            return f"our certificate was refused by the peer ({words})"
    for needle, words in _REASONS:
        if needle in low:
            return words
    return f"TLS error: {detail or err}"


class TLSTransport(asyncio.Transport):
    """The application's view of a TLS connection (an asyncio.Transport).

    ``get_extra_info`` knows: ``ssl_object`` (the pyOpenSSL Connection), ``peercert`` (the peer's
    leaf as a cryptography Certificate or None), ``peer_cert_chain`` (leaf first), ``tls_version``
    ("1.3"), ``cipher_suite`` (Go name), ``group`` (Go name), ``cipher`` (OpenSSL name, version,
    bits), ``tls_first``; anything else (peername, sockname, socket) comes from the raw transport.
    """

    # Defaults every transport starts with (immutable; set per instance when they change).
    _handshaking = True
    _closing = False
    _failed = False
    _hold = False  # ciphertext waits for the next write (see _handshake_done)
    _peer_chain: list[x509.Certificate] | None = None
    tls_first = False
    # why an established connection failed (e.g. the peer's alert refusing our certificate,
    # which a TLS 1.3 client only reads after its handshake completed); None otherwise
    error: str | None = None
    _checking = False  # handshake complete, the context's peer_check is running
    _busy = False  # a handshake step runs in a worker thread (_HandshakeWorkers)
    _lost = False  # the peer closed while a step ran

    def __init__(
        self,
        raw: asyncio.Transport,
        conn: SSL.Connection,
        app: asyncio.BaseProtocol,
        *,
        server_side: bool,
        pins: frozenset[str] | None,
        timeout: float,
        on_done: OnDone,
        context: ServerTLS | ClientTLS,
    ) -> None:
        super().__init__()
        self._raw = raw
        self._conn = conn
        self._ssl = conn._ssl
        self._from_ssl = conn._from_ssl
        self._into_ssl = conn._into_ssl
        self._app = app
        self._server_side = server_side
        self._pins = pins
        self._on_done: OnDone | None = on_done
        self._context = context
        self._first = server_side  # check the first byte for plain text
        self._pending: list[bytes] = []  # bytes received while a worker step ran
        self._loop = loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = loop.call_later(timeout, self._on_timeout) if timeout > 0 else None

    # ---- raw side (installed as the raw transport's protocol) -------------------------------

    def _raw_data_received(self, data: bytes) -> None:
        if self._handshaking:
            self._handshake_data(data)
            return
        if self._closing:
            return
        if _BIO_write(self._into_ssl, _ffi.from_buffer(data), len(data)) != len(data):
            self._fatal("TLS engine refused input")
            return
        self._read_plain()

    def _raw_eof_received(self) -> bool:
        if self._handshaking:
            if self._busy:  # judged when the step returns: the bytes before the EOF come first
                self._lost = True
                return False
            self._fail("connection closed during handshake")
            return False
        eof = getattr(self._app, "eof_received", None)
        if eof is not None:
            eof()
        return False

    def _raw_connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._handshaking:
            if self._busy:
                self._lost = True
                return
            if not self._failed:
                self._fail("connection closed during handshake")
            return
        self._closing = True
        self._app.connection_lost(exc)

    def _raw_pause_writing(self) -> None:
        if not self._handshaking:
            self._app.pause_writing()  # type: ignore[attr-defined]

    def _raw_resume_writing(self) -> None:
        if not self._handshaking:
            self._app.resume_writing()  # type: ignore[attr-defined]

    # ---- handshake ---------------------------------------------------------------------------

    def _handshake_data(self, data: bytes) -> None:
        if self._failed:
            return
        if self._first and data:
            self._first = False
            if data[0] != TLS_HANDSHAKE_RECORD:
                self._fail("plain text on a TLS port")
                return
        if self._busy:  # a worker owns the SSL object until its step returns
            if data:
                self._pending.append(data)
            return
        if data and _BIO_write(self._into_ssl, _ffi.from_buffer(data), len(data)) != len(data):
            self._fail("TLS engine refused input")
            return
        if not self._checking:  # while the peer check runs, data waits in the engine
            self._step()

    def _step(self) -> None:
        workers = _handshake_workers() if self._server_side else None
        if workers is not None:
            self._busy = True
            workers.submit(self)
            return
        # The cffi call directly: pyOpenSSL's do_handshake raises an exception for every
        # "wants more bytes", which is most steps; errors still go through it for their text.
        ssl = self._ssl
        r = _SSL_do_handshake(ssl)
        if r == 1:
            self._handshake_done()
            return
        if _SSL_get_error(ssl, r) == _WANT_READ:
            self._flush()
            return
        try:
            self._conn._raise_ssl_error(ssl, r)
            reason = "handshake failure"
        except Exception as e:  # noqa: BLE001 - SSL.Error, or what a pyOpenSSL callback raised
            reason = _describe(e, self._conn)
        self._flush()  # the alert, so the peer learns why
        self._fail(reason)

    def _step_in_worker(self) -> None:
        # Raw cffi calls (no exception for the usual want-read); OpenSSL's error queue is per
        # thread, so a failure is turned into its SSL.Error here, on the worker.
        err: BaseException | None = None
        try:
            r = _SSL_do_handshake(self._ssl)
            if r == 1:
                res = 1
            elif _SSL_get_error(self._ssl, r) == _WANT_READ:
                res = 0
            else:
                res = -1
                try:
                    self._conn._raise_ssl_error(self._ssl, r)
                except BaseException as e:  # noqa: BLE001 - carried back to the event loop
                    err = e
        except BaseException as e:  # noqa: BLE001 - the worker thread must survive anything
            res, err = -1, e
        try:
            self._loop.call_soon_threadsafe(self._stepped, res, err)
        except RuntimeError:  # the event loop is closed: the server is gone
            pass

    def _stepped(self, res: int, err: BaseException | None) -> None:
        """Back on the event loop with a worker's step: 1 done, 0 wants more bytes, -1 failed."""
        self._busy = False
        if self._failed or self._closing:
            return
        pending, self._pending = self._pending, []
        if res == 0:
            self._flush()
            if pending:
                for data in pending:
                    self._conn.bio_write(data)
                self._step()
        elif res == 1:
            for data in pending:  # application data right behind the peer's last flight
                self._conn.bio_write(data)
            self._handshake_done()
        else:
            self._flush()  # the alert, so the peer learns why
            self._fail(_describe(err or SSL.Error("handshake failed"), self._conn))
            return
        if self._lost and not self._busy and not self._failed:
            if self._handshaking:
                self._fail("connection closed during handshake")
            elif not self._closing:  # completed, but the socket is gone: tell the application
                self._closing = True
                self._app.connection_lost(None)

    def _handshake_done(self) -> None:
        if self._pins is not None:
            # (helper T) the pin check runs on a completed handshake, as in nats-server: our last
            # flight (the TLS 1.2 Finished) goes out first, then the connection is closed
            self._flush()
            leaf = self._conn.get_peer_certificate()
            if leaf is None or spki_sha256(leaf) not in self._pins:
                # (scenarios2) through the connection's own logger: its "ip:port - cid:N" prefix
                app_debug = getattr(self._app, "debug", None)
                say: Callable[[str], Any] = app_debug if callable(app_debug) else log.debug
                if leaf is None:
                    say("Failed pinned cert test as client did not provide a certificate")
                else:
                    say(f"Failed pinned cert test for key id: {spki_sha256(leaf)}")
                self._fail("certificate not pinned")
                return
        check = getattr(self._context, "peer_check", None) if self._server_side else None
        if check is not None:
            self._checking = True
            self._flush()  # the peer's handshake completes while we check
            self._loop.create_task(self._run_peer_check(check))
            return
        self._finish_handshake()

    async def _run_peer_check(self, check: Callable[[TLSTransport], Any]) -> None:
        try:
            reason = await check(self)
        except Exception as e:  # noqa: BLE001 - a broken check rejects, it must not hang
            log.error("TLS peer check failed: %s", e, exc_info=True)
            reason = f"peer check failed: {e}"
        if self._failed or self._closing:
            return
        self._checking = False
        if reason:
            self._fail(str(reason))
            return
        self._finish_handshake()

    def _finish_handshake(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._handshaking = False
        if self._server_side and _SSL_version(self._ssl) == _TLS1_3:
            # (helper S) TLS 1.3: all that is left is the session tickets, which no client waits
            # for: they go out with the application's first write (PONG, INFO) or the close,
            # saving a socket write per connection. (A TLS 1.2 server's last flight must go now.)
            self._hold = True
        else:
            self._flush()  # the handshake's last flight
        done, self._on_done = self._on_done, None
        if done is not None:
            done(self, None)
        if not self._closing:
            self._read_plain()  # application data that came with the last handshake flight

    def _on_timeout(self) -> None:
        self._timer = None
        if self._handshaking and not self._failed:
            self._fail("handshake timeout")

    def _fail(self, reason: str) -> None:
        """Handshake failed: tell the application, then close the raw transport.

        on_done runs before the close, so it may still write a last plain-text line on the raw
        transport (nats-server's best-effort -ERR on a timeout); close() flushes it.
        """
        if self._failed:
            return
        self._failed = True
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        done, self._on_done = self._on_done, None
        try:
            if done is not None:
                done(None, reason)
        finally:
            self._raw.close()

    # ---- data path ---------------------------------------------------------------------------

    def _flush(self) -> None:
        """Move all ciphertext out of the engine onto the socket."""
        bio = self._from_ssl
        n = _BIO_read(bio, _WBUF, _BUF_SIZE)
        if n <= 0:
            return
        if n < _BUF_SIZE:
            self._raw.write(_WVIEW[:n])
            return
        parts = [_WVIEW[:n]]
        while True:
            n = _BIO_read(bio, _WBUF, _BUF_SIZE)
            if n <= 0:
                break
            parts.append(_WVIEW[:n])
            if n < _BUF_SIZE:
                break
        self._raw.writelines(parts)

    def _read_plain(self) -> None:
        # Records are decrypted back to back into one buffer and copied out once.
        ssl = self._ssl
        off = 0
        parts: list[bytes] | None = None
        while True:
            n = _SSL_read(ssl, _RBUF + off, _BUF_SIZE - off)
            if n <= 0:
                break
            off += n
            if off > _BUF_SIZE - _MAX_RECORD:  # nearly full: set this part aside
                if parts is None:
                    parts = []
                parts.append(_RVIEW[:off])
                off = 0
        if parts is None:
            data = _RVIEW[:off] if off else b""
        else:
            if off:
                parts.append(_RVIEW[:off])
            data = b"".join(parts)
        err = _SSL_get_error(ssl, n)
        if err != _WANT_READ:
            if data:
                self._app.data_received(data)  # type: ignore[attr-defined]
                data = b""
            if err == _ZERO_RETURN:  # close_notify: answer it and end
                self._peer_closed()
            else:
                try:
                    self._conn._raise_ssl_error(ssl, n)
                except SSL.Error as e:
                    self._fatal(_describe(e, None))
            return
        # Reading may have produced output (TLS 1.3 key update answers); rare but must go out.
        if not self._hold:
            self._flush()
        if data:
            self._app.data_received(data)  # type: ignore[attr-defined]

    def _peer_closed(self) -> None:
        if self._closing:
            return
        eof = getattr(self._app, "eof_received", None)
        if eof is not None:
            eof()
        self.close()

    def _fatal(self, reason: str) -> None:
        log.debug("TLS error on an established connection: %s", reason)
        self.error = reason
        self._closing = True
        self._raw.abort()

    # ---- asyncio.Transport -------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or not data:
            return
        if self._handshaking:
            raise RuntimeError("write before the TLS handshake completed")
        self._hold = False
        n = len(data)
        buf = _ffi.from_buffer(data)
        r = _SSL_write(self._ssl, buf, n)
        if r != n:  # only if partial writes were turned on: finish the rest
            done = 0
            while r > 0:
                done += r
                if done >= n:
                    break
                r = _SSL_write(self._ssl, buf + done, n - done)
            if r <= 0:
                try:
                    self._conn._raise_ssl_error(self._ssl, r)
                except SSL.Error as e:
                    self._fatal(_describe(e, None))
                    return
        self._flush()

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def write_eof(self) -> None:
        raise NotImplementedError("TLS cannot half-close")

    def can_write_eof(self) -> bool:
        return False

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if not self._handshaking:
            try:
                self._conn.shutdown()  # queue close_notify
            except SSL.Error:
                pass
            self._flush()
        self._raw.close()

    def abort(self) -> None:
        self._closing = True
        self._raw.abort()

    def is_closing(self) -> bool:
        return self._closing or self._raw.is_closing()

    def pause_reading(self) -> None:
        self._raw.pause_reading()

    def resume_reading(self) -> None:
        self._raw.resume_reading()

    def is_reading(self) -> bool:
        return self._raw.is_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._raw.set_write_buffer_limits(high, low)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._raw.get_write_buffer_limits()

    def get_write_buffer_size(self) -> int:
        return self._raw.get_write_buffer_size()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._app = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._app

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        conn = self._conn
        if name == "ssl_object":
            return conn
        if name == "sslcontext":
            return self._context.ssl_context
        if name == "peer_cert_chain":
            return self._peer_certs()
        if name == "peercert":
            chain = self._peer_certs()
            return chain[0] if chain else None
        if name == "tls_version":
            v = conn.get_protocol_version_name()
            return v[4:] if v.startswith("TLSv") else v
        if name == "cipher_suite":
            return go_cipher_name(conn.get_cipher_name())
        if name == "group":
            return go_group_name(conn.get_group_name())
        if name == "cipher":
            return (conn.get_cipher_name(), conn.get_cipher_version(), conn.get_cipher_bits())
        if name == "tls_first":
            return self.tls_first
        return self._raw.get_extra_info(name, default)

    def tls_summary(self) -> dict[str, Any]:
        """version, cipher_suite and group (Go names) of the established connection: the
        /connz facts without peer certificates. Shared between connections that negotiated
        the same (read-only: copy before changing it)."""
        ssl = self._ssl
        group = _lib.SSL_get0_group_name(ssl) if _lib.SSL_get_session(ssl) != _ffi.NULL else _ffi.NULL
        # constant OpenSSL tables: the same pointers mean the same names
        key = (_SSL_version(ssl), int(_ffi.cast("uintptr_t", _lib.SSL_get_current_cipher(ssl))),
               int(_ffi.cast("uintptr_t", group)))
        info = _SUMMARIES.get(key)
        if info is None:
            conn = self._conn
            version = conn.get_protocol_version_name()  # "TLSv1.3"
            info = {
                "version": version[4:] if version.startswith("TLSv") else version,
                "cipher_suite": go_cipher_name(conn.get_cipher_name()),
                "group": go_group_name(conn.get_group_name()),
            }
            if len(_SUMMARIES) < 256:
                _SUMMARIES[key] = info
        return info

    def _peer_certs(self) -> list[x509.Certificate]:
        if self._peer_chain is None:
            leaf = self._conn.get_peer_certificate(as_cryptography=True)
            chain = self._conn.get_peer_cert_chain(as_cryptography=True) or []
            out = [leaf] if leaf is not None else []
            for c in chain:
                if leaf is None or c != leaf:
                    out.append(c)
            self._peer_chain = out
        return self._peer_chain


class _RawProtocol(asyncio.Protocol):
    """The raw transport's protocol while TLS runs: forwards to the TLSTransport."""

    def __init__(self, tls: TLSTransport) -> None:
        self.data_received = tls._raw_data_received  # type: ignore[method-assign]
        self.eof_received = tls._raw_eof_received  # type: ignore[method-assign]
        self.connection_lost = tls._raw_connection_lost  # type: ignore[method-assign]
        self.pause_writing = tls._raw_pause_writing  # type: ignore[method-assign]
        self.resume_writing = tls._raw_resume_writing  # type: ignore[method-assign]


def start_tls(
    raw_transport: asyncio.Transport,
    server_tls: ServerTLS,
    app_protocol: asyncio.BaseProtocol,
    *,
    timeout: float,
    on_done: OnDone,
    initial_data: bytes = b"",
    tls_first: bool = False,
) -> TLSTransport:
    """Run the server side of TLS on ``raw_transport`` (see the module docstring).

    On success ``on_done(tls_transport, None)``: from then on the application writes through the
    TLSTransport and receives plaintext in ``app_protocol.data_received`` (bytes that arrived with
    the handshake's end are delivered right after on_done returns); connection_lost is passed on.
    On failure ``on_done(None, reason)`` and the raw transport is closed; app_protocol gets no
    further calls. ``initial_data``: bytes already read from the socket (handshake-first sniffing).
    Returns the TLSTransport (mainly for tests; use the one given to on_done).
    """
    conn = SSL.Connection(server_tls.ssl_context, None)
    conn.set_accept_state()
    tls = TLSTransport(raw_transport, conn, app_protocol, server_side=True, pins=server_tls.pins,
                       timeout=timeout, on_done=on_done, context=server_tls)
    tls.tls_first = tls_first
    raw_transport.set_protocol(_RawProtocol(tls))
    if initial_data:
        tls._handshake_data(initial_data)
    return tls


def start_tls_client(
    raw_transport: asyncio.Transport,
    client_tls: ClientTLS,
    app_protocol: asyncio.BaseProtocol,
    *,
    server_hostname: str | None,
    timeout: float,
    on_done: OnDone,
) -> TLSTransport:
    """Run the client side of TLS on ``raw_transport`` (solicited routes, gateways, leaf remotes).

    With verification on, the server's chain is checked against the configured CA and its
    certificate must match ``server_hostname`` (a DNS name or an IP address). Pins, if any, are
    checked on the server's leaf. Same callbacks as ``start_tls``.
    """
    conn = SSL.Connection(client_tls.ssl_context, None)
    conn.set_connect_state()
    if server_hostname:
        try:
            ip = ipaddress.ip_address(server_hostname)
        except ValueError:
            ip = None
            conn.set_tlsext_host_name(server_hostname.encode("idna"))
        if client_tls.verify:
            param = _lib.SSL_get0_param(conn._ssl)
            if ip is None:
                name = server_hostname.encode("idna")
                _lib.X509_VERIFY_PARAM_set1_host(param, name, len(name))
            else:
                packed = ip.packed
                _lib.X509_VERIFY_PARAM_set1_ip(param, packed, len(packed))
    tls = TLSTransport(raw_transport, conn, app_protocol, server_side=False, pins=client_tls.pins,
                       timeout=timeout, on_done=on_done, context=client_tls)
    raw_transport.set_protocol(_RawProtocol(tls))
    tls._step()  # sends the ClientHello
    return tls
