"""The route (cluster) wire protocol: a sans-IO parser and the encoders for every route line.

Facts below were observed against nats-server 2.15.1 on loopback (raw sockets on both sides of a
route) and cross-checked with its source; where they differ from the spec digest, these win.

Framing. Text lines ending in CRLF (a bare LF also ends a control line), ops case-insensitive,
fields split on spaces/tabs. Message payloads are exactly ``size`` bytes followed by CRLF.
Control lines on routes may be 16 x max_control_line long (64 KiB by default): RMSG lines carry
queue lists and INFO lines carry URL lists. max_payload is not enforced on routes.

Handshake (no TLS; with ``cluster.tls`` the TLS handshake comes first, see routes.py):
- The accepting side sends its INFO at once. The dialer sends ``CONNECT {...}`` and its INFO;
  a real server that dials delays its INFO until it has the peer's INFO whenever compression or
  pooling is configured (the default), so an acceptor must not wait for the dialer's INFO before
  sending its own.
- Real 2.15 CONNECT on a route: ``{"echo":true,"verbose":false,"pedantic":false,
  "tls_required":false,"headers":true,"name":"<server_id>","cluster":"<name>","lnoc":true,
  "ln":true}``; ``user``/``pass`` only with credentials in the route URL. No ``lang`` (a ``lang``
  means a client hit the route port).
- Real 2.15 route INFO: ``server_id, server_name, version, proto (3), go, host, port, headers,
  max_payload, nonce, cluster, connect_urls, compression ("accept"), lnoc, lnocu, ln,
  route_pool_size (3)`` plus ``ip`` / ``gossip_mode`` when forwarded as gossip. Unknown keys must
  be ignored (``ln`` appeared in 2.15 and is not in the 2.15-dev source).
- A peer INFO without ``route_pool_size`` and without ``compression`` makes a real server treat
  us as an old, pool-less, uncompressed server: exactly one connection carrying every account,
  the account name in each RS+/RS-/RMSG/HMSG line, and its next INFO says
  ``"compression":"not supported"``. It still dials a dedicated ``$SYS`` route once and abandons
  it itself with ``-ERR 'Not possible to have a dedicated route for account "$SYS" between those
  servers'``. It sends ``RS+ $SYS ...`` lines for its system account: we carry only ``$G``.
- After registering, a real server sends all its local interest as RS+ lines, then a PING about
  one second later; answer PING with PONG.

Interest: ``RS+ <acc> <subject>`` (plain, first local interest), ``RS+ <acc> <subject> <queue>
<weight>`` (re-sent on every weight change; the receiver replaces the weight),
``RS- <acc> <subject>[ <queue>]`` (interest gone; for a queue, the whole group from that peer).

Messages: ``RMSG <acc> <subject> [<reply>] <size>``; with queue names ``RMSG <acc> <subject> +
<reply> <q1> <q2> <size>`` or, without reply, ``RMSG <acc> <subject> | <q1> <q2> <size>``.
``HMSG`` is the same with ``<hdr_size> <total_size>`` at the end. Observed from 2.15:
``RMSG $G bar | q2 q1 2`` and ``RMSG $G bar + rep q2 q1 2``. An RMSG without a queue list never
feeds local queue subscribers; with a list, each named group gets one local member.

Anything else: ``-ERR '<text>'``, ``+OK``; ``A+``/``A-`` (gateway interest ops) are ignored on
routes; unknown ops are answered with ``-ERR 'Unknown Protocol Operation'`` and the route closes.
We never advertise ``lnoc`` so peers never send ``LS+``/``LS-``/``LMSG``.
"""

from __future__ import annotations

from typing import Any

from pynatsd.protocol import wire

# op codes (small ints, as the client parser's)
R_INFO = 1
R_CONNECT = 2
R_PING = 3
R_PONG = 4
R_OK = 5
R_ERR = 6
R_SUB = 7  # (R_SUB, account, subject, queue, weight)           queue b"" and weight 0 for plain
R_UNSUB = 8  # (R_UNSUB, account, subject, queue)
R_MSG = 9  # (R_MSG, account, subject, reply, queues, hdr_len, data)  hdr_len -1: RMSG (no headers)
R_CLOSE = 10  # (R_CLOSE, err_text | None, reason)  always last; the parser is dead afterwards

ERR_UNKNOWN_OP = "Unknown Protocol Operation"
ERR_MAX_CONTROL_LINE = "Maximum Control Line Exceeded"
REASON_PROTOCOL = "Protocol Violation"
REASON_MAX_CONTROL_LINE = "Maximum Control Line Exceeded"

CRLF = b"\r\n"
PING = b"PING\r\n"
PONG = b"PONG\r\n"
OK = b"+OK\r\n"
GLOBAL_ACCOUNT = b"$G"

_NO_QUEUES: tuple[bytes, ...] = ()


class ProtocolError(Exception):
    """A malformed route line; routes close with reason Protocol Violation."""


class FramingError(ProtocolError):
    """Bytes where nats-server's parser expects something else (a payload longer than its
    size): answered with -ERR 'Unknown Protocol Operation' before the close."""


def _size(b: bytes) -> int:
    # Go's parseSize: ASCII digits only, at most 9 of them; anything else is invalid.
    if not b or len(b) > 9 or not b.isdigit():
        raise ProtocolError(f"bad size {b!r}")
    return int(b)


def _msg_args(args: list[bytes], headers: bool) -> tuple[bytes, bytes, bytes, tuple[bytes, ...], int, int]:
    """Fields of an RMSG/HMSG control line (after the op): account, subject, reply, queues,
    hdr_len (-1 without headers) and the total size that follows."""
    base = 4 if headers else 3  # acc subj [hdr] size
    n = len(args)
    if n < base:
        raise ProtocolError("too few arguments")
    if n == base:
        reply, queues = b"", _NO_QUEUES
    elif n == base + 1:
        reply, queues = args[2], _NO_QUEUES
    else:
        ind = args[2]
        tail = n - (2 if headers else 1)
        if ind == b"+":
            reply = args[3]
            queues = tuple(args[4:tail])
        elif ind == b"|":
            reply = b""
            queues = tuple(args[3:tail])
        else:
            raise ProtocolError(f"bad or missing reply indicator {ind!r}")
    if headers:
        hdr = _size(args[-2])
        total = _size(args[-1])
        if hdr > total:
            raise ProtocolError("header size larger than total size")
    else:
        hdr = -1
        total = _size(args[-1])
    return args[0], args[1], reply, queues, hdr, total


def _strip_err(text: bytes) -> bytes:
    text = text.strip()
    if len(text) >= 2 and text[:1] == b"'" and text[-1:] == b"'":
        return text[1:-1]
    return text


class RouteParser:
    """Bytes in, route ops out (sans-IO). ``feed`` takes any chunk and may keep partial state.

    Op tuples (see the R_* codes): every field is ``bytes`` except ``weight``/``hdr_len`` (int)
    and ``queues`` (tuple of bytes). ``R_CLOSE`` is always the last op; afterwards the parser is
    dead and ``feed`` returns ``[]``. Ops completed before an error come first.
    """

    __slots__ = ("max_control_line", "_buf", "_pending", "_need", "dead")

    def __init__(self, max_control_line: int = 4096 * 16) -> None:
        self.max_control_line = max_control_line
        self._buf = bytearray()
        # a message whose control line is parsed but whose payload is incomplete
        self._pending: tuple[Any, ...] | None = None
        self._need = 0  # payload size + CRLF of the pending message
        self.dead = False

    def feed(self, data: bytes) -> list[tuple[Any, ...]]:
        if self.dead:
            return []
        ops: list[tuple[Any, ...]] = []
        if self._buf:
            self._buf += data
            buf: bytes | bytearray = self._buf
            if self._pending is not None and len(buf) < self._need:
                return ops  # still waiting for the rest of a payload
        else:
            buf = data
        pos = 0
        n = len(buf)
        mcl = self.max_control_line
        try:
            while pos < n:
                pending = self._pending
                if pending is not None:
                    end = pos + self._need
                    if end > n:
                        break
                    if buf[end - 2 : end] != CRLF:
                        raise FramingError("message payload not followed by CRLF")
                    ops.append((*pending, bytes(buf[pos : end - 2])))
                    self._pending = None
                    pos = end
                    continue
                eol = buf.find(b"\n", pos)
                if eol < 0:
                    if n - pos > mcl:
                        return self._die(ops, ERR_MAX_CONTROL_LINE, REASON_MAX_CONTROL_LINE)
                    break
                line = bytes(buf[pos:eol])
                pos = eol + 1
                if line[-1:] == b"\r":
                    line = line[:-1]
                if len(line) > mcl:
                    return self._die(ops, ERR_MAX_CONTROL_LINE, REASON_MAX_CONTROL_LINE)
                if line[:5] == b"RMSG ":
                    # fast path: the common RMSG without a queue list
                    args = line[5:].split()
                    na = len(args)
                    if na == 3 or na == 4:
                        sz = args[-1]
                        if not sz.isdigit() or len(sz) > 9:
                            raise ProtocolError(f"bad size {sz!r}")
                        end = pos + int(sz) + 2
                        reply = args[2] if na == 4 else b""
                        if end <= n:
                            if buf[end - 2 : end] != CRLF:
                                raise FramingError("message payload not followed by CRLF")
                            ops.append(
                                (R_MSG, args[0], args[1], reply, _NO_QUEUES, -1, bytes(buf[pos : end - 2]))
                            )
                            pos = end
                        else:
                            self._pending = (R_MSG, args[0], args[1], reply, _NO_QUEUES, -1)
                            self._need = end - pos
                        continue
                op = self._control_line(line)
                if op is None:
                    continue
                if op[0] == R_MSG:
                    self._pending = op[:-1]
                    self._need = op[-1] + 2
                    continue
                if op[0] == R_CLOSE:
                    self.dead = True
                    self._buf = bytearray()
                    ops.append(op)
                    return ops
                ops.append(op)
        except FramingError:
            return self._die(ops, ERR_UNKNOWN_OP, REASON_PROTOCOL)
        except ProtocolError:
            return self._die(ops, None, REASON_PROTOCOL)
        if pos >= n:
            if self._buf:
                self._buf = bytearray()
        elif buf is self._buf:
            del self._buf[:pos]
        else:
            self._buf = bytearray(buf[pos:])
        return ops

    def _die(self, ops: list[tuple[Any, ...]], err: str | None, reason: str) -> list[tuple[Any, ...]]:
        self.dead = True
        self._buf = bytearray()
        self._pending = None
        ops.append((R_CLOSE, err, reason))
        return ops

    @staticmethod
    def _control_line(line: bytes) -> tuple[Any, ...] | None:
        """One control line -> op tuple. For messages returns (R_MSG, ..., hdr_len, size) with
        the size still to be read in place of the data."""
        sp = line.split(None, 1)
        if not sp:
            return None  # empty line: tolerated
        name = sp[0].upper()
        rest = sp[1] if len(sp) > 1 else b""
        if name == b"RMSG" or name == b"HMSG":
            acc, subj, reply, queues, hdr, total = _msg_args(rest.split(), name == b"HMSG")
            return (R_MSG, acc, subj, reply, queues, hdr, total)
        if name == b"RS+":
            args = rest.split()
            if len(args) == 2:
                return (R_SUB, args[0], args[1], b"", 0)
            if len(args) == 4:
                w = args[3]
                # Go accepts any weight and treats <1 as 1 for the interest count
                weight = int(w) if w.isdigit() and len(w) <= 9 else 1
                return (R_SUB, args[0], args[1], args[2], max(weight, 1))
            raise ProtocolError("RS+ arguments")
        if name == b"RS-":
            args = rest.split()
            if len(args) == 2:
                return (R_UNSUB, args[0], args[1], b"")
            if len(args) == 3:
                return (R_UNSUB, args[0], args[1], args[2])
            raise ProtocolError("RS- arguments")
        op = common_op(name, rest)
        if op is not None:
            return op
        if name == b"A+" or name == b"A-":
            return None  # gateway account interest: meaningless on a route
        return (R_CLOSE, ERR_UNKNOWN_OP, REASON_PROTOCOL)


def common_op(name: bytes, rest: bytes) -> tuple[Any, ...] | None:
    """The ops routes, gateways and leafnodes spell alike (PING, PONG, INFO, CONNECT, +OK,
    -ERR) from an upper-cased op name and the rest of its line; None for any other op."""
    if name == b"PING":
        return (R_PING,)
    if name == b"PONG":
        return (R_PONG,)
    if name == b"INFO":
        return (R_INFO, rest.strip())
    if name == b"CONNECT":
        return (R_CONNECT, rest.strip())
    if name == b"+OK":
        return (R_OK,)
    if name == b"-ERR":
        return (R_ERR, _strip_err(rest))
    return None


# -- encoders ----------------------------------------------------------------------------------


def go_json(obj: dict[str, Any]) -> bytes:
    """Compact JSON as Go's encoding/json writes it (<, > and & escaped)."""
    return wire.go_json(obj).encode("utf-8", "replace")


def info_line(info: dict[str, Any]) -> bytes:
    """``INFO <json> CRLF`` with nats-server's space before the CRLF (as on client ports)."""
    return wire.info_line(info)


def connect_line(connect: dict[str, Any]) -> bytes:
    return b"CONNECT " + go_json(connect) + b"\r\n"


def err_line(text: str) -> bytes:
    return wire.err_line(text)


def rs_plus(account: bytes, subject: bytes, queue: bytes = b"", weight: int = 1) -> bytes:
    if queue:
        return b"RS+ %s %s %s %d\r\n" % (account, subject, queue, weight)
    return b"RS+ %s %s\r\n" % (account, subject)


def rs_minus(account: bytes, subject: bytes, queue: bytes = b"") -> bytes:
    if queue:
        return b"RS- %s %s %s\r\n" % (account, subject, queue)
    return b"RS- %s %s\r\n" % (account, subject)


def msg_line(
    account: bytes,
    subject: bytes,
    reply: bytes,
    queues: list[bytes] | tuple[bytes, ...],
    hdr_len: int,
    total: int,
) -> bytes:
    """The RMSG/HMSG control line (with CRLF) for ``total`` bytes of data (headers included)
    that follow. ``hdr_len`` < 0 means no headers (RMSG)."""
    if not queues and hdr_len < 0:  # the common case, kept cheap
        if reply:
            return b"RMSG %s %s %s %d\r\n" % (account, subject, reply, total)
        return b"RMSG %s %s %d\r\n" % (account, subject, total)
    parts = [b"HMSG" if hdr_len >= 0 else b"RMSG", account, subject]
    if queues:
        if reply:
            parts += [b"+", reply]
        else:
            parts.append(b"|")
        parts.extend(queues)
    elif reply:
        parts.append(reply)
    if hdr_len >= 0:
        parts.append(b"%d" % hdr_len)
    parts.append(b"%d\r\n" % total)
    return b" ".join(parts)
