"""What every scenario uses: the run's servers and state, one measured run, what a scenario is.

A scenario (``bench.throughput``, ``bench.latency``, ...) is a module with a
``SCENARIO``: its name (the ``--only`` choice), what it needs (h2load, the
seeded MicroPosts server), a ``plan`` that says whether it can run here and
how long it will take (for the progress line), and a ``run`` that measures and
returns its section of the report. ``bench.cli.RUN_ORDER`` lists them.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from bench import h2load, report, seed, wire
from bench.procs import ServerError, ServerProc
from bench.progress import Progress

ECHO = "bare grpc.aio echo"


@dataclass
class Target:
    """Something to point h2load at: a server, a path, a body, and how to check replies."""

    label: str
    server: ServerProc
    scenario: seed.Scenario
    body: Path
    frame_bytes: tuple[int, int] | None = None
    series: report.Series = field(init=False)
    error: str = ""

    def __post_init__(self) -> None:
        self.series = report.Series(self.label)

    @property
    def url(self) -> str:
        """The h2load URL."""
        return f"http://127.0.0.1:{self.server.port}{self.scenario.path}"


class Bench:
    """One run of the bench: its options, servers, notes for the report, and measuring."""

    def __init__(self, args: argparse.Namespace, tmp: Path, stack: contextlib.ExitStack) -> None:
        self.args = args
        self.tmp = tmp
        self.stack = stack
        self.notes: list[str] = []  # said above the tables
        self.h2load: str | None = None
        self.h2load_version = ""
        self.progress = Progress(0)
        self._runs = 0
        self.load_before = ""

    # -- servers ---------------------------------------------------------

    def start(self, label: str, argv: list[str]) -> ServerProc:
        """Start a server that is stopped when the bench ends."""
        server = ServerProc(label, argv, self.tmp / f"{label.replace(' ', '_')}.log")
        self.stack.push(server)
        return server.start()

    def echo(self, label: str = "echo", port: int = 0, loop: str = "asyncio") -> ServerProc:
        """A bare echo server process."""
        argv = [sys.executable, "-m", "bench.echo", "--address", f"127.0.0.1:{port}"]
        return self.start(label, [*argv, "--event-loop", loop])

    def microposts(self, label: str, db: Path, *extra: str) -> ServerProc:
        """A MicroPosts server on the SQLite file ``db``."""
        argv = [
            sys.executable, "-m", "microposts_server",
            "--address", "127.0.0.1:0", "--store", f"sqlite:///{db}",
            *self.args.server_arg, *extra,
        ]  # fmt: skip
        return self.start(label, argv)

    # -- runs ------------------------------------------------------------

    def measure(
        self, target: Target, load: h2load.Load, series: report.Series | None = None
    ) -> None:
        """One h2load run into ``series`` (default: the target's); errors are kept, not raised."""
        if target.error:
            return
        assert self.h2load is not None
        self._runs += 1
        log = self.tmp / f"h2load-{self._runs}.tsv"
        cpu_before = target.server.cpu_seconds()
        try:
            result = h2load.run(
                self.h2load, target.url, target.body, load, log, frame_bytes=target.frame_bytes
            )
        except h2load.LoadError as exc:
            target.error = str(exc).splitlines()[0]
            self.progress.say(f"{target.label}: {exc}")
            if not target.server.alive():
                self.progress.say(f"{target.server.label} died:\n{target.server.tail()}")
            return
        finally:
            log.unlink(missing_ok=True)
        target.server.trim_log()
        into = series or target.series
        into.runs.append(result)
        into.cpu.append((target.server.cpu_seconds() - cpu_before) / result.done * 1e6)

    def warm_up(self, target: Target) -> None:
        """A short unmeasured run: first calls pay for imports, caches, connections."""
        self.measure(
            target, h2load.Load(2, 4, 1.0, self.args.grpc_timeout or None), report.Series("warm-up")
        )

    def target(self, label: str, server: ServerProc, scenario: seed.Scenario) -> Target:
        """Check the scenario's request once from Python, and write its body for h2load."""
        body = wire.write_body(self.tmp / f"{label.replace(' ', '_')}.grpc", scenario.request)
        t = Target(label, server, scenario, body)
        try:
            replies = [
                seed.call(server.address, scenario)
                for _ in range(3 if scenario.reply_varies else 1)
            ]
        except grpc.RpcError as exc:
            t.error = f"{scenario.method} failed when called from Python: {exc}"
            self.progress.say(t.error)
            return t
        sizes = [len(wire.frame(r)) for r in replies]
        # A create's reply differs a little each time (its id, times); a read's never does.
        slack = 16 if scenario.reply_varies else 0
        t.frame_bytes = (min(sizes) - slack, max(sizes) + slack)
        return t


@dataclass(frozen=True)
class Servers:
    """What the scenarios share: the echo, and the seeded MicroPosts server with its targets."""

    echo: Target
    server: ServerProc | None  # None: it was not needed, did not start, or seeding failed
    targets: list[Target]  # one per seeded scenario (method), on ``server``
    db: Path  # its SQLite file, for scenarios that start more servers on the same data

    def target_for(self, method: str) -> Target | None:
        """The MicroPosts target of ``method``, if the server is up."""
        return next((t for t in self.targets if t.scenario.method == method), None)


@dataclass(frozen=True)
class Plan:
    """What a scenario will do, for the progress line: how many steps, about how long."""

    steps: int
    seconds: float


START = Plan(steps=2, seconds=5.0)
"""What start_servers takes: starting the servers (~2 s), then seeding (~3 s)."""


def start_servers(bench: Bench, *, microposts: bool) -> Servers:
    """Start the echo, and the MicroPosts server if ``microposts``, and seed it.

    A MicroPosts server that does not start or cannot be seeded is a note in
    the report, not a failure: its rows are skipped.
    """
    bench.progress.step("starting the echo and MicroPosts servers", 2)
    echo = bench.target(ECHO, bench.echo(), seed.echo_scenario())
    db = bench.tmp / "bench.db"
    server: ServerProc | None = None
    if microposts:
        try:
            server = bench.microposts("microposts", db)
        except ServerError as exc:
            bench.notes.append(
                "The MicroPosts server did not start, its rows were skipped: "
                + str(exc).splitlines()[0]
            )
            bench.progress.say(str(exc))
    if server is None:
        bench.progress.step("(no MicroPosts server)", 3)
        return Servers(echo, None, [], db)
    bench.progress.step("seeding users and posts through the API", 3)
    try:
        seeded = seed.seed(server.address, users=20, posts_per_user=60)
    except grpc.RpcError as exc:
        bench.notes.append(f"Seeding the MicroPosts server failed, its rows were skipped: {exc}")
        bench.progress.say(f"seeding failed: {exc}\n{server.tail()}")
        return Servers(echo, None, [], db)
    targets = [bench.target(s.method, server, s) for s in seed.scenarios(seeded)]
    return Servers(echo, server, targets, db)


@dataclass(frozen=True)
class Scenario:
    """One section of the report, and how to run it (see the module's docstring)."""

    name: str  # the --only choice
    plan: Callable[[Bench], Plan | None]  # None: it cannot run here (after adding a note)
    run: Callable[[Bench, Servers], str | None]  # its section; None: nothing to report
    needs_h2load: bool = True  # skipped, with the others, when h2load cannot be had
    needs_server: bool = True  # the seeded MicroPosts server is started if any planned one does
