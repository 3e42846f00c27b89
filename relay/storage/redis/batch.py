"""Automatic pipelining: the Redis commands issued during one turn of the event loop go to
Redis together, as one pipeline.

Callers ``await batcher.call(...)`` one command as if it were sent alone and get its own reply
or its own error. Behind that, the calls queued in one loop turn are sent as pipelines (no
MULTI: each command or script stays atomic on its own, exactly as when sent alone) of at most
``max_batch`` commands, with at most ``max_pipelines`` in flight, each on one pooled
connection. Calls beyond that wait in this queue, which the relay's own request limits bound,
rather than in the connection pool, whose wait has a timeout: a busy Redis is back-pressure,
never "unavailable". Under load one connection checkout, one write and one read serve a whole
batch of deposits and acks instead of one each.

A failure of the pipeline itself (connection lost after redis-py's retries) fails every call
of that pipeline, each with an exception object of its own. A script the server does not know
(restart, ``SCRIPT FLUSH``) is loaded and retried for its caller by the ``fallback`` it gave.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

__all__ = ["Batcher"]

#: A queued call: the command, its fallback after NOSCRIPT (or None), the caller's future.
_Call = tuple[Sequence[Any], Callable[[], Awaitable[Any]] | None, "asyncio.Future[Any]"]


class Batcher:
    """Per-loop-turn pipelining of the commands of one client (see the module docstring).

    Args:
        client: the client whose pool the pipelines use.
        own_error: turns a pipeline failure into the exception one caller gets (a new
            object per caller).
        max_batch: most commands per pipeline.
        max_pipelines: most pipelines in flight.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        own_error: Callable[[Exception], Exception],
        *,
        max_batch: int,
        max_pipelines: int,
    ) -> None:
        self._client = client
        self._own_error = own_error
        self._max_batch = max_batch
        self._max_pipelines = max_pipelines
        self._queued: list[_Call] = []
        self._scheduled = False
        self._running: set[asyncio.Task[None]] = set()

    def call(
        self, command: Sequence[Any], fallback: Callable[[], Awaitable[Any]] | None = None
    ) -> asyncio.Future[Any]:
        """Queue ``command`` (``("EVALSHA", sha, numkeys, *keys, *args)``, ``("PUBLISH",
        channel, message)``, ...) for this turn's pipeline; the future gets its reply."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._queued.append((command, fallback, fut))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._send)
        return fut

    async def drain(self) -> None:
        """Return once every call queued so far has been answered."""
        while self._queued or self._running:
            if self._queued and not self._scheduled:
                self._send()
            await asyncio.gather(*self._running, return_exceptions=True)

    def _send(self) -> None:
        self._scheduled = False
        loop = asyncio.get_running_loop()
        while self._queued and len(self._running) < self._max_pipelines:
            batch = self._queued[: self._max_batch]
            del self._queued[: self._max_batch]
            task = loop.create_task(self._pipeline(batch))
            self._running.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if self._queued and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._send)

    async def _pipeline(self, batch: list[_Call]) -> None:
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for command, _, _ in batch:
                    pipe.execute_command(*command)
                replies = await pipe.execute(raise_on_error=False)
        except asyncio.CancelledError:
            for *_, fut in batch:
                fut.cancel()
            raise
        except Exception as exc:  # the connection failed: every call of the batch did
            for *_, fut in batch:
                if not fut.done():
                    fut.set_exception(self._own_error(exc))
            return
        for (_, fallback, fut), first in zip(batch, replies, strict=True):
            reply = first
            if isinstance(first, NoScriptError) and fallback is not None:
                try:
                    reply = await fallback()
                except Exception as exc:
                    reply = exc
            if fut.done():
                continue  # the caller gave up (its connection closed)
            if isinstance(reply, Exception):
                fut.set_exception(reply)
            else:
                fut.set_result(reply)
