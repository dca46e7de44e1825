"""Use cases over an in-memory store (tests/unit/fakes.py): what each RPC does, no database.

The same behaviours through a real server on SQLite and PostgreSQL:
tests/integration/test_api.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from microposts_server.domain import (
    MAX_BATCH,
    UNRESTRICTED,
    Aborted,
    AlreadyExists,
    InvalidArgument,
    Micropost,
    NotFound,
)
from microposts_server.idempotency import DEFAULT_REQUEST_TTL
from microposts_server.page_tokens import PageTokens
from microposts_server.service import Service
from tests.unit.fakes import FakeClock, FakeStore


@pytest.fixture
def svc(fake_store: FakeStore, fake_clock: FakeClock) -> Service:
    return Service(fake_store, PageTokens(b"k" * 32), clock=fake_clock.ns)


def run(body: Coroutine[Any, Any, None]) -> None:
    asyncio.run(body)


def fields(err: pytest.ExceptionInfo[InvalidArgument]) -> list[str]:
    return [v.field for v in err.value.violations]


async def list_all(svc: Service, parent: str, size: int, between_pages: Any = None) -> list[str]:
    """Every micropost id under ``parent``, page by page; ``between_pages()`` runs between."""
    seen: list[str] = []
    token = ""
    while True:
        page = await svc.list_microposts(parent, size, token)
        seen += [p.id for p in page.items]
        if page.next_cursor is None:
            return seen
        token = page.next_cursor
        if between_pages is not None:
            await between_pages()


# -- users ---------------------------------------------------------------------


def test_create_user_idempotency_and_conflicts(svc: Service) -> None:
    async def body() -> None:
        first = await svc.create_user("alice", "A", "r1", caller=UNRESTRICTED)
        assert await svc.create_user("alice", "A", "r1", caller=UNRESTRICTED) == first
        with pytest.raises(InvalidArgument) as err:
            await svc.create_user("alice", "B", "r1", caller=UNRESTRICTED)
        assert err.value.violations[0].field == "request_id"
        with pytest.raises(AlreadyExists):
            await svc.create_user("alice", "A", "r2", caller=UNRESTRICTED)
        with pytest.raises(AlreadyExists):
            await svc.create_user("alice", "A", "", caller=UNRESTRICTED)

    run(body())


def test_create_user_names_every_bad_field_and_writes_nothing(
    svc: Service, fake_store: FakeStore
) -> None:
    async def body() -> None:
        with pytest.raises(InvalidArgument) as err:
            await svc.create_user("no", "x" * 101, "\n", caller=UNRESTRICTED)
        assert fields(err) == ["user.username", "user.display_name", "request_id"]
        taken = await svc.create_user("alice", "", "", caller=UNRESTRICTED)
        with pytest.raises(AlreadyExists) as exists:
            await svc.create_user("alice", "", "", caller=UNRESTRICTED)
        assert (exists.value.resource_type, exists.value.resource_name) == ("User", "users/alice")
        assert list(fake_store.tables.users.values()) == [taken]

    run(body())


def test_list_users_pages_in_username_order(svc: Service) -> None:
    async def body() -> None:
        names = ["delta", "alpha", "charlie", "bravo", "echo"]
        for n in names:
            await svc.create_user(n, "", "", caller=UNRESTRICTED)
        seen: list[str] = []
        token = ""
        for size in [2, 1, 5]:  # page_size may change between pages (AIP-158)
            page = await svc.list_users(size, token)
            seen += [u.username for u in page.items]
            if page.next_cursor is None:
                break
            token = page.next_cursor
        assert seen == sorted(names)
        everyone = await svc.list_users(0, "")  # 0 -> the default page size
        assert ([u.username for u in everyone.items], everyone.next_cursor) == (sorted(names), None)
        with pytest.raises(InvalidArgument) as err:
            await svc.list_users(-1, "")
        assert fields(err) == ["page_size"]

    run(body())


# -- microposts ----------------------------------------------------------------


def test_mentions_resolved_at_write_time(svc: Service) -> None:
    async def body() -> None:
        for name in ["alice", "bob", "carol"]:
            await svc.create_user(name, "", "", caller=UNRESTRICTED)
        text = "hi @carol and @bob, again @carol; not @nobody_zz, not mail@bob, not @bobs"
        post = await svc.create_micropost("users/alice", text, "", caller=UNRESTRICTED)
        assert post.referenced_users == ("carol", "bob")  # first mention first, no repeats
        later = await svc.create_micropost("users/alice", "hello @dave", "", caller=UNRESTRICTED)
        assert later.referenced_users == ()
        await svc.create_user("dave", "", "", caller=UNRESTRICTED)
        got = await svc.get_micropost(later.name)
        assert got.referenced_users == ()  # resolved when written, not when read
        edited = await svc.update_micropost(
            later.name, "hello again @dave", "", [], caller=UNRESTRICTED
        )
        assert edited.referenced_users == ("dave",)  # an edit is a write: resolved anew

    run(body())


def test_create_micropost_errors_write_nothing(svc: Service, fake_store: FakeStore) -> None:
    async def body() -> None:
        with pytest.raises(InvalidArgument) as err:
            await svc.create_micropost("users//x", "", "x" * 101, caller=UNRESTRICTED)
        assert fields(err) == ["parent", "micropost.text", "request_id"]
        with pytest.raises(NotFound) as missing:
            await svc.create_micropost("users/nobody_zz", "hello", "r1", caller=UNRESTRICTED)
        assert missing.value.resource_name == "users/nobody_zz"
        assert fake_store.tables.posts == {}
        assert fake_store.tables.requests == {}  # a failed create is not remembered
        await svc.create_user("nobody_zz", "", "", caller=UNRESTRICTED)
        post = await svc.create_micropost("users/nobody_zz", "hello", "r1", caller=UNRESTRICTED)
        assert list(fake_store.tables.posts.values()) == [post]

    run(body())


def test_request_id_replays_the_original_and_is_scoped_to_parent(svc: Service) -> None:
    async def body() -> None:
        await svc.create_user("alice", "", "", caller=UNRESTRICTED)
        await svc.create_user("bob", "", "", caller=UNRESTRICTED)
        first = await svc.create_micropost("users/alice", "once", "rid", caller=UNRESTRICTED)
        await svc.update_micropost(first.name, "edited", "", [], caller=UNRESTRICTED)
        assert (
            await svc.create_micropost("users/alice", "once", "rid", caller=UNRESTRICTED) == first
        )
        await svc.delete_micropost(first.name, "", caller=UNRESTRICTED)
        assert (
            await svc.create_micropost("users/alice", "once", "rid", caller=UNRESTRICTED) == first
        )
        assert (await svc.list_microposts("users/alice", 0, "")).items == []  # no copies
        with pytest.raises(InvalidArgument) as err:
            await svc.create_micropost("users/alice", "another text", "rid", caller=UNRESTRICTED)
        assert fields(err) == ["request_id"]
        # The same id under another parent (or for another method) is another request.
        bobs = await svc.create_micropost("users/bob", "once", "rid", caller=UNRESTRICTED)
        assert bobs.name.startswith("users/bob/microposts/")
        assert bobs.id != first.id
        assert (await svc.create_user("carol", "", "rid", caller=UNRESTRICTED)).username == "carol"

    run(body())


def test_request_ids_expire(svc: Service, fake_clock: FakeClock) -> None:
    async def body() -> None:
        await svc.create_user("alice", "", "", caller=UNRESTRICTED)
        first = await svc.create_micropost("users/alice", "x", "r1", caller=UNRESTRICTED)
        fake_clock.advance(DEFAULT_REQUEST_TTL - 1)
        assert await svc.create_micropost("users/alice", "x", "r1", caller=UNRESTRICTED) == first
        fake_clock.advance(2)
        second = await svc.create_micropost("users/alice", "x", "r1", caller=UNRESTRICTED)
        assert first.id != second.id  # forgotten after the ttl: a new create
        assert await svc.create_micropost("users/alice", "x", "r1", caller=UNRESTRICTED) == second

    run(body())


def test_batch_get_keeps_request_order_and_names_what_is_missing(svc: Service) -> None:
    async def body() -> None:
        await svc.create_user("alice", "", "", caller=UNRESTRICTED)
        await svc.create_user("bob", "", "", caller=UNRESTRICTED)
        a1 = await svc.create_micropost("users/alice", "a1", "", caller=UNRESTRICTED)
        b1 = await svc.create_micropost("users/bob", "b1", "", caller=UNRESTRICTED)
        a2 = await svc.create_micropost("users/alice", "a2", "", caller=UNRESTRICTED)
        names = [a2.name, b1.name, a1.name, a2.name]
        assert [p.text for p in await svc.batch_get_microposts(names)] == ["a2", "b1", "a1", "a2"]
        assert await svc.batch_get_microposts([]) == []
        missing = "users/alice/microposts/0000000000000000000000zzzz"
        wrong_parent = a1.name.replace("users/alice", "users/bob")
        for absent in [missing, wrong_parent]:
            with pytest.raises(NotFound) as err:
                await svc.batch_get_microposts([a1.name, absent])
            assert (err.value.resource_type, err.value.resource_name) == ("Micropost", absent)
        with pytest.raises(InvalidArgument) as bad:
            await svc.batch_get_microposts([a1.name, "users//microposts/x", a1.name, "x"])
        assert fields(bad) == ["names[1]", "names[3]"]
        with pytest.raises(InvalidArgument) as too_many:
            await svc.batch_get_microposts([a1.name] * (MAX_BATCH + 1))
        assert fields(too_many) == ["names"]
        assert len(await svc.batch_get_microposts([a1.name] * MAX_BATCH)) == MAX_BATCH

    run(body())


def test_paging_every_item_once(svc: Service) -> None:
    async def body() -> None:
        await svc.create_user("alice", "", "", caller=UNRESTRICTED)
        ids = [
            (await svc.create_micropost("users/alice", f"p{i}", "", caller=UNRESTRICTED)).id
            for i in range(11)
        ]
        seen: list[str] = []
        token = ""
        while True:
            page = await svc.list_microposts("users/alice", 4, token)
            seen += [p.id for p in page.items]
            if page.next_cursor is None:
                break
            token = page.next_cursor
        assert seen == ids[::-1]

    run(body())


def test_list_paging_is_stable_under_inserts(svc: Service) -> None:
    async def body() -> None:
        await svc.create_user("alice", "", "", caller=UNRESTRICTED)
        await svc.create_user("bob", "", "", caller=UNRESTRICTED)
        created = [
            (
                await svc.create_micropost(
                    ("users/alice", "users/bob")[i % 2], f"p{i}", "", caller=UNRESTRICTED
                )
            ).id
            for i in range(7)
        ]
        inserted: list[str] = []

        async def insert() -> None:
            inserted.append(
                (await svc.create_micropost("users/alice", "new", "", caller=UNRESTRICTED)).id
            )

        # Posts inserted while paging appear on no later page and shift
        # nothing: no duplicates, no skips (keyset paging on time-ordered ids).
        assert await list_all(svc, "users/-", 3, insert) == created[::-1]
        assert len(inserted) == 2
        alices = created[::2] + inserted
        assert await list_all(svc, "users/alice", 2, insert) == alices[::-1]

    run(body())


def test_list_microposts_errors(svc: Service) -> None:
    async def body() -> None:
        await svc.create_user("alice", "", "", caller=UNRESTRICTED)
        await svc.create_user("bob", "", "", caller=UNRESTRICTED)
        for _ in range(3):
            await svc.create_micropost("users/alice", "x", "", caller=UNRESTRICTED)
        with pytest.raises(NotFound) as missing:
            await svc.list_microposts("users/nobody_zz", 0, "")
        assert missing.value.resource_name == "users/nobody_zz"
        with pytest.raises(InvalidArgument) as err:
            await svc.list_microposts("users", -5, "")
        assert fields(err) == ["parent", "page_size"]
        token = (await svc.list_microposts("users/alice", 1, "")).next_cursor
        assert token is not None
        # A token is bound to its parent: it never shows another user's posts.
        for parent in ["users/bob", "users/-"]:
            with pytest.raises(InvalidArgument) as err:
                await svc.list_microposts(parent, 1, token)
            assert fields(err) == ["page_token"]
        users_token = (await svc.list_users(1, "")).next_cursor
        assert users_token is not None
        with pytest.raises(InvalidArgument) as err:
            await svc.list_microposts("users/alice", 1, users_token)
        assert fields(err) == ["page_token"]

    run(body())


def test_update_and_delete_with_etags(svc: Service) -> None:
    async def body() -> None:
        await svc.create_user("alice", "", "", caller=UNRESTRICTED)
        post = await svc.create_micropost("users/alice", "one", "", caller=UNRESTRICTED)
        name = post.name
        updated = await svc.update_micropost(name, "two", post.etag, ["text"], caller=UNRESTRICTED)
        assert updated.version == 2
        assert updated.etag != post.etag
        with pytest.raises(Aborted):
            await svc.update_micropost(name, "three", post.etag, [], caller=UNRESTRICTED)
        with pytest.raises(Aborted):
            await svc.delete_micropost(name, post.etag, caller=UNRESTRICTED)
        assert (await svc.get_micropost(name)).text == "two"
        await svc.delete_micropost(name, updated.etag, caller=UNRESTRICTED)
        with pytest.raises(NotFound):
            await svc.get_micropost(name)

    run(body())


def test_update_moves_update_time_forward_and_keeps_the_rest(svc: Service) -> None:
    async def body() -> None:
        await svc.create_user("alice", "", "", caller=UNRESTRICTED)
        post = await svc.create_micropost("users/alice", "one", "", caller=UNRESTRICTED)
        # The fake clock stands still: the update time still moves, so the etag changes.
        updated = await svc.update_micropost(post.name, "two", "", ["*"], caller=UNRESTRICTED)
        assert updated == Micropost(
            "alice", post.id, "two", (), post.create_time, post.update_time + 1, 2
        )
        assert await svc.get_micropost(post.name) == updated

    run(body())


@pytest.mark.parametrize(
    ("text", "mask", "expected"),
    [
        ("y", ["display_name"], ["update_mask.paths[0]"]),
        ("y", ["text", "name"], ["update_mask.paths[1]"]),
        ("", ["text"], ["micropost.text"]),
        ("", [], ["micropost.text"]),  # empty mask: every field set, and text is required
        ("y" * 301, [], ["micropost.text"]),
        ("", ["create_time", "text"], ["update_mask.paths[0]", "micropost.text"]),
    ],
)
def test_update_mask_rules(
    svc: Service, fake_store: FakeStore, text: str, mask: list[str], expected: list[str]
) -> None:
    async def body() -> None:
        await svc.create_user("alice", "", "", caller=UNRESTRICTED)
        post = await svc.create_micropost("users/alice", "x", "", caller=UNRESTRICTED)
        with pytest.raises(InvalidArgument) as err:
            await svc.update_micropost(post.name, text, "", mask, caller=UNRESTRICTED)
        assert fields(err) == expected
        assert list(fake_store.tables.posts.values()) == [post]  # nothing changed

    run(body())


def test_update_and_delete_errors(svc: Service) -> None:
    async def body() -> None:
        await svc.create_user("alice", "", "", caller=UNRESTRICTED)
        missing = "users/alice/microposts/0000000000000000000000zzzz"
        with pytest.raises(NotFound) as err:
            await svc.update_micropost(missing, "y", "", [], caller=UNRESTRICTED)
        assert err.value.resource_name == missing
        with pytest.raises(NotFound):
            await svc.delete_micropost(missing, "", caller=UNRESTRICTED)
        with pytest.raises(InvalidArgument) as bad:
            await svc.update_micropost("users//microposts/x", "y", "\n", [], caller=UNRESTRICTED)
        assert fields(bad) == ["micropost.name", "micropost.etag"]
        with pytest.raises(InvalidArgument) as bad:
            await svc.delete_micropost("nope", "", caller=UNRESTRICTED)
        assert fields(bad) == ["name"]

    run(body())
