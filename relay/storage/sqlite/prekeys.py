"""SQLite: prekey hosting (the :class:`~relay.storage.base.PrekeyStore` concern)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from relay.storage._common import (
    MSG_NOT_FOUND,
    MSG_QUOTA,
    mailbox_expired,
)
from relay.storage.errors import (
    MailboxNotFound,
    QuotaExceeded,
)
from relay.storage.records import SECONDS_PER_HOUR
from relay.storage.sqlite.engine import SQLiteEngine

__all__ = ["PrekeysMixin"]


class PrekeysMixin(SQLiteEngine):
    """Prekey hosting of :class:`SQLiteStore`."""

    async def put_prekeys(
        self,
        rid: bytes,
        static: bytes | None,
        items: Sequence[bytes],
        replace: bool,
        max_items: int,
        now: int,
    ) -> tuple[int, bool]:
        limits = self._limits
        new = list(items)

        def op(conn: sqlite3.Connection) -> tuple[int, bool]:
            row = conn.execute(
                "SELECT id, active_day FROM mailboxes WHERE rid = ?", (rid,)
            ).fetchone()
            if row is None or mailbox_expired(row[1], now, limits):
                raise MailboxNotFound(MSG_NOT_FOUND)
            mbox = row[0]
            held = (
                0
                if replace
                else int(
                    conn.execute(
                        "SELECT count(*) FROM prekey_items WHERE mbox = ?", (mbox,)
                    ).fetchone()[0]
                )
            )
            if new and held + len(new) > max_items:
                raise QuotaExceeded(MSG_QUOTA)
            if replace:
                conn.execute("DELETE FROM prekey_items WHERE mbox = ?", (mbox,))
            if static is not None:
                conn.execute(
                    "INSERT INTO prekey_state (mbox, static) VALUES (?, ?)"
                    " ON CONFLICT (mbox) DO UPDATE SET static = excluded.static",
                    (mbox, static),
                )
            if new:
                conn.executemany(
                    "INSERT INTO prekey_items (mbox, item) VALUES (?, ?)",
                    [(mbox, item) for item in new],
                )
            has = conn.execute(
                "SELECT static IS NOT NULL FROM prekey_state WHERE mbox = ?", (mbox,)
            ).fetchone()
            return held + len(new), bool(has is not None and has[0])

        return await self._write(op)

    async def prekey_count(self, rid: bytes, now: int) -> tuple[int, bool]:
        def op(conn: sqlite3.Connection) -> tuple[int, bool]:
            row = conn.execute(
                "SELECT m.active_day,"
                " (SELECT count(*) FROM prekey_items WHERE mbox = m.id),"
                " (SELECT static IS NOT NULL FROM prekey_state WHERE mbox = m.id)"
                " FROM mailboxes m WHERE m.rid = ?",
                (rid,),
            ).fetchone()
            if row is None or mailbox_expired(row[0], now, self._limits):
                return 0, False
            return int(row[1]), bool(row[2])

        return await self._read(op)

    async def take_prekeys(
        self, sid: bytes, now: int, per_hour: int
    ) -> tuple[bytes, bytes | None] | None:
        # A read decides first whether an item can be handed out at all, so that bundle
        # requests past the allowance (or with no item left) never queue on the writer that
        # deposits wait for. Otherwise the pop, re-checked, runs on the writer: two concurrent
        # takes never get the same item.
        limits = self._limits
        hour = now // SECONDS_PER_HOUR
        select = (
            "SELECT m.id, m.active_day, s.static, s.win_hour, s.win_count, m.suspended"
            " FROM mailboxes m JOIN prekey_state s ON s.mbox = m.id WHERE m.sid = ?"
        )

        def state(conn: sqlite3.Connection) -> tuple[int, bytes, int] | None:
            """``(mbox, static, handed out this hour)`` of a live, unsuspended mailbox with a
            static part."""
            row = conn.execute(select, (sid,)).fetchone()
            if row is None or row[2] is None or row[5] or mailbox_expired(row[1], now, limits):
                return None
            return row[0], row[2], row[4] if row[3] == hour else 0

        def peek(conn: sqlite3.Connection) -> tuple[bytes, bool] | None:
            found = state(conn)
            if found is None:
                return None
            mbox, static, count = found
            if count >= per_hour:
                return static, False
            has_item = conn.execute(
                "SELECT 1 FROM prekey_items WHERE mbox = ? LIMIT 1", (mbox,)
            ).fetchone()
            return static, has_item is not None

        peeked = await self._read(peek)
        if peeked is None:
            return None
        if not peeked[1]:
            return peeked[0], None

        def take(conn: sqlite3.Connection) -> tuple[bytes, bytes | None] | None:
            found = state(conn)
            if found is None:
                return None
            mbox, static, count = found
            if count >= per_hour:
                return static, None
            popped = conn.execute(
                "DELETE FROM prekey_items WHERE id ="
                " (SELECT id FROM prekey_items WHERE mbox = ? ORDER BY id LIMIT 1)"
                " RETURNING item",
                (mbox,),
            ).fetchone()
            if popped is None:
                return static, None
            conn.execute(
                "UPDATE prekey_state SET win_hour = ?, win_count = ? WHERE mbox = ?",
                (hour, count + 1, mbox),
            )
            item: bytes = popped[0]
            return static, item

        return await self._write(take)
