"""Recall of an undelivered envelope (protocol.md §5.10, revision 15) on a live relay, both
backends, both transports: a recall with the deposit's secret deletes the envelope from
storage (a scan of the relay's stored bytes finds its ciphertext no more); after delivery
and ack, with a wrong secret, for an unknown envelope or mailbox it changes nothing and is
answered exactly the same; a malformed recall is ``MALFORMED`` and changes nothing."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

import aiohttp
import pytest
import redis
from relaydriver import HTTPClient, Owner, WSClient

from clientlib.wire import (
    Deposit,
    ErrorReply,
    MailboxInfo,
    Ok,
    Recall,
    RelayFrame,
    encode_map,
    recall_hash,
)
from relay.config import RelayConfig


def stored_cts(config: RelayConfig) -> list[bytes]:
    """Every envelope ciphertext the relay's storage holds right now (read from the
    database itself, not through the relay)."""
    if config.storage == "sqlite":
        with sqlite3.connect(Path(config.data_dir) / "relay.sqlite3") as conn:
            return [bytes(r[0]) for r in conn.execute("SELECT ct FROM envelopes")]
    out: list[bytes] = []
    with redis.Redis.from_url(config.redis_url) as r:
        for key in r.scan_iter(match=config.redis_key_prefix + "e:*", count=1000):
            out.extend(bytes(v) for v in r.hvals(key))
    return out


def held(config: RelayConfig, ct: bytes) -> bool:
    return any(ct in blob for blob in stored_cts(config))


async def info(ws: WSClient, owner: Owner, rid: bytes) -> MailboxInfo:
    reply = await ws.owner_op(owner, "info", rid)
    assert isinstance(reply, MailboxInfo)
    return reply


def dep(ws: WSClient, sid: bytes, eid: bytes, ct: bytes, rs: bytes | None) -> Deposit:
    rc = recall_hash(rs) if rs is not None else None
    return Deposit(id=next(ws.ids), sid=sid, eid=eid, flags=0, ct=ct, rc=rc)


async def test_recall_deletes_an_undelivered_envelope_and_nothing_else(
    relay: str, relay_config: RelayConfig
) -> None:
    owner = Owner()
    async with aiohttp.ClientSession() as s, WSClient(s, relay) as ws:
        http = HTTPClient(s, relay)
        rid, sid = await ws.create_mailbox(owner)
        rs, eid, ct = os.urandom(32), os.urandom(16), os.urandom(1024)
        other_rs, other_eid, other_ct = os.urandom(32), os.urandom(16), os.urandom(1024)
        assert isinstance(await ws.request(dep(ws, sid, eid, ct, rs)), Ok)
        assert isinstance(await ws.request(dep(ws, sid, other_eid, other_ct, other_rs)), Ok)
        assert held(relay_config, ct) and held(relay_config, other_ct)

        # Wrong secret, the other envelope's secret, unknown eid, unknown mailbox: all `ok`,
        # over both transports, and nothing changes.
        wrong = [
            (sid, eid, os.urandom(32)),
            (sid, eid, other_rs),
            (sid, os.urandom(16), rs),
            (os.urandom(16), eid, rs),
        ]
        for tsid, teid, trs in wrong:
            frame = Recall(id=next(ws.ids), sid=tsid, eid=teid, rs=trs)
            assert isinstance(await ws.request(frame), Ok)
            assert isinstance(await http.call("/v1/recall", frame), Ok)
        assert (await info(ws, owner, rid)).envelopes == 2
        assert held(relay_config, ct)

        # The right secret over HTTP: the envelope is gone from storage; the other stays.
        frame = Recall(id=next(http.ids), sid=sid, eid=eid, rs=rs)
        assert isinstance(await http.call("/v1/recall", frame), Ok)
        assert not held(relay_config, ct), "the recalled envelope is still stored"
        assert held(relay_config, other_ct)
        box = await info(ws, owner, rid)
        assert (box.envelopes, box.stored_bytes) == (1, 1024)
        # A retry is answered the same, and a retried deposit of that eid stores nothing.
        assert isinstance(await http.call("/v1/recall", frame), Ok)
        assert isinstance(await ws.request(dep(ws, sid, eid, ct, rs)), Ok)
        assert not held(relay_config, ct)
        fetched = await http.fetch(owner, rid)
        assert [e.ct for e in fetched.envs] == [other_ct]

        # On a WebSocket a recall right behind its deposit runs after it (same send id).
        eid3, ct3, rs3 = os.urandom(16), os.urandom(512), os.urandom(32)
        await ws.send_raw(dep(ws, sid, eid3, ct3, rs3).encode())
        assert isinstance(await ws.request(Recall(id=next(ws.ids), sid=sid, eid=eid3, rs=rs3)), Ok)
        assert not held(relay_config, ct3)
        assert (await info(ws, owner, rid)).envelopes == 1


async def test_recall_after_delivery_and_ack_changes_nothing(
    relay: str, relay_config: RelayConfig
) -> None:
    owner = Owner()
    async with (
        aiohttp.ClientSession() as s,
        WSClient(s, relay) as ws,
        WSClient(s, relay) as sender,
    ):
        rid, sid = await ws.create_mailbox(owner)
        await ws.subscribe(owner, rid)
        rs, eid, ct = os.urandom(32), os.urandom(16), os.urandom(256)
        assert isinstance(await sender.request(dep(sender, sid, eid, ct, rs)), Ok)
        pushed = await ws.next_push()
        while not hasattr(pushed, "env"):  # the subscription's `drained` first
            pushed = await ws.next_push()
        assert pushed.env.ct == ct  # type: ignore[attr-defined]
        await ws.ack(rid, [pushed.env.seq])  # type: ignore[attr-defined]
        before = await info(ws, owner, rid)
        assert before.envelopes == 0
        reply = await sender.request(Recall(id=next(sender.ids), sid=sid, eid=eid, rs=rs))
        assert isinstance(reply, Ok)
        after = await info(ws, owner, rid)
        assert (after.envelopes, after.stored_bytes, after.last_seq) == (0, 0, before.last_seq)
        assert (after.dedupe_records, before.dedupe_records) == (1, 1)
        # The mailbox keeps working: a new envelope is pushed as usual.
        ct2 = os.urandom(256)
        assert isinstance(await sender.request(dep(sender, sid, os.urandom(16), ct2, None)), Ok)
        nxt = await ws.next_push()
        assert nxt.env.ct == ct2 and nxt.env.seq == before.last_seq + 1  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "fields",
    [
        {"rs": b"\x00" * 31},  # a recall secret is 32 bytes
        {"eid": b"\x00" * 15},
        {"sid": "not bytes"},
        {"extra": 1},  # an unknown field
    ],
)
async def test_a_malformed_recall_is_refused_and_changes_nothing(
    relay: str, relay_config: RelayConfig, fields: dict[str, object]
) -> None:
    owner = Owner()
    async with aiohttp.ClientSession() as s, WSClient(s, relay) as ws:
        http = HTTPClient(s, relay)
        rid, sid = await ws.create_mailbox(owner)
        rs, eid, ct = os.urandom(32), os.urandom(16), os.urandom(256)
        assert isinstance(await ws.request(dep(ws, sid, eid, ct, rs)), Ok)
        raw = encode_map({"t": "recall", "id": 77, "sid": sid, "eid": eid, "rs": rs, **fields}, 1)
        status, reply = await http.post("/v1/recall", raw)
        assert status == 400 and isinstance(reply, ErrorReply) and reply.code == "MALFORMED"
        assert reply.id == 77  # HTTP echoes a readable id too (protocol.md §3.2, rev. 13)
        fut: asyncio.Future[RelayFrame] = asyncio.get_running_loop().create_future()
        ws.pending[77] = fut
        await ws.send_raw(raw)
        reply = await asyncio.wait_for(fut, 10)
        assert isinstance(reply, ErrorReply) and (reply.code, reply.id) == ("MALFORMED", 77)
        # The recall route takes nothing but a recall frame.
        status, reply = await http.post("/v1/recall", dep(ws, sid, eid, ct, rs).encode())
        assert status == 400 and isinstance(reply, ErrorReply) and reply.code == "MALFORMED"
        assert held(relay_config, ct)
        assert (await info(ws, owner, rid)).envelopes == 1
