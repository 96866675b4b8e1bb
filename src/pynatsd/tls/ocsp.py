"""OCSP: stapling the status of the served certificate (the top-level ``ocsp`` block) and
checking the status of a peer's certificate chain (``ocsp_peer``), with the peer-check response
cache (``ocsp_cache``). Behaviour and log/error texts follow nats-server 2.15.

Stapling (client and route listeners): ``StapleMonitor`` gets the leaf's status at start-up (in memory ->
``<store_dir>/ocsp/<hex sha256 of the leaf DER>`` -> the responders: ``ocsp.url`` or the
certificate's AIA OCSP URLs, HTTP POST then GET), validates it (signed by the issuer or by a
delegate carrying the OCSPSigning EKU; ThisUpdate not in the future, NextUpdate not past), and
OpenSSL's status callback staples it on every handshake whose client asks. It refreshes at half
the time to NextUpdate (24 h without one, 2 min when already past), keeps the last good staple
when a refresh fails, and shuts the server down on revoked/unknown in the modes that say so.

Peer checks: ``PeerChecker.check`` runs after a completed handshake (``ServerTLS.peer_check``):
the verified chain passes when it is self-signed, none of its non-root certificates names an
http(s) OCSP responder, or each such certificate gets a current, good response (cached in
``ResponseCache``; HTTP GET with ``ca_timeout``).

Differences from nats-server: a staple found expired during a handshake is not re-fetched
within that handshake (OpenSSL's callback cannot wait): the handshake goes on without a staple
and a refresh starts at once. OpenSSL verifies one chain, so "any chain passes" is that chain.
The route port staples, but a route neither requires the peer's staple nor sends one when
dialing (OpenSSL has no client-side stapling; nats-server in a stapling mode therefore refuses
routes pynatsd dials). A response signed by a delegate without the OCSPSigning EKU is refused
for our own staple too (nats-server staples it). The peer cache file is plain JSON (base64 DER),
not S2-compressed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from pynatsd.config.options import OCSPCacheOptions, OCSPOptions, OCSPPeerOptions

log = logging.getLogger("pynatsd.tls")

STORE_SUBDIR = "ocsp"
DEFAULT_CHECK_INTERVAL = 24 * 3600.0
MIN_CHECK_INTERVAL = 120.0
STAPLE_HTTP_TIMEOUT = 30.0
CACHE_FILE = "cache.json"
REJECT_CLIENT = "client not OCSP valid"

_STATUS = {ocsp.OCSPCertStatus.GOOD: "good", ocsp.OCSPCertStatus.REVOKED: "revoked",
           ocsp.OCSPCertStatus.UNKNOWN: "unknown"}


class OCSPError(Exception):
    """Why a status could not be had (the text goes into nats-server's log/error lines)."""


# ---- Go spellings ---------------------------------------------------------------------------


def rfc3339(t: dt.datetime | None) -> str:
    """Go's time.RFC3339Nano for a UTC time (the zero time when None)."""
    if t is None:
        return "0001-01-01T00:00:00Z"
    t = t.astimezone(dt.UTC)
    s = t.strftime("%Y-%m-%dT%H:%M:%S")
    if t.microsecond:
        s += ("." + f"{t.microsecond:06d}").rstrip("0")
    return s + "Z"


def go_duration(seconds: float) -> str:
    from pynatsd.monitor import gofmt

    return gofmt.go_duration(gofmt.seconds_to_ns(seconds))


def subject_dn(cert: x509.Certificate) -> str:
    """The certificate subject as nats-server's OCSP log lines print it (RDN sequence, Go form)."""
    try:
        from pynatsd.tls.identity import go_subject

        return go_subject(cert)
    except Exception:  # noqa: BLE001 - informational only
        return cert.subject.rfc4514_string()


# ---- certificate facts ----------------------------------------------------------------------


def has_must_staple(cert: x509.Certificate) -> bool:
    """True when the TLS Feature extension (RFC 7633) lists status_request."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.TLSFeature)
    except x509.ExtensionNotFound:
        return False
    return x509.TLSFeatureType.status_request in ext.value


def aia_ocsp_urls(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess)
    except x509.ExtensionNotFound:
        return []
    return [d.access_location.value for d in ext.value
            if d.access_method == AuthorityInformationAccessOID.OCSP
            and isinstance(d.access_location, x509.UniformResourceIdentifier)]


def web_urls(urls: list[str]) -> list[str]:
    """The http/https responder URLs among ``urls`` (others are not OCSP-eligible)."""
    out = []
    for u in urls:
        try:
            p = urllib.parse.urlsplit(u)
        except ValueError:
            continue
        if p.scheme in ("http", "https") and p.netloc:
            out.append(u)
    return out


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def find_issuer(chain: list[x509.Certificate], ca_file: str | None) -> x509.Certificate:
    """The leaf's issuer: the second certificate of the cert file (which must sign the leaf),
    else a CA from ``ca_file`` that signed it. Raises OCSPError (nats-server's words)."""
    leaf = chain[0]
    if len(chain) > 1:
        if not _signed_by(leaf, chain[1]):
            raise OCSPError("no issuers found (the second certificate in cert_file did not sign the leaf)")
        issuer = chain[1]
    else:
        candidates: list[x509.Certificate] = []
        if ca_file:
            try:
                candidates = x509.load_pem_x509_certificates(Path(ca_file).read_bytes())
            except (OSError, ValueError) as e:
                raise OCSPError(f"failed to parse ca_file: {e}") from None
        found = [c for c in candidates if c.subject == leaf.issuer and _signed_by(leaf, c)]
        if not found:
            raise OCSPError("no issuers found (put the issuing CA after the leaf in cert_file, or in ca_file)")
        issuer = found[0]
    if not _is_ca(issuer):
        raise OCSPError(f"{subject_dn(issuer)} invalid ca basic constraints: is not ca")
    return issuer


def build_request(leaf: x509.Certificate, issuer: x509.Certificate) -> bytes:
    """A DER OCSP request for ``leaf`` (SHA-1 CertID, as Go's ocsp.CreateRequest)."""
    req = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1()).build()  # noqa: S303
    return req.public_bytes(serialization.Encoding.DER)


# ---- responses ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Status:
    """A parsed, signature-checked OCSP response for one certificate."""

    raw: bytes
    status: str  # good, revoked, unknown
    this_update: dt.datetime
    next_update: dt.datetime | None

    @property
    def good(self) -> bool:
        return self.status == "good"


def _verify_sig(signer: x509.Certificate, resp: ocsp.OCSPResponse) -> None:
    key = signer.public_key()
    sig, data, h = resp.signature, resp.tbs_response_bytes, resp.signature_hash_algorithm
    if isinstance(key, rsa.RSAPublicKey):
        assert h is not None
        key.verify(sig, data, padding.PKCS1v15(), h)
    elif isinstance(key, ec.EllipticCurvePublicKey):
        assert h is not None
        key.verify(sig, data, ec.ECDSA(h))
    elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        key.verify(sig, data)
    else:
        raise InvalidSignature("unsupported signer key type")


def _has_ocsp_signing(cert: x509.Certificate) -> bool:
    try:
        ekus = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return ExtendedKeyUsageOID.OCSP_SIGNING in ekus


def parse_response(raw: bytes, leaf: x509.Certificate, issuer: x509.Certificate) -> Status:
    """Parse and check a DER OCSP response: successful, about ``leaf``, signed by ``issuer`` or
    by a certificate ``issuer`` signed that carries the OCSPSigning EKU. Raises OCSPError."""
    try:
        resp = ocsp.load_der_ocsp_response(raw)
    except ValueError as e:
        raise OCSPError(f"ocsp: malformed response ({e})") from None
    if resp.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise OCSPError(f"ocsp: error from server: {resp.response_status.name.lower()}")
    singles = list(resp.responses)
    if len(singles) != 1:
        raise OCSPError("ocsp: OCSP response contains bad number of responses")
    if resp.serial_number != leaf.serial_number:
        raise OCSPError("ocsp: response is for another certificate (serial number mismatch)")
    signer = issuer
    if resp.certificates:
        delegate = resp.certificates[0]
        if delegate != issuer:
            if not _signed_by(delegate, issuer):
                raise OCSPError("bad signature on embedded certificate: not signed by the issuer")
            if not _has_ocsp_signing(delegate):
                raise OCSPError("OCSP response signer missing authorization by CA to act as OCSP signer")
            signer = delegate
    try:
        _verify_sig(signer, resp)
    except (InvalidSignature, ValueError, TypeError, AssertionError):
        raise OCSPError("ocsp: bad signature on response") from None
    return Status(raw=raw, status=_STATUS.get(resp.certificate_status, "unknown"),
                  this_update=resp.this_update_utc, next_update=resp.next_update_utc)


def check_valid(st: Status, now: dt.datetime | None = None) -> None:
    """nats-server's time checks on its own staple. Raises OCSPError."""
    now = now or dt.datetime.now(dt.UTC)
    if st.next_update is not None and st.next_update < now:
        raise OCSPError(f"invalid ocsp NextUpdate, is past time: {rfc3339(st.next_update)}")
    if st.this_update > now:
        raise OCSPError(f"invalid ocsp ThisUpdate, is future time: {rfc3339(st.this_update)}")


def is_current(st: Status, skew: float, ttl_unset: float, now: dt.datetime | None = None) -> bool:
    """The peer check's effectivity window (with the allowed clock skew)."""
    now = now or dt.datetime.now(dt.UTC)
    early = now - dt.timedelta(seconds=skew)
    if st.next_update is not None and st.next_update < early:
        return False
    if st.next_update is None and st.this_update + dt.timedelta(seconds=ttl_unset) < early:
        return False
    return not st.this_update > now + dt.timedelta(seconds=skew)


# ---- HTTP (aiohttp, never blocking the event loop) ------------------------------------------


async def _http(method: str, url: str, body: bytes | None, timeout: float, reqlen: int = 0) -> bytes:
    import aiohttp  # lazy: only servers using OCSP pay for it

    headers = {"Content-Type": "application/ocsp-request", "Accept": "application/ocsp-response"} if body else {}
    start = time.monotonic()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.request(method, url, data=body, headers=headers) as resp:
                data = await resp.read()
                log.debug("Received OCSP response (method=%s, status=%d, url=%s, duration=%.3fs)",
                          method, resp.status, url, time.monotonic() - start)
                if resp.status > 299:
                    raise OCSPError(f"non-ok http status on {method} request (reqlen={reqlen}): {resp.status}")
                return data
    except OCSPError:
        raise
    except TimeoutError:
        raise OCSPError(f'{method.title()} "{url}": timeout after {go_duration(timeout)}') from None
    except Exception as e:  # noqa: BLE001 - connection refused, DNS, bad URL: one line
        raise OCSPError(f'{method.title()} "{url}": {e}') from None


async def fetch_staple(urls: list[str], req: bytes, timeout: float = STAPLE_HTTP_TIMEOUT) -> bytes:
    """Ask each responder (POST, then GET) until one answers; nats-server's error texts."""
    if not urls:
        raise OCSPError("no available ocsp servers")
    errors: list[str] = []
    for u in urls:
        u = u.rstrip("/")
        try:
            return await _http("POST", u, req, timeout, len(req))
        except OCSPError as post_err:
            try:
                enc = base64.b64encode(req).decode()
                return await _http("GET", f"{u}/{enc}", None, timeout, len(enc))
            except OCSPError as get_err:
                errors = [str(post_err), str(get_err)]
    raise OCSPError("exhausted ocsp servers: " + "; ".join(errors))


async def fetch_peer(urls: list[str], req: bytes, timeout: float) -> bytes:
    """The peer check's fetch: GET ``<url>/<url-escaped base64 request>`` on each responder."""
    if not urls:
        raise OCSPError("no available OCSP servers")
    err = ""
    enc = urllib.parse.quote_plus(base64.b64encode(req).decode())
    for u in urls:
        log.debug("Trying OCSP responder url [%s]", u)
        try:
            return await _http("GET", f"{u.rstrip('/')}/{enc}", None, timeout)
        except OCSPError as e:
            err = str(e)
    raise OCSPError(f"exhausted OCSP responders: {err}")


# ---- stapling -------------------------------------------------------------------------------


def staple_settings(mode: str, must_staple: bool) -> tuple[bool, bool]:
    """(staple?, shut down on revoked/unknown?) for a mode and a certificate (the spec's table)."""
    if mode == "never":
        return False, False
    if mode == "always":
        return True, True
    if mode == "must":
        return must_staple, must_staple
    return must_staple, False  # auto, or no ocsp block


class StapleMonitor:
    """The OCSP status of one served certificate: fetched, stapled, refreshed."""

    def __init__(self, *, kind: str, cert_file: str, leaf: x509.Certificate, issuer: x509.Certificate,
                 urls: list[str], shutdown_on_revoke: bool, store_dir: str | None,
                 memory: dict[str, Status], on_revoked: Callable[[], None]) -> None:
        self.kind = kind
        self.cert_file = cert_file
        self.leaf = leaf
        self.issuer = issuer
        self.urls = urls
        self.shutdown_on_revoke = shutdown_on_revoke
        self.store_dir = store_dir
        self.key = hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest()
        self._memory = memory  # shared by the monitors of one server, survives reloads
        self._on_revoked = on_revoked
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self.request = build_request(leaf, issuer)

    @property
    def current(self) -> Status | None:
        return self._memory.get(self.key)

    # -- the lookups --

    def _store_path(self) -> Path | None:
        return Path(self.store_dir, STORE_SUBDIR, self.key) if self.store_dir else None

    def _local(self) -> Status | None:
        path = self._store_path()
        if path is None:
            return None
        try:
            st = parse_response(path.read_bytes(), self.leaf, self.issuer)
            check_valid(st)
        except (OSError, OCSPError):
            return None
        self._memory[self.key] = st
        return st

    async def remote(self) -> Status:
        raw = await fetch_staple(self.urls, self.request)
        try:
            st = parse_response(raw, self.leaf, self.issuer)
        except OCSPError as e:
            raise OCSPError(f"failed to get remote status: {e}") from None
        check_valid(st)
        path = self._store_path()
        if path is not None:
            try:
                _atomic_write(path, raw)
            except OSError as e:
                raise OCSPError(f"failed to write ocsp status: {e}") from None
        self._memory[self.key] = st
        return st

    async def get_status(self) -> Status:
        st = self.current
        if st is not None:
            try:
                check_valid(st)
                return st
            except OCSPError:
                pass
        st = await asyncio.to_thread(self._local) if self.store_dir else None
        return st if st is not None else await self.remote()

    # -- stapling (OpenSSL's status callback; may run off the event loop) --

    def staple(self, conn: Any, data: Any) -> bytes:
        st = self.current
        if st is None:
            return b""
        if st.next_update is not None and st.next_update < dt.datetime.now(dt.UTC):
            self._refresh_soon()
            return b""
        return st.raw

    def _refresh_soon(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wake.set)

    # -- the refresh loop --

    def next_run(self) -> float:
        st = self.current
        if st is None or st.next_update is None:
            return DEFAULT_CHECK_INTERVAL
        d = (st.next_update - dt.datetime.now(dt.UTC)).total_seconds() / 2
        return MIN_CHECK_INTERVAL if d < 0 else d

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        log.info("OCSP Stapling enabled for %s connections", self.kind)
        self._task = self._loop.create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _run(self) -> None:
        assert self._wake is not None
        try:
            st = await self.get_status()
        except OCSPError:
            st = None
        delay = 0.0
        if st is not None and st.good:
            delay = self.next_run()
            log.info("Found OCSP status for %s certificate at '%s': good, next update %s, checking again in %s",
                     self.kind, self.cert_file, rfc3339(st.next_update), go_duration(delay))
        elif st is not None and self.shutdown_on_revoke:
            log.error("Found OCSP status for %s certificate at '%s': %s", self.kind, self.cert_file, st.status)
            self._on_revoked()
            return
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()
            try:
                st = await self.remote()
            except OCSPError as e:
                delay = self.next_run()
                log.error("Bad OCSP status update for certificate '%s': %s, trying again in %s",
                          self.cert_file, e, go_duration(delay))
                continue
            if st.good:
                delay = self.next_run()
                log.info("Received OCSP status for %s certificate '%s': good, next update %s, checking again in %s",
                         self.kind, self.cert_file, rfc3339(st.next_update), go_duration(delay))
                continue
            log.error("Received OCSP status for %s certificate '%s': %s", self.kind, self.cert_file, st.status)
            if self.shutdown_on_revoke:
                self._on_revoked()
            return


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="tmp-cert-status", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def prepare_store_dir(store_dir: str | None) -> None:
    if not store_dir:
        return
    d = Path(store_dir, STORE_SUBDIR)
    if d.exists() and not d.is_dir():
        raise OCSPError("OCSP storage directory is not a directory")
    try:
        d.mkdir(parents=True, exist_ok=True, mode=0o750)
    except OSError as e:
        raise OCSPError(f"could not create OCSP storage directory - {e}") from None


def make_monitor(*, kind: str, cert_file: str, ca_file: str | None, ocsp_opts: OCSPOptions | None,
                 store_dir: str | None, memory: dict[str, Status],
                 on_revoked: Callable[[], None]) -> StapleMonitor | None:
    """The stapling monitor a listener's certificate needs under ``ocsp_opts`` (None: none).
    Raises OCSPError for an unusable issuer or store directory."""
    try:
        chain = x509.load_pem_x509_certificates(Path(cert_file).read_bytes())
    except (OSError, ValueError) as e:
        raise OCSPError(f"error parsing certificate: {e}") from None
    leaf = chain[0]
    must = has_must_staple(leaf)
    mode = ocsp_opts.mode if ocsp_opts is not None else "auto"
    if mode == "never" and must:
        log.warning("Certificate at '%s' has MustStaple but OCSP is disabled", cert_file)
    staple, shutdown = staple_settings(mode, must)
    if not staple:
        return None
    prepare_store_dir(store_dir)
    issuer = find_issuer(chain, ca_file)
    urls = list(ocsp_opts.urls) if ocsp_opts is not None and ocsp_opts.urls else aia_ocsp_urls(leaf)
    return StapleMonitor(kind=kind, cert_file=cert_file, leaf=leaf, issuer=issuer, urls=urls,
                         shutdown_on_revoke=shutdown, store_dir=store_dir, memory=memory,
                         on_revoked=on_revoked)


async def initial_status(mon: StapleMonitor) -> Status:
    """The start-up lookup; raises OCSPError with nats-server's start-up error text."""
    try:
        st = await mon.get_status()
    except OCSPError as e:
        raise OCSPError(f"bad OCSP status update for certificate at '{mon.cert_file}': {e}") from None
    if not st.good and mon.shutdown_on_revoke:
        raise OCSPError(f"found existing OCSP status for certificate at '{mon.cert_file}': {st.status}")
    return st


# ---- peer checks and their cache ------------------------------------------------------------


@dataclass
class _CacheItem:
    subject: str
    cached_at: str
    status: str
    expires: str | None
    raw: bytes


@dataclass
class ResponseCache:
    """``ocsp_cache``: "none" keeps nothing; "local" keeps responses in memory and saves them to
    ``<local_store>/cache.json`` every ``save_interval`` when changed, and on stop."""

    opts: OCSPCacheOptions
    items: dict[str, _CacheItem] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0
    dirty: bool = False
    _task: asyncio.Task[None] | None = None

    @property
    def local(self) -> bool:
        return self.opts.type == "local"

    @property
    def path(self) -> Path:
        return Path(self.opts.local_store or "_rc_", CACHE_FILE).absolute()

    def get(self, key: str) -> bytes | None:
        if not self.local:
            return None
        item = self.items.get(key)
        if item is None:
            self.misses += 1
            log.debug("OCSP peer cache miss for key [%s]", key)
            return None
        self.hits += 1
        log.debug("OCSP peer cache hit for key [%s]", key)
        return item.raw

    def put(self, key: str, st: Status, subject: str) -> None:
        if not self.local:
            return
        log.debug("Caching OCSP response for [%s], key [%s]", subject, key)
        self.items[key] = _CacheItem(subject=subject, cached_at=rfc3339(dt.datetime.now(dt.UTC).replace(microsecond=0)),
                                     status=st.status, expires=rfc3339(st.next_update) if st.next_update else None,
                                     raw=st.raw)
        self.dirty = True

    def delete(self, key: str, was_miss: bool) -> None:
        item = self.items.get(key)
        if item is None:
            return
        if item.status == "revoked" and self.opts.preserve_revoked:
            log.debug("Revoked OCSP response for key [%s] preserved by cache policy", key)
        else:
            log.debug("Deleting OCSP peer cached response for key [%s]", key)
            del self.items[key]
            self.dirty = True
        if was_miss:
            self.hits -= 1
            self.misses += 1

    def load(self) -> None:
        if not self.local:
            return
        path = self.path
        log.debug("Loading OCSP peer cache [%s]", path)
        try:
            doc = json.loads(path.read_text())
            self.items = {k: _CacheItem(subject=v.get("subject", ""), cached_at=v.get("cached_at", ""),
                                        status=v.get("resp_status", "unknown"), expires=v.get("resp_expires"),
                                        raw=base64.b64decode(v["resp"]))
                          for k, v in doc.items()}
        except FileNotFoundError:
            log.debug("No OCSP peer cache found, starting with empty cache")
        except (OSError, ValueError, KeyError, AttributeError, TypeError) as e:
            log.warning("Unable to load OCSP peer cache: %s", e)
            self.items = {}
            self.dirty = True

    def save(self) -> None:
        if not self.local or not self.dirty:
            return
        path = self.path
        log.debug("Saving OCSP peer cache [%s]", path)
        doc = {k: {"subject": v.subject, "cached_at": v.cached_at, "resp_status": v.status,
                   **({"resp_expires": v.expires} if v.expires else {}),
                   "resp": base64.b64encode(v.raw).decode()} for k, v in self.items.items()}
        data = json.dumps(doc, indent=1).encode()
        try:
            _atomic_write(path, data)
        except OSError as e:
            log.error("Unable to save OCSP peer cache: %s", e)
            return
        self.dirty = False
        log.debug("Saved OCSP peer cache successfully (%d bytes)", len(data))

    def start(self) -> None:
        self.load()
        log.info("OCSP peer cache online, type [%s]", self.opts.type)
        if self.local:
            self._task = asyncio.get_running_loop().create_task(self._saver())

    async def _saver(self) -> None:
        while True:
            await asyncio.sleep(self.opts.save_interval)
            log.debug("OCSP peer cache save timer expired")
            await asyncio.to_thread(self.save)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await asyncio.to_thread(self.save)


def fingerprint(cert: x509.Certificate) -> str:
    """The cache key: standard base64 of the SHA-256 of the certificate DER."""
    return base64.b64encode(hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()).decode()


class PeerChecker:
    """``ocsp_peer`` for one tls block: ``check`` is ``ServerTLS.peer_check``."""

    def __init__(self, opts: OCSPPeerOptions, cache: ResponseCache, reject: str = REJECT_CLIENT) -> None:
        self.opts = opts
        self.cache = cache
        self.reject = reject

    async def check(self, transport: Any) -> str | None:
        conn = transport.get_extra_info("ssl_object")
        chain = conn.get_verified_chain(as_cryptography=True) if conn is not None else None
        if await self.chain_ok(list(chain or [])):
            return None
        return self.reject

    async def chain_ok(self, chain: list[x509.Certificate]) -> bool:
        if not chain:
            log.error("Peer certificate is nil, rejecting OCSP peer")
            return False
        log.debug("Peer OCSP enabled: 1 TLS client chain(s) will be evaluated")
        if len(chain) == 1:
            log.debug("Chain [0] is self-signed, thus peer is valid")
            return True
        links = [(chain[i], chain[i + 1], urls) for i in range(len(chain) - 1)
                 if (urls := web_urls(aia_ocsp_urls(chain[i])))]
        if not links:
            log.debug("Chain [0] has no OCSP eligible links, thus peer is valid")
            return True
        for cert, issuer, urls in links:
            bad = await self.link_good(cert, issuer, urls)
            if bad is not None:
                log.debug("%s", bad)
                log.debug("No OCSP valid chains, thus peer is invalid")
                return False
        log.debug("Chain [0] is OCSP valid for all eligible links, thus peer is valid")
        return True

    async def link_good(self, cert: x509.Certificate, issuer: x509.Certificate, urls: list[str]) -> str | None:
        """None when the certificate's status is acceptable, else the reason."""
        o = self.opts
        key = fingerprint(cert)
        subj = subject_dn(cert)
        st: Status | None = None
        cached_revoked = False
        raw = self.cache.get(key)
        if raw:
            try:
                cached = parse_response(raw, cert, issuer)
            except OCSPError:
                log.debug("Invalid cached OCSP response for [%s] with fingerprint [%s]", subj, key)
                self.cache.delete(key, True)
            else:
                if is_current(cached, o.allowed_clockskew, o.cache_ttl_when_next_update_unset):
                    log.debug("Cached OCSP response is current, status [%s]", cached.status)
                    st = cached
                else:
                    log.debug("Cached OCSP response is expired, status [%s]", cached.status)
                    self.cache.delete(key, True)
                cached_revoked = cached.status == "revoked"
        if st is None:
            try:
                fetched = await fetch_peer(urls, build_request(cert, issuer), o.ca_timeout or 2.0)
            except OCSPError as e:
                log.warning("Attempt to obtain OCSP response from CA responder for [%s] failed: %s", subj, e)
                if o.warn_only:
                    log.warning("OCSP verify fail for [%s] but WarnOnly is true so allowing", subj)
                    return None
                if o.allow_when_ca_unreachable and not cached_revoked:
                    log.warning("Failed to obtain OCSP CA response for [%s] but AllowWhenCAUnreachable set; "
                                "no cached revocation so allowing", subj)
                    return None
                if o.allow_when_ca_unreachable:
                    log.warning("Failed to obtain OCSP CA response for [%s] but AllowWhenCAUnreachable set; "
                                "cached revocation exists so rejecting", subj)
                return "Failed OCSP response fetch"
            try:
                st = parse_response(fetched, cert, issuer)
            except OCSPError as e:
                log.error("Could not parse OCSP CA response for [%s]: %s", subj, e)
                if o.warn_only:
                    log.warning("OCSP verify fail for [%s] but WarnOnly is true so allowing", subj)
                    return None
                return "Failed OCSP response parse"
            if not is_current(st, o.allowed_clockskew, o.cache_ttl_when_next_update_unset):
                log.warning("New OCSP CA response obtained for [%s] but not current", subj)
                if o.warn_only:
                    log.warning("OCSP verify fail for [%s] but WarnOnly is true so allowing", subj)
                    return None
                return "OCSP response not in effectivity window"
            self.cache.put(key, st, subj)
        if st.status == "revoked" or (st.status == "unknown" and not o.unknown_is_good):
            log.warning("OCSP verify fail for [%s] with CA status [%s]", subj, st.status)
            if o.warn_only:
                log.warning("OCSP verify fail for [%s] but WarnOnly is true so allowing", subj)
                return None
            return f"Invalid OCSP response status: {st.status}"
        log.debug("OCSP verify pass for [%s]", subj)
        return None


# ---- the server's OCSP state ----------------------------------------------------------------


class OCSPManager:
    """What one server runs for OCSP: the stapling monitors of the client listener ("Client")
    and of the route listener ("Router"), the peer checker of the client tls block and the
    response cache. ``server`` needs ``opts``, ``tls`` (a ServerTLS or None) and ``shutdown()``."""

    KINDS = ("Client", "Router")  # nats-server's order (and log names)

    def __init__(self, server: Any) -> None:
        self.server = server
        self.memory: dict[str, Status] = {}
        self.monitors: dict[str, StapleMonitor] = {}
        self.cache: ResponseCache | None = None
        self.peer: PeerChecker | None = None
        self._restart: asyncio.Task[None] | None = None
        self._revoke_task: asyncio.Task[None] | None = None

    @property
    def monitor(self) -> StapleMonitor | None:
        """The client listener's monitor."""
        return self.monitors.get("Client")

    def _on_revoked(self) -> None:
        loop = asyncio.get_running_loop()
        self._revoke_task = loop.create_task(self.server.shutdown())

    def _new_monitors(self, opts: Any) -> dict[str, StapleMonitor]:
        """The monitors ``opts`` need, in nats-server's order. Raises OCSPError."""
        blocks = {"Client": opts.tls}
        c = opts.cluster
        if c is not None and c.port != 0:
            blocks["Router"] = c.tls
        out = {}
        for kind, tlso in blocks.items():
            if tlso is None or not (tlso.cert_file or tlso.certificates):
                continue
            # a ``certs`` list: only the first certificate is stapled (as nats-server says); the
            # callback sits on its context, so the others are served without a staple
            cert_file = tlso.cert_file or tlso.certificates[0][0]
            mon = make_monitor(kind=kind, cert_file=cert_file, ca_file=tlso.ca_file, ocsp_opts=opts.ocsp,
                               store_dir=opts.store_dir, memory=self.memory, on_revoked=self._on_revoked)
            if mon is not None:
                out[kind] = mon
        return out

    def peer_tls(self, opts: Any, built: Any) -> Any:
        """``built`` (a client-port ServerTLS) ready for OCSP: the stapling callback goes on its
        SSL context (OpenSSL calls it only for clients asking for a status; it staples what the
        monitor holds, if anything), and the peer check is attached when ocsp_peer asks."""
        import dataclasses

        built.ssl_context.set_ocsp_server_callback(self._staple, "Client")
        tlso = opts.tls
        if tlso is not None and tlso.ocsp_peer is not None and tlso.ocsp_peer.verify:
            if self.cache is None:
                self.cache = ResponseCache(opts.ocsp_cache or OCSPCacheOptions())
            self.peer = PeerChecker(tlso.ocsp_peer, self.cache)
            return dataclasses.replace(built, peer_check=self.peer.check)
        self.peer = None
        return built

    def route_tls(self, built: Any) -> None:
        """The accepting side of the route port staples the route certificate's status (the
        dialing side cannot: OpenSSL sends no client staple)."""
        built.ssl_context.set_ocsp_server_callback(self._staple, "Router")

    def _staple(self, conn: Any, kind: Any) -> bytes:
        mon = self.monitors.get(kind)
        return mon.staple(conn, None) if mon is not None else b""

    async def start(self) -> None:
        """At start-up, before the listeners: the first statuses (raises OCSPError: the server
        must not start), then the monitors and the cache run."""
        opts = self.server.opts
        mons = self._new_monitors(opts)
        for mon in mons.values():
            await initial_status(mon)
        self.monitors = mons
        if self.server.tls is not None:
            self.server.tls = self.peer_tls(opts, self.server.tls)
        for mon in mons.values():
            mon.start()
        if self.cache is not None and self.peer is not None:
            self.cache.start()

    def reloaded(self) -> None:
        """After a reload applied new options (the new SSL contexts already went through
        ``peer_tls``/``route_tls``): the monitors restart in the background (a failure is
        logged, as by nats-server, and nothing is stapled until a status is had) and the
        cache restarts."""
        if self._restart is not None and not self._restart.done():
            self._restart.cancel()
        self._restart = asyncio.get_running_loop().create_task(self._do_restart())

    async def _do_restart(self) -> None:
        opts = self.server.opts
        if opts.tls is None:
            self.peer = None  # TLS removed: nothing to check
        if self.cache is not None:
            await self.cache.stop()  # saved; the new one loads it back
            self.cache = None
        if self.peer is not None:
            self.cache = self.peer.cache = ResponseCache(opts.ocsp_cache or OCSPCacheOptions())
            self.cache.start()
        old = self.monitors
        for mon in old.values():
            await mon.stop()
        try:
            new = self._new_monitors(opts)
            # the same certificate keeps its staple while its new monitor starts
            self.monitors = {k: m for k, m in old.items() if k in new and new[k].key == m.key}
            for mon in new.values():
                await initial_status(mon)
        except OCSPError as e:
            self.monitors = {}
            log.warning("Can't restart OCSP features: %s", e)
            return
        self.monitors = new
        for mon in new.values():
            mon.start()

    async def stop(self) -> None:
        if self._restart is not None and not self._restart.done():
            self._restart.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._restart
        for mon in self.monitors.values():
            await mon.stop()
        if self.cache is not None:
            await self.cache.stop()
