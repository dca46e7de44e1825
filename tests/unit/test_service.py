"""Use cases on a real SQLite store in memory: paging, etags, idempotency."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from microposts_server.domain import Aborted, AlreadyExists, InvalidArgument, NotFound
from microposts_server.page_tokens import PageTokens
from microposts_server.service import Service
from microposts_server.store import open_store

T = TypeVar("T")


def run(body: Callable[[Service], Awaitable[T]], ttl: float = 3600) -> T:
    async def main() -> T:
        store = await open_store("sqlite://:memory:")
        try:
            return await body(Service(store, PageTokens(b"k" * 32), request_ttl=ttl))
        finally:
            await store.close()

    return asyncio.run(main())


def test_page_tokens_are_bound_and_tamper_proof() -> None:
    tokens = PageTokens(b"secret")
    token = tokens.encode("microposts", "users/a", "cursor1")
    assert tokens.decode(token, "microposts", "users/a") == "cursor1"
    for kind, parent in [("microposts", "users/b"), ("users", "users/a")]:
        with pytest.raises(InvalidArgument):
            tokens.decode(token, kind, parent)
    with pytest.raises(InvalidArgument):
        PageTokens(b"other").decode(token, "microposts", "users/a")
    for bad in ["", "x", token[:-1] + ("A" if token[-1] != "A" else "B"), "é", "====", token * 2]:
        with pytest.raises(InvalidArgument) as err:
            tokens.decode(bad, "microposts", "users/a")
        assert err.value.violations[0].field == "page_token"


def test_create_user_idempotency_and_conflicts() -> None:
    async def body(svc: Service) -> None:
        first = await svc.create_user("alice", "A", "r1")
        assert await svc.create_user("alice", "A", "r1") == first
        with pytest.raises(InvalidArgument) as err:
            await svc.create_user("alice", "B", "r1")
        assert err.value.violations[0].field == "request_id"
        with pytest.raises(AlreadyExists):
            await svc.create_user("alice", "A", "r2")
        with pytest.raises(AlreadyExists):
            await svc.create_user("alice", "A", "")

    run(body)


def test_request_ids_expire() -> None:
    async def body(svc: Service) -> None:
        await svc.create_user("alice", "", "")
        first = await svc.create_micropost("users/alice", "x", "r1")
        await asyncio.sleep(0.05)
        second = await svc.create_micropost("users/alice", "x", "r1")
        assert first.id != second.id  # forgotten after the ttl: a new create

    run(body, ttl=0.01)


def test_update_and_delete_with_etags() -> None:
    async def body(svc: Service) -> None:
        await svc.create_user("alice", "", "")
        post = await svc.create_micropost("users/alice", "one", "")
        name = post.name
        updated = await svc.update_micropost(name, "two", post.etag, ["text"])
        assert updated.version == 2
        assert updated.etag != post.etag
        with pytest.raises(Aborted):
            await svc.update_micropost(name, "three", post.etag, [])
        with pytest.raises(Aborted):
            await svc.delete_micropost(name, post.etag)
        assert (await svc.get_micropost(name)).text == "two"
        await svc.delete_micropost(name, updated.etag)
        with pytest.raises(NotFound):
            await svc.get_micropost(name)

    run(body)


def test_paging_every_item_once() -> None:
    async def body(svc: Service) -> None:
        await svc.create_user("alice", "", "")
        ids = [(await svc.create_micropost("users/alice", f"p{i}", "")).id for i in range(11)]
        seen: list[str] = []
        token = ""
        while True:
            page = await svc.list_microposts("users/alice", 4, token)
            seen += [p.id for p in page.items]
            if page.next_cursor is None:
                break
            token = page.next_cursor
        assert seen == ids[::-1]

    run(body)
