"""Log lines for failed TLS handshakes on a listener, rate-limited.

Each failure is one ERR line with the peer (the connection's usual ``ip:port - cid:N`` prefix),
nats-server's ``TLS handshake error:`` words, the plain reason from ``transport.py`` ("no client
certificate", "unknown CA", "certificate expired", "certificate not pinned", "handshake
timeout", "plain text on a TLS port", ...) and the listener, e.g.::

    [ERR] 10.0.0.7:51234 - cid:42 - TLS handshake error: unknown CA [client listener 0.0.0.0:4222]

A port scanner or a client retrying in a loop must not flood the log: at most ``BURST`` lines are
written per ``WINDOW`` seconds and listener; the others are counted by reason and summed up in
one line when the window ends (nats-server has no such limit).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import Counter
from typing import Any

log = logging.getLogger("pynatsd.tls")

BURST = 10  # lines per window and listener
WINDOW = 10.0  # seconds


class HandshakeFailureLog:
    """The failure lines of one listener (see the module docstring)."""

    def __init__(self, listener: str, *, burst: int | None = None, window: float | None = None) -> None:
        self.listener = listener
        self.burst = BURST if burst is None else burst
        self.window = WINDOW if window is None else window
        self._window_end = 0.0
        self._logged = 0
        self._suppressed: Counter[str] = Counter()
        self._last_peer = ""
        self._timer: asyncio.TimerHandle | None = None

    def report(self, peer: str, reason: str) -> bool:
        """Log (or count) one failed handshake; True when a line was written."""
        now = time.monotonic()
        if now >= self._window_end:
            self.summarize()
            self._window_end = now + self.window
            self._logged = 0
        if self._logged < self.burst:
            self._logged += 1
            log.error("%s - TLS handshake error: %s [%s]", peer, reason, self.listener)
            return True
        self._suppressed[reason] += 1
        self._last_peer = peer
        if self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                self._timer = loop.call_later(max(self._window_end - now, 0.0), self._on_window_end)
        return False

    def _on_window_end(self) -> None:
        self._timer = None
        self.summarize()

    def summarize(self) -> None:
        """Write the summary line of the suppressed failures, if any, and forget them."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        total = sum(self._suppressed.values())
        if not total:
            return
        reasons = ", ".join(f"{r}: {n}" for r, n in self._suppressed.most_common())
        log.error(
            "TLS handshake error: %d more on the %s in the last %gs not logged one by one (%s); last from %s",
            total, self.listener, self.window, reasons, self._last_peer,
        )
        self._suppressed.clear()


_LOGS: weakref.WeakKeyDictionary[Any, HandshakeFailureLog] = weakref.WeakKeyDictionary()


def client_handshake_failed(server: Any, peer: str, reason: str) -> bool:
    """A client-port handshake failed (``server`` is the pynatsd Server, read for its address)."""
    flog = _LOGS.get(server)
    if flog is None:
        flog = _LOGS[server] = HandshakeFailureLog(f"client listener {_address(server)}")
    return flog.report(peer, reason)


def _address(server: Any) -> str:
    host = str(getattr(server.opts, "host", "") or "0.0.0.0")
    port = getattr(server, "port", 0)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
