"""Owner authentication: Ed25519 key validation, signature checks and the values challenges
and proof-of-work nonces are bound to (protocol.md §4).

Verification raises; it never returns a bool. Unknown mailboxes are verified against a fixed
dummy key so that "no such mailbox" and "bad signature" cost about the same time and give the
same error (``AUTH``).
"""

from __future__ import annotations

import hashlib
import hmac

import nacl.bindings
import nacl.exceptions
import nacl.signing

from clientlib.wire.codes import ErrorCode
from clientlib.wire.frames import OP_CREATE
from clientlib.wire.limits import ED25519_PUBLIC_KEY_SIZE, OWNER_COMMAND_CONTEXT
from relay.errors import RelayError

__all__ = [
    "DUMMY_OWNER_KEY",
    "bytes_eq",
    "challenge_binding",
    "check_challenge_request",
    "pow_binding",
    "validate_owner_key",
    "verify_owner_command",
]

# A valid, prime-order public key nobody holds the secret of (the key of seed 0x00*32 is
# public knowledge, so it must never authenticate anything: it is only verified against
# signatures that are then rejected regardless of the outcome).
DUMMY_OWNER_KEY = bytes(nacl.signing.SigningKey(bytes(32)).verify_key)


def bytes_eq(a: bytes, b: bytes) -> bool:
    """Constant-time equality of two byte strings."""
    return hmac.compare_digest(a, b)


def challenge_binding(op: str, rid: bytes | None) -> bytes:
    """The value a challenge is bound to: ``op || 0x00 || SHA-256(rid)`` (empty for create).

    Hashed so that pending challenges (HTTP challenges are kept in storage for up to
    ``challenge_ttl_s``) never hold a mailbox id: a deleted mailbox leaves no trace there.
    """
    return op.encode() + b"\x00" + (hashlib.sha256(rid).digest() if rid else b"")


def check_challenge_request(op: str, rid: bytes | None) -> None:
    """``chal`` names a mailbox exactly when ``op`` is not ``create`` (protocol.md §3.1).

    Raises:
        RelayError: ``MALFORMED`` (checked at ``chal``, not left to fail at ``own``).
    """
    if (rid is None) != (op == OP_CREATE):
        raise RelayError(ErrorCode.MALFORMED)


def pow_binding(sid: bytes) -> bytes:
    """The value a proof-of-work nonce is bound to: ``"pow" || 0x00 || SHA-256(sid)``.

    No owner operation is named ``pow``, so no owner challenge has this binding.
    """
    return b"pow\x00" + hashlib.sha256(sid).digest()


def validate_owner_key(key: bytes) -> None:
    """Reject Ed25519 public keys that are malformed, non-canonical or of small order.

    Raises:
        RelayError: ``MALFORMED`` if the key is not a canonical prime-order point.
    """
    if len(key) != ED25519_PUBLIC_KEY_SIZE or not nacl.bindings.crypto_core_ed25519_is_valid_point(
        key
    ):
        raise RelayError(ErrorCode.MALFORMED, "invalid owner key")
    # libsodium's check accepts an encoding whose y coordinate is >= p only if it
    # reduces; reject any non-canonical y explicitly (y must be < 2^255 - 19).
    y = int.from_bytes(key, "little") & ((1 << 255) - 1)
    if y >= (1 << 255) - 19:
        raise RelayError(ErrorCode.MALFORMED, "invalid owner key")


def verify_owner_command(key: bytes | None, body: bytes, signature: bytes) -> None:
    """Verify ``signature`` over ``OWNER_COMMAND_CONTEXT || body`` (the exact bytes received).

    Args:
        key: the mailbox owner key, or None when the mailbox does not exist (a dummy key is
            verified instead, and the result is rejected either way).
        body: the signed owner command exactly as received.
        signature: the 64-byte Ed25519 signature.

    Raises:
        RelayError: ``AUTH`` if the mailbox is unknown or the signature does not verify.
    """
    verify_key = nacl.signing.VerifyKey(key if key is not None else DUMMY_OWNER_KEY)
    try:
        verify_key.verify(OWNER_COMMAND_CONTEXT + body, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
        raise RelayError(ErrorCode.AUTH) from None
    if key is None:
        raise RelayError(ErrorCode.AUTH)
