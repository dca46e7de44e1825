"""Tables for the terminal and for ``docs/benchmarks.md``.

The bench owns the part of ``docs/benchmarks.md`` between the two markers
below and rewrites it on every run; the rest of the file (notes, profiles)
is written by people and left alone.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import shlex
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.h2load import Result

BEGIN = "<!-- bench:begin (written by `python -m bench`; edits here are overwritten) -->"
END = "<!-- bench:end -->"


@dataclass
class Series:
    """The runs of one target under one load, in the order they ran."""

    label: str
    runs: list[Result] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # server CPU µs per call, per run

    @property
    def cpu_us(self) -> float:
        """Median server CPU time per call, in microseconds (0 if not measured)."""
        return statistics.median(self.cpu) if self.cpu else 0.0

    @property
    def rps(self) -> float:
        """Median requests per second."""
        return statistics.median(r.rps for r in self.runs)

    @property
    def p50_ms(self) -> float:
        """Median of the runs' p50 latency."""
        return statistics.median(r.p50_ms for r in self.runs)

    @property
    def p99_ms(self) -> float:
        """Median of the runs' p99 latency."""
        return statistics.median(r.p99_ms for r in self.runs)

    @property
    def spread(self) -> float:
        """(max - min) / median of the runs' requests per second: how noisy the runs were."""
        values = [r.rps for r in self.runs]
        return (max(values) - min(values)) / self.rps if self.rps else 0.0


@dataclass(frozen=True)
class Budget:
    """A ratio the design asks for: ``at_least`` (or at most) ``limit``, maybe an aim."""

    limit: float
    at_least: bool = True
    aim: float | None = None

    def verdict(self, ratio: float) -> str:
        """``≥ 0.75 (aim 1.00): met`` or ``... MISSED``."""
        sign = "≥" if self.at_least else "≤"
        aim = f" (aim {self.aim:.2f})" if self.aim is not None else ""
        met = ratio >= self.limit if self.at_least else ratio <= self.limit
        return f"{sign} {self.limit:.2f}{aim}: {'met' if met else 'MISSED'}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> str:
    """A Markdown table, padded so it also reads well in a terminal."""
    n = len(header)
    # A short row (a failure) is padded; a long one keeps its extra cells in the last column.
    fitted = [
        [*r[: n - 1], " ".join(r[n - 1 :])] if len(r) >= n else [*r, *[""] * (n - len(r))]
        for r in rows
    ]
    cells = [list(header), *fitted]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        parts = [
            c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, right, strict=True)
        ]
        return "| " + " | ".join(parts) + " |"

    rule = (
        "|"
        + "|".join(
            ("-" * (w + 1) + ":") if r else "-" * (w + 2)
            for w, r in zip(widths, right, strict=True)
        )
        + "|"
    )
    return "\n".join([line(header), rule, *(line(r) for r in fitted)])


def fmt_rps(value: float) -> str:
    """Requests per second, to the unit."""
    return f"{value:,.0f}"


def fmt_ms(value: float) -> str:
    """Milliseconds, three significant figures or so."""
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


TIMES = "\u00d7"  # the multiplication sign, as in "0.87x"


def ratio(value: float) -> str:
    """A ratio such as ``0.87`` followed by the multiplication sign."""
    return f"{value:.2f}{TIMES}"


RATE_COLUMNS = ["req/s", "spread", "p50 ms", "p99 ms", "CPU µs/call"]
"""The columns of ``rate_cells`` before its two ratios."""


def rate_cells(s: Series, base_rps: float, base_cpu: float) -> list[str]:
    """A throughput row's cells: ``RATE_COLUMNS``, then req/s and CPU as ratios to a base.

    The CPU ratio is the base's CPU per call over this one's (higher is better,
    like the req/s ratio); a base of 0 shows "—".
    """
    return [
        fmt_rps(s.rps),
        f"±{s.spread * 50:.0f}%" if len(s.runs) > 1 else "—",
        fmt_ms(s.p50_ms),
        fmt_ms(s.p99_ms),
        f"{s.cpu_us:.0f}",
        ratio(s.rps / base_rps) if base_rps else "—",
        ratio(base_cpu / s.cpu_us) if base_cpu and s.cpu_us else "—",
    ]


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine(h2load_version: str) -> list[str]:
    """Lines that say what the numbers were measured on."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        f"- CPU: {_cpu_model()}, {os.cpu_count()} cores ({usable} usable by this process)",
        f"- OS: {platform.system()} {platform.release()} ({platform.machine()})",
        f"- Python {platform.python_version()} ({platform.python_implementation()}), "
        f"grpcio {_version('grpcio')}, protobuf {_version('protobuf')}, "
        f"uvloop {_version('uvloop')}",
        f"- Load generator: h2load {h2load_version or 'not available'}",
    ]


def load_average() -> str:
    """The 1-minute load average, or "unknown"."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "unknown"


def now() -> str:
    """The current UTC time, to the minute."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def page(
    *,
    command: str,
    h2load_version: str,
    load_before: str,
    server_args: Sequence[str],
    notes: Sequence[str],
    sections: Sequence[str],
) -> str:
    """The whole report: what ran, on what, the notes, then each scenario's section."""
    lines = [
        f"## Results: {now()}",
        "",
        f"Command: `{command}` (what `make bench` runs, with `BENCH_ARGS`)",
        "",
        *machine(h2load_version),
        f"- Load average (1 min) before the run: {load_before}, after: "
        f"{load_average()} (anything much above 0 means other work shared the cores)",
        f"- Server: `python -m microposts_server --store sqlite:///…` with its defaults"
        f"{' and ' + shlex.join(server_args) if server_args else ''}; "
        "the echo: `python -m bench.echo` (default asyncio loop, no middleware)",
        "",
    ]
    lines += [f"> {note}" for note in notes]
    if notes:
        lines.append("")
    for section in sections:
        lines += [section, ""]
    return "\n".join(lines)


def write_docs(path: Path, body: str) -> None:
    """Replace the bench's part of ``path`` (between the markers) with ``body``."""
    block = f"{BEGIN}\n\n{body.strip()}\n\n{END}"
    if path.exists():
        text = path.read_text()
        start, end = text.find(BEGIN), text.find(END)
        if start != -1 and end > start:
            text = text[:start] + block + text[end + len(END) :]
        else:
            text = text.rstrip() + "\n\n" + block + "\n"
    else:
        text = (
            "# Benchmarks\n\n"
            "The performance budget in docs/design.md, measured by `make bench`"
            " (`python -m bench`).\n\n" + block + "\n"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
