"""A WebSocket message must arrive within ``body_read_timeout_s`` of its first byte
(protocol.md §2.1, §7; issue 19, item 6). See :mod:`relay.timeouts` for why aiohttp needs
this: its heartbeat counts every received byte as a sign of life."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final

import structlog
from aiohttp import WSCloseCode, web

__all__ = ["SLOW_MESSAGE_CLOSE", "MessageTimer"]

log = structlog.get_logger("blindrelay")


class MessageTimer:
    """One WebSocket message must arrive within ``timeout`` seconds of its first byte.

    Installed between aiohttp's HTTP protocol and its WebSocket reader: every received chunk
    passes through :meth:`feed_data`. A chunk that completes no frame (the reader queued
    nothing) starts the deadline unless it runs; a chunk that completes one (a message, or a
    ping, pong or close) ends it. When the deadline passes, ``expired`` is called (the
    handler closes the socket with 1008).
    """

    __slots__ = ("_expired", "_loop", "_queue", "_reader", "_timeout", "_timer")

    def __init__(
        self, reader: Any, queue: Any, timeout: float, expired: Callable[[], None]
    ) -> None:
        self._reader = reader
        self._queue = queue
        self._timeout = timeout
        self._expired = expired
        self._timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()

    @classmethod
    def attach(
        cls,
        request: web.Request,
        ws: web.WebSocketResponse,
        timeout: float,
        expired: Callable[[], None],
    ) -> MessageTimer | None:
        """Put a timer in front of ``ws``'s reader (None: aiohttp's internals changed)."""
        protocol = request.protocol
        reader = getattr(protocol, "_payload_parser", None)
        queue = getattr(ws, "_reader", None)
        if reader is None or queue is None or not hasattr(queue, "_size"):
            log.warning("ws_message_timer_unavailable")
            return None
        timer = cls(reader, queue, timeout, expired)
        protocol._payload_parser = timer
        return timer

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        before = self._queue._size
        result: tuple[bool, bytes] = self._reader.feed_data(data)
        if self._queue._size != before:  # a frame completed
            self.cancel()
        elif data and self._timer is None:
            self._timer = self._loop.call_later(self._timeout, self._fire)
        return result

    def feed_eof(self) -> None:
        self.cancel()
        self._reader.feed_eof()

    def _fire(self) -> None:
        self._timer = None
        self._expired()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


#: The close code of a socket whose message did not arrive in time.
SLOW_MESSAGE_CLOSE: Final = WSCloseCode.POLICY_VIOLATION
