"""Sans-IO pieces of pynatsd.cluster.routes: route URLs and the interest-reporting trie."""

from __future__ import annotations

import pytest

from pynatsd.cluster.routes import RouteURL, parse_route_url


@pytest.mark.parametrize(
    "text, expected",
    [
        ("nats-route://127.0.0.1:6222", RouteURL("127.0.0.1", 6222)),
        ("nats://host.example:7000", RouteURL("host.example", 7000)),
        ("nats-route://ruser:s3cret@10.0.0.1:4248", RouteURL("10.0.0.1", 4248, "ruser", "s3cret")),
        ("nats-route://u%40x:p%3Aw@h:1", RouteURL("h", 1, "u@x", "p:w")),
        ("localhost:5222", RouteURL("localhost", 5222)),
        ("nats-route://[::1]:6222", RouteURL("::1", 6222)),
        ("nats-route://h", RouteURL("h", 6222)),
    ],
)
def test_parse_route_url(text: str, expected: RouteURL) -> None:
    assert parse_route_url(text) == expected


def test_route_url_redacts_password() -> None:
    u = parse_route_url("nats-route://ruser:s3cret@h:1")
    assert str(u) == "nats-route://ruser:xxxxx@h:1"
    assert parse_route_url("nats-route://[::1]:2").hostport == "[::1]:2"


def test_interest_trie_reports_real_changes_only() -> None:
    from pynatsd.cluster.routes import InterestTrie

    class Manager:
        def __init__(self) -> None:
            self.events: list[tuple[str, bytes, bytes]] = []
            self.accounts: list[bytes] = []

        def local_interest_added(self, subject: bytes, queue: bytes, account: bytes) -> None:
            self.events.append(("+", subject, queue))
            self.accounts.append(account)

        def local_interest_removed(self, subject: bytes, queue: bytes, account: bytes) -> None:
            self.events.append(("-", subject, queue))
            self.accounts.append(account)

    m = Manager()
    t = InterestTrie(m)  # type: ignore[arg-type]
    a, b = object(), object()
    t.insert(b"foo", b"", a)
    t.insert(b"foo", b"", a)  # the same item again: no new interest
    t.insert(b"foo", b"q", b)
    assert t.remove(b"foo", b"", a)
    assert not t.remove(b"foo", b"", a)
    assert m.events == [("+", b"foo", b""), ("+", b"foo", b"q"), ("-", b"foo", b"")]
    assert t.match(b"foo").queues == [[b]]
    assert m.accounts == [b"$G"] * 3
    # (accounts) another account's trie reports its account name
    InterestTrie(m, b"A").insert(b"bar", b"", a)  # type: ignore[arg-type]
    assert m.accounts[-1] == b"A" and m.events[-1] == ("+", b"bar", b"")
