"""Per-call metadata and client interceptors, seen by a real MicroPosts server.

The server logs each call's ``x-request-id`` in its call line, so a request id
sent as per-call metadata shows whether that call carried it. Every typed
method, the page methods and ``call()`` are checked, through both clients.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import grpc
import grpc.aio
import pytest

from microposts.v1 import user_service_pb2
from microposts_client import AsyncClient, Client, method_table
from tests.appserver import AppServer
from tests.grpcservers import Scripted

Metadata = list[tuple[str, str | bytes]]


def logged_methods(server: AppServer, request_id: str) -> list[str]:
    """The RPCs (``GetUser``) the server logged under ``request_id``, in order."""
    lines = server.logs(msg="call", request_id=request_id)
    return [line["method"].rsplit("/", 1)[-1] for line in lines]


def every_method_sync(client: Client, tag: str) -> dict[str, str]:
    """Calls every method once with its own x-request-id; returns {request id: RPC}."""
    sent: dict[str, str] = {}

    def md(rpc: str) -> Metadata:
        request_id = f"{tag}-{rpc}"
        sent[request_id] = rpc
        return [("x-request-id", request_id)]

    user = client.create_user(username=f"{tag}_u", metadata=md("CreateUser"))
    client.get_user(name=user.name, metadata=md("GetUser"))
    list(client.list_users(page_size=1000, metadata=md("ListUsers")))
    client.list_users_page(page_size=1, metadata=md("ListUsers.page"))
    post = client.create_micropost(parent=user.name, text="hi", metadata=md("CreateMicropost"))
    client.get_micropost(name=post.name, metadata=md("GetMicropost"))
    client.batch_get_microposts(names=[post.name], metadata=md("BatchGetMicroposts"))
    list(client.list_microposts(parent=user.name, metadata=md("ListMicroposts")))
    client.list_microposts_page(parent=user.name, metadata=md("ListMicroposts.page"))
    post = client.update_micropost(
        name=post.name, text="edited", etag=post.etag, metadata=md("UpdateMicropost")
    )
    client.delete_micropost(name=post.name, etag=post.etag, metadata=md("DeleteMicropost"))
    client.call("GetUser", user_service_pb2.GetUserRequest(name=user.name), metadata=md("call"))
    return sent


async def every_method_async(client: AsyncClient, tag: str) -> dict[str, str]:
    """``every_method_sync`` through AsyncClient."""
    sent: dict[str, str] = {}

    def md(rpc: str) -> Metadata:
        request_id = f"{tag}-{rpc}"
        sent[request_id] = rpc
        return [("x-request-id", request_id)]

    user = await client.create_user(username=f"{tag}_u", metadata=md("CreateUser"))
    await client.get_user(name=user.name, metadata=md("GetUser"))
    [u async for u in client.list_users(page_size=1000, metadata=md("ListUsers"))]
    await client.list_users_page(page_size=1, metadata=md("ListUsers.page"))
    post = await client.create_micropost(
        parent=user.name, text="hi", metadata=md("CreateMicropost")
    )
    await client.get_micropost(name=post.name, metadata=md("GetMicropost"))
    await client.batch_get_microposts(names=[post.name], metadata=md("BatchGetMicroposts"))
    [p async for p in client.list_microposts(parent=user.name, metadata=md("ListMicroposts"))]
    await client.list_microposts_page(parent=user.name, metadata=md("ListMicroposts.page"))
    post = await client.update_micropost(
        name=post.name, text="edited", etag=post.etag, metadata=md("UpdateMicropost")
    )
    await client.delete_micropost(name=post.name, etag=post.etag, metadata=md("DeleteMicropost"))
    request = user_service_pb2.GetUserRequest(name=user.name)
    await client.call("GetUser", request, metadata=md("call"))
    return sent


def typed_rpcs(client_type: type[Client | AsyncClient]) -> set[str]:
    """The RPCs of the table that ``client_type`` has a typed method for (``get_user``)."""
    return {name for name, m in method_table().items() if hasattr(client_type, m.python_name)}


def check_each_call_carried_its_own(
    server: AppServer, sent: dict[str, str], client_type: type[Client | AsyncClient]
) -> None:
    rpcs = {"call": "GetUser"}
    for request_id, what in sent.items():
        rpc = rpcs.get(what, what.removesuffix(".page"))
        assert rpc in method_table() or what == "call"
        assert logged_methods(server, request_id) == [rpc], request_id
    # Typed methods are a convenience: ``call(name, request)`` serves any RPC of
    # the table (test_call.py), so an RPC may be in the table before it has one.
    # Every typed method the client has is checked here, though.
    every_typed = {what.removesuffix(".page") for what in sent.values()} - {"call"}
    assert every_typed <= set(method_table())
    assert every_typed == typed_rpcs(client_type)


def test_every_method_sends_its_metadata_sync(microposts_server: AppServer) -> None:
    with Client(microposts_server.address) as client:
        sent = every_method_sync(client, "md_sync")
    check_each_call_carried_its_own(microposts_server, sent, Client)


def test_every_method_sends_its_metadata_async(microposts_server: AppServer) -> None:
    async def main() -> dict[str, str]:
        async with AsyncClient(microposts_server.address) as client:
            return await every_method_async(client, "md_async")

    check_each_call_carried_its_own(microposts_server, asyncio.run(main()), AsyncClient)


def test_a_calls_key_replaces_the_clients(microposts_server: AppServer) -> None:
    wide = [("x-request-id", "client-wide"), ("x-other", "kept")]
    with Client(microposts_server.address, metadata=wide) as client:
        client.list_users_page()
        client.list_users_page(metadata=[("x-request-id", "this-call")])
    # The server logs the first x-request-id it gets: had both been sent, it would
    # show "client-wide" twice.
    assert logged_methods(microposts_server, "client-wide") == ["ListUsers"]
    assert logged_methods(microposts_server, "this-call") == ["ListUsers"]


def test_one_pair_instead_of_a_list_is_refused(microposts_server: AppServer) -> None:
    with Client(microposts_server.address) as client:
        pair: Any = ("x-request-id", "abc")
        with pytest.raises(TypeError, match=r"sequence of \(key, value\) pairs"):
            client.get_user(name="users/x", metadata=pair)
        with pytest.raises(TypeError, match=r"sequence of \(key, value\) pairs"):
            Client(microposts_server.address, metadata=pair)


# -- interceptors ----------------------------------------------------------------


class _Details(NamedTuple):
    """grpc.ClientCallDetails with other metadata (grpc's own class is abstract)."""

    method: str
    timeout: float | None
    metadata: Any
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: Any


def tagged(metadata: Any, tag: str) -> Metadata:
    return [*(metadata or ()), ("x-request-id", tag)]


class SyncTagger(grpc.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    """Records each call's method and adds an x-request-id, ``{name}-{n}``, as tracing would."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.methods: list[str] = []

    def intercept_unary_unary(
        self, continuation: Callable[[Any, Any], Any], details: Any, request: Any
    ) -> Any:
        self.methods.append(details.method)
        tag = f"{self.name}-{len(self.methods)}"
        return continuation(
            _Details(
                details.method,
                details.timeout,
                tagged(details.metadata, tag),
                details.credentials,
                details.wait_for_ready,
                details.compression,
            ),
            request,
        )


class AioTagger(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    """SyncTagger for grpc.aio."""

    def __init__(self) -> None:
        self.methods: list[str] = []

    async def intercept_unary_unary(
        self, continuation: Callable[[Any, Any], Awaitable[Any]], details: Any, request: Any
    ) -> Any:
        self.methods.append(details.method.decode())  # grpc.aio passes the path as bytes
        tag = f"aio-intercepted-{len(self.methods)}"
        metadata = grpc.aio.Metadata(*tagged(details.metadata, tag))
        return await continuation(details._replace(metadata=metadata), request)


def test_interceptors_see_every_call_sync(microposts_server: AppServer) -> None:
    outer, inner = SyncTagger("outer"), SyncTagger("inner")
    with Client(microposts_server.address, interceptors=[outer, inner]) as client:
        client.list_users_page()
        client.call("ListUsers", user_service_pb2.ListUsersRequest())
    path = "/microposts.v1.UserService/ListUsers"
    assert outer.methods == inner.methods == [path, path]
    # The server logs the first x-request-id: the one the outermost interceptor added.
    assert logged_methods(microposts_server, "outer-1") == ["ListUsers"]
    assert logged_methods(microposts_server, "outer-2") == ["ListUsers"]
    assert logged_methods(microposts_server, "inner-1") == []


def test_interceptors_see_every_call_async(microposts_server: AppServer) -> None:
    tagger = AioTagger()

    async def main() -> None:
        async with AsyncClient(microposts_server.address, interceptors=[tagger]) as client:
            await client.list_users_page()
            await client.call("ListUsers", user_service_pb2.ListUsersRequest())

    asyncio.run(main())
    assert tagger.methods == ["/microposts.v1.UserService/ListUsers"] * 2
    assert logged_methods(microposts_server, "aio-intercepted-1") == ["ListUsers"]
    assert logged_methods(microposts_server, "aio-intercepted-2") == ["ListUsers"]


def test_interceptors_see_each_attempt(scripted: Scripted) -> None:
    # UNAVAILABLE on demand needs the scripted fake; the real server cannot be made to.
    unavailable = (grpc.StatusCode.UNAVAILABLE, ())
    scripted.script["GetUser"] = [unavailable, unavailable]
    tagger = SyncTagger("retried")
    with Client(scripted.address, interceptors=[tagger]) as client:
        client.get_user(name="users/alice")
    assert tagger.methods == ["/microposts.v1.UserService/GetUser"] * 3
    assert scripted.attempts("GetUser") == 3
