"""Attachment blobs (protocol.md §5.9, revision 8): opaque ciphertext stored under random
ids, written once by its upload token, read by its read token.

:class:`BlobStore` is the interface (so that an object store can be added);
:class:`FilesystemBlobStore` keeps blobs as files under ``blob_dir`` and may be shared by
several relay processes; :class:`BlobService` authorizes uploads against the destination
mailbox (send capability, attachment consent, quota) and drives the store.
"""

from __future__ import annotations

from relay.blobs.base import (
    BLOB_ID_HEX,
    TOKEN_HEX,
    BlobDownload,
    BlobMeta,
    BlobStore,
    UploadState,
    quota_key,
    token_hash,
)
from relay.blobs.errors import BlobNotFound, BlobOffsetMismatch, BlobRangeInvalid, BlobTooLarge
from relay.blobs.fs import FilesystemBlobStore
from relay.blobs.service import BlobService

__all__ = [
    "BLOB_ID_HEX",
    "TOKEN_HEX",
    "BlobDownload",
    "BlobMeta",
    "BlobNotFound",
    "BlobOffsetMismatch",
    "BlobRangeInvalid",
    "BlobService",
    "BlobStore",
    "BlobTooLarge",
    "FilesystemBlobStore",
    "UploadState",
    "quota_key",
    "token_hash",
]
