"""Deadlines against a real, deliberately stalled gRPC server."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from microposts_client import (
    DEFAULT_READ_TIMEOUT,
    AsyncClient,
    Client,
    DeadlineExceeded,
    Timeouts,
    deadline,
    time_remaining,
)
from tests.grpcservers import Downstream, LoopThread


def test_stalled_call_raises_deadline_exceeded_near_its_timeout(stalled: Downstream) -> None:
    with Client(stalled.address) as client:
        start = time.monotonic()
        with pytest.raises(DeadlineExceeded) as info:
            client.get_user(name="users/alice", timeout=0.3)
        elapsed = time.monotonic() - start
    assert 0.25 <= elapsed < 5.0
    assert info.value.code is grpc.StatusCode.DEADLINE_EXCEEDED
    assert isinstance(info.value.__cause__, grpc.RpcError)
    # The deadline went on the wire: the server saw about 0.3 s, never more than ~1 % over.
    (end,) = stalled.ends
    assert end is not None
    assert end - start <= 0.3 * 1.01 + 0.01


def test_async_stalled_call_raises_deadline_exceeded(stalled: Downstream) -> None:
    async def main() -> float:
        async with AsyncClient(stalled.address) as client:
            start = time.monotonic()
            with pytest.raises(DeadlineExceeded):
                await client.get_user(name="users/alice", timeout=0.3)
            return time.monotonic() - start

    assert 0.25 <= asyncio.run(main()) < 5.0
    assert stalled.calls == 1


def test_default_timeouts_per_kind_and_per_client(loop_thread: LoopThread) -> None:
    answering = Downstream(loop_thread, stall=False)
    try:
        with Client(answering.address) as client:
            start = time.monotonic()
            client.get_user(name="users/alice")
            with Client(answering.address, timeout=Timeouts(read=0.7, write=9.0)) as tuned:
                tuned.get_user(name="users/alice")
            with Client(answering.address, timeout=1.5) as flat:
                flat.get_user(name="users/alice")
            client.get_user(name="users/alice", timeout=None)
        first, tuned_end, flat_end, unbounded = answering.ends
        assert first is not None
        assert tuned_end is not None
        assert flat_end is not None
        assert DEFAULT_READ_TIMEOUT - 1.0 < first - start <= DEFAULT_READ_TIMEOUT * 1.01 + 0.01
        assert 0.2 < tuned_end - start <= 0.7 * 1.01 + 0.5
        assert 1.0 < flat_end - start <= 1.5 * 1.01 + 0.5
        assert unbounded is None  # timeout=None: no deadline on the wire
    finally:
        answering.stop()


def test_deadline_scopes_nest_to_the_earlier_end(stalled: Downstream) -> None:
    with Client(stalled.address) as client:
        start = time.monotonic()
        with deadline(30.0), deadline(0.3) as inner, deadline(20.0):
            assert inner.end is not None
            assert inner.end - start <= 0.3 + 0.01
            remaining = time_remaining()
            assert remaining is not None
            assert remaining <= 0.3
            with pytest.raises(DeadlineExceeded):
                client.get_user(name="users/alice", timeout=None)  # the scope still bounds it
        assert time_remaining() is None
        (end,) = stalled.ends
        assert end is not None
        assert end - start <= 0.3 * 1.01 + 0.01


def test_spent_budget_never_reaches_the_network(stalled: Downstream) -> None:
    with Client(stalled.address) as client:
        with pytest.raises(DeadlineExceeded) as info:
            client.get_user(name="users/alice", timeout=0)
        assert info.value.__cause__ is None
        with pytest.raises(DeadlineExceeded):
            client.create_user(username="alice", timeout=0.0)
        with deadline(0.05):
            time.sleep(0.1)
            with pytest.raises(DeadlineExceeded):
                client.get_user(name="users/alice", timeout=None)
        with deadline(0), pytest.raises(DeadlineExceeded):
            next(client.list_users())
    assert stalled.calls == 0


def test_async_spent_budget_and_tasks_inherit_the_scope(stalled: Downstream) -> None:
    async def main() -> None:
        async with AsyncClient(stalled.address) as client:
            with pytest.raises(DeadlineExceeded):
                await client.get_user(name="users/alice", timeout=0)
            assert stalled.calls == 0
            start = time.monotonic()
            async with deadline(0.3):
                # Tasks created inside the scope inherit it.
                results = await asyncio.gather(
                    *(client.get_user(name="users/alice") for _ in range(3)),
                    return_exceptions=True,
                )
            assert all(isinstance(r, DeadlineExceeded) for r in results)
            assert time.monotonic() - start < 5.0

    asyncio.run(main())
    assert stalled.calls == 3
    assert all(end is not None for end in stalled.ends)
