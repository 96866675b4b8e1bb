"""tls.identity checked against the real nats-server: the user a certificate maps to with
verify_and_map (Go's subject string byte for byte, the structured DN match, SAN order and the
edge cases) and the subject string /connz shows for a peer certificate."""

from __future__ import annotations

import json
import socket
import ssl
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID as N
from tests.helpers.certs import CertSet, Issued, make_cert_set
from tests.helpers.servers import ServerProcess

from pynatsd.tls.identity import go_subject, map_certificate, peer_cert_info

A = x509.NameAttribute
R = x509.RelativeDistinguishedName
EMAIL = A(N.EMAIL_ADDRESS, "x@example.com")  # an attribute outside the DN table: forces the literal lookup


def name(*rdns: object) -> x509.Name:
    return x509.Name([r if isinstance(r, R) else R([r]) for r in rdns])  # type: ignore[list-item]


@dataclass
class Case:
    key: str
    subject: x509.Name
    users: tuple[str, ...] | None = None  # None: the Go subject string itself
    dns: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    uris: tuple[str, ...] = ()


CASES = [
    # Go subject strings (the literal lookup): order, grouping, escaping, dropped attributes
    Case("order", name(A(N.COUNTRY_NAME, "US"), A(N.STATE_OR_PROVINCE_NAME, "CA"), A(N.ORGANIZATION_NAME, "Co"),
                       A(N.ORGANIZATIONAL_UNIT_NAME, "Eng"), A(N.COMMON_NAME, "o1"), EMAIL)),
    Case("multi-ou", name(A(N.ORGANIZATIONAL_UNIT_NAME, "a"), A(N.COMMON_NAME, "o2"),
                          A(N.ORGANIZATIONAL_UNIT_NAME, "b"), EMAIL)),
    Case("mv-rdn", name(R([A(N.ORGANIZATION_NAME, "Acme"), A(N.ORGANIZATIONAL_UNIT_NAME, "Dev"),
                           A(N.ORGANIZATIONAL_UNIT_NAME, "Ops")]), A(N.COMMON_NAME, "o3"), EMAIL)),
    Case("escapes", name(A(N.COMMON_NAME, ' o4,+"\\<>;#=x '), EMAIL)),
    Case("hash", name(A(N.COMMON_NAME, "#o5 #"), A(N.ORGANIZATION_NAME, " "), EMAIL)),
    Case("two-cn", name(A(N.COMMON_NAME, "o6a"), A(N.COMMON_NAME, "o6b"), EMAIL)),
    Case("all-types", name(A(N.SERIAL_NUMBER, "42"), A(N.STREET_ADDRESS, "Main St 1"), A(N.POSTAL_CODE, "12345"),
                           A(N.LOCALITY_NAME, "SF"), A(N.COMMON_NAME, "José o7"), A(N.USER_ID, " u,1&*@+# "),
                           EMAIL)),
    Case("dc-literal", name(A(N.DOMAIN_COMPONENT, "org"), A(N.DOMAIN_COMPONENT, "example"),
                            A(N.COMMON_NAME, "o8"), EMAIL), users=("CN=o8,DC=org,DC=example",)),
    # the structured RFC 4514 comparison
    Case("dn-exact", name(A(N.COUNTRY_NAME, "US"), A(N.ORGANIZATION_NAME, "Acme"), A(N.COMMON_NAME, "s1")),
         users=("cn = s1 , o=Acme,c=US",)),
    Case("dn-reordered", name(A(N.COUNTRY_NAME, "US"), A(N.ORGANIZATION_NAME, "Acme"), A(N.COMMON_NAME, "s2")),
         users=("C=US,O=Acme,CN=s2",)),
    Case("dn-case", name(A(N.ORGANIZATION_NAME, "Acme"), A(N.COMMON_NAME, "s3")), users=("CN=S3,O=Acme",)),
    Case("dn-dc-mv", name(A(N.DOMAIN_COMPONENT, "org"), A(N.DOMAIN_COMPONENT, "example"),
                          R([A(N.ORGANIZATION_NAME, "Acme"), A(N.ORGANIZATIONAL_UNIT_NAME, "Dev")]),
                          A(N.COMMON_NAME, "s4")), users=("CN=s4,OU=Dev+O=Acme,DC=example,DC=org",)),
    Case("dn-hex-escape", name(A(N.COMMON_NAME, "s5é")), users=("CN=s5\\c3\\a9",)),
    # SANs
    Case("san-order", name(A(N.COMMON_NAME, "t1")), emails=("t1a@example.com", "t1b@example.com"),
         dns=("t1.example.com",), uris=("spiffe://example.com/t1",),
         users=("spiffe://example.com/t1", "t1b@example.com", "t1.example.com")),
    Case("uri-scheme-case", name(A(N.COMMON_NAME, "t2")), uris=("HTTPS://Example.com/t2",),
         users=("https://Example.com/t2",)),
    Case("dns-only-empty-subject", name(), dns=("t3.example.com",), users=("t3.example.com",)),
    Case("dns-before-subject", name(A(N.COMMON_NAME, "t4")), dns=("t4.example.com",),
         users=("CN=t4", "t4.example.com")),
]


@dataclass
class Issued2:
    case: Case
    issued: Issued
    users: tuple[str, ...]


def conf_quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CertSet, list[Issued2], ServerProcess]]:
    certs = make_cert_set(tmp_path_factory.mktemp("tls-oracle-certs"))
    issued = []
    for c in CASES:
        it = certs.issue_extra("oracle-" + c.key, c.subject, dns=c.dns, emails=c.emails, uris=c.uris)
        issued.append(Issued2(c, it, c.users if c.users is not None else (go_subject(it.cert),)))
    users = sorted({u for i in issued for u in i.users})
    config = (
        "tls {\n"
        f"  cert_file: {conf_quote(certs.server.cert_file)}\n"
        f"  key_file: {conf_quote(certs.server.key_file)}\n"
        f"  ca_file: {conf_quote(certs.ca.cert_file)}\n"
        "  verify_and_map: true\n"
        "}\n"
        'http: "127.0.0.1:-1"\n'
        "authorization { users = [\n" + "\n".join(f"  {{ user: {conf_quote(u)} }}" for u in users) + "\n] }\n"
    )
    with ServerProcess("nats", config) as srv:
        yield certs, issued, srv


def connect(srv: ServerProcess, certs: CertSet, client: Issued) -> tuple[ssl.SSLSocket, bytes]:
    sock = socket.create_connection((srv.host, srv.port), timeout=10)
    info = sock.recv(4096)
    assert info.startswith(b"INFO ")
    ctx = ssl.create_default_context(cafile=certs.ca.cert_file)
    ctx.load_cert_chain(client.cert_file, client.key_file)
    tls = ctx.wrap_socket(sock, server_hostname="localhost")
    tls.sendall(b'CONNECT {"verbose":false,"pedantic":false,"tls_required":true}\r\nPING\r\n')
    reply = b""
    while not reply.endswith(b"\r\n"):
        chunk = tls.recv(4096)
        if not chunk:
            break
        reply += chunk
    return tls, reply


def test_mapping_and_subject_strings_match_nats_server(world: tuple[CertSet, list[Issued2], ServerProcess]) -> None:
    certs, issued, srv = world
    all_users = sorted({u for i in issued for u in i.users})
    open_socks: dict[int, tuple[ssl.SSLSocket, Issued2]] = {}
    try:
        for item in issued:
            expected = map_certificate(item.issued.cert, all_users)
            sock, reply = connect(srv, certs, item.issued)
            if expected is None:
                assert reply.startswith(b"-ERR 'Authorization Violation'"), (item.case.key, reply)
                sock.close()
            else:
                assert reply == b"PONG\r\n", (item.case.key, expected, reply)
                open_socks[sock.getsockname()[1]] = (sock, item)
        assert srv.ports is not None
        monitor = srv.ports["monitoring"][0]
        with urllib.request.urlopen(f"{monitor}/connz?auth=true&limit=1000", timeout=10) as resp:
            connz = json.load(resp)
        seen = 0
        for conn in connz["connections"]:
            if conn["port"] not in open_socks:
                continue
            _, item = open_socks[conn["port"]]
            expected = map_certificate(item.issued.cert, all_users)
            assert expected is not None
            assert conn["authorized_user"] == expected.username, item.case.key
            assert conn["tls_peer_certs"][0] == peer_cert_info(item.issued.cert), item.case.key
            assert conn["tls_peer_certs"][0]["spki_sha256"] == item.issued.spki_sha256
            assert conn["tls_peer_certs"][0]["cert_sha256"] == item.issued.cert_sha256
            seen += 1
        assert seen == len(open_socks)
        # the cases meant to fail did fail, and the others were mapped as our code predicts
        keys_failed = {i.case.key for i in issued} - {item.case.key for _, item in open_socks.values()}
        assert keys_failed == {"dn-case"}
    finally:
        for sock, _ in open_socks.values():
            sock.close()


def test_expected_match_kinds(world: tuple[CertSet, list[Issued2], ServerProcess]) -> None:
    """Which rule our code says maps each case (so the oracle run above covers every rule)."""
    _, issued, _ = world
    all_users = sorted({u for i in issued for u in i.users})
    hows = {i.case.key: getattr(map_certificate(i.issued.cert, all_users), "how", None) for i in issued}
    assert hows["order"] == hows["escapes"] == hows["all-types"] == "subject"
    assert hows["dc-literal"] == "RDNSequence"
    assert hows["dn-exact"] == hows["dn-reordered"] == hows["dn-dc-mv"] == hows["dn-hex-escape"] \
        == "DistinguishedNameMatch"
    assert hows["san-order"] == "email" and hows["uri-scheme-case"] == "URI"
    assert hows["dns-before-subject"] == hows["dns-only-empty-subject"] == "SAN"
    assert hows["dn-case"] is None
    by_key = {i.case.key: map_certificate(i.issued.cert, all_users) for i in issued}
    assert by_key["san-order"] is not None and by_key["san-order"].username == "t1b@example.com"
