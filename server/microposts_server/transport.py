"""What the server tells gRPC's core about connections, and the process's descriptors.

Everything here is enforced inside the core, where it costs no Python per
call: the bound on streams per connection (a client's excess waits on its
own side, where it costs the server nothing and expires by its own
deadline), the largest request accepted, how long idle and old connections
live, and how often clients may ping. ``raise_fd_limit`` lifts the process's
descriptor limit to its hard limit at start (each connection is a
descriptor; the soft limit is often 1,024), and ``FdWatch`` logs when
descriptors run short.
"""

from __future__ import annotations

import errno
import logging
import os
import resource
from typing import Any

from .config import Settings

log = logging.getLogger("microposts.server")

FD_WARN_AT = 0.8
"""Share of the descriptor limit in use above which ``FdWatch`` warns."""


def server_options(settings: Settings) -> list[tuple[str, Any]]:
    """The grpc core channel arguments for the server, from its settings."""
    age_ms = int(settings.max_connection_age * 1000)
    return [
        # SO_REUSEPORT off: a second server on a served address must fail, not
        # quietly take half its connections. On only in the --workers
        # supervisor's children (Settings.reuse_port), which share its port.
        ("grpc.so_reuseport", 1 if settings.reuse_port else 0),
        # Per connection: the excess waits on the client; streams beyond the
        # advertised bound are refused (REFUSED_STREAM, retried by gRPC
        # clients). The core counts a stream until Python lets go of it.
        ("grpc.max_concurrent_streams", settings.max_concurrent_streams),
        # Count a stream against that bound while it is open on the wire, as
        # the client does; the core's default also counts streams Python has
        # not yet let go of, and refuses new ones the client may legitimately
        # open (REFUSED_STREAM): 50 of 96 calls from a grpc.aio client with 32
        # in flight on one channel failed UNAVAILABLE with a bound of 4.
        ("grpc.http.overload_protection", 0),
        # A request larger than this is refused before it is buffered whole;
        # the largest legitimate one (100 names in a batch get) is ~10 KiB.
        # Calls the core holds until Python asks for them: by default it fails
        # those beyond 1,000 at random, and all beyond 3,000, with CANCELLED
        # (which no client retries, and which says the caller cancelled).
        # The stream bound above already caps them at connections x streams;
        # past that, admission answers them, or the core at their deadline.
        ("grpc.server.max_pending_requests", 1 << 20),
        ("grpc.server.max_pending_requests_hard_limit", 1 << 20),
        ("grpc.max_receive_message_length", settings.max_receive_size),
        ("grpc.max_send_message_length", 16 * 1024 * 1024),
        # Idle connections are closed; old ones get GOAWAY, and calls still
        # open on them get --max-deadline (the longest a call may run) more.
        ("grpc.max_connection_idle_ms", int(settings.idle_timeout * 1000)),
        ("grpc.max_connection_age_ms", age_ms),
        ("grpc.max_connection_age_grace_ms", int(settings.max_deadline * 1000)),
        # A socket that never completes the HTTP/2 handshake is closed after 10 s.
        ("grpc.server_handshake_timeout_ms", 10_000),
        # Keepalive: ping an idle client every minute, drop it after 20 s
        # without an answer; accept client pings down to every 10 s, even
        # between calls, and close connections that ping more often
        # (GOAWAY "too_many_pings" after the core's default two strikes).
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
    ]


def raise_fd_limit() -> tuple[int, int]:
    """Raises the soft RLIMIT_NOFILE to the hard limit; returns (soft, hard) as now set."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft, hard


def open_fds(limit: int) -> int:
    """Descriptors the process has open (Linux /proc); ``limit`` when none is left to look."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError as exc:
        # Reading the directory takes a descriptor: failing for want of one
        # is the answer.
        return limit if exc.errno in (errno.EMFILE, errno.ENFILE) else -1


class FdWatch:
    """Logs once when descriptors run short (over ``FD_WARN_AT`` of the limit), once when eased."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.short = False

    def check(self) -> None:
        """Counts open descriptors; logs on crossing the threshold either way."""
        used = open_fds(self.limit)
        if used < 0 or self.limit <= 0:
            return
        short = used >= self.limit * FD_WARN_AT
        if short and not self.short:
            fields = {
                "open": used,
                "limit": self.limit,
                "effect": "new connections fail at the limit",
            }
            log.error("file descriptors running short", extra={"fields": fields})
        elif self.short and not short:
            log.info("file descriptors no longer short", extra={"fields": {"open": used}})
        self.short = short
