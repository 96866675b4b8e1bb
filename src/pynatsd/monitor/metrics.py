"""/metrics: the server's counters in Prometheus text format (prometheus-client).

A custom collector reads the live server object at scrape time, so the hot path carries no
metrics code: message and byte counters, connections (current and total), slow consumers,
subscriptions, HTTP monitoring requests, and per listener the seconds until its TLS certificate
expires (``pynatsd_tls_cert_expiry_seconds{listener="client"}``; negative once expired).
Each MonitorServer has its own registry (several servers may live in one process, as in tests),
which also carries the standard ``process_*`` metrics.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from pynatsd import NATS_SERVER_COMPAT_VERSION, __version__
from pynatsd.monitor.certwatch import ServedCert

PREFIX = "pynatsd"


class ServerCollector(Collector):
    def __init__(
        self,
        server: Any,
        *,
        certs: Callable[[], list[ServedCert]],
        http_req_stats: Mapping[str, int] | None = None,
    ) -> None:
        self.server = server
        self._certs = certs
        self._req_stats = http_req_stats

    def collect(self) -> Iterator[Metric]:
        s = self.server
        st = s.stats
        info = GaugeMetricFamily(
            f"{PREFIX}_info", "pynatsd build and identity (value is always 1)",
            labels=["version", "nats_version", "server_id", "server_name"],
        )
        info.add_metric([__version__, NATS_SERVER_COMPAT_VERSION, s.server_id, s.server_name or ""], 1)
        yield info
        start = s.start_time
        yield GaugeMetricFamily(
            f"{PREFIX}_start_time_seconds", "Server start time, seconds since the Unix epoch",
            value=start.timestamp(),
        )
        for name, doc, value in (
            ("in_msgs", "Messages received from clients", st.in_msgs),
            ("out_msgs", "Messages delivered to clients", st.out_msgs),
            ("in_bytes", "Payload bytes received from clients", st.in_bytes),
            ("out_bytes", "Payload bytes delivered to clients", st.out_bytes),
            ("connections", "Client connections accepted since start", st.total_connections),
            ("slow_consumers", "Clients closed or flagged as slow consumers", st.slow_consumers),
        ):
            yield CounterMetricFamily(f"{PREFIX}_{name}", doc, value=value)
        yield GaugeMetricFamily(f"{PREFIX}_connections_open", "Open client connections", value=len(s.clients))
        yield GaugeMetricFamily(
            f"{PREFIX}_subscriptions", "Active subscriptions", value=s.num_subscriptions  # every account
        )
        if self._req_stats is not None:
            req = CounterMetricFamily(
                f"{PREFIX}_http_requests", "Monitoring HTTP requests per endpoint", labels=["path"]
            )
            for path, n in sorted(self._req_stats.items()):
                req.add_metric([path], n)
            yield req
        now = dt.datetime.now(dt.UTC)
        certs = self._certs()
        expiry = GaugeMetricFamily(
            f"{PREFIX}_tls_cert_expiry_seconds",
            "Seconds until the certificate served on a listener expires (negative: expired)",
            labels=["listener"],
        )
        not_after = GaugeMetricFamily(
            f"{PREFIX}_tls_cert_not_after_timestamp_seconds",
            "NotAfter of the certificate served on a listener, seconds since the Unix epoch",
            labels=["listener"],
        )
        for c in certs:
            expiry.add_metric([c.listener], c.seconds_left(now))
            not_after.add_metric([c.listener], c.not_after.timestamp())
        yield expiry
        yield not_after


def make_registry(
    server: Any, *, certs: Callable[[], list[ServedCert]], http_req_stats: Mapping[str, int] | None = None
) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(ServerCollector(server, certs=certs, http_req_stats=http_req_stats))
    ProcessCollector(registry=reg)
    return reg


def render(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """The exposition in the format the scraper asked for (OpenMetrics or text 0.0.4/1.0.0);
    returns (body, content type)."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
