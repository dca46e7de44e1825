"""Traces: the OpenTelemetry SDK set up from the standard ``OTEL_*`` variables, or nothing.

Off unless asked for, so a server that nobody configured pays nothing per
call. On when ``OTEL_TRACES_EXPORTER`` names an exporter (``otlp`` or
``console``; ``none`` is off) or an OTLP endpoint is set
(``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``),
and ``OTEL_SDK_DISABLED`` is not ``true``. Everything else follows the
standard variables as the SDK reads them: ``OTEL_SERVICE_NAME`` (default
``microposts-server``), ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``,
``OTEL_BSP_*`` (batching), ``OTEL_EXPORTER_OTLP_*`` (where and how to send).
The SDK and the OTLP exporter come with ``pip install 'microposts-server[otel]'``.

The spans themselves (one per call) are opened by the per-call pipeline
through ``microposts_client._tracing``, the same code that traces the
client's calls and the propagation interceptors.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .config import ConfigError

__all__ = ["TracingError", "provider_from_env"]

DEFAULT_SERVICE_NAME = "microposts-server"


class TracingError(ConfigError):
    """The ``OTEL_*`` variables ask for something this installation cannot do; names the variable.

    A ``ConfigError``: the server stops with one line and exit status 2, as for
    a bad setting of its own.
    """


def _exporter_name(env: Mapping[str, str]) -> str | None:
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    name = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if name:
        return None if name == "none" else name
    if env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return "otlp"
    return None


def provider_from_env(env: Mapping[str, str] | None = None) -> Any:
    """A configured SDK ``TracerProvider``, or ``None`` when tracing is off.

    Raises :class:`TracingError` (naming the variable) when the variables ask
    for an exporter this installation lacks.
    """
    env = os.environ if env is None else env
    name = _exporter_name(env)
    if name is None:
        return None
    try:
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        raise TracingError(
            "OTEL_TRACES_EXPORTER: tracing needs the OpenTelemetry SDK: "
            "pip install 'microposts-server[otel]'"
        ) from None
    exporter: Any
    if name == "console":
        exporter = ConsoleSpanExporter()
    elif name == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise TracingError(
                "OTEL_TRACES_EXPORTER: the OTLP exporter is not installed: "
                "pip install 'microposts-server[otel]'"
            ) from None
        exporter = OTLPSpanExporter()
    else:
        raise TracingError(f"OTEL_TRACES_EXPORTER: expected otlp, console or none, got {name!r}")
    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, but
    # an attribute passed to it wins over both: ours is only the default name.
    named = env.get("OTEL_SERVICE_NAME") or "service.name=" in env.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    resource = Resource.create({} if named else {SERVICE_NAME: DEFAULT_SERVICE_NAME})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider
