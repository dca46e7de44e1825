"""The one set of fixtures: fakes, stores, the app in-process, server processes, gRPC fakes.

Unit tests run the use cases over ``fake_store`` (``tests/unit/fakes.py``).
Integration tests run the real app in the test process (``server``,
``shared_server``, ``microposts_server``: ``tests/appserver.py``); end-to-end
tests run it as a process (``server_process``, ``shared_server_process``:
``tests/serverproc.py``). ``channel``, ``users`` and ``posts`` call the
module's ``shared_server``; a test that needs a store of its own takes
``server`` and calls ``server.users`` and ``server.posts``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from microposts.v1 import micropost_service_pb2_grpc, user_service_pb2_grpc
from tests import pg
from tests.appserver import AppServer, serve_app
from tests.credentials import Secured
from tests.grpcservers import Downstream, LoopThread, Scripted
from tests.serverproc import ServerProcess
from tests.unit.fakes import FakeClock, FakeStore

# Every store the server supports; tests taking ``store_url``, ``server`` or
# a module-scoped ``shared_*`` fixture run once per entry. PostgreSQL is the
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


# -- the use cases' fakes (unit) -----------------------------------------------


@pytest.fixture
def fake_clock() -> FakeClock:
    """Wall time that stands still until the test moves it."""
    return FakeClock()


@pytest.fixture
def fake_store(fake_clock: FakeClock) -> FakeStore:
    """The store port in memory, judging expiry by ``fake_clock``."""
    return FakeStore(clock=fake_clock.us)


# -- stores --------------------------------------------------------------------


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store of each kind (one per test)."""
    yield from make_store_url(request.param, tmp_path)


@pytest.fixture(scope="module", params=STORES)
def shared_store_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A fresh store of each kind, shared by a module's tests."""
    yield from make_store_url(request.param, tmp_path_factory.mktemp(request.param))


# -- the app in the test process (integration) ---------------------------------


@pytest.fixture
def server(store_url: str) -> Iterator[AppServer]:
    """The real app in this process on a fresh store (one per test), for tests that need it."""
    with serve_app(store_url) as srv:
        yield srv


@pytest.fixture(scope="module")
def shared_server(shared_store_url: str) -> Iterator[AppServer]:
    """The real app in this process, one per test module and store, for tests that share."""
    with serve_app(shared_store_url) as srv:
        yield srv


@pytest.fixture(scope="module", params=[*STORES, "sqlite, TLS + JWT"])
def shared_server_also_secured(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AppServer]:
    """``shared_server`` on every store, then once more on SQLite serving TLS with --auth jwt.

    A module that must also pass with security on overrides ``shared_server``
    with this (tests/integration/test_api.py does); its stubs call with an
    administrator's token over TLS.
    """
    folder = tmp_path_factory.mktemp("served")
    kind, _, secured = str(request.param).partition(", ")
    for url in make_store_url(kind, folder):
        with serve_app(url, Secured.create(folder) if secured else None) as srv:
            yield srv


@pytest.fixture(scope="module")
def channel(shared_server: AppServer) -> grpc.Channel:
    """A channel to the module's ``shared_server``."""
    return shared_server.channel


@pytest.fixture(scope="module")
def users(shared_server: AppServer) -> user_service_pb2_grpc.UserServiceStub:
    """UserService of the module's ``shared_server``."""
    return shared_server.users


@pytest.fixture(scope="module")
def posts(shared_server: AppServer) -> micropost_service_pb2_grpc.MicropostServiceStub:
    """MicropostService of the module's ``shared_server``."""
    return shared_server.posts


@pytest.fixture(scope="module")
def microposts_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    """The real app in this process on SQLite, shared by a module's client tests."""
    db: Path = tmp_path_factory.mktemp("client") / "microposts.db"
    with serve_app(f"sqlite:///{db}") as srv:
        yield srv


# -- server processes (end to end) ---------------------------------------------


@pytest.fixture
def server_process(store_url: str) -> Iterator[ServerProcess]:
    """A real server process on a free port, on a fresh store (one per test)."""
    with ServerProcess(store_url) as srv:
        yield srv


@pytest.fixture(scope="module")
def shared_server_process(shared_store_url: str) -> Iterator[ServerProcess]:
    """One real server process per test module and store, for tests that need no isolation."""
    with ServerProcess(shared_store_url) as srv:
        yield srv


# -- in-process fakes and helpers for the client tests ------------------------


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
def answering(loop_thread: LoopThread) -> Iterator[Downstream]:
    """``stalled``'s GetUser, answering at once: records the deadline of each call."""
    d = Downstream(loop_thread, stall=False)
    yield d
    d.stop()


@pytest.fixture
def scripted(loop_thread: LoopThread) -> Iterator[Scripted]:
    """A MicroPosts fake whose calls fail as each test scripts."""
    s = Scripted(loop_thread)
    yield s
    s.stop()
