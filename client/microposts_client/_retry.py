"""Which failed calls are retried, and after how long: one place for both clients.

A call is retried only if all of these hold:

- it is *safe*: a read; a create (the client always sends a ``request_id``, so
  the server returns the first result instead of creating twice); an update
  or delete that carries an ``etag`` (a replay of one that did apply meets a
  changed etag and fails with ``ABORTED`` instead of applying twice);
- it failed with ``UNAVAILABLE``, or with ``RESOURCE_EXHAUSTED`` *and* the
  server asked for a retry (a ``google.rpc.RetryInfo`` detail or a
  ``grpc-retry-pushback-ms`` trailer);
- fewer than :attr:`Retry.max_attempts` attempts were made;
- the pause fits in what is left of the deadline: the loop gives up *before*
  sleeping past it, raising the last error.

The pause is the server's ``retry_delay`` when it gave one, else exponential
backoff with full jitter (a uniform draw between 0 and
``min(max_backoff, initial_backoff * multiplier ** (attempt - 1))``).

Why a loop in the client and not the channel's service-config
``retryPolicy``: gRPC's policy is per method, so it cannot retry an
``UpdateMicropost`` that carries an etag while leaving a blind one alone; it
cannot read a ``RetryInfo`` detail, so it would either retry every
``RESOURCE_EXHAUSTED`` or none; and it caps attempts at five regardless of the
budget. Using it for the unconditional methods and a loop for the rest would
split one decision in two places and multiply attempts where both apply. The
loop costs nothing on a call that succeeds. gRPC's *transparent* retries
(a request that never left the client) stay on: they are always safe.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import grpc
from google.protobuf.message import Message

from ._exceptions import ResourceExhausted, ServiceError, Unavailable, map_rpc_error
from ._methods import MethodInfo, retry_safe

__all__ = ["DEFAULT_RETRY", "Retry"]


@dataclass(frozen=True, slots=True)
class Retry:
    """How often and how patiently to retry a safe call; immutable.

    Change one field with :func:`dataclasses.replace`, e.g.
    ``replace(DEFAULT_RETRY, max_attempts=10)``. Pass ``retry=None`` to a client
    to turn retries off.
    """

    max_attempts: int = 5
    """Attempts in all, the first one included."""
    initial_backoff: float = 0.1
    """Upper bound, in seconds, of the first pause."""
    max_backoff: float = 2.0
    """Upper bound, in seconds, of any pause chosen by backoff."""
    multiplier: float = 2.0
    """Growth of the bound from one pause to the next."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ValueError("backoffs must be >= 0 and multiplier >= 1")


DEFAULT_RETRY = Retry()
"""Up to 5 attempts, pauses drawn from [0, 0.1 s], [0, 0.2 s], [0, 0.4 s], [0, 0.8 s]."""


def pause_before_retry(
    error: ServiceError, retry: Retry, attempts: int, end: float | None
) -> float | None:
    """Seconds to wait before attempt ``attempts + 1`` of a safe call, or ``None`` to give up."""
    if attempts >= retry.max_attempts:
        return None
    if isinstance(error, Unavailable):
        pause = error.retry_delay
    elif isinstance(error, ResourceExhausted):
        pause = error.retry_delay
        if pause is None:  # not asked to retry: a quota that will not lift by itself
            return None
    else:
        return None
    if pause is None:
        bound = min(retry.max_backoff, retry.initial_backoff * retry.multiplier ** (attempts - 1))
        pause = random.uniform(0.0, bound)
    if end is not None and time.monotonic() + pause >= end:
        return None
    return pause


def pause_or_raise(
    exc: grpc.RpcError,
    method: MethodInfo,
    request: Message,
    retry: Retry | None,
    attempts: int,
    end: float | None,
) -> float:
    """Seconds to wait before retrying a call that failed with ``exc``, or raise.

    Raises the :class:`ServiceError` for ``exc`` (``from exc``) when the call
    is not retried: retries are off, the request is not safe to repeat
    (:func:`~microposts_client._methods.retry_safe`), or
    :func:`pause_before_retry` gives up. One type out, so each client's
    attempt loop is a sleep around it.
    """
    error = map_rpc_error(exc)
    if retry is not None and retry_safe(method, request):
        pause = pause_before_retry(error, retry, attempts, end)
        if pause is not None:
            return pause
    raise error from exc
