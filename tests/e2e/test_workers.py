"""``--workers N``: N processes behind one port, supervised (microposts_server.workers)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc

from microposts.v1 import user_service_pb2 as upb
from microposts.v1 import user_service_pb2_grpc as ugrpc
from tests.serverproc import ServerProcess

ROOT = Path(__file__).resolve().parents[2]


def call_on_fresh_connections(srv: ServerProcess, count: int) -> set[int]:
    """Makes ``count`` calls, each on a new TCP connection; the pids that served them.

    SO_REUSEPORT spreads connections, not calls: every call gets a connection
    of its own (a local subchannel pool, or gRPC would share one).
    """
    seen = len(srv.logs(msg="call"))
    for _ in range(count):
        options = [("grpc.use_local_subchannel_pool", 1)]
        with grpc.insecure_channel(srv.address, options=options) as channel:
            stub = ugrpc.UserServiceStub(channel)
            stub.ListUsers(upb.ListUsersRequest(), timeout=5)
    deadline = time.monotonic() + 5
    while len(srv.logs(msg="call")) < seen + count and time.monotonic() < deadline:
        time.sleep(0.02)  # the supervisor relays the log lines
    return {int(r["pid"]) for r in srv.logs(msg="call")[seen:]}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_two_workers_serve_one_port_and_a_killed_one_comes_back(store_url: str) -> None:
    with ServerProcess(store_url, "--workers", "2") as srv:
        (announced,) = srv.logs(msg="serving")  # exactly one: the supervisor's
        assert announced["workers"] == 2
        pids = set(announced["pids"])
        assert len(pids) == 2 and srv.proc is not None and srv.proc.pid not in pids
        assert {r["pid"] for r in srv.logs(msg="worker serving")} == pids
        assert call_on_fresh_connections(srv, 24) == pids

        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not srv.logs(msg="worker restarted"):
            assert time.monotonic() < deadline, "the killed worker was not restarted"
            time.sleep(0.05)
        (exited,) = srv.logs(msg="worker exited")
        assert (exited["pid"], exited["exit_status"]) == (victim, -signal.SIGKILL)
        reborn = int(srv.logs(msg="worker restarted")[0]["pid"])
        assert reborn not in pids
        now = (pids - {victim}) | {reborn}
        assert call_on_fresh_connections(srv, 24) == now

        assert srv.stop() == 0  # SIGTERM drains every worker, then exit 0
    assert not any(alive(pid) for pid in now)
    assert srv.logs(msg="stopped", logger="microposts.workers")
    assert len(srv.logs(msg="stopped", logger="microposts.server")) == 2


def test_workers_failing_at_start_stop_the_server(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'missing' / 'x.db'}"
    result = subprocess.run(
        [sys.executable, "-m", "microposts_server", "--workers", "2", "--address", "127.0.0.1:0"],
        env={**os.environ, "MICROPOSTS_STORE": store},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 1
    assert "worker failed to start" in result.stderr
