"""Blobs as files under one directory, safe to share between relay processes
(protocol.md §5.9, "Storage").

Layout of ``blob_dir``::

    <id>.meta              fixed-size record (:data:`META`), changed in place under flock
    <id>.part              the bytes of an upload in progress
    <id>.blob              the bytes of a complete blob (renamed from .part)
    q/<quota key>/<id>.<size>   one empty marker per live blob of a destination mailbox
    .quota.lock            flock held while quota markers are counted, made or swept

Locks (``fcntl.flock``, so every process on a host, or on a network file system with
working POSIX locks, sees them):

1. the record of a blob is read and written only under an exclusive lock of its
   ``.meta`` file; whoever holds it may unlink the blob. A process that waited for the lock
   checks that the file still has a name (``st_nlink``), else the blob is gone;
2. an upload holds an exclusive lock of the ``.part`` file for as long as it writes
   (taken without waiting: a second concurrent upload of the blob is refused);
3. creating a blob (quota count and check, then its files) and sweeping leftovers run under
   ``.quota.lock``. Lock order: the quota lock before a record lock, never the reverse.

The record's ``offset`` is what the relay has acknowledged as durable: an upload writes
at it (cutting off anything a crash left beyond it), fsyncs, then moves it. Blocking file
work runs in threads (``asyncio.to_thread``); an upload holds at most one read buffer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import fcntl
import functools
import os
import struct
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from relay.blobs.base import BlobDownload, BlobMeta, UploadState, tokens_equal
from relay.storage.errors import (
    BlobNotFound,
    BlobOffsetMismatch,
    BlobRangeInvalid,
    BlobTooLarge,
    IdCollision,
    QuotaExceeded,
    StorageFull,
    StorageUnavailable,
)

__all__ = ["DEFAULT_READ_BUFFER", "META", "FilesystemBlobStore"]

#: magic, done, downloads left (0xFFFF: unlimited), size, offset, created, expires,
#: upload deadline, SHA-256(ut), SHA-256(rt), quota key: 128 bytes, big-endian.
META: Final = struct.Struct(">4sBxH5Q32s32s16s")
_MAGIC: Final = b"BRB1"
_UNLIMITED: Final = 0xFFFF
#: Bytes of an upload held before they are written (one read buffer, protocol.md §5.9).
DEFAULT_READ_BUFFER: Final = 1 << 20
#: An upload fsyncs and records its offset at least this often (resume after a crash).
DEFAULT_SYNC_EVERY: Final = 16 << 20
_FULL_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_NOT_FOUND: Final = "no such blob"
_ZERO_HASH: Final = bytes(32)


def _pack(meta: BlobMeta) -> bytes:
    left = _UNLIMITED if meta.downloads_left is None else meta.downloads_left
    return META.pack(
        _MAGIC,
        int(meta.done),
        left,
        meta.size,
        meta.offset,
        meta.created,
        meta.expires,
        meta.upload_deadline,
        meta.ut_hash,
        meta.rt_hash,
        meta.quota_key,
    )


def _unpack(data: bytes) -> BlobMeta | None:
    if len(data) != META.size:
        return None
    magic, done, left, size, offset, created, expires, deadline, ut, rt, qk = META.unpack(data)
    if magic != _MAGIC or done > 1 or offset > size:
        return None
    return BlobMeta(
        size=size,
        offset=offset,
        done=bool(done),
        created=created,
        expires=expires,
        upload_deadline=deadline,
        downloads_left=None if left == _UNLIMITED else left,
        ut_hash=ut,
        rt_hash=rt,
        quota_key=qk,
    )


@contextlib.contextmanager
def _os_errors() -> Iterator[None]:
    """OSError → StorageFull (out of space) or StorageUnavailable (anything else)."""
    try:
        yield
    except OSError as exc:
        if exc.errno in _FULL_ERRNOS:
            raise StorageFull("blob storage is out of space") from None
        raise StorageUnavailable("blob storage failed") from None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pwrite_all(fd: int, data: bytes | bytearray, pos: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, pos)
        view, pos = view[n:], pos + n


@dataclass(slots=True)
class _Upload:
    blob_id: bytes
    part_fd: int
    size: int


class FilesystemBlobStore:
    """:class:`~relay.blobs.base.BlobStore` on a local (or POSIX-locking network) file
    system; see the module docstring."""

    def __init__(
        self,
        directory: Path,
        *,
        read_buffer: int = DEFAULT_READ_BUFFER,
        sync_every: int = DEFAULT_SYNC_EVERY,
    ) -> None:
        self.directory = directory
        self._quota_dir = directory / "q"
        self._lock_path = directory / ".quota.lock"
        self._read_buffer = read_buffer
        self._sync_every = sync_every
        #: Threads for upload writes (the others use asyncio's default executor).
        self._pool = concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="blob-write")

    def __repr__(self) -> str:
        return "FilesystemBlobStore()"  # never the path: it may name the operator's layout

    # --- paths and locks -------------------------------------------------------------------

    def _path(self, blob_id: bytes, suffix: str) -> Path:
        return self.directory / f"{blob_id.hex()}.{suffix}"

    def _marker(self, meta: BlobMeta, blob_id: bytes) -> Path:
        return self._quota_dir / meta.quota_key.hex() / f"{blob_id.hex()}.{meta.size}"

    @contextlib.contextmanager
    def _quota_lock(self) -> Iterator[None]:
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _record(self, blob_id: bytes) -> Iterator[tuple[int, BlobMeta] | None]:
        """The blob's record under its exclusive lock, or None if there is none."""
        try:
            fd = os.open(self._path(blob_id, "meta"), os.O_RDWR)
        except FileNotFoundError:
            yield None
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            meta = None if os.fstat(fd).st_nlink == 0 else _unpack(os.pread(fd, META.size, 0))
            yield None if meta is None else (fd, meta)
        finally:
            os.close(fd)

    @staticmethod
    def _write_record(fd: int, meta: BlobMeta) -> None:
        _pwrite_all(fd, _pack(meta), 0)
        os.fsync(fd)

    def _delete(self, blob_id: bytes, meta: BlobMeta) -> None:
        """Unlink every file of a blob (the caller holds its record lock): the record
        first, so that nobody finds it any more, then the bytes and the quota marker."""
        for path in (
            self._path(blob_id, "meta"),
            self._path(blob_id, "blob"),
            self._path(blob_id, "part"),
            self._marker(meta, blob_id),
        ):
            path.unlink(missing_ok=True)
        _fsync_dir(self.directory)

    # --- the interface ----------------------------------------------------------------------

    async def open(self) -> None:
        def op() -> None:
            with _os_errors():
                self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
                self._quota_dir.mkdir(exist_ok=True, mode=0o700)

        await asyncio.to_thread(op)

    async def aclose(self) -> None:
        await asyncio.to_thread(self._pool.shutdown, wait=True)

    async def create(
        self, blob_id: bytes, meta: BlobMeta, *, max_blobs: int, max_bytes: int
    ) -> None:
        await asyncio.to_thread(self._create, blob_id, meta, max_blobs, max_bytes)

    def _create(self, blob_id: bytes, meta: BlobMeta, max_blobs: int, max_bytes: int) -> None:
        with _os_errors(), self._quota_lock():
            qdir = self._quota_dir / meta.quota_key.hex()
            qdir.mkdir(exist_ok=True, mode=0o700)
            n, total = self._count(qdir)
            if n + 1 > max_blobs or total + meta.size > max_bytes:
                self._reap(qdir, meta.created)
                n, total = self._count(qdir)
                if n + 1 > max_blobs or total + meta.size > max_bytes:
                    raise QuotaExceeded("blob quota exceeded")
            paths = [self._marker(meta, blob_id), self._path(blob_id, "part")]
            record = self._path(blob_id, "meta")
            if record.exists() or self._path(blob_id, "blob").exists():
                raise IdCollision("blob id already in use")
            made: list[Path] = []
            try:
                for path in paths:
                    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                    made.append(path)
                fd = os.open(record, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                made.append(record)
                try:
                    self._write_record(fd, meta)
                finally:
                    os.close(fd)
                _fsync_dir(qdir)
                _fsync_dir(self.directory)
            except FileExistsError:
                for path in made:
                    path.unlink(missing_ok=True)
                raise IdCollision("blob id already in use") from None
            except BaseException:
                for path in made:
                    path.unlink(missing_ok=True)
                raise

    @staticmethod
    def _count(qdir: Path) -> tuple[int, int]:
        n = total = 0
        for name in os.listdir(qdir):
            _, _, size = name.partition(".")
            if size.isdigit():
                n, total = n + 1, total + int(size)
        return n, total

    def _reap(self, qdir: Path, now: int) -> None:
        """Drop the expired blobs counted in ``qdir`` (the caller holds the quota lock)."""
        for name in os.listdir(qdir):
            hex_id, _, _ = name.partition(".")
            try:
                blob_id = bytes.fromhex(hex_id)
            except ValueError:
                continue
            with self._record(blob_id) as found:
                if found is None:
                    if not self._path(blob_id, "meta").exists():
                        (qdir / name).unlink(missing_ok=True)  # left by an interrupted delete
                    continue
                if _dead(found[1], now):
                    self._delete(blob_id, found[1])

    async def upload_state(self, blob_id: bytes, ut: bytes, now: int) -> UploadState:
        def op() -> UploadState:
            with _os_errors(), self._record(blob_id) as found:
                _, meta = _check_token(found, ut, "ut")
                if now >= meta.expires or (not meta.done and now >= meta.upload_deadline):
                    raise BlobNotFound(_NOT_FOUND)
                return UploadState(meta.offset, meta.done)

        return await asyncio.to_thread(op)

    async def append(
        self,
        blob_id: bytes,
        ut: bytes,
        offset: int,
        body: AsyncIterator[bytes],
        length: int | None,
        now: int,
    ) -> UploadState:
        upload = await asyncio.to_thread(self._begin, blob_id, ut, offset, length, now)
        # Two half buffers: one being written by a thread while the next fills from the
        # socket (reading and writing overlap; together at most one read buffer).
        half = max(self._read_buffer // 2, 1)
        writing: concurrent.futures.Future[None] | None = None
        buf = bytearray()
        pos = recorded = offset  # pos: bytes handed to a write; recorded: the durable offset

        async def settle() -> None:
            nonlocal writing
            if writing is not None:
                # Shielded, and ``writing`` cleared only once the write is over: a cut (the
                # handler cancelled while it waits here) must neither cancel the write nor
                # hide it from the cleanup below, which waits for it before writing what
                # followed and before the file is closed. Otherwise the half buffer in
                # flight was lost to the close while the offset counted it: a hole of zeros
                # that a resumed upload skipped (found by the client's resume test).
                await asyncio.shield(asyncio.wrap_future(writing))
                writing = None

        try:
            try:
                async for chunk in body:
                    if pos + len(buf) + len(chunk) > upload.size:
                        raise BlobTooLarge("past the blob's size")
                    buf += chunk
                    if len(buf) >= half:
                        await settle()
                        data, buf = buf, bytearray()
                        writing = self._pool.submit(self._write, upload, data, pos)
                        pos += len(data)
                        if pos - recorded >= self._sync_every and pos < upload.size:
                            await settle()
                            await self._in_pool(self._commit, upload, pos)
                            recorded = pos
                if buf:
                    await settle()
                    data, buf = buf, bytearray()
                    writing = self._pool.submit(self._write, upload, data, pos)
                    pos += len(data)
                await settle()
            except (BlobTooLarge, StorageFull):
                raise
            except BaseException:
                # A cut connection, a stalled body or a cancelled handler: keep what arrived.
                # Synchronous on purpose: the task may be cancelled, and this is rare.
                try:
                    _wait(writing)
                    writing = None
                    self._write(upload, buf, pos)
                    self._commit(upload, pos + len(buf))
                except StorageFull:
                    self._cut_back(upload, recorded)
                raise
            if pos == upload.size:
                await self._in_pool(self._complete, upload)
                return UploadState(pos, True)
            if pos != recorded:
                await self._in_pool(self._commit, upload, pos)
            return UploadState(pos, False)
        except BlobTooLarge:
            # None of this request's bytes are kept (protocol.md §5.9).
            _wait(writing, quiet=True)
            writing = None
            await asyncio.to_thread(self._cut_back, upload, offset)
            raise
        except StorageFull:
            _wait(writing, quiet=True)
            writing = None
            await asyncio.to_thread(self._cut_back, upload, recorded)
            raise
        finally:
            _wait(writing, quiet=True)  # never close the file under a running write
            os.close(upload.part_fd)  # releases the upload lock

    async def _in_pool(self, fn: Callable[..., None], *args: object) -> None:
        """Run ``fn`` on the write pool. If the caller is cancelled meanwhile (a cut), wait
        for ``fn`` anyway before re-raising: the upload's file stays open until no thread
        uses it."""
        running = self._pool.submit(fn, *args)
        try:
            await asyncio.shield(asyncio.wrap_future(running))
        except asyncio.CancelledError:
            _wait(running, quiet=True)
            raise

    def _begin(
        self, blob_id: bytes, ut: bytes, offset: int, length: int | None, now: int
    ) -> _Upload:
        with _os_errors(), self._record(blob_id) as found:
            _, meta = _check_token(found, ut, "ut")
            if meta.done or now >= meta.expires or now >= meta.upload_deadline:
                raise BlobNotFound(_NOT_FOUND)
            if offset != meta.offset:
                raise BlobOffsetMismatch("not the stored offset")
            if length is not None and offset + length > meta.size:
                raise BlobTooLarge("past the blob's size")
            try:
                fd = os.open(self._path(blob_id, "part"), os.O_WRONLY)
            except FileNotFoundError:
                raise BlobNotFound(_NOT_FOUND) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise BlobOffsetMismatch("another upload is in progress") from None
            try:
                os.ftruncate(fd, offset)  # anything past the recorded offset was never acked
            except BaseException:
                os.close(fd)
                raise
            return _Upload(blob_id=blob_id, part_fd=fd, size=meta.size)

    @staticmethod
    def _write(upload: _Upload, data: bytes | bytearray, pos: int) -> None:
        with _os_errors():
            _pwrite_all(upload.part_fd, data, pos)

    def _commit(self, upload: _Upload, pos: int) -> None:
        """fsync the bytes, then record ``pos`` as the durable offset."""
        with _os_errors():
            os.fsync(upload.part_fd)
            with self._record(upload.blob_id) as found:
                if found is None:
                    raise BlobNotFound(_NOT_FOUND)  # purged meanwhile (deadline passed)
                fd, meta = found
                if pos != meta.offset:
                    self._write_record(fd, replace(meta, offset=pos))

    def _cut_back(self, upload: _Upload, pos: int) -> None:
        """Truncate the upload to ``pos`` and record it (nothing beyond stays visible)."""
        with contextlib.suppress(OSError), self._record(upload.blob_id) as found:
            os.ftruncate(upload.part_fd, pos)
            if found is not None and found[1].offset != pos:
                self._write_record(found[0], replace(found[1], offset=pos))

    def _complete(self, upload: _Upload) -> None:
        with _os_errors():
            os.fsync(upload.part_fd)
            with self._record(upload.blob_id) as found:
                if found is None:
                    raise BlobNotFound(_NOT_FOUND)
                fd, meta = found
                os.rename(self._path(upload.blob_id, "part"), self._path(upload.blob_id, "blob"))
                _fsync_dir(self.directory)
                self._write_record(fd, replace(meta, offset=upload.size, done=True))

    async def open_download(self, blob_id: bytes, rt: bytes, start: int, now: int) -> BlobDownload:
        fd, size = await asyncio.to_thread(self._open_download, blob_id, rt, start, now)
        return BlobDownload(
            size=size,
            start=start,
            _reader=self._stream(fd, start, size),
            _release=functools.partial(os.close, fd),
        )

    def _open_download(self, blob_id: bytes, rt: bytes, start: int, now: int) -> tuple[int, int]:
        with _os_errors(), self._record(blob_id) as found:
            record, meta = _check_token(found, rt, "rt")
            if not meta.done or now >= meta.expires or meta.downloads_left == 0:
                raise BlobNotFound(_NOT_FOUND)
            if start >= meta.size:
                raise BlobRangeInvalid("range past the end")
            try:
                fd = os.open(self._path(blob_id, "blob"), os.O_RDONLY)
            except FileNotFoundError:
                raise BlobNotFound(_NOT_FOUND) from None
            try:
                if meta.downloads_left is not None:
                    left = meta.downloads_left - 1
                    if left == 0:
                        self._delete(blob_id, meta)  # the last one: gone before it streams
                    else:
                        self._write_record(record, replace(meta, downloads_left=left))
            except BaseException:
                os.close(fd)
                raise
            return fd, meta.size

    async def _stream(self, fd: int, start: int, size: int) -> AsyncIterator[bytes]:
        """The bytes of the open file ``fd`` (closed by the :class:`BlobDownload`)."""
        pos = start
        while pos < size:
            want = min(self._read_buffer, size - pos)
            with _os_errors():
                chunk = await asyncio.to_thread(os.pread, fd, want, pos)
            if not chunk:
                raise StorageUnavailable("blob shorter than recorded")
            pos += len(chunk)
            yield chunk

    async def purge(self, now: int) -> int:
        return await asyncio.to_thread(self._purge, now)

    def _purge(self, now: int) -> int:
        count = 0
        with _os_errors():
            for name in os.listdir(self.directory):
                blob_id = _id_of(name, ".meta")
                if blob_id is None:
                    continue
                with self._record(blob_id) as found:
                    if found is not None and _dead(found[1], now):
                        self._delete(blob_id, found[1])
                        count += 1
            with self._quota_lock():
                self._sweep()
        return count

    def _sweep(self) -> None:
        """Leftovers of interrupted creations and deletions (under the quota lock, so no
        creation is half-way): bytes or markers without a record, unreadable records,
        empty quota directories."""
        names = set(os.listdir(self.directory))
        for name in names:
            for suffix in (".part", ".blob", ".meta"):
                blob_id = _id_of(name, suffix)
                if blob_id is None:
                    continue
                if suffix != ".meta" and f"{blob_id.hex()}.meta" not in names:
                    (self.directory / name).unlink(missing_ok=True)
                elif suffix == ".meta":
                    with self._record(blob_id) as found:
                        if found is None and self._path(blob_id, "meta").exists():
                            for tail in ("meta", "part", "blob"):
                                self._path(blob_id, tail).unlink(missing_ok=True)
        live = {n[: -len(".meta")] for n in os.listdir(self.directory) if n.endswith(".meta")}
        for qdir in self._quota_dir.iterdir():
            for marker in qdir.iterdir():
                if marker.name.partition(".")[0] not in live:
                    marker.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                qdir.rmdir()  # only if empty

    async def usage(self, quota: bytes) -> tuple[int, int]:
        def op() -> tuple[int, int]:
            qdir = self._quota_dir / quota.hex()
            with _os_errors():
                return self._count(qdir) if qdir.is_dir() else (0, 0)

        return await asyncio.to_thread(op)


def _wait(write: concurrent.futures.Future[None] | None, *, quiet: bool = False) -> None:
    """Block until a write handed to the pool is over; re-raise its error unless ``quiet``."""
    if write is None:
        return
    try:
        write.result()
    except Exception:
        if not quiet:
            raise


def _dead(meta: BlobMeta, now: int) -> bool:
    """Expired, an upload past its deadline, or no download left."""
    return (
        now >= meta.expires
        or (not meta.done and now >= meta.upload_deadline)
        or meta.downloads_left == 0
    )


def _id_of(name: str, suffix: str) -> bytes | None:
    if not name.endswith(suffix) or len(name) != 32 + len(suffix):
        return None
    hex_id = name[:32]
    if hex_id != hex_id.lower():
        return None
    try:
        return bytes.fromhex(hex_id)
    except ValueError:
        return None


def _check_token(
    found: tuple[int, BlobMeta] | None, token: bytes, which: str
) -> tuple[int, BlobMeta]:
    """The record if ``token`` is its ``which`` token (constant time; an unknown blob
    costs the same hash and comparison)."""
    if found is None:
        tokens_equal(token, _ZERO_HASH)
        raise BlobNotFound(_NOT_FOUND)
    meta = found[1]
    if not tokens_equal(token, meta.ut_hash if which == "ut" else meta.rt_hash):
        raise BlobNotFound(_NOT_FOUND)
    return found
