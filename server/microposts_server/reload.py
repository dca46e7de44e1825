"""Values loaded from files and loaded again when the files change (certificates, keys).

``Reloadable.check()`` is cheap when nothing changed (one ``os.stat`` per
file) and blocking when something did (it reads and parses the files), so
callers run it where blocking is fine: gRPC's handshake thread for TLS
material, a worker thread (``asyncio.to_thread``) for JWT keys. A new
version that fails to load keeps the old value in use and logs why, once
per version of the files; the next change is tried again. Files written in
several steps (a certificate, then its key) simply fail until the last step
lands, then load.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger("microposts.server")

T = TypeVar("T")

Signature = tuple[tuple[int, int, int] | None, ...]


def signature(paths: Sequence[str]) -> Signature:
    """What identifies this version of ``paths``: inode, size and mtime of each (None: missing)."""
    out: list[tuple[int, int, int] | None] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append(None)
        else:
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


class Reloadable(Generic[T]):
    """The value ``load()`` makes from ``paths``, made again when they change.

    ``what`` names the value in log lines ("tls certificates", "jwt keys").
    ``load`` raises ``ValueError`` or ``OSError`` with a reason when the files
    are unusable; the first load's error propagates (the server cannot start
    without it), later ones are logged and the old value stays.
    """

    def __init__(self, what: str, paths: Sequence[str], load: Callable[[], T]) -> None:
        self.what = what
        self.paths = tuple(paths)
        self._load = load
        self._lock = threading.Lock()
        self._seen = signature(self.paths)
        self.current: T = load()

    def changed(self) -> bool:
        """Whether the files differ from the version last loaded (or tried); stats only."""
        return signature(self.paths) != self._seen

    def check(self) -> T | None:
        """The new value if the files changed and load cleanly, else ``None`` (keep ``current``)."""
        if not self.changed():
            return None
        if not self._lock.acquire(blocking=False):  # another thread is on it
            return None
        try:
            seen = signature(self.paths)
            if seen == self._seen:
                return None
            self._seen = seen
            try:
                value = self._load()
            except (ValueError, OSError) as exc:
                log.warning(
                    f"{self.what} not reloaded; keeping the ones in use",
                    extra={"fields": {"files": list(self.paths), "error": str(exc)}},
                )
                return None
            self.current = value
            log.info(f"{self.what} reloaded", extra={"fields": {"files": list(self.paths)}})
            return value
        finally:
            self._lock.release()
