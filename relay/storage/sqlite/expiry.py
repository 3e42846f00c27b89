"""SQLite: expiry of every record (``purge_expired``)."""

from __future__ import annotations

import sqlite3
from typing import Final

from relay.storage.records import SECONDS_PER_DAY
from relay.storage.sqlite.engine import SQLiteEngine

__all__ = ["PURGE_CHUNK_MAILBOXES", "PURGE_CHUNK_ROWS", "ExpiryMixin"]

#: Rows one purge step deletes before yielding the writer to waiting deposits.
PURGE_CHUNK_ROWS: Final = 2000

#: Mailboxes one purge step deletes (each cascades to up to ``max_envelopes`` rows).
PURGE_CHUNK_MAILBOXES: Final = 50


class ExpiryMixin(SQLiteEngine):
    """Expiry of every record of :class:`SQLiteStore`."""

    async def purge_expired(self, now: int) -> int:
        # Works in small transactions so waiting deposits are not held up, then returns free
        # pages to the file system (``incremental_vacuum``) and checkpoints the WAL so deleted
        # content does not linger in it.
        limits = self._limits
        cutoff_day = (now - limits.mailbox_idle_ttl_s) // SECONDS_PER_DAY - 1

        def mailboxes(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM mailboxes WHERE id IN"
                " (SELECT id FROM mailboxes WHERE active_day <= ? LIMIT ?)",
                (cutoff_day, PURGE_CHUNK_MAILBOXES),
            ).rowcount

        def envelopes(conn: sqlite3.Connection) -> int:
            rows = conn.execute(
                "DELETE FROM envelopes WHERE rowid IN"
                " (SELECT rowid FROM envelopes WHERE expires_at <= ? LIMIT ?)"
                " RETURNING mbox, length(ct)",
                (now, PURGE_CHUNK_ROWS),
            ).fetchall()
            _uncount(conn, rows)
            return len(rows)

        def dedupe(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM dedupe WHERE (mbox, eid) IN"
                " (SELECT mbox, eid FROM dedupe WHERE expires_at <= ? LIMIT ?)",
                (now, PURGE_CHUNK_ROWS),
            ).rowcount

        def challenges(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM challenges WHERE nonce IN"
                " (SELECT nonce FROM challenges WHERE expires_at <= ? LIMIT ?)",
                (now, PURGE_CHUNK_ROWS),
            ).rowcount

        def franking_keys(conn: sqlite3.Connection) -> int:
            # A key is destroyed report_window_s after its successor was created (kids and
            # creation times grow together); the newest key is never destroyed.
            return conn.execute(
                "DELETE FROM franking_keys WHERE kid <"
                " (SELECT max(kid) FROM franking_keys WHERE created + ? <= ?)",
                (limits.report_window_s, now),
            ).rowcount

        def reports(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM reports WHERE id IN"
                " (SELECT id FROM reports WHERE created <= ? LIMIT ?)",
                (now - limits.report_retention_s, PURGE_CHUNK_ROWS),
            ).rowcount

        def audit(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM audit WHERE seq IN (SELECT seq FROM audit WHERE ts <= ? LIMIT ?)",
                (now - limits.audit_retention_s, PURGE_CHUNK_ROWS),
            ).rowcount

        total = 0
        for step, chunk in (
            (mailboxes, PURGE_CHUNK_MAILBOXES),
            (envelopes, PURGE_CHUNK_ROWS),
            (dedupe, PURGE_CHUNK_ROWS),
            (challenges, PURGE_CHUNK_ROWS),
            (franking_keys, 1 << 62),
            (reports, PURGE_CHUNK_ROWS),
            (audit, PURGE_CHUNK_ROWS),
        ):
            while True:
                n = await self._write(step)
                total += n
                if n < chunk:
                    break
        if total:
            await self._write(lambda c: c.execute("PRAGMA incremental_vacuum").fetchall())
        # Every tick, expired or not: acked envelopes' old page versions sit in the WAL until
        # a checkpoint; this bounds how long they stay on disk to the purge interval.
        await self._read(lambda c: c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())
        return total


def _uncount(conn: sqlite3.Connection, rows: list[tuple[int, int]]) -> None:
    """Subtract deleted envelopes ``(mbox, size)`` from their mailboxes' counters."""
    per: dict[int, tuple[int, int]] = {}
    for mbox, size in rows:
        n, b = per.get(mbox, (0, 0))
        per[mbox] = (n + 1, b + size)
    conn.executemany(
        "UPDATE mailboxes SET n_envelopes = n_envelopes - ?, n_bytes = n_bytes - ? WHERE id = ?",
        [(n, b, mbox) for mbox, (n, b) in per.items()],
    )
