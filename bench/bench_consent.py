"""Cost of the consent checks (protocol.md §4.8-§4.9): send capabilities and proof of work.

Usage: ``python bench/bench_consent.py [--quick] [--backends sqlite redis]``.

(a) Capability check:
    1. in isolation: the relay-side SHA-256 (``capability_hash``) per deposit, and the SQLite
       statement every deposit starts with, without and with the capability lookup riding
       along, among many registered hashes;
    2. end to end in the stores: CPU per durable deposit of a 1 KiB envelope to open
       mailboxes (no check) and to pairwise mailboxes with a registered capability (hash +
       check), 64 capabilities registered per mailbox, many depositors in flight. Runs
       alternate (open, pair, open, pair, ...), each after a warm-up of a tenth of its
       deposits, and the medians are printed; the difference is the check's cost. SQLite:
       this process (event loop + writer thread). Redis: this process plus redis-server
       (from /proc), on its own durable redis-server on a free port.
(b) Proof of work: the relay's cost per verification (one SHA-256 and the bit count, plus
    consuming the nonce in the SQLite store), and the client's solve time at 8/12/16/20 bits.

Starts its own redis-server in a temp dir (``appendfsync always``); never touches a shared
Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import tempfile
import time
import timeit
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from clientlib.wire import capability_hash, leading_zero_bits, pow_digest, solve
from relay.storage.base import EnvelopeStore, MailboxRecord, StoreLimits
from relay.storage.redis import RedisStore
from relay.storage.sqlite import SCHEMA_VERSION, SQLiteStore
from relay.storage.sqlite.envelopes import _SELECT_FOR_DEPOSIT, _SELECT_FOR_DEPOSIT_CAP
from relay.storage.sqlite.schema import MIGRATIONS as _MIGRATIONS

LIMITS = StoreLimits(max_envelopes=1_000_000, max_bytes=1 << 40)
CLK = os.sysconf("SC_CLK_TCK")
CT = os.urandom(1024)


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def per_call_us(stmt: object, number: int) -> float:
    """Best of 5 runs of ``number`` calls, in microseconds per call."""
    runs = timeit.repeat(stmt, number=number, repeat=5)  # type: ignore[arg-type]
    return min(runs) / number * 1e6


# --- (a) capability check -------------------------------------------------------------------


def cap_hash_isolated(n: int) -> float:
    sid, cap = os.urandom(16), os.urandom(32)
    return per_call_us(lambda: capability_hash(sid, cap), n)


def sqlite_lookup_isolated(tmp: Path, mailboxes: int, n: int) -> tuple[float, float]:
    """The statement a deposit starts with (the mailbox row by send id), without and with the
    capability check riding along (``EXISTS`` on the ``caps`` primary key), on a database of
    ``mailboxes`` pairwise mailboxes with 64 capability hashes each; random probes."""
    conn = sqlite3.connect(tmp / "lookup.db")
    for v in range(1, SCHEMA_VERSION + 1):
        conn.executescript(_MIGRATIONS[v])
    sids = [os.urandom(16) for _ in range(mailboxes)]
    conn.executemany(
        "INSERT INTO mailboxes (rid, sid, owner_key, created_day, active_day, kind)"
        " VALUES (?, ?, ?, 0, 0, 1)",
        [(os.urandom(16), sid, os.urandom(32)) for sid in sids],
    )
    rows = [(m, os.urandom(32)) for m in range(1, mailboxes + 1) for _ in range(64)]
    conn.executemany("INSERT INTO caps (mbox, h) VALUES (?, ?)", rows)
    conn.commit()
    picks = [i * 997 % mailboxes for i in range(1000)]
    probes = [(rows[m * 64 + 17][1], sids[m]) for m in picks] * (n // 1000 + 6)
    plain, with_cap = iter(probes), iter(probes)

    def without() -> None:
        conn.execute(_SELECT_FOR_DEPOSIT, (next(plain)[1],)).fetchone()

    def checked() -> None:
        row = conn.execute(_SELECT_FOR_DEPOSIT_CAP, next(with_cap)).fetchone()
        assert row[7] == 1

    result = per_call_us(without, n // 5), per_call_us(checked, n // 5)
    conn.close()
    return result


async def deposit_run(
    store: EnvelopeStore, kind: str, n: int, concurrency: int, mailboxes: int, ext: int | None
) -> float:
    """CPU per deposit (us) for ``n`` deposits to fresh mailboxes of ``kind``."""
    now = int(time.time())
    boxes: list[tuple[bytes, bytes | None]] = []
    for _ in range(mailboxes):
        rec = MailboxRecord(os.urandom(16), os.urandom(16), os.urandom(32), now // 86400, kind=kind)
        await store.create_mailbox(rec, now)
        cap: bytes | None = None
        if kind == "pair":
            caps = [os.urandom(32) for _ in range(64)]
            await store.set_caps(rec.rid, [capability_hash(rec.sid, c) for c in caps], [], 64, now)
            cap = caps[17]
        boxes.append((rec.sid, cap))
    counter = iter(range(n))

    async def worker(counter: Iterator[int] = counter) -> None:
        for i in counter:
            sid, cap = boxes[i % mailboxes]
            # The relay hashes the presented capability on every deposit (service.deposit).
            cap_hash = capability_hash(sid, cap) if cap is not None else None
            await store.deposit(sid, os.urandom(16), 0, CT, None, now, cap_hash=cap_hash)

    warm = iter(range(n // 10))  # warm-up: caches, and the setup's writes checkpointed
    await asyncio.gather(*(worker(warm) for _ in range(concurrency)))
    cpu0, ext0 = time.process_time(), proc_cpu(ext) if ext else 0.0
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu = time.process_time() - cpu0 + ((proc_cpu(ext) - ext0) if ext else 0.0)
    return cpu / n * 1e6


async def compare(
    make: object, label: str, n: int, rounds: int, concurrency: int, ext: int | None
) -> None:
    results: dict[str, list[float]] = {"open": [], "pair": []}
    for _ in range(rounds):
        for kind in ("open", "pair"):
            store: EnvelopeStore = await make()  # type: ignore[operator]
            results[kind].append(await deposit_run(store, kind, n, concurrency, 64, ext))
            await store.aclose()
    o, p = statistics.median(results["open"]), statistics.median(results["pair"])
    print(
        f"  {label:7} CPU per durable deposit (median of {rounds}): open {o:6.1f} us,"
        f" pair + capability {p:6.1f} us, difference {p - o:+6.1f} us ({(p / o - 1) * 100:+.1f} %)"
    )
    print(
        "          runs open: "
        + ", ".join(f"{v:.0f}" for v in results["open"])
        + " | pair: "
        + ", ".join(f"{v:.0f}" for v in results["pair"])
    )


@contextmanager
def redis_server(tmp: str) -> Iterator[tuple[str, int]]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server not found")
    with socket.socket() as sock:  # a free port: never talk to someone else's server
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            tmp,
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--logfile",
            f"{tmp}/redis.log",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        for _ in range(250):
            if proc.poll() is not None:
                raise RuntimeError("redis-server did not start")
            try:
                with redis.Redis.from_url(url) as client:
                    client.ping()
                break
            except redis.exceptions.ConnectionError:
                time.sleep(0.02)
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait()


# --- (b) proof of work ----------------------------------------------------------------------


def pow_verify_isolated(n: int) -> float:
    sid, nonce, eid = os.urandom(16), os.urandom(16), os.urandom(16)
    return per_call_us(lambda: leading_zero_bits(pow_digest(sid, nonce, eid, 123_456)) >= 12, n)


async def pow_nonce_sqlite(tmp: Path, n: int) -> float:
    """CPU per issued-and-consumed nonce in the SQLite store (put_challenge + take_challenge,
    each its own write transaction; many requests in flight share commits)."""
    store = SQLiteStore(tmp / "nonces.db", LIMITS)
    await store.open()
    now = int(time.time())
    nonces = [os.urandom(16) for _ in range(n)]
    binding = b"pow\x00" + os.urandom(16)
    cpu0 = time.process_time()
    await asyncio.gather(*(store.put_challenge(x, binding, now + 300) for x in nonces))
    taken = await asyncio.gather(*(store.take_challenge(x, now) for x in nonces))
    cpu = time.process_time() - cpu0
    await store.aclose()
    assert all(t == binding for t in taken)
    return cpu / n * 1e6


def solve_times(bits: int, trials: int) -> tuple[float, float, float]:
    """Mean, median and max seconds to solve at ``bits`` over ``trials`` random challenges."""
    times = []
    for _ in range(trials):
        sid, nonce, eid = os.urandom(16), os.urandom(16), os.urandom(16)
        t0 = time.perf_counter()
        counter = solve(sid, nonce, eid, bits)
        times.append(time.perf_counter() - t0)
        assert leading_zero_bits(pow_digest(sid, nonce, eid, counter)) >= bits
    return statistics.mean(times), statistics.median(times), max(times)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--backends", nargs="+", default=["sqlite", "redis"])
    parser.add_argument("--deposits", type=int, default=10_000, help="per run")
    parser.add_argument("--rounds", type=int, default=5, help="alternating runs per kind")
    parser.add_argument("--concurrency", type=int, default=128)
    args = parser.parse_args()
    n, rounds = (1_000, 1) if args.quick else (args.deposits, args.rounds)
    trials = {8: 200, 12: 60, 16: 30, 20: 10} if not args.quick else {8: 20, 12: 5, 16: 2, 20: 1}

    print("(a) capability check")
    print(f"  relay-side hash (capability_hash, SHA-256): {cap_hash_isolated(200_000):.2f} us")
    with tempfile.TemporaryDirectory() as tmp:
        mailboxes = 2_000 if args.quick else 20_000
        plain, checked = sqlite_lookup_isolated(Path(tmp), mailboxes, 100_000)
        print(
            f"  SQLite deposit statement, {mailboxes:,} mailboxes x 64 hashes: without the"
            f" check {plain:.2f} us, with it {checked:.2f} us ({checked - plain:+.2f} us)"
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

    print("(b) proof of work")
    print(f"  relay: hash check per verification: {pow_verify_isolated(200_000):.2f} us")
    with tempfile.TemporaryDirectory() as tmp:
        nonce_cpu = await pow_nonce_sqlite(Path(tmp), 2_000 if args.quick else 20_000)
    print(f"  relay: issue + consume one nonce, SQLite store: {nonce_cpu:.1f} us CPU")
    print("  client solve time (one core, hashlib):")
    for bits, count in trials.items():
        mean, median, worst = solve_times(bits, count)
        print(
            f"    {bits:2} bits ({2**bits:>9,} hashes expected): mean {mean * 1e3:9.2f} ms,"
            f" median {median * 1e3:9.2f} ms, max {worst * 1e3:9.2f} ms  ({count} challenges)"
        )


if __name__ == "__main__":
    asyncio.run(main())
