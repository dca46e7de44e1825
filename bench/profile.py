"""Where a MicroPosts call's server CPU goes: py-spy under h2load load.

``python -m bench.profile [--method GetMicropost] [--seconds 10]`` starts a
seeded server as the bench does, loads one method with h2load, records the
server with py-spy (raw collapsed stacks and a flame graph in ``--out``) and
prints the functions that cost the most, inclusive, in percent of the
server's samples and in microseconds of CPU per call (the server's CPU time
per call from /proc, times that share).

py-spy is not a project dependency: ``pip install py-spy`` into the venv.
Its sampling costs the server a little (``--nonblocking`` keeps that small).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

from bench import cli, h2load, report, seed
from bench.procs import ROOT, thread_cpu_seconds
from bench.runs import Bench, Target

# Frames to show even when they are not ours: where per-call costs usually hide.
INTERESTING = (
    "microposts_server",
    "logging/",
    "json/",
    "sqlite3",
    "google/protobuf",
    "asyncio/",
    "grpc/",
)


def summarize(raw: Path, cpu_us_per_call: float, top: int) -> str:
    """The functions with the largest inclusive share of the samples in a py-spy raw file."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";")[1:]]  # the first is the process
        frames = [f for f in frames if f and not f.startswith("thread ")]
        total += count
        for name in set(frames):
            inclusive[name] += count
        if frames:
            own[frames[-1]] += count
    if not total:
        return "py-spy recorded no samples"
    lines = [
        f"{total} samples; the server used {cpu_us_per_call:.0f} µs of CPU per call.",
        "",
        "Inclusive (the function and what it calls):",
    ]
    shown = 0
    for name, n in inclusive.most_common():
        if not any(key in name for key in INTERESTING):
            continue
        share = n / total
        lines.append(f"  {share * 100:5.1f}%  {share * cpu_us_per_call:6.0f} µs/call  {name}")
        shown += 1
        if shown >= top:
            break
    lines += ["", "Self (time in the function's own code):"]
    for name, n in own.most_common(top):
        share = n / total
        lines.append(f"  {share * 100:5.1f}%  {share * cpu_us_per_call:6.0f} µs/call  {name}")
    return "\n".join(lines)


def by_thread(
    pid: int,
    before: dict[int, tuple[str, float]],
    after: dict[int, tuple[str, float]],
    calls: int,
) -> str:
    """CPU µs per call by thread (from /proc): what py-spy's samples cannot say.

    py-spy counts a thread that waits for the GIL as busy, so gRPC's poller
    thread shows up as ``Thread.run`` with a large share; /proc says how much
    CPU each thread really used.
    """
    totals: dict[str, float] = {}
    for tid, (name, cpu) in after.items():
        if tid in before:
            # Other threads named "python" are grpc.aio's poller.
            label = "main (event loop)" if tid == pid else name
            totals[label] = totals.get(label, 0.0) + (cpu - before[tid][1]) / calls * 1e6
    ranked = sorted(totals.items(), key=lambda item: -item[1])
    parts = [f"{name} {us:.0f}" for name, us in ranked if us >= 1]
    return "CPU µs/call by thread (/proc, over the whole load): " + ", ".join(parts)


def _frame(text: str) -> str:
    # "handle (microposts_server/rpc.py:88)" -> "handle (microposts_server/rpc.py)"
    name, sep, where = text.partition(" (")
    if not sep:
        return text
    return f"{name} ({where.rstrip(')').rsplit(':', 1)[0]})"


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m bench.profile``."""
    args = _parse(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        print("py-spy not found: pip install py-spy", file=sys.stderr)
        return 2
    bench_args = cli.parse_args(["--no-write", *(f"--server-arg={a}" for a in args.server_arg)])
    args.out.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="microposts-profile-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        bench = Bench(bench_args, Path(tmp), stack)
        bench.h2load = h2load.find(install=True, say=print)
        if bench.h2load is None:
            return 2
        for target in _targets(bench, args.method or ["GetMicropost"]):
            _profile(bench, target, args, py_spy)
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    p.add_argument(
        "--method",
        action="append",
        choices=["echo", *cli.METHODS],
        help="method(s) to profile (default GetMicropost); echo: the bare echo server",
    )
    p.add_argument("--seconds", type=float, default=10.0, help="seconds of sampling per method")
    p.add_argument("--out", type=Path, default=ROOT / ".bench" / "profile", help="output folder")
    p.add_argument("--top", type=int, default=25, help="how many functions to list")
    p.add_argument("--native", action="store_true", help="also sample C/Cython frames (slower)")
    p.add_argument(
        "--server-arg", action="append", default=[], metavar="ARG", help="extra server argument"
    )
    return p.parse_args(argv)


def _targets(bench: Bench, wanted: list[str]) -> list[Target]:
    """The echo and a seeded MicroPosts server, as far as ``wanted`` asks for them."""
    targets: list[Target] = []
    if "echo" in wanted:
        targets.append(bench.target("echo", bench.echo(), seed.echo_scenario()))
    if set(wanted) - {"echo"}:
        server = bench.microposts("microposts", bench.tmp / "profile.db")
        seeded = seed.seed(server.address)
        targets += [
            bench.target(s.method, server, s) for s in seed.scenarios(seeded) if s.method in wanted
        ]
    return targets


def _profile(bench: Bench, target: Target, args: argparse.Namespace, py_spy: str) -> None:
    """Load ``target`` with h2load while py-spy records its server; print where the CPU went."""
    server = target.server
    bench.warm_up(target)
    series = report.Series(target.label)
    flame_seconds = min(args.seconds, 3.0)
    load = h2load.Load(
        bench.args.clients,
        bench.args.streams,
        args.seconds + flame_seconds + 4,  # py-spy's start-up, twice
        bench.args.grpc_timeout,
    )
    runner = threading.Thread(target=bench.measure, args=(target, load, series))
    threads_before = thread_cpu_seconds(server.pid)
    runner.start()
    raw = args.out / f"{target.label}.txt"
    svg = args.out / f"{target.label}.svg"
    _record(py_spy, server.pid, args, raw, args.seconds, "raw")
    # The flame graph is a second, shorter recording; the numbers come from raw.
    _record(py_spy, server.pid, args, svg, flame_seconds, "flamegraph")
    runner.join()
    threads_after = thread_cpu_seconds(server.pid)
    if not raw.exists():
        return
    if target.error or not series.runs:
        print(f"{target.label}: load failed: {target.error}")
        return
    run = series.runs[0]
    print(f"\n## {target.label}: {run.rps:,.0f} req/s under h2load {load}")
    print(summarize(raw, series.cpu_us, args.top))
    print(by_thread(server.pid, threads_before, threads_after, run.done))
    print(f"(raw stacks: {raw}; flame graph: {svg})")


def _record(
    py_spy: str, pid: int, args: argparse.Namespace, path: Path, seconds: float, fmt: str
) -> None:
    """One py-spy recording of ``pid`` into ``path``; a failure is printed, not raised."""
    spy = [py_spy, "record", "--pid", str(pid), "--duration", f"{seconds:g}", "--function"]
    # py-spy cannot read native stacks without pausing the process.
    spy += ["--native"] if args.native else ["--nonblocking"]
    done = subprocess.run(
        [*spy, "--format", fmt, "--output", str(path)],
        capture_output=True,
        text=True,
        timeout=args.seconds + 60,
    )
    if done.returncode != 0:
        print(f"py-spy failed ({done.returncode}): {done.stderr.strip()}")


if __name__ == "__main__":
    raise SystemExit(main())
