"""MicroPosts server: a grpc.aio service for users and their short posts.

Layers (each one place, Cosmic Python style):

- ``domain``: the model, its rules and its errors (no grpc, no protobuf);
- ``service``: the use cases, one method per RPC, on a ``store.Store``;
- ``store``: the storage port and its adapters (SQLite, PostgreSQL);
- ``deadlines``: the per-call time budget that bounds all of the above;
- ``servicers``: protobuf <-> domain translation, nothing more;
- ``rpc``: the per-call pipeline (decode, admission, deadline, errors, log),
  built once per method at start-up;
- ``app``: assembly (``build_app``) and the run loop; ``__main__``: the CLI.
"""

__version__ = "0.2.0"
"""The ``microposts-server`` distribution's version: its one source (pyproject.toml reads it)."""
