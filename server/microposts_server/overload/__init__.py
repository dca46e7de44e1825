"""Overload control: which calls run, which wait, which are turned away, and how cheaply.

Why this module exists: grpc.aio takes every call the moment it arrives and
starts a task for it, so past capacity every call waits in the event loop's
queue until its caller's deadline is nearly spent, and then the server does
the work anyway (goodput fell to ~5 % of capacity at twice the load). What
it costs to turn a call away decides what can be done about it; measured
(docs/benchmarks.md, "What turning a call away costs"):

- a call answered in our handler, by an interceptor or a generic handler:
  about what serving a bare echo costs;
- ``grpc.aio.server(maximum_concurrent_rpcs=...)``: ~0.85 of that, because
  grpc.aio has set the call up (its task, its cancellation listener) first;
- refused by the core per connection (``SETTINGS_MAX_CONCURRENT_STREAMS``):
  nothing in Python at all, and the caller's excess waits on its side;
- answered from the loop that asks the core for calls, before grpc.aio has
  set anything up: ~0.55 of a bare echo. This is the earliest point Python
  sees a call, and the cheapest; it is where this module decides.

So the server serves its own methods with its own receive loops
(``GatedServer``, ``RECEIVERS`` per method) instead of grpc.aio's, and hands
each call the core gives it to ``Admission``, which

1. runs it now, if fewer calls run than the concurrency limit allows;
2. else queues it (first in, first out), if it can still finish in time: its
   time left must cover the expected wait plus its method's usual service
   time (deadline-aware admission), and the wait must fit ``max_wait``;
3. else turns it away at once, before any of its bytes are read:
   ``RESOURCE_EXHAUSTED`` with ``google.rpc.RetryInfo`` and the
   ``grpc-retry-pushback-ms`` trailer when the server is busy (the wait is
   the problem), ``DEADLINE_EXCEEDED`` when the call could not finish even
   with no wait (retrying is pointless), ``UNAVAILABLE`` while the server
   drains for shutdown (another replica can serve it).

Why first in, first out, and a long ``max_wait`` by default: a client's
calls are bounded per connection, and a load generator that does not
throttle sends another call the moment one is answered; every call turned
away early is at once replaced by one that costs the same again, so that
shedding whatever waits longer than a short target halved goodput in the
bench, where serving the queue in order, each call within its own
deadline, held it. Calls whose deadline cannot be met are still turned away
on arrival, and a caller that throttles (ours does) takes the hint.

The concurrency limit follows measured latency with Netflix's Gradient2
(``Gradient2``): no fixed "no-load latency" to calibrate, it compares recent
latency with its own long-run average. Health checks and reflection are not
gated: grpc.aio's own loop keeps serving them.

``GatedServer`` relies on grpc.aio internals (``cygrpc.AioServer``'s
request loop, ``_handle_rpc``); ``make_server`` checks they are there and
otherwise falls back to a plain grpc.aio server, logging that overload
control is off. The per-connection stream bound (a core option) works
either way.
"""

from .admission import (
    BODY_GRACE,
    DRAINING,
    MAX_GAP,
    QUIET_AFTER,
    Admission,
    Policy,
    Reason,
    Rejection,
    Stats,
    Waiting,
    handler_started,
)
from .answers import PUSHBACK_KEY, answer
from .gated import make_server
from .limit import Gradient2

__all__ = [
    "BODY_GRACE",
    "DRAINING",
    "MAX_GAP",
    "PUSHBACK_KEY",
    "QUIET_AFTER",
    "Admission",
    "Gradient2",
    "Policy",
    "Reason",
    "Rejection",
    "Stats",
    "Waiting",
    "answer",
    "handler_started",
    "make_server",
]
