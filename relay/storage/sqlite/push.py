"""SQLite: push endpoints of mailboxes (protocol.md §28; the PushStore concern)."""

from __future__ import annotations

import sqlite3

from relay.storage._common import MSG_NOT_FOUND, mailbox_expired
from relay.storage.errors import MailboxNotFound
from relay.storage.sqlite.engine import SQLiteEngine

__all__ = ["PushMixin"]


class PushMixin(SQLiteEngine):
    """Push endpoints of :class:`SQLiteStore` (table ``push``, cascading from ``mailboxes``)."""

    async def set_push(self, rid: bytes, endpoint: tuple[str, bytes] | None, now: int) -> None:
        def op(conn: sqlite3.Connection) -> None:
            row = conn.execute(
                "SELECT id, active_day FROM mailboxes WHERE rid = ?", (rid,)
            ).fetchone()
            if row is None or mailbox_expired(row[1], now, self._limits):
                raise MailboxNotFound(MSG_NOT_FOUND)
            if endpoint is None:
                conn.execute("DELETE FROM push WHERE mbox = ?", (row[0],))
            else:
                conn.execute(
                    "INSERT OR REPLACE INTO push (mbox, url, token) VALUES (?, ?, ?)",
                    (row[0], endpoint[0], endpoint[1]),
                )

        await self._write(op)

    async def get_push(self, rid: bytes, now: int) -> tuple[str, bytes] | None:
        def op(conn: sqlite3.Connection) -> tuple[str, bytes] | None:
            row = conn.execute(
                "SELECT m.active_day, p.url, p.token FROM mailboxes m"
                " JOIN push p ON p.mbox = m.id WHERE m.rid = ?",
                (rid,),
            ).fetchone()
            if row is None or mailbox_expired(row[0], now, self._limits):
                return None
            return str(row[1]), bytes(row[2])

        return await self._read(op)
