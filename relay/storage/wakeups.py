"""In-process wake-ups: :class:`LocalWakeups` delivers events to listeners of this process.

Used with the SQLite backend, where one relay process owns the database. The Redis backend
has :class:`relay.storage.redis.RedisWakeups`, which also reaches other processes and builds
on :class:`ListenerRegistry`.
"""

from __future__ import annotations

import structlog

from relay.storage.records import WakeCallback, WakeEvent

__all__ = ["ListenerRegistry", "LocalWakeups"]

log = structlog.get_logger("blindrelay.storage")


class ListenerRegistry:
    """Callbacks per receive id, called in registration order; a failing callback is isolated."""

    __slots__ = ("_listeners",)

    def __init__(self) -> None:
        self._listeners: dict[bytes, list[WakeCallback]] = {}

    def add(self, rid: bytes, callback: WakeCallback) -> bool:
        """Register ``callback`` for ``rid``; return True if it is the first one for ``rid``."""
        callbacks = self._listeners.setdefault(rid, [])
        callbacks.append(callback)
        return len(callbacks) == 1

    def remove(self, rid: bytes, callback: WakeCallback) -> bool:
        """Unregister ``callback`` (a no-op if absent); return True if ``rid`` has none left."""
        callbacks = self._listeners.get(rid)
        if callbacks is None:
            return False
        try:
            callbacks.remove(callback)
        except ValueError:
            return False
        if not callbacks:
            del self._listeners[rid]
            return True
        return False

    def has(self, rid: bytes) -> bool:
        """Return True if ``rid`` has at least one listener."""
        return rid in self._listeners

    def rids(self) -> list[bytes]:
        """Return every receive id that has listeners."""
        return list(self._listeners)

    def dispatch(self, event: WakeEvent) -> None:
        """Call every listener of ``event.rid`` now; an exception in one does not stop others."""
        for callback in tuple(self._listeners.get(event.rid, ())):
            try:
                callback(event)
            except Exception:
                log.exception("wake_callback_failed", kind=event.kind)


class LocalWakeups:
    """A :class:`~relay.storage.base.Wakeups` for a single relay process."""

    def __init__(self) -> None:
        self._registry = ListenerRegistry()

    async def start(self) -> None:
        """Nothing to start; present for the :class:`Wakeups` protocol."""

    async def aclose(self) -> None:
        """Forget every listener."""
        self._registry = ListenerRegistry()

    def listen(self, rid: bytes, callback: WakeCallback) -> None:
        """Call ``callback`` for every event about ``rid`` (on the publisher's loop)."""
        self._registry.add(rid, callback)

    def unlisten(self, rid: bytes, callback: WakeCallback) -> None:
        """Stop calling ``callback`` for ``rid``; a no-op if it was not listening."""
        self._registry.remove(rid, callback)

    async def publish(self, event: WakeEvent) -> None:
        """Deliver ``event`` to this process's listeners at once."""
        self._registry.dispatch(event)
