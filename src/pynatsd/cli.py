"""The ``pynatsd`` command: nats-server compatible flags, ``-t``, ``--signal``, ``certs``.

Flags are parsed the way Go's ``flag`` package does for nats-server (one or two dashes,
``--x=v`` or ``--x v``, booleans as ``--tls`` or ``--tls=false``, parsing stops at the first
non-flag word, then only ``version`` and ``help`` are understood). The flags given override the
config file, at start and again on every reload. ``pynatsd certs ...`` makes test certificates
(``pynatsd.tls.certs``).

Start-up errors print one line, ``pynatsd: <file>:<line>: <message>``, and exit 1.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from pynatsd import NATS_SERVER_COMPAT_VERSION, __version__
from pynatsd.config.load import FlagValues, load_options, reload_flags
from pynatsd.config.options import ServerOptions
from pynatsd.errors import ConfigError

PROG = "pynatsd"

# pgrep -f pattern for running pynatsd servers: "pynatsd ...", "python .../bin/pynatsd ..." and
# "python -m pynatsd ...". Module-level so tests can aim it at a process of their own.
PROCESS_PATTERN = r"^([^ ]*/)?pynatsd( |$)|^[^ ]*python[^ ]* ([^ ]*/)?pynatsd( |$)|^[^ ]*python[^ ]* (-[^ ]+ )*-m pynatsd( |$)"

SIGNALS = {
    "stop": signal.SIGKILL,
    "quit": signal.SIGINT,
    "term": signal.SIGTERM,
    "reopen": signal.SIGUSR1,
    "reload": signal.SIGHUP,
    "ldm": signal.SIGUSR2,
}

USAGE = f"""
Usage: {PROG} [options]
       {PROG} certs DIR [--client NAME ...]   (make a CA and certificates for tests)
       {PROG} tls-report [-c FILE] [flags] [--client-cert FILE ...] [--json]   (explain the TLS set-up)

Server Options:
    -a, --addr, --net <host>         Bind to host address (default: 0.0.0.0)
    -p, --port <port>                Use port for clients (default: 4222, -1: random)
    -n, --name
        --server_name <server_name>  Server name (default: auto)
    -P, --pid <file>                 File to store PID
    -m, --http_port <port>           Use port for http monitoring
    -ms,--https_port <port>          Use port for https monitoring
    -c, --config <file>              Configuration file
    -t                               Test configuration and exit
    -sl,--signal <signal>[=<pid>]    Send signal to pynatsd process (ldm, stop, quit, term, reopen, reload)
                                     <pid> can be either a PID (e.g. 1) or the path to a PID file
        --client_advertise <string>  Client URL to advertise to other servers
        --ports_file_dir <dir>       Creates a ports file in the specified directory (<executable_name>_<pid>.ports).

Logging Options:
    -l, --log <file>                 File to redirect log output
    -T, --logtime                    Timestamp log entries (default: true)
        --logtime_utc                Timestamps in UTC instead of local timezone (default: false)
    -s, --syslog                     Log to syslog
    -r, --remote_syslog <addr>       Syslog server addr (udp://localhost:514)
    -D, --debug                      Enable debugging output
    -V, --trace                      Trace the raw protocol
    -VV                              Verbose trace
    -DV                              Debug and trace
    -DVV                             Debug and verbose trace
        --log_size_limit <limit>     Logfile size limit (default: auto)
        --max_traced_msg_len <len>   Maximum printable length for traced messages (default: unlimited)

JetStream Options (accepted for compatibility; pynatsd has no JetStream yet):
    -js, --jetstream                 Enable JetStream functionality
    -sd, --store_dir <dir>           Set the storage directory

Authorization Options:
        --user <user>                User required for connections
        --pass <password>            Password required for connections
        --auth <token>               Authorization token required for connections

TLS Options:
        --tls                        Enable TLS, do not verify clients (default: false)
        --tlscert <file>             Server certificate file
        --tlskey <file>              Private key for server certificate
        --tlsverify                  Enable TLS, verify client certificates
        --tlscacert <file>           Client certificate CA for verification

Cluster Options:
        --routes <rurl-1, rurl-2>    Routes to solicit and connect
        --cluster <cluster-url>      Cluster URL for solicited routes
        --cluster_name <string>      Cluster Name, if not set one will be dynamically generated
        --no_advertise <bool>        Do not advertise known cluster information to clients
        --cluster_advertise <string> Cluster URL to advertise to other servers
        --connect_retries <number>   For implicit routes, number of connect retries
        --cluster_listen <url>       Cluster url from which members can solicit routes

Profiling Options (accepted for compatibility, not supported):
        --profile <port>             Profiling HTTP port

Common Options:
    -h, --help                       Show this message
    -v, --version                    Show version
        --help_tls                   TLS help
"""

TLS_USAGE = f"""
TLS Options:
    --tls                    Enable TLS, do not verify clients (default: false)
    --tlscert <file>         Server certificate file
    --tlskey <file>          Private key for server certificate
    --tlsverify              Enable TLS, verify client certificates
    --tlscacert <file>       Client certificate CA for verification

Any --tls* flag replaces the certificate, key, CA and verify settings of the config file's
tls block (--tls=false removes TLS). In a config file:

    tls {{
      cert_file: "server-cert.pem"
      key_file: "server-key.pem"
      ca_file: "ca.pem"              # CA for client certificates
      verify: true                   # require client certificates
      verify_and_map: true           # ... and map them to users
      timeout: 2                     # handshake timeout (seconds or "500ms")
      min_version: "1.3"
      cipher_suites: [...]           # nats-server (Go) names
      curve_preferences: [...]       # nats-server (Go) names
      pinned_certs: [...]            # SPKI SHA-256 (hex) or PEM certificate files
      handshake_first: true          # TLS before INFO (or "auto", or a fallback delay)
    }}

Test certificates: {PROG} certs DIR --client alice
"""


def _tls_names() -> str:
    """The cipher suite and curve names a tls block takes (helper T; nats-server's --help_tls
    lists them too, and an unknown name at start-up points here)."""
    from pynatsd.tls.context import CURVES, INSECURE_TLS12, SECURE_TLS12, TLS13

    lines = ["Available cipher suites (TLS 1.2, Go names):"]
    lines += [f"    {n}" for n in SECURE_TLS12]
    lines += ["TLS 1.3 cipher suites:"] + [f"    {n}" for n in TLS13]
    lines += ["Only with allow_insecure_cipher_suites: true:"]
    lines += [f"    {n}" for n in INSECURE_TLS12 if "RC4" not in n and "3DES" not in n]
    lines += ["Available curve preferences (default: all, in this order):"] + [f"    {n}" for n in CURVES]
    return "\n".join(lines)


class FlagError(Exception):
    """A command-line mistake (printed with the usage, exit 2)."""


# ---- Go-style flag parsing ----------------------------------------------------------------------

BOOL, INT, STR = "bool", "int", "str"

# flag name -> (kind, destination)
FLAGS: dict[str, tuple[str, str]] = {}


def _define(kind: str, dest: str, *names: str) -> None:
    for n in names:
        FLAGS[n] = (kind, dest)


_define(BOOL, "help", "h", "help")
_define(BOOL, "help_tls", "help_tls")
_define(BOOL, "version", "v", "version")
_define(BOOL, "check", "t")
_define(INT, "port", "p", "port")
_define(STR, "server_name", "n", "name", "server_name")
_define(STR, "host", "a", "addr", "net")
_define(STR, "client_advertise", "client_advertise")
_define(BOOL, "debug", "D", "debug")
_define(BOOL, "trace", "V", "trace")
_define(BOOL, "VV", "VV")
_define(BOOL, "DV", "DV")
_define(BOOL, "DVV", "DVV")
_define(BOOL, "logtime", "T", "logtime")
_define(BOOL, "logtime_utc", "logtime_utc")
_define(STR, "user", "user")
_define(STR, "password", "pass")
_define(STR, "token", "auth")
_define(INT, "http_port", "m", "http_port")
_define(INT, "https_port", "ms", "https_port")
_define(STR, "config", "c", "config")
_define(STR, "signal", "sl", "signal")
_define(STR, "pid_file", "P", "pid")
_define(STR, "ports_file_dir", "ports_file_dir")
_define(STR, "log_file", "l", "log")
_define(INT, "log_size_limit", "log_size_limit")
_define(BOOL, "syslog", "s", "syslog")
_define(STR, "remote_syslog", "r", "remote_syslog")
_define(INT, "profile", "profile")
_define(STR, "routes", "routes")
_define(STR, "cluster_listen", "cluster", "cluster_listen")
_define(STR, "cluster_advertise", "cluster_advertise")
_define(BOOL, "no_advertise", "no_advertise")
_define(INT, "connect_retries", "connect_retries")
_define(STR, "cluster_name", "cluster_name")
_define(BOOL, "tls", "tls")
_define(BOOL, "tls_verify", "tlsverify")
_define(STR, "tls_cert", "tlscert")
_define(STR, "tls_key", "tlskey")
_define(STR, "tls_ca_cert", "tlscacert")
_define(INT, "max_traced_msg_len", "max_traced_msg_len")
_define(BOOL, "jetstream", "js", "jetstream")
_define(STR, "store_dir", "sd", "store_dir")

_GO_TRUE = frozenset(("1", "t", "T", "TRUE", "true", "True"))
_GO_FALSE = frozenset(("0", "f", "F", "FALSE", "false", "False"))
_INT_RE = re.compile(r"^[+-]?(0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|0[0-7_]*|[1-9][0-9_]*)$")


def _go_int(s: str) -> int:
    """strconv.ParseInt(s, 0, 64). Raises ValueError."""
    if not _INT_RE.match(s) or "__" in s or s.endswith("_"):
        raise ValueError("parse error")
    sign = -1 if s.startswith("-") else 1
    body = s.lstrip("+-").replace("_", "")
    if len(body) > 1 and body[0] == "0" and body[1].isdigit():
        value = int(body, 8)
    else:
        value = int(body, 0)
    value *= sign
    if not -(2**63) <= value <= 2**63 - 1:
        raise ValueError("value out of range")
    return value


@dataclass
class Parsed:
    values: dict[str, Any] = field(default_factory=dict)  # destination -> value
    given: list[str] = field(default_factory=list)  # destinations in the order they were set
    args: list[str] = field(default_factory=list)  # what is left after the flags


def parse_flags(argv: Sequence[str]) -> Parsed:
    """Go's flag.FlagSet.Parse over nats-server's flags. Raises FlagError."""
    out = Parsed()
    args = list(argv)
    while args:
        s = args[0]
        if len(s) < 2 or s[0] != "-":
            break
        minuses = 2 if s[1] == "-" else 1
        if minuses == 2 and len(s) == 2:  # "--" ends the flags
            args.pop(0)
            break
        name = s[minuses:]
        if not name or name[0] in "-=":
            raise FlagError(f"bad flag syntax: {s}")
        args.pop(0)
        has_value = False
        value = ""
        eq = name.find("=", 1)
        if eq > 0:
            name, value, has_value = name[:eq], name[eq + 1 :], True
        if name not in FLAGS:
            raise FlagError(f"flag provided but not defined: -{name}")
        kind, dest = FLAGS[name]
        parsed: Any
        if kind == BOOL:
            if not has_value:
                parsed = True
            elif value in _GO_TRUE:
                parsed = True
            elif value in _GO_FALSE:
                parsed = False
            else:
                raise FlagError(f'invalid boolean value "{value}" for -{name}: parse error')
        else:
            if not has_value:
                if not args:
                    raise FlagError(f"flag needs an argument: -{name}")
                value = args.pop(0)
            if kind == INT:
                try:
                    parsed = _go_int(value)
                except ValueError as e:
                    raise FlagError(f'invalid value "{value}" for flag -{name}: {e}') from None
            else:
                parsed = value
        out.values[dest] = parsed
        out.given.append(dest)
    out.args = args
    return out


def flag_values(p: Parsed) -> FlagValues:
    """The flags given, as load_options applies them over the config file."""
    v = p.values
    names = [f for f in FlagValues.__dataclass_fields__ if f in v]
    fv = FlagValues(**{n: v[n] for n in names})
    # -DV, -DVV and -VV are applied after -D/-V, in nats-server's (alphabetical) order.
    if "DV" in v:
        fv.debug = fv.trace = v["DV"]
    if "DVV" in v:
        fv.debug = fv.trace = fv.trace_verbose = v["DVV"]
    if "VV" in v:
        fv.trace = fv.trace_verbose = v["VV"]
    return fv


# ---- --signal -------------------------------------------------------------------------------------


def _resolve_pids() -> list[int]:
    try:
        res = subprocess.run(["pgrep", "-f", PROCESS_PATTERN], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        raise ConfigError("unable to resolve pid, try providing one") from None
    if res.returncode not in (0, 1):
        raise ConfigError("unable to resolve pid, try providing one")
    me = os.getpid()
    pids = []
    for line in res.stdout.split("\n"):
        if not line:
            continue
        if not line.isdigit():
            raise ConfigError("unable to resolve pid, try providing one")
        if int(line) != me:
            pids.append(int(line))
    return pids


def send_signal(spec: str) -> None:
    """``--signal <command>[=<pid | pid file | pid prefix*>]``. Raises ConfigError."""
    parts = spec.split("=")
    if len(parts) > 2:
        raise ConfigError("invalid signal parameters: [" + " ".join(parts[2:]) + "]")
    command = parts[0]
    target = ""
    if len(parts) == 2:
        target = parts[1]
        try:
            with open(target) as f:  # a pid file (its exact contents: no trailing newline)
                target = f.read()
        except OSError:
            pass
    is_glob = target.endswith("*")
    pid_str = target[:-1] if is_glob else target
    pids: list[int] = []
    if pid_str:
        if not re.fullmatch(r"[+-]?[0-9]+", pid_str):
            raise ConfigError(f"invalid pid: {pid_str}")
        pids = [int(pid_str)]
    if not pid_str or is_glob:
        pids = _resolve_pids()
    if len(pids) > 1 and not is_glob:
        raise ConfigError(f"multiple {PROG} processes running:" + "".join(f"\n{p}" for p in pids))
    if not pids:
        raise ConfigError(f"no {PROG} processes running")
    signum = SIGNALS.get(command)
    if signum is None:
        raise ConfigError(f'unknown signal "{command}"')
    errors = ""
    for pid in pids:
        if pid_str and str(pid) != pid_str and (not is_glob or not str(pid).startswith(pid_str)):
            continue
        try:
            os.kill(pid, signum)
        except OSError as e:
            errors += f'\nsignal "{command}" {pid}: {(e.strerror or str(e)).lower()}'
    if errors:
        raise ConfigError(errors)


# ---- -t -------------------------------------------------------------------------------------------


def check_config(config_file: str | None, out: TextIO) -> int:
    """``-t``: load the file (without flags or start-up checks, as nats-server does), and build
    its TLS contexts so certificate, key and cipher mistakes show up too."""
    if not config_file:
        raise ConfigError("must specify [-c, --config] option to check configuration file syntax")
    opts = load_options(config_file, None, validate=False)
    if opts.config_warnings:
        for w in opts.config_warnings:
            print(f"{PROG}: {w}", file=out)
        return 1
    _check_tls(opts)
    for w in opts.warnings:
        print(f"{PROG}: warning: {w}", file=out)
    print(f"{PROG}: configuration file {config_file} is valid ({opts.config_digest})", file=out)
    return 0


def _check_tls(opts: ServerOptions) -> None:
    blocks = [("tls", opts.tls)]
    if opts.cluster is not None:
        blocks.append(("cluster tls", opts.cluster.tls))
    todo = [(where, t) for where, t in blocks if t is not None and (t.cert_file or t.certificates)]
    if not todo:
        return
    from pynatsd.tls.context import build_server_context

    for where, t in todo:
        assert t is not None
        try:
            build_server_context(t, fips=opts.fips, where=where)
        except ConfigError:
            raise
        except Exception as e:  # keep -t to one line whatever the TLS library says
            message = f"{where}: {e}".replace("\n", "\\n")
            raise ConfigError(message, t.source.file or None, t.source.line or None) from None


# ---- main -----------------------------------------------------------------------------------------


def run(argv: Sequence[str], stdout: TextIO, stderr: TextIO, runner: Callable[..., int] | None = None) -> int:
    """Everything ``main`` does, returning the exit code (for tests)."""
    try:
        p = parse_flags(argv)
    except FlagError as e:
        print(e, file=stderr)
        print(USAGE, file=stderr)
        return 2
    v = p.values
    if v.get("version"):
        print(version_line(), file=stdout)
        return 0
    if v.get("help"):
        print(USAGE, file=stdout)
        return 0
    if v.get("help_tls"):
        print(TLS_USAGE, file=stdout)
        print(_tls_names(), file=stdout)
        return 0
    if p.args:
        word = p.args[0]
        if word.lower() == "version":
            print(version_line(), file=stdout)
            return 0
        if word.lower() == "help":
            print(USAGE, file=stdout)
            return 0
        print(f'{PROG}: unrecognized command: "{word}"', file=stderr)
        return 1
    try:
        if v.get("signal"):
            send_signal(v["signal"])
            return 0
        config_file = v.get("config") or None
        if v.get("check"):
            return check_config(config_file, stderr)
        flags = flag_values(p)
        opts = load_options(config_file, flags)
    except ConfigError as e:
        print(f"{PROG}: {e}", file=stderr)
        return 1

    def reload_options() -> ServerOptions:
        return load_options(config_file, reload_flags(flags))

    if runner is None:
        from pynatsd.server import run_server

        code = run_server(opts, reload_options if config_file else None)
        global _server_ran
        _server_ran = True
        return code
    return runner(opts, reload_options if config_file else None)


def version_line() -> str:
    return f"{PROG}: v{__version__} (nats-server v{NATS_SERVER_COMPAT_VERSION} compatible)"


# Set once a real server has run in this process (main() then ends it without finalization).
_server_ran = False


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] == "certs":
        from pynatsd.tls.certs import main as certs_main

        sys.exit(certs_main(args[1:]))
    if args and args[0] == "tls-report":
        from pynatsd.tls.report import main as tls_report_main

        sys.exit(tls_report_main(args[1:]))
    code = run(args, sys.stdout, sys.stderr)
    if _server_ran:
        # The server has shut down (logs written, pid/ports files handled): leave at once, as
        # nats-server does, instead of spending tens of ms in interpreter teardown. Harnesses
        # (nats-core's tests) stop a node and then wait for the client's reconnect event; a slow
        # exit lets the reconnect land before they start waiting.
        import logging

        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
