"""Cross-process wake-ups on Redis Cluster: sharded pub/sub (``SSUBSCRIBE``/``SPUBLISH``).

A mailbox's channel ``<prefix>w:{<rid hex>}`` has the mailbox's hash tag, so it lives in the
mailbox's slot: ``SPUBLISH`` goes to the master of that slot (and its replicas) only, instead
of every node of the cluster as plain ``PUBLISH`` would. The subscriber keeps one pub/sub
connection per master that serves a subscribed channel, with one reader task each, and
subscribes every channel on the master of its slot. When a connection breaks (a master
failed) or the server drops a subscription (its slot moved), the slot map is refreshed and
the channels are subscribed again on their new masters. Pub/sub stays best effort, as with
:class:`~relay.storage.redis.wakeups.RedisWakeups`: an event published while a channel is
moving is lost, and subscribers fetch after (re)subscribing.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass, field
from typing import Final

import redis.asyncio as aioredis
import structlog
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from relay.storage._common import MSG_UNAVAILABLE
from relay.storage.errors import StorageError, StorageUnavailable
from relay.storage.records import WakeEvent
from relay.storage.redis.engine import (
    CONNECT_TIMEOUT_S,
    SOCKET_TIMEOUT_S,
    make_cluster_client,
    redis_errors,
)
from relay.storage.redis.wakeups import PUBLISH_TIMEOUT_S, SYNC_TIMEOUT_S, RedisWakeups

log = structlog.get_logger("blindrelay.storage")

__all__ = ["ShardedWakeups"]

#: Pause before the slot map is refreshed again after a failed refresh.
RETRY_S: Final = 0.2


@dataclass(eq=False)
class _Shard:
    """The pub/sub connection to one master and what it subscribed there."""

    name: str
    client: aioredis.Redis
    pubsub: PubSub
    channels: set[bytes] = field(default_factory=set)
    task: asyncio.Task[None] | None = None


class ShardedWakeups(RedisWakeups):
    """A :class:`~relay.storage.base.Wakeups` over sharded pub/sub on Redis Cluster.

    Args:
        url: a seed node of the cluster.
        key_prefix: prefix of channel names, default ``br:``.
        publish_timeout_s: the longest one publication waits (``storage_timeout_s``).
    """

    def __init__(
        self, url: str, *, key_prefix: str = "br:", publish_timeout_s: float = PUBLISH_TIMEOUT_S
    ) -> None:
        super().__init__(url, key_prefix=key_prefix, publish_timeout_s=publish_timeout_s)
        self._cluster: RedisCluster = make_cluster_client(url)
        self._shards: dict[str, _Shard] = {}

    async def start(self) -> None:
        """Discover the cluster and start the subscription task.

        Raises:
            StorageUnavailable: the cluster cannot be reached.
        """
        with redis_errors():
            _ = await self._cluster.initialize()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._subscriber(), name="redis-shard-subscriber"),
            loop.create_task(self._republisher(), name="redis-shard-republisher"),
        ]
        if self._registry.rids():
            self._dirty.set()

    async def aclose(self) -> None:
        """Stop the tasks and close every connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for shard in list(self._shards.values()):
            await self._drop_shard(shard)
        for fut in self._pongs.values():
            if not fut.done():
                fut.cancel()
        await self._cluster.aclose()
        await self._client.aclose()

    async def sync(self) -> None:
        """Wait until every ``listen``/``unlisten`` so far is in effect on the masters.

        Raises:
            StorageUnavailable: a master did not confirm in time.
        """
        if not self._tasks:
            raise StorageUnavailable(MSG_UNAVAILABLE)
        await self._reconcile()
        loop = asyncio.get_running_loop()
        waits: list[asyncio.Future[None]] = []
        tokens: list[bytes] = []
        try:
            for shard in list(self._shards.values()):
                token = secrets.token_bytes(8)
                fut: asyncio.Future[None] = loop.create_future()
                self._pongs[token] = fut
                tokens.append(token)
                waits.append(fut)
                with redis_errors():
                    await shard.pubsub.ping(token)
            async with asyncio.timeout(SYNC_TIMEOUT_S):
                await asyncio.gather(*waits)
        except TimeoutError as exc:
            raise StorageUnavailable(MSG_UNAVAILABLE) from exc
        finally:
            for token in tokens:
                self._pongs.pop(token, None)

    async def publish(self, event: WakeEvent) -> None:
        """Deliver ``event`` to local listeners at once, then ``SPUBLISH`` it on the master of
        the mailbox's slot.

        Raises:
            StorageUnavailable: Redis failed (local listeners were still called).
        """
        await super().publish(event)

    async def _send(self, rid: bytes, message: bytes) -> None:
        with redis_errors():
            await self._cluster.spublish(self._channel(rid), message)

    # --- subscriptions ---------------------------------------------------------------------

    async def _reconcile(self) -> None:
        """Subscribe every wanted channel on the master of its slot; drop the rest."""
        async with self._lock:
            wanted: dict[str, set[bytes]] = {}
            nodes: dict[str, ClusterNode] = {}
            with redis_errors():
                for rid in self._registry.rids():
                    channel = self._channel(rid)
                    node = self._cluster.get_node_from_key(channel.decode())
                    if node is None:
                        raise StorageUnavailable(MSG_UNAVAILABLE)  # no master serves the slot
                    nodes[node.name] = node
                    wanted.setdefault(node.name, set()).add(channel)
            for name, shard in list(self._shards.items()):
                if name not in wanted:
                    await self._drop_shard(shard)
            for name, channels in wanted.items():
                shard = self._shards.get(name) or await self._open_shard(nodes[name])
                add, drop = channels - shard.channels, shard.channels - channels
                with redis_errors():
                    # One channel per command: SSUBSCRIBE takes channels of one slot only.
                    for channel in drop:
                        shard.channels.discard(channel)
                        await shard.pubsub.sunsubscribe(channel)
                    for channel in add:
                        await shard.pubsub.ssubscribe(channel)
                        shard.channels.add(channel)

    async def _open_shard(self, node: ClusterNode) -> _Shard:
        client = aioredis.Redis(
            host=node.host,
            port=int(node.port),
            socket_timeout=None,  # a subscriber waits for messages indefinitely
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            health_check_interval=30,
        )
        pubsub = client.pubsub()
        try:
            with redis_errors():
                # The private control channel keeps the connection in subscribed mode, so
                # the reader always has a connection to wait on and PING is answered in order.
                await asyncio.wait_for(pubsub.subscribe(self._control), SOCKET_TIMEOUT_S)
        except (StorageError, TimeoutError):
            await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]
            await client.aclose()
            raise StorageUnavailable(MSG_UNAVAILABLE) from None
        shard = _Shard(name=node.name, client=client, pubsub=pubsub)
        shard.task = asyncio.get_running_loop().create_task(
            self._shard_reader(shard), name="redis-shard-reader"
        )
        self._shards[node.name] = shard
        return shard

    async def _drop_shard(self, shard: _Shard) -> None:
        if self._shards.get(shard.name) is shard:
            del self._shards[shard.name]
        if shard.task is not None:
            shard.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await shard.task
        await self._close_connections(shard)

    @staticmethod
    async def _close_connections(shard: _Shard) -> None:
        with contextlib.suppress(RedisError, OSError):
            await shard.pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]
        with contextlib.suppress(RedisError, OSError):
            await shard.client.aclose()

    async def _moved(self, shard: _Shard) -> None:
        """The connection of ``shard`` broke or lost a subscription: refresh the slot map and
        subscribe everything again where it now lives (then every listener re-checks)."""
        self._recheck = True
        self._dirty.set()
        while not self._closed:
            try:
                await self._cluster.nodes_manager.initialize()
                return
            except (RedisError, RedisClusterException, OSError):
                await asyncio.sleep(RETRY_S)

    async def _shard_reader(self, shard: _Shard) -> None:
        while True:
            try:
                message = await shard.pubsub.get_message(timeout=None)
            except (RedisError, OSError):
                log.warning("wakeups_connection_lost")
                if self._shards.get(shard.name) is shard:
                    del self._shards[shard.name]
                await self._close_connections(shard)
                await self._moved(shard)
                return
            if message is None:
                continue
            kind = message.get("type")
            if kind == "smessage":
                self._deliver(message["channel"], message["data"])
            elif kind == "pong":
                fut = self._pongs.get(message.get("data") or b"")
                if fut is not None and not fut.done():
                    fut.set_result(None)
            elif kind == "sunsubscribe" and message["channel"] in shard.channels:
                # Not asked for: the server dropped it because its slot moved elsewhere.
                shard.channels.discard(message["channel"])
                await self._moved(shard)
