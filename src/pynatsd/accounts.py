"""Multi-tenant accounts: each account's own subject space, its limits, and the stream and
service imports that let messages cross from one account to another.

``Account`` holds an account's subscription trie (``sublist``) and its open connections.
``AccountRegistry`` builds the accounts from ``ServerOptions`` (``$G`` always, the system
account unless ``no_system_account``) and wires the imports, on start and on every reload.

How imports work (behaviour checked against nats-server 2.15.1):

* A stream import of ``subject`` from account A into B puts an internal subscription
  (``StreamImportSub``) on ``subject`` in A's trie. A message published in A that matches it
  is delivered to B's local subscribers under the subject B sees (``prefix.subject``, or the
  ``to`` subject), with its reply subject unchanged. Because the internal subscription is
  ordinary interest in A, a route carries A's messages to the server where B's subscribers are.
* A service import of ``subject`` from A into B (as ``to``, default ``subject``) puts a
  ``ServiceImportSub`` on ``to`` in B's trie. A request published in B on ``to`` is published
  in A on ``subject`` with a fresh reply subject ``_R_.<random>.<random>``; a
  ``ResponseSub`` on that reply in A sends the responder's answers back into B on the
  requester's own reply subject: once for ``singleton`` services, until the response threshold
  (2 minutes) for ``stream`` and ``chunked`` ones.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from pynatsd.config.options import AccountOptions, ServerOptions
from pynatsd.subjects import SubjectTrie, subject_has_wildcard, subject_is_subset

GLOBAL_ACCOUNT = "$G"
SYSTEM_ACCOUNT = "$SYS"
RESPONSE_PREFIX = b"_R_."
RESPONSE_THRESHOLD = 120.0  # nats-server's default service export response threshold
MAX_IMPORT_DEPTH = 8  # imports of imports: a cycle in the configuration stops here

_B64 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _rand_token(n: int) -> bytes:
    return "".join(_B64[b % 62] for b in secrets.token_bytes(n)).encode()


class Account:
    """One account: its subject space, connections and import wiring."""

    def __init__(self, name: str, opts: AccountOptions | None = None) -> None:
        self.name = name
        self.name_b = name.encode()
        self.opts = opts or AccountOptions(name=name)
        self.sublist: SubjectTrie[Any] = SubjectTrie()
        self.clients: set[Any] = set()
        # internal subscriptions this account's imports hold (in this or other accounts' tries)
        self.import_subs: list[tuple[Account, bytes, Any]] = []
        self.responses: dict[bytes, ResponseSub] = {}
        # service imports by the subject this account's clients publish requests on; None
        # when there are none (the publish fast path checks that)
        self.service_imports: SubjectTrie[ServiceImportSub] | None = None
        self.is_system = False

    def __repr__(self) -> str:
        return f"<Account {self.name}>"

    @property
    def max_connections(self) -> int:
        return self.opts.max_connections

    @property
    def max_subscriptions(self) -> int:
        return self.opts.max_subscriptions

    @property
    def max_payload(self) -> int:
        return self.opts.max_payload

    def num_subscriptions(self) -> int:
        """Client subscriptions (internal import subscriptions are not counted)."""
        return sum(len(c.subs) for c in self.clients)


class _InternalClient:
    """What ``deliver`` sees as the connection of an internal subscription: its ``perms``
    marks it internal, so delivery calls the subscription's ``deliver_internal``."""

    __slots__ = ()
    closed = False
    echo = True
    cid = 0


class _InternalMark:
    """Stands where a connection's permissions are: ``deliver`` hands the message to the
    subscription instead of writing it to a connection."""

    internal = True
    deliver_deny = None
    responses = None

    @staticmethod
    def can_deliver(subject: bytes) -> bool:
        return True


INTERNAL = _InternalClient()
INTERNAL_MARK = _InternalMark()
setattr(_InternalClient, "perms", INTERNAL_MARK)  # noqa: B010 - a class attribute of a slotted class
setattr(_InternalClient, "replies", None)  # noqa: B010


class Publisher(Protocol):
    """The server's publish into one account (local subscribers, and routes unless
    ``local_only``); True when anything received the message."""

    def __call__(
        self, src: Any, acc: Account, subject: bytes, reply: bytes, size_digits: bytes, data: bytes,
        hdr_digits: bytes | None, hdr_len: int, depth: int, local_only: bool,
    ) -> bool: ...


class _InternalSub:
    """An internal subscription: stored in a trie like a client's, delivered by the server."""

    __slots__ = ("subject", "queue", "sid", "delivered", "max_msgs", "client", "sid_sp", "prefix", "hprefix",
                 "registry")

    def __init__(self, registry: AccountRegistry, subject: bytes) -> None:
        self.registry = registry
        self.client = INTERNAL
        self.subject = subject
        self.queue = b""
        self.sid = b""
        self.delivered = 0
        self.max_msgs = 0
        self.sid_sp = b" "
        self.prefix: bytes | None = None
        self.hprefix: bytes | None = None

    def deliver_internal(
        self, src: Any, subject: bytes, reply: bytes, size_digits: bytes, data: bytes, hdr_digits: bytes | None,
        hdr_len: int, depth: int,
    ) -> bool:
        raise NotImplementedError


class StreamImportSub(_InternalSub):
    """Account ``target`` imports the stream ``subject`` of the account whose trie holds this."""

    __slots__ = ("target", "prefix_b", "to_b")

    def __init__(
        self, registry: AccountRegistry, subject: bytes, target: Account, prefix: str, to: str
    ) -> None:
        super().__init__(registry, subject)
        self.target = target
        self.prefix_b = prefix.encode()
        self.to_b = to.encode()

    def deliver_internal(
        self, src: Any, subject: bytes, reply: bytes, size_digits: bytes, data: bytes, hdr_digits: bytes | None,
        hdr_len: int, depth: int,
    ) -> bool:
        if self.prefix_b:
            new = self.prefix_b + b"." + subject
        elif self.to_b:
            new = map_subject(subject, self.subject, self.to_b)
        else:
            new = subject
        return self.registry.publish(src, self.target, new, reply, size_digits, data, hdr_digits, hdr_len,
                                     depth + 1, local_only=True)


class ServiceImportSub(_InternalSub):
    """Account ``importer`` (whose trie holds this, on ``to``) imports service ``subject`` of
    ``exporter``."""

    __slots__ = ("importer", "exporter", "to_subject", "response")

    def __init__(self, registry: AccountRegistry, to: bytes, importer: Account, exporter: Account, subject: bytes,
                 response: str) -> None:
        super().__init__(registry, to)
        self.importer = importer
        self.exporter = exporter
        self.to_subject = subject
        self.response = response

    def deliver_internal(
        self, src: Any, subject: bytes, reply: bytes, size_digits: bytes, data: bytes, hdr_digits: bytes | None,
        hdr_len: int, depth: int,
    ) -> bool:
        new = map_subject(subject, self.subject, self.to_subject)
        new_reply = b""
        if reply:
            new_reply = self.registry.add_response(self.exporter, self.importer, reply, self.response)
        return self.registry.publish(src, self.exporter, new, new_reply, size_digits, data, hdr_digits, hdr_len,
                                     depth + 1, local_only=False)


class ResponseSub(_InternalSub):
    """A mapped reply subject in the exporter's account: answers go back to the requester's
    account on its own reply subject."""

    __slots__ = ("owner", "target", "reply", "singleton", "expires")

    def __init__(self, registry: AccountRegistry, subject: bytes, owner: Account, target: Account, reply: bytes,
                 singleton: bool) -> None:
        super().__init__(registry, subject)
        self.owner = owner
        self.target = target
        self.reply = reply
        self.singleton = singleton
        self.expires = time.monotonic() + RESPONSE_THRESHOLD

    def deliver_internal(
        self, src: Any, subject: bytes, reply: bytes, size_digits: bytes, data: bytes, hdr_digits: bytes | None,
        hdr_len: int, depth: int,
    ) -> bool:
        if self.singleton or time.monotonic() > self.expires:
            self.registry.remove_response(self)
        return self.registry.publish(src, self.target, self.reply, reply, size_digits, data, hdr_digits, hdr_len,
                                     depth + 1, local_only=False)


class AccountRegistry:
    """The server's accounts, by name, and the import wiring between them."""

    def __init__(self, publish: Publisher, make_trie: Callable[[Account], SubjectTrie[Any]] | None = None) -> None:
        self._publish = publish
        self.make_trie = make_trie
        self.accounts: dict[str, Account] = {}
        self.system: Account | None = None
        self.limits_changed: list[Account] = []  # by the last configure()
        self.gacc = self._add(GLOBAL_ACCOUNT, None)

    def _add(self, name: str, opts: AccountOptions | None) -> Account:
        acc = Account(name, opts)
        if self.make_trie is not None:
            acc.sublist = self.make_trie(acc)
        self.accounts[name] = acc
        return acc

    def get(self, name: str) -> Account | None:
        return self.accounts.get(name)

    def __iter__(self) -> Iterator[str]:
        """Account names, in the order they were configured ($G first)."""
        return iter(list(self.accounts))

    def __len__(self) -> int:
        return len(self.accounts)

    def names(self) -> list[str]:
        return list(self.accounts)

    def set_trie_factory(self, make_trie: Callable[[Account], SubjectTrie[Any]]) -> None:
        """Clustering: every account's trie reports interest changes (accounts have no
        subscriptions yet when this is called)."""
        self.make_trie = make_trie
        for acc in self.accounts.values():
            old = acc.sublist
            acc.sublist = make_trie(acc)
            for subject, queue, item in list(old.entries()):
                acc.sublist.insert(subject, queue, item)

    # -- configuration ---------------------------------------------------------------------------

    def configure(self, opts: ServerOptions) -> list[Account]:
        """Create, update and drop accounts to match ``opts``; rewire every import. Returns the
        accounts that were dropped (their connections are closed by the caller)."""
        wanted: dict[str, AccountOptions | None] = {a.name: a for a in opts.accounts}
        if opts.system_account and opts.system_account not in wanted:
            wanted[opts.system_account] = None
        dropped = [a for n, a in self.accounts.items() if n != GLOBAL_ACCOUNT and n not in wanted]
        for acc in dropped:
            self._unwire(acc)
            del self.accounts[acc.name]
        self.limits_changed = []
        for name, aopts in wanted.items():
            have = self.accounts.get(name)
            if have is None:
                self._add(name, aopts)
            else:
                new = aopts or AccountOptions(name=name)
                if _limits(new) != _limits(have.opts):
                    self.limits_changed.append(have)
                have.opts = new
        for acc in self.accounts.values():
            acc.is_system = acc.name == opts.system_account
        self.system = self.accounts.get(opts.system_account) if opts.system_account else None
        self._wire()
        return dropped

    def _unwire(self, acc: Account) -> None:
        for holder, subject, item in acc.import_subs:
            holder.sublist.remove(subject, b"", item)
        acc.import_subs = []
        acc.service_imports = None
        for rs in list(acc.responses.values()):
            self.remove_response(rs)

    def _wire(self) -> None:
        for acc in self.accounts.values():
            self._unwire(acc)
        for acc in self.accounts.values():
            for si in acc.opts.stream_imports:
                exporter = self.accounts.get(si.account)
                if exporter is None:
                    continue
                subject = si.subject.encode()
                sub = StreamImportSub(self, subject, acc, si.prefix, si.to)
                exporter.sublist.insert(subject, b"", sub)
                acc.import_subs.append((exporter, subject, sub))
            for vi in acc.opts.service_imports:
                exporter = self.accounts.get(vi.account)
                if exporter is None:
                    continue
                response = "singleton"
                for e in exporter.opts.service_exports:
                    if e.subject == vi.subject or _covers(e.subject, vi.subject):
                        response = e.response
                        break
                to = (vi.to or vi.subject).encode()
                vsub = ServiceImportSub(self, to, acc, exporter, vi.subject.encode(), response)
                if acc.service_imports is None:
                    acc.service_imports = SubjectTrie()
                acc.service_imports.insert(to, b"", vsub)

    # -- service responses -----------------------------------------------------------------------

    def add_response(self, exporter: Account, importer: Account, reply: bytes, response: str) -> bytes:
        # expired stream responses go when new ones come (no timer per request)
        now = time.monotonic()
        if exporter.responses and len(exporter.responses) % 64 == 0:
            for rs in [r for r in exporter.responses.values() if r.expires < now]:
                self.remove_response(rs)
        subject = RESPONSE_PREFIX + _rand_token(10) + b"." + _rand_token(6)
        rs = ResponseSub(self, subject, exporter, importer, reply, response == "singleton")
        exporter.responses[subject] = rs
        exporter.sublist.insert(subject, b"", rs)
        return subject

    def remove_response(self, rs: ResponseSub) -> None:
        if rs.owner.responses.pop(rs.subject, None) is not None:
            rs.owner.sublist.remove(rs.subject, b"", rs)

    # -- delivery --------------------------------------------------------------------------------

    def publish(
        self, src: Any, acc: Account, subject: bytes, reply: bytes, size_digits: bytes, data: bytes,
        hdr_digits: bytes | None, hdr_len: int, depth: int, *, local_only: bool,
    ) -> bool:
        if depth > MAX_IMPORT_DEPTH:
            return False
        return self._publish(src, acc, subject, reply, size_digits, data, hdr_digits, hdr_len, depth, local_only)


def map_subject(subject: bytes, src: bytes, dst: bytes) -> bytes:
    """``subject`` (matched by pattern ``src``) as pattern ``dst`` names it: ``dst``'s
    wildcards take, in order, the tokens ``src``'s wildcards matched (``>`` the rest)."""
    if src == dst:
        return subject
    if not subject_has_wildcard(dst):
        return dst
    toks = subject.split(b".")
    caught: list[bytes] = []
    rest = b""
    for i, p in enumerate(src.split(b".")):
        if p == b">":
            rest = b".".join(toks[i:])
            break
        if p == b"*" and i < len(toks):
            caught.append(toks[i])
    out: list[bytes] = []
    k = 0
    for p in dst.split(b"."):
        if p == b"*":
            out.append(caught[k] if k < len(caught) else p)
            k += 1
        elif p == b">":
            out.append(rest or p)
        else:
            out.append(p)
    return b".".join(out)


def _limits(o: AccountOptions) -> tuple[int, int, int]:
    return (o.max_connections, o.max_subscriptions, o.max_payload)


def _covers(pattern: str, subject: str) -> bool:
    return subject_is_subset(subject.encode(), pattern.encode())
