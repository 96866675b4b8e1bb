"""Fixed-input microbenchmark of pynatsd's hot path (parser + ClientConnection + delivery + flush),
in-process with fake transports, no sockets. Helper S (speed).

    /work/main/.venv/bin/python /work/notes/speed_micro.py [scenario ...] [--iters N] [--reps R]

Prints CPU ns per published message (min over reps) per scenario. Scenarios: pub, 1to1, fanout4,
queue4, reqrep (1 requester PUB with reply -> responder sub; responder's PUB -> inbox), 64k,
pubmix / 1to1mix (4 subjects in turn, so no runs: the per-message path).
Use `--once SCENARIO` under valgrind/cProfile for a single fixed workload.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import os
sys.path.insert(0, os.environ.get("PYNATSD_SRC", "/work/main/src"))

from pynatsd.client import ClientConnection  # noqa: E402
from pynatsd.config.options import ServerOptions  # noqa: E402
from pynatsd.server import Server  # noqa: E402

CONNECT = b'CONNECT {"verbose":false,"pedantic":false,"tls_required":false,"name":"x","lang":"python-raw","version":"0","protocol":1,"headers":false}\r\nPING\r\n'


class FakeTransport:
    def __init__(self) -> None:
        self.n = 0
        self.writes = 0

    def write(self, data: Any) -> None:
        self.n += len(data)
        self.writes += 1

    def writelines(self, pieces: Any) -> None:
        for p in pieces:
            self.n += len(p)
        self.writes += 1

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return ("127.0.0.1", 5555)
        return default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def setup(loop: asyncio.AbstractEventLoop) -> Server:
    srv = Server(ServerOptions(port=-1, max_pending=1 << 40))
    srv.loop = loop
    srv.running = True
    return srv


def conn(srv: Server, extra: bytes = b"") -> tuple[ClientConnection, FakeTransport]:
    c = ClientConnection(srv)
    t = FakeTransport()
    c.connection_made(t)
    c.data_received(CONNECT + extra)
    srv._flush_dirty()
    return c, t


def chunks_of(frame: bytes, chunk: int = 65536) -> list[bytes]:
    """A stream of frames cut into `chunk`-byte reads (frames split across reads, as TCP does)."""
    k = max(1, (chunk * 8) // len(frame))
    stream = frame * k
    return [stream[i : i + chunk] for i in range(0, len(stream), chunk)], k  # type: ignore[return-value]


def build(name: str, loop: asyncio.AbstractEventLoop) -> tuple[Any, int]:
    """Returns (one_iteration callable, messages per iteration)."""
    srv = setup(loop)
    size = 65536 if name == "64k" else 128
    payload = b"x" * size
    frame = b"PUB bench.s %d\r\n" % size + payload + b"\r\n"
    if name in ("pub", "pubmix", "1to1mix", "sizemix"):
        nsub = 0
    elif name in ("1to1", "64k"):
        nsub = 1
    else:
        nsub = 4
    for i in range(nsub):
        q = b" q4" if name == "queue4" else b""
        conn(srv, b"SUB bench.s" + q + b" 1\r\nPING\r\n")
    if name == "reqrep":
        # requester sub on inbox; responder sub on bench.req; a chunk = one request / one reply
        req, _ = conn(srv, b"SUB bench.inbox 2\r\nPING\r\n")
        rsp, _ = conn(srv, b"SUB bench.req 1\r\nPING\r\n")
        rq = b"PUB bench.req bench.inbox %d\r\n" % size + payload + b"\r\n"
        rp = b"PUB bench.inbox %d\r\n" % size + payload + b"\r\n"

        def one_rr() -> None:
            for _ in range(200):
                req.data_received(rq)
                srv._flush_dirty()
                rsp.data_received(rp)
                srv._flush_dirty()

        return one_rr, 200
    if name == "sizemix":
        # bench's 1to1-mix: one subject, sizes cycling through 8 values from 64 to 192 B
        conn(srv, b"SUB bench.s 1\r\nPING\r\n")
        sizes = [64 + 18 * i for i in range(8)]
        frame = b"".join(b"PUB bench.s %d\r\n" % z + b"y" * z + b"\r\n" for z in sizes)
        pub, _ = conn(srv)
        chunks, k = chunks_of(frame, 65536)
        dr2 = pub.data_received
        fl2 = srv._flush_dirty

        def one_sizes() -> None:
            for ch in chunks:
                dr2(ch)
                fl2()

        return one_sizes, k * 8
    if name in ("pubmix", "1to1mix"):
        # consecutive PUBs differ (4 subjects in turn): no runs, the per-message path
        if name == "1to1mix":
            conn(srv, b"SUB bench.* 1\r\nPING\r\n")
        frame = b"".join(b"PUB bench.%d %d\r\n" % (i, size) + payload + b"\r\n" for i in range(4))
        pub, _ = conn(srv)
        chunks, k = chunks_of(frame, 65536)
        dr = pub.data_received
        fl = srv._flush_dirty

        def one_mix() -> None:
            for ch in chunks:
                dr(ch)
                fl()

        return one_mix, k * 4
    pub, _ = conn(srv)
    chunks, k = chunks_of(frame, 262144 if name == "64k" else 65536)
    dr = pub.data_received
    fl = srv._flush_dirty

    def one() -> None:
        for ch in chunks:
            dr(ch)
            fl()

    return one, k


def main() -> None:
    args = sys.argv[1:]
    iters, reps = 20, 7
    once = None
    names: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--iters":
            iters = int(args[i + 1])
            i += 2
            continue
        if a == "--reps":
            reps = int(args[i + 1])
            i += 2
            continue
        if a == "--once":
            once = args[i + 1]
            i += 2
            continue
        names.append(a)
        i += 1
    import uvloop

    loop = uvloop.new_event_loop()
    if once:
        fn, _ = build(once, loop)
        for _ in range(iters):
            fn()
        return
    for name in names or ["pub", "1to1", "fanout4", "queue4", "reqrep", "64k", "pubmix", "1to1mix", "sizemix"]:
        fn, per = build(name, loop)
        fn()
        best = float("inf")
        for _ in range(reps):
            t0 = time.process_time()
            for _ in range(iters):
                fn()
            best = min(best, (time.process_time() - t0) / (iters * per))
        print(f"{name:8s} {best * 1e9:9.0f} ns/msg")


if __name__ == "__main__":
    main()
