"""Accounts, differential: the same accounts config and the same raw-socket client actions
against the real nats-server and pynatsd; who receives what, on which subject, must be the
same (service reply subjects ``_R_.<random>`` are compared by shape only).

Covered: isolation between accounts and the global account, stream imports (prefix, ``to``,
an export restricted to some accounts), service imports (``to``, singleton and stream
responses), the account in INFO (``remote_account``), account users with permissions and
no_auth_user naming an account user.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers.rawclient import RawClient
from tests.helpers.servers import HOST, ServerProcess

CONFIG = """
accounts {
  A {
    users [{user: a, password: pa}, {user: a2, password: pa}]
    exports [
      {stream: "news.>"}
      {stream: "priv.>", accounts: [C]}
      {service: "svc.echo"}
      {service: "svc.multi", response: stream}
    ]
  }
  B {
    users [{user: b, password: pb}]
    imports [
      {stream: {account: A, subject: "news.>"}, prefix: fromA}
      {service: {account: A, subject: "svc.echo"}, to: echo}
      {service: {account: A, subject: "svc.multi"}}
    ]
  }
  C {
    users [{user: c, password: pc, permissions: {subscribe: {deny: "secret"}}}]
    imports [
      {stream: {account: A, subject: "priv.>"}}
      {stream: {account: A, subject: "news.x"}, to: renamed}
    ]
  }
}
authorization { users [{user: g, password: pg}] }
no_auth_user: c
"""

_R = re.compile(rb"_R_\.[A-Za-z0-9]+(\.[A-Za-z0-9]+)*")


def _connect(port: int, user: str | None, pw: str | None) -> RawClient:
    c = RawClient(HOST, port)
    c.read_info()
    creds = f',"user":"{user}","pass":"{pw}"' if user else ""
    c.send(f'CONNECT {{"verbose":false,"pedantic":false,"protocol":1{creds}}}\r\n'.encode())
    out = c.ping()
    assert out.endswith(b"PONG\r\n"), out
    return c


_MARKS: dict[int, int] = {}
_FRAME = re.compile(rb"MSG [^\r]*\r\n[^\r]*\r\n|[^\r]*\r\n")


def _sync(clients: dict[str, RawClient], got: dict[str, list[bytes]], first: RawClient | None = None) -> None:
    """PING the publisher (``first``), then every client, and record what each received
    since the last sync, up to its PONG (the frames of one step in a stable order: deliveries
    to one connection through several of its subscriptions come in trie order, which the
    protocol does not fix)."""
    if first is not None:
        first.ping()
    for name, c in clients.items():
        c.ping()
        start = _MARKS.get(id(c), 0)
        data = bytes(c.received[start : c.cursor])
        _MARKS[id(c)] = c.cursor
        data = re.sub(rb"INFO \{[^\r]*\} ?\r\n", b"", data).replace(b"PONG\r\n", b"")
        if data:
            frames = sorted(_R.sub(b"_R_", f) for f in _FRAME.findall(data))
            got[name].append(b"".join(frames))


def _reply_of(data: bytes) -> bytes:
    m = _R.search(data)
    assert m, data
    return m.group(0)


def scenario(impl: str) -> dict[str, list[bytes]]:
    _MARKS.clear()
    with ServerProcess(impl, CONFIG) as srv:
        port = srv.port
        clients = {
            "a": _connect(port, "a", "pa"),
            "a2": _connect(port, "a2", "pa"),
            "b": _connect(port, "b", "pb"),
            "c": _connect(port, None, None),  # no_auth_user: c (account C)
            "g": _connect(port, "g", "pg"),
        }
        try:
            got: dict[str, list[bytes]] = {n: [] for n in clients}
            a, a2, b, c, g = (clients[n] for n in ("a", "a2", "b", "c", "g"))
            a.send(b"SUB news.> 1\r\nSUB svc.echo 5\r\nSUB svc.multi 6\r\n")
            a2.send(b"SUB > 1\r\n")
            b.send(b"SUB fromA.> 1\r\nSUB news.> 2\r\nSUB inbox.b 9\r\n")
            c.send(b"SUB priv.> 1\r\nSUB renamed 2\r\nSUB news.> 3\r\nSUB > 4\r\n")
            g.send(b"SUB > 1\r\n")
            _sync(clients, got)
            for step in (
                (a2, b"PUB news.x 5\r\nhello\r\n"),  # A's stream: B (prefixed), C (renamed)
                (a2, b"PUB news.y reply.1 2\r\nhi\r\n"),  # reply subject kept; C has no news.y
                (a2, b"PUB priv.z 4\r\npriv\r\n"),  # restricted export: C only
                (b, b"PUB news.x 7\r\nb-local\r\n"),  # B's own news.x: B's subscriber only
                (g, b"PUB news.x 6\r\nglobal\r\n"),  # $G: g only
                (c, b"PUB priv.z 6\r\nc-priv\r\n"),  # C's own subject space
            ):
                step[0].send(step[1])
                _sync(clients, got, step[0])
            # service import, singleton: one answer reaches the requester, the second does not
            mark = len(a.received)
            b.send(b"PUB echo inbox.b 3\r\nreq\r\n")
            a.read_until(b"req\r\n")
            _sync(clients, got, b)
            reply = _reply_of(bytes(a.received[mark:]))
            a.send(b"PUB " + reply + b" 4\r\nresp\r\nPUB " + reply + b" 5\r\nresp2\r\n")
            b.read_until(b"resp\r\n")
            _sync(clients, got, a)
            # service import, stream responses: every answer reaches the requester
            mark = len(a.received)
            b.send(b"PUB svc.multi inbox.b 2\r\nm1\r\n")
            a.read_until(b"m1\r\n")
            _sync(clients, got, b)
            reply = _reply_of(bytes(a.received[mark:]))
            a.send(b"PUB " + reply + b" 2\r\nr1\r\nPUB " + reply + b" 2\r\nr2\r\n")
            b.read_until(b"r2\r\n")
            _sync(clients, got, a)
            # a request without a reply subject still reaches the service
            b.send(b"PUB echo 7\r\nnoreply\r\n")
            a.read_until(b"noreply\r\n")  # service imports deliver asynchronously in nats-server
            _sync(clients, got, b)
            # INFO after CONNECT names the account
            infos = {}
            for name, cl in clients.items():
                m = re.search(rb'"remote_account":"([^"]+)"', bytes(cl.received))
                infos[name] = m.group(1) if m else b""
            got["infos"] = [b" ".join(infos[n] for n in sorted(infos))]
            return got
        finally:
            for cl in clients.values():
                cl.close()


@pytest.fixture(scope="module")
def transcripts() -> Iterator[dict[str, dict[str, list[bytes]]]]:
    yield {impl: scenario(impl) for impl in ("nats", "pynatsd")}


def test_same_deliveries_as_nats_server(transcripts: dict[str, dict[str, list[bytes]]]) -> None:
    assert transcripts["pynatsd"] == transcripts["nats"]


def test_deliveries_are_the_expected_ones(transcripts: dict[str, dict[str, list[bytes]]]) -> None:
    got = {n: b"".join(v) for n, v in transcripts["pynatsd"].items()}
    assert b"MSG fromA.news.x 1 5\r\nhello\r\n" in got["b"]
    assert b"MSG fromA.news.y 1 reply.1 2\r\nhi\r\n" in got["b"]
    assert b"MSG news.x 2 7\r\nb-local\r\n" in got["b"]
    assert b"MSG renamed 2 5\r\nhello\r\n" in got["c"]
    assert b"MSG priv.z 1 4\r\npriv\r\n" in got["c"] and b"priv" not in got["b"]
    assert b"global" not in got["a"] + got["b"] + got["c"] and b"MSG news.x 1 6\r\nglobal\r\n" in got["g"]
    assert b"MSG svc.echo 5 _R_ 3\r\nreq\r\n" in got["a"]
    assert got["b"].count(b"MSG inbox.b 9 4\r\nresp\r\n") == 1 and b"resp2" not in got["b"]
    assert b"MSG inbox.b 9 2\r\nr1\r\n" in got["b"] and b"MSG inbox.b 9 2\r\nr2\r\n" in got["b"]
    assert b"MSG svc.echo 5 7\r\nnoreply\r\n" in got["a"]
    assert got["infos"] == b"A A B C $G"


# ---- account limits ------------------------------------------------------------------------------

LIMITS = """
accounts {
  A {
    users [{user: a, password: pa}, {user: a2, password: pa}]
    limits { max_connections: 2, max_subscriptions: 2, max_payload: 10 }
  }
}
"""


def _try_ping(c: RawClient) -> bytes:
    try:
        return c.ping()
    except EOFError:
        return c.expect_eof() + b"<EOF>"


def limits_scenario(impl: str) -> list[bytes]:
    out: list[bytes] = []
    with ServerProcess(impl, LIMITS) as srv:
        a = _connect(srv.port, "a", "pa")
        a.send(b"SUB x 1\r\nSUB y 2\r\nSUB z 3\r\n")  # the third is over the per-connection limit
        out.append(_try_ping(a))
        a2 = _connect(srv.port, "a2", "pa")
        a2.send(b"SUB x 1\r\nSUB y 2\r\n")  # a limit per connection, not per account
        out.append(_try_ping(a2))
        a3 = RawClient(HOST, srv.port)
        a3.read_info()
        a3.send(b'CONNECT {"verbose":false,"user":"a","pass":"pa"}\r\n')
        out.append(_try_ping(a3))  # a third connection in A
        a.send(b"PUB x 11\r\n01234567890\r\n")  # over the account's max_payload
        out.append(_try_ping(a))
        for c in (a, a2, a3):
            c.close()
    return [re.sub(rb"INFO \{[^\r]*\} ?\r\n", b"", x) for x in out]


def test_account_limits_as_nats_server() -> None:
    ours = limits_scenario("pynatsd")
    assert ours == limits_scenario("nats")
    assert ours == [
        b"-ERR 'maximum subscriptions exceeded'\r\nPONG\r\n",
        b"PONG\r\n",
        b"-ERR 'maximum account active connections exceeded'\r\n<EOF>",
        b"-ERR 'Maximum Payload Violation'\r\n<EOF>",
    ]


# ---- reload --------------------------------------------------------------------------------------

RELOAD_1 = "accounts { A { users [{user: a, password: p}, {user: a2, password: p}] }, B { users [{user: b, password: p}] } }"
RELOAD_2 = (
    "accounts { A { users [{user: a2, password: p}] }, B { users [{user: b, password: p}, {user: a, password: p}] },"
    " C { users [{user: c, password: p}] } }"
)


def reload_scenario(impl: str) -> list[bytes]:
    out: list[bytes] = []
    with ServerProcess(impl, RELOAD_1) as srv:
        a = _connect(srv.port, "a", "p")
        a2 = _connect(srv.port, "a2", "p")
        b = _connect(srv.port, "b", "p")
        a2.send(b"SUB x 1\r\n")
        a2.ping()
        b.send(b"SUB x 1\r\n")
        b.ping()
        srv.reload(RELOAD_2)  # a moves from A to B; account C is added
        out.append(a.expect_eof(timeout=5))  # closed, without an -ERR
        out += [a2.ping(), b.ping()]
        c = _connect(srv.port, "c", "p")
        a_new = _connect(srv.port, "a", "p")
        a_new.send(b"PUB x 2\r\nhi\r\n")
        a_new.ping()
        out += [b.ping(), a2.ping()]
        for cl in (c, a_new):
            m = re.search(rb'"remote_account":"([^"]*)"', bytes(cl.received))
            out.append(m.group(1) if m else b"")
        for cl in (a, a2, b, c, a_new):
            cl.close()
    return [re.sub(rb"INFO \{[^\r]*\} ?\r\n", b"", x) for x in out]


def test_reload_moves_users_and_adds_accounts_as_nats_server() -> None:
    ours = reload_scenario("pynatsd")
    assert ours == reload_scenario("nats")
    assert ours == [b"", b"PONG\r\n", b"PONG\r\n", b"MSG x 1 2\r\nhi\r\nPONG\r\n", b"PONG\r\n", b"C", b"B"]


# ---- monitoring ----------------------------------------------------------------------------------


def monitor_docs(impl: str) -> dict[str, Any]:
    import json
    import urllib.request

    from tests.helpers.servers import free_port

    http = free_port()
    out: dict[str, Any] = {}
    with ServerProcess(impl, CONFIG + f"\nhttp: {HOST}:{http}\n") as srv:
        a = _connect(srv.port, "a", "pa")
        a.send(b"SUB foo 1\r\nSUB bar 2\r\n")
        a.ping()
        for path in ("accountz", "accountz?acc=A", "accountz?acc=B", "subsz?acc=A", "connz?auth=1", "varz"):
            with urllib.request.urlopen(f"http://{HOST}:{http}/{path}", timeout=5) as resp:
                out[path] = json.load(resp)
        a.close()
    return out


def _user_imports(detail: dict[str, Any]) -> list[dict[str, Any]]:
    # nats-server adds its own imports from $SYS to every account; pynatsd has no system services
    return sorted((i for i in detail.get("imports", []) if i["account"] != "$SYS"), key=lambda i: i["subject"])


def test_monitoring_shapes_as_nats_server() -> None:
    ours, theirs = monitor_docs("pynatsd"), monitor_docs("nats")
    assert list(ours["accountz"]) == list(theirs["accountz"])
    assert sorted(ours["accountz"]["accounts"]) == sorted(theirs["accountz"]["accounts"])
    assert ours["accountz"]["system_account"] == theirs["accountz"]["system_account"] == "$SYS"
    for acc in ("A", "B"):
        mine, real = ours[f"accountz?acc={acc}"]["account_detail"], theirs[f"accountz?acc={acc}"]["account_detail"]
        # an account without imports of its own has none here (nats-server lists its $SYS ones)
        assert list(mine) == [k for k in real if k != "imports" or k in mine], acc
        assert mine["client_connections"] == real["client_connections"]
        assert sorted(mine.get("exports", []), key=lambda e: e["subject"]) == sorted(
            real.get("exports", []), key=lambda e: e["subject"]
        )
        assert _user_imports(mine) == _user_imports(real)
    assert list(ours["subsz?acc=A"]) == list(theirs["subsz?acc=A"])
    # A's trie: a's two subscriptions and the internal ones of the stream imports (nats-server
    # has one more internal subscription of its own)
    assert ours["subsz?acc=A"]["num_subscriptions"] == 5 and theirs["subsz?acc=A"]["num_subscriptions"] >= 5
    assert [c["account"] for c in ours["connz?auth=1"]["connections"]] == ["A"]
    assert [c["account"] for c in theirs["connz?auth=1"]["connections"]] == ["A"]
    assert ours["varz"]["system_account"] == theirs["varz"]["system_account"]


MAPPED = """
accounts {
  A { users [{user: a, password: p}], exports [{stream: "n.>"}, {service: "s.*.*"}] }
  B { users [{user: b, password: p}]
      imports [{stream: {account: A, subject: "n.*.*"}, to: "w.*.*"}, {service: {account: A, subject: "s.*.*"}, to: "ask.*.*"}] }
}
"""


def mapped_scenario(impl: str) -> list[bytes]:
    with ServerProcess(impl, MAPPED) as srv:
        a, b = _connect(srv.port, "a", "p"), _connect(srv.port, "b", "p")
        b.send(b"SUB > 1\r\n")
        b.ping()
        a.send(b"SUB s.> 1\r\n")
        a.ping()
        a.send(b"PUB n.1.2 2\r\nhi\r\n")
        a.ping()
        out = [b.ping()]
        b.send(b"PUB ask.3.4 2\r\nrq\r\n")
        b.ping()
        out.append(a.read_until(b"rq\r\n"))
        a.close()
        b.close()
        return out


def test_wildcard_imports_map_tokens_as_nats_server() -> None:
    ours = mapped_scenario("pynatsd")
    assert ours == mapped_scenario("nats")
    assert ours == [b"MSG w.1.2 1 2\r\nhi\r\nPONG\r\n", b"MSG s.3.4 1 2\r\nrq\r\n"]


HEADERS = """
accounts {
  A { users [{user: a, password: p}], exports [{stream: "n.>"}, {service: "s"}] }
  B { users [{user: b, password: p}], imports [{stream: {account: A, subject: "n.>"}, prefix: x}, {service: {account: A, subject: s}}] }
}
"""


def headers_scenario(impl: str) -> list[bytes]:
    def conn(port: int, user: str, headers: bool) -> RawClient:
        c = RawClient(HOST, port)
        c.read_info()
        h = "true" if headers else "false"
        c.send(f'CONNECT {{"verbose":false,"headers":{h},"no_responders":{h},"user":"{user}","pass":"p"}}\r\n'.encode())
        c.ping()
        return c

    with ServerProcess(impl, HEADERS) as srv:
        a, b, b_plain = conn(srv.port, "a", True), conn(srv.port, "b", True), conn(srv.port, "b", False)
        b.send(b"SUB x.> 1\r\nSUB in 2\r\n")
        b.ping()
        b_plain.send(b"SUB x.> 1\r\n")
        b_plain.ping()
        a.send(b"HPUB n.1 12 14\r\nNATS/1.0\r\n\r\nhi\r\n")
        a.ping()
        out = [b.ping(), b_plain.ping()]  # headers kept, or dropped for a client without them
        b.send(b"HPUB s in 12 14\r\nNATS/1.0\r\n\r\nrq\r\n")  # no responder in A: a 503 to B
        out.append(b.read_until(b"\r\n\r\n\r\n"))
        for c in (a, b, b_plain):
            c.close()
        return out


def test_headers_and_no_responders_through_imports_as_nats_server() -> None:
    ours = headers_scenario("pynatsd")
    assert ours == headers_scenario("nats")
    assert ours == [
        b"HMSG x.n.1 1 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPONG\r\n",
        b"MSG x.n.1 1 2\r\nhi\r\nPONG\r\n",
        b"HMSG in 2 33 33\r\nNATS/1.0 503\r\nNats-Subject: s\r\n\r\n\r\n",
    ]


LIMITS_1 = "accounts { A { users [{user: a, password: p}], limits { max_connections: 3, max_subscriptions: 5 } } }"
LIMITS_2 = "accounts { A { users [{user: a, password: p}], limits { max_connections: %d, max_subscriptions: %d } } }"


def limits_reload_scenario(impl: str, conns: int, subs: int) -> list[bytes]:
    """Three connections (with 1, 1 and 2 subscriptions), then a reload lowers the limits;
    what each connection sees, sorted (nats-server picks the connections it closes in no fixed
    order)."""
    with ServerProcess(impl, LIMITS_1) as srv:
        cs = [_connect(srv.port, "a", "p") for _ in range(3)]
        cs[0].send(b"SUB x 1\r\n")
        cs[1].send(b"SUB x 1\r\n")
        cs[2].send(b"SUB x 1\r\nSUB y 2\r\n")
        for c in cs:
            c.ping()
        srv.reload(LIMITS_2 % (conns, subs))
        deadline = time.monotonic() + 10
        while "Reloaded server configuration" not in srv.logs(100000):
            assert time.monotonic() < deadline, srv.logs()
            time.sleep(0.01)
        out = []
        for c in cs:
            # a closed connection ends; an open one answers (polled for 0.2 s: a connection over
            # the subscription limit is closed ~20 ms after its -ERR)
            got = b""
            for _ in range(20):
                got += _try_ping(c)
                if got.endswith(b"<EOF>"):
                    break
                time.sleep(0.01)
            got = re.sub(rb"PONG\r\n", b"", got) or b"open"  # what ends it, or still open
            # nats-server may send a connection it closes for the connection limit the
            # subscription -ERR too (both checks run): the first -ERR says why
            got = re.sub(rb"(-ERR [^\r]*\r\n)(-ERR [^\r]*\r\n)+", rb"\1", got)
            out.append(re.sub(rb"INFO \{[^\r]*\} ?\r\n|^\r\n", b"", got))
            c.close()
        return sorted(out)


@pytest.mark.parametrize(("conns", "subs"), [(1, 5), (2, 1)])
def test_reload_lowering_account_limits_as_nats_server(conns: int, subs: int) -> None:
    ours = limits_reload_scenario("pynatsd", conns, subs)
    assert ours == limits_reload_scenario("nats", conns, subs)
    acc_err = b"-ERR 'maximum account active connections exceeded'\r\n<EOF>"
    subs_err = b"-ERR 'maximum subscriptions exceeded'\r\n<EOF>"
    if conns == 1:
        assert ours.count(acc_err) == 2 and ours.count(b"open") == 1
    else:  # one over the connection limit; the others hold 1 or 2 subscriptions: at or over the limit of 1
        assert ours.count(acc_err) == 1 and ours.count(subs_err) == 2
