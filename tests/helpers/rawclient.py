"""Raw NATS protocol clients for tests: bytes in, bytes out, no client library in between.

``RawClient`` uses a blocking socket (for tests against a server in another process);
``AsyncRawClient`` is the asyncio twin (for tests against an in-process ``Server``).
Both keep everything received in ``received`` and a read ``cursor``: ``read_until`` waits for a
pattern after the cursor and moves the cursor past it. Every wait has a deadline and raises
``TimeoutError`` (with what was received) when it passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import select
import socket
import time
from collections.abc import Callable
from typing import Any

DEFAULT_TIMEOUT = 3.0
Predicate = Callable[[bytes], int]  # returns the end offset of the match in the unread data, or -1


def parse_info(line: bytes | str) -> dict[str, Any]:
    """The JSON object of an ``INFO {...} \\r\\n`` line (the first line if several are given)."""
    if isinstance(line, str):
        line = line.encode("latin-1")
    line = line.split(b"\n", 1)[0]
    if not line[:5].upper() == b"INFO ":
        raise ValueError(f"not an INFO line: {line[:80]!r}")
    obj = json.loads(line[5:].strip())
    if not isinstance(obj, dict):
        raise ValueError("INFO payload is not a JSON object")
    return obj


def _find_pattern(pattern: bytes | Predicate) -> Predicate:
    if callable(pattern):
        return pattern

    def find(buf: bytes) -> int:
        i = buf.find(pattern)
        return -1 if i < 0 else i + len(pattern)

    return find


def lines_predicate(n: int) -> Predicate:
    """Match after ``n`` LF-terminated lines."""

    def find(buf: bytes) -> int:
        pos = 0
        for _ in range(n):
            i = buf.find(b"\n", pos)
            if i < 0:
                return -1
            pos = i + 1
        return pos

    return find


class RawClient:
    """A blocking raw-socket NATS client. ``RawClient(host, port)`` connects; ``read_info()``
    waits for the server's first line and parses it."""

    def __init__(
        self, host: str, port: int, *, timeout: float = DEFAULT_TIMEOUT, connect: bool = True
    ) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.sock: socket.socket | None = None
        self.received = bytearray()
        self.cursor = 0
        self.eof = False
        self.info: dict[str, Any] | None = None
        if connect:
            self.connect()

    def connect(self) -> RawClient:
        self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self

    # -- sending -------------------------------------------------------------------------------
    def send(self, data: bytes, timeout: float | None = None) -> bool:
        """Send all of ``data``; False if the server has already closed (the error is swallowed
        so that a test can still read what the server sent before closing).

        While sending, whatever the server sends back is received into ``received``: a server
        that stops reading while its writes to us are blocked would otherwise deadlock us."""
        assert self.sock is not None
        view = memoryview(data)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        sock = self.sock
        try:
            sock.setblocking(False)
            while view:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                rd, wr, _ = select.select([] if self.eof else [sock], [sock], [], remaining)
                if rd:
                    try:
                        chunk = sock.recv(65536)
                    except BlockingIOError:
                        chunk = None
                    except OSError:
                        chunk = b""
                    if chunk is not None:
                        if chunk:
                            self.received += chunk
                        else:
                            self.eof = True
                if wr:
                    try:
                        view = view[sock.send(view[:262144]) :]
                    except BlockingIOError:
                        pass
            return True
        except OSError:
            return False
        finally:
            if self.sock is not None:
                self.sock.setblocking(True)

    def send_bytewise(self, data: bytes, gap: float = 0.002) -> bool:
        """Send one byte per segment with a short gap, so the server sees the reads split at
        every byte boundary (there is no event to await for 'the server read this byte')."""
        for i in range(len(data)):
            if not self.send(data[i : i + 1]):
                return False
            time.sleep(gap)
        return True

    # -- receiving -----------------------------------------------------------------------------
    def _recv(self, deadline: float) -> bool:
        """Receive once, waiting until ``deadline``; False on timeout. Sets ``eof``."""
        assert self.sock is not None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return False
        except OSError:  # reset by peer: as good as EOF for a test
            chunk = b""
        if not chunk:
            self.eof = True
        else:
            self.received += chunk
        return True

    def unread(self) -> bytes:
        return bytes(self.received[self.cursor :])

    def read_until(self, pattern: bytes | Predicate, timeout: float | None = None) -> bytes:
        """Wait until ``pattern`` occurs after the cursor; return the data from the cursor up to
        the end of the match and move the cursor there."""
        find = _find_pattern(pattern)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            end = find(bytes(self.received[self.cursor :]))
            if end >= 0:
                out = bytes(self.received[self.cursor : self.cursor + end])
                self.cursor += end
                return out
            if self.eof:
                raise EOFError(f"EOF before {pattern!r}; unread: {self.unread()!r}")
            if not self._recv(deadline):
                raise TimeoutError(f"timeout waiting for {pattern!r}; unread: {self.unread()!r}")

    def read_lines(self, n: int = 1, timeout: float | None = None) -> bytes:
        return self.read_until(lines_predicate(n), timeout)

    def read_line(self, timeout: float | None = None) -> bytes:
        return self.read_lines(1, timeout)

    def read_info(self, timeout: float | None = None) -> dict[str, Any]:
        line = self.read_line(timeout)
        self.info = parse_info(line)
        return self.info

    def expect(self, expected: bytes, timeout: float | None = None) -> None:
        """The next bytes must be exactly ``expected``."""
        got = self.read_until(lambda b: len(expected) if len(b) >= len(expected) else -1, timeout)
        assert got == expected, f"expected {expected!r}, got {got!r}"

    def expect_eof(self, timeout: float | None = None) -> bytes:
        """Wait for the server to close; return everything unread received before the close."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.eof:
            if not self._recv(deadline):
                raise TimeoutError(f"timeout waiting for EOF; unread: {self.unread()!r}")
        out = self.unread()
        self.cursor = len(self.received)
        return out

    def drain(self, wait: float = 0.0) -> bytes:
        """Collect whatever has arrived (waiting at most ``wait``) without requiring anything."""
        deadline = time.monotonic() + wait
        assert self.sock is not None
        while not self.eof:
            if wait <= 0:
                self.sock.setblocking(False)
                try:
                    chunk = self.sock.recv(65536)
                except BlockingIOError:
                    break
                except OSError:
                    chunk = b""
                finally:
                    self.sock.setblocking(True)
                if not chunk:
                    self.eof = True
                else:
                    self.received += chunk
            elif not self._recv(deadline):
                break
        out = self.unread()
        self.cursor = len(self.received)
        return out

    def ping(self, timeout: float | None = None) -> bytes:
        """Send PING and wait for PONG; returns what came before and including the PONG."""
        self.send(b"PING\r\n")
        return self.read_until(b"PONG\r\n", timeout)

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncRawClient:
    """asyncio twin of RawClient: ``c = await AsyncRawClient.open(host, port)``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float) -> None:
        self.reader, self.writer, self.timeout = reader, writer, timeout
        self.received = bytearray()
        self.cursor = 0
        self.eof = False
        self.info: dict[str, Any] | None = None

    @classmethod
    async def open(cls, host: str, port: int, *, timeout: float = DEFAULT_TIMEOUT) -> AsyncRawClient:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer, timeout)

    async def send(self, data: bytes) -> bool:
        """Queue ``data`` on the transport (not awaiting drain: a server that stops reading
        while its writes to us are blocked would otherwise deadlock us); False if closed."""
        if self.writer.is_closing():
            return False
        try:
            self.writer.write(data)
            return True
        except (OSError, RuntimeError):
            return False

    async def _recv(self) -> None:
        try:
            chunk = await self.reader.read(65536)
        except OSError:
            chunk = b""
        if not chunk:
            self.eof = True
        else:
            self.received += chunk

    def unread(self) -> bytes:
        return bytes(self.received[self.cursor :])

    async def read_until(self, pattern: bytes | Predicate, timeout: float | None = None) -> bytes:
        find = _find_pattern(pattern)

        async def loop() -> bytes:
            while True:
                end = find(bytes(self.received[self.cursor :]))
                if end >= 0:
                    out = bytes(self.received[self.cursor : self.cursor + end])
                    self.cursor += end
                    return out
                if self.eof:
                    raise EOFError(f"EOF before {pattern!r}; unread: {self.unread()!r}")
                await self._recv()

        try:
            return await asyncio.wait_for(loop(), self.timeout if timeout is None else timeout)
        except TimeoutError:
            raise TimeoutError(f"timeout waiting for {pattern!r}; unread: {self.unread()!r}") from None

    async def read_lines(self, n: int = 1, timeout: float | None = None) -> bytes:
        return await self.read_until(lines_predicate(n), timeout)

    async def read_line(self, timeout: float | None = None) -> bytes:
        return await self.read_lines(1, timeout)

    async def read_info(self, timeout: float | None = None) -> dict[str, Any]:
        self.info = parse_info(await self.read_line(timeout))
        return self.info

    async def expect(self, expected: bytes, timeout: float | None = None) -> None:
        got = await self.read_until(lambda b: len(expected) if len(b) >= len(expected) else -1, timeout)
        assert got == expected, f"expected {expected!r}, got {got!r}"

    async def expect_eof(self, timeout: float | None = None) -> bytes:
        async def loop() -> None:
            while not self.eof:
                await self._recv()

        try:
            await asyncio.wait_for(loop(), self.timeout if timeout is None else timeout)
        except TimeoutError:
            raise TimeoutError(f"timeout waiting for EOF; unread: {self.unread()!r}") from None
        out = self.unread()
        self.cursor = len(self.received)
        return out

    async def ping(self, timeout: float | None = None) -> bytes:
        await self.send(b"PING\r\n")
        return await self.read_until(b"PONG\r\n", timeout)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()
            await self.writer.wait_closed()

    async def __aenter__(self) -> AsyncRawClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
