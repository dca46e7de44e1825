"""Admission's decisions and the Gradient2 limit, on a clock the test moves (no gRPC)."""

from __future__ import annotations

import logging

import pytest

from microposts_server import overload
from microposts_server.overload import Admission, Gradient2, Policy, Reason, Rejection, Waiting

GET = "/microposts.v1.MicropostService/GetMicropost"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Harness:
    """An Admission with recording actions: what ran, what was turned away and why."""

    def __init__(self, policy: Policy) -> None:
        self.clock = Clock()
        self.admission = Admission(policy, self.clock)
        self.ran: list[Waiting] = []
        self.rejected: list[tuple[object, Rejection]] = []
        self.admission.bind(self.ran.append, lambda c, r: self.rejected.append((c.state, r)))

    def arrive(self, name: object, left: float | None = 1.0) -> None:
        self.admission.arrive(name, GET, left)

    def start_running(self) -> None:
        """Every dispatched call's body arrives: its handler runs."""
        for call in self.ran:
            if not call.running and call.counted:
                self.admission.body_arrived(call)

    def finish(self, took: float) -> None:
        """The oldest running call finishes after ``took`` seconds."""
        call = next(c for c in self.ran if c.running)
        self.clock.now += took
        self.admission.finished(call)

    def reasons(self) -> list[Reason]:
        return [r.reason for _, r in self.rejected]


def fixed(limit: int, max_wait: float = 0.02) -> Harness:
    return Harness(Policy(max_concurrency=limit, max_wait=max_wait))


def test_runs_below_the_limit_then_queues_then_turns_away() -> None:
    h = fixed(2)
    h.arrive("a")
    h.arrive("b")
    assert [c.state for c in h.ran] == ["a", "b"]
    h.start_running()
    for _ in range(3):  # teach it: ~1 ms between completions while calls wait
        h.arrive("x")
        h.finish(0.001)
        h.start_running()
    h.arrive("c")
    h.arrive("d")
    assert [c.state for c in h.admission.queue] == ["c", "d"]  # a slot frees every ~1 ms
    for i in range(40):  # the queue grows until the expected wait passes 20 ms
        h.arrive(f"q{i}")
    assert h.reasons() and set(h.reasons()) == {Reason.BUSY}
    busy = h.rejected[0][1]
    assert busy.pushback >= 0.02  # twice the wait a newcomer would have
    assert len(h.admission.queue) <= 21


def test_deadline_aware_admission() -> None:
    h = fixed(1)
    h.arrive("first")
    h.start_running()
    h.finish(0.3)  # GetMicropost "usually" takes 0.3 s now
    h.arrive("late", left=0.1)  # cannot finish even with no wait
    h.arrive("gone", left=0.0)
    assert h.reasons() == [Reason.DEADLINE, Reason.EXPIRED]
    assert "usually takes 300.0 ms" in h.rejected[0][1].message
    h.arrive("fine", left=1.0)
    assert h.ran[-1].state == "fine"
    h.start_running()
    h.arrive("waits-too-long", left=0.31)  # 0.3 s of work, but it would queue first
    assert h.reasons()[-1] is Reason.BUSY


def test_queued_calls_that_wait_too_long_or_expire_are_turned_away() -> None:
    h = fixed(1, max_wait=0.05)
    h.arrive("running")
    h.start_running()
    h.arrive("short", left=0.01)
    h.arrive("patient", left=5.0)
    assert [c.state for c in h.admission.queue] == ["short", "patient"]
    h.clock.now += 0.02
    h.finish(0.0)  # a slot: "short" has expired meanwhile
    assert h.rejected[0][0] == "short" and h.rejected[0][1].reason is Reason.EXPIRED
    assert h.ran[-1].state == "patient"
    h.start_running()
    h.arrive("stuck")
    h.clock.now += 0.06
    h.admission.sweep()  # the timer: it waited past max_wait
    assert h.rejected[-1] == ("stuck", Rejection(Reason.QUEUE_TIMEOUT, "", 0.1))


def test_drain_answers_queued_and_new_calls_unavailable() -> None:
    h = fixed(1)
    h.arrive("running")
    h.start_running()
    h.arrive("queued")
    h.admission.drain()
    h.arrive("new")
    assert [(n, r.reason) for n, r in h.rejected] == [
        ("queued", Reason.DRAINING),
        ("new", Reason.DRAINING),
    ]
    idle: list[bool] = []
    h.admission.when_idle(lambda: idle.append(True))
    assert not idle
    h.finish(0.01)
    assert idle == [True]


def test_a_body_that_does_not_arrive_stops_counting_after_the_grace() -> None:
    h = fixed(1)
    h.arrive("stalled")
    assert h.admission.in_flight == 1
    h.clock.now += overload.BODY_GRACE + 0.01
    assert h.admission.in_flight == 0  # the slot is free again
    h.arrive("normal")
    assert h.ran[-1].state == "normal"
    h.admission.finished(h.ran[0])  # the stalled one ends (reset, deadline): no underflow
    assert h.admission.dispatched == 1 and h.admission.in_flight == 1


def test_shedding_is_logged_once_when_it_starts_and_once_when_it_stops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = fixed(1, max_wait=0.0001)
    h.arrive("running")
    h.start_running()
    h.finish(0.01)
    h.arrive("running2")
    h.start_running()
    with caplog.at_level(logging.INFO, logger="microposts.overload"):
        for i in range(10):
            h.arrive(f"shed{i}")
        h.admission.check_quiet()
        h.clock.now += overload.QUIET_AFTER + 1
        h.admission.check_quiet()
        h.admission.check_quiet()
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["shedding load", "shedding load stopped"]
    assert caplog.records[1].fields["turned_away"] == 10  # type: ignore[attr-defined]


def test_gradient2_shrinks_when_latency_rises_and_grows_back() -> None:
    limit = Gradient2(initial=50, minimum=8, maximum=200)
    for _ in range(50):
        limit.update(0.010, in_flight=50)
    steady = limit.value
    assert steady > 50  # latency flat: it probes upward
    for _ in range(20):
        limit.update(0.100, in_flight=int(limit.value))  # ten times slower
    assert limit.value < steady / 2
    assert limit.value >= 8
    low = limit.value
    for _ in range(100):
        limit.update(0.010, in_flight=int(limit.value))
    assert limit.value > low
    before = limit.value
    limit.update(1.0, in_flight=1)  # far below the limit: latency says nothing about capacity
    assert limit.value == before
