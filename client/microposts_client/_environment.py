"""Client settings from the environment, for what a client's arguments leave out.

A service deployed in several places sets where MicroPosts is and how long it
may take in its environment, as the server reads its own settings:

- ``MICROPOSTS_TARGET``: the target when ``Client()``/``AsyncClient()`` is
  given none (any form :func:`~microposts_client._targets.build_target`
  accepts: ``host:port``, ``dns:///host:port``...);
- ``MICROPOSTS_READ_TIMEOUT``, ``MICROPOSTS_WRITE_TIMEOUT``: the default
  timeouts in seconds (a number > 0) when ``timeout=`` is not given; each
  one unset keeps its built-in default.

An argument always wins: ``timeout=`` given in any form ignores both
variables. They are read when a client is built, never at import. A bad value
raises :class:`ValueError` naming the variable.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Final

from ._config import (
    DEFAULT_READ_TIMEOUT,
    DEFAULT_WRITE_TIMEOUT,
    USE_CLIENT_DEFAULT,
    Timeouts,
    UseClientDefault,
)

__all__ = ["READ_TIMEOUT_VARIABLE", "TARGET_VARIABLE", "WRITE_TIMEOUT_VARIABLE"]

TARGET_VARIABLE: Final = "MICROPOSTS_TARGET"
READ_TIMEOUT_VARIABLE: Final = "MICROPOSTS_READ_TIMEOUT"
WRITE_TIMEOUT_VARIABLE: Final = "MICROPOSTS_WRITE_TIMEOUT"


def target_or_environment(
    target: str | Sequence[str] | None, environ: Mapping[str, str] = os.environ
) -> str | Sequence[str]:
    """``target`` if given, else ``MICROPOSTS_TARGET``; neither is a :class:`ValueError`."""
    if target is not None:
        return target
    value = environ.get(TARGET_VARIABLE, "")
    if not value:
        raise ValueError(
            f"no target: pass one, e.g. Client('localhost:50051'), or set {TARGET_VARIABLE}"
        )
    return value


def timeouts_or_environment(
    timeout: float | Timeouts | UseClientDefault | None,
    environ: Mapping[str, str] = os.environ,
) -> Timeouts:
    """The client's default timeouts: ``timeout`` if given, else the environment's or built in."""
    if timeout is not USE_CLIENT_DEFAULT:
        return Timeouts.of(timeout)
    return Timeouts(
        read=_seconds(environ, READ_TIMEOUT_VARIABLE, DEFAULT_READ_TIMEOUT),
        write=_seconds(environ, WRITE_TIMEOUT_VARIABLE, DEFAULT_WRITE_TIMEOUT),
    )


def _seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"{name}={text!r}: expected seconds, a number > 0 (e.g. {default})")
    return seconds
