"""Targets: what a client may be pointed at, checked when the client is built.

gRPC accepts nearly any string as a target and fails only later, as
``UNAVAILABLE`` after every retry, when it cannot resolve or connect. The forms
people write by habit are caught here instead, with a message that shows the
form that works:

- ``host:port``, ``[ipv6]:port``: the usual form (gRPC resolves it by DNS);
- ``dns:///host:port`` (or ``dns://resolver/host:port``): the same, said
  explicitly; every address the name resolves to is used;
- ``ipv4:a:p,b:q`` / ``ipv6:[a]:p,[b]:q``, or a Python list of ``ip:port``:
  fixed addresses;
- ``unix:path``, ``unix:///absolute/path``, ``unix-abstract:name``,
  ``vsock:cid:port``, ``xds:///name``, ``google-c2p:///name``: passed on as
  they are.

Refused: a URL scheme gRPC does not know (``http://``, ``https://``,
``grpc://``: TLS is chosen with ``credentials=``, not by a scheme), a missing
port (gRPC would silently use 443), a port that is not 1 to 65535, a path or
a trailing slash, an IPv6 address without brackets.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Final

__all__ = ["build_target"]

EXAMPLE_PORT: Final = 50051
"""The port MicroPosts listens on by default, used in the suggestions."""

# Resolvers grpcio's C core registers (those for fixed addresses and sockets
# take no further checking here).
_CHECKED_SCHEMES: Final = frozenset({"dns", "ipv4", "ipv6"})
_PASSED_SCHEMES: Final = frozenset({"unix", "unix-abstract", "vsock", "xds", "google-c2p"})
_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def build_target(target: str | Sequence[str]) -> str:
    """A checked gRPC target string from ``"host:port"``, a URI, or a list of ``"ip:port"``.

    A list becomes one ``ipv4:``/``ipv6:`` target, so ``round_robin`` balances
    across the addresses; gRPC has no static resolver for a list of host
    names, so those must be IP addresses (or use one ``dns:///`` name).
    Raises :class:`ValueError` naming the problem and showing the right form.
    """
    if isinstance(target, str):
        return _checked(target)
    addresses = list(target)
    if not addresses:
        raise ValueError("the target list is empty: give at least one 'ip:port'")
    return _fixed_addresses(addresses, "in the target list")


def _checked(target: str) -> str:
    if not target:
        raise ValueError(f"the target is empty: give 'host:port', e.g. 'localhost:{EXAMPLE_PORT}'")
    if any(c.isspace() for c in target):
        raise ValueError(f"target {target!r} contains white space: use {''.join(target.split())!r}")
    scheme, sep, rest = target.partition(":")
    if sep and scheme in _PASSED_SCHEMES:
        if not rest.strip("/"):
            raise ValueError(f"target {target!r} names no {scheme} address")
        return target
    if sep and scheme in _CHECKED_SCHEMES:
        if scheme == "dns":
            _dns(target, rest)
        else:
            _fixed_addresses(rest.split(","), f"in target {target!r}", scheme)
        return target
    url = _URL_SCHEME.match(target)
    if url is not None:
        raise ValueError(_not_a_url(target, url.group(1), target[url.end() :]))
    _host_port(target, f"target {target!r}", "{}")
    return target


def _dns(target: str, rest: str) -> None:
    """``dns:[//authority]/host:port``: the part after the authority must be ``host:port``."""
    if rest.startswith("//"):
        authority, slash, endpoint = rest[2:].partition("/")
        if not slash:  # dns://host:port, the name taken for a resolver's address
            example = authority if ":" in authority else f"{authority}:{EXAMPLE_PORT}"
            raise ValueError(
                f"target {target!r}: a dns target is 'dns:///host:port' (three slashes): "
                f"use 'dns:///{example}'"
            )
        form = f"dns://{authority}/{{}}"
    else:
        endpoint, form = rest, "dns:{}"
    _host_port(endpoint, f"target {target!r}", form)


def _host_port(endpoint: str, what: str, form: str) -> None:
    """Check ``host:port``; ``form`` places a corrected endpoint in the whole target."""
    hostport, slash, _ = endpoint.partition("/")
    if slash:
        raise ValueError(
            f"{what} has a path; a gRPC target has none: use {form.format(hostport)!r}"
        )
    if hostport.startswith("["):
        host, bracket, after = hostport[1:].partition("]")
        port = after[1:] if bracket and after.startswith(":") else None
        if not bracket or (after and port is None):
            raise ValueError(f"{what} is not '[ipv6]:port', e.g. '[::1]:{EXAMPLE_PORT}'")
    elif hostport.count(":") > 1:
        example = form.format(f"[::1]:{EXAMPLE_PORT}")
        raise ValueError(f"{what}: put an IPv6 address in brackets, e.g. {example!r}")
    else:
        host, sep, port_text = hostport.partition(":")
        port = port_text if sep else None
    shown = f"[{host}]" if hostport.startswith("[") else host
    if not host:
        raise ValueError(
            f"{what} has no host: use {form.format(f'localhost:{port or EXAMPLE_PORT}')!r}"
        )
    if not port:
        raise ValueError(
            f"{what} has no port (gRPC would use 443): use {form.format(f'{shown}:PORT')!r}, "
            f"e.g. {form.format(f'{shown}:{EXAMPLE_PORT}')!r}"
        )
    _port(port, what, form.format(f"{shown}:{EXAMPLE_PORT}"))


def _port(port: str, what: str, example: str) -> None:
    if not (port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(f"{what}: port {port!r} is not a number from 1 to 65535, e.g. {example!r}")


def _not_a_url(target: str, scheme: str, rest: str) -> str:
    """The message for ``http://host:port/`` and the like: the target without the URL parts."""
    endpoint = rest.split("/", 1)[0]
    if ":" not in endpoint.rsplit("]", 1)[-1]:
        endpoint = f"{endpoint}:PORT"
    tls = ""
    if scheme.lower() in {"https", "grpcs"}:
        tls = " (TLS is chosen with credentials=, not by a scheme)"
    return (
        f"target {target!r} is a URL; gRPC takes 'host:port' or a gRPC URI such as "
        f"'dns:///host:port': use {endpoint!r}{tls}"
    )


def _fixed_addresses(addresses: list[str], where: str, scheme: str | None = None) -> str:
    """``ip:port`` addresses of one family, as one ``ipv4:``/``ipv6:`` target."""
    families = set()
    for address in addresses:
        what = f"{where}, {address!r}"
        host, sep, port = address.rpartition(":")
        if not sep or not port:
            raise ValueError(f"{what} has no port: expected 'ip:port'")
        try:
            ip = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            raise ValueError(
                f"{what}: a list of addresses needs IP addresses; for host names use "
                "one 'dns:///name:port' target that resolves to every replica"
            ) from None
        _port(port, what, f"{host}:{EXAMPLE_PORT}")
        families.add(ip.version)
    if len(families) > 1:
        raise ValueError(f"{where}: the addresses must be all IPv4 or all IPv6")
    family = "ipv4" if families == {4} else "ipv6"
    if scheme is not None and scheme != family:
        raise ValueError(f"{where}: an {scheme}: target lists {scheme} addresses")
    return f"{family}:{','.join(addresses)}"
