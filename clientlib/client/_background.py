"""The client's background work: its task set, the receive loop (the thin I/O shell around
the sans-IO :class:`~clientlib.client._inbox.Inbox`), and the upkeep run on every connect."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final

from clientlib.client._book import AddressBook
from clientlib.client._inbox import Inbox
from clientlib.client._link import Incoming, Link
from clientlib.client._outbox import Outbox
from clientlib.client._prekeys import Prekeys
from clientlib.client.types import ClientEvent, ClientWarning, ContactAdded
from clientlib.errors import TransportError

__all__ = ["EXPIRE_INTERVAL_S", "Tasks", "expire_loop", "receive_loop", "upkeep"]

log = logging.getLogger("clientlib.client")

#: How often a running client deletes over-age skipped message keys of sessions that see
#: no traffic (protocol.md §12.3; every send, receive and open does it too). An hour keeps a
#: key at most an hour past ``MAX_SKIPPED_KEY_AGE`` (28 days) for the cost of one pass over
#: the contacts.
EXPIRE_INTERVAL_S: Final[float] = 3600.0


class Tasks:
    """The client's background tasks: failures are logged (by type only), never lost."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("client task failed: %s", type(task.exception()).__name__)

    async def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def receive_loop(
    link: Link,
    book: AddressBook,
    inbox: Inbox,
    prekeys: Prekeys,
    outbox: Outbox,
    *,
    now: Callable[[], int],
    emit: Callable[[ClientEvent], None],
    spawn: Callable[[Coroutine[Any, Any, None]], None],
    stop: Callable[[], Coroutine[Any, Any, None]],
) -> None:
    """Process what the link delivers, in batches of up to 256: durable first, then acked
    (protocol.md §23.2); then the events, and the caught-up markers."""
    queue = link.inbox
    while True:
        batch: list[Incoming] = [await queue.get()]
        while len(batch) < 256:
            try:
                batch.append(queue.get_nowait())
            except asyncio.QueueEmpty:
                break
        # The moderator keys (AMF, protocol.md §15.5.7) of each relay the batch came from:
        # fresh before decrypting.
        relays = {link.book_relay(rid) for rid, _ in batch}
        await _ensure_modkeys(link, inbox, relays, now())
        try:
            envs = [(rid, env) for rid, env in batch if env is not None]
            async with book.lock:
                events, acks, refill, retry = inbox.process(envs, now())
                await book.save()
            if retry:
                # Franked under a moderator key id we do not know yet (the relay rotated
                # since our last fetch): fetch the list again, then decide for good.
                await _ensure_modkeys(link, inbox, {link.book_relay(r) for r, _ in retry}, now())
                async with book.lock:
                    again = inbox.process(retry, now(), final=True)
                    await book.save()
                events += again.events
                acks += again.acks
                refill += again.refill
        except Exception as exc:
            # Fail-stop: memory may now be ahead of the keystore, so nothing more may be
            # acknowledged. Unacked envelopes wait at the relay for the next start.
            log.error("incoming processing stopped: %s", type(exc).__name__)
            emit(ClientWarning("storage_failed", type(exc).__name__))
            for _ in batch:
                queue.task_done()
            spawn(stop())
            return
        for aid in refill:
            spawn(prekeys.refill(aid, link.address_transport(aid), emit))
        for rid, seqs in acks:
            await link.ack(rid, seqs)
        for ev in events:
            emit(ev)
        for rid, env in batch:
            if env is None:
                link.mark_caught_up(rid)
        renewal = inbox.renewal
        if any(isinstance(e, ContactAdded) for e in events) or (renewal and renewal.queued):
            if renewal is not None:
                renewal.queued = False
            outbox.wake()
        for _ in batch:
            queue.task_done()


async def _ensure_modkeys(link: Link, inbox: Inbox, relays: set[str | None], now: int) -> None:
    for relay in relays:
        with contextlib.suppress(TransportError):
            cache = inbox.modkeys if relay is None else inbox.modkeys_for(relay)
            await cache.ensure(link.own_transport(relay), now)


async def expire_loop(book: AddressBook, *, now: Callable[[], int]) -> None:
    """Every :data:`EXPIRE_INTERVAL_S`, delete over-age skipped keys and save if any went."""
    while True:
        await asyncio.sleep(EXPIRE_INTERVAL_S)
        async with book.lock:
            if book.expire_skipped(now()):
                await book.save()


async def upkeep(
    book: AddressBook,
    prekeys: Prekeys,
    link: Link,
    *,
    check_reports: Callable[[], Awaitable[None]],
    emit: Callable[[ClientEvent], None],
) -> None:
    """On connect: top up every address's one-time prekeys, and learn the outcome of open
    abuse reports."""
    for aid in list(book.addresses):
        await prekeys.refill(aid, link.address_transport(aid), emit)
    try:
        await check_reports()
    except TransportError as exc:
        log.debug("report check postponed: %s", type(exc).__name__)
