"""What the second hop costs (protocol.md §27.3): deposits of 1 KiB envelopes to a relay D,
directly and through a forwarding relay F, on loopback.

Two relay processes (SQLite, durable) on free ports, one open mailbox on D. For each mode,
``-n`` sequential deposits (each waits for its acknowledgement: once durably stored at D)
from one client session. Printed per mode: latency p50/p99 (wall clock, includes the
machine's load), relay CPU per deposit read from ``/proc`` (D alone for direct; F + D for two
hops) and client CPU per deposit (sealing, opening the answer, HTTP). CPU figures survive a
loaded machine; latencies do not.

Run: ``python bench/bench_twohop.py -n 500`` (``--quick``: 100).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import nacl.signing

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from liverelay import start_relay

from clientlib.client._route import RoutedTransport
from clientlib.transport import HTTPTransport
from clientlib.wire.limits import OWNER_COMMAND_CONTEXT

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


async def run(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "BLINDRELAY_FORWARD_ALLOW_PRIVATE": "true",
            # One client sends every deposit on one connection: lift the per-connection quota.
            "BLINDRELAY_FORWARD_PER_CONNECTION_MINUTE": "100000",
        }
        f = start_relay(Path(tmp), "f", **env)
        d = start_relay(Path(tmp), "d", **env)
        try:
            async with aiohttp.ClientSession() as session:
                direct = HTTPTransport(session, d.url)
                sk = nacl.signing.SigningKey.generate()
                _, sid = await direct.create_mailbox(
                    bytes(sk.verify_key),
                    lambda cmd: sk.sign(OWNER_COMMAND_CONTEXT + cmd).signature,
                    kind="open",
                )
                routed = RoutedTransport(
                    HTTPTransport(session, f.url),
                    direct,
                    d.url.rstrip("/"),
                    pin=lambda: None,
                    save_pin=lambda ri: None,
                    rng=os.urandom,
                )
                ct = os.urandom(1024)
                results = {}
                for name, t in (("direct", direct), ("two-hop", routed)):
                    for _ in range(20):  # warm up (keys fetched, connections open)
                        await t.deposit(sid, ct, eid=os.urandom(16))
                    pids = [d.proc.pid] + ([f.proc.pid] if name == "two-hop" else [])  # type: ignore[union-attr]
                    relay0 = sum(cpu_s(p) for p in pids)
                    client0 = time.process_time()
                    lat = []
                    for _ in range(n):
                        t0 = time.perf_counter()
                        await t.deposit(sid, ct, eid=os.urandom(16))
                        lat.append(time.perf_counter() - t0)
                    client = (time.process_time() - client0) / n
                    relay = (sum(cpu_s(p) for p in pids) - relay0) / n
                    lat.sort()
                    results[name] = (
                        statistics.median(lat),
                        lat[int(len(lat) * 0.99) - 1],
                        relay,
                        client,
                    )
        finally:
            f.stop()
            d.stop()
    print(f"{n} sequential 1 KiB deposits each, loopback, SQLite durable (machine shared)")
    print(f"{'mode':8} {'p50 ms':>8} {'p99 ms':>8} {'relay CPU us':>13} {'client CPU us':>14}")
    for name, (p50, p99, relay, client) in results.items():
        print(
            f"{name:8} {p50 * 1e3:8.2f} {p99 * 1e3:8.2f} {relay * 1e6:13.0f} {client * 1e6:14.0f}"
        )
    (a50, _, ar, ac), (b50, _, br, bc) = results["direct"], results["two-hop"]
    print(
        f"second hop adds: {(b50 - a50) * 1e3:.2f} ms p50, {(br - ar) * 1e6:.0f} us relay CPU, "
        f"{(bc - ac) * 1e6:.0f} us client CPU per deposit"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=500)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    asyncio.run(run(100 if args.quick else args.n))


if __name__ == "__main__":
    main()
