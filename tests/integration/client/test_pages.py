"""One page at a time: list_*_page against a real MicroPosts server, sync and async."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from microposts_client import AsyncClient, Client, InvalidArgument, Page
from tests.appserver import AppServer, serve_app

POSTS = 7
MAX_PAGE = 1000  # the documented cap on page_size


@pytest.fixture(scope="module")
def author(microposts_server: AppServer) -> list[str]:
    """A user with POSTS posts and another with one; the first's post names, newest first."""
    with Client(microposts_server.address) as client:
        client.create_user(username="pages_alice")
        client.create_user(username="pages_bob")
        names = [
            client.create_micropost(parent="users/pages_alice", text=f"post {i}").name
            for i in range(POSTS)
        ]
        client.create_micropost(parent="users/pages_bob", text="bob's")
    return names[::-1]


def test_pages_walk_the_list_sync(microposts_server: AppServer, author: list[str]) -> None:
    with Client(microposts_server.address) as client:
        first = client.list_microposts_page(parent="users/pages_alice", page_size=3)
        assert isinstance(first, Page)
        assert [p.name for p in first.items] == author[:3]
        assert first.next_page_token
        # page_size may change from one page to the next
        second = client.list_microposts_page(
            parent="users/pages_alice", page_size=2, page_token=first.next_page_token
        )
        assert [p.name for p in second] == author[3:5]
        last = client.list_microposts_page(
            parent="users/pages_alice", page_size=10, page_token=second.next_page_token
        )
        assert [p.name for p in last] == author[5:]
        assert len(last) == 2
        assert last.next_page_token == ""

        # The iterator starts where a page token says, and walks the same list.
        rest = client.list_microposts(
            parent="users/pages_alice", page_size=1, page_token=first.next_page_token
        )
        assert [p.name for p in rest] == author[3:]

        users = client.list_users_page(page_size=1)
        assert [u.name for u in users.items] == ["users/pages_alice"]
        more = client.list_users_page(page_token=users.next_page_token)
        assert [u.name for u in more.items] == ["users/pages_bob"]
        assert more.next_page_token == ""


def test_pages_walk_the_list_async(microposts_server: AppServer, author: list[str]) -> None:
    async def main() -> list[str]:
        async with AsyncClient(microposts_server.address) as client:
            names: list[str] = []
            token = ""
            while True:
                page = await client.list_microposts_page(
                    parent="users/pages_alice", page_size=3, page_token=token
                )
                names.extend(p.name for p in page.items)
                token = page.next_page_token
                if not token:
                    return names

    assert asyncio.run(main()) == author


def test_page_size_zero_is_the_servers_default(
    microposts_server: AppServer, author: list[str]
) -> None:
    with Client(microposts_server.address) as client:
        page = client.list_microposts_page(parent="users/pages_alice")  # page_size=0
        assert [p.name for p in page] == author  # fewer than the default (50): one page
        assert page.next_page_token == ""


def test_bad_page_arguments_name_the_field(microposts_server: AppServer, author: list[str]) -> None:
    with Client(microposts_server.address) as client:
        with pytest.raises(InvalidArgument) as negative:
            client.list_microposts_page(parent="users/pages_alice", page_size=-1)
        assert [v.field for v in negative.value.field_violations] == ["page_size"]

        alices = client.list_microposts_page(parent="users/pages_alice", page_size=1)
        with pytest.raises(InvalidArgument) as elsewhere:  # a token is bound to its parent
            client.list_microposts_page(parent="users/pages_bob", page_token=alices.next_page_token)
        assert [v.field for v in elsewhere.value.field_violations] == ["page_token"]


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    """An app of its own with one more than a page's cap of users, and of posts by one user."""
    db: Path = tmp_path_factory.mktemp("crowded") / "microposts.db"
    with serve_app(f"sqlite:///{db}") as srv:

        async def seed() -> None:
            async with AsyncClient(srv.address) as client:
                lanes = asyncio.Semaphore(16)

                async def user(i: int) -> None:
                    async with lanes:
                        await client.create_user(username=f"crowd{i:04d}")

                async def post(i: int) -> None:
                    async with lanes:
                        await client.create_micropost(parent="users/crowd0000", text=f"post {i}")

                await asyncio.gather(*(user(i) for i in range(MAX_PAGE + 1)))
                await asyncio.gather(*(post(i) for i in range(MAX_PAGE + 1)))

        asyncio.run(seed())
        yield srv


def test_page_size_above_1000_counts_as_1000(crowded: AppServer) -> None:
    with Client(crowded.address) as client:
        for size in (MAX_PAGE + 1, 5000):
            posts = client.list_microposts_page(parent="users/crowd0000", page_size=size)
            assert len(posts) == MAX_PAGE  # not all 1001, and not InvalidArgument
            assert posts.next_page_token
            rest = client.list_microposts_page(
                parent="users/crowd0000", page_size=size, page_token=posts.next_page_token
            )
            assert len(rest) == 1 and rest.next_page_token == ""
            names = {p.name for p in posts} | {p.name for p in rest}
            assert len(names) == MAX_PAGE + 1  # the two pages are the whole list, once

            users = client.list_users_page(page_size=size)
            assert len(users) == MAX_PAGE and users.next_page_token
            last = client.list_users_page(page_size=size, page_token=users.next_page_token)
            assert [u.name for u in last] == [f"users/crowd{MAX_PAGE:04d}"]
            assert last.next_page_token == ""
        # The iterator asks for pages of the same size: 1000, then the one left.
        assert len(list(client.list_users(page_size=5000))) == MAX_PAGE + 1


def test_page_size_above_1000_counts_as_1000_async(crowded: AppServer) -> None:
    async def main() -> tuple[int, str, int]:
        async with AsyncClient(crowded.address) as client:
            page = await client.list_microposts_page(parent="users/crowd0000", page_size=5000)
            rest = await client.list_microposts_page(
                parent="users/crowd0000", page_size=5000, page_token=page.next_page_token
            )
            return len(page), rest.next_page_token, len(rest)

    assert asyncio.run(main()) == (MAX_PAGE, "", 1)
