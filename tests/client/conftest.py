"""Fixtures for the client tests: a loop thread for in-process servers, a real MicroPosts server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client.support import Downstream, LoopThread, Scripted
from tests.serverproc import ServerProcess


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
