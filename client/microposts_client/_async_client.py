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
from google.protobuf.message import Message

from microposts.v1 import micropost_service_pb2

from ._base import _T, Metadata, Micropost, User, _BaseClient, _Call, _monotonic
from ._channels import LoopChannel, open_aio_channel
from ._config import USE_CLIENT_DEFAULT, Timeout
from ._exceptions import budget_spent_error
from ._pages import Page
from ._tracing import start as start_trace

__all__ = ["AsyncClient"]


class AsyncClient(_BaseClient):
    """MicroPosts client for asyncio; an async context manager that owns its channel.

    ``async with AsyncClient("localhost:50051") as client:``, then
    ``await client.get_user(name="users/alice")``; ``list_*`` return iterators
    that fetch pages as needed: ``async for post in client.list_microposts(...)``.
    It may be created anywhere (at import, in a framework's startup hook): gRPC
    binds a channel to an event loop, so the channel is opened by the first
    call, in that call's loop; a client in use on one loop refuses calls from
    another (create one per loop).

    ``target`` is ``"host:port"``, any gRPC target URI (``"dns:///svc:50051"``),
    or a list of ``"ip:port"`` addresses; calls are balanced ``round_robin``
    over every address the target resolves to. It is checked here: a URL
    (``http://...``), a missing port or a path raise :class:`ValueError`
    showing the right form. Not given: ``MICROPOSTS_TARGET``.

    ``timeout``: the default for every method in seconds, a :class:`Timeouts`
    (read and write defaults), or ``None`` for no client deadline at all — a
    foot-gun: a call to a server that hangs then waits forever unless a
    :func:`deadline` scope or an inherited deadline bounds it. Not given:
    ``MICROPOSTS_READ_TIMEOUT`` and ``MICROPOSTS_WRITE_TIMEOUT`` if set, else
    :data:`DEFAULT_READ_TIMEOUT` for reads, :data:`DEFAULT_WRITE_TIMEOUT` for
    writes.

    ``retry``: a :class:`Retry` for safe calls (with its retry budget), ``None`` to
    never retry. ``throttle``: adaptive throttling's :class:`Throttle`, ``None`` to
    send every call however many the server rejects.
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
    ``interceptors``: ``grpc.aio.UnaryUnaryClientInterceptor`` objects
    (``grpc.UnaryUnaryClientInterceptor`` for ``Client``) every call goes
    through, each attempt of a retried one included, the first outermost: for
    instrumentation.

    Every method takes ``timeout=``: not given → the default above; a number →
    that many seconds (``0`` fails at once with ``DeadlineExceeded``); ``None``
    → no timeout of its own. In every case the call also ends no later than an
    enclosing :func:`deadline` scope or the deadline of the gRPC call being
    handled (see :class:`DeadlineInterceptor`). Every method also takes
    ``metadata=``, sent with this call only (e.g. ``[("x-request-id", "…")]``)
    besides the client's own; a key given here replaces the client's values
    for it. Failures raise a :class:`ServiceError` subclass. :meth:`call`
    reaches any RPC of the contract by name, typed method or not.
    """

    _channel: LoopChannel

    def _open(self) -> None:
        connect = partial(
            open_aio_channel, self._target, self._credentials, self._options, self._interceptors
        )
        self._channel = LoopChannel(connect, self._callables)

    async def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        self._policy.closed = True
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _invoke(self, call: _Call[_T], timeout: Timeout, metadata: Metadata | None) -> _T:
        """Attempts at ``call`` until one succeeds or the policy raises, under one deadline."""
        method, request = call
        end = self._end(not method.read, timeout)
        fn = self._channel.stubs()[method.name]
        metadata = self._call_metadata(metadata) if metadata else self._metadata
        policy = self._policy
        trace = start_trace(method)  # None: nothing to record or pass on
        attempts = 0
        try:
            while True:
                remaining = None
                if end is not None:
                    remaining = end - _monotonic()
                    if remaining <= 0:
                        raise budget_spent_error(method.name)
                attempts += 1
                policy.before(method, attempts)
                try:
                    result: _T = await fn(
                        request,
                        timeout=remaining,
                        metadata=metadata if trace is None else trace.attempt(metadata, attempts),
                        wait_for_ready=self._wait_for_ready,
                        credentials=self._forwarded(),
                    )
                except grpc.RpcError as exc:
                    if trace is not None:
                        trace.attempt_ended(exc.code().value[0])
                    pause = policy.failed(exc, method, request, attempts, end)
                else:
                    policy.succeeded()
                    if trace is not None:
                        trace.attempt_ended(0)
                        trace.ended()
                    return result
                await asyncio.sleep(pause)
        except BaseException as exc:
            if trace is not None:
                trace.ended(exc)
            raise

    async def _pages(
        self,
        build: Callable[[str], _Call[Any]],
        items: str,
        page_token: str,
        timeout: Timeout,
        metadata: Metadata | None,
    ) -> AsyncIterator[Any]:
        """The ``items`` field of every page, from ``page_token`` on (``timeout`` per page)."""
        while True:
            page = await self._invoke(build(page_token), timeout, metadata)
            for item in getattr(page, items):
                yield item
            page_token = page.next_page_token
            if not page_token:
                return

    async def call(
        self,
        method: str,
        request: Message,
        *,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        metadata: Metadata | None = None,
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
        return await self._invoke(self._lookup(method, request), timeout, metadata)

    # The typed methods: one line each over _invoke; alike in shape, each its own RPC's API.

    async def create_user(
        self,
        *,
        username: str,
        display_name: str = "",
        request_id: str | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        metadata: Metadata | None = None,
    ) -> User:
        """Create ``users/{username}``; ``request_id`` (filled if omitted) makes retries safe."""
        call = self._create_user(username, display_name, request_id)
        return await self._invoke(call, timeout, metadata)

    async def get_user(
        self, *, name: str, timeout: Timeout = USE_CLIENT_DEFAULT, metadata: Metadata | None = None
    ) -> User:
        """Get a user by resource name (``"users/alice"``)."""
        return await self._invoke(self._get_user(name), timeout, metadata)

    def list_users(
        self,
        *,
        page_size: int = 0,
        page_token: str = "",
        timeout: Timeout = USE_CLIENT_DEFAULT,
        metadata: Metadata | None = None,
    ) -> AsyncIterator[User]:
        """Iterate over every user, by username, fetching pages as needed (``timeout`` per page).

        ``page_size``: users per call (0: the server's 50; at most 1000);
        ``page_token``: start at that page. See :class:`Page` for the rules.
        """
        build = partial(self._list_users, page_size)
        return self._pages(build, "users", page_token, timeout, metadata)

    async def list_users_page(
        self,
        *,
        page_size: int = 0,
        page_token: str = "",
        timeout: Timeout = USE_CLIENT_DEFAULT,
        metadata: Metadata | None = None,
    ) -> Page[User]:
        """One page of users, by username: ``.items`` and ``.next_page_token`` ("" if last).

        ``page_size``: at most that many (0: the server's 50; above 1000: 1000;
        negative: ``InvalidArgument``); ``page_token``: "" for the first page,
        else the previous page's ``next_page_token``. See :class:`Page`.
        """
        response = await self._invoke(self._list_users(page_size, page_token), timeout, metadata)
        return self._users_page(response)

    async def create_micropost(
        self,
        *,
        parent: str,
        text: str,
        request_id: str | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        metadata: Metadata | None = None,
    ) -> Micropost:
        """Publish a post under ``parent`` (``"users/alice"``); safe to retry (``request_id``)."""
        call = self._create_micropost(parent, text, request_id)
        return await self._invoke(call, timeout, metadata)

    async def get_micropost(
        self, *, name: str, timeout: Timeout = USE_CLIENT_DEFAULT, metadata: Metadata | None = None
    ) -> Micropost:
        """Get a post by resource name."""
        return await self._invoke(self._get_micropost(name), timeout, metadata)

    async def batch_get_microposts(
        self,
        *,
        names: Sequence[str],
        timeout: Timeout = USE_CLIENT_DEFAULT,
        metadata: Metadata | None = None,
    ) -> micropost_service_pb2.BatchGetMicropostsResponse:
        """Get up to 100 posts in the order of ``names``; ``NotFound`` names any missing one."""
        return await self._invoke(self._batch_get_microposts(names), timeout, metadata)

    def list_microposts(
        self,
        *,
        parent: str,
        page_size: int = 0,
        page_token: str = "",
        timeout: Timeout = USE_CLIENT_DEFAULT,
        metadata: Metadata | None = None,
    ) -> AsyncIterator[Micropost]:
        """Iterate over a user's posts (``"users/-"``: everyone's), newest first, page by page.

        ``page_size``: posts per call (0: the server's 50; at most 1000);
        ``page_token``: start at that page. See :class:`Page` for the rules.
        """
        build = partial(self._list_microposts, parent, page_size)
        return self._pages(build, "microposts", page_token, timeout, metadata)

    async def list_microposts_page(
        self,
        *,
        parent: str,
        page_size: int = 0,
        page_token: str = "",
        timeout: Timeout = USE_CLIENT_DEFAULT,
        metadata: Metadata | None = None,
    ) -> Page[Micropost]:
        """One page of a user's posts (``"users/-"``: everyone's), newest first.

        ``.items`` and ``.next_page_token`` ("" if last). ``page_size``: at most
        that many (0: the server's 50; above 1000: 1000; negative:
        ``InvalidArgument``); ``page_token``: "" for the first page, else the
        previous page's ``next_page_token``, for the same ``parent``. See
        :class:`Page`.
        """
        call = self._list_microposts(parent, page_size, page_token)
        return self._microposts_page(await self._invoke(call, timeout, metadata))

    async def update_micropost(
        self,
        *,
        name: str,
        text: str,
        etag: str | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        metadata: Metadata | None = None,
    ) -> Micropost:
        """Change a post's text; with ``etag``, only if unchanged since (else ``Aborted``).

        Retried only when ``etag`` is given: a blind update replayed after a
        lost reply could overwrite someone else's newer text.
        """
        call = self._update_micropost(name, text, etag)
        return await self._invoke(call, timeout, metadata)

    async def delete_micropost(
        self,
        *,
        name: str,
        etag: str | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        metadata: Metadata | None = None,
    ) -> None:
        """Delete a post; with ``etag``, only if unchanged since (else ``Aborted``)."""
        await self._invoke(self._delete_micropost(name, etag), timeout, metadata)
