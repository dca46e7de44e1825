"""An in-memory fake of the store port, for use-case tests that need no database.

The use cases' tests run over ``FakeStore`` (Cosmic Python's FakeRepository):
fast, and the use cases' own rules are what they check. That the real
adapters keep the same promises is checked by the integration tests, which
run the same calls through a server on SQLite and on PostgreSQL.

``FakeStore`` keeps the promises of ``microposts_server.store.base``: a write
is all or nothing (it works on a copy of the tables taken when it begins and
replaces them only when its block ends normally; writes run one at a time,
as under SQLite's ``BEGIN IMMEDIATE``); ``insert_user`` and ``put_request``
raise ``DuplicateKey`` as the Protocol says; lists come back in the
Protocol's order. A read sees committed data, and may not write.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType

from microposts_server.domain import Micropost, Unavailable, User
from microposts_server.store.base import (
    DuplicateKey,
    RequestRecord,
    Store,
    Transaction,
    TransactionContext,
)


def wall_clock_us() -> int:
    """Microseconds since the epoch: what the adapters judge a record's expiry by."""
    return time.time_ns() // 1000


class FakeClock:
    """Wall time that moves only when the test moves it (request-id expiry without sleeping)."""

    def __init__(self, start_us: int = 1_700_000_000_000_000) -> None:
        self.now_us = start_us

    def us(self) -> int:
        """Microseconds since the epoch (``FakeStore``'s and ``Idempotency``'s unit)."""
        return self.now_us

    def ns(self) -> int:
        """Nanoseconds since the epoch (``Service``'s ``clock``, like ``time.time_ns``)."""
        return self.now_us * 1000

    def advance(self, seconds: float) -> None:
        self.now_us += int(seconds * 1_000_000)


@dataclass
class Tables:
    """What a store holds. Values are immutable, so a copy of the dicts is a snapshot."""

    users: dict[str, User] = field(default_factory=dict)
    posts: dict[str, Micropost] = field(default_factory=dict)  # by id
    requests: dict[tuple[str, str], RequestRecord] = field(default_factory=dict)

    def copy(self) -> Tables:
        return replace(
            self, users=dict(self.users), posts=dict(self.posts), requests=dict(self.requests)
        )


class FakeTransaction:
    """``Transaction`` over one ``Tables``: the committed ones (reads) or a copy (a write)."""

    def __init__(self, tables: Tables, *, writable: bool, clock: Callable[[], int]) -> None:
        self.tables = tables
        self.writable = writable
        self.clock = clock

    def _writing(self) -> Tables:
        if not self.writable:
            raise AssertionError("a write inside store.read()")
        return self.tables

    async def get_user(self, username: str) -> User | None:
        return self.tables.users.get(username)

    async def insert_user(self, user: User) -> None:
        users = self._writing().users
        if user.username in users:
            raise DuplicateKey("users")
        users[user.username] = user

    async def list_users(self, after: str | None, limit: int) -> list[User]:
        names = sorted(u for u in self.tables.users if after is None or u > after)
        return [self.tables.users[u] for u in names[:limit]]

    async def existing_usernames(self, usernames: Sequence[str]) -> set[str]:
        return {u for u in usernames if u in self.tables.users}

    async def get_micropost(
        self, username: str, post_id: str, *, for_update: bool = False
    ) -> Micropost | None:
        post = self.tables.posts.get(post_id)
        return post if post is not None and post.username == username else None

    async def get_microposts(self, post_ids: Sequence[str]) -> dict[str, Micropost]:
        return {i: self.tables.posts[i] for i in post_ids if i in self.tables.posts}

    async def insert_micropost(self, post: Micropost) -> None:
        posts = self._writing().posts
        if post.id in posts:
            raise AssertionError(f"micropost id {post.id} inserted twice")
        posts[post.id] = post

    async def update_micropost(self, post: Micropost) -> None:
        posts = self._writing().posts
        old = posts.get(post.id)
        if old is not None and old.username == post.username:
            posts[post.id] = old._replace(
                text=post.text,
                referenced_users=post.referenced_users,
                update_time=post.update_time,
                version=post.version,
            )

    async def delete_micropost(self, username: str, post_id: str) -> None:
        posts = self._writing().posts
        old = posts.get(post_id)
        if old is not None and old.username == username:
            del posts[post_id]

    async def list_microposts(
        self, username: str | None, before: str | None, limit: int
    ) -> list[Micropost]:
        ids = sorted(
            (
                i
                for i, p in self.tables.posts.items()
                if (username is None or p.username == username) and (before is None or i < before)
            ),
            reverse=True,
        )
        return [self.tables.posts[i] for i in ids[:limit]]

    async def get_request(self, scope: str, request_id: str, now: int) -> RequestRecord | None:
        record = self.tables.requests.get((scope, request_id))
        return record if record is not None and record.expire_time > now else None

    async def put_request(self, record: RequestRecord) -> None:
        requests = self._writing().requests
        key = (record.scope, record.request_id)
        twin = requests.get(key)
        # An expired twin may linger until the next purge: take its place.
        if twin is not None and twin.expire_time > self.clock():
            raise DuplicateKey("requests")
        requests[key] = record


class FakeTransactionContext:
    """``async with`` one fake transaction: a write commits its copy only on success."""

    def __init__(self, store: FakeStore, *, writable: bool) -> None:
        self.store = store
        self.writable = writable

    async def __aenter__(self) -> Transaction:
        if not self.writable:
            return FakeTransaction(self.store.tables, writable=False, clock=self.store.clock)
        await self.store.write_lock.acquire()
        self.tx = FakeTransaction(self.store.tables.copy(), writable=True, clock=self.store.clock)
        return self.tx

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.writable:
            return
        try:
            if exc_type is None:
                self.store.tables = self.tx.tables
        finally:
            self.store.write_lock.release()


class FakeStore:
    """``Store`` in memory; ``tables`` holds what the last committed write left."""

    def __init__(self, *, key: bytes = b"k" * 32, clock: Callable[[], int] = wall_clock_us) -> None:
        self.tables = Tables()
        self.key = key
        self.clock = clock
        self.closed = False
        self.write_lock = asyncio.Lock()

    def read(self) -> TransactionContext:
        return FakeTransactionContext(self, writable=False)

    def write(self) -> TransactionContext:
        return FakeTransactionContext(self, writable=True)

    async def page_token_key(self) -> bytes:
        return self.key

    async def ping(self) -> None:
        if self.closed:
            raise Unavailable("the fake store is closed")

    async def purge_requests(self, now: int) -> int:
        async with self.write() as tx:
            assert isinstance(tx, FakeTransaction)
            live = {k: r for k, r in tx.tables.requests.items() if r.expire_time > now}
            purged = len(tx.tables.requests) - len(live)
            tx.tables.requests = live
        return purged

    async def close(self) -> None:
        self.closed = True


def _implements_the_port(
    store: FakeStore, tx: FakeTransaction, context: FakeTransactionContext
) -> tuple[Store, Transaction, TransactionContext]:
    """Never called: mypy checks here that each fake really implements its Protocol."""
    return store, tx, context
