"""The storage port: what use cases need from a database, and nothing more.

A ``Store`` hands out transactions: ``async with store.write() as tx`` commits
when the block ends normally and rolls back whole when it raises (a deadline,
a cancellation, a bug): a write is never half-applied. ``store.read()`` gives
the same interface for reads. Each adapter bounds its work by the current
call's budget (``deadlines.CURRENT``), adds the time it spent to the
budget, and translates its driver's errors into the ones below or into
domain errors (``Unavailable``, ``DeadlineExceeded``) so that no driver
exception reaches the use cases.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from ..domain import Micropost, User


class DuplicateKey(Exception):
    """An insert hit a unique key; ``table`` says which (``users``, ``requests``)."""

    def __init__(self, table: str) -> None:
        super().__init__(f"duplicate key in {table}")
        self.table = table


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """What a create with a ``request_id`` returned, kept for replays (AIP-155)."""

    scope: str  # method and parent, e.g. "CreateMicropost users/alice"
    request_id: str
    fingerprint: str  # digest of the request body, to spot a reused id
    response: str  # the response, serialised by the use case
    expire_time: int  # microseconds since the epoch


class Transaction(Protocol):
    """Reads and writes inside one transaction."""

    async def get_user(self, username: str) -> User | None: ...

    async def insert_user(self, user: User) -> None:
        """Raises ``DuplicateKey("users")`` if the username is taken."""

    async def list_users(self, after: str | None, limit: int) -> list[User]:
        """Users with username > ``after``, ordered by username."""

    async def existing_usernames(self, usernames: Sequence[str]) -> set[str]: ...

    async def get_micropost(
        self, username: str, post_id: str, *, for_update: bool = False
    ) -> Micropost | None: ...

    async def get_microposts(self, post_ids: Sequence[str]) -> dict[str, Micropost]:
        """The posts that exist among ``post_ids``, keyed by id."""

    async def insert_micropost(self, post: Micropost) -> None: ...

    async def update_micropost(self, post: Micropost) -> None:
        """Stores text, referenced_users, update_time and version."""

    async def delete_micropost(self, username: str, post_id: str) -> None: ...

    async def list_microposts(
        self, username: str | None, before: str | None, limit: int
    ) -> list[Micropost]:
        """Newest first (id descending), ids < ``before``; ``username`` None: everyone."""

    async def get_request(self, scope: str, request_id: str, now: int) -> RequestRecord | None:
        """The unexpired record for this request id, if any."""

    async def put_request(self, record: RequestRecord) -> None:
        """Raises ``DuplicateKey("requests")`` if one exists (a concurrent twin)."""


class TransactionContext(Protocol):
    """``async with`` yields a Transaction; commit on success, rollback on error."""

    async def __aenter__(self) -> Transaction: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class Store(Protocol):
    """A database holding users, posts and idempotency records."""

    def read(self) -> TransactionContext:
        """A read-only transaction (or consistent reads) bounded by the call's budget."""

    def write(self) -> TransactionContext:
        """A read-write transaction bounded by the call's budget."""

    async def page_token_key(self) -> bytes:
        """The secret that signs page tokens, shared by every replica on this store."""

    async def ping(self) -> None:
        """Raises ``domain.Unavailable`` if the store cannot serve (health checks)."""

    async def purge_requests(self, now: int) -> int:
        """Deletes expired idempotency records; returns how many."""

    async def close(self) -> None: ...
