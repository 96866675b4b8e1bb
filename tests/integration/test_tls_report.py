"""``pynatsd tls-report``: the report of every TLS listener a configuration gives the server.

What the report says is checked against what the server really does where it can be: the
mapped user and the accept/refuse verdict of ``--client-cert`` against a real pynatsd server
(in-process, loaded from the same file) and a nats-py client presenting that certificate; a bad
configuration's message against the one the server process prints when it refuses to start.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
from cryptography import x509
from tests.helpers.certs import CertSet, Issued, make_cert_set

from pynatsd.config.load import load_options
from pynatsd.server import Server
from pynatsd.tls import report
from pynatsd.tls.certs import issue, name, new_key, write_cert, write_key
from pynatsd.tls.context import DEFAULT_CURVES, SECURE_TLS12, TLS13

HOST = "127.0.0.1"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CertSet]:
    yield make_cert_set(Path(tmp_path_factory.mktemp("tls-report")))


def tls_block(certs: CertSet, extra: str = "", server: Issued | None = None) -> str:
    s = server or certs.server
    return f'tls {{ cert_file: "{s.cert_file}", key_file: "{s.key_file}", ca_file: "{certs.ca.cert_file}"\n{extra}\n}}'


def write_conf(tmp_path: Path, text: str) -> str:
    p = tmp_path / "server.conf"
    p.write_text(text)
    return str(p)


def run_report(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = report.main(list(argv), stdout=out, stderr=err)
    return rc, out.getvalue(), err.getvalue()


def json_report(*argv: str) -> dict[str, Any]:
    rc, out, err = run_report(*argv, "--json")
    assert rc == 0, err
    data: dict[str, Any] = json.loads(out)
    return data


def listener(r: dict[str, Any], kind: str) -> dict[str, Any]:
    found = [ls for ls in r["listeners"] if ls["kind"] == kind]
    assert len(found) == 1, [ls["kind"] for ls in r["listeners"]]
    return found[0]


def client_ctx(certs: CertSet, who: Issued) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=certs.ca.cert_file)
    ctx.load_cert_chain(who.cert_file, who.key_file)
    return ctx


async def real_outcome(conf: str, certs: CertSet, who: Issued) -> tuple[bool, str | None]:
    """(connected, user the server gave the connection) for a nats-py client presenting ``who``
    to a pynatsd server loaded from ``conf``."""
    opts = dataclasses.replace(load_options(conf), host=HOST, port=-1, http_port=0, https_port=0)
    server = Server(opts)
    await server.start()
    try:
        try:
            nc = await nats.connect(f"tls://localhost:{server.port}", tls=client_ctx(certs, who),
                                    allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=3)
        except (TimeoutError, nats.errors.Error, OSError):
            return False, None
        await nc.flush()
        users = [c.user for c in server.clients.values()]
        await nc.close()
        assert len(users) == 1
        return True, users[0]
    finally:
        await server.shutdown()


# ---- served certificates, plain TLS and mutual TLS ------------------------------------------------


def test_plain_tls_report(certs: CertSet, tmp_path: Path) -> None:
    conf = write_conf(tmp_path, f"port: -1\n{tls_block(certs)}\n")
    r = json_report("-c", conf)
    assert r["ok"] is True and r["config_file"] == conf
    ls = listener(r, "client")
    assert ls["role"] == "accepts" and ls["verify_and_map"] is False
    (c,) = ls["certificates"]
    assert c["subject"] == certs.server.cert.subject.rfc4514_string()
    assert c["sans"] == {"dns": ["localhost"], "ip": ["127.0.0.1", "::1"], "email": [], "uri": []}
    assert c["issuer"] == certs.ca.cert.subject.rfc4514_string()
    assert c["key"] == "ECDSA secp256r1 (256 bits)" and c["key_matches"] is True
    assert c["status"] == "ok" and 85 <= c["days_left"] <= 90
    assert c["chain_complete"] is True and len(c["chain_sent"]) == 1
    p = ls["peers"]
    assert p["verify"] is False and p["trusted_cas"] == [] and p["pinned_certs"] is None
    assert p["min_version"] == "1.2"
    assert p["tls12_suites"] == list(SECURE_TLS12) and p["tls13_suites"] == list(TLS13)
    assert p["curves"] == list(DEFAULT_CURVES)
    assert p["allow_non_tls"] is False and p["handshake_first"] == "INFO first, then the TLS handshake"
    rc, text, _ = run_report("-c", conf)
    assert rc == 0
    assert "clients are not asked for a certificate" in text
    assert "key:      ECDSA secp256r1 (256 bits) (matches key_file: yes)" in text
    assert "complete: verifies up to a CA in ca_file" in text


def test_rsa_key_and_expired_and_expiring_certificates(certs: CertSet, tmp_path: Path) -> None:
    r = json_report("-c", write_conf(tmp_path, f"port: -1\n{tls_block(certs, server=certs.server_rsa)}\n"))
    assert listener(r, "client")["certificates"][0]["key"] == "RSA 2048 bits"
    # an expired certificate: the server starts anyway (as nats-server), the report warns
    conf = write_conf(tmp_path, f"port: -1\n{tls_block(certs, server=certs.expired_server)}\n")
    c = listener(json_report("-c", conf), "client")["certificates"][0]
    assert c["status"] == "expired" and c["days_left"] < 0
    rc, text, _ = run_report("-c", conf)
    assert rc == 0 and "WARNING: EXPIRED 1 day(s) ago" in text
    key = new_key()
    soon = issue(name("localhost"), key, issuer=(certs.ca.cert, certs.ca.key), dns=("localhost",), server=True, days=10)
    write_cert(tmp_path / "soon.pem", soon)
    write_key(tmp_path / "soon-key.pem", key)
    soon_set = Issued(soon, key, str(tmp_path / "soon.pem"), str(tmp_path / "soon-key.pem"))
    conf = write_conf(tmp_path, f"port: -1\n{tls_block(certs, server=soon_set)}\n")
    c = listener(json_report("-c", conf), "client")["certificates"][0]
    assert c["status"] == "expiring" and c["days_left"] == 9
    assert "expires in 9 day(s) (less than 30)" in run_report("-c", conf)[1]


def test_chain_with_an_intermediate(certs: CertSet, tmp_path: Path) -> None:
    ikey = new_key()
    inter = issue(name("Intermediate CA"), ikey, issuer=(certs.ca.cert, certs.ca.key), ca=True)
    lkey = new_key()
    leaf = issue(name("localhost"), lkey, issuer=(inter, ikey), dns=("localhost",), server=True)
    write_cert(tmp_path / "leaf-only.pem", leaf)
    write_cert(tmp_path / "leaf-chain.pem", leaf, inter)
    write_key(tmp_path / "leaf-key.pem", lkey)
    for cert_file, complete in (("leaf-only.pem", False), ("leaf-chain.pem", True)):
        served = Issued(leaf, lkey, str(tmp_path / cert_file), str(tmp_path / "leaf-key.pem"))
        conf = write_conf(tmp_path, f"port: -1\n{tls_block(certs, server=served)}\n")
        c = listener(json_report("-c", conf), "client")["certificates"][0]
        assert c["chain_complete"] is complete
        assert [x["subject"] for x in c["chain_sent"]] == (["CN=localhost", "CN=Intermediate CA"] if complete
                                                           else ["CN=localhost"])
        if not complete:
            assert "does not verify against ca_file" in c["chain_note"]


def test_mutual_tls_with_pins_versions_suites_curves(certs: CertSet, tmp_path: Path) -> None:
    extra = f"""verify: true
      min_version: "1.3"
      curve_preferences: [CurveP384, X25519]
      pinned_certs: ["{certs.alice.spki_sha256}", "{certs.bob.spki_sha256}"]
      timeout: 3
      handshake_first: true"""
    conf = write_conf(tmp_path, f"port: -1\n{tls_block(certs, extra)}\n")
    p = listener(json_report("-c", conf), "client")["peers"]
    assert p["verify"] is True and p["trusted_cas"] == [certs.ca.cert.subject.rfc4514_string()]
    assert p["pinned_certs"] == 2 and p["min_version"] == "1.3" and p["timeout"] == 3.0
    assert p["curves"] == ["CurveP384", "X25519"] and p["handshake_first"] == "TLS first, then INFO"
    rc, text, _ = run_report("-c", conf)
    assert "TLS 1.2 suites: (not used: TLS 1.3 only)" in text and "pinned_certs: 2 key(s)" in text
    conf = write_conf(tmp_path, f"port: -1\n{tls_block(certs, 'cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]')}\n")
    p = listener(json_report("-c", conf), "client")["peers"]
    assert p["tls12_suites"] == ["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"] and p["tls13_suites"] == list(TLS13)
    fips = write_conf(tmp_path, f"port: -1\nfips: true\n{tls_block(certs)}\n")
    p = listener(json_report("-c", fips), "client")["peers"]
    assert p["fips"] is True and "X25519" not in p["curves"]
    assert p["tls12_suites"] == [n for n in SECURE_TLS12 if "GCM" in n]


def test_tls_flags_as_the_server_takes_them(certs: CertSet, tmp_path: Path) -> None:
    r = json_report("--tls", "--tlscert", certs.server.cert_file, "--tlskey", certs.server.key_file,
                    "--tlsverify", "--tlscacert", certs.ca.cert_file)
    p = listener(r, "client")["peers"]
    assert p["verify"] is True and p["trusted_cas"] == [certs.ca.cert.subject.rfc4514_string()]
    # verify_and_map from the file, --tls* flags without --tlsverify: no certificate is asked for
    conf = write_conf(tmp_path, f"port: -1\n{tls_block(certs, 'verify_and_map: true')}\n"
                      'authorization { users [ {user: "alice@example.com"} ] }\n')
    r = json_report("-c", conf, "--tlscert", certs.server.cert_file, "--tlskey", certs.server.key_file)
    ls = listener(r, "client")
    assert ls["peers"]["verify"] is False
    assert any("no user can be mapped" in w for w in ls["warnings"])


# ---- verify_and_map -------------------------------------------------------------------------------

MAP_USERS = """authorization {
  users [
    {user: "alice@example.com", permissions: {publish: ["a.>"], subscribe: {deny: ["secret.>"]}}}
    {user: "spiffe://example.com/bob"}
    {user: "C=US,O=Company,CN=carol"}
    {user: "alice"}
    {user: "bob smith"}
  ]
}
"""


def test_verify_and_map_users(certs: CertSet, tmp_path: Path) -> None:
    conf = write_conf(tmp_path, f"port: -1\n{tls_block(certs, 'verify_and_map: true')}\n{MAP_USERS}")
    ls = listener(json_report("-c", conf), "client")
    assert ls["verify_and_map"] is True and ls["peers"]["verify"] is True
    rows = {u["user"]: u for u in ls["users"]}
    assert rows["alice@example.com"]["forms"] == ["email SAN"]
    assert rows["spiffe://example.com/bob"]["forms"] == ["URI SAN"]
    assert rows["C=US,O=Company,CN=carol"]["forms"] == ["RFC 4514 DN", "Go subject string"]
    assert rows["alice"]["forms"] == ["DNS SAN"] and "DNS SAN named exactly 'alice'" in rows["alice"]["note"]
    assert rows["bob smith"]["reachable"] is False
    assert [w for w in ls["warnings"] if "cannot be reached" in w] == [
        f"user 'bob smith' cannot be reached by a certificate: {rows['bob smith']['note']}"]


async def test_client_cert_mapping_matches_a_real_connection(certs: CertSet, tmp_path: Path) -> None:
    carol = certs.issue_extra("carol", x509.Name.from_rfc4514_string("CN=carol,O=Company,C=US"))
    dave = certs.issue_extra("dave", x509.Name.from_rfc4514_string("CN=dave"), emails=("dave@example.com",))
    conf = write_conf(tmp_path, f"port: -1\n{tls_block(certs, 'verify_and_map: true')}\n{MAP_USERS}")
    cases = [(certs.alice, "alice@example.com", "email"), (certs.bob, "spiffe://example.com/bob", "URI"),
             (carol, "C=US,O=Company,CN=carol", "DistinguishedNameMatch"), (dave, None, None)]
    r = json_report("-c", conf, *[a for who, _, _ in cases for a in ("--client-cert", who.cert_file)])
    assert len(r["client_certs"]) == len(cases)
    for (who, user, how), c in zip(cases, r["client_certs"], strict=True):
        assert c["accepted"] is True and c["file"] == who.cert_file
        connected, real_user = await real_outcome(conf, certs, who)
        assert connected is (user is not None)
        assert real_user == user
        if user is None:
            assert c["maps_to"] is None and c["identities_tried"] == ["dave@example.com", "CN=dave"]
        else:
            assert c["maps_to"]["user"] == user and c["maps_to"]["how"] == how
    perms = r["client_certs"][0]["maps_to"]["permissions"]
    assert perms["publish"] == {"allow": ["a.>"], "deny": []}
    assert perms["subscribe"] == {"allow": None, "deny": ["secret.>"]}
    rc, text, _ = run_report("-c", conf, "--client-cert", certs.alice.cert_file, "--client-cert", dave.cert_file)
    assert "verify_and_map: user 'alice@example.com' (by email), account $G" in text
    assert "publish: a.>" in text and "subscribe: everything except secret.>" in text
    assert "names no configured user" in text


async def test_client_cert_accepted_or_refused_as_the_server_does(certs: CertSet, tmp_path: Path) -> None:
    key = new_key()
    server_only = issue(name("svc"), key, issuer=(certs.ca.cert, certs.ca.key), server=True, dns=("svc",))
    write_cert(tmp_path / "svc.pem", server_only)
    write_key(tmp_path / "svc-key.pem", key)
    svc = Issued(server_only, key, str(tmp_path / "svc.pem"), str(tmp_path / "svc-key.pem"))
    conf = write_conf(tmp_path, f"port: -1\n{tls_block(certs, f'verify: true, pinned_certs: [{certs.alice.spki_sha256!r}, {svc.spki_sha256!r}, {certs.expired_client.spki_sha256!r}]'.replace(chr(39), chr(34)))}\n")
    cases = [(certs.alice, True, ""), (certs.bob, False, "not among pinned_certs"),
             (certs.untrusted_client, False, "does not verify"), (certs.expired_client, False, "expired"),
             (svc, False, "clientAuth")]
    r = json_report("-c", conf, *[a for who, _, _ in cases for a in ("--client-cert", who.cert_file)])
    for (who, accepted, reason), c in zip(cases, r["client_certs"], strict=True):
        assert c["accepted"] is accepted, (who.cert_file, c["reasons"])
        assert "maps_to" not in c
        if reason:
            assert any(reason in x for x in c["reasons"]), c["reasons"]
        connected, _ = await real_outcome(conf, certs, who)
        assert connected is accepted, who.cert_file
    rc, text, _ = run_report("-c", conf, "--client-cert", certs.bob.cert_file)
    assert rc == 0 and "client port: REFUSED: its public key is not among pinned_certs" in text
    # without verify the certificate is not asked for
    plain = write_conf(tmp_path, f"port: -1\n{tls_block(certs)}\n")
    (c,) = json_report("-c", plain, "--client-cert", certs.alice.cert_file)["client_certs"]
    assert c["accepted"] is None and "does not ask for client certificates" in c["reasons"][0]


# ---- every listener -------------------------------------------------------------------------------


def test_cluster_gateway_leafnodes_https(certs: CertSet, tmp_path: Path) -> None:
    s, ca = certs.server, certs.ca.cert_file
    block = f'cert_file: "{s.cert_file}", key_file: "{s.key_file}", ca_file: "{ca}"'
    conf = write_conf(tmp_path, f"""port: -1
https_port: -1
tls {{ {block} }}
system_account: SYS
accounts {{ SYS {{}}, A {{ users [ {{user: "leafy@example.com", password: "pw"}} ] }} }}
cluster {{ name: c1, port: -1, authorization {{ user: "localhost" }}, tls {{ {block}, verify_and_map: true }} }}
gateway {{ name: A, port: -1, tls {{ {block} }}
  gateways [ {{ name: B, urls: ["tls://127.0.0.1:17999"], tls {{ ca_file: "{ca}", insecure: true }} }} ] }}
leafnodes {{ port: -1, tls {{ {block}, verify_and_map: true }}
  remotes [ {{ url: "tls://127.0.0.1:17998", tls {{ ca_file: "{ca}", min_version: "1.3", curve_preferences: [CurveP256] }} }} ] }}
""")
    r = json_report("-c", conf)
    assert [ls["kind"] for ls in r["listeners"]] == [
        "client", "https", "cluster", "gateway", "gateway_remote", "leafnodes", "leaf_remote"]
    https = listener(r, "https")
    assert https["peers"]["verify"] is False and https["verify_and_map"] is False
    cl = listener(r, "cluster")
    assert cl["peers"]["verify"] is True and "always mutual TLS" in cl["peers"]["verify_note"]
    assert "authorization user 'localhost'" in cl["peers"]["identity_rule"]
    assert listener(r, "gateway")["peers"]["verify"] is True
    gr = listener(r, "gateway_remote")
    assert gr["role"] == "dials" and gr["peers"]["verify"] is False and gr["address"] == "tls://127.0.0.1:17999"
    assert gr["certificates"] == [] and "no client certificate" in gr["certificate_note"]
    leaf = listener(r, "leafnodes")
    assert leaf["verify_and_map"] is True
    assert {u["user"]: u["forms"] for u in leaf["users"]} == {"leafy@example.com": ["email SAN"]}
    lr = listener(r, "leaf_remote")
    assert lr["peers"]["verify"] is True and lr["peers"]["trusted_cas"] == [certs.ca.cert.subject.rfc4514_string()]
    assert lr["peers"]["min_version"] == "1.3" and lr["peers"]["curves"] == ["CurveP256"]
    assert gr["peers"]["min_version"] == "1.2" and gr["peers"]["tls12_suites"] == list(SECURE_TLS12)
    assert gr["peers"]["curves"] == list(DEFAULT_CURVES)
    rc, text, _ = run_report("-c", conf)
    assert rc == 0
    for title in ("== client port", "== HTTPS monitoring", "== cluster (routes)", "== gateway (",
                  "== gateway remote B (dials tls://127.0.0.1:17999)", "== leafnodes (", "== leafnode remote"):
        assert title in text
    assert "insecure: the server's certificate is NOT checked" in text


def test_no_tls_at_all(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, "port: -1\n")
    assert json_report("-c", conf)["listeners"] == []
    rc, text, _ = run_report("-c", conf)
    assert rc == 0 and "No TLS listener" in text


# ---- failures, the command line -------------------------------------------------------------------


def server_error_line(conf: str) -> str:
    """The message of the [FTL] line the pynatsd server process logs when it refuses ``conf``."""
    p = subprocess.run([sys.executable, "-m", "pynatsd", "-c", conf, "-a", HOST, "-p", "-1"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1
    lines = [ln for ln in (p.stdout + p.stderr).splitlines() if "[FTL]" in ln or ln.startswith("pynatsd: ")]
    assert len(lines) == 1, p.stderr
    return lines[0].split("[FTL] ", 1)[1] if "[FTL]" in lines[0] else lines[0].removeprefix("pynatsd: ")


@pytest.mark.parametrize("case", ["wrong_key", "bad_cipher", "https_without_tls", "gateway_no_port"])
def test_bad_config_fails_with_the_servers_error(certs: CertSet, tmp_path: Path, case: str) -> None:
    s, ca = certs.server, certs.ca.cert_file
    text = {
        "wrong_key": f'tls {{ cert_file: "{s.cert_file}", key_file: "{certs.wrong_key_file}" }}',
        "bad_cipher": f'tls {{ cert_file: "{s.cert_file}", key_file: "{s.key_file}", cipher_suites: [NOPE] }}',
        "https_without_tls": "https_port: -1",
        "gateway_no_port": f'gateway {{ name: A, tls {{ cert_file: "{s.cert_file}", key_file: "{s.key_file}", ca_file: "{ca}" }} }}',
    }[case]
    conf = write_conf(tmp_path, f"port: -1\n{text}\n")
    rc, out, err = run_report("-c", conf)
    assert rc == 1 and out == ""
    assert err == f"pynatsd: {server_error_line(conf)}\n"
    rc, out, err2 = run_report("-c", conf, "--json")
    assert rc == 1 and err2 == err
    assert json.loads(out) == {"ok": False, "error": err.removeprefix("pynatsd: ").rstrip("\n")}


def test_command_dispatch_and_json_shape(certs: CertSet, tmp_path: Path) -> None:
    conf = write_conf(tmp_path, f"port: -1\n{tls_block(certs, 'verify: true')}\n")
    p = subprocess.run([sys.executable, "-m", "pynatsd", "tls-report", "-c", conf, "--json",
                        "--client-cert", certs.alice.cert_file], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert set(r) == {"ok", "config_file", "fips", "listeners", "notes", "warnings", "client_certs"}
    ls = r["listeners"][0]
    assert {"name", "kind", "role", "address", "config", "certificates", "peers", "verify_and_map",
            "warnings"} <= set(ls)
    assert {"subject", "sans", "issuer", "key", "key_matches", "not_before", "not_after", "days_left", "status",
            "chain_sent", "chain_complete"} <= set(ls["certificates"][0])
    assert dt.datetime.strptime(ls["certificates"][0]["not_after"], "%Y-%m-%dT%H:%M:%SZ")
    assert {"verify", "trusted_cas", "pinned_certs", "min_version", "tls12_suites", "tls13_suites", "curves",
            "fips", "timeout", "handshake_first", "allow_non_tls", "ocsp_stapling", "ocsp_peer"} <= set(ls["peers"])
    assert r["client_certs"][0]["accepted"] is True
    bad = subprocess.run([sys.executable, "-m", "pynatsd", "tls-report", "--nope"], capture_output=True,
                         text=True, timeout=30)
    assert bad.returncode == 2 and "flag provided but not defined: -nope" in bad.stderr
