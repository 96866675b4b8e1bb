"""Subjects: validation, the subscription trie (wildcards, queue groups, match cache) and
permission filters.

Rules follow nats-server (spec §2): tokens are split on '.', every token must be non-empty,
a token that is exactly '*' matches one token, one that is exactly '>' matches one or more
trailing tokens and must come last. '*' or '>' inside a longer token is an ordinary
character. A published subject is matched token by token; a '*' or '>' token in it (possible
when pedantic is off) only meets wildcard subscriptions, as a literal token would, and a
published subject with an empty token matches nothing.

`SubjectTrie.match()` returns results in nats-server's traversal order (at each level: the
'>' node, then everything under '*', then the literal token), and groups queue subscribers by
queue name across the whole result. Results are cached per published subject; a returned
`MatchResult` is shared and must not be mutated.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Generic, TypeVar

T = TypeVar("T")

PWC = b"*"
FWC = b">"
_SEP = b"."

# Match cache bounds, as nats-server's sublist: above MAX entries, drop the oldest down to SWEEP.
CACHE_MAX = 1024
CACHE_SWEEP = 256

# --- validation ------------------------------------------------------------------------------


def valid_subscribe_subject(s: bytes) -> bool:
    """A subject a client may subscribe to: non-empty tokens, '>' only as the last token.

    This is what nats-server's sublist insert checks (the source of 'Invalid Subject'); other
    bytes are not checked (observed: a form feed inside a SUB subject is accepted).
    """
    if not s:
        return False
    tokens = s.split(_SEP)
    if b"" in tokens:
        return False
    i = tokens.index(FWC) if FWC in tokens else -1
    return i < 0 or i == len(tokens) - 1


def valid_publish_subject(s: bytes) -> bool:
    """A valid literal subject (the pedantic PUB check): no empty token, no '*' or '>' token."""
    if not s:
        return False
    for t in s.split(_SEP):
        if not t or t == PWC or t == FWC:
            return False
    return True


def subject_has_wildcard(s: bytes) -> bool:
    """True if some token is exactly '*' or '>'."""
    if b"*" not in s and b">" not in s:
        return False
    for t in s.split(_SEP):
        if t == PWC or t == FWC:
            return True
    return False


def num_tokens(s: bytes) -> int:
    """Number of '.'-separated tokens (0 for the empty subject)."""
    if not s:
        return 0
    return s.count(_SEP) + 1


def subject_matches(subject: bytes, pattern: bytes) -> bool:
    """Whether a published `subject` is matched by subscription `pattern` (no trie, no cache).

    Uses the same rules as the trie: tokens of `subject` are literal; an empty token in it
    matches nothing.
    """
    stoks = subject.split(_SEP)
    if b"" in stoks:
        return False
    ptoks = pattern.split(_SEP)
    ns = len(stoks)
    for i, p in enumerate(ptoks):
        if p == FWC:
            return i < ns
        if i >= ns:
            return False
        if p != PWC and p != stoks[i]:
            return False
    return len(ptoks) == ns


def subject_is_subset(subject: bytes, pattern: bytes) -> bool:
    """Whether every subject ``subject`` (possibly with wildcards) matches is matched by
    ``pattern`` too (an account import must stay inside what the export offers)."""
    stoks = subject.split(_SEP)
    ptoks = pattern.split(_SEP)
    ns = len(stoks)
    for i, p in enumerate(ptoks):
        if i >= ns:
            return False
        t = stoks[i]
        if p == FWC:
            return True
        if t == FWC:
            return False
        if p == PWC:
            continue
        if t != p:
            return False
    return len(ptoks) == ns


def subjects_collide(a: bytes, b: bytes) -> bool:
    """Whether two (possibly wildcard) subjects could both match one literal subject.

    Used to decide if a wildcard subscription can overlap a deny entry.
    """
    if a == b:
        return True
    ta = a.split(_SEP)
    tb = b.split(_SEP)
    if b"" in ta or b"" in tb:
        return False
    fa = FWC in ta
    fb = FWC in tb
    if len(ta) != len(tb):
        # The shorter one must end in '>' to reach the longer one's tokens.
        if (len(ta) < len(tb) and not fa) or (len(tb) < len(ta) and not fb):
            return False
    for x, y in zip(ta, tb, strict=False):
        if x == FWC or y == FWC:
            return True
        if x != PWC and y != PWC and x != y:
            return False
    return True


# --- trie ------------------------------------------------------------------------------------


class _Node(Generic[T]):
    __slots__ = ("next", "plain", "queues")

    def __init__(self) -> None:
        self.next: _Level[T] | None = None
        self.plain: dict[T, None] = {}  # an ordered set
        self.queues: dict[bytes, dict[T, None]] = {}

    def is_empty(self) -> bool:
        return not self.plain and not self.queues and (self.next is None or self.next.is_empty())


class _Level(Generic[T]):
    __slots__ = ("nodes", "pwc", "fwc")

    def __init__(self) -> None:
        self.nodes: dict[bytes, _Node[T]] = {}
        self.pwc: _Node[T] | None = None
        self.fwc: _Node[T] | None = None

    def is_empty(self) -> bool:
        return not self.nodes and self.pwc is None and self.fwc is None


class MatchResult(Generic[T]):
    """Subscriptions matching one published subject.

    plain: every matching non-queue item; queues: one list per queue name, with that group's
    members across every matching subject. Shared between callers: read-only.
    """

    __slots__ = ("plain", "queues", "queue_names")

    def __init__(self, plain: list[T], queues: list[list[T]], queue_names: list[bytes]) -> None:
        self.plain = plain
        self.queues = queues
        self.queue_names = queue_names  # queue_names[i] is the name of queues[i]

    def __bool__(self) -> bool:
        return bool(self.plain) or bool(self.queues)

    def __len__(self) -> int:
        """Fan-out as nats-server counts it: plain items plus queue groups."""
        return len(self.plain) + len(self.queues)

    def __repr__(self) -> str:
        return f"MatchResult(plain={self.plain!r}, queues={dict(zip(self.queue_names, self.queues, strict=True))!r})"


_EMPTY: MatchResult = MatchResult([], [], [])


@dataclass(frozen=True)
class TrieStats:
    """Figures for /subsz, named as nats-server's JSON keys."""

    num_subscriptions: int
    num_cache: int
    num_inserts: int
    num_removes: int
    num_matches: int
    cache_hit_rate: float
    max_fanout: int
    avg_fanout: float


class SubjectTrie(Generic[T]):
    """Subscriptions by subject, with '*'/'>' wildcards, queue groups and a match cache.

    Items must be hashable; the same item under the same (subject, queue) is stored once.
    """

    __slots__ = ("_root", "_count", "_cache", "matches", "cache_hits", "inserts", "removes")

    def __init__(self) -> None:
        self._root: _Level[T] = _Level()
        self._count = 0
        self._cache: dict[bytes, MatchResult[T]] = {}
        self.matches = 0
        self.cache_hits = 0
        self.inserts = 0
        self.removes = 0

    # -- changes --

    def insert(self, subject: bytes, queue: bytes, item: T) -> None:
        """Add `item` under `subject` (queue b"" = plain). ValueError if the subject is invalid."""
        tokens = subject.split(_SEP)
        last = len(tokens) - 1
        level = self._root
        node: _Node[T] | None = None
        for i, t in enumerate(tokens):
            if not t or (t == FWC and i != last):
                raise ValueError(f"invalid subject {subject!r}")
            if t == PWC:
                node = level.pwc
                if node is None:
                    node = level.pwc = _Node()
            elif t == FWC:
                node = level.fwc
                if node is None:
                    node = level.fwc = _Node()
            else:
                node = level.nodes.get(t)
                if node is None:
                    node = level.nodes[t] = _Node()
            if i != last:
                if node.next is None:
                    node.next = _Level()
                level = node.next
        assert node is not None
        if queue:
            members = node.queues.get(queue)
            if members is None:
                members = node.queues[queue] = {}
            target = members
        else:
            target = node.plain
        if item in target:
            return
        target[item] = None
        self._count += 1
        self.inserts += 1
        self._invalidate(subject)

    def remove(self, subject: bytes, queue: bytes, item: T) -> bool:
        """Remove one item; False if it was not there. Empty branches are pruned."""
        tokens = subject.split(_SEP)
        last = len(tokens) - 1
        level: _Level[T] | None = self._root
        path: list[tuple[_Level[T], bytes, _Node[T]]] = []
        node: _Node[T] | None = None
        for i, t in enumerate(tokens):
            if level is None:
                return False
            if t == PWC:
                node = level.pwc
            elif t == FWC:
                node = level.fwc
            else:
                node = level.nodes.get(t)
            if node is None:
                return False
            path.append((level, t, node))
            if i != last:
                level = node.next
        if node is None:
            return False
        if queue:
            members = node.queues.get(queue)
            if members is None or item not in members:
                return False
            del members[item]
            if not members:
                del node.queues[queue]
        else:
            if item not in node.plain:
                return False
            del node.plain[item]
        self._count -= 1
        self.removes += 1
        # Prune from the leaf up while nodes are empty.
        for lvl, t, n in reversed(path):
            if not n.is_empty():
                break
            n.next = None
            if t == PWC:
                lvl.pwc = None
            elif t == FWC:
                lvl.fwc = None
            else:
                del lvl.nodes[t]
        self._invalidate(subject)
        return True

    def _invalidate(self, subject: bytes) -> None:
        # A literal subscription only changes the cached result for that very subject; a
        # wildcard one may change many, so the cache is dropped.
        if not self._cache:
            return
        if subject_has_wildcard(subject):
            self._cache.clear()
        else:
            self._cache.pop(subject, None)

    # -- lookups --

    def match(self, subject: bytes) -> MatchResult[T]:
        self.matches += 1
        r = self._cache.get(subject)
        if r is not None:
            self.cache_hits += 1
            return r
        tokens = subject.split(_SEP)
        if b"" in tokens:
            return _EMPTY
        plain: list[T] = []
        queues: list[list[T]] = []
        names: list[bytes] = []
        _match_level(self._root, tokens, 0, plain, queues, names, {})
        r = MatchResult(plain, queues, names) if plain or queues else _EMPTY
        cache = self._cache
        cache[subject] = r
        if len(cache) > CACHE_MAX:
            for k in list(islice(cache, len(cache) - CACHE_SWEEP)):
                del cache[k]
        return r

    def has_match(self, subject: bytes) -> bool:
        return bool(self.match(subject))

    def count(self) -> int:
        """Number of stored (subject, queue, item) entries."""
        return self._count

    def cache_count(self) -> int:
        return len(self._cache)

    def stats(self) -> TrieStats:
        tot = mx = 0
        for r in self._cache.values():
            f = len(r)
            tot += f
            if f > mx:
                mx = f
        n = len(self._cache)
        return TrieStats(
            num_subscriptions=self._count,
            num_cache=n,
            num_inserts=self.inserts,
            num_removes=self.removes,
            num_matches=self.matches,
            cache_hit_rate=(self.cache_hits / self.matches) if self.matches else 0.0,
            max_fanout=mx,
            avg_fanout=(tot / n) if tot else 0.0,
        )

    def entries(self) -> Iterator[tuple[bytes, bytes, T]]:
        """Every stored (subject, queue, item), for listings and tests."""
        stack: list[tuple[_Level[T], list[bytes]]] = [(self._root, [])]
        while stack:
            level, prefix = stack.pop()
            kids: list[tuple[bytes, _Node[T]]] = list(level.nodes.items())
            if level.pwc is not None:
                kids.append((PWC, level.pwc))
            if level.fwc is not None:
                kids.append((FWC, level.fwc))
            for t, node in kids:
                toks = [*prefix, t]
                subj = _SEP.join(toks)
                for item in node.plain:
                    yield subj, b"", item
                for q, members in node.queues.items():
                    for item in members:
                        yield subj, q, item
                if node.next is not None:
                    stack.append((node.next, toks))


def _add_node(
    node: _Node[T], plain: list[T], queues: list[list[T]], names: list[bytes], slots: dict[bytes, int]
) -> None:
    if node.plain:
        plain.extend(node.plain)
    if node.queues:
        for q, members in node.queues.items():
            i = slots.get(q)
            if i is None:
                slots[q] = len(queues)
                queues.append(list(members))
                names.append(q)
            else:
                queues[i].extend(members)


def _match_level(
    level: _Level[T] | None,
    tokens: list[bytes],
    i: int,
    plain: list[T],
    queues: list[list[T]],
    names: list[bytes],
    slots: dict[bytes, int],
) -> None:
    # Same walk as nats-server's matchLevel, so results come out in the same order.
    node: _Node[T] | None = None
    pwc: _Node[T] | None = None
    n = len(tokens)
    while i < n:
        if level is None:
            return
        if level.fwc is not None:
            _add_node(level.fwc, plain, queues, names, slots)
        pwc = level.pwc
        if pwc is not None:
            _match_level(pwc.next, tokens, i + 1, plain, queues, names, slots)
        node = level.nodes.get(tokens[i])
        level = node.next if node is not None else None
        i += 1
    if node is not None:
        _add_node(node, plain, queues, names, slots)
    if pwc is not None:
        _add_node(pwc, plain, queues, names, slots)


# --- permission filters ----------------------------------------------------------------------

# Decisions cached per filter (keys are client subjects, so the cache is bounded).
FILTER_CACHE_MAX = 1024


def split_subject_queue(entry: str) -> tuple[bytes, bytes] | None:
    """A permission entry "subject" or "subject queue" -> (subject, queue); None if invalid."""
    parts = entry.split()
    if not parts or len(parts) > 2:
        return None
    subject = parts[0].encode()
    queue = parts[1].encode() if len(parts) == 2 else b""
    if not valid_subscribe_subject(subject) or (queue and not valid_subscribe_subject(queue)):
        return None
    return subject, queue


class SubjectFilter:
    """Allow/deny lists of (wildcard) subjects, as nats-server applies permissions.

    allow None means everything is allowed (pass None, not [], when no allow list is set: an
    empty list allows nothing); deny wins over allow. Entries may carry a queue ("subj q"),
    which only matters for subscribe checks with a queue. Invalid entries are skipped and
    listed in `invalid` for the caller to log.

    The subject checked is matched like a published subject, so a wildcard subscription
    "foo.*" is allowed by an entry "foo.*" or "foo.>" but not by "foo.bar", as in nats-server.
    """

    __slots__ = ("allow", "deny", "invalid", "_cache", "allow_entries", "deny_entries")

    def __init__(self, allow: Iterable[str] | None, deny: Iterable[str] = ()) -> None:
        self.invalid: list[str] = []
        self.allow_entries: list[str] | None = None if allow is None else list(allow)
        self.deny_entries: list[str] = list(deny)
        self.allow: SubjectTrie[int] | None = None
        if self.allow_entries is not None:
            self.allow = self._build(self.allow_entries)
        self.deny: SubjectTrie[int] | None = self._build(self.deny_entries) if self.deny_entries else None
        self._cache: dict[tuple[bytes, bytes], bool] = {}

    def _build(self, entries: list[str]) -> SubjectTrie[int]:
        trie: SubjectTrie[int] = SubjectTrie()
        for i, e in enumerate(entries):
            sq = split_subject_queue(e)
            if sq is None:
                self.invalid.append(e)
                continue
            trie.insert(sq[0], sq[1], i)
        return trie

    @property
    def allows_all(self) -> bool:
        return self.allow is None and self.deny is None

    def permits(self, subject: bytes, queue: bytes = b"") -> bool:
        """Whether `subject` (with `queue` for a queue subscription) passes the lists. Cached."""
        key = (subject, queue)
        v = self._cache.get(key)
        if v is not None:
            return v
        v = self._decide(subject, queue)
        if len(self._cache) >= FILTER_CACHE_MAX:
            self._cache.clear()
        self._cache[key] = v
        return v

    def _decide(self, subject: bytes, queue: bytes) -> bool:
        allowed = True
        if self.allow is not None:
            r = self.allow.match(subject)
            allowed = bool(r.plain)
            if queue and r.queues:
                allowed = _queue_listed(queue, r.queue_names)
        if allowed and self.deny is not None:
            r = self.deny.match(subject)
            allowed = not r.plain
            if allowed and queue and r.queues:
                allowed = not _queue_listed(queue, r.queue_names)
        return allowed

    def collides(self, subject: bytes) -> bool:
        """Whether a (wildcard) subject can overlap some deny entry (delivery-time filtering)."""
        for e in self.deny_entries:
            sq = split_subject_queue(e)
            if sq is not None and subjects_collide(sq[0], subject):
                return True
        return False


def _queue_listed(queue: bytes, names: list[bytes]) -> bool:
    # A listed queue name may itself use wildcards ("v1.*" allows queue "v1.a"); a queue that
    # has a '>' token only matches a listed name equal to it.
    for q in names:
        if queue == q:
            return True
        if subject_has_wildcard(q) and FWC not in queue.split(_SEP) and subject_matches(queue, q):
            return True
    return False
