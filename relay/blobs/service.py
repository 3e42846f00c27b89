"""Authorization and lifetime of blobs (protocol.md §5.9): a blob is created for a
destination mailbox, with the credential a deposit to it needs, and only if that mailbox
accepts attachments from this sender; the store does the rest.

No aiohttp here (the routes are :mod:`relay.http.blobs`). Storage errors become wire errors
at this service's public coroutines (:func:`relay.errors.storage_boundary`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from clientlib.wire.client_frames import CreateBlob
from clientlib.wire.codes import ErrorCode
from clientlib.wire.limits import KIND_ADDRESS, KIND_PAIRWISE
from clientlib.wire.pow import attachment_capability_hash, capability_hash
from clientlib.wire.relay_frames import BlobCreated, BlobOffset
from relay.blobs.base import (
    BLOB_ID_SIZE,
    TOKEN_SIZE,
    BlobDownload,
    BlobMeta,
    BlobStore,
    quota_key,
    token_hash,
)
from relay.blobs.reveals import FilesystemReveals
from relay.config import RelayConfig
from relay.errors import RelayError, storage_boundary
from relay.metrics import Metrics
from relay.storage.base import EnvelopeStore
from relay.storage.errors import IdCollision

__all__ = ["BlobService"]


class BlobService:
    """Blob uploads and downloads, for every relay process sharing ``store``."""

    def __init__(
        self,
        store: BlobStore,
        mailboxes: EnvelopeStore,
        config: RelayConfig,
        metrics: Metrics,
        *,
        now: Callable[[], int],
        rng: Callable[[int], bytes],
    ) -> None:
        self.store = store
        #: Attachments revealed for reports filed by hash (``<blob_dir>/reports``).
        self.reveals = FilesystemReveals(config.resolved_blob_dir() / "reports")
        self._mailboxes = mailboxes
        self._config = config
        self._metrics = metrics
        self._now = now
        self._rng = rng

    @storage_boundary
    async def open(self) -> None:
        await self.store.open()

    async def aclose(self) -> None:
        await self.store.aclose()

    @storage_boundary
    async def create(self, frame: CreateBlob) -> BlobCreated:
        """Start an upload for the mailbox ``frame.sid`` (protocol.md §5.9, steps 1-4).

        Raises:
            RelayError: ``TOO_LARGE``, ``AUTH``, ``BOUNDARY``, ``QUOTA``, ``UNAVAILABLE``,
                ``STORAGE_FULL``.
        """
        cfg, now = self._config, self._now()
        if frame.size > cfg.max_blob_bytes:
            raise RelayError(ErrorCode.TOO_LARGE)
        # Hashed whatever the mailbox, as for a deposit (no oracle by timing).
        cap_hash = capability_hash(frame.sid, frame.cap) if frame.cap is not None else None
        found = await self._mailboxes.resolve_online(frame.sid, cap_hash, now)
        if found is None:
            raise RelayError(ErrorCode.AUTH)  # unknown, suspended, or (pair) no capability
        kind = found[1]
        if kind == KIND_PAIRWISE:
            assert frame.cap is not None  # resolve_online refuses a pair mailbox without
            att_hash = attachment_capability_hash(frame.sid, frame.cap)
            if await self._mailboxes.resolve_online(frame.sid, att_hash, now) is None:
                self._metrics.inc("blobs", "refused")
                raise RelayError(ErrorCode.BOUNDARY)  # media off for this contact
        elif kind == KIND_ADDRESS:
            bnd = await self._mailboxes.get_boundaries(frame.sid, now)
            if bnd is None:
                raise RelayError(ErrorCode.AUTH)
            if frame.hdl is None or bnd[1] is None or not bnd[1].att:
                self._metrics.inc("blobs", "refused")
                raise RelayError(ErrorCode.BOUNDARY)
        ttl = cfg.envelope_ttl_s if frame.ttl is None else min(frame.ttl, cfg.envelope_ttl_s)
        expires = now + ttl
        for _ in range(4):
            blob_id, ut, rt = self._rng(BLOB_ID_SIZE), self._rng(TOKEN_SIZE), self._rng(TOKEN_SIZE)
            meta = BlobMeta(
                size=frame.size,
                offset=0,
                done=False,
                created=now,
                expires=expires,
                upload_deadline=min(now + cfg.blob_upload_ttl_s, expires),
                downloads_left=frame.dl,
                ut_hash=token_hash(ut),
                rt_hash=token_hash(rt),
                quota_key=quota_key(frame.sid),
            )
            try:
                await self.store.create(
                    blob_id,
                    meta,
                    max_blobs=cfg.mailbox_max_blobs,
                    max_bytes=cfg.mailbox_max_blob_bytes,
                )
            except IdCollision:
                continue
            self._metrics.inc("blobs", "created")
            return BlobCreated(id=frame.id, blob=blob_id, ut=ut, rt=rt, exp=expires)
        raise RelayError(ErrorCode.INTERNAL)  # four 128-bit collisions: the rng is broken

    @storage_boundary
    async def upload_state(self, blob_id: bytes, ut: bytes) -> BlobOffset:
        """Where to resume. Raises: RelayError ``AUTH``, ``UNAVAILABLE``."""
        state = await self.store.upload_state(blob_id, ut, self._now())
        return BlobOffset(off=state.offset, done=int(state.done))

    @storage_boundary
    async def upload(
        self,
        blob_id: bytes,
        ut: bytes,
        offset: int,
        body: AsyncIterator[bytes],
        length: int | None,
    ) -> BlobOffset:
        """Append ``body`` at ``offset``; returns once it is durably stored.

        Raises:
            RelayError: ``AUTH``, ``MALFORMED`` (not the stored offset), ``TOO_LARGE``,
                ``STORAGE_FULL``, ``UNAVAILABLE``, or whatever ``body`` raises
                (``TIMEOUT``), the bytes before it kept.
        """
        state = await self.store.append(blob_id, ut, offset, body, length, self._now())
        if state.done:
            self._metrics.inc("blobs", "completed")
        return BlobOffset(off=state.offset, done=int(state.done))

    @storage_boundary
    async def download(self, blob_id: bytes, rt: bytes, start: int) -> BlobDownload:
        """Open a complete blob from byte ``start``, counting one download.

        Raises:
            RelayError: ``AUTH`` (unknown, incomplete, expired, exhausted, wrong token),
                ``MALFORMED`` (``start`` past the end), ``UNAVAILABLE``.
        """
        opened = await self.store.open_download(blob_id, rt, start, self._now())
        self._metrics.inc("blobs", "downloaded")
        return opened

    @storage_boundary
    async def reveal(
        self, report_id: bytes, index: int, body: AsyncIterator[bytes], length: int | None
    ) -> BlobOffset:
        """Receive attachment ``index`` of a report filed by hash; ``boff`` with its size
        and ``done`` = 1 once it is verified and durable.

        Raises:
            RelayError: ``AUTH`` (no such report or attachment, revealed already),
                ``FRANKING`` (not the committed bytes), ``TOO_LARGE`` (above
                ``max_blob_bytes``), ``STORAGE_FULL``, ``UNAVAILABLE``, ``TIMEOUT``.
        """
        size = await self.reveals.reveal(
            report_id, index, body, length, self._config.max_blob_bytes
        )
        self._metrics.inc("blobs", "revealed")
        return BlobOffset(off=size, done=1)

    async def purge(self) -> int:
        """Delete expired blobs and unfinished uploads past their deadline, and the
        revealed attachments of reports that are gone.

        Raises:
            StorageError: unmapped (the purge loop logs an outage and carries on).
        """
        count = await self.store.purge(self._now())
        if count:
            self._metrics.inc("blobs", "purged", amount=count)

        async def live(report_id: bytes) -> bool:
            return await self._mailboxes.get_report(report_id) is not None

        await self.reveals.purge(live)
        return count
