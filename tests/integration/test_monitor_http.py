"""The monitoring listener of a real pynatsd Server: HTTP details (headers, index page, 404,
base path), HTTPS with the server's certificate, /metrics in Prometheus format, the liveness /
readiness split and the certificate expiry watch (warnings, /healthz on an expired cert)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import nats
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.helpers.certs import CertSet, make_cert_set

from pynatsd.config.options import ServerOptions, TLSOptions
from pynatsd.errors import ConfigError
from pynatsd.monitor.certwatch import CertExpiryWatch
from pynatsd.monitor.http import MonitorServer
from pynatsd.server import Server
from pynatsd.tls.certs import issue, name, new_key, write_cert, write_key


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertSet:
    return make_cert_set(tmp_path_factory.mktemp("monitor-http-certs"))


def server_cert(certs: CertSet, directory: Path, days: float) -> tuple[str, str, dt.datetime]:
    """A localhost certificate from the test CA that expires in ``days`` (negative: expired)."""
    key = new_key("ec")
    now = dt.datetime.now(dt.UTC)
    not_after = (now + dt.timedelta(days=days)).replace(microsecond=0)
    cert = issue(name("localhost"), key, issuer=(certs.ca.cert, certs.ca.key), dns=("localhost",),
                 ips=("127.0.0.1",), server=True, not_before=now - dt.timedelta(days=60), not_after=not_after)
    cf, kf = directory / f"srv{days}.pem", directory / f"srv{days}-key.pem"
    write_cert(cf, cert)
    write_key(kf, key)
    return str(cf), str(kf), not_after


async def fetch(url: str, *, tls: ssl.SSLContext | None = None, headers: dict[str, str] | None = None
                ) -> tuple[int, Any, str]:
    async with aiohttp.ClientSession() as s, s.get(url, ssl=tls if tls is not None else False, headers=headers) as r:
        return r.status, r.headers, await r.text()


@pytest.fixture
async def plain() -> AsyncIterator[Server]:
    opts = ServerOptions(host="127.0.0.1", port=-1, http_host="127.0.0.1", http_port=-1)
    async with Server(opts) as srv:
        yield srv


async def test_hookup_and_ports(plain: Server) -> None:
    assert plain.monitor is not None and plain.http_port == plain.monitor.port > 0
    assert plain.monitor.urls == [f"http://127.0.0.1:{plain.http_port}"]


async def test_headers_index_and_not_found(plain: Server) -> None:
    base = f"http://127.0.0.1:{plain.http_port}"
    status, headers, body = await fetch(f"{base}/varz")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert "Server" not in headers
    assert body.startswith('{\n  "server_id": "')  # pretty-printed as nats-server
    status, headers, body = await fetch(f"{base}/healthz")
    assert (status, body) == (200, '{"status":"ok"}')  # compact
    status, headers, body = await fetch(f"{base}/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    for path in ("/varz", "/connz", "/subsz", "/routez", "/gatewayz", "/leafz", "/accountz", "/healthz", "/metrics"):
        assert f'href=".{path}"' in body
    for path in ("/nothing", "/varz/", "/healthz/nope"):
        status, headers, body = await fetch(f"{base}{path}")
        assert (status, body) == (404, "404 page not found\n")
        assert headers["Content-Type"] == "text/plain; charset=utf-8"
    status, _, body = await fetch(f"{base}/subscriptionsz")
    assert status == 200 and '"num_subscriptions"' in body
    status, _, body = await fetch(f"{base}/varz")
    stats = __import__("json").loads(body)["http_req_stats"]
    assert stats["/varz"] == 2 and stats["/"] == 1 and stats["/subsz"] == 1 and stats["/healthz"] == 1


async def test_base_path() -> None:
    opts = ServerOptions(host="127.0.0.1", port=-1, http_host="127.0.0.1", http_port=-1, http_base_path="mon/")
    async with Server(opts) as srv:
        base = f"http://127.0.0.1:{srv.http_port}"
        assert (await fetch(f"{base}/mon/varz"))[0] == 200
        assert (await fetch(f"{base}/mon"))[0] == 200
        assert (await fetch(f"{base}/varz"))[0] == 404
        status, _, body = await fetch(f"{base}/mon/varz")
        assert '"http_base_path": "mon/"' in body


async def test_https_uses_server_certificate_without_client_auth(certs: CertSet) -> None:
    tls = TLSOptions(cert_file=certs.server.cert_file, key_file=certs.server.key_file, ca_file=certs.ca.cert_file,
                     verify=True)
    opts = ServerOptions(host="127.0.0.1", port=-1, http_host="127.0.0.1", https_port=-1, tls=tls)
    async with Server(opts) as srv:
        assert srv.monitor.urls == [f"https://127.0.0.1:{srv.http_port}"]
        ctx = ssl.create_default_context(cafile=certs.ca.cert_file)  # no client certificate
        status, _, body = await fetch(f"https://127.0.0.1:{srv.http_port}/varz", tls=ctx)
        assert status == 200
        expected = certs.server.cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert f'"tls_cert_not_after": "{expected}"' in body
        with pytest.raises(aiohttp.ClientError):
            await fetch(f"http://127.0.0.1:{srv.http_port}/varz")  # plain HTTP is not served there


async def test_monitor_config_errors(certs: CertSet) -> None:
    # MonitorServer refuses before binding anything (B's loader refuses these configs first)
    opts = ServerOptions(host="127.0.0.1", port=-1, http_host="127.0.0.1", https_port=-1)
    with pytest.raises(ConfigError, match="TLS cert and key required for HTTPS"):
        await MonitorServer(Server(opts)).start()
    opts = ServerOptions(host="127.0.0.1", port=-1, http_host="127.0.0.1", http_port=-1, https_port=-1,
                         tls=TLSOptions(cert_file=certs.server.cert_file, key_file=certs.server.key_file))
    with pytest.raises(ConfigError, match=r"can't specify both HTTP \(-1\) and HTTPs \(-1\) ports"):
        await MonitorServer(Server(opts)).start()


async def test_metrics_parse_and_move(certs: CertSet) -> None:
    tls = TLSOptions(cert_file=certs.server.cert_file, key_file=certs.server.key_file)
    opts = ServerOptions(host="127.0.0.1", port=-1, http_host="127.0.0.1", http_port=-1, tls=tls,
                         allow_non_tls=True)
    async with Server(opts) as srv:
        url = f"http://127.0.0.1:{srv.http_port}/metrics"

        async def scrape() -> dict[str, float]:
            status, headers, body = await fetch(url)
            assert status == 200 and headers["Content-Type"].startswith("text/plain")
            out = {}
            for fam in text_string_to_metric_families(body):
                for s in fam.samples:
                    label = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
                    out[f"{s.name}{{{label}}}" if label else s.name] = s.value
            return out

        before = await scrape()
        nc = await nats.connect(f"nats://127.0.0.1:{srv.port}", allow_reconnect=False)
        try:
            sub = await nc.subscribe("m")
            for _ in range(3):
                await nc.publish("m", b"12345")
            for _ in range(3):
                await sub.next_msg(timeout=5)
            after = await scrape()
        finally:
            await nc.close()
        assert after["pynatsd_in_msgs_total"] - before["pynatsd_in_msgs_total"] == 3
        assert after["pynatsd_out_msgs_total"] - before["pynatsd_out_msgs_total"] == 3
        assert after["pynatsd_in_bytes_total"] - before["pynatsd_in_bytes_total"] == 15
        assert after["pynatsd_out_bytes_total"] - before["pynatsd_out_bytes_total"] == 15
        assert after["pynatsd_connections_total"] - before["pynatsd_connections_total"] == 1
        assert after["pynatsd_connections_open"] == 1
        assert after["pynatsd_subscriptions"] == 1
        assert after["pynatsd_slow_consumers_total"] == 0
        left = (certs.server.cert.not_valid_after_utc - dt.datetime.now(dt.UTC)).total_seconds()
        assert after["pynatsd_tls_cert_expiry_seconds{listener=client}"] == pytest.approx(left, abs=30)
        assert "process_resident_memory_bytes" in after
        # OpenMetrics on request
        status, headers, body = await fetch(url, headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        assert headers["Content-Type"].startswith("application/openmetrics-text") and body.endswith("# EOF\n")


async def test_expiring_certificate_warns(certs: CertSet, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cf, kf, not_after = server_cert(certs, tmp_path, 10)
    opts = ServerOptions(host="127.0.0.1", port=-1, http_host="127.0.0.1", https_port=-1,
                         tls=TLSOptions(cert_file=cf, key_file=kf), tls_expiry_warn_days=30)
    with caplog.at_level(logging.WARNING, logger="pynatsd.monitor"):
        async with Server(opts) as srv:
            ctx = ssl.create_default_context(cafile=certs.ca.cert_file)
            status, _, body = await fetch(f"https://127.0.0.1:{srv.http_port}/healthz", tls=ctx)
            assert (status, body) == (200, '{"status":"ok"}')  # close to expiry is still healthy
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("client listener" in w and "expires in 9d23h" in w for w in warnings), warnings
    assert any("monitor listener" in w for w in warnings), warnings
    caplog.clear()
    opts = ServerOptions(host="127.0.0.1", port=-1, http_host="127.0.0.1", http_port=-1,
                         tls=TLSOptions(cert_file=cf, key_file=kf), tls_expiry_warn_days=5)
    with caplog.at_level(logging.WARNING, logger="pynatsd.monitor"):
        async with Server(opts):
            pass
    assert not [r for r in caplog.records if r.name == "pynatsd.monitor" and "expires" in r.getMessage()]


async def test_expired_certificate_degrades_health(certs: CertSet, caplog: pytest.LogCaptureFixture) -> None:
    tls = TLSOptions(cert_file=certs.expired_server.cert_file, key_file=certs.expired_server.key_file)
    opts = ServerOptions(host="127.0.0.1", port=-1, http_host="127.0.0.1", http_port=-1, tls=tls)
    with caplog.at_level(logging.WARNING, logger="pynatsd.monitor"):
        async with Server(opts) as srv:
            base = f"http://127.0.0.1:{srv.http_port}"
            when = certs.expired_server.cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
            status, headers, body = await fetch(f"{base}/healthz")
            assert status == 503 and headers["Content-Type"] == "application/json"
            assert body == f'{{"status":"error","error":"TLS certificate of the client listener expired at {when}"}}'
            status, _, body = await fetch(f"{base}/healthz?details=true")
            assert status == 503 and '"errors":[{"type":"CONNECTION","error":"TLS certificate' in body
            assert (await fetch(f"{base}/healthz/ready"))[0] == 503
            assert (await fetch(f"{base}/healthz/live"))[:3:2] == (200, '{"status":"ok"}')
            status, _, body = await fetch(f"{base}/metrics")
            (sample,) = [s for f in text_string_to_metric_families(body) for s in f.samples
                         if s.name == "pynatsd_tls_cert_expiry_seconds"]
            assert sample.labels == {"listener": "client"} and sample.value < 0
    assert any(r.levelno == logging.ERROR and "expired at" in r.getMessage() for r in caplog.records)


async def test_readiness_follows_lame_duck_and_shutdown() -> None:
    opts = ServerOptions(host="127.0.0.1", port=-1, http_host="127.0.0.1", http_port=-1,
                         lame_duck_duration=30, lame_duck_grace_period=0)
    srv = Server(opts)
    await srv.start()
    try:
        base = f"http://127.0.0.1:{srv.http_port}"
        assert (await fetch(f"{base}/healthz/ready"))[0] == 200
        srv.lame_duck_mode = True  # what lame_duck() sets first; the listener is closed meanwhile
        status, _, body = await fetch(f"{base}/healthz")
        assert (status, body) == (500, '{"status":"error","error":"failed to be ready for connections after 1ms: server"}')
        assert (await fetch(f"{base}/healthz/ready"))[0] == 500
        assert (await fetch(f"{base}/healthz/live"))[0] == 200
    finally:
        await srv.shutdown()


async def test_periodic_expiry_check(certs: CertSet, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cf, kf, _ = server_cert(certs, tmp_path, 3)
    opts = ServerOptions(host="127.0.0.1", port=-1, tls=TLSOptions(cert_file=cf, key_file=kf))
    async with Server(opts) as srv:
        watch = CertExpiryWatch(srv, interval=0.02)
        with caplog.at_level(logging.WARNING, logger="pynatsd.monitor"):
            await watch.start()
            try:
                for _ in range(500):  # no event to await: poll the check counter with a deadline
                    if watch.checks >= 3:
                        break
                    await asyncio.sleep(0.01)
            finally:
                await watch.stop()
        assert watch.checks >= 3
        assert sum("expires in 2d23h" in r.getMessage() for r in caplog.records) >= 3


async def test_expiry_watch_runs_without_monitoring_port(
    certs: CertSet, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cf, kf, _ = server_cert(certs, tmp_path, 10)
    opts = ServerOptions(host="127.0.0.1", port=-1, tls=TLSOptions(cert_file=cf, key_file=kf))
    with caplog.at_level(logging.WARNING, logger="pynatsd.monitor"):
        async with Server(opts) as srv:
            assert srv.monitor is None and srv.cert_watch is not None and srv.cert_watch.checks == 1
    assert any("client listener" in r.getMessage() and "expires in 9d23h" in r.getMessage() for r in caplog.records)
