"""Cost of relay franking tags and report verification (protocol.md §4.11).

Usage: ``python bench/bench_franking.py [--quick] [--backends sqlite redis]``.

(a) Tag per deposit:
    1. in isolation: building the context and the HMAC-SHA256 tag (what the relay adds to
       every deposit that carries ``fc``), and the keyring's cached current-key lookup;
    2. end to end in the stores: CPU per durable deposit of a 1 KiB envelope with ``fc`` to
       pairwise mailboxes, without a stamp (revision 3) and with one (stamp computed and
       stored with the envelope: 32 + 57 more bytes). Runs alternate, each after a warm-up, and
       the medians are printed; the difference is the tag's cost. SQLite: this process.
       Redis: this process plus redis-server (its own, durable, on a free port).
(b) Report verification: the checks alone (context, key window, tag, commitment) for a
    1 KiB and a 64 KiB message with two attachments, and a whole verified report filed in the
    SQLite store (verification, duplicate and allowance checks, insert, audit entry).

Starts its own redis-server in a temp dir; never touches a shared Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis
from bench_consent import per_call_us, proc_cpu, redis_server

from clientlib.wire import OwnerCommand, capability_hash, encode_map
from relay.config import RelayConfig
from relay.franking import (
    FrankingKeyring,
    build_context,
    commitment,
    parse_context,
    relay_tag,
    report_id,
)
from relay.moderation import ModerationService
from relay.storage.base import (
    EnvelopeStore,
    FrankingKey,
    MailboxRecord,
    RelayStamp,
    StoreLimits,
)
from relay.storage.redis import RedisStore
from relay.storage.sqlite import SQLiteStore

LIMITS = StoreLimits(max_envelopes=1_000_000, max_bytes=1 << 40)
CT = os.urandom(1024)
KEY = FrankingKey(kid=1, secret=os.urandom(32), created=int(time.time()))


# --- (a) tags -------------------------------------------------------------------------------


def tag_isolated(n: int) -> float:
    fc, sid, h = os.urandom(32), os.urandom(16), os.urandom(32)

    def stamp() -> None:
        ctx = build_context(KEY.kid, 20_000, sid, 1, h)
        relay_tag(KEY.secret, fc, ctx)

    return per_call_us(stamp, n)


async def keyring_isolated(tmp: Path, n: int) -> float:
    store = SQLiteStore(tmp / "keys.db", LIMITS)
    await store.open()
    ring = FrankingKeyring(store, LIMITS)
    now = int(time.time())
    await ring.current(now)
    t0 = time.perf_counter()
    for _ in range(n):
        await ring.current(now)
    elapsed = time.perf_counter() - t0
    await store.aclose()
    return elapsed / n * 1e6


async def deposit_run(
    store: EnvelopeStore, stamped: bool, n: int, concurrency: int, ext: int | None
) -> float:
    """CPU per deposit (us) for ``n`` deposits with ``fc`` to 64 fresh pairwise mailboxes."""
    now = int(time.time())
    boxes: list[tuple[bytes, bytes]] = []
    for _ in range(64):
        rec = MailboxRecord(os.urandom(16), os.urandom(16), os.urandom(32), now // 86400, "pair")
        await store.create_mailbox(rec, now)
        cap = os.urandom(32)
        await store.set_caps(rec.rid, [capability_hash(rec.sid, cap)], [], 64, now)
        boxes.append((rec.sid, cap))
    counter = iter(range(n))
    fc = os.urandom(32)

    async def worker(counter: Iterator[int] = counter) -> None:
        for i in counter:
            sid, cap = boxes[i % len(boxes)]
            cap_hash = capability_hash(sid, cap)
            stamp = None
            if stamped:  # what MailboxService._stamp adds: one context, one HMAC
                ctx = build_context(KEY.kid, now // 86400, sid, 1, cap_hash)
                stamp = RelayStamp(relay_tag(KEY.secret, fc, ctx), ctx, "pair")
            await store.deposit(sid, os.urandom(16), 0, CT, fc, now, cap_hash=cap_hash, stamp=stamp)

    warm = iter(range(n // 10))
    await asyncio.gather(*(worker(warm) for _ in range(concurrency)))
    cpu0, ext0 = time.process_time(), proc_cpu(ext) if ext else 0.0
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu = time.process_time() - cpu0 + ((proc_cpu(ext) - ext0) if ext else 0.0)
    return cpu / n * 1e6


async def compare(
    make: object, label: str, n: int, rounds: int, concurrency: int, ext: int | None
) -> None:
    results: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(rounds):
        for stamped in (False, True):
            store: EnvelopeStore = await make()  # type: ignore[operator]
            results[stamped].append(await deposit_run(store, stamped, n, concurrency, ext))
            await store.aclose()
    plain, tagged = statistics.median(results[False]), statistics.median(results[True])
    print(
        f"  {label:7} CPU per durable deposit with fc (median of {rounds}): untagged"
        f" {plain:6.1f} us, tagged {tagged:6.1f} us, difference {tagged - plain:+6.1f} us"
        f" ({(tagged / plain - 1) * 100:+.1f} %)"
    )
    print(
        "          runs untagged: "
        + ", ".join(f"{v:.0f}" for v in results[False])
        + " | tagged: "
        + ", ".join(f"{v:.0f}" for v in results[True])
    )


# --- (b) reports ----------------------------------------------------------------------------


def report_fields(size: int) -> dict[str, object]:
    sid = os.urandom(16)
    snd, rcp, fk = os.urandom(32), os.urandom(32), os.urandom(32)
    msg = encode_map({"t": "msg", "id": os.urandom(16), "ts": 1, "text": "x" * size}, 1)
    atts = (os.urandom(500), os.urandom(500))
    fc = commitment(fk, snd, rcp, msg, atts)
    ctx = build_context(KEY.kid, 20_000, sid, 1, os.urandom(32))
    ft = relay_tag(KEY.secret, fc, ctx)
    return {
        "sid": sid,
        "msg": msg,
        "fk": fk,
        "fc": fc,
        "ft": ft,
        "fx": ctx,
        "snd": snd,
        "rcp": rcp,
        "atts": atts,
    }


def verify_isolated(size: int, n: int) -> float:
    import hmac

    f = report_fields(size)

    def verify() -> None:
        ctx = parse_context(f["fx"])  # type: ignore[arg-type]
        assert ctx is not None and hmac.compare_digest(ctx.sid, f["sid"])  # type: ignore[arg-type]
        tag = relay_tag(KEY.secret, f["fc"], f["fx"])  # type: ignore[arg-type]
        assert hmac.compare_digest(tag, f["ft"])  # type: ignore[arg-type]
        fc = commitment(f["fk"], f["snd"], f["rcp"], f["msg"], f["atts"])  # type: ignore[arg-type]
        assert hmac.compare_digest(fc, f["fc"])  # type: ignore[arg-type]
        report_id(tag)

    return per_call_us(verify, n)


async def file_reports(tmp: Path, n: int) -> float:
    """CPU per verified report filed in the SQLite store (one mailbox per report)."""
    config = RelayConfig(reports_per_day=100_000, data_dir=str(tmp))
    store = SQLiteStore(tmp / "reports.db", config.store_limits())
    await store.open()
    await store.add_franking_key(KEY)
    mod = ModerationService(store, config)
    jobs = []
    for _ in range(n):
        f = report_fields(1024)
        cmd = OwnerCommand(
            op="report",
            nonce=os.urandom(32),
            rid=os.urandom(16),
            msg=f["msg"],  # type: ignore[arg-type]
            fk=f["fk"],  # type: ignore[arg-type]
            fc=f["fc"],  # type: ignore[arg-type]
            ft=f["ft"],  # type: ignore[arg-type]
            fx=f["fx"],  # type: ignore[arg-type]
            snd=f["snd"],  # type: ignore[arg-type]
            rcp=f["rcp"],  # type: ignore[arg-type]
            atts=f["atts"],  # type: ignore[arg-type]
            why="spam",
        )
        jobs.append((cmd, MailboxRecord(cmd.rid or b"", f["sid"], b"o" * 32, 0, "pair")))  # type: ignore[arg-type]
    cpu0 = time.process_time()
    ids = await asyncio.gather(*(mod.file_report(cmd, rec) for cmd, rec in jobs))
    cpu = time.process_time() - cpu0
    assert len(set(ids)) == n
    await store.aclose()
    return cpu / n * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--backends", nargs="+", default=["sqlite", "redis"])
    parser.add_argument("--deposits", type=int, default=10_000, help="per run")
    parser.add_argument("--rounds", type=int, default=5, help="alternating runs per variant")
    parser.add_argument("--concurrency", type=int, default=128)
    args = parser.parse_args()
    n, rounds = (1_000, 1) if args.quick else (args.deposits, args.rounds)

    print("(a) relay franking tag per deposit")
    print(f"  context + HMAC-SHA256 tag: {tag_isolated(200_000):.2f} us")
    with tempfile.TemporaryDirectory() as tmp:
        print(
            f"  current key (cached keyring): {await keyring_isolated(Path(tmp), 100_000):.2f} us"
        )
    for backend in args.backends:
        with tempfile.TemporaryDirectory() as tmp:
            if backend == "sqlite":
                files = iter(range(1_000_000))

                async def make_sqlite(
                    tmp: str = tmp, files: Iterator[int] = files
                ) -> EnvelopeStore:
                    store = SQLiteStore(Path(tmp) / f"dep-{next(files)}.db", LIMITS)
                    await store.open()
                    return store

                await compare(make_sqlite, "sqlite", n, rounds, args.concurrency, None)
            else:
                with redis_server(tmp) as (url, pid):

                    async def make_redis() -> EnvelopeStore:
                        with redis.Redis.from_url(url) as client:
                            client.flushall()
                        store = RedisStore(url, LIMITS)
                        await store.open()
                        return store

                    await compare(make_redis, "redis", n, rounds, args.concurrency, pid)

    print("(b) report verification")
    for size in (1024, 64_000):
        us = verify_isolated(size, 2_000 if args.quick else 20_000)
        print(f"  checks alone, {size:>6,} B message + 2 x 500 B attachments: {us:8.2f} us")
    with tempfile.TemporaryDirectory() as tmp:
        cpu = await file_reports(Path(tmp), 200 if args.quick else 2_000)
    print(f"  a verified report filed in the SQLite store (1 KiB message): {cpu:.1f} us CPU")


if __name__ == "__main__":
    asyncio.run(main())
