"""gRPC request bodies for h2load.

A unary gRPC request body is one length-prefixed message: a compressed flag
(0), the length as 4 bytes big-endian, the serialized protobuf. h2load sends
the file given with ``-d`` as the body of every request, byte for byte.
"""

from __future__ import annotations

import struct
from pathlib import Path

from google.protobuf.message import Message

HEADERS = ("content-type: application/grpc", "te: trailers")
"""The headers that make a POST a gRPC call (h2load adds ``:method POST`` itself with ``-d``)."""


def frame(payload: bytes) -> bytes:
    """One uncompressed gRPC message frame."""
    return b"\x00" + struct.pack(">I", len(payload)) + payload


def write_body(path: Path, request: Message) -> Path:
    """Write ``request`` as a gRPC request body to ``path``."""
    path.write_bytes(frame(request.SerializeToString()))
    return path
