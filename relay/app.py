"""The application factory: composes the store, the service, the routes and the background
tasks. The backend is picked by :func:`relay.backend.build_backend` (re-exported here)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import os
from collections.abc import AsyncIterator
from pathlib import Path

import structlog
from aiohttp import web

from relay.admin.listener import (
    AdminListener,
    admin_listener_key,
    start_admin_listener,
    stop_admin_listener,
)
from relay.appkeys import (
    closer_key,
    config_key,
    lock_key,
    metrics_key,
    service_key,
    sockets_key,
    store_key,
    tasks_key,
    wakeups_key,
)
from relay.backend import build_backend
from relay.config import RelayConfig
from relay.errors import ConfigError
from relay.forward import setup_forwarding
from relay.http.blobs import setup_blob_routes
from relay.http.routes import setup_routes
from relay.metrics import Metrics
from relay.middlewares import request_middleware, setup_web_surface
from relay.service import MailboxService
from relay.storage.base import EnvelopeStore, StorageError, StorageUnavailable, Wakeups
from relay.timeouts import install as install_timeouts
from relay.ws.closing import SocketCloser
from relay.ws.handler import setup_websocket

__all__ = ["build_backend", "create_app", "lock_database"]

#: How a store's ``open()`` words a refusal over durability settings (relay/storage): that
#: refusal is a configuration error (exit 78, not retried), unlike an unreachable backend.
_NOT_DURABLE = "storage is not durable"

log = structlog.get_logger("blindrelay")


def lock_database(path: Path) -> int:
    """Take the exclusive lock that makes one ``serve`` process per SQLite database.

    The lock is an ``flock`` on ``<database>.lock`` beside the database file, held for the
    process lifetime (the kernel releases it when the process dies, so a crash never leaves
    a stale lock). ``blindrelay admin`` does not take it: it may run beside the relay.

    Returns:
        The lock file's descriptor (close it to release the lock).

    Raises:
        ConfigError: another process holds the lock.
    """
    lock_path = path.with_name(path.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(
            f"another blindrelay process is serving the SQLite database {path} (it holds"
            f" {lock_path.name}); one process per database: stop it, use another --data-dir,"
            " or run several processes over Redis (storage = redis)"
        ) from None
    return fd


async def _storage_ctx(app: web.Application) -> AsyncIterator[None]:
    store, wakeups = app[store_key], app[wakeups_key]
    config = app[config_key]
    lock_fd = lock_database(config.resolved_sqlite_path()) if app[lock_key] else None
    try:
        try:
            await store.open()
        except StorageUnavailable as exc:
            if str(exc).startswith(_NOT_DURABLE):
                raise ConfigError(f"{exc} (refusing to start)") from None
            raise
        try:
            await app[service_key].blobs.open()
            problems = await store.durability_problems()
            if problems:
                # store.open() already refused anything the configured mode does not accept:
                # what remains is the relaxed-durability loss window, said once at startup.
                log.warning("storage_durability_relaxed", problems=problems)
            await wakeups.start()
            push = app[service_key].push
            await push.start()
            try:
                yield
            finally:
                await push.close()
                await wakeups.aclose()
                await app[service_key].blobs.aclose()
        finally:
            await store.aclose()
    finally:
        if lock_fd is not None:
            os.close(lock_fd)


async def _purge_ctx(app: web.Application) -> AsyncIterator[None]:
    service = app[service_key]
    interval = app[config_key].purge_interval_s
    # A stop flag as well as cancellation: redis-py can swallow a CancelledError that lands
    # while it (re)connects, and the loop must end anyway.
    stop = asyncio.Event()

    async def envelopes() -> None:
        count = await service.purge_expired()
        if count:
            log.info("expired_purged", count=count)

    async def blobs() -> None:  # attachment blobs (protocol.md §5.9): files, not the store
        count = await service.blobs.purge()
        if count:
            log.info("blobs_purged", count=count)

    async def loop() -> None:
        while not stop.is_set():
            for job in (envelopes, blobs):  # one failing does not stop the other
                try:
                    await job()
                except StorageError:  # keep purging after a storage outage
                    log.warning("purge_failed")
                    app[metrics_key].inc("storage_errors", "purge")
                except Exception:  # a bug: logged as one, and purging carries on
                    log.exception("purge_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    task = asyncio.get_running_loop().create_task(loop())
    app[tasks_key].add(task)
    yield
    stop.set()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _admin_ctx(app: web.Application) -> AsyncIterator[None]:
    """The admin listener (moderation page), when admin tokens are configured."""
    config = app[config_key]
    if not config.admin_enabled:
        yield
        return
    listener = app[admin_listener_key]
    await start_admin_listener(config, app[service_key].moderation, listener)
    try:
        yield
    finally:
        await stop_admin_listener(listener)


async def _close_sockets(app: web.Application) -> None:
    """Close every WebSocket with 1001, each close handshake finished (bounded)."""
    await app[closer_key].close_all()


def create_app(
    config: RelayConfig,
    *,
    store: EnvelopeStore | None = None,
    wakeups: Wakeups | None = None,
) -> web.Application:
    """Build the relay application.

    Args:
        config: a validated configuration.
        store, wakeups: override the backend the config selects (tests).
    """
    lock = False
    if store is None or wakeups is None:
        store, wakeups = build_backend(config, serve=True)
        lock = config.storage == "sqlite"
    app = web.Application(
        middlewares=[request_middleware],
        client_max_size=config.max_frame_bytes,
        handler_args={"keepalive_timeout": config.keepalive_timeout_s},
    )
    metrics = Metrics()
    install_timeouts(
        app, config.header_read_timeout_s, functools.partial(metrics.inc, "slow_clients")
    )
    app[config_key] = config
    app[metrics_key] = metrics
    app[store_key] = store
    app[wakeups_key] = wakeups
    app[service_key] = MailboxService(store, wakeups, config, metrics)
    sockets: set[web.WebSocketResponse] = set()
    app[sockets_key] = sockets
    app[closer_key] = SocketCloser()
    app[tasks_key] = set()
    app[lock_key] = lock
    app.cleanup_ctx.append(_storage_ctx)
    app.cleanup_ctx.append(_purge_ctx)
    app[admin_listener_key] = AdminListener()
    app.cleanup_ctx.append(_admin_ctx)
    app.on_shutdown.append(_close_sockets)
    setup_routes(app)
    setup_blob_routes(app)
    setup_forwarding(app)
    setup_websocket(app)
    setup_web_surface(app)
    return app
