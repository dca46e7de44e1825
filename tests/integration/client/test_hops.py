"""Errors cross hops: test client -> relay (a gRPC server of ours) -> the real MicroPosts server.

The relay serves the whole contract by calling MicroPosts through the client
package (``call(name, request)``), as a backend that wraps MicroPosts would.
Its caller must see what a direct call shows: the same exception class,
message and ``google.rpc`` details, whether the relay's handlers let the
error escape under the propagation interceptor (the default) or answer with
``err.abort(context)`` themselves. With ``forward_errors=False`` the escaping
error is gRPC's ``UNKNOWN``, as it was before. What the real server never
sends on demand (a detail of a type the client does not decode, a retry
pushback) comes from the scripted fake upstream.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2

from microposts_client import (
    AsyncClient,
    Client,
    DeadlineInterceptor,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    ServiceError,
    SyncDeadlineInterceptor,
    Unknown,
    method_table,
)
from tests.appserver import AppServer
from tests.grpcservers import LoopThread, Scripted, rich_status, start_aio_server

# How a relay hands errors back (`how`): "escape" under the default interceptor, "abort"
# with err.abort(context) and no interceptor, "opt-out" under forward_errors=False.


class AioRelay:
    """A grpc.aio server relaying every RPC to ``upstream`` through AsyncClient."""

    def __init__(self, loop: LoopThread, upstream: str, how: str) -> None:
        self.loop = loop
        # Made outside the server's loop: it opens its channel on the first call, there.
        self.client = AsyncClient(upstream, retry=None)
        interceptors: tuple[Any, ...] = ()
        if how != "abort":
            interceptors = (DeadlineInterceptor(forward_errors=how == "escape"),)
        behaviors = {name: self._behavior(name, how == "abort") for name in method_table()}
        self.server, self.address = loop.run(start_aio_server(behaviors, interceptors))

    def _behavior(self, method: str, abort: bool) -> Any:
        async def relay(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            if not abort:
                return await self.client.call(method, request)
            try:
                return await self.client.call(method, request)
            except ServiceError as err:
                await err.abort(context)

        return relay

    def stop(self) -> None:
        self.loop.run(self.server.stop(0))
        self.loop.run(self.client.close())


class SyncRelay:
    """A thread-pool grpc.server relaying every RPC to ``upstream`` through Client."""

    def __init__(self, upstream: str, how: str) -> None:
        self.client = Client(upstream, retry=None)
        interceptors: list[Any] = []
        if how != "abort":
            interceptors = [SyncDeadlineInterceptor(forward_errors=how == "escape")]
        self.server = grpc.server(futures.ThreadPoolExecutor(4), interceptors=interceptors)
        by_service: dict[str, dict[str, grpc.RpcMethodHandler[Any, Any]]] = {}
        for name, info in method_table().items():
            by_service.setdefault(info.service, {})[name] = grpc.unary_unary_rpc_method_handler(
                self._behavior(name, how == "abort"),
                request_deserializer=info.request_type.FromString,
                response_serializer=info.response_type.SerializeToString,
            )
        self.server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler(s, m) for s, m in by_service.items()]
        )
        self.address = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        self.server.start()

    def _behavior(self, method: str, abort: bool) -> Any:
        def relay(request: Any, context: grpc.ServicerContext) -> Any:
            if not abort:
                return self.client.call(method, request)
            try:
                return self.client.call(method, request)
            except ServiceError as err:
                err.abort(context)

        return relay

    def stop(self) -> None:
        self.server.stop(0)
        self.client.close()


@pytest.fixture(params=["aio", "sync"])
def relay(
    request: pytest.FixtureRequest, loop_thread: LoopThread, microposts_server: AppServer
) -> Iterator[Callable[..., AioRelay | SyncRelay]]:
    """Starts a relay of the parametrised kind in front of the real server (or ``upstream``)."""
    started: list[AioRelay | SyncRelay] = []

    def start(how: str, upstream: str = microposts_server.address) -> AioRelay | SyncRelay:
        if request.param == "aio":
            started.append(AioRelay(loop_thread, upstream, how))
        else:
            started.append(SyncRelay(upstream, how))
        return started[-1]

    yield start
    for r in started:
        r.stop()


def failure(target: str, call: Callable[[Client], object]) -> ServiceError:
    """The error ``call`` raises through a client of ``target``."""
    with Client(target, retry=None) as client, pytest.raises(ServiceError) as caught:
        call(client)
    return caught.value


def missing_user(client: Client) -> object:
    return client.get_user(name="users/nobody_here")


def bad_user(client: Client) -> object:
    return client.create_user(username="No Spaces!", display_name="x" * 101)


@pytest.mark.parametrize("how", ["escape", "abort"])
@pytest.mark.parametrize("call", [missing_user, bad_user])
def test_the_relays_caller_sees_the_error_microposts_gave(
    relay: Callable[..., AioRelay | SyncRelay],
    microposts_server: AppServer,
    how: str,
    call: Callable[[Client], object],
) -> None:
    direct = failure(microposts_server.address, call)
    relayed = failure(relay(how).address, call)

    assert type(relayed) is type(direct)
    assert type(direct) in (NotFound, InvalidArgument)
    assert relayed.code is direct.code
    assert relayed.message == direct.message
    assert relayed.details == direct.details
    assert relayed.details  # ResourceInfo, or BadRequest naming both fields


def test_details_are_readable_after_the_hop(
    relay: Callable[..., AioRelay | SyncRelay],
) -> None:
    address = relay("escape").address
    missing = failure(address, missing_user)
    assert isinstance(missing, NotFound)
    assert missing.resource_name == "users/nobody_here"
    assert missing.resource_type == "microposts.v1.User"
    bad = failure(address, bad_user)
    assert isinstance(bad, InvalidArgument)
    assert {v.field for v in bad.field_violations} == {"user.username", "user.display_name"}


def test_without_forwarding_an_escaping_error_is_unknown(
    relay: Callable[..., AioRelay | SyncRelay],
) -> None:
    relayed = failure(relay("opt-out").address, missing_user)
    assert isinstance(relayed, Unknown)
    assert relayed.details == ()


def test_details_of_any_type_and_the_servers_pushback_pass_too(
    relay: Callable[..., AioRelay | SyncRelay], scripted: Scripted
) -> None:
    # The real server sends neither on demand: the scripted fake does.
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    info = error_details_pb2.ErrorInfo(reason="QUOTA", domain="microposts.test")
    unknown = duration_pb2.Duration(seconds=7)  # a detail type the client does not decode
    trailers = (*rich_status(code, "slow down", info, unknown), ("grpc-retry-pushback-ms", "250"))
    scripted.script["GetUser"] = [(code, trailers), (code, trailers)]

    direct = failure(scripted.address, missing_user)
    relayed = failure(relay("escape", scripted.address).address, missing_user)

    assert isinstance(relayed, ResourceExhausted)
    assert relayed.message == direct.message == "scripted RESOURCE_EXHAUSTED"
    assert relayed.details == direct.details
    assert relayed.reason == "QUOTA"
    (packed,) = [d for d in relayed.details if isinstance(d, any_pb2.Any)]
    assert packed.Is(duration_pb2.Duration.DESCRIPTOR)
    assert relayed.retry_pushback == direct.retry_pushback == 0.25


def test_answers_still_pass(
    relay: Callable[..., AioRelay | SyncRelay], microposts_server: AppServer
) -> None:
    with Client(relay("escape").address) as client:
        user = client.create_user(username=f"hops_{uuid.uuid4().hex[:12]}")
        assert client.get_user(name=user.name) == user
