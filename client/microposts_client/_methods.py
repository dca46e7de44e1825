"""Every RPC of the contract, described once, from the generated descriptors.

The ``.proto`` files are the one place where an RPC is declared, and where
"safe to repeat" is said: a read carries ``option idempotency_level =
NO_SIDE_EFFECTS`` (connect-python derives its per-method idempotency the
same way). :func:`method_table` reads every service of the ``microposts.v1``
package from the generated code, so the client's retry rules and default
timeouts, the server's handler registration and the test helpers all follow
the contract instead of lists of names of their own.

What the contract cannot say is written here once, beside the rule that uses
it (:data:`CONDITIONAL_ON_ETAG`).
"""

from __future__ import annotations

import enum
import functools
import importlib
import pkgutil
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from google.protobuf import descriptor_pb2, message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message

__all__ = ["IdempotencyLevel", "MethodInfo", "method_table", "retry_safe"]

_PACKAGE = "microposts.v1"


class IdempotencyLevel(enum.IntEnum):
    """``google.protobuf.MethodOptions.IdempotencyLevel``, as declared in the ``.proto``."""

    IDEMPOTENCY_UNKNOWN = descriptor_pb2.MethodOptions.IDEMPOTENCY_UNKNOWN
    NO_SIDE_EFFECTS = descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS
    IDEMPOTENT = descriptor_pb2.MethodOptions.IDEMPOTENT


@dataclass(frozen=True, slots=True)
class MethodInfo:
    """One RPC: where it lives, what it takes and returns, and how safe it is to repeat."""

    service: str
    """The service's full name, e.g. ``microposts.v1.UserService``."""
    name: str
    """The method's name, e.g. ``GetUser``."""
    request_type: type[Message]
    response_type: type[Message]
    idempotency: IdempotencyLevel
    has_request_id: bool
    """The request has a top-level ``request_id`` field (AIP-155 idempotency key)."""
    read: bool
    """Declared free of side effects: a read, with the read default timeout (a field,
    not a property: every call reads it)."""

    @property
    def path(self) -> str:
        """The HTTP/2 path of the method, ``/package.Service/Method``."""
        return f"/{self.service}/{self.name}"

    @property
    def python_name(self) -> str:
        """The method's name in Python, ``GetUser`` -> ``get_user``."""
        return re.sub(r"(?<!^)(?=[A-Z])", "_", self.name).lower()


def _info(service: str, method: MethodDescriptor) -> MethodInfo:
    idempotency = IdempotencyLevel(method.GetOptions().idempotency_level)
    return MethodInfo(
        service=service,
        name=method.name,
        request_type=message_factory.GetMessageClass(method.input_type),
        response_type=message_factory.GetMessageClass(method.output_type),
        idempotency=idempotency,
        has_request_id="request_id" in method.input_type.fields_by_name,
        read=idempotency is IdempotencyLevel.NO_SIDE_EFFECTS,
    )


@functools.cache
def method_table() -> Mapping[str, MethodInfo]:
    """Every RPC of every ``microposts.v1`` service, keyed by method name, in contract order.

    Built on first use (nothing happens at import time) from the generated
    ``*_pb2`` modules. Method names are unique across the package's services,
    so the bare name is the key.
    """
    package = importlib.import_module(_PACKAGE)
    table: dict[str, MethodInfo] = {}
    for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if not module.name.endswith("_pb2"):
            continue
        generated: Any = importlib.import_module(f"{_PACKAGE}.{module.name}")
        for service in generated.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                if method.name in table:  # pragma: no cover - a contract mistake
                    raise RuntimeError(f"{method.name} is declared by two services")
                table[method.name] = _info(service.full_name, method)
    return MappingProxyType(table)


CONDITIONAL_ON_ETAG: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"UpdateMicropost": ("micropost", "etag"), "DeleteMicropost": ("etag",)}
)
"""The one rule written by hand: where an update's or delete's etag lives in its request.

With the etag it read, a change is conditional (AIP-154): a replay of one
that did apply meets a changed etag and fails with ``ABORTED`` instead of
applying twice. Without one, a replayed update could overwrite a newer edit
made in between, so only etag'd updates and deletes are retried.
"""


def retry_safe(method: MethodInfo, request: Message) -> bool:
    """Whether repeating ``request`` after a lost reply can never apply it twice.

    True for methods the contract declares free of side effects or
    idempotent; for a create that carries a ``request_id`` (the server returns
    the first result for a repeated id); and for an update or delete that
    carries an etag (:data:`CONDITIONAL_ON_ETAG`).
    """
    if method.idempotency is not IdempotencyLevel.IDEMPOTENCY_UNKNOWN:
        return True
    if method.has_request_id:
        return bool(getattr(request, "request_id"))  # noqa: B009 - typed as Message
    path = CONDITIONAL_ON_ETAG.get(method.name)
    if path is None:
        return False
    value: Any = request
    for field in path:
        value = getattr(value, field)
    return bool(value)
