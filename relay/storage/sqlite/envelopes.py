"""SQLite: the envelope queue (the :class:`~relay.storage.base.EnvelopeQueue` concern)."""

from __future__ import annotations

import hmac
import sqlite3
from collections.abc import Sequence
from typing import Final

from clientlib.wire.frames import StoredEnvelope
from relay.storage._common import (
    MSG_NOT_FOUND,
    MSG_QUOTA,
    day_of,
    envelope_lifetime,
    mailbox_expired,
)
from relay.storage.errors import (
    BoundaryExceeded,
    MailboxNotFound,
    PowRequired,
    QuotaExceeded,
    StampMismatch,
    WrongKind,
)
from relay.storage.records import (
    DepositOutcome,
    RelayStamp,
    StoreGauges,
)
from relay.storage.sqlite.engine import SQLiteEngine
from relay.storage.sqlite.schema import ADDR, KIND_CODES, KIND_NAMES, PAIR, has_cap

__all__ = ["EnvelopesMixin"]

#: The mailbox row a deposit reads; with a capability, whether its hash is registered (one
#: primary-key lookup in ``caps``, in the same statement).
_SELECT_FOR_DEPOSIT: Final = (
    "SELECT id, rid, active_day, last_seq, n_envelopes, n_bytes, kind, suspended"
    " FROM mailboxes WHERE sid = ?"
)

_SELECT_FOR_DEPOSIT_CAP: Final = (
    "SELECT m.id, m.rid, m.active_day, m.last_seq, m.n_envelopes, m.n_bytes, m.kind,"
    " m.suspended, EXISTS (SELECT 1 FROM caps c WHERE c.mbox = m.id AND c.h = ?)"
    " FROM mailboxes m WHERE m.sid = ?"
)


class EnvelopesMixin(SQLiteEngine):
    """The envelope queue of :class:`SQLiteStore`."""

    async def deposit(
        self,
        sid: bytes,
        eid: bytes,
        flags: int,
        ct: bytes,
        fc: bytes | None,
        now: int,
        *,
        cap_hash: bytes | None = None,
        handle: bytes | None = None,
        attachments: int = 0,
        att_cap_hash: bytes | None = None,
        pow_bits: int = 0,
        stamp: RelayStamp | None = None,
        kind: str | None = None,
        ttl: int | None = None,
        rc: bytes | None = None,
    ) -> DepositOutcome:
        # The kind's checks (capability, boundaries, bans, daily counter; see
        # :meth:`~relay.storage.base.EnvelopeStore.deposit`) run in the same savepoint: a
        # capability is one lookup in the ``caps`` primary key. The order of the checks is
        # relay/storage/policy.py DEPOSIT_CHECKS (asserted by the contract suite).
        limits = self._limits
        size = len(ct)
        want = KIND_CODES[stamp.kind] if stamp is not None else KIND_CODES.get(kind or "", -1)

        def op(conn: sqlite3.Connection) -> DepositOutcome:
            if cap_hash is None:
                row = conn.execute(_SELECT_FOR_DEPOSIT, (sid,)).fetchone()
            else:  # the capability lookup rides along in the same statement
                row = conn.execute(_SELECT_FOR_DEPOSIT_CAP, (cap_hash, sid)).fetchone()
            if row is None or row[7] or mailbox_expired(row[2], now, limits):
                raise MailboxNotFound(MSG_NOT_FOUND)  # unknown, expired or suspended
            mbox, rid, _, last_seq, n_env, n_bytes, kind = row[:7]
            counted: int | None = None  # addr: requests counted today, before this one
            if kind == PAIR:
                if cap_hash is None or not row[8]:
                    raise MailboxNotFound(MSG_NOT_FOUND)
                if attachments and not has_cap(conn, mbox, att_cap_hash):
                    raise BoundaryExceeded("media off")  # no attachment capability (revision 8)
            elif kind == ADDR:
                counted = _check_request(conn, mbox, size, handle, attachments, pow_bits, now)
            dup = conn.execute(
                "SELECT seq, ts, expires_at FROM dedupe WHERE mbox = ? AND eid = ?", (mbox, eid)
            ).fetchone()
            if dup is not None and now < dup[2]:
                return DepositOutcome(rid=rid, seq=dup[0], ts=dup[1], duplicate=True)
            if want not in (-1, kind):
                raise StampMismatch(KIND_NAMES[kind])
            if counted is not None and counted < 0:
                raise QuotaExceeded(MSG_QUOTA)  # the address's daily allowance is used up
            if n_env + 1 > limits.max_envelopes or n_bytes + size > limits.max_bytes:
                freed_n, freed_b = _delete_expired_of(conn, mbox, now)
                n_env, n_bytes = n_env - freed_n, n_bytes - freed_b
                if n_env + 1 > limits.max_envelopes or n_bytes + size > limits.max_bytes:
                    raise QuotaExceeded(MSG_QUOTA)
            seq = last_seq + 1
            conn.execute(
                "INSERT INTO envelopes"
                " (mbox, seq, eid, ts, expires_at, flags, ct, fc, hdl, ft, fx)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    mbox,
                    seq,
                    eid,
                    now,
                    now + envelope_lifetime(limits.envelope_ttl_s, ttl),
                    flags,
                    ct,
                    fc,
                    handle if kind == ADDR else None,
                    stamp.tag if stamp is not None else None,
                    stamp.ctx if stamp is not None else None,
                ),
            )
            if counted is not None:
                conn.execute(
                    "UPDATE addr_state SET req_day = ?, req_count = ? WHERE mbox = ?",
                    (day_of(now), counted + 1, mbox),
                )
            conn.execute(
                "INSERT OR REPLACE INTO dedupe (mbox, eid, seq, ts, expires_at, rc)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (mbox, eid, seq, now, now + limits.dedupe_window_s, rc),
            )
            conn.execute(
                "UPDATE mailboxes SET last_seq = ?, n_envelopes = ?, n_bytes = ? WHERE id = ?",
                (seq, n_env + 1, n_bytes + size, mbox),
            )
            return DepositOutcome(rid=rid, seq=seq, ts=now, duplicate=False)

        # Plain (no savepoint): every refusal above comes before the first write, except the
        # quota refusal after expired envelopes were deleted, which is consistent on its own.
        return await self._write(op, plain=True)

    async def fetch(
        self, rid: bytes, after_seq: int, limit: int, max_bytes: int, now: int
    ) -> list[StoredEnvelope]:
        if limit <= 0:
            return []

        def op(conn: sqlite3.Connection) -> list[StoredEnvelope]:
            row = conn.execute(
                "SELECT id, active_day FROM mailboxes WHERE rid = ?", (rid,)
            ).fetchone()
            if row is None or mailbox_expired(row[1], now, self._limits):
                return []
            out: list[StoredEnvelope] = []
            total = 0
            cur = conn.execute(
                "SELECT seq, eid, ts, flags, ct, fc, hdl, ft, fx FROM envelopes"
                " WHERE mbox = ? AND seq > ? AND expires_at > ? ORDER BY seq LIMIT ?",
                (row[0], after_seq, now, limit),
            )
            try:
                for seq, eid, ts, flags, ct, fc, hdl, ft, fx in cur:
                    total += len(ct)
                    if out and total > max_bytes:
                        break
                    out.append(
                        StoredEnvelope(
                            seq=seq,
                            eid=eid,
                            ts=ts,
                            flags=flags,
                            ct=ct,
                            fc=fc,
                            hdl=hdl,
                            ft=ft,
                            fx=fx,
                        )
                    )
            finally:
                cur.close()
            return out

        return await self._read(op)

    async def ack(self, rid: bytes, seqs: Sequence[int]) -> int:
        wanted = sorted(set(seqs))
        if not wanted:
            return 0

        def op(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT id FROM mailboxes WHERE rid = ?", (rid,)).fetchone()
            if row is None:
                return 0
            mbox = row[0]
            count = size = 0
            for start in range(0, len(wanted), 500):
                part = wanted[start : start + 500]
                marks = ",".join("?" * len(part))
                for (n,) in conn.execute(
                    f"DELETE FROM envelopes WHERE mbox = ? AND seq IN ({marks})"  # noqa: S608
                    " RETURNING length(ct)",
                    (mbox, *part),
                ).fetchall():
                    count += 1
                    size += n
            if count:
                conn.execute(
                    "UPDATE mailboxes SET n_envelopes = n_envelopes - ?, n_bytes = n_bytes - ?"
                    " WHERE id = ?",
                    (count, size, mbox),
                )
            return count

        # Lazy: a batch of acks alone is not fsynced by itself (see the engine's docstring).
        return await self._write(op, plain=True, lazy=True)

    async def recall(self, sid: bytes, eid: bytes, rc: bytes, now: int) -> bool:
        limits = self._limits

        def op(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT id, active_day FROM mailboxes WHERE sid = ?", (sid,)
            ).fetchone()
            if row is None or mailbox_expired(row[1], now, limits):
                return False
            mbox = row[0]
            dup = conn.execute(
                "SELECT seq, expires_at, rc FROM dedupe WHERE mbox = ? AND eid = ?", (mbox, eid)
            ).fetchone()
            if dup is None or dup[2] is None or now >= dup[1]:
                return False
            if not hmac.compare_digest(dup[2], rc):
                return False
            gone = conn.execute(
                "DELETE FROM envelopes WHERE mbox = ? AND seq = ? RETURNING length(ct)",
                (mbox, dup[0]),
            ).fetchone()
            if gone is None:  # acknowledged (or purged) already
                return False
            conn.execute(
                "UPDATE mailboxes SET n_envelopes = n_envelopes - 1, n_bytes = n_bytes - ?"
                " WHERE id = ?",
                (gone[0], mbox),
            )
            conn.execute("UPDATE dedupe SET rc = NULL WHERE mbox = ? AND eid = ?", (mbox, eid))
            return True

        # Lazy like an ack: a recall that a power failure undoes brings the envelope back,
        # which the recipient then gets followed by the unsend (protocol.md §5.10).
        return await self._write(op, plain=True, lazy=True)

    async def count_envelopes(self) -> int:
        return (await self.gauges()).envelopes

    async def gauges(self) -> StoreGauges:
        # One row, kept by triggers (schema version 5).
        def op(conn: sqlite3.Connection) -> StoreGauges:
            row = conn.execute(
                "SELECT mailboxes, envelopes, bytes FROM gauges WHERE id = 1"
            ).fetchone()
            return StoreGauges(mailboxes=row[0], envelopes=row[1], bytes=row[2])

        return await self._read(op)


def _check_request(
    conn: sqlite3.Connection,
    mbox: int,
    size: int,
    handle: bytes | None,
    attachments: int,
    pow_bits: int,
    now: int,
) -> int:
    """Check a contact request against the address's boundaries and bans.

    Returns:
        The requests already stored today, or -1 if the daily allowance is used up (the
        caller refuses it after the duplicate check: a retry is not a new request).

    Raises:
        WrongKind, BoundaryExceeded, PowRequired, MailboxNotFound (banned handle).
    """
    if handle is None:
        raise WrongKind("a contact request needs a handle")
    max_size, att, per_day, bits, req_day, req_count = conn.execute(
        "SELECT max_size, att, per_day, pow_bits, req_day, req_count FROM addr_state"
        " WHERE mbox = ?",
        (mbox,),
    ).fetchone()
    if size > max_size or (attachments and not att):
        raise BoundaryExceeded("the request exceeds the address's boundaries")
    if bits > pow_bits:
        raise PowRequired("the address asks for more proof of work")
    banned = conn.execute("SELECT 1 FROM bans WHERE mbox = ? AND hdl = ?", (mbox, handle))
    if banned.fetchone() is not None:
        raise MailboxNotFound(MSG_NOT_FOUND)
    today = req_count if req_day == day_of(now) else 0
    return today if today < per_day else -1


def _delete_expired_of(conn: sqlite3.Connection, mbox: int, now: int) -> tuple[int, int]:
    """Delete the expired envelopes of one mailbox (counters untouched); return count, bytes."""
    rows = conn.execute(
        "DELETE FROM envelopes WHERE mbox = ? AND expires_at <= ? RETURNING length(ct)",
        (mbox, now),
    ).fetchall()
    freed = sum(n for (n,) in rows)
    if rows:
        conn.execute(
            "UPDATE mailboxes SET n_envelopes = n_envelopes - ?, n_bytes = n_bytes - ?"
            " WHERE id = ?",
            (len(rows), freed, mbox),
        )
    return len(rows), freed
