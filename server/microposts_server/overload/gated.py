"""The server's own receive loop, when this grpcio allows it: ``make_server``.

``GatedServer`` (``gated_server.py``) relies on grpc.aio internals
(``cygrpc.AioServer``'s request loop, ``_handle_rpc``). ``make_server`` uses
it only on a grpcio release it was tested with (``TESTED_GRPC``) that has every
internal it calls, and otherwise falls back to a plain grpc.aio server
(``app.py`` logs that overload control is then off; the per-connection
stream bound, a core option, works either way).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final, cast

import grpc

from .admission import Admission

TESTED_GRPC: Final = ("1.85.",)
"""grpcio releases whose internals ``GatedServer`` was tested against. A
later grpcio may change a private signature without notice, so it falls back
until it is tested and added here."""


def usable() -> bool:
    """Whether this grpcio is one ``GatedServer`` was tested with, with every internal it uses."""
    if not grpc.__version__.startswith(TESTED_GRPC):
        return False
    try:
        from grpc._cython import cygrpc
        from grpc.aio import _server as aio_server
    except ImportError:  # pragma: no cover - grpcio without the Cython core
        return False
    needed = {
        cygrpc: (
            "_handle_rpc",
            "_schedule_rpc_coro",
            "_ServicerContext",
            "_send_error_status_from_server",
            "SendInitialMetadataOperation",
            "StatusCode",
            "get_working_loop",
        ),
        cygrpc.AioServer: ("_make_request_call_future", "_request_registered_call", "is_running"),
        aio_server: ("_augment_channel_arguments", "Server"),
    }
    return all(hasattr(owner, name) for owner, names in needed.items() for name in names)


def make_server(
    options: Sequence[tuple[str, Any]], admission: Admission, services: Iterable[str]
) -> tuple[grpc.aio.Server, bool]:
    """A grpc.aio server whose ``services`` go through ``admission``; and whether they do.

    Falls back to a plain grpc.aio server (``False``) when ``usable()`` says no.
    """
    if not usable():
        return grpc.aio.server(options=options), False
    from grpc._cython import cygrpc
    from grpc.aio import _server as aio_server

    from .gated_server import GatedServer

    # grpc.aio.Server is a thin shell over its Cython server (``_loop``,
    # ``_server``); building it without its __init__ avoids creating, and
    # leaking, a core server that would never be started.
    server = aio_server.Server.__new__(aio_server.Server)
    server._loop = loop = cygrpc.get_working_loop()
    arguments = aio_server._augment_channel_arguments(options, None)
    server._server = GatedServer(
        loop, None, (), None, arguments, None, admission=admission, services=services
    )
    return cast(grpc.aio.Server, server), True
