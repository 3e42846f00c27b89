"""Sealed sender (protocol.md §13): hide the sender's identity from the relay.

Layout of the envelope ciphertext handed to the relay::

    version(1)=0x01 | E(32) | enc_static(32+16) | enc_inner(len(inner)+16)

    DH_e        = X25519(e, R)                 R: recipient identity, X25519 form
    k1, n1      = kdf_sealed_ephemeral(DH_e, R, E)
    enc_static  = AEAD(k1, n1, sender_ik(32), ad = ct[0:33])            # version || E
    DH_s        = X25519(s, R)                 s: sender identity, X25519 form
    k2, n2      = kdf_sealed_static(DH_e, DH_s, R, E, enc_static)
    enc_inner   = AEAD(k2, n2, inner, ad = ct[0:81])                    # version || E || enc_static

The recipient recovers ``sender_ik`` with its identity key and the ephemeral, and is convinced
that the holder of ``sender_ik`` built ``enc_inner``, because only it (or the recipient) can
compute ``DH_s``. The relay learns neither.
"""

from __future__ import annotations

from typing import Final

from clientlib.crypto.kdf import kdf_sealed_ephemeral, kdf_sealed_static
from clientlib.crypto.keys import RNG, IdentityKeyPair, IdentityPublicKey, X25519KeyPair
from clientlib.crypto.primitives import (
    AEAD_TAG_SIZE,
    X25519_KEY_SIZE,
    aead_decrypt,
    aead_encrypt,
    ct_eq,
    validate_x25519_public,
)
from clientlib.errors import DecryptionError, KeyValidationError

__all__ = ["SEALED_OVERHEAD", "SEALED_VERSION", "seal", "unseal"]

SEALED_VERSION: Final = 1
_E_END: Final = 1 + X25519_KEY_SIZE
_STATIC_END: Final = _E_END + 32 + AEAD_TAG_SIZE
#: Bytes the sealed layer adds around ``inner``: 97.
SEALED_OVERHEAD: Final = _STATIC_END + AEAD_TAG_SIZE


def seal(
    inner: bytes,
    *,
    sender: IdentityPublicKey,
    dh_s: bytes,
    recipient: IdentityPublicKey,
    rng: RNG,
) -> bytes:
    """Wrap ``inner`` for ``recipient`` (§13.2).

    Args:
        inner: the inner message (already padded by the session).
        sender: our identity public key.
        dh_s: ``X25519(our identity, recipient identity)`` (cached by the session).
        recipient: the recipient's identity key.
        rng: injected randomness (32 bytes for the ephemeral key).

    Returns:
        The outer ciphertext, ``SEALED_OVERHEAD + len(inner)`` bytes.
    """
    e = X25519KeyPair.generate(rng)
    ephemeral = bytes(e.public)
    r = recipient.x25519
    dh_e = e.dh(r)
    k1, n1 = kdf_sealed_ephemeral(dh_e, r, ephemeral)
    head = bytes((SEALED_VERSION,)) + ephemeral
    enc_static = aead_encrypt(k1, n1, bytes(sender), head)
    k2, n2 = kdf_sealed_static(dh_e, dh_s, r, ephemeral, enc_static)
    head += enc_static
    return head + aead_encrypt(k2, n2, inner, head)


def unseal(
    ct: bytes,
    *,
    recipient: IdentityKeyPair,
    known_sender: tuple[IdentityPublicKey, bytes] | None = None,
) -> tuple[IdentityPublicKey, bytes]:
    """Open the sealed layer (§13.3).

    Args:
        ct: the exact envelope ciphertext received.
        recipient: our identity key pair.
        known_sender: ``(identity, dh_s)`` of the peer of a known session; when the recovered
            sender is that identity, the cached ``dh_s`` saves a validation and a DH.

    Returns:
        ``(sender, inner)``: the authenticated sender identity and the inner bytes.

    Raises:
        DecryptionError: on every failure.
    """
    if len(ct) < SEALED_OVERHEAD or ct[0] != SEALED_VERSION:
        raise DecryptionError
    ephemeral = ct[1:_E_END]
    head = ct[:_E_END]
    enc_static = ct[_E_END:_STATIC_END]
    try:
        validate_x25519_public(ephemeral)
        dh_e = recipient.dh(ephemeral)
    except KeyValidationError:
        raise DecryptionError from None
    r = recipient.public.x25519
    k1, n1 = kdf_sealed_ephemeral(dh_e, r, ephemeral)
    sender_bytes = aead_decrypt(k1, n1, enc_static, head)
    if known_sender is not None and ct_eq(sender_bytes, bytes(known_sender[0])):
        sender, dh_s = known_sender
    else:
        try:
            sender = IdentityPublicKey.from_bytes(sender_bytes)
            dh_s = recipient.dh(sender.x25519)
        except KeyValidationError:
            raise DecryptionError from None
    k2, n2 = kdf_sealed_static(dh_e, dh_s, r, ephemeral, enc_static)
    inner = aead_decrypt(k2, n2, ct[_STATIC_END:], ct[:_STATIC_END])
    return sender, inner
