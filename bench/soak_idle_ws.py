"""Soak: many authenticated idle WebSockets held for a long time, plus slowloris clients
(issue 19, item 14).

Starts its own relay (``python -m relay serve``, SQLite in a temp dir; ``--storage redis``
starts its own ``redis-server`` on a free port) and in this process opens ``--connections``
WebSockets (default 10,000), each subscribed to a mailbox of its own (created over HTTP,
subscribed with a signed ``sub``), then holds them for ``--duration`` seconds (default 600).
Meanwhile it

- samples the relay's RSS (``/proc/<pid>/status``) every ``--sample-s`` seconds and prints
  the drift between the end of the warm-up (``--warmup-s``) and the end;
- answers the relay's pings by hand (autoping off) and counts them: every connection must
  have been pinged and must still be open at the end (the relay closes sockets that do not
  answer pongs within ``heartbeat_s / 2``);
- every sample, deposits to one held mailbox over HTTP and times the push arriving on its
  socket (a normal client is not starved);
- keeps ``--slowloris`` clients of each kind busy: request heads trickled a line per second,
  bodies trickled a byte per second, WebSocket frames trickled a byte per second, each
  restarted when the relay cuts it; it records how long each lasted (the documented
  timeouts: ``header_read_timeout_s``, ``body_read_timeout_s``, default 10 s).

Run: ``python bench/soak_idle_ws.py`` (10,000 connections, 10 minutes);
``python bench/soak_idle_ws.py --connections 500 --duration 60 --warmup-s 20`` for a short run.
The open-files limit is raised in-process (``resource``) up to the hard limit; the relay
inherits it. Prints one JSON object with the figures at the end (``--json FILE`` writes it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import nacl.signing

from clientlib.wire import (
    OWNER_COMMAND_CONTEXT,
    ChallengeIssued,
    Deposit,
    EnvelopeDelivered,
    MailboxCreated,
    OwnerCommand,
    RequestChallenge,
    SignedOwnerCommand,
    decode_relay_frame,
)

ROOT = Path(__file__).resolve().parents[1]
CT = "application/x-blindrelay"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_nofile(need: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = need if hard == resource.RLIM_INFINITY else min(hard, max(soft, need))
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Relay:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("BLINDRELAY_")}
        env.update(
            BLINDRELAY_LOG_LEVEL="warning",
            BLINDRELAY_LOG_FORMAT="json",
            BLINDRELAY_HEARTBEAT_S=str(args.heartbeat_s),
            BLINDRELAY_MAX_CONNECTIONS=str(args.connections + 4 * args.slowloris + 100),
            BLINDRELAY_STORAGE=args.storage,
        )
        self.redis: subprocess.Popen[bytes] | None = None
        if args.storage == "redis":
            rport = free_port()
            rdir = tmp / "redis"
            rdir.mkdir()
            self.redis = subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(rport),
                    "--dir",
                    str(rdir),
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "always",
                    "--save",
                    "",
                ],
                stdout=subprocess.DEVNULL,
            )
            time.sleep(0.5)
            env["BLINDRELAY_REDIS_URL"] = f"redis://127.0.0.1:{rport}/0"
        self.log = (tmp / "relay.log").open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "relay",
                "serve",
                "--port",
                str(self.port),
                "--data-dir",
                str(tmp / "data"),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 1),
            ):
                return
            time.sleep(0.1)
        raise RuntimeError("relay did not start")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        if self.redis is not None:
            self.redis.terminate()
            self.redis.wait(10)
        self.log.close()


class Held:
    """One authenticated idle connection: a mailbox of its own, subscribed."""

    def __init__(self) -> None:
        self.sk = nacl.signing.SigningKey.generate()
        self.rid = b""
        self.sid = b""
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.pings = 0
        self.pushes: asyncio.Queue[EnvelopeDelivered] = asyncio.Queue()
        self.closed_early = False

    def signed(self, request_id: int, **fields: Any) -> bytes:
        cmd = OwnerCommand(**fields).encode()
        sig = self.sk.sign(OWNER_COMMAND_CONTEXT + cmd).signature
        return SignedOwnerCommand(id=request_id, cmd=cmd, sig=sig).encode()


async def post(session: aiohttp.ClientSession, url: str, path: str, body: bytes) -> Any:
    async with session.post(url + path, data=body, headers={"Content-Type": CT}) as resp:
        _, frame = decode_relay_frame(await resp.read())
        return frame


async def open_held(session: aiohttp.ClientSession, url: str, held: Held) -> None:
    chal = await post(session, url, "/v1/challenge", RequestChallenge(id=1, op="create").encode())
    assert isinstance(chal, ChallengeIssued)
    pk = bytes(held.sk.verify_key)
    created = await post(
        session, url, "/v1/owner", held.signed(2, op="create", nonce=chal.nonce, key=pk)
    )
    assert isinstance(created, MailboxCreated), created
    held.rid, held.sid = created.rid, created.sid
    ws = await session.ws_connect(url + "/v1/ws", autoping=False, max_msg_size=1 << 20)
    held.ws = ws
    await ws.receive()  # hello
    await ws.send_bytes(RequestChallenge(id=3, op="sub", rid=held.rid).encode())
    _, chal = decode_relay_frame((await ws.receive()).data)
    assert isinstance(chal, ChallengeIssued)
    await ws.send_bytes(held.signed(4, op="sub", nonce=chal.nonce, rid=held.rid))
    while True:  # ok, then drained
        _, frame = decode_relay_frame((await ws.receive()).data)
        if type(frame).__name__ == "Drained":
            return


async def read_held(held: Held) -> None:
    ws = held.ws
    assert ws is not None
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.PING:
            held.pings += 1
            await ws.pong(msg.data)
        elif msg.type == aiohttp.WSMsgType.BINARY:
            _, frame = decode_relay_frame(msg.data)
            if isinstance(frame, EnvelopeDelivered):
                held.pushes.put_nowait(frame)
                from clientlib.wire import Ack

                await ws.send_bytes(Ack(id=9, rid=held.rid, seqs=(frame.env.seq,)).encode())
    held.closed_early = True


# --- slowloris -------------------------------------------------------------------------------


async def feed(writer: asyncio.StreamWriter, chunks: Iterator[bytes], every: float) -> None:
    for chunk in chunks:
        writer.write(chunk)
        await writer.drain()
        await asyncio.sleep(every)


async def slow_client(
    kind: str, port: int, every: float, lasted: list[float], stop: asyncio.Event
) -> None:
    """One slow client of ``kind``, restarted each time the relay cuts it."""
    while not stop.is_set():
        started = time.monotonic()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(1)
            continue
        try:
            if kind == "head":
                chunks = itertools.chain(
                    [b"POST /v1/deposit HTTP/1.1\r\n"], itertools.repeat(b"X-S: 1\r\n")
                )
            elif kind == "body":
                writer.write(
                    b"POST /v1/deposit HTTP/1.1\r\nHost: r\r\nContent-Length: 5000\r\n\r\n"
                )
                chunks = itertools.repeat(b"\x01")
            else:
                writer.write(
                    b"GET /v1/ws HTTP/1.1\r\nHost: r\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    b"Sec-WebSocket-Version: 13\r\n\r\n"
                )
                # A masked binary frame announcing 1,000 bytes, then the mask, then bytes.
                chunks = itertools.chain(
                    [b"\x82\xfe\x03\xe8", b"\x00\x00\x00\x00"], itertools.repeat(b"\x00")
                )

            feeder = asyncio.create_task(feed(writer, chunks, every))
            try:
                with contextlib.suppress(ConnectionError):
                    while await reader.read(65536):  # until the relay hangs up
                        pass
            finally:
                feeder.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await feeder
            if not stop.is_set():
                lasted.append(time.monotonic() - started)
        finally:
            writer.close()


# --- the run ---------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    relay = Relay(args, tmp)
    result: dict[str, Any] = {"connections": args.connections, "duration_s": args.duration}
    stop = asyncio.Event()
    try:
        conn = aiohttp.TCPConnector(limit=0, force_close=False)
        async with aiohttp.ClientSession(connector=conn) as session:
            base_rss = rss_kib(relay.proc.pid)
            helds = [Held() for _ in range(args.connections)]
            t0 = time.monotonic()
            sem = asyncio.Semaphore(64)

            async def open_one(h: Held) -> None:
                async with sem:
                    await open_held(session, relay.url, h)

            await asyncio.gather(*(open_one(h) for h in helds))
            result["setup_s"] = round(time.monotonic() - t0, 1)
            readers = [asyncio.create_task(read_held(h)) for h in helds]
            slow: dict[str, list[float]] = {"head": [], "body": [], "ws_frame": []}
            slow_tasks = [
                asyncio.create_task(slow_client(kind, relay.port, 1.0, slow[kind], stop))
                for kind in slow
                for _ in range(args.slowloris)
            ]
            started = time.monotonic()
            samples: list[tuple[float, int]] = []
            push_ms: list[float] = []
            cpu0 = cpu_s(relay.proc.pid)
            probe = itertools.cycle(helds)
            eid = itertools.count()
            while (elapsed := time.monotonic() - started) < args.duration:
                samples.append((round(elapsed, 1), rss_kib(relay.proc.pid)))
                target = next(probe)
                t = time.monotonic()
                await post(
                    session,
                    relay.url,
                    "/v1/deposit",
                    Deposit(
                        id=next(eid),
                        sid=target.sid,
                        eid=os.urandom(16),
                        flags=0,
                        ct=os.urandom(256),
                    ).encode(),
                )
                await asyncio.wait_for(target.pushes.get(), 10)
                push_ms.append((time.monotonic() - t) * 1000)
                if args.verbose:
                    print(f"{elapsed:7.1f}s rss {samples[-1][1] / 1024:8.1f} MiB", flush=True)
                await asyncio.sleep(args.sample_s)
            cpu = cpu_s(relay.proc.pid) - cpu0
            stop.set()
            for task in slow_tasks:
                task.cancel()
            await asyncio.gather(*slow_tasks, return_exceptions=True)
            after = [rss for t, rss in samples if t >= args.warmup_s]
            warm, end = after[0], after[-1]
            result.update(
                rss_before_connections_mib=round(base_rss / 1024, 1),
                rss_after_warmup_mib=round(warm / 1024, 1),
                rss_end_mib=round(end / 1024, 1),
                rss_max_after_warmup_mib=round(max(after) / 1024, 1),
                drift_after_warmup_pct=round(100 * (end - warm) / warm, 2),
                kib_per_connection=round((warm - base_rss) / args.connections, 1),
                relay_cpu_s_per_min=round(60 * cpu / args.duration, 2),
                still_open=sum(1 for h in helds if not h.closed_early),
                pinged=sum(1 for h in helds if h.pings > 0),
                pings_answered=sum(h.pings for h in helds),
                push_ms_median=round(statistics.median(push_ms), 2),
                push_ms_max=round(max(push_ms), 2),
                probes=len(push_ms),
                samples=len(samples),
            )
            for kind, lasted in slow.items():
                result[f"slowloris_{kind}_cut"] = len(lasted)
                if lasted:
                    result[f"slowloris_{kind}_lasted_s_median"] = round(
                        statistics.median(lasted), 1
                    )
                    result[f"slowloris_{kind}_lasted_s_max"] = round(max(lasted), 1)
            for h in helds:
                if h.ws is not None:
                    await h.ws.close()
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
    finally:
        stop.set()
        relay.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=600, help="seconds to hold them")
    parser.add_argument("--warmup-s", type=float, default=60, help="drift is measured after this")
    parser.add_argument("--sample-s", type=float, default=5)
    parser.add_argument("--heartbeat-s", type=float, default=30, help="the relay's heartbeat_s")
    parser.add_argument("--slowloris", type=int, default=20, help="slow clients of each kind")
    parser.add_argument("--storage", choices=("sqlite", "redis"), default="sqlite")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    limit = raise_nofile(args.connections + 4 * args.slowloris + 1000)
    if limit < args.connections + 4 * args.slowloris + 200:
        sys.exit(f"open-files limit {limit} is too low for {args.connections} connections")
    result = asyncio.run(run(args))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    ok = result["still_open"] == args.connections and result["pinged"] == args.connections
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
