"""``--workers`` scaling: N MicroPosts workers against N echo processes sharing one port.

Each side is measured against its single-process twin, interleaved, and the
budget compares the server's scaling with the echo's. h2load opens at least
4N connections, so that the kernel's ``SO_REUSEPORT`` hashing spreads them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from bench import h2load, report
from bench.procs import ROOT, ServerError, ServerProc
from bench.runs import Bench, Plan, Scenario, Servers, Target

BUDGET = report.Budget(0.9)


def _counts(args: argparse.Namespace) -> list[int]:
    return [n for n in args.workers if n > 1]


def plan(bench: Bench) -> Plan | None:
    """Four rows per worker count, ``--repeats`` runs each; None if the server has no workers."""
    a = bench.args
    counts = _counts(a)
    if not counts:
        bench.notes.append("Workers scaling needs 2 or more workers (--workers): skipped.")
        return None
    if not _server_has_workers():
        bench.notes.append(
            "The MicroPosts server has no --workers option yet: workers scaling skipped."
        )
        return None
    return Plan(len(counts) * 4 * a.repeats, len(counts) * (5 + 4 * a.repeats * a.duration))


def _server_has_workers() -> bool:
    try:
        out = subprocess.run(
            [sys.executable, "-m", "microposts_server", "--help"],
            capture_output=True, text=True, timeout=60, cwd=ROOT,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return False
    return "--workers" in out.stdout


def run(bench: Bench, servers: Servers) -> str | None:
    """A row per worker count; the section (None without the MicroPosts server)."""
    if servers.server is None:
        return None
    a = bench.args
    counts = _counts(a)
    get = servers.target_for("GetMicropost")
    if get is None or get.error:
        return "### Workers\n\nSkipped: GetMicropost does not work on this server."
    rows = []
    for n in counts:
        echo_procs = _echo_workers(bench, n)
        try:
            rows.append(_row(bench, n, servers, get, echo_procs[0]))
        finally:
            for proc in echo_procs:
                proc.stop()
    head = (
        "### Workers (SO_REUSEPORT)\n\nGetMicropost on `microposts_server --workers N` against "
        "N bare echo processes sharing one port; h2load opens "
        f"{max(a.clients, 4 * max(counts))} connections or more, so that the kernel spreads "
        f"them; median of {a.repeats}, interleaved. "
        "h2load itself needs most of a core.\n\n"
    )
    return head + report.table(
        [
            "N",
            "echo req/s, 1 -> N",
            "GetMicropost req/s, 1 -> N",
            f"scaling {report.TIMES} echo's",
            "budget",
        ],
        rows,
        [True, True, True, True, False],
    )


def _echo_workers(bench: Bench, n: int) -> list[ServerProc]:
    """N echo processes sharing one port (SO_REUSEPORT)."""
    first = bench.echo(f"echo x{n} #1")
    return [first, *(bench.echo(f"echo x{n} #{i}", first.port) for i in range(2, n + 1))]


def _row(bench: Bench, n: int, servers: Servers, get: Target, echo_n_proc: ServerProc) -> list[str]:
    """One worker count: the N-process echo and server, each interleaved with its 1-process twin."""
    a = bench.args
    echo = servers.echo
    echo_n = Target(f"echo x{n}", echo_n_proc, echo.scenario, echo.body, echo.frame_bytes)
    try:
        srv_n = bench.microposts(f"microposts --workers {n}", servers.db, "--workers", str(n))
    except ServerError as exc:
        why = str(exc).splitlines()[0]
        return [str(n), "—", "—", "—", f"failed: the server did not start: {why}"]
    get_n = Target(f"GetMicropost x{n}", srv_n, get.scenario, get.body, get.frame_bytes)
    one_echo, one_get = report.Series("echo x1"), report.Series("get x1")
    # 16 calls in flight per worker, in streams of the throughput load's size:
    # the server lets a connection open 8 at once (--max-concurrent-streams),
    # and refuses what a load generator opens beyond that before it has read so.
    load = h2load.Load(max(a.clients, 8 * n), min(a.streams, 8), a.duration, a.grpc_timeout or None)
    try:
        bench.warm_up(echo_n)
        bench.warm_up(get_n)
        for r in range(1, a.repeats + 1):
            for t, s in (
                (echo, one_echo),
                (echo_n, echo_n.series),
                (get, one_get),
                (get_n, get_n.series),
            ):
                bench.progress.step(f"workers x{n} {r}/{a.repeats}: {t.label} ({load})", a.duration)
                bench.measure(t, load, s)
    finally:
        srv_n.stop()
    if not (one_echo.runs and echo_n.series.runs and one_get.runs and get_n.series.runs):
        why = echo_n.error or get_n.error or get.error or echo.error
        return [str(n), "—", "—", "—", f"failed: {why}"]
    rel = (get_n.series.rps / one_get.rps) / (echo_n.series.rps / one_echo.rps)
    return [
        str(n),
        _scaling(one_echo, echo_n.series),
        _scaling(one_get, get_n.series),
        report.ratio(rel),
        BUDGET.verdict(rel),
    ]


def _scaling(one: report.Series, many: report.Series) -> str:
    x = report.ratio(many.rps / one.rps)
    return f"{report.fmt_rps(one.rps)} -> {report.fmt_rps(many.rps)} ({x})"


SCENARIO = Scenario("workers", plan, run)
