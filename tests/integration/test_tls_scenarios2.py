"""Client-port TLS as a new user meets it, second pass: what test_tls_scenarios.py leaves out.

Same method (the same config file and the same client bytes against nats-server and pynatsd,
comparing what the user sees), other questions: the log lines a user reads at -D for each way
a certificate is mapped or refused, the finer points of the mapping (a SAN that is not the
first, a user whose allowed_connection_types excludes the client, deny lists,
allow_responses and default_permissions for mapped users), allow_non_tls next to verify and
verify_and_map, connection_rate_limit, plain and TLS-first clients on a handshake_first
server, reloads of verify / ca_file / min_version / handshake_first / timeout (log lines, live
and new clients) and the TLS fields of /varz and /connz over plain HTTP (a client sending its
intermediate CA, ``auth=1``). Where pynatsd deliberately differs (README "Differences from
nats-server", "Log lines") the test checks pynatsd's documented behaviour next to
nats-server's.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import socket
import ssl
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from tests.helpers.servers import ServerProcess
from tests.integration import test_tls_scenarios as first_pass
from tests.integration.test_client_tls import _info_line, _read, tls_exchange
from tests.integration.test_tls_scenarios import (
    IMPLS,
    GuidePKI,
    Pair,
    Who,
    _issue,
    client_ctx,
    each,
    exchange,
    same,
    tls_conf,
    wait_lines,
)

from pynatsd.tls.certs import issue, new_key, write_cert, write_key
from pynatsd.tls.certs import name as x509_name

# the first pass's fixtures, made again for this module: its PKI, its pair of servers
pki = first_pass.pki
pairs = first_pass.pairs
intermediate = first_pass.intermediate

HOST = "127.0.0.1"
CONNECT = b'CONNECT {"verbose":false,"pedantic":false}\r\n'
AUTH_VIOLATION = b"-ERR 'Authorization Violation'\r\n"


@pytest.fixture(scope="module")
def more(pki: GuidePKI) -> dict[str, Who]:
    """Client certificates for the finer mapping questions (openssl-made, signed by pki.ca)."""
    client = "extendedKeyUsage = clientAuth\n"
    return {
        # two DNS SANs: only the second names a user
        "hank": _issue(pki.dir, "hank", "/O=Acme/CN=hank",
                       client + "subjectAltName = DNS:unknown.example.com, DNS:hank.example.com\n"),
        # an email SAN no user has, then a DNS SAN that is one: the email does not stop the search
        "iris": _issue(pki.dir, "iris", "/CN=iris",
                       client + "subjectAltName = email:nobody@example.com, DNS:iris.example.com\n"),
        # email SAN user allowed only over websocket, so the DNS SAN user is taken
        "jack": _issue(pki.dir, "jack", "/CN=jack",
                       client + "subjectAltName = email:jack@example.com, DNS:jack.example.com\n"),
        # nothing in it names a user
        "oscar": _issue(pki.dir, "oscar", "/O=Nowhere/CN=oscar", client),
        # valid only yesterday, and only from tomorrow
        "expired": _dated(pki, "old", -30, -1),
        "future": _dated(pki, "early", 1, 30),
        # a server certificate for 60 days (the guide's are for 30)
        "server60": _dated(pki, "localhost", 0, 60, server=True, dns=["localhost"], ips=["127.0.0.1"]),
    }


def _dated(pki: GuidePKI, cn: str, start_days: int, end_days: int, **kw: Any) -> Who:
    """A client (``server=True``: server) certificate signed by the guide CA, valid from/to so
    many days from now."""
    ca_cert = x509.load_pem_x509_certificate(Path(pki.ca).read_bytes())
    ca_key = serialization.load_pem_private_key((pki.dir / "ca-key.pem").read_bytes(), None)
    key = new_key("ec")
    now = dt.datetime.now(dt.UTC)
    cert = issue(x509_name(cn), key, issuer=(ca_cert, ca_key), client=not kw, **kw,  # type: ignore[arg-type]
                 not_before=now + dt.timedelta(days=start_days), not_after=now + dt.timedelta(days=end_days))
    who = Who(str(pki.dir / f"{cn}-cert.pem"), str(pki.dir / f"{cn}-key.pem"))
    write_cert(Path(who.cert_file), cert)
    write_key(Path(who.key_file), key)
    return who


# ---- the log lines of mapping, at -D -------------------------------------------------------------------

MAP_USERS = """
authorization {
  default_permissions: { publish: { deny: "secret.>" } }
  users = [
    { user: "carol@example.com", permissions: { publish: { allow: ">", deny: "orders.>" }, subscribe: ">" } }
    { user: "dave.example.com", permissions: { subscribe: "req.>", allow_responses: true, publish: "none" } }
    { user: "spiffe://example.com/erin" }
    { user: "CN=frank, OU=Ops, O=Acme" }
    { user: "CN=grace,O=Acme" }
    { user: "hank.example.com" }
    { user: "iris.example.com" }
    { user: "jack@example.com", allowed_connection_types: ["WEBSOCKET"] }
    { user: "jack.example.com" }
  ]
}
"""


def logged(srv: ServerProcess, pattern: str) -> list[str]:
    """The log lines matching ``pattern`` as ``[LVL] <text>``, with ``cid`` when the line names
    a client (``[DBG] cid - Using ...``): the connection number itself differs between servers."""
    return logged_in(srv.stderr(), pattern)


def logged_in(text: str, pattern: str) -> list[str]:
    out = []
    for ln in text.splitlines():
        if not re.search(pattern, ln):
            continue
        m = re.match(r"^\[\d+\] \S+ \S+ (\[[A-Z]{3}\]) (?:\S+ - [a-z]id:\d+ - (?:\"[^\"]*\" - )?)?", ln)
        assert m is not None, ln
        out.append(f"{m.group(1)} {'cid - ' if ' - ' in m.group(0) else ''}{ln[m.end():]}")
    return out


def test_mapping_log_lines_at_debug(pki: GuidePKI, more: dict[str, Who], pairs: Callable[..., Pair]) -> None:
    """With -D a user reads which certificate field named the user (or that none did) in the same
    words on both servers; the refused client gets nats-server's `authentication error`."""
    pair = pairs(tls_conf(pki.server, ca_file=pki.ca, verify_and_map=True) + MAP_USERS, ("-D",))
    whos = [("carol", pki.carol), ("dave", pki.dave), ("erin", pki.erin), ("frank", pki.frank),
            ("grace", pki.grace), ("hank", more["hank"]), ("iris", more["iris"]), ("jack", more["jack"]),
            ("oscar", more["oscar"])]
    for name, who in whos:
        got = same(pair, lambda s, w=who: exchange(s, pki.ca, w, CONNECT + b"PING\r\n"))  # type: ignore[misc]
        assert got[1] == (AUTH_VIOLATION if name == "oscar" else b"PONG\r\n"), name
    # a user in CONNECT next to a mapped certificate: a warning, the certificate wins
    script = b'CONNECT {"verbose":false,"user":"hank.example.com"}\r\nPING\r\n'
    assert same(pair, lambda s: exchange(s, pki.ca, pki.dave, script))[1] == b"PONG\r\n"
    pattern = r"Using .* for auth|not found|authentication error|found in connect proto|Multiple peer"
    each(lambda impl: wait_lines(pair[impl], r"authentication error"))
    got = {impl: logged(s, pattern) for impl, s in pair.items()}
    # pynatsd adds the identities it tried to the not-found line (helper T's extension)
    tried = re.compile(r" \(tried email, DNS and URI SANs, the subject DN, the subject string\)$")
    got["pynatsd"] = [tried.sub("", ln) for ln in got["pynatsd"]]
    many = "[DBG] cid - Multiple peer certificates found, selecting first"  # OpenSSL sends leaf + CA
    assert got["nats"] == got["pynatsd"] == [
        many, '[DBG] cid - Using email found in cert for auth ["carol@example.com"]',
        many, '[DBG] cid - Using SAN found in cert for auth ["dave.example.com"]',
        many, '[DBG] cid - Using URI found in cert for auth ["spiffe://example.com/erin"]',
        many, '[DBG] cid - Using DistinguishedNameMatch for auth ["CN=frank, OU=Ops, O=Acme"]',
        many, '[DBG] cid - Using certificate subject for auth ["CN=grace,O=Acme"]',
        many, '[DBG] cid - Using SAN found in cert for auth ["hank.example.com"]',
        many, '[DBG] cid - Using SAN found in cert for auth ["iris.example.com"]',
        many, '[DBG] cid - Using SAN found in cert for auth ["jack.example.com"]',
        many, '[DBG] cid - User in cert ["CN=oscar,O=Nowhere"], not found',
        "[ERR] cid - authentication error",
        many, '[DBG] cid - Using SAN found in cert for auth ["dave.example.com"]',
        '[WRN] User "hank.example.com" found in connect proto, but user required from cert',
    ]


def tls_client(s: ServerProcess, ca: str, who: Who | None, script: bytes = CONNECT + b"PING\r\n",
               **ctx_kw: Any) -> ssl.SSLSocket:
    """A connected TLS client (INFO, handshake with ``who``'s certificate, ``script``, PONG read)."""
    raw = socket.create_connection((HOST, s.port), timeout=3)
    assert _info_line(raw, 3) is not None
    sock = client_ctx(ca, who, **ctx_kw).wrap_socket(raw, server_hostname="localhost")
    sock.sendall(script)
    got = _read(sock, b"PONG\r\n", 3)
    assert got[1] == "until", got
    return sock


def talk(sock: ssl.SSLSocket, data: bytes) -> bytes:
    """Send ``data`` + PING; what came back up to PONG."""
    sock.sendall(data + b"PING\r\n")
    got, end = _read(sock, b"PONG\r\n", 3)
    assert end == "until", (got, end)
    return got


def test_mapped_users_deny_lists_allow_responses_and_default_permissions(
        pki: GuidePKI, more: dict[str, Who], pairs: Callable[..., Pair]) -> None:
    """A mapped user's deny list, allow_responses (one reply to a request it received), and
    default_permissions for a mapped user without its own permissions."""
    pair = pairs(tls_conf(pki.server, ca_file=pki.ca, verify_and_map=True) + MAP_USERS, ("-D",))

    def probe(s: ServerProcess) -> list[bytes]:
        carol, dave, erin = (tls_client(s, pki.ca, w) for w in (pki.carol, pki.dave, pki.erin))
        try:
            out = [talk(carol, b"SUB _INBOX.> 1\r\nPUB orders.1 1\r\nx\r\nPUB secret.1 1\r\nx\r\n")]
            out.append(talk(dave, b"SUB req.> 1\r\nSUB other 2\r\n"))
            out.append(talk(carol, b"PUB req.1 _INBOX.r1 2\r\nhi\r\n"))
            out.append(_read(dave, b"hi\r\n", 3)[0])
            # the one reply allowed, a second one, and a subject dave may never publish to
            out.append(talk(dave, b"PUB _INBOX.r1 2\r\nok\r\nPUB _INBOX.r1 3\r\nbis\r\nPUB none 1\r\nn\r\n"
                                  b"PUB _INBOX.r2 1\r\nx\r\n"))
            out.append(talk(carol, b""))
            out.append(talk(erin, b"PUB secret.2 1\r\nx\r\nPUB public 1\r\nx\r\nSUB orders.> 1\r\n"))
            return out
        finally:
            for sock in (carol, dave, erin):
                sock.close()

    pub_err = b"-ERR 'Permissions Violation for Publish to \"%s\"'\r\n"
    assert same(pair, probe) == [
        pub_err % b"orders.1" + b"PONG\r\n",  # carol's deny list; default_permissions not applied
        b"-ERR 'Permissions Violation for Subscription to \"other\"'\r\nPONG\r\n",
        b"PONG\r\n",
        b"MSG req.1 1 _INBOX.r1 2\r\nhi\r\n",
        # the first reply passes, not the second; "none" is dave's one allowed subject
        pub_err % b"_INBOX.r1" + pub_err % b"_INBOX.r2" + b"PONG\r\n",
        b"MSG _INBOX.r1 1 2\r\nok\r\nPONG\r\n",
        pub_err % b"secret.2" + b"PONG\r\n",  # erin: default_permissions (subscribes to anything)
    ]


# ---- allow_non_tls next to verify and verify_and_map ----------------------------------------------------


def plain(s: ServerProcess, script: bytes) -> tuple[dict[str, Any] | None, bytes, str]:
    """A plain-text client: INFO, ``script``, what came back until PONG or the end."""
    with socket.create_connection((HOST, s.port), timeout=3) as sock:
        info = _info_line(sock, 3)
        sock.sendall(script)
        data, end = _read(sock, b"PONG\r\n", 3)
    fields = None if info is None else {k: v for k, v in info.items() if k.startswith("tls_")}
    return fields, data, end


@pytest.mark.parametrize(("block", "users", "plain_user", "tls_carol"), [
    # verify applies to TLS clients only: a plain client needs no certificate
    ({"verify": True}, "", b"PONG\r\n", b"PONG\r\n"),
    # verify_and_map: a plain client has no certificate, so no user; user/password do not help
    ({"verify_and_map": True}, 'authorization { users = [ {user: "carol@example.com"}, {user: u, password: p} ] }\n',
     AUTH_VIOLATION, b"PONG\r\n"),
    # verify with password users: the TLS client's certificate is checked, the password names the user
    ({"verify": True}, "authorization { users = [ {user: u, password: p} ] }\n", b"PONG\r\n", AUTH_VIOLATION),
], ids=["verify", "verify_and_map", "verify-passwords"])
def test_allow_non_tls_with_client_certificates(pki: GuidePKI, pairs: Callable[..., Pair], block: dict[str, Any],
                                                users: str, plain_user: bytes, tls_carol: bytes) -> None:
    pair = pairs(tls_conf(pki.server, ca_file=pki.ca, **block) + "allow_non_tls: true\n" + users)
    script = b'CONNECT {"verbose":false,"user":"u","pass":"p"}\r\nPING\r\n'
    fields, data, _ = same(pair, lambda s: plain(s, script))
    assert fields == {"tls_available": True, "tls_verify": True} and data == plain_user
    # a TLS client still needs a certificate the CA signed
    assert same(pair, lambda s: exchange(s, pki.ca, None, b""))[2] == "alert:TLSV13_ALERT_CERTIFICATE_REQUIRED"
    assert same(pair, lambda s: exchange(s, pki.ca, pki.carol, CONNECT + b"PING\r\n"))[1] == tls_carol


async def test_nats_py_on_allow_non_tls_with_verify(pki: GuidePKI, pairs: Callable[..., Pair]) -> None:
    """nats-py with a client certificate and a tls:// URL on an allow_non_tls server stays in
    plain text (INFO says TLS is not required) on both; that is what the user gets."""
    pair = pairs(tls_conf(pki.server, ca_file=pki.ca, verify=True) + "allow_non_tls: true\n")
    for s in pair.values():
        nc = await nats.connect(f"tls://localhost:{s.port}", tls=client_ctx(pki.ca, pki.carol),
                                allow_reconnect=False, connect_timeout=2)
        try:
            writer: Any = getattr(nc._transport, "_io_writer", None)
            assert writer.get_extra_info("ssl_object") is None, s.impl
            sub = await nc.subscribe("t")
            await nc.publish("t", b"x")
            assert (await sub.next_msg(timeout=3)).data == b"x"
        finally:
            await nc.close()


# ---- connection_rate_limit --------------------------------------------------------------------------------


def monitor(s: ServerProcess, path: str) -> Any:
    assert s.ports is not None
    with urllib.request.urlopen(s.ports["monitoring"][0] + path, timeout=5) as r:
        return json.load(r)


def test_connection_rate_limit(pki: GuidePKI, pairs: Callable[..., Pair]) -> None:
    """Over the limit a client gets INFO, then nats-server's throttling -ERR in plain text, and
    is closed; the log says how many were refused."""
    pair = pairs(tls_conf(pki.server, connection_rate_limit=2) + "http: \"127.0.0.1:-1\"\n")

    throttled = b"-ERR 'Connection throttling is active. Please try again later.'\r\n"

    def burst(s: ServerProcess) -> list[tuple[bytes, str]]:
        socks = [socket.create_connection((HOST, s.port), timeout=3) for _ in range(5)]
        seen = []
        try:
            for sock in socks:
                data, end = _read(sock, throttled, 0.5)  # the others wait for a ClientHello
                assert data.startswith(b"INFO {") and b'"tls_required":true' in data
                if end == "until":
                    end = _read(sock, None, 2)[1]
                seen.append((data[data.index(b"\r\n") + 2:], end))
        finally:
            for sock in socks:
                sock.close()
        return sorted(seen)  # nats-server creates clients concurrently: any three are refused

    assert same(pair, burst) == [(b"", "timeout")] * 2 + [(throttled, "EOF")] * 3
    reasons = same(pair, lambda s: sorted(c["reason"] for c in monitor(s, "/connz?state=closed")["connections"]))
    assert reasons == ["Maximum Connections Exceeded"] * 3 + ["TLS Handshake Failure"] * 2
    lines = each(lambda impl: wait_lines(pair[impl], r"\[WRN\] Rejected \d+ connections"))
    assert all(ln[0].endswith("[WRN] Rejected 3 connections due to TLS rate limiting") for ln in lines.values()), lines


# ---- handshake_first: plain clients, and nats-py with and without tls_handshake_first -------------------


async def nats_py(s: ServerProcess, ctx: ssl.SSLContext | None, **kw: Any) -> str:
    try:
        nc = await nats.connect(f"tls://localhost:{s.port}" if ctx else f"nats://localhost:{s.port}", tls=ctx,
                                allow_reconnect=False, connect_timeout=1.5, max_reconnect_attempts=0, **kw)
    except Exception as e:  # what the user's program sees
        return f"{type(e).__name__}: {e}"
    try:
        await nc.flush(timeout=2)
        return "ok"
    except Exception as e:  # noqa: BLE001 - connected, then refused
        return f"connected, then {type(e).__name__}: {e}; last error {nc.last_error!r}"
    finally:
        await nc.close()


@pytest.mark.parametrize("first", [True, "300ms"], ids=["true", "300ms"])
async def test_handshake_first_with_plain_and_info_first_clients(pki: GuidePKI, pairs: Callable[..., Pair],
                                                                 first: bool | str) -> None:
    pair = pairs(tls_conf(pki.server, ca_file=pki.ca, handshake_first=first))

    def plain_client(s: ServerProcess) -> tuple[bytes, str, bytes, str]:
        with socket.create_connection((HOST, s.port), timeout=3) as sock:
            before = _read(sock, b"\r\n", 0.6)
            sock.sendall(CONNECT + b"PING\r\n")
            after = _read(sock, None, 3)
        return (re.sub(rb"^INFO \{.*\} \r\n", b"INFO", before[0]), before[1], *after)

    # TLS first: nothing to read; with the fallback: the INFO after 300 ms. CONNECT in clear text
    # is then not a TLS record: closed without a word
    assert same(pair, plain_client) == ((b"", "timeout") if first is True else (b"INFO", "until")) + (b"", "EOF")
    outcomes = {}
    for impl, s in pair.items():
        outcomes[impl] = (await nats_py(s, client_ctx(pki.ca)),
                          await nats_py(s, client_ctx(pki.ca), tls_handshake_first=True))
    # nats-py waiting for INFO times out on a TLS-first server, and gets in with the fallback
    assert outcomes["nats"] == outcomes["pynatsd"] == ("TimeoutError: " if first is True else "ok", "ok")
    # README "Log lines": pynatsd logs the plain-text client as an error line; nats-server 2.15
    # only at -D
    wait_lines(pair["pynatsd"], r"\[ERR\] 127\.0\.0\.1:\d+ - cid:\d+ - TLS handshake error: plain text on a "
               r"TLS port \[client listener 127\.0\.0\.1:\d+\]$")
    assert not [ln for ln in pair["nats"].stderr().splitlines() if "first record does not look like" in ln]


# ---- reloads of the client TLS block -------------------------------------------------------------------------


def first_bytes(s: ServerProcess, wait: float) -> tuple[bytes, str]:
    """What a client that only connects reads within ``wait`` seconds (up to a line end)."""
    with socket.create_connection((HOST, s.port), timeout=3) as sock:
        return _read(sock, b"\r\n", wait)


def notices(srv: ServerProcess) -> list[str]:
    """The reload lines logged so far (without the configuration's digest)."""
    rx = re.compile(r"\[(?:INF|ERR)\] (Reloaded.*|Failed to reload.*)$")
    return [re.sub(r" \(sha256:[0-9a-f]+\)$", "", m.group(1)) for ln in srv.stderr().splitlines()
            if (m := rx.search(ln))]


def test_reloads_of_the_client_tls_block(pki: GuidePKI) -> None:
    """verify switched on and off, another ca_file, min_version 1.3, handshake_first, and the
    two settings a reload may not change: live clients stay, new ones meet the new settings,
    and the log says the same on both (nats-server logs `tls = enabled` whenever its rebuilt
    TLS config differs, which with a ca_file is every time)."""
    other_ca = str(pki.dir / "other-ca.pem")

    def conf(extra: str = "", **kw: Any) -> str:
        return tls_conf(pki.server, **{"ca_file": pki.ca, **kw}) + extra

    servers: dict[str, ServerProcess] = {}
    live: list[ssl.SSLSocket] = []
    try:
        for impl in IMPLS:
            servers[impl] = ServerProcess(impl, conf()).start()
        reloads = 0

        def reload(text: str) -> None:
            nonlocal reloads
            reloads += 1
            for s in servers.values():
                s.reload(text)
            each(lambda impl: wait_lines(servers[impl], r"Reloaded server configuration|Failed to reload", reloads))

        def connect(s: ServerProcess, who: Who | None, ca: str = pki.ca) -> ssl.SSLSocket:
            sock = tls_client(s, ca, who)
            live.append(sock)
            return sock

        no_cert = {impl: connect(s, None) for impl, s in servers.items()}
        reload(conf(verify=True))
        assert same(servers, lambda s: exchange(s, pki.ca, None, b""))[2] == "alert:TLSV13_ALERT_CERTIFICATE_REQUIRED"
        carol = {impl: connect(s, pki.carol) for impl, s in servers.items()}
        reload(conf(verify=True, ca_file=other_ca))
        assert same(servers, lambda s: exchange(s, pki.ca, pki.carol, b""))[2] == "alert:TLSV1_ALERT_UNKNOWN_CA"
        assert same(servers, lambda s: exchange(s, pki.ca, pki.other_ca_client))[1] == b"PONG\r\n"
        reload(conf(verify=True, min_version="1.3"))
        tls12 = {"maximum_version": ssl.TLSVersion.TLSv1_2}
        assert same(servers, lambda s: exchange(s, pki.ca, pki.carol, b"", **tls12))[:1] == (False,)
        reload(conf(verify=True, handshake_first=True, timeout=0.5))
        assert same(servers, lambda s: first_bytes(s, 0.3)) == (b"", "timeout")  # no INFO in clear any more
        reload(conf("allow_non_tls: true\n", verify=True, handshake_first=True, timeout=0.5))
        reload(conf(verify=True, handshake_first=True, timeout=0.5, connection_rate_limit=10))
        reload(conf())
        assert same(servers, lambda s: exchange(s, pki.ca, None))[1] == b"PONG\r\n"
        # connected before all of that, with the settings of their time: still served
        for sock in (*no_cert.values(), *carol.values()):
            assert talk(sock, b"") == b"PONG\r\n"
        got = {impl: notices(s) for impl, s in servers.items()}
        assert got["nats"] == got["pynatsd"], got
        every = ["Reloaded: authorization users", "Reloaded: accounts"]
        done = "Reloaded server configuration"
        tls = "Reloaded: tls = enabled"
        assert got["nats"] == [
            *every, tls, done,
            *every, tls, done,
            *every, tls, done,
            *every, "Reloaded: authorization timeout = 1.5", "Reloaded: tls timeout = 0.5", tls,
            "Reloaded: Client TLS handshake first: true", done,
            "Failed to reload server configuration: config reload not supported for AllowNonTLS: old=false, new=true",
            "Failed to reload server configuration: config reload not supported for TLSRateLimit: old=0, new=10",
            *every, "Reloaded: authorization timeout = 3", "Reloaded: tls timeout = 2", tls,
            "Reloaded: Client TLS handshake first: false", done,
        ]
    finally:
        for sock in live:
            sock.close()
        for s in servers.values():
            s.cleanup()


def test_reload_logs_tls_only_when_its_config_changed(pki: GuidePKI, more: dict[str, Who], tmp_path: Path) -> None:
    """Without a ca_file nats-server says `Reloaded: tls = enabled` only when the TLS settings
    or the certificate in the files changed: not for a reload that changes something else.
    /varz's tls_cert_not_after follows the certificate in the files."""
    servers: dict[str, ServerProcess] = {}
    try:
        for impl in IMPLS:
            d = tmp_path / impl
            d.mkdir()
            for src, name in ((pki.server.cert_file, "cert.pem"), (pki.server.key_file, "key.pem")):
                (d / name).write_bytes(Path(src).read_bytes())
            servers[impl] = ServerProcess(impl, tls_conf(Who(str(d / "cert.pem"), str(d / "key.pem")))
                                          + 'http: "127.0.0.1:-1"\n').start()

        def not_after(s: ServerProcess) -> str:
            return str(monitor(s, "/varz")["tls_cert_not_after"])

        def cert_not_after(who: Who) -> str:
            cert = x509.load_pem_x509_certificate(Path(who.cert_file).read_bytes())
            return cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")

        assert same(servers, not_after) == cert_not_after(pki.server)
        steps = [("max_payload: 100\n", False), ("max_payload: 100\n", True), ("max_payload: 100\n", False),
                 ("max_payload: 200\n", False)]
        for n, (extra, rotate) in enumerate(steps, 1):
            for impl, s in servers.items():
                d = tmp_path / impl
                if rotate:  # the rotated certificate in the same files
                    for src, name in ((more["server60"].cert_file, "cert.pem"), (more["server60"].key_file, "key.pem")):
                        (d / name).write_bytes(Path(src).read_bytes())
                s.reload(tls_conf(Who(str(d / "cert.pem"), str(d / "key.pem"))) + 'http: "127.0.0.1:-1"\n' + extra)
            each(lambda impl, n=n: wait_lines(servers[impl], r"Reloaded server configuration", n))  # type: ignore[misc]
        # /varz tells when the certificate now served expires
        assert same(servers, not_after) == cert_not_after(more["server60"]) != cert_not_after(pki.server)
        got = {impl: [ln for ln in notices(s) if "tls" in ln or "max_payload" in ln] for impl, s in servers.items()}
        assert got["nats"] == got["pynatsd"] == [
            "Reloaded: max_payload = 100", "Reloaded: tls = enabled", "Reloaded: max_payload = 200"]
    finally:
        for s in servers.values():
            s.cleanup()


# ---- /varz and /connz TLS fields over plain HTTP ---------------------------------------------------------------


def test_varz_and_connz_tls_fields_over_http(pki: GuidePKI, intermediate: tuple[str, Who, Who],
                                             pairs: Callable[..., Pair]) -> None:
    """The TLS fields a monitoring user reads: /varz (required, verify, timeout, expiry),
    /connz per connection (version, suite, authorized user and the certificates the client sent,
    only with auth=1: a client sending its intermediate shows two)."""
    _, _, ivan_chained = intermediate
    users = 'authorization { users = [ {user: "carol@example.com"}, {user: "dave.example.com"}, {user: "CN=ivan"} ] }\n'
    pair = pairs(tls_conf(pki.server, ca_file=pki.ca, verify_and_map=True, timeout=1.5) + users
                 + 'http: "127.0.0.1:-1"\n')

    def varz_tls(s: ServerProcess) -> dict[str, Any]:
        v = monitor(s, "/varz")
        return {k: v[k] for k in v if "tls" in k or k in ("auth_required", "auth_timeout")}

    v = same(pair, varz_tls)
    assert v["tls_required"] is True and v["tls_verify"] is True and v["tls_timeout"] == 1.5
    assert v["auth_timeout"] == 2.5 and v["tls_cert_not_after"].endswith("Z")

    def connz(s: ServerProcess, query: str) -> list[dict[str, Any]]:
        socks = [tls_client(s, pki.ca, pki.carol),
                 tls_client(s, pki.ca, pki.dave, maximum_version=ssl.TLSVersion.TLSv1_2),
                 tls_client(s, pki.ca, ivan_chained)]
        try:
            conns = monitor(s, "/connz" + query)["connections"]
        finally:
            for sock in socks:
                sock.close()
        keep = ("tls_version", "tls_cipher_suite", "tls_first", "authorized_user", "tls_peer_certs")
        return sorted(({k: c[k] for k in keep if k in c} for c in conns), key=lambda c: c["tls_version"] + str(c))

    plain = same(pair, lambda s: connz(s, ""))
    assert [sorted(c) for c in plain] == [["tls_cipher_suite", "tls_version"]] * 3
    full = same(pair, lambda s: connz(s, "?auth=1"))
    assert [(c["tls_version"], c["authorized_user"], len(c["tls_peer_certs"])) for c in full] == [
        ("1.2", "dave.example.com", 2), ("1.3", "CN=ivan", 2), ("1.3", "carol@example.com", 2)]
    assert full[0]["tls_cipher_suite"] == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    # what the client sent: OpenSSL adds the CA to a lone certificate, not to a file with a chain
    assert [c["subject"] for c in full[1]["tls_peer_certs"]] == ["CN=ivan", "CN=Intermediate CA"]
    assert [c["subject"] for c in full[2]["tls_peer_certs"]] == ["CN=carol,OU=Eng,O=Acme,ST=CA,C=US", "CN=ca guide"]


# ---- what a refused client sees, and the line the server logs ------------------------------------------------


def test_refused_clients_and_their_log_lines(pki: GuidePKI, more: dict[str, Who], pairs: Callable[..., Pair]) -> None:
    """No certificate, another CA, a key not pinned, a certificate naming no user: what the
    client sees and the closed reason match; the log line is nats-server's for the refused
    login and pynatsd's documented one (README "Log lines") for the handshake failures."""
    pins = [pki.spki(pki.carol), pki.spki(more["oscar"])]
    pair = pairs(tls_conf(pki.server, ca_file=pki.ca, verify_and_map=True, pinned_certs=pins)
                 + 'authorization { users = [ {user: "carol@example.com"} ] }\nhttp: "127.0.0.1:-1"\n')
    script = {"oscar": CONNECT, "carol": CONNECT + b"PING\r\n"}
    clients: dict[str, Who | None] = {"none": None, "mallory": pki.other_ca_client, "dave": pki.dave,
                                      "oscar": more["oscar"], "carol": pki.carol, "expired": more["expired"]}
    seen = {}
    for nm, who in clients.items():
        def probe(s: ServerProcess, w: Who | None = who, n: str = nm) -> tuple[bool, bytes, str]:
            return exchange(s, pki.ca, w, script.get(n, b""))

        seen[nm] = same(pair, probe)
    # a certificate not valid yet: Go's alert is certificate_expired (as for an expired one),
    # OpenSSL's bad_certificate; refused in the handshake by both (README "Differences")
    assert each(lambda impl: exchange(pair[impl], pki.ca, more["future"], b"")) == {
        "nats": (True, b"", "alert:SSLV3_ALERT_CERTIFICATE_EXPIRED"),
        "pynatsd": (True, b"", "alert:SSLV3_ALERT_BAD_CERTIFICATE")}
    assert seen == {
        "none": (True, b"", "alert:TLSV13_ALERT_CERTIFICATE_REQUIRED"),
        "mallory": (True, b"", "alert:TLSV1_ALERT_UNKNOWN_CA"),
        "dave": (True, b"", "EOF"),  # handshake done, then closed without a word
        "oscar": (True, AUTH_VIOLATION, "EOF"),
        "carol": (True, b"PONG\r\n", "until"),
        "expired": (True, b"", "alert:SSLV3_ALERT_CERTIFICATE_EXPIRED"),
    }
    reasons = same(pair, lambda s: sorted(c["reason"] for c in monitor(s, "/connz?state=closed")["connections"]))
    assert reasons == ["Authentication Failure", "Client Closed"] + ["TLS Handshake Failure"] * 5
    got = each(lambda impl: [ln.split(" - ", 2)[-1] for ln in
                             wait_lines(pair[impl], r"\[ERR\] 127\.0\.0\.1:\d+ - cid:\d+ - ", 6)])
    assert got["nats"][3] == got["pynatsd"][3] == "authentication error"
    expiry = "TLS handshake error: tls: failed to verify certificate: x509: certificate has expired or is not yet valid"
    assert got["nats"][:3] == [
        "TLS handshake error: tls: client didn't provide a certificate",
        "TLS handshake error: tls: failed to verify certificate: x509: certificate signed by unknown authority "
        f"(CN=mallory SHA-256: {cert_sha256(pki.other_ca_client)})",
        "TLS handshake error: certificate not pinned"]
    assert got["nats"][4].startswith(expiry + ": current time ") and " is after " in got["nats"][4]
    assert got["nats"][5].startswith(expiry + ": current time ") and " is before " in got["nats"][5]
    # README "Log lines": pynatsd's reasons, with the listener
    listener = f" [client listener 127.0.0.1:{pair['pynatsd'].port}]"
    assert got["pynatsd"][:3] + got["pynatsd"][4:] == [f"TLS handshake error: {reason}{listener}" for reason in (
        "no client certificate", "unknown CA", "certificate not pinned", "certificate expired",
        "certificate not yet valid")]


def cert_sha256(who: Who) -> str:
    der = ssl.PEM_cert_to_DER_cert(Path(who.cert_file).read_text())
    return hashlib.sha256(der).hexdigest()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2], ids=["tls13", "tls12"])
def test_debug_and_trace_lines_of_tls_clients(pki: GuidePKI, pairs: Callable[..., Pair],
                                              version: ssl.TLSVersion) -> None:
    """At -DV a user follows one TLS client (TLS first, or INFO first after the fallback) and one
    whose key is not pinned, in the same words on both servers."""
    pair = pairs(tls_conf(pki.server, ca_file=pki.ca, verify=True, handshake_first="300ms",
                          pinned_certs=[pki.spki(pki.carol)]), ("-DV",))

    def clients(s: ServerProcess) -> None:
        closed = r" - cid:\d+ - Client connection closed: "
        before = len(logged(s, closed))
        got = tls_exchange(s.port, pki.ca, pki.carol, handshake_first=True,  # type: ignore[arg-type]
                           send=CONNECT + b"PING\r\n", until=b"PONG\r\n", maximum_version=version)
        assert (got.handshake, got.data) == (True, b"PONG\r\n")
        wait_lines(s, closed, before + 1)  # one client at a time: its lines together
        assert exchange(s, pki.ca, pki.dave, b"", maximum_version=version)[2] == "EOF"
        wait_lines(s, closed, before + 2)

    each(lambda impl: clients(pair[impl]))
    got = {impl: [ln for ln in logged(s, r" - cid:\d+ - ") if "certificate not pinned" not in ln]
           for impl, s in pair.items()}
    assert got["nats"] == got["pynatsd"]
    v = "1.3, cipher suite TLS_AES_128_GCM_SHA256" if version is ssl.TLSVersion.TLSv1_3 else \
        "1.2, cipher suite TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    start = ["[DBG] cid - Client connection created", "[DBG] cid - Starting TLS client connection handshake"]
    assert got["nats"][-12:] == [
        *start, "[DBG] cid - TLS handshake complete", f"[DBG] cid - TLS version {v}",
        '[TRC] cid - <<- [CONNECT {"verbose":false,"pedantic":false}]', "[TRC] cid - <<- [PING]",
        "[TRC] cid - ->> [PONG]", "[DBG] cid - Client connection closed: Client Closed",
        *start, f"[DBG] cid - Failed pinned cert test for key id: {pki.spki(pki.dave)}",
        "[DBG] cid - Client connection closed: TLS Handshake Failure"]


async def test_what_nats_py_reports_for_a_certificate_naming_no_user(pki: GuidePKI, more: dict[str, Who],
                                                                     pairs: Callable[..., Pair]) -> None:
    """A nats-py program whose certificate names no user gets nats-server's Authorization
    Violation from both. (Refusals in or right after the TLS 1.3 handshake are not compared
    through nats-py: it sends CONNECT as soon as its side of the handshake is done and races the
    server's close, so on both servers it sees the alert, a reset or a broken pipe by chance;
    the raw-socket tests above compare those.)"""
    pair = pairs(tls_conf(pki.server, ca_file=pki.ca, verify_and_map=True)
                 + 'authorization { users = [ {user: "carol@example.com"} ] }\n')
    for impl, s in pair.items():
        assert await nats_py(s, client_ctx(pki.ca, more["oscar"])) == "Error: nats: 'Authorization Violation'", impl
        assert await nats_py(s, client_ctx(pki.ca, pki.carol)) == "ok", impl


def test_mapped_users_in_accounts(pki: GuidePKI, pairs: Callable[..., Pair]) -> None:
    """Certificate-mapped users defined inside accounts: each lands in its account (messages do
    not cross), /connz names the account, and a no_auth_user does not catch a certificate that
    names nobody."""
    accounts = """
accounts {
  SALES { users = [ {user: "carol@example.com"}, {user: "dave.example.com"} ] }
  OPS { users = [ {user: "CN=frank, OU=Ops, O=Acme"}, {user: "guest", password: "g"} ] }
}
no_auth_user: guest
http: "127.0.0.1:-1"
"""
    pair = pairs(tls_conf(pki.server, ca_file=pki.ca, verify_and_map=True) + accounts)

    def probe(s: ServerProcess) -> tuple[list[bytes], list[tuple[str, str]]]:
        socks = [tls_client(s, pki.ca, w) for w in (pki.carol, pki.dave, pki.frank)]
        try:
            for sock in socks:
                talk(sock, b"SUB news 1\r\n")
            talk(socks[0], b"PUB news 5\r\nhello\r\n")
            out = [talk(sock, b"") for sock in socks]
            conns = monitor(s, "/connz?auth=1")["connections"]
            return out, sorted((c["authorized_user"], c["account"]) for c in conns)
        finally:
            for sock in socks:
                sock.close()

    out, users = same(pair, probe)
    # carol had her own message with her PUB's PONG; dave (same account) gets it, frank not
    assert out == [b"PONG\r\n", b"MSG news 1 5\r\nhello\r\nPONG\r\n", b"PONG\r\n"]
    assert users == [("CN=frank, OU=Ops, O=Acme", "OPS"), ("carol@example.com", "SALES"),
                     ("dave.example.com", "SALES")]
    assert same(pair, lambda s: exchange(s, pki.ca, pki.erin, CONNECT + b"PING\r\n"))[1] == AUTH_VIOLATION


def test_allow_non_tls_takes_either(pki: GuidePKI, pairs: Callable[..., Pair]) -> None:
    """With allow_non_tls the server looks at the client's first bytes: a ClientHello after the
    INFO gets TLS (with a certificate check under verify), CONNECT in clear text gets none."""
    pair = pairs(tls_conf(pki.server, ca_file=pki.ca, verify=True) + "allow_non_tls: true\n"
                 + 'http: "127.0.0.1:-1"\n')
    assert same(pair, lambda s: exchange(s, pki.ca, pki.carol)) == (True, b"PONG\r\n", "until")
    assert same(pair, lambda s: exchange(s, pki.ca, None, b""))[2] == "alert:TLSV13_ALERT_CERTIFICATE_REQUIRED"
    assert same(pair, lambda s: plain(s, CONNECT + b"PING\r\n"))[1:] == (b"PONG\r\n", "until")

    def kinds(s: ServerProcess) -> list[tuple[str | None, str | None]]:
        socks = [tls_client(s, pki.ca, pki.carol)]
        raw = socket.create_connection((HOST, s.port), timeout=3)
        socks.append(raw)  # type: ignore[arg-type]
        try:
            assert _info_line(raw, 3) is not None
            raw.sendall(CONNECT + b"PING\r\n")
            assert _read(raw, b"PONG\r\n", 3)[1] == "until"
            conns = monitor(s, "/connz")["connections"]
            return sorted(((c.get("tls_version"), c.get("tls_cipher_suite")) for c in conns), key=str)
        finally:
            for sock in socks:
                sock.close()

    assert same(pair, kinds) == [("1.3", "TLS_AES_128_GCM_SHA256"), (None, None)]


def test_reload_turns_tls_on_and_off(pki: GuidePKI) -> None:
    """A plain server given a tls block by a reload: clients connected in clear text stay, new
    ones must do TLS; the block removed again: the TLS client stays, INFO no longer asks."""
    servers: dict[str, ServerProcess] = {}
    live: list[socket.socket] = []
    try:
        for impl in IMPLS:
            servers[impl] = ServerProcess(impl, "").start()

        def plain_client(s: ServerProcess) -> socket.socket:
            sock = socket.create_connection((HOST, s.port), timeout=3)
            live.append(sock)
            assert _info_line(sock, 3) is not None
            sock.sendall(CONNECT + b"PING\r\n")
            assert _read(sock, b"PONG\r\n", 3)[1] == "until"
            return sock

        early = [plain_client(s) for s in servers.values()]
        for s in servers.values():
            s.reload(tls_conf(pki.server))
        each(lambda impl: wait_lines(servers[impl], r"Reloaded server configuration"))
        assert same(servers, tls_info_fields) == {"tls_required": True}
        tls_socks = [tls_client(s, pki.ca, None) for s in servers.values()]
        live.extend(tls_socks)
        for s in servers.values():
            s.reload("")
        each(lambda impl: wait_lines(servers[impl], r"Reloaded server configuration", 2))
        assert same(servers, tls_info_fields) == {}
        for sock in early:
            sock.sendall(b"PING\r\n")
            assert _read(sock, b"PONG\r\n", 3) == (b"PONG\r\n", "until")
        for tsock in tls_socks:
            assert talk(tsock, b"") == b"PONG\r\n"
        got = {impl: notices(s) for impl, s in servers.items()}
        every = ["Reloaded: authorization users", "Reloaded: accounts"]
        # the default auth timeout is the TLS timeout + 1 s with TLS, 2 s without
        assert got["nats"] == got["pynatsd"] == [
            *every, "Reloaded: authorization timeout = 3", "Reloaded: tls = enabled", "Reloaded server configuration",
            *every, "Reloaded: authorization timeout = 2", "Reloaded: tls = disabled", "Reloaded server configuration"]
    finally:
        for sock in live:
            sock.close()
        for s in servers.values():
            s.cleanup()


def tls_info_fields(s: ServerProcess) -> dict[str, Any]:
    with socket.create_connection((HOST, s.port), timeout=3) as sock:
        info = _info_line(sock, 3)
    assert info is not None
    return {k: v for k, v in info.items() if k.startswith("tls_")}


def test_reload_maps_live_clients_again_at_debug(pki: GuidePKI) -> None:
    """When a reload changes the users, live certificate-mapped clients are mapped again: at -D
    the same lines on both, after the Reloaded: notices; a client whose user is gone is closed."""
    conf = tls_conf(pki.server, ca_file=pki.ca, verify_and_map=True)
    users = 'authorization {{ users = [ {{user: "carol@example.com"{p}}}{dave} ] }}\n'
    servers: dict[str, ServerProcess] = {}
    socks: list[ssl.SSLSocket] = []
    try:
        for impl in IMPLS:
            servers[impl] = ServerProcess(impl, conf + users.format(p="", dave=', {user: "dave.example.com"}'),
                                          ("-D",)).start()
        carol = {impl: tls_client(s, pki.ca, pki.carol) for impl, s in servers.items()}
        dave = {impl: tls_client(s, pki.ca, pki.dave) for impl, s in servers.items()}
        socks += [*carol.values(), *dave.values()]
        marks = {impl: len(s.stderr().splitlines()) for impl, s in servers.items()}
        for s in servers.values():
            s.reload(conf + users.format(p=', permissions: {publish: "x"}', dave=""))
        each(lambda impl: wait_lines(servers[impl], r"Reloaded server configuration"))
        assert each(lambda impl: _read(dave[impl], None, 3)) == {impl: (b"", "EOF") for impl in IMPLS}
        each(lambda impl: wait_lines(servers[impl], r"Client connection closed", 1))
        assert each(lambda impl: talk(carol[impl], b"PUB y 0\r\n\r\n")) == {
            impl: b"-ERR 'Permissions Violation for Publish to \"y\"'\r\nPONG\r\n" for impl in IMPLS}

        def since_reload(s: ServerProcess) -> list[str]:
            text = "\n".join(s.stderr().splitlines()[marks[s.impl]:])
            lines = logged_in(text, r"cid:|Reloaded")
            return [re.sub(r" \(sha256:[0-9a-f]+\)$", "", ln) for ln in lines]

        got = each(lambda impl: since_reload(servers[impl]))
        for impl in IMPLS:
            lines = got[impl]
            assert lines[:3] == ["[INF] Reloaded: authorization users", "[INF] Reloaded: accounts",
                                 "[INF] Reloaded: tls = enabled"], (impl, lines)
            # nats-server checks its clients in no set order: carol mapped again, dave closed
            mapped = ["[DBG] cid - Multiple peer certificates found, selecting first",
                      '[DBG] cid - Using email found in cert for auth ["carol@example.com"]']
            i = lines.index(mapped[0])
            assert lines[i:i + 2] == mapped, (impl, lines)
            rest = lines[3:i] + lines[i + 2:]
            assert rest in (
                ["[DBG] cid - Client connection closed: Client Closed", "[INF] Reloaded server configuration",
                 '[ERR] cid - Publish Violation - Subject "y"'],
                ["[INF] Reloaded server configuration", "[DBG] cid - Client connection closed: Client Closed",
                 '[ERR] cid - Publish Violation - Subject "y"']), (impl, lines)
            assert lines.index(mapped[1]) < lines.index("[INF] Reloaded server configuration")
    finally:
        for sock in socks:
            sock.close()
        for s in servers.values():
            s.cleanup()
