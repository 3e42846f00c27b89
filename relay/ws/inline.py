"""Run a request coroutine without an :class:`asyncio.Task` (the hot path of a socket).

A Task per received frame costs an object, a registration in the loop's task set, a copy of
the context and one extra loop callback before the first step. :class:`Inline` drives the
coroutine the way a Task does, with none of that: its first step runs at once (inside the
read loop, so a deposit is queued to storage in the same turn it arrived), and each later
step runs from the done-callback of the future the coroutine waits on. Cancellation is a
Task's: the future waited on is cancelled, and the coroutine sees ``CancelledError`` at its
next step.

Only for coroutines that never ask for "the current task": ``asyncio.timeout`` and anything
built on it (redis-py's socket timeouts are) need a real Task. Stores whose coroutines are
free of them say so with ``task_free = True`` (the SQLite store); the socket handler runs
deposits and acks inline only then.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["Inline"]


class Inline:
    """One coroutine driven without a Task; :meth:`start` runs its first step.

    ``on_exit`` is called once, synchronously, when the coroutine has finished (returned,
    raised, or was cancelled). The coroutine must handle its own exceptions: anything but
    ``CancelledError`` that escapes it is re-raised to whoever ran the step (the read loop,
    or the loop's callback handler, which logs it).
    """

    __slots__ = ("_cancel", "_coro", "_exited", "_on_exit", "_waiting")

    def __init__(self, coro: Coroutine[Any, Any, None], on_exit: Callable[[Inline], None]) -> None:
        self._coro: Coroutine[Any, Any, None] | None = coro
        self._on_exit = on_exit
        self._waiting: asyncio.Future[Any] | None = None
        self._cancel = False
        self._exited: asyncio.Future[None] | None = None

    def start(self) -> None:
        """Run the first step now (the caller has registered this request already)."""
        self._step()

    def cancel(self) -> None:
        """Cancel like :meth:`asyncio.Task.cancel` (a no-op once finished)."""
        if self._coro is None:
            return
        self._cancel = True
        if self._waiting is not None:
            self._waiting.cancel()

    async def wait(self) -> None:
        """Return once the coroutine has finished."""
        if self._coro is None:
            return
        if self._exited is None:
            self._exited = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._exited)

    def _wakeup(self, _fut: asyncio.Future[Any]) -> None:
        self._step()

    def _step(self) -> None:
        coro = self._coro
        if coro is None:
            return
        self._waiting = None
        try:
            if self._cancel:
                self._cancel = False
                yielded = coro.throw(asyncio.CancelledError())
            else:
                yielded = coro.send(None)
        except (StopIteration, asyncio.CancelledError):
            self._finish()
            return
        except BaseException:
            self._finish()
            raise
        if getattr(yielded, "_asyncio_future_blocking", None):
            # ``await future``: resume when it is done (what Task.__step does).
            yielded._asyncio_future_blocking = False
            self._waiting = yielded
            yielded.add_done_callback(self._wakeup)
            if self._cancel:
                yielded.cancel()
        elif yielded is None:
            # A bare yield (``asyncio.sleep(0)``): run again on the next turn.
            asyncio.get_running_loop().call_soon(self._step)
        else:  # pragma: no cover - nothing in the relay yields anything else
            self._cancel = True  # the next step throws into the coroutine
            asyncio.get_running_loop().call_soon(self._step)

    def _finish(self) -> None:
        self._coro = None
        self._waiting = None
        if self._exited is not None and not self._exited.done():
            self._exited.set_result(None)
        self._on_exit(self)
