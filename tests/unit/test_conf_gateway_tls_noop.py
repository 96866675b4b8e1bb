"""``handshake_first`` and ``ocsp_peer`` in a gateway tls block: nats-server 2.15 accepts both and
applies neither (gateway TLS always comes first; OCSP peer checks are for client and leaf
connections). pynatsd accepts them too, and says in a warning that they have no effect."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from tests.helpers.certs import make_cert_set
from tests.helpers.servers import impl_command

from pynatsd.config.load import load_options

OPTIONS = {
    "handshake_first": "handshake_first: true",
    "ocsp_peer": "ocsp_peer: true",
}


def _conf(tmp_path: Path, line: str) -> Path:
    c = make_cert_set(tmp_path / "certs")
    f = tmp_path / "gw.conf"
    f.write_text(
        "gateway {\n  name: A\n  port: -1\n"
        f'  tls {{\n    cert_file: "{c.server.cert_file}"\n    key_file: "{c.server.key_file}"\n'
        f'    ca_file: "{c.ca.cert_file}"\n    {line}\n  }}\n}}\n'
    )
    return f


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_accepted_with_a_warning_as_nats_server_accepts_it(name: str, tmp_path: Path) -> None:
    f = _conf(tmp_path, OPTIONS[name])
    opts = load_options(str(f), validate=False)
    assert opts.gateway is not None and opts.gateway.tls is not None
    assert any(f'"{name}" in a gateway tls block has no effect' in w for w in opts.warnings), opts.warnings
    for impl in ("nats", "pynatsd"):
        p = subprocess.run(impl_command(impl) + ["-t", "-c", str(f)], capture_output=True, text=True, timeout=20)
        assert p.returncode == 0, (impl, p.stdout + p.stderr)
