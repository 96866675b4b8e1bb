"""Every string pynatsd puts on the client wire, spelled as nats-server 2.15 spells it.

-ERR texts (ERR_*), the fixed protos (OK, PING, PONG), INFO with Go-style JSON, MSG/HMSG
encoders, Go %q quoting for permission errors, the no-responders status message, and the
/connz closed-reason strings (REASON_*) that go with the closes.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any, Final

# The texts the parser itself produces are defined there and re-exported here.
from pynatsd.protocol.parser import ERR_AUTH_VIOLATION as ERR_AUTH_VIOLATION  # "Authorization Violation"
from pynatsd.protocol.parser import ERR_MAX_CONTROL_LINE as ERR_MAX_CONTROL_LINE
from pynatsd.protocol.parser import ERR_MAX_PAYLOAD as ERR_MAX_PAYLOAD  # "Maximum Payload Violation"
from pynatsd.protocol.parser import ERR_UNKNOWN_OP as ERR_UNKNOWN_OP  # "Unknown Protocol Operation"
from pynatsd.protocol.parser import REASON_AUTH_FAILURE as REASON_AUTH_FAILURE
from pynatsd.protocol.parser import REASON_MAX_CONTROL_LINE as REASON_MAX_CONTROL_LINE
from pynatsd.protocol.parser import REASON_MAX_PAYLOAD as REASON_MAX_PAYLOAD
from pynatsd.protocol.parser import REASON_PROTOCOL_VIOLATION as REASON_PROTOCOL_VIOLATION

CRLF: Final = b"\r\n"
OK: Final = b"+OK\r\n"
PING: Final = b"PING\r\n"
PONG: Final = b"PONG\r\n"

# --- -ERR texts (without the quotes; err_line() adds them) -------------------------------------
# Closing errors (plus ERR_UNKNOWN_OP, ERR_AUTH_VIOLATION, ERR_MAX_PAYLOAD and
# ERR_MAX_CONTROL_LINE = "maximum control line exceeded", imported above).
ERR_AUTH_TIMEOUT: Final = "Authentication Timeout"
ERR_MAX_CONNECTIONS: Final = "maximum connections exceeded"
ERR_MAX_ACCOUNT_CONNECTIONS: Final = "maximum account active connections exceeded"
ERR_INVALID_PROTOCOL: Final = "invalid client protocol"
ERR_NO_RESPONDERS_HEADERS: Final = "no responders requires headers support"
ERR_STALE: Final = "Stale Connection"
ERR_TLS_REQUIRED: Final = "Secure Connection - TLS Required"
ERR_USER_AUTH_EXPIRED: Final = "User Authentication Expired"
ERR_ACCOUNT_AUTH_EXPIRED: Final = "Account Authentication Expired"
ERR_USER_AUTH_REVOKED: Final = "User Authentication Revoked"
ERR_CONNECTION_THROTTLED: Final = "Connection throttling is active. Please try again later."
ERR_ROUTE_PORT: Final = "attempted to connect to route port"
ERR_LEAF_PORT: Final = "attempted to connect to leaf node port"
ERR_GATEWAY_PORT: Final = "attempted to connect to gateway port"
# Errors that leave the connection open.
ERR_INVALID_SUBJECT: Final = "Invalid Subject"
ERR_INVALID_PUB_SUBJECT: Final = "Invalid Publish Subject"
ERR_MAX_SUBS: Final = "maximum subscriptions exceeded"

# --- /connz closed reasons ---------------------------------------------------------------------
# (plus REASON_PROTOCOL_VIOLATION, REASON_MAX_CONTROL_LINE, REASON_MAX_PAYLOAD and
# REASON_AUTH_FAILURE, imported above)
REASON_CLIENT_CLOSED: Final = "Client Closed"
REASON_AUTH_TIMEOUT: Final = "Authentication Timeout"
REASON_TLS_HANDSHAKE: Final = "TLS Handshake Failure"
REASON_SLOW_CONSUMER_PENDING: Final = "Slow Consumer (Pending Bytes)"
REASON_SLOW_CONSUMER_DEADLINE: Final = "Slow Consumer (Write Deadline)"
REASON_WRITE_ERROR: Final = "Write Error"
REASON_READ_ERROR: Final = "Read Error"
REASON_PARSE_ERROR: Final = "Parse Error"
REASON_STALE: Final = "Stale Connection"
REASON_BAD_PROTOCOL: Final = "Bad Client Protocol Version"
REASON_MAX_CONNECTIONS: Final = "Maximum Connections Exceeded"
REASON_MAX_SUBS: Final = "Maximum Subscriptions Exceeded"
REASON_SERVER_SHUTDOWN: Final = "Server Shutdown"
REASON_AUTH_EXPIRED: Final = "Authentication Expired"
REASON_NO_RESPONDERS_HEADERS: Final = "No Responders Requires Headers"
REASON_REVOKED: Final = "Credentials Revoked"


def err_line(text: str) -> bytes:
    """The -ERR proto for `text`: -ERR '<text>'CRLF."""
    return b"-ERR '" + text.encode("utf-8", "surrogateescape") + b"'\r\n"


# --- Go-compatible JSON ------------------------------------------------------------------------

_GO_JSON_ESCAPES: Final = (
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("&", "\\u0026"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
)


_COMPACT: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)  # what dumps() would build


def go_json(obj: Any, indent: str | None = None) -> str:
    """JSON as Go's encoding/json writes it: compact (or indented), key order kept, non-ASCII
    as UTF-8, and <, >, &, U+2028, U+2029 escaped. These characters can only occur inside
    strings, so replacing them in the output is safe.
    """
    if indent is None:
        s = _COMPACT.encode(obj)
    else:
        s = json.dumps(obj, indent=indent, ensure_ascii=False)
    for raw, esc in _GO_JSON_ESCAPES:
        if raw in s:
            s = s.replace(raw, esc)
    return s


def info_line(info: dict[str, Any]) -> bytes:
    """INFO SP <json> SP CRLF (nats-server joins the three parts with spaces)."""
    return b"INFO " + go_json(info).encode("utf-8", "replace") + b" \r\n"


# --- Go %q -------------------------------------------------------------------------------------

_SIMPLE_ESCAPES: Final = {7: "\\a", 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v"}


def _go_printable(ch: str) -> bool:
    # Go's unicode.IsPrint: letters, marks, numbers, punctuation, symbols and U+0020.
    return ch == " " or unicodedata.category(ch)[0] in "LMNPS"


def go_quote(s: bytes | str) -> str:
    """Go's %q / strconv.Quote of a string (given as bytes or str).

    Printable runes stay as they are; '"' and '\\' are backslash-escaped; \\a \\b \\f \\n \\r
    \\t \\v use their short forms; other control bytes and every byte that is not valid UTF-8
    become \\xNN; other non-printable runes \\uNNNN or \\UNNNNNNNN.
    """
    raw = s.encode("utf-8", "surrogatepass") if isinstance(s, str) else s
    if raw.isascii():
        text = raw.decode("ascii")
        if text.isprintable() and '"' not in text and "\\" not in text:
            return '"' + text + '"'
    else:
        text = raw.decode("utf-8", "surrogateescape")
    out = ['"']
    for ch in text:
        o = ord(ch)
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif 0xDC80 <= o <= 0xDCFF:  # an invalid UTF-8 byte (surrogateescape)
            out.append(f"\\x{o - 0xDC00:02x}")
        elif o < 0x80:
            if 0x20 <= o < 0x7F:
                out.append(ch)
            elif o in _SIMPLE_ESCAPES:
                out.append(_SIMPLE_ESCAPES[o])
            else:
                out.append(f"\\x{o:02x}")
        elif _go_printable(ch):
            out.append(ch)
        elif 0xD800 <= o <= 0xDFFF:  # a surrogate given in a str: not a valid rune
            out.append("\\ufffd")
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append('"')
    return "".join(out)


def pub_violation(subject: bytes | str) -> str:
    return f"Permissions Violation for Publish to {go_quote(subject)}"


def pub_reply_violation(reply: bytes | str) -> str:
    return f"Permissions Violation for Publish with Reply of {go_quote(reply)}"


def sub_violation(subject: bytes | str, queue: bytes | str | None = None) -> str:
    if queue:
        return f"Permissions Violation for Subscription to {go_quote(subject)} using queue {go_quote(queue)}"
    return f"Permissions Violation for Subscription to {go_quote(subject)}"


def sub_tokens_violation(subject: bytes | str) -> str:
    return f"Permissions Violation for Subscription to {go_quote(subject)}, too many tokens"


def sub_reload_violation(subject: bytes | str, queue: bytes | str | None, sid: bytes | str) -> str:
    """Sent when a reload removes a subscription that its new permissions no longer allow."""
    return f"{sub_violation(subject, queue)} (sid {go_quote(sid)})"


# --- messages ----------------------------------------------------------------------------------


def msg(subject: bytes, sid: bytes, reply: bytes, size_digits: bytes, payload: bytes) -> bytes:
    """MSG <subject> <sid> [reply] <#bytes>CRLF<payload>CRLF (sizes copied from the publisher)."""
    if reply:
        return b"MSG %s %s %s %s\r\n%s\r\n" % (subject, sid, reply, size_digits, payload)
    return b"MSG %s %s %s\r\n%s\r\n" % (subject, sid, size_digits, payload)


def hmsg(
    subject: bytes, sid: bytes, reply: bytes, hdr_digits: bytes, total_digits: bytes, data: bytes
) -> bytes:
    """HMSG <subject> <sid> [reply] <#hdr> <#total>CRLF<headers+payload>CRLF."""
    if reply:
        return b"HMSG %s %s %s %s %s\r\n%s\r\n" % (subject, sid, reply, hdr_digits, total_digits, data)
    return b"HMSG %s %s %s %s\r\n%s\r\n" % (subject, sid, hdr_digits, total_digits, data)


def no_responders_hmsg(reply: bytes, sid: bytes, subject: bytes) -> bytes:
    """The 503 status nats-server (v2.12+) sends a no_responders publisher on its reply sub.

    The header block is NATS/1.0 503, Nats-Subject: <published subject>, blank line: 32 bytes
    plus the subject; header and total sizes are equal (no payload).
    """
    n = b"%d" % (32 + len(subject))
    return b"HMSG %s %s %s %s\r\nNATS/1.0 503\r\nNats-Subject: %s\r\n\r\n\r\n" % (reply, sid, n, n, subject)
