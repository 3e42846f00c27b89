"""The storage contract (relay/storage/base.py), run against every backend.

Each test drives time through the ``now`` argument, so expiry is deterministic. Backend-only
checks (file modes, key TTLs, hash slots, fault injection) follow the shared suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from redis.crc import key_slot

from clientlib.wire import DEFAULT_BOUNDARIES, Boundaries
from relay.storage._common import day_of, mailbox_deadline
from relay.storage.base import (
    SECONDS_PER_HOUR,
    AuditRecord,
    BoundaryExceeded,
    DepositOutcome,
    DuplicateReport,
    EnvelopeStore,
    FrankingKey,
    IdCollision,
    MailboxNotFound,
    MailboxRecord,
    MailboxSnapshot,
    PowRequired,
    QuotaExceeded,
    RelayStamp,
    ReportAlreadyResolved,
    ReportNotFound,
    ReportRecord,
    ReportResolution,
    StampMismatch,
    StorageFull,
    StorageUnavailable,
    StoreGauges,
    StoreLimits,
    WrongKind,
)
from relay.storage.policy import checks_for
from relay.storage.redis import RedisStore
from relay.storage.sqlite import SCHEMA_VERSION, SQLiteStore

NOW = 1_750_000_000
LIMITS = StoreLimits(
    max_envelopes=1000,
    max_bytes=1 << 20,
    envelope_ttl_s=3600,
    dedupe_window_s=600,
    mailbox_idle_ttl_s=10 * 86_400,
)

MakeStore = Callable[..., Awaitable[EnvelopeStore]]
RedisServerFactory = Callable[..., Any]  # tests/conftest.py: factory(*args, durable=True)


def new_id() -> bytes:
    return os.urandom(16)


def new_record() -> MailboxRecord:
    return MailboxRecord(
        rid=new_id(), sid=new_id(), owner_key=os.urandom(32), created_day=day_of(NOW)
    )


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("redis-cluster", marks=pytest.mark.redis),
    ]
)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make_store(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[MakeStore]:
    """``await make_store(limits)`` opens a store on this test's database; all closed after.
    ``redis-cluster`` is a real Redis Cluster (3 masters, 3 replicas; every write waits for
    its replica)."""
    url = ""
    if backend == "redis":
        url = request.getfixturevalue("redis_url")
    elif backend == "redis-cluster":
        url = request.getfixturevalue("redis_cluster_url")
    opened: list[EnvelopeStore] = []

    async def make(limits: StoreLimits = LIMITS) -> EnvelopeStore:
        store: EnvelopeStore
        if backend == "sqlite":
            store = SQLiteStore(tmp_path / "relay.db", limits)
        elif backend == "redis-cluster":
            store = RedisStore(url, limits, cluster=True, wait_replicas=1)
        else:
            store = RedisStore(url, limits)
        await store.open()
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.aclose()


@pytest.fixture
async def store(make_store: MakeStore) -> EnvelopeStore:
    return await make_store()


async def new_mailbox(store: EnvelopeStore, now: int = NOW) -> MailboxRecord:
    record = new_record()
    await store.create_mailbox(record, now)
    return record


async def put(
    store: EnvelopeStore,
    rec: MailboxRecord,
    size: int = 100,
    now: int = NOW,
    eid: bytes | None = None,
) -> DepositOutcome:
    return await store.deposit(rec.sid, eid or new_id(), 0, os.urandom(size), None, now)


# --- mailboxes ----------------------------------------------------------------------------


async def test_create_get_and_id_collisions(store: EnvelopeStore) -> None:
    rec = await new_mailbox(store)
    got = await store.get_mailbox(rec.rid, NOW)
    assert got is not None
    assert (got.rid, got.sid, got.owner_key, got.created_day) == (
        rec.rid,
        rec.sid,
        rec.owner_key,
        rec.created_day,
    )
    assert await store.get_mailbox(new_id(), NOW) is None
    assert await store.resolve_sid(rec.sid, NOW) == rec.rid
    assert await store.resolve_sid(new_id(), NOW) is None

    same_rid = MailboxRecord(rec.rid, new_id(), os.urandom(32), rec.created_day)
    with pytest.raises(IdCollision) as info:
        await store.create_mailbox(same_rid, NOW)
    assert rec.rid.hex() not in str(info.value)
    same_sid = MailboxRecord(new_id(), rec.sid, os.urandom(32), rec.created_day)
    with pytest.raises(IdCollision):
        await store.create_mailbox(same_sid, NOW)
    # The refused creations left nothing behind and changed nothing.
    assert await store.get_mailbox(same_sid.rid, NOW) is None
    assert await store.resolve_sid(same_rid.sid, NOW) is None
    assert await store.resolve_sid(rec.sid, NOW) == rec.rid
    assert (await put(store, rec)).rid == rec.rid


async def test_deposit_fetch_fifo_round_trip(store: EnvelopeStore) -> None:
    rec = await new_mailbox(store)
    sent = []
    for i in range(5):
        eid, ct, fc = new_id(), os.urandom(256 + i), (os.urandom(32) if i % 2 else None)
        out = await store.deposit(rec.sid, eid, i % 2, ct, fc, NOW + i)
        assert (out.rid, out.seq, out.ts, out.duplicate) == (rec.rid, i + 1, NOW + i, False)
        sent.append((i + 1, eid, NOW + i, i % 2, ct, fc))
    envs = await store.fetch(rec.rid, 0, 100, 1 << 20, NOW + 10)
    assert [(e.seq, e.eid, e.ts, e.flags, e.ct, e.fc) for e in envs] == sent


async def test_deposit_to_unknown_mailbox(store: EnvelopeStore) -> None:
    with pytest.raises(MailboxNotFound):
        await store.deposit(new_id(), new_id(), 0, b"x" * 256, None, NOW)
    assert await store.count_envelopes() == 0


async def test_seq_never_reused_after_ack(store: EnvelopeStore) -> None:
    rec = await new_mailbox(store)
    for _ in range(3):
        await put(store, rec)
    assert await store.ack(rec.rid, [1, 2, 3]) == 3
    assert (await put(store, rec)).seq == 4
    assert [e.seq for e in await store.fetch(rec.rid, 0, 10, 1 << 20, NOW)] == [4]


async def test_seq_never_reused_after_expiry_and_purge(store: EnvelopeStore) -> None:
    rec = await new_mailbox(store)
    await put(store, rec)
    later = NOW + LIMITS.envelope_ttl_s
    assert await store.purge_expired(later) >= 1
    assert (await put(store, rec, now=later)).seq == 2


async def test_an_envelope_ttl_shortens_its_life_within_the_envelope_ttl(
    store: EnvelopeStore,
) -> None:
    """protocol.md §5.7 (revision 14): ``ttl`` makes one envelope expire sooner, on read and
    in the purge, without touching its neighbours; it never extends past the envelope TTL."""
    rec = await new_mailbox(store)
    short = await store.deposit(rec.sid, new_id(), 0, b"s" * 256, None, NOW, ttl=30)
    capped = await store.deposit(rec.sid, new_id(), 0, b"c" * 256, None, NOW, ttl=2**32 - 1)
    plain = await store.deposit(rec.sid, new_id(), 0, b"p" * 256, None, NOW)
    seqs = [short.seq, capped.seq, plain.seq]
    assert [e.seq for e in await store.fetch(rec.rid, 0, 10, 1 << 20, NOW + 29)] == seqs
    assert [e.seq for e in await store.fetch(rec.rid, 0, 10, 1 << 20, NOW + 30)] == seqs[1:]
    await store.purge_expired(NOW + 31)  # (a backend may already have dropped it on read)
    assert await store.count_envelopes() == 2
    end = NOW + LIMITS.envelope_ttl_s
    assert [e.seq for e in await store.fetch(rec.rid, 0, 10, 1 << 20, end - 1)] == seqs[1:]
    assert await store.fetch(rec.rid, 0, 10, 1 << 20, end) == []
    await store.purge_expired(end)
    assert await store.count_envelopes() == 0
    # The purge alone (no read first) removes a short-lived envelope at its own time.
    other = await new_mailbox(store, now=end)
    await store.deposit(other.sid, new_id(), 0, b"q" * 256, None, end, ttl=60)
    await store.deposit(other.sid, new_id(), 0, b"r" * 256, None, end)
    assert await store.purge_expired(end + 59) == 0
    assert await store.purge_expired(end + 60) == 1
    assert await store.count_envelopes() == 1


# --- recall (protocol.md §5.10, revision 15) ---------------------------------------------


async def test_recall_deletes_an_undelivered_envelope_with_its_hash_only(
    store: EnvelopeStore,
) -> None:
    """A recall deletes the envelope (counters and gauges follow) only with the deposit's
    recall hash, only while it is stored and within the dedupe window; everything else
    changes nothing. A retried deposit of the recalled eid is still a duplicate."""
    rec = await new_mailbox(store)
    rc, other = os.urandom(32), os.urandom(32)
    kept = await store.deposit(rec.sid, new_id(), 0, b"k" * 256, None, NOW, rc=os.urandom(32))
    eid = new_id()
    gone = await store.deposit(rec.sid, eid, 0, b"g" * 512, None, NOW, rc=rc)
    plain_eid = new_id()
    await store.deposit(rec.sid, plain_eid, 0, b"p" * 256, None, NOW)
    before = await store.gauges()
    # Wrong hash, unknown eid, unknown send id, an envelope deposited without a hash.
    assert not await store.recall(rec.sid, eid, other, NOW + 1)
    assert not await store.recall(rec.sid, new_id(), rc, NOW + 1)
    assert not await store.recall(new_id(), eid, rc, NOW + 1)
    assert not await store.recall(rec.sid, plain_eid, rc, NOW + 1)
    assert await store.gauges() == before
    assert len(await store.fetch(rec.rid, 0, 10, 1 << 20, NOW + 1)) == 3
    # The right hash deletes it, once.
    assert await store.recall(rec.sid, eid, rc, NOW + 2)
    assert not await store.recall(rec.sid, eid, rc, NOW + 2)
    left = await store.fetch(rec.rid, 0, 10, 1 << 20, NOW + 2)
    assert [e.seq for e in left] == [kept.seq, gone.seq + 1]
    after = await store.gauges()
    assert (after.envelopes, after.bytes) == (before.envelopes - 1, before.bytes - 512)
    snap = await store.mailbox_info(rec.rid, NOW + 2)
    assert snap is not None and (snap.envelopes, snap.stored_bytes) == (2, 512)
    retry = await store.deposit(rec.sid, eid, 0, b"g" * 512, None, NOW + 3, rc=rc)
    assert retry.duplicate and retry.seq == gone.seq
    assert len(await store.fetch(rec.rid, 0, 10, 1 << 20, NOW + 3)) == 2


async def test_recall_after_ack_or_past_the_dedupe_window_changes_nothing(
    store: EnvelopeStore,
) -> None:
    rec = await new_mailbox(store)
    rc = os.urandom(32)
    eid = new_id()
    out = await store.deposit(rec.sid, eid, 0, b"a" * 256, None, NOW, rc=rc)
    assert await store.ack(rec.rid, [out.seq]) == 1
    assert not await store.recall(rec.sid, eid, rc, NOW + 1)
    # Past the dedupe window the eid no longer maps to the envelope: it stays.
    late_eid = new_id()
    await store.deposit(rec.sid, late_eid, 0, b"b" * 256, None, NOW, rc=rc)
    late = NOW + LIMITS.dedupe_window_s
    assert not await store.recall(rec.sid, late_eid, rc, late)
    assert len(await store.fetch(rec.rid, 0, 10, 1 << 20, late)) == 1


# --- idempotency --------------------------------------------------------------------------


async def test_deposit_is_idempotent_within_window(store: EnvelopeStore) -> None:
    rec = await new_mailbox(store)
    eid = new_id()
    first = await store.deposit(rec.sid, eid, 0, b"a" * 256, None, NOW)
    retry = await store.deposit(rec.sid, eid, 0, b"b" * 512, None, NOW + 5)
    assert (retry.seq, retry.ts, retry.duplicate, retry.rid) == (first.seq, NOW, True, rec.rid)
    assert first.duplicate is False
    envs = await store.fetch(rec.rid, 0, 10, 1 << 20, NOW + 5)
    assert [(e.seq, e.ct) for e in envs] == [(1, b"a" * 256)]
    assert await store.count_envelopes() == 1

    # Still deduplicated after the ack, within the window.
    assert await store.ack(rec.rid, [first.seq]) == 1
    again = await store.deposit(rec.sid, eid, 0, b"a" * 256, None, NOW + 10)
    assert (again.seq, again.duplicate) == (first.seq, True)
    assert await store.fetch(rec.rid, 0, 10, 1 << 20, NOW + 10) == []

    # After the window the eid is new again.
    late = NOW + LIMITS.dedupe_window_s
    fresh = await store.deposit(rec.sid, eid, 0, b"a" * 256, None, late)
    assert (fresh.seq, fresh.duplicate, fresh.ts) == (2, False, late)


async def test_dedupe_is_per_mailbox(store: EnvelopeStore) -> None:
    a, b = await new_mailbox(store), await new_mailbox(store)
    eid = new_id()
    assert (await put(store, a, eid=eid)).duplicate is False
    assert (await put(store, b, eid=eid)).duplicate is False


async def test_purge_drops_expired_dedupe_records(store: EnvelopeStore) -> None:
    rec = await new_mailbox(store)
    eid = new_id()
    await put(store, rec, eid=eid)
    assert await store.ack(rec.rid, [1]) == 1
    assert await store.purge_expired(NOW + LIMITS.dedupe_window_s) >= 1
    out = await put(store, rec, eid=eid, now=NOW + LIMITS.dedupe_window_s)
    assert (out.seq, out.duplicate) == (2, False)


# --- quotas -------------------------------------------------------------------------------


async def test_count_quota(make_store: MakeStore) -> None:
    store = await make_store(StoreLimits(max_envelopes=3, envelope_ttl_s=3600))
    rec = await new_mailbox(store)
    eids = [new_id() for _ in range(3)]
    for eid in eids:
        await put(store, rec, eid=eid)
    with pytest.raises(QuotaExceeded):
        await put(store, rec)
    assert await store.count_envelopes() == 3
    # A retry of a stored envelope is still answered at the quota.
    assert (await put(store, rec, eid=eids[0])).duplicate is True
    assert await store.ack(rec.rid, [2]) == 1
    assert (await put(store, rec)).seq == 4
    # Expired envelopes do not hold quota.
    out = await put(store, rec, now=NOW + 3600)
    assert out.seq == 5
    assert [e.seq for e in await store.fetch(rec.rid, 0, 10, 1 << 20, NOW + 3600)] == [5]


async def test_byte_quota(make_store: MakeStore) -> None:
    store = await make_store(StoreLimits(max_bytes=1000))
    rec = await new_mailbox(store)
    await put(store, rec, size=400)
    await put(store, rec, size=400)
    with pytest.raises(QuotaExceeded):
        await put(store, rec, size=400)
    assert (await put(store, rec, size=200)).seq == 3  # exactly at the quota
    with pytest.raises(QuotaExceeded):
        await put(store, rec, size=1)
    assert [len(e.ct) for e in await store.fetch(rec.rid, 0, 10, 1 << 20, NOW)] == [400, 400, 200]
    assert await store.ack(rec.rid, [1]) == 1
    assert (await put(store, rec, size=400)).seq == 4


# --- fetch and ack ------------------------------------------------------------------------


async def test_fetch_limit_bytes_and_after_seq(store: EnvelopeStore) -> None:
    rec = await new_mailbox(store)
    for _ in range(10):
        await put(store, rec, size=100)

    async def seqs(after: int, limit: int, max_bytes: int) -> list[int]:
        return [e.seq for e in await store.fetch(rec.rid, after, limit, max_bytes, NOW)]

    assert await seqs(0, 3, 1 << 20) == [1, 2, 3]
    assert await seqs(5, 100, 1 << 20) == [6, 7, 8, 9, 10]
    assert await seqs(0, 100, 250) == [1, 2]
    assert await seqs(0, 100, 300) == [1, 2, 3]
    assert await seqs(3, 100, 10) == [4]  # always at least one
    assert await seqs(0, 0, 1 << 20) == []
    assert await seqs(10, 100, 1 << 20) == []
    assert await store.fetch(new_id(), 0, 10, 1 << 20, NOW) == []


async def test_ack_ignores_unknown_and_counts(store: EnvelopeStore) -> None:
    rec, other = await new_mailbox(store), await new_mailbox(store)
    for _ in range(4):
        await put(store, rec)
    await put(store, other)
    assert await store.ack(rec.rid, [2, 2, 99, 3]) == 2
    assert await store.ack(rec.rid, [2, 3]) == 0
    assert await store.ack(rec.rid, []) == 0
    assert await store.ack(new_id(), [1]) == 0
    assert await store.ack(other.rid, [4]) == 0  # another mailbox's seq
    assert [e.seq for e in await store.fetch(rec.rid, 0, 10, 1 << 20, NOW)] == [1, 4]
    assert len(await store.fetch(other.rid, 0, 10, 1 << 20, NOW)) == 1
    assert await store.count_envelopes() == 3


# --- expiry -------------------------------------------------------------------------------


async def test_envelope_ttl(store: EnvelopeStore) -> None:
    rec = await new_mailbox(store)
    await put(store, rec)
    await put(store, rec, now=NOW + 100)
    ttl = LIMITS.envelope_ttl_s
    assert [e.seq for e in await store.fetch(rec.rid, 0, 10, 1 << 20, NOW + ttl - 1)] == [1, 2]
    assert [e.seq for e in await store.fetch(rec.rid, 0, 10, 1 << 20, NOW + ttl)] == [2]
    assert await store.purge_expired(NOW + ttl + 100) >= 1
    assert await store.count_envelopes() == 0
    assert await store.get_mailbox(rec.rid, NOW + ttl + 100) is not None


async def test_mailbox_idle_expiry_and_touch(store: EnvelopeStore) -> None:
    rec = await new_mailbox(store)
    deadline = mailbox_deadline(day_of(NOW), LIMITS)
    assert deadline - NOW >= LIMITS.mailbox_idle_ttl_s
    assert await store.get_mailbox(rec.rid, deadline - 1) is not None
    assert await store.get_mailbox(rec.rid, deadline) is None
    assert await store.resolve_sid(rec.sid, deadline) is None
    with pytest.raises(MailboxNotFound):
        await put(store, rec, now=deadline)

    # Owner activity restarts the idle period.
    await store.touch_mailbox(rec.rid, NOW + 5 * 86_400)
    new_deadline = mailbox_deadline(day_of(NOW + 5 * 86_400), LIMITS)
    assert await store.get_mailbox(rec.rid, deadline) is not None
    assert (await put(store, rec, now=deadline)).seq == 1
    assert await store.get_mailbox(rec.rid, new_deadline) is None
    assert await store.fetch(rec.rid, 0, 10, 1 << 20, new_deadline) == []

    # Touching an expired mailbox does not revive it; purge removes it and its data.
    await store.touch_mailbox(rec.rid, new_deadline)
    assert await store.get_mailbox(rec.rid, new_deadline) is None
    assert await store.purge_expired(new_deadline) >= 1
    assert await store.count_envelopes() == 0
    assert await store.delete_mailbox(rec.rid) is False


async def test_expired_mailbox_ids_can_be_reused(store: EnvelopeStore) -> None:
    rec = await new_mailbox(store)
    eid = new_id()
    await put(store, rec, eid=eid)
    deadline = mailbox_deadline(day_of(NOW), LIMITS)
    again = MailboxRecord(rec.rid, rec.sid, os.urandom(32), day_of(deadline))
    await store.create_mailbox(again, deadline)  # expired but not yet purged
    got = await store.get_mailbox(rec.rid, deadline)
    assert got is not None and got.owner_key == again.owner_key
    out = await put(store, rec, eid=eid, now=deadline)
    assert (out.seq, out.duplicate) == (1, False)


async def test_delete_mailbox_removes_everything(store: EnvelopeStore) -> None:
    rec, keep = await new_mailbox(store), await new_mailbox(store)
    eid = new_id()
    await put(store, rec, eid=eid)
    await put(store, rec)
    await put(store, keep)
    assert await store.delete_mailbox(rec.rid) is True
    assert await store.delete_mailbox(rec.rid) is False
    assert await store.get_mailbox(rec.rid, NOW) is None
    assert await store.resolve_sid(rec.sid, NOW) is None
    assert await store.fetch(rec.rid, 0, 10, 1 << 20, NOW) == []
    assert await store.ack(rec.rid, [1, 2]) == 0
    with pytest.raises(MailboxNotFound):
        await put(store, rec)
    assert await store.count_envelopes() == 1
    # The ids now behave like ids that never existed: no seq, no dedupe record survives.
    await store.create_mailbox(rec, NOW)
    out = await put(store, rec, eid=eid)
    assert (out.seq, out.duplicate) == (1, False)
    assert len(await store.fetch(keep.rid, 0, 10, 1 << 20, NOW)) == 1


# --- challenges ---------------------------------------------------------------------------


async def test_challenges_are_single_use_and_expire(store: EnvelopeStore) -> None:
    nonce, binding = os.urandom(32), os.urandom(48)
    await store.put_challenge(nonce, binding, NOW + 60)
    assert await store.take_challenge(nonce, NOW + 59) == binding
    assert await store.take_challenge(nonce, NOW + 59) is None
    assert await store.take_challenge(os.urandom(32), NOW) is None
    await store.put_challenge(nonce, binding, NOW + 60)
    assert await store.take_challenge(nonce, NOW + 60) is None
    assert await store.take_challenge(nonce, NOW) is None  # consumed even though expired


# --- counting, durability, concurrency ----------------------------------------------------


async def test_count_envelopes(store: EnvelopeStore) -> None:
    assert await store.count_envelopes() == 0
    a, b = await new_mailbox(store), await new_mailbox(store)
    for _ in range(3):
        await put(store, a)
    for _ in range(2):
        await put(store, b)
    assert await store.count_envelopes() == 5


async def test_gauges_follow_every_write(make_store: MakeStore) -> None:
    store = await make_store(replace(LIMITS, max_envelopes=3))

    async def gauges() -> tuple[int, int, int]:
        g = await store.gauges()
        assert g.envelopes == await store.count_envelopes()
        return g.mailboxes, g.envelopes, g.bytes

    assert await gauges() == (0, 0, 0)
    a, b = await new_mailbox(store), await new_mailbox(store)
    eid = new_id()
    await put(store, a, size=100, eid=eid)
    await put(store, a, size=200)
    await put(store, b, size=50)
    assert await gauges() == (2, 3, 350)
    assert (await put(store, a, size=100, eid=eid)).duplicate  # a retry stores nothing
    await put(store, a, size=10)
    with pytest.raises(QuotaExceeded):
        await put(store, a, size=10)
    with pytest.raises(MailboxNotFound):
        await store.deposit(new_id(), new_id(), 0, b"x" * 10, None, NOW)
    with pytest.raises(IdCollision):
        await store.create_mailbox(replace(new_record(), rid=a.rid), NOW)
    assert await gauges() == (2, 4, 360)
    assert await store.ack(a.rid, [1, 99]) == 1
    assert await gauges() == (2, 3, 260)
    # Expired envelopes leave the gauges when they are dropped (a sweep, or on Redis a fetch).
    later = NOW + LIMITS.envelope_ttl_s
    await put(store, b, size=70, now=later - 1)
    assert await store.fetch(a.rid, 0, 10, 1 << 20, later) == []
    await store.purge_expired(later)
    assert await gauges() == (2, 1, 70)
    assert await store.delete_mailbox(b.rid)
    assert not await store.delete_mailbox(b.rid)
    assert await gauges() == (1, 0, 0)
    # An idle mailbox leaves them when swept, or when its id is taken over.
    c = await new_mailbox(store)
    await put(store, c, size=40)
    deadline = mailbox_deadline(day_of(NOW), LIMITS)
    await store.create_mailbox(replace(new_record(), rid=c.rid), deadline)
    assert await gauges() == (2, 0, 0)
    await store.purge_expired(deadline)
    assert await gauges() == (1, 0, 0)


async def test_data_survives_reopen(make_store: MakeStore) -> None:
    store = await make_store()
    rec = await new_mailbox(store)
    eid = new_id()
    await put(store, rec, eid=eid)
    await put(store, rec)
    await put(store, rec)
    assert await store.ack(rec.rid, [2, 3]) == 2
    await store.aclose()
    await store.aclose()  # idempotent

    store = await make_store()
    assert await store.get_mailbox(rec.rid, NOW) is not None
    assert [e.seq for e in await store.fetch(rec.rid, 0, 10, 1 << 20, NOW)] == [1]
    assert (await put(store, rec, eid=eid)).duplicate is True
    assert (await put(store, rec)).seq == 4  # never reused across a restart


async def test_concurrent_deposits_get_distinct_seqs(store: EnvelopeStore) -> None:
    rec = await new_mailbox(store)
    eids = [new_id() for _ in range(500)]
    outs = await asyncio.gather(
        *(store.deposit(rec.sid, eid, 0, eid * 16, None, NOW) for eid in eids)
    )
    assert sorted(o.seq for o in outs) == list(range(1, 501))
    by_eid = {eid: o.seq for eid, o in zip(eids, outs, strict=True)}
    envs = await store.fetch(rec.rid, 0, 1000, 1 << 20, NOW)
    assert [e.seq for e in envs] == list(range(1, 501))
    assert all(by_eid[e.eid] == e.seq and e.ct == e.eid * 16 for e in envs)


async def test_concurrent_failures_do_not_poison_others(make_store: MakeStore) -> None:
    store = await make_store(StoreLimits(max_envelopes=5))
    rec, other = await new_mailbox(store), await new_mailbox(store)
    jobs = [put(store, rec) for _ in range(20)] + [put(store, other) for _ in range(3)]
    jobs += [store.deposit(new_id(), new_id(), 0, b"x" * 256, None, NOW) for _ in range(3)]
    results = await asyncio.gather(*jobs, return_exceptions=True)
    mine = results[:20]
    assert sorted(r.seq for r in mine if not isinstance(r, BaseException)) == [1, 2, 3, 4, 5]
    assert sum(isinstance(r, QuotaExceeded) for r in mine) == 15
    assert sorted(r.seq for r in results[20:23]) == [1, 2, 3]  # type: ignore[union-attr]
    assert all(isinstance(r, MailboxNotFound) for r in results[23:])
    assert await store.count_envelopes() == 8


async def test_durability_problems_empty_on_durable_config(store: EnvelopeStore) -> None:
    assert await store.durability_problems() == []
    await store.ping()


async def test_closed_store_is_unavailable(make_store: MakeStore) -> None:
    store = await make_store()
    await store.aclose()
    with pytest.raises(StorageUnavailable):
        await store.deposit(new_id(), new_id(), 0, b"x", None, NOW)


# --- prekeys ------------------------------------------------------------------------------

MANY = 1_000_000  # a per-hour allowance that never binds


def items(n: int, tag: bytes = b"i") -> list[bytes]:
    return [tag + i.to_bytes(4, "big") + os.urandom(60) for i in range(n)]


async def test_prekeys_fifo_static_and_counts(store: EnvelopeStore) -> None:
    rec = await new_mailbox(store)
    assert await store.prekey_count(rec.rid, NOW) == (0, False)
    static = os.urandom(1200)
    first = items(5)
    assert await store.put_prekeys(rec.rid, static, first, False, 200, NOW) == (5, True)
    second = items(3, b"j")
    assert await store.put_prekeys(rec.rid, None, second, False, 200, NOW) == (8, True)
    assert await store.prekey_count(rec.rid, NOW) == (8, True)
    got = [await store.take_prekeys(rec.sid, NOW, MANY) for _ in range(10)]
    assert got == [(static, item) for item in first + second] + [(static, None)] * 2
    assert await store.prekey_count(rec.rid, NOW) == (0, True)
    # A new static part replaces the old one; items are appended after what is left.
    static2 = os.urandom(4096)
    assert await store.put_prekeys(rec.rid, static2, [], False, 200, NOW) == (0, True)
    assert await store.take_prekeys(rec.sid, NOW, MANY) == (static2, None)
    # Prekeys are per mailbox.
    other = await new_mailbox(store)
    assert await store.prekey_count(other.rid, NOW) == (0, False)
    assert await store.take_prekeys(other.sid, NOW, MANY) is None


async def test_prekeys_unknown_mailbox_and_no_static(store: EnvelopeStore) -> None:
    assert await store.take_prekeys(new_id(), NOW, MANY) is None
    assert await store.prekey_count(new_id(), NOW) == (0, False)
    with pytest.raises(MailboxNotFound):
        await store.put_prekeys(new_id(), b"s", items(1), False, 200, NOW)
    rec = await new_mailbox(store)
    # One-time items without a static part: no bundle, and nothing is consumed or counted.
    assert await store.put_prekeys(rec.rid, None, items(2), False, 200, NOW) == (2, False)
    for _ in range(3):
        assert await store.take_prekeys(rec.sid, NOW, 1) is None
    assert await store.prekey_count(rec.rid, NOW) == (2, False)
    await store.put_prekeys(rec.rid, b"s", [], False, 200, NOW)
    bundle = await store.take_prekeys(rec.sid, NOW, 1)
    assert bundle is not None and bundle[1] is not None  # the window was not used up
    # The receive id is no send id and vice versa.
    assert await store.take_prekeys(rec.rid, NOW, MANY) is None
    with pytest.raises(MailboxNotFound):
        await store.put_prekeys(rec.sid, b"s", [], False, 200, NOW)


async def test_prekeys_quota_refusal_changes_nothing(store: EnvelopeStore) -> None:
    rec = await new_mailbox(store)
    kept = items(3)
    await store.put_prekeys(rec.rid, b"old", kept, False, 5, NOW)
    with pytest.raises(QuotaExceeded):
        await store.put_prekeys(rec.rid, b"new", items(3), False, 5, NOW)
    with pytest.raises(QuotaExceeded):
        await store.put_prekeys(rec.rid, b"new", items(6), True, 5, NOW)  # replace too
    assert await store.prekey_count(rec.rid, NOW) == (3, True)
    assert await store.take_prekeys(rec.sid, NOW, MANY) == (b"old", kept[0])
    # Exactly at the quota is fine, and a static-only update never hits the quota.
    assert await store.put_prekeys(rec.rid, None, items(3), False, 5, NOW) == (5, True)
    assert await store.put_prekeys(rec.rid, b"new", [], False, 2, NOW) == (5, True)
    assert await store.take_prekeys(rec.sid, NOW, MANY) == (b"new", kept[1])


async def test_prekeys_replace(store: EnvelopeStore) -> None:
    rec = await new_mailbox(store)
    await store.put_prekeys(rec.rid, b"s1", items(4), False, 200, NOW)
    fresh = items(2, b"f")
    assert await store.put_prekeys(rec.rid, None, fresh, True, 200, NOW) == (2, True)
    assert await store.take_prekeys(rec.sid, NOW, MANY) == (b"s1", fresh[0])
    # Replace with nothing deletes every item and keeps the static part.
    assert await store.put_prekeys(rec.rid, None, [], True, 200, NOW) == (0, True)
    assert await store.take_prekeys(rec.sid, NOW, MANY) == (b"s1", None)
    assert await store.put_prekeys(rec.rid, b"s2", fresh[1:], True, 1, NOW) == (1, True)
    assert await store.take_prekeys(rec.sid, NOW, MANY) == (b"s2", fresh[1])


async def test_prekeys_concurrent_takes_never_share_an_item(store: EnvelopeStore) -> None:
    rec = await new_mailbox(store)
    stored = items(40)
    await store.put_prekeys(rec.rid, b"static", stored[:32], False, 200, NOW)
    await store.put_prekeys(rec.rid, None, stored[32:], False, 200, NOW)
    got = await asyncio.gather(*(store.take_prekeys(rec.sid, NOW, MANY) for _ in range(50)))
    assert all(g is not None and g[0] == b"static" for g in got)
    handed = [g[1] for g in got if g is not None and g[1] is not None]
    assert sorted(handed) == sorted(stored)  # 40 distinct items, each exactly once
    assert sum(1 for g in got if g is not None and g[1] is None) == 10
    assert await store.prekey_count(rec.rid, NOW) == (0, True)


async def test_prekeys_hourly_window(store: EnvelopeStore) -> None:
    rec = await new_mailbox(store)
    stored = items(10)
    await store.put_prekeys(rec.rid, b"s", stored, False, 200, NOW)
    hour = NOW - NOW % SECONDS_PER_HOUR
    got = [await store.take_prekeys(rec.sid, hour + i, 3) for i in range(3)]
    assert got == [(b"s", item) for item in stored[:3]]
    # Past the allowance: static only, exactly as when the items ran out; nothing consumed.
    for t in (hour + 10, hour + SECONDS_PER_HOUR - 1):
        assert await store.take_prekeys(rec.sid, t, 3) == (b"s", None)
    assert await store.prekey_count(rec.rid, NOW) == (7, True)
    # The next hour starts a new window.
    nxt = hour + SECONDS_PER_HOUR
    got = [await store.take_prekeys(rec.sid, nxt + i, 3) for i in range(4)]
    assert got == [(b"s", item) for item in stored[3:6]] + [(b"s", None)]
    # A lower allowance applies at once; zero hands out no item at all.
    assert await store.take_prekeys(rec.sid, nxt + 2 * SECONDS_PER_HOUR, 0) == (b"s", None)
    assert await store.prekey_count(rec.rid, NOW) == (4, True)


async def test_prekeys_removed_with_the_mailbox(store: EnvelopeStore) -> None:
    rec, keep = await new_mailbox(store), await new_mailbox(store)
    await store.put_prekeys(rec.rid, b"s", items(5), False, 200, NOW)
    await store.take_prekeys(rec.sid, NOW, 1)  # a window is recorded too
    await store.put_prekeys(keep.rid, b"k", items(1), False, 200, NOW)
    assert await store.delete_mailbox(rec.rid) is True
    assert await store.take_prekeys(rec.sid, NOW, MANY) is None
    assert await store.prekey_count(rec.rid, NOW) == (0, False)
    with pytest.raises(MailboxNotFound):
        await store.put_prekeys(rec.rid, b"s", [], False, 200, NOW)
    # The same ids, created again, start with no prekeys and a fresh window.
    await store.create_mailbox(rec, NOW)
    assert await store.prekey_count(rec.rid, NOW) == (0, False)
    assert await store.take_prekeys(rec.sid, NOW, 1) is None
    assert await store.put_prekeys(rec.rid, b"s", items(1), False, 200, NOW) == (1, True)
    bundle = await store.take_prekeys(rec.sid, NOW, 1)
    assert bundle is not None and bundle[1] is not None
    assert await store.prekey_count(keep.rid, NOW) == (1, True)


async def test_prekeys_expire_with_the_mailbox(store: EnvelopeStore) -> None:
    rec = await new_mailbox(store)
    await store.put_prekeys(rec.rid, b"s", items(3), False, 200, NOW)
    deadline = mailbox_deadline(day_of(NOW), LIMITS)
    assert await store.take_prekeys(rec.sid, deadline - 1, MANY) is not None
    assert await store.take_prekeys(rec.sid, deadline, MANY) is None
    assert await store.prekey_count(rec.rid, deadline) == (0, False)
    with pytest.raises(MailboxNotFound):
        await store.put_prekeys(rec.rid, b"s", items(1), False, 200, deadline)
    # Reusing the expired ids (before the purge) finds nothing of the old prekeys.
    again = MailboxRecord(rec.rid, rec.sid, os.urandom(32), day_of(deadline))
    await store.create_mailbox(again, deadline)
    assert await store.prekey_count(rec.rid, deadline) == (0, False)
    assert await store.take_prekeys(rec.sid, deadline, MANY) is None
    # Purging an idle mailbox removes its prekeys too.
    other = await new_mailbox(store)
    await store.put_prekeys(other.rid, b"o", items(2), False, 200, NOW)
    assert await store.purge_expired(deadline) >= 1
    assert await store.prekey_count(other.rid, NOW) == (0, False)


async def test_prekeys_survive_reopen(make_store: MakeStore) -> None:
    store = await make_store()
    rec = await new_mailbox(store)
    stored = items(3)
    await store.put_prekeys(rec.rid, b"s", stored, False, 200, NOW)
    assert await store.take_prekeys(rec.sid, NOW, 2) == (b"s", stored[0])
    await store.aclose()
    store = await make_store()
    assert await store.prekey_count(rec.rid, NOW) == (2, True)
    assert await store.take_prekeys(rec.sid, NOW, 2) == (b"s", stored[1])
    assert await store.take_prekeys(rec.sid, NOW, 2) == (b"s", None)  # the window persisted


# --- consent: kinds, capabilities, boundaries, bans, info (protocol.md §4.8-§4.10) --------

BND = Boundaries(size=4096, att=0, day=3, pow=0)
DAY = 86_400


def h(tag: int) -> bytes:
    return bytes([tag]) * 32


async def new_kind(
    store: EnvelopeStore, kind: str, bnd: Boundaries | None = None, now: int = NOW
) -> MailboxRecord:
    rec = MailboxRecord(new_id(), new_id(), os.urandom(32), day_of(now), kind=kind, boundaries=bnd)
    await store.create_mailbox(rec, now)
    return rec


async def request(
    store: EnvelopeStore,
    rec: MailboxRecord,
    handle: bytes | None = None,
    *,
    size: int = 2048,
    now: int = NOW,
    eid: bytes | None = None,
    attachments: int = 0,
    pow_bits: int = 0,
) -> DepositOutcome:
    return await store.deposit(
        rec.sid,
        eid or new_id(),
        0,
        os.urandom(size),
        None,
        now,
        handle=handle or new_id(),
        attachments=attachments,
        pow_bits=pow_bits,
    )


async def held(store: EnvelopeStore, rec: MailboxRecord, now: int = NOW) -> MailboxSnapshot:
    snap = await store.mailbox_info(rec.rid, now)
    assert snap is not None
    return snap


async def test_kinds_are_stored_with_the_mailbox(store: EnvelopeStore) -> None:
    open_, pair = await new_mailbox(store), await new_kind(store, "pair")
    addr, dflt = await new_kind(store, "addr", BND), await new_kind(store, "addr")
    for rec, kind, bnd in (
        (open_, "open", None),
        (pair, "pair", None),
        (addr, "addr", BND),
        (dflt, "addr", DEFAULT_BOUNDARIES),
    ):
        got = await store.get_mailbox(rec.rid, NOW)
        assert got is not None and (got.kind, got.boundaries) == (kind, bnd)
        assert await store.get_boundaries(rec.sid, NOW) == (kind, bnd)
        assert await store.resolve_online(rec.sid, None, NOW) == (
            None if kind == "pair" else (rec.rid, kind)
        )
    assert await store.get_boundaries(new_id(), NOW) is None
    assert await store.get_boundaries(addr.rid, NOW) is None  # a rid is no sid
    # Open mailboxes ignore every consent argument.
    out = await store.deposit(open_.sid, new_id(), 0, b"x" * 256, None, NOW, cap_hash=h(1))
    assert out.seq == 1
    out = await request(store, open_, attachments=3, pow_bits=0)
    assert out.seq == 2
    assert [e.hdl for e in await store.fetch(open_.rid, 0, 10, 1 << 20, NOW)] == [None, None]


async def test_caps_add_remove_and_limit(store: EnvelopeStore) -> None:
    rec = await new_kind(store, "pair")
    assert await store.set_caps(rec.rid, [h(1), h(2), h(2)], [], 3, NOW) == 2
    assert await store.set_caps(rec.rid, [h(3)], [h(9)], 3, NOW) == 3
    with pytest.raises(QuotaExceeded):
        await store.set_caps(rec.rid, [h(4)], [], 3, NOW)
    with pytest.raises(QuotaExceeded):  # the removal in the same command is undone too
        await store.set_caps(rec.rid, [h(4), h(5)], [h(1)], 3, NOW)
    assert (await held(store, rec)).caps == 3
    await store.deposit(rec.sid, new_id(), 0, b"x" * 256, None, NOW, cap_hash=h(1))
    # Removal applies first, so a full mailbox can swap a capability in one command.
    assert await store.set_caps(rec.rid, [h(4)], [h(1)], 3, NOW) == 3
    assert await store.set_caps(rec.rid, [], [h(4), h(4)], 3, NOW) == 2
    assert await store.set_caps(rec.rid, [], [], 3, NOW) == 2  # a no-op
    # Re-adding what is there is not counted twice; a lowered limit still allows removals.
    assert await store.set_caps(rec.rid, [h(2)], [], 2, NOW) == 2
    assert await store.set_caps(rec.rid, [], [h(2)], 0, NOW) == 1
    with pytest.raises(MailboxNotFound):
        await store.set_caps(new_id(), [h(1)], [], 3, NOW)
    with pytest.raises(MailboxNotFound):
        await store.set_caps(rec.sid, [h(1)], [], 3, NOW)
    for other in (await new_mailbox(store), await new_kind(store, "addr", BND)):
        with pytest.raises(WrongKind):
            await store.set_caps(other.rid, [h(1)], [], 3, NOW)
        assert (await held(store, other)).caps == 0


async def test_pair_deposit_needs_a_registered_capability(store: EnvelopeStore) -> None:
    a, b = await new_kind(store, "pair"), await new_kind(store, "pair")
    await store.set_caps(a.rid, [h(1)], [], 64, NOW)
    await store.set_caps(b.rid, [h(2)], [], 64, NOW)

    async def send(rec: MailboxRecord, cap_hash: bytes | None, **kw: Any) -> DepositOutcome:
        return await store.deposit(rec.sid, new_id(), 0, b"x" * 256, None, NOW, cap_hash=cap_hash)

    assert (await send(a, h(1))).seq == 1
    for cap_hash in (None, h(3), h(2)):  # missing, unknown, another mailbox's
        with pytest.raises(MailboxNotFound):
            await send(a, cap_hash)
    with pytest.raises(MailboxNotFound):  # the very same refusal as an unknown mailbox
        await store.deposit(new_id(), new_id(), 0, b"x" * 256, None, NOW, cap_hash=h(1))
    assert await store.resolve_online(a.sid, h(1), NOW) == (a.rid, "pair")
    assert await store.resolve_online(a.sid, h(2), NOW) is None
    # Revocation blocks, re-adding the same hash unblocks; refusals stored nothing.
    await store.set_caps(a.rid, [], [h(1)], 64, NOW)
    with pytest.raises(MailboxNotFound):
        await send(a, h(1))
    assert await store.resolve_online(a.sid, h(1), NOW) is None
    snap = await held(store, a)
    assert (snap.envelopes, snap.last_seq, snap.dedupe_records, snap.caps) == (1, 1, 1, 0)
    await store.set_caps(a.rid, [h(1)], [], 64, NOW)
    assert (await send(a, h(1))).seq == 2
    # A retry of a stored deposit by a revoked sender is refused too (no dedupe answer).
    eid = new_id()
    await store.deposit(a.sid, eid, 0, b"x" * 256, None, NOW, cap_hash=h(1))
    await store.set_caps(a.rid, [], [h(1)], 64, NOW)
    with pytest.raises(MailboxNotFound):
        await store.deposit(a.sid, eid, 0, b"x" * 256, None, NOW, cap_hash=h(1))
    assert await store.count_envelopes() == 3


async def test_boundaries_set_and_get(store: EnvelopeStore) -> None:
    rec = await new_kind(store, "addr")
    assert await store.get_boundaries(rec.sid, NOW) == ("addr", DEFAULT_BOUNDARIES)
    new = Boundaries(size=65536, att=1, day=100_000, pow=20)
    await store.set_boundaries(rec.rid, new, NOW)
    assert await store.get_boundaries(rec.sid, NOW) == ("addr", new)
    assert (await held(store, rec)).record.boundaries == new
    with pytest.raises(MailboxNotFound):
        await store.set_boundaries(new_id(), new, NOW)
    for other in (await new_mailbox(store), await new_kind(store, "pair")):
        with pytest.raises(WrongKind):
            await store.set_boundaries(other.rid, new, NOW)
        assert await store.get_boundaries(other.sid, NOW) == (other.kind, None)


async def test_contact_requests_checked_against_boundaries(store: EnvelopeStore) -> None:
    rec = await new_kind(store, "addr", Boundaries(size=4096, att=0, day=100, pow=8))
    with pytest.raises(WrongKind):
        await store.deposit(rec.sid, new_id(), 0, b"x" * 2048, None, NOW, pow_bits=8)
    with pytest.raises(BoundaryExceeded):
        await request(store, rec, size=8192, pow_bits=8)
    with pytest.raises(BoundaryExceeded):
        await request(store, rec, attachments=1, pow_bits=8)
    with pytest.raises(PowRequired):
        await request(store, rec, pow_bits=7)
    with pytest.raises(PowRequired):
        await request(store, rec)
    handle = new_id()
    out = await request(store, rec, handle, size=4096, pow_bits=8)
    assert (out.seq, out.duplicate) == (1, False)
    await store.set_boundaries(rec.rid, Boundaries(size=2048, att=1, day=100, pow=0), NOW)
    await request(store, rec, size=2048, attachments=16)
    with pytest.raises(BoundaryExceeded):
        await request(store, rec, size=4096)
    envs = await store.fetch(rec.rid, 0, 10, 1 << 20, NOW)
    assert [(e.seq, len(e.ct)) for e in envs] == [(1, 4096), (2, 2048)]
    assert envs[0].hdl == handle and envs[1].hdl is not None and envs[1].hdl != handle
    with pytest.raises(WrongKind):  # online-only requests are no thing: resolve says addr
        await store.deposit(rec.sid, new_id(), 1, b"x" * 2048, None, NOW)
    assert await store.resolve_online(rec.sid, None, NOW) == (rec.rid, "addr")
    snap = await held(store, rec)
    assert (snap.envelopes, snap.dedupe_records, snap.requests) == (2, 2, 2)


async def test_bans(store: EnvelopeStore) -> None:
    rec = await new_kind(store, "addr", BND)
    spam, friend = new_id(), new_id()
    assert await store.set_bans(rec.rid, [spam, spam], [], 2, NOW) == 1
    with pytest.raises(MailboxNotFound):
        await request(store, rec, spam)
    await request(store, rec, friend)
    assert await store.set_bans(rec.rid, [friend], [], 2, NOW) == 2
    with pytest.raises(QuotaExceeded):
        await store.set_bans(rec.rid, [new_id()], [], 2, NOW)
    with pytest.raises(QuotaExceeded):  # nothing changed: the unban is undone too
        await store.set_bans(rec.rid, [new_id(), new_id()], [spam], 2, NOW)
    with pytest.raises(MailboxNotFound):
        await request(store, rec, spam)
    # Unban first, then ban: lifting one and banning another fits the limit.
    assert await store.set_bans(rec.rid, [new_id()], [spam], 2, NOW) == 2
    await request(store, rec, spam)
    snap = await held(store, rec)
    assert (snap.bans, snap.envelopes, snap.requests) == (2, 2, 2)
    for other in (await new_mailbox(store), await new_kind(store, "pair")):
        with pytest.raises(WrongKind):
            await store.set_bans(other.rid, [spam], [], 2, NOW)
    with pytest.raises(MailboxNotFound):
        await store.set_bans(new_id(), [spam], [], 2, NOW)


async def test_daily_request_quota(store: EnvelopeStore) -> None:
    rec = await new_kind(store, "addr", BND)  # 3 a day
    today = NOW - NOW % DAY
    with pytest.raises(BoundaryExceeded):  # refused deposits do not count
        await request(store, rec, size=8192, now=today)
    eids = [new_id() for _ in range(3)]
    for i, eid in enumerate(eids):
        await request(store, rec, now=today + i, eid=eid)
    with pytest.raises(QuotaExceeded):
        await request(store, rec, now=today + 10)
    # A retry of a stored request is answered as a duplicate, not counted and not refused.
    again = await request(store, rec, now=today + 11, eid=eids[0])
    assert (again.seq, again.duplicate) == (1, True)
    snap = await held(store, rec, today + 12)
    assert (snap.requests_day, snap.requests, snap.envelopes) == (day_of(today), 3, 3)
    with pytest.raises(QuotaExceeded):
        await request(store, rec, now=today + DAY - 1)
    # The next UTC day starts a new count; a raised allowance applies at once.
    out = await request(store, rec, now=today + DAY)
    assert out.seq == 4
    snap = await held(store, rec, today + DAY)
    assert (snap.requests_day, snap.requests) == (day_of(today) + 1, 1)
    await store.set_boundaries(rec.rid, Boundaries(size=4096, att=0, day=5, pow=0), today + DAY)
    for i in range(4):
        await request(store, rec, now=today + DAY + 1 + i)
    with pytest.raises(QuotaExceeded):
        await request(store, rec, now=today + DAY + 9)
    assert (await held(store, rec, today + DAY)).requests == 5
    # A full mailbox refuses too, and that refusal is not counted either.
    full = await new_kind(store, "addr", Boundaries(size=65536, att=0, day=100, pow=0))
    for i in range(LIMITS.max_bytes // 65536):
        await request(store, full, size=65536, now=today + i)
    with pytest.raises(QuotaExceeded):
        await request(store, full, now=today + 20)
    assert (await held(store, full, today)).requests == LIMITS.max_bytes // 65536


async def test_info_is_complete(store: EnvelopeStore) -> None:
    assert await store.mailbox_info(new_id(), NOW) is None
    rec = await new_kind(store, "addr", BND, now=NOW)
    first = await held(store, rec)
    assert first.record == rec
    assert (first.active_day, first.last_seq, first.envelopes, first.stored_bytes) == (
        day_of(NOW),
        0,
        0,
        0,
    )
    assert (first.oldest_ts, first.dedupe_records, first.prekeys_left, first.prekey_static) == (
        None,
        0,
        0,
        False,
    )
    assert (first.prekey_hour, first.prekeys_handed, first.caps, first.bans) == (None, 0, 0, 0)
    assert (first.requests_day, first.requests) == (None, 0)
    later = NOW + 3 * DAY
    await request(store, rec, now=NOW + 5)
    await request(store, rec, size=4096, now=NOW + 6)
    await store.ack(rec.rid, [1])
    await store.set_bans(rec.rid, [new_id()], [], 100, NOW)
    await store.put_prekeys(rec.rid, b"s", items(4), False, 200, NOW)
    await store.take_prekeys(rec.sid, NOW, 10)
    await store.touch_mailbox(rec.rid, later)
    snap = await held(store, rec, later)
    assert snap.record == rec
    assert (snap.active_day, snap.last_seq, snap.envelopes, snap.stored_bytes) == (
        day_of(later),
        2,
        1,
        4096,
    )
    assert (snap.oldest_ts, snap.dedupe_records, snap.prekeys_left, snap.prekey_static) == (
        NOW + 6,
        2,
        3,
        True,
    )
    assert (snap.prekey_hour, snap.prekeys_handed, snap.caps, snap.bans) == (
        NOW // SECONDS_PER_HOUR,
        1,
        0,
        1,
    )
    assert (snap.requests_day, snap.requests) == (day_of(NOW), 2)
    assert snap.suspended is False
    assert await store.set_suspended(rec.sid, True, later) is True
    assert (await held(store, rec, later)).suspended is True
    pair = await new_kind(store, "pair")
    await store.set_caps(pair.rid, [h(1), h(2)], [], 64, NOW)
    psnap = await held(store, pair)
    assert (psnap.record.kind, psnap.record.boundaries, psnap.caps, psnap.requests_day) == (
        "pair",
        None,
        2,
        None,
    )
    # Every field of the snapshot was looked at above (a new field needs a check here).
    assert {f.name for f in fields(MailboxSnapshot)} == {
        "record",
        "active_day",
        "last_seq",
        "envelopes",
        "stored_bytes",
        "oldest_ts",
        "dedupe_records",
        "prekeys_left",
        "prekey_static",
        "prekey_hour",
        "prekeys_handed",
        "caps",
        "bans",
        "requests_day",
        "requests",
        "suspended",
    }


async def test_delete_and_expiry_remove_consent_data(store: EnvelopeStore) -> None:
    pair, addr = await new_kind(store, "pair"), await new_kind(store, "addr", BND)
    await store.set_caps(pair.rid, [h(1)], [], 64, NOW)
    await store.deposit(pair.sid, new_id(), 0, b"x" * 256, None, NOW, cap_hash=h(1))
    await store.set_bans(addr.rid, [new_id()], [], 64, NOW)
    await request(store, addr)
    for rec in (pair, addr):
        assert await store.delete_mailbox(rec.rid) is True
        assert await store.mailbox_info(rec.rid, NOW) is None
        assert await store.get_boundaries(rec.sid, NOW) is None
        assert await store.resolve_online(rec.sid, h(1), NOW) is None
    with pytest.raises(MailboxNotFound):
        await store.deposit(pair.sid, new_id(), 0, b"x" * 256, None, NOW, cap_hash=h(1))
    with pytest.raises(MailboxNotFound):
        await store.set_caps(pair.rid, [h(1)], [], 64, NOW)
    with pytest.raises(MailboxNotFound):
        await store.set_bans(addr.rid, [h(1)[:16]], [], 64, NOW)
    # The same ids created again start empty: no capability, ban or counter survives.
    await store.create_mailbox(pair, NOW)
    await store.create_mailbox(addr, NOW)
    with pytest.raises(MailboxNotFound):
        await store.deposit(pair.sid, new_id(), 0, b"x" * 256, None, NOW, cap_hash=h(1))
    snap = await held(store, addr)
    assert (snap.bans, snap.requests, snap.requests_day, snap.envelopes) == (0, 0, None, 0)
    assert (await held(store, pair)).caps == 0
    # Idle expiry: unreachable at the deadline, then purged with everything.
    await store.set_caps(pair.rid, [h(1)], [], 64, NOW)
    deadline = mailbox_deadline(day_of(NOW), LIMITS)
    with pytest.raises(MailboxNotFound):
        await store.deposit(pair.sid, new_id(), 0, b"x" * 256, None, deadline, cap_hash=h(1))
    with pytest.raises(MailboxNotFound):
        await store.set_caps(pair.rid, [h(2)], [], 64, deadline)
    assert await store.mailbox_info(pair.rid, deadline) is None
    assert await store.get_boundaries(addr.sid, deadline) is None
    again = MailboxRecord(pair.rid, pair.sid, os.urandom(32), day_of(deadline), kind="pair")
    await store.create_mailbox(again, deadline)  # expired but not purged: nothing carries over
    assert (await held(store, again, deadline)).caps == 0
    assert await store.purge_expired(deadline) >= 1
    assert await store.mailbox_info(addr.rid, deadline) is None


async def test_consent_survives_reopen(make_store: MakeStore) -> None:
    store = await make_store()
    pair, addr = await new_kind(store, "pair"), await new_kind(store, "addr", BND)
    await store.set_caps(pair.rid, [h(1)], [], 64, NOW)
    banned = new_id()
    await store.set_bans(addr.rid, [banned], [], 64, NOW)
    await request(store, addr)
    await store.aclose()
    store = await make_store()
    assert (await store.deposit(pair.sid, new_id(), 0, b"x" * 256, None, NOW, cap_hash=h(1))).seq
    with pytest.raises(MailboxNotFound):
        await request(store, addr, banned)
    snap = await held(store, addr)
    assert (snap.record.boundaries, snap.requests, snap.bans) == (BND, 1, 1)


# --- franking stamps, suspension, keys, reports, audit (protocol.md §4.11) -----------------

FT, FX = b"t" * 32, b"x" * 25


def stamp(kind: str, tag: bytes = FT, ctx: bytes = FX) -> RelayStamp:
    return RelayStamp(tag=tag, ctx=ctx, kind=kind)


def report(
    sid: bytes, created: int = NOW, rid: bytes | None = None, **overrides: Any
) -> ReportRecord:
    fields: dict[str, Any] = {
        "id": rid or os.urandom(16),
        "created": created,
        "reason": "spam",
        "note": "a note",
        "msg": b"\x01content",
        "attachments": (b"", b"att" * 10),
        "sender_key": os.urandom(32),
        "recipient_key": os.urandom(32),
        "sid": sid,
        "kid": 3,
        "day": day_of(created),
        "source_kind": 1,
        "source": h(9),
        "verified_at": created,
    }
    fields.update(overrides)
    return ReportRecord(**fields)


def audit(action: str = "report", ts: int = NOW, report_id: bytes | None = None) -> AuditRecord:
    return AuditRecord(ts=ts, moderator="relay", action=action, report_id=report_id, detail="d")


async def test_stamps_are_stored_and_fetched(store: EnvelopeStore) -> None:
    open_, pair, addr = (
        await new_mailbox(store),
        await new_kind(store, "pair"),
        await new_kind(store, "addr", BND),
    )
    await store.set_caps(pair.rid, [h(1)], [], 64, NOW)
    fc = os.urandom(32)
    eid = new_id()
    await store.deposit(open_.sid, eid, 0, b"o" * 256, fc, NOW, stamp=stamp("open"))
    await store.deposit(open_.sid, new_id(), 0, b"p" * 256, None, NOW)  # no fc, no stamp
    await store.deposit(
        pair.sid, new_id(), 0, b"q" * 256, fc, NOW, cap_hash=h(1), stamp=stamp("pair", ctx=FX * 2)
    )
    await store.deposit(
        addr.sid,
        new_id(),
        0,
        b"r" * 2048,
        fc,
        NOW,
        handle=new_id(),
        stamp=stamp("addr", tag=b"u" * 32, ctx=b"y" * 41),
    )
    got = await store.fetch(open_.rid, 0, 10, 1 << 20, NOW)
    assert [(e.fc, e.ft, e.fx, e.hdl) for e in got] == [
        (fc, FT, FX, None),
        (None, None, None, None),
    ]
    (p,) = await store.fetch(pair.rid, 0, 10, 1 << 20, NOW)
    assert (p.ft, p.fx, p.hdl) == (FT, FX * 2, None)
    (a,) = await store.fetch(addr.rid, 0, 10, 1 << 20, NOW)
    assert (a.ft, a.fx, a.hdl is not None) == (b"u" * 32, b"y" * 41, True)
    # A duplicate keeps the first stamp (and is not checked against the new one).
    dup = await store.deposit(open_.sid, eid, 0, b"o" * 256, fc, NOW, stamp=stamp("pair"))
    assert dup.duplicate
    # A stamp for another kind is refused before anything is stored, naming the real kind.
    with pytest.raises(StampMismatch) as info:
        await store.deposit(open_.sid, new_id(), 0, b"s" * 256, fc, NOW, stamp=stamp("pair"))
    assert info.value.kind == "open"
    with pytest.raises(StampMismatch) as info:
        await store.deposit(
            pair.sid, new_id(), 0, b"s" * 256, fc, NOW, cap_hash=h(1), stamp=stamp("open")
        )
    assert info.value.kind == "pair"
    assert (await held(store, open_)).envelopes == 2
    assert (await held(store, pair)).envelopes == 1
    # Kind checks come first: a refused capability is not a stamp mismatch.
    with pytest.raises(MailboxNotFound):
        await store.deposit(
            pair.sid, new_id(), 0, b"s" * 256, fc, NOW, cap_hash=h(2), stamp=stamp("open")
        )


async def test_suspension_is_like_a_deleted_mailbox_for_senders(store: EnvelopeStore) -> None:
    assert await store.set_suspended(new_id(), True, NOW) is False
    addr, pair = await new_kind(store, "addr", BND), await new_kind(store, "pair")
    await store.set_caps(pair.rid, [h(1)], [], 64, NOW)
    await store.put_prekeys(addr.rid, b"static", items(2), False, 200, NOW)
    await request(store, addr)
    for rec in (addr, pair):
        assert await store.set_suspended(rec.sid, True, NOW) is True
        assert await store.set_suspended(rec.sid, True, NOW) is True  # idempotent
        assert await store.get_boundaries(rec.sid, NOW) is None
        assert await store.resolve_online(rec.sid, h(1), NOW) is None
        assert (await store.get_mailbox(rec.rid, NOW)) is not None  # the owner still sees it
    assert await store.take_prekeys(addr.sid, NOW, 10) is None
    with pytest.raises(MailboxNotFound):
        await request(store, addr)
    with pytest.raises(MailboxNotFound):
        await store.deposit(pair.sid, new_id(), 0, b"x" * 256, None, NOW, cap_hash=h(1))
    snap = await held(store, addr)
    assert (snap.envelopes, snap.requests, snap.prekeys_left, snap.suspended) == (1, 1, 2, True)
    # Lifted: everything works again.
    for rec in (addr, pair):
        assert await store.set_suspended(rec.sid, False, NOW) is True
    assert await store.get_boundaries(addr.sid, NOW) == ("addr", BND)
    assert (await store.take_prekeys(addr.sid, NOW, 10)) is not None
    assert (await request(store, addr)).seq == 2
    assert (await store.deposit(pair.sid, new_id(), 0, b"x" * 256, None, NOW, cap_hash=h(1))).seq
    assert (await held(store, addr)).suspended is False
    # Expired mailboxes cannot be suspended.
    deadline = mailbox_deadline(day_of(NOW), LIMITS)
    assert await store.set_suspended(addr.sid, True, deadline) is False


@pytest.mark.parametrize("kind", ["open", "pair", "addr"])
async def test_deposit_checks_follow_the_policy_table(make_store: MakeStore, kind: str) -> None:
    """Start from a deposit that fails every check of ``kind`` at once, then repair one
    check at a time in the table's order: each attempt must end the way the first check
    still failing says (relay/storage/policy.py), and nothing is stored until all pass."""
    store = await make_store(replace(LIMITS, max_envelopes=2))
    bnd = Boundaries(size=4096, att=0, day=2, pow=8)
    rec = await new_kind(store, kind, bnd if kind == "addr" else None)
    good, banned = new_id(), new_id()
    if kind == "pair":
        await store.set_caps(rec.rid, [h(1)], [], 64, NOW)
    if kind == "addr":
        await store.set_bans(rec.rid, [banned], [], 64, NOW)
    first = [new_id(), new_id()]  # fill the quota (and the address's daily allowance)
    for eid in first:
        await store.deposit(
            rec.sid, eid, 0, b"f" * 256, None, NOW, cap_hash=h(1), handle=good, pow_bits=8
        )
    await store.set_suspended(rec.sid, True, NOW)
    other = {"open": "pair", "pair": "addr", "addr": "open"}[kind]
    args: dict[str, Any] = {
        "sid": new_id(),  # unknown
        "eid": first[0],  # a duplicate
        "size": 8192,  # beyond the boundary
        "cap_hash": None,
        "handle": None,
        "pow_bits": 7,
        "stamp": stamp(other),
        # pair: an attachment without the attachment capability (media off, revision 8)
        "attachments": 1 if kind == "pair" else 0,
        "att_cap_hash": None,
    }

    async def repair(name: str) -> None:
        if name == "mailbox":
            args["sid"] = rec.sid
        elif name == "suspended":
            await store.set_suspended(rec.sid, False, NOW)
        elif name == "capability":
            args["cap_hash"] = h(1)
        elif name == "media":
            await store.set_caps(rec.rid, [h(2)], [], 64, NOW)
            args["att_cap_hash"] = h(2)
        elif name == "handle":
            args["handle"] = banned
        elif name == "boundary":
            args["size"] = 2048
        elif name == "pow":
            args["pow_bits"] = 8
        elif name == "banned":
            await store.set_bans(rec.rid, [], [banned], 64, NOW)
        elif name == "duplicate":
            args["eid"] = new_id()
        elif name == "stamp":
            args["stamp"] = stamp(kind)
        elif name == "allowance":
            await store.set_boundaries(rec.rid, replace(bnd, day=10), NOW)
        elif name == "quota":
            assert await store.ack(rec.rid, [1]) == 1
        else:
            raise AssertionError(f"no repair for the check {name!r}: extend this test")

    async def attempt() -> DepositOutcome:
        return await store.deposit(
            args["sid"],
            args["eid"],
            0,
            os.urandom(args["size"]),
            None,
            NOW,
            cap_hash=args["cap_hash"],
            handle=args["handle"],
            attachments=args["attachments"],
            att_cap_hash=args["att_cap_hash"],
            pow_bits=args["pow_bits"],
            stamp=args["stamp"],
        )

    checks = checks_for(kind)
    assert [c.name for c in checks][:2] == ["mailbox", "suspended"]
    for check in checks:
        if check.outcome is None:
            out = await attempt()
            assert (out.duplicate, out.seq) == (True, 1), check.name
        else:
            with pytest.raises(check.outcome):
                await attempt()
        snap = await held(store, rec)
        assert (snap.envelopes, snap.last_seq) == (2, 2), check.name  # nothing stored
        await repair(check.name)
    out = await attempt()
    assert (out.duplicate, out.seq) == (False, 3)
    snap = await held(store, rec)
    assert (snap.envelopes, snap.last_seq) == (2, 3)  # one acked by the quota repair
    if kind == "addr":
        assert snap.requests == 3


async def test_franking_keys(make_store: MakeStore) -> None:
    window = 30 * DAY
    limits = replace(LIMITS, report_window_s=window, franking_rotation_s=7 * DAY)
    store = await make_store(limits)
    assert await store.franking_keys() == []
    k1 = FrankingKey(kid=1, secret=os.urandom(32), created=NOW)
    assert await store.add_franking_key(k1) == k1
    # A concurrent rotation to the same kid gets the stored key back.
    other = FrankingKey(kid=1, secret=os.urandom(32), created=NOW + 1)
    assert await store.add_franking_key(other) == k1
    k2 = FrankingKey(kid=2, secret=os.urandom(32), created=NOW + 7 * DAY)
    k3 = FrankingKey(kid=3, secret=os.urandom(32), created=NOW + 14 * DAY)
    await store.add_franking_key(k3)
    await store.add_franking_key(k2)
    assert await store.franking_keys() == [k1, k2, k3]
    assert "secret" in repr(k1) and k1.secret.hex() not in repr(k1)
    # k1 retired when k2 was created: destroyed report_window_s later, not before.
    await store.purge_expired(k2.created + window - 1)
    assert [k.kid for k in await store.franking_keys()] == [1, 2, 3]
    await store.purge_expired(k2.created + window)
    assert [k.kid for k in await store.franking_keys()] == [2, 3]
    # The newest key is never destroyed, however old.
    await store.purge_expired(k3.created + 10 * window)
    assert await store.franking_keys() == [k3]
    await store.aclose()
    assert await (await make_store(limits)).franking_keys() == [k3]  # durable


async def test_reports_insert_get_list_resolve(store: EnvelopeStore) -> None:
    sid, other = new_id(), new_id()
    assert await store.get_report(new_id()) is None
    first = report(sid, NOW)
    await store.insert_report(first, audit(report_id=first.id), max_per_day=3)
    assert await store.get_report(first.id) == first
    assert first.status == "open" and "content" not in repr(first)
    with pytest.raises(DuplicateReport):
        await store.insert_report(replace(first, created=NOW + 5), audit(), max_per_day=3)
    second = report(sid, NOW + 10, note=None, attachments=())
    third = report(sid, NOW + 20)
    for r in (second, third):
        await store.insert_report(r, audit(report_id=r.id), max_per_day=3)
    with pytest.raises(QuotaExceeded):  # three filed today by this mailbox
        await store.insert_report(report(sid, NOW + 30), audit(), max_per_day=3)
    await store.insert_report(report(other, NOW + 30), audit(), max_per_day=3)  # per mailbox
    tomorrow = (day_of(NOW) + 1) * DAY
    fourth = report(sid, tomorrow)
    await store.insert_report(fourth, audit(), max_per_day=3)  # a new day
    assert await store.get_report(second.id) == second
    opened = await store.list_reports("open", 100)
    assert [r.created for r in opened] == sorted(r.created for r in opened)  # oldest first
    assert len(opened) == 5 and opened[0] == first
    assert [r.id for r in await store.list_reports("open", 2)] == [first.id, second.id]
    assert await store.list_reports("resolved", 10) == []
    resolution = ReportResolution(action="revoke", moderator="mo", resolved_at=NOW + 99, note="n")
    done = await store.resolve_report(
        second.id, resolution, audit("resolve:revoke", NOW + 99, second.id)
    )
    assert (done.status, done.resolution, done.id) == ("resolved", resolution, second.id)
    assert await store.get_report(second.id) == done
    with pytest.raises(ReportAlreadyResolved):
        await store.resolve_report(second.id, resolution, audit())
    with pytest.raises(ReportNotFound):
        await store.resolve_report(new_id(), resolution, audit())
    assert [r.id for r in await store.list_reports("resolved", 10)] == [second.id]
    assert second.id not in [r.id for r in await store.list_reports("open", 10)]
    everything = await store.list_reports(None, 10)
    assert len(everything) == 5
    assert [r.created for r in everything] == sorted((r.created for r in everything), reverse=True)
    # Resolution did not reopen the allowance, and a resolved report is still a duplicate.
    with pytest.raises(DuplicateReport):
        await store.insert_report(second, audit(), max_per_day=3)


async def test_audit_is_append_only_and_complete(store: EnvelopeStore) -> None:
    sid = new_id()
    r = report(sid)
    await store.insert_report(r, audit("report", NOW, r.id), max_per_day=5)
    # A refused insert appends nothing.
    with pytest.raises(DuplicateReport):
        await store.insert_report(r, audit("report", NOW + 1, r.id), max_per_day=5)
    res = ReportResolution(action="none", moderator="ann", resolved_at=NOW + 2, note="")
    await store.resolve_report(r.id, res, AuditRecord(NOW + 2, "ann", "resolve:none", r.id, "x"))
    with pytest.raises(ReportAlreadyResolved):
        await store.resolve_report(r.id, res, audit("resolve:none", NOW + 3, r.id))
    seq = await store.append_audit(AuditRecord(NOW + 4, "bob", "unsuspend", None, "lifted"))
    entries = await store.list_audit(10)
    assert [e.seq for e in entries] == [seq, seq - 1, seq - 2]  # newest first, no gaps
    assert [(e.ts, e.moderator, e.action, e.report_id, e.detail) for e in entries] == [
        (NOW + 4, "bob", "unsuspend", None, "lifted"),
        (NOW + 2, "ann", "resolve:none", r.id, "x"),
        (NOW, "relay", "report", r.id, "d"),
    ]
    assert [e.seq for e in await store.list_audit(1)] == [seq]
    # The interface has no way to change or remove an entry.
    names = [n for n in dir(store) if "audit" in n and not n.startswith("_")]
    assert sorted(names) == ["append_audit", "list_audit"]


async def test_moderation_data_expires(make_store: MakeStore) -> None:
    limits = replace(LIMITS, report_retention_s=90 * DAY, audit_retention_s=365 * DAY)
    store = await make_store(limits)
    old, new = report(new_id(), NOW), report(new_id(), NOW + 10 * DAY)
    for r in (old, new):
        await store.insert_report(r, audit("report", r.created, r.id), max_per_day=5)
    await store.append_audit(audit("unsuspend", NOW + 100 * DAY))
    await store.purge_expired(NOW + 90 * DAY - 1)
    assert await store.get_report(old.id) is not None
    await store.purge_expired(NOW + 90 * DAY)
    assert await store.get_report(old.id) is None
    assert await store.get_report(new.id) == new
    assert [r.id for r in await store.list_reports(None, 10)] == [new.id]
    assert len(await store.list_audit(10)) == 3  # audit entries outlive reports
    await store.purge_expired(NOW + 365 * DAY)
    assert [e.ts for e in await store.list_audit(10)] == [NOW + 100 * DAY, NOW + 10 * DAY]
    await store.purge_expired(NOW + 500 * DAY)
    assert await store.list_audit(10) == []
    assert await store.list_reports(None, 10) == []
    seq = await store.append_audit(audit("unsuspend", NOW + 500 * DAY))
    assert seq == 4  # sequence numbers are never reused


async def test_reports_survive_reopen_and_mailbox_deletion(make_store: MakeStore) -> None:
    store = await make_store()
    rec = await new_mailbox(store)
    r = report(rec.sid)
    await store.insert_report(r, audit(report_id=r.id), max_per_day=5)
    await store.delete_mailbox(rec.rid)  # moderation data outlives the mailbox
    await store.aclose()
    store = await make_store()
    assert await store.get_report(r.id) == r
    assert [e.report_id for e in await store.list_audit(5)] == [r.id]


# --- SQLite only --------------------------------------------------------------------------


async def test_sqlite_migrates_v1_database(tmp_path: Path) -> None:
    from relay.storage.sqlite.schema import MIGRATIONS as _MIGRATIONS

    path = tmp_path / "relay.db"
    conn = sqlite3.connect(path)
    conn.executescript(_MIGRATIONS[1] + "PRAGMA user_version=1;")
    rec = new_record()
    conn.execute(
        "INSERT INTO mailboxes (rid, sid, owner_key, created_day, active_day)"
        " VALUES (?, ?, ?, ?, ?)",
        (rec.rid, rec.sid, rec.owner_key, rec.created_day, day_of(NOW)),
    )
    conn.commit()
    conn.close()
    store = SQLiteStore(path, LIMITS)
    await store.open()
    try:
        assert await store.get_mailbox(rec.rid, NOW) is not None
        assert (await put(store, rec)).seq == 1
        assert await store.put_prekeys(rec.rid, b"s", items(1), False, 200, NOW) == (1, True)
    finally:
        await store.aclose()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


async def test_sqlite_migrates_v2_database(tmp_path: Path) -> None:
    from relay.storage.sqlite.schema import MIGRATIONS as _MIGRATIONS

    path = tmp_path / "relay.db"
    conn = sqlite3.connect(path)
    conn.executescript(_MIGRATIONS[1] + _MIGRATIONS[2] + "PRAGMA user_version=2;")
    rec = new_record()
    mbox = conn.execute(
        "INSERT INTO mailboxes (rid, sid, owner_key, created_day, active_day, last_seq,"
        " n_envelopes, n_bytes) VALUES (?, ?, ?, ?, ?, 1, 1, 256) RETURNING id",
        (rec.rid, rec.sid, rec.owner_key, rec.created_day, day_of(NOW)),
    ).fetchone()[0]
    eid = new_id()
    conn.execute(
        "INSERT INTO envelopes (mbox, seq, eid, ts, expires_at, flags, ct, fc)"
        " VALUES (?, 1, ?, ?, ?, 0, ?, NULL)",
        (mbox, eid, NOW, NOW + LIMITS.envelope_ttl_s, b"o" * 256),
    )
    conn.execute(
        "INSERT INTO dedupe (mbox, eid, seq, ts, expires_at) VALUES (?, ?, 1, ?, ?)",
        (mbox, eid, NOW, NOW + LIMITS.dedupe_window_s),
    )
    conn.execute("INSERT INTO prekey_state (mbox, static) VALUES (?, ?)", (mbox, b"s"))
    conn.commit()
    conn.close()
    store = SQLiteStore(path, LIMITS)
    await store.open()
    try:
        got = await store.get_mailbox(rec.rid, NOW)
        assert got is not None and (got.kind, got.boundaries) == ("open", None)
        envs = await store.fetch(rec.rid, 0, 10, 1 << 20, NOW)
        assert [(e.seq, e.eid, e.ct, e.hdl) for e in envs] == [(1, eid, b"o" * 256, None)]
        assert (await put(store, rec, eid=eid)).duplicate is True  # dedupe records kept
        assert (await put(store, rec)).seq == 2
        snap = await store.mailbox_info(rec.rid, NOW)
        assert snap is not None and (snap.envelopes, snap.prekey_static, snap.caps) == (2, True, 0)
        # The new tables work on the migrated file.
        pair = await new_kind(store, "pair")
        assert await store.set_caps(pair.rid, [h(1)], [], 64, NOW) == 1
        addr = await new_kind(store, "addr", BND)
        assert (await request(store, addr)).seq == 1
        await store.set_push(rec.rid, ("https://push.example/u", b"t" * 32), NOW)  # schema v6
        assert await store.get_push(rec.rid, NOW) == ("https://push.example/u", b"t" * 32)
        # Schema v7: a dedupe record from before has no recall hash; a new deposit's has.
        assert not await store.recall(rec.sid, eid, bytes(32), NOW)
        rc, later = os.urandom(32), new_id()
        await store.deposit(rec.sid, later, 0, b"r" * 256, None, NOW, rc=rc)
        assert await store.recall(rec.sid, later, rc, NOW)
    finally:
        await store.aclose()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 7
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


async def test_sqlite_migrates_v3_database(tmp_path: Path) -> None:
    from relay.storage.sqlite.schema import MIGRATIONS as _MIGRATIONS
    from relay.storage.sqlite.schema import statements as _statements

    path = tmp_path / "relay.db"
    conn = sqlite3.connect(path)
    for v in (1, 2, 3):
        for statement in _statements(_MIGRATIONS[v]):
            conn.execute(statement)
    conn.execute("PRAGMA user_version=3")
    rec = new_record()
    mbox = conn.execute(
        "INSERT INTO mailboxes (rid, sid, owner_key, created_day, active_day, last_seq,"
        " n_envelopes, n_bytes, kind) VALUES (?, ?, ?, ?, ?, 1, 1, 256, 1) RETURNING id",
        (rec.rid, rec.sid, rec.owner_key, rec.created_day, day_of(NOW)),
    ).fetchone()[0]
    conn.execute("INSERT INTO caps (mbox, h) VALUES (?, ?)", (mbox, h(1)))
    eid, fc = new_id(), os.urandom(32)
    conn.execute(
        "INSERT INTO envelopes (mbox, seq, eid, ts, expires_at, flags, ct, fc)"
        " VALUES (?, 1, ?, ?, ?, 0, ?, ?)",
        (mbox, eid, NOW, NOW + LIMITS.envelope_ttl_s, b"o" * 256, fc),
    )
    conn.commit()
    conn.close()
    store = SQLiteStore(path, LIMITS)
    await store.open()
    try:
        (old,) = await store.fetch(rec.rid, 0, 10, 1 << 20, NOW)
        assert (old.eid, old.fc, old.ft, old.fx) == (eid, fc, None, None)  # no tag before v4
        out = await store.deposit(
            rec.sid, new_id(), 0, b"n" * 256, fc, NOW, cap_hash=h(1), stamp=stamp("pair")
        )
        assert out.seq == 2
        assert [e.ft for e in await store.fetch(rec.rid, 0, 10, 1 << 20, NOW)] == [None, FT]
        assert (await held(store, MailboxRecord(rec.rid, rec.sid, b"", 0))).suspended is False
        assert await store.set_suspended(rec.sid, True, NOW)
        await store.add_franking_key(FrankingKey(kid=1, secret=b"k" * 32, created=NOW))
        r = report(rec.sid)
        await store.insert_report(r, audit(report_id=r.id), max_per_day=1)
        assert await store.get_report(r.id) == r
    finally:
        await store.aclose()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 7
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


async def test_sqlite_migrates_v4_database_and_counts_its_rows(tmp_path: Path) -> None:
    """Version 5 adds the gauges row: the migration counts what a version-4 file holds, and
    from then on the triggers keep it exact (deposit, ack, expiry, mailbox deletion)."""
    from relay.storage.sqlite.schema import MIGRATIONS as _MIGRATIONS
    from relay.storage.sqlite.schema import statements as _statements

    path = tmp_path / "relay.db"
    conn = sqlite3.connect(path)
    for v in (1, 2, 3, 4):
        for statement in _statements(_MIGRATIONS[v]):
            conn.execute(statement)
    conn.execute("PRAGMA user_version=4")
    recs = [new_record() for _ in range(3)]
    for n, rec in enumerate(recs):
        mbox = conn.execute(
            "INSERT INTO mailboxes (rid, sid, owner_key, created_day, active_day, last_seq,"
            " n_envelopes, n_bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (rec.rid, rec.sid, rec.owner_key, rec.created_day, day_of(NOW), n, n, 100 * n),
        ).fetchone()[0]
        for seq in range(1, n + 1):
            conn.execute(
                "INSERT INTO envelopes (mbox, seq, eid, ts, expires_at, flags, ct)"
                " VALUES (?, ?, ?, ?, ?, 0, ?)",
                (mbox, seq, new_id(), NOW, NOW + LIMITS.envelope_ttl_s, b"v" * 100),
            )
    conn.commit()
    conn.close()
    store = SQLiteStore(path, LIMITS)
    await store.open()
    try:
        assert await store.gauges() == StoreGauges(mailboxes=3, envelopes=3, bytes=300)
        assert await store.count_envelopes() == 3
        assert (await put(store, recs[0], size=50)).seq == 1
        assert await store.ack(recs[2].rid, [1]) == 1
        assert await store.gauges() == StoreGauges(mailboxes=3, envelopes=3, bytes=250)
        assert await store.delete_mailbox(recs[2].rid)
        assert await store.gauges() == StoreGauges(mailboxes=2, envelopes=2, bytes=150)
    finally:
        await store.aclose()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 7
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


async def test_sqlite_gauges_and_idle_sweep_cost_the_same_at_any_size(tmp_path: Path) -> None:
    """The virtual machine instructions of a gauge read and of a sweep with nothing due do
    not grow with the stored mailboxes and envelopes (no scan touches their rows)."""
    store = SQLiteStore(tmp_path / "relay.db", LIMITS, count_vm_steps=True)
    await store.open()

    async def cost(call: Callable[[], Awaitable[object]]) -> int:
        before = store.vm_steps
        await call()
        return store.vm_steps - before

    async def costs() -> tuple[int, int, int]:
        return (
            await cost(store.gauges),
            await cost(store.count_envelopes),
            await cost(lambda: store.purge_expired(NOW + 1)),
        )

    try:
        for _ in range(2):
            await put(store, await new_mailbox(store))
        small = await costs()

        async def fill() -> None:
            rec = await new_mailbox(store)
            for _ in range(3):
                await put(store, rec)

        await asyncio.gather(*(fill() for _ in range(300)))
        large = await costs()
        assert large == small
        assert await store.gauges() == StoreGauges(mailboxes=302, envelopes=902, bytes=90_200)
        # The same sweep with everything due does work (the counter is not blind).
        assert await cost(lambda: store.purge_expired(NOW + LIMITS.envelope_ttl_s)) > 10 * small[2]
        assert await store.count_envelopes() == 0
    finally:
        await store.aclose()


async def test_sqlite_sweep_returns_the_freed_pages(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    store = SQLiteStore(path, LIMITS)
    await store.open()
    try:
        empty = path.stat().st_size
        recs = [await new_mailbox(store) for _ in range(20)]
        for rec in recs:
            for _ in range(10):
                await put(store, rec, size=16_384)
        await store.purge_expired(NOW)  # checkpoints the WAL into the file
        full = path.stat().st_size
        assert full > empty + 20 * 10 * 16_384
        assert await store.purge_expired(NOW + LIMITS.envelope_ttl_s) >= 200
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
        conn.close()
        assert path.stat().st_size < empty + 200_000  # what the 20 empty mailboxes need
    finally:
        await store.aclose()


async def test_sqlite_audit_rows_cannot_be_updated(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    store = SQLiteStore(path, LIMITS)
    await store.open()
    try:
        await store.append_audit(audit("unsuspend"))
    finally:
        await store.aclose()
    conn = sqlite3.connect(path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE audit SET detail = 'rewritten'")
        assert conn.execute("SELECT detail FROM audit").fetchall() == [("d",)]
    finally:
        conn.close()


async def test_sqlite_file_settings(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    store = SQLiteStore(path, LIMITS)
    await store.open()
    try:
        rec = await new_mailbox(store)
        await put(store, rec)
        for name in ("relay.db", "relay.db-wal", "relay.db-shm"):
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    finally:
        await store.aclose()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 7
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
    conn.close()


async def test_sqlite_refuses_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=99")
    conn.close()
    store = SQLiteStore(path, LIMITS)
    with pytest.raises(StorageUnavailable):
        await store.open()
    await store.aclose()


async def test_sqlite_group_commit(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "relay.db", LIMITS)
    await store.open()
    try:
        rec = await new_mailbox(store)
        before = store.commit_count
        await asyncio.gather(*(put(store, rec) for _ in range(300)))
        assert store.commit_count - before < 100  # batched: far fewer fsyncs than deposits
    finally:
        await store.aclose()


async def test_sqlite_failed_plain_op_is_isolated_by_a_careful_replay(tmp_path: Path) -> None:
    """A database error in a savepoint-free (plain) operation rolls the whole batch back and
    replays it with one savepoint per operation: its neighbours are stored, its own partial
    write is not, and each caller gets its own outcome."""
    import threading

    store = SQLiteStore(tmp_path / "relay.db", LIMITS)
    await store.open()
    try:
        rec = await new_mailbox(store)
        gate = threading.Event()

        def hold(_conn: sqlite3.Connection) -> None:
            gate.wait(10)  # keeps the writer busy while the batch below is queued

        def half_written(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE mailboxes SET last_seq = 999 WHERE sid = ?", (rec.sid,))
            raise sqlite3.OperationalError("disk I/O error")

        held = asyncio.ensure_future(store._write(hold))
        await asyncio.sleep(0.05)
        first = asyncio.ensure_future(put(store, rec))
        bad = asyncio.ensure_future(store._write(half_written, plain=True))
        last = asyncio.ensure_future(put(store, rec))
        await asyncio.sleep(0.05)
        before = store.careful_batches
        gate.set()
        await held
        assert (await first).seq == 1
        with pytest.raises(StorageUnavailable):
            await bad
        assert (await last).seq == 2  # the bad op's last_seq = 999 was rolled back
        assert store.careful_batches == before + 1
        got = await store.fetch(rec.rid, 0, 10, 1 << 20, NOW)
        assert [e.seq for e in got] == [1, 2]
    finally:
        await store.aclose()


async def test_sqlite_full_database_is_storage_full(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "relay.db", LIMITS, max_db_bytes=400_000)
    await store.open()
    try:
        rec = await new_mailbox(store)
        stored = 0
        with pytest.raises(StorageFull):
            for _ in range(100):
                await put(store, rec, size=16_384)
                stored += 1
        assert 0 < stored < 100
        assert await store.count_envelopes() == stored  # nothing half-stored
        assert await store.ack(rec.rid, [1, 2, 3, 4]) == 4  # still usable, space comes back
        assert (await put(store, rec, size=1024)).seq == stored + 1  # nothing was assigned
    finally:
        await store.aclose()


# --- Redis only ---------------------------------------------------------------------------


async def _exercise(store: EnvelopeStore) -> list[MailboxRecord]:
    recs = [await new_mailbox(store) for _ in range(3)]
    for rec in recs:
        for _ in range(3):
            await put(store, rec)
    await store.ack(recs[0].rid, [1])
    await store.touch_mailbox(recs[1].rid, NOW + 86_400)
    await store.fetch(recs[2].rid, 0, 10, 1 << 20, NOW)
    await store.put_challenge(os.urandom(32), b"binding", NOW + 60)
    for rec in recs:
        await store.put_prekeys(rec.rid, b"static", items(3), False, 200, NOW)
        await store.take_prekeys(rec.sid, NOW, 120)
    await store.put_prekeys(recs[1].rid, None, [], True, 200, NOW + 86_400)
    await store.touch_mailbox(recs[0].rid, NOW + 86_400)
    await store.delete_mailbox(recs[2].rid)
    # Consent keys: a pair mailbox with capability hashes, an address with bans and requests.
    pair, addr = await new_kind(store, "pair"), await new_kind(store, "addr", BND)
    await store.set_caps(pair.rid, [h(1), h(2)], [], 64, NOW)
    await store.deposit(pair.sid, new_id(), 0, b"x" * 256, None, NOW, cap_hash=h(1))
    await store.set_bans(addr.rid, [new_id()], [], 64, NOW)
    await request(store, addr)
    await store.touch_mailbox(pair.rid, NOW + 86_400)
    gone = await new_kind(store, "pair")
    await store.set_caps(gone.rid, [h(3)], [], 64, NOW)
    await store.delete_mailbox(gone.rid)
    # Revision 4: a stamped envelope, a suspension, franking keys, reports and the audit log.
    fc = os.urandom(32)
    await store.deposit(
        pair.sid, new_id(), 0, b"x" * 256, fc, NOW, cap_hash=h(1), stamp=stamp("pair")
    )
    await store.set_suspended(addr.sid, True, NOW)
    await store.add_franking_key(FrankingKey(kid=1, secret=os.urandom(32), created=NOW))
    filed = report(pair.sid)
    await store.insert_report(filed, audit(report_id=filed.id), max_per_day=5)
    await store.insert_report(report(pair.sid), audit(), max_per_day=5)
    res = ReportResolution(action="none", moderator="m", resolved_at=NOW, note="")
    await store.resolve_report(filed.id, res, audit("resolve:none"))
    await store.append_audit(audit("unsuspend"))
    return [*recs, pair, addr, gone]


@pytest.mark.redis
async def test_redis_every_key_has_ttl_and_one_slot_per_mailbox(redis_url: str) -> None:
    store = RedisStore(redis_url, LIMITS)
    await store.open()
    try:
        recs = await _exercise(store)
    finally:
        await store.aclose()
    with redis.Redis.from_url(redis_url) as client:
        keys = list(client.scan_iter(count=1000))
        assert keys
        for key in keys:
            assert client.ttl(key) > 0, key
        for rec in [*recs[:2], *recs[3:5]]:
            tag = b"{" + rec.rid.hex().encode() + b"}"
            mine = [k for k in keys if tag in k]
            assert len(mine) >= 6
            assert any(k.startswith(b"br:k:") for k in mine) == (rec.kind == "open")
            assert len({key_slot(k) for k in mine}) == 1
        assert any(k.startswith(b"br:a:{" + recs[3].rid.hex().encode()) for k in keys)
        assert any(k.startswith(b"br:n:{" + recs[4].rid.hex().encode()) for k in keys)
        for rec in (recs[2], recs[5]):
            assert not [k for k in keys if rec.rid.hex().encode() in k]
            assert not [k for k in keys if rec.sid.hex().encode() in k]
        # Moderation keys (franking keys, reports, the audit log) share one slot.
        mod = [k for k in keys if b"{mod}" in k]
        names = {k.split(b":")[1] for k in mod}
        assert names == {b"f", b"fc", b"r", b"rr", b"ri", b"ro", b"rs", b"au", b"as"}
        assert len({key_slot(k) for k in mod}) == 1


@pytest.mark.redis
async def test_redis_prekey_keys_expire_with_the_mailbox_record(redis_url: str) -> None:
    store = RedisStore(redis_url, LIMITS)
    await store.open()
    try:
        rec = await new_mailbox(store)
        await store.put_prekeys(rec.rid, b"s", items(2), False, 200, NOW)
        m, k, p = store._keys.prekeys(rec.rid)
        client = store._client
        ttls = [await client.pttl(key) for key in (m, k, p)]
        pair, addr = await new_kind(store, "pair"), await new_kind(store, "addr", BND)
        await store.set_caps(pair.rid, [h(1)], [], 64, NOW)
        await store.set_bans(addr.rid, [new_id()], [], 64, NOW)
        for rec2, key in (
            (pair, store._keys.consent(pair.rid)[0]),
            (addr, store._keys.consent(addr.rid)[1]),
        ):
            rttl, kttl = await client.pttl(store._keys.mailbox(rec2.rid)[0]), await client.pttl(key)
            assert kttl > 0 and abs(rttl - kttl) < 5_000  # consent keys go with the record
        assert all(t > 0 for t in ttls)
        assert max(ttls) - min(ttls) < 5_000  # the prekey keys go when the record goes
        assert await client.ttl(m) > LIMITS.mailbox_idle_ttl_s
    finally:
        await store.aclose()


@pytest.mark.redis
async def test_redis_retried_prekey_upload_is_applied_once(redis_url: str) -> None:
    store = RedisStore(redis_url, LIMITS)
    await store.open()
    try:
        rec = await new_mailbox(store)
        token = os.urandom(16)
        ttl = LIMITS.mailbox_idle_ttl_s
        args = [token, NOW, ttl, 0, 200, ttl, 1, b"s", b"a", b"b"]
        keys = store._keys.prekeys(rec.rid)
        first = await store._run("put_prekeys", keys, args)
        again = await store._run("put_prekeys", keys, args)  # what redis-py's retry sends
        assert [int(v) for v in first] == [int(v) for v in again] == [0, 2, 1]
        assert await store.prekey_count(rec.rid, NOW) == (2, True)
    finally:
        await store.aclose()


@pytest.mark.redis
async def test_redis_capability_check_costs_no_round_trip(redis_url: str) -> None:
    store = RedisStore(redis_url, LIMITS)
    await store.open()
    client = redis.Redis.from_url(redis_url)
    try:
        pair = await new_kind(store, "pair")
        await store.set_caps(pair.rid, [h(1)], [], 64, NOW)
        await store.deposit(pair.sid, new_id(), 0, b"x" * 256, None, NOW, cap_hash=h(1))

        async def calls(job: Awaitable[object]) -> dict[str, int]:
            client.config_resetstat()
            with contextlib.suppress(MailboxNotFound):
                await job
            stats = client.info("commandstats")
            # Commands a client sends (those the scripts run inside are counted too: skip).
            sent = {"cmdstat_evalsha", "cmdstat_eval", "cmdstat_get", "cmdstat_exec"}
            return {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items() if k in sent}

        # The send id is cached: one script, the capability checked inside it.
        ok = await calls(store.deposit(pair.sid, new_id(), 0, b"x" * 256, None, NOW, cap_hash=h(1)))
        assert ok == {"evalsha": 1}
        # A refused capability and an unknown send id cost the same round trips.
        refused = await calls(
            store.deposit(pair.sid, new_id(), 0, b"x" * 256, None, NOW, cap_hash=h(2))
        )
        unknown = await calls(
            store.deposit(new_id(), new_id(), 0, b"x" * 256, None, NOW, cap_hash=h(1))
        )
        assert refused == unknown == {"evalsha": 1, "get": 1}
    finally:
        client.close()
        await store.aclose()


@pytest.mark.redis
async def test_redis_deleted_mailbox_seen_through_stale_cache(redis_url: str) -> None:
    a, b = RedisStore(redis_url, LIMITS), RedisStore(redis_url, LIMITS)
    await a.open()
    await b.open()
    try:
        rec = await new_mailbox(a)
        await put(b, rec)  # b caches sid -> rid
        assert await a.delete_mailbox(rec.rid)
        with pytest.raises(MailboxNotFound):
            await put(b, rec)
        # Same send id, new receive id: b's stale mapping must not be used.
        moved = MailboxRecord(new_id(), rec.sid, os.urandom(32), rec.created_day)
        await a.create_mailbox(moved, NOW)
        assert (await put(b, rec)).rid == moved.rid
        assert await b.resolve_sid(rec.sid, NOW) == moved.rid
        # Bundles too: b's cached mapping is stale after a delete and recreate.
        await a.put_prekeys(moved.rid, b"moved", [], False, 200, NOW)
        assert await b.take_prekeys(rec.sid, NOW, 1) == (b"moved", None)
        assert await a.delete_mailbox(moved.rid)
        again = MailboxRecord(new_id(), rec.sid, os.urandom(32), rec.created_day)
        await a.create_mailbox(again, NOW)
        await a.put_prekeys(again.rid, b"again", [], False, 200, NOW)
        assert await b.take_prekeys(rec.sid, NOW, 1) == (b"again", None)
    finally:
        await a.aclose()
        await b.aclose()


@pytest.mark.redis
async def test_redis_durability_checks(redis_server_factory: RedisServerFactory) -> None:
    no_aof = redis_server_factory(durable=False)
    everysec = redis_server_factory(
        "--appendonly", "yes", "--appendfsync", "everysec", durable=False
    )
    lru = redis_server_factory("--maxmemory-policy", "volatile-lru")

    strict = RedisStore(no_aof.url, LIMITS)
    try:
        problems = await strict.durability_problems()
        assert problems and "appendonly" in problems[0]
        with pytest.raises(StorageUnavailable):
            await strict.open()
    finally:
        await strict.aclose()
    relaxed = RedisStore(no_aof.url, LIMITS, durability="relaxed")
    try:
        with pytest.raises(StorageUnavailable):
            await relaxed.open()
    finally:
        await relaxed.aclose()

    strict = RedisStore(everysec.url, LIMITS)
    relaxed = RedisStore(everysec.url, LIMITS, durability="relaxed")
    try:
        with pytest.raises(StorageUnavailable):
            await strict.open()
        await relaxed.open()  # accepted, but the loss window is still reported
        problems = await relaxed.durability_problems()
        assert len(problems) == 1 and "everysec" in problems[0] and "1 s" in problems[0]
    finally:
        await strict.aclose()
        await relaxed.aclose()

    evicting = RedisStore(lru.url, LIMITS)
    try:
        assert any("maxmemory-policy" in p for p in await evicting.durability_problems())
    finally:
        await evicting.aclose()


@pytest.mark.redis
async def test_redis_survives_kill_9(redis_server_factory: RedisServerFactory) -> None:
    server = redis_server_factory()
    store = RedisStore(server.url, LIMITS)
    await store.open()
    try:
        rec = await new_mailbox(store)
        outs = await asyncio.gather(*(put(store, rec) for _ in range(50)))
        assert sorted(o.seq for o in outs) == list(range(1, 51))
    finally:
        await store.aclose()
    server.restart(kill=True)  # SIGKILL: no shutdown save, only the AOF remains
    store = RedisStore(server.url, LIMITS)
    await store.open()
    try:
        assert len(await store.fetch(rec.rid, 0, 100, 1 << 20, NOW)) == 50
        assert (await put(store, rec)).seq == 51
    finally:
        await store.aclose()


@pytest.mark.redis
async def test_redis_unreachable_is_unavailable(redis_server_factory: RedisServerFactory) -> None:
    server = redis_server_factory()
    store = RedisStore(server.url, LIMITS)
    await store.open()
    try:
        rec = await new_mailbox(store)
        server.stop()
        with pytest.raises(StorageUnavailable):
            await put(store, rec)
        with pytest.raises(StorageUnavailable):
            await store.ping()
    finally:
        await store.aclose()


@pytest.mark.redis
async def test_redis_out_of_memory_is_storage_full(
    redis_server_factory: RedisServerFactory,
) -> None:
    server = redis_server_factory("--maxmemory", "4mb")
    store = RedisStore(server.url, StoreLimits(max_bytes=1 << 30))
    await store.open()
    try:
        rec = await new_mailbox(store)
        stored = 0
        with pytest.raises(StorageFull):
            for _ in range(500):
                await put(store, rec, size=65_536)
                stored += 1
        assert stored > 0
        assert await store.count_envelopes() == stored
        assert await store.ack(rec.rid, list(range(1, stored + 1))) == stored  # allowed at OOM
        assert (await put(store, rec, size=256)).seq == stored + 1
    finally:
        await store.aclose()


@pytest.mark.redis
async def test_redis_idle_sweep_and_gauges_cost_the_same_at_any_size(redis_url: str) -> None:
    """Counted by Redis itself (INFO commandstats, commands run inside scripts included): a
    gauge read is one HMGET, and a sweep with nothing due runs the same commands with 2 or
    302 mailboxes, none of them on a mailbox key."""
    store = RedisStore(redis_url, LIMITS)
    await store.open()
    client = redis.Redis.from_url(redis_url)

    async def calls(job: Callable[[], Awaitable[object]]) -> dict[str, int]:
        client.config_resetstat()
        await job()
        stats = client.info("commandstats")
        return {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()}

    async def costs() -> tuple[dict[str, int], dict[str, int]]:
        return await calls(store.gauges), await calls(lambda: store.purge_expired(NOW + 1))

    try:
        await store.purge_expired(NOW)  # takes the lease, marks the layout
        for _ in range(2):
            await put(store, await new_mailbox(store))
        small = await costs()

        async def fill() -> None:
            rec = await new_mailbox(store)
            for _ in range(3):
                await put(store, rec)

        await asyncio.gather(*(fill() for _ in range(300)))
        large = await costs()
        assert large == small
        assert small[0] == {"hmget": 1, "config|resetstat": 1}
        assert not {"hget", "hmget", "del", "unlink", "zrem"} & set(small[1])
        # One probe per slot index, and one of the reports past their retention.
        assert small[1]["zrangebyscore"] == 16_384 + 1
        assert await store.gauges() == StoreGauges(mailboxes=302, envelopes=902, bytes=90_200)
        # With everything due the sweep does the work (and the gauges follow).
        await store.purge_expired(NOW + LIMITS.envelope_ttl_s)
        assert await store.gauges() == StoreGauges(mailboxes=302, envelopes=0, bytes=0)
    finally:
        client.close()
        await store.aclose()


@pytest.mark.redis
async def test_redis_one_sweeper_per_deployment(redis_url: str) -> None:
    first, second = RedisStore(redis_url, LIMITS), RedisStore(redis_url, LIMITS)
    await first.open()
    await second.open()
    try:
        rec = await new_mailbox(first)
        await put(first, rec)
        await put(first, rec)
        assert await first.purge_expired(NOW) == 0  # takes the lease; nothing due
        later = NOW + LIMITS.envelope_ttl_s
        assert await second.purge_expired(later) == 0  # the lease is held: no sweep
        assert await second.count_envelopes() == 2
        assert await first.purge_expired(later) >= 2  # the holder sweeps again
        await put(first, rec, now=later)
        await first.aclose()  # hands the lease over
        assert await second.purge_expired(later + LIMITS.envelope_ttl_s) >= 1
        assert await second.count_envelopes() == 0
    finally:
        await first.aclose()
        await second.aclose()


@pytest.mark.redis
async def test_redis_backfill_counts_records_written_before_the_gauges(redis_url: str) -> None:
    """Records stored by a relay without the gauges and the expiry index are counted and
    indexed once, by the first sweep; a record is never counted twice."""
    store = RedisStore(redis_url, LIMITS)
    await store.open()
    client = redis.Redis.from_url(redis_url)
    try:
        recs = [await new_mailbox(store) for _ in range(3)]
        for n, rec in enumerate(recs):
            for _ in range(n):
                await put(store, rec, size=100)
        # What an older relay left: no gauges, no index, no counted marks.
        for rec in recs:
            client.hdel(store._keys.mailbox(rec.rid)[0], "g")
        client.delete("br:g", "br:layout", *client.keys("br:xi:*"))
        assert await store.gauges() == StoreGauges(mailboxes=0, envelopes=0, bytes=0)
        await put(store, recs[0], size=100)  # not counted until the backfill counts it
        assert await store.gauges() == StoreGauges(mailboxes=0, envelopes=0, bytes=0)
        await store.purge_expired(NOW)
        assert await store.gauges() == StoreGauges(mailboxes=3, envelopes=4, bytes=400)
        await store.purge_expired(NOW)  # once only
        assert await store.gauges() == StoreGauges(mailboxes=3, envelopes=4, bytes=400)
        assert client.zcard(store._keys.index(recs[1].rid)) >= 1
        # The backfilled index expires them like any other.
        await store.purge_expired(NOW + LIMITS.envelope_ttl_s)
        assert await store.gauges() == StoreGauges(mailboxes=3, envelopes=0, bytes=0)
        await store.purge_expired(mailbox_deadline(day_of(NOW), LIMITS))
        assert await store.gauges() == StoreGauges(mailboxes=0, envelopes=0, bytes=0)
        assert await store.get_mailbox(recs[2].rid, NOW) is None
    finally:
        client.close()
        await store.aclose()


@pytest.mark.redis
async def test_redis_key_prefix(redis_url: str) -> None:
    store = RedisStore(redis_url, LIMITS, key_prefix="t1:")
    await store.open()
    try:
        rec = await new_mailbox(store)
        await put(store, rec)
    finally:
        await store.aclose()
    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = [k async for k in client.scan_iter()]
    finally:
        await client.aclose()
    assert keys and all(k.startswith(b"t1:") for k in keys)
    with pytest.raises(ValueError, match="prefix"):
        RedisStore(redis_url, LIMITS, key_prefix="{bad}")


async def test_a_deposit_may_require_the_mailbox_kind(store: EnvelopeStore) -> None:
    """Revision 9 (group fan-out, protocol.md §26.1): ``kind`` is checked like a stamp's kind,
    without a stamp; a mailbox of another kind stores nothing, a duplicate is not checked."""
    open_, pair = await new_kind(store, "open"), await new_kind(store, "pair")
    await store.set_caps(pair.rid, [h(1)], [], 64, NOW)
    with pytest.raises(StampMismatch) as info:
        await store.deposit(open_.sid, new_id(), 0, b"o" * 256, None, NOW, kind="pair")
    assert info.value.kind == "open"
    eid = new_id()
    first = await store.deposit(pair.sid, eid, 0, b"p" * 256, None, NOW, cap_hash=h(1), kind="pair")
    again = await store.deposit(pair.sid, eid, 0, b"p" * 256, None, NOW, cap_hash=h(1), kind="pair")
    assert (again.seq, again.duplicate, first.duplicate) == (first.seq, True, False)
    with pytest.raises(MailboxNotFound):  # the capability check comes first
        await store.deposit(
            pair.sid, new_id(), 0, b"p" * 256, None, NOW, cap_hash=h(2), kind="pair"
        )
    assert (await held(store, open_)).envelopes == 0
    assert (await held(store, pair)).envelopes == 1


async def test_push_endpoint_kept_as_registered_and_gone_with_the_mailbox(
    store: EnvelopeStore,
) -> None:
    """protocol.md §28: the endpoint as registered; replaced, forgotten, deleted with the
    mailbox, unreachable at its idle expiry, and not carried over to a reused id."""
    rec = await new_mailbox(store)
    url, tok = "https://push.example/up/é?x=1&y=2", os.urandom(32)
    assert await store.get_push(rec.rid, NOW) is None
    await store.set_push(rec.rid, (url, tok), NOW)
    assert await store.get_push(rec.rid, NOW) == (url, tok)
    tok2 = os.urandom(32)
    await store.set_push(rec.rid, (url + "z", tok2), NOW)
    assert await store.get_push(rec.rid, NOW) == (url + "z", tok2)
    await store.set_push(rec.rid, None, NOW)
    assert await store.get_push(rec.rid, NOW) is None
    await store.set_push(rec.rid, None, NOW)  # forgetting twice is fine
    with pytest.raises(MailboxNotFound):
        await store.set_push(new_id(), (url, tok), NOW)
    await store.set_push(rec.rid, (url, tok), NOW)
    assert await store.delete_mailbox(rec.rid) is True
    assert await store.get_push(rec.rid, NOW) is None
    await store.create_mailbox(rec, NOW)
    assert await store.get_push(rec.rid, NOW) is None
    # Idle expiry: unreachable at the deadline, refused, and not carried over to a new record.
    await store.set_push(rec.rid, (url, tok), NOW)
    deadline = mailbox_deadline(day_of(NOW), LIMITS)
    assert await store.get_push(rec.rid, deadline) is None
    with pytest.raises(MailboxNotFound):
        await store.set_push(rec.rid, (url, tok), deadline)
    again = MailboxRecord(rec.rid, rec.sid, os.urandom(32), day_of(deadline))
    await store.create_mailbox(again, deadline)
    assert await store.get_push(rec.rid, deadline) is None
