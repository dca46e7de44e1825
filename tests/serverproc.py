"""Run a real MicroPosts server process for tests.

The server binds port 0 and announces the port it got in its first
structured log line (``"msg": "serving"``); we read it back, never guess it,
with the bench's reader of that line (``bench.procs.serving_address``).
Everything the server logs is kept in ``ServerProcess.log_lines`` (one parsed
JSON object per line) so tests can look at what it logged.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from bench.procs import serving_address


class ServerProcess:
    """``with ServerProcess(url) as srv: srv.address``: ``python -m microposts_server``."""

    def __init__(
        self,
        store: str,
        *args: str,
        env: dict[str, str] | None = None,
        startup_timeout: float = 20.0,
        address: str = "127.0.0.1:0",
        module: str = "microposts_server",
        wrapper: Sequence[str] = (),
    ) -> None:
        self.store = store
        self.args: Sequence[str] = args
        self.extra_env = env or {}
        self.startup_timeout = startup_timeout
        self.bind = address
        self.module = module
        self.wrapper = list(wrapper)  # a command prefix, e.g. prlimit with its limits
        self.address = ""
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None
        self.log_lines: list[dict[str, Any]] = []
        self.raw_lines: list[str] = []
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None

    def start(self) -> ServerProcess:
        root = Path(__file__).resolve().parent.parent
        env = dict(os.environ)
        env.update(self.extra_env)
        env["PYTHONUNBUFFERED"] = "1"
        env.setdefault("MICROPOSTS_LOG_LEVEL", "info")
        self.proc = subprocess.Popen(
            [
                *self.wrapper,
                sys.executable,
                "-m",
                self.module,
                "--address",
                self.bind,
                "--store",
                self.store,
                *self.args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=str(root),
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + self.startup_timeout
        while not self._ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("server did not start:\n" + "\n".join(self.raw_lines[-40:]))
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            line = line.rstrip("\n")
            self.raw_lines.append(line)
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if not isinstance(record, dict):
                continue
            self.log_lines.append(record)
            if not self._ready.is_set() and (found := serving_address(line)) is not None:
                self.address, self.port = found
                self._ready.set()

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout)
        if self._reader is not None:
            self._reader.join(timeout=5)
        return code

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL if it does not exit within ``timeout``."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: the crash case."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)

    def wait_logs(
        self, count: int = 1, timeout: float = 10.0, **match: Any
    ) -> list[dict[str, Any]]:
        """Like ``logs``, waiting until at least ``count`` records match.

        The server writes a call's line before replying, but this process
        reads the server's stderr in a thread that may not have got there yet.
        """
        deadline = time.monotonic() + timeout
        while True:
            found = self.logs(**match)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.01)

    def logs(self, **match: Any) -> list[dict[str, Any]]:
        """Log records whose fields equal ``match``."""
        return [r for r in list(self.log_lines) if all(r.get(k) == v for k, v in match.items())]

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
