"""Tracing is off unless the standard OTEL_* variables ask for it (``tracing.py``)."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider

from microposts_server.tracing import TracingError, provider_from_env


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"OTEL_TRACES_EXPORTER": "none"},
        {"OTEL_SERVICE_NAME": "mine"},  # naming the service alone turns nothing on
        {"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_SDK_DISABLED": "TRUE"},
    ],
)
def test_off_unless_configured(env: dict[str, str]) -> None:
    assert provider_from_env(env) is None


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_TRACES_EXPORTER": "console"},
        {"OTEL_TRACES_EXPORTER": "otlp"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"},
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4317"},
    ],
)
def test_on_when_an_exporter_or_endpoint_is_named(env: dict[str, str]) -> None:
    provider = provider_from_env(env)
    try:
        assert isinstance(provider, TracerProvider)
        assert provider.resource.attributes["service.name"] == "microposts-server"
    finally:
        provider.shutdown()


def test_an_unknown_exporter_names_the_variable() -> None:
    with pytest.raises(
        TracingError, match=r"^OTEL_TRACES_EXPORTER: expected otlp, console or none"
    ):
        provider_from_env({"OTEL_TRACES_EXPORTER": "zipkin"})
