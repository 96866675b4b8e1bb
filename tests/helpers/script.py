"""A tiny script format for differential protocol cases, and its runner.

A script is a list of steps, run in order against one server; clients are named ("a", "b", ...)
and connect on first use (waiting for their INFO line). The result is one normalized transcript
per client (see ``transcript.py``): everything received, ``<EOF>`` if the server closed, and
``<TIMEOUT ...>`` if a wait's deadline passed (the script stops there).

Steps: ``send(data)``, ``sendb(data)`` (one byte per segment), ``wait(pattern)`` (wait until the
bytes occur after the client's read cursor and move past them), ``pong()`` (wait for PONG),
``ping()`` (send PING and wait for its PONG: the usual way to know the server processed
everything sent before), ``lines(n)``, ``eof()``, ``connect()`` and ``close()``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.helpers.rawclient import RawClient, lines_predicate
from tests.helpers.transcript import EOF_MARK, normalize_transcript

DEFAULT_WAIT = 3.0


@dataclass(frozen=True)
class Step:
    op: str  # connect | send | sendb | wait | lines | eof | close
    client: str = "a"
    data: bytes = b""
    n: int = 0
    timeout: float = DEFAULT_WAIT


def connect(client: str = "a") -> Step:
    return Step("connect", client)


def send(data: bytes, client: str = "a") -> Step:
    return Step("send", client, data)


def sendb(data: bytes, client: str = "a") -> Step:
    return Step("sendb", client, data)


def wait(pattern: bytes, client: str = "a", timeout: float = DEFAULT_WAIT) -> Step:
    return Step("wait", client, pattern, timeout=timeout)


def pong(client: str = "a", timeout: float = DEFAULT_WAIT) -> Step:
    return wait(b"PONG\r\n", client, timeout)


def ping(client: str = "a", timeout: float = DEFAULT_WAIT) -> list[Step]:
    return [send(b"PING\r\n", client), pong(client, timeout)]


def lines(n: int, client: str = "a", timeout: float = DEFAULT_WAIT) -> Step:
    return Step("lines", client, n=n, timeout=timeout)


def eof(client: str = "a", timeout: float = DEFAULT_WAIT) -> Step:
    return Step("eof", client, timeout=timeout)


def close(client: str = "a") -> Step:
    return Step("close", client)


StepLike = Step | Sequence["StepLike"]


def flatten(steps: Iterable[StepLike]) -> list[Step]:
    out: list[Step] = []
    for s in steps:
        if isinstance(s, Step):
            out.append(s)
        else:
            out.extend(flatten(s))
    return out


@dataclass
class Case:
    """One differential case: steps plus the expected transcript(s) recorded from nats-server
    (a str for client "a" alone, or a dict per client). ``config`` is conf text or None."""

    id: str
    steps: list[StepLike]
    expect: str | dict[str, str]
    config: str | None = None
    flags: tuple[str, ...] = ()
    notes: str = ""
    marks: list[Any] = field(default_factory=list)

    def expected(self) -> dict[str, str]:
        return {"a": self.expect} if isinstance(self.expect, str) else dict(self.expect)


def run_script(host: str, port: int, steps: Iterable[StepLike]) -> dict[str, str]:
    """Run the steps against the server at host:port; normalized transcript per client."""
    clients: dict[str, RawClient] = {}
    markers: dict[str, str] = {}

    def client(name: str, timeout: float = DEFAULT_WAIT) -> RawClient:
        c = clients.get(name)
        if c is None:
            c = clients[name] = RawClient(host, port, timeout=timeout)
            c.read_line(timeout)  # the INFO line: the server has accepted us
        return c

    try:
        for step in flatten(steps):
            try:
                if step.op == "close":
                    if step.client in clients:
                        clients[step.client].drain()
                        clients[step.client].close()
                    continue
                c = client(step.client)
                if step.op == "send":
                    c.send(step.data)
                elif step.op == "sendb":
                    c.send_bytewise(step.data)
                elif step.op == "wait":
                    c.read_until(step.data, step.timeout)
                elif step.op == "lines":
                    c.read_until(lines_predicate(step.n), step.timeout)
                elif step.op == "eof":
                    c.expect_eof(step.timeout)
            except TimeoutError:
                what = step.data if step.op == "wait" else step.n if step.op == "lines" else ""
                markers[step.client] = f"<TIMEOUT in {step.op}{' ' + repr(what) if what else ''}>"
                break
            except EOFError:
                break  # the transcript ends with <EOF>; later steps would only wait again
        for c in clients.values():
            if c.sock is not None:
                c.drain()
    finally:
        for c in clients.values():
            c.close()
    out: dict[str, str] = {}
    for name, c in clients.items():
        text = normalize_transcript(bytes(c.received))
        if c.eof:
            text += EOF_MARK
        out[name] = text + markers.get(name, "")
    return out


def as_lines(transcripts: dict[str, str]) -> dict[str, list[str]]:
    """Transcripts split into lines (keeping CRLF) for readable pytest diffs."""
    return {k: v.splitlines(keepends=True) for k, v in sorted(transcripts.items())}


def case_params(cases: Sequence[Case]) -> list[object]:
    import pytest

    ids = [c.id for c in cases]
    dupes = {i for i in ids if ids.count(i) > 1}
    assert not dupes, f"duplicate case ids: {dupes}"
    return [pytest.param(c, id=c.id, marks=c.marks) for c in cases]
