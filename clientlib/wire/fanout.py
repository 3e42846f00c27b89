"""Group fan-out helpers shared by client and relay (protocol.md §26.1-§26.2, revision 9)."""

from __future__ import annotations

import hashlib

from clientlib.wire.limits import DELEGATE_CONTEXT, ED25519_PUBLIC_KEY_SIZE, MAILBOX_ID_SIZE

__all__ = ["delegate_hash"]


def delegate_hash(sid: bytes, key: bytes) -> bytes:
    """``SHA-256(DELEGATE_CONTEXT || sid || key)``: what the owner of the ``pair`` mailbox
    ``sid`` registers among its capability hashes (``caps``) to let the Ed25519 key ``key``
    sign ``dcaps`` there. A capability hash has another label, so neither can pass for the
    other.

    Raises:
        ValueError: ``sid`` is not 16 bytes or ``key`` not 32 bytes.
    """
    if len(sid) != MAILBOX_ID_SIZE or len(key) != ED25519_PUBLIC_KEY_SIZE:
        raise ValueError("delegate_hash needs a 16-byte sid and a 32-byte key")
    return hashlib.sha256(DELEGATE_CONTEXT + sid + key).digest()
