"""TLS on routes in a mixed cluster: pynatsd and real nats-server nodes with mutual TLS, and
nodes of either implementation with a certificate from an untrusted CA refused by the other."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from pynatsd.config.options import TLSOptions
from tests.helpers.certs import CertSet, make_cert_set
from tests.integration.test_cluster import HOST, Inbox, nroutes, route_url, wait_until
from tests.integration.test_cluster_tls import rogue_cert
from tests.interop import test_cluster_mixed
from tests.interop.test_cluster_mixed import Mixed, full_mesh, nats_conf, nats_route, start_mixed

mixed = test_cluster_mixed.mixed  # the same fixture: every node stopped after the test


def nats_tls_block(certs: CertSet, cert: tuple[str, str] | None = None) -> str:
    cert_file, key_file = cert or (certs.server.cert_file, certs.server.key_file)
    return (
        f'  tls {{ cert_file: "{cert_file}", key_file: "{key_file}", '
        f'ca_file: "{certs.ca.cert_file}", verify: true, timeout: 2 }}\n'
    )


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertSet:
    return make_cert_set(tmp_path_factory.mktemp("mixed-certs"))


async def test_mixed_tls_cluster_and_untrusted_node(
    mixed: Mixed, certs: CertSet, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pynatsd")
    tls = TLSOptions(
        cert_file=certs.server.cert_file,
        key_file=certs.server.key_file,
        ca_file=certs.ca.cert_file,
        verify=True,
    )
    a, b, p = await start_mixed(mixed, tls=tls, nats_tls=nats_tls_block(certs))
    assert p.routes is not None
    assert all(r.tls_info is not None for r in p.routes.routes.values())
    na, nb, np_ = await mixed.client(a.port), await mixed.client(b.port), await mixed.client(p.port)
    inbox = Inbox()
    await np_.subscribe("tls.>", cb=inbox.cb("p"))
    await na.subscribe("tls.>", cb=inbox.cb("a"))
    await full_mesh([na, nb, np_])
    await nb.publish("tls.1", b"from B")
    await np_.publish("tls.2", b"from P")
    await full_mesh([na, nb, np_])
    assert sorted(inbox.data("p")) == [b"from B", b"from P"]
    assert sorted(inbox.data("a")) == [b"from B", b"from P"]

    # a pynatsd node with a certificate from an unknown CA: the nats-server refuses it
    rogue = await mixed.pynatsd(
        "ROGUE",
        (nats_route(a),),
        tls=TLSOptions(
            cert_file=rogue_cert(certs, tmp_path)[0],
            key_file=rogue_cert(certs, tmp_path)[1],
            ca_file=certs.ca.cert_file,
            verify=True,
        ),
    )
    # (with TLS 1.3 the dialer only learns of it when the connection is closed on it)
    await wait_until(
        lambda: "TLS route handshake error" in a.stderr(), timeout=10, what="nats-server to log it"
    )
    assert "unknown authority" in a.stderr()
    assert nroutes(rogue) == 0
    # (the TLS layer reads nats-server's alert after the handshake and names the reason)
    await wait_until(
        lambda: (
            "TLS route closed by the remote before its INFO: our certificate was refused by the peer (unknown CA)"
            in caplog.text
        ),
        timeout=5,
        what="our side's reason",
    )
    # and a nats-server with an untrusted certificate is refused by pynatsd, which logs why
    bad = tmp_path / "bad"
    bad.mkdir()
    c = await mixed.nats(nats_conf("EVIL", [route_url(p)], tls=nats_tls_block(certs, rogue_cert(certs, bad))))
    await wait_until(lambda: "TLS route handshake error" in caplog.text, timeout=10, what="the refusal")
    # Go's TLS client holds back a certificate that no CA we named signed
    assert "TLS route handshake error: no client certificate" in caplog.text
    await asyncio.sleep(0.3)
    assert sorted(r.remote_name for r in p.routes.routes.values()) == ["A", "B"]
    assert c.running


async def test_route_tls_handshake_timeout_like_nats_server(
    mixed: Mixed, certs: CertSet, caplog: pytest.LogCaptureFixture
) -> None:
    """A socket that connects to a TLS route port and sends nothing is closed once the cluster
    tls timeout has passed, by either implementation, with nothing written to it."""
    import time

    from tests.interop.test_cluster_mixed import cluster_port

    caplog.set_level(logging.INFO, logger="pynatsd")
    timeout = 0.5
    a = await mixed.nats(
        nats_conf("A", [], tls=nats_tls_block(certs).replace("timeout: 2", f"timeout: {timeout}"))
    )
    tls = TLSOptions(
        cert_file=certs.server.cert_file,
        key_file=certs.server.key_file,
        ca_file=certs.ca.cert_file,
        verify=True,
        timeout=timeout,
    )
    p = await mixed.pynatsd("P", (), tls=tls)
    assert p.routes is not None

    async def silent(port: int) -> tuple[bytes, float]:
        start = time.monotonic()  # before the server can have accepted it
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            data = await asyncio.wait_for(reader.read(), 10)  # until EOF
        except ConnectionResetError:
            data = b""
        elapsed = time.monotonic() - start
        writer.close()
        return data, elapsed

    (theirs, t_theirs), (ours, t_ours) = await asyncio.gather(silent(cluster_port(a)), silent(p.routes.port))
    assert theirs == ours == b""
    for elapsed in (t_theirs, t_ours):
        assert timeout * 0.95 <= elapsed < timeout + 2.0, (t_theirs, t_ours)
    # the same log lines: the handshake's read error, the timer's line, the closed reason (in
    # nats-server the first two race: either order, and the timer's is sometimes missing)
    port = p.routes.port
    ours_log = [m.split(" - ", 2)[2] for m in caplog.messages if " - rid:" in m]
    theirs_log = [line.split(" - ", 2)[2] for line in a.stderr().splitlines() if " - rid:" in line]
    closed, timer = "Router connection closed: TLS Handshake Failure", "TLS handshake timeout"
    for lines, local in ((ours_log, f"{HOST}:{port}"), (theirs_log, f"{HOST}:{cluster_port(a)}")):
        read_err = [x for x in lines if x.startswith("TLS route handshake error: ")]
        assert len(read_err) == 1, lines
        assert read_err[0].startswith(f"TLS route handshake error: read tcp {local}->{HOST}:"), lines
        assert read_err[0].endswith(": i/o timeout")
        assert closed in lines and set(lines) <= {read_err[0], closed, timer}, lines
    assert ours_log[1:] == [timer, closed]
