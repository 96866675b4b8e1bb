"""cluster/peerauth.py: the known-URL DNS name rule (RFC 6125 as nats-server applies it) and the
single-user password check of routes and gateways."""

from __future__ import annotations

import pytest

from pynatsd.cluster.peerauth import dns_name_matches, password_authorized


@pytest.mark.parametrize(
    ("dns", "hosts", "ok"),
    [
        ("localhost", ["localhost"], True),
        ("LocalHost", ["localHOST"], True),
        ("gw.example.com", ["other.example.com", "gw.example.com"], True),
        ("*.example.com", ["gw.example.com"], True),
        ("*.example.com", ["a.b.example.com"], False),  # one label only
        ("*.example.com", ["example.com"], False),
        ("gw.*.com", ["gw.example.com"], False),  # only the left-most label
        ("gw.example.com", ["*.example.com"], False),  # the host is not a pattern
        ("gw.example.com", [], False),
    ],
)
def test_dns_name_matches(dns: str, hosts: list[str], ok: bool) -> None:
    assert dns_name_matches(dns, hosts) is ok


def test_password_authorized() -> None:
    assert password_authorized(None, None, {})
    assert password_authorized("u", "p", {"user": "u", "pass": "p"})
    assert not password_authorized("u", "p", {"user": "u", "pass": "x"})
    assert not password_authorized("u", "p", {"user": "v", "pass": "p"})
    assert not password_authorized("u", "p", {"user": "u"})
    import bcrypt as _b

    bcrypt = _b.hashpw(b"secret", _b.gensalt(4)).decode()
    assert password_authorized("u", bcrypt, {"user": "u", "pass": "secret"})
    assert not password_authorized("u", bcrypt, {"user": "u", "pass": "nope"})
