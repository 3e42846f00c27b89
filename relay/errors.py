"""Errors the relay puts on the wire.

The tree::

    RelayError(code, http_status)     an error with a documented wire code (protocol.md §6)
    +-- ConfigError                   the configuration is invalid (never reaches a peer)

Only :class:`RelayError` and :class:`clientlib.errors.WireError` are mapped to wire errors;
anything else is a bug, answered with ``INTERNAL`` and logged with its traceback (never sent).
Messages are fixed per code and never contain ids, keys or sizes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from clientlib.errors import WireError
from clientlib.wire.codes import ErrorCode
from relay.storage.errors import (
    BoundaryExceeded,
    DuplicateReport,
    MailboxNotFound,
    PowRequired,
    QuotaExceeded,
    StorageFull,
    StorageUnavailable,
    WrongKind,
)

__all__ = ["HTTP_STATUS", "ConfigError", "RelayError", "from_wire_error"]

#: HTTP status for each wire code. Clients must read the code in the body, not the status.
HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.MALFORMED: 400,
    ErrorCode.VERSION: 400,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.AUTH: 403,
    ErrorCode.QUOTA: 429,
    ErrorCode.LIMIT: 429,
    ErrorCode.TIMEOUT: 408,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.STORAGE_FULL: 507,
    ErrorCode.INTERNAL: 500,
    ErrorCode.BOUNDARY: 403,
    ErrorCode.POW: 403,
    ErrorCode.FRANKING: 403,
    ErrorCode.EXPIRED: 410,
    ErrorCode.DUPLICATE: 409,
}


class RelayError(Exception):
    """A failure with a documented wire error code."""

    def __init__(self, code: ErrorCode, message: str | None = None) -> None:
        super().__init__(message or code.value)
        self.code = code

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]


class ConfigError(Exception):
    """The relay configuration is invalid; the message says which setting and why."""


def from_wire_error(exc: WireError) -> RelayError:
    """The wire error for a decoding failure (``MALFORMED``, ``VERSION`` or ``TOO_LARGE``)."""
    return RelayError(ErrorCode(exc.code))


@contextmanager
def storage_errors() -> Iterator[None]:
    """Map the storage errors a request may meet to their wire codes (protocol.md §6)."""
    try:
        yield
    except MailboxNotFound:
        raise RelayError(ErrorCode.AUTH) from None
    except QuotaExceeded:
        raise RelayError(ErrorCode.QUOTA) from None
    except WrongKind:
        raise RelayError(ErrorCode.MALFORMED) from None
    except BoundaryExceeded:
        raise RelayError(ErrorCode.BOUNDARY) from None
    except PowRequired:
        raise RelayError(ErrorCode.POW) from None
    except DuplicateReport:
        raise RelayError(ErrorCode.DUPLICATE) from None
    except StorageFull:
        raise RelayError(ErrorCode.STORAGE_FULL) from None
    except StorageUnavailable:
        raise RelayError(ErrorCode.UNAVAILABLE) from None
