"""Certificate expiry watch: which certificates the server serves, and how long they have left.

``served_certs(server)`` lists the certificate each TLS listener presents (client port,
cluster port, HTTPS monitoring port) with its NotAfter time (the first of a ``certs`` list;
the expiry check looks at every listed one). ``CertExpiryWatch`` checks them at
start and then periodically (daily by default): a certificate within
``opts.tls_expiry_warn_days`` days of expiry is logged as a warning, an expired one as an
error, and ``problems()`` (read by /healthz) names every expired one. /metrics exports the
seconds left per listener from the same list.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pynatsd.monitor import gofmt

log = logging.getLogger("pynatsd.monitor")

DAY = 86400.0


@dataclass(frozen=True)
class ServedCert:
    listener: str  # "client", "cluster", "monitor"
    not_after: dt.datetime  # aware, UTC
    source: str  # the certificate file, for messages

    def seconds_left(self, now: dt.datetime) -> float:
        return (self.not_after - now).total_seconds()


_file_cache: dict[str, tuple[tuple[int, int], dt.datetime | None]] = {}


def cert_not_after_from_file(path: str | None) -> dt.datetime | None:
    """NotAfter of the first certificate in a PEM file, None if unreadable; cached per
    (mtime, size) so frequent /healthz or /metrics requests don't re-parse it."""
    if not path:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (st.st_mtime_ns, st.st_size)
    hit = _file_cache.get(path)
    if hit is not None and hit[0] == key:
        return hit[1]
    from cryptography import x509

    try:
        with open(path, "rb") as f:
            na: dt.datetime | None = x509.load_pem_x509_certificate(f.read()).not_valid_after_utc
    except (OSError, ValueError):
        na = None
    _file_cache[path] = (key, na)
    return na


def served_not_after(server: Any, where: str) -> dt.datetime | None:
    """NotAfter of the certificate served on a listener (``client``, ``cluster``, ``gateway``
    or ``leaf``).

    Prefers the live TLS context the server built (it follows reloads); otherwise the first
    configured certificate file, which is what nats-server reports."""
    opts = server.opts
    if where == "client":
        live = getattr(server, "tls", None)
        tls_opts = opts.tls
    elif where == "cluster":
        live = getattr(getattr(server, "routes", None), "server_tls", None)  # the route manager's
        tls_opts = opts.cluster.tls if opts.cluster is not None else None
    elif where == "gateway":
        live = getattr(getattr(server, "gateways", None), "server_tls", None)
        gw = getattr(opts, "gateway", None)
        tls_opts = gw.tls if gw is not None else None
    elif where == "leaf":
        live = getattr(getattr(server, "leafs", None), "server_tls", None)
        lo = getattr(opts, "leafnodes", None)
        tls_opts = lo.tls if lo is not None and lo.port else None  # only a listener has a cert to report
    else:
        raise ValueError(f"unknown listener {where!r}")
    if tls_opts is None:
        return None
    na = getattr(live, "not_after", None)
    if isinstance(na, dt.datetime):
        return na if na.tzinfo is not None else na.replace(tzinfo=dt.UTC)
    return cert_not_after_from_file(first_cert_file(tls_opts))


def first_cert_file(tls_opts: Any) -> str | None:
    """The first configured certificate: cert_file, or the first of ``certificates``."""
    if tls_opts.cert_file:
        return str(tls_opts.cert_file)
    pairs = getattr(tls_opts, "certificates", ())
    return str(pairs[0][0]) if pairs else None


def served_certs(server: Any, monitor_cert: ServedCert | None = None, *, every: bool = False) -> list[ServedCert]:
    """One entry per listener (its first certificate, as /varz reports it); with ``every``, each
    certificate of a ``certs`` list gets its own entry (for the expiry check)."""
    out: list[ServedCert] = []
    opts = server.opts
    for where, tls_opts in (
        ("client", opts.tls),
        ("cluster", opts.cluster.tls if opts.cluster is not None else None),
    ):
        if tls_opts is None:
            continue
        if every and len(tls_opts.certificates) > 1:
            listed = _listed_certs(server, where, tls_opts)
            if listed:
                out += listed
                continue
        na = served_not_after(server, where)
        if na is not None:
            out.append(ServedCert(where, na, first_cert_file(tls_opts) or ""))
    if monitor_cert is not None:
        out.append(monitor_cert)
    return out


def _listed_certs(server: Any, where: str, tls_opts: Any) -> list[ServedCert]:
    """Every certificate of a ``certs`` list, from the live TLS context (it follows reloads)
    or else from the files."""
    if where == "client":
        live = getattr(server, "tls", None)
    else:
        live = getattr(getattr(server, "routes", None), "server_tls", None)
    leaves = getattr(live, "certs", ())
    files = [c for c, _ in tls_opts.certificates]
    if len(leaves) == len(files):
        return [ServedCert(where, leaf.not_valid_after_utc, f) for f, leaf in zip(files, leaves, strict=True)]
    out = []
    for f in files:
        na = cert_not_after_from_file(f)
        if na is not None:
            out.append(ServedCert(where, na, f))
    return out


class CertExpiryWatch:
    """Periodic expiry check of the served certificates (at start, then every ``interval``)."""

    def __init__(
        self,
        server: Any,
        *,
        interval: float = DAY,
        extra: Callable[[], list[ServedCert]] | None = None,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.server = server
        self.interval = interval
        self._extra = extra
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._task: asyncio.Task[None] | None = None
        self.checks = 0  # completed checks (tests and /metrics use it)

    @property
    def warn_days(self) -> int:
        return int(getattr(self.server.opts, "tls_expiry_warn_days", 30))

    def certs(self) -> list[ServedCert]:
        return served_certs(self.server, every=True) + (self._extra() if self._extra else [])

    def check(self) -> list[ServedCert]:
        """Log every certificate within the warning window; return those."""
        now = self._clock()
        window = self.warn_days * DAY
        flagged = []
        for c in self.certs():
            left = c.seconds_left(now)
            when = gofmt.rfc3339(c.not_after)
            if left <= 0:
                log.error(
                    "TLS certificate of the %s listener (%s) expired at %s", c.listener, c.source, when
                )
                flagged.append(c)
            elif left <= window:
                log.warning(
                    "TLS certificate of the %s listener (%s) expires in %s, at %s",
                    c.listener, c.source, _days(left), when,
                )
                flagged.append(c)
        self.checks += 1
        return flagged

    def problems(self) -> list[str]:
        """One message per expired served certificate (for /healthz)."""
        now = self._clock()
        return [
            f"TLS certificate of the {c.listener} listener expired at {gofmt.rfc3339(c.not_after)}"
            for c in self.certs()
            if c.seconds_left(now) <= 0
        ]

    async def start(self) -> None:
        self.check()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="pynatsd-certwatch")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.check()
            except Exception:  # a bad file must not end the watch
                log.exception("certificate expiry check failed")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _days(seconds: float) -> str:
    """Time left as days and hours (``9d23h``), or hours and minutes under a day."""
    mins = int(seconds // 60)
    hours, mins = divmod(mins, 60)
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h" if days else f"{hours}h{mins}m"
