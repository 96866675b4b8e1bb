"""The route protocol parser and encoders (pynatsd.cluster.protocol), including split feeds."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pynatsd.cluster.protocol import (
    R_CLOSE,
    R_CONNECT,
    R_ERR,
    R_INFO,
    R_MSG,
    R_OK,
    R_PING,
    R_PONG,
    R_SUB,
    R_UNSUB,
    RouteParser,
    connect_line,
    go_json,
    info_line,
    msg_line,
    rs_minus,
    rs_plus,
)


def parse(data: bytes, **kw: Any) -> list[tuple[Any, ...]]:
    return RouteParser(**kw).feed(data)


def test_control_ops() -> None:
    ops = parse(
        b'INFO {"server_id":"X"} \r\nCONNECT {"a":1}\r\nPING\r\npong\r\n+OK\r\n-ERR \'bad thing\'\r\n'
    )
    assert ops == [
        (R_INFO, b'{"server_id":"X"}'),
        (R_CONNECT, b'{"a":1}'),
        (R_PING,),
        (R_PONG,),
        (R_OK,),
        (R_ERR, b"bad thing"),
    ]


def test_interest_ops() -> None:
    ops = parse(b"RS+ $G foo\r\nRS+ $G bar q1 2\r\nrs- $G foo\r\nRS- $G bar q1\r\nRS+\t$G  baz.>\r\n")
    assert ops == [
        (R_SUB, b"$G", b"foo", b"", 0),
        (R_SUB, b"$G", b"bar", b"q1", 2),
        (R_UNSUB, b"$G", b"foo", b""),
        (R_UNSUB, b"$G", b"bar", b"q1"),
        (R_SUB, b"$G", b"baz.>", b"", 0),
    ]


def test_rmsg_forms() -> None:
    data = (
        b"RMSG $G foo 5\r\nhello\r\n"
        b"RMSG $G foo inbox.1 5\r\nhello\r\n"
        b"RMSG $G bar | q2 q1 2\r\nb1\r\n"
        b"RMSG $G bar + rep q2 q1 2\r\nb2\r\n"
        b"RMSG $G empty 0\r\n\r\n"
    )
    assert parse(data) == [
        (R_MSG, b"$G", b"foo", b"", (), -1, b"hello"),
        (R_MSG, b"$G", b"foo", b"inbox.1", (), -1, b"hello"),
        (R_MSG, b"$G", b"bar", b"", (b"q2", b"q1"), -1, b"b1"),
        (R_MSG, b"$G", b"bar", b"rep", (b"q2", b"q1"), -1, b"b2"),
        (R_MSG, b"$G", b"empty", b"", (), -1, b""),
    ]


def test_hmsg_forms() -> None:
    hdr = b"NATS/1.0\r\nX: 1\r\n\r\n"
    data = hdr + b"hello"
    line = b"HMSG $G foo %d %d\r\n" % (len(hdr), len(data))
    assert parse(line + data + b"\r\n") == [(R_MSG, b"$G", b"foo", b"", (), len(hdr), data)]
    line = b"HMSG $G foo + r q %d %d\r\n" % (len(hdr), len(data))
    assert parse(line + data + b"\r\n") == [(R_MSG, b"$G", b"foo", b"r", (b"q",), len(hdr), data)]
    line = b"HMSG $G foo r %d %d\r\n" % (len(hdr), len(data))
    assert parse(line + data + b"\r\n") == [(R_MSG, b"$G", b"foo", b"r", (), len(hdr), data)]


def test_payload_may_contain_crlf_and_ops() -> None:
    payload = b"PING\r\nRS+ $G x\r\n"
    ops = parse(b"RMSG $G s %d\r\n%s\r\nPING\r\n" % (len(payload), payload))
    assert ops == [(R_MSG, b"$G", b"s", b"", (), -1, payload), (R_PING,)]


def test_gateway_account_ops_ignored() -> None:
    assert parse(b"A+ $G\r\nA- $G\r\nPING\r\n") == [(R_PING,)]


def test_unknown_op_closes_with_err() -> None:
    ops = parse(b"PING\r\nPUB foo 1\r\nx\r\nPING\r\n")
    assert ops == [(R_PING,), (R_CLOSE, "Unknown Protocol Operation", "Protocol Violation")]


def test_dead_after_close() -> None:
    p = RouteParser()
    assert p.feed(b"BOGUS\r\n")[-1][0] == R_CLOSE
    assert p.feed(b"PING\r\n") == []


def test_bad_args_close_silently() -> None:
    for bad in (
        b"RMSG $G\r\n",
        b"RMSG $G foo x1\r\n",
        b"RMSG $G foo ? q 1\r\n",
        b"HMSG $G foo 5 3\r\n",
        b"RS+ $G foo q\r\n",
        b"RS+ $G\r\n",
        b"RS- $G a b c\r\n",
    ):
        assert parse(bad) == [(R_CLOSE, None, "Protocol Violation")], bad


def test_payload_longer_than_its_size() -> None:
    for bad in (b"RMSG $G foo 3\r\nabcXY", b"RMSG $G foo | q 3\r\nabcXY", b"HMSG $G foo 0 3\r\nabcXY"):
        assert parse(bad) == [(R_CLOSE, "Unknown Protocol Operation", "Protocol Violation")], bad


def test_max_control_line() -> None:
    p = RouteParser(max_control_line=64)
    assert p.feed(b"RS+ $G " + b"a" * 100 + b"\r\n") == [
        (R_CLOSE, "Maximum Control Line Exceeded", "Maximum Control Line Exceeded")
    ]
    p = RouteParser(max_control_line=64)
    assert p.feed(b"RS+ $G " + b"a" * 40) == []
    assert p.feed(b"a" * 40)[-1][0] == R_CLOSE


def test_large_payload_in_many_chunks() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    wire = b"RMSG $G big %d\r\n" % len(payload) + payload + b"\r\nPING\r\n"
    p = RouteParser()
    ops: list[tuple[Any, ...]] = []
    for i in range(0, len(wire), 1000):
        ops += p.feed(wire[i : i + 1000])
    assert ops == [(R_MSG, b"$G", b"big", b"", (), -1, payload), (R_PING,)]


def test_encoders() -> None:
    assert rs_plus(b"$G", b"foo") == b"RS+ $G foo\r\n"
    assert rs_plus(b"$G", b"foo", b"q", 3) == b"RS+ $G foo q 3\r\n"
    assert rs_minus(b"$G", b"foo") == b"RS- $G foo\r\n"
    assert rs_minus(b"$G", b"foo", b"q") == b"RS- $G foo q\r\n"
    assert msg_line(b"$G", b"foo", b"", (), -1, 5) == b"RMSG $G foo 5\r\n"
    assert msg_line(b"$G", b"foo", b"r", (), -1, 5) == b"RMSG $G foo r 5\r\n"
    assert msg_line(b"$G", b"bar", b"", [b"q2", b"q1"], -1, 2) == b"RMSG $G bar | q2 q1 2\r\n"
    assert msg_line(b"$G", b"bar", b"rep", [b"q2", b"q1"], -1, 2) == b"RMSG $G bar + rep q2 q1 2\r\n"
    assert msg_line(b"$G", b"foo", b"", (), 18, 23) == b"HMSG $G foo 18 23\r\n"
    assert msg_line(b"$G", b"foo", b"r", [b"q"], 18, 23) == b"HMSG $G foo + r q 18 23\r\n"
    assert go_json({"a": "<&>"}) == b'{"a":"\\u003c\\u0026\\u003e"}'
    assert info_line({"x": 1}) == b'INFO {"x":1} \r\n'
    assert connect_line({"x": True}) == b'CONNECT {"x":true}\r\n'


def test_encoders_round_trip() -> None:
    hdr = b"NATS/1.0\r\nA: b\r\n\r\n"
    cases = [
        (b"$G", b"a.b", b"", (), -1, b"payload"),
        (b"$G", b"a.b", b"_INBOX.x", (), -1, b""),
        (b"$G", b"a.b", b"", (b"q1",), -1, b"p"),
        (b"$G", b"a.b", b"r", (b"q1", b"q2"), len(hdr), hdr + b"p"),
        (b"$G", b"a.b", b"", (), len(hdr), hdr),
    ]
    wire = b"".join(msg_line(a, s, r, q, h, len(d)) + d + b"\r\n" for a, s, r, q, h, d in cases)
    assert parse(wire) == [(R_MSG, *c) for c in cases]


_tokens = st.text(alphabet="abcxyz09_-", min_size=1, max_size=6).map(str.encode)
_subjects = st.lists(_tokens, min_size=1, max_size=4).map(lambda t: b".".join(t))
_payloads = st.binary(max_size=64)


@st.composite
def _route_stream(draw: st.DrawFn) -> tuple[bytes, list[tuple[Any, ...]]]:
    wire = b""
    expected: list[tuple[Any, ...]] = []
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["msg", "hmsg", "sub", "qsub", "unsub", "ping", "pong", "info"]))
        subj = draw(_subjects)
        if kind in ("msg", "hmsg"):
            reply = draw(st.one_of(st.just(b""), _subjects))
            queues = tuple(draw(st.lists(_tokens, max_size=3)))
            data = draw(_payloads)
            hdr = -1
            if kind == "hmsg":
                h = b"NATS/1.0\r\nK: " + draw(_tokens) + b"\r\n\r\n"
                hdr, data = len(h), h + data
            wire += msg_line(b"$G", subj, reply, queues, hdr, len(data)) + data + b"\r\n"
            expected.append((R_MSG, b"$G", subj, reply, queues, hdr, data))
        elif kind == "sub":
            wire += rs_plus(b"$G", subj)
            expected.append((R_SUB, b"$G", subj, b"", 0))
        elif kind == "qsub":
            q, w = draw(_tokens), draw(st.integers(1, 1000))
            wire += rs_plus(b"$G", subj, q, w)
            expected.append((R_SUB, b"$G", subj, q, w))
        elif kind == "unsub":
            wire += rs_minus(b"$G", subj)
            expected.append((R_UNSUB, b"$G", subj, b""))
        elif kind == "ping":
            wire += b"PING\r\n"
            expected.append((R_PING,))
        elif kind == "pong":
            wire += b"PONG\r\n"
            expected.append((R_PONG,))
        else:
            body = go_json({"server_id": subj.decode()})
            wire += info_line({"server_id": subj.decode()})
            expected.append((R_INFO, body))
    return wire, expected


@settings(max_examples=300, deadline=None)
@given(stream=_route_stream(), cuts=st.lists(st.integers(0, 10_000), max_size=12))
def test_split_feeds_give_same_ops(stream: tuple[bytes, list[tuple[Any, ...]]], cuts: list[int]) -> None:
    wire, expected = stream
    points = sorted({c % (len(wire) + 1) for c in cuts})
    p = RouteParser()
    ops: list[tuple[Any, ...]] = []
    prev = 0
    for c in [*points, len(wire)]:
        ops += p.feed(wire[prev:c])
        prev = c
    assert ops == expected


@settings(max_examples=100, deadline=None)
@given(stream=_route_stream())
def test_byte_by_byte(stream: tuple[bytes, list[tuple[Any, ...]]]) -> None:
    wire, expected = stream
    p = RouteParser()
    ops: list[tuple[Any, ...]] = []
    for i in range(len(wire)):
        ops += p.feed(wire[i : i + 1])
    assert ops == expected
