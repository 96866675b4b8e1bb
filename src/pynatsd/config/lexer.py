"""Lexer for the nats-server configuration format ("conf"): text -> positioned tokens.

The format is context sensitive: what may end a value differs at top level, inside a map and
inside an array, and a key followed by whitespace may turn out to be the ``include`` directive.
So the lexer keeps a stack of contexts and produces a flat stream of tokens (keys, scalar
values, bracket tokens, includes) that ``parser.py`` assembles into maps and lists.

Behaviour follows nats-server 2.15.1, checked against the binary where the rules surprise:

* ``1m`` is the integer 1000000 (size suffix), ``2m30s`` and ``30s`` are strings, ``1.5s`` is an
  error (a float followed by junk), ``127.0.0.1:4222`` is a string.
* A number directly followed by a character that does not end a value swallows that character
  into a string, so ``[1]`` is ``"1]"`` and the array is left open (nats-server rejects it too;
  we add a hint to the error).
* Unquoted strings end at whitespace, newline, ``;``, ``,``, ``]`` or ``}``; ``'`` ends them too.

Errors are ``ConfigError(message, file, line)``; messages reuse nats-server's wording where it
is helpful.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NoReturn

from pynatsd.errors import ConfigError


class ConfigSyntaxError(ConfigError):
    """A syntax error in a config file; printed with nats-server's ``Parse error on line N: '...'``
    wording after our ``file:line:`` (process harnesses, e.g. nats.py's, look for "Parse error")."""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}: " if self.file else ""
        return f"{where}Parse error on line {self.line}: '{self.message}'"


class Tok(enum.Enum):
    KEY = "key"
    INCLUDE = "include"
    STRING = "string"
    BOOL = "bool"
    INTEGER = "integer"  # raw text, maybe with a size suffix ("4kb"); converted by the parser
    FLOAT = "float"
    DATETIME = "datetime"
    VARIABLE = "variable"  # value is the name without "$"
    ARRAY_START = "["
    ARRAY_END = "]"
    MAP_START = "{"
    MAP_END = "}"
    EOF = "eof"


@dataclass(frozen=True, slots=True)
class Token:
    kind: Tok
    value: str
    line: int
    col: int  # 1-based column of the token's first character


class _Ctx(enum.Enum):
    TOP = 0
    BLOCK = 1  # an outer "{ ... }" wrapping top-level keys (JSON-style files)
    MAP = 2
    ARRAY = 3


class _State(enum.Enum):
    KEY = 0  # expecting a key (or the end of the current map/block/file)
    VALUE_END = 1  # a value was read; expecting what may follow it in this context
    ARRAY_VALUE = 2  # expecting an array element or "]"


_EOF = ""
_WS = frozenset(" \t")
_NL = frozenset("\n\r")
# Go's unicode.IsSpace for the Latin-1 range; str.isspace() covers the rest the same way.
_SPACE = frozenset("\t\n\v\f\r \x85\xa0")
_KEY_SEP = frozenset("=:")
# Characters that end an unquoted string.
_STRING_END = frozenset("\n\r;,]} \t")
# Characters that end a number (note: "]" is not one of them, see the module docstring).
_NUMBER_END = frozenset("\n\r;,} \t")
_SIZE_SUFFIX = frozenset("kKmMgGtTpPeE")
_SIZE_SUFFIX_MORE = frozenset("bBiI")
_IP_CHARS = frozenset("0123456789.:-")
_HEX = frozenset("0123456789abcdefABCDEF")
_BOOL_WORDS = frozenset(("true", "false", "yes", "no", "on", "off"))
# The datetime layout after "YYYY-": "0" means a digit, anything else must match exactly.
_DATETIME_REST = "00-00T00:00:00Z"


def _is_space(ch: str) -> bool:
    return ch in _SPACE or (ch > "\xff" and ch.isspace())


def _is_digit(ch: str) -> bool:
    return ch != _EOF and ch.isdecimal()


def _show(ch: str) -> str:
    """A character as quoted in error messages."""
    if ch == _EOF:
        return "end of file"
    if ch == "\n":
        return "'\\n'"
    if ch == "\r":
        return "'\\r'"
    return f"'{ch}'"


class Lexer:
    """Produces the tokens of one conf text. ``tokens()`` is a one-shot generator."""

    def __init__(self, text: str, filename: str = "<string>") -> None:
        self.s = text
        self.n = len(text)
        self.i = 0
        self.line = 1
        self.line_start = 0
        self.file = filename
        # line of a number that swallowed a "]" (see the module docstring), for a hint when the
        # array is then left open
        self._bracket_hint: int | None = None

    # ---- character primitives -------------------------------------------------------------

    def _peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.s[j] if j < self.n else _EOF

    def _advance(self) -> str:
        if self.i >= self.n:
            return _EOF
        ch = self.s[self.i]
        self.i += 1
        if ch == "\n":
            self.line += 1
            self.line_start = self.i
        return ch

    def _jump(self, to: int) -> None:
        """Move to index ``to``, keeping the line count right."""
        nl = self.s.count("\n", self.i, to)
        if nl:
            self.line += nl
            self.line_start = self.s.rfind("\n", self.i, to) + 1
        self.i = to

    def _col(self) -> int:
        return self.i - self.line_start + 1

    def _error(self, message: str, line: int | None = None) -> NoReturn:
        message = message.replace("\n", "\\n")  # one line, even when quoting a key
        raise ConfigSyntaxError(message, self.file, self.line if line is None else line)

    def _hint(self) -> str:
        if self._bracket_hint is None:
            return ""
        return (
            f" (on line {self._bracket_hint} a number is directly followed by ']', which "
            "nats-server reads as part of a string: put a space or a comma before the ']')"
        )

    def _skip_comment(self) -> None:
        """Skip to the end of the line (the newline itself is left for the caller)."""
        j = self.i
        while j < self.n and self.s[j] not in _NL:
            j += 1
        self.i = j  # no newline crossed

    def _at_comment(self) -> bool:
        ch = self._peek()
        return ch == "#" or (ch == "/" and self._peek(1) == "/")

    def _raw_quoted(self, eof_message: str, line: int) -> str:
        """The text between the quote at the cursor and the next same quote (no escapes: keys and
        include paths); the cursor ends after the closing quote."""
        quote = self._advance()
        end = self.s.find(quote, self.i)
        if end < 0:
            self._error(eof_message, line)
        text = self.s[self.i : end]
        self._jump(end + 1)
        return text

    def _skip_blank(self) -> str:
        """Skip whitespace (newlines too) and comments; return the next character."""
        while True:
            ch = self._peek()
            if _is_space(ch):
                self._advance()
            elif self._at_comment():
                self._skip_comment()
            else:
                return ch

    # ---- the token stream ---------------------------------------------------------------------

    def tokens(self) -> Iterator[Token]:
        ctx = [_Ctx.TOP]
        state = _State.KEY
        while True:
            top = ctx[-1]
            if state is _State.KEY:
                if top is _Ctx.MAP:
                    tok = self._map_key(ctx)
                    if tok.kind is Tok.MAP_END:
                        ctx.pop()
                        yield tok
                        state = _State.VALUE_END
                        continue
                else:
                    eof = self._top_key_start(ctx)
                    if eof is not None:
                        yield eof
                        return
                    tok = self._key(in_map=False)
                if tok.kind is Tok.INCLUDE:
                    yield tok
                    state = _State.VALUE_END
                    continue
                yield tok
                # key end: whitespace (newlines too), then an optional single separator
                while _is_space(self._peek()):
                    self._advance()
                ch = self._peek()
                if ch in _KEY_SEP:
                    self._advance()
                if top is _Ctx.MAP:
                    while _is_space(self._peek()):
                        self._advance()
                    ch = self._peek()
                    if ch == ",":
                        self._error('Unexpected map value terminator ",".')
                    if ch == "}":
                        self._error(f'key "{tok.value}" has no value', tok.line)
                    if ch == _EOF:
                        self._error("Unexpected EOF processing map.")
                elif ch == _EOF:
                    # a top-level key with nothing after it
                    yield Token(Tok.EOF, "", self.line, self._col())
                    return
                val = self._value(ctx)
                yield val
                state = self._after_value(val)
            elif state is _State.ARRAY_VALUE:
                ch = self._skip_blank()
                if ch in (",", "/"):
                    self._error("Unexpected array value terminator ','.")
                if ch == "]":
                    line, col = self.line, self._col()
                    self._advance()
                    ctx.pop()
                    yield Token(Tok.ARRAY_END, "]", line, col)
                    state = _State.VALUE_END
                    continue
                if ch == _EOF:
                    self._error("Unexpected EOF processing array: expected a value or ']'." + self._hint())
                val = self._value(ctx)
                yield val
                state = self._after_value(val)
            else:  # VALUE_END
                tok_or_state = self._value_end(ctx)
                if isinstance(tok_or_state, Token):
                    yield tok_or_state
                    state = _State.VALUE_END
                else:
                    state = tok_or_state

    @staticmethod
    def _after_value(val: Token) -> _State:
        if val.kind is Tok.ARRAY_START:
            return _State.ARRAY_VALUE
        if val.kind is Tok.MAP_START:
            return _State.KEY
        return _State.VALUE_END

    # ---- keys -----------------------------------------------------------------------------

    def _top_key_start(self, ctx: list[_Ctx]) -> Token | None:
        """Skip to the next top-level (or outer-block) key. Returns an EOF token at the end."""
        while True:
            ch = self._peek()
            if ch == _EOF:
                return Token(Tok.EOF, "", self.line, self._col())
            if _is_space(ch):
                self._advance()
            elif self._at_comment():
                self._skip_comment()
            elif ch == "/":
                self._error("Unexpected '/': comments start with '//' or '#'.")
            elif ch == "{":
                self._advance()
                ctx.append(_Ctx.BLOCK)
            elif ch == "}" and ctx[-1] is _Ctx.BLOCK:
                self._advance()
                ctx.pop()
            else:
                return None

    def _map_key(self, ctx: list[_Ctx]) -> Token:
        ch = self._skip_blank()
        if ch == "}":
            line, col = self.line, self._col()
            self._advance()
            return Token(Tok.MAP_END, "}", line, col)
        if ch == "]":
            self._error("Unexpected array end ']' processing map.")
        if ch == _EOF:
            self._error("Unexpected EOF processing map: expected a key or '}'.")
        return self._key(in_map=True)

    def _key(self, in_map: bool) -> Token:
        line, col = self.line, self._col()
        ch = self._peek()
        if ch in _KEY_SEP:
            self._error(f"Unexpected key separator '{ch}'.")
        if ch in ("'", '"'):
            return Token(Tok.KEY, self._raw_quoted("Unexpected EOF in a quoted key.", line), line, col)
        start = self.i
        while True:
            ch = self._peek()
            if ch == _EOF:
                if in_map:
                    self._error("Unexpected EOF processing map key.")
                break
            if _is_space(ch):
                if self.s[start : self.i].lower() == "include":
                    return self._include()
                break
            if ch in _KEY_SEP:
                break
            self._advance()
        return Token(Tok.KEY, self.s[start : self.i], line, col)

    def _include(self) -> Token:
        while self._peek() in _WS:
            self._advance()
        line, col = self.line, self._col()
        ch = self._peek()
        if ch in ("'", '"'):
            return Token(Tok.INCLUDE, self._raw_quoted("Unexpected EOF in quoted include", line), line, col)
        what = {
            "[": "start of an array",
            "{": "start of a map",
            "(": "start of a block",
            "-": "start of a number",
            "\\": "escape sequence",
            "\n": "new line",
            "\r": "new line",
        }.get(ch)
        if what is None and _is_digit(ch):
            what = "start of a number"
        if what is None and ch == _EOF:
            what = "end of file"
        if what is not None:
            self._error(f"Expected include value but found {what}")
        start = self.i
        while True:
            ch = self._peek()
            if ch == _EOF or ch in _NL or ch in _WS or ch in (";", "}"):
                return Token(Tok.INCLUDE, self.s[start : self.i], line, col)
            if ch == "'":
                path = self.s[start : self.i]
                self._advance()
                return Token(Tok.INCLUDE, path, line, col)
            self._advance()

    # ---- values ---------------------------------------------------------------------------

    def _value(self, ctx: list[_Ctx]) -> Token:
        while self._peek() in _WS:
            self._advance()
        line, col = self.line, self._col()
        ch = self._peek()
        if ch == "[":
            self._advance()
            ctx.append(_Ctx.ARRAY)
            return Token(Tok.ARRAY_START, "[", line, col)
        if ch == "{":
            self._advance()
            ctx.append(_Ctx.MAP)
            return Token(Tok.MAP_START, "{", line, col)
        if ch == "'":
            self._advance()
            end = self.s.find("'", self.i)
            if end < 0:
                self._error("Unexpected EOF in a single-quoted string.", line)
            text = self.s[self.i : end]
            self._jump(end + 1)
            return Token(Tok.STRING, text, line, col)
        if ch == '"':
            self._advance()
            return Token(Tok.STRING, self._double_quoted(line), line, col)
        if ch == "(":
            self._advance()
            return Token(Tok.STRING, self._block(line), line, col)
        if ch == "-":
            return self._negative_number(line, col)
        if _is_digit(ch):
            return self._number_or_string(line, col)
        if ch == ".":
            self._error("Floats must start with a digit")
        if ch in _NL:
            self._error("Expected value but found new line")
        return self._unquoted(self.i, line, col)

    def _escape(self) -> str | bytes:
        """Read one escape after a backslash (already consumed)."""
        ch = self._advance()
        if ch == "x":
            a, b = self._advance(), self._advance()
            if a in _NL or b in _NL or a == _EOF or b == _EOF:
                self._error("Expected two hexadecimal digits after '\\x', but hit end of line")
            if a not in _HEX or b not in _HEX:
                self._error(f"Expected two hexadecimal digits after '\\x', but got '{a}{b}'")
            return bytes((int(a + b, 16),))
        simple = {"t": "\t", "n": "\n", "r": "\r", '"': '"', "\\": "\\"}.get(ch)
        if simple is None:
            self._error(
                f"Invalid escape character {_show(ch)}. Only the following escape characters "
                'are allowed: \\xXX, \\t, \\n, \\r, \\", \\\\.'
            )
        return simple

    @staticmethod
    def _join(parts: list[str | bytes]) -> str:
        if not any(isinstance(p, bytes) for p in parts):
            return "".join(parts)  # type: ignore[arg-type]
        raw = b"".join(p if isinstance(p, bytes) else p.encode("utf-8", "surrogatepass") for p in parts)
        return raw.decode("utf-8", "replace")

    def _double_quoted(self, line: int) -> str:
        parts: list[str | bytes] = []
        seg = self.i
        while True:
            ch = self._peek()
            if ch == _EOF:
                self._error("Unexpected EOF in a double-quoted string.", line)
            if ch == '"':
                parts.append(self.s[seg : self.i])
                self._advance()
                return self._join(parts)
            if ch == "\\":
                parts.append(self.s[seg : self.i])
                self._advance()
                parts.append(self._escape())
                seg = self.i
                continue
            self._advance()

    def _block(self, line: int) -> str:
        """A "( ... )" raw block, ended by a ")" alone on its line (nats-server keeps the
        newlines around the text, and the ")" itself when the file ends right after it)."""
        start = j = self.i
        while True:
            k = self.s.find(")", j)
            if k < 0:
                self._error("Unexpected EOF processing block.", line)
            if self.s[k - 1] == "\n" and k - 1 >= start:
                if k + 1 == self.n:
                    text = self.s[start : k + 1]
                    self._jump(self.n)
                    return text
                if self.s[k + 1] == "\n":
                    text = self.s[start:k]
                    self._jump(k + 1)
                    return text
            j = k + 1

    def _unquoted(self, start: int, line: int, col: int) -> Token:
        """An unquoted string from ``start`` (scanning resumes at self.i): maybe a bool or a
        variable reference."""
        parts: list[str | bytes] = []
        seg = start
        escaped = False
        while True:
            ch = self._peek()
            if ch == "\\":
                parts.append(self.s[seg : self.i])
                self._advance()
                parts.append(self._escape())
                seg = self.i
                escaped = True
                continue
            if ch == _EOF or ch in _STRING_END:
                parts.append(self.s[seg : self.i])
                text = self._join(parts)
                if escaped:
                    return Token(Tok.STRING, text, line, col)
                if text.lower() in _BOOL_WORDS:
                    return Token(Tok.BOOL, text, line, col)
                if text.startswith("$"):
                    return Token(Tok.VARIABLE, text[1:], line, col)
                return Token(Tok.STRING, text, line, col)
            if ch == "'":
                parts.append(self.s[seg : self.i])
                self._advance()
                return Token(Tok.STRING, self._join(parts), line, col)
            self._advance()

    def _number_or_string(self, line: int, col: int) -> Token:
        start = self.i
        while _is_digit(self._peek()):
            self._advance()
        ch = self._peek()
        if ch == "-":
            if self.i - start != 4:
                self._error("All ISO8601 dates must be in full Zulu form.")
            self._advance()
            return self._datetime(start, line, col)
        if ch == ".":
            self._advance()
            return self._float(start, line, col)
        if ch in _SIZE_SUFFIX:
            self._advance()
            return self._sized(start, line, col)
        if ch == _EOF or ch in _NUMBER_END:
            return Token(Tok.INTEGER, self.s[start : self.i], line, col)
        # Anything else turns the token into a string, and that character is part of it
        # even when it would end a string (so "[1]" reads as "1]").
        if ch == "]":
            self._bracket_hint = line
        self._advance()
        return self._unquoted(start, line, col)

    def _negative_number(self, line: int, col: int) -> Token:
        start = self.i
        self._advance()  # "-"
        ch = self._peek()
        if not _is_digit(ch):
            if ch == ".":
                self._error("Floats must start with a digit, not '.'.")
            self._error(f"Expected a digit but got {_show(ch)}.")
        while _is_digit(self._peek()):
            self._advance()
        ch = self._peek()
        if ch == ".":
            self._advance()
            return self._float(start, line, col)
        if ch in _SIZE_SUFFIX:
            self._advance()
            return self._sized(start, line, col)
        return Token(Tok.INTEGER, self.s[start : self.i], line, col)

    def _sized(self, start: int, line: int, col: int) -> Token:
        """Digits and a size suffix letter were read: "1k", "4kb", "64MiB" are integers, a
        suffix followed by anything but the end of the value makes the token a string."""
        while self._peek() in _SIZE_SUFFIX_MORE:
            self._advance()
        ch = self._peek()
        if ch == _EOF or ch in _NUMBER_END:
            return Token(Tok.INTEGER, self.s[start : self.i], line, col)
        return self._unquoted(start, line, col)

    def _float(self, start: int, line: int, col: int) -> Token:
        ch = self._peek()
        if not _is_digit(ch):
            self._error(f"Floats must have a digit after the '.', but got {_show(ch)} instead.")
        while _is_digit(self._peek()):
            self._advance()
        if self._peek() == ".":
            # a second dot: an IP address (or similar), kept as a string
            while self._peek() in _IP_CHARS or _is_digit(self._peek()):
                self._advance()
            return Token(Tok.STRING, self.s[start : self.i], line, col)
        return Token(Tok.FLOAT, self.s[start : self.i], line, col)

    def _datetime(self, start: int, line: int, col: int) -> Token:
        for want in _DATETIME_REST:
            ch = self._advance()
            if want == "0":
                if not _is_digit(ch):
                    self._error(f"Expected digit in ISO8601 datetime, but found {_show(ch)} instead.")
            elif ch != want:
                self._error(f"Expected '{want}' in ISO8601 datetime, but found {_show(ch)} instead.")
        return Token(Tok.DATETIME, self.s[start : self.i], line, col)

    # ---- after a value ----------------------------------------------------------------------

    def _value_end(self, ctx: list[_Ctx]) -> Token | _State:
        """Consume what follows a value. Returns the bracket token that closes the current
        map/array, or the next state."""
        top = ctx[-1]
        while True:
            ch = self._peek()
            if ch in _WS:
                self._advance()
                continue
            if self._at_comment():
                self._skip_comment()
                if top is _Ctx.TOP:
                    return _State.KEY
                continue
            line, col = self.line, self._col()
            if top is _Ctx.TOP:
                if ch == "/":  # nats-server skips a lone "/" here
                    self._advance()
                    continue
                if ch == _EOF:
                    return _State.KEY
                if ch in _NL or ch in (";", ",", "}"):
                    self._advance()
                    return _State.KEY
                self._error(
                    "Expected a top-level value to end with a new line, comment or EOF, "
                    f"but got {_show(ch)} instead."
                )
            if top is _Ctx.BLOCK:
                if ch == "/":
                    self._advance()
                    continue
                if ch in _NL or ch in (";", ","):
                    self._advance()
                    return _State.KEY
                if ch == "}":
                    self._advance()
                    ctx.pop()
                    return _State.KEY
                self._error(
                    "Expected a block-level value to end with a new line, comment or '}', "
                    f"but got {_show(ch)} instead."
                )
            if top is _Ctx.MAP:
                if ch in _NL or ch in (";", ",", "/"):
                    self._advance()
                    return _State.KEY
                if ch == "}":
                    self._advance()
                    ctx.pop()
                    return Token(Tok.MAP_END, "}", line, col)
                self._error(
                    'Expected a map value terminator "," or a map terminator "}", '
                    f"but got {_show(ch)} instead."
                )
            # ARRAY
            if ch in _NL or ch in (",", "/"):
                self._advance()
                return _State.ARRAY_VALUE
            if ch == "]":
                self._advance()
                ctx.pop()
                return Token(Tok.ARRAY_END, "]", line, col)
            self._error(
                'Expected an array value terminator "," or an array terminator "]", '
                f"but got {_show(ch)} instead." + (self._hint() if ch == _EOF else "")
            )
