"""What both clients share: configuration, deadlines, request building.

:class:`_BaseClient` owns everything that is not I/O: configuration (from
the arguments, then the environment), the default timeout per method, the
metadata of a call, request building (including the ``request_id`` a create
always carries), and the lookup behind the generic ``call``. The clients add
the channel (``_channels.py``), the attempt loop and the page loop:
``AsyncClient`` in ``_async_client.py``, written by hand, and ``Client`` in
``_sync_client.py``, generated from it by ``scripts/unasync.py``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any, Generic, NamedTuple, TypeVar

import grpc
from google.protobuf import empty_pb2, field_mask_pb2
from google.protobuf.message import Message

from microposts.v1 import micropost_service_pb2, resources_pb2, user_service_pb2

from ._config import (
    USE_CLIENT_DEFAULT,
    Timeout,
    Timeouts,
    UseClientDefault,
    channel_options,
)
from ._credentials import TokenSource, channel_credentials, forwarded_credentials, forwarded_token
from ._deadlines import current_end
from ._environment import target_or_environment, timeouts_or_environment
from ._methods import MethodInfo, method_table
from ._pages import Page
from ._retry import DEFAULT_RETRY, CallPolicy, Retry
from ._targets import build_target
from ._throttle import DEFAULT_THROTTLE, Throttle

_monotonic = time.monotonic

User = resources_pb2.User
Micropost = resources_pb2.Micropost

_T = TypeVar("_T")

Metadata = Sequence[tuple[str, str | bytes]]
"""gRPC metadata: (key, value) pairs; keys in lower case, ``-bin`` keys with bytes values."""
_Pairs = tuple[tuple[str, str | bytes], ...]


class _Call(NamedTuple, Generic[_T]):
    """One call to make: the method, as the contract describes it, and the request.

    ``_T`` is the response type, so that each public method is typed from it.
    Built with :func:`_call` (a plain tuple's cost; a NamedTuple's own
    constructor costs ten times more, on every call).
    """

    method: MethodInfo
    request: Message


_new_tuple = tuple.__new__


def _call(method: MethodInfo, request: Message) -> _Call[Any]:
    """``_Call(method, request)``, built directly as the tuple it is."""
    return _new_tuple(_Call, (method, request))


class OverloadStats(NamedTuple):
    """A snapshot of one client's throttling and retries (``client.overload_stats()``)."""

    dropped: int
    """Calls failed locally by adaptive throttling, never sent."""
    drop_probability: float
    """The chance that the next call is dropped locally, now."""
    retries: int
    """Retries made."""
    retries_refused: int
    """Retries not made because the retry budget was spent."""
    retry_tokens: float | None
    """Tokens left in the retry budget (None: no budget)."""


def _pairs(metadata: Metadata) -> _Pairs:
    """``metadata`` as a tuple, refusing one bare pair (a common slip) with a clear error."""
    pairs = tuple(metadata)
    if pairs and isinstance(pairs[0], str | bytes):
        raise TypeError(
            "metadata is a sequence of (key, value) pairs, e.g. [('x-request-id', 'abc')]"
        )
    return pairs


class _BaseClient:
    """Configuration and request building shared by :class:`Client` and :class:`AsyncClient`.

    ``__init__`` takes the arguments both clients document, then calls
    :meth:`_open`, where each client opens its kind of channel.
    """

    def __init__(
        self,
        target: str | Sequence[str] | None = None,
        *,
        timeout: float | Timeouts | UseClientDefault | None = USE_CLIENT_DEFAULT,
        retry: Retry | None = DEFAULT_RETRY,
        throttle: Throttle | None = DEFAULT_THROTTLE,
        wait_for_ready: bool = False,
        credentials: grpc.ChannelCredentials | None = None,
        token: TokenSource | None = None,
        metadata: Metadata = (),
        options: Sequence[tuple[str, Any]] = (),
        interceptors: Sequence[Any] = (),
    ) -> None:
        self._target = build_target(target_or_environment(target))
        self._timeouts = timeouts_or_environment(timeout)
        self._retry = retry
        self._policy = CallPolicy(self._target, retry, throttle)
        self._wait_for_ready = wait_for_ready or None
        # None: a plaintext channel to another machine, which carries no tokens.
        self._credentials = channel_credentials(self._target, credentials, token)
        self._forwards = self._credentials is not None and token is None
        self._metadata = self._checked(_pairs(metadata)) or None
        self._options = channel_options(options)
        self._interceptors = tuple(interceptors)
        self._methods = method_table()
        self._open()

    def _open(self) -> None:
        """Set up ``self._channel`` (each client's own I/O)."""
        raise NotImplementedError

    @property
    def target(self) -> str:
        """The gRPC target the channel connects to."""
        return self._target

    @property
    def timeouts(self) -> Timeouts:
        """The default timeouts of this client's methods."""
        return self._timeouts

    def overload_stats(self) -> OverloadStats:
        """What adaptive throttling and the retry budget have done so far (see ``_throttle``)."""
        policy = self._policy
        throttle, tokens = policy.throttle, policy.tokens
        return OverloadStats(
            dropped=0 if throttle is None else throttle.dropped,
            drop_probability=0.0 if throttle is None else throttle.rejection_probability(),
            retries=policy.retries,
            retries_refused=0 if tokens is None else tokens.refused,
            retry_tokens=None if tokens is None else tokens.tokens,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._target!r}, timeout={self._timeouts!r})"

    def _end(self, write: bool, timeout: Timeout) -> float | None:
        """The monotonic end of a call: its own timeout, capped by any ambient budget."""
        if timeout is USE_CLIENT_DEFAULT:
            seconds = self._timeouts.write if write else self._timeouts.read
        else:
            seconds = timeout
        ambient = current_end()
        if seconds is None:
            return ambient
        end = _monotonic() + seconds
        if ambient is not None and ambient < end:
            return ambient
        return end

    def _forwarded(self) -> grpc.CallCredentials | None:
        """The bearer token a forwarding interceptor published, if this client sends it on.

        Only a client without a token of its own forwards, and only over a
        channel that carries tokens (TLS or loopback).
        """
        if not self._forwards:
            return None
        token = forwarded_token()
        return None if token is None else forwarded_credentials(token)

    def _checked(self, pairs: _Pairs) -> _Pairs:
        """``pairs``, unless they hold credentials that would go elsewhere in plaintext."""
        if self._credentials is None and any(k.lower() == "authorization" for k, _ in pairs):
            raise ValueError(
                f"credentials in metadata would go to {self._target!r} in plaintext: "
                "pass credentials=tls_credentials(...), and the token as token="
            )
        return pairs

    def _call_metadata(self, metadata: Metadata | None) -> _Pairs | None:
        """What a call sends: the client's metadata, less the keys the call gives its own values."""
        if not metadata:
            return self._metadata
        pairs = self._checked(_pairs(metadata))
        if self._metadata is None:
            return pairs
        replaced = {key.lower() for key, _ in pairs}
        return tuple(p for p in self._metadata if p[0].lower() not in replaced) + pairs

    def _lookup(self, method: str, request: Message) -> _Call[Message]:
        """The generic ``call``'s description of ``method``, with its request checked."""
        info = self._methods.get(method)
        if info is None:
            known = ", ".join(self._methods)
            raise ValueError(f"unknown method {method!r}; the contract has: {known}")
        if not isinstance(request, info.request_type):
            raise TypeError(
                f"{method} takes a {info.request_type.DESCRIPTOR.full_name}, "
                f"not a {type(request).__qualname__}"
            )
        return _call(info, request)

    # Request building: one definition for both clients.

    def _create_user(self, username: str, display_name: str, request_id: str | None) -> _Call[User]:
        user = resources_pb2.User(username=username, display_name=display_name)
        request = user_service_pb2.CreateUserRequest(
            user=user, request_id=request_id or str(uuid.uuid4())
        )
        return _call(self._methods["CreateUser"], request)

    def _get_user(self, name: str) -> _Call[User]:
        return _call(self._methods["GetUser"], user_service_pb2.GetUserRequest(name=name))

    def _list_users(
        self, page_size: int, page_token: str
    ) -> _Call[user_service_pb2.ListUsersResponse]:
        request = user_service_pb2.ListUsersRequest(page_size=page_size, page_token=page_token)
        return _call(self._methods["ListUsers"], request)

    def _create_micropost(self, parent: str, text: str, request_id: str | None) -> _Call[Micropost]:
        request = micropost_service_pb2.CreateMicropostRequest(
            parent=parent,
            micropost=resources_pb2.Micropost(text=text),
            request_id=request_id or str(uuid.uuid4()),
        )
        return _call(self._methods["CreateMicropost"], request)

    def _get_micropost(self, name: str) -> _Call[Micropost]:
        return _call(
            self._methods["GetMicropost"], micropost_service_pb2.GetMicropostRequest(name=name)
        )

    def _batch_get_microposts(
        self, names: Sequence[str]
    ) -> _Call[micropost_service_pb2.BatchGetMicropostsResponse]:
        if isinstance(names, str):
            raise TypeError("names must be a sequence of resource names, not one string")
        request = micropost_service_pb2.BatchGetMicropostsRequest(names=names)
        return _call(self._methods["BatchGetMicroposts"], request)

    def _list_microposts(
        self, parent: str, page_size: int, page_token: str
    ) -> _Call[micropost_service_pb2.ListMicropostsResponse]:
        request = micropost_service_pb2.ListMicropostsRequest(
            parent=parent, page_size=page_size, page_token=page_token
        )
        return _call(self._methods["ListMicroposts"], request)

    def _update_micropost(self, name: str, text: str, etag: str | None) -> _Call[Micropost]:
        request = micropost_service_pb2.UpdateMicropostRequest(
            micropost=resources_pb2.Micropost(name=name, text=text, etag=etag or ""),
            update_mask=field_mask_pb2.FieldMask(paths=["text"]),
        )
        return _call(self._methods["UpdateMicropost"], request)

    def _delete_micropost(self, name: str, etag: str | None) -> _Call[empty_pb2.Empty]:
        request = micropost_service_pb2.DeleteMicropostRequest(name=name, etag=etag or "")
        return _call(self._methods["DeleteMicropost"], request)

    @staticmethod
    def _users_page(response: user_service_pb2.ListUsersResponse) -> Page[User]:
        return Page(tuple(response.users), response.next_page_token)

    @staticmethod
    def _microposts_page(response: micropost_service_pb2.ListMicropostsResponse) -> Page[Micropost]:
        return Page(tuple(response.microposts), response.next_page_token)

    def _callables(self, channel: Any) -> dict[str, Any]:
        """One callable per RPC of the contract, as the generated stubs would build them."""
        return {
            name: channel.unary_unary(
                info.path,
                request_serializer=info.request_type.SerializeToString,
                response_deserializer=info.response_type.FromString,
                _registered_method=True,
            )
            for name, info in self._methods.items()
        }
