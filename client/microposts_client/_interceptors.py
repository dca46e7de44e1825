"""Server interceptors that carry a call across a hop: its deadline down, errors back up.

Install :class:`DeadlineInterceptor` in a ``grpc.aio`` server (or
:class:`SyncDeadlineInterceptor` in a ``grpc.server``); every call a handler
makes through :class:`~microposts_client.Client` or
:class:`~microposts_client.AsyncClient` then ends no later than the incoming
call's deadline minus a margin, and no later than its own timeout. A
:class:`~microposts_client.ServiceError` that escapes the handler answers the
handler's caller with the same status code, message and ``google.rpc`` details
(:meth:`~microposts_client.ServiceError.abort`) instead of gRPC's
``UNKNOWN: Unexpected <class ...>``; ``forward_errors=False`` turns that off.
With ``forward_token=True`` the handler's calls also carry the incoming bearer
token (off by default; see :class:`DeadlineInterceptor` for when that is right).
The incoming call's W3C ``traceparent`` is the current OpenTelemetry context
while the handler runs (when ``opentelemetry-api`` is installed), so the
handler's calls join the caller's trace.

gRPC Python does not propagate deadlines itself, and its
``time_remaining()`` is treacherous (grpc/grpc#26236): the sync server returns
a sentinel near 9.2e18 s when the caller sent no deadline, grpc.aio returns
``None``. Anything above :data:`NO_DEADLINE_ABOVE` counts as "no deadline", so
such a call's downstream calls keep their own defaults instead of failing.

The margin is :data:`MARGIN_SECONDS` plus :data:`MARGIN_FRACTION` of the time
remaining: the absolute part pays for the reply's way back, the relative part
for gRPC rounding the ``grpc-timeout`` header *up* (to two or three significant
digits: 30 s may arrive as 30.1 s, ~1 % per hop, and again on the way out).

The interceptor cannot read the deadline itself (``intercept_service`` gets
no servicer context), so it wraps the method's behaviour; the wrapper runs
inside the handler's own task or thread, where the context variable must be
set. Wrapped handlers are cached per method handler, so a call costs a dict
lookup, ``time_remaining()`` and a context-variable set and reset.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Final

import grpc
import grpc.aio

from ._credentials import _FORWARDED
from ._deadlines import _END
from ._exceptions import ServiceError
from ._tracing import attach_incoming, detach

__all__ = [
    "MARGIN_FRACTION",
    "MARGIN_SECONDS",
    "NO_DEADLINE_ABOVE",
    "DeadlineInterceptor",
    "SyncDeadlineInterceptor",
]

MARGIN_SECONDS: Final = 0.010
"""Absolute part of the margin kept back from an incoming deadline (seconds)."""

MARGIN_FRACTION: Final = 0.02
"""Relative part of the margin: two hops of gRPC's ~1 % header rounding."""

NO_DEADLINE_ABOVE: Final = 1e9
"""A remaining time above this (about 31 years) is gRPC's "no deadline" sentinel."""

_CACHE_LIMIT: Final = 1024  # handlers are per method; a generic handler that
# builds a new one per call must not make the cache grow without bound.

_monotonic = time.monotonic
_get = _END.get
_set = _END.set
_reset = _END.reset
_set_forwarded = _FORWARDED.set
_reset_forwarded = _FORWARDED.reset

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]
Behavior = Callable[..., Any]
Enter = Callable[[Any], Any]
Leave = Callable[[Any], None]


def _enter(context: Any) -> Any:
    """Publish the incoming deadline (minus margin) and trace context; tokens for ``_leave``."""
    traced = attach_incoming(context.invocation_metadata())
    remaining = context.time_remaining()
    if remaining is None or remaining > NO_DEADLINE_ABOVE:
        return None, traced
    end = _monotonic() + remaining * (1.0 - MARGIN_FRACTION) - MARGIN_SECONDS
    outer = _get()
    if outer is not None and outer < end:
        end = outer
    return _set(end), traced


def _leave(tokens: Any) -> None:
    deadline, traced = tokens
    if deadline is not None:
        # try/except, not contextlib.suppress: this runs on every call, and
        # building a context manager costs more than the rest of the wrapper.
        try:  # noqa: SIM105
            _reset(deadline)
        except ValueError:  # finished in another context (a generator closed elsewhere)
            pass
    detach(traced)


def _bearer(context: Any) -> str | None:
    """The incoming call's bearer token, if it came with one."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            if isinstance(value, str) and value[:7].lower() == "bearer ":
                return value[7:].strip() or None
            return None
    return None


def _enter_forwarding(context: Any) -> Any:
    """``_enter``, and publish the call's bearer token (None if it has none) for forwarding."""
    return _enter(context), _set_forwarded(_bearer(context))


def _leave_forwarding(tokens: Any) -> None:
    _leave(tokens[0])
    try:  # noqa: SIM105 - as in _leave
        _reset_forwarded(tokens[1])
    except ValueError:
        pass


def _abort_here(exc: ServiceError, context: Any) -> None:
    """``exc.abort(context)`` from a plain function: raises on a ``grpc.server`` context.

    On a ``grpc.aio`` context (grpc.aio runs plain functions in a thread) it
    returns a coroutine no loop can await here: dropped, and the error goes
    on as it would without forwarding.
    """
    exc.abort(context).close()


# One wrapper per kind of behaviour (coroutine, function, async generator, generator): a
# wrapper must be of its behaviour's kind, and the shared part is already _enter/_leave
# (a context manager would cost more per call than the rest of the wrapper, see _leave).
# `forward`: answer an escaping ServiceError with its own status (`except` costs nothing
# until something is raised).
def _wrap_call(behavior: Behavior, forward: bool, enter: Enter, leave: Leave) -> Behavior:
    if inspect.iscoroutinefunction(behavior):

        async def wrapped_async(request: Any, context: Any) -> Any:
            token = enter(context)
            try:
                return await behavior(request, context)
            except ServiceError as exc:
                if not forward:
                    raise
                await exc.abort(context)
            finally:
                leave(token)

        return wrapped_async

    def wrapped(request: Any, context: Any) -> Any:
        token = enter(context)
        try:
            return behavior(request, context)
        except ServiceError as exc:
            if forward:
                _abort_here(exc, context)
            raise
        finally:
            leave(token)

    return wrapped


def _wrap_stream(behavior: Behavior, forward: bool, enter: Enter, leave: Leave) -> Behavior:
    if inspect.isasyncgenfunction(behavior):

        async def wrapped_agen(request: Any, context: Any) -> AsyncIterator[Any]:
            token = enter(context)
            try:
                async for item in behavior(request, context):
                    yield item
            except ServiceError as exc:
                if not forward:
                    raise
                await exc.abort(context)
            finally:
                leave(token)

        return wrapped_agen
    if inspect.iscoroutinefunction(behavior):  # aio: writes with context.write()
        return _wrap_call(behavior, forward, enter, leave)

    def wrapped_gen(request: Any, context: Any) -> Iterator[Any]:
        token = enter(context)
        try:
            yield from behavior(request, context)
        except ServiceError as exc:
            if forward:
                _abort_here(exc, context)
            raise
        finally:
            leave(token)

    return wrapped_gen


def _wrap(handler: Handler, forward: bool, enter: Enter, leave: Leave) -> Handler:
    des, ser = handler.request_deserializer, handler.response_serializer
    if handler.unary_unary is not None:
        behavior = _wrap_call(handler.unary_unary, forward, enter, leave)
        return grpc.unary_unary_rpc_method_handler(behavior, des, ser)
    if handler.stream_unary is not None:
        behavior = _wrap_call(handler.stream_unary, forward, enter, leave)
        return grpc.stream_unary_rpc_method_handler(behavior, des, ser)
    if handler.unary_stream is not None:
        behavior = _wrap_stream(handler.unary_stream, forward, enter, leave)
        return grpc.unary_stream_rpc_method_handler(behavior, des, ser)
    if handler.stream_stream is not None:
        behavior = _wrap_stream(handler.stream_stream, forward, enter, leave)
        return grpc.stream_stream_rpc_method_handler(behavior, des, ser)
    return handler


class _Cache:
    """Wrapped handlers keyed by the identity of the handler they wrap."""

    __slots__ = ("_enter", "_entries", "_forward", "_leave")

    def __init__(self, forward: bool, forward_token: bool) -> None:
        self._entries: dict[int, tuple[Handler, Handler]] = {}
        self._forward = forward
        self._enter: Enter = _enter_forwarding if forward_token else _enter
        self._leave: Leave = _leave_forwarding if forward_token else _leave

    def wrapped(self, handler: Handler) -> Handler:
        hit = self._entries.get(id(handler))
        if hit is not None and hit[0] is handler:
            return hit[1]
        if len(self._entries) >= _CACHE_LIMIT:
            self._entries.clear()
        wrapped = _wrap(handler, self._forward, self._enter, self._leave)
        # Keeping `handler` alive keeps its id from being reused by another.
        self._entries[id(handler)] = (handler, wrapped)
        return wrapped


if TYPE_CHECKING:
    _AioBase = grpc.aio.ServerInterceptor[Any, Any]
    _SyncBase = grpc.ServerInterceptor[Any, Any]
else:
    _AioBase = grpc.aio.ServerInterceptor
    _SyncBase = grpc.ServerInterceptor


class DeadlineInterceptor(_AioBase):
    """``grpc.aio`` server interceptor: calls made by handlers inherit the incoming deadline.

    ``grpc.aio.server(interceptors=[DeadlineInterceptor()])``.

    ``forward_errors``: a :class:`~microposts_client.ServiceError` that
    escapes a handler answers its caller with the same status code, message
    and ``google.rpc`` details (:meth:`~microposts_client.ServiceError.abort`).
    With ``False`` such an error reaches gRPC, which answers ``UNKNOWN``.

    ``forward_token=True`` also hands the incoming call's bearer token
    (``authorization: Bearer …``) to the calls its handler makes through a
    client that has no token of its own. Off by default: a token is meant
    for one audience, and forwarding replays it to another service. Turn it
    on only when the downstream service trusts the same issuer and audience
    and should act as the original caller (a gateway or backend-for-frontend
    in front of MicroPosts); otherwise give the client its own ``token=``.

    A server that builds its method handlers itself can instead apply
    :meth:`wrap` to each one once, at start-up: the same effect without
    grpc.aio's per-call interceptor dispatch, which costs tens of
    microseconds a call (the MicroPosts server does this).
    """

    def __init__(self, *, forward_errors: bool = True, forward_token: bool = False) -> None:
        self._cache = _Cache(forward_errors, forward_token)

    def wrap(self, handler: Handler) -> Handler:
        """``handler``, wrapped so that its calls inherit the incoming deadline (and errors)."""
        return self._cache.wrapped(handler)

    # grpc-stubs types the result as always a handler; grpc.aio passes None
    # along for a method nobody serves, and so do we.
    async def intercept_service(  # type: ignore[override]
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        """Return the method's handler, wrapped to publish the call's deadline.

        ``None`` (no handler: grpc answers UNIMPLEMENTED) passes through.
        """
        handler: Handler | None = await continuation(handler_call_details)
        if handler is None:
            return None
        return self._cache.wrapped(handler)


class SyncDeadlineInterceptor(_SyncBase):
    """``grpc.server`` (thread pool) interceptor: handlers' calls inherit the incoming deadline.

    ``grpc.server(executor, interceptors=[SyncDeadlineInterceptor()])``, or
    :meth:`wrap` on each method handler at start-up. ``forward_errors`` and
    ``forward_token`` as for :class:`DeadlineInterceptor`.
    """

    def __init__(self, *, forward_errors: bool = True, forward_token: bool = False) -> None:
        self._cache = _Cache(forward_errors, forward_token)

    def wrap(self, handler: Handler) -> Handler:
        """``handler``, wrapped so that its calls inherit the incoming deadline (and errors)."""
        return self._cache.wrapped(handler)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Handler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        """Return the method's handler, wrapped to publish the call's deadline."""
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        return self._cache.wrapped(handler)
