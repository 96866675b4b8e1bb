"""pynatsd.tls.ocsp without a network: certificate facts, issuer lookup, response parsing and
signature/delegation checks, time windows, the mode table and the peer response cache."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp as xocsp
from tests.helpers.ocsp_responder import OCSPPKI, make_cert, make_ocsp_pki, make_response

from pynatsd.config.options import OCSPCacheOptions
from pynatsd.tls import ocsp

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
URL = "http://127.0.0.1:9/ocsp"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> OCSPPKI:
    return make_ocsp_pki(tmp_path_factory.mktemp("ocsp-core"), URL)


def response(pki: OCSPPKI, status: str = "good", *, signer=None, embed=False,  # type: ignore[no-untyped-def]
             this=NOW - dt.timedelta(minutes=1), nxt: dt.datetime | None = NOW + dt.timedelta(hours=1),
             cert=None) -> bytes:
    req = ocsp.build_request((cert or pki.server_plain).cert, pki.ca.cert)
    return make_response(req, signer or pki.ca, status, this, nxt, embed=embed)


def test_certificate_facts(pki: OCSPPKI) -> None:
    assert ocsp.has_must_staple(pki.server_staple.cert)
    assert not ocsp.has_must_staple(pki.server_plain.cert)
    assert ocsp.aia_ocsp_urls(pki.server_plain.cert) == [URL]
    assert ocsp.aia_ocsp_urls(pki.server_no_aia.cert) == []
    assert ocsp.web_urls(["ldap://x/y", "http://a/b", "https://c", "nonsense"]) == ["http://a/b", "https://c"]


def test_request_uses_sha1_cert_id(pki: OCSPPKI) -> None:
    req = xocsp.load_der_ocsp_request(ocsp.build_request(pki.server_plain.cert, pki.ca.cert))
    assert isinstance(req.hash_algorithm, hashes.SHA1)
    assert req.serial_number == pki.server_plain.serial


def test_find_issuer(pki: OCSPPKI, tmp_path: Path) -> None:
    assert ocsp.find_issuer([pki.server_plain.cert], pki.ca_file) == pki.ca.cert
    assert ocsp.find_issuer([pki.server_plain.cert, pki.ca.cert], None) == pki.ca.cert
    with pytest.raises(ocsp.OCSPError, match="no issuers found"):
        ocsp.find_issuer([pki.server_plain.cert], None)
    with pytest.raises(ocsp.OCSPError, match="no issuers found"):
        ocsp.find_issuer([pki.server_plain.cert, pki.client.cert], None)  # does not sign the leaf
    # an issuer that is not a CA
    leaf_ca = make_cert(tmp_path, "notca", "not a ca")
    leaf = make_cert(tmp_path, "leaf", "leaf", issuer=leaf_ca)
    with pytest.raises(ocsp.OCSPError, match="invalid ca basic constraints: is not ca"):
        ocsp.find_issuer([leaf.cert, leaf_ca.cert], None)


def test_parse_good_revoked_unknown(pki: OCSPPKI) -> None:
    for status in ("good", "revoked", "unknown"):
        st = ocsp.parse_response(response(pki, status), pki.server_plain.cert, pki.ca.cert)
        assert st.status == status
        assert st.good == (status == "good")
        assert st.next_update == NOW + dt.timedelta(hours=1)


def test_parse_checks_signer(pki: OCSPPKI) -> None:
    leaf, ca = pki.server_plain.cert, pki.ca.cert
    st = ocsp.parse_response(response(pki, signer=pki.delegate, embed=True), leaf, ca)
    assert st.good
    with pytest.raises(ocsp.OCSPError, match="missing authorization by CA to act as OCSP signer"):
        ocsp.parse_response(response(pki, signer=pki.not_delegate, embed=True), leaf, ca)
    with pytest.raises(ocsp.OCSPError, match="bad signature on response"):
        ocsp.parse_response(response(pki, signer=pki.delegate, embed=False), leaf, ca)  # key is not the CA's
    with pytest.raises(ocsp.OCSPError, match="not signed by the issuer"):
        ocsp.parse_response(response(pki, signer=pki.client, embed=True), leaf, pki.delegate.cert)


def test_parse_refuses_other_certificate_and_errors(pki: OCSPPKI) -> None:
    with pytest.raises(ocsp.OCSPError, match="serial number mismatch"):
        ocsp.parse_response(response(pki, cert=pki.client), pki.server_plain.cert, pki.ca.cert)
    bad = xocsp.OCSPResponseBuilder.build_unsuccessful(xocsp.OCSPResponseStatus.UNAUTHORIZED)
    with pytest.raises(ocsp.OCSPError, match="error from server: unauthorized"):
        ocsp.parse_response(bad.public_bytes(serialization.Encoding.DER), pki.server_plain.cert, pki.ca.cert)
    with pytest.raises(ocsp.OCSPError, match="malformed"):
        ocsp.parse_response(b"\x30\x03junk", pki.server_plain.cert, pki.ca.cert)


def test_time_windows(pki: OCSPPKI) -> None:
    def st(this: dt.datetime, nxt: dt.datetime | None) -> ocsp.Status:
        return ocsp.Status(b"", "good", this, nxt)

    ocsp.check_valid(st(NOW - dt.timedelta(minutes=1), NOW + dt.timedelta(minutes=1)), NOW)
    with pytest.raises(ocsp.OCSPError, match=r"invalid ocsp NextUpdate, is past time: \d{4}-\d\d-\d\dT"):
        ocsp.check_valid(st(NOW - dt.timedelta(hours=2), NOW - dt.timedelta(seconds=1)), NOW)
    with pytest.raises(ocsp.OCSPError, match="invalid ocsp ThisUpdate, is future time"):
        ocsp.check_valid(st(NOW + dt.timedelta(seconds=1), None), NOW)
    # peer checks: 30 s skew either way, an hour's TTL without NextUpdate
    assert ocsp.is_current(st(NOW - dt.timedelta(hours=2), NOW - dt.timedelta(seconds=29)), 30, 3600, NOW)
    assert not ocsp.is_current(st(NOW - dt.timedelta(hours=2), NOW - dt.timedelta(seconds=31)), 30, 3600, NOW)
    assert ocsp.is_current(st(NOW + dt.timedelta(seconds=29), None), 30, 3600, NOW)
    assert not ocsp.is_current(st(NOW + dt.timedelta(seconds=31), None), 30, 3600, NOW)
    assert ocsp.is_current(st(NOW - dt.timedelta(seconds=3629), None), 30, 3600, NOW)
    assert not ocsp.is_current(st(NOW - dt.timedelta(seconds=3631), None), 30, 3600, NOW)


def test_mode_table() -> None:
    assert ocsp.staple_settings("never", True) == (False, False)
    assert ocsp.staple_settings("auto", True) == (True, False)
    assert ocsp.staple_settings("auto", False) == (False, False)
    assert ocsp.staple_settings("must", True) == (True, True)
    assert ocsp.staple_settings("must", False) == (False, False)
    assert ocsp.staple_settings("always", False) == (True, True)


def test_go_spellings() -> None:
    assert ocsp.rfc3339(dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)) == "2026-01-02T03:04:05Z"
    assert ocsp.rfc3339(dt.datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=dt.UTC)) == "2026-01-02T03:04:05.12Z"
    assert ocsp.go_duration(1800.5) == "30m0.5s"


def test_response_cache_roundtrip_and_policies(pki: OCSPPKI, tmp_path: Path) -> None:
    leaf, ca = pki.client.cert, pki.ca.cert
    good = ocsp.parse_response(response(pki, cert=pki.client), leaf, ca)
    revoked = ocsp.parse_response(response(pki, "revoked", cert=pki.client2), pki.client2.cert, ca)
    store = tmp_path / "rc"
    c = ocsp.ResponseCache(OCSPCacheOptions(local_store=str(store), preserve_revoked=True))
    k1, k2 = ocsp.fingerprint(leaf), ocsp.fingerprint(pki.client2.cert)
    assert c.get(k1) is None and c.misses == 1
    c.put(k1, good, "CN=client one")
    c.put(k2, revoked, "CN=client two")
    assert c.get(k1) == good.raw and c.hits == 1
    c.delete(k2, False)  # preserved: revoked
    assert c.get(k2) == revoked.raw
    c.save()
    doc = json.loads((store / "cache.json").read_text())
    assert doc[k1]["resp_status"] == "good" and doc[k2]["resp_status"] == "revoked"
    again = ocsp.ResponseCache(OCSPCacheOptions(local_store=str(store)))
    again.load()
    assert again.get(k1) == good.raw
    again.delete(k2, True)  # not preserved without preserve_revoked
    assert again.get(k2) is None
    none = ocsp.ResponseCache(OCSPCacheOptions(type="none", local_store=str(store)))
    none.put(k1, good, "x")
    assert none.get(k1) is None
    (store / "cache.json").write_text("not json")
    broken = ocsp.ResponseCache(OCSPCacheOptions(local_store=str(store)))
    broken.load()
    assert broken.items == {} and broken.dirty


async def test_expired_staple_is_left_out_and_refetched_at_once(pki: OCSPPKI) -> None:
    """OpenSSL's callback cannot wait for a fetch: an expired staple is not sent, and the
    monitor's refresh is woken at once (nats-server fetches within the handshake)."""
    memory: dict[str, ocsp.Status] = {}
    mon = ocsp.StapleMonitor(kind="Client", cert_file="c.pem", leaf=pki.server_plain.cert, issuer=pki.ca.cert,
                             urls=[URL], shutdown_on_revoke=False, store_dir=None, memory=memory,
                             on_revoked=lambda: None)
    assert mon.staple(None, None) == b""  # nothing yet
    good = ocsp.parse_response(response(pki), pki.server_plain.cert, pki.ca.cert)
    memory[mon.key] = good
    assert mon.staple(None, None) == good.raw
    memory[mon.key] = ocsp.Status(good.raw, "good", NOW - dt.timedelta(hours=2), NOW - dt.timedelta(seconds=1))
    mon._loop = asyncio.get_running_loop()
    mon._wake = asyncio.Event()
    assert mon.staple(None, None) == b""
    await asyncio.wait_for(mon._wake.wait(), 5)
    assert mon.next_run() == ocsp.MIN_CHECK_INTERVAL
    memory[mon.key] = ocsp.Status(good.raw, "good", NOW, None)
    assert mon.next_run() == ocsp.DEFAULT_CHECK_INTERVAL
