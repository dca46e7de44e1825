"""MicroPosts client: typed calls with deadlines, deadline propagation, safe retries, typed errors.

::

    from microposts_client import Client, deadline

    with Client("localhost:50051") as client:
        post = client.create_micropost(parent="users/alice", text="hi @bob")

See the README section "Calling it from Python" for the whole tour.
"""

from ._async_client import AsyncClient
from ._base import OverloadStats
from ._config import (
    DEFAULT_READ_TIMEOUT,
    DEFAULT_WRITE_TIMEOUT,
    USE_CLIENT_DEFAULT,
    Timeout,
    Timeouts,
    UseClientDefault,
)
from ._credentials import REFRESH_BEFORE, TokenSource, tls_credentials
from ._deadlines import deadline, time_remaining
from ._exceptions import (
    Aborted,
    AlreadyExists,
    Cancelled,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    ServiceError,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    Unknown,
)
from ._interceptors import NO_DEADLINE_ABOVE, DeadlineInterceptor, SyncDeadlineInterceptor
from ._methods import IdempotencyLevel, MethodInfo, method_table
from ._pages import Page
from ._retry import DEFAULT_RETRY, Retry
from ._sync_client import Client
from ._throttle import DEFAULT_THROTTLE, RetryBudget, Throttle
from ._version import __version__

__all__ = [
    "DEFAULT_READ_TIMEOUT",
    "DEFAULT_RETRY",
    "DEFAULT_THROTTLE",
    "DEFAULT_WRITE_TIMEOUT",
    "NO_DEADLINE_ABOVE",
    "REFRESH_BEFORE",
    "USE_CLIENT_DEFAULT",
    "Aborted",
    "AlreadyExists",
    "AsyncClient",
    "Cancelled",
    "Client",
    "DataLoss",
    "DeadlineExceeded",
    "DeadlineInterceptor",
    "FailedPrecondition",
    "IdempotencyLevel",
    "Internal",
    "InvalidArgument",
    "MethodInfo",
    "NotFound",
    "OutOfRange",
    "OverloadStats",
    "Page",
    "PermissionDenied",
    "ResourceExhausted",
    "Retry",
    "RetryBudget",
    "ServiceError",
    "SyncDeadlineInterceptor",
    "Throttle",
    "Timeout",
    "Timeouts",
    "TokenSource",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Unknown",
    "UseClientDefault",
    "__version__",
    "deadline",
    "method_table",
    "time_remaining",
    "tls_credentials",
]
