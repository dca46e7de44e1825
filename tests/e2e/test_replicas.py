"""Scaling out: two server processes on one PostgreSQL database, one client across both.

The client is a plain gRPC channel given both addresses with the
``round_robin`` policy and a retry policy for UNAVAILABLE (what
``microposts_client.Client([...])`` configures), so these tests show what
any gRPC client gets from the replicas, not what our wrapper adds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import grpc
import pytest

from microposts.v1 import micropost_service_pb2 as mpb
from microposts.v1 import micropost_service_pb2_grpc as mgrpc
from microposts.v1 import resources_pb2 as rpb
from microposts.v1 import user_service_pb2 as upb
from microposts.v1 import user_service_pb2_grpc as ugrpc
from tests import pg
from tests.serverproc import ServerProcess

SERVICE_CONFIG = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [
        {
            "name": [{}],
            "retryPolicy": {
                "maxAttempts": 5,
                "initialBackoff": "0.05s",
                "maxBackoff": "0.5s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ],
}


@pytest.fixture
def replicas() -> Iterator[tuple[ServerProcess, ServerProcess]]:
    with (
        pg.session_database().schema() as url,
        ServerProcess(url) as a,
        ServerProcess(url) as b,
    ):
        yield a, b


def balanced(*servers: ServerProcess) -> grpc.Channel:
    target = "ipv4:" + ",".join(s.address for s in servers)
    options = [
        ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
        ("grpc.use_local_subchannel_pool", 1),
    ]
    return grpc.insecure_channel(target, options=options)


def calls(srv: ServerProcess) -> int:
    return len(srv.logs(msg="call"))


def settle(a: ServerProcess, b: ServerProcess, total: int) -> None:
    """Waits (boundedly) until the two servers' call lines, read in threads, add up."""
    deadline = time.monotonic() + 10
    while calls(a) + calls(b) < total and time.monotonic() < deadline:
        time.sleep(0.01)


def test_writes_through_one_replica_are_read_through_the_other(
    replicas: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = replicas
    with grpc.insecure_channel(a.address) as ch_a, grpc.insecure_channel(b.address) as ch_b:
        users_a, posts_a = ugrpc.UserServiceStub(ch_a), mgrpc.MicropostServiceStub(ch_a)
        users_b, posts_b = ugrpc.UserServiceStub(ch_b), mgrpc.MicropostServiceStub(ch_b)
        user = rpb.User(username="alice", display_name="Alice")
        users_a.CreateUser(upb.CreateUserRequest(user=user), timeout=5)
        assert users_b.GetUser(upb.GetUserRequest(name="users/alice"), timeout=5).username == (
            "alice"
        )
        made = [
            posts_a.CreateMicropost(
                mpb.CreateMicropostRequest(
                    parent="users/alice",
                    micropost=rpb.Micropost(text=f"post {i}"),
                    request_id=f"r{i}",
                ),
                timeout=5,
            )
            for i in range(3)
        ]
        # Page tokens from one replica work on the other: the key is in the database.
        first = posts_b.ListMicroposts(
            mpb.ListMicropostsRequest(parent="users/alice", page_size=2), timeout=5
        )
        rest = posts_a.ListMicroposts(
            mpb.ListMicropostsRequest(parent="users/alice", page_token=first.next_page_token),
            timeout=5,
        )
        listed = [p.name for p in [*first.microposts, *rest.microposts]]
        assert listed == [p.name for p in reversed(made)]
        # A create replayed on the other replica returns the original.
        again = posts_b.CreateMicropost(
            mpb.CreateMicropostRequest(
                parent="users/alice", micropost=rpb.Micropost(text="post 0"), request_id="r0"
            ),
            timeout=5,
        )
        assert again == made[0]


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_calls_spread_over_replicas_and_survive_losing_one(
    replicas: tuple[ServerProcess, ServerProcess], how: str
) -> None:
    a, b = replicas
    with balanced(a, b) as channel:
        users = ugrpc.UserServiceStub(channel)
        user = rpb.User(username="bob", display_name="Bob")
        users.CreateUser(upb.CreateUserRequest(user=user, request_id="bob-1"), timeout=5)
        get = upb.GetUserRequest(name="users/bob")
        settle(a, b, 1)  # the create's line has arrived
        before = calls(a), calls(b)
        for _ in range(40):
            assert users.GetUser(get, timeout=5).username == "bob"
        settle(a, b, sum(before) + 40)
        spread = calls(a) - before[0], calls(b) - before[1]
        assert sum(spread) == 40 and min(spread) >= 10, spread

        if how == "stop":
            assert a.stop() == 0
        else:
            a.kill()
        start = time.monotonic()
        for _ in range(40):
            assert users.GetUser(get, timeout=5).username == "bob"
        assert time.monotonic() - start < 10
