"""h2load as a gRPC load generator: find or install it, run it, read its output.

h2load (nghttp2) is written in C and costs a fraction of a core where a Python
load generator would need a whole one to load one Python server. It knows
HTTP/2, not gRPC: it sees the HTTP status (always 200 for gRPC) but not the
``grpc-status`` trailer. So a run is checked two ways beyond "every response
was 2xx": the scenario's request is first sent once from Python and must
succeed, and the response bytes h2load counted must match what that many
successful replies carry (a failed gRPC call is a trailers-only response with
no body).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import wire

APT_PACKAGE = "nghttp2-client"


class LoadError(RuntimeError):
    """h2load failed, or its results show failed calls."""


def find(*, install: bool, say: Callable[[str], None]) -> str | None:
    """The h2load binary; installed with apt when missing and allowed (root, apt-get present).

    Returns None, after saying what is missing, when it cannot be had.
    """
    path = shutil.which("h2load")
    if path is not None:
        return path
    if not install:
        say(f"h2load not found (Debian/Ubuntu: apt-get install {APT_PACKAGE}); --no-install given")
        return None
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        why = "apt-get not found" if apt is None else "not root"
        say(f"h2load not found and cannot install it ({why}): install {APT_PACKAGE} (nghttp2)")
        return None
    say(f"h2load not found: installing {APT_PACKAGE} with apt-get ...")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", APT_PACKAGE]):
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        except subprocess.TimeoutExpired:
            say(f"{' '.join(cmd)} timed out")
            return None
        if done.returncode != 0:
            say(f"{' '.join(cmd)} failed:\n{done.stderr.strip()[-2000:]}")
            return None
    return shutil.which("h2load")


def version(h2load: str) -> str:
    """``nghttp2/1.52.0`` or similar."""
    out = subprocess.run([h2load, "--version"], capture_output=True, text=True, timeout=10).stdout
    return out.replace("h2load", "").strip()


@dataclass(frozen=True)
class Load:
    """How hard to push: connections, streams per connection, seconds; open loop with ``rps``."""

    clients: int
    streams: int
    duration: float
    grpc_timeout: str | None = None  # a grpc-timeout header value, e.g. "10S"
    headers: tuple[str, ...] = ()  # more "name: value" headers, e.g. an authorization
    rps: float | None = None  # per connection: an open loop at this rate (h2load --rps)

    def __str__(self) -> str:
        rate = f" --rps={self.rps:g}" if self.rps else ""
        return f"-c{self.clients} -m{self.streams} -D{self.duration:g}{rate}"


@dataclass(frozen=True)
class Result:
    """One h2load run, its main phase."""

    rps: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    done: int
    started: int
    data_bytes: int


_FINISHED = re.compile(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s")
_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout"
)
_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
_DATA = re.compile(r"\((\d+)\) data")


def percentile(sorted_values: Sequence[int], q: float) -> int:
    """Nearest-rank percentile, ``q`` in [0, 100], of non-empty sorted values."""
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def run(
    h2load: str,
    url: str,
    body: Path,
    load: Load,
    log_file: Path,
    *,
    frame_bytes: tuple[int, int] | None = None,
) -> Result:
    """Run h2load for ``load.duration`` seconds against ``url`` (POST ``body``).

    ``frame_bytes`` is the (smallest, largest) size of one successful reply's
    body (5-byte prefix included); given it, the byte count h2load saw must
    be consistent with every call having succeeded. Raises LoadError if not.
    """
    cmd = _command(h2load, url, body, load, log_file)
    done = _invoke(cmd, load)
    n_done, started, data_bytes = _counts(cmd, done)
    if frame_bytes is not None:
        smallest, largest = frame_bytes
        # Failed gRPC calls carry no body, so every failure lowers the count.
        if not n_done * smallest <= data_bytes <= started * largest:
            raise LoadError(
                f"gRPC calls failed: {n_done} replies carried {data_bytes} bytes of body, "
                f"expected {smallest}-{largest} each (HTTP 200 with an error in the trailers)"
            )
    latencies = sorted(int(line.split("\t")[2]) for line in log_file.read_text().splitlines())
    if not latencies:
        raise LoadError(f"h2load wrote no per-request log: {log_file}")
    return Result(
        rps=n_done / load.duration,
        p50_ms=percentile(latencies, 50) / 1000,
        p99_ms=percentile(latencies, 99) / 1000,
        mean_ms=sum(latencies) / len(latencies) / 1000,
        done=n_done,
        started=started,
        data_bytes=data_bytes,
    )


def _invoke(cmd: list[str], load: Load) -> subprocess.CompletedProcess[str]:
    """Runs the h2load command line, its output captured; LoadError if it hangs."""
    try:
        return subprocess.run(
            cmd, capture_output=True, text=True, timeout=load.duration + 60, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise LoadError(f"h2load did not finish: {' '.join(cmd)}") from exc


def _command(h2load: str, url: str, body: Path, load: Load, log_file: Path) -> list[str]:
    headers = list(wire.HEADERS)
    if load.grpc_timeout:
        headers.append(f"grpc-timeout: {load.grpc_timeout}")
    headers += load.headers
    rate = [f"--rps={load.rps:.2f}"] if load.rps else []
    return [
        h2load,
        *rate,
        f"--clients={load.clients}",
        f"--max-concurrent-streams={load.streams}",
        "--threads=1",
        f"--duration={load.duration:g}",
        f"--data={body}",
        f"--log-file={log_file}",
        *(f"--header={h}" for h in headers),
        url,
    ]


@dataclass(frozen=True)
class OpenResult:
    """An open-loop run: what h2load sent and got back, failed calls included."""

    started: int  # requests h2load submitted (some may still wait on the client's side)
    done: int  # answered, by a reply or an error
    refused: int  # streams the server reset (h2load's "failed" or "errored")
    data_bytes: int  # bytes of reply bodies: only successful gRPC calls have one


def run_open(h2load: str, url: str, body: Path, load: Load, log_file: Path) -> OpenResult:
    """Run h2load (open loop, ``load.rps``) and count, without failing on failed calls.

    Under overload failed calls are the point: they are counted, not raised.
    """
    cmd = _command(h2load, url, body, load, log_file)
    done = _invoke(cmd, load)
    requests, data = _REQUESTS.search(done.stdout), _DATA.search(done.stdout)
    if done.returncode != 0 or not (requests and data):
        raise LoadError(f"h2load failed ({done.returncode}): {' '.join(cmd)}\n{done.stdout}")
    _total, started, n_done, _ok, failed, errored, _timeouts = map(int, requests.groups())
    return OpenResult(started, n_done, failed + errored, int(data.group(1)))


def _counts(cmd: list[str], done: subprocess.CompletedProcess[str]) -> tuple[int, int, int]:
    """Requests done, started, and bytes of body, from h2load's summary; LoadError on failures."""
    out = done.stdout
    finished, requests, status, data = (
        _FINISHED.search(out),
        _REQUESTS.search(out),
        _STATUS.search(out),
        _DATA.search(out),
    )
    if done.returncode != 0 or not (finished and requests and status and data):
        raise LoadError(f"h2load failed ({done.returncode}): {' '.join(cmd)}\n{out}{done.stderr}")
    _total, started, n_done, succeeded, failed, errored, timeouts = map(int, requests.groups())
    ok_2xx = int(status.group(1))
    if n_done == 0 or failed or errored or timeouts or ok_2xx != n_done or succeeded != n_done:
        raise LoadError(f"h2load saw failed requests: {requests.group(0)}; {status.group(0)}")
    return n_done, started, int(data.group(1))
