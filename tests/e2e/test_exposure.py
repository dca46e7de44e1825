"""What a server shows the network: protected mode, one server per address, reflection, outages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2

from microposts.v1 import user_service_pb2 as upb
from microposts.v1 import user_service_pb2_grpc as ugrpc
from tests import pg
from tests.credentials import Issuer, Pki
from tests.e2e.test_postgres_outage import TcpProxy
from tests.rpcutil import failure_of
from tests.serverproc import ServerProcess

GRPCURL = str(Path(sys.executable).parent / "grpcurl")


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Runs a server that is expected to refuse to start; its exit status and output."""
    return subprocess.run(
        [sys.executable, "-m", "microposts_server", "--store", "sqlite://:memory:", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )


# -- protected mode -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "missing"),
    [
        ([], "without TLS (--tls-cert and --tls-key) and without authentication"),
        (["tls"], "without authentication (--auth jwt, or client certificates"),
        (["jwt"], "without TLS (--tls-cert and --tls-key);"),
    ],
    ids=["nothing", "tls-only", "jwt-only"],
)
def test_a_public_address_without_tls_or_auth_refuses_to_start(
    tmp_path: Path, extra: list[str], missing: str
) -> None:
    args = ["--address", "0.0.0.0:0"]
    if "tls" in extra:
        args += Pki(tmp_path).server_args()
    if "jwt" in extra:
        args += Issuer(tmp_path).server_args()
    result = start(*args)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("microposts-server: error: --address: 0.0.0.0:0 is not a loopback")
    assert missing in lines[0]
    assert "--insecure" in lines[0]


def test_insecure_serves_a_public_address_anyway(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    with ServerProcess(db, "--insecure", address="0.0.0.0:0") as srv:
        assert srv.address.startswith("0.0.0.0:")
        with grpc.insecure_channel(f"127.0.0.1:{srv.port}") as channel:
            stub = ugrpc.UserServiceStub(channel)
            assert failure_of(
                stub.GetUser, upb.GetUserRequest(name="users/xyz"), timeout=5
            ).code == (grpc.StatusCode.NOT_FOUND)
    with ServerProcess(db, address="0.0.0.0:0", env={"MICROPOSTS_INSECURE": "1"}) as srv:
        assert srv.port


def test_tls_and_jwt_together_serve_a_public_address(tmp_path: Path) -> None:
    args = [*Pki(tmp_path).server_args(), *Issuer(tmp_path).server_args()]
    with ServerProcess(f"sqlite:///{tmp_path / 'db.sqlite'}", *args, address="0.0.0.0:0") as srv:
        assert srv.port


def test_loopback_needs_nothing(tmp_path: Path) -> None:
    with ServerProcess(f"sqlite:///{tmp_path / 'db.sqlite'}", address="localhost:0") as srv:
        assert srv.port


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--auth", "jwt"], "--jwt-keys: required with --auth jwt"),
        (["--tls-cert", "{cert}"], "--tls-cert: needs --tls-key too"),
        (["--jwt-issuer", "x"], "--jwt-issuer: only used with --auth jwt"),
        (["--tls-cert", "{cert}", "--tls-key", "{ca}"], "--tls-key: {ca}: not a PEM private key"),
        (["--tls-cert", "/nonexistent.pem"], "--tls-cert: expected a PEM file"),
        (["--reflection", "maybe"], "--reflection: expected on or off, got 'maybe'"),
    ],
)
def test_bad_security_settings_stop_the_start_in_one_line(
    tmp_path: Path, args: list[str], says: str
) -> None:
    pki = Pki(tmp_path)
    paths = {"cert": str(pki.cert), "ca": str(pki.ca_pem)}
    result = start(*[a.format(**paths) for a in args])
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert says.format(**paths) in result.stderr


# -- one server per address ---------------------------------------------------------


def test_a_second_server_on_a_served_address_fails_naming_address(tmp_path: Path) -> None:
    with ServerProcess(f"sqlite:///{tmp_path / 'one.db'}") as first:
        second = start("--address", first.address)
        assert second.returncode == 1
        assert f"--address: cannot listen on {first.address}: address in use" in second.stderr
        supervised = start("--address", first.address, "--workers", "2")
        assert supervised.returncode == 1
        assert "address in use" in supervised.stderr


def test_a_single_server_cannot_join_the_workers_port(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'workers.db'}"
    with ServerProcess(db, "--workers", "2") as workers:
        alone = start("--address", workers.address)
        assert alone.returncode == 1
        assert "address in use" in alone.stderr
        another = start("--address", workers.address, "--workers", "2")
        assert another.returncode == 1
        assert "address in use" in another.stderr


# -- reflection ---------------------------------------------------------------------


def test_reflection_can_be_turned_off(tmp_path: Path) -> None:
    with ServerProcess(f"sqlite:///{tmp_path / 'db.sqlite'}", "--reflection", "off") as srv:
        listed = subprocess.run(
            [GRPCURL, "-plaintext", srv.address, "list"], capture_output=True, text=True
        )
        assert listed.returncode != 0
        assert "does not support the reflection API" in listed.stderr
        # Callers with the proto files still call it.
        root = Path(__file__).resolve().parents[2]
        called = subprocess.run(
            [
                GRPCURL, "-plaintext", "-import-path", str(root / "protos"),
                "-proto", "microposts/v1/user_service.proto",
                "-d", '{"name": "users/nobody"}',
                srv.address, "microposts.v1.UserService/GetUser",
            ],
            capture_output=True,
            text=True,
        )  # fmt: skip
        assert "Code: NotFound" in called.stderr, called.stderr


# -- outages ------------------------------------------------------------------------


def test_unavailable_tells_callers_a_plain_reason_and_keeps_the_driver_text_in_the_log() -> None:
    host, port = "127.0.0.1", int(pg.ADMIN_URL.rsplit(":", 1)[1].split("/")[0])
    with (
        TcpProxy(host, port) as proxy,
        pg.session_database().schema(port=proxy.port) as url,
        ServerProcess(url) as srv,
        grpc.insecure_channel(srv.address) as channel,
    ):
        stub = ugrpc.UserServiceStub(channel)
        request = upb.GetUserRequest(name="users/nobody")
        assert failure_of(stub.GetUser, request, timeout=5).code == grpc.StatusCode.NOT_FOUND
        proxy.cut()
        failure = failure_of(stub.GetUser, request, timeout=5, wait_for_ready=False)
        assert failure.code == grpc.StatusCode.UNAVAILABLE
        request_id = failure.detail(error_details_pb2.RequestInfo).request_id
        assert failure.message == (
            f"the store is unavailable; retry later (request id {request_id})"
        )
        assert failure.detail(error_details_pb2.ErrorInfo).reason == "STORE_UNAVAILABLE"
        (logged,) = srv.wait_logs(msg="store unavailable", request_id=request_id)
        assert logged["level"] == "warning"
        assert logged["error"] != failure.message  # the driver's own words, for operators
        proxy.restore()
