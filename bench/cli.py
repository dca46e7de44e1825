"""``python -m bench`` (``make bench``): the options and the order of the runs.

One run of the bench:

1. finds h2load, and asks each chosen scenario whether it can run here and
   how long it will take (for the progress line);
2. starts a bare ``grpc.aio`` echo server and, when a scenario needs it, a
   MicroPosts server (SQLite in a temporary directory), seeds the server
   through its API, and sends each scenario's request once from Python to
   check that it succeeds (``bench.runs``);
3. runs the scenarios in RUN_ORDER, each its own module: ``bench.throughput``,
   ``bench.latency``, ``bench.client``, ``bench.workers``, ``bench.secure``,
   ``bench.overload``;

then prints the tables and writes them into ``docs/benchmarks.md``. Every
server it started is stopped on the way out, whatever happens.

A new scenario is a module with a ``SCENARIO`` (see ``bench.runs.Scenario``)
and its line in RUN_ORDER.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from bench import client, h2load, latency, overload, report, secure, throughput, workers
from bench.procs import ROOT
from bench.progress import Progress
from bench.runs import START, Bench, Plan, Scenario, start_servers

RUN_ORDER: list[Scenario] = [
    throughput.SCENARIO,
    latency.SCENARIO,
    client.SCENARIO,
    workers.SCENARIO,
    secure.SCENARIO,
    overload.SCENARIO,
]
"""Every scenario, in the order they run and their sections appear in the report."""

DOCS = ROOT / "docs" / "benchmarks.md"
METHODS = ["GetMicropost", "ListMicroposts", "CreateMicropost", "BatchGetMicroposts"]


def _default_workers() -> list[int]:
    cores = len(_usable_cores())
    return [cores] if cores <= 4 else [4, cores - 4]


def _usable_cores() -> set[int]:
    return (
        os.sched_getaffinity(0)
        if hasattr(os, "sched_getaffinity")
        else set(range(os.cpu_count() or 1))
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="The MicroPosts performance budget (docs/design.md), as ratios to a bare echo.",
    )
    # In the order --help lists them: how hard and how long, what to run, where results go.
    _load_options(p)
    _choice_options(p)
    _output_options(p)
    args = p.parse_args(argv)
    if args.repeats < 1 or args.duration <= 0 or args.client_seconds <= 0:
        p.error("--repeats must be at least 1, --duration and --client-seconds above 0")
    if args.clients < 1 or args.streams < 1 or any(n < 1 for n in args.workers or []):
        p.error("--clients, --streams and --workers must be at least 1")
    if args.quick:
        args.duration = min(args.duration, 2.0)
        args.repeats = 1
        args.client_seconds = min(args.client_seconds, 1.0)
    if args.workers is None:
        args.workers = _default_workers()
    args.parts = set(args.only or [s.name for s in RUN_ORDER])
    args.methods = [m for m in METHODS if m in (args.method or METHODS)]
    return args


def _load_options(p: argparse.ArgumentParser) -> None:
    """How hard and how long each scenario measures."""
    p.add_argument("--duration", type=float, default=5.0, help="seconds per h2load run (5)")
    p.add_argument(
        "--repeats", type=int, default=3, help="interleaved rounds; medians are reported (3)"
    )
    p.add_argument("--clients", type=int, default=4, help="h2load connections for throughput (4)")
    p.add_argument("--streams", type=int, default=8, help="h2load streams per connection (8)")
    p.add_argument(
        "--grpc-timeout",
        default="10S",
        help="grpc-timeout header h2load sends, as a client with a deadline would ('' for none)",
    )
    p.add_argument(
        "--client-seconds", type=float, default=2.0, help="seconds per client-cost run (2)"
    )
    p.add_argument(
        "--workers",
        type=lambda s: [int(n) for n in s.split(",") if n],
        default=None,
        help="worker counts to measure scaling at, e.g. 2 or 4,12 (default: the usable cores)",
    )


def _choice_options(p: argparse.ArgumentParser) -> None:
    """Which scenarios and rows run, and on what server."""
    p.add_argument(
        "--only",
        action="append",
        choices=[s.name for s in RUN_ORDER],
        help="run only these parts (repeatable)",
    )
    p.add_argument(
        "--method",
        action="append",
        choices=METHODS,
        help="throughput: only these methods (repeatable; default all four)",
    )
    p.add_argument(
        "--no-echo-uvloop",
        dest="echo_uvloop",
        action="store_false",
        help="throughput: leave out the reference row of the echo on uvloop",
    )
    p.add_argument(
        "--no-durable-create",
        dest="durable_create",
        action="store_false",
        help="throughput: leave out CreateMicropost on a server with --durability full",
    )
    p.add_argument("--quick", action="store_true", help="a smoke run: 2 s runs, 1 round")
    p.add_argument(
        "--server-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra MicroPosts server argument (repeatable), e.g. --server-arg=--durability=full",
    )


def _output_options(p: argparse.ArgumentParser) -> None:
    """Where the results and the run's files go."""
    p.add_argument(
        "--output", type=Path, default=DOCS, help="Markdown file to write the results into"
    )
    p.add_argument("--no-write", action="store_true", help="print the results only")
    p.add_argument("--no-install", action="store_true", help="never apt-get install h2load")
    p.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (logs, database)"
    )


def run(bench: Bench) -> int:
    """Every chosen scenario in RUN_ORDER, then the report; returns the exit status."""
    a = bench.args
    bench.load_before = report.load_average()
    planned = _plan(bench)
    steps = START.steps + 1 + sum(p.steps for _, p in planned)  # + 1: writing the report
    seconds = START.seconds + sum(p.seconds for _, p in planned)
    bench.progress = Progress(steps, seconds)
    servers = start_servers(bench, microposts=any(s.needs_server for s, _ in planned))
    sections = [text for s, _ in planned if (text := s.run(bench, servers)) is not None]
    bench.progress.step("writing the report", 0)
    argv = shlex.join(sys.argv[1:])
    text = report.page(
        command=f"python -m bench{' ' + argv if argv else ''}",
        h2load_version=bench.h2load_version,
        load_before=bench.load_before,
        server_args=a.server_arg,
        notes=bench.notes,
        sections=sections,
    )
    bench.progress.finish()
    print(text)
    if not a.no_write:
        report.write_docs(a.output, text)
        print(f"\n(written to {a.output})", file=sys.stderr)
    return 0


def _plan(bench: Bench) -> list[tuple[Scenario, Plan]]:
    """The chosen scenarios that can run here, with their plans; finds h2load if one needs it."""
    chosen = [s for s in RUN_ORDER if s.name in bench.args.parts]
    if any(s.needs_h2load for s in chosen):
        bench.h2load = h2load.find(install=not bench.args.no_install, say=bench.progress.say)
        if bench.h2load is None:
            names = [s.name for s in RUN_ORDER if s.needs_h2load]
            listed = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]
            bench.notes.append(f"h2load is not available: {listed} rows skipped.")
            chosen = [s for s in chosen if not s.needs_h2load]
        else:
            bench.h2load_version = h2load.version(bench.h2load)
    return [(s, p) for s in chosen if (p := s.plan(bench)) is not None]


def _terminate(signum: int, frame: FrameType | None) -> None:
    # SIGTERM unwinds like Ctrl-C, so every server we started is stopped.
    raise KeyboardInterrupt


@contextlib.contextmanager
def _workdir(keep: bool) -> Iterator[Path]:
    if keep:
        path = Path(tempfile.mkdtemp(prefix="microposts-bench-"))
        print(f"keeping {path}", file=sys.stderr)
        yield path
    else:
        with tempfile.TemporaryDirectory(prefix="microposts-bench-") as tmp:
            yield Path(tmp)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m bench``."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        with _workdir(args.keep) as tmp, contextlib.ExitStack() as stack:
            return run(Bench(args, tmp, stack))
    except KeyboardInterrupt:
        print("\ninterrupted: servers stopped", file=sys.stderr)
        return 130
