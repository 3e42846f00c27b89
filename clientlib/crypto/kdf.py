"""Every KDF of protocol.md, with its label and input order (protocol.md §10.4).

All labels are ASCII, start with ``blindrelay/v1/`` and are used nowhere else, so no two
derivations can collide across constructions. HKDF is HKDF-SHA256 (RFC 5869). Where a salt is
"zero" it is 32 zero bytes. The output split is always "first bytes first".
"""

from __future__ import annotations

from clientlib.crypto.primitives import (
    AEAD_KEY_SIZE,
    AEAD_NONCE_SIZE,
    hkdf,
    hmac_sha256,
    sha256,
)

__all__ = [
    "CHAIN_KEY_CONSTANT",
    "FRANKING_CONTEXT",
    "MESSAGE_KEYS_INFO",
    "MESSAGE_KEY_CONSTANT",
    "PQXDH_INFO",
    "PQXDH_PAD",
    "PQXDH_TRANSCRIPT_CONTEXT",
    "PREKEY_SIGNATURE_CONTEXT",
    "RATCHET_ROOT_INFO",
    "SAFETY_NUMBER_CONTEXT",
    "SEALED_EPHEMERAL_INFO",
    "SEALED_STATIC_INFO",
    "ZERO_SALT",
    "kdf_chain",
    "kdf_message_keys",
    "kdf_pqxdh",
    "kdf_root",
    "kdf_sealed_ephemeral",
    "kdf_sealed_static",
    "transcript_hash",
]

ZERO_SALT = bytes(32)

#: Handshake (§11.4): HKDF info prefix; the transcript hash follows it.
PQXDH_INFO = b"blindrelay/v1/pqxdh"
#: Handshake transcript hash prefix (§11.3).
PQXDH_TRANSCRIPT_CONTEXT = b"blindrelay/v1/pqxdh/transcript"
#: 32 bytes of 0xFF prefixed to the handshake IKM, as in X3DH/PQXDH (§11.4): it makes the IKM
#: differ from any X25519 output prefix used elsewhere (XEdDSA domain separation in Signal).
PQXDH_PAD = b"\xff" * 32
#: Root KDF of the Double Ratchet (§12.2).
RATCHET_ROOT_INFO = b"blindrelay/v1/ratchet/root"
#: Per-message key expansion (§12.2).
MESSAGE_KEYS_INFO = b"blindrelay/v1/ratchet/message-keys"
#: Chain KDF constants (Signal's Double Ratchet spec §5.2 recommendation).
MESSAGE_KEY_CONSTANT = b"\x01"
CHAIN_KEY_CONSTANT = b"\x02"
#: Sealed sender layer (§13.2).
SEALED_EPHEMERAL_INFO = b"blindrelay/v1/sealed/ephemeral"
SEALED_STATIC_INFO = b"blindrelay/v1/sealed/static"
#: Signature context of a signed prekey record (§10.5); NUL-terminated so no label is a prefix.
PREKEY_SIGNATURE_CONTEXT = b"blindrelay/v1/prekey\x00"
#: Franking commitment input prefix (§15).
FRANKING_CONTEXT = b"blindrelay/v1/franking\x00"
#: Safety number hash prefix (§16).
SAFETY_NUMBER_CONTEXT = b"blindrelay/v1/safety-number\x00"


def transcript_hash(*parts: bytes) -> bytes:
    """``SHA-256(PQXDH_TRANSCRIPT_CONTEXT || parts...)``; parts are fixed-length (§11.3)."""
    return sha256(PQXDH_TRANSCRIPT_CONTEXT + b"".join(parts))


def kdf_pqxdh(dh_outputs: list[bytes], kem_secret: bytes, th: bytes) -> bytes:
    """The handshake secret SK (§11.4).

    ``SK = HKDF(salt=0^32, ikm=0xFF^32 || DH1 || DH2 || DH3 [|| DH4] || SS,
    info=PQXDH_INFO || th, L=32)``.
    """
    ikm = PQXDH_PAD + b"".join(dh_outputs) + kem_secret
    return hkdf(ikm, salt=ZERO_SALT, info=PQXDH_INFO + th, length=32)


def kdf_root(root_key: bytes, dh_output: bytes) -> tuple[bytes, bytes]:
    """``KDF_RK`` (§12.2): ``HKDF(salt=RK, ikm=DH, info=RATCHET_ROOT_INFO, L=64)``.

    Returns:
        ``(new_root_key, chain_key)``: bytes 0..31 and 32..63.
    """
    out = hkdf(dh_output, salt=root_key, info=RATCHET_ROOT_INFO, length=64)
    return out[:32], out[32:]


def kdf_chain(chain_key: bytes) -> tuple[bytes, bytes]:
    """``KDF_CK`` (§12.2): ``MK = HMAC(CK, 0x01)``, ``CK' = HMAC(CK, 0x02)``.

    Returns:
        ``(next_chain_key, message_key)``.
    """
    return hmac_sha256(chain_key, CHAIN_KEY_CONSTANT), hmac_sha256(chain_key, MESSAGE_KEY_CONSTANT)


def kdf_message_keys(message_key: bytes) -> tuple[bytes, bytes]:
    """Expand a message key (§12.2): ``HKDF(salt=0^32, ikm=MK, info=MESSAGE_KEYS_INFO, L=56)``.

    Returns:
        ``(aead_key, aead_nonce)``: 32 and 24 bytes.
    """
    out = hkdf(message_key, salt=ZERO_SALT, info=MESSAGE_KEYS_INFO, length=56)
    return out[:AEAD_KEY_SIZE], out[AEAD_KEY_SIZE : AEAD_KEY_SIZE + AEAD_NONCE_SIZE]


def kdf_sealed_ephemeral(
    dh_e: bytes, recipient_x25519: bytes, ephemeral_public: bytes
) -> tuple[bytes, bytes]:
    """Sealed sender, first layer (§13.2).

    ``HKDF(salt=0^32, ikm=DH_e, info=SEALED_EPHEMERAL_INFO || R || E, L=56)``.
    """
    out = hkdf(
        dh_e,
        salt=ZERO_SALT,
        info=SEALED_EPHEMERAL_INFO + recipient_x25519 + ephemeral_public,
        length=56,
    )
    return out[:32], out[32:56]


def kdf_sealed_static(
    dh_e: bytes,
    dh_s: bytes,
    recipient_x25519: bytes,
    ephemeral_public: bytes,
    encrypted_static: bytes,
) -> tuple[bytes, bytes]:
    """Sealed sender, second layer (§13.2).

    ``HKDF(salt=0^32, ikm=DH_e || DH_s, info=SEALED_STATIC_INFO || R || E || enc_static,
    L=56)``.
    """
    out = hkdf(
        dh_e + dh_s,
        salt=ZERO_SALT,
        info=SEALED_STATIC_INFO + recipient_x25519 + ephemeral_public + encrypted_static,
        length=56,
    )
    return out[:32], out[32:56]
