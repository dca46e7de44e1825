"""``GatedServer``: grpc.aio's Cython server with our receive loop for our own methods.

Imported only by ``gated.make_server``, once it has checked that this grpcio
is one the class was tested with and has every internal it uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import Iterable
from typing import Any, Final

import grpc
from grpc._cython import cygrpc

from .admission import CURRENT, Admission, Rejection, Waiting
from .answers import answer

log = logging.getLogger("microposts.overload")

RECEIVERS: Final = 16
"""Calls asked of the core at once, per method. grpc.aio asks one at a time:
under load the rest wait in the core's queue, first in first out, where
admission cannot see them, until their deadline passes. Asking for sixteen
lets admission see arrivals as they come (and turn away at once those that
cannot make their deadline), and one wake-up of the event loop take several
calls (GetMicropost at peak: 15-20 % more throughput than with one)."""


class _Resolver:
    """What grpc.aio's ``_handle_rpc`` asks for a call's handler."""

    def __init__(self, handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]) -> None:
        self.handlers = handlers

    def resolve_handler(self, details: Any) -> grpc.RpcMethodHandler[Any, Any] | None:
        return self.handlers.get(details.method)


_CYGRPC_CODES: dict[grpc.StatusCode, Any] = {
    code: cygrpc.StatusCode(code.value[0]) for code in grpc.StatusCode
}


class GatedServer(cygrpc.AioServer):  # type: ignore[misc]  # grpc has no types for its Cython core
    """grpc.aio's Cython server; the gated services' calls go through ``Admission``.

    grpc.aio keeps one "request a call" armed per registered method and
    starts a task for every call it gets. For the gated methods this
    class arms its own, one loop per method (``_receive``), and hands
    each call to admission first; health, reflection and anything else
    stay on grpc.aio's loop.
    """

    def __init__(self, *args: Any, admission: Admission, services: Iterable[str]) -> None:
        super().__init__(*args)
        self.admission = admission
        self.gated_services = frozenset(services)
        self.handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.receivers: list[asyncio.Task[None]] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.resolver = _Resolver(self.handlers)
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = math.inf

    def add_registered_method_handlers(self, method_handlers: dict[str, Any]) -> None:
        super().add_registered_method_handlers(method_handlers)
        for path, handler in method_handlers.items():
            if path.split("/")[1] in self.gated_services:
                self.handlers[path] = handler

    def _make_request_call_future(self, method_bytes: bytes | None) -> Any:
        if method_bytes is not None and method_bytes.decode() in self.handlers:
            # Never completes: our receive loop serves this method.
            return asyncio.get_running_loop().create_future()
        return super()._make_request_call_future(method_bytes)

    async def start(self) -> None:
        await super().start()
        self.loop = asyncio.get_running_loop()
        self.admission.bind(self.run, self.reject, self.wake_at)
        for path in self.handlers:
            for _ in range(RECEIVERS):
                task = self.loop.create_task(self._receive(path), name=f"receive {path}")
                self.receivers.append(task)
        self.receivers.append(self.loop.create_task(self._watch_quiet()))

    async def shutdown(self, grace: float | None) -> None:
        await super().shutdown(grace)
        for task in self.receivers:
            task.cancel()
        if self.timer is not None:
            self.timer.cancel()

    async def _receive(self, path: str) -> None:
        """Asks the core for the next call of ``path``, hands it to admission, repeats."""
        loop = asyncio.get_running_loop()
        request = self._request_registered_call
        context = cygrpc._ServicerContext
        arrive = self.admission.arrive
        raw = path.encode()
        while True:
            try:
                state = await request(raw)
            except asyncio.CancelledError:
                raise
            except Exception:
                if not self.is_running():
                    return
                fields = {"method": path}
                log.exception("asking gRPC for the next call failed", extra={"fields": fields})
                await asyncio.sleep(0.1)
                continue
            left = context(state, None, None, loop).time_remaining()
            arrive(state, path, left)

    def run(self, call: Waiting) -> None:
        """Starts the call's handler as grpc.aio would, and frees its slot when done."""
        loop = self.loop
        assert loop is not None
        path = call.method
        token = CURRENT.set(call)  # the handler's task inherits it: handler_started()
        try:
            task = loop.create_task(
                cygrpc._schedule_rpc_coro(
                    cygrpc._handle_rpc(path, self.resolver, (), call.state, loop, False),
                    call.state,
                    loop,
                    path,
                )
            )
        finally:
            CURRENT.reset(token)
        self.tasks.add(task)
        task.add_done_callback(functools.partial(self._done, call))

    def _done(self, call: Waiting, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        self.admission.finished(call)

    def reject(self, call: Waiting, rejection: Rejection) -> None:
        """Answers the call now, from here: no handler, no grpc.aio task for it."""
        loop = self.loop
        assert loop is not None
        task = loop.create_task(self._answer(call.state, rejection))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _answer(self, state: Any, rejection: Rejection) -> None:
        code, message, trailers = answer(rejection)
        # It fails only when the call has ended already (its deadline, a reset).
        with contextlib.suppress(Exception):
            await cygrpc._send_error_status_from_server(
                state,
                _CYGRPC_CODES[code],
                message,
                trailers,
                cygrpc.SendInitialMetadataOperation((), 0),
                self.loop,
            )

    def wake_at(self, when: float) -> None:
        """Wakes admission at ``when`` (monotonic) to turn away calls that waited too long."""
        if when >= self.timer_at or self.loop is None:
            return
        if self.timer is not None:
            self.timer.cancel()
        self.timer_at = when
        delay = max(0.0, when - time.monotonic())
        self.timer = self.loop.call_later(delay, self._sweep)

    def _sweep(self) -> None:
        self.timer, self.timer_at = None, math.inf
        self.admission.sweep()

    async def _watch_quiet(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.admission.check_quiet()
