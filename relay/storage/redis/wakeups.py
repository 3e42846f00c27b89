"""Cross-process wake-ups over Redis pub/sub."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import OrderedDict
from typing import Any, Final

import msgpack
import structlog
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from clientlib.errors import WireError
from clientlib.wire.frames import StoredEnvelope
from clientlib.wire.limits import MAX_FRAME_SIZE
from relay.storage._common import MSG_UNAVAILABLE
from relay.storage.errors import (
    StorageError,
    StorageUnavailable,
)
from relay.storage.records import (
    WakeCallback,
    WakeEvent,
)
from relay.storage.redis.batch import Batcher
from relay.storage.redis.engine import (
    MAX_PIPELINE,
    MAX_PIPELINES,
    make_client,
    own_error,
    redis_errors,
)
from relay.storage.redis.keys import check_prefix, tag
from relay.storage.wakeups import ListenerRegistry

log = structlog.get_logger("blindrelay.storage")

__all__ = ["RedisWakeups"]

#: Largest wake-up message accepted from the channel (an online-only envelope and headers).
MAX_WAKE_MESSAGE: Final = MAX_FRAME_SIZE + 256

#: How long :meth:`RedisWakeups.sync` waits for the server to confirm subscriptions.
SYNC_TIMEOUT_S: Final = 5.0

#: Default bound of one publication (the relay passes ``storage_timeout_s``).
PUBLISH_TIMEOUT_S: Final = 8.0

#: Mailboxes whose wake-up could not be published, remembered to publish again (the oldest
#: is forgotten beyond this; its owner still gets the envelope at the next subscribe).
MAX_UNSENT: Final = 65_536


class RedisWakeups:
    """A :class:`~relay.storage.base.Wakeups` shared by every relay process using one Redis.

    Local listeners get each event at once (with its envelope). Other processes get it through
    the mailbox's channel ``<prefix>w:{<rid hex>}`` (same hash tag as the mailbox keys, ready
    for sharded pub/sub), as an 8-byte random per-process id (so a process skips its own
    publications without decoding them) followed by a msgpack map carrying the kind, seq and,
    for ``online``, the envelope (never stored). One reader task receives; channels are
    subscribed while they have listeners. Pub/sub is best effort, so two things recover what
    it loses: a ``stored`` event this process could not publish (Redis failed after the
    envelope was stored) is remembered per mailbox and published again, with backoff, once
    Redis answers; and when a subscriber connection was lost, every local listener gets a
    ``recheck`` event once the subscriptions are back, so it reads storage for what was
    published meanwhile. Subscribers also fetch after (re)subscribing.

    Args:
        url: the Redis URL.
        key_prefix: prefix of channel names, default ``br:``.
        publish_timeout_s: the longest one publication waits (``storage_timeout_s``).
    """

    def __init__(
        self, url: str, *, key_prefix: str = "br:", publish_timeout_s: float = PUBLISH_TIMEOUT_S
    ) -> None:
        self._prefix = check_prefix(key_prefix)
        self._client = make_client(url)
        self._batcher = Batcher(
            self._client, own_error, max_batch=MAX_PIPELINE, max_pipelines=MAX_PIPELINES
        )
        self._pubsub: PubSub | None = None
        self._registry = ListenerRegistry()
        self._process_id = secrets.token_bytes(8)
        self._control = f"{self._prefix}w:ctl:{self._process_id.hex()}".encode()
        self._subscribed: set[bytes] = set()
        self._dirty = asyncio.Event()
        self._lock = asyncio.Lock()
        self._pongs: dict[bytes, asyncio.Future[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._publish_timeout = publish_timeout_s
        #: rid -> highest seq whose ``stored`` event could not be published.
        self._unsent: OrderedDict[bytes, int] = OrderedDict()
        self._retry = asyncio.Event()
        #: A subscriber connection was lost: re-check every listener once it is back.
        self._recheck = False

    def _channel(self, rid: bytes) -> bytes:
        return f"{self._prefix}w:{tag(rid)}".encode()

    async def start(self) -> None:
        """Connect the subscriber connection and start the reader and subscription tasks.

        Raises:
            StorageUnavailable: Redis cannot be reached.
        """
        self._pubsub = self._client.pubsub()
        with redis_errors():
            # A private control channel keeps the connection in subscribed mode, so the
            # reader always has a connection to wait on.
            await self._pubsub.subscribe(self._control)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._reader(), name="redis-wakeups-reader"),
            loop.create_task(self._subscriber(), name="redis-wakeups-subscriber"),
            loop.create_task(self._republisher(), name="redis-wakeups-republisher"),
        ]
        if self._registry.rids():
            self._dirty.set()

    async def aclose(self) -> None:
        """Stop the tasks and close the connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for fut in self._pongs.values():
            if not fut.done():
                fut.cancel()
        if self._pubsub is not None:
            await self._pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]
        await self._batcher.drain()
        await self._client.aclose()

    def listen(self, rid: bytes, callback: WakeCallback) -> None:
        """Call ``callback`` for every event about ``rid``; subscribes its channel if new."""
        if self._registry.add(rid, callback):
            self._dirty.set()

    def unlisten(self, rid: bytes, callback: WakeCallback) -> None:
        """Stop calling ``callback``; unsubscribes the channel when no listener is left."""
        if self._registry.remove(rid, callback):
            self._dirty.set()

    async def sync(self) -> None:
        """Wait until every ``listen``/``unlisten`` so far is in effect on the Redis server.

        Raises:
            StorageUnavailable: Redis did not confirm in time.
        """
        if self._pubsub is None:
            raise StorageUnavailable(MSG_UNAVAILABLE)
        token = secrets.token_bytes(8)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pongs[token] = fut
        try:
            await self._reconcile()
            # PING on a subscribed connection is answered in order, after the (un)subscribe
            # commands sent before it.
            with redis_errors():
                await self._pubsub.ping(token)
            await asyncio.wait_for(fut, SYNC_TIMEOUT_S)
        except TimeoutError as exc:
            raise StorageUnavailable(MSG_UNAVAILABLE) from exc
        finally:
            self._pongs.pop(token, None)

    async def publish(self, event: WakeEvent) -> None:
        """Deliver ``event`` to local listeners at once, then publish it to other processes.

        Raises:
            StorageUnavailable: Redis failed (local listeners were still called).
        """
        self._registry.dispatch(event)
        try:
            async with asyncio.timeout(self._publish_timeout):
                await self._send(event.rid, self._message(event))
        except (StorageError, TimeoutError) as exc:
            if event.kind == "stored":
                self._remember(event.rid, event.seq)
            raise StorageUnavailable(MSG_UNAVAILABLE) from exc

    def _message(self, event: WakeEvent) -> bytes:
        body: dict[str, Any] = {"k": event.kind, "s": event.seq}
        if event.at:
            body["a"] = event.at  # when it was stored, for the wake-up lag
        if event.kind == "online" and event.env is not None:
            body["e"] = event.env.to_map()
        # The publishing process id is a fixed-size prefix, so every process can skip its own
        # publications (one per local deposit) without decoding them.
        packed: bytes = msgpack.packb(body, use_bin_type=True)
        return self._process_id + packed

    async def _send(self, rid: bytes, message: bytes) -> None:
        """Publish ``message`` on the channel of ``rid``.

        Raises:
            StorageUnavailable: Redis failed.
        """
        with redis_errors():  # pipelined with the other publications of this loop turn
            await self._batcher.call(("PUBLISH", self._channel(rid), message))

    def _remember(self, rid: bytes, seq: int) -> None:
        """Publish the ``stored`` event of ``rid`` again later (the highest seq is enough:
        a subscriber reads storage from where it is)."""
        self._unsent[rid] = max(seq, self._unsent.get(rid, 0))
        self._unsent.move_to_end(rid)
        while len(self._unsent) > MAX_UNSENT:
            self._unsent.popitem(last=False)
        self._retry.set()

    def _recheck_all(self) -> None:
        """Tell every local listener to read storage (events may have been lost)."""
        self._recheck = False
        for rid in self._registry.rids():
            self._registry.dispatch(WakeEvent(kind="recheck", rid=rid))

    async def _republisher(self) -> None:
        """Publish again what :meth:`publish` could not, once Redis answers (with backoff)."""
        delay = 0.05
        while True:
            await self._retry.wait()
            self._retry.clear()
            while self._unsent:
                rid, seq = next(iter(self._unsent.items()))
                try:
                    async with asyncio.timeout(self._publish_timeout):
                        await self._send(rid, self._message(WakeEvent("stored", rid, seq)))
                except (StorageError, TimeoutError):
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                delay = 0.05
                if self._unsent.get(rid) == seq:
                    del self._unsent[rid]

    # --- background tasks ----------------------------------------------------------------

    async def _reconcile(self) -> None:
        """Subscribe channels that gained listeners, unsubscribe those that lost them."""
        async with self._lock:
            assert self._pubsub is not None
            wanted = {self._channel(rid) for rid in self._registry.rids()}
            add, drop = wanted - self._subscribed, self._subscribed - wanted
            with redis_errors():
                if add:
                    await self._pubsub.subscribe(*add)
                if drop:
                    await self._pubsub.unsubscribe(*drop)
            self._subscribed = wanted

    async def _subscriber(self) -> None:
        delay = 0.05
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self._reconcile()
                delay = 0.05
                if self._recheck:
                    self._recheck_all()
            except StorageError:
                log.warning("wakeups_subscribe_failed")
                self._dirty.set()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _reader(self) -> None:
        assert self._pubsub is not None
        delay = 0.05
        while True:
            try:
                message = await self._pubsub.get_message(timeout=None)
                delay = 0.05
            except (RedisError, OSError):
                # redis-py reconnects and resubscribes on the next read; what was published
                # meanwhile is lost, so the listeners re-check once that read succeeds.
                log.warning("wakeups_connection_lost")
                self._recheck = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if message is None:
                continue
            kind = message.get("type")
            if self._recheck and kind in ("subscribe", "message", "pong"):
                # The first answer after a reconnect: the subscriptions are back.
                self._recheck_all()
            if kind == "pong":
                fut = self._pongs.get(message.get("data") or b"")
                if fut is not None and not fut.done():
                    fut.set_result(None)
            elif kind == "message":
                self._deliver(message["channel"], message["data"])

    def _deliver(self, channel: bytes, data: bytes) -> None:
        rid = self._rid_of(channel)
        if rid is None or not self._registry.has(rid) or len(data) > MAX_WAKE_MESSAGE:
            return
        if data[: len(self._process_id)] == self._process_id:
            return  # our own publication: local listeners already had it
        try:
            body = msgpack.unpackb(data[len(self._process_id) :], raw=False, strict_map_key=True)
            if not isinstance(body, dict):
                return
            kind, seq = body["k"], body["s"]
            if kind not in ("stored", "online", "deleted") or type(seq) is not int:
                return
            env = StoredEnvelope.from_map(body["e"]) if kind == "online" else None
            if kind == "online" and env is None:
                return
            at = body.get("a", 0.0)
            if type(at) is not float:
                at = 0.0
        except (KeyError, TypeError, ValueError, WireError, msgpack.UnpackException):
            log.warning("wakeup_message_malformed")
            return
        self._registry.dispatch(
            WakeEvent(kind=kind, rid=rid, seq=seq, env=env, at=at, via="pubsub")
        )

    def _rid_of(self, channel: bytes) -> bytes | None:
        head = f"{self._prefix}w:{{".encode()
        if not channel.startswith(head) or not channel.endswith(b"}"):
            return None
        try:
            return bytes.fromhex(channel[len(head) : -1].decode("ascii"))
        except ValueError:
            return None
