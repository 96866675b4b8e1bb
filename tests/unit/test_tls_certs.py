"""``pynatsd certs``: the development CA, server and client certificates it writes."""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pynatsd.config.options import TLSOptions
from pynatsd.tls import certs as C
from pynatsd.tls.context import build_client_context, build_server_context
from pynatsd.tls.identity import cert_identities


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_generates_everything(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "dev"
    assert C.main([str(d), "--client", "alice", "--client", "bob", "--days", "30"]) == 0
    names = sorted(p.name for p in d.iterdir())
    assert names == ["alice-cert.pem", "alice-key.pem", "bob-cert.pem", "bob-key.pem", "ca-key.pem", "ca.pem",
                     "server-cert.pem", "server-key.pem"]
    for key in ("ca-key.pem", "server-key.pem", "alice-key.pem", "bob-key.pem"):
        assert stat.S_IMODE(os.stat(d / key).st_mode) == 0o600
    ca, server, alice = load(d / "ca.pem"), load(d / "server-cert.pem"), load(d / "alice-cert.pem")
    server.verify_directly_issued_by(ca)
    alice.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(i) for i in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    life = server.not_valid_after_utc - server.not_valid_before_utc
    assert dt.timedelta(days=29) < life <= dt.timedelta(days=31)
    assert cert_identities(alice)[0] == "alice@localhost"
    assert "CN=alice" in cert_identities(alice)[-1]
    out = capsys.readouterr().out
    assert f'cert_file: "{d / "server-cert.pem"}"' in out
    assert "verify_and_map: true" in out and '{ user: "alice@localhost" }' in out


def test_default_validity_is_90_days(tmp_path: Path) -> None:
    assert C.main([str(tmp_path)]) == 0
    server = load(tmp_path / "server-cert.pem")
    life = server.not_valid_after_utc - server.not_valid_before_utc
    assert dt.timedelta(days=89) < life <= dt.timedelta(days=91)


def test_generated_files_work_for_mutual_tls(tmp_path: Path) -> None:
    assert C.main([str(tmp_path), "--client", "alice"]) == 0
    s = build_server_context(TLSOptions(cert_file=str(tmp_path / "server-cert.pem"),
                                        key_file=str(tmp_path / "server-key.pem"),
                                        ca_file=str(tmp_path / "ca.pem"), verify_and_map=True), fips=False, where="tls")
    assert s.verify and s.map_users and not s.warnings
    c = build_client_context(TLSOptions(cert_file=str(tmp_path / "alice-cert.pem"),
                                        key_file=str(tmp_path / "alice-key.pem"),
                                        ca_file=str(tmp_path / "ca.pem")), fips=False, where="cluster.tls")
    assert c.cert is not None


def test_refuses_to_overwrite_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert C.main([str(tmp_path)]) == 0
    before = (tmp_path / "ca.pem").read_bytes()
    capsys.readouterr()
    assert C.main([str(tmp_path)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "ca.pem").read_bytes() == before
    assert C.main([str(tmp_path), "--force"]) == 0
    assert (tmp_path / "ca.pem").read_bytes() != before


def test_quiet_if_present_keeps_valid_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert C.main([str(tmp_path), "--client", "alice", "--quiet-if-present"]) == 0
    assert "Wrote development certificates" in capsys.readouterr().out
    snapshot = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert C.main([str(tmp_path), "--client", "alice", "--quiet-if-present"]) == 0
    assert capsys.readouterr().out == ""
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == snapshot
    # a new client is added from the same CA; the rest stays
    assert C.main([str(tmp_path), "--client", "alice", "--client", "bob", "--quiet-if-present"]) == 0
    assert (tmp_path / "ca.pem").read_bytes() == snapshot["ca.pem"]
    assert (tmp_path / "alice-cert.pem").read_bytes() == snapshot["alice-cert.pem"]
    load(tmp_path / "bob-cert.pem").verify_directly_issued_by(load(tmp_path / "ca.pem"))
    # a broken server key is replaced
    (tmp_path / "server-key.pem").write_text("garbage")
    assert C.main([str(tmp_path), "--quiet-if-present"]) == 0
    key = serialization.load_pem_private_key((tmp_path / "server-key.pem").read_bytes(), None)
    assert key.public_key() == load(tmp_path / "server-cert.pem").public_key()
    assert (tmp_path / "ca.pem").read_bytes() == snapshot["ca.pem"]


def test_expired_ca_regenerates_everything(tmp_path: Path) -> None:
    key = C.new_key()
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    ca = C.issue(C.name("old CA"), key, ca=True, not_before=old, not_after=old + dt.timedelta(days=1))
    C.write_cert(tmp_path / "ca.pem", ca)
    C.write_key(tmp_path / "ca-key.pem", key)
    assert C.main([str(tmp_path), "--quiet-if-present"]) == 0
    new_ca = load(tmp_path / "ca.pem")
    assert new_ca != ca
    load(tmp_path / "server-cert.pem").verify_directly_issued_by(new_ca)


@pytest.mark.parametrize("argv", [["--client", "server"], ["--client", "a/b"], ["--days", "1"]])
def test_bad_arguments(tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert C.main([str(tmp_path), *argv]) == 2
    assert capsys.readouterr().err.startswith("pynatsd certs:")
    assert list(tmp_path.iterdir()) == []
