"""Retries: only safe calls, only retryable failures, bounded, never past the deadline."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import replace

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2

from microposts_client import (
    DEFAULT_RETRY,
    Aborted,
    AsyncClient,
    Client,
    ResourceExhausted,
    Unavailable,
)
from tests.appserver import AppServer
from tests.grpcservers import Downstream, LoopThread, Scripted, TcpProxy, rich_status

UNAVAILABLE = (grpc.StatusCode.UNAVAILABLE, ())
# Patient enough to outlast gRPC's ~1 s reconnect backoff, still bounded.
PATIENT = replace(DEFAULT_RETRY, max_attempts=40, initial_backoff=0.05, max_backoff=0.3)
FAST = replace(DEFAULT_RETRY, initial_backoff=0.001, max_backoff=0.005)


def test_read_succeeds_once_the_server_comes_up(loop_thread: LoopThread) -> None:
    backend = Downstream(loop_thread, stall=False)
    proxy = TcpProxy(loop_thread, backend.address, refusing=True)  # "down": drops connections
    threading.Timer(0.5, lambda: setattr(proxy, "refusing", False)).start()
    try:
        with Client(proxy.address, retry=PATIENT) as client:
            user = client.get_user(name="users/alice", timeout=15.0)
    finally:
        proxy.stop()
        backend.stop()
    assert user.name == "users/alice"
    assert proxy.refused >= 1
    assert proxy.forwarded >= 1


def test_async_read_succeeds_once_the_server_comes_up(loop_thread: LoopThread) -> None:
    backend = Downstream(loop_thread, stall=False)
    proxy = TcpProxy(loop_thread, backend.address, refusing=True)
    threading.Timer(0.5, lambda: setattr(proxy, "refusing", False)).start()

    async def main() -> str:
        async with AsyncClient(proxy.address, retry=PATIENT) as client:
            return (await client.get_user(name="users/alice", timeout=15.0)).name

    try:
        assert asyncio.run(main()) == "users/alice"
    finally:
        proxy.stop()
        backend.stop()
    assert proxy.refused >= 1


def test_down_server_fails_with_unavailable_after_bounded_attempts(
    loop_thread: LoopThread,
) -> None:
    backend = Downstream(loop_thread, stall=False)
    proxy = TcpProxy(loop_thread, backend.address, refusing=True)
    try:
        with Client(proxy.address, retry=FAST) as client, pytest.raises(Unavailable):
            client.get_user(name="users/alice", timeout=10.0)
    finally:
        proxy.stop()
        backend.stop()
    assert backend.calls == 0


def test_lost_create_reply_is_retried_with_the_same_request_id(scripted: Scripted) -> None:
    scripted.script["CreateMicropost"] = ["lose", "lose"]
    with Client(scripted.address, retry=FAST) as client:
        post = client.create_micropost(parent="users/alice", text="once")
    first, second, third = scripted.requests["CreateMicropost"]
    assert first.request_id
    assert first.request_id == second.request_id == third.request_id
    assert len(scripted.posts) == 1
    assert post.name == "users/alice/microposts/1"


def test_caller_request_id_is_kept(scripted: Scripted) -> None:
    with Client(scripted.address) as client:
        client.create_user(username="alice", request_id="my-key")
    (request,) = scripted.requests["CreateUser"]
    assert request.request_id == "my-key"


def test_updates_and_deletes_retry_only_with_an_etag(scripted: Scripted) -> None:
    name = "users/alice/microposts/1"
    with Client(scripted.address, retry=FAST) as client:
        scripted.script["UpdateMicropost"] = [UNAVAILABLE] * 10
        with pytest.raises(Unavailable):
            client.update_micropost(name=name, text="blind")
        assert scripted.attempts("UpdateMicropost") == 1
        scripted.script["UpdateMicropost"] = [UNAVAILABLE, UNAVAILABLE]
        client.update_micropost(name=name, text="guarded", etag='"e1"')
        assert scripted.attempts("UpdateMicropost") == 4

        scripted.script["DeleteMicropost"] = [UNAVAILABLE] * 10
        with pytest.raises(Unavailable):
            client.delete_micropost(name=name)
        assert scripted.attempts("DeleteMicropost") == 1
        with pytest.raises(Unavailable):  # bounded: max_attempts in all
            client.delete_micropost(name=name, etag='"e1"')
        assert scripted.attempts("DeleteMicropost") == 1 + FAST.max_attempts


def test_only_retryable_codes_are_retried(scripted: Scripted) -> None:
    with Client(scripted.address, retry=FAST) as client:
        scripted.script["GetUser"] = [(grpc.StatusCode.ABORTED, ())]
        with pytest.raises(Aborted):
            client.get_user(name="users/alice")
        assert scripted.attempts("GetUser") == 1

        # RESOURCE_EXHAUSTED without being asked to retry: not retried.
        scripted.script["GetUser"] = [(grpc.StatusCode.RESOURCE_EXHAUSTED, ())]
        with pytest.raises(ResourceExhausted) as info:
            client.get_user(name="users/alice")
        assert info.value.retry_delay is None
        assert scripted.attempts("GetUser") == 2

        # Asked to retry (RetryInfo, or the grpc-retry-pushback-ms trailer): retried.
        retry_info = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(nanos=10**7))
        scripted.script["GetUser"] = [
            (
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                rich_status(grpc.StatusCode.RESOURCE_EXHAUSTED, "scripted", retry_info),
            ),
            (grpc.StatusCode.RESOURCE_EXHAUSTED, (("grpc-retry-pushback-ms", "5"),)),
        ]
        assert client.get_user(name="users/alice").name == "users/alice"
        assert scripted.attempts("GetUser") == 5

    with Client(scripted.address, retry=None) as client:
        scripted.script["GetUser"] = [UNAVAILABLE]
        with pytest.raises(Unavailable):
            client.get_user(name="users/alice")
        assert scripted.attempts("GetUser") == 6


def test_retry_never_sleeps_past_the_deadline(scripted: Scripted) -> None:
    slow = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=30))
    scripted.script["GetUser"] = [
        (
            grpc.StatusCode.UNAVAILABLE,
            rich_status(grpc.StatusCode.UNAVAILABLE, "scripted", slow),
        )
    ]
    with Client(scripted.address) as client:
        start = time.monotonic()
        with pytest.raises(Unavailable) as info:
            client.get_user(name="users/alice", timeout=1.0)
    assert time.monotonic() - start < 5.0  # gave up at once instead of sleeping 30 s
    assert info.value.retry_delay == 30.0
    assert scripted.attempts("GetUser") == 1


def test_async_lost_create_reply(scripted: Scripted) -> None:
    scripted.script["CreateUser"] = ["lose"]

    async def main() -> str:
        async with AsyncClient(scripted.address, retry=FAST) as client:
            return (await client.create_user(username="alice")).name

    assert asyncio.run(main()) == "users/alice"
    first, second = scripted.requests["CreateUser"]
    assert first.request_id == second.request_id


def test_real_server_lost_reply_makes_exactly_one_post(
    loop_thread: LoopThread, microposts_server: AppServer
) -> None:
    from tests.grpcservers import Forwarder

    forwarder = Forwarder(loop_thread, microposts_server.address)
    forwarder.lose_replies["CreateMicropost"] = 1
    try:
        with Client(forwarder.address, retry=FAST) as client:
            client.create_user(username="retry_once")
            post = client.create_micropost(parent="users/retry_once", text="only one of me")
            posts = list(client.list_microposts(parent="users/retry_once"))
    finally:
        forwarder.stop()
    assert len(forwarder.requests["CreateMicropost"]) == 2  # the reply was lost once
    assert [p.name for p in posts] == [post.name]
