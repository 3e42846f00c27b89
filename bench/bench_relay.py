"""Relay benchmarks: the server-side figures of DESIGN.md §6, on loopback.

Starts its own relay process (``python -m relay serve``) and, for the Redis backend, its own
``redis-server`` (on a free port, in a temporary directory, AOF with ``appendfsync always``),
drives them from this process with asyncio + aiohttp, and prints one table per backend:

1. sustained relayed envelopes/s: owners online (subscribed, acking in batches), senders
   depositing 1 KiB envelopes with many in flight per connection across many mailboxes;
   counted as envelopes pushed to owners per second over a fixed window;
2. server CPU per relayed envelope (deposit + push + ack): utime+stime of the relay process
   (and of redis-server) from ``/proc/<pid>/stat`` over the same window;
3. push latency p50/p99 (deposit sent -> push received, same process, send time carried in the
   envelope id) at the budget's 500 envelopes/s and at half the sustained rate;
4. relay memory per idle authenticated WebSocket connection (VmRSS before/after);
5. authenticated connection setups/s (connect + hello + chal + signed ``sub`` -> ok);
6. storing N envelopes for offline owners (durable deposits/s), draining them when the owners
   subscribe (envelopes/s pushed and acked), and the disk they take.

Every phase runs against a fresh relay (and a fresh redis-server) so that one phase's heap or
files do not flatter the next. Loops are bounded: every wait has a deadline.

The default sizes are the workload of DESIGN.md §6 (1,000 live recipients, 50 senders, 1 KiB
payloads; 2,000 idle connections; 100 offline mailboxes x 1,000 envelopes). With two or more
cores the relay and its storage process run on one core and this load generator on another
(``--pin``). Paced latency counts from each deposit's scheduled send time.

Run ``python bench/bench_relay.py --help``; ``--quick`` is a smoke run of a few seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import nacl.signing

from clientlib.wire import OWNER_COMMAND_CONTEXT, OwnerCommand

VERSION = 1
CLK_TCK = os.sysconf("SC_CLK_TCK")
CT_1K = os.urandom(1024)  # a valid bucket; the relay never looks inside
MAX_ID = 2**32 - 1
RELAY_MAX_INFLIGHT = 256  # relay default max_inflight_requests per connection
REPO = Path(__file__).resolve().parent.parent
REQUEST_TIMEOUT_S = 30.0
#: Cores the relay and its storage process run on (``--pin``); None: not pinned.
SERVER_CPUS: set[int] | None = None


def _pin_server() -> None:
    """``preexec_fn`` of server processes: run on :data:`SERVER_CPUS` (every thread)."""
    if SERVER_CPUS is not None:
        os.sched_setaffinity(0, SERVER_CPUS)


# --- figures and budgets (DESIGN.md §6) ---------------------------------------------------------


@dataclass(slots=True)
class Figure:
    name: str
    value: float | None
    unit: str
    budget: str
    ok: bool | None
    note: str = ""

    def cell(self) -> str:
        if self.value is None:
            return "n/a"
        v = self.value
        if abs(v) >= 100:
            text = f"{v:,.0f}"
        elif abs(v) >= 10:
            text = f"{v:.1f}"
        else:
            text = f"{v:.2f}"
        return f"{text} {self.unit}"


def at_most(v: float | None, limit: float) -> bool | None:
    return None if v is None else v <= limit


def at_least(v: float | None, limit: float) -> bool | None:
    return None if v is None else v >= limit


def under(v: float | None, limit: float) -> bool | None:
    return None if v is None else v < limit


# --- processes --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def proc_cpu_split(pid: int) -> tuple[float, float]:
    """(utime, stime) of a process (all its threads), in seconds, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        rest = fh.read().rsplit(")", 1)[1].split()
    return int(rest[11]) / CLK_TCK, int(rest[12]) / CLK_TCK


def proc_cpu_s(pid: int) -> float:
    return sum(proc_cpu_split(pid))


def thread_cpu_s(pid: int) -> dict[int, float]:
    """CPU seconds per thread id of a process (the main thread's id is the pid)."""
    out: dict[int, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/task/{tid}/stat", encoding="ascii") as fh:
                rest = fh.read().rsplit(")", 1)[1].split()
            out[int(tid)] = (int(rest[11]) + int(rest[12])) / CLK_TCK
    return out


def main_vs_threads(
    pid: int, before: dict[int, float], after: dict[int, float]
) -> tuple[float, float]:
    """CPU seconds spent between two :func:`thread_cpu_s` readings: (main thread, others)."""
    main = after.get(pid, 0.0) - before.get(pid, 0.0)
    others = sum(v - before.get(tid, 0.0) for tid, v in after.items() if tid != pid)
    return main, others


def proc_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Child:
    """A child process we started, with its log file."""

    def __init__(self, name: str, popen: subprocess.Popen[bytes], log: Path) -> None:
        self.name = name
        self.popen = popen
        self.log = log

    @property
    def pid(self) -> int:
        return self.popen.pid

    def cpu_s(self) -> float:
        return proc_cpu_s(self.pid)

    def rss_kib(self) -> int:
        return proc_rss_kib(self.pid)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


def start_redis(workdir: Path) -> tuple[Child, int]:
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server not found on PATH")
    rdir = workdir / "redis"
    rdir.mkdir()
    port = free_port()
    log = workdir / "redis.log"
    with open(log, "wb") as out:
        popen = subprocess.Popen(
            [
                exe,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(rdir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--daemonize",
                "no",
                "--protected-mode",
                "yes",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_pin_server,
        )
    child = Child("redis-server", popen, log)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError("redis-server exited:\n" + child.tail())
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    return child, port
        except OSError:
            pass
        time.sleep(0.05)
    child.stop()
    raise RuntimeError("redis-server did not answer PING")


def start_relay(
    backend: str, workdir: Path, redis_port: int | None, profile: Path | None = None
) -> tuple[Child, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLINDRELAY_")}
    env["BLINDRELAY_LOG_FORMAT"] = "json"
    if backend == "redis":
        env["BLINDRELAY_STORAGE"] = "redis"
        env["BLINDRELAY_REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
    data = workdir / "relay"
    log = workdir / "relay.log"
    with open(log, "wb") as out:
        prof = ["-m", "cProfile", "-o", str(profile)] if profile is not None else []
        popen = subprocess.Popen(
            [
                sys.executable,
                *prof,
                "-m",
                "relay",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--data-dir",
                str(data),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=REPO,
            preexec_fn=_pin_server,
        )
    child = Child("relay", popen, log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if "listening on http://" in line:
                return child, line.split("listening on ", 1)[1].strip()
            if '"relay_listening"' in line:  # JSON logs
                return child, str(json.loads(line)["listen"])
        if not child.alive():
            raise RuntimeError("relay exited:\n" + child.tail())
        time.sleep(0.05)
    child.stop()
    raise RuntimeError("relay did not start:\n" + child.tail())


@dataclass
class Server:
    """One relay (plus its redis-server) for one phase."""

    backend: str
    workdir: Path
    relay: Child
    url: str
    redis: Child | None = None
    redis_port: int | None = None

    def cpu(self) -> tuple[float, float]:
        """(relay CPU s, storage-process CPU s)."""
        return self.relay.cpu_s(), (self.redis.cpu_s() if self.redis else 0.0)

    def check(self) -> None:
        if not self.relay.alive():
            raise RuntimeError("relay died:\n" + self.relay.tail())
        if self.redis is not None and not self.redis.alive():
            raise RuntimeError("redis-server died:\n" + self.redis.tail())

    def redis_info(self) -> dict[str, Any]:
        import redis

        assert self.redis_port is not None
        client = redis.Redis(host="127.0.0.1", port=self.redis_port)
        try:
            info: dict[str, Any] = {}
            info.update(client.info("persistence"))
            info.update(client.info("memory"))
            return info
        finally:
            client.close()


@contextlib.contextmanager
def server(
    backend: str, root: Path, name: str, keep: bool, profile_dir: str | None = None
) -> Iterator[Server]:
    workdir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))
    redis_child: Child | None = None
    relay_child: Child | None = None
    try:
        port = None
        if backend == "redis":
            redis_child, port = start_redis(workdir)
        profile = Path(profile_dir).resolve() / f"{name}.prof" if profile_dir else None
        relay_child, url = start_relay(backend, workdir, port, profile)
        yield Server(backend, workdir, relay_child, url, redis_child, port)
    finally:
        if relay_child is not None:
            relay_child.stop()
        if redis_child is not None:
            redis_child.stop()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


# --- a lean client ----------------------------------------------------------------------------


def pack(fields: dict[str, Any]) -> bytes:
    packed: bytes = msgpack.packb(fields, use_bin_type=True)
    return bytes((VERSION,)) + packed


@dataclass(slots=True)
class Mailbox:
    sk: nacl.signing.SigningKey
    rid: bytes
    sid: bytes


class Conn:
    """One WebSocket to the relay. Replies go to a waiting future if the request was made with
    :meth:`request`, otherwise to ``on_reply``; pushed envelopes go to ``on_push``."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self.waiters: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.on_reply: Callable[[int, dict[str, Any]], None] | None = None
        self.on_push: Callable[[dict[str, Any]], None] | None = None
        self.errors: Counter[str] = Counter()
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, session: aiohttp.ClientSession, url: str) -> Conn:
        ws = await session.ws_connect(
            url + "/v1/ws", max_msg_size=4 << 20, autoping=True, heartbeat=None, compress=0
        )
        msg = await ws.receive()
        if msg.type is not aiohttp.WSMsgType.BINARY:
            raise ConnectionError("no hello")
        hello = msgpack.unpackb(msg.data[1:], raw=False)
        if hello.get("t") != "hello":
            raise ConnectionError("no hello")
        conn = cls(ws)
        conn._reader = asyncio.get_running_loop().create_task(conn._read())
        return conn

    def next_id(self) -> int:
        return next(self._ids) % MAX_ID

    async def _read(self) -> None:
        ws = self.ws
        unpack = msgpack.unpackb
        binary = aiohttp.WSMsgType.BINARY
        try:
            while True:
                msg = await ws.receive()
                if msg.type is not binary:
                    break
                f = unpack(msg.data[1:], raw=False)
                t = f["t"]
                if t == "env":
                    if self.on_push is not None:
                        self.on_push(f)
                    continue
                if t == "drained":
                    continue
                rid = f.get("id")
                waiter = self.waiters.pop(rid, None) if rid is not None else None
                if waiter is not None:
                    if t == "err":
                        self.errors[f["code"]] += 1
                    if not waiter.done():
                        waiter.set_result(f)
                elif self.on_reply is not None and rid is not None:
                    self.on_reply(rid, f)  # counts its own errors
                elif t == "err":
                    self.errors[f["code"]] += 1
        finally:
            for w in self.waiters.values():
                if not w.done():
                    w.set_exception(ConnectionError("socket closed"))
            self.waiters.clear()

    async def request(self, fields: dict[str, Any]) -> dict[str, Any]:
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiters[fields["id"]] = fut
        await self.ws.send_bytes(pack(fields))
        return await asyncio.wait_for(fut, REQUEST_TIMEOUT_S)

    async def owner(
        self, sk: nacl.signing.SigningKey, op: str, rid: bytes | None
    ) -> dict[str, Any]:
        chal: dict[str, Any] = {"t": "chal", "id": self.next_id(), "op": op}
        if rid is not None:
            chal["rid"] = rid
        reply = await self.request(chal)
        if reply["t"] != "chal":
            raise RuntimeError(f"chal refused: {reply}")
        if op == "create":
            cmd = OwnerCommand(op=op, nonce=reply["nonce"], key=bytes(sk.verify_key)).encode()
        else:
            cmd = OwnerCommand(op=op, nonce=reply["nonce"], rid=rid).encode()
        sig = sk.sign(OWNER_COMMAND_CONTEXT + cmd).signature
        return await self.request({"t": "own", "id": self.next_id(), "cmd": cmd, "sig": sig})

    async def subscribe(self, mb: Mailbox, attempts: int = 3) -> None:
        """Subscribe; retries (a bounded number of times) only on ``UNAVAILABLE``, which the
        relay tells clients to retry. Every error is still counted in ``self.errors``."""
        for _ in range(attempts):
            reply = await self.owner(mb.sk, "sub", mb.rid)
            if reply["t"] == "ok":
                return
            if reply.get("code") != "UNAVAILABLE":
                break
            await asyncio.sleep(0.1)
        raise RuntimeError(f"sub refused: {reply}")

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 5)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader


def new_session() -> aiohttp.ClientSession:
    # limit=0: WebSocket connections count against the connector's pool limit.
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=False))


async def gather_bounded(
    coros: Sequence[Callable[[], Awaitable[Any]]], concurrency: int
) -> list[Any]:
    """Run the coroutine factories with at most ``concurrency`` at a time."""
    sem = asyncio.Semaphore(concurrency)

    async def one(make: Callable[[], Awaitable[Any]]) -> Any:
        async with sem:
            return await make()

    return await asyncio.gather(*(one(c) for c in coros))


async def create_mailboxes(
    session: aiohttp.ClientSession, url: str, n: int, conns: int = 8, per_conn: int = 32
) -> list[Mailbox]:
    pool = await asyncio.gather(*(Conn.open(session, url) for _ in range(conns)))
    sems = [asyncio.Semaphore(per_conn) for _ in pool]

    async def one(i: int) -> Mailbox:
        conn, sem = pool[i % conns], sems[i % conns]
        sk = nacl.signing.SigningKey.generate()
        async with sem:
            reply = await conn.owner(sk, "create", None)
        if reply["t"] != "created":
            raise RuntimeError(f"create refused: {reply}")
        return Mailbox(sk, reply["rid"], reply["sid"])

    try:
        return list(await asyncio.gather(*(one(i) for i in range(n))))
    finally:
        await asyncio.gather(*(c.close() for c in pool))


async def wait_progress(
    value: Callable[[], int], target: int, stall_s: float = 15.0, limit_s: float = 600.0
) -> bool:
    """Wait until ``value() >= target``; give up after ``limit_s`` or when ``value()`` has not
    moved for ``stall_s`` (e.g. the relay silently stopped pushing). Return whether it got
    there."""
    loop = asyncio.get_running_loop()
    start = last_move = loop.time()
    last = value()
    while last < target:
        await asyncio.sleep(0.005)
        now, cur = loop.time(), value()
        if cur != last:
            last, last_move = cur, now
        elif now - last_move > stall_s or now - start > limit_s:
            return False
    return True


# --- owners and senders -----------------------------------------------------------------------


@dataclass(slots=True)
class Stats:
    deposited: int = 0  # ok replies to deposits
    delivered: int = 0  # env pushes received
    acked: int = 0  # envelopes whose ack got ok
    ack_failed: int = 0  # envelopes whose ack got an error (they stay stored)
    last_ack_t: float = 0.0  # perf_counter() of the last ack reply
    errors: Counter[str] = field(default_factory=Counter)
    lat_from_ns: int | None = None  # record latency of envelopes sent at or after this time
    lat_ns: list[int] = field(default_factory=list)


class OwnerSink:
    """An owner connection: counts pushes, records latency, acks in batches (per mailbox, at
    ``batch`` seqs or at the end of each burst of received frames, whichever comes first)."""

    def __init__(self, conn: Conn, stats: Stats, batch: int) -> None:
        self.conn = conn
        self.stats = stats
        self.batch = batch
        self.pending: dict[bytes, list[int]] = {}
        self.ack_sizes: dict[int, int] = {}
        self.flush_scheduled = False
        self.loop = asyncio.get_running_loop()
        self.tasks: set[asyncio.Task[None]] = set()
        conn.on_push = self.on_push
        conn.on_reply = self.on_reply

    def on_push(self, f: dict[str, Any]) -> None:
        stats = self.stats
        env = f["env"]
        stats.delivered += 1
        if stats.lat_from_ns is not None:
            sent = int.from_bytes(env["eid"][:8], "big")
            if sent >= stats.lat_from_ns:
                stats.lat_ns.append(time.perf_counter_ns() - sent)
        seq = env["seq"]
        if seq == 0:
            return
        rid = f["rid"]
        seqs = self.pending.get(rid)
        if seqs is None:
            seqs = self.pending[rid] = []
        seqs.append(seq)
        if len(seqs) >= self.batch:
            self._send_ack(rid, self.pending.pop(rid))
        elif not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self.flush_scheduled = False
        pending, self.pending = self.pending, {}
        for rid, seqs in pending.items():
            self._send_ack(rid, seqs)

    def _send_ack(self, rid: bytes, seqs: list[int]) -> None:
        rid_ = self.conn.next_id()
        self.ack_sizes[rid_] = len(seqs)
        data = pack({"t": "ack", "id": rid_, "rid": rid, "seqs": seqs})
        task = self.loop.create_task(self.conn.ws.send_bytes(data))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def on_reply(self, rid: int, f: dict[str, Any]) -> None:
        n = self.ack_sizes.pop(rid, 0)
        self.stats.last_ack_t = time.perf_counter()
        if f["t"] == "ok":
            self.stats.acked += n
        else:
            self.stats.ack_failed += n
            self.stats.errors["ack:" + str(f.get("code"))] += 1


_eid_counter = itertools.count()


def deposit_frame(req_id: int, sid: bytes, sent_ns: int | None = None) -> bytes:
    """A 1 KiB deposit whose envelope id carries the send time (8 bytes; ``sent_ns``, the
    scheduled time of a paced send, or now) and a counter."""
    sent = time.perf_counter_ns() if sent_ns is None else sent_ns
    eid = sent.to_bytes(8, "big") + next(_eid_counter).to_bytes(8, "big")
    return pack({"t": "dep", "id": req_id, "sid": sid, "eid": eid, "flags": 0, "ct": CT_1K})


class Sender:
    """A sender connection keeping up to ``inflight`` deposits outstanding."""

    def __init__(self, conn: Conn, stats: Stats, inflight: int) -> None:
        self.conn = conn
        self.stats = stats
        self.sem = asyncio.Semaphore(inflight)
        self.inflight = inflight
        conn.on_reply = self.on_reply

    def on_reply(self, _rid: int, f: dict[str, Any]) -> None:
        self.sem.release()
        if f["t"] == "ok":
            self.stats.deposited += 1
        else:
            self.stats.errors["dep:" + str(f.get("code"))] += 1

    async def run(self, sids: Callable[[], bytes | None], stop: asyncio.Event) -> None:
        """Deposit to ``sids()`` until it returns None or ``stop`` is set; then wait for replies."""
        ws, conn, sem = self.conn.ws, self.conn, self.sem
        while not stop.is_set():
            await sem.acquire()
            sid = sids()
            if sid is None:
                sem.release()
                break
            await ws.send_bytes(deposit_frame(conn.next_id(), sid))
        # Bounded wait for the outstanding replies, then give the permits back.
        got = 0
        for _ in range(self.inflight):
            try:
                await asyncio.wait_for(sem.acquire(), 30)
            except TimeoutError:
                self.stats.errors["dep:no-reply"] += 1
                break
            got += 1
        for _ in range(got):
            sem.release()


async def open_owners(
    session: aiohttp.ClientSession,
    url: str,
    mailboxes: list[Mailbox],
    owners: int,
    stats: Stats,
    batch: int,
) -> list[OwnerSink]:
    conns = await gather_bounded([lambda: Conn.open(session, url)] * owners, 64)
    sinks = [OwnerSink(c, stats, batch) for c in conns]
    for c in conns:
        c.errors = stats.errors  # owner-side error replies (sub) land in the stats
    await gather_bounded(
        [partial(conns[i % owners].subscribe, mb) for i, mb in enumerate(mailboxes)],
        256,
    )
    return sinks


def pct(values: list[int], p: float) -> float:
    """Percentile (nearest rank) of nanosecond values, in milliseconds."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))
    return s[k] / 1e6


# --- phases -----------------------------------------------------------------------------------


@dataclass
class Args:
    pin: str
    backend: str
    quick: bool
    owners: int
    mailboxes_per_owner: int
    senders: int
    inflight: int
    ack_batch: int
    warmup: float
    duration: float
    latency_duration: float
    latency_rate: float
    connections: int
    setup_concurrency: int
    store_envelopes: int
    store_mailboxes: int
    drain_owners: int
    tmpdir: str | None
    keep: bool
    json: str | None
    profile_relay: str | None
    phases: list[str]


async def phase_throughput(srv: Server, a: Args, out: dict[str, Any]) -> None:
    """Figures 1-3 on one relay: saturating load, then paced load for latency."""
    async with new_session() as session:
        n_mb = a.owners * a.mailboxes_per_owner
        mailboxes = await create_mailboxes(session, srv.url, n_mb)
        stats = Stats()
        sinks = await open_owners(session, srv.url, mailboxes, a.owners, stats, a.ack_batch)
        sender_conns = await asyncio.gather(
            *(Conn.open(session, srv.url) for _ in range(a.senders))
        )
        senders = [Sender(c, stats, a.inflight) for c in sender_conns]
        sids = [mb.sid for mb in mailboxes]

        # --- saturating load -------------------------------------------------------------
        stop = asyncio.Event()

        def picker(offset: int) -> Callable[[], bytes]:
            it = itertools.cycle(sids[offset:] + sids[:offset])
            return lambda: next(it)

        tasks = [
            asyncio.create_task(s.run(picker(i * len(sids) // a.senders), stop))
            for i, s in enumerate(senders)
        ]
        await asyncio.sleep(a.warmup)
        srv.check()
        c0, b0, t0 = srv.cpu(), time.process_time(), time.perf_counter()
        u0 = proc_cpu_split(srv.relay.pid)
        th0 = thread_cpu_s(srv.relay.pid)
        d0, p0, k0 = stats.deposited, stats.delivered, stats.acked
        await asyncio.sleep(a.duration)
        c1, b1, t1 = srv.cpu(), time.process_time(), time.perf_counter()
        u1 = proc_cpu_split(srv.relay.pid)
        th_main, th_other = main_vs_threads(srv.relay.pid, th0, thread_cpu_s(srv.relay.pid))
        d1, p1, k1 = stats.deposited, stats.delivered, stats.acked
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        drained = await wait_progress(
            lambda: stats.acked + stats.ack_failed, stats.deposited, 10, 60
        )
        srv.check()
        wall = t1 - t0
        relayed = p1 - p0
        rate = relayed / wall
        out["throughput"] = {
            "window_s": wall,
            "delivered_per_s": rate,
            "deposited_per_s": (d1 - d0) / wall,
            "acked_per_s": (k1 - k0) / wall,
            "relay_cpu_us": (c1[0] - c0[0]) / relayed * 1e6 if relayed else None,
            "storage_cpu_us": (c1[1] - c0[1]) / relayed * 1e6 if relayed else None,
            "relay_user_us": (u1[0] - u0[0]) / relayed * 1e6 if relayed else None,
            "relay_sys_us": (u1[1] - u0[1]) / relayed * 1e6 if relayed else None,
            "relay_main_thread_us": th_main / relayed * 1e6 if relayed else None,
            "relay_other_threads_us": th_other / relayed * 1e6 if relayed else None,
            "relay_cpu_util": (c1[0] - c0[0]) / wall,
            "storage_cpu_util": (c1[1] - c0[1]) / wall,
            "bench_cpu_us": (b1 - b0) / relayed * 1e6 if relayed else None,
            "bench_cpu_util": (b1 - b0) / wall,
            "backlog_drained": drained,
            "owners": a.owners,
            "mailboxes": n_mb,
            "senders": a.senders,
            "inflight_per_sender": a.inflight,
            "ack_batch": a.ack_batch,
        }

        # --- paced load: latency ---------------------------------------------------------
        async def paced(rate_: float) -> dict[str, Any]:
            stats.lat_ns = []
            interval = 1.0 / rate_
            loop = asyncio.get_running_loop()
            start = loop.time()
            skip = min(0.5, a.latency_duration / 5)
            stats.lat_from_ns = time.perf_counter_ns() + int(skip * 1e9)
            end = start + skip + a.latency_duration
            k = 0
            cpu0 = c_0 = None
            p_0 = 0
            th_0: dict[int, float] = {}
            while True:
                now = loop.time()
                if now >= end:
                    break
                if cpu0 is None and now >= start + skip:
                    cpu0, c_0, p_0 = srv.cpu(), now, stats.delivered
                    th_0 = thread_cpu_s(srv.relay.pid)
                due = int((now - start) / interval) + 1
                while k < due:
                    s = senders[k % len(senders)]
                    await s.sem.acquire()
                    # Latency counts from the scheduled send time (loop.time() and
                    # perf_counter() are both CLOCK_MONOTONIC here), so a late send counts.
                    sched_ns = int((start + k * interval) * 1e9)
                    frame = deposit_frame(s.conn.next_id(), sids[k % len(sids)], sched_ns)
                    await s.conn.ws.send_bytes(frame)
                    k += 1
                await asyncio.sleep(max(0.0, start + k * interval - loop.time()))
            cpu1, c_1, p_1 = srv.cpu(), loop.time(), stats.delivered
            t_main, t_other = main_vs_threads(srv.relay.pid, th_0, thread_cpu_s(srv.relay.pid))
            await wait_progress(lambda: stats.acked + stats.ack_failed, stats.deposited, 10, 30)
            stats.lat_from_ns = None
            lat = stats.lat_ns
            assert cpu0 is not None and c_0 is not None
            n = p_1 - p_0
            return {
                "target_rate": rate_,
                "achieved_rate": n / (c_1 - c_0),
                "samples": len(lat),
                "p50_ms": pct(lat, 50),
                "p90_ms": pct(lat, 90),
                "p99_ms": pct(lat, 99),
                "p999_ms": pct(lat, 99.9),
                "max_ms": max(lat) / 1e6 if lat else float("nan"),
                "relay_cpu_us": (cpu1[0] - cpu0[0]) / n * 1e6 if n else None,
                "storage_cpu_us": (cpu1[1] - cpu0[1]) / n * 1e6 if n else None,
                "relay_main_thread_us": t_main / n * 1e6 if n else None,
                "relay_other_threads_us": t_other / n * 1e6 if n else None,
            }

        out["latency"] = []
        for r in (a.latency_rate, rate / 2):
            if r > 0:
                out["latency"].append(await paced(r))
        srv.check()
        out["throughput"]["errors"] = dict(stats.errors)
        for c in sender_conns:
            await c.close()
        await asyncio.gather(*(s.conn.close() for s in sinks))


async def phase_connections(srv: Server, a: Args, out: dict[str, Any]) -> None:
    """Figures 4-5: open many authenticated idle connections; setups/s and RSS per connection."""
    async with new_session() as session:
        mailboxes = await create_mailboxes(session, srv.url, a.connections)
        await asyncio.sleep(1.0)
        srv.check()
        rss0 = srv.relay.rss_kib()
        redis_mem0 = srv.redis_info()["used_memory"] if srv.redis else 0
        c0, b0, t0 = srv.cpu(), time.process_time(), time.perf_counter()
        conns: list[Conn] = []

        async def setup(mb: Mailbox) -> None:
            conn = await Conn.open(session, srv.url)
            conns.append(conn)
            await conn.subscribe(mb)

        await asyncio.wait_for(
            gather_bounded([partial(setup, mb) for mb in mailboxes], a.setup_concurrency),
            300,
        )
        c1, b1, t1 = srv.cpu(), time.process_time(), time.perf_counter()
        n = len(mailboxes)
        await asyncio.sleep(2.0)
        srv.check()
        rss1 = srv.relay.rss_kib()
        redis_mem1 = srv.redis_info()["used_memory"] if srv.redis else 0
        wall = t1 - t0
        out["connections"] = {
            "count": n,
            "concurrency": a.setup_concurrency,
            "setups_per_s": n / wall,
            "relay_cpu_us_per_setup": (c1[0] - c0[0]) / n * 1e6,
            "storage_cpu_us_per_setup": (c1[1] - c0[1]) / n * 1e6,
            "bench_cpu_us_per_setup": (b1 - b0) / n * 1e6,
            "relay_cpu_util": (c1[0] - c0[0]) / wall,
            "bench_cpu_util": (b1 - b0) / wall,
            "rss_before_kib": rss0,
            "rss_after_kib": rss1,
            "kib_per_conn": (rss1 - rss0) / n,
            "redis_bytes_per_conn": (redis_mem1 - redis_mem0) / n if srv.redis else None,
            "errors": dict(sum((c.errors for c in conns), Counter())),
        }
        await gather_bounded([c.close for c in conns], 256)


def disk_usage(srv: Server) -> dict[str, Any]:
    if srv.backend == "sqlite":
        base = srv.workdir / "relay" / "relay.sqlite3"
        sizes = {}
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(base) + suffix)
            sizes["db" + suffix] = p.stat().st_size if p.exists() else 0
        return {"files": sizes, "bytes": sum(sizes.values())}
    info = srv.redis_info()
    aof_dir = srv.workdir / "redis"
    on_disk = sum(p.stat().st_size for p in aof_dir.rglob("*") if p.is_file())
    return {
        "aof_current_size": info.get("aof_current_size"),
        "aof_base_size": info.get("aof_base_size"),
        "files_bytes": on_disk,
        "used_memory": info.get("used_memory"),
        "bytes": max(int(info.get("aof_current_size") or 0), on_disk),
    }


async def phase_store_drain(srv: Server, a: Args, out: dict[str, Any]) -> None:
    """Figure 6: store N envelopes for offline owners, measure disk, then drain."""
    async with new_session() as session:
        mailboxes = await create_mailboxes(session, srv.url, a.store_mailboxes)
        sids = [mb.sid for mb in mailboxes]
        stats = Stats()
        sender_conns = await asyncio.gather(
            *(Conn.open(session, srv.url) for _ in range(a.senders))
        )
        senders = [Sender(c, stats, a.inflight) for c in sender_conns]
        counter = itertools.count()
        total = a.store_envelopes

        def next_sid() -> bytes | None:
            i = next(counter)
            return sids[i % len(sids)] if i < total else None

        stop = asyncio.Event()
        disk0 = disk_usage(srv)
        c0, b0, t0 = srv.cpu(), time.process_time(), time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(s.run(next_sid, stop) for s in senders)), 600)
        c1, b1, t1 = srv.cpu(), time.process_time(), time.perf_counter()
        stored = stats.deposited
        srv.check()
        for c in sender_conns:
            await c.close()
        await asyncio.sleep(0.5)
        disk1 = disk_usage(srv)
        out["store"] = {
            "envelopes": stored,
            "mailboxes": len(mailboxes),
            "deposits_per_s": stored / (t1 - t0),
            "relay_cpu_us": (c1[0] - c0[0]) / stored * 1e6 if stored else None,
            "storage_cpu_us": (c1[1] - c0[1]) / stored * 1e6 if stored else None,
            "bench_cpu_util": (b1 - b0) / (t1 - t0),
            "disk_before": disk0,
            "disk_after": disk1,
            "disk_bytes": disk1["bytes"] - disk0["bytes"],
            "errors": dict(stats.errors),
        }

        # --- drain -------------------------------------------------------------------------
        owners = min(a.drain_owners, len(mailboxes))
        c0, b0, t0 = srv.cpu(), time.process_time(), time.perf_counter()
        sinks = await open_owners(session, srv.url, mailboxes, owners, stats, a.ack_batch)
        t_sub = time.perf_counter()
        done = await wait_progress(lambda: stats.acked + stats.ack_failed, stored)
        c1, b1, t1 = srv.cpu(), time.process_time(), time.perf_counter()
        if not done:  # stalled: rate up to the last ack, not up to giving up
            t1 = max(t_sub, stats.last_ack_t)
        srv.check()
        await asyncio.sleep(0.3)
        disk2 = disk_usage(srv)
        out["drain"] = {
            "envelopes": stats.acked,
            "complete": done and stats.acked >= stored,
            "delivered": stats.delivered,
            "owners": owners,
            "drain_per_s": stats.acked / (t1 - t0),
            "subscribe_s": t_sub - t0,
            "relay_cpu_us": (c1[0] - c0[0]) / stats.acked * 1e6 if stats.acked else None,
            "storage_cpu_us": (c1[1] - c0[1]) / stats.acked * 1e6 if stats.acked else None,
            "bench_cpu_util": (b1 - b0) / (t1 - t0),
            "disk_after_drain": disk2,
            "errors": dict(stats.errors),
        }
        await gather_bounded([s.conn.close for s in sinks], 256)


# --- report -----------------------------------------------------------------------------------


#: DESIGN.md §6 budgets that differ per backend: (server CPU us per envelope, envelopes/s).
BUDGETS = {"sqlite": (100.0, 8_000.0), "redis": (150.0, 6_000.0)}


def figures(r: dict[str, Any]) -> list[Figure]:
    figs: list[Figure] = []
    cpu_budget, rate_budget = BUDGETS[r["backend"]]
    tp = r.get("throughput")
    if tp:
        figs.append(
            Figure(
                "sustained relayed envelopes/s (1 KiB)",
                tp["delivered_per_s"],
                "/s",
                f">= {rate_budget:,.0f}",
                at_least(tp["delivered_per_s"], rate_budget),
            )
        )
        cpu = (tp["relay_cpu_us"] or 0) + (tp["storage_cpu_us"] or 0)
        split = (
            f"relay {tp['relay_cpu_us']:.0f} + redis {tp['storage_cpu_us']:.0f}"
            if r["backend"] == "redis"
            else "relay process (incl. SQLite threads)"
        )
        figs.append(
            Figure(
                "server CPU per relayed envelope",
                cpu,
                "us",
                f"<= {cpu_budget:.0f} us",
                at_most(cpu, cpu_budget),
                split,
            )
        )
    for lat in r.get("latency", []):
        ok = None
        if lat["p50_ms"] == lat["p50_ms"]:
            ok = lat["p50_ms"] < 1.5 and lat["p99_ms"] < 8
        figs.append(
            Figure(
                f"push latency p50 / p99 @ {lat['target_rate']:,.0f}/s",
                lat["p50_ms"],
                f"ms / {lat['p99_ms']:.2f} ms",
                "< 1.5 ms / < 8 ms",
                ok,
                f"p99.9 {lat['p999_ms']:.2f} ms, max {lat['max_ms']:.2f} ms",
            )
        )
    cn = r.get("connections")
    if cn:
        figs.append(
            Figure(
                "relay memory per idle authenticated WS",
                cn["kib_per_conn"],
                "KiB",
                "<= 12 KiB",
                at_most(cn["kib_per_conn"], 12),
                f"{cn['count']:,} connections",
            )
        )
        figs.append(
            Figure(
                "authenticated connection setups/s",
                cn["setups_per_s"],
                "/s",
                ">= 2,500",
                at_least(cn["setups_per_s"], 2500),
                f"relay {cn['relay_cpu_us_per_setup']:.0f} us CPU/setup",
            )
        )
    st = r.get("store")
    if st:
        figs.append(
            Figure(
                f"store {st['envelopes']:,} envelopes, offline owners",
                st["deposits_per_s"],
                "/s",
                ">= 20,000",
                at_least(st["deposits_per_s"], 20_000),
                f"{st['mailboxes']:,} mailboxes",
            )
        )
    dr = r.get("drain")
    if dr:
        figs.append(
            Figure(
                "drain to reconnecting owners",
                dr["drain_per_s"],
                "/s",
                ">= 50,000",
                at_least(dr["drain_per_s"], 50_000) if dr["complete"] else False,
                "" if dr["complete"] else "INCOMPLETE",
            )
        )
    if st:
        mib = st["disk_after"]["bytes"] / (1 << 20)
        scaled = mib * 100_000 / max(1, st["envelopes"])
        figs.append(
            Figure(
                "disk for 100,000 stored 1 KiB envelopes",
                scaled,
                "MiB",
                "<= 115 MiB",
                at_most(scaled, 115),
                ("db+wal+shm" if r["backend"] == "sqlite" else "AOF files")
                + ("" if st["envelopes"] >= 100_000 else f", scaled from {st['envelopes']:,}"),
            )
        )
    return figs


def print_table(r: dict[str, Any]) -> None:
    figs = figures(r)
    print()
    print(f"## backend: {r['backend']}")
    print()
    print("| figure | measured | budget | met | note |")
    print("|---|---|---|---|---|")
    for f in figs:
        met = {True: "yes", False: "**no**", None: "?"}[f.ok]
        print(f"| {f.name} | {f.cell()} | {f.budget} | {met} | {f.note} |")
    tp = r.get("throughput")
    if tp:
        print()
        print(
            f"throughput detail: deposits {tp['deposited_per_s']:,.0f}/s, acks "
            f"{tp['acked_per_s']:,.0f}/s; CPU use: relay {tp['relay_cpu_util']:.0%} of a core, "
            f"storage {tp['storage_cpu_util']:.0%}, load generator {tp['bench_cpu_util']:.0%} "
            f"({tp['bench_cpu_us']:.0f} us/envelope); relay user {tp['relay_user_us']:.0f} + "
            f"sys {tp['relay_sys_us']:.0f} us/envelope = event-loop thread "
            f"{tp['relay_main_thread_us']:.0f} + other threads (SQLite writer/reader, redis "
            f"none) {tp['relay_other_threads_us']:.0f}; {tp['owners']} owner connections x "
            f"{tp['mailboxes'] // tp['owners']} mailboxes, {tp['senders']} senders x "
            f"{tp['inflight_per_sender']} in flight"
        )
        for lat in r.get("latency", []):
            cpu = (lat["relay_cpu_us"] or 0) + (lat["storage_cpu_us"] or 0)
            print(
                f"latency @ {lat['target_rate']:,.0f}/s: achieved {lat['achieved_rate']:,.0f}/s,"
                f" {lat['samples']:,} samples, p90 {lat['p90_ms']:.2f} ms; server CPU "
                f"{cpu:.0f} us/envelope at this rate (event loop "
                f"{lat['relay_main_thread_us']:.0f}, other threads "
                f"{lat['relay_other_threads_us']:.0f})"
            )
    st, dr = r.get("store"), r.get("drain")
    if st and dr:
        print(
            f"store: relay {st['relay_cpu_us']:.0f} + storage {st['storage_cpu_us']:.0f} us "
            f"CPU/deposit; drain: relay {dr['relay_cpu_us']:.0f} + storage "
            f"{dr['storage_cpu_us']:.0f} us CPU/envelope, subscribing took "
            f"{dr['subscribe_s']:.2f} s, {dr['owners']} owner connections"
        )
        print(f"disk after store: {json.dumps(st['disk_after'])}")
    errs: Counter[str] = Counter()
    for key in ("throughput", "connections", "store", "drain"):
        errs.update((r.get(key) or {}).get("errors", {}))
    if errs:
        print(f"ERRORS seen: {dict(errs)}")


def run_backend(backend: str, a: Args, root: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"backend": backend}
    phases: list[tuple[str, Callable[[Server, Args, dict[str, Any]], Any]]] = [
        ("connections", phase_connections),
        ("throughput", phase_throughput),
        ("store", phase_store_drain),
    ]
    for name, phase in phases:
        if name not in a.phases:
            continue
        started = time.perf_counter()
        print(f"[{backend}] {name} ...", file=sys.stderr, flush=True)
        try:
            with server(backend, root, f"{backend}-{name}", a.keep, a.profile_relay) as srv:
                asyncio.run(phase(srv, a, result))
        except Exception as exc:
            result.setdefault("failures", {})[name] = f"{type(exc).__name__}: {exc}"
            print(f"[{backend}] {name} FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        print(
            f"[{backend}] {name} done in {time.perf_counter() - started:.1f} s",
            file=sys.stderr,
            flush=True,
        )
    return result


def raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, need)) if hard != resource.RLIM_INFINITY else max(soft, need)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def parse(argv: Sequence[str] | None) -> Args:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--backend", choices=("sqlite", "redis", "both"), default="both")
    p.add_argument("--quick", action="store_true", help="short smoke run (small sizes)")
    p.add_argument("--owners", type=int, help="owner connections online (default 1000)")
    p.add_argument("--mailboxes-per-owner", type=int, help="mailboxes per owner connection (1)")
    p.add_argument("--senders", type=int, help="sender connections (50)")
    p.add_argument("--inflight", type=int, help="deposits in flight per sender, <= 256 (32)")
    p.add_argument("--ack-batch", type=int, help="most seqs per ack frame (64)")
    p.add_argument("--warmup", type=float, help="seconds before the throughput window (2)")
    p.add_argument("--duration", type=float, help="throughput window, seconds (10)")
    p.add_argument("--latency-duration", type=float, help="seconds per latency rate (5)")
    p.add_argument("--latency-rate", type=float, default=500.0, help="budget rate (500/s)")
    p.add_argument("--connections", type=int, help="idle authenticated connections (2000)")
    p.add_argument("--setup-concurrency", type=int, help="concurrent setups (100)")
    p.add_argument("--store-envelopes", type=int, help="envelopes stored offline (100000)")
    p.add_argument("--store-mailboxes", type=int, help="mailboxes they go to (100)")
    p.add_argument("--drain-owners", type=int, help="owner connections draining (100)")
    p.add_argument("--tmpdir", help="where data dirs go (default: system temp; use a real disk)")
    p.add_argument("--keep", action="store_true", help="keep data dirs and logs")
    p.add_argument("--json", help="also write the raw results to this file")
    p.add_argument(
        "--pin",
        choices=("auto", "yes", "no"),
        default="auto",
        help="relay + storage on core 0, this load generator on core 1 (auto: with 2+ cores)",
    )
    p.add_argument(
        "--profile-relay",
        metavar="DIR",
        help="run each relay under cProfile (main thread only), write DIR/<phase>.prof",
    )
    p.add_argument(
        "--phases",
        default="connections,throughput,store",
        help="comma-separated subset of: connections, throughput, store",
    )
    ns = p.parse_args(argv)
    # DESIGN.md §6 workload: 1,000 live recipients, 50 senders, 1 KiB payloads; 2,000 idle
    # connections; 100 offline mailboxes x 1,000 envelopes.
    full = {
        "owners": 1000,
        "mailboxes_per_owner": 1,
        "senders": 50,
        "inflight": 32,
        "ack_batch": 64,
        "warmup": 2.0,
        "duration": 10.0,
        "latency_duration": 5.0,
        "connections": 2000,
        "setup_concurrency": 100,
        "store_envelopes": 100_000,
        "store_mailboxes": 100,
        "drain_owners": 100,
    }
    quick = {
        "owners": 20,
        "mailboxes_per_owner": 4,
        "senders": 4,
        "inflight": 128,
        "ack_batch": 64,
        "warmup": 0.5,
        "duration": 2.0,
        "latency_duration": 1.5,
        "connections": 300,
        "setup_concurrency": 50,
        "store_envelopes": 5000,
        "store_mailboxes": 100,
        "drain_owners": 20,
    }
    defaults = quick if ns.quick else full
    values: dict[str, Any] = {
        k: (getattr(ns, k) if getattr(ns, k) is not None else v) for k, v in defaults.items()
    }
    if not 1 <= values["inflight"] <= RELAY_MAX_INFLIGHT:
        p.error(f"--inflight must be 1..{RELAY_MAX_INFLIGHT} (the relay's per-connection limit)")
    if not 1 <= values["ack_batch"] <= 256:
        p.error("--ack-batch must be 1..256")
    return Args(
        pin=ns.pin,
        backend=ns.backend,
        quick=ns.quick,
        latency_rate=ns.latency_rate,
        tmpdir=ns.tmpdir,
        keep=ns.keep,
        json=ns.json,
        profile_relay=ns.profile_relay,
        phases=[x.strip() for x in ns.phases.split(",") if x.strip()],
        **values,
    )


def main(argv: Sequence[str] | None = None) -> int:
    a = parse(argv)
    raise_nofile(2 * a.connections + 1024)
    global SERVER_CPUS
    cores = sorted(os.sched_getaffinity(0))
    if a.pin == "yes" or (a.pin == "auto" and len(cores) >= 2):
        if len(cores) < 2:
            print("--pin needs two cores", file=sys.stderr)
            return 2
        SERVER_CPUS = {cores[0]}
        os.sched_setaffinity(0, {cores[1]})
    backends = ["sqlite", "redis"] if a.backend == "both" else [a.backend]
    root = Path(tempfile.mkdtemp(prefix="blindrelay-bench-", dir=a.tmpdir))
    cpu_model = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    header = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": f"{os.cpu_count()} cores, {cpu_model}, {platform.platform()}",
        "python": platform.python_version(),
        "argv": sys.argv,
        "quick": a.quick,
        "pinned": f"server on core {min(SERVER_CPUS)}, load generator on core "
        f"{min(os.sched_getaffinity(0))}"
        if SERVER_CPUS
        else "no",
    }
    print(f"# blindrelay relay bench, {header['date']}")
    print(f"machine: {header['machine']}; python {header['python']}; pinned: {header['pinned']}")
    results = []
    try:
        for backend in backends:
            r = run_backend(backend, a, root)
            results.append(r)
            print_table(r)
            for name, why in r.get("failures", {}).items():
                print(f"phase {name} FAILED: {why}")
            sys.stdout.flush()
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"data kept in {root}")
    if a.json:
        Path(a.json).write_text(json.dumps({"header": header, "results": results}, indent=2))
    return 1 if any(r.get("failures") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
