"""Counters for what operators need to see, in Prometheus' text format."""

from __future__ import annotations

from collections import Counter


class Metrics:
    """Per-method call counts by status code, and admission rejections."""

    def __init__(self) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
        self.rejected: Counter[str] = Counter()
        self.seconds: dict[str, float] = {}

    def observe(self, method: str, code: str, seconds: float) -> None:
        self.calls[(method, code)] += 1
        self.seconds[method] = self.seconds.get(method, 0.0) + seconds

    def reject(self, method: str) -> None:
        """A call turned away before any work because its deadline was too close."""
        self.rejected[method] += 1

    def render(self) -> str:
        """The counters in Prometheus' text exposition format."""
        lines = [
            "# HELP microposts_calls_total Calls handled, by method and status code.",
            "# TYPE microposts_calls_total counter",
        ]
        for (method, code), n in sorted(self.calls.items()):
            lines.append(f'microposts_calls_total{{method="{method}",code="{code}"}} {n}')
        lines += [
            "# HELP microposts_call_seconds_total Time spent handling calls, by method.",
            "# TYPE microposts_call_seconds_total counter",
        ]
        for method, s in sorted(self.seconds.items()):
            lines.append(f'microposts_call_seconds_total{{method="{method}"}} {s:.6f}')
        lines += [
            "# HELP microposts_admission_rejected_total Calls rejected before any work "
            "because too little of their deadline was left.",
            "# TYPE microposts_admission_rejected_total counter",
        ]
        for method, n in sorted(self.rejected.items()):
            lines.append(f'microposts_admission_rejected_total{{method="{method}"}} {n}')
        return "\n".join(lines) + "\n"
