"""Traces across three hops, through real servers, with OpenTelemetry's in-memory exporter.

The chain runs in a process of its own (``tests/tracechain.py``): the tracer
provider is global and set once, and this test session runs with tracing off.
A server process is also started the way an operator switches tracing on, with
the standard ``OTEL_*`` variables (the console exporter, read off its stdout).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import microposts_client as mc
from tests.serverproc import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
GET_USER = "microposts.v1.UserService/GetUser"


@pytest.fixture(scope="module")
def spans() -> list[dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-m", "tests.tracechain"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def _trace_of(spans: list[dict[str, Any]], code: int) -> list[dict[str, Any]]:
    """The spans of the trace whose MicroPosts GetUser server span ended with ``code``."""
    (server,) = [
        s
        for s in spans
        if s["kind"] == "SERVER"
        and s["name"] == GET_USER
        and s["attributes"]["rpc.grpc.status_code"] == code
    ]
    return [s for s in spans if s["trace_id"] == server["trace_id"]]


def _child(spans: list[dict[str, Any]], parent: dict[str, Any], kind: str) -> dict[str, Any]:
    (child,) = [s for s in spans if s["parent_id"] == parent["span_id"] and s["kind"] == kind]
    return child


def test_one_trace_across_caller_relay_and_microposts(spans: list[dict[str, Any]]) -> None:
    chain = _trace_of(spans, 0)
    assert len(chain) == 5
    (caller_call,) = [s for s in chain if s["parent_id"] is None]
    assert caller_call["name"] == GET_USER + " call"
    caller_attempt = _child(chain, caller_call, "CLIENT")
    relay_call = _child(chain, caller_attempt, "INTERNAL")  # the relay's own client call
    relay_attempt = _child(chain, relay_call, "CLIENT")
    server = _child(chain, relay_attempt, "SERVER")
    for span in (caller_attempt, relay_attempt, server):
        assert span["name"] == GET_USER
        assert span["attributes"]["rpc.system"] == "grpc"
        assert span["attributes"]["rpc.service"] == "microposts.v1.UserService"
        assert span["attributes"]["rpc.method"] == "GetUser"
        assert span["attributes"]["rpc.grpc.status_code"] == 0
    assert caller_attempt["attributes"]["microposts.attempt"] == 1
    facts = server["attributes"]
    # The deadline travelled with the trace: the caller's 2 s, less the relay's margin.
    assert 0 < facts["microposts.deadline_ms"] < 2000
    assert 0 < facts["microposts.left_ms"] <= facts["microposts.deadline_ms"]
    assert facts["microposts.store_calls"] == 1
    assert facts["microposts.store_ms"] > 0


def test_a_failed_call_is_an_error_for_the_client_not_for_the_server(
    spans: list[dict[str, Any]],
) -> None:
    chain = _trace_of(spans, 5)  # NOT_FOUND
    assert len(chain) == 5
    server = next(s for s in chain if s["kind"] == "SERVER")
    assert server["status"] == "UNSET"  # the caller's mistake, not the server's fault
    for span in chain:
        if span["kind"] != "SERVER":
            assert span["status"] == "ERROR", span["name"]


def test_bad_tracing_variables_stop_the_server_with_one_line(tmp_path: Path) -> None:
    server = ServerProcess(f"sqlite:///{tmp_path / 't.db'}", env={"OTEL_TRACES_EXPORTER": "zipkin"})
    with pytest.raises(RuntimeError, match="OTEL_TRACES_EXPORTER: expected otlp, console"):
        server.start()
    assert server.proc is not None and server.proc.returncode == 2


def _console_spans(text: str) -> list[dict[str, Any]]:
    """The spans OpenTelemetry's console exporter wrote: JSON objects, one after another."""
    decoder = json.JSONDecoder()
    spans: list[dict[str, Any]] = []
    at = 0
    while (start := text.find("{", at)) != -1:
        span, at = decoder.raw_decode(text, start)
        spans.append(span)
    return spans


def test_the_standard_variables_switch_server_tracing_on(tmp_path: Path) -> None:
    out = tmp_path / "stdout.txt"
    server = ServerProcess(
        f"sqlite:///{tmp_path / 't.db'}",
        "--grace",
        "0.2",
        env={"OTEL_TRACES_EXPORTER": "console"},
        # The console exporter writes to stdout, which ServerProcess discards: keep it.
        wrapper=["sh", "-c", 'exec "$@" >"$0"', str(out)],
    )
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    with server:
        with mc.Client(server.address) as client:
            client.create_user(username="traced")
            traceparent = [("traceparent", f"00-{trace_id}-{parent_id}-01")]
            client.get_user(name="users/traced", metadata=traceparent)
            with pytest.raises(mc.NotFound):
                client.get_user(name="users/nobody")
        assert server.stop() == 0  # spans are flushed as the server stops
    spans = _console_spans(out.read_text())
    gets = [s for s in spans if s["name"] == GET_USER]
    assert len(gets) == 2, spans
    found, missing = sorted(gets, key=lambda s: s["attributes"]["rpc.grpc.status_code"])
    for span in (found, missing):
        assert span["kind"] == "SpanKind.SERVER"
        assert span["attributes"]["rpc.service"] == "microposts.v1.UserService"
        assert span["attributes"]["rpc.method"] == "GetUser"
        assert span["resource"]["attributes"]["service.name"] == "microposts-server"
    assert found["attributes"]["rpc.grpc.status_code"] == 0
    assert found["status"]["status_code"] == "UNSET"
    # The caller's traceparent made the server's span a child in the caller's trace.
    assert found["context"]["trace_id"] == f"0x{trace_id}"
    assert found["parent_id"] == f"0x{parent_id}"
    assert missing["attributes"]["rpc.grpc.status_code"] == 5  # NOT_FOUND
    assert missing["status"]["status_code"] == "UNSET"  # the caller's mistake, not an error
    assert missing["parent_id"] is None
    assert [s["name"] for s in spans].count("microposts.v1.UserService/CreateUser") == 1
