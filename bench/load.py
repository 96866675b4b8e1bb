"""The load generator: raw-socket NATS clients in separate processes, built not to be the
bottleneck.

Publishers send one pre-built buffer of many identical PUB frames with ``sendall`` over and
over (about 512 KiB per write) and finish with PING, awaiting PONG, so the server has read
everything. Subscribers never parse: every delivered frame has the same size, so they
``recv_into`` one reusable buffer and count bytes; the message count is bytes / frame size, and
"done" is N * frame size bytes, checked exactly at the end (the one thing tolerated on top is
the server's RTT PING, 6 bytes; anything else the server sends breaks the count and is reported). Progress goes to shared memory; the orchestrator polls it. All processes share
CLOCK_MONOTONIC (time.perf_counter), so rates run from the first send to the last receive.

The request/reply responder does parse (it needs the reply subject), but answers one request
per round trip, which costs it nothing measurable next to the round trip itself.
"""

from __future__ import annotations

import array
import json
import multiprocessing as mp
import multiprocessing.sharedctypes
import os
import queue as queue_mod
import resource
import signal
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

from bench.certs import CertFiles

SUBJECT = b"bench.s"
SUB_SID = b"1"
REQ_SUBJECT = b"bench.req"
INBOX = b"bench.inbox"
INBOX_SID = b"2"
QUEUE = b"q4"
WRITE_TARGET = 512 * 1024   # bytes per sendall of the pre-built buffer
RECV_BUF = 1 << 20
PING = b"PING\r\n"

_ctx = mp.get_context("fork")
_CLK_TCK = os.sysconf("SC_CLK_TCK")


class LoadError(RuntimeError):
    """A run did not complete as expected (server error, lost messages, stalled delivery)."""


# -- frames ----------------------------------------------------------------------------------
def payload_bytes(size: int) -> bytes:
    # A filler no sink scan can mistake for PING or PUB.
    return b"x" * size


def pub_frame(size: int, subject: bytes = SUBJECT, reply: bytes = b"") -> bytes:
    head = b"PUB " + subject + (b" " + reply if reply else b"") + b" %d\r\n" % size
    return head + payload_bytes(size) + b"\r\n"


def msg_header(size: int, subject: bytes = SUBJECT, sid: bytes = SUB_SID) -> bytes:
    return b"MSG " + subject + b" " + sid + b" %d\r\n" % size


def msg_frame(size: int, subject: bytes = SUBJECT, sid: bytes = SUB_SID) -> bytes:
    return msg_header(size, subject, sid) + payload_bytes(size) + b"\r\n"


def frames_per_write(frame_len: int) -> int:
    return max(1, WRITE_TARGET // frame_len)


def indexed_payload(i: int, size: int) -> bytes:
    """Frame i's payload: its index in hex, then filler, so a checker can tell frames apart."""
    return ((b"%08x" % i) + b"x" * size)[:size]


class Block:
    """The publisher's pre-built write: about 512 KiB of PUB frames on one subject, the sizes
    cycling through ``sizes``, each payload distinct (its index within the block). The MSG
    frames a subscriber gets are known from it: byte counts for any number of messages, and
    what each delivered frame must look like."""

    def __init__(self, sizes: list[int], subject: bytes = SUBJECT, sid: bytes = SUB_SID) -> None:
        self.sizes, self.subject, self.sid = list(sizes), subject, sid
        mean = sum(len(pub_frame(z, subject)) for z in self.sizes) / len(self.sizes)
        k = frames_per_write(int(mean))
        k = max(len(self.sizes), k - k % len(self.sizes))
        self.count = k
        self.payloads = [indexed_payload(i, self.sizes[i % len(self.sizes)]) for i in range(k)]
        self.pub = b"".join(b"PUB " + subject + b" %d\r\n" % len(p) + p + b"\r\n" for p in self.payloads)
        self.msg_lens = [len(msg_header(len(p), subject, sid)) + len(p) + 2 for p in self.payloads]
        self.msg = b"".join(msg_header(len(p), subject, sid) + p + b"\r\n" for p in self.payloads)

    def pub_prefix(self, n: int) -> bytes:
        """The PUB frames of the block's first n messages (a run's remainder)."""
        return b"".join(b"PUB " + self.subject + b" %d\r\n" % len(p) + p + b"\r\n" for p in self.payloads[:n])

    def msg_prefix(self, n: int) -> bytes:
        return self.msg[:sum(self.msg_lens[:n])]

    def delivered_bytes(self, msgs: int) -> int:
        """Bytes of MSG frames for the first ``msgs`` messages of a run of repeated blocks."""
        whole, rest = divmod(msgs, self.count)
        return whole * len(self.msg) + sum(self.msg_lens[:rest])

    def check(self, data: bytes | bytearray, in_order: bool = True, limit: int = 65536) -> str | None:
        """Check the MSG frames in (the first ``limit`` bytes of) a received chunk, from the
        first frame start on: subject, sid, size and payload must be ones we published, the
        payload the one its index names, and (``in_order``: a subscriber that gets every
        message) each the one after the last. Returns what is wrong, or None."""
        last = -1
        pos = data.find(b"MSG ")
        if pos < 0:
            return None  # inside a large payload
        head = b"MSG " + self.subject + b" " + self.sid + b" "
        end = min(len(data), pos + limit)
        while pos < end:
            if data[pos:pos + len(PING)] == PING:
                pos += len(PING)
                continue
            eol = data.find(b"\r\n", pos, pos + 64)
            if eol < 0:
                return None if len(data) - pos < 64 else f"no control line at {bytes(data[pos:pos + 40])!r}"
            if data[pos:pos + len(head)] != head:
                return f"unexpected frame {bytes(data[pos:eol])!r}"
            try:
                size = int(data[pos + len(head):eol])
            except ValueError:
                return f"bad size in {bytes(data[pos:eol])!r}"
            start, stop = eol + 2, eol + 2 + size
            if stop + 2 > len(data):
                return None
            payload = bytes(data[start:stop])
            if data[stop:stop + 2] != b"\r\n":
                return f"frame of {size} bytes not followed by CRLF"
            if size >= 8:
                try:
                    i = int(payload[:8], 16)
                except ValueError:
                    return f"payload not ours: {payload[:16]!r}"
                if i >= self.count or self.payloads[i] != payload:
                    return f"payload {payload[:16]!r}... ({size} bytes) is not message {i}'s"
                if in_order and last >= 0 and i != (last + 1) % self.count:
                    return f"message {i} after message {last}"
                last = i
            elif size not in self.sizes:
                return f"size {size} never published"
            pos = stop + 2
        return None


def mixed_sizes(payload: int) -> list[int]:
    """Eight sizes from half to one and a half times ``payload``, averaging ``payload``."""
    return [max(1, payload * k // 8) for k in (4, 5, 6, 7, 9, 10, 11, 12)]


# -- connections -----------------------------------------------------------------------------
@dataclass(frozen=True)
class TLSSpec:
    """What a client needs for TLS: the mode ("none", "tls", "mtls") and the files."""
    mode: str = "none"
    certs: CertFiles | None = None

    def client_context(self) -> ssl.SSLContext | None:
        if self.mode == "none":
            return None
        assert self.certs is not None
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.certs.ca_file)
        if self.mode == "mtls":
            ctx.load_cert_chain(self.certs.client_cert, self.certs.client_key)
        return ctx


Sock = socket.socket  # ssl.SSLSocket is a subclass


def _read_until(sock: Sock, marker: bytes, data: bytes = b"", limit: int = 1 << 16) -> bytes:
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise LoadError(f"connection closed while waiting for {marker!r}; got {data[:200]!r}")
        data += chunk
        if b"-ERR" in data:
            raise LoadError(f"server error: {data[data.index(b'-ERR'):][:200]!r}")
        if len(data) > limit:
            raise LoadError(f"no {marker!r} in {len(data)} bytes")
    return data


def connect_op(tls: bool, name: str) -> bytes:
    opts: dict[str, Any] = {"verbose": False, "pedantic": False, "tls_required": tls, "name": name,
                            "lang": "python-raw", "version": "0", "protocol": 1, "headers": False}
    return b"CONNECT " + json.dumps(opts, separators=(",", ":")).encode() + b"\r\n"


def nats_connect(port: int, ctx: ssl.SSLContext | None, *, name: str = "bench",
                 after_connect: bytes = b"", timeout: float | None = 30.0) -> Sock:
    """INFO -> (TLS) -> CONNECT [+ after_connect] -> PING -> PONG; returns the socket, blocking."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        info = _read_until(sock, b"\r\n")
        if not info.startswith(b"INFO "):
            raise LoadError(f"expected INFO, got {info[:100]!r}")
        if ctx is not None:
            sock = ctx.wrap_socket(sock, server_hostname="localhost")
        sock.sendall(connect_op(ctx is not None, name) + after_connect + b"PING\r\n")
        _read_until(sock, b"PONG\r\n")
        sock.settimeout(None)
        return sock
    except BaseException:
        sock.close()
        raise


def _linger() -> None:
    # Stay until the orchestrator has read our CPU time from /proc; it then terminates us.
    signal.pause()


# -- child processes -------------------------------------------------------------------------
# Children report on an events queue: ("ready", idx), ("error", idx, text), ("result", idx, data).

class _TLSReader:
    """TLS for a subscriber over memory BIOs: one socket read of up to 1 MiB, then every TLS
    record in it decrypted without further syscalls. (An ``SSLSocket`` returns one record per
    call and reads each with two syscalls; nats-server sends small records, so that would make
    the subscriber, not the server, the limit.)"""

    def __init__(self, port: int, ctx: ssl.SSLContext, name: str, after_connect: bytes) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        info = _read_until(self.sock, b"\r\n")
        if not info.startswith(b"INFO "):
            raise LoadError(f"expected INFO, got {info[:100]!r}")
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                self._fill()
        self.obj.write(connect_op(True, name) + after_connect + PING)
        self._flush()
        got = b""
        while b"PONG\r\n" not in got:
            try:
                got += self.obj.read(65536)
            except ssl.SSLWantReadError:
                self._fill()
            if b"-ERR" in got:
                raise LoadError(f"server error: {got[got.index(b'-ERR'):][:200]!r}")
        self.sock.settimeout(None)
        self.raw = bytearray(RECV_BUF)
        self.raw_view = memoryview(self.raw)

    def _flush(self) -> None:
        if self.outgoing.pending:
            self.sock.sendall(self.outgoing.read())

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise LoadError("connection closed during the TLS handshake")
        self.incoming.write(data)

    def recv_into(self, buf: bytearray) -> int:
        """Plaintext into ``buf`` from one socket read (0 at EOF); same size as the raw buffer,
        so it always fits."""
        view = memoryview(buf)
        read, write = self.obj.read, self.incoming.write
        while True:
            n = self.sock.recv_into(self.raw)
            if not n:
                return 0
            write(self.raw_view[:n])
            got = 0
            while True:
                try:
                    k = cast(int, read(len(buf) - got, view[got:]))  # with a buffer: a count
                except ssl.SSLWantReadError:
                    break
                except ssl.SSLZeroReturnError:
                    return got
                if not k:
                    break
                got += k
            if got:
                return got


def _subscriber(idx: int, port: int, tls: TLSSpec, sub_line: bytes, block: Block, in_order: bool,
                nbytes: Any, tlast: Any, events: Any) -> None:
    recv_into: Callable[[bytearray], int]
    try:
        ctx = tls.client_context()
        if ctx is None:
            recv_into = nats_connect(port, None, name=f"sub{idx}", after_connect=sub_line).recv_into
        else:
            recv_into = _TLSReader(port, ctx, f"sub{idx}", sub_line).recv_into
    except Exception as e:  # reported, the orchestrator decides
        events.put(("error", idx, f"subscriber connect: {e}"))
        return
    events.put(("ready", idx))
    buf = bytearray(RECV_BUF)
    now = time.perf_counter
    total = 0
    try:
        # Every 64th read (and the first) is checked frame by frame: cheap, and a server that
        # delivered the right number of bytes but the wrong frames cannot pass.
        n = recv_into(buf)
        reads = 0
        while n:
            total += n
            # The time first, then the count: whoever sees the count sees a time at least as
            # late. A read that is only the server's PING is not a delivery: no time for it.
            if n != len(PING) or buf[:n] != PING:
                tlast[idx] = now()
            nbytes[idx] = total
            if not reads & 63:
                problem = block.check(buf[:n], in_order)
                if problem:
                    events.put(("error", idx, f"subscriber {idx}: {problem}"))
            reads += 1
            n = recv_into(buf)
    except OSError as e:
        events.put(("closed", idx, f"{e!r} after {total} bytes"))
        return
    events.put(("closed", idx, f"EOF after {total} bytes"))


def _publisher(idx: int, port: int, tls: TLSSpec, blk: Block, duration: float, msgs: int,
               go: Any, events: Any) -> None:
    try:
        sock = nats_connect(port, tls.client_context(), name=f"pub{idx}")
        k = blk.count
        block = blk.pub
        tail = blk.pub_prefix(msgs % k) if msgs else b""
        events.put(("ready", idx))
        go.wait()
        sendall, now = sock.sendall, time.perf_counter
        t0 = now()
        sent = 0
        if msgs:
            for _ in range(msgs // k):
                sendall(block)
            if tail:
                sendall(tail)
            sent = msgs
        else:
            deadline = t0 + duration
            while now() < deadline:
                sendall(block)
                sent += k
        t_sent = now()
        sendall(b"PING\r\n")
        _read_until(sock, b"PONG\r\n")
        t_pong = now()
        events.put(("result", idx, {"t0": t0, "t_sent": t_sent, "t_pong": t_pong, "sent": sent}))
        sock.close()
    except Exception as e:
        events.put(("error", idx, f"publisher: {e!r}"))
    _linger()


def _responder(idx: int, port: int, tls: TLSSpec, size: int, events: Any) -> None:
    """Answers each MSG bench.req <sid> <reply> <size> with PUB <reply> <size> <payload>."""
    try:
        sock = nats_connect(port, tls.client_context(), name="responder",
                            after_connect=b"SUB " + REQ_SUBJECT + b" 1\r\n")
    except Exception as e:
        events.put(("error", idx, f"responder connect: {e}"))
        return
    events.put(("ready", idx))
    reply_tail = b" %d\r\n" % size + payload_bytes(size) + b"\r\n"
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return
            data += chunk
            out = []
            while True:
                eol = data.find(b"\r\n")
                if eol < 0:
                    break
                parts = data[:eol].split()
                if parts[0] == b"PING":
                    out.append(b"PONG\r\n")
                    data = data[eol + 2:]
                    continue
                if parts[0] != b"MSG" or len(parts) != 5:
                    data = data[eol + 2:]   # INFO updates, +OK: nothing to answer
                    continue
                end = eol + 2 + int(parts[4]) + 2
                if len(data) < end:
                    break
                out.append(b"PUB " + parts[3] + reply_tail)
                data = data[end:]
            if out:
                sock.sendall(b"".join(out))
    except OSError:
        return


def _requester(idx: int, port: int, tls: TLSSpec, size: int, duration: float, max_reqs: int,
               go: Any, events: Any) -> None:
    try:
        sock = nats_connect(port, tls.client_context(), name="requester",
                            after_connect=b"SUB " + INBOX + b" " + INBOX_SID + b"\r\n")
        request = pub_frame(size, REQ_SUBJECT, INBOX)
        want = len(msg_frame(size, INBOX, INBOX_SID))
        header = msg_header(size, INBOX, INBOX_SID)
        events.put(("ready", idx))
        go.wait()
        lat = array.array("d")
        now, sendall, recv = time.perf_counter, sock.sendall, sock.recv
        start = now()
        deadline = start + duration
        data = b""   # received, not yet consumed
        while True:
            t = now()
            if t >= deadline or (max_reqs and len(lat) >= max_reqs):
                break
            sendall(request)
            while True:
                # The server's own PING (nats-server sends one to learn the RTT) can only
                # come between frames: answer it and drop it.
                while data.startswith(PING):
                    data = data[len(PING):]
                    sendall(b"PONG\r\n")
                if len(data) >= want:
                    break
                chunk = recv(65536)
                if not chunk:
                    raise LoadError("connection closed during request")
                data += chunk
            lat.append(now() - t)
            if not data.startswith(header):
                raise LoadError(f"unexpected reply {data[:want + 10]!r}")
            data = data[want:]
        elapsed = now() - start
        events.put(("result", idx, {"lat": lat.tobytes(), "elapsed": elapsed}))
        sock.close()
    except Exception as e:
        events.put(("error", idx, f"requester: {e!r}"))
    _linger()


def _connector(idx: int, port: int, tls: TLSSpec, duration: float, max_conns: int,
               go: Any, events: Any) -> None:
    ctx = tls.client_context()
    events.put(("ready", idx))
    go.wait()
    now = time.perf_counter
    t0 = now()
    deadline = t0 + duration
    done = errors = 0
    first_error = ""
    while now() < deadline and not (max_conns and done >= max_conns):
        try:
            sock = nats_connect(port, ctx, name=f"conn{idx}", timeout=10.0)
            sock.close()
            done += 1
        except (OSError, LoadError) as e:
            errors += 1
            first_error = first_error or repr(e)
    events.put(("result", idx, {"t0": t0, "t1": now(), "done": done, "errors": errors,
                                "first_error": first_error}))
    _linger()


# -- orchestration ---------------------------------------------------------------------------
def _children_cpu() -> float:
    # Reaped children only: _Children.close() joins every process before reading this.
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class _Children:
    """Child processes plus their events queue; kills leftovers on exit."""

    def __init__(self) -> None:
        self.events: Any = _ctx.Queue()
        self.procs: list[Any] = []
        self.results: dict[int, Any] = {}
        self.closed: dict[int, str] = {}
        self._cpu0 = _children_cpu()
        self.cpu = 0.0   # the children's CPU seconds, known after close()

    def spawn(self, target: Callable[..., None], *args: Any) -> None:
        p = _ctx.Process(target=target, args=args, daemon=True)
        p.start()
        self.procs.append(p)

    def snapshot(self) -> tuple[float, list[float]]:
        """(wall time, CPU seconds of each child) for utilisation over a phase."""
        t = time.perf_counter()
        cpus = []
        for p in self.procs:
            try:
                with open(f"/proc/{p.pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                cpus.append((int(fields[11]) + int(fields[12])) / _CLK_TCK)
            except (OSError, IndexError, ValueError):
                cpus.append(float("nan"))
        return t, cpus

    @staticmethod
    def peak(a: tuple[float, list[float]], b: tuple[float, list[float]]) -> float:
        """The busiest child's share of one core between two snapshots."""
        wall = b[0] - a[0]
        shares = [(y - x) / wall for x, y in zip(a[1], b[1], strict=False) if y == y and x == x]
        return max(shares, default=0.0) if wall > 0 else 0.0

    def _handle(self, ev: tuple[Any, ...]) -> str:
        kind = ev[0]
        if kind == "error":
            raise LoadError(ev[2])
        if kind == "result":
            self.results[ev[1]] = ev[2]
        elif kind == "closed":
            self.closed[ev[1]] = ev[2]
        return str(kind)

    def wait_for(self, kind: str, count: int, timeout: float, alive: Callable[[], None]) -> None:
        seen = 0
        deadline = time.monotonic() + timeout
        while seen < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LoadError(f"timed out waiting for {count - seen} {kind!r} event(s)")
            try:
                ev = self.events.get(timeout=min(left, 0.5))
            except queue_mod.Empty:
                alive()
                continue
            if self._handle(ev) == kind:
                seen += 1

    def poll(self) -> None:
        while True:
            try:
                ev = self.events.get_nowait()
            except queue_mod.Empty:
                return
            self._handle(ev)

    def close(self) -> None:
        for p in self.procs:
            if p.is_alive():
                p.terminate()
        for p in self.procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
        self.events.close()
        self.events.join_thread()
        self.cpu = _children_cpu() - self._cpu0

    def __enter__(self) -> _Children:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Probe:
    """What the orchestrator may ask of the server under test during a run."""
    cpu_seconds: Callable[[], float]
    alive: Callable[[], None]


@dataclass
class PubSubResult:
    msgs: int            # messages published
    delivered: int       # messages received by all subscribers together
    elapsed: float       # first send -> last receive (or PONG for pub-only)
    server_cpu: float    # server CPU seconds during the run
    payload: int = 0     # payload bytes published
    gen_cpu: float = 0.0  # the generator's CPU seconds (its processes' whole lives)
    gen_peak: float = 0.0  # the busiest generator process's share of a core during the run

    @property
    def rate(self) -> float:
        return self.msgs / self.elapsed


def run_pubsub(port: int, probe: Probe, *, tls: TLSSpec, subs: int, queue: bool, sizes: list[int],
               duration: float, msgs: int = 0, blast: bool = False, stall: float = 10.0) -> PubSubResult:
    """One publisher (or, with ``blast``, the self-check sink itself) -> ``subs`` subscribers,
    payload sizes cycling through ``sizes``.

    Plain subscribers must each get every message; a queue group must get each message once.
    """
    blk = Block(sizes)
    sub_line = b"SUB " + SUBJECT + (b" " + QUEUE if queue else b"") + b" " + SUB_SID + b"\r\n"
    nbytes = multiprocessing.sharedctypes.RawArray("q", max(subs, 1))
    tlast = multiprocessing.sharedctypes.RawArray("d", max(subs, 1))
    with _Children() as ch:
        for i in range(subs):
            ch.spawn(_subscriber, i, port, tls, sub_line, blk, not queue, nbytes, tlast, ch.events)
        ch.wait_for("ready", subs, 30, probe.alive)
        go = _ctx.Event()
        if not blast:
            ch.spawn(_publisher, 100, port, tls, blk, duration, msgs, go, ch.events)
            ch.wait_for("ready", 1, 30, probe.alive)
        cpu0 = probe.cpu_seconds()
        snap0 = ch.snapshot()
        if blast:
            t0, sent = _trigger_blast(port, duration, msgs, sizes)
        else:
            go.set()
            ch.wait_for("result", 1, duration + 120, probe.alive)
            res = ch.results[100]
            t0, sent = res["t0"], res["sent"]
        if subs == 0:
            t_end = ch.results[100]["t_pong"]
            delivered = 0
        else:
            per_sub = blk.delivered_bytes(sent)
            await_delivery(lambda: list(nbytes), per_sub, queue, sent, ch, probe.alive, stall=stall)
            t_end = max(tlast)
            delivered = sent if queue else sent * subs
        cpu1 = probe.cpu_seconds()
        peak = ch.peak(snap0, ch.snapshot())
        probe.alive()
    whole, rest = divmod(sent, blk.count)
    payload = whole * sum(map(len, blk.payloads)) + sum(map(len, blk.payloads[:rest]))
    return PubSubResult(msgs=sent, delivered=delivered, elapsed=t_end - t0, server_cpu=cpu1 - cpu0,
                        payload=payload, gen_cpu=ch.cpu, gen_peak=peak)


def delivery_state(totals: list[int], per_sub: int, queue: bool) -> str:
    """Where the subscribers' byte counts stand against ``per_sub`` (the MSG bytes each plain
    subscriber, or the queue group together, must get): "done", "short" (bytes still to come)
    or "over" (more than the frames plus the PINGs the server may send: nats-server and
    pynatsd ping a new client once at about 2 s to learn the RTT, and a second time only
    2 minutes later, so at most 2 per subscriber). In a queue group one member's PING can
    make up for a frame tail still on its way to another, so "done" needs a quiet moment
    too (``await_delivery``)."""
    extras = [sum(totals) - per_sub] if queue else [t - per_sub for t in totals]
    limit = 2 * len(PING) * (len(totals) if queue else 1)
    if any(x > limit for x in extras):
        return "over"
    if any(x < 0 or x % len(PING) for x in extras):
        return "short"
    return "done"


class _Events(Protocol):
    closed: dict[int, str]

    def poll(self) -> None: ...


def await_delivery(read: Callable[[], list[int]], per_sub: int, queue: bool, sent: int, events: _Events,
                   alive: Callable[[], None], *, stall: float = 10.0, quiet: float = 0.05) -> list[int]:
    """Wait until the subscribers' byte counts (``read()``) are exactly what ``sent`` messages
    make and have not moved for ``quiet`` seconds; returns them. A shortfall that does not
    move for ``stall`` seconds (lost messages), more bytes than frames plus PINGs
    (duplicates, strangers) or a subscriber closed before the end is a ``LoadError``."""
    last: list[int] | None = None
    last_change = time.monotonic()
    while True:
        events.poll()
        totals = read()
        state = delivery_state(totals, per_sub, queue)
        if state == "over":
            raise LoadError(_count_problem(totals, per_sub, queue, sent))
        t = time.monotonic()
        if totals != last:
            last, last_change = totals, t
        elif state == "done" and t - last_change >= quiet:
            return totals
        if state != "done" and events.closed:
            raise LoadError(f"subscriber connection closed early: {events.closed}")
        if state != "done" and t - last_change > stall:
            if (sum(totals) if queue else min(totals)) < per_sub:
                frame_len = per_sub / sent if sent else 1
                got = [int(b // frame_len) for b in totals]
                raise LoadError(f"delivery stalled: subscribers got {got} of {sent} messages "
                                f"({totals} bytes of {'a total of ' if queue else ''}{per_sub})")
            raise LoadError(_count_problem(totals, per_sub, queue, sent))
        alive()
        time.sleep(0.005)


def _count_problem(totals: list[int], per_sub: int, queue: bool, sent: int) -> str:
    return (f"subscribers received {totals} bytes, expected {'a total of ' if queue else ''}{per_sub} "
            f"({sent} messages) plus at most 2 PINGs per subscriber")


def _trigger_blast(port: int, duration: float, msgs: int, sizes: list[int]) -> tuple[float, int]:
    """Self-check: ask the sink to blast MSG frames at its subscribers; returns (t0, count)."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        _read_until(s, b"\r\n")  # the sink's INFO
        s.sendall(b"BLAST %d %d %s\r\n" % (int(duration * 1000), msgs, b",".join(b"%d" % z for z in sizes)))
        line = _read_until(s, b"\r\n", limit=1 << 10)
        parts = line.split()
        if parts[0] != b"SENT":
            raise LoadError(f"sink said {line!r}")
        return float(parts[2]), int(parts[1])


@dataclass
class ReqRepResult:
    latencies: list[float]
    elapsed: float
    server_cpu: float
    gen_cpu: float = 0.0
    gen_peak: float = 0.0

    def percentile(self, p: float) -> float:
        s = sorted(self.latencies)
        return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def run_reqrep(port: int, probe: Probe, *, tls: TLSSpec, size: int, duration: float,
               max_reqs: int = 0, responder: bool = True) -> ReqRepResult:
    """Sequential requests from one requester to one responder, one at a time (latency)."""
    with _Children() as ch:
        if responder:
            ch.spawn(_responder, 0, port, tls, size, ch.events)
            ch.wait_for("ready", 1, 30, probe.alive)
        go = _ctx.Event()
        ch.spawn(_requester, 1, port, tls, size, duration, max_reqs, go, ch.events)
        ch.wait_for("ready", 1, 30, probe.alive)
        cpu0 = probe.cpu_seconds()
        snap0 = ch.snapshot()
        go.set()
        ch.wait_for("result", 1, duration + 120, probe.alive)
        cpu1 = probe.cpu_seconds()
        peak = ch.peak(snap0, ch.snapshot())
        res = ch.results[1]
    lat = array.array("d")
    lat.frombytes(res["lat"])
    if not lat:
        raise LoadError("no request completed")
    return ReqRepResult(latencies=list(lat), elapsed=res["elapsed"], server_cpu=cpu1 - cpu0, gen_cpu=ch.cpu, gen_peak=peak)


@dataclass
class ConnResult:
    conns: int
    errors: int
    elapsed: float
    server_cpu: float
    gen_cpu: float = 0.0
    gen_peak: float = 0.0

    @property
    def rate(self) -> float:
        return self.conns / self.elapsed


def run_connrate(port: int, probe: Probe, *, tls: TLSSpec, clients: int, duration: float,
                 max_conns: int = 0) -> ConnResult:
    """``clients`` processes each connecting one after another: INFO, TLS, CONNECT, PING/PONG, close."""
    with _Children() as ch:
        go = _ctx.Event()
        for i in range(clients):
            ch.spawn(_connector, i, port, tls, duration, max_conns, go, ch.events)
        ch.wait_for("ready", clients, 30, probe.alive)
        cpu0 = probe.cpu_seconds()
        snap0 = ch.snapshot()
        go.set()
        ch.wait_for("result", clients, duration + 120, probe.alive)
        cpu1 = probe.cpu_seconds()
        peak = ch.peak(snap0, ch.snapshot())
        res = list(ch.results.values())
    done = sum(r["done"] for r in res)
    errors = sum(r["errors"] for r in res)
    if errors > max(2, done // 100):
        first = next(r["first_error"] for r in res if r["first_error"])
        raise LoadError(f"{errors} of {done + errors} connections failed, first: {first}")
    if done == 0:
        raise LoadError("no connection completed")
    elapsed = max(r["t1"] for r in res) - min(r["t0"] for r in res)
    return ConnResult(conns=done, errors=errors, elapsed=elapsed, server_cpu=cpu1 - cpu0, gen_cpu=ch.cpu, gen_peak=peak)


# -- idle connections and subscriptions (memory) ---------------------------------------------
def open_idle(port: int, count: int, into: list[Sock]) -> None:
    """Open ``count`` more idle client connections: accepted one by one (so no listen backlog
    overflows), then CONNECT+PING to all, then every PONG read."""
    fresh: list[Sock] = []
    try:
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            fresh.append(s)
            _read_until(s, b"\r\n")
        op = connect_op(False, "idle") + b"PING\r\n"
        for s in fresh:
            s.sendall(op)
        for s in fresh:
            _read_until(s, b"PONG\r\n")
    finally:
        into.extend(fresh)


def subscribe_many(sock: Sock, count: int) -> None:
    """``count`` subscriptions on distinct subjects on one connection, confirmed by PING/PONG."""
    lines = b"".join(b"SUB bench.mem.%d %d\r\n" % (i, i + 1) for i in range(count))
    sock.sendall(lines + b"PING\r\n")
    _read_until(sock, b"PONG\r\n")
