"""The monitoring HTTP(S) listener: nats-server's endpoints over aiohttp.

``MonitorServer(server)`` serves, under ``http_base_path``, on ``opts.http_host`` with
``http_port`` (plain) or ``https_port`` (TLS with the server's top-level ``tls {}``
certificate, client certificates not requested, as nats-server does); ``-1`` picks a random
port, and the bound one is ``monitor.port`` (also copied to ``server.http_port``).

Endpoints (same names, parameters, JSON and error texts as nats-server 2.15):
``/`` (HTML index), ``/varz``, ``/connz``, ``/subsz`` (alias ``/subscriptionsz``),
``/routez``, ``/gatewayz``, ``/leafz``, ``/accountz``, ``/healthz``. nats-server has no JSONP
(``?callback=`` is ignored), neither have we. Responses are JSON pretty-printed as Go does,
``/healthz`` compact; bad parameters get 400 with nats-server's plain-text message.

Beyond nats-server:
- ``/metrics``: Prometheus text (or OpenMetrics, by Accept header), see ``metrics.py``.
- ``/healthz/live``: liveness. 200 ``{"status":"ok"}`` while the event loop runs the server
  and it is not shutting down, else 503. It never fails for configuration problems such as
  an expired certificate, so an orchestrator does not restart a process a restart can't fix.
- ``/healthz/ready``: readiness, the same checks as ``/healthz``: the client listener is
  accepting, and no served TLS certificate has expired (503 with an error naming it).
- ``/healthz`` itself also reports an expired served certificate (503, ``"status":"error"``).
- A certificate expiry watch (``certwatch.py``) starts with the monitor.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pynatsd import NATS_SERVER_COMPAT_VERSION, __version__
from pynatsd.config.options import ServerOptions, TLSOptions
from pynatsd.errors import ConfigError
from pynatsd.monitor import endpoints as ep
from pynatsd.monitor.certwatch import (
    DAY,
    CertExpiryWatch,
    ServedCert,
    cert_not_after_from_file,
    first_cert_file,
    served_certs,
)
from pynatsd.monitor.gofmt import go_json

log = logging.getLogger("pynatsd.monitor")

# aiohttp costs about 0.3 s of CPU to import (its client half, which comes with it, builds
# SSL contexts at import). The listener is bound before "Server is ready" (so the port is
# known, errors stop the start and the log order is nats-server's); when aiohttp is not loaded
# yet, it is imported in a thread while the server already serves clients, and HTTP requests
# made meanwhile wait in the listen backlog.
if TYPE_CHECKING:
    from aiohttp import web
else:
    web = sys.modules.get("aiohttp.web")


def _import_web() -> None:
    global web
    from aiohttp import web as aiohttp_web

    web = aiohttp_web

# path -> (label on the index page); the order is the index page's
INDEX = (
    ("/varz", "General"),
    ("/connz", "Connections"),
    ("/accountz", "Accounts"),
    ("/subsz", "Subscriptions"),
    ("/routez", "Routes"),
    ("/leafz", "LeafNodes"),
    ("/gatewayz", "Gateways"),
    ("/healthz", "Health Probe"),
    ("/metrics", "Prometheus Metrics"),
)

_TLS_VERSIONS = {
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}

Handler = Callable[["web.Request"], Awaitable["web.StreamResponse"]]


def _join(base: str, path: str) -> str:
    """nats-server's basePath: normalise the base (leading slash, cleaned) and join."""
    base = base or "/"
    if not base.startswith("/"):
        base = "/" + base
    base = "/" + "/".join(p for p in base.split("/") if p and p != ".")
    if path == "/":
        return base
    return base.rstrip("/") + path


def monitor_ssl_context(tls: TLSOptions, built: Any = None) -> ssl.SSLContext:
    """A stdlib context for the HTTPS monitoring port from the top-level tls{} options.

    aiohttp (asyncio's create_server) only takes a stdlib ``ssl.SSLContext``, not the
    pyOpenSSL context pynatsd.tls builds for the client port, so the monitoring port gets its
    own context from the same options: same certificate and key, no client certificate
    requested (nats-server clears client auth on this port), and, when the server's built
    ``ServerTLS`` is given, its minimum version and TLS 1.2 cipher suites. The stdlib cannot
    restrict TLS 1.3 suites or key-exchange groups, so those stay at OpenSSL's defaults here."""
    cert_file, key_file = tls.cert_file, tls.key_file
    if not cert_file and tls.certificates:
        # (helper C) a ``certs`` list: one context per certificate; the first carries the
        # choice, which MonitorServer's SNI callback makes per handshake as on the client port
        ctxs = [_monitor_ssl_context(tls, built, c, k) for c, k in tls.certificates]
        if len(ctxs) > 1:
            from pynatsd.tls.certsel import Chooser, Policy

            leaves = getattr(built, "certs", ())
            if len(leaves) != len(ctxs):
                from pathlib import Path

                from cryptography import x509

                leaves = tuple(x509.load_pem_x509_certificate(Path(c).read_bytes()) for c, _ in tls.certificates)
            policy = Policy.of(getattr(built, "cipher_suites", ()), getattr(built, "curves", ()))
            ctxs[0].pynatsd_choice = (Chooser(leaves, policy), ctxs)  # type: ignore[attr-defined]
        return ctxs[0]
    return _monitor_ssl_context(tls, built, cert_file, key_file)


def _monitor_ssl_context(tls: TLSOptions, built: Any, cert_file: str | None, key_file: str | None) -> ssl.SSLContext:
    if not cert_file or not key_file:
        raise ConfigError("TLS cert and key required for HTTPS", tls.source.file or None, tls.source.line or None)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.verify_mode = ssl.CERT_NONE
    min_version = getattr(built, "min_version", None) or tls.min_version or "1.2"
    ctx.minimum_version = _TLS_VERSIONS.get(min_version, ssl.TLSVersion.TLSv1_2)
    suites = getattr(built, "cipher_suites", None)
    if suites:
        from pynatsd.tls.context import ALL_TLS12

        names = [ALL_TLS12[n] for n in suites if n in ALL_TLS12]
        if names:
            try:
                ctx.set_ciphers(":".join(names))
            except ssl.SSLError as e:
                raise ConfigError(f"HTTPS monitoring port: cipher suites not available: {e}") from None
    password: bytes | None = None
    if tls.key_password_file:
        try:
            with open(tls.key_password_file, "rb") as f:
                password = f.read().rstrip(b"\r\n")  # as pynatsd.tls reads it
        except OSError as e:
            raise ConfigError(f"error reading key password file: {e}") from None
    try:
        ctx.load_cert_chain(cert_file, key_file, password=password)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"error loading TLS certificate for HTTPS: {e}") from None
    return ctx


_hello = threading.local()  # (SSL object, ClientHello) just received, for the SNI callback


def _keep_client_hello(conn: Any, direction: str, version: Any, content_type: Any, msg_type: Any, data: bytes) -> None:
    # stdlib ssl's message hook: OpenSSL calls it with the whole ClientHello right before the
    # SNI callback, in the same handshake step on the same thread
    if direction == "read" and content_type == 22 and data[:1] == b"\x01":
        _hello.seen = (conn, data)


def _json(body: Any, status: int = 200, *, indent: bool = True) -> web.Response:
    return web.Response(
        body=go_json(body, indent=indent),
        status=status,
        headers={"Content-Type": "application/json", "Access-Control-Allow-Origin": "*"},
    )


def _text(text: str, status: int) -> web.Response:
    return web.Response(
        body=text.encode(), status=status, headers={"Content-Type": "text/plain; charset=utf-8"}
    )


async def _drop_server_header(request: web.Request, response: web.StreamResponse) -> None:
    # nats-server sends no Server header; don't advertise the HTTP stack either
    response.headers.pop("Server", None)


class MonitorServer:
    def __init__(self, server: Any, *, expiry_check_interval: float = DAY) -> None:
        self.server = server
        self.port = 0  # the bound monitoring port (HTTP or HTTPS)
        self.scheme = ""
        self.req_stats: dict[str, int] = {}
        self.proc = ep.ProcessStats()
        self._monitor_cert: ServedCert | None = None
        self.cert_watch = CertExpiryWatch(
            server, interval=expiry_check_interval, extra=self._extra_certs
        )
        self._registry: Any = None  # built on the first /metrics (prometheus_client costs ~25 ms to import)
        self._runner: web.AppRunner | None = None
        self._sock: socket.socket | None = None
        self._serving: asyncio.Task[None] | None = None  # serving starts after aiohttp is imported
        self._stopping = False
        self._live_ssl: ssl.SSLContext | None = None  # what new HTTPS handshakes get (swap_tls)

    @property
    def registry(self) -> Any:
        """The Prometheus registry behind /metrics (``metrics.make_registry``), made on first use."""
        if self._registry is None:
            from pynatsd.monitor import metrics

            self._registry = metrics.make_registry(self.server, certs=self.served_certs,
                                                   http_req_stats=self.req_stats)
        return self._registry

    @property
    def opts(self) -> ServerOptions:
        return self.server.opts  # type: ignore[no-any-return]

    def _extra_certs(self) -> list[ServedCert]:
        return [self._monitor_cert] if self._monitor_cert is not None else []

    def served_certs(self) -> list[ServedCert]:
        return served_certs(self.server, self._monitor_cert)

    @property
    def urls(self) -> list[str]:
        """For the ports file: ``["http://host:port"]`` once started."""
        if not self.port:
            return []
        host = self.opts.http_host
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1" if host != "::" else "::1"
        if ":" in host:
            host = f"[{host}]"
        return [f"{self.scheme}://{host}:{self.port}"]

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        opts = self.opts
        if opts.http_port and opts.https_port:
            raise ConfigError(f"can't specify both HTTP ({opts.http_port}) and HTTPs ({opts.https_port}) ports")
        if not opts.http_port and not opts.https_port:
            return
        ssl_ctx: ssl.SSLContext | None = None
        if opts.https_port:
            if opts.tls is None:
                raise ConfigError("TLS cert and key required for HTTPS")
            ssl_ctx = monitor_ssl_context(opts.tls, getattr(self.server, "tls", None))
            self._live_ssl = ssl_ctx
            ssl_ctx.sni_callback = self._pick_ssl  # reloaded certificates (swap_tls, helper R)
            choice = getattr(ssl_ctx, "pynatsd_choice", None)
            if choice is not None and not choice[0].by_name_only:
                # (helper C) the choice among keys of different kinds needs the ClientHello
                ssl_ctx._msg_callback = _keep_client_hello  # type: ignore[attr-defined]
            cert_file = first_cert_file(opts.tls)
            na = cert_not_after_from_file(cert_file)
            if na is not None:
                self._monitor_cert = ServedCert("monitor", na, cert_file or "")
            port, self.scheme = opts.https_port, "https"
        else:
            port, self.scheme = opts.http_port, "http"
        if port < 0:
            port = 0
        from pynatsd.server import listen_socket  # the client listener's binding, as nats-server

        host = opts.http_host or "0.0.0.0"
        try:
            sock = listen_socket(host, port)
        except OSError as e:
            raise OSError(e.errno, f"can't listen to the monitor port: {e}") from e
        self._sock = sock
        self.port = int(sock.getsockname()[1])
        if hasattr(self.server, "http_port"):
            self.server.http_port = self.port
        log.info("Starting %s monitor on %s", self.scheme, f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}")
        await self.cert_watch.start()
        if web is None and "aiohttp.web" in sys.modules:
            _import_web()  # already loaded (by whoever): nothing to wait for
        if web is not None:
            await self._serve(sock, ssl_ctx)
        else:
            self._serving = asyncio.ensure_future(self._serve_after_import(sock, ssl_ctx))

    async def _serve_after_import(self, sock: socket.socket, ssl_ctx: ssl.SSLContext | None) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def finish(error: BaseException | None) -> None:
            if not done.done():
                if error is None:
                    done.set_result(None)
                else:
                    done.set_exception(error)

        def work() -> None:
            error: BaseException | None = None
            try:
                _import_web()
            except BaseException as e:  # handed to the loop, reported there
                error = e
            try:
                loop.call_soon_threadsafe(finish, error)
            except RuntimeError:
                pass  # the loop is gone: the server stopped meanwhile

        # a daemon thread of its own: neither process exit nor the default executor waits for it
        threading.Thread(target=work, name="pynatsd-monitor-import", daemon=True).start()
        try:
            await done
            if not self._stopping:
                await self._serve(sock, ssl_ctx)
        except Exception as e:
            log.error("Monitoring listener failed to start: %s", e)

    async def _serve(self, sock: socket.socket, ssl_ctx: ssl.SSLContext | None) -> None:
        app = web.Application(handler_args={"max_field_size": 1 << 16})
        app.on_response_prepare.append(_drop_server_header)
        self._add_routes(app)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.SockSite(runner, sock, ssl_context=ssl_ctx)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self._sock = None  # the runner closes it now

    async def stop(self) -> None:
        self._stopping = True
        await self.cert_watch.stop()
        serving, self._serving = self._serving, None
        if serving is not None and not serving.done():
            serving.cancel()
            try:
                await serving
            except asyncio.CancelledError:
                pass
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    # -- TLS reload (helper R: pynatsd.reload, pynatsd.tls.watch) ----------------------------------

    def swap_tls(self, ssl_ctx: ssl.SSLContext, cert_file: str | None, not_after: Any) -> None:
        """Serve ``ssl_ctx`` (a new certificate) to new HTTPS handshakes; connections already
        established keep theirs. ``not_after`` (aware datetime) updates the expiry watch."""
        self._live_ssl = ssl_ctx
        if not_after is not None:
            self._monitor_cert = ServedCert("monitor", not_after, cert_file or "")

    def _pick_ssl(self, sslobj: Any, server_name: str | None, ctx: ssl.SSLContext) -> None:
        # Called for every ClientHello (with or without SNI) on the listener's first context:
        # switching the handshake to the live context makes it present the reloaded certificate.
        live = self._live_ssl
        choice = getattr(live, "pynatsd_choice", None)
        if choice is not None:  # (helper C) a ``certs`` list: Go's choice, as on the client port
            seen = getattr(_hello, "seen", None)
            _hello.seen = None
            chooser, ctxs = choice
            live = ctxs[chooser.index(server_name, seen[1] if seen is not None and seen[0] is sslobj else None)]
        if live is not None and live is not ctx:
            sslobj.context = live

    # -- routing -----------------------------------------------------------------------------------

    def _add_routes(self, app: web.Application) -> None:
        base = self.opts.http_base_path
        routes: list[tuple[str, Handler]] = [
            ("/varz", self._varz),
            ("/connz", self._connz),
            ("/subsz", self._subsz),
            ("/subscriptionsz", self._subsz),
            ("/routez", self._routez),
            ("/gatewayz", self._gatewayz),
            ("/leafz", self._leafz),
            ("/accountz", self._accountz),
            ("/healthz", self._healthz),
            ("/healthz/live", self._live),
            ("/healthz/ready", self._ready),
            ("/metrics", self._metrics),
        ]
        root = _join(base, "/")
        app.router.add_route("*", root, self._root)
        for path, handler in routes:
            full = _join(base, path)
            if full != root:
                app.router.add_route("*", full, handler)
        app.router.add_route("*", "/{tail:.*}", self._not_found)

    def _count(self, path: str) -> None:
        self.req_stats[path] = self.req_stats.get(path, 0) + 1

    async def _not_found(self, request: web.Request) -> web.Response:
        return web.Response(
            body=b"404 page not found\n",
            status=404,
            headers={"Content-Type": "text/plain; charset=utf-8", "X-Content-Type-Options": "nosniff"},
        )

    async def _root(self, request: web.Request) -> web.Response:
        import html  # only this page needs it (html.entities is a large table)

        self._count("/")
        links = "\n".join(
            f'    <a href=".{html.escape(path)}">{html.escape(label)}<span class="endpoint"> {path}</span></a>'
            for path, label in INDEX
        )
        page = f"""<html lang="en">
  <head>
    <title>pynatsd monitoring</title>
    <style type="text/css">
      body {{ font-family: ui-sans-serif, system-ui, sans-serif; margin-left: 32px }}
      a {{ display: block; margin-left: 7px; padding-bottom: 6px; text-decoration: none }}
      .endpoint {{ font-size: 12px; color: #999; font-family: monospace }}
    </style>
  </head>
  <body>
    <h2>pynatsd v{html.escape(__version__)}</h2>
    <p>NATS protocol compatible with nats-server v{html.escape(NATS_SERVER_COMPAT_VERSION)}</p>
{links}
  </body>
</html>
"""
        return web.Response(body=page.encode(), headers={"Content-Type": "text/html; charset=utf-8"})

    async def _guard(self, fn: Callable[[], web.Response]) -> web.Response:
        try:
            return fn()
        except ep.BadRequest as e:
            return _text(str(e), 400)

    async def _varz(self, request: web.Request) -> web.Response:
        self._count("/varz")
        return _json(ep.varz(self.server, http_req_stats=self.req_stats, proc=self.proc))

    async def _connz(self, request: web.Request) -> web.Response:
        def build() -> web.Response:
            o = ep.parse_connz_query(request.query)
            self._count("/connz")  # nats-server counts /connz after its parameters decode
            return _json(ep.connz(self.server, o))

        return await self._guard(build)

    async def _subsz(self, request: web.Request) -> web.Response:
        self._count("/subsz")
        return await self._guard(lambda: _json(ep.subsz(self.server, request.query)))

    async def _routez(self, request: web.Request) -> web.Response:
        def build() -> web.Response:
            ep.q_subs(request.query)
            self._count("/routez")
            return _json(ep.routez(self.server, request.query))

        return await self._guard(build)

    async def _gatewayz(self, request: web.Request) -> web.Response:
        self._count("/gatewayz")
        return await self._guard(lambda: _json(ep.gatewayz(self.server, request.query)))

    async def _leafz(self, request: web.Request) -> web.Response:
        self._count("/leafz")
        return await self._guard(lambda: _json(ep.leafz(self.server, request.query)))

    async def _accountz(self, request: web.Request) -> web.Response:
        self._count("/accountz")
        return await self._guard(lambda: _json(ep.accountz(self.server, request.query)))

    def _not_ready_reason(self) -> str | None:
        """None when the client listener accepts connections, else what is not ready (as
        nats-server: in lame duck mode its client listener is closed, so it is not ready)."""
        srv = self.server
        if self._stopping or not getattr(srv, "running", True) or getattr(srv, "lame_duck_mode", False):
            return "server"
        if not getattr(srv, "port", 0):
            return "server"
        return None

    def _health(self, request: web.Request) -> web.Response:
        reason = self._not_ready_reason()
        res = ep.healthz(
            self.server, request.query, ready=reason is None, not_ready_reason=reason or "",
            cert_problems=self.cert_watch.problems(),
        )
        if res.status_code != 200:
            log.warning("Healthcheck failed: %s", res.body.get("error") or f"{len(res.body.get('errors', []))} errors")
        return _json(res.body, res.status_code, indent=False)

    async def _healthz(self, request: web.Request) -> web.Response:
        self._count("/healthz")
        return await self._guard(lambda: self._health(request))

    async def _ready(self, request: web.Request) -> web.Response:
        self._count("/healthz/ready")
        return await self._guard(lambda: self._health(request))

    async def _live(self, request: web.Request) -> web.Response:
        self._count("/healthz/live")
        # answering at all proves the event loop (shared with the client connections) runs
        if self._stopping or not getattr(self.server, "running", True):
            return _json({"status": "error", "error": "server is shutting down"}, 503, indent=False)
        return _json({"status": "ok"}, indent=False)

    async def _metrics(self, request: web.Request) -> web.Response:
        self._count("/metrics")
        from pynatsd.monitor import metrics

        body, content_type = metrics.render(self.registry, request.headers.get("Accept"))
        return web.Response(body=body, headers={"Content-Type": content_type})

