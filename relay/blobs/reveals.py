"""Attachment plaintexts revealed for a report, streamed (protocol.md §5.9 "Reports",
revision 8): files under ``<blob_dir>/reports/<report id>/``.

A report filed with ``ath`` (the SHA-256 of each attachment plaintext, verified under the
franking commitment) leaves a manifest ``hashes`` (n times 32 bytes) in its directory; each
plaintext then arrives with ``PUT /v1/report/<report>/<i>``, is hashed while it is written
to ``<i>.part``, and is renamed to ``<i>`` only if its SHA-256 is the committed one. No
token is needed: only the bytes the commitment covers are ever kept. One upload per
attachment at a time (an exclusive ``flock`` of its ``.part``). The directory goes when
the report does (the blob purge asks the store).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import hmac
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Final

from relay.blobs.fs import _fsync_dir, _os_errors, _pwrite_all
from relay.storage.errors import BlobNotFound, BlobTooLarge, RevealMismatch

__all__ = ["FilesystemReveals", "Revealed"]

_MANIFEST: Final = "hashes"
_HASH: Final = 32
_BUFFER: Final = 1 << 20
_NOT_FOUND: Final = "no such report attachment"

#: Per committed attachment: its SHA-256 and, once revealed, its size (None before).
Revealed = list[tuple[bytes, int | None]]


class FilesystemReveals:
    """The revealed attachments of reports, as files; see the module docstring."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def __repr__(self) -> str:
        return "FilesystemReveals()"

    def _dir(self, report_id: bytes) -> Path:
        return self.directory / report_id.hex()

    async def expect(self, report_id: bytes, hashes: Sequence[bytes]) -> bool:
        """Write the manifest of a report filed with ``ath`` (before the report is stored).

        Returns:
            False if the report already has one (a duplicate: nothing changed), else True.
        """

        def op() -> bool:
            with _os_errors():
                self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
                where = self._dir(report_id)
                try:
                    where.mkdir(mode=0o700)
                except FileExistsError:
                    return False
                tmp = where / f"{_MANIFEST}.tmp"
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    _pwrite_all(fd, b"".join(hashes), 0)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.rename(tmp, where / _MANIFEST)
                _fsync_dir(where)
                _fsync_dir(self.directory)
                return True

        return await asyncio.to_thread(op)

    async def forget(self, report_id: bytes) -> None:
        """Remove a report's directory (its report was not stored, or is gone)."""
        await asyncio.to_thread(shutil.rmtree, self._dir(report_id), True)

    def _manifest(self, report_id: bytes) -> list[bytes] | None:
        try:
            data = (self._dir(report_id) / _MANIFEST).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return [data[i : i + _HASH] for i in range(0, len(data) - len(data) % _HASH, _HASH)]

    async def state(self, report_id: bytes) -> Revealed | None:
        """The committed hashes of a report filed with ``ath`` and what was revealed of
        them, or None (a report with inline attachments, or none)."""

        def op() -> Revealed | None:
            with _os_errors():
                hashes = self._manifest(report_id)
                if hashes is None:
                    return None
                out: Revealed = []
                for i, h in enumerate(hashes):
                    try:
                        out.append((h, (self._dir(report_id) / str(i)).stat().st_size))
                    except FileNotFoundError:
                        out.append((h, None))
                return out

        return await asyncio.to_thread(op)

    def path(self, report_id: bytes, index: int) -> Path | None:
        """The file of a revealed attachment, or None."""
        where = self._dir(report_id) / str(index)
        return where if where.is_file() else None

    async def reveal(
        self,
        report_id: bytes,
        index: int,
        body: AsyncIterator[bytes],
        length: int | None,
        max_bytes: int,
    ) -> int:
        """Receive attachment ``index`` of a report; returns its size once durably stored.

        Raises:
            BlobNotFound: no such report or attachment, revealed already, or another upload
                of it in progress.
            BlobTooLarge: above ``max_bytes`` (announced or found while receiving).
            RevealMismatch: its SHA-256 is not the committed hash; nothing kept.
        """
        fd, expected, part = await asyncio.to_thread(self._begin, report_id, index)
        digest = hashlib.sha256()
        size = 0
        kept = False
        try:
            if length is not None and length > max_bytes:
                raise BlobTooLarge("past the blob limit")
            buf = bytearray()
            async for chunk in body:
                if size + len(buf) + len(chunk) > max_bytes:
                    raise BlobTooLarge("past the blob limit")
                buf += chunk
                if len(buf) >= _BUFFER:
                    data, buf = buf, bytearray()
                    await asyncio.to_thread(self._write, fd, data, size)
                    digest.update(data)
                    size += len(data)
            if buf:
                await asyncio.to_thread(self._write, fd, buf, size)
                digest.update(buf)
                size += len(buf)
            if not hmac.compare_digest(digest.digest(), expected):
                raise RevealMismatch("not the committed attachment")
            await asyncio.to_thread(self._finish, fd, part, report_id, index)
            kept = True
            return size
        finally:
            if not kept:
                with contextlib.suppress(OSError):
                    part.unlink()
            os.close(fd)

    def _begin(self, report_id: bytes, index: int) -> tuple[int, bytes, Path]:
        with _os_errors():
            hashes = self._manifest(report_id)
            if hashes is None or not 0 <= index < len(hashes):
                raise BlobNotFound(_NOT_FOUND)
            where = self._dir(report_id)
            if (where / str(index)).exists():
                raise BlobNotFound(_NOT_FOUND)  # revealed already: it cannot change
            part = where / f"{index}.part"
            fd = os.open(part, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.ftruncate(fd, 0)
            except BlockingIOError:
                os.close(fd)
                raise BlobNotFound(_NOT_FOUND) from None
            except BaseException:
                os.close(fd)
                raise
            return fd, hashes[index], part

    @staticmethod
    def _write(fd: int, data: bytes | bytearray, pos: int) -> None:
        with _os_errors():
            _pwrite_all(fd, data, pos)

    def _finish(self, fd: int, part: Path, report_id: bytes, index: int) -> None:
        with _os_errors():
            os.fsync(fd)
            os.rename(part, self._dir(report_id) / str(index))
            _fsync_dir(self._dir(report_id))

    async def purge(self, live: Callable[[bytes], Awaitable[bool]]) -> int:
        """Remove the directories of reports that are gone; returns how many."""
        try:
            names = await asyncio.to_thread(os.listdir, self.directory)
        except FileNotFoundError:
            return 0
        count = 0
        for name in names:
            try:
                report_id = bytes.fromhex(name)
            except ValueError:
                continue
            if len(report_id) == 16 and not await live(report_id):
                await self.forget(report_id)
                count += 1
        return count
