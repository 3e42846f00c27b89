"""Acceptance (issue 5): consent enforced by a live relay process, on each backend, checked
against every byte the relay stored (``relay_storage``: SQLite files, or Redis keys, values,
RDB and rewritten AOF) and its log.

* contact requests sent raw over HTTP to an address with strict boundaries: over the size
  class and with an attachment (``BOUNDARY``), without proof of work, with a wrong counter
  and with a reused nonce (``POW``), past the daily quota (``QUOTA``); none of them is stored
  anywhere, while the two accepted ones are (the scan's positive control);
* blocking between two :class:`Client` instances: the blocked side's deposits fail and are
  stored nowhere, a raw deposit with its capability gets exactly the answer an unknown send
  id gets, and unblocking restores delivery;
* ``delete_account()`` of a user with an address (hosted prekeys), two contacts, a ban and
  envelopes waiting for it: afterwards no identifier, key, hash, blob or ciphertext of that
  user is left in live storage (SQLite: once the WAL is checkpointed; before that the WAL
  still holds it), while the other users' data still is;
* an address asking for no proof of work leaves no nonce (and so no send id) behind.
"""

from __future__ import annotations

import asyncio
import base64
import os
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import relaydriver
from clientkit import befriend, make, wait_for
from liverelay import WITH_CLUSTER, RelayProcess
from relaydriver import HTTPClient, Owner

from clientlib.client import (
    Client,
    ClientConfig,
    ClientWarning,
    DeliveryChanged,
    MessageReceived,
    RequestReceived,
)
from clientlib.client.state import OutboxRecord
from clientlib.crypto.primitives import (
    ed25519_expand_seed,
    ed25519_public_from_seed,
    ed25519_sign,
)
from clientlib.errors import RelayRejected
from clientlib.transport import HTTPTransport, MailboxCredential
from clientlib.wire import (
    OWNER_COMMAND_CONTEXT,
    Boundaries,
    Deposit,
    attachment_capability_hash,
    capability_hash,
    leading_zero_bits,
    pow_digest,
    solve,
)

STRICT = Boundaries(size=2048, att=0, day=2, pow=8)


# --- helpers --------------------------------------------------------------------------------


def cred(rid: bytes, seed: bytes) -> MailboxCredential:
    """The owner credential of a mailbox whose owner key has Ed25519 seed ``seed``."""
    sk = ed25519_expand_seed(seed)
    return MailboxCredential(rid, lambda cmd: ed25519_sign(sk, OWNER_COMMAND_CONTEXT + cmd))


async def rejected(call: Any) -> str:
    with pytest.raises(RelayRejected) as info:
        await call
    return info.value.code


def forms(value: bytes) -> dict[str, bytes]:
    """The encodings under which a value could have been written down."""
    out = {"raw": value, "hex": value.hex().encode(), "HEX": value.hex().upper().encode()}
    if len(value) >= 16:  # base64 of a short value would match by accident
        out["base64"] = base64.b64encode(value).rstrip(b"=")
        out["base64url"] = base64.urlsafe_b64encode(value).rstrip(b"=")
    return out


def with_chunk(label: str, value: bytes) -> dict[str, bytes]:
    """A value and a distinctive 32-byte chunk of it (from the middle)."""
    mid = len(value) // 2
    return {label: value, f"{label} [32-byte chunk]": value[mid : mid + 32]}


def hits(blobs: dict[str, bytes], needles: dict[str, bytes]) -> list[str]:
    return [
        f"{label} ({form}) in {source}"
        for label, needle in needles.items()
        for form, value in forms(needle).items()
        for source, blob in blobs.items()
        if value in blob
    ]


def found(blobs: dict[str, bytes], value: bytes) -> bool:
    return any(v in blob for v in (value, value.hex().encode()) for blob in blobs.values())


def checkpoint(relay: RelayProcess) -> None:
    """Checkpoint the SQLite WAL into the database and truncate it, from a second connection
    (the relay only checkpoints after a purge that deleted something, or every 1,000 pages)."""
    (db,) = relay.data_dir.glob("*.sqlite3")
    conn = sqlite3.connect(db, isolation_level=None, timeout=5)
    try:
        deadline = time.monotonic() + 10
        while True:
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy == 0:
                break
            assert time.monotonic() < deadline, "the WAL checkpoint stayed busy"
            time.sleep(0.05)
    finally:
        conn.close()
    wal = db.with_name(db.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


# --- 1. boundaries, proof of work and quota: refusals store nothing --------------------------


# Also on a real Redis Cluster (3 masters, 3 replicas; every byte of every node scanned).
@WITH_CLUSTER
async def test_refused_requests_are_stored_nowhere(
    live_relay: RelayProcess, relay_storage: Any, session: aiohttp.ClientSession
) -> None:
    http = HTTPTransport(session, live_relay.url)
    owner = Owner()
    rid, sid = await http.create_mailbox(owner.pk, owner.sign, kind="addr", boundaries=STRICT)
    relaydriver.remember(rid, sid)
    addr = MailboxCredential(rid, owner.sign)
    assert await http.boundaries(sid) == STRICT

    async def proof(eid: bytes) -> tuple[bytes, int]:
        chal = await http.pow_challenge(sid)
        assert chal.bits == STRICT.pow
        return chal.nonce, await asyncio.to_thread(solve, sid, chal.nonce, eid, chal.bits)

    def request() -> tuple[bytes, bytes, bytes]:
        """A fresh (eid, ciphertext, handle); the random bytes are what the scan looks for."""
        return os.urandom(16), os.urandom(2048), os.urandom(16)

    accepted: list[tuple[bytes, bytes]] = []
    used: list[tuple[bytes, int]] = []
    for _ in range(2):
        eid, ct, hdl = request()
        used.append(await proof(eid))
        await http.deposit(sid, ct, eid=eid, hdl=hdl, pow=used[-1])
        accepted.append((ct, hdl))

    needles: dict[str, bytes] = {}  # every byte of the refused requests

    async def refuse(name: str, code: str, ct: bytes, **kw: Any) -> None:
        got = await rejected(http.deposit(sid, ct, **kw))
        assert got == code, name
        needles.update(with_chunk(f"refused ({name})", ct))
        needles.update({f"refused ({name}) eid": kw["eid"], f"refused ({name}) handle": kw["hdl"]})

    # Over the size class and with an attachment: BOUNDARY, even with valid work.
    eid, _, hdl = request()
    await refuse("over size", "BOUNDARY", os.urandom(4096), eid=eid, hdl=hdl, pow=await proof(eid))
    eid, ct, hdl = request()
    att = [os.urandom(16)]
    await refuse("attachment", "BOUNDARY", ct, eid=eid, hdl=hdl, att=att, pow=await proof(eid))
    # Without proof of work, with a counter that does not solve it, with a used nonce: POW.
    eid, ct, hdl = request()
    await refuse("no pow", "POW", ct, eid=eid, hdl=hdl)
    eid, ct, hdl = request()
    nonce, _ = await proof(eid)
    wrong = next(c for c in range(1 << 16) if leading_zero_bits(pow_digest(sid, nonce, eid, c)) < 8)
    await refuse("wrong counter", "POW", ct, eid=eid, hdl=hdl, pow=(nonce, wrong))
    eid, ct, hdl = request()
    reused = (used[0][0], await asyncio.to_thread(solve, sid, used[0][0], eid, STRICT.pow))
    await refuse("reused nonce", "POW", ct, eid=eid, hdl=hdl, pow=reused)
    # A valid third request of the day: QUOTA (day = 2).
    eid, ct, hdl = request()
    await refuse("past quota", "QUOTA", ct, eid=eid, hdl=hdl, pow=await proof(eid))

    info = await http.mailbox_info(addr)
    assert (info.envelopes, info.requests, info.requests_today) == (2, 2, 2)
    assert (info.last_seq, info.stored_bytes) == (2, 2 * 2048)

    blobs = relay_storage.dump()
    assert len(needles) == 6 * 4
    assert not hits(blobs, needles), hits(blobs, needles)
    # Positive control: the accepted requests are stored (not yet acknowledged), and found.
    for i, (ct, hdl) in enumerate(accepted):
        for label, value in (with_chunk(f"accepted {i}", ct) | {f"handle {i}": hdl}).items():
            assert found(blobs, value), f"{label} not found: the storage scan reads nothing"

    # The owner gets exactly the two accepted requests, with their handles.
    envs, more = await http.fetch(addr)
    assert [(e.ct, e.hdl) for e in envs] == accepted and not more


# --- 2. blocking ------------------------------------------------------------------------------


async def test_block_refuses_and_stores_nothing_unblock_restores(
    live_relay: RelayProcess, relay_storage: Any, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    url = live_relay.url
    async with make(tmp_path, "alice", url) as alice, make(tmp_path, "bob", url) as bob:
        a_bob, b_alice = await befriend(alice, bob)
        label = f"contact {a_bob}"
        first = await bob.send(b_alice, "before the block")
        assert (await wait_for(alice, MessageReceived)).message.text == "before the block"
        sent = await wait_for(bob, DeliveryChanged, lambda d: d.message_id == first.id)
        assert sent.state == "sent"

        assert (await alice.block(a_bob)).blocked
        assert dict(await alice.relay_holdings())[label].caps == 0

        # Bob's client: the deposit fails, exactly as if the mailbox had been deleted.
        msg = await bob.send(b_alice, "while blocked")
        # send() returned with the sealed envelope in the outbox, not yet deposited (nothing
        # awaited since): take its ciphertext for the scan.
        outbox = [OutboxRecord.from_bytes(raw) for _, raw in bob._book.ks.items("outbox")]
        (blocked_ct,) = [r.ct for r in outbox if r.msg is not None and r.msg.hex() == msg.id]
        warn = await wait_for(bob, ClientWarning, lambda w: w.kind == "mailbox_lost")
        assert warn.detail == "AUTH"
        failed = await wait_for(bob, DeliveryChanged, lambda d: d.message_id == msg.id)
        assert failed.state == "failed"

        # Raw deposits with Bob's capability get the answer a random unknown send id gets.
        record = next(iter(bob._book.contacts.values()))
        assert record.send is not None and record.sendcap is not None
        raw = HTTPClient(session, url)
        raw_ct = os.urandom(2048)

        async def attempt(sid: bytes) -> tuple[int, object]:
            dep = Deposit(id=7, sid=sid, eid=os.urandom(16), flags=0, ct=raw_ct, cap=record.sendcap)
            return await raw.post("/v1/deposit", dep.encode())

        blocked_answer = await attempt(record.send)
        unknown_answer = await attempt(os.urandom(16))
        assert blocked_answer == unknown_answer
        assert getattr(blocked_answer[1], "code", None) == "AUTH"
        http = HTTPTransport(session, url)
        for sid in (record.send, os.urandom(16)):
            code = await rejected(http.deposit(sid, raw_ct, eid=os.urandom(16), cap=record.sendcap))
            assert code == "AUTH"

        info = dict(await alice.relay_holdings())[label]
        # only Bob's privacy settings (sent when the conversation starts, §22.6) and the
        # message before the block
        assert (info.envelopes, info.last_seq) == (0, 2)
        blobs = relay_storage.dump()
        needles = with_chunk("blocked message", blocked_ct) | with_chunk("raw deposit", raw_ct)
        assert not hits(blobs, needles), hits(blobs, needles)
        assert found(blobs, record.send), "the scan does not see the pairwise mailbox"

        # Unblocking restores delivery; the blocked message never arrives.
        await alice.unblock(a_bob)
        # The capability and (media on) the attachment capability (§4.8, revision 8).
        assert dict(await alice.relay_holdings())[label].caps == 2
        last = await bob.send(b_alice, "after the unblock")
        got = await wait_for(alice, MessageReceived)
        assert got.message.text == "after the unblock"
        delivered = await wait_for(bob, DeliveryChanged, lambda d: d.message_id == last.id)
        assert delivered.state == "sent"
        assert [m.text for m in alice.messages(a_bob)] == ["before the block", "after the unblock"]


# --- 3. account deletion --------------------------------------------------------------------


# Also on a real Redis Cluster (3 masters, 3 replicas; every byte of every node scanned).
@WITH_CLUSTER
async def test_delete_account_leaves_nothing_of_the_user(
    live_relay: RelayProcess, relay_storage: Any, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    url = live_relay.url
    http = HTTPTransport(session, url)
    needles: dict[str, bytes] = {}  # every value the relay could hold for Dana
    async with (
        make(tmp_path, "dana", url) as dana,
        make(tmp_path, "alice", url) as alice,
        make(tmp_path, "bob", url) as bob,
        make(tmp_path, "carol", url) as carol,
    ):
        # Dana: an address with hosted prekeys, two contacts, one declined requester (a ban).
        d_alice, a_dana = await befriend(dana, alice)
        d_bob, b_dana = await befriend(dana, bob)
        inv = await dana.create_invitation()
        await carol.send_request(inv)
        req = await wait_for(dana, RequestReceived)
        banned = dana._book.requests[bytes.fromhex(req.request.id)].hdl
        assert banned is not None
        await dana.decline_request(req.request)
        for client in (alice, bob, carol):
            needles[f"{client.name}'s handle for Dana's address"] = client._book.handle(inv.sid)
        assert needles["carol's handle for Dana's address"] == banned

        (address,) = dana._book.addresses.values()
        contacts = list(dana._book.contacts.values())
        mailboxes = [("address", address.rid, address.sid, address.owner)]
        mailboxes += [(f"contact {i}", c.rid, c.sid, c.owner) for i, c in enumerate(contacts)]
        for label, rid, sid, seed in mailboxes:
            needles[f"{label} rid"] = rid
            needles[f"{label} sid"] = sid
            needles[f"{label} owner key"] = ed25519_public_from_seed(seed)
        for i, c in enumerate(contacts):
            needles[f"contact {i} capability hash"] = capability_hash(c.sid, c.mycap)
            h_att = attachment_capability_hash(c.sid, c.mycap)
            needles[f"contact {i} attachment capability hash"] = h_att
        holdings = dict(await dana.relay_holdings())
        assert holdings["address 1"].bans == 1 and holdings["address 1"].prekey_static == 1
        # Each: the capability and the attachment capability (media on, §4.8 revision 8).
        assert [holdings[f"contact {cid}"].caps for cid in (d_alice, d_bob)] == [2, 2]
        await dana.close()

        # Dana is offline: her contacts write, and a stranger's request waits on her address.
        for client, to_dana in ((alice, a_dana), (bob, b_dana)):
            for i in range(2):
                await client.send(to_dana, f"{client.name} to Dana, {i}")
            async with asyncio.timeout(15):
                await client.sync()
        stranger_hdl, eid = os.urandom(16), os.urandom(16)
        chal = await http.pow_challenge(address.sid)
        work = (chal.nonce, await asyncio.to_thread(solve, address.sid, chal.nonce, eid, chal.bits))
        await http.deposit(address.sid, os.urandom(2048), eid=eid, hdl=stranger_hdl, pow=work)
        needles["a stranger's handle"] = stranger_hdl

        # What waits for Dana, read without acknowledging (fetch is a peek).
        waiting = 0
        for label, rid, _, seed in mailboxes:
            envs, more = await http.fetch(cred(rid, seed), max=256)
            assert not more
            waiting += len(envs)
            for j, env in enumerate(envs):
                needles |= with_chunk(f"{label} envelope {j}", env.ct)
                needles[f"{label} envelope {j} eid"] = env.eid
        assert waiting == 5
        # The hosted prekeys: the static part, and one one-time item (consumed by the fetch).
        static, item = await http.fetch_bundle(address.sid)
        assert item is not None
        needles |= with_chunk("prekey static part", static)
        needles |= with_chunk("one-time prekey item", item)
        relaydriver.remember(*needles.values())  # never logged either

        # The other users' data, which must survive (the scan's positive control).
        (a_rec,) = alice._book.contacts.values()
        survivors = {
            "Alice's mailbox rid": a_rec.rid,
            "Alice's mailbox sid": a_rec.sid,
            "Alice's owner key": ed25519_public_from_seed(a_rec.owner),
            "Alice's capability hash": capability_hash(a_rec.sid, a_rec.mycap),
        }
        # Everything Dana has at the relay right now is found by the scan (what was handed out
        # or acknowledged already, the one-time item and Alice's and Bob's requests with their
        # handles, may or may not be: SQLite keeps old pages in its WAL until a checkpoint).
        gone = ("one-time prekey item", "alice's handle", "bob's handle")
        before = relay_storage.dump()
        for name, value in (survivors | needles).items():
            if not name.startswith(gone):
                assert found(before, value), f"{name} not found before the deletion"

        # Dana deletes her account. She goes online over HTTP without subscribing, so that
        # nothing is acknowledged first: the waiting envelopes go with their mailboxes.
        dana = Client.open(
            tmp_path / "dana.keystore",
            "pw-dana long test passphrase",
            config=ClientConfig(connect=False, kdf_strength="minimum"),
        )
        await dana.start()
        dana._link.http = HTTPTransport(session, url)
        await dana.delete_account()
        assert not (tmp_path / "dana.keystore").exists()
        for _, rid, sid, seed in mailboxes:
            assert await rejected(http.mailbox_info(cred(rid, seed))) == "AUTH"
            assert await rejected(http.fetch_bundle(sid)) == "AUTH"
        await alice.send(a_dana, "still there?")
        warn = await wait_for(alice, ClientWarning, lambda w: w.kind == "mailbox_lost")
        assert warn.detail == "AUTH"

        # No checkpoint of our own: deleting a mailbox truncates the SQLite WAL, so the old
        # page versions (secure_delete zeroes only the new ones) are gone at once.
        after = relay_storage.dump()
        left = hits(after, needles)
        assert not left, left
        for name, value in survivors.items():
            assert found(after, value), f"{name} is gone: the scan reads nothing"


async def test_deleted_address_leaves_no_pow_nonce(
    live_relay: RelayProcess, relay_storage: Any, tmp_path: Path
) -> None:
    url = live_relay.url
    no_work = Boundaries(size=4096, att=0, day=100, pow=0)
    async with make(tmp_path, "erin", url) as erin, make(tmp_path, "dana", url) as dana:
        await dana.set_boundaries(no_work)
        inv = await dana.create_invitation()
        await erin.send_request(inv)
        await wait_for(dana, RequestReceived)
        (address,) = dana._book.addresses.values()
        needles = {
            "address rid": address.rid,
            "address owner key": ed25519_public_from_seed(address.owner),
        }
        await dana.delete_account()
        # An address asking for no work gets no nonce stored (and the client asks for none),
        # so after deletion its send id is nowhere, not even in a pending challenge.
        blobs = relay_storage.dump()
        needles["address sid"] = address.sid
        assert not hits(blobs, needles), hits(blobs, needles)
