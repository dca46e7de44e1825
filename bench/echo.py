"""The baseline: a bare ``grpc.aio`` echo server.

A protobuf message in, the same message out: no middleware, no logging, the
default asyncio event loop. It answers every ``microposts.v1.MicropostService``
method by parsing the request as that method's request type and returning it,
so the MicroPosts scenarios' URLs and bodies can be sent to it unchanged.

Run as ``python -m bench.echo --address 127.0.0.1:0``; like the MicroPosts
server it announces the port it bound in a JSON line on stderr
(``{"msg": "serving", "address": "127.0.0.1:PORT"}``). Several processes may
share one port: ``grpc.so_reuseport`` is on (gRPC's default on Linux).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.message import Message

from microposts_client import method_table

# Read from the contract once, at import (start-up), never per call.
SERVICE = method_table()["GetMicropost"].service  # microposts.v1.MicropostService

# Method name -> request type, for every method of SERVICE. The response is the
# request itself.
REQUEST_TYPES: dict[str, type[Message]] = {
    name: m.request_type for name, m in method_table().items() if m.service == SERVICE
}


async def _echo(request: Message, context: grpc.aio.ServicerContext[Any, Any]) -> Message:
    return request


def _handler(request_type: type[Message]) -> grpc.RpcMethodHandler[Any, Any]:
    serialize: Callable[[Message], bytes] = request_type.SerializeToString
    return grpc.unary_unary_rpc_method_handler(
        _echo,
        request_deserializer=request_type.FromString,
        response_serializer=serialize,
    )


async def serve(address: str) -> None:
    """Serve until SIGTERM or SIGINT."""
    server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
    handlers = {name: _handler(t) for name, t in REQUEST_TYPES.items()}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port(address)
    if port == 0:
        raise SystemExit(f"echo: cannot bind {address}")
    await server.start()
    await announce_and_wait(address, port)
    await server.stop(grace=0.5)


async def announce_and_wait(address: str, port: int) -> None:
    """Writes the ``"serving"`` line the bench waits for, then waits for SIGTERM or SIGINT."""
    host = address.rsplit(":", 1)[0]
    print(json.dumps({"msg": "serving", "address": f"{host}:{port}"}), file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m bench.echo``."""
    parser = argparse.ArgumentParser(prog="python -m bench.echo", description=__doc__)
    parser.add_argument("--address", default="127.0.0.1:0", help="host:port to bind (port 0: any)")
    parser.add_argument(
        "--event-loop",
        choices=["asyncio", "uvloop"],
        default="asyncio",
        help="the baseline is asyncio's default loop; uvloop for comparison",
    )
    args = parser.parse_args(argv)
    if args.event_loop == "uvloop":
        import uvloop

        uvloop.run(serve(args.address))
    else:
        asyncio.run(serve(args.address))


if __name__ == "__main__":
    main()
