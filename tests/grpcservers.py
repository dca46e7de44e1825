"""Real in-process gRPC servers for the client tests: stalled, scripted, relaying, a TCP proxy.

Each runs on its own asyncio loop in a daemon thread (:class:`LoopThread`), so
sync tests can call them with the blocking client while they serve.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import grpc
import grpc.aio
from google.protobuf.message import Message

from microposts.v1 import resources_pb2, user_service_pb2
from microposts_client import AsyncClient, DeadlineInterceptor, ServiceError, method_table

_T = TypeVar("_T")

Behavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]


class LoopThread:
    """An asyncio event loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float = 30.0) -> _T:
        """Run ``coro`` on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


def handlers(behaviors: dict[str, Behavior]) -> list[grpc.GenericRpcHandler[Any, Any]]:
    """Generic handlers serving ``behaviors`` (method name -> async behaviour)."""
    by_service: dict[str, dict[str, grpc.RpcMethodHandler[Any, Any]]] = {}
    for name, behavior in behaviors.items():
        method = method_table()[name]
        by_service.setdefault(method.service, {})[name] = grpc.unary_unary_rpc_method_handler(
            behavior,
            request_deserializer=method.request_type.FromString,
            response_serializer=lambda m: m.SerializeToString(),
        )
    return [grpc.method_handlers_generic_handler(s, m) for s, m in by_service.items()]


async def start_aio_server(
    behaviors: dict[str, Behavior], interceptors: tuple[Any, ...] = ()
) -> tuple[grpc.aio.Server, str]:
    """Start a grpc.aio server on a free port; returns it and its address."""
    server = grpc.aio.server(interceptors=interceptors)
    server.add_generic_rpc_handlers(handlers(behaviors))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


class Downstream:
    """A UserService.GetUser that records each call's deadline and may stall.

    ``ends``: for each call, the monotonic time its deadline ends (None: no
    deadline); ``stall``: when set, calls never answer (until cancelled).
    """

    def __init__(self, loop: LoopThread, stall: bool = True) -> None:
        self.loop = loop
        self.stall = stall
        self.ends: list[float | None] = []
        self.server, self.address = loop.run(start_aio_server({"GetUser": self._get_user}))

    @property
    def calls(self) -> int:
        return len(self.ends)

    async def _get_user(
        self, request: user_service_pb2.GetUserRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> resources_pb2.User:
        remaining = context.time_remaining()
        self.ends.append(None if remaining is None else time.monotonic() + remaining)
        if self.stall:
            await asyncio.sleep(3600)
        return resources_pb2.User(name=request.name)

    def stop(self) -> None:
        self.loop.run(self.server.stop(0))


class TcpProxy:
    """A TCP proxy to ``upstream`` that closes every connection while ``refusing``."""

    def __init__(self, loop: LoopThread, upstream: str, refusing: bool = True) -> None:
        self.loop = loop
        self.upstream_host, port = upstream.rsplit(":", 1)
        self.upstream_port = int(port)
        self.refusing = refusing
        self.refused = 0
        self.forwarded = 0
        self.server = loop.run(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            self.refused += 1
            writer.close()
            return
        self.forwarded += 1
        up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def stop(self) -> None:
        # On the loop's own thread: asyncio.Server is not thread-safe, and
        # closing it from the test's thread raced with its _wakeup.
        async def close() -> None:
            self.server.close()

        self.loop.run(close())


def rich_status(
    code: grpc.StatusCode, message: str, *details: Message
) -> tuple[tuple[str, bytes | str], ...]:
    """Trailing metadata carrying a google.rpc.Status with ``details``, as servers send it."""
    from google.rpc import status_pb2
    from grpc_status import rpc_status

    status = status_pb2.Status(code=code.value[0], message=message)
    for detail in details:
        status.details.add().Pack(detail)
    return tuple(rpc_status.to_status(status).trailing_metadata)


class Forwarder:
    """A grpc.aio server that forwards every call, as bytes, to ``upstream``.

    ``lose_replies[method]``: how many of that method's replies to drop after
    the upstream answered, failing the call with UNAVAILABLE instead (the
    "lost response" fault). ``requests[method]``: the raw requests seen.
    """

    def __init__(self, loop: LoopThread, upstream: str) -> None:
        self.loop = loop
        self.lose_replies: dict[str, int] = {}
        self.requests: dict[str, list[bytes]] = {}

        async def setup() -> tuple[grpc.aio.Server, str, grpc.aio.Channel]:
            channel = grpc.aio.insecure_channel(upstream)
            server = grpc.aio.server()
            server.add_generic_rpc_handlers([_ForwardAll(self, channel)])
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            return server, f"127.0.0.1:{port}", channel

        self.server, self.address, self.channel = loop.run(setup())

    async def forward(
        self, path: str, request: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes:
        method = path.rsplit("/", 1)[1]
        self.requests.setdefault(method, []).append(request)
        call = self.channel.unary_unary(path, None, None)
        try:
            reply: bytes = await call(request, timeout=context.time_remaining())
        except grpc.aio.AioRpcError as exc:
            trailers: Any = exc.trailing_metadata() or ()
            await context.abort(exc.code(), exc.details() or "", list(trailers))
        if self.lose_replies.get(method, 0) > 0:
            self.lose_replies[method] -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "reply lost (injected)")
        return reply

    def stop(self) -> None:
        self.loop.run(self.server.stop(0))
        self.loop.run(self.channel.close(None))


class _ForwardAll(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    def __init__(self, owner: Forwarder, channel: grpc.aio.Channel) -> None:
        self.owner = owner

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        path = handler_call_details.method

        async def behavior(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            return await self.owner.forward(path, request, context)

        return grpc.unary_unary_rpc_method_handler(behavior)


class Scripted:
    """In-process MicroPosts fake whose calls fail as scripted, first to last.

    ``script[method]``: outcomes for successive calls: a ``(code, trailing
    metadata)`` pair fails that call; ``"lose"`` does the work and then fails
    with UNAVAILABLE (a lost reply). Once a script runs out, calls succeed.
    CreateMicropost honours ``request_id`` like the real server does.
    """

    def __init__(self, loop: LoopThread) -> None:
        self.loop = loop
        self.script: dict[str, list[Any]] = {}
        self.requests: dict[str, list[Any]] = {}
        self.posts: dict[str, resources_pb2.Micropost] = {}  # request_id -> post
        behaviors = {name: self._behavior(name) for name in method_table()}
        self.server, self.address = loop.run(start_aio_server(behaviors))

    def attempts(self, method: str) -> int:
        return len(self.requests.get(method, []))

    def _behavior(self, method: str) -> Behavior:
        async def behavior(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            self.requests.setdefault(method, []).append(request)
            steps = self.script.get(method)
            step = steps.pop(0) if steps else None
            if step is not None and step != "lose":
                code, trailers = step
                await context.abort(code, f"scripted {code.name}", trailers)
            reply = self._answer(method, request)
            if step == "lose":
                await context.abort(grpc.StatusCode.UNAVAILABLE, "reply lost (injected)")
            return reply

        return behavior

    def _answer(self, method: str, request: Any) -> Message:
        if method == "CreateMicropost":
            post = self.posts.get(request.request_id)
            if post is None:
                post = resources_pb2.Micropost(
                    name=f"{request.parent}/microposts/{len(self.posts) + 1}",
                    text=request.micropost.text,
                )
                self.posts[request.request_id] = post
            return post
        if method == "UpdateMicropost":
            reply: Message = request.micropost
            return reply
        if method in ("CreateUser", "GetUser"):
            name = getattr(request, "name", "") or f"users/{request.user.username}"
            return resources_pb2.User(name=name)
        return method_table()[method].response_type()

    def stop(self) -> None:
        self.loop.run(self.server.stop(0))


class AioRelay:
    """A grpc.aio server whose GetUser asks ``downstream`` through AsyncClient.

    The server runs ``interceptor`` (a ``DeadlineInterceptor``, as a service
    in front of MicroPosts would); ``client_options`` go to the AsyncClient
    (no ``token``: whatever the interceptor forwards, if anything).
    """

    def __init__(
        self,
        loop: LoopThread,
        downstream: str,
        interceptor: DeadlineInterceptor | None = None,
        **client_options: Any,
    ) -> None:
        self.loop = loop
        interceptors = () if interceptor is None else (interceptor,)

        async def setup() -> tuple[grpc.aio.Server, str, AsyncClient]:
            client = AsyncClient(downstream, **client_options)
            server, address = await start_aio_server(
                {"GetUser": self._get_user}, interceptors=interceptors
            )
            return server, address, client

        self.server, self.address, self.client = loop.run(setup())

    async def _get_user(
        self, request: user_service_pb2.GetUserRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> resources_pb2.User:
        try:
            return await self.client.get_user(name=request.name)
        except ServiceError as exc:
            await context.abort(exc.code, exc.message)

    def stop(self) -> None:
        self.loop.run(self.server.stop(0))
        self.loop.run(self.client.close())
