"""The conf lexer and parser: every lexical rule, variables, includes, positions and errors.

Expected values are nats-server 2.15.1's (checked against the binary; the differential checks
of whole files are in test_conf_fixtures.py).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pynatsd.config.parser import ConfList, ConfMap, config_digest, parse, parse_file
from pynatsd.errors import ConfigError


def p(text: str) -> ConfMap:
    return parse(text, "t.conf")


def err(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as ei:
        parse(text, "t.conf")
    e = ei.value
    assert "\n" not in str(e)
    return e


# ---- separators, terminators, comments ----------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "port: 4222",
        "port = 4222",
        "port 4222",
        "port:4222",
        "port=4222",
        "port\t4222",
        "port\n4222",  # whitespace (even a newline) separates key and value
        "port   :   4222",
        '"port": 4222',
        "'port' 4222",
        "port: 4222;",
        "port: 4222 # comment",
        "port: 4222 // comment",
        "# lead\nport: 4222\n// trail",
        "{ port: 4222 }",
        '{"port": 4222}',
        "port: 4222 }",  # nats-server accepts a stray "}" as a top-level terminator
        "port: 4222 / ",  # and skips a lone "/"
    ],
)
def test_separator_forms(text: str) -> None:
    assert p(text) == {"port": 4222}


def test_top_level_terminators() -> None:
    assert p("port = 4222; debug = true, trace = false") == {"port": 4222, "debug": True, "trace": False}


def test_two_values_on_one_line_is_an_error() -> None:
    e = err("a: 1\nport: 4222 debug: true\n")
    assert e.line == 2
    assert e.message == (
        "Expected a top-level value to end with a new line, comment or EOF, but got 'd' instead."
    )
    assert str(e).startswith("t.conf:2: ")


def test_key_without_value() -> None:
    assert err("port\n").line == 1
    assert "port" in err("a = 1\nport").message


def test_separator_then_newline_is_an_error() -> None:
    assert err("a =\n1").message == "Expected value but found new line"


def test_separator_at_eof_gives_empty_string() -> None:
    assert p("a = ") == {"a": ""}


def test_empty_inputs() -> None:
    assert p("") == {}
    assert p("# nothing\n\n// here\n") == {}
    assert p("{}") == {}


def test_lone_slash_at_key_start_is_an_error() -> None:
    err("/ x")


# ---- maps -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "m {a: x, b: y}",
        "m = {a: x; b: y}",
        "m: {a: x, b: y,}",
        "m {\n a: x\n\n b: y\n}",
        "m {a x\n b = y # c\n}",
        "m {a = \n x, b\ny}",  # in a map, newlines may sit between key and value
        "m {\n // c\n a: x\n # c\n b: y }",
    ],
)
def test_map_forms(text: str) -> None:
    assert p(text) == {"m": {"a": "x", "b": "y"}}


def test_nested_maps_and_positions() -> None:
    c = p("a {\n  b {\n    c: 1\n  }\n}\n")
    assert c == {"a": {"b": {"c": 1}}}
    assert c["a"]["b"].pos["c"].line == 3
    assert c["a"].pos["b"].line == 2
    assert isinstance(c["a"], ConfMap)


@pytest.mark.parametrize(
    "text,msg",
    [
        ("m {a: x b: y}", "map value terminator"),
        ('m {a: "x" b: y}', "map value terminator"),
        ("m {:x}", "Unexpected key separator"),
        ("m {a: x]}", "map value terminator"),
        ("m {a }", "has no value"),
        ("m {a: x", "end of file"),
        ("m {a", "EOF"),
        ("m {a:,}", 'Unexpected map value terminator ",".'),
    ],
)
def test_map_errors(text: str, msg: str) -> None:
    assert msg in err(text).message


# ---- arrays -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "x = [a, b]",
        "x = [a, b,]",
        "x = [a\nb]",
        "x = [\n a # c\n b // d\n]",
        "x [ a , b ]",
        "x = [\"a\", 'b']",
    ],
)
def test_array_forms(text: str) -> None:
    assert p(text) == {"x": ["a", "b"]}


def test_mixed_and_nested_arrays() -> None:
    c = p("x = [1 , 2.5, true, s, [y ], {k: v}]")
    assert c["x"] == [1, 2.5, True, "s", ["y"], {"k": "v"}]
    assert isinstance(c["x"], ConfList)


def test_array_item_positions() -> None:
    c = p("x = [\n a\n b\n]")
    assert [q.line for q in c["x"].pos] == [2, 3]


@pytest.mark.parametrize("text", ["x = [,a]", "x = [a,,b]", "x = [a b]", 'x = ["a" "b"]', "x = [a"])
def test_array_errors(text: str) -> None:
    err(text)


def test_number_directly_before_bracket_is_rejected_with_a_hint() -> None:
    # nats-server reads "1]" as a string and then never sees the end of the array
    e = err("x = [1, 2]\n")
    assert "directly followed by ']'" in e.message
    assert p("x = [1, 2 ]") == {"x": [1, 2]}
    assert p("x = [1, 2,]") == {"x": [1, 2]}
    assert p("x = [1k]") == {"x": ["1k"]}  # a suffixed number does not swallow the bracket


# ---- strings ----------------------------------------------------------------------------


def test_double_quoted_escapes() -> None:
    c = p(r's = "a\tb\nc\rd\"e\\f\x41\xc3\xa9"')
    assert c["s"] == 'a\tb\nc\rd"e\\fAé'


@pytest.mark.parametrize("text", [r's = "a\qb"', r's = "\x4"', r's = "\xZZ"', 's = "abc'])
def test_double_quoted_errors(text: str) -> None:
    err(text)


def test_double_quoted_may_span_lines() -> None:
    assert p('s = "a\nb"') == {"s": "a\nb"}


def test_single_quoted_is_raw_and_multiline() -> None:
    assert p("s = 'a\\tb\nc \"$x\"'") == {"s": 'a\\tb\nc "$x"'}
    err("s = 'abc")


def test_unquoted_strings() -> None:
    assert p("u = nats-route://u:p@host:4245") == {"u": "nats-route://u:p@host:4245"}
    assert p("u = a#b") == {"u": "a#b"}  # "#" inside a value is not a comment
    assert p(r"u = a\x41b") == {"u": "aAb"}  # escapes work unquoted too
    assert p('u = a"b') == {"u": 'a"b'}
    assert p("u = abc$") == {"u": "abc$"}
    assert p("http_base_path: /nats") == {"http_base_path": "/nats"}


def test_single_quote_ends_an_unquoted_string() -> None:
    assert "got 'b'" in err("s = a'b").message


def test_block_strings() -> None:
    assert p("x = (\nfoo\nbar)\n)\n") == {"x": "\nfoo\nbar)\n"}
    # nats-server keeps the ")" when the file ends right after it
    assert p("x = (\nfoo\n)") == {"x": "\nfoo\n)"}
    err("x = (\nfoo\n")


def test_bool_words() -> None:
    words = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}
    for w, v in words.items():
        for form in (w, w.upper(), w.capitalize()):
            assert p(f"b = {form}") == {"b": v}
    assert p('b = "true"') == {"b": "true"}
    assert p("b = 'on'") == {"b": "on"}
    assert p("b = truex") == {"b": "truex"}


# ---- numbers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw,value",
    [
        ("0", 0),
        ("4222", 4222),
        ("-5", -5),
        ("8k", 8000),
        ("8K", 8000),
        ("4kb", 4096),
        ("4ki", 4096),
        ("4KiB", 4096),
        ("1m", 1_000_000),
        ("2MB", 2 * 1024**2),
        ("64MiB", 64 * 1024**2),
        ("3g", 3 * 10**9),
        ("1gb", 1024**3),
        ("1t", 10**12),
        ("1tib", 1024**4),
        ("1p", 10**15),
        ("1pb", 1024**5),
        ("1e", 10**18),
        ("1ei", 1024**6),
        ("-2k", -2000),
    ],
)
def test_integers_and_size_suffixes(raw: str, value: int) -> None:
    c = p(f"n = {raw}")
    assert c["n"] == value and type(c["n"]) is int


@pytest.mark.parametrize(
    "raw", ["2s", "30s", "10ms", "1h", "3secret", "2m30s", "1m5", "5k3x", "1.2.3", "127.0.0.1:4222", "10:30"]
)
def test_number_like_strings(raw: str) -> None:
    assert p(f"v = {raw}") == {"v": raw}


def test_floats() -> None:
    assert p("f = 0.5") == {"f": 0.5}
    assert p("f = -2.25") == {"f": -2.25}
    assert "start with a digit" in err("f = .5").message
    assert "top-level value to end" in err("f = 1.5s").message  # quote your durations
    assert "digit after the '.'" in err("f = 1.x").message


def test_integer_errors() -> None:
    assert err("n = 99999999999999999999").message == "integer '99999999999999999999' is out of the range"
    assert "out of the range" in err("n = 9000000000eb").message
    # nats-server silently drops such a key; we say what is wrong
    assert "size suffix" in err("n = 1kbi").message
    assert "Expected a digit" in err("n = -x").message


def test_datetime() -> None:
    assert p("d = 2016-05-04T18:53:41Z") == {"d": dt.datetime(2016, 5, 4, 18, 53, 41, tzinfo=dt.UTC)}
    err("d = 2016-05-04")
    err("d = 2016-13-04T18:53:41Z")
    assert "ISO8601" in err("d = 16-05-04").message


# ---- variables --------------------------------------------------------------------------


def test_variable_block_scoping() -> None:
    c = p("x: 5\na { port: $x }\n")
    assert c["a"]["port"] == 5
    assert "x" in c.used
    c = p("a { x: 1\n b { y: $x } }")
    assert c["a"]["b"]["y"] == 1 and "x" in c["a"].used
    e = err("a { x: 5 }\nport: $x\n")
    assert e.message == "variable reference for 'x' on line 2 can not be found" and e.line == 2


def test_variable_inner_scope_wins() -> None:
    assert p("x: 1\na { x: 2, y: $x }")["a"]["y"] == 2


def test_variable_must_be_defined_before_use() -> None:
    err("port = $x\nx = 1\n")


def test_variable_in_array_sees_enclosing_maps() -> None:
    assert p("x: a\nl: [$x, b]")["l"] == ["a", "b"]


def test_variable_map_value() -> None:
    c = p("super = { publish = '>' }\nperms: $super")
    assert c["perms"] == {"publish": ">"} and "super" in c.used


def test_quoted_variable_is_literal() -> None:
    assert p('x = 1\ns = "$x"') == {"x": 1, "s": "$x"}


def test_bcrypt_prefix_is_not_a_variable() -> None:
    assert p("pw: $2a$11$abc/def") == {"pw": "$2a$11$abc/def"}
    err("pw: $2b$11$abc")  # only $2a$ is special-cased: others must be quoted


def test_redefinition_is_unused_again() -> None:
    c = p("x = 1\nport = $x\nx = 2\n")
    assert c == {"x": 2, "port": 1}
    assert "x" not in c.used


def test_empty_variable_name() -> None:
    assert err("s = $").message == "variable reference for '' on line 1 can not be found"


def test_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYN_INT", "4555")
    monkeypatch.setenv("PYN_STR", "abc")
    monkeypatch.setenv("PYN_Q", "'3xyz'")
    monkeypatch.setenv("PYN_MAP", "{a: b}")
    monkeypatch.setenv("PYN_REF", "$PYN_INT")
    monkeypatch.setenv("PYN_BAD", "1.2.3x")
    monkeypatch.setenv("PYN_CYC", "$PYN_CYC")
    c = p("a: $PYN_INT\nb: $PYN_STR\nc: $PYN_Q\nd: $PYN_MAP\ne: $PYN_REF")
    assert c == {"a": 4555, "b": "abc", "c": "3xyz", "d": {"a": "b"}, "e": 4555}
    assert "could not be parsed" in err("a: $PYN_BAD").message
    assert "variable reference cycle for 'PYN_CYC'" in err("a: $PYN_CYC").message


def test_file_variables_shadow_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYN_X", "1")
    assert p("PYN_X = 2\nv = $PYN_X")["v"] == 2


# ---- duplicates and case ----------------------------------------------------------------


def test_last_duplicate_wins_and_maps_are_replaced() -> None:
    c = p("port: 4222\nport: 5222\nm {a: 1}\nm {b: 2}\n")
    assert c == {"port": 5222, "m": {"b": 2}}
    assert c.pos["port"].line == 2


def test_key_case_is_kept() -> None:
    assert p("PORT: 1\nport: 2") == {"PORT": 1, "port": 2}


# ---- include ----------------------------------------------------------------------------


def test_includes(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "inc.conf").write_text("port: 4333\ninclude 'deeper.conf'\n")
    (tmp_path / "sub" / "deeper.conf").write_text("\n\nmonitoring_port = 8222\n")
    (tmp_path / "users.conf").write_text("user: a\npass: b\n")
    main = tmp_path / "main.conf"
    main.write_text(
        'include "sub/inc.conf"\nhttp_port = $monitoring_port\n'
        "authorization {\n  include ./users.conf; # comment\n}\nINCLUDE sub/inc.conf\n"
    )
    c = parse_file(str(main))
    assert c == {
        "port": 4333,
        "monitoring_port": 8222,
        "http_port": 8222,
        "authorization": {"user": "a", "pass": "b"},
    }
    assert c.pos["monitoring_port"].file.endswith(os.path.join("sub", "deeper.conf"))
    assert c.pos["monitoring_port"].line == 3
    assert "monitoring_port" not in c.used  # the second include redefined it after the use
    assert c["authorization"].pos["user"].file.endswith("users.conf")


def test_included_variable_marked_used(tmp_path: Path) -> None:
    (tmp_path / "b.conf").write_text("mp = 8222\n")
    (tmp_path / "a.conf").write_text("include b.conf\nhttp_port = $mp\n")
    c = parse_file(str(tmp_path / "a.conf"))
    assert "mp" in c.used


def test_included_file_cannot_see_includer_variables(tmp_path: Path) -> None:
    (tmp_path / "b.conf").write_text("y = $x\n")
    (tmp_path / "a.conf").write_text("x = 1\ninclude b.conf\n")
    with pytest.raises(ConfigError) as ei:
        parse_file(str(tmp_path / "a.conf"))
    assert ei.value.file == str(tmp_path / "b.conf")
    assert "included from" in ei.value.message


def test_include_errors(tmp_path: Path) -> None:
    (tmp_path / "loop.conf").write_text("include loop.conf\n")
    with pytest.raises(ConfigError, match="include cycle"):
        parse_file(str(tmp_path / "loop.conf"))
    (tmp_path / "missing.conf").write_text("a = 1\ninclude nope.conf\n")
    with pytest.raises(ConfigError) as ei:
        parse_file(str(tmp_path / "missing.conf"))
    assert ei.value.line == 2 and "nope.conf" in ei.value.message
    for text in ("include\nx.conf", "include [x]", "include 5", 'include "x'):
        err(text)


def test_include_absolute_path_is_relative_like_nats_server(tmp_path: Path) -> None:
    (tmp_path / "tmp").mkdir()
    (tmp_path / "tmp" / "x.conf").write_text("a = 1\n")
    (tmp_path / "m.conf").write_text("include /tmp/x.conf\n")
    assert parse_file(str(tmp_path / "m.conf")) == {"a": 1}


def test_include_is_a_normal_key_with_a_separator() -> None:
    assert p("include: x") == {"include": "x"}


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        parse_file("/nonexistent/pynatsd.conf")


# ---- digest -----------------------------------------------------------------------------


def test_digest_shape_and_go_encoding() -> None:
    # Go's encoder: sorted keys, <>& escaped, floats in shortest form, trailing newline
    d1 = config_digest(p("b = 1\na = '<&>'\nf = 2.0"))
    d2 = config_digest(p("a = '<&>'\nf = 2.0\nb = 1"))
    assert d1 == d2 and d1.startswith("sha256:") and len(d1) == 7 + 64
    import hashlib

    want = hashlib.sha256(b'{"a":"\\u003c\\u0026\\u003e","b":1,"f":2}\n').hexdigest()
    assert d1 == "sha256:" + want


# ---- robustness -------------------------------------------------------------------------

_CONF_CHARS = st.sampled_from(
    list("abkmgKMB019$-_.:=;,#/ \t\n\r{}[]()'\"\\xyzé") + ["include ", "true", "2a$", "//", "0x"]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_CONF_CHARS, max_size=60).map("".join))
def test_random_input_only_raises_config_error(text: str) -> None:
    try:
        result = parse(text, "fuzz.conf")
    except ConfigError as e:
        assert e.file is not None and "\n" not in str(e)
    else:
        assert isinstance(result, dict)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_random_unicode_only_raises_config_error(text: str) -> None:
    try:
        parse(text, "fuzz.conf")
    except ConfigError:
        pass


def test_unreadable_include_with_a_newline_in_its_name_is_a_one_line_error() -> None:
    # found by the fuzz test above: the name was printed raw, splitting the error line
    with pytest.raises(ConfigError) as ei:
        parse("include '\n'\n", "fuzz.conf")
    assert "\n" not in str(ei.value) and '"\\n"' in str(ei.value)
