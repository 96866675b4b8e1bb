"""ClientParser options for the connection's hot path: with `runs` on, runs of PUBs with one
control line come as OP_PUBS ops, which must stand for exactly the OP_PUB ops the parser gives
with runs off, however the stream is cut; `stop_after_connect` holds what follows a CONNECT."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pynatsd.protocol.parser import (
    OP_CLOSE,
    OP_CONNECT,
    OP_HPUB,
    OP_PING,
    OP_PUB,
    OP_PUBS,
    ClientParser,
    expand_pubs,
)

UNKNOWN = (OP_CLOSE, "Unknown Protocol Operation", "Protocol Violation")
MAXPAY = (OP_CLOSE, "Maximum Payload Violation", "Maximum Message Payload Exceeded")


def feed(data: bytes, *, runs: bool, cuts: list[int] | tuple[int, ...] = (), **kw: int) -> list[tuple]:
    p = ClientParser(**kw)
    p.headers = True
    p.runs = runs
    ops: list[tuple] = []
    prev = 0
    for c in [*cuts, len(data)]:
        ops += p.feed(data[prev:c])
        prev = c
    return ops


def flat(ops: list[tuple]) -> list[tuple]:
    out: list[tuple] = []
    for op in ops:
        out += expand_pubs(op) if op[0] == OP_PUBS else [op]
    return out


def check(data: bytes, cuts: list[int] | tuple[int, ...] = (), **kw: int) -> list[tuple]:
    """Runs on and off agree; returns the ops with runs on."""
    with_runs = feed(data, runs=True, cuts=cuts, **kw)
    assert flat(with_runs) == feed(data, runs=False, cuts=cuts, **kw)
    return with_runs


def kinds(ops: list[tuple]) -> list[int | tuple[int, int]]:
    return [(OP_PUBS, op[6]) if op[0] == OP_PUBS else op[0] for op in ops]


def test_off_by_default() -> None:
    p = ClientParser()
    assert p.runs is False
    assert kinds(p.feed(b"PUB a 1\r\nx\r\n" * 10)) == [OP_PUB] * 10


def test_uniform_stream_is_one_run() -> None:
    ops = check(b"PUB foo 5\r\nhello\r\n" * 100)
    assert kinds(ops) == [(OP_PUBS, 100)]
    op = ops[0]
    assert op[1:5] == (b"foo", b"", b"5", b"PUB foo 5\r\n")
    assert op[5] == b"PUB foo 5\r\nhello\r\n" * 100


def test_run_with_reply_and_different_payloads() -> None:
    data = b"".join(b"PUB foo bar.r 3\r\n%03d\r\n" % i for i in range(50))
    ops = check(data)
    assert kinds(ops) == [(OP_PUBS, 50)]
    assert ops[0][2] == b"bar.r"
    assert [o[4] for o in expand_pubs(ops[0])] == [b"%03d" % i for i in range(50)]


def test_short_runs_stay_single_ops() -> None:
    assert kinds(check(b"PUB a 1\r\nx\r\n" * 3 + b"PING\r\n")) == [OP_PUB] * 3 + [OP_PING]


def test_payloads_may_hold_crlf_and_the_control_line() -> None:
    payloads = [b"PUB a 11\r\nx", b"\r\n\r\n\r\n\r\n\r\nx", b"xxxxxxxxxxx"]
    assert {len(p) for p in payloads} == {11}
    frames = [b"PUB a 11\r\n" + p + b"\r\n" for p in payloads]
    ops = check(b"".join(frames * 20))
    assert kinds(ops) == [(OP_PUBS, 60)]


def test_runs_break_where_the_line_changes() -> None:
    data = b"PUB a 1\r\nx\r\n" * 10 + b"PUB b 1\r\nx\r\n" * 10 + b"PUB a 2\r\nxy\r\n" * 10 + b"PING\r\n"
    data += b"PUB a 1\r\nx\r\n" * 10
    assert kinds(check(data)) == [(OP_PUBS, 10)] * 3 + [OP_PING, (OP_PUBS, 10)]


def test_bad_terminator_inside_a_run_closes_after_the_good_frames() -> None:
    good = b"PUB a 3\r\nabc\r\n"
    ops = check(good * 10 + b"PUB a 3\r\nabcX\n" + good * 10)
    assert flat(ops) == [(OP_PUB, b"a", b"", b"3", b"abc")] * 10 + [UNKNOWN]
    assert kinds(ops)[0] == (OP_PUBS, 10)


def test_only_canonical_lines_make_runs() -> None:
    for line in (b"pub a 1", b"PUB  a 1", b"PUB a  1", b"PUB\ta 1", b"PUB a 1 ", b"PUB a 01"):
        data = (line + b"\r\nx\r\n") * 10
        ops = check(data)
        if line == b"PUB a 01":  # leading zeros are still canonical: kept verbatim
            assert kinds(ops) == [(OP_PUBS, 10)]
        else:
            assert OP_PUBS not in [op[0] for op in ops]


def test_max_payload_is_not_bypassed() -> None:
    data = b"PUB a 5\r\nhello\r\n" * 10
    assert check(data, max_payload=4) == [MAXPAY]
    assert kinds(check(data, max_payload=5)) == [(OP_PUBS, 10)]


def test_expect_connect_is_not_bypassed() -> None:
    p = ClientParser()
    p.runs = True
    p.expect_connect = True
    assert p.feed(b"PUB a 1\r\nx\r\n" * 10) == [(OP_CLOSE, "Authorization Violation", "Authentication Failure")]


def test_runs_after_partial_frames_and_general_ops() -> None:
    data = b"PING\r\n" + b"PUB a 3\r\nabc\r\n" * 20 + b"sub a 1\r\n" + b"PUB a 3\r\nabc\r\n" * 20
    for cut in range(0, len(data), 7):
        check(data, cuts=[cut])


_FRAMES = [
    b"PUB a 3\r\nabc\r\n",
    b"PUB a 3\r\nPUB\r\n",
    b"PUB a 3\r\n\r\n\r\r\n",
    b"PUB a r 3\r\nxyz\r\n",
    b"PUB b 0\r\n\r\n",
    b"PING\r\n",
    b"SUB a 1\r\n",
    b"pub a 3\r\nabc\r\n",
    b"PUB a 3\r\nabcPING\r\n",
    b"PUB a 3\r\nab\rx\n",
    b"HPUB a 12 15\r\nNATS/1.0\r\n\r\nabc\r\n",
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.sampled_from(_FRAMES), st.integers(1, 12)), min_size=1, max_size=8),
    st.lists(st.integers(0, 10_000), max_size=4),
)
def test_random_streams_agree_with_runs_off(parts: list[tuple[bytes, int]], cuts: list[int]) -> None:
    data = b"".join(frame * n for frame, n in parts)
    check(data, cuts=sorted({c % (len(data) + 1) for c in cuts}))


# --- stop_after_connect (not about runs, but about what a chunk holds after CONNECT) ---------


def test_stop_after_connect_holds_the_rest_of_the_chunk() -> None:
    p = ClientParser()
    p.stop_after_connect = True
    data = b'CONNECT {"headers":true}\r\nHPUB a 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPING\r\n'
    ops = p.feed(data)
    assert ops == [(OP_CONNECT, b'{"headers":true}')]
    assert p.held
    p.headers = True  # what the connection does when it applies the CONNECT
    assert p.feed(b"") == [(OP_HPUB, b"a", b"", b"12", b"14", 12, b"NATS/1.0\r\n\r\nhi"), (OP_PING,)]
    assert not p.held
    assert p.feed(b"") == []


def test_stop_after_connect_without_headers_closes_silently_on_hpub() -> None:
    p = ClientParser(max_payload=4)
    p.stop_after_connect = True
    assert [op[0] for op in p.feed(b"CONNECT {}\r\nHPUB a 12 99\r\nNATS/1.0\r\n\r\nhi\r\n")] == [OP_CONNECT]
    # headers not negotiated: the oversized HPUB closes silently, not with a max_payload -ERR
    assert p.feed(b"") == [(OP_CLOSE, None, "Protocol Violation")]
    assert not p.held


def test_stop_after_connect_hold_and_partial_ops() -> None:
    p = ClientParser()
    p.stop_after_connect = True
    assert [op[0] for op in p.feed(b"CONNECT {}\r\nPI")] == [OP_CONNECT]
    p.hold(b"NG\r\nPUB a 1\r\n")
    assert p.feed(b"x\r\n") == [(OP_PING,), (OP_PUB, b"a", b"", b"1", b"x")]
    assert [op[0] for op in p.feed(b"CONNECT {}\r\n")] == [OP_CONNECT]
    assert not p.held  # nothing after it
    assert p.feed(b"PING\r\n") == [(OP_PING,)]
