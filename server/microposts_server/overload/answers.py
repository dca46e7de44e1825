"""What a call turned away by admission is answered: status, message and trailers."""

from __future__ import annotations

import functools
from typing import Final

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2

from ..errors import DOMAIN, Failure
from .admission import Reason, Rejection

PUSHBACK_KEY: Final = "grpc-retry-pushback-ms"


@functools.lru_cache(maxsize=512)
def _busy_answer(pushback_ms: int) -> tuple[str, tuple[tuple[str, str | bytes], ...]]:
    """Message and trailers of a busy rejection, by pushback: built once each, then reused."""
    message = f"the server is at capacity; retry after {pushback_ms} ms (or on another replica)"
    delay = duration_pb2.Duration()
    delay.FromMilliseconds(pushback_ms)
    details = (
        error_details_pb2.RetryInfo(retry_delay=delay),
        error_details_pb2.ErrorInfo(reason="OVERLOADED", domain=DOMAIN),
    )
    status = Failure(grpc.StatusCode.RESOURCE_EXHAUSTED, message, details).trailers()
    return message, ((PUSHBACK_KEY, str(pushback_ms)), *status)


def answer(
    rejection: Rejection,
) -> tuple[grpc.StatusCode, str, tuple[tuple[str, str | bytes], ...]]:
    """The status, message and trailers a rejection is sent as."""
    reason = rejection.reason
    if reason in (Reason.BUSY, Reason.QUEUE_TIMEOUT):
        # In 10 ms steps, so that few distinct answers are ever built.
        message, trailers = _busy_answer(max(10, round(rejection.pushback * 100) * 10))
        return grpc.StatusCode.RESOURCE_EXHAUSTED, message, trailers
    if reason is Reason.DRAINING:
        info = error_details_pb2.ErrorInfo(reason="DRAINING", domain=DOMAIN)
        code = grpc.StatusCode.UNAVAILABLE
    else:
        info = error_details_pb2.ErrorInfo(
            reason="DEADLINE_EXCEEDED", domain=DOMAIN, metadata={"phase": "admission"}
        )
        code = grpc.StatusCode.DEADLINE_EXCEEDED
    return code, rejection.message, Failure(code, rejection.message, (info,)).trailers()
