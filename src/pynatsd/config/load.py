"""Config file + command-line flags -> a validated ``ServerOptions``, the way nats-server does it.

``load_options(config_file, flags)`` parses the file (``parser.py``), maps every key nats-server
recognises (case-insensitively) onto the option dataclasses with nats-server's checks and error
texts, applies the flags that were given on top (flags win, and are applied again on every
reload), then runs the start-up validation (``validate=False`` skips it, as ``-t`` does).

What pynatsd does not implement yet is handled in one of two ways:

* features whose absence cannot weaken security (JetStream, leafnodes, websocket,
  MQTT, ...) give a warning naming the key and saying it is ignored;
* anything that decides who may connect or what they may do (accounts, operator
  and JWT mode, auth callout, proxies, ...) is refused with a ConfigError:
  silently ignoring it would let in clients the operator meant to keep out.

Errors are ``ConfigError(message, file, line)``.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, NoReturn
from urllib.parse import urlsplit

from pynatsd.config.options import (
    DEFAULT_HOST,
    DEFAULT_LAME_DUCK_DURATION,
    DEFAULT_LAME_DUCK_GRACE_PERIOD,
    DEFAULT_MAX_CLOSED_CLIENTS,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONTROL_LINE,
    DEFAULT_MAX_PAYLOAD,
    DEFAULT_MAX_PENDING,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_MAX,
    DEFAULT_PORT,
    DEFAULT_TLS_TIMEOUT,
    DEFAULT_WRITE_DEADLINE,
    AccountOptions,
    AuthOptions,
    ClusterOptions,
    GatewayOptions,
    LeafNodeOptions,
    LeafRemoteOptions,
    LeafUser,
    OCSPCacheOptions,
    OCSPOptions,
    OCSPPeerOptions,
    Permissions,
    RemoteGatewayOptions,
    ResponsePermission,
    ServerOptions,
    ServiceExport,
    ServiceImport,
    Source,
    StreamExport,
    StreamImport,
    SubjectPermission,
    TLSOptions,
    User,
)
from pynatsd.config.parser import ConfList, ConfMap, Pos, config_digest, parse_file
from pynatsd.errors import ConfigError
from pynatsd.monitor.gofmt import go_duration, seconds_to_ns  # pure Go spellings, no I/O
from pynatsd.nkeys_auth import is_user_key
from pynatsd.subjects import subject_is_subset

__all__ = ["FlagValues", "load_options", "parse_duration", "format_duration"]

NOT_SUPPORTED = "not supported by pynatsd yet, ignored"
GLOBAL_ACCOUNT = "$G"
SYSTEM_ACCOUNT = "$SYS"
DEFAULT_ALLOW_RESPONSES_EXPIRES = 120.0
DEFAULT_HANDSHAKE_FIRST_FALLBACK = 0.05  # nats-server's "auto" fallback delay
ROUTE_MAX_PING_INTERVAL = 30.0
MAX_PAYLOAD_WARN = 8 * 1024 * 1024
CONNECTION_TYPES = frozenset(
    ("STANDARD", "WEBSOCKET", "LEAFNODE", "LEAFNODE_WS", "MQTT", "MQTT_WS", "IN_PROCESS")
)
_HEX64 = re.compile(r"^[a-f0-9]{64}$")
OCSP_MODES = ("always", "must", "auto", "never")
_PORT = re.compile(r"^[+-]?[0-9]+$")


@dataclass
class FlagValues:
    """Command-line flags that were given; ``None`` means "not on the command line".

    ``debug``/``trace``/``trace_verbose`` are the final values after ``-D``, ``-V``, ``-DV``,
    ``-VV`` and ``-DVV`` were combined (the CLI does that, in nats-server's order).
    """

    host: str | None = None
    port: int | None = None
    server_name: str | None = None
    pid_file: str | None = None
    http_port: int | None = None
    https_port: int | None = None
    client_advertise: str | None = None
    ports_file_dir: str | None = None
    log_file: str | None = None
    logtime: bool | None = None
    logtime_utc: bool | None = None
    syslog: bool | None = None
    remote_syslog: str | None = None
    debug: bool | None = None
    trace: bool | None = None
    trace_verbose: bool | None = None
    log_size_limit: int | None = None
    max_traced_msg_len: int | None = None
    user: str | None = None
    password: str | None = None
    token: str | None = None
    tls: bool | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca_cert: str | None = None
    tls_verify: bool | None = None
    routes: str | None = None
    cluster_listen: str | None = None
    cluster_name: str | None = None
    cluster_advertise: str | None = None
    no_advertise: bool | None = None
    connect_retries: int | None = None
    # accepted like nats-server but not implemented: a warning each
    jetstream: bool | None = None
    store_dir: str | None = None
    profile: int | None = None


# ---- Go durations ---------------------------------------------------------------------------

_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign
    "\u03bcs": 1_000,  # Greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}


def _go_quote(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _parse_duration_ns(s: str) -> int:
    orig = s
    invalid = ValueError(f"time: invalid duration {_go_quote(orig)}")
    neg = False
    if s and s[0] in "+-":
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise invalid
    total = 0
    while s:
        i = 0
        while i < len(s) and "0" <= s[i] <= "9":
            i += 1
        whole, s = s[:i], s[i:]
        frac = ""
        if s.startswith("."):
            s = s[1:]
            j = 0
            while j < len(s) and "0" <= s[j] <= "9":
                j += 1
            frac, s = s[:j], s[j:]
        if not whole and not frac:
            raise invalid
        k = 0
        while k < len(s) and s[k] != "." and not ("0" <= s[k] <= "9"):
            k += 1
        if k == 0:
            raise ValueError(f"time: missing unit in duration {_go_quote(orig)}")
        unit, s = s[:k], s[k:]
        if unit not in _UNIT_NS:
            raise ValueError(f"time: unknown unit {_go_quote(unit)} in duration {_go_quote(orig)}")
        scale = _UNIT_NS[unit]
        total += int(whole or "0") * scale
        if frac:
            total += int(frac) * scale // 10 ** len(frac)
        if total > 2**63 - 1:
            raise invalid
    return -total if neg else total


def parse_duration(s: str) -> float:
    """Go's ``time.ParseDuration`` ("1h30m", "0.5s", "100ms") -> seconds. Raises ValueError with
    Go's message."""
    return _parse_duration_ns(s) / 1e9


def format_duration(seconds: float) -> str:
    """Seconds as Go's ``time.Duration.String()`` writes them ("2m0s", "10s", "500ms")."""
    return go_duration(seconds_to_ns(seconds))


# ---- small helpers ----------------------------------------------------------------------------


def _tname(v: Any) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a float"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, dict):
        return "a map"
    if isinstance(v, list):
        return "an array"
    return "a datetime"


def _duplicate_text(u: User) -> str:
    """(nkeys helper N) nats-server's text for a name defined twice: user names and nkeys share
    one namespace, and the text names the kind of the entry found second (``u``)."""
    if u.nkey is not None:
        return f'Duplicate nkey "{u.username}" detected'
    return f'Duplicate user "{u.username}" detected'


def _go_type(v: Any) -> str:
    """A parsed value's type as Go's %T names it (nats-server puts these in some errors)."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int64"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, dict):
        return "map[string]interface {}"
    if isinstance(v, list):
        return "[]interface {}"
    return "time.Time"


def _go_v(v: Any) -> str:
    """A scalar as Go's %v prints it."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return _go_float_v(v)
    return str(v)


def _show(v: Any) -> str:
    if isinstance(v, str):
        return f" ({_go_quote(v)})"
    if isinstance(v, bool):
        return f" ({'true' if v else 'false'})"
    if isinstance(v, (int, float)):
        return f" ({v})"
    return ""


def _go_float_v(v: float) -> str:
    """A number as Go's %v prints it."""
    return str(int(v)) if float(v).is_integer() else repr(v)


def _valid_subject(s: str) -> bool:
    """nats-server's IsValidSubject: non-empty tokens, ">" only last, no whitespace."""
    if not s:
        return False
    tokens = s.split(".")
    for n, t in enumerate(tokens):
        if not t:
            return False
        if any(c in t for c in " \t\n\r\f"):
            return False
        if t == ">" and n != len(tokens) - 1:
            return False
    return True


def split_host_port(hp: str) -> tuple[str, str]:
    """Go's net.SplitHostPort. Raises ValueError."""
    i = hp.rfind(":")
    if i < 0:
        raise ValueError("missing port in address")
    if hp.startswith("["):
        end = hp.find("]")
        if end < 0:
            raise ValueError("missing ']' in address")
        if end + 1 == len(hp):
            raise ValueError("missing port in address")
        if end + 1 != i:
            raise ValueError(
                "too many colons in address" if hp[end + 1] == ":" else "missing port in address"
            )
        host = hp[1:end]
        if "[" in hp[1:] or "]" in hp[end + 1 :]:
            raise ValueError("unexpected bracket in address")
    else:
        host = hp[:i]
        if ":" in host:
            raise ValueError("too many colons in address")
        if "[" in hp or "]" in hp:
            raise ValueError("unexpected bracket in address")
    return host, hp[i + 1 :]


def parse_listen(v: Any) -> tuple[str, int]:
    """nats-server's ``listen`` forms: a port, "host:port" or ":port". Raises ValueError."""
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        go_type = {bool: "bool", float: "float64"}.get(type(v), "map[string]interface {}")
        if isinstance(v, list):
            go_type = "[]interface {}"
        raise ValueError(f"expected port or host:port, got {go_type}")
    if isinstance(v, int):
        return "", v
    try:
        host, port = split_host_port(v)
    except ValueError:
        raise ValueError(f"could not parse address string {_go_quote(v)}") from None
    if not _PORT.match(port):
        raise ValueError(f"could not parse port {_go_quote(port)}")
    return host, int(port)


def _spki_sha256_of_pem_file(path: str) -> list[str]:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    with open(path, "rb") as f:
        data = f.read()
    certs = x509.load_pem_x509_certificates(data)
    return [
        hashlib.sha256(
            c.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        ).hexdigest()
        for c in certs
    ]


# ---- the loader -------------------------------------------------------------------------------


@dataclass
class _Auth:
    """The parts of an authorization block (top level or cluster)."""

    user: str | None = None
    password: str | None = None
    token: str | None = None
    timeout: float | None = None
    users: list[User] | None = None  # None: no "users" key at all
    default_permissions: Permissions | None = None


class _Loader:
    def __init__(self, file: str) -> None:
        self.file = file
        self.warnings: list[str] = []
        self.config_warnings: list[str] = []  # nats-server's own warnings (they fail -t)
        self.kw: dict[str, Any] = {}
        self.auth = AuthOptions()
        self.auth_block = False
        # (accounts helper A) the accounts block, its users, and where each was written
        self.account_opts: list[AccountOptions] = []
        self.account_users: list[tuple[User, Pos]] = []
        self.auth_users_pos: Pos | None = None
        self.system_account: tuple[str, Pos] | None = None
        self.no_system_account = False

    # -- reporting

    def err(self, message: str, pos: Pos | None) -> NoReturn:
        message = message.replace("\n", "\\n")  # errors are one line, whatever a value holds
        if pos is None:
            raise ConfigError(message, self.file)
        raise ConfigError(message, pos.file, pos.line)

    def warn(self, message: str, pos: Pos | None) -> None:
        self.warnings.append(f"{pos}: {message}" if pos else f"{self.file}: {message}")

    def nats_warn(self, message: str, pos: Pos | None, field: str | None = None) -> None:
        """A warning nats-server gives too (in its wording); ``-t`` fails on these."""
        text = f'invalid use of field "{field}": {message}' if field else message
        line = f"{pos}: {text}" if pos else f"{self.file}: {text}"
        self.warnings.append(line)
        self.config_warnings.append(line)

    def unsupported(self, key: str, pos: Pos | None, what: str = "") -> None:
        self.warn(f"{_go_quote(key)}{' ' + what if what else ''}: {NOT_SUPPORTED}", pos)

    def refuse(self, key: str, pos: Pos | None, what: str) -> NoReturn:
        self.err(
            f"{_go_quote(key)}: {what} is not supported by pynatsd yet; refusing to start rather than "
            "ignore a security setting (remove it, or use nats-server)",
            pos,
        )

    def unknown(self, m: ConfMap, k: str, message: str | None = None) -> None:
        if k not in m.used:
            self.err(message or f"unknown field {_go_quote(k)}", m.pos.get(k))

    # -- typed access

    def want(self, v: Any, types: tuple[type, ...], what: str, key: str, pos: Pos | None) -> Any:
        if isinstance(v, bool) and bool not in types:
            self.err(f"{_go_quote(key)}: expected {what}, got {_tname(v)}{_show(v)}", pos)
        if not isinstance(v, types):
            self.err(f"{_go_quote(key)}: expected {what}, got {_tname(v)}{_show(v)}", pos)
        return v

    def int_(self, v: Any, key: str, pos: Pos | None) -> int:
        return int(self.want(v, (int,), "an integer", key, pos))

    def str_(self, v: Any, key: str, pos: Pos | None) -> str:
        return str(self.want(v, (str,), "a string", key, pos))

    def bool_(self, v: Any, key: str, pos: Pos | None) -> bool:
        return bool(self.want(v, (bool,), "a boolean (true/false)", key, pos))

    def listen_(self, v: Any, pos: Pos | None) -> tuple[str, int]:
        """A ``listen``-style "host:port" (or bare port) value."""
        try:
            return parse_listen(v)
        except ValueError as e:
            self.err(str(e), pos)

    def map_(self, v: Any, key: str, pos: Pos | None) -> ConfMap:
        if not isinstance(v, ConfMap):
            self.err(f"{_go_quote(key)}: expected a map ({{ ... }}), got {_tname(v)}{_show(v)}", pos)
        return v

    def duration(self, v: Any, key: str, pos: Pos | None) -> float:
        """A duration string, or (old style, with nats-server's warning) integer seconds."""
        if isinstance(v, str):
            try:
                return parse_duration(v)
            except ValueError as e:
                self.err(f"error parsing {key}: {e}", pos)
        seconds = self.int_(v, key, pos)
        self.nats_warn(f"{key} should be converted to a duration", pos, field=key)
        return float(seconds)

    def strict_duration(self, v: Any, key: str, pos: Pos | None) -> float:
        s = self.want(v, (str,), 'a duration string such as "2m"', key, pos)
        try:
            return parse_duration(s)
        except ValueError as e:
            self.err(f"error parsing {key}: {e}", pos)

    def seconds(self, v: Any, key: str, pos: Pos | None, prefix: str) -> float:
        """A timeout given as a number of seconds or a duration string."""
        if isinstance(v, bool):
            self.err(f"{prefix}'{key}' wrong type", pos)
        if isinstance(v, (int, float)):
            return float(v)
        if isinstance(v, str):
            try:
                return parse_duration(v)
            except ValueError as e:
                self.err(f"{prefix}'{key}' {e}", pos)
        self.err(f"{prefix}'{key}' wrong type", pos)

    def string_list(self, v: Any, key: str, pos: Pos | None) -> list[str]:
        if isinstance(v, str):
            return [v]
        if isinstance(v, ConfList):
            out = []
            for item, ipos in zip(v, v.pos, strict=True):
                if not isinstance(item, str):
                    self.err(f"error parsing {key}: unsupported type in array: {_tname(item)}", ipos)
                out.append(item)
            return out
        self.err(f"error parsing {key}: expected a string or an array of strings, got {_tname(v)}", pos)

    # -- the top level

    def load(self, conf: ConfMap) -> None:
        if not conf:
            line = f"{self.file}: config has no values or is empty"
            self.warnings.append(line)
            self.config_warnings.append(line)
        for k, v in conf.items():
            self.top_key(conf, k, v, conf.pos[k])

    def top_key(self, m: ConfMap, k: str, v: Any, pos: Pos) -> None:
        kw = self.kw
        lk = k.lower()
        if lk == "listen":
            host, port = self.listen_(v, pos)
            kw["host"] = host
            kw["port"] = port
        elif lk == "port":
            kw["port"] = self.int_(v, k, pos)
        elif lk in ("host", "net"):
            kw["host"] = self.str_(v, k, pos)
        elif lk == "client_advertise":
            kw["client_advertise"] = self.str_(v, k, pos)
        elif lk == "server_name":
            name = self.str_(v, k, pos)
            if " " in name:
                self.err("server name cannot contain spaces", pos)
            kw["server_name"] = name
        elif lk in (
            "debug",
            "trace",
            "logtime",
            "logtime_utc",
            "syslog",
            "allow_non_tls",
            "no_header_support",
        ):
            kw[lk] = self.bool_(v, k, pos)
        elif lk == "trace_verbose":
            kw["trace_verbose"] = kw["trace"] = self.bool_(v, k, pos)
        elif lk == "trace_headers":
            kw["trace"] = self.bool_(v, k, pos)
            if kw["trace"]:
                self.warn(
                    f"{_go_quote(k)}: tracing only headers is {NOT_SUPPORTED} (full tracing is on)", pos
                )
        elif lk == "fips":  # beyond nats-server: restrict TLS to FIPS-approved algorithms
            kw["fips"] = self.bool_(v, k, pos)
        elif lk in ("log_file", "logfile"):
            kw["log_file"] = self.str_(v, k, pos)
        elif lk in ("log_size_limit", "logfile_size_limit"):
            kw["log_size_limit"] = self.int_(v, k, pos)
        elif lk in ("log_max_num", "logfile_max_num"):
            self.int_(v, k, pos)
            self.unsupported(k, pos)
        elif lk == "remote_syslog":
            kw["remote_syslog"] = self.str_(v, k, pos)
        elif lk in ("pid_file", "pidfile"):
            kw["pid_file"] = self.str_(v, k, pos)
        elif lk == "ports_file_dir":
            kw["ports_file_dir"] = self.str_(v, k, pos)
        elif lk == "max_traced_msg_len":
            kw["max_traced_msg_len"] = self.int_(v, k, pos)
        elif lk in ("max_control_line", "max_payload"):
            n = self.int_(v, k, pos)
            if n > 2**31 - 1:
                self.err(f"{k} value is too big", pos)
            kw[lk] = n
        elif lk == "max_pending":
            kw["max_pending"] = self.int_(v, k, pos)
        elif lk in ("max_connections", "max_conn"):
            n = self.int_(v, k, pos)
            kw["max_connections"] = -1 if n == 0 else n  # an explicit 0 refuses every client
        elif lk in ("max_subscriptions", "max_subs"):
            kw["max_subscriptions"] = self.int_(v, k, pos)
        elif lk in ("max_sub_tokens", "max_subscription_tokens"):
            n = self.int_(v, k, pos)
            if n > 255:
                self.err(f"{k} value is too big", pos)
            if n <= 0:
                self.err(f"{k} value can not be negative", pos)
            kw["max_sub_tokens"] = n
        elif lk == "ping_interval":
            kw["ping_interval"] = self.duration(v, "ping_interval", pos)
        elif lk == "ping_max":
            kw["ping_max"] = self.int_(v, k, pos)
        elif lk == "write_deadline":
            kw["write_deadline"] = self.duration(v, "write_deadline", pos)
        elif lk == "write_timeout":
            self.write_timeout(v, k, pos)
        elif lk == "lame_duck_duration":
            d = self.strict_duration(v, "lame_duck_duration", pos)
            if d < 30:
                self.err(f"invalid lame_duck_duration of {format_duration(d)}, minimum is 30 seconds", pos)
            kw["lame_duck_duration"] = d
        elif lk == "lame_duck_grace_period":
            d = self.strict_duration(v, "lame_duck_grace_period", pos)
            if d < 0:
                self.err("invalid lame_duck_grace_period, needs to be positive", pos)
            kw["lame_duck_grace_period"] = d
        elif lk == "max_closed_clients":
            kw["max_closed_clients"] = self.int_(v, k, pos)
        elif lk == "tls_expiry_warn_days":  # beyond nats-server (see ServerOptions)
            kw["tls_expiry_warn_days"] = self.int_(v, k, pos)
        elif lk == "authorization":
            self.top_authorization(v, k, pos)
        elif lk == "no_auth_user":
            self.auth = replace(self.auth, no_auth_user=self.str_(v, k, pos))
        elif lk == "tls":
            tls = self.tls(v, k, pos, client_ctx=True)
            kw["tls"] = tls
        elif lk == "http":
            host, port = self.listen_(v, pos)
            kw["http_host"] = host
            kw["http_port"] = port
        elif lk == "https":
            host, port = self.listen_(v, pos)
            kw["http_host"] = host
            kw["https_port"] = port
        elif lk in ("http_port", "monitor_port"):
            kw["http_port"] = self.int_(v, k, pos)
        elif lk == "https_port":
            kw["https_port"] = self.int_(v, k, pos)
        elif lk == "http_base_path":
            kw["http_base_path"] = self.str_(v, k, pos)
        elif lk == "cluster":
            kw["cluster"] = self.cluster(v, k, pos)
        elif lk in ("no_system_account", "no_system", "no_sys_acc"):
            self.no_system_account = self.bool_(v, k, pos)
        elif lk in ("system_account", "system"):
            self.system_account = (self.str_(v, k, pos), pos)
        elif lk == "accounts":
            self.accounts(v, k, pos)
        elif lk in ("operator", "operators", "roots", "root", "root_operators", "root_operator"):
            self.refuse(k, pos, "operator (JWT) mode")
        elif lk in ("trusted", "trusted_keys"):
            self.refuse(k, pos, "trusted operator keys (JWT mode)")
        elif lk in ("resolver", "account_resolver", "accounts_resolver", "resolver_tls", "resolver_preload"):
            self.refuse(k, pos, "the account resolver (JWT mode)")
        elif lk == "resolver_pinned_accounts":
            self.refuse(k, pos, "the account resolver (JWT mode)")
        elif lk == "default_sentinel":
            self.refuse(k, pos, "the default sentinel JWT (auth callout)")
        elif lk == "proxies":
            self.refuse(k, pos, "trusted proxies")
        elif lk == "gateway":
            kw["gateway"] = self.gateway(v, k, pos)
        elif lk in ("websocket", "ws", "mqtt", "jetstream", "default_js_domain"):
            self.unsupported(k, pos)
        elif lk in ("leafnodes", "leaf"):
            kw["leafnodes"] = self.leafnodes(v, k, pos)
        elif lk in ("store_dir", "storedir"):
            # (helper O) JetStream is not implemented; the directory still holds OCSP staples
            kw["store_dir"] = self.str_(v, k, pos)
            self.warn(f"{_go_quote(k)}: JetStream is not supported by pynatsd; the directory only keeps "
                      "OCSP staple files (<store_dir>/ocsp)", pos)
        elif lk in ("mappings", "maps"):
            self.unsupported(k, pos, "(subject mappings)")
        elif lk == "ocsp":  # (helper O)
            kw["ocsp"] = self.ocsp(v, pos)
        elif lk == "ocsp_cache":  # (helper O)
            kw["ocsp_cache"] = self.ocsp_cache(v, pos)
        elif lk in ("disable_sublist_cache", "no_sublist_cache", "no_fast_producer_stall", "proxy_protocol"):
            if self.bool_(v, k, pos):
                self.unsupported(k, pos)
        elif lk in ("prof_port", "prof_block_rate", "connect_error_reports", "reconnect_error_reports"):
            self.int_(v, k, pos)
            self.unsupported(k, pos)
        elif lk == "server_tags":
            self.string_list(v, "tags", pos)
            self.unsupported(k, pos)
        elif lk == "server_metadata":
            meta = self.map_(v, k, pos)
            for mk, mv in meta.items():
                self.str_(mv, mk, meta.pos[mk])
            self.unsupported(k, pos)
        elif lk == "feature_flags":
            flags = self.map_(v, k, pos)
            for fk, fv in flags.items():
                if not isinstance(fv, bool):
                    self.err(
                        f"error parsing feature flag {_go_quote(fk)}: expected bool, got {_tname(fv)}",
                        flags.pos[fk],
                    )
            self.unsupported(k, pos)
        else:
            self.unknown(m, k)

    def write_timeout(self, v: Any, k: str, pos: Pos) -> None:
        policy = self.str_(v, k, pos)
        if policy not in ("default", "close", "retry"):
            self.err("write_timeout must be 'default', 'close' or 'retry'", pos)
        if policy == "retry":
            self.unsupported(k, pos, "(retry policy)")

    # -- authorization

    def top_authorization(self, v: Any, k: str, pos: Pos) -> None:
        a = self.authorization(v, k, pos)
        if (a.user or a.password) and a.token:
            self.err("Cannot have a user/pass and token", pos)
        if a.users is not None:
            if a.user:
                self.err("Can not have a single user/pass and a users array", pos)
            if a.token:
                self.err("Can not have a token and a users array", pos)
        self.auth_block = True
        if self.account_users:
            # (accounts helper A) nats-server checks this whichever block comes first
            if a.user:
                self.err("Can not have a single user/pass and a users array", pos)
            if a.token:
                self.err("Can not have a token and a users array", pos)
            taken = {u.username for u, _ in self.account_users}
            for u in a.users or ():
                if u.username in taken:
                    self.err(_duplicate_text(u), pos)
        self.auth = replace(
            self.auth,
            user=a.user,
            password=a.password,
            token=a.token,
            timeout=a.timeout,
            users=tuple(a.users or ()),
            default_permissions=a.default_permissions,
        )
        self.kw["_users_defined"] = bool(a.users)

    def authorization(self, v: Any, key: str, pos: Pos) -> _Auth:
        am = self.map_(v, key, pos)
        a = _Auth()
        for k, mv in am.items():
            kpos = am.pos[k]
            lk = k.lower()
            if lk in ("user", "username"):
                a.user = self.str_(mv, k, kpos)
            elif lk in ("pass", "password"):
                a.password = self.str_(mv, k, kpos)
            elif lk == "token":
                a.token = self.str_(mv, k, kpos)
            elif lk == "timeout":
                t = self.seconds(mv, "timeout", kpos, "error parsing authorization config, ")
                if t > 60:
                    shown = mv if isinstance(mv, str) else _go_float_v(mv)
                    self.nats_warn(
                        f"timeout of {shown} ({t:f} seconds) is high, consider keeping it under 60 "
                        "seconds. possibly caused by unquoted duration; use '1m' instead of 1m, "
                        "for example",
                        kpos,
                        field=k,
                    )
                a.timeout = t or None
            elif lk == "users":
                a.users = self.users(mv, k, kpos)
            elif lk in ("default_permission", "default_permissions", "permissions"):
                a.default_permissions = self.permissions(mv, k, kpos)
            elif lk in ("auth_callout", "auth_hook"):
                self.refuse(k, kpos, "authorization callout")
            elif lk == "proxy_required":
                if self.bool_(mv, k, kpos):
                    self.refuse(k, kpos, "proxy_required (trusted proxies)")
            else:
                self.unknown(am, k)
        if a.users and a.default_permissions is not None:
            a.users = [u if u.permissions else replace(u, permissions=a.default_permissions) for u in a.users]
        return a

    def users(self, v: Any, key: str, pos: Pos) -> list[User]:
        if not isinstance(v, ConfList):
            self.err(f"Expected users field to be an array, got {_tname(v)}", pos)
        users: list[User] = []
        for entry, epos in zip(v, v.pos, strict=True):
            if not isinstance(entry, ConfMap):
                self.err(f"Expected user entry to be a map/struct, got {_tname(entry)}{_show(entry)}", epos)
            username: str | None = None
            password: str | None = None
            perms: Permissions | None = None
            conn_types: tuple[str, ...] = ()
            nkey: str | None = None  # (nkeys helper N)
            nkey_pos: Pos | None = None
            for k, uv in entry.items():
                kpos = entry.pos[k]
                lk = k.lower()
                if lk in ("user", "username"):
                    username = self.str_(uv, k, kpos)
                elif lk in ("pass", "password"):
                    password = self.str_(uv, k, kpos)
                elif lk in ("permission", "permissions", "authorization"):
                    perms = self.permissions(uv, k, kpos)
                elif lk in ("allowed_connection_types", "connection_types", "clients"):
                    names = [n.upper() for n in self.string_list(uv, "allowed connection types", kpos)]
                    bad = [n for n in names if n not in CONNECTION_TYPES]
                    if bad:
                        self.err(
                            "invalid connection types [" + " ".join(_go_quote(b) for b in bad) + "]", kpos
                        )
                    conn_types = tuple(dict.fromkeys(names))
                elif lk == "nkey":
                    if not isinstance(uv, str):  # nats-server's text for a non-string nkey
                        self.err(f"interface conversion: interface {{}} is {_go_type(uv)}, not string", kpos)
                    nkey, nkey_pos = uv or None, kpos
                elif lk == "proxy_required":
                    if self.bool_(uv, k, kpos):
                        self.refuse(k, kpos, "proxy_required (trusted proxies)")
                else:
                    self.unknown(entry, k)
            if nkey is not None:  # (nkeys helper N) the key is the user's name
                if not is_user_key(nkey):
                    self.err("Not a valid public nkey for a user", nkey_pos)
                if username or password:
                    self.err("Nkey users do not take usernames or passwords", epos)
                users.append(User(username=nkey, permissions=perms, allowed_connection_types=conn_types, nkey=nkey))
                continue
            if not username:
                self.err("User entry requires a user", epos)
            users.append(
                User(
                    username=username,
                    password=password,
                    permissions=perms,
                    allowed_connection_types=conn_types,
                )
            )
        seen: set[str] = set()
        for u, upos in zip(users, v.pos, strict=True):
            if u.nkey is None:
                if u.username in seen:
                    self.err(f'Duplicate user "{u.username}" detected', upos)
                seen.add(u.username)
        for u, upos in zip(users, v.pos, strict=True):  # (nkeys helper N) one namespace with user names
            if u.nkey is not None:
                if u.nkey in seen:
                    self.err(f'Duplicate nkey "{u.nkey}" detected', upos)
                seen.add(u.nkey)
        return users

    def permissions(self, v: Any, key: str, pos: Pos) -> Permissions:
        if not isinstance(v, ConfMap):
            self.err(f"Expected permissions to be a map/struct, got {_tname(v)}{_show(v)}", pos)
        publish: SubjectPermission | None = None
        subscribe: SubjectPermission | None = None
        responses: ResponsePermission | None = None
        for k, pv in v.items():
            kpos = v.pos[k]
            lk = k.lower()
            if lk in ("pub", "publish", "import"):
                publish = self.subject_permission(pv, kpos, allow_queue=False)
            elif lk in ("sub", "subscribe", "export"):
                subscribe = self.subject_permission(pv, kpos, allow_queue=True)
            elif lk in ("publish_allow_responses", "allow_responses"):
                responses = self.allow_responses(pv, kpos)
            else:
                self.unknown(v, k, f"Unknown field {_go_quote(k)} parsing permissions")
        if responses is not None:
            # Only replies (and any explicit allow entries) may be published.
            if publish is None:
                publish = SubjectPermission(allow=())
            elif publish.allow is None:
                publish = replace(publish, allow=())
        return Permissions(publish=publish, subscribe=subscribe, allow_responses=responses)

    def subject_permission(self, v: Any, pos: Pos, allow_queue: bool) -> SubjectPermission | None:
        if isinstance(v, ConfMap):
            if not v:
                return None
            allow: tuple[str, ...] | None = None
            deny: tuple[str, ...] = ()
            for k, sv in v.items():
                kpos = v.pos[k]
                if k.lower() == "allow":
                    allow = self.perm_subjects(sv, kpos, allow_queue)
                elif k.lower() == "deny":
                    deny = self.perm_subjects(sv, kpos, allow_queue)
                else:
                    self.unknown(
                        v,
                        k,
                        f"Unknown field name {_go_quote(k)} parsing subject permissions, only 'allow' or "
                        "'deny' are permitted",
                    )
            return SubjectPermission(allow=allow, deny=deny)
        return SubjectPermission(allow=self.perm_subjects(v, pos, allow_queue))

    def perm_subjects(self, v: Any, pos: Pos, allow_queue: bool) -> tuple[str, ...]:
        items: list[tuple[str, Pos]]
        if isinstance(v, str):
            items = [(v, pos)]
        elif isinstance(v, ConfList):
            items = []
            for s, spos in zip(v, v.pos, strict=True):
                if not isinstance(s, str):
                    self.err("Subject in permissions array cannot be cast to string", spos)
                items.append((s, spos))
        else:
            self.err(
                f"Expected subject permissions to be a subject, or array of subjects, got {_tname(v)}",
                pos,
            )
        for s, spos in items:
            if _valid_subject(s):
                continue
            if not allow_queue:
                self.err(f"subject {_go_quote(s)} is not a valid subject", spos)
            fields = s.split()
            if len(fields) != 2:
                self.err(f"subject {_go_quote(s)} is not a valid subject", spos)
            if not _valid_subject(fields[0]):
                self.err(f"subject {_go_quote(fields[0])} is not a valid subject", spos)
            if not _valid_subject(fields[1]):
                self.err(f"queue {_go_quote(fields[1])} is not a valid queue", spos)
        return tuple(s for s, _ in items)

    def allow_responses(self, v: Any, pos: Pos) -> ResponsePermission | None:
        if isinstance(v, bool):
            return ResponsePermission() if v else None
        if not isinstance(v, ConfMap):
            self.err("error parsing response permissions, expected a boolean or a map", pos)
        max_msgs = 1
        expires = DEFAULT_ALLOW_RESPONSES_EXPIRES
        for k, rv in v.items():
            kpos = v.pos[k]
            lk = k.lower()
            if lk in ("max", "max_msgs", "max_messages", "max_responses"):
                n = self.int_(rv, k, kpos)
                if n != 0:  # 0: the default; negative: no limit
                    max_msgs = n
            elif lk in ("expires", "expiration", "ttl"):
                if not isinstance(rv, str):
                    self.err("error parsing expires, not a duration string", kpos)
                try:
                    d = parse_duration(rv)
                except ValueError as e:
                    self.err(f"error parsing expires: {e}", kpos)
                if d != 0:
                    expires = d
            else:
                self.unknown(v, k, f"Unknown field {_go_quote(k)} parsing permissions")
        return ResponsePermission(max_msgs=max_msgs, expires=expires)

    # -- accounts (accounts helper A)

    def accounts(self, v: Any, key: str, pos: Pos) -> None:
        """The ``accounts`` block: a list of names, or a map of name -> account map. Imports and
        exports are checked once every account is known, as nats-server does."""
        names: set[str] = set()
        if isinstance(v, ConfList):
            for name, npos in zip(v, v.pos, strict=True):
                n = self.str_(name, key, npos)
                if n == GLOBAL_ACCOUNT:
                    self.err(f'"{n}" is a Reserved Account', npos)
                if n in names:
                    self.err(f"Duplicate Account Entry: {n}", npos)
                names.add(n)
                self.account_opts.append(AccountOptions(name=n, source=Source(npos.file, npos.line)))
            return
        if not isinstance(v, ConfMap):
            return  # nats-server ignores an accounts value that is neither a list nor a map
        am = v
        pending: list[tuple[AccountOptions, Pos, list[tuple[Any, Pos, str]]]] = []
        for name, av in am.items():
            apos = am.pos[name]
            if not isinstance(av, ConfMap):
                self.err("Expected map entries for accounts", apos)
            if name == GLOBAL_ACCOUNT:
                self.err(f'"{name}" is a Reserved Account', apos)
            kw: dict[str, Any] = {"name": name, "source": Source(apos.file, apos.line)}
            users: list[User] = []
            users_pos = apos
            raw_io: list[tuple[Any, Pos, str]] = []
            for k, mv in av.items():
                kpos = av.pos[k]
                lk = k.lower()
                if lk == "users":
                    users = self.users(mv, k, kpos)
                    users_pos = kpos
                elif lk == "default_permissions":
                    kw["default_permissions"] = self.permissions(mv, k, kpos)
                elif lk in ("imports", "exports"):
                    if not isinstance(mv, ConfList):
                        what = "Imports" if lk == "imports" else "Exports"
                        self.err(f"{what} should be an array, got {_go_type(mv)}", kpos)
                    raw_io.append((mv, kpos, lk))
                elif lk == "limits":
                    kw.update(self.account_limits(mv, k, kpos))
                elif lk == "nkey":
                    self.refuse(k, kpos, "account NKEYs")
                elif lk in ("mappings", "maps"):
                    self.refuse(k, kpos, "subject mappings in accounts")
                elif lk == "jetstream":
                    self.unsupported(k, kpos, "(JetStream for the account)")
                else:
                    self.unknown(av, k)
            if users:
                if self.auth.user:
                    self.err("Can not have a single user/pass and accounts", users_pos)
                if self.auth.token:
                    self.err("Can not have a token and accounts", users_pos)
            dp = kw.get("default_permissions")
            taken = {u.username for u in self.auth.users} | {u.username for u, _ in self.account_users}
            for u in users:
                if u.username in taken:
                    self.err(_duplicate_text(u), users_pos)
                taken.add(u.username)
                if u.permissions is None and dp is not None:
                    u = replace(u, permissions=dp)
                self.account_users.append((replace(u, account=name), users_pos))
            pending.append((AccountOptions(**kw), apos, raw_io))
        for acc, _, _ in pending:
            self.account_opts.append(acc)
        known = {a.name for a in self.account_opts}
        # exports first, then imports (which must fit an export offered to the importer)
        parsed: dict[str, dict[str, list[Any]]] = {}
        for acc, _apos, raw_io in pending:
            d = parsed.setdefault(acc.name, {"se": [], "ve": [], "si": [], "vi": []})
            for mv, _kpos, lk in raw_io:
                for item, ipos in zip(mv, mv.pos, strict=True):
                    if lk == "exports":
                        exp = self.export_item(item, ipos)
                        d["se" if isinstance(exp, StreamExport) else "ve"].append(exp)
                    else:
                        imp = self.import_item(item, ipos)
                        if imp is None:
                            continue
                        if isinstance(imp, ServiceImport):
                            for prev in d["vi"]:
                                if (prev.to or prev.subject) == (imp.to or imp.subject):
                                    self.err(
                                        f"Duplicate service import subject {_go_quote(imp.to or imp.subject)}, "
                                        f"previously used in import for account {_go_quote(prev.account)}, "
                                        f"subject {_go_quote(prev.subject)}",
                                        ipos,
                                    )
                            d["vi"].append(imp)
                        else:
                            d["si"].append(imp)
        no_line = None  # nats-server gives these without a line
        for d in parsed.values():
            for e in d["se"] + d["ve"]:
                kind = "stream" if isinstance(e, StreamExport) else "service"
                for an in e.accounts or ():
                    if an not in known:
                        self.err(f"{_go_quote(an)} account not defined for {kind} export", no_line)
        for name, d in parsed.items():
            for imp in d["si"] + d["vi"]:
                stream = isinstance(imp, StreamImport)
                kind = "stream" if stream else "service"
                if imp.account not in known:
                    self.err(f"{_go_quote(imp.account)} account not defined for {kind} import", no_line)
                exps = parsed.get(imp.account, {}).get("se" if stream else "ve", [])
                sub = imp.subject.encode()
                if not any(
                    subject_is_subset(sub, e.subject.encode()) and (e.accounts is None or name in e.accounts)
                    for e in exps
                ):
                    self.err(
                        f"Error adding {kind} import {_go_quote(imp.subject)}: {kind} import not authorized",
                        no_line,
                    )
        self.account_opts = [
            replace(
                a,
                stream_exports=tuple(parsed[a.name]["se"]),
                service_exports=tuple(parsed[a.name]["ve"]),
                stream_imports=tuple(parsed[a.name]["si"]),
                service_imports=tuple(parsed[a.name]["vi"]),
            )
            if a.name in parsed
            else a
            for a in self.account_opts
        ]

    def account_limits(self, v: Any, key: str, pos: Pos) -> dict[str, int]:
        if not isinstance(v, ConfMap):
            self.err(f"Expected account limits to be a map/struct, got {_go_v(v)}", pos)
        lm = v
        out: dict[str, int] = {}
        for k, lv in lm.items():
            kpos = lm.pos[k]
            lk = k.lower()
            if lk in ("max_connections", "max_conn"):
                out["max_connections"] = self.int_(lv, k, kpos)
            elif lk in ("max_subscriptions", "max_subs"):
                out["max_subscriptions"] = self.int_(lv, k, kpos)
            elif lk in ("max_payload", "max_pay"):
                out["max_payload"] = self.int_(lv, k, kpos)
            elif lk in ("max_leafnodes", "max_leafs"):
                self.int_(lv, k, kpos)  # leafnodes are not implemented: nothing to limit
            else:
                self.unknown(lm, k, f"Unknown field {_go_quote(k)} parsing account limits")
        return out

    def export_item(self, v: Any, pos: Pos) -> StreamExport | ServiceExport:
        if not isinstance(v, ConfMap):
            self.err(f"Export Items should be a map with type entry, got {_go_type(v)}", pos)
        stream: str | None = None
        service: str | None = None
        accounts: tuple[str, ...] | None = None
        response: str | None = None
        response_pos: Pos | None = None
        for k, ev in v.items():
            kpos = v.pos[k]
            lk = k.lower()
            if lk == "stream":
                if service is not None:
                    self.err(f"Detected stream {_go_quote(str(ev))} but already saw a service", kpos)
                if response_pos is not None:
                    self.err("Detected response directive on non-service", response_pos)
                if not isinstance(ev, str):
                    self.err(f"Expected stream name to be string, got {_go_type(ev)}", kpos)
                stream = ev
            elif lk == "service":
                if stream is not None:
                    self.err(f"Detected service {_go_quote(str(ev))} but already saw a stream", kpos)
                if not isinstance(ev, str):
                    self.err(f"Expected service name to be string, got {_go_type(ev)}", kpos)
                service = ev
            elif lk in ("response", "response_type"):
                if response_pos is not None:
                    self.err("Duplicate response type definition", kpos)
                response_pos = kpos
                if not isinstance(ev, str):
                    self.err(f"Expected response type to be string, got {_go_type(ev)}", kpos)
                rt = ev.lower()
                if rt in ("single", "singleton"):
                    response = "singleton"
                elif rt == "stream":
                    response = "stream"
                elif rt in ("chunk", "chunked"):
                    response = "chunked"
                else:
                    self.err(f"Unknown response type: {_go_quote(ev)}", kpos)
                if stream is not None:
                    self.err("Detected response directive on non-service", kpos)
            elif lk == "accounts":
                accounts = tuple(self.string_list(ev, "accounts", kpos))
            elif lk == "allow_trace":
                self.bool_(ev, k, kpos)  # message tracing is not implemented: nothing to allow
            elif lk in ("threshold", "response_threshold", "response_max_time", "response_time", "latency",
                        "account_token_position"):
                self.refuse(k, kpos, f"the service export setting {_go_quote(k)}")
            else:
                self.unknown(v, k)
        if service is not None:
            return ServiceExport(service, accounts, response or "singleton")
        if stream is None:
            self.err("Export Items should be a map with type entry, got map[string]interface {}", pos)
        return StreamExport(stream, accounts)

    def import_item(self, v: Any, pos: Pos) -> StreamImport | ServiceImport | None:
        if not isinstance(v, ConfMap):
            self.err(f"Import Items should be a map with type entry, got {_go_type(v)}", pos)
        kind: str | None = None
        account = subject = ""
        prefix = to = ""
        for k, iv in v.items():
            kpos = v.pos[k]
            lk = k.lower()
            if lk in ("stream", "service"):
                if kind is not None and kind != lk:
                    self.err(f"Detected {lk} but already saw a {kind}", kpos)
                if not isinstance(iv, ConfMap):
                    self.err(f"{lk.capitalize()} entry should be an account map, got {_go_type(iv)}", kpos)
                for ak, av in iv.items():
                    akpos = iv.pos[ak]
                    if ak.lower() == "account":
                        account = self.str_(av, ak, akpos)
                    elif ak.lower() == "subject":
                        subject = self.str_(av, ak, akpos)
                    else:
                        self.unknown(iv, ak)
                if not account or not subject:
                    self.err("Expect an account name and a subject", kpos)
                kind = lk
            elif lk == "prefix":
                prefix = self.str_(iv, k, kpos)
            elif lk == "to":
                to = self.str_(iv, k, kpos)
                if kind == "stream" and prefix:
                    self.err("Stream import can not have a 'prefix' and a 'to' property", kpos)
            elif lk in ("share", "allow_trace"):
                self.bool_(iv, k, kpos)  # latency sharing and tracing are not implemented
            else:
                self.unknown(v, k)
        if kind == "stream":
            if prefix and to:
                self.err("Stream import can not have a 'prefix' and a 'to' property", pos)
            return StreamImport(account, subject, prefix, to)
        if kind == "service":
            return ServiceImport(account, subject, to)
        return None

    # -- tls

    def tls(self, v: Any, key: str, pos: Pos, client_ctx: bool) -> TLSOptions:
        tm = self.map_(v, key, pos)
        pre = "error parsing tls config, "
        o: dict[str, Any] = {"source": Source(pos.file, pos.line)}
        verify: bool | None = None
        verify_and_map = False
        for k, tv in tm.items():
            kpos = tm.pos[k]
            lk = k.lower()
            if lk in ("cert_file", "key_file", "ca_file"):
                if not isinstance(tv, str):
                    self.err(f"{pre}expected '{lk}' to be filename", kpos)
                o[lk] = tv
            elif lk == "key_password_file":  # beyond nats-server
                o[lk] = self.str_(tv, k, kpos)
            elif lk in ("insecure", "verify", "allow_insecure_cipher_suites", "watch"):
                if not isinstance(tv, bool):
                    self.err(f"{pre}expected '{lk}' to be a boolean", kpos)
                if lk == "verify":
                    verify = tv
                else:
                    o[lk] = tv
            elif lk in ("verify_and_map", "map_and_verify"):
                if not isinstance(tv, bool):
                    self.err(f"{pre}expected '{lk}' to be a boolean", kpos)
                if lk == "map_and_verify":
                    self.warn(
                        f'{_go_quote(k)} is pynatsd\'s alias of "verify_and_map" (nats-server only knows '
                        "verify_and_map)",
                        kpos,
                    )
                verify_and_map = tv
            elif lk == "verify_cert_and_check_known_urls":
                if not isinstance(tv, bool):
                    self.err(f"{pre}expected '{lk}' to be a boolean", kpos)
                if tv and client_ctx:
                    self.err("verify_cert_and_check_known_urls not supported in this context", kpos)
                o[lk] = tv
            elif lk in ("cipher_suites", "curve_preferences"):
                if not isinstance(tv, ConfList):
                    self.err(f"{pre}'{lk}' must be an array of names", kpos)
                if not tv:
                    self.err(f"{pre}'{lk}' cannot be empty", kpos)
                o[lk] = tuple(self.string_list(tv, lk, kpos))
            elif lk == "min_version":
                if not isinstance(tv, str) or isinstance(tv, bool):
                    shown = _go_float_v(tv) if isinstance(tv, (int, float)) else tv
                    self.err(f"error parsing tls config: 'min_version' wrong type: {shown}", kpos)
                # (helper T) beyond nats-server, which refuses "1.0"/"1.1": they are allowed, and
                # pynatsd.tls.context warns loudly when it builds such a context
                if tv not in ("1.0", "1.1", "1.2", "1.3"):
                    self.err(f"error parsing tls config: unknown version: {tv}", kpos)
                o["min_version"] = tv
            elif lk == "timeout":
                o["timeout"] = self.seconds(tv, "timeout", kpos, pre) or DEFAULT_TLS_TIMEOUT
            elif lk == "connection_rate_limit":
                if isinstance(tv, bool) or not isinstance(tv, int):
                    self.err(f"{pre}'connection_rate_limit' wrong type", kpos)
                o["connection_rate_limit"] = tv
            elif lk == "pinned_certs":
                o["pinned_certs"] = self.pinned_certs(tv, kpos, pre)
            elif lk in ("handshake_first", "first", "immediate"):
                o["handshake_first"] = self.handshake_first(tv, k, kpos)
            elif lk in ("certs", "certificates"):
                o["certificates"] = self.cert_pairs(tv, kpos)
            elif lk == "cert_store":
                if not isinstance(tv, str) or not tv:
                    self.err("expected 'cert_store' to be a valid non-empty string", kpos)
                if sys.platform != "win32":
                    self.err("cert_store not compatible with current operating system", kpos)
                self.err("the Windows certificate store is not supported by pynatsd", kpos)
            elif lk in ("cert_match_by", "cert_match", "ca_certs_match", "cert_match_skip_invalid"):
                self.unsupported(k, kpos, "(Windows certificate store)")
            elif lk == "ocsp_peer":  # (helper O)
                o["ocsp_peer"] = self.ocsp_peer(tv, kpos)
            else:
                self.err(f"{pre}unknown field {_go_quote(k)}", kpos)
        if o.get("certificates") and o.get("cert_file"):
            self.err(f"{pre}cannot combine 'cert_file' option with 'certs' option", pos)
        if o.get("cert_file") and not o.get("key_file"):
            self.err("missing 'key_file' in TLS configuration", pos)
        if o.get("key_file") and not o.get("cert_file"):
            self.err("missing 'cert_file' in TLS configuration", pos)
        if o.get("verify_cert_and_check_known_urls"):
            verify = True
        o["verify"] = bool(verify) or verify_and_map
        o["verify_and_map"] = verify_and_map
        return TLSOptions(**o)

    def pinned_certs(self, v: Any, pos: Pos, pre: str) -> frozenset[str] | None:
        if not isinstance(v, ConfList):
            self.err(
                f"{pre}expected 'pinned_certs' to be a list of hex-encoded sha256 of DER encoded "
                "SubjectPublicKeyInfo",
                pos,
            )
        pins: set[str] = set()
        for entry, epos in zip(v, v.pos, strict=True):
            if not isinstance(entry, str):
                self.err(f"{pre}'pinned_certs' entries must be strings", epos)
            low = entry.lower()
            if _HEX64.match(low):
                pins.add(low)
                continue
            # beyond nats-server: a PEM certificate file whose public key is pinned
            if os.path.isfile(entry):
                try:
                    hashes = _spki_sha256_of_pem_file(entry)
                except (OSError, ValueError) as e:
                    self.err(f"{pre}'pinned_certs' file {entry}: not a PEM certificate ({e})", epos)
                if not hashes:
                    self.err(f"{pre}'pinned_certs' file {entry}: no certificate found", epos)
                pins.update(hashes)
                continue
            self.err(
                f"{pre}'pinned_certs' key {low} does not look like hex-encoded sha256 of DER encoded "
                "SubjectPublicKeyInfo (nor is it a PEM certificate file)",
                epos,
            )
        return frozenset(pins) if pins else None

    def handshake_first(self, v: Any, k: str, pos: Pos) -> bool | float:
        if isinstance(v, bool):
            return v
        if not isinstance(v, str):
            go_type = {int: "int64", float: "float64"}.get(type(v), "map[string]interface {}")
            self.err(f"field {_go_quote(k)} should be a boolean or a string, got {go_type}", pos)
        low = v.lower()
        if low in ("true", "on"):
            return True
        if low in ("false", "off"):
            return False
        if low in ("auto", "auto_fallback"):
            return DEFAULT_HANDSHAKE_FIRST_FALLBACK
        try:
            delay = parse_duration(v)
        except ValueError:
            self.err(f"field {_go_quote(k)}'s value {_go_quote(v)} is invalid", pos)
        return delay if delay > 0 else True

    def cert_pairs(self, v: Any, pos: Pos) -> tuple[tuple[str, str], ...]:
        if not isinstance(v, ConfList):
            self.err(f"error parsing certificates config: unsupported type {_tname(v)}", pos)
        pairs = []
        for entry, epos in zip(v, v.pos, strict=True):
            if not isinstance(entry, ConfMap):
                self.err(f"error parsing certificates config: unsupported type {_tname(entry)}", epos)
            cert = key = ""
            for k, fv in entry.items():
                if not isinstance(fv, str):
                    self.err(
                        f"error parsing certificates config: unsupported type {_tname(fv)}", entry.pos[k]
                    )
                if k == "cert_file":
                    cert = fv
                elif k == "key_file":
                    key = fv
                else:
                    self.err(f"error parsing tls certs config, unknown field {_go_quote(k)}", entry.pos[k])
            if not cert or not key:
                self.err(
                    "error parsing certificates config: both 'cert_file' and 'cert_key' options are required",
                    epos,
                )
            pairs.append((cert, key))
        return tuple(pairs)

    # -- OCSP (helper O): nats-server's texts, including its odd ones (Go type names)

    def ocsp(self, v: Any, pos: Pos) -> OCSPOptions:
        src = Source(pos.file, pos.line)
        if isinstance(v, bool):
            return OCSPOptions(mode="auto" if v else "never", source=src)
        if not isinstance(v, ConfMap):
            self.err(f"error parsing ocsp config: unsupported type {_go_type(v)}", pos)
        mode = "auto"
        urls: tuple[str, ...] = ()
        for k, mv in v.items():  # keys are case-sensitive here, as in nats-server
            kpos = v.pos[k]
            if k == "mode":
                if not isinstance(mv, str):
                    self.err(f"interface conversion: interface {{}} is {_go_type(mv)}, not string", kpos)
                if mv.lower() not in OCSP_MODES:
                    self.err("error parsing ocsp config: unsupported ocsp mode string "
                             f"(got {_go_quote(mv)}; use always, must, auto or never)", kpos)
                mode = mv.lower()
            elif k == "url":
                if not isinstance(mv, str):
                    self.err(f"interface conversion: interface {{}} is {_go_type(mv)}, not string", kpos)
                urls = (mv,)
            elif k == "urls":
                self.err(f"interface conversion: interface {{}} is {_go_type(mv)}, not []string "
                         "(nats-server cannot read 'urls'; name one responder with 'url')", kpos)
            else:
                self.err(f"error parsing ocsp config: unsupported field string ({_go_quote(k)}; "
                         "the fields are mode and url)", kpos)
        return OCSPOptions(mode=mode, urls=urls, source=src)

    def ocsp_cache(self, v: Any, pos: Pos) -> OCSPCacheOptions:
        if isinstance(v, bool):
            return OCSPCacheOptions(type="local" if v else "none")
        if not isinstance(v, ConfMap):
            self.err(f"error parsing tags: unsupported type {_go_type(v)}", pos)  # sic, nats-server
        o: dict[str, Any] = {}
        pre = "error parsing OCSP peer cache config, "
        for k, mv in v.items():
            kpos = v.pos[k]
            lk = k.lower()
            unknown = f"{pre}unknown field [{_go_quote(k)}]"
            if lk == "type":
                if not isinstance(mv, str):
                    self.err(unknown, kpos)
                if mv.lower() not in ("none", "local"):
                    self.err(f"{pre}unknown type [{mv}]", kpos)
                o["type"] = mv.lower()
            elif lk == "local_store":
                if not isinstance(mv, str):
                    self.err(unknown, kpos)
                o["local_store"] = mv
            elif lk == "preserve_revoked":
                if not isinstance(mv, bool):
                    self.err(unknown, kpos)
                o["preserve_revoked"] = mv
            elif lk == "save_interval":
                if isinstance(mv, str):
                    try:
                        at = parse_duration(mv)
                    except ValueError as e:
                        self.err(f"error parsing tls peer config, conversion error: {e}", kpos)  # sic
                elif isinstance(mv, (int, float)) and not isinstance(mv, bool):
                    at = float(mv)
                else:
                    self.err(f"{pre}conversion error: unexpected type", kpos)
                o["save_interval"] = float(max(int(at), 1))  # whole seconds, at least 1
            else:
                self.err(unknown, kpos)
        return OCSPCacheOptions(**o)

    def ocsp_peer(self, v: Any, pos: Pos) -> OCSPPeerOptions:
        if isinstance(v, bool):
            return OCSPPeerOptions(verify=v)
        if not isinstance(v, ConfMap):
            # sic: nats-server names the type of the enclosing tls map
            self.err("error parsing ocsp peer config: unsupported type map[string]interface {}", pos)
        o: dict[str, Any] = {}
        pre = "error parsing tls peer config, "
        for k, mv in v.items():
            kpos = v.pos[k]
            lk = k.lower()
            if lk in ("verify", "warn_only", "unknown_is_good", "allow_when_ca_unreachable"):
                if not isinstance(mv, bool):
                    self.err(f"{pre}unknown field [{_go_quote(k)}]", kpos)
                o[lk] = mv
            elif lk in ("ca_timeout", "allowed_clockskew", "cache_ttl_when_next_update_unset"):
                if isinstance(mv, str):
                    try:
                        at = parse_duration(mv)
                    except ValueError as e:
                        detail = "unexpected type" if lk == "allowed_clockskew" else str(e)
                        self.err(f"{pre}conversion error: {detail}", kpos)
                elif isinstance(mv, (int, float)) and not isinstance(mv, bool):
                    at = float(mv)
                else:
                    self.err(f"{pre}conversion error: unexpected type", kpos)
                if at >= 0:  # a negative value keeps the default
                    o[lk] = at
            else:
                self.err(f"{pre}unknown field [{_go_quote(k)}]", kpos)
        return OCSPPeerOptions(**o)

    # -- cluster

    def cluster(self, v: Any, key: str, pos: Pos) -> ClusterOptions:
        if not isinstance(v, ConfMap):
            self.err(f"Expected map to define cluster, got {_tname(v)}", pos)
        o: dict[str, Any] = {"source": Source(pos.file, pos.line)}
        auth_perms: Permissions | None = None
        for k, cv in v.items():
            kpos = v.pos[k]
            lk = k.lower()
            if lk == "name":
                name = self.str_(cv, k, kpos)
                if " " in name:
                    self.err("cluster name cannot contain spaces", kpos)
                o["name"] = name
            elif lk == "listen":
                host, port = self.listen_(cv, kpos)
                o["host"] = host or DEFAULT_HOST
                o["port"] = port
            elif lk == "port":
                o["port"] = self.int_(cv, k, kpos)
            elif lk in ("host", "net"):
                o["host"] = self.str_(cv, k, kpos)
            elif lk == "authorization":
                a = self.authorization(cv, k, kpos)
                if a.users is not None:
                    self.err("Cluster authorization does not allow multiple users", kpos)
                if a.token:
                    self.err("Cluster authorization does not support tokens", kpos)
                o["username"] = a.user
                o["password"] = a.password
                o["auth_timeout"] = a.timeout
                if a.default_permissions is not None:
                    self.cluster_perm_subjects(a.default_permissions, kpos)
                    self.nats_warn(
                        'setting "permissions" within cluster authorization block is deprecated',
                        kpos,
                        field=k,
                    )
                    auth_perms = a.default_permissions
            elif lk == "routes":
                o["routes"] = self.routes(cv, k, kpos)
            elif lk == "tls":
                o["tls"] = self.tls(cv, k, kpos, client_ctx=False)
            elif lk in ("cluster_advertise", "advertise"):
                o["advertise"] = self.str_(cv, k, kpos)
            elif lk in ("no_advertise", "connect_backoff"):
                o[lk] = self.bool_(cv, k, kpos)
            elif lk in ("connect_retries", "pool_size", "ping_max"):
                o[lk] = self.int_(cv, k, kpos)
            elif lk == "permissions":
                perms = self.permissions(cv, k, kpos)
                if perms.allow_responses is not None:
                    self.err("Cluster permissions do not support dynamic responses", kpos)
                self.cluster_perm_subjects(perms, kpos)
                o["permissions"] = perms
            elif lk == "accounts":
                self.string_list(cv, "accounts", kpos)
                self.unsupported(k, kpos, "(pinned accounts)")
            elif lk == "compression":
                if not isinstance(cv, (str, bool, ConfMap)):
                    self.err(
                        f"field {_go_quote(k)} should be a boolean or a structure, got {_tname(cv)}", kpos
                    )
                if cv not in (False, "off", "disabled", "accept"):
                    self.unsupported(k, kpos, "(route compression)")
            elif lk == "ping_interval":
                d = self.duration(cv, "ping_interval", kpos)
                if d > ROUTE_MAX_PING_INTERVAL:
                    self.nats_warn(
                        f"Cluster 'ping_interval' will reset to {format_duration(ROUTE_MAX_PING_INTERVAL)} "
                        "which is the max for routes",
                        kpos,
                    )
                o["ping_interval"] = d
            elif lk == "write_deadline":
                o["write_deadline"] = self.duration(cv, "write_deadline", kpos)
            elif lk == "write_timeout":
                self.write_timeout(cv, k, kpos)
            else:
                self.unknown(v, k)
        if "permissions" not in o and auth_perms is not None:
            o["permissions"] = auth_perms
        return ClusterOptions(**o)

    # -- leafnodes (leafnodes helper L)

    def leafnodes(self, v: Any, key: str, pos: Pos) -> LeafNodeOptions:
        if not isinstance(v, ConfMap):
            self.err(f"Expected map to define a leafnode, got {_tname(v)}", pos)
        o: dict[str, Any] = {"source": Source(pos.file, pos.line)}
        for k, lv in v.items():
            kpos = v.pos[k]
            lk = k.lower()
            if lk == "listen":
                host, port = self.listen_(lv, kpos)
                o["host"] = host or DEFAULT_HOST
                o["port"] = port
            elif lk == "port":
                o["port"] = self.int_(lv, k, kpos)
            elif lk in ("host", "net"):
                o["host"] = self.str_(lv, k, kpos)
            elif lk == "advertise":
                o["advertise"] = self.str_(lv, k, kpos)
            elif lk == "no_advertise":
                o["no_advertise"] = self.bool_(lv, k, kpos)
            elif lk == "authorization":
                self.leaf_authorization(lv, k, kpos, o)
            elif lk == "remotes":
                o["remotes"] = self.leaf_remotes(lv, kpos)
            elif lk == "tls":
                o["tls"] = self.leaf_tls(lv, k, kpos)
            elif lk in ("reconnect", "reconnect_delay", "reconnect_interval"):
                o["reconnect"] = self.seconds(lv, k, kpos, "") or 1.0
            elif lk == "min_version":
                ver = self.str_(lv, k, kpos)
                if not re.fullmatch(r"v?\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?", ver):
                    self.err("invalid leafnode's minimum version: invalid semver", kpos)
                o["min_version"] = ver.lstrip("v")
            elif lk == "compression":
                self.leaf_compression(lv, k, kpos)
            elif lk in ("write_deadline", "write_timeout", "isolate_leafnode_interest", "isolate"):
                self.unsupported(k, kpos, "(leafnodes)")
            else:
                self.unknown(v, k)
        return LeafNodeOptions(**o)

    def leaf_tls(self, v: Any, key: str, pos: Pos) -> TLSOptions:
        t = self.tls(v, key, pos, client_ctx=True)
        if t.ocsp_peer is not None and t.ocsp_peer.verify:
            self.refuse("ocsp_peer", pos, "OCSP peer verification on leafnode connections")
        return t

    def leaf_compression(self, v: Any, key: str, pos: Pos) -> None:
        if not isinstance(v, (str, bool, ConfMap)):
            self.err(f"field {_go_quote(key)} should be a boolean or a structure, got {_tname(v)}", pos)
        if v not in (False, "off", "disabled", "not supported"):
            # peers negotiate compression down to none with a server that offers none
            self.unsupported(key, pos, "(leafnode compression: connections are not compressed)")

    def leaf_authorization(self, v: Any, key: str, pos: Pos, o: dict[str, Any]) -> None:
        am = self.map_(v, key, pos)
        for k, mv in am.items():
            kpos = am.pos[k]
            lk = k.lower()
            if lk in ("user", "username"):
                o["username"] = self.str_(mv, k, kpos)
            elif lk in ("pass", "password"):
                o["password"] = self.str_(mv, k, kpos)
            elif lk == "timeout":
                o["auth_timeout"] = self.seconds(mv, "timeout", kpos, "error parsing authorization config, ") or None
            elif lk == "users":
                o["users"] = tuple(self.leaf_users(mv, k, kpos))
            elif lk in ("account", "nkey", "proxy_required"):
                self.refuse(k, kpos, f"leafnodes authorization {lk!r}")
            else:
                self.unknown(am, k)
        if o.get("users") is not None and (o.get("username") or o.get("password")):
            self.err("can not have a single user/pass and a users array", pos)

    def leaf_users(self, v: Any, key: str, pos: Pos) -> list[LeafUser]:
        if not isinstance(v, ConfList):
            self.err(f"Expected users field to be an array, got {_tname(v)}", pos)
        out: list[LeafUser] = []
        for entry, epos in zip(v, v.pos, strict=True):
            if not isinstance(entry, ConfMap):
                self.err(f"Expected user entry to be a map/struct, got {_tname(entry)}{_show(entry)}", epos)
            u: dict[str, Any] = {}
            for k, uv in entry.items():
                kpos = entry.pos[k]
                lk = k.lower()
                if lk in ("user", "username"):
                    u["username"] = self.str_(uv, k, kpos)
                elif lk in ("pass", "password"):
                    u["password"] = self.str_(uv, k, kpos)
                elif lk == "account":
                    u["account"] = self.str_(uv, k, kpos)
                else:
                    self.unknown(entry, k)
            if not u.get("username"):
                self.err("User entry requires a user", epos)
            out.append(LeafUser(**u))
        return out

    def leaf_remotes(self, v: Any, pos: Pos) -> tuple[LeafRemoteOptions, ...]:
        if not isinstance(v, ConfList):
            self.err(f"Expected remotes field to be an array, got {_tname(v)}", pos)
        out: list[LeafRemoteOptions] = []
        for entry, epos in zip(v, v.pos, strict=True):
            if not isinstance(entry, ConfMap):
                self.err(f"Expected remote leafnode entry to be a map/struct, got {_tname(entry)}", epos)
            r: dict[str, Any] = {"source": Source(epos.file, epos.line)}
            for k, rv in entry.items():
                kpos = entry.pos[k]
                lk = k.lower()
                if lk in ("url", "urls"):
                    if isinstance(rv, str):
                        urls = [rv]
                    elif isinstance(rv, ConfList) and all(isinstance(x, str) for x in rv):
                        urls = list(rv)
                    else:
                        self.err(f"Expected remote leafnode url to be an array or string, got {rv if isinstance(rv, (int, float, str)) else _tname(rv)}", kpos)
                    for u in urls:
                        self.leaf_url(u, kpos)
                    r["urls"] = tuple(urls)
                elif lk in ("account", "local"):
                    r["account"] = self.str_(rv, k, kpos)
                elif lk == "tls":
                    r["tls"] = self.leaf_tls(rv, k, kpos)
                elif lk in ("deny_imports", "deny_import"):
                    r["deny_imports"] = tuple(self.string_list(rv, k, kpos))
                elif lk in ("deny_exports", "deny_export"):
                    r["deny_exports"] = tuple(self.string_list(rv, k, kpos))
                elif lk == "first_info_timeout":
                    r["first_info_timeout"] = self.seconds(rv, k, kpos, "") or 1.0
                elif lk == "compression":
                    self.leaf_compression(rv, k, kpos)
                elif lk in ("credentials", "creds"):
                    self.refuse(k, kpos, "leafnode remote credentials (JWT/NKEY authentication)")
                elif lk in ("nkey", "seed"):
                    self.refuse(k, kpos, "leafnode remote NKEY authentication")
                elif lk == "hub":
                    if self.bool_(rv, k, kpos):
                        self.refuse(k, kpos, "a leafnode remote acting as a hub")
                elif lk in ("ws_compression", "ws_no_masking", "proxy"):
                    self.refuse(k, kpos, "websocket leafnode remotes")
                elif lk in ("no_randomize", "dont_randomize"):
                    self.bool_(rv, k, kpos)  # we try the URLs in order anyway
                elif lk in ("disabled", "jetstream_cluster_migrate", "jetstream_cluster_migrate_delay",
                            "local_isolation", "request_isolation", "no_master"):
                    self.unsupported(k, kpos, "(leafnode remotes)")
                else:
                    self.unknown(entry, k)
            if r.get("urls"):  # nats-server skips a remote without URLs
                out.append(LeafRemoteOptions(**r))
        return tuple(out)

    def leaf_url(self, url: str, pos: Pos) -> None:
        try:
            parts = urlsplit(url.strip())
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            self.err(f"error parsing leafnode url [{_go_quote(url.strip())}]", pos)
        if not parts.scheme or not parts.hostname:
            self.err(f"error parsing leafnode url [{_go_quote(url.strip())}]", pos)
        if parts.scheme.lower() in ("ws", "wss"):
            self.refuse("url", pos, "websocket leafnode remotes")
    def gateway(self, v: Any, key: str, pos: Pos) -> GatewayOptions:
        """(gateways helper G) the ``gateway {}`` block, with nats-server's parse-time checks;
        the start-up checks (name, port, remote names and URLs) are in cluster/gateways.py."""
        if not isinstance(v, ConfMap):
            self.err(f"Expected map to define gateway, got {_tname(v)}", pos)
        o: dict[str, Any] = {"source": Source(pos.file, pos.line)}
        for k, gv in v.items():
            kpos = v.pos[k]
            lk = k.lower()
            if lk == "name":
                name = self.str_(gv, k, kpos)
                if " " in name:
                    self.err("gateway name cannot contain spaces", kpos)
                o["name"] = name
            elif lk == "listen":
                host, port = self.listen_(gv, kpos)
                o["host"] = host or DEFAULT_HOST
                o["port"] = port
            elif lk == "port":
                o["port"] = self.int_(gv, k, kpos)
            elif lk in ("host", "net"):
                o["host"] = self.str_(gv, k, kpos)
            elif lk == "authorization":
                a = self.authorization(gv, k, kpos)
                if a.users is not None:
                    self.err("Gateway authorization does not allow multiple users", kpos)
                if a.token:
                    self.err("Gateway authorization does not support tokens", kpos)
                if a.default_permissions is not None:
                    self.refuse(k, kpos, "permissions in the gateway authorization block")
                o["username"] = a.user
                o["password"] = a.password
                o["auth_timeout"] = a.timeout
            elif lk == "tls":
                o["tls"] = self.gateway_tls(gv, k, kpos)
            elif lk in ("advertise", "gateway_advertise"):
                o["advertise"] = self.str_(gv, k, kpos)
            elif lk in ("reject_unknown", "reject_unknown_cluster"):
                o["reject_unknown_cluster"] = self.bool_(gv, k, kpos)
            elif lk == "connect_backoff":
                o["connect_backoff"] = self.bool_(gv, k, kpos)
            elif lk == "connect_retries":
                o["connect_retries"] = self.int_(gv, k, kpos)
            elif lk == "gateways":
                if not isinstance(gv, ConfList):
                    self.err(f"Expected gateways field to be an array, got {_tname(gv)}", kpos)
                o["gateways"] = tuple(self.remote_gateway(g, gpos) for g, gpos in zip(gv, gv.pos, strict=True))
            elif lk in ("ping_interval", "write_deadline", "write_timeout"):
                self.refuse(k, kpos, f"gateway {lk}")
            else:
                self.unknown(v, k)
        return GatewayOptions(**o)

    def remote_gateway(self, v: Any, pos: Pos) -> RemoteGatewayOptions:
        if not isinstance(v, ConfMap):
            self.err(f"Expected gateway entry to be a map/struct, got {_tname(v)}", pos)
        o: dict[str, Any] = {}
        urls: list[str] = []
        for k, gv in v.items():
            kpos = v.pos[k]
            lk = k.lower()
            if lk == "name":
                o["name"] = self.str_(gv, k, kpos)
            elif lk == "url":
                urls.append(self.gateway_url(self.str_(gv, k, kpos), kpos))
            elif lk == "urls":
                urls.extend(self.gateway_url(u, kpos) for u in self.string_list(gv, k, kpos))
            elif lk == "tls":
                o["tls"] = self.gateway_tls(gv, k, kpos, remote=True)
            else:
                self.unknown(v, k)
        o["urls"] = tuple(urls)
        return RemoteGatewayOptions(**o)

    def gateway_tls(self, v: Any, key: str, pos: Pos, remote: bool = False) -> TLSOptions:
        """A gateway tls block (``remote``: a ``gateways`` entry's). ``verify_and_map``,
        ``verify_cert_and_check_known_urls`` and ``pinned_certs`` of gateway.tls apply to every
        gateway connection (cluster/gateways.py); in a remote entry nats-server parses and then
        ignores them, which we say with a warning. ``ocsp_peer`` and ``handshake_first`` are
        accepted and have no effect, as in nats-server (gateway TLS always comes first, and OCSP
        peer checks are only made on client and leaf connections): a warning says so."""
        t = self.tls(v, key, pos, client_ctx=False)
        for name, on, why in (
            ("ocsp_peer", t.ocsp_peer is not None, "OCSP peer checks apply to client and leafnode connections only"),
            ("handshake_first", t.handshake_first is not False, "gateway connections always start with TLS"),
        ):
            if on:
                self.warn(f"{_go_quote(name)} in a gateway tls block has no effect ({why}), as in nats-server", pos)
        if remote:
            for name, on in (
                ("verify_and_map", t.verify_and_map),
                ("verify_cert_and_check_known_urls", t.verify_cert_and_check_known_urls),
                ("pinned_certs", t.pinned_certs is not None),
            ):
                if on:
                    self.warn(
                        f"{_go_quote(name)} in a remote gateway's tls block is ignored, as by nats-server "
                        "(the gateway block's tls applies to every gateway connection)",
                        pos,
                    )
        return t

    def gateway_url(self, text: str, pos: Pos) -> str:
        try:
            u = urlsplit(text if "://" in text else "nats://" + text)
            u.port  # noqa: B018 - validates the port
        except ValueError as e:
            self.err(f"error parsing gateway url [{text!r}]: {e}", pos)
        if not u.hostname:
            self.err(f"error parsing gateway url [{text!r}]: missing host", pos)
        return text

    def cluster_perm_subjects(self, perms: Permissions, pos: Pos) -> None:
        for side, sp in (("import", perms.publish), ("export", perms.subscribe)):
            if sp is None:
                continue
            for kind, subjects in (("allow", sp.allow or ()), ("deny", sp.deny)):
                for s in subjects:
                    if not _valid_subject(s):
                        self.err(f"cluster {side} {kind}: subject {_go_quote(s)} is not a valid subject", pos)

    def routes(self, v: Any, key: str, pos: Pos) -> tuple[str, ...]:
        if not isinstance(v, ConfList):
            self.err(f"{_go_quote(key)}: expected an array of route URLs, got {_tname(v)}", pos)
        out: list[str] = []
        for u, upos in zip(v, v.pos, strict=True):
            url = self.str_(u, key, upos)
            if url in out:
                self.nats_warn("Duplicate route entry detected", upos, field=url)
                continue
            try:
                urlsplit(url.strip())
            except ValueError:
                self.err(f"error parsing route url [{_go_quote(url.strip())}]", upos)
            out.append(url)
        return tuple(out)


# ---- flags --------------------------------------------------------------------------------------


def _flag_cluster(listen: str, cluster: ClusterOptions) -> ClusterOptions:
    """``--cluster``/``--cluster_listen`` URL (nats://[user:pass@]host:port, ":-1" random)."""
    if not listen:
        return replace(cluster, port=0)
    text = listen
    random_port = text.endswith(":-1")
    if random_port:
        text = text[:-3] + ":0"
    try:
        u = urlsplit(text)
        host, port_s = split_host_port(u.netloc.rpartition("@")[2])
    except ValueError as e:
        raise ConfigError(f"--cluster {listen}: {e}", "<flags>") from None
    if not _PORT.match(port_s):
        raise ConfigError(f"--cluster {listen}: invalid port {_go_quote(port_s)}", "<flags>")
    port = -1 if random_port else int(port_s)
    username = password = None
    if "@" in u.netloc:
        if u.password is None:
            raise ConfigError("expected cluster password to be set", "<flags>")
        username, password = u.username, u.password
    return replace(cluster, host=host, port=port, username=username, password=password)


def _apply_flags(
    kw: dict[str, Any], auth: AuthOptions, flags: FlagValues, warnings: list[str]
) -> AuthOptions:
    simple = (
        "host",
        "port",
        "server_name",
        "pid_file",
        "http_port",
        "https_port",
        "client_advertise",
        "ports_file_dir",
        "log_file",
        "logtime",
        "logtime_utc",
        "syslog",
        "remote_syslog",
        "debug",
        "trace",
        "trace_verbose",
        "log_size_limit",
        "max_traced_msg_len",
    )
    for name in simple:
        value = getattr(flags, name)
        if value is not None:
            kw[name] = value
    if flags.user is not None:
        auth = replace(auth, user=flags.user)
    if flags.password is not None:
        auth = replace(auth, password=flags.password)
    if flags.token is not None:
        auth = replace(auth, token=flags.token)

    # TLS: any --tls* flag replaces the certificate part of the tls block; --tls=false drops it
    tls_given = any(
        x is not None for x in (flags.tls, flags.tls_cert, flags.tls_key, flags.tls_ca_cert, flags.tls_verify)
    )
    if flags.tls is False:
        kw["tls"] = None
    elif tls_given:
        if not flags.tls_cert:
            raise ConfigError("TLS Server certificate must be present and valid", "<flags>")
        if not flags.tls_key:
            raise ConfigError("TLS Server private key must be present and valid", "<flags>")
        base = kw.get("tls") or TLSOptions()
        kw["tls"] = replace(
            base,
            cert_file=flags.tls_cert,
            key_file=flags.tls_key,
            key_password_file=None,
            ca_file=flags.tls_ca_cert or None,
            verify=bool(flags.tls_verify),
            verify_from_flags=True,
            cipher_suites=(),
            curve_preferences=(),
            min_version=None,
            allow_insecure_cipher_suites=False,
            certificates=(),
            source=Source("<flags>"),
        )

    cluster_flags = (
        flags.cluster_listen,
        flags.routes,
        flags.cluster_name,
        flags.cluster_advertise,
        flags.no_advertise,
        flags.connect_retries,
    )
    if any(x is not None for x in cluster_flags):
        cluster: ClusterOptions = kw.get("cluster") or ClusterOptions(source=Source("<flags>"))
        if flags.cluster_name is not None:
            if " " in flags.cluster_name:
                raise ConfigError("cluster name cannot contain spaces", "<flags>")
            cluster = replace(cluster, name=flags.cluster_name)
        if flags.cluster_advertise is not None:
            cluster = replace(cluster, advertise=flags.cluster_advertise)
        if flags.no_advertise is not None:
            cluster = replace(cluster, no_advertise=flags.no_advertise)
        if flags.connect_retries is not None:
            cluster = replace(cluster, connect_retries=flags.connect_retries)
        if flags.cluster_listen is not None:
            cluster = _flag_cluster(flags.cluster_listen, cluster)
        if flags.routes is not None:
            routes = tuple(r.strip() for r in flags.routes.split(",")) if flags.routes else ()
            cluster = replace(cluster, routes=routes)
            if routes and cluster.port == 0:
                raise ConfigError("solicited routes require cluster capabilities, e.g. --cluster", "<flags>")
        kw["cluster"] = cluster

    if flags.jetstream:
        warnings.append(f"<flags>: -js (JetStream): {NOT_SUPPORTED}")
    if flags.store_dir:
        kw["store_dir"] = flags.store_dir  # (helper O) where OCSP staples are kept
        warnings.append(f"<flags>: --store_dir (JetStream): {NOT_SUPPORTED} (OCSP staple files are kept there)")
    if flags.profile:
        warnings.append(f"<flags>: --profile (profiling port): {NOT_SUPPORTED}")
    return auth


def reload_flags(flags: FlagValues | None) -> FlagValues | None:
    """(helper U) The flags a reload applies over the file. As nats-server, not the --tls* ones:
    a server started with one of them refuses every reload (the flag's field differs from what the
    file gives: nats-server's message names the first of TLS, TLSVerify, TLSCert, TLSKey, TLSCaCert),
    and after --tls=false a reload applies the file's tls block."""
    if flags is None:
        return None
    for field, value in (("TLS", flags.tls), ("TLSVerify", flags.tls_verify), ("TLSCert", flags.tls_cert),
                         ("TLSKey", flags.tls_key), ("TLSCaCert", flags.tls_ca_cert)):
        if value:
            old, new = ("true", "false") if value is True else (value, "")
            raise ConfigError(f"config reload not supported for {field}: old={old}, new={new}")
    return replace(flags, tls=None, tls_verify=None, tls_cert=None, tls_key=None, tls_ca_cert=None)


# ---- start-up validation --------------------------------------------------------------------------


def _validate(o: ServerOptions, users_defined: bool) -> list[str]:
    """nats-server's start-up checks (not run by ``-t``). Returns extra warnings."""
    where = o.config_file or "<flags>"
    if o.lame_duck_duration > 0 and o.lame_duck_grace_period >= o.lame_duck_duration:
        raise ConfigError(
            f"lame duck grace period ({format_duration(o.lame_duck_grace_period)}) should be strictly "
            f"lower than lame duck duration ({format_duration(o.lame_duck_duration)})",
            where,
        )
    if o.max_payload > o.max_pending:
        raise ConfigError(
            f"max_payload ({o.max_payload}) cannot be higher than max_pending ({o.max_pending})", where
        )
    if o.server_name and " " in o.server_name:
        raise ConfigError("server name cannot contain spaces", where)
    nau = o.auth.no_auth_user
    if nau:
        if not users_defined:
            raise ConfigError(f'no_auth_user: "{nau}" present, but users/nkeys are not defined', where)
        if not any(u.username == nau for u in o.auth.users):
            raise ConfigError(
                f'no_auth_user: "{nau}" not present as user or nkey in authorization block or account '
                "configuration",
                where,
            )
    # (accounts helper A) the system account must exist ($SYS is created when not configured)
    if o.system_account and o.system_account != SYSTEM_ACCOUNT:
        if not any(a.name == o.system_account for a in o.accounts):
            raise ConfigError("error resolving system account: account missing", where)
    # (leafnodes helper L) accounts named by the leafnodes block must exist
    ln = o.leafnodes
    if ln is not None:
        names = {a.name for a in o.accounts} | {"$G", SYSTEM_ACCOUNT}
        for lu in ln.users or ():
            if lu.account and lu.account not in names:
                raise ConfigError(
                    f"cannot find local account {_go_quote(lu.account)} specified in leafnode authorization", where
                )
        for rem in ln.remotes:
            if rem.account and rem.account not in names:
                raise ConfigError(f"cannot find local account {_go_quote(rem.account)} specified in leafnode remote", where)
    # (helper O) checked when the server starts, as nats-server does (``-t`` does not)
    if o.tls is not None and o.tls.ocsp_peer is not None and o.tls.ocsp_peer.verify and not o.tls.verify:
        raise ConfigError(
            "OCSP peer verification for client connections requires TLS verify (mTLS) to be enabled", where
        )
    warnings = []
    if o.max_payload > MAX_PAYLOAD_WARN:
        warnings.append(
            f"{where}: Maximum payloads over {MAX_PAYLOAD_WARN / 1024 / 1024:.2f} MB are generally "
            "discouraged and could lead to poor performance"
        )
    return warnings


# ---- entry point ----------------------------------------------------------------------------------

_DEFAULTS_WHEN_ZERO = {
    "port": DEFAULT_PORT,
    "max_payload": DEFAULT_MAX_PAYLOAD,
    "max_control_line": DEFAULT_MAX_CONTROL_LINE,
    "max_pending": DEFAULT_MAX_PENDING,
    "max_connections": DEFAULT_MAX_CONNECTIONS,
    "ping_interval": DEFAULT_PING_INTERVAL,
    "ping_max": DEFAULT_PING_MAX,
    "write_deadline": DEFAULT_WRITE_DEADLINE,
    "max_closed_clients": DEFAULT_MAX_CLOSED_CLIENTS,
    "lame_duck_duration": DEFAULT_LAME_DUCK_DURATION,
    "lame_duck_grace_period": DEFAULT_LAME_DUCK_GRACE_PERIOD,
}


# ---- FIPS policy switch in the environment (added by helper T) ---------------------------------

FIPS_ENV = "PYNATSD_FIPS"


def fips_from_env(env: Mapping[str, str]) -> bool:
    """True when the environment turns the FIPS policy on: ``PYNATSD_FIPS=1`` (true/on/yes), or
    Go's ``GODEBUG=fips140=on`` (only/debug), the switch a nats-server start script uses.

    The environment can only turn the policy on (``fips: true`` in the file stays on); a value of
    PYNATSD_FIPS that is not a switch is a start-up error rather than silently ignored."""
    raw = env.get(FIPS_ENV, "").strip()
    if raw:
        v = raw.lower()
        if v in ("1", "true", "on", "yes"):
            return True
        if v not in ("0", "false", "off", "no"):
            raise ConfigError(
                f'environment variable {FIPS_ENV}="{raw}" is not a switch; set it to 1 (on) or 0 (off)',
                "<environment>",
            )
    for item in env.get("GODEBUG", "").split(","):
        key, _, value = item.strip().partition("=")
        if key == "fips140" and value in ("on", "only", "debug"):
            return True
    return False


def load_options(
    config_file: str | None, flags: FlagValues | None = None, *, validate: bool = True
) -> ServerOptions:
    """Build the server options from a config file (or none) and the flags given.

    ``validate=False`` skips nats-server's start-up checks (max_payload vs max_pending,
    no_auth_user, ...), which is what ``-t`` does. Raises ConfigError.
    """
    loader = _Loader(config_file or "<flags>")
    digest = ""
    if config_file:
        conf = parse_file(config_file)
        digest = config_digest(conf)
        loader.load(conf)
    kw = loader.kw
    users_defined = bool(kw.pop("_users_defined", False))
    auth = loader.auth
    if loader.account_users:  # (accounts helper A) account users authenticate like any other
        auth = replace(auth, users=auth.users + tuple(u for u, _ in loader.account_users))
        users_defined = True
    kw["accounts"] = tuple(loader.account_opts)
    if loader.no_system_account:
        kw["system_account"] = ""
    if loader.system_account is not None:
        kw["system_account"] = loader.system_account[0]
    warnings = loader.warnings
    if flags is not None:
        auth = _apply_flags(kw, auth, flags, warnings)
    for name, default in _DEFAULTS_WHEN_ZERO.items():
        if kw.get(name) == 0:
            kw[name] = default
    if not kw.get("host"):
        kw["host"] = DEFAULT_HOST
    if not kw.get("http_host"):
        kw["http_host"] = kw["host"]  # monitoring binds where clients do unless told otherwise
    if auth.timeout == 0:
        auth = replace(auth, timeout=None)
    if not kw.get("fips") and fips_from_env(os.environ):  # (helper T) FIPS policy from the environment
        kw["fips"] = True
    opts = ServerOptions(
        config_file=config_file,
        auth=auth,
        warnings=tuple(warnings),
        config_warnings=tuple(loader.config_warnings),
        config_digest=digest,
        **kw,
    )
    if validate and opts.gateway is not None and opts.leafnodes is not None and loader.system_account is None:
        # (gateways helper G) nats-server's start-up check (an explicit system_account)
        raise ConfigError("leaf nodes and gateways (both being defined) require a system account to also be configured")
    if validate:
        extra = _validate(opts, users_defined)
        if extra:
            opts = replace(opts, warnings=opts.warnings + tuple(extra))
    return opts
