"""``blindrelay`` command line: ``serve``, ``check-config``, ``admin`` (relay/admin/cli.py).

Exit codes: 0 ok, 1 an admin command failed (no such report, action refused), 2 usage, 69
storage unavailable (EX_UNAVAILABLE), 78 configuration error (EX_CONFIG).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from aiohttp import web

from relay import __version__
from relay.config import RelayConfig, load_config
from relay.errors import ConfigError
from relay.storage.base import StorageError

__all__ = ["main"]

EX_OK = 0
EX_USAGE = 2
EX_UNAVAILABLE = 69
EX_CONFIG = 78


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="blindrelay", description="A blind store-and-forward relay for sealed envelopes."
    )
    parser.add_argument("--version", action="version", version=f"blindrelay {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the relay")
    serve.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="N relay processes on one listening socket, supervised (needs storage = redis)",
    )
    # Set by the supervisor for its workers (relay/workers.py), not for operators.
    serve.add_argument("--worker-fd", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--worker-id", type=int, help=argparse.SUPPRESS)
    check = sub.add_parser("check-config", help="print the effective configuration and exit")
    for p in (serve, check):
        p.add_argument("--config", metavar="FILE", help="TOML configuration file")
        p.add_argument("--host", help="listen address (overrides config)")
        p.add_argument("--port", type=int, help="listen port (overrides config)")
        p.add_argument("--data-dir", help="data directory (overrides config)")
        p.add_argument("--storage", choices=("sqlite", "redis"), help="storage backend")
    from relay.admin.cli import add_admin_parser

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help="TOML configuration file")
    common.add_argument("--data-dir", help="data directory (overrides config)")
    common.add_argument("--storage", choices=("sqlite", "redis"), help="storage backend")
    add_admin_parser(sub, common)
    return parser


def _load(args: argparse.Namespace) -> RelayConfig:
    config = load_config(args.config)
    overrides = {
        name: value
        for name, value in (
            ("host", getattr(args, "host", None)),
            ("port", getattr(args, "port", None)),
            ("data_dir", args.data_dir),
            ("storage", args.storage),
        )
        if value is not None
    }
    if overrides:
        from dataclasses import replace

        config = replace(config, **overrides)
        config.validate()
    return config


async def _serve(
    config: RelayConfig, worker_fd: int | None = None, worker_id: int | None = None
) -> None:
    from relay.admin import admin_listener_key
    from relay.app import create_app
    from relay.appkeys import closer_key, worker_key
    from relay.logging import get_logger, is_json

    log = get_logger()
    app = create_app(config)
    if worker_id is not None:
        app[worker_key] = str(worker_id)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5)
    await runner.setup()  # opens storage and runs the durability checks
    site: web.BaseSite
    if worker_fd is not None:
        from relay.workers import worker_socket

        # The listening socket the supervisor bound (serve --workers): the kernel hands each
        # connection to one of the workers accepting on it.
        site = web.SockSite(runner, worker_socket(worker_fd))
    else:
        site = web.TCPSite(runner, config.host, config.port, backlog=1024)
    await site.start()
    addresses = runner.addresses
    port = addresses[0][1] if addresses else config.port
    url = f"http://{config.host}:{port}"
    admin_url = app[admin_listener_key].url
    if is_json(config.log_format):
        # JSON logs: the banner is log events too, so stdout stays one JSON object a line.
        data = str(config.resolved_sqlite_path()) if config.storage == "sqlite" else None
        log.info("relay_listening", listen=url, backend=config.storage, data=data)
        if admin_url is not None:
            log.info("admin_listening", listen=admin_url)
    else:
        where = (
            f"sqlite at {config.resolved_sqlite_path()}"
            if config.storage == "sqlite"
            else "redis (url hidden)"
        )
        print(f"blindrelay {__version__} listening on {url}", flush=True)
        print(f"storage: {where}", flush=True)
        if admin_url is not None:
            print(f"admin listening on {admin_url} (moderation page)", flush=True)
    log.info("relay_started", backend=config.storage, listen=f"{config.host}:{port}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("relay_stopping")
        # Stop accepting, then close the WebSockets with 1001 while their connections still
        # read: aiohttp's cleanup stops reading before the app's on_shutdown, which would
        # cut every close handshake (clients saw 1006; relay/ws/closing.py).
        for listening in list(runner.sites):
            await listening.stop()
        await app[closer_key].close_all()
        await runner.cleanup()


def _admin(args: argparse.Namespace, config: RelayConfig) -> int:
    import structlog

    from relay.admin.cli import run_admin
    from relay.logging import configure_logging

    if not structlog.is_configured():  # in-process callers (tests) keep their logging
        configure_logging("warning", config.log_format, stream=sys.stderr)
    try:
        return asyncio.run(run_admin(args, config))
    except KeyboardInterrupt:
        return 130


def _worker_argv(args: argparse.Namespace) -> list[str]:
    """The ``serve`` options a worker gets from the supervisor's command line (the
    supervisor adds the port it bound and the socket)."""
    out: list[str] = []
    for flag, value in (
        ("--config", args.config),
        ("--host", args.host),
        ("--data-dir", args.data_dir),
        ("--storage", args.storage),
    ):
        if value is not None:
            out += [flag, str(value)]
    return out


def run_loop(choice: str, main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on uvloop (``auto`` when it is installed, or ``uvloop``) or on asyncio's
    own event loop (``asyncio``, or ``auto`` without uvloop).

    Raises:
        ConfigError: ``uvloop`` chosen but not installed.
    """
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                main.close()
                raise ConfigError("event_loop: uvloop is not installed") from None
        else:
            uvloop.run(main)
            return
    asyncio.run(main)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``blindrelay`` and ``python -m relay``."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) if exc.code in (0, None) else EX_USAGE
    try:
        config = _load(args)
    except ConfigError as exc:
        print(f"blindrelay: configuration error: {exc}", file=sys.stderr)
        return EX_CONFIG
    if args.command == "check-config":
        print(json.dumps(config.redacted(), indent=2, sort_keys=True))
        return EX_OK
    from relay.logging import configure_logging

    if args.command == "admin":
        return _admin(args, config)
    if args.workers is not None and args.worker_fd is None:
        from relay.workers import check_workers, supervise

        try:
            check_workers(config, args.workers)
        except ConfigError as exc:
            print(f"blindrelay: refusing to start: {exc}", file=sys.stderr)
            return EX_CONFIG
        return supervise(config, args.workers, _worker_argv(args))
    configure_logging(config.log_level, config.log_format)
    try:
        run_loop(config.event_loop, _serve(config, args.worker_fd, args.worker_id))
    except ConfigError as exc:
        print(f"blindrelay: refusing to start: {exc}", file=sys.stderr)
        return EX_CONFIG
    except StorageError as exc:
        print(f"blindrelay: storage unavailable: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    except OSError as exc:
        print(f"blindrelay: cannot listen: {exc.strerror}", file=sys.stderr)
        return EX_UNAVAILABLE
    except KeyboardInterrupt:
        pass
    return EX_OK
