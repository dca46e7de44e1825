"""The client under a server that sheds load: throttling, the retry budget, pushback, CANCELLED.

The server here is the fake ``Scripted`` where a status must be produced on
demand (a negative pushback, a reset stream): the real server never sends
those. ``tests/integration/test_overload.py`` and ``test_overload_real.py`` (beside
this file) drive the real server past its limit and check what this client does
there: throttling, the retry budget, the retry log, ``Unavailable``'s message.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import replace
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2

import microposts_client as mc
from tests.grpcservers import LoopThread, Scripted, rich_status, start_aio_server

OVERLOADED = error_details_pb2.ErrorInfo(reason="OVERLOADED", domain="microposts.v1")
FAST = replace(mc.DEFAULT_RETRY, initial_backoff=0.001, max_backoff=0.005)


def busy(pushback_ms: str = "1") -> tuple[grpc.StatusCode, Any]:
    """A server's overload rejection: RESOURCE_EXHAUSTED, RetryInfo and the pushback trailer."""
    delay = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(nanos=1_000_000))
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    status = rich_status(code, "at capacity", delay, OVERLOADED)
    return code, (("grpc-retry-pushback-ms", pushback_ms), *status)


def test_retry_budget_stops_retries_once_spent(scripted: Scripted) -> None:
    budget = mc.RetryBudget(max_tokens=4, token_ratio=0.5)
    with mc.Client(scripted.address, retry=replace(FAST, budget=budget), throttle=None) as client:
        scripted.script["GetUser"] = [busy()] * 50
        with pytest.raises(mc.ResourceExhausted):
            client.get_user(name="users/alice")
        # Four tokens, retries only while more than two are left: the first rejection
        # left three and was retried; the second left two, and no retry was made.
        assert scripted.attempts("GetUser") == 2
        stats = client.overload_stats()
        assert stats.retries == 1
        assert stats.retries_refused == 1
        with pytest.raises(mc.ResourceExhausted):  # still spent: one attempt, no retry
            client.get_user(name="users/alice")
        assert scripted.attempts("GetUser") == 3
        scripted.script["GetUser"] = []
        for _ in range(5):  # successes put half a token back each: 1 + 2.5 = 3.5
            client.get_user(name="users/alice")
        scripted.script["GetUser"] = [busy()]
        client.get_user(name="users/alice")  # 2.5 left after it: retried, and answered
        assert client.overload_stats().retries == 2


def test_negative_or_unparsable_pushback_stops_retries(scripted: Scripted) -> None:
    with mc.Client(scripted.address, retry=FAST, throttle=None) as client:
        for value in ("-1", "soon"):
            before = scripted.attempts("GetUser")
            scripted.script["GetUser"] = [busy(value)]
            with pytest.raises(mc.ResourceExhausted) as caught:
                client.get_user(name="users/alice")
            assert caught.value.retry_refused
            assert scripted.attempts("GetUser") == before + 1
        scripted.script["GetUser"] = [busy("2")]  # a valid pushback is honoured: retried
        assert client.get_user(name="users/alice").name == "users/alice"


def test_throttle_engages_when_rejections_dominate_and_releases(scripted: Scripted) -> None:
    # A short window, so that the test can wait for old rejections to age out.
    throttle = mc.Throttle(window=1.0, min_requests=10)
    with mc.Client(scripted.address, retry=None, throttle=throttle) as client:
        scripted.script["GetUser"] = [busy()] * 1000
        dropped = 0
        for _ in range(60):
            with pytest.raises(mc.ResourceExhausted) as caught:
                client.get_user(name="users/alice")
            dropped += caught.value.reason == "CLIENT_THROTTLED"
        sent = scripted.attempts("GetUser")
        assert dropped > 0 and sent + dropped == 60  # some calls never left the client
        assert client.overload_stats().dropped == dropped
        assert client.overload_stats().drop_probability > 0.5
        scripted.script["GetUser"] = []  # the server recovers
        time.sleep(1.1)  # the rejections leave the window
        assert client.overload_stats().drop_probability == 0
        for _ in range(20):
            client.get_user(name="users/alice")
        assert client.overload_stats().dropped == dropped


def test_unavailable_names_the_target_and_attempts(scripted: Scripted) -> None:
    down = (grpc.StatusCode.UNAVAILABLE, ())
    with mc.Client(scripted.address, retry=replace(FAST, max_attempts=3)) as client:
        scripted.script["GetUser"] = [down] * 3
        with pytest.raises(mc.Unavailable) as caught:
            client.get_user(name="users/alice")
    assert f"target {scripted.address}" in str(caught.value)
    assert "3 attempts" in str(caught.value)


def test_each_retry_is_logged_at_debug_without_request_or_metadata(
    scripted: Scripted, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "Bearer hunter2"
    scripted.script["GetUser"] = [busy(), busy()]
    with (
        caplog.at_level(logging.DEBUG, logger="microposts_client"),
        mc.Client(scripted.address, retry=FAST, metadata=[("authorization", secret)]) as client,
    ):
        client.get_user(name="users/very-private-name")
    lines = [r.getMessage() for r in caplog.records if r.name == "microposts_client"]
    assert len(lines) == 2
    for line in lines:
        assert "GetUser" in line and "RESOURCE_EXHAUSTED" in line
        assert "attempt" in line and "pause" in line and "left" in line
        assert "hunter2" not in line and "very-private-name" not in line


class _Resets:
    """A GetUser that resets its calls (CANCELLED), at once or just before their deadline."""

    def __init__(self, loop: LoopThread) -> None:
        self.late = False
        self.loop = loop
        self.server, self.address = loop.run(start_aio_server({"GetUser": self._get_user}))

    async def _get_user(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if self.late:
            left = context.time_remaining() or 0.0
            await asyncio.sleep(max(0.0, left - 0.005))
        await context.abort(grpc.StatusCode.CANCELLED, "stream reset by the server")

    def stop(self) -> None:
        self.loop.run(self.server.stop(0))


def test_a_caller_who_cancelled_nothing_never_sees_cancelled(loop_thread: LoopThread) -> None:
    resets = _Resets(loop_thread)
    try:
        with mc.Client(resets.address, retry=None) as client:
            with pytest.raises(mc.Unavailable) as early:
                client.get_user(name="users/alice", timeout=5)
            assert "reset" in early.value.message
            resets.late = True
            with pytest.raises(mc.DeadlineExceeded):
                client.get_user(name="users/alice", timeout=0.3)
    finally:
        resets.stop()


def test_an_async_caller_who_cancelled_nothing_never_sees_cancelled(
    loop_thread: LoopThread,
) -> None:
    resets = _Resets(loop_thread)

    async def main() -> tuple[BaseException, BaseException]:
        async with mc.AsyncClient(resets.address, retry=None) as client:
            with pytest.raises(mc.Unavailable) as early:
                await client.get_user(name="users/alice", timeout=5)
            resets.late = True
            with pytest.raises(mc.DeadlineExceeded) as late:
                await client.get_user(name="users/alice", timeout=0.3)
        return early.value, late.value

    try:
        early, late = asyncio.run(main())
    finally:
        resets.stop()
    assert isinstance(early, mc.Unavailable) and "reset" in early.message
    assert not isinstance(early, mc.Cancelled) and not isinstance(late, mc.Cancelled)


def test_a_caller_who_closes_the_client_sees_cancelled(loop_thread: LoopThread) -> None:
    resets = _Resets(loop_thread)
    resets.late = True
    client = mc.Client(resets.address, retry=None)
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            client.get_user(name="users/alice", timeout=5)
        except mc.ServiceError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=call)
    worker.start()
    try:
        time.sleep(0.3)  # the call is in flight
        client.close()
        worker.join(10)
    finally:
        resets.stop()
    assert len(outcome) == 1
    assert isinstance(outcome[0], mc.Cancelled)
