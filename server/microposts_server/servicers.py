"""Servicers: protobuf in, use case, protobuf out. Nothing else lives here.

Each entry of ``methods()`` names an RPC, its request type and a coroutine
from request message to response message; ``rpc.py`` wraps each one in the
per-call pipeline once, at start-up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf import empty_pb2, timestamp_pb2
from google.protobuf.message import Message

from microposts.v1 import micropost_service_pb2 as mpb
from microposts.v1 import resources_pb2 as rpb
from microposts.v1 import user_service_pb2 as upb

from .domain import Micropost, User
from .service import Service

USER_SERVICE = "microposts.v1.UserService"
MICROPOST_SERVICE = "microposts.v1.MicropostService"

Handler = Callable[[Any], Awaitable[Message]]


@dataclass(frozen=True, slots=True)
class MethodSpec:
    """One RPC: where it lives, what it takes, and what handles it."""

    service: str
    name: str
    request_type: type[Message]
    handler: Handler
    writes: bool


def _timestamp(micros: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=micros // 1_000_000, nanos=(micros % 1_000_000) * 1000)


def user_message(user: User) -> rpb.User:
    """Domain User -> microposts.v1.User."""
    return rpb.User(
        name=user.name,
        username=user.username,
        display_name=user.display_name,
        create_time=_timestamp(user.create_time),
    )


def micropost_message(post: Micropost) -> rpb.Micropost:
    """Domain Micropost -> microposts.v1.Micropost."""
    return rpb.Micropost(
        name=post.name,
        text=post.text,
        referenced_users=[f"users/{u}" for u in post.referenced_users],
        create_time=_timestamp(post.create_time),
        update_time=_timestamp(post.update_time),
        etag=post.etag,
    )


class Servicers:
    """Translators for both services, over one ``Service``."""

    def __init__(self, service: Service) -> None:
        self.service = service

    # UserService
    async def create_user(self, request: upb.CreateUserRequest) -> rpb.User:
        user = await self.service.create_user(
            request.user.username, request.user.display_name, request.request_id
        )
        return user_message(user)

    async def get_user(self, request: upb.GetUserRequest) -> rpb.User:
        return user_message(await self.service.get_user(request.name))

    async def list_users(self, request: upb.ListUsersRequest) -> upb.ListUsersResponse:
        page = await self.service.list_users(request.page_size, request.page_token)
        return upb.ListUsersResponse(
            users=[user_message(u) for u in page.items], next_page_token=page.next_cursor or ""
        )

    # MicropostService
    async def create_micropost(self, request: mpb.CreateMicropostRequest) -> rpb.Micropost:
        post = await self.service.create_micropost(
            request.parent, request.micropost.text, request.request_id
        )
        return micropost_message(post)

    async def get_micropost(self, request: mpb.GetMicropostRequest) -> rpb.Micropost:
        return micropost_message(await self.service.get_micropost(request.name))

    async def batch_get_microposts(
        self, request: mpb.BatchGetMicropostsRequest
    ) -> mpb.BatchGetMicropostsResponse:
        posts = await self.service.batch_get_microposts(request.names)
        return mpb.BatchGetMicropostsResponse(microposts=[micropost_message(p) for p in posts])

    async def list_microposts(
        self, request: mpb.ListMicropostsRequest
    ) -> mpb.ListMicropostsResponse:
        page = await self.service.list_microposts(
            request.parent, request.page_size, request.page_token
        )
        return mpb.ListMicropostsResponse(
            microposts=[micropost_message(p) for p in page.items],
            next_page_token=page.next_cursor or "",
        )

    async def update_micropost(self, request: mpb.UpdateMicropostRequest) -> rpb.Micropost:
        post = await self.service.update_micropost(
            request.micropost.name,
            request.micropost.text,
            request.micropost.etag,
            list(request.update_mask.paths),
        )
        return micropost_message(post)

    async def delete_micropost(self, request: mpb.DeleteMicropostRequest) -> empty_pb2.Empty:
        await self.service.delete_micropost(request.name, request.etag)
        return empty_pb2.Empty()

    def methods(self) -> list[MethodSpec]:
        """Every RPC of both services, in contract order."""
        u, m = USER_SERVICE, MICROPOST_SERVICE
        return [
            MethodSpec(u, "CreateUser", upb.CreateUserRequest, self.create_user, True),
            MethodSpec(u, "GetUser", upb.GetUserRequest, self.get_user, False),
            MethodSpec(u, "ListUsers", upb.ListUsersRequest, self.list_users, False),
            MethodSpec(
                m, "CreateMicropost", mpb.CreateMicropostRequest, self.create_micropost, True
            ),
            MethodSpec(m, "GetMicropost", mpb.GetMicropostRequest, self.get_micropost, False),
            MethodSpec(
                m,
                "BatchGetMicroposts",
                mpb.BatchGetMicropostsRequest,
                self.batch_get_microposts,
                False,
            ),
            MethodSpec(m, "ListMicroposts", mpb.ListMicropostsRequest, self.list_microposts, False),
            MethodSpec(
                m, "UpdateMicropost", mpb.UpdateMicropostRequest, self.update_micropost, True
            ),
            MethodSpec(
                m, "DeleteMicropost", mpb.DeleteMicropostRequest, self.delete_micropost, True
            ),
        ]
