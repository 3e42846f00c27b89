"""Redis Cluster only: durability checks on every master, and a master failover under load.

The shared contract suite (test_store.py) and the wake-up tests (test_wakeups.py) run on the
session cluster too; these are the checks that only make sense on a cluster.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from rediscluster import RedisClusterProcesses

from relay.storage.base import (
    MailboxRecord,
    StorageUnavailable,
    StoreLimits,
)
from relay.storage.records import WakeEvent
from relay.storage.redis import RedisStore, ShardedWakeups
from relay.storage.redis.keys import slot_of

pytestmark = pytest.mark.redis

NOW = 1_750_000_000
LIMITS = StoreLimits(
    max_envelopes=100_000,
    max_bytes=1 << 26,
    envelope_ttl_s=3600,
    dedupe_window_s=600,
    mailbox_idle_ttl_s=10 * 86_400,
)


async def test_durability_is_checked_on_every_master(
    redis_cluster: RedisClusterProcesses, redis_cluster_url: str
) -> None:
    one = redis_cluster.primaries()[1]
    with one.client() as c:
        c.config_set("appendfsync", "everysec")
    try:
        strict = RedisStore(redis_cluster_url, LIMITS, cluster=True, wait_replicas=1)
        with pytest.raises(StorageUnavailable) as info:
            await strict.open()
        assert "appendfsync is everysec" in str(info.value)
        assert "on 1 of 3 masters" in str(info.value)
        assert "127.0.0.1" not in str(info.value)  # no addresses in the message
        await strict.aclose()
        relaxed = RedisStore(
            redis_cluster_url, LIMITS, cluster=True, wait_replicas=1, durability="relaxed"
        )
        await relaxed.open()  # the loss window is accepted, and still reported
        assert any("everysec" in p for p in await relaxed.durability_problems())
        await relaxed.aclose()
    finally:
        with one.client() as c:
            c.config_set("appendfsync", "always")

    # Without WAIT, asynchronous replication is a loss window a strict relay refuses.
    no_wait = RedisStore(redis_cluster_url, LIMITS, cluster=True)
    with pytest.raises(StorageUnavailable) as info:
        await no_wait.open()
    assert "redis_wait_replicas" in str(info.value)
    await no_wait.aclose()
    # Waiting for more replicas than the masters have would fail every write.
    too_many = RedisStore(redis_cluster_url, LIMITS, cluster=True, wait_replicas=2)
    with pytest.raises(StorageUnavailable) as info:
        await too_many.open()
    assert "3 of 3 masters have fewer replicas" in str(info.value)
    await too_many.aclose()


async def _fill(
    store: RedisStore, records: list[MailboxRecord], acked: list[tuple[int, bytes]]
) -> None:
    """Deposit in a loop into every mailbox; remember each acknowledged (mailbox, eid)."""
    i = 0
    while True:
        n = i % len(records)
        eid = os.urandom(16)
        try:
            await store.deposit(records[n].sid, eid, 0, os.urandom(64), None, NOW)
        except StorageUnavailable:
            await asyncio.sleep(0.05)  # not acknowledged: the sender would retry
        else:
            acked.append((n, eid))
        i += 1


async def test_master_failover_under_load_loses_no_acknowledged_envelope(
    redis_cluster: RedisClusterProcesses, redis_cluster_url: str
) -> None:
    store = RedisStore(redis_cluster_url, LIMITS, cluster=True, wait_replicas=1)
    await store.open()
    wakeups = ShardedWakeups(redis_cluster_url)
    await wakeups.start()
    victim = redis_cluster.primaries()[0]
    replica = redis_cluster.replica_of(victim)
    # Mailboxes on every master, some on the victim's slots.
    records = []
    for _ in range(12):
        rec = MailboxRecord(os.urandom(16), os.urandom(16), os.urandom(32), NOW // 86_400)
        await store.create_mailbox(rec, NOW)
        records.append(rec)
    on_victim = _on_node(store, victim.port, records)
    assert on_victim, "no mailbox landed on the victim (12 random ids)"
    seen: list[WakeEvent] = []
    wakeups.listen(on_victim[0].rid, seen.append)
    await wakeups.sync()

    acked: list[tuple[int, bytes]] = []
    load = asyncio.create_task(_fill(store, records, acked))
    try:
        await asyncio.sleep(0.5)
        before = len(acked)
        victim.stop(kill=True)  # the master dies under load
        await asyncio.sleep(0.1)
        # Its replica takes over (cluster-node-timeout 1 s), and deposits go on.
        await _until(lambda: _is_master(replica), "the replica takes over")
        # The other masters keep acknowledging. The new master has no replica yet, so a
        # write there is never acknowledged (WAIT 1 finds no replica: "unavailable").
        after_failover = len(acked)
        await _until(lambda: len(acked) >= after_failover + 10, "the other masters acknowledge")
        assert {n for n, _ in acked[after_failover:]}.isdisjoint(
            {records.index(r) for r in on_victim}
        )
        # The old master comes back as the new master's replica: its slots acknowledge again.
        victim.start()
        redis_cluster.wait_healthy()
        back = len(acked)
        await _until(
            lambda: any(records[n] in on_victim for n, _ in acked[back:]),
            "the failed-over slots acknowledge again",
        )
    finally:
        load.cancel()
        await asyncio.gather(load, return_exceptions=True)
    assert len(acked) > before
    # Every acknowledged envelope is there, after the failover.
    stored: dict[int, set[bytes]] = {}
    for n, rec in enumerate(records):
        envs = await store.fetch(rec.rid, 0, 100_000, 1 << 30, NOW)
        stored[n] = {e.eid for e in envs}
    lost = [eid for n, eid in acked if eid not in stored[n]]
    assert lost == []
    # Wake-ups of a mailbox of the failed master reach the subscriber on its new master.
    seen.clear()
    async with asyncio.timeout(15):
        while True:
            await wakeups.sync()
            await store.deposit(on_victim[0].sid, os.urandom(16), 0, b"x" * 64, None, NOW)
            other = ShardedWakeups(redis_cluster_url)
            await other.start()
            await other.publish(WakeEvent(kind="stored", rid=on_victim[0].rid, seq=1))
            await other.aclose()
            await asyncio.sleep(0.2)
            if any(e.kind == "stored" for e in seen):
                break
    await wakeups.aclose()
    await store.aclose()


def _on_node(store: RedisStore, port: int, records: list[MailboxRecord]) -> list[MailboxRecord]:
    cluster: Any = store._cluster
    out = []
    for rec in records:
        node = cluster.nodes_manager.slots_cache[slot_of(rec.rid)][0]
        if node.port == port:
            out.append(rec)
    return out


async def _until(predicate: Any, what: str, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        await asyncio.sleep(0.05)


def _is_master(node: Any) -> bool:
    with node.client() as c:
        return bool(c.info("replication")["role"] == "master")
