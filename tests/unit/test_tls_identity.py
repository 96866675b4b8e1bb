"""tls.identity: verify_and_map candidate order, Go's subject strings, RFC 4514 DN matching, pins."""

from __future__ import annotations

import hashlib
import warnings

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID as N
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.helpers.certs import CertSet, make_cert_set

from pynatsd.tls import identity as I
from pynatsd.tls.certs import issue, new_key

A = x509.NameAttribute
R = x509.RelativeDistinguishedName
_KEY = new_key()


def cert(*rdns: object, emails: tuple[str, ...] = (), dns: tuple[str, ...] = (),
         uris: tuple[str, ...] = ()) -> x509.Certificate:
    name = x509.Name([r if isinstance(r, R) else R([r]) for r in rdns])  # type: ignore[list-item]
    return issue(name, _KEY, emails=emails, dns=dns, uris=uris, client=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertSet:
    return make_cert_set(tmp_path_factory.mktemp("tls-identity-certs"))


# ---- Go subject string (B.2) ---------------------------------------------------------------


def test_go_subject_fixed_order_independent_of_certificate_order() -> None:
    c = cert(A(N.COUNTRY_NAME, "US"), A(N.STATE_OR_PROVINCE_NAME, "CA"), A(N.ORGANIZATION_NAME, "Company"),
             A(N.ORGANIZATIONAL_UNIT_NAME, "Eng"), A(N.COMMON_NAME, "alice"))
    assert I.go_subject(c) == "CN=alice,OU=Eng,O=Company,ST=CA,C=US"
    reordered = cert(A(N.COMMON_NAME, "alice"), A(N.ORGANIZATIONAL_UNIT_NAME, "Eng"),
                     A(N.COUNTRY_NAME, "US"), A(N.ORGANIZATION_NAME, "Company"),
                     A(N.STATE_OR_PROVINCE_NAME, "CA"))
    assert I.go_subject(reordered) == "CN=alice,OU=Eng,O=Company,ST=CA,C=US"


def test_go_subject_all_types_in_go_order() -> None:
    c = cert(A(N.SERIAL_NUMBER, "42"), A(N.STREET_ADDRESS, "Main St 1"), A(N.POSTAL_CODE, "12345"),
             A(N.LOCALITY_NAME, "SF"), A(N.COMMON_NAME, "José"), A(N.COUNTRY_NAME, "US"),
             A(N.STATE_OR_PROVINCE_NAME, "CA"), A(N.ORGANIZATION_NAME, "O1"), A(N.ORGANIZATIONAL_UNIT_NAME, "U1"))
    assert I.go_subject(c) == "SERIALNUMBER=42,CN=José,OU=U1,O=O1,POSTALCODE=12345,STREET=Main St 1,L=SF,ST=CA,C=US"


def test_go_subject_repeated_types_join_one_rdn_and_last_cn_wins() -> None:
    c = cert(A(N.ORGANIZATIONAL_UNIT_NAME, "a"), A(N.COMMON_NAME, "first"), A(N.ORGANIZATIONAL_UNIT_NAME, "b"),
             A(N.COMMON_NAME, "second"))
    assert I.go_subject(c) == "CN=second,OU=a+OU=b"


def test_go_subject_multi_valued_rdn_is_split_by_type() -> None:
    c = cert(R([A(N.ORGANIZATION_NAME, "Acme"), A(N.ORGANIZATIONAL_UNIT_NAME, "Dev"),
                A(N.ORGANIZATIONAL_UNIT_NAME, "Ops")]), A(N.COMMON_NAME, "y"))
    assert I.go_subject(c) == "CN=y,OU=Dev+OU=Ops,O=Acme"


@pytest.mark.parametrize(("value", "escaped"), [
    (' lead,+"\\<>;#=trail ', '\\ lead\\,\\+\\"\\\\\\<\\>\\;#=trail\\ '),
    ("#hash #x", "\\#hash #x"),
    (" ", "\\ "),
    ("a  b", "a  b"),
    ("é+ü", "é\\+ü"),
])
def test_go_subject_escaping(value: str, escaped: str) -> None:
    assert I.go_subject(cert(A(N.COMMON_NAME, value))) == f"CN={escaped}"


def test_go_subject_drops_other_attributes_and_empty_cn() -> None:
    c = cert(A(N.DOMAIN_COMPONENT, "org"), A(N.EMAIL_ADDRESS, "x@example.com"), A(N.USER_ID, "u1"),
             A(N.COMMON_NAME, "bob"))
    assert I.go_subject(c) == "CN=bob"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cryptography warns about the empty values we want
        empty = cert(A(N.COMMON_NAME, "", _validate=False), A(N.ORGANIZATION_NAME, "", _validate=False))
    assert I.go_subject(empty) == "O="


def test_go_subject_full_appends_other_attributes_last_first() -> None:
    c = cert(A(N.DOMAIN_COMPONENT, "org"), A(N.DOMAIN_COMPONENT, "example"), A(N.COMMON_NAME, "bob"),
             A(N.EMAIL_ADDRESS, "x@example.com"), A(N.USER_ID, " u,1 "))
    assert I.go_subject_full(c) == (
        "CN=bob,0.9.2342.19200300.100.1.1=\\ u\\,1\\ ,1.2.840.113549.1.9.1=x@example.com,"
        "0.9.2342.19200300.100.1.25=example,0.9.2342.19200300.100.1.25=org"
    )


def test_parse_name_keeps_der_order_and_string_types() -> None:
    c = cert(R([A(N.ORGANIZATION_NAME, "Acme"), A(N.ORGANIZATIONAL_UNIT_NAME, "Dev")]),
             A(N.COMMON_NAME, "é", _type=x509.name._ASN1Type.BMPString))
    assert I.raw_subject(c) == c.subject.public_bytes()
    rdns = I.parse_name(I.raw_subject(c))
    assert [[oid for oid, _ in rdn] for rdn in rdns] == [[I.OID_O, I.OID_OU], [I.OID_CN]] or \
        [[oid for oid, _ in rdn] for rdn in rdns] == [[I.OID_OU, I.OID_O], [I.OID_CN]]
    assert rdns[1] == [(I.OID_CN, "é")]


# '=' is left out: Go does not escape it, and its own DN parser then reads a second type.
_TEXT = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF, exclude_categories=("Cs",),
                                       exclude_characters="="), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(cn=_TEXT, ou=_TEXT, o=_TEXT)
def test_go_subject_round_trips_through_the_dn_parser(cn: str, ou: str, o: str) -> None:
    """nats-server compares a user written as Go's string with the certificate structurally:
    our escaping must parse back to the same attribute values."""
    c = cert(A(N.ORGANIZATION_NAME, o), A(N.ORGANIZATIONAL_UNIT_NAME, ou), A(N.COMMON_NAME, cn))
    parsed = I.parse_dn(I.go_subject(c))
    assert parsed is not None
    assert I.dn_equal(parsed, I.cert_dn(c) or [])


# ---- candidate order (B.1) -----------------------------------------------------------------


def test_candidate_order_emails_dns_uris_then_subject(certs: CertSet) -> None:
    c = cert(A(N.COMMON_NAME, "carol"), emails=("c1@example.com", "c2@example.com"),
             dns=("carol.example.com", "b.example.com"), uris=("SPIFFE://example.com/carol",))
    assert I.cert_identities(c) == ["c1@example.com", "c2@example.com", "carol.example.com", "b.example.com",
                                    "spiffe://example.com/carol", "CN=carol"]
    assert I.cert_identities(certs.alice.cert) == ["alice@example.com", "alice.example.com", "CN=alice,O=Company,C=US"]
    assert I.cert_identities(certs.bob.cert) == ["spiffe://example.com/bob", "CN=bob,OU=Eng,O=Company"]


def test_dc_candidate_comes_before_the_plain_subject() -> None:
    c = cert(A(N.DOMAIN_COMPONENT, "org"), A(N.DOMAIN_COMPONENT, "example"), A(N.COMMON_NAME, "bob"))
    assert I.cert_identities(c) == ["CN=bob,DC=org,DC=example", "CN=bob"]


def test_empty_subject_still_uses_the_sans() -> None:
    # nats-server 2.15 (checked against the binary) maps a DNS SAN even when the subject is empty
    assert I.cert_identities(cert(dns=("only.example.com",))) == ["only.example.com"]
    assert I.cert_identities(cert(uris=("urn:x",))) == ["urn:x"]
    assert I.cert_identities(cert()) == []


# ---- map_certificate -----------------------------------------------------------------------


def test_map_prefers_earlier_candidates(certs: CertSet) -> None:
    users = ["CN=alice,O=Company,C=US", "alice.example.com", "alice@example.com"]
    m = I.map_certificate(certs.alice.cert, users)
    assert m == I.CertMatch("alice@example.com", "email")
    assert m.debug_line == 'Using email found in cert for auth ["alice@example.com"]'
    m = I.map_certificate(certs.alice.cert, users[:2])
    assert m == I.CertMatch("alice.example.com", "SAN")
    # Only the subject form left: the structured DN comparison finds it first.
    assert I.map_certificate(certs.alice.cert, users[:1]) == I.CertMatch(users[0], "DistinguishedNameMatch")
    assert I.map_certificate(certs.alice.cert, ["bob"]) is None


def test_map_skips_users_not_allowed_and_goes_on(certs: CertSet) -> None:
    users = ["alice@example.com", "alice.example.com"]
    m = I.map_certificate(certs.alice.cert, users, lambda u: u != "alice@example.com")
    assert m == I.CertMatch("alice.example.com", "SAN")


def test_structured_dn_match_is_flexible_in_spacing_case_of_types_and_order() -> None:
    c = cert(A(N.COUNTRY_NAME, "US"), A(N.ORGANIZATION_NAME, "Company"), A(N.COMMON_NAME, "alice"))
    assert I.map_certificate(c, ["cn = alice , o=Company,c=US"]) == I.CertMatch(
        "cn = alice , o=Company,c=US", "DistinguishedNameMatch")
    assert I.map_certificate(c, ["C=US,O=Company,CN=alice"]) == I.CertMatch(
        "C=US,O=Company,CN=alice", "DistinguishedNameMatch")
    # values are compared case-sensitively
    assert I.map_certificate(c, ["CN=Alice,O=Company,C=US"]) is None
    # an exact match anywhere wins over a reordered one
    users = ["C=US,O=Company,CN=alice", "CN=alice,O=Company,C=US"]
    assert I.map_certificate(c, users) == I.CertMatch("CN=alice,O=Company,C=US", "DistinguishedNameMatch")
    assert I.map_certificate(c, users, structured_dn=False) == I.CertMatch("CN=alice,O=Company,C=US", "subject")


def test_structured_dn_with_dcs_and_multi_valued_rdns() -> None:
    c = cert(A(N.DOMAIN_COMPONENT, "org"), A(N.DOMAIN_COMPONENT, "example"),
             R([A(N.ORGANIZATION_NAME, "Acme"), A(N.ORGANIZATIONAL_UNIT_NAME, "Dev")]), A(N.COMMON_NAME, "bob"))
    assert I.map_certificate(c, ["CN=bob,OU=Dev+O=Acme,DC=example,DC=org"]) == I.CertMatch(
        "CN=bob,OU=Dev+O=Acme,DC=example,DC=org", "DistinguishedNameMatch")
    # the Go string with DCs appended (step 5) is a literal lookup
    go_dc = "CN=bob,OU=Dev,O=Acme,DC=org,DC=example"
    assert I.map_certificate(c, [go_dc], structured_dn=False) == I.CertMatch(go_dc, "RDNSequence")


def test_structured_dn_skipped_when_subject_has_unknown_types() -> None:
    c = cert(A(N.COMMON_NAME, "carol"), A(N.EMAIL_ADDRESS, "carol@example.com"))
    assert I.cert_dn(c) is None
    assert I.map_certificate(c, ["CN=carol,emailAddress=carol@example.com"]) is None
    assert I.map_certificate(c, ["CN=carol"]) == I.CertMatch("CN=carol", "subject")


# ---- the RFC 4514 parser -------------------------------------------------------------------


def test_parse_dn_rules() -> None:
    assert I.parse_dn("CN=a,O=b") == [[("CN", b"a")], [("O", b"b")]]
    assert I.parse_dn("  CN =  a  ,O=b\\ ") == [[("CN", b"a")], [("O", b"b ")]]
    assert I.parse_dn("CN=a+OU=x,O=b") == [[("CN", b"a"), ("OU", b"x")], [("O", b"b")]]
    assert I.parse_dn("CN=\\41\\c3\\a9") == [[("CN", "Aé".encode())]]
    assert I.parse_dn("CN=a\\,b") == [[("CN", b"a,b")]]
    assert I.parse_dn("CN=#0403616263") is None  # BER values are not supported
    assert I.parse_dn("CN=a\\") == [[("CN", b"a")]]  # a dangling escape is ignored, as in nats-server
    assert I.parse_dn("CN=a\\zz") is None
    assert I.parse_dn("a,b") is None
    assert I.parse_dn("CN=a,") == [[("CN", b"a")]]
    assert I.parse_dn("") == []


def test_dn_equal_and_rdns_match() -> None:
    a = I.parse_dn("CN=a,OU=x+O=y")
    b = I.parse_dn("cn=a,o=y+ou=x")
    c = I.parse_dn("o=y+ou=x,cn=a")
    assert a and b and c
    assert I.dn_equal(a, b)
    assert not I.dn_equal(a, c) and I.dn_rdns_match(a, c)
    assert not I.dn_rdns_match(a, I.parse_dn("CN=a") or [])


# ---- fingerprints --------------------------------------------------------------------------


def test_spki_and_cert_sha256(certs: CertSet) -> None:
    c = certs.alice.cert
    spki = c.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert I.spki_sha256(c) == hashlib.sha256(spki).hexdigest() == certs.alice.spki_sha256
    assert I.cert_sha256(c) == hashlib.sha256(c.public_bytes(serialization.Encoding.DER)).hexdigest()
    der = c.public_bytes(serialization.Encoding.DER)
    assert I.spki_sha256(der) == I.spki_sha256(c)
    info = I.peer_cert_info(c)
    assert info == {"subject": "CN=alice,O=Company,C=US", "spki_sha256": I.spki_sha256(c),
                    "cert_sha256": I.cert_sha256(c)}
