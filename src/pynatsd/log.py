"""Logging in nats-server's look: ``[pid] 2026/11/26 22:19:09.123456 [INF] message``.

Levels map to nats-server's tags (TRC, DBG, INF, WRN, ERR, FTL); ``TRACE`` (5) sits below DEBUG.
As in nats-server, debug (-D) and trace (-V) are independent switches: -V alone shows trace lines
but not debug lines. ``configure_logging`` (re)applies the logging options and is safe to call
again on reload; ``reopen_log_file`` is the SIGUSR1 action (log rotation).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from pynatsd.config.options import ServerOptions

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

_TAGS = {
    TRACE: "TRC",
    logging.DEBUG: "DBG",
    logging.INFO: "INF",
    logging.WARNING: "WRN",
    logging.ERROR: "ERR",
    logging.CRITICAL: "FTL",
}

logger = logging.getLogger("pynatsd")


def level_tag(levelno: int) -> str:
    tag = _TAGS.get(levelno)
    if tag is not None:
        return tag
    if levelno < logging.DEBUG:
        return "TRC"
    if levelno < logging.INFO:
        return "DBG"
    if levelno < logging.WARNING:
        return "INF"
    if levelno < logging.ERROR:
        return "WRN"
    if levelno < logging.CRITICAL:
        return "ERR"
    return "FTL"


class NatsFormatter(logging.Formatter):
    """``[pid] <date time> [TAG] message`` (the date part only with logtime)."""

    def __init__(self, logtime: bool = True, utc: bool = False, pid: int | None = None) -> None:
        super().__init__()
        self.logtime = logtime
        self.utc = utc
        self.pid = os.getpid() if pid is None else pid

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.exc_info:
            msg = msg + "\n" + self.formatException(record.exc_info)
        tag = level_tag(record.levelno)
        if not self.logtime:
            return f"[{self.pid}] [{tag}] {msg}"
        ts = record.created
        dt = datetime.fromtimestamp(ts, UTC) if self.utc else datetime.fromtimestamp(ts)
        return f"[{self.pid}] {dt:%Y/%m/%d %H:%M:%S}.{dt.microsecond:06d} [{tag}] {msg}"


class _DebugTraceFilter(logging.Filter):
    """Lets DEBUG records through only with -D and TRACE records only with -V."""

    def __init__(self, debug: bool, trace: bool) -> None:
        super().__init__()
        self.debug = debug
        self.trace = trace

    def filter(self, record: logging.LogRecord) -> bool:
        lv = record.levelno
        if lv >= logging.INFO:
            return True
        if lv >= logging.DEBUG:
            return self.debug
        return self.trace


class ReopenableFileHandler(logging.StreamHandler[TextIO]):
    """Appends to a file; ``reopen()`` for rotation (SIGUSR1); optional size limit.

    With a size limit, the full file is renamed ``<file>.<YYYY.MM.DD.HH.MM.SS.nnnnnnnnn>`` and a
    new one started, as nats-server does.
    """

    def __init__(self, path: str, size_limit: int = 0) -> None:
        self.path = os.path.abspath(path)
        self.size_limit = size_limit
        stream = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the handler's life
        super().__init__(stream)
        self._size = self._current_size()

    def _current_size(self) -> int:
        try:
            return os.path.getsize(self.path)
        except OSError:
            return 0

    def reopen(self) -> None:
        self.acquire()
        try:
            old = self.stream
            self.stream = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
            self._size = self._current_size()
            try:
                old.close()
            except OSError:
                pass
        finally:
            self.release()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
            self.acquire()
            try:
                self.stream.write(line)
                self.stream.flush()
                self._size += len(line.encode("utf-8", "replace"))
                if self.size_limit > 0 and self._size >= self.size_limit:
                    self._rotate()
            finally:
                self.release()
        except Exception:
            self.handleError(record)

    def _rotate(self) -> None:
        now = time.time()
        stamp = time.strftime("%Y.%m.%d.%H.%M.%S", time.localtime(now)) + f".{int(now * 1e9) % 1_000_000_000:09d}"
        self.stream.close()
        try:
            os.rename(self.path, f"{self.path}.{stamp}")
        except OSError:
            pass
        self.stream = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        self._size = 0

    def close(self) -> None:
        self.acquire()
        try:
            try:
                self.flush()
                self.stream.close()
            except (OSError, ValueError):
                pass
        finally:
            self.release()
        logging.Handler.close(self)


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to the *current* sys.stderr (tests may swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


_handler: logging.Handler | None = None


def _syslog_handler(opts: ServerOptions) -> logging.Handler:
    if opts.remote_syslog:
        url = opts.remote_syslog
        scheme, _, rest = url.partition("://")
        if not rest:
            scheme, rest = "udp", url
        host, _, port = rest.rpartition(":")
        import socket

        socktype = socket.SOCK_STREAM if scheme == "tcp" else socket.SOCK_DGRAM
        return logging.handlers.SysLogHandler(address=(host or "localhost", int(port or 514)), socktype=socktype)
    for path in ("/dev/log", "/var/run/syslog"):
        if os.path.exists(path):
            return logging.handlers.SysLogHandler(address=path)
    return logging.handlers.SysLogHandler()


def configure_logging(opts: ServerOptions) -> None:
    """Install (or replace) the handler of the ``pynatsd`` logger according to ``opts``."""
    global _handler
    if _handler is not None:
        logger.removeHandler(_handler)
        _handler.close()
        _handler = None
    handler: logging.Handler
    if opts.log_file:
        handler = ReopenableFileHandler(opts.log_file, opts.log_size_limit)
        handler.setFormatter(NatsFormatter(opts.logtime, opts.logtime_utc))
    elif opts.syslog or opts.remote_syslog:
        handler = _syslog_handler(opts)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = _StderrHandler()
        handler.setFormatter(NatsFormatter(opts.logtime, opts.logtime_utc))
    trace = opts.trace or opts.trace_verbose
    handler.addFilter(_DebugTraceFilter(opts.debug, trace))
    handler.setLevel(TRACE)
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(TRACE if trace else logging.DEBUG if opts.debug else logging.INFO)
    _handler = handler


def reopen_log_file() -> None:
    """SIGUSR1: reopen the log file so an external rotation takes effect."""
    if isinstance(_handler, ReopenableFileHandler):
        _handler.reopen()
        logger.info("File log re-opened")
    else:
        logger.warning("File log re-open ignored, not a file logger")
