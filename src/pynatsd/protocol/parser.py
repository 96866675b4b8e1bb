"""Sans-IO parser for the NATS client protocol: received bytes in, op tuples out.

`ClientParser.feed()` takes a whole received chunk and returns every op it completes, keeping
any partial op for the next call. It follows nats-server's parser byte for byte where the
difference is visible on the wire (op names, separators, line ends, size fields, payload
terminator, max_control_line and max_payload checks), but works on whole lines with
bytes.find/split instead of a per-byte state machine, because per-byte work is what makes a
Python parser slow. The shared pieces (op-name scanning, size fields, argument splitting,
partial-line and partial-payload bookkeeping) live in `LineProtocolParser` and module helpers
so a route or leafnode parser can reuse them with its own op table.

Op tuples (see /work/notes/interfaces.md):
    (OP_PUB, subject, reply, size_digits, payload)
    (OP_HPUB, subject, reply, hdr_digits, total_digits, hdr_len, data)
    (OP_SUB, subject, queue, sid)
    (OP_UNSUB, sid, max_msgs)
    (OP_CONNECT, json) (OP_INFO, json) (OP_PING,) (OP_PONG,) (OP_OK,) (OP_ERR, text)
    (OP_CLOSE, err_text | None, closed_reason)   always last; the parser is dead afterwards
    (OP_PUBS, subject, reply, size_digits, header, frames, count)   only with `runs` on (below)

Runs (opt-in, `ClientParser.runs = True`): a publisher usually sends many PUBs with the same
control line (same subject, reply and size) back to back. Such a run of `count` frames, each
`header` (the control line with its CR LF) + payload + CR LF, is checked as a whole: the header
bytes and the CR LF after each payload are compared column by column over the run with strided
slices (payloads are opaque, so nothing else needs a look), and the run is returned as one
OP_PUBS op holding the frames verbatim (`frames`, count * frame length bytes). It stands for
exactly the `count` OP_PUB ops the parser would otherwise return; `expand_pubs()` gives them.
"""

from __future__ import annotations

from typing import Any, Final

OP_PUB: Final = 1
OP_HPUB: Final = 2
OP_SUB: Final = 3
OP_UNSUB: Final = 4
OP_CONNECT: Final = 5
OP_INFO: Final = 6
OP_PING: Final = 7
OP_PONG: Final = 8
OP_OK: Final = 9
OP_ERR: Final = 10
OP_CLOSE: Final = 11
OP_PUBS: Final = 12

# -ERR texts and /connz closed reasons the parser can produce (spelled as nats-server does;
# wire.py re-exports the texts with the other -ERR constants).
ERR_UNKNOWN_OP: Final = "Unknown Protocol Operation"
ERR_MAX_PAYLOAD: Final = "Maximum Payload Violation"
ERR_MAX_CONTROL_LINE: Final = "maximum control line exceeded"
ERR_AUTH_VIOLATION: Final = "Authorization Violation"
REASON_PROTOCOL_VIOLATION: Final = "Protocol Violation"
REASON_MAX_CONTROL_LINE: Final = "Maximum Control Line Exceeded"
REASON_MAX_PAYLOAD: Final = "Maximum Message Payload Exceeded"
REASON_AUTH_FAILURE: Final = "Authentication Failure"

Op = tuple[Any, ...]

_PING_OP: Final = (OP_PING,)
_PONG_OP: Final = (OP_PONG,)
_OK_OP: Final = (OP_OK,)
_CLOSE_UNKNOWN: Final = (OP_CLOSE, ERR_UNKNOWN_OP, REASON_PROTOCOL_VIOLATION)
_CLOSE_SILENT: Final = (OP_CLOSE, None, REASON_PROTOCOL_VIOLATION)
_CLOSE_MCL: Final = (OP_CLOSE, ERR_MAX_CONTROL_LINE, REASON_MAX_CONTROL_LINE)
_CLOSE_MAX_PAYLOAD: Final = (OP_CLOSE, ERR_MAX_PAYLOAD, REASON_MAX_PAYLOAD)
_CLOSE_AUTH: Final = (OP_CLOSE, ERR_AUTH_VIOLATION, REASON_AUTH_FAILURE)

# How the bytes after an op name are treated (the op table's second column).
SEP_REQUIRED: Final = 0  # one space/TAB required, then blanks skipped, then the argument
SEP_OPTIONAL: Final = 1  # blanks skipped, no separator needed (CONNECT, INFO)
SEP_IGNORE: Final = 2  # everything up to LF is ignored (PING, PONG, +OK)

# General-path ops in a row, with no fast-path progress, after which a chunk stays general.
_MAX_MISSES: Final = 4

# Runs: the fewest frames worth an OP_PUBS, and the longest control line looked at for one.
_RUN_MIN: Final = 4
_RUN_MAX_LINE: Final = 1024

# Scanning results besides an op code.
_PARTIAL: Final = -1
_BAD: Final = -2

# Maps TAB, CR and LF to a space, so one split(b" ") splits like nats-server's splitArg.
_WS_TO_SPACE: Final = bytes.maketrans(b"\t\r\n", b"   ")
_TAB_TO_SPACE: Final = bytes.maketrans(b"\t", b" ")


# Size fields seen so far -> their value (bounded; keys are client bytes). Saves int(bytes),
# which is slow, on the hot path. Only valid fields (1-9 ASCII digits) are ever stored.
_SIZE_CACHE: dict[bytes, int] = {str(k).encode(): k for k in range(1024)}
_SIZE_CACHE_MAX: Final = 8192


def parse_size(digits: bytes) -> int:
    """A size field as nats-server reads it: 1 to 9 ASCII digits, else -1."""
    v = _SIZE_CACHE.get(digits)
    if v is not None:
        return v
    if 0 < len(digits) <= 9 and digits.isdigit():
        v = int(digits)
        if len(_SIZE_CACHE) < _SIZE_CACHE_MAX:
            _SIZE_CACHE[digits] = v
        return v
    return -1


def split_blanks(line: bytes) -> list[bytes]:
    """Split on runs of spaces and TABs (PUB, HPUB and the routed-message ops)."""
    if b"\t" in line:
        line = line.translate(_TAB_TO_SPACE)
    args = line.split(b" ")
    if b"" in args:
        args = [a for a in args if a]
    return args


def split_whitespace(line: bytes) -> list[bytes]:
    """Split on runs of spaces, TABs, CR and LF (SUB, UNSUB and the sub-interest ops)."""
    args = line.translate(_WS_TO_SPACE).split(b" ")
    if b"" in args:
        args = [a for a in args if a]
    return args


def expand_pubs(op: Op) -> list[Op]:
    """The OP_PUB ops an OP_PUBS op stands for."""
    _, subject, reply, szb, header, frames, count = op
    f = len(frames) // count
    a = len(header)
    size = f - a - 2
    return [(OP_PUB, subject, reply, szb, frames[j : j + size]) for j in range(a, len(frames), f)]


class OpTable:
    """Case-insensitive op names for one connection kind: name -> (op code, separator rule).

    Names must be prefix-free. Anything that is not a prefix of a name is an unknown op at the
    first byte that rules every name out, as in nats-server.
    """

    __slots__ = ("names", "by_first", "prefix")

    def __init__(self, ops: dict[bytes, tuple[int, int]]) -> None:
        upper = {name.upper(): v for name, v in ops.items()}
        for a in upper:
            for b in upper:
                if a != b and b.startswith(a):
                    raise ValueError(f"op names not prefix-free: {a!r} {b!r}")
        self.names: tuple[tuple[bytes, int, int], ...] = tuple((n, op, sep) for n, (op, sep) in upper.items())
        # First byte (either case) -> the names starting with it.
        by_first: dict[int, list[tuple[bytes, int, int]]] = {}
        for entry in self.names:
            for b in {entry[0][:1], entry[0][:1].lower()}:
                by_first.setdefault(b[0], []).append(entry)
        self.by_first = {k: tuple(v) for k, v in by_first.items()}
        # op -> the shortest text that re-scans to the same state after the op's blanks.
        self.prefix = {op: n + b" " if sep == SEP_REQUIRED else n for n, op, sep in self.names}

    def scan(self, data: bytes, pos: int) -> tuple[int, int, int, bytes]:
        """Recognise the op name at data[pos:].

        Returns (op, separator rule, index after the name, canonical name), or (_PARTIAL, ...)
        when the data ends inside a possible name, or (_BAD, ...) when no name can match.
        """
        cands = self.by_first.get(data[pos])
        if cands is None:
            return _BAD, 0, pos, b""
        partial = False
        for name, op, sep in cands:
            ln = len(name)
            seg = data[pos : pos + ln]
            if len(seg) == ln:
                if seg == name or seg.upper() == name:
                    return op, sep, pos + ln, name
            elif name.startswith(seg.upper()):
                partial = True
        return (_PARTIAL if partial else _BAD), 0, pos, b""


CLIENT_OPS: Final = OpTable(
    {
        b"PUB": (OP_PUB, SEP_REQUIRED),
        b"HPUB": (OP_HPUB, SEP_REQUIRED),
        b"SUB": (OP_SUB, SEP_REQUIRED),
        b"UNSUB": (OP_UNSUB, SEP_REQUIRED),
        b"-ERR": (OP_ERR, SEP_REQUIRED),
        b"CONNECT": (OP_CONNECT, SEP_OPTIONAL),
        b"INFO": (OP_INFO, SEP_OPTIONAL),
        b"PING": (OP_PING, SEP_IGNORE),
        b"PONG": (OP_PONG, SEP_IGNORE),
        b"+OK": (OP_OK, SEP_IGNORE),
    }
)


class LineProtocolParser:
    """Machinery shared by the NATS text-protocol parsers (client now; route/leaf later).

    State between feed() calls is one of:
    - nothing pending;
    - `_tail`: the unfinished start of an op (name, separators, partial argument line), which
      is re-scanned when more data arrives. Blanks after an op name and the ignored bytes after
      PING/PONG/+OK are dropped from it, so it never grows without a max_control_line check;
    - `_pend`: an op whose control line is done and whose payload (`_need` bytes including the
      CR LF) is being collected in `_parts`.
    """

    __slots__ = ("max_control_line", "ops", "_tail", "_pend", "_parts", "_have", "_need", "_dead")

    def __init__(self, ops: OpTable, max_control_line: int) -> None:
        self.max_control_line = max_control_line
        self.ops = ops
        self._tail = b""
        self._pend: Op | None = None
        self._parts: list[bytes | memoryview] = []
        self._have = 0
        self._need = 0
        self._dead = False

    @property
    def dead(self) -> bool:
        """True once an OP_CLOSE (or a terminal op) has been returned."""
        return self._dead

    def _scan_start(self, data: bytes, pos: int) -> tuple[int, int]:
        """Slow path for an op start: returns (op, arg_start) or (_PARTIAL, _) / (_BAD, _).

        For SEP_IGNORE ops arg_start is the index just past the LF. On _PARTIAL the canonical
        unfinished prefix has been stored in `_tail`.
        """
        n = len(data)
        op, sep, k, name = self.ops.scan(data, pos)
        if op < 0:
            if op == _PARTIAL:
                self._tail = data[pos:]
            return op, pos
        if sep == SEP_IGNORE:
            eol = data.find(b"\n", k)
            if eol < 0:
                self._tail = name
                return _PARTIAL, pos
            return op, eol + 1
        if sep == SEP_REQUIRED:
            if k >= n:
                self._tail = name
                return _PARTIAL, pos
            if data[k] != 32 and data[k] != 9:
                return _BAD, pos
            k += 1
        while k < n and (data[k] == 32 or data[k] == 9):
            k += 1
        if k >= n:
            self._tail = name + b" " if sep == SEP_REQUIRED else name
            return _PARTIAL, pos
        return op, k

    def _arg_end(self, data: bytes, a: int, eol: int) -> int:
        """End of the argument that starts at `a` and whose line ends at LF `eol`.

        nats-server drops the byte before the LF when it has seen a CR after the argument's
        first byte; in practice that is the CR of CR LF.
        """
        if eol - 1 > a and (data[eol - 1] == 13 or data.find(b"\r", a + 1, eol) >= 0):
            return eol - 1
        return eol

    def _partial_line_too_long(self, data: bytes, a: int) -> bool:
        """max_control_line check on an argument still arriving (an endless line is cut off).

        Counts what the finished argument will at least contain, so feeding a stream in pieces
        never closes a connection that one whole feed would accept.
        """
        plen = len(data) - a
        if plen <= self.max_control_line:
            return False
        if data.find(b"\r", a + 1) >= 0:
            plen -= 1
        return plen > self.max_control_line

    def _start_payload(self, data: bytes, start: int, size: int, pend: Op) -> bool:
        """Keep a partial payload data[start:] for op `pend`; False if its terminator is already wrong."""
        have = len(data) - start
        if have > size and data[start + size] != 13:
            return False
        self._pend = pend
        self._need = size + 2
        self._have = have
        self._parts = [memoryview(data)[start:]] if have else []
        return True

    def _continue_payload(self, data: bytes) -> tuple[bytes, Op | None, bool]:
        """Add a chunk to the pending payload.

        Returns (rest_of_data, completed_op_or_None, ok). When the payload is still incomplete
        rest is b"" and the op None; ok is False when the CR LF after the payload is wrong.
        """
        need = self._need
        self._parts.append(data)
        self._have += len(data)
        if self._have < need:
            if self._have == need - 1 and data[-1] != 13:
                return b"", None, False
            return b"", None, True
        buf = b"".join(self._parts)
        self._parts = []
        size = need - 2
        pend = self._pend
        assert pend is not None
        self._pend = None
        if not buf.startswith(b"\r\n", size):
            return b"", None, False
        return buf[need:], (*pend, buf[:size]), True


class ClientParser(LineProtocolParser):
    """Parser for one client connection (see the module docstring for the op tuples).

    Attributes a connection may change between feed() calls:
    - max_payload: PUB size / HPUB total limit (negative = no limit);
    - headers: whether HPUB is allowed (negotiated in CONNECT); False closes silently on HPUB;
    - expect_connect: when True (auth required, no no_auth_user), an op whose first byte is not
      'C' gives OP_CLOSE("Authorization Violation", "Authentication Failure") at once, as
      nats-server does. It is cleared by the parser itself after a CONNECT op, because the
      connection closes anyway if that CONNECT fails to authenticate.
    - runs: when True, runs of PUBs with the same control line come as OP_PUBS ops (see the
      module docstring); off by default.
    - stop_after_connect: when True, feed() returns right after a CONNECT op and keeps the rest
      of the chunk (`held` is then True); `feed(b"")` goes on with it. So the connection can
      apply the CONNECT (headers) before the ops sent with it are parsed. Off by default.
    """

    __slots__ = ("max_payload", "headers", "expect_connect", "runs", "stop_after_connect", "_held")

    # The piece-walking fast path in feed(); tests turn it off to check it against _step().
    fast_path = True

    def __init__(self, max_control_line: int = 4096, max_payload: int = 1048576) -> None:
        super().__init__(CLIENT_OPS, max_control_line)
        self.max_payload = max_payload
        self.headers = False
        self.expect_connect = False
        self.runs = False
        self.stop_after_connect = False
        self._held = b""

    @property
    def held(self) -> bool:
        """Bytes after a CONNECT wait for the next feed() (see stop_after_connect)."""
        return bool(self._held) and not self._dead

    def hold(self, data: bytes) -> None:
        """Keep received bytes unparsed until the next feed() (while a CONNECT is undecided).
        Only right after a CONNECT op, when the parser stands between two ops."""
        self._held += data

    def feed(self, data: bytes) -> list[Op]:
        """Parse one received chunk; returns the ops it completes (OP_CLOSE last, if any)."""
        if self._dead:
            return []
        if self._held:
            data = self._held + data
            self._held = b""
        elif not data:
            return []
        ops: list[Op] = []
        if self._pend is not None:
            data, done, ok = self._continue_payload(data)
            if not ok:
                self._close(ops, _CLOSE_UNKNOWN)
                return ops
            if done is None:
                return ops
            ops.append(done)
            if not data:
                return ops
        elif self._tail:
            data = self._tail + data
            self._tail = b""

        # Fast path: split the chunk at every CR LF once, then walk the pieces. Clean ops in the
        # canonical spelling (upper case, single spaces, CR LF, payload without CR LF inside)
        # cost one split(b" ") and a few memchr checks each. Anything else is handed to _step(),
        # which handles every case exactly from a byte position; the walk resumes once the
        # general path ends on a piece boundary again. Every CR LF in the chunk is a boundary,
        # so that is the normal case; each piece is walked at most once. After a few general
        # steps in a row with no fast progress (a client writing lower case or bare LFs), the
        # rest of the chunk stays on the general path.
        fast = self.fast_path
        runs = fast and self.runs
        if runs and not self.expect_connect:
            # whole runs first, without splitting them into pieces at all
            pos = self._pub_run(data, 0, ops)
            if pos:
                while True:
                    p2 = self._pub_run(data, pos, ops)
                    if p2 == pos:
                        break
                    pos = p2
                if pos >= len(data):
                    return ops
                data = data[pos:]
        pieces = data.split(b"\r\n") if fast else [data]
        misses = 0 if fast else _MAX_MISSES
        last = len(pieces) - 1
        append = ops.append
        sizes = _SIZE_CACHE
        mcl = self.max_control_line
        hdrs = self.headers
        maxp = self.max_payload
        if maxp < 0:
            maxp = 1 << 62
        n = len(data)
        i = 0  # index of the next piece
        ppos = 0  # byte position where pieces[i] starts
        pos = 0  # byte position of the next op
        while True:
            if ppos == pos and misses < _MAX_MISSES and not self.expect_connect:
                i0 = i
                while i < last:
                    line = pieces[i]
                    if len(line) > mcl or 10 in line or 13 in line or 9 in line:
                        break
                    args = line.split(b" ")
                    op = args[0]
                    nargs = len(args)
                    if op == b"PUB":
                        if nargs == 3:
                            subject = args[1]
                            reply = b""
                            szb = args[2]
                        elif nargs == 4:
                            subject = args[1]
                            reply = args[2]
                            szb = args[3]
                            if not reply:
                                break
                        else:
                            break
                        size = sizes.get(szb)
                        if size is None or size > maxp or not subject:
                            break
                        payload = pieces[i + 1]
                        if len(payload) != size or i + 1 == last:
                            break
                        append((OP_PUB, subject, reply, szb, payload))
                        ppos += len(line) + size + 4
                        i += 2
                    elif op == b"HPUB":
                        # The header block holds CR LFs, so the data spans several pieces: take
                        # it by position and walk the pieces it covers.
                        if not hdrs or b"" in args:
                            break
                        if nargs == 4:
                            subject = args[1]
                            reply = b""
                            hdb = args[2]
                            szb = args[3]
                        elif nargs == 5:
                            subject = args[1]
                            reply = args[2]
                            hdb = args[3]
                            szb = args[4]
                        else:
                            break
                        hdr = sizes.get(hdb)
                        size = sizes.get(szb)
                        if hdr is None or size is None or hdr > size or size > maxp:
                            break
                        start = ppos + len(line) + 2
                        end = start + size
                        if end + 2 > n or data[end] != 13 or data[end + 1] != 10:
                            break
                        append((OP_HPUB, subject, reply, hdb, szb, hdr, data[start:end]))
                        end += 2
                        ppos = start
                        i += 1
                        while ppos < end:
                            ppos += len(pieces[i]) + 2
                            i += 1
                    elif op == b"PING":
                        append(_PING_OP)
                        ppos += len(line) + 2
                        i += 1
                        if runs and i + 4 < last:
                            # a publisher's stream goes on after its PING (a client's flush):
                            # look for a run here too (not after every PUB: that costs ~4 %
                            # on streams without runs)
                            p2 = self._pub_run(data, ppos, ops)
                            if p2 > ppos:
                                # the run ends on a CR LF, so it covers whole pieces
                                i += data.count(b"\r\n", ppos, p2)
                                ppos = p2
                    elif op == b"SUB":
                        if b"" in args:
                            break
                        if nargs == 3:
                            append((OP_SUB, args[1], b"", args[2]))
                        elif nargs == 4:
                            append((OP_SUB, args[1], args[2], args[3]))
                        else:
                            break
                        ppos += len(line) + 2
                        i += 1
                    elif op == b"PONG":
                        append(_PONG_OP)
                        ppos += len(line) + 2
                        i += 1
                    else:
                        break
                pos = ppos
                misses = misses + 1 if i == i0 else 0
            if pos >= n:
                return ops
            pos = self._step(data, pos, ops)
            if pos < 0:
                return ops
            if misses < _MAX_MISSES:
                while ppos < pos and i < last:
                    ppos += len(pieces[i]) + 2
                    i += 1

    def _pub_run(self, data: bytes, pos: int, ops: list[Op]) -> int:
        """A run of at least _RUN_MIN complete PUB frames with the same canonical control line
        at data[pos:]: appends its OP_PUBS op and returns the position after it (else pos).

        Canonical: "PUB subject [reply] size" with single spaces, then CR LF; such a line is
        one the fast path reads as it stands, so each frame is exactly the OP_PUB it would give.
        """
        eol = data.find(b"\r\n", pos, pos + min(self.max_control_line, _RUN_MAX_LINE) + 2)
        if eol < 0:
            return pos
        # First only the size field (the last one), to see whether the data can hold a run at
        # all: a chunk with one or two messages (request/reply traffic) stops here.
        sp = data.rfind(b" ", pos, eol)
        size = parse_size(data[sp + 1 : eol])
        if size < 0 or (len(data) - pos) // (eol + 4 - pos + size) < _RUN_MIN:
            return pos
        line = data[pos:eol]
        if 10 in line or 13 in line or 9 in line:
            return pos
        args = line.split(b" ")
        if args[0] != b"PUB" or b"" in args:
            return pos
        nargs = len(args)
        if nargs == 3:
            reply = b""
            szb = args[2]
        elif nargs == 4:
            reply = args[2]
            szb = args[3]
        else:
            return pos
        size = parse_size(szb)
        if size < 0 or size > self.max_payload >= 0:
            return pos
        a = eol + 2 - pos  # header length
        f = a + size + 2  # frame length
        count = (len(data) - pos) // f
        if count < _RUN_MIN:
            return pos
        header = data[pos : eol + 2]
        # Column o = byte o of every frame: the header's byte, or the CR / LF after the
        # payload. A column that breaks off shortens the run to the frames before the break.
        for o in (*range(a), a + size, a + size + 1):
            col = data[pos + o : pos + count * f : f]
            b = header[o : o + 1] if o < a else (b"\r" if o == a + size else b"\n")
            if col.count(b) != count:
                count -= len(col.lstrip(b))
                if count < _RUN_MIN:
                    return pos
        end = pos + count * f
        ops.append((OP_PUBS, args[1], reply, szb, header, data[pos:end], count))
        return end

    def _step(self, data: bytes, pos: int, ops: list[Op]) -> int:
        """Parse exactly one op at data[pos:] (the general path, exact in every case).

        Returns the position after it, or -1 when parsing stops: the op is partial (kept for
        the next feed) or the connection is to be closed (OP_CLOSE appended).
        """
        if self.expect_connect and data[pos] != 67 and data[pos] != 99:
            return self._close(ops, _CLOSE_AUTH)
        op, a = self._scan_start(data, pos)
        if op < 0:
            if op == _BAD:
                return self._close(ops, _CLOSE_UNKNOWN)
            return -1  # partial op name or separator, kept in _tail
        if op == OP_PING:
            ops.append(_PING_OP)
            return a
        if op == OP_PONG:
            ops.append(_PONG_OP)
            return a
        if op == OP_OK:
            ops.append(_OK_OP)
            return a

        # A control line whose argument starts at `a`. The byte at `a` belongs to the argument
        # even if it is LF (nats-server leaves the separator state on it).
        eol = data.find(b"\n", a + 1)
        if eol < 0:
            if self._partial_line_too_long(data, a):
                return self._close(ops, _CLOSE_MCL)
            # Keep the op name with one blank, not the whole run of blanks (nats-server keeps
            # no bytes for them either), so a line dribbled in after many blanks stays cheap.
            self._tail = self.ops.prefix[op] + data[a:]
            return -1
        e = self._arg_end(data, a, eol)
        if e - a > self.max_control_line:
            return self._close(ops, _CLOSE_MCL)
        line = data[a:e]

        if op == OP_PUB or op == OP_HPUB:
            if op == OP_PUB:
                args = split_blanks(line)
                nargs = len(args)
                if nargs == 2:
                    subject, szb = args
                    reply = b""
                elif nargs == 3:
                    subject, reply, szb = args
                else:
                    return self._close(ops, _CLOSE_SILENT)
                size = parse_size(szb)
                if size < 0:
                    return self._close(ops, _CLOSE_SILENT)
                pend: Op = (OP_PUB, subject, reply, szb)
            else:
                if not self.headers:
                    return self._close(ops, _CLOSE_SILENT)
                args = split_blanks(line)
                nargs = len(args)
                if nargs == 3:
                    subject, hdb, szb = args
                    reply = b""
                elif nargs == 4:
                    subject, reply, hdb, szb = args
                else:
                    return self._close(ops, _CLOSE_SILENT)
                hdr = parse_size(hdb)
                size = parse_size(szb)
                if hdr < 0 or size < 0 or hdr > size:
                    return self._close(ops, _CLOSE_SILENT)
                pend = (OP_HPUB, subject, reply, hdb, szb, hdr)
            if size > self.max_payload >= 0:
                return self._close(ops, _CLOSE_MAX_PAYLOAD)
            start = eol + 1
            end = start + size
            if end + 2 <= len(data):
                if not data.startswith(b"\r\n", end):
                    return self._close(ops, _CLOSE_UNKNOWN)
                ops.append((*pend, data[start:end]))
                return end + 2
            if not self._start_payload(data, start, size, pend):
                return self._close(ops, _CLOSE_UNKNOWN)
            return -1

        if op == OP_SUB:
            args = split_whitespace(line)
            nargs = len(args)
            if nargs == 2:
                ops.append((OP_SUB, args[0], b"", args[1]))
            elif nargs == 3:
                ops.append((OP_SUB, args[0], args[1], args[2]))
            else:
                return self._close(ops, _CLOSE_SILENT)
        elif op == OP_UNSUB:
            args = split_whitespace(line)
            nargs = len(args)
            if nargs == 1:
                ops.append((OP_UNSUB, args[0], 0))
            elif nargs == 2:
                ops.append((OP_UNSUB, args[0], max(parse_size(args[1]), 0)))
            else:
                return self._close(ops, _CLOSE_SILENT)
        elif op == OP_CONNECT:
            ops.append((OP_CONNECT, line))
            self.expect_connect = False
            if self.stop_after_connect and eol + 1 < len(data):
                self._held = data[eol + 1 :]
                return -1
        elif op == OP_INFO:
            ops.append((OP_INFO, line))
        else:  # OP_ERR: the server closes the connection; nothing after it is parsed
            ops.append((OP_ERR, line))
            self._dead = True
            return -1
        return eol + 1

    def _close(self, ops: list[Op], close: Op) -> int:
        ops.append(close)
        self._dead = True
        self._tail = b""
        self._pend = None
        self._parts = []
        return -1
