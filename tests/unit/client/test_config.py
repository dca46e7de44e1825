"""The client's pure parts: targets, timeouts, retry decisions (no server)."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import replace

import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2

from microposts_client import (
    DEFAULT_READ_TIMEOUT,
    DEFAULT_RETRY,
    DEFAULT_WRITE_TIMEOUT,
    USE_CLIENT_DEFAULT,
    Aborted,
    Client,
    ResourceExhausted,
    Retry,
    Timeouts,
    Unavailable,
    deadline,
)

# The retry decision is one pure function, the clients' single place for it;
# through the public API it shows only with a server (integration/client/test_retries.py).
from microposts_client._retry import pause_before_retry


def target_of(target: str | Sequence[str]) -> str:
    """The gRPC target a client connects to (building one connects nowhere)."""
    with Client(target) as client:
        return client.target


def test_targets() -> None:
    for same in (
        "localhost:50051",
        "[::1]:50051",
        "dns:///svc.internal:443",
        "dns://8.8.8.8/svc.internal:443",
        "ipv4:127.0.0.1:1,127.0.0.2:2",
        "ipv6:[::1]:1",
        "unix:/run/microposts.sock",
        "unix:///run/microposts.sock",
        "xds:///microposts",
    ):
        assert target_of(same) == same
    assert target_of(["127.0.0.1:1", "127.0.0.1:2"]) == "ipv4:127.0.0.1:1,127.0.0.1:2"
    assert target_of(["[::1]:1", "[::1]:2"]) == "ipv6:[::1]:1,[::1]:2"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            "http://localhost:50051",
            "is a URL; gRPC takes 'host:port' or a gRPC URI such as "
            "'dns:///host:port': use 'localhost:50051'",
        ),
        ("https://svc.example", "use 'svc.example:PORT' (TLS is chosen with credentials="),
        (
            "localhost",
            "has no port (gRPC would use 443): use 'localhost:PORT', e.g. 'localhost:50051'",
        ),
        ("localhost:50051/", "has a path; a gRPC target has none: use 'localhost:50051'"),
        ("dns:///svc.internal", "has no port (gRPC would use 443): use 'dns:///svc.internal:PORT'"),
        ("dns://svc.internal:1", "three slashes): use 'dns:///svc.internal:1'"),
        ("localhost:0", "port '0' is not a number from 1 to 65535"),
        ("localhost:http", "port 'http' is not a number from 1 to 65535"),
        (":50051", "has no host: use 'localhost:50051'"),
        ("::1:50051", "put an IPv6 address in brackets, e.g. '[::1]:50051'"),
        ("ipv4:127.0.0.1", "'127.0.0.1' has no port"),
        (" localhost:1", "contains white space: use 'localhost:1'"),
        ("", "the target is empty"),
        ([], "the target list is empty"),
        (["host.example:1"], "needs IP addresses; for host names use one 'dns:///name:port'"),
        (["127.0.0.1"], "'127.0.0.1' has no port"),
        (["127.0.0.1:1", "[::1]:2"], "all IPv4 or all IPv6"),
    ],
)
def test_bad_targets_say_what_works(target: str | list[str], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        target_of(target)


def test_timeouts() -> None:
    assert Timeouts.of(USE_CLIENT_DEFAULT) == Timeouts(DEFAULT_READ_TIMEOUT, DEFAULT_WRITE_TIMEOUT)
    assert DEFAULT_READ_TIMEOUT < DEFAULT_WRITE_TIMEOUT  # reads shorter than writes
    assert Timeouts.of(None) == Timeouts(None, None)
    assert Timeouts.of(0) == Timeouts(0.0, 0.0)  # 0 stays 0, never the default
    assert Timeouts.of(Timeouts(read=1.0)).write == DEFAULT_WRITE_TIMEOUT
    assert repr(Timeouts(1.0, 2.0)) == "Timeouts(read=1.0, write=2.0)"
    assert repr(USE_CLIENT_DEFAULT) == "USE_CLIENT_DEFAULT"
    assert repr(deadline(0.5)) == "deadline(0.5)"
    with Client("127.0.0.1:1", timeout=3) as client:
        assert client.timeouts == Timeouts(3.0, 3.0)
        assert "127.0.0.1:1" in repr(client)


def test_retry_decisions() -> None:
    far = time.monotonic() + 60
    unavailable = Unavailable("down")
    for attempt in range(1, 30):  # no fixed count: as long as the deadline allows
        pause = pause_before_retry(unavailable, DEFAULT_RETRY, attempt, far)
        assert pause is not None
        bound = DEFAULT_RETRY.initial_backoff * 2 ** (attempt - 1)
        assert 0 <= pause <= min(DEFAULT_RETRY.max_backoff, bound)
    counted = replace(DEFAULT_RETRY, max_attempts=3)
    assert pause_before_retry(unavailable, counted, 2, far) is not None
    assert pause_before_retry(unavailable, counted, 3, far) is None
    assert pause_before_retry(Aborted("conflict"), DEFAULT_RETRY, 1, far) is None
    assert pause_before_retry(ResourceExhausted("quota"), DEFAULT_RETRY, 1, far) is None
    asked = ResourceExhausted(
        "slow down",
        details=[error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(nanos=250_000_000))],
    )
    assert pause_before_retry(asked, DEFAULT_RETRY, 1, far) == 0.25
    assert pause_before_retry(asked, DEFAULT_RETRY, 1, time.monotonic() + 0.1) is None
    assert pause_before_retry(unavailable, DEFAULT_RETRY, 1, time.monotonic()) is None
    with pytest.raises(ValueError, match="max_attempts"):
        Retry(max_attempts=0)


def test_backoff_is_shortened_to_fit_the_deadline_but_a_server_delay_is_not() -> None:
    unavailable = Unavailable("down")
    soon = time.monotonic() + 0.2
    for _ in range(50):  # a drawn pause that would overrun is cut to what still fits
        pause = pause_before_retry(unavailable, DEFAULT_RETRY, 8, soon)
        assert pause is not None
        assert pause <= soon - time.monotonic() - DEFAULT_RETRY.min_attempt + 1e-3
    asked = Unavailable("draining", retry_pushback=0.5)
    assert pause_before_retry(asked, DEFAULT_RETRY, 1, soon) is None  # waits 0.5 s or not at all


def test_negative_or_unparsable_pushback_means_do_not_retry() -> None:
    far = time.monotonic() + 60
    refused = Unavailable("go away", retry_pushback=-1.0)
    assert refused.retry_refused
    assert refused.retry_delay is None
    assert pause_before_retry(refused, DEFAULT_RETRY, 1, far) is None
    assert (
        pause_before_retry(Unavailable("fine", retry_pushback=0.01), DEFAULT_RETRY, 1, far) == 0.01
    )
