"""Authentication and authorization with an in-process Server: user/password (plain and
bcrypt), token, users list, no_auth_user, auth timeout, permissions (publish/subscribe
allow/deny, queue entries, allow_responses), and what a reload does to connected clients."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import bcrypt
import nats
import nats.errors
import pytest
from tests.integration.test_core import connect, raw, running, wait_for

from pynatsd.config.options import (
    AuthOptions,
    Permissions,
    ResponsePermission,
    SubjectPermission,
    User,
)

AUTH_ERR = b"-ERR 'Authorization Violation'\r\n"


def users(*entries: User, **kw: Any) -> AuthOptions:
    return AuthOptions(users=tuple(entries), **kw)


async def connect_fails(server: Any, **kw: Any) -> None:
    with pytest.raises((nats.errors.Error, OSError)):
        await connect(server, **kw)


async def test_user_password() -> None:
    async with running(auth=AuthOptions(user="alice", password="s3cret")) as s:
        c = await raw(s, None)
        assert c.info is not None and c.info["auth_required"] is True
        await c.close()
        nc = await connect(s, user="alice", password="s3cret")
        assert nc.is_connected
        await nc.close()
        await connect_fails(s, user="alice", password="wrong")
        c = await raw(s, b'CONNECT {"user":"alice","pass":"nope"}\r\n')
        assert await c.expect_eof() == AUTH_ERR
        assert s.closed_clients[-1].reason == "Authentication Failure"


async def test_bcrypt_password_and_token() -> None:
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    async with running(auth=users(User("bob", hashed))) as s:
        nc = await connect(s, user="bob", password="pw")
        await nc.close()
        await connect_fails(s, user="bob", password="pw2")
        # the ops after a CONNECT that waits on bcrypt are processed in order once it passes
        c = await raw(s, b'CONNECT {"verbose":false,"user":"bob","pass":"pw"}\r\nSUB a 1\r\nPUB a 1\r\nx\r\nPING\r\n')
        assert await c.read_until(b"PONG\r\n") == b"MSG a 1 1\r\nx\r\nPONG\r\n"
        await c.close()
    token_hash = bcrypt.hashpw(b"tok", bcrypt.gensalt(rounds=4)).decode()
    async with running(auth=AuthOptions(token=token_hash)) as s:
        nc = await connect(s, token="tok")
        await nc.close()
        await connect_fails(s, token="bad")


async def test_plain_token() -> None:
    async with running(auth=AuthOptions(token="t0k")) as s:
        nc = await connect(s, token="t0k")
        await nc.close()
        await connect_fails(s, token="other")
        await connect_fails(s)


async def test_auth_required_first_op_must_be_connect() -> None:
    async with running(auth=AuthOptions(user="u", password="p")) as s:
        c = await raw(s, b"PING\r\n")
        assert await c.expect_eof() == AUTH_ERR


async def test_auth_timeout() -> None:
    async with running(auth=AuthOptions(user="u", password="p", timeout=0.2)) as s:
        c = await raw(s, None)
        assert await c.expect_eof(timeout=3) == b"-ERR 'Authentication Timeout'\r\n"
        await wait_for(lambda: len(s.closed_clients) == 1)
        assert s.closed_clients[0].reason == "Authentication Timeout"


async def test_no_auth_user() -> None:
    limited = Permissions(publish=SubjectPermission(allow=("ok.>",)))
    auth = users(User("anon", "x", permissions=limited), User("admin", "a"), no_auth_user="anon")
    async with running(auth=auth) as s:
        c = await raw(s, None)
        assert c.info is not None and "auth_required" not in c.info
        # ops before CONNECT are allowed and run as the no_auth_user, with its permissions
        await c.send(b"SUB ok.1 1\r\nPUB ok.1 1\r\na\r\nPUB no 1\r\nb\r\nPING\r\n")
        assert await c.read_until(b"PONG\r\n") == (
            b"+OK\r\n+OK\r\nMSG ok.1 1 1\r\na\r\n-ERR 'Permissions Violation for Publish to \"no\"'\r\nPONG\r\n"
        )
        client = next(iter(s.clients.values()))
        assert client.user == "anon"
        await c.close()
        nc = await connect(s, user="admin", password="a")
        await nc.close()
        await connect_fails(s, user="admin", password="b")


async def test_permissions_violations_reach_error_callback() -> None:
    perms = Permissions(
        publish=SubjectPermission(allow=("foo.>", "_INBOX.>"), deny=("foo.secret",)),
        subscribe=SubjectPermission(allow=("foo.>", "q.* grp", "_INBOX.>"), deny=("foo.hidden",)),
    )
    async with running(auth=users(User("u", "p", permissions=perms))) as s:
        errors: list[str] = []
        got_err = asyncio.Event()

        async def error_cb(e: Exception) -> None:
            errors.append(str(e))
            got_err.set()

        nc = await connect(s, user="u", password="p", error_cb=error_cb)
        await nc.publish("foo.secret", b"x")
        await nc.flush()
        await asyncio.wait_for(got_err.wait(), 3)
        # nats-py lower-cases the server's text
        assert errors == ["nats: permissions violation for publish to \"foo.secret\""]
        got_err.clear()
        await nc.subscribe("bar")
        await nc.flush()
        await asyncio.wait_for(got_err.wait(), 3)
        assert errors[-1] == "nats: permissions violation for subscription to \"bar\""
        assert nc.is_connected
        await nc.close()

        c = await raw(
            s,
            b'CONNECT {"verbose":false,"user":"u","pass":"p"}\r\nSUB q.x 3\r\nSUB q.x grp 4\r\n'
            b"SUB q.x other 5\r\nSUB foo.* 6\r\nPUB foo.hidden 1\r\nh\r\nPUB foo.shown 1\r\ns\r\nPING\r\n",
        )
        assert await c.read_until(b"PONG\r\n") == (
            b"-ERR 'Permissions Violation for Subscription to \"q.x\"'\r\n"
            b"-ERR 'Permissions Violation for Subscription to \"q.x\" using queue \"other\"'\r\n"
            b"MSG foo.shown 6 1\r\ns\r\nPONG\r\n"
        )
        await c.close()


async def test_allow_responses() -> None:
    responder = Permissions(
        subscribe=SubjectPermission(allow=("svc",)),
        allow_responses=ResponsePermission(max_msgs=1, expires=60.0),
    )
    async with running(auth=users(User("svc", "p", permissions=responder), User("cli", "p"))) as s:
        bob = await raw(s, b'CONNECT {"verbose":false,"user":"svc","pass":"p"}\r\nSUB svc 1\r\nPING\r\n')
        await bob.read_until(b"PONG\r\n")
        nc = await connect(s, user="cli", password="p")
        reply_sub = await nc.subscribe("resp.1")
        await nc.publish("svc", b"req", reply="resp.1")
        await nc.flush()
        assert await bob.read_until(b"req\r\n") == b"MSG svc 1 resp.1 3\r\nreq\r\n"
        await bob.send(b"PUB resp.1 2\r\nok\r\nPUB resp.1 2\r\nno\r\nPUB other 1\r\nx\r\nPING\r\n")
        assert await bob.read_until(b"PONG\r\n") == (
            b"-ERR 'Permissions Violation for Publish to \"resp.1\"'\r\n"
            b"-ERR 'Permissions Violation for Publish to \"other\"'\r\nPONG\r\n"
        )
        assert (await reply_sub.next_msg(timeout=2)).data == b"ok"
        await nc.close()
        await bob.close()


async def test_default_permissions_and_connection_types() -> None:
    default = Permissions(publish=SubjectPermission(deny=("nope",)))
    auth = users(
        User("a", "p"),
        User("b", "p", permissions=Permissions()),
        User("leaf", "p", allowed_connection_types=("LEAFNODE",)),
        default_permissions=default,
    )
    async with running(auth=auth) as s:
        c = await raw(s, b'CONNECT {"verbose":false,"user":"a","pass":"p"}\r\nPUB nope 0\r\n\r\nPING\r\n')
        assert await c.read_until(b"PONG\r\n") == b"-ERR 'Permissions Violation for Publish to \"nope\"'\r\nPONG\r\n"
        await c.close()
        c = await raw(s, b'CONNECT {"verbose":false,"user":"b","pass":"p"}\r\nPUB nope 0\r\n\r\nPING\r\n')
        assert await c.read_until(b"PONG\r\n") == b"PONG\r\n"
        await c.close()
        c = await raw(s, b'CONNECT {"verbose":false,"user":"leaf","pass":"p"}\r\n')
        assert await c.expect_eof() == AUTH_ERR


async def test_account_fields_rejected() -> None:
    async with running() as s:
        c = await raw(s, b'CONNECT {"account":"A"}\r\n')
        assert await c.expect_eof() == AUTH_ERR


async def test_reload_users() -> None:
    auth = users(User("keep", "p"), User("gone", "p"), User("pw", "old"))
    async with running(auth=auth) as s:
        keep = await raw(s, b'CONNECT {"verbose":false,"user":"keep","pass":"p"}\r\nSUB a 1\r\nSUB b 2\r\nPING\r\n')
        gone = await raw(s, b'CONNECT {"verbose":false,"user":"gone","pass":"p"}\r\nPING\r\n')
        pw = await raw(s, b'CONNECT {"verbose":false,"user":"pw","pass":"old"}\r\nPING\r\n')
        for c in (keep, gone, pw):
            await c.read_until(b"PONG\r\n")
        restricted = Permissions(subscribe=SubjectPermission(allow=("a",)))
        new_auth = users(User("keep", "p", permissions=restricted), User("pw", "new"))
        s.reload(replace(s.opts, auth=new_auth))
        assert await gone.expect_eof() == b""
        assert await pw.expect_eof() == AUTH_ERR
        assert await keep.read_line() == b"-ERR 'Permissions Violation for Subscription to \"b\" (sid \"2\")'\r\n"
        assert s.sublist.count() == 1
        await keep.close()
        nc = await connect(s, user="pw", password="new")
        await nc.close()
