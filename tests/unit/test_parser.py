"""Unit tests for pynatsd.protocol.parser.ClientParser (client wire protocol, sans-IO)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pynatsd.protocol.parser import (
    OP_CLOSE,
    OP_CONNECT,
    OP_ERR,
    OP_HPUB,
    OP_INFO,
    OP_OK,
    OP_PING,
    OP_PONG,
    OP_PUB,
    OP_SUB,
    OP_UNSUB,
    ClientParser,
    OpTable,
    parse_size,
    split_blanks,
    split_whitespace,
)

UNKNOWN = (OP_CLOSE, "Unknown Protocol Operation", "Protocol Violation")
SILENT = (OP_CLOSE, None, "Protocol Violation")
MCL = (OP_CLOSE, "maximum control line exceeded", "Maximum Control Line Exceeded")
MAXPAY = (OP_CLOSE, "Maximum Payload Violation", "Maximum Message Payload Exceeded")
AUTH = (OP_CLOSE, "Authorization Violation", "Authentication Failure")


class SlowParser(ClientParser):
    """The same parser with the piece-walking fast path off (general path only)."""

    fast_path = False


def parse(data: bytes, *, headers: bool = False, slow: bool = False, **kw: int) -> list[tuple]:
    p = (SlowParser if slow else ClientParser)(**kw)
    p.headers = headers
    return p.feed(data)


def both(data: bytes, **kw) -> list[tuple]:
    """Parse with and without the fast path; they must agree."""
    fast = parse(data, **kw)
    slow = parse(data, slow=True, **kw)
    assert fast == slow
    return fast


def bytewise(data: bytes, **kw) -> list[tuple]:
    headers = kw.pop("headers", False)
    p = ClientParser(**kw)
    p.headers = headers
    ops: list[tuple] = []
    for i in range(len(data)):
        ops += p.feed(data[i : i + 1])
    return ops


# --- plain ops ---------------------------------------------------------------------------------


def test_pub_simple_and_with_reply() -> None:
    assert both(b"PUB foo 5\r\nhello\r\n") == [(OP_PUB, b"foo", b"", b"5", b"hello")]
    assert both(b"PUB foo bar.baz 2\r\nhi\r\n") == [(OP_PUB, b"foo", b"bar.baz", b"2", b"hi")]


def test_pub_empty_payload_and_leading_zero_size_kept_verbatim() -> None:
    assert both(b"PUB x 0\r\n\r\n") == [(OP_PUB, b"x", b"", b"0", b"")]
    assert both(b"PUB foo 05\r\nhello\r\n") == [(OP_PUB, b"foo", b"", b"05", b"hello")]
    assert both(b"PUB foo 000000005\r\nhello\r\n") == [(OP_PUB, b"foo", b"", b"000000005", b"hello")]


def test_pub_payload_may_contain_crlf_and_lf() -> None:
    assert both(b"PUB a 6\r\nx\r\ny\nz\r\nPING\r\n") == [(OP_PUB, b"a", b"", b"6", b"x\r\ny\nz"), (OP_PING,)]


def test_pub_blanks_runs_of_spaces_and_tabs() -> None:
    assert both(b"PUB \t foo\t\t r  3 \t\r\nabc\r\n") == [(OP_PUB, b"foo", b"r", b"3", b"abc")]


def test_op_names_case_insensitive() -> None:
    data = b"pUb a 1\r\nx\r\nsUb a 1\r\nunSUB 1\r\npInG\r\npOnG\r\n+ok\r\nconnect {}\r\ninfo {}\r\n"
    assert both(data) == [
        (OP_PUB, b"a", b"", b"1", b"x"),
        (OP_SUB, b"a", b"", b"1"),
        (OP_UNSUB, b"1", 0),
        (OP_PING,),
        (OP_PONG,),
        (OP_OK,),
        (OP_CONNECT, b"{}"),
        (OP_INFO, b"{}"),
    ]
    assert both(b"hPuB a 0 1\r\nx\r\n", headers=True) == [(OP_HPUB, b"a", b"", b"0", b"1", 0, b"x")]
    assert both(b"-err 'x'\r\n") == [(OP_ERR, b"'x'")]


def test_bare_lf_terminators() -> None:
    assert both(b"SUB foo 1\nPUB foo 2\nhi\r\nPING\n") == [
        (OP_SUB, b"foo", b"", b"1"),
        (OP_PUB, b"foo", b"", b"2", b"hi"),
        (OP_PING,),
    ]


def test_ping_pong_ok_ignore_everything_to_lf() -> None:
    assert both(b"PING foo\r\nPINGXYZ\r\nping\nPONG  junk \t\r\n+OKAY\r\n") == [
        (OP_PING,),
        (OP_PING,),
        (OP_PING,),
        (OP_PONG,),
        (OP_OK,),
    ]


def test_sub_with_queue_and_blanks() -> None:
    assert both(b"SUB foo 1\r\nSUB foo.* q 2\r\nSUB\t>\t\tq2  3  \r\n") == [
        (OP_SUB, b"foo", b"", b"1"),
        (OP_SUB, b"foo.*", b"q", b"2"),
        (OP_SUB, b">", b"q2", b"3"),
    ]


def test_sub_splits_on_cr_too() -> None:
    # nats-server splits SUB/UNSUB arguments on CR as well (PUB only on blanks).
    assert both(b"SUB foo\r1\r\n") == [(OP_SUB, b"foo", b"", b"1")]


def test_unsub_max_msgs() -> None:
    assert both(
        b"UNSUB 1\r\nUNSUB 2 5\r\nUNSUB 3 0\r\nUNSUB 4 -1\r\nUNSUB 5 x\r\nUNSUB 6 1234567890\r\n"
    ) == [
        (OP_UNSUB, b"1", 0),
        (OP_UNSUB, b"2", 5),
        (OP_UNSUB, b"3", 0),
        (OP_UNSUB, b"4", 0),
        (OP_UNSUB, b"5", 0),
        (OP_UNSUB, b"6", 0),
    ]


def test_connect_and_info_optional_separator() -> None:
    assert both(b'CONNECT{"verbose":false}\r\n') == [(OP_CONNECT, b'{"verbose":false}')]
    assert both(b'CONNECT \t {"a":1} \r\n') == [(OP_CONNECT, b'{"a":1} ')]
    assert both(b"INFO{}\r\n") == [(OP_INFO, b"{}")]
    # Empty CONNECT: the server sees invalid JSON and closes silently (its decision, not ours).
    # As in nats-server, a CR that is the argument's first byte is not dropped.
    assert both(b"CONNECT\r\n") == [(OP_CONNECT, b"\r")]
    assert both(b"CONNECT\n") == []  # that LF starts the argument; the line ends at the next LF


def test_connect_arg_may_start_with_lf() -> None:
    # nats-server takes the first non-blank byte after CONNECT as the start of the argument
    # even when it is the LF, so the line continues to the next LF.
    assert both(b"CONNECT\n{}\r\n") == [(OP_CONNECT, b"\n{}")]


def test_client_err_is_terminal() -> None:
    p = ClientParser()
    assert p.feed(b"PING\r\n-ERR 'boom'\r\nPING\r\n") == [(OP_PING,), (OP_ERR, b"'boom'")]
    assert p.dead
    assert p.feed(b"PING\r\n") == []


def test_hpub_with_headers() -> None:
    data = b"HPUB foo 18 20\r\nNATS/1.0\r\nA: B\r\n\r\nhi\r\n"
    assert both(data, headers=True) == [
        (OP_HPUB, b"foo", b"", b"18", b"20", 18, b"NATS/1.0\r\nA: B\r\n\r\nhi")
    ]
    data = b"HPUB foo r.1 12 014\r\nNATS/1.0\r\n\r\nhi\r\n"
    assert both(data, headers=True) == [(OP_HPUB, b"foo", b"r.1", b"12", b"014", 12, b"NATS/1.0\r\n\r\nhi")]


def test_hpub_without_headers_closes_silently() -> None:
    assert both(b"PING\r\nHPUB foo 0 2\r\nhi\r\n") == [(OP_PING,), SILENT]


@pytest.mark.parametrize(
    "line",
    [
        b"HPUB foo 3 2\r\n",  # header size > total
        b"HPUB foo 2\r\n",  # too few args
        b"HPUB a b c 1 2\r\n",  # too many args
        b"HPUB foo x 2\r\n",
        b"HPUB foo 1 +2\r\n",
        b"HPUB foo 1 1234567890\r\n",
    ],
)
def test_hpub_bad_args_close_silently(line: bytes) -> None:
    assert both(line, headers=True) == [SILENT]


def test_pipelined_ops_before_error_are_returned_first() -> None:
    assert both(b"SUB a 1\r\nPUB a 1\r\nx\r\nXYZ\r\nPING\r\n") == [
        (OP_SUB, b"a", b"", b"1"),
        (OP_PUB, b"a", b"", b"1", b"x"),
        UNKNOWN,
    ]


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"UNSUB\r\n",  # separator required
        b"PUB\r\n",
        b"SUB\r\n",
        b"HPUB\r\n",
        b"-ERR\r\n",
        b"PUBX foo 1\r\n",
        b"PUX",  # unknown at the first impossible byte, without waiting for LF
        b"\r\n",  # an empty line is not an op
        b" PING\r\n",  # nor is leading blank
        b"XYZ",
        b"CONNEXT {}\r\n",
        b"+O\r\n",
        b"MSG foo 1 5\r\n",
        b"HMSG foo 1 0 5\r\n",
        b"RS+ foo\r\n",
        b"RS- foo\r\n",
        b"RMSG $G foo 1\r\n",
        b"LS+ foo\r\n",
        b"LS- foo\r\n",
        b"LMSG foo 1\r\n",
        b"A+ foo\r\n",
        b"A- foo\r\n",
    ],
)
def test_unknown_protocol_operation(data: bytes) -> None:
    assert both(data, headers=True) == [UNKNOWN]
    assert bytewise(data, headers=True) == [UNKNOWN]


@pytest.mark.parametrize(
    "data",
    [
        b"PUB foo 5\r\nhelloX\r\n",  # extra byte
        b"PUB foo 2\r\nab\n",  # LF without CR
        b"PUB foo 2\r\nabc\r\n",
        b"PUB foo 2\r\nab\rX",
    ],
)
def test_payload_must_end_with_crlf(data: bytes) -> None:
    assert both(data) == [UNKNOWN]
    assert bytewise(data) == [UNKNOWN]


def test_payload_terminator_checked_byte_by_byte() -> None:
    # A wrong byte where the CR belongs is an error before the LF position has arrived.
    p = ClientParser()
    assert p.feed(b"PUB foo 2\r\nab") == []
    assert p.feed(b"X") == [UNKNOWN]
    p = ClientParser()
    assert p.feed(b"PUB foo 2\r\nabX") == [UNKNOWN]


@pytest.mark.parametrize(
    "line",
    [
        b"PUB foo\r\n",  # one arg
        b"PUB a b c 1\r\n",  # four args
        b"PUB foo +5\r\n",
        b"PUB foo -5\r\n",
        b"PUB foo 1234567890\r\n",  # 10 digits
        b"PUB foo 5x\r\n",
        b"PUB foo \xd9\xa3\r\n",  # non-ASCII digit
        b"SUB foo\r\n",
        b"SUB a b c d\r\n",
        b"UNSUB \r\n",
        b"UNSUB 1 2 3\r\n",
        b"PUB \r\n",
    ],
)
def test_bad_arguments_close_silently(line: bytes) -> None:
    assert both(line) == [SILENT]


def test_size_field_accepts_nine_digits() -> None:
    assert both(b"PUB foo 000000001\r\nx\r\n", max_payload=10**9) == [
        (OP_PUB, b"foo", b"", b"000000001", b"x")
    ]
    p = ClientParser(max_payload=-1)  # no limit
    assert p.feed(b"PUB foo 999999999\r\nab") == []


def test_max_payload() -> None:
    assert both(b"PUB foo 10\r\n0123456789\r\n", max_payload=10) == [
        (OP_PUB, b"foo", b"", b"10", b"0123456789")
    ]
    # Checked on the control line, before any payload arrives.
    assert both(b"PUB foo 11\r\n", max_payload=10) == [MAXPAY]
    assert both(b"HPUB foo 2 11\r\n", headers=True, max_payload=10) == [MAXPAY]
    assert both(b"HPUB foo 2 10\r\nNA01234567\r\n", headers=True, max_payload=10)[0][0] == OP_HPUB


def test_max_payload_settable_between_feeds() -> None:
    p = ClientParser()
    assert p.feed(b"PUB a 3\r\nabc\r\n")[0][0] == OP_PUB
    p.max_payload = 2
    assert p.feed(b"PUB a 3\r\nabc\r\n") == [MAXPAY]


def test_max_control_line_applies_to_argument_part() -> None:
    arg = b"s" * 16 + b" " + b"1"  # 18 bytes
    ok = b"PUB \t " + arg + b"\r\nx\r\n"
    assert both(ok, max_control_line=18) == [(OP_PUB, b"s" * 16, b"", b"1", b"x")]
    assert both(ok, max_control_line=17) == [MCL]
    assert both(b"SUB " + b"a" * 20 + b" 1\r\n", max_control_line=10) == [MCL]
    assert both(b"CONNECT " + b"{" + b" " * 20 + b"}\r\n", max_control_line=10) == [MCL]
    assert both(b"-ERR " + b"x" * 11 + b"\r\n", max_control_line=10) == [MCL]


def test_max_control_line_on_partial_line() -> None:
    p = ClientParser(max_control_line=10)
    assert p.feed(b"PUB " + b"x" * 10) == []
    assert p.feed(b"x") == [MCL]
    assert p.dead
    # A CR at the end is not counted (it is dropped when the LF comes).
    p = ClientParser(max_control_line=10)
    assert p.feed(b"SUB abcd 12345\r") == []
    assert p.feed(b"\n") == [(OP_SUB, b"abcd", b"", b"12345")]
    p = ClientParser(max_control_line=10)
    assert p.feed(b"SUB abcde 12345\r") == [MCL]


def test_endless_blanks_and_ping_junk_do_not_accumulate() -> None:
    p = ClientParser(max_control_line=10)
    assert p.feed(b"PUB ") == []
    for _ in range(50):
        assert p.feed(b" \t" * 500) == []
    assert len(p._tail) <= 4
    assert p.feed(b"foo 1\r\nx\r\n") == [(OP_PUB, b"foo", b"", b"1", b"x")]
    p = ClientParser(max_control_line=10)
    assert p.feed(b"PING") == []
    for _ in range(50):
        assert p.feed(b"junk" * 500) == []
    assert len(p._tail) <= 4
    assert p.feed(b"\n") == [(OP_PING,)]


def test_expect_connect_auth_violation_on_first_byte() -> None:
    p = ClientParser()
    p.expect_connect = True
    assert p.feed(b"P") == [AUTH]
    p = ClientParser()
    p.expect_connect = True
    assert p.feed(b"XYZ") == [AUTH]
    # 'C' that is not CONNECT is an unknown op, not an auth violation.
    p = ClientParser()
    p.expect_connect = True
    assert p.feed(b"CX") == [UNKNOWN]
    # After CONNECT everything is allowed.
    p = ClientParser()
    p.expect_connect = True
    assert p.feed(b'CONNECT {"user":"a"}\r\nPING\r\nPUB a 1\r\nx\r\n') == [
        (OP_CONNECT, b'{"user":"a"}'),
        (OP_PING,),
        (OP_PUB, b"a", b"", b"1", b"x"),
    ]
    assert not p.expect_connect


def test_dead_after_close() -> None:
    p = ClientParser()
    assert p.feed(b"BAD\r\n") == [UNKNOWN]
    assert p.feed(b"PING\r\n") == []


def test_op_tuple_types() -> None:
    (op,) = parse(b"PUB foo 5\r\nhello\r\n")
    assert all(type(x) is bytes for x in op[1:])
    (op,) = parse(b"HPUB foo 0 1\r\nx\r\n", headers=True)
    assert type(op[5]) is int and type(op[6]) is bytes
    (op,) = parse(b"UNSUB 1 3\r\n")
    assert type(op[2]) is int


# --- splitting across feeds --------------------------------------------------------------------


def test_payload_split_across_many_feeds() -> None:
    payload = bytes(range(256)) * 400
    data = b"PUB big 102400\r\n" + payload + b"\r\nPING\r\n"
    p = ClientParser()
    ops: list[tuple] = []
    for i in range(0, len(data), 997):
        ops += p.feed(data[i : i + 997])
    assert ops == [(OP_PUB, b"big", b"", b"102400", payload), (OP_PING,)]


def test_split_between_cr_and_lf_of_payload() -> None:
    p = ClientParser()
    assert p.feed(b"PUB a 2\r\nab\r") == []
    assert p.feed(b"\nPING\r\n") == [(OP_PUB, b"a", b"", b"2", b"ab"), (OP_PING,)]


def test_every_op_bytewise() -> None:
    data = (
        b'CONNECT {"verbose":false}\r\nPUB a 5\r\nhello\r\nPUB a r 0\r\n\r\nHPUB b 12 14\r\n'
        b"NATS/1.0\r\n\r\nhi\r\nSUB a q 1\r\nUNSUB 1 3\r\nPING\r\nPONG\r\n+OK\r\nINFO {}\r\n"
    )
    assert bytewise(data, headers=True) == parse(data, headers=True)
    assert len(parse(data, headers=True)) == 10


# --- helpers -----------------------------------------------------------------------------------


def test_parse_size() -> None:
    assert parse_size(b"0") == 0
    assert parse_size(b"007") == 7
    assert parse_size(b"999999999") == 999999999
    for bad in (b"", b"1234567890", b"+1", b"-1", b"1 ", b" 1", b"1_0", b"\xd9\xa3", b"0x1"):
        assert parse_size(bad) == -1


def test_split_helpers() -> None:
    assert split_blanks(b" a\t\tb  c ") == [b"a", b"b", b"c"]
    assert split_blanks(b"a\rb\nc") == [b"a\rb\nc"]
    assert split_whitespace(b" a\t\rb\n c ") == [b"a", b"b", b"c"]
    assert split_whitespace(b"a\x0bb") == [b"a\x0bb"]  # only space, TAB, CR, LF split
    assert split_blanks(b"a\x0cb") == [b"a\x0cb"]


def test_op_table_rejects_prefix_names() -> None:
    with pytest.raises(ValueError):
        OpTable({b"PUB": (1, 0), b"PUBX": (2, 0)})


# --- properties --------------------------------------------------------------------------------

_subject = st.from_regex(rb"\A[a-zA-Z0-9_.*>$-]{1,20}\Z")
_sid = st.from_regex(rb"\A[a-zA-Z0-9]{1,6}\Z")
_blank = st.sampled_from([b" ", b"\t", b"  ", b" \t "])
_payload = st.binary(max_size=40)


@st.composite
def _valid_op(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["pub", "hpub", "sub", "unsub", "ping", "pong", "ok", "connect", "info"]))
    sp = draw(_blank)
    eol = draw(st.sampled_from([b"\r\n", b"\n"]))
    if kind == "pub":
        payload = draw(_payload)
        reply = draw(st.one_of(st.just(b""), _subject))
        name = draw(st.sampled_from([b"PUB", b"pub", b"Pub"]))
        args = sp.join([draw(_subject)] + ([reply] if reply else []) + [str(len(payload)).encode()])
        return name + sp + args + eol + payload + b"\r\n"
    if kind == "hpub":
        hdr = b"NATS/1.0\r\n" + draw(st.sampled_from([b"", b"A: b\r\n"])) + b"\r\n"
        payload = draw(_payload)
        total = str(len(hdr) + len(payload)).encode()
        return (
            b"HPUB "
            + draw(_subject)
            + sp
            + str(len(hdr)).encode()
            + sp
            + total
            + eol
            + hdr
            + payload
            + b"\r\n"
        )
    if kind == "sub":
        q = draw(st.one_of(st.just(b""), _sid))
        return b"SUB" + sp + draw(_subject) + sp + (q + sp if q else b"") + draw(_sid) + eol
    if kind == "unsub":
        mx = draw(st.one_of(st.just(b""), st.integers(0, 10**9 - 1).map(lambda i: sp + str(i).encode())))
        return b"UNSUB" + sp + draw(_sid) + mx + eol
    if kind == "ping":
        return draw(st.sampled_from([b"PING", b"ping", b"PING x"])) + eol
    if kind == "pong":
        return b"PONG" + eol
    if kind == "ok":
        return b"+OK" + eol
    if kind == "connect":
        return b'CONNECT {"verbose":false,"x":"a b"}' + eol
    return b"INFO {}" + eol


def _feed_split(data: bytes, cuts: list[int], headers: bool = True, **kw: int) -> list[tuple]:
    p = ClientParser(**kw)
    p.headers = headers
    ops: list[tuple] = []
    prev = 0
    for c in sorted(set(cuts)) + [len(data)]:
        ops += p.feed(data[prev:c])
        prev = c
    return ops


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_valid_op(), min_size=1, max_size=12), st.data())
def test_random_splits_of_valid_stream_match_single_feed(ops_bytes: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(ops_bytes)
    whole = parse(stream, headers=True)
    assert parse(stream, headers=True, slow=True) == whole
    assert len(whole) == len(ops_bytes)
    assert all(op[0] != OP_CLOSE for op in whole)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8))
    assert _feed_split(stream, cuts) == whole


_junk_alphabet = st.sampled_from(
    [
        b"PUB ",
        b"HPUB ",
        b"SUB ",
        b"UNSUB ",
        b"PING",
        b"PONG",
        b"+OK",
        b"-ERR ",
        b"CONNECT",
        b"INFO",
        b"\r\n",
        b"\n",
        b"\r",
        b" ",
        b"\t",
        b"foo",
        b"1",
        b"0",
        b"5",
        b"12",
        b"x",
        b"\x00",
        b"\xff",
        b"pub ",
    ]
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(st.binary(max_size=200), st.lists(_junk_alphabet, max_size=40).map(b"".join)),
    st.lists(st.integers(0, 200), max_size=6),
    st.booleans(),
    st.booleans(),
    st.sampled_from([8, 16, 4096]),
)
def test_random_junk_never_raises_and_splits_agree(
    junk: bytes, cuts: list[int], headers: bool, expect_connect: bool, mcl: int
) -> None:
    def run(parser: ClientParser, pieces: list[bytes]) -> list[tuple]:
        parser.headers = headers
        parser.expect_connect = expect_connect
        out: list[tuple] = []
        for piece in pieces:
            out += parser.feed(piece)
        return out

    whole = run(ClientParser(max_control_line=mcl, max_payload=20), [junk])
    slow = run(SlowParser(max_control_line=mcl, max_payload=20), [junk])
    assert whole == slow
    closes = [i for i, op in enumerate(whole) if op[0] in (OP_CLOSE, OP_ERR)]
    assert closes in ([], [len(whole) - 1])
    cuts = [c for c in cuts if c <= len(junk)]
    bounds = [0, *sorted(set(cuts)), len(junk)]
    pieces = [junk[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    assert run(ClientParser(max_control_line=mcl, max_payload=20), pieces) == whole


def test_general_path_streak_then_fast_again() -> None:
    # Lower-case ops push the rest of the chunk onto the general path; results are the same.
    data = b"pub a 1\r\nx\r\n" * 6 + b"PUB b 1\r\ny\r\n" * 6 + b"HPUB c 0 1\r\nz\r\nSUB d 1\r\nPING\r\n"
    ops = both(data, headers=True)
    assert ops[:6] == [(OP_PUB, b"a", b"", b"1", b"x")] * 6
    assert ops[6:12] == [(OP_PUB, b"b", b"", b"1", b"y")] * 6
    assert ops[12:] == [(OP_HPUB, b"c", b"", b"0", b"1", 0, b"z"), (OP_SUB, b"d", b"", b"1"), (OP_PING,)]
    # Next feed starts on the fast path again.
    p = ClientParser()
    p.feed(b"pub a 1\r\nx\r\n" * 6)
    assert p.feed(b"PUB b 1\r\ny\r\n") == [(OP_PUB, b"b", b"", b"1", b"y")]


def test_hpub_fast_path_payload_with_crlf_at_edges() -> None:
    for body in (b"\r\n", b"\r\nab\r\n", b"\r", b"\n\r\n\r", b""):
        hdr = b"NATS/1.0\r\n\r\n"
        data = b"HPUB s 12 %d\r\n" % (12 + len(body)) + hdr + body + b"\r\nPING\r\n"
        assert both(data, headers=True) == [
            (OP_HPUB, b"s", b"", b"12", str(12 + len(body)).encode(), 12, hdr + body),
            (OP_PING,),
        ]


def test_partial_argument_after_many_blanks_keeps_a_short_tail() -> None:
    p = ClientParser(max_control_line=10)
    assert p.feed(b"pub" + b" \t" * 5000 + b"fo") == []
    assert p._tail == b"PUB fo"
    assert p.feed(b"o 1\r\nx\r\n") == [(OP_PUB, b"foo", b"", b"1", b"x")]
    p = ClientParser()
    assert p.feed(b"CONNECT" + b" " * 100 + b"{") == []
    assert p._tail == b"CONNECT{"
    assert p.feed(b"}\r\n") == [(OP_CONNECT, b"{}")]
