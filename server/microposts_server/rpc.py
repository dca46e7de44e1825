"""The per-call pipeline, built once per method at start-up.

For every call, in one flat coroutine (no interceptor chain to walk):

1. budget: the time the caller has left (``context.time_remaining()``; a
   caller that sent no deadline gets the server's cap, ``--max-deadline``)
   becomes a ``deadlines.Budget`` in a context variable that the store reads;
2. admission: a call arriving with less than the method's minimum left is
   rejected with ``DEADLINE_EXCEEDED`` before any work (and counted);
3. decoding: raw bytes -> request message, a failure is ``INVALID_ARGUMENT``
   naming the field (grpc.aio would say ``UNKNOWN``);
4. the handler runs; where the server's cap is tighter than the caller's
   deadline it runs under ``asyncio.timeout`` so the cap holds even between
   store calls (the caller's own deadline is enforced by grpc.aio, which
   cancels the handler's task when it passes or the caller cancels);
5. errors: domain errors become their status with google.rpc details; an
   unexpected exception is logged with its traceback and becomes
   ``INTERNAL`` with only a request id on the wire;
6. one structured log line: method, code, duration, request id, peer, the
   deadline the caller sent, the time left at the end, store time and calls.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import grpc

from microposts_client import DeadlineInterceptor

from . import deadlines
from .decoding import decode
from .domain import DeadlineExceeded, DomainError
from .errors import Failure, failure_for, internal
from .logs import CallLog
from .metrics import Metrics
from .servicers import MethodSpec

log = logging.getLogger("microposts.call")

REQUEST_ID_HEADER = "x-request-id"


@dataclass(frozen=True, slots=True)
class DeadlinePolicy:
    """How the server treats callers' deadlines (see README, "Deadlines").

    ``min_left``: per-method minimum time a call must have left on arrival to
    be worth starting (``"*"`` is the default for methods not named).
    ``max_deadline``: the most any call may take, and what a call that sent
    no deadline gets.
    """

    max_deadline: float = deadlines.DEFAULT_MAX_DEADLINE
    min_left: Mapping[str, float] = field(
        default_factory=lambda: {"*": deadlines.DEFAULT_MIN_DEADLINE}
    )

    def minimum(self, method: str) -> float:
        return self.min_left.get(method, self.min_left.get("*", deadlines.DEFAULT_MIN_DEADLINE))


class _RequestIds:
    """Cheap unique ids for calls that bring no x-request-id: process prefix + counter."""

    def __init__(self) -> None:
        self._prefix = os.urandom(4).hex()
        self._count = itertools.count(1)

    def new(self) -> str:
        return f"{self._prefix}-{next(self._count)}"


def build_handler(
    spec: MethodSpec,
    policy: DeadlinePolicy,
    metrics: Metrics,
    ids: _RequestIds,
    call_log: CallLog,
) -> grpc.RpcMethodHandler[bytes, bytes]:
    """Wraps one servicer method in the whole pipeline; called once per method."""
    method = spec.name
    full_method = f"/{spec.service}/{spec.name}"
    request_type = spec.request_type
    handler = spec.handler
    min_left = policy.minimum(method)
    cap = policy.max_deadline
    current = deadlines.CURRENT
    monotonic = time.monotonic

    async def handle(raw: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        start = monotonic()
        left = context.time_remaining()
        if left is None or left > deadlines.NO_DEADLINE_SENTINEL:
            sent: float | None = None
            allowed = cap
        else:
            sent = left
            allowed = left if left < cap else cap
        budget = deadlines.Budget(start, start + allowed, sent)
        request_id = ""
        for key, value in context.invocation_metadata() or ():
            if key == REQUEST_ID_HEADER:
                request_id = str(value)[:100]
                break
        if not request_id:
            request_id = ids.new()
        failure: Failure | None = None
        code = "OK"
        try:
            if sent is not None and sent < min_left:
                metrics.reject(method)
                raise DeadlineExceeded(
                    f"deadline exceeded before any work: the call arrived with "
                    f"{sent * 1000:.1f} ms left and {method} needs at least "
                    f"{min_left * 1000:.1f} ms",
                    "admission",
                )
            request = decode(request_type, raw)
            current.set(budget)  # each call runs in its own task: no reset needed
            if sent is None or cap < sent:
                async with asyncio.timeout(allowed):
                    response = await handler(request)
            else:
                response = await handler(request)
            return response.SerializeToString()
        except DomainError as exc:
            failure = failure_for(exc)
        except TimeoutError:
            failure = failure_for(budget.exceeded(f"{budget.phase} (server cap)"))
        except asyncio.CancelledError:
            code = "DEADLINE_EXCEEDED" if budget.expired() else "CANCELLED"
            raise
        except Exception:
            log.exception(
                "unexpected error", extra={"fields": {"method": method, "request_id": request_id}}
            )
            failure = internal(request_id)
        finally:
            duration = monotonic() - start
            if failure is not None:
                code = failure.code.name
            metrics.observe(method, code, duration)
            if call_log.enabled:
                call_log.call(
                    full_method,
                    code,
                    duration,
                    request_id,
                    context.peer(),
                    sent,
                    budget.deadline - monotonic(),
                    budget.store_seconds,
                    budget.store_calls,
                )
        await context.abort(failure.code, failure.message, trailing_metadata=failure.trailers())
        raise AssertionError("abort returned")  # pragma: no cover

    return grpc.unary_unary_rpc_method_handler(handle)


def add_services(
    server: grpc.aio.Server,
    specs: list[MethodSpec],
    policy: DeadlinePolicy,
    metrics: Metrics,
    call_log: CallLog,
) -> None:
    """Registers every method, each wrapped once.

    Each handler is also wrapped, once, by ``DeadlineInterceptor.wrap`` so that
    calls a handler makes through ``microposts_client`` inherit the caller's
    deadline; installed as a grpc.aio interceptor instead, the same wrapper
    would cost ~30 us a call in grpc.aio's interceptor dispatch.
    """
    ids = _RequestIds()
    propagate = DeadlineInterceptor()
    by_service: dict[str, dict[str, grpc.RpcMethodHandler[bytes, bytes]]] = {}
    for spec in specs:
        by_service.setdefault(spec.service, {})[spec.name] = propagate.wrap(
            build_handler(spec, policy, metrics, ids, call_log)
        )
    for service, handlers in by_service.items():
        server.add_registered_method_handlers(service, handlers)  # type: ignore[attr-defined]
