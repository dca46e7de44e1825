# ruff: noqa: ASYNC109 - `timeout=` is this API's contract (a gRPC deadline), not asyncio's
"""``Client`` and ``AsyncClient``: one method per RPC, with deadlines and safe retries.

:class:`_BaseClient` owns everything that is not I/O: configuration, the
default timeout per method, request building (including the ``request_id``
a create always carries), and which calls are safe to retry. The two clients
add only the channel, the call, the pause between attempts, and the page loop.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from types import TracebackType
from typing import Any, Generic, NamedTuple, TypeVar

import grpc
import grpc.aio
from google.protobuf import empty_pb2, field_mask_pb2
from google.protobuf.message import Message

from microposts.v1 import micropost_service_pb2, resources_pb2, user_service_pb2

from ._config import (
    USE_CLIENT_DEFAULT,
    Timeout,
    Timeouts,
    UseClientDefault,
    build_target,
    channel_options,
)
from ._deadlines import current_end
from ._exceptions import budget_spent_error, map_rpc_error
from ._methods import MethodInfo, method_table, retry_safe
from ._retry import DEFAULT_RETRY, Retry, pause_before_retry

__all__ = ["AsyncClient", "Client"]

_monotonic = time.monotonic

User = resources_pb2.User
Micropost = resources_pb2.Micropost

_T = TypeVar("_T")


class _Call(NamedTuple, Generic[_T]):
    """One call to make: the method, as the contract describes it, and the request.

    ``_T`` is the response type, so that each public method is typed from it.
    """

    method: MethodInfo
    request: Message


class _BaseClient:
    """Configuration and request building shared by :class:`Client` and :class:`AsyncClient`."""

    def __init__(
        self,
        target: str | Sequence[str],
        *,
        timeout: float | Timeouts | UseClientDefault | None = USE_CLIENT_DEFAULT,
        retry: Retry | None = DEFAULT_RETRY,
        wait_for_ready: bool = False,
        credentials: grpc.ChannelCredentials | None = None,
        metadata: Sequence[tuple[str, str]] = (),
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self._target = build_target(target)
        self._timeouts = Timeouts.of(timeout)
        self._retry = retry
        self._wait_for_ready = wait_for_ready or None
        self._credentials = credentials
        self._metadata = tuple(metadata) or None
        self._options = channel_options(options)
        self._methods = method_table()

    @property
    def target(self) -> str:
        """The gRPC target the channel connects to."""
        return self._target

    @property
    def timeouts(self) -> Timeouts:
        """The default timeouts of this client's methods."""
        return self._timeouts

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._target!r}, timeout={self._timeouts!r})"

    def _end(self, write: bool, timeout: Timeout) -> float | None:
        """The monotonic end of a call: its own timeout, capped by any ambient budget."""
        if timeout is USE_CLIENT_DEFAULT:
            seconds = self._timeouts.write if write else self._timeouts.read
        else:
            seconds = timeout
        ambient = current_end()
        if seconds is None:
            return ambient
        end = _monotonic() + seconds
        if ambient is not None and ambient < end:
            return ambient
        return end

    def _pause(self, call: _Call[Any], exc: grpc.RpcError, attempts: int, end: float | None) -> Any:
        """Map ``exc``; return the pause before the next attempt, or the error to raise."""
        error = map_rpc_error(exc)
        if self._retry is None or not retry_safe(*call):
            return error
        pause = pause_before_retry(error, self._retry, attempts, end)
        return error if pause is None else pause

    # Request building: one definition for both clients.

    def _create_user(self, username: str, display_name: str, request_id: str | None) -> _Call[User]:
        user = resources_pb2.User(username=username, display_name=display_name)
        request = user_service_pb2.CreateUserRequest(
            user=user, request_id=request_id or str(uuid.uuid4())
        )
        return _Call(self._methods["CreateUser"], request)

    def _get_user(self, name: str) -> _Call[User]:
        return _Call(self._methods["GetUser"], user_service_pb2.GetUserRequest(name=name))

    def _list_users(
        self, page_size: int, page_token: str
    ) -> _Call[user_service_pb2.ListUsersResponse]:
        request = user_service_pb2.ListUsersRequest(page_size=page_size, page_token=page_token)
        return _Call(self._methods["ListUsers"], request)

    def _create_micropost(self, parent: str, text: str, request_id: str | None) -> _Call[Micropost]:
        request = micropost_service_pb2.CreateMicropostRequest(
            parent=parent,
            micropost=resources_pb2.Micropost(text=text),
            request_id=request_id or str(uuid.uuid4()),
        )
        return _Call(self._methods["CreateMicropost"], request)

    def _get_micropost(self, name: str) -> _Call[Micropost]:
        return _Call(
            self._methods["GetMicropost"], micropost_service_pb2.GetMicropostRequest(name=name)
        )

    def _batch_get_microposts(
        self, names: Sequence[str]
    ) -> _Call[micropost_service_pb2.BatchGetMicropostsResponse]:
        if isinstance(names, str):
            raise TypeError("names must be a sequence of resource names, not one string")
        request = micropost_service_pb2.BatchGetMicropostsRequest(names=names)
        return _Call(self._methods["BatchGetMicroposts"], request)

    def _list_microposts(
        self, parent: str, page_size: int, page_token: str
    ) -> _Call[micropost_service_pb2.ListMicropostsResponse]:
        request = micropost_service_pb2.ListMicropostsRequest(
            parent=parent, page_size=page_size, page_token=page_token
        )
        return _Call(self._methods["ListMicroposts"], request)

    def _update_micropost(self, name: str, text: str, etag: str | None) -> _Call[Micropost]:
        request = micropost_service_pb2.UpdateMicropostRequest(
            micropost=resources_pb2.Micropost(name=name, text=text, etag=etag or ""),
            update_mask=field_mask_pb2.FieldMask(paths=["text"]),
        )
        return _Call(self._methods["UpdateMicropost"], request)

    def _delete_micropost(self, name: str, etag: str | None) -> _Call[empty_pb2.Empty]:
        request = micropost_service_pb2.DeleteMicropostRequest(name=name, etag=etag or "")
        return _Call(self._methods["DeleteMicropost"], request)

    def _callables(self, channel: Any) -> dict[str, Any]:
        """One callable per RPC of the contract, as the generated stubs would build them."""
        return {
            name: channel.unary_unary(
                info.path,
                request_serializer=info.request_type.SerializeToString,
                response_deserializer=info.response_type.FromString,
                _registered_method=True,
            )
            for name, info in self._methods.items()
        }


class Client(_BaseClient):
    """Blocking MicroPosts client; a context manager that owns its channel.

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
    ``credentials``: ``grpc.ssl_channel_credentials(...)`` for TLS.
    ``metadata``: sent with every call (e.g. ``[("authorization", "Bearer …")]``).
    ``options``: gRPC channel options, overriding the defaults.

    Every method takes ``timeout=``: not given → the default above; a number →
    that many seconds (``0`` fails at once with ``DeadlineExceeded``); ``None``
    → no timeout of its own. In every case the call also ends no later than an
    enclosing :func:`deadline` scope or the deadline of the gRPC call being
    handled (see :class:`DeadlineInterceptor`). Failures raise a
    :class:`ServiceError` subclass.
    """

    def __init__(
        self,
        target: str | Sequence[str],
        *,
        timeout: float | Timeouts | UseClientDefault | None = USE_CLIENT_DEFAULT,
        retry: Retry | None = DEFAULT_RETRY,
        wait_for_ready: bool = False,
        credentials: grpc.ChannelCredentials | None = None,
        metadata: Sequence[tuple[str, str]] = (),
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        super().__init__(
            target,
            timeout=timeout,
            retry=retry,
            wait_for_ready=wait_for_ready,
            credentials=credentials,
            metadata=metadata,
            options=options,
        )
        if credentials is None:
            self._channel = grpc.insecure_channel(self._target, self._options)
        else:
            self._channel = grpc.secure_channel(self._target, credentials, self._options)
        self._stubs = self._callables(self._channel)

    def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _invoke(self, call: _Call[_T], timeout: Timeout) -> _T:
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
                result: _T = fn(
                    request,
                    timeout=remaining,
                    metadata=self._metadata,
                    wait_for_ready=self._wait_for_ready,
                )
                return result
            except grpc.RpcError as exc:
                outcome = self._pause(call, exc, attempts, end)
                if isinstance(outcome, Exception):
                    raise outcome from exc
            time.sleep(outcome)

    def create_user(
        self,
        *,
        username: str,
        display_name: str = "",
        request_id: str | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> User:
        """Create ``users/{username}``; ``request_id`` (filled if omitted) makes retries safe."""
        return self._invoke(self._create_user(username, display_name, request_id), timeout)

    def get_user(self, *, name: str, timeout: Timeout = USE_CLIENT_DEFAULT) -> User:
        """Get a user by resource name (``"users/alice"``)."""
        return self._invoke(self._get_user(name), timeout)

    def list_users(
        self, *, page_size: int = 0, page_token: str = "", timeout: Timeout = USE_CLIENT_DEFAULT
    ) -> Iterator[User]:
        """Iterate over every user, by username, fetching pages as needed (``timeout`` per page)."""
        while True:
            page = self._invoke(self._list_users(page_size, page_token), timeout)
            yield from page.users
            page_token = page.next_page_token
            if not page_token:
                return

    def create_micropost(
        self,
        *,
        parent: str,
        text: str,
        request_id: str | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> Micropost:
        """Publish a post under ``parent`` (``"users/alice"``); safe to retry (``request_id``)."""
        return self._invoke(self._create_micropost(parent, text, request_id), timeout)

    def get_micropost(self, *, name: str, timeout: Timeout = USE_CLIENT_DEFAULT) -> Micropost:
        """Get a post by resource name."""
        return self._invoke(self._get_micropost(name), timeout)

    def batch_get_microposts(
        self, *, names: Sequence[str], timeout: Timeout = USE_CLIENT_DEFAULT
    ) -> micropost_service_pb2.BatchGetMicropostsResponse:
        """Get up to 100 posts in the order of ``names``; ``NotFound`` names any missing one."""
        return self._invoke(self._batch_get_microposts(names), timeout)

    def list_microposts(
        self,
        *,
        parent: str,
        page_size: int = 0,
        page_token: str = "",
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> Iterator[Micropost]:
        """Iterate over a user's posts (``"users/-"``: everyone's), newest first, page by page."""
        while True:
            page = self._invoke(self._list_microposts(parent, page_size, page_token), timeout)
            yield from page.microposts
            page_token = page.next_page_token
            if not page_token:
                return

    def update_micropost(
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
        return self._invoke(self._update_micropost(name, text, etag), timeout)

    def delete_micropost(
        self, *, name: str, etag: str | None = None, timeout: Timeout = USE_CLIENT_DEFAULT
    ) -> None:
        """Delete a post; with ``etag``, only if unchanged since (else ``Aborted``)."""
        self._invoke(self._delete_micropost(name, etag), timeout)


class AsyncClient(_BaseClient):
    """The asyncio twin of :class:`Client`: same arguments, same methods, awaited.

    Create it inside the event loop that uses it (gRPC binds the channel to
    it); ``async with AsyncClient(target) as client: await client.get_user(...)``.
    ``list_*`` return async iterators: ``async for post in client.list_microposts(...)``.
    """

    def __init__(
        self,
        target: str | Sequence[str],
        *,
        timeout: float | Timeouts | UseClientDefault | None = USE_CLIENT_DEFAULT,
        retry: Retry | None = DEFAULT_RETRY,
        wait_for_ready: bool = False,
        credentials: grpc.ChannelCredentials | None = None,
        metadata: Sequence[tuple[str, str]] = (),
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        super().__init__(
            target,
            timeout=timeout,
            retry=retry,
            wait_for_ready=wait_for_ready,
            credentials=credentials,
            metadata=metadata,
            options=options,
        )
        if credentials is None:
            self._channel = grpc.aio.insecure_channel(self._target, self._options)
        else:
            self._channel = grpc.aio.secure_channel(self._target, credentials, self._options)
        self._stubs = self._callables(self._channel)

    async def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        await self._channel.close(None)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _invoke(self, call: _Call[_T], timeout: Timeout) -> _T:
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
                )
                return result
            except grpc.RpcError as exc:
                outcome = self._pause(call, exc, attempts, end)
                if isinstance(outcome, Exception):
                    raise outcome from exc
            await asyncio.sleep(outcome)

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

    async def list_users(
        self, *, page_size: int = 0, page_token: str = "", timeout: Timeout = USE_CLIENT_DEFAULT
    ) -> AsyncIterator[User]:
        """Iterate over every user, by username, fetching pages as needed (``timeout`` per page)."""
        while True:
            page = await self._invoke(self._list_users(page_size, page_token), timeout)
            for user in page.users:
                yield user
            page_token = page.next_page_token
            if not page_token:
                return

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

    async def list_microposts(
        self,
        *,
        parent: str,
        page_size: int = 0,
        page_token: str = "",
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> AsyncIterator[Micropost]:
        """Iterate over a user's posts (``"users/-"``: everyone's), newest first, page by page."""
        while True:
            page = await self._invoke(self._list_microposts(parent, page_size, page_token), timeout)
            for post in page.microposts:
                yield post
            page_token = page.next_page_token
            if not page_token:
                return

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
