"""A bare grpc.aio server that turns every call away, at one chosen point: what each costs.

``python -m bench.rejecting --at POINT --address 127.0.0.1:0`` serves
``MicropostService`` like ``bench.echo`` (the same event loop, no middleware)
but answers every call ``RESOURCE_EXHAUSTED`` from ``POINT``:

- ``handler``: the method handler aborts at once (as our pipeline would
  before decoding);
- ``interceptor``: a grpc.aio server interceptor returns an aborting handler;
- ``generic``: a generic handler (grpc.aio's fallback lookup) returns one;
- ``limiter``: ``grpc.aio.server(maximum_concurrent_rpcs=1)`` with its one
  slot held by a call that never ends, so grpc.aio refuses the rest itself;
- ``receive-loop``: the MicroPosts server's own receive loop
  (``microposts_server.overload``), with admission draining, so that it
  answers every call from the loop before grpc.aio sets the call up.

The bench loads it with h2load like the echo and divides the server's CPU
time by the calls answered: the cost of one rejection at that point.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import grpc

from bench.echo import REQUEST_TYPES, SERVICE, announce_and_wait

POINTS = ("handler", "interceptor", "generic", "limiter", "receive-loop")


async def _reject(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
    await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "at capacity")


async def _hang(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
    await asyncio.Event().wait()  # holds the limiter's one slot for good


def _rejecting() -> grpc.RpcMethodHandler[Any, Any]:
    return grpc.unary_unary_rpc_method_handler(_reject)


class _RejectAll(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        return _rejecting()


class _Generic(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    def service(self, handler_call_details: Any) -> Any:
        return _rejecting()


def build(point: str) -> grpc.aio.Server:
    """The server for ``point``, with its handlers added."""
    options = [("grpc.so_reuseport", 1)]
    if point == "receive-loop":
        from microposts_server.overload import Admission, make_server

        admission = Admission()
        server, gated = make_server(options, admission, [SERVICE])
        if not gated:
            raise SystemExit("rejecting: this grpcio lacks what the receive loop needs")
        admission.drain()  # every call is answered from the loop
        handlers = {name: grpc.unary_unary_rpc_method_handler(_reject) for name in REQUEST_TYPES}
        server.add_registered_method_handlers(SERVICE, handlers)  # type: ignore[attr-defined]
        return server
    if point == "generic":
        server = grpc.aio.server(options=options)
        server.add_generic_rpc_handlers((_Generic(),))
        return server
    if point == "interceptor":
        server = grpc.aio.server(options=options, interceptors=[_RejectAll()])
    elif point == "limiter":
        server = grpc.aio.server(options=options, maximum_concurrent_rpcs=1)
    else:
        server = grpc.aio.server(options=options)
    behaviour = _hang if point == "limiter" else _reject
    handlers = {name: grpc.unary_unary_rpc_method_handler(behaviour) for name in REQUEST_TYPES}
    server.add_registered_method_handlers(SERVICE, handlers)  # type: ignore[attr-defined]
    return server


async def serve(point: str, address: str) -> None:
    """Serve until SIGTERM or SIGINT."""
    server = build(point)
    port = server.add_insecure_port(address)
    await server.start()
    if point == "limiter":  # take the one slot, for good
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        hold = channel.unary_unary(f"/{SERVICE}/GetMicropost", None, None)
        holder = asyncio.ensure_future(hold(b""))
        await asyncio.sleep(0.2)
    await announce_and_wait(address, port)
    if point == "limiter":
        holder.cancel()
        await channel.close(None)
    await server.stop(grace=0.5)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m bench.rejecting``."""
    parser = argparse.ArgumentParser(prog="python -m bench.rejecting", description=__doc__)
    parser.add_argument("--at", choices=POINTS, required=True, help="where calls are turned away")
    parser.add_argument("--address", default="127.0.0.1:0", help="host:port to bind (port 0: any)")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.at, args.address))


if __name__ == "__main__":
    main()
