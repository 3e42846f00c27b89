"""SQLite: mailbox records (the :class:`~relay.storage.base.MailboxStore` concern)."""

from __future__ import annotations

import sqlite3
from typing import Final

from clientlib.wire.frames import DEFAULT_BOUNDARIES, Boundaries
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
from relay.storage.sqlite.engine import SQLiteEngine
from relay.storage.sqlite.schema import ADDR, KIND_CODES, KIND_NAMES, PAIR, boundaries_of, has_cap

__all__ = ["MailboxesMixin"]


#: Most receive ids whose active day :class:`MailboxesMixin` remembers (then it starts over).
ACTIVE_DAYS_CACHE: Final = 65536


class MailboxesMixin(SQLiteEngine):
    """Mailbox records of :class:`SQLiteStore`."""

    async def create_mailbox(self, record: MailboxRecord, now: int) -> None:
        limits = self._limits

        def op(conn: sqlite3.Connection) -> None:
            rows = conn.execute(
                "SELECT id, active_day FROM mailboxes WHERE rid = ? OR sid = ?",
                (record.rid, record.sid),
            ).fetchall()
            for mbox, active_day in rows:
                if not mailbox_expired(active_day, now, limits):
                    raise IdCollision(MSG_ID_COLLISION)
                conn.execute("DELETE FROM mailboxes WHERE id = ?", (mbox,))
            kind = KIND_CODES[record.kind]
            mbox = conn.execute(
                "INSERT INTO mailboxes (rid, sid, owner_key, created_day, active_day, kind)"
                " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                (record.rid, record.sid, record.owner_key, record.created_day, day_of(now), kind),
            ).fetchone()[0]
            if kind == ADDR:
                b = record.boundaries or DEFAULT_BOUNDARIES
                conn.execute(
                    "INSERT INTO addr_state (mbox, max_size, att, per_day, pow_bits)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (mbox, b.size, b.att, b.day, b.pow),
                )

        await self._write(op)

    async def get_mailbox(self, rid: bytes, now: int) -> MailboxRecord | None:
        def op(conn: sqlite3.Connection) -> tuple[MailboxRecord | None, int]:
            row = conn.execute(
                "SELECT m.sid, m.owner_key, m.created_day, m.active_day, m.kind,"
                " a.max_size, a.att, a.per_day, a.pow_bits"
                " FROM mailboxes m LEFT JOIN addr_state a ON a.mbox = m.id WHERE m.rid = ?",
                (rid,),
            ).fetchone()
            if row is None or mailbox_expired(row[3], now, self._limits):
                return None, 0
            record = MailboxRecord(
                rid=rid,
                sid=row[0],
                owner_key=row[1],
                created_day=row[2],
                kind=KIND_NAMES[row[4]],
                boundaries=boundaries_of(row[5:9]) if row[4] == ADDR else None,
            )
            return record, row[3]

        record, active_day = await self._read(op)
        if record is not None:
            self._note_active(rid, active_day)
        return record

    def _note_active(self, rid: bytes, day: int) -> None:
        """Remember that ``rid`` is marked active on ``day`` (a touch that day is a no-op)."""
        if len(self._active_days) >= ACTIVE_DAYS_CACHE:
            self._active_days.clear()
        self._active_days[rid] = day

    async def resolve_sid(self, sid: bytes, now: int) -> bytes | None:
        def op(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute(
                "SELECT rid, active_day FROM mailboxes WHERE sid = ?", (sid,)
            ).fetchone()
            if row is None or mailbox_expired(row[1], now, self._limits):
                return None
            rid: bytes = row[0]
            return rid

        return await self._read(op)

    async def resolve_online(
        self, sid: bytes, cap_hash: bytes | None, now: int
    ) -> tuple[bytes, str] | None:
        def op(conn: sqlite3.Connection) -> tuple[bytes, str] | None:
            row = conn.execute(
                "SELECT id, rid, active_day, kind, suspended FROM mailboxes WHERE sid = ?", (sid,)
            ).fetchone()
            if row is None or row[4] or mailbox_expired(row[2], now, self._limits):
                return None
            if row[3] == PAIR and not has_cap(conn, row[0], cap_hash):
                return None
            return row[1], KIND_NAMES[row[3]]

        return await self._read(op)

    async def get_boundaries(self, sid: bytes, now: int) -> tuple[str, Boundaries | None] | None:
        def op(conn: sqlite3.Connection) -> tuple[str, Boundaries | None] | None:
            row = conn.execute(
                "SELECT m.active_day, m.kind, a.max_size, a.att, a.per_day, a.pow_bits,"
                " m.suspended"
                " FROM mailboxes m LEFT JOIN addr_state a ON a.mbox = m.id WHERE m.sid = ?",
                (sid,),
            ).fetchone()
            if row is None or row[6] or mailbox_expired(row[0], now, self._limits):
                return None
            return KIND_NAMES[row[1]], boundaries_of(row[2:6]) if row[1] == ADDR else None

        return await self._read(op)

    async def touch_mailbox(self, rid: bytes, now: int) -> None:
        today = day_of(now)
        if self._active_days.get(rid, -1) >= today:
            return  # already marked today (active_day only grows; a deleted one needs none)

        def check(conn: sqlite3.Connection) -> int | None:
            row = conn.execute("SELECT active_day FROM mailboxes WHERE rid = ?", (rid,)).fetchone()
            if row is None or mailbox_expired(row[0], now, self._limits):
                return None
            return int(row[0])

        active_day = await self._read(check)
        if active_day is None:
            return
        if active_day >= today:
            self._note_active(rid, active_day)
            return

        def op(conn: sqlite3.Connection) -> None:
            row = conn.execute("SELECT active_day FROM mailboxes WHERE rid = ?", (rid,)).fetchone()
            if row is not None and not mailbox_expired(row[0], now, self._limits):
                conn.execute(
                    "UPDATE mailboxes SET active_day = ? WHERE rid = ? AND active_day < ?",
                    (today, rid, today),
                )

        await self._write(op)
        self._note_active(rid, today)

    async def delete_mailbox(self, rid: bytes) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM mailboxes WHERE rid = ?", (rid,)).rowcount > 0

        deleted = await self._write(op)
        if deleted:
            # secure_delete zeroes the new page versions, but the old ones live on in the WAL
            # until a checkpoint: truncate it now so deleted data leaves the disk at once.
            await self._read(lambda c: c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())
        return deleted

    async def mailbox_info(self, rid: bytes, now: int) -> MailboxSnapshot | None:
        def op(conn: sqlite3.Connection) -> MailboxSnapshot | None:
            row = conn.execute(
                "SELECT m.id, m.sid, m.owner_key, m.created_day, m.active_day, m.last_seq,"
                " m.n_envelopes, m.n_bytes, m.kind,"
                " a.max_size, a.att, a.per_day, a.pow_bits, a.req_day, a.req_count,"
                " p.static IS NOT NULL, p.win_hour, p.win_count, m.suspended"
                " FROM mailboxes m LEFT JOIN addr_state a ON a.mbox = m.id"
                " LEFT JOIN prekey_state p ON p.mbox = m.id WHERE m.rid = ?",
                (rid,),
            ).fetchone()
            if row is None or mailbox_expired(row[4], now, self._limits):
                return None
            mbox, kind = row[0], row[8]

            def count(table: str) -> int:
                sql = f"SELECT count(*) FROM {table} WHERE mbox = ?"  # noqa: S608
                return int(conn.execute(sql, (mbox,)).fetchone()[0])

            oldest = conn.execute(
                "SELECT ts FROM envelopes WHERE mbox = ? ORDER BY seq LIMIT 1", (mbox,)
            ).fetchone()
            handed = int(row[17] or 0)
            record = MailboxRecord(
                rid=rid,
                sid=row[1],
                owner_key=row[2],
                created_day=row[3],
                kind=KIND_NAMES[kind],
                boundaries=boundaries_of(row[9:13]) if kind == ADDR else None,
            )
            return MailboxSnapshot(
                record=record,
                active_day=row[4],
                last_seq=row[5],
                envelopes=row[6],
                stored_bytes=row[7],
                oldest_ts=None if oldest is None else int(oldest[0]),
                dedupe_records=count("dedupe"),
                prekeys_left=count("prekey_items"),
                prekey_static=bool(row[15]),
                prekey_hour=int(row[16]) if handed else None,
                prekeys_handed=handed,
                caps=count("caps"),
                bans=count("bans"),
                requests_day=None if row[13] is None else int(row[13]),
                requests=int(row[14] or 0),
                suspended=bool(row[18]),
            )

        return await self._read(op)
