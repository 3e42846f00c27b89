"""Deposit throughput of the storage backends: 1 KiB envelopes, many concurrent depositors.

Usage: ``python bench/bench_storage.py [--envelopes N] [--concurrency 64 256]``. Starts its own
durable redis-server (``appendfsync always``) in a temp dir; never touches a shared Redis.
Prints deposits/s and CPU per deposit (this process; redis-server from /proc).
"""

# ruff: noqa: ASYNC220, ASYNC240, ASYNC251  (a benchmark driver; blocking here is harmless)

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from relay.storage.base import EnvelopeStore, MailboxRecord, StoreLimits
from relay.storage.redis import RedisStore
from relay.storage.sqlite import SQLiteStore

LIMITS = StoreLimits(max_envelopes=1_000_000, max_bytes=1 << 40)
MAILBOXES = 256
CLK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


async def run(store: EnvelopeStore, n: int, concurrency: int, ext_pid: int | None) -> None:
    now = int(time.time())
    boxes = [
        MailboxRecord(os.urandom(16), os.urandom(16), os.urandom(32), now // 86400)
        for _ in range(MAILBOXES)
    ]
    for rec in boxes:
        await store.create_mailbox(rec, now)
    ct = os.urandom(1024)
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            await store.deposit(boxes[i % MAILBOXES].sid, os.urandom(16), 0, ct, None, now)

    cpu0, ext0, t0 = time.process_time(), proc_cpu(ext_pid) if ext_pid else 0.0, time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    ext = (proc_cpu(ext_pid) - ext0) if ext_pid else 0.0
    extra = f", redis {ext / n * 1e6:.0f} us" if ext_pid else ""
    print(
        f"  {store.backend:6} c={concurrency:3}: {n / wall:8.0f} deposits/s"
        f"  CPU/deposit: relay {cpu / n * 1e6:.0f} us{extra}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--envelopes", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--backends", nargs="+", default=["sqlite", "redis"])
    parser.add_argument(
        "--storage-timeout",
        type=float,
        default=None,
        help="SQLite: bound every wait as the relay does (storage_timeout_s; default: none)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = os.environ.get("BENCH_DIR", tmp)
        for c in args.concurrency if "sqlite" in args.backends else []:
            path = Path(tmp) / f"bench-{c}.db"
            store = SQLiteStore(path, LIMITS, wait_timeout_s=args.storage_timeout)
            await store.open()
            commits0 = store.commit_count
            await run(store, args.envelopes, c, None)
            commits = store.commit_count - commits0
            await store.aclose()
            size = sum(p.stat().st_size for p in Path(tmp).glob(f"bench-{c}.db*"))
            print(
                f"    {args.envelopes / commits:.0f} deposits per commit (fsync);"
                f" {size / args.envelopes:.0f} bytes on disk per envelope"
            )
        binary = shutil.which("redis-server")
        if "redis" not in args.backends:
            return
        if binary is None:
            print("redis-server not found; skipping Redis")
            return
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
        try:
            url = f"redis://127.0.0.1:{port}/0"
            for _ in range(200):
                if proc.poll() is not None:
                    raise RuntimeError("redis-server did not start")
                try:
                    with redis.Redis.from_url(url) as client:
                        client.ping()
                    break
                except redis.exceptions.ConnectionError:
                    time.sleep(0.02)
            for c in args.concurrency:
                with redis.Redis.from_url(url) as client:
                    client.flushall()
                rstore = RedisStore(url, LIMITS)
                await rstore.open()
                await run(rstore, args.envelopes, c, proc.pid)
                await rstore.aclose()
        finally:
            if proc.poll() is not None:
                print(Path(f"{tmp}/redis.log").read_text()[-1500:])
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    asyncio.run(main())
