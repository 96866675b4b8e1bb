"""NKEY users, differential against the real nats-server: config checks (``-t`` texts), the INFO
nonce, CONNECT with ``nkey``/``sig`` (good, missing, malformed and foreign signatures, unknown
keys, nkey mixed with user/password, no_auth_user naming an nkey), permissions and accounts of
nkey users, /connz auth fields, and what a reload does to nkey clients. nats-py clients sign with
``nkeys_seed_str``. Keys are made per test session with the ``nkeys`` package."""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import os
import re
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import nats.errors
import nkeys
import pytest
from tests.helpers.rawclient import RawClient
from tests.helpers.servers import IMPLS, ServerProcess, free_port, nats_server_binary

from pynatsd.config.load import load_options
from pynatsd.errors import ConfigError

AUTH_ERR = b"-ERR 'Authorization Violation'\r\n"


class Key:
    def __init__(self, prefix: int = nkeys.PREFIX_BYTE_USER) -> None:
        self.seed = nkeys.encode_seed(os.urandom(32), prefix).decode()
        self.pub = nkeys.from_seed(bytearray(self.seed.encode())).public_key.decode()

    def sign(self, nonce: str) -> bytes:
        return bytes(nkeys.from_seed(bytearray(self.seed.encode())).sign(nonce.encode()))


U0, U1, U2, U3 = Key(), Key(), Key(), Key()
ACCOUNT_KEY = Key(nkeys.PREFIX_BYTE_ACCOUNT)


def std(sig: bytes) -> str:
    return base64.b64encode(sig).decode()


def raw_url(sig: bytes) -> str:
    return base64.urlsafe_b64encode(sig).rstrip(b"=").decode()


# ---- configuration: verdict and text of `-t` against nats-server -----------------------------

BAD_CRC = U0.pub[:-1] + ("A" if U0.pub[-1] != "A" else "B")
CONF_CASES = [
    f"authorization {{ users: [ {{nkey: {U0.pub}}} ] }}",
    f"authorization {{ users: [ {{nkey: {ACCOUNT_KEY.pub}}} ] }}",
    f"authorization {{ users: [ {{nkey: {BAD_CRC}}} ] }}",
    f"authorization {{ users: [ {{nkey: {U0.seed}}} ] }}",
    f"authorization {{ users: [ {{nkey: {U0.pub.lower()}}} ] }}",
    "authorization { users: [ {nkey: UABC} ] }",
    'authorization { users: [ {nkey: ""} ] }',
    "authorization { users: [ {nkey: 5} ] }",
    "authorization { users: [ {nkey: [a]} ] }",
    f"authorization {{ users: [ {{nkey: {U0.pub}, user: bob}} ] }}",
    f"authorization {{ users: [ {{user: bob, nkey: {U0.pub}}} ] }}",
    f"authorization {{ users: [ {{nkey: {U0.pub}, password: x}} ] }}",
    f"authorization {{ users: [ {{nkey: {U0.pub}, bogus: 1}} ] }}",
    "authorization { users: [ {nkey: UABC, user: bob} ] }",
    "authorization { users: [ {nkey: UABC, permissions: {bogus: 1}} ] }",
    f"authorization {{ users: [ {{nkey: {U0.pub}}}, {{nkey: {U0.pub}}} ] }}",
    f"authorization {{ users: [ {{nkey: {U0.pub}}}, {{user: {U0.pub}, password: x}} ] }}",
    f"authorization {{ users: [ {{user: {U0.pub}, password: x}}, {{nkey: {U0.pub}}} ] }}",
    f"authorization {{ users: [ {{nkey: {U0.pub}}}, {{nkey: {U0.pub}}}, {{user: a, password: x}}, "
    "{user: a, password: y} ] }",
    f"authorization {{ users: [ {{nkey: {U0.pub}}}, {{user: bob, password: x}} ] }}",
    f"authorization {{ token: abc, users: [ {{nkey: {U0.pub}}} ] }}",
    f"authorization {{ user: a, password: b, users: [ {{nkey: {U0.pub}}} ] }}",
    f"authorization {{ users: [ {{nkey: {U0.pub}, allowed_connection_types: [WEBSOCKET]}} ] }}",
    f"authorization {{ default_permissions: {{ publish: a }}, users: [ {{nkey: {U0.pub}}} ] }}",
    f"accounts {{ A {{ users [ {{nkey: {U0.pub}}} ] }} }}",
    f"accounts {{ A {{ users [ {{nkey: {U0.pub}}}, {{nkey: {U0.pub}}} ] }} }}",
    f"accounts {{ A {{ users [ {{nkey: {U0.pub}}} ] }}, B {{ users [ {{nkey: {U0.pub}}} ] }} }}",
    f"accounts {{ A {{ users [ {{user: {U0.pub}, password: x}} ] }}, B {{ users [ {{nkey: {U0.pub}}} ] }} }}",
    f"authorization {{ users [ {{nkey: {U0.pub}}} ] }}\naccounts {{ A {{ users [ {{nkey: {U0.pub}}} ] }} }}",
    f"accounts {{ A {{ users [ {{nkey: {U0.pub}}} ] }} }}\nauthorization {{ users [ {{nkey: {U0.pub}}} ] }}",
    f"authorization {{ users [ {{user: {U0.pub}, password: x}} ] }}\n"
    f"accounts {{ B {{ users [ {{nkey: {U0.pub}}} ] }} }}",
]


def _message(text: str) -> str:
    line = text.strip().splitlines()[0].removeprefix("nats-server: ")
    return re.sub(r"^\S+?\.conf(:\d+)*: ", "", line)


@pytest.mark.parametrize("snippet", CONF_CASES)
def test_config_same_verdict_and_text_as_nats_server(snippet: str, tmp_path: Path) -> None:
    path = tmp_path / "nk.conf"
    path.write_text(snippet + "\n")
    real = subprocess.run([nats_server_binary(), "-t", "-c", str(path)], capture_output=True, text=True, timeout=30)
    try:
        opts = load_options(str(path), None, validate=False)
        ours_ok, why = not opts.config_warnings, "; ".join(opts.config_warnings)
    except ConfigError as e:
        ours_ok, why = False, str(e)
    assert ours_ok == (real.returncode == 0), f"nats-server: {real.stderr.strip()!r}; pynatsd: {why!r}"
    if not ours_ok:
        ours, theirs = _message(why), _message(real.stderr)
        if snippet.count("users") > 1 and theirs.startswith("Duplicate "):
            # across blocks or accounts nats-server reads in Go's (random) map order, and the text
            # names the kind (user or nkey) of the entry it met second
            assert ours in {f'Duplicate user "{U0.pub}" detected', f'Duplicate nkey "{U0.pub}" detected'}, why
        else:
            assert ours == theirs, (why, real.stderr)


@pytest.mark.parametrize(
    "snippet",
    [
        f"authorization {{ users [ {{nkey: {U0.pub}}} ] }}\nno_auth_user: {U0.pub}",
        f"accounts {{ A {{ users [ {{nkey: {U0.pub}}} ] }} }}\nno_auth_user: {U0.pub}",
        f"authorization {{ users [ {{nkey: {U0.pub}}} ] }}\nno_auth_user: {U1.pub}",
        f"authorization {{ users [ {{nkey: {U0.pub}}} ] }}\nno_auth_user: bob",
    ],
)
def test_no_auth_user_naming_an_nkey_at_start(snippet: str, tmp_path: Path) -> None:
    """no_auth_user may name an nkey (checked when the server starts, not by -t)."""
    path = tmp_path / "nau.conf"
    path.write_text(snippet + "\n")
    port = free_port()
    proc = subprocess.Popen([nats_server_binary(), "-c", str(path), "-a", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: list[str] = []
    try:
        real_ok = _started(proc, seen)
    finally:
        proc.terminate()
        out = "".join(seen) + proc.communicate(timeout=10)[0]
    try:
        load_options(str(path), None)
        ours_ok, message = True, ""
    except ConfigError as e:
        ours_ok, message = False, e.message
    assert ours_ok == real_ok, (message, out)
    if not ours_ok:
        assert message in out, (message, out)


def _started(proc: subprocess.Popen[str], seen: list[str]) -> bool:
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if "Server is ready" in line:
            return True
    return False


# ---- both servers, same bytes ------------------------------------------------------------------


@pytest.fixture()
def pair(request: pytest.FixtureRequest) -> Iterator[Callable[..., dict[str, ServerProcess]]]:
    started: list[ServerProcess] = []

    def start(config: str, flags: tuple[str, ...] = ()) -> dict[str, ServerProcess]:
        out = {}
        for impl in IMPLS:
            srv = ServerProcess(impl, config, flags)
            started.append(srv)
            out[impl] = srv.start()
        return out

    yield start
    for srv in started:
        srv.cleanup()


def connect_raw(srv: ServerProcess) -> RawClient:
    c = RawClient(srv.host, srv.port)
    c.read_info()
    return c


def send_connect(srv: ServerProcess, fields: dict[str, Any] | Callable[[str], dict[str, Any]],
                 after: bytes = b"PING\r\n") -> bytes:
    """One connection: INFO, then CONNECT (``fields`` may be built from the nonce), then ``after``;
    what came back up to PONG or the close."""
    c = connect_raw(srv)
    try:
        assert c.info is not None
        doc = fields(c.info.get("nonce", "")) if callable(fields) else fields
        c.send(b"CONNECT " + json.dumps(doc).encode() + b"\r\n" + after)
        return c.read_until(functools.partial(_end, after.count(b"PING\r\n")))
    finally:
        c.close()


def _end(pongs: int, buf: bytes) -> int:
    """Up to the PONG answering the last PING sent, or everything once the server sent the
    Authorization Violation (the close follows)."""
    if AUTH_ERR in buf:
        return len(buf)
    if buf.count(b"PONG\r\n") < pongs:
        return -1
    return buf.rfind(b"PONG\r\n") + 6


def closes(srv: ServerProcess, fields: dict[str, Any] | Callable[[str], dict[str, Any]]) -> bytes:
    c = connect_raw(srv)
    assert c.info is not None
    doc = fields(c.info.get("nonce", "")) if callable(fields) else fields
    c.send(b"CONNECT " + json.dumps(doc).encode() + b"\r\nPING\r\n")
    return c.expect_eof()


MIXED = (
    f"authorization {{ users [ {{nkey: {U0.pub}, permissions: {{publish: \"p0.>\", subscribe: \"s0.>\"}}}}, "
    f"{{nkey: {U2.pub}}}, {{user: bob, password: x}}, "
    f"{{nkey: {U3.pub}, allowed_connection_types: [\"WEBSOCKET\"]}} ], "
    "default_permissions: { publish: \"dp.>\" } }\n"
    f"accounts {{ ACC {{ users [ {{nkey: {U1.pub}}} ] }} }}\n"
)

CONNECT_CASES: dict[str, Callable[[str], dict[str, Any]]] = {
    "sig raw url": lambda n: {"nkey": U0.pub, "sig": raw_url(U0.sign(n))},
    "sig std padded": lambda n: {"nkey": U0.pub, "sig": std(U0.sign(n))},
    "sig missing": lambda n: {"nkey": U0.pub},
    "sig empty": lambda n: {"nkey": U0.pub, "sig": ""},
    "sig not base64": lambda n: {"nkey": U0.pub, "sig": "!!!"},
    "sig by another key": lambda n: {"nkey": U0.pub, "sig": std(U1.sign(n))},
    "sig of another nonce": lambda n: {"nkey": U0.pub, "sig": std(U0.sign(n[::-1]))},
    "sig too short": lambda n: {"nkey": U0.pub, "sig": std(U0.sign(n)[:32])},
    "unknown nkey": lambda n: {"nkey": Key().pub, "sig": "x"},
    "websocket-only nkey": lambda n: {"nkey": U3.pub, "sig": std(U3.sign(n))},
    "nkey and good user": lambda n: {"nkey": U0.pub, "sig": std(U0.sign(n)), "user": "bob", "pass": "x"},
    "nkey and bad password": lambda n: {"nkey": U0.pub, "sig": std(U0.sign(n)), "user": "bob", "pass": "no"},
    "unknown nkey and good user": lambda n: {"nkey": U3.pub + "X", "user": "bob", "pass": "x"},
    "user named as the nkey": lambda n: {"user": U0.pub, "pass": ""},
    "sig alone": lambda n: {"sig": std(U0.sign(n))},
    "user": lambda n: {"user": "bob", "pass": "x"},
    "nothing": lambda n: {},
}


def _verbose(fields: Callable[[str], dict[str, Any]]) -> Callable[[str], dict[str, Any]]:
    return lambda n: dict(fields(n), verbose=True)


def test_connect_cases_as_nats_server(pair: Callable[..., dict[str, ServerProcess]]) -> None:
    servers = pair(MIXED, ("-D",))
    for name, fields in CONNECT_CASES.items():
        got = {impl: send_connect(srv, _verbose(fields)) for impl, srv in servers.items()}
        assert got["pynatsd"] == got["nats"], name
    # the failures closed the connection on both, after the -ERR
    for impl, srv in servers.items():
        assert closes(srv, CONNECT_CASES["sig by another key"]) == AUTH_ERR, impl
    # the log lines of a refused signature
    logs = {impl: srv.stderr() for impl, srv in servers.items()}
    for impl, text in logs.items():
        for line in ("Signature missing", "Signature not valid base64", "Signature not verified",
                     f'authentication error - Nkey "{U0.pub}"', f'authentication error - User "{U0.pub}"'):
            assert line in text, (impl, line)


def test_sig_encodings_other_than_raw_url_and_padded_std_are_refused(
    pair: Callable[..., dict[str, ServerProcess]],
) -> None:
    """Standard base64 without padding, URL-safe base64 with padding: refused when the text is not
    also valid in the other alphabet (a signature without '+', '/', '-' or '_' would be), so each
    is tried on a connection whose signature has such a character."""
    servers = pair(MIXED, ("-D",))
    encodings = {
        "std unpadded": (lambda sig: std(sig).rstrip("="), "+/"),
        "url padded": (lambda sig: base64.urlsafe_b64encode(sig).decode(), "-_"),
    }
    for impl, srv in servers.items():
        for name, (encode, marks) in encodings.items():
            for _ in range(20):
                c = connect_raw(srv)
                assert c.info is not None
                text = encode(U0.sign(c.info["nonce"]))
                if any(m in text for m in marks):
                    c.send(b"CONNECT " + json.dumps({"nkey": U0.pub, "sig": text}).encode() + b"\r\nPING\r\n")
                    assert c.expect_eof() == AUTH_ERR, (impl, name)
                    break
                c.close()
            else:
                raise AssertionError(f"no signature with one of {marks!r} in 20 tries")
        assert "Signature not valid base64" in srv.stderr(), impl


def test_info_nonce(pair: Callable[..., dict[str, ServerProcess]]) -> None:
    servers = pair(MIXED)
    for impl, srv in servers.items():
        nonces = set()
        for _ in range(3):
            c = connect_raw(srv)
            assert c.info is not None
            nonce = c.info["nonce"]
            assert re.fullmatch(r"[A-Za-z0-9_-]{15}", nonce), (impl, nonce)
            keys = list(c.info)
            assert keys.index("client_ip") + 1 == keys.index("nonce"), (impl, keys)
            nonces.add(nonce)
            # the INFO after CONNECT (protocol 1) has no nonce
            c.send(b"CONNECT " + json.dumps({"verbose": False, "protocol": 1, "nkey": U0.pub,
                                             "sig": raw_url(U0.sign(nonce))}).encode() + b"\r\nPING\r\n")
            after = c.read_until(b"} \r\n")
            assert b"connect_info" in after and b"nonce" not in after, (impl, after)
            c.close()
        assert len(nonces) == 3, impl


def test_no_nonce_without_nkey_users(pair: Callable[..., dict[str, ServerProcess]]) -> None:
    servers = pair("authorization { users [ {user: bob, password: x} ] }\n")
    for impl, srv in servers.items():
        c = connect_raw(srv)
        assert c.info is not None and "nonce" not in c.info and c.info["auth_required"] is True, impl
        c.close()
        # an nkey is ignored when no nkey user exists: the user/password decides
        got = send_connect(srv, {"nkey": U0.pub, "user": "bob", "pass": "x"})
        assert got == b"+OK\r\nPONG\r\n", (impl, got)
        got = send_connect(srv, lambda n: {"nkey": U0.pub, "sig": std(U0.sign(n))})
        assert got == AUTH_ERR, (impl, got)
    # ... so a CONNECT with only an nkey is anonymous: no_auth_user takes it
    servers = pair("authorization { users [ {user: bob, password: x, permissions: {publish: ok}} ] }\n"
                   "no_auth_user: bob\n")
    for impl, srv in servers.items():
        got = send_connect(srv, {"verbose": False, "nkey": U0.pub}, b"PUB no 0\r\n\r\nPING\r\n")
        assert got == b"-ERR 'Permissions Violation for Publish to \"no\"'\r\nPONG\r\n", (impl, got)


def test_permissions_and_accounts_of_nkey_users(pair: Callable[..., dict[str, ServerProcess]]) -> None:
    servers = pair(MIXED)
    ops = b"PUB p0.a 1\r\nx\r\nPUB dp.a 1\r\nx\r\nSUB s1.a 1\r\nSUB s0.a 2\r\nPING\r\n"
    for impl, srv in servers.items():
        # own permissions
        got = send_connect(srv, lambda n: {"verbose": False, "nkey": U0.pub, "sig": std(U0.sign(n))}, b"PING\r\n" + ops)
        assert got == (b'PONG\r\n-ERR \'Permissions Violation for Publish to "dp.a"\'\r\n'
                       b'-ERR \'Permissions Violation for Subscription to "s1.a"\'\r\nPONG\r\n'), (impl, got)
        # default_permissions
        got = send_connect(srv, lambda n: {"verbose": False, "nkey": U2.pub, "sig": std(U2.sign(n))}, b"PING\r\n" + ops)
        assert got == (b"PONG\r\n-ERR 'Permissions Violation for Publish to \"p0.a\"'\r\nPONG\r\n"), (impl, got)
        # the account's subject space
        c = connect_raw(srv)
        assert c.info is not None
        c.send(b"CONNECT " + json.dumps({"verbose": False, "protocol": 1, "nkey": U1.pub,
                                         "sig": std(U1.sign(c.info["nonce"]))}).encode() + b"\r\nPING\r\n")
        assert b'"remote_account":"ACC"' in c.read_until(b"} \r\n"), impl
        c.close()


def test_connz_auth_fields(pair: Callable[..., dict[str, ServerProcess]]) -> None:
    servers = pair(MIXED, ("-m", "-1"))
    views = {}
    for impl, srv in servers.items():
        held = []
        for key in (U0, U1):
            c = connect_raw(srv)
            assert c.info is not None
            c.send(b"CONNECT " + json.dumps({"verbose": False, "nkey": key.pub, "sig": std(key.sign(c.info["nonce"]))}
                                            ).encode() + b"\r\nPING\r\n")
            c.expect(b"PONG\r\n")
            held.append(c)
        c = connect_raw(srv)
        c.send(b'CONNECT {"verbose":false,"user":"bob","pass":"x"}\r\nPING\r\n')
        c.expect(b"PONG\r\n")
        held.append(c)
        assert srv.ports is not None
        mon = next(u for u in srv.ports["monitoring"])
        doc = json.loads(urllib.request.urlopen(f"{mon}/connz?auth=true", timeout=5).read())
        keep = ("authorized_user", "account", "issuer_key", "name_tag", "jwt")
        views[impl] = [{k: v for k, v in e.items() if k in keep} for e in doc["connections"]]
        doc = json.loads(urllib.request.urlopen(f"{mon}/connz?auth=1&user={U0.pub}", timeout=5).read())
        assert [e["authorized_user"] for e in doc["connections"]] == [U0.pub], impl
        for h in held:
            h.close()
    assert views["pynatsd"] == views["nats"]
    assert views["nats"][0] == {"authorized_user": U0.pub, "issuer_key": "$G", "name_tag": "$G"}


def _closed_count(url: str, n: int) -> bool:
    return len(json.loads(urllib.request.urlopen(url, timeout=5).read())["connections"]) >= n


def test_connz_of_refused_connections(pair: Callable[..., dict[str, ServerProcess]]) -> None:
    """A closed connection whose CONNECT was refused shows whom it claimed to be."""
    servers = pair(MIXED, ("-m", "-1"))
    claims = [{"user": "bob", "pass": "bad"}, {"user": "nobody"}, {"nkey": U0.pub, "sig": "x"},
              {"nkey": U0.pub, "user": "bob", "pass": "x", "sig": "x"}, {"auth_token": "t"}, {}]
    views = {}
    for impl, srv in servers.items():
        for claim in claims:
            assert closes(srv, claim) == AUTH_ERR, (impl, claim)
        assert srv.ports is not None
        mon = srv.ports["monitoring"][0]
        url = f"{mon}/connz?state=closed&auth=true"
        _wait(functools.partial(_closed_count, url, 6), f"{impl} closed connections")
        doc = json.loads(urllib.request.urlopen(url, timeout=5).read())
        views[impl] = [(e.get("authorized_user"), e.get("issuer_key"), e["reason"]) for e in doc["connections"]]
    assert views["pynatsd"] == views["nats"]
    assert [v[0] for v in views["nats"]] == ["bob", "nobody", U0.pub, U0.pub, "[REDACTED]", None]


def test_no_auth_user_is_an_nkey(pair: Callable[..., dict[str, ServerProcess]]) -> None:
    servers = pair(f"authorization {{ users [ {{nkey: {U0.pub}, permissions: {{publish: ok}}}}, "
                   f"{{nkey: {U1.pub}}} ] }}\nno_auth_user: {U0.pub}\n")
    ops = b"PUB ok 0\r\n\r\nPUB no 0\r\n\r\nPING\r\n"
    for impl, srv in servers.items():
        c = connect_raw(srv)
        assert c.info is not None and "auth_required" not in c.info and len(c.info["nonce"]) == 15, impl
        # ops before CONNECT are refused when no_auth_user names an nkey
        c.send(b"SUB foo 1\r\n")
        assert c.expect_eof() == AUTH_ERR, impl
        # no credentials: the nkey user, without a signature; its own key needs none either
        viol = b"-ERR 'Permissions Violation for Publish to \"no\"'\r\nPONG\r\n"
        assert send_connect(srv, {"verbose": False}, ops) == viol, impl
        assert send_connect(srv, {"verbose": False, "nkey": U0.pub, "sig": "bogus"}, ops) == viol, impl
        assert send_connect(srv, {"verbose": False, "sig": "bogus"}, ops) == viol, impl
        # any other nkey still signs
        assert send_connect(srv, {"nkey": U1.pub}) == AUTH_ERR, impl
        assert send_connect(srv, lambda n: {"verbose": False, "nkey": U1.pub, "sig": std(U1.sign(n))}) == b"PONG\r\n"


# ---- reload ---------------------------------------------------------------------------------------

RELOAD_1 = (
    f"authorization {{ users [ {{nkey: {U0.pub}, permissions: {{subscribe: [x, y]}}}}, {{nkey: {U1.pub}}}, "
    "{user: bob, password: x} ] }\n"
    f"accounts {{ ACC {{ users [ {{nkey: {U2.pub}}} ] }} }}\n"
)
RELOAD_2 = (
    f"authorization {{ users [ {{nkey: {U0.pub}, permissions: {{subscribe: [y]}}}}, {{nkey: {U2.pub}}}, "
    f"{{nkey: {U3.pub}}}, {{user: bob, password: x}} ] }}\n"
    "accounts { ACC { users [ ] } }\n"
)


def _signed(srv: ServerProcess, key: Key, after: bytes = b"") -> RawClient:
    c = connect_raw(srv)
    assert c.info is not None
    c.send(b"CONNECT " + json.dumps({"verbose": False, "nkey": key.pub, "sig": std(key.sign(c.info["nonce"]))}
                                    ).encode() + b"\r\nPING\r\n" + after)
    return c


def _reloaded(srv: ServerProcess, times: int) -> bool:
    return srv.stderr().count("Reloaded server configuration") >= times


def _wait(cond: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # another process: poll with a deadline
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_reload_nkey_users(pair: Callable[..., dict[str, ServerProcess]]) -> None:
    servers = pair(RELOAD_1)
    for impl, srv in servers.items():
        c0 = _signed(srv, U0, b"SUB x 1\r\nSUB y 2\r\nPING\r\n")
        assert c0.read_until(b"PONG\r\nPONG\r\n") == b"PONG\r\nPONG\r\n", impl
        c1 = _signed(srv, U1)
        c1.expect(b"PONG\r\n")
        c2 = _signed(srv, U2)
        c2.expect(b"PONG\r\n")
        c3 = _signed(srv, U3)
        assert c3.expect_eof() == AUTH_ERR, impl
        bob = connect_raw(srv)
        bob.send(b'CONNECT {"verbose":false,"user":"bob","pass":"x"}\r\nPING\r\n')
        bob.expect(b"PONG\r\n")

        srv.reload(RELOAD_2)
        _wait(functools.partial(_reloaded, srv, 1), f"{impl} reload")
        # removed (U1) and moved to another account (U2): closed without -ERR
        for c in (c1, c2):
            assert AUTH_ERR not in c.expect_eof(), impl
        # permissions changed: the subscription no longer allowed goes, the connection stays
        c0.send(b"PING\r\n")
        got = c0.read_until(b"PONG\r\n")
        assert got.replace(b"PING\r\n", b"") == b'-ERR \'Permissions Violation for Subscription to "x" (sid "1")\'\r\nPONG\r\n', impl
        # added: U3 gets in now; bob was untouched
        c3 = _signed(srv, U3)
        c3.expect(b"PONG\r\n")
        bob.send(b"PING\r\n")
        assert bob.read_until(b"PONG\r\n").endswith(b"PONG\r\n"), impl
        assert "Reloaded: authorization nkey users" in srv.stderr(), impl
        assert f'Removed sub "x" (sid "1") for Nkey "{U0.pub}" - not authorized' in srv.stderr(), impl

        # nkey users gone: no nonce for new connections, nkey clients closed
        srv.reload("authorization { users [ {user: bob, password: x} ] }\n")
        _wait(functools.partial(_reloaded, srv, 2), f"{impl} second reload")
        assert AUTH_ERR not in c0.expect_eof(), impl
        assert AUTH_ERR not in c3.expect_eof(), impl
        c = connect_raw(srv)
        assert c.info is not None and "nonce" not in c.info, impl
        for h in (c, bob):
            h.close()


# ---- nats-py clients --------------------------------------------------------------------------


@pytest.fixture()
def pynatsd_mixed() -> Iterator[ServerProcess]:
    srv = ServerProcess("pynatsd", MIXED).start()
    try:
        yield srv
    finally:
        srv.cleanup()


async def test_nats_py_nkeys_seed(pynatsd_mixed: ServerProcess) -> None:
    srv = pynatsd_mixed
    errors: list[Exception] = []
    got_error = asyncio.Event()

    async def on_error(e: Exception) -> None:
        errors.append(e)
        got_error.set()

    nc = await nats.connect(srv.url, nkeys_seed_str=U0.seed, error_cb=on_error, allow_reconnect=False)
    bob = await nats.connect(srv.url, user="bob", password="x", allow_reconnect=False)
    sub = await bob.subscribe("p0.a")
    acc = await nats.connect(srv.url, nkeys_seed_str=U1.seed, allow_reconnect=False)
    sub_acc = await acc.subscribe("p0.a")
    await bob.flush()
    await acc.flush()
    await nc.publish("p0.a", b"hello")  # allowed by the nkey user's permissions
    msg = await sub.next_msg(timeout=5)
    assert msg.data == b"hello"
    await acc.flush()
    with pytest.raises(nats.errors.TimeoutError):  # another account: nothing crosses
        await sub_acc.next_msg(timeout=0.3)
    await nc.publish("elsewhere", b"x")  # refused by the user's publish permissions
    await asyncio.wait_for(got_error.wait(), 5)
    assert any('permissions violation for publish to "elsewhere"' in str(e).lower() for e in errors), errors
    for c in (nc, acc, bob):
        await c.close()
    # a seed the server does not know
    with pytest.raises((nats.errors.Error, OSError)):
        await nats.connect(srv.url, nkeys_seed_str=Key().seed, allow_reconnect=False, max_reconnect_attempts=0)
