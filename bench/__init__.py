"""The performance budget in docs/design.md, measured: ``python -m bench``.

Every number is a ratio against a bare ``grpc.aio`` echo server measured in
the same run with the same load generator (h2load), runs interleaved
(echo, scenario, echo, scenario, ...) and summarised by their median.

Modules, one concern each:

- ``cli``: the options, the order of the runs (``RUN_ORDER``) and ``main``;
- ``progress``: the progress line on stderr;
- ``runs``: what every scenario uses: starting the shared servers, measuring
  one target with h2load, and what a scenario is (``runs.Scenario``);
- the scenarios, one section of the report each: ``throughput``, ``latency``,
  ``client`` (the client wrapper against a raw generated stub), ``workers``,
  ``secure`` (TLS and JWT against the plaintext server), ``overload`` (goodput
  past capacity, what a rejection costs, Python callers);
- ``echo``: the bare echo server (``python -m bench.echo``); ``rejecting``: a
  bare server that turns every call away at one chosen point;
- ``procs``: starting servers on port 0 and always stopping them;
- ``wire``: gRPC request bodies for h2load;
- ``h2load``: finding (or installing) h2load, running it, reading its output;
- ``seed``: data for the MicroPosts server and the requests each scenario sends;
- ``report``: tables and the page, for the terminal and ``docs/benchmarks.md``;
- ``profile``: where a call's server CPU goes (``python -m bench.profile``).

A new scenario is one module with a ``SCENARIO`` and one line in
``cli.RUN_ORDER``.
"""
