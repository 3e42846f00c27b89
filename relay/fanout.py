"""Group fan-out and delegated revocation (protocol.md §26.1-§26.2, revision 9).

A member of a group sends one ``fan`` frame: one envelope and the list of ``(send id,
capability)`` of the other members' group mailboxes. Each entry is an ordinary ``pair``
deposit (capability checked, duplicate by ``(mailbox, eid)``, quota of that mailbox), in its
own atomic storage step; the entries are handed to the store together, so SQLite commits
them in one batch (one fsync) and Redis pipelines their scripts. A refused entry (unknown,
revoked, suspended, not a ``pair`` mailbox, full) is reported by index with the code a
``dep`` would have got and changes nothing; the others are stored and pushed.

``dcaps`` lets a key the owner registered as a delegate (``SHA-256(DELEGATE_CONTEXT || sid ||
key)`` among the mailbox's capability hashes) replace capability hashes there: group admins'
clients swap the group's capability of every member's group mailbox for the next epoch's,
which locks a removed member out at once (protocol.md §26.2).

No aiohttp here, like :mod:`relay.service`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from clientlib.wire.client_frames import Fanout
from clientlib.wire.codes import ErrorCode
from clientlib.wire.fanout import delegate_hash
from clientlib.wire.frames import Ok, StoredEnvelope
from clientlib.wire.limits import (
    ENVELOPE_BUCKETS,
    FANOUT_ENTRY_SIZE,
    FLAG_ONLINE_ONLY,
    KIND_PAIRWISE,
    KNOWN_FLAGS,
    MAX_FANOUT,
    MAX_FANOUT_CT,
)
from clientlib.wire.owner import DelegatedCapabilities
from clientlib.wire.pow import capability_hash
from clientlib.wire.relay_frames import FanoutDone, FanoutRefusal
from relay.errors import RelayError, wire_code
from relay.franking import build_context, relay_tag, source_for
from relay.storage.base import SECONDS_PER_DAY, DepositOutcome, RelayStamp, StampMismatch
from relay.storage.records import WakeEvent, online_wake

if TYPE_CHECKING:
    from relay.service import MailboxService

__all__ = ["check_fanout", "delegated_caps", "fan_out"]

_BUCKETS = frozenset(ENVELOPE_BUCKETS)


def check_fanout(frame: Fanout, max_envelope: int) -> list[tuple[bytes, bytes]]:
    """The checks of a ``fan`` frame that need no storage; returns its entries.

    Raises:
        RelayError: ``TOO_LARGE`` (ciphertext over :data:`MAX_FANOUT_CT` or the relay's
            envelope limit; more than :data:`MAX_FANOUT` entries), ``MALFORMED`` (a
            ciphertext that is not a bucket, unknown flags, ``to`` not a whole number of
            entries, a send id twice).
    """
    if len(frame.ct) > min(MAX_FANOUT_CT, max_envelope):
        raise RelayError(ErrorCode.TOO_LARGE)
    if len(frame.ct) not in _BUCKETS or frame.flags & ~KNOWN_FLAGS:
        raise RelayError(ErrorCode.MALFORMED)
    if len(frame.to) % FANOUT_ENTRY_SIZE:
        raise RelayError(ErrorCode.MALFORMED)
    if len(frame.to) // FANOUT_ENTRY_SIZE > MAX_FANOUT:
        raise RelayError(ErrorCode.TOO_LARGE)
    entries = frame.entries()
    if len({sid for sid, _ in entries}) != len(entries):
        raise RelayError(ErrorCode.MALFORMED)
    return entries


async def fan_out(service: MailboxService, frame: Fanout) -> tuple[FanoutDone, list[WakeEvent]]:
    """Enqueue (or, online-only, push) ``frame``'s envelope for every entry; returns the
    reply and the wake-ups of the stored entries, for the caller to publish
    (:meth:`~relay.service.MailboxService.announce`: after, so that a failed publish never
    fails entries that are stored).

    Raises:
        RelayError: see :func:`check_fanout`; ``UNAVAILABLE``, ``STORAGE_FULL`` (reading
            the franking key). Per-entry refusals are in the reply, not raised.
    """
    entries = check_fanout(frame, service.config.max_envelope_bytes)
    now = service.now()
    hashes = [capability_hash(sid, cap) for sid, cap in entries]
    stamps: list[RelayStamp | None] = [None] * len(entries)
    if frame.fc is not None:
        key = await service.keyring.current(now)
        day = now // SECONDS_PER_DAY
        for i, (sid, _) in enumerate(entries):
            src_kind, src = source_for(KIND_PAIRWISE, hashes[i], None)
            ctx = build_context(key.kid, day, sid, src_kind, src)
            stamps[i] = RelayStamp(
                tag=relay_tag(key.secret, frame.fc, ctx), ctx=ctx, kind=KIND_PAIRWISE
            )
    if frame.flags & FLAG_ONLINE_ONLY:
        return await _push_online(service, frame, entries, hashes, stamps, now), []
    if service.storage_full():
        raise RelayError(ErrorCode.STORAGE_FULL)
    store = service.store
    results = await asyncio.gather(
        *(
            store.deposit(
                sid,
                frame.eid,
                frame.flags,
                frame.ct,
                frame.fc,
                now,
                cap_hash=hashes[i],
                stamp=stamps[i],
                kind=KIND_PAIRWISE,
            )
            for i, (sid, _) in enumerate(entries)
        ),
        return_exceptions=True,
    )
    bad: list[FanoutRefusal] = []
    events: list[WakeEvent] = []
    stored = duplicates = 0
    for i, result in enumerate(results):
        if not isinstance(result, DepositOutcome):
            bad.append(FanoutRefusal(i=i, e=_entry_code(result)))
            continue
        if result.duplicate:
            duplicates += 1
            continue
        stored += 1
        stamp = stamps[i]
        env = StoredEnvelope(
            seq=result.seq,
            eid=frame.eid,
            ts=result.ts,
            flags=frame.flags,
            ct=frame.ct,
            fc=frame.fc,
            ft=stamp.tag if stamp is not None else None,
            fx=stamp.ctx if stamp is not None else None,
        )
        # Published by the caller; its push wake-up too (protocol.md §28.2: a group
        # envelope wakes like any other).
        events.append(
            WakeEvent(kind="stored", rid=result.rid, seq=result.seq, env=env, at=time.time())
        )
    metrics = service.metrics
    metrics.inc("fanouts")
    metrics.inc("deposits", "fanout", amount=stored)
    if duplicates:
        metrics.inc("deposits", "duplicate", amount=duplicates)
    if bad:
        metrics.inc("fanout_refused", amount=len(bad))
    return FanoutDone(id=frame.id, n=stored + duplicates, bad=tuple(bad)), events


async def _push_online(
    service: MailboxService,
    frame: Fanout,
    entries: Sequence[tuple[bytes, bytes]],
    hashes: Sequence[bytes],
    stamps: Sequence[RelayStamp | None],
    now: int,
) -> FanoutDone:
    """Online-only fan-out (typing in a group): pushed to connected owners, never stored."""
    found = await asyncio.gather(
        *(service.store.resolve_online(sid, hashes[i], now) for i, (sid, _) in enumerate(entries)),
        return_exceptions=True,
    )
    bad: list[FanoutRefusal] = []
    for i, hit in enumerate(found):
        if isinstance(hit, BaseException) or hit is None or hit[1] != KIND_PAIRWISE:
            code = _entry_code(hit) if isinstance(hit, BaseException) else ErrorCode.AUTH.value
            bad.append(FanoutRefusal(i=i, e=code))
            continue
        await service.wakeups.publish(online_wake(hit[0], frame, stamps[i], now))
    service.metrics.inc("fanouts")
    return FanoutDone(id=frame.id, n=len(entries) - len(bad), bad=tuple(bad))


def _entry_code(exc: BaseException) -> str:
    """The wire code of one refused entry. A mailbox of another kind is ``AUTH`` (it is not
    a group mailbox this capability opens); an error without a wire code is a bug, raised."""
    if isinstance(exc, StampMismatch):
        return ErrorCode.AUTH.value
    code = wire_code(exc)
    if code is None:
        raise exc
    return code.value


async def delegated_caps(
    service: MailboxService, request_id: int, cmd: DelegatedCapabilities
) -> Ok:
    """``dcaps``: the signature by ``cmd.key`` is checked already; here the delegation.

    Raises:
        RelayError: ``AUTH`` (no live ``pair`` mailbox has send id ``cmd.sid``, or ``cmd.key``
            is not a delegate of it: the same answer), ``QUOTA`` (more than ``max_caps``;
            nothing changed), ``UNAVAILABLE``, ``STORAGE_FULL``.
    """
    now = service.now()
    found = await service.store.resolve_online(cmd.sid, delegate_hash(cmd.sid, cmd.key), now)
    if found is None or found[1] != KIND_PAIRWISE:
        raise RelayError(ErrorCode.AUTH)
    await service.store.set_caps(
        found[0], cmd.add or (), cmd.remove or (), service.config.max_caps, now
    )
    service.metrics.inc("owner_consent", cmd.OP)
    return Ok(id=request_id)
