"""SQLite: capabilities, boundaries and bans (the ConsentStore concern)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from clientlib.wire.frames import Boundaries
from relay.storage._common import (
    MSG_NOT_FOUND,
    MSG_QUOTA,
    mailbox_expired,
)
from relay.storage.errors import (
    MailboxNotFound,
    QuotaExceeded,
    WrongKind,
)
from relay.storage.sqlite.engine import SQLiteEngine
from relay.storage.sqlite.schema import ADDR, PAIR

__all__ = ["ConsentMixin"]


class ConsentMixin(SQLiteEngine):
    """Capabilities, boundaries and bans of :class:`SQLiteStore`."""

    def _live_of_kind(self, conn: sqlite3.Connection, rid: bytes, kind: int, now: int) -> int:
        """The row id of the live mailbox ``rid``, which must be of kind ``kind``.

        Raises:
            MailboxNotFound: no live mailbox has receive id ``rid``.
            WrongKind: it has another kind.
        """
        row = conn.execute(
            "SELECT id, active_day, kind FROM mailboxes WHERE rid = ?", (rid,)
        ).fetchone()
        if row is None or mailbox_expired(row[1], now, self._limits):
            raise MailboxNotFound(MSG_NOT_FOUND)
        if row[2] != kind:
            raise WrongKind("the operation does not apply to this mailbox's kind")
        mbox: int = row[0]
        return mbox

    async def _set_members(
        self,
        table: str,
        column: str,
        kind: int,
        rid: bytes,
        add: Sequence[bytes],
        remove: Sequence[bytes],
        limit: int,
        now: int,
    ) -> int:
        """Remove, then add rows ``(mbox, column)`` of ``table``; refuse beyond ``limit``."""
        added, removed = list(add), list(remove)
        # ``table`` and ``column`` are fixed identifiers from this module, never input.
        delete = f"DELETE FROM {table} WHERE mbox = ? AND {column} = ?"  # noqa: S608
        insert = f"INSERT OR IGNORE INTO {table} (mbox, {column}) VALUES (?, ?)"  # noqa: S608
        count = f"SELECT count(*) FROM {table} WHERE mbox = ?"  # noqa: S608

        def op(conn: sqlite3.Connection) -> int:
            mbox = self._live_of_kind(conn, rid, kind, now)
            if removed:
                conn.executemany(delete, [(mbox, v) for v in removed])
            if added:
                conn.executemany(insert, [(mbox, v) for v in added])
            n = int(conn.execute(count, (mbox,)).fetchone()[0])
            if added and n > limit:
                raise QuotaExceeded(MSG_QUOTA)  # the savepoint rolls the removals back too
            return n

        return await self._write(op)

    async def set_caps(
        self,
        rid: bytes,
        add: Sequence[bytes],
        remove: Sequence[bytes],
        max_caps: int,
        now: int,
    ) -> int:
        return await self._set_members("caps", "h", PAIR, rid, add, remove, max_caps, now)

    async def set_bans(
        self,
        rid: bytes,
        ban: Sequence[bytes],
        unban: Sequence[bytes],
        max_bans: int,
        now: int,
    ) -> int:
        return await self._set_members("bans", "hdl", ADDR, rid, ban, unban, max_bans, now)

    async def set_boundaries(self, rid: bytes, boundaries: Boundaries, now: int) -> None:
        b = boundaries

        def op(conn: sqlite3.Connection) -> None:
            mbox = self._live_of_kind(conn, rid, ADDR, now)
            conn.execute(
                "UPDATE addr_state SET max_size = ?, att = ?, per_day = ?, pow_bits = ?"
                " WHERE mbox = ?",
                (b.size, b.att, b.day, b.pow, mbox),
            )

        await self._write(op)
