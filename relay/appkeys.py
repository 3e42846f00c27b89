"""Every ``web.AppKey`` of the relay application, in one place."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import web

from relay.config import RelayConfig
from relay.metrics import Metrics
from relay.storage.base import EnvelopeStore, Wakeups

if TYPE_CHECKING:  # the service sits above this module: a type, never a runtime import
    from relay.service import MailboxService
    from relay.ws.closing import SocketCloser

__all__ = [
    "closer_key",
    "config_key",
    "frame_id_key",
    "lock_key",
    "metrics_key",
    "service_key",
    "size_bucket_key",
    "sockets_key",
    "store_key",
    "tasks_key",
    "wakeups_key",
]

config_key = web.AppKey("config", RelayConfig)
metrics_key = web.AppKey("metrics", Metrics)
store_key = web.AppKey("store", EnvelopeStore)
wakeups_key = web.AppKey("wakeups", Wakeups)
service_key: web.AppKey[MailboxService] = web.AppKey("service")
sockets_key = web.AppKey("sockets", set[web.WebSocketResponse])
"""Open WebSocket responses (closed with GOING_AWAY on shutdown)."""
closer_key: web.AppKey[SocketCloser] = web.AppKey("closer")
"""Closes the open WebSockets on shutdown, handshakes included (relay/ws/closing.py)."""
tasks_key = web.AppKey("tasks", set[asyncio.Task[None]])
lock_key = web.AppKey("lock_database", bool)
#: The worker index under ``serve --workers`` (relay/workers.py); absent in a lone process.
worker_key = web.AppKey("worker", str)
"""Whether startup takes the one-process-per-SQLite-database lock (relay/app.py)."""
size_bucket_key = web.RequestKey("size_bucket", int)
"""Envelope bucket of the request, for the canonical log line."""
frame_id_key = web.RequestKey("frame_id", int)
"""The ``id`` of the request's frame when it can be read: echoed by its ``err`` (§3.2)."""
