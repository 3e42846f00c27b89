"""SQLite: single-use challenges (the :class:`~relay.storage.base.ChallengeStore` concern)."""

from __future__ import annotations

import sqlite3

from relay.storage.sqlite.engine import SQLiteEngine

__all__ = ["ChallengesMixin"]


class ChallengesMixin(SQLiteEngine):
    """Single-use challenges of :class:`SQLiteStore`."""

    async def put_challenge(
        self, nonce: bytes, binding: bytes, expires_at: int, *, frees: bool = False
    ) -> None:
        # ``frees`` needs nothing here: the space reserve serves every write once the disk
        # is full (relay.storage.sqlite.reserve), and the service refuses what adds data.
        await self._write(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO challenges (nonce, binding, expires_at) VALUES (?, ?, ?)",
                (nonce, binding, expires_at),
            )
        )

    async def take_challenge(self, nonce: bytes, now: int) -> bytes | None:
        def op(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute(
                "DELETE FROM challenges WHERE nonce = ? RETURNING binding, expires_at", (nonce,)
            ).fetchone()
            if row is None or now >= row[1]:
                return None
            binding: bytes = row[0]
            return binding

        return await self._write(op)
