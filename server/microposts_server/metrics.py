"""Counters for what operators need to see, in Prometheus' text format."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable


class Metrics:
    """Per-method call counts by status code, and admission rejections."""

    def __init__(self) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
        self.rejected: Counter[str] = Counter()
        self.seconds: dict[str, float] = {}
        self.extra: list[Callable[[], list[str]]] = []  # more lines, e.g. overload's gauges

    def observe(self, method: str, code: str, seconds: float) -> None:
        self.calls[method, code] += 1
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
        for more in self.extra:
            lines += more()
        return "\n".join(lines) + "\n"


async def serve_metrics(metrics: Metrics, address: str) -> tuple[asyncio.Server, str]:
    """A minimal HTTP endpoint: ``GET /metrics`` answers ``metrics.render()``.

    Returns the server and the address it bound (port 0 picks a free port).
    """

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            path = request.split(b" ", 2)[1] if request.count(b" ") >= 2 else b""
            if path == b"/metrics":
                body, status = metrics.render().encode(), b"200 OK"
                kind = b"text/plain; version=0.0.4; charset=utf-8"
            else:
                body, status, kind = b"not found\n", b"404 Not Found", b"text/plain"
            writer.write(
                b"HTTP/1.1 "
                + status
                + b"\r\nContent-Type: "
                + kind
                + b"\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\nConnection: close\r\n\r\n"
                + body
            )
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        finally:
            writer.close()

    host, _, port = address.rpartition(":")
    server = await asyncio.start_server(answer, host.strip("[]"), int(port))
    bound = server.sockets[0].getsockname()[1]
    return server, f"{host}:{bound}"
