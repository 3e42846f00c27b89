"""Safety numbers (protocol.md §16): a fingerprint of two identities, order-independent.

Per identity ``ik`` (32-byte Ed25519 public key)::

    h_0 = SHA-512(SAFETY_NUMBER_CONTEXT || ik)
    h_i = SHA-512(h_{i-1} || ik)                       for i = 1 .. ITERATIONS-1
    fp  = h_{ITERATIONS-1}[0:32]
    digits(fp) = for j in 0..5: int.from_bytes(fp[5j:5j+5], "big") mod 100000, as 5 digits

The two 30-digit blocks are ordered by their ``fp`` bytes (smaller first) and concatenated: 60
digits, shown as 12 groups of 5. The QR payload is ``0x01 || fp_low || fp_high`` (65 bytes).
Both are the same whichever side computes them.
"""

from __future__ import annotations

from typing import Final

from clientlib.crypto.kdf import SAFETY_NUMBER_CONTEXT
from clientlib.crypto.keys import IdentityPublicKey
from clientlib.crypto.primitives import ct_eq, sha512
from clientlib.errors import SafetyNumberMismatch

__all__ = [
    "QR_PAYLOAD_SIZE",
    "SAFETY_NUMBER_ITERATIONS",
    "SAFETY_NUMBER_VERSION",
    "identity_fingerprint",
    "qr_payload",
    "safety_number",
    "verify_qr_payload",
]

#: Signal's iteration count: slows a search for a second identity whose digits collide with
#: a target (about 2^99.7 work for 30 digits, times 5200 hashes).
SAFETY_NUMBER_ITERATIONS: Final = 5200
SAFETY_NUMBER_VERSION: Final = 1
QR_PAYLOAD_SIZE: Final = 65


def identity_fingerprint(identity: IdentityPublicKey) -> bytes:
    """The 32-byte per-identity fingerprint ``fp``."""
    ik = bytes(identity)
    h = sha512(SAFETY_NUMBER_CONTEXT + ik)
    for _ in range(SAFETY_NUMBER_ITERATIONS - 1):
        h = sha512(h + ik)
    return h[:32]


def _digits(fp: bytes) -> str:
    return "".join(f"{int.from_bytes(fp[i : i + 5], 'big') % 100000:05d}" for i in range(0, 30, 5))


def _ordered(a: IdentityPublicKey, b: IdentityPublicKey) -> tuple[bytes, bytes]:
    fa, fb = identity_fingerprint(a), identity_fingerprint(b)
    return (fa, fb) if fa <= fb else (fb, fa)


def safety_number(a: IdentityPublicKey, b: IdentityPublicKey) -> str:
    """The 60-digit safety number of two identities, as 12 space-separated groups of 5."""
    low, high = _ordered(a, b)
    digits = _digits(low) + _digits(high)
    return " ".join(digits[i : i + 5] for i in range(0, 60, 5))


def qr_payload(a: IdentityPublicKey, b: IdentityPublicKey) -> bytes:
    """The 65-byte scannable payload ``0x01 || fp_low || fp_high``."""
    low, high = _ordered(a, b)
    return bytes((SAFETY_NUMBER_VERSION,)) + low + high


def verify_qr_payload(payload: bytes, a: IdentityPublicKey, b: IdentityPublicKey) -> None:
    """Check a scanned payload against the two identities we believe in.

    Raises:
        SafetyNumberMismatch: the payload is malformed or names other identities.
    """
    expected = qr_payload(a, b)
    if len(payload) != QR_PAYLOAD_SIZE or not ct_eq(payload, expected):
        raise SafetyNumberMismatch("safety number does not match")
