"""SQLite: expiry of every record (``purge_expired``) in small, time-bounded steps.

Every kind of record is found through an index on its deadline, so the cost of a sweep is
proportional to what is due: with nothing due it is one index probe per kind, at any size.
The work is cut into *steps*, each one queued operation of the writer that deletes rows in
small chunks until it has used :data:`STEP_BUDGET_S` of writer time or found nothing more.
A deposit that arrives during a sweep is applied in the writer's next transaction, so it waits
for at most one step (plus the commit), never for the whole sweep. An idle mailbox is emptied
chunk by chunk before its row is deleted, so a mailbox holding many envelopes never turns
into one long cascade. After deletions the freed pages are returned to the file system by
``PRAGMA incremental_vacuum`` in steps of :data:`VACUUM_STEP_PAGES` pages, each stepped to
completion (the statement frees one page per ``sqlite3_step``), until the freelist is empty.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Final

from relay.storage.records import SECONDS_PER_DAY
from relay.storage.sqlite.engine import SQLiteEngine

__all__ = ["CHUNK_ROWS", "STEP_BUDGET_S", "VACUUM_STEP_PAGES", "ExpiryMixin"]

#: Writer time one sweep step may use before it yields to waiting deposits (seconds; read
#: from the monotonic clock, never for a contract decision).
STEP_BUDGET_S: Final = 0.004
#: Rows one statement of a step deletes (a step runs statements until its budget is used).
CHUNK_ROWS: Final = 64
#: Pages one ``incremental_vacuum`` step returns to the file system (1 MiB at 4 KiB pages).
VACUUM_STEP_PAGES: Final = 256

#: A step: deletes due rows of one kind within the budget; returns (rows deleted, finished).
_Step = Callable[[sqlite3.Connection], tuple[int, bool]]


def _bounded(chunk: Callable[[sqlite3.Connection], int]) -> _Step:
    """A step that runs ``chunk`` (deleting up to ``CHUNK_ROWS``) until the budget is used
    or a chunk comes back short (nothing more is due)."""

    def step(conn: sqlite3.Connection) -> tuple[int, bool]:
        deadline = time.monotonic() + STEP_BUDGET_S
        total = 0
        while True:
            n = chunk(conn)
            total += n
            if n < CHUNK_ROWS:
                return total, True
            if time.monotonic() >= deadline:
                return total, False

    return step


class ExpiryMixin(SQLiteEngine):
    """Expiry of every record of :class:`SQLiteStore`."""

    async def purge_expired(self, now: int) -> int:
        # The count is of rows deleted; an idle mailbox counts once (not its contents).
        limits = self._limits
        cutoff_day = (now - limits.mailbox_idle_ttl_s) // SECONDS_PER_DAY - 1

        def idle_mailboxes(conn: sqlite3.Connection) -> tuple[int, bool]:
            deadline = time.monotonic() + STEP_BUDGET_S
            deleted = 0
            while True:
                row = conn.execute(
                    "SELECT id FROM mailboxes WHERE active_day <= ? LIMIT 1", (cutoff_day,)
                ).fetchone()
                if row is None:
                    return deleted, True
                mbox = row[0]
                # Empty it in chunks first: its envelopes, then its dedupe records.
                emptied = True
                for sql in (
                    "DELETE FROM envelopes WHERE rowid IN"
                    " (SELECT rowid FROM envelopes WHERE mbox = ? LIMIT ?)",
                    "DELETE FROM dedupe WHERE (mbox, eid) IN"
                    " (SELECT mbox, eid FROM dedupe WHERE mbox = ? LIMIT ?)",
                ):
                    while conn.execute(sql, (mbox, CHUNK_ROWS)).rowcount == CHUNK_ROWS:
                        if time.monotonic() >= deadline:
                            emptied = False
                            break
                    if not emptied:
                        return deleted, False
                conn.execute("DELETE FROM mailboxes WHERE id = ?", (mbox,))  # the rest cascades
                deleted += 1
                if time.monotonic() >= deadline:
                    return deleted, False

        def envelopes(conn: sqlite3.Connection) -> int:
            rows = conn.execute(
                "DELETE FROM envelopes WHERE rowid IN"
                " (SELECT rowid FROM envelopes WHERE expires_at <= ? LIMIT ?)"
                " RETURNING mbox, length(ct)",
                (now, CHUNK_ROWS),
            ).fetchall()
            _uncount(conn, rows)
            return len(rows)

        def dedupe(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM dedupe WHERE (mbox, eid) IN"
                " (SELECT mbox, eid FROM dedupe WHERE expires_at <= ? LIMIT ?)",
                (now, CHUNK_ROWS),
            ).rowcount

        def challenges(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM challenges WHERE nonce IN"
                " (SELECT nonce FROM challenges WHERE expires_at <= ? LIMIT ?)",
                (now, CHUNK_ROWS),
            ).rowcount

        def franking_keys(conn: sqlite3.Connection) -> tuple[int, bool]:
            # A key is destroyed report_window_s after its successor was created (kids and
            # creation times grow together); the newest key is never destroyed.
            n = conn.execute(
                "DELETE FROM franking_keys WHERE kid <"
                " (SELECT max(kid) FROM franking_keys WHERE created + ? <= ?)",
                (limits.report_window_s, now),
            ).rowcount
            return n, True

        def reports(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM reports WHERE id IN"
                " (SELECT id FROM reports WHERE created <= ? LIMIT ?)",
                (now - limits.report_retention_s, CHUNK_ROWS),
            ).rowcount

        def audit(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM audit WHERE seq IN (SELECT seq FROM audit WHERE ts <= ? LIMIT ?)",
                (now - limits.audit_retention_s, CHUNK_ROWS),
            ).rowcount

        steps: tuple[_Step, ...] = (
            idle_mailboxes,
            _bounded(envelopes),
            _bounded(dedupe),
            _bounded(challenges),
            franking_keys,
            _bounded(reports),
            _bounded(audit),
        )
        total = 0
        for step in steps:
            while True:
                n, finished = await self._write(step)
                total += n
                if finished:
                    break
        if total:
            await self._vacuum()
        # Every tick, expired or not: acked envelopes' old page versions sit in the WAL until
        # a checkpoint; this bounds how long they stay on disk to the purge interval.
        await self._read(lambda c: c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())
        return total

    async def _vacuum(self) -> int:
        """Return every free page to the file system, ``VACUUM_STEP_PAGES`` per writer step;
        returns the number of pages returned."""

        def step(conn: sqlite3.Connection) -> tuple[int, int]:
            before = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
            if before:
                # executescript steps the statement to completion; execute() would step it
                # once, which frees a single page.
                conn.executescript(f"PRAGMA incremental_vacuum({VACUUM_STEP_PAGES});")
            after = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
            return before - after, after

        returned = 0
        while True:
            freed, left = await self._write(step, alone=True)
            returned += freed
            if not left or not freed:
                return returned


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
