"""Shared pytest fixtures: server processes (pynatsd and the real nats-server) and raw clients.

Which implementations the differential fixtures run against is chosen with ``--impl``
(nats | pynatsd | both) or the env var PYNATSD_TEST_IMPL; default both.

Fixtures:
- ``nats_server`` / ``pynatsd_server``: a fresh default-config server of that implementation.
- ``server_factory``: ``server_factory(impl, config=None, flags=())`` starts a server that is
  stopped at the end of the test.
- ``server_pool``: module-scoped pool, ``server_pool.get(impl, config, flags)`` shares one process
  per (impl, config, flags) across a module's tests.
- ``impl``: parametrized over the selected implementations; ``server``: a pooled server of that
  implementation with the config given by ``@pytest.mark.server_config("conf text")``.
- ``raw_client``: ``raw_client(server)`` opens a RawClient (INFO already read), closed at teardown.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence

import pytest

from tests.helpers.rawclient import RawClient
from tests.helpers.servers import IMPLS, ServerPool, ServerProcess

IMPL_ENV = "PYNATSD_TEST_IMPL"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--impl",
        action="store",
        default=None,
        choices=("nats", "pynatsd", "both"),
        help=f"server implementation(s) for differential tests (default: ${IMPL_ENV} or both)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "server_config(text, flags=()): config for the `server` fixture")


def selected_impls(config: pytest.Config) -> list[str]:
    choice = config.getoption("--impl") or os.environ.get(IMPL_ENV) or "both"
    if choice == "both":
        return list(IMPLS)
    if choice not in IMPLS:
        raise pytest.UsageError(f"{IMPL_ENV} must be nats, pynatsd or both, not {choice!r}")
    return [choice]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "impl" in metafunc.fixturenames:
        metafunc.parametrize("impl", selected_impls(metafunc.config), scope="function")


@pytest.fixture(scope="module")
def server_pool() -> Iterator[ServerPool]:
    pool = ServerPool()
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def server(impl: str, server_pool: ServerPool, request: pytest.FixtureRequest) -> ServerProcess:
    marker = request.node.get_closest_marker("server_config")
    config: str | None = None
    flags: Sequence[str] = ()
    if marker is not None:
        config = marker.args[0] if marker.args else marker.kwargs.get("text")
        flags = marker.kwargs.get("flags", ())
    return server_pool.get(impl, config, flags)


@pytest.fixture
def server_factory() -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def start(impl: str, config: str | None = None, flags: Sequence[str] = (), **kw: object) -> ServerProcess:
        srv = ServerProcess(impl, config, flags, **kw)  # type: ignore[arg-type]
        started.append(srv)
        return srv.start()

    try:
        yield start
    finally:
        for srv in started:
            srv.cleanup()


@pytest.fixture
def nats_server(server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    return server_factory("nats")


@pytest.fixture
def pynatsd_server(server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    return server_factory("pynatsd")


@pytest.fixture
def raw_client() -> Iterator[Callable[..., RawClient]]:
    opened: list[RawClient] = []

    def open_client(srv: ServerProcess, *, read_info: bool = True, timeout: float = 3.0) -> RawClient:
        c = RawClient(srv.host, srv.port, timeout=timeout)
        opened.append(c)
        if read_info:
            c.read_info()
        return c

    try:
        yield open_client
    finally:
        for c in opened:
            c.close()
