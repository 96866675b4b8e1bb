"""The generator's self-check peer: a trivial "server" that does as little as possible, so a
run against it shows the load generator's own ceiling on this machine.

Every connection first gets an INFO line, then TLS if asked. Modes:
- discard: read and drop everything; a read that ends in PING gets a PONG (our clients send
  PING last and wait, so it always ends a read); asyncio (uvloop when installed);
- echo: answer each PUB frame with one pre-built MSG frame on the same connection (the
  requester's round-trip floor; no responder process involved); asyncio as well;
- blast (one thread per connection): connections that subscribed are registered; a plain
  control connection sending ``BLAST <ms> <count> <size,size,...>`` makes the sink send the
  MSG frames of ``load.Block(sizes)`` to all of them, for <ms> milliseconds or <count> frames,
  and answers ``SENT <count> <t0>`` (subscriber ceiling).

Run as ``python -m bench.sink --port P --mode discard|echo|blast [--tls none|tls|mtls --certs DIR]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import ssl
import threading
import time
from typing import cast

from bench.load import INBOX, INBOX_SID, Block, msg_frame

PING, PONG = b"PING\r\n", b"PONG\r\n"


class SinkProtocol(asyncio.Protocol):
    """Plain discard and echo: the least work a peer can do per read."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.transport: asyncio.Transport | None = None
        self.tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a registered subclass
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # asyncio skips this for sockets from a listener made with proto 0
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.write(self.sink.info)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        if len(data) < 6:  # a PING (or PUB) cut across reads
            data = self.tail + data
        out = self.sink.answer(data, self.tail)
        if out:
            self.transport.write(out)
        self.tail = data[-5:]


class Sink:
    def __init__(self, mode: str, payload: int, tls: ssl.SSLContext | None) -> None:
        self.mode, self.payload, self.tls = mode, payload, tls
        self.subscribers: list[socket.socket] = []
        self.lock = threading.Lock()
        info = {"server_id": "BENCHSINK", "server_name": "sink", "version": "0.0.0", "proto": 1,
                "host": "127.0.0.1", "port": 0, "headers": True, "max_payload": 1 << 20,
                "tls_required": tls is not None}
        self.info = b"INFO " + json.dumps(info, separators=(",", ":")).encode() + b" \r\n"
        self.reply = msg_frame(payload, INBOX, INBOX_SID)

    def answer(self, data: bytes | bytearray, tail: bytes) -> bytes:
        """What to send back for one read (``tail``: the previous read's last 5 bytes)."""
        out = b""
        if self.mode == "echo":
            # The requester sends one request and waits, so frames rarely straddle reads; the
            # 3+3 bytes around a cut catch the ones that do.
            pubs = data.count(b"PUB ") + (tail[-3:] + bytes(data[:3])).count(b"PUB ")
            out = self.reply * pubs
        if data.endswith(PING):
            out += PONG
        return out

    async def serve_async(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: SinkProtocol(self), sock=listener)
        async with server:
            await server.serve_forever()

    def serve(self, listener: socket.socket) -> None:
        if self.mode != "blast" and self.tls is None:
            try:
                import uvloop
                uvloop.run(self.serve_async(listener))
            except ImportError:
                asyncio.run(self.serve_async(listener))
            return
        # Blast and TLS: a blocking thread per connection. (Blocking ssl handshakes are also
        # much cheaper here than asyncio's TLS, and uvloop's start_tls() sometimes stalls.)
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn: socket.socket) -> None:
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.sendall(self.info)
            if self.mode == "blast" and conn.recv(5, socket.MSG_PEEK) == b"BLAST":
                self.blast(conn)
            else:
                if self.tls is not None:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                if self.pump(conn):
                    return  # a blast subscriber: the blast thread owns it now
        except (OSError, ValueError):
            pass
        conn.close()

    def pump(self, conn: socket.socket) -> bool:
        """Serve a connection until EOF (False) or, in blast mode, until it subscribed (True)."""
        buf = bytearray(1 << 20)
        tail = b""
        while True:
            n = conn.recv_into(buf)
            if not n:
                return False
            data = memoryview(buf)[:n] if n >= 6 else tail + bytes(buf[:n])
            out = self.answer(bytes(data[-6:]) if self.mode != "echo" else bytes(data), tail)
            tail = bytes(data[-5:])
            if out:
                conn.sendall(out)
            if out and self.mode == "blast":
                # Subscribed: stop reading, so only the blast thread touches the connection
                # (an SSL object must not be used by two threads at once).
                with self.lock:
                    self.subscribers.append(conn)
                return True

    def blast(self, control: socket.socket) -> None:
        line = b""
        while not line.endswith(b"\r\n"):
            chunk = control.recv(256)
            if not chunk:
                return
            line += chunk
        _, ms, count, sizes = line.split()
        blk = Block([int(z) for z in sizes.split(b",")])
        k, block = blk.count, blk.msg
        with self.lock:
            targets = list(self.subscribers)
        now = time.perf_counter
        t0 = now()
        sent = 0
        limit = int(count)
        deadline = t0 + int(ms) / 1000
        while (sent + k <= limit) if limit else (now() < deadline):
            for s in targets:
                s.sendall(block)
            sent += k
        if limit and sent < limit:
            rest = blk.msg_prefix(limit - sent)
            for s in targets:
                s.sendall(rest)
            sent = limit
        control.sendall(b"SENT %d %r\r\n" % (sent, t0))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.sink")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--mode", choices=("discard", "echo", "blast"), default="discard")
    ap.add_argument("--payload", type=int, default=128)
    ap.add_argument("--tls", choices=("none", "tls", "mtls"), default="none")
    ap.add_argument("--certs", help="directory written by bench.certs.make_certs")
    a = ap.parse_args(argv)
    ctx = None
    if a.tls != "none":
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=os.path.join(a.certs, "ca.pem"))
        ctx.load_cert_chain(os.path.join(a.certs, "server-cert.pem"), os.path.join(a.certs, "server-key.pem"))
        ctx.verify_mode = ssl.CERT_REQUIRED if a.tls == "mtls" else ssl.CERT_NONE
    listener = socket.create_server(("127.0.0.1", a.port), backlog=1024)
    try:
        Sink(a.mode, a.payload, ctx).serve(listener)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
