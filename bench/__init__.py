"""The performance budget (DESIGN section 8), measured: ``python -m bench``.

Every number is a ratio against a bare ``grpc.aio`` echo server measured in
the same run with the same load generator (h2load), runs interleaved
(echo, scenario, echo, scenario, ...) and summarised by their median.

Modules, one concern each:

- ``echo``: the bare echo server (``python -m bench.echo``);
- ``procs``: starting servers on port 0 and always stopping them;
- ``wire``: gRPC request bodies for h2load;
- ``h2load``: finding (or installing) h2load, running it, reading its output;
- ``seed``: data for the MicroPosts server and the requests each scenario sends;
- ``clientcost``: the client wrapper against a raw generated stub;
- ``report``: tables for the terminal and ``docs/benchmarks.md``;
- ``cli``: the options and the order of the runs.
"""
