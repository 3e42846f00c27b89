"""SQLite envelope store: stdlib :mod:`sqlite3`, WAL, ``synchronous=FULL``, group commit.

Theory of operation
-------------------
One dedicated *writer thread* owns the only writing connection. Every write (deposit, ack,
create, delete, touch, purge chunk, challenge) is queued as an operation; the writer takes
every operation waiting in the queue and applies them in ONE transaction, each inside its own
``SAVEPOINT`` so a failing operation (quota, collision) is rolled back alone without poisoning
its neighbours. After ``COMMIT`` (one fsync of the WAL for the whole batch) the writer resolves
each operation's asyncio future with ``loop.call_soon_threadsafe``. A deposit therefore
returns only once its batch is durable, and under load the cost of the fsync is shared.

Reads (``fetch``, ``get_mailbox``, counts) go through a second connection owned by a
single-thread executor; in WAL mode they never block the writer and see every committed batch.

Schema versions
---------------
``SCHEMA_VERSION`` is stored in ``PRAGMA user_version``. Remember to update the list below and
to add a migration to ``_MIGRATIONS`` when you change the schema.

Changes in SCHEMA_VERSION = 1:
    Initial schema: ``mailboxes`` (with ``last_seq`` so sequence numbers are never reused,
    day-coarse ``created_day``/``active_day``, envelope and byte counters for quotas),
    ``envelopes``, ``dedupe`` (``(mailbox, eid) -> seq`` for the dedupe window) and
    ``challenges``.

Changes in SCHEMA_VERSION = 2:
    Prekey hosting (protocol.md §4.7): ``prekey_state`` (one row per mailbox that uploaded
    prekeys: the opaque static part and the hourly one-time handout window) and
    ``prekey_items`` (the opaque one-time items, FIFO by ``id``). Both cascade from
    ``mailboxes``, so deleting or purging a mailbox removes its prekeys in the same step. They
    are separate tables so the ``mailboxes`` row that every deposit reads and rewrites stays
    small.

Changes in SCHEMA_VERSION = 3:
    Consent (protocol.md §4.8-§4.10): ``mailboxes.kind`` (0 open, 1 pair, 2 addr; existing
    mailboxes are open), ``envelopes.hdl`` (the requester's handle of a contact request),
    ``caps`` (capability hashes of pair mailboxes, primary key ``(mbox, h)`` so the deposit's
    check is one index lookup), ``bans`` (banned handles of contact addresses) and
    ``addr_state`` (boundaries and the daily request counter of a contact address, one row per
    address, so deposits to other kinds never read or rewrite it). All three cascade from
    ``mailboxes``.

Changes in SCHEMA_VERSION = 4:
    Franking and moderation (protocol.md §4.11): ``envelopes.ft``/``.fx`` (the relay franking
    tag and its context, delivered with the envelope), ``mailboxes.suspended`` (0/1, set by
    a moderator), ``franking_keys`` (kid, secret, creation time), ``reports`` (the
    moderation queue: verified reports with their resolution; indexed by status, by filing
    mailbox and time for the daily allowance, and by creation time for the purge) and
    ``audit`` (the append-only moderation log: a trigger refuses every UPDATE; only the
    purge deletes, past ``audit_retention_s``). Reports and audit entries reference no
    mailbox row (they outlive mailboxes).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Final, TypeVar

import msgpack

from clientlib.wire.frames import DEFAULT_BOUNDARIES, Boundaries, StoredEnvelope
from clientlib.wire.limits import KIND_ADDRESS, KIND_OPEN, KIND_PAIRWISE
from relay.storage._common import (
    MSG_CLOSED,
    MSG_FULL,
    MSG_ID_COLLISION,
    MSG_NOT_FOUND,
    MSG_QUOTA,
    MSG_UNAVAILABLE,
    day_of,
    mailbox_expired,
)
from relay.storage.base import (
    SECONDS_PER_DAY,
    SECONDS_PER_HOUR,
    AuditRecord,
    BoundaryExceeded,
    DepositOutcome,
    DuplicateReport,
    FrankingKey,
    IdCollision,
    MailboxNotFound,
    MailboxRecord,
    MailboxSnapshot,
    PowRequired,
    QuotaExceeded,
    RelayStamp,
    ReportAlreadyResolved,
    ReportNotFound,
    ReportRecord,
    ReportResolution,
    StampMismatch,
    StorageError,
    StorageFull,
    StorageUnavailable,
    StoreLimits,
    WrongKind,
)

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]

T = TypeVar("T")

SCHEMA_VERSION: Final = 4  # remember to update the changelog in the module docstring

#: Most operations one transaction may hold. Bounds the latency a batch adds to its first
#: operation and the size of one WAL commit; 1024 deposits of 64 KiB is 64 MiB at worst.
MAX_BATCH_OPS: Final = 1024
#: Rows one purge step deletes before yielding the writer to waiting deposits.
PURGE_CHUNK_ROWS: Final = 2000
#: Mailboxes one purge step deletes (each cascades to up to ``max_envelopes`` rows).
PURGE_CHUNK_MAILBOXES: Final = 50
#: How long a connection waits for a lock held by another process before failing.
BUSY_TIMEOUT_MS: Final = 5000

_SCHEMA_V1: Final = """
CREATE TABLE mailboxes (
    id          INTEGER PRIMARY KEY,
    rid         BLOB NOT NULL UNIQUE,
    sid         BLOB NOT NULL UNIQUE,
    owner_key   BLOB NOT NULL,
    created_day INTEGER NOT NULL,
    active_day  INTEGER NOT NULL,
    last_seq    INTEGER NOT NULL DEFAULT 0,
    n_envelopes INTEGER NOT NULL DEFAULT 0,
    n_bytes     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX mailboxes_active_day ON mailboxes(active_day);
CREATE TABLE envelopes (
    mbox       INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    eid        BLOB NOT NULL,
    ts         INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    flags      INTEGER NOT NULL,
    ct         BLOB NOT NULL,
    fc         BLOB,
    PRIMARY KEY (mbox, seq)
);
CREATE INDEX envelopes_expires_at ON envelopes(expires_at);
CREATE TABLE dedupe (
    mbox       INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    eid        BLOB NOT NULL,
    seq        INTEGER NOT NULL,
    ts         INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (mbox, eid)
) WITHOUT ROWID;
CREATE INDEX dedupe_expires_at ON dedupe(expires_at);
CREATE TABLE challenges (
    nonce      BLOB PRIMARY KEY,
    binding    BLOB NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX challenges_expires_at ON challenges(expires_at);
"""

_SCHEMA_V2: Final = """
CREATE TABLE prekey_state (
    mbox      INTEGER PRIMARY KEY REFERENCES mailboxes(id) ON DELETE CASCADE,
    win_hour  INTEGER NOT NULL DEFAULT 0,
    win_count INTEGER NOT NULL DEFAULT 0,
    static    BLOB
);
CREATE TABLE prekey_items (
    id   INTEGER PRIMARY KEY,
    mbox INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    item BLOB NOT NULL
);
CREATE INDEX prekey_items_mbox ON prekey_items(mbox, id);
"""

_SCHEMA_V3: Final = """
ALTER TABLE mailboxes ADD COLUMN kind INTEGER NOT NULL DEFAULT 0;
ALTER TABLE envelopes ADD COLUMN hdl BLOB;
CREATE TABLE addr_state (
    mbox      INTEGER PRIMARY KEY REFERENCES mailboxes(id) ON DELETE CASCADE,
    max_size  INTEGER NOT NULL,
    att       INTEGER NOT NULL,
    per_day   INTEGER NOT NULL,
    pow_bits  INTEGER NOT NULL,
    req_day   INTEGER,
    req_count INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE caps (
    mbox INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    h    BLOB NOT NULL,
    PRIMARY KEY (mbox, h)
) WITHOUT ROWID;
CREATE TABLE bans (
    mbox INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    hdl  BLOB NOT NULL,
    PRIMARY KEY (mbox, hdl)
) WITHOUT ROWID;
"""

_SCHEMA_V4: Final = """
ALTER TABLE envelopes ADD COLUMN ft BLOB;
ALTER TABLE envelopes ADD COLUMN fx BLOB;
ALTER TABLE mailboxes ADD COLUMN suspended INTEGER NOT NULL DEFAULT 0;
CREATE TABLE franking_keys (
    kid     INTEGER PRIMARY KEY,
    secret  BLOB NOT NULL,
    created INTEGER NOT NULL
);
CREATE TABLE reports (
    id            BLOB PRIMARY KEY,
    created       INTEGER NOT NULL,
    sid           BLOB NOT NULL,
    reason        TEXT NOT NULL,
    note          TEXT,
    msg           BLOB NOT NULL,
    attachments   BLOB NOT NULL,
    sender_key    BLOB NOT NULL,
    recipient_key BLOB NOT NULL,
    kid           INTEGER NOT NULL,
    day           INTEGER NOT NULL,
    source_kind   INTEGER NOT NULL,
    source        BLOB NOT NULL,
    verified_at   INTEGER NOT NULL,
    action        TEXT,
    moderator     TEXT,
    resolved_at   INTEGER,
    resolution    TEXT
);
CREATE INDEX reports_open ON reports(resolved_at, created);
CREATE INDEX reports_sid ON reports(sid, created);
CREATE INDEX reports_created ON reports(created);
CREATE TABLE audit (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    ts        INTEGER NOT NULL,
    moderator TEXT NOT NULL,
    action    TEXT NOT NULL,
    report_id BLOB,
    detail    TEXT NOT NULL
);
CREATE INDEX audit_ts ON audit(ts);
CREATE TRIGGER audit_append_only BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END
"""

#: ``_MIGRATIONS[v]`` upgrades a database at version ``v - 1`` to version ``v``.
_MIGRATIONS: Final[dict[int, str]] = {
    1: _SCHEMA_V1,
    2: _SCHEMA_V2,
    3: _SCHEMA_V3,
    4: _SCHEMA_V4,
}

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

#: ``mailboxes.kind`` values.
_KIND_CODES: Final[dict[str, int]] = {KIND_OPEN: 0, KIND_PAIRWISE: 1, KIND_ADDRESS: 2}
_KIND_NAMES: Final[dict[int, str]] = {v: k for k, v in _KIND_CODES.items()}
_PAIR: Final = _KIND_CODES[KIND_PAIRWISE]
_ADDR: Final = _KIND_CODES[KIND_ADDRESS]

_SYNCHRONOUS_FULL: Final = 2


def _map_error(exc: BaseException) -> StorageError:
    """Translate a database failure into the store's error vocabulary (no ids in messages)."""
    if isinstance(exc, StorageError):
        return exc
    full = False
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        full = (isinstance(code, int) and code & 0xFF == sqlite3.SQLITE_FULL) or (
            "database or disk is full" in str(exc)
        )
    elif isinstance(exc, OSError):
        full = exc.errno == errno.ENOSPC
    err: StorageError = StorageFull(MSG_FULL) if full else StorageUnavailable(MSG_UNAVAILABLE)
    err.__cause__ = exc
    return err


def _settle(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    """Resolve ``fut`` on its loop unless the caller gave up on it."""
    if fut.cancelled():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


@dataclass(slots=True)
class _Op:
    """One queued write: a function of the writer connection and where to send its result."""

    fn: Callable[[sqlite3.Connection], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    result: Any = None
    error: BaseException | None = field(default=None)


_STOP: Final = object()


class SQLiteStore:
    """An :class:`~relay.storage.base.EnvelopeStore` in one SQLite file.

    Args:
        path: the database file; created with mode 0600 if missing (an existing file is
            tightened to 0600). ``-wal`` and ``-shm`` files inherit that mode.
        limits: quotas and expiry periods.
        max_db_bytes: optional cap on the database size (``PRAGMA max_page_count``); writes
            beyond it fail with :class:`StorageFull` like a full disk would.
    """

    backend = "sqlite"

    def __init__(
        self, path: str | Path, limits: StoreLimits, *, max_db_bytes: int | None = None
    ) -> None:
        self._path = Path(path)
        self._limits = limits
        self._max_db_bytes = max_db_bytes
        self._queue: queue.SimpleQueue[_Op | object] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._rconn: sqlite3.Connection | None = None
        self._open = False
        #: Write transactions committed so far (each is one fsync; a metric of batching).
        self.commit_count = 0
        self._lock = threading.Lock()  # guards _open against concurrent submit/close

    # --- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        """Create or migrate the schema and start the writer and reader threads.

        Raises:
            StorageUnavailable: the file cannot be opened, its schema is newer than this
                relay, or it cannot run in WAL mode with ``synchronous=FULL``.
        """
        if self._open:
            return
        try:
            await asyncio.to_thread(self._prepare_file)
        except OSError as exc:
            raise _map_error(exc) from exc
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._writer = threading.Thread(
            target=self._writer_main,
            args=(asyncio.get_running_loop(), ready),
            name="sqlite-writer",
            daemon=True,
        )
        self._writer.start()
        try:
            await ready
        except BaseException:
            await asyncio.to_thread(self._writer.join)
            self._writer = None
            raise
        self._open = True
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-reader")
        try:
            await self._read(lambda _c: None)
            problems = await self.durability_problems()
        except BaseException:
            await self.aclose()
            raise
        if problems:
            await self.aclose()
            raise StorageUnavailable("storage is not durable: " + "; ".join(problems))

    def _prepare_file(self) -> None:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        os.chmod(self._path, 0o600)

    async def aclose(self) -> None:
        """Apply every queued write, then close both connections and stop the threads."""
        with self._lock:
            was_open, self._open = self._open, False
        if self._writer is not None:
            if was_open:
                self._queue.put(_STOP)
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        if self._reader is not None:
            reader, self._reader = self._reader, None
            await asyncio.get_running_loop().run_in_executor(reader, self._close_reader)
            await asyncio.to_thread(reader.shutdown, True)

    def _close_reader(self) -> None:
        if self._rconn is not None:
            self._rconn.close()
            self._rconn = None

    # --- connections ---------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, cached_statements=64
        )
        try:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA secure_delete=ON")
            conn.execute("PRAGMA journal_size_limit=0")
            conn.execute("PRAGMA synchronous=FULL")
        except BaseException:
            conn.close()
            raise
        return conn

    def _init_writer(self, conn: sqlite3.Connection) -> None:
        # auto_vacuum only takes effect before the first table exists (or after VACUUM).
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StorageUnavailable("database cannot run in WAL mode")
        if self._max_db_bytes is not None:
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count={max(1, self._max_db_bytes // page_size)}")
        if version > SCHEMA_VERSION:
            raise StorageUnavailable("database schema is newer than this relay")
        if version < SCHEMA_VERSION:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for v in range(version + 1, SCHEMA_VERSION + 1):
                    for statement in _statements(_MIGRATIONS[v]):
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    # --- the writer thread ---------------------------------------------------------------

    def _writer_main(self, loop: asyncio.AbstractEventLoop, ready: asyncio.Future[None]) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:
            loop.call_soon_threadsafe(_settle, ready, None, _map_error(exc))
            return
        try:
            try:
                self._init_writer(conn)
            except BaseException as exc:
                loop.call_soon_threadsafe(_settle, ready, None, _map_error(exc))
                return
            loop.call_soon_threadsafe(_settle, ready, None, None)
            self._writer_loop(conn)
        finally:
            conn.close()

    def _writer_loop(self, conn: sqlite3.Connection) -> None:
        stop = False
        while not stop:
            item = self._queue.get()
            batch: list[_Op] = []
            while True:
                if item is _STOP:
                    stop = True
                elif isinstance(item, _Op):
                    batch.append(item)
                if len(batch) >= MAX_BATCH_OPS:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._apply_batch(conn, batch)
        # Anything queued after the stop marker (a race with aclose) fails cleanly.
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Op):
                item.loop.call_soon_threadsafe(
                    _settle, item.future, None, StorageUnavailable(MSG_CLOSED)
                )

    def _apply_batch(self, conn: sqlite3.Connection, batch: list[_Op]) -> None:
        """Apply ``batch`` in one transaction, one savepoint per operation, then resolve."""
        done: list[_Op] = []  # applied in the current transaction, awaiting COMMIT
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._fail_all(batch, _map_error(exc))
            return
        for op in batch:
            try:
                conn.execute("SAVEPOINT op")
            except sqlite3.Error as exc:
                op.error = _map_error(exc)
                self._resolve([op])
                continue
            try:
                op.result = op.fn(conn)
            except BaseException as exc:
                op.error = _map_error(exc)
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK TO op")
                        conn.execute("RELEASE op")
                    except sqlite3.Error:
                        self._abandon(conn, done, exc)
                        done = []
                else:
                    # SQLite rolled the whole transaction back (e.g. SQLITE_FULL): every
                    # operation applied so far in it is lost, so they fail too.
                    self._fail_all(done, op.error)
                    done = []
                self._resolve([op])
                if not conn.in_transaction:
                    try:
                        conn.execute("BEGIN IMMEDIATE")
                    except sqlite3.Error as exc2:
                        rest = batch[batch.index(op) + 1 :]
                        self._fail_all(rest, _map_error(exc2))
                        return
                continue
            try:
                conn.execute("RELEASE op")
            except sqlite3.Error as exc:
                op.error = _map_error(exc)
                self._resolve([op])
                continue
            done.append(op)
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._abandon(conn, done, exc)
            return
        self.commit_count += 1
        self._resolve(done)

    def _abandon(self, conn: sqlite3.Connection, ops: list[_Op], exc: BaseException) -> None:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        self._fail_all(ops, _map_error(exc))

    def _fail_all(self, ops: Sequence[_Op], error: StorageError) -> None:
        for op in ops:
            op.result, op.error = None, error
        self._resolve(ops)

    @staticmethod
    def _resolve(ops: Sequence[_Op]) -> None:
        for op in ops:
            op.loop.call_soon_threadsafe(_settle, op.future, op.result, op.error)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        with self._lock:
            if not self._open:
                raise StorageUnavailable(MSG_CLOSED)
            self._queue.put(_Op(fn, loop, fut))
        return await fut

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._reader is None or not self._open:
            raise StorageUnavailable(MSG_CLOSED)
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._reader, partial(self._run_read, fn)
            )
        except StorageError:
            raise
        except (sqlite3.Error, OSError) as exc:
            raise _map_error(exc) from exc

    def _run_read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._rconn is None:
            self._rconn = self._connect()
        return fn(self._rconn)

    # --- EnvelopeStore -------------------------------------------------------------------

    async def durability_problems(self) -> list[str]:
        """Report if the writer does not run in WAL mode with ``synchronous=FULL``.

        Raises:
            StorageUnavailable: the database cannot be queried.
        """

        def check(conn: sqlite3.Connection) -> tuple[str, int]:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            sync = conn.execute("PRAGMA synchronous").fetchone()[0]
            return str(mode).lower(), int(sync)

        mode, sync = await self._write(check)
        problems = []
        if mode != "wal":
            problems.append(f"sqlite journal_mode is {mode}, not wal")
        if sync != _SYNCHRONOUS_FULL:
            problems.append(f"sqlite synchronous is {sync}, not FULL (2)")
        return problems

    async def ping(self) -> None:
        """Run a trivial query on the read connection.

        Raises:
            StorageUnavailable: the database does not answer.
        """
        await self._read(lambda c: c.execute("SELECT 1").fetchone())

    async def create_mailbox(self, record: MailboxRecord, now: int) -> None:
        """Create a mailbox (an idle-expired mailbox holding one of its ids is removed first).

        Raises:
            IdCollision: ``record.rid`` or ``record.sid`` is used by a live mailbox.
            StorageUnavailable: the database failed.
            StorageFull: the disk or the database size cap is full.
        """
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
            kind = _KIND_CODES[record.kind]
            mbox = conn.execute(
                "INSERT INTO mailboxes (rid, sid, owner_key, created_day, active_day, kind)"
                " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                (record.rid, record.sid, record.owner_key, record.created_day, day_of(now), kind),
            ).fetchone()[0]
            if kind == _ADDR:
                b = record.boundaries or DEFAULT_BOUNDARIES
                conn.execute(
                    "INSERT INTO addr_state (mbox, max_size, att, per_day, pow_bits)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (mbox, b.size, b.att, b.day, b.pow),
                )

        await self._write(op)

    async def get_mailbox(self, rid: bytes, now: int) -> MailboxRecord | None:
        """Return the live mailbox with receive id ``rid``, or None.

        Raises:
            StorageUnavailable: the database failed.
        """

        def op(conn: sqlite3.Connection) -> MailboxRecord | None:
            row = conn.execute(
                "SELECT m.sid, m.owner_key, m.created_day, m.active_day, m.kind,"
                " a.max_size, a.att, a.per_day, a.pow_bits"
                " FROM mailboxes m LEFT JOIN addr_state a ON a.mbox = m.id WHERE m.rid = ?",
                (rid,),
            ).fetchone()
            if row is None or mailbox_expired(row[3], now, self._limits):
                return None
            return MailboxRecord(
                rid=rid,
                sid=row[0],
                owner_key=row[1],
                created_day=row[2],
                kind=_KIND_NAMES[row[4]],
                boundaries=_boundaries(row[5:9]) if row[4] == _ADDR else None,
            )

        return await self._read(op)

    async def resolve_sid(self, sid: bytes, now: int) -> bytes | None:
        """Return the receive id of the live mailbox with send id ``sid``, or None.

        Raises:
            StorageUnavailable: the database failed.
        """

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
        """Return ``(rid, kind)`` for an online-only envelope; pair mailboxes need the cap.

        Raises:
            StorageUnavailable: the database failed.
        """

        def op(conn: sqlite3.Connection) -> tuple[bytes, str] | None:
            row = conn.execute(
                "SELECT id, rid, active_day, kind, suspended FROM mailboxes WHERE sid = ?", (sid,)
            ).fetchone()
            if row is None or row[4] or mailbox_expired(row[2], now, self._limits):
                return None
            if row[3] == _PAIR and not _has_cap(conn, row[0], cap_hash):
                return None
            return row[1], _KIND_NAMES[row[3]]

        return await self._read(op)

    async def get_boundaries(self, sid: bytes, now: int) -> tuple[str, Boundaries | None] | None:
        """Return ``(kind, boundaries or None)`` of the live mailbox with send id ``sid``.

        Raises:
            StorageUnavailable: the database failed.
        """

        def op(conn: sqlite3.Connection) -> tuple[str, Boundaries | None] | None:
            row = conn.execute(
                "SELECT m.active_day, m.kind, a.max_size, a.att, a.per_day, a.pow_bits,"
                " m.suspended"
                " FROM mailboxes m LEFT JOIN addr_state a ON a.mbox = m.id WHERE m.sid = ?",
                (sid,),
            ).fetchone()
            if row is None or row[6] or mailbox_expired(row[0], now, self._limits):
                return None
            return _KIND_NAMES[row[1]], _boundaries(row[2:6]) if row[1] == _ADDR else None

        return await self._read(op)

    async def touch_mailbox(self, rid: bytes, now: int) -> None:
        """Record owner activity for today; writes only when the day changes.

        Raises:
            StorageUnavailable: the database failed.
            StorageFull: the disk is full.
        """
        today = day_of(now)

        def check(conn: sqlite3.Connection) -> bool:
            row = conn.execute("SELECT active_day FROM mailboxes WHERE rid = ?", (rid,)).fetchone()
            return (
                row is not None
                and row[0] < today
                and not mailbox_expired(row[0], now, self._limits)
            )

        if not await self._read(check):
            return

        def op(conn: sqlite3.Connection) -> None:
            row = conn.execute("SELECT active_day FROM mailboxes WHERE rid = ?", (rid,)).fetchone()
            if row is not None and not mailbox_expired(row[0], now, self._limits):
                conn.execute(
                    "UPDATE mailboxes SET active_day = ? WHERE rid = ? AND active_day < ?",
                    (today, rid, today),
                )

        await self._write(op)

    async def delete_mailbox(self, rid: bytes) -> bool:
        """Delete a mailbox, its envelopes, dedupe records, prekeys, capability hashes,
        boundaries, bans and request counter in one transaction (they cascade).

        Returns:
            False if no mailbox had receive id ``rid``.

        Raises:
            StorageUnavailable: the database failed.
        """

        def op(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM mailboxes WHERE rid = ?", (rid,)).rowcount > 0

        deleted = await self._write(op)
        if deleted:
            # secure_delete zeroes the new page versions, but the old ones live on in the WAL
            # until a checkpoint: truncate it now so deleted data leaves the disk at once.
            await self._read(lambda c: c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())
        return deleted

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
        pow_bits: int = 0,
        stamp: RelayStamp | None = None,
    ) -> DepositOutcome:
        """Append an envelope; returns once the transaction holding it is committed.

        The kind's checks (capability, boundaries, bans, daily counter; see
        :meth:`~relay.storage.base.EnvelopeStore.deposit`) run in the same savepoint: a
        capability is one lookup in the ``caps`` primary key.

        Raises:
            MailboxNotFound: no live mailbox has send id ``sid``, it is suspended, the
                capability is missing or unknown (pair), or the handle is banned (addr).
            WrongKind: a deposit to a contact address without a handle.
            BoundaryExceeded: the request breaks the address's size or attachment boundary.
            PowRequired: the address asks for more proof of work than ``pow_bits``.
            StampMismatch: ``stamp`` was computed for another kind of mailbox.
            QuotaExceeded: the mailbox is at its count or byte quota, or its daily allowance.
            StorageUnavailable: the database failed.
            StorageFull: the disk or the database size cap is full.
        """
        limits = self._limits
        size = len(ct)

        def op(conn: sqlite3.Connection) -> DepositOutcome:
            if cap_hash is None:
                row = conn.execute(_SELECT_FOR_DEPOSIT, (sid,)).fetchone()
            else:  # the capability lookup rides along in the same statement
                row = conn.execute(_SELECT_FOR_DEPOSIT_CAP, (cap_hash, sid)).fetchone()
            if row is None or row[7] or mailbox_expired(row[2], now, limits):
                raise MailboxNotFound(MSG_NOT_FOUND)  # unknown, expired or suspended
            mbox, rid, _, last_seq, n_env, n_bytes, kind = row[:7]
            counted: int | None = None  # addr: requests counted today, before this one
            if kind == _PAIR:
                if cap_hash is None or not row[8]:
                    raise MailboxNotFound(MSG_NOT_FOUND)
            elif kind == _ADDR:
                counted = _check_request(conn, mbox, size, handle, attachments, pow_bits, now)
            dup = conn.execute(
                "SELECT seq, ts, expires_at FROM dedupe WHERE mbox = ? AND eid = ?", (mbox, eid)
            ).fetchone()
            if dup is not None and now < dup[2]:
                return DepositOutcome(rid=rid, seq=dup[0], ts=dup[1], duplicate=True)
            if stamp is not None and _KIND_CODES[stamp.kind] != kind:
                raise StampMismatch(_KIND_NAMES[kind])
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
                    now + limits.envelope_ttl_s,
                    flags,
                    ct,
                    fc,
                    handle if kind == _ADDR else None,
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
                "INSERT OR REPLACE INTO dedupe (mbox, eid, seq, ts, expires_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (mbox, eid, seq, now, now + limits.dedupe_window_s),
            )
            conn.execute(
                "UPDATE mailboxes SET last_seq = ?, n_envelopes = ?, n_bytes = ? WHERE id = ?",
                (seq, n_env + 1, n_bytes + size, mbox),
            )
            return DepositOutcome(rid=rid, seq=seq, ts=now, duplicate=False)

        return await self._write(op)

    async def fetch(
        self, rid: bytes, after_seq: int, limit: int, max_bytes: int, now: int
    ) -> list[StoredEnvelope]:
        """Return unexpired envelopes with ``seq > after_seq`` in order (see the protocol).

        Raises:
            StorageUnavailable: the database failed.
        """
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
        """Delete the given envelopes of mailbox ``rid``; unknown seqs are ignored.

        Returns:
            How many envelopes were deleted.

        Raises:
            StorageUnavailable: the database failed.
        """
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

        return await self._write(op)

    async def purge_expired(self, now: int) -> int:
        """Delete expired envelopes, dedupe records, challenges and idle mailboxes.

        Works in small transactions so waiting deposits are not held up, then returns free
        pages to the file system (``incremental_vacuum``) and checkpoints the WAL so deleted
        content does not linger in it.

        Returns:
            The number of rows deleted (cascaded rows of deleted mailboxes not counted).

        Raises:
            StorageUnavailable: the database failed.
        """
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

    async def put_challenge(self, nonce: bytes, binding: bytes, expires_at: int) -> None:
        """Remember a single-use challenge until ``expires_at``.

        Raises:
            StorageUnavailable: the database failed.
            StorageFull: the disk is full.
        """
        await self._write(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO challenges (nonce, binding, expires_at) VALUES (?, ?, ?)",
                (nonce, binding, expires_at),
            )
        )

    async def take_challenge(self, nonce: bytes, now: int) -> bytes | None:
        """Consume a challenge: its binding if it existed and had not expired.

        Raises:
            StorageUnavailable: the database failed.
        """

        def op(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute(
                "DELETE FROM challenges WHERE nonce = ? RETURNING binding, expires_at", (nonce,)
            ).fetchone()
            if row is None or now >= row[1]:
                return None
            binding: bytes = row[0]
            return binding

        return await self._write(op)

    async def count_envelopes(self) -> int:
        """Total stored envelopes (expired ones not yet purged included).

        Raises:
            StorageUnavailable: the database failed.
        """
        return await self._read(
            lambda c: int(c.execute("SELECT count(*) FROM envelopes").fetchone()[0])
        )

    # --- prekeys -------------------------------------------------------------------------

    async def put_prekeys(
        self,
        rid: bytes,
        static: bytes | None,
        items: Sequence[bytes],
        replace: bool,
        max_items: int,
        now: int,
    ) -> tuple[int, bool]:
        """Replace the static part and/or append one-time items, in one savepoint.

        Returns:
            ``(one-time items held, static part held)`` after the update.

        Raises:
            MailboxNotFound: no live mailbox has receive id ``rid``.
            QuotaExceeded: the items would exceed ``max_items``; nothing changed.
            StorageUnavailable: the database failed.
            StorageFull: the disk or the database size cap is full.
        """
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
        """Return ``(one-time items held, static part held)``; ``(0, False)`` if unknown.

        Raises:
            StorageUnavailable: the database failed.
        """

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
        """Hand out the static part and, within the hourly allowance, the oldest item.

        A read decides first whether an item can be handed out at all, so that bundle
        requests past the allowance (or with no item left) never queue on the writer that
        deposits wait for. Otherwise the pop, re-checked, runs on the writer: two concurrent
        takes never get the same item.

        Raises:
            StorageUnavailable: the database failed.
            StorageFull: the disk is full.
        """
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

    # --- consent (protocol.md §4.8-§4.10) ------------------------------------------------

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
        """Remove, then add capability hashes of a pair mailbox, in one savepoint.

        Returns:
            The number of capability hashes now registered.

        Raises:
            MailboxNotFound: no live mailbox has receive id ``rid``.
            WrongKind: the mailbox is not of kind ``pair``.
            QuotaExceeded: more than ``max_caps`` would be registered; nothing changed.
            StorageUnavailable: the database failed.
            StorageFull: the disk or the database size cap is full.
        """
        return await self._set_members("caps", "h", _PAIR, rid, add, remove, max_caps, now)

    async def set_bans(
        self,
        rid: bytes,
        ban: Sequence[bytes],
        unban: Sequence[bytes],
        max_bans: int,
        now: int,
    ) -> int:
        """Lift ``unban``, then ban ``ban`` on a contact address, in one savepoint.

        Returns:
            The number of banned handles.

        Raises:
            MailboxNotFound: no live mailbox has receive id ``rid``.
            WrongKind: the mailbox is not of kind ``addr``.
            QuotaExceeded: more than ``max_bans`` would be banned; nothing changed.
            StorageUnavailable: the database failed.
            StorageFull: the disk or the database size cap is full.
        """
        return await self._set_members("bans", "hdl", _ADDR, rid, ban, unban, max_bans, now)

    async def set_boundaries(self, rid: bytes, boundaries: Boundaries, now: int) -> None:
        """Replace the boundaries of a contact address (its daily counter is kept).

        Raises:
            MailboxNotFound: no live mailbox has receive id ``rid``.
            WrongKind: the mailbox is not of kind ``addr``.
            StorageUnavailable: the database failed.
            StorageFull: the disk or the database size cap is full.
        """
        b = boundaries

        def op(conn: sqlite3.Connection) -> None:
            mbox = self._live_of_kind(conn, rid, _ADDR, now)
            conn.execute(
                "UPDATE addr_state SET max_size = ?, att = ?, per_day = ?, pow_bits = ?"
                " WHERE mbox = ?",
                (b.size, b.att, b.day, b.pow, mbox),
            )

        await self._write(op)

    async def mailbox_info(self, rid: bytes, now: int) -> MailboxSnapshot | None:
        """Read every row and column kept for mailbox ``rid`` (counts for collections).

        Raises:
            StorageUnavailable: the database failed.
        """

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
                kind=_KIND_NAMES[kind],
                boundaries=_boundaries(row[9:13]) if kind == _ADDR else None,
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

    async def set_suspended(self, sid: bytes, suspended: bool, now: int) -> bool:
        """Set or clear the suspension of the live mailbox with send id ``sid``.

        Returns:
            False if no live mailbox has that send id.

        Raises:
            StorageUnavailable: the database failed.
            StorageFull: the disk is full.
        """

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

    # --- franking keys and moderation (protocol.md §4.11) ------------------------------

    async def franking_keys(self) -> list[FrankingKey]:
        """Every stored franking key, by increasing kid.

        Raises:
            StorageUnavailable: the database failed.
        """

        def op(conn: sqlite3.Connection) -> list[FrankingKey]:
            rows = conn.execute(
                "SELECT kid, secret, created FROM franking_keys ORDER BY kid"
            ).fetchall()
            return [FrankingKey(kid=r[0], secret=r[1], created=r[2]) for r in rows]

        return await self._read(op)

    async def add_franking_key(self, key: FrankingKey) -> FrankingKey:
        """Store ``key`` unless its kid is taken; return the key stored under that kid.

        Raises:
            StorageUnavailable: the database failed.
            StorageFull: the disk is full.
        """

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
        """Insert a report and its audit entry in one savepoint (duplicate, then allowance).

        Raises:
            DuplicateReport: the id is taken.
            QuotaExceeded: the filing mailbox's daily allowance is used up.
            StorageUnavailable: the database failed.
            StorageFull: the disk or the database size cap is full.
        """
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
        """Return the report with this id, or None.

        Raises:
            StorageUnavailable: the database failed.
        """

        def op(conn: sqlite3.Connection) -> ReportRecord | None:
            row = conn.execute(_SELECT_REPORT + " WHERE id = ?", (report_id,)).fetchone()
            return None if row is None else _report(row)

        return await self._read(op)

    async def list_reports(self, status: str | None, limit: int) -> list[ReportRecord]:
        """Open reports oldest first, resolved (or all) newest first.

        Raises:
            StorageUnavailable: the database failed.
        """
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
        """Resolve an open report and append its audit entry in one savepoint.

        Raises:
            ReportNotFound: no report has this id.
            ReportAlreadyResolved: it was resolved before.
            StorageUnavailable: the database failed.
            StorageFull: the disk is full.
        """
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
        """Append an audit entry; returns its sequence number.

        Raises:
            StorageUnavailable: the database failed.
            StorageFull: the disk is full.
        """
        return await self._write(lambda conn: _insert_audit(conn, entry))

    async def list_audit(self, limit: int) -> list[AuditRecord]:
        """The latest ``limit`` audit entries, newest first.

        Raises:
            StorageUnavailable: the database failed.
        """

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


_SELECT_REPORT: Final = (
    "SELECT id, created, sid, reason, note, msg, attachments, sender_key, recipient_key, kid,"
    " day, source_kind, source, verified_at, action, moderator, resolved_at, resolution"
    " FROM reports"
)


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


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (a trigger body keeps its semicolons)."""
    out: list[str] = []
    buf = ""
    for piece in script.split(";"):
        buf += piece + ";"
        if sqlite3.complete_statement(buf):
            if buf.strip(" \n;"):
                out.append(buf)
            buf = ""
    if buf.strip(" \n;"):
        out.append(buf)
    return out


def _boundaries(row: Sequence[Any]) -> Boundaries:
    """Boundaries from ``(max_size, att, per_day, pow_bits)`` columns."""
    return Boundaries(size=row[0], att=row[1], day=row[2], pow=row[3])


def _has_cap(conn: sqlite3.Connection, mbox: int, cap_hash: bytes | None) -> bool:
    """Whether ``cap_hash`` is registered on mailbox ``mbox`` (one primary-key lookup)."""
    if cap_hash is None:
        return False
    found = conn.execute("SELECT 1 FROM caps WHERE mbox = ? AND h = ?", (mbox, cap_hash))
    return found.fetchone() is not None


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
