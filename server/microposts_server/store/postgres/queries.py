"""Every SQL statement the PostgreSQL store runs for the use cases."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ...domain import Micropost, User
from ..base import DuplicateKey, RequestRecord, Transaction
from ..rows import (
    POST_COLUMNS,
    REQUEST_COLUMNS,
    first_id_below,
    post_from_row,
    post_values,
    update_values,
)
from .transaction import UnitOfWork


def _post(row: Any) -> Micropost:
    return post_from_row(row, row[2].decode())


def _user(row: Any) -> User:
    return User(row[0], row[1].decode(), row[2])


class PgTransaction(UnitOfWork, Transaction):
    """``base.Transaction`` on PostgreSQL: a write is one transaction, a read is not."""

    __slots__ = ()

    async def get_user(self, username: str) -> User | None:
        row = await self._fetchrow(
            "SELECT username, display_name, create_time FROM users WHERE username = $1", username
        )
        return None if row is None else _user(row)

    async def insert_user(self, user: User) -> None:
        await self._execute(
            "INSERT INTO users (username, display_name, create_time) VALUES ($1, $2, $3)",
            user.username,
            user.display_name.encode(),
            user.create_time,
        )

    async def list_users(self, after: str | None, limit: int) -> list[User]:
        rows = await self._fetch(
            "SELECT username, display_name, create_time FROM users "
            "WHERE username > $1 ORDER BY username LIMIT $2",
            after or "",
            limit,
        )
        return [_user(row) for row in rows]

    async def existing_usernames(self, usernames: Sequence[str]) -> set[str]:
        if not usernames:
            return set()
        rows = await self._fetch(
            "SELECT username FROM users WHERE username = ANY($1::text[])", list(usernames)
        )
        return {row[0] for row in rows}

    async def get_micropost(
        self, username: str, post_id: str, *, for_update: bool = False
    ) -> Micropost | None:
        # FOR UPDATE: a concurrent update or delete of the same post waits for
        # ours, then sees the new version (and its etag no longer matches).
        row = await self._fetchrow(
            f"SELECT {POST_COLUMNS} FROM microposts WHERE id = $1 AND username = $2"
            + (" FOR UPDATE" if for_update else ""),
            post_id,
            username,
        )
        return None if row is None else _post(row)

    async def get_microposts(self, post_ids: Sequence[str]) -> dict[str, Micropost]:
        rows = await self._fetch(
            f"SELECT {POST_COLUMNS} FROM microposts WHERE id = ANY($1::text[])", list(post_ids)
        )
        return {row[1]: _post(row) for row in rows}

    async def insert_micropost(self, post: Micropost) -> None:
        await self._execute(
            f"INSERT INTO microposts ({POST_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            *post_values(post, post.text.encode()),
        )

    async def update_micropost(self, post: Micropost) -> None:
        await self._execute(
            "UPDATE microposts SET text = $1, referenced_users = $2, update_time = $3, "
            "version = $4 WHERE id = $5 AND username = $6",
            *update_values(post, post.text.encode()),
        )

    async def delete_micropost(self, username: str, post_id: str) -> None:
        await self._execute(
            "DELETE FROM microposts WHERE id = $1 AND username = $2", post_id, username
        )

    async def list_microposts(
        self, username: str | None, before: str | None, limit: int
    ) -> list[Micropost]:
        below = first_id_below(before)
        if username is None:
            rows = await self._fetch(
                f"SELECT {POST_COLUMNS} FROM microposts WHERE id < $1 ORDER BY id DESC LIMIT $2",
                below,
                limit,
            )
        else:
            rows = await self._fetch(
                f"SELECT {POST_COLUMNS} FROM microposts WHERE username = $1 AND id < $2 "
                "ORDER BY id DESC LIMIT $3",
                username,
                below,
                limit,
            )
        return [_post(row) for row in rows]

    async def get_request(self, scope: str, request_id: str, now: int) -> RequestRecord | None:
        if self.write:  # claim it: a concurrent twin waits for our commit
            sql = f"SELECT {REQUEST_COLUMNS} FROM claim_request($1, $2, $3)"
        else:
            sql = (
                f"SELECT {REQUEST_COLUMNS} FROM requests "
                "WHERE scope = $1 AND request_id = $2 AND expire_time > $3"
            )
        row = await self._fetchrow(sql, scope, request_id, now)
        return None if row is None else RequestRecord(*row)

    async def put_request(self, record: RequestRecord) -> None:
        # An expired twin may linger until the next purge: take its place.
        status = await self._execute(
            f"INSERT INTO requests ({REQUEST_COLUMNS}) VALUES ($1, $2, $3, $4, $5) "
            "ON CONFLICT (scope, request_id) DO UPDATE SET "
            "fingerprint = excluded.fingerprint, response = excluded.response, "
            "expire_time = excluded.expire_time WHERE requests.expire_time <= $6",
            record.scope,
            record.request_id,
            record.fingerprint,
            record.response,
            record.expire_time,
            time.time_ns() // 1000,
        )
        if status.endswith(" 0"):
            raise DuplicateKey("requests")

    async def purge_requests(self, now: int) -> int:
        """Deletes the idempotency records expired by ``now``; returns how many."""
        status = await self._execute("DELETE FROM requests WHERE expire_time <= $1", now)
        return int(status.rsplit(" ", 1)[1])

    async def check_write(self) -> None:
        """Writes one settings row: whether the database accepts writes at all."""
        await self._execute(
            "INSERT INTO settings (key, value) VALUES ('write_check', $1) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            str(time.time_ns()),
        )
