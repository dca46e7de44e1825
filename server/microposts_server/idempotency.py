"""Request-id replay for creates (AIP-155): a create repeated with its request_id makes nothing new.

A create that carries a ``request_id`` runs in one write transaction with a
record of what it returned (``store.RequestRecord``), kept for the request-id
TTL. A replay with the same body gets the remembered response, even if the
resource has changed or gone since; a replay with another body is
``INVALID_ARGUMENT`` on ``request_id``. Only successful creates are recorded,
so a failed one may simply be retried.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from .domain import InvalidArgument, Micropost, User
from .store import DuplicateKey, RequestRecord, Store, Transaction

T = TypeVar("T")

DEFAULT_REQUEST_TTL = 24 * 3600.0
"""Seconds a request_id is remembered (``--request-id-ttl``, in hours, defaults to this)."""


@dataclass(frozen=True, slots=True)
class Codec(Generic[T]):
    """How a create's response is kept in its request record, and read back."""

    encode: Callable[[T], str]
    decode: Callable[[str], T]


def _user_json(user: User) -> str:
    return json.dumps([user.username, user.display_name, user.create_time])


def _user_from_json(text: str) -> User:
    username, display_name, create_time = json.loads(text)
    return User(username, display_name, create_time)


def _post_json(post: Micropost) -> str:
    return json.dumps(
        [
            post.username,
            post.id,
            post.text,
            list(post.referenced_users),
            post.create_time,
            post.update_time,
            post.version,
        ]
    )


def _post_from_json(text: str) -> Micropost:
    username, post_id, body, refs, create_time, update_time, version = json.loads(text)
    return Micropost(username, post_id, body, tuple(refs), create_time, update_time, version)


USER = Codec(_user_json, _user_from_json)
MICROPOST = Codec(_post_json, _post_from_json)


class Idempotency:
    """Runs creates so that a repeated ``request_id`` replays the first result."""

    def __init__(self, store: Store, ttl: float, now: Callable[[], int]) -> None:
        self.store = store
        self.ttl_us = int(ttl * 1_000_000)
        self._now = now

    async def create(
        self,
        scope: str,
        request_id: str,
        body: str,
        codec: Codec[T],
        make: Callable[[Transaction, int], Awaitable[T]],
    ) -> T:
        """Runs ``make(tx, now)`` in a write transaction, once per ``request_id`` in ``scope``.

        ``body`` is a fingerprint of the request's meaningful fields. A
        concurrent twin that commits first makes our insert of the record hit
        ``DuplicateKey("requests")``: we roll back and replay its response.
        """
        for attempt in (1, 2):
            now = self._now()
            try:
                async with self.store.write() as tx:
                    if request_id:
                        prior = await tx.get_request(scope, request_id, now)
                        if prior is not None:
                            return _replay(prior, body, codec)
                    result = await make(tx, now)
                    if request_id:
                        await tx.put_request(
                            RequestRecord(
                                scope, request_id, body, codec.encode(result), now + self.ttl_us
                            )
                        )
                    return result
            except DuplicateKey as exc:
                if exc.table != "requests" or attempt == 2:
                    raise
        raise AssertionError("unreachable")


def _replay(prior: RequestRecord, body: str, codec: Codec[T]) -> T:
    if prior.fingerprint != body:
        raise InvalidArgument.one(
            "request_id", "was already used for a different request; use a new request_id"
        )
    return codec.decode(prior.response)
