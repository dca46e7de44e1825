"""Which failed calls are retried, and after how long: one place for both clients.

A call is retried only if all of these hold:

- it is *safe*: a read; a create (the client always sends a ``request_id``, so
  the server returns the first result instead of creating twice); an update
  or delete that carries an ``etag`` (a replay of one that did apply meets a
  changed etag and fails with ``ABORTED`` instead of applying twice);
- it failed with ``UNAVAILABLE``, or with ``RESOURCE_EXHAUSTED`` *and* the
  server asked for a retry (a ``google.rpc.RetryInfo`` detail or a
  ``grpc-retry-pushback-ms`` trailer);
- the server did not say "do not retry": a negative or unparsable
  ``grpc-retry-pushback-ms`` (gRFC A6);
- the retry budget allows it (``RetryBudget``, ``_throttle.py``): retries
  stop while servers reject most recent attempts, whoever made them;
- another attempt still fits before the deadline: the pause plus
  :attr:`Retry.min_attempt` must end before it. There is no fixed count
  (:attr:`Retry.max_attempts` sets one): a call keeps trying through a server
  restart for as long as its caller's budget lasts. That takes the channel's
  part too: gRPC's own reconnect backoff (1 s, then 1.6 s...) would keep a
  restarted server out of reach for seconds, failing every attempt at once;
  the client's channel options (``_config.DEFAULT_CHANNEL_OPTIONS``) reconnect
  at most 0.5 s apart, so a server back within a read's budget is reached in it.

The pause is the server's ``retry_delay`` when it gave one (honoured exactly:
if it does not fit the deadline, the call gives up), else exponential backoff
with full jitter (a uniform draw between 0 and ``min(max_backoff,
initial_backoff * multiplier ** (attempt - 1))``), shortened to what fits. A
failure that no server answered (no connection could be made, or it broke;
no ``google.rpc`` details) draws from at most 0.5 s (``RECONNECT_MAX_BACKOFF``,
the channel's reconnect pace): such an attempt loads no server, and a longer
pause would only notice a reconnected server later, down to the budget's
last 20 ms.

Each retry is logged at debug level on the ``microposts_client`` logger:
attempt, method, status, pause and time left, never the request or its
metadata.

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

import logging
import random
import time
from dataclasses import dataclass, field

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2

from ._config import RECONNECT_MAX_BACKOFF
from ._exceptions import (
    Cancelled,
    DeadlineExceeded,
    ResourceExhausted,
    ServiceError,
    Unavailable,
    map_rpc_error,
)
from ._methods import MethodInfo, retry_safe
from ._throttle import AdaptiveThrottle, RetryBudget, RetryTokens, Throttle, verdict

__all__ = ["DEFAULT_RETRY", "Retry"]

log = logging.getLogger("microposts_client")

NEARLY_PAST = 0.02
"""A call reset by the server this close to its deadline (seconds) ran out of time."""


@dataclass(frozen=True, slots=True)
class Retry:
    """How patiently to retry a safe call; immutable.

    Change one field with :func:`dataclasses.replace`, e.g.
    ``replace(DEFAULT_RETRY, max_backoff=1.0)``. Pass ``retry=None`` to a client
    to turn retries off.
    """

    max_attempts: int | None = None
    """Attempts in all, the first one included; ``None``: as many as the deadline and the
    retry budget allow."""
    initial_backoff: float = 0.1
    """Upper bound, in seconds, of the first pause."""
    max_backoff: float = 2.0
    """Upper bound, in seconds, of any pause chosen by backoff (0.5 s at most after a
    failure that no server answered)."""
    multiplier: float = 2.0
    """Growth of the bound from one pause to the next."""
    min_attempt: float = 0.02
    """Seconds an attempt needs at least: a retry that would leave less is not made."""
    budget: RetryBudget | None = field(default_factory=RetryBudget)
    """The client's retry budget (shared by all its calls); ``None``: none."""

    def __post_init__(self) -> None:
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1 (or None)")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ValueError("backoffs must be >= 0 and multiplier >= 1")
        if self.min_attempt < 0:
            raise ValueError("min_attempt must be >= 0")


DEFAULT_RETRY = Retry()
"""Pauses drawn from [0, 0.1 s], [0, 0.2 s], [0, 0.4 s]... up to 2 s (0.5 s when no
server answered), while the deadline leaves room and the budget (10 tokens, 0.1 back per
success) lasts."""


def pause_before_retry(
    error: ServiceError, retry: Retry, attempts: int, end: float | None
) -> float | None:
    """Seconds to wait before attempt ``attempts + 1`` of a safe call, or ``None`` to give up."""
    if retry.max_attempts is not None and attempts >= retry.max_attempts:
        return None
    if error.retry_refused:
        return None
    pause = error.retry_delay
    if isinstance(error, ResourceExhausted):
        if pause is None:  # not asked to retry: a quota that will not lift by itself
            return None
    elif not isinstance(error, Unavailable):
        return None
    room = None if end is None else end - time.monotonic() - retry.min_attempt
    if pause is not None:  # the server's own delay: wait that long or not at all
        return pause if room is None or pause <= room else None
    if room is not None and room <= 0:
        return None
    bound = min(retry.max_backoff, retry.initial_backoff * retry.multiplier ** (attempts - 1))
    if not error.details and bound > RECONNECT_MAX_BACKOFF:
        # No server answered (no connection, or it broke): the attempt cost no
        # server anything, and the channel reconnects on its own schedule (at
        # most RECONNECT_MAX_BACKOFF apart). A longer pause would only notice
        # a server that is back later, at worst in the budget's last moment.
        bound = RECONNECT_MAX_BACKOFF
    pause = random.uniform(0.0, bound)
    return pause if room is None else min(pause, room)


class CallPolicy:
    """One client's retry and throttling state, consulted around each attempt of each call.

    The attempt loop of both clients is: ``before()``, the attempt, then
    ``succeeded()`` or ``failed()`` (a pause before the next attempt, or the
    error raised).
    """

    def __init__(self, target: str, retry: Retry | None, throttle: Throttle | None) -> None:
        self.target = target
        self.retry = retry
        self.throttle = None if throttle is None else AdaptiveThrottle(throttle)
        budget = None if retry is None else retry.budget
        self.tokens = None if budget is None else RetryTokens(budget)
        self.retries = 0
        self.closed = False  # the client was closed: CANCELLED is then the caller's doing

    def before(self, method: MethodInfo, attempts: int) -> None:
        """Raises ``ResourceExhausted`` at once, sending nothing, when throttling drops the call."""
        throttle = self.throttle
        if throttle is None or throttle.allow():
            return
        p = throttle.rejection_probability()
        log.debug(
            "throttled locally: %s attempt %d not sent (drop probability %.2f)",
            method.name,
            attempts,
            p,
        )
        raise ResourceExhausted(
            f"{method.name} not sent: the server rejected most recent calls, so this client "
            f"drops {p:.0%} of its calls itself (adaptive throttling; target {self.target})",
            details=(error_details_pb2.ErrorInfo(reason="CLIENT_THROTTLED", domain="microposts"),),
        )

    def succeeded(self) -> None:
        """An attempt returned OK."""
        if self.throttle is not None:
            self.throttle.accepted()
        if self.tokens is not None:
            self.tokens.accepted()

    def failed(
        self,
        exc: grpc.RpcError,
        method: MethodInfo,
        request: Message,
        attempts: int,
        end: float | None,
    ) -> float:
        """Seconds to wait before retrying a call that failed with ``exc``, or raise.

        Raises the :class:`ServiceError` for ``exc`` (``from exc``) when the
        call is not retried: retries are off, the request is not safe to
        repeat (:func:`~microposts_client._methods.retry_safe`),
        :func:`pause_before_retry` gives up, or the retry budget is spent.
        """
        error = self._error(exc, end)
        outcome = verdict(error.code, bool(error.details), error.reason)
        if self.throttle is not None:
            self.throttle.record(outcome)
        if self.tokens is not None:
            self.tokens.record(outcome, ok=False)
        retry = self.retry
        if retry is not None and retry_safe(method, request):
            pause = pause_before_retry(error, retry, attempts, end)
            if pause is not None and (self.tokens is None or self.tokens.allow_retry()):
                self.retries += 1
                if log.isEnabledFor(logging.DEBUG):
                    left = "no deadline" if end is None else f"{end - time.monotonic():.3f} s left"
                    log.debug(
                        "retrying %s: attempt %d failed %s; pause %.3f s, %s",
                        method.name,
                        attempts,
                        error.code.name,
                        pause,
                        left,
                    )
                return pause
            if pause is not None:
                log.debug("not retrying %s: the retry budget is spent", method.name)
        if isinstance(error, Unavailable):
            error.context = f"target {self.target}; {_attempts(attempts)}"
        raise error from exc

    def _error(self, exc: grpc.RpcError, end: float | None) -> ServiceError:
        """``exc`` as a ServiceError; a CANCELLED the caller did not cause becomes what it was."""
        error = map_rpc_error(exc)
        if not isinstance(error, Cancelled) or self.closed:
            return error
        # The caller cancelled nothing: the server reset the stream. At the
        # deadline that is the deadline; before it, the server gave up on
        # the call (it was shutting down), which is worth retrying elsewhere.
        if end is not None and end - time.monotonic() <= NEARLY_PAST:
            return DeadlineExceeded("Deadline Exceeded", details=error.details)
        return Unavailable(
            f"the server reset the call before answering ({error.message})", details=error.details
        )


def _attempts(n: int) -> str:
    return "1 attempt" if n == 1 else f"{n} attempts"
