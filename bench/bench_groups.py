"""Group benchmarks (protocol.md §26, issue 14; DESIGN.md §6 "a message to a 100-member
group: one upload, under 5 ms of client CPU").

1. Client CPU of one send to a 100-member group: the franking (``fc`` and the AMF signature,
   protocol.md §26.9), padding, the sender-key step, the AEAD, the Ed25519 signature, the 99
   epoch capabilities and the encoded ``fan`` frame: the whole work before the one upload
   (``time.process_time`` over many sends; the frames are counted).
2. Relay CPU per delivered copy: a live relay process (SQLite, durable) receives ``fan``
   frames of 99 entries over one WebSocket; utime+stime of the relay from ``/proc`` divided
   by the copies stored.
3. A 1,000-member group, created and used: 1,000 group mailboxes at the relay (with their
   capability and one delegate each), the 1,000-entry membership log built and verified, one
   message fanned out to 999 mailboxes (one upload) and every copy checked through ``info``.

The machine is shared (2 cores, several engineers): the CPU-time figures are the stable ones.
Run: ``python bench/bench_groups.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from liverelay import RelayProcess  # noqa: E402

from clientlib.client._book import credential  # noqa: E402
from clientlib.client._groups import BUCKETS, OVERHEAD  # noqa: E402
from clientlib.crypto.group import (  # noqa: E402
    GroupKeys,
    GroupSettings,
    GroupState,
    LogEntry,
    Member,
    SenderChain,
    epoch_capability,
    seal_message,
)
from clientlib.crypto.group_frank import frank_group_text, group_content  # noqa: E402
from clientlib.crypto.padding import pad  # noqa: E402
from clientlib.crypto.primitives import ed25519_public_from_seed  # noqa: E402
from clientlib.transport import HTTPTransport, WebSocketTransport  # noqa: E402
from clientlib.wire import Fanout, capability_hash, delegate_hash  # noqa: E402
from relay.amf import judge_key  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def members(n: int) -> tuple[list[Member], list[GroupKeys]]:
    keys = [GroupKeys.generate(os.urandom) for _ in range(n)]
    out = [
        Member(
            ed25519_public_from_seed(os.urandom(32)),
            k.gpk,
            k.xpk,
            os.urandom(16),
            "owner" if i == 0 else "member",
            f"m{i}",
        )
        for i, k in enumerate(keys)
    ]
    return out, keys


def client_send(n_members: int, sends: int) -> tuple[float, int, int]:
    """CPU per send (ms), frames per send, bytes per frame."""
    people, keys = members(n_members)
    me, gid, es = keys[0], os.urandom(16), os.urandom(32)
    chain = SenderChain.new(0, 0, os.urandom)
    others = people[1:]
    frames = 0
    size = 0
    text = "x" * 200
    moderator = judge_key(os.urandom(32)).public  # the relay's moderator key (kid 1)
    t0 = time.process_time()
    for i in range(sends):
        # Revision 16 (§26.9): the text is franked: fc and the AMF signature, once per send.
        content = group_content(os.urandom(16), i, text)
        franked = frank_group_text(me.sign_seed, me.gpk, gid, content, 1, moderator, os.urandom)
        body = pad(franked.plain, overhead=OVERHEAD[1], buckets=BUCKETS)
        ct = seal_message(me, gid, chain, body)
        to = b"".join(m.sid + epoch_capability(es, m.sid) for m in others)
        frame = Fanout(id=i, eid=os.urandom(16), flags=0, ct=ct, to=to, fc=franked.fc).encode()
        frames += 1
        size = len(frame)
    cpu = (time.process_time() - t0) / sends
    return cpu * 1000, frames // sends, size


async def relay_side(url: str, pid: int, n_members: int, rounds: int) -> tuple[float, int]:
    """Relay CPU per stored copy (us) for ``rounds`` fans of ``n_members - 1`` entries."""
    async with aiohttp.ClientSession() as session:
        http = HTTPTransport(session, url)
        boxes = []
        for _ in range(n_members - 1):
            owner = os.urandom(32)
            rid, sid = await http.create_mailbox(
                ed25519_public_from_seed(owner), credential(bytes(16), owner).sign, kind="pair"
            )
            cap = os.urandom(32)
            await http.set_caps(credential(rid, owner), add=[capability_hash(sid, cap)])
            boxes.append((sid, cap))
        ct = os.urandom(1024)
        async with WebSocketTransport(session, url) as ws:
            await ws.fanout(boxes, ct, eid=os.urandom(16))  # warm-up
            cpu0 = proc_cpu(pid)
            stored = 0
            for _ in range(rounds):
                n, bad = await ws.fanout(boxes, ct, eid=os.urandom(16))
                assert not bad
                stored += n
            cpu = proc_cpu(pid) - cpu0
    return cpu / stored * 1e6, stored


async def thousand(url: str, n: int) -> dict[str, float]:
    """A group of ``n`` members: mailboxes, log, one message to all."""
    out: dict[str, float] = {}
    people, keys = members(n)
    gid, es = os.urandom(16), os.urandom(32)
    t0 = time.process_time()
    state = GroupState(gid=gid)
    entries = [
        state.next_entry("create", ["big", GroupSettings().encode(), people[0].encode()], keys[0])
    ]
    state.apply(entries[0])
    for m in people[1:]:
        e = state.next_entry("add", [m.encode()], keys[0])
        state.apply(e)
        entries.append(e)
    out["log build+apply (s CPU)"] = time.process_time() - t0
    raw = [e.encode() for e in entries]
    t0 = time.process_time()
    again = GroupState.from_log(gid, [LogEntry.decode(r) for r in raw])
    out["log verify from scratch (s CPU)"] = time.process_time() - t0
    assert again.head == state.head and len(again.members) == n
    out["log bytes (KiB)"] = sum(len(r) for r in raw) / 1024
    started = time.monotonic()
    async with aiohttp.ClientSession() as session, WebSocketTransport(session, url) as ws:
        creds = []
        sem = asyncio.Semaphore(32)

        async def one(m: Member) -> tuple[bytes, bytes, bytes]:
            async with sem:
                owner = os.urandom(32)
                rid, sid = await ws.create_mailbox(
                    ed25519_public_from_seed(owner),
                    credential(bytes(16), owner).sign,
                    kind="pair",
                )
                add = [capability_hash(sid, epoch_capability(es, sid))]
                add.append(delegate_hash(sid, keys[0].gpk))
                await ws.set_caps(credential(rid, owner), add=add)
                return rid, sid, owner

        creds = await asyncio.gather(*(one(m) for m in people[1:]))
        out["1,000 mailboxes set up (s wall)"] = time.monotonic() - started
        chain = SenderChain.new(0, 0, os.urandom)
        body = pad(b"hello everyone", overhead=OVERHEAD[1], buckets=BUCKETS)
        ct = seal_message(keys[0], gid, chain, body)
        entries_to = [(sid, epoch_capability(es, sid)) for _, sid, _ in creds]
        t0 = time.monotonic()
        stored, bad = await ws.fanout(entries_to, ct, eid=os.urandom(16))
        out["one fan to 999 (ms wall)"] = (time.monotonic() - t0) * 1000
        assert stored == n - 1 and not bad, (stored, bad)
        got = 0
        for rid, _, owner in creds:
            info = await ws.mailbox_info(credential(rid, owner))
            got += info.envelopes
        out["copies found by info"] = got
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--client", action="store_true", help="only the client send figure")
    args = parser.parse_args()
    sends = 50 if args.quick else 500
    print("machine: shared 2-core box, loaded; CPU-time figures")
    cpu_ms, frames, size = client_send(100, sends)
    print(f"client, 100-member group send: {cpu_ms:.3f} ms CPU, {frames} upload, {size} B frame")
    if args.client:
        return
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BLINDRELAY_")}
        relay = RelayProcess(Path(tmp) / "data", env, Path(tmp) / "relay.log")
        relay.start()
        try:
            assert relay.proc is not None
            url = relay.url
            per_copy, stored = await relay_side(url, relay.proc.pid, 100, 5 if args.quick else 40)
            print(f"relay (SQLite), fan of 99 x 1 KiB: {per_copy:.1f} us CPU per stored copy "
                  f"({stored} copies)")  # fmt: skip
            big = await thousand(url, 200 if args.quick else 1000)
            for k, v in big.items():
                print(f"1,000-member group: {k}: {v:.2f}")
        finally:
            relay.stop()


if __name__ == "__main__":
    asyncio.run(main())
