"""Latency with one call in flight (``h2load -c1 -m1``): echo and GetMicropost, interleaved."""

from __future__ import annotations

import statistics

from bench import h2load, report
from bench.runs import ECHO, Bench, Plan, Scenario, Servers

BUDGET = report.Budget(1.3, at_least=False)


def plan(bench: Bench) -> Plan:
    """Two rows, ``--repeats`` runs each."""
    a = bench.args
    return Plan(2 * a.repeats, 2 * a.repeats * a.duration)


def run(bench: Bench, servers: Servers) -> str:
    """Measure both rows; the section."""
    a = bench.args
    load = h2load.Load(1, 1, a.duration, a.grpc_timeout or None)
    echo = servers.echo
    get = servers.target_for("GetMicropost")
    pairs = [(echo, report.Series(ECHO))]
    if get is not None:
        pairs.append((get, report.Series(get.label)))
    for r in range(1, a.repeats + 1):
        for t, s in pairs:
            bench.progress.step(
                f"latency {r}/{a.repeats}: {t.label} (one call in flight)", a.duration
            )
            bench.measure(t, load, s)
    rows = []
    base = pairs[0][1].p50_ms if pairs[0][1].runs else 0.0
    for t, s in pairs:
        if not s.runs:
            rows.append([t.label, "—", "—", "—", "—", f"failed: {t.error}" if t.error else ""])
            continue
        x = s.p50_ms / base if base else 0.0
        mean = statistics.median(run.mean_ms for run in s.runs)
        rows.append([
            t.label,
            f"{s.p50_ms * 1000:.0f}",
            f"{s.p99_ms * 1000:.0f}",
            f"{mean * 1000:.0f}",
            report.ratio(x) if base else "—",
            BUDGET.verdict(x) if t is not echo and base else "",
        ])  # fmt: skip
    head = (
        f"### Latency, one call in flight\n\nh2load `{load}`, median of {a.repeats}, "
        "interleaved; the ratio is of p50.\n\n"
    )
    return head + report.table(
        ["call", "p50 µs", "p99 µs", "mean µs", f"{report.TIMES} echo", "budget"],
        rows,
        [False, True, True, True, True, False],
    )


SCENARIO = Scenario("latency", plan, run)
