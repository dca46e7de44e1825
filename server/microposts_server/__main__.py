"""``microposts-server`` / ``python -m microposts_server``: start, wait, exit on signals."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence

from . import config, domain, logs


def _run(settings: config.Settings) -> int:
    from .app import serve

    use_uvloop = settings.event_loop == "uvloop"
    if settings.event_loop == "auto":
        try:
            import uvloop

            use_uvloop = True
        except ImportError:
            use_uvloop = False
    if use_uvloop:
        import uvloop

        return int(uvloop.run(serve(settings)))
    return asyncio.run(serve(settings))


def main(argv: Sequence[str] | None = None) -> int:
    """Parses settings, runs the server (or its workers), returns the exit status."""
    settings = config.parse_or_exit(argv)
    logs.configure(settings.log_level)
    try:
        if settings.workers > 1:  # a supervisor: no grpc in this process (workers.py)
            from .workers import supervise

            return supervise(settings, sys.argv[1:] if argv is None else argv)
        return _run(settings)
    except config.ConfigError as exc:  # a file that changed into a bad one since parse()
        print(f"microposts-server: error: {exc}", file=sys.stderr)
        return 2
    except (domain.Unavailable, OSError) as exc:
        logging.getLogger("microposts.server").error(str(exc))
        print(f"microposts-server: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
