"""The application factory: the only place that picks a storage backend from configuration."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from aiohttp import WSCloseCode, web

from relay.admin.listener import AdminListener, admin_listener_key
from relay.appkeys import (
    config_key,
    metrics_key,
    service_key,
    sockets_key,
    store_key,
    tasks_key,
    wakeups_key,
)
from relay.config import RelayConfig
from relay.errors import ConfigError
from relay.http.routes import setup_routes
from relay.metrics import Metrics
from relay.middlewares import request_middleware
from relay.service import MailboxService
from relay.storage.base import EnvelopeStore, Wakeups

__all__ = ["build_backend", "create_app"]

log = structlog.get_logger("blindrelay")


def build_backend(config: RelayConfig) -> tuple[EnvelopeStore, Wakeups]:
    """Construct (but do not open) the store and wake-up channel the config asks for."""
    if config.storage == "redis":
        from relay.storage.redis import RedisStore, RedisWakeups

        store: EnvelopeStore = RedisStore(
            config.redis_url,
            config.store_limits(),
            durability="strict" if config.redis_durability == "strict" else "relaxed",
            key_prefix=config.redis_key_prefix,
        )
        wakeups: Wakeups = RedisWakeups(config.redis_url, key_prefix=config.redis_key_prefix)
        return store, wakeups
    from relay.storage.sqlite import SQLiteStore
    from relay.storage.wakeups import LocalWakeups

    path = config.resolved_sqlite_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return SQLiteStore(path, config.store_limits()), LocalWakeups()


async def _storage_ctx(app: web.Application) -> AsyncIterator[None]:
    store, wakeups = app[store_key], app[wakeups_key]
    config = app[config_key]
    await store.open()
    try:
        problems = await store.durability_problems()
        if problems:
            relaxed = config.storage == "redis" and config.redis_durability == "relaxed"
            if not relaxed:
                raise ConfigError("storage is not durable enough: " + "; ".join(problems))
            log.warning("storage_durability_relaxed", problems=problems)
        await wakeups.start()
        try:
            yield
        finally:
            await wakeups.aclose()
    finally:
        await store.aclose()


async def _purge_ctx(app: web.Application) -> AsyncIterator[None]:
    service = app[service_key]
    interval = app[config_key].purge_interval_s
    # A stop flag as well as cancellation: redis-py can swallow a CancelledError that lands
    # while it (re)connects, and the loop must end anyway.
    stop = asyncio.Event()

    async def loop() -> None:
        while not stop.is_set():
            try:
                count = await service.purge_expired()
                if count:
                    log.info("expired_purged", count=count)
            except Exception:  # keep purging after a storage outage
                log.warning("purge_failed")
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
    from relay.admin import start_admin_listener, stop_admin_listener

    listener = app[admin_listener_key]
    await start_admin_listener(config, app[service_key].moderation, listener)
    try:
        yield
    finally:
        await stop_admin_listener(listener)


async def _close_sockets(app: web.Application) -> None:
    sockets: set[web.WebSocketResponse] = app[sockets_key]
    for ws in list(sockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"relay shutting down")


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
    if store is None or wakeups is None:
        store, wakeups = build_backend(config)
    app = web.Application(middlewares=[request_middleware], client_max_size=config.max_frame_bytes)
    metrics = Metrics()
    app[config_key] = config
    app[metrics_key] = metrics
    app[store_key] = store
    app[wakeups_key] = wakeups
    app[service_key] = MailboxService(store, wakeups, config, metrics)
    sockets: set[web.WebSocketResponse] = set()
    app[sockets_key] = sockets
    app[tasks_key] = set()
    app.cleanup_ctx.append(_storage_ctx)
    app.cleanup_ctx.append(_purge_ctx)
    app[admin_listener_key] = AdminListener()
    app.cleanup_ctx.append(_admin_ctx)
    app.on_shutdown.append(_close_sockets)
    setup_routes(app)
    return app
