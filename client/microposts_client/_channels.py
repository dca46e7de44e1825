"""The clients' channels: opened with their interceptors, and bound to an event loop or not.

A blocking ``grpc.Channel`` belongs to no event loop: :class:`ReadyChannel`
opens it when the client is built. A ``grpc.aio.Channel`` belongs to the event
loop it is made in, and grpc fails a call from any other loop with a raw
"attached to a different loop" error. Web frameworks create clients at import
time or in a startup ("lifespan") hook, often before the loop that serves
requests runs, so :class:`LoopChannel` opens the channel on the client's first
call, in that call's running loop. A call from a second loop while the first
still runs raises a :class:`RuntimeError` that says what to do; once the first
loop is closed (``asyncio.run`` twice, a test per loop), the next loop gets a
channel of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, cast

import grpc
import grpc.aio

__all__ = ["LoopChannel", "ReadyChannel", "open_aio_channel", "open_channel"]

Stubs = dict[str, Any]
"""One callable per RPC, by method name (``_BaseClient._callables``)."""


def open_channel(
    target: str,
    credentials: grpc.ChannelCredentials | None,
    options: Sequence[tuple[str, Any]],
    interceptors: Sequence[Any],
) -> grpc.Channel:
    """A blocking channel to ``target``, through ``interceptors`` (the first one outermost)."""
    if credentials is None:
        channel = grpc.insecure_channel(target, options)
    else:
        channel = grpc.secure_channel(target, credentials, options)
    if interceptors:
        channel = grpc.intercept_channel(channel, *interceptors)
    return channel


def open_aio_channel(
    target: str,
    credentials: grpc.ChannelCredentials | None,
    options: Sequence[tuple[str, Any]],
    interceptors: Sequence[Any],
) -> grpc.aio.Channel:
    """An asyncio channel to ``target``, through ``interceptors``, on the running loop."""
    chain = cast(Any, list(interceptors)) or None  # grpc-stubs leaves their type open
    if credentials is None:
        return grpc.aio.insecure_channel(target, options, interceptors=chain)
    return grpc.aio.secure_channel(target, credentials, options, interceptors=chain)


class ReadyChannel:
    """``Client``'s channel, open from the start; ``stubs()`` are its callables."""

    __slots__ = ("_channel", "_stubs")

    def __init__(self, open: Callable[[], grpc.Channel], stubs: Callable[[Any], Stubs]) -> None:
        self._channel = open()
        self._stubs = stubs(self._channel)

    def stubs(self) -> Stubs:
        """The channel's callables."""
        return self._stubs

    def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        self._channel.close()


class LoopChannel:
    """``AsyncClient``'s channel, opened by the first call in that call's event loop."""

    __slots__ = ("_channel", "_closed", "_loop", "_open", "_stubs", "_stubs_of")

    def __init__(self, open: Callable[[], grpc.aio.Channel], stubs: Callable[[Any], Stubs]) -> None:
        self._open = open
        self._stubs_of = stubs
        self._channel: grpc.aio.Channel | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stubs: Stubs = {}
        self._closed = False

    def stubs(self) -> Stubs:
        """The callables of the channel of the running loop; opens it on the first call."""
        if asyncio.get_running_loop() is self._loop:
            return self._stubs
        return self._bind(asyncio.get_running_loop())

    def _bind(self, loop: asyncio.AbstractEventLoop) -> Stubs:
        if self._closed:
            raise RuntimeError("this AsyncClient is closed: create a new one")
        self._check_loop()
        # A closed loop's channel cannot be closed any more; grpc frees it with the object.
        self._channel = self._open()
        self._stubs = self._stubs_of(self._channel)
        self._loop = loop
        return self._stubs

    def _check_loop(self) -> None:
        """Raise if the channel belongs to another event loop that is still open."""
        loop = self._loop
        if loop is not None and loop is not asyncio.get_running_loop() and not loop.is_closed():
            raise RuntimeError(
                "this AsyncClient is in use on another event loop, and gRPC binds its "
                "channel to one loop: create one AsyncClient per event loop (in the code "
                "that runs on it, or in your framework's startup/lifespan hook), or use "
                "the blocking Client from threads"
            )

    async def close(self) -> None:
        """Close the channel (if a call opened one); calls in flight are cancelled."""
        self._check_loop()
        channel, loop = self._channel, self._loop
        self._closed = True
        self._channel, self._loop, self._stubs = None, None, {}
        if channel is not None and loop is asyncio.get_running_loop():
            await channel.close(None)
