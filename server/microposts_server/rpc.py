"""The per-call pipeline, built once per method at start-up.

Every call goes through the same named steps, in one flat coroutine (no
interceptor chain to walk). Before any of them, ``overload.Admission`` has
decided that the call runs now (it may have queued it, or turned it away
without running this pipeline at all); the pipeline's first act is to tell
it the call's request body has arrived (``overload.handler_started``):

1. ``budget_of``: the time the caller has left (``context.time_remaining()``;
   a caller that sent no deadline gets the server's cap, ``--max-deadline``)
   becomes a ``deadlines.Budget``;
2. ``request_id_of``: the caller's ``x-request-id``, or a generated one;
3. ``admit``: a call arriving with less than the method's minimum left is
   rejected with ``DEADLINE_EXCEEDED`` before any work (and counted);
4. ``authenticate`` (``--auth jwt``): the ``authorization`` metadata becomes
   the caller, a ``domain.Principal``, or the call is ``UNAUTHENTICATED``
   before its request is even decoded; with authentication off every caller
   is ``domain.UNRESTRICTED``. Either way the log names the caller: the
   token's ``sub``, else a client certificate's subject (mTLS);
5. ``decode``: raw bytes -> request message, a failure is ``INVALID_ARGUMENT``
   naming the field (grpc.aio would say ``UNKNOWN``);
6. ``run``: the budget goes into the context variable the store reads, and
   the handler runs with the request and the caller; where the server's cap
   is tighter than the caller's deadline it runs under ``asyncio.timeout`` so
   the cap holds even between store calls (the caller's own deadline is
   enforced by grpc.aio, which cancels the handler's task when it passes or
   the caller cancels);
7. ``failure_of``: domain errors become their status with google.rpc details;
   an unexpected exception is logged with its traceback and becomes
   ``INTERNAL`` with only a request id on the wire; a store outage is
   ``UNAVAILABLE`` with a plain reason and the request id, the driver's
   text going to the log under that id;
8. ``record``: the metrics and one structured log line (method, code,
   duration, request id, peer, caller, the deadline the caller sent, the time
   left at the end, store time and calls).

With tracing configured (``tracing.py``, the standard ``OTEL_*`` variables),
each call is also one OpenTelemetry SERVER span, child of the caller's
``traceparent``, with the same facts as attributes; with tracing off there is
no span code on the call's path at all.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.message import Message

from microposts_client import NO_DEADLINE_ABOVE, DeadlineInterceptor, MethodInfo

# Private to the client package, imported on purpose: the server's spans are
# the client's tracing code (one span shape, one traceparent handling), and
# the two distributions are released together from one tag, the server
# pinning the very same client version (pyproject.toml, microposts-client==).
from microposts_client._tracing import end_server_span, start_server_span

from . import deadlines, domain
from .auth import JwtAuthenticator
from .decoding import decode
from .errors import Failure, failure_for, internal
from .logs import CallLog
from .metrics import Metrics
from .overload import handler_started
from .servicers import Handler

log = logging.getLogger("microposts.call")

REQUEST_ID_HEADER = "x-request-id"
AUTHORIZATION_HEADER = "authorization"

Context = grpc.aio.ServicerContext[bytes, bytes]
Metadata = Sequence[tuple[str, Any]]


@dataclass(frozen=True, slots=True)
class DeadlinePolicy:
    """How the server treats callers' deadlines (see README, "Deadlines").

    ``min_deadline``: per-method minimum time a call must have left on arrival
    to be worth starting (``"*"`` is the default for methods not named).
    ``max_deadline``: the most any call may take, and what a call that sent
    no deadline gets.
    """

    max_deadline: float = deadlines.DEFAULT_MAX_DEADLINE
    min_deadline: Mapping[str, float] = field(
        default_factory=lambda: {"*": deadlines.DEFAULT_MIN_DEADLINE}
    )

    def minimum(self, method: str) -> float:
        """The least time a call of ``method`` must have left on arrival."""
        default = self.min_deadline.get("*", deadlines.DEFAULT_MIN_DEADLINE)
        return self.min_deadline.get(method, default)


class _RequestIds:
    """Cheap unique ids for calls that bring no x-request-id: process prefix + counter."""

    def __init__(self) -> None:
        self._prefix = os.urandom(4).hex()
        self._count = itertools.count(1)

    def new(self) -> str:
        return f"{self._prefix}-{next(self._count)}"


def budget_of(context: Context, cap: float, now: float) -> deadlines.Budget:
    """Step 1: the call's budget, from the deadline its caller sent, capped by ``cap``.

    gRPC Python reports "no deadline" as ``None`` on grpc.aio and as a huge
    number on sync servers (grpc/grpc#26236); both read as "none sent".
    """
    left = context.time_remaining()
    if left is None or left > NO_DEADLINE_ABOVE:
        return deadlines.Budget(now, now + cap, None)
    return deadlines.Budget(now, now + (left if left < cap else cap), left)


def request_id_of(metadata: Metadata | None, ids: _RequestIds) -> str:
    """Step 2: the caller's ``x-request-id`` (at most 100 characters), or a new one."""
    for key, value in metadata or ():
        if key == REQUEST_ID_HEADER:
            request_id = str(value)[:100]
            if request_id:
                return request_id
            break
    return ids.new()


def admit(budget: deadlines.Budget, method: str, minimum: float, metrics: Metrics) -> None:
    """Step 3: raises ``DEADLINE_EXCEEDED`` if too little time is left to start the call."""
    sent = budget.sent
    if sent is not None and sent < minimum:
        metrics.reject(method)
        raise domain.DeadlineExceeded(
            f"deadline exceeded before any work: the call arrived with "
            f"{sent * 1000:.1f} ms left and {method} needs at least {minimum * 1000:.1f} ms",
            "admission",
        )


async def authenticate(context: Context, authenticator: JwtAuthenticator) -> domain.Principal:
    """Step 4: the caller the ``authorization`` metadata proves; raises ``Unauthenticated``."""
    header = None
    for key, value in context.invocation_metadata() or ():
        if key == AUTHORIZATION_HEADER:
            header = str(value)
            break
    return await authenticator.authenticate(header)


def certificate_subject(context: Context) -> str | None:
    """The subject of the client's certificate (mTLS), e.g. ``CN=svc,O=Example``; None if none."""
    properties = context.auth_context()
    for key in ("x509_subject", "x509_common_name"):
        for value in properties.get(key, ()):
            return value.decode("utf-8", "replace")
    return None


async def run(
    handler: Handler, request: Message, caller: domain.Principal, budget: deadlines.Budget
) -> Message:
    """Step 6: the handler, with the budget published to the store and the server's cap held."""
    deadlines.CURRENT.set(budget)  # each call runs in its own task: no reset needed
    if budget.capped:
        async with asyncio.timeout(budget.deadline - time.monotonic()):
            return await handler(request, caller)
    return await handler(request, caller)


def failure_of(
    exc: Exception,
    budget: deadlines.Budget,
    method: str,
    request_id: str,
    store_failed: Callable[[domain.StoreFailed], None] | None = None,
) -> Failure:
    """Step 7: the status an exception out of steps 3 to 6 becomes.

    A store failure that lasts (``StoreFailed``) is also reported to
    ``store_failed`` (health and the error log, once per episode).
    """
    if isinstance(exc, domain.Unavailable):
        log.warning(
            "store unavailable",
            extra={"fields": {"method": method, "request_id": request_id, "error": exc.message}},
        )
    if isinstance(exc, domain.DomainError):
        if store_failed is not None and isinstance(exc, domain.StoreFailed):
            store_failed(exc)
        return failure_for(exc, request_id)
    if isinstance(exc, TimeoutError):  # asyncio.timeout: the server's cap ran out
        return failure_for(budget.exceeded(f"{budget.phase} (server cap)"))
    log.exception(
        "unexpected error",
        exc_info=exc,
        extra={"fields": {"method": method, "request_id": request_id}},
    )
    return internal(request_id)


@dataclass(frozen=True, slots=True)
class Pipeline:
    """What every method's pipeline shares: policies, sinks, and the optional steps.

    ``authenticator``: ``--auth jwt`` is on; ``client_certificates``: mTLS is,
    and the log names callers by their certificate when no token names them;
    ``store_failed``: told of a store failure that lasts (health follows it);
    ``tracer``: an OpenTelemetry tracer when tracing is configured (one SERVER
    span per call), ``None`` when it is off (no per-call cost at all).
    """

    policy: DeadlinePolicy
    metrics: Metrics
    call_log: CallLog
    authenticator: JwtAuthenticator | None = None
    client_certificates: bool = False
    store_failed: Callable[[domain.StoreFailed], None] | None = None
    tracer: Any = None
    ids: _RequestIds = field(default_factory=_RequestIds)

    def record(self, call: _Call, code: str, who: str | None, peer: str) -> None:
        """Step 8: metrics, the call's log line, and its span's end."""
        now = time.monotonic()
        took = now - call.start
        budget = call.budget
        self.metrics.observe(call.method.name, code, took)
        if self.call_log.enabled:
            left = budget.deadline - now
            self.call_log.call(
                call.method.path, code, took, call.request_id, peer, budget, left, who
            )
        if call.span is not None:
            end_server_span(call.span, _STATUS[code], trace_attributes(budget, now))


@dataclass(slots=True)
class _Call:
    """One call on its way through the pipeline."""

    method: MethodInfo
    start: float
    budget: deadlines.Budget
    request_id: str
    span: Any


_STATUS = {code.name: code.value[0] for code in grpc.StatusCode}


def trace_attributes(budget: deadlines.Budget, now: float) -> dict[str, Any]:
    """The span attributes of a call's budget: what the caller sent, what was left, store time."""
    attributes: dict[str, Any] = {
        "microposts.left_ms": round((budget.deadline - now) * 1000, 1),
        "microposts.store_ms": round(budget.store_seconds * 1000, 3),
        "microposts.store_calls": budget.store_calls,
    }
    if budget.sent is not None:
        attributes["microposts.deadline_ms"] = round(budget.sent * 1000, 1)
    return attributes


def build_handler(
    method: MethodInfo, handler: Handler, pipeline: Pipeline
) -> grpc.RpcMethodHandler[bytes, bytes]:
    """Wraps one servicer method in the whole pipeline; called once per method."""
    name = method.name
    path = method.path
    request_type = method.request_type
    minimum = pipeline.policy.minimum(name)
    cap = pipeline.policy.max_deadline
    metrics = pipeline.metrics
    authenticator = pipeline.authenticator
    certificates = pipeline.client_certificates
    tracer = pipeline.tracer
    monotonic = time.monotonic

    async def handle(raw: bytes, context: Context) -> bytes:
        handler_started()
        start = monotonic()
        metadata: Any = context.invocation_metadata()  # pairs; grpc-stubs types it otherwise
        span = None if tracer is None else start_server_span(tracer, path, metadata)
        budget = budget_of(context, cap, start)
        call = _Call(method, start, budget, request_id_of(metadata, pipeline.ids), span)
        code = "OK"
        caller = domain.UNRESTRICTED
        who = certificate_subject(context) if certificates else None
        try:
            admit(call.budget, name, minimum, metrics)
            if authenticator is not None:
                caller = await authenticate(context, authenticator)
                who = caller.username
            response = await run(handler, decode(request_type, raw), caller, call.budget)
            return response.SerializeToString()
        except asyncio.CancelledError:
            code = "DEADLINE_EXCEEDED" if call.budget.expired() else "CANCELLED"
            raise
        except Exception as exc:
            failure = failure_of(exc, call.budget, name, call.request_id, pipeline.store_failed)
            code = failure.code.name
        finally:
            pipeline.record(call, code, who, context.peer())
        await context.abort(failure.code, failure.message, trailing_metadata=failure.trailers())
        raise AssertionError("abort returned")  # pragma: no cover

    return grpc.unary_unary_rpc_method_handler(handle)


def add_services(
    server: grpc.aio.Server, handlers: list[tuple[MethodInfo, Handler]], pipeline: Pipeline
) -> None:
    """Registers every method, each wrapped once in the pipeline.

    Each handler is also wrapped, once, by ``DeadlineInterceptor.wrap`` so that
    calls a handler makes through ``microposts_client`` inherit the caller's
    deadline; installed as a grpc.aio interceptor instead, the same wrapper
    would cost ~30 us a call in grpc.aio's interceptor dispatch.
    """
    propagate = DeadlineInterceptor()
    by_service: dict[str, dict[str, grpc.RpcMethodHandler[bytes, bytes]]] = {}
    for method, handler in handlers:
        wrapped = propagate.wrap(build_handler(method, handler, pipeline))
        by_service.setdefault(method.service, {})[method.name] = wrapped
    for service, methods in by_service.items():
        server.add_registered_method_handlers(service, methods)  # type: ignore[attr-defined]
