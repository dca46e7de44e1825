"""Domain errors -> gRPC status codes and google.rpc details, in one place.

Every error goes out in the standard rich-error model: the status code, a
message, and a ``google.rpc.Status`` in the ``grpc-status-details-bin``
trailer carrying ``BadRequest`` (which fields, why), ``ResourceInfo`` (which
resource), ``ErrorInfo`` (a machine-readable reason) or ``RequestInfo`` (the
id to quote when reporting an ``INTERNAL`` or ``UNAVAILABLE``). Any language's stubs, and
grpcurl, can read them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

# Qualified: the client package has exceptions of the same names (NotFound, ...).
from . import domain

DOMAIN = "microposts.v1"
RESOURCE_TYPE_PREFIX = "microposts.v1."
DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True, slots=True)
class Failure:
    """A status to send: code, message and google.rpc detail messages."""

    code: grpc.StatusCode
    message: str
    details: tuple[Message, ...] = ()

    def trailers(self) -> tuple[tuple[str, bytes], ...]:
        status = status_pb2.Status(code=self.code.value[0], message=self.message)
        for detail in self.details:
            packed = any_pb2.Any()
            packed.Pack(detail)
            status.details.append(packed)
        return ((DETAILS_KEY, status.SerializeToString()),)


def _resource(resource_type: str, name: str, description: str) -> error_details_pb2.ResourceInfo:
    return error_details_pb2.ResourceInfo(
        resource_type=RESOURCE_TYPE_PREFIX + resource_type,
        resource_name=name,
        description=description,
    )


def _invalid_argument(exc: domain.InvalidArgument, request_id: str) -> Failure:
    violations = [
        error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
        for v in exc.violations
    ]
    bad = error_details_pb2.BadRequest(field_violations=violations)
    return Failure(grpc.StatusCode.INVALID_ARGUMENT, exc.message, (bad,))


def _not_found(exc: domain.NotFound, request_id: str) -> Failure:
    resource = _resource(exc.resource_type, exc.resource_name, "not found")
    return Failure(grpc.StatusCode.NOT_FOUND, exc.message, (resource,))


def _already_exists(exc: domain.AlreadyExists, request_id: str) -> Failure:
    resource = _resource(exc.resource_type, exc.resource_name, "already exists")
    return Failure(grpc.StatusCode.ALREADY_EXISTS, exc.message, (resource,))


def _aborted(exc: domain.Aborted, request_id: str) -> Failure:
    info = error_details_pb2.ErrorInfo(
        reason="ETAG_MISMATCH", domain=DOMAIN, metadata={"resource": exc.resource_name}
    )
    return Failure(
        grpc.StatusCode.ABORTED,
        exc.message + "; read it again and retry with the new etag",
        (info, _resource(exc.resource_type, exc.resource_name, "changed since read")),
    )


def _deadline_exceeded(exc: domain.DeadlineExceeded, request_id: str) -> Failure:
    info = error_details_pb2.ErrorInfo(
        reason="DEADLINE_EXCEEDED", domain=DOMAIN, metadata={"phase": exc.phase}
    )
    return Failure(grpc.StatusCode.DEADLINE_EXCEEDED, exc.message, (info,))


def _unavailable(exc: domain.Unavailable, request_id: str) -> Failure:
    # The plain reason only: the driver's text (hosts, paths, errno) is for
    # the log, which has it under the same request id.
    info = error_details_pb2.ErrorInfo(reason="STORE_UNAVAILABLE", domain=DOMAIN)
    return Failure(
        grpc.StatusCode.UNAVAILABLE,
        f"{exc.reason}; retry later (request id {request_id})",
        (info, error_details_pb2.RequestInfo(request_id=request_id)),
    )


def _store_failed(exc: domain.StoreFailed, request_id: str) -> Failure:
    # Neither code is retried by gRPC clients or ours: the failure lasts.
    # RESOURCE_EXHAUSTED is the code's own documented case for a full file
    # system; a disk that fails outright is the server's INTERNAL fault. The
    # driver's text is for the log (health logs it), as for UNAVAILABLE.
    reason = "STORE_FULL" if exc.full else "STORE_FAILED"
    code = grpc.StatusCode.RESOURCE_EXHAUSTED if exc.full else grpc.StatusCode.INTERNAL
    info = error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN)
    return Failure(
        code,
        f"{exc.reason}; writes fail until an operator fixes it (request id {request_id})",
        (info, error_details_pb2.RequestInfo(request_id=request_id)),
    )


def _unauthenticated(exc: domain.Unauthenticated, request_id: str) -> Failure:
    info = error_details_pb2.ErrorInfo(reason=exc.reason, domain=DOMAIN)
    return Failure(grpc.StatusCode.UNAUTHENTICATED, exc.message, (info,))


def _permission_denied(exc: domain.PermissionDenied, request_id: str) -> Failure:
    info = error_details_pb2.ErrorInfo(
        reason="PERMISSION_DENIED",
        domain=DOMAIN,
        metadata={"permission": exc.permission, "resource": exc.resource_name},
    )
    return Failure(grpc.StatusCode.PERMISSION_DENIED, exc.message, (info,))


# One translator per domain error; a new DomainError without one is INTERNAL
# ("unclassified"), and tests/unit/test_errors.py fails on it.
TRANSLATORS: dict[type[domain.DomainError], Callable[[Any, str], Failure]] = {
    domain.InvalidArgument: _invalid_argument,
    domain.NotFound: _not_found,
    domain.AlreadyExists: _already_exists,
    domain.Aborted: _aborted,
    domain.DeadlineExceeded: _deadline_exceeded,
    domain.Unavailable: _unavailable,
    domain.StoreFailed: _store_failed,
    domain.Unauthenticated: _unauthenticated,
    domain.PermissionDenied: _permission_denied,
}


def failure_for(exc: domain.DomainError, request_id: str = "") -> Failure:
    """The status for a domain error; ``request_id`` goes into the messages that quote it."""
    for kind in type(exc).__mro__:
        translate = TRANSLATORS.get(kind)
        if translate is not None:
            return translate(exc, request_id)
    return internal("unclassified")  # pragma: no cover - tests/unit/test_errors.py


def internal(request_id: str) -> Failure:
    """What an unexpected failure shows the caller: no internals, an id for the logs."""
    return Failure(
        grpc.StatusCode.INTERNAL,
        f"internal error; the server log has the details under request id {request_id}",
        (error_details_pb2.RequestInfo(request_id=request_id),),
    )
