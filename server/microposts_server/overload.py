"""Overload control: which calls run, which wait, which are turned away, and how cheaply.

Why this module exists: grpc.aio takes every call the moment it arrives and
starts a task for it, so past capacity every call waits in the event loop's
queue until its caller's deadline is nearly spent, and then the server does
the work anyway (goodput fell to ~5 % of capacity at twice the load). What
it costs to turn a call away decides what can be done about it; measured
(docs/benchmarks.md, "What turning a call away costs"):

- a call answered in our handler, by an interceptor or a generic handler:
  about what serving a bare echo costs;
- ``grpc.aio.server(maximum_concurrent_rpcs=...)``: ~0.85 of that, because
  grpc.aio has set the call up (its task, its cancellation listener) first;
- refused by the core per connection (``SETTINGS_MAX_CONCURRENT_STREAMS``):
  nothing in Python at all, and the caller's excess waits on its side;
- answered from the loop that asks the core for calls, before grpc.aio has
  set anything up: ~0.55 of a bare echo. This is the earliest point Python
  sees a call, and the cheapest; it is where this module decides.

So the server serves its own methods with its own receive loops
(``GatedServer``, ``RECEIVERS`` per method) instead of grpc.aio's, and hands
each call the core gives it to ``Admission``, which

1. runs it now, if fewer calls run than the concurrency limit allows;
2. else queues it (first in, first out), if it can still finish in time: its
   time left must cover the expected wait plus its method's usual service
   time (deadline-aware admission), and the wait must fit ``max_wait``;
3. else turns it away at once, before any of its bytes are read:
   ``RESOURCE_EXHAUSTED`` with ``google.rpc.RetryInfo`` and the
   ``grpc-retry-pushback-ms`` trailer when the server is busy (the wait is
   the problem), ``DEADLINE_EXCEEDED`` when the call could not finish even
   with no wait (retrying is pointless), ``UNAVAILABLE`` while the server
   drains for shutdown (another replica can serve it).

Why first in, first out, and a long ``max_wait`` by default: a client's
calls are bounded per connection, and a load generator that does not
throttle sends another call the moment one is answered; every call turned
away early is at once replaced by one that costs the same again, so that
shedding whatever waits longer than a short target halved goodput in the
bench, where serving the queue in order, each call within its own
deadline, held it. Calls whose deadline cannot be met are still turned away
on arrival, and a caller that throttles (ours does) takes the hint.

The concurrency limit follows measured latency with Netflix's Gradient2
(``Gradient2``): no fixed "no-load latency" to calibrate, it compares recent
latency with its own long-run average. Health checks and reflection are not
gated: grpc.aio's own loop keeps serving them.

``GatedServer`` relies on grpc.aio internals (``cygrpc.AioServer``'s
request loop, ``_handle_rpc``); ``make_server`` checks they are there and
otherwise falls back to a plain grpc.aio server, logging that overload
control is off. The per-connection stream bound (a core option) works
either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final, cast

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2

from .errors import DOMAIN, Failure

log = logging.getLogger("microposts.overload")

PUSHBACK_KEY: Final = "grpc-retry-pushback-ms"

RECEIVERS: Final = 16
"""Calls asked of the core at once, per method. grpc.aio asks one at a time:
under load the rest wait in the core's queue, first in first out, where
admission cannot see them, until their deadline passes. Asking for sixteen
lets admission see arrivals as they come (and turn away at once those that
cannot make their deadline), and one wake-up of the event loop take several
calls (GetMicropost at peak: 15-20 % more throughput than with one)."""

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


# -- the concurrency limit ------------------------------------------------


class Gradient2:
    """An adaptive concurrency limit: Netflix concurrency-limits' Gradient2.

    Each update compares the latest latency sample with a long-run
    exponential average (``long_window`` samples): while latency stays near
    its long-run level the limit grows by ``queue_size`` per update; as it
    rises above ``tolerance`` times that level the limit shrinks in
    proportion (by at most half per update). ``smoothing`` damps each step.
    When the long-run average sits far above recent samples (load has just
    fallen) it decays faster, so the limit recovers in seconds. A server
    running well below its limit (``in_flight < limit / 2``) leaves the limit
    alone: latency then says nothing about capacity.

    Why Gradient2 and not Vegas or AIMD: Vegas needs the no-load latency,
    which on a shared machine drifts by more than the signal; AIMD needs a
    latency threshold per deployment. Gradient2 only needs "latency is
    rising", and our latency rises as soon as calls queue in the event loop.
    """

    def __init__(
        self,
        *,
        initial: float = 20,
        minimum: float = 8,
        maximum: float = 200,
        smoothing: float = 0.2,
        tolerance: float = 1.5,
        long_window: int = 600,
        queue_size: float = 4,
    ) -> None:
        if not 1 <= minimum <= maximum:
            raise ValueError("need 1 <= minimum <= maximum")
        self.minimum = minimum
        self.maximum = maximum
        self.value = min(max(initial, minimum), maximum)
        self._smoothing = smoothing
        self._tolerance = tolerance
        self._queue_size = queue_size
        self._decay = 2.0 / (long_window + 1)
        self._long: float | None = None

    def update(self, rtt: float, in_flight: int) -> float:
        """One latency sample (seconds) with the calls in flight when it ended; the new limit."""
        if rtt <= 0:
            return self.value
        long = rtt if self._long is None else self._long + (rtt - self._long) * self._decay
        if long / rtt > 2:  # load just fell: forget the slow past sooner
            long *= 0.95
        self._long = long
        if in_flight < self.value / 2:
            return self.value
        gradient = max(0.5, min(1.0, self._tolerance * long / rtt))
        target = self.value * gradient + self._queue_size
        value = self.value * (1 - self._smoothing) + target * self._smoothing
        self.value = max(self.minimum, min(self.maximum, value))
        return self.value


# -- admission --------------------------------------------------------------


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


# -- answering a call from the receive loop ---------------------------------


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


# -- the server ---------------------------------------------------------------


def _internals() -> Any | None:
    """grpc.aio's Cython module if it has every internal GatedServer uses, else None."""
    try:
        from grpc._cython import cygrpc
        from grpc.aio import _server as aio_server
    except ImportError:  # pragma: no cover - grpcio without the Cython core
        return None
    needed = {
        cygrpc: (
            "_handle_rpc",
            "_schedule_rpc_coro",
            "_ServicerContext",
            "_send_error_status_from_server",
            "SendInitialMetadataOperation",
            "StatusCode",
            "get_working_loop",
        ),
        cygrpc.AioServer: ("_make_request_call_future", "_request_registered_call", "is_running"),
        aio_server: ("_augment_channel_arguments", "Server"),
    }
    if all(hasattr(owner, name) for owner, names in needed.items() for name in names):
        return cygrpc
    return None


class _Resolver:
    """What grpc.aio's ``_handle_rpc`` asks for a call's handler."""

    def __init__(self, handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]) -> None:
        self.handlers = handlers

    def resolve_handler(self, details: Any) -> grpc.RpcMethodHandler[Any, Any] | None:
        return self.handlers.get(details.method)


def _gated_server_class(cygrpc: Any) -> type:
    """``cygrpc.AioServer`` with our receive loop for the gated services' methods."""

    class GatedServer(cygrpc.AioServer):  # type: ignore[misc]
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

    return GatedServer


_CYGRPC_CODES: dict[grpc.StatusCode, Any] = {}


def make_server(
    options: Sequence[tuple[str, Any]], admission: Admission, services: Iterable[str]
) -> tuple[grpc.aio.Server, bool]:
    """A grpc.aio server whose ``services`` go through ``admission``; and whether they do.

    Falls back to a plain grpc.aio server (``False``) when this grpcio lacks
    an internal the gated server needs.
    """
    cygrpc = _internals()
    if cygrpc is None:
        return grpc.aio.server(options=options), False
    from grpc.aio import _server as aio_server

    if not _CYGRPC_CODES:
        for code in grpc.StatusCode:
            _CYGRPC_CODES[code] = cygrpc.StatusCode(code.value[0])
    # grpc.aio.Server is a thin shell over its Cython server (``_loop``,
    # ``_server``); building it without its __init__ avoids creating, and
    # leaking, a core server that would never be started.
    server = aio_server.Server.__new__(aio_server.Server)
    server._loop = loop = cygrpc.get_working_loop()
    arguments = aio_server._augment_channel_arguments(options, None)
    server._server = _gated_server_class(cygrpc)(
        loop, None, (), None, arguments, None, admission=admission, services=services
    )
    return cast(grpc.aio.Server, server), True
