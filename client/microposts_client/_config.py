"""Client configuration: default timeouts, the "not given" sentinel, channel setup.

Defaults are module constants so they are documented in one place:

- reads (``get_*``, ``batch_get_*``, each page of ``list_*``):
  :data:`DEFAULT_READ_TIMEOUT` seconds;
- writes (``create_*``, ``update_*``, ``delete_*``):
  :data:`DEFAULT_WRITE_TIMEOUT` seconds (they commit to disk before replying).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from ._version import __version__

__all__ = [
    "DEFAULT_READ_TIMEOUT",
    "DEFAULT_WRITE_TIMEOUT",
    "USE_CLIENT_DEFAULT",
    "Timeout",
    "Timeouts",
    "UseClientDefault",
]

DEFAULT_READ_TIMEOUT: Final = 2.0
"""Seconds a read may take unless configured: a call inside a data centre costs well under 0.1 s."""

DEFAULT_WRITE_TIMEOUT: Final = 5.0
"""Seconds a write may take unless configured: it waits for the commit."""


class UseClientDefault(enum.Enum):
    """Type of :data:`USE_CLIENT_DEFAULT`."""

    USE_CLIENT_DEFAULT = enum.auto()

    def __repr__(self) -> str:
        return "USE_CLIENT_DEFAULT"


USE_CLIENT_DEFAULT: Final = UseClientDefault.USE_CLIENT_DEFAULT
"""``timeout=`` not given: use the client's default for the method.

Distinct from ``None`` (no client deadline at all) and from ``0`` (a budget
already spent: the call fails at once with ``DeadlineExceeded``).
"""


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Default timeouts in seconds, per kind of method; ``None`` means no client deadline.

    ``Client(target, timeout=Timeouts(read=1.0, write=3.0))``. A bare number
    ``timeout=2.0`` sets both.
    """

    read: float | None = DEFAULT_READ_TIMEOUT
    """For reads: get, batch get, and each page of a list."""
    write: float | None = DEFAULT_WRITE_TIMEOUT
    """For writes: create, update, delete."""

    @classmethod
    def of(cls, timeout: float | Timeouts | UseClientDefault | None) -> Timeouts:
        """Normalise a client's ``timeout=`` argument."""
        if isinstance(timeout, Timeouts):
            return timeout
        if timeout is USE_CLIENT_DEFAULT:
            return cls()
        if timeout is None:
            return cls(None, None)
        seconds = float(timeout)
        return cls(seconds, seconds)


Timeout = float | None | UseClientDefault
"""What a method's ``timeout=`` accepts."""


RECONNECT_MAX_BACKOFF: Final = 0.5
"""Seconds the channel waits at most between attempts to connect to an address that does
not answer; a retry after a failure that no server answered waits no longer than this
(``_retry.pause_before_retry``): it would only find the channel as it left it."""

_USER_AGENT: Final = f"microposts-client/{__version__}"
_BALANCED: Final = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})

DEFAULT_CHANNEL_OPTIONS: Final[tuple[tuple[str, Any], ...]] = (
    # Spread calls over every address the target resolves to (replicas behind
    # one DNS name, or a list of addresses), skipping replicas not SERVING.
    ("grpc.service_config", _BALANCED),
    # Ignore service configs published in DNS: ours is the one we test.
    ("grpc.service_config_disable_resolution", 1),
    # Detect a dead connection during a call. Five minutes is the least that a
    # gRPC server tolerates by default (grpc.http2.min_recv_ping_interval_
    # without_data_ms); no pings on an idle connection.
    ("grpc.keepalive_time_ms", 300_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 0),
    # Reconnect soon after a server comes back. gRPC waits 1 s after a failed
    # connection attempt, then 1.6 s, 2.6 s... (up to 120 s, +/-20 % jitter),
    # and while it waits every attempt of a call fails at once: a server down
    # for ~1 s was seen again only ~2.6 s later, after the 2 s reads retrying
    # through the restart had run out of time. From 0.1 s, growing to 0.5 s at
    # most, a restarted server is reached within ~0.6 s of listening again.
    # The cost: while an address does not answer, each client tries to connect
    # to it at most every 0.5 s (a refused SYN, or a connection attempt left
    # pending on an address that drops packets) for as long as the client is in
    # use, and replicas coming back see their clients' reconnects within 0.5 s.
    # Deliberately not grpc.min_reconnect_backoff_ms: despite its name it is
    # the least time a connection attempt is given (20 s by default); lowered,
    # a TCP + TLS handshake slower than that (a lost SYN waits 1 s) never
    # completes.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", int(RECONNECT_MAX_BACKOFF * 1000)),
    # A page of 1000 posts of 300 four-byte characters is ~1.3 MB; leave room.
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.max_send_message_length", 4 * 1024 * 1024),
    ("grpc.primary_user_agent", _USER_AGENT),
)


def channel_options(extra: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The default options with ``extra`` overriding any of the same name."""
    merged = dict(DEFAULT_CHANNEL_OPTIONS)
    merged.update(extra)
    return list(merged.items())
