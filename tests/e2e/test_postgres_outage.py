"""PostgreSQL goes away under a running server process, and comes back.

While it is gone, health reads NOT_SERVING and calls fail UNAVAILABLE (never
INTERNAL); once it is back, both recover without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from microposts.v1 import resources_pb2 as rpb
from microposts.v1 import user_service_pb2 as upb
from microposts.v1 import user_service_pb2_grpc as ugrpc
from tests import pg
from tests.serverproc import ServerProcess


class TcpProxy:
    """A tiny TCP proxy (its own thread and event loop) from 127.0.0.1:port to PostgreSQL.

    ``cut()`` drops every open connection and stops listening, so connects
    are refused: to the server behind it, the database is down. ``restore()``
    listens again on the same port. It exists so that a test can take "the
    database" away without stopping the machine's real PostgreSQL, which
    other test runs share.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.Server | None = None
        self.conns: set[asyncio.StreamWriter] = set()

    def __enter__(self) -> TcpProxy:
        self.thread.start()
        self.restore()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cut()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def _call(self, coro: Awaitable[Any]) -> Any:
        async def wrapped() -> Any:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result(10)

    def restore(self) -> None:
        async def listen() -> None:
            self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
            self.port = self.server.sockets[0].getsockname()[1]

        self._call(listen())

    def cut(self) -> None:
        async def close() -> None:
            if self.server is not None:
                self.server.close()
                self.server = None
            for writer in self.conns:
                writer.transport.abort()
            self.conns.clear()

        self._call(close())

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.conns |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.conns -= {writer, up_writer}


def _health(channel: grpc.Channel) -> Any:
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status


def _wait_health(channel: grpc.Channel, want: Any, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while (got := _health(channel)) != want:
        assert time.monotonic() < deadline, f"health stayed {got}, wanted {want}"
        time.sleep(0.1)


def test_database_outage_flips_health_and_calls_are_unavailable_then_recover() -> None:
    """The database goes away under a running server and comes back.

    We do not stop the machine's PostgreSQL (other test runs on this machine
    and CI share it): the server reaches it through ``TcpProxy``, and cutting
    the proxy is, to the server, the database going down (connections reset,
    new ones refused).
    """
    host, port = "127.0.0.1", int(pg.ADMIN_URL.rsplit(":", 1)[1].split("/")[0])
    with (
        TcpProxy(host, port) as proxy,
        pg.session_database().schema(port=proxy.port) as url,
        ServerProcess(url, "--health-interval", "0.2") as srv,
        grpc.insecure_channel(srv.address) as channel,
    ):
        users = ugrpc.UserServiceStub(channel)

        def create(name: str) -> Any:
            user = rpb.User(username=name, display_name=name)
            return users.CreateUser(upb.CreateUserRequest(user=user, request_id=name), timeout=5)

        def get(name: str) -> Any:
            return users.GetUser(upb.GetUserRequest(name=f"users/{name}"), timeout=5)

        _wait_health(channel, health_pb2.HealthCheckResponse.SERVING)
        create("before")

        proxy.cut()
        _wait_health(channel, health_pb2.HealthCheckResponse.NOT_SERVING)
        for call in (lambda: get("before"), lambda: create("during")):
            with pytest.raises(grpc.RpcError) as err:
                call()
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE

        proxy.restore()
        _wait_health(channel, health_pb2.HealthCheckResponse.SERVING)
        assert get("before").username == "before"
        create("after")
        assert get("after").username == "after"

        assert srv.logs(msg="store unreachable") and srv.logs(msg="store reachable again")
        assert not srv.logs(code="INTERNAL")
        assert {r["code"] for r in srv.logs(msg="call")} == {"OK", "UNAVAILABLE"}
