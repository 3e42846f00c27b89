"""Redis: franking keys, reports, audit log and suspensions (the FrankingKeyStore and
ModerationStore concerns).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgpack

from relay.storage._common import day_of
from relay.storage.errors import (
    DuplicateReport,
    QuotaExceeded,
    ReportAlreadyResolved,
    ReportNotFound,
)
from relay.storage.records import (
    SECONDS_PER_DAY,
    AuditRecord,
    FrankingKey,
    ReportRecord,
    ReportResolution,
)
from relay.storage.redis.engine import (
    TTL_SLACK_S,
    RedisEngine,
)

__all__ = ["ModerationMixin"]


class ModerationMixin(RedisEngine):
    """Franking keys, reports, audit log and suspensions of :class:`RedisStore`."""

    async def set_suspended(self, sid: bytes, suspended: bool, now: int) -> bool:
        args = [sid, now, self._limits.mailbox_idle_ttl_s, 1 if suspended else 0]
        for use_cache in (True, False):
            rid = await self._rid_for_sid(sid, use_cache=use_cache)
            if rid is None:
                return False
            if int(await self._run("suspend", [self._keys.mailbox(rid)[0]], args)) == 1:
                return True
            self._sid_cache.pop(sid, None)
        return False

    def _key_ttl(self) -> int:
        limits = self._limits
        return limits.franking_rotation_s + limits.report_window_s + TTL_SLACK_S

    async def franking_keys(self) -> list[FrankingKey]:
        with self._guard():
            async with self._client.pipeline(transaction=True) as pipe:
                _ = pipe.hgetall(self._keys.mod("f"))
                _ = pipe.hgetall(self._keys.mod("fc"))
                secrets_, created = await pipe.execute()
        keys = []
        for kid, secret in secrets_.items():
            at = created.get(kid)
            if at is not None:
                keys.append(FrankingKey(kid=int(kid), secret=bytes(secret), created=int(at)))
        return sorted(keys, key=lambda k: k.kid)

    async def add_franking_key(self, key: FrankingKey) -> FrankingKey:
        secret, created = await self._run(
            "add_franking_key",
            [self._keys.mod("f"), self._keys.mod("fc")],
            [key.kid, key.secret, key.created, self._key_ttl()],
        )
        return FrankingKey(kid=key.kid, secret=bytes(secret), created=int(created))

    def _report_ttl(self) -> int:
        return self._limits.report_retention_s + TTL_SLACK_S

    def _audit_args(self, entry: AuditRecord) -> list[Any]:
        return [
            entry.ts,
            entry.moderator,
            entry.action,
            entry.report_id or b"",
            entry.detail,
            self._limits.audit_retention_s + TTL_SLACK_S,
        ]

    async def insert_report(
        self, report: ReportRecord, audit: AuditRecord, *, max_per_day: int
    ) -> None:
        keys = [
            self._keys.mod("r"),
            self._keys.mod("ri"),
            self._keys.mod("ro"),
            self._keys.mod("rs", report.sid.hex()),
            self._keys.mod("au"),
            self._keys.mod("as"),
        ]
        args = [
            report.id,
            _pack_report(report),
            report.created,
            day_of(report.created) * SECONDS_PER_DAY,
            max_per_day,
            self._report_ttl(),
            2 * SECONDS_PER_DAY + TTL_SLACK_S,
            *self._audit_args(audit),
        ]
        status = int(await self._run("insert_report", keys, args))
        if status == -1:
            raise DuplicateReport("the envelope was reported before")
        if status == -2:
            raise QuotaExceeded("the daily report allowance is used up")

    async def _reports(self, ids: Sequence[bytes]) -> list[ReportRecord]:
        if not ids:
            return []
        with self._guard():
            async with self._client.pipeline(transaction=True) as pipe:
                _ = pipe.hmget(self._keys.mod("r"), list(ids))
                _ = pipe.hmget(self._keys.mod("rr"), list(ids))
                blobs, resolutions = await pipe.execute()
        return [
            _unpack_report(blob, res)
            for blob, res in zip(blobs, resolutions, strict=True)
            if blob is not None
        ]

    async def get_report(self, report_id: bytes) -> ReportRecord | None:
        found = await self._reports([report_id])
        return found[0] if found else None

    async def list_reports(self, status: str | None, limit: int) -> list[ReportRecord]:
        if status not in ("open", "resolved", None):
            raise ValueError("status must be open, resolved or None")
        if limit <= 0:
            return []
        if status == "open":
            with self._guard():
                ids = _byte_list(await self._client.zrange(self._keys.mod("ro"), 0, limit - 1))
            return await self._reports(ids)
        out: list[ReportRecord] = []
        start = 0
        while len(out) < limit:
            with self._guard():
                ids = _byte_list(
                    await self._client.zrevrange(self._keys.mod("ri"), start, start + 2 * limit - 1)
                )
            if not ids:
                break
            start += len(ids)
            for rec in await self._reports(ids):
                if status is None or rec.status == status:
                    out.append(rec)
        return out[:limit]

    async def resolve_report(
        self, report_id: bytes, resolution: ReportResolution, audit: AuditRecord
    ) -> ReportRecord:
        r = resolution
        blob = msgpack.packb([r.action, r.moderator, r.resolved_at, r.note], use_bin_type=True)
        keys = [
            self._keys.mod("r"),
            self._keys.mod("rr"),
            self._keys.mod("ro"),
            self._keys.mod("au"),
            self._keys.mod("as"),
        ]
        status = int(
            await self._run(
                "resolve_report",
                keys,
                [report_id, blob, self._report_ttl(), *self._audit_args(audit)],
            )
        )
        if status == -1:
            raise ReportNotFound("no such report")
        if status == -2:
            raise ReportAlreadyResolved("the report was resolved before")
        found = await self.get_report(report_id)
        if found is None:  # purged in between: report what was written
            raise ReportNotFound("no such report")
        return found

    async def append_audit(self, entry: AuditRecord) -> int:
        keys = [self._keys.mod("au"), self._keys.mod("as")]
        return int(await self._run("append_audit", keys, self._audit_args(entry)))

    async def list_audit(self, limit: int) -> list[AuditRecord]:
        if limit <= 0:
            return []
        with self._guard():
            entries: Any = await self._client.xrevrange(self._keys.mod("au"), "+", "-", count=limit)
        out = []
        for entry_id, fields in entries:
            f = {bytes(k).decode(): bytes(v) for k, v in fields.items()}
            out.append(
                AuditRecord(
                    seq=int(bytes(entry_id).split(b"-")[0]),
                    ts=int(f["ts"]),
                    moderator=f["mo"].decode(),
                    action=f["ac"].decode(),
                    report_id=f["ri"] or None,
                    detail=f["de"].decode(),
                )
            )
        return out


def _byte_list(values: object) -> list[bytes]:
    """Narrow a redis-py list reply of bytes for the type checker."""
    assert isinstance(values, list)
    return [v for v in values if isinstance(v, bytes)]


def _pack_report(r: ReportRecord) -> bytes:
    packed: bytes = msgpack.packb(
        [
            r.id,
            r.created,
            r.sid,
            r.reason,
            r.note,
            r.msg,
            list(r.attachments),
            r.sender_key,
            r.recipient_key,
            r.kid,
            r.day,
            r.source_kind,
            r.source,
            r.verified_at,
        ],
        use_bin_type=True,
    )
    return packed


def _unpack_report(blob: bytes, resolution: bytes | None) -> ReportRecord:
    (
        rid,
        created,
        sid,
        reason,
        note,
        msg,
        atts,
        snd,
        rcp,
        kid,
        day,
        source_kind,
        source,
        verified_at,
    ) = msgpack.unpackb(blob, raw=False)
    res = None
    if resolution is not None:
        action, moderator, resolved_at, res_note = msgpack.unpackb(resolution, raw=False)
        res = ReportResolution(
            action=action, moderator=moderator, resolved_at=resolved_at, note=res_note
        )
    return ReportRecord(
        id=rid,
        created=created,
        reason=reason,
        note=note,
        msg=msg,
        attachments=tuple(atts),
        sender_key=snd,
        recipient_key=rcp,
        sid=sid,
        kid=kid,
        day=day,
        source_kind=source_kind,
        source=source,
        verified_at=verified_at,
        resolution=res,
    )
