"""The client wrapper against a raw generated stub: what the wrapper costs per call.

Both make the same call (GetMicropost, one in flight, a Python loop) to the
bare echo server, so that the server's share is small and steady; the raw
stub is given a deadline too, since the wrapper always sets one and a
deadline has a cost of its own. Sync and async, each for
``--client-seconds``; the runs alternate (raw, wrapper, wrapper, raw, ...).

Two numbers per run: wall time per call (what a caller waits, server
included) and the CPU time the calling process spent per call (the client's
own cost, gRPC's threads included, and much less disturbed by whatever else
the machine is doing). The budget is about the second.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from bench import report, seed
from bench.runs import Bench, Plan, Scenario, Servers
from bench.seed import post_stub
from microposts.v1 import micropost_service_pb2

BUDGET = report.Budget(1.1, at_least=False)

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


Key = tuple[str, str]  # ("sync" or "async", the subject's label)
KINDS: list[tuple[str, Callable[[Subject, str, str, float], Cost]]] = [
    ("sync", measure_sync),
    ("async", measure_aio),
]


def plan(bench: Bench) -> Plan:
    """Sync and async, raw and wrapper, ``--repeats`` times; notes a wrapper that cannot run."""
    if (why := wrapper_available()) is not None:
        bench.notes.append(f"Client wrapper not measured: {why}.")
    a = bench.args
    return Plan(4 * a.repeats, 4 * a.repeats * (a.client_seconds + 0.3))


def run(bench: Bench, servers: Servers) -> str:
    """Measure every row against the echo; the section."""
    subjects = [RAW] if wrapper_available() is not None else [RAW, WRAPPER]
    results, errors = _measure(bench, servers.echo.server.address, subjects)
    rows = [row for kind, _ in KINDS for row in _rows(kind, subjects, results, errors)]
    return _section(bench, rows)


def _measure(
    bench: Bench, address: str, subjects: list[Subject]
) -> tuple[dict[Key, list[Cost]], dict[Key, str]]:
    """Every run's cost by (kind, subject), and why a (kind, subject) failed, if it did."""
    a = bench.args
    post = f"users/{seed.reader(0)}/microposts/0123456789"
    results: dict[Key, list[Cost]] = {}
    errors: dict[Key, str] = {}
    for r in range(1, a.repeats + 1):
        for kind, fn in KINDS:
            # Alternate who goes first, so that neither always runs on a cooler machine.
            for subject in subjects if r % 2 else subjects[::-1]:
                bench.progress.step(
                    f"client {r}/{a.repeats}: {kind} {subject.label}", a.client_seconds + 0.3
                )
                key = (kind, subject.label)
                if key in errors:
                    continue
                try:
                    cost = fn(subject, address, post, a.client_seconds)
                except Exception as exc:  # a client that fails is a row, not a crash
                    errors[key] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                    bench.progress.say(f"client {kind} {subject.label} failed: {errors[key]}")
                    continue
                results.setdefault(key, []).append(cost)
            if len(subjects) == 1:
                bench.progress.step(f"client {r}/{a.repeats}: {kind} (no wrapper)", 0)
    return results, errors


def _rows(
    kind: str, subjects: list[Subject], results: dict[Key, list[Cost]], errors: dict[Key, str]
) -> list[list[str]]:
    raw_runs = results.get((kind, RAW.label))
    raw_cpu = statistics.median(c.cpu_us for c in raw_runs) if raw_runs else 0.0
    raw_wall = statistics.median(c.wall_us for c in raw_runs) if raw_runs else 0.0
    rows = []
    for subject in subjects:
        runs = results.get((kind, subject.label))
        if not runs or not raw_cpu:
            why = errors.get((kind, subject.label)) or "the raw stub failed"
            rows.append([f"{kind} {subject.label}", "—", "—", "—", "—", f"failed: {why}"])
            continue
        cpu = statistics.median(c.cpu_us for c in runs)
        wall = statistics.median(c.wall_us for c in runs)
        x = cpu / raw_cpu
        rows.append([
            f"{kind} {subject.label}",
            f"{cpu:.0f}",
            report.ratio(x),
            f"{wall:.0f}",
            report.ratio(wall / raw_wall),
            BUDGET.verdict(x) if subject is not RAW else "",
        ])  # fmt: skip
    return rows


def _section(bench: Bench, rows: list[list[str]]) -> str:
    a = bench.args
    head = (
        "### Client wrapper vs raw stub\n\nGetMicropost against the bare echo server "
        f"(so the server's share is small and steady), one call in flight, a Python loop, "
        f"{a.client_seconds:g} s runs, median of {a.repeats}, interleaved; both set a "
        f"{TIMEOUT:g} s deadline. CPU: the calling process's CPU time per call "
        "(the client's own cost; the budget applies to it); wall: the time per call.\n\n"
    )
    raw = f"{report.TIMES} raw"
    return head + report.table(
        ["client", "CPU µs/call", raw, "wall µs/call", raw, "budget"],
        rows,
        [False, True, True, True, True, False],
    )


SCENARIO = Scenario("client", plan, run, needs_h2load=False, needs_server=False)
