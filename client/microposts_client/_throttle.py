"""Sending less when the server sheds load: adaptive throttling and a retry budget.

Both are per client (one channel, all its replicas) and on by default.

**Adaptive throttling** (Google's SRE book, "Handling Overload"): the client
counts, over the last ``Throttle.window`` seconds, the calls it wanted to
make (``requests``) and the ones the server accepted (``accepts``: any
answer but an overload rejection). It then fails a new call locally, without
sending it, with probability ``max(0, (requests - k * accepts) / (requests + 1))``.
While the server accepts everything that is 0; once it rejects more than
``1 - 1/k`` of the calls (half, with ``k = 2``), the client drops the excess
itself, so a server shedding load is not buried in calls it would reject
anyway, and its callers learn at once instead of waiting for a network round
trip. Calls failed locally count as requests, so the probability falls again
as soon as the server accepts.

**The retry budget** (gRFC A6's retry throttling): a token bucket of
``RetryBudget.max_tokens``; each attempt that fails with a status the client
retries (``UNAVAILABLE``, an overload ``RESOURCE_EXHAUSTED``) takes a token
away, each success adds ``token_ratio``. Below half the bucket, failed calls
are not retried: retries cannot multiply the load of an outage or an
overload, however many callers there are.

What counts, for both, is what servers answered (``verdict``): a
``RESOURCE_EXHAUSTED``, or an ``UNAVAILABLE`` that a server sent (it carries
``google.rpc`` details: the store is down, the replica is draining) is a
rejection; any other answer is an accept. An ``UNAVAILABLE`` with no details
came from no server (no connection could be made, or it broke), and one
saying the replica is draining for shutdown was no judgement on load: neither
counts, so a client riding out a restart keeps retrying until its deadline
instead of locking itself out for the throttling window.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

__all__ = ["DEFAULT_THROTTLE", "RetryBudget", "Throttle"]

log = logging.getLogger("microposts_client")

ACCEPTED, REJECTED, UNANSWERED = "accepted", "rejected", "unanswered"


def verdict(code: grpc.StatusCode, from_server: bool, reason: str | None = None) -> str:
    """How an attempt counts: ``ACCEPTED``, ``REJECTED`` by a server, or ``UNANSWERED``.

    ``from_server``: the failure carried ``google.rpc`` details, which only a
    server attaches. ``reason``: their ``ErrorInfo.reason``; a replica that
    is draining for shutdown (``DRAINING``) says nothing about load.
    """
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        return REJECTED
    if code is grpc.StatusCode.UNAVAILABLE:
        return REJECTED if from_server and reason != "DRAINING" else UNANSWERED
    return ACCEPTED


@dataclass(frozen=True, slots=True)
class Throttle:
    """Adaptive throttling's settings; immutable. ``throttle=None`` turns it off."""

    k: float = 2.0
    """Accept-ratio multiplier: the client starts dropping once the server rejects more
    than ``1 - 1/k`` of its calls; lower drops sooner."""
    window: float = 60.0
    """Seconds of history the counts cover."""
    min_requests: int = 20
    """Nothing is dropped until the window holds this many answered calls: two rejections
    out of three calls say little about a server."""

    def __post_init__(self) -> None:
        if self.k < 1 or self.window <= 0 or self.min_requests < 0:
            raise ValueError("Throttle needs k >= 1, window > 0 and min_requests >= 0")


DEFAULT_THROTTLE = Throttle()
"""k = 2 over the last minute, from 20 answered calls on."""


@dataclass(frozen=True, slots=True)
class RetryBudget:
    """The retry budget's settings (gRFC A6): a bucket of tokens; immutable.

    ``Retry(budget=None)`` retries without a budget.
    """

    max_tokens: float = 10.0
    """The bucket's size; retries stop while it holds half of this or less."""
    token_ratio: float = 0.1
    """Tokens a successful call puts back."""

    def __post_init__(self) -> None:
        if self.max_tokens <= 0 or self.token_ratio <= 0:
            raise ValueError("RetryBudget needs max_tokens > 0 and token_ratio > 0")


class AdaptiveThrottle:
    """The live counts of one client's calls (see the module docstring)."""

    BUCKETS = 10

    def __init__(
        self,
        settings: Throttle,
        clock: Callable[[], float] = time.monotonic,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.k = settings.k
        self.min_requests = settings.min_requests
        self.span = settings.window / self.BUCKETS
        self.clock = clock
        self.draw = draw
        self.requests = [0] * self.BUCKETS
        self.accepts = [0] * self.BUCKETS
        self.total_requests = 0  # sum(self.requests), kept as the buckets change
        self.total_accepts = 0  # sum(self.accepts)
        self.epoch = int(clock() / self.span)
        self.dropped = 0
        """Calls this client failed locally, since it was created."""

    def _advance(self) -> int:
        """The current bucket's index, after zeroing buckets that fell out of the window."""
        epoch = int(self.clock() / self.span)
        if epoch != self.epoch:
            for e in range(max(self.epoch + 1, epoch - self.BUCKETS + 1), epoch + 1):
                bucket = e % self.BUCKETS
                self.total_requests -= self.requests[bucket]
                self.total_accepts -= self.accepts[bucket]
                self.requests[bucket] = 0
                self.accepts[bucket] = 0
            self.epoch = epoch
        return epoch % self.BUCKETS

    def rejection_probability(self) -> float:
        """The probability that the next call is failed locally."""
        self._advance()
        requests = self.total_requests
        if requests < self.min_requests:
            return 0.0
        return max(0.0, (requests - self.k * self.total_accepts) / (requests + 1))

    def allow(self) -> bool:
        """Whether to send the next call; one dropped here counts as a request."""
        self._advance()
        if self.total_requests <= self.k * self.total_accepts:
            return True  # nothing to drop: the usual case, and on every call
        p = self.rejection_probability()
        if p > 0 and self.draw() < p:
            self.requests[self.epoch % self.BUCKETS] += 1
            self.total_requests += 1
            self.dropped += 1
            return False
        return True

    def accepted(self) -> None:
        """A call sent after ``allow()`` was answered OK (``record(ACCEPTED)``, on every call).

        Counted in the bucket ``allow()`` last moved to rather than looking at
        the clock again: a call that ends in the next bucket counts in the one
        it began in, which the window does not notice.
        """
        bucket = self.epoch % self.BUCKETS
        self.requests[bucket] += 1
        self.accepts[bucket] += 1
        self.total_requests += 1
        self.total_accepts += 1

    def record(self, outcome: str) -> None:
        """How a call sent after ``allow()`` ended (a ``verdict``); unanswered ones do not count."""
        if outcome is UNANSWERED:
            return
        bucket = self._advance()
        self.requests[bucket] += 1
        self.total_requests += 1
        if outcome is ACCEPTED:
            self.accepts[bucket] += 1
            self.total_accepts += 1


class RetryTokens:
    """The live bucket of one client's retry budget."""

    def __init__(self, settings: RetryBudget) -> None:
        self.max_tokens = settings.max_tokens
        self.ratio = settings.token_ratio
        self.tokens = settings.max_tokens
        self.refused = 0
        """Retries this client did not make for want of tokens, since it was created."""

    def accepted(self) -> None:
        """An attempt was answered OK: a fraction of a token back (``record(ACCEPTED, True)``)."""
        if self.tokens < self.max_tokens:  # full, the usual case: nothing to do
            tokens = self.tokens + self.ratio
            self.tokens = tokens if tokens < self.max_tokens else self.max_tokens

    def record(self, outcome: str, ok: bool) -> None:
        """One attempt's ``verdict``: a rejection takes a token, an OK puts a fraction back."""
        if outcome is REJECTED:
            self.tokens = max(0.0, self.tokens - 1)
        elif ok:
            self.tokens = min(self.max_tokens, self.tokens + self.ratio)

    def allow_retry(self) -> bool:
        """Whether the budget allows one more retry now."""
        if self.tokens > self.max_tokens / 2:
            return True
        self.refused += 1
        return False
