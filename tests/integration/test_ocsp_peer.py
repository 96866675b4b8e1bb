"""``ocsp_peer`` on the client port: client certificates checked with OCSP after the handshake,
against a local responder, with nats-py clients. The verdicts (good accepted, revoked and
unreachable-responder rejected) are compared with the real nats-server; the options
(unknown_is_good, allow_when_ca_unreachable, warn_only), the cache and reload run in-process."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import ssl
import sys
from collections.abc import Iterator
from pathlib import Path

import nats
import nats.errors
import pytest
from tests.helpers.ocsp_responder import OCSPPKI, Cert, OCSPResponder, make_cert, make_ocsp_pki
from tests.helpers.servers import ServerProcess, ServerStartError, nats_server_binary

from pynatsd.config.load import FlagValues, load_options
from pynatsd.server import Server
from pynatsd.tls import ocsp

HOST = "127.0.0.1"


async def try_connect(port: int, pki: OCSPPKI, who: Cert) -> bool:
    return await connects(port, pki.ca_file, who.cert_file, who.key_file)


async def connects(port: int, ca_file: str, cert_file: str, key_file: str) -> bool:
    """True when the client gets through (CONNECT, PING/PONG and a round trip)."""
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.load_cert_chain(cert_file, key_file)
    try:
        nc = await nats.connect(f"tls://{HOST}:{port}", tls=ctx, tls_hostname="localhost",
                                allow_reconnect=False, connect_timeout=3, max_reconnect_attempts=0)
    except Exception:  # noqa: BLE001 - the server closed the connection after the handshake
        return False
    try:
        sub = await nc.subscribe("ocsp.t")
        await nc.publish("ocsp.t", b"x")
        msg = await sub.next_msg(timeout=3)
        return msg.data == b"x"
    except nats.errors.Error:  # closed right after connecting (nats-py may not wait for PONG)
        return False
    finally:
        await nc.close()


def tls_conf(pki: OCSPPKI, peer: str = "ocsp_peer: true") -> str:
    c = pki.server_plain
    return (f'tls {{\n  cert_file: "{c.cert_file}"\n  key_file: "{c.key_file}"\n  ca_file: "{pki.ca_file}"\n'
            f"  verify: true\n  {peer}\n}}\n")


@pytest.fixture(scope="module")
def responder() -> Iterator[OCSPResponder]:
    with OCSPResponder() as r:
        yield r


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory, responder: OCSPResponder) -> OCSPPKI:
    p = make_ocsp_pki(tmp_path_factory.mktemp("ocsp-peer-pki"), responder.url)
    responder.ca = p.ca
    return p


@pytest.fixture(autouse=True)
def fresh_responder(responder: OCSPResponder) -> Iterator[None]:
    responder.mode = "ok"
    responder.statuses.clear()
    responder.default = "good"
    responder.signer = None
    responder.issuers = []
    responder.validity = dt.timedelta(hours=1)
    yield


# ---- differential verdicts ---------------------------------------------------------------------


@pytest.mark.parametrize(("status", "mode", "accepted"), [
    ("good", "ok", True),
    ("revoked", "ok", False),
    ("unknown", "ok", False),
    ("good", "unreachable", False),
])
async def test_verdict_matches_nats_server(impl: str, pki: OCSPPKI, responder: OCSPResponder, tmp_path: Path,
                                          status: str, mode: str, accepted: bool) -> None:
    responder.set_status(pki.client, status)
    responder.mode = mode
    before = responder.count(pki.client.serial)
    srv = ServerProcess(impl, tls_conf(pki), workdir=tmp_path)
    await asyncio.to_thread(srv.start)
    try:
        assert await try_connect(srv.port, pki, pki.client) == accepted
        assert responder.count(pki.client.serial) > before  # the client's status was asked for
        assert await try_connect(srv.port, pki, pki.client_no_aia)  # nothing to check: accepted
        subj = ocsp.subject_dn(pki.client.cert)
        if status != "good":
            await wait_stderr(srv, f"OCSP verify fail for [{subj}] with CA status [{status}]")
        if not accepted:
            await wait_stderr(srv, "client not OCSP valid")
        if mode == "unreachable":
            await wait_stderr(srv, f"Attempt to obtain OCSP response from CA responder for [{subj}] failed: ")
    finally:
        await asyncio.to_thread(srv.cleanup)


async def wait_stderr(srv: ServerProcess, text: str, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while text not in srv.stderr():
        assert asyncio.get_running_loop().time() < deadline, f"no {text!r} in\n{srv.logs()}"
        await asyncio.sleep(0.02)  # another process writes the log: poll with a deadline


# ---- in-process: options, log lines, the cache, reload ------------------------------------------


async def start_server(tmp_path: Path, config: str) -> Server:
    path = tmp_path / "server.conf"
    path.write_text(config)
    srv = Server(load_options(str(path), FlagValues(host=HOST, port=-1)))
    await srv.start()
    return srv


def logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in r.getMessage() for r in caplog.records)


async def test_revoked_client_rejected_with_log_lines(
    pki: OCSPPKI, responder: OCSPResponder, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="pynatsd")
    responder.set_status(pki.client, "revoked")
    srv = await start_server(tmp_path, f'ocsp_cache {{ local_store: "{tmp_path / "rc"}" }}\n' + tls_conf(pki))
    try:
        assert logged(caplog, "OCSP peer cache online, type [local]")
        assert not await try_connect(srv.port, pki, pki.client)
        subj = ocsp.subject_dn(pki.client.cert)
        assert logged(caplog, f"OCSP verify fail for [{subj}] with CA status [revoked]")
        assert logged(caplog, "TLS handshake error: client not OCSP valid")
        assert await try_connect(srv.port, pki, pki.client2)  # good
    finally:
        await srv.shutdown()


@pytest.mark.parametrize(("peer", "status", "mode", "accepted"), [
    ("ocsp_peer { verify: true, unknown_is_good: true }", "unknown", "ok", True),
    ("ocsp_peer { verify: true, allow_when_ca_unreachable: true }", "good", "unreachable", True),
    ("ocsp_peer { verify: true, warn_only: true }", "revoked", "ok", True),
    ("ocsp_peer { verify: true, warn_only: true }", "good", "unreachable", True),
    ("ocsp_peer { verify: true, warn_only: true }", "good", "expired", True),
    ("ocsp_peer { verify: true }", "good", "expired", False),
    ("ocsp_peer { verify: true, allowed_clockskew: 0 }", "good", "no_next_update", True),
    ("ocsp_peer { verify: true, cache_ttl_when_next_update_unset: 30 }", "good", "no_next_update", False),
    ("ocsp_peer { verify: false }", "revoked", "ok", True),
])
async def test_peer_options(pki: OCSPPKI, responder: OCSPResponder, tmp_path: Path,
                            peer: str, status: str, mode: str, accepted: bool) -> None:
    responder.set_status(pki.client, status)
    responder.mode = mode
    srv = await start_server(tmp_path, "ocsp_cache: false\n" + tls_conf(pki, peer))
    try:
        assert await try_connect(srv.port, pki, pki.client) == accepted
    finally:
        await srv.shutdown()


async def test_delegated_responder(pki: OCSPPKI, responder: OCSPResponder, tmp_path: Path) -> None:
    srv = await start_server(tmp_path, "ocsp_cache: false\n" + tls_conf(pki))
    try:
        responder.signer = pki.delegate
        assert await try_connect(srv.port, pki, pki.client)
        responder.signer = pki.not_delegate  # no OCSPSigning EKU: not a responder
        assert not await try_connect(srv.port, pki, pki.client)
    finally:
        await srv.shutdown()


async def test_cache_avoids_responder_and_is_saved(pki: OCSPPKI, responder: OCSPResponder, tmp_path: Path) -> None:
    store = tmp_path / "rc"
    config = f'ocsp_cache {{ local_store: "{store}" }}\n' + tls_conf(pki)
    srv = await start_server(tmp_path, config)
    try:
        before = responder.count(pki.client.serial)
        assert await try_connect(srv.port, pki, pki.client)
        assert await try_connect(srv.port, pki, pki.client)
        assert responder.count(pki.client.serial) == before + 1  # the second came from the cache
        assert srv.ocsp.cache.hits == 1
    finally:
        await srv.shutdown()
    doc = json.loads((store / "cache.json").read_text())
    assert doc[ocsp.fingerprint(pki.client.cert)]["resp_status"] == "good"
    # a restarted server loads it: no request at all, even with the responder down
    responder.mode = "unreachable"
    srv = await start_server(tmp_path, config)
    try:
        before = responder.count()
        assert await try_connect(srv.port, pki, pki.client)
        assert responder.count() == before
    finally:
        await srv.shutdown()


async def test_no_cache_asks_every_time(pki: OCSPPKI, responder: OCSPResponder, tmp_path: Path) -> None:
    srv = await start_server(tmp_path, "ocsp_cache { type: none }\n" + tls_conf(pki))
    try:
        before = responder.count(pki.client.serial)
        assert await try_connect(srv.port, pki, pki.client)
        assert await try_connect(srv.port, pki, pki.client)
        assert responder.count(pki.client.serial) == before + 2
    finally:
        await srv.shutdown()


async def test_reload_turns_peer_checks_on(pki: OCSPPKI, responder: OCSPResponder, tmp_path: Path) -> None:
    responder.set_status(pki.client, "revoked")
    path = tmp_path / "server.conf"
    srv = await start_server(tmp_path, "ocsp_cache: false\n" + tls_conf(pki, ""))
    try:
        assert await try_connect(srv.port, pki, pki.client)
        path.write_text("ocsp_cache: false\n" + tls_conf(pki))
        srv.reload(load_options(str(path), FlagValues(host=HOST, port=-1)))
        assert not await try_connect(srv.port, pki, pki.client)
        path.write_text("ocsp_cache: false\n" + tls_conf(pki, "ocsp_peer: false"))
        srv.reload(load_options(str(path), FlagValues(host=HOST, port=-1)))
        assert await try_connect(srv.port, pki, pki.client)
    finally:
        await srv.shutdown()


def readme_ocsp_config() -> str:
    """The configuration shown in README.md's OCSP section, verbatim."""
    text = (Path(__file__).parents[2] / "README.md").read_text()
    section = text[text.index("### OCSP"):]
    start = section.index("```\n") + 4
    return section[start:section.index("```", start)]


async def test_readme_example_works_as_written(tmp_path: Path) -> None:
    """With ``pynatsd certs`` files (no OCSP responder named: nothing to staple or check), the
    README's example starts, accepts a client certificate, and nats-server accepts it too."""
    config = readme_ocsp_config()
    assert "ocsp_peer: true" in config and "ocsp {" in config
    made = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pynatsd", "certs", "certs", "--client", "alice", cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL)
    assert await made.wait() == 0
    (tmp_path / "n.conf").write_text(config)
    check = await asyncio.create_subprocess_exec(nats_server_binary(), "-t", "-c", "n.conf", cwd=tmp_path,
                                                 stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    assert await check.wait() == 0
    srv = ServerProcess("pynatsd", config, workdir=tmp_path)
    await asyncio.to_thread(srv.start)
    try:
        certs = tmp_path / "certs"
        assert await connects(srv.port, str(certs / "ca.pem"), str(certs / "alice-cert.pem"),
                              str(certs / "alice-key.pem"))
        assert "OCSP peer cache online, type [local]" in srv.stderr()
    finally:
        await asyncio.to_thread(srv.cleanup)


def test_ocsp_peer_without_verify_refused_at_start_like_nats_server(impl: str, pki: OCSPPKI, tmp_path: Path) -> None:
    c = pki.server_plain
    config = f'tls {{\n  cert_file: "{c.cert_file}"\n  key_file: "{c.key_file}"\n  ocsp_peer: true\n}}\n'
    srv = ServerProcess(impl, config, workdir=tmp_path)
    with pytest.raises(ServerStartError) as exc:
        srv.start()
    srv.cleanup()
    assert "OCSP peer verification for client connections requires TLS verify (mTLS) to be enabled" in str(exc.value)


@pytest.mark.parametrize(("revoked", "accepted"), [(None, True), ("intermediate", False), ("leaf", False)])
async def test_every_eligible_link_of_the_chain_is_checked(
    pki: OCSPPKI, responder: OCSPResponder, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    revoked: str | None, accepted: bool,
) -> None:
    """Client leaf -> intermediate CA -> root: both non-root certificates name the responder and
    must be good."""
    caplog.set_level(logging.WARNING, logger="pynatsd")
    url = ocsp.aia_ocsp_urls(pki.client.cert)[0]
    inter = make_cert(tmp_path, "inter", "Intermediate CA", issuer=pki.ca, ca=True, ocsp_urls=(url,))
    leaf = make_cert(tmp_path, "deep", "deep client", issuer=inter, ocsp_urls=(url,), client=True, chain=(inter,))
    responder.issuers = [inter]
    if revoked is not None:
        responder.set_status(inter if revoked == "intermediate" else leaf, "revoked")
    srv = await start_server(tmp_path, "ocsp_cache: false\n" + tls_conf(pki))
    try:
        assert await try_connect(srv.port, pki, leaf) == accepted
        if revoked is not None:
            who = inter if revoked == "intermediate" else leaf
            assert logged(caplog, f"OCSP verify fail for [{ocsp.subject_dn(who.cert)}] with CA status [revoked]")
    finally:
        await srv.shutdown()


async def test_revoked_intermediate_rejected_like_nats_server(impl: str, pki: OCSPPKI, responder: OCSPResponder,
                                                             tmp_path: Path) -> None:
    url = ocsp.aia_ocsp_urls(pki.client.cert)[0]
    inter = make_cert(tmp_path, "inter", "Intermediate CA", issuer=pki.ca, ca=True, ocsp_urls=(url,))
    leaf = make_cert(tmp_path, "deep", "deep client", issuer=inter, ocsp_urls=(url,), client=True, chain=(inter,))
    responder.issuers = [inter]
    responder.set_status(inter, "revoked")
    srv = ServerProcess(impl, tls_conf(pki), workdir=tmp_path / "srv")
    await asyncio.to_thread(srv.start)
    try:
        assert not await try_connect(srv.port, pki, leaf)
        await wait_stderr(srv, f"OCSP verify fail for [{ocsp.subject_dn(inter.cert)}] with CA status [revoked]")
    finally:
        await asyncio.to_thread(srv.cleanup)


async def test_varz_ocsp_peer_fields_match_nats_server(pki: OCSPPKI, responder: OCSPResponder,
                                                       tmp_path: Path) -> None:
    """/varz: ``tls_ocsp_peer_verify`` beside tls_verify, ``ocsp_peer_cache`` before
    slow_consumer_stats, its counters (zero ones left out) after a good and a revoked client."""
    import urllib.request

    from tests.helpers.servers import free_port

    responder.set_status(pki.client2, "revoked")
    seen: dict[str, dict[str, object]] = {}
    for impl in ("nats", "pynatsd"):
        http = free_port()
        wd = tmp_path / impl
        wd.mkdir()
        srv = ServerProcess(impl, tls_conf(pki) + f"http: {http}\n", workdir=wd)
        await asyncio.to_thread(srv.start)
        try:
            def varz(http: int = http) -> dict[str, object]:
                with urllib.request.urlopen(f"http://{HOST}:{http}/varz", timeout=5) as r:
                    return dict(json.loads(r.read()))
            before = await asyncio.to_thread(varz)
            assert await try_connect(srv.port, pki, pki.client)
            assert not await try_connect(srv.port, pki, pki.client2)
            after = await asyncio.to_thread(varz)
        finally:
            await asyncio.to_thread(srv.cleanup)
        keys = list(before)
        assert before["tls_ocsp_peer_verify"] is True
        assert keys.index("tls_ocsp_peer_verify") == keys.index("tls_verify") + 1
        assert keys.index("ocsp_peer_cache") == keys.index("slow_consumer_stats") - 1
        assert before["ocsp_peer_cache"] == {"cache_type": "local"}
        seen[impl] = dict(after["ocsp_peer_cache"])  # type: ignore[call-overload]
    assert seen["pynatsd"] == seen["nats"], seen
    assert seen["nats"]["cache_misses"] and seen["nats"]["cached_revoked_responses"] == 1, seen
