"""Acceptance: real client processes (``clientproc.py``, one :class:`Client` each) on a live
relay process, on each backend.

* an invitation, a declined request (the requester stays pending, the invitee gets no
  contact) and an accepted one;
* 1,000 messages each way, sent concurrently, with the relay SIGKILLed and restarted on the
  same port and data mid-exchange: none lost, none duplicated, order kept (the received
  sequence and each side's history compared exactly);
* a recipient offline while messages wait at the relay, across a graceful relay restart and
  a restart of its own process;
* storage scans: every byte the relay stored (database files, Redis keys, values, RDB and
  AOF) and its whole log hold no message text, display name, intro, invitation key or
  identity key (raw, hex or base64), both while envelopes wait and after the exchange.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from liverelay import RelayProcess

from clientlib.client import Invitation

CLIENTPROC = Path(__file__).with_name("clientproc.py")
N = 1000
RESTART_AT = 300
OFFLINE_N = 50
#: Warnings that must never appear in these scenarios.
BAD_WARNINGS = {"undecryptable", "malformed_content", "mailbox_lost", "storage_failed"}


def tail(text: str, n: int = 3000) -> str:
    return text if len(text) <= n else "..." + text[-n:]


class World:
    """The relay and the client processes of one test, for diagnostics and cleanup."""

    def __init__(self, relay: RelayProcess, workdir: Path) -> None:
        self.relay = relay
        self.workdir = workdir
        self.procs: dict[str, ClientProc] = {}

    def report(self, what: str) -> str:
        parts = [what, "--- relay log (tail):", tail(self.relay.log_text())]
        for p in self.procs.values():
            parts += [
                f"--- client {p.name} (returncode {p.returncode}), stderr (tail):",
                tail(p.stderr_text(), 2000),
                f"--- client {p.name}, last events: {p.events[-8:]}",
            ]
        return "\n".join(parts)

    async def spawn(self, name: str, *, create: bool = True) -> ClientProc:
        proc = ClientProc(self, name)
        self.procs[name] = proc
        await proc.start(create=create)
        return proc

    async def close(self) -> None:
        for p in self.procs.values():
            await p.terminate()


class ClientProc:
    """One ``clientproc.py`` child: commands as coroutines, events collected as they come."""

    def __init__(self, world: World, name: str) -> None:
        self.world = world
        self.name = name
        self.display = f"{name.title()} {secrets.token_hex(4)}"
        self.keystore = world.workdir / f"{name}.keystore"
        self.stderr_path = world.workdir / f"{name}.stderr"
        self.proc: asyncio.subprocess.Process | None = None
        self.events: list[dict[str, Any]] = []
        self.times: list[float] = []  # loop time at which each of ``events`` was read
        self.extra_args: list[str] = []  # more clientproc.py options
        self.received: dict[str, list[str]] = defaultdict(list)
        self.ready: dict[str, Any] = {}
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = 0
        self._changed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    async def start(self, *, create: bool) -> None:
        args = ["--keystore", str(self.keystore), "--relay", self.world.relay.url]
        args += ["--name", self.display, "--passphrase", f"pw-{self.name} long test passphrase"]
        with self.stderr_path.open("ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-bb",
                str(CLIENTPROC),
                *args,
                *(["--create"] if create else []),
                *self.extra_args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                limit=1 << 20,
            )
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read(self.proc))
        ready = await self.wait_event(lambda e: e["event"] == "ready", 30, "ready")
        self.ready = ready

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            obj = json.loads(line)
            if "reply" in obj:
                fut = self._pending.pop(obj["reply"], None)
                if fut is not None and not fut.done():
                    fut.set_result(obj)
            else:
                self.events.append(obj)
                self.times.append(asyncio.get_running_loop().time())
                if obj["event"] == "message":
                    self.received[obj["contact"]].append(obj["text"])
            self._wake()
        await proc.wait()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(AssertionError(self.world.report(f"{self.name} exited")))
        self._pending.clear()
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def call(self, cmd: str, timeout: float = 30, **args: Any) -> Any:
        assert self.proc is not None and self.proc.stdin is not None
        self._ids += 1
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[self._ids] = fut
        self.proc.stdin.write(json.dumps({"cmd": cmd, "id": self._ids, **args}).encode() + b"\n")
        await self.proc.stdin.drain()
        try:
            async with asyncio.timeout(timeout):
                reply = await fut
        except TimeoutError:
            raise AssertionError(self.world.report(f"{self.name}: {cmd} timed out")) from None
        if not reply["ok"]:
            raise AssertionError(self.world.report(f"{self.name}: {cmd} failed: {reply['error']}"))
        return reply["result"]

    async def wait_until(self, cond: Callable[[], bool], timeout: float, what: str) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not cond():
                    if self.returncode is not None:
                        raise AssertionError(self.world.report(f"{self.name} exited: {what}"))
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(self.world.report(f"{self.name}: timed out: {what}")) from None

    async def wait_event(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float = 15, what: str = "event"
    ) -> dict[str, Any]:
        found: list[dict[str, Any]] = []

        def cond() -> bool:
            found[:] = [e for e in self.events if pred(e)]
            return bool(found)

        await self.wait_until(cond, timeout, what)
        return found[0]

    def warnings(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == "warning"]

    async def quit(self) -> None:
        """Close the client cleanly (it flushes what it can) and wait for the exit."""
        assert self.proc is not None and self.proc.stdin is not None
        self._ids += 1
        self.proc.stdin.write(json.dumps({"cmd": "quit", "id": self._ids}).encode() + b"\n")
        await self.proc.stdin.drain()
        try:
            async with asyncio.timeout(20):
                rc = await self.proc.wait()
        except TimeoutError:
            raise AssertionError(self.world.report(f"{self.name}: quit timed out")) from None
        if self._reader is not None:
            await self._reader
        assert rc == 0, self.world.report(f"{self.name} exited with {rc}")

    async def terminate(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            self._reader.cancel()


@pytest.fixture
async def world(live_relay: RelayProcess, tmp_path: Path) -> AsyncIterator[World]:
    w = World(live_relay, tmp_path / "clients")
    w.workdir.mkdir()
    try:
        yield w
    finally:
        await w.close()


# --- helpers --------------------------------------------------------------------------------


async def stored_envelopes(relay: RelayProcess) -> int:
    async with aiohttp.ClientSession() as s, s.get(relay.url + "metrics") as resp:
        text = await resp.text()
    for line in text.splitlines():
        if line.startswith("blindrelay_stored_envelopes"):
            return int(float(line.rsplit(" ", 1)[1]))
    raise AssertionError("no blindrelay_stored_envelopes in /metrics:\n" + text)


async def restart_relay(relay: RelayProcess, *, kill: bool) -> None:
    await asyncio.to_thread(relay.kill if kill else relay.stop)
    await asyncio.to_thread(relay.start)


def forms(value: bytes) -> dict[str, bytes]:
    """The encodings under which a value could be written down."""
    out = {"raw": value, "hex": value.hex().encode(), "HEX": value.hex().upper().encode()}
    if len(value) >= 16:  # base64 of short text would match by accident
        out["base64"] = base64.b64encode(value).rstrip(b"=")
        out["base64url"] = base64.urlsafe_b64encode(value).rstrip(b"=")
    return out


async def identity_needles(*procs: ClientProc) -> dict[str, bytes]:
    out = {}
    for p in procs:
        ident = await p.call("identity")
        out[f"{p.name} name"] = p.display.encode()
        out[f"{p.name} ed25519 key"] = bytes.fromhex(ident["ed25519"])
        out[f"{p.name} x25519 key"] = bytes.fromhex(ident["x25519"])
    return out


def scan(world: World, storage: Any, needles: dict[str, bytes]) -> dict[str, bytes]:
    """Assert that no needle, in any form, is in anything the relay stored or logged."""
    blobs = storage.dump()
    hits = [
        f"{label} ({form}) in {source}"
        for label, needle in needles.items()
        for form, value in forms(needle).items()
        for source, blob in blobs.items()
        if value in blob
    ]
    assert not hits, world.report("the relay stored or logged secrets:\n" + "\n".join(hits))
    return blobs


def assert_found(world: World, blobs: dict[str, bytes], label: str, value: bytes) -> None:
    """Positive control: the scan really reads what the relay stores."""
    assert any(v in blob for v in (value, value.hex().encode()) for blob in blobs.values()), (
        world.report(f"positive control {label} not found: the storage scan reads nothing")
    )


async def check_conversation(
    world: World,
    me: ClientProc,
    contact: str,
    sent: list[str],
    expected_in: list[str],
) -> None:
    """``me`` received exactly ``expected_in`` from ``contact`` (in order, once each), and its
    history holds exactly that and what it sent, all sent messages acknowledged by the relay."""
    got = me.received[contact]
    if got != expected_in:
        missing = sorted(set(expected_in) - set(got))
        dups = len(got) - len(set(got))
        raise AssertionError(
            world.report(
                f"{me.name}: received {len(got)} messages, expected {len(expected_in)}: "
                f"{len(missing)} missing (first {missing[:3]}), {dups} duplicated, "
                f"order kept: {[t for t in got if t in set(expected_in)] == sorted(got)}"
            )
        )
    history = await me.call("history", contact=contact)
    assert [m["text"] for m in history if m["direction"] == "in"] == expected_in
    assert [m["text"] for m in history if m["direction"] == "out"] == sent
    states = {m["state"] for m in history if m["direction"] == "out"}
    # "delivered" once the peer's delivery receipts came back (issue 13); never read.
    assert states <= {"sent", "delivered"}, world.report(f"{me.name}: outgoing states {states}")
    assert len({(m["direction"], m["id"]) for m in history}) == len(history)


def assert_no_bad_warnings(world: World, *procs: ClientProc) -> None:
    bad = [(p.name, w) for p in procs for w in p.warnings() if w["kind"] in BAD_WARNINGS]
    assert not bad, world.report(f"unexpected warnings: {bad}")


# --- tests ----------------------------------------------------------------------------------


async def test_decline_accept_and_thousand_each_way_across_relay_kill(
    world: World, live_relay: RelayProcess, relay_storage: Any
) -> None:
    token = secrets.token_hex(8)
    a, b, c = await asyncio.gather(world.spawn("a"), world.spawn("b"), world.spawn("c"))

    # An invitation; B's request is declined.
    link = (await a.call("invite"))["link"]
    intro_b = f"intro of b {token}"
    b_a = await b.call("request", link=link, intro=intro_b)
    assert b_a["state"] == "pending"
    req_b = await a.wait_event(lambda e: e["event"] == "request", what="B's request")
    assert req_b["name"] == b.display and req_b["intro"] == intro_b
    await a.call("decline", request_id=req_b["id"])
    assert await a.call("requests") == [] and await a.call("contacts") == []

    # C's request is accepted.
    intro_c = f"intro of c {token}"
    c_a = (await c.call("request", link=link, intro=intro_c))["id"]
    req_c = await a.wait_event(
        lambda e: e["event"] == "request" and e["id"] != req_b["id"], what="C's request"
    )
    assert req_c["name"] == c.display and req_c["intro"] == intro_c
    a_c = (await a.call("accept", request_id=req_c["id"]))["id"]
    added = await c.wait_event(lambda e: e["event"] == "contact_added", what="C's contact added")
    assert added["id"] == c_a and added["name"] == a.display and added["state"] == "accepted"
    assert [x["id"] for x in await a.call("contacts")] == [a_c]

    # 1,000 messages each way, concurrently; the relay is SIGKILLed mid-exchange.
    pa, pc = f"{token}:a>c:", f"{token}:c>a:"
    sent_a = [f"{pa}{i:05d}" for i in range(N)]
    sent_c = [f"{pc}{i:05d}" for i in range(N)]
    sending = [
        asyncio.create_task(a.call("send_many", 180, contact=a_c, prefix=pa, count=N)),
        asyncio.create_task(c.call("send_many", 180, contact=c_a, prefix=pc, count=N)),
    ]

    def progress() -> tuple[int, int]:
        return len(a.received[a_c]), len(c.received[c_a])

    # Restart once both sides have ~300, or earlier if one side runs far ahead of the other.
    await a.wait_until(
        lambda: min(progress()) >= RESTART_AT or max(progress()) >= N - RESTART_AT,
        120,
        "first messages on both sides",
    )
    at_kill = progress()
    print(f"relay killed with {at_kill} messages received (A, C)")
    await restart_relay(live_relay, kill=True)
    await asyncio.gather(*sending)
    await a.wait_until(lambda: len(a.received[a_c]) >= N, 180, "A: all messages")
    await c.wait_until(lambda: len(c.received[c_a]) >= N, 180, "C: all messages")
    await asyncio.gather(a.call("sync", 60), c.call("sync", 60))
    assert max(at_kill) < N, f"the relay restarted after the exchange: {at_kill}"
    for p in (a, c):
        assert {"event": "connection", "online": False} in p.events, f"{p.name} never went offline"
    await check_conversation(world, a, a_c, sent_a, sent_c)
    await check_conversation(world, c, c_a, sent_c, sent_a)

    # B stays pending: never told of the decline, no contact added.
    assert [(x["id"], x["state"]) for x in await b.call("contacts")] == [(b_a["id"], "pending")]
    assert not [e for e in b.events if e["event"] == "contact_added"]
    assert_no_bad_warnings(world, a, b, c)

    # Everything was acknowledged, and nothing secret is stored or logged anywhere.
    inv = Invitation.parse(link)
    needles = {
        "token of every text and intro": token.encode(),
        "a>c texts": pa.encode(),
        "c>a texts": pc.encode(),
        "intro b": intro_b.encode(),
        "intro c": intro_c.encode(),
        "invitation key": inv.key,
        **await identity_needles(a, b, c),
    }
    blobs = scan(world, relay_storage, needles)
    assert_found(world, blobs, "invitation sid", inv.sid)
    for _ in range(50):
        if await stored_envelopes(live_relay) == 0:
            break
        await asyncio.sleep(0.1)
    assert await stored_envelopes(live_relay) == 0, world.report("envelopes left behind")
    await asyncio.gather(a.quit(), b.quit(), c.quit())


async def test_offline_recipient_catches_up_across_restarts(
    world: World, live_relay: RelayProcess, relay_storage: Any
) -> None:
    token = secrets.token_hex(8)
    a, b = await asyncio.gather(world.spawn("a"), world.spawn("b"))
    needles = await identity_needles(a, b)

    # An invitation, accepted.
    link = (await a.call("invite"))["link"]
    intro = f"intro of b {token}"
    b_a = (await b.call("request", link=link, intro=intro))["id"]
    req = await a.wait_event(lambda e: e["event"] == "request", what="B's request")
    a_b = (await a.call("accept", request_id=req["id"]))["id"]
    await b.wait_event(lambda e: e["event"] == "contact_added", what="B's contact added")
    hello = f"{token}:b>a:hello"
    await b.call("send", contact=b_a, text=hello)
    await a.wait_until(lambda: a.received[a_b] == [hello], 15, "A: hello")
    await b.call("sync")
    await b.quit()

    # B is offline: A's messages wait at the relay, where the scan must not find them.
    pa = f"{token}:a>b:"
    sent_a = [f"{pa}{i:05d}" for i in range(OFFLINE_N)]
    await a.call("send_many", contact=a_b, prefix=pa, count=OFFLINE_N)
    await a.call("sync")
    assert await stored_envelopes(live_relay) >= OFFLINE_N
    inv = Invitation.parse(link)
    needles |= {
        "token of every text and intro": token.encode(),
        "a>b texts": pa.encode(),
        "b>a texts": f"{token}:b>a:".encode(),
        "intro": intro.encode(),
        "invitation key": inv.key,
    }
    blobs = scan(world, relay_storage, needles)
    assert_found(world, blobs, "invitation sid", inv.sid)

    # The relay restarts gracefully, then B comes back (a new process on its keystore).
    await restart_relay(live_relay, kill=False)
    b = await respawn(world, b)
    await b.wait_until(lambda: len(b.received[b_a]) >= OFFLINE_N, 60, "B: catch-up")
    await b.wait_event(lambda e: e["event"] == "caught_up", what="B caught up")
    reply = f"{token}:b>a:back"
    await b.call("send", contact=b_a, text=reply)
    await a.wait_until(lambda: len(a.received[a_b]) >= 2, 30, "A: reply")
    await asyncio.gather(a.call("sync"), b.call("sync"))
    await check_conversation(world, b, b_a, [hello, reply], sent_a)
    await check_conversation(world, a, a_b, sent_a, [hello, reply])
    assert_no_bad_warnings(world, a, b)
    scan(world, relay_storage, needles)
    await asyncio.gather(a.quit(), b.quit())


async def respawn(world: World, old: ClientProc) -> ClientProc:
    """A new process for ``old``'s keystore (same name, display name and passphrase)."""
    proc = ClientProc(world, old.name)
    proc.display = old.display
    proc.extra_args = old.extra_args
    world.procs[f"{old.name} (previous)"] = world.procs.pop(old.name)
    world.procs[old.name] = proc
    await proc.start(create=False)
    return proc
