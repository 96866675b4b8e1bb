"""Client authentication (user/password, bcrypt, token, users list, nkey users (signature
checks in ``pynatsd.nkeys_auth``), no_auth_user, certificate identities) and authorization
(publish/subscribe permissions, allow_responses).

An ``Authorizer`` is built from ``AuthOptions`` once per (re)load. ``authenticate`` decides a
CONNECT: it returns an ``AuthResult``, ``None`` (refused), or a ``BcryptCheck`` when a bcrypt
hash must be verified; that check is slow (tens to hundreds of ms), so the connection runs it in
a worker thread instead of stalling the event loop. Successful bcrypt checks are remembered (by
a digest of the password, never the password itself) so reconnect storms stay cheap.

``ClientPermissions`` compiles a user's ``Permissions`` into the fast checks the connection makes
per message: ``can_publish``, ``can_subscribe`` (with nats-server's queue-entry rules) and
``can_deliver`` (deny filtering of messages reaching a wildcard subscription).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pynatsd.config.options import (
    DEFAULT_AUTH_TIMEOUT,
    AuthOptions,
    Permissions,
    ResponsePermission,
    SubjectPermission,
    TLSOptions,
    User,
)
from pynatsd.subjects import SubjectFilter

log = logging.getLogger("pynatsd")

GLOBAL_ACCOUNT = "$G"
CONNECTION_TYPE_STANDARD = "STANDARD"
DEFAULT_ALLOW_RESPONSES_MAX = 1
DEFAULT_ALLOW_RESPONSES_EXPIRES = 120.0

_BCRYPT_RE = re.compile(r"^\$2[abxy]\$\d{2}\$.*")


def is_bcrypt(secret: str) -> bool:
    """nats-server treats ``$2a$NN$...``-shaped passwords and tokens as bcrypt hashes."""
    return secret.startswith("$") and _BCRYPT_RE.match(secret) is not None


# (hash, sha256(plain)) pairs that verified; bounded so it cannot grow without limit.
_bcrypt_ok: dict[tuple[str, bytes], None] = {}
_BCRYPT_CACHE_MAX = 4096


def _bcrypt_key(hashed: str, plain: str) -> tuple[str, bytes]:
    return (hashed, hashlib.sha256(plain.encode("utf-8", "surrogateescape")).digest())


def bcrypt_verify(hashed: str, plain: str) -> bool:
    """Blocking bcrypt comparison (call it off the event loop)."""
    key = _bcrypt_key(hashed, plain)
    if key in _bcrypt_ok:
        return True
    import bcrypt

    try:
        ok = bcrypt.checkpw(plain.encode("utf-8", "surrogateescape"), hashed.encode("utf-8"))
    except ValueError:
        ok = False
    if ok:
        if len(_bcrypt_ok) >= _BCRYPT_CACHE_MAX:
            _bcrypt_ok.clear()
        _bcrypt_ok[key] = None
    return ok


def _secret_matches(configured: str, given: str | None) -> bool | None:
    """True/False when decidable now; None when a bcrypt check is needed."""
    if given is None:
        given = ""
    if is_bcrypt(configured):
        if _bcrypt_key(configured, given) in _bcrypt_ok:
            return True
        return None
    return hmac.compare_digest(configured.encode("utf-8", "surrogateescape"), given.encode("utf-8", "surrogateescape"))


class ClientPermissions:
    """A user's permissions compiled for the per-message checks."""

    __slots__ = ("pub", "sub", "deliver_deny", "responses", "source")

    def __init__(self, perms: Permissions) -> None:
        self.source = perms
        publish = perms.publish
        self.responses: ResponsePermission | None = perms.allow_responses
        allow: Sequence[str] | None = publish.allow if publish is not None else None
        deny: Sequence[str] = publish.deny if publish is not None else ()
        if self.responses is not None and allow is None:
            # allow_responses without an explicit publish allow list: only replies may be published
            allow = ()
        self.pub: SubjectFilter | None = None
        if allow is not None or deny:
            self.pub = SubjectFilter(allow, deny)
        sub = perms.subscribe
        self.sub: SubjectFilter | None = None
        self.deliver_deny: SubjectFilter | None = None
        if sub is not None and (sub.allow is not None or sub.deny):
            self.sub = SubjectFilter(sub.allow, sub.deny)
            plain_deny = [e for e in sub.deny if len(e.split()) == 1]
            if plain_deny:
                # a wildcard subscription overlapping a deny entry is allowed; the denied
                # subjects are filtered out when messages are delivered
                self.deliver_deny = SubjectFilter(None, plain_deny)

    def can_publish(self, subject: bytes) -> bool:
        return self.pub is None or self.pub.permits(subject)

    def can_subscribe(self, subject: bytes, queue: bytes = b"") -> bool:
        return self.sub is None or self.sub.permits(subject, queue)

    def can_deliver(self, subject: bytes) -> bool:
        """False when a deny entry covers ``subject`` (reaching a wildcard subscription)."""
        return self.deliver_deny is None or self.deliver_deny.permits(subject)


def normalize_response_permission(rp: ResponsePermission) -> tuple[int, float]:
    """(max_msgs, expires seconds) with 0 => default and negative => unlimited (0 returned)."""
    max_msgs = rp.max_msgs
    if max_msgs == 0:
        max_msgs = DEFAULT_ALLOW_RESPONSES_MAX
    elif max_msgs < 0:
        max_msgs = 0
    expires = rp.expires
    if expires == 0:
        expires = DEFAULT_ALLOW_RESPONSES_EXPIRES
    elif expires < 0:
        expires = 0.0
    return max_msgs, expires


@dataclass(frozen=True)
class Credentials:
    """What a CONNECT carried for authentication (kept for re-authentication on reload)."""

    user: str | None = None
    password: str | None = None
    token: str | None = None
    nkey: str | None = None
    jwt: str | None = None
    # (nkeys helper N) the CONNECT "sig", and the nonce this connection's INFO carried
    sig: str | None = None
    nonce: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.user or self.password or self.token or self.nkey or self.jwt)


@dataclass
class AuthResult:
    """Who the client is, once authenticated."""

    method: str  # "none", "user", "token", "no_auth_user", "cert", "nkey"
    user: User | None = None
    permissions: ClientPermissions | None = None
    account: str = GLOBAL_ACCOUNT

    @property
    def username(self) -> str | None:
        return self.user.username if self.user is not None else None


@dataclass
class BcryptCheck:
    """A decision that waits on one bcrypt comparison (run ``verify`` off the event loop)."""

    hashed: str
    plain: str
    result: AuthResult

    def verify(self) -> AuthResult | None:
        return self.result if bcrypt_verify(self.hashed, self.plain) else None


AuthDecision = AuthResult | BcryptCheck | None


class Authorizer:
    """Authentication and permissions for client connections, built from ``AuthOptions``."""

    def __init__(self, opts: AuthOptions, tls: TLSOptions | None = None) -> None:
        self.opts = opts
        self.users: dict[str, User] = {}
        # (nkeys helper N) nkey users by public key, apart from the password users: a CONNECT
        # naming one as "user" must not get in without a signature
        self.nkeys: dict[str, User] = {}
        for u in opts.users:
            if u.nkey is not None:
                self.nkeys[u.nkey] = u
            else:
                self.users[u.username] = u
        self.required = opts.required
        self.no_auth_user: User | None = None
        if opts.no_auth_user and opts.no_auth_user in self.users:
            self.no_auth_user = self.users[opts.no_auth_user]
        elif opts.no_auth_user and opts.no_auth_user in self.nkeys:
            self.no_auth_user = self.nkeys[opts.no_auth_user]
        # INFO carries a nonce to sign when nkey users exist
        self.nonce_required = bool(self.nkeys)
        # ops before CONNECT run as no_auth_user only when it is a password user (nats-server
        # refuses them when it names an nkey)
        self.anonymous_ops = self.no_auth_user is not None and self.no_auth_user.nkey is None
        if self.nkeys:
            from pynatsd.nkeys_auth import preload

            preload()
        # INFO auth_required is left out when no_auth_user can authenticate an anonymous client
        self.info_auth_required = self.required and self.no_auth_user is None
        if opts.timeout is not None:
            self.timeout = opts.timeout
        elif tls is not None:
            self.timeout = tls.timeout + 1.0
        else:
            self.timeout = DEFAULT_AUTH_TIMEOUT
        self._perms_cache: dict[int, ClientPermissions | None] = {}

    # -- permissions -------------------------------------------------------------------------

    def permissions_for(self, user: User | None) -> ClientPermissions | None:
        perms = user.permissions if user is not None else None
        if perms is None:
            perms = self.opts.default_permissions
        if perms is None or _unrestricted(perms):
            return None
        key = id(perms)
        cached = self._perms_cache.get(key)
        if cached is None:
            cached = ClientPermissions(perms)
            self._perms_cache[key] = cached
        return cached

    def _result(self, method: str, user: User | None) -> AuthResult:
        account = (user.account if user is not None else None) or GLOBAL_ACCOUNT
        return AuthResult(method, user, self.permissions_for(user), account)

    @staticmethod
    def _standard_allowed(user: User) -> bool:
        types = user.allowed_connection_types
        return not types or any(t.upper() == CONNECTION_TYPE_STANDARD for t in types)

    # -- authentication ----------------------------------------------------------------------

    def authenticate(
        self,
        creds: Credentials,
        cert: Any = None,
        map_users: bool = False,
        debug: Callable[[str], None] | None = None,
        peer_certs: int = 1,
    ) -> AuthDecision:
        """Decide a CONNECT. ``map_users``: the TLS block has verify_and_map, so the client
        certificate ``cert`` (a cryptography x509.Certificate, the verified leaf) names the user;
        ``peer_certs``: how many certificates the client sent. ``debug`` receives the client's
        debug lines (why an nkey signature was refused, how a certificate was mapped), so they
        carry its ``ip:port - cid:N`` prefix as nats-server's do."""
        if not self.required:
            return AuthResult("none", None, self.permissions_for(None))
        if self.nkeys:
            nkey = creds.nkey
            if not (nkey or creds.user or creds.password or creds.token) and self.no_auth_user is not None:
                nkey = self.no_auth_user.nkey
            if nkey:
                return self._check_nkey(nkey, creds, debug)
        if map_users and self.users:
            if cert is not None and peer_certs > 1 and debug is not None:
                debug("Multiple peer certificates found, selecting first")
            user = self.user_from_cert(cert, debug) if cert is not None else None
            if user is None:
                return None
            if creds.user and creds.user != user.username:
                log.warning('User "%s" found in connect proto, but user required from cert', creds.user)
            return self._check_password(user, creds.password, "cert")
        # an nkey in CONNECT counts only when nkey users exist (nats-server ignores it otherwise)
        anonymous = not (creds.user or creds.password or creds.token or creds.jwt)
        if anonymous and self.no_auth_user is not None and self.no_auth_user.nkey is None:
            if not self._standard_allowed(self.no_auth_user):
                return None
            return self._result("no_auth_user", self.no_auth_user)
        if self.users and creds.user is not None and creds.user in self.users:
            user = self.users[creds.user]
            if not self._standard_allowed(user):
                return None
            return self._check_password(user, creds.password, "user")
        if self.opts.token:
            ok = _secret_matches(self.opts.token, creds.token)
            result = self._result("token", None)
            if ok is None:
                return BcryptCheck(self.opts.token, creds.token or "", result)
            return result if ok else None
        if self.opts.user:
            if creds.user != self.opts.user:
                return None
            single = User(self.opts.user, self.opts.password)
            return self._check_password(single, creds.password, "user")
        return None

    def _check_nkey(self, nkey: str, creds: Credentials, debug: Callable[[str], None] | None) -> AuthDecision:
        """(nkeys helper N) An nkey user: the CONNECT's signature of the INFO nonce must verify.
        As nats-server, the no_auth_user's nkey is taken without one."""
        user = self.nkeys.get(nkey)
        if user is None or not self._standard_allowed(user):
            return None
        if self.no_auth_user is not user:
            from pynatsd.nkeys_auth import decode_sig, verify

            if not creds.sig:
                if debug is not None:
                    debug("Signature missing")
                return None
            sig = decode_sig(creds.sig)
            if sig is None:
                if debug is not None:
                    debug("Signature not valid base64")
                return None
            if not verify(nkey, creds.nonce or "", sig):
                if debug is not None:
                    debug("Signature not verified")
                return None
        return self._result("nkey", user)

    def user_from_cert(self, cert: Any, debug: Callable[[str], None] | None = None) -> User | None:
        """verify_and_map: the configured user a client certificate names (nats-server's
        candidate order, including the structured subject-DN comparison). The debug line saying
        how (or that nothing matched) goes to ``debug`` (the client's prefixed logger)."""
        from pynatsd.tls.identity import map_certificate

        if debug is None:
            debug = log.debug
        users = self.users
        match = map_certificate(cert, users, lambda name: self._standard_allowed(users[name]))
        if match is None:
            if log.isEnabledFor(logging.DEBUG):  # (helper T) say which identities were tried, in order
                from pynatsd.tls.identity import cert_identities

                tried = ", ".join(f'"{n}"' for n in cert_identities(cert))
                debug(f"User in cert [{tried}], not found (tried email, DNS and URI SANs, the subject DN, "
                      "the subject string)")
            return None
        if log.isEnabledFor(logging.DEBUG):
            debug(match.debug_line)
        return users.get(match.username)

    def _check_password(self, user: User, given: str | None, method: str) -> AuthDecision:
        result = self._result(method, user)
        configured = user.password or ""
        ok = _secret_matches(configured, given)
        if ok is None:
            return BcryptCheck(configured, given or "", result)
        return result if ok else None

    def user_still_valid(self, result: AuthResult) -> bool:
        """On reload: False when the client's user was removed or moved to another account."""
        if result.user is None or result.method not in ("user", "cert", "no_auth_user", "nkey"):
            return True
        if result.method == "user" and self.opts.user and result.user.username == self.opts.user:
            return True
        if result.user.nkey is not None:  # (nkeys helper N) an nkey user stays an nkey user
            new = self.nkeys.get(result.user.nkey)
        else:
            new = self.users.get(result.user.username)
        if new is None:
            return False
        return (new.account or GLOBAL_ACCOUNT) == result.account


def _unrestricted(perms: Permissions) -> bool:
    def open_(sp: SubjectPermission | None) -> bool:
        return sp is None or (sp.allow is None and not sp.deny)

    return open_(perms.publish) and open_(perms.subscribe) and perms.allow_responses is None
