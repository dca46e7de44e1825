"""Settings: each one a command-line flag with an environment variable.

The flag wins over the variable, the variable over the default. A bad value
stops the server with one line naming the flag (or variable) it came from.
``SETTINGS`` is the single table; the README's settings table matches it.

Settings that only make sense together are checked together (``--tls-key``
with ``--tls-cert``, the ``--jwt-*`` settings with ``--auth jwt``), the TLS
and key files are loaded and checked, and **protected mode** holds: a server
listening on anything but loopback needs TLS and authentication (``--auth
jwt``, or client certificates), unless ``--insecure`` says to serve anyway.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

# A listen address HOST:PORT is judged as the client judges a target of one
# address (localhost, 127.0.0.0/8, ::1): one rule for "this machine only". A
# private module of the client: both distributions are released together and
# the server pins the client's exact version (pyproject.toml).
from microposts_client._credentials import is_loopback

from . import auth, deadlines, idempotency, tls
from .store import StoreURLError, redact_url
from .store import check_url as check_store_url


class ConfigError(ValueError):
    """A setting has a bad value; the message names it."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the server can be told at start-up."""

    address: str = "127.0.0.1:50051"
    store: str = "sqlite:///microposts.db"
    log_level: str = "info"
    grace: float = 10.0
    max_deadline: float = deadlines.DEFAULT_MAX_DEADLINE
    min_deadline: Mapping[str, float] = field(
        default_factory=lambda: {"*": deadlines.DEFAULT_MIN_DEADLINE}
    )
    request_id_ttl: float = idempotency.DEFAULT_REQUEST_TTL
    durability: str = "normal"
    workers: int = 1
    pool_size: int = 10
    health_interval: float = 2.0
    event_loop: str = "auto"
    metrics_address: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    auth: str = "none"
    jwt_keys: str = ""
    jwt_issuer: str = ""
    jwt_audience: str = ""
    jwt_clock_skew: float = 30.0
    reflection: str = "on"
    insecure: bool = False
    max_concurrent_streams: int = 8
    max_concurrency: int = 200
    max_queue_wait: float = 0.5
    max_receive_size: int = 64 * 1024
    idle_timeout: float = 300.0
    max_connection_age: float = 1800.0
    # Not a setting: true only in the --workers supervisor's own children,
    # the one case where processes may share a port (SO_REUSEPORT).
    reuse_port: bool = False


WORKER_ENV = "_MICROPOSTS_WORKER"
"""Set to 1 by the ``--workers`` supervisor for its children: they may share its port."""


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise ValueError
    return value


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if value == 0:
        raise ValueError
    return value


def _hours(text: str) -> float:
    return _positive_seconds(text) * 3600


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError
    return value


def _size(text: str) -> int:
    """Bytes, with an optional K or M suffix (KiB, MiB): "65536", "64K", "4M"."""
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = {"K": 1024, "M": 1024 * 1024}.get(text[-1:], 1)
    value = int(text[:-1] if scale > 1 else text) * scale
    if not 1024 <= value <= 1024**3:  # gRPC takes at most 2 GiB - 1
        raise ValueError
    return value


def _choice(*options: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text.lower() not in options:
            raise ValueError
        return text.lower()

    parse.__doc__ = "one of " + ", ".join(options)
    return parse


def _address(text: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError
    return text


def _optional_address(text: str) -> str:
    return _address(text) if text else ""


def _file(text: str) -> str:
    """A readable file, or empty for "not given"."""
    if text and not (os.path.isfile(text) and os.access(text, os.R_OK)):
        raise ValueError
    return text


def _switch(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError


def _store(text: str) -> str:
    try:
        return check_store_url(text)
    except StoreURLError:
        raise ValueError from None


def _min_deadline(text: str) -> dict[str, float]:
    """ "0.005" or "0.005,CreateMicropost=0.02": a default and per-method minimums."""
    result: dict[str, float] = {"*": deadlines.DEFAULT_MIN_DEADLINE}
    for part in filter(None, (p.strip() for p in text.split(","))):
        method, sep, value = part.rpartition("=")
        result[method.strip() if sep else "*"] = _seconds(value)
    return result


@dataclass(frozen=True, slots=True)
class Option:
    """One setting: flag, environment variable, parser, help (README table)."""

    dest: str
    parse: Callable[[str], Any]
    expect: str
    help: str
    switch: bool = False  # a bare flag (no value); its variable takes 1 or 0
    show: Callable[[str], str] = repr
    """How a bad value is echoed in the error: a value that may hold a secret is redacted."""

    @property
    def flag(self) -> str:
        return "--" + self.dest.replace("_", "-")

    @property
    def env(self) -> str:
        return "MICROPOSTS_" + self.dest.upper()


SETTINGS: tuple[Option, ...] = (
    Option("address", _address, "HOST:PORT", "where to listen; port 0 picks a free port"),
    Option(
        "store",
        _store,
        "a store URL",
        "sqlite:///file.db, sqlite://:memory: or postgresql://",
        show=lambda text: repr(redact_url(text)),  # postgresql://user:password@...
    ),
    Option(
        "log_level",
        _choice("debug", "info", "warning", "error"),
        "debug, info, warning or error",
        "log level; info logs one line per call; start and stop lines show at any level",
    ),
    Option(
        "grace", _seconds, "seconds >= 0", "on SIGTERM/SIGINT, how long in-flight calls may finish"
    ),
    Option(
        "max_deadline",
        _positive_seconds,
        "seconds > 0",
        "the longest any call may run; calls sent without a deadline get this",
    ),
    Option(
        "min_deadline",
        _min_deadline,
        "seconds, or list like 0.005,CreateMicropost=0.02",
        "calls arriving with less time left are rejected before any work",
    ),
    Option(
        "request_id_ttl",
        _hours,
        "hours > 0",
        "how long a create's request_id is remembered for replays",
    ),
    Option(
        "durability",
        _choice("normal", "full"),
        "normal or full",
        "normal: an acknowledged write survives kill -9; full: a power cut too "
        "(SQLite fsyncs each commit, PostgreSQL insists on synchronous_commit)",
    ),
    Option(
        "workers", _count, "an integer >= 1", "server processes sharing the port (SO_REUSEPORT)"
    ),
    Option("pool_size", _count, "an integer >= 1", "PostgreSQL connections per process"),
    Option(
        "health_interval",
        _positive_seconds,
        "seconds > 0",
        "how often the store is checked for the health service",
    ),
    Option(
        "event_loop",
        _choice("auto", "asyncio", "uvloop"),
        "auto, asyncio or uvloop",
        "auto uses uvloop when it is installed",
    ),
    Option(
        "metrics_address",
        _optional_address,
        "HOST:PORT, or empty for off",
        "serve Prometheus metrics over HTTP at /metrics",
    ),
    Option(
        "tls_cert",
        _file,
        "a PEM file, or empty for off",
        "serve TLS with this certificate chain (with --tls-key); re-read when it changes",
    ),
    Option(
        "tls_key",
        _file,
        "a PEM file, or empty for off",
        "the private key of --tls-cert (unencrypted)",
    ),
    Option(
        "tls_client_ca",
        _file,
        "a PEM file, or empty for off",
        "mTLS: require client certificates signed by these CAs",
    ),
    Option(
        "auth",
        _choice("none", "jwt"),
        "none or jwt",
        "jwt: every MicroPosts call needs 'authorization: Bearer <JWT>' (health, reflection don't)",
    ),
    Option(
        "jwt_keys",
        _file,
        "a JWKS or PEM file",
        "public keys that sign the tokens (--auth jwt); re-read when it changes",
    ),
    Option("jwt_issuer", str, "a string", "the 'iss' tokens must have (--auth jwt)"),
    Option("jwt_audience", str, "a string", "the 'aud' tokens must include (--auth jwt)"),
    Option(
        "jwt_clock_skew",
        _seconds,
        "seconds >= 0",
        "how far 'exp', 'nbf' and 'iat' may be off the server's clock",
    ),
    Option(
        "reflection",
        _choice("on", "off"),
        "on or off",
        "server reflection (grpcurl list/describe without proto files)",
    ),
    Option(
        "insecure",
        _switch,
        "a bare switch; the variable takes 1 or 0",
        "serve on a non-loopback address without TLS or authentication anyway",
        switch=True,
    ),
    Option(
        "max_concurrent_streams",
        _count,
        "an integer >= 1",
        "calls one connection may have open at once; a client's excess waits on its side",
    ),
    Option(
        "max_concurrency",
        _count,
        "an integer >= 1",
        "ceiling of the adaptive limit on calls running at once (8 or less: a fixed limit)",
    ),
    Option(
        "max_queue_wait",
        _positive_seconds,
        "seconds > 0",
        "the longest a call may wait for a free slot; one that would wait longer, or could "
        "not finish before its deadline, is turned away at once (RESOURCE_EXHAUSTED, with a "
        "retry delay); lower it to bound latency, at a cost in goodput",
    ),
    Option(
        "max_receive_size",
        _size,
        "bytes from 1K to 1024M, e.g. 65536, 64K or 1M",
        "the largest request message accepted; larger ones are RESOURCE_EXHAUSTED",
    ),
    Option(
        "idle_timeout",
        _positive_seconds,
        "seconds > 0",
        "a connection with no call for this long is closed (the client reconnects when needed)",
    ),
    Option(
        "max_connection_age",
        _positive_seconds,
        "seconds > 0",
        "connections are asked to reconnect after this long (spreads load on new replicas); "
        "calls still open get --max-deadline more before the connection is closed",
    ),
)

_DEFAULTS = Settings()


def default_text(option: Option) -> str:
    """The default as a person would type it (README table)."""
    value = getattr(_DEFAULTS, option.dest)
    if option.dest == "min_deadline":
        return str(value["*"])
    if option.dest == "request_id_ttl":
        return f"{value / 3600:g}"
    if option.dest == "max_receive_size":
        return f"{value // 1024}K"
    if value == "" or value is False:
        return "(off)"
    return str(value)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def parse(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Settings from flags, then MICROPOSTS_* variables, then defaults."""
    env = os.environ if env is None else env
    parser = _Parser(
        prog="microposts-server",
        description="The MicroPosts gRPC server. Every flag also reads MICROPOSTS_<NAME>.",
    )
    for option in SETTINGS:
        help_text = f"{option.help} ({option.expect}; env {option.env}; "
        help_text += f"default {default_text(option)})"
        if option.switch:
            parser.add_argument(
                option.flag, dest=option.dest, action="store_const", const="1", help=help_text
            )
        else:
            parser.add_argument(
                option.flag, dest=option.dest, metavar=option.dest.upper(), help=help_text
            )
    args = parser.parse_args(argv)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for option in SETTINGS:
        text = getattr(args, option.dest)
        source = option.flag
        if text is None and option.env in env:
            text, source = env[option.env], option.env
        if text is None:
            continue
        try:
            values[option.dest] = option.parse(text)
        except ValueError:
            shown = option.show(text)
            raise ConfigError(f"{source}: expected {option.expect}, got {shown}") from None
        sources[option.dest] = source
    values["reuse_port"] = env.get(WORKER_ENV) == "1"
    settings = Settings(**values)
    _check_together(settings, sources)
    _check_files(settings)
    _check_protected(settings)
    return settings


def _name(dest: str, sources: Mapping[str, str]) -> str:
    """How the user gave ``dest`` (flag or variable); the flag if they did not."""
    return sources.get(dest, "--" + dest.replace("_", "-"))


def _check_together(settings: Settings, sources: Mapping[str, str]) -> None:
    """Settings that need one another."""
    if bool(settings.tls_cert) != bool(settings.tls_key):
        given, missing = (
            ("tls_cert", "--tls-key") if settings.tls_cert else ("tls_key", "--tls-cert")
        )
        raise ConfigError(f"{_name(given, sources)}: needs {missing} too")
    if settings.tls_client_ca and not settings.tls_cert:
        raise ConfigError(
            f"{_name('tls_client_ca', sources)}: client certificates need TLS: "
            "set --tls-cert and --tls-key too"
        )
    jwt_settings = ("jwt_keys", "jwt_issuer", "jwt_audience")
    if settings.auth == "jwt":
        for dest in jwt_settings:
            if not getattr(settings, dest):
                raise ConfigError(f"{_name(dest, sources)}: required with --auth jwt")
    else:
        for dest in jwt_settings:
            if getattr(settings, dest):
                raise ConfigError(
                    f"{_name(dest, sources)}: only used with --auth jwt, and --auth is "
                    f"{settings.auth!r}: set --auth jwt, or leave it out"
                )


def _check_files(settings: Settings) -> None:
    """Loads the TLS and key files once, so a bad one stops the start with a reason."""
    if settings.tls_cert:
        files = tls.TlsFiles(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
        try:
            tls.load_material(files)
        except tls.TlsFileError as exc:
            raise ConfigError(str(exc)) from None
    if settings.auth == "jwt":
        try:
            auth.load_keys(settings.jwt_keys)
        except (auth.KeyFileError, OSError) as exc:
            raise ConfigError(f"--jwt-keys: {settings.jwt_keys}: {exc}") from None


def _check_protected(settings: Settings) -> None:
    """Protected mode: off loopback, no plaintext and no anonymous callers unless --insecure."""
    if settings.insecure or is_loopback(settings.address):
        return
    missing = []
    if not settings.tls_cert:
        missing.append("TLS (--tls-cert and --tls-key)")
    if settings.auth == "none" and not settings.tls_client_ca:
        missing.append("authentication (--auth jwt, or client certificates: --tls-client-ca)")
    if missing:
        raise ConfigError(
            f"--address: {settings.address} is not a loopback address, and the server would "
            f"run without {' and without '.join(missing)}; set them, or pass --insecure "
            "(MICROPOSTS_INSECURE=1) to serve like this anyway"
        )


def parse_or_exit(argv: Sequence[str] | None = None) -> Settings:
    """``parse``, printing one line and exiting with status 2 on a bad setting."""
    try:
        return parse(argv)
    except ConfigError as exc:
        print(f"microposts-server: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
