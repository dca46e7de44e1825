"""Run the real MicroPosts app in the test process, for the integration tests.

``with serve_app(url) as srv:`` builds the app with ``build_app`` on a fresh
event loop in a thread, binds port 0 and reads the port back
(``srv.address``), and serves until the block ends, when it stops the app
gracefully (health NOT_SERVING, drain, close the store). Tests call it over
a real socket with the blocking stubs ``srv.users`` and ``srv.posts``
(``srv.channel`` for raw calls). What the app logs, the per-call lines and
its log records, is kept in ``srv.log_lines`` as parsed JSON objects, as
``tests/serverproc.py`` keeps a server process's stderr. With ``secured``
(``tests/credentials.Secured``) the app serves TLS with ``--auth jwt``, and
the stubs call it over TLS with an administrator's token, so every call is
allowed and any test runs unchanged.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc

from microposts.v1 import micropost_service_pb2_grpc, user_service_pb2_grpc
from microposts_server.app import App, build_app
from microposts_server.config import Settings
from microposts_server.logs import JsonFormatter
from tests.credentials import Secured
from tests.grpcservers import LoopThread


@dataclass(frozen=True)
class AppServer:
    """A running in-process app: where it listens, stubs that call it, what it logged."""

    address: str
    channel: grpc.Channel
    users: user_service_pb2_grpc.UserServiceStub
    posts: micropost_service_pb2_grpc.MicropostServiceStub
    log_lines: list[dict[str, Any]]
    app: App

    def logs(self, **match: Any) -> list[dict[str, Any]]:
        """Log records whose fields equal ``match``.

        A call's records are all here by the time its reply arrives: the app
        writes them before replying, in this process.
        """
        return [r for r in list(self.log_lines) if all(r.get(k) == v for k, v in match.items())]


class _CallLines(io.StringIO):
    """The app's per-call log stream: each line parsed into ``sink``."""

    def __init__(self, sink: list[dict[str, Any]]) -> None:
        super().__init__()
        self.sink = sink

    def write(self, line: str) -> int:
        self.sink.append(json.loads(line))
        return len(line)


class _Records(logging.Handler):
    """The app's log records, formatted as the server formats them, then parsed.

    Only records logged on the app's own loop thread: another in-process app
    (or the test) logging at the same time is not this one.
    """

    def __init__(self, thread: int, sink: list[dict[str, Any]]) -> None:
        super().__init__()
        self.thread = thread
        self.sink = sink
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.sink.append(json.loads(self.format(record)))


async def _thread_id() -> int:
    return threading.get_ident()


async def _start(
    store: str, log_lines: list[dict[str, Any]], secured: Secured | None, settings: dict[str, Any]
) -> App:
    security = secured.settings() if secured is not None else {}
    app = await build_app(
        Settings(address="127.0.0.1:0", store=store, **security, **settings),
        call_log_stream=_CallLines(log_lines),
    )
    await app.start()
    return app


def _channel(address: str, secured: Secured | None) -> grpc.Channel:
    if secured is None:
        return grpc.insecure_channel(address)
    # An hour: longer than any test module takes.
    token = secured.issuer.token("api_admin", scope="microposts.admin", lifetime=3600)
    return grpc.secure_channel(address, secured.channel_credentials(token))


@contextmanager
def serve_app(store: str, secured: Secured | None = None, **settings: Any) -> Iterator[AppServer]:
    """``build_app(Settings(address="127.0.0.1:0", store=store, **settings))`` on a loop thread."""
    loop = LoopThread()
    log_lines: list[dict[str, Any]] = []
    records = _Records(loop.run(_thread_id()), log_lines)
    logger = logging.getLogger("microposts")
    logger.addHandler(records)
    try:
        app = loop.run(_start(store, log_lines, secured, settings))
        try:
            with _channel(app.address, secured) as channel:
                yield AppServer(
                    app.address,
                    channel,
                    user_service_pb2_grpc.UserServiceStub(channel),
                    micropost_service_pb2_grpc.MicropostServiceStub(channel),
                    log_lines,
                    app,
                )
        finally:
            # Graceful, with a short grace: nothing is in flight when a test is done,
            # and the drain's own pause (DRAIN_MIN) would add a second to every test.
            loop.run(app.stop(0.1))
    finally:
        logger.removeHandler(records)
        loop.close()
