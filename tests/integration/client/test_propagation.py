"""Deadline propagation across three hops: test client -> relay -> downstream.

The relay is a real gRPC server with the deadline interceptor whose handler
calls the downstream through the client package; the downstream records the
deadline it was given.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import grpc.aio
import pytest

from microposts.v1 import resources_pb2, user_service_pb2
from microposts_client import (
    DEFAULT_READ_TIMEOUT,
    Client,
    DeadlineExceeded,
    DeadlineInterceptor,
    ServiceError,
    SyncDeadlineInterceptor,
)
from tests import grpcservers
from tests.grpcservers import Downstream, LoopThread


class HandedOut(DeadlineInterceptor):
    """DeadlineInterceptor that keeps each handler it hands the server, in call order."""

    def __init__(self) -> None:
        super().__init__()
        self.handed: list[grpc.RpcMethodHandler[Any, Any] | None] = []

    async def intercept_service(  # type: ignore[override]  # as the base: None passes through
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await super().intercept_service(continuation, handler_call_details)
        self.handed.append(handler)
        return handler


class AioRelay(grpcservers.AioRelay):
    """The shared relay, with an interceptor that keeps the handlers it hands out."""

    def __init__(self, loop: LoopThread, downstream: str) -> None:
        self.handed_out = HandedOut()
        super().__init__(loop, downstream, self.handed_out)


class SyncRelay:
    """Thread-pool grpc.server relay: GetUser forwards through Client."""

    def __init__(self, downstream: str) -> None:
        self.client = Client(downstream)
        self.server = grpc.server(
            futures.ThreadPoolExecutor(4), interceptors=[SyncDeadlineInterceptor()]
        )
        method = grpc.unary_unary_rpc_method_handler(
            self._get_user,
            request_deserializer=user_service_pb2.GetUserRequest.FromString,
            response_serializer=resources_pb2.User.SerializeToString,
        )
        self.server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler("microposts.v1.UserService", {"GetUser": method})]
        )
        self.address = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        self.server.start()

    def _get_user(
        self, request: user_service_pb2.GetUserRequest, context: grpc.ServicerContext
    ) -> resources_pb2.User:
        try:
            return self.client.get_user(name=request.name)
        except ServiceError as exc:
            context.abort(exc.code, exc.message)

    def stop(self) -> None:
        self.server.stop(0)
        self.client.close()


@pytest.fixture(params=["aio", "sync"])
def relay_to(
    request: pytest.FixtureRequest, loop_thread: LoopThread
) -> Iterator[Callable[[str], AioRelay | SyncRelay]]:
    """Starts a relay of each kind in front of a downstream; stops it after the test."""
    started: list[AioRelay | SyncRelay] = []

    def start(downstream: str) -> AioRelay | SyncRelay:
        aio = request.param == "aio"
        relay = AioRelay(loop_thread, downstream) if aio else SyncRelay(downstream)
        started.append(relay)
        return relay

    yield start
    for relay in started:
        relay.stop()


def test_downstream_deadline_is_no_later_than_the_callers(
    relay_to: Callable[[str], AioRelay | SyncRelay], stalled: Downstream
) -> None:
    relay = relay_to(stalled.address)
    with Client(relay.address) as client:
        start = time.monotonic()
        caller_end = start + 1.0
        with pytest.raises(DeadlineExceeded):
            client.get_user(name="users/alice", timeout=1.0)
        elapsed = time.monotonic() - start
    assert elapsed < 5.0
    (downstream_end,) = stalled.ends
    assert downstream_end is not None
    # Inherited, not the relay's own 2 s default; and never later than the caller's.
    assert downstream_end <= caller_end
    assert downstream_end > start + 0.5


def test_no_caller_deadline_still_lets_the_relay_call(
    relay_to: Callable[[str], AioRelay | SyncRelay], answering: Downstream
) -> None:
    relay = relay_to(answering.address)
    with Client(relay.address) as client:
        start = time.monotonic()
        user = client.get_user(name="users/alice", timeout=None)  # no deadline sent
    assert user.name == "users/alice"
    (downstream_end,) = answering.ends
    # gRPC's "no deadline" sentinel was not taken for a deadline: the relay's own default applies.
    assert downstream_end is not None
    assert downstream_end - start <= DEFAULT_READ_TIMEOUT * 1.01 + 0.05


def test_inherited_deadline_beats_a_longer_own_timeout(
    relay_to: Callable[[str], AioRelay | SyncRelay], answering: Downstream
) -> None:
    relay = relay_to(answering.address)
    with Client(relay.address) as client:
        start = time.monotonic()
        client.get_user(name="users/alice", timeout=0.8)
    (downstream_end,) = answering.ends
    assert downstream_end is not None
    assert downstream_end <= start + 0.8


def test_interceptor_reuses_wrapped_handlers_and_serves_unknown_methods(
    loop_thread: LoopThread, answering: Downstream
) -> None:
    relay = AioRelay(loop_thread, answering.address)
    try:
        with Client(relay.address) as client:
            for _ in range(3):
                client.get_user(name="users/alice")
            with pytest.raises(ServiceError) as info:  # no handler: UNIMPLEMENTED passes through
                client.create_user(username="alice")
        assert info.value.code is grpc.StatusCode.UNIMPLEMENTED
    finally:
        relay.stop()
    assert answering.calls == 3
    # One wrapped handler, built once and reused: every GetUser got the same one.
    get_user, *again, unknown = relay.handed_out.handed
    assert get_user is not None
    assert len(again) == 2
    assert all(handler is get_user for handler in again)
    assert unknown is None


@pytest.mark.parametrize("kind", [DeadlineInterceptor, SyncDeadlineInterceptor])
def test_wrap_builds_one_wrapper_per_handler(
    kind: type[DeadlineInterceptor | SyncDeadlineInterceptor],
) -> None:
    interceptor = kind()
    handler = grpc.unary_unary_rpc_method_handler(lambda request, context: request)
    other = grpc.unary_unary_rpc_method_handler(lambda request, context: request)
    wrapped = interceptor.wrap(handler)
    assert wrapped is not handler
    assert wrapped.unary_unary is not handler.unary_unary
    assert interceptor.wrap(handler) is wrapped
    assert interceptor.wrap(other) is not wrapped
