"""The errors a store raises on purpose (a leaf module: it imports nothing of the relay).

Messages never contain ids or keys. :mod:`relay.errors` maps them to wire codes.
"""

from __future__ import annotations

__all__ = [
    "BlobNotFound",
    "BlobOffsetMismatch",
    "BlobRangeInvalid",
    "BlobTooLarge",
    "BoundaryExceeded",
    "DuplicateReport",
    "IdCollision",
    "MailboxNotFound",
    "PowRequired",
    "QuotaExceeded",
    "ReportAlreadyResolved",
    "ReportNotFound",
    "RevealMismatch",
    "StampMismatch",
    "StorageError",
    "StorageFull",
    "StorageUnavailable",
    "WrongKind",
]


class StorageError(Exception):
    """Root of the errors a store raises on purpose. Messages never contain ids or keys."""


class MailboxNotFound(StorageError):
    """The mailbox does not exist (or expired, or was deleted)."""


class QuotaExceeded(StorageError):
    """The mailbox holds too many envelopes, bytes or one-time prekeys; nothing was stored."""


class WrongKind(StorageError):
    """The operation does not apply to this mailbox's kind (e.g. ``set_caps`` on a contact
    address, or a deposit to a contact address without a handle); nothing changed."""


class BoundaryExceeded(StorageError):
    """A contact request is larger than the address accepts, or references attachments the
    address does not accept; nothing was stored."""


class PowRequired(StorageError):
    """The contact address asks for more proof of work than the deposit was verified for."""


class StampMismatch(StorageError):
    """A deposit's franking stamp was computed for another mailbox kind than the mailbox's;
    nothing was stored (the caller computes the stamp for ``kind`` and retries)."""

    def __init__(self, kind: str) -> None:
        super().__init__("the franking stamp names another mailbox kind")
        self.kind = kind


class DuplicateReport(StorageError):
    """A report with this id is already stored; nothing changed."""


class ReportNotFound(StorageError):
    """No report has this id (never filed, or purged)."""


class ReportAlreadyResolved(StorageError):
    """The report was resolved before; nothing changed."""


class IdCollision(StorageError):
    """A receive id or send id chosen for a new mailbox is already in use."""


class StorageUnavailable(StorageError):
    """The backend cannot be reached or answered an error; nothing is known to be stored."""


class StorageFull(StorageError):
    """The backend is out of space; nothing was stored."""


# --- the blob store (protocol.md §5.9, relay.blobs) ---------------------------------------


class BlobNotFound(StorageError):
    """Unknown, incomplete (for a read), complete (for an upload), expired or exhausted
    blob, or a wrong token: one error for all, so that no answer tells them apart."""


class BlobOffsetMismatch(StorageError):
    """An upload's offset is not the stored one, or another upload of the blob is in
    progress; nothing changed."""


class BlobTooLarge(StorageError):
    """The bytes would go past the blob's announced size; nothing of them was kept."""


class BlobRangeInvalid(StorageError):
    """A ``Range`` start at or past the end of the blob; no download was counted."""


class RevealMismatch(StorageError):
    """A revealed report attachment is not the one under the franking commitment (its
    SHA-256 differs); nothing was kept."""
