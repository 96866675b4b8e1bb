"""Core server behaviour with an in-process Server on a random loopback port: nats-py clients
for pub/sub semantics, raw sockets where the exact bytes matter."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import nats
import nats.errors
import pytest
from tests.helpers.rawclient import AsyncRawClient

from pynatsd.config.options import ServerOptions
from pynatsd.server import Server

HOST = "127.0.0.1"


@contextlib.asynccontextmanager
async def running(**kw: Any) -> AsyncIterator[Server]:
    """An in-process server on a random loopback port with options ``kw``."""
    opts = ServerOptions(host=HOST, port=-1, **kw)
    server = Server(opts)
    await server.start()
    try:
        yield server
    finally:
        await server.shutdown()


async def raw(server: Server, connect: bytes | None = b'CONNECT {"verbose":false}\r\n') -> AsyncRawClient:
    c = await AsyncRawClient.open(HOST, server.port)
    c.info = await c.read_info()
    if connect is not None:
        await c.send(connect)
    return c


async def wait_for(cond: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def connect(server: Server, **kw: Any) -> nats.NATS:
    kw.setdefault("allow_reconnect", False)
    return await nats.connect(f"nats://{HOST}:{server.port}", **kw)


async def collect(n: int, sub: Any, timeout: float = 3.0) -> list[Any]:
    out = []
    for _ in range(n):
        out.append(await sub.next_msg(timeout=timeout))
    return out


# -- pub/sub semantics through nats-py -----------------------------------------------------------


async def test_pub_sub_and_wildcards() -> None:
    async with running() as s:
        nc = await connect(s)
        exact = await nc.subscribe("foo.bar")
        star = await nc.subscribe("foo.*")
        full = await nc.subscribe("foo.>")
        other = await nc.subscribe("bar")
        await nc.publish("foo.bar", b"one")
        await nc.publish("foo.bar.baz", b"two")
        await nc.flush()
        assert [m.data for m in await collect(1, exact)] == [b"one"]
        assert [m.data for m in await collect(1, star)] == [b"one"]
        assert [(m.subject, m.data) for m in await collect(2, full)] == [("foo.bar", b"one"), ("foo.bar.baz", b"two")]
        with pytest.raises(nats.errors.TimeoutError):
            await other.next_msg(timeout=0.1)
        assert s.stats.in_msgs == 2 and s.stats.out_msgs == 4
        await nc.close()


async def test_queue_group_distribution() -> None:
    async with running() as s:
        nc = await connect(s)
        got: Counter[str] = Counter()
        plain: list[bytes] = []

        def member(name: str) -> Callable[[Any], Awaitable[None]]:
            async def cb(msg: Any) -> None:
                got[name] += 1

            return cb

        await nc.subscribe("work", queue="q", cb=member("a"))
        await nc.subscribe("work", queue="q", cb=member("b"))
        await nc.subscribe("work", queue="other", cb=member("c"))

        async def plain_cb(msg: Any) -> None:
            plain.append(msg.data)

        await nc.subscribe("work", cb=plain_cb)
        await nc.flush()
        pub = await connect(s)
        for i in range(200):
            await pub.publish("work", str(i).encode())
        await pub.flush()
        await wait_for(lambda: len(plain) == 200 and got["a"] + got["b"] == 200 and got["c"] == 200)
        # each group gets exactly one copy; random start index spreads the load
        assert got["a"] > 40 and got["b"] > 40
        await pub.close()
        await nc.close()


async def test_request_reply_and_headers() -> None:
    async with running() as s:
        nc = await connect(s)

        async def responder(msg: Any) -> None:
            await msg.respond(b"re:" + msg.data + (msg.headers or {}).get("X-A", "").encode())

        await nc.subscribe("svc", cb=responder)
        resp = await nc.request("svc", b"hi", timeout=2, headers={"X-A": "b"})
        assert resp.data == b"re:hib"
        sub = await nc.subscribe("h")
        await nc.publish("h", b"payload", headers={"K": "v1"})
        msg = await sub.next_msg(timeout=2)
        assert msg.data == b"payload" and msg.headers == {"K": "v1"}
        await nc.close()


async def test_no_responders() -> None:
    async with running() as s:
        nc = await connect(s)
        with pytest.raises(nats.errors.NoRespondersError):
            await nc.request("nobody.home", b"x", timeout=2)
        await nc.close()


async def test_echo_false() -> None:
    async with running() as s:
        nc = await connect(s, no_echo=True)
        other = await connect(s)
        mine = await nc.subscribe("e")
        theirs = await other.subscribe("e")
        await other.flush()
        await nc.publish("e", b"1")
        await nc.flush()
        assert (await theirs.next_msg(timeout=2)).data == b"1"
        with pytest.raises(nats.errors.TimeoutError):
            await mine.next_msg(timeout=0.2)
        await nc.close()
        await other.close()


async def test_auto_unsubscribe() -> None:
    async with running() as s:
        nc = await connect(s)
        sub = await nc.subscribe("a")
        await sub.unsubscribe(limit=2)  # UNSUB <sid> 2 on the wire
        await nc.flush()
        for i in range(5):
            await nc.publish("a", str(i).encode())
        await nc.flush()
        await wait_for(lambda: s.sublist.count() == 0)
        assert s.stats.out_msgs == 2
        assert [m.data for m in await collect(2, sub)] == [b"0", b"1"]
        await nc.close()


async def test_drain_delivers_pending_messages() -> None:
    async with running() as s:
        nc = await connect(s)
        seen: list[bytes] = []

        async def slow(msg: Any) -> None:
            await asyncio.sleep(0.001)
            seen.append(msg.data)

        await nc.subscribe("d", cb=slow)
        await nc.flush()
        pub = await connect(s)
        for i in range(50):
            await pub.publish("d", str(i).encode())
        await pub.flush()
        await wait_for(lambda: s.stats.out_msgs == 50)
        await nc.drain()
        assert seen == [str(i).encode() for i in range(50)]
        await wait_for(lambda: s.sublist.count() == 0)
        await pub.close()


async def test_max_payload_client_and_raw() -> None:
    async with running(max_payload=16) as s:
        nc = await connect(s)
        assert nc.max_payload == 16
        with pytest.raises(nats.errors.MaxPayloadError):
            await nc.publish("x", b"y" * 17)
        await nc.close()
        c = await raw(s)
        assert c.info is not None and c.info["max_payload"] == 16
        await c.send(b"PUB x 16\r\n" + b"z" * 16 + b"\r\nPUB x 17\r\n")
        assert await c.expect_eof() == b"-ERR 'Maximum Payload Violation'\r\n"
        await wait_for(lambda: len(s.closed_clients) >= 2)
        assert s.closed_clients[-1].reason == "Maximum Message Payload Exceeded"


async def test_max_connections() -> None:
    async with running(max_connections=2) as s:
        a = await raw(s)
        b = await raw(s)
        c = await AsyncRawClient.open(HOST, s.port)
        info = await c.read_info()
        assert info["client_id"] > 0
        assert await c.expect_eof() == b"-ERR 'maximum connections exceeded'\r\n"
        assert len(s.clients) == 2
        assert s.closed_clients[-1].reason == "Maximum Connections Exceeded"
        for x in (a, b, c):
            await x.close()


async def test_stale_connection() -> None:
    async with running(ping_interval=0.2, ping_max=2) as s:
        c = await raw(s, b'CONNECT {"verbose":false}\r\n')
        # never answers PONG: PING, PING, then Stale Connection
        got = await c.expect_eof(timeout=5)
        assert got == b"PING\r\nPING\r\n-ERR 'Stale Connection'\r\n"
        await wait_for(lambda: len(s.closed_clients) == 1)
        assert s.closed_clients[0].reason == "Stale Connection"


async def test_pong_keeps_connection_alive() -> None:
    async with running(ping_interval=0.15, ping_max=1) as s:
        c = await raw(s)
        for _ in range(4):
            await c.read_until(b"PING\r\n", timeout=3)
            await c.send(b"PONG\r\n")
        assert not c.eof and len(s.clients) == 1
        client = next(iter(s.clients.values()))
        assert client.rtt is not None and client.rtt >= 0
        await c.close()


async def test_slow_consumer_isolated() -> None:
    """A subscriber that never reads is dropped (pending bytes) while a reading one gets all."""
    async with running(max_pending=4 * 1024 * 1024) as s:
        # the stuck subscriber: tiny receive buffer and it never reads
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((HOST, s.port))
        sock.sendall(b'CONNECT {"verbose":false}\r\nSUB big 1\r\nPING\r\n')
        good = await connect(s)
        received = 0
        done = asyncio.Event()
        total = 20000

        async def cb(msg: Any) -> None:
            nonlocal received
            received += 1
            if received == total:
                done.set()

        await good.subscribe("big", cb=cb, pending_msgs_limit=total + 1)
        await good.flush()
        await wait_for(lambda: s.sublist.count() == 2)
        pub = await connect(s)
        payload = b"x" * 1024
        for i in range(total):
            await pub.publish("big", payload)
            if i % 500 == 499:
                await pub.flush()  # bursts well below max_pending for the subscriber that reads
        await pub.flush()
        await asyncio.wait_for(done.wait(), 20)
        await wait_for(lambda: s.stats.slow_consumers == 1)
        reasons = [c.reason for c in s.closed_clients]
        assert reasons == ["Slow Consumer (Pending Bytes)"]
        assert good.is_connected
        sock.close()
        await pub.close()
        await good.close()


async def test_write_deadline_slow_consumer() -> None:
    async with running(write_deadline=0.3) as s:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((HOST, s.port))
        sock.sendall(b'CONNECT {"verbose":false}\r\nSUB big 1\r\nPING\r\n')
        await wait_for(lambda: s.sublist.count() == 1)
        pub = await connect(s)
        payload = b"x" * 4096
        # enough to fill the socket buffers and the transport's high-water mark, well below max_pending
        for _ in range(3000):
            await pub.publish("big", payload)
        await pub.flush()
        await wait_for(lambda: len(s.closed_clients) == 1, timeout=5)
        assert s.closed_clients[0].reason == "Slow Consumer (Write Deadline)"
        assert s.stats.slow_consumers == 1
        sock.close()
        await pub.close()


# -- exact bytes with raw sockets -----------------------------------------------------------------


async def test_info_fields_and_order() -> None:
    async with running(server_name="srv") as s:
        c = await AsyncRawClient.open(HOST, s.port)
        line = await c.read_line()
        assert line.startswith(b'INFO {"server_id":"N') and line.endswith(b"} \r\n")
        info = json.loads(line[5:-3])
        keys = list(info)
        assert keys[:3] == ["server_id", "server_name", "version"]
        assert keys.index("go") < keys.index("host") < keys.index("port") < keys.index("headers")
        assert keys.index("max_payload") < keys.index("client_id") < keys.index("client_ip")
        assert info["server_name"] == "srv" and len(info["server_id"]) == 56
        assert info["port"] == s.port and info["proto"] == 1 and info["headers"] is True
        assert "auth_required" not in info and "tls_required" not in info
        await c.close()


async def test_verbose_ok_before_self_delivery_and_pedantic() -> None:
    async with running() as s:
        c = await raw(s, b"CONNECT {}\r\nSUB foo.* 1\r\nPUB foo.bar 5\r\nhello\r\nPUB foo.* 2\r\nhi\r\nPING\r\n")
        got = await c.read_until(b"PONG\r\n")
        assert got == (
            b"+OK\r\n+OK\r\n+OK\r\nMSG foo.bar 1 5\r\nhello\r\n"
            b"-ERR 'Invalid Publish Subject'\r\n+OK\r\nMSG foo.* 1 2\r\nhi\r\nPONG\r\n"
        )
        await c.close()


async def test_sizes_verbatim_and_headers_stripped() -> None:
    async with running() as s:
        hdr = await raw(s, b'CONNECT {"verbose":false,"headers":true}\r\nSUB foo 1\r\n')
        plain = await raw(s, b'CONNECT {"verbose":false}\r\nSUB foo 9\r\nPING\r\n')
        await plain.read_until(b"PONG\r\n")
        await hdr.send(b"HPUB foo r.1 18 23\r\nNATS/1.0\r\nA: B\r\n\r\nhello\r\nPUB foo 05\r\nabcde\r\nPING\r\n")
        assert await hdr.read_until(b"PONG\r\n") == (
            b"HMSG foo 1 r.1 18 23\r\nNATS/1.0\r\nA: B\r\n\r\nhello\r\nMSG foo 1 05\r\nabcde\r\nPONG\r\n"
        )
        await plain.send(b"PING\r\n")
        assert await plain.read_until(b"PONG\r\n") == b"MSG foo 9 r.1 5\r\nhello\r\nMSG foo 9 05\r\nabcde\r\nPONG\r\n"
        await hdr.close()
        await plain.close()


async def test_no_responders_bytes() -> None:
    async with running() as s:
        c = await raw(
            s,
            b'CONNECT {"verbose":false,"headers":true,"no_responders":true}\r\n'
            b"SUB _INBOX.* 1\r\nPUB req _INBOX.x 0\r\n\r\nPING\r\n",
        )
        assert await c.read_until(b"PONG\r\n") == (
            b"HMSG _INBOX.x 1 35 35\r\nNATS/1.0 503\r\nNats-Subject: req\r\n\r\n\r\nPONG\r\n"
        )
        await c.close()


async def test_connect_errors() -> None:
    async with running() as s:
        c = await raw(s, b'CONNECT {"protocol":2}\r\n')
        assert await c.expect_eof() == b"-ERR 'invalid client protocol'\r\n"
        c = await raw(s, b'CONNECT {"no_responders":true}\r\n')
        assert await c.expect_eof() == b"-ERR 'no responders requires headers support'\r\n"
        c = await raw(s, b'CONNECT {"verbose":"yes"}\r\n')
        assert await c.expect_eof() == b""
        c = await raw(s, b'CONNECT {"Verbose":false,"PEDANTIC":false}\r\nPUB foo.* 0\r\n\r\nPING\r\n')
        assert await c.read_until(b"PONG\r\n") == b"PONG\r\n"
        await c.close()
        reasons = [x.reason for x in s.closed_clients]
        assert reasons[:3] == ["Bad Client Protocol Version", "No Responders Requires Headers", "Protocol Violation"]


async def test_sub_checks() -> None:
    async with running(max_subscriptions=2, max_sub_tokens=3) as s:
        c = await raw(
            s,
            b"CONNECT {}\r\nSUB a 1\r\nSUB a 1\r\nSUB x _sys_ 2\r\nSUB a.b.c.d 3\r\n"
            b"SUB foo. 4\r\nSUB b 5\r\nSUB c 6\r\nPING\r\n",
        )
        got = await c.read_until(b"PONG\r\n")
        assert got == (
            b"+OK\r\n+OK\r\n+OK\r\n"
            b"-ERR 'Permissions Violation for Subscription to \"x\" using queue \"_sys_\"'\r\n"
            b"-ERR 'Permissions Violation for Subscription to \"a.b.c.d\", too many tokens'\r\n"
            b"-ERR 'Invalid Subject'\r\n+OK\r\n-ERR 'maximum subscriptions exceeded'\r\nPONG\r\n"
        )
        assert set(next(iter(s.clients.values())).subs) == {b"1", b"5"}
        await c.close()


async def test_reserved_subjects() -> None:
    async with running() as s:
        c = await raw(
            s,
            b'CONNECT {"verbose":false}\r\nSUB > 1\r\nPUB _GR_.x 0\r\n\r\nPUB $NRG.x 0\r\n\r\n'
            b"PUB a _R_.x 0\r\n\r\nPUB b $JS.ACK.y 0\r\n\r\nPUB ok 0\r\n\r\nPING\r\n",
        )
        assert await c.read_until(b"PONG\r\n") == (
            b"-ERR 'Permissions Violation for Publish to \"_GR_.x\"'\r\n"
            b"-ERR 'Permissions Violation for Publish to \"$NRG.x\"'\r\n"
            b"-ERR 'Permissions Violation for Publish with Reply of \"_R_.x\"'\r\n"
            b"-ERR 'Permissions Violation for Publish with Reply of \"$JS.ACK.y\"'\r\n"
            b"MSG ok 1 0\r\n\r\nPONG\r\n"
        )
        await c.close()


async def test_unsub_max_and_async_info() -> None:
    async with running() as s:
        c = await raw(
            s,
            b'CONNECT {"verbose":false,"protocol":1}\r\nSUB foo 1\r\nUNSUB 1 2\r\n'
            b"PUB foo 1\r\na\r\nPUB foo 1\r\nb\r\nPUB foo 1\r\nc\r\nPING\r\n",
        )
        got = await c.read_until(b"PONG\r\n")
        assert got == b"MSG foo 1 1\r\na\r\nMSG foo 1 1\r\nb\r\nPONG\r\n"
        info = json.loads((await c.read_line())[5:-3])
        assert info["connect_info"] is True and info["remote_account"] == "$G"
        await c.send(b"PING\r\n")
        assert await c.read_until(b"PONG\r\n") == b"PONG\r\n"
        assert s.sublist.count() == 0
        await c.close()


async def test_parser_errors_close() -> None:
    async with running() as s:
        c = await raw(s, b"SUB foo 1\r\nMSG foo 1 0\r\n")
        assert await c.expect_eof() == b"+OK\r\n-ERR 'Unknown Protocol Operation'\r\n"
        c = await raw(s, b"-ERR 'boom'\r\n")
        assert await c.expect_eof() == b""
        await wait_for(lambda: len(s.closed_clients) == 2)
        assert [x.reason for x in s.closed_clients] == ["Protocol Violation", "Parse Error"]


async def test_client_close_reason_and_registry() -> None:
    async with running() as s:
        c = await raw(s)
        await c.send(b"PING\r\n")
        await c.read_until(b"PONG\r\n")
        assert len(s.clients) == 1 and s.stats.total_connections == 1
        await c.close()
        await wait_for(lambda: len(s.clients) == 0)
        assert s.closed_clients[0].reason == "Client Closed"


async def test_lame_duck_mode() -> None:
    async with running(lame_duck_grace_period=0.1, lame_duck_duration=0.5) as s:
        c = await raw(s, b'CONNECT {"verbose":false,"protocol":1}\r\nPING\r\n')
        await c.read_until(b"PONG\r\n")
        await c.read_line()  # async INFO
        task = s.lame_duck()
        line = await c.read_line()
        assert json.loads(line[5:-3])["ldm"] is True
        await c.expect_eof()
        await asyncio.wait_for(task, 5)
        assert not s.running
        assert s.closed_clients[-1].reason == "Server Shutdown"
        with pytest.raises(OSError):
            await asyncio.open_connection(HOST, s.port)


async def test_shutdown_closes_clients() -> None:
    s = Server(ServerOptions(host=HOST, port=-1))
    await s.start()
    nc_closed = asyncio.Event()

    async def closed_cb() -> None:
        nc_closed.set()

    nc = await connect(s, closed_cb=closed_cb)
    await s.shutdown()
    await asyncio.wait_for(nc_closed.wait(), 5)
    assert nc.is_closed


async def test_reload_max_payload_and_connections() -> None:
    async with running() as s:
        a = await raw(s)
        b = await raw(s)
        await a.send(b"PING\r\n")
        await a.read_until(b"PONG\r\n")
        s.reload(replace(s.opts, max_payload=8, max_connections=1))
        # one of the two is trimmed with the max connections error
        await wait_for(lambda: len(s.clients) == 1)
        closed = a if not any(x.port == a.writer.get_extra_info("sockname")[1] for x in s.clients.values()) else b
        assert await closed.expect_eof() == b"-ERR 'maximum connections exceeded'\r\n"
        alive = b if closed is a else a
        await alive.send(b"PUB x 9\r\n123456789\r\n")
        assert await alive.expect_eof() == b"-ERR 'Maximum Payload Violation'\r\n"


def test_server_id_and_xkey_encoding() -> None:
    import base64
    import binascii
    import secrets

    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from pynatsd.server import make_server_id, make_xkey, x25519_public

    for _ in range(20):
        k = secrets.token_bytes(32)
        want = X25519PrivateKey.from_private_bytes(k).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        assert x25519_public(k) == want
    for key, prefix in ((make_server_id(), "N"), (make_xkey(), "X")):
        assert len(key) == 56 and key[0] == prefix
        raw = base64.b32decode(key)
        assert binascii.crc_hqx(raw[:-2], 0).to_bytes(2, "little") == raw[-2:]


async def test_write_deadline_spares_a_slow_reader_that_makes_progress() -> None:
    async with running(write_deadline=0.3) as s:
        reader, writer = await asyncio.open_connection(HOST, s.port)
        writer.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        await reader.readline()
        writer.write(b'CONNECT {"verbose":false}\r\nSUB big 1\r\nPING\r\n')
        assert await reader.readuntil(b"PONG\r\n") == b"PONG\r\n"
        total = 3000
        payload = b"x" * 4096
        want = total * len(b"MSG big 1 4096\r\n" + payload + b"\r\n")
        got = 0

        async def slow_read() -> None:
            nonlocal got
            while got < want:
                chunk = await reader.read(128 * 1024)
                assert chunk, "closed by the server"
                got += len(chunk)
                await asyncio.sleep(0.02)  # about 6 MB/s: slower than the publisher

        task = asyncio.create_task(slow_read())
        pub = await connect(s)
        for i in range(total):
            await pub.publish("big", payload)
            if i % 250 == 249:
                await pub.flush()
        await pub.flush()
        await asyncio.wait_for(task, 20)
        assert s.stats.slow_consumers == 0 and not s.closed_clients
        writer.close()
        await pub.close()


def test_log_format_options() -> None:
    import logging
    import os
    import re
    from datetime import UTC, datetime

    from pynatsd.log import TRACE, NatsFormatter, level_tag

    rec = logging.LogRecord("pynatsd", logging.WARNING, __file__, 1, "hello %s", ("x",), None)
    assert NatsFormatter(logtime=False).format(rec) == f"[{os.getpid()}] [WRN] hello x"
    line = NatsFormatter(logtime=True, utc=True).format(rec)
    m = re.fullmatch(r"\[\d+\] (\d{4}/\d\d/\d\d \d\d:\d\d:\d\d)\.\d{6} \[WRN\] hello x", line)
    assert m is not None
    stamp = datetime.strptime(m.group(1), "%Y/%m/%d %H:%M:%S").replace(tzinfo=UTC)
    assert abs((stamp - datetime.fromtimestamp(rec.created, UTC)).total_seconds()) < 1.5
    assert [level_tag(lv) for lv in (TRACE, logging.DEBUG, logging.INFO, logging.ERROR, logging.CRITICAL)] == [
        "TRC",
        "DBG",
        "INF",
        "ERR",
        "FTL",
    ]
