"""Redis: the envelope queue (the :class:`~relay.storage.base.EnvelopeQueue` concern)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import msgpack

from clientlib.wire.frames import StoredEnvelope
from relay.storage._common import (
    MSG_NOT_FOUND,
    MSG_QUOTA,
    day_of,
    envelope_lifetime,
)
from relay.storage.errors import (
    BoundaryExceeded,
    MailboxNotFound,
    PowRequired,
    QuotaExceeded,
    StampMismatch,
    WrongKind,
)
from relay.storage.records import (
    DepositOutcome,
    RelayStamp,
    StoreGauges,
)
from relay.storage.redis.argv import DepositArgv, argv
from relay.storage.redis.engine import (
    BOUNDARY,
    DUPLICATE,
    ENVELOPE_HEADER,
    NOT_FOUND,
    POW,
    QUOTA,
    REFUSED,
    STAMP_KIND,
    TTL_SLACK_S,
    WRONG_KIND,
    RedisEngine,
)
from relay.storage.redis.keys import NO_RID, SLOTS

__all__ = ["EnvelopesMixin"]


class EnvelopesMixin(RedisEngine):
    """The envelope queue of :class:`RedisStore`."""

    async def deposit(
        self,
        sid: bytes,
        eid: bytes,
        flags: int,
        ct: bytes,
        fc: bytes | None,
        now: int,
        *,
        cap_hash: bytes | None = None,
        handle: bytes | None = None,
        attachments: int = 0,
        att_cap_hash: bytes | None = None,
        pow_bits: int = 0,
        stamp: RelayStamp | None = None,
        kind: str | None = None,
        ttl: int | None = None,
        rc: bytes | None = None,
    ) -> DepositOutcome:
        # The kind's checks run inside the deposit script: a capability is one ``SISMEMBER``,
        # a contact request reads the boundaries from the record it already reads, one
        # ``SISMEMBER`` for bans, and updates the daily counter in the record. A send id that
        # resolves to nothing still runs the script (against a receive id no mailbox has), so
        # an unknown mailbox and a refused capability cost the same round trips.
        limits = self._limits
        header = len(ct).to_bytes(ENVELOPE_HEADER, "big")
        # Blob items: eid, ts, flags, ct, fc, then the handle (contact requests) and, with a
        # stamp, the handle (or nil) followed by the franking tag and its context.
        tail: list[Any] = [] if stamp is None else [stamp.tag, stamp.ctx]
        plain = [eid, now, flags, ct, fc, *([None, *tail] if tail else [])]
        blob = header + msgpack.packb(plain, use_bin_type=True)
        with_handle = (
            header + msgpack.packb([eid, now, flags, ct, fc, handle, *tail], use_bin_type=True)
            if handle is not None
            else b""
        )
        spec = DepositArgv(
            sid=sid,
            eid=eid,
            blob=blob,
            size=len(ct),
            now=now,
            expires_at=now + envelope_lifetime(limits.envelope_ttl_s, ttl),
            dedupe_until=now + limits.dedupe_window_s,
            max_envelopes=limits.max_envelopes,
            max_bytes=limits.max_bytes,
            idle_ttl=limits.mailbox_idle_ttl_s,
            envelope_key_ttl=limits.envelope_ttl_s + TTL_SLACK_S,
            dedupe_key_ttl=limits.dedupe_window_s + TTL_SLACK_S,
            cap_hash=cap_hash or b"",
            handle=handle or b"",
            attachments=attachments,
            att_cap_hash=att_cap_hash or b"",
            pow_bits=pow_bits,
            today=day_of(now),
            blob_with_handle=with_handle,
            stamp_kind=stamp.kind if stamp is not None else kind or "",
            rid=NO_RID,  # the mailbox the send id resolves to, per attempt below
            index_ttl=self._index_ttl,
            rc=rc.hex() if rc is not None else "",
        )
        use_cache = True
        while True:
            cached = use_cache and sid in self._sid_cache
            rid = await self._rid_for_sid(sid, use_cache=use_cache)
            target = rid or NO_RID
            keys = [
                *self._keys.deposit(target),
                self._keys.index(target),
                self._keys.gauges(target),
            ]
            args = argv(dataclasses.replace(spec, rid=target))
            reply = await self._run("deposit", keys, args)
            status = int(reply[0])
            if rid is None:
                raise MailboxNotFound(MSG_NOT_FOUND)
            if status == NOT_FOUND and cached:
                # The cached mapping may be stale: ask the index once more.
                self._sid_cache.pop(sid, None)
                use_cache = False
                continue
            break
        if status == REFUSED:
            if cached:
                # Same round trips as an unknown send id (index lookup, then the script), so
                # a refused capability or handle cannot be told from a deleted mailbox by
                # timing.
                await self._rid_for_sid(sid, use_cache=False)
            raise MailboxNotFound(MSG_NOT_FOUND)
        if status == NOT_FOUND:
            self._sid_cache.pop(sid, None)
            raise MailboxNotFound(MSG_NOT_FOUND)
        if status == QUOTA:
            raise QuotaExceeded(MSG_QUOTA)
        if status == WRONG_KIND:
            raise WrongKind("a contact request needs a handle")
        if status == BOUNDARY:
            raise BoundaryExceeded("the deposit exceeds the mailbox's boundaries")
        if status == POW:
            raise PowRequired("the address asks for more proof of work")
        if status == STAMP_KIND:
            raise StampMismatch(bytes(reply[1]).decode())
        return DepositOutcome(
            rid=rid, seq=int(reply[1]), ts=int(reply[2]), duplicate=status == DUPLICATE
        )

    async def fetch(
        self, rid: bytes, after_seq: int, limit: int, max_bytes: int, now: int
    ) -> list[StoredEnvelope]:
        if limit <= 0:
            return []
        keys = [*self._keys.mailbox(rid)[:4], self._keys.gauges(rid)]
        flat = await self._run(
            "fetch", keys, [after_seq, limit, max_bytes, now, self._limits.mailbox_idle_ttl_s]
        )
        out: list[StoredEnvelope] = []
        for i in range(0, len(flat), 2):
            # Contact requests carry the handle as a sixth item (revision 3); stamped
            # envelopes the handle (or nil), the franking tag and its context (revision 4).
            eid, ts, flags, ct, fc, *rest = msgpack.unpackb(
                flat[i + 1][ENVELOPE_HEADER:], raw=False
            )
            ft, fx = (rest[1], rest[2]) if len(rest) >= 3 else (None, None)
            out.append(
                StoredEnvelope(
                    seq=int(flat[i]),
                    eid=eid,
                    ts=ts,
                    flags=flags,
                    ct=ct,
                    fc=fc,
                    hdl=rest[0] if rest else None,
                    ft=ft,
                    fx=fx,
                )
            )
        return out

    async def ack(self, rid: bytes, seqs: Sequence[int]) -> int:
        wanted = sorted({int(s) for s in seqs})
        if not wanted:
            return 0
        keys = [*self._keys.mailbox(rid)[:4], self._keys.gauges(rid)]
        return int(await self._run("ack", keys, wanted))

    async def recall(self, sid: bytes, eid: bytes, rc: bytes, now: int) -> bool:
        # A send id that resolves to nothing still runs the script (against a receive id no
        # mailbox has), as for deposits: the same round trips whatever the outcome.
        rid = await self._rid_for_sid(sid, use_cache=True)
        target = rid or NO_RID
        keys = [*self._keys.mailbox(target)[:5], self._keys.gauges(target)]
        args = [sid, eid, rc.hex(), now, self._limits.mailbox_idle_ttl_s]
        return bool(int(await self._run("recall", keys, args)))

    async def count_envelopes(self) -> int:
        return (await self.gauges()).envelopes

    async def gauges(self) -> StoreGauges:
        # One HMGET of the gauges hash, which the scripts keep (see lua/lib.lua); on Redis
        # Cluster one per slot, summed by one script per master (lua/gsum.lua).
        if self._gauge_keys is None:
            self._gauge_keys = self._keys.gauge_keys()
        keys = self._gauge_keys
        if len(keys) == 1:
            with self._guard():
                replies = [await self._client.hmget(keys[0], ["m", "n", "b"])]
        else:
            replies = [r for _, r in await self._on_every_node("gsum", range(SLOTS), "g", [])]
        m = n = b = 0
        for dm, dn, db in replies:
            m, n, b = m + int(dm or 0), n + int(dn or 0), b + int(db or 0)
        return StoreGauges(mailboxes=m, envelopes=n, bytes=b)
