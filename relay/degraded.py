"""What the service does while storage misbehaves (issue 19), declared once.

A deposit is answered once it is stored. Publishing its wake-up comes after, outside the
storage boundary (:func:`publish_after_storing`): a wake-up that cannot be published (Redis
failed between the two steps) is logged by the driver's exception type (never its text: a
Redis error names the server) and counted, never answered as an error; the wake-ups recover
it (:class:`~relay.storage.redis.wakeups.RedisWakeups` publishes it again and re-checks its
subscriptions after a lost connection; every subscribe reads storage).

While storage is out of space (:meth:`~relay.storage.base.EnvelopeStore.space_exhausted`)
the service refuses what adds data with ``STORAGE_FULL`` and keeps serving what lets owners
drain it (:data:`WHILE_FULL`); the HTTP challenges of :data:`FREEING_OPS` are taken even by
a Redis at ``maxmemory``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Final, TypeVar

import structlog

from clientlib.wire.codes import ErrorCode
from relay.errors import RelayError
from relay.metrics import Metrics
from relay.storage._common import MSG_UNAVAILABLE
from relay.storage.base import (
    EnvelopeStore,
    StorageError,
    StorageUnavailable,
    WakeEvent,
    Wakeups,
)

__all__ = ["FREEING_OPS", "WHILE_FULL", "bounded", "publish_after_storing", "refuse_when_full"]

_T = TypeVar("_T")

log = structlog.get_logger("blindrelay")

#: Owner operations served while storage is full: those that free space or only read
#: (``keys`` only as a query; ``sub`` refreshes the idle timer).
WHILE_FULL: Final = frozenset({"fetch", "delete", "info", "rstat", "unpush", "sub", "keys"})

#: Owner operations that free storage: their HTTP challenges are taken even by a store out
#: of space (:meth:`~relay.storage.base.EnvelopeStore.put_challenge` ``frees``).
FREEING_OPS: Final = frozenset({"fetch", "delete", "unpush"})


def refuse_when_full(store: EnvelopeStore) -> None:
    """Raises: RelayError ``STORAGE_FULL`` while ``store`` is out of space."""
    if store.space_exhausted():
        raise RelayError(ErrorCode.STORAGE_FULL)


async def publish_after_storing(wakeups: Wakeups, metrics: Metrics, event: WakeEvent) -> None:
    """Publish ``event`` about a change already stored; a failure is logged and counted
    (``storage_errors{kind="wakeup"}``), never raised."""
    try:
        await wakeups.publish(event)
    except (StorageError, TimeoutError) as exc:
        cause: BaseException = exc
        while cause.__cause__ is not None:
            cause = cause.__cause__
        log.warning("wakeup_publish_failed", reason=type(cause).__name__)
        metrics.inc("storage_errors", "wakeup")


async def bounded(step: Awaitable[_T], seconds: float) -> _T:
    """``step`` within ``seconds`` (``storage_timeout_s``), for storage waits outside the
    service boundary (a subscription's push reads).

    Raises:
        StorageUnavailable: the bound passed (as the store's own outage error, so that the
            caller handles it like one).
    """
    try:
        async with asyncio.timeout(seconds):
            return await step
    except TimeoutError:
        raise StorageUnavailable(MSG_UNAVAILABLE) from None
