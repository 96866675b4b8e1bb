"""Typed, validated server options: what the config file and the command line resolve to.

Options are frozen dataclasses built once from config + flags (see ``config/load.py``); a reload
builds a new set and ``reload.py`` applies the difference. Defaults are nats-server 2.15's.
Times are float seconds, sizes are int bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_PORT = 4222
DEFAULT_HOST = "0.0.0.0"
DEFAULT_MAX_PAYLOAD = 1024 * 1024
DEFAULT_MAX_CONTROL_LINE = 4096
DEFAULT_MAX_PENDING = 64 * 1024 * 1024
DEFAULT_MAX_CONNECTIONS = 64 * 1024
DEFAULT_PING_INTERVAL = 120.0
DEFAULT_PING_MAX = 2
DEFAULT_WRITE_DEADLINE = 10.0
DEFAULT_AUTH_TIMEOUT = 2.0
DEFAULT_TLS_TIMEOUT = 2.0
DEFAULT_LAME_DUCK_DURATION = 120.0
DEFAULT_LAME_DUCK_GRACE_PERIOD = 10.0
DEFAULT_MAX_CLOSED_CLIENTS = 10000
RANDOM_PORT = -1


@dataclass(frozen=True)
class Source:
    """Where a value was written, for error messages (file may be '<flags>')."""

    file: str = ""
    line: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


@dataclass(frozen=True)
class SubjectPermission:
    """Allow/deny subject lists for publish or subscribe. ``allow=None`` means allow all."""

    allow: tuple[str, ...] | None = None
    deny: tuple[str, ...] = ()


@dataclass(frozen=True)
class ResponsePermission:
    """allow_responses: a client may publish to reply subjects it received, max_msgs times, within expires."""

    max_msgs: int = 1
    expires: float = 120.0


@dataclass(frozen=True)
class Permissions:
    publish: SubjectPermission | None = None
    subscribe: SubjectPermission | None = None
    allow_responses: ResponsePermission | None = None


@dataclass(frozen=True)
class User:
    """A user of the authorization block (or of an account). For verify_and_map users the
    username is the certificate identity (email, DNS name, URI or subject DN) and there is no
    password."""

    username: str
    password: str | None = None  # plain text or a bcrypt hash ("$2a$", "$2b$", "$2y$")
    permissions: Permissions | None = None
    account: str | None = None
    allowed_connection_types: tuple[str, ...] = ()
    # (added by nkeys helper N) an nkey user: its public user NKEY ("U..."); ``username`` is then
    # the same string (how /connz, logs and no_auth_user name it) and there is no password
    nkey: str | None = None


@dataclass(frozen=True)
class AuthOptions:
    """The top-level authorization block, merged with --user/--pass/--auth/--no_auth_user."""

    user: str | None = None
    password: str | None = None
    token: str | None = None
    users: tuple[User, ...] = ()
    timeout: float | None = None  # None: DEFAULT_AUTH_TIMEOUT, or tls.timeout + 1 with TLS
    default_permissions: Permissions | None = None
    no_auth_user: str | None = None

    @property
    def required(self) -> bool:
        return bool(self.user or self.token or self.users)


# ---- accounts (added by accounts helper A) -----------------------------------------------------


@dataclass(frozen=True)
class StreamExport:
    """``exports: [{stream: subject, accounts: [...]}]``; ``accounts=None``: public."""

    subject: str
    accounts: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ServiceExport:
    """``exports: [{service: subject, response: singleton|stream|chunked, accounts: [...]}]``."""

    subject: str
    accounts: tuple[str, ...] | None = None
    response: str = "singleton"


@dataclass(frozen=True)
class StreamImport:
    """``imports: [{stream: {account, subject}, prefix|to}]``: messages published in ``account``
    on ``subject`` reach this account's subscribers (subject prefixed, or renamed to ``to``)."""

    account: str
    subject: str
    prefix: str = ""
    to: str = ""


@dataclass(frozen=True)
class ServiceImport:
    """``imports: [{service: {account, subject}, to}]``: requests published in this account on
    ``to`` (default ``subject``) reach ``account``'s responders on ``subject``."""

    account: str
    subject: str
    to: str = ""


@dataclass(frozen=True)
class AccountOptions:
    """One account of the ``accounts`` block. Its users are in ``AuthOptions.users`` (with
    ``User.account`` naming it); limits of 0 or less mean unlimited (-1 as nats-server)."""

    name: str
    default_permissions: Permissions | None = None
    stream_exports: tuple[StreamExport, ...] = ()
    service_exports: tuple[ServiceExport, ...] = ()
    stream_imports: tuple[StreamImport, ...] = ()
    service_imports: tuple[ServiceImport, ...] = ()
    max_connections: int = -1
    max_subscriptions: int = -1
    max_payload: int = -1
    source: Source = field(default_factory=Source)


@dataclass(frozen=True)
class TLSOptions:
    """One ``tls {}`` block (client port, cluster, gateway, leafnode or monitoring)."""

    cert_file: str | None = None
    key_file: str | None = None
    key_password_file: str | None = None  # beyond nats-server: passphrase of an encrypted key
    ca_file: str | None = None
    verify: bool = False
    verify_and_map: bool = False
    insecure: bool = False
    # lower-case hex SHA-256 of each pinned certificate's SubjectPublicKeyInfo
    pinned_certs: frozenset[str] | None = None
    cipher_suites: tuple[str, ...] = ()  # nats-server (Go) names as written
    curve_preferences: tuple[str, ...] = ()  # nats-server (Go) names as written
    min_version: str | None = None  # "1.0" .. "1.3"
    timeout: float = DEFAULT_TLS_TIMEOUT
    # False: INFO first then TLS. True: TLS first. A float: wait that long for a TLS
    # ClientHello, then fall back to INFO first (nats-server's duration form).
    handshake_first: bool | float = False
    connection_rate_limit: int = 0
    watch: bool = False  # beyond nats-server: reload cert/key/CA when the files change
    # nats-server 2.12+: needed to name any suite Go classes as insecure (added by tls helper C)
    allow_insecure_cipher_suites: bool = False
    # (added by config helper B) "certs"/"certificates": several (cert_file, key_file) pairs,
    # chosen per ClientHello/SNI; never combined with cert_file
    certificates: tuple[tuple[str, str], ...] = ()
    # (added by config helper B) cluster/gateway blocks only: verify the peer and check that its
    # certificate's DNS names match a configured route/gateway URL
    verify_cert_and_check_known_urls: bool = False
    # (added by OCSP helper O) ``ocsp_peer``: check the peer's certificate chain with OCSP
    ocsp_peer: OCSPPeerOptions | None = None
    # (added by tls-scenarios helper U) --tls* flags replaced this block: client certificates are
    # then asked for only with --tlsverify, even when the file has verify_and_map (nats-server keeps
    # that flag from the file but takes verify from the command line alone)
    verify_from_flags: bool = False
    source: Source = field(default_factory=Source)


# ---- OCSP (added by OCSP helper O; defaults are nats-server's) ----------------------------------


@dataclass(frozen=True)
class OCSPOptions:
    """The top-level ``ocsp`` block: stapling the served certificates' OCSP status.

    ``mode``: "auto" (staple when the certificate has Must-Staple), "must" (same, and shut down
    when it is revoked), "always" (staple every certificate, shut down on revocation) or "never".
    ``urls``: responders to ask instead of the certificate's AIA OCSP URLs."""

    mode: str = "auto"
    urls: tuple[str, ...] = ()
    source: Source = field(default_factory=Source)


@dataclass(frozen=True)
class OCSPPeerOptions:
    """``ocsp_peer`` inside a tls block (seconds for the times)."""

    verify: bool = False
    ca_timeout: float = 2.0
    allowed_clockskew: float = 30.0
    warn_only: bool = False
    unknown_is_good: bool = False
    allow_when_ca_unreachable: bool = False
    cache_ttl_when_next_update_unset: float = 3600.0


@dataclass(frozen=True)
class OCSPCacheOptions:
    """The top-level ``ocsp_cache`` block: where peer-check responses are kept."""

    type: str = "local"  # "local" or "none"
    local_store: str = "_rc_"
    preserve_revoked: bool = False
    save_interval: float = 300.0


@dataclass(frozen=True)
class LeafUser:
    """(leafnodes helper L) a user of ``leafnodes { authorization { users [...] } }``: a leaf
    connection logging in as it is bound to ``account`` (the global account when None)."""

    username: str
    password: str | None = None
    account: str | None = None


@dataclass(frozen=True)
class LeafRemoteOptions:
    """(leafnodes helper L) one entry of ``leafnodes { remotes [...] }``: a hub to dial."""

    urls: tuple[str, ...] = ()
    account: str | None = None  # the local account bound to this leaf connection ($G when None)
    tls: TLSOptions | None = None
    deny_imports: tuple[str, ...] = ()  # subjects the hub may not send us (our subscriptions)
    deny_exports: tuple[str, ...] = ()  # subjects we do not send the hub (its subscriptions)
    first_info_timeout: float = 1.0
    source: Source = field(default_factory=Source)


@dataclass(frozen=True)
class LeafNodeOptions:
    """(leafnodes helper L) the ``leafnodes {}`` block: the leafnode listener (hub side, when
    ``port`` is set) and the remotes this server dials (spoke side)."""

    host: str = DEFAULT_HOST
    port: int = 0  # 0: no listener; -1 in config: a random port (stored as -1)
    advertise: str | None = None
    no_advertise: bool = False
    username: str | None = None
    password: str | None = None
    users: tuple[LeafUser, ...] | None = None
    auth_timeout: float | None = None
    tls: TLSOptions | None = None
    remotes: tuple[LeafRemoteOptions, ...] = ()
    reconnect: float = 1.0  # seconds between attempts to dial a remote
    min_version: str | None = None
    source: Source = field(default_factory=Source)


@dataclass(frozen=True)
class ClusterOptions:
    name: str | None = None
    host: str = DEFAULT_HOST
    port: int = 0
    advertise: str | None = None
    no_advertise: bool = False
    routes: tuple[str, ...] = ()
    connect_retries: int = 0
    pool_size: int = 0
    username: str | None = None
    password: str | None = None
    auth_timeout: float | None = None
    permissions: Permissions | None = None  # publish = "import", subscribe = "export"
    tls: TLSOptions | None = None
    # (added by config helper B) further cluster block keys; None: the server default
    connect_backoff: bool = False
    ping_interval: float | None = None
    ping_max: int | None = None
    write_deadline: float | None = None
    source: Source = field(default_factory=Source)


@dataclass(frozen=True)
class RemoteGatewayOptions:
    """(added by gateways helper G) one entry of ``gateway { gateways: [...] }``."""

    name: str = ""
    urls: tuple[str, ...] = ()
    tls: TLSOptions | None = None


@dataclass(frozen=True)
class GatewayOptions:
    """(added by gateways helper G) the ``gateway {}`` block (super-cluster)."""

    name: str = ""
    host: str = DEFAULT_HOST
    port: int = 0
    advertise: str | None = None
    username: str | None = None
    password: str | None = None
    auth_timeout: float | None = None
    tls: TLSOptions | None = None
    gateways: tuple[RemoteGatewayOptions, ...] = ()
    reject_unknown_cluster: bool = False
    connect_retries: int = 0
    connect_backoff: bool = False
    source: Source = field(default_factory=Source)


@dataclass(frozen=True)
class ServerOptions:
    config_file: str | None = None
    server_name: str | None = None
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    client_advertise: str | None = None

    # limits
    max_payload: int = DEFAULT_MAX_PAYLOAD
    max_control_line: int = DEFAULT_MAX_CONTROL_LINE
    max_pending: int = DEFAULT_MAX_PENDING
    max_connections: int = DEFAULT_MAX_CONNECTIONS  # an explicit 0 in config is stored as -1
    max_subscriptions: int = 0  # 0: unlimited
    max_sub_tokens: int = 0
    ping_interval: float = DEFAULT_PING_INTERVAL
    ping_max: int = DEFAULT_PING_MAX
    write_deadline: float = DEFAULT_WRITE_DEADLINE
    lame_duck_duration: float = DEFAULT_LAME_DUCK_DURATION
    lame_duck_grace_period: float = DEFAULT_LAME_DUCK_GRACE_PERIOD
    max_closed_clients: int = DEFAULT_MAX_CLOSED_CLIENTS
    no_header_support: bool = False

    # auth
    auth: AuthOptions = field(default_factory=AuthOptions)

    # (added by accounts helper A) the accounts block, and the system account ("" with
    # no_system_account: true)
    accounts: tuple[AccountOptions, ...] = ()
    system_account: str = "$SYS"

    # TLS for the client port
    tls: TLSOptions | None = None
    allow_non_tls: bool = False
    fips: bool = False

    # monitoring
    http_host: str = DEFAULT_HOST
    http_port: int = 0  # 0: off, -1: random
    https_port: int = 0
    http_base_path: str = ""
    # beyond nats-server: warn (log, /metrics) when a served TLS certificate expires within
    # this many days; checked at start and daily (pynatsd.monitor.certwatch)
    tls_expiry_warn_days: int = 30
    # (added by reload helper R) beyond nats-server: how often ``watch: true`` tls blocks stat
    # their files (pynatsd.tls.watch); not a config key, set it when embedding or testing
    tls_watch_interval: float = 1.0

    # clustering
    cluster: ClusterOptions | None = None
    # (leafnodes helper L)
    leafnodes: LeafNodeOptions | None = None
    gateway: GatewayOptions | None = None  # (gateways helper G)

    # (added by OCSP helper O) OCSP stapling, the peer-check response cache, and store_dir
    # (nats-server's JetStream directory; pynatsd only keeps OCSP staples under <store_dir>/ocsp)
    ocsp: OCSPOptions | None = None
    ocsp_cache: OCSPCacheOptions | None = None
    store_dir: str | None = None

    # logging and process
    debug: bool = False
    trace: bool = False
    trace_verbose: bool = False
    logtime: bool = True
    logtime_utc: bool = False
    log_file: str | None = None
    log_size_limit: int = 0
    syslog: bool = False
    remote_syslog: str | None = None
    pid_file: str | None = None
    ports_file_dir: str | None = None
    max_traced_msg_len: int = 0

    # warnings collected while loading (ignored features, converted values); logged at start
    warnings: tuple[str, ...] = ()
    # (added by config helper B) the subset of ``warnings`` that nats-server itself gives for
    # this config; like nats-server, ``-t`` reports them as failures
    config_warnings: tuple[str, ...] = ()
    # (added by config helper B) nats-server's "sha256:<hex>" digest of the parsed config file
    # ("" without one), for /varz config_digest and the reload log line
    config_digest: str = ""
