"""Errors the relay puts on the wire, and the one place storage errors become wire codes.

The trees::

    RelayError(code, http_status)     an error with a documented wire code (protocol.md §6)
    ConfigError                       the configuration is invalid (never reaches a peer)

Only :class:`RelayError`, :class:`clientlib.errors.WireError` and the storage errors listed in
:data:`STORAGE_CODES` have wire codes (:func:`wire_code`); anything else is a bug, answered
with ``INTERNAL`` and logged with its traceback (never sent). Storage errors are mapped once,
at the service's boundary (:func:`storage_errors`), not where each store call is made.
Messages are fixed per code and never contain ids, keys or sizes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import wraps
from typing import ParamSpec, TypeVar

from clientlib.errors import WireError
from clientlib.wire.codes import ErrorCode
from relay.storage.errors import (
    BlobNotFound,
    BlobOffsetMismatch,
    BlobRangeInvalid,
    BlobTooLarge,
    BoundaryExceeded,
    DuplicateReport,
    MailboxNotFound,
    PowRequired,
    QuotaExceeded,
    RevealMismatch,
    StorageError,
    StorageFull,
    StorageUnavailable,
    WrongKind,
)

__all__ = [
    "HTTP_STATUS",
    "STORAGE_CODES",
    "ConfigError",
    "RelayError",
    "from_wire_error",
    "storage_boundary",
    "storage_errors",
    "wire_code",
]

_P = ParamSpec("_P")
_T = TypeVar("_T")

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
    ErrorCode.ROUTE: 403,
    ErrorCode.RKEY: 409,
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


#: The wire code of each storage error a request may meet (protocol.md §6). Others (for
#: example ``IdCollision``, ``StampMismatch``) are handled by the service and never get here.
STORAGE_CODES: Mapping[type[StorageError], ErrorCode] = {
    MailboxNotFound: ErrorCode.AUTH,
    QuotaExceeded: ErrorCode.QUOTA,
    WrongKind: ErrorCode.MALFORMED,
    BoundaryExceeded: ErrorCode.BOUNDARY,
    PowRequired: ErrorCode.POW,
    DuplicateReport: ErrorCode.DUPLICATE,
    StorageFull: ErrorCode.STORAGE_FULL,
    StorageUnavailable: ErrorCode.UNAVAILABLE,
    BlobNotFound: ErrorCode.AUTH,
    BlobOffsetMismatch: ErrorCode.MALFORMED,
    BlobRangeInvalid: ErrorCode.MALFORMED,
    BlobTooLarge: ErrorCode.TOO_LARGE,
    RevealMismatch: ErrorCode.FRANKING,
}


def wire_code(exc: BaseException) -> ErrorCode | None:
    """The wire code of ``exc``, or None if it has none (a bug: answer ``INTERNAL``)."""
    if isinstance(exc, RelayError):
        return exc.code
    if isinstance(exc, WireError):
        return ErrorCode(exc.code)
    if isinstance(exc, StorageError):
        for cls in type(exc).__mro__:
            code = STORAGE_CODES.get(cls)
            if code is not None:
                return code
    return None


def _relay_error(exc: StorageError) -> StorageError | RelayError:
    code = wire_code(exc)
    return exc if code is None else RelayError(code)


@contextmanager
def storage_errors() -> Iterator[None]:
    """Re-raise the storage errors of :data:`STORAGE_CODES` as :class:`RelayError` (others,
    and every other exception, pass through unchanged)."""
    try:
        yield
    except StorageError as exc:
        mapped = _relay_error(exc)
        if mapped is exc:
            raise
        raise mapped from None


def storage_boundary(fn: Callable[_P, Awaitable[_T]]) -> Callable[_P, Awaitable[_T]]:
    """Decorate a public coroutine of a service: the storage errors it lets out become
    :class:`RelayError` (:data:`STORAGE_CODES`); everything else passes through unchanged.

    The bound on storage waits (``storage_timeout_s``, protocol.md §6): when the service (the
    first argument) has a ``storage_bound`` in seconds, the whole coroutine is bounded by it
    and answered ``UNAVAILABLE`` beyond. It is None when the store bounds each of its own
    waits (SQLite, whose coroutines must not need a Task: ``task_free``)."""

    @wraps(fn)
    async def wrapped(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        bound: float | None = getattr(args[0], "storage_bound", None) if args else None
        try:
            if bound is None:
                return await fn(*args, **kwargs)
            async with asyncio.timeout(bound):
                return await fn(*args, **kwargs)
        except TimeoutError:
            raise RelayError(ErrorCode.UNAVAILABLE) from None
        except StorageError as exc:
            mapped = _relay_error(exc)
            if mapped is exc:
                raise
            raise mapped from None

    return wrapped
