"""The errors a blob store raises on purpose. They live in the leaf module
:mod:`relay.storage.errors` (with ``QuotaExceeded``, ``IdCollision``, ``StorageFull`` and
``StorageUnavailable``, which a blob store raises too), so that :mod:`relay.errors` maps
them without importing this package."""

from __future__ import annotations

from relay.storage.errors import BlobNotFound, BlobOffsetMismatch, BlobRangeInvalid, BlobTooLarge

__all__ = ["BlobNotFound", "BlobOffsetMismatch", "BlobRangeInvalid", "BlobTooLarge"]
