"""The per-call time budget: one place that bounds every phase of a call.

The RPC edge (``rpc.py``) opens a ``Budget`` for each call from the time the
caller has left (capped by the server's own maximum) and installs it in a
context variable. Everything below reads it from there: the store bounds its
statements and transactions by it, and records how long it spent, so that a
``DEADLINE_EXCEEDED`` can say where the time went. Handlers added later get
all of this without a line of their own.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass, field

from .domain import DeadlineExceeded

DEFAULT_MAX_DEADLINE = 30.0
DEFAULT_MIN_DEADLINE = 0.005


@dataclass(slots=True)
class Budget:
    """The time one call may use: an absolute point on the monotonic clock."""

    start: float
    deadline: float
    sent: float | None  # seconds the caller had left on arrival; None: sent none
    store_seconds: float = 0.0
    store_calls: int = 0
    store_since: float = 0.0  # when the open store transaction began; 0: none open
    phase: str = field(default="handler")  # where the call is: "handler" or "store"

    @property
    def capped(self) -> bool:
        """The server's cap ends the call before the caller's deadline would.

        grpc.aio enforces only the caller's deadline; the pipeline holds the cap.
        """
        return self.sent is None or self.start + self.sent > self.deadline

    def remaining(self) -> float:
        """Seconds left, never below zero."""
        return max(0.0, self.deadline - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.deadline

    def enter_store(self) -> None:
        """A store transaction begins: the time from now on is the store's."""
        self.store_since = time.monotonic()
        self.phase = "store"

    def leave_store(self, failed: bool) -> None:
        """The transaction ended; a failed one leaves the phase at "store"."""
        self.store_seconds += time.monotonic() - self.store_since
        self.store_since = 0.0
        self.store_calls += 1
        if not failed:
            self.phase = "handler"

    def exceeded(self, phase: str) -> DeadlineExceeded:
        """The error to raise when the budget ran out in ``phase``."""
        now = time.monotonic()
        spent = (now - self.start) * 1000
        in_flight = now - self.store_since if self.store_since else 0.0
        store = (self.store_seconds + in_flight) * 1000
        sent = "no deadline (server cap)" if self.sent is None else f"{self.sent * 1000:.1f} ms"
        return DeadlineExceeded(
            f"deadline exceeded in {phase} after {spent:.1f} ms "
            f"(caller sent {sent}; store {store:.1f} ms, "
            f"handler {max(0.0, spent - store):.1f} ms)",
            phase,
        )


CURRENT: ContextVar[Budget | None] = ContextVar("microposts_budget", default=None)
