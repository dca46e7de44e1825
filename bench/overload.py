"""Overload: goodput past capacity, MicroPosts and the bare echo side by side.

For each server: its peak (closed loop, the throughput scenario's load), then
open-loop load from h2load (``--rps``) at 2x and 4x that peak, from 8 and from
64 connections, every call with a 200 ms deadline (``grpc-timeout: 200m``).

What is counted, and how honestly:

- **Goodput**: calls answered OK per second. h2load reports HTTP 200 for
  gRPC errors too, but every OK unary reply carries one DATA frame of a
  known size and an error is trailers-only: OK calls = body bytes / reply size.
- **Latency and how fast rejections were answered**: h2load's per-request
  log has no status, so a probe (a Python grpc.aio client, ~50 calls a
  second on a connection of its own, same 200 ms deadline) calls alongside and
  records each call's status and time: p50/p99 of its OK calls, and of its
  failed ones (what a caller waits to learn it was turned away).
- **Like for like**: the probe also runs beside every closed-loop peak run,
  and the latency target ("OK p99 under overload ≤ 2x the p99 at peak") is
  the probe's p99 over the probe's p99: both include the probe's own client
  time. h2load's own p99 at peak is shown in its column, not judged. The
  goodput target's base, the peak's req/s, is h2load's, with the probe beside
  it as in the open-loop runs.
- **Two peaks**: *the peak* (the strict one) is closed loop with the
  throughput scenario's load (``--clients x --streams``, 32 calls in flight
  by default); it sets the offered rates and is what the targets are judged
  against. The open-loop runs put up to *connections x the server's stream
  bound* calls in the server (8 connections: 64 calls; 64: 512), so each
  connection count also gets a closed-loop peak from that many connections
  (``-c N -m <the MicroPosts server's --max-concurrent-streams>``): *the
  same-connections peak*. The targets column gives the OK p99 ratio against
  both; the second says how much of the latency is the calls in flight
  (Little's law) rather than the overload. The echo has no stream bound
  (h2load's 100 per connection binds in its open-loop runs), so its
  same-connections peaks do not hold the same calls as its open-loop runs.
- **Open loop, as far as it goes**: h2load issues ``--rps`` per connection,
  but a request it cannot start because the connection's streams are all in
  use (the server's bound, ``--max-concurrent-streams``) waits in h2load,
  untimed (h2load times a request from when its HEADERS leave), and is sent
  when a stream frees. So "answered" can fall short of "offered": the rest
  waited on the callers' side, where it cost the server nothing; a real
  caller would have given up on it after its own 200 ms.

Then what turning a call away costs at each point grpc.aio offers
(``bench.rejecting``), and many ``AsyncClient`` callers (100 ms deadlines)
against MicroPosts held past capacity by h2load, with throttling and the
retry budget on (the default) and off.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

import grpc

from bench import h2load, report, seed
from bench.procs import ServerError
from bench.rejecting import POINTS
from bench.runs import ECHO, Bench, Plan, Scenario, Servers, Target

LEVELS = ((2, 8), (4, 8), (2, 64), (4, 64))  # (times the peak, connections)
CONNECTIONS = tuple(sorted({c for _, c in LEVELS}))  # each gets a same-connections peak
DEADLINE = "200m"
DEADLINE_S = 0.2
STREAMS = 100  # h2load's own bound per connection: high, so the server's is the one that binds
PROBE_RATE = 50.0  # calls per second
GOODPUT = report.Budget(0.9)
OK_P99 = report.Budget(2.0, at_least=False)  # x the probe's p99 at peak
REJECT_P99_MS = 10.0
CALLERS = 32  # AsyncClient callers, 8 per client (the server's streams per connection)
CALLER_TIMEOUT = 0.1


def plan(bench: Bench) -> Plan:
    """Peaks, the levels, the rejection points, the two Python runs; ``--repeats`` rounds."""
    a = bench.args
    rounds = 2 * (1 + len(CONNECTIONS) + len(LEVELS)) * a.repeats
    runs = rounds + len(POINTS) + 1 + 2
    return Plan(runs, runs * (a.duration + 1.5))


@dataclass
class Probe:
    """A caller on the side: records each call's status and time (see the module docstring)."""

    address: str
    scenario: seed.Scenario
    results: list[tuple[str, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Probe:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    async def _run(self) -> None:
        async with grpc.aio.insecure_channel(self.address) as channel:
            call = channel.unary_unary(
                self.scenario.path,
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=lambda b: b,
            )
            pending: set[asyncio.Task[None]] = set()

            async def one() -> None:
                start = time.monotonic()
                try:
                    await call(self.scenario.request, timeout=DEADLINE_S)
                    code = "OK"
                except grpc.RpcError as exc:
                    code = exc.code().name
                self.results.append((code, time.monotonic() - start))

            while not self._stop.is_set():
                task = asyncio.create_task(one())
                pending.add(task)
                task.add_done_callback(pending.discard)
                await asyncio.sleep(1 / PROBE_RATE)
            await asyncio.gather(*pending, return_exceptions=True)

    def times(self, ok: bool) -> list[float]:
        """Sorted call times, in seconds, of the OK calls (or of the failed ones)."""
        return sorted(t for code, t in self.results if (code == "OK") == ok)


@dataclass
class Seen:
    """What the probe saw in one row's runs, all runs together."""

    ok_ms: list[float] = field(default_factory=list)
    failed_ms: list[float] = field(default_factory=list)
    codes: Counter[str] = field(default_factory=Counter)

    def add(self, probe: Probe) -> None:
        """One run's calls."""
        self.ok_ms += [s * 1000 for s in probe.times(ok=True)]
        self.failed_ms += [s * 1000 for s in probe.times(ok=False)]
        self.codes.update(code for code, _ in probe.results)

    @property
    def ok_p99(self) -> float:
        """p99 of the OK calls' times, in ms (NaN if there were none)."""
        return _pct(self.ok_ms, 0.99)

    def cells(self) -> list[str]:
        """The table's probe columns: OK p50, OK p99, failed p50, failed p99, calls by status."""

        def pair(ms: list[float]) -> list[str]:
            return [report.fmt_ms(_pct(ms, q)) for q in (0.5, 0.99)] if ms else ["—", "—"]

        codes = ", ".join(f"{n} {code}" for code, n in self.codes.most_common())
        return [*pair(self.ok_ms), *pair(self.failed_ms), codes]


@dataclass
class Peak:
    """A closed-loop peak on one server: h2load's runs, and the probe beside them."""

    target: Target  # its own (see _fresh): a failure here leaves the other rows alone
    load: h2load.Load
    seen: Seen = field(default_factory=Seen)
    cores: list[float] = field(default_factory=list)

    @property
    def rps(self) -> float:
        """h2load's calls per second, median of the runs (0 if none succeeded)."""
        return self.target.series.rps if self.target.series.runs else 0.0


@dataclass
class Level:
    """One load level on one server, its runs' numbers."""

    times_peak: int
    clients: int
    offered: float
    answered: list[float] = field(default_factory=list)
    ok: list[float] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)
    cores: list[float] = field(default_factory=list)
    seen: Seen = field(default_factory=Seen)


@dataclass
class Rows:
    """One server's part of the table: its peak, its same-connections peaks, its levels."""

    peak: Peak
    same: dict[int, Peak]  # by connections
    levels: list[Level]


def run(bench: Bench, servers: Servers) -> str:
    """Peaks and levels for both servers, the rejection costs, the Python callers; the section."""
    a = bench.args
    # Targets of their own: another scenario's failure on a shared one must not skip these.
    pairs = [(ECHO, _fresh(servers.echo))]
    get = servers.target_for("GetMicropost")
    if get is not None:
        get = _fresh(get)
        pairs.append(("MicroPosts GetMicropost", get))
    bound = _stream_bound(a)
    rows: dict[str, Rows] = {}
    for label, t in pairs:
        # The peak comes first: it sets the rates the levels offer.
        peak = Peak(t, h2load.Load(a.clients, a.streams, a.duration, "10S"))
        for r in range(1, a.repeats + 1):
            bench.progress.step(
                f"overload: peak of {label} {r}/{a.repeats} ({peak.load})", a.duration
            )
            _closed(bench, peak)
        same = {c: Peak(_fresh(t), h2load.Load(c, bound, a.duration, "10S")) for c in CONNECTIONS}
        rows[label] = Rows(peak, same, [Level(k, c, k * peak.rps) for k, c in LEVELS])
    for r in range(1, a.repeats + 1):
        for label, t in pairs:
            for c in CONNECTIONS:
                closed = rows[label].same[c]
                bench.progress.step(
                    f"overload {r}/{a.repeats}: {label}, closed loop {closed.load}", a.duration
                )
                _closed(bench, closed)
                for level in (lv for lv in rows[label].levels if lv.clients == c):
                    bench.progress.step(
                        f"overload {r}/{a.repeats}: {label} at {level.times_peak}x "
                        f"from {level.clients} connections",
                        a.duration,
                    )
                    _measure(bench, t, level)
    parts = [_levels_section(a, rows), _rejection_section(bench, pairs)]
    if get is not None:
        parts.append(_callers_section(bench, get, rows["MicroPosts GetMicropost"].peak.rps))
    return "\n\n".join(p for p in parts if p)


def _fresh(t: Target) -> Target:
    return Target(t.label, t.server, t.scenario, t.body, t.frame_bytes)


def _stream_bound(a: argparse.Namespace) -> int:
    """The MicroPosts server's ``--max-concurrent-streams`` as the bench starts it."""
    from microposts_server import config

    try:
        return config.parse(["--address", "127.0.0.1:0", *a.server_arg]).max_concurrent_streams
    except config.ConfigError:  # the server will not start either; its rows say so
        return config.Settings().max_concurrent_streams


def _closed(bench: Bench, peak: Peak) -> None:
    """One closed-loop run with the probe beside it.

    Into the target's series, whose CPU per call the rejection costs are
    compared with: the probe's calls are served too, so they are counted in.
    """
    t = peak.target
    runs = len(t.series.runs)
    cpu = t.server.cpu_seconds()
    with Probe(t.server.address, t.scenario) as probe:
        bench.measure(t, peak.load)
    if len(t.series.runs) == runs:
        return
    peak.cores.append((t.server.cpu_seconds() - cpu) / bench.args.duration)
    done = t.series.runs[-1].done
    t.series.cpu[-1] *= done / (done + len(probe.results))
    peak.seen.add(probe)


def _measure(bench: Bench, t: Target, level: Level) -> None:
    assert bench.h2load is not None
    if not level.offered or t.frame_bytes is None:
        return
    a = bench.args
    rps = level.offered / level.clients
    load = h2load.Load(level.clients, STREAMS, a.duration, DEADLINE, rps=rps)
    log = bench.tmp / "h2load-overload.tsv"
    cpu = t.server.cpu_seconds()
    with Probe(t.server.address, t.scenario) as probe:
        try:
            result = h2load.run_open(bench.h2load, t.url, t.body, load, log)
        except h2load.LoadError as exc:
            bench.progress.say(f"{t.label}: {exc}")
            return
        finally:
            log.unlink(missing_ok=True)
    t.server.trim_log()
    level.cores.append((t.server.cpu_seconds() - cpu) / a.duration)
    level.answered.append(result.done / a.duration)
    level.ok.append(result.data_bytes // t.frame_bytes[1] / a.duration)
    level.refused.append(result.refused)
    level.seen.add(probe)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


HEADER = [
    "server", "load", "offered/s", "answered/s", "OK/s", f"{report.TIMES} peak",
    "probe OK p50 ms", "probe OK p99 ms", "probe failed p50 ms", "probe failed p99 ms",
    "probe's calls", "h2load p99 ms", "server cores", "targets",
]  # fmt: skip


def _levels_section(a: argparse.Namespace, rows: dict[str, Rows]) -> str:
    lines = []
    for label, r in rows.items():
        base = r.peak.rps
        lines.append(_peak_row(label, f"peak: closed loop {_flags(r.peak)}", r.peak, base))
        for c in CONNECTIONS:
            same = r.same[c]
            lines.append(_peak_row(label, f"closed loop {_flags(same)}", same, base))
            for level in (lv for lv in r.levels if lv.clients == c):
                lines.append(_level_row(label, level, r.peak, same, label != ECHO))
    head = (
        "### Overload\n\nOpen loop with h2load `--rps`, every call with a "
        f"{DEADLINE_S * 1000:.0f} ms deadline, {a.duration:g} s runs, median of {a.repeats} "
        "(the probe's times: all runs together). OK/s is counted from reply bodies; the probe "
        f"(~{PROBE_RATE:.0f} calls/s on its own connection, {DEADLINE_S * 1000:.0f} ms deadline) "
        "runs beside every run, closed loop too, and gives the times of OK and failed calls. "
        "*The peak* (the first row of each server, closed loop with the throughput load) sets "
        "the offered rates and the targets' base; each connection count also has a closed-loop "
        "run from that many connections, as many streams each as the server's bound: *the same "
        "connections' peak*. Targets (MicroPosts): goodput "
        f"≥ {GOODPUT.limit:.1f}{report.TIMES} the peak; the probe's OK p99 ≤ "
        f"{OK_P99.limit:.0f}{report.TIMES} its OK p99 at the peak (judged), and at the same "
        f"connections' peak (shown); failed p99 ≤ {REJECT_P99_MS:.0f} ms. h2load's own p99 is "
        "shown for the closed-loop runs and not judged. How to read answered vs offered: see "
        "the module docstring of `bench/overload.py` and the notes below.\n\n"
    )
    return head + report.table(HEADER, lines, [False, False, *[True] * 11, False])


def _flags(peak: Peak) -> str:
    return f"-c{peak.load.clients} -m{peak.load.streams}"


def _peak_row(label: str, load: str, peak: Peak, base: float) -> list[str]:
    s = peak.target.series
    if not s.runs:
        return [label, load, "", "failed", *[""] * (len(HEADER) - 5), peak.target.error]
    return [
        label,
        load,
        "",
        report.fmt_rps(peak.rps),
        report.fmt_rps(peak.rps),  # closed loop: every call was checked OK (bench.h2load.run)
        report.ratio(peak.rps / base) if base else "—",
        *peak.seen.cells(),
        report.fmt_ms(s.p99_ms),
        f"{statistics.median(peak.cores):.2f}" if peak.cores else "—",
        "",
    ]


def _level_row(label: str, level: Level, peak: Peak, same: Peak, judged: bool) -> list[str]:
    load = f"{level.times_peak}{report.TIMES} from {level.clients} conns"
    if not level.ok:
        return [label, load, report.fmt_rps(level.offered), "—", "—", "—"]
    ok = statistics.median(level.ok)
    ratio = ok / peak.rps if peak.rps else 0.0
    seen = level.seen
    verdicts = []
    if judged:
        verdicts.append(f"goodput {GOODPUT.verdict(ratio)}")
        p99 = []
        for name, base in (("the peak's", peak), ("same conns'", same)):
            if seen.ok_ms and base.seen.ok_ms:
                times = seen.ok_p99 / base.seen.ok_p99
                p99.append(f"{report.ratio(times)} {name} ({OK_P99.verdict(times)})")
        if p99:
            verdicts.append("OK p99 " + ", ".join(p99))
        if seen.failed_ms:
            met = _pct(seen.failed_ms, 0.99) <= REJECT_P99_MS
            verdicts.append(f"failed ≤ {REJECT_P99_MS:.0f} ms: {'met' if met else 'MISSED'}")
    return [
        label,
        load,
        report.fmt_rps(level.offered),
        report.fmt_rps(statistics.median(level.answered)),
        report.fmt_rps(ok),
        report.ratio(ratio),
        *seen.cells(),
        "",
        f"{statistics.median(level.cores):.2f}",
        "; ".join(verdicts),
    ]


def _rejection_section(bench: Bench, pairs: list[tuple[str, Target]]) -> str:
    """CPU per call of the echo serving, and of a server turning every call away at each point."""
    a = bench.args
    load = h2load.Load(a.clients, a.streams, a.duration, "10S")
    echo = pairs[0][1]
    echo_cpu = echo.series.cpu_us  # from its peak runs
    get_cpu = pairs[1][1].series.cpu_us if len(pairs) > 1 else 0.0
    rows = [["served: bare echo", "", f"{echo_cpu:.0f}", report.ratio(1.0),
             report.ratio(echo_cpu / get_cpu) if get_cpu else "—"]]  # fmt: skip
    if get_cpu:
        rows.append(["served: MicroPosts GetMicropost", "", f"{get_cpu:.0f}",
                     report.ratio(get_cpu / echo_cpu), report.ratio(1.0)])  # fmt: skip
    for point in POINTS:
        bench.progress.step(f"overload: a rejection at {point}", a.duration)
        argv = ["-m", "bench.rejecting", "--at", point, "--address", "127.0.0.1:0"]
        try:
            server = bench.start(f"rejecting {point}", [sys.executable, *argv])
        except ServerError as exc:
            rows.append([f"rejected: {point}", "failed", str(exc).splitlines()[0]])
            continue
        t = Target(f"rejected: {point}", server, echo.scenario, echo.body)
        bench.measure(t, load)
        server.stop()
        if not t.series.runs:
            rows.append([t.label, "failed", t.error])
            continue
        cpu = t.series.cpu_us
        rows.append([
            t.label, report.fmt_rps(t.series.rps), f"{cpu:.0f}", report.ratio(cpu / echo_cpu),
            report.ratio(cpu / get_cpu) if get_cpu else "—",
        ])  # fmt: skip
    head = (
        "### What turning a call away costs\n\n"
        f"h2load `{load}` (closed loop) against `bench.rejecting`, a bare grpc.aio server "
        "that answers every call RESOURCE_EXHAUSTED at one point; CPU: the server's own "
        "(user + system, from /proc) per call answered. One run each.\n\n"
    )
    header = ["where", "answers/s", "CPU µs/call", f"{report.TIMES} a served echo",
              f"{report.TIMES} a served GetMicropost"]  # fmt: skip
    return head + report.table(header, rows, [False, True, True, True, True])


@dataclass
class Callers:
    """What the AsyncClient callers saw in one run."""

    label: str
    outcomes: Counter[str] = field(default_factory=Counter)
    error_ms: dict[str, list[float]] = field(default_factory=dict)  # by kind of error
    goodput: float = 0.0
    stats: Any = None


def _callers_section(bench: Bench, t: Target, peak: float) -> str:
    """AsyncClient callers beside h2load at 2x the peak from 64 connections: defaults vs off."""
    import microposts_client as mc

    if not peak or bench.h2load is None or t.frame_bytes is None:
        return ""
    a = bench.args
    variants = [
        ("throttling and retry budget on (defaults)", {}),
        (
            "both off",
            {"throttle": None, "retry": replace(mc.DEFAULT_RETRY, budget=None)},
        ),
    ]
    runs = []
    for label, kwargs in variants:
        bench.progress.step(f"overload: AsyncClient callers, {label}", a.duration)
        runs.append(_callers_run(bench, t, peak, label, kwargs))
    rows = [
        [
            c.label,
            str(sum(c.outcomes.values())),
            ", ".join(f"{n} {k}" for k, n in c.outcomes.most_common()),
            "; ".join(
                f"{kind} {report.fmt_ms(_pct(ms, 0.5))} / {report.fmt_ms(_pct(ms, 0.99))}"
                for kind, ms in sorted(c.error_ms.items())
            )
            or "—",
            report.fmt_rps(c.goodput),
            report.ratio(c.goodput / peak),
            f"{c.stats.dropped} dropped, {c.stats.retries} retries, "
            f"{c.stats.retries_refused} refused",
        ]
        for c in runs
    ]
    head = (
        "### Python callers past capacity\n\n"
        f"{CALLERS} `AsyncClient` callers ({CALLERS // 8} clients, each one connection), "
        f"GetMicropost in a loop with {CALLER_TIMEOUT * 1000:.0f} ms deadlines, for "
        f"{a.duration:g} s, while h2load offers 2{report.TIMES} the peak from 64 connections "
        f"({DEADLINE_S * 1000:.0f} ms deadlines). Goodput: h2load's OK calls per second "
        "during the run. Error times: how long a caller waited for each kind of error.\n\n"
    )
    header = ["client", "calls", "outcomes", "error p50 / p99 ms, by kind",
              "server goodput/s", f"{report.TIMES} peak", "client's own counters"]  # fmt: skip
    return head + report.table(header, rows, [False, True, False, False, True, True, False])


def _callers_run(
    bench: Bench, t: Target, peak: float, label: str, kwargs: dict[str, Any]
) -> Callers:
    import microposts_client as mc

    assert bench.h2load is not None and t.frame_bytes is not None
    a = bench.args
    result = Callers(label)
    name = t.scenario.request.name  # type: ignore[attr-defined]

    async def callers() -> None:
        clients = [mc.AsyncClient(t.server.address, **kwargs) for _ in range(CALLERS // 8)]
        end = time.monotonic() + a.duration

        async def loop(client: mc.AsyncClient) -> None:
            while time.monotonic() < end:
                start = time.monotonic()
                try:
                    await client.get_micropost(name=name, timeout=CALLER_TIMEOUT)
                    result.outcomes["OK"] += 1
                except mc.ServiceError as exc:
                    kind = type(exc).__name__
                    if exc.reason == "CLIENT_THROTTLED":
                        kind += " (dropped locally)"
                    result.outcomes[kind] += 1
                    took = (time.monotonic() - start) * 1000
                    result.error_ms.setdefault(kind, []).append(took)

        await asyncio.gather(*(loop(c) for c in clients for _ in range(8)))
        result.stats = _sum_stats([c.overload_stats() for c in clients])
        for c in clients:
            await c.close()

    load = h2load.Load(64, STREAMS, a.duration + 1, DEADLINE, rps=2 * peak / 64)
    log = bench.tmp / "h2load-callers.tsv"
    answer: list[h2load.OpenResult] = []
    background = threading.Thread(
        target=lambda: answer.append(h2load.run_open(bench.h2load or "", t.url, t.body, load, log))
    )
    background.start()
    time.sleep(0.5)
    asyncio.run(callers())
    background.join(a.duration + 60)
    log.unlink(missing_ok=True)
    if answer:
        result.goodput = answer[0].data_bytes // t.frame_bytes[1] / (a.duration + 1)
    return result


def _sum_stats(stats: list[Any]) -> Any:
    from microposts_client import OverloadStats

    return OverloadStats(
        dropped=sum(s.dropped for s in stats),
        drop_probability=max(s.drop_probability for s in stats),
        retries=sum(s.retries for s in stats),
        retries_refused=sum(s.retries_refused for s in stats),
        retry_tokens=None,
    )


SCENARIO = Scenario("overload", plan, run)
