"""Operating the server: health, graceful shutdown, durability, logs, settings."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from microposts.v1 import micropost_service_pb2 as mpb
from microposts.v1 import micropost_service_pb2_grpc as mgrpc
from microposts.v1 import resources_pb2 as rpb
from microposts.v1 import user_service_pb2 as upb
from microposts.v1 import user_service_pb2_grpc as ugrpc
from tests.serverproc import ServerProcess

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def test_health_overall_and_per_service(server_process: ServerProcess) -> None:
    with grpc.insecure_channel(server_process.address) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        for service in ["", "microposts.v1.UserService", "microposts.v1.MicropostService"]:
            resp = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert resp.status == SERVING, service
        with pytest.raises(grpc.RpcError) as err:
            health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_graceful_shutdown_reports_not_serving_and_exits_0(tmp_path: Path, sig: int) -> None:
    srv = ServerProcess(f"sqlite:///{tmp_path / 'g.db'}", "--grace", "2").start()
    try:
        with grpc.insecure_channel(srv.address) as ch:
            health = health_pb2_grpc.HealthStub(ch)
            watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=15)
            statuses = []
            first = next(watch)
            statuses.append(first.status)
            srv.signal(sig)
            for resp in watch:
                statuses.append(resp.status)
                if resp.status == NOT_SERVING:
                    break
        assert statuses[0] == SERVING
        assert statuses[-1] == NOT_SERVING
        assert srv.wait(20) == 0
        assert srv.logs(msg="stopped")
    finally:
        srv.stop()


def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'durable.db'}"
    names = []
    srv = ServerProcess(url).start()
    with grpc.insecure_channel(srv.address) as ch:
        us, ms = ugrpc.UserServiceStub(ch), mgrpc.MicropostServiceStub(ch)
        us.CreateUser(upb.CreateUserRequest(user=rpb.User(username="durable")), timeout=10)
        for i in range(50):
            p = ms.CreateMicropost(
                mpb.CreateMicropostRequest(
                    parent="users/durable", micropost=rpb.Micropost(text=f"n{i}")
                ),
                timeout=10,
            )
            names.append(p.name)
    srv.kill()  # SIGKILL right after the last acknowledged write
    assert srv.proc is not None and srv.proc.returncode == -signal.SIGKILL
    with ServerProcess(url) as again, grpc.insecure_channel(again.address) as ch:
        ms = mgrpc.MicropostServiceStub(ch)
        got = ms.BatchGetMicroposts(mpb.BatchGetMicropostsRequest(names=names), timeout=10)
        assert [p.text for p in got.microposts] == [f"n{i}" for i in range(50)]


def test_one_log_line_per_call(server_process: ServerProcess) -> None:
    with grpc.insecure_channel(server_process.address) as ch:
        us = ugrpc.UserServiceStub(ch)
        us.CreateUser(
            upb.CreateUserRequest(user=rpb.User(username="logged")),
            timeout=5,
            metadata=[("x-request-id", "trace-123")],
        )
        with pytest.raises(grpc.RpcError):
            us.GetUser(upb.GetUserRequest(name="users/nobody"))
    server_process.wait_logs(2, msg="call")
    ok = server_process.logs(msg="call", request_id="trace-123")
    assert len(ok) == 1
    line = ok[0]
    assert line["method"] == "/microposts.v1.UserService/CreateUser"
    assert line["code"] == "OK"
    assert line["peer"].startswith("ipv4:127.0.0.1:")
    assert 0 < line["duration_ms"] < 5000
    # What the caller sent, as the server read it: gRPC rounds the grpc-timeout
    # header up (to a few significant digits), so 5 s may arrive as 5.01 s.
    assert 0 < line["deadline_ms"] <= 5000 * 1.01
    assert line["store_calls"] == 1
    missing = [r for r in server_process.logs(msg="call") if r["code"] == "NOT_FOUND"]
    assert len(missing) == 1
    assert missing[0]["deadline_ms"] is None  # the caller sent none: the server's cap applied
    assert missing[0]["request_id"]  # generated when the caller sent none


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "microposts_server", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=full_env,
    )


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["--grace", "soon"], {}, "--grace"),
        (["--grace", "-1"], {}, "--grace"),
        (["--address", "nowhere"], {}, "--address"),
        (["--store", "mysql://x"], {}, "--store"),
        (["--log-level", "loud"], {}, "--log-level"),
        (["--max-deadline", "0"], {}, "--max-deadline"),
        ([], {"MICROPOSTS_STORE": "redis://x"}, "MICROPOSTS_STORE"),
        ([], {"MICROPOSTS_WORKERS": "0"}, "MICROPOSTS_WORKERS"),
        (["--max-concurrent-streams", "0"], {}, "--max-concurrent-streams"),
        (["--max-concurrency", "many"], {}, "--max-concurrency"),
        (["--max-queue-wait", "0"], {}, "--max-queue-wait"),
        (["--max-receive-size", "100"], {}, "--max-receive-size"),  # below 1K
        (["--max-receive-size", "4096M"], {}, "--max-receive-size"),
        (["--idle-timeout", "-5"], {}, "--idle-timeout"),
        ([], {"MICROPOSTS_MAX_CONNECTION_AGE": "soon"}, "MICROPOSTS_MAX_CONNECTION_AGE"),
        (["--no-such-flag"], {}, "--no-such-flag"),
    ],
)
def test_bad_setting_exits_with_one_line_naming_it(
    args: list[str], env: dict[str, str], named: str
) -> None:
    result = run_cli(*args, env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert named in lines[0]


def test_address_in_use_fails_naming_it(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        # SO_REUSEPORT lets a second *grpc* server share a port on purpose, but
        # not a port held by a plain socket without it.
        result = run_cli("--address", f"127.0.0.1:{port}", "--store", f"sqlite:///{tmp_path}/a.db")
    assert result.returncode == 1
    assert f"--address: cannot listen on 127.0.0.1:{port}" in result.stderr


def test_store_folder_missing_fails_naming_it(tmp_path: Path) -> None:
    result = run_cli("--address", "127.0.0.1:0", "--store", f"sqlite:///{tmp_path}/no/such/x.db")
    assert result.returncode == 1
    assert "does not exist" in result.stderr


def test_env_settings_apply(tmp_path: Path) -> None:
    quiet = ServerProcess(f"sqlite:///{tmp_path / 'e.db'}", env={"MICROPOSTS_LOG_LEVEL": "warning"})
    with quiet, grpc.insecure_channel(quiet.address) as ch:  # "serving" shows at any level
        with pytest.raises(grpc.RpcError):
            ugrpc.UserServiceStub(ch).GetUser(upb.GetUserRequest(name="users/nobody"))
        quiet.stop()
    assert quiet.logs(msg="stopped")
    assert quiet.logs(msg="call") == []  # warning level: no per-call lines
    srv2 = ServerProcess(f"sqlite:///{tmp_path / 'e2.db'}", env={"MICROPOSTS_MAX_DEADLINE": "7"})
    with srv2, grpc.insecure_channel(srv2.address) as ch:
        with pytest.raises(grpc.RpcError):
            ugrpc.UserServiceStub(ch).GetUser(upb.GetUserRequest(name="users/nobody"))
        line = srv2.wait_logs(msg="call")[0]
    assert line["deadline_ms"] is None
    assert 6000 < line["left_ms"] <= 7000  # the 7 s cap, not the 30 s default


def test_many_concurrent_calls(server_process: ServerProcess) -> None:
    """Concurrent writers and readers on one server: every call answers cleanly."""
    errors: list[BaseException] = []
    with grpc.insecure_channel(server_process.address) as ch:
        us, ms = ugrpc.UserServiceStub(ch), mgrpc.MicropostServiceStub(ch)
        us.CreateUser(upb.CreateUserRequest(user=rpb.User(username="busy")), timeout=10)

        def work(n: int) -> None:
            try:
                for i in range(20):
                    ms.CreateMicropost(
                        mpb.CreateMicropostRequest(
                            parent="users/busy", micropost=rpb.Micropost(text=f"{n}-{i}")
                        ),
                        timeout=10,
                    )
                    ms.ListMicroposts(mpb.ListMicropostsRequest(parent="users/busy"), timeout=10)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        total = 0
        token = ""
        while True:
            resp = ms.ListMicroposts(
                mpb.ListMicropostsRequest(parent="users/busy", page_size=37, page_token=token),
                timeout=10,
            )
            total += len(resp.microposts)
            token = resp.next_page_token
            if not token:
                break
        assert total == 160


def test_prometheus_metrics(tmp_path: Path) -> None:
    srv = ServerProcess(f"sqlite:///{tmp_path / 'm.db'}", "--metrics-address", "127.0.0.1:0")
    with srv, grpc.insecure_channel(srv.address) as ch:
        us = ugrpc.UserServiceStub(ch)
        us.CreateUser(upb.CreateUserRequest(user=rpb.User(username="counted")), timeout=5)
        with pytest.raises(grpc.RpcError):
            us.GetUser(upb.GetUserRequest(name="users/nobody"), timeout=5)
        metrics_address = srv.logs(msg="serving")[0]["metrics"]
        import urllib.request

        with urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    assert 'microposts_calls_total{method="CreateUser",code="OK"} 1' in text
    assert 'microposts_calls_total{method="GetUser",code="NOT_FOUND"} 1' in text
    assert "# TYPE microposts_admission_rejected_total counter" in text
