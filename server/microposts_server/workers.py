"""``--workers N``: N server processes on one port, supervised by this one.

Python gRPC runs each call on one core, so one process cannot use a
machine; N processes can, if they share the port. The supervisor (this
process) never imports or starts gRPC: gRPC's threads and its event engine
do not survive a ``fork()``, so each worker is a fresh interpreter, started
with ``python -m microposts_server --workers 1`` and the same settings.

- **One port.** The supervisor resolves the address first: it binds a socket
  with ``SO_REUSEPORT`` to it (port 0: the kernel picks a free port) without
  listening, and keeps it for its whole life; a port some other server holds
  already is refused ("address in use"), as a single server refuses it. Every
  worker then binds that concrete port with ``SO_REUSEPORT`` (only workers
  do: the supervisor marks them with ``config.WORKER_ENV``), and the kernel
  spreads new connections across them. A bound socket that does not listen receives no
  connections; it only keeps the port ours between worker restarts.
- **One log.** Workers' stderr comes through the supervisor, line by line,
  each JSON line with ``"worker"`` (its index, 0..N-1) and ``"pid"`` added,
  so lines never interleave and say which process wrote them. A worker's
  own ``"serving"`` line is relayed as ``"worker serving"``; the supervisor
  writes the one ``"serving"`` line (``address``, ``workers``, ``pids``) once
  every worker serves, so whatever waits for "serving" waits for all of them.
- **Supervised.** A worker that dies is logged (``"worker exited"``, with its
  exit status) and started again (``"worker restarted"``), after a pause that
  grows while it keeps dying young. A worker that fails before the server
  first served stops the whole start-up with exit status 1: a bad store or
  address is not cured by restarting.
- **Graceful.** SIGTERM or SIGINT: every worker gets SIGTERM and drains its
  calls for ``--grace`` seconds; whatever is left after a few more seconds is
  killed; the supervisor exits 0. If the supervisor itself is killed, the
  workers get SIGTERM from the kernel (Linux ``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO

from .config import WORKER_ENV, Settings

log = logging.getLogger("microposts.workers")

STOP_MARGIN = 5.0  # seconds past --grace before stragglers are killed
RESTART_MIN = 0.2  # seconds before restarting a worker that lived long
RESTART_MAX = 10.0  # the longest pause between restarts of one that keeps dying
YOUNG = 10.0  # a worker that dies younger than this doubles its next pause


def reserve_port(address: str) -> tuple[socket.socket, str]:
    """Binds (without listening) a SO_REUSEPORT socket; returns it and HOST:PORT."""
    host, _, port = address.rpartition(":")
    name = host[1:-1] if host.startswith("[") else host
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(
            name or None, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise OSError(f"--address: cannot listen on {address}: {exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if int(port):
            # SO_REUSEPORT would let us join another server's port and split
            # its connections: bind once without it to see that it is free.
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(sockaddr)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(sockaddr)
    except OSError as exc:
        sock.close()
        reason = "address in use" if exc.errno == errno.EADDRINUSE else str(exc)
        raise OSError(f"--address: cannot listen on {address}: {reason}") from None
    return sock, f"{host}:{sock.getsockname()[1]}"


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """In the child, before exec: SIGTERM when the supervisor dies (Linux only)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Worker:
    """One worker slot: its process now, and what its restarts have been like."""

    index: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    serving: bool = False
    pause: float = RESTART_MIN
    restart_at: float | None = None
    buffer: bytearray = field(default_factory=bytearray)


class Supervisor:
    """Starts, relays, restarts and stops the workers; ``run()`` returns the exit status."""

    def __init__(self, settings: Settings, argv: Sequence[str]) -> None:
        self.settings = settings
        self.argv = list(argv)
        self.workers = [Worker(i) for i in range(settings.workers)]
        self.selector = selectors.DefaultSelector()
        self.address = ""
        self.announced = False
        self.stopping = False

    def command(self) -> list[str]:
        # Later flags win: the workers get the resolved port and run alone.
        return [
            sys.executable,
            "-m",
            "microposts_server",
            *self.argv,
            "--address",
            self.address,
            "--workers",
            "1",
        ]

    def run(self) -> int:
        reserved, self.address = reserve_port(self.settings.address)
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        old_wakeup = signal.set_wakeup_fd(wake_w)
        self.selector.register(wake_r, selectors.EVENT_READ, None)
        try:
            for worker in self.workers:
                self._start(worker)
            status = self._loop(wake_r)
            self._stop_all()
            log.info("stopped")
            return status
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.selector.close()
            os.close(wake_r)
            os.close(wake_w)
            reserved.close()

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _start(self, worker: Worker) -> None:
        proc = subprocess.Popen(
            self.command(),
            env={**os.environ, WORKER_ENV: "1"},
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            # Safe here: the supervisor runs no threads that could hold a lock.
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        assert proc.stderr is not None
        os.set_blocking(proc.stderr.fileno(), False)
        self.selector.register(proc.stderr, selectors.EVENT_READ, worker)
        worker.proc, worker.started, worker.serving = proc, time.monotonic(), False
        worker.restart_at = None
        worker.buffer.clear()

    def _loop(self, wake_r: int) -> int:
        while not self.stopping:
            timeout = 0.5
            now = time.monotonic()
            for worker in self.workers:
                if worker.restart_at is not None:
                    timeout = min(timeout, max(0.0, worker.restart_at - now))
            for key, _ in self.selector.select(timeout):
                if key.data is None:
                    with contextlib.suppress(OSError):
                        os.read(wake_r, 512)
                else:
                    self._relay(key.data)
            status = self._reap()
            if status is not None:
                return status
        return 0

    def _relay(self, worker: Worker) -> None:
        """Copies what a worker wrote to stderr, tagging each JSON line with its origin."""
        proc = worker.proc
        assert proc is not None and proc.stderr is not None
        try:
            chunk = os.read(proc.stderr.fileno(), 65536)
        except BlockingIOError:
            return
        if not chunk:  # EOF: the worker is gone or going; flush what is left
            self.selector.unregister(proc.stderr)
            if worker.buffer:
                worker.buffer += b"\n"
            chunk = b""
        worker.buffer += chunk
        *lines, rest = bytes(worker.buffer).split(b"\n")
        worker.buffer[:] = rest
        if not lines:
            return
        tag = b', "worker": %d, "pid": %d}' % (worker.index, proc.pid)
        out = []
        now_serving = False
        for line in lines:
            if line.startswith(b"{") and line.endswith(b"}"):
                if not worker.serving and b'"msg": "serving"' in line:
                    line = line.replace(b'"msg": "serving"', b'"msg": "worker serving"', 1)
                    worker.serving = now_serving = True
                line = line[:-1] + tag if len(line) > 2 else line
            out.append(line)
        _write_all(2, b"\n".join(out) + b"\n")
        if now_serving and self.announced:
            log.info(
                "worker restarted", extra={"fields": {"worker": worker.index, "pid": proc.pid}}
            )
        if not self.announced and all(w.serving for w in self.workers):
            self.announced = True
            log.info(
                "serving",
                extra={
                    "fields": {
                        "address": self.address,
                        "workers": len(self.workers),
                        "pids": [w.proc.pid for w in self.workers if w.proc is not None],
                    }
                },
            )

    def _reap(self) -> int | None:
        """Notices dead workers and restarts them; an exit status if start-up failed."""
        now = time.monotonic()
        for worker in self.workers:
            proc = worker.proc
            if proc is not None and proc.poll() is not None:
                self._drain(worker)
                lived = now - worker.started
                if not self.announced and not worker.serving:
                    log.error(
                        "worker failed to start; stopping",
                        extra={"fields": {"worker": worker.index, "exit_status": proc.returncode}},
                    )
                    return 1
                worker.pause = min(RESTART_MAX, worker.pause * 2) if lived < YOUNG else RESTART_MIN
                log.warning(
                    "worker exited",
                    extra={
                        "fields": {
                            "worker": worker.index,
                            "pid": proc.pid,
                            "exit_status": proc.returncode,
                            "lived_s": round(lived, 1),
                            "restart_in_s": worker.pause,
                        }
                    },
                )
                worker.proc = None
                worker.restart_at = now + worker.pause
            elif proc is None and worker.restart_at is not None and now >= worker.restart_at:
                self._start(worker)
        return None

    def _drain(self, worker: Worker) -> None:
        """Relays a finished worker's last lines and closes its pipe."""
        proc = worker.proc
        assert proc is not None and proc.stderr is not None
        if proc.stderr.closed:  # drained already (a worker that failed at start-up)
            return
        if self._registered(proc.stderr):
            os.set_blocking(proc.stderr.fileno(), True)  # it has exited: read to EOF
            while self._registered(proc.stderr):
                self._relay(worker)
        proc.stderr.close()

    def _registered(self, stream: IO[bytes]) -> bool:
        try:
            self.selector.get_key(stream)
        except KeyError:
            return False
        return True

    def _stop_all(self) -> None:
        """SIGTERM to every worker, relay while they drain, kill what outlives the grace."""
        live = [w for w in self.workers if w.proc is not None and w.proc.poll() is None]
        log.info(
            "stopping workers",
            extra={"fields": {"workers": len(live), "grace_s": self.settings.grace}},
        )
        for worker in live:
            assert worker.proc is not None
            with contextlib.suppress(ProcessLookupError):
                worker.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.grace + STOP_MARGIN
        while any(w.proc is not None and w.proc.poll() is None for w in live):
            left = deadline - time.monotonic()
            if left <= 0:
                for worker in live:
                    assert worker.proc is not None
                    if worker.proc.poll() is None:
                        log.warning("worker killed", extra={"fields": {"pid": worker.proc.pid}})
                        worker.proc.kill()
                        worker.proc.wait()
                break
            for key, _ in self.selector.select(min(left, 0.2)):
                if key.data is not None:
                    self._relay(key.data)
        for worker in self.workers:
            if worker.proc is not None:
                worker.proc.wait()
                self._drain(worker)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            time.sleep(0.001)


def supervise(settings: Settings, argv: Sequence[str]) -> int:
    """Runs ``settings.workers`` server processes until SIGTERM/SIGINT; the exit status."""
    return Supervisor(settings, argv).run()
