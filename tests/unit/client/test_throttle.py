"""Adaptive throttling and the retry budget, on a clock the test moves."""

from __future__ import annotations

import grpc
import pytest

from microposts_client import RetryBudget, Throttle
from microposts_client._throttle import (
    ACCEPTED,
    REJECTED,
    UNANSWERED,
    AdaptiveThrottle,
    RetryTokens,
    verdict,
)
from tests.unit.clock import Clock


def test_what_counts_as_a_rejection() -> None:
    assert verdict(grpc.StatusCode.RESOURCE_EXHAUSTED, from_server=False) is REJECTED
    assert verdict(grpc.StatusCode.UNAVAILABLE, from_server=True) is REJECTED
    assert verdict(grpc.StatusCode.UNAVAILABLE, from_server=False) is UNANSWERED
    assert verdict(grpc.StatusCode.UNAVAILABLE, True, "DRAINING") is UNANSWERED
    assert verdict(grpc.StatusCode.NOT_FOUND, from_server=True) is ACCEPTED
    assert verdict(grpc.StatusCode.DEADLINE_EXCEEDED, from_server=False) is ACCEPTED


def test_drop_probability_follows_the_sre_formula_and_ages_out() -> None:
    clock = Clock()
    throttle = AdaptiveThrottle(Throttle(k=2, window=10, min_requests=0), clock, draw=lambda: 0.5)
    for _ in range(30):
        throttle.record(ACCEPTED)
    assert throttle.rejection_probability() == 0  # 30 - 2 * 30 < 0
    for _ in range(90):
        throttle.record(REJECTED)
    # 120 requests, 30 accepts: (120 - 60) / 121
    assert throttle.rejection_probability() == pytest.approx(60 / 121)
    assert throttle.allow()  # draw 0.5 >= 0.496
    for _ in range(40):
        throttle.record(REJECTED)
    assert not throttle.allow()  # (160 - 60) / 161 = 0.62 > 0.5: dropped, and counted
    assert throttle.dropped == 1
    clock.now += 10.5  # every bucket has left the window
    assert throttle.rejection_probability() == 0
    assert throttle.allow()


def test_no_dropping_below_the_minimum_and_unanswered_calls_do_not_count() -> None:
    throttle = AdaptiveThrottle(Throttle(min_requests=20), Clock(), draw=lambda: 0.0)
    for _ in range(19):
        throttle.record(REJECTED)
    for _ in range(100):
        throttle.record(UNANSWERED)  # an outage: no server said anything
    assert throttle.rejection_probability() == 0
    throttle.record(REJECTED)
    assert throttle.rejection_probability() == pytest.approx(20 / 21)


def test_retry_tokens_follow_grfc_a6() -> None:
    tokens = RetryTokens(RetryBudget(max_tokens=10, token_ratio=0.1))
    for _ in range(4):
        tokens.record(REJECTED, ok=False)
    assert tokens.allow_retry()  # 6 > 5
    tokens.record(REJECTED, ok=False)
    assert not tokens.allow_retry()  # 5: not above half
    assert tokens.refused == 1
    tokens.record(UNANSWERED, ok=False)
    tokens.record(ACCEPTED, ok=False)  # an answer that is not OK: neither spends nor refills
    assert tokens.tokens == 5
    for _ in range(2):
        tokens.record(ACCEPTED, ok=True)
    assert tokens.allow_retry()  # 5.2
    for _ in range(100):
        tokens.record(ACCEPTED, ok=True)
    assert tokens.tokens == 10  # never above the bucket's size


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="k >= 1"):
        Throttle(k=0.5)
    with pytest.raises(ValueError, match="max_tokens"):
        RetryBudget(max_tokens=0)
