"""Throughput: h2load against the echo and each MicroPosts method, interleaved.

``--repeats`` rounds (echo, echo on uvloop, Get, List, Create, BatchGet,
CreateMicropost with ``--durability full``, echo, ...) after one unmeasured
warm-up run each; medians, with the server's CPU time per call beside the
requests per second. The posts the creates wrote are counted back through the
API: h2load cannot see a failed create's ``grpc-status``.
"""

from __future__ import annotations

import argparse

import grpc

from bench import h2load, report, seed
from bench.procs import ServerError
from bench.runs import Bench, Plan, Scenario, Servers, Target

ECHO_UVLOOP = "echo on uvloop (for reference)"
DURABLE = "CreateMicropost, --durability full"
BUDGETS = {
    "GetMicropost": report.Budget(0.75, aim=1.0),
    "CreateMicropost": report.Budget(0.5),
}


def _load(args: argparse.Namespace) -> h2load.Load:
    return h2load.Load(args.clients, args.streams, args.duration, args.grpc_timeout or None)


def plan(bench: Bench) -> Plan:
    """A warm-up and ``--repeats`` runs per row, and counting the posts."""
    a = bench.args
    rows = 1 + a.echo_uvloop + len(a.methods)
    rows += a.durable_create and "CreateMicropost" in a.methods
    return Plan(rows * (1 + a.repeats) + 1, rows * (1 + a.repeats * a.duration) + 1)


def run(bench: Bench, servers: Servers) -> str:
    """Measure every row; the section."""
    a = bench.args
    uv = bench.echo("echo uvloop", loop="uvloop") if a.echo_uvloop else None
    extra = [bench.target(ECHO_UVLOOP, uv, seed.echo_scenario())] if uv else []
    durable = _durable_create(bench) if servers.server is not None else []
    targets = [*extra, *servers.targets, *durable]
    targets = [t for t in targets if t.label == ECHO_UVLOOP or t.scenario.method in a.methods]
    order = [servers.echo, *targets]
    load = _load(a)
    for t in order:
        bench.progress.step(f"warm-up: {t.label}")
        bench.warm_up(t)
    creates = [t for t in targets if t.scenario.method == "CreateMicropost" and not t.error]
    before = {t.label: seed.count_posts(t.server.address, seed.WRITER) for t in creates}
    for r in range(1, a.repeats + 1):
        for t in order:
            bench.progress.step(f"throughput {r}/{a.repeats}: {t.label} ({load})", a.duration)
            bench.measure(t, load)
    bench.progress.step("counting the posts the creates wrote")
    checks = [_check_creates(t, before[t.label]) for t in creates if t.series.runs]
    return _section(a, servers.echo, order) + "".join(f"\n\n{c}" for c in checks)


def _durable_create(bench: Bench) -> list[Target]:
    """CreateMicropost on a second server with ``--durability full`` (fsync per commit)."""
    a = bench.args
    if not a.durable_create or "CreateMicropost" not in a.methods:
        return []
    try:
        server = bench.microposts(DURABLE, bench.tmp / "durable.db", "--durability", "full")
        seeded = seed.seed(server.address, users=3, posts_per_user=0)
    except (ServerError, grpc.RpcError) as exc:
        bench.notes.append(f"{DURABLE} skipped: {str(exc).splitlines()[0]}")
        return []
    return [bench.target(DURABLE, server, seed.create_scenario(sorted(seeded.posts)))]


def _check_creates(t: Target, before: int) -> str:
    """Whether every create h2load counted wrote a post; marks the target failed if not."""
    created = seed.count_posts(t.server.address, seed.WRITER) - before
    done = sum(r.done for r in t.series.runs)
    # Warm-up creates count too, and calls cut off at the end of a run may still
    # commit: more posts than replies is expected, fewer means failed creates.
    ok = created >= done
    if not ok:
        t.error = "fewer posts written than replies"
    return (
        f"{t.label} check: h2load saw {done:,} replies in the measured runs; the server "
        f"holds {created:,} new posts (warm-up included): "
        + ("every reply was a post written." if ok else "FEWER POSTS: creates failed.")
    )


def _section(a: argparse.Namespace, echo: Target, order: list[Target]) -> str:
    header = ["call", *report.RATE_COLUMNS, f"{report.TIMES} echo", "by CPU", "budget"]
    base = echo.series.rps if echo.series.runs else 0.0
    rows = [_row(t, base, echo.series.cpu_us, len(header)) for t in order]
    head = (
        f"### Throughput\n\nh2load `{_load(a)}` (in flight: {a.clients * a.streams}), "
        f"{a.duration:g} s runs, median of {a.repeats}, interleaved. Spread: half the range "
        "of the runs' req/s, relative to the median. CPU: the server's own CPU time (user + "
        "system) per call, from /proc. By CPU: echo's CPU per call over this one's, the "
        "throughput ratio a machine with cores to spare would show; steadier than req/s on "
        "a busy machine. The budget is judged on req/s.\n\n"
    )
    return head + report.table(header, rows, [False, *[True] * (len(header) - 2), False])


def _row(t: Target, base: float, base_cpu: float, width: int) -> list[str]:
    if t.error or not t.series.runs:
        failed = f"failed: {t.error}" if t.error else "not run"
        return [t.label, *["—"] * (width - 2), failed]
    s = t.series
    budget = BUDGETS.get(t.label)  # the MicroPosts rows are labelled by method
    verdict = budget.verdict(s.rps / base) if budget and base else ""
    return [t.label, *report.rate_cells(s, base, base_cpu), verdict]


SCENARIO = Scenario("throughput", plan, run)
