"""Closing every WebSocket on shutdown with 1001, handshake included (issue 19, finding 10).

aiohttp's ``WebSocketResponse.close()`` called from another task than the socket's handler
sends the close frame, wakes the handler's ``receive()`` with an internal "closing" message
and, because that message marks the socket as closing, closes the TCP connection at once,
before the client's close reply: the client sees its connection cut (1006, abnormal), not a
clean 1001. A close made by the handler's own task, while it is not receiving, waits for the
reply instead (bounded by the socket's close timeout).

So on shutdown :class:`SocketCloser` does not close sockets itself: it marks each one and
cancels its handler's wait for the next message; the handler (relay/ws/handler.py) sees the
mark (:meth:`SocketCloser.claim`), takes the cancellation back and closes its socket with
1001 itself. Shutdown waits for those handlers at most :data:`CLOSE_TIMEOUT_S` (below the
runner's shutdown timeout); each close waits at most as long for its client.

``serve`` (relay/cli.py) runs :meth:`SocketCloser.close_all` after it stops listening and
*before* the runner's cleanup: that cleanup first marks every connection as closing, after
which aiohttp drops what arrives on it, the clients' close replies included. The app's
``on_shutdown`` runs it too (a no-op by then), for runners other than ``serve``'s.
"""

from __future__ import annotations

import asyncio
from typing import Final

from aiohttp import web

__all__ = ["CLOSE_TIMEOUT_S", "SocketCloser"]

#: The longest a close waits for the client's reply, and shutdown for all the sockets.
CLOSE_TIMEOUT_S: Final = 3.0


class SocketCloser:
    """The handlers of open WebSockets, and their closing on shutdown."""

    def __init__(self) -> None:
        self._handlers: dict[web.WebSocketResponse, asyncio.Task[object]] = {}
        self._closing: set[web.WebSocketResponse] = set()
        self._shutting_down = False

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def add(self, ws: web.WebSocketResponse) -> None:
        """Register the socket served by the current task (its handler)."""
        task = asyncio.current_task()
        assert task is not None
        self._handlers[ws] = task

    def discard(self, ws: web.WebSocketResponse) -> None:
        """The handler of ``ws`` is done."""
        self._handlers.pop(ws, None)
        self._closing.discard(ws)

    def claim(self, ws: web.WebSocketResponse) -> bool:
        """In the handler of ``ws``, on ``CancelledError``: whether shutdown cancelled it to
        have it close ``ws``; if so the cancellation is taken back (the handler carries on
        and closes with 1001), else it is the handler's own and must propagate."""
        if ws not in self._closing:
            return False
        self._closing.discard(ws)
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        return True

    async def close_all(self) -> None:
        """Have every handler close its socket with 1001; returns once they are done or
        :data:`CLOSE_TIMEOUT_S` passed."""
        self._shutting_down = True
        tasks = []
        for ws, task in list(self._handlers.items()):
            if task.done():
                continue
            self._closing.add(ws)
            task.cancel()
            tasks.append(task)
        if tasks:
            await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_S)
