"""What the client wrapper costs per call, against a raw generated stub.

Both make the same call (GetMicropost, one in flight, a Python loop) to the
same server; the raw stub is given a deadline too, since the wrapper always
sets one and a deadline has a cost of its own (DESIGN section 8). The runs
alternate (raw, wrapper, wrapper, raw, ...) and each is a fixed time.

Two numbers per run: wall time per call (what a caller waits, server
included) and the CPU time the calling process spent per call (the client's
own cost, gRPC's threads included, and much less disturbed by whatever else
the machine is doing). The budget is about the second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from bench.seed import post_stub
from microposts.v1 import micropost_service_pb2

TIMEOUT = 5.0
WARM_UP_CALLS = 200


@dataclass(frozen=True)
class Subject:
    """One way of calling: a label, and sync and async factories of the call."""

    label: str
    sync: Callable[[str, str], tuple[Callable[[], object], Callable[[], None]]]
    aio: Callable[[str, str], tuple[Callable[[], Awaitable[object]], Callable[[], Awaitable[None]]]]


def _raw_sync(target: str, name: str) -> tuple[Callable[[], object], Callable[[], None]]:
    channel = grpc.insecure_channel(target)
    stub = post_stub(channel)

    def one() -> object:
        # The request is built per call, as the wrapper does from its arguments.
        return stub.GetMicropost(
            micropost_service_pb2.GetMicropostRequest(name=name), timeout=TIMEOUT
        )

    return one, channel.close


def _raw_aio(
    target: str, name: str
) -> tuple[Callable[[], Awaitable[object]], Callable[[], Awaitable[None]]]:
    channel = grpc.aio.insecure_channel(target)
    stub = post_stub(channel)

    async def one() -> object:
        return await stub.GetMicropost(
            micropost_service_pb2.GetMicropostRequest(name=name), timeout=TIMEOUT
        )

    async def close() -> None:
        await channel.close(None)

    return one, close


def _wrapper_sync(target: str, name: str) -> tuple[Callable[[], object], Callable[[], None]]:
    from microposts_client import Client

    client: Any = Client(target)

    def one() -> object:
        return client.get_micropost(name=name)

    return one, client.close


def _wrapper_aio(
    target: str, name: str
) -> tuple[Callable[[], Awaitable[object]], Callable[[], Awaitable[None]]]:
    from microposts_client import AsyncClient

    client: Any = AsyncClient(target)

    async def one() -> object:
        return await client.get_micropost(name=name)

    async def close() -> None:
        await client.close()

    return one, close


RAW = Subject("raw generated stub", _raw_sync, _raw_aio)
WRAPPER = Subject("microposts_client", _wrapper_sync, _wrapper_aio)


def wrapper_available() -> str | None:
    """None if the client package can be used, else why not."""
    try:
        from microposts_client import AsyncClient, Client
    except ImportError as exc:
        return f"microposts_client not importable ({exc})"
    del AsyncClient, Client
    return None


@dataclass(frozen=True)
class Cost:
    """One run: wall time per call, and the calling process's CPU time per call (µs)."""

    wall_us: float
    cpu_us: float


def measure_sync(subject: Subject, target: str, name: str, seconds: float) -> Cost:
    """Per-call cost, calling in a loop for ``seconds``."""
    one, close = subject.sync(target, name)
    try:
        for _ in range(WARM_UP_CALLS):
            one()
        calls = 0
        cpu = time.process_time()
        start = time.perf_counter()
        end = start + seconds
        while True:
            one()
            calls += 1
            now = time.perf_counter()
            if now >= end:
                return _cost(calls, now - start, time.process_time() - cpu)
    finally:
        close()


def measure_aio(subject: Subject, target: str, name: str, seconds: float) -> Cost:
    """Like measure_sync, in a fresh (default) asyncio event loop."""

    async def main() -> Cost:
        one, close = subject.aio(target, name)
        try:
            for _ in range(WARM_UP_CALLS):
                await one()
            calls = 0
            cpu = time.process_time()
            start = time.perf_counter()
            end = start + seconds
            while True:
                await one()
                calls += 1
                now = time.perf_counter()
                if now >= end:
                    return _cost(calls, now - start, time.process_time() - cpu)
        finally:
            await close()

    return asyncio.run(main())


def _cost(calls: int, wall: float, cpu: float) -> Cost:
    return Cost(wall / calls * 1e6, cpu / calls * 1e6)
