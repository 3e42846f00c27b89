"""The relay's one owner-operation table and its one storage-error mapping (issue 10 item 3)."""

from __future__ import annotations

import asyncio

import pytest

from clientlib.errors import WireError
from clientlib.wire.codes import ErrorCode
from clientlib.wire.frames import OWNER_OPS
from relay.errors import STORAGE_CODES, RelayError, storage_boundary, wire_code
from relay.service import BOTH, HTTP_ONLY, OWNER_OPERATIONS, SOCKET_ONLY, Touch
from relay.storage.base import (
    BoundaryExceeded,
    DuplicateReport,
    IdCollision,
    MailboxNotFound,
    PowRequired,
    QuotaExceeded,
    StorageError,
    StorageFull,
    StorageUnavailable,
    WrongKind,
)
from relay.storage.errors import (
    BlobNotFound,
    BlobOffsetMismatch,
    BlobRangeInvalid,
    BlobTooLarge,
    RevealMismatch,
)


def test_every_owner_operation_has_one_rule() -> None:
    assert sorted(cls.OP for cls in OWNER_OPERATIONS) == sorted(OWNER_OPS)
    by_op = {cls.OP: rule for cls, rule in OWNER_OPERATIONS.items()}
    assert by_op["sub"].transports == SOCKET_ONLY  # pushes need a socket
    assert by_op["fetch"].transports == HTTP_ONLY  # a socket subscribes instead
    assert all(r.transports == BOTH for op, r in by_op.items() if op not in ("sub", "fetch"))
    # create and delete are not activity of a (then) existing mailbox; info reports today's.
    assert by_op["create"].touch is by_op["delete"].touch is Touch.NEVER
    assert by_op["info"].touch is by_op["sub"].touch is Touch.BEFORE


def test_storage_errors_map_to_their_documented_codes() -> None:
    expected = {
        MailboxNotFound: ErrorCode.AUTH,  # unknown mailbox and bad credential look the same
        QuotaExceeded: ErrorCode.QUOTA,
        WrongKind: ErrorCode.MALFORMED,
        BoundaryExceeded: ErrorCode.BOUNDARY,
        PowRequired: ErrorCode.POW,
        DuplicateReport: ErrorCode.DUPLICATE,
        StorageFull: ErrorCode.STORAGE_FULL,
        StorageUnavailable: ErrorCode.UNAVAILABLE,
        # the blob store (protocol.md §5.9): unknown, expired, exhausted and wrong token alike
        BlobNotFound: ErrorCode.AUTH,
        BlobOffsetMismatch: ErrorCode.MALFORMED,
        BlobRangeInvalid: ErrorCode.MALFORMED,
        BlobTooLarge: ErrorCode.TOO_LARGE,
        RevealMismatch: ErrorCode.FRANKING,  # a revealed attachment that is not the committed one
    }
    assert dict(STORAGE_CODES) == expected
    for cls, code in expected.items():
        assert wire_code(cls("x")) is code
    assert wire_code(RelayError(ErrorCode.LIMIT)) is ErrorCode.LIMIT
    assert wire_code(WireError("bad")) is ErrorCode.MALFORMED
    assert wire_code(IdCollision("x")) is None  # handled by the service, never a wire error
    assert wire_code(ValueError("bug")) is None


def test_the_storage_boundary_maps_only_storage_errors() -> None:
    raised: list[BaseException] = [StorageFull("disk"), IdCollision("x"), KeyError("bug")]

    @storage_boundary
    async def op(i: int) -> int:
        raise raised[i]

    with pytest.raises(RelayError) as info:
        asyncio.run(op(0))
    assert info.value.code is ErrorCode.STORAGE_FULL
    assert info.value.__cause__ is None and info.value.__suppress_context__
    with pytest.raises(StorageError):  # an unmapped storage error passes unchanged
        asyncio.run(op(1))
    with pytest.raises(KeyError):
        asyncio.run(op(2))
