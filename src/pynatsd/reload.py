"""Configuration reload: what may change while the server runs, the difference between the
running options and a new set, and applying that difference.

``reload_server(server, new)`` is what ``Server.reload`` (SIGHUP, ``--signal reload``) runs. It
works in two phases so that a bad configuration changes nothing:

1. ``plan_reload`` compares the options field by field in nats-server's order. The first
   change to an option that cannot change at run time refuses the whole reload with
   nats-server's text ``config reload not supported for <Field>: old=<v>, new=<v>``. Then every
   TLS context the new options need is built: the client port, the route port (server and
   dialing side), the HTTPS monitoring port. Building re-reads the certificate, key and CA
   files, so a reload with an unchanged config file still picks up rotated certificates (as
   nats-server does) and a missing, mismatched or garbage file fails the reload here, with one
   line, while the old contexts keep serving.
2. ``apply_plan`` installs the new options and contexts. New handshakes use the new
   certificates; established TLS connections are kept (no renegotiation). Then, as nats-server:
   logging is reconfigured; max_payload/max_control_line reach every connection; a lower
   max_connections closes random clients; a changed authorization re-authenticates every
   client with its original CONNECT (and its certificate for verify_and_map): removed users are
   closed, clients that no longer pass get ``Authorization Violation``, subscriptions no longer
   permitted are removed with their ``(sid "...")`` -ERR. ``Reloaded: ...`` lines name each
   change, then ``Reloaded server configuration (<digest>)``. Finally a changed pin set is
   checked against every live TLS client, route and gateway: those whose certificate key is not in the
   NEW set are closed (reason ``TLS Handshake Failure``, no -ERR) and
   ``Disconnect <n> clients due to pinned certs reload`` is logged. (nats-server 2.15 checks
   client connections against the old set, nats-server issue #8270; this follows the
   documented intent.)

``refresh_tls(server, block)`` rebuilds one ``tls {}`` block's contexts from the files it names,
without a config change; ``pynatsd.tls.watch`` calls it for blocks with ``watch: true``.

The HTTPS monitoring port gets a new stdlib context too, handed to each new handshake by the
listener's SNI callback; a changed cipher list or minimum version there needs a restart (the
first context's protocol settings stay), the certificate does not.

Cluster settings: host and port are refused (nats-server's texts); ``routes`` (removed ones
closed and not re-dialed, added ones dialed), ``permissions`` (interest re-sent accordingly),
``name`` and the timing/retry settings are applied by ``RouteManager.reload``
(pynatsd.cluster.routes, whose ``RELOADABLE`` lists them), besides the ``tls {}`` block.

Differences from nats-server: cluster authorization, ``no_advertise`` (and any cluster field not
in ``RELOADABLE``) are refused with their name, not applied; ``Reloaded: authorization
users`` / ``accounts`` are logged only when they changed (nats-server logs them on every reload).
"""

from __future__ import annotations

import dataclasses
import logging
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pynatsd.auth import Authorizer, BcryptCheck
from pynatsd.client import (
    REASON_AUTH_FAILURE,
    REASON_CLIENT_CLOSED,
    REASON_MAX_ACCOUNT_CONNECTIONS,
    REASON_MAX_CONNECTIONS,
    REASON_MAX_SUBS,
    REASON_TLS_FAILURE,
)
from pynatsd.config.options import (
    DEFAULT_TLS_TIMEOUT,
    RANDOM_PORT,
    ClusterOptions,
    ServerOptions,
    TLSOptions,
)
from pynatsd.errors import ConfigError
from pynatsd.protocol import wire

if TYPE_CHECKING:
    import ssl

    from pynatsd.server import Server
    from pynatsd.tls.context import ClientTLS, ServerTLS
    from pynatsd.tls.watch import Fingerprint

log = logging.getLogger("pynatsd")

# -- formatting values as nats-server's messages do (Go's %v) -----------------------------------

_DURATIONS = frozenset({"ping_interval", "write_deadline", "lame_duck_duration", "lame_duck_grace_period"})


def go_value(v: Any) -> str:
    """A value as Go's ``%v`` prints the matching nats-server option."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return ""
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else repr(v)
    if isinstance(v, tuple | list | frozenset | set):
        items = sorted(v) if isinstance(v, frozenset | set) else v
        return "[" + " ".join(go_value(x) for x in items) + "]"
    return str(v)


def _fmt(name: str, v: Any) -> str:
    if name in _DURATIONS and isinstance(v, int | float):
        from pynatsd.config.load import format_duration

        return format_duration(float(v))
    return go_value(v)


def _gw_gist(g: Any) -> str:
    if g is None:
        return "{}"
    remotes = " ".join(f"{r.name}:{','.join(r.urls)}" for r in g.gateways)
    return f"{{{g.name} {g.host} {g.port} [{remotes}] reject_unknown={str(g.reject_unknown_cluster).lower()}}}"


def not_supported(go_name: str, old: Any, new: Any, name: str = "") -> ConfigError:
    return ConfigError(f"config reload not supported for {go_name}: old={_fmt(name, old)}, new={_fmt(name, new)}")


# -- the plan ----------------------------------------------------------------------------------------

@dataclass
class ReloadPlan:
    """A validated reload: the new options and every context they need, built and ready."""

    old: ServerOptions
    new: ServerOptions
    notices: list[str] = field(default_factory=list)
    client_tls: ServerTLS | None = None
    monitor_ssl: ssl.SSLContext | None = None
    cluster_tls: tuple[ServerTLS, ClientTLS] | None = None
    leaf_tls: Any = None  # (leafnodes helper L) pynatsd.cluster.leafnodes.LeafReload
    gateway_tls: tuple[Any, dict[str, Any]] | None = None  # (gateways helper G)
    authorizer: Authorizer | None = None
    auth_changed: bool = False
    client_pins_changed: bool = False
    cluster_pins_changed: bool = False
    gateway_pins_changed: bool = False
    # file fingerprints taken before the contexts were built (for the watch's baseline)
    fingerprints: dict[str, Fingerprint] = field(default_factory=dict)


def _tls_eff(t: TLSOptions | None) -> tuple[float, bool, frozenset[str] | None, int, bool, float]:
    """(timeout, verify_and_map, pins, rate limit, handshake first, fallback delay) as
    nats-server holds them, with its defaults when there is no tls block."""
    if t is None:
        return DEFAULT_TLS_TIMEOUT, False, None, 0, False, 0.0
    hf = t.handshake_first
    first = hf is True or (not isinstance(hf, bool) and hf > 0)
    fallback = float(hf) if not isinstance(hf, bool) else 0.0
    pins = frozenset(p.lower() for p in t.pinned_certs) if t.pinned_certs else None
    return t.timeout or DEFAULT_TLS_TIMEOUT, t.verify_and_map, pins, t.connection_rate_limit, first, fallback


def _go_tls_config_differs(ot: TLSOptions | None, nt: TLSOptions | None, running: Any) -> bool:
    """(scenarios2) Whether nats-server 2.15 finds its rebuilt client ``tls.Config`` changed,
    which is when it logs ``Reloaded: tls = ...``: TLS turned on or off, a setting that goes into
    that config (not timeout, pinned_certs, handshake_first: they have lines of their own), a new
    certificate in the files (``running``: the ServerTLS in use); and on every reload while a
    ca_file (or ocsp_peer) is set, as Go's CA pool and callbacks never compare equal."""
    if ot is None or nt is None:
        return ot is not nt
    if ot.ca_file or nt.ca_file or ot.ocsp_peer is not None or nt.ocsp_peer is not None:
        return True

    def settings(t: TLSOptions) -> tuple[Any, ...]:
        return (t.verify or t.verify_and_map, t.insecure, t.cipher_suites, t.curve_preferences, t.min_version,
                t.allow_insecure_cipher_suites, t.cert_file, t.key_file, t.key_password_file, t.certificates)

    if settings(ot) != settings(nt) or running is None:
        return True
    from cryptography import x509

    files = [nt.cert_file] if nt.cert_file else [c for c, _ in nt.certificates]
    served = list(running.certs) or [running.cert]
    try:
        leaves = [x509.load_pem_x509_certificates(open(f, "rb").read())[0] for f in files]
    except (OSError, ValueError, IndexError):
        return True  # the build that follows says what is wrong
    return leaves != served


def _one_line(where: str, e: BaseException) -> ConfigError:
    if isinstance(e, ConfigError):
        return e
    text = f"{where}: {e}".replace("\r", " ").replace("\n", " ")
    return ConfigError(text)


class _Differ:
    """Walks the options in nats-server's ``Options`` field order: notices for reloadable
    changes, the first non-reloadable change raises."""

    def __init__(self, server: Server, old: ServerOptions, new: ServerOptions) -> None:
        self.server = server
        self.old = old
        self.new = new
        self.notices: list[str] = []
        self.seen: set[str] = {"config_file", "warnings", "config_warnings", "config_digest", "tls_watch_interval"}

    def changed(self, name: str) -> bool:
        self.seen.add(name)
        return bool(getattr(self.old, name) != getattr(self.new, name))

    def refuse(self, name: str, go_name: str) -> None:
        if self.changed(name):
            raise not_supported(go_name, getattr(self.old, name), getattr(self.new, name), name)

    def notice(self, name: str, label: str | None = None) -> None:
        if self.changed(name):
            self.notices.append(f"Reloaded: {label or name} = {_fmt(name, getattr(self.new, name))}")

    def run(self) -> list[str]:
        o, n = self.old, self.new
        self.refuse("server_name", "ServerName")
        self.refuse("host", "Host")
        self.refuse("port", "Port")
        if self.changed("client_advertise"):
            # nats-server's own wording for this one ("Reload:", not "Reloaded:")
            self.notices.append(f"Reload: client_advertise = {go_value(n.client_advertise)}")
        self.notice("trace")
        self.notice("debug")
        self.notice("trace_verbose")
        self.refuse("no_header_support", "NoHeaderSupport")
        self.notice("logtime")
        self.notice("logtime_utc")
        self.notice("max_connections")
        self.refuse("max_subscriptions", "MaxSubs")
        self.refuse("max_sub_tokens", "MaxSubTokens")
        self._auth()
        self.notice("ping_interval")
        self.notice("ping_max")
        self.refuse("http_host", "HTTPHost")
        self.refuse("http_port", "HTTPPort")
        self.refuse("http_base_path", "HTTPBasePath")
        self.refuse("https_port", "HTTPSPort")
        old_to = Authorizer(o.auth, o.tls).timeout
        new_to = Authorizer(n.auth, n.tls).timeout
        if old_to != new_to:
            self.notices.append(f"Reloaded: authorization timeout = {go_value(float(new_to))}")
        self.notice("max_control_line")
        self.notice("max_payload")
        self.refuse("max_pending", "MaxPending")
        self._cluster()
        self._leafnodes()
        self._gateway()
        self.notice("pid_file")
        self.notice("ports_file_dir")
        self.notice("log_file")
        self.refuse("log_size_limit", "LogSizeLimit")
        self.notice("syslog")
        self.notice("remote_syslog")
        self._cluster_routes()  # nats-server keeps the routes apart from the cluster block, here
        self._tls()
        self.refuse("allow_non_tls", "AllowNonTLS")
        self.notice("write_deadline")
        self.refuse("max_closed_clients", "MaxClosedClients")
        self.refuse("lame_duck_duration", "LameDuckDuration")
        self.refuse("lame_duck_grace_period", "LameDuckGracePeriod")
        self.notice("max_traced_msg_len")
        # pynatsd's own options
        self.refuse("fips", "FIPS")
        self.notice("tls_expiry_warn_days")
        # (helper O) OCSP: reloadable; the monitors restart on every reload (pynatsd.tls.ocsp)
        if self.changed("ocsp"):
            self.notices.append("Reloaded: OCSP")
        if self.changed("ocsp_cache"):
            self.notices.append("Reloaded OCSP peer cache")
        self.seen.add("store_dir")
        # anything else (an option added later and not classified here) is refused by name
        for f in dataclasses.fields(ServerOptions):
            if f.name not in self.seen:
                self.refuse(f.name, f.name)
        return self.notices

    def _auth(self) -> None:
        self.seen.add("auth")
        # (accounts helper A) accounts, their users, imports, exports and limits reload
        self.changed("accounts")
        self.refuse("system_account", "SystemAccount")
        oa, na = self.old.auth, self.new.auth
        # (nkeys helper N) nats-server reports nkey users and password users apart
        nk_changed = [u for u in oa.users if u.nkey] != [u for u in na.users if u.nkey]
        if nk_changed:
            self.notices.append("Reloaded: authorization nkey users")
        # (scenarios2) nats-server 2.15 logs these two on every reload, changed or not (its
        # comparison of the rebuilt users and accounts never finds them equal)
        self.notices.append("Reloaded: authorization users")
        self.notices.append("Reloaded: accounts")
        if oa.no_auth_user != na.no_auth_user:
            # nats-server allows only dropping no_auth_user together with that user
            still_there = any(u.username == oa.no_auth_user for u in na.users)
            if not (oa.no_auth_user and not na.no_auth_user and not still_there):
                raise not_supported("NoAuthUser", oa.no_auth_user, na.no_auth_user)
        if oa.user != na.user:
            self.notices.append("Reloaded: authorization username")
        if oa.password != na.password:
            self.notices.append("Reloaded: authorization password")
        if oa.token != na.token:
            self.notices.append("Reloaded: authorization token")

    def _cluster(self) -> None:
        self.seen.add("cluster")
        oc, nc = self.old.cluster, self.new.cluster
        if (oc is None) != (nc is None):
            raise not_supported("Cluster", "enabled" if oc else "disabled", "enabled" if nc else "disabled")
        if oc is None or nc is None:
            return
        if oc.host != nc.host:
            raise ConfigError(f"config reload not supported for cluster host: old={oc.host}, new={nc.host}")
        if oc.port != nc.port:
            raise ConfigError(f"config reload not supported for cluster port: old={oc.port}, new={nc.port}")
        from pynatsd.cluster.routes import RELOADABLE

        reloaded = False
        for f in dataclasses.fields(ClusterOptions):
            if f.name in ("tls", "source", "host", "port", "routes"):
                continue
            a, b = getattr(oc, f.name), getattr(nc, f.name)
            if a != b:
                if f.name in RELOADABLE:
                    reloaded = True
                    continue
                if f.name == "password":
                    a = b = "[REDACTED]"
                raise ConfigError(f"config reload not supported for cluster {f.name}: old={go_value(a)}, new={go_value(b)}")
        if reloaded or oc.tls is not None or nc.tls is not None:
            self.notices.append("Reloaded: cluster")  # its TLS is rebuilt (files re-read) on every reload

    def _leafnodes(self) -> None:
        """(leafnodes helper L) What nats-server 2.15 lets a reload change in ``leafnodes {}``:
        the TLS blocks (certificates re-read) and the list of remotes (added ones dialed,
        removed ones closed); every other field is refused with its Go name."""
        self.seen.add("leafnodes")
        ol, nl = self.old.leafnodes, self.new.leafnodes
        if (ol is None) != (nl is None):
            raise not_supported("LeafNode", "enabled" if ol else "disabled", "enabled" if nl else "disabled")
        if ol is None or nl is None:
            return
        from pynatsd.config.options import LeafNodeOptions, LeafRemoteOptions

        go_names = {
            "host": "Host", "port": "Port", "advertise": "Advertise", "no_advertise": "NoAdvertise",
            "username": "Username", "password": "Password", "users": "Users", "auth_timeout": "AuthTimeout",
            "reconnect": "ReconnectInterval", "min_version": "MinVersion",
        }

        def auth_timeout(lo: LeafNodeOptions) -> float:
            to = lo.tls.timeout if lo.tls is not None and lo.tls.timeout else 2.0
            return lo.auth_timeout or (to + 1.0 if lo.tls is not None else 2.0)

        for f in dataclasses.fields(LeafNodeOptions):
            if f.name in ("tls", "remotes", "source"):
                continue
            a, b = getattr(ol, f.name), getattr(nl, f.name)
            if f.name == "auth_timeout":
                a, b = auth_timeout(ol), auth_timeout(nl)
            if f.name == "port" and b == RANDOM_PORT:
                continue
            if a != b:
                if f.name == "password":
                    a = b = "[REDACTED]"
                if f.name == "reconnect":
                    a, b = _fmt("write_deadline", a), _fmt("write_deadline", b)
                else:
                    a, b = go_value(a), go_value(b)
                raise ConfigError(
                    f'config reload not supported for LeafNode: field "{go_names[f.name]}": old={a}, new={b}'
                )
        ot, nt = ol.tls, nl.tls
        if (ot is None) != (nt is None):
            raise ConfigError(
                f'config reload not supported for LeafNode: field "TLSConfig": old={"set" if ot else "nil"}, '
                f'new={"set" if nt else "nil"}'
            )
        if ot is not None and nt is not None:
            for name, go in (("verify_and_map", "TLSMap"), ("pinned_certs", "TLSPinnedCerts")):
                if getattr(ot, name) != getattr(nt, name):
                    raise ConfigError(
                        f'config reload not supported for LeafNode: field "{go}": old={go_value(getattr(ot, name))}, '
                        f"new={go_value(getattr(nt, name))}"
                    )
        old_remotes = {(r.urls, r.account or "$G"): r for r in ol.remotes}
        for r in nl.remotes:
            key = (r.urls, r.account or "$G")
            prev = old_remotes.get(key)
            if prev is None:
                continue
            for f in dataclasses.fields(LeafRemoteOptions):
                if f.name in ("tls", "source", "urls", "account"):
                    continue
                a, b = getattr(prev, f.name), getattr(r, f.name)
                if a != b:
                    go = "".join(p.capitalize() for p in f.name.split("_"))
                    urls = "[" + ",".join(wire.go_quote(u) for u in r.urls) + "]"
                    raise ConfigError(
                        f"config reload not supported for LeafNode: remote urls={urls}, account={wire.go_quote(key[1])}: "
                        f'field "{go}": old={go_value(list(a) if isinstance(a, tuple) else a)}, '
                        f"new={go_value(list(b) if isinstance(b, tuple) else b)}"
                    )
        if ot is not None or [(r.urls, r.account) for r in ol.remotes] != [(r.urls, r.account) for r in nl.remotes]:
            self.notices.append("Reloaded: leafnodes")
    def _gateway(self) -> None:
        # (gateways helper G) as nats-server: only the tls blocks may change (rebuilt, files
        # re-read, on every reload); any other gateway change refuses the reload
        self.seen.add("gateway")
        from pynatsd.cluster.gateways import tls_reload_refused, without_tls

        og, ng = without_tls(self.old.gateway), without_tls(self.new.gateway)
        if og is not None and ng is not None:
            og = dataclasses.replace(og, source=ng.source)
        if og != ng or tls_reload_refused(self.old.gateway, self.new.gateway):
            raise ConfigError(
                f"config reload not supported for Gateway: old={_gw_gist(self.old.gateway)}, "
                f"new={_gw_gist(self.new.gateway)}"
            )
        g = self.new.gateway
        if g is not None and (g.tls is not None or any(r.tls is not None for r in g.gateways)):
            self.notices.append("Reloaded: gateway TLS")  # rebuilt from its files

    def _cluster_routes(self) -> None:
        oc, nc = self.old.cluster, self.new.cluster
        if oc is None or nc is None or oc.routes == nc.routes:
            return
        from pynatsd.cluster.routes import parse_route_url

        for u in nc.routes:
            try:
                parse_route_url(u)
            except ValueError as e:
                raise ConfigError(f"error parsing route url [{u!r}]: {e}") from None
        self.notices.append("Reloaded: cluster routes")

    def _tls(self) -> None:
        self.seen.add("tls")
        ot, nt = self.old.tls, self.new.tls
        o_to, o_map, o_pins, o_rate, o_first, o_fb = _tls_eff(ot)
        n_to, n_map, n_pins, n_rate, n_first, n_fb = _tls_eff(nt)
        if o_to != n_to:
            self.notices.append(f"Reloaded: tls timeout = {go_value(float(n_to))}")
        if o_map != n_map:
            raise not_supported("TLSMap", o_map, n_map)
        if _go_tls_config_differs(ot, nt, self.server.tls):
            # (the block is rebuilt from its files on every reload; the line only when it differs)
            self.notices.append(f"Reloaded: tls = {'enabled' if nt is not None else 'disabled'}")
        if o_pins != n_pins:
            self.notices.append(f"Reloaded: {len(n_pins or ())} pinned_certs")
        if o_rate != n_rate:
            raise not_supported("TLSRateLimit", o_rate, n_rate)
        if o_first != n_first:
            self.notices.append(f"Reloaded: Client TLS handshake first: {go_value(n_first)}")
        if o_fb != n_fb:
            from pynatsd.config.load import format_duration

            self.notices.append(f"Reloaded: Client TLS handshake first fallback delay: {format_duration(n_fb)}")


def _tls_blocks(opts: ServerOptions) -> list[tuple[str, TLSOptions]]:
    out = []
    if opts.tls is not None:
        out.append(("tls", opts.tls))
    if opts.cluster is not None and opts.cluster.tls is not None:
        out.append(("cluster.tls", opts.cluster.tls))
    return out


def build_cluster_tls(tls: TLSOptions, fips: bool) -> tuple[ServerTLS, ClientTLS]:
    """Both sides of the route port's TLS, as the route manager builds them at start: the
    accepting side always requires and verifies the peer certificate (nats-server forces it)."""
    from pynatsd.tls.context import build_client_context, build_server_context

    server_side = dataclasses.replace(tls, verify=True)
    return (
        build_server_context(server_side, fips=fips, where="cluster.tls"),
        build_client_context(tls, fips=fips, where="cluster.tls"),
    )


def _monitor_https(server: Server) -> bool:
    return server.monitor is not None and bool(server.opts.https_port) and hasattr(server.monitor, "swap_tls")


def _build_monitor_ssl(tls: TLSOptions, built: ServerTLS) -> ssl.SSLContext:
    from pynatsd.monitor.http import monitor_ssl_context

    return monitor_ssl_context(tls, built)


def plan_reload(server: Server, new: ServerOptions) -> ReloadPlan:
    """Validate ``new`` against the running options and build everything it needs; raises
    ConfigError (one line) and changes nothing on the server."""
    from pynatsd.tls.watch import fingerprints, tls_files

    old = server.opts
    # A random port (-1) in the new options means "keep the one bound" (nats-server does it too).
    if new.port == RANDOM_PORT:
        new = dataclasses.replace(new, port=old.port)
    if new.leafnodes is not None and old.leafnodes is not None and new.leafnodes.port == RANDOM_PORT:
        new = dataclasses.replace(new, leafnodes=dataclasses.replace(new.leafnodes, port=old.leafnodes.port))
    if new.cluster is not None and old.cluster is not None and new.cluster.port == RANDOM_PORT:
        new = dataclasses.replace(new, cluster=dataclasses.replace(new.cluster, port=old.cluster.port))
    plan = ReloadPlan(old=old, new=new)
    plan.notices = _Differ(server, old, new).run()
    if new.https_port and new.tls is None:
        raise ConfigError("TLS cert and key required for HTTPS")
    watched = [f for _, t in _tls_blocks(new) if t.watch for f in tls_files(t)]
    plan.fingerprints = fingerprints(watched)
    where = "tls"
    try:
        if new.tls is not None:
            plan.client_tls = _build_client_tls(new)
            if _monitor_https(server):
                where = "HTTPS monitoring port"
                plan.monitor_ssl = _build_monitor_ssl(new.tls, plan.client_tls)
        if new.cluster is not None and new.cluster.tls is not None:
            where = "cluster.tls"
            plan.cluster_tls = build_cluster_tls(new.cluster.tls, new.fips)
        if new.leafnodes is not None and server.leafs is not None:
            where = "leafnodes.tls"
            plan.leaf_tls = server.leafs.build_reload(new.leafnodes)
        if new.gateway is not None:
            from pynatsd.cluster.gateways import build_gateway_tls

            where = "gateway.tls"
            plan.gateway_tls = build_gateway_tls(new.gateway, new.fips)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever a TLS library raises, one line
        raise _one_line(where, e) from None
    plan.authorizer = Authorizer(new.auth, new.tls)
    plan.auth_changed = new.auth != old.auth
    plan.client_pins_changed = _tls_eff(old.tls)[2] != _tls_eff(new.tls)[2]
    old_cp = _tls_eff(old.cluster.tls if old.cluster else None)[2]
    new_cp = _tls_eff(new.cluster.tls if new.cluster else None)[2]
    plan.cluster_pins_changed = old_cp != new_cp
    old_gp = _tls_eff(old.gateway.tls if old.gateway else None)[2]
    new_gp = _tls_eff(new.gateway.tls if new.gateway else None)[2]
    plan.gateway_pins_changed = old_gp != new_gp
    return plan


def _build_client_tls(opts: ServerOptions) -> ServerTLS:
    from pynatsd.tls.context import build_server_context

    assert opts.tls is not None
    return build_server_context(opts.tls, fips=opts.fips, where="tls")


# -- applying ------------------------------------------------------------------------------------------


def install_client_tls(server: Server, opts: ServerOptions, built: ServerTLS | None) -> None:
    """New client handshakes use ``built`` (None: no TLS); the INFO flags follow."""
    if built is not None:  # (helper O) OCSP stapling callback and peer check on the new context
        if getattr(server, "ocsp", None) is None:
            from pynatsd.tls.ocsp import OCSPManager

            server.ocsp = OCSPManager(server)
        built = server.ocsp.peer_tls(opts, built)
    server.tls = built
    tlso = opts.tls
    if built is None or tlso is None:
        server.tls = None
        server.tls_handshake_first = False
        server.tls_required = server.tls_available = server.tls_verify = server.tls_map_users = False
        return
    server.tls_handshake_first = tlso.handshake_first
    server.tls_required = (not opts.allow_non_tls) or tlso.handshake_first is True
    server.tls_available = not server.tls_required
    server.tls_verify = bool(built.verify)
    server.tls_map_users = bool(built.map_users)


def install_cluster_tls(server: Server, copts: ClusterOptions, built: tuple[ServerTLS, ClientTLS] | None) -> None:
    """New route handshakes (accepted and dialled) use ``built``; established routes stay."""
    routes = server.routes
    if routes is None:
        return
    routes.copts = copts
    routes.server_tls, routes.client_tls = built if built is not None else (None, None)
    if built is not None:  # (helper O) OCSP stapling callback on the new route context
        if getattr(server, "ocsp", None) is None:
            from pynatsd.tls.ocsp import OCSPManager

            server.ocsp = OCSPManager(server)
        server.ocsp.route_tls(built[0])
    tls = copts.tls
    routes.tls_timeout = tls.timeout if tls is not None else DEFAULT_TLS_TIMEOUT
    if copts.auth_timeout is not None:
        routes.auth_timeout = copts.auth_timeout
    else:
        routes.auth_timeout = routes.tls_timeout + 1.0 if tls is not None else 2.0


def apply_plan(server: Server, plan: ReloadPlan) -> None:
    old, new = plan.old, plan.new
    server.opts = new
    if server.manage_logging:
        from pynatsd.log import configure_logging

        configure_logging(new)
    server.trace = new.trace or new.trace_verbose
    # (accounts helper A) accounts added, changed and dropped; imports rewired. Clients of a
    # dropped account had their user removed or moved: reauthorize() below closes them
    server.accounts.configure(new)
    for c in server.clients.values():
        c.parser.max_payload = c.max_payload()
        c.parser.max_control_line = new.max_control_line
    if new.max_connections != old.max_connections:
        trim_connections(server)
    install_client_tls(server, new, plan.client_tls)
    if plan.monitor_ssl is not None and plan.client_tls is not None and new.tls is not None:
        from pynatsd.monitor.certwatch import first_cert_file

        server.monitor.swap_tls(plan.monitor_ssl, first_cert_file(new.tls), plan.client_tls.not_after)
    if new.cluster is not None:
        install_cluster_tls(server, new.cluster, plan.cluster_tls)
        if old.cluster is not None and server.routes is not None:
            server.routes.reload(old.cluster, new.cluster)  # routes, permissions, name, timing
    if plan.leaf_tls is not None and server.leafs is not None:
        server.leafs.reload(plan.leaf_tls)  # (leafnodes helper L) TLS contexts, remotes
    if server.gateways is not None and plan.gateway_tls is not None:
        server.gateways.install_tls(plan.gateway_tls)
    # (scenarios2) the notices before the clients are checked again, as nats-server logs them
    # while applying each option and re-authorizes afterwards
    for line in plan.notices:
        log.info("%s", line)
    assert plan.authorizer is not None
    server.authorizer = plan.authorizer
    if plan.auth_changed:
        reauthorize(server)
    for acc in server.accounts.limits_changed:
        enforce_account_limits(acc)
    for c in server.clients.values():
        c.update_fast_path()
    server.config_load_time = datetime.now(UTC)
    digest = f" ({new.config_digest})" if new.config_digest else ""
    log.info("Reloaded server configuration%s", digest)
    recheck_pins(server, plan)
    _ocsp_restart(server)
    watch = getattr(server, "tls_watch", None)
    if watch is not None or any(t.watch for _, t in _tls_blocks(new)):
        configure_watch(server, plan.fingerprints)
    _expiry_check(server)


def _ocsp_restart(server: Server) -> None:
    """(helper O) As nats-server: OCSP monitors and the peer cache restart after every reload
    (in the background; a failure is logged, the reload stands)."""
    mgr = getattr(server, "ocsp", None)
    if mgr is not None:
        mgr.reloaded()


def reload_server(server: Server, new: ServerOptions) -> None:
    """Validate ``new`` completely, then apply it. Raises ConfigError, applying nothing."""
    try:
        plan = plan_reload(server, new)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - a surprise while validating still fails in one line
        log.debug("reload validation failed", exc_info=True)
        raise _one_line("reload", e) from None
    apply_plan(server, plan)


def trim_connections(server: Server) -> None:
    """max_connections lowered below the client count: close random clients, each told why."""
    mc = server.opts.max_connections
    clients = list(server.clients.values())
    limit = 0 if mc < 0 else mc
    if mc == 0 or len(clients) <= limit:
        return
    random.shuffle(clients)
    for c in clients[: len(clients) - limit]:
        c.close(REASON_MAX_CONNECTIONS, wire.ERR_MAX_CONNECTIONS)


SUBS_LIMIT_CLOSE_DELAY = 0.02  # nats-server closes such a client about 20 ms after the -ERR


def enforce_account_limits(acc: Any) -> None:
    """(accounts helper A) An account's limits were changed by the reload: as nats-server, the
    oldest connections over max_connections are closed, and a connection at or over
    max_subscriptions gets the -ERR and is closed shortly after."""
    clients = sorted((c for c in acc.clients if not c.closed), key=lambda c: c.cid)
    mc = acc.opts.max_connections
    if 0 <= mc < len(clients):
        over = len(clients) - mc
        for c in clients[:over]:
            c.error(wire.ERR_MAX_ACCOUNT_CONNECTIONS)
            c.close(REASON_MAX_ACCOUNT_CONNECTIONS, wire.ERR_MAX_ACCOUNT_CONNECTIONS)
        clients = clients[over:]
    ms = acc.opts.max_subscriptions
    if ms >= 0:
        for c in clients:
            if len(c.subs) >= ms:
                c.send_err(wire.ERR_MAX_SUBS)
                c.server.loop.call_later(SUBS_LIMIT_CLOSE_DELAY, c.close, REASON_MAX_SUBS)


def reauthorize(server: Server) -> None:
    """Authorization changed: every client is checked again with what it sent in CONNECT."""
    auth = server.authorizer
    for c in list(server.clients.values()):
        if c.closed or not c.authenticated:
            continue
        if not auth.required:
            continue
        if c.auth is not None and not auth.user_still_valid(c.auth):
            c.close(REASON_CLIENT_CLOSED, flush=True)
            continue
        many = c._peer_cert_count() if server.tls_map_users and log.isEnabledFor(logging.DEBUG) else 1
        decision = auth.authenticate(c.creds, c.peer_cert(), map_users=server.tls_map_users, debug=c.debug,
                                     peer_certs=many)
        if isinstance(decision, BcryptCheck):
            decision = decision.verify()  # cached for a password that verified before
        if decision is None:
            c.error("authentication error")
            c.close(REASON_AUTH_FAILURE, wire.ERR_AUTH_VIOLATION)
            continue
        c._apply_auth(decision)
        perms = c.perms
        if perms is None:
            continue
        for sub in list(c.subs.values()):
            if not perms.can_subscribe(sub.subject, sub.queue):
                c.remove_sub(sub)
                c.send_err(wire.sub_reload_violation(sub.subject, sub.queue or None, sub.sid))
                # (nkeys helper N) nats-server's notice, naming the client as its CONNECT did
                q = f" using queue {wire.go_quote(sub.queue)}" if sub.queue else ""
                who = c._auth_user_label() or (f"User {wire.go_quote(c.user)}" if c.user else "")
                log.info("Removed sub %s%s (sid %s) for %s - not authorized",
                         wire.go_quote(sub.subject), q, wire.go_quote(sub.sid), who)


def _pinned(conn: Any, pins: frozenset[str]) -> bool:
    """Does the connection's peer leaf certificate carry a pinned key? (False without one.)"""
    from pynatsd.tls.identity import spki_sha256

    t = conn.transport
    if t is None or t is conn.raw_transport:
        return False
    try:
        cert = t.get_extra_info("peercert")
    except Exception:  # noqa: BLE001 - a closing transport
        return False
    return cert is not None and spki_sha256(cert) in pins


def recheck_pins(server: Server, plan: ReloadPlan) -> None:
    """Close live TLS clients, routes and gateways whose certificate key is not in the new pin
    set."""
    drop: list[Any] = []
    if plan.client_pins_changed:
        pins = _tls_eff(plan.new.tls)[2]
        if pins is not None:
            drop += [c for c in server.clients.values() if not c.closed and not _pinned(c, pins)]
    routes = server.routes
    if plan.cluster_pins_changed and routes is not None and plan.new.cluster is not None:
        pins = _tls_eff(plan.new.cluster.tls)[2]
        if pins is not None:
            drop += [r for r in list(routes.conns) if not r.closed and not _pinned(r, pins)]
    gateways = server.gateways
    if plan.gateway_pins_changed and gateways is not None and plan.new.gateway is not None:
        pins = _tls_eff(plan.new.gateway.tls)[2]
        if pins is not None:  # registered gateways, outbound and inbound, as nats-server
            live = [*gateways.outbound, *gateways.inbound.values()]
            drop += [g for g in live if not g.closed and not _pinned(g, pins)]
    if not drop:
        return
    log.info("Disconnect %d clients due to pinned certs reload", len(drop))
    for conn in drop:
        conn.close(REASON_TLS_FAILURE, flush=False)


def _expiry_check(server: Server) -> None:
    """Have the expiry watch look at the (possibly new) served certificates now."""
    for holder in (server.monitor, server):
        watch = getattr(holder, "cert_watch", None)
        if watch is not None and hasattr(watch, "check"):
            try:
                watch.check()
            except Exception:  # noqa: BLE001 - informational; never fail a reload over it
                log.debug("certificate expiry check after reload failed", exc_info=True)
            return


# -- refreshing a tls block from its files (the watch) --------------------------------------------------


def _listeners(server: Server, block: str) -> list[str]:
    if block == "tls":
        return ["client"] + (["monitor"] if _monitor_https(server) else [])
    return ["cluster"] if server.routes is not None else []


def refresh_tls(server: Server, block: str) -> bool:
    """Rebuild one tls block's contexts from its files (same options) and swap them in for
    every listener using them, only if all of them build. Logs the outcome; True on success."""
    from pynatsd.monitor.gofmt import rfc3339
    from pynatsd.tls.watch import first_cert

    opts = server.opts
    tlso = opts.tls if block == "tls" else (opts.cluster.tls if opts.cluster is not None else None)
    listeners = _listeners(server, block)
    if tlso is None or not listeners:
        return False
    source = first_cert(tlso)
    try:
        if block == "tls":
            built = _build_client_tls(opts)
            mon = _build_monitor_ssl(tlso, built) if "monitor" in listeners else None
            cluster_built = None
        else:
            cluster_built = build_cluster_tls(tlso, opts.fips)
            built = cluster_built[0]
            mon = None
    except Exception as e:  # noqa: BLE001 - one line, whatever failed
        msg = str(_one_line(block, e))
        log.error(
            "Failed to reload TLS certificate for %s from %s: %s; still serving the previous one",
            ", ".join(listeners), source, msg,
        )
        return False
    if block == "tls":
        install_client_tls(server, opts, built)
        if mon is not None:
            server.monitor.swap_tls(mon, source, built.not_after)
    else:
        assert opts.cluster is not None
        install_cluster_tls(server, opts.cluster, cluster_built)
    for name in listeners:
        if len(built.certs) > 1:  # a ``certs`` list: each file with its expiry
            served = ", ".join(f"{f} (expires {rfc3339(c.not_valid_after_utc)})"
                               for (f, _), c in zip(tlso.certificates, built.certs, strict=True))
            log.info("Reloaded TLS certificates for %s from %s", name, served)
            continue
        log.info("Reloaded TLS certificate for %s from %s (expires %s)", name, source, rfc3339(built.not_after))
    _ocsp_restart(server)  # (helper O) a new certificate needs its own status
    _expiry_check(server)
    return True


def configure_watch(server: Server, baseline: dict[str, Fingerprint] | None = None) -> None:
    """Start, update or stop the file watch for the blocks that have ``watch: true``."""
    from pynatsd.tls.watch import TLSFileWatch

    blocks = {name: t for name, t in _tls_blocks(server.opts) if t.watch}
    watch = getattr(server, "tls_watch", None)
    if watch is None:
        if not blocks:
            return
        interval = float(getattr(server.opts, "tls_watch_interval", 1.0))
        watch = TLSFileWatch(lambda name: refresh_tls(server, name), interval=interval, loop=server.loop)
        server.tls_watch = watch
    watch.configure(blocks, baseline)


def start_tls_watch(server: Server) -> None:
    """At start-up: watch the files of every tls block with ``watch: true``."""
    configure_watch(server)

