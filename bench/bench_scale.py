"""Scale benchmark of the stores (issue 21): costs that must not grow with the stored state.

Populates one store with many mailboxes and envelopes through the store's own code (its
public methods, many in flight, so the SQLite writer batches and Redis pipelines scripts),
then measures, at that size:

* per-operation latency (create, deposit, fetch, ack; sequential, p50/p99);
* a gauge read (``gauges()``: what ``/metrics`` asks);
* an idle sweep (``purge_expired`` with nothing due): wall time, and CPU of this process and
  of redis-server;
* a sweep with work (every stored envelope expires at once) while deposits to other mailboxes
  keep running at a fixed rate: sweep time and CPU, deposit latency p50/p99/max meanwhile;
  then the file size (SQLite: does it shrink?) or the memory (Redis);
* startup (close, reopen, first deposit);
* RSS (this process: SQLite runs in-process; redis-server's own), disk or memory per item;
* bytes written per durable 1 KiB deposit and per ack of 10, sequential (one commit each) and
  batched (many in flight): SQLite's ``wchar`` of this process (WAL writes plus checkpoints),
  Redis' AOF growth.

SQLite runs in this process (writer and reader threads); Redis in its own redis-server (free
port, temporary directory, AOF with ``appendfsync always``, relaxed to ``no`` only while
populating), never the system one.

    python bench/bench_scale.py --backend both --mailboxes 100000 --envelopes 200000

``--mailboxes 1000000 --envelopes 2000000`` is the issue's size (minutes to populate).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis
from bench_consent import proc_cpu, redis_server

from relay.storage.base import EnvelopeStore, MailboxRecord, StoreLimits
from relay.storage.redis import RedisStore
from relay.storage.sqlite import SQLiteStore

LIMITS = StoreLimits()  # the relay's defaults: 21-day envelopes, 180-day idle mailboxes
CT = os.urandom(1024)
DAY = 86_400


def ident(kind: bytes, i: int) -> bytes:
    return hashlib.blake2b(i.to_bytes(8, "big"), digest_size=16, key=kind).digest()


def record(i: int, day: int) -> MailboxRecord:
    return MailboxRecord(
        rid=ident(b"r", i), sid=ident(b"s", i), owner_key=ident(b"k", i) * 2, created_day=day
    )


async def run_all(n: int, job: Callable[[int], Awaitable[object]], inflight: int) -> None:
    """Run ``job(i)`` for i in range(n), ``inflight`` at a time."""
    it = iter(range(n))

    async def worker() -> None:
        for i in it:
            await job(i)

    await asyncio.gather(*(worker() for _ in range(inflight)))


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def ms(values: list[float]) -> str:
    p50, p99, top = pct(values, 0.5) * 1e3, pct(values, 0.99) * 1e3, max(values) * 1e3
    return f"p50 {p50:.2f} / p99 {p99:.2f} / max {top:.2f} ms"


def self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


class Backend:
    """How to open, measure and reopen one store."""

    name = ""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp

    def make(self) -> EnvelopeStore:
        raise NotImplementedError

    def server_cpu(self) -> float:
        return 0.0

    def populating(self, fast: bool) -> None:
        """Relax fsyncs while populating (the figures are taken durable)."""

    def written(self) -> int:
        raise NotImplementedError

    def footprint(self) -> dict[str, float]:
        raise NotImplementedError


class SQLiteBackend(Backend):
    name = "sqlite"

    def make(self) -> EnvelopeStore:
        return SQLiteStore(self.tmp / "relay.db", LIMITS)

    def written(self) -> int:
        return wchar()

    def footprint(self) -> dict[str, float]:
        db = self.tmp / "relay.db"
        wal = self.tmp / "relay.db-wal"
        return {
            "file_mib": db.stat().st_size / 2**20,
            "wal_mib": (wal.stat().st_size if wal.exists() else 0) / 2**20,
            "rss_mib": rss_mib(),
        }


class RedisBackend(Backend):
    name = "redis"

    def __init__(self, tmp: Path, url: str, pid: int) -> None:
        super().__init__(tmp)
        self.url, self.pid = url, pid
        self.client = redis.Redis.from_url(url)

    def make(self) -> EnvelopeStore:
        return RedisStore(self.url, LIMITS)

    def server_cpu(self) -> float:
        return proc_cpu(self.pid)

    def populating(self, fast: bool) -> None:
        self.client.config_set("appendfsync", "no" if fast else "always")

    def written(self) -> int:
        return int(self.client.info("persistence")["aof_current_size"])

    def footprint(self) -> dict[str, float]:
        mem = self.client.info("memory")
        return {
            "used_memory_mib": int(mem["used_memory"]) / 2**20,
            "redis_rss_mib": int(mem["used_memory_rss"]) / 2**20,
            "aof_mib": self.written() / 2**20,
            "rss_mib": rss_mib(),
        }


@contextmanager
def backend_for(name: str, tmp: Path) -> Iterator[Backend]:
    if name == "sqlite":
        yield SQLiteBackend(tmp)
        return
    with redis_server(str(tmp)) as (url, pid):
        yield RedisBackend(tmp, url, pid)


@asynccontextmanager
async def opened(b: Backend) -> AsyncIterator[EnvelopeStore]:
    store = b.make()
    await store.open()
    try:
        yield store
    finally:
        await store.aclose()


async def timed(call: Callable[[], Awaitable[object]]) -> float:
    t = time.perf_counter()
    await call()
    return time.perf_counter() - t


async def bench(b: Backend, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"backend": b.name, "mailboxes": args.mailboxes}
    n, m = args.mailboxes, args.envelopes
    t0 = int(time.time())
    day = t0 // DAY
    full = max(1, min(n // 2, m))  # mailboxes holding the envelopes (the rest stay empty)
    print(f"[{b.name}] populating {n:,} mailboxes, {m:,} envelopes over {full:,} ...", flush=True)
    async with opened(b) as store:
        b.populating(True)
        t = time.perf_counter()
        await run_all(n, lambda i: store.create_mailbox(record(i, day), t0), args.inflight)
        out["populate_mailboxes_per_s"] = n / (time.perf_counter() - t)
        t = time.perf_counter()
        await run_all(
            m,
            lambda i: store.deposit(record(i % full, day).sid, ident(b"e", i), 0, CT, None, t0),
            args.inflight,
        )
        out["populate_envelopes_per_s"] = m / (time.perf_counter() - t) if m else 0.0
        out["populate_s"] = n / out["populate_mailboxes_per_s"] + (
            m / out["populate_envelopes_per_s"] if m else 0
        )
        b.populating(False)
        print(f"[{b.name}] populated in {out['populate_s']:.0f} s", flush=True)
        await store.purge_expired(t0)  # nothing due: checkpoints (SQLite), takes the lease
        foot = b.footprint()
        out["footprint_after_populate"] = foot

        # Per-operation latency at this size (sequential).
        now = t0 + 60
        k = args.ops
        lat: dict[str, list[float]] = {"create": [], "deposit": [], "fetch": [], "ack": []}
        for j in range(k):
            rec = record(n + j, day)
            lat["create"].append(await timed(lambda rec=rec: store.create_mailbox(rec, now)))
        for j in range(k):
            sid = record((j * 7919) % n, day).sid
            lat["deposit"].append(
                await timed(
                    lambda sid=sid, j=j: store.deposit(sid, ident(b"x", j), 0, CT, None, now)
                )
            )
        for j in range(k):
            rid = record((j * 7919) % n, day).rid
            lat["fetch"].append(await timed(lambda rid=rid: store.fetch(rid, 0, 10, 1 << 20, now)))
        for j in range(k):
            rid = record((j * 7919) % n, day).rid
            lat["ack"].append(await timed(lambda rid=rid: store.ack(rid, [1])))
        out["latency"] = {op: ms(v) for op, v in lat.items()}
        for op, v in lat.items():
            print(f"[{b.name}] {op:8s} {ms(v)}", flush=True)

        # Gauge read.
        g = [await timed(store.gauges) for _ in range(200)]
        out["gauges"] = ms(g)
        print(f"[{b.name}] gauges   {ms(g)}  {await store.gauges()}", flush=True)

        # Idle sweep.
        idle = []
        for _ in range(3):
            c, s = self_cpu(), b.server_cpu()
            w = await timed(lambda: store.purge_expired(now))
            idle.append((w, self_cpu() - c, b.server_cpu() - s))
        best = min(idle, key=lambda x: x[1] + x[2])
        out["idle_sweep"] = {"wall_s": best[0], "cpu_s": best[1], "server_cpu_s": best[2]}
        print(
            f"[{b.name}] idle sweep wall {best[0]:.3f} s, cpu {best[1]:.3f} s"
            f" (+ server {best[2]:.3f} s)",
            flush=True,
        )

        # Bytes written per deposit and per ack.
        wr: dict[str, float] = {}
        base = n + k
        recs = [record(base + j, day) for j in range(100)]
        for rec in recs:
            await store.create_mailbox(rec, now)
        w0 = b.written()
        for j in range(200):
            await store.deposit(recs[j % 100].sid, ident(b"w", j), 0, CT, None, now)
        wr["deposit_sequential"] = (b.written() - w0) / 200
        w0 = b.written()
        await run_all(
            2000,
            lambda j: store.deposit(recs[j % 100].sid, ident(b"v", j), 0, CT, None, now),
            256,
        )
        wr["deposit_batched"] = (b.written() - w0) / 2000
        w0 = b.written()
        for rec in recs[:20]:
            await store.ack(rec.rid, list(range(1, 11)))
        wr["ack10_sequential"] = (b.written() - w0) / 20
        out["bytes_written"] = wr
        print(f"[{b.name}] bytes written {wr}", flush=True)

        # Sweep with work while deposits run.
        later = t0 + LIMITS.envelope_ttl_s + 1
        stop = asyncio.Event()
        dep_lat: list[float] = []

        async def depositor() -> None:
            j = 0
            while not stop.is_set():
                sid = recs[j % 100].sid
                dep_lat.append(
                    await timed(
                        lambda sid=sid, j=j: store.deposit(sid, ident(b"d", j), 0, CT, None, later)
                    )
                )
                j += 1
                await asyncio.sleep(1 / args.rate)

        c, s = self_cpu(), b.server_cpu()
        task = asyncio.create_task(depositor())
        t = time.perf_counter()
        swept = await store.purge_expired(later)
        sweep_s = time.perf_counter() - t
        stop.set()
        await task
        out["work_sweep"] = {
            "deleted": swept,
            "wall_s": sweep_s,
            "cpu_s": self_cpu() - c,
            "server_cpu_s": b.server_cpu() - s,
            "deposits_meanwhile": len(dep_lat),
            "deposit_latency": ms(dep_lat),
        }
        print(f"[{b.name}] sweep with work: {out['work_sweep']}", flush=True)
        out["footprint_after_sweep"] = b.footprint()
        print(f"[{b.name}] footprint populated {foot}", flush=True)
        print(f"[{b.name}] footprint after sweep {out['footprint_after_sweep']}", flush=True)
        out["gauges_after_sweep"] = str(await store.gauges())

    # Startup: reopen and deposit once.
    t = time.perf_counter()
    async with opened(b) as store:
        await store.deposit(recs[0].sid, ident(b"s", 0), 0, CT, None, later)
        out["startup_s"] = time.perf_counter() - t
    print(f"[{b.name}] startup (open + first deposit) {out['startup_s']:.3f} s", flush=True)
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "redis", "both"], default="both")
    parser.add_argument("--mailboxes", type=int, default=100_000)
    parser.add_argument("--envelopes", type=int, default=200_000)
    parser.add_argument("--inflight", type=int, default=512, help="populate concurrency")
    parser.add_argument("--ops", type=int, default=1000, help="sequential ops per latency figure")
    parser.add_argument("--rate", type=float, default=200.0, help="deposits/s during the sweep")
    parser.add_argument("--tmpdir", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    results = []
    for name in ["sqlite", "redis"] if args.backend == "both" else [args.backend]:
        with tempfile.TemporaryDirectory(dir=args.tmpdir) as tmp, backend_for(name, Path(tmp)) as b:
            results.append(await bench(b, args))
    if args.json:
        text = json.dumps(results, indent=2, default=str)
        await asyncio.to_thread(Path(args.json).write_text, text)


if __name__ == "__main__":
    asyncio.run(main())
