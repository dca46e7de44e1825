"""OpenTelemetry spans for calls, and the trace context carried across hops beside the deadline.

The client uses the OpenTelemetry *API* only (``pip install
'microposts-client[otel]'``); the application picks the SDK and the exporter,
as OpenTelemetry intends for libraries. Without the API installed, or before
the application sets a tracer provider, nothing is recorded and a call pays
one check (under a microsecond).

- **Client calls**: one span per call (``<service>/<method> call``, kind
  INTERNAL) covering every attempt and the pauses between them, and one
  CLIENT span per attempt (``<service>/<method>``) with the ``rpc.*``
  attributes of OpenTelemetry's RPC conventions and ``rpc.grpc.status_code``.
  Each attempt's context travels in its metadata as W3C ``traceparent``
  (through the global propagator). Without a tracer provider the current
  context still travels, so a process that records nothing does not break a
  trace that passes through it.
- **Across a hop**: the propagation interceptors
  (:class:`~microposts_client.DeadlineInterceptor`) make an incoming call's
  ``traceparent`` the current context while its handler runs, next to its
  deadline, so the calls the handler makes are part of the caller's trace.
- **Servers**: :func:`start_server_span` / :func:`end_server_span` open and
  close the SERVER span of an incoming call; the MicroPosts server's per-call
  pipeline uses them with its own tracer.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ._methods import MethodInfo

Pairs = Sequence[tuple[str, Any]]
"""gRPC metadata: key/value pairs (values are str, or bytes for ``-bin`` keys)."""

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
    from opentelemetry.propagators.textmap import Getter, Setter
    from opentelemetry.trace import ProxyTracerProvider, SpanKind, Status, StatusCode

    class _Reader(Getter[Pairs]):
        """Reads gRPC metadata for OpenTelemetry's propagator."""

        def get(self, carrier: Pairs, key: str) -> list[str] | None:
            values = [str(v) for k, v in carrier if k == key]
            return values or None

        def keys(self, carrier: Pairs) -> list[str]:
            return [k for k, _ in carrier]

    class _Writer(Setter[list[tuple[str, Any]]]):
        """Adds to gRPC metadata for OpenTelemetry's propagator."""

        def set(self, carrier: list[tuple[str, Any]], key: str, value: str) -> None:
            carrier.append((key, value))

    _READER, _WRITER = _Reader(), _Writer()
except ImportError:  # pragma: no cover - the [otel] extra is not installed
    trace = None  # type: ignore[assignment]

__all__ = [
    "CallTrace",
    "attach_incoming",
    "detach",
    "end_server_span",
    "start",
    "start_server_span",
]

_NAME = "microposts_client"
TRACEPARENT = "traceparent"

# OpenTelemetry's RPC conventions: the codes a SERVER span records as errors
# (UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS);
# a caller's own mistake (NOT_FOUND, INVALID_ARGUMENT...) is not the server's.
_SERVER_ERRORS = frozenset({2, 4, 12, 13, 14, 15})

_tracer: Any = None
_next_look = 0.0
LOOK_EVERY = 1.0
"""Seconds between looks for a tracer provider while there is none: the look
itself (OpenTelemetry reads an environment variable each time) would cost a
call more than the rest of the tracing code."""


def tracer() -> Any:
    """The client's tracer once the application has set a tracer provider, else ``None``.

    Until a provider appears, looked for at most once a ``LOOK_EVERY``; the
    global provider is set once, so from then on the answer stays.
    """
    global _tracer, _next_look
    if _tracer is not None or trace is None:
        return _tracer
    now = time.monotonic()
    if now < _next_look:
        return None
    _next_look = now + LOOK_EVERY
    if not isinstance(trace.get_tracer_provider(), ProxyTracerProvider):
        _tracer = trace.get_tracer(_NAME)
    return _tracer


def start(method: MethodInfo) -> CallTrace | None:
    """The trace of a call of ``method``; ``None`` when there is nothing to record or pass on.

    ``None`` is the usual case without tracing (no provider, and no trace
    context inherited from an incoming call), and costs the call next to
    nothing: the client skips every tracing step.
    """
    if tracer() is None and (trace is None or not otel_context.get_current()):
        return None
    return CallTrace(method)


def _rpc(service: str, method: str) -> dict[str, Any]:
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}


def _with_context(metadata: Pairs | None, context: Any) -> tuple[tuple[str, Any], ...]:
    carrier = list(metadata or ())
    propagate.inject(carrier, context=context, setter=_WRITER)
    return tuple(carrier)


class CallTrace:
    """One call's span and its attempts' spans; next to nothing when tracing is off."""

    __slots__ = ("_attempt", "_call", "_method", "_tracer")

    def __init__(self, method: MethodInfo) -> None:
        self._method = method
        self._tracer = tracer()
        self._attempt: Any = None
        self._call: Any = None
        if self._tracer is not None:
            name = f"{method.service}/{method.name} call"
            self._call = self._tracer.start_span(name, attributes=_rpc(method.service, method.name))

    def attempt(self, metadata: Pairs | None, number: int) -> Pairs | None:
        """Opens attempt ``number``'s span; returns ``metadata`` with its ``traceparent``."""
        if self._call is None:  # pass on a trace we do not record
            if not trace.get_current_span().get_span_context().is_valid:
                return metadata
            return _with_context(metadata, None)
        method = self._method
        attributes = _rpc(method.service, method.name)
        attributes["microposts.attempt"] = number
        self._attempt = span = self._tracer.start_span(
            f"{method.service}/{method.name}",
            context=trace.set_span_in_context(self._call),
            kind=SpanKind.CLIENT,
            attributes=attributes,
        )
        return _with_context(metadata, trace.set_span_in_context(span))

    def attempt_ended(self, code: int) -> None:
        """Closes the attempt's span with its gRPC status code (0: OK)."""
        span = self._attempt
        if span is not None:
            span.set_attribute("rpc.grpc.status_code", code)
            if code:
                span.set_status(Status(StatusCode.ERROR))
            span.end()
            self._attempt = None

    def ended(self, error: BaseException | None = None) -> None:
        """Closes the call's span, recording the error that ended the call, if any."""
        span = self._call
        if span is None:
            return
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            span.record_exception(error)
        span.end()
        self._call = None


def attach_incoming(metadata: Pairs | None) -> Any:
    """Makes an incoming call's ``traceparent`` the current context; a token for ``detach``.

    ``None`` (nothing to undo) when the call brought none, or without the API.
    """
    if trace is None or not metadata:
        return None
    for key, _ in metadata:
        if key == TRACEPARENT:
            return otel_context.attach(propagate.extract(metadata, getter=_READER))
    return None


def detach(token: Any) -> None:
    """Undoes :func:`attach_incoming` (``None``: nothing to undo)."""
    if token is not None:
        otel_context.detach(token)


def start_server_span(active: Any, path: str, metadata: Pairs | None) -> Any:
    """Opens the SERVER span of a call of ``path`` (``/package.Service/Method``) with ``active``.

    The caller's ``traceparent`` makes it their child; it is current until
    :func:`end_server_span`, so calls the handler makes are its children.
    Returns what ``end_server_span`` needs.
    """
    parent = propagate.extract(metadata or (), getter=_READER)
    service, _, name = path[1:].partition("/")
    span = active.start_span(
        path[1:], context=parent, kind=SpanKind.SERVER, attributes=_rpc(service, name)
    )
    return span, otel_context.attach(trace.set_span_in_context(span, parent))


def end_server_span(started: Any, code: int, attributes: dict[str, Any]) -> None:
    """Closes a :func:`start_server_span` span with the call's status code and ``attributes``."""
    span, token = started
    otel_context.detach(token)
    span.set_attribute("rpc.grpc.status_code", code)
    span.set_attributes(attributes)
    if code in _SERVER_ERRORS:
        span.set_status(Status(StatusCode.ERROR))
    span.end()
