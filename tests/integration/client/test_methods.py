"""Every method, through both clients, against a real MicroPosts server."""

from __future__ import annotations

import asyncio

from microposts.v1 import micropost_service_pb2, resources_pb2
from microposts_client import AsyncClient, Client, NotFound
from tests.appserver import AppServer


def test_every_method_sync(microposts_server: AppServer) -> None:
    with Client(microposts_server.address) as client:
        alice = client.create_user(username="sync_alice", display_name="Alice")
        assert isinstance(alice, resources_pb2.User)
        assert alice.name == "users/sync_alice"
        assert alice.display_name == "Alice"
        bob = client.create_user(username="sync_bob", request_id="bob-key")
        # The same request_id returns the same user instead of ALREADY_EXISTS.
        assert client.create_user(username="sync_bob", request_id="bob-key") == bob
        assert client.get_user(name="users/sync_alice") == alice

        names = [u.name for u in client.list_users(page_size=1)]  # one item per page
        assert names.index("users/sync_alice") < names.index("users/sync_bob")

        posts = [
            client.create_micropost(parent="users/sync_alice", text=f"post {i} @sync_bob")
            for i in range(5)
        ]
        assert posts[0].referenced_users == ["users/sync_bob"]
        assert client.get_micropost(name=posts[1].name) == posts[1]

        batch = client.batch_get_microposts(names=[posts[3].name, posts[0].name])
        assert isinstance(batch, micropost_service_pb2.BatchGetMicropostsResponse)
        assert [p.name for p in batch.microposts] == [posts[3].name, posts[0].name]

        listed = list(client.list_microposts(parent="users/sync_alice", page_size=2))
        assert [p.name for p in listed] == [p.name for p in reversed(posts)]  # newest first

        updated = client.update_micropost(name=posts[0].name, text="edited", etag=posts[0].etag)
        assert updated.text == "edited"
        assert updated.etag != posts[0].etag
        blind = client.update_micropost(name=posts[0].name, text="edited again")
        assert blind.text == "edited again"

        client.delete_micropost(name=posts[1].name, etag=posts[1].etag)
        client.delete_micropost(name=posts[2].name)
        remaining = {p.name for p in client.list_microposts(parent="users/sync_alice")}
        assert remaining == {posts[0].name, posts[3].name, posts[4].name}
        try:
            client.get_micropost(name=posts[2].name)
        except NotFound:
            pass
        else:  # pragma: no cover
            raise AssertionError("deleted post still readable")


def test_every_method_async(microposts_server: AppServer) -> None:
    async def main() -> None:
        async with AsyncClient(microposts_server.address) as client:
            carol = await client.create_user(username="async_carol")
            assert carol.name == "users/async_carol"
            assert (await client.get_user(name=carol.name)) == carol
            users = [u.name async for u in client.list_users(page_size=1)]
            assert "users/async_carol" in users

            posts = [
                await client.create_micropost(parent=carol.name, text=f"hello {i}")
                for i in range(3)
            ]
            assert (await client.get_micropost(name=posts[0].name)) == posts[0]
            batch = await client.batch_get_microposts(names=[p.name for p in posts])
            assert list(batch.microposts) == posts
            listed = [p async for p in client.list_microposts(parent=carol.name, page_size=2)]
            assert listed == list(reversed(posts))
            everyone = [p.name async for p in client.list_microposts(parent="users/-")]
            assert set(everyone) >= {p.name for p in posts}

            updated = await client.update_micropost(
                name=posts[0].name, text="changed", etag=posts[0].etag
            )
            assert updated.text == "changed"
            await client.delete_micropost(name=posts[0].name, etag=updated.etag)
            assert [p async for p in client.list_microposts(parent=carol.name)] == [
                posts[2],
                posts[1],
            ]

    asyncio.run(main())
