"""What ``grpc.health.v1`` says, and the log lines that go with each change.

Three facts decide it: the store answers (checked every
``--health-interval`` on a connection of its own), the store's writes work
(a write that failed in a lasting way, ``domain.StoreFailed``, marks them
broken until a probe write succeeds), and the server is not shutting down.
SERVING needs all three; NOT_SERVING takes the replica out of rotation for
load balancers and health-checking clients.

Each change is logged once, not once per call: "store unreachable" /
"store reachable again" (only after it was unreachable), "store writes
failing" (error level: an operator must act) / "store writes work again".
Once shutdown begins the watcher stops, so nothing about the store is
logged between "shutting down" and "stopped".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from grpc_health.v1 import health_pb2

# grpc_health's public asyncio servicer; grpc-stubs predates it.
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]

from . import domain
from .store import Store

log = logging.getLogger("microposts.server")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Health:
    """Owns the health servicer's status; ``watch()`` runs until shutdown."""

    def __init__(
        self,
        servicer: health_aio.HealthServicer,
        services: tuple[str, ...],
        store: Store,
        interval: float,
    ) -> None:
        self.servicer = servicer
        self.services = services
        self.store = store
        self.interval = interval
        self.reachable = True
        self.write_fault: domain.StoreFailed | None = None
        self.fault_since = 0.0
        self.stopping = False
        self._shown: bool | None = None
        self._task: asyncio.Task[None] | None = None
        self._pending: asyncio.Task[None] | None = None

    @property
    def serving(self) -> bool:
        """Whether the replica should receive calls now."""
        return self.reachable and self.write_fault is None and not self.stopping

    async def start(self) -> None:
        """SERVING, and the watcher started."""
        await self._show()
        self._task = asyncio.create_task(self._watch())

    def write_failed(self, exc: domain.StoreFailed) -> None:
        """A write failed in a way that lasts (called by the pipeline): NOT_SERVING until probed."""
        if self.write_fault is None and not self.stopping:
            self.write_fault, self.fault_since = exc, time.monotonic()
            log.error(
                "store writes failing",
                extra={"fields": {"error": str(exc), "full": exc.full}},
            )
            task = asyncio.get_running_loop().create_task(self._show())
            self._pending = task  # keep a reference until it ran

    async def stop(self) -> None:
        """Shutdown begins: the watcher stops, and NOT_SERVING for good."""
        self.stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.servicer.enter_graceful_shutdown()

    async def _show(self) -> None:
        serving = self.serving
        if serving == self._shown or self.stopping:
            return
        self._shown = serving
        status = SERVING if serving else NOT_SERVING
        for service in ("", *self.services):
            await self.servicer.set(service, status)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self._check_reachable()
            if self.write_fault is not None and self.reachable:
                await self._check_writes()
            await self._show()

    async def _check_reachable(self) -> None:
        try:
            await asyncio.wait_for(self.store.ping(), self.interval)
        except (domain.Unavailable, TimeoutError) as exc:
            if self.reachable:
                log.warning("store unreachable", extra={"fields": {"error": str(exc)}})
            self.reachable = False
            return
        if not self.reachable:
            log.info("store reachable again")
        self.reachable = True

    async def _check_writes(self) -> None:
        try:
            await asyncio.wait_for(self.store.check_writes(), self.interval)
        except (domain.DomainError, TimeoutError):
            return
        failed_for = round(time.monotonic() - self.fault_since, 1)
        log.info("store writes work again", extra={"fields": {"failed_s": failed_for}})
        self.write_fault = None
