"""Faults, each through real server processes: restarts, slow and idle clients, failing disks.

Nothing here times the server: each test makes the fault happen, then checks
what callers got, what the server's health said, what it logged, and what
/proc says about its memory and descriptors. Waits are bounded polls.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

import microposts_client as mc
from microposts.v1 import user_service_pb2 as upb
from microposts.v1 import user_service_pb2_grpc as ugrpc
from tests import pg
from tests.rawh2 import RawConnection
from tests.rpcutil import failure_of
from tests.serverproc import ServerProcess

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
PRLIMIT = shutil.which("prlimit")


def until(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """Polls ``check`` until it returns something true; fails naming ``what`` if it never does."""
    end = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.02)
    return result


def health_of(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    return int(reply.status)


def proc_status(pid: int, field: str) -> int:
    """A number from /proc/PID/status (VmRSS is in kB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.fixture
def pg_url() -> Iterator[str]:
    with pg.session_database().schema() as url:
        yield url


# -- restarts --------------------------------------------------------------


def test_drain_health_first_new_calls_unavailable_running_calls_finish(pg_url: str) -> None:
    srv = ServerProcess(pg_url, "--grace", "10", "--metrics-address", "127.0.0.1:0").start()
    try:
        client = mc.Client(srv.address, retry=None, throttle=None)
        client.create_user(username="drainer")
        with ThreadPoolExecutor(1) as pool:
            with pg.table_lock(pg_url):
                running = pool.submit(client.create_micropost, parent="users/drainer", text="mine")
                until(lambda: in_flight(srv) >= 1, "the create to be running")
                srv.signal(signal.SIGTERM)
                until(lambda: health_of(srv.address) == NOT_SERVING, "health NOT_SERVING")
                # New calls are answered UNAVAILABLE, DRAINING: retried elsewhere.
                with pytest.raises(mc.Unavailable) as drained:
                    client.get_user(name="users/drainer")
                assert drained.value.reason == "DRAINING"
                with grpc.insecure_channel(srv.address) as plain:
                    get = upb.GetUserRequest(name="users/drainer")
                    failure = failure_of(ugrpc.UserServiceStub(plain).GetUser, get, timeout=5)
                assert failure.code == grpc.StatusCode.UNAVAILABLE
                assert failure.detail(error_details_pb2.ErrorInfo).reason == "DRAINING"
                assert srv.proc is not None and srv.proc.poll() is None  # still draining
            assert running.result(10).text == "mine"  # the running call finished
        client.close()
        assert srv.wait(20) == 0
    finally:
        srv.stop()
    messages = [r["msg"] for r in srv.log_lines if r.get("logger") == "microposts.server"]
    between = messages[messages.index("shutting down") : messages.index("stopped")]
    assert "store reachable again" not in between
    stopped = srv.logs(msg="stopped")[0]
    assert stopped["answered_unavailable"] >= 1
    assert stopped["cut_off"] == 0


def in_flight(srv: ServerProcess) -> int:
    """Calls running in the server, from its metrics endpoint."""
    metrics = srv.logs(msg="serving")[0]["metrics"]
    with urllib.request.urlopen(f"http://{metrics}/metrics", timeout=5) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith("microposts_in_flight "):
                return int(line.split()[1])
    raise AssertionError("no microposts_in_flight in the metrics")


def _took_calls(srv: ServerProcess) -> bool:
    return len(srv.logs(msg="call")) >= 20


def test_rolling_restart_of_two_replicas_loses_no_calls(pg_url: str) -> None:
    args = ("--grace", "5")
    a = ServerProcess(pg_url, *args).start()
    b = ServerProcess(pg_url, *args).start()
    replicas = [a, b]
    stop = threading.Event()
    failures: list[BaseException] = []
    written: list[str] = []
    client = mc.Client([a.address, b.address], timeout=3.0)
    client.create_user(username="roller")

    def load(worker: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                post = client.create_micropost(parent="users/roller", text=f"{worker}-{n}")
                written.append(post.name)
                client.get_micropost(name=post.name)
            except mc.ServiceError as exc:
                failures.append(exc)

    workers = [threading.Thread(target=load, args=(i,)) for i in range(4)]
    for w in workers:
        w.start()
    try:
        for i, old in enumerate(list(replicas)):
            until(partial(_took_calls, old), "the replica to take calls")
            assert old.stop() == 0
            new = ServerProcess(pg_url, *args, address=old.address).start()
            replicas[i] = new
            # The next replica restarts once this one takes traffic again, as a
            # rolling update waits for readiness.
            until(partial(_took_calls, new), "the new replica to take calls")
    finally:
        stop.set()
        for w in workers:
            w.join(30)
        for srv in replicas:
            srv.stop()
    assert failures == []
    assert len(written) > 100
    check = ServerProcess(pg_url).start()
    try:
        with mc.Client(check.address) as reader:
            for start in range(0, len(written), 100):
                chunk = written[start : start + 100]
                got = reader.batch_get_microposts(names=chunk)
                assert [p.name for p in got.microposts] == chunk  # every acknowledged write
    finally:
        check.stop()
        client.close()


# -- slow and idle clients ------------------------------------------------------


def _raise_own_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"this machine's descriptor hard limit ({hard}) is below {need}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def test_idle_connections_and_stalled_bodies_are_bounded(tmp_path: Path) -> None:
    _raise_own_fd_limit(4096)
    srv = ServerProcess(f"sqlite:///{tmp_path / 'idle.db'}", "--idle-timeout", "2").start()
    try:
        assert srv.proc is not None
        pid = srv.proc.pid
        fd_limit = srv.logs(msg="serving")[0]["fd_limit"]
        assert fd_limit == resource.getrlimit(resource.RLIMIT_NOFILE)[1] or fd_limit > 1024
        with mc.Client(srv.address) as client:
            client.create_user(username="steady")
            for _ in range(50):
                client.get_user(name="users/steady")
            idle_rss, idle_fds = proc_status(pid, "VmRSS"), open_fds(pid)
            idle = [RawConnection(srv.address) for _ in range(2000)]
            stalled = []
            for _ in range(25):  # 25 connections x 4 streams (the bound per connection)
                conn = RawConnection(srv.address)
                for _ in range(4):
                    path = "/microposts.v1.MicropostService/CreateMicropost"
                    conn.stall_request(path, claimed=60_000, sent=16_000)
                stalled.append(conn)
            until(lambda: open_fds(pid) >= idle_fds + 2000, "the server to accept 2,000 sockets")
            for _ in range(20):  # normal callers are answered within their deadline
                assert client.get_user(name="users/steady", timeout=2).username == "steady"
            attacked_rss = proc_status(pid, "VmRSS")
            # The idle connections are closed by the server (--idle-timeout 2).
            until(lambda: open_fds(pid) < idle_fds + 100, "idle connections to be closed", 30)
            for conn in idle + stalled:
                conn.close()
        assert attacked_rss <= 2 * idle_rss, (idle_rss, attacked_rss)
    finally:
        srv.stop()


@pytest.mark.skipif(PRLIMIT is None, reason="needs util-linux prlimit")
def test_descriptors_running_short_are_logged(tmp_path: Path) -> None:
    assert PRLIMIT is not None
    srv = ServerProcess(
        f"sqlite:///{tmp_path / 'fds.db'}",
        "--health-interval",
        "0.2",
        wrapper=[PRLIMIT, "--nofile=128:128"],
    ).start()
    conns = []
    try:
        assert srv.logs(msg="serving")[0]["fd_limit"] == 128
        for _ in range(110):
            conns.append(RawConnection(srv.address))
        line = srv.wait_logs(msg="file descriptors running short", timeout=20)
        assert line and line[0]["level"] == "error" and line[0]["limit"] == 128
    finally:
        for conn in conns:
            conn.close()
        srv.stop()


# -- a failing disk -----------------------------------------------------------------


def _write_until_it_fails(client: mc.Client) -> mc.ServiceError:
    for i in range(10_000):
        try:
            client.create_micropost(parent="users/writer", text=f"{i:04d} " + "x" * 290)
        except mc.ServiceError as exc:
            return exc
    raise AssertionError("10,000 writes of 300 characters fitted in 256 KiB")


@pytest.mark.skipif(PRLIMIT is None, reason="needs util-linux prlimit")
def test_a_store_that_fails_writes_shows_in_health_and_the_log(tmp_path: Path) -> None:
    assert PRLIMIT is not None
    db = tmp_path / "disk.db"
    # Files the server writes may not grow past 256 KiB: its writes fail as on a
    # broken disk (EFBIG, which SQLite reports as an I/O error); reads still work.
    srv = ServerProcess(
        f"sqlite:///{db}",
        "--health-interval",
        "0.2",
        wrapper=[PRLIMIT, f"--fsize={256 * 1024}:unlimited"],  # soft: raised again below
    ).start()
    try:
        assert srv.proc is not None
        client = mc.Client(srv.address, throttle=None)
        client.create_user(username="writer")
        first = client.create_micropost(parent="users/writer", text="before")
        error = _write_until_it_fails(client)
        assert isinstance(error, mc.Internal | mc.ResourceExhausted)  # never retried
        assert error.reason in ("STORE_FAILED", "STORE_FULL")
        assert client.overload_stats().retries == 0
        until(lambda: health_of(srv.address) == NOT_SERVING, "health NOT_SERVING")
        logged = srv.wait_logs(msg="store writes failing")
        assert len(logged) == 1 and logged[0]["level"] == "error"
        assert client.get_micropost(name=first.name).text == "before"  # reads still work
        # The operator fixes the disk: writes work again, and health says so.
        subprocess.run([PRLIMIT, "--pid", str(srv.proc.pid), "--fsize=unlimited"], check=True)
        until(lambda: health_of(srv.address) == SERVING, "health SERVING again")
        assert srv.logs(msg="store writes work again")
        assert client.create_micropost(parent="users/writer", text="after").text == "after"
        client.close()
    finally:
        srv.stop()
