"""How nats-server (Go) spells values in its monitoring JSON and HTTP errors.

Pure helpers, no I/O: RFC 3339 timestamps, Go ``time.Duration`` strings, the monitoring
"uptime" form (``1d2h3m4s``), Go ``strconv`` parsing with its exact error texts, Go ``%q``
quoting, and a JSON encoder that writes what Go's ``encoding/json`` writes (float spelling,
HTML-safe escapes, ``MarshalIndent`` layout) so our responses match the real server byte for
byte where the values agree.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from pynatsd.protocol.wire import go_quote as go_quote  # Go's %q, one implementation

_NS_PER_S = 1_000_000_000
_UINT64_MAX = (1 << 64) - 1
_INT64_MAX = (1 << 63) - 1


def rfc3339(t: dt.datetime) -> str:
    """Go's RFC3339Nano in UTC: fraction without trailing zeros, ``Z`` suffix.

    Naive datetimes are taken as UTC (the contract says every server time is UTC)."""
    if t.tzinfo is not None:
        t = t.astimezone(dt.UTC)
    out = t.strftime("%Y-%m-%dT%H:%M:%S")
    if t.microsecond:
        out += "." + f"{t.microsecond:06d}".rstrip("0")
    return out + "Z"


def seconds_to_ns(seconds: float) -> int:
    return round(seconds * _NS_PER_S)


def _frac(value: int, digits: int) -> str:
    whole, frac = divmod(value, 10**digits)
    if not frac:
        return str(whole)
    return f"{whole}." + f"{frac:0{digits}d}".rstrip("0")


def go_duration(ns: int) -> str:
    """Go's ``time.Duration.String()`` for a number of nanoseconds (``1.5s``, ``2m3s``,
    ``601.03409ms``, ``0s``)."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = abs(ns)
    if u < 1000:
        return f"{sign}{u}ns"
    if u < 1_000_000:
        return f"{sign}{_frac(u, 3)}µs"
    if u < _NS_PER_S:
        return f"{sign}{_frac(u, 6)}ms"
    total_s, frac_ns = divmod(u, _NS_PER_S)
    hours, rem = divmod(total_s, 3600)
    minutes, secs = divmod(rem, 60)
    out = _frac(secs * _NS_PER_S + frac_ns, 9) + "s"
    if total_s >= 60:
        out = f"{minutes}m{out}"
    if total_s >= 3600:
        out = f"{hours}h{out}"
    return sign + out


def rtt_string(rtt: float | None) -> str:
    """An RTT in seconds as /connz shows it: Go duration, truncated to microseconds when
    between 1µs and 1ms (as nats-server does), ``0s`` before any measurement."""
    if not rtt:
        return "0s"
    ns = int(rtt * _NS_PER_S)
    if 1000 < ns < 1_000_000:
        ns -= ns % 1000
    return go_duration(ns)


def uptime(seconds: float) -> str:
    """The monitoring uptime form: whole seconds, leading zero units left out, with days and
    years (``22s``, ``1m5s``, ``2d3h0m1s``, ``1y0d0h0m0s``)."""
    tsecs = max(int(seconds), 0)
    tmins, secs = divmod(tsecs, 60)
    thrs, mins = divmod(tmins, 60)
    tdays, hrs = divmod(thrs, 24)
    years, days = divmod(tdays, 365)
    if years:
        return f"{years}y{days}d{hrs}h{mins}m{secs}s"
    if tdays:
        return f"{tdays}d{hrs}h{mins}m{secs}s"
    if thrs:
        return f"{thrs}h{mins}m{secs}s"
    if tmins:
        return f"{tmins}m{secs}s"
    return f"{secs}s"


# ---------------------------------------------------------------------------------------------
# Go strconv parsing with Go's error texts (used for query parameters)


class GoParseError(ValueError):
    """A value Go's strconv would reject; str() is Go's NumError text."""


def _num_error(func: str, s: str, what: str) -> GoParseError:
    return GoParseError(f"strconv.{func}: parsing {go_quote(s)}: {what}")


_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def parse_bool(s: str) -> bool:
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise _num_error("ParseBool", s, "invalid syntax")


def _parse_digits(func: str, s: str, digits: str, limit: int) -> int:
    """Go's base-10 ParseUint loop: a bad character is a syntax error, overflow (checked as
    digits are read) a range error."""
    if not digits:
        raise _num_error(func, s, "invalid syntax")
    n = 0
    for ch in digits:
        if not "0" <= ch <= "9":
            raise _num_error(func, s, "invalid syntax")
        n = n * 10 + (ord(ch) - 48)
        if n > limit:
            raise _num_error(func, s, "value out of range")
    return n


def parse_uint64(s: str) -> int:
    """``strconv.ParseUint(s, 10, 64)``."""
    return _parse_digits("ParseUint", s, s, _UINT64_MAX)


def atoi(s: str) -> int:
    """``strconv.Atoi`` on a 64-bit platform (optional sign, int64 range)."""
    neg = False
    digits = s
    if s[:1] in ("+", "-"):
        neg = s[0] == "-"
        digits = s[1:]
    n = _parse_digits("Atoi", s, digits, _UINT64_MAX)
    if (neg and n > _INT64_MAX + 1) or (not neg and n > _INT64_MAX):
        raise _num_error("Atoi", s, "value out of range")
    return -n if neg else n


# ---------------------------------------------------------------------------------------------
# JSON as Go's encoding/json writes it


def go_float(f: float) -> str:
    """Go's float64 JSON spelling: shortest round-trip digits, fixed notation between 1e-6
    and 1e21, no trailing ``.0``."""
    if f != f or f in (float("inf"), float("-inf")):
        raise ValueError(f"unsupported float value {f!r}")
    a = abs(f)
    if a == 0:
        return "0" if str(f)[0] != "-" else "-0"
    r = repr(f)
    if 1e-6 <= a < 1e21:
        s = format(Decimal(r), "f")
        if "." in s:
            s = s.rstrip("0").rstrip(".")
        return s
    # exponent form: Go writes e-7 where Python writes e-07
    return r.replace("e-0", "e-")


def _go_string(s: str) -> str:
    out = ['"']
    for ch in s:
        cp = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif cp < 0x20 or ch in "<>&\u2028\u2029":
            if ch == "\n":
                out.append("\\n")
            elif ch == "\r":
                out.append("\\r")
            elif ch == "\t":
                out.append("\\t")
            elif ch == "\b":
                out.append("\\b")
            elif ch == "\f":
                out.append("\\f")
            else:
                out.append(f"\\u{cp:04x}")
        elif 0xD800 <= cp <= 0xDFFF:
            out.append("\ufffd")  # a lone surrogate is invalid UTF-8 to Go
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _encode(v: Any, indent: str | None, level: int, out: list[str]) -> None:
    if v is None:
        out.append("null")
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif isinstance(v, int):
        out.append(str(v))
    elif isinstance(v, float):
        out.append(go_float(v))
    elif isinstance(v, str):
        out.append(_go_string(v))
    elif isinstance(v, dt.datetime):
        out.append(_go_string(rfc3339(v)))
    elif isinstance(v, dict):
        if not v:
            out.append("{}")
            return
        out.append("{")
        first = True
        for k, item in v.items():
            if not first:
                out.append(",")
            first = False
            if indent is not None:
                out.append("\n" + indent * (level + 1))
            out.append(_go_string(str(k)))
            out.append(": " if indent is not None else ":")
            _encode(item, indent, level + 1, out)
        if indent is not None:
            out.append("\n" + indent * level)
        out.append("}")
    elif isinstance(v, (list, tuple)):
        if not v:
            out.append("[]")
            return
        out.append("[")
        for i, item in enumerate(v):
            if i:
                out.append(",")
            if indent is not None:
                out.append("\n" + indent * (level + 1))
            _encode(item, indent, level + 1, out)
        if indent is not None:
            out.append("\n" + indent * level)
        out.append("]")
    else:
        raise TypeError(f"cannot encode {type(v).__name__} as JSON")


def go_json(value: Any, *, indent: bool = True) -> bytes:
    """``json.MarshalIndent(v, "", "  ")`` (or ``json.Marshal`` with indent=False).
    Datetimes are written as RFC 3339 strings."""
    out: list[str] = []
    _encode(value, "  " if indent else None, 0, out)
    return "".join(out).encode()
