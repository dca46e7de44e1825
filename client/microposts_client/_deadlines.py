"""Deadlines: the scoped budget (``deadline()``) and the ambient end a call inherits.

A deadline is a point on :func:`time.monotonic`'s clock. One context variable
holds the earliest end that applies to the code running now; it is set by
:func:`deadline` scopes and by the server interceptors (the incoming call's
deadline minus a margin, see :mod:`microposts_client._interceptors`). Because
it is a :class:`contextvars.ContextVar`, a plain ``with`` works in threads and
in asyncio alike, and tasks created inside a scope inherit it.

A call's end is the earliest of its own timeout, this ambient end, and
nothing else: ``timeout=None`` turns off only the call's own timeout, never an
enclosing budget or an inherited deadline.
"""

from __future__ import annotations

import contextvars
import time

__all__ = ["current_end", "deadline", "time_remaining"]

# None means "no budget in force".
_END: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "microposts_client_deadline", default=None
)

# Bound once: these run on every call.
_monotonic = time.monotonic
current_end = _END.get
"""The monotonic time at which the current budget ends, or ``None``."""


def time_remaining() -> float | None:
    """Seconds left in the current budget (never below 0), or ``None`` if none is set."""
    end = _END.get()
    if end is None:
        return None
    return max(0.0, end - _monotonic())


class deadline:  # lower case: used like a function, as asyncio.timeout is
    """Bound every call made inside the block to ``seconds`` from entering it.

    ``with deadline(0.5): client.get_user(...)`` — like Go's
    ``context.WithTimeout``. Works as ``with`` (sync or async code) and as
    ``async with``. Nested scopes take the earlier end: an inner scope can
    shorten the budget, never extend it. The scope does not interrupt code
    that makes no call; it only bounds the calls. A call started when the
    budget is spent raises :class:`~microposts_client.DeadlineExceeded`
    without touching the network.
    """

    __slots__ = ("_seconds", "_tokens", "end")

    def __init__(self, seconds: float) -> None:
        self._seconds = float(seconds)
        self._tokens: list[contextvars.Token[float | None]] = []
        self.end: float | None = None
        """Monotonic end while active: the earlier of this scope's and any outer one's."""

    def remaining(self) -> float:
        """Seconds left in this scope (0 once spent); only meaningful inside the block."""
        if self.end is None:
            return self._seconds
        return max(0.0, self.end - _monotonic())

    def __enter__(self) -> deadline:
        end = _monotonic() + self._seconds
        outer = _END.get()
        if outer is not None and outer < end:
            end = outer
        self.end = end
        self._tokens.append(_END.set(end))
        return self

    def __exit__(self, *exc_info: object) -> None:
        _END.reset(self._tokens.pop())

    # `async with` needs coroutines; they do what `with` does (a scope does no I/O).
    async def __aenter__(self) -> deadline:
        return self.__enter__()

    async def __aexit__(self, *exc_info: object) -> None:
        self.__exit__()

    def __repr__(self) -> str:
        return f"deadline({self._seconds!r})"
