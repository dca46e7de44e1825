"""Bad input never crashes the server: every failure is a clean, named status."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2

from microposts.v1 import micropost_service_pb2 as mpb
from microposts.v1 import micropost_service_pb2_grpc as mgrpc
from microposts.v1 import resources_pb2 as rpb
from microposts.v1 import user_service_pb2 as upb
from microposts.v1 import user_service_pb2_grpc as ugrpc
from microposts_client import method_table
from tests.appserver import serve_app
from tests.rpcutil import failure_of

# Every RPC of the contract, so one added to the .proto is fuzzed as it is added.
METHODS = [m.path for m in method_table().values()]
# Statuses a garbage request may legitimately get (it may even decode into an
# empty-ish request, e.g. ListUsers with defaults, which is simply OK).
CLEAN = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
}


def raw_call(channel: grpc.Channel, method: str, body: bytes) -> grpc.StatusCode:
    call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    try:
        call(body, timeout=10)
    except grpc.RpcError as err:
        assert isinstance(err, grpc.Call)
        return err.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize("method", METHODS)
def test_random_bytes_get_clean_statuses(channel: grpc.Channel, method: str) -> None:
    rng = random.Random(method)  # reproducible per method
    seen = set()
    for size in [1, 2, 3, 5, 8, 13, 40, 100, 1000, 5000] * 3:
        code = raw_call(channel, method, rng.randbytes(size))
        assert code in CLEAN, (method, size, code)
        seen.add(code)
    assert grpc.StatusCode.INVALID_ARGUMENT in seen


def test_undecodable_request_is_invalid_argument(channel: grpc.Channel) -> None:
    # A length-delimited field that runs past the end of the message.
    body = b"\x0a\xff\x01abc"
    call = channel.unary_unary(
        "/microposts.v1.UserService/GetUser", request_serializer=None, response_deserializer=None
    )
    f = failure_of(call, body, timeout=10)
    assert f.code == grpc.StatusCode.INVALID_ARGUMENT
    assert f.fields == ["request"]
    assert "microposts.v1.GetUserRequest" in f.message


def test_invalid_utf8_names_the_field(channel: grpc.Channel) -> None:
    # CreateMicropostRequest{parent="users/abc", micropost{text=b"\xff\xfe"}}
    good = mpb.CreateMicropostRequest(
        parent="users/abc", micropost=rpb.Micropost(text="@@")
    ).SerializeToString()
    bad = good.replace(b"@@", b"\xff\xfe")
    call = channel.unary_unary(
        "/microposts.v1.MicropostService/CreateMicropost",
        request_serializer=None,
        response_deserializer=None,
    )
    f = failure_of(call, bad, timeout=10)
    assert (f.code, f.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["micropost.text"])
    batch = mpb.BatchGetMicropostsRequest(names=["users/a/microposts/1", "XX"]).SerializeToString()
    call = channel.unary_unary(
        "/microposts.v1.MicropostService/BatchGetMicroposts",
        request_serializer=None,
        response_deserializer=None,
    )
    f = failure_of(call, batch.replace(b"XX", b"\xc3\x28"), timeout=10)
    assert (f.code, f.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["names[1]"])


def test_oversized_text_is_rejected_and_nothing_is_written(
    users: ugrpc.UserServiceStub, posts: mgrpc.MicropostServiceStub
) -> None:
    users.CreateUser(upb.CreateUserRequest(user=rpb.User(username="big_text_user")), timeout=10)
    f = failure_of(
        posts.CreateMicropost,
        mpb.CreateMicropostRequest(
            parent="users/big_text_user", micropost=rpb.Micropost(text="x" * 10_000)
        ),
        timeout=10,
    )
    assert (f.code, f.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["micropost.text"])
    # A request over --max-receive-size (64 KiB) is refused before it is read.
    f = failure_of(
        posts.CreateMicropost,
        mpb.CreateMicropostRequest(
            parent="users/big_text_user", micropost=rpb.Micropost(text="x" * 100_000)
        ),
        timeout=10,
    )
    assert f.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in f.message
    listed = posts.ListMicroposts(
        mpb.ListMicropostsRequest(parent="users/big_text_user"), timeout=10
    )
    assert list(listed.microposts) == []


def test_unexpected_failure_is_internal_without_internals(tmp_path: Path) -> None:
    """Break the database under the running server (a real fault, not a mock)."""
    path = tmp_path / "broken.db"
    with serve_app(f"sqlite:///{path}") as server:
        us = server.users
        us.CreateUser(upb.CreateUserRequest(user=rpb.User(username="victim")), timeout=10)
        db = sqlite3.connect(path)
        db.execute("ALTER TABLE users RENAME TO users_gone")
        db.commit()
        db.close()
        f = failure_of(us.GetUser, upb.GetUserRequest(name="users/victim"), timeout=10)
    assert f.code == grpc.StatusCode.INTERNAL
    request_id = f.detail(error_details_pb2.RequestInfo).request_id
    assert request_id and request_id in f.message
    for leak in ["users", "sqlite", "SELECT", "Traceback", "no such table"]:
        assert leak not in f.message
    logged = server.logs(msg="unexpected error", request_id=request_id)
    assert logged and "no such table" in logged[0]["error"]
    assert server.logs(msg="call", request_id=request_id)[0]["code"] == "INTERNAL"
