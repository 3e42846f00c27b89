"""Redis: mailbox records (the :class:`~relay.storage.base.MailboxStore` concern)."""

from __future__ import annotations

from collections.abc import Sequence

import msgpack

from clientlib.wire.frames import DEFAULT_BOUNDARIES, Boundaries
from clientlib.wire.limits import KIND_OPEN, KIND_PAIRWISE
from relay.storage._common import (
    MSG_ID_COLLISION,
    day_of,
    mailbox_expired,
)
from relay.storage.errors import IdCollision
from relay.storage.records import (
    MailboxRecord,
    MailboxSnapshot,
)
from relay.storage.redis.argv import CreateArgv, argv
from relay.storage.redis.engine import (
    ENVELOPE_HEADER,
    KINDS,
    RedisEngine,
    as_bytes,
    kind_and_boundaries,
)

__all__ = ["MailboxesMixin"]


class MailboxesMixin(RedisEngine):
    """Mailbox records of :class:`RedisStore`."""

    async def create_mailbox(self, record: MailboxRecord, now: int) -> None:
        ttl = self._mailbox_ttl(now)
        keys = self._keys.counted(record.rid)
        if record.kind not in KINDS:
            raise ValueError("unknown mailbox kind")
        bnd = record.boundaries or DEFAULT_BOUNDARIES
        created = await self._run(
            "create",
            keys,
            argv(
                CreateArgv(
                    sid=record.sid,
                    owner_key=record.owner_key,
                    created_day=record.created_day,
                    now=now,
                    idle_ttl=self._limits.mailbox_idle_ttl_s,
                    today=day_of(now),
                    key_ttl=ttl,
                    kind=record.kind,
                    size=bnd.size,
                    att=bnd.att,
                    day=bnd.day,
                    pow=bnd.pow,
                    rid=record.rid,
                    index_ttl=self._index_ttl,
                )
            ),
        )
        if not created:
            raise IdCollision(MSG_ID_COLLISION)
        sid_key = self._keys.sid(record.sid)
        with self._guard():
            if await self._client.set(sid_key, record.rid, nx=True, ex=ttl):
                return
            other = as_bytes(await self._client.get(sid_key))
        if other == record.rid:
            return  # a retry of this very creation
        if other is not None and await self._live_rid_for(other, record.sid, now):
            await self._run("delete", keys, [record.sid, record.rid])
            raise IdCollision(MSG_ID_COLLISION)
        with self._guard():
            await self._client.set(sid_key, record.rid, ex=ttl)

    async def _live_rid_for(self, rid: bytes, sid: bytes, now: int) -> bool:
        """Return True if ``rid`` names a live mailbox whose send id is ``sid``."""
        with self._guard():
            found_sid, ad = map(
                as_bytes, await self._client.hmget(self._keys.mailbox(rid)[0], ["sid", "ad"])
            )
        return (
            found_sid == sid and ad is not None and not mailbox_expired(int(ad), now, self._limits)
        )

    async def get_mailbox(self, rid: bytes, now: int) -> MailboxRecord | None:
        fields = ["sid", "ok", "cd", "ad", "kd", "bs", "ba", "bd", "bp"]
        with self._guard():
            values = list(
                map(as_bytes, await self._client.hmget(self._keys.mailbox(rid)[0], fields))
            )
        return self._record(rid, values, now)

    def _record(self, rid: bytes, values: list[bytes | None], now: int) -> MailboxRecord | None:
        """A record from ``sid, ok, cd, ad, kd, bs, ba, bd, bp`` of a mailbox hash."""
        sid, owner_key, cd, ad = values[:4]
        if (
            sid is None
            or owner_key is None
            or cd is None
            or ad is None
            or mailbox_expired(int(ad), now, self._limits)
        ):
            return None
        kind, bnd = kind_and_boundaries(values[4:9])
        return MailboxRecord(
            rid=rid, sid=sid, owner_key=owner_key, created_day=int(cd), kind=kind, boundaries=bnd
        )

    async def resolve_sid(self, sid: bytes, now: int) -> bytes | None:
        rid = await self._rid_for_sid(sid, use_cache=True)
        if rid is not None and not await self._live_rid_for(rid, sid, now):
            self._sid_cache.pop(sid, None)
            rid = await self._rid_for_sid(sid, use_cache=False)
            if rid is not None and not await self._live_rid_for(rid, sid, now):
                return None
        return rid

    async def _sender_view(
        self, sid: bytes, now: int, fields: Sequence[str], cap_hash: bytes | None = None
    ) -> tuple[bytes, list[bytes | None], bool] | None:
        """Resolve ``sid`` and read ``fields`` of its live record (and whether ``cap_hash``
        is registered), in one pipelined round trip after the index lookup.

        Returns:
            ``(rid, values, cap registered)``, or None if no live mailbox has send id ``sid``.
        """
        use_cache = True
        while True:
            rid = await self._rid_for_sid(sid, use_cache=use_cache)
            if rid is None:
                return None
            m = self._keys.mailbox(rid)[0]
            with self._guard():
                async with self._client.pipeline(transaction=False) as pipe:
                    _ = pipe.hmget(m, ["sid", "ad", *fields])
                    if cap_hash is not None:
                        _ = pipe.sismember(self._keys.consent(rid)[0], cap_hash)  # type: ignore[arg-type]
                    replies = await pipe.execute()
            values = list(map(as_bytes, replies[0]))
            if (
                values[0] == sid
                and values[1] is not None
                and not mailbox_expired(int(values[1]), now, self._limits)
            ):
                return rid, values[2:], bool(replies[1]) if cap_hash is not None else False
            # The cached mapping may be stale: ask the index once more.
            self._sid_cache.pop(sid, None)
            if not use_cache:
                return None
            use_cache = False

    async def resolve_online(
        self, sid: bytes, cap_hash: bytes | None, now: int
    ) -> tuple[bytes, str] | None:
        view = await self._sender_view(sid, now, ["kd", "su"], cap_hash)
        if view is None:
            return None
        rid, (kd, su), has_cap = view
        if su is not None:
            return None  # suspended: like a mailbox that does not exist
        kind = kd.decode() if kd is not None else KIND_OPEN
        if kind == KIND_PAIRWISE and not has_cap:
            return None
        return rid, kind

    async def get_boundaries(self, sid: bytes, now: int) -> tuple[str, Boundaries | None] | None:
        view = await self._sender_view(sid, now, ["kd", "bs", "ba", "bd", "bp", "su"])
        if view is None or view[1][5] is not None:
            return None  # unknown, or suspended
        return kind_and_boundaries(view[1][:5])

    async def touch_mailbox(self, rid: bytes, now: int) -> None:
        ttl = self._mailbox_ttl(now)
        sid = await self._run(
            "touch",
            [*self._keys.touch(rid), self._keys.index(rid), self._keys.gauges(rid)],
            [now, self._limits.mailbox_idle_ttl_s, day_of(now), ttl, self._index_ttl],
        )
        if sid:
            with self._guard():
                await self._client.expire(self._keys.sid(sid), ttl)

    async def delete_mailbox(self, rid: bytes) -> bool:
        # From the first step on, the send id no longer resolves (the deposit script checks the
        # record), so the mailbox is gone at once even if the second step fails.
        deleted, sid = await self._run("delete", self._keys.counted(rid), ["", rid])
        if not deleted:
            return False
        self._sid_cache.pop(sid, None)
        await self._run("unlink_if", [self._keys.sid(sid)], [rid])
        return True

    async def mailbox_info(self, rid: bytes, now: int) -> MailboxSnapshot | None:
        m, q, e, _x, d, _y = self._keys.mailbox(rid)
        _, k, p = self._keys.prekeys(rid)
        a, n = self._keys.consent(rid)
        with self._guard():
            async with self._client.pipeline(transaction=True) as pipe:
                _ = pipe.hgetall(m)
                _ = pipe.zrange(q, 0, 0)
                _ = pipe.hlen(d)
                _ = pipe.llen(p)
                _ = pipe.hexists(k, "s")
                _ = pipe.hmget(k, ["h", "c"])
                _ = pipe.scard(a)
                _ = pipe.scard(n)
                (
                    rec,
                    first,
                    n_dedupe,
                    n_items,
                    has_static,
                    window,
                    n_caps,
                    n_bans,
                ) = await pipe.execute()
            oldest_blob = as_bytes(await self._client.hget(e, first[0])) if first else None
        fields = {bytes(key).decode(): value for key, value in rec.items()}
        names = ["sid", "ok", "cd", "ad", "kd", "bs", "ba", "bd", "bp"]
        record = self._record(rid, [fields.get(name) for name in names], now)
        if record is None:
            return None
        oldest_ts: int | None = None
        if oldest_blob is not None:
            oldest_ts = int(msgpack.unpackb(oldest_blob[ENVELOPE_HEADER:], raw=False)[1])
        handed = int(window[1] or 0)
        rd = fields.get("rd")
        return MailboxSnapshot(
            suspended=fields.get("su") is not None,
            record=record,
            active_day=int(fields["ad"]),
            last_seq=int(fields.get("ls", 0)),
            envelopes=int(fields.get("n", 0)),
            stored_bytes=int(fields.get("b", 0)),
            oldest_ts=oldest_ts,
            dedupe_records=int(n_dedupe),
            prekeys_left=int(n_items),
            prekey_static=bool(has_static),
            prekey_hour=int(window[0]) if handed else None,
            prekeys_handed=handed,
            caps=int(n_caps),
            bans=int(n_bans),
            requests_day=int(rd) if rd is not None else None,
            requests=int(fields.get("rc", 0)),
        )
