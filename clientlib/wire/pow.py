"""Proof of work for contact requests and send-capability hashes (protocol.md §4.8, §4.9).

Pure: standard library ``hashlib`` only, so that the relay (which verifies) and clients (which
solve and register) share one definition of every byte hashed.

Proof of work::

    digest = SHA-256("blindrelay/v1/pow" || 0x00 || sid || nonce || eid || u64be(counter))

is valid for a difficulty of ``bits`` when it starts with at least ``bits`` zero bits. The
relay issues ``nonce`` (single use, short-lived) for one address ``sid``; the envelope id
``eid`` binds the work to one request. Solving takes about ``2**bits`` hashes; verifying one.

Send capabilities::

    h = SHA-256("blindrelay/v1/cap" || 0x00 || sid || cap)

The owner registers ``h`` for its mailbox ``sid``; a sender presents ``cap``. Because ``sid``
is hashed in, a capability is bound to its mailbox.

Recall (revision 15)::

    rc = SHA-256("blindrelay/v1/recall" || 0x00 || rs)

A deposit carries ``rc``; whoever presents ``rs`` may delete that envelope while it is
still stored (protocol.md §5.10).
"""

from __future__ import annotations

import hashlib
from typing import Final

from clientlib.wire.limits import (
    CAPABILITY_CONTEXT,
    CAPABILITY_SIZE,
    ENVELOPE_ID_SIZE,
    MAILBOX_ID_SIZE,
    MAX_POW_BITS,
    POW_CONTEXT,
    POW_NONCE_SIZE,
    RECALL_CONTEXT,
    RECALL_SECRET_SIZE,
)

__all__ = [
    "capability_hash",
    "leading_zero_bits",
    "pow_digest",
    "pow_valid",
    "recall_hash",
    "solve",
]

_U64 = 2**64


def capability_hash(sid: bytes, cap: bytes) -> bytes:
    """The 32-byte hash of send capability ``cap`` for the mailbox with send id ``sid``.

    Raises:
        ValueError: ``sid`` is not 16 bytes or ``cap`` not 32 bytes.
    """
    if len(sid) != MAILBOX_ID_SIZE or len(cap) != CAPABILITY_SIZE:
        raise ValueError("capability_hash needs a 16-byte sid and a 32-byte capability")
    return hashlib.sha256(CAPABILITY_CONTEXT + sid + cap).digest()


def recall_hash(rs: bytes) -> bytes:
    """The recall hash ``rc`` a deposit carries for the recall secret ``rs`` (protocol.md
    §5.10, revision 15): ``SHA-256("blindrelay/v1/recall" || 0x00 || rs)``.

    Raises:
        ValueError: ``rs`` is not 32 bytes.
    """
    if len(rs) != RECALL_SECRET_SIZE:
        raise ValueError("recall_hash needs a 32-byte recall secret")
    return hashlib.sha256(RECALL_CONTEXT + rs).digest()


#: Label of the attachment capability hash (protocol.md §4.8, revision 8).
ATTACHMENT_CAPABILITY_CONTEXT: Final = b"blindrelay/v1/cap-att\x00"


def attachment_capability_hash(sid: bytes, cap: bytes) -> bytes:
    """The hash an owner registers (beside :func:`capability_hash`) to let the holder of
    ``cap`` deposit envelopes that reference attachments and upload blobs for the mailbox
    with send id ``sid`` (protocol.md §4.8, revision 8). Unregistered: "media off".

    Raises:
        ValueError: ``sid`` is not 16 bytes or ``cap`` not 32 bytes.
    """
    if len(sid) != MAILBOX_ID_SIZE or len(cap) != CAPABILITY_SIZE:
        raise ValueError("attachment_capability_hash needs a 16-byte sid and a 32-byte capability")
    return hashlib.sha256(ATTACHMENT_CAPABILITY_CONTEXT + sid + cap).digest()


def _prefix(sid: bytes, nonce: bytes, eid: bytes) -> bytes:
    if len(sid) != MAILBOX_ID_SIZE or len(nonce) != POW_NONCE_SIZE or len(eid) != ENVELOPE_ID_SIZE:
        raise ValueError("proof of work needs a 16-byte sid, nonce and eid")
    return POW_CONTEXT + sid + nonce + eid


def pow_digest(sid: bytes, nonce: bytes, eid: bytes, counter: int) -> bytes:
    """The SHA-256 digest a proof of work is judged by (see the module docstring).

    Raises:
        ValueError: a length is wrong or ``counter`` is outside ``0..2**64-1``.
    """
    if not 0 <= counter < _U64:
        raise ValueError("the counter must fit in 64 unsigned bits")
    return hashlib.sha256(_prefix(sid, nonce, eid) + counter.to_bytes(8, "big")).digest()


def leading_zero_bits(digest: bytes) -> int:
    """The number of leading zero bits of ``digest`` (``8 * len(digest)`` if all zero)."""
    return len(digest) * 8 - int.from_bytes(digest, "big").bit_length()


def pow_valid(sid: bytes, nonce: bytes, eid: bytes, counter: int, bits: int) -> bool:
    """Whether ``counter`` solves the challenge at difficulty ``bits``."""
    return leading_zero_bits(pow_digest(sid, nonce, eid, counter)) >= bits


def solve(sid: bytes, nonce: bytes, eid: bytes, bits: int) -> int:
    """Find the smallest counter whose digest has at least ``bits`` leading zero bits.

    CPU-bound (about ``2**bits`` hashes): run it in a thread (``asyncio.to_thread``).

    Raises:
        ValueError: a length is wrong or ``bits`` is outside ``0..32``.
    """
    if not 0 <= bits <= MAX_POW_BITS:
        raise ValueError(f"bits must be within 0..{MAX_POW_BITS}")
    base = hashlib.sha256(_prefix(sid, nonce, eid))
    # A digest has >= bits leading zero bits iff, read as an integer, it is below 2**(256-bits).
    bound = 1 << (256 - bits)
    counter = 0
    while True:
        h = base.copy()
        h.update(counter.to_bytes(8, "big"))
        if int.from_bytes(h.digest(), "big") < bound:
            return counter
        counter += 1
