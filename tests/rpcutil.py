"""Helpers for reading gRPC errors the way any client would."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status

T = TypeVar("T", bound=Message)


@dataclass
class RpcFailure:
    """A failed call's code, message and decoded google.rpc details."""

    code: grpc.StatusCode
    message: str
    details: list[Message] = field(default_factory=list)

    def detail(self, kind: type[T]) -> T:
        for d in self.details:
            if isinstance(d, kind):
                return d
        raise AssertionError(f"no {kind.__name__} in {self.details}")

    @property
    def fields(self) -> list[str]:
        """Field paths named by the BadRequest detail."""
        return [v.field for v in self.detail(error_details_pb2.BadRequest).field_violations]


_DETAIL_TYPES: list[type[Message]] = [
    error_details_pb2.BadRequest,
    error_details_pb2.ResourceInfo,
    error_details_pb2.ErrorInfo,
    error_details_pb2.RequestInfo,
    error_details_pb2.RetryInfo,
]


def failure_of(call: Callable[..., Any], *args: Any, **kwargs: Any) -> RpcFailure:
    """Runs ``call``, which must fail, and returns what the failure says."""
    try:
        call(*args, **kwargs)
    except grpc.RpcError as err:
        assert isinstance(err, grpc.Call)
        status = rpc_status.from_call(err)
        details: list[Message] = []
        if status is not None:
            for packed in status.details:
                for kind in _DETAIL_TYPES:
                    if packed.Is(kind.DESCRIPTOR):
                        msg = kind()
                        packed.Unpack(msg)
                        details.append(msg)
        return RpcFailure(err.code(), err.details() or "", details)
    raise AssertionError("the call succeeded but was expected to fail")
