"""The blob store interface and its records (protocol.md §5.9).

A store keeps, per blob, its bytes and a small metadata record (:class:`BlobMeta`): size,
bytes durably stored, state, expiry, upload deadline, downloads left, SHA-256 of both
tokens and the quota key of the destination mailbox. It never sees a token, a send id or
a mailbox: the caller hashes the tokens (:func:`token_hash`) and derives the quota key
(:func:`quota_key`).

Every method may raise :class:`~relay.storage.errors.StorageFull` or
:class:`~relay.storage.errors.StorageUnavailable` in addition to the errors listed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Final, Protocol

__all__ = [
    "BLOB_ID_HEX",
    "BLOB_ID_SIZE",
    "QUOTA_CONTEXT",
    "TOKEN_HEX",
    "TOKEN_SIZE",
    "BlobDownload",
    "BlobMeta",
    "BlobStore",
    "UploadState",
    "quota_key",
    "token_hash",
    "tokens_equal",
]

BLOB_ID_SIZE: Final = 16
TOKEN_SIZE: Final = 32
#: Lengths of the hex forms on the wire (HTTP path and headers).
BLOB_ID_HEX: Final = 2 * BLOB_ID_SIZE
TOKEN_HEX: Final = 2 * TOKEN_SIZE
#: Label of the quota key (protocol.md §5.9).
QUOTA_CONTEXT: Final = b"blindrelay/v1/blob-quota\x00"


def quota_key(sid: bytes) -> bytes:
    """``SHA-256("blindrelay/v1/blob-quota" || 0x00 || sid)[0:16]``: the key a blob is
    counted under against its destination mailbox's quota (the send id itself is never
    stored with a blob)."""
    return hashlib.sha256(QUOTA_CONTEXT + sid).digest()[:16]


def token_hash(token: bytes) -> bytes:
    """The SHA-256 of a token, as the store keeps it (a stolen blob directory yields no
    token)."""
    return hashlib.sha256(token).digest()


def tokens_equal(presented: bytes, stored_hash: bytes) -> bool:
    """Whether ``presented`` hashes to ``stored_hash``, compared in constant time."""
    return hmac.compare_digest(token_hash(presented), stored_hash)


@dataclass(frozen=True, slots=True)
class BlobMeta:
    """The metadata record of one blob (times in seconds since the epoch).

    ``downloads_left`` None: unlimited until expiry.
    """

    size: int
    offset: int
    done: bool
    created: int
    expires: int
    upload_deadline: int
    downloads_left: int | None
    ut_hash: bytes
    rt_hash: bytes
    quota_key: bytes


@dataclass(frozen=True, slots=True)
class UploadState:
    """``offset`` bytes are durably stored; ``done`` once all ``size`` are and the blob
    can be downloaded."""

    offset: int
    done: bool


@dataclass(slots=True)
class BlobDownload:
    """An opened blob to stream: ``chunks()`` yields bytes ``start..size-1`` read from the
    open file (its directory entry may already be gone: the last download of a limited
    blob unlinks it before streaming). Always close it (``aclose``), streamed or not: that
    releases the file."""

    size: int
    start: int
    _reader: AsyncIterator[bytes]
    _release: Callable[[], None]

    def chunks(self) -> AsyncIterator[bytes]:
        return self._reader

    async def aclose(self) -> None:
        close = getattr(self._reader, "aclose", None)
        try:
            if close is not None:
                await close()
        finally:
            release, self._release = self._release, _nothing
            release()


def _nothing() -> None:
    return None


class BlobStore(Protocol):
    """Where blob bytes and records live. Implementations: :class:`~relay.blobs.fs.
    FilesystemBlobStore` (files under a directory several processes may share)."""

    async def open(self) -> None:
        """Prepare the store (create its directory). Raises: StorageUnavailable."""

    async def aclose(self) -> None:
        """Release the store's threads (after the last request)."""

    async def create(
        self, blob_id: bytes, meta: BlobMeta, *, max_blobs: int, max_bytes: int
    ) -> None:
        """Create an empty upload described by ``meta`` (``offset`` 0, not ``done``).

        Counts it under ``meta.quota_key`` atomically with the check: the blobs live under
        that key (expired ones are dropped first) must number fewer than ``max_blobs`` and
        leave room for ``meta.size`` bytes within ``max_bytes``.

        Raises:
            QuotaExceeded: over either quota; nothing created.
            IdCollision: ``blob_id`` is in use.
        """

    async def upload_state(self, blob_id: bytes, ut: bytes, now: int) -> UploadState:
        """Where an upload stands (where to resume).

        Raises:
            BlobNotFound: unknown, expired or past its upload deadline, or a wrong ``ut``
                (a complete blob answers its state: ``done``).
        """

    async def append(
        self,
        blob_id: bytes,
        ut: bytes,
        offset: int,
        body: AsyncIterator[bytes],
        length: int | None,
        now: int,
    ) -> UploadState:
        """Append the bytes of ``body`` at ``offset``, never holding more than one read
        buffer of them; returns once they are durably stored. The bytes that reach the
        size complete the blob (fsync, rename into place, fsync of the directory).

        ``length``: how many bytes ``body`` announces (a ``Content-Length``), checked
        before anything is read. If ``body`` raises (a cut connection, a stall), the bytes
        received before are kept and the error is re-raised.

        Raises:
            BlobNotFound: unknown, complete, expired or past its upload deadline, or a
                wrong ``ut``.
            BlobOffsetMismatch: ``offset`` is not the stored offset, or another upload of
                this blob is in progress; nothing changed.
            BlobTooLarge: the bytes would go past the size; none of this call's bytes kept.
            StorageFull: out of space; the stored offset is left where it was recorded.
        """

    async def open_download(self, blob_id: bytes, rt: bytes, start: int, now: int) -> BlobDownload:
        """Open a complete blob for reading from byte ``start``, counting one download.
        The download that uses the last allowed one unlinks the blob before returning.

        Raises:
            BlobNotFound: unknown, incomplete, expired, exhausted, or a wrong ``rt``.
            BlobRangeInvalid: ``start`` ≥ the size (nothing counted).
        """

    async def purge(self, now: int) -> int:
        """Delete expired blobs and uploads past their deadline (and leftovers of
        interrupted creations); returns how many blobs went."""

    async def usage(self, quota: bytes) -> tuple[int, int]:
        """``(blobs, bytes)`` counted under ``quota`` (tests, operators)."""
