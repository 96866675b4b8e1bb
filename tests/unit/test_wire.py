"""Unit tests for pynatsd.protocol.wire (wire strings and encoders)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pynatsd.protocol import wire
from pynatsd.protocol.parser import OP_HPUB, OP_PUB, ClientParser


def test_fixed_protos() -> None:
    assert wire.OK == b"+OK\r\n"
    assert wire.PING == b"PING\r\n"
    assert wire.PONG == b"PONG\r\n"


def test_err_line() -> None:
    assert wire.err_line(wire.ERR_UNKNOWN_OP) == b"-ERR 'Unknown Protocol Operation'\r\n"
    assert wire.err_line("x") == b"-ERR 'x'\r\n"


@pytest.mark.parametrize(
    "const, text",
    [
        ("ERR_UNKNOWN_OP", "Unknown Protocol Operation"),
        ("ERR_AUTH_VIOLATION", "Authorization Violation"),
        ("ERR_AUTH_TIMEOUT", "Authentication Timeout"),
        ("ERR_MAX_PAYLOAD", "Maximum Payload Violation"),
        ("ERR_MAX_CONTROL_LINE", "maximum control line exceeded"),
        ("ERR_MAX_CONNECTIONS", "maximum connections exceeded"),
        ("ERR_MAX_ACCOUNT_CONNECTIONS", "maximum account active connections exceeded"),
        ("ERR_INVALID_PROTOCOL", "invalid client protocol"),
        ("ERR_NO_RESPONDERS_HEADERS", "no responders requires headers support"),
        ("ERR_STALE", "Stale Connection"),
        ("ERR_TLS_REQUIRED", "Secure Connection - TLS Required"),
        ("ERR_USER_AUTH_EXPIRED", "User Authentication Expired"),
        ("ERR_ACCOUNT_AUTH_EXPIRED", "Account Authentication Expired"),
        ("ERR_USER_AUTH_REVOKED", "User Authentication Revoked"),
        ("ERR_CONNECTION_THROTTLED", "Connection throttling is active. Please try again later."),
        ("ERR_INVALID_SUBJECT", "Invalid Subject"),
        ("ERR_INVALID_PUB_SUBJECT", "Invalid Publish Subject"),
        ("ERR_MAX_SUBS", "maximum subscriptions exceeded"),
        ("ERR_ROUTE_PORT", "attempted to connect to route port"),
        ("REASON_PROTOCOL_VIOLATION", "Protocol Violation"),
        ("REASON_MAX_CONTROL_LINE", "Maximum Control Line Exceeded"),
        ("REASON_MAX_PAYLOAD", "Maximum Message Payload Exceeded"),
        ("REASON_AUTH_FAILURE", "Authentication Failure"),
        ("REASON_PARSE_ERROR", "Parse Error"),
        ("REASON_SLOW_CONSUMER_PENDING", "Slow Consumer (Pending Bytes)"),
        ("REASON_SLOW_CONSUMER_DEADLINE", "Slow Consumer (Write Deadline)"),
        ("REASON_CLIENT_CLOSED", "Client Closed"),
    ],
)
def test_catalogue_spelling(const: str, text: str) -> None:
    assert getattr(wire, const) == text


# --- INFO --------------------------------------------------------------------------------------


def test_info_line_format_and_key_order() -> None:
    info = {"server_id": "NABC", "version": "2.15.1", "proto": 1, "headers": True, "max_payload": 1048576}
    assert wire.info_line(info) == (
        b'INFO {"server_id":"NABC","version":"2.15.1","proto":1,"headers":true,"max_payload":1048576} \r\n'
    )


def test_info_line_go_escapes() -> None:
    # Observed from nats-server with server_name "x<y>&z\u2028": Go escapes these in strings.
    line = wire.info_line({"server_name": "x<y>&z\u2028\u2029", "n": 'é\n\x01"\\'})
    assert line == (
        b'INFO {"server_name":"x\\u003cy\\u003e\\u0026z\\u2028\\u2029","n":"\xc3\xa9\\n\\u0001\\"\\\\"} \r\n'
    )


def test_info_line_lists_and_nested() -> None:
    line = wire.info_line({"connect_urls": ["a:1", "b:2"], "x": {"y": None}, "e": []})
    assert line == b'INFO {"connect_urls":["a:1","b:2"],"x":{"y":null},"e":[]} \r\n'


@given(st.dictionaries(st.text(max_size=8), st.one_of(st.text(max_size=20), st.integers(), st.booleans())))
def test_info_json_round_trips(info: dict) -> None:
    line = wire.info_line(info)
    assert line.startswith(b"INFO {") and line.endswith(b"} \r\n")
    body = line[5:-3]
    assert b"<" not in body and b">" not in body and b"&" not in body
    assert json.loads(body) == json.loads(json.dumps(info))


def test_go_json_indent() -> None:
    assert wire.go_json({"a": [1, "<"]}, indent="  ") == '{\n  "a": [\n    1,\n    "\\u003c"\n  ]\n}'


# --- Go %q -------------------------------------------------------------------------------------

# Expected values were checked against nats-server 2.15.1's permission -ERRs for the same bytes.
_QUOTES = [
    (b"foo.bar", '"foo.bar"'),
    (b'a"b', '"a\\"b"'),
    (b"a\\b", '"a\\\\b"'),
    ("é€😀".encode(), '"é€😀"'),
    (b"x\x01\x7f", '"x\\x01\\x7f"'),
    (b"bad\xff\xfe", '"bad\\xff\\xfe"'),
    ("nb\u00a0sp\u2028\u00ad".encode(), '"nb\\u00a0sp\\u2028\\u00ad"'),
    (b"\xe2\x82", '"\\xe2\\x82"'),  # truncated sequence: each byte
    (b"\xed\xa0\x80", '"\\xed\\xa0\\x80"'),  # UTF-8-encoded surrogate is invalid in Go
    ("\U000e0001".encode(), '"\\U000e0001"'),
    (b"\x07\x08\x0b\x0c\n\r\t", '"\\a\\b\\v\\f\\n\\r\\t"'),
    (b"", '""'),
    (b" ", '" "'),
]


@pytest.mark.parametrize("raw, quoted", _QUOTES)
def test_go_quote(raw: bytes, quoted: str) -> None:
    assert wire.go_quote(raw) == quoted


def test_go_quote_str_input() -> None:
    assert wire.go_quote('a"b') == '"a\\"b"'
    assert wire.go_quote("é") == '"é"'


def test_permission_texts() -> None:
    assert wire.pub_violation(b"foo.secret") == 'Permissions Violation for Publish to "foo.secret"'
    assert wire.pub_reply_violation(b"_R_.x") == 'Permissions Violation for Publish with Reply of "_R_.x"'
    assert wire.sub_violation(b"foo") == 'Permissions Violation for Subscription to "foo"'
    assert wire.sub_violation(b"foo", b"") == 'Permissions Violation for Subscription to "foo"'
    assert (
        wire.sub_violation(b"foo", b"_sys_")
        == 'Permissions Violation for Subscription to "foo" using queue "_sys_"'
    )
    assert (
        wire.sub_tokens_violation(b"a.b.c")
        == 'Permissions Violation for Subscription to "a.b.c", too many tokens'
    )
    assert (
        wire.sub_reload_violation(b"foo", None, b"1")
        == 'Permissions Violation for Subscription to "foo" (sid "1")'
    )
    assert (
        wire.sub_reload_violation(b"foo", b"q", b"1")
        == 'Permissions Violation for Subscription to "foo" using queue "q" (sid "1")'
    )
    assert (
        wire.err_line(wire.pub_violation(b"a\xffb"))
        == b"-ERR 'Permissions Violation for Publish to \"a\\xffb\"'\r\n"
    )


# --- messages ----------------------------------------------------------------------------------


def test_no_responders_hmsg_matches_observed_bytes() -> None:
    assert wire.no_responders_hmsg(b"_INBOX.x", b"1", b"req") == (
        b"HMSG _INBOX.x 1 35 35\r\nNATS/1.0 503\r\nNats-Subject: req\r\n\r\n\r\n"
    )


@given(st.binary(min_size=1, max_size=30).filter(lambda b: b" " not in b and b"\t" not in b))
def test_no_responders_sizes_consistent(subject: bytes) -> None:
    # The block parses as an HMSG with header size == total size == the header block length.
    m = wire.no_responders_hmsg(b"r", b"9", subject)
    p = ClientParser()
    p.headers = True
    ops = p.feed(m.replace(b"HMSG", b"HPUB", 1))  # "HPUB r 9 L L": subject, reply, hdr, total
    assert ops[0][0] == OP_HPUB
    _, subj, reply, hdb, tdb, hdr, data = ops[0]
    assert (subj, reply) == (b"r", b"9")
    assert hdb == tdb and hdr == len(data)
    assert data == b"NATS/1.0 503\r\nNats-Subject: " + subject + b"\r\n\r\n"


def test_msg_and_hmsg() -> None:
    assert wire.msg(b"foo", b"1", b"", b"05", b"hello") == b"MSG foo 1 05\r\nhello\r\n"
    assert wire.msg(b"foo", b"1", b"r.1", b"5", b"hello") == b"MSG foo 1 r.1 5\r\nhello\r\n"
    assert wire.hmsg(b"foo", b"2", b"", b"12", b"14", b"NATS/1.0\r\n\r\nhi") == (
        b"HMSG foo 2 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"
    )
    assert wire.hmsg(b"foo", b"2", b"r", b"12", b"14", b"NATS/1.0\r\n\r\nhi") == (
        b"HMSG foo 2 r 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"
    )
    # What a client would parse back out of a MSG re-shaped as PUB.
    ops = ClientParser().feed(
        b"PUB" + wire.msg(b"foo", b"1", b"", b"2", b"hi")[3:].replace(b"foo 1", b"foo", 1)
    )
    assert ops == [(OP_PUB, b"foo", b"", b"2", b"hi")]
