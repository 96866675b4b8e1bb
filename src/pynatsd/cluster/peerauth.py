"""Authorization of an accepted route or gateway connection, shared by cluster/routes.py and
cluster/gateways.py (checked against nats-server 2.15.1).

Both accept a single configured user. With ``verify_and_map`` and/or
``verify_cert_and_check_known_urls`` in the block's tls, only the peer certificate counts (the
CONNECT's credentials are not looked at): each identity the certificate carries, in nats-server's
order (email SANs, DNS SANs, URI SANs, the subject string with its DC attributes appended, the
subject string), is tried; ``verify_and_map`` accepts one equal to the authorization user,
``verify_cert_and_check_known_urls`` a DNS SAN naming the host of a configured URL (routes: the
``routes`` list; gateways: every URL of the ``gateways`` list). The structured subject-DN
comparison of client mapping is not used here. The debug lines say which identity passed or
that none did, in nats-server's words. Without those flags the CONNECT's user and password
(plain or bcrypt) must equal the configured ones, when a user is configured.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from typing import Any

from pynatsd.protocol import wire

_USING = {
    "email": "Using email found in cert for auth",
    "SAN": "Using SAN found in cert for auth",
    "URI": "Using URI found in cert for auth",
    "RDNSequence": "Using RDNSequence for auth",
    "subject": "Using certificate subject for auth",
}


def dns_name_matches(dns_name: str, hosts: Iterable[str]) -> bool:
    """RFC 6125 6.4.3 as nats-server applies it: same number of labels, compared without case;
    a ``*`` stands for exactly one label and only as the left-most one."""
    labels = dns_name.lower().split(".")
    for host in hosts:
        h = host.lower().split(".")
        if len(h) != len(labels):
            continue
        start = 1 if labels[0] == "*" else 0
        if all(labels[i] == h[i] for i in range(start, len(labels))):
            return True
    return False


def cert_authorized(
    transport: Any,
    *,
    user: str | None,
    map_user: bool,
    known_hosts: Iterable[str] | None,
    debug: Callable[[str], None] | None,
) -> bool:
    """The peer certificate of ``transport`` against ``user`` (``map_user``) and/or the hosts of
    the configured URLs (``known_hosts``, None when not checked)."""
    from pynatsd.tls.identity import go_subject_full, mapping_candidates

    say = debug or (lambda _s: None)
    try:
        chain = transport.get_extra_info("peer_cert_chain") if transport is not None else None
    except Exception:  # noqa: BLE001 - a transport closing under us
        chain = None
    if not chain:
        say("User required in cert, no peer certificates found")
        return False
    cert = chain[0]
    if len(chain) > 1:
        say("Multiple peer certificates found, selecting first")
    hosts = list(known_hosts) if known_hosts is not None else None
    sans, tail = mapping_candidates(cert)
    if not sans and not go_subject_full(cert):
        say("User required in cert, none found")
        return False

    def ok(how: str, name: str) -> bool:
        if not name:
            return False
        if hosts is not None and how == "SAN" and dns_name_matches(name, hosts):
            return True
        return map_user and bool(user) and name == user

    for how, name in sans:
        if ok(how, name):
            say(f'{_USING[how]} [""]')  # nats-server prints the (empty) user its check returns
            return True
    subject = next((n for h, n in tail if h == "subject"), "")
    say(f"DistinguishedNameMatch could not be used for auth [{wire.go_quote(subject)}]")
    for how, name in tail:
        if ok(how, name):
            say(f'{_USING[how]} [""]')
            return True
        if how == "RDNSequence":
            say(f"RDNSequence could not be used for auth [{wire.go_quote(name)}]")
    say(f"User in cert [{wire.go_quote(subject)}], not found")
    return False


def password_authorized(user: str | None, password: str | None, doc: dict[str, Any]) -> bool:
    """The CONNECT's ``user``/``pass`` against a single configured user (none: anyone)."""
    if not user:
        return True
    if doc.get("user") != user:
        return False
    given = doc.get("pass")
    if not isinstance(given, str):
        given = ""
    want = password or ""
    from pynatsd.auth import bcrypt_verify, is_bcrypt

    if is_bcrypt(want):
        return bcrypt_verify(want, given)
    return secrets.compare_digest(want.encode(), given.encode())
