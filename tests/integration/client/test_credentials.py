"""The client's credentials against the real app: TLS, mTLS, tokens, forwarding, messages.

The app runs in this process with ``--auth jwt`` (and TLS where the test is
about TLS); certificates come from trustme and tokens from PyJWT
(``tests/credentials.py``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from microposts_client import (
    REFRESH_BEFORE,
    AsyncClient,
    Client,
    DeadlineInterceptor,
    NotFound,
    PermissionDenied,
    ServiceError,
    SyncDeadlineInterceptor,
    Unauthenticated,
    Unavailable,
    method_table,
    tls_credentials,
)
from tests.appserver import AppServer, serve_app
from tests.credentials import Pki, Secured
from tests.grpcservers import AioRelay, LoopThread


@pytest.fixture(scope="module")
def tls_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AppServer, Secured]]:
    folder = tmp_path_factory.mktemp("tls-app")
    secured = Secured.create(folder)
    with serve_app(f"sqlite:///{folder / 'db.sqlite'}", secured) as srv:
        yield srv, secured


@pytest.fixture(scope="module")
def plain_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AppServer, Secured]]:
    """--auth jwt without TLS, on loopback: tokens travel over gRPC's local credentials."""
    folder = tmp_path_factory.mktemp("plain-app")
    secured = Secured.create(folder, tls=False)
    with serve_app(f"sqlite:///{folder / 'db.sqlite'}", secured) as srv:
        yield srv, secured


def pki_of(secured: Secured) -> Pki:
    assert secured.pki is not None
    return secured.pki


def test_tls_from_a_pem_file_or_bytes(tls_app: tuple[AppServer, Secured]) -> None:
    srv, secured = tls_app
    pki, token = pki_of(secured), secured.issuer.token("tls_reader")
    for ca in (pki.ca_pem, str(pki.ca_pem), pki.ca_pem.read_bytes()):
        with (
            Client(srv.address, credentials=tls_credentials(ca=ca), token=token) as client,
            pytest.raises(NotFound),
        ):
            client.get_user(name="users/nobody")
    assert srv.logs(msg="call", caller="tls_reader")


def test_tls_trusting_another_ca_fails(tls_app: tuple[AppServer, Secured], tmp_path: Path) -> None:
    srv, _ = tls_app
    other = Pki(tmp_path, "other")
    credentials = tls_credentials(ca=other.ca_pem)
    with (
        Client(srv.address, credentials=credentials, token="x", retry=None) as client,
        pytest.raises(Unavailable),
    ):
        client.get_user(name="users/nobody", timeout=5)


def test_mtls_from_files_and_bytes(tmp_path: Path) -> None:
    secured = Secured.create(tmp_path, mtls=True)
    pki, token = pki_of(secured), secured.issuer.token("mtls_reader")
    with serve_app(f"sqlite:///{tmp_path / 'db.sqlite'}", secured) as srv:
        pairs: list[tuple[Path | bytes, Path | bytes]] = [
            (pki.client_cert, pki.client_key),
            (pki.client_cert.read_bytes(), pki.client_key.read_bytes()),
        ]
        for cert, key in pairs:
            credentials = tls_credentials(ca=pki.ca_pem, cert=cert, key=key)
            with (
                Client(srv.address, credentials=credentials, token=token) as client,
                pytest.raises(NotFound),
            ):
                client.get_user(name="users/nobody")
        without = tls_credentials(ca=pki.ca_pem)
        with (
            Client(srv.address, credentials=without, token=token, retry=None) as client,
            pytest.raises(Unavailable),
        ):
            client.get_user(name="users/nobody", timeout=5)
    with pytest.raises(ValueError, match="both cert and key"):
        tls_credentials(ca=pki.ca_pem, cert=pki.client_cert)
    with pytest.raises(ValueError, match="cannot read"):
        tls_credentials(ca=tmp_path / "missing.pem")


def test_a_token_travels_to_loopback_without_tls(plain_app: tuple[AppServer, Secured]) -> None:
    srv, secured = plain_app
    token = secured.issuer.token("loopback_alice")
    with Client(srv.address, token=token) as client:
        assert client.create_user(username="loopback_alice").name == "users/loopback_alice"
    port = srv.address.rpartition(":")[2]
    with Client(f"localhost:{port}", token=token) as client:
        assert client.get_user(name="users/loopback_alice").username == "loopback_alice"


def test_a_token_never_goes_elsewhere_in_plaintext(tmp_path: Path) -> None:
    for target in (
        "10.1.2.3:50051",
        "dns:///microposts.example:443",
        ["10.0.0.1:1", "127.0.0.1:2"],
    ):
        with pytest.raises(ValueError, match="only sent over TLS or to a loopback address"):
            Client(target, token="t")
    with pytest.raises(ValueError, match="in plaintext"):
        Client("10.1.2.3:50051", metadata=[("Authorization", "Bearer t")])
    pki = Pki(tmp_path)
    Client("10.1.2.3:50051", token="t", credentials=tls_credentials(ca=pki.ca_pem)).close()


def test_a_token_callable_is_asked_again_before_expiry(
    plain_app: tuple[AppServer, Secured],
) -> None:
    srv, secured = plain_app
    minted: list[str] = []

    def fresh() -> str:
        # Due for refresh one second after it is made.
        token = secured.issuer.token("refresher", lifetime=REFRESH_BEFORE + 1)
        minted.append(token)
        return token

    with Client(srv.address, token=fresh) as client:
        for _ in range(3):
            with pytest.raises(NotFound):
                client.get_user(name="users/nobody")
        assert len(minted) == 1  # cached while it is far from expiry
        time.sleep(1.2)
        with pytest.raises(NotFound):
            client.get_user(name="users/nobody")
        assert len(minted) == 2


def test_a_failing_token_callable_fails_the_call_with_its_reason(
    plain_app: tuple[AppServer, Secured],
) -> None:
    srv, _ = plain_app

    def broken() -> str:
        raise RuntimeError("identity provider down")

    with (
        Client(srv.address, token=broken, retry=None) as client,
        pytest.raises(ServiceError) as err,
    ):
        client.get_user(name="users/nobody", timeout=5)
    assert "identity provider down" in err.value.message


def test_unauthenticated_says_what_to_do(plain_app: tuple[AppServer, Secured]) -> None:
    srv, secured = plain_app
    with (
        Client(srv.address) as client,
        pytest.raises(Unauthenticated) as missing,
    ):
        client.get_user(name="users/nobody")
    assert missing.value.reason == "CREDENTIALS_MISSING"
    assert "token=" in str(missing.value)
    expired = secured.issuer.token("late", exp=int(time.time()) - 3600)
    with (
        Client(srv.address, token=expired) as client,
        pytest.raises(Unauthenticated) as late,
    ):
        client.get_user(name="users/nobody")
    assert late.value.reason == "TOKEN_EXPIRED"
    assert "token expired at" in str(late.value)
    assert expired not in str(late.value)


def test_permission_denied_says_what_and_where(plain_app: tuple[AppServer, Secured]) -> None:
    srv, secured = plain_app
    with (
        Client(srv.address, token=secured.issuer.token("perm_alice")) as client,
        pytest.raises(PermissionDenied) as err,
    ):
        client.create_micropost(parent="users/perm_bob", text="hi")
    assert err.value.permission == "microposts.microposts.create"
    assert err.value.resource_name == "users/perm_bob"
    assert "Permission 'microposts.microposts.create' denied on resource" in str(err.value)
    assert "scope microposts.admin" in str(err.value)


@pytest.mark.parametrize("forward", [True, False])
def test_forwarding_the_callers_token_is_opt_in(
    plain_app: tuple[AppServer, Secured], loop_thread: LoopThread, forward: bool
) -> None:
    srv, secured = plain_app
    # A service in front of MicroPosts, whose client has no token of its own.
    interceptor = DeadlineInterceptor(forward_token=forward)
    gateway = AioRelay(loop_thread, srv.address, interceptor, retry=None)
    caller = f"gw_{'on' if forward else 'off'}"
    try:
        with Client(gateway.address, token=secured.issuer.token(caller), retry=None) as client:
            if forward:
                with pytest.raises(NotFound):  # MicroPosts saw the caller, and answered
                    client.get_user(name="users/nobody")
                assert srv.logs(msg="call", caller=caller)
            else:
                with pytest.raises(Unauthenticated):
                    client.get_user(name="users/nobody")
                assert not srv.logs(msg="call", caller=caller)
    finally:
        gateway.stop()


def test_async_client_sends_its_token_over_tls(tls_app: tuple[AppServer, Secured]) -> None:
    srv, secured = tls_app
    pki = pki_of(secured)
    fresh = secured.issuer.token("tls_async_fn")

    async def main() -> None:
        for token in (secured.issuer.token("tls_async"), lambda: fresh):
            async with AsyncClient(
                srv.address, credentials=tls_credentials(ca=pki.ca_pem.read_bytes()), token=token
            ) as client:
                with pytest.raises(NotFound):
                    await client.get_user(name="users/nobody")

    asyncio.run(main())
    assert srv.logs(msg="call", caller="tls_async")  # a string token
    assert srv.logs(msg="call", caller="tls_async_fn")  # a callable's


class SyncGateway:
    """A thread-pool grpc.server in front of MicroPosts whose Client has no token of its own."""

    def __init__(self, upstream: str, forward: bool) -> None:
        self.client = Client(upstream, retry=None)
        interceptor = SyncDeadlineInterceptor(forward_token=forward)
        self.server = grpc.server(futures.ThreadPoolExecutor(2), interceptors=[interceptor])
        info = method_table()["GetUser"]
        handler = grpc.unary_unary_rpc_method_handler(
            self._get_user,
            request_deserializer=info.request_type.FromString,
            response_serializer=info.response_type.SerializeToString,
        )
        self.server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler(info.service, {"GetUser": handler})]
        )
        self.address = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        self.server.start()

    def _get_user(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.client.get_user(name=request.name)  # errors cross by the interceptor

    def stop(self) -> None:
        self.server.stop(0)
        self.client.close()


@pytest.mark.parametrize("forward", [True, False])
def test_forwarding_the_callers_token_is_opt_in_on_sync_servers_too(
    plain_app: tuple[AppServer, Secured], forward: bool
) -> None:
    srv, secured = plain_app
    gateway = SyncGateway(srv.address, forward)
    caller = f"sgw_{'on' if forward else 'off'}"
    try:
        with Client(gateway.address, token=secured.issuer.token(caller), retry=None) as client:
            expected = NotFound if forward else Unauthenticated
            with pytest.raises(expected):
                client.get_user(name="users/nobody")
        assert bool(srv.logs(msg="call", caller=caller)) is forward
    finally:
        gateway.stop()
