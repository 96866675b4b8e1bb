"""pynatsd.tls.certsel: the ClientHello parser never raises and reads what OpenSSL sends;
host-name matching follows Go's rules (a ``*`` only as the whole left-most label, IPs against
IP SANs only, no CN). The choice itself is compared with nats-server in
tests/integration/test_tls_certs_list.py."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st
from OpenSSL import SSL
from OpenSSL._util import lib as _lib

from pynatsd.tls.certsel import TLS12, TLS13, Candidate, ClientHello, Policy, choose, parse_client_hello


def _client_hello(*, tls12: bool = False, sigalgs: str | None = None, curves: str | None = None) -> bytes:
    """The ClientHello a pyOpenSSL client writes (record layer stripped)."""
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    if tls12:
        ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
    if sigalgs:
        assert _lib.SSL_CTX_set1_sigalgs_list(ctx._context, sigalgs.encode()) == 1
    if curves:
        assert _lib.SSL_CTX_set1_curves_list(ctx._context, curves.encode()) == 1
    conn = SSL.Connection(ctx, None)
    conn.set_connect_state()
    conn.set_tlsext_host_name(b"a.example.com")
    try:
        conn.do_handshake()
    except SSL.WantReadError:
        pass
    record = conn.bio_read(65536)
    assert record[0] == 22
    return record[5:]


def test_parses_what_openssl_sends() -> None:
    h = parse_client_hello(_client_hello(sigalgs="ECDSA+SHA256:rsa_pss_rsae_sha256", curves="P-384:X25519"))
    assert h is not None
    assert h.version == TLS13
    assert h.sigalgs == (0x0403, 0x0804)
    assert h.groups == (0x0018, 0x001D)
    assert 0x1301 in h.suites and 0xC02B in h.suites
    h12 = parse_client_hello(_client_hello(tls12=True))
    assert h12 is not None and h12.version == TLS12 and 0x1301 not in h12.suites


@given(st.binary(max_size=300))
def test_garbage_never_raises(data: bytes) -> None:
    parse_client_hello(b"\x01" + data)


@given(st.integers(min_value=1, max_value=400))
def test_truncated_hello_never_raises(cut: int) -> None:
    parse_client_hello(_HELLO[:cut])


_HELLO = _client_hello()


def test_names() -> None:
    from pynatsd.tls.certsel import names_match

    ip = (ipaddress.ip_address("127.0.0.1"),)
    assert names_match(("*.b.example.com",), (), "x.B.example.com")
    assert not names_match(("*.b.example.com",), (), "b.example.com")
    assert not names_match(("*.b.example.com",), (), "y.x.b.example.com")
    assert not names_match(("a*.example.com",), (), "ab.example.com")  # only a whole label
    assert names_match(("a.example.com",), (), "a.example.com.")
    assert names_match(("localhost",), ip, "127.0.0.1")
    assert names_match((), ip, "[127.0.0.1]")
    assert not names_match(("127.0.0.1",), (), "127.0.0.1")  # an IP never matches a DNS SAN


_IDS = st.sampled_from([0x0403, 0x0503, 0x0603, 0x0804, 0x0805, 0x0401, 0x0807, 0x0017, 0x0018, 0x001D, 0x11EC,
                        0xC02B, 0xC02F, 0xCCA8, 0x009C, 0x1301, 0x0A0A])


@given(st.builds(
    ClientHello,
    st.sampled_from([0x0301, TLS12, TLS13]), st.lists(_IDS, max_size=6).map(tuple),
    st.lists(_IDS, max_size=6).map(tuple), st.lists(_IDS, max_size=6).map(tuple),
    st.lists(st.integers(0, 3), max_size=3).map(tuple)),
    st.one_of(st.none(), st.sampled_from(["a.example.com", "x.b.example.com", "127.0.0.1", "", "[::1]", "*.b.example.com"])))
def test_choice_is_always_an_index(hello: ClientHello, sni: str | None) -> None:
    cands = [
        Candidate(("a.example.com",), (), "rsa", 0),
        Candidate(("a.example.com",), (), "ecdsa", 0x0017),
        Candidate(("*.b.example.com",), (ipaddress.ip_address("127.0.0.1"),), "ecdsa", 0x0018),
        Candidate((), (), "ed25519", 0),
        Candidate(("x",), (), "other", 0),
    ]
    policy = Policy.of(["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_RSA_WITH_AES_128_GCM_SHA256"],
                       ["X25519MLKEM768", "CurveP256", "CurveP384"])
    i = choose(cands, hello, min(hello.version, TLS13), sni, policy)
    assert 0 <= i < len(cands)
