"""Three hops under one trace, in a process of their own: ``python -m tests.tracechain``.

caller (``AsyncClient``) -> relay (a grpc.aio service with ``DeadlineInterceptor``
whose GetUser asks MicroPosts through ``AsyncClient``) -> the MicroPosts app,
all with OpenTelemetry's SDK and its in-memory exporter. Prints the finished
spans as JSON lines for ``tests/e2e/test_tracing.py``.

A process of its own because OpenTelemetry's tracer provider is global and set
once: the rest of the test session runs with tracing off, as a server that
nobody configured does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from microposts.v1 import resources_pb2, user_service_pb2
from microposts_client import AsyncClient, DeadlineInterceptor, NotFound, ServiceError, deadline
from microposts_server.app import build_app
from microposts_server.config import Settings
from tests.grpcservers import start_aio_server


def _span(span: ReadableSpan) -> dict[str, Any]:
    context = span.get_span_context()
    assert context is not None
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_id": None if span.parent is None else f"{span.parent.span_id:016x}",
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
    }


async def chain(folder: str) -> None:
    app = await build_app(
        Settings(address="127.0.0.1:0", store=f"sqlite:///{folder}/chain.db", log_level="warning"),
        tracer_provider=trace.get_tracer_provider(),
    )
    await app.start()
    downstream = AsyncClient(app.address)

    async def get_user(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await downstream.get_user(name=request.name)
        except ServiceError as exc:
            await exc.abort(context)

    relay, relay_address = await start_aio_server(
        {"GetUser": get_user}, interceptors=(DeadlineInterceptor(),)
    )
    try:
        async with AsyncClient(app.address) as setup:
            await setup.create_user(username="traced")
        async with AsyncClient(relay_address) as caller:
            async with deadline(2.0):
                user: resources_pb2.User = await caller.get_user(name="users/traced")
            assert user.username == "traced"
            with contextlib.suppress(NotFound):  # a failed call, traced too
                await caller.call("GetUser", user_service_pb2.GetUserRequest(name="users/nobody"))
    finally:
        await relay.stop(0)
        await downstream.close()
        await app.stop(0)


def main() -> None:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(chain(folder))
    for span in exporter.get_finished_spans():
        sys.stdout.write(json.dumps(_span(span)) + "\n")


if __name__ == "__main__":
    main()
