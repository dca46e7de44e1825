"""Start servers on port 0, read back the port they got, always stop them.

A server announces itself in a JSON line on stderr whose ``msg`` is
``"serving"`` and whose ``address`` is ``host:port`` (the MicroPosts server
and ``bench.echo`` both do). Its stderr goes to a file, not a pipe: a server
that logs a line per call would otherwise make us parse thousands of lines a
second on the same cores we are measuring.

Each server runs in its own session (process group), so stopping it also stops
any worker processes it forked; on Linux it is also told to die with us
(``setpriv --pdeathsig``) if the bench itself is killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parent.parent


def serving_address(line: str) -> tuple[str, int] | None:
    """The ``host:port`` and the port a server's ``"msg": "serving"`` log line announces.

    None for any other line. ``tests/serverproc.py`` reads its servers' port
    with this too: one reader of the announcement, wherever a server is started.
    """
    if '"serving"' not in line:  # most lines: skip the JSON parse
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("msg") != "serving":
        return None
    address = str(record["address"])
    return address, int(address.rsplit(":", 1)[1])


class ServerError(RuntimeError):
    """A server did not start; the message carries the end of its log."""


def _die_with_parent() -> list[str]:
    """A command prefix that makes the child get SIGTERM when we die, if the system has one.

    util-linux ``setpriv --pdeathsig`` rather than ``preexec_fn``: the bench
    holds gRPC threads, and forking a threaded process to run Python code in
    the child is unsafe.
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None or not sys.platform.startswith("linux"):
        return []
    return [setpriv, "--pdeathsig", "TERM", "--"]


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of the live processes in group ``pgid`` (Linux /proc; else 0)."""
    total = 0
    proc = Path("/proc")
    if not proc.is_dir():
        return 0.0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name (field 2) may hold spaces: split after its closing paren.
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[2]) == pgid:  # field 5, pgrp
            total += int(fields[11]) + int(fields[12])  # fields 14, 15: utime, stime
    return total / _TICK


def thread_cpu_seconds(pid: int) -> dict[int, tuple[str, float]]:
    """Thread id -> (thread name, user + system CPU seconds) for process ``pid`` (Linux /proc)."""
    out: dict[int, tuple[str, float]] = {}
    tasks = Path(f"/proc/{pid}/task")
    if not tasks.is_dir():
        return out
    for entry in tasks.iterdir():
        try:
            stat = (entry / "stat").read_text()
            name = (entry / "comm").read_text().strip()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        out[int(entry.name)] = (name, (int(fields[11]) + int(fields[12])) / _TICK)
    return out


class ServerProc:
    """One server process: ``with ServerProc("echo", argv, log) as s: s.port``."""

    def __init__(
        self,
        label: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: dict[str, str] | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self.label = label
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.startup_timeout = startup_timeout
        self.address = ""
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The process id (the server's main process)."""
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> ServerProc:
        """Start it and wait for its ``serving`` line; ServerError if it never comes."""
        env = dict(os.environ)
        env.update(self.env or {})
        env["PYTHONUNBUFFERED"] = "1"
        # Append mode, so that trim_log() can empty the file under a running server.
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [*_die_with_parent(), *self.argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=ROOT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.startup_timeout
        while not self._find_serving():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                why = "exited" if self.proc.poll() is not None else "did not announce its port"
                self.stop()
                raise ServerError(f"{self.label} {why}: {' '.join(self.argv)}\n{self.tail()}")
            time.sleep(0.05)
        return self

    def _find_serving(self) -> bool:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return False
        for line in text.splitlines():
            if (found := serving_address(line)) is not None:
                self.address, self.port = found
                return True
        return False

    def tail(self, lines: int = 30) -> str:
        """The last lines of its log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def trim_log(self, limit: int = 32 << 20) -> None:
        """Empty its log once it passes ``limit`` bytes (a line per call adds up fast)."""
        with contextlib.suppress(OSError):
            if self.log_path.stat().st_size > limit:
                os.truncate(self.log_path, 0)

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by every process in its group (its workers too)."""
        return group_cpu_seconds(self.pid)

    def alive(self) -> bool:
        """Whether the main process is still running."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM to its process group, SIGKILL after ``grace`` seconds."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(grace)
        # Workers may outlive their parent: kill whatever is left of the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)

    def __enter__(self) -> ServerProc:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
