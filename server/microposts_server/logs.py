"""Structured logs: one JSON object per line on stderr.

Records carry their fields in ``extra={"fields": {...}}``. The per-call line
(method, code, duration, request id, peer, caller, the deadline the caller
sent, the time left at the end, store time) has its own fast writer,
``CallLog``. No line ever holds a credential: the caller is named by the
identity its token or certificate proved, never by the token.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any, TextIO

from .deadlines import Budget


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: ts, level, logger, msg, fields, error."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            out.update(fields)
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


LIFECYCLE_LOGGERS = ("microposts.server", "microposts.workers")


def configure(level: str) -> None:
    """Sends every logger's records to stderr as JSON lines at ``level``.

    The lifecycle lines ("serving" with the address, "shutting down",
    "stopped", store outages) are logged whatever the level: they are few,
    and whoever started the server needs them (the address, when it bound
    port 0). ``--log-level warning`` silences the per-call lines.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in LIFECYCLE_LOGGERS:
        logging.getLogger(name).setLevel(min(logging.INFO, root.level))


def _json_string(value: str) -> str:
    """``value`` as a JSON string; plain ASCII skips json.dumps (it is on every call)."""
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return f'"{value}"'
    return json.dumps(value)


class CallLog:
    """Writes the per-call line, one JSON object, without the ``logging`` machinery.

    A ``logging`` call with a JSON formatter costs ~30 µs (LogRecord, caller
    lookup, the handler's lock, a flush per line) and was the largest single
    cost of a GetMicropost; this writer costs a few µs. Lines look exactly like
    ``JsonFormatter``'s (logger ``microposts.call``, msg ``call``). Each line
    is written before the reply leaves, so a caller that got its reply can
    find its line.
    """

    def __init__(self, level: str, stream: TextIO | None = None) -> None:
        self.enabled = logging.getLevelName(level.upper()) <= logging.INFO
        self._stream = stream
        self._second = -1
        self._prefix = ""

    def _ts(self, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((now - second) * 1000):03d}Z"

    def call(
        self,
        method: str,
        code: str,
        duration: float,
        request_id: str,
        peer: str,
        budget: Budget,
        left: float,
        caller: str | None = None,
    ) -> None:
        """Writes one call's line (method, code, duration, ids, caller, deadline, store time).

        ``caller``: the token's ``sub`` or the client certificate's subject;
        ``None`` (JSON null) when the call proved no identity.
        """
        sent = budget.sent
        deadline = "null" if sent is None else f"{sent * 1000:.1f}"
        who = "null" if caller is None else _json_string(caller)
        line = (
            f'{{"ts": "{self._ts(time.time())}", "level": "info", "logger": "microposts.call", '
            f'"msg": "call", "method": "{method}", "code": "{code}", '
            f'"duration_ms": {duration * 1000:.3f}, "request_id": {_json_string(request_id)}, '
            f'"peer": {_json_string(peer)}, "caller": {who}, "deadline_ms": {deadline}, '
            f'"left_ms": {left * 1000:.1f}, "store_ms": {budget.store_seconds * 1000:.3f}, '
            f'"store_calls": {budget.store_calls}}}\n'
        )
        if self._stream is None:
            os.write(2, line.encode())  # one syscall; stderr's text layer adds ~2 us
        else:
            self._stream.write(line)
