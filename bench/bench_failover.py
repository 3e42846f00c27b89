"""Redis Cluster master failover under load: acknowledged envelopes lost (issue 17).

For each mode, several trials, each on a fresh cluster of 3 masters with one replica each
(``tests/rediscluster.py``: free ports, temporary directories, ``appendonly yes``,
``appendfsync always``, ``cluster-node-timeout`` 1 s), never the machine's Redis:

1. create mailboxes spread over every master;
2. run ``--concurrency`` depositors through :class:`relay.storage.redis.RedisStore` (the
   relay's own store code), each remembering every deposit that returned (acknowledged);
3. after ``--before`` seconds (and, with ``--lag-ms``, that long after the replica's link to
   the master was cut: ``CLIENT KILL TYPE master`` on the replica, with a wrong ``masterauth``
   so that it cannot reconnect) SIGKILL one master; its replica
   takes over; deposits go on
   for ``--after`` seconds (a failed deposit is not acknowledged; the depositor moves on);
4. fetch every mailbox and count acknowledged envelopes that are not there.

Modes: ``async`` (replication as Redis does it: asynchronous), ``min-replicas``
(``min-replicas-to-write 1``, ``min-replicas-max-lag 10`` on every node: a master without
a replica refuses writes, replication stays asynchronous) and ``wait`` (the store's
``wait_replicas=1``: every acknowledged write is followed by ``WAIT 1 1000`` on the same
connection, and fewer confirmations than asked are "unavailable").

    python bench/bench_failover.py --trials 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from rediscluster import RedisClusterProcesses, start_cluster  # noqa: E402

from relay.storage.base import MailboxRecord, StorageError, StoreLimits  # noqa: E402
from relay.storage.redis import RedisStore  # noqa: E402
from relay.storage.redis.keys import slot_of  # noqa: E402

NOW = 1_750_000_000
LIMITS = StoreLimits(
    max_envelopes=1_000_000,
    max_bytes=1 << 30,
    envelope_ttl_s=3600,
    dedupe_window_s=600,
    mailbox_idle_ttl_s=10 * 86_400,
)


async def trial(
    cluster: RedisClusterProcesses, mode: str, lag_ms: int, args: argparse.Namespace
) -> dict[str, float]:
    if mode == "min-replicas":
        for node in cluster.nodes:  # replicas too: the promoted one keeps the rule
            with node.client() as c:
                c.config_set("min-replicas-to-write", 1)
                c.config_set("min-replicas-max-lag", 10)
    store = RedisStore(
        cluster.url,
        LIMITS,
        cluster=True,
        wait_replicas=1 if mode == "wait" else 0,
        durability="relaxed",
    )
    await store.open()
    records = []
    for _ in range(args.mailboxes):
        rec = MailboxRecord(os.urandom(16), os.urandom(16), os.urandom(32), NOW // 86_400)
        await store.create_mailbox(rec, NOW)
        records.append(rec)
    victim = cluster.primaries()[0]
    cache = store._cluster.nodes_manager.slots_cache  # type: ignore[union-attr]
    on_victim = {i for i, r in enumerate(records) if cache[slot_of(r.rid)][0].port == victim.port}

    acked: list[tuple[int, bytes, float]] = []
    failed = 0
    stop = False
    killed_at = 0.0

    async def depositor(k: int) -> None:
        nonlocal failed
        i = k
        while not stop:
            n = i % len(records)
            eid = os.urandom(16)
            try:
                await store.deposit(records[n].sid, eid, 0, os.urandom(256), None, NOW)
                acked.append((n, eid, time.monotonic()))
            except StorageError:
                failed += 1
                await asyncio.sleep(0.01)
            i += args.concurrency

    tasks = [asyncio.create_task(depositor(k)) for k in range(args.concurrency)]
    await asyncio.sleep(args.before)
    replica = cluster.replica_of(victim)
    if lag_ms:
        # The replication link breaks (a network partition between the two): the replica
        # drops its connection to the master; lag_ms later the master dies, and the replica
        # takes over without what the master acknowledged meanwhile.
        # A wrong masterauth keeps it from reconnecting until the master is gone.
        with replica.client() as c:
            c.config_set("masterauth", "bench-no-such-password")
            c.client_kill_filter(_type="master")
        await asyncio.sleep(lag_ms / 1000)
    victim.stop(kill=True)
    killed_at = time.monotonic()
    if lag_ms:
        with replica.client() as c:
            c.config_set("masterauth", "")
    await asyncio.sleep(args.after)
    stop = True
    await asyncio.gather(*tasks, return_exceptions=True)
    # The old master comes back as a replica (with min-replicas-to-write, or WAIT, a master
    # without a replica refuses writes, and a fetch may write).
    victim.start()
    await asyncio.to_thread(cluster.wait_healthy)
    stored: dict[int, set[bytes]] = {}
    for n, rec in enumerate(records):
        for _ in range(50):
            try:
                envs = await store.fetch(rec.rid, 0, 1_000_000, 1 << 30, NOW)
                break
            except StorageError:
                await asyncio.sleep(0.2)
        else:
            raise RuntimeError("mailbox unreadable after the failover")
        stored[n] = {e.eid for e in envs}
    await store.aclose()
    lost = [(n, t) for n, eid, t in acked if eid not in stored[n]]
    on_victim_acked = sum(1 for n, _, _ in acked if n in on_victim)
    return {
        "acked": len(acked),
        "acked_on_victim": on_victim_acked,
        "acked_on_victim_after_kill": sum(
            1 for n, _, t in acked if n in on_victim and t > killed_at
        ),
        "failed": failed,
        "lost": len(lost),
        "lost_ms_before_kill_max": max(((killed_at - t) * 1000 for _, t in lost), default=0.0),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--modes", default="async,min-replicas,wait")
    parser.add_argument("--mailboxes", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--before", type=float, default=2.0)
    parser.add_argument("--after", type=float, default=4.0)
    parser.add_argument(
        "--lag-ms",
        default="0,300",
        help="the replication link is cut this long before the kill (list; 0: not cut)",
    )
    args = parser.parse_args()
    print(f"# bench_failover: {args.concurrency} depositors, {args.mailboxes} mailboxes,")
    print(f"# kill -9 of one of 3 masters after {args.before} s, {args.after} s more load")
    print(f"# load average at start: {os.getloadavg()[0]:.1f} (2-core machine)")
    for lag_ms in (int(x) for x in args.lag_ms.split(",")):
        for mode in args.modes.split(","):
            await run_mode(mode, lag_ms, args)


async def run_mode(mode: str, lag_ms: int, args: argparse.Namespace) -> None:
    rows = []
    for _ in range(args.trials):
        with tempfile.TemporaryDirectory(prefix="bench-failover-") as tmp:
            cluster = start_cluster(Path(tmp))
            try:
                rows.append(await trial(cluster, mode, lag_ms, args))
            finally:
                cluster.stop()
    for row in rows:
        after = row["acked_on_victim_after_kill"]
        print(
            f"{mode:13} lag {lag_ms:4} ms  acked {row['acked']:6.0f}  on the killed master's slots"
            f" {row['acked_on_victim']:5.0f} (after the kill {after:4.0f})"
            f"  failed {row['failed']:5.0f}  LOST {row['lost']:3.0f}"
            f"  (acked at most {row['lost_ms_before_kill_max']:.1f} ms before the kill)"
        )


if __name__ == "__main__":
    asyncio.run(main())
