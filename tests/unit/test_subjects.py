"""Unit tests for pynatsd.subjects: validation, the subscription trie and permission filters."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pynatsd.subjects import (
    CACHE_MAX,
    CACHE_SWEEP,
    SubjectFilter,
    SubjectTrie,
    num_tokens,
    split_subject_queue,
    subject_has_wildcard,
    subject_matches,
    subjects_collide,
    valid_publish_subject,
    valid_subscribe_subject,
)

# --- validation (spec §2.1) --------------------------------------------------------------------


@pytest.mark.parametrize(
    "subject, ok",
    [
        (b"foo", True),
        (b"foo.bar", True),
        (b">", True),
        (b"*", True),
        (b"foo.*", True),
        (b"foo.*.bar.>", True),
        (b"foo*bar.>", True),
        (b"foo>.bar", True),  # '>' inside a token is literal
        (b"\xe2\x82\xac.\x00", True),  # any non-blank bytes
        (b"foo.", False),
        (b".foo", False),
        (b"foo..bar", False),
        (b"foo.>.bar", False),
        (b">.foo", False),
        (b"", False),
        (b".", False),
        (b"foo\x0cbar", True),  # observed: nats-server's SUB accepts a form feed
        (b"foo.\x0c", True),
        (b"foo.>.>", False),
    ],
)
def test_valid_subscribe_subject(subject: bytes, ok: bool) -> None:
    assert valid_subscribe_subject(subject) is ok


@pytest.mark.parametrize(
    "subject, ok",
    [
        (b"foo", True),
        (b"foo.bar.baz", True),
        (b"foo*bar", True),
        (b"a>b.c", True),
        (b"foo.*", False),
        (b"*", False),
        (b">", False),
        (b"foo.>", False),
        (b"foo.", False),
        (b".foo", False),
        (b"foo..bar", False),
        (b"", False),
    ],
)
def test_valid_publish_subject(subject: bytes, ok: bool) -> None:
    assert valid_publish_subject(subject) is ok


def test_wildcards_and_tokens() -> None:
    assert subject_has_wildcard(b"foo.*")
    assert subject_has_wildcard(b">")
    assert subject_has_wildcard(b"a.*.b")
    assert not subject_has_wildcard(b"foo*.bar")
    assert not subject_has_wildcard(b"foo.b>")
    assert not subject_has_wildcard(b"foo")
    assert num_tokens(b"") == 0
    assert num_tokens(b"a") == 1
    assert num_tokens(b"a.b.c") == 3
    assert num_tokens(b"a..") == 3


# --- matching (spec §2.2) ----------------------------------------------------------------------


def _subjects(result_items: list[tuple[bytes, bytes]]) -> list[bytes]:
    return [s for s, _ in result_items]


def test_basic_matching() -> None:
    t: SubjectTrie[str] = SubjectTrie()
    for s in ["foo", "foo.bar", "foo.*", "foo.>", ">", "*.bar", "foo.bar.baz", "*"]:
        t.insert(s.encode(), b"", s)
    assert sorted(t.match(b"foo").plain) == sorted(["foo", ">", "*"])
    assert sorted(t.match(b"foo.bar").plain) == sorted(["foo.bar", "foo.*", "foo.>", ">", "*.bar"])
    assert sorted(t.match(b"foo.bar.baz").plain) == sorted(["foo.bar.baz", "foo.>", ">"])
    assert sorted(t.match(b"x.y.z").plain) == [">"]
    assert t.count() == 8


def test_result_order_follows_nats_server_walk() -> None:
    # At each level: '>' node, then everything under '*', then the literal token; at the end
    # the literal node before the '*' node.
    t: SubjectTrie[str] = SubjectTrie()
    for s in ["foo.bar", "foo.*", "*.bar", "foo.>", ">"]:
        t.insert(s.encode(), b"", s)
    assert t.match(b"foo.bar").plain == [">", "*.bar", "foo.>", "foo.bar", "foo.*"]


def test_full_wildcard_needs_at_least_one_token() -> None:
    t: SubjectTrie[str] = SubjectTrie()
    t.insert(b"foo.>", b"", "x")
    assert not t.match(b"foo")
    assert t.match(b"foo.a").plain == ["x"]
    assert t.match(b"foo.a.b.c").plain == ["x"]


def test_published_wildcard_tokens_are_literal() -> None:
    t: SubjectTrie[str] = SubjectTrie()
    for s in ["foo.*", "foo.>", ">", "foo.bar"]:
        t.insert(s.encode(), b"", s)
    assert sorted(t.match(b"foo.*").plain) == sorted(["foo.*", "foo.>", ">"])
    assert sorted(t.match(b"foo.>").plain) == sorted(["foo.*", "foo.>", ">"])


def test_empty_token_matches_nothing() -> None:
    t: SubjectTrie[str] = SubjectTrie()
    t.insert(b">", b"", "all")
    t.insert(b"foo.>", b"", "foo")
    for s in (b"foo..bar", b".foo", b"foo.", b"", b"."):
        assert not t.match(s)
        assert not t.has_match(s)
    assert t.has_match(b"foo.bar")


def test_subjects_case_sensitive() -> None:
    t: SubjectTrie[str] = SubjectTrie()
    t.insert(b"Foo", b"", "x")
    assert not t.match(b"foo")
    assert t.match(b"Foo").plain == ["x"]


def test_insert_rejects_invalid() -> None:
    t: SubjectTrie[str] = SubjectTrie()
    for s in (b"", b"foo.", b"a..b", b"foo.>.bar"):
        with pytest.raises(ValueError):
            t.insert(s, b"", "x")
    assert t.count() == 0


def test_duplicate_insert_stored_once() -> None:
    t: SubjectTrie[str] = SubjectTrie()
    t.insert(b"foo", b"", "x")
    t.insert(b"foo", b"", "x")
    assert t.count() == 1
    assert t.match(b"foo").plain == ["x"]


# --- queue groups (spec §2.3) ------------------------------------------------------------------


def test_queue_grouping_by_name_across_subjects() -> None:
    t: SubjectTrie[str] = SubjectTrie()
    t.insert(b"foo.bar", b"q1", "a")
    t.insert(b"foo.*", b"q1", "b")
    t.insert(b"foo.>", b"q2", "c")
    t.insert(b"foo.bar", b"q2", "d")
    t.insert(b"foo.bar", b"", "p")
    r = t.match(b"foo.bar")
    assert r.plain == ["p"]
    groups = dict(zip(r.queue_names, r.queues, strict=True))
    assert sorted(groups) == [b"q1", b"q2"]
    assert sorted(groups[b"q1"]) == ["a", "b"]
    assert sorted(groups[b"q2"]) == ["c", "d"]
    assert len(r) == 3  # fan-out: 1 plain + 2 groups


def test_queue_names_case_sensitive() -> None:
    t: SubjectTrie[str] = SubjectTrie()
    t.insert(b"foo", b"Q", "a")
    t.insert(b"foo", b"q", "b")
    assert len(t.match(b"foo").queues) == 2


def test_remove_queue_member() -> None:
    t: SubjectTrie[str] = SubjectTrie()
    t.insert(b"foo", b"q", "a")
    t.insert(b"foo", b"q", "b")
    assert t.remove(b"foo", b"q", "a")
    assert t.match(b"foo").queues == [["b"]]
    assert not t.remove(b"foo", b"q", "a")
    assert not t.remove(b"foo", b"", "b")  # plain vs queue are distinct
    assert t.remove(b"foo", b"q", "b")
    assert not t.match(b"foo")
    assert t.count() == 0


# --- removal and pruning -----------------------------------------------------------------------


def test_remove_prunes_and_reports() -> None:
    t: SubjectTrie[str] = SubjectTrie()
    t.insert(b"a.b.c", b"", "x")
    t.insert(b"a.*", b"", "y")
    assert not t.remove(b"a.b", b"", "x")
    assert not t.remove(b"a.b.c.d", b"", "x")
    assert not t.remove(b"a.b.c", b"", "z")
    assert not t.remove(b"zzz", b"", "x")
    assert t.remove(b"a.b.c", b"", "x")
    assert t._root.nodes[b"a"].next is not None
    assert b"b" not in t._root.nodes[b"a"].next.nodes  # pruned
    assert t.remove(b"a.*", b"", "y")
    assert t._root.is_empty()
    assert t.count() == 0
    assert (t.inserts, t.removes) == (2, 2)


# --- cache -------------------------------------------------------------------------------------


def test_cache_hits_and_invalidation_literal() -> None:
    t: SubjectTrie[str] = SubjectTrie()
    t.insert(b"foo", b"", "a")
    t.insert(b"bar", b"", "b")
    assert t.match(b"foo").plain == ["a"]
    assert t.match(b"bar").plain == ["b"]
    assert t.match(b"foo").plain == ["a"]
    assert t.cache_hits == 1
    assert t.cache_count() == 2
    t.insert(b"foo", b"", "c")  # literal change: only "foo" dropped from the cache
    assert t.cache_count() == 1
    assert t.match(b"foo").plain == ["a", "c"]
    t.remove(b"foo", b"", "a")
    assert t.match(b"foo").plain == ["c"]
    assert t.match(b"bar").plain == ["b"]


def test_cache_invalidation_wildcard_and_empty_results() -> None:
    t: SubjectTrie[str] = SubjectTrie()
    assert not t.match(b"foo.bar")  # empty result cached too
    t.insert(b"foo.*", b"", "w")
    assert t.match(b"foo.bar").plain == ["w"]
    t.insert(b">", b"", "all")
    assert t.match(b"foo.bar").plain == ["all", "w"]
    t.remove(b"foo.*", b"", "w")
    assert t.match(b"foo.bar").plain == ["all"]
    t.insert(b"foo.bar", b"q", "qq")
    assert t.match(b"foo.bar").queues == [["qq"]]


def test_cache_is_bounded() -> None:
    t: SubjectTrie[str] = SubjectTrie()
    t.insert(b">", b"", "all")
    for i in range(CACHE_MAX + 1):
        t.match(b"s.%d" % i)
    assert t.cache_count() == CACHE_SWEEP
    # Newest entries survive.
    hits = t.cache_hits
    t.match(b"s.%d" % CACHE_MAX)
    assert t.cache_hits == hits + 1
    assert t.match(b"s.0").plain == ["all"]


def test_stats() -> None:
    t: SubjectTrie[str] = SubjectTrie()
    t.insert(b"foo", b"", "a")
    t.insert(b"foo", b"q", "b")
    t.insert(b"bar", b"", "c")
    t.match(b"foo")
    t.match(b"foo")
    t.match(b"bar")
    st_ = t.stats()
    assert st_.num_subscriptions == 3
    assert st_.num_cache == 2
    assert st_.num_inserts == 3
    assert st_.num_matches == 3
    assert st_.cache_hit_rate == pytest.approx(1 / 3)
    assert st_.max_fanout == 2
    assert st_.avg_fanout == pytest.approx(1.5)


def test_entries_lists_everything() -> None:
    t: SubjectTrie[str] = SubjectTrie()
    want = {(b"a.b", b"", "1"), (b"a.*", b"q", "2"), (b">", b"", "3"), (b"a", b"", "4"), (b"a.>", b"", "5")}
    for s, q, i in want:
        t.insert(s, q, i)
    assert set(t.entries()) == want


# --- brute-force comparison --------------------------------------------------------------------

_tok = st.sampled_from([b"a", b"b", b"c", b"*", b">"])
_lit_tok = st.sampled_from([b"a", b"b", b"c", b"*", b">", b""])


@st.composite
def _sub_subject(draw: st.DrawFn) -> bytes:
    toks = draw(st.lists(_tok, min_size=1, max_size=4))
    toks = [t for t in toks[:-1] if t != b">"] + toks[-1:]
    return b".".join(toks or [b"a"])


_ops = st.lists(
    st.tuples(
        st.booleans(),  # insert (True) or remove
        _sub_subject(),
        st.sampled_from([b"", b"", b"q1", b"q2"]),
        st.integers(0, 5),
    ),
    max_size=40,
)


@settings(max_examples=300)
@given(_ops, st.lists(st.lists(_lit_tok, min_size=1, max_size=4).map(b".".join), min_size=1, max_size=10))
def test_trie_matches_brute_force(ops: list[tuple[bool, bytes, bytes, int]], pubs: list[bytes]) -> None:
    t: SubjectTrie[int] = SubjectTrie()
    model: set[tuple[bytes, bytes, int]] = set()
    for k, (ins, subj, q, item) in enumerate(ops):
        if ins:
            t.insert(subj, q, item)
            model.add((subj, q, item))
        else:
            assert t.remove(subj, q, item) == ((subj, q, item) in model)
            model.discard((subj, q, item))
        assert t.count() == len(model)
        # Interleave matches with changes so stale cache entries would show.
        for p in pubs[: 1 + k % 3]:
            _check(t, model, p)
    for p in pubs:
        _check(t, model, p)
        _check(t, model, p)
    assert set(t.entries()) == model


def _check(t: SubjectTrie[int], model: set[tuple[bytes, bytes, int]], pub: bytes) -> None:
    r = t.match(pub)
    want_plain = sorted(i for s, q, i in model if not q and subject_matches(pub, s))
    assert sorted(r.plain) == want_plain
    want_q: dict[bytes, list[int]] = {}
    for s, q, i in model:
        if q and subject_matches(pub, s):
            want_q.setdefault(q, []).append(i)
    got_q = {name: sorted(members) for name, members in zip(r.queue_names, r.queues, strict=True)}
    assert got_q == {k: sorted(v) for k, v in want_q.items()}
    assert len(r.queue_names) == len(set(r.queue_names))
    assert t.has_match(pub) == bool(want_plain or want_q)


def test_subject_matches_reference() -> None:
    assert subject_matches(b"foo.bar", b"foo.*")
    assert subject_matches(b"foo.bar", b">")
    assert subject_matches(b"foo.bar.baz", b"foo.>")
    assert not subject_matches(b"foo", b"foo.>")
    assert not subject_matches(b"foo.bar", b"foo")
    assert not subject_matches(b"foo", b"foo.bar")
    assert not subject_matches(b"foo..bar", b">")
    assert subject_matches(b"foo.*", b"foo.*")
    assert not subject_matches(b"foo.*", b"foo.bar")


@pytest.mark.parametrize(
    "a, b, want",
    [
        (b"foo.bar", b"foo.bar", True),
        (b"foo.bar", b"foo.baz", False),
        (b"foo.*", b"foo.bar", True),
        (b"foo.*", b"*.bar", True),
        (b"foo.*", b"bar.*", False),
        (b"foo.>", b"foo.bar.baz", True),
        (b"foo.*", b"foo.bar.baz", False),
        (b"foo.>", b"*.*.*", True),
        (b"*", b"a.b", False),
        (b">", b"a.b.c", True),
        (b"a.*.c", b"a.b.>", True),
        (b"a.*.c", b"a.b.d", False),
    ],
)
def test_subjects_collide(a: bytes, b: bytes, want: bool) -> None:
    assert subjects_collide(a, b) is want
    assert subjects_collide(b, a) is want


# --- permission filters ------------------------------------------------------------------------


def test_filter_allow_none_allows_all_and_deny_wins() -> None:
    f = SubjectFilter(None, ["secret.>"])
    assert f.permits(b"foo")
    assert f.permits(b"secret")
    assert not f.permits(b"secret.x")
    f = SubjectFilter(["foo.>", "bar"], ["foo.secret"])
    assert f.permits(b"foo.a")
    assert f.permits(b"bar")
    assert not f.permits(b"foo.secret")  # deny wins
    assert not f.permits(b"baz")
    assert SubjectFilter(None).allows_all
    assert not SubjectFilter([]).permits(b"foo")  # an empty allow list allows nothing


def test_filter_wildcard_subscription_subjects() -> None:
    f = SubjectFilter(["foo.*"], [])
    assert f.permits(b"foo.*")
    assert f.permits(b"foo.bar")
    assert f.permits(b"foo.>")  # '*' entry meets the '>' token as one token, as nats-server does
    assert not f.permits(b"foo.bar.baz")
    f = SubjectFilter(["foo.bar"], [])
    assert not f.permits(b"foo.*")
    f = SubjectFilter(None, ["foo.bar"])
    assert f.permits(b"foo.*")  # wildcard sub over a denied literal is allowed at SUB time
    assert f.collides(b"foo.*")
    assert not f.collides(b"bar.*")


def test_filter_queue_entries() -> None:
    f = SubjectFilter(["foo q1", "bar"], ["bar badq"])
    assert f.permits(b"foo", b"q1")
    assert not f.permits(b"foo", b"q2")
    assert not f.permits(b"foo")  # only the queue form is allowed on foo
    assert f.permits(b"bar")
    assert f.permits(b"bar", b"goodq")
    assert not f.permits(b"bar", b"badq")
    f = SubjectFilter(["foo v1.*"], [])
    assert f.permits(b"foo", b"v1.a")
    assert f.permits(b"foo", b"v1.*")
    assert not f.permits(b"foo", b"v2.a")
    assert not f.permits(b"foo", b"v1.>")


def test_filter_cache_and_invalid_entries() -> None:
    f = SubjectFilter(["ok", "bad..subject", "a b c", ""], ["x y z"])
    assert f.invalid == ["bad..subject", "a b c", "", "x y z"]
    assert f.permits(b"ok")
    assert f.permits(b"ok")
    assert f._cache[(b"ok", b"")] is True
    for i in range(3000):
        f.permits(b"n.%d" % i)
    assert len(f._cache) <= 1024


def test_split_subject_queue() -> None:
    assert split_subject_queue("foo") == (b"foo", b"")
    assert split_subject_queue("  foo.* q ") == (b"foo.*", b"q")
    assert split_subject_queue("a b c") is None
    assert split_subject_queue("foo..bar") is None
    assert split_subject_queue("") is None
