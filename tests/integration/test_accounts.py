"""Accounts with an in-process server: bcrypt account users land in their account, the publish
fast paths (single PUBs and runs of identical PUBs) stay inside the publisher's account, the
service-import fast-path switch, and an account's limits and imports after a reload."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import bcrypt
from tests.integration.test_core import raw, running

from pynatsd.config.load import load_options
from pynatsd.config.options import ServerOptions


def _opts(tmp_path: Path, text: str) -> ServerOptions:
    f = tmp_path / "acc.conf"
    f.write_text(text)
    return load_options(str(f))


async def test_bcrypt_users_and_fast_paths_stay_in_the_account(tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    o = _opts(tmp_path, f'accounts {{ A {{ users [{{user: a, password: "{hashed}"}}] }}, '
                        f'B {{ users [{{user: b, password: "{hashed}"}}] }} }}\n')
    kw = {k: getattr(o, k) for k in ("auth", "accounts", "system_account")}
    async with running(**kw) as s:
        a = await raw(s, b'CONNECT {"verbose":false,"user":"a","pass":"pw"}\r\nSUB x 1\r\nPING\r\n')
        b = await raw(s, b'CONNECT {"verbose":false,"user":"b","pass":"pw"}\r\nSUB x 1\r\nPING\r\n')
        assert await a.read_until(b"PONG\r\n") == b"PONG\r\n"
        assert await b.read_until(b"PONG\r\n") == b"PONG\r\n"
        assert [c.acc.name for c in s.clients.values()] == ["A", "B"]
        assert s.sublist.count() == 0 and s.num_subscriptions == 2  # /varz, /metrics: every account
        assert all(c.fast for c in s.clients.values())  # no permissions, no imports: the fast path
        # one PUB, then a run of identical PUBs in one chunk (the parser's OP_PUBS)
        await b.send(b"PUB x 2\r\nb1\r\n" + b"PUB x 2\r\nbb\r\n" * 5 + b"PING\r\n")
        assert await b.read_until(b"PONG\r\n") == b"MSG x 1 2\r\nb1\r\n" + b"MSG x 1 2\r\nbb\r\n" * 5 + b"PONG\r\n"
        await a.send(b"PING\r\n")
        assert await a.read_until(b"PONG\r\n") == b"PONG\r\n"  # nothing from B
        assert s.accounts.get("A") is not None and s.accounts.get("A").sublist.count() == 1  # type: ignore[union-attr]
        await a.close()
        await b.close()


async def test_service_imports_take_the_general_path_and_reload_rewires(tmp_path: Path) -> None:
    base = "accounts { A { users [{user: a, password: p}], exports [{service: svc}] }, B { users [{user: b, password: p}] %s } }\n"
    o1 = _opts(tmp_path, base % "")
    kw = {k: getattr(o1, k) for k in ("auth", "accounts", "system_account")}
    async with running(**kw) as s:
        a = await raw(s, b'CONNECT {"verbose":false,"user":"a","pass":"p"}\r\nSUB svc 1\r\nPING\r\n')
        b = await raw(s, b'CONNECT {"verbose":false,"user":"b","pass":"p"}\r\nPING\r\n')
        await a.read_until(b"PONG\r\n")
        await b.read_until(b"PONG\r\n")
        bc = next(c for c in s.clients.values() if c.acc.name == "B")
        assert bc.fast
        await b.send(b"PUB svc 1\r\nq\r\nPING\r\n")
        await b.read_until(b"PONG\r\n")
        await a.send(b"PING\r\n")
        assert await a.read_until(b"PONG\r\n") == b"PONG\r\n"  # no import yet
        o2 = _opts(tmp_path, base % ", imports [{service: {account: A, subject: svc}}]")
        s.reload(replace(s.opts, auth=o2.auth, accounts=o2.accounts))
        assert not bc.fast  # its account has a service import now
        await b.send(b"PUB svc 1\r\nq\r\nPING\r\n")
        await b.read_until(b"PONG\r\n")
        assert await a.read_until(b"q\r\n") == b"MSG svc 1 1\r\nq\r\n"
        await a.close()
        await b.close()
