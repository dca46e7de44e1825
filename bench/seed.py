"""Data for the MicroPosts server, and the request each scenario sends.

Seeding goes through the generated stubs (the public API), never the store,
so the bench does not depend on the server's schema. The scenarios read data
no run writes to: creates go to their own user, so a read's reply is the same
bytes on every call, which lets ``bench.h2load`` check every call succeeded.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message

from microposts.v1 import (
    micropost_service_pb2,
    micropost_service_pb2_grpc,
    resources_pb2,
    user_service_pb2,
    user_service_pb2_grpc,
)
from microposts_client import method_table

WRITER = "bench_writer"
CALL_TIMEOUT = 10.0


def post_stub(channel: grpc.Channel | grpc.aio.Channel) -> Any:
    """The generated MicropostService stub (the generated ``_grpc`` modules are untyped)."""
    return micropost_service_pb2_grpc.MicropostServiceStub(channel)  # type: ignore[no-untyped-call]


def user_stub(channel: grpc.Channel | grpc.aio.Channel) -> Any:
    """The generated UserService stub."""
    return user_service_pb2_grpc.UserServiceStub(channel)  # type: ignore[no-untyped-call]


def reader(i: int) -> str:
    """The username of the i-th seeded user."""
    return f"bench_u{i:03d}"


@dataclass(frozen=True)
class Seeded:
    """What the seeding created: the post names, by user."""

    posts: dict[str, list[str]]  # username -> the names of their posts


@dataclass(frozen=True)
class Scenario:
    """One method under load: its name, request, and how to check a reply."""

    method: str
    request: Message
    reply_varies: bool = False  # creates: a new name and time each call

    @property
    def path(self) -> str:
        """The HTTP/2 :path of the call."""
        return method_table()[self.method].path


def scenarios(seeded: Seeded, *, page_size: int = 50, batch: int = 20) -> list[Scenario]:
    """GetMicropost, ListMicroposts (one page), CreateMicropost, BatchGetMicroposts."""
    users = sorted(seeded.posts)
    first = users[0]
    spread = [seeded.posts[users[i % len(users)]][i // len(users)] for i in range(batch)]
    m = micropost_service_pb2
    return [
        Scenario("GetMicropost", m.GetMicropostRequest(name=seeded.posts[first][0])),
        Scenario(
            "ListMicroposts",
            m.ListMicropostsRequest(parent=f"users/{first}", page_size=page_size),
        ),
        create_scenario(users),
        Scenario("BatchGetMicroposts", m.BatchGetMicropostsRequest(names=spread)),
    ]


def create_scenario(users: list[str]) -> Scenario:
    """A post by the writer that mentions two seeded users (at least three are needed)."""
    # No request_id: h2load sends the same body every time, and the same
    # request_id would make every call after the first a replay (AIP-155).
    return Scenario(
        "CreateMicropost",
        micropost_service_pb2.CreateMicropostRequest(
            parent=f"users/{WRITER}",
            micropost=resources_pb2.Micropost(
                text=f"Benchmarking with @{users[1]} and @{users[2]}: a post of a typical size."
            ),
        ),
        reply_varies=True,
    )


def echo_scenario() -> Scenario:
    """The baseline's request: the same as GetMicropost's, echoed back."""
    return Scenario(
        "GetMicropost",
        micropost_service_pb2.GetMicropostRequest(name=f"users/{reader(0)}/microposts/0123456789"),
    )


async def _seed(address: str, users: int, posts_per_user: int, concurrency: int) -> Seeded:
    async with grpc.aio.insecure_channel(address) as channel:
        users_api, posts_api = user_stub(channel), post_stub(channel)
        names = [reader(i) for i in range(users)]
        for username in [*names, WRITER]:
            await users_api.CreateUser(
                user_service_pb2.CreateUserRequest(
                    user=resources_pb2.User(username=username, display_name=username.title()),
                    request_id=f"bench-user-{username}",
                ),
                timeout=CALL_TIMEOUT,
            )
        gate = asyncio.Semaphore(concurrency)

        async def post(username: str, k: int) -> str:
            mention = names[(names.index(username) + 1) % len(names)]
            request = micropost_service_pb2.CreateMicropostRequest(
                parent=f"users/{username}",
                micropost=resources_pb2.Micropost(
                    text=f"Post {k} by {username}, hello @{mention}. " + "x" * (k % 60)
                ),
                request_id=f"bench-post-{username}-{k}",
            )
            async with gate:
                reply = await posts_api.CreateMicropost(request, timeout=CALL_TIMEOUT)
            return str(reply.name)

        posts: dict[str, list[str]] = {}
        for username in names:
            # One user at a time keeps each user's posts in creation order.
            posts[username] = list(
                await asyncio.gather(*(post(username, k) for k in range(posts_per_user)))
            )
        return Seeded(posts)


def seed(
    address: str, *, users: int = 20, posts_per_user: int = 60, concurrency: int = 16
) -> Seeded:
    """Create ``users`` users with ``posts_per_user`` posts each, plus the writer."""
    return asyncio.run(_seed(address, users, posts_per_user, concurrency))


def call(address: str, scenario: Scenario) -> bytes:
    """Send the scenario's request once from Python; its serialized reply, or RpcError."""
    with grpc.insecure_channel(address) as channel:
        method = channel.unary_unary(
            scenario.path,
            request_serializer=type(scenario.request).SerializeToString,
            response_deserializer=None,
        )
        reply: bytes = method(scenario.request, timeout=CALL_TIMEOUT)
        return reply


def count_posts(address: str, username: str) -> int:
    """How many posts ``username`` has, paging through ListMicroposts."""
    total, token = 0, ""
    with grpc.insecure_channel(address) as channel:
        stub = post_stub(channel)
        while True:
            page = stub.ListMicroposts(
                micropost_service_pb2.ListMicropostsRequest(
                    parent=f"users/{username}", page_size=1000, page_token=token
                ),
                timeout=CALL_TIMEOUT,
            )
            total += len(page.microposts)
            token = page.next_page_token
            if not token:
                return total
