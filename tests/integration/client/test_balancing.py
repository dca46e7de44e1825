"""A list of addresses: the client balances round robin over them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from microposts_client import Client
from tests.grpcservers import Downstream, LoopThread


@pytest.fixture
def two_backends(loop_thread: LoopThread) -> Iterator[tuple[Downstream, Downstream]]:
    a, b = Downstream(loop_thread, stall=False), Downstream(loop_thread, stall=False)
    yield a, b
    a.stop()
    b.stop()


def test_a_list_of_addresses_is_balanced_round_robin(
    two_backends: tuple[Downstream, Downstream],
) -> None:
    a, b = two_backends
    with Client([a.address, b.address], wait_for_ready=True) as client:
        for _ in range(20):
            client.get_user(name="users/alice")
    assert a.calls + b.calls == 20
    assert a.calls >= 5
    assert b.calls >= 5
