"""The real app past its limit: who is turned away, how, and that health stays SERVING.

Calls are held in flight by a real lock that the test takes in the app's own
PostgreSQL schema (``LOCK TABLE microposts`` in a transaction of its own): a
CreateMicropost then waits inside its handler, its event loop free, for as
long as the test likes, which is how a slow call looks to admission. The
app's limit is fixed at one call (``max_concurrency=1``), so one held call is
a full server. PostgreSQL only: SQLite waits for a lock on the event loop
itself, and what is tested is admission, which is the same for both stores.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

import microposts_client as mc
from microposts.v1 import micropost_service_pb2 as mpb
from microposts.v1 import resources_pb2 as rpb
from microposts.v1 import user_service_pb2 as upb
from microposts_server.overload import Reason
from tests import pg
from tests.appserver import AppServer, serve_app
from tests.rawh2 import RawConnection
from tests.rpcutil import failure_of

SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.fixture
def full() -> Iterator[AppServer]:
    """An app that runs one call at a time and lets none wait (1 ms at most)."""
    with (
        pg.session_database().schema() as url,
        serve_app(url, max_concurrency=1, max_queue_wait=0.001) as srv,
    ):
        srv.users.CreateUser(upb.CreateUserRequest(user=rpb.User(username="alice")), timeout=5)
        yield srv


def write_lock(srv: AppServer) -> AbstractContextManager[None]:
    """Locks the app's microposts table: creates wait (up to their deadline) until released."""
    return pg.table_lock(srv.app.settings.store)


def create(srv: AppServer, text: str, timeout: float) -> rpb.Micropost:
    request = mpb.CreateMicropostRequest(parent="users/alice", micropost=rpb.Micropost(text=text))
    reply: rpb.Micropost = srv.posts.CreateMicropost(request, timeout=timeout)
    return reply


def settle(srv: AppServer) -> None:
    """Waits until the app has finished every call (a reply can reach us a moment before)."""
    end = time.monotonic() + 10
    while srv.app.admission.dispatched:
        assert time.monotonic() < end, "calls never finished"
        time.sleep(0.005)


def hold_one_call(srv: AppServer, pool: ThreadPoolExecutor) -> Future[rpb.Micropost]:
    """Starts a create that waits on the write lock; returns once its handler runs."""
    held = pool.submit(create, srv, "held", 10.0)
    end = time.monotonic() + 10
    while srv.app.admission.running < 1:
        assert time.monotonic() < end, "the held call never started"
        time.sleep(0.005)
    return held


def test_past_the_limit_calls_get_resource_exhausted_with_retry_info_and_health_serves(
    full: AppServer,
) -> None:
    health = health_pb2_grpc.HealthStub(full.channel)
    with ThreadPoolExecutor(2) as pool:
        with write_lock(full):
            held = hold_one_call(full, pool)
            get = upb.GetUserRequest(name="users/alice")
            failure = failure_of(full.users.GetUser, get, timeout=5)
            with pytest.raises(grpc.RpcError) as caught:  # again, for its trailers
                full.users.GetUser(get, timeout=5)
            check = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            assert check.status == SERVING  # never shed
        assert held.result(10).text == "held"  # the call that ran was not disturbed
    assert failure.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert failure.detail(error_details_pb2.ErrorInfo).reason == "OVERLOADED"
    delay = failure.detail(error_details_pb2.RetryInfo).retry_delay.ToMilliseconds()
    error: Any = caught.value  # a grpc.Call too; grpc-stubs types RpcError alone
    pushback = dict(error.trailing_metadata())["grpc-retry-pushback-ms"]
    assert int(pushback) == delay > 0
    assert "retry after" in failure.message
    rejected = full.app.admission.stats.rejected
    assert rejected[Reason.BUSY] + rejected[Reason.QUEUE_TIMEOUT] == 2
    # The limit freed, the same call succeeds.
    settle(full)
    assert full.users.GetUser(upb.GetUserRequest(name="users/alice"), timeout=5).username
    assert full.logs(msg="shedding load")  # one line when shedding starts


def test_our_client_waits_the_pushback_and_gets_through(
    full: AppServer, caplog: pytest.LogCaptureFixture
) -> None:
    patient = replace(mc.DEFAULT_RETRY, budget=mc.RetryBudget(max_tokens=1000))
    with (
        ThreadPoolExecutor(2) as pool,
        mc.Client(full.address, retry=patient) as client,
        caplog.at_level(logging.DEBUG, logger="microposts_client"),
    ):
        with write_lock(full):
            held = hold_one_call(full, pool)
            early = pool.submit(client.get_user, name="users/alice", timeout=5)
            end = time.monotonic() + 10
            while not full.app.admission.stats.rejected[Reason.BUSY]:
                assert time.monotonic() < end, "the call was never turned away"
                time.sleep(0.005)
        assert early.result(10).username == "alice"
        assert held.result(10).text == "held"
        assert client.overload_stats().retries >= 1
    lines = [r.getMessage() for r in caplog.records if r.name == "microposts_client"]
    pauses = [float(re.search(r"pause ([\d.]+) s", line)[1]) for line in lines]  # type: ignore[index]
    # Each pause is the server's pushback, which comes in 10 ms steps; a backoff
    # would be a uniform draw.
    assert pauses and all(p >= 0.01 and round(p * 1000) % 10 == 0 for p in pauses), lines


def test_a_call_that_cannot_meet_its_deadline_is_turned_away_before_its_handler(
    full: AppServer,
) -> None:
    # Teach admission that a create takes ~0.3 s: one create waits that long for the lock.
    # (The lock is released before the pool waits for the create: exits run in reverse.)
    with ThreadPoolExecutor(1) as pool, write_lock(full):
        slow = hold_one_call(full, pool)
        time.sleep(0.3)
    slow.result(10)
    settle(full)  # what a create takes is learnt once its handler's task ends
    assert full.app.admission.service_time("/microposts.v1.MicropostService/CreateMicropost") > 0.2
    lines_before = len(full.logs(msg="call"))
    failure = failure_of(create, full, "too late", 0.1)
    assert failure.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert failure.detail(error_details_pb2.ErrorInfo).metadata["phase"] == "admission"
    assert "usually takes" in failure.message
    assert full.app.admission.stats.rejected[Reason.DEADLINE] == 1  # counted
    assert len(full.logs(msg="call")) == lines_before  # the pipeline never ran: no store call
    listed = full.posts.ListMicroposts(mpb.ListMicropostsRequest(parent="users/alice"), timeout=5)
    assert [p.text for p in listed.microposts] == ["held"]


def test_a_request_body_that_never_arrives_does_not_hold_a_slot(full: AppServer) -> None:
    stalled = RawConnection(full.address)
    try:
        stalled.stall_request("/microposts.v1.UserService/GetUser", claimed=200, sent=20)
        end = time.monotonic() + 10
        while full.app.admission.dispatched < 1:  # admitted, waiting for its body
            assert time.monotonic() < end, "the stalled calls never reached admission"
            time.sleep(0.005)
        while full.app.admission.in_flight:  # it stops counting after a short grace
            assert time.monotonic() < end, "a stalled body kept its slot"
            time.sleep(0.01)
        assert full.users.GetUser(upb.GetUserRequest(name="users/alice"), timeout=5).username
    finally:
        stalled.close()


def test_an_untested_grpcio_falls_back_to_plain_grpc_aio_and_says_so(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The receive loop uses grpc.aio internals that a later grpcio may change:
    # on a release it was not tested with, the server must still serve, without it.
    monkeypatch.setattr(grpc, "__version__", "9.99.0")
    with serve_app(f"sqlite:///{tmp_path / 'plain.db'}") as srv:
        user = srv.users.CreateUser(upb.CreateUserRequest(user=rpb.User(username="plain")))
        assert user.name == "users/plain"
        (line,) = srv.logs(
            msg="overload control off: this grpcio is untested, or lacks the internals it needs"
        )
        assert line["grpcio"] == "9.99.0"
        assert not srv.app.gated
