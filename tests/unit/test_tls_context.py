"""build_server_context / build_client_context: every tls option, its defaults and its errors."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest
from OpenSSL import SSL
from tests.helpers.certs import CertSet, make_cert_set

from pynatsd.config.options import Source, TLSOptions
from pynatsd.errors import ConfigError
from pynatsd.tls import context as C
from pynatsd.tls.context import build_client_context, build_server_context

SRC = Source("/etc/nats/server.conf", 12)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertSet:
    return make_cert_set(tmp_path_factory.mktemp("tls-context-certs"))


def opts(certs: CertSet, **kw: object) -> TLSOptions:
    base: dict[str, object] = {"cert_file": certs.server.cert_file, "key_file": certs.server.key_file,
                               "source": SRC}
    base.update(kw)
    return TLSOptions(**base)  # type: ignore[arg-type]


def build(o: TLSOptions, fips: bool = False) -> C.ServerTLS:
    return build_server_context(o, fips=fips, where="tls")


def error_of(o: TLSOptions, fips: bool = False) -> ConfigError:
    with pytest.raises(ConfigError) as ei:
        build(o, fips)
    err = ei.value
    assert err.file == SRC.file and err.line == SRC.line
    assert str(err).startswith("/etc/nats/server.conf:12: tls: ")
    assert "\n" not in str(err)
    return err


def ciphers_of(ctx: SSL.Context) -> list[str]:
    return SSL.Connection(ctx, None).get_cipher_list()


# ---- defaults ------------------------------------------------------------------------------


def test_defaults_match_nats_server(certs: CertSet) -> None:
    s = build(opts(certs))
    assert s.min_version == "1.2"
    assert s.cipher_suites == tuple(C.SECURE_TLS12)
    assert len(s.cipher_suites) == 10
    assert s.tls13_suites == ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
    assert s.curves == ("X25519MLKEM768", "SecP256r1MLKEM768", "SecP384r1MLKEM1024", "X25519",
                        "CurveP256", "CurveP384", "CurveP521")
    assert s.verify is False and s.map_users is False and s.pins is None
    assert s.not_after == certs.server.cert.not_valid_after_utc
    assert s.cert == certs.server.cert
    assert s.timeout == 2.0
    assert s.ssl_context.get_verify_mode() == SSL.VERIFY_NONE
    # The OpenSSL list follows the Go preference order: TLS 1.3 first, then AES-GCM.
    names = ciphers_of(s.ssl_context)
    assert names[:3] == list(s.tls13_suites)
    assert names[3:] == [C.ALL_TLS12[n] for n in s.cipher_suites]


def test_group_list_tiers() -> None:
    assert C._group_list(C.DEFAULT_CURVES) == (
        b"X25519MLKEM768:SecP256r1MLKEM768:SecP384r1MLKEM1024 / X25519:P-256:P-384:P-521"
    )
    assert C._group_list(("CurveP384", "X25519")) == b"P-384:X25519"
    assert C._group_list(("X25519MLKEM768",)) == b"X25519MLKEM768"


def test_ml_kem_groups_available_in_bundled_openssl() -> None:
    ctx = SSL.Context(SSL.TLS_METHOD)
    for group in (b"X25519MLKEM768", b"SecP256r1MLKEM768", b"SecP384r1MLKEM1024"):
        assert C._lib.SSL_CTX_set1_curves_list(ctx._context, group) == 1
    assert C._lib.SSL_CTX_set1_curves_list(ctx._context, b"NoSuchGroup") == 0


# ---- cipher suites -------------------------------------------------------------------------


def test_cipher_suites_in_configured_order_and_both_chacha_spellings(certs: CertSet) -> None:
    s = build(opts(certs, cipher_suites=(
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",  # 2.10 spelling
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    )))
    assert s.cipher_suites == ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
                               "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
                               "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384")
    names = ciphers_of(s.ssl_context)
    assert names[3:] == ["ECDHE-RSA-CHACHA20-POLY1305", "ECDHE-ECDSA-CHACHA20-POLY1305",
                         "ECDHE-ECDSA-AES256-GCM-SHA384"]
    # Only TLS 1.2 suites named: TLS 1.3 keeps all three (as nats-server).
    assert s.tls13_suites == C.TLS13
    assert C._lib.SSL_CTX_get_options(s.ssl_context._context) & SSL.OP_CIPHER_SERVER_PREFERENCE


def test_every_secure_suite_maps_to_openssl(certs: CertSet) -> None:
    for name, openssl in C.SECURE_TLS12.items():
        s = build(opts(certs, cipher_suites=(name,)))
        assert ciphers_of(s.ssl_context)[3:] == [openssl]


def test_tls13_suites_restrict_tls13_and_disable_tls12(certs: CertSet) -> None:
    s = build(opts(certs, cipher_suites=("TLS_AES_256_GCM_SHA384",)))
    assert s.cipher_suites == ()
    assert s.tls13_suites == ("TLS_AES_256_GCM_SHA384",)
    assert ciphers_of(s.ssl_context)[0] == "TLS_AES_256_GCM_SHA384"
    assert "TLS_AES_128_GCM_SHA256" not in ciphers_of(s.ssl_context)


def test_unknown_cipher_is_an_error_naming_it(certs: CertSet) -> None:
    err = error_of(opts(certs, cipher_suites=("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "FOO_BAR")))
    assert "unrecognized cipher FOO_BAR" in str(err)


def test_insecure_suites_need_the_option(certs: CertSet) -> None:
    o = opts(certs, cipher_suites=("TLS_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256"))
    err = error_of(o)
    assert ("insecure cipher suites configured without 'allow_insecure_cipher_suites' option set: "
            "TLS_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256") in str(err)
    s = build(dataclasses.replace(o, allow_insecure_cipher_suites=True))
    assert ciphers_of(s.ssl_context)[3:] == ["AES128-GCM-SHA256", "ECDHE-RSA-AES128-SHA256"]


def test_suites_openssl_no_longer_has_are_an_error(certs: CertSet) -> None:
    o = opts(certs, cipher_suites=("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_RSA_WITH_RC4_128_SHA"),
             allow_insecure_cipher_suites=True)
    assert "not available in this OpenSSL" in str(error_of(o))
    o = opts(certs, cipher_suites=("TLS_RSA_WITH_3DES_EDE_CBC_SHA",), allow_insecure_cipher_suites=True)
    assert "TLS_RSA_WITH_3DES_EDE_CBC_SHA" in str(error_of(o))


# ---- curves --------------------------------------------------------------------------------


def test_curves_kept_in_order(certs: CertSet) -> None:
    s = build(opts(certs, curve_preferences=("CurveP384", "X25519MLKEM768", "CurveP256", "CurveP384")))
    assert s.curves == ("CurveP384", "X25519MLKEM768", "CurveP256")


def test_unknown_curve_is_an_error(certs: CertSet) -> None:
    assert "unrecognized curve preference P256" in str(error_of(opts(certs, curve_preferences=("P256",))))
    assert "X448" in str(error_of(opts(certs, curve_preferences=("X448",))))


# ---- versions ------------------------------------------------------------------------------


def test_min_version_13(certs: CertSet) -> None:
    assert build(opts(certs, min_version="1.3")).min_version == "1.3"


def test_min_version_below_12_warns(certs: CertSet, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pynatsd.tls"):
        s = build(opts(certs, min_version="1.0"))
    assert s.min_version == "1.0"
    assert any("TLS 1.0" in r.getMessage() and "insecure" in r.getMessage() for r in caplog.records)
    assert s.warnings and "min_version 1.0" in s.warnings[0]


def test_unknown_min_version(certs: CertSet) -> None:
    assert "unknown version: 2" in str(error_of(opts(certs, min_version="2")))


# ---- FIPS policy ---------------------------------------------------------------------------


def test_fips_defaults(certs: CertSet) -> None:
    s = build(opts(certs), fips=True)
    assert "X25519" not in s.curves
    assert s.curves[0] == "X25519MLKEM768"
    assert set(s.curves) == set(C.FIPS_CURVES)
    assert set(s.cipher_suites) == C.FIPS_TLS12
    assert s.tls13_suites == ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384")
    assert "TLS_CHACHA20_POLY1305_SHA256" not in ciphers_of(s.ssl_context)


def test_fips_filters_explicit_lists(certs: CertSet, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pynatsd.tls"):
        s = build(opts(certs, curve_preferences=("X25519", "CurveP256"),
                       cipher_suites=("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
                                      "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256")), fips=True)
    assert s.curves == ("CurveP256",)
    assert s.cipher_suites == ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",)
    text = caplog.text
    assert "not FIPS-approved: X25519" in text
    assert "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" in text


def test_fips_errors(certs: CertSet) -> None:
    assert "no FIPS-approved curve" in str(error_of(opts(certs, curve_preferences=("X25519",)), fips=True))
    err = error_of(opts(certs, cipher_suites=("TLS_CHACHA20_POLY1305_SHA256",
                                              "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA")), fips=True)
    assert "no FIPS-approved cipher suite" in str(err)
    assert "FIPS" in str(error_of(opts(certs, min_version="1.1"), fips=True))


# ---- verification and pins -----------------------------------------------------------------


def test_verify_requires_client_certificates(certs: CertSet) -> None:
    s = build(opts(certs, verify=True, ca_file=certs.ca.cert_file))
    assert s.verify and not s.map_users
    assert s.ssl_context.get_verify_mode() == SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT
    s = build(opts(certs, verify_and_map=True, ca_file=certs.ca.cert_file))
    assert s.verify and s.map_users
    assert s.ssl_context.get_verify_mode() == SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT


def test_pins_are_validated_and_lowercased(certs: CertSet, caplog: pytest.LogCaptureFixture) -> None:
    pin = certs.alice.spki_sha256
    s = build(opts(certs, verify=True, ca_file=certs.ca.cert_file, pinned_certs=frozenset({pin.upper()})))
    assert s.pins == frozenset({pin})
    assert build(opts(certs, pinned_certs=frozenset())).pins is None
    err = error_of(opts(certs, pinned_certs=frozenset({"abc"})))
    assert "'pinned_certs' key abc does not look like hex-encoded sha256" in str(err)
    with caplog.at_level(logging.WARNING, logger="pynatsd.tls"):
        build(opts(certs, pinned_certs=frozenset({pin})))
    assert "pinned_certs without verify" in caplog.text


# ---- files ---------------------------------------------------------------------------------


def test_missing_cert_or_key_option(certs: CertSet) -> None:
    assert "missing 'cert_file'" in str(error_of(opts(certs, cert_file=None)))
    assert "missing 'key_file'" in str(error_of(opts(certs, key_file=None)))


def test_missing_files_name_the_file_and_fix(certs: CertSet, tmp_path: Path) -> None:
    nope = str(tmp_path / "nope.pem")
    err = error_of(opts(certs, cert_file=nope))
    assert f'cert_file "{nope}" does not exist; fix the path' in str(err)
    err = error_of(opts(certs, key_file=nope))
    assert f'key_file "{nope}" does not exist' in str(err)
    err = error_of(opts(certs, verify=True, ca_file=nope))
    assert f'ca_file "{nope}" does not exist' in str(err)
    err = error_of(opts(certs, cert_file=str(tmp_path)))
    assert "is a directory" in str(err)


def test_garbage_files(certs: CertSet) -> None:
    assert "holds no PEM certificate" in str(error_of(opts(certs, cert_file=certs.not_a_pem_file)))
    assert "holds no PEM private key" in str(error_of(opts(certs, key_file=certs.not_a_pem_file)))
    err = error_of(opts(certs, verify=True, ca_file=certs.not_a_pem_file))
    assert f'ca_file "{certs.not_a_pem_file}"' in str(err)
    # A certificate given as the key, and a key given as the certificate.
    assert "key_file" in str(error_of(opts(certs, key_file=certs.server.cert_file)))
    assert "cert_file" in str(error_of(opts(certs, cert_file=certs.server.key_file)))


def test_key_not_matching_certificate(certs: CertSet) -> None:
    err = error_of(opts(certs, key_file=certs.wrong_key_file))
    assert f'key_file "{certs.wrong_key_file}" does not match the certificate in cert_file' in str(err)
    assert "use the key the certificate was issued for" in str(err)


def test_encrypted_key(certs: CertSet, tmp_path: Path) -> None:
    err = error_of(opts(certs, key_file=certs.encrypted_key_file))
    assert "is encrypted; set key_password_file" in str(err)
    s = build(opts(certs, key_file=certs.encrypted_key_file, key_password_file=certs.key_password_file))
    assert s.cert == certs.server.cert
    bad = tmp_path / "bad-password.txt"
    bad.write_text("wrong\n")
    err = error_of(opts(certs, key_file=certs.encrypted_key_file, key_password_file=str(bad)))
    assert "cannot decrypt key_file" in str(err) and "check the passphrase" in str(err)
    err = error_of(opts(certs, key_password_file=certs.key_password_file))  # plain key + password
    assert "is not encrypted" in str(err)


def test_expired_server_certificate_warns_loudly_but_builds(certs: CertSet,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pynatsd.tls"):
        s = build(opts(certs, cert_file=certs.expired_server.cert_file, key_file=certs.expired_server.key_file))
    assert s.not_after == certs.expired_server.cert.not_valid_after_utc
    assert "EXPIRED" in caplog.text and certs.expired_server.cert_file in caplog.text


def test_certificate_chain_file(certs: CertSet, tmp_path: Path) -> None:
    chain = tmp_path / "chain.pem"
    chain.write_bytes(Path(certs.server.cert_file).read_bytes() + Path(certs.ca.cert_file).read_bytes())
    s = build(opts(certs, cert_file=str(chain)))
    assert s.cert == certs.server.cert


def test_error_without_source_position(certs: CertSet) -> None:
    with pytest.raises(ConfigError) as ei:
        build_server_context(TLSOptions(cert_file=certs.server.cert_file, key_file=None), fips=False,
                             where="cluster.tls")
    assert str(ei.value).startswith("cluster.tls: missing 'key_file'")


def test_reload_builds_an_independent_context(certs: CertSet) -> None:
    a = build(opts(certs))
    b = build(opts(certs, cert_file=certs.server_rsa.cert_file, key_file=certs.server_rsa.key_file))
    assert a.ssl_context is not b.ssl_context
    assert a.cert == certs.server.cert and b.cert == certs.server_rsa.cert


# ---- client side ---------------------------------------------------------------------------


def test_client_context(certs: CertSet, caplog: pytest.LogCaptureFixture) -> None:
    c = build_client_context(TLSOptions(ca_file=certs.ca.cert_file), fips=False, where="cluster.tls")
    assert c.verify and c.cert is None
    assert c.ssl_context.get_verify_mode() == SSL.VERIFY_PEER
    c = build_client_context(TLSOptions(cert_file=certs.alice.cert_file, key_file=certs.alice.key_file,
                                        ca_file=certs.ca.cert_file), fips=False, where="cluster.tls")
    assert c.cert == certs.alice.cert
    with caplog.at_level(logging.WARNING, logger="pynatsd.tls"):
        c = build_client_context(TLSOptions(insecure=True), fips=False, where="cluster.tls")
    assert not c.verify and c.ssl_context.get_verify_mode() == SSL.VERIFY_NONE
    # (the route/gateway/leafnode managers log nats-server's "solicited ... DO NOT USE IN PRODUCTION!")
    assert "DO NOT USE IN PRODUCTION" not in caplog.text
    with pytest.raises(ConfigError, match="missing 'key_file'"):
        build_client_context(TLSOptions(cert_file=certs.alice.cert_file), fips=False, where="cluster.tls")


def test_help_names_cover_the_tables() -> None:
    ciphers, curves = C.help_names()
    assert "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" in ciphers and "TLS_AES_128_GCM_SHA256" in ciphers
    assert list(curves) == list(C.DEFAULT_CURVES)


def test_go_names_of_negotiated_values() -> None:
    assert C.go_cipher_name("ECDHE-RSA-AES128-GCM-SHA256") == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    assert C.go_cipher_name("TLS_AES_256_GCM_SHA384") == "TLS_AES_256_GCM_SHA384"
    assert C.go_group_name("x25519") == "X25519"
    assert C.go_group_name("secp384r1") == "CurveP384"
    assert C.go_group_name("X25519MLKEM768") == "X25519MLKEM768"
    assert C.go_group_name(None) is None
