"""Admission: for each call the server receives, run it, queue it, or turn it away.

Pure logic, no gRPC; ``gated.py`` feeds it the calls and carries out its
decisions. See the package's docstring for why it works this way.
"""

from __future__ import annotations

import enum
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final

from .limit import Gradient2

log = logging.getLogger("microposts.overload")

MAX_GAP: Final = 0.05
"""Seconds between completions beyond which a sample says nothing about the service rate
(calls that stall, not a queue that moves slowly) and is left out of the expected wait."""

BODY_GRACE: Final = 0.02
"""Seconds a dispatched call counts against the limit before its request body has arrived."""

QUIET_AFTER: Final = 5.0
"""Seconds without a call turned away before "shedding stopped" is logged."""


class Reason(enum.Enum):
    """Why a call was turned away (the ``reason`` label of the metric)."""

    BUSY = "busy"  # the wait it would have, or the queue, is too long
    QUEUE_TIMEOUT = "queue_timeout"  # it waited in the queue longer than the bound
    DEADLINE = "deadline"  # it cannot finish before its deadline even with no wait
    EXPIRED = "expired"  # its deadline had passed when it arrived or left the queue
    DRAINING = "draining"  # the server is shutting down


@dataclass(frozen=True, slots=True)
class Policy:
    """The knobs of admission (README, "Overload"); times in seconds."""

    max_concurrency: int = 200
    """Ceiling of the adaptive limit; a ceiling at or below 8 makes the limit fixed."""
    max_wait: float = 0.5
    """The longest a call may wait for a slot; one that would wait longer is turned away."""
    max_queue: int = 10_000
    """A hard bound on calls waiting, whatever the times say."""
    window: float = 0.1
    """Latency samples are averaged over this long before each limit update."""

    def limit(self) -> Gradient2:
        """The concurrency limit this policy starts with."""
        ceiling = self.max_concurrency
        return Gradient2(initial=min(20, ceiling), minimum=min(8, ceiling), maximum=ceiling)


class Waiting:
    """A call held by admission: the core's handle, its method, its times, where it is."""

    __slots__ = ("arrived", "counted", "deadline", "dispatched", "method", "running", "state")

    def __init__(self, state: Any, method: str, arrived: float, deadline: float) -> None:
        self.state = state
        self.method = method  # the full path, /package.Service/Method
        self.arrived = arrived  # monotonic
        self.deadline = deadline  # monotonic; math.inf when the caller sent none
        self.dispatched = 0.0  # when it was handed to grpc.aio; then when its handler started
        self.running = False  # its handler runs (its request body has arrived)
        self.counted = False  # it counts against the limit while its body is on its way


CURRENT: ContextVar[Waiting | None] = ContextVar("microposts_admitted_call", default=None)
"""The admitted call a handler task serves (tasks inherit it from the receive loop)."""


def handler_started() -> None:
    """The pipeline's first step: the call's request body arrived and its handler runs.

    Until then a dispatched call counts against the limit for ``BODY_GRACE``
    only: a client that never finishes its request body must not hold a slot.
    """
    call = CURRENT.get()
    if call is not None and _ADMISSION is not None:
        _ADMISSION.body_arrived(call)


_ADMISSION: Admission | None = None  # the one admission of this process (set by bind)


@dataclass(frozen=True, slots=True)
class Rejection:
    """What a turned-away call is answered: why, a message, and the wait to suggest."""

    reason: Reason
    message: str  # empty for BUSY and QUEUE_TIMEOUT: theirs says only when to retry
    pushback: float = 0.0  # seconds; sent with BUSY and QUEUE_TIMEOUT


DRAINING = Rejection(Reason.DRAINING, "the server is shutting down; retry on another replica")


class Stats:
    """What admission counts, for the metrics endpoint."""

    def __init__(self) -> None:
        self.rejected: Counter[Reason] = Counter()
        self.started = 0
        self.queued = 0

    def render(self, admission: Admission) -> list[str]:
        """Prometheus text lines: gauges and counters."""
        lines = [
            "# HELP microposts_in_flight Calls running in a handler now.",
            "# TYPE microposts_in_flight gauge",
            f"microposts_in_flight {admission.running}",
            "# HELP microposts_awaiting_body Admitted calls whose request body has not arrived.",
            "# TYPE microposts_awaiting_body gauge",
            f"microposts_awaiting_body {admission.dispatched - admission.running}",
            "# HELP microposts_queued Calls waiting for a slot now.",
            "# TYPE microposts_queued gauge",
            f"microposts_queued {len(admission.queue)}",
            "# HELP microposts_concurrency_limit The adaptive limit on calls running at once.",
            "# TYPE microposts_concurrency_limit gauge",
            f"microposts_concurrency_limit {admission.limit.value:.1f}",
            "# HELP microposts_started_total Calls admitted to a handler.",
            "# TYPE microposts_started_total counter",
            f"microposts_started_total {self.started}",
            "# HELP microposts_queued_total Calls that had to wait for a slot.",
            "# TYPE microposts_queued_total counter",
            f"microposts_queued_total {self.queued}",
            "# HELP microposts_overload_rejected_total Calls turned away before any work, "
            "by reason (busy, queue_timeout, deadline, expired, draining).",
            "# TYPE microposts_overload_rejected_total counter",
        ]
        for reason in Reason:
            count = self.rejected[reason]
            lines.append(f'microposts_overload_rejected_total{{reason="{reason.value}"}} {count}')
        return lines


class Admission:
    """Decides, for each call the server receives: run it, queue it, or turn it away.

    Pure logic, no gRPC: ``bind`` gives it a ``run`` (start the call's
    handler) and a ``reject`` (answer it at once); the server calls
    ``arrive`` for each call and ``finished`` when a handler is done.
    """

    def __init__(
        self, policy: Policy | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.policy = policy or Policy()
        self.limit = self.policy.limit()
        self.clock = clock
        self.running = 0  # handlers running
        self.dispatched = 0  # calls handed to grpc.aio and not finished (running or not)
        self.reading = 0  # dispatched calls still counted while their body is on its way
        self._bodies: deque[Waiting] = deque()  # dispatched, body not yet seen, oldest first
        self.queue: deque[Waiting] = deque()
        self.stats = Stats()
        self.draining = False
        self._idle: list[Callable[[], None]] = []
        self._run: Callable[[Waiting], None] = _unbound
        self._reject: Callable[[Waiting, Rejection], None] = _unbound
        self._wake: Callable[[float], None] | None = None
        self._service: dict[str, float] = {}  # method -> EWMA of its handler time
        self._gap = 0.0  # EWMA of the time between completions while calls wait
        self._last_done = 0.0
        self._window = [0.0, 0.0, 0.0]  # start, sum of latencies, count
        self._shedding_since = 0.0
        self._last_shed = 0.0
        self._shed_count = 0

    @property
    def in_flight(self) -> int:
        """Calls counted against the limit: handlers running, and bodies on their way."""
        bodies = self._bodies
        if bodies:  # stop counting calls whose body is overdue (a stalled client)
            cutoff = self.clock() - BODY_GRACE
            while bodies and (not bodies[0].counted or bodies[0].dispatched < cutoff):
                self._uncount(bodies.popleft())
        return self.running + self.reading

    def _uncount(self, call: Waiting) -> None:
        if call.counted:
            call.counted = False
            self.reading -= 1

    def body_arrived(self, call: Waiting) -> None:
        """The call's handler starts (``handler_started``): it runs until ``finished``."""
        self._uncount(call)
        call.running = True
        call.dispatched = self.clock()
        self.running += 1

    def bind(
        self,
        run: Callable[[Waiting], None],
        reject: Callable[[Waiting, Rejection], None],
        wake_at: Callable[[float], None] | None = None,
    ) -> None:
        """Wires the actions: start a handler, answer a call now, call ``sweep()`` at a time."""
        global _ADMISSION
        self._run, self._reject, self._wake = run, reject, wake_at
        _ADMISSION = self

    def service_time(self, method: str) -> float:
        """The usual time a handler of ``method`` takes (recent calls' average; 0: none yet)."""
        return self._service.get(method, 0.0)

    def expected_wait(self, position: int) -> float:
        """Seconds a call queued behind ``position`` others would wait, from recent completions."""
        gap = self._gap
        if gap == 0:  # none completed while calls waited yet: guess from service times
            times = self._service.values()
            gap = sum(times) / len(times) / max(1.0, self.limit.value) if times else 0.0
        return (position + 1) * gap

    # -- events --------------------------------------------------------

    def arrive(self, state: Any, method: str, left: float | None) -> None:
        """A call of ``method`` arrived with ``left`` seconds to its deadline (None: none sent)."""
        now = self.clock()
        call = Waiting(state, method, now, math.inf if left is None else now + left)
        if self.draining:
            self._turn_away(call, DRAINING)
        elif left is not None and left <= 0:
            self._turn_away(call, _expired(method))
        elif left is not None and left < (service := self.service_time(method)):
            message = (
                f"deadline too short: {_name(method)} usually takes {service * 1000:.1f} ms "
                f"and the call arrived with {left * 1000:.1f} ms left"
            )
            self._turn_away(call, Rejection(Reason.DEADLINE, message))
        else:
            if self.queue and self.in_flight < self.limit.value:
                self._dispatch(now)  # slots freed (a stalled body stopped counting)
            if not self.queue and self.in_flight < self.limit.value:
                self._start(call)
            else:
                self._enqueue(call, now, left)

    def finished(self, call: Waiting) -> None:
        """A dispatched call is done (answered, failed or cut off): free its slot, learn, go on."""
        now = self.clock()
        self.dispatched -= 1
        self._uncount(call)
        if not call.running:  # it never reached its handler: nothing to learn
            self._dispatch(now)
            self._maybe_idle()
            return
        call.running = False
        self.running -= 1
        method = call.method
        took = now - call.dispatched
        old = self._service.get(method)
        self._service[method] = took if old is None else old + (took - old) * 0.1
        if self.queue and 0 < (gap := now - self._last_done) < MAX_GAP:
            self._gap = gap if self._gap == 0 else self._gap + (gap - self._gap) * 0.05
        self._last_done = now
        self._learn(now, took)
        self._dispatch(now)
        self._maybe_idle()

    def _maybe_idle(self) -> None:
        if self.dispatched == 0 and self._idle:
            for callback in self._idle:
                callback()
            self._idle.clear()

    def when_idle(self, callback: Callable[[], None]) -> None:
        """Calls ``callback`` once no dispatched call is left (at once if none is)."""
        if self.dispatched == 0:
            callback()
        else:
            self._idle.append(callback)

    def sweep(self) -> None:
        """Turns away queued calls that waited too long (a timer calls this)."""
        self._dispatch(self.clock())

    def drain(self) -> None:
        """Shutdown begins: queued calls and every later arrival are answered UNAVAILABLE."""
        self.draining = True
        while self.queue:
            self._turn_away(self.queue.popleft(), DRAINING)

    def check_quiet(self) -> None:
        """Logs the end of a shedding episode once nothing was turned away for a while."""
        if self._shedding_since and self.clock() - self._last_shed >= QUIET_AFTER:
            fields = {
                "turned_away": self._shed_count,
                "lasted_s": round(self._last_shed - self._shedding_since, 1),
                "limit": round(self.limit.value, 1),
            }
            log.info("shedding load stopped", extra={"fields": fields})
            self._shedding_since = 0.0
            self._shed_count = 0

    # -- inside --------------------------------------------------------

    def _enqueue(self, call: Waiting, now: float, left: float | None) -> None:
        """No slot is free: queue the call if it can be served in time, else turn it away."""
        wait = self.expected_wait(len(self.queue))
        if (
            wait > self.policy.max_wait
            or len(self.queue) >= self.policy.max_queue
            or (left is not None and left < wait + self.service_time(call.method))
        ):
            self._turn_away(call, _busy(wait))
            return
        if not self.queue and self._wake is not None:
            self._wake(now + self.policy.max_wait)
        self.queue.append(call)
        self.stats.queued += 1

    def _dispatch(self, now: float) -> None:
        """Starts queued calls while slots are free; turns away those that waited too long."""
        queue = self.queue
        max_wait = self.policy.max_wait
        while queue and now - queue[0].arrived > max_wait:
            self._turn_away(queue.popleft(), Rejection(Reason.QUEUE_TIMEOUT, "", max_wait * 2))
        while queue and self.in_flight < self.limit.value:
            call = queue.popleft()
            if now >= call.deadline:
                self._turn_away(call, _expired(call.method))
            else:
                self._start(call)
        if queue and self._wake is not None:
            self._wake(queue[0].arrived + max_wait)

    def _start(self, call: Waiting) -> None:
        self.stats.started += 1
        self.dispatched += 1
        self.reading += 1
        call.counted = True
        call.dispatched = self.clock()
        self._bodies.append(call)
        self._run(call)

    def _learn(self, now: float, took: float) -> None:
        """Averages latency over a short window, then updates the limit once."""
        w = self._window
        if not w[0]:
            w[0] = now
        w[1] += took
        w[2] += 1
        if now - w[0] >= self.policy.window and w[2] >= 5:
            self.limit.update(w[1] / w[2], self.in_flight + 1)
            w[0], w[1], w[2] = now, 0.0, 0.0

    def _turn_away(self, call: Waiting, rejection: Rejection) -> None:
        self.stats.rejected[rejection.reason] += 1
        if rejection.reason in (Reason.BUSY, Reason.QUEUE_TIMEOUT):
            now = self.clock()
            if not self._shedding_since:
                self._shedding_since = now
                fields = {
                    "reason": rejection.reason.value,
                    "in_flight": self.in_flight,
                    "queued": len(self.queue),
                    "limit": round(self.limit.value, 1),
                }
                log.warning("shedding load", extra={"fields": fields})
            self._last_shed = now
            self._shed_count += 1
        self._reject(call, rejection)


def _busy(wait: float) -> Rejection:
    # Twice the wait a newcomer would have now: by then the queue has turned over.
    return Rejection(Reason.BUSY, "", max(0.01, wait * 2))


def _name(method: str) -> str:
    return method.rsplit("/", 1)[-1]


def _expired(method: str) -> Rejection:
    return Rejection(Reason.EXPIRED, f"deadline exceeded before {_name(method)} could start")


def _unbound(*args: object) -> None:  # pragma: no cover - bind() is always called first
    raise RuntimeError("Admission.bind() was not called")
