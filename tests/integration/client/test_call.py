"""``call(method, request)``: any RPC of the contract by name, as the typed methods make it.

Against the real MicroPosts server (every RPC, errors), and against real
in-process gRPC servers where the test needs to see the deadline a call
carried or to make calls fail on demand (tests/grpcservers.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import field_mask_pb2

from microposts.v1 import micropost_service_pb2 as mpb
from microposts.v1 import resources_pb2 as rpb
from microposts.v1 import user_service_pb2 as upb
from microposts_client import (
    DEFAULT_RETRY,
    AsyncClient,
    Client,
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    ServiceError,
    Timeouts,
    Unavailable,
    Unimplemented,
    method_table,
)
from tests.appserver import AppServer
from tests.grpcservers import LoopThread, Scripted, start_aio_server

FAST = replace(DEFAULT_RETRY, initial_backoff=0.001, max_backoff=0.005)
UNAVAILABLE = (grpc.StatusCode.UNAVAILABLE, ())


def test_a_user_and_a_post_from_create_to_delete_through_call(
    microposts_server: AppServer,
) -> None:
    # Each result checked as the typed methods would see it. Whether every RPC
    # reaches the server through call() is the next test's, which names none.
    with Client(microposts_server.address) as client:

        def call(method: str, request: Any) -> Any:
            response = client.call(method, request)
            assert type(response) is method_table()[method].response_type
            return response

        user = rpb.User(username="call_dana", display_name="Dana")
        dana = call("CreateUser", upb.CreateUserRequest(user=user, request_id="call-dana"))
        assert dana.name == "users/call_dana"
        assert call("GetUser", upb.GetUserRequest(name=dana.name)) == dana
        assert client.get_user(name=dana.name) == dana  # the typed method agrees
        page = call("ListUsers", upb.ListUsersRequest(page_size=1000))
        assert dana.name in [u.name for u in page.users]

        post = call(
            "CreateMicropost",
            mpb.CreateMicropostRequest(
                parent=dana.name, micropost=rpb.Micropost(text="by name"), request_id="call-p1"
            ),
        )
        assert post.text == "by name"
        assert call("GetMicropost", mpb.GetMicropostRequest(name=post.name)) == post
        batch = call("BatchGetMicroposts", mpb.BatchGetMicropostsRequest(names=[post.name]))
        assert list(batch.microposts) == [post]
        listed = call("ListMicroposts", mpb.ListMicropostsRequest(parent=dana.name))
        assert list(listed.microposts) == [post]
        updated = call(
            "UpdateMicropost",
            mpb.UpdateMicropostRequest(
                micropost=rpb.Micropost(name=post.name, text="edited", etag=post.etag),
                update_mask=field_mask_pb2.FieldMask(paths=["text"]),
            ),
        )
        assert updated.text == "edited"
        call("DeleteMicropost", mpb.DeleteMicropostRequest(name=post.name, etag=updated.etag))
        assert list(client.list_microposts(parent=dana.name)) == []


def test_any_rpc_in_the_table_reaches_the_server(microposts_server: AppServer) -> None:
    # Knows no method by name: an RPC added to the contract is covered as it is added.
    with Client(microposts_server.address, retry=None) as client:
        for name, method in method_table().items():
            try:  # an empty request: lists answer, the rest are refused by validation
                response = client.call(name, method.request_type())
            except ServiceError as exc:
                assert isinstance(exc.__cause__, grpc.RpcError), name  # the server answered
                assert not isinstance(exc, Unimplemented), name
            else:
                assert type(response) is method.response_type, name


def test_call_raises_the_typed_errors(microposts_server: AppServer) -> None:
    with Client(microposts_server.address) as client:
        with pytest.raises(NotFound) as missing:
            client.call("GetUser", upb.GetUserRequest(name="users/nobody_by_call"))
        assert missing.value.resource_name == "users/nobody_by_call"
        assert isinstance(missing.value.__cause__, grpc.RpcError)

        bad = upb.CreateUserRequest(user=rpb.User(username="Not A Name"), request_id="call-bad")
        with pytest.raises(InvalidArgument) as invalid:
            client.call("CreateUser", bad)
        assert [v.field for v in invalid.value.field_violations] == ["user.username"]


def test_unknown_method_or_wrong_request_fails_before_sending(
    microposts_server: AppServer,
) -> None:
    with Client(microposts_server.address) as client:
        with pytest.raises(ValueError, match="unknown method 'GetUsers'") as unknown:
            client.call("GetUsers", upb.GetUserRequest(name="users/a"))
        for name in method_table():
            assert name in str(unknown.value)
        with pytest.raises(TypeError, match=r"GetUser takes a microposts\.v1\.GetUserRequest"):
            client.call("GetUser", mpb.GetMicropostRequest(name="users/a/microposts/1"))


def test_async_call(microposts_server: AppServer) -> None:
    async def main() -> None:
        async with AsyncClient(microposts_server.address) as client:
            request = upb.CreateUserRequest(user=rpb.User(username="call_erin"), request_id="e")
            erin = await client.call("CreateUser", request)
            assert isinstance(erin, rpb.User)
            assert await client.call("GetUser", upb.GetUserRequest(name=erin.name)) == erin
            with pytest.raises(NotFound):
                await client.call("GetUser", upb.GetUserRequest(name="users/nobody_by_call"))
            with pytest.raises(ValueError, match="unknown method"):
                await client.call("Nope", request)

    asyncio.run(main())


class Recorder:
    """A real gRPC server whose GetUser and CreateUser record the deadline each call carried."""

    def __init__(self, loop: LoopThread) -> None:
        self.remaining: dict[str, list[float | None]] = {"GetUser": [], "CreateUser": []}

        def record(method: str) -> Any:
            async def behavior(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                self.remaining[method].append(context.time_remaining())
                return rpb.User(name="users/recorded")

            return behavior

        self.loop = loop
        self.server, self.address = loop.run(
            start_aio_server({name: record(name) for name in self.remaining})
        )

    def stop(self) -> None:
        self.loop.run(self.server.stop(0))


@pytest.fixture
def recorder(loop_thread: LoopThread) -> Iterator[Recorder]:
    r = Recorder(loop_thread)
    yield r
    r.stop()


def test_call_takes_the_read_or_write_default(recorder: Recorder) -> None:
    get = upb.GetUserRequest(name="users/a")
    create = upb.CreateUserRequest(user=rpb.User(username="a"), request_id="r")
    with Client(recorder.address, timeout=Timeouts(read=0.7, write=9.0)) as client:
        client.call("GetUser", get)
        client.call("CreateUser", create)
        client.call("GetUser", get, timeout=3.0)
        client.call("GetUser", get, timeout=None)
    read, own, unbounded = recorder.remaining["GetUser"]
    (write,) = recorder.remaining["CreateUser"]
    assert read is not None
    assert 0.2 < read <= 0.7 * 1.01 + 0.01
    assert write is not None
    assert 8.0 < write <= 9.0 * 1.01 + 0.01
    assert own is not None
    assert 2.0 < own <= 3.0 * 1.01 + 0.01
    assert unbounded is None


def test_call_retries_only_what_is_safe_to_repeat(scripted: Scripted) -> None:
    with Client(scripted.address, retry=FAST) as client:
        scripted.script["GetUser"] = [UNAVAILABLE, UNAVAILABLE]
        got = client.call("GetUser", upb.GetUserRequest(name="users/a"))
        assert isinstance(got, rpb.User)
        assert got.name == "users/a"
        assert scripted.attempts("GetUser") == 3

        # A create is safe only with a request_id, which call leaves to the caller.
        user = rpb.User(username="a")
        scripted.script["CreateUser"] = ["lose"]
        with pytest.raises(Unavailable):
            client.call("CreateUser", upb.CreateUserRequest(user=user))
        assert scripted.attempts("CreateUser") == 1
        assert scripted.requests["CreateUser"][0].request_id == ""
        scripted.script["CreateUser"] = ["lose"]
        client.call("CreateUser", upb.CreateUserRequest(user=user, request_id="k"))
        assert scripted.attempts("CreateUser") == 3

        # An update without an etag could overwrite a newer edit: never repeated.
        blind = mpb.UpdateMicropostRequest(micropost=rpb.Micropost(name="users/a/microposts/1"))
        scripted.script["UpdateMicropost"] = [UNAVAILABLE]
        with pytest.raises(Unavailable):
            client.call("UpdateMicropost", blind)
        assert scripted.attempts("UpdateMicropost") == 1
        blind.micropost.etag = '"e1"'
        scripted.script["UpdateMicropost"] = [UNAVAILABLE]
        client.call("UpdateMicropost", blind)
        assert scripted.attempts("UpdateMicropost") == 3


def test_call_never_starts_on_a_spent_budget(scripted: Scripted) -> None:
    with Client(scripted.address) as client:
        with pytest.raises(DeadlineExceeded, match="before GetUser was sent") as spent:
            client.call("GetUser", upb.GetUserRequest(name="users/a"), timeout=0)
        assert spent.value.__cause__ is None
    assert scripted.attempts("GetUser") == 0
