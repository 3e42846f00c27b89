"""The hybrid PQXDH-style handshake (protocol.md §11).

Theory of operation
-------------------
Bob (responder) publishes signed prekeys; a bundle offered to Alice (initiator) holds his
identity key ``IK_B``, his X25519 signed prekey ``SPK_B``, one ML-KEM-768 prekey ``PQPK_B`` (a
one-time key if any is left, else the last-resort key) and, optionally, a one-time X25519
prekey ``OPK_B``. Alice checks every signature and key, then::

    EK_A  ephemeral X25519 key (rng)
    DH1 = DH(IK_A, SPK_B)   DH2 = DH(EK_A, IK_B)   DH3 = DH(EK_A, SPK_B)   [DH4 = DH(EK_A, OPK_B)]
    (SS, CT) = ML-KEM-768.Encaps(PQPK_B)
    header = EK_A | spk_id | pq_kind | pq_id | opk_flag | opk_id | CT          (1134 bytes)
    th  = SHA-256(TRANSCRIPT_CONTEXT || IK_A || IK_B || SPK_B || SHA-256(PQPK_B) || OPK_B|0^32
                  || header)
    SK  = HKDF(salt=0^32, ikm=0xFF^32 || DH1 || DH2 || DH3 [|| DH4] || SS, info=PQXDH_INFO || th)

``SK`` seeds the Double Ratchet; ``th`` is the associated data of every ratchet message, which
binds both identities and the whole handshake. Alice repeats the header on every message until
she receives one from Bob, so that losing her first message loses nothing.

States (per side)::

    initiator:  NEW --initiate--> AWAITING_REPLY --first message received--> ESTABLISHED
    responder:  NEW --accept(prekey message)--> ESTABLISHED
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from clientlib.crypto.kdf import kdf_pqxdh, transcript_hash
from clientlib.crypto.keys import (
    MLKEM768_CIPHERTEXT_SIZE,
    RNG,
    IdentityKeyPair,
    IdentityPublicKey,
    MLKEMKeyPair,
    MLKEMPublicKey,
    X25519KeyPair,
)
from clientlib.crypto.prekeys import PreKeyKind, PreKeyPair, SignedPreKey
from clientlib.crypto.primitives import X25519_KEY_SIZE, sha256, validate_x25519_public
from clientlib.errors import DecryptionError, KeyValidationError, LocalProtocolError

__all__ = [
    "BUNDLE_VERSION",
    "PREKEY_HEADER_SIZE",
    "Encapsulate",
    "HandshakeResult",
    "PreKeyBundle",
    "PreKeyHeader",
    "initiator_handshake",
    "responder_handshake",
]

BUNDLE_VERSION: Final = 1
_FLAG_OPK: Final = 0x01
#: ``EK_A(32) | spk_id(4) | pq_kind(1) | pq_id(4) | opk_flag(1) | opk_id(4) | CT(1088)``.
PREKEY_HEADER_SIZE: Final = X25519_KEY_SIZE + 4 + 1 + 4 + 1 + 4 + MLKEM768_CIPHERTEXT_SIZE


@dataclass(frozen=True, slots=True)
class PreKeyBundle:
    """A verified prekey bundle (§11.1).

    Layout: ``0x01 | IK(32) | flags(1) | SPK record | PQPK record [| OPK record]`` where the
    records are :class:`~clientlib.crypto.prekeys.SignedPreKey` records and flag bit 0 says an
    OPK record follows. The same bytes serve as the key part of an out-of-band invitation.
    """

    identity: IdentityPublicKey
    signed_prekey: SignedPreKey
    kem_prekey: SignedPreKey
    one_time_prekey: SignedPreKey | None = None

    @classmethod
    def build(
        cls,
        identity: IdentityPublicKey,
        signed_prekey: SignedPreKey,
        kem_prekey: SignedPreKey,
        one_time_prekey: SignedPreKey | None = None,
    ) -> PreKeyBundle:
        """Assemble a bundle from records (as the relay or an invitation does) and check it.

        Raises:
            KeyValidationError: a record has the wrong kind or does not verify.
        """
        raw = cls._encode(identity, signed_prekey, kem_prekey, one_time_prekey)
        return cls.parse(raw)

    @staticmethod
    def _encode(
        identity: IdentityPublicKey,
        spk: SignedPreKey,
        pq: SignedPreKey,
        opk: SignedPreKey | None,
    ) -> bytes:
        flags = _FLAG_OPK if opk is not None else 0
        out = bytes((BUNDLE_VERSION,)) + bytes(identity) + bytes((flags,)) + spk.raw + pq.raw
        return out + (opk.raw if opk is not None else b"")

    def to_bytes(self) -> bytes:
        """The bundle bytes."""
        return self._encode(
            self.identity, self.signed_prekey, self.kem_prekey, self.one_time_prekey
        )

    @classmethod
    def parse(cls, data: bytes) -> PreKeyBundle:
        """Parse and verify every key and signature of a received bundle.

        Raises:
            KeyValidationError: malformed bundle, wrong kinds, bad key or signature.
        """
        if len(data) < 34 or data[0] != BUNDLE_VERSION:
            raise KeyValidationError("bundle: bad length or version")
        identity = IdentityPublicKey.from_bytes(data[1:33])
        flags = data[33]
        if flags & ~_FLAG_OPK:
            raise KeyValidationError("bundle: unknown flags")
        pos = 34
        spk_size = PreKeyKind.X25519_SIGNED.record_size
        pq_size = PreKeyKind.MLKEM_ONE_TIME.record_size
        opk_size = PreKeyKind.X25519_ONE_TIME.record_size if flags & _FLAG_OPK else 0
        if len(data) != pos + spk_size + pq_size + opk_size:
            raise KeyValidationError("bundle: bad length")
        spk = SignedPreKey.parse(data[pos : pos + spk_size], identity)
        pos += spk_size
        pq = SignedPreKey.parse(data[pos : pos + pq_size], identity)
        pos += pq_size
        opk = SignedPreKey.parse(data[pos:], identity) if opk_size else None
        if spk.kind is not PreKeyKind.X25519_SIGNED or not pq.kind.is_kem:
            raise KeyValidationError("bundle: wrong prekey kinds")
        if opk is not None and opk.kind is not PreKeyKind.X25519_ONE_TIME:
            raise KeyValidationError("bundle: wrong one-time prekey kind")
        return cls(identity, spk, pq, opk)


@dataclass(frozen=True, slots=True)
class PreKeyHeader:
    """The handshake fields Alice sends (§11.2), and which of Bob's prekeys they name."""

    ephemeral: bytes
    signed_prekey_id: int
    kem_kind: PreKeyKind
    kem_prekey_id: int
    one_time_prekey_id: int | None
    kem_ciphertext: bytes
    raw: bytes

    @classmethod
    def parse(cls, data: bytes) -> PreKeyHeader:
        """Parse the fixed 1134-byte header.

        Raises:
            DecryptionError: malformed (the header was authenticated by the sealed layer
                only, so a mismatch is treated as any other undecryptable message).
        """
        if len(data) != PREKEY_HEADER_SIZE:
            raise DecryptionError
        ek = data[:32]
        spk_id, pq_kind, pq_id, opk_flag, opk_id = struct.unpack(">IBIBI", data[32:46])
        try:
            validate_x25519_public(ek)
            kind = PreKeyKind(pq_kind)
        except (KeyValidationError, ValueError):
            raise DecryptionError from None
        if not kind.is_kem or opk_flag not in (0, 1) or (opk_flag == 0 and opk_id != 0):
            raise DecryptionError
        return cls(ek, spk_id, kind, pq_id, opk_id if opk_flag else None, data[46:], bytes(data))

    @staticmethod
    def encode(
        ephemeral: bytes,
        spk_id: int,
        kem_kind: PreKeyKind,
        kem_id: int,
        opk_id: int | None,
        kem_ciphertext: bytes,
    ) -> bytes:
        flag, oid = (0, 0) if opk_id is None else (1, opk_id)
        return (
            ephemeral + struct.pack(">IBIBI", spk_id, kem_kind, kem_id, flag, oid) + kem_ciphertext
        )


@dataclass(frozen=True, slots=True, repr=False)
class HandshakeResult:
    """``SK`` and ``th`` of a completed handshake (secret: not printable)."""

    sk: bytes
    th: bytes
    header: bytes

    def __repr__(self) -> str:
        return "<HandshakeResult [secret]>"

    __str__ = __repr__


#: Signature of an ML-KEM encapsulation: ``(public key) -> (shared_secret, ciphertext)``.
#: The default is :meth:`MLKEMPublicKey.encapsulate`; the vector tests inject a recorded one.
Encapsulate = Callable[[MLKEMPublicKey], tuple[bytes, bytes]]


def _th(
    ik_a: IdentityPublicKey,
    ik_b: IdentityPublicKey,
    spk: bytes,
    pqpk: bytes,
    opk: bytes | None,
    header: bytes,
) -> bytes:
    # protocol.md §11.3: fixed-length fields, OPK replaced by 32 zero bytes when absent.
    return transcript_hash(
        bytes(ik_a), bytes(ik_b), spk, sha256(pqpk), opk if opk is not None else bytes(32), header
    )


def initiator_handshake(
    identity: IdentityKeyPair,
    bundle: PreKeyBundle,
    *,
    rng: RNG,
    encapsulate: Encapsulate | None = None,
) -> HandshakeResult:
    """Alice's side (§11.4 steps 1-6).

    Args:
        identity: Alice's identity key pair.
        bundle: Bob's verified bundle.
        rng: injected randomness (32 bytes for ``EK_A``).
        encapsulate: optional ``Callable[[MLKEMPublicKey], tuple[bytes, bytes]]`` replacing
            ML-KEM ``Encaps`` (test vectors only).

    Raises:
        KeyValidationError: a DH produced the all-zero secret (a key slipped validation).
    """
    ek = X25519KeyPair.generate(rng)
    spk = bytes(bundle.signed_prekey.public)
    pq_pub = bundle.kem_prekey.public
    assert isinstance(pq_pub, MLKEMPublicKey)
    if encapsulate is None:
        ss, ct = pq_pub.encapsulate()
    else:
        ss, ct = encapsulate(pq_pub)
    opk = bundle.one_time_prekey
    opk_bytes = bytes(opk.public) if opk is not None else None
    header = PreKeyHeader.encode(
        bytes(ek.public),
        bundle.signed_prekey.key_id,
        bundle.kem_prekey.kind,
        bundle.kem_prekey.key_id,
        opk.key_id if opk is not None else None,
        ct,
    )
    dhs = [identity.dh(spk), ek.dh(bundle.identity.x25519), ek.dh(spk)]
    if opk_bytes is not None:
        dhs.append(ek.dh(opk_bytes))
    th = _th(identity.public, bundle.identity, spk, bytes(pq_pub), opk_bytes, header)
    return HandshakeResult(kdf_pqxdh(dhs, ss, th), th, header)


def responder_handshake(
    identity: IdentityKeyPair,
    initiator: IdentityPublicKey,
    header: PreKeyHeader,
    *,
    signed_prekey: PreKeyPair,
    kem_prekey: PreKeyPair,
    one_time_prekey: PreKeyPair | None,
) -> HandshakeResult:
    """Bob's side (§11.5).

    Raises:
        LocalProtocolError: the prekeys passed are not the ones ``header`` names.
        DecryptionError: a named one-time prekey was not supplied (already consumed).
    """
    if (
        signed_prekey.kind is not PreKeyKind.X25519_SIGNED
        or signed_prekey.key_id != header.signed_prekey_id
        or kem_prekey.kind is not header.kem_kind
        or kem_prekey.key_id != header.kem_prekey_id
    ):
        raise LocalProtocolError("the prekeys passed are not the ones the message names")
    if header.one_time_prekey_id is None:
        if one_time_prekey is not None:
            raise LocalProtocolError("the message names no one-time prekey")
    elif one_time_prekey is None:
        raise DecryptionError  # consumed already: a replay, or a lost keystore entry
    elif (
        one_time_prekey.kind is not PreKeyKind.X25519_ONE_TIME
        or one_time_prekey.key_id != header.one_time_prekey_id
    ):
        raise LocalProtocolError("the one-time prekey passed is not the one the message names")
    spk_pair = signed_prekey.keypair
    kem_pair = kem_prekey.keypair
    assert isinstance(spk_pair, X25519KeyPair) and isinstance(kem_pair, MLKEMKeyPair)
    ek = header.ephemeral
    try:
        dhs = [spk_pair.dh(initiator.x25519), identity.dh(ek), spk_pair.dh(ek)]
        opk_bytes: bytes | None = None
        if one_time_prekey is not None:
            opk_pair = one_time_prekey.keypair
            assert isinstance(opk_pair, X25519KeyPair)
            dhs.append(opk_pair.dh(ek))
            opk_bytes = bytes(opk_pair.public)
        ss = kem_pair.decapsulate(header.kem_ciphertext)
    except KeyValidationError:
        raise DecryptionError from None
    th = _th(
        initiator,
        identity.public,
        bytes(spk_pair.public),
        bytes(kem_pair.public),
        opk_bytes,
        header.raw,
    )
    return HandshakeResult(kdf_pqxdh(dhs, ss, th), th, header.raw)
