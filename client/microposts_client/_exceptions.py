"""Errors raised by the MicroPosts client.

Every failed call raises one class per gRPC status code, all under
:class:`ServiceError`; the original :class:`grpc.RpcError` is the
``__cause__``. A budget that is already spent raises
:class:`DeadlineExceeded` locally, with no cause::

    Exception
     └── ServiceError          .code .message .details .reason
          ├── Cancelled                 CANCELLED
          ├── Unknown                   UNKNOWN
          ├── InvalidArgument           INVALID_ARGUMENT    .field_violations
          ├── DeadlineExceeded          DEADLINE_EXCEEDED
          ├── NotFound                  NOT_FOUND           .resource_type .resource_name
          ├── AlreadyExists             ALREADY_EXISTS      .resource_type .resource_name
          ├── PermissionDenied          PERMISSION_DENIED
          ├── ResourceExhausted         RESOURCE_EXHAUSTED  .retry_delay
          ├── FailedPrecondition        FAILED_PRECONDITION
          ├── Aborted                   ABORTED
          ├── OutOfRange                OUT_OF_RANGE
          ├── Unimplemented             UNIMPLEMENTED
          ├── Internal                  INTERNAL
          ├── Unavailable               UNAVAILABLE         .retry_delay
          ├── DataLoss                  DATA_LOSS
          └── Unauthenticated           UNAUTHENTICATED

``details`` holds the ``google.rpc`` detail messages the server attached
(``BadRequest``, ``ResourceInfo``, ``ErrorInfo``, ``RetryInfo``...), decoded;
a detail of a type this package does not know stays a
``google.protobuf.Any``.

An error crosses a hop with :meth:`ServiceError.abort`: a handler of the
caller's own gRPC server answers its caller with the same status code,
message and details (the propagation interceptors do it for errors that
escape a handler).
"""

from __future__ import annotations

from collections.abc import Coroutine, Sequence
from typing import Any, NoReturn, TypeVar, overload

import grpc
import grpc.aio
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2, status_pb2

__all__ = [
    "Aborted",
    "AlreadyExists",
    "Cancelled",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "ResourceExhausted",
    "ServiceError",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Unknown",
]

_M = TypeVar("_M", bound=Message)

_DETAILS_KEY = "grpc-status-details-bin"
_PUSHBACK_KEY = "grpc-retry-pushback-ms"


class ServiceError(Exception):
    """A call failed with a non-OK gRPC status.

    Attributes: ``code`` (:class:`grpc.StatusCode`), ``message`` (the status
    message), ``details`` (decoded ``google.rpc`` detail messages) and
    ``retry_pushback`` (seconds from a ``grpc-retry-pushback-ms`` trailer, or
    ``None``; negative when the server sent a negative or unparsable value,
    which means "do not retry", gRFC A6).
    """

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    """The status code this class stands for."""

    hint: str = ""
    """What to do about it, where the class knows: shown after the server's message."""

    def __init__(
        self,
        message: str,
        *,
        details: Sequence[Message] = (),
        code: grpc.StatusCode | None = None,
        retry_pushback: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details: tuple[Message, ...] = tuple(details)
        self.retry_pushback = retry_pushback
        self.context = ""
        """What the client adds (e.g. the target and the attempts made); shown by ``str()``."""
        if code is not None and code is not type(self).code:
            # Only a status this package has no class for reaches ServiceError itself.
            self.code = code

    def detail(self, kind: type[_M]) -> _M | None:
        """The first attached detail of type ``kind`` (e.g. ``ErrorInfo``), or ``None``."""
        for d in self.details:
            if isinstance(d, kind):
                return d
        return None

    @property
    def reason(self) -> str | None:
        """``ErrorInfo.reason``, the machine-readable cause, if the server sent one."""
        info = self.detail(error_details_pb2.ErrorInfo)
        return info.reason if info is not None else None

    @property
    def retry_refused(self) -> bool:
        """Whether the server said not to retry (a negative or unparsable pushback)."""
        return self.retry_pushback is not None and self.retry_pushback < 0

    @property
    def retry_delay(self) -> float | None:
        """Seconds the server asked us to wait before retrying (``RetryInfo`` or pushback)."""
        if self.retry_refused:
            return None
        info = self.detail(error_details_pb2.RetryInfo)
        if info is not None and info.HasField("retry_delay"):
            return float(info.retry_delay.ToTimedelta().total_seconds())
        return self.retry_pushback

    @overload
    def abort(self, context: grpc.ServicerContext) -> NoReturn: ...
    @overload
    def abort(
        self, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Coroutine[Any, Any, NoReturn]: ...
    def abort(self, context: Any) -> Any:
        """End the handler's call with this error: its code, message and ``google.rpc`` details.

        For a handler of your own server that got this error from MicroPosts
        and has nothing better to tell its caller: ``await err.abort(context)``
        in a ``grpc.aio`` handler, ``err.abort(context)`` in a ``grpc.server``
        one (it raises, as ``context.abort`` does). The caller sees what a
        direct call would have shown: ``NotFound`` with its ``ResourceInfo``,
        ``InvalidArgument`` with the field violations, the server's retry
        delay. A code, message and details that fit your own API are often
        better; this is the one-line default.
        """
        trailers: tuple[tuple[str, str | bytes], ...] = (
            (_DETAILS_KEY, self._status().SerializeToString()),
        )
        if self.retry_pushback is not None:
            trailers += ((_PUSHBACK_KEY, str(round(self.retry_pushback * 1000))),)
        if isinstance(context, grpc.ServicerContext):
            context.set_trailing_metadata(trailers)
            context.abort(self.code, self.message)
        # grpc.aio: the coroutine that aborts, for the handler to await.
        return context.abort(self.code, self.message, trailers)

    def _status(self) -> status_pb2.Status:
        """This error as a ``google.rpc.Status``: code, message and details, packed."""
        status = status_pb2.Status(code=self.code.value[0], message=self.message)
        for detail in self.details:
            if isinstance(detail, any_pb2.Any):  # a type we could not decode: as it came
                status.details.append(detail)
            else:
                status.details.add().Pack(detail)
        return status

    def __str__(self) -> str:
        extra = "; ".join(part for part in (self.hint, self.context) if part)
        if extra:
            return f"{self.code.name}: {self.message} ({extra})"
        return f"{self.code.name}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


# Like `reason`, each property reads one field of one detail: spelled out so each is typed.
class _ResourceMixin(ServiceError):
    @property
    def resource_type(self) -> str | None:
        """``ResourceInfo.resource_type`` (e.g. ``microposts.v1.User``), if sent."""
        info = self.detail(error_details_pb2.ResourceInfo)
        return info.resource_type if info is not None else None

    @property
    def resource_name(self) -> str | None:
        """``ResourceInfo.resource_name`` (e.g. ``users/alice``), if sent."""
        info = self.detail(error_details_pb2.ResourceInfo)
        return info.resource_name if info is not None else None


class Cancelled(ServiceError):
    """The call was cancelled, usually by the caller."""

    code = grpc.StatusCode.CANCELLED


class Unknown(ServiceError):
    """The server failed in a way it did not classify."""

    code = grpc.StatusCode.UNKNOWN


class InvalidArgument(ServiceError):
    """The request is invalid; ``field_violations`` names the fields and why."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    @property
    def field_violations(self) -> tuple[error_details_pb2.BadRequest.FieldViolation, ...]:
        """``BadRequest`` field violations: each has ``.field`` (a path) and ``.description``."""
        out: list[error_details_pb2.BadRequest.FieldViolation] = []
        for d in self.details:
            if isinstance(d, error_details_pb2.BadRequest):
                out.extend(d.field_violations)
        return tuple(out)


class DeadlineExceeded(ServiceError):
    """The deadline passed before the call finished, or was spent before it started."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(_ResourceMixin):
    """The resource does not exist; ``resource_name`` says which."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(_ResourceMixin):
    """The resource to create exists already (e.g. the username is taken)."""

    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(ServiceError):
    """The caller may not do this; ``permission`` and ``resource_name`` say what was refused.

    MicroPosts lets a token's ``sub`` create only ``users/{sub}`` and posts
    under it, and change or delete only its own posts; a token whose
    ``scope`` has ``microposts.admin`` may do all of it.
    """

    code = grpc.StatusCode.PERMISSION_DENIED
    hint = (
        "the token's subject may write only as itself (users/{sub} and its posts); "
        "call with that user's token, or one with scope microposts.admin"
    )

    @property
    def permission(self) -> str | None:
        """The permission refused (``microposts.microposts.update``), if the server said."""
        info = self.detail(error_details_pb2.ErrorInfo)
        return info.metadata.get("permission") if info is not None else None

    @property
    def resource_name(self) -> str | None:
        """The resource it was refused on (``users/bob/microposts/…``), if the server said."""
        info = self.detail(error_details_pb2.ErrorInfo)
        return info.metadata.get("resource") if info is not None else None


class ResourceExhausted(ServiceError):
    """A quota or limit was hit; retried only when the server asks (``retry_delay``)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(ServiceError):
    """The system is not in a state the call needs."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(ServiceError):
    """A conflict, e.g. a stale ``etag``: re-read and try again."""

    code = grpc.StatusCode.ABORTED


class OutOfRange(ServiceError):
    """A value is past the valid range."""

    code = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(ServiceError):
    """The server does not implement this method."""

    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(ServiceError):
    """The server hit a bug; its log has the details."""

    code = grpc.StatusCode.INTERNAL


class Unavailable(ServiceError):
    """The service could not be reached or is shedding load; safe calls are retried."""

    code = grpc.StatusCode.UNAVAILABLE


class DataLoss(ServiceError):
    """Unrecoverable data loss or corruption."""

    code = grpc.StatusCode.DATA_LOSS


class Unauthenticated(ServiceError):
    """The call lacks valid credentials; ``reason`` says which problem (``TOKEN_EXPIRED``...)."""

    code = grpc.StatusCode.UNAUTHENTICATED
    hint = (
        "give the client a valid token: Client(target, token=...) with a string, or a "
        "callable that returns a fresh one; tokens are sent only over TLS "
        "(credentials=tls_credentials(...)) or to a loopback address"
    )


_BY_CODE: dict[grpc.StatusCode, type[ServiceError]] = {
    cls.code: cls
    for cls in (
        Cancelled,
        Unknown,
        InvalidArgument,
        DeadlineExceeded,
        NotFound,
        AlreadyExists,
        PermissionDenied,
        ResourceExhausted,
        FailedPrecondition,
        Aborted,
        OutOfRange,
        Unimplemented,
        Internal,
        Unavailable,
        DataLoss,
        Unauthenticated,
    )
}

_DETAIL_TYPES: dict[str, type[Message]] = {
    cls.DESCRIPTOR.full_name: cls
    for cls in (
        error_details_pb2.BadRequest,
        error_details_pb2.ResourceInfo,
        error_details_pb2.ErrorInfo,
        error_details_pb2.RetryInfo,
        error_details_pb2.DebugInfo,
        error_details_pb2.QuotaFailure,
        error_details_pb2.PreconditionFailure,
        error_details_pb2.RequestInfo,
        error_details_pb2.Help,
        error_details_pb2.LocalizedMessage,
    )
}


def _decode_details(raw: bytes) -> list[Message]:
    try:
        status = status_pb2.Status.FromString(raw)
    except DecodeError:
        return []
    out: list[Message] = []
    for packed in status.details:
        cls = _DETAIL_TYPES.get(packed.TypeName())
        if cls is None:
            out.append(packed)
            continue
        msg = cls()
        if packed.Unpack(msg):
            out.append(msg)
        else:  # pragma: no cover - a corrupt detail: keep it as it came
            out.append(packed)
    return out


def map_rpc_error(error: grpc.RpcError) -> ServiceError:
    """The :class:`ServiceError` subclass for a failed call (sync or aio).

    Callers raise it ``from error`` so the gRPC error stays the cause.
    """
    call: Any = error
    code: grpc.StatusCode = call.code()
    message: str = call.details() or ""
    details: list[Message] = []
    pushback: float | None = None
    trailers = call.trailing_metadata() or ()
    for key, value in trailers:
        if key == _DETAILS_KEY:
            details = _decode_details(value)
        elif key == _PUSHBACK_KEY:
            try:
                ms = int(value)
            except (TypeError, ValueError):
                ms = -1  # unparsable: do not retry, as for a negative value
            pushback = ms / 1000.0 if ms >= 0 else -1.0
    cls = _BY_CODE.get(code, ServiceError)
    return cls(message, details=details, code=code, retry_pushback=pushback)


def budget_spent_error(what: str) -> DeadlineExceeded:
    """The local ``DeadlineExceeded`` for a budget already spent before ``what``."""
    return DeadlineExceeded(f"deadline already passed before {what} was sent")
