"""``pynatsd tls-report [-c CONF] [server flags] [--client-cert FILE ...] [--json]``: what every
TLS listener of a configuration would run, in plain language.

The options come from the server's own loader (``config.load.load_options``, flags applied as at
start-up) and every context is built by the server's own builders (``tls.context``, the HTTPS
monitoring builder, ``cluster.gateways.build_gateway_tls``), in the order the server builds them,
so a configuration the server refuses fails here with the same one-line message. Not done here:
binding the listeners and fetching OCSP staples (a start-up that must staple can still fail).

``--client-cert FILE`` (PEM: the certificate, then any intermediates the client sends) says
whether the client port would accept it (the chain against the client port's own trust store,
with OpenSSL's TLS-client purpose check, validity, pins) and, with verify_and_map, which user it
maps to through the server's own mapping (``auth.Authorizer.user_from_cert``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import json
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from OpenSSL import crypto
from OpenSSL._util import lib as _lib

from pynatsd.config.options import (
    Permissions,
    ServerOptions,
    SubjectPermission,
    TLSOptions,
    User,
)
from pynatsd.errors import ConfigError

PROG = "pynatsd"

USAGE = f"""Usage: {PROG} tls-report [-c CONF] [server flags such as --tls, --tlscert, --tlskey,
                          --tlsverify, --tlscacert] [--client-cert FILE ...] [--json]

Describes every TLS listener the configuration gives the server (client port, cluster, gateway,
leafnodes, HTTPS monitoring, and leaf/gateway remotes as dialing sides): certificates served,
who may connect, verify_and_map users. --client-cert: would the client port accept this client
certificate, and which user does it map to. Exit 0 when the server would start, 1 (with the
server's one-line error) when it would not."""

_DAY = 86400.0


# ---- certificates -------------------------------------------------------------------------------


def _key_desc(cert: x509.Certificate) -> str:
    k = cert.public_key()
    if isinstance(k, rsa.RSAPublicKey):
        return f"RSA {k.key_size} bits"
    if isinstance(k, ec.EllipticCurvePublicKey):
        return f"ECDSA {k.curve.name} ({k.key_size} bits)"
    if isinstance(k, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(k, ed448.Ed448PublicKey):
        return "Ed448"
    if isinstance(k, dsa.DSAPublicKey):
        return f"DSA {k.key_size} bits"
    return type(k).__name__


def _sans(cert: x509.Certificate) -> dict[str, list[str]]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return {"dns": [], "ip": [], "email": [], "uri": []}
    return {
        "dns": list(ext.get_values_for_type(x509.DNSName)),
        "ip": [str(i) for i in ext.get_values_for_type(x509.IPAddress)],
        "email": list(ext.get_values_for_type(x509.RFC822Name)),
        "uri": list(ext.get_values_for_type(x509.UniformResourceIdentifier)),
    }


def _validity(cert: x509.Certificate, warn_days: int) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    nb, na = cert.not_valid_before_utc, cert.not_valid_after_utc
    days_left = (na - now).total_seconds() / _DAY
    if na <= now:
        status, note = "expired", f"EXPIRED {int(-days_left)} day(s) ago: peers refuse it; renew it"
    elif nb > now:
        status, note = "not_yet_valid", f"not valid until {nb:%Y-%m-%d %H:%M:%S} UTC: peers refuse it until then"
    elif days_left < warn_days:
        status, note = "expiring", f"expires in {int(days_left)} day(s) (less than {warn_days}): renew it soon"
    else:
        status, note = "ok", f"valid, {int(days_left)} day(s) left"
    return {
        "not_before": nb.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "not_after": na.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "days_left": int(days_left) if days_left >= 0 else -int(-days_left) - 1,
        "status": status,
        "note": note,
    }


def _load_pem(path: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(Path(path).read_bytes())


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except Exception:  # noqa: BLE001 - any failure means "not this issuer"
        return False
    return True


def _verify_chain(store: crypto.X509Store, chain: list[x509.Certificate]) -> str | None:
    """None when ``chain`` (leaf first) verifies against ``store``, else OpenSSL's reason."""
    leaf = crypto.X509.from_cryptography(chain[0])
    extra = [crypto.X509.from_cryptography(c) for c in chain[1:]]
    try:
        crypto.X509StoreContext(store, leaf, extra).verify_certificate()
    except crypto.X509StoreContextError as e:
        return str(e.args[0]) if e.args else str(e)
    return None


def _ca_store(ca_file: str) -> crypto.X509Store:
    """A store trusting every certificate of ca_file, as the server's (Go-like partial chains)."""
    store = crypto.X509Store()
    for c in _load_pem(ca_file):
        store.add_cert(crypto.X509.from_cryptography(c))
    store.set_flags(crypto.X509StoreFlags.PARTIAL_CHAIN)
    return store


def _cert_entry(cert_file: str, ca_file: str | None, warn_days: int, ca_role: str) -> dict[str, Any]:
    """One served certificate: what it says, its chain as sent, whether ca_file completes it."""
    chain = _load_pem(cert_file)
    leaf = chain[0]
    entry: dict[str, Any] = {
        "cert_file": cert_file,
        "subject": leaf.subject.rfc4514_string(),
        "sans": _sans(leaf),
        "issuer": leaf.issuer.rfc4514_string(),
        "key": _key_desc(leaf),
        "key_matches": True,  # the server's builder refused the block otherwise
        **_validity(leaf, warn_days),
        "chain_sent": [
            {"subject": c.subject.rfc4514_string(), "issuer": c.issuer.rfc4514_string()} for c in chain
        ],
    }
    order_ok = all(_issued_by(chain[i], chain[i + 1]) for i in range(len(chain) - 1))
    if not ca_file:
        entry["chain_complete"] = None
        entry["chain_note"] = (f"no ca_file to check the chain against; peers must trust {chain[-1].issuer.rfc4514_string()}"
                               if order_ok else "the certificates in cert_file do not follow each other (each one "
                               "issued by the next)")
        return entry
    problem = _verify_chain(_ca_store(ca_file), chain)
    entry["chain_complete"] = problem is None and order_ok
    if problem is None and order_ok:
        entry["chain_note"] = f"complete: verifies up to a CA in ca_file ({ca_role})"
    elif not order_ok:
        entry["chain_note"] = "the certificates in cert_file do not follow each other (each one issued by the next)"
    else:
        entry["chain_note"] = (f"does not verify against ca_file ({ca_role}): {problem}; peers trusting only those "
                               "CAs will refuse it (add the missing intermediate to cert_file, or the issuer to "
                               "their trust)")
    return entry


def _ca_subjects(ca_file: str) -> list[str]:
    return [c.subject.rfc4514_string() for c in _load_pem(ca_file)]


# ---- verify_and_map reachability ----------------------------------------------------------------

_URI_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_HOST_RE = re.compile(r"^[A-Za-z0-9_*-]+(\.[A-Za-z0-9_-]+)*\.?$")


def user_forms(name: str, *, structured_dn: bool) -> tuple[list[str], str]:
    """(certificate identity forms that can name user ``name``, a plain-language note), in the
    verify_and_map order: email SAN, DNS SAN, URI SAN, RFC 4514 subject DN, Go subject string."""
    from pynatsd.tls.identity import parse_dn

    forms: list[str] = []
    notes: list[str] = []
    if "@" in name and "=" not in name and not _URI_RE.match(name):
        forms.append("email SAN")
        notes.append(f"a certificate with the email SAN {name}")
    if "=" not in name and _URI_RE.match(name) and "@" not in name.split(":", 1)[0]:
        forms.append("URI SAN")
        scheme = name.split(":", 1)[0]
        if scheme != scheme.lower():
            notes.append(f"a URI SAN cannot match: the server lower-cases the scheme ({scheme.lower()}:...)")
            forms.pop()
        else:
            notes.append(f"a certificate with the URI SAN {name}")
    if "=" in name and parse_dn(name) is not None:
        if structured_dn:
            forms.append("RFC 4514 DN")
            notes.append("a certificate whose subject DN equals this one (attribute types case-insensitive, "
                         "values case-sensitive, RDNs in any order; skipped for subjects holding attributes "
                         "outside CN, SERIALNUMBER, C, L, ST, STREET, O, OU, POSTALCODE, DC)")
        forms.append("Go subject string")
        notes.append("a certificate whose Go subject string is exactly this text (SERIALNUMBER,CN,OU,O,"
                     "POSTALCODE,STREET,L,ST,C order, no spaces, DCs appended)")
    elif "=" in name:
        notes.append("it contains '=' but is not a valid RFC 4514 DN; only a Go subject string spelled exactly "
                     "so could match")
        forms.append("Go subject string")
    if not forms and _HOST_RE.match(name):
        forms.append("DNS SAN")
        if "." in name.rstrip("."):
            notes.append(f"a certificate with the DNS SAN {name}")
        else:
            notes.append(f"only reachable by a certificate with a DNS SAN named exactly {name!r} (a single-label "
                         "name that no public CA issues): give the user an email, URI or DN name instead")
    if not forms:
        notes.append("no certificate identity can name this user in practice (not an email, host name, URI or "
                     "DN); it cannot log in by certificate")
    return forms, "; ".join(notes)


def _perm_text(sp: SubjectPermission | None) -> dict[str, Any]:
    if sp is None:
        return {"allow": None, "deny": []}
    return {"allow": list(sp.allow) if sp.allow is not None else None, "deny": list(sp.deny)}


def _permissions(user: User | None, default: Permissions | None) -> dict[str, Any]:
    perms = (user.permissions if user is not None else None) or default
    if perms is None:
        return {"publish": {"allow": None, "deny": []}, "subscribe": {"allow": None, "deny": []},
                "allow_responses": None}
    rp = perms.allow_responses
    return {
        "publish": _perm_text(perms.publish),
        "subscribe": _perm_text(perms.subscribe),
        "allow_responses": None if rp is None else {"max_msgs": rp.max_msgs, "expires": rp.expires},
    }


def _client_users(opts: ServerOptions) -> list[dict[str, Any]]:
    from pynatsd.auth import CONNECTION_TYPE_STANDARD

    out: list[dict[str, Any]] = []
    for u in opts.auth.users:
        row: dict[str, Any] = {"user": u.username, "account": u.account or "$G", "password": bool(u.password)}
        if u.nkey is not None:
            row.update(forms=[], reachable=False, note="nkey user: signs with its nkey, never named by a certificate")
        elif u.allowed_connection_types and not any(t.upper() == CONNECTION_TYPE_STANDARD
                                                    for t in u.allowed_connection_types):
            row.update(forms=[], reachable=False, note="allowed_connection_types excludes STANDARD: the "
                       "mapping skips this user on the client port")
        else:
            forms, note = user_forms(u.username, structured_dn=True)
            if u.password:
                note += "; the client must also send this user's password in CONNECT"
            row.update(forms=forms, reachable=bool(forms), note=note)
        out.append(row)
    return out


# ---- listeners ----------------------------------------------------------------------------------


def _where(t: TLSOptions) -> str:
    return str(t.source) if t.source.file else ""


def _ocsp_peer(t: TLSOptions) -> dict[str, Any] | None:
    p = t.ocsp_peer
    if p is None or not p.verify:
        return None
    return dataclasses.asdict(p)


def _accepting(name: str, kind: str, address: str, t: TLSOptions, built: Any, opts: ServerOptions,
               *, verify_note: str = "") -> dict[str, Any]:
    """A listening side: the certificates it serves and who may connect."""
    pairs = list(t.certificates) if t.certificates else [(t.cert_file or "", t.key_file or "")]
    warn_days = opts.tls_expiry_warn_days or 30
    verify = bool(built.verify)
    peers: dict[str, Any] = {
        "verify": verify,
        "verify_note": verify_note or ("clients must present a certificate that chains to the trusted CAs"
                                       if verify else "clients are not asked for a certificate"),
        "trusted_cas": (_ca_subjects(t.ca_file) if t.ca_file else ["(the system's trusted roots)"]) if verify else [],
        "pinned_certs": len(built.pins) if built.pins is not None else None,
        "min_version": "1.3" if not built.cipher_suites else built.min_version,
        "tls12_suites": list(built.cipher_suites),
        "tls13_suites": list(built.tls13_suites),
        "curves": list(built.curves),
        "fips": bool(built.fips),
        "timeout": t.timeout,
        "ocsp_peer": _ocsp_peer(t),
    }
    return {
        "name": name,
        "kind": kind,
        "role": "accepts",
        "address": address,
        "config": _where(t),
        "certificates": [_cert_entry(c, t.ca_file, warn_days, "the CAs this listener trusts") for c, _ in pairs],
        "peers": peers,
        "verify_and_map": bool(built.map_users),
        "warnings": list(built.warnings),
    }


def _dialing(name: str, kind: str, urls: Sequence[str], t: TLSOptions, built: Any,
             opts: ServerOptions) -> dict[str, Any]:
    """A dialing side (leaf remote, gateway remote): the certificate it presents, how it checks the server."""
    warn_days = opts.tls_expiry_warn_days or 30
    pairs = [(t.cert_file, t.key_file)] if t.cert_file else list(t.certificates)
    # the builder's own choice of versions, suites and groups (ClientTLS does not keep them)
    from pynatsd.tls.context import _Builder

    b = _Builder(t, "report")
    minv = b.min_version(opts.fips)
    t12, t13 = b.tls12_suites(opts.fips)
    curves = b.curves(opts.fips)
    peers = {
        "verify": bool(built.verify),
        "verify_note": ("the server's certificate chain and host name are checked" if built.verify else
                        "insecure: the server's certificate is NOT checked (anyone can pose as it)"),
        "trusted_cas": ((_ca_subjects(t.ca_file) if t.ca_file else ["(the system's trusted roots)"])
                        if built.verify else []),
        "pinned_certs": len(built.pins) if built.pins is not None else None,
        "min_version": "1.3" if not t12 else minv,
        "tls12_suites": t12,
        "tls13_suites": t13,
        "curves": curves,
        "timeout": t.timeout,
        "fips": opts.fips,
    }
    certs = [_cert_entry(c, None, warn_days, "") for c, _ in pairs if c]
    return {
        "name": name,
        "kind": kind,
        "role": "dials",
        "address": ", ".join(urls),
        "config": _where(t),
        "certificates": certs,
        "certificate_note": "" if certs else "no client certificate is presented (servers requiring one refuse it)",
        "peers": peers,
        "warnings": list(built.warnings),
    }


def _hostport(host: str, port: int) -> str:
    if port == -1:
        p = "random port"
    else:
        p = str(port)
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]:{p}"
    except ValueError:
        pass
    return f"{host}:{p}"


def build_report(opts: ServerOptions, client_certs: Sequence[str] = ()) -> dict[str, Any]:
    """The report for ``opts``; raises ConfigError as the server's start-up would."""
    from pynatsd.tls.context import build_client_context, build_server_context

    listeners: list[dict[str, Any]] = []
    notes: list[str] = []
    client_tls = None
    # the order of Server.start: client tls, (OCSP), gateway checks, HTTPS monitoring, gateways,
    # routes, leafnodes
    if opts.tls is not None:
        client_tls = build_server_context(opts.tls, fips=opts.fips, where="tls")
    if opts.ocsp is not None and opts.ocsp.mode in ("must", "always"):
        notes.append(f"OCSP stapling mode {opts.ocsp.mode}: the server fetches the staples at start-up and does not "
                     "start without them; tls-report does not fetch them")
    if opts.gateway is not None:
        from pynatsd.cluster.gateways import validate

        validate(opts.gateway)
    https_built = None
    if opts.https_port:
        from pynatsd.monitor.http import monitor_ssl_context

        if opts.http_port:
            raise ConfigError(f"can't specify both HTTP ({opts.http_port}) and HTTPs ({opts.https_port}) ports")
        if opts.tls is None:
            raise ConfigError("TLS cert and key required for HTTPS")
        https_built = monitor_ssl_context(opts.tls, client_tls)
    gw_server = None
    gw_clients: dict[str, Any] = {}
    if opts.gateway is not None:
        from pynatsd.cluster.gateways import build_gateway_tls

        gw_server, gw_clients = build_gateway_tls(opts.gateway, opts.fips)
    cl = opts.cluster
    route_server = route_client = None
    if cl is not None and cl.port != 0 and cl.tls is not None:
        route_server = build_server_context(dataclasses.replace(cl.tls, verify=True), fips=opts.fips, where="cluster.tls")
        route_client = build_client_context(cl.tls, fips=opts.fips, where="cluster.tls")
    lo = opts.leafnodes
    leaf_server = None
    leaf_remotes: list[tuple[Any, Any]] = []
    if lo is not None:
        if lo.tls is not None:
            leaf_server = build_server_context(lo.tls, fips=opts.fips, where="leafnodes.tls")
        for r in lo.remotes:
            if r.tls is not None:
                leaf_remotes.append((r, build_client_context(r.tls, fips=opts.fips, where="leafnodes remote tls")))

    stapling = opts.ocsp.mode if opts.ocsp is not None else "auto"
    # -- client port
    if opts.tls is not None and client_tls is not None:
        t = opts.tls
        entry = _accepting("client port", "client", _hostport(opts.host, opts.port), t, client_tls, opts)
        hf = t.handshake_first
        entry["peers"].update(
            handshake_first=("TLS first, then INFO" if hf is True else
                             f"waits {hf}s for a TLS ClientHello, then sends INFO first" if not isinstance(hf, bool)
                             else "INFO first, then the TLS handshake"),
            allow_non_tls=opts.allow_non_tls,
            ocsp_stapling=stapling,
        )
        if opts.allow_non_tls and hf is not True:
            entry["peers"]["verify_note"] += "; allow_non_tls: clients may also connect WITHOUT TLS"
        if t.verify_and_map and not client_tls.verify:
            entry["warnings"].append("verify_and_map is set but --tls* flags without --tlsverify turned client "
                                     "certificates off: no certificate is asked for, so no user can be mapped")
        if client_tls.map_users:
            entry["users"] = _client_users(opts)
            if not opts.auth.users:
                entry["warnings"].append("verify_and_map without authorization users: certificates are verified "
                                         "but name no user (authentication is not required by them)")
            else:
                for row in entry["users"]:
                    if not row["reachable"]:
                        entry["warnings"].append(f"user {row['user']!r} cannot be reached by a certificate: "
                                                 f"{row['note']}")
        listeners.append(entry)
    # -- HTTPS monitoring
    if https_built is not None and opts.tls is not None and client_tls is not None:
        entry = _accepting("HTTPS monitoring", "https", _hostport(opts.http_host, opts.https_port), opts.tls,
                           client_tls, opts, verify_note="no client certificate is asked for on the monitoring port "
                           "(as nats-server)")
        entry["peers"].update(verify=False, trusted_cas=[], pinned_certs=None, ocsp_peer=None, verify_and_map=False)
        entry["verify_and_map"] = False
        entry["peers"]["tls13_suites"] = ["(OpenSSL defaults: the monitoring port uses Python's ssl module)"]
        entry["peers"]["curves"] = ["(OpenSSL defaults: the monitoring port uses Python's ssl module)"]
        entry["warnings"] = []
        listeners.append(entry)
    # -- cluster
    if cl is not None and route_server is not None and route_client is not None and cl.tls is not None:
        entry = _accepting("cluster (routes)", "cluster", _hostport(cl.host, cl.port), cl.tls, route_server, opts,
                           verify_note="routes are always mutual TLS: the peer must present a certificate that "
                           "chains to the trusted CAs, whatever verify says")
        entry["peers"]["ocsp_stapling"] = stapling
        _peer_identity(entry, cl.tls, cl.username, "route URL")
        entry["dialing"] = {"verify": route_client.verify, "routes": list(cl.routes)}
        if cl.tls.insecure:
            entry["warnings"].append("insecure: solicited routes do not check the other server's certificate")
        entry["warnings"] += [w for w in route_client.warnings if w not in entry["warnings"]]
        listeners.append(entry)
    # -- gateway
    g = opts.gateway
    if g is not None and g.tls is not None and gw_server is not None:
        entry = _accepting("gateway", "gateway", _hostport(g.host, g.port), g.tls, gw_server, opts,
                           verify_note="gateways are always mutual TLS: the peer must present a certificate that "
                           "chains to the trusted CAs, whatever verify says")
        _peer_identity(entry, g.tls, g.username, "gateway URL")
        listeners.append(entry)
    if g is not None:
        for gr in g.gateways:
            built = gw_clients.get(gr.name)
            gt = gr.tls or g.tls
            if built is None or gt is None:
                continue
            listeners.append(_dialing(f"gateway remote {gr.name}", "gateway_remote", gr.urls, gt, built, opts))
    # -- leafnodes
    if lo is not None and lo.tls is not None and leaf_server is not None:
        entry = _accepting("leafnodes", "leafnodes", _hostport(lo.host, lo.port), lo.tls, leaf_server, opts)
        if leaf_server.map_users:
            if lo.users:
                rows = []
                for u in lo.users:
                    forms, note = user_forms(u.username, structured_dn=False)
                    if u.password:
                        note += "; the leaf must also send this user's password"
                    rows.append({"user": u.username, "account": u.account or "$G", "password": bool(u.password),
                                 "forms": forms, "reachable": bool(forms), "note": note})
                entry["users"] = rows
                entry["map_order"] = "email SAN, DNS SAN, URI SAN, Go subject string (no DN comparison for leaf users)"
            elif not (lo.username or lo.users):
                entry["users"] = _client_users(opts)
                entry["peers"]["verify_note"] += ("; the leafnodes block has no users, so certificates map to the "
                                                  "server's authorization users")
        listeners.append(entry)
    for r, built in leaf_remotes:
        assert r.tls is not None
        listeners.append(_dialing("leafnode remote", "leaf_remote", r.urls, r.tls, built, opts))

    report: dict[str, Any] = {
        "ok": True,
        "config_file": opts.config_file,
        "fips": opts.fips,
        "listeners": listeners,
        "notes": notes,
        "warnings": [w for w in opts.warnings],
    }
    if client_certs:
        report["client_certs"] = [check_client_cert(p, opts, client_tls) for p in client_certs]
    return report


def _peer_identity(entry: dict[str, Any], t: TLSOptions, user: str | None, url_kind: str) -> None:
    """Cluster/gateway certificate identities (candidates without the structured DN match)."""
    rules = []
    if t.verify_and_map:
        rules.append(f"the peer's certificate identity (email/DNS/URI SAN or Go subject string) must equal the "
                     f"authorization user {user!r}" if user else
                     "verify_and_map is set but no authorization user is configured: no certificate can match")
    if t.verify_cert_and_check_known_urls:
        rules.append(f"a DNS SAN naming the host of a configured {url_kind} is accepted")
    if rules:
        entry["peers"]["identity_rule"] = "; or ".join(rules)


# ---- --client-cert ------------------------------------------------------------------------------


def _purpose_problem(leaf: x509.Certificate) -> str | None:
    """Key usage / extended key usage reasons a TLS client certificate is refused."""
    try:
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.CLIENT_AUTH not in eku and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in eku:
            return "its extended key usage does not include clientAuth (TLS Web Client Authentication)"
    except x509.ExtensionNotFound:
        pass
    try:
        ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        if not (ku.digital_signature or ku.key_agreement):
            return "its key usage does not include digitalSignature"
    except x509.ExtensionNotFound:
        pass
    return None


def check_client_cert(path: str, opts: ServerOptions, client_tls: Any) -> dict[str, Any]:
    """Would the client port accept this certificate, and which user does it map to."""
    out: dict[str, Any] = {"file": path}
    try:
        chain = _load_pem(path)
    except (OSError, ValueError) as e:
        out.update(accepted=False, reasons=[f"cannot read a PEM certificate from {path}: {e}"])
        return out
    from pynatsd.tls.identity import cert_identities, go_subject, map_certificate, spki_sha256

    leaf = chain[0]
    out.update(subject=leaf.subject.rfc4514_string(), go_subject=go_subject(leaf), sans=_sans(leaf),
               issuer=leaf.issuer.rfc4514_string(), key=_key_desc(leaf),
               **_validity(leaf, opts.tls_expiry_warn_days or 30), spki_sha256=spki_sha256(leaf))
    reasons: list[str] = []
    if client_tls is None:
        out.update(accepted=None, reasons=["the client port has no TLS: certificates are not used"])
        return out
    if not client_tls.verify:
        out.update(accepted=None, reasons=["the client port does not ask for client certificates: this one would "
                                           "not be sent or checked"])
        return out
    store = client_tls.ssl_context.get_cert_store()
    # the purpose the server's handshake checks (OpenSSL's TLS-client purpose, EKU included)
    _lib.X509_STORE_set_purpose(store._store, _lib.X509_PURPOSE_SSL_CLIENT)
    problem = _verify_chain(store, chain)
    out["chain_verifies"] = problem is None
    if problem is not None:
        purpose = _purpose_problem(leaf) if "purpose" in problem else None
        if purpose is not None:  # say which extension OpenSSL's purpose check objects to
            reasons.append(f"not usable as a TLS client certificate: {purpose} ({problem})")
        else:
            reasons.append(f"the chain does not verify against the client port's trusted CAs: {problem}")
    if client_tls.pins is not None:
        pinned = spki_sha256(leaf) in client_tls.pins
        out["pinned"] = pinned
        if not pinned:
            reasons.append("its public key is not among pinned_certs")
    if opts.tls is not None and opts.tls.ocsp_peer is not None and opts.tls.ocsp_peer.verify:
        out["ocsp_peer"] = "an OCSP check runs at connect time (not done by tls-report)"
    out["accepted"] = not reasons
    out["reasons"] = reasons
    if client_tls.map_users and opts.auth.users:
        from pynatsd.auth import Authorizer

        authz = Authorizer(opts.auth, opts.tls)
        user = authz.user_from_cert(leaf)
        out["identities_tried"] = cert_identities(leaf)
        if user is None:
            out["maps_to"] = None
            out["mapping_note"] = "names no configured user: the connection fails with Authorization Violation"
        else:
            users = authz.users
            match = map_certificate(leaf, users, lambda n: authz._standard_allowed(users[n]))
            out["maps_to"] = {
                "user": user.username,
                "how": match.how if match is not None else "",
                "account": user.account or "$G",
                "password_required": bool(user.password),
                "permissions": _permissions(user, opts.auth.default_permissions),
            }
    return out


# ---- text ---------------------------------------------------------------------------------------


def _yn(b: Any) -> str:
    return "yes" if b else "no"


def _perm_line(name: str, p: dict[str, Any]) -> str:
    allow = "everything" if p["allow"] is None else (", ".join(p["allow"]) or "nothing")
    deny = (" except " + ", ".join(p["deny"])) if p["deny"] else ""
    return f"{name}: {allow}{deny}"


def render_text(r: dict[str, Any]) -> str:
    lines: list[str] = []
    add = lines.append
    add(f"TLS report for {r['config_file'] or '(no config file)'}" + (" (FIPS policy on)" if r["fips"] else ""))
    if not r["listeners"]:
        add("")
        add("No TLS listener: every port is plain text.")
    for ls in r["listeners"]:
        add("")
        verb = "accepts on" if ls["role"] == "accepts" else "dials"
        add(f"== {ls['name']} ({verb} {ls['address']})" + (f"  [{ls['config']}]" if ls["config"] else ""))
        if not ls["certificates"] and ls.get("certificate_note"):
            add(f"  Certificate: {ls['certificate_note']}")
        for c in ls["certificates"]:
            add(f"  Certificate {c['cert_file']}")
            add(f"    subject:  {c['subject']}")
            sans = [f"DNS:{d}" for d in c["sans"]["dns"]] + [f"IP:{i}" for i in c["sans"]["ip"]]
            sans += [f"email:{e}" for e in c["sans"]["email"]] + [f"URI:{u}" for u in c["sans"]["uri"]]
            add(f"    SANs:     {', '.join(sans) or '(none)'}")
            add(f"    issuer:   {c['issuer']}")
            add(f"    key:      {c['key']} (matches key_file: {_yn(c['key_matches'])})")
            mark = "" if c["status"] == "ok" else "WARNING: "
            add(f"    valid:    {c['not_before']} .. {c['not_after']}: {mark}{c['note']}")
            add("    chain sent: " + " <- ".join(x["subject"] for x in c["chain_sent"]))
            add(f"    chain:    {c['chain_note']}")
        p = ls["peers"]
        add("  Who may connect:" if ls["role"] == "accepts" else "  Checking the server:")
        add(f"    {p['verify_note']}")
        if p.get("identity_rule"):
            add(f"    identity: {p['identity_rule']}")
        if p.get("trusted_cas"):
            add("    trusted CAs: " + "; ".join(p["trusted_cas"]))
        if p.get("pinned_certs") is not None:
            add(f"    pinned_certs: {p['pinned_certs']} key(s); any other certificate is refused")
        add(f"    min version: TLS {p['min_version']}")
        if "tls12_suites" in p:
            if p["min_version"] == "1.3":
                add("    TLS 1.2 suites: (not used: TLS 1.3 only)")
            else:
                add("    TLS 1.2 suites: " + ", ".join(p["tls12_suites"]))
            add("    TLS 1.3 suites: " + ", ".join(p["tls13_suites"]))
            add("    groups (preference order): " + ", ".join(p["curves"]))
        add(f"    FIPS policy: {'on' if p['fips'] else 'off'}; handshake timeout {p['timeout']}s")
        if "handshake_first" in p:
            add(f"    handshake: {p['handshake_first']}; allow_non_tls: {_yn(p['allow_non_tls'])}")
        if "ocsp_stapling" in p:
            add(f"    OCSP stapling: {p['ocsp_stapling']}")
        if p.get("ocsp_peer"):
            op = p["ocsp_peer"]
            add(f"    ocsp_peer: peers' certificates are checked with OCSP (warn_only: {_yn(op['warn_only'])}, "
                f"unknown_is_good: {_yn(op['unknown_is_good'])})")
        if ls.get("verify_and_map"):
            order = ls.get("map_order", "email SAN, DNS SAN, URI SAN, subject DN, Go subject string")
            add(f"  verify_and_map: the peer's certificate names the user ({order}; first match wins)")
        for u in ls.get("users", []):
            forms = ", ".join(u["forms"]) or "none"
            add(f"    user {u['user']!r} (account {u['account']}): {forms} - {u['note']}")
        for w in ls["warnings"]:
            add(f"  WARNING: {w}")
    for n in r["notes"]:
        add("")
        add(f"Note: {n}")
    for c in r.get("client_certs", []):
        add("")
        add(f"== client certificate {c['file']}")
        if "subject" in c:
            add(f"  subject: {c['subject']}  (Go subject string: {c['go_subject']})")
            mark = "" if c["status"] == "ok" else "WARNING: "
            add(f"  valid: {c['not_before']} .. {c['not_after']}: {mark}{c['note']}")
        if c["accepted"] is None:
            add(f"  client port: {c['reasons'][0]}")
        elif c["accepted"]:
            add("  client port: ACCEPTED (chain, validity, key usage" + (", pin" if "pinned" in c else "") + ")")
        else:
            add("  client port: REFUSED: " + "; ".join(c["reasons"]))
        if "maps_to" in c:
            m = c["maps_to"]
            if m is None:
                add(f"  verify_and_map: {c['mapping_note']} (tried: {', '.join(c['identities_tried'])})")
            else:
                add(f"  verify_and_map: user {m['user']!r} (by {m['how']}), account {m['account']}"
                    + ("; the client must also send the user's password" if m["password_required"] else ""))
                perms = m["permissions"]
                add("    " + _perm_line("publish", perms["publish"]))
                add("    " + _perm_line("subscribe", perms["subscribe"]))
                if perms["allow_responses"]:
                    ar = perms["allow_responses"]
                    add(f"    allow_responses: {ar['max_msgs']} message(s) within {ar['expires']}s")
    return "\n".join(lines) + "\n"


# ---- command ------------------------------------------------------------------------------------


def _split_args(argv: Sequence[str]) -> tuple[list[str], list[str], bool]:
    """(server flags, --client-cert files, --json); the report's own flags taken out."""
    rest: list[str] = []
    certs: list[str] = []
    as_json = False
    args = list(argv)
    while args:
        a = args.pop(0)
        bare = a.lstrip("-")
        if a.startswith("-") and bare == "json":
            as_json = True
        elif a.startswith("-") and bare.startswith("client-cert="):
            certs.append(bare.split("=", 1)[1])
        elif a.startswith("-") and bare == "client-cert":
            if not args:
                raise ValueError("flag needs an argument: --client-cert")
            certs.append(args.pop(0))
        else:
            rest.append(a)
    return rest, certs, as_json


def main(argv: Sequence[str], stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    from pynatsd.cli import FlagError, flag_values, parse_flags
    from pynatsd.config.load import load_options

    out = stdout or sys.stdout
    err = stderr or sys.stderr
    if any(a.lstrip("-") in ("h", "help") for a in argv):
        print(USAGE, file=out)
        return 0
    try:
        rest, certs, as_json = _split_args(argv)
        p = parse_flags(rest)
        if p.args:
            raise FlagError(f"unexpected argument: {p.args[0]}")
    except (ValueError, FlagError) as e:
        print(e, file=err)
        print(USAGE, file=err)
        return 2
    # the builders log their warnings; they are in the report, not on stderr
    root = logging.getLogger("pynatsd")
    if not root.handlers:
        root.addHandler(logging.NullHandler())
    try:
        opts = load_options(p.values.get("config") or None, flag_values(p))
        report = build_report(opts, certs)
    except ConfigError as e:
        message = f"{PROG}: {e}"
        print(message, file=err)
        if as_json:
            print(json.dumps({"ok": False, "error": str(e)}), file=out)
        return 1
    if as_json:
        print(json.dumps(report, indent=2), file=out)
    else:
        out.write(render_text(report))
    return 0
