"""A monotonic clock for the client's unit tests: it stands still until the test moves it."""

from __future__ import annotations


class Clock:
    """``time.monotonic`` stand-in: call it for ``now``; set or add to ``now`` to move it."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
