"""Accounts with TLS certificate users (``verify_and_map``), differential: a client whose
certificate names a user of an account lands in that account on pynatsd as on nats-server
(the account is in the INFO that follows CONNECT), and messages stay in it."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.helpers.certs import CertSet, make_cert_set
from tests.helpers.servers import ServerProcess
from tests.integration.test_client_tls import tls_block, tls_exchange

ACCOUNTS = """
accounts {
  A { users [{ user: "alice@example.com" }] }
  B { users [{ user: "CN=bob,OU=Eng,O=Company" }] }
}
"""


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertSet:
    return make_cert_set(tmp_path_factory.mktemp("acct-tls-certs"))


@pytest.fixture(scope="module", params=["nats", "pynatsd"])
def server(request: pytest.FixtureRequest, certs: CertSet) -> Iterator[ServerProcess]:
    conf = tls_block(certs, ca_file=certs.ca.cert_file, verify_and_map=True) + ACCOUNTS
    with ServerProcess(request.param, conf) as srv:
        yield srv


def _account_of(server: ServerProcess, certs: CertSet, who: str) -> str:
    ex = tls_exchange(server.port, certs.ca.cert_file, getattr(certs, who),
                      send=b'CONNECT {"verbose":false,"protocol":1}\r\nPING\r\nPING\r\n', until=b"PONG\r\nPONG\r\n",
                      timeout=5.0)
    assert ex.handshake, ex
    m = re.search(rb'"remote_account":"([^"]*)"', ex.data)
    return m.group(1).decode() if m else f"<none: {ex.data!r} {ex.end}>"


def test_certificate_users_land_in_their_account(server: ServerProcess, certs: CertSet) -> None:
    assert _account_of(server, certs, "alice") == "A"
    assert _account_of(server, certs, "bob") == "B"


def test_messages_stay_in_the_account(server: ServerProcess, certs: CertSet) -> None:
    # bob (account B) publishes on alice's subject on his own connection: only his own
    # subscription there sees it; the same subject in A is another subject space
    ex = tls_exchange(server.port, certs.ca.cert_file, certs.bob,
                      send=b'CONNECT {"verbose":false}\r\nSUB bob.x 1\r\nPUB bob.x 2\r\nhi\r\nPING\r\n',
                      until=b"PONG\r\n")
    assert ex.data.endswith(b"MSG bob.x 1 2\r\nhi\r\nPONG\r\n"), ex
