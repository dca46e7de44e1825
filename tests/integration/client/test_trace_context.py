"""Trace context without a tracer provider: the client adds none, and passes on what it got.

Tracing is off in this test session (no provider is set; ``tests/e2e/test_tracing.py``
traces three hops in a process of its own). A process that records nothing
must still not break a trace passing through it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from microposts.v1 import resources_pb2
from microposts_client import AsyncClient, Client, DeadlineInterceptor
from tests.grpcservers import LoopThread, start_aio_server

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Recorder:
    """A GetUser that records each call's metadata."""

    def __init__(self, loop: LoopThread) -> None:
        self.loop = loop
        self.seen: list[dict[str, str]] = []

        async def get_user(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            self.seen.append({k: str(v) for k, v in context.invocation_metadata() or ()})
            return resources_pb2.User(name=request.name)

        self.server, self.address = loop.run(start_aio_server({"GetUser": get_user}))


@pytest.fixture
def recorder(loop_thread: LoopThread) -> Iterator[Recorder]:
    r = Recorder(loop_thread)
    yield r
    loop_thread.run(r.server.stop(0))


def test_without_a_provider_a_call_carries_no_trace_context(recorder: Recorder) -> None:
    with Client(recorder.address) as client:
        client.get_user(name="users/alice")
    assert "traceparent" not in recorder.seen[0]


def test_a_relay_passes_on_the_trace_it_was_called_in(
    recorder: Recorder, loop_thread: LoopThread
) -> None:
    async def setup() -> tuple[grpc.aio.Server, str, AsyncClient]:
        downstream = AsyncClient(recorder.address)

        async def relay(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            return await downstream.get_user(name=request.name)

        server, address = await start_aio_server(
            {"GetUser": relay}, interceptors=(DeadlineInterceptor(),)
        )
        return server, address, downstream

    server, address, downstream = loop_thread.run(setup())
    try:
        with Client(address) as client:
            client.get_user(name="users/alice", metadata=[("traceparent", TRACEPARENT)])
    finally:
        loop_thread.run(server.stop(0))
        loop_thread.run(downstream.close())
    passed_on = recorder.seen[0]["traceparent"]
    _version, trace_id, parent_id, _flags = passed_on.split("-")
    assert trace_id == "0af7651916cd43dd8448eb211c80319c"  # the same trace
    assert parent_id == "b7ad6b7169203331"  # nothing recorded here: the caller's span is the parent
