"""Redis: expiry of every record (``purge_expired``), in O(due), one sweeper per deployment.

A sweep:

1. takes (or renews) the sweeper lease ``<prefix>sweep`` for :data:`LEASE_S`; if another
   relay process holds it, returns 0 at once. The holder keeps it across sweeps (each sweep
   renews it) and hands it over in ``aclose``; if it dies, the lease expires and the next
   process to sweep takes it;
2. once per deployment (until ``<prefix>layout`` says ``2``), counts the mailbox records that
   were written before the gauges and the expiry index existed (a SCAN, then one script per
   record, which is idempotent: a record is counted once, it then carries ``g``);
3. asks the expiry index of every hash slot for the mailboxes that may be due (one read-only
   script per :data:`SLOTS_PER_ROUND_TRIP` slots, ``lua/due.lua``, one ``ZRANGEBYSCORE ...
   LIMIT`` per slot): a sweep with nothing due costs the same whatever the number of
   mailboxes (8 round trips, 16,384 probes of small keys inside Redis);
4. runs the purge script for each due mailbox: an idle one is deleted with all its keys, an
   active one loses at most :data:`PURGE_BATCH` expired envelopes and dedupe records per
   call and gets its next deadline back in the index (so no script holds Redis for long and
   deposits run between them);
5. destroys moderation data past its retention (franking keys, reports, audit entries).

Challenges are left to their key TTL (at most ``TTL_SLACK_S`` after expiry), and
``take_challenge`` never returns an expired one.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from relay.storage.redis.engine import SCAN_COUNT, RedisEngine
from relay.storage.redis.keys import SLOTS

__all__ = ["LEASE_S", "MOD_PURGE_CHUNK", "PURGE_BATCH", "SLOTS_PER_ROUND_TRIP", "ExpiryMixin"]

#: Reports and audit entries one purge script removes at most (the purge repeats it).
MOD_PURGE_CHUNK: Final = 500
#: Envelopes (and dedupe records) one purge script removes from one mailbox at most.
PURGE_BATCH: Final = 256
#: Slot indexes asked per pipelined round trip, and due mailboxes taken per slot per ask.
SLOTS_PER_ROUND_TRIP: Final = 2048
DUE_PER_SLOT: Final = 64
#: Purge scripts the sweep keeps in flight (they share the AOF fsync of one event loop turn).
PURGES_IN_FLIGHT: Final = 16
#: How long the sweeper lease lasts without renewal (longer than the purge interval, so the
#: holder keeps it from one sweep to the next).
LEASE_S: Final = 900
#: The layout version the backfill brings a deployment to.
LAYOUT: Final = b"2"


class ExpiryMixin(RedisEngine):
    """Expiry of every record of :class:`RedisStore`."""

    async def purge_expired(self, now: int) -> int:
        if not int(
            await self._run("lease", [self._keys.lease()], [self._lease_token, LEASE_S * 1000])
        ):
            return 0  # another relay process sweeps
        await self._backfill()
        limits = self._limits
        total = 0
        base = [now, limits.mailbox_idle_ttl_s]
        indexes = self._slot_indexes()
        slot = 0
        while slot < SLOTS:
            end = min(SLOTS, slot + SLOTS_PER_ROUND_TRIP)
            flat = await self._due(indexes, slot, end, now)
            per_slot: dict[int, int] = {}
            rids: list[bytes] = []
            for i in range(0, len(flat), 2):
                position = int(flat[i])
                per_slot[position] = per_slot.get(position, 0) + 1
                rids.append(bytes(flat[i + 1]))
            for start in range(0, len(rids), PURGES_IN_FLIGHT):
                # A few scripts in flight share Redis' AOF fsync; each is short, so deposits
                # still run between them.
                counts = await asyncio.gather(
                    *(self._purge_one(rid, base) for rid in rids[start : start + PURGES_IN_FLIGHT])
                )
                total += sum(counts)
            if DUE_PER_SLOT not in per_slot.values():
                slot = end  # otherwise a slot may hold more: ask this round again
        keys = [self._keys.mod(n) for n in ("f", "fc", "r", "rr", "ri", "ro", "au")]
        args = [
            now,
            limits.report_window_s,
            limits.report_retention_s,
            limits.audit_retention_s,
            MOD_PURGE_CHUNK,
        ]
        for _ in range(1000):  # bounded: at most 1000 chunks per purge run
            removed = int(await self._run("purge_mod", keys, args))
            total += removed
            if removed < MOD_PURGE_CHUNK:
                break
        return total

    async def _purge_one(self, rid: bytes, base: list[int]) -> int:
        """Run the purge script on one due mailbox; returns what it deleted."""
        gone, n_env, n_dedupe, sid = await self._run(
            "purge", self._keys.counted(rid), [*base, rid, PURGE_BATCH, self._index_ttl]
        )
        if gone:
            self._sid_cache.pop(sid, None)
            await self._run("unlink_if", [self._keys.sid(sid)], [rid])
        return int(gone) + int(n_env) + int(n_dedupe)

    async def _due(self, indexes: list[str], start: int, end: int, now: int) -> list[Any]:
        """``{i1, rid1, i2, rid2, ...}``: the due members of the expiry indexes of slots
        ``start`` to ``end`` (positions from 1, as ``lua/due.lua``). On Redis Cluster the
        same script runs once per master, over the slots it serves."""
        if self._cluster is None:
            return list(await self._run("due", indexes[start:end], [now, DUE_PER_SLOT]))
        flat: list[Any] = []
        for mine, reply in await self._on_every_node(
            "due", range(start, end), "xi", [now, DUE_PER_SLOT]
        ):
            for i in range(0, len(reply), 2):
                flat += [mine[int(reply[i]) - 1] - start + 1, reply[i + 1]]
        return flat

    def _slot_indexes(self) -> list[str]:
        """The expiry index key of every slot, in slot order (built once per store)."""
        if self._indexes is None:
            self._indexes = [self._keys.slot_index(s) for s in range(SLOTS)]
        return self._indexes

    async def _backfill(self) -> int:
        """Count the records written before the gauges and the index existed (once per
        deployment); returns how many were counted now."""
        layout = self._keys.layout()
        with self._guard():
            if await self._client.get(layout) == LAYOUT:
                await self._client.expire(layout, self._index_ttl)
                return 0
        counted = 0
        pattern = f"{self._keys.prefix}m:*"
        start = len(self._keys.prefix) + 3  # "m:{"
        with self._guard():
            async for key in self._client.scan_iter(match=pattern, count=SCAN_COUNT):
                try:
                    rid = bytes.fromhex(key[start:-1].decode("ascii"))
                except ValueError:
                    continue
                counted += int(
                    await self._run(
                        "backfill",
                        self._keys.counted(rid),
                        [rid, self._limits.mailbox_idle_ttl_s, self._index_ttl],
                    )
                )
            await self._client.set(layout, LAYOUT, ex=self._index_ttl)
        return counted
