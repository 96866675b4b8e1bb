"""Helpers of the mixed pynatsd/nats-server cluster, gateway and leaf node tests
(tests/interop/test_cluster_tls_scenarios.py, test_gateway_tls_identity.py,
test_gateway_discovery.py): the processes and clients a test starts (``Procs`` and the ``procs``
fixture, ``procs_fixture``, which stops them all), configuration snippets, the monitoring endpoints, log lines, and
waiting for state that lives in another process.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from tests.helpers.certs import Issued
from tests.helpers.servers import ServerProcess

HOST = "127.0.0.1"
OTHER = {"nats": "pynatsd", "pynatsd": "nats"}
BOTH = ["pynatsd", "nats"]  # the implementation in the role under test; the peer is the other


class Procs:
    """Every process and client a test starts, stopped at its end (by the ``procs`` fixture)."""

    def __init__(self) -> None:
        self.procs: list[ServerProcess] = []
        self.clients: list[NATS] = []

    def start(self, impl: str, conf: str, flags: Sequence[str] = ()) -> ServerProcess:
        p = ServerProcess(impl, conf, flags)
        self.procs.append(p)
        return p.start()

    async def client(self, p: ServerProcess, **kw: Any) -> NATS:
        nc = await nats.connect(p.url, allow_reconnect=False, **kw)
        self.clients.append(nc)
        return nc


@pytest.fixture(name="procs")
async def procs_fixture() -> AsyncIterator[Procs]:
    """Import it (``procs_fixture``) into a test module to have the ``procs`` fixture there."""
    ps = Procs()
    try:
        yield ps
    finally:
        for nc in ps.clients:
            if not nc.is_closed:
                await nc.close()
        for p in ps.procs:
            p.cleanup()


def tls_block(c: Issued, ca: str, extra: str = "") -> str:
    return f'tls {{ cert_file: "{c.cert_file}", key_file: "{c.key_file}", ca_file: "{ca}", timeout: 2{extra} }}'


def gw_conf(gw: str, port: int, http: int, tls: str, remotes: dict[str, str], extra: str = "") -> str:
    """A server of cluster (gateway) ``gw`` named ``<gw>1``; ``remotes``: gateway name -> URL."""
    gws = ", ".join(f'{{ name: {n}, url: "{u}" }}' for n, u in remotes.items())
    return (
        f"server_name: {gw}1\nhttp: {http}\n"
        f'gateway {{ name: {gw}, listen: "{HOST}:{port}"\n {tls}\n {extra}\n gateways: [ {gws} ] }}\n'
    )


def mon(http: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://{HOST}:{http}{path}", timeout=5) as r:  # noqa: S310 - loopback
        return json.loads(r.read())


async def wait_until(cond: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll ``cond`` (another process's state: no event to await) until true or the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if cond():
                return
        except OSError:  # a monitor port not listening yet
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def logs(p: ServerProcess) -> str:
    return p.stdout() + p.stderr()


def conn_lines(p: ServerProcess, tag: str) -> list[str]:
    """The texts of the per-connection log lines (``... - rid:3 - <text>``) of one kind."""
    out = []
    for line in logs(p).splitlines():
        m = re.search(rf" - {tag}:\d+ - (.*)$", line)
        if m:
            out.append(m.group(1).rstrip())
    return out


async def until_delivered(pub: NATS, subject: str, sub: Any, timeout: float = 10.0) -> Msg:
    """Publish until ``sub`` receives it (interest crosses servers asynchronously); messages on
    other subjects still queued on ``sub`` are skipped."""
    deadline = time.monotonic() + timeout
    while True:
        await pub.publish(subject, b"probe")
        await pub.flush()
        try:
            while True:
                m: Msg = await sub.next_msg(timeout=0.2)
                if m.subject == subject:
                    return m
        except nats.errors.TimeoutError:
            if time.monotonic() > deadline:
                raise AssertionError(f"{subject} never crossed") from None
