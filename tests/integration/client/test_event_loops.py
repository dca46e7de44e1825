"""AsyncClient made the way web frameworks make clients, against a real MicroPosts server.

gRPC binds an asyncio channel to one event loop. The client opens it on its
first call, in that call's loop: made at import time (no loop yet) or in
another loop's startup hook, it works where it is used; in use on one live
loop, a call from another raises an error that says what to do, instead of
grpc's "attached to a different loop".
"""

from __future__ import annotations

import asyncio

import pytest

from microposts.v1 import resources_pb2
from microposts_client import AsyncClient
from tests.appserver import AppServer
from tests.grpcservers import LoopThread


async def first_user(client: AsyncClient) -> resources_pb2.User:
    page = await client.list_users_page(page_size=1)
    return page.items[0]


@pytest.fixture(scope="module")
def a_user(microposts_server: AppServer) -> resources_pb2.User:
    async def create() -> resources_pb2.User:
        async with AsyncClient(microposts_server.address) as client:
            return await client.create_user(username="loops_alice")

    return asyncio.run(create())


def test_made_with_no_loop_running(
    microposts_server: AppServer, a_user: resources_pb2.User
) -> None:
    client = AsyncClient(microposts_server.address)  # as at a module's top level
    assert asyncio.run(first_user(client)) == a_user

    async def last_run() -> resources_pb2.User:
        try:
            return await first_user(client)
        finally:
            await client.close()

    # The first loop is closed: the next one gets a channel of its own.
    assert asyncio.run(last_run()) == a_user


def test_made_in_another_loops_startup_hook(
    microposts_server: AppServer, a_user: resources_pb2.User, loop_thread: LoopThread
) -> None:
    async def lifespan() -> AsyncClient:
        return AsyncClient(microposts_server.address)

    client = loop_thread.run(lifespan())  # made on that loop, never called there

    async def serve() -> resources_pb2.User:
        try:
            return await first_user(client)
        finally:
            await client.close()

    assert asyncio.run(serve()) == a_user


def test_a_second_live_loop_is_told_what_to_do(
    microposts_server: AppServer, a_user: resources_pb2.User, loop_thread: LoopThread
) -> None:
    client = AsyncClient(microposts_server.address)
    assert loop_thread.run(first_user(client)) == a_user  # bound to the thread's loop

    with pytest.raises(RuntimeError, match="create one AsyncClient per event loop"):
        asyncio.run(first_user(client))
    with pytest.raises(RuntimeError, match="create one AsyncClient per event loop"):
        asyncio.run(client.close())

    assert loop_thread.run(first_user(client)) == a_user  # still fine where it lives
    loop_thread.run(client.close())
    with pytest.raises(RuntimeError, match="closed"):
        loop_thread.run(first_user(client))
