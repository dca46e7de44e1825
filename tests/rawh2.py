"""A client that speaks just enough HTTP/2 to misbehave: idle connections, stalled request bodies.

A real gRPC client cannot be told to open a connection and never call, or to
start a request and never finish its body; these faults are what a slow or
unfriendly network does to a server, so the tests that bound them need a
client that does exactly that. Frames are written by hand (RFC 9113), headers
as HPACK literals without indexing (RFC 7541 §6.2.2), which any decoder
accepts.
"""

from __future__ import annotations

import socket
import struct

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, SETTINGS = 0x0, 0x1, 0x4
END_HEADERS = 0x4


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    """One HTTP/2 frame: its 9-byte header, then ``payload``."""
    head = struct.pack(">I", len(payload))[1:] + bytes((kind, flags)) + struct.pack(">I", stream)
    return head + payload


def _string(text: str) -> bytes:
    raw = text.encode()
    if len(raw) >= 127:  # one-byte lengths only; nothing here needs more
        raise ValueError(f"header too long for this encoder: {text!r}")
    return bytes((len(raw),)) + raw


def header_block(headers: list[tuple[str, str]]) -> bytes:
    """HPACK: every header as a literal without indexing, with a literal name."""
    return b"".join(b"\x00" + _string(name) + _string(value) for name, value in headers)


class RawConnection:
    """One TCP connection that has sent the HTTP/2 preface and its (empty) SETTINGS."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0))
        self.next_stream = 1

    def stall_request(self, path: str, claimed: int, sent: int) -> int:
        """Starts a gRPC call on ``path`` whose message claims ``claimed`` bytes, sends
        ``sent`` of them, and never ends the stream; returns its stream id."""
        stream = self.next_stream
        self.next_stream += 2
        block = header_block(
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", path),
                (":authority", "localhost"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ]
        )
        body = b"\x00" + struct.pack(">I", claimed) + b"x" * sent
        self.sock.sendall(frame(HEADERS, END_HEADERS, stream, block) + frame(DATA, 0, stream, body))
        return stream

    def close(self) -> None:
        self.sock.close()
