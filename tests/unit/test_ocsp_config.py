"""The ``ocsp``, ``ocsp_cache`` and ``ocsp_peer`` configuration: values, and nats-server's error
texts checked against the real binary (``nats-server -t``)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.helpers.ocsp_responder import make_cert
from tests.helpers.servers import nats_server_binary

from pynatsd.config.load import load_options
from pynatsd.config.options import OCSPCacheOptions, OCSPOptions, OCSPPeerOptions
from pynatsd.errors import ConfigError

TLS = "@TLS@"  # stands for cert_file/key_file of a real certificate (nats-server -t loads it)
_tls: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    c = make_cert(tmp_path_factory.mktemp("ocsp-conf"), "srv", "localhost", server=True)
    _tls.append(f'cert_file: "{c.cert_file}", key_file: "{c.key_file}"')
    yield
    _tls.clear()


def load(tmp_path: Path, text: str, validate: bool = False):  # type: ignore[no-untyped-def]
    path = tmp_path / "t.conf"
    path.write_text(text.replace(TLS, _tls[0]) + "\n")
    return load_options(str(path), validate=validate)


def nats_check(tmp_path: Path, text: str) -> tuple[int, str]:
    path = tmp_path / "n.conf"
    path.write_text(text.replace(TLS, _tls[0]) + "\n")
    p = subprocess.run([nats_server_binary(), "-t", "-c", str(path)], capture_output=True, text=True, timeout=20)
    return p.returncode, p.stdout + p.stderr


VALID = [
    ("ocsp: true", lambda o: o.ocsp == OCSPOptions(mode="auto", source=o.ocsp.source)),
    ("ocsp: false", lambda o: o.ocsp.mode == "never"),
    ('ocsp { mode: ALWAYS, url: "http://127.0.0.1:1" }',
     lambda o: (o.ocsp.mode, o.ocsp.urls) == ("always", ("http://127.0.0.1:1",))),
    ("ocsp { mode: must }", lambda o: o.ocsp.mode == "must"),
    ("ocsp {}", lambda o: o.ocsp.mode == "auto"),
    ("ocsp_cache: true", lambda o: o.ocsp_cache == OCSPCacheOptions()),
    ("ocsp_cache: false", lambda o: o.ocsp_cache.type == "none"),
    ('ocsp_cache { Type: NONE, local_store: "/x", preserve_revoked: true, save_interval: "1m" }',
     lambda o: o.ocsp_cache == OCSPCacheOptions("none", "/x", True, 60.0)),
    ("ocsp_cache { save_interval: 0.5 }", lambda o: o.ocsp_cache.save_interval == 1.0),
    (f"tls {{ {TLS}, ocsp_peer: true }}", lambda o: o.tls.ocsp_peer == OCSPPeerOptions(verify=True)),
    (f"tls {{ {TLS}, ocsp_peer: false }}", lambda o: o.tls.ocsp_peer == OCSPPeerOptions(verify=False)),
    (f'tls {{ {TLS}, ocsp_peer {{ VERIFY: true, ca_timeout: -1, allowed_clockskew: 1.5, '
     f'cache_ttl_when_next_update_unset: "1m", warn_only: true, unknown_is_good: true, '
     f'allow_when_ca_unreachable: true }} }}',
     lambda o: o.tls.ocsp_peer == OCSPPeerOptions(True, 2.0, 1.5, True, True, True, 60.0)),
    ('store_dir: "/tmp/s"', lambda o: o.store_dir == "/tmp/s"),
]


@pytest.mark.parametrize(("text", "check"), VALID)
def test_valid(tmp_path: Path, text: str, check) -> None:  # type: ignore[no-untyped-def]
    assert check(load(tmp_path, text))
    rc, out = nats_check(tmp_path, text)
    assert rc == 0, out


INVALID = [
    ("ocsp: 1", "error parsing ocsp config: unsupported type int64"),
    ('ocsp: "x"', "error parsing ocsp config: unsupported type string"),
    ("ocsp { mode: bogus }", "error parsing ocsp config: unsupported ocsp mode string"),
    ("ocsp { Mode: always }", "error parsing ocsp config: unsupported field string"),
    ("ocsp { foo: 1 }", "error parsing ocsp config: unsupported field string"),
    ("ocsp { mode: 5 }", "interface conversion: interface {} is int64, not string"),
    ("ocsp { url: 5 }", "interface conversion: interface {} is int64, not string"),
    ('ocsp { urls: ["http://a", "http://b"] }', "interface conversion: interface {} is []interface {}, not []string"),
    ("ocsp_cache: 5", "error parsing tags: unsupported type int64"),
    ("ocsp_cache { type: bogus }", "error parsing OCSP peer cache config, unknown type [bogus]"),
    ("ocsp_cache { type: 1 }", 'error parsing OCSP peer cache config, unknown field ["type"]'),
    ("ocsp_cache { foo: 1 }", 'error parsing OCSP peer cache config, unknown field ["foo"]'),
    ('ocsp_cache { save_interval: "bad" }', 'error parsing tls peer config, conversion error: time: invalid duration "bad"'),
    ("ocsp_cache { save_interval: true }", "error parsing OCSP peer cache config, conversion error: unexpected type"),
    ("ocsp_cache { local_store: 1 }", 'error parsing OCSP peer cache config, unknown field ["local_store"]'),
    ("ocsp_cache { preserve_revoked: 1 }", 'error parsing OCSP peer cache config, unknown field ["preserve_revoked"]'),
    (f"tls {{ {TLS}, ocsp_peer: 1 }}", "error parsing ocsp peer config: unsupported type map[string]interface {}"),
    (f"tls {{ {TLS}, ocsp_peer {{ verify: 1 }} }}", 'error parsing tls peer config, unknown field ["verify"]'),
    (f"tls {{ {TLS}, ocsp_peer {{ timeout: 1 }} }}", 'error parsing tls peer config, unknown field ["timeout"]'),
    (f"tls {{ {TLS}, ocsp_peer {{ clock_skew: 1 }} }}", 'error parsing tls peer config, unknown field ["clock_skew"]'),
    (f'tls {{ {TLS}, ocsp_peer {{ ca_timeout: "bad" }} }}',
     'error parsing tls peer config, conversion error: time: invalid duration "bad"'),
    (f"tls {{ {TLS}, ocsp_peer {{ ca_timeout: true }} }}", "error parsing tls peer config, conversion error: unexpected type"),
    (f'tls {{ {TLS}, ocsp_peer {{ allowed_clockskew: "bad" }} }}',
     "error parsing tls peer config, conversion error: unexpected type"),
    (f'tls {{ {TLS}, ocsp_peer {{ cache_ttl_when_next_update_unset: "bad" }} }}',
     'error parsing tls peer config, conversion error: time: invalid duration "bad"'),
    (f"tls {{ {TLS}, ocsp_peer {{ warn_only: 1 }} }}", 'error parsing tls peer config, unknown field ["warn_only"]'),
]


@pytest.mark.parametrize(("text", "message"), INVALID)
def test_invalid_same_text_as_nats_server(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, text)
    assert message in str(exc.value)
    assert exc.value.line == 1
    rc, out = nats_check(tmp_path, text)
    assert rc != 0 and message in out, out


def test_ocsp_peer_needs_verify_at_start_up(tmp_path: Path) -> None:
    """``-t`` accepts it (as nats-server does); starting refuses it with nats-server's text."""
    text = f"tls {{ {TLS}, ocsp_peer: true }}"
    load(tmp_path, text)
    with pytest.raises(ConfigError, match=r"OCSP peer verification for client connections requires TLS verify "
                                          r"\(mTLS\) to be enabled"):
        load(tmp_path, text, validate=True)
    load(tmp_path, f"tls {{ {TLS}, verify: true, ocsp_peer: true }}", validate=True)
    load(tmp_path, f"tls {{ {TLS}, ocsp_peer {{ verify: false }} }}", validate=True)
