"""Cryptographic building blocks of clientlib (protocol.md Part II, §10-§16).

Pure and stateless: PyNaCl for everything classical, ``cryptography`` only for ML-KEM-768,
no I/O, no clock, no randomness of its own (every generator takes an ``rng``). The stateful
protocol (handshake, ratchet, sealed sender) lives in :mod:`clientlib.session`.
"""

from __future__ import annotations

from clientlib.crypto.fingerprint import (
    identity_fingerprint,
    qr_payload,
    safety_number,
    verify_qr_payload,
)
from clientlib.crypto.franking import (
    FRANKING_COMMITMENT_SIZE,
    FRANKING_KEY_SIZE,
    MAX_ATTACHMENTS,
    franking_commit,
    franking_verify,
)
from clientlib.crypto.keys import (
    RNG,
    IdentityKeyPair,
    IdentityPublicKey,
    MLKEMKeyPair,
    MLKEMPublicKey,
    X25519KeyPair,
    X25519PublicKey,
)
from clientlib.crypto.padding import pad, padded_size, unpad
from clientlib.crypto.prekeys import PreKeyKind, PreKeyPair, SignedPreKey

__all__ = [
    "FRANKING_COMMITMENT_SIZE",
    "FRANKING_KEY_SIZE",
    "MAX_ATTACHMENTS",
    "RNG",
    "IdentityKeyPair",
    "IdentityPublicKey",
    "MLKEMKeyPair",
    "MLKEMPublicKey",
    "PreKeyKind",
    "PreKeyPair",
    "SignedPreKey",
    "X25519KeyPair",
    "X25519PublicKey",
    "franking_commit",
    "franking_verify",
    "identity_fingerprint",
    "pad",
    "padded_size",
    "qr_payload",
    "safety_number",
    "unpad",
    "verify_qr_payload",
]
