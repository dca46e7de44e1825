"""TLS and mTLS through a real server process, with trustme certificates and the real grpcurl."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import trustme
from grpc_health.v1 import health_pb2, health_pb2_grpc

from microposts.v1 import resources_pb2 as rpb
from microposts.v1 import user_service_pb2 as upb
from microposts.v1 import user_service_pb2_grpc as ugrpc
from tests.credentials import Pki, write_atomic
from tests.serverproc import ServerProcess

GRPCURL = str(Path(sys.executable).parent / "grpcurl")
# A fresh connection per channel: gRPC would otherwise share one between
# channels with equal arguments, and these tests are about handshakes.
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


def open_channel(address: str, credentials: grpc.ChannelCredentials | None) -> grpc.Channel:
    if credentials is None:
        return grpc.insecure_channel(address, OWN_CONNECTION)
    return grpc.secure_channel(address, credentials, OWN_CONNECTION)


def create_user(address: str, credentials: grpc.ChannelCredentials | None, name: str) -> Any:
    """CreateUser over a new connection; the response, or the grpc.RpcError it failed with."""
    with open_channel(address, credentials) as channel:
        stub = ugrpc.UserServiceStub(channel)
        request = upb.CreateUserRequest(user=rpb.User(username=name), request_id=name)
        try:
            return stub.CreateUser(request, timeout=5)
        except grpc.RpcError as exc:
            return exc


def refused(result: Any) -> bool:
    """The call never reached the server: the handshake failed (UNAVAILABLE)."""
    return isinstance(result, grpc.RpcError) and result.code() == grpc.StatusCode.UNAVAILABLE


def grpcurl(srv: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        # A refused handshake would otherwise wait out grpcurl's 10 s default.
        [GRPCURL, "-connect-timeout", "3", *args, srv.address, "grpc.health.v1.Health/Check"],
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_server(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db = tmp_path_factory.mktemp("tls-db") / "microposts.db"
    with ServerProcess(f"sqlite:///{db}", *pki.server_args()) as srv:
        yield srv


@pytest.fixture(scope="module")
def mtls_server(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db = tmp_path_factory.mktemp("mtls-db") / "microposts.db"
    with ServerProcess(f"sqlite:///{db}", *pki.server_args(mtls=True)) as srv:
        yield srv


def test_tls_serves_and_a_plaintext_client_is_refused(pki: Pki, tls_server: ServerProcess) -> None:
    assert create_user(tls_server.address, pki.credentials(), "tls_alice").name == (
        "users/tls_alice"
    )
    assert refused(create_user(tls_server.address, None, "tls_plain"))
    assert grpcurl(tls_server, "-plaintext").returncode != 0
    result = grpcurl(tls_server, "-cacert", str(pki.ca_pem))
    assert result.returncode == 0, result.stderr
    assert '"status": "SERVING"' in result.stdout
    # The refused plaintext call never got as far as a call log line.
    assert not tls_server.logs(msg="call", code="UNAVAILABLE")


def test_a_client_trusting_another_ca_is_refused(tls_server: ServerProcess, tmp_path: Path) -> None:
    other = Pki(tmp_path, "other")
    assert refused(create_user(tls_server.address, other.credentials(), "tls_other"))
    result = grpcurl(tls_server, "-cacert", str(other.ca_pem))
    assert result.returncode != 0
    assert "certificate" in result.stderr


def test_mtls_requires_a_client_certificate(pki: Pki, mtls_server: ServerProcess) -> None:
    assert refused(create_user(mtls_server.address, pki.credentials(), "mtls_anon"))
    assert grpcurl(mtls_server, "-cacert", str(pki.ca_pem)).returncode != 0

    user = create_user(mtls_server.address, pki.credentials(client_cert=True), "mtls_bob")
    assert user.name == "users/mtls_bob"
    (line,) = mtls_server.wait_logs(msg="call", method="/microposts.v1.UserService/CreateUser")
    assert line["caller"].startswith("CN=client-svc")

    cert_args = ["-cert", str(pki.client_cert), "-key", str(pki.client_key)]
    result = grpcurl(mtls_server, "-cacert", str(pki.ca_pem), *cert_args)
    assert result.returncode == 0, result.stderr


def test_a_client_certificate_from_another_ca_is_refused(
    pki: Pki, mtls_server: ServerProcess, tmp_path: Path
) -> None:
    stranger = Pki(tmp_path, "stranger")
    credentials = grpc.ssl_channel_credentials(
        pki.ca_pem.read_bytes(),
        stranger.client_key.read_bytes(),
        stranger.client_cert.read_bytes(),
    )
    assert refused(create_user(mtls_server.address, credentials, "mtls_stranger"))


def wait_for(condition: Any, within: float = 10.0) -> Any:
    deadline = time.monotonic() + within
    while not (result := condition()):
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.05)
    return result


def test_a_rotated_certificate_is_served_to_new_connections_without_restart(
    tmp_path: Path,
) -> None:
    pki = Pki(tmp_path)
    with ServerProcess(f"sqlite:///{tmp_path / 'db.sqlite'}", *pki.server_args()) as srv:
        old = pki.credentials()
        kept = open_channel(srv.address, old)
        health = health_pb2_grpc.HealthStub(kept)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == 1

        new_ca = trustme.CA()
        pki.issue_server(new_ca)
        new = grpc.ssl_channel_credentials(new_ca.cert_pem.bytes())

        user = create_user(srv.address, new, "rotated_new")
        assert user.name == "users/rotated_new"
        assert refused(create_user(srv.address, old, "rotated_old"))
        assert srv.wait_logs(msg="tls certificates reloaded")
        # A connection made before the rotation keeps what it negotiated.
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == 1
        kept.close()
        assert srv.proc is not None and srv.proc.poll() is None


def test_a_corrupt_new_certificate_keeps_the_old_one(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    with ServerProcess(f"sqlite:///{tmp_path / 'db.sqlite'}", *pki.server_args()) as srv:
        assert create_user(srv.address, pki.credentials(), "corrupt_1").name == "users/corrupt_1"
        write_atomic(pki.cert, b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n")

        assert create_user(srv.address, pki.credentials(), "corrupt_2").name == "users/corrupt_2"
        (warning,) = srv.wait_logs(msg="tls certificates not reloaded; keeping the ones in use")
        assert warning["level"] == "warning"
        assert warning["error"].startswith(f"--tls-cert: {pki.cert}: ")
        # Logged once per version of the files, not once per connection.
        assert create_user(srv.address, pki.credentials(), "corrupt_3").name == "users/corrupt_3"
        assert len(srv.logs(msg="tls certificates not reloaded; keeping the ones in use")) == 1

        # A key that does not match the certificate is refused the same way.
        other = trustme.CA().issue_cert("localhost", "127.0.0.1")
        pki.issue_server(pki.ca)
        write_atomic(pki.key, other.private_key_pem.bytes())
        assert create_user(srv.address, pki.credentials(), "corrupt_4").name == "users/corrupt_4"
        warnings = wait_for(
            lambda: srv.logs(msg="tls certificates not reloaded; keeping the ones in use")[1:]
        )
        assert "does not belong to the certificate" in warnings[0]["error"]
