"""Relay-side attachment blob throughput (protocol.md §5.9; issue 12): upload and download
of one blob on loopback, and relay CPU per MiB.

One relay process (SQLite, durable; blobs are files under ``<data_dir>/blobs`` on every
backend) on a free port, one open mailbox. Per run: ``POST /v1/blob`` for ``--size`` MiB,
one ``PUT`` streaming the bytes (from a 1 MiB random buffer, so the client holds no whole
file) until the relay answers ``boff`` with ``done`` = 1 (everything fsynced, renamed, the
directory fsynced), then one ``GET`` streamed to nowhere. Printed per direction: MiB/s
(wall clock), relay CPU per MiB (utime+stime of the relay from ``/proc``), and the relay's
RSS before and after (growth shows whether any layer buffers the file).

Run: ``python bench/bench_media.py`` (50 MiB, 3 runs; ``--quick``: 1 run).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import nacl.signing

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from liverelay import start_relay

from clientlib.transport import HTTPTransport
from clientlib.wire import BlobCreated, BlobOffset, CreateBlob, decode_relay_frame
from clientlib.wire.limits import OWNER_COMMAND_CONTEXT

TICK = os.sysconf("SC_CLK_TCK")
MIB = 1 << 20
CT = "application/x-blindrelay"


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def one_run(
    session: aiohttp.ClientSession, base: str, sid: bytes, size: int, pid: int
) -> dict[str, float]:
    body = CreateBlob(id=1, sid=sid, size=size).encode()
    async with session.post(base + "/v1/blob", data=body, headers={"Content-Type": CT}) as r:
        _, created = decode_relay_frame(await r.read())
    assert isinstance(created, BlobCreated), created
    block = os.urandom(MIB)

    async def stream() -> AsyncIterator[bytes]:
        sent = 0
        while sent < size:
            n = min(MIB, size - sent)
            yield block[:n]
            sent += n

    out: dict[str, float] = {"rss0": rss_mib(pid)}
    headers = {
        "Blindrelay-Token": created.ut.hex(),
        "Upload-Offset": "0",
        "Content-Type": "application/octet-stream",
        "Content-Length": str(size),
    }
    cpu0, t0, me0 = cpu_s(pid), time.perf_counter(), time.process_time()
    async with session.put(
        f"{base}/v1/blob/{created.blob.hex()}", data=stream(), headers=headers
    ) as r:
        _, state = decode_relay_frame(await r.read())
    up_s, up_cpu = time.perf_counter() - t0, cpu_s(pid) - cpu0
    up_me = time.process_time() - me0
    assert state == BlobOffset(off=size, done=1), state
    out["rss_up"] = rss_mib(pid)
    cpu0, t0, me0 = cpu_s(pid), time.perf_counter(), time.process_time()
    got = 0
    async with session.get(
        f"{base}/v1/blob/{created.blob.hex()}", headers={"Blindrelay-Token": created.rt.hex()}
    ) as r:
        assert r.status == 200
        async for chunk in r.content.iter_chunked(MIB):
            got += len(chunk)
    down_s, down_cpu = time.perf_counter() - t0, cpu_s(pid) - cpu0
    down_me = time.process_time() - me0
    assert got == size
    out["rss_down"] = rss_mib(pid)
    mib = size / MIB
    out |= {
        "up_mibs": mib / up_s,
        "up_cpu_ms_per_mib": up_cpu * 1000 / mib,
        "down_mibs": mib / down_s,
        "down_cpu_ms_per_mib": down_cpu * 1000 / mib,
        "up_client_ms_per_mib": up_me * 1000 / mib,
        "down_client_ms_per_mib": down_me * 1000 / mib,
    }
    return out


async def run(size_mib: int, runs: int, tmpdir: str | None) -> None:
    with tempfile.TemporaryDirectory(dir=tmpdir) as tmp:
        relay = start_relay(
            Path(tmp), "relay", BLINDRELAY_MAX_BLOB_BYTES=str(max(size_mib, 100) * MIB)
        )
        try:
            assert relay.proc is not None
            pid = relay.proc.pid
            async with aiohttp.ClientSession() as session:
                t = HTTPTransport(session, relay.url)
                sk = nacl.signing.SigningKey.generate()
                _, sid = await t.create_mailbox(
                    bytes(sk.verify_key),
                    lambda cmd: sk.sign(OWNER_COMMAND_CONTEXT + cmd).signature,
                    kind="open",
                )
                base = relay.url.rstrip("/")
                results = [
                    await one_run(session, base, sid, size_mib * MIB, pid) for _ in range(runs)
                ]
        finally:
            relay.stop()
    print(f"blob of {size_mib} MiB, {runs} run(s), SQLite relay on loopback (median)")
    for key, label in (
        ("up_mibs", "upload MiB/s"),
        ("up_cpu_ms_per_mib", "upload relay CPU ms/MiB"),
        ("down_mibs", "download MiB/s"),
        ("down_cpu_ms_per_mib", "download relay CPU ms/MiB"),
        ("up_client_ms_per_mib", "upload client CPU ms/MiB"),
        ("down_client_ms_per_mib", "download client CPU ms/MiB"),
    ):
        values = [r[key] for r in results]
        print(
            f"  {label:28} {statistics.median(values):8.1f}   (runs: "
            + ", ".join(f"{v:.1f}" for v in values)
            + ")"
        )
    first = results[0]
    print(
        f"  relay RSS MiB: before {first['rss0']:.1f}, after upload {first['rss_up']:.1f},"
        f" after download {first['rss_down']:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=50, help="blob size in MiB")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one run")
    parser.add_argument("--tmpdir", help="where the relay's data directory goes")
    args = parser.parse_args()
    asyncio.run(run(args.size, 1 if args.quick else args.runs, args.tmpdir))


if __name__ == "__main__":
    main()
