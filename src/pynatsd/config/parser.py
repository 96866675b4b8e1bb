"""Parser for the nats-server configuration format: tokens -> plain dicts and lists.

``parse(text, filename)`` returns a ``ConfMap`` (a ``dict``) whose values are ``str``, ``int``,
``float``, ``bool``, ``datetime``, ``ConfList`` (a ``list``) or nested ``ConfMap``. Keys keep
their spelling (lookups are case-insensitive in ``load.py``); the last duplicate wins. Every key
and list item keeps where it was written (``.pos``) so errors can name file and line, and each
map remembers which of its keys were referenced as ``$variables`` (``.used``): nats-server
accepts an unknown key when it only serves as a variable.

Variables resolve in the innermost enclosing map first, then outwards, then in the environment
(whose values are parsed as conf values). ``include`` (the only I/O) parses another file,
relative to the including file's directory, and merges its keys at that point.

``config_digest(conf)`` reproduces nats-server's ``sha256:`` digest of a parsed config.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NoReturn

from pynatsd.config.lexer import Lexer, Tok, Token
from pynatsd.errors import ConfigError

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

_SIZE_MULTIPLIERS: dict[str, int] = {"": 1}
for _i, _letter in enumerate("kmgtpe", start=1):
    _SIZE_MULTIPLIERS[_letter] = 1000**_i
    for _tail in ("b", "i", "ib"):
        _SIZE_MULTIPLIERS[_letter + _tail] = 1024**_i

# nats-server keeps a "$2a$..." value unquoted as a bcrypt hash, not a variable reference.
_BCRYPT_PREFIX = "2a$"
_MAX_INCLUDE_DEPTH = 32


@dataclass(frozen=True, slots=True)
class Pos:
    """Where a key or value was written."""

    file: str
    line: int
    col: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


class ConfMap(dict[str, Any]):
    """A parsed map: a dict plus the position of each key and the keys used as variables."""

    def __init__(self) -> None:
        super().__init__()
        self.pos: dict[str, Pos] = {}
        self.used: set[str] = set()

    def set(self, key: str, value: Any, pos: Pos) -> None:
        self[key] = value
        self.pos[key] = pos
        self.used.discard(key)  # a redefinition is a new, unused value


class ConfList(list[Any]):
    """A parsed array: a list plus the position of each item."""

    def __init__(self) -> None:
        super().__init__()
        self.pos: list[Pos] = []

    def add(self, value: Any, pos: Pos) -> None:
        self.append(value)
        self.pos.append(pos)


def parse(text: str, filename: str = "<string>") -> ConfMap:
    """Parse conf text. ``filename`` is used in errors and to resolve includes (relative to
    its directory; the current directory for "<string>")."""
    return _Parser(filename, include_stack=()).run(text)


def parse_file(path: str) -> ConfMap:
    """Read and parse a config file."""
    return _Parser(path, include_stack=()).run(_read(path, None, None))


def _read(path: str, file: str | None, line: int | None) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError as e:
        reason = e.strerror or str(e)
        shown = path if path.isprintable() else json.dumps(path)  # the error stays one line
        raise ConfigError(f"cannot read config file {shown}: {reason}", file, line) from None


class _Parser:
    def __init__(
        self,
        filename: str,
        include_stack: tuple[str, ...],
        env_refs: set[str] | None = None,
        depth: int = 0,
    ) -> None:
        self.file = filename
        self.include_stack = include_stack
        # environment variables being resolved (shared with nested env parses: cycle check)
        self.env_refs: set[str] = set() if env_refs is None else env_refs
        self.scopes: list[ConfMap] = []
        self.depth = depth
        self.toks: Iterator[Token] = iter(())

    def _error(self, message: str, line: int) -> NoReturn:
        raise ConfigError(message.replace("\n", "\\n"), self.file, line)

    def run(self, text: str) -> ConfMap:
        self.toks = Lexer(text, self.file).tokens()
        root = ConfMap()
        self.scopes.append(root)
        self._map_body(root, top=True)
        return root

    def _pos(self, tok: Token) -> Pos:
        return Pos(self.file, tok.line, tok.col)

    def _map_body(self, m: ConfMap, top: bool) -> None:
        for tok in self.toks:
            if tok.kind is Tok.EOF:
                return
            if tok.kind is Tok.MAP_END:
                return
            if tok.kind is Tok.INCLUDE:
                self._include(m, tok)
                continue
            # a key; the lexer guarantees a value (or EOF) follows
            val_tok = next(self.toks)
            if val_tok.kind is Tok.EOF:
                self._error(f'config is invalid: key "{tok.value}" has no value', tok.line)
            m.set(tok.value, self._value(val_tok), self._pos(tok))

    def _value(self, tok: Token) -> Any:
        kind = tok.kind
        if kind is Tok.STRING:
            return tok.value
        if kind is Tok.BOOL:
            return tok.value.lower() in ("true", "yes", "on")
        if kind is Tok.INTEGER:
            return self._integer(tok)
        if kind is Tok.FLOAT:
            return self._float(tok)
        if kind is Tok.DATETIME:
            try:
                return _dt.datetime.strptime(tok.value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=_dt.UTC)
            except ValueError:
                self._error(f"expected Zulu formatted DateTime, but got '{tok.value}'", tok.line)
        if kind is Tok.VARIABLE:
            return self._variable(tok)
        if kind is Tok.MAP_START:
            sub = ConfMap()
            self.scopes.append(sub)
            self._map_body(sub, top=False)
            self.scopes.pop()
            return sub
        if kind is Tok.ARRAY_START:
            arr = ConfList()
            for item in self.toks:
                if item.kind is Tok.ARRAY_END:
                    return arr
                arr.add(self._value(item), self._pos(item))
            return arr
        self._error(f"unexpected {kind.value}", tok.line)  # pragma: no cover - lexer guarantees

    def _integer(self, tok: Token) -> int:
        raw = tok.value
        n = 1 if raw.startswith("-") else 0
        while n < len(raw) and raw[n].isdecimal():
            n += 1
        digits, suffix = raw[:n], raw[n:].lower()
        if not digits.isascii():
            self._error(f"expected integer, but got '{raw}'", tok.line)
        mult = _SIZE_MULTIPLIERS.get(suffix)
        if mult is None:
            self._error(
                f"'{raw}' has an unknown size suffix '{raw[n:]}' (use k, kb, ki, kib, m, mb, mi, "
                "mib, g, gb, ..., or quote the value)",
                tok.line,
            )
        value = int(digits) * mult
        if not INT64_MIN <= int(digits) <= INT64_MAX or not INT64_MIN <= value <= INT64_MAX:
            self._error(f"integer '{raw}' is out of the range", tok.line)
        return value

    def _float(self, tok: Token) -> float:
        if not tok.value.isascii():
            self._error(f"expected float, but got '{tok.value}'", tok.line)
        value = float(tok.value)
        if math.isinf(value):
            self._error(f"float '{tok.value}' is out of the range", tok.line)
        return value

    def _variable(self, tok: Token) -> Any:
        name = tok.value
        if name.startswith(_BCRYPT_PREFIX):
            return "$" + name
        for scope in reversed(self.scopes):
            if name in scope:
                scope.used.add(name)
                return scope[name]
        if name in self.env_refs:
            self._error(f"variable reference cycle for '{name}'", tok.line)
        env = os.environ.get(name)
        if env is not None:
            self.env_refs.add(name)
            try:
                sub = _Parser(f"<environment variable {name}>", (), self.env_refs, self.depth + 1)
                parsed = sub.run(f"pk={env}")
            except ConfigError as e:
                self._error(
                    f"variable reference for '{name}' on line {tok.line} could not be parsed: {e.message}",
                    tok.line,
                )
            finally:
                self.env_refs.discard(name)
            if "pk" in parsed:
                return parsed["pk"]
        self._error(f"variable reference for '{name}' on line {tok.line} can not be found", tok.line)

    def _include(self, m: ConfMap, tok: Token) -> None:
        base = os.path.dirname(self.file) if not self.file.startswith("<") else ""
        # Like nats-server (Go's filepath.Join), the path is always relative to the including
        # file's directory, even when it starts with "/".
        target = os.path.normpath(os.path.join(base or ".", tok.value.lstrip("/") or "."))
        key = os.path.realpath(target)
        if key in self.include_stack or self.depth >= _MAX_INCLUDE_DEPTH:
            self._error(f"error parsing include file '{tok.value}': include cycle", tok.line)
        text = _read(target, self.file, tok.line)
        sub = _Parser(target, self.include_stack + (key,), None, self.depth + 1)
        try:
            inc = sub.run(text)
        except ConfigError as e:
            if e.file == target:
                raise ConfigError(
                    f"{e.message} (in file included from {self.file}:{tok.line})", e.file, e.line
                ) from None
            raise
        for k, v in inc.items():
            m.set(k, v, inc.pos[k])
            if k in inc.used:
                m.used.add(k)


# ---- digest ---------------------------------------------------------------------------------


def _go_float(f: float) -> str:
    """A float as Go's encoding/json writes it."""
    if f == 0:
        return "0"
    if 1e-6 <= abs(f) < 1e21:
        return format(Decimal(repr(f)).normalize(), "f")
    return repr(f).replace("e-0", "e-")  # Go writes 1e-07 as 1e-7


def _go_json(v: Any, out: list[str]) -> None:
    if isinstance(v, bool):
        out.append("true" if v else "false")
    elif isinstance(v, int):
        out.append(str(v))
    elif isinstance(v, float):
        out.append(_go_float(v))
    elif isinstance(v, str):
        s = json.dumps(v, ensure_ascii=False)
        s = s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        out.append(s.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))
    elif isinstance(v, _dt.datetime):
        out.append('"' + v.strftime("%Y-%m-%dT%H:%M:%SZ") + '"')
    elif isinstance(v, dict):
        out.append("{")
        for n, k in enumerate(sorted(v)):
            if n:
                out.append(",")
            _go_json(k, out)
            out.append(":")
            _go_json(v[k], out)
        out.append("}")
    elif isinstance(v, list):
        out.append("[")
        for n, item in enumerate(v):
            if n:
                out.append(",")
            _go_json(item, out)
        out.append("]")
    else:  # pragma: no cover - the parser produces nothing else
        out.append("null")


def config_digest(conf: dict[str, Any]) -> str:
    """nats-server's config digest: "sha256:" + hex SHA-256 of the JSON encoding (sorted keys,
    Go escaping, trailing newline) of the parsed config."""
    out: list[str] = []
    _go_json(conf, out)
    out.append("\n")
    return "sha256:" + hashlib.sha256("".join(out).encode("utf-8", "surrogatepass")).hexdigest()
