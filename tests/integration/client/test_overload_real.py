"""The client's throttle, retry budget, retry log and ``Unavailable`` through real servers.

``tests/integration/client/test_overload_client.py`` checks the same against
a scripted fake, which can answer anything on demand; here the answers are
the real app's own. The app is started as ``tests/integration/test_overload.py``
starts it: a limit of one call, no queueing, and one create held in flight by
a real table lock in its PostgreSQL schema, so that every other call is
turned away with ``RESOURCE_EXHAUSTED`` (``OVERLOADED``, a ``RetryInfo``).
The server that is down is a port nothing listens on.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace

import pytest

import microposts_client as mc
from microposts.v1 import micropost_service_pb2 as mpb
from microposts.v1 import resources_pb2 as rpb
from microposts.v1 import user_service_pb2 as upb
from microposts_server.overload import Reason
from tests import pg
from tests.appserver import AppServer, serve_app


@pytest.fixture
def full() -> Iterator[AppServer]:
    """An app that runs one call at a time and lets none wait (1 ms at most)."""
    with (
        pg.session_database().schema() as url,
        serve_app(url, max_concurrency=1, max_queue_wait=0.001) as srv,
    ):
        srv.users.CreateUser(upb.CreateUserRequest(user=rpb.User(username="alice")), timeout=5)
        yield srv


def _held(srv: AppServer, pool: ThreadPoolExecutor) -> Future[rpb.Micropost]:
    """A create that waits on the table lock (taken by the caller); returns once it runs."""
    request = mpb.CreateMicropostRequest(parent="users/alice", micropost=rpb.Micropost(text="held"))
    held = pool.submit(srv.posts.CreateMicropost, request, timeout=10.0)
    end = time.monotonic() + 10
    while srv.app.admission.running < 1:
        assert time.monotonic() < end, "the held call never started"
        time.sleep(0.005)
    return held


def _settle(srv: AppServer) -> None:
    """Waits until the app has finished every call (a reply can reach us a moment before)."""
    end = time.monotonic() + 10
    while srv.app.admission.dispatched:
        assert time.monotonic() < end, "calls never finished"
        time.sleep(0.005)


def _turned_away(srv: AppServer) -> int:
    """Calls the app rejected for want of room, so far."""
    rejected = srv.app.admission.stats.rejected
    return rejected[Reason.BUSY] + rejected[Reason.QUEUE_TIMEOUT]


def test_throttle_engages_while_the_real_server_rejects_most_calls_and_releases(
    full: AppServer,
) -> None:
    # A short window, so that the test can wait for the rejections to age out.
    throttle = mc.Throttle(window=1.0, min_requests=10)
    reasons: list[str | None] = []
    with (
        ThreadPoolExecutor(1) as pool,
        mc.Client(full.address, retry=None, throttle=throttle) as client,
    ):
        with pg.table_lock(full.app.settings.store):
            held = _held(full, pool)
            before = _turned_away(full)
            for _ in range(60):
                with pytest.raises(mc.ResourceExhausted) as caught:
                    client.get_user(name="users/alice")
                reasons.append(caught.value.reason)
            engaged = client.overload_stats()
            sent = _turned_away(full) - before
        assert held.result(10).text == "held"
        dropped = reasons.count("CLIENT_THROTTLED")
        assert set(reasons) == {"OVERLOADED", "CLIENT_THROTTLED"}
        assert dropped > 0 and sent + dropped == 60  # the dropped ones never reached the server
        assert engaged.dropped == dropped
        assert engaged.drop_probability > 0.5
        # The server has room again; once the rejections leave the window, nothing is dropped.
        _settle(full)
        time.sleep(1.1)
        assert client.overload_stats().drop_probability == 0
        for _ in range(20):
            assert client.get_user(name="users/alice").username == "alice"
        assert client.overload_stats().dropped == dropped


def test_retries_stop_once_the_budget_is_spent_and_each_retry_is_logged(
    full: AppServer, caplog: pytest.LogCaptureFixture
) -> None:
    # Four tokens, retries only while more than two are left: the first rejection leaves
    # three and is retried; the second leaves two, and is not.
    budget = mc.RetryBudget(max_tokens=4, token_ratio=0.5)
    secret = "Bearer hunter2"
    with (
        ThreadPoolExecutor(1) as pool,
        mc.Client(
            full.address,
            retry=replace(mc.DEFAULT_RETRY, budget=budget),
            throttle=None,
            metadata=[("authorization", secret)],
        ) as client,
        caplog.at_level(logging.DEBUG, logger="microposts_client"),
    ):
        with pg.table_lock(full.app.settings.store):
            held = _held(full, pool)
            before = _turned_away(full)
            with pytest.raises(mc.ResourceExhausted) as first:
                client.get_user(name="users/alice", timeout=5)
            assert _turned_away(full) - before == 2  # the call and its one retry
            with pytest.raises(mc.ResourceExhausted):  # still spent: no retry at all
                client.get_user(name="users/alice", timeout=5)
            assert _turned_away(full) - before == 3
        assert held.result(10).text == "held"
        stats = client.overload_stats()
    assert first.value.reason == "OVERLOADED"
    assert stats.retries == 1
    assert stats.retries_refused == 2
    lines = [r.getMessage() for r in caplog.records if r.name == "microposts_client"]
    retried = [line for line in lines if line.startswith("retrying")]
    assert len(retried) == 1, lines
    match = re.fullmatch(
        r"retrying GetUser: attempt 1 failed RESOURCE_EXHAUSTED; pause ([\d.]+) s, ([\d.]+) s left",
        retried[0],
    )
    assert match, retried
    pause, left = float(match[1]), float(match[2])
    assert 0 < pause < left < 5  # the server's retry delay, within the call's budget
    assert len([line for line in lines if "the retry budget is spent" in line]) == 2
    assert not [line for line in lines if "hunter2" in line or "users/alice" in line]


@pytest.fixture
def dead_address() -> Iterator[str]:
    """``127.0.0.1:PORT`` of a port bound but not listening: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def test_unavailable_from_a_server_that_is_down_names_the_target_and_the_attempts(
    dead_address: str, caplog: pytest.LogCaptureFixture
) -> None:
    three = replace(mc.DEFAULT_RETRY, max_attempts=3)
    with pytest.raises(mc.Unavailable) as counted, mc.Client(dead_address, retry=three) as client:
        client.get_user(name="users/alice", timeout=5)
    assert f"(target {dead_address}; 3 attempts)" in str(counted.value)

    # The default retry keeps trying until the deadline; the message says how often.
    with (
        caplog.at_level(logging.DEBUG, logger="microposts_client"),
        pytest.raises(mc.Unavailable) as timed,
        mc.Client(dead_address) as client,
    ):
        client.get_user(name="users/alice", timeout=0.5)
    found = re.search(rf"\(target {re.escape(dead_address)}; (\d+) attempts\)", str(timed.value))
    assert found, str(timed.value)
    retried = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retrying")]
    assert int(found[1]) == len(retried) + 1 >= 2
    assert all("UNAVAILABLE" in line and "s left" in line for line in retried)


def test_async_unavailable_from_a_server_that_is_down_names_the_target(
    dead_address: str,
) -> None:
    async def main() -> None:
        retry = replace(mc.DEFAULT_RETRY, max_attempts=2)
        async with mc.AsyncClient(dead_address, retry=retry) as client:
            await client.get_user(name="users/alice", timeout=5)

    with pytest.raises(mc.Unavailable) as caught:
        asyncio.run(main())
    assert f"(target {dead_address}; 2 attempts)" in str(caught.value)
