"""SQLite: franking keys, reports, audit log and suspensions (the
:class:`~relay.storage.base.FrankingKeyStore` and :class:`~relay.storage.base.ModerationStore`
concerns).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, Final

import msgpack

from relay.storage._common import (
    day_of,
    mailbox_expired,
)
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
from relay.storage.sqlite.engine import SQLiteEngine

__all__ = ["ModerationMixin"]

_SELECT_REPORT: Final = (
    "SELECT id, created, sid, reason, note, msg, attachments, sender_key, recipient_key, kid,"
    " day, source_kind, source, verified_at, action, moderator, resolved_at, resolution"
    " FROM reports"
)


class ModerationMixin(SQLiteEngine):
    """Franking keys, reports, audit log and suspensions of :class:`SQLiteStore`."""

    async def set_suspended(self, sid: bytes, suspended: bool, now: int) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT id, active_day FROM mailboxes WHERE sid = ?", (sid,)
            ).fetchone()
            if row is None or mailbox_expired(row[1], now, self._limits):
                return False
            conn.execute(
                "UPDATE mailboxes SET suspended = ? WHERE id = ?", (int(suspended), row[0])
            )
            return True

        return await self._write(op)

    async def franking_keys(self) -> list[FrankingKey]:
        def op(conn: sqlite3.Connection) -> list[FrankingKey]:
            rows = conn.execute(
                "SELECT kid, secret, created FROM franking_keys ORDER BY kid"
            ).fetchall()
            return [FrankingKey(kid=r[0], secret=r[1], created=r[2]) for r in rows]

        return await self._read(op)

    async def add_franking_key(self, key: FrankingKey) -> FrankingKey:
        def op(conn: sqlite3.Connection) -> FrankingKey:
            conn.execute(
                "INSERT OR IGNORE INTO franking_keys (kid, secret, created) VALUES (?, ?, ?)",
                (key.kid, key.secret, key.created),
            )
            row = conn.execute(
                "SELECT kid, secret, created FROM franking_keys WHERE kid = ?", (key.kid,)
            ).fetchone()
            return FrankingKey(kid=row[0], secret=row[1], created=row[2])

        return await self._write(op)

    async def insert_report(
        self, report: ReportRecord, audit: AuditRecord, *, max_per_day: int
    ) -> None:
        start = day_of(report.created) * SECONDS_PER_DAY

        def op(conn: sqlite3.Connection) -> None:
            if conn.execute("SELECT 1 FROM reports WHERE id = ?", (report.id,)).fetchone():
                raise DuplicateReport("the envelope was reported before")
            filed = conn.execute(
                "SELECT count(*) FROM reports WHERE sid = ? AND created >= ? AND created < ?",
                (report.sid, start, start + SECONDS_PER_DAY),
            ).fetchone()[0]
            if filed >= max_per_day:
                raise QuotaExceeded("the daily report allowance is used up")
            conn.execute(
                "INSERT INTO reports (id, created, sid, reason, note, msg, attachments,"
                " sender_key, recipient_key, kid, day, source_kind, source, verified_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    report.id,
                    report.created,
                    report.sid,
                    report.reason,
                    report.note,
                    report.msg,
                    msgpack.packb(list(report.attachments), use_bin_type=True),
                    report.sender_key,
                    report.recipient_key,
                    report.kid,
                    report.day,
                    report.source_kind,
                    report.source,
                    report.verified_at,
                ),
            )
            _insert_audit(conn, audit)

        await self._write(op)

    async def get_report(self, report_id: bytes) -> ReportRecord | None:
        def op(conn: sqlite3.Connection) -> ReportRecord | None:
            row = conn.execute(_SELECT_REPORT + " WHERE id = ?", (report_id,)).fetchone()
            return None if row is None else _report(row)

        return await self._read(op)

    async def list_reports(self, status: str | None, limit: int) -> list[ReportRecord]:
        if status == "open":
            where = " WHERE resolved_at IS NULL ORDER BY created, id LIMIT ?"
        elif status == "resolved":
            where = " WHERE resolved_at IS NOT NULL ORDER BY created DESC, id LIMIT ?"
        elif status is None:
            where = " ORDER BY created DESC, id LIMIT ?"
        else:
            raise ValueError("status must be open, resolved or None")

        def op(conn: sqlite3.Connection) -> list[ReportRecord]:
            rows = conn.execute(_SELECT_REPORT + where, (max(0, limit),)).fetchall()
            return [_report(row) for row in rows]

        return await self._read(op)

    async def resolve_report(
        self, report_id: bytes, resolution: ReportResolution, audit: AuditRecord
    ) -> ReportRecord:
        r = resolution

        def op(conn: sqlite3.Connection) -> ReportRecord:
            row = conn.execute(
                "SELECT resolved_at FROM reports WHERE id = ?", (report_id,)
            ).fetchone()
            if row is None:
                raise ReportNotFound("no such report")
            if row[0] is not None:
                raise ReportAlreadyResolved("the report was resolved before")
            conn.execute(
                "UPDATE reports SET action = ?, moderator = ?, resolved_at = ?, resolution = ?"
                " WHERE id = ?",
                (r.action, r.moderator, r.resolved_at, r.note, report_id),
            )
            _insert_audit(conn, audit)
            return _report(conn.execute(_SELECT_REPORT + " WHERE id = ?", (report_id,)).fetchone())

        return await self._write(op)

    async def append_audit(self, entry: AuditRecord) -> int:
        return await self._write(lambda conn: _insert_audit(conn, entry))

    async def list_audit(self, limit: int) -> list[AuditRecord]:
        def op(conn: sqlite3.Connection) -> list[AuditRecord]:
            rows = conn.execute(
                "SELECT seq, ts, moderator, action, report_id, detail FROM audit"
                " ORDER BY seq DESC LIMIT ?",
                (max(0, limit),),
            ).fetchall()
            return [
                AuditRecord(
                    seq=r[0], ts=r[1], moderator=r[2], action=r[3], report_id=r[4], detail=r[5]
                )
                for r in rows
            ]

        return await self._read(op)


def _report(row: Sequence[Any]) -> ReportRecord:
    """A report from a ``_SELECT_REPORT`` row."""
    resolution = (
        None
        if row[16] is None
        else ReportResolution(
            action=row[14], moderator=row[15], resolved_at=row[16], note=row[17] or ""
        )
    )
    return ReportRecord(
        id=row[0],
        created=row[1],
        sid=row[2],
        reason=row[3],
        note=row[4],
        msg=row[5],
        attachments=tuple(msgpack.unpackb(row[6], raw=False)),
        sender_key=row[7],
        recipient_key=row[8],
        kid=row[9],
        day=row[10],
        source_kind=row[11],
        source=row[12],
        verified_at=row[13],
        resolution=resolution,
    )


def _insert_audit(conn: sqlite3.Connection, entry: AuditRecord) -> int:
    seq: int = conn.execute(
        "INSERT INTO audit (ts, moderator, action, report_id, detail) VALUES (?, ?, ?, ?, ?)"
        " RETURNING seq",
        (entry.ts, entry.moderator, entry.action, entry.report_id, entry.detail),
    ).fetchone()[0]
    return seq
