"""Go value spellings used by the monitoring endpoints (pynatsd.monitor.gofmt)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pynatsd.monitor import gofmt


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (1, "1ns"),
        (999, "999ns"),
        (1000, "1µs"),
        (1500, "1.5µs"),
        (6_420_931, "6.420931ms"),  # observed in nats-server's /connz rtt
        (601_034_090, "601.03409ms"),
        (1_000_000_000, "1s"),
        (1_500_000_000, "1.5s"),
        (62_000_000_000, "1m2s"),
        (3_600_000_000_000, "1h0m0s"),
        (3_723_000_000_001, "1h2m3.000000001s"),
        (-1_500_000_000, "-1.5s"),
    ],
)
def test_go_duration(ns: int, text: str) -> None:
    assert gofmt.go_duration(ns) == text


def test_rtt_truncates_to_microseconds_below_a_millisecond() -> None:
    assert gofmt.rtt_string(None) == "0s"
    assert gofmt.rtt_string(0.0) == "0s"
    assert gofmt.rtt_string(0.000123456) == "123µs"
    assert gofmt.rtt_string(0.0064209310) == "6.420931ms"


@pytest.mark.parametrize(
    ("secs", "text"),
    [
        (0, "0s"),
        (0.9, "0s"),
        (22, "22s"),
        (65, "1m5s"),
        (3600, "1h0m0s"),
        (2 * 86400 + 3 * 3600 + 1, "2d3h0m1s"),
        (365 * 86400 + 61, "1y0d0h1m1s"),
    ],
)
def test_uptime(secs: float, text: str) -> None:
    assert gofmt.uptime(secs) == text


def test_rfc3339() -> None:
    t = dt.datetime(2026, 11, 26, 21, 7, 43, 456450, tzinfo=dt.UTC)
    assert gofmt.rfc3339(t) == "2026-11-26T21:07:43.45645Z"
    assert gofmt.rfc3339(t.replace(microsecond=0)) == "2026-11-26T21:07:43Z"
    plus2 = dt.timezone(dt.timedelta(hours=2))
    assert gofmt.rfc3339(dt.datetime(2026, 1, 1, 2, 0, 0, tzinfo=plus2)) == "2026-01-01T00:00:00Z"


@pytest.mark.parametrize("s", ["1", "t", "T", "TRUE", "true", "True"])
def test_parse_bool_true(s: str) -> None:
    assert gofmt.parse_bool(s) is True


@pytest.mark.parametrize("s", ["0", "f", "F", "FALSE", "false", "False"])
def test_parse_bool_false(s: str) -> None:
    assert gofmt.parse_bool(s) is False


def test_parse_errors_have_go_text() -> None:
    with pytest.raises(gofmt.GoParseError) as e:
        gofmt.parse_bool("x")
    assert str(e.value) == 'strconv.ParseBool: parsing "x": invalid syntax'  # observed
    with pytest.raises(gofmt.GoParseError) as e:
        gofmt.atoi("abc")
    assert str(e.value) == 'strconv.Atoi: parsing "abc": invalid syntax'  # observed
    with pytest.raises(gofmt.GoParseError) as e:
        gofmt.parse_uint64("-1")
    assert str(e.value) == 'strconv.ParseUint: parsing "-1": invalid syntax'  # observed
    with pytest.raises(gofmt.GoParseError) as e:
        gofmt.atoi("99999999999999999999")
    assert str(e.value) == 'strconv.Atoi: parsing "99999999999999999999": value out of range'
    with pytest.raises(gofmt.GoParseError) as e:
        gofmt.parse_uint64("18446744073709551616")
    assert str(e.value).endswith("value out of range")
    with pytest.raises(gofmt.GoParseError):
        gofmt.atoi("+")


def test_atoi_and_uint_ranges() -> None:
    assert gofmt.atoi("-5") == -5
    assert gofmt.atoi("+7") == 7
    assert gofmt.atoi("9223372036854775807") == 2**63 - 1
    assert gofmt.atoi("-9223372036854775808") == -(2**63)
    with pytest.raises(gofmt.GoParseError):
        gofmt.atoi("9223372036854775808")
    assert gofmt.parse_uint64("18446744073709551615") == 2**64 - 1
    with pytest.raises(gofmt.GoParseError):
        gofmt.parse_uint64("+1")


def test_go_quote() -> None:
    assert gofmt.go_quote('a"b\\c') == '"a\\"b\\\\c"'
    assert gofmt.go_quote("x\n\t\x01") == '"x\\n\\t\\x01"'
    assert gofmt.go_quote("é") == '"é"'


@pytest.mark.parametrize(
    ("f", "text"),
    [
        (0.0, "0"),
        (2.0, "2"),
        (0.5, "0.5"),
        (0.2857142857142857, "0.2857142857142857"),  # observed cache_hit_rate
        (1.5e-5, "0.000015"),
        (1e-7, "1e-7"),
        (1e21, "1e+21"),
        (123456789.0, "123456789"),
    ],
)
def test_go_float(f: float, text: str) -> None:
    assert gofmt.go_float(f) == text


def test_go_json_layout_matches_marshal_indent() -> None:
    v = {"a": 1, "b": [], "c": {}, "d": [1, {"e": None}], "f": True, "g": "<&>"}
    out = gofmt.go_json(v).decode()
    assert out == (
        "{\n"
        '  "a": 1,\n'
        '  "b": [],\n'
        '  "c": {},\n'
        '  "d": [\n'
        "    1,\n"
        "    {\n"
        '      "e": null\n'
        "    }\n"
        "  ],\n"
        '  "f": true,\n'
        '  "g": "\\u003c\\u0026\\u003e"\n'
        "}"
    )
    assert gofmt.go_json({"status": "ok"}, indent=False) == b'{"status":"ok"}'


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=12,
)


def _same(orig: object, back: object) -> bool:
    """Equal as Go would read it back: a float may come back as an integer literal."""
    if isinstance(orig, float):
        return isinstance(back, int | float) and not isinstance(back, bool) and float(back) == orig
    if isinstance(orig, list):
        return isinstance(back, list) and len(orig) == len(back) and all(map(_same, orig, back))
    if isinstance(orig, dict):
        return isinstance(back, dict) and orig.keys() == back.keys() and all(_same(orig[k], back[k]) for k in orig)
    return type(orig) is type(back) and orig == back


@given(json_values)
def test_go_json_round_trips(v: object) -> None:
    for indent in (True, False):
        assert _same(v, json.loads(gofmt.go_json(v, indent=indent)))
