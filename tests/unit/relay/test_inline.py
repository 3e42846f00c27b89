"""relay.ws.inline.Inline drives a coroutine like a Task would, without one."""

from __future__ import annotations

import asyncio

import pytest

from relay.ws.inline import Inline


async def test_first_step_runs_at_once_and_later_steps_after_the_future() -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[int] = loop.create_future()
    trace: list[object] = []
    exited: list[Inline] = []

    async def body() -> None:
        trace.append("started")
        trace.append(await fut)
        await asyncio.sleep(0)  # a bare yield: resumed on the next turn
        trace.append("done")

    request = Inline(body(), exited.append)
    assert trace == []  # not before start()
    request.start()
    assert trace == ["started"]  # synchronously, no loop turn needed
    assert asyncio.current_task() is not None  # (the test's own task, untouched)
    fut.set_result(7)
    await request.wait()
    assert trace == ["started", 7, "done"]
    assert exited == [request]


async def test_a_coroutine_that_never_waits_finishes_inside_start() -> None:
    exited: list[Inline] = []

    async def body() -> None:
        return None

    request = Inline(body(), exited.append)
    request.start()
    assert exited == [request]
    await request.wait()  # returns at once


async def test_exceptions_of_the_future_reach_the_coroutine() -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[int] = loop.create_future()
    caught: list[BaseException] = []

    async def body() -> None:
        try:
            await fut
        except ValueError as exc:
            caught.append(exc)

    request = Inline(body(), lambda _r: None)
    request.start()
    fut.set_exception(ValueError("x"))
    await request.wait()
    assert len(caught) == 1 and str(caught[0]) == "x"


async def test_cancel_cancels_the_future_waited_on_and_runs_finally_blocks() -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[int] = loop.create_future()
    trace: list[str] = []
    exited: list[Inline] = []

    async def body() -> None:
        try:
            await fut
            trace.append("not reached")
        except asyncio.CancelledError:
            trace.append("cancelled")
            raise
        finally:
            trace.append("finally")

    request = Inline(body(), exited.append)
    request.start()
    request.cancel()
    assert fut.cancelled()
    await request.wait()
    assert trace == ["cancelled", "finally"]
    assert exited == [request]
    request.cancel()  # a no-op once finished


async def test_cancel_after_the_future_completed_is_seen_at_the_next_step() -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[int] = loop.create_future()
    trace: list[str] = []

    async def body() -> None:
        try:
            await fut
            trace.append("resumed")
        except asyncio.CancelledError:
            trace.append("cancelled")

    request = Inline(body(), lambda _r: None)
    request.start()
    fut.set_result(1)  # its callback is scheduled, not run yet
    request.cancel()
    await request.wait()
    assert trace == ["cancelled"]  # like Task.cancel(): the pending step throws


async def test_other_exceptions_escape_to_the_caller_of_the_step() -> None:
    exited: list[Inline] = []

    async def body() -> None:
        raise KeyError("bug")

    request = Inline(body(), exited.append)
    with pytest.raises(KeyError):
        request.start()
    assert exited == [request]
