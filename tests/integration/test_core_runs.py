"""Runs of same-line PUBs (delivered as a whole by pynatsd's fast path) against the real
nats-server: the same bytes in must give the same messages out, in the same order per
connection, in every case the fast path treats specially (fan-out, wildcards, two subscriptions
on one connection, echo, auto-unsubscribe, verbose, a bad frame inside a run, queue groups)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tests.helpers.rawclient import RawClient
from tests.helpers.servers import ServerProcess

Frame = tuple[bytes, ...]
CONNECT = b'CONNECT {"verbose":false,"pedantic":false}\r\n'


def parse_stream(data: bytes) -> list[Frame]:
    """Server output as frames: MSG (subject, sid, reply, payload), other lines as themselves.
    Server PINGs (RTT measurement, timing-dependent) are left out."""
    out: list[Frame] = []
    pos = 0
    while pos < len(data):
        eol = data.index(b"\r\n", pos)
        line = data[pos:eol]
        pos = eol + 2
        if line.startswith(b"MSG "):
            args = line.split(b" ")[1:]
            size = int(args[-1])
            reply = args[2] if len(args) == 4 else b""
            out.append((b"MSG", args[0], args[1], reply, data[pos : pos + size]))
            assert data[pos + size : pos + size + 2] == b"\r\n"
            pos += size + 2
        elif line != b"PING":
            out.append((line,))
    return out


def client(srv: ServerProcess, setup: bytes = b"", connect: bytes = CONNECT) -> RawClient:
    c = RawClient(srv.host, srv.port, timeout=20.0)
    c.read_info()
    c.send(connect + setup)
    c.ping()
    c.cursor = len(c.received)
    return c


def settle(c: RawClient) -> list[Frame]:
    """Everything the server sent this client until a PING round trip (PONG left out)."""
    try:
        got = c.ping()
    except EOFError:  # the server closed this connection
        return parse_stream(c.expect_eof()) + [(b"<EOF>",)]
    frames = parse_stream(got)
    assert frames[-1] == (b"PONG",)
    return frames[:-1]


def run_case(
    srv: ServerProcess, subs: Sequence[bytes], publish: bytes, *, connect: bytes = CONNECT, pub_setup: bytes = b""
) -> list[list[Frame]]:
    """Subscriber connections (one per entry of ``subs``: its SUB/UNSUB lines), then a publisher
    that sends ``publish`` in one write; returns what each subscriber, then the publisher, got."""
    receivers = [client(srv, s) for s in subs]
    pub = client(srv, pub_setup, connect=connect)
    try:
        pub.send(publish)
        got_pub = settle(pub)
        return [settle(c) for c in receivers] + [got_pub]
    finally:
        for c in [*receivers, pub]:
            c.close()


def both(server_factory: Callable[..., ServerProcess], case: Callable[[ServerProcess], object]) -> object:
    results = [case(server_factory(impl)) for impl in ("nats", "pynatsd")]
    assert results[1] == results[0]
    return results[1]


def frames(line: bytes, payloads: Sequence[bytes]) -> bytes:
    return b"".join(line + b"\r\n" + p + b"\r\n" for p in payloads)


SEQ = [b"%06d" % i for i in range(300)]
# payloads holding the run's own control line, CR LFs, a MSG line and op names
TRICKY = [b"PUB foo.bar 20\r\nabcd", b"\r\n" * 10, b"MSG foo.bar 1 20\r\nxy", b"PING\r\nPUB\r\n\r\nxxxxxxx"] * 25
assert {len(p) for p in TRICKY} == {20}


def test_one_subscriber_tricky_payloads(server_factory: Callable[..., ServerProcess]) -> None:
    blob = frames(b"PUB foo.bar 6", SEQ) + frames(b"PUB foo.bar 20", TRICKY)
    blob += frames(b"PUB foo.bar reply.x 6", SEQ[:50])
    got = both(server_factory, lambda s: run_case(s, [b"SUB foo.bar 1\r\n"], blob))
    assert isinstance(got, list) and [f[4] for f in got[0]] == SEQ + TRICKY + SEQ[:50]


def test_fan_out_literal_and_wildcards(server_factory: Callable[..., ServerProcess]) -> None:
    subs = [b"SUB foo.bar 1\r\n", b"SUB foo.* 7\r\n", b"SUB > 3\r\n", b"SUB foo.bar 1\r\n"]
    blob = frames(b"PUB foo.bar 6", SEQ) + b"PING\r\n" + frames(b"PUB foo.baz 6", SEQ[:40])
    both(server_factory, lambda s: run_case(s, subs, blob))


def test_two_subscriptions_on_one_connection_interleave(server_factory: Callable[..., ServerProcess]) -> None:
    subs = [b"SUB foo.bar 1\r\nSUB foo.* 2\r\n", b"SUB foo.bar q 1\r\nSUB foo.bar q 2\r\n"]
    blob = frames(b"PUB foo.bar 6", SEQ)

    def case(s: ServerProcess) -> object:
        got = run_case(s, subs, blob)
        # the queue group's two members share a connection: which member gets a message is
        # random, but the connection's stream is still in publish order
        q = got[1]
        assert [f[4] for f in q] == SEQ
        return [got[0], got[2]]

    both(server_factory, case)


def test_echo_on_and_off(server_factory: Callable[..., ServerProcess]) -> None:
    blob = frames(b"PUB foo.bar 6", SEQ[:100])
    for connect in (CONNECT, b'CONNECT {"verbose":false,"pedantic":false,"echo":false}\r\n'):

        def case(s: ServerProcess, connect: bytes = connect) -> object:
            return run_case(s, [b"SUB foo.bar 1\r\n"], blob, connect=connect, pub_setup=b"SUB foo.* 9\r\n")

        both(server_factory, case)


def test_auto_unsubscribe_inside_a_run(server_factory: Callable[..., ServerProcess]) -> None:
    subs = [b"SUB foo.bar 1\r\nUNSUB 1 7\r\n", b"SUB foo.* 1\r\n"]
    got = both(server_factory, lambda s: run_case(s, subs, frames(b"PUB foo.bar 6", SEQ[:100])))
    assert isinstance(got, list) and len(got[0]) == 7


def test_verbose_publisher_gets_ok_per_message(server_factory: Callable[..., ServerProcess]) -> None:
    connect = b'CONNECT {"verbose":true,"pedantic":false}\r\n'
    got = both(
        server_factory,
        lambda s: run_case(s, [b"SUB foo.bar 1\r\n"], frames(b"PUB foo.bar 6", SEQ[:60]), connect=connect),
    )
    assert isinstance(got, list) and got[1] == [(b"+OK",)] * 60


def test_bad_frame_inside_a_run(server_factory: Callable[..., ServerProcess]) -> None:
    blob = frames(b"PUB foo.bar 6", SEQ[:20]) + b"PUB foo.bar 6\r\n123456XY" + frames(b"PUB foo.bar 6", SEQ[:20])
    got = both(server_factory, lambda s: run_case(s, [b"SUB foo.bar 1\r\n"], blob))
    assert isinstance(got, list) and len(got[0]) == 20
    assert got[1] == [(b"-ERR 'Unknown Protocol Operation'",), (b"<EOF>",)]


def test_large_stream_over_many_reads_and_queue_group(server_factory: Callable[..., ServerProcess]) -> None:
    payloads = [b"%08d" % i + b"z" * 120 for i in range(20000)]  # 2.9 MB: many socket reads
    blob = frames(b"PUB big.s 128", payloads)
    subs = [b"SUB big.s 1\r\n", b"SUB big.* 1\r\n", b"SUB big.s g 1\r\n", b"SUB big.s g 1\r\n", b"SUB big.s g 1\r\n"]

    def case(s: ServerProcess) -> object:
        got = run_case(s, subs, blob)
        members = got[2:5]
        # each queue member's share arrives in publish order; together they got every message once
        for share in members:
            seq = [f[4] for f in share]
            assert seq == sorted(seq)
        assert sorted(f[4] for share in members for f in share) == payloads
        assert all(members)  # 20000 random picks leave no member empty
        return [got[0], got[1], got[5]]

    got = both(server_factory, case)
    assert isinstance(got, list) and [f[4] for f in got[0]] == payloads


# --- what follows CONNECT in the same chunk is parsed with the CONNECT applied ----------------

HPUB_AFTER_CONNECT = [
    b"HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPING\r\n",
    b'CONNECT {"verbose":false}\r\nHPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPING\r\n',
    b'CONNECT {"verbose":false}\r\nHPUB foo 12 99999999\r\nNATS/1.0\r\n\r\nhi\r\nPING\r\n',
    b'CONNECT {"verbose":false}\r\nHPUB foo 12 14\r\nNATS/1.0\r\n\r\nhiXX\r\nPING\r\n',
    b'CONNECT {"verbose":false,"headers":true}\r\nHPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPING\r\n',
    b'CONNECT {"verbose":false,"headers":true}\r\nHPUB foo 12 99999999\r\nNATS/1.0\r\n\r\nhi\r\nPING\r\n',
]


def test_hpub_in_the_chunk_of_its_connect(server_factory: Callable[..., ServerProcess]) -> None:
    def case(s: ServerProcess) -> object:
        out = []
        for data in HPUB_AFTER_CONNECT:
            with RawClient(s.host, s.port, timeout=10.0) as c:
                c.read_info()
                c.send(data)
                try:
                    got = c.read_until(b"PONG\r\n")
                except EOFError:
                    got = c.expect_eof() + b"<EOF>"
                out.append(got)
        return out

    got = both(server_factory, case)
    assert isinstance(got, list) and got[0] == b"<EOF>" and got[4] == b"PONG\r\n"


# --- streams without runs (sizes vary): the per-message path and its same-subject shortcut ---

MIXED = [b"%05d" % i + b"m" * (i % 7) for i in range(400)]


def mixed(subject: bytes, payloads: Sequence[bytes]) -> bytes:
    return b"".join(b"PUB %s %d\r\n%s\r\n" % (subject, len(p), p) for p in payloads)


def test_mixed_sizes_one_subscriber(server_factory: Callable[..., ServerProcess]) -> None:
    blob = mixed(b"foo.bar", MIXED) + mixed(b"foo.baz", MIXED[:20]) + mixed(b"foo.bar", MIXED[:20])
    got = both(server_factory, lambda s: run_case(s, [b"SUB foo.bar 1\r\n", b"SUB foo.* 2\r\n"], blob))
    assert isinstance(got, list) and [f[4] for f in got[0]] == MIXED + MIXED[:20]


def test_mixed_sizes_with_subscriptions_changing_mid_stream(server_factory: Callable[..., ServerProcess]) -> None:
    # the publisher subscribes (echo on) and unsubscribes between PUBs of one subject, and
    # publishes to a subject nobody wants before someone does
    blob = (
        mixed(b"foo.bar", MIXED[:30])
        + b"SUB foo.bar 5\r\n"
        + mixed(b"foo.bar", MIXED[30:60])
        + b"UNSUB 5\r\n"
        + mixed(b"foo.bar", MIXED[60:90])
        + mixed(b"nobody", MIXED[:30])
        + b"SUB nobody 6\r\nUNSUB 6 3\r\n"
        + mixed(b"nobody", MIXED[:30])
    )
    got = both(server_factory, lambda s: run_case(s, [b"SUB foo.bar 1\r\nUNSUB 1 50\r\n"], blob))
    assert isinstance(got, list) and len(got[0]) == 50
    assert [f[4] for f in got[1]] == MIXED[30:60] + MIXED[:3]


def test_interleaved_subjects_with_subscriptions_changing(server_factory: Callable[..., ServerProcess]) -> None:
    def interleaved(payloads: Sequence[bytes]) -> bytes:
        return b"".join(mixed(b"foo.%d" % (i % 3), [p]) for i, p in enumerate(payloads))

    blob = (
        interleaved(MIXED[:60])
        + b"SUB foo.2 8\r\n"  # the publisher (echo on) now wants a subject nobody wanted
        + interleaved(MIXED[60:120])
        + b"UNSUB 8\r\nSUB foo.0 9 \r\nUNSUB 9 4\r\n"
        + interleaved(MIXED[120:180])
    )
    # single plain subscriptions only (the per-subject shortcut), foo.2 wanted by nobody at first
    subs = [b"SUB foo.0 1\r\n", b"SUB foo.1 1\r\n", b"SUB bar.> 1\r\n"]
    got = both(server_factory, lambda s: run_case(s, subs, blob))
    assert isinstance(got, list) and len(got[0]) == 60 and len(got[1]) == 60 and got[2] == []
    assert [f[4] for f in got[3]] == [p for i, p in enumerate(MIXED[60:120], 60) if i % 3 == 2] + [
        p for i, p in enumerate(MIXED[120:180], 120) if i % 3 == 0
    ][:4]
