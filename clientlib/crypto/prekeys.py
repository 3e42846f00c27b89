"""Signed prekeys (protocol.md §10.5): X25519 and ML-KEM-768, signed, one-time, last-resort.

Every prekey, one-time keys included, is signed on its own by the identity key, so that a relay
which assembles bundles from stored parts cannot substitute any key, nor present a one-time key
as a last-resort key or the other way round (the kind is under the signature).

Public record (``SignedPreKey.to_bytes``)::

    version(1)=0x01 | kind(1) | key_id(4, big-endian) | public | signature(64)

with ``signature = Ed25519(IK, PREKEY_SIGNATURE_CONTEXT || version || kind || key_id || public)``
and ``public`` 32 bytes (X25519 kinds) or 1184 bytes (ML-KEM-768 kinds).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final, final

from clientlib.crypto.kdf import PREKEY_SIGNATURE_CONTEXT
from clientlib.crypto.keys import (
    MLKEM768_PUBLIC_KEY_SIZE,
    MLKEM768_SEED_SIZE,
    RNG,
    IdentityKeyPair,
    IdentityPublicKey,
    MLKEMKeyPair,
    MLKEMPublicKey,
    X25519KeyPair,
    X25519PublicKey,
    _draw,
    _Secret,
)
from clientlib.crypto.primitives import ED25519_SIGNATURE_SIZE, X25519_KEY_SIZE
from clientlib.errors import DecryptionError, KeyValidationError

__all__ = [
    "MAX_PREKEY_ID",
    "PREKEY_RECORD_VERSION",
    "PreKeyKind",
    "PreKeyPair",
    "SignedPreKey",
]

PREKEY_RECORD_VERSION: Final = 1
#: Key ids are unsigned 32-bit integers chosen by the owner (0 is allowed).
MAX_PREKEY_ID: Final = 2**32 - 1


class PreKeyKind(IntEnum):
    """What a prekey is for; byte 1 of every prekey record."""

    #: The medium-term X25519 signed prekey (SPK); also the X25519 last-resort key.
    X25519_SIGNED = 0x01
    #: A one-time X25519 prekey (OPK), deleted after one use.
    X25519_ONE_TIME = 0x02
    #: The ML-KEM-768 last-resort prekey, used when no one-time ML-KEM key is left.
    MLKEM_LAST_RESORT = 0x03
    #: A one-time ML-KEM-768 prekey, deleted after one use.
    MLKEM_ONE_TIME = 0x04

    @property
    def is_kem(self) -> bool:
        return self in (PreKeyKind.MLKEM_LAST_RESORT, PreKeyKind.MLKEM_ONE_TIME)

    @property
    def is_one_time(self) -> bool:
        return self in (PreKeyKind.X25519_ONE_TIME, PreKeyKind.MLKEM_ONE_TIME)

    @property
    def public_size(self) -> int:
        return MLKEM768_PUBLIC_KEY_SIZE if self.is_kem else X25519_KEY_SIZE

    @property
    def record_size(self) -> int:
        return 6 + self.public_size + ED25519_SIGNATURE_SIZE


def _signed_part(kind: PreKeyKind, key_id: int, public: bytes) -> bytes:
    return bytes((PREKEY_RECORD_VERSION, kind)) + struct.pack(">I", key_id) + public


@dataclass(frozen=True, slots=True)
class SignedPreKey:
    """A verified public prekey record.

    Attributes:
        kind: the prekey kind (under the signature).
        key_id: the owner's id for the key.
        public: the validated public key.
        signature: Ed25519 signature by the owner's identity key.
        raw: the exact record bytes.
    """

    kind: PreKeyKind
    key_id: int
    public: X25519PublicKey | MLKEMPublicKey
    signature: bytes
    raw: bytes

    @classmethod
    def parse(cls, data: bytes, identity: IdentityPublicKey) -> SignedPreKey:
        """Parse and verify one record against its owner's identity key.

        Raises:
            KeyValidationError: malformed record, unknown version or kind, bad public key, or
                a signature that does not verify.
        """
        if len(data) < 6 or data[0] != PREKEY_RECORD_VERSION:
            raise KeyValidationError("prekey record: bad length or version")
        try:
            kind = PreKeyKind(data[1])
        except ValueError:
            raise KeyValidationError("prekey record: unknown kind") from None
        if len(data) != kind.record_size:
            raise KeyValidationError("prekey record: bad length")
        (key_id,) = struct.unpack(">I", data[2:6])
        pub_bytes = data[6 : 6 + kind.public_size]
        signature = data[6 + kind.public_size :]
        try:
            identity.verify(PREKEY_SIGNATURE_CONTEXT + data[: 6 + kind.public_size], signature)
        except DecryptionError:
            raise KeyValidationError("prekey record: bad signature") from None
        public: X25519PublicKey | MLKEMPublicKey = (
            MLKEMPublicKey.from_bytes(pub_bytes) if kind.is_kem else X25519PublicKey(pub_bytes)
        )
        return cls(kind, key_id, public, signature, bytes(data))

    def to_bytes(self) -> bytes:
        """The exact record bytes."""
        return self.raw


@final
class PreKeyPair(_Secret):
    """A prekey with its private part, as the owner keeps it.

    Private record (keystore only): ``0x01 | kind | key_id(4) | seed | signature(64)`` where
    ``seed`` is the 32-byte X25519 private key or the 64-byte ML-KEM-768 seed.
    """

    __slots__ = ("key_id", "keypair", "kind", "public_record")

    def __init__(
        self,
        kind: PreKeyKind,
        key_id: int,
        keypair: X25519KeyPair | MLKEMKeyPair,
        signature: bytes,
    ) -> None:
        self.kind = kind
        self.key_id = key_id
        self.keypair = keypair
        raw = _signed_part(kind, key_id, bytes(keypair.public)) + signature
        self.public_record = SignedPreKey(kind, key_id, keypair.public, signature, raw)

    @classmethod
    def generate(
        cls, identity: IdentityKeyPair, kind: PreKeyKind, key_id: int, rng: RNG
    ) -> PreKeyPair:
        """Create and sign a prekey of ``kind`` with id ``key_id``.

        Raises:
            ValueError: ``key_id`` out of range.
        """
        if not 0 <= key_id <= MAX_PREKEY_ID:
            raise ValueError("prekey id out of range")
        keypair: X25519KeyPair | MLKEMKeyPair
        if kind.is_kem:
            keypair = MLKEMKeyPair(_draw(rng, MLKEM768_SEED_SIZE))
        else:
            keypair = X25519KeyPair(_draw(rng, X25519_KEY_SIZE))
        signature = identity.sign(
            PREKEY_SIGNATURE_CONTEXT + _signed_part(kind, key_id, bytes(keypair.public))
        )
        return cls(kind, key_id, keypair, signature)

    def private_bytes(self) -> bytes:
        """Serialize with the private key, for the keystore only."""
        head = self.public_record.raw[:6]
        return head + self.keypair.private_bytes() + self.public_record.signature

    @classmethod
    def from_private_bytes(cls, data: bytes) -> PreKeyPair:
        """Inverse of :meth:`private_bytes`.

        Raises:
            KeyValidationError: the record is malformed.
        """
        if len(data) < 6 or data[0] != PREKEY_RECORD_VERSION:
            raise KeyValidationError("private prekey record: bad length or version")
        try:
            kind = PreKeyKind(data[1])
        except ValueError:
            raise KeyValidationError("private prekey record: unknown kind") from None
        seed_size = MLKEM768_SEED_SIZE if kind.is_kem else X25519_KEY_SIZE
        if len(data) != 6 + seed_size + ED25519_SIGNATURE_SIZE:
            raise KeyValidationError("private prekey record: bad length")
        (key_id,) = struct.unpack(">I", data[2:6])
        seed = data[6 : 6 + seed_size]
        keypair: X25519KeyPair | MLKEMKeyPair = (
            MLKEMKeyPair(seed) if kind.is_kem else X25519KeyPair(seed)
        )
        return cls(kind, key_id, keypair, data[6 + seed_size :])
