"""Every status code maps to its class, with the google.rpc details readable."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.rpc import error_details_pb2

import microposts_client as mc
from tests.appserver import AppServer
from tests.grpcservers import Scripted, rich_status

EXPECTED: dict[grpc.StatusCode, type[mc.ServiceError]] = {
    grpc.StatusCode.CANCELLED: mc.Cancelled,
    grpc.StatusCode.UNKNOWN: mc.Unknown,
    grpc.StatusCode.INVALID_ARGUMENT: mc.InvalidArgument,
    grpc.StatusCode.DEADLINE_EXCEEDED: mc.DeadlineExceeded,
    grpc.StatusCode.NOT_FOUND: mc.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: mc.AlreadyExists,
    grpc.StatusCode.PERMISSION_DENIED: mc.PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: mc.ResourceExhausted,
    grpc.StatusCode.FAILED_PRECONDITION: mc.FailedPrecondition,
    grpc.StatusCode.ABORTED: mc.Aborted,
    grpc.StatusCode.OUT_OF_RANGE: mc.OutOfRange,
    grpc.StatusCode.UNIMPLEMENTED: mc.Unimplemented,
    grpc.StatusCode.INTERNAL: mc.Internal,
    grpc.StatusCode.UNAVAILABLE: mc.Unavailable,
    grpc.StatusCode.DATA_LOSS: mc.DataLoss,
    grpc.StatusCode.UNAUTHENTICATED: mc.Unauthenticated,
}


def test_every_code_maps_to_its_class_with_details(scripted: Scripted) -> None:
    info = error_details_pb2.ErrorInfo(reason="SCRIPTED", domain="microposts.test")
    with mc.Client(scripted.address, retry=None) as client:
        for code, cls in EXPECTED.items():
            scripted.script["GetUser"] = [(code, rich_status(code, f"scripted {code.name}", info))]
            with pytest.raises(cls) as caught:
                client.get_user(name="users/alice")
            error = caught.value
            assert type(error) is cls
            assert error.code is code
            assert error.message == f"scripted {code.name}"
            assert error.reason == "SCRIPTED"
            assert isinstance(error.__cause__, grpc.RpcError)
            assert error.__cause__.code() is code


def test_async_errors_map_the_same(scripted: Scripted) -> None:
    violation = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field="micropost.text", description="empty")
        ]
    )
    code = grpc.StatusCode.INVALID_ARGUMENT
    scripted.script["CreateMicropost"] = [(code, rich_status(code, "bad", violation))]

    async def main() -> mc.InvalidArgument:
        async with mc.AsyncClient(scripted.address) as client:
            with pytest.raises(mc.InvalidArgument) as caught:
                await client.create_micropost(parent="users/alice", text="")
            return caught.value

    error = asyncio.run(main())
    assert [(v.field, v.description) for v in error.field_violations] == [
        ("micropost.text", "empty")
    ]
    assert isinstance(error.__cause__, grpc.aio.AioRpcError)


def test_errors_without_details_still_map(scripted: Scripted) -> None:
    scripted.script["GetUser"] = [(grpc.StatusCode.NOT_FOUND, ())]
    with mc.Client(scripted.address) as client, pytest.raises(mc.NotFound) as caught:
        client.get_user(name="users/alice")
    assert caught.value.details == ()
    assert caught.value.resource_name is None
    assert str(caught.value) == "NOT_FOUND: scripted NOT_FOUND"


def test_real_server_errors(microposts_server: AppServer) -> None:
    with mc.Client(microposts_server.address) as client:
        with pytest.raises(mc.InvalidArgument) as bad:
            client.create_user(username="No!")
        assert [v.field for v in bad.value.field_violations] == ["user.username"]
        assert bad.value.field_violations[0].description

        with pytest.raises(mc.NotFound) as missing:
            client.get_user(name="users/nobody_here")
        assert missing.value.resource_name == "users/nobody_here"

        client.create_user(username="errors_alice")
        with pytest.raises(mc.AlreadyExists):
            client.create_user(username="errors_alice")

        post = client.create_micropost(parent="users/errors_alice", text="v1")
        client.update_micropost(name=post.name, text="v2", etag=post.etag)
        with pytest.raises(mc.Aborted):  # stale etag
            client.update_micropost(name=post.name, text="v3", etag=post.etag)
        with pytest.raises(mc.Aborted):
            client.delete_micropost(name=post.name, etag=post.etag)

        with pytest.raises(mc.NotFound) as batch:
            client.batch_get_microposts(names=[post.name, post.name + "x"])
        assert batch.value.resource_name == post.name + "x"

        with pytest.raises(mc.ServiceError):  # the base class catches every kind
            list(client.list_microposts(parent="users/nobody_here"))
