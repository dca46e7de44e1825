"""Assembly: the whole server is built in ``build_app``, and run by ``serve``.

Nothing happens at import time. ``build_app`` opens the store, loads the
TLS files and JWT keys (off the event loop), wires the use cases, servicers,
per-call pipeline, admission (``overload/``), health and reflection into a
grpc.aio server and binds it (TLS when ``--tls-cert`` is set); ``serve`` runs
it until SIGTERM/SIGINT and then drains it (``App.stop``): health goes
NOT_SERVING, calls that arrive or wait in the queue are answered UNAVAILABLE
(a client retries them on another replica) while the listener stays open,
calls already running get ``--grace`` seconds to finish, then the listener
closes, the store closes and the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

import grpc
from grpc_health.v1 import health, health_pb2_grpc

# grpc_health's public asyncio servicer; grpc-stubs predates it.
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]
from grpc_reflection.v1alpha import reflection

from microposts_client import method_table

from . import tls, tracing
from .auth import KEY_CHECK_INTERVAL, JwtAuthenticator, build_authenticator
from .config import ConfigError, Settings
from .health import Health
from .logs import CallLog
from .metrics import Metrics, serve_metrics
from .overload import Admission, Policy, Reason, make_server
from .overload.gated import TESTED_GRPC
from .page_tokens import PageTokens
from .rpc import DeadlinePolicy, Pipeline, add_services
from .service import Service
from .servicers import Servicers
from .store import Store, open_store, redact_url
from .transport import FdWatch, raise_fd_limit, server_options

log = logging.getLogger("microposts.server")

PURGE_INTERVAL = 600.0  # seconds between sweeps of expired request ids
DRAIN_MIN = 1.0
"""Seconds the listener stays open after NOT_SERVING, at least (or --grace if shorter).

Health-checking clients and load balancers move away in that time; calls
that still arrive are answered UNAVAILABLE, which clients retry elsewhere.
Closing the listener at once would leave calls racing in to be reset.
"""


def services() -> tuple[str, ...]:
    """The contract's services, in contract order (health reports each one)."""
    return tuple(dict.fromkeys(m.service for m in method_table().values()))


@dataclass
class App:
    """A built, bound, not yet started server and what it owns."""

    settings: Settings
    server: grpc.aio.Server
    store: Store
    health: Health
    metrics: Metrics
    address: str
    admission: Admission
    gated: bool  # whether admission sees the calls (grpc.aio internals found)
    fd_limit: int = 0
    authenticator: JwtAuthenticator | None = None
    tracer_provider: Any = None  # OpenTelemetry's, when tracing is on (flushed on stop)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _metrics_server: asyncio.Server | None = None

    async def start(self) -> None:
        await self.server.start()
        await self.health.start()
        self._tasks.append(asyncio.create_task(self._purge_requests()))
        self._tasks.append(asyncio.create_task(self._watch_fds()))
        if self.authenticator is not None:
            self._tasks.append(asyncio.create_task(self._watch_keys(self.authenticator)))
        fields: dict[str, object] = {
            "address": self.address,
            "store": redact_url(self.settings.store),
            "fd_limit": self.fd_limit,
        }
        if self.settings.metrics_address:
            self._metrics_server, fields["metrics"] = await serve_metrics(
                self.metrics, self.settings.metrics_address
            )
        if not self.gated:
            log.warning(
                "overload control off: this grpcio is untested, or lacks the internals it needs",
                extra={"fields": {"grpcio": grpc.__version__, "tested": list(TESTED_GRPC)}},
            )
        log.info("serving", extra={"fields": fields})

    async def _watch_keys(self, authenticator: JwtAuthenticator) -> None:
        """Re-reads --jwt-keys when it changes (the look itself runs off the event loop)."""
        while True:
            await asyncio.sleep(KEY_CHECK_INTERVAL)
            try:
                await authenticator.reload_if_changed()
            except Exception:
                log.exception("checking --jwt-keys failed")

    async def _purge_requests(self) -> None:
        while True:
            await asyncio.sleep(PURGE_INTERVAL)
            try:
                purged = await self.store.purge_requests(time.time_ns() // 1000)
                if purged:
                    log.info("purged request ids", extra={"fields": {"count": purged}})
            except Exception:
                log.exception("purging request ids failed")

    async def _watch_fds(self) -> None:
        watch = FdWatch(self.fd_limit)
        while True:
            await asyncio.sleep(self.settings.health_interval)
            watch.check()

    async def stop(self, grace: float | None = None) -> None:
        """Drain, then stop: NOT_SERVING, new and queued calls UNAVAILABLE, running ones finish."""
        grace = self.settings.grace if grace is None else grace
        end = time.monotonic() + grace
        log.info("shutting down", extra={"fields": {"grace_s": grace}})
        for task in self._tasks:
            task.cancel()
        await self.health.stop()
        admission = self.admission
        admission.drain()
        await asyncio.sleep(min(DRAIN_MIN, grace))
        idle = asyncio.Event()
        admission.when_idle(idle.set)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(idle.wait(), max(0.0, end - time.monotonic()))
        unfinished = admission.in_flight
        # Running calls are done (or out of time): close the listener, and end
        # what is left (streams such as health watches) without waiting.
        await self.server.stop(0)
        if self._metrics_server is not None:
            self._metrics_server.close()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.store.close()
        if self.tracer_provider is not None:
            # The last calls' spans go out before the process does.
            await asyncio.to_thread(self.tracer_provider.shutdown)
        turned_away = admission.stats.rejected[Reason.DRAINING]
        log.info(
            "stopped",
            extra={"fields": {"answered_unavailable": turned_away, "cut_off": unfinished}},
        )


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS (and mTLS with --tls-client-ca) credentials that follow the files; None: plaintext.

    gRPC asks ``fetch`` on every new connection, in one of its own threads:
    it costs a ``stat`` of each file, and reads them only when they changed
    (``tls.watch``). Connections already open keep what they negotiated.
    """
    if not settings.tls_cert:
        return None
    files = tls.TlsFiles(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
    try:
        material = tls.watch(files)
    except tls.TlsFileError as exc:
        raise ConfigError(str(exc)) from None

    def configuration(m: tls.TlsMaterial) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration([(m.key, m.chain)], m.client_ca)

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        new = material.check()
        return None if new is None else configuration(new)

    return grpc.dynamic_ssl_server_credentials(
        configuration(material.current),
        fetch,  # type: ignore[arg-type]  # grpc-stubs: None means "no change", as gRPC documents
        require_client_authentication=bool(settings.tls_client_ca),
    )


def _bind(server: grpc.aio.Server, settings: Settings) -> int:
    """Binds the address (TLS or plaintext); OSError naming --address if it cannot."""
    credentials = server_credentials(settings)
    try:
        if credentials is None:
            return server.add_insecure_port(settings.address)
        return server.add_secure_port(settings.address, credentials)
    except RuntimeError as exc:
        reason = "address in use" if _in_use(settings.address) else str(exc)
        raise OSError(f"--address: cannot listen on {settings.address}: {reason}") from None


def _in_use(address: str) -> bool:
    """Whether something else holds ``address`` (gRPC's bind error does not say why)."""
    host, _, port = address.rpartition(":")
    try:
        infos = socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)
    except OSError:
        return False
    for family, kind, proto, _, sockaddr in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(sockaddr)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return True
    return False


# The one assembly function: it names every part of the server once, in the
# order they depend on one another, which is why it is a little over 50 lines.
async def build_app(
    settings: Settings,
    *,
    store: Store | None = None,
    call_log_stream: TextIO | None = None,
    tracer_provider: Any = None,
) -> App:
    """Builds the whole server.

    ``store`` replaces the one named in settings, ``call_log_stream`` the
    per-call log's stream (stderr), and ``tracer_provider`` the OpenTelemetry
    provider the ``OTEL_*`` variables configure (``tracing.py``; off when
    they ask for nothing): all three for tests.
    """
    if tracer_provider is None:
        tracer_provider = tracing.provider_from_env()
    store, service = await _open_service(settings, store)
    fd_limit, _hard = raise_fd_limit()
    metrics = Metrics()
    admission = Admission(
        Policy(max_concurrency=settings.max_concurrency, max_wait=settings.max_queue_wait)
    )
    server, gated = make_server(server_options(settings), admission, services())
    metrics.extra.append(lambda: admission.stats.render(admission))
    health_servicer = health_aio.HealthServicer()
    app_health = Health(health_servicer, services(), store, settings.health_interval)
    try:
        pipeline = Pipeline(
            DeadlinePolicy(max_deadline=settings.max_deadline, min_deadline=settings.min_deadline),
            metrics,
            CallLog(settings.log_level, call_log_stream),
            authenticator=await _authenticator(settings),
            client_certificates=bool(settings.tls_client_ca),
            store_failed=app_health.write_failed,
            tracer=None if tracer_provider is None else tracer_provider.get_tracer(__package__),
        )
        port = _register(server, settings, Servicers(service), pipeline, health_servicer)
    except BaseException:
        await store.close()
        raise
    address = f"{settings.address.rpartition(':')[0]}:{port}"
    return App(
        settings,
        server,
        store,
        app_health,
        metrics,
        address,
        admission,
        gated,
        fd_limit,
        pipeline.authenticator,
        tracer_provider,
    )


async def _open_service(settings: Settings, store: Store | None) -> tuple[Store, Service]:
    """The store (the one given, or the one settings name) and the use cases on it."""
    if store is None:
        store = await open_store(
            settings.store, durability=settings.durability, pool_size=settings.pool_size
        )
    tokens = PageTokens(await store.page_token_key())
    return store, Service(store, tokens, request_ttl=settings.request_id_ttl)


def _register(
    server: grpc.aio.Server,
    settings: Settings,
    servicers: Servicers,
    pipeline: Pipeline,
    health_servicer: Any,
) -> int:
    """Our services through the pipeline, health, reflection (unless off); binds; the port."""
    add_services(server, servicers.handlers(), pipeline)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if settings.reflection == "on":
        reflection.enable_server_reflection(
            (*services(), health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
    return _bind(server, settings)


async def _authenticator(settings: Settings) -> JwtAuthenticator | None:
    """The --auth jwt authenticator, its key file read off the event loop; None: auth off."""
    if settings.auth != "jwt":
        return None
    try:
        return await asyncio.to_thread(
            build_authenticator,
            settings.jwt_keys,
            settings.jwt_issuer,
            settings.jwt_audience,
            settings.jwt_clock_skew,
        )
    except (ValueError, OSError) as exc:
        raise ConfigError(f"--jwt-keys: {settings.jwt_keys}: {exc}") from None


async def serve(settings: Settings) -> int:
    """Runs one server process until SIGTERM/SIGINT; returns the exit status."""
    app = await build_app(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await app.start()
    await stop.wait()
    await app.stop()
    return 0
