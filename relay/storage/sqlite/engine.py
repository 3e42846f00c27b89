"""SQLite envelope store: stdlib :mod:`sqlite3`, WAL, ``synchronous=FULL``, group commit.

Theory of operation
-------------------
One dedicated *writer thread* owns the only writing connection. Every write (deposit, ack,
create, delete, touch, purge chunk, challenge) is queued as an operation; the writer takes
every operation waiting in the queue and applies them in ONE transaction. After ``COMMIT``
(one fsync of the WAL for the whole batch) the writer settles the futures of the whole batch
with ONE ``loop.call_soon_threadsafe`` per event loop (one wake-up of the loop per batch, not
one per operation). A deposit therefore returns only once its batch is durable, and under load
the cost of the fsync and of the hand-off is shared.

Operations queued *plain* (``_write(fn, plain=True)``: deposits and acks) run without a
savepoint: they refuse (raise a :class:`~relay.storage.errors.StorageError` of their own, e.g.
quota) before they write anything that is not consistent on its own, so a refusal needs no
rollback. Every other operation runs inside its own ``SAVEPOINT`` so a failing operation is
rolled back alone without poisoning its neighbours. If anything else fails in a batch (a
database error in a plain operation, a savepoint that cannot be released), the whole
transaction is rolled back and the batch is applied again with one savepoint per operation,
the careful way, which isolates the failure; nothing has been settled by then.

Reads (``fetch``, ``get_mailbox``, counts) go through a second connection owned by a
single-thread executor; in WAL mode they never block the writer and see every committed batch.

A batch of *lazy* operations only (``_write(fn, lazy=True)``: acks) commits with
``synchronous=NORMAL``: no fsync of its own. Its WAL frames become durable with the next
fsynced commit (any batch holding anything else, deposits first) or checkpoint, and survive a
crash of the relay process at once (they are in the OS's page cache). Only a power failure or
kernel crash in between can undo such an ack, and then the envelope is pushed again, which
at-least-once delivery allows (protocol.md §5.3, §9.3). Every other batch commits with
``synchronous=FULL``, so an ``ok`` to a deposit still means it is on disk.

An operation queued *alone* (``_write(fn, alone=True)``) runs outside any transaction, after
the batch before it has committed: the stepped ``PRAGMA incremental_vacuum`` is one, because it
commits by itself.

Page cache
----------
Each connection (the writer and the reader) gets ``PRAGMA cache_size`` of ``cache_mib`` MiB
(default :data:`DEFAULT_CACHE_MIB`; SQLite's own default is 2 MiB). The cache is allocated as
pages are read, so an idle or small relay does not use it; a large one keeps the interior
pages of the mailbox table and its indexes (about 144 MB at 1M mailboxes) in memory instead of
reading them from the OS on every deposit. Size it to the working set: the mailbox table and
its indexes, plus the recently deposited envelope pages. ``bench/bench_scale.py`` prints RSS.

Costs independent of the stored state
-------------------------------------
Every expiry is found through an index on its deadline (``envelopes.expires_at``,
``dedupe.expires_at``, ``challenges.expires_at``, ``mailboxes.active_day``, ``reports.created``,
``audit.ts``), so a sweep with nothing due is a handful of index probes at any size. The
aggregate gauges (mailboxes, envelopes, ciphertext bytes) are one row of ``gauges``, kept
exact by triggers in the same transaction as every insert and delete (cascades included), so
``gauges()`` and ``count_envelopes()`` read one row. The sweep works in steps of at most
:data:`~relay.storage.sqlite.expiry.STEP_BUDGET_S` of writer time, so a deposit queued behind
it waits a few milliseconds at most, and the freed pages are returned to the file system in
bounded ``incremental_vacuum`` steps until the freelist is empty.
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

from relay.storage._common import (
    MSG_CLOSED,
    MSG_FULL,
    MSG_UNAVAILABLE,
)
from relay.storage.errors import (
    StorageError,
    StorageFull,
    StorageUnavailable,
)
from relay.storage.records import StoreLimits
from relay.storage.sqlite.reserve import SpaceGuard
from relay.storage.sqlite.schema import migrate

__all__ = ["BUSY_TIMEOUT_MS", "MAX_BATCH_OPS", "SQLiteEngine", "map_error"]

T = TypeVar("T")

#: Most operations one transaction may hold. Bounds the latency a batch adds to its first
#: operation and the size of one WAL commit; 1024 deposits of 64 KiB is 64 MiB at worst.
MAX_BATCH_OPS: Final = 1024

#: Default page cache of each connection, MiB (SQLite's own default is 2 MiB).
DEFAULT_CACHE_MIB: Final = 64
#: How long a connection waits for a lock held by another process before failing.
BUSY_TIMEOUT_MS: Final = 5000

SYNCHRONOUS_FULL: Final = 2


def map_error(exc: BaseException) -> StorageError:
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


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
        loop.call_soon_threadsafe(fn, *args)


def _settle_all(ops: Sequence[_Op]) -> None:
    """Resolve the futures of ``ops`` (one loop callback for a whole batch)."""
    for op in ops:
        _settle(op.future, op.result, op.error)


def _settle(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    """Resolve ``fut`` on its loop unless the caller gave up on it (cancelled, or answered
    ``UNAVAILABLE`` at the wait bound)."""
    if fut.done():
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
    alone: bool = False  # run outside any transaction (it commits by itself)
    plain: bool = False  # needs no savepoint: refuses before it writes (see the docstring)
    lazy: bool = False  # its commit need not be fsynced by itself (acks; see the docstring)
    result: Any = None
    error: BaseException | None = field(default=None)


_STOP: Final = object()


def _give_up(fut: asyncio.Future[Any]) -> None:
    """The wait bound passed: the caller is answered ``UNAVAILABLE``; the operation may
    still be applied (a deposit then answers a retry with its eid as a duplicate)."""
    if not fut.done():
        fut.set_exception(StorageUnavailable(MSG_UNAVAILABLE))


def _copy_result(out: asyncio.Future[Any], done: Any) -> None:
    """Hand a reader thread's result to ``out`` (a future of the loop) unless it gave up."""
    if out.done():
        return
    exc = done.exception()
    if exc is not None:
        out.set_exception(exc)
    else:
        out.set_result(done.result())


class SQLiteEngine:
    """An :class:`~relay.storage.base.EnvelopeStore` in one SQLite file.

    Args:
        path: the database file; created with mode 0600 if missing (an existing file is
            tightened to 0600). ``-wal`` and ``-shm`` files inherit that mode.
        limits: quotas and expiry periods.
        max_db_bytes: optional cap on the database size (``PRAGMA max_page_count``); writes
            beyond it fail with :class:`StorageFull` like a full disk would.
        cache_mib: page cache of each of the two connections, MiB (see "Page cache").
        count_vm_steps: count the virtual machine instructions every statement runs, in
            :attr:`vm_steps` (a progress handler on both connections: slow, for tests that
            prove a path costs the same at any size).
        reserve_bytes: room kept in ``<path>.reserve`` for owners when the disk fills
            (:mod:`relay.storage.sqlite.reserve`); 0: none.
        wait_timeout_s: the longest a caller waits for one operation (``storage_timeout_s``):
            then :class:`StorageUnavailable` (the operation may still be applied). None: no
            bound.
    """

    backend = "sqlite"
    #: Its coroutines only await plain futures (no ``asyncio.timeout``, no current-task
    #: lookups), so the socket handler may run them without a Task (relay.ws.inline).
    task_free = True

    def __init__(
        self,
        path: str | Path,
        limits: StoreLimits,
        *,
        max_db_bytes: int | None = None,
        cache_mib: int = DEFAULT_CACHE_MIB,
        count_vm_steps: bool = False,
        reserve_bytes: int = 0,
        wait_timeout_s: float | None = None,
    ) -> None:
        if cache_mib < 1:
            raise ValueError("cache_mib must be at least 1")
        self._cache_mib = cache_mib
        self._count_vm_steps = count_vm_steps
        #: Virtual machine instructions run so far (only with ``count_vm_steps``).
        self.vm_steps = 0
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
        #: Batches applied the careful way after a failure in the fast one (see docstring).
        self.careful_batches = 0
        self._settled: list[_Op] = []  # resolved in this writer step, not yet handed back
        self._lazy_sync = False  # the writer connection runs synchronous=NORMAL now
        #: Receive id -> a day its mailbox is known to be marked active (touches that day
        #: need no read; see MailboxesMixin.touch_mailbox). Only used on the event loop.
        self._active_days: dict[bytes, int] = {}
        self._lock = threading.Lock()  # guards _open against concurrent submit/close
        self._space = SpaceGuard(self._path, reserve_bytes)
        self._wait_timeout = wait_timeout_s

    async def open(self) -> None:
        if self._open:
            return
        try:
            await asyncio.to_thread(self._prepare_file)
        except OSError as exc:
            raise map_error(exc) from exc
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
        self._space.prepare()

    def space_exhausted(self) -> bool:
        """Whether the store is in its full state (see :mod:`relay.storage.sqlite.reserve`):
        a write failed for lack of space and the file system has not got room back. Cheap:
        one ``statvfs`` a second at most, and only while full."""
        return self._space.check()

    async def aclose(self) -> None:
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
            conn.execute(f"PRAGMA cache_size={-1024 * self._cache_mib}")
            if self._count_vm_steps:
                conn.set_progress_handler(self._vm_step, 1)
        except BaseException:
            conn.close()
            raise
        return conn

    def _vm_step(self) -> int:
        self.vm_steps += 1  # both threads hold the GIL here
        return 0

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
        migrate(conn, version)

    def _writer_main(self, loop: asyncio.AbstractEventLoop, ready: asyncio.Future[None]) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:
            loop.call_soon_threadsafe(_settle, ready, None, map_error(exc))
            return
        try:
            try:
                self._init_writer(conn)
            except BaseException as exc:
                loop.call_soon_threadsafe(_settle, ready, None, map_error(exc))
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
                self._apply_batches(conn, batch)
                self._deliver()
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

    def _apply_batches(self, conn: sqlite3.Connection, batch: list[_Op]) -> None:
        """Apply ``batch`` in queue order: runs of ordinary operations as one transaction
        each, operations queued alone on their own."""
        start = 0
        for i, op in enumerate(batch):
            if op.alone:
                if i > start:
                    self._apply_batch(conn, batch[start:i])
                self._apply_alone(conn, op)
                start = i + 1
        if start < len(batch):
            self._apply_batch(conn, batch[start:])

    def _sync(self, conn: sqlite3.Connection, lazy: bool) -> None:
        """Set ``synchronous`` for the next commit: NORMAL for a lazy batch, FULL otherwise."""
        if lazy != self._lazy_sync:
            conn.execute("PRAGMA synchronous=NORMAL" if lazy else "PRAGMA synchronous=FULL")
            self._lazy_sync = lazy

    def _apply_alone(self, conn: sqlite3.Connection, op: _Op) -> None:
        try:
            self._sync(conn, False)
            op.result = op.fn(conn)
        except BaseException as exc:
            op.error = map_error(exc)
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
        self._resolve([op])

    def _apply_batch(self, conn: sqlite3.Connection, batch: list[_Op]) -> None:
        """Apply ``batch`` in one transaction: the fast way, or if that fails the careful
        way (nothing of the failed attempt is settled or kept)."""
        mark = len(self._settled)
        try:
            self._sync(conn, all(op.lazy for op in batch))
        except sqlite3.Error as exc:
            self._fail_all(batch, map_error(exc))
            return
        if self._apply_fast(conn, batch):
            return
        del self._settled[mark:]
        for op in batch:
            op.result, op.error = None, None
        self.careful_batches += 1
        self._apply_careful(conn, batch)

    def _apply_fast(self, conn: sqlite3.Connection, batch: list[_Op]) -> bool:
        """Apply ``batch`` in one transaction, plain operations without a savepoint; return
        False (transaction rolled back) if anything but a refusal failed."""
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error:
            return False
        done: list[_Op] = []
        try:
            for op in batch:
                if op.plain:
                    try:
                        op.result = op.fn(conn)
                    except StorageError as exc:  # a refusal, raised before any write
                        op.error = exc
                        self._settled.append(op)
                        continue
                    done.append(op)
                    continue
                conn.execute("SAVEPOINT op")
                try:
                    op.result = op.fn(conn)
                except StorageError as exc:
                    op.error = exc
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    self._settled.append(op)
                    continue
                conn.execute("RELEASE op")
                done.append(op)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            return False
        self.commit_count += 1
        self._settled.extend(done)
        return True

    def _apply_careful(self, conn: sqlite3.Connection, batch: list[_Op]) -> None:
        """Apply ``batch`` in one transaction, one savepoint per operation, then resolve."""
        done: list[_Op] = []  # applied in the current transaction, awaiting COMMIT
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._fail_all(batch, map_error(exc))
            return
        for op in batch:
            try:
                conn.execute("SAVEPOINT op")
            except sqlite3.Error as exc:
                op.error = map_error(exc)
                self._resolve([op])
                continue
            try:
                op.result = op.fn(conn)
            except BaseException as exc:
                op.error = map_error(exc)
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
                        self._fail_all(rest, map_error(exc2))
                        return
                continue
            try:
                conn.execute("RELEASE op")
            except sqlite3.Error as exc:
                op.error = map_error(exc)
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
        self._fail_all(ops, map_error(exc))

    def _fail_all(self, ops: Sequence[_Op], error: StorageError) -> None:
        for op in ops:
            op.result, op.error = None, error
        self._resolve(ops)

    def _resolve(self, ops: Sequence[_Op]) -> None:
        """Mark ``ops`` settled; :meth:`_deliver` hands them back after the writer step."""
        self._settled.extend(ops)

    def _deliver(self) -> None:
        """Hand every settled operation back: one callback per event loop."""
        settled, self._settled = self._settled, []
        if any(isinstance(op.error, StorageFull) for op in settled):
            self._space.on_full()  # gives up the reserve before anyone is answered
        by_loop: dict[asyncio.AbstractEventLoop, list[_Op]] = {}
        for op in settled:
            by_loop.setdefault(op.loop, []).append(op)
        for loop, ops in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(_settle_all, ops)

    async def _write(
        self,
        fn: Callable[[sqlite3.Connection], T],
        *,
        alone: bool = False,
        plain: bool = False,
        lazy: bool = False,
    ) -> T:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        with self._lock:
            if not self._open:
                raise StorageUnavailable(MSG_CLOSED)
            self._queue.put(_Op(fn, loop, fut, alone, plain, lazy))
        if self._wait_timeout is not None:
            self._bound(loop, fut)
        return await fut

    def _bound(self, loop: asyncio.AbstractEventLoop, fut: asyncio.Future[Any]) -> None:
        """Answer ``fut`` with ``UNAVAILABLE`` if nothing did within the wait bound (a timer,
        not ``asyncio.timeout``: these coroutines may run without a Task)."""
        assert self._wait_timeout is not None
        timer = loop.call_later(self._wait_timeout, _give_up, fut)
        fut.add_done_callback(lambda _: timer.cancel())

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._reader is None or not self._open:
            raise StorageUnavailable(MSG_CLOSED)
        loop = asyncio.get_running_loop()
        try:
            if self._wait_timeout is None:
                return await loop.run_in_executor(self._reader, partial(self._run_read, fn))
            out: asyncio.Future[T] = loop.create_future()
            job = self._reader.submit(self._run_read, fn)
            job.add_done_callback(
                lambda done: _call_soon(loop, _copy_result, out, done)  # from the thread
            )
            self._bound(loop, out)
            return await out
        except StorageError:
            raise
        except (sqlite3.Error, OSError) as exc:
            raise map_error(exc) from exc

    def _run_read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._rconn is None:
            self._rconn = self._connect()
        return fn(self._rconn)

    async def durability_problems(self) -> list[str]:
        def check(conn: sqlite3.Connection) -> tuple[str, int]:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            sync = conn.execute("PRAGMA synchronous").fetchone()[0]
            return str(mode).lower(), int(sync)

        mode, sync = await self._write(check)
        problems = []
        if mode != "wal":
            problems.append(f"sqlite journal_mode is {mode}, not wal")
        if sync != SYNCHRONOUS_FULL:
            problems.append(f"sqlite synchronous is {sync}, not FULL (2)")
        return problems

    async def ping(self) -> None:
        await self._read(lambda c: c.execute("SELECT 1").fetchone())
