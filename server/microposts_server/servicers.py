"""Servicers: protobuf in, use case, protobuf out. Nothing else lives here.

One coroutine per RPC, named after it (``GetUser`` -> ``get_user``), from
request message and caller (the ``Principal`` the pipeline authenticated) to
response message; writes hand the caller to their use case. ``Servicers.handlers()`` pairs each RPC
of the contract (``microposts_client.method_table()``) with its coroutine;
``rpc.py`` wraps each one in the per-call pipeline once, at start-up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from google.protobuf import empty_pb2, timestamp_pb2
from google.protobuf.message import Message

from microposts.v1 import micropost_service_pb2 as mpb
from microposts.v1 import resources_pb2 as rpb
from microposts.v1 import user_service_pb2 as upb
from microposts_client import MethodInfo, method_table

from .domain import Micropost, Principal, User
from .service import Service

Handler = Callable[[Any, Principal], Awaitable[Message]]


def _set_time(stamp: timestamp_pb2.Timestamp, micros: int) -> None:
    """Microseconds since the epoch into a Timestamp, in place."""
    stamp.seconds, stamp.nanos = micros // 1_000_000, micros % 1_000_000 * 1000


def user_message(user: User) -> rpb.User:
    """Domain User -> microposts.v1.User."""
    msg = rpb.User(name=user.name, username=user.username, display_name=user.display_name)
    _set_time(msg.create_time, user.create_time)
    return msg


def fill_micropost(msg: rpb.Micropost, post: Micropost) -> rpb.Micropost:
    """Writes ``post`` into ``msg`` in place (cheaper than building and copying parts)."""
    msg.name = f"users/{post.username}/microposts/{post.id}"
    msg.text = post.text
    if post.referenced_users:
        msg.referenced_users.extend([f"users/{u}" for u in post.referenced_users])
    _set_time(msg.create_time, post.create_time)
    _set_time(msg.update_time, post.update_time)
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
    async def create_user(self, request: upb.CreateUserRequest, caller: Principal) -> rpb.User:
        user = await self.service.create_user(
            request.user.username, request.user.display_name, request.request_id, caller=caller
        )
        return user_message(user)

    async def get_user(self, request: upb.GetUserRequest, caller: Principal) -> rpb.User:
        return user_message(await self.service.get_user(request.name))

    async def list_users(
        self, request: upb.ListUsersRequest, caller: Principal
    ) -> upb.ListUsersResponse:
        page = await self.service.list_users(request.page_size, request.page_token)
        response = upb.ListUsersResponse(next_page_token=page.next_cursor or "")
        response.users.extend([user_message(u) for u in page.items])
        return response

    # MicropostService
    async def create_micropost(
        self, request: mpb.CreateMicropostRequest, caller: Principal
    ) -> rpb.Micropost:
        post = await self.service.create_micropost(
            request.parent, request.micropost.text, request.request_id, caller=caller
        )
        return micropost_message(post)

    async def get_micropost(
        self, request: mpb.GetMicropostRequest, caller: Principal
    ) -> rpb.Micropost:
        return micropost_message(await self.service.get_micropost(request.name))

    async def batch_get_microposts(
        self, request: mpb.BatchGetMicropostsRequest, caller: Principal
    ) -> mpb.BatchGetMicropostsResponse:
        posts = await self.service.batch_get_microposts(request.names)
        response = mpb.BatchGetMicropostsResponse()
        add = response.microposts.add
        for post in posts:
            fill_micropost(add(), post)
        return response

    async def list_microposts(
        self, request: mpb.ListMicropostsRequest, caller: Principal
    ) -> mpb.ListMicropostsResponse:
        page = await self.service.list_microposts(
            request.parent, request.page_size, request.page_token
        )
        response = mpb.ListMicropostsResponse(next_page_token=page.next_cursor or "")
        add = response.microposts.add
        for post in page.items:
            fill_micropost(add(), post)
        return response

    async def update_micropost(
        self, request: mpb.UpdateMicropostRequest, caller: Principal
    ) -> rpb.Micropost:
        post = await self.service.update_micropost(
            request.micropost.name,
            request.micropost.text,
            request.micropost.etag,
            list(request.update_mask.paths),
            caller=caller,
        )
        return micropost_message(post)

    async def delete_micropost(
        self, request: mpb.DeleteMicropostRequest, caller: Principal
    ) -> empty_pb2.Empty:
        await self.service.delete_micropost(request.name, request.etag, caller=caller)
        return empty_pb2.Empty()

    def handlers(self) -> list[tuple[MethodInfo, Handler]]:
        """Every RPC of the contract, in contract order, with the coroutine that serves it.

        An RPC of the contract without its coroutine here stops the server at
        start-up, naming it, rather than answering UNIMPLEMENTED at run time.
        """
        pairs: list[tuple[MethodInfo, Handler]] = []
        for method in method_table().values():
            handler = getattr(self, method.python_name, None)
            if handler is None:
                raise NotImplementedError(
                    f"{method.path} is in the contract but Servicers has no {method.python_name}()"
                )
            pairs.append((method, handler))
        return pairs
