"""Servicers: protobuf in, use case, protobuf out. Nothing else lives here.

Each entry of ``methods()`` names an RPC, its request type and a coroutine
from request message to response message; ``rpc.py`` wraps each one in the
per-call pipeline once, at start-up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf import empty_pb2
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


def user_message(user: User) -> rpb.User:
    """Domain User -> microposts.v1.User."""
    msg = rpb.User(name=user.name, username=user.username, display_name=user.display_name)
    micros = user.create_time
    msg.create_time.seconds, msg.create_time.nanos = micros // 1_000_000, micros % 1_000_000 * 1000
    return msg


def fill_micropost(msg: rpb.Micropost, post: Micropost) -> rpb.Micropost:
    """Writes ``post`` into ``msg`` in place (cheaper than building and copying parts)."""
    msg.name = f"users/{post.username}/microposts/{post.id}"
    msg.text = post.text
    if post.referenced_users:
        msg.referenced_users.extend([f"users/{u}" for u in post.referenced_users])
    created, updated = post.create_time, post.update_time
    msg.create_time.seconds, msg.create_time.nanos = (
        created // 1_000_000,
        created % 1_000_000 * 1000,
    )
    msg.update_time.seconds, msg.update_time.nanos = (
        updated // 1_000_000,
        updated % 1_000_000 * 1000,
    )
    msg.etag = post.etag
    return msg


def micropost_message(post: Micropost) -> rpb.Micropost:
    """Domain Micropost -> microposts.v1.Micropost."""
    return fill_micropost(rpb.Micropost(), post)


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
        response = upb.ListUsersResponse(next_page_token=page.next_cursor or "")
        response.users.extend([user_message(u) for u in page.items])
        return response

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
        response = mpb.BatchGetMicropostsResponse()
        add = response.microposts.add
        for post in posts:
            fill_micropost(add(), post)
        return response

    async def list_microposts(
        self, request: mpb.ListMicropostsRequest
    ) -> mpb.ListMicropostsResponse:
        page = await self.service.list_microposts(
            request.parent, request.page_size, request.page_token
        )
        response = mpb.ListMicropostsResponse(next_page_token=page.next_cursor or "")
        add = response.microposts.add
        for post in page.items:
            fill_micropost(add(), post)
        return response

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
