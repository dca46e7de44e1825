# ruff: noqa: ASYNC109 - `timeout=` is this API's contract (a gRPC deadline), not asyncio's
"""The MicroPosts client's calls: one method per RPC, with deadlines and safe retries.

This file is the one source of both clients. ``AsyncClient`` is written here
by hand; ``_sync_client.py`` (``Client``) is generated from it by
``scripts/unasync.py`` (``make unasync``), which rewrites names only
(``async def`` -> ``def``, ``await`` dropped, ``grpc.aio.`` -> ``grpc.``...).
Write nothing here that those rewrites cannot turn into the blocking twin;
a test fails when the generated file is stale.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from functools import partial
from typing import Any

import grpc
import grpc.aio
from google.protobuf.message import Message

from microposts.v1 import micropost_service_pb2

from ._base import _T, Micropost, User, _BaseClient, _Call, _monotonic
from ._config import USE_CLIENT_DEFAULT, Timeout
from ._exceptions import budget_spent_error
from ._retry import pause_or_raise

__all__ = ["AsyncClient"]


class AsyncClient(_BaseClient):
    """MicroPosts client for asyncio; an async context manager that owns its channel.

    ``async with AsyncClient("localhost:50051") as client:``, then
    ``await client.get_user(name="users/alice")``; ``list_*`` return iterators
    that fetch pages as needed: ``async for post in client.list_microposts(...)``.
    Create it inside the event loop that uses it: gRPC binds the channel to that loop.

    ``target`` is ``"host:port"``, any gRPC target URI (``"dns:///svc:50051"``),
    or a list of ``"ip:port"`` addresses; calls are balanced ``round_robin``
    over every address the target resolves to.

    ``timeout``: the default for every method in seconds, a :class:`Timeouts`
    (read and write defaults), or ``None`` for no client deadline at all — a
    foot-gun: a call to a server that hangs then waits forever unless a
    :func:`deadline` scope or an inherited deadline bounds it. Not given:
    :data:`DEFAULT_READ_TIMEOUT` for reads, :data:`DEFAULT_WRITE_TIMEOUT` for
    writes.

    ``retry``: a :class:`Retry` for safe calls, ``None`` to never retry.
    ``wait_for_ready``: queue calls until the channel connects (within the
    deadline) instead of failing fast with ``Unavailable`` while it is down.
    ``credentials``: :func:`tls_credentials` (or any ``grpc.ChannelCredentials``)
    for TLS and mTLS; without it a loopback target gets gRPC's local
    credentials, anything else plaintext.
    ``token``: a bearer token, or a callable returning a fresh one (asked
    again shortly before the last one expires), sent as ``authorization:
    Bearer …`` with every call; only over TLS or to a loopback address
    (``ValueError`` otherwise).
    ``metadata``: sent with every call.
    ``options``: gRPC channel options, overriding the defaults.

    Every method takes ``timeout=``: not given → the default above; a number →
    that many seconds (``0`` fails at once with ``DeadlineExceeded``); ``None``
    → no timeout of its own. In every case the call also ends no later than an
    enclosing :func:`deadline` scope or the deadline of the gRPC call being
    handled (see :class:`DeadlineInterceptor`). Failures raise a
    :class:`ServiceError` subclass. :meth:`call` reaches any RPC of the
    contract by name, typed method or not.
    """

    _channel: grpc.aio.Channel

    def _open(self) -> None:
        if self._credentials is None:
            self._channel = grpc.aio.insecure_channel(self._target, self._options)
        else:
            self._channel = grpc.aio.secure_channel(self._target, self._credentials, self._options)
        self._stubs = self._callables(self._channel)

    async def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        await self._channel.close(None)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _invoke(self, call: _Call[_T], timeout: Timeout) -> _T:
        """Attempts at ``call`` until one succeeds or the retry step raises, under one deadline."""
        method, request = call
        end = self._end(not method.read, timeout)
        fn = self._stubs[method.name]
        attempts = 0
        while True:
            remaining = None
            if end is not None:
                remaining = end - _monotonic()
                if remaining <= 0:
                    raise budget_spent_error(method.name)
            attempts += 1
            try:
                result: _T = await fn(
                    request,
                    timeout=remaining,
                    metadata=self._metadata,
                    wait_for_ready=self._wait_for_ready,
                    credentials=self._forwarded(),
                )
                return result
            except grpc.RpcError as exc:
                pause = pause_or_raise(exc, method, request, self._retry, attempts, end)
            await asyncio.sleep(pause)

    async def _pages(
        self, build: Callable[[str], _Call[Any]], items: str, page_token: str, timeout: Timeout
    ) -> AsyncIterator[Any]:
        """The ``items`` field of every page, from ``page_token`` on (``timeout`` per page)."""
        while True:
            page = await self._invoke(build(page_token), timeout)
            for item in getattr(page, items):
                yield item
            page_token = page.next_page_token
            if not page_token:
                return

    async def call(
        self, method: str, request: Message, *, timeout: Timeout = USE_CLIENT_DEFAULT
    ) -> Message:
        """Call any RPC of the contract by name (``"GetUser"``) with its request message.

        What the typed methods do, for every RPC, including one added to the
        contract before it has a typed method: the read or write default
        timeout, retries only where repeating ``request`` is safe (so a create
        is retried only if ``request`` carries a ``request_id``: unlike the
        typed methods, nothing is filled in), and a :class:`ServiceError`
        subclass on failure. Returns the response message.

        Raises :class:`ValueError` for a method the contract does not have,
        :class:`TypeError` for a request of another message type.
        """
        return await self._invoke(self._lookup(method, request), timeout)

    # The typed methods: one line each over _invoke; alike in shape, each its own RPC's API.

    async def create_user(
        self,
        *,
        username: str,
        display_name: str = "",
        request_id: str | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> User:
        """Create ``users/{username}``; ``request_id`` (filled if omitted) makes retries safe."""
        return await self._invoke(self._create_user(username, display_name, request_id), timeout)

    async def get_user(self, *, name: str, timeout: Timeout = USE_CLIENT_DEFAULT) -> User:
        """Get a user by resource name (``"users/alice"``)."""
        return await self._invoke(self._get_user(name), timeout)

    def list_users(
        self, *, page_size: int = 0, page_token: str = "", timeout: Timeout = USE_CLIENT_DEFAULT
    ) -> AsyncIterator[User]:
        """Iterate over every user, by username, fetching pages as needed (``timeout`` per page)."""
        return self._pages(partial(self._list_users, page_size), "users", page_token, timeout)

    async def create_micropost(
        self,
        *,
        parent: str,
        text: str,
        request_id: str | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> Micropost:
        """Publish a post under ``parent`` (``"users/alice"``); safe to retry (``request_id``)."""
        return await self._invoke(self._create_micropost(parent, text, request_id), timeout)

    async def get_micropost(self, *, name: str, timeout: Timeout = USE_CLIENT_DEFAULT) -> Micropost:
        """Get a post by resource name."""
        return await self._invoke(self._get_micropost(name), timeout)

    async def batch_get_microposts(
        self, *, names: Sequence[str], timeout: Timeout = USE_CLIENT_DEFAULT
    ) -> micropost_service_pb2.BatchGetMicropostsResponse:
        """Get up to 100 posts in the order of ``names``; ``NotFound`` names any missing one."""
        return await self._invoke(self._batch_get_microposts(names), timeout)

    def list_microposts(
        self,
        *,
        parent: str,
        page_size: int = 0,
        page_token: str = "",
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> AsyncIterator[Micropost]:
        """Iterate over a user's posts (``"users/-"``: everyone's), newest first, page by page."""
        build = partial(self._list_microposts, parent, page_size)
        return self._pages(build, "microposts", page_token, timeout)

    async def update_micropost(
        self,
        *,
        name: str,
        text: str,
        etag: str | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> Micropost:
        """Change a post's text; with ``etag``, only if unchanged since (else ``Aborted``).

        Retried only when ``etag`` is given: a blind update replayed after a
        lost reply could overwrite someone else's newer text.
        """
        return await self._invoke(self._update_micropost(name, text, etag), timeout)

    async def delete_micropost(
        self, *, name: str, etag: str | None = None, timeout: Timeout = USE_CLIENT_DEFAULT
    ) -> None:
        """Delete a post; with ``etag``, only if unchanged since (else ``Aborted``)."""
        await self._invoke(self._delete_micropost(name, etag), timeout)
