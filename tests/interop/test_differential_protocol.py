"""Differential client-protocol cases: identical bytes sent to the real nats-server and to pynatsd.

Each case is a script (see tests/helpers/script.py) plus the normalized transcript recorded from
nats-server 2.15.1; every selected implementation (--impl / PYNATSD_TEST_IMPL) must produce
exactly that transcript. Cases are grouped by server config; one server process per config is
shared by the cases (fresh connections per case).
"""

from __future__ import annotations

import re

import bcrypt
import pytest

from tests.helpers.rawclient import RawClient
from tests.helpers.script import (
    Case,
    as_lines,
    case_params,
    eof,
    lines,
    ping,
    pong,
    run_script,
    send,
    sendb,
    wait,
)
from tests.helpers.servers import ServerPool, ServerProcess

I = "INFO\r\n"  # noqa: E741  (an INFO line, normalized)
OK = "+OK\r\n"
PONG = "PONG\r\n"
EOF = "<EOF>"
BIG = bytes(range(256)) * 1171 + b"z" * 224  # 300000 bytes, every byte value
assert len(BIG) == 300000
UNKNOWN = "-ERR 'Unknown Protocol Operation'\r\n"

CV = b'CONNECT {"verbose":false}\r\n'  # quiet, pedantic still on (the default)
CVP = b'CONNECT {"verbose":false,"pedantic":false}\r\n'
CH = b'CONNECT {"verbose":false,"headers":true}\r\n'
CNR = b'CONNECT {"verbose":false,"headers":true,"no_responders":true}\r\n'


# --------------------------------------------------------------------------------------------
# Default config: op names, separators, framing, PUB/SUB/UNSUB, CONNECT, routing.
# --------------------------------------------------------------------------------------------
OPS = [
    Case("ping", [ping()], I + PONG),
    Case("ping_lower", [send(b"ping\r\n"), pong()], I + PONG),
    Case("ping_mixed_case", [send(b"PiNg\r\n"), pong()], I + PONG),
    Case("ping_bare_lf", [send(b"PING\n"), pong()], I + PONG),
    Case("ping_trailing_args_ignored", [send(b"PING foo\r\n"), pong()], I + PONG),
    Case("ping_trailing_garbage_ignored", [send(b"PINGXYZ\r\nPING\r\n"), pong(), pong()], I + PONG + PONG),
    Case("pong_ignored", [send(b"PONG\r\npong\r\n"), ping()], I + PONG),
    Case("ok_ignored", [send(b"+OK\r\n+ok\r\n"), ping()], I + PONG),
    Case("pipelined_pings", [send(b"PING\r\nPING\r\nPING\r\n"), lines(3)], I + PONG * 3),
    Case("unknown_op", [send(b"FOO\r\n"), eof()], I + UNKNOWN + EOF),
    Case("unknown_op_after_good_ops", [send(b"PING\r\nFOO\r\n"), eof()], I + PONG + UNKNOWN + EOF),
    Case("unknown_op_ping_prefix", [send(b"PINX\r\n"), eof()], I + UNKNOWN + EOF),
    Case("unknown_op_pub_no_separator", [send(b"PUBX foo 1\r\n"), eof()], I + UNKNOWN + EOF),
    Case("unsub_without_separator", [send(b"UNSUB\r\n"), eof()], I + UNKNOWN + EOF),
    Case("sub_without_separator", [send(b"SUB\r\n"), eof()], I + UNKNOWN + EOF),
    Case("pub_without_separator", [send(b"PUB\r\n"), eof()], I + UNKNOWN + EOF),
    Case("msg_from_client", [send(b"MSG foo 1 2\r\nhi\r\n"), eof()], I + UNKNOWN + EOF),
    Case("hmsg_from_client", [send(b"HMSG foo 1 12 12\r\nNATS/1.0\r\n\r\n\r\n"), eof()], I + UNKNOWN + EOF),
    Case("route_op_from_client", [send(b"RS+ $G foo\r\n"), eof()], I + UNKNOWN + EOF),
    Case("leaf_op_from_client", [send(b"LS+ $G foo\r\n"), eof()], I + UNKNOWN + EOF),
    Case("err_from_client_closes_silently", [send(b"-ERR 'boom'\r\n"), eof()], I + EOF),
    Case("info_from_client_ignored", [send(b'INFO {"server_id":"x"}\r\n'), ping()], I + PONG),
    Case("info_from_client_bad_json", [send(b"INFO {nope\r\n"), eof()], I + EOF),
    Case("empty_line", [send(b"\r\n"), eof()], I + UNKNOWN + EOF),
    Case("leading_blank_before_op", [send(b" PING\r\n"), eof()], I + UNKNOWN + EOF),
    Case("connect_lower", [send(b'connect {"verbose":false}\r\nsub foo 1\r\n'), ping()], I + PONG),
    Case(
        "ops_case_insensitive",
        [send(CV + b"sUb foo 1\r\npUb foo 2\r\nhi\r\nUnSuB 1\r\nPub foo 2\r\nhi\r\n"), ping()],
        I + "MSG foo 1 2\r\nhi\r\n" + PONG,
    ),
]

FRAMING = [
    Case(
        "tabs_as_separators",
        [send(CV + b"SUB\tfoo\t1\r\nPUB\tfoo\t\t2\r\nhi\r\n"), ping()],
        I + "MSG foo 1 2\r\nhi\r\n" + PONG,
    ),
    Case(
        "runs_of_blanks_and_trailing_blanks",
        [send(CV + b"SUB   foo  \t 1   \r\nPUB  foo   2  \r\nhi\r\n"), ping()],
        I + "MSG foo 1 2\r\nhi\r\n" + PONG,
    ),
    Case(
        "bare_lf_line_ends",
        [send(CV + b"SUB foo 1\nPUB foo 2\nhi\r\n"), ping()],
        I + "MSG foo 1 2\r\nhi\r\n" + PONG,
    ),
    Case(
        "payload_may_contain_crlf",
        [send(CV + b"SUB foo 1\r\nPUB foo 6\r\n\r\nab\r\n\r\n"), ping()],
        I + "MSG foo 1 6\r\n\r\nab\r\n\r\n" + PONG,
    ),
    Case(
        "binary_payload",
        [send(CV + b"SUB foo 1\r\nPUB foo 4\r\n\x00\xff\n\r\r\n"), ping()],
        I + "MSG foo 1 4\r\n\x00\xff\n\r\r\n" + PONG,
    ),
    Case(
        "empty_payload",
        [send(CV + b"SUB foo 1\r\nPUB foo 0\r\n\r\n"), ping()],
        I + "MSG foo 1 0\r\n\r\n" + PONG,
    ),
    Case(
        "utf8_subject",
        [send(CV + "SUB föö.ñ 1\r\nPUB föö.ñ 1\r\nx\r\n".encode()), ping()],
        I + "MSG föö.ñ 1 1\r\nx\r\n".encode().decode("latin-1") + PONG,
    ),
    Case(
        "large_payload_in_many_reads",
        [send(CV + b"SUB big 1\r\nPUB big 300000\r\n" + BIG + b"\r\n"), ping(timeout=10)],
        I + "MSG big 1 300000\r\n" + BIG.decode("latin-1") + "\r\n" + PONG,
    ),
    Case(
        "extra_crlf_after_payload",
        [send(b"PUB foo 1\r\nx\r\n\r\n"), eof()],
        I + OK + UNKNOWN + EOF,
    ),
    Case(
        "payload_terminator_bare_lf",
        [send(CV + b"SUB foo 1\r\nPUB foo 2\r\nab\n"), eof()],
        I + UNKNOWN + EOF,
    ),
    Case(
        "payload_one_byte_too_long",
        [send(CV + b"SUB foo 1\r\nPUB foo 2\r\nabc\r\n"), eof()],
        I + UNKNOWN + EOF,
    ),
    Case(
        "pipelined_everything_in_one_write",
        [
            send(
                CV + b"SUB foo 1\r\nSUB bar 2\r\nPUB foo 1\r\na\r\nPUB bar r 1\r\nb\r\n"
                b"UNSUB 1\r\nPUB foo 1\r\nc\r\nPUB bar 1\r\nd\r\nPING\r\n"
            ),
            pong(),
        ],
        I + "MSG foo 1 1\r\na\r\nMSG bar 2 r 1\r\nb\r\nMSG bar 2 1\r\nd\r\n" + PONG,
    ),
    Case(
        "ops_before_error_fully_processed",
        [send(CV + b"SUB foo 1\r\nPUB foo 2\r\nhi\r\nBAD\r\n"), eof()],
        I + "MSG foo 1 2\r\nhi\r\n" + UNKNOWN + EOF,
    ),
    Case(
        "byte_by_byte_script",
        [
            sendb(
                b'CONNECT {"verbose":true,"headers":true}\r\nSUB foo.* q 1\r\nSUB bar.> 2\r\nPUB foo.x r.y 5\r\nhello\r\n'
                b"HPUB bar.z 12 14\r\nNATS/1.0\r\n\r\nhi\r\nUNSUB 2\r\nPUB bar.w 0\r\n\r\nPUB foo.w 0\r\n\r\nPING\r\n"
            ),
            pong(),
        ],
        I
        + OK * 4
        + "MSG foo.x 1 r.y 5\r\nhello\r\n"
        + OK
        + "HMSG bar.z 2 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"
        + OK * 3
        + "MSG foo.w 1 0\r\n\r\n"
        + PONG,
    ),
    Case(
        "split_inside_payload_and_crlf",
        [
            send(CV + b"SUB foo 1\r\nPUB foo 5\r\nhe"),
            send(b"llo\r"),
            send(b"\nPUB fo"),
            send(b"o 1\r\nx\r\n"),
            ping(),
        ],
        I + "MSG foo 1 5\r\nhello\r\nMSG foo 1 1\r\nx\r\n" + PONG,
    ),
]

MATCH_SUBS = [("b", b"foo.*"), ("c", b"foo.>"), ("d", b">"), ("e", b"foo"), ("f", b"Foo.bar")]

PUB_SUB = [
    Case("pub_verbose_default", [send(b"PUB foo 2\r\nhi\r\n"), ping()], I + OK + PONG),
    Case(
        "ok_before_own_msg",
        [send(b"SUB foo 1\r\nPUB foo 5\r\nhello\r\n"), ping()],
        I + OK + OK + "MSG foo 1 5\r\nhello\r\n" + PONG,
    ),
    Case(
        "pub_with_reply",
        [send(CV + b"SUB foo 1\r\nPUB foo bar.baz 2\r\nhi\r\n"), ping()],
        I + "MSG foo 1 bar.baz 2\r\nhi\r\n" + PONG,
    ),
    Case(
        "pub_size_leading_zeros_echoed",
        [send(CV + b"SUB foo 1\r\nPUB foo 05\r\nhello\r\nPUB foo r 0002\r\nhi\r\n"), ping()],
        I + "MSG foo 1 05\r\nhello\r\nMSG foo 1 r 0002\r\nhi\r\n" + PONG,
    ),
    Case("pub_one_arg_closes_silently", [send(b"PUB foo\r\n"), eof()], I + EOF),
    Case("pub_four_args_closes_silently", [send(b"PUB foo a b 2\r\nhi\r\n"), eof()], I + EOF),
    Case("pub_size_plus_sign", [send(b"PUB foo +5\r\nhello\r\n"), eof()], I + EOF),
    Case("pub_size_negative", [send(b"PUB foo -1\r\n"), eof()], I + EOF),
    Case("pub_size_ten_digits", [send(b"PUB foo 0000000002\r\nhi\r\n"), eof()], I + EOF),
    Case("pub_size_not_number", [send(b"PUB foo abc\r\n"), eof()], I + EOF),
    Case("pub_size_trailing_letter", [send(b"PUB foo 2x\r\nhi\r\n"), eof()], I + EOF),
    Case(
        "pub_nine_digit_size_over_max",
        [send(b"PUB foo 999999999\r\n"), eof()],
        I + "-ERR 'Maximum Payload Violation'\r\n" + EOF,
    ),
    Case(
        "subject_matching",
        [
            [send(CV + b"SUB " + subj + b" 1\r\n", c) for c, subj in MATCH_SUBS],
            [ping(c) for c, _ in MATCH_SUBS],
            send(
                CV + b"PUB foo.bar 1\r\na\r\nPUB foo.bar.baz 1\r\nb\r\nPUB foo 1\r\nc\r\nPUB bar 1\r\nd\r\n"
            ),
            ping(),
            [ping(c) for c, _ in MATCH_SUBS],
        ],
        {
            "a": I + PONG,
            "b": I + PONG + "MSG foo.bar 1 1\r\na\r\n" + PONG,
            "c": I + PONG + "MSG foo.bar 1 1\r\na\r\nMSG foo.bar.baz 1 1\r\nb\r\n" + PONG,
            "d": I
            + PONG
            + "MSG foo.bar 1 1\r\na\r\nMSG foo.bar.baz 1 1\r\nb\r\nMSG foo 1 1\r\nc\r\nMSG bar 1 1\r\nd\r\n"
            + PONG,
            "e": I + PONG + "MSG foo 1 1\r\nc\r\n" + PONG,
            "f": I + PONG + PONG,
        },
    ),
    Case(
        "pedantic_invalid_publish_subject_still_routed",
        [send(b'CONNECT {"verbose":true}\r\nSUB foo.* 1\r\nPUB foo.* 2\r\nhi\r\n'), ping()],
        I + OK + OK + "-ERR 'Invalid Publish Subject'\r\n" + OK + "MSG foo.* 1 2\r\nhi\r\n" + PONG,
    ),
    Case(
        "pedantic_empty_token_subject",
        [send(b'CONNECT {"verbose":true}\r\nSUB > 1\r\nPUB foo..bar 2\r\nhi\r\nPUB .foo 0\r\n\r\n'), ping()],
        I
        + OK
        + OK
        + "-ERR 'Invalid Publish Subject'\r\n"
        + OK
        + "-ERR 'Invalid Publish Subject'\r\n"
        + OK
        + PONG,
    ),
    Case(
        "pedantic_full_wildcard_publish",
        [send(CV + b"SUB > 1\r\nPUB foo.> 1\r\nx\r\nPUB > 1\r\ny\r\n"), ping()],
        I
        + "-ERR 'Invalid Publish Subject'\r\nMSG foo.> 1 1\r\nx\r\n"
        + "-ERR 'Invalid Publish Subject'\r\nMSG > 1 1\r\ny\r\n"
        + PONG,
    ),
    Case(
        "pedantic_off_wildcard_publish_literal",
        [send(CVP + b"SUB foo.* 1\r\nSUB foo.bar 2\r\nPUB foo.* 2\r\nhi\r\n"), ping()],
        I + "MSG foo.* 1 2\r\nhi\r\n" + PONG,
    ),
    Case(
        "pedantic_off_empty_token_matches_nothing",
        [
            send(
                CVP + b"SUB > 1\r\nSUB foo.> 2\r\nPUB foo..bar 1\r\na\r\nPUB foo. 1\r\nb\r\nPUB .x 1\r\nc\r\n"
            ),
            ping(),
        ],
        I + PONG,
    ),
    Case(
        "literal_star_inside_token",
        [send(b"SUB foo*bar.> 1\r\nPUB foo*bar.x 1\r\na\r\n"), ping()],
        I + OK + OK + "MSG foo*bar.x 1 1\r\na\r\n" + PONG,
    ),
    Case(
        "sub_validation_table",
        [
            send(
                b"SUB foo. 1\r\nSUB .foo 2\r\nSUB foo..bar 3\r\nSUB foo.>.bar 4\r\n"
                b"SUB > 5\r\nSUB foo*bar.> 6\r\nSUB * 7\r\nSUB foo.*.bar 8\r\nSUB *.> 9\r\nSUB >.foo 10\r\n"
            ),
            ping(),
        ],
        I + "-ERR 'Invalid Subject'\r\n" * 4 + OK * 5 + "-ERR 'Invalid Subject'\r\n" + PONG,
    ),
    Case("sub_one_arg_closes_silently", [send(b"SUB foo\r\n"), eof()], I + EOF),
    Case("sub_four_args_closes_silently", [send(b"SUB foo q 1 x\r\n"), eof()], I + EOF),
    Case(
        "sub_queue_sys_refused",
        [send(b"SUB foo _sys_ 1\r\n"), ping()],
        I + '-ERR \'Permissions Violation for Subscription to "foo" using queue "_sys_"\'\r\n' + PONG,
    ),
    Case(
        "sub_duplicate_sid_ignored",
        [send(CV + b"SUB foo 1\r\nSUB bar 1\r\nPUB bar 1\r\nb\r\nPUB foo 1\r\nf\r\n"), ping()],
        I + "MSG foo 1 1\r\nf\r\n" + PONG,
    ),
    Case(
        "reply_subject_not_validated",
        [send(b"SUB foo 1\r\nPUB foo bad..reply 1\r\nx\r\nPUB foo r.* 1\r\ny\r\n"), ping()],
        I + OK * 2 + "MSG foo 1 bad..reply 1\r\nx\r\n" + OK + "MSG foo 1 r.* 1\r\ny\r\n" + PONG,
    ),
    Case(
        "queue_name_any_token",
        [send(CV + b"SUB foo q.*> 1\r\nPUB foo 1\r\nx\r\n"), ping()],
        I + "MSG foo 1 1\r\nx\r\n" + PONG,
    ),
    Case(
        "sid_any_bytes",
        [
            send(CV + "SUB foo sid-ä.1\r\nPUB foo 1\r\nx\r\nUNSUB sid-ä.1\r\nPUB foo 1\r\ny\r\n".encode()),
            ping(),
        ],
        I + "MSG foo sid-ä.1 1\r\nx\r\n".encode().decode("latin-1") + PONG,
    ),
    Case(
        "sub_duplicate_sid_verbose",
        [send(b"SUB foo 1\r\nSUB bar 1\r\n"), ping()],
        I + OK + OK + PONG,
    ),
    Case(
        "subjects_case_sensitive",
        [send(CV + b"SUB foo 1\r\nPUB FOO 1\r\na\r\nPUB foo 1\r\nb\r\n"), ping()],
        I + "MSG foo 1 1\r\nb\r\n" + PONG,
    ),
    Case("unsub_unknown_sid_ok", [send(b"UNSUB 99\r\n"), ping()], I + OK + PONG),
    Case(
        "unsub_removes",
        [send(CV + b"SUB foo 1\r\nUNSUB 1\r\nPUB foo 1\r\na\r\n"), ping()],
        I + PONG,
    ),
    Case(
        "unsub_max_auto_unsubscribes",
        [
            send(CV + b"SUB foo 1\r\nUNSUB 1 2\r\n"),
            send(b"PUB foo 1\r\na\r\nPUB foo 1\r\nb\r\nPUB foo 1\r\nc\r\n"),
            ping(),
        ],
        I + "MSG foo 1 1\r\na\r\nMSG foo 1 1\r\nb\r\n" + PONG,
    ),
    Case(
        "unsub_max_after_deliveries",
        [
            send(CV + b"SUB foo 1\r\nPUB foo 1\r\na\r\nPUB foo 1\r\nb\r\nUNSUB 1 3\r\n"),
            send(b"PUB foo 1\r\nc\r\nPUB foo 1\r\nd\r\n"),
            ping(),
        ],
        I + "MSG foo 1 1\r\na\r\nMSG foo 1 1\r\nb\r\nMSG foo 1 1\r\nc\r\n" + PONG,
    ),
    Case(
        "unsub_max_already_reached_removes",
        [
            send(CV + b"SUB foo 1\r\nPUB foo 1\r\na\r\nPUB foo 1\r\nb\r\nUNSUB 1 1\r\nPUB foo 1\r\nc\r\n"),
            ping(),
        ],
        I + "MSG foo 1 1\r\na\r\nMSG foo 1 1\r\nb\r\n" + PONG,
    ),
    Case(
        "unsub_max_zero_removes_now",
        [send(CV + b"SUB foo 1\r\nUNSUB 1 0\r\nPUB foo 1\r\na\r\n"), ping()],
        I + PONG,
    ),
    Case(
        "unsub_max_leading_zeros",
        [
            send(CV + b"SUB foo 1\r\nUNSUB 1 02\r\nPUB foo 1\r\na\r\nPUB foo 1\r\nb\r\nPUB foo 1\r\nc\r\n"),
            ping(),
        ],
        I + "MSG foo 1 1\r\na\r\nMSG foo 1 1\r\nb\r\n" + PONG,
    ),
    Case(
        "unsub_max_not_a_number",
        [send(CV + b"SUB foo 1\r\nUNSUB 1 abc\r\nPUB foo 1\r\na\r\n"), ping()],
        I + PONG,
    ),
    Case(
        "unsub_twice_ok",
        [send(b"SUB foo 1\r\nUNSUB 1\r\nUNSUB 1\r\n"), ping()],
        I + OK * 3 + PONG,
    ),
    Case(
        "unsub_queue_subscription",
        [send(CV + b"SUB foo g 1\r\nUNSUB 1\r\nPUB foo 1\r\na\r\nSUB foo g 2\r\nPUB foo 1\r\nb\r\n"), ping()],
        I + "MSG foo 2 1\r\nb\r\n" + PONG,
    ),
    Case(
        "unsub_max_ten_digits_removes_now",
        [send(CV + b"SUB foo 1\r\nUNSUB 1 1234567890\r\nPUB foo 1\r\nx\r\n"), ping()],
        I + PONG,
    ),
    Case(
        "unsub_max_negative_removes_now",
        [send(CV + b"SUB foo 1\r\nUNSUB 1 -2\r\nPUB foo 1\r\nx\r\n"), ping()],
        I + PONG,
    ),
    Case(
        "unsub_max_nine_digits_keeps",
        [send(CV + b"SUB foo 1\r\nUNSUB 1 999999999\r\nPUB foo 1\r\nx\r\n"), ping()],
        I + "MSG foo 1 1\r\nx\r\n" + PONG,
    ),
    Case("unsub_three_args_closes_silently", [send(b"UNSUB 1 2 3\r\n"), eof()], I + EOF),
    Case(
        "echo_false_own_subs_skipped",
        [
            send(b'CONNECT {"verbose":false,"echo":false}\r\nSUB foo 1\r\n'),
            send(CV + b"SUB foo 7\r\n", "b"),
            ping("b"),
            send(b"PUB foo 1\r\na\r\n"),
            ping(),
            ping("b"),
        ],
        {"a": I + PONG, "b": I + PONG + "MSG foo 7 1\r\na\r\n" + PONG},
    ),
    Case(
        "echo_false_other_publisher_delivered",
        [
            send(b'CONNECT {"verbose":false,"echo":false}\r\nSUB foo 1\r\n'),
            ping(),
            send(CV + b"PUB foo 1\r\nz\r\n", "b"),
            ping("b"),
            ping(),
        ],
        {"a": I + PONG + "MSG foo 1 1\r\nz\r\n" + PONG, "b": I + PONG},
    ),
    Case(
        "cross_connection_delivery_with_reply",
        [
            send(CV + b"SUB svc.* 11\r\n", "b"),
            ping("b"),
            send(CV + b"PUB svc.x _INBOX.1 4\r\nping\r\n"),
            ping(),
            ping("b"),
        ],
        {"a": I + PONG, "b": I + PONG + "MSG svc.x 11 _INBOX.1 4\r\nping\r\n" + PONG},
    ),
]

CONNECT = [
    Case("connect_empty_object_ok", [send(b"CONNECT {}\r\n"), ping()], I + OK + PONG),
    Case("connect_verbose_false", [send(CV + b"SUB foo 1\r\nUNSUB 1\r\n"), ping()], I + PONG),
    Case("connect_without_space", [send(b'CONNECT{"verbose":false}\r\nSUB foo 1\r\n'), ping()], I + PONG),
    Case("connect_tab_separator", [send(b"CONNECT\t{}\r\n"), ping()], I + OK + PONG),
    Case(
        "connect_keys_case_insensitive",
        [send(b'CONNECT {"Verbose":false}\r\nSUB foo 1\r\n'), ping()],
        I + PONG,
    ),
    Case(
        "connect_unknown_keys_ignored",
        [send(b'CONNECT {"verbose":false,"zzz":[1,{}]}\r\n'), ping()],
        I + PONG,
    ),
    Case(
        "connect_duplicate_key_last_wins",
        [send(b'CONNECT {"verbose":false,"verbose":true}\r\n'), ping()],
        I + OK + PONG,
    ),
    Case("connect_null_keeps_value", [send(b'CONNECT {"verbose":null}\r\n'), ping()], I + OK + PONG),
    Case("connect_bad_json_closes_silently", [send(b"CONNECT {verbose:false}\r\n"), eof()], I + EOF),
    Case("connect_empty_closes_silently", [send(b"CONNECT\r\n"), eof()], I + EOF),
    Case("connect_wrong_type_closes_silently", [send(b'CONNECT {"verbose":"yes"}\r\n'), eof()], I + EOF),
    Case("connect_trailing_garbage_closes", [send(b"CONNECT {} extra\r\n"), eof()], I + EOF),
    Case("connect_array_closes", [send(b"CONNECT []\r\n"), eof()], I + EOF),
    Case("connect_string_closes", [send(b'CONNECT "x"\r\n'), eof()], I + EOF),
    Case("connect_number_for_bool_closes", [send(b'CONNECT {"verbose":1}\r\n'), eof()], I + EOF),
    Case("connect_echo_wrong_type_closes", [send(b'CONNECT {"echo":"no"}\r\n'), eof()], I + EOF),
    Case("connect_name_wrong_type_closes", [send(b'CONNECT {"name":5}\r\n'), eof()], I + EOF),
    Case("connect_json_null_is_noop", [send(b"CONNECT null\r\n"), ping()], I + OK + PONG),
    Case("connect_protocol_string_closes_silently", [send(b'CONNECT {"protocol":"1"}\r\n'), eof()], I + EOF),
    Case(
        "connect_protocol_2",
        [send(b'CONNECT {"protocol":2}\r\n'), eof()],
        I + "-ERR 'invalid client protocol'\r\n" + EOF,
    ),
    Case(
        "connect_protocol_negative",
        [send(b'CONNECT {"protocol":-1}\r\n'), eof()],
        I + "-ERR 'invalid client protocol'\r\n" + EOF,
    ),
    Case("connect_protocol_1_quiet_ok", [send(b'CONNECT {"protocol":1}\r\n'), wait(b"+OK\r\n")], I + OK),
    Case(
        "connect_no_responders_without_headers",
        [send(b'CONNECT {"no_responders":true}\r\n'), eof()],
        I + "-ERR 'no responders requires headers support'\r\n" + EOF,
    ),
    Case(
        "connect_account_field",
        [send(b'CONNECT {"account":"A"}\r\n'), eof()],
        I + "-ERR 'Authorization Violation'\r\n" + EOF,
    ),
    Case(
        "connect_new_account_field",
        [send(b'CONNECT {"new_account":true}\r\n'), eof()],
        I + "-ERR 'Authorization Violation'\r\n" + EOF,
    ),
    Case(
        "connect_creds_without_auth_ignored",
        [send(b'CONNECT {"user":"x","pass":"y","auth_token":"t"}\r\n'), ping()],
        I + OK + PONG,
    ),
    Case(
        "second_connect_switches_verbose",
        [
            send(CV + b'SUB foo 1\r\nCONNECT {"verbose":true}\r\nSUB bar 2\r\n' + CV + b"SUB baz 3\r\n"),
            ping(),
        ],
        I + OK + OK + PONG,
    ),
    Case(
        "second_connect_absent_keys_keep_values",
        [send(CV + b"CONNECT {}\r\nSUB bar 2\r\n"), ping()],
        I + PONG,
        notes="absent keys keep the connection's current value, not the defaults",
    ),
    Case(
        "second_connect_orphans_existing_subscriptions",
        [
            send(CV + b"SUB foo 1\r\n" + CV + b"SUB bar 2\r\n"),
            ping(),
            send(CV + b"PUB foo 1\r\nx\r\nPUB bar 1\r\ny\r\n", "b"),
            ping("b"),
            ping(),
        ],
        {"a": I + PONG + "MSG bar 2 1\r\ny\r\n" + PONG, "b": I + PONG},
        notes="nats-server quirk: subscriptions made before a second CONNECT receive nothing after it",
    ),
    Case(
        "connect_pedantic_key_case",
        [send(b'CONNECT {"verbose":false,"PEDANTIC":false}\r\nPUB foo.* 0\r\n\r\n'), ping()],
        I + PONG,
    ),
]

HEADERS = [
    Case(
        "hpub_without_headers_closes_silently",
        [send(b"HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"), eof()],
        I + EOF,
    ),
    Case(
        "hpub_connect_headers_false_closes",
        [send(b'CONNECT {"headers":false}\r\nHPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n'), eof()],
        I + OK + EOF,
    ),
    Case(
        "hpub_to_header_receiver",
        [send(CH + b"SUB foo 1\r\nHPUB foo r 18 20\r\nNATS/1.0\r\nA: B\r\n\r\nhi\r\n"), ping()],
        I + "HMSG foo 1 r 18 20\r\nNATS/1.0\r\nA: B\r\n\r\nhi\r\n" + PONG,
    ),
    Case(
        "hpub_sizes_leading_zeros_echoed",
        [send(CH + b"SUB foo 1\r\nHPUB foo 012 0014\r\nNATS/1.0\r\n\r\nhi\r\n"), ping()],
        I + "HMSG foo 1 012 0014\r\nNATS/1.0\r\n\r\nhi\r\n" + PONG,
    ),
    Case(
        "hpub_headers_stripped_for_plain_receiver",
        [
            send(CV + b"SUB foo 9\r\n", "b"),
            ping("b"),
            send(CH + b"HPUB foo r.1 18 23\r\nNATS/1.0\r\nA: B\r\n\r\nhello\r\n"),
            ping(),
            ping("b"),
        ],
        {"a": I + PONG, "b": I + PONG + "MSG foo 9 r.1 5\r\nhello\r\n" + PONG},
    ),
    Case(
        "hpub_zero_header_size_is_plain_msg",
        [send(CH + b"SUB foo 1\r\nHPUB foo 0 2\r\nhi\r\n"), ping()],
        I + "MSG foo 1 2\r\nhi\r\n" + PONG,
    ),
    Case(
        "hpub_header_larger_than_total_closes",
        [send(CH + b"HPUB foo 14 12\r\nNATS/1.0\r\n\r\nhi\r\n"), eof()],
        I + EOF,
    ),
    Case("hpub_two_args_closes", [send(CH + b"HPUB foo 12\r\n"), eof()], I + EOF),
    Case("hpub_five_args_closes", [send(CH + b"HPUB foo a b 12 14\r\n"), eof()], I + EOF),
    Case("hpub_bad_size_closes", [send(CH + b"HPUB foo 12 1x\r\n"), eof()], I + EOF),
    Case(
        "hpub_verbose_ok",
        [send(b'CONNECT {"headers":true}\r\nHPUB foo 12 12\r\nNATS/1.0\r\n\r\n\r\n'), ping()],
        I + OK + OK + PONG,
    ),
    Case(
        "hpub_pedantic_invalid_subject",
        [send(CH + b"SUB foo.* 1\r\nHPUB foo.* 12 12\r\nNATS/1.0\r\n\r\n\r\n"), ping()],
        I + "-ERR 'Invalid Publish Subject'\r\nHMSG foo.* 1 12 12\r\nNATS/1.0\r\n\r\n\r\n" + PONG,
    ),
    Case(
        "no_responders_503",
        [send(CNR + b"SUB _INBOX.x 1\r\nPUB req _INBOX.x 0\r\n\r\n"), ping()],
        I + "HMSG _INBOX.x 1 35 35\r\nNATS/1.0 503\r\nNats-Subject: req\r\n\r\n\r\n" + PONG,
    ),
    Case(
        "no_responders_wildcard_reply_sub",
        [send(CNR + b"SUB _INBOX.* 5\r\nHPUB svc.a _INBOX.y 12 12\r\nNATS/1.0\r\n\r\n\r\n"), ping()],
        I + "HMSG _INBOX.y 5 37 37\r\nNATS/1.0 503\r\nNats-Subject: svc.a\r\n\r\n\r\n" + PONG,
    ),
    Case(
        "no_responders_without_reply_sub",
        [send(CNR + b"PUB req _INBOX.x 0\r\n\r\n"), ping()],
        I + PONG,
    ),
    Case(
        "no_responders_off",
        [send(CH + b"SUB _INBOX.x 1\r\nPUB req _INBOX.x 0\r\n\r\n"), ping()],
        I + PONG,
    ),
    Case(
        "no_responders_with_responder",
        [
            send(CV + b"SUB req 3\r\n", "b"),
            ping("b"),
            send(CNR + b"SUB _INBOX.x 1\r\nPUB req _INBOX.x 1\r\nq\r\n"),
            ping(),
            ping("b"),
        ],
        {"a": I + PONG, "b": I + PONG + "MSG req 3 _INBOX.x 1\r\nq\r\n" + PONG},
    ),
]

RESERVED = [
    Case(
        "reserved_gr_publish",
        [send(b"SUB > 1\r\nPUB _GR_.x 1\r\na\r\n"), ping()],
        I + OK + "-ERR 'Permissions Violation for Publish to \"_GR_.x\"'\r\n" + PONG,
    ),
    Case(
        "reserved_nrg_publish",
        [send(CV + b"SUB > 1\r\nPUB $NRG.x 1\r\na\r\n"), ping()],
        I + "-ERR 'Permissions Violation for Publish to \"$NRG.x\"'\r\n" + PONG,
    ),
    Case(
        "reserved_r_reply",
        [send(CV + b"SUB > 1\r\nPUB foo _R_.x 1\r\na\r\n"), ping()],
        I + "-ERR 'Permissions Violation for Publish with Reply of \"_R_.x\"'\r\n" + PONG,
    ),
    Case(
        "reserved_js_ack_reply",
        [send(CV + b"SUB > 1\r\nPUB foo $JS.ACK.x 1\r\na\r\n"), ping()],
        I + "-ERR 'Permissions Violation for Publish with Reply of \"$JS.ACK.x\"'\r\n" + PONG,
    ),
    Case(
        "reserved_gr_reply",
        [send(CV + b"SUB > 1\r\nPUB foo _GR_.x 1\r\na\r\n"), ping()],
        I + "-ERR 'Permissions Violation for Publish with Reply of \"_GR_.x\"'\r\n" + PONG,
    ),
    Case(
        "reserved_prefix_needs_dot",
        [send(CV + b"SUB > 1\r\nPUB _GR_ 1\r\na\r\nPUB foo _R_ 1\r\nb\r\n"), ping()],
        I + "MSG _GR_ 1 1\r\na\r\nMSG foo 1 _R_ 1\r\nb\r\n" + PONG,
    ),
    Case(
        "permission_error_go_quoting",
        [send(CV + b'PUB _GR_."q\\\x01 1\r\na\r\n'), ping()],
        I + '-ERR \'Permissions Violation for Publish to "_GR_.\\"q\\\\\\x01"\'\r\n' + PONG,
    ),
]

DEFAULT_CASES = OPS + FRAMING + PUB_SUB + CONNECT + HEADERS + RESERVED

# --------------------------------------------------------------------------------------------
# Limits (each its own config).
# --------------------------------------------------------------------------------------------
MAX_PAYLOAD = "max_payload: 16\n"
MAX_CONTROL_LINE = "max_control_line: 32\n"
MAX_SUBS = "max_subscriptions: 2\n"
MAX_SUB_TOKENS = "max_sub_tokens: 3\n"
NO_HEADERS = "no_header_support: true\n"

LIMIT_CASES = [
    Case(
        "max_payload_exact_ok",
        [send(CV + b"SUB foo 1\r\nPUB foo 16\r\n0123456789abcdef\r\n"), ping()],
        I + "MSG foo 1 16\r\n0123456789abcdef\r\n" + PONG,
        config=MAX_PAYLOAD,
    ),
    Case(
        "max_payload_exceeded",
        [send(CV + b"PUB foo 17\r\n"), eof()],
        I + "-ERR 'Maximum Payload Violation'\r\n" + EOF,
        config=MAX_PAYLOAD,
    ),
    Case(
        "max_payload_checked_before_payload",
        [send(CV + b"PUB foo 00017\r\n"), eof()],
        I + "-ERR 'Maximum Payload Violation'\r\n" + EOF,
        config=MAX_PAYLOAD,
    ),
    Case(
        "max_payload_hpub_total",
        [send(CH + b"HPUB foo 12 17\r\n"), eof()],
        I + "-ERR 'Maximum Payload Violation'\r\n" + EOF,
        config=MAX_PAYLOAD,
    ),
    Case(
        "max_control_line_exact_ok",
        # 32 bytes of arguments: the limit counts what follows the op name and its blank
        [send(CV + b"SUB " + b"a" * 30 + b" 1\r\nPUB " + b"a" * 30 + b" 1\nx\r\n"), ping()],
        I + "MSG " + "a" * 30 + " 1 1\r\nx\r\n" + PONG,
        config=MAX_CONTROL_LINE,
    ),
    Case(
        "max_control_line_pub_one_over",
        [send(CV + b"PUB " + b"a" * 31 + b" 1\r\nx\r\n"), eof()],
        I + "-ERR 'maximum control line exceeded'\r\n" + EOF,
        config=MAX_CONTROL_LINE,
    ),
    Case(
        "max_control_line_sub_one_over",
        [send(CV + b"SUB " + b"a" * 31 + b" 1\n"), eof()],
        I + "-ERR 'maximum control line exceeded'\r\n" + EOF,
        config=MAX_CONTROL_LINE,
    ),
    Case(
        "max_control_line_trailing_blanks_count",
        [send(CV + b"SUB " + b"a" * 30 + b" 1 \r\n"), eof()],
        I + "-ERR 'maximum control line exceeded'\r\n" + EOF,
        config=MAX_CONTROL_LINE,
    ),
    Case(
        "max_control_line_leading_blanks_skipped",
        [send(CV + b"SUB " + b" \t" * 10 + b"a" * 30 + b" 1\r\n"), ping()],
        I + PONG,
        config=MAX_CONTROL_LINE,
    ),
    Case(
        "max_control_line_not_for_ping_pong_ok",
        [
            send(b"PING " + b"a" * 100 + b"\r\nPONG " + b"b" * 100 + b"\r\n+OK " + b"c" * 100 + b"\r\n"),
            pong(),
            ping(),
        ],
        I + PONG + PONG,
        config=MAX_CONTROL_LINE,
    ),
    Case(
        "max_control_line_unsub",
        [send(b"UNSUB " + b"a" * 40 + b"\r\n"), eof()],
        I + "-ERR 'maximum control line exceeded'\r\n" + EOF,
        config=MAX_CONTROL_LINE,
    ),
    Case(
        "max_control_line_client_info",
        [send(b'INFO {"a":"' + b"a" * 40 + b'"}\r\n'), eof()],
        I + "-ERR 'maximum control line exceeded'\r\n" + EOF,
        config=MAX_CONTROL_LINE,
    ),
    Case(
        "max_control_line_client_err",
        [send(b"-ERR '" + b"a" * 40 + b"'\r\n"), eof()],
        I + "-ERR 'maximum control line exceeded'\r\n" + EOF,
        config=MAX_CONTROL_LINE,
    ),
    Case(
        "max_control_line_exceeded",
        [send(CV + b"SUB " + b"a" * 40 + b" 1\r\n"), eof()],
        I + "-ERR 'maximum control line exceeded'\r\n" + EOF,
        config=MAX_CONTROL_LINE,
    ),
    Case(
        "max_control_line_partial_line",
        [send(CV + b"PUB " + b"a" * 100), eof()],
        I + "-ERR 'maximum control line exceeded'\r\n" + EOF,
        config=MAX_CONTROL_LINE,
    ),
    Case(
        "max_control_line_connect",
        [send(b'CONNECT {"verbose":false,"name":"' + b"n" * 64 + b'"}\r\n'), eof()],
        I + "-ERR 'maximum control line exceeded'\r\n" + EOF,
        config=MAX_CONTROL_LINE,
    ),
    Case(
        "max_subscriptions",
        [send(b"SUB a 1\r\nSUB b 2\r\nSUB c 3\r\nUNSUB 1\r\nSUB d 4\r\n"), ping()],
        I + OK + OK + "-ERR 'maximum subscriptions exceeded'\r\n" + OK + OK + PONG,
        config=MAX_SUBS,
    ),
    Case(
        "max_sub_tokens",
        [send(b"SUB a.b.c 1\r\nSUB a.b.c.d 2\r\nSUB a.b.c.d q 3\r\n"), ping()],
        I
        + OK
        + "-ERR 'Permissions Violation for Subscription to \"a.b.c.d\", too many tokens'\r\n"
        + "-ERR 'Permissions Violation for Subscription to \"a.b.c.d\", too many tokens'\r\n"
        + PONG,
        config=MAX_SUB_TOKENS,
    ),
    Case(
        "no_header_support_hpub_closes",
        [send(b'CONNECT {"headers":true}\r\nHPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n'), eof()],
        I + OK + EOF,
        config=NO_HEADERS,
    ),
    Case(
        "no_header_support_no_responders",
        [send(b'CONNECT {"headers":true,"no_responders":true}\r\n'), eof()],
        I + "-ERR 'no responders requires headers support'\r\n" + EOF,
        config=NO_HEADERS,
    ),
]

# --------------------------------------------------------------------------------------------
# Authorization.
# --------------------------------------------------------------------------------------------
USERS = """
authorization {
  users: [
    { user: alice, password: pa,
      permissions: {
        publish: { allow: ["foo.>", "req"], deny: ["foo.secret"] }
        subscribe: { allow: ["bar", "bar.>", "q.* grp", "_INBOX.>"], deny: ["bar.x"] }
      }
    }
    { user: bob, password: pb }
  ]
}
"""
TOKEN = 'authorization { token: "s3cret" }\n'
AUTH_TIMEOUT = "authorization { user: u, password: p, timeout: 0.5 }\n"

PW_HASH = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()  # same text for both servers
BCRYPT = f'authorization {{ users: [{{user: h, password: "{PW_HASH}"}}] }}\n'
RESPONSES = """
authorization { users: [
  { user: svc, password: s, permissions: { subscribe: "req", allow_responses: true } }
  { user: cli, password: c }
] }
"""
NO_AUTH_USER = """
authorization { users: [
  { user: anon, password: x, permissions: { publish: "ok.>", subscribe: "ok.>" } }
  { user: full, password: f }
] }
no_auth_user: anon
"""
SVC = b'CONNECT {"verbose":false,"user":"svc","pass":"s"}\r\n'
CLI = b'CONNECT {"verbose":false,"user":"cli","pass":"c"}\r\n'

ALICE = b'CONNECT {"verbose":false,"user":"alice","pass":"pa"}\r\n'
BOB = b'CONNECT {"verbose":false,"user":"bob","pass":"pb"}\r\n'
AUTHZ = "-ERR 'Authorization Violation'\r\n"

AUTH_CASES = [
    Case("auth_ping_before_connect", [send(b"PING\r\n"), eof()], I + AUTHZ + EOF, config=USERS),
    Case("auth_sub_before_connect", [send(b"SUB foo 1\r\n"), eof()], I + AUTHZ + EOF, config=USERS),
    Case("auth_no_credentials", [send(b"CONNECT {}\r\n"), eof()], I + AUTHZ + EOF, config=USERS),
    Case(
        "auth_bad_password",
        [send(b'CONNECT {"user":"alice","pass":"nope"}\r\n'), eof()],
        I + AUTHZ + EOF,
        config=USERS,
    ),
    Case(
        "auth_unknown_user",
        [send(b'CONNECT {"user":"carol","pass":"pa"}\r\n'), eof()],
        I + AUTHZ + EOF,
        config=USERS,
    ),
    Case(
        "auth_ok_verbose",
        [send(b'CONNECT {"user":"bob","pass":"pb"}\r\n'), ping()],
        I + OK + PONG,
        config=USERS,
    ),
    Case(
        "auth_second_connect_bad_credentials",
        [send(BOB + b'CONNECT {"user":"bob","pass":"x"}\r\n'), eof()],
        I + AUTHZ + EOF,
        config=USERS,
    ),
    Case(
        "perm_publish_allowed_and_denied",
        [
            send(BOB + b"SUB > 1\r\n", "b"),
            ping("b"),
            send(
                ALICE + b"PUB foo.a 1\r\na\r\nPUB foo.secret 1\r\nb\r\nPUB baz 1\r\nc\r\nPUB req 1\r\nd\r\n"
            ),
            ping(),
            ping("b"),
        ],
        {
            "a": I
            + "-ERR 'Permissions Violation for Publish to \"foo.secret\"'\r\n"
            + "-ERR 'Permissions Violation for Publish to \"baz\"'\r\n"
            + PONG,
            "b": I + PONG + "MSG foo.a 1 1\r\na\r\nMSG req 1 1\r\nd\r\n" + PONG,
        },
        config=USERS,
    ),
    Case(
        "perm_publish_denied_verbose_no_ok",
        [send(b'CONNECT {"user":"alice","pass":"pa"}\r\nPUB baz 0\r\n\r\nPUB foo.x 0\r\n\r\n'), ping()],
        I + OK + "-ERR 'Permissions Violation for Publish to \"baz\"'\r\n" + OK + PONG,
        config=USERS,
    ),
    Case(
        "perm_subscribe_table",
        [
            send(ALICE + b"SUB bar 1\r\nSUB baz 2\r\nSUB q.x 3\r\nSUB q.x grp 4\r\nSUB q.x other 5\r\n"),
            send(b"SUB bar.x 6\r\nSUB bar.* 7\r\nSUB > 8\r\n"),
            ping(),
        ],
        I
        + "-ERR 'Permissions Violation for Subscription to \"baz\"'\r\n"
        + "-ERR 'Permissions Violation for Subscription to \"q.x\"'\r\n"
        + '-ERR \'Permissions Violation for Subscription to "q.x" using queue "other"\'\r\n'
        + "-ERR 'Permissions Violation for Subscription to \"bar.x\"'\r\n"
        + "-ERR 'Permissions Violation for Subscription to \">\"'\r\n"
        + PONG,
        config=USERS,
    ),
    Case(
        "perm_wildcard_sub_overlapping_deny_filtered",
        [
            send(ALICE + b"SUB bar.* 7\r\n"),
            ping(),
            send(BOB + b"PUB bar.x 1\r\nx\r\nPUB bar.y 1\r\ny\r\n", "b"),
            ping("b"),
            ping(),
        ],
        {"a": I + PONG + "MSG bar.y 7 1\r\ny\r\n" + PONG, "b": I + PONG},
        config=USERS,
    ),
    Case(
        "perm_unrestricted_user",
        [send(BOB + b"SUB baz 1\r\nPUB baz 1\r\nz\r\n"), ping()],
        I + "MSG baz 1 1\r\nz\r\n" + PONG,
        config=USERS,
    ),
    Case(
        "auth_then_protocol_check_order",
        [send(b'CONNECT {"user":"bob","pass":"pb","protocol":2}\r\n'), eof()],
        I + "-ERR 'invalid client protocol'\r\n" + EOF,
        config=USERS,
    ),
    Case(
        "auth_failure_before_protocol_check",
        [send(b'CONNECT {"user":"bob","pass":"xx","protocol":2}\r\n'), eof()],
        I + AUTHZ + EOF,
        config=USERS,
    ),
    Case(
        "bcrypt_password_ok",
        [send(b'CONNECT {"user":"h","pass":"pw"}\r\n'), ping()],
        I + OK + PONG,
        config=BCRYPT,
    ),
    Case(
        "bcrypt_hash_as_password_refused",
        [send(b'CONNECT {"user":"h","pass":"' + PW_HASH.encode() + b'"}\r\n'), eof()],
        I + AUTHZ + EOF,
        config=BCRYPT,
    ),
    Case(
        "allow_responses_once",
        [
            send(SVC + b"SUB req 1\r\n", "s"),
            ping("s"),
            send(CLI + b"SUB resp.1 5\r\nPUB req resp.1 1\r\nq\r\n", "c"),
            ping("c"),
            wait(b"q\r\n", "s"),
            send(b"PUB resp.1 1\r\nA\r\nPUB resp.1 1\r\nB\r\nPUB other 1\r\nC\r\n", "s"),
            ping("s"),
            ping("c"),
        ],
        {
            "s": I
            + PONG
            + "MSG req 1 resp.1 1\r\nq\r\n"
            + "-ERR 'Permissions Violation for Publish to \"resp.1\"'\r\n"
            + "-ERR 'Permissions Violation for Publish to \"other\"'\r\n"
            + PONG,
            "c": I + PONG + "MSG resp.1 5 1\r\nA\r\n" + PONG,
        },
        config=RESPONSES,
    ),
    Case(
        "no_auth_user_ops_before_connect",
        [send(b"SUB ok.x 1\r\nSUB no 2\r\nPUB ok.x 1\r\na\r\nPUB no 1\r\nb\r\n"), ping()],
        I
        + OK
        + "-ERR 'Permissions Violation for Subscription to \"no\"'\r\n"
        + OK
        + "MSG ok.x 1 1\r\na\r\n"
        + "-ERR 'Permissions Violation for Publish to \"no\"'\r\n"
        + PONG,
        config=NO_AUTH_USER,
    ),
    Case(
        "no_auth_user_connect_without_credentials",
        [send(b'CONNECT {"verbose":false}\r\nPUB no 0\r\n\r\n'), ping()],
        I + "-ERR 'Permissions Violation for Publish to \"no\"'\r\n" + PONG,
        config=NO_AUTH_USER,
    ),
    Case(
        "no_auth_user_other_user",
        [send(b'CONNECT {"verbose":false,"user":"full","pass":"f"}\r\nPUB no 0\r\n\r\n'), ping()],
        I + PONG,
        config=NO_AUTH_USER,
    ),
    Case(
        "no_auth_user_bad_credentials",
        [send(b'CONNECT {"user":"full","pass":"zz"}\r\n'), eof()],
        I + AUTHZ + EOF,
        config=NO_AUTH_USER,
    ),
    Case("token_ok", [send(b'CONNECT {"auth_token":"s3cret"}\r\n'), ping()], I + OK + PONG, config=TOKEN),
    Case("token_bad", [send(b'CONNECT {"auth_token":"nope"}\r\n'), eof()], I + AUTHZ + EOF, config=TOKEN),
    Case(
        "token_user_pass_instead",
        [send(b'CONNECT {"user":"s3cret","pass":"s3cret"}\r\n'), eof()],
        I + AUTHZ + EOF,
        config=TOKEN,
    ),
    Case(
        "auth_timeout", [eof(timeout=5)], I + "-ERR 'Authentication Timeout'\r\n" + EOF, config=AUTH_TIMEOUT
    ),
    Case(
        "auth_timeout_partial_connect",
        [send(b'CONNECT {"user":"u"'), eof(timeout=5)],
        I + "-ERR 'Authentication Timeout'\r\n" + EOF,
        config=AUTH_TIMEOUT,
    ),
    Case(
        "auth_timeout_cancelled_by_connect",
        [send(b'CONNECT {"verbose":false,"user":"u","pass":"p"}\r\n'), ping(), wait(b"never", timeout=1.0)],
        I + PONG + "<TIMEOUT in wait b'never'>",
        config=AUTH_TIMEOUT,
    ),
]

# --------------------------------------------------------------------------------------------
# Connection limits and keep-alive timers.
# --------------------------------------------------------------------------------------------
MAX_CONN = "max_connections: 1\n"
PING_1S = 'ping_interval: "1s"\nping_max: 2\n'
STALE = "PING\r\nPING\r\n-ERR 'Stale Connection'\r\n"

TIMER_CASES = [
    Case(
        "max_connections_exceeded",
        [ping("a"), eof("b"), ping("a")],
        {"a": I + PONG + PONG, "b": I + "-ERR 'maximum connections exceeded'\r\n" + EOF},
        config=MAX_CONN,
    ),
    Case(
        "stale_connection_without_connect",
        [lines(3, timeout=6), eof(timeout=3)],
        I + STALE + EOF,
        config=PING_1S,
    ),
    Case(
        "stale_connection_after_connect",
        [send(CV), lines(3, timeout=6), eof(timeout=3)],
        I + STALE + EOF,
        config=PING_1S,
    ),
    Case(
        "pong_answers_keep_connection",
        [
            send(CV),
            wait(b"PING\r\n", timeout=3),
            send(b"PONG\r\n"),
            wait(b"PING\r\n", timeout=3),
            send(b"PONG\r\n"),
            wait(b"PING\r\n", timeout=3),
            send(b"PONG\r\n"),
            ping(),
        ],
        I + "PING\r\n" * 3 + PONG,
        config=PING_1S,
    ),
]

ALL_CASES = DEFAULT_CASES + LIMIT_CASES + AUTH_CASES + TIMER_CASES


@pytest.mark.parametrize("case", case_params(ALL_CASES))
def test_protocol_case(case: Case, impl: str, server_pool: ServerPool) -> None:
    srv = server_pool.get(impl, case.config, case.flags)
    got = run_script(srv.host, srv.port, case.steps)
    expected = case.expected()
    assert as_lines(got) == as_lines(expected), f"{impl} transcript differs from nats-server's"


# --------------------------------------------------------------------------------------------
# Queue groups: which member gets a message is random, so these count instead of comparing
# transcripts byte for byte.
# --------------------------------------------------------------------------------------------
def _msgs(c: RawClient) -> list[bytes]:
    """Payloads of the MSG lines received (one-line payloads)."""
    data = bytes(c.received)
    return [m.group(1) for m in re.finditer(rb"MSG [^\r\n]*\r\n([^\r\n]*)\r\n", data)]


def _clients(srv: ServerProcess, subs: dict[str, bytes], connect: bytes = CV) -> dict[str, RawClient]:
    out: dict[str, RawClient] = {}
    for name, sub in subs.items():
        c = RawClient(srv.host, srv.port)
        c.read_line()
        c.send(connect + sub)
        c.ping()
        out[name] = c
    return out


def _publish_and_sync(
    srv: ServerProcess, pub: RawClient, n: int, subject: bytes, clients: list[RawClient]
) -> None:
    pub.send(b"".join(b"PUB %s %d\r\n%d\r\n" % (subject, len(str(i)), i) for i in range(n)))
    pub.ping()
    for c in clients:
        c.ping()


def test_queue_group_one_copy_per_group(impl: str, server_pool: ServerPool) -> None:
    srv = server_pool.get(impl)
    subs = _clients(
        srv,
        {
            "g1": b"SUB foo g 1\r\n",
            "g2": b"SUB foo g 2\r\n",
            "h1": b"SUB foo h 3\r\n",
            "plain": b"SUB foo 4\r\n",
            "wild_g": b"SUB foo.* g 5\r\n",  # same queue name on another subject: not matched here
        },
    )
    pub = RawClient(srv.host, srv.port)
    try:
        pub.read_line()
        pub.send(CV)
        _publish_and_sync(srv, pub, 40, b"foo", list(subs.values()))
        want = [str(i).encode() for i in range(40)]
        g = _msgs(subs["g1"]) + _msgs(subs["g2"])
        assert sorted(g, key=int) == want  # every message exactly once in group g
        assert _msgs(subs["g1"]) and _msgs(subs["g2"])  # spread over both members (p(fail) = 2**-39)
        assert _msgs(subs["h1"]) == want and _msgs(subs["plain"]) == want
        assert _msgs(subs["wild_g"]) == []
        assert b"MSG foo 1 " in bytes(subs["g1"].received) and b"MSG foo 3 " in bytes(subs["h1"].received)
    finally:
        pub.close()
        for c in subs.values():
            c.close()


def test_queue_group_spans_subjects(impl: str, server_pool: ServerPool) -> None:
    """Grouping is by queue name over the whole match: two subs of group g on overlapping
    subjects still get one copy between them."""
    srv = server_pool.get(impl)
    subs = _clients(srv, {"star": b"SUB foo.* g 1\r\n", "gt": b"SUB foo.> g 2\r\n"})
    pub = RawClient(srv.host, srv.port)
    try:
        pub.read_line()
        pub.send(CV)
        _publish_and_sync(srv, pub, 30, b"foo.x", list(subs.values()))
        got = _msgs(subs["star"]) + _msgs(subs["gt"])
        assert sorted(got, key=int) == [str(i).encode() for i in range(30)]
    finally:
        pub.close()
        for c in subs.values():
            c.close()


def test_queue_group_echo_false_member_skipped(impl: str, server_pool: ServerPool) -> None:
    """A publisher with echo=false that is itself a member: another member takes every message."""
    srv = server_pool.get(impl)
    subs = _clients(srv, {"other": b"SUB foo g 1\r\n"})
    pub = RawClient(srv.host, srv.port)
    try:
        pub.read_line()
        pub.send(b'CONNECT {"verbose":false,"echo":false}\r\nSUB foo g 9\r\n')
        _publish_and_sync(srv, pub, 20, b"foo", list(subs.values()))
        assert _msgs(pub) == []
        assert _msgs(subs["other"]) == [str(i).encode() for i in range(20)]
    finally:
        pub.close()
        for c in subs.values():
            c.close()


def test_queue_group_single_connection_two_members(impl: str, server_pool: ServerPool) -> None:
    srv = server_pool.get(impl)
    with RawClient(srv.host, srv.port) as c:
        c.read_line()
        c.send(CV + b"SUB foo g 1\r\nSUB foo g 2\r\n")
        c.send(b"".join(b"PUB foo 1\r\n%d\r\n" % (i % 10) for i in range(30)))
        c.ping()
        data = bytes(c.received)
        sids = re.findall(rb"MSG foo (\d) 1\r\n", data)
        assert len(sids) == 30
        assert set(sids) == {b"1", b"2"}
