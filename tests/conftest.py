"""Shared fixtures: store URLs for every store, and a real server on port 0."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from microposts.v1 import micropost_service_pb2_grpc, user_service_pb2_grpc

from tests.serverproc import ServerProcess

# Every store the server supports; integration tests taking ``store_url`` run
# once per entry. PostgreSQL is added by tests/pg.py.
STORES = ["sqlite"]


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'microposts.db'}"
    else:  # pragma: no cover - filled in when more stores exist
        raise AssertionError(request.param)


@pytest.fixture
def server(store_url: str) -> Iterator[ServerProcess]:
    """A real server process on a free port, on a fresh store."""
    with ServerProcess(store_url) as srv:
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
