"""The one set of fixtures: stores, real servers on port 0, in-process gRPC servers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from microposts.v1 import micropost_service_pb2_grpc, user_service_pb2_grpc
from tests import pg
from tests.grpcservers import Downstream, LoopThread, Scripted
from tests.serverproc import ServerProcess

# Every store the server supports; integration tests taking ``store_url`` (or
# the module-scoped ``shared_server``) run once per entry. PostgreSQL is the
# machine's server on 127.0.0.1:5432 (never skipped; `make test` starts it):
# one database per test session, a fresh schema per store (tests/pg.py).
STORES = ["sqlite", "postgresql"]


def make_store_url(kind: str, folder: Path) -> Iterator[str]:
    """Yields the URL of a fresh, empty store of ``kind``, and cleans it up after."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'microposts.db'}"
    elif kind == "postgresql":
        with pg.session_database().schema() as url:
            yield url
    else:  # pragma: no cover - each new store adds its branch here
        raise AssertionError(kind)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    pg.drop_session_database()


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store of each kind (one per test)."""
    yield from make_store_url(request.param, tmp_path)


@pytest.fixture
def server(store_url: str) -> Iterator[ServerProcess]:
    """A real server process on a free port, on a fresh store (one per test)."""
    with ServerProcess(store_url) as srv:
        yield srv


@pytest.fixture(scope="module", params=STORES)
def shared_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One real server per test module and store, for tests that need no isolation."""
    folder = tmp_path_factory.mktemp(request.param)
    for url in make_store_url(request.param, folder):
        with ServerProcess(url) as srv:
            yield srv


@pytest.fixture
def channel(server: ServerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.address) as ch:
        yield ch


@pytest.fixture
def users(channel: grpc.Channel) -> user_service_pb2_grpc.UserServiceStub:
    return user_service_pb2_grpc.UserServiceStub(channel)


@pytest.fixture
def posts(channel: grpc.Channel) -> micropost_service_pb2_grpc.MicropostServiceStub:
    return micropost_service_pb2_grpc.MicropostServiceStub(channel)


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    """An event loop in a thread, for in-process gRPC servers."""
    lt = LoopThread()
    yield lt
    lt.close()


@pytest.fixture
def stalled(loop_thread: LoopThread) -> Iterator[Downstream]:
    """A GetUser that never answers and records the deadline of each call."""
    d = Downstream(loop_thread, stall=True)
    yield d
    d.stop()


@pytest.fixture
def scripted(loop_thread: LoopThread) -> Iterator[Scripted]:
    """A MicroPosts fake whose calls fail as each test scripts."""
    s = Scripted(loop_thread)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def microposts_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real MicroPosts server (SQLite) shared by a module's tests."""
    db: Path = tmp_path_factory.mktemp("client") / "microposts.db"
    with ServerProcess(f"sqlite:///{db}") as srv:
        yield srv
