"""Wake-up delivery: in-process (LocalWakeups) and across processes (RedisWakeups)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from clientlib.wire.frames import StoredEnvelope
from relay.storage.base import WakeEvent, Wakeups
from relay.storage.redis import RedisWakeups, ShardedWakeups
from relay.storage.wakeups import LocalWakeups

ENV = StoredEnvelope(seq=0, eid=os.urandom(16), ts=1_750_000_000, flags=1, ct=os.urandom(256))


class Inbox:
    """A listener that records events and lets a test wait for them."""

    def __init__(self) -> None:
        self.events: list[WakeEvent] = []
        self._arrived = asyncio.Event()

    def __call__(self, event: WakeEvent) -> None:
        self.events.append(event)
        self._arrived.set()

    async def wait(self, count: int, timeout: float = 3.0) -> list[WakeEvent]:
        async with asyncio.timeout(timeout):
            while len(self.events) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.events


async def test_local_wakeups() -> None:
    wakeups: Wakeups = LocalWakeups()
    await wakeups.start()
    rid, other = os.urandom(16), os.urandom(16)
    a, b, c = Inbox(), Inbox(), Inbox()

    def broken(event: WakeEvent) -> None:
        raise RuntimeError("listener bug")

    wakeups.listen(rid, broken)
    wakeups.listen(rid, a)
    wakeups.listen(rid, b)
    wakeups.listen(other, c)
    event = WakeEvent(kind="stored", rid=rid, seq=7, env=ENV)
    await wakeups.publish(event)
    assert a.events == [event] and b.events == [event]  # delivered at once, env included
    assert c.events == []
    wakeups.unlisten(rid, a)
    wakeups.unlisten(rid, a)  # unknown: a no-op
    await wakeups.publish(WakeEvent(kind="deleted", rid=rid))
    assert len(a.events) == 1 and len(b.events) == 2
    await wakeups.aclose()


@pytest.fixture(params=["redis", "redis-cluster"])
def redis_url(request: pytest.FixtureRequest) -> str:
    """A single Redis, or a seed node of the Redis Cluster (sharded pub/sub)."""
    name = "redis_url" if request.param == "redis" else "redis_cluster_url"
    url: str = request.getfixturevalue(name)
    return url


@pytest.fixture
async def two_processes(
    redis_url: str, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[RedisWakeups, RedisWakeups]]:
    kind = ShardedWakeups if request.node.callspec.params["redis_url"] != "redis" else RedisWakeups
    one, two = kind(redis_url), kind(redis_url)
    await one.start()
    await two.start()
    try:
        yield one, two
    finally:
        await one.aclose()
        await two.aclose()
        await one.aclose()  # idempotent


@pytest.mark.redis
async def test_redis_wakeups_cross_process(
    two_processes: tuple[RedisWakeups, RedisWakeups],
) -> None:
    one, two = two_processes
    rid = os.urandom(16)
    local, remote, unrelated = Inbox(), Inbox(), Inbox()
    one.listen(rid, local)
    two.listen(rid, remote)
    two.listen(os.urandom(16), unrelated)
    await one.sync()
    await two.sync()

    await one.publish(WakeEvent(kind="stored", rid=rid, seq=3, env=ENV))
    assert local.events == [WakeEvent(kind="stored", rid=rid, seq=3, env=ENV)]  # at once
    (got,) = await remote.wait(1)
    assert (got.kind, got.rid, got.seq, got.env) == ("stored", rid, 3, None)

    await two.publish(WakeEvent(kind="online", rid=rid, env=ENV))
    events = await local.wait(2)
    assert (events[1].kind, events[1].seq, events[1].env) == ("online", 0, ENV)

    await one.publish(WakeEvent(kind="deleted", rid=rid))
    assert [e.kind for e in await remote.wait(3)] == ["stored", "online", "deleted"]

    # Own publications are ignored: each local listener saw each event exactly once.
    await asyncio.sleep(0.1)
    assert [e.kind for e in local.events] == ["stored", "online", "deleted"]
    assert [e.kind for e in remote.events] == ["stored", "online", "deleted"]
    assert unrelated.events == []


@contextlib.contextmanager
def cluster_client(url: str) -> Iterator[redis.RedisCluster]:
    """A sync cluster client whose sockets are closed on exit: redis-py's
    ``RedisCluster.from_url`` gives every node a pool that ``close()`` leaves open (the node's
    client does not own it), so a socket was left to the garbage collector and failed a
    later test with a ResourceWarning."""
    cluster = redis.RedisCluster.from_url(url)
    try:
        yield cluster
    finally:
        cluster.close()
        for node in cluster.get_nodes():
            if node.redis_connection is not None:
                node.redis_connection.connection_pool.disconnect()


@pytest.mark.redis
async def test_redis_wakeups_unlisten(
    two_processes: tuple[RedisWakeups, RedisWakeups], redis_url: str
) -> None:
    one, two = two_processes
    rid = os.urandom(16)
    first, second = Inbox(), Inbox()
    two.listen(rid, first)
    two.listen(rid, second)
    await two.sync()
    two.unlisten(rid, first)
    await two.sync()
    await one.publish(WakeEvent(kind="stored", rid=rid, seq=1))
    await second.wait(1)
    assert first.events == []

    two.unlisten(rid, second)
    await two.sync()
    channel = f"br:w:{{{rid.hex()}}}"
    if isinstance(two, ShardedWakeups):
        with cluster_client(redis_url) as cluster:
            node = cluster.get_node_from_key(channel)
            assert cluster.pubsub_shardnumsub(channel, target_nodes=node) == [
                (channel.encode(), 0)
            ]
    else:
        with redis.Redis.from_url(redis_url) as client:
            assert client.pubsub_numsub(channel) == [(channel.encode(), 0)]
    await one.publish(WakeEvent(kind="stored", rid=rid, seq=2))
    await asyncio.sleep(0.1)
    assert len(second.events) == 1

    # Listening again resubscribes.
    two.listen(rid, first)
    await two.sync()
    await one.publish(WakeEvent(kind="stored", rid=rid, seq=3))
    assert [e.seq for e in await first.wait(1)] == [3]


@pytest.mark.redis
async def test_redis_wakeups_ignore_malformed_messages(
    two_processes: tuple[RedisWakeups, RedisWakeups], redis_url: str
) -> None:
    _, two = two_processes
    rid = os.urandom(16)
    inbox = Inbox()
    two.listen(rid, inbox)
    await two.sync()
    channel = f"br:w:{{{rid.hex()}}}"
    junk = (b"\xc1", b"\x92\x01\x02", b"\x81\xa1k\xa5bogus")
    if isinstance(two, ShardedWakeups):
        with cluster_client(redis_url) as cluster:
            for message in junk:
                cluster.spublish(channel, message)
    else:
        with redis.Redis.from_url(redis_url) as client:
            for message in junk:
                client.publish(channel, message)
    await asyncio.sleep(0.1)
    assert inbox.events == []
