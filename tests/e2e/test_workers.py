"""``blindrelay serve --workers 2``: one port, two supervised worker processes over Redis.

An owner's WebSocket on one worker gets what a depositor on the other deposits; a worker
killed with SIGKILL loses no acknowledged envelope and is started again by the supervisor;
SIGTERM stops everything; SQLite is refused.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from liverelay import ROOT, RelayProcess, free_port
from relaydriver import HTTPClient, Owner, WSClient

from clientlib.wire import Drained, EnvelopeDelivered, Ok

pytestmark = pytest.mark.redis


def env_for(redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLINDRELAY_")}
    env.update(
        BLINDRELAY_STORAGE="redis", BLINDRELAY_REDIS_URL=redis_url, BLINDRELAY_LOG_FORMAT="json"
    )
    return env


def worker_of(ws: WSClient) -> str:
    assert ws.ws is not None
    return str(ws.ws._response.headers["X-Blindrelay-Worker"])  # the handshake's header


async def ws_on(session: aiohttp.ClientSession, url: str, worker: str | None) -> WSClient:
    """A WebSocket that the kernel handed to ``worker`` (or to any worker if None)."""
    deadline = time.monotonic() + 30  # a restarted worker takes a moment to accept
    while time.monotonic() < deadline:
        ws = WSClient(session, url)
        await ws.__aenter__()
        if worker is None or worker_of(ws) == worker:
            return ws
        await ws.__aexit__(None, None, None)
        await asyncio.sleep(0.05)
    raise AssertionError(f"no connection reached worker {worker}")


def worker_pids(supervisor: subprocess.Popen[bytes]) -> dict[str, int]:
    """Worker index -> pid, from the supervisor's children."""
    out = {}
    children = Path(f"/proc/{supervisor.pid}/task/{supervisor.pid}/children").read_text().split()
    for pid in children:
        try:  # a child listed a moment ago may have exited since (it is being restarted)
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--worker-id" in argv:
            out[argv[argv.index(b"--worker-id") + 1].decode()] = int(pid)
    return out


def gone_or_zombie(pid: int) -> bool:
    try:
        return "zombie" in Path(f"/proc/{pid}/status").read_text()
    except OSError:  # gone, or reaped between two reads
        return True


async def wait_workers(supervisor: subprocess.Popen[bytes], n: int, not_pid: int = 0) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pids = worker_pids(supervisor)
        if len(pids) == n and not_pid not in pids.values():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the supervisor did not (re)start its workers")


async def test_two_workers_push_across_and_survive_kill_9(tmp_path: Path, redis_url: str) -> None:
    relay = RelayProcess(
        tmp_path / "data", env_for(redis_url), tmp_path / "relay.log", ("--workers", "2")
    )
    relay.start()
    assert relay.proc is not None
    supervisor = relay.proc
    owner = Owner()
    try:
        await wait_workers(supervisor, 2)
        async with aiohttp.ClientSession() as session:
            ows = await ws_on(session, relay.url, None)
            other = "1" if worker_of(ows) == "0" else "0"
            dws = await ws_on(session, relay.url, other)  # the depositor on the other worker
            rid, sid = await ows.create_mailbox(owner)
            await ows.subscribe(owner, rid)
            assert isinstance(await ows.next_push(), Drained)
            for i in range(20):  # deposited on one worker, pushed by the other
                assert isinstance(await dws.deposit(sid, bytes([i]) * 256), Ok)
            got = []
            while len(got) < 20:
                frame = await ows.next_push()
                assert isinstance(frame, EnvelopeDelivered)
                got.append(frame.env.ct[0])
                await ows.ack(rid, [frame.env.seq])
            assert got == list(range(20))
            await ows.__aexit__(None, None, None)

            # kill -9 of the depositor's worker while it deposits: every acknowledged
            # envelope is stored.
            victim = worker_pids(supervisor)[other]
            acked: list[bytes] = []

            async def deposit_until_killed() -> None:
                while True:
                    eid = os.urandom(16)
                    try:
                        reply = await dws.deposit(sid, b"k" * 256, eid=eid)
                    except (TimeoutError, aiohttp.ClientError, ConnectionError):
                        return
                    if isinstance(reply, Ok):
                        acked.append(eid)

            task = asyncio.create_task(deposit_until_killed())
            while len(acked) < 30:
                await asyncio.sleep(0.01)
            os.kill(victim, signal.SIGKILL)
            await asyncio.wait_for(task, 15)
            await wait_workers(supervisor, 2, not_pid=victim)  # restarted
            await dws.__aexit__(None, None, None)
            http = HTTPClient(session, relay.url)
            stored: set[bytes] = set()
            done: list[int] = []
            while True:
                fetched = await http.fetch(owner, rid, ack=done, max=100)
                stored |= {e.eid for e in fetched.envs}
                done = [e.seq for e in fetched.envs]
                if not fetched.envs:
                    break
            assert set(acked) <= stored
            # The restarted worker serves again (a connection that reaches it).
            ws = await ws_on(session, relay.url, other)
            await ws.__aexit__(None, None, None)
            # Health answers say which worker answered.
            async with session.get(relay.url + "healthz") as resp:
                assert resp.headers["X-Blindrelay-Worker"] in ("0", "1")
        assert "worker 1 ended (signal 9); restarting" in relay.log_text() or (
            "worker 0 ended (signal 9); restarting" in relay.log_text()
        )
        # SIGTERM stops the supervisor and every worker.
        pids = worker_pids(supervisor)
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(20) == 0
        assert all(gone_or_zombie(pid) for pid in pids.values())
        relay.proc = None
    finally:
        relay.stop()


def test_workers_refused_on_sqlite(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLINDRELAY_")}
    cmd = [sys.executable, "-m", "relay", "serve", "--workers", "2", "--port", str(free_port())]
    cmd += ["--data-dir", str(tmp_path)]
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, timeout=60, check=False)
    assert out.returncode == 78
    assert b"more than one worker needs storage = redis" in out.stderr
    assert not any(tmp_path.iterdir())  # nothing was created
