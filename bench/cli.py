"""``python -m bench`` (``make bench``): the options and the order of the runs.

One run of the bench:

1. starts a bare ``grpc.aio`` echo server and a MicroPosts server (SQLite in a
   temporary directory), seeds the server through its API, and sends each
   scenario's request once from Python to check that it succeeds;
2. throughput: h2load against echo and each scenario in turn, ``--repeats``
   rounds (echo, echo on uvloop, Get, List, Create, BatchGet, echo, ...),
   with the server's CPU time per call beside the requests per second;
3. latency with one call in flight (``h2load -c1 -m1``), echo and GetMicropost
   interleaved;
4. the client wrapper against a raw generated stub, sync and async (the
   calling process's CPU time per call, and wall time);
5. ``--workers`` scaling: N MicroPosts workers against N echo processes
   sharing one port, when the server has a ``--workers`` option;

then prints the tables and writes them into ``docs/benchmarks.md``. Every
server it started is stopped on the way out, whatever happens.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import grpc

from bench import clientcost, h2load, report, seed, wire
from bench.procs import ROOT, ServerError, ServerProc

DOCS = ROOT / "docs" / "benchmarks.md"
ECHO = "bare grpc.aio echo"
ECHO_UVLOOP = "echo on uvloop (for reference)"
DURABLE = "CreateMicropost, --durability full"
BUDGETS = {
    "GetMicropost": report.Budget(0.75, aim=1.0),
    "CreateMicropost": report.Budget(0.5),
}
LATENCY_BUDGET = report.Budget(1.3, at_least=False)
CLIENT_BUDGET = report.Budget(1.1, at_least=False)
WORKERS_BUDGET = report.Budget(0.9)
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
        description="MicroPosts performance budget (DESIGN section 8), as ratios to a bare echo.",
    )
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
    p.add_argument(
        "--only",
        action="append",
        choices=["throughput", "latency", "client", "workers"],
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
    p.add_argument(
        "--output", type=Path, default=DOCS, help="Markdown file to write the results into"
    )
    p.add_argument("--no-write", action="store_true", help="print the results only")
    p.add_argument("--no-install", action="store_true", help="never apt-get install h2load")
    p.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (logs, database)"
    )
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
    args.parts = set(args.only or ["throughput", "latency", "client", "workers"])
    args.methods = [m for m in METHODS if m in (args.method or METHODS)]
    return args


class Progress:
    """A line on stderr that says where the run is (rewritten in a terminal, appended if not)."""

    def __init__(self, total: int, seconds: float = 0.0) -> None:
        self.total = total
        self.seconds = seconds  # what all the steps are expected to take
        self.done = 0
        self.expected_done = 0.0
        self._last = 0.0
        self.start = time.monotonic()
        self.tty = sys.stderr.isatty()
        self._width = 0

    def step(self, what: str, seconds: float = 1.0) -> None:
        """A new step starts; it is expected to take ``seconds``."""
        self.done += 1
        self.expected_done += self._last
        self._last = seconds
        elapsed = time.monotonic() - self.start
        left = ""
        if self.expected_done > 0 and self.seconds > self.expected_done:
            # Scale what the plan says is left by how the plan has held so far.
            pace = max(1.0, elapsed / self.expected_done)
            left = f", ~{_clock((self.seconds - self.expected_done) * pace)} left"
        self.show(f"[{self.done:>2}/{self.total}] {_clock(elapsed)}{left}  {what}")

    def show(self, line: str) -> None:
        """Show a line: rewritten in place in a terminal."""
        if self.tty:
            pad = max(0, self._width - len(line))
            sys.stderr.write("\r" + line + " " * pad)
            self._width = len(line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def say(self, message: str) -> None:
        """A message that stays, above the progress line."""
        if self.tty and self._width:
            sys.stderr.write("\r" + " " * self._width + "\r")
            self._width = 0
        sys.stderr.write(message + "\n")
        sys.stderr.flush()

    def finish(self) -> None:
        """Clear the progress line."""
        self.say(f"done in {_clock(time.monotonic() - self.start)}")


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


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
    """One run of the bench: its servers, its plan, its results."""

    def __init__(self, args: argparse.Namespace, tmp: Path, stack: contextlib.ExitStack) -> None:
        self.args = args
        self.tmp = tmp
        self.stack = stack
        self.notes: list[str] = []
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

    def echo_workers(self, n: int) -> list[ServerProc]:
        """N echo processes sharing one port (SO_REUSEPORT)."""
        first = self.echo(f"echo x{n} #1")
        return [first, *(self.echo(f"echo x{n} #{i}", first.port) for i in range(2, n + 1))]

    def microposts(self, label: str, db: Path, *extra: str) -> ServerProc:
        """A MicroPosts server on the SQLite file ``db``."""
        argv = [
            sys.executable, "-m", "microposts_server",
            "--address", "127.0.0.1:0", "--store", f"sqlite:///{db}",
            *self.args.server_arg, *extra,
        ]  # fmt: skip
        return self.start(label, argv)

    # -- runs ------------------------------------------------------------

    def load(self) -> h2load.Load:
        """The throughput load."""
        return h2load.Load(
            self.args.clients, self.args.streams, self.args.duration, self.args.grpc_timeout or None
        )

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

    # -- the plan --------------------------------------------------------

    def run(self) -> int:
        """Everything; returns the exit status."""
        a = self.args
        self.load_before = report.load_average()
        parts = a.parts
        say = self.progress.say
        if parts & {"throughput", "latency", "workers"}:
            self.h2load = h2load.find(install=not a.no_install, say=say)
            if self.h2load is None:
                self.notes.append(
                    "h2load is not available: throughput, latency and workers rows skipped."
                )
                parts = parts & {"client"}
            else:
                self.h2load_version = h2load.version(self.h2load)
        workers = [n for n in a.workers if n > 1] if "workers" in parts else []
        workers_ok = bool(workers) and self._server_has_workers()
        if "workers" in parts and workers and not workers_ok:
            self.notes.append(
                "The MicroPosts server has no --workers option yet: workers scaling skipped."
            )
        if "workers" in parts and not workers:
            self.notes.append("Workers scaling needs 2 or more workers (--workers): skipped.")
        client_ok = "client" in parts
        if client_ok and (why := clientcost.wrapper_available()) is not None:
            self.notes.append(f"Client wrapper not measured: {why}.")

        h2 = parts & {"throughput", "latency"} or workers_ok
        n_tp = 1 + a.echo_uvloop + len(a.methods)  # the throughput rows
        n_tp += a.durable_create and "CreateMicropost" in a.methods
        steps = (
            ("throughput" in parts) * (n_tp * (1 + a.repeats) + 1)
            + ("latency" in parts) * 2 * a.repeats
            + client_ok * 4 * a.repeats
            + workers_ok * len(workers) * 4 * a.repeats
            + 3
        )
        seconds = (
            ("throughput" in parts) * (n_tp * (1 + a.repeats * a.duration) + 1)
            + ("latency" in parts) * 2 * a.repeats * a.duration
            + client_ok * 4 * a.repeats * (a.client_seconds + 0.3)
            + workers_ok * len(workers) * (5 + 4 * a.repeats * a.duration)
            + 5
        )
        self.progress = Progress(steps, seconds)
        say = self.progress.say

        self.progress.step("starting the echo and MicroPosts servers", 2)
        echo = self.echo()
        server: ServerProc | None = None
        db = self.tmp / "bench.db"
        targets: list[Target] = []
        echo_target = self.target(ECHO, echo, seed.echo_scenario())
        if h2 or workers_ok:
            try:
                server = self.microposts("microposts", db)
            except ServerError as exc:
                self.notes.append(
                    "The MicroPosts server did not start, its rows were skipped: "
                    + str(exc).splitlines()[0]
                )
                say(str(exc))
        if server is not None:
            self.progress.step("seeding users and posts through the API", 3)
            try:
                seeded = seed.seed(server.address, users=20, posts_per_user=60)
            except grpc.RpcError as exc:
                self.notes.append(
                    f"Seeding the MicroPosts server failed, its rows were skipped: {exc}"
                )
                say(f"seeding failed: {exc}\n{server.tail()}")
                server = None
            else:
                targets = [self.target(s.method, server, s) for s in seed.scenarios(seeded)]
        else:
            self.progress.step("(no MicroPosts server)", 3)

        results: dict[str, str] = {}
        if "throughput" in parts:
            uv = self.echo("echo uvloop", loop="uvloop") if a.echo_uvloop else None
            extra = [self.target(ECHO_UVLOOP, uv, seed.echo_scenario())] if uv else []
            durable = self._durable_create() if server is not None else []
            results["throughput"] = self._throughput(echo_target, [*extra, *targets, *durable])
        if "latency" in parts:
            results["latency"] = self._latency(echo_target, targets)
        if client_ok:
            results["client"] = self._client(echo)
        if workers_ok and server is not None:
            results["workers"] = self._workers(echo_target, targets, db, workers)

        self.progress.step("writing the report", 0)
        text = self._report(results)
        self.progress.finish()
        print(text)
        if not a.no_write:
            report.write_docs(a.output, text)
            print(f"\n(written to {a.output})", file=sys.stderr)
        return 0

    def _server_has_workers(self) -> bool:
        try:
            out = subprocess.run(
                [sys.executable, "-m", "microposts_server", "--help"],
                capture_output=True, text=True, timeout=60, cwd=ROOT,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return False
        return "--workers" in out.stdout

    def _durable_create(self) -> list[Target]:
        """CreateMicropost on a second server with ``--durability full`` (fsync per commit)."""
        a = self.args
        if not a.durable_create or "CreateMicropost" not in a.methods:
            return []
        try:
            server = self.microposts(DURABLE, self.tmp / "durable.db", "--durability", "full")
            seeded = seed.seed(server.address, users=3, posts_per_user=0)
        except (ServerError, grpc.RpcError) as exc:
            self.notes.append(f"{DURABLE} skipped: {str(exc).splitlines()[0]}")
            return []
        return [self.target(DURABLE, server, seed.create_scenario(sorted(seeded.posts)))]

    def _throughput(self, echo: Target, targets: list[Target]) -> str:
        a = self.args
        load = self.load()
        targets = [t for t in targets if t.label == ECHO_UVLOOP or t.scenario.method in a.methods]
        order = [echo, *targets]
        for t in order:
            self.progress.step(f"warm-up: {t.label}")
            self.warm_up(t)
        creates = [t for t in targets if t.scenario.method == "CreateMicropost" and not t.error]
        before = {t.label: seed.count_posts(t.server.address, seed.WRITER) for t in creates}
        for r in range(1, a.repeats + 1):
            for t in order:
                self.progress.step(f"throughput {r}/{a.repeats}: {t.label} ({load})", a.duration)
                self.measure(t, load)
        checks = []
        self.progress.step("counting the posts the creates wrote")
        for t in creates:
            if not t.series.runs:
                continue
            created = seed.count_posts(t.server.address, seed.WRITER) - before[t.label]
            done = sum(r.done for r in t.series.runs)
            # Warm-up creates count too, and calls cut off at the end of a run may still
            # commit: more posts than replies is expected, fewer means failed creates.
            ok = created >= done
            checks.append(
                f"{t.label} check: h2load saw {done:,} replies in the measured runs; the server "
                f"holds {created:,} new posts (warm-up included): "
                + ("every reply was a post written." if ok else "FEWER POSTS: creates failed.")
            )
            if not ok:
                t.error = "fewer posts written than replies"
        check = "\n\n".join(checks)
        header = ["call", "req/s", "spread", "p50 ms", "p99 ms", "CPU µs/call"]
        header += [f"{report.TIMES} echo", "by CPU", "budget"]
        rows = []
        base = echo.series.rps if echo.series.runs else 0.0
        base_cpu = echo.series.cpu_us
        for t in order:
            if t.error or not t.series.runs:
                failed = f"failed: {t.error}" if t.error else "not run"
                rows.append([t.label, *["—"] * (len(header) - 2), failed])
                continue
            x = t.series.rps / base if base else 0.0
            budget = BUDGETS.get(t.label)  # the MicroPosts rows are labelled by method
            rows.append([
                t.label,
                report.fmt_rps(t.series.rps),
                f"±{t.series.spread * 50:.0f}%" if len(t.series.runs) > 1 else "—",
                report.fmt_ms(t.series.p50_ms),
                report.fmt_ms(t.series.p99_ms),
                f"{t.series.cpu_us:.0f}",
                report.ratio(x) if base else "—",
                report.ratio(base_cpu / t.series.cpu_us) if base_cpu and t.series.cpu_us else "—",
                budget.verdict(x) if budget and base else "",
            ])  # fmt: skip
        head = (
            f"### Throughput\n\nh2load `{load}` (in flight: {a.clients * a.streams}), "
            f"{a.duration:g} s runs, median of {a.repeats}, interleaved. Spread: half the range "
            "of the runs' req/s, relative to the median. CPU: the server's own CPU time (user + "
            "system) per call, from /proc. By CPU: echo's CPU per call over this one's, the "
            "throughput ratio a machine with cores to spare would show; steadier than req/s on "
            "a busy machine. The budget is judged on req/s.\n\n"
        )
        tbl = report.table(header, rows, [False, *[True] * (len(header) - 2), False])
        return head + tbl + (f"\n\n{check}" if check else "")

    def _latency(self, echo: Target, targets: list[Target]) -> str:
        a = self.args
        load = h2load.Load(1, 1, a.duration, a.grpc_timeout or None)
        get = next((t for t in targets if t.scenario.method == "GetMicropost"), None)
        pairs = [(echo, report.Series(ECHO))]
        if get is not None:
            pairs.append((get, report.Series(get.label)))
        for r in range(1, a.repeats + 1):
            for t, s in pairs:
                self.progress.step(
                    f"latency {r}/{a.repeats}: {t.label} (one call in flight)", a.duration
                )
                self.measure(t, load, s)
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
                LATENCY_BUDGET.verdict(x) if t is not echo and base else "",
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

    def _client(self, echo: ServerProc) -> str:
        a = self.args
        post = f"users/{seed.reader(0)}/microposts/0123456789"
        subjects = [clientcost.RAW]
        if clientcost.wrapper_available() is None:
            subjects.append(clientcost.WRAPPER)
        results: dict[tuple[str, str], list[clientcost.Cost]] = {}
        errors: dict[tuple[str, str], str] = {}
        kinds: list[
            tuple[str, Callable[[clientcost.Subject, str, str, float], clientcost.Cost]]
        ] = [
            ("sync", clientcost.measure_sync),
            ("async", clientcost.measure_aio),
        ]
        for r in range(1, a.repeats + 1):
            for kind, fn in kinds:
                # Alternate who goes first, so that neither always runs on a cooler machine.
                for subject in subjects if r % 2 else subjects[::-1]:
                    self.progress.step(
                        f"client {r}/{a.repeats}: {kind} {subject.label}", a.client_seconds + 0.3
                    )
                    key = (kind, subject.label)
                    if key in errors:
                        continue
                    try:
                        cost = fn(subject, echo.address, post, a.client_seconds)
                    except Exception as exc:  # a client that fails is a row, not a crash
                        errors[key] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                        self.progress.say(f"client {kind} {subject.label} failed: {errors[key]}")
                        continue
                    results.setdefault(key, []).append(cost)
                if len(subjects) == 1:
                    self.progress.step(f"client {r}/{a.repeats}: {kind} (no wrapper)", 0)
        rows = []
        for kind, _ in kinds:
            raw_runs = results.get((kind, clientcost.RAW.label))
            raw_cpu = statistics.median(c.cpu_us for c in raw_runs) if raw_runs else 0.0
            raw_wall = statistics.median(c.wall_us for c in raw_runs) if raw_runs else 0.0
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
                    CLIENT_BUDGET.verdict(x) if subject is not clientcost.RAW else "",
                ])  # fmt: skip
        head = (
            "### Client wrapper vs raw stub\n\nGetMicropost against the bare echo server "
            f"(so the server's share is small and steady), one call in flight, a Python loop, "
            f"{a.client_seconds:g} s runs, median of {a.repeats}, interleaved; both set a "
            f"{clientcost.TIMEOUT:g} s deadline. CPU: the calling process's CPU time per call "
            "(the client's own cost; the budget applies to it); wall: the time per call.\n\n"
        )
        return head + report.table(
            [
                "client",
                "CPU µs/call",
                f"{report.TIMES} raw",
                "wall µs/call",
                f"{report.TIMES} raw",
                "budget",
            ],
            rows,
            [False, True, True, True, True, False],
        )

    def _workers(self, echo: Target, targets: list[Target], db: Path, counts: list[int]) -> str:
        a = self.args
        get = next((t for t in targets if t.scenario.method == "GetMicropost"), None)
        if get is None or get.error:
            return "### Workers\n\nSkipped: GetMicropost does not work on this server."
        rows = []
        for n in counts:
            load = h2load.Load(
                max(a.clients, 4 * n), max(a.streams, 16), a.duration, a.grpc_timeout or None
            )
            echo_procs = self.echo_workers(n)
            echo_n = Target(f"echo x{n}", echo_procs[0], echo.scenario, echo.body, echo.frame_bytes)
            try:
                srv_n = self.microposts(f"microposts --workers {n}", db, "--workers", str(n))
            except ServerError as exc:
                why = str(exc).splitlines()[0]
                rows.append([str(n), "—", "—", "—", f"failed: the server did not start: {why}"])
                for proc in echo_procs:
                    proc.stop()
                continue
            get_n = Target(f"GetMicropost x{n}", srv_n, get.scenario, get.body, get.frame_bytes)
            one_echo, one_get = report.Series("echo x1"), report.Series("get x1")
            self.warm_up(echo_n)
            self.warm_up(get_n)
            for r in range(1, a.repeats + 1):
                for t, s in (
                    (echo, one_echo),
                    (echo_n, echo_n.series),
                    (get, one_get),
                    (get_n, get_n.series),
                ):
                    self.progress.step(
                        f"workers x{n} {r}/{a.repeats}: {t.label} ({load})", a.duration
                    )
                    self.measure(t, load, s)
            srv_n.stop()
            for proc in echo_procs:
                proc.stop()
            if not (one_echo.runs and echo_n.series.runs and one_get.runs and get_n.series.runs):
                why = echo_n.error or get_n.error or get.error or echo.error
                rows.append([str(n), "—", "—", "—", f"failed: {why}"])
                continue
            echo_x = echo_n.series.rps / one_echo.rps
            get_x = get_n.series.rps / one_get.rps
            rel = get_x / echo_x
            rows.append([
                str(n),
                _scaling(one_echo, echo_n.series),
                _scaling(one_get, get_n.series),
                report.ratio(rel),
                WORKERS_BUDGET.verdict(rel),
            ])  # fmt: skip
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

    def _report(self, results: dict[str, str]) -> str:
        a = self.args
        argv = shlex.join(sys.argv[1:])
        lines = [
            f"## Results: {report.now()}",
            "",
            f"Command: `python -m bench{' ' + argv if argv else ''}` (what `make bench` runs, "
            "with `BENCH_ARGS`)",
            "",
            *report.machine(self.h2load_version),
            f"- Load average (1 min) before the run: {self.load_before}, after: "
            f"{report.load_average()} (anything much above 0 means other work shared the cores)",
            f"- Server: `python -m microposts_server --store sqlite:///…` with its defaults"
            f"{' and ' + shlex.join(a.server_arg) if a.server_arg else ''}; "
            "the echo: `python -m bench.echo` (default asyncio loop, no middleware)",
            "",
        ]
        for note in self.notes:
            lines.append(f"> {note}")
        if self.notes:
            lines.append("")
        for key in ("throughput", "latency", "client", "workers"):
            if key in results:
                lines += [results[key], ""]
        return "\n".join(lines)


def _scaling(one: report.Series, many: report.Series) -> str:
    x = report.ratio(many.rps / one.rps)
    return f"{report.fmt_rps(one.rps)} -> {report.fmt_rps(many.rps)} ({x})"


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
            return Bench(args, tmp, stack).run()
    except KeyboardInterrupt:
        print("\ninterrupted: servers stopped", file=sys.stderr)
        return 130
