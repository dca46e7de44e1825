"""Credentials: TLS and mTLS from PEM, bearer tokens, and where a token may be sent.

- :func:`tls_credentials` builds channel credentials from PEM files or bytes:
  the CA to trust (system roots when omitted) and, for mTLS, the client's
  certificate chain and key.
- ``token=`` on a client is a string, or a callable returning a fresh token.
  A callable's token is cached and fetched again :data:`REFRESH_BEFORE`
  seconds before its ``exp`` (read from the token, unverified: only the
  server can check it), so a long-lived client never sends an expired one.
  A token whose expiry cannot be read is fetched again for every call.
- A token is only sent over TLS or to a loopback address. gRPC itself drops
  call credentials on a plaintext channel, so a loopback target (or a Unix
  socket) without ``credentials=`` gets gRPC's *local* credentials:
  plaintext still, but a channel that carries tokens, and only on this
  machine. A token with a
  plaintext target elsewhere is a ``ValueError`` when the client is made.
- Forwarding: a server that installs ``DeadlineInterceptor(forward_token=True)``
  publishes the incoming call's bearer token, and clients without a token of
  their own send it on (over TLS or loopback only). See the README, "Who is
  calling", for when that is right.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import functools
import ipaddress
import json
import os
import threading
import time
from collections.abc import Callable
from typing import Final

import grpc

__all__ = ["REFRESH_BEFORE", "TokenSource", "tls_credentials"]

REFRESH_BEFORE: Final = 60.0
"""Seconds before a token's ``exp`` at which a token callable is asked for a new one."""

TokenSource = str | Callable[[], str]
"""What ``token=`` takes: a bearer token, or a callable that returns a fresh one."""

PemSource = str | os.PathLike[str] | bytes
"""PEM given as ``bytes`` (the PEM itself) or as a path to a file holding it."""

# The incoming call's bearer token, published by a forwarding interceptor.
_FORWARDED: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "microposts_client_forwarded_token", default=None
)
forwarded_token = _FORWARDED.get


def _pem(source: PemSource, what: str) -> bytes:
    if isinstance(source, bytes):
        return source
    if isinstance(source, str) and source.lstrip().startswith("-----BEGIN"):
        return source.encode()
    try:
        with open(source, "rb") as file:
            return file.read()
    except OSError as exc:
        raise ValueError(f"{what}: cannot read {os.fspath(source)!r}: {exc.strerror}") from None


def tls_credentials(
    ca: PemSource | None = None, cert: PemSource | None = None, key: PemSource | None = None
) -> grpc.ChannelCredentials:
    """Channel credentials for TLS (``ca``), or mTLS (``ca``, ``cert`` and ``key``).

    Each is PEM, as ``bytes`` or a path to a file. ``ca``: the certificates
    to trust (omitted: the system's roots). ``cert`` and ``key``: the client's
    certificate chain and private key, for servers that require client
    certificates; give both or neither.
    """
    if (cert is None) != (key is None):
        raise ValueError("tls_credentials: give both cert and key (mTLS), or neither")
    return grpc.ssl_channel_credentials(
        root_certificates=None if ca is None else _pem(ca, "ca"),
        private_key=None if key is None else _pem(key, "key"),
        certificate_chain=None if cert is None else _pem(cert, "cert"),
    )


def _expiry(token: str) -> float | None:
    """The token's ``exp`` if it is a JWT that has one (not verified: a refresh hint only)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) else None


class BearerToken:
    """The token to send now: ``source`` itself, or its callable's, refreshed before expiry."""

    def __init__(self, source: TokenSource, clock: Callable[[], float] = time.time) -> None:
        if isinstance(source, str) and not source:
            raise ValueError("token must not be empty")
        self._source = source
        self._clock = clock
        self._lock = threading.Lock()
        self._token = ""
        self._refresh_at = 0.0

    def __call__(self) -> str:
        if isinstance(self._source, str):
            return self._source
        with self._lock:  # gRPC may ask from several threads at once
            if not self._token or self._clock() >= self._refresh_at:
                token = self._source()
                if not isinstance(token, str) or not token:
                    raise ValueError("the token callable must return a non-empty string")
                exp = _expiry(token)
                self._token = token
                self._refresh_at = 0.0 if exp is None else exp - REFRESH_BEFORE
            return self._token


class _BearerPlugin(grpc.AuthMetadataPlugin):
    """Adds ``authorization: Bearer <token>`` to each call (gRPC runs it in its own threads)."""

    def __init__(self, token: BearerToken) -> None:
        self._token = token

    def __call__(
        self, context: grpc.AuthMetadataContext, callback: grpc.AuthMetadataPluginCallback
    ) -> None:
        try:
            value = "Bearer " + self._token()
        except Exception as exc:  # the call fails with the reason, instead of hanging
            callback((), exc)
            return
        callback((("authorization", value),), None)


def is_loopback(target: str) -> bool:
    """Whether every address of ``target`` is on this machine (localhost, 127/8, ::1).

    The server's protected mode judges its listen address (HOST:PORT) with this
    same function (``microposts_server.config``): keep it strict for both.
    """
    rest = target
    for scheme in ("dns:///", "dns:", "ipv4:", "ipv6:"):
        if rest.startswith(scheme):
            rest = rest[len(scheme) :]
            break
    for address in rest.split(","):
        host = address.rpartition(":")[0] if ":" in address else address
        host = host.strip("[]")
        if host.lower() == "localhost":
            continue
        try:
            if not ipaddress.ip_address(host).is_loopback:
                return False
        except ValueError:
            return False
    return True


def _local(target: str) -> grpc.ChannelCredentials | None:
    """gRPC's local credentials for a target on this machine (TCP loopback or a Unix socket)."""
    if target.startswith(("unix:", "unix-abstract:")):
        return grpc.local_channel_credentials(grpc.LocalConnectionType.UDS)
    if is_loopback(target):
        return grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP)
    return None


def channel_credentials(
    target: str, credentials: grpc.ChannelCredentials | None, token: TokenSource | None
) -> grpc.ChannelCredentials | None:
    """What the channel to ``target`` is opened with; ``None``: plaintext, no tokens at all.

    Raises ``ValueError`` for a token that would go to another machine in plaintext.
    """
    if credentials is None:
        credentials = _local(target)
    if token is None:
        return credentials
    if credentials is None:
        raise ValueError(
            f"a bearer token is only sent over TLS or to a loopback address, and {target!r} "
            "is neither: pass credentials=tls_credentials(...) too"
        )
    call = grpc.metadata_call_credentials(_BearerPlugin(BearerToken(token)), name="bearer")
    return grpc.composite_channel_credentials(credentials, call)


@functools.lru_cache(maxsize=64)
def forwarded_credentials(token: str) -> grpc.CallCredentials:
    """Per-call credentials sending a forwarded token (one object per token, reused)."""
    return grpc.access_token_call_credentials(token)
